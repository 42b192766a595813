//! Hand-offs and the SLA: handing off, accepting and rejecting (with the
//! lead's stage, owner and team), bad input with its codes and nothing
//! changed, qualification and auto hand-off by policy, expiry by the
//! periodic job, hand-worked SLA compliance and audit numbers, and
//! concurrent answers to one hand-off (exactly one wins).

use crate::db_test;
use crate::harness::*;
use api::jobs::{self, CancellationToken, Runner, RunnerConfig};
use entity::enums::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const HAND_OFF: &str = "mutation($i: HandOffInput!) { handOff(input: $i) { id status handedAt dueAt respondedAt reason fromTeam { name } toTeam { name } fromUser { name } lead { stage } overdue answeredInTime } }";
const ACCEPT: &str = "mutation($id: ID!) { acceptHandoff(id: $id) { id status respondedBy { name } lead { stage owner { name } team { name } } } }";
const REJECT: &str = "mutation($id: ID!, $r: HandoffReason, $n: String) { rejectHandoff(id: $id, reason: $r, note: $n) { id status reason responseNote lead { stage } } }";
const POLICY: &str = "mutation($i: SlaPolicyInput!) { createSlaPolicy(input: $i) { id responseHours minScore segments sources autoHandOff } }";
const LEAD: &str = "mutation($i: LeadInput!) { createLead(input: $i) { id stage } }";

struct World {
    mkt: String,
    sdr: String,
    sales: String,
    mkt_token: String,
    sdr_user: String,
    sdr_token: String,
    sdr2_token: String,
}

async fn team(app: &TestApp, name: &str, function: &str) -> String {
    let resp = app
        .admin(
            "mutation($i: CreateTeamInput!) { createTeam(input: $i) { id } }",
            json!({"i": {"name": name, "function": function}}),
        )
        .await;
    data(&resp)["createTeam"]["id"].as_str().unwrap().to_owned()
}

async fn user(app: &TestApp, email: &str, team: &str) -> (String, String) {
    let resp = app
        .admin(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({"i": {"email": email, "name": email, "teamId": team, "role": "MEMBER"}}),
        )
        .await;
    let id = data(&resp)["createUser"]["id"].as_str().unwrap().to_owned();
    let token = app.token(Role::Member, &id);
    (id, token)
}

async fn world(app: &TestApp) -> World {
    let mkt = team(app, "Marketing", "MARKETING").await;
    let sdr = team(app, "SDR", "SALES_DEVELOPMENT").await;
    let sales = team(app, "Sales", "SALES").await;
    let (_, mkt_token) = user(app, "mia@x.io", &mkt).await;
    let (sdr_user, sdr_token) = user(app, "sam@x.io", &sdr).await;
    let (_, sdr2_token) = user(app, "sue@x.io", &sdr).await;
    World {
        mkt,
        sdr,
        sales,
        mkt_token,
        sdr_user,
        sdr_token,
        sdr2_token,
    }
}

async fn lead(app: &TestApp, input: Value) -> String {
    let resp = app.admin(LEAD, json!({"i": input})).await;
    data(&resp)["createLead"]["id"].as_str().unwrap().to_owned()
}

async fn policy(app: &TestApp, input: Value) -> String {
    let resp = app.admin(POLICY, json!({"i": input})).await;
    data(&resp)["createSlaPolicy"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn hours(a: &Value, b: &Value) -> f64 {
    let a = chrono::DateTime::parse_from_rfc3339(a.as_str().unwrap()).unwrap();
    let b = chrono::DateTime::parse_from_rfc3339(b.as_str().unwrap()).unwrap();
    (b - a).num_seconds() as f64 / 3600.0
}

async fn count(app: &TestApp, filter: Value) -> u64 {
    let resp = app
        .admin(
            "query($f: HandoffFilterInput) { handoffs(filter: $f) { totalCount } }",
            json!({"f": filter}),
        )
        .await;
    data(&resp)["handoffs"]["totalCount"].as_u64().unwrap()
}

db_test!(hand_off_accept_reject_and_bad_input, |app| async move {
    let w = world(app).await;
    policy(
            app,
            json!({"name": "MKT→SDR", "fromTeamId": w.mkt, "toTeamId": w.sdr, "period": "MONTH", "qualifiedLeadTarget": 10, "responseHours": 24}),
        )
        .await;
    let l1 = lead(app, json!({"email": "a@acme.io", "stage": "MQL"})).await;

    // A member hands off from their own team; dueAt is 24 h later.
    let resp = app
        .gql(
            &w.mkt_token,
            HAND_OFF,
            json!({"i": {"leadId": l1, "toTeamId": w.sdr, "note": "hot"}}),
        )
        .await;
    let h = data(&resp)["handOff"].clone();
    assert_eq!(h["status"], "PENDING");
    assert_eq!(h["fromTeam"]["name"], "Marketing");
    assert_eq!(h["fromUser"]["name"], "mia@x.io");
    assert_eq!(hours(&h["handedAt"], &h["dueAt"]), 24.0);
    assert_eq!(h["overdue"], false);
    let h1 = h["id"].as_str().unwrap().to_owned();

    // Bad input: each a clear error, and nothing changed.
    let cases = [
        (json!({"leadId": l1, "toTeamId": w.sdr}), "CONFLICT"),
        (json!({"leadId": l1, "toTeamId": w.mkt}), "BAD_USER_INPUT"),
        (
            json!({"leadId": l1, "toTeamId": "00000000-0000-0000-0000-000000000001"}),
            "NOT_FOUND",
        ),
        (
            json!({"leadId": "00000000-0000-0000-0000-000000000001", "toTeamId": w.sdr}),
            "NOT_FOUND",
        ),
        (json!({"toTeamId": w.sdr}), "BAD_USER_INPUT"),
        (
            json!({"leadId": l1, "toTeamId": w.sales, "toUserId": w.sdr_user}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"leadId": l1, "toTeamId": w.sales, "fromTeamId": w.sdr}),
            "FORBIDDEN",
        ),
        (
            json!({"leadId": l1, "toTeamId": w.sales, "handedAt": "2026-01-01T00:00:00Z"}),
            "FORBIDDEN",
        ),
    ];
    for (input, code) in cases {
        let resp = app
            .gql(&w.mkt_token, HAND_OFF, json!({"i": input.clone()}))
            .await;
        assert_eq!(error_code(&resp), Some(code), "{input}: {resp}");
    }
    let viewer = app.token(Role::Viewer, "bi");
    let resp = app
        .gql(
            &viewer,
            HAND_OFF,
            json!({"i": {"leadId": l1, "toTeamId": w.sdr}}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"));
    // Answers: no reason, a reason not in the enum, someone outside the team.
    let resp = app.gql(&w.sdr_token, REJECT, json!({"id": h1})).await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["field"], "reason");
    let resp = app
        .gql(
            &w.sdr_token,
            REJECT,
            json!({"id": h1, "r": "TOO_EXPENSIVE"}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
    let resp = app.gql(&w.mkt_token, ACCEPT, json!({"id": h1})).await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    let resp = app.gql(&viewer, ACCEPT, json!({"id": h1})).await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    assert_eq!(count(app, json!({})).await, 1);
    assert_eq!(count(app, json!({"status": ["PENDING"]})).await, 1);

    // Policies: non-positive target or hours, an unknown team, a second policy of a route.
    for (input, code) in [
        (
            json!({"name": "x", "fromTeamId": w.mkt, "toTeamId": w.sales, "period": "MONTH", "qualifiedLeadTarget": 0, "responseHours": 4}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"name": "x", "fromTeamId": w.mkt, "toTeamId": w.sales, "period": "MONTH", "qualifiedLeadTarget": 5, "responseHours": -1}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"name": "x", "fromTeamId": w.mkt, "toTeamId": "00000000-0000-0000-0000-000000000001", "period": "MONTH", "qualifiedLeadTarget": 5, "responseHours": 4}),
            "NOT_FOUND",
        ),
        (
            json!({"name": "x", "fromTeamId": w.mkt, "toTeamId": w.sdr, "period": "QUARTER", "qualifiedLeadTarget": 5, "responseHours": 4}),
            "CONFLICT",
        ),
    ] {
        let resp = app.admin(POLICY, json!({"i": input.clone()})).await;
        assert_eq!(error_code(&resp), Some(code), "{input}: {resp}");
    }
    let resp = app
        .gql(&w.mkt_token, POLICY, json!({"i": {"name": "x"}}))
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"));
    let resp = app.admin("{ slaPolicies { name } }", json!({})).await;
    assert_eq!(data(&resp)["slaPolicies"].as_array().unwrap().len(), 1);

    // Accepting into SDR: MQL → SAL, the accepting user owns it, SDR is its team.
    let resp = app.gql(&w.sdr_token, ACCEPT, json!({"id": h1})).await;
    let a = &data(&resp)["acceptHandoff"];
    assert_eq!(a["status"], "ACCEPTED");
    assert_eq!(a["respondedBy"]["name"], "sam@x.io");
    assert_eq!(a["lead"]["stage"], "SAL");
    assert_eq!(a["lead"]["owner"]["name"], "sam@x.io");
    assert_eq!(a["lead"]["team"]["name"], "SDR");
    let resp = app
        .gql(&w.sdr2_token, REJECT, json!({"id": h1, "r": "BAD_FIT"}))
        .await;
    assert_eq!(error_code(&resp), Some("CONFLICT"), "{resp}");
    let resp = app
            .admin(
                "query($id: ID!) { lead(id: $id) { stageHistory { toStage reason } handoffs { status answeredInTime } } }",
                json!({"id": l1}),
            )
            .await;
    let l = &data(&resp)["lead"];
    assert_eq!(
        l["stageHistory"][1],
        json!({"toStage": "SAL", "reason": "handoff:accepted"})
    );
    assert_eq!(
        l["handoffs"],
        json!([{"status": "ACCEPTED", "answeredInTime": true}])
    );

    // Rejections move the lead as the reason says.
    for (email, reason, stage) in [
        ("b@acme.io", "NO_BUDGET", "RECYCLED"),
        ("c@acme.io", "BAD_FIT", "DISQUALIFIED"),
    ] {
        let l = lead(app, json!({"email": email, "stage": "MQL"})).await;
        let resp = app
            .gql(
                &w.mkt_token,
                HAND_OFF,
                json!({"i": {"leadId": l, "toTeamId": w.sdr}}),
            )
            .await;
        let id = data(&resp)["handOff"]["id"].clone();
        let resp = app
            .gql(
                &w.sdr2_token,
                REJECT,
                json!({"id": id, "r": reason, "n": "not now"}),
            )
            .await;
        let r = &data(&resp)["rejectHandoff"];
        assert_eq!(r["status"], "REJECTED");
        assert_eq!(r["reason"], reason);
        assert_eq!(r["responseNote"], "not now");
        assert_eq!(r["lead"]["stage"], stage);
    }
    assert_eq!(count(app, json!({"status": ["REJECTED"]})).await, 2);
    assert_eq!(
        count(app, json!({"toTeamId": [w.sdr], "leadId": [l1]})).await,
        1
    );
    // VIEWER reads hand-offs with notes masked.
    let resp = app
        .gql(
            &viewer,
            "{ handoffs(first: 10) { nodes { note status } } }",
            json!({}),
        )
        .await;
    for n in data(&resp)["handoffs"]["nodes"].as_array().unwrap() {
        assert!(n["note"].is_null(), "{n}");
    }
});

db_test!(policies_qualify_leads_and_hand_them_off, |app| async move {
    let w = world(app).await;
    policy(
            app,
            json!({"name": "score", "fromTeamId": w.mkt, "toTeamId": w.sdr, "period": "MONTH", "qualifiedLeadTarget": 10, "responseHours": 8, "minScore": 50, "sources": ["WEB"], "autoHandOff": true}),
        )
        .await;
    // A policy without criteria qualifies nothing by itself.
    policy(
            app,
            json!({"name": "plain", "fromTeamId": w.mkt, "toTeamId": w.sales, "period": "QUARTER", "qualifiedLeadTarget": 3, "responseHours": 48}),
        )
        .await;
    let q = "query($id: ID!) { lead(id: $id) { stage stageHistory { toStage reason } handoffs { status toTeam { name } fromTeam { name } dueAt handedAt } } }";
    let hot = lead(
        app,
        json!({"email": "hot@x.io", "score": 80, "source": "WEB"}),
    )
    .await;
    let resp = app.admin(q, json!({"id": hot})).await;
    let l = &data(&resp)["lead"];
    assert_eq!(l["stage"], "MQL");
    assert_eq!(
        l["stageHistory"][1],
        json!({"toStage": "MQL", "reason": "sla:qualified"})
    );
    let h = &l["handoffs"][0];
    assert_eq!(h["status"], "PENDING");
    assert_eq!(h["toTeam"]["name"], "SDR");
    assert_eq!(h["fromTeam"]["name"], "Marketing");
    assert_eq!(hours(&h["handedAt"], &h["dueAt"]), 8.0);

    // Criteria not met: stays INQUIRY; its score rises: qualified and handed off.
    let cold = lead(
        app,
        json!({"email": "cold@x.io", "score": 10, "source": "WEB"}),
    )
    .await;
    let other = lead(
        app,
        json!({"email": "ev@x.io", "score": 90, "source": "EVENT"}),
    )
    .await;
    for id in [&cold, &other] {
        let resp = app.admin(q, json!({"id": id})).await;
        assert_eq!(data(&resp)["lead"]["stage"], "INQUIRY");
        assert_eq!(data(&resp)["lead"]["handoffs"], json!([]));
    }
    let resp = app
        .admin(
            "mutation($id: ID!) { updateLead(id: $id, input: {score: 60}) { stage } }",
            json!({"id": cold}),
        )
        .await;
    assert_eq!(data(&resp)["updateLead"]["stage"], "MQL");
    let resp = app.admin(q, json!({"id": cold})).await;
    assert_eq!(data(&resp)["lead"]["handoffs"][0]["status"], "PENDING");
    assert_eq!(count(app, json!({"status": ["PENDING"]})).await, 2);
});

/// Runs Lockstep's own job handlers until `check` holds (bounded, no timing asserted).
async fn run_jobs_until<F, Fut>(app: &TestApp, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let config = RunnerConfig {
        concurrency: 2,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(20),
        schedule_interval: Duration::from_secs(3600),
        grace: Duration::from_secs(5),
        stale_after: Duration::from_secs(60),
    };
    let stop = CancellationToken::new();
    let runner = Runner::new(app.db().clone(), jobs::builtin::registry(), config)
        .with_schedules(jobs::builtin::schedules())
        .spawn(stop.clone());
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gave up waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = runner.await;
}

const SLA: &str = "query($p: ID!) { metrics(period: {from: \"2026-01-01T00:00:00Z\", to: \"2026-03-01T00:00:00Z\"}) { slaCompliance(policyId: $p) { periodFrom periodTo mqlsDelivered target targetAttainment handoffsDue answeredInTime answered complianceRate medianResponseHours overduePending overdue { id } } } }";
const AUDIT: &str = "query($g: HandoffAuditGroup!) { metrics(period: {from: \"2026-01-01T00:00:00Z\", to: \"2026-03-01T00:00:00Z\"}) { handoffAudit(groupBy: $g) { key fromTeam { name } toTeam { name } reason handed accepted rejected expired pending acceptanceRate rejectionsByReason { reason count } acceptedToOpportunity acceptedWon } } }";

db_test!(sla_compliance_and_audit_by_hand, |app| async move {
    let w = world(app).await;
    let p = policy(
            app,
            json!({"name": "MKT→SDR", "fromTeamId": w.mkt, "toTeamId": w.sdr, "period": "MONTH", "qualifiedLeadTarget": 4, "responseHours": 24}),
        )
        .await;
    let acme = data(
        &app.admin(
            "mutation { createAccount(input: {name: \"Acme\", domain: \"acme.io\"}) { id } }",
            json!({}),
        )
        .await,
    )["createAccount"]["id"]
        .clone();
    // Five leads, MQL on January 1st to 5th (backfilled: no policy replays on them).
    let mut leads = Vec::new();
    for d in 1..=5 {
        leads.push(
                lead(
                    app,
                    json!({"email": format!("l{d}@acme.io"), "stage": "MQL", "accountId": acme, "createdAt": format!("2026-01-0{d}T00:00:00Z")}),
                )
                .await,
            );
    }
    // Imported hand-offs (ADMIN backfill), each due 24 h after it was handed:
    // A answered exactly at dueAt (in time, 24 h); B after 6 h (in time);
    // C handed Jan 31 12:00, due Feb 1 12:00 (next month), rejected after 12 h;
    // D due Jan 16, answered Jan 17 (late, 48 h); E still PENDING, due Jan 6.
    let imports = [
        (
            0,
            "2026-01-10T00:00:00Z",
            "ACCEPTED",
            Some("2026-01-11T00:00:00Z"),
            None,
        ),
        (
            1,
            "2026-01-20T00:00:00Z",
            "ACCEPTED",
            Some("2026-01-20T06:00:00Z"),
            None,
        ),
        (
            2,
            "2026-01-31T12:00:00Z",
            "REJECTED",
            Some("2026-02-01T00:00:00Z"),
            Some("NO_BUDGET"),
        ),
        (
            3,
            "2026-01-15T00:00:00Z",
            "ACCEPTED",
            Some("2026-01-17T00:00:00Z"),
            None,
        ),
        (4, "2026-01-05T00:00:00Z", "PENDING", None, None),
    ];
    let mut ids = Vec::new();
    for (i, handed, status, responded, reason) in imports {
        let resp = app
                .admin(
                    HAND_OFF,
                    json!({"i": {"leadId": leads[i], "fromTeamId": w.mkt, "toTeamId": w.sdr, "handedAt": handed, "status": status, "respondedAt": responded, "reason": reason}}),
                )
                .await;
        ids.push(data(&resp)["handOff"]["id"].as_str().unwrap().to_owned());
    }
    // Backfilled answers are recorded as they were: the leads stay MQL.
    let resp = app
        .admin(
            "query($id: ID!) { lead(id: $id) { stage } }",
            json!({"id": leads[2]}),
        )
        .await;
    assert_eq!(data(&resp)["lead"]["stage"], "MQL");
    // Backfill rules.
    for (input, code) in [
        (
            json!({"leadId": leads[0], "fromTeamId": w.mkt, "toTeamId": w.sdr, "status": "REJECTED", "respondedAt": "2026-01-02T00:00:00Z"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"leadId": leads[0], "fromTeamId": w.mkt, "toTeamId": w.sdr, "status": "ACCEPTED"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"leadId": leads[0], "fromTeamId": w.mkt, "toTeamId": w.sdr, "handedAt": "2026-01-03T00:00:00Z", "status": "ACCEPTED", "respondedAt": "2026-01-02T00:00:00Z"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"leadId": leads[4], "fromTeamId": w.mkt, "toTeamId": w.sdr}),
            "CONFLICT",
        ),
    ] {
        let resp = app.admin(HAND_OFF, json!({"i": input.clone()})).await;
        assert_eq!(error_code(&resp), Some(code), "{input}: {resp}");
    }
    // Lead A converted and won, lead D converted and still open.
    for (i, win) in [(0, true), (3, false)] {
        let resp = app
                .admin(
                    "mutation($id: ID!) { convertLead(id: $id, opportunity: {name: \"Deal\", amount: \"1000\"}) { opportunity { id } } }",
                    json!({"id": leads[i]}),
                )
                .await;
        let opp = data(&resp)["convertLead"]["opportunity"]["id"].clone();
        if win {
            let resp = app
                    .admin(
                        "mutation($id: ID!) { changeOpportunityStage(id: $id, to: CLOSED_WON) { stage } }",
                        json!({"id": opp}),
                    )
                    .await;
            data(&resp);
        }
    }

    let resp = app.admin(SLA, json!({"p": p})).await;
    let rows = data(&resp)["metrics"]["slaCompliance"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows:#}");
    let jan = &rows[0];
    assert_eq!(jan["periodFrom"], "2026-01-01T00:00:00+00:00");
    assert_eq!(jan["periodTo"], "2026-02-01T00:00:00+00:00");
    assert_eq!(jan["mqlsDelivered"], 5);
    assert_eq!(jan["target"], 4);
    assert_eq!(jan["targetAttainment"], 1.25);
    assert_eq!(jan["handoffsDue"], 4, "A, B, D, E");
    assert_eq!(jan["answeredInTime"], 2, "A (exactly at dueAt) and B");
    assert_eq!(jan["answered"], 3);
    assert_eq!(jan["complianceRate"], 0.5);
    assert_eq!(jan["medianResponseHours"], 24.0, "median of 24, 6, 48");
    assert_eq!(jan["overduePending"], 1);
    assert_eq!(jan["overdue"], json!([{"id": ids[4]}]));
    let feb = &rows[1];
    assert_eq!(feb["mqlsDelivered"], 0);
    assert_eq!(feb["handoffsDue"], 1, "C, handed in January");
    assert_eq!(feb["answeredInTime"], 1);
    assert_eq!(feb["complianceRate"], 1.0);
    assert_eq!(feb["medianResponseHours"], 12.0);
    assert_eq!(feb["overduePending"], 0);
    assert_eq!(count(app, json!({"overdue": true})).await, 1);

    // The periodic job expires E (kept visible as a breach); answering it is CONFLICT.
    let db = app.db().clone();
    let e = ids[4].clone();
    run_jobs_until(app, "E is EXPIRED", || {
        let (db, e) = (db.clone(), e.clone());
        async move {
            use sea_orm::EntityTrait;
            entity::handoff::Entity::find_by_id(uuid::Uuid::parse_str(&e).unwrap())
                .one(&db)
                .await
                .unwrap()
                .is_some_and(|h| h.status == entity::enums::HandoffStatus::Expired)
        }
    })
    .await;
    let resp = app.gql(&w.sdr_token, ACCEPT, json!({"id": ids[4]})).await;
    assert_eq!(error_code(&resp), Some("CONFLICT"), "{resp}");
    assert_eq!(count(app, json!({"overdue": true})).await, 0);
    assert_eq!(count(app, json!({"status": ["EXPIRED"]})).await, 1);
    let resp = app.admin(SLA, json!({"p": p})).await;
    let jan = &data(&resp)["metrics"]["slaCompliance"][0];
    assert_eq!(jan["handoffsDue"], 4);
    assert_eq!(jan["answeredInTime"], 2);
    assert_eq!(jan["overduePending"], 0);

    let resp = app.admin(AUDIT, json!({"g": "ROUTE"})).await;
    let rows = &data(&resp)["metrics"]["handoffAudit"];
    assert_eq!(
        rows,
        &json!([{
            "key": format!("{}:{}", w.mkt, w.sdr),
            "fromTeam": {"name": "Marketing"}, "toTeam": {"name": "SDR"}, "reason": null,
            "handed": 5, "accepted": 3, "rejected": 1, "expired": 1, "pending": 0,
            "acceptanceRate": 0.6,
            "rejectionsByReason": [{"reason": "NO_BUDGET", "count": 1}],
            "acceptedToOpportunity": 2, "acceptedWon": 1
        }])
    );
    let resp = app.admin(AUDIT, json!({"g": "REASON"})).await;
    let rows = data(&resp)["metrics"]["handoffAudit"]
        .as_array()
        .unwrap()
        .clone();
    let by: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|r| (r["key"].clone(), r["handed"].clone(), r["rejected"].clone()))
        .collect();
    assert!(by.contains(&(json!("NONE"), json!(4), json!(0))), "{by:?}");
    assert!(
        by.contains(&(json!("NO_BUDGET"), json!(1), json!(1))),
        "{by:?}"
    );
    // On PostgreSQL, the BI view agrees.
    if app.backend == Backend::Postgres {
        use sea_orm::{ConnectionTrait, Statement};
        let db = app.db();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT CAST(COUNT(*) AS BIGINT) AS handed, \
                 CAST(COUNT(*) FILTER (WHERE answered_in_time) AS BIGINT) AS in_time, \
                 CAST(COUNT(*) FILTER (WHERE status = 'EXPIRED') AS BIGINT) AS expired, \
                 CAST(COUNT(*) FILTER (WHERE accepted_to_opportunity) AS BIGINT) AS to_opp, \
                 CAST(COUNT(*) FILTER (WHERE accepted_won) AS BIGINT) AS won, \
                 CAST(SUM(response_hours) AS DOUBLE PRECISION) AS hours \
                 FROM bi_handoffs WHERE from_team_name = 'Marketing' AND to_team_function = 'SALES_DEVELOPMENT'",
            ))
            .await
            .unwrap()
            .unwrap();
        let n = |c: &str| row.try_get::<i64>("", c).unwrap();
        assert_eq!(
            [
                n("handed"),
                n("in_time"),
                n("expired"),
                n("to_opp"),
                n("won")
            ],
            [5, 3, 1, 2, 1]
        );
        assert_eq!(
            row.try_get::<f64>("", "hours").unwrap(),
            24.0 + 6.0 + 12.0 + 48.0
        );
    }
    // Filters apply: no lead of these hand-offs is a partner's.
    let resp = app
            .admin(
                "{ metrics(period: {from: \"2026-01-01T00:00:00Z\", to: \"2026-03-01T00:00:00Z\"}, filter: {source: PARTNER}) { handoffAudit(groupBy: ROUTE) { handed } } }",
                json!({}),
            )
            .await;
    assert_eq!(data(&resp)["metrics"]["handoffAudit"], json!([]));
});

db_test!(
    concurrent_answers_to_one_handoff_one_wins,
    |app| async move {
        let w = world(app).await;
        for i in 0..4 {
            let l = lead(app, json!({"email": format!("c{i}@x.io"), "stage": "MQL"})).await;
            let resp = app
                .gql(
                    &w.mkt_token,
                    HAND_OFF,
                    json!({"i": {"leadId": l, "toTeamId": w.sdr}}),
                )
                .await;
            let id = data(&resp)["handOff"]["id"].clone();
            let (a, b) = tokio::join!(
                app.gql(&w.sdr_token, ACCEPT, json!({"id": id})),
                app.gql(&w.sdr2_token, REJECT, json!({"id": id, "r": "NOT_READY"})),
            );
            let codes = [error_code(&a), error_code(&b)];
            let wins = codes.iter().filter(|c| c.is_none()).count();
            assert_eq!(wins, 1, "exactly one answer wins: {a} {b}");
            assert!(codes.contains(&Some("CONFLICT")), "{a} {b}");
            let resp = app
                .admin(
                    "query($id: ID!) { handoff(id: $id) { status lead { stage stageHistory { toStage } } } }",
                    json!({"id": id}),
                )
                .await;
            let h = &data(&resp)["handoff"];
            let stage = if a.get("errors").is_none() {
                "SAL"
            } else {
                "RECYCLED"
            };
            assert_eq!(h["lead"]["stage"], stage, "{h}");
            assert_eq!(
                h["lead"]["stageHistory"].as_array().unwrap().len(),
                2,
                "one answer's effect only"
            );
        }
    }
);

mod live {
    //! The `handoffs` subscription over graphql-transport-ws.
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn connect(app: &TestApp, token: &str) -> Ws {
        let mut req = format!("ws://{}/graphql", app.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ws.send(Message::text(
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})
                .to_string(),
        ))
        .await
        .unwrap();
        ws
    }

    /// The next JSON message, or None when the socket closed; `wait` bounds it.
    async fn next(ws: &mut Ws, wait: Duration) -> Option<Option<Value>> {
        loop {
            let msg = tokio::time::timeout(wait, ws.next()).await.ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ping" {
                        continue;
                    }
                    return Some(Some(v));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Some(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    db_test!(subscribers_see_handoffs_as_they_commit, |app| async move {
        let w = world(app).await;
        let mut ws = connect(app, &w.sdr_token).await;
        let ack = next(&mut ws, Duration::from_secs(10))
            .await
            .flatten()
            .unwrap();
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws.send(Message::text(
            json!({"id": "1", "type": "subscribe", "payload": {
                "query": "subscription($t: ID) { handoffs(toTeamId: $t) { id status toTeam { name } lead { stage owner { name } } } }",
                "variables": {"t": w.sdr}
            }})
            .to_string(),
        ))
        .await
        .unwrap();
        // The subscription starts asynchronously: hand off leads until one is heard.
        let started = Instant::now();
        let mut seen = None;
        for i in 0.. {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no hand-off heard"
            );
            let l = lead(
                app,
                json!({"email": format!("live{i}@x.io"), "stage": "MQL"}),
            )
            .await;
            let resp = app
                .gql(
                    &w.mkt_token,
                    HAND_OFF,
                    json!({"i": {"leadId": l, "toTeamId": w.sdr}}),
                )
                .await;
            data(&resp);
            if let Some(Some(msg)) = next(&mut ws, Duration::from_millis(500)).await {
                assert_eq!(msg["type"], "next", "{msg}");
                seen = Some(msg["payload"]["data"]["handoffs"].clone());
                break;
            }
        }
        let h = seen.unwrap();
        assert_eq!(h["status"], "PENDING");
        assert_eq!(h["toTeam"]["name"], "SDR");
        let id = h["id"].clone();
        let resp = app.gql(&w.sdr_token, ACCEPT, json!({"id": id})).await;
        data(&resp);
        // The answer is heard too, with the lead as it stands after it.
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no answer heard"
            );
            let msg = next(&mut ws, Duration::from_secs(5)).await.flatten();
            let Some(msg) = msg else { continue };
            let h = &msg["payload"]["data"]["handoffs"];
            if h["id"] == id && h["status"] == "ACCEPTED" {
                assert_eq!(h["lead"]["stage"], "SAL");
                assert_eq!(h["lead"]["owner"]["name"], "sam@x.io");
                break;
            }
        }

        // A bad token: the connection is refused, nothing is served.
        let mut bad = connect(app, "not-a-token").await;
        let reply = next(&mut bad, Duration::from_secs(10)).await.flatten();
        assert!(
            reply.as_ref().is_none_or(|r| r["type"] != "connection_ack"),
            "{reply:?}"
        );
    });
}

db_test!(
    an_opportunity_handed_to_sales_gets_the_accepting_owner,
    |app| async move {
        let w = world(app).await;
        let (_, sales_token) = user(app, "sid@x.io", &w.sales).await;
        let resp = app
            .admin(
                "mutation { createAccount(input: {name: \"Acme\", domain: \"acme.io\"}) { id } }",
                json!({}),
            )
            .await;
        let acme = data(&resp)["createAccount"]["id"].clone();
        let resp = app
            .admin(
                "mutation($i: OpportunityInput!) { createOpportunity(input: $i) { id } }",
                json!({"i": {"name": "Big deal", "accountId": acme, "amount": "5000"}}),
            )
            .await;
        let opp = data(&resp)["createOpportunity"]["id"].clone();
        let resp = app
            .gql(
                &w.sdr_token,
                HAND_OFF,
                json!({"i": {"opportunityId": opp, "toTeamId": w.sales}}),
            )
            .await;
        let h = data(&resp)["handOff"].clone();
        assert!(h["dueAt"].is_null(), "no policy on this route: {h}");
        assert!(h["lead"].is_null());
        // The sending team may not answer its own hand-off; the receiving team may.
        let resp = app.gql(&w.sdr_token, ACCEPT, json!({"id": h["id"]})).await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
        let resp = app.gql(&sales_token, ACCEPT, json!({"id": h["id"]})).await;
        assert_eq!(data(&resp)["acceptHandoff"]["status"], "ACCEPTED");
        let resp = app
            .admin(
                "query($id: ID!) { opportunity(id: $id) { stage owner { name } handoffs { status toTeam { name } } } }",
                json!({"id": opp}),
            )
            .await;
        let o = &data(&resp)["opportunity"];
        assert_eq!(o["stage"], "DISCOVERY");
        assert_eq!(o["owner"]["name"], "sid@x.io");
        assert_eq!(
            o["handoffs"],
            json!([{"status": "ACCEPTED", "toTeam": {"name": "Sales"}}])
        );
    }
);
