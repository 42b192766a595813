//! Periodic jobs. A schedule row names a kind, a payload and a period; any
//! replica's runner ticks the due ones (rows another replica is ticking are
//! skipped on PostgreSQL, `FOR UPDATE SKIP LOCKED`; SQLite takes turns),
//! enqueueing one job per due time with the dedupe key `name@next_run_at`,
//! so a tick repeated anywhere never enqueues the same period twice.

use super::{DEFAULT_MAX_ATTEMPTS, insert, now};
use crate::db::{begin_write, is_postgres};
use crate::error::AppResult;
use chrono::{DateTime, SecondsFormat, Utc};
use entity::job_schedule;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    Statement,
};
use std::time::Duration;

/// A periodic job, as a runner registers it at start.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub every: Duration,
}

/// Adds the schedules, or updates their kind, payload and period (keeping
/// when they next run). A new schedule is due at once.
pub async fn register(db: &impl ConnectionTrait, schedules: &[Schedule]) -> AppResult<()> {
    let now = now();
    for s in schedules {
        let row = job_schedule::ActiveModel {
            name: Set(s.name.clone()),
            kind: Set(s.kind.clone()),
            payload: Set(s.payload.to_string()),
            every_secs: Set(s.every.as_secs().max(1) as i64),
            next_run_at: Set(now),
        };
        job_schedule::Entity::insert(row)
            .on_conflict(
                OnConflict::column(job_schedule::Column::Name)
                    .update_columns([
                        job_schedule::Column::Kind,
                        job_schedule::Column::Payload,
                        job_schedule::Column::EverySecs,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// The dedupe key of a schedule's job for one due time.
pub fn dedupe_key(name: &str, at: DateTime<Utc>) -> String {
    format!("{name}@{}", at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// The first due time after `now`, in steps of `every` from `due`.
fn next_after(due: DateTime<Utc>, every_secs: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let every = every_secs.max(1);
    let behind = (now - due).num_seconds().max(0);
    due + chrono::Duration::seconds((behind / every + 1) * every)
}

/// Enqueues a job for every due schedule and moves it to its next due time,
/// in one write transaction. Returns how many jobs it enqueued.
pub async fn tick(db: &DatabaseConnection) -> AppResult<u64> {
    #[allow(clippy::disallowed_methods)] // the queue's own bookkeeping, not the records
    let txn = begin_write(db).await?;
    let now = now();
    let due: Vec<job_schedule::Model> = if is_postgres(db) {
        job_schedule::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT * FROM job_schedules WHERE next_run_at <= $1 ORDER BY name FOR UPDATE SKIP LOCKED",
                [now.into()],
            ))
            .all(&txn)
            .await?
    } else {
        job_schedule::Entity::find()
            .filter(job_schedule::Column::NextRunAt.lte(now))
            .order_by_asc(job_schedule::Column::Name)
            .all(&txn)
            .await?
    };
    let mut enqueued = 0;
    for s in due {
        let key = dedupe_key(&s.name, s.next_run_at);
        if insert(
            &txn,
            &s.kind,
            s.payload.clone(),
            Some(s.next_run_at),
            Some(key),
            DEFAULT_MAX_ATTEMPTS,
        )
        .await?
        .is_some()
        {
            enqueued += 1;
        }
        let next = next_after(s.next_run_at, s.every_secs, now);
        job_schedule::Entity::update_many()
            .col_expr(
                job_schedule::Column::NextRunAt,
                sea_orm::sea_query::Expr::value(next),
            )
            .filter(job_schedule::Column::Name.eq(s.name.as_str()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(enqueued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_due_time_skips_missed_periods() {
        let due = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let day = 86_400;
        assert_eq!(next_after(due, day, due), due + chrono::Duration::days(1));
        let late = due + chrono::Duration::days(3) + chrono::Duration::hours(5);
        assert_eq!(next_after(due, day, late), due + chrono::Duration::days(4));
        assert_eq!(
            dedupe_key("jobs.prune", due),
            "jobs.prune@2026-01-01T00:00:00.000000Z"
        );
    }
}
