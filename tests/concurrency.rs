//! Writes under real concurrency, as CRMs and hand-offs make them: 16
//! writers for a bounded time reassign the same leads between owners, teams,
//! sources, campaigns and accounts (crossed keys), change the same leads'
//! stages, create batches that share rollup keys in opposite orders, convert
//! leads, win opportunities of shared campaigns and change their amounts,
//! and flip accounts' segments. Afterwards: no error a client could not
//! cause reached it; every lead's stage history is a chain; the kept stage
//! times are the first entries of the history; every rollup and credit
//! equals a rebuild from the records.

use crate::db_test;
use crate::harness::*;
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITERS: u64 = 16;
const LEADS: usize = 40;

/// A small deterministic generator per writer (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

struct Fixture {
    owners: Vec<String>,
    teams: Vec<String>,
    campaigns: Vec<String>,
    accounts: Vec<String>,
    leads: Vec<String>,
}

async fn fixture(app: &TestApp) -> Fixture {
    let mut teams = Vec::new();
    for (i, f) in ["MARKETING", "SALES"].iter().enumerate() {
        let resp = app
            .admin(
                "mutation($n: String!, $f: TeamFunction!) { createTeam(input: {name: $n, function: $f}) { id } }",
                json!({"n": format!("team {i}"), "f": f}),
            )
            .await;
        teams.push(data(&resp)["createTeam"]["id"].as_str().unwrap().to_owned());
    }
    let mut owners = Vec::new();
    for i in 0..4 {
        let resp = app
            .admin(
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({"i": {"email": format!("owner{i}@example.com"), "name": format!("Owner {i}"), "role": "MEMBER"}}),
            )
            .await;
        owners.push(data(&resp)["createUser"]["id"].as_str().unwrap().to_owned());
    }
    let mut campaigns = Vec::new();
    for i in 0..3 {
        let resp = app
            .admin(
                "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
                json!({"i": {"name": format!("campaign {i}"), "channel": "EMAIL", "kind": "WEBINAR", "startsAt": "2025-12-01T00:00:00Z"}}),
            )
            .await;
        campaigns.push(
            data(&resp)["createCampaign"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut accounts = Vec::new();
    for (i, segment) in ["SMB", "ENTERPRISE"].iter().enumerate() {
        let resp = app
            .admin(
                "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
                json!({"i": {"name": format!("Account {i}"), "segment": segment}}),
            )
            .await;
        accounts.push(
            data(&resp)["createAccount"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut leads = Vec::new();
    for i in 0..LEADS {
        let source = ["WEB", "EVENT", "PAID"][i % 3];
        let resp = app
            .admin(
                "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                json!({"i": {
                    "email": format!("lead{i}@example.com"),
                    "source": source,
                    "campaignId": campaigns[i % 3],
                    "ownerId": owners[i % 4],
                    "teamId": teams[i % 2],
                    "accountId": accounts[i % 2],
                }}),
            )
            .await;
        leads.push(data(&resp)["createLead"]["id"].as_str().unwrap().to_owned());
    }
    // Touches, so that wins have credits to keep.
    for (i, lead) in leads.iter().enumerate() {
        let resp = app
            .admin(
                "mutation($i: TouchpointInput!) { recordTouchpoint(input: $i) { id } }",
                json!({"i": {"leadId": lead, "campaignId": campaigns[(i + 1) % 3], "occurredAt": "2026-01-01T00:00:00Z"}}),
            )
            .await;
        data(&resp);
    }
    Fixture {
        owners,
        teams,
        campaigns,
        accounts,
        leads,
    }
}

/// What a writer saw: per error code, how many.
type Seen = BTreeMap<String, u64>;

async fn writer(app: &TestApp, token: &str, f: &Fixture, n: u64, until: Instant) -> Seen {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut seen = Seen::new();
    let mut batch = 0;
    while Instant::now() < until {
        let lead = rng.pick(&f.leads).clone();
        // Conversions now and then only: a converted lead's stage is final.
        let op = match rng.next() % 8 {
            5 if !rng.next().is_multiple_of(3) => 2,
            op => op,
        };
        let (query, vars) = match op {
            // Crossed keys: the same leads move between owners, teams, sources, campaigns, accounts.
            0 | 1 => (
                "mutation($id: ID!, $i: LeadInput!) { updateLead(id: $id, input: $i) { id } }",
                json!({"id": lead, "i": {
                    "email": Value::Null,
                    "ownerId": rng.pick(&f.owners),
                    "teamId": rng.pick(&f.teams),
                    "source": rng.pick(&["WEB", "EVENT", "PAID", "EMAIL"]),
                    "campaignId": rng.pick(&f.campaigns),
                    "accountId": rng.pick(&f.accounts),
                }}),
            ),
            // The same leads' stages, from several writers.
            2 | 3 => (
                "mutation($id: ID!, $to: LeadStage!) { changeLeadStage(id: $id, to: $to) { id } }",
                json!({"id": lead, "to": rng.pick(&["INQUIRY", "MQL", "SAL", "SQL", "RECYCLED"])}),
            ),
            // Batches sharing rollup keys in opposite orders.
            4 => {
                batch += 1;
                let (a, b) = (rng.pick(&f.owners).clone(), rng.pick(&f.owners).clone());
                let order = if n.is_multiple_of(2) {
                    [&a, &b]
                } else {
                    [&b, &a]
                };
                let inputs: Vec<Value> = order
                    .iter()
                    .enumerate()
                    .map(|(i, owner)| {
                        json!({
                            "email": format!("w{n}b{batch}i{i}@example.com"),
                            "ownerId": owner,
                            "campaignId": f.campaigns[i % 3],
                            "accountId": f.accounts[i % 2],
                            "stage": "MQL",
                        })
                    })
                    .collect();
                (
                    "mutation($i: [LeadInput!]!) { createLeads(inputs: $i) { id } }",
                    json!({ "i": inputs }),
                )
            }
            // Conversions (now and then: a converted lead's stage is final)
            // and wins of shared campaigns' leads.
            5 => (
                "mutation($id: ID!) { convertLead(id: $id, opportunity: {name: \"Deal\", amount: \"1000.00\"}) { opportunity { id } } }",
                json!({ "id": lead }),
            ),
            6 => {
                let resp = app
                    .gql(
                        token,
                        "query($id: ID!) { lead(id: $id) { convertedOpportunity { id stage } } }",
                        json!({ "id": lead }),
                    )
                    .await;
                let opp = &resp["data"]["lead"]["convertedOpportunity"];
                let Some(id) = opp["id"].as_str() else {
                    continue;
                };
                if opp["stage"] == "CLOSED_WON" || rng.next().is_multiple_of(2) {
                    (
                        "mutation($id: ID!, $a: Decimal!) { updateOpportunity(id: $id, input: {amount: $a}) { id } }",
                        json!({"id": id, "a": format!("{}.00", 500 + rng.next() % 5000)}),
                    )
                } else {
                    (
                        "mutation($id: ID!) { changeOpportunityStage(id: $id, to: CLOSED_WON) { id } }",
                        json!({ "id": id }),
                    )
                }
            }
            // An account's segment flips: its leads move in the segment rollup.
            _ => (
                "mutation($id: ID!, $s: Segment!) { updateAccount(id: $id, input: {segment: $s}) { id } }",
                json!({"id": rng.pick(&f.accounts), "s": rng.pick(&["SMB", "MID_MARKET", "ENTERPRISE"])}),
            ),
        };
        let resp = app.gql(token, query, vars).await;
        let code = match resp["errors"].as_array() {
            None => "OK".to_owned(),
            Some(errors) => errors[0]["extensions"]["code"]
                .as_str()
                .unwrap_or("NO CODE")
                .to_owned(),
        };
        if code == "INTERNAL" || code == "NO CODE" {
            eprintln!("writer {n}: {query} -> {resp}");
        }
        *seen.entry(code).or_default() += 1;
    }
    seen
}

/// The rows of a rollup table with any non-zero count, as text, in order.
async fn dump(app: &TestApp, table: &str, cols: &str) -> Vec<String> {
    let db = app.db();
    let text = |c: &str| match app.backend {
        Backend::Postgres => format!("CAST({c} AS TEXT)"),
        Backend::Sqlite => {
            format!("CASE WHEN typeof({c}) = 'blob' THEN hex({c}) ELSE CAST({c} AS TEXT) END")
        }
    };
    let list: Vec<String> = cols.split(", ").map(text).collect();
    let sep = " || '|' || ";
    let nonzero = if table == "attribution_credits" || table == "lead_timings" {
        "1 = 1".to_owned()
    } else if table == "stage_changes" {
        "opportunity_id IS NOT NULL".to_owned()
    } else if table == "lead_timing_rollup" {
        "n <> 0".to_owned()
    } else {
        "leads <> 0 OR mqls <> 0 OR sals <> 0 OR sqls <> 0 OR converted <> 0 OR opportunities <> 0 OR won <> 0 OR won_amount <> 0".to_owned()
    };
    let sql = format!(
        "SELECT {} AS r FROM {table} WHERE {nonzero} ORDER BY 1",
        list.iter()
            .map(|c| format!("COALESCE({c}, '-')"))
            .collect::<Vec<_>>()
            .join(sep)
    );
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "r").unwrap())
        .collect();
    out.sort();
    out
}

async fn snapshot(app: &TestApp) -> Vec<Vec<String>> {
    let counts = "leads, mqls, sals, sqls, converted, opportunities, won, won_amount";
    vec![
        dump(
            app,
            "lead_rollup",
            &format!("day, source, campaign_id, team_id, owner_id, {counts}"),
        )
        .await,
        dump(
            app,
            "lead_rollup_segment",
            &format!("day, segment, is_target, {counts}"),
        )
        .await,
        dump(
            app,
            "attribution_credits",
            "opportunity_id, model, closed_at, campaign_id, d, units, shares",
        )
        .await,
        dump(
            app,
            "lead_rollup_bi",
            &format!("day, source, campaign_id, team_id, segment, {counts}"),
        )
        .await,
        dump(
            app,
            "lead_rollup_closed_loop",
            &format!("day, source, campaign_id, segment, {counts}"),
        )
        .await,
        dump(
            app,
            "lead_timings",
            "lead_id, metric, created_at, bucket, hours",
        )
        .await,
        dump(app, "lead_timing_rollup", "metric, month, bucket, n").await,
        // Each opportunity change's `until_at`, the time of the next one.
        dump(app, "stage_changes", "id, until_at").await,
    ]
}

/// Each lead's history is a chain, and its kept first-entry times are the
/// first entries of that history.
async fn check_histories(app: &TestApp) {
    let db = app.db();
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT lead_id, from_stage, to_stage, at FROM stage_changes WHERE lead_id IS NOT NULL ORDER BY lead_id, at, id",
        ))
        .await
        .unwrap();
    type Entry = (Option<String>, String, chrono::DateTime<chrono::Utc>);
    let mut by_lead: BTreeMap<uuid::Uuid, Vec<Entry>> = BTreeMap::new();
    for r in rows {
        by_lead
            .entry(r.try_get("", "lead_id").unwrap())
            .or_default()
            .push((
                r.try_get("", "from_stage").unwrap(),
                r.try_get("", "to_stage").unwrap(),
                r.try_get("", "at").unwrap(),
            ));
    }
    let leads = entity::lead::Entity::find().all(db).await.unwrap();
    assert!(!leads.is_empty());
    for lead in leads {
        let history = &by_lead[&lead.id];
        assert_eq!(
            history[0].0, None,
            "lead {}: first entry has a from",
            lead.id
        );
        for pair in history.windows(2) {
            assert_eq!(
                pair[1].0.as_deref(),
                Some(pair[0].1.as_str()),
                "lead {}: history is not a chain: {history:?}",
                lead.id
            );
        }
        assert_eq!(
            lead.stage.as_str(),
            history.last().unwrap().1,
            "lead {}: stage is not the last entry",
            lead.id
        );
        let first = |stages: &[&str]| {
            history
                .iter()
                .filter(|(_, to, _)| stages.contains(&to.as_str()))
                .map(|(_, _, at)| *at)
                .min()
        };
        let ms = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.timestamp_micros());
        assert_eq!(
            ms(lead.mql_at),
            ms(first(&["MQL", "SAL", "SQL", "CONVERTED"])),
            "lead {}: mqlAt",
            lead.id
        );
        assert_eq!(
            ms(lead.sal_at),
            ms(first(&["SAL", "SQL", "CONVERTED"])),
            "lead {}: salAt",
            lead.id
        );
        assert_eq!(
            ms(lead.sql_at),
            ms(first(&["SQL", "CONVERTED"])),
            "lead {}: sqlAt",
            lead.id
        );
        assert_eq!(
            ms(lead.converted_at),
            ms(first(&["CONVERTED"])),
            "lead {}: convertedAt",
            lead.id
        );
    }
}

db_test!(
    concurrent_writers_keep_every_record_and_rollup_right,
    |app| async move {
        let f = Arc::new(fixture(app).await);
        let token = app.admin_token();
        let until = Instant::now() + Duration::from_secs(6);
        let mut tasks = Vec::new();
        for n in 0..WRITERS {
            let (f, token) = (f.clone(), token.clone());
            tasks.push(async move { writer(app, &token, &f, n, until).await });
        }
        let results = futures_util::future::join_all(tasks).await;
        let mut seen = Seen::new();
        for s in results {
            for (k, v) in s {
                *seen.entry(k).or_default() += v;
            }
        }
        eprintln!("{:?}: {seen:?}", app.backend);
        let ok = seen.get("OK").copied().unwrap_or(0);
        assert!(ok > 50, "too few writes got through: {seen:?}");
        for code in seen.keys() {
            assert!(
                ["OK", "BAD_USER_INPUT", "CONFLICT"].contains(&code.as_str()),
                "a client saw {code}: {seen:?}"
            );
        }
        check_histories(app).await;
        let kept = snapshot(app).await;
        api::metrics::rollups::rebuild(app.db()).await.unwrap();
        let rebuilt = snapshot(app).await;
        for (i, name) in [
            "lead_rollup",
            "lead_rollup_segment",
            "attribution_credits",
            "lead_rollup_bi",
            "lead_rollup_closed_loop",
            "lead_timings",
            "lead_timing_rollup",
            "stage_changes",
        ]
        .iter()
        .enumerate()
        {
            assert!(!rebuilt[i].is_empty(), "{name} is empty");
            assert_eq!(kept[i], rebuilt[i], "{name} differs from a rebuild");
        }
    }
);
