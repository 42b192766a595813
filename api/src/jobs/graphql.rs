//! `jobs`: the background jobs, for ADMIN.

use super::service::{self, JobFilter, JobOrder};
use crate::auth::ADMINS;
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{db, require};
use crate::graphql::inputs::OrderDirection;
use crate::pagination::PageRequest;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use entity::enums::JobStatus;
use entity::job;

/// A background job: one unit of work a runner claims, runs and records.
pub struct Job(pub job::Model);

#[Object]
impl Job {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Which handler runs it, e.g. `jobs.prune`.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// The handler's input, as JSON text.
    async fn payload(&self) -> &str {
        &self.0.payload
    }
    async fn status(&self) -> JobStatus {
        self.0.status
    }
    /// Attempts started so far (an attempt given back at shutdown is not counted).
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// After this many failed attempts the job is DEAD.
    async fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }
    /// Not run before this time (the next retry, for a failed job).
    async fn run_at(&self) -> DateTime<Utc> {
        self.0.run_at
    }
    /// The runner holding the job (RUNNING) or the one that finished it.
    async fn locked_by(&self) -> Option<&str> {
        self.0.locked_by.as_deref()
    }
    /// When the runner's lease ends; past it, another runner may take the job.
    async fn locked_until(&self) -> Option<DateTime<Utc>> {
        self.0.locked_until
    }
    /// The error of the latest failed attempt.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// Set for idempotent enqueues and periodic jobs (`schedule@dueTime`).
    async fn dedupe_key(&self) -> Option<&str> {
        self.0.dedupe_key.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When the job became DONE or DEAD.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

#[derive(InputObject, Default)]
pub struct JobFilterInput {
    /// Any of these statuses.
    pub status: Option<Vec<JobStatus>>,
    /// Any of these kinds.
    pub kind: Option<Vec<String>>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum JobOrderField {
    CreatedAt,
    RunAt,
    UpdatedAt,
}

#[derive(InputObject)]
pub struct JobOrderInput {
    pub field: JobOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct JobsQuery;

#[Object]
impl JobsQuery {
    /// Background jobs (ADMIN), oldest first unless ordered otherwise.
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        filter: Option<JobFilterInput>,
        order_by: Option<JobOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Job>> {
        require(ctx, ADMINS, "read jobs")?;
        let f = filter.unwrap_or_default();
        let filter = JobFilter {
            statuses: f.status.unwrap_or_default(),
            kinds: f.kind.unwrap_or_default(),
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    JobOrderField::CreatedAt => JobOrder::CreatedAt,
                    JobOrderField::RunAt => JobOrder::RunAt,
                    JobOrderField::UpdatedAt => JobOrder::UpdatedAt,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (JobOrder::CreatedAt, false),
        };
        let page_req = PageRequest {
            first,
            after,
            last,
            before,
        };
        let db = db(ctx)?.clone();
        let page = service::list(&db, &filter, order, desc, &page_req).await?;
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            Job,
        ))
    }
}
