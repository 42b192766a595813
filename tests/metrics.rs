//! Metrics over small datasets built by hand; every expected number is
//! worked out here from the definitions in docs/metrics.md.

use crate::db_test;
use crate::harness::*;
use chrono::{DateTime, TimeZone, Utc};
use entity::enums::*;
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use serde_json::{Value, json};
use uuid::Uuid;

fn t(m: u32, d: u32, h: u32) -> DateTime<Utc> {
    let y = if m == 12 { 2025 } else { 2026 };
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn uid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

const UNITS: i64 = 10_000;

struct Data<'a> {
    db: &'a DatabaseConnection,
    n: u128,
}

impl Data<'_> {
    fn next(&mut self) -> Uuid {
        self.n += 1;
        uid(0x1000_0000 + self.n)
    }

    async fn account(
        &mut self,
        segment: Segment,
        became: Option<DateTime<Utc>>,
        churned: Option<DateTime<Utc>>,
    ) -> Uuid {
        let id = self.next();
        entity::account::Entity::insert(entity::account::ActiveModel {
            id: Set(id),
            name: Set(format!("acct {id}")),
            domain: Set(None),
            industry: Set(None),
            segment: Set(segment),
            employees: Set(None),
            annual_revenue: Set(None),
            is_target: Set(false),
            status: Set(if churned.is_some() {
                AccountStatus::Churned
            } else if became.is_some() {
                AccountStatus::Customer
            } else {
                AccountStatus::Prospect
            }),
            became_customer_at: Set(became),
            churned_at: Set(churned),
            owner_id: Set(None),
            created_by: Set("t".into()),
            created_at: Set(t(12, 1, 0)),
            updated_at: Set(t(12, 1, 0)),
        })
        .exec(self.db)
        .await
        .unwrap();
        id
    }

    async fn campaign(&mut self, name: &str, kind: CampaignKind) -> Uuid {
        let id = self.next();
        entity::campaign::Entity::insert(entity::campaign::ActiveModel {
            id: Set(id),
            name: Set(name.into()),
            channel: Set(Channel::Email),
            kind: Set(kind),
            cost: Set(0),
            starts_at: Set(t(12, 1, 0)),
            ends_at: Set(None),
            created_at: Set(t(12, 1, 0)),
        })
        .exec(self.db)
        .await
        .unwrap();
        id
    }

    #[allow(clippy::too_many_arguments)]
    async fn lead(
        &mut self,
        account: Uuid,
        source: Channel,
        created: DateTime<Utc>,
        history: &[(&str, DateTime<Utc>)],
        first_touch_hours: Option<i64>,
        opp: Option<Uuid>,
    ) -> Uuid {
        let id = self.next();
        let stage = history.last().map(|(s, _)| *s).unwrap_or("INQUIRY");
        let stage = LeadStage::ALL
            .iter()
            .copied()
            .find(|x| x.as_str() == stage)
            .unwrap();
        // First entry into MQL, SAL, SQL, CONVERTED or a later main-path stage.
        let entry = |min_rank: u8| {
            history
                .iter()
                .find(|(s, _)| {
                    LeadStage::ALL
                        .iter()
                        .any(|x| x.as_str() == *s && x.rank().unwrap_or(0) >= min_rank)
                })
                .map(|(_, at)| *at)
        };
        entity::lead::Entity::insert(entity::lead::ActiveModel {
            id: Set(id),
            email: Set(format!("{id}@x.io")),
            first_name: Set(None),
            last_name: Set(None),
            title: Set(None),
            company: Set(None),
            account_id: Set(Some(account)),
            source: Set(source),
            campaign_id: Set(None),
            score: Set(0),
            stage: Set(stage),
            owner_id: Set(None),
            team_id: Set(None),
            converted_opportunity_id: Set(opp),
            first_touch_at: Set(first_touch_hours.map(|h| created + chrono::Duration::hours(h))),
            mql_at: Set(entry(2)),
            sal_at: Set(entry(3)),
            sql_at: Set(entry(4)),
            converted_at: Set(entry(5)),
            inquiry_at: Set(history
                .iter()
                .find(|(s, _)| *s == "INQUIRY")
                .map(|(_, at)| *at)),
            created_by: Set("t".into()),
            created_at: Set(created),
            updated_at: Set(created),
        })
        .exec(self.db)
        .await
        .unwrap();
        let mut from: Option<String> = None;
        for (to, at) in history {
            let sid = self.next();
            entity::stage_change::Entity::insert(entity::stage_change::ActiveModel {
                id: Set(sid),
                lead_id: Set(Some(id)),
                opportunity_id: Set(None),
                from_stage: Set(from.clone()),
                to_stage: Set(to.to_string()),
                at: Set(*at),
                actor: Set("t".into()),
                actor_user_id: Set(None),
                reason: Set(None),
            })
            .exec(self.db)
            .await
            .unwrap();
            from = Some(to.to_string());
        }
        id
    }

    #[allow(clippy::too_many_arguments)]
    async fn opportunity(
        &mut self,
        id: Uuid,
        account: Uuid,
        lead: Option<Uuid>,
        stage: OpportunityStage,
        amount: i64,
        created: DateTime<Utc>,
        closed: Option<DateTime<Utc>>,
    ) {
        entity::opportunity::Entity::insert(entity::opportunity::ActiveModel {
            id: Set(id),
            name: Set("deal".into()),
            account_id: Set(account),
            lead_id: Set(lead),
            owner_id: Set(None),
            stage: Set(stage),
            amount: Set(amount * UNITS),
            currency: Set("USD".into()),
            expected_close_date: Set(None),
            closed_at: Set(closed),
            lost_reason: Set((stage == OpportunityStage::ClosedLost).then(|| "price".into())),
            sourced_by: Set(SourcedBy::Marketing),
            created_by: Set("t".into()),
            created_at: Set(created),
            updated_at: Set(created),
        })
        .exec(self.db)
        .await
        .unwrap();
    }

    async fn touch(&mut self, id: Uuid, lead: Uuid, campaign: Uuid, at: DateTime<Utc>) {
        entity::touchpoint::Entity::insert(entity::touchpoint::ActiveModel {
            id: Set(id),
            lead_id: Set(lead),
            campaign_id: Set(campaign),
            occurred_at: Set(at),
            created_at: Set(at),
        })
        .exec(self.db)
        .await
        .unwrap();
    }
}

struct Ids {
    a: Uuid,
    b: Uuid,
    c: Uuid,
}

/// The dataset of this module (see the comments for the numbers).
async fn dataset(app: &TestApp) -> Ids {
    let mut d = Data { db: app.db(), n: 0 };
    let acct = d.account(Segment::Smb, None, None).await;
    let ent = d
        .account(Segment::Enterprise, Some(t(12, 1, 0)), None)
        .await;
    // Retention: one customer kept, one churned in January, one too new, one gone before.
    d.account(Segment::Smb, Some(t(12, 2, 0)), Some(t(1, 15, 0)))
        .await;
    d.account(Segment::Smb, Some(t(1, 10, 0)), None).await;
    d.account(Segment::Smb, Some(t(12, 1, 0)), Some(t(12, 20, 0)))
        .await;
    let (o1, o2, o3) = (uid(0x0001), uid(0x0002), uid(0x0003));
    // L1: the whole path; its opportunity wins (1,000 after 10 days).
    let l1 = d
        .lead(
            acct,
            Channel::Web,
            t(1, 2, 0),
            &[
                ("INQUIRY", t(1, 2, 0)),
                ("MQL", t(1, 2, 10)),
                ("SAL", t(1, 3, 10)),
                ("SQL", t(1, 4, 10)),
                ("CONVERTED", t(1, 5, 10)),
            ],
            Some(2),
            Some(o1),
        )
        .await;
    d.opportunity(
        o1,
        acct,
        Some(l1),
        OpportunityStage::ClosedWon,
        1000,
        t(1, 5, 10),
        Some(t(1, 15, 10)),
    )
    .await;
    // L2: skips from INQUIRY to SQL; its opportunity is lost.
    let l2 = d
        .lead(
            ent,
            Channel::Event,
            t(1, 3, 0),
            &[
                ("INQUIRY", t(1, 3, 0)),
                ("SQL", t(1, 3, 20)),
                ("CONVERTED", t(1, 4, 20)),
            ],
            Some(4),
            Some(o2),
        )
        .await;
    d.opportunity(
        o2,
        ent,
        Some(l2),
        OpportunityStage::ClosedLost,
        400,
        t(1, 4, 20),
        Some(t(1, 10, 0)),
    )
    .await;
    // L3 is recycled after MQL, L4 disqualified; L5 was created before the period.
    d.lead(
        acct,
        Channel::Web,
        t(1, 4, 0),
        &[
            ("INQUIRY", t(1, 4, 0)),
            ("MQL", t(1, 4, 6)),
            ("RECYCLED", t(1, 6, 0)),
        ],
        Some(1),
        None,
    )
    .await;
    d.lead(
        acct,
        Channel::Web,
        t(1, 5, 0),
        &[("INQUIRY", t(1, 5, 0)), ("DISQUALIFIED", t(1, 5, 1))],
        None,
        None,
    )
    .await;
    d.lead(
        acct,
        Channel::Web,
        t(12, 31, 0),
        &[("INQUIRY", t(12, 31, 0)), ("MQL", t(12, 31, 5))],
        Some(1),
        None,
    )
    .await;
    // O3: won without a lead (unattributed, 500 after 10 days); open pipeline.
    d.opportunity(
        o3,
        ent,
        None,
        OpportunityStage::ClosedWon,
        500,
        t(1, 10, 0),
        Some(t(1, 20, 0)),
    )
    .await;
    d.opportunity(
        uid(0x0004),
        acct,
        None,
        OpportunityStage::Discovery,
        200,
        t(1, 8, 0),
        None,
    )
    .await;
    d.opportunity(
        uid(0x0005),
        ent,
        None,
        OpportunityStage::Proposal,
        300,
        t(1, 9, 0),
        None,
    )
    .await;
    // L1's touches: A, B (the last before MQL), then A and C at the same
    // instant (ordered by id: A's id is smaller), and B after the opportunity (ignored).
    let a = d.campaign("A", CampaignKind::Webinar).await;
    let b = d.campaign("B", CampaignKind::Ad).await;
    let c = d.campaign("C", CampaignKind::Content).await;
    d.touch(uid(0x10), l1, a, t(1, 1, 0)).await;
    d.touch(uid(0x11), l1, b, t(1, 2, 5)).await;
    d.touch(uid(0x13), l1, c, t(1, 4, 0)).await;
    d.touch(uid(0x12), l1, a, t(1, 4, 0)).await;
    d.touch(uid(0x14), l1, b, t(1, 6, 0)).await;
    // Rows written straight to the tables, as an import would: the rollups
    // are rebuilt after, as `lockstep seed` does.
    api::metrics::rollups::rebuild(app.db()).await.unwrap();
    Ids { a, b, c }
}

const JAN: &str = r#"period: {from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z"}"#;

async fn metrics(app: &TestApp, token: &str, fields: &str) -> Value {
    let q = format!("{{ metrics({JAN}) {{ {fields} }} }}");
    let resp = app.gql(token, &q, json!({})).await;
    data(&resp)["metrics"].clone()
}

#[track_caller]
fn close(actual: &Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("expected {expected}, got {actual}"));
    assert!((a - expected).abs() < 1e-6, "expected {expected}, got {a}");
}

db_test!(funnel_follows_the_definitions, |app| async move {
    dataset(app).await;
    let m = metrics(
        app,
        &app.token(entity::enums::Role::Viewer, "bi"),
        "funnel { stages { stage reached conversion medianHoursToNext } inquiryToWon }",
    )
    .await;
    let s = &m["funnel"]["stages"];
    let reached: Vec<i64> = s
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reached"].as_i64().unwrap())
        .collect();
    // INQUIRY: L1–L4; MQL: L1, L2 (skipped to SQL), L3; SAL and SQL: L1, L2; OPPORTUNITY: L1, L2; WON: L1.
    assert_eq!(reached, vec![4, 3, 2, 2, 2, 1]);
    for (i, conv) in [0.75, 2.0 / 3.0, 1.0, 1.0, 0.5].iter().enumerate() {
        close(&s[i]["conversion"], *conv);
    }
    assert!(s[5]["conversion"].is_null());
    // Only stages entered themselves are timed (L2 skipped MQL and SAL):
    // INQUIRY→MQL: L1 10, L3 6 h → 8 (even count: the mean); MQL→SAL: L1 24;
    // SAL→SQL: L1 24; SQL→OPPORTUNITY: 24, 24; OPPORTUNITY→WON: 240.
    for (i, h) in [8.0, 24.0, 24.0, 24.0, 240.0].iter().enumerate() {
        close(&s[i]["medianHoursToNext"], *h);
    }
    close(&m["funnel"]["inquiryToWon"], 0.25);
    // A filter: WEB leads only (L1, L3, L4).
    let q = format!(
        "{{ metrics({JAN}, filter: {{source: WEB}}) {{ funnel {{ stages {{ reached }} }} }} }}"
    );
    let web = app.admin(&q, json!({})).await;
    let reached: Vec<i64> = data(&web)["metrics"]["funnel"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reached"].as_i64().unwrap())
        .collect();
    assert_eq!(reached, vec![3, 2, 1, 1, 1, 1]);
});

db_test!(outcomes_pipeline_speed_and_retention, |app| async move {
    dataset(app).await;
    let m = metrics(app, &app.admin_token(), "winRate averageDealSize wonRevenue salesCycle speedToLead { medianHours touched untouched } retention pipeline { total stages { stage count amount } }").await;
    close(&m["winRate"], 2.0 / 3.0);
    assert_eq!(m["averageDealSize"], "750.00");
    assert_eq!(m["wonRevenue"], "1500.00");
    close(&m["salesCycle"], 10.0);
    close(&m["speedToLead"]["medianHours"], 2.0);
    assert_eq!(m["speedToLead"]["touched"], 3);
    assert_eq!(m["speedToLead"]["untouched"], 1);
    close(&m["retention"], 0.5);
    assert_eq!(m["pipeline"]["total"], "500.00");
    assert_eq!(
        m["pipeline"]["stages"],
        json!([
            {"stage": "DISCOVERY", "count": 1, "amount": "200.00"},
            {"stage": "PROPOSAL", "count": 1, "amount": "300.00"},
            {"stage": "NEGOTIATION", "count": 0, "amount": "0.00"}
        ])
    );
});

/// The statements a metrics selection issues: the fewest of three runs
/// (each run carries its own comment, so none is answered from a cache).
async fn metric_statements(app: &TestApp, fields: &str) -> (u64, Value) {
    let mut fewest = u64::MAX;
    let mut first = Value::Null;
    for run in 0..3 {
        let q = format!("{{ metrics({JAN}) {{ {fields} }} }}\n# run {run}");
        let before = app.statements();
        let resp = app.admin(&q, json!({})).await;
        fewest = fewest.min(app.statements() - before);
        if run == 0 {
            first = data(&resp)["metrics"].clone();
        }
    }
    (fewest, first)
}

db_test!(win_rate_alone_skips_the_sales_cycle, |app| async move {
    dataset(app).await;
    let (none, _) = metric_statements(app, "periodFrom").await;
    let (win, m) = metric_statements(app, "winRate").await;
    close(&m["winRate"], 2.0 / 3.0);
    assert_eq!(win, none + 1, "winRate alone: one statement");
    // The outcome fields share one statement.
    let (all, m) = metric_statements(app, "winRate averageDealSize wonRevenue").await;
    assert_eq!(
        all, win,
        "winRate, averageDealSize and wonRevenue share a statement"
    );
    assert_eq!(m["averageDealSize"], "750.00");
    assert_eq!(m["wonRevenue"], "1500.00");
    // The sales cycle's median is read only when asked for.
    let (cycle, m) = metric_statements(app, "winRate wonRevenue salesCycle").await;
    assert_eq!(cycle, win + 1, "salesCycle adds its median");
    close(&m["winRate"], 2.0 / 3.0);
    close(&m["salesCycle"], 10.0);
    let (alone, m) = metric_statements(app, "salesCycle").await;
    assert_eq!(alone, none + 1, "salesCycle alone: its median only");
    close(&m["salesCycle"], 10.0);
    // So are the closed loop's medians (also asked through a fragment).
    let (counts, m) = metric_statements(app, "closedLoop(groupBy: SOURCE) { key won }").await;
    assert_eq!(
        counts,
        none + 1,
        "closedLoop without medianCycleDays: its counts only"
    );
    assert!(
        m["closedLoop"].as_array().is_some_and(|r| !r.is_empty()),
        "{m}"
    );
    let (with, m) = metric_statements(
        app,
        "closedLoop(groupBy: SOURCE) { key ... on ClosedLoopRow { medianCycleDays } }",
    )
    .await;
    assert_eq!(with, counts + 1, "medianCycleDays adds the medians");
    let web = m["closedLoop"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["key"] == "WEB"))
        .cloned()
        .unwrap_or_default();
    close(&web["medianCycleDays"], 10.0);
});

db_test!(empty_periods_give_null_rates, |app| async move {
    dataset(app).await;
    let q = r#"{ metrics(period: {from: "2030-01-01T00:00:00Z", to: "2030-02-01T00:00:00Z"}) { funnel { stages { reached conversion medianHoursToNext } inquiryToWon } winRate averageDealSize salesCycle attribution(model: LINEAR) { rows { revenue } total } } }"#;
    let m = &data(&app.admin(q, json!({})).await)["metrics"].clone();
    assert!(
        m["funnel"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["reached"] == 0
                && s["conversion"].is_null()
                && s["medianHoursToNext"].is_null())
    );
    assert!(m["funnel"]["inquiryToWon"].is_null());
    assert!(m["winRate"].is_null() && m["averageDealSize"].is_null() && m["salesCycle"].is_null());
    assert_eq!(m["attribution"], json!({"rows": [], "total": "0.00"}));
    let bad = app.admin(r#"{ metrics(period: {from: "2026-02-01T00:00:00Z", to: "2026-01-01T00:00:00Z"}) { winRate } }"#, json!({})).await;
    assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
});

db_test!(
    closed_loop_groups_leads_through_to_revenue,
    |app| async move {
        dataset(app).await;
        let m = metrics(app, &app.admin_token(), "closedLoop(groupBy: SOURCE) { key leads mqls opportunities won wonRevenue closeRate avgDealSize medianCycleDays }").await;
        let rows = m["closedLoop"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        let web = &rows[0];
        assert_eq!(
            (
                web["key"].as_str(),
                web["leads"].as_i64(),
                web["mqls"].as_i64(),
                web["opportunities"].as_i64(),
                web["won"].as_i64()
            ),
            (Some("WEB"), Some(3), Some(2), Some(1), Some(1))
        );
        assert_eq!(web["wonRevenue"], "1000.00");
        close(&web["closeRate"], 1.0 / 3.0);
        assert_eq!(web["avgDealSize"], "1000.00");
        close(&web["medianCycleDays"], 10.0);
        let event = &rows[1];
        assert_eq!(
            (
                event["key"].as_str(),
                event["leads"].as_i64(),
                event["mqls"].as_i64(),
                event["won"].as_i64()
            ),
            (Some("EVENT"), Some(1), Some(1), Some(0))
        );
        assert_eq!(event["wonRevenue"], "0.00");
        assert!(event["avgDealSize"].is_null() && event["medianCycleDays"].is_null());
        let seg = metrics(
            app,
            &app.admin_token(),
            "closedLoop(groupBy: SEGMENT) { key leads won }",
        )
        .await;
        assert_eq!(
            seg["closedLoop"],
            json!([{"key": "SMB", "leads": 3, "won": 1}, {"key": "ENTERPRISE", "leads": 1, "won": 0}])
        );
    }
);

db_test!(attribution_models_credit_exactly, |app| async move {
    let ids = dataset(app).await;
    let q = |model: &str| {
        format!(
            "attribution(model: {model}) {{ rows {{ campaignId campaignName unattributed revenue opportunities }} total }}"
        )
    };
    let get = |m: &Value, id: &Uuid| {
        m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["campaignId"] == id.to_string())
            .cloned()
    };
    // Touches of the won lead before its opportunity: A (first), B (last before MQL), A, C (same instant: A first by id).
    let expected = [
        (
            "FIRST_TOUCH",
            [("A", "1000.00", 1.0), ("B", "", 0.0), ("C", "", 0.0)],
        ),
        (
            "LAST_TOUCH",
            [("C", "1000.00", 1.0), ("A", "", 0.0), ("B", "", 0.0)],
        ),
        (
            "LINEAR",
            [
                ("A", "500.00", 0.5),
                ("B", "250.00", 0.25),
                ("C", "250.00", 0.25),
            ],
        ),
        // first 30% (A) + MQL 30% (B) + last 30% (C) + 10% to the one touch holding no role (A).
        (
            "W_SHAPED",
            [
                ("A", "400.00", 0.4),
                ("B", "300.00", 0.3),
                ("C", "300.00", 0.3),
            ],
        ),
    ];
    for (model, rows) in expected {
        let m = metrics(app, &app.admin_token(), &q(model)).await;
        let m = &m["attribution"];
        assert_eq!(m["total"], "1500.00", "{model}");
        for (name, revenue, share) in rows {
            let id = match name {
                "A" => ids.a,
                "B" => ids.b,
                _ => ids.c,
            };
            match get(m, &id) {
                Some(row) => {
                    assert_eq!(row["revenue"], revenue, "{model} {name}: {m}");
                    close(&row["opportunities"], share);
                }
                None => assert!(revenue.is_empty(), "{model} {name} missing: {m}"),
            }
        }
        let bare = m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unattributed"] == true)
            .cloned()
            .unwrap();
        assert_eq!(bare["revenue"], "500.00", "{model}");
        let sum: f64 = m["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["revenue"].as_str().unwrap().parse::<f64>().unwrap())
            .sum();
        assert!(
            (sum - 1500.0).abs() < 0.005,
            "{model}: credits sum to the revenue won"
        );
    }
});

db_test!(
    series_buckets_start_on_monday_and_include_empty_ones,
    |app| async move {
        dataset(app).await;
        let m = metrics(app, &app.admin_token(), "leads: series(metric: LEADS_CREATED, interval: WEEK) { start value } won: series(metric: WON_REVENUE, interval: MONTH) { start amount }").await;
        assert_eq!(
            m["leads"],
            json!([
                {"start": "2025-12-29T00:00:00+00:00", "value": 3.0},
                {"start": "2026-01-05T00:00:00+00:00", "value": 1.0},
                {"start": "2026-01-12T00:00:00+00:00", "value": 0.0},
                {"start": "2026-01-19T00:00:00+00:00", "value": 0.0},
                {"start": "2026-01-26T00:00:00+00:00", "value": 0.0}
            ])
        );
        assert_eq!(
            m["won"],
            json!([{"start": "2026-01-01T00:00:00+00:00", "amount": "1500.00"}])
        );
    }
);

/// The BI views (PostgreSQL) give the same numbers as GraphQL for a period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_views_match_graphql_on_postgres() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    dataset(&app).await;
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.db();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(SUM(leads) AS BIGINT) AS l, CAST(SUM(reached_mql) AS BIGINT) AS m, CAST(SUM(reached_sal) AS BIGINT) AS sa, \
             CAST(SUM(reached_sql) AS BIGINT) AS sq, CAST(SUM(reached_opportunity) AS BIGINT) AS o, CAST(SUM(reached_won) AS BIGINT) AS w \
             FROM bi_funnel_daily WHERE day >= '2026-01-01' AND day < '2026-02-01'",
        ))
        .await
        .unwrap()
        .unwrap();
    let views: Vec<i64> = ["l", "m", "sa", "sq", "o", "w"]
        .iter()
        .map(|c| row.try_get::<i64>("", c).unwrap())
        .collect();
    let m = metrics(&app, &app.admin_token(), "funnel { stages { reached } }").await;
    let graphql: Vec<i64> = m["funnel"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reached"].as_i64().unwrap())
        .collect();
    assert_eq!(views, graphql);
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT CAST(SUM(won_revenue) AS TEXT) AS r, CAST(SUM(leads) AS BIGINT) AS l FROM bi_closed_loop WHERE day >= '2026-01-01' AND day < '2026-02-01' AND source = 'WEB'",
        ))
        .await
        .unwrap()
        .unwrap();
    let revenue: rust_decimal::Decimal = row.try_get::<String>("", "r").unwrap().parse().unwrap();
    assert_eq!(revenue, rust_decimal::Decimal::new(1000, 0));
    assert_eq!(row.try_get::<i64>("", "l").unwrap(), 3);
    app.cleanup().await;
}

db_test!(metrics_have_their_own_pool, |app| async move {
    dataset(app).await;
    let show = |db: &sea_orm::DatabaseConnection| {
        let db = db.clone();
        async move {
            use sea_orm::{ConnectionTrait, Statement};
            db.query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SHOW plan_cache_mode",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "plan_cache_mode")
            .unwrap()
        }
    };
    if app.backend == Backend::Postgres {
        // Records keep PostgreSQL's plan cache; metric statements are
        // planned for their own period on a pool of their own.
        assert_eq!(show(&app.state.db).await, "auto");
        assert_eq!(show(&app.state.metrics_db).await, "force_custom_plan");
    }
    // Both pools' statements are counted.
    let (win, m) = metric_statements(app, "winRate").await;
    close(&m["winRate"], 2.0 / 3.0);
    assert!(win >= 1, "the metric statement is counted");
    let before = app.statements();
    let resp = app
        .admin("{ leads(first: 5) { totalCount } }", json!({}))
        .await;
    assert!(data(&resp)["leads"]["totalCount"].as_i64().unwrap() > 0);
    assert!(app.statements() > before);
});
