//! `lockstep bench --reads URL`: the three plain read workloads of the
//! read-path comparison (one lead by id with its stage history; 100 leads
//! by creation with account and owner names; 100 MQL leads of one source,
//! same fields) against a running server, each for a while at each client
//! count: requests/s, p50 and p99. The server is any Lockstep build started
//! apart (`lockstep serve`), so that two builds meet the same client.

use api::auth::JwtKeys;
use api::config::{Config, Secret};
use entity::enums::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ReadBenchOptions {
    /// The server's GraphQL endpoint, e.g. `http://127.0.0.1:8080/graphql`.
    pub url: String,
    /// The server's JWT secret (an ADMIN token is made with it).
    pub jwt_secret: String,
    /// Concurrent clients to try.
    pub clients: Vec<usize>,
    /// Seconds each (workload, clients) run lasts, after a short warm-up.
    pub secs: u64,
}

#[derive(Debug, Clone)]
pub struct ReadRow {
    pub workload: &'static str,
    pub clients: usize,
    pub requests: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn markdown(rows: &[ReadRow]) -> String {
    let mut s = String::from(
        "| workload | clients | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} |\n",
            r.workload, r.clients, r.per_sec, r.p50_ms, r.p99_ms, r.errors
        ));
    }
    s
}

const FIELDS: &str = "id email stage createdAt account { name } owner { name }";

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: &Value,
) -> Result<Value, Error> {
    let resp: Value = client
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
    // Lead ids to look up: the newest 500 and the oldest 500.
    let mut ids = Vec::new();
    for order in ["DESC", "ASC"] {
        let q = format!(
            "{{ leads(first: 500, orderBy: {{field: CREATED_AT, direction: {order}}}) {{ nodes {{ id }} }} }}"
        );
        let resp = post(&client, &opts.url, &token, &q, &json!({})).await?;
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
    let by_id = "query ($id: ID!) { lead(id: $id) { id email stage stageHistory { fromStage toStage at } } }".to_owned();
    let page = format!("{{ leads(first: 100) {{ nodes {{ {FIELDS} }} }} }}");
    let filtered = format!(
        "{{ leads(first: 100, filter: {{stage: [MQL], source: [PAID]}}) {{ nodes {{ {FIELDS} }} }} }}"
    );
    let workloads: [(&'static str, String, bool); 3] = [
        ("one lead by id with stage history", by_id, true),
        (
            "100 leads by creation, account and owner names",
            page,
            false,
        ),
        ("100 MQL leads of one source, same fields", filtered, false),
    ];
    let ids = std::sync::Arc::new(ids);
    let mut rows = Vec::new();
    for (name, query, with_id) in &workloads {
        for &clients in &opts.clients {
            // Warm-up: a second at this concurrency, not counted.
            let _ = load(
                &client, &opts.url, &token, query, *with_id, &ids, clients, 1,
            )
            .await?;
            let (times, errors, elapsed) = load(
                &client, &opts.url, &token, query, *with_id, &ids, clients, opts.secs,
            )
            .await?;
            let n = times.len() as u64;
            let mut sorted = times;
            sorted.sort_by(f64::total_cmp);
            let pct = |p: f64| {
                if sorted.is_empty() {
                    0.0
                } else {
                    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
                }
            };
            let row = ReadRow {
                workload: name,
                clients,
                requests: n,
                per_sec: n as f64 / elapsed,
                p50_ms: pct(0.5),
                p99_ms: pct(0.99),
                errors,
            };
            eprintln!(
                "{name}, {clients} clients: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                row.per_sec, row.p50_ms, row.p99_ms, row.errors
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// `clients` loops posting `query` for `secs` seconds: each successful
/// request's milliseconds, the errors, and the seconds it took.
#[allow(clippy::too_many_arguments)]
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    with_id: bool,
    ids: &std::sync::Arc<Vec<String>>,
    clients: usize,
    secs: u64,
) -> Result<(Vec<f64>, u64, f64), Error> {
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, token, query, ids) = (
            client.clone(),
            url.to_owned(),
            token.to_owned(),
            query.to_owned(),
            ids.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0u64;
            let mut i = c * 7919;
            while Instant::now() < until {
                let vars = if with_id {
                    json!({ "id": ids[i % ids.len()] })
                } else {
                    json!({})
                };
                i += 1;
                let t = Instant::now();
                match post(&client, &url, &token, &query, &vars).await {
                    Ok(_) => times.push(t.elapsed().as_secs_f64() * 1000.0),
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
