//! CRM webhooks: every refusal answers its status and stores nothing;
//! accepted events are applied by the job runner through the same services
//! as GraphQL, once, in CRM order per record, with the CRM's times; the
//! providers' fixtures (tests/fixtures/) are signed the providers' way at
//! send time. The fault test (PostgreSQL) kills the real server with
//! SIGKILL mid-stream and checks the records and metrics against a clean run.

use crate::db_test;
use crate::harness::*;
use api::jobs::{CancellationToken, Runner, RunnerConfig};
use api::webhooks::{generic, hubspot};
use entity::enums::WebhookStatus;
use entity::webhook_event;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

/// A runner with quick polls and retries over the app's database.
fn runner(app: &TestApp) -> CancellationToken {
    let stop = CancellationToken::new();
    let config = RunnerConfig {
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(500),
        schedule_interval: Duration::from_secs(3600),
        grace: Duration::from_secs(5),
        ..RunnerConfig::default()
    };
    let registry = api::jobs::builtin::registry_for(&app.state.config);
    Runner::new(app.db().clone(), registry, config).spawn(stop.clone());
    stop
}

async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(app: &TestApp, status: Option<WebhookStatus>) -> u64 {
    let mut q = webhook_event::Entity::find();
    if let Some(s) = status {
        q = q.filter(webhook_event::Column::Status.eq(s));
    }
    q.count(app.db()).await.unwrap()
}

/// Waits until no event is RECEIVED or FAILED.
async fn settled(app: &TestApp) {
    wait_until(
        Duration::from_secs(60),
        "every event is applied or dead",
        || async {
            count(app, Some(WebhookStatus::Received)).await == 0
                && count(app, Some(WebhookStatus::Failed)).await == 0
        },
    )
    .await;
}

struct Integration {
    id: String,
    secret: String,
    url: String,
}

async fn integration(app: &TestApp, name: &str, provider: &str, settings: Value) -> Integration {
    let resp = app
        .admin(
            "mutation($i: CreateIntegrationInput!) { createIntegration(input: $i) { id secret webhookUrl integration { provider name } } }",
            json!({"i": {"name": name, "provider": provider, "settings": settings}}),
        )
        .await;
    let c = &data(&resp)["createIntegration"];
    assert_eq!(c["integration"]["provider"], provider);
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(c["webhookUrl"].as_str().unwrap().ends_with(&id));
    Integration {
        url: format!("{}/webhooks/{}/{id}", app.url, provider.to_lowercase()),
        id,
        secret: c["secret"].as_str().unwrap().to_owned(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs a generic body signed at `t` with `secret`.
async fn post_generic(app: &TestApp, url: &str, secret: &str, t: i64, body: &[u8]) -> (u16, Value) {
    let res = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("x-lockstep-signature", generic::sign(secret, t, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn envelope(id: &str, ty: &str, at: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "type": ty, "occurredAt": at, "data": data})).unwrap()
}

db_test!(
    refusals_answer_their_status_and_store_nothing,
    |app| async move {
        let g = integration(app, "crm", "GENERIC", json!({})).await;
        let body = envelope(
            "e1",
            "lead.upserted",
            "2026-11-01T00:00:00Z",
            json!({"externalId": "L1", "email": "a@b.example"}),
        );
        let code = |v: &Value| {
            v["errors"][0]["extensions"]["code"]
                .as_str()
                .map(str::to_owned)
        };

        // Unknown provider and integration: 404.
        let (s, v) = post_generic(
            app,
            &format!("{}/webhooks/zoho/{}", app.url, g.id),
            &g.secret,
            now(),
            &body,
        )
        .await;
        assert_eq!((s, code(&v).as_deref()), (404, Some("NOT_FOUND")), "{v}");
        let other = format!("{}/webhooks/generic/{}", app.url, uuid::Uuid::now_v7());
        assert_eq!(
            post_generic(app, &other, &g.secret, now(), &body).await.0,
            404
        );
        assert_eq!(
            post_generic(
                app,
                &format!("{}/webhooks/hubspot/{}", app.url, g.id),
                &g.secret,
                now(),
                &body
            )
            .await
            .0,
            404,
            "another provider's integration"
        );
        // Missing, wrong and stale signatures: 401.
        let res = app
            .client
            .post(&g.url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401);
        let (s, v) = post_generic(app, &g.url, "not-the-secret", now(), &body).await;
        assert_eq!(
            (s, code(&v).as_deref()),
            (401, Some("UNAUTHENTICATED")),
            "{v}"
        );
        let (s, v) = post_generic(app, &g.url, &g.secret, now() - 301, &body).await;
        assert_eq!(s, 401, "stale: {v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("5 minutes")
        );
        assert_eq!(
            post_generic(app, &g.url, &g.secret, now() + 301, &body)
                .await
                .0,
            401,
            "from the future"
        );
        // A signature over other bytes: 401.
        let res = app
            .client
            .post(&g.url)
            .header("content-type", "application/json")
            .header(
                "x-lockstep-signature",
                generic::sign(&g.secret, now(), b"{}"),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401);
        // Wrong content type: 415.
        let res = app
            .client
            .post(&g.url)
            .header("content-type", "text/plain")
            .header(
                "x-lockstep-signature",
                generic::sign(&g.secret, now(), &body),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 415);
        // Truncated body (signed as sent), unknown type, missing externalId, a field of the wrong type: 400 with the reason.
        let (s, v) = post_generic(app, &g.url, &g.secret, now(), &body[..body.len() - 5]).await;
        assert_eq!(
            (s, code(&v).as_deref()),
            (400, Some("BAD_USER_INPUT")),
            "{v}"
        );
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not JSON"),
            "{v}"
        );
        let unknown = envelope(
            "e2",
            "lead.deleted",
            "2026-11-01T00:00:00Z",
            json!({"externalId": "L1"}),
        );
        let (s, v) = post_generic(app, &g.url, &g.secret, now(), &unknown).await;
        assert_eq!(s, 400);
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("unknown event type `lead.deleted`"),
            "{v}"
        );
        let no_key = envelope(
            "e3",
            "lead.upserted",
            "2026-11-01T00:00:00Z",
            json!({"email": "a@b.example"}),
        );
        let (s, v) = post_generic(app, &g.url, &g.secret, now(), &no_key).await;
        assert!(
            s == 400
                && v["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("externalId"),
            "{v}"
        );
        let bad_field = envelope(
            "e4",
            "lead.upserted",
            "2026-11-01T00:00:00Z",
            json!({"externalId": "L1", "score": "high"}),
        );
        let (s, v) = post_generic(app, &g.url, &g.secret, now(), &bad_field).await;
        assert!(
            s == 400
                && v["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("LeadInput"),
            "{v}"
        );
        // Nothing was stored by any of them.
        assert_eq!(count(app, None).await, 0);
        let jobs = entity::job::Entity::find()
            .filter(entity::job::Column::Kind.eq("webhooks.apply"))
            .count(app.db())
            .await
            .unwrap();
        assert_eq!(jobs, 0);

        // Accepted, then the same event again: 200 both times, stored once.
        let (s, v) = post_generic(app, &g.url, &g.secret, now(), &body).await;
        assert_eq!(
            (s, v.clone()),
            (200, json!({"accepted": 1, "duplicates": 0}))
        );
        let (s, v) = post_generic(app, &g.url, &g.secret, now(), &body).await;
        assert_eq!((s, v), (200, json!({"accepted": 0, "duplicates": 1})));
        assert_eq!(count(app, Some(WebhookStatus::Received)).await, 1);
        // The one integration of its provider answers at /webhooks/generic too.
        let short = format!("{}/webhooks/generic", app.url);
        let body2 = envelope(
            "e5",
            "lead.upserted",
            "2026-11-01T00:00:01Z",
            json!({"externalId": "L2", "email": "c@d.example"}),
        );
        assert_eq!(
            post_generic(app, &short, &g.secret, now(), &body2).await.0,
            200
        );
        let g2 = integration(app, "crm-2", "GENERIC", json!({})).await;
        assert_eq!(
            post_generic(app, &short, &g2.secret, now(), &body2).await.0,
            404,
            "two generic integrations: the short URL names none"
        );

        // Rotation: both secrets work in the grace period; disabled: 410, nothing stored.
        let resp = app.admin("mutation($id: ID!) { rotateIntegrationSecret(id: $id) { secret integration { previousSecretExpiresAt } } }", json!({"id": g.id})).await;
        let new_secret = data(&resp)["rotateIntegrationSecret"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(new_secret, g.secret);
        let b3 = envelope(
            "e6",
            "lead.upserted",
            "2026-11-01T00:00:02Z",
            json!({"externalId": "L3", "email": "e@f.example"}),
        );
        assert_eq!(
            post_generic(app, &g.url, &new_secret, now(), &b3).await.0,
            200
        );
        let b4 = envelope(
            "e7",
            "lead.upserted",
            "2026-11-01T00:00:03Z",
            json!({"externalId": "L4", "email": "g@h.example"}),
        );
        assert_eq!(
            post_generic(app, &g.url, &g.secret, now(), &b4).await.0,
            200,
            "the old secret in its grace period"
        );
        let before = count(app, None).await;
        let resp = app
            .admin(
                "mutation($id: ID!) { disableIntegration(id: $id) { disabled } }",
                json!({"id": g.id}),
            )
            .await;
        assert_eq!(data(&resp)["disableIntegration"]["disabled"], true);
        let b5 = envelope(
            "e8",
            "lead.upserted",
            "2026-11-01T00:00:04Z",
            json!({"externalId": "L5", "email": "i@j.example"}),
        );
        let (s, v) = post_generic(app, &g.url, &new_secret, now(), &b5).await;
        assert_eq!(s, 410, "{v}");
        assert_eq!(count(app, None).await, before);
        // Managing integrations is ADMIN's.
        let member = app.token(entity::enums::Role::Viewer, "someone");
        let resp = app
            .gql(&member, "{ integrations { totalCount } }", json!({}))
            .await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"));
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_stores_nothing() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.body_limit_bytes = 4096).await;
    let g = integration(&app, "crm", "GENERIC", json!({})).await;
    let big = envelope(
        "big",
        "lead.upserted",
        "2026-11-01T00:00:00Z",
        json!({"externalId": "L1", "email": "a@b.example", "company": "x".repeat(5000)}),
    );
    let (s, v) = post_generic(&app, &g.url, &g.secret, now(), &big).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(count(&app, None).await, 0);
    app.cleanup().await;
}

db_test!(
    generic_events_build_the_funnel_with_the_crms_times,
    |app| async move {
        let stop = runner(app);
        let g = integration(app, "crm", "GENERIC", json!({"system": "crm"})).await;
        // The account last: the lead that refers to it fails until it arrives, then applies.
        let events: Vec<Value> = serde_json::from_str(&fixture("generic/funnel.json")).unwrap();
        for e in events.iter().skip(1).chain(events.iter().take(1)) {
            let body = serde_json::to_vec(e).unwrap();
            let (s, v) = post_generic(app, &g.url, &g.secret, now(), &body).await;
            assert_eq!(s, 200, "{v}");
        }
        settled(app).await;
        let resp = app.admin("{ webhookEvents(filter: {status: [DEAD, FAILED]}) { nodes { eventId lastError } } }", json!({})).await;
        let leftover = &data(&resp)["webhookEvents"]["nodes"];
        // Events sent before the record they refer to existed failed, then applied on retry.
        assert_eq!(leftover, &json!([]), "{leftover}");
        let resp = app.admin(r#"{ leads(first: 5) { nodes { email stage account { name } externalIds { system id } stageHistory { to: toStage at reason } convertedOpportunity { name stage amount closedAt } } } }"#, json!({})).await;
        let lead = &data(&resp)["leads"]["nodes"][0];
        assert_eq!(lead["email"], "ada@acme.example");
        assert_eq!(lead["stage"], "CONVERTED");
        assert_eq!(lead["account"]["name"], "Acme Corp");
        assert_eq!(lead["externalIds"], json!([{"system": "crm", "id": "L-1"}]));
        let history: Vec<(String, String)> = lead["stageHistory"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["to"].as_str().unwrap().to_owned(),
                    h["at"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            history,
            vec![
                ("INQUIRY".to_owned(), "2026-11-03T10:00:00+00:00".to_owned()),
                ("MQL".to_owned(), "2026-11-04T11:30:00+00:00".to_owned()),
                ("SQL".to_owned(), "2026-11-06T08:00:00+00:00".to_owned()),
                (
                    "CONVERTED".to_owned(),
                    "2026-11-07T12:00:00+00:00".to_owned()
                ),
            ],
            "{lead}"
        );
        let opp = &lead["convertedOpportunity"];
        assert_eq!(opp["stage"], "CLOSED_WON");
        assert_eq!(opp["closedAt"], "2026-11-28T17:45:00+00:00");
        // The metrics read what the webhooks wrote.
        let m = app.admin(r#"{ metrics(period: {from: "2026-11-01T00:00:00Z", to: "2026-12-01T00:00:00Z"}) { wonRevenue winRate funnel { stages { stage reached } } } }"#, json!({})).await;
        let m = &data(&m)["metrics"];
        assert_eq!(m["wonRevenue"], "24000.00");
        assert_eq!(m["winRate"], 1.0);
        assert!(
            m["funnel"]["stages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["reached"] == 1),
            "{m}"
        );

        // An older update arriving after a newer one does not roll the lead back.
        let newer = envelope(
            "u2",
            "lead.upserted",
            "2026-11-30T00:00:00Z",
            json!({"externalId": "L-1", "title": "CTO"}),
        );
        let older = envelope(
            "u1",
            "lead.upserted",
            "2026-11-29T00:00:00Z",
            json!({"externalId": "L-1", "title": "Engineer"}),
        );
        assert_eq!(
            post_generic(app, &g.url, &g.secret, now(), &newer).await.0,
            200
        );
        settled(app).await;
        assert_eq!(
            post_generic(app, &g.url, &g.secret, now(), &older).await.0,
            200
        );
        settled(app).await;
        let resp = app.admin(r#"{ leads(first: 1) { nodes { title } } webhookEvents(first: 1, filter: {status: [APPLIED]}) { nodes { eventId outcome } } }"#, json!({})).await;
        assert_eq!(data(&resp)["leads"]["nodes"][0]["title"], "CTO");
        assert_eq!(
            data(&resp)["webhookEvents"]["nodes"][0],
            json!({"eventId": "u1", "outcome": "superseded"})
        );

        // An event that can never apply ends DEAD with its error; a replay after the fix applies it.
        let bad = envelope(
            "bad",
            "touchpoint.recorded",
            "2026-11-11T00:00:00Z",
            json!({"leadExternalId": "L-1", "campaignId": uuid::Uuid::now_v7().to_string()}),
        );
        assert_eq!(
            post_generic(app, &g.url, &g.secret, now(), &bad).await.0,
            200
        );
        settled(app).await;
        let resp = app.admin("{ webhookEvents(filter: {status: [DEAD]}) { nodes { id eventId attempts lastError } } integrationHealth { backlog failures dead applied lastReceivedAt } }", json!({})).await;
        let dead = &data(&resp)["webhookEvents"]["nodes"][0];
        assert_eq!(dead["eventId"], "bad");
        assert_eq!(dead["attempts"], 5);
        assert!(
            dead["lastError"].as_str().unwrap().contains("campaign"),
            "{dead}"
        );
        let health = &data(&resp)["integrationHealth"][0];
        assert_eq!(
            (
                health["backlog"].clone(),
                health["dead"].clone(),
                health["applied"].clone()
            ),
            (json!(0), json!(1), json!(9)),
            "{health}"
        );
        let id = dead["id"].as_str().unwrap().to_owned();
        let resp = app
            .admin(
                "mutation($id: ID!) { replayWebhookEvent(id: $id) { status attempts } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(
            data(&resp)["replayWebhookEvent"],
            json!({"status": "RECEIVED", "attempts": 0})
        );
        let again = app
            .admin(
                "mutation($id: ID!) { replayWebhookEvent(id: $id) { status } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(
            error_code(&again),
            Some("CONFLICT"),
            "only FAILED and DEAD events replay"
        );
        settled(app).await;
        assert_eq!(
            count(app, Some(WebhookStatus::Dead)).await,
            1,
            "the campaign still does not exist"
        );
        stop.cancel();
    }
);

/// HubSpot's v3 signature over method + URL + body + timestamp (ms).
async fn post_hubspot(
    app: &TestApp,
    url: &str,
    secret: &str,
    ts_ms: i64,
    body: &[u8],
) -> (u16, Value) {
    let res = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("x-hubspot-request-timestamp", ts_ms.to_string())
        .header(
            "x-hubspot-signature-v3",
            hubspot::sign(secret, "POST", url, body, ts_ms),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

const HUBSPOT_ID: &str = "0193a000-0000-7000-8000-000000000001";
const HUBSPOT_SECRET: &str = "hubspot-app-client-secret-0123456789";

/// A server with a HubSpot integration declared in its configuration (the
/// app's client secret is HubSpot's, not one Lockstep makes).
async fn hubspot_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.integrations = vec![api::config::DeclaredIntegration {
            id: HUBSPOT_ID.parse().unwrap(),
            name: "hubspot".into(),
            provider: "HUBSPOT".into(),
            secret: api::config::Secret(HUBSPOT_SECRET.into()),
            settings: json!({"portalId": 62515, "owners": {"7000": "m@lockstep.example", "7001": "s@lockstep.example"}}),
            disabled: false,
        }];
    })
    .await
}

async fn hubspot_case(app: &TestApp) {
    let stop = runner(app);
    let team = |name: &'static str, function: &'static str| async move {
        let r = app
            .admin(
                "mutation($i: CreateTeamInput!) { createTeam(input: $i) { id } }",
                json!({"i": {"name": name, "function": function}}),
            )
            .await;
        data(&r)["createTeam"]["id"].as_str().unwrap().to_owned()
    };
    let marketing = team("Marketing", "MARKETING").await;
    let sales = team("Sales", "SALES").await;
    let user = |email: &'static str, team: String| async move {
        let r = app
            .admin(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({"i": {"email": email, "name": email, "teamId": team, "role": "MEMBER"}}),
            )
            .await;
        data(&r)["createUser"]["id"].as_str().unwrap().to_owned()
    };
    let marketer = user("m@lockstep.example", marketing.clone()).await;
    user("s@lockstep.example", sales.clone()).await;
    // createIntegration cannot make a HubSpot secret; the declared one is listed.
    let resp = app
        .admin(
            "mutation { createIntegration(input: {name: \"h2\", provider: HUBSPOT}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"));
    let resp = app
        .admin(
            "{ integrations { nodes { id provider declared webhookUrl } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&resp)["integrations"]["nodes"][0]["declared"], true);
    let url = format!("{}/webhooks/hubspot/{HUBSPOT_ID}", app.url);
    let short = format!("{}/webhooks/hubspot", app.url);
    let batch = fixture("hubspot/contact_batch.json");
    let ts = chrono::Utc::now().timestamp_millis();
    // The negative cases first: wrong secret, stale, truncated, wrong content type, unknown type.
    assert_eq!(
        post_hubspot(app, &url, "wrong", ts, batch.as_bytes())
            .await
            .0,
        401
    );
    assert_eq!(
        post_hubspot(
            app,
            &url,
            HUBSPOT_SECRET,
            ts - 6 * 60 * 1000,
            batch.as_bytes()
        )
        .await
        .0,
        401
    );
    let (s, v) = post_hubspot(
        app,
        &url,
        HUBSPOT_SECRET,
        ts,
        &batch.as_bytes()[..batch.len() / 2],
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let res = app
        .client
        .post(&url)
        .header("content-type", "application/xml")
        .header("x-hubspot-request-timestamp", ts.to_string())
        .header(
            "x-hubspot-signature-v3",
            hubspot::sign(HUBSPOT_SECRET, "POST", &url, batch.as_bytes(), ts),
        )
        .body(batch.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    let (s, v) = post_hubspot(
        app,
        &url,
        HUBSPOT_SECRET,
        ts,
        fixture("hubspot/unknown_type.json").as_bytes(),
    )
    .await;
    assert!(
        s == 400
            && v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("ticket.creation"),
        "{v}"
    );
    let other_portal = batch.replace("62515", "99999");
    assert_eq!(
        post_hubspot(app, &url, HUBSPOT_SECRET, ts, other_portal.as_bytes())
            .await
            .0,
        401
    );
    assert_eq!(count(app, None).await, 0);
    // The batch, at the provider's one URL: one request, four events.
    let (s, v) = post_hubspot(app, &short, HUBSPOT_SECRET, ts, batch.as_bytes()).await;
    assert_eq!((s, v), (200, json!({"accepted": 4, "duplicates": 0})));
    settled(app).await;
    // The lead's owner is in marketing; HubSpot moves it to a seller: a hand-off.
    let resp = app
        .admin(r#"{ leads(first: 1) { nodes { id } } }"#, json!({}))
        .await;
    let lead = data(&resp)["leads"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .admin(
            "mutation($id: ID!, $i: LeadInput!) { updateLead(id: $id, input: $i) { id } }",
            json!({"id": lead, "i": {"ownerId": marketer, "teamId": marketing}}),
        )
        .await;
    data(&resp);
    let (s, _) = post_hubspot(
        app,
        &url,
        HUBSPOT_SECRET,
        ts,
        fixture("hubspot/owner_change.json").as_bytes(),
    )
    .await;
    assert_eq!(s, 200);
    settled(app).await;
    let resp = app.admin(r#"{ leads(first: 1) { nodes { email firstName stage owner { email } team { name } stageHistory { to: toStage at } } } handoffs(first: 5) { nodes { status fromTeam { name } toTeam { name } handedAt } } }"#, json!({})).await;
    let l = &data(&resp)["leads"]["nodes"][0];
    assert_eq!(l["email"], "grace@hopper.example");
    assert_eq!(l["firstName"], "Grace");
    assert_eq!(l["stage"], "MQL");
    assert_eq!(
        l["stageHistory"],
        json!([{"to": "INQUIRY", "at": "2025-11-03T09:00:00+00:00"}, {"to": "MQL", "at": "2025-11-04T09:00:00+00:00"}])
    );
    assert_eq!(l["owner"]["email"], "s@lockstep.example");
    assert_eq!(l["team"]["name"], "Sales");
    let handoffs = &data(&resp)["handoffs"]["nodes"];
    assert_eq!(
        handoffs,
        &json!([{"status": "ACCEPTED", "fromTeam": {"name": "Marketing"}, "toTeam": {"name": "Sales"}, "handedAt": "2025-11-05T09:00:00+00:00"}])
    );
    // A redelivered batch changes nothing.
    let (s, v) = post_hubspot(app, &url, HUBSPOT_SECRET, ts, batch.as_bytes()).await;
    assert_eq!((s, v), (200, json!({"accepted": 0, "duplicates": 4})));
    stop.cancel();
}

mod hubspot_batches_map_lifecycle_stages_and_owner_changes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = hubspot_app(Backend::Sqlite).await;
        hubspot_case(&app).await;
        app.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if !postgres_available().await {
            return;
        }
        let app = hubspot_app(Backend::Postgres).await;
        hubspot_case(&app).await;
        app.cleanup().await;
    }
}

db_test!(
    hubspot_integrations_are_created_over_graphql_with_the_client_secret,
    |app| async move {
        let stop = runner(app);
        let create = |input: Value| async move {
            app.admin(
                "mutation($i: CreateIntegrationInput!) { createIntegration(input: $i) { id secret webhookUrl integration { provider } } }",
                json!({ "i": input }),
            )
            .await
        };
        // HubSpot needs the app's client secret; the others make their own.
        let resp = create(json!({"name": "h", "provider": "HUBSPOT"})).await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
        let resp =
            create(json!({"name": "h", "provider": "HUBSPOT", "clientSecret": "short"})).await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
        let resp =
            create(json!({"name": "g", "provider": "GENERIC", "clientSecret": HUBSPOT_SECRET}))
                .await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
        let resp = create(json!({"name": "hubspot", "provider": "HUBSPOT", "settings": {"portalId": 62515}, "clientSecret": HUBSPOT_SECRET})).await;
        let c = &data(&resp)["createIntegration"];
        assert_eq!(c["integration"]["provider"], "HUBSPOT");
        assert_eq!(
            c["secret"],
            Value::Null,
            "the client secret is not shown back"
        );
        let id = c["id"].as_str().unwrap().to_owned();
        let url = format!("{}/webhooks/hubspot/{id}", app.url);
        assert!(
            c["webhookUrl"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/webhooks/hubspot/{id}"))
        );
        // Stored sealed: the column is not the plaintext, nor holds it.
        let row = entity::integration::Entity::find_by_id(uuid::Uuid::parse_str(&id).unwrap())
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        let sealed = row
            .secret_ciphertext
            .clone()
            .expect("a sealed client secret");
        assert!(!sealed.contains(HUBSPOT_SECRET) && sealed != HUBSPOT_SECRET);
        assert!(!row.settings.contains(HUBSPOT_SECRET));
        // No query returns it.
        let resp = app
            .admin(
                "{ integrations { nodes { id name provider settings webhookUrl declared } } }",
                json!({}),
            )
            .await;
        assert!(!resp.to_string().contains(HUBSPOT_SECRET), "{resp}");
        // Signed with another secret: 401, nothing stored; with the app's: accepted and applied.
        let batch = fixture("hubspot/contact_batch.json");
        let ts = chrono::Utc::now().timestamp_millis();
        let (s, v) = post_hubspot(
            app,
            &url,
            "another-app-client-secret-0000",
            ts,
            batch.as_bytes(),
        )
        .await;
        assert_eq!(s, 401, "{v}");
        assert_eq!(count(app, None).await, 0);
        let (s, v) = post_hubspot(app, &url, HUBSPOT_SECRET, ts, batch.as_bytes()).await;
        assert_eq!((s, v), (200, json!({"accepted": 4, "duplicates": 0})));
        settled(app).await;
        assert_eq!(count(app, Some(WebhookStatus::Applied)).await, 4);
        let resp = app
            .admin(
                r#"{ leads(first: 2) { nodes { email stage } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(
            data(&resp)["leads"]["nodes"],
            json!([{"email": "grace@hopper.example", "stage": "MQL"}])
        );
        // Rotation takes the app's new client secret; the old one works for the grace period.
        let rotate = "mutation($id: ID!, $s: String) { rotateIntegrationSecret(id: $id, clientSecret: $s) { secret integration { previousSecretExpiresAt } } }";
        let resp = app.admin(rotate, json!({"id": id})).await;
        assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
        let rotated = "hubspot-app-client-secret-rotated-42";
        let resp = app.admin(rotate, json!({"id": id, "s": rotated})).await;
        let r = &data(&resp)["rotateIntegrationSecret"];
        assert_eq!(r["secret"], Value::Null);
        assert!(r["integration"]["previousSecretExpiresAt"].is_string());
        let row2 = entity::integration::Entity::find_by_id(row.id)
            .one(app.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row2.previous_ciphertext.as_deref(), Some(sealed.as_str()));
        assert!(!row2.secret_ciphertext.clone().unwrap().contains(rotated));
        let owner_change = fixture("hubspot/owner_change.json");
        let (s, v) = post_hubspot(app, &url, HUBSPOT_SECRET, ts, owner_change.as_bytes()).await;
        assert_eq!(s, 200, "the old secret in its grace period: {v}");
        let (s, v) = post_hubspot(app, &url, rotated, ts, owner_change.as_bytes()).await;
        assert_eq!(
            (s, v),
            (200, json!({"accepted": 0, "duplicates": 1})),
            "the new one"
        );
        assert_eq!(
            post_hubspot(
                app,
                &url,
                "another-app-client-secret-0000",
                ts,
                owner_change.as_bytes()
            )
            .await
            .0,
            401
        );
        settled(app).await;
        stop.cancel();
    }
);

async fn account(app: &TestApp, name: &str) -> String {
    let r = app
        .admin(
            "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
            json!({"i": {"name": name}}),
        )
        .await;
    data(&r)["createAccount"]["id"].as_str().unwrap().to_owned()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn post_pipedrive(
    app: &TestApp,
    url: &str,
    auth: Option<String>,
    body: &str,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

db_test!(
    pipedrive_persons_and_deals_with_basic_auth,
    |app| async move {
        let stop = runner(app);
        let acme = account(app, "Analytical Ltd").await;
        let p = integration(
            app,
            "pipedrive",
            "PIPEDRIVE",
            json!({"username": "pd", "defaultAccountId": acme}),
        )
        .await;
        let person = fixture("pipedrive/person_create.json");
        // No auth, a wrong password, a wrong user: 401; truncated: 400; XML: 415; an unknown object: 400.
        assert_eq!(post_pipedrive(app, &p.url, None, &person).await.0, 401);
        assert_eq!(
            post_pipedrive(app, &p.url, Some(basic("pd", "nope")), &person)
                .await
                .0,
            401
        );
        assert_eq!(
            post_pipedrive(app, &p.url, Some(basic("lockstep", &p.secret)), &person)
                .await
                .0,
            401
        );
        let auth = || Some(basic("pd", &p.secret));
        assert_eq!(
            post_pipedrive(app, &p.url, auth(), &person[..person.len() - 10])
                .await
                .0,
            400
        );
        let res = app
            .client
            .post(&p.url)
            .header("content-type", "text/xml")
            .header("authorization", basic("pd", &p.secret))
            .body(person.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 415);
        let (s, v) = post_pipedrive(
            app,
            &p.url,
            auth(),
            &person.replace("\"entity\": \"person\"", "\"entity\": \"activity\""),
        )
        .await;
        assert!(
            s == 400
                && v["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("create.activity"),
            "{v}"
        );
        assert_eq!(count(app, None).await, 0);
        // The person, then its deal: the deal converts the person's lead.
        assert_eq!(post_pipedrive(app, &p.url, auth(), &person).await.0, 200);
        assert_eq!(
            post_pipedrive(app, &p.url, auth(), &person).await,
            (200, json!({"accepted": 0, "duplicates": 1}))
        );
        settled(app).await;
        assert_eq!(
            post_pipedrive(app, &p.url, auth(), &fixture("pipedrive/deal_won.json"))
                .await
                .0,
            200
        );
        settled(app).await;
        let resp = app.admin(r#"{ leads(first: 2) { nodes { email firstName lastName createdAt stage convertedOpportunity { name stage amount createdAt closedAt account { name } } } } }"#, json!({})).await;
        let leads = &data(&resp)["leads"]["nodes"];
        assert_eq!(leads.as_array().unwrap().len(), 1, "{leads}");
        let l = &leads[0];
        assert_eq!(
            (
                l["email"].clone(),
                l["firstName"].clone(),
                l["lastName"].clone()
            ),
            (json!("ada@analytical.example"), json!("Ada"), json!("King"))
        );
        assert_eq!(l["createdAt"], "2025-10-06T14:25:27+00:00");
        assert_eq!(l["stage"], "CONVERTED");
        assert_eq!(
            l["convertedOpportunity"],
            json!({"name": "Analytical engine licence", "stage": "CLOSED_WON", "amount": "8000.00", "createdAt": "2025-10-08T10:00:00+00:00", "closedAt": "2025-10-20T16:00:00+00:00", "account": {"name": "Analytical Ltd"}})
        );
        stop.cancel();
    }
);

async fn post_salesforce(app: &TestApp, url: &str, body: &str) -> (u16, String) {
    let res = app
        .client
        .post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

db_test!(salesforce_outbound_messages_are_acked, |app| async move {
    let stop = runner(app);
    let acme = account(app, "Babbage & Co").await;
    let bad = app
        .admin(
            "mutation { createIntegration(input: {name: \"sf\", provider: SALESFORCE}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&bad),
        Some("BAD_USER_INPUT"),
        "organizationId is required"
    );
    let sf = integration(
        app,
        "salesforce",
        "SALESFORCE",
        json!({"organizationId": "00D5e000000AbCdEAK", "defaultAccountId": acme}),
    )
    .await;
    let xml = fixture("salesforce/notifications.xml");
    let with_token = format!("{}?token={}", sf.url, sf.secret);
    // No token, a wrong one, another org: 401; truncated: 400; JSON: 415; an unknown sObject: 400.
    assert_eq!(post_salesforce(app, &sf.url, &xml).await.0, 401);
    assert_eq!(
        post_salesforce(app, &format!("{}?token=nope", sf.url), &xml)
            .await
            .0,
        401
    );
    assert_eq!(
        post_salesforce(
            app,
            &with_token,
            &xml.replace("00D5e000000AbCd", "00D5e000000ZzZz")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post_salesforce(app, &with_token, &xml[..xml.len() / 2])
            .await
            .0,
        400
    );
    let res = app
        .client
        .post(&with_token)
        .header("content-type", "application/json")
        .body(xml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    let (s, body) =
        post_salesforce(app, &with_token, &xml.replace("sf:Opportunity", "sf:Case")).await;
    assert!(s == 400 && body.contains("Case"), "{body}");
    assert_eq!(count(app, None).await, 0);
    // Accepted: the SOAP Ack; again (Salesforce resends until acked): the Ack, nothing new.
    let (s, body) = post_salesforce(app, &with_token, &xml).await;
    assert_eq!(s, 200);
    assert!(
        body.contains("<Ack>true</Ack>") && body.contains("notificationsResponse"),
        "{body}"
    );
    let res = app
        .client
        .post(&sf.url)
        .header("content-type", "text/xml")
        .header("x-lockstep-token", &sf.secret)
        .body(xml.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(count(app, None).await, 2);
    settled(app).await;
    let resp = app.admin(r#"{ leads(first: 2) { nodes { email company source stage createdAt stageHistory { to: toStage at } } } opportunities(first: 2) { nodes { name stage amount expectedCloseDate account { name } } } }"#, json!({})).await;
    let l = &data(&resp)["leads"]["nodes"][0];
    assert_eq!(
        (
            l["email"].clone(),
            l["company"].clone(),
            l["source"].clone()
        ),
        (
            json!("charles@babbage.example"),
            json!("Babbage & Co"),
            json!("WEB")
        )
    );
    assert_eq!(l["stage"], "MQL");
    assert_eq!(l["createdAt"], "2025-10-01T08:00:00+00:00");
    assert_eq!(
        data(&resp)["opportunities"]["nodes"],
        json!([{"name": "Difference Engine", "stage": "PROPOSAL", "amount": "12500.00", "expectedCloseDate": "2025-12-15", "account": {"name": "Babbage & Co"}}])
    );
    stop.cancel();
});

/// The Salesforce fixtures for one integration: its `system` keys its
/// records, and the lead's e-mail is made its own (e-mails are unique).
fn sf_fixture(path: &str, email: &str) -> String {
    fixture(path).replace("charles@babbage.example", email)
}

db_test!(
    salesforce_converted_leads_keep_one_opportunity_in_either_order,
    |app| async move {
        let stop = runner(app);
        let acme = account(app, "Babbage & Co").await;
        let settings = |system: &str| json!({"organizationId": "00D5e000000AbCdEAK", "defaultAccountId": acme, "system": system});
        let a = integration(app, "sf-a", "SALESFORCE", settings("sf-a")).await;
        let b = integration(app, "sf-b", "SALESFORCE", settings("sf-b")).await;
        let (a_url, b_url) = (
            format!("{}?token={}", a.url, a.secret),
            format!("{}?token={}", b.url, b.secret),
        );
        let post = |url: String, body: String| async move {
            let (s, text) = post_salesforce(app, &url, &body).await;
            assert!(s == 200 && text.contains("<Ack>true</Ack>"), "{s}: {text}");
        };
        // A: the lead (not converted yet), the converted lead, then the opportunity.
        post(
            a_url.clone(),
            sf_fixture("salesforce/notifications.xml", "a@babbage.example").replace(
                "<sf:Id>0065e00000OpPo1AAB</sf:Id>",
                "<sf:Id>0065e00000OtHeRAAB</sf:Id>",
            ),
        )
        .await;
        settled(app).await;
        post(
            a_url.clone(),
            sf_fixture("salesforce/lead_converted.xml", "a@babbage.example"),
        )
        .await;
        settled(app).await;
        post(
            a_url.clone(),
            sf_fixture("salesforce/opportunity_update.xml", "a@babbage.example"),
        )
        .await;
        settled(app).await;
        // B: the opportunity first, then the converted lead (new to Lockstep).
        post(
            b_url.clone(),
            sf_fixture("salesforce/opportunity_update.xml", "b@babbage.example"),
        )
        .await;
        settled(app).await;
        post(
            b_url.clone(),
            sf_fixture("salesforce/lead_converted.xml", "b@babbage.example"),
        )
        .await;
        settled(app).await;
        assert_eq!(count(app, Some(WebhookStatus::Dead)).await, 0);
        let query = r#"query($e: String) { leads(first: 5, filter: {search: $e}) { nodes { stage firstName stageHistory { from: fromStage to: toStage at } convertedOpportunity { name stage amount expectedCloseDate createdAt sourcedBy account { name } lead { email } } } } }"#;
        let one = |email: &'static str| async move {
            let resp = app.admin(query, json!({"e": email})).await;
            let nodes = data(&resp)["leads"]["nodes"].clone();
            assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{resp}");
            let mut l = nodes[0].clone();
            assert_eq!(
                l["convertedOpportunity"]["lead"]["email"], email,
                "linked both ways"
            );
            l["convertedOpportunity"]["lead"] = Value::Null;
            l
        };
        let (la, lb) = (
            one("a@babbage.example").await,
            one("b@babbage.example").await,
        );
        assert_eq!(la["stage"], "CONVERTED", "{la}");
        assert_eq!(
            la["convertedOpportunity"],
            json!({"name": "Difference Engine", "stage": "PROPOSAL", "amount": "12500.00", "expectedCloseDate": "2025-12-15", "createdAt": "2025-10-03T10:00:00+00:00", "sourcedBy": "SALES", "account": {"name": "Babbage & Co"}, "lead": null})
        );
        assert_eq!(
            la["stageHistory"].as_array().unwrap().last().unwrap(),
            &json!({"from": "MQL", "to": "CONVERTED", "at": "2025-10-03T10:00:00+00:00"})
        );
        assert_eq!(
            lb["convertedOpportunity"], la["convertedOpportunity"],
            "either order ends the same"
        );
        assert_eq!(lb["stage"], "CONVERTED");
        assert_eq!(
            lb["stageHistory"].as_array().unwrap().last().unwrap()["at"],
            "2025-10-03T10:00:00+00:00"
        );
        // One opportunity per converted lead (plus A's other one): no duplicate.
        let resp = app
            .admin(r#"{ opportunities(first: 10) { totalCount } }"#, json!({}))
            .await;
        assert_eq!(data(&resp)["opportunities"]["totalCount"], 3, "{resp}");
        // Later messages of the opportunity update it.
        let later = sf_fixture("salesforce/opportunity_update.xml", "b@babbage.example")
            .replace("04l5e00000AAAA4AAH", "04l5e00000AAAA5AAH")
            .replace("2025-10-05T12:00:00.000Z", "2025-10-09T12:00:00.000Z")
            .replace("Proposal/Price Quote", "Negotiation/Review");
        post(b_url.clone(), later).await;
        settled(app).await;
        let lb = one("b@babbage.example").await;
        assert_eq!(lb["convertedOpportunity"]["stage"], "NEGOTIATION");
        let resp = app
            .admin(r#"{ opportunities(first: 10) { totalCount } }"#, json!({}))
            .await;
        assert_eq!(data(&resp)["opportunities"]["totalCount"], 3);
        stop.cancel();
    }
);

db_test!(
    pipedrive_deletes_keep_the_records_and_say_so,
    |app| async move {
        let stop = runner(app);
        let acme = account(app, "Analytical Ltd").await;
        let p = integration(
            app,
            "pipedrive",
            "PIPEDRIVE",
            json!({"username": "pd", "defaultAccountId": acme}),
        )
        .await;
        let auth = || Some(basic("pd", &p.secret));
        for f in ["pipedrive/person_create.json", "pipedrive/deal_won.json"] {
            assert_eq!(
                post_pipedrive(app, &p.url, auth(), &fixture(f)).await.0,
                200
            );
            settled(app).await;
        }
        for f in ["pipedrive/person_delete.json", "pipedrive/deal_delete.json"] {
            assert_eq!(
                post_pipedrive(app, &p.url, auth(), &fixture(f)).await.0,
                200
            );
        }
        // A deal Lockstep never saw.
        let unknown = fixture("pipedrive/deal_delete.json")
            .replace("\"entity_id\": 77", "\"entity_id\": 999")
            .replace(
                "a3a1c9b0-2d4e-4f6a-8b1c-0d9e8f7a6b0a",
                "a3a1c9b0-2d4e-4f6a-8b1c-0d9e8f7a6b0b",
            );
        assert_eq!(post_pipedrive(app, &p.url, auth(), &unknown).await.0, 200);
        settled(app).await;
        let resp = app
        .admin(
            r#"{ webhookEvents(first: 10, direction: ASC) { nodes { eventType status outcome } } leads(first: 5) { nodes { stage convertedOpportunity { stage amount } } } opportunities(first: 5) { totalCount } }"#,
            json!({}),
        )
        .await;
        let d = data(&resp);
        let events: Vec<Value> = d["webhookEvents"]["nodes"].as_array().unwrap().clone();
        assert_eq!(
            events[2..].to_vec(),
            vec![
                json!({"eventType": "delete.person", "status": "APPLIED", "outcome": "ignored: person deleted in Pipedrive; Lockstep keeps the lead and its history"}),
                json!({"eventType": "delete.deal", "status": "APPLIED", "outcome": "ignored: deal deleted in Pipedrive; Lockstep keeps the opportunity and its history"}),
                json!({"eventType": "delete.deal", "status": "APPLIED", "outcome": "ignored: deal deleted in Pipedrive; no opportunity was synced from it"}),
            ]
        );
        // The lead and its won deal are still there, unchanged.
        assert_eq!(
            d["leads"]["nodes"],
            json!([{"stage": "CONVERTED", "convertedOpportunity": {"stage": "CLOSED_WON", "amount": "8000.00"}}])
        );
        assert_eq!(d["opportunities"]["totalCount"], 1);
        // A change older than the delete, delivered late, is not applied over it.
        let late = fixture("pipedrive/person_create.json")
            .replace("\"action\": \"create\"", "\"action\": \"change\"")
            .replace(
                "a3a1c9b0-2d4e-4f6a-8b1c-0d9e8f7a6b01",
                "a3a1c9b0-2d4e-4f6a-8b1c-0d9e8f7a6b0c",
            )
            .replace("2025-10-06T14:25:27.000Z", "2025-10-20T00:00:00.000Z")
            .replace("\"first_name\": \"Ada\"", "\"first_name\": \"Augusta\"");
        assert_eq!(post_pipedrive(app, &p.url, auth(), &late).await.0, 200);
        settled(app).await;
        let resp = app
        .admin(r#"{ leads(first: 5) { nodes { firstName } } webhookEvents(first: 1) { nodes { outcome } } }"#, json!({}))
        .await;
        assert_eq!(data(&resp)["leads"]["nodes"][0]["firstName"], "Ada");
        assert_eq!(
            data(&resp)["webhookEvents"]["nodes"][0]["outcome"],
            "superseded"
        );
        stop.cancel();
    }
);

// ---------------------------------------------------------------------------
// The fault test: the real binary on PostgreSQL, SIGKILLed mid-stream.

mod fault {
    use super::*;
    use rand::{Rng, SeedableRng, seq::SliceRandom};
    use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
    use std::collections::{BTreeMap, HashSet};
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use tokio::sync::Mutex;

    /// One event as the CRM sends it: the record it belongs to decides the
    /// sender (a record's events go out one after the other, as CRMs do).
    #[derive(Clone)]
    struct Sent {
        id: String,
        story: usize,
        body: Vec<u8>,
    }

    const SEGMENTS: [&str; 3] = ["SMB", "MID_MARKET", "ENTERPRISE"];

    fn at(day: i64, hour: i64) -> String {
        (chrono::DateTime::parse_from_rfc3339("2026-09-01T00:00:00Z").unwrap()
            + chrono::Duration::hours(day * 24 + hour))
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// A deterministic stream of about `n` events: accounts, then per lead
    /// its creation, updates (a tenth of them sent newest first), stage
    /// changes and, for some, a deal that closes. 10% are sent twice.
    fn stream(n: usize, seed: u64) -> Vec<Sent> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        let mut seq = 0usize;
        let mut push = |out: &mut Vec<Sent>, story: usize, ty: &str, when: String, data: Value| {
            seq += 1;
            let id = format!("evt-{seq:06}");
            out.push(Sent {
                body: serde_json::to_vec(
                    &json!({"id": id, "type": ty, "occurredAt": when, "data": data}),
                )
                .unwrap(),
                id,
                story,
            });
        };
        let accounts = (n / 100).max(2);
        for a in 0..accounts {
            push(
                &mut out,
                usize::MAX - a,
                "account.upserted",
                at(0, 0),
                json!({"externalId": format!("A{a}"), "name": format!("Account {a}"), "domain": format!("a{a}.example"), "segment": SEGMENTS[a % 3]}),
            );
        }
        let sources = ["WEB", "EVENT", "PAID", "EMAIL", "REFERRAL"];
        let mut lead = 0;
        while out.len() < n {
            let l = format!("L{lead}");
            let day = rng.random_range(1..60);
            let account = format!("A{}", rng.random_range(0..accounts));
            push(
                &mut out,
                lead,
                "lead.upserted",
                at(day, 0),
                json!({"externalId": l, "accountExternalId": account, "email": format!("lead{lead}@a.example"), "source": sources[lead % 5], "score": 10}),
            );
            let mut updates = Vec::new();
            for u in 0..rng.random_range(1..4) {
                updates.push((at(day, 1 + u), json!({"externalId": l, "title": format!("title {lead}.{u}"), "score": 10 + 5 * u})));
            }
            if updates.len() > 1 && rng.random_bool(0.5) {
                updates.swap(0, 1); // sent newest first: the older must not win
            }
            for (when, data) in updates {
                push(&mut out, lead, "lead.upserted", when, data);
            }
            let mut hour = 10;
            for stage in ["MQL", "SAL", "SQL"] {
                if !rng.random_bool(0.7) {
                    break;
                }
                hour += rng.random_range(1..48);
                push(
                    &mut out,
                    lead,
                    "lead.stage_changed",
                    at(day, hour),
                    json!({"externalId": l, "to": stage}),
                );
                if stage == "SQL" && rng.random_bool(0.6) {
                    let o = format!("O{lead}");
                    hour += rng.random_range(1..48);
                    push(
                        &mut out,
                        lead,
                        "opportunity.upserted",
                        at(day, hour),
                        json!({"externalId": o, "leadExternalId": l, "name": format!("Deal {lead}"), "amount": format!("{}.00", 1000 * rng.random_range(1..50))}),
                    );
                    hour += rng.random_range(1..200);
                    push(
                        &mut out,
                        lead,
                        "opportunity.stage_changed",
                        at(day, hour),
                        json!({"externalId": o, "leadExternalId": l, "to": "PROPOSAL"}),
                    );
                    if rng.random_bool(0.7) {
                        hour += rng.random_range(1..200);
                        let won = rng.random_bool(0.5);
                        push(
                            &mut out,
                            lead,
                            "opportunity.stage_changed",
                            at(day, hour),
                            json!({"externalId": o, "leadExternalId": l, "to": if won { "CLOSED_WON" } else { "CLOSED_LOST" }, "lostReason": "budget"}),
                        );
                    }
                }
            }
            lead += 1;
        }
        // 10% duplicates: the same event again, later in its record's stream.
        let mut dups: Vec<Sent> = out
            .iter()
            .filter(|_| rng.random_bool(0.1))
            .cloned()
            .collect();
        dups.shuffle(&mut rng);
        for d in dups {
            let last = out.iter().rposition(|e| e.story == d.story).unwrap();
            let pos =
                rng.random_range(out.iter().position(|e| e.id == d.id).unwrap() + 1..=last + 1);
            out.insert(pos, d);
        }
        out
    }

    struct Server {
        child: Child,
        url: String,
    }

    /// Kills the server (SIGKILL) if a test fails before it does.
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn spawn(db_url: &str) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--no-demo",
                "--database-url",
                db_url,
            ])
            .env("LOCKSTEP_JWT_SECRET", SECRET)
            .env("LOCKSTEP_RATE_LIMITS__ENABLED", "false")
            .env("LOCKSTEP_JOBS_POLL_MS", "20")
            .env("LOCKSTEP_JOBS_CONCURRENCY", "8")
            .env("LOCKSTEP_METRICS_CACHE_SECS", "0")
            .env("LOCKSTEP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            url: String::new(),
        };
        let stdout = server.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server printed its address"
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
                && let Some(u) = line.split("GraphiQL:").nth(1)
            {
                server.url = u.trim().trim_end_matches("/graphql").to_owned();
                return server;
            }
        }
    }

    fn token() -> String {
        let config = api::Config {
            jwt_secret: Some(api::config::Secret(SECRET.to_owned())),
            database_url: Some("postgres://unused".into()),
            ..api::Config::default()
        };
        api::auth::JwtKeys::from_config(&config)
            .unwrap()
            .issue(
                entity::enums::Role::Admin,
                "fault-test",
                Duration::from_secs(3600),
                None,
            )
            .unwrap()
    }

    async fn gql(client: &reqwest::Client, url: &str, query: &str, variables: Value) -> Value {
        client
            .post(format!("{url}/graphql"))
            .bearer_auth(token())
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn fresh_db() -> (String, String) {
        let name = format!("lockstep_fault_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(postgres_admin_url()).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let _ = admin.close().await;
        let url = match postgres_admin_url().rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => unreachable!(),
        };
        (name, url)
    }

    async fn drop_db(name: &str) {
        if let Ok(admin) = Database::connect(postgres_admin_url()).await {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }

    /// Sends the stream: one sender per group of records, each retrying an
    /// event until it is answered 2xx (as a CRM does). After `kill_after`
    /// answers, the server is SIGKILLed and started again on the same database.
    async fn run(events: &[Sent], db_url: &str, kill_after: Option<usize>) -> (usize, Server) {
        let server = Arc::new(Mutex::new(spawn(db_url)));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let url = server.lock().await.url.clone();
        let resp = gql(
            &client,
            &url,
            "mutation($i: CreateIntegrationInput!) { createIntegration(input: $i) { id secret } }",
            json!({"i": {"name": "crm", "provider": "GENERIC", "settings": {"system": "crm"}}}),
        )
        .await;
        let id = resp["data"]["createIntegration"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let secret = resp["data"]["createIntegration"]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        // Accounts first (as an initial sync would), then the stories.
        let send = |client: reqwest::Client, base: String, e: Sent| {
            let (id, secret) = (id.clone(), secret.clone());
            async move {
                client
                    .post(format!("{base}/webhooks/generic/{id}"))
                    .header("content-type", "application/json")
                    .header(
                        "x-lockstep-signature",
                        generic::sign(&secret, chrono::Utc::now().timestamp(), &e.body),
                    )
                    .body(e.body.clone())
                    .send()
                    .await
            }
        };
        for e in events.iter().filter(|e| e.story > usize::MAX / 2) {
            let res = send(client.clone(), url.clone(), e.clone()).await.unwrap();
            assert!(res.status().is_success());
        }
        let events: Vec<Sent> = events
            .iter()
            .filter(|e| e.story <= usize::MAX / 2)
            .cloned()
            .collect();
        let senders = 16;
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for s in 0..senders {
            let mine: Vec<Sent> = events
                .iter()
                .filter(|e| e.story % senders == s)
                .cloned()
                .collect();
            let (server, client, id, secret, answered, killed) = (
                server.clone(),
                client.clone(),
                id.clone(),
                secret.clone(),
                answered.clone(),
                killed.clone(),
            );
            let db_url = db_url.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut errors = 0usize;
                for e in mine {
                    loop {
                        let base = server.lock().await.url.clone();
                        let res = client
                            .post(format!("{base}/webhooks/generic/{id}"))
                            .header("content-type", "application/json")
                            .header(
                                "x-lockstep-signature",
                                generic::sign(&secret, chrono::Utc::now().timestamp(), &e.body),
                            )
                            .body(e.body.clone())
                            .send()
                            .await;
                        match res {
                            Ok(r) if r.status().is_success() => break,
                            Ok(r) => panic!("event {} answered {}", e.id, r.status()),
                            Err(_) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    let n = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    if kill_after == Some(n)
                        && !killed.swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        {
                            let mut guard = server.lock().await;
                            guard.child.kill().unwrap(); // SIGKILL
                            let _ = guard.child.wait();
                            // Until the new one is up, requests find nobody there.
                            guard.url = "http://127.0.0.1:9".into();
                        }
                        let fresh = spawn(&db_url);
                        let _old = std::mem::replace(&mut *server.lock().await, fresh);
                    }
                }
                errors
            }));
        }
        let mut errors = 0;
        for t in tasks {
            errors += t.await.unwrap();
        }
        let server = Arc::try_unwrap(server).ok().unwrap().into_inner();
        (errors, server)
    }

    async fn settle(db: &DatabaseConnection, unique: usize) {
        let started = Instant::now();
        loop {
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT status, COUNT(*) FROM webhook_events GROUP BY status",
                ))
                .await
                .unwrap();
            let by: BTreeMap<String, i64> = rows
                .iter()
                .map(|r| {
                    (
                        r.try_get_by_index::<String>(0).unwrap(),
                        r.try_get_by_index::<i64>(1).unwrap(),
                    )
                })
                .collect();
            if by.get("APPLIED").copied().unwrap_or(0) as usize == unique {
                assert_eq!(by.len(), 1, "{by:?}");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600) && !by.contains_key("DEAD"),
                "not settled: {by:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What a user sees: every record and metric, without ids or local times.
    async fn snapshot(url: &str) -> Value {
        let client = reqwest::Client::new();
        let mut leads = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let r = gql(&client, url, "query($after: String) { leads(first: 50, after: $after, orderBy: {field: EMAIL, direction: ASC}) { pageInfo { hasNextPage endCursor } nodes { email title score stage source createdAt account { name } stageHistory { fromStage toStage at } convertedOpportunity { name stage amount closedAt createdAt stageHistory { toStage at } } } } }", json!({"after": after})).await;
            let page = &r["data"]["leads"];
            assert!(page.is_object(), "{r}");
            leads.extend(page["nodes"].as_array().unwrap().iter().cloned());
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        let m = gql(&client, url, r#"{ metrics(period: {from: "2026-09-01T00:00:00Z", to: "2027-01-01T00:00:00Z"}) { funnel { stages { stage reached conversion medianHoursToNext } inquiryToWon } winRate averageDealSize wonRevenue salesCycle pipeline { total } closedLoop(groupBy: SOURCE) { key leads mqls opportunities won wonRevenue closeRate } } accounts(first: 1) { totalCount } opportunities(first: 1) { totalCount } }"#, json!({})).await;
        assert!(m["errors"].is_null(), "{m}");
        json!({"leads": leads, "metrics": m["data"]})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sigkill_midstream_loses_nothing_and_applies_each_event_once() {
        if !postgres_available().await {
            return;
        }
        let n: usize = std::env::var("LOCKSTEP_FAULT_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600);
        let events = stream(n, 7);
        let unique: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert!(
            events.len() > unique.len() + unique.len() / 20,
            "duplicates are sent"
        );

        // The clean run.
        let (clean_name, clean_url) = fresh_db().await;
        let (_, mut clean) = run(&events, &clean_url, None).await;
        let clean_db = Database::connect(&clean_url).await.unwrap();
        settle(&clean_db, unique.len()).await;
        let expected = snapshot(&clean.url).await;
        let _ = clean.child.kill();
        let _ = clean.child.wait();
        let _ = clean_db.close().await;

        // The same stream, SIGKILLed after half of it was answered.
        let (fault_name, fault_url) = fresh_db().await;
        let (errors, mut server) = run(&events, &fault_url, Some(events.len() / 2)).await;
        assert!(
            errors > 0,
            "some requests hit the killed server and were sent again"
        );
        let db = Database::connect(&fault_url).await.unwrap();
        settle(&db, unique.len()).await;
        // Each event is stored once and was applied once: one row per id, and
        // the records (their stage histories included) equal the clean run's.
        let rows = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM webhook_events",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            rows.try_get_by_index::<i64>(0).unwrap() as usize,
            unique.len()
        );
        assert_eq!(
            rows.try_get_by_index::<i64>(1).unwrap() as usize,
            unique.len()
        );
        let got = snapshot(&server.url).await;
        assert_eq!(got["metrics"], expected["metrics"]);
        assert_eq!(
            got["leads"].as_array().unwrap().len(),
            expected["leads"].as_array().unwrap().len()
        );
        for (g, e) in got["leads"]
            .as_array()
            .unwrap()
            .iter()
            .zip(expected["leads"].as_array().unwrap())
        {
            assert_eq!(g, e);
        }
        let _ = server.child.kill();
        let _ = server.child.wait();
        let _ = db.close().await;
        drop_db(&clean_name).await;
        drop_db(&fault_name).await;
    }
}
