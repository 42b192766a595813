//! Operating Lockstep: `/metrics`, request ids, JSON logs, rate limits and
//! OpenTelemetry traces.

use crate::db_test;
use crate::harness::*;
use entity::enums::Role;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The value of the sample `name{labels…}` in a Prometheus text scrape
/// (labels in any order; the sample must carry every given pair).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (head, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let (metric, rest) = head.split_once('{').unwrap_or((head, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

async fn scrape(app: &TestApp, token: Option<&str>) -> (u16, String) {
    let mut req = app.client.get(format!("{}/metrics", app.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn post(app: &TestApp, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/graphql", app.url)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

db_test!(
    metrics_count_a_known_sequence_of_requests,
    |app| async move {
        let admin = app.admin_token();
        let named = json!({
            "query": "query OpsAccounts { accounts(first: 1) { totalCount } }",
            "operationName": "OpsAccounts",
        });
        for _ in 0..2 {
            assert_eq!(post(app, Some(&admin), named.clone()).await.status(), 200);
        }
        let anonymous = post(
            app,
            Some(&admin),
            json!({ "query": "{ accounts(first: 1) { totalCount } }" }),
        )
        .await;
        assert_eq!(anonymous.status(), 200);
        let refused = post(app, None, named.clone()).await;
        assert_eq!(refused.status(), 401);
        let bad = post(app, Some(&admin), json!({ "query": "query Broken {" })).await;
        assert_eq!(bad.status(), 200);
        // A due job and a dead one, by kind.
        api::jobs::enqueue(app.db(), "ops.test", json!({}), None, None)
            .await
            .unwrap();

        let (status, text) = scrape(app, Some(&admin)).await;
        assert_eq!(status, 200, "{text}");
        let total = "lockstep_graphql_requests_total";
        let ok = [
            ("operation", "OpsAccounts"),
            ("type", "query"),
            ("code", "OK"),
        ];
        assert_eq!(sample(&text, total, &ok), Some(2.0), "{text}");
        assert_eq!(
            sample(&text, total, &[("operation", "anonymous"), ("code", "OK")]),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                total,
                &[("operation", "none"), ("code", "UNAUTHENTICATED")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                total,
                &[("operation", "other"), ("code", "BAD_USER_INPUT")]
            )
            .or_else(|| sample(
                &text,
                total,
                &[("type", "none"), ("code", "BAD_USER_INPUT")]
            )),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "lockstep_graphql_request_duration_seconds_count",
                &[("operation", "OpsAccounts"), ("type", "query")]
            ),
            Some(2.0)
        );
        // Every /graphql request counts its statements; the accounts queries issued some.
        assert_eq!(
            sample(&text, "lockstep_sql_statements_per_request_count", &[]),
            Some(5.0)
        );
        assert!(sample(&text, "lockstep_sql_statements_per_request_sum", &[]).unwrap() >= 3.0);
        assert!(sample(&text, "lockstep_sql_statements_total", &[]).unwrap() >= 3.0);
        assert_eq!(
            sample(
                &text,
                "lockstep_http_requests_total",
                &[("route", "/graphql"), ("status", "401")]
            ),
            Some(1.0)
        );
        // The scrape itself is in flight.
        assert_eq!(
            sample(&text, "lockstep_http_requests_in_flight", &[]),
            Some(1.0)
        );
        assert!(sample(&text, "lockstep_db_pool_connections", &[("state", "max")]).unwrap() >= 1.0);
        assert!(sample(&text, "lockstep_db_pool_connections", &[("state", "open")]).is_some());
        assert_eq!(
            sample(
                &text,
                "lockstep_jobs",
                &[("kind", "ops.test"), ("status", "QUEUED")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "lockstep_job_attempts", &[("kind", "ops.test")]),
            Some(0.0)
        );
        assert!(sample(&text, "lockstep_jobs_due", &[]).unwrap() >= 1.0);
        assert!(sample(&text, "lockstep_jobs_oldest_due_age_seconds", &[]).unwrap() >= 0.0);
        assert!(sample(&text, "lockstep_process_resident_memory_bytes", &[]).unwrap() > 0.0);
        assert!(sample(&text, "lockstep_process_uptime_seconds", &[]).is_some());
        assert!(sample(&text, "lockstep_rollup_rebuild_seconds_count", &[]).is_some());
        assert!(
            text.contains("# TYPE lockstep_metric_cache_requests_total counter")
                || !text.contains("lockstep_metric_cache_requests_total{")
        );
    }
);

#[tokio::test]
async fn metric_cache_hits_and_misses_are_counted() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.metrics_cache_secs = 30).await;
    let q = json!({
        "query": "query Win { metrics(period: {from: \"2025-01-01T00:00:00Z\", to: \"2026-01-01T00:00:00Z\"}) { winRate } }",
        "operationName": "Win",
    });
    for _ in 0..3 {
        let res = post(&app, Some(&app.admin_token()), q.clone()).await;
        assert_eq!(res.status(), 200);
    }
    let (_, text) = scrape(&app, Some(&app.admin_token())).await;
    let name = "lockstep_metric_cache_requests_total";
    assert_eq!(
        sample(&text, name, &[("result", "miss")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, name, &[("result", "hit")]),
        Some(2.0),
        "{text}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn metrics_need_a_scrape_or_admin_token_on_the_graphql_port() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.metrics_token = Some(api::config::Secret("scrape-me-0123456789".into()))
    })
    .await;
    assert_eq!(scrape(&app, None).await.0, 401);
    assert_eq!(scrape(&app, Some("wrong")).await.0, 401);
    let viewer = app.token(Role::Viewer, "bi-tool");
    assert_eq!(scrape(&app, Some(&viewer)).await.0, 403);
    let (status, text) = scrape(&app, Some("scrape-me-0123456789")).await;
    assert_eq!(status, 200);
    assert!(text.contains("lockstep_http_requests_total"), "{text}");
    assert_eq!(scrape(&app, Some(&app.admin_token())).await.0, 200);
    app.cleanup().await;

    // With a separate metrics address, the GraphQL port has no /metrics at all.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.metrics_bind = Some("127.0.0.1:0".into())
    })
    .await;
    assert_eq!(scrape(&app, Some(&app.admin_token())).await.0, 404);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api::http::metrics_router(app.state.clone());
    let server = tokio::spawn(async move { axum_serve(listener, router).await });
    let res = app
        .client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("lockstep_process_uptime_seconds")
    );
    server.abort();
    app.cleanup().await;
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    let _ = axum::serve(listener, router).await;
}

db_test!(
    request_ids_are_echoed_made_and_reach_internal_errors,
    |app| async move {
        let admin = app.admin_token();
        let me = json!({ "query": "{ me { role } }" });
        let res = app
            .client
            .post(format!("{}/graphql", app.url))
            .bearer_auth(&admin)
            .header("x-request-id", "client-id-42")
            .json(&me)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "client-id-42");
        // Made when missing, and replaced when hostile.
        for hostile in [None, Some("has space\" and quote"), Some(&*"x".repeat(300))] {
            let mut req = app.client.post(format!("{}/graphql", app.url)).json(&me);
            if let Some(h) = hostile {
                req = req.header("x-request-id", h);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "no token");
            let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        }
        let health = app
            .client
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .unwrap();
        assert!(health.headers().contains_key("x-request-id"));

        // An INTERNAL error carries the request's id, to find its log line.
        use sea_orm::ConnectionTrait;
        app.db()
            .execute_unprepared("ALTER TABLE teams RENAME TO teams_gone")
            .await
            .unwrap();
        let res = app
            .client
            .post(format!("{}/graphql", app.url))
            .bearer_auth(&admin)
            .header("x-request-id", "req-internal-1")
            .json(&json!({ "query": "{ teams { id } }" }))
            .send()
            .await
            .unwrap();
        let body: Value = res.json().await.unwrap();
        assert_eq!(error_code(&body), Some("INTERNAL"), "{body:#}");
        assert_eq!(
            body["errors"][0]["extensions"]["requestId"],
            "req-internal-1"
        );
        assert_eq!(body["errors"][0]["message"], "internal error");
        app.db()
            .execute_unprepared("ALTER TABLE teams_gone RENAME TO teams")
            .await
            .unwrap();
    }
);

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The app for a test that captures its tracing on this thread alone
/// (`set_default`): PostgreSQL, whose I/O runs on this thread's tasks.
/// SQLite runs statements on worker threads of its own, which would carry
/// this thread's spans to the process's global subscriber.
async fn single_thread_app() -> Option<TestApp> {
    if !postgres_available().await {
        return None;
    }
    Some(TestApp::spawn(Backend::Postgres).await)
}

/// Single-threaded: the server's tasks run on this thread, under this
/// thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn json_log_lines_parse_and_carry_the_request_id() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(api::telemetry::logging::json_layer(captured.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);
    let Some(app) = single_thread_app().await else {
        return;
    };
    let token = app.token(Role::Admin, "ops@example.com");
    let res = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(&token)
        .header("x-request-id", "json-log-1")
        .json(&json!({ "query": "query Who { me { role } }", "operationName": "Who" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.cleanup().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["message"] == "graphql")
        .unwrap_or_else(|| panic!("no graphql line in {text}"));
    assert_eq!(line["spans"][0]["request_id"], "json-log-1", "{line}");
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].is_string());
    assert_eq!(line["operation"], "Who");
    assert_eq!(line["role"], "ADMIN");
    assert_eq!(line["code"], "OK");
    assert!(line["duration_ms"].is_number());
    // No secrets nor personal data: neither the token nor the e-mail subject.
    assert!(!text.contains(&token), "{text}");
    assert!(!text.contains("ops@example.com"), "{text}");
}

#[tokio::test]
async fn a_burst_over_the_budget_gets_429_while_another_subject_goes_on() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.viewer = api::config::Budget::new(1, 3);
    })
    .await;
    let me = json!({ "query": "{ me { role } }" });
    let a = app.token(Role::Viewer, "bi-a");
    let mut limited = None;
    for _ in 0..10 {
        let res = post(&app, Some(&a), me.clone()).await;
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), 200);
    }
    let res = limited.expect("the burst is refused once its bucket is empty");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryAfter"], json!(retry));

    // Another subject of the same role has its own bucket.
    let b = app.token(Role::Viewer, "bi-b");
    assert_eq!(post(&app, Some(&b), me.clone()).await.status(), 200);
    // ADMIN's budget is unaffected too.
    assert_eq!(
        post(&app, Some(&app.admin_token()), me.clone())
            .await
            .status(),
        200
    );

    let (_, text) = scrape(&app, Some(&app.admin_token())).await;
    assert_eq!(
        sample(
            &text,
            "lockstep_rate_limited_total",
            &[("budget", "VIEWER")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lockstep_graphql_requests_total",
            &[("code", "RATE_LIMITED")]
        ),
        Some(1.0)
    );
    app.cleanup().await;
}

/// A second server (replica) over `app`'s database and configuration.
async fn replica_of(app: &TestApp) -> (String, tokio::sync::oneshot::Sender<()>) {
    let replica = api::http::App::build((*app.state.config).clone())
        .await
        .expect("build a replica");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = replica
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    (url, tx)
}

/// With `rate_limits.shared` on PostgreSQL, two replicas take from one
/// bucket per subject: a burst spent on one is spent on the other.
#[tokio::test]
async fn shared_budgets_hold_across_replicas_on_postgresql() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.shared = true;
        // Refills once a minute: the test cannot race the refill.
        c.rate_limits.viewer = api::config::Budget::new(1, 3);
        c.rate_limits.integration = api::config::Budget::new(1, 3);
    })
    .await;
    assert!(app.state.limiter.is_shared());
    let (other, stop) = replica_of(&app).await;
    let me = json!({ "query": "{ me { role } }" });
    let send = |url: String, token: String| {
        let client = app.client.clone();
        let me = me.clone();
        async move {
            client
                .post(format!("{url}/graphql"))
                .bearer_auth(token)
                .json(&me)
                .send()
                .await
                .unwrap()
        }
    };
    let a = app.token(Role::Viewer, "bi-shared");
    // Eight requests alternating between the replicas: one bucket of 3
    // (refilling one a second) lets 3 through, where two buckets of their
    // own would let 6 through.
    let started = std::time::Instant::now();
    let mut ok = 0;
    let mut refused_by = std::collections::HashSet::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { &app.url } else { &other };
        let res = send(url.clone(), a.clone()).await;
        match res.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&retry), "about a second: {retry}");
                let body: Value = res.json().await.unwrap();
                assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
                refused_by.insert(url.clone());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refills = started.elapsed().as_secs();
    assert!(ok >= 3, "the burst goes through: {ok}");
    assert!(
        ok <= 3 + refills,
        "{ok} requests went through in {refills} s: the replicas do not share the bucket"
    );
    if refills == 0 {
        assert_eq!(refused_by.len(), 2, "both replicas refuse the subject");
    }
    // Another subject, and the same subject under another role, are unaffected.
    let b = app.token(Role::Viewer, "bi-other");
    assert_eq!(send(other.clone(), b).await.status(), 200);
    let same_as_integration = app.token(Role::Integration, "bi-shared");
    assert_eq!(send(other.clone(), same_as_integration).await.status(), 200);
    let _ = stop.send(());
    app.cleanup().await;
}

/// With `rate_limits.shared` on PostgreSQL, a webhook integration's budget
/// is one bucket for every replica too: a CRM spreading its requests over
/// the replicas behind a load balancer gets the budget once, not per replica.
#[tokio::test]
async fn shared_webhook_budgets_hold_across_replicas_on_postgresql() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.shared = true;
        c.webhook_rate = api::config::Budget::new(1, 3);
    })
    .await;
    assert!(app.state.limiter.is_shared());
    let (other, stop) = replica_of(&app).await;
    let app_ref = &app;
    let create = |name: &'static str| async move {
        let resp = app_ref
            .admin(
                "mutation($i: CreateIntegrationInput!) { createIntegration(input: $i) { id secret } }",
                json!({"i": {"name": name, "provider": "GENERIC"}}),
            )
            .await;
        let c = &data(&resp)["createIntegration"];
        (
            c["id"].as_str().unwrap().to_owned(),
            c["secret"].as_str().unwrap().to_owned(),
        )
    };
    let (id, secret) = create("crm").await;
    let (id2, secret2) = create("crm-2").await;
    let send = |base: String, id: String, secret: String, n: usize| {
        let client = app.client.clone();
        async move {
            let body = serde_json::to_vec(&json!({
                "id": format!("e{n}"),
                "type": "lead.upserted",
                "occurredAt": "2026-11-01T00:00:00Z",
                "data": {"externalId": format!("L{n}"), "email": format!("l{n}@shared.example")}
            }))
            .unwrap();
            let t = chrono::Utc::now().timestamp();
            client
                .post(format!("{base}/webhooks/generic/{id}"))
                .header("content-type", "application/json")
                .header(
                    "x-lockstep-signature",
                    api::webhooks::generic::sign(&secret, t, &body),
                )
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // Eight requests alternating between the replicas: one bucket of 3
    // (refilling one a second) lets 3 through, two would let 6.
    let started = std::time::Instant::now();
    let mut ok = 0;
    let mut refused_by = std::collections::HashSet::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { &app.url } else { &other };
        let res = send(url.clone(), id.clone(), secret.clone(), i).await;
        match res.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(res.headers().contains_key("retry-after"));
                let body: Value = res.json().await.unwrap();
                assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
                refused_by.insert(url.clone());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refills = started.elapsed().as_secs();
    assert!(ok >= 3, "the burst goes through: {ok}");
    assert!(
        ok <= 3 + refills,
        "{ok} requests went through in {refills} s: the replicas do not share the bucket"
    );
    if refills == 0 {
        assert_eq!(refused_by.len(), 2, "both replicas refuse the integration");
    }
    // Another integration has its own budget.
    assert_eq!(send(other.clone(), id2, secret2, 100).await.status(), 200);
    let _ = stop.send(());
    app.cleanup().await;
}

#[tokio::test]
async fn the_address_budget_applies_before_the_token() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.address = api::config::Budget::new(1, 2);
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = post(&app, None, json!({ "query": "{ me { role } }" })).await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses.iter().take(2).all(|s| *s == 401), "{statuses:?}");
    // Health checks are never limited.
    let res = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.cleanup().await;
}

/// The tests that install an OpenTelemetry layer run one at a time: SQL
/// statement spans go to the tracer installed last, which is process-wide.
static OTEL_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Single-threaded on PostgreSQL, as above: the server's spans go to this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_traceparent_makes_the_request_and_its_sql_part_of_that_trace() {
    let _one_at_a_time = OTEL_TESTS.lock().await;
    use opentelemetry::trace::TraceId;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(api::telemetry::logging::otel_layer(&provider));
    let _guard = tracing::subscriber::set_default(subscriber);
    let Some(app) = single_thread_app().await else {
        return;
    };
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = app
        .client
        .post(format!("{}/graphql", app.url))
        .bearer_auth(app.admin_token())
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({
            "query": "query Traced { accounts(first: 2) { totalCount nodes { name } } }",
            "operationName": "Traced",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.cleanup().await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap();
    let wanted = TraceId::from_hex(trace_id).unwrap();
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == wanted)
        .collect();
    let request = in_trace
        .iter()
        .find(|s| s.name.starts_with("POST"))
        .unwrap_or_else(|| {
            panic!(
                "no request span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(format!("{}", request.parent_span_id), "00f067aa0ba902b7");
    assert!(
        request
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "operation" && kv.value.as_str() == "Traced"),
        "{:?}",
        request.attributes
    );
    let sql: Vec<_> = in_trace
        .iter()
        .filter(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "db.query.text")
        })
        .collect();
    assert!(!sql.is_empty(), "SQL statements are spans of the trace");
    // The top-level field has its span, under the request; the statements are under it.
    let resolver = in_trace
        .iter()
        .find(|s| s.name == "resolve accounts")
        .expect("a span for the top-level field");
    assert_eq!(resolver.parent_span_id, request.span_context.span_id());
    for s in &sql {
        assert_eq!(s.parent_span_id, resolver.span_context.span_id());
    }
}

/// A job enqueued inside a traced request runs in a span of its own trace,
/// linked to the enqueuing span; the job's SQL statements are under it.
#[tokio::test(flavor = "current_thread")]
async fn a_job_run_is_linked_to_the_span_that_enqueued_it() {
    let _one_at_a_time = OTEL_TESTS.lock().await;
    use api::jobs::{CancellationToken, Registry, Runner, RunnerConfig};
    use opentelemetry::trace::{TraceContextExt, TraceId};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use sea_orm::{ConnectionTrait, EntityTrait};
    use std::time::Duration;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(api::telemetry::logging::otel_layer(&provider));
    let _guard = tracing::subscriber::set_default(subscriber);
    let Some(app) = single_thread_app().await else {
        return;
    };
    let db = app.db().clone();

    // The enqueuing side: a span in a trace that came in with a traceparent.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let enqueuing = tracing::info_span!("enqueue");
    let _ = enqueuing.set_parent(api::telemetry::logging::extract_parent(&headers));
    let job_id = {
        let _entered = enqueuing.enter();
        api::jobs::enqueue(&db, "test.traced", json!({}), None, None)
            .await
            .unwrap()
            .unwrap()
    };
    let enqueuing_span_id = enqueuing.context().span().span_context().span_id();
    drop(enqueuing);

    let mut registry = Registry::new();
    registry.register("test.traced", |db, _payload| async move {
        let backend = db.get_database_backend();
        db.query_one_raw(sea_orm::Statement::from_string(backend, "SELECT 1 AS one"))
            .await?;
        Ok(())
    });
    let config = RunnerConfig {
        poll_interval: Duration::from_millis(20),
        ..RunnerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let runner = Runner::new(db.clone(), registry, config).spawn(shutdown.clone());
    let started = std::time::Instant::now();
    loop {
        let job = entity::job::Entity::find_by_id(job_id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        if job.status == entity::enums::JobStatus::Done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "job not done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    runner.await.unwrap().unwrap();
    app.cleanup().await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap();
    let job_span = spans
        .iter()
        .find(|s| s.name == "job test.traced")
        .unwrap_or_else(|| {
            panic!(
                "no job span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let wanted = TraceId::from_hex(trace_id).unwrap();
    assert_ne!(
        job_span.span_context.trace_id(),
        wanted,
        "the run is its own trace, not a child of the request"
    );
    let link = job_span
        .links
        .iter()
        .next()
        .expect("the job span links to the enqueuing span");
    assert_eq!(link.span_context.trace_id(), wanted);
    assert_eq!(link.span_context.span_id(), enqueuing_span_id);
    let sql_under_job = spans.iter().any(|s| {
        s.parent_span_id == job_span.span_context.span_id()
            && s.attributes.iter().any(|kv| {
                kv.key.as_str() == "db.query.text" && kv.value.as_str() == "SELECT 1 AS one"
            })
    });
    assert!(sql_under_job, "the handler's SQL is traced under the job");
}

/// Over WebSocket, opening the connection and every operation started on it
/// take from the caller's budget, and are counted in `/metrics`.
#[tokio::test]
async fn websocket_operations_take_from_the_budget_and_are_counted() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.rate_limits.enabled = true;
        c.rate_limits.viewer = api::config::Budget::new(1, 3);
    })
    .await;
    let token = app.token(Role::Viewer, "ws-ops");
    let mut req = format!("ws://{}/graphql", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let started = std::time::Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})
            .to_string(),
    ))
    .await
    .unwrap();
    // Six subscriptions on a budget of 3, one of them spent on the connection.
    for id in 1..=6 {
        ws.send(Message::text(
            json!({"id": id.to_string(), "type": "subscribe", "payload": {
                "query": "subscription Watch { handoffs { id } }",
                "operationName": "Watch",
            }})
            .to_string(),
        ))
        .await
        .unwrap();
    }
    let mut acked = false;
    let mut refused = Vec::new();
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(std::time::Duration::from_secs(3), ws.next()).await
    {
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        match v["type"].as_str() {
            Some("connection_ack") => acked = true,
            Some("next") | Some("error") => {
                let errors = if v["type"] == "error" {
                    v["payload"].clone()
                } else {
                    v["payload"]["errors"].clone()
                };
                assert_eq!(
                    errors[0]["extensions"]["code"], "RATE_LIMITED",
                    "only refusals are heard: {v}"
                );
                assert!(errors[0]["extensions"]["retryAfter"].as_u64() >= Some(1));
                refused.push(v["id"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
        if refused.len() == 4 {
            break;
        }
    }
    let refills = started.elapsed().as_secs() as usize;
    assert!(acked, "the connection took one token and was accepted");
    let ran = 6 - refused.len();
    assert!(
        (2..=2 + refills).contains(&ran),
        "{ran} subscriptions started on a budget of 3 (one spent on the connection)"
    );
    let _ = ws.close(None).await;

    let (_, text) = scrape(&app, Some(&app.admin_token())).await;
    assert_eq!(
        sample(
            &text,
            "lockstep_graphql_requests_total",
            &[
                ("operation", "Watch"),
                ("type", "subscription"),
                ("code", "OK")
            ]
        ),
        Some(ran as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lockstep_graphql_requests_total",
            &[
                ("operation", "Watch"),
                ("type", "subscription"),
                ("code", "RATE_LIMITED")
            ]
        ),
        Some(refused.len() as f64),
        "{text}"
    );
    app.cleanup().await;
}
