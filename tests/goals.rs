//! Shared goals, the compensation paid on them and the alignment report,
//! each on a small dataset written through the API and worked out by hand
//! (see docs/goals.md): every branch of the payout curve with exact money,
//! every goal metric with filters, pace, the role matrix (cache included),
//! versioned edits read as of an earlier time, and each alignment warning.

use crate::db_test;
use crate::harness::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::enums::Role;
use serde_json::{Value, json};

fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
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

async fn team(app: &TestApp, name: &str, function: &str) -> String {
    id_of(
        app,
        "mutation($i: CreateTeamInput!) { createTeam(input: $i) { id } }",
        json!({"i": {"name": name, "function": function}}),
    )
    .await
}

/// A user of `role` in `team`, with a token.
async fn user(app: &TestApp, email: &str, team: &str, role: Role) -> (String, String) {
    let id = id_of(
        app,
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        json!({"i": {"email": email, "name": email, "teamId": team, "role": role.as_str()}}),
    )
    .await;
    let token = app.token(role, &id);
    (id, token)
}

async fn goal(app: &TestApp, input: Value) -> String {
    id_of(
        app,
        "mutation($i: GoalInput!) { createGoal(input: $i) { id } }",
        json!({ "i": input }),
    )
    .await
}

async fn plan(app: &TestApp, input: Value) -> String {
    id_of(
        app,
        "mutation($i: CompensationPlanInput!) { createCompensationPlan(input: $i) { id } }",
        json!({ "i": input }),
    )
    .await
}

async fn link(app: &TestApp, plan: &str, goal: &str, curve: Value) -> String {
    let mut vars = json!({"p": plan, "g": goal});
    for (k, v) in curve.as_object().unwrap() {
        vars[k] = v.clone();
    }
    id_of(
        app,
        "mutation($p: ID!, $g: ID!, $weight: Decimal!, $threshold: Decimal = \"0\", $accelerator: Decimal = \"1\", $cap: Decimal = \"2\") { linkGoal(planId: $p, goalId: $g, weight: $weight, threshold: $threshold, accelerator: $accelerator, cap: $cap) { id } }",
        vars,
    )
    .await
}

async fn account(app: &TestApp, input: Value) -> String {
    id_of(
        app,
        "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
        json!({ "i": input }),
    )
    .await
}

async fn lead(app: &TestApp, input: Value) -> String {
    id_of(
        app,
        "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
        json!({ "i": input }),
    )
    .await
}

async fn lead_stage(app: &TestApp, id: &str, to: &str, at: DateTime<Utc>) {
    data(&app
        .admin(
            "mutation($id: ID!, $to: LeadStage!, $at: DateTime) { changeLeadStage(id: $id, to: $to, at: $at) { id } }",
            json!({"id": id, "to": to, "at": at}),
        )
        .await);
}

async fn convert(
    app: &TestApp,
    lead: &str,
    amount: &str,
    account: Option<&str>,
    at: DateTime<Utc>,
) -> String {
    id_of(
        app,
        "mutation($id: ID!, $a: Decimal!, $acct: ID, $at: DateTime) { convertLead(id: $id, opportunity: {name: \"Deal\", amount: $a, accountId: $acct}, at: $at) { opportunity { id } } }",
        json!({"id": lead, "a": amount, "acct": account, "at": at}),
    )
    .await
}

async fn opp_stage(app: &TestApp, id: &str, to: &str, at: DateTime<Utc>) {
    data(&app
        .admin(
            "mutation($id: ID!, $to: OpportunityStage!, $at: DateTime) { changeOpportunityStage(id: $id, to: $to, lostReason: \"price\", at: $at) { id } }",
            json!({"id": id, "to": to, "at": at}),
        )
        .await);
}

/// An opportunity won at `won` (created at `created`), without a lead.
async fn won_deal(
    app: &TestApp,
    account: &str,
    amount: &str,
    created: DateTime<Utc>,
    won: DateTime<Utc>,
) -> String {
    id_of(
        app,
        "mutation($i: OpportunityInput!) { createOpportunity(input: $i) { id } }",
        json!({"i": {"name": "Deal", "accountId": account, "amount": amount, "stage": "CLOSED_WON", "createdAt": created, "closedAt": won}}),
    )
    .await
}

const STATEMENT: &str = "query($p: ID!, $at: DateTime) { compensationStatement(planId: $p, asOf: $at) { total lines { goal { name } target actual attainment weight payout branch } } }";

async fn statement(app: &TestApp, token: &str, plan: &str, at: Option<DateTime<Utc>>) -> Value {
    app.gql(token, STATEMENT, json!({"p": plan, "at": at}))
        .await
}

// 1. Every branch of the payout curve, with exact money.
db_test!(payout_curve_every_branch, |app| async move {
    let sales = team(app, "Sales", "SALES").await;
    let acct = account(app, json!({"name": "Acme"})).await;
    // 600.00 won in January 2026.
    won_deal(app, &acct, "600", t(2026, 1, 2), t(2026, 1, 10)).await;
    let p = plan(
        app,
        json!({"name": "AE", "teamId": sales, "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 2, 1), "variableTarget": "10000"}),
    )
    .await;
    // Targets give attainments 0.25, 0.5 (the threshold), 1, 1.2, 3 and 6/7.
    let curve = json!({"weight": "0.2", "threshold": "0.5", "accelerator": "2", "cap": "1.5"});
    for (name, target) in [
        ("a", "2400"),
        ("b", "1200"),
        ("c", "600"),
        ("d", "500"),
        ("e", "200"),
        ("f", "700"),
    ] {
        let g = goal(
            app,
            json!({"name": name, "metric": "REVENUE_WON", "target": target, "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 2, 1), "teamIds": [sales]}),
        )
        .await;
        link(app, &p, &g, curve.clone()).await;
    }
    let s = statement(app, &app.admin_token(), &p, None).await;
    let s = &data(&s)["compensationStatement"];
    let mut lines: Vec<(String, String, String, String)> = s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["goal"]["name"].as_str().unwrap().to_owned(),
                l["attainment"].as_str().unwrap().to_owned(),
                l["payout"].as_str().unwrap().to_owned(),
                l["branch"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    lines.sort();
    let line = |n: &str, a: &str, p: &str, b: &str| {
        (n.to_owned(), a.to_owned(), p.to_owned(), b.to_owned())
    };
    assert_eq!(
        lines,
        vec![
            // 0.25 < 0.5: nothing.
            line("a", "0.25", "0.00", "BELOW_THRESHOLD"),
            // At the threshold: 10,000 × 0.2 × 0.5.
            line("b", "0.5", "1000.00", "LINEAR"),
            line("c", "1", "2000.00", "LINEAR"),
            // 1.2: 10,000 × 0.2 × (1 + 0.2 × 2) = 2,800.
            line("d", "1.2", "2800.00", "ACCELERATED"),
            // 3: 1 + 2 × 2 = 5, held at the cap 1.5: 3,000.
            line("e", "3", "3000.00", "CAPPED"),
            // 6/7: 10,000 × 0.2 × 6/7 = 1,714.2857… → 1,714.29.
            line("f", "0.8571428571428571428571428571", "1714.29", "LINEAR"),
        ],
        "{s}"
    );
    assert_eq!(s["total"], "10514.29");
    // The weights sum to 1.2: the plan cannot be activated.
    let resp = app
        .admin(
            "mutation($p: ID!) { activatePlan(planId: $p) { activatedAt } }",
            json!({"p": p}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
});

const GOAL: &str = "query($id: ID!, $at: DateTime) { goal(id: $id, asOf: $at) { target actual attainment remaining pace { expected status } } }";

async fn read_goal(app: &TestApp, id: &str, at: Option<DateTime<Utc>>) -> Value {
    let resp = app.admin(GOAL, json!({"id": id, "at": at})).await;
    data(&resp)["goal"].clone()
}

// 2. Every goal metric over one hand-built quarter, with filters.
db_test!(every_goal_metric_with_filters, |app| async move {
    let mkt = team(app, "Marketing", "MARKETING").await;
    let sales = team(app, "Sales", "SALES").await;
    let (rep, _) = user(app, "rep@x.io", &sales, Role::Member).await;
    // A1 SMB became a customer in the quarter; A2 ENTERPRISE a customer
    // before it, churned in it; A3 SMB a customer all along (no owner).
    let a1 = account(app, json!({"name": "A1", "segment": "SMB", "status": "CUSTOMER", "becameCustomerAt": t(2026, 1, 15), "ownerId": rep})).await;
    let a2 = account(app, json!({"name": "A2", "segment": "ENTERPRISE", "status": "CHURNED", "becameCustomerAt": t(2025, 6, 1), "churnedAt": t(2026, 2, 1), "ownerId": rep})).await;
    let a3 = account(app, json!({"name": "A3", "segment": "SMB", "status": "CUSTOMER", "becameCustomerAt": t(2025, 1, 1)})).await;
    // L1 PAID (A1): MQL Jan 5, opportunity 300 won Feb 1.
    let l1 = lead(app, json!({"email": "l1@example.org", "source": "PAID", "accountId": a1, "stage": "INQUIRY", "createdAt": t(2025, 12, 20)})).await;
    lead_stage(app, &l1, "MQL", t(2026, 1, 5)).await;
    let o1 = convert(app, &l1, "300", Some(&a1), t(2026, 1, 10)).await;
    opp_stage(app, &o1, "CLOSED_WON", t(2026, 2, 1)).await;
    // L2 WEB (A3): created at MQL Jan 3, opportunity 200 lost Feb 10.
    let l2 = lead(app, json!({"email": "l2@example.org", "source": "WEB", "accountId": a3, "stage": "MQL", "createdAt": t(2026, 1, 3)})).await;
    let o2 = convert(app, &l2, "200", Some(&a3), t(2026, 1, 20)).await;
    opp_stage(app, &o2, "CLOSED_LOST", t(2026, 2, 10)).await;
    // L3 PAID (A2): MQL Feb 1, opportunity 1000 won after the quarter (Apr 10).
    let l3 = lead(app, json!({"email": "l3@example.org", "source": "PAID", "accountId": a2, "stage": "INQUIRY", "createdAt": t(2026, 1, 4)})).await;
    lead_stage(app, &l3, "MQL", t(2026, 2, 1)).await;
    let o3 = convert(app, &l3, "1000", Some(&a2), t(2026, 2, 5)).await;
    opp_stage(app, &o3, "CLOSED_WON", t(2026, 4, 10)).await;
    // L4 PAID (no account): MQL before the quarter, 50 won Jan 20.
    let l4 = lead(app, json!({"email": "l4@example.org", "source": "PAID", "stage": "INQUIRY", "createdAt": t(2025, 11, 20)})).await;
    lead_stage(app, &l4, "MQL", t(2025, 12, 1)).await;
    let a4 = account(app, json!({"name": "A4", "segment": "MID_MARKET"})).await;
    let o4 = convert(app, &l4, "50", Some(&a4), t(2025, 12, 5)).await;
    opp_stage(app, &o4, "CLOSED_WON", t(2026, 1, 20)).await;
    // O5 (A1, no lead): 100 created Jan 2, won Mar 1.
    won_deal(app, &a1, "100", t(2026, 1, 2), t(2026, 3, 1)).await;

    let q = |metric: &str, target: &str, filter: Value| {
        let mut g = json!({"name": format!("{metric} {filter}"), "metric": metric, "target": target, "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 4, 1), "teamIds": [mkt, sales]});
        for (k, v) in filter.as_object().unwrap() {
            g[k] = v.clone();
        }
        g
    };
    // (metric, target, filter, actual, attainment)
    let cases = [
        // Won in the quarter: O1 300, O4 50, O5 100.
        ("REVENUE_WON", "900", json!({}), "450.00", "0.5"),
        (
            "REVENUE_WON",
            "700",
            json!({"source": "PAID"}),
            "350.00",
            "0.5",
        ),
        (
            "REVENUE_WON",
            "400",
            json!({"segment": "SMB"}),
            "400.00",
            "1",
        ),
        // Opportunity owners' team: only O5 has an owner in Sales… none here.
        ("REVENUE_WON", "100", json!({"teamId": sales}), "0.00", "0"),
        // A1 alone.
        ("NEW_CUSTOMERS", "2", json!({}), "1", "0.5"),
        (
            "NEW_CUSTOMERS",
            "1",
            json!({"segment": "ENTERPRISE"}),
            "0",
            "0",
        ),
        ("NEW_CUSTOMERS", "1", json!({"teamId": sales}), "1", "1"),
        // Created in the quarter: O1 300, O2 200, O3 1000, O5 100.
        ("PIPELINE_CREATED", "3200", json!({}), "1600.00", "0.5"),
        (
            "PIPELINE_CREATED",
            "100",
            json!({"source": "WEB"}),
            "200.00",
            "2",
        ),
        // MQL in the quarter and won as the data stands: L1, L3 (won after it).
        ("QUALIFIED_LEADS_WON", "4", json!({}), "2", "0.5"),
        (
            "QUALIFIED_LEADS_WON",
            "2",
            json!({"source": "PAID"}),
            "2",
            "1",
        ),
        (
            "QUALIFIED_LEADS_WON",
            "2",
            json!({"segment": "SMB"}),
            "1",
            "0.5",
        ),
        (
            "QUALIFIED_LEADS_WON",
            "1",
            json!({"segment": "ENTERPRISE"}),
            "1",
            "1",
        ),
        (
            "QUALIFIED_LEADS_WON",
            "1",
            json!({"source": "WEB"}),
            "0",
            "0",
        ),
        // Closed in the quarter: O1, O4, O5 won, O2 lost.
        ("WIN_RATE", "0.5", json!({}), "0.75", "1.5"),
        ("WIN_RATE", "0.5", json!({"source": "WEB"}), "0", "0"),
        // Customers at Jan 1: A2, A3; A2 churned Feb 1.
        ("RETENTION", "0.8", json!({}), "0.5", "0.625"),
        ("RETENTION", "1", json!({"segment": "SMB"}), "1", "1"),
        ("RETENTION", "0.5", json!({"teamId": sales}), "0", "0"),
        // MQL in the quarter: L1, L2, L3.
        ("MQLS", "6", json!({}), "3", "0.5"),
        ("MQLS", "4", json!({"source": "PAID"}), "2", "0.5"),
    ];
    for (metric, target, filter, actual, attainment) in cases {
        let id = goal(app, q(metric, target, filter.clone())).await;
        let g = read_goal(app, &id, None).await;
        assert_eq!(g["actual"], actual, "{metric} {filter}: {g}");
        assert_eq!(g["attainment"], attainment, "{metric} {filter}: {g}");
    }
    // A rate over nothing: null actual and attainment (pays 0).
    let id = goal(app, q("RETENTION", "0.9", json!({"segment": "MID_MARKET"}))).await;
    let g = read_goal(app, &id, None).await;
    assert!(g["actual"].is_null() && g["attainment"].is_null(), "{g}");
    // The cumulative series of revenue: by month, ending at the actual.
    let id = goal(app, q("REVENUE_WON", "900", json!({}))).await;
    let resp = app
        .admin(
            "query($id: ID!) { goal(id: $id) { series(interval: MONTH) { start actual } } }",
            json!({"id": id}),
        )
        .await;
    let s: Vec<&str> = data(&resp)["goal"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actual"].as_str().unwrap())
        .collect();
    assert_eq!(s, vec!["50.00", "350.00", "450.00"]);
    // The same for new customers (January: A1).
    let id = goal(app, q("QUALIFIED_LEADS_WON", "4", json!({}))).await;
    let resp = app
        .admin(
            "query($id: ID!) { goal(id: $id) { series(interval: MONTH) { actual attainment } } }",
            json!({"id": id}),
        )
        .await;
    let s: Vec<(&str, &str)> = data(&resp)["goal"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["actual"].as_str().unwrap(),
                p["attainment"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(s, vec![("1", "0.25"), ("2", "0.5"), ("2", "0.5")]);
    // Coverage of a revenue goal at the period's end: open pipeline / (target − won).
    // At Mar 1: O3 (1000) and O5 (100, won at Mar 1 itself, so not before
    // it) are open; won in the goal's period before Mar 1: 350.
    let g = goal(app, q("REVENUE_WON", "1350", json!({}))).await;
    let resp = app
        .admin(
            "query($p: PeriodInput!, $g: ID!) { metrics(period: $p) { pipeline { total coverage(goalId: $g) } } }",
            json!({"p": {"from": t(2026, 2, 1), "to": t(2026, 3, 1)}, "g": g}),
        )
        .await;
    let p = &data(&resp)["metrics"]["pipeline"];
    assert_eq!(p["total"], "1100.00", "{p}");
    assert!((p["coverage"].as_f64().unwrap() - 1.1).abs() < 1e-9, "{p}");
    // Once the goal is met: null.
    let met = goal(app, q("REVENUE_WON", "100", json!({}))).await;
    let resp = app
        .admin(
            "query($p: PeriodInput!, $g: ID!) { metrics(period: $p) { pipeline { coverage(goalId: $g) } } }",
            json!({"p": {"from": t(2026, 2, 1), "to": t(2026, 3, 1)}, "g": met}),
        )
        .await;
    assert!(
        data(&resp)["metrics"]["pipeline"]["coverage"].is_null(),
        "{resp}"
    );
});

// 3. Pace at the start, the middle and the end of a period.
db_test!(pace_at_start_middle_and_end, |app| async move {
    let sales = team(app, "Sales", "SALES").await;
    let acct = account(app, json!({"name": "Acme"})).await;
    // A 30-day period, 500 won on day 9.
    won_deal(app, &acct, "500", t(2026, 1, 2), t(2026, 1, 10)).await;
    let g = |target: &str| json!({"name": format!("rev {target}"), "metric": "REVENUE_WON", "target": target, "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 1, 31), "teamIds": [sales]});
    let g500 = goal(app, g("500")).await;
    let g1000 = goal(app, g("1000")).await;
    let g2000 = goal(app, g("2000")).await;
    let pace = |g: &Value| {
        (
            g["pace"]["expected"].as_str().unwrap().to_owned(),
            g["pace"]["status"].as_str().unwrap().to_owned(),
            g["attainment"].as_str().unwrap().to_owned(),
        )
    };
    let p = |e: &str, s: &str, a: &str| (e.to_owned(), s.to_owned(), a.to_owned());
    // Start: nothing expected, nothing won yet.
    let at = Some(t(2026, 1, 1));
    assert_eq!(
        pace(&read_goal(app, &g1000, at).await),
        p("0", "ON_TRACK", "0")
    );
    // Middle (15 of 30 days): half expected; 500 won.
    let at = Some(t(2026, 1, 16));
    assert_eq!(
        pace(&read_goal(app, &g500, at).await),
        p("0.5", "AHEAD", "1")
    );
    assert_eq!(
        pace(&read_goal(app, &g1000, at).await),
        p("0.5", "ON_TRACK", "0.5")
    );
    assert_eq!(
        pace(&read_goal(app, &g2000, at).await),
        p("0.5", "BEHIND", "0.25")
    );
    let mid = read_goal(app, &g1000, at).await;
    assert_eq!(mid["actual"], "500.00");
    assert_eq!(mid["remaining"], "500.00");
    // Day 5: nothing won yet, a sixth expected.
    let early = read_goal(app, &g1000, Some(t(2026, 1, 6))).await;
    assert_eq!(early["actual"], "0.00");
    assert_eq!(pace(&early).1, "BEHIND");
    // End: all expected.
    let at = Some(t(2026, 1, 31));
    assert_eq!(
        pace(&read_goal(app, &g500, at).await),
        p("1", "ON_TRACK", "1")
    );
    assert_eq!(
        pace(&read_goal(app, &g1000, at).await),
        p("1", "BEHIND", "0.5")
    );
    // After the end, the same.
    assert_eq!(
        pace(&read_goal(app, &g1000, Some(t(2026, 3, 1))).await),
        p("1", "BEHIND", "0.5")
    );
});

// 4. Who reads compensation: a MEMBER their own plans and their team's,
// never another user's — not even from the cache; VIEWER and INTEGRATION
// nothing; REVOPS and ADMIN everything.
async fn role_matrix(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.metrics_cache_secs = 30).await;
    let app = &app;
    let sales = team(app, "Sales", "SALES").await;
    let mkt = team(app, "Marketing", "MARKETING").await;
    let (alice, alice_t) = user(app, "alice@x.io", &sales, Role::Member).await;
    let (_, bob_t) = user(app, "bob@x.io", &sales, Role::Member).await;
    let (_, carol_t) = user(app, "carol@x.io", &mkt, Role::Member).await;
    let (_, revops_t) = user(app, "rita@x.io", &mkt, Role::Revops).await;
    let viewer_t = app.token(Role::Viewer, "bi-tool");
    let integration_t = app.token(Role::Integration, "crm");
    let acct = account(app, json!({"name": "Acme"})).await;
    won_deal(app, &acct, "300", t(2026, 1, 2), t(2026, 1, 10)).await;
    let g = goal(
        app,
        json!({"name": "Rev", "metric": "REVENUE_WON", "target": "1000", "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 2, 1), "teamIds": [sales, mkt]}),
    )
    .await;
    let period = json!({"periodStart": t(2026, 1, 1), "periodEnd": t(2026, 2, 1)});
    let mut own = period.clone();
    own["name"] = json!("Alice");
    own["userId"] = json!(alice);
    own["variableTarget"] = json!("5000");
    let alice_plan = plan(app, own).await;
    let mut team_plan = period.clone();
    team_plan["name"] = json!("Sales pool");
    team_plan["teamId"] = json!(sales);
    team_plan["variableTarget"] = json!("20000");
    let team_plan = plan(app, team_plan).await;
    link(app, &alice_plan, &g, json!({"weight": "1"})).await;
    link(app, &team_plan, &g, json!({"weight": "1"})).await;
    // Now (the period is over): the links in force now, the whole period measured.
    let at = None;

    let ok = |resp: &Value, total: &str| {
        assert_eq!(
            data(resp)["compensationStatement"]["total"],
            total,
            "{resp}"
        );
    };
    let forbidden = |resp: &Value| {
        assert_eq!(error_code(resp), Some("FORBIDDEN"), "{resp}");
        assert!(resp["data"].is_null() || resp["data"]["compensationStatement"].is_null());
    };
    // Alice's own plan: 5,000 × 0.3.
    let before = app.statements();
    ok(&statement(app, &alice_t, &alice_plan, at).await, "1500.00");
    let computed = app.statements() - before;
    // Cached for Alice: the same request again is served without the metric.
    let before = app.statements();
    ok(&statement(app, &alice_t, &alice_plan, at).await, "1500.00");
    let cached = app.statements() - before;
    // Bob sends the very same request: FORBIDDEN, not Alice's cached answer.
    forbidden(&statement(app, &bob_t, &alice_plan, at).await);
    forbidden(&statement(app, &bob_t, &alice_plan, at).await);
    // Alice's team's plan: Alice and Bob (same team), not Carol.
    ok(&statement(app, &alice_t, &team_plan, at).await, "6000.00");
    ok(&statement(app, &bob_t, &team_plan, at).await, "6000.00");
    forbidden(&statement(app, &carol_t, &team_plan, at).await);
    forbidden(&statement(app, &carol_t, &alice_plan, at).await);
    // VIEWER and INTEGRATION: nothing.
    for tok in [&viewer_t, &integration_t] {
        forbidden(&statement(app, tok, &alice_plan, at).await);
        forbidden(&statement(app, tok, &team_plan, at).await);
        let resp = app
            .gql(
                tok,
                "query($p: ID!) { compensationPlan(id: $p) { name } }",
                json!({"p": alice_plan}),
            )
            .await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
        let resp = app
            .gql(tok, "{ alignment { teams { warnings } } }", json!({}))
            .await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    }
    // REVOPS and ADMIN: every plan.
    for tok in [&revops_t, &app.admin_token()] {
        ok(&statement(app, tok, &alice_plan, at).await, "1500.00");
        ok(&statement(app, tok, &team_plan, at).await, "6000.00");
    }
    // A MEMBER may not change plans.
    let resp = app
        .gql(
            &alice_t,
            "mutation($p: ID!) { activatePlan(planId: $p) { id } }",
            json!({"p": alice_plan}),
        )
        .await;
    assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
    // Alice's repeat was a cache hit (one statement: the data version).
    let before = app.statements();
    data(&app.gql(&alice_t, "{ me { role } }", json!({})).await);
    let baseline = app.statements() - before;
    assert!(
        cached <= baseline + 1 && cached < computed,
        "served from the cache: {cached} statements, {computed} computed, {baseline} baseline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_sqlite() {
    role_matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_postgres() {
    if !postgres_available().await {
        return;
    }
    role_matrix(Backend::Postgres).await;
}

// 5. Edits are versions: a statement and a goal as of an earlier time read
// the target, weight and curve in force then.
db_test!(versioned_edit_read_as_of_earlier, |app| async move {
    let sales = team(app, "Sales", "SALES").await;
    let acct = account(app, json!({"name": "Acme"})).await;
    won_deal(app, &acct, "600", t(2026, 1, 2), t(2026, 1, 10)).await;
    let g = goal(
        app,
        json!({"name": "Rev", "metric": "REVENUE_WON", "target": "1200", "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 2, 1), "teamIds": [sales]}),
    )
    .await;
    let p = plan(
        app,
        json!({"name": "AE", "teamId": sales, "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 2, 1), "variableTarget": "10000"}),
    )
    .await;
    let l = link(app, &p, &g, json!({"weight": "1", "threshold": "0.5"})).await;
    data(
        &app.admin(
            "mutation($p: ID!) { activatePlan(planId: $p) { activatedAt } }",
            json!({"p": p}),
        )
        .await,
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The target drops to 500 and the weight to 0.8 with an accelerator of 2.
    data(
        &app.admin(
            "mutation($g: ID!) { updateGoal(id: $g, input: {target: \"500\"}) { target } }",
            json!({"g": g}),
        )
        .await,
    );
    data(&app
        .admin("mutation($l: ID!) { updateLink(id: $l, weight: \"0.8\", accelerator: \"2\") { weight } }", json!({"l": l}))
        .await);
    // Now: a = 600 / 500 = 1.2 → 10,000 × 0.8 × (1 + 0.2 × 2) = 11,200.
    let now = statement(app, &app.admin_token(), &p, None).await;
    let now = &data(&now)["compensationStatement"];
    assert_eq!(now["total"], "11200.00", "{now}");
    assert_eq!(now["lines"][0]["target"], "500.00");
    // As things stood before: a = 0.5 (at the threshold), weight 1 → 5,000.
    let then = statement(app, &app.admin_token(), &p, Some(before)).await;
    let then = &data(&then)["compensationStatement"];
    assert_eq!(then["total"], "5000.00", "{then}");
    assert_eq!(then["lines"][0]["target"], "1200.00");
    assert_eq!(then["lines"][0]["weight"], "1");
    let resp = app
        .admin(
            "query($g: ID!, $at: DateTime) { goal(id: $g, asOf: $at) { target attainment versions { version target changedBy } } }",
            json!({"g": g, "at": before}),
        )
        .await;
    let old = &data(&resp)["goal"];
    assert_eq!(old["target"], "1200.00");
    assert_eq!(old["attainment"], "0.5");
    assert_eq!(old["versions"].as_array().unwrap().len(), 2, "{old}");
    assert_eq!(old["versions"][1]["target"], "500.00");
    assert_eq!(old["versions"][1]["changedBy"], "admin-service", "{old}");
    // Unlinking keeps the history: an earlier statement still has its line.
    data(
        &app.admin(
            "mutation($p: ID!, $g: ID!) { unlinkGoal(planId: $p, goalId: $g) { removedAt } }",
            json!({"p": p, "g": g}),
        )
        .await,
    );
    let gone = statement(app, &app.admin_token(), &p, None).await;
    assert_eq!(data(&gone)["compensationStatement"]["lines"], json!([]));
    let then = statement(app, &app.admin_token(), &p, Some(before)).await;
    assert_eq!(data(&then)["compensationStatement"]["total"], "5000.00");
    let resp = app
        .admin(
            "query($p: ID!) { compensationPlan(id: $p) { links { id } } }",
            json!({"p": p}),
        )
        .await;
    assert_eq!(data(&resp)["compensationPlan"]["links"], json!([]));
});

// 6. Each alignment warning, triggered by a hand-built plan.
db_test!(alignment_warnings, |app| async move {
    let mkt = team(app, "Marketing", "MARKETING").await;
    let brand = team(app, "Brand", "MARKETING").await;
    let sales = team(app, "Sales", "SALES").await;
    let (rep, _) = user(app, "rep@x.io", &sales, Role::Member).await;
    let (from, to) = (
        Utc::now() - Duration::days(30),
        Utc::now() + Duration::days(30),
    );
    let rev = goal(
        app,
        json!({"name": "Revenue", "metric": "REVENUE_WON", "target": "100000", "periodStart": from, "periodEnd": to, "teamIds": [mkt, sales]}),
    )
    .await;
    let mqls = goal(
        app,
        json!({"name": "Brand MQLs", "metric": "MQLS", "target": "500", "periodStart": from, "periodEnd": to, "teamIds": [brand]}),
    )
    .await;
    let mk = |name: &str, who: (&str, &str), v: &str| json!({"name": name, who.0: who.1, "periodStart": from, "periodEnd": to, "variableTarget": v});
    // Sales: fully on the shared revenue goal, plus a rep's plan with no link.
    let p_sales = plan(app, mk("Sales pool", ("teamId", &sales), "10000")).await;
    link(app, &p_sales, &rev, json!({"weight": "1"})).await;
    data(
        &app.admin(
            "mutation($p: ID!) { activatePlan(planId: $p) { id } }",
            json!({"p": p_sales}),
        )
        .await,
    );
    plan(app, mk("Rep plan", ("userId", &rep), "5000")).await;
    // Marketing: 0.6 on the shared revenue goal, the rest unlinked.
    let p_mkt = plan(app, mk("Demand gen", ("teamId", &mkt), "8000")).await;
    link(app, &p_mkt, &rev, json!({"weight": "0.6"})).await;
    // Brand: paid only on MQLs, a goal no other function shares.
    let p_brand = plan(app, mk("Brand bonus", ("teamId", &brand), "4000")).await;
    link(app, &p_brand, &mqls, json!({"weight": "1"})).await;

    let resp = app
        .admin(
            "{ alignment { teams { team { name } revenueLinkedShare sharedGoals { goal { name } sharedWith { team { name } } } warnings } } }",
            json!({}),
        )
        .await;
    let teams = data(&resp)["alignment"]["teams"]
        .as_array()
        .unwrap()
        .clone();
    let of = |name: &str| {
        teams
            .iter()
            .find(|t| t["team"]["name"] == name)
            .unwrap()
            .clone()
    };
    let warnings = |name: &str| -> Vec<String> {
        of(name)["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    };
    // Sales: 10,000 aligned of 15,000.
    let s = of("Sales");
    assert!(
        s["revenueLinkedShare"]
            .as_str()
            .unwrap()
            .starts_with("0.6666666"),
        "{s}"
    );
    assert_eq!(s["sharedGoals"][0]["goal"]["name"], "Revenue");
    assert_eq!(
        s["sharedGoals"][0]["sharedWith"],
        json!([{"team": {"name": "Marketing"}}])
    );
    assert_eq!(
        warnings("Sales"),
        vec!["Plan “Rep plan” (draft) has no active link: its variable target is paid on nothing."]
    );
    // Marketing: 0.6, and the weights do not sum to 1.
    let m = of("Marketing");
    assert_eq!(m["revenueLinkedShare"], "0.6", "{m}");
    assert_eq!(
        warnings("Marketing"),
        vec!["Plan “Demand gen” (draft): the weights of its links sum to 0.6, not 1."]
    );
    // Brand: no revenue at all.
    let b = of("Brand");
    assert_eq!(b["revenueLinkedShare"], "0", "{b}");
    assert_eq!(b["sharedGoals"], json!([]));
    assert_eq!(
        warnings("Brand"),
        vec![
            "Goal “Brand MQLs” is shared only within MARKETING: no other function is measured on it.",
            "Plan “Brand bonus” (draft) is paid only on volume (MQLS), not on revenue.",
            "Marketing team “Brand” has no plan linked to a revenue goal shared with another function: it is not paid on revenue.",
        ]
    );
    // Linking Marketing's rest to the revenue goal through a second shared
    // revenue goal clears its warning.
    let nc = goal(
        app,
        json!({"name": "New logos", "metric": "NEW_CUSTOMERS", "target": "10", "periodStart": from, "periodEnd": to, "teamIds": [mkt, sales]}),
    )
    .await;
    link(app, &p_mkt, &nc, json!({"weight": "0.4"})).await;
    let resp = app
        .admin(
            "{ alignment { teams { team { name } revenueLinkedShare warnings } } }",
            json!({}),
        )
        .await;
    let teams = data(&resp)["alignment"]["teams"]
        .as_array()
        .unwrap()
        .clone();
    let m = teams
        .iter()
        .find(|t| t["team"]["name"] == "Marketing")
        .unwrap();
    assert_eq!(m["revenueLinkedShare"], "1", "{m}");
    assert_eq!(m["warnings"], json!([]), "{m}");
    // As of before any plan existed: no shares, no plan warnings.
    let resp = app
        .admin(
            "query($at: DateTime) { alignment(asOf: $at) { teams { team { name } revenueLinkedShare } } }",
            json!({"at": Utc::now() - Duration::days(1)}),
        )
        .await;
    for t in data(&resp)["alignment"]["teams"].as_array().unwrap() {
        assert!(t["revenueLinkedShare"].is_null(), "{t}");
    }
});

/// Runs `query` as ADMIN: the statements it issued and its data.
/// The statements `query` issues, and its data: the fewest of three runs.
///
/// A DataLoader hands a batch's results to its waiters one by one; on a busy
/// machine the request can go on with some of them and start the next
/// level's batch before the rest arrive, which then takes a second batch.
/// That noise only ever adds statements: a query whose statements grow with
/// the page size grows in every run. Each run carries its own comment, so no
/// run is answered from the metric cache.
async fn counted(app: &TestApp, query: &str, vars: Value) -> (u64, Value) {
    let mut fewest = u64::MAX;
    let mut first = Value::Null;
    for run in 0..3 {
        let before = app.statements();
        let resp = app
            .admin(&format!("{query}\n# run {run}"), vars.clone())
            .await;
        fewest = fewest.min(app.statements() - before);
        if run == 0 {
            first = data(&resp).clone();
        }
    }
    (fewest, first)
}

const GOAL_FIELDS: &str = "id name actual attainment remaining pace { expected status } series(interval: MONTH) { start actual attainment } versions { version }";

// 7. Actuals are batched: a page of 12 goals (every metric, three periods,
// four filters) issues as many statements as a page of 2, and reads the
// same numbers as each goal read alone; so do `Team.goals` and `alignment`.
db_test!(goal_actuals_batched, |app| async move {
    let mkt = team(app, "Marketing", "MARKETING").await;
    let sales = team(app, "Sales", "SALES").await;
    let (rep, _) = user(app, "rep@x.io", &sales, Role::Member).await;
    let a1 = account(app, json!({"name": "A1", "segment": "SMB", "status": "CUSTOMER", "becameCustomerAt": t(2026, 1, 15), "ownerId": rep})).await;
    account(app, json!({"name": "A2", "segment": "ENTERPRISE", "status": "CHURNED", "becameCustomerAt": t(2025, 6, 1), "churnedAt": t(2026, 2, 1), "ownerId": rep})).await;
    let l1 = lead(app, json!({"email": "l1@example.org", "source": "PAID", "accountId": a1, "stage": "INQUIRY", "createdAt": t(2025, 12, 20)})).await;
    lead_stage(app, &l1, "MQL", t(2026, 1, 5)).await;
    let o1 = convert(app, &l1, "300", Some(&a1), t(2026, 1, 10)).await;
    opp_stage(app, &o1, "CLOSED_WON", t(2026, 2, 1)).await;
    let l2 = lead(app, json!({"email": "l2@example.org", "source": "WEB", "accountId": a1, "stage": "MQL", "createdAt": t(2026, 1, 3)})).await;
    let o2 = convert(app, &l2, "200", Some(&a1), t(2026, 1, 20)).await;
    opp_stage(app, &o2, "CLOSED_LOST", t(2026, 2, 10)).await;
    won_deal(app, &a1, "100", t(2026, 1, 2), t(2026, 3, 1)).await;

    let metrics = [
        ("REVENUE_WON", "1000"),
        ("NEW_CUSTOMERS", "4"),
        ("PIPELINE_CREATED", "1000"),
        ("QUALIFIED_LEADS_WON", "4"),
        ("WIN_RATE", "0.5"),
        ("RETENTION", "0.8"),
        ("MQLS", "4"),
    ];
    let filters = [
        json!({}),
        json!({"source": "PAID"}),
        json!({"segment": "SMB"}),
        json!({"teamId": sales}),
    ];
    // One period holds now (the alignment report's goals).
    let periods = [
        (t(2026, 2, 1), Utc::now() + Duration::days(30)),
        (t(2026, 1, 1), t(2026, 4, 1)),
        (t(2026, 1, 1), t(2026, 2, 1)),
    ];
    let mk = |i: usize| {
        let (metric, target) = metrics[i % metrics.len()];
        let (from, to) = periods[i % periods.len()];
        let mut g = json!({"name": format!("g{i:02}"), "metric": metric, "target": target, "periodStart": from, "periodEnd": to, "teamIds": [mkt, sales]});
        for (k, v) in filters[i % filters.len()].as_object().unwrap() {
            g[k] = v.clone();
        }
        g
    };
    let page = format!(
        "query($n: Int) {{ goals(first: $n, orderBy: {{field: NAME}}) {{ nodes {{ {GOAL_FIELDS} }} }} }}"
    );
    let teams = format!("{{ teams {{ name goals {{ {GOAL_FIELDS} }} }} }}");
    let alignment =
        format!("{{ alignment {{ teams {{ sharedGoals {{ goal {{ {GOAL_FIELDS} }} }} }} }} }}");

    for i in 0..2 {
        goal(app, mk(i)).await;
    }
    let (teams_2, _) = counted(app, &teams, json!({})).await;
    let (alignment_2, _) = counted(app, &alignment, json!({})).await;
    for i in 2..12 {
        goal(app, mk(i)).await;
    }
    let (page_2, two) = counted(app, &page, json!({"n": 2})).await;
    let (page_12, twelve) = counted(app, &page, json!({"n": 12})).await;
    eprintln!("statements: page of 2 = {page_2}, page of 12 = {page_12}");
    assert_eq!(two["goals"]["nodes"].as_array().unwrap().len(), 2);
    let nodes = twelve["goals"]["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 12);
    assert_eq!(
        page_2, page_12,
        "a page of 12 goals issues more statements than a page of 2"
    );
    let (teams_12, _) = counted(app, &teams, json!({})).await;
    let (alignment_12, shared) = counted(app, &alignment, json!({})).await;
    eprintln!(
        "statements: Team.goals {teams_2} → {teams_12}, alignment {alignment_2} → {alignment_12}"
    );
    assert_eq!(teams_2, teams_12, "Team.goals grows with the goals");
    assert_eq!(alignment_2, alignment_12, "alignment grows with the goals");
    assert_eq!(
        shared["alignment"]["teams"][0]["sharedGoals"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{shared}"
    );

    // The batched numbers are each goal's numbers read alone (but the
    // share of a running period expected by now, read a moment later).
    let one = format!("query($id: ID!) {{ goal(id: $id) {{ {GOAL_FIELDS} }} }}");
    let mut nonzero = 0;
    let timeless = |g: &Value| {
        let mut g = g.clone();
        g["pace"]["expected"] = Value::Null;
        g
    };
    for node in &nodes {
        let (_, alone) = counted(app, &one, json!({"id": node["id"]})).await;
        assert_eq!(
            timeless(&alone["goal"]),
            timeless(node),
            "batched and alone differ"
        );
        if node["actual"]
            .as_str()
            .is_some_and(|a| a.parse::<f64>().unwrap() > 0.0)
        {
            nonzero += 1;
        }
    }
    assert!(nonzero >= 6, "too few goals measure anything: {nodes:#?}");
});

const PLANS: &str = "query($f: CompensationPlanFilterInput, $n: Int, $after: String) { compensationPlans(filter: $f, first: $n, after: $after) { totalCount nodes { name } pageInfo { hasNextPage endCursor } } }";

/// The names of the plans `token` lists with filter `f` (and the total count).
async fn plan_names(app: &TestApp, token: &str, f: Value) -> (Vec<String>, u64) {
    let resp = app.gql(token, PLANS, json!({"f": f})).await;
    let c = &data(&resp)["compensationPlans"];
    let names = c["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    (names, c["totalCount"].as_u64().unwrap())
}

fn names(v: &[&str]) -> (Vec<String>, u64) {
    (v.iter().map(|s| s.to_string()).collect(), v.len() as u64)
}

// 8. `compensationPlans`: who lists which plans (cache included), every
// filter, pages, and no statement per plan.
async fn plan_list(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.metrics_cache_secs = 30).await;
    let app = &app;
    let sales = team(app, "Sales", "SALES").await;
    let mkt = team(app, "Marketing", "MARKETING").await;
    let (alice, alice_t) = user(app, "alice@x.io", &sales, Role::Member).await;
    let (bob, bob_t) = user(app, "bob@x.io", &sales, Role::Member).await;
    let (_, carol_t) = user(app, "carol@x.io", &mkt, Role::Member).await;
    let (_, revops_t) = user(app, "rita@x.io", &mkt, Role::Revops).await;
    let viewer_t = app.token(Role::Viewer, "bi-tool");
    let integration_t = app.token(Role::Integration, "crm");
    let g = goal(
        app,
        json!({"name": "Rev", "metric": "REVENUE_WON", "target": "1000", "periodStart": t(2026, 1, 1), "periodEnd": t(2026, 7, 1), "teamIds": [sales, mkt]}),
    )
    .await;
    let mk = |name: &str, who: (&str, &str), from: DateTime<Utc>, to: DateTime<Utc>| json!({"name": name, who.0: who.1, "periodStart": from, "periodEnd": to, "variableTarget": "1000"});
    let g = &g;
    let activate = |p: String| async move {
        link(app, &p, g, json!({"weight": "1"})).await;
        data(
            &app.admin(
                "mutation($p: ID!) { activatePlan(planId: $p) { id } }",
                json!({"p": p}),
            )
            .await,
        );
    };
    // In period-start order (ties in creation order).
    let p = plan(
        app,
        mk("Alice", ("userId", &alice), t(2026, 1, 1), t(2026, 2, 1)),
    )
    .await;
    activate(p).await;
    let p = plan(
        app,
        mk(
            "Sales pool",
            ("teamId", &sales),
            t(2026, 1, 1),
            t(2026, 7, 1),
        ),
    )
    .await;
    activate(p).await;
    plan(
        app,
        mk("Mkt pool", ("teamId", &mkt), t(2026, 1, 1), t(2026, 2, 1)),
    )
    .await;
    plan(
        app,
        mk("Bob", ("userId", &bob), t(2026, 2, 1), t(2026, 4, 1)),
    )
    .await;

    let all = names(&["Alice", "Sales pool", "Mkt pool", "Bob"]);
    // REVOPS and ADMIN: every plan.
    assert_eq!(plan_names(app, &revops_t, json!(null)).await, all);
    assert_eq!(plan_names(app, &app.admin_token(), json!(null)).await, all);
    // A MEMBER: their own and their team's; the very same request, cached
    // for Alice, is not served to Bob.
    let before = app.statements();
    assert_eq!(
        plan_names(app, &alice_t, json!(null)).await,
        names(&["Alice", "Sales pool"])
    );
    let computed = app.statements() - before;
    let before = app.statements();
    assert_eq!(
        plan_names(app, &alice_t, json!(null)).await,
        names(&["Alice", "Sales pool"])
    );
    assert!(
        app.statements() - before < computed,
        "Alice's repeat was not cached"
    );
    assert_eq!(
        plan_names(app, &bob_t, json!(null)).await,
        names(&["Sales pool", "Bob"])
    );
    assert_eq!(
        plan_names(app, &carol_t, json!(null)).await,
        names(&["Mkt pool"])
    );
    // Filters never widen a MEMBER's view.
    assert_eq!(
        plan_names(app, &alice_t, json!({"userId": bob})).await,
        names(&[])
    );
    assert_eq!(
        plan_names(app, &carol_t, json!({"teamId": sales})).await,
        names(&[])
    );
    // VIEWER and INTEGRATION: FORBIDDEN.
    for tok in [&viewer_t, &integration_t] {
        let resp = app.gql(tok, PLANS, json!({})).await;
        assert_eq!(error_code(&resp), Some("FORBIDDEN"), "{resp}");
        assert!(resp["data"].is_null(), "{resp}");
    }
    // Every filter, alone and together.
    let admin = app.admin_token();
    let cases = [
        (json!({"teamId": sales}), names(&["Sales pool"])),
        (json!({"userId": alice}), names(&["Alice"])),
        (json!({"active": true}), names(&["Alice", "Sales pool"])),
        (json!({"active": false}), names(&["Mkt pool", "Bob"])),
        (
            json!({"activeAt": t(2026, 2, 15)}),
            names(&["Sales pool", "Bob"]),
        ),
        // The period is half-open: a plan ending Feb 1 is not active then.
        (
            json!({"activeAt": t(2026, 2, 1)}),
            names(&["Sales pool", "Bob"]),
        ),
        (
            json!({"activeAt": t(2026, 1, 15), "active": false}),
            names(&["Mkt pool"]),
        ),
        (json!({"teamId": mkt, "active": true}), names(&[])),
    ];
    for (f, want) in cases {
        assert_eq!(plan_names(app, &admin, f.clone()).await, want, "{f}");
    }
    let resp = app.admin(PLANS, json!({"f": {"teamId": "nope"}})).await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
    // Pages: two, then the rest after the cursor; page sizes are bounded.
    let resp = app.admin(PLANS, json!({"n": 2})).await;
    let c = &data(&resp)["compensationPlans"];
    assert_eq!(
        c["nodes"],
        json!([{"name": "Alice"}, {"name": "Sales pool"}])
    );
    assert_eq!(c["pageInfo"]["hasNextPage"], true);
    let resp = app
        .admin(PLANS, json!({"n": 2, "after": c["pageInfo"]["endCursor"]}))
        .await;
    let c = &data(&resp)["compensationPlans"];
    assert_eq!(c["nodes"], json!([{"name": "Mkt pool"}, {"name": "Bob"}]));
    assert_eq!(c["pageInfo"]["hasNextPage"], false);
    let resp = app.admin(PLANS, json!({"n": 501})).await;
    assert_eq!(error_code(&resp), Some("BAD_USER_INPUT"), "{resp}");
    // Links, their goals' actuals and versions: no statement per plan.
    let deep = "query($n: Int) { compensationPlans(first: $n) { nodes { name team { name } user { email } links { weight goal { name actual attainment } versions { version } } } } }";
    // (The first two: a user's plan and a team's, both linked.)
    let (two, _) = counted(app, deep, json!({"n": 2})).await;
    let (four, d) = counted(app, deep, json!({"n": 4})).await;
    assert_eq!(
        d["compensationPlans"]["nodes"][1]["links"][0]["goal"]["name"], "Rev",
        "{d}"
    );
    eprintln!("statements: plans page of 2 = {two}, of 4 = {four}");
    assert_eq!(
        two, four,
        "a page of 4 plans issues more statements than a page of 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_list_sqlite() {
    plan_list(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_list_postgres() {
    if !postgres_available().await {
        return;
    }
    plan_list(Backend::Postgres).await;
}
