//! Property test: every metric over a generated dataset (`lockstep seed`)
//! equals a plain-Rust reference computed here from all the rows, straight
//! from the definitions in docs/metrics.md — on SQLite and on PostgreSQL.
//!
//! The reference reads the stage history itself (not the first-entry times
//! the leads service keeps on each lead), so it also checks those.

use crate::db_test;
use crate::harness::*;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use entity::enums::*;
use entity::{account, campaign, lead, opportunity, stage_change, touchpoint, user};
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use tools::seed::{SeedOptions, anchor, seed};
use uuid::Uuid;

/// All the rows, as plain Rust values.
struct Rows {
    accounts: HashMap<Uuid, account::Model>,
    campaigns: HashMap<Uuid, campaign::Model>,
    users: HashMap<Uuid, user::Model>,
    leads: Vec<lead::Model>,
    lead_by_id: HashMap<Uuid, lead::Model>,
    opps: Vec<opportunity::Model>,
    opp_by_id: HashMap<Uuid, opportunity::Model>,
    /// Per lead, its touchpoints ordered by (occurred_at, id).
    touches: HashMap<Uuid, Vec<touchpoint::Model>>,
    /// Per lead, its stage changes.
    changes: HashMap<Uuid, Vec<stage_change::Model>>,
    /// Per opportunity, its stage changes.
    opp_changes: HashMap<Uuid, Vec<stage_change::Model>>,
}

async fn load(app: &TestApp) -> Rows {
    let db = app.db();
    let leads = lead::Entity::find().all(db).await.unwrap();
    let opps = opportunity::Entity::find().all(db).await.unwrap();
    let mut touches: HashMap<Uuid, Vec<touchpoint::Model>> = HashMap::new();
    for t in touchpoint::Entity::find().all(db).await.unwrap() {
        touches.entry(t.lead_id).or_default().push(t);
    }
    for v in touches.values_mut() {
        v.sort_by(|a, b| a.occurred_at.cmp(&b.occurred_at).then(a.id.cmp(&b.id)));
    }
    let mut changes: HashMap<Uuid, Vec<stage_change::Model>> = HashMap::new();
    let mut opp_changes: HashMap<Uuid, Vec<stage_change::Model>> = HashMap::new();
    for c in stage_change::Entity::find().all(db).await.unwrap() {
        if let Some(l) = c.lead_id {
            changes.entry(l).or_default().push(c);
        } else if let Some(o) = c.opportunity_id {
            opp_changes.entry(o).or_default().push(c);
        }
    }
    Rows {
        accounts: account::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.id, a))
            .collect(),
        campaigns: campaign::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c))
            .collect(),
        users: user::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.id, u))
            .collect(),
        lead_by_id: leads.iter().map(|l| (l.id, l.clone())).collect(),
        opp_by_id: opps.iter().map(|o| (o.id, o.clone())).collect(),
        leads,
        opps,
        touches,
        changes,
        opp_changes,
    }
}

/// The filters exercised (a subset of `MetricFilter`, each with its own reading).
#[derive(Clone, Copy, Default, Debug)]
struct Filter {
    segment: Option<Segment>,
    source: Option<Channel>,
    team: Option<Uuid>,
    is_target: Option<bool>,
}

impl Filter {
    fn gql(&self) -> Value {
        let mut f = serde_json::Map::new();
        if let Some(s) = self.segment {
            f.insert("segment".into(), json!(s.as_str()));
        }
        if let Some(s) = self.source {
            f.insert("source".into(), json!(s.as_str()));
        }
        if let Some(t) = self.team {
            f.insert("teamId".into(), json!(t.to_string()));
        }
        if let Some(t) = self.is_target {
            f.insert("isTarget".into(), json!(t));
        }
        Value::Object(f)
    }
}

#[derive(Clone, Copy)]
struct Period {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Period {
    fn has(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }
}

impl Rows {
    /// Lead metrics: segment from the lead's account, team is the lead's team.
    fn lead_ok(&self, l: &lead::Model, f: &Filter) -> bool {
        if let Some(s) = f.segment {
            let seg = l
                .account_id
                .and_then(|a| self.accounts.get(&a))
                .map(|a| a.segment);
            if seg != Some(s) {
                return false;
            }
        }
        // Leads without an account are neither targets nor not.
        if let Some(t) = f.is_target {
            let target = l
                .account_id
                .and_then(|a| self.accounts.get(&a))
                .map(|a| a.is_target);
            if target != Some(t) {
                return false;
            }
        }
        f.source.is_none_or(|s| l.source == s) && f.team.is_none_or(|t| l.team_id == Some(t))
    }

    /// Opportunity metrics: segment from the account, source from the
    /// originating lead (none without one), team from the owner's team.
    fn opp_ok(&self, o: &opportunity::Model, f: &Filter) -> bool {
        if let Some(s) = f.segment
            && self.accounts.get(&o.account_id).map(|a| a.segment) != Some(s)
        {
            return false;
        }
        if let Some(t) = f.is_target
            && self.accounts.get(&o.account_id).map(|a| a.is_target) != Some(t)
        {
            return false;
        }
        if let Some(s) = f.source {
            let src = o
                .lead_id
                .and_then(|l| self.lead_by_id.get(&l))
                .map(|l| l.source);
            if src != Some(s) {
                return false;
            }
        }
        if let Some(t) = f.team {
            let team = o
                .owner_id
                .and_then(|u| self.users.get(&u))
                .and_then(|u| u.team_id);
            if team != Some(t) {
                return false;
            }
        }
        true
    }

    fn cohort(&self, p: &Period, f: &Filter) -> Vec<&lead::Model> {
        self.leads
            .iter()
            .filter(|l| p.has(l.created_at) && self.lead_ok(l, f))
            .collect()
    }

    /// First entry into a main-path stage of rank ≥ `rank` (MQL = 2 … CONVERTED = 5).
    fn entry(&self, lead: Uuid, rank: u8) -> Option<DateTime<Utc>> {
        self.changes
            .get(&lead)?
            .iter()
            .filter(|c| {
                LeadStage::ALL
                    .iter()
                    .find(|s| s.as_str() == c.to_stage)
                    .and_then(|s| s.rank())
                    .is_some_and(|r| r >= rank)
            })
            .map(|c| c.at)
            .min()
    }

    /// First entry into MQL itself (W_SHAPED's reading).
    fn mql_itself(&self, lead: Uuid) -> Option<DateTime<Utc>> {
        self.first_entry(lead, "MQL")
    }

    /// First entry into `stage` itself.
    fn first_entry(&self, lead: Uuid, stage: &str) -> Option<DateTime<Utc>> {
        self.changes
            .get(&lead)?
            .iter()
            .filter(|c| c.to_stage == stage)
            .map(|c| c.at)
            .min()
    }

    /// The stage an opportunity was in at `t` (its last change before `t`,
    /// by time then id); one without any history, as it stands.
    fn opp_stage_at(&self, o: &opportunity::Model, t: DateTime<Utc>) -> Option<String> {
        if o.created_at >= t {
            return None;
        }
        match self.opp_changes.get(&o.id) {
            None => Some(o.stage.as_str().to_owned()),
            Some(cs) => cs
                .iter()
                .filter(|c| c.at < t)
                .max_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)))
                .map(|c| c.to_stage.clone()),
        }
    }

    /// The open pipeline at `t`: (stage, opportunity) pairs.
    fn pipeline_at(&self, t: DateTime<Utc>, f: &Filter) -> Vec<(String, &opportunity::Model)> {
        self.opps
            .iter()
            .filter(|o| self.opp_ok(o, f))
            .filter_map(|o| {
                self.opp_stage_at(o, t)
                    .filter(|s| ["DISCOVERY", "PROPOSAL", "NEGOTIATION"].contains(&s.as_str()))
                    .map(|s| (s, o))
            })
            .collect()
    }

    /// Account metrics: segment, target flag from the account, team from
    /// its owner's team, source from any of its leads.
    fn account_ok(&self, a: &account::Model, f: &Filter) -> bool {
        f.segment.is_none_or(|s| a.segment == s)
            && f.is_target.is_none_or(|t| a.is_target == t)
            && f.team.is_none_or(|t| {
                a.owner_id
                    .and_then(|u| self.users.get(&u))
                    .and_then(|u| u.team_id)
                    == Some(t)
            })
            && f.source.is_none_or(|s| {
                self.leads
                    .iter()
                    .any(|l| l.account_id == Some(a.id) && l.source == s)
            })
    }

    fn won_opp_of(&self, l: &lead::Model) -> Option<&opportunity::Model> {
        l.converted_opportunity_id
            .and_then(|o| self.opp_by_id.get(&o))
            .filter(|o| o.stage == OpportunityStage::ClosedWon)
    }

    fn closed_in(&self, p: &Period, f: &Filter) -> Vec<&opportunity::Model> {
        self.opps
            .iter()
            .filter(|o| o.closed_at.is_some_and(|t| p.has(t)) && self.opp_ok(o, f))
            .collect()
    }
}

fn hours(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap() as f64 / 3_600_000_000.0
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b != 0).then(|| a as f64 / b as f64)
}

/// Storage units (1/10,000) as an exact decimal amount.
fn units(u: i64) -> Decimal {
    Decimal::from(u) / Decimal::from(10_000)
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp(2)
}

#[track_caller]
fn same_f64(what: &str, got: &Value, want: Option<f64>) {
    match want {
        None => assert!(got.is_null(), "{what}: want null, got {got}"),
        Some(w) => {
            let g = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: want {w}, got {got}"));
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{what}: want {w}, got {g}"
            );
        }
    }
}

#[track_caller]
fn same_money(what: &str, got: &Value, want: Option<Decimal>) {
    match want {
        None => assert!(got.is_null(), "{what}: want null, got {got}"),
        Some(w) => {
            let g = got
                .as_str()
                .and_then(|s| Decimal::from_str(s).ok())
                .unwrap_or_else(|| panic!("{what}: want {w}, got {got}"));
            assert_eq!(g, cents(w), "{what}");
        }
    }
}

const QUERY: &str = r#"
query($period: PeriodInput!, $filter: MetricFilterInput) {
  metrics(period: $period, filter: $filter) {
    funnel { stages { stage reached conversion medianHoursToNext } inquiryToWon }
    winRate averageDealSize wonRevenue salesCycle retention
    speedToLead { medianHours touched untouched }
    pipeline { total stages { stage count amount } }
    bySource: closedLoop(groupBy: SOURCE) { ...row }
    byCampaign: closedLoop(groupBy: CAMPAIGN) { ...row }
    byKind: closedLoop(groupBy: CAMPAIGN_KIND) { ...row }
    bySegment: closedLoop(groupBy: SEGMENT) { ...row }
    first: attribution(model: FIRST_TOUCH) { ...credit }
    last: attribution(model: LAST_TOUCH) { ...credit }
    linear: attribution(model: LINEAR) { ...credit }
    w: attribution(model: W_SHAPED) { ...credit }
    leadsMonthly: series(metric: LEADS_CREATED, interval: MONTH) { start value amount }
    leadsWeekly: series(metric: LEADS_CREATED, interval: WEEK) { start value amount }
    mqlsMonthly: series(metric: MQLS, interval: MONTH) { start value amount }
    oppsQuarterly: series(metric: OPPORTUNITIES_CREATED, interval: QUARTER) { start value amount }
    pipelineMonthly: series(metric: PIPELINE_CREATED, interval: MONTH) { start value amount }
    openPipelineMonthly: series(metric: PIPELINE, interval: MONTH) { start value amount }
    wonMonthly: series(metric: WON_REVENUE, interval: MONTH) { start value amount }
    winRateMonthly: series(metric: WIN_RATE, interval: MONTH) { start value amount }
  }
}
fragment row on ClosedLoopRow { key leads mqls opportunities won wonRevenue closeRate avgDealSize medianCycleDays }
fragment credit on Attribution { total rows { campaignId unattributed revenue opportunities } }
"#;

fn check_funnel(r: &Rows, p: &Period, f: &Filter, got: &Value) {
    let cohort = r.cohort(p, f);
    // t1 INQUIRY (creation) … t5 OPPORTUNITY (converted), t6 WON: "or a later stage".
    let times: Vec<[Option<DateTime<Utc>>; 6]> = cohort
        .iter()
        .map(|l| {
            [
                Some(l.created_at),
                r.entry(l.id, 2),
                r.entry(l.id, 3),
                r.entry(l.id, 4),
                r.entry(l.id, 5),
                r.won_opp_of(l).and_then(|o| o.closed_at),
            ]
        })
        .collect();
    let reached: Vec<i64> = (0..6)
        .map(|k| times.iter().filter(|t| t[k].is_some()).count() as i64)
        .collect();
    // The medians time only the stages a lead entered itself.
    let itself: Vec<[Option<DateTime<Utc>>; 6]> = cohort
        .iter()
        .map(|l| {
            [
                r.first_entry(l.id, "INQUIRY"),
                r.first_entry(l.id, "MQL"),
                r.first_entry(l.id, "SAL"),
                r.first_entry(l.id, "SQL"),
                r.first_entry(l.id, "CONVERTED"),
                r.won_opp_of(l).and_then(|o| o.closed_at),
            ]
        })
        .collect();
    let stages = got["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6);
    for k in 0..6 {
        let s = &stages[k];
        assert_eq!(
            s["reached"],
            json!(reached[k]),
            "{f:?} reached {}",
            s["stage"]
        );
        if k < 5 {
            same_f64(
                "conversion",
                &s["conversion"],
                ratio(reached[k + 1], reached[k]),
            );
            let m = median(
                itself
                    .iter()
                    .filter_map(|t| Some(hours(t[k]?, t[k + 1]?)))
                    .filter(|h| *h >= 0.0)
                    .collect(),
            );
            same_f64(
                &format!("{f:?} median hours {}", s["stage"]),
                &s["medianHoursToNext"],
                m,
            );
        }
    }
    same_f64(
        "inquiryToWon",
        &got["inquiryToWon"],
        ratio(reached[5], reached[0]),
    );
    assert!(reached[0] > 0, "the period holds leads");
}

fn check_outcomes(r: &Rows, p: &Period, f: &Filter, got: &Value) {
    let closed = r.closed_in(p, f);
    let won: Vec<_> = closed
        .iter()
        .filter(|o| o.stage == OpportunityStage::ClosedWon)
        .collect();
    let lost = closed
        .iter()
        .filter(|o| o.stage == OpportunityStage::ClosedLost)
        .count() as i64;
    let won_units: i64 = won.iter().map(|o| o.amount).sum();
    same_f64(
        "winRate",
        &got["winRate"],
        ratio(won.len() as i64, won.len() as i64 + lost),
    );
    same_money("wonRevenue", &got["wonRevenue"], Some(units(won_units)));
    same_money(
        "averageDealSize",
        &got["averageDealSize"],
        (!won.is_empty()).then(|| units(won_units) / Decimal::from(won.len())),
    );
    let cycle = median(
        won.iter()
            .map(|o| hours(o.created_at, o.closed_at.unwrap()) / 24.0)
            .collect(),
    );
    same_f64("salesCycle", &got["salesCycle"], cycle);
}

fn check_speed_and_retention(r: &Rows, p: &Period, f: &Filter, got: &Value) {
    let cohort = r.cohort(p, f);
    let touched: Vec<f64> = cohort
        .iter()
        .filter_map(|l| Some(hours(l.created_at, l.first_touch_at?)))
        .collect();
    let s = &got["speedToLead"];
    assert_eq!(s["touched"], json!(touched.len()));
    assert_eq!(s["untouched"], json!(cohort.len() - touched.len()));
    same_f64("speedToLead", &s["medianHours"], median(touched));

    // Retention is about accounts: every filter reads the account (team:
    // its owner's; source: any of its leads).
    let base: Vec<_> = r
        .accounts
        .values()
        .filter(|a| r.account_ok(a, f))
        .filter(|a| {
            a.became_customer_at.is_some_and(|b| b <= p.from)
                && a.churned_at.is_none_or(|c| c > p.from)
        })
        .collect();
    let retained = base
        .iter()
        .filter(|a| a.churned_at.is_none_or(|c| c >= p.to))
        .count() as i64;
    same_f64(
        "retention",
        &got["retention"],
        ratio(retained, base.len() as i64),
    );
}

fn check_pipeline(r: &Rows, p: &Period, f: &Filter, got: &Value) {
    // As it stood at the period's end, by the stage its history gives.
    let open = r.pipeline_at(p.to, f);
    let total: i64 = open.iter().map(|(_, o)| o.amount).sum();
    same_money("pipeline total", &got["total"], Some(units(total)));
    for s in got["stages"].as_array().unwrap() {
        let stage = s["stage"].as_str().unwrap();
        let these: Vec<_> = open
            .iter()
            .filter(|(s, _)| s == stage)
            .map(|(_, o)| o)
            .collect();
        assert_eq!(s["count"], json!(these.len()), "pipeline {stage}");
        let amount: i64 = these.iter().map(|o| o.amount).sum();
        same_money("pipeline amount", &s["amount"], Some(units(amount)));
    }
}

fn check_closed_loop(r: &Rows, p: &Period, f: &Filter, group: &str, got: &Value) {
    #[derive(Default)]
    struct Acc {
        leads: i64,
        mqls: i64,
        opps: i64,
        won: i64,
        units: i64,
        cycles: Vec<f64>,
    }
    let mut want: BTreeMap<String, Acc> = BTreeMap::new();
    for l in r.cohort(p, f) {
        let key = match group {
            "SOURCE" => Some(l.source.as_str().to_owned()),
            "CAMPAIGN" => l.campaign_id.map(|c| c.to_string()),
            "CAMPAIGN_KIND" => l
                .campaign_id
                .and_then(|c| r.campaigns.get(&c))
                .map(|c| c.kind.as_str().to_owned()),
            _ => l
                .account_id
                .and_then(|a| r.accounts.get(&a))
                .map(|a| a.segment.as_str().to_owned()),
        }
        .unwrap_or_else(|| "NONE".to_owned());
        let acc = want.entry(key).or_default();
        acc.leads += 1;
        acc.mqls += i64::from(r.entry(l.id, 2).is_some());
        acc.opps += i64::from(l.converted_opportunity_id.is_some());
        if let Some(o) = r.won_opp_of(l) {
            acc.won += 1;
            acc.units += o.amount;
            acc.cycles
                .push(hours(o.created_at, o.closed_at.unwrap()) / 24.0);
        }
    }
    let rows = got.as_array().unwrap();
    assert_eq!(rows.len(), want.len(), "{group} {f:?}: rows {got:#}");
    for row in rows {
        let key = row["key"].as_str().unwrap();
        let w = want
            .remove(key)
            .unwrap_or_else(|| panic!("{group}: unexpected row {key}"));
        let what = format!("closedLoop {group} {key} {f:?}");
        assert_eq!(row["leads"], json!(w.leads), "{what}");
        assert_eq!(row["mqls"], json!(w.mqls), "{what}");
        assert_eq!(row["opportunities"], json!(w.opps), "{what}");
        assert_eq!(row["won"], json!(w.won), "{what}");
        same_money(&what, &row["wonRevenue"], Some(units(w.units)));
        same_f64(&what, &row["closeRate"], ratio(w.won, w.leads));
        same_money(
            &what,
            &row["avgDealSize"],
            (w.won != 0).then(|| units(w.units) / Decimal::from(w.won)),
        );
        same_f64(&what, &row["medianCycleDays"], median(w.cycles));
    }
}

fn check_attribution(r: &Rows, p: &Period, f: &Filter, model: &str, got: &Value) {
    // Credit per campaign (None = unattributed): exact revenue and opportunity share.
    let mut want: HashMap<Option<Uuid>, (Decimal, f64)> = HashMap::new();
    let mut total = Decimal::ZERO;
    for o in r.closed_in(p, f) {
        if o.stage != OpportunityStage::ClosedWon {
            continue;
        }
        let amount = units(o.amount);
        total += amount;
        let touches: Vec<&touchpoint::Model> = o
            .lead_id
            .and_then(|l| r.touches.get(&l))
            .map(|ts| ts.iter().filter(|t| t.occurred_at < o.created_at).collect())
            .unwrap_or_default();
        let n = touches.len();
        if n == 0 {
            let e = want.entry(None).or_default();
            e.0 += amount;
            e.1 += 1.0;
            continue;
        }
        // Shares in tenths of the amount, per touch index.
        let mut weights = vec![Decimal::ZERO; n];
        match model {
            "FIRST_TOUCH" => weights[0] = Decimal::ONE,
            "LAST_TOUCH" => weights[n - 1] = Decimal::ONE,
            "LINEAR" => weights
                .iter_mut()
                .for_each(|w| *w = Decimal::ONE / Decimal::from(n)),
            _ => {
                let mql = o.lead_id.and_then(|l| r.mql_itself(l));
                let m = mql
                    .and_then(|at| touches.iter().rposition(|t| t.occurred_at <= at))
                    .unwrap_or(n - 1);
                let tenth = Decimal::new(1, 1);
                let three = Decimal::new(3, 1);
                weights[0] += three;
                weights[m] += three;
                weights[n - 1] += three;
                let rest: Vec<usize> = (0..n).filter(|&i| i != 0 && i != m && i != n - 1).collect();
                if rest.is_empty() {
                    weights[n - 1] += tenth;
                } else {
                    for i in &rest {
                        weights[*i] += tenth / Decimal::from(rest.len());
                    }
                }
            }
        }
        for (t, w) in touches.iter().zip(weights) {
            if w.is_zero() {
                continue;
            }
            let e = want.entry(Some(t.campaign_id)).or_default();
            e.0 += amount * w;
            e.1 += f64::try_from(w).unwrap();
        }
    }
    let what = format!("attribution {model} {f:?}");
    same_money(&what, &got["total"], Some(total));
    let rows = got["rows"].as_array().unwrap();
    // What a BI tool sums: the rounded rows add up to the total exactly.
    let summed: Decimal = rows
        .iter()
        .map(|row| Decimal::from_str(row["revenue"].as_str().unwrap()).unwrap())
        .sum();
    assert_eq!(
        summed,
        Decimal::from_str(got["total"].as_str().unwrap()).unwrap(),
        "{what}: rows sum to the total"
    );
    assert_eq!(rows.len(), want.len(), "{what}: {got:#}");
    for row in rows {
        let key = row["campaignId"]
            .as_str()
            .map(|s| Uuid::parse_str(s).unwrap());
        assert_eq!(row["unattributed"], json!(key.is_none()));
        let (revenue, share) = want
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: unexpected row {row}"));
        // Largest remainder: the exact credit rounded down or up, less than a cent away.
        let g = Decimal::from_str(row["revenue"].as_str().unwrap()).unwrap();
        assert!(
            (g - revenue).abs() < Decimal::new(1, 2),
            "{what} {key:?}: want {revenue}, got {g}"
        );
        same_f64(&what, &row["opportunities"], Some(*share));
    }
}

fn floor(interval: &str, t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    match interval {
        "WEEK" => d - Duration::days(d.weekday().num_days_from_monday().into()),
        "MONTH" => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap(),
        _ => NaiveDate::from_ymd_opt(d.year(), (d.month() - 1) / 3 * 3 + 1, 1).unwrap(),
    }
}

fn check_series(r: &Rows, p: &Period, f: &Filter, metric: &str, interval: &str, got: &Value) {
    // (count, denominator, units) per bucket.
    let mut buckets: BTreeMap<NaiveDate, (i64, i64, i64)> = BTreeMap::new();
    let mut add = |t: DateTime<Utc>, n: i64, d: i64, u: i64| {
        if p.has(t) {
            let b = buckets.entry(floor(interval, t)).or_default();
            b.0 += n;
            b.1 += d;
            b.2 += u;
        }
    };
    match metric {
        "LEADS_CREATED" => r
            .leads
            .iter()
            .filter(|l| r.lead_ok(l, f))
            .for_each(|l| add(l.created_at, 1, 0, 0)),
        "MQLS" => r.leads.iter().filter(|l| r.lead_ok(l, f)).for_each(|l| {
            if let Some(t) = r.entry(l.id, 2) {
                add(t, 1, 0, 0)
            }
        }),
        "OPPORTUNITIES_CREATED" | "PIPELINE_CREATED" => r
            .opps
            .iter()
            .filter(|o| r.opp_ok(o, f))
            .for_each(|o| add(o.created_at, 1, 0, o.amount)),
        _ => r.opps.iter().filter(|o| r.opp_ok(o, f)).for_each(|o| {
            if let Some(t) = o.closed_at {
                let won = o.stage == OpportunityStage::ClosedWon;
                add(t, i64::from(won), 1, if won { o.amount } else { 0 });
            }
        }),
    }
    let points = got.as_array().unwrap();
    let mut start = floor(interval, p.from);
    let next = |start: NaiveDate| match interval {
        "WEEK" => start + Duration::days(7),
        "MONTH" => start.checked_add_months(chrono::Months::new(1)).unwrap(),
        _ => start.checked_add_months(chrono::Months::new(3)).unwrap(),
    };
    assert!(!points.is_empty());
    for point in points {
        let at: DateTime<Utc> = point["start"].as_str().unwrap().parse().unwrap();
        assert_eq!(at.date_naive(), start, "{metric} {interval}: bucket starts");
        let (n, d, u) = buckets.get(&start).copied().unwrap_or_default();
        let what = format!("{metric} {interval} {start} {f:?}");
        match metric {
            "LEADS_CREATED" | "MQLS" | "OPPORTUNITIES_CREATED" => {
                same_f64(&what, &point["value"], Some(n as f64))
            }
            "PIPELINE_CREATED" | "WON_REVENUE" => {
                same_money(&what, &point["amount"], Some(units(u)))
            }
            "PIPELINE" => {
                // As it stood at the bucket's end, or the period's.
                let end = next(start)
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc()
                    .min(p.to);
                let open = r.pipeline_at(end, f);
                same_f64(&what, &point["value"], Some(open.len() as f64));
                let units_open: i64 = open.iter().map(|(_, o)| o.amount).sum();
                same_money(&what, &point["amount"], Some(units(units_open)));
            }
            _ => same_f64(&what, &point["value"], ratio(n, d)),
        }
        start = next(start);
    }
    assert!(
        start.and_hms_opt(0, 0, 0).unwrap().and_utc() >= p.to,
        "{metric} {interval}: buckets cover the period"
    );
}

/// Every metric of `QUERY`, for each period and filter, against the reference.
async fn check_runs(app: &TestApp, rows: &Rows, runs: Vec<(Period, Filter)>) {
    for (p, f) in runs {
        let resp = app
            .admin(
                QUERY,
                json!({
                    "period": { "from": p.from, "to": p.to },
                    "filter": f.gql(),
                }),
            )
            .await;
        let m = &data(&resp)["metrics"];
        check_funnel(rows, &p, &f, &m["funnel"]);
        check_outcomes(rows, &p, &f, m);
        check_speed_and_retention(rows, &p, &f, m);
        check_pipeline(rows, &p, &f, &m["pipeline"]);
        // The server reads the pipeline by walking only the histories of
        // the opportunities that moved since the end, or every history when
        // many moved (more than these data hold): both ways agree.
        let period = api::metrics::Period::new(p.from, p.to).unwrap();
        let filter = api::metrics::MetricFilter {
            segment: f.segment,
            source: f.source,
            team_id: f.team,
            is_target: f.is_target,
            ..Default::default()
        };
        let walk = |w| api::metrics::pipeline_walking(app.db(), &period, &filter, w);
        let (all, moved) = (
            walk(api::metrics::Walk::Everything).await.unwrap(),
            walk(api::metrics::Walk::Moved).await.unwrap(),
        );
        assert_eq!(all, moved, "pipeline at {} {f:?}", p.to);
        for (alias, group) in [
            ("bySource", "SOURCE"),
            ("byCampaign", "CAMPAIGN"),
            ("byKind", "CAMPAIGN_KIND"),
            ("bySegment", "SEGMENT"),
        ] {
            check_closed_loop(rows, &p, &f, group, &m[alias]);
        }
        for (alias, model) in [
            ("first", "FIRST_TOUCH"),
            ("last", "LAST_TOUCH"),
            ("linear", "LINEAR"),
            ("w", "W_SHAPED"),
        ] {
            check_attribution(rows, &p, &f, model, &m[alias]);
        }
        for (alias, metric, interval) in [
            ("leadsMonthly", "LEADS_CREATED", "MONTH"),
            ("leadsWeekly", "LEADS_CREATED", "WEEK"),
            ("mqlsMonthly", "MQLS", "MONTH"),
            ("oppsQuarterly", "OPPORTUNITIES_CREATED", "QUARTER"),
            ("pipelineMonthly", "PIPELINE_CREATED", "MONTH"),
            ("openPipelineMonthly", "PIPELINE", "MONTH"),
            ("wonMonthly", "WON_REVENUE", "MONTH"),
            ("winRateMonthly", "WIN_RATE", "MONTH"),
        ] {
            check_series(rows, &p, &f, metric, interval, &m[alias]);
        }
    }
}

db_test!(metrics_match_reference_on_seeded_data, |app| async move {
    let report = seed(
        app.db(),
        &SeedOptions {
            leads: 1_500,
            seed: 7,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert!(report.opportunities > 50, "{report:?}");
    let rows = load(app).await;
    let team = rows.leads.iter().find_map(|l| l.team_id).unwrap();
    let year = Period {
        from: anchor() - Duration::days(365),
        to: anchor(),
    };
    let quarter = Period {
        from: anchor() - Duration::days(120),
        to: anchor() - Duration::days(30),
    };
    let filters = [
        Filter::default(),
        Filter {
            segment: Some(Segment::Enterprise),
            ..Filter::default()
        },
        Filter {
            source: Some(Channel::Paid),
            ..Filter::default()
        },
        Filter {
            team: Some(team),
            ..Filter::default()
        },
        Filter {
            is_target: Some(false),
            ..Filter::default()
        },
    ];
    // Bounds inside a day: whole days come from the rollups, the two partial
    // days at the ends from the leads themselves.
    let ragged = Period {
        from: anchor() - Duration::days(200) + Duration::minutes(7 * 60 + 13),
        to: anchor() - Duration::days(20) - Duration::minutes(5 * 60 + 1),
    };
    let mut runs = vec![
        (year, Filter::default()),
        (quarter, Filter::default()),
        (ragged, Filter::default()),
        (
            ragged,
            Filter {
                team: Some(team),
                ..Filter::default()
            },
        ),
    ];
    runs.extend(filters.iter().skip(1).map(|f| (year, *f)));
    check_runs(app, &rows, runs).await;
});

/// A deterministic choice (xorshift).
struct Pick(u64);

impl Pick {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 1) as usize
    }
}

async fn new_id(app: &TestApp, query: &str, vars: Value) -> String {
    let resp = app.admin(query, vars).await;
    let d = data(&resp);
    let field = d.as_object().unwrap().keys().next().unwrap().clone();
    d[&field]["id"]
        .as_str()
        .or_else(|| d[&field]["opportunity"]["id"].as_str())
        .unwrap()
        .to_owned()
}

// The same properties on data written only through the API's mutations
// (backfilled times, as an import would), so the rollups checked are the
// ones the writes kept, not a rebuild's.
db_test!(
    metrics_match_reference_on_data_written_through_the_api,
    |app| async move {
        let mut pick = Pick(0x5DEE_CE66_D1CE_4E5B);
        let now = Utc::now() - Duration::minutes(5);
        let mut teams = Vec::new();
        for (i, function) in ["MARKETING", "SALES"].iter().enumerate() {
            teams.push(
            new_id(
                app,
                "mutation($n: String!, $f: TeamFunction!) { createTeam(input: {name: $n, function: $f}) { id } }",
                json!({"n": format!("team {i}"), "f": function}),
            )
            .await,
        );
        }
        let mut owners = Vec::new();
        for i in 0..3 {
            owners.push(
            new_id(
                app,
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({"i": {"email": format!("rep{i}@example.com"), "name": format!("Rep {i}"), "role": "MEMBER"}}),
            )
            .await,
        );
        }
        let mut campaigns = Vec::new();
        for (i, kind) in ["WEBINAR", "EVENT", "AD"].iter().enumerate() {
            campaigns.push(
            new_id(
                app,
                "mutation($i: CampaignInput!) { createCampaign(input: $i) { id } }",
                json!({"i": {"name": format!("campaign {i}"), "channel": "EMAIL", "kind": kind, "startsAt": "2025-01-01T00:00:00Z"}}),
            )
            .await,
        );
        }
        let mut accounts = Vec::new();
        for (i, (segment, target)) in [("SMB", false), ("ENTERPRISE", true), ("MID_MARKET", false)]
            .iter()
            .enumerate()
        {
            accounts.push(
            new_id(
                app,
                "mutation($i: AccountInput!) { createAccount(input: $i) { id } }",
                json!({"i": {"name": format!("Account {i}"), "segment": segment, "isTarget": target}}),
            )
            .await,
        );
        }
        let sources = ["WEB", "PAID", "EVENT", "OUTBOUND"];
        let path = ["MQL", "SAL", "SQL"];
        for i in 0..90 {
            let created = now - Duration::days(40 + (pick.next() % 300) as i64);
            let account = (pick.next() % 4 < 3).then(|| accounts[pick.next() % 3].clone());
            let lead = new_id(
                app,
                "mutation($i: LeadInput!) { createLead(input: $i) { id } }",
                json!({"i": {
                    "email": format!("person{i}@example.org"),
                    "source": sources[pick.next() % 4],
                    "campaignId": campaigns[pick.next() % 3],
                    "ownerId": owners[pick.next() % 3],
                    "teamId": teams[pick.next() % 2],
                    "accountId": account,
                    "createdAt": created,
                }}),
            )
            .await;
            let mut at = created;
            for t in 0..(pick.next() % 3) {
                at += Duration::hours(1 + (pick.next() % 30) as i64);
                let resp = app
                .admin(
                    "mutation($i: TouchpointInput!) { recordTouchpoint(input: $i) { id } }",
                    json!({"i": {"leadId": lead, "campaignId": campaigns[(t + i) % 3], "occurredAt": at}}),
                )
                .await;
                data(&resp);
            }
            let reached = pick.next() % 5;
            for stage in path.iter().take(reached.min(3)) {
                at += Duration::hours(2 + (pick.next() % 70) as i64);
                let resp = app
                .admin(
                    "mutation($id: ID!, $to: LeadStage!, $at: DateTime) { changeLeadStage(id: $id, to: $to, at: $at) { id } }",
                    json!({"id": lead, "to": stage, "at": at}),
                )
                .await;
                data(&resp);
            }
            if reached == 1 && pick.next().is_multiple_of(2) {
                at += Duration::hours(5);
                let resp = app
                .admin(
                    "mutation($id: ID!, $at: DateTime) { changeLeadStage(id: $id, to: RECYCLED, at: $at) { id } }",
                    json!({"id": lead, "at": at}),
                )
                .await;
                data(&resp);
            }
            if reached >= 3 && account.is_some() {
                at += Duration::hours(3);
                let opp = new_id(
                app,
                "mutation($id: ID!, $a: Decimal!, $at: DateTime) { convertLead(id: $id, opportunity: {name: \"Deal\", amount: $a}, at: $at) { opportunity { id } } }",
                json!({"id": lead, "a": format!("{}.25", 1000 + pick.next() % 9000), "at": at}),
            )
            .await;
                at += Duration::days(1 + (pick.next() % 20) as i64);
                match pick.next() % 3 {
                    0 => {}
                    1 => {
                        let resp = app
                        .admin(
                            "mutation($id: ID!, $at: DateTime) { changeOpportunityStage(id: $id, to: CLOSED_LOST, lostReason: \"budget\", at: $at) { id } }",
                            json!({"id": opp, "at": at}),
                        )
                        .await;
                        data(&resp);
                    }
                    _ => {
                        let resp = app
                        .admin(
                            "mutation($id: ID!, $at: DateTime) { changeOpportunityStage(id: $id, to: CLOSED_WON, at: $at) { id } }",
                            json!({"id": opp, "at": at}),
                        )
                        .await;
                        data(&resp);
                        if pick.next().is_multiple_of(2) {
                            // A won deal's amount corrected afterwards.
                            let resp = app
                            .admin(
                                "mutation($id: ID!, $a: Decimal!) { updateOpportunity(id: $id, input: {amount: $a}) { id } }",
                                json!({"id": opp, "a": format!("{}.50", 500 + pick.next() % 5000)}),
                            )
                            .await;
                            data(&resp);
                        }
                    }
                }
            }
        }
        // An account changes segment and target flag after its leads came in.
        let resp = app
        .admin(
            "mutation($id: ID!) { updateAccount(id: $id, input: {segment: ENTERPRISE, isTarget: true}) { id } }",
            json!({"id": accounts[0]}),
        )
        .await;
        data(&resp);
        let rows = load(app).await;
        assert!(
            rows.opps
                .iter()
                .any(|o| o.stage == OpportunityStage::ClosedWon)
        );
        let team = Uuid::parse_str(&teams[0]).unwrap();
        let year = Period {
            from: now - Duration::days(365),
            to: now,
        };
        let ragged = Period {
            from: now - Duration::days(200) + Duration::minutes(7 * 60 + 13),
            to: now - Duration::days(20) - Duration::minutes(5 * 60 + 1),
        };
        let runs = vec![
            (year, Filter::default()),
            (ragged, Filter::default()),
            (
                year,
                Filter {
                    segment: Some(Segment::Enterprise),
                    ..Filter::default()
                },
            ),
            (
                ragged,
                Filter {
                    source: Some(Channel::Paid),
                    ..Filter::default()
                },
            ),
            (
                year,
                Filter {
                    team: Some(team),
                    ..Filter::default()
                },
            ),
            (
                year,
                Filter {
                    is_target: Some(true),
                    ..Filter::default()
                },
            ),
        ];
        check_runs(app, &rows, runs).await;
    }
);
