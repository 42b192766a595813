//! The job kinds Lockstep ships (`jobs.prune`, `handoffs.expire`), and its periodic jobs.

use super::{Registry, Schedule, now};
use crate::error::AppResult;
use chrono::{DateTime, Utc};
use entity::enums::JobStatus;
use entity::job;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use std::time::Duration;

/// Deletes DONE jobs older than [`PRUNE_AFTER_DAYS`]; runs daily. DEAD jobs
/// are kept for an operator to look at.
pub const PRUNE: &str = "jobs.prune";
pub const PRUNE_AFTER_DAYS: i64 = 7;

/// Marks PENDING hand-offs past their `dueAt` EXPIRED; runs every minute.
pub const HANDOFFS_EXPIRE: &str = "handoffs.expire";

/// Sleeps `{"ms": N}` milliseconds (default 1000), then succeeds. A test
/// kind: registered only when [`TEST_KINDS_ENV`] is `1` or `true`, so the
/// tests can kill a worker in the middle of a job.
pub const SLEEP: &str = "diagnostics.sleep";

/// The environment variable that enables the test-only kinds.
pub const TEST_KINDS_ENV: &str = "LOCKSTEP_TEST_JOB_KINDS";

/// Whether the test-only kinds are enabled in this process.
pub fn test_kinds_enabled() -> bool {
    std::env::var(TEST_KINDS_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Lockstep's handlers, for a deployment whose currency is `USD`.
pub fn registry() -> Registry {
    registry_for(&crate::config::Config::default())
}

/// Lockstep's handlers, configured from `config`.
pub fn registry_for(config: &crate::config::Config) -> Registry {
    let mut registry = Registry::new();
    let currency = config.currency.to_uppercase();
    registry.register(crate::webhooks::APPLY, move |db, payload| {
        crate::webhooks::apply::run(db, currency.clone(), payload)
    });
    registry.register(PRUNE, |db, _payload| async move {
        let cutoff = now() - chrono::Duration::days(PRUNE_AFTER_DAYS);
        let deleted = prune(&db, cutoff).await?;
        tracing::info!(deleted, "pruned finished jobs");
        let buckets = crate::telemetry::limits::prune_shared(&db).await?;
        tracing::info!(buckets, "pruned full rate-limit buckets");
        Ok(())
    });
    registry.register(HANDOFFS_EXPIRE, |db, _payload| async move {
        // Idempotent: a repeated run finds nothing left to expire. A batch
        // larger than one run takes leaves the rest to the next minute.
        let expired = crate::records::handoffs::service::expire_due(&db, now()).await?;
        if !expired.is_empty() {
            tracing::info!(expired = expired.len(), "expired overdue hand-offs");
        }
        Ok(())
    });
    if test_kinds_enabled() {
        tracing::warn!("{TEST_KINDS_ENV} is set: the test-only job kind {SLEEP} is enabled");
        registry.register(SLEEP, |_db, payload| async move {
            let ms = payload.get("ms").and_then(|v| v.as_u64()).unwrap_or(1_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        });
    }
    registry
}

/// Lockstep's periodic jobs.
pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule {
            name: PRUNE.to_owned(),
            kind: PRUNE.to_owned(),
            payload: serde_json::json!({}),
            every: Duration::from_secs(24 * 3600),
        },
        Schedule {
            name: HANDOFFS_EXPIRE.to_owned(),
            kind: HANDOFFS_EXPIRE.to_owned(),
            payload: serde_json::json!({}),
            every: Duration::from_secs(60),
        },
    ]
}

/// Deletes the DONE jobs finished before `cutoff`; returns how many.
pub async fn prune(db: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> AppResult<u64> {
    let res = job::Entity::delete_many()
        .filter(job::Column::Status.eq(JobStatus::Done))
        .filter(job::Column::FinishedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
