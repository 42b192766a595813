//! Background jobs: a small runner over the `jobs` table, on SQLite and
//! PostgreSQL alike (see the README's "Background jobs").
//!
//! - [`enqueue`] adds a job, inside the caller's transaction when given one;
//! - a [`Runner`] claims due jobs (leased, `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL), runs the handler registered for their kind, renews the
//!   lease while it runs, and records DONE, a retry with backoff, or DEAD;
//! - [`schedule`] turns `job_schedules` into one job per period on any replica;
//! - [`builtin`] holds the kinds Lockstep ships (`jobs.prune`).
//!
//! Delivery is at least once: a handler may run again after a crash, so
//! handlers must be idempotent.

pub mod builtin;
pub mod graphql;
pub mod runner;
pub mod schedule;
pub mod service;

pub use runner::{Registry, Runner, RunnerConfig, RunnerHealth};
pub use schedule::Schedule;
/// How a runner is told to stop.
pub use tokio_util::sync::CancellationToken;

use crate::error::{AppError, AppResult};
use chrono::{DateTime, SubsecRound, Utc};
use entity::enums::JobStatus;
use entity::job;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};
use serde_json::Value;
use uuid::Uuid;

/// Attempts a job gets unless its enqueuer says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// Longest `last_error` kept, in characters.
const MAX_ERROR_CHARS: usize = 4_000;

/// Why a handler failed; kept as the job's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError(pub String);

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JobError {}

impl From<String> for JobError {
    fn from(s: String) -> Self {
        JobError(s)
    }
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        JobError(s.to_owned())
    }
}

impl From<AppError> for JobError {
    /// Internal errors keep their cause (a client never sees a job's error).
    fn from(e: AppError) -> Self {
        match &e {
            AppError::Internal(source) => JobError(format!("internal error: {source}")),
            _ => JobError(format!("{}: {}", e.code().as_str(), e.message())),
        }
    }
}

impl From<DbErr> for JobError {
    fn from(e: DbErr) -> Self {
        JobError(format!("database: {e}"))
    }
}

impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        JobError(format!("payload: {e}"))
    }
}

impl JobError {
    /// The message as stored: bounded in length.
    fn stored(&self) -> String {
        if self.0.chars().count() <= MAX_ERROR_CHARS {
            self.0.clone()
        } else {
            let mut s: String = self.0.chars().take(MAX_ERROR_CHARS).collect();
            s.push('…');
            s
        }
    }
}

/// What a handler returns.
pub type JobResult = Result<(), JobError>;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// Not before this time (default: now).
    pub run_at: Option<DateTime<Utc>>,
    /// While a job with this key exists, enqueueing another is a no-op.
    pub dedupe_key: Option<String>,
    pub max_attempts: i32,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            run_at: None,
            dedupe_key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> NewJob {
        self.run_at = Some(at);
        self
    }

    pub fn dedupe_key(mut self, key: impl Into<String>) -> NewJob {
        self.dedupe_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, n: i32) -> NewJob {
        self.max_attempts = n;
        self
    }
}

/// Enqueues a job of `kind`. Joins the caller's transaction when `db` is one
/// (the job then exists exactly when the caller's change commits). Returns
/// the job's id, or `None` when a job with the same `dedupe_key` already
/// exists.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    kind: &str,
    payload: Value,
    run_at: Option<DateTime<Utc>>,
    dedupe_key: Option<&str>,
) -> AppResult<Option<Uuid>> {
    let mut job = NewJob::new(kind, payload);
    job.run_at = run_at;
    job.dedupe_key = dedupe_key.map(str::to_owned);
    enqueue_job(db, job).await
}

/// [`enqueue`] with every option.
pub async fn enqueue_job(db: &impl ConnectionTrait, job: NewJob) -> AppResult<Option<Uuid>> {
    if job.kind.trim().is_empty() {
        return Err(AppError::bad_input("kind", "`kind` must not be empty"));
    }
    if job.max_attempts < 1 {
        return Err(AppError::bad_input(
            "maxAttempts",
            "`maxAttempts` must be at least 1",
        ));
    }
    let payload = serde_json::to_string(&job.payload).map_err(AppError::internal)?;
    insert(
        db,
        &job.kind,
        payload,
        job.run_at,
        job.dedupe_key,
        job.max_attempts,
    )
    .await
}

async fn insert(
    db: &impl ConnectionTrait,
    kind: &str,
    payload: String,
    run_at: Option<DateTime<Utc>>,
    dedupe_key: Option<String>,
    max_attempts: i32,
) -> AppResult<Option<Uuid>> {
    let now = now();
    let id = Uuid::now_v7();
    let row = job::ActiveModel {
        id: Set(id),
        kind: Set(kind.to_owned()),
        payload: Set(payload),
        status: Set(JobStatus::Queued),
        attempts: Set(0),
        max_attempts: Set(max_attempts),
        run_at: Set(run_at.map(|t| t.trunc_subsecs(6)).unwrap_or(now)),
        locked_by: Set(None),
        locked_until: Set(None),
        last_error: Set(None),
        dedupe_key: Set(dedupe_key),
        created_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
        trace_parent: Set(crate::telemetry::logging::current_traceparent()),
    };
    let inserted = job::Entity::insert(row)
        .on_conflict(
            OnConflict::column(job::Column::DedupeKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok((inserted > 0).then_some(id))
}

/// Now, to the microsecond (what both databases keep).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
