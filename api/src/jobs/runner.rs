//! The runner: claims due jobs under a lease, runs their handlers, renews the
//! lease while they run, and records the outcome only while it still holds
//! the job. Shutting down stops claiming, lets handlers finish for a grace
//! period, then gives back what it still holds.

use super::schedule::{self, Schedule};
use super::{JobError, JobResult, now};
use crate::config::Config;
use crate::db::{begin_write, is_postgres};
use crate::error::{AppError, AppResult};
use crate::telemetry::prom::Metrics;
use chrono::{DateTime, Utc};
use entity::enums::JobStatus;
use entity::job;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, Statement,
    Value,
};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

type Handler = Arc<
    dyn Fn(DatabaseConnection, serde_json::Value) -> BoxFuture<'static, JobResult> + Send + Sync,
>;

/// The handlers a runner knows, by job kind. A runner claims only the kinds
/// it has a handler for.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `handler` for `kind` (replacing any earlier one). It gets
    /// the database and the job's payload; an `Err` is a failed attempt.
    pub fn register<F, Fut>(&mut self, kind: &str, handler: F) -> &mut Registry
    where
        F: Fn(DatabaseConnection, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        self.handlers.insert(
            kind.to_owned(),
            Arc::new(move |db, payload| Box::pin(handler(db, payload))),
        );
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    fn get(&self, kind: &str) -> Option<Handler> {
        self.handlers.get(kind).cloned()
    }
}

/// How a runner behaves. `RunnerConfig::from(&Config)` reads the `jobs_*` keys.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Handlers running at once.
    pub concurrency: usize,
    /// How long a claim holds a job before another runner may take it; the
    /// runner renews it every third of this while the handler runs.
    pub lease: Duration,
    /// How long to wait for new jobs when none is due.
    pub poll_interval: Duration,
    /// Retry delay: `backoff_base · 2^attempts`, at most `backoff_cap`, jittered.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How often due schedules are turned into jobs.
    pub schedule_interval: Duration,
    /// On shutdown, how long running handlers may take before they are
    /// stopped and their jobs released.
    pub grace: Duration,
    /// `/readyz` reports the runner stopped when it has not ticked for this long.
    pub stale_after: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            schedule_interval: Duration::from_secs(15),
            grace: Duration::from_secs(20),
            stale_after: Duration::from_secs(60),
        }
    }
}

impl From<&Config> for RunnerConfig {
    fn from(c: &Config) -> Self {
        let poll_interval = Duration::from_millis(c.jobs_poll_ms.max(10));
        RunnerConfig {
            concurrency: c.jobs_concurrency.max(1),
            lease: Duration::from_secs(c.jobs_lease_secs.max(1)),
            poll_interval,
            grace: Duration::from_secs(c.jobs_grace_secs),
            stale_after: Duration::from_secs(60).max(poll_interval * 10),
            ..RunnerConfig::default()
        }
    }
}

/// Whether a runner is alive, for `/readyz`: it ticks on every pass of its
/// loop that reached the database, and is marked stopped when it ends.
#[derive(Debug)]
pub struct RunnerHealth {
    origin: Instant,
    last_tick_ms: AtomicU64,
    stopped: AtomicBool,
    stale_after: Duration,
}

impl RunnerHealth {
    fn new(stale_after: Duration) -> RunnerHealth {
        RunnerHealth {
            origin: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            stale_after,
        }
    }

    fn tick(&self) {
        self.last_tick_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Since the last tick.
    pub fn since_last_tick(&self) -> Duration {
        let last = Duration::from_millis(self.last_tick_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Running and ticking.
    pub fn is_alive(&self) -> bool {
        !self.is_stopped() && self.since_last_tick() <= self.stale_after
    }
}

/// Marks the runner stopped however `run` ends (error, panic, shutdown).
struct StopOnDrop(Arc<RunnerHealth>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A job runner over one database.
pub struct Runner {
    db: DatabaseConnection,
    registry: Arc<Registry>,
    config: RunnerConfig,
    schedules: Vec<Schedule>,
    id: String,
    health: Arc<RunnerHealth>,
    metrics: Option<Arc<Metrics>>,
}

/// What one runner needs inside a job's task.
#[derive(Clone)]
struct Shared {
    db: DatabaseConnection,
    registry: Arc<Registry>,
    config: RunnerConfig,
    id: Arc<str>,
    metrics: Option<Arc<Metrics>>,
}

impl Runner {
    pub fn new(db: DatabaseConnection, registry: Registry, config: RunnerConfig) -> Runner {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lockstep".to_owned());
        let id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Runner {
            health: Arc::new(RunnerHealth::new(config.stale_after)),
            db,
            registry: Arc::new(registry),
            config,
            schedules: Vec::new(),
            id,
            metrics: None,
        }
    }

    /// Lockstep's own kinds and schedules, configured from `config`.
    pub fn from_config(db: DatabaseConnection, config: &Config) -> Runner {
        Runner::new(
            db,
            super::builtin::registry_for(config),
            RunnerConfig::from(config),
        )
        .with_schedules(super::builtin::schedules())
    }

    /// Periodic jobs this runner registers when it starts (every runner
    /// ticks every schedule, whoever registered it).
    pub fn with_schedules(mut self, schedules: Vec<Schedule>) -> Runner {
        self.schedules = schedules;
        self
    }

    /// Counts the attempts this runner makes in `metrics` (`/metrics`'
    /// `lockstep_job_runs_total` and `lockstep_job_run_duration_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Runner {
        self.metrics = Some(metrics);
        self
    }

    /// This runner's name in `locked_by`: host, process and a random suffix.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn health(&self) -> Arc<RunnerHealth> {
        self.health.clone()
    }

    /// Runs on its own task until `shutdown` is cancelled.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<AppResult<()>> {
        tokio::spawn(self.run(shutdown))
    }

    /// Claims and runs jobs until `shutdown` is cancelled, then finishes or
    /// releases what it holds.
    pub async fn run(self, shutdown: CancellationToken) -> AppResult<()> {
        let _stopped = StopOnDrop(self.health.clone());
        let shared = Shared {
            db: self.db.clone(),
            registry: self.registry.clone(),
            config: self.config.clone(),
            id: Arc::from(self.id.as_str()),
            metrics: self.metrics.clone(),
        };
        let kinds = self.registry.kinds();
        tracing::info!(runner = %self.id, kinds = ?kinds, "job runner started");
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let finished = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), heartbeat_stop.clone()));
        let mut registered = self.schedules.is_empty();
        let mut next_schedule_tick = Instant::now();

        while !shutdown.is_cancelled() {
            while let Some(joined) = tasks.try_join_next() {
                if let Err(e) = joined {
                    tracing::error!(runner = %self.id, error = %e, "job task failed");
                }
            }
            let mut healthy = true;
            if !registered {
                match schedule::register(&self.db, &self.schedules).await {
                    Ok(()) => registered = true,
                    Err(e) => {
                        healthy = false;
                        log_failure("registering schedules", &e);
                    }
                }
            }
            if Instant::now() >= next_schedule_tick {
                next_schedule_tick = Instant::now() + self.config.schedule_interval;
                match schedule::tick(&self.db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(runner = %self.id, enqueued = n, "schedules due"),
                    Err(e) => {
                        healthy = false;
                        log_failure("ticking schedules", &e);
                    }
                }
            }
            let free = permits.available_permits();
            let mut claimed_all = false;
            if free > 0 && !kinds.is_empty() {
                match claim(&self.db, &self.id, &kinds, free, self.config.lease).await {
                    Ok(jobs) => {
                        claimed_all = jobs.len() >= free;
                        for job in jobs {
                            let Ok(permit) = permits.clone().try_acquire_owned() else {
                                // More rows than asked for (a plan that runs the
                                // subquery twice): give the surplus back at once.
                                if let Err(e) = release_one(&self.db, &self.id, &job).await {
                                    log_failure("releasing a surplus claim", &e);
                                }
                                continue;
                            };
                            tasks.spawn(execute(shared.clone(), job, permit, finished.clone()));
                        }
                    }
                    Err(e) => {
                        healthy = false;
                        log_failure("claiming jobs", &e);
                    }
                }
            }
            if healthy {
                self.health.tick();
            }
            let wait = if healthy {
                self.config.poll_interval
            } else {
                self.config.poll_interval.max(Duration::from_secs(1))
            };
            if claimed_all {
                // There may be more due: claim again as soon as a permit frees up.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = finished.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }

        // Shutdown: no more claims; running handlers get the grace period.
        let running = tasks.len();
        if running > 0 {
            tracing::info!(runner = %self.id, running, grace_secs = self.config.grace.as_secs(), "job runner stopping: waiting for running jobs");
        }
        let drained = tokio::time::timeout(self.config.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        let released = release(&self.db, &self.id).await?;
        if released > 0 {
            tracing::info!(runner = %self.id, released, "released unfinished jobs");
        }
        tracing::info!(runner = %self.id, "job runner stopped");
        Ok(())
    }
}

fn log_failure(what: &str, e: &AppError) {
    match e {
        AppError::Internal(source) => tracing::warn!(error = %source, "job runner: {what} failed"),
        other => tracing::warn!(error = %other.message(), "job runner: {what} failed"),
    }
}

/// The `n`th bound value (1-based) in a raw statement: `$n` on PostgreSQL,
/// `?n` on SQLite (both may repeat it).
fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// Claims up to `limit` due jobs of `kinds`: QUEUED ones whose `run_at` has
/// come, and RUNNING ones whose lease ran out (their runner died). Each
/// claim counts an attempt. On PostgreSQL, rows another runner is claiming
/// are skipped (`FOR UPDATE SKIP LOCKED`); on SQLite the claim runs in an
/// IMMEDIATE transaction, so claims take turns.
pub async fn claim(
    db: &DatabaseConnection,
    runner: &str,
    kinds: &[String],
    limit: usize,
    lease: Duration,
) -> AppResult<Vec<job::Model>> {
    if kinds.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let now = now();
    let until = after(now, lease);
    let p = |n| placeholder(backend, n);
    let kind_list: Vec<String> = (0..kinds.len()).map(|i| p(5 + i)).collect();
    let lock = if is_postgres(db) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE jobs SET status = 'RUNNING', locked_by = {runner}, locked_until = {until}, \
         attempts = attempts + 1, updated_at = {now} \
         WHERE id IN (SELECT id FROM jobs \
         WHERE ((status = 'QUEUED' AND run_at <= {now}) OR (status = 'RUNNING' AND locked_until < {now})) \
         AND kind IN ({kinds}) ORDER BY run_at LIMIT {limit}{lock}) RETURNING *",
        runner = p(1),
        until = p(2),
        now = p(3),
        limit = p(4),
        kinds = kind_list.join(", "),
    );
    let mut values: Vec<Value> = vec![
        runner.into(),
        until.into(),
        now.into(),
        (limit as i64).into(),
    ];
    values.extend(kinds.iter().map(|k| Value::from(k.clone())));
    let stmt = Statement::from_sql_and_values(backend, sql, values);
    if is_postgres(db) {
        Ok(job::Entity::find().from_raw_sql(stmt).all(db).await?)
    } else {
        // An idle poll must not take SQLite's one write lock: look first.
        let due = job::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(job::Column::Status.eq(JobStatus::Queued))
                            .add(job::Column::RunAt.lte(now)),
                    )
                    .add(
                        Condition::all()
                            .add(job::Column::Status.eq(JobStatus::Running))
                            .add(job::Column::LockedUntil.lt(now)),
                    ),
            )
            .filter(job::Column::Kind.is_in(kinds.to_vec()))
            .one(db)
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        #[allow(clippy::disallowed_methods)] // the queue's own bookkeeping, not the records
        let txn = begin_write(db).await?;
        let jobs = job::Entity::find().from_raw_sql(stmt).all(&txn).await?;
        txn.commit().await?;
        Ok(jobs)
    }
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Only the holder of this attempt may record its outcome: a job whose lease
/// ran out and that another runner (or this one) claimed again is not ours.
fn owned(id: uuid::Uuid, runner: &str, attempt: i32) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(job::Column::Id.eq(id))
        .add(job::Column::LockedBy.eq(runner))
        .add(job::Column::Attempts.eq(attempt))
        .add(job::Column::Status.eq(JobStatus::Running))
}

/// Runs one claimed job and records its outcome.
async fn execute(
    shared: Shared,
    job: job::Model,
    permit: OwnedSemaphorePermit,
    finished: Arc<Notify>,
) {
    let started = Instant::now();
    let outcome = if job.attempts > job.max_attempts {
        // Claimed again after its last attempt's lease ran out: its runner
        // died on it (perhaps because of it). Not run again.
        Err(JobError(match &job.last_error {
            Some(e) => format!("the runner stopped during the last attempt (before that: {e})"),
            None => "the runner stopped during the last attempt".to_owned(),
        }))
    } else {
        match shared.registry.get(&job.kind) {
            None => Err(JobError(format!("no handler for kind `{}`", job.kind))),
            Some(handler) => match serde_json::from_str(&job.payload) {
                Err(e) => Err(JobError::from(e)),
                Ok(payload) => AssertUnwindSafe(handler(shared.db.clone(), payload))
                    .catch_unwind()
                    .instrument(job_span(&job))
                    .await
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(JobError(format!("handler panicked: {what}")))
                    }),
            },
        }
    };
    let recorded = match &outcome {
        Ok(()) => complete(&shared, &job).await,
        Err(e) => fail(&shared, &job, e).await,
    };
    if let Some(metrics) = &shared.metrics {
        let label = match (&outcome, &recorded) {
            (_, Ok(false)) => "lost",
            (Ok(()), _) => "done",
            (Err(_), _) if job.attempts >= job.max_attempts => "dead",
            (Err(_), _) => "retry",
        };
        metrics.job_run(&job.kind, label, started.elapsed().as_secs_f64());
    }
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            job = %job.id, kind = %job.kind, runner = %shared.id,
            "lost the job's lease before finishing it: another runner has it"
        ),
        Err(e) => log_failure("recording a job's outcome", &e),
    }
    drop(permit);
    finished.notify_one();
}

/// The span a job's run is traced under: its own trace, linked to the span
/// that enqueued it (when that one was traced).
fn job_span(job: &job::Model) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        kind = %job.kind,
        attempt = job.attempts,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    if crate::telemetry::otel_enabled() {
        span.record("otel.name", format!("job {}", job.kind));
        span.record("otel.kind", "consumer");
        if let Some(parent) = &job.trace_parent {
            crate::telemetry::logging::link_to(&span, parent);
        }
    }
    span
}

async fn complete(shared: &Shared, job: &job::Model) -> AppResult<bool> {
    let now = now();
    let res = job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Done.as_str()))
        .col_expr(job::Column::FinishedAt, Expr::value(now))
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            job::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(owned(job.id, &shared.id, job.attempts))
        .exec(&shared.db)
        .await?;
    Ok(res.rows_affected == 1)
}

async fn fail(shared: &Shared, job: &job::Model, error: &JobError) -> AppResult<bool> {
    let now = now();
    let message = error.stored();
    let dead = job.attempts >= job.max_attempts;
    let mut update = job::Entity::update_many()
        .col_expr(job::Column::LastError, Expr::value(message.clone()))
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            job::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    if dead {
        tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, error = %message, "job is DEAD");
        update = update
            .col_expr(job::Column::Status, Expr::value(JobStatus::Dead.as_str()))
            .col_expr(job::Column::FinishedAt, Expr::value(now));
    } else {
        let delay = backoff(
            shared.config.backoff_base,
            shared.config.backoff_cap,
            job.attempts,
        );
        tracing::warn!(job = %job.id, kind = %job.kind, attempts = job.attempts, retry_in_ms = delay.as_millis() as u64, error = %message, "job failed; will retry");
        update = update
            .col_expr(job::Column::Status, Expr::value(JobStatus::Queued.as_str()))
            .col_expr(job::Column::RunAt, Expr::value(after(now, delay)))
            .col_expr(job::Column::LockedBy, Expr::value(Option::<String>::None));
    }
    let res = update
        .filter(owned(job.id, &shared.id, job.attempts))
        .exec(&shared.db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// `base · 2^attempts`, at most `cap`, then "equal jitter": half of it
/// fixed, half random, so failing jobs do not retry in lockstep.
pub fn backoff(base: Duration, cap: Duration, attempts: i32) -> Duration {
    let exp = attempts.clamp(0, 31) as u32;
    let full = base.saturating_mul(2u32.saturating_pow(exp)).min(cap);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Renews the lease of every job this runner holds, every third of a lease,
/// until stopped.
async fn heartbeat(shared: Shared, stop: CancellationToken) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let now = now();
        let renewed = job::Entity::update_many()
            .col_expr(
                job::Column::LockedUntil,
                Expr::value(after(now, shared.config.lease)),
            )
            .filter(job::Column::LockedBy.eq(&*shared.id))
            .filter(job::Column::Status.eq(JobStatus::Running))
            .exec(&shared.db)
            .await;
        if let Err(e) = renewed {
            tracing::warn!(runner = %shared.id, error = %e, "renewing job leases failed");
        }
    }
}

/// Gives back one claimed job that will not run here, as [`release`] does.
async fn release_one(db: &DatabaseConnection, runner: &str, job: &job::Model) -> AppResult<()> {
    job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Queued.as_str()))
        .col_expr(job::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            job::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(job::Column::Attempts, Expr::value(job.attempts - 1))
        .col_expr(job::Column::UpdatedAt, Expr::value(now()))
        .filter(owned(job.id, runner, job.attempts))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives back every job `runner` still holds: QUEUED again, unlocked, and
/// the interrupted attempt not counted. Returns how many.
pub async fn release(db: &DatabaseConnection, runner: &str) -> AppResult<u64> {
    let now = now();
    let res = job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Queued.as_str()))
        .col_expr(job::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            job::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            job::Column::Attempts,
            sea_orm::sea_query::ExprTrait::sub(Expr::col(job::Column::Attempts), 1),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::LockedBy.eq(runner))
        .filter(job::Column::Status.eq(JobStatus::Running))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(10);
        for attempts in 1..40 {
            let full = base
                .saturating_mul(2u32.saturating_pow(attempts.min(31) as u32))
                .min(cap);
            let d = backoff(base, cap, attempts);
            assert!(
                d >= full / 2 && d <= full,
                "{attempts}: {d:?} within [{:?}, {full:?}]",
                full / 2
            );
        }
    }
}
