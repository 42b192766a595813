//! `lockstep bench`: metric latency through the HTTP API against the same
//! SQL run directly, on a seeded database, plus the process's peak memory.

use crate::config::{Config, Secret};
use crate::error::AppError;
use crate::http::App;
use crate::metrics::{self, GroupBy, MetricFilter, Model, Period};
use chrono::Duration;
use entity::enums::Role;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::json;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub database_url: String,
    /// Seed this many leads first when the database has fewer.
    pub leads: u64,
    pub seed: u64,
    /// Timed requests per query (after two warm-ups).
    pub requests: usize,
}

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub name: String,
    pub http_median_ms: f64,
    pub http_p95_ms: f64,
    /// The same query through the service, without HTTP and GraphQL.
    pub sql_median_ms: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub backend: String,
    pub leads: u64,
    pub rows: Vec<BenchRow>,
    /// Peak resident memory of the process (server and client), MiB.
    pub peak_rss_mib: f64,
}

impl BenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### {} — {} leads, one-year period\n\n| query | HTTP median ms | HTTP p95 ms | SQL median ms | HTTP / SQL |\n|---|---:|---:|---:|---:|\n",
            self.backend, self.leads
        );
        for r in &self.rows {
            let (sql, ratio) = match r.sql_median_ms {
                Some(q) => (
                    format!("{q:.1}"),
                    format!("{:.2}", r.http_median_ms / q.max(0.001)),
                ),
                None => ("—".into(), "—".into()),
            };
            s.push_str(&format!(
                "| {} | {:.1} | {:.1} | {} | {} |\n",
                r.name, r.http_median_ms, r.http_p95_ms, sql, ratio
            ));
        }
        s.push_str(&format!(
            "\nPeak RSS of the process (server + client): {:.0} MiB\n",
            self.peak_rss_mib
        ));
        s
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, percentile(&v, 0.95))
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

type SqlFn = fn(
    DatabaseConnection,
    Period,
) -> futures_util::future::BoxFuture<'static, Result<(), AppError>>;

pub async fn run(opts: BenchOptions) -> Result<BenchReport, Box<dyn std::error::Error>> {
    let config = Config {
        database_url: Some(opts.database_url.clone()),
        jwt_secret: Some(Secret(format!(
            "bench-{}-secret-secret-secret-secret",
            std::process::id()
        ))),
        demo: false,
        metrics_cache_secs: 0,
        ..Config::default()
    };
    let app = App::build(config.clone()).await?;
    let db = app.state.db.clone();
    let have = entity::lead::Entity::find().count(&db).await?;
    if have < opts.leads {
        eprintln!(
            "seeding {} leads (the database has {have})…",
            opts.leads - have
        );
        crate::seed::seed(
            &db,
            &crate::seed::SeedOptions {
                leads: opts.leads - have,
                seed: opts.seed,
                progress: true,
            },
        )
        .await?;
    }
    let leads = entity::lead::Entity::find().count(&db).await?;
    let token = app.state.keys.issue(
        Role::Viewer,
        "bench",
        std::time::Duration::from_secs(3600),
        None,
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    let end = crate::seed::anchor();
    let period = Period {
        from: end - Duration::days(365),
        to: end,
    };
    let p = format!(
        r#"period: {{from: "{}", to: "{}"}}"#,
        period.from.to_rfc3339(),
        period.to.to_rfc3339()
    );
    let cases: Vec<(&str, String, Option<SqlFn>)> = vec![
        ("funnel", format!("{{ metrics({p}) {{ funnel {{ stages {{ stage reached conversion medianHoursToNext }} inquiryToWon }} }} }}"),
            Some(|db, p| Box::pin(async move { metrics::funnel(&db, &p, &MetricFilter::default()).await.map(|_| ()) }))),
        ("closedLoop(SOURCE)", format!("{{ metrics({p}) {{ closedLoop(groupBy: SOURCE) {{ key leads mqls opportunities won wonRevenue closeRate avgDealSize medianCycleDays }} }} }}"),
            Some(|db, p| Box::pin(async move { metrics::closed_loop(&db, &p, &MetricFilter::default(), GroupBy::Source).await.map(|_| ()) }))),
        ("closedLoop(CAMPAIGN)", format!("{{ metrics({p}) {{ closedLoop(groupBy: CAMPAIGN) {{ key campaignName leads won wonRevenue }} }} }}"),
            Some(|db, p| Box::pin(async move { metrics::closed_loop(&db, &p, &MetricFilter::default(), GroupBy::Campaign).await.map(|_| ()) }))),
        ("attribution(W_SHAPED)", format!("{{ metrics({p}) {{ attribution(model: W_SHAPED) {{ rows {{ campaignName revenue opportunities }} total }} }} }}"),
            Some(|db, p| Box::pin(async move { metrics::attribution(&db, &p, &MetricFilter::default(), Model::WShaped).await.map(|_| ()) }))),
        ("attribution(LINEAR)", format!("{{ metrics({p}) {{ attribution(model: LINEAR) {{ rows {{ campaignName revenue }} total }} }} }}"),
            Some(|db, p| Box::pin(async move { metrics::attribution(&db, &p, &MetricFilter::default(), Model::Linear).await.map(|_| ()) }))),
        ("winRate + averageDealSize + salesCycle", format!("{{ metrics({p}) {{ winRate averageDealSize salesCycle }} }}"),
            Some(|db, p| Box::pin(async move { metrics::outcomes(&db, &p, &MetricFilter::default()).await.map(|_| ()) }))),
        ("speedToLead", format!("{{ metrics({p}) {{ speedToLead {{ medianHours untouched }} }} }}"),
            Some(|db, p| Box::pin(async move { metrics::speed_to_lead(&db, &p, &MetricFilter::default()).await.map(|_| ()) }))),
        ("retention + pipeline", format!("{{ metrics({p}) {{ retention pipeline {{ total stages {{ stage amount }} }} }} }}"),
            None),
        ("series(LEADS_CREATED, WEEK)", format!("{{ metrics({p}) {{ series(metric: LEADS_CREATED, interval: WEEK) {{ start value }} }} }}"),
            None),
        ("leads(first: 100) + account, owner, stageHistory", "{ leads(first: 100) { nodes { id stage account { name } owner { name } stageHistory { toStage at } } } }".to_owned(),
            None),
    ];
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (name, query, sql) in cases {
        let mut times = Vec::with_capacity(opts.requests);
        for i in 0..opts.requests + 2 {
            let started = Instant::now();
            let resp: serde_json::Value = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({ "query": query }))
                .send()
                .await?
                .json()
                .await?;
            if resp.get("errors").is_some() {
                return Err(format!("{name}: {resp}").into());
            }
            if i >= 2 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let (med, p95) = median(times);
        let sql_median = match sql {
            Some(f) => {
                let mut t = Vec::new();
                for i in 0..opts.requests + 2 {
                    let started = Instant::now();
                    f(db.clone(), period).await?;
                    if i >= 2 {
                        t.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                Some(median(t).0)
            }
            None => None,
        };
        eprintln!("{name}: median {med:.1} ms, p95 {p95:.1} ms, sql {sql_median:?}");
        rows.push(BenchRow {
            name: name.to_owned(),
            http_median_ms: med,
            http_p95_ms: p95,
            sql_median_ms: sql_median,
        });
    }
    let _ = tx.send(());
    let _ = server.await;
    let backend = if opts.database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    Ok(BenchReport {
        backend: backend.into(),
        leads,
        rows,
        peak_rss_mib: peak_rss_mib(),
    })
}
