//! The metric cache: repeats are answered without running the metric, a
//! write makes the next answer fresh, and a role never reads another's entry.

use crate::harness::*;
use chrono::{Duration, Utc};
use entity::enums::Role;
use serde_json::{Value, json};

/// Three statements or more on either database (funnel, and closed loop's two).
const FUNNEL: &str = "query($p: PeriodInput!) { metrics(period: $p) { funnel { stages { stage reached } } closedLoop(groupBy: SOURCE) { key leads } } }";

fn inquiries(resp: &Value) -> i64 {
    data(resp)["metrics"]["funnel"]["stages"][0]["reached"]
        .as_i64()
        .unwrap()
}

async fn create_lead(app: &TestApp, email: &str) {
    let resp = app
        .admin(
            "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
            json!({"i": {"email": email}}),
        )
        .await;
    data(&resp);
}

async fn case(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.metrics_cache_secs = 30).await;
    let viewer = app.token(Role::Viewer, "bi-tool");
    let period = json!({"p": {"from": Utc::now() - Duration::days(1), "to": Utc::now() + Duration::days(1)}});
    create_lead(&app, "ann@acme.com").await;

    // What a request costs without any metric: authentication and the like.
    let before = app.statements();
    data(&app.gql(&viewer, "{ me { role } }", json!({})).await);
    let baseline = app.statements() - before;

    let before = app.statements();
    let first = app.gql(&viewer, FUNNEL, period.clone()).await;
    let computed = app.statements() - before;
    assert_eq!(inquiries(&first), 1);
    assert!(computed >= baseline + 4, "the first answer runs the metric");

    // The same request again: one statement more than the baseline (the data version).
    let before = app.statements();
    let again = app.gql(&viewer, FUNNEL, period.clone()).await;
    assert_eq!(
        app.statements() - before,
        baseline + 1,
        "served from the cache"
    );
    assert_eq!(again, first);

    // Another role does not read the VIEWER's entry.
    let before = app.statements();
    let admin = app.admin(FUNNEL, period.clone()).await;
    assert!(
        app.statements() - before > baseline + 1,
        "ADMIN computes its own"
    );
    assert_eq!(inquiries(&admin), 1);

    // Other variables are another entry.
    let other = json!({"p": {"from": Utc::now() - Duration::days(2), "to": Utc::now() + Duration::days(1)}});
    let before = app.statements();
    data(&app.gql(&viewer, FUNNEL, other).await);
    assert!(app.statements() - before > baseline + 1);

    // A write: the next answer is fresh.
    create_lead(&app, "bob@acme.com").await;
    let fresh = app.gql(&viewer, FUNNEL, period.clone()).await;
    assert_eq!(inquiries(&fresh), 2, "a write invalidates the cache");

    // A query that selects more than metrics is never cached.
    let mixed = "query($p: PeriodInput!) { me { role } metrics(period: $p) { funnel { stages { reached } } closedLoop(groupBy: SOURCE) { key } } }";
    let before = app.statements();
    data(&app.gql(&viewer, mixed, period.clone()).await);
    let first = app.statements() - before;
    let before = app.statements();
    data(&app.gql(&viewer, mixed, period.clone()).await);
    assert_eq!(app.statements() - before, first, "computed again");
    assert!(first >= baseline + 3);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    case(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    if !postgres_available().await {
        return;
    }
    case(Backend::Postgres).await;
}
