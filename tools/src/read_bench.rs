//! `lockstep bench-reads`: the read-path comparison. Against a running
//! Lockstep server (`lockstep serve`, started apart so that two builds meet
//! the same client), and optionally against PostGraphile serving the same
//! database and against plain SQL (pgbench), it runs the three plain read
//! workloads — one lead by id with its stage history; 100 leads by creation
//! with account and owner names; 100 MQL leads of one source, same fields —
//! for a while at each client count, and the dashboard mix (metrics over
//! varied periods, Lockstep only). Before timing anything it checks that
//! every system returns the same rows. Prints requests/s, p50 and p99 per
//! system and round, and the ratios. `bench/compare.sh` starts everything.

use crate::bench::percentile;
use api::auth::JwtKeys;
use api::config::{Config, Secret};
use chrono::{DateTime, Duration as Days};
use entity::enums::Role;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ReadBenchOptions {
    /// Lockstep's GraphQL endpoint, e.g. `http://127.0.0.1:8080/graphql`.
    pub url: String,
    /// The server's JWT secret (an ADMIN token is made with it).
    pub jwt_secret: String,
    /// Concurrent clients to try.
    pub clients: Vec<usize>,
    /// Seconds each (workload, clients) run lasts, after a short warm-up.
    pub secs: u64,
    /// How many times the whole set of runs is repeated.
    pub rounds: usize,
    /// PostGraphile's GraphQL endpoint on the same database, to compare with.
    pub postgraphile: Option<String>,
    /// The database, for the plain-SQL floor (runs `pgbench`).
    pub database_url: Option<String>,
    /// Also run the dashboard mix (metrics, Lockstep only).
    pub dashboard: bool,
    /// Only the read workloads whose name contains this (all when `None`):
    /// profiling one workload at a time.
    pub only: Option<String>,
}

/// Who answered a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    Lockstep,
    PostGraphile,
    /// The same rows by SQL, through pgbench (requests are transactions).
    Sql,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Lockstep => "Lockstep",
            System::PostGraphile => "PostGraphile",
            System::Sql => "SQL (pgbench)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadRow {
    pub workload: &'static str,
    pub system: System,
    pub clients: usize,
    pub round: usize,
    pub requests: u64,
    pub per_sec: f64,
    /// pgbench reports the average latency: it stands in for the p50.
    pub p50_ms: f64,
    /// Not known for pgbench (NaN).
    pub p99_ms: f64,
    pub errors: u64,
}

/// Every run, then per workload and client count the ranges over rounds and
/// the ratios of the medians.
pub fn markdown(rows: &[ReadRow]) -> String {
    let mut s = String::from(
        "| workload | system | clients | round | req/s | p50 ms | p99 ms | errors |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let p99 = if r.p99_ms.is_nan() {
            "–".to_owned()
        } else {
            format!("{:.2}", r.p99_ms)
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {p99} | {} |\n",
            r.workload,
            r.system.name(),
            r.clients,
            r.round,
            r.per_sec,
            r.p50_ms,
            r.errors
        ));
    }
    let mut groups: BTreeMap<(&str, usize), BTreeMap<System, Vec<&ReadRow>>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.workload, r.clients))
            .or_default()
            .entry(r.system)
            .or_default()
            .push(r);
    }
    s.push_str(
        "\n| workload | clients | Lockstep req/s | PostGraphile req/s | SQL req/s | Lockstep / PostGraphile | Lockstep / SQL | p99 ms Lockstep / PostGraphile |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let range = |v: Option<&Vec<&ReadRow>>| match v {
        Some(v) if !v.is_empty() => {
            let lo = v.iter().map(|r| r.per_sec).fold(f64::INFINITY, f64::min);
            let hi = v.iter().map(|r| r.per_sec).fold(0.0, f64::max);
            format!("{lo:.0}–{hi:.0}")
        }
        _ => "–".to_owned(),
    };
    let median = |v: Option<&Vec<&ReadRow>>, f: fn(&ReadRow) -> f64| -> Option<f64> {
        let mut xs: Vec<f64> = v?.iter().map(|r| f(r)).collect();
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        Some(xs[xs.len() / 2])
    };
    for ((workload, clients), by) in &groups {
        let l = by.get(&System::Lockstep);
        let g = by.get(&System::PostGraphile);
        let q = by.get(&System::Sql);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "–".to_owned(),
        };
        let p99 = match (median(l, |r| r.p99_ms), median(g, |r| r.p99_ms)) {
            (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
            _ => "–".to_owned(),
        };
        s.push_str(&format!(
            "| {workload} | {clients} | {} | {} | {} | {} | {} | {p99} |\n",
            range(l),
            range(g),
            range(q),
            ratio(median(l, |r| r.per_sec), median(g, |r| r.per_sec)),
            ratio(median(l, |r| r.per_sec), median(q, |r| r.per_sec)),
        ));
    }
    s
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One GraphQL request; `Err` for a transport error or any GraphQL error.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: &Value,
) -> Result<Value, Error> {
    let mut req = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp: Value = req.send().await?.json().await?;
    if resp.get("errors").is_some() {
        return Err(format!("{query}: {resp}").into());
    }
    Ok(resp)
}

/// A read workload as each system asks for it.
struct Workload {
    name: &'static str,
    /// Lockstep's query, PostGraphile's, and the SQL of the floor (`:lid`
    /// is the lead id, as a pgbench variable).
    lockstep: String,
    postgraphile: String,
    sql: &'static str,
    /// Takes a lead id as `$id`.
    with_id: bool,
}

const LOCKSTEP_FIELDS: &str = "id email stage createdAt account { name } owner { name }";
const POSTGRAPHILE_FIELDS: &str =
    "id email stage createdAt accountByAccountId { name } userByOwnerId { name }";
const PAGE_SQL: &str = "SELECT l.id, l.email, l.stage, l.created_at, a.name, u.name FROM leads l \
     LEFT JOIN accounts a ON a.id = l.account_id LEFT JOIN users u ON u.id = l.owner_id";

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "one lead by id with stage history",
            lockstep: "query ($id: ID!) { lead(id: $id) { id email stage stageHistory { fromStage toStage at } } }".into(),
            postgraphile: "query ($id: UUID!) { lead: leadById(id: $id) { id email stage stageHistory: stageChangesByLeadId(orderBy: [AT_ASC, ID_ASC]) { nodes { fromStage toStage at } } } }".into(),
            sql: "SELECT l.id, l.email, l.stage, sc.from_stage, sc.to_stage, sc.at FROM leads l \
                  LEFT JOIN stage_changes sc ON sc.lead_id = l.id WHERE l.id = :lid ORDER BY sc.at, sc.id;",
            with_id: true,
        },
        Workload {
            name: "100 leads by creation, account and owner names",
            lockstep: format!("{{ leads(first: 100) {{ nodes {{ {LOCKSTEP_FIELDS} }} }} }}"),
            postgraphile: format!(
                "{{ leads: allLeads(first: 100, orderBy: [CREATED_AT_DESC, ID_DESC]) {{ nodes {{ {POSTGRAPHILE_FIELDS} }} }} }}"
            ),
            sql: "ORDER BY l.created_at DESC, l.id DESC LIMIT 100;",
            with_id: false,
        },
        Workload {
            name: "100 MQL leads of one source, same fields",
            lockstep: format!(
                "{{ leads(first: 100, filter: {{stage: [MQL], source: [PAID]}}) {{ nodes {{ {LOCKSTEP_FIELDS} }} }} }}"
            ),
            postgraphile: format!(
                "{{ leads: allLeads(first: 100, orderBy: [CREATED_AT_DESC, ID_DESC], condition: {{stage: \"MQL\", source: \"PAID\"}}) {{ nodes {{ {POSTGRAPHILE_FIELDS} }} }} }}"
            ),
            sql: "WHERE l.stage = 'MQL' AND l.source = 'PAID' ORDER BY l.created_at DESC, l.id DESC LIMIT 100;",
            with_id: false,
        },
    ]
}

impl Workload {
    fn query(&self, system: System) -> &str {
        match system {
            System::PostGraphile => &self.postgraphile,
            _ => &self.lockstep,
        }
    }

    fn sql(&self) -> String {
        if self.with_id {
            self.sql.to_owned()
        } else {
            format!("{PAGE_SQL} {}", self.sql)
        }
    }
}

/// A timestamp as microseconds since the epoch (the systems format them
/// differently), or the text as given.
fn instant(v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros().to_string())
        .unwrap_or_else(|_| s.to_owned())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// The rows of a response, one line each, comparable across systems.
pub fn rows_of(resp: &Value) -> Vec<String> {
    let data = &resp["data"];
    if let Some(lead) = data.get("lead") {
        let mut out = vec![format!(
            "{}|{}|{}",
            text(&lead["id"]),
            text(&lead["email"]),
            text(&lead["stage"])
        )];
        let history = lead["stageHistory"]
            .get("nodes")
            .unwrap_or(&lead["stageHistory"]);
        for c in history.as_array().into_iter().flatten() {
            out.push(format!(
                "{}>{}@{}",
                text(&c["fromStage"]),
                text(&c["toStage"]),
                instant(&c["at"])
            ));
        }
        return out;
    }
    data["leads"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let account = n.get("account").unwrap_or(&n["accountByAccountId"]);
            let owner = n.get("owner").unwrap_or(&n["userByOwnerId"]);
            format!(
                "{}|{}|{}|{}|{}|{}",
                text(&n["id"]),
                text(&n["email"]),
                text(&n["stage"]),
                instant(&n["createdAt"]),
                text(&account["name"]),
                text(&owner["name"])
            )
        })
        .collect()
}

/// A system under load: its endpoint and the token it needs.
#[derive(Clone)]
struct Target {
    system: System,
    url: String,
    token: Option<String>,
}

pub async fn run(opts: ReadBenchOptions) -> Result<Vec<ReadRow>, Error> {
    let keys = JwtKeys::from_config(&Config {
        jwt_secret: Some(Secret(opts.jwt_secret.clone())),
        ..Config::default()
    })?;
    let token = keys
        .issue(Role::Admin, "read-bench", Duration::from_secs(3600), None)
        .map_err(|e| e.detail())?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut targets = vec![Target {
        system: System::Lockstep,
        url: opts.url.clone(),
        token: Some(token.clone()),
    }];
    if let Some(url) = &opts.postgraphile {
        targets.push(Target {
            system: System::PostGraphile,
            url: url.clone(),
            token: None,
        });
    }
    // Lead ids to look up: the newest 500 and the oldest 500.
    let mut ids = Vec::new();
    for order in ["DESC", "ASC"] {
        let q = format!(
            "{{ leads(first: 500, orderBy: {{field: CREATED_AT, direction: {order}}}) {{ nodes {{ id }} }} }}"
        );
        let resp = post(&client, &opts.url, Some(&token), &q, &json!({})).await?;
        if let Some(nodes) = resp["data"]["leads"]["nodes"].as_array() {
            ids.extend(
                nodes
                    .iter()
                    .filter_map(|n| n["id"].as_str().map(str::to_owned)),
            );
        }
    }
    if ids.is_empty() {
        return Err("the database has no leads: seed it first".into());
    }
    let ids = Arc::new(ids);
    let workloads: Vec<Workload> = workloads()
        .into_iter()
        .filter(|w| opts.only.as_deref().is_none_or(|o| w.name.contains(o)))
        .collect();
    for w in &workloads {
        same_rows(&client, &targets, w, &ids).await?;
    }
    let mut rows = Vec::new();
    for round in 1..=opts.rounds.max(1) {
        for w in &workloads {
            for &clients in &opts.clients {
                for t in &targets {
                    let row = http_run(&client, t, w, &ids, clients, opts.secs, round).await?;
                    report(&row);
                    rows.push(row);
                }
                if let Some(db) = &opts.database_url {
                    let row = pgbench(db, w, &ids[0], clients, opts.secs, round).await?;
                    report(&row);
                    rows.push(row);
                }
            }
        }
        if opts.dashboard {
            for &clients in &opts.clients {
                let row = dashboard(&client, &targets[0], clients, opts.secs, round).await?;
                report(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn report(row: &ReadRow) {
    eprintln!(
        "round {}: {}, {}, {} clients: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
        row.round,
        row.workload,
        row.system.name(),
        row.clients,
        row.per_sec,
        row.p50_ms,
        row.p99_ms,
        row.errors
    );
}

/// Every system returns the same rows for the workload (for 20 of the ids
/// when it takes one); otherwise the comparison would be of different work.
async fn same_rows(
    client: &reqwest::Client,
    targets: &[Target],
    w: &Workload,
    ids: &[String],
) -> Result<(), Error> {
    let picks: Vec<Option<&String>> = if w.with_id {
        ids.iter()
            .step_by((ids.len() / 20).max(1))
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    for id in picks {
        let vars = id.map_or(json!({}), |id| json!({ "id": id }));
        let mut first: Option<(System, Vec<String>)> = None;
        for t in targets {
            let resp = post(client, &t.url, t.token.as_deref(), w.query(t.system), &vars).await?;
            let rows = rows_of(&resp);
            if rows.is_empty() {
                return Err(format!("{}: {} returned no rows", w.name, t.system.name()).into());
            }
            match &first {
                None => first = Some((t.system, rows)),
                Some((s, want)) if *want != rows => {
                    let at = want.iter().zip(&rows).position(|(a, b)| a != b);
                    return Err(format!(
                        "{}: {} and {} return different rows ({} and {} rows; first difference at {at:?}: {:?} / {:?})",
                        w.name,
                        s.name(),
                        t.system.name(),
                        want.len(),
                        rows.len(),
                        at.and_then(|i| want.get(i)),
                        at.and_then(|i| rows.get(i)),
                    )
                    .into());
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

async fn http_run(
    client: &reqwest::Client,
    t: &Target,
    w: &Workload,
    ids: &Arc<Vec<String>>,
    clients: usize,
    secs: u64,
    round: usize,
) -> Result<ReadRow, Error> {
    let query = Arc::new(vec![(w.name, w.query(t.system).to_owned())]);
    let vars = |i: usize| {
        if w.with_id {
            json!({ "id": ids[i % ids.len()] })
        } else {
            json!({})
        }
    };
    // Warm-up: a second at this concurrency, not counted.
    load(client, t, &query, &vars, clients, 1).await?;
    let (times, errors, elapsed) = load(client, t, &query, &vars, clients, secs).await?;
    let all: Vec<f64> = times.into_iter().map(|(_, ms)| ms).collect();
    Ok(row(w.name, t.system, clients, round, all, errors, elapsed))
}

fn row(
    workload: &'static str,
    system: System,
    clients: usize,
    round: usize,
    mut times: Vec<f64>,
    errors: u64,
    elapsed: f64,
) -> ReadRow {
    times.sort_by(f64::total_cmp);
    ReadRow {
        workload,
        system,
        clients,
        round,
        requests: times.len() as u64,
        per_sec: times.len() as f64 / elapsed,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        errors,
    }
}

/// `clients` loops posting the queries (in turn, each loop starting
/// elsewhere) for `secs` seconds: each successful request's query index and
/// milliseconds, the errors, and the seconds it took.
async fn load(
    client: &reqwest::Client,
    t: &Target,
    queries: &Arc<Vec<(&'static str, String)>>,
    vars: &dyn Fn(usize) -> Value,
    clients: usize,
    secs: u64,
) -> Result<(Vec<(usize, f64)>, u64, f64), Error> {
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        // The variables of the first 10,000 requests of this client.
        let variables: Vec<Value> = (0..10_000).map(|i| vars(c * 7919 + i)).collect();
        let (client, t, queries) = (client.clone(), t.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < until {
                let q = i % queries.len();
                let v = &variables[i % variables.len()];
                i += 1;
                let start = Instant::now();
                match post(&client, &t.url, t.token.as_deref(), &queries[q].1, v).await {
                    Ok(_) => times.push((q, start.elapsed().as_secs_f64() * 1000.0)),
                    Err(_) => errors += 1,
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
    Ok((times, errors, started.elapsed().as_secs_f64()))
}

/// The dashboard mix: each client asks in turn for the funnel, closed loop,
/// attribution, win rate, speed to lead, pipeline and a series, each over
/// one of five periods of the seeded data (the server's metric cache should
/// be off). Prints each metric's median; the row is the whole mix.
async fn dashboard(
    client: &reqwest::Client,
    t: &Target,
    clients: usize,
    secs: u64,
    round: usize,
) -> Result<ReadRow, Error> {
    let end = crate::seed::anchor();
    let periods: Vec<String> = [(365, 0), (90, 0), (30, 0), (180, 90), (730, 365)]
        .iter()
        .map(|(from, to)| {
            format!(
                r#"period: {{from: "{}", to: "{}"}}"#,
                (end - Days::days(*from)).to_rfc3339(),
                (end - Days::days(*to)).to_rfc3339()
            )
        })
        .collect();
    let metrics: [(&'static str, &str); 7] = [
        (
            "funnel",
            "funnel { stages { stage reached conversion medianHoursToNext } inquiryToWon }",
        ),
        (
            "closedLoop",
            "closedLoop(groupBy: SOURCE) { key leads mqls opportunities won wonRevenue }",
        ),
        (
            "attribution",
            "attribution(model: W_SHAPED) { rows { campaignName revenue } total }",
        ),
        ("winRate", "winRate"),
        (
            "speedToLead",
            "speedToLead { medianHours touched untouched }",
        ),
        (
            "pipeline",
            "pipeline { total stages { stage count amount } }",
        ),
        (
            "series",
            "series(metric: LEADS_CREATED, interval: WEEK) { start value }",
        ),
    ];
    // Each metric over each period: 35 queries, asked in turn (the metric
    // changes faster than the period, so that every client meets every
    // metric within its first seven requests).
    let mut queries = Vec::new();
    for p in &periods {
        for (name, selection) in metrics {
            queries.push((name, format!("{{ metrics({p}) {{ {selection} }} }}")));
        }
    }
    let queries = Arc::new(queries);
    let none = |_: usize| json!({});
    load(client, t, &queries, &none, clients, 1).await?;
    let (times, errors, elapsed) = load(client, t, &queries, &none, clients, secs).await?;
    let mut by_metric: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (q, ms) in &times {
        by_metric.entry(queries[*q].0).or_default().push(*ms);
    }
    let medians: Vec<String> = by_metric
        .iter_mut()
        .map(|(name, v)| {
            v.sort_by(f64::total_cmp);
            format!("{name} {:.0} ms", percentile(v, 0.5))
        })
        .collect();
    eprintln!(
        "round {round}: dashboard, {clients} clients, median per metric: {}",
        medians.join(", ")
    );
    let all = times.into_iter().map(|(_, ms)| ms).collect();
    Ok(row(
        "dashboard mix (metrics, cache off)",
        t.system,
        clients,
        round,
        all,
        errors,
        elapsed,
    ))
}

/// `pgbench` on the same database: the workload's rows by one prepared
/// statement (the one lead's id fixed), as fast as the database answers.
async fn pgbench(
    database_url: &str,
    w: &Workload,
    id: &str,
    clients: usize,
    secs: u64,
    round: usize,
) -> Result<ReadRow, Error> {
    let dir = std::env::temp_dir().join(format!("lockstep-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("workload.sql");
    std::fs::write(&script, w.sql())?;
    let bin = pgbench_binary();
    let args: Vec<String> = vec![
        "-n".into(),
        "-M".into(),
        "prepared".into(),
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        clients.min(4).to_string(),
        "-T".into(),
        secs.to_string(),
        "-D".into(),
        format!("lid={id}"),
        "-f".into(),
        script.display().to_string(),
        database_url.to_owned(),
    ];
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(&bin).args(&args).output())
            .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "pgbench failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let field = |prefix: &str| -> Option<f64> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let tps = field("tps = ").ok_or("pgbench printed no tps")?;
    let latency = field("latency average = ").unwrap_or(f64::NAN);
    let done = field("number of transactions actually processed: ").unwrap_or(0.0);
    let failed = field("number of failed transactions: ").unwrap_or(0.0);
    Ok(ReadRow {
        workload: w.name,
        system: System::Sql,
        clients,
        round,
        requests: done as u64,
        per_sec: tps,
        p50_ms: latency,
        p99_ms: f64::NAN,
        errors: failed as u64,
    })
}

/// `pgbench` from `PATH`, else from PostgreSQL's Debian directories.
fn pgbench_binary() -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("pgbench").is_file()))
        .unwrap_or(false);
    if on_path {
        return "pgbench".into();
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| "pgbench".into())
}
