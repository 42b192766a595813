//! The metric rollups follow every write made through the API: numbers read
//! right after a sequence of mutations are the ones worked out by hand, and
//! the same as after rebuilding the rollups from the records.

use crate::db_test;
use crate::harness::*;
use serde_json::{Value, json};

const JAN: &str = r#"period: {from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z"}"#;

async fn id(app: &TestApp, query: &str, vars: Value, field: &str) -> String {
    let resp = app.admin(query, vars).await;
    data(&resp)[field]["id"].as_str().unwrap().to_owned()
}

async fn campaign(app: &TestApp, name: &str) -> String {
    id(
        app,
        "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
        json!({"i": {"name": name, "channel": "EMAIL", "kind": "WEBINAR", "startsAt": "2025-12-01T00:00:00Z"}}),
        "createCampaign",
    )
    .await
}

async fn lead(
    app: &TestApp,
    email: &str,
    source: &str,
    campaign: Option<&str>,
    at: &str,
) -> String {
    id(
        app,
        "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
        json!({"i": {"email": email, "source": source, "campaignId": campaign, "createdAt": at}}),
        "createLead",
    )
    .await
}

async fn stage(app: &TestApp, lead: &str, to: &str, at: &str) {
    let resp = app
        .admin(
            "mutation($id: ID!, $to: LeadStage!, $at: DateTime) { changeLeadStage(id: $id, to: $to, at: $at) { id } }",
            json!({"id": lead, "to": to, "at": at}),
        )
        .await;
    data(&resp);
}

async fn touch(app: &TestApp, lead: &str, campaign: &str, at: &str) {
    let resp = app
        .admin(
            "mutation($i: TouchpointInput!) { recordTouchpoint(input: $i) { id } }",
            json!({"i": {"leadId": lead, "campaignId": campaign, "occurredAt": at}}),
        )
        .await;
    data(&resp);
}

async fn convert(app: &TestApp, lead: &str, amount: &str, at: &str) -> String {
    let resp = app
        .admin(
            "mutation($id: ID!, $o: ConvertLeadOpportunityInput!, $at: DateTime) { convertLead(id: $id, opportunity: $o, at: $at) { opportunity { id } } }",
            json!({"id": lead, "o": {"name": "deal", "amount": amount}, "at": at}),
        )
        .await;
    data(&resp)["convertLead"]["opportunity"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn close(app: &TestApp, opp: &str, to: &str, at: &str) {
    let resp = app
        .admin(
            "mutation($id: ID!, $to: OpportunityStage!, $at: DateTime) { changeOpportunityStage(id: $id, to: $to, lostReason: \"price\", at: $at) { id } }",
            json!({"id": opp, "to": to, "at": at}),
        )
        .await;
    data(&resp);
}

fn query() -> String {
    let models = ["FIRST_TOUCH", "LAST_TOUCH", "LINEAR", "W_SHAPED"]
        .iter()
        .map(|m| {
            format!("{m}: attribution(model: {m}) {{ rows {{ campaignName unattributed revenue opportunities }} total }}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{{ metrics({JAN}) {{ funnel {{ stages {{ stage reached medianHoursToNext }} }} \
         speedToLead {{ medianHours touched untouched }} \
         closedLoop(groupBy: SOURCE) {{ key leads mqls opportunities won wonRevenue }} \
         byCampaign: closedLoop(groupBy: CAMPAIGN) {{ key campaignName leads won wonRevenue }} \
         bySegment: closedLoop(groupBy: SEGMENT) {{ key leads won wonRevenue }} {models} }} \
         ent: metrics({JAN}, filter: {{segment: ENTERPRISE}}) {{ funnel {{ stages {{ stage reached medianHoursToNext }} }} \
         speedToLead {{ medianHours touched untouched }} }} \
         entPaid: metrics({JAN}, filter: {{segment: ENTERPRISE, source: PAID}}) {{ funnel {{ stages {{ stage reached }} }} }} }}"
    )
}

fn reached(m: &Value) -> Vec<i64> {
    m["funnel"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reached"].as_i64().unwrap())
        .collect()
}

/// `campaignName → revenue` of an attribution.
fn credits(m: &Value, model: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = m[model]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = if r["unattributed"] == true {
                "(none)".to_owned()
            } else {
                r["campaignName"].as_str().unwrap().to_owned()
            };
            (name, r["revenue"].as_str().unwrap().to_owned())
        })
        .collect();
    out.sort();
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

db_test!(rollups_follow_every_write, |app| async move {
    // Leads find their account by their e-mail's domain.
    let account = id(
        app,
        "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
        json!({"i": {"name": "X", "domain": "x.io", "segment": "SMB"}}),
        "createAccount",
    )
    .await;
    let a = campaign(app, "A").await;
    let b = campaign(app, "B").await;
    // L1 goes the whole way and wins; its amount and touches change after.
    let l1 = lead(app, "l1@x.io", "WEB", Some(&a), "2026-01-02T10:00:00Z").await;
    touch(app, &l1, &a, "2026-01-03T00:00:00Z").await;
    stage(app, &l1, "MQL", "2026-01-04T00:00:00Z").await;
    touch(app, &l1, &b, "2026-01-05T00:00:00Z").await;
    stage(app, &l1, "SAL", "2026-01-06T00:00:00Z").await;
    stage(app, &l1, "SQL", "2026-01-07T00:00:00Z").await;
    let o1 = convert(app, &l1, "1000", "2026-01-08T00:00:00Z").await;
    close(app, &o1, "CLOSED_WON", "2026-01-20T00:00:00Z").await;
    // L2: MQL, then its source is corrected from EMAIL to PAID.
    let l2 = lead(app, "l2@x.io", "EMAIL", None, "2026-01-10T15:00:00Z").await;
    stage(app, &l2, "MQL", "2026-01-11T00:00:00Z").await;
    // L3: skips to SQL (so it reached MQL and SAL too), converted without a touch.
    let l3 = lead(app, "l3@x.io", "PAID", None, "2026-01-31T23:30:00Z").await;
    stage(app, &l3, "SQL", "2026-01-31T23:40:00Z").await;
    let o3 = convert(app, &l3, "50", "2026-01-31T23:50:00Z").await;
    // L4: before the period.
    lead(app, "l4@x.io", "WEB", None, "2025-12-31T23:59:00Z").await;

    let resp = app.admin(&query(), json!({})).await;
    let (before, ent) = (data(&resp)["metrics"].clone(), data(&resp)["ent"].clone());
    assert_eq!(reached(&before), [3, 3, 2, 2, 2, 1], "{before}");
    assert_eq!(reached(&ent), [0; 6], "{ent}");
    assert_eq!(reached(&data(&resp)["entPaid"]), [0; 6]);
    assert_eq!(
        credits(&before, "LINEAR"),
        pairs(&[("A", "500.00"), ("B", "500.00")])
    );

    // The writes the rollups must follow.
    let resp = app
        .admin(
            "mutation($id: ID!) { updateOpportunity(id: $id, input: {amount: \"1200\"}) { id } }",
            json!({"id": o1}),
        )
        .await;
    data(&resp);
    // A touch before the opportunity was created, recorded late.
    touch(app, &l1, &b, "2026-01-07T12:00:00Z").await;
    let resp = app
        .admin(
            "mutation($id: ID!) { updateLead(id: $id, input: {source: PAID, firstTouchAt: \"2026-01-10T17:00:00Z\"}) { id } }",
            json!({"id": l2}),
        )
        .await;
    data(&resp);
    close(app, &o3, "CLOSED_WON", "2026-01-31T23:55:00Z").await;
    // The account moves up-market: its leads' counts move with it.
    let resp = app
        .admin(
            "mutation($id: ID!) { updateAccount(id: $id, input: {segment: ENTERPRISE}) { id } }",
            json!({"id": account}),
        )
        .await;
    data(&resp);

    let resp = app.admin(&query(), json!({})).await;
    let (after, ent) = (data(&resp)["metrics"].clone(), data(&resp)["ent"].clone());
    assert_eq!(reached(&after), [3, 3, 2, 2, 2, 2], "{after}");
    // Medians of the steps the leads took themselves: INQUIRY → MQL L1 38 h,
    // L2 9 h; SQL → OPPORTUNITY L1 24 h, L3 10 min; OPPORTUNITY → WON L1
    // 288 h, L3 5 min (L3 skipped MQL and SAL: no time for those steps).
    let medians: Vec<Option<f64>> = after["funnel"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["medianHoursToNext"].as_f64())
        .collect();
    let want = [
        Some(23.5),
        Some(48.0),
        Some(24.0),
        Some(12.0 + 1.0 / 12.0),
        Some(144.0 + 1.0 / 24.0),
        None,
    ];
    for (got, want) in medians.iter().zip(want) {
        match (got, want) {
            // SQLite times by julianday(): exact to about a millisecond.
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{medians:?}"),
            (g, w) => assert_eq!(*g, w, "{medians:?}"),
        }
    }
    // Speed to lead: L2's first touch, set late, 2 hours after creation.
    let stl = &after["speedToLead"];
    assert_eq!((&stl["touched"], &stl["untouched"]), (&json!(1), &json!(2)));
    assert!(
        (stl["medianHours"].as_f64().unwrap() - 2.0).abs() < 1e-6,
        "{stl}"
    );
    assert_eq!(reached(&ent), [3, 3, 2, 2, 2, 2], "{ent}");
    // Segment crossed with source (`lead_rollup_bi`): L2, corrected to PAID,
    // and L3, both of the account now ENTERPRISE.
    assert_eq!(reached(&data(&resp)["entPaid"]), [2, 2, 1, 1, 1, 1]);
    assert_eq!(
        after["bySegment"],
        json!([{"key": "ENTERPRISE", "leads": 3, "won": 2, "wonRevenue": "1250.00"}])
    );
    // Touches A, B, B (the last two before the opportunity); A the last at or before MQL.
    for (model, want) in [
        ("FIRST_TOUCH", vec![("(none)", "50.00"), ("A", "1200.00")]),
        ("LAST_TOUCH", vec![("(none)", "50.00"), ("B", "1200.00")]),
        (
            "LINEAR",
            vec![("(none)", "50.00"), ("A", "400.00"), ("B", "800.00")],
        ),
        // A: first 30% + MQL 30%; B: last 30% + the middle touch's 10%.
        (
            "W_SHAPED",
            vec![("(none)", "50.00"), ("A", "720.00"), ("B", "480.00")],
        ),
    ] {
        assert_eq!(credits(&after, model), pairs(&want), "{model}");
        assert_eq!(after[model]["total"], "1250.00", "{model}");
    }
    let by_source = |m: &Value, key: &str| {
        m["closedLoop"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_source(&after, "EMAIL"), Value::Null, "{after}");
    assert_eq!(by_source(&after, "PAID")["leads"], 2);
    assert_eq!(by_source(&after, "PAID")["wonRevenue"], "50.00");
    assert_eq!(by_source(&after, "WEB")["wonRevenue"], "1200.00");

    if app.backend == Backend::Postgres {
        bi_views_are_the_leads_aggregated(app).await;
    }

    // What the writes kept is what a rebuild from the records gives.
    api::metrics::rollups::rebuild(app.db()).await.unwrap();
    let rebuilt = app.admin(&query(), json!({})).await;
    assert_eq!(resp, rebuilt);
});

/// The BI views `bi_funnel_daily` and `bi_closed_loop` read `lead_rollup_bi`;
/// they hold exactly the rows of their first definition, which aggregated
/// every lead of `bi_leads` on each read (PostgreSQL: the views are there
/// only).
async fn bi_views_are_the_leads_aggregated(app: &TestApp) {
    use sea_orm::{ConnectionTrait, Statement};
    let funnel = "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, source, segment, campaign_id, team_id, \
         COUNT(*) AS leads, COUNT(mql_at) AS reached_mql, COUNT(sal_at) AS reached_sal, \
         COUNT(sql_at) AS reached_sql, COUNT(converted_at) AS reached_opportunity, \
         COUNT(*) FILTER (WHERE won) AS reached_won FROM bi_leads GROUP BY 1, 2, 3, 4, 5";
    let closed = "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, source, campaign_id, campaign_name, \
         campaign_kind, segment, COUNT(*) AS leads, COUNT(mql_at) AS mqls, COUNT(opportunity_id) AS opportunities, \
         COUNT(*) FILTER (WHERE won) AS won, COALESCE(SUM(won_amount), 0) AS won_revenue \
         FROM bi_leads GROUP BY 1, 2, 3, 4, 5, 6";
    let db = app.db();
    let count = |sql: String| async move {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
    };
    for (view, old) in [("bi_funnel_daily", funnel), ("bi_closed_loop", closed)] {
        let rows = count(format!("SELECT COUNT(*) AS n FROM {view}")).await;
        assert!(rows >= 4, "{view}: {rows} rows");
        for (a, b) in [
            (format!("SELECT * FROM {view}"), old.to_owned()),
            (old.to_owned(), format!("SELECT * FROM {view}")),
        ] {
            let extra = count(format!("SELECT COUNT(*) AS n FROM ({a} EXCEPT {b}) x")).await;
            assert_eq!(extra, 0, "{view}: rows of ({a}) not in ({b})");
        }
    }
}

// Writers at once (as from several replicas or webhook deliveries) on the
// same rollup rows: every change counts once.
db_test!(concurrent_writes_count_once, |app| async move {
    id(
        app,
        "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
        json!({"i": {"name": "X", "domain": "x.io"}}),
        "createAccount",
    )
    .await;
    let a = campaign(app, "A").await;
    const N: usize = 12;
    let leads = futures_util::future::join_all((0..N).map(|i| {
        let email = format!("c{i}@x.io");
        let a = a.clone();
        async move { lead(app, &email, "WEB", Some(&a), "2026-01-05T10:00:00Z").await }
    }))
    .await;
    futures_util::future::join_all(leads.iter().map(|l| {
        let a = a.clone();
        async move {
            touch(app, l, &a, "2026-01-05T11:00:00Z").await;
            stage(app, l, "SQL", "2026-01-06T00:00:00Z").await;
        }
    }))
    .await;
    let opps = futures_util::future::join_all(
        leads
            .iter()
            .map(|l| async move { convert(app, l, "100", "2026-01-07T00:00:00Z").await }),
    )
    .await;
    futures_util::future::join_all(
        opps.iter()
            .map(|o| async move { close(app, o, "CLOSED_WON", "2026-01-09T00:00:00Z").await }),
    )
    .await;
    let resp = app.admin(&query(), json!({})).await;
    let got = data(&resp)["metrics"].clone();
    assert_eq!(reached(&got), [N as i64; 6], "{got}");
    assert_eq!(credits(&got, "W_SHAPED"), pairs(&[("A", "1200.00")]));
    api::metrics::rollups::rebuild(app.db()).await.unwrap();
    let rebuilt = app.admin(&query(), json!({})).await;
    assert_eq!(resp, rebuilt);
});
