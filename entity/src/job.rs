use crate::enums::JobStatus;
use sea_orm::entity::prelude::*;

/// One unit of background work, leased by one runner at a time.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Which handler runs it, e.g. `jobs.prune`.
    pub kind: String,
    /// The handler's input, as JSON text.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub status: JobStatus,
    /// Attempts started so far (a claim counts one; a release on shutdown gives it back).
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not before this time.
    pub run_at: DateTimeUtc,
    /// The runner holding the lease (RUNNING), or the one that finished it.
    pub locked_by: Option<String>,
    /// The lease's end: past it, another runner may take the job.
    pub locked_until: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    #[sea_orm(unique)]
    pub dedupe_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// The W3C `traceparent` of the span that enqueued it (while tracing is on).
    pub trace_parent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
