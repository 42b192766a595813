//! Issue 9's readings, each on a small dataset written through the API with
//! backfilled times and worked out by hand (see docs/metrics.md).

use crate::db_test;
use crate::harness::*;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

fn t(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
}

async fn id_of(app: &TestApp, query: &str, vars: Value) -> String {
    let resp = app.admin(query, vars).await;
    let d = data(&resp);
    let field = d.as_object().unwrap().keys().next().unwrap().clone();
    d[&field]["id"]
        .as_str()
        .or_else(|| d[&field]["opportunity"]["id"].as_str())
        .unwrap_or_else(|| panic!("{resp}"))
        .to_owned()
}

async fn lead(app: &TestApp, n: u32, stage: &str, created: DateTime<Utc>) -> String {
    id_of(
        app,
        "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
        json!({"i": {"email": format!("p{n}@example.org"), "stage": stage, "createdAt": created}}),
    )
    .await
}

async fn lead_stage(app: &TestApp, id: &str, to: &str, at: DateTime<Utc>) {
    let resp = app
        .admin(
            "mutation($id: ID!, $to: LeadStage!, $at: DateTime) { changeLeadStage(id: $id, to: $to, at: $at) { id } }",
            json!({"id": id, "to": to, "at": at}),
        )
        .await;
    data(&resp);
}

async fn opp_stage(app: &TestApp, id: &str, to: &str, at: DateTime<Utc>) {
    let resp = app
        .admin(
            "mutation($id: ID!, $to: OpportunityStage!, $at: DateTime) { changeOpportunityStage(id: $id, to: $to, lostReason: \"price\", at: $at) { id } }",
            json!({"id": id, "to": to, "at": at}),
        )
        .await;
    data(&resp);
}

async fn account(app: &TestApp, input: Value) -> String {
    id_of(
        app,
        "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
        json!({ "i": input }),
    )
    .await
}

async fn metrics(
    app: &TestApp,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filter: Value,
    fields: &str,
) -> Value {
    let resp = app
        .admin(
            &format!(
                "query($p: PeriodInput!, $f: MetricFilterInput) {{ metrics(period: $p, filter: $f) {{ {fields} }} }}"
            ),
            json!({"p": {"from": from, "to": to}, "f": filter}),
        )
        .await;
    data(&resp)["metrics"].clone()
}

#[track_caller]
fn close(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("want {want}, got {v}"));
    assert!((got - want).abs() < 1e-6, "want {want}, got {got}");
}

// 1. A lead is timed for a step only when it entered both stages itself.
db_test!(
    funnel_medians_time_stages_entered_themselves,
    |app| async move {
        // A: INQUIRY 2nd 00:00 → MQL 10:00 → SAL 3rd 10:00.
        let a = lead(app, 1, "INQUIRY", t(1, 2, 0)).await;
        lead_stage(app, &a, "MQL", t(1, 2, 10)).await;
        lead_stage(app, &a, "SAL", t(1, 3, 10)).await;
        // B: INQUIRY → SQL after 20 h (skips MQL and SAL).
        let b = lead(app, 2, "INQUIRY", t(1, 3, 0)).await;
        lead_stage(app, &b, "SQL", t(1, 3, 20)).await;
        // C: created at MQL, SAL after 6 h.
        let c = lead(app, 3, "MQL", t(1, 4, 0)).await;
        lead_stage(app, &c, "SAL", t(1, 4, 6)).await;
        // D: INQUIRY → MQL after 30 h.
        let d = lead(app, 4, "INQUIRY", t(1, 5, 0)).await;
        lead_stage(app, &d, "MQL", t(1, 6, 6)).await;
        let m = metrics(
            app,
            t(1, 1, 0),
            t(2, 1, 0),
            json!({}),
            "funnel { stages { stage reached medianHoursToNext } }",
        )
        .await;
        let s = m["funnel"]["stages"].as_array().unwrap();
        let reached: Vec<i64> = s.iter().map(|x| x["reached"].as_i64().unwrap()).collect();
        // "That stage or a later one": B reached MQL and SAL through SQL.
        assert_eq!(reached, vec![4, 4, 3, 1, 0, 0]);
        // INQUIRY → MQL: A 10, D 30 → 20 (B and C entered no MQL after INQUIRY themselves).
        close(&s[0]["medianHoursToNext"], 20.0);
        // MQL → SAL: A 24, C 6 → 15 (B never entered either itself).
        close(&s[1]["medianHoursToNext"], 15.0);
        // SAL → SQL: nobody entered both.
        assert!(s[2]["medianHoursToNext"].is_null(), "{m}");
        assert!(s[3]["medianHoursToNext"].is_null(), "{m}");
    }
);

// 2. The pipeline as it stood at the period's end, from the history.
db_test!(
    pipeline_is_the_snapshot_at_the_period_end,
    |app| async move {
        let acct = account(app, json!({"name": "Acme", "segment": "SMB"})).await;
        let opp = |name: &str, amount: &str, created: DateTime<Utc>| json!({"i": {"name": name, "accountId": acct, "amount": amount, "createdAt": created}});
        let create = "mutation($i: OpportunityInput!) { createOpportunity(input: $i) { id } }";
        // D: 800, DISCOVERY Jan 5, PROPOSAL Feb 10, won Mar 20.
        let d = id_of(app, create, opp("D", "800", t(1, 5, 0))).await;
        opp_stage(app, &d, "PROPOSAL", t(2, 10, 0)).await;
        opp_stage(app, &d, "CLOSED_WON", t(3, 20, 0)).await;
        // E: 300, DISCOVERY Jan 10, still open.
        id_of(app, create, opp("E", "300", t(1, 10, 0))).await;
        // F: 200, created Feb 1, lost Feb 15.
        let f = id_of(app, create, opp("F", "200", t(2, 1, 0))).await;
        opp_stage(app, &f, "CLOSED_LOST", t(2, 15, 0)).await;
        let fields = "pipeline { total stages { stage count amount } } series(metric: PIPELINE, interval: MONTH) { start value amount }";
        // January: D and E in DISCOVERY (today only E is open).
        let jan = metrics(app, t(1, 1, 0), t(2, 1, 0), json!({}), fields).await;
        assert_eq!(jan["pipeline"]["total"], "1100.00");
        assert_eq!(
            jan["pipeline"]["stages"],
            json!([
                {"stage": "DISCOVERY", "count": 2, "amount": "1100.00"},
                {"stage": "PROPOSAL", "count": 0, "amount": "0.00"},
                {"stage": "NEGOTIATION", "count": 0, "amount": "0.00"}
            ])
        );
        // Up to March 20 (closed at `to` is not closed before it): D in PROPOSAL, E.
        let early_march = metrics(app, t(3, 1, 0), t(3, 20, 0), json!({}), fields).await;
        assert_eq!(early_march["pipeline"]["total"], "1100.00");
        assert_eq!(early_march["pipeline"]["stages"][1]["amount"], "800.00");
        // The quarter: D won, F lost before its end; E alone.
        let q1 = metrics(app, t(1, 1, 0), t(4, 1, 0), json!({}), fields).await;
        assert_eq!(q1["pipeline"]["total"], "300.00");
        // The series draws the history: Jan 1100 (D, E), Feb 1100 (D PROPOSAL, E;
        // F lost), Mar 300.
        let points: Vec<(String, f64)> = q1["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["amount"].as_str().unwrap().to_owned(),
                    p["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            points,
            vec![
                ("1100.00".to_owned(), 2.0),
                ("1100.00".to_owned(), 2.0),
                ("300.00".to_owned(), 1.0)
            ]
        );
    }
);

// 3. Account metrics read every filter from the account; none is ignored.
db_test!(
    retention_reads_every_filter_from_the_account,
    |app| async move {
        let team = |name: &str, function: &str| json!({"n": name, "f": function});
        let create_team = "mutation($n: String!, $f: TeamFunction!) { createTeam(input: {name: $n, function: $f}) { id } }";
        let marketing = id_of(app, create_team, team("Marketing", "MARKETING")).await;
        let sales = id_of(app, create_team, team("Sales", "SALES")).await;
        let rep = id_of(
        app,
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        json!({"i": {"email": "ae@example.com", "name": "AE", "teamId": sales, "role": "MEMBER"}}),
    )
    .await;
        // Kept (owned by sales, a PAID lead), churned in 2025 (owned by sales), never owned.
        let kept = account(
        app,
        json!({"name": "Kept", "status": "CUSTOMER", "becameCustomerAt": "2024-06-01T00:00:00Z", "ownerId": rep}),
    )
    .await;
        account(
        app,
        json!({"name": "Gone", "status": "CHURNED", "becameCustomerAt": "2024-06-01T00:00:00Z", "churnedAt": "2025-05-01T00:00:00Z", "ownerId": rep}),
    )
    .await;
        account(
        app,
        json!({"name": "Loose", "status": "CUSTOMER", "becameCustomerAt": "2024-06-01T00:00:00Z"}),
    )
    .await;
        let resp = app
        .admin(
            "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
            json!({"i": {"email": "buyer@example.org", "accountId": kept, "source": "PAID", "createdAt": "2023-01-01T00:00:00Z"}}),
        )
        .await;
        data(&resp);
        let (from, to) = (
            Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        );
        let all = metrics(app, from, to, json!({}), "retention").await;
        close(&all["retention"], 2.0 / 3.0);
        // Team: the account owner's team. Marketing owns no customer: null.
        let m = metrics(app, from, to, json!({"teamId": marketing}), "retention").await;
        assert!(m["retention"].is_null(), "{m}");
        let s = metrics(app, from, to, json!({"teamId": sales}), "retention").await;
        close(&s["retention"], 0.5);
        // Source: accounts with at least one lead of that source (created whenever).
        let paid = metrics(app, from, to, json!({"source": "PAID"}), "retention").await;
        close(&paid["retention"], 1.0);
        let web = metrics(app, from, to, json!({"source": "WEB"}), "retention").await;
        assert!(web["retention"].is_null(), "{web}");
    }
);

// 4. Attribution rows are rounded by largest remainder and add up to the total.
db_test!(attribution_rows_add_up_to_the_total, |app| async move {
    let acct = account(app, json!({"name": "Acme", "segment": "SMB"})).await;
    let mut campaigns = Vec::new();
    for i in 0..3 {
        campaigns.push(
            id_of(
                app,
                "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
                json!({"i": {"name": format!("c{i}"), "channel": "EMAIL", "kind": "WEBINAR", "startsAt": "2025-01-01T00:00:00Z"}}),
            )
            .await,
        );
    }
    let l = lead(app, 1, "INQUIRY", t(1, 2, 0)).await;
    for (i, c) in campaigns.iter().enumerate() {
        let resp = app
            .admin(
                "mutation($i: TouchpointInput!) { recordTouchpoint(input: $i) { id } }",
                json!({"i": {"leadId": l, "campaignId": c, "occurredAt": t(1, 3 + i as u32, 0)}}),
            )
            .await;
        data(&resp);
    }
    let opp = id_of(
        app,
        "mutation($id: ID!, $a: Decimal!, $acct: ID, $at: DateTime) { convertLead(id: $id, opportunity: {name: \"Deal\", amount: $a, accountId: $acct}, at: $at) { opportunity { id } } }",
        json!({"id": l, "a": "100", "acct": acct, "at": t(1, 10, 0)}),
    )
    .await;
    opp_stage(app, &opp, "CLOSED_WON", t(1, 20, 0)).await;
    let m = metrics(
        app,
        t(1, 1, 0),
        t(2, 1, 0),
        json!({}),
        "linear: attribution(model: LINEAR) { total rows { campaignId revenue } } w: attribution(model: W_SHAPED) { total rows { campaignId revenue } }",
    )
    .await;
    assert_eq!(m["linear"]["total"], "100.00");
    // 33.333… each: 33.33 × 3 = 99.99; the cent left goes to the lowest campaign id.
    let lowest = campaigns.iter().min().unwrap();
    for row in m["linear"]["rows"].as_array().unwrap() {
        let want = if row["campaignId"] == json!(lowest) {
            "33.34"
        } else {
            "33.33"
        };
        assert_eq!(row["revenue"], want, "{m}");
    }
    // W_SHAPED: never MQL: first 30, middle 10 (none of the roles), last 30 + 30.
    let w: Vec<(String, String)> = m["w"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["campaignId"].as_str().unwrap().to_owned(),
                r["revenue"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        w,
        vec![
            (campaigns[2].clone(), "60.00".to_owned()),
            (campaigns[0].clone(), "30.00".to_owned()),
            (campaigns[1].clone(), "10.00".to_owned()),
        ]
    );
});
