//! `lockstep bench --webhooks N`: sustained webhook ingestion. Senders post
//! signed generic events (one lead's creation and stage changes per story,
//! 16 stories at once) to a server on `127.0.0.1:0` while its job runner
//! applies them; reports events/s accepted and applied and the ack latency.

use api::config::{Config, Secret};
use api::http::App;
use api::jobs::{CancellationToken, Runner, RunnerConfig};
use api::webhooks::{generic, service};
use entity::enums::{WebhookProvider, WebhookStatus};
use entity::webhook_event;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct WebhookBenchOptions {
    pub database_url: String,
    pub events: usize,
    /// Concurrent senders.
    pub senders: usize,
    /// Jobs the runner applies at once.
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct WebhookBenchReport {
    pub backend: String,
    pub events: usize,
    pub senders: usize,
    pub concurrency: usize,
    pub accepted_per_sec: f64,
    pub applied_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub dead: u64,
}

impl WebhookBenchReport {
    pub fn markdown(&self) -> String {
        format!(
            "## Webhook ingestion ({backend}, {events} events, {senders} senders, runner concurrency {conc})\n\n\
             | accepted/s | applied/s | ack p50 | ack p99 | ack max | dead |\n|---|---|---|---|---|---|\n\
             | {acc:.0} | {app:.0} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {dead} |\n",
            backend = self.backend,
            events = self.events,
            senders = self.senders,
            conc = self.concurrency,
            acc = self.accepted_per_sec,
            app = self.applied_per_sec,
            p50 = self.ack_p50_ms,
            p99 = self.ack_p99_ms,
            max = self.ack_max_ms,
            dead = self.dead,
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// The events: per story a lead's creation then up to three stage changes,
/// an hour apart in CRM time.
fn events(n: usize, run: &str) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    let base = chrono::Utc::now() - chrono::Duration::days(30);
    let mut story = 0;
    while out.len() < n {
        let lead = format!("{run}-L{story}");
        let at = |h: i64| {
            (base + chrono::Duration::minutes(story as i64) + chrono::Duration::hours(h))
                .to_rfc3339()
        };
        let mut push = |i: usize, ty: &str, when: String, data: serde_json::Value| {
            let body =
                json!({"id": format!("{lead}-{i}"), "type": ty, "occurredAt": when, "data": data});
            out.push((story, serde_json::to_vec(&body).unwrap_or_default()));
        };
        push(
            0,
            "lead.upserted",
            at(0),
            json!({"externalId": lead, "email": format!("{lead}@bench.example"), "source": "WEB", "score": 10}),
        );
        for (i, stage) in ["MQL", "SAL", "SQL"].iter().enumerate() {
            push(
                i + 1,
                "lead.stage_changed",
                at(i as i64 + 1),
                json!({"externalId": lead, "to": stage}),
            );
        }
        story += 1;
    }
    out.truncate(n);
    out
}

pub async fn run(
    opts: WebhookBenchOptions,
) -> Result<WebhookBenchReport, Box<dyn std::error::Error>> {
    let mut config = Config {
        database_url: Some(opts.database_url.clone()),
        jwt_secret: Some(Secret("bench-secret-bench-secret-bench-secret-0123".into())),
        demo: false,
        jobs: false,
        ..Config::default()
    };
    config.rate_limits.enabled = false;
    config.webhook_rate = api::config::Budget::new(0, 0);
    config.jobs_concurrency = opts.concurrency.max(1);
    let key = api::webhooks::secrets::WebhookKey::from_config(&config);
    let app = App::build(config.clone()).await?;
    let db = app.state.db.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    let run_id = uuid::Uuid::now_v7().simple().to_string()[..12].to_owned();
    let (integration, secret) = service::create(
        &db,
        key.as_ref(),
        service::NewIntegration {
            name: format!("bench-{run_id}"),
            provider: WebhookProvider::Generic,
            settings: json!({"system": format!("bench-{run_id}")}),
            client_secret: None,
        },
    )
    .await
    .map_err(|e| e.detail())?;
    let secret = secret.ok_or("a generic integration has a secret")?;
    let stop = CancellationToken::new();
    let runner = Runner::new(
        db.clone(),
        api::jobs::builtin::registry_for(&config),
        RunnerConfig {
            concurrency: opts.concurrency.max(1),
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::from(&config)
        },
    )
    .spawn(stop.clone());
    let url = format!("{base}/webhooks/generic/{}", integration.id);
    let all = events(opts.events, &run_id);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..opts.senders.max(1) {
        let mine: Vec<Vec<u8>> = all
            .iter()
            .filter(|(story, _)| story % opts.senders.max(1) == s)
            .map(|(_, b)| b.clone())
            .collect();
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(mine.len());
            for body in mine {
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(
                        "x-lockstep-signature",
                        generic::sign(&secret, chrono::Utc::now().timestamp(), &body),
                    )
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !res.status().is_success() {
                    return Err(format!("answered {}", res.status()));
                }
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, String>(times)
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await?.map_err(|e| e.to_string())?);
    }
    let accepted_secs = started.elapsed().as_secs_f64();
    let count = |status: WebhookStatus| {
        let db = db.clone();
        async move {
            webhook_event::Entity::find()
                .filter(webhook_event::Column::IntegrationId.eq(integration.id))
                .filter(webhook_event::Column::Status.eq(status))
                .count(&db)
                .await
        }
    };
    loop {
        let done = count(WebhookStatus::Applied).await? + count(WebhookStatus::Dead).await?;
        if done as usize >= all.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied_secs = started.elapsed().as_secs_f64();
    let dead = count(WebhookStatus::Dead).await?;
    stop.cancel();
    let _ = runner.await;
    let _ = stop_tx.send(());
    let _ = server.await;
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(WebhookBenchReport {
        backend: if opts.database_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
        .to_owned(),
        events: all.len(),
        senders: opts.senders,
        concurrency: opts.concurrency,
        accepted_per_sec: all.len() as f64 / accepted_secs,
        applied_per_sec: all.len() as f64 / applied_secs,
        ack_p50_ms: percentile(&times, 0.5),
        ack_p99_ms: percentile(&times, 0.99),
        ack_max_ms: times.last().copied().unwrap_or(0.0),
        dead,
    })
}
