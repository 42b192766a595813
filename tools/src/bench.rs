//! `lockstep bench`: metric latency through the HTTP API against the same
//! SQL run directly, on a seeded database, plus the process's peak memory.

use api::config::{Config, Secret};
use api::error::AppError;
use api::http::App;
use api::metrics::{self, GroupBy, Interval, MetricFilter, Model, Period, SeriesMetric};
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
    /// Concurrent writers to try, each for `write_secs` seconds, in both
    /// scenarios (distinct and crossed keys).
    pub writers: Vec<usize>,
    pub write_secs: u64,
    /// Only the concurrent writers (no metric or loader timings).
    pub only_writes: bool,
}

#[derive(Debug, Clone)]
pub struct BenchRow {
    pub name: String,
    pub http_median_ms: f64,
    pub http_p95_ms: f64,
    /// The same query through the service, without HTTP and GraphQL.
    pub sql_median_ms: Option<f64>,
    /// Through HTTP with the metric cache on (identical repeated requests).
    pub cached_median_ms: f64,
}

/// The leads page with its relations under concurrent load, per DataLoader delay.
#[derive(Debug, Clone)]
pub struct LoaderRow {
    pub delay_us: u64,
    pub concurrency: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub requests_per_sec: f64,
    pub statements_per_request: f64,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub backend: String,
    pub leads: u64,
    pub rows: Vec<BenchRow>,
    pub loader: Vec<LoaderRow>,
    /// Mutations through HTTP that keep the rollups: (name, median ms, p95 ms).
    pub writes: Vec<(String, f64, f64)>,
    /// Concurrent writers.
    pub write_load: Vec<WriteLoadRow>,
    /// Rebuilding every rollup from the records, ms.
    pub rebuild_ms: f64,
    /// Peak resident memory of the process (server and client), MiB.
    pub peak_rss_mib: f64,
}

impl BenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### {} — {} leads, one-year period\n\n\
             | query | HTTP median ms | HTTP p95 ms | SQL median ms | HTTP / SQL | cached HTTP median ms |\n\
             |---|---:|---:|---:|---:|---:|\n",
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
                "| {} | {:.1} | {:.1} | {} | {} | {:.2} |\n",
                r.name, r.http_median_ms, r.http_p95_ms, sql, ratio, r.cached_median_ms
            ));
        }
        if !self.loader.is_empty() {
            s.push_str(
                "\n`leads(first: 100)` with account, owner and stageHistory, concurrent clients, by DataLoader delay:\n\n\
                 | delay µs | clients | median ms | p95 ms | requests/s | SQL statements / request |\n\
                 |---:|---:|---:|---:|---:|---:|\n",
            );
            for l in &self.loader {
                s.push_str(&format!(
                    "| {} | {} | {:.1} | {:.1} | {:.0} | {:.1} |\n",
                    l.delay_us,
                    l.concurrency,
                    l.median_ms,
                    l.p95_ms,
                    l.requests_per_sec,
                    l.statements_per_request
                ));
            }
        }
        if !self.writes.is_empty() {
            s.push_str(
                "\nWrites through HTTP (ADMIN), each keeping the rollups in its transaction:\n\n\
                 | mutation | median ms | p95 ms |\n|---|---:|---:|\n",
            );
            for (name, med, p95) in &self.writes {
                s.push_str(&format!("| {name} | {med:.1} | {p95:.1} |\n"));
            }
        }
        if !self.write_load.is_empty() {
            s.push_str(
                "\nConcurrent writers through HTTP (ADMIN):\n\n\
                 | scenario | writers | writes | writes/s | p50 ms | p99 ms | errors | SQL statements / write |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for r in &self.write_load {
                s.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.1} |\n",
                    r.scenario,
                    r.writers,
                    r.writes,
                    r.per_sec,
                    r.p50_ms,
                    r.p99_ms,
                    r.errors,
                    r.statements_per_write
                ));
            }
        }
        s.push_str(&format!(
            "\nRebuilding every rollup from the records: {:.0} ms\n",
            self.rebuild_ms
        ));
        s.push_str(&format!(
            "\nPeak RSS of the process (servers + client): {:.0} MiB\n",
            self.peak_rss_mib
        ));
        s
    }
}

/// The `p` quantile of sorted values (0 when there are none).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
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

/// A server of its own on `127.0.0.1:0`.
struct Server {
    url: String,
    state: api::http::AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(config: Config) -> Result<Server, Box<dyn std::error::Error>> {
    let app = App::build(config).await?;
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    Ok(Server {
        url,
        state,
        stop,
        task,
    })
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = self.state.db.close().await;
    }
}

/// Milliseconds of each of `n` requests (after two warm-ups).
async fn time_requests(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    n: usize,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 2 {
        let started = Instant::now();
        post(client, url, token, query, json!({})).await?;
        if i >= 2 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(times)
}

/// One GraphQL request: the whole response, or its errors as the error.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: serde_json::Value,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let resp: serde_json::Value = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    if resp.get("errors").is_some() {
        return Err(format!("{query}: {resp}").into());
    }
    Ok(resp)
}

/// A lead's way to a won deal, one mutation at a time, `n` times over: what
/// keeping the rollups costs each write on a database of this size.
async fn time_writes(
    client: &reqwest::Client,
    server: &Server,
    n: usize,
) -> Result<Vec<(String, f64, f64)>, Box<dyn std::error::Error>> {
    let token = server
        .state
        .keys
        .issue(
            Role::Admin,
            "bench-writer",
            std::time::Duration::from_secs(3600),
            None,
        )
        .map_err(api::error::Failure)?;
    let url = &server.url;
    let first = |d: &serde_json::Value, list: &str| {
        d["data"][list]["nodes"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let d = post(
        client,
        url,
        &token,
        "{ accounts(first: 1) { nodes { id } } campaigns(first: 1) { nodes { id } } }",
        json!({}),
    )
    .await?;
    let (account, campaign) = (first(&d, "accounts"), first(&d, "campaigns"));
    let steps = [
        "createLead",
        "recordTouchpoint",
        "changeLeadStage (MQL)",
        "convertLead",
        "changeOpportunityStage (CLOSED_WON)",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); steps.len()];
    // Step `k`: one mutation, timed; its `data`.
    let mut step = async |k: usize, query: &str, variables: serde_json::Value| {
        let started = Instant::now();
        let resp = post(client, url, &token, query, variables).await?;
        times[k].push(started.elapsed().as_secs_f64() * 1000.0);
        Ok::<_, Box<dyn std::error::Error>>(resp["data"].clone())
    };
    let id = |d: &serde_json::Value, path: &[&str]| {
        path.iter()
            .fold(d, |v, k| &v[*k])
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let run = std::process::id();
    for i in 0..n {
        let d = step(
            0,
            "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
            json!({"i": {"email": format!("bench-{run}-{i}@example.com"), "accountId": account, "campaignId": campaign, "source": "EMAIL"}}),
        )
        .await?;
        let lead = id(&d, &["createLead", "id"]);
        step(
            1,
            "mutation($i: TouchpointInput!) { recordTouchpoint(input: $i) { id } }",
            json!({"i": {"leadId": lead, "campaignId": campaign}}),
        )
        .await?;
        step(
            2,
            "mutation($id: ID!) { changeLeadStage(id: $id, to: MQL) { id } }",
            json!({"id": lead}),
        )
        .await?;
        let d = step(
            3,
            "mutation($id: ID!) { convertLead(id: $id, opportunity: {name: \"bench\", amount: \"1000\"}) { opportunity { id } } }",
            json!({"id": lead}),
        )
        .await?;
        let opp = id(&d, &["convertLead", "opportunity", "id"]);
        step(
            4,
            "mutation($id: ID!) { changeOpportunityStage(id: $id, to: CLOSED_WON) { id } }",
            json!({"id": opp}),
        )
        .await?;
    }
    Ok(steps
        .iter()
        .zip(times)
        .map(|(name, t)| {
            let (med, p95) = median(t);
            eprintln!("{name}: median {med:.1} ms, p95 {p95:.1} ms");
            (name.to_string(), med, p95)
        })
        .collect())
}

/// The service call behind a case, timed without HTTP and GraphQL.
macro_rules! sql {
    (|$db:ident, $p:ident| $call:expr) => {
        |$db, $p| Box::pin(async move { $call.await.map(|_| ()) })
    };
}

pub async fn run(opts: BenchOptions) -> Result<BenchReport, Box<dyn std::error::Error>> {
    let config = Config {
        database_url: Some(opts.database_url.clone()),
        jwt_secret: Some(Secret(format!(
            "bench-{}-secret-secret-secret-secret",
            std::process::id()
        ))),
        demo: false,
        metrics_cache_secs: 0,
        // The bench's one VIEWER fires far past any per-subject budget.
        rate_limits: api::config::RateLimits {
            enabled: false,
            ..Default::default()
        },
        ..Config::default()
    };
    let server = start(config.clone()).await?;
    let db = server.state.db.clone();
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
        .await
        .map_err(api::error::Failure)?;
    }
    let leads = entity::lead::Entity::find().count(&db).await?;
    let client = reqwest::Client::new();
    let mut write_load = Vec::new();
    for &writers in &opts.writers {
        for crossed in [false, true] {
            write_load
                .push(write_load_row(&client, &server, writers, opts.write_secs, crossed).await?);
        }
    }
    if opts.only_writes {
        server.stop().await;
        return Ok(BenchReport {
            backend: backend_name(&opts.database_url).into(),
            leads,
            rows: Vec::new(),
            loader: Vec::new(),
            writes: Vec::new(),
            write_load,
            rebuild_ms: 0.0,
            peak_rss_mib: peak_rss_mib(),
        });
    }
    let cached = start(Config {
        metrics_cache_secs: 30,
        ..config.clone()
    })
    .await?;
    let token = server
        .state
        .keys
        .issue(
            Role::Viewer,
            "bench",
            std::time::Duration::from_secs(3600),
            None,
        )
        .map_err(api::error::Failure)?;
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
    // (name, the selection under `metrics`, the same metric through the service)
    let cases: Vec<(&str, &str, SqlFn)> = vec![
        (
            "funnel",
            "funnel { stages { stage reached conversion medianHoursToNext } inquiryToWon }",
            sql!(|db, p| metrics::funnel(&db, &p, &MetricFilter::default())),
        ),
        (
            "closedLoop(SOURCE)",
            "closedLoop(groupBy: SOURCE) { key leads mqls opportunities won wonRevenue closeRate avgDealSize medianCycleDays }",
            sql!(|db, p| metrics::closed_loop(
                &db,
                &p,
                &MetricFilter::default(),
                GroupBy::Source,
                metrics::Cycle::With
            )),
        ),
        (
            "closedLoop(CAMPAIGN)",
            "closedLoop(groupBy: CAMPAIGN) { key campaignName leads mqls opportunities won wonRevenue closeRate avgDealSize medianCycleDays }",
            sql!(|db, p| metrics::closed_loop(
                &db,
                &p,
                &MetricFilter::default(),
                GroupBy::Campaign,
                metrics::Cycle::With
            )),
        ),
        (
            "attribution(W_SHAPED)",
            "attribution(model: W_SHAPED) { rows { campaignName revenue opportunities } total }",
            sql!(|db, p| metrics::attribution(&db, &p, &MetricFilter::default(), Model::WShaped)),
        ),
        (
            "attribution(LINEAR)",
            "attribution(model: LINEAR) { rows { campaignName revenue opportunities } total }",
            sql!(|db, p| metrics::attribution(&db, &p, &MetricFilter::default(), Model::Linear)),
        ),
        (
            "attribution(FIRST_TOUCH)",
            "attribution(model: FIRST_TOUCH) { rows { campaignName revenue opportunities } total }",
            sql!(|db, p| metrics::attribution(
                &db,
                &p,
                &MetricFilter::default(),
                Model::FirstTouch
            )),
        ),
        (
            "winRate + averageDealSize + salesCycle",
            "winRate averageDealSize salesCycle",
            sql!(|db, p| metrics::outcomes(&db, &p, &MetricFilter::default())),
        ),
        (
            "speedToLead",
            "speedToLead { medianHours touched untouched }",
            sql!(|db, p| metrics::speed_to_lead(&db, &p, &MetricFilter::default())),
        ),
        (
            "retention",
            "retention",
            sql!(|db, p| metrics::retention(&db, &p, &MetricFilter::default())),
        ),
        (
            "pipeline",
            "pipeline { total stages { stage count amount } }",
            sql!(|db, p| metrics::pipeline(&db, &p, &MetricFilter::default())),
        ),
        (
            "series(LEADS_CREATED, WEEK)",
            "series(metric: LEADS_CREATED, interval: WEEK) { start value }",
            sql!(|db, p| metrics::series(
                &db,
                &p,
                &MetricFilter::default(),
                SeriesMetric::LeadsCreated,
                Interval::Week
            )),
        ),
        (
            "series(WON_REVENUE, MONTH)",
            "series(metric: WON_REVENUE, interval: MONTH) { start amount }",
            sql!(|db, p| metrics::series(
                &db,
                &p,
                &MetricFilter::default(),
                SeriesMetric::WonRevenue,
                Interval::Month
            )),
        ),
    ];
    let mut rows = Vec::new();
    for (name, selection, sql) in cases {
        let query = format!("{{ metrics({p}) {{ {selection} }} }}");
        let (med, p95) =
            median(time_requests(&client, &server.url, &token, &query, opts.requests).await?);
        let mut t = Vec::new();
        for i in 0..opts.requests + 2 {
            let started = Instant::now();
            sql(db.clone(), period).await.map_err(api::error::Failure)?;
            if i >= 2 {
                t.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let sql_median = Some(median(t).0);
        let (cached_med, _) =
            median(time_requests(&client, &cached.url, &token, &query, opts.requests).await?);
        eprintln!(
            "{name}: median {med:.1} ms, p95 {p95:.1} ms, sql {sql_median:?}, cached {cached_med:.2} ms"
        );
        rows.push(BenchRow {
            name: name.to_owned(),
            http_median_ms: med,
            http_p95_ms: p95,
            sql_median_ms: sql_median,
            cached_median_ms: cached_med,
        });
    }
    cached.stop().await;
    let writes = time_writes(&client, &server, opts.requests).await?;
    let started = Instant::now();
    api::metrics::rollups::rebuild(&db).await?;
    let rebuild_ms = started.elapsed().as_secs_f64() * 1000.0;
    eprintln!("rollups rebuilt in {rebuild_ms:.0} ms");
    server.stop().await;

    // DataLoader's batching delay under load: the leads page with its relations.
    let mut loader = Vec::new();
    let list = "{ leads(first: 100) { nodes { id stage account { name } owner { name } stageHistory { toStage at } } } }";
    for delay_us in [0u64, 1_000, 10_000] {
        let server = start(Config {
            loader_delay_us: delay_us,
            ..config.clone()
        })
        .await?;
        let concurrency = 8;
        let per_client = opts.requests.max(5);
        let before = server.state.statements.get();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, token) = (client.clone(), server.url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                time_requests(&client, &url, &token, list, per_client)
                    .await
                    .map_err(|e| e.to_string())
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let total = concurrency * (per_client + 2);
        let statements = (server.state.statements.get() - before) as f64 / total as f64;
        let (med, p95) = median(times);
        eprintln!("loader delay {delay_us} µs: median {med:.1} ms, p95 {p95:.1} ms");
        loader.push(LoaderRow {
            delay_us,
            concurrency,
            median_ms: med,
            p95_ms: p95,
            requests_per_sec: total as f64 / elapsed,
            statements_per_request: statements,
        });
        server.stop().await;
    }
    Ok(BenchReport {
        backend: backend_name(&opts.database_url).into(),
        leads,
        rows,
        loader,
        writes,
        write_load,
        rebuild_ms,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Concurrent writers through HTTP for a while: writes per second, p50 and
/// p99 latency, and how many came back with an error.
#[derive(Debug, Clone)]
pub struct WriteLoadRow {
    pub scenario: &'static str,
    pub writers: usize,
    pub writes: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// SQL statements the server issued per write (BEGIN and COMMIT included).
    pub statements_per_write: f64,
}

/// One timed write; an error is counted and logged.
#[allow(clippy::too_many_arguments)]
async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    times: &mut Vec<f64>,
    errors: &mut u64,
    query: &str,
    vars: serde_json::Value,
) -> Option<serde_json::Value> {
    let t = Instant::now();
    let resp = post(client, url, token, query, vars).await;
    times.push(t.elapsed().as_secs_f64() * 1000.0);
    match resp {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "bench write failed");
            *errors += 1;
            None
        }
    }
}

/// A writer's deterministic choices (xorshift).
struct Pick(u64);

const SOURCES: [&str; 3] = ["WEB", "EVENT", "PAID"];

impl Pick {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 1) as usize
    }
}

/// `writers` clients for `secs` seconds. `crossed`: they reassign 40 shared
/// leads between 4 owners and 3 campaigns, change their stages and create
/// two-lead batches whose owners come in opposite orders; otherwise each
/// repeats createLead → recordTouchpoint → changeLeadStage(MQL) on a
/// campaign of its own.
async fn write_load_row(
    client: &reqwest::Client,
    server: &Server,
    writers: usize,
    secs: u64,
    crossed: bool,
) -> Result<WriteLoadRow, Box<dyn std::error::Error>> {
    let token = server
        .state
        .keys
        .issue(
            Role::Admin,
            "bench-writer",
            std::time::Duration::from_secs(3600),
            None,
        )
        .map_err(api::error::Failure)?;
    let url = server.url.clone();
    let run = std::process::id();
    let new_id = |d: serde_json::Value, field: &str| {
        d["data"][field]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut campaigns = Vec::new();
    for i in 0..writers.max(3) {
        let d = post(
            client,
            &url,
            &token,
            "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
            json!({"i": {"name": format!("bench {run} {i}"), "channel": "EMAIL", "kind": "WEBINAR", "startsAt": "2026-01-01T00:00:00Z"}}),
        )
        .await?;
        campaigns.push(new_id(d, "createCampaign"));
    }
    let mut owners = Vec::new();
    let mut leads = Vec::new();
    if crossed {
        for i in 0..4 {
            let d = post(
                client,
                &url,
                &token,
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({"i": {"email": format!("bench-{run}-{writers}-{i}@example.com"), "name": "Bench owner", "role": "MEMBER"}}),
            )
            .await?;
            owners.push(new_id(d, "createUser"));
        }
        for i in 0..40 {
            let d = post(
                client,
                &url,
                &token,
                "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                json!({"i": {"email": format!("bench-{run}-{writers}-shared-{i}@example.com"), "ownerId": owners[i % 4], "campaignId": campaigns[i % 3]}}),
            )
            .await?;
            leads.push(new_id(d, "createLead"));
        }
    }
    let (campaigns, owners, leads) = (
        std::sync::Arc::new(campaigns),
        std::sync::Arc::new(owners),
        std::sync::Arc::new(leads),
    );
    let until = Instant::now() + std::time::Duration::from_secs(secs);
    let statements_before = server.state.statements.get();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let (campaigns, owners, leads) = (campaigns.clone(), owners.clone(), leads.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0u64;
            let mut pick = Pick(0x9E37_79B9_7F4A_7C15 ^ ((w as u64 + 1) << 17));
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                if crossed {
                    let lead = &leads[pick.next() % leads.len()];
                    match pick.next() % 3 {
                        0 => {
                            timed(&client, &url, &token, &mut times, &mut errors,
                                "mutation($id: ID!, $i: LeadInput!) { updateLead(id: $id, input: $i) { id } }",
                                json!({"id": lead, "i": {"ownerId": owners[pick.next() % 4], "campaignId": campaigns[pick.next() % 3], "source": SOURCES[pick.next() % 3]}}),
                            )
                            .await;
                        }
                        1 => {
                            // Two writers may ask for the stage the lead is at: a client error, not a failure.
                            let to = ["INQUIRY", "MQL", "SAL", "SQL"][pick.next() % 4];
                            let t = Instant::now();
                            let resp = post(&client, &url, &token, "mutation($id: ID!, $to: LeadStage!) { changeLeadStage(id: $id, to: $to) { id } }", json!({"id": lead, "to": to})).await;
                            times.push(t.elapsed().as_secs_f64() * 1000.0);
                            if let Err(e) = resp
                                && !e.to_string().contains("BAD_USER_INPUT")
                                && !e.to_string().contains("already")
                            {
                                tracing::warn!(error = %e, "bench write failed");
                                errors += 1;
                            }
                        }
                        _ => {
                            let (a, b) = (owners[pick.next() % 4].clone(), owners[pick.next() % 4].clone());
                            let order = if w % 2 == 0 { [a, b] } else { [b, a] };
                            let inputs: Vec<serde_json::Value> = order
                                .iter()
                                .enumerate()
                                .map(|(k, o)| json!({"email": format!("bench-{run}-{writers}-w{w}-{i}-{k}@example.com"), "ownerId": o, "campaignId": campaigns[k % 3], "stage": "MQL"}))
                                .collect();
                            timed(&client, &url, &token, &mut times, &mut errors,
                                "mutation($i: [LeadInput!]!) { createLeads(inputs: $i) { id } }",
                                json!({ "i": inputs }),
                            )
                            .await;
                        }
                    }
                } else {
                    let campaign = &campaigns[w];
                    let Some(d) = timed(&client, &url, &token, &mut times, &mut errors,
                        "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                        json!({"i": {"email": format!("bench-{run}-{writers}-w{w}-{i}@example.com"), "campaignId": campaign, "source": "EMAIL"}}),
                    )
                    .await
                    else {
                        continue;
                    };
                    let lead = d["data"]["createLead"]["id"].as_str().unwrap_or_default().to_owned();
                    timed(&client, &url, &token, &mut times, &mut errors,
                        "mutation($i: TouchpointInput!) { recordTouchpoint(input: $i) { id } }",
                        json!({"i": {"leadId": lead, "campaignId": campaign}}),
                    )
                    .await;
                    timed(&client, &url, &token, &mut times, &mut errors,
                        "mutation($id: ID!) { changeLeadStage(id: $id, to: MQL) { id } }",
                        json!({ "id": lead }),
                    )
                    .await;
                }
            }
            (times, errors)
        }));
    }
    let mut times = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (t, e) = t.await?;
        times.extend(t);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let statements = server.state.statements.get() - statements_before;
    times.sort_by(|a, b| a.total_cmp(b));
    let row = WriteLoadRow {
        statements_per_write: statements as f64 / times.len().max(1) as f64,
        scenario: if crossed {
            "crossed keys"
        } else {
            "distinct keys"
        },
        writers,
        writes: times.len() as u64,
        per_sec: times.len() as f64 / elapsed,
        p50_ms: percentile(&times, 0.50),
        p99_ms: percentile(&times, 0.99),
        errors,
    };
    eprintln!(
        "{} writers, {}: {:.0} writes/s, p50 {:.1} ms, p99 {:.1} ms, {} errors, {:.1} statements/write",
        row.writers,
        row.scenario,
        row.per_sec,
        row.p50_ms,
        row.p99_ms,
        row.errors,
        row.statements_per_write
    );
    Ok(row)
}

fn backend_name(url: &str) -> &'static str {
    if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}
