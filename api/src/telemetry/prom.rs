//! Prometheus metrics: one registry per application (so tests and several
//! apps in one process never mix numbers), rendered in the text format by
//! `/metrics`. Values read at scrape time (pool, jobs, process) are set just
//! before rendering.

use crate::db::StatementCounter;
use entity::enums::JobStatus;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, Func},
};
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Instant;

/// Distinct operation names one process labels; later ones count as `other`.
pub const MAX_OPERATION_NAMES: usize = 200;
/// Longest operation name used as a label; longer ones count as `other`.
pub const MAX_OPERATION_NAME_LEN: usize = 64;

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Marks the process start (the first call wins); `lockstep_process_uptime_seconds` counts from it.
pub fn mark_start() {
    STARTED.get_or_init(Instant::now);
}

/// Rollup rebuilds happen before an application exists (at start-up, in
/// `lockstep seed`): one histogram for the process, registered in every app.
static ROLLUP_REBUILD: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "lockstep_rollup_rebuild_seconds",
            "Time taken by full rebuilds of the metric rollups in this process",
        )
        .buckets(vec![0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0]),
    )
    .expect("static histogram options are valid")
});

/// Records one full rollup rebuild.
pub fn observe_rollup_rebuild(seconds: f64) {
    ROLLUP_REBUILD.observe(seconds);
}

/// Webhook requests answered, by provider and status (this process).
static WEBHOOK_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "lockstep_webhook_requests_total",
            "Webhook requests answered by this process, by provider and HTTP status",
        ),
        &["provider", "status"],
    )
    .expect("static counter options are valid")
});

/// Webhook events by provider and what became of them in this process:
/// `received` (stored in the inbox), `duplicate` (an event id already
/// stored), `applied`, `failed` (an attempt failed), `dead`.
static WEBHOOK_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "lockstep_webhook_events_total",
            "Webhook events by provider and outcome (received, duplicate, applied, failed, dead) in this process",
        ),
        &["provider", "outcome"],
    )
    .expect("static counter options are valid")
});

/// Counts a webhook request's answer.
pub fn webhook_request(provider: &str, status: &str) {
    WEBHOOK_REQUESTS
        .with_label_values(&[provider, status])
        .inc();
}

/// Counts `n` webhook events of `provider` with `outcome`.
pub fn webhook_events(provider: &str, outcome: &str, n: u64) {
    // Touched even for 0, so that every series exists from the first request.
    WEBHOOK_EVENTS
        .with_label_values(&[provider, outcome])
        .inc_by(n);
}

pub struct Metrics {
    registry: Registry,
    graphql_requests: IntCounterVec,
    graphql_duration: HistogramVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub in_flight: IntGauge,
    statements_per_request: Histogram,
    statements_total: IntCounter,
    cache: IntCounterVec,
    rate_limited: IntCounterVec,
    pool: IntGaugeVec,
    jobs: IntGaugeVec,
    job_attempts: IntGaugeVec,
    jobs_due: IntGauge,
    job_runs: IntCounterVec,
    job_run_duration: HistogramVec,
    oldest_due: prometheus::Gauge,
    rss: IntGauge,
    uptime: prometheus::Gauge,
    operations: Mutex<HashSet<String>>,
}

const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

fn reg<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are unique constants: registering cannot fail.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[allow(clippy::expect_used)] // constant metric definitions, checked by the tests
    pub fn new() -> Metrics {
        mark_start();
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let latency = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )
                .expect("valid metric"),
            )
        };
        let metrics = Metrics {
            graphql_requests: counter_vec(
                "lockstep_graphql_requests_total",
                "GraphQL operations by operation name, type and outcome (OK or the first error's code)",
                &["operation", "type", "code"],
            ),
            graphql_duration: latency(
                "lockstep_graphql_request_duration_seconds",
                "Time to answer a GraphQL operation",
                &["operation", "type"],
            ),
            http_requests: counter_vec(
                "lockstep_http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            ),
            http_duration: latency(
                "lockstep_http_request_duration_seconds",
                "Time to answer an HTTP request",
                &["route"],
            ),
            in_flight: reg(
                &r,
                IntGauge::new(
                    "lockstep_http_requests_in_flight",
                    "HTTP requests being answered",
                )
                .expect("valid metric"),
            ),
            statements_per_request: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "lockstep_sql_statements_per_request",
                        "SQL statements issued while answering one /graphql request",
                    )
                    .buckets(vec![0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0]),
                )
                .expect("valid metric"),
            ),
            statements_total: reg(
                &r,
                IntCounter::new(
                    "lockstep_sql_statements_total",
                    "SQL statements issued by this process's connection pool",
                )
                .expect("valid metric"),
            ),
            cache: counter_vec(
                "lockstep_metric_cache_requests_total",
                "Metric-only operations looked up in the metric cache, by result (hit or miss)",
                &["result"],
            ),
            rate_limited: counter_vec(
                "lockstep_rate_limited_total",
                "Requests refused with 429, by budget (address or the caller's role)",
                &["budget"],
            ),
            pool: gauge_vec(
                "lockstep_db_pool_connections",
                "Database pool connections by state (open, idle, max)",
                &["pool", "state"],
            ),
            jobs: gauge_vec(
                "lockstep_jobs",
                "Jobs kept in the jobs table, by kind and status",
                &["kind", "status"],
            ),
            job_attempts: gauge_vec(
                "lockstep_job_attempts",
                "Attempts made by the jobs kept in the jobs table, by kind and status",
                &["kind", "status"],
            ),
            job_runs: counter_vec(
                "lockstep_job_runs_total",
                "Job attempts run by this process, by kind and outcome (done, retry, dead, lost)",
                &["kind", "outcome"],
            ),
            job_run_duration: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "lockstep_job_run_duration_seconds",
                        "Time a job's handler took in this process, by kind",
                    )
                    .buckets(vec![
                        0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
                    ]),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            jobs_due: reg(
                &r,
                IntGauge::new(
                    "lockstep_jobs_due",
                    "Queue depth: QUEUED jobs whose run_at has come",
                )
                .expect("valid metric"),
            ),
            oldest_due: reg(
                &r,
                prometheus::Gauge::new(
                    "lockstep_jobs_oldest_due_age_seconds",
                    "How long the oldest due QUEUED job has been due (0 when none)",
                )
                .expect("valid metric"),
            ),
            rss: reg(
                &r,
                IntGauge::new(
                    "lockstep_process_resident_memory_bytes",
                    "Resident set size of this process",
                )
                .expect("valid metric"),
            ),
            uptime: reg(
                &r,
                prometheus::Gauge::new(
                    "lockstep_process_uptime_seconds",
                    "Seconds since this process started",
                )
                .expect("valid metric"),
            ),
            operations: Mutex::new(HashSet::new()),
            registry: r,
        };
        let _ = metrics.registry.register(Box::new(ROLLUP_REBUILD.clone()));
        let _ = metrics
            .registry
            .register(Box::new(WEBHOOK_REQUESTS.clone()));
        let _ = metrics.registry.register(Box::new(WEBHOOK_EVENTS.clone()));
        metrics
    }

    /// The label for an operation name: bounded in length and in number.
    pub fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return "anonymous".to_owned();
        };
        let valid = !name.is_empty()
            && name.len() <= MAX_OPERATION_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return "other".to_owned();
        }
        let Ok(mut seen) = self.operations.lock() else {
            return "other".to_owned();
        };
        if seen.contains(name) {
            return name.to_owned();
        }
        if seen.len() >= MAX_OPERATION_NAMES {
            return "other".to_owned();
        }
        seen.insert(name.to_owned());
        name.to_owned()
    }

    /// One GraphQL operation answered (or refused: operation `none`).
    pub fn graphql(&self, operation: &str, ty: &str, code: &str, seconds: f64) {
        self.graphql_requests
            .with_label_values(&[operation, ty, code])
            .inc();
        self.graphql_duration
            .with_label_values(&[operation, ty])
            .observe(seconds);
    }

    /// An operation counted without a duration (one started over a
    /// WebSocket: it lasts as long as its subscriber listens).
    pub fn graphql_count(&self, operation: &str, ty: &str, code: &str) {
        self.graphql_requests
            .with_label_values(&[operation, ty, code])
            .inc();
    }

    pub fn http(&self, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, status_label(status)])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    pub fn statements_in_request(&self, n: u64) {
        self.statements_per_request.observe(n as f64);
    }

    pub fn cache(&self, hit: bool) {
        self.cache
            .with_label_values(&[if hit { "hit" } else { "miss" }])
            .inc();
    }

    /// One job attempt finished in this process. `kind` is a registered
    /// kind (a runner claims no other), so the label stays bounded.
    pub fn job_run(&self, kind: &str, outcome: &str, seconds: f64) {
        self.job_runs.with_label_values(&[kind, outcome]).inc();
        self.job_run_duration
            .with_label_values(&[kind])
            .observe(seconds);
    }

    pub fn rate_limited(&self, budget: &str) {
        self.rate_limited.with_label_values(&[budget]).inc();
    }

    /// Reads the values that live elsewhere (pool, jobs table, process), then
    /// renders everything in the Prometheus text format.
    pub async fn render(&self, db: &DatabaseConnection, statements: &StatementCounter) -> String {
        let total = statements.get();
        let counted = self.statements_total.get();
        if total > counted {
            self.statements_total.inc_by(total - counted);
        }
        self.pool_stats(db);
        if let Err(e) = self.job_stats(db).await {
            tracing::warn!(error = %e, "metrics: the jobs table could not be read");
        }
        if let Some(rss) = resident_bytes() {
            self.rss.set(rss);
        }
        if let Some(started) = STARTED.get() {
            self.uptime.set(started.elapsed().as_secs_f64());
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn pool_stats(&self, db: &DatabaseConnection) {
        let (size, idle, max) = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => return,
        };
        for (state, v) in [
            ("open", size as i64),
            ("idle", idle as i64),
            ("max", max as i64),
        ] {
            self.pool.with_label_values(&["main", state]).set(v);
        }
    }

    async fn job_stats(&self, db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
        use entity::job;
        let rows: Vec<(String, JobStatus, i64, Option<i64>)> = job::Entity::find()
            .select_only()
            .column(job::Column::Kind)
            .column(job::Column::Status)
            .column_as(Expr::expr(Func::count(Expr::col(job::Column::Id))), "n")
            .column_as(Expr::cust("CAST(SUM(attempts) AS BIGINT)"), "attempts")
            .group_by(job::Column::Kind)
            .group_by(job::Column::Status)
            .into_tuple()
            .all(db)
            .await?;
        self.jobs.reset();
        self.job_attempts.reset();
        for (kind, status, n, attempts) in rows {
            let status = status_name(status);
            self.jobs.with_label_values(&[&kind, status]).set(n);
            self.job_attempts
                .with_label_values(&[&kind, status])
                .set(attempts.unwrap_or(0));
        }
        let now = chrono::Utc::now();
        let due = job::Entity::find()
            .filter(job::Column::Status.eq(JobStatus::Queued))
            .filter(job::Column::RunAt.lte(now));
        let (count, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = due
            .select_only()
            .column_as(Expr::expr(Func::count(Expr::col(job::Column::Id))), "n")
            .column_as(
                Expr::expr(Func::min(Expr::col(job::Column::RunAt))),
                "oldest",
            )
            .into_tuple()
            .one(db)
            .await?
            .unwrap_or((0, None));
        self.jobs_due.set(count);
        self.oldest_due.set(
            oldest
                .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
        );
        Ok(())
    }
}

fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued => "QUEUED",
        JobStatus::Running => "RUNNING",
        JobStatus::Done => "DONE",
        JobStatus::Dead => "DEAD",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// RSS from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
