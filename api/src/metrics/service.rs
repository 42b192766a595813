//! Metric queries. Every aggregate runs in the database; Rust only turns a
//! handful of result rows into numbers (and divides exact sums as Decimals).

use super::sql::Sql;
use crate::error::{AppError, AppResult};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use entity::enums::{Channel, OpportunityStage, Segment};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult};
use uuid::Uuid;

/// A half-open period `[from, to)` in UTC.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> AppResult<Period> {
        if from >= to {
            return Err(AppError::bad_input(
                "period",
                "`period.from` must be before `period.to`",
            ));
        }
        Ok(Period { from, to })
    }
}

/// Filters shared by every metric (see DOMAIN.md, "Fine print").
#[derive(Debug, Clone, Default)]
pub struct MetricFilter {
    pub segment: Option<Segment>,
    pub source: Option<Channel>,
    pub campaign_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub account_ids: Vec<Uuid>,
    pub is_target: Option<bool>,
}

/// Lead metrics: segment and target from the lead's account, team is the lead's team.
fn lead_conditions(q: &mut Sql, f: &MetricFilter, l: &str) {
    if let Some(s) = f.segment {
        q.push(&format!(
            " AND {l}.account_id IN (SELECT id FROM accounts WHERE segment = "
        ))
        .bind(s.as_str())
        .push(")");
    }
    if let Some(t) = f.is_target {
        q.push(&format!(
            " AND {l}.account_id IN (SELECT id FROM accounts WHERE is_target = "
        ))
        .bind(t)
        .push(")");
    }
    if let Some(s) = f.source {
        q.push(&format!(" AND {l}.source = ")).bind(s.as_str());
    }
    if let Some(c) = f.campaign_id {
        q.push(&format!(" AND {l}.campaign_id = ")).bind(c);
    }
    if let Some(t) = f.team_id {
        q.push(&format!(" AND {l}.team_id = ")).bind(t);
    }
    if let Some(o) = f.owner_id {
        q.push(&format!(" AND {l}.owner_id = ")).bind(o);
    }
    if !f.account_ids.is_empty() {
        q.push(&format!(" AND {l}.account_id IN "))
            .bind_list(f.account_ids.iter().copied());
    }
}

/// Opportunity metrics: segment and target from the account, source and
/// campaign from the originating lead (none without a lead), team from the owner.
fn opp_conditions(q: &mut Sql, f: &MetricFilter, o: &str) {
    if let Some(s) = f.segment {
        q.push(&format!(
            " AND {o}.account_id IN (SELECT id FROM accounts WHERE segment = "
        ))
        .bind(s.as_str())
        .push(")");
    }
    if let Some(t) = f.is_target {
        q.push(&format!(
            " AND {o}.account_id IN (SELECT id FROM accounts WHERE is_target = "
        ))
        .bind(t)
        .push(")");
    }
    if let Some(s) = f.source {
        q.push(&format!(
            " AND {o}.lead_id IN (SELECT id FROM leads WHERE source = "
        ))
        .bind(s.as_str())
        .push(")");
    }
    if let Some(c) = f.campaign_id {
        q.push(&format!(
            " AND {o}.lead_id IN (SELECT id FROM leads WHERE campaign_id = "
        ))
        .bind(c)
        .push(")");
    }
    if let Some(t) = f.team_id {
        q.push(&format!(
            " AND {o}.owner_id IN (SELECT id FROM users WHERE team_id = "
        ))
        .bind(t)
        .push(")");
    }
    if let Some(id) = f.owner_id {
        q.push(&format!(" AND {o}.owner_id = ")).bind(id);
    }
    if !f.account_ids.is_empty() {
        q.push(&format!(" AND {o}.account_id IN "))
            .bind_list(f.account_ids.iter().copied());
    }
}

/// An integer column: BIGINT, or INTEGER for PostgreSQL's literals.
fn i64_at(row: &QueryResult, col: &str) -> AppResult<i64> {
    match row.try_get::<Option<i64>>("", col) {
        Ok(v) => Ok(v.unwrap_or(0)),
        Err(_) => Ok(row
            .try_get::<Option<i32>>("", col)?
            .map(i64::from)
            .unwrap_or(0)),
    }
}

fn f64_at(row: &QueryResult, col: &str) -> AppResult<Option<f64>> {
    Ok(row.try_get::<Option<f64>>("", col)?)
}

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// `SUM` that is an integer on both backends (PostgreSQL's SUM(bigint) is numeric).
fn sum(expr: &str) -> String {
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)")
}

// ---------------------------------------------------------------- funnel

/// The combined funnel's stages, in order.
pub const FUNNEL_STAGES: [&str; 6] = ["INQUIRY", "MQL", "SAL", "SQL", "OPPORTUNITY", "WON"];

#[derive(Debug, Clone, PartialEq)]
pub struct FunnelStage {
    pub stage: &'static str,
    pub reached: i64,
    /// reached(next) / reached(this); None for WON or when nothing reached this stage.
    pub conversion: Option<f64>,
    pub median_hours_to_next: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Funnel {
    pub stages: Vec<FunnelStage>,
    pub inquiry_to_won: Option<f64>,
}

/// The cohort of leads created in the period, with the first time each
/// reached each main-path stage (t1 INQUIRY … t5 OPPORTUNITY) and t6 WON.
/// The first entries are kept on the lead by the leads service; every lead
/// enters the funnel at its creation.
/// `mql_only`: only the leads that became MQL (the first entries are kept so
/// that reaching any later stage sets `mql_at` too).
fn funnel_cte(q: &mut Sql, p: &Period, f: &MetricFilter, mql_only: bool) {
    q.push(
        "WITH reach AS (SELECT l.created_at AS t1, l.mql_at AS t2, l.sal_at AS t3, l.sql_at AS t4, l.converted_at AS t5, \
         o.closed_at AS t6 FROM leads l \
         LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id AND o.stage = 'CLOSED_WON' \
         WHERE l.created_at >= ",
    )
    .bind(p.from)
    .push(" AND l.created_at < ")
    .bind(p.to);
    if mql_only {
        q.push(" AND l.mql_at IS NOT NULL");
    }
    lead_conditions(q, f, "l");
    q.push(") ");
}

/// `r1`…`r6` of the funnel's counts row.
fn read_reached(row: Option<&QueryResult>, reached: &mut [i64; 6]) -> AppResult<()> {
    if let Some(row) = row {
        for (i, r) in reached.iter_mut().enumerate() {
            *r = i64_at(row, &format!("r{}", i + 1))?;
        }
    }
    Ok(())
}

pub async fn funnel(db: &impl ConnectionTrait, p: &Period, f: &MetricFilter) -> AppResult<Funnel> {
    let backend = db.get_database_backend();
    let diff = |q: &Sql, k: usize| q.hours(&format!("t{k}"), &format!("t{}", k + 1));
    let mut reached = [0i64; 6];
    let mut medians = [None; 6];
    let mut counts = Sql::new(backend);
    funnel_cte(&mut counts, p, f, false);
    counts.push("SELECT COUNT(t1) AS r1, COUNT(t2) AS r2, COUNT(t3) AS r3, COUNT(t4) AS r4, COUNT(t5) AS r5, COUNT(t6) AS r6 FROM reach");
    if backend == DbBackend::Postgres {
        // Three statements at once: the counts (a parallel scan) and the
        // medians in two halves (`percentile_cont` sorts in one process).
        // Every step ends at MQL or later, so the medians read only leads
        // that became MQL (their own partial index).
        let half = |steps: std::ops::RangeInclusive<usize>| {
            let mut q = Sql::new(backend);
            funnel_cte(&mut q, p, f, true);
            let cols = steps
                .map(|k| {
                    format!(
                        "CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY {}) FILTER (WHERE t{k} IS NOT NULL AND t{} IS NOT NULL) AS DOUBLE PRECISION) AS m{k}",
                        diff(&q, k),
                        k + 1
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            q.push(&format!("SELECT {cols} FROM reach"));
            q
        };
        let (first, rest) = (half(1..=1), half(2..=5));
        let (c, m1, m2) = tokio::try_join!(
            db.query_one_raw(counts.statement()),
            db.query_one_raw(first.statement()),
            db.query_one_raw(rest.statement()),
        )?;
        read_reached(c.as_ref(), &mut reached)?;
        for (row, steps) in [(m1, 1..=1), (m2, 2..=5)] {
            if let Some(row) = row {
                for k in steps {
                    medians[k - 1] = f64_at(&row, &format!("m{k}"))?;
                }
            }
        }
    } else {
        let row = db.query_one_raw(counts.statement()).await?;
        read_reached(row.as_ref(), &mut reached)?;
        let mut q = Sql::new(backend);
        funnel_cte(&mut q, p, f, false);
        let rel = (1..=5)
            .map(|k| {
                format!(
                    "SELECT {k} AS k, {} AS v FROM reach WHERE t{k} IS NOT NULL AND t{} IS NOT NULL",
                    diff(&q, k),
                    k + 1
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let m = q.median_by(&rel);
        q.push(&m);
        for row in db.query_all_raw(q.statement()).await? {
            let k = i64_at(&row, "k")?;
            if (1..=5).contains(&k) {
                medians[(k - 1) as usize] = f64_at(&row, "median")?;
            }
        }
    }
    let stages = FUNNEL_STAGES
        .iter()
        .enumerate()
        .map(|(i, stage)| FunnelStage {
            stage,
            reached: reached[i],
            conversion: if i < 5 {
                ratio(reached[i + 1], reached[i])
            } else {
                None
            },
            median_hours_to_next: if i < 5 { medians[i] } else { None },
        })
        .collect();
    Ok(Funnel {
        stages,
        inquiry_to_won: ratio(reached[5], reached[0]),
    })
}

// ---------------------------------------------- win rate, deal size, cycle

/// Opportunities closed in the period (after filters) as `o`.
fn closed_in(q: &mut Sql, p: &Period, f: &MetricFilter) {
    q.push(" FROM opportunities o WHERE o.closed_at >= ")
        .bind(p.from)
        .push(" AND o.closed_at < ")
        .bind(p.to);
    opp_conditions(q, f, "o");
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    pub won: i64,
    pub lost: i64,
    /// Storage units.
    pub won_amount: i64,
    /// Median days from creation to close of the won ones.
    pub median_cycle_days: Option<f64>,
}

impl Outcomes {
    pub fn win_rate(&self) -> Option<f64> {
        ratio(self.won, self.won + self.lost)
    }
}

/// Won and lost opportunities closed in the period, their won amount and sales cycle.
pub async fn outcomes(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Outcomes> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    q.push(&format!(
        "SELECT {} AS won, {} AS lost, {} AS won_amount",
        sum("CASE WHEN o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END"),
        sum("CASE WHEN o.stage = 'CLOSED_LOST' THEN 1 ELSE 0 END"),
        sum("CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount ELSE 0 END"),
    ));
    closed_in(&mut q, p, f);
    let mut out = Outcomes::default();
    if let Some(row) = db.query_one_raw(q.statement()).await? {
        out.won = i64_at(&row, "won")?;
        out.lost = i64_at(&row, "lost")?;
        out.won_amount = i64_at(&row, "won_amount")?;
    }
    let mut q = Sql::new(backend);
    let days = format!("{} / 24.0", q.hours("o.created_at", "o.closed_at"));
    let mut inner = Sql::new(backend);
    inner.push(&format!("SELECT 1 AS k, {days} AS v"));
    closed_in(&mut inner, p, f);
    inner.push(" AND o.stage = 'CLOSED_WON'");
    let (text, values) = inner.into_parts();
    let m = q.median_by(&text);
    q.push_with(&m, values);
    if let Some(row) = db.query_one_raw(q.statement()).await? {
        out.median_cycle_days = f64_at(&row, "median")?;
    }
    Ok(out)
}

// ------------------------------------------------------------- speed to lead

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeedToLead {
    pub median_hours: Option<f64>,
    pub touched: i64,
    pub untouched: i64,
}

pub async fn speed_to_lead(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<SpeedToLead> {
    let backend = db.get_database_backend();
    let mut counts = Sql::new(backend);
    counts
        .push(&format!(
            "SELECT {} AS touched, {} AS untouched FROM leads l WHERE l.created_at >= ",
            sum("CASE WHEN l.first_touch_at IS NOT NULL THEN 1 ELSE 0 END"),
            sum("CASE WHEN l.first_touch_at IS NULL THEN 1 ELSE 0 END")
        ))
        .bind(p.from)
        .push(" AND l.created_at < ")
        .bind(p.to);
    lead_conditions(&mut counts, f, "l");
    let mut out = SpeedToLead::default();
    if let Some(row) = db.query_one_raw(counts.statement()).await? {
        out.touched = i64_at(&row, "touched")?;
        out.untouched = i64_at(&row, "untouched")?;
    }
    let mut inner = Sql::new(backend);
    let hours = inner.hours("l.created_at", "l.first_touch_at");
    inner
        .push(&format!("SELECT 1 AS k, {hours} AS v FROM leads l WHERE l.first_touch_at IS NOT NULL AND l.created_at >= "))
        .bind(p.from)
        .push(" AND l.created_at < ")
        .bind(p.to);
    lead_conditions(&mut inner, f, "l");
    let (text, values) = inner.into_parts();
    let mut q = Sql::new(backend);
    let m = q.median_by(&text);
    q.push_with(&m, values);
    if let Some(row) = db.query_one_raw(q.statement()).await? {
        out.median_hours = f64_at(&row, "median")?;
    }
    Ok(out)
}

// ------------------------------------------------------------------ retention

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub customers_at_start: i64,
    pub retained: i64,
}

impl Retention {
    pub fn rate(&self) -> Option<f64> {
        ratio(self.retained, self.customers_at_start)
    }
}

/// Of the accounts that were customers at `from`, those not churned before `to`.
pub async fn retention(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Retention> {
    let mut q = Sql::new(db.get_database_backend());
    q.push("SELECT COUNT(*) AS base, CAST(COALESCE(SUM(CASE WHEN a.churned_at IS NULL OR a.churned_at >= ")
        .bind(p.to)
        .push(" THEN 1 ELSE 0 END), 0) AS BIGINT) AS retained FROM accounts a WHERE a.became_customer_at IS NOT NULL AND a.became_customer_at <= ")
        .bind(p.from)
        .push(" AND (a.churned_at IS NULL OR a.churned_at > ")
        .bind(p.from)
        .push(")");
    if let Some(s) = f.segment {
        q.push(" AND a.segment = ").bind(s.as_str());
    }
    if let Some(t) = f.is_target {
        q.push(" AND a.is_target = ").bind(t);
    }
    if let Some(o) = f.owner_id {
        q.push(" AND a.owner_id = ").bind(o);
    }
    if !f.account_ids.is_empty() {
        q.push(" AND a.id IN ")
            .bind_list(f.account_ids.iter().copied());
    }
    let mut out = Retention::default();
    if let Some(row) = db.query_one_raw(q.statement()).await? {
        out.customers_at_start = i64_at(&row, "base")?;
        out.retained = i64_at(&row, "retained")?;
    }
    Ok(out)
}

// ------------------------------------------------------------------- pipeline

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStage {
    pub stage: OpportunityStage,
    pub count: i64,
    /// Storage units.
    pub amount: i64,
}

/// Open opportunities created before the period's end, by stage, as the data stands.
pub async fn pipeline(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Vec<PipelineStage>> {
    let mut q = Sql::new(db.get_database_backend());
    q.push(&format!(
        "SELECT o.stage AS stage, COUNT(*) AS n, {} AS amount FROM opportunities o \
         WHERE o.stage NOT IN ('CLOSED_WON', 'CLOSED_LOST') AND o.created_at < ",
        sum("o.amount")
    ))
    .bind(p.to);
    opp_conditions(&mut q, f, "o");
    q.push(" GROUP BY o.stage");
    let rows = db.query_all_raw(q.statement()).await?;
    let mut out: Vec<PipelineStage> = [
        OpportunityStage::Discovery,
        OpportunityStage::Proposal,
        OpportunityStage::Negotiation,
    ]
    .into_iter()
    .map(|stage| PipelineStage {
        stage,
        count: 0,
        amount: 0,
    })
    .collect();
    for row in rows {
        let stage: String = row.try_get("", "stage")?;
        if let Some(s) = out.iter_mut().find(|s| s.stage.as_str() == stage) {
            s.count = i64_at(&row, "n")?;
            s.amount = i64_at(&row, "amount")?;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- closed loop

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Source,
    Campaign,
    CampaignKind,
    Segment,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClosedLoopRow {
    /// The source, campaign id, campaign kind or segment; `NONE` when the lead has none.
    pub key: String,
    pub campaign_id: Option<Uuid>,
    pub campaign_name: Option<String>,
    pub leads: i64,
    pub mqls: i64,
    pub opportunities: i64,
    pub won: i64,
    /// Storage units.
    pub won_amount: i64,
    pub median_cycle_days: Option<f64>,
}

/// Leads created in the period grouped by `group`, followed to revenue.
pub async fn closed_loop(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    group: GroupBy,
) -> AppResult<Vec<ClosedLoopRow>> {
    let backend = db.get_database_backend();
    // A join (hashed once) rather than a subquery per lead.
    let (key, join) = match group {
        GroupBy::Source => ("l.source", ""),
        GroupBy::Campaign => ("l.campaign_id", ""),
        GroupBy::CampaignKind => (
            "gc.kind",
            " LEFT JOIN campaigns gc ON gc.id = l.campaign_id",
        ),
        GroupBy::Segment => (
            "ga.segment",
            " LEFT JOIN accounts ga ON ga.id = l.account_id",
        ),
    };
    // `converted`: only the converted leads (their own, narrow index).
    let cte = |q: &mut Sql, converted: bool| {
        q.push(&format!(
            "WITH cohort AS (SELECT l.id, {key} AS g, l.converted_opportunity_id AS opp, \
             l.mql_at \
             FROM leads l{join} WHERE l.created_at >= "
        ))
        .bind(p.from)
        .push(" AND l.created_at < ")
        .bind(p.to);
        if converted {
            q.push(" AND l.converted_opportunity_id IS NOT NULL");
        }
        lead_conditions(q, f, "l");
        q.push(") ");
    };
    let mut q = Sql::new(backend);
    cte(&mut q, false);
    q.push(&format!(
        "SELECT c.g AS g, COUNT(*) AS leads, {} AS mqls, COUNT(c.opp) AS opps, \
         {} AS won, {} AS won_amount \
         FROM cohort c LEFT JOIN opportunities o ON o.id = c.opp GROUP BY c.g",
        sum("CASE WHEN c.mql_at IS NOT NULL THEN 1 ELSE 0 END"),
        sum("CASE WHEN o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END"),
        sum("CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount ELSE 0 END"),
    ));
    let rows = db.query_all_raw(q.statement()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (key, campaign_id) = group_key(&row, group)?;
        out.push(ClosedLoopRow {
            key,
            campaign_id,
            campaign_name: None,
            leads: i64_at(&row, "leads")?,
            mqls: i64_at(&row, "mqls")?,
            opportunities: i64_at(&row, "opps")?,
            won: i64_at(&row, "won")?,
            won_amount: i64_at(&row, "won_amount")?,
            median_cycle_days: None,
        });
    }
    // Medians of the sales cycle per group, in one more statement.
    let mut q = Sql::new(backend);
    cte(&mut q, true);
    let days = format!("{} / 24.0", q.hours("o.created_at", "o.closed_at"));
    let m = q.median_by(&format!(
        "SELECT c.g AS k, {days} AS v FROM cohort c JOIN opportunities o ON o.id = c.opp WHERE o.stage = 'CLOSED_WON'"
    ));
    q.push(&m);
    for row in db.query_all_raw(q.statement()).await? {
        let (key, _) = group_key_col(&row, group, "k")?;
        if let Some(r) = out.iter_mut().find(|r| r.key == key) {
            r.median_cycle_days = f64_at(&row, "median")?;
        }
    }
    if group == GroupBy::Campaign {
        let ids: Vec<Uuid> = out.iter().filter_map(|r| r.campaign_id).collect();
        let names = campaign_names(db, &ids).await?;
        for r in &mut out {
            r.campaign_name = r
                .campaign_id
                .and_then(|id| names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()));
        }
    }
    out.sort_by(|a, b| {
        b.won_amount
            .cmp(&a.won_amount)
            .then(b.leads.cmp(&a.leads))
            .then(a.key.cmp(&b.key))
    });
    Ok(out)
}

fn group_key(row: &QueryResult, group: GroupBy) -> AppResult<(String, Option<Uuid>)> {
    group_key_col(row, group, "g")
}

fn group_key_col(
    row: &QueryResult,
    group: GroupBy,
    col: &str,
) -> AppResult<(String, Option<Uuid>)> {
    Ok(match group {
        GroupBy::Campaign => {
            let id: Option<Uuid> = row.try_get("", col)?;
            (
                id.map(|i| i.to_string()).unwrap_or_else(|| "NONE".into()),
                id,
            )
        }
        _ => {
            let k: Option<String> = row.try_get("", col)?;
            (k.unwrap_or_else(|| "NONE".into()), None)
        }
    })
}

async fn campaign_names(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<(Uuid, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::new(db.get_database_backend());
    q.push("SELECT id, name FROM campaigns WHERE id IN ")
        .bind_list(ids.iter().copied());
    let mut out = Vec::new();
    for row in db.query_all_raw(q.statement()).await? {
        out.push((row.try_get("", "id")?, row.try_get("", "name")?));
    }
    Ok(out)
}

// ---------------------------------------------------------------- attribution

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    FirstTouch,
    LastTouch,
    Linear,
    WShaped,
}

/// Credit of one campaign (or the unattributed rest, `campaign_id` None):
/// exact sums `numerator / denominator` of storage units and of opportunity shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Credit {
    pub campaign_id: Option<Uuid>,
    pub campaign_name: Option<String>,
    /// Storage units, exact: Σ parts (units × 1/denominator).
    pub parts: Vec<(i64, i64)>,
    /// Opportunity shares: Σ parts (count × 1/denominator).
    pub share_parts: Vec<(i64, i64)>,
}

/// Revenue won in the period, credited to campaigns by `model`.
/// Returns the credits and the total won amount (storage units).
pub async fn attribution(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    model: Model,
) -> AppResult<(Vec<Credit>, i64)> {
    let backend = db.get_database_backend();
    let cte = |q: &mut Sql| {
        q.push("WITH won AS (SELECT o.id, o.amount, o.lead_id, o.created_at FROM opportunities o WHERE o.stage = 'CLOSED_WON' AND o.closed_at >= ")
            .bind(p.from)
            .push(" AND o.closed_at < ")
            .bind(p.to);
        opp_conditions(q, f, "o");
        q.push(
            "), t AS (SELECT w.id AS opp, w.amount, tp.campaign_id, tp.occurred_at, w.lead_id, \
             ROW_NUMBER() OVER (PARTITION BY w.id ORDER BY tp.occurred_at, tp.id) AS rn, \
             COUNT(*) OVER (PARTITION BY w.id) AS n \
             FROM won w JOIN touchpoints tp ON tp.lead_id = w.lead_id AND tp.occurred_at < w.created_at), \
             mql AS (SELECT sc.lead_id, MIN(sc.at) AS at FROM stage_changes sc \
             WHERE sc.to_stage = 'MQL' AND sc.lead_id IN (SELECT lead_id FROM won) GROUP BY sc.lead_id), \
             m AS (SELECT t.opp, MAX(t.rn) AS mrn FROM t JOIN mql ON mql.lead_id = t.lead_id \
             WHERE t.occurred_at <= mql.at GROUP BY t.opp), \
             roles AS (SELECT t.opp, t.amount, t.campaign_id, t.rn, t.n, COALESCE(m.mrn, t.n) AS mrn FROM t LEFT JOIN m ON m.opp = t.opp) ",
        );
    };
    // Per touch: `tenths` of the amount it gets for its roles, and whether it
    // shares the 10% left to the touches that hold none. `k` counts those.
    let (select, group) = match model {
        Model::FirstTouch => (
            "SELECT campaign_id AS c, 1 AS d, CAST(SUM(amount) AS BIGINT) AS units, COUNT(*) AS shares FROM roles WHERE rn = 1",
            "campaign_id",
        ),
        Model::LastTouch => (
            "SELECT campaign_id AS c, 1 AS d, CAST(SUM(amount) AS BIGINT) AS units, COUNT(*) AS shares FROM roles WHERE rn = n",
            "campaign_id",
        ),
        Model::Linear => (
            "SELECT campaign_id AS c, n AS d, CAST(SUM(amount) AS BIGINT) AS units, COUNT(*) AS shares FROM roles",
            "campaign_id, n",
        ),
        Model::WShaped => ("", ""),
    };
    let mut q = Sql::new(backend);
    cte(&mut q);
    let mut credits: Vec<Credit> = Vec::new();
    let mut add = |c: Option<Uuid>, units: i64, d: i64, shares: i64| {
        if d == 0 {
            return;
        }
        match credits.iter_mut().find(|cr| cr.campaign_id == c) {
            Some(cr) => {
                cr.parts.push((units, d));
                cr.share_parts.push((shares, d));
            }
            None => credits.push(Credit {
                campaign_id: c,
                campaign_name: None,
                parts: vec![(units, d)],
                share_parts: vec![(shares, d)],
            }),
        }
    };
    if model == Model::WShaped {
        // k = touches holding no role; roles add up where one touch holds several.
        q.push(&format!(
            "SELECT campaign_id AS c, 10 AS d, {u} AS units, {s} AS shares FROM (SELECT roles.*, \
             (CASE WHEN rn = 1 THEN 3 ELSE 0 END) + (CASE WHEN rn = n THEN 3 ELSE 0 END) + (CASE WHEN rn = mrn THEN 3 ELSE 0 END) \
             + (CASE WHEN rn = n AND n - (CASE WHEN mrn = 1 OR mrn = n THEN 0 ELSE 1 END) - (CASE WHEN n = 1 THEN 1 ELSE 2 END) = 0 THEN 1 ELSE 0 END) AS tenths \
             FROM roles) r WHERE tenths > 0 GROUP BY campaign_id \
             UNION ALL \
             SELECT campaign_id AS c, 10 * (n - (CASE WHEN mrn = 1 OR mrn = n THEN 0 ELSE 1 END) - (CASE WHEN n = 1 THEN 1 ELSE 2 END)) AS d, \
             {u1} AS units, COUNT(*) AS shares FROM roles \
             WHERE rn <> 1 AND rn <> n AND rn <> mrn GROUP BY campaign_id, n, mrn",
            u = sum("amount * tenths"),
            s = sum("tenths"),
            u1 = sum("amount"),
        ));
    } else {
        q.push(&format!("{select} GROUP BY {group}"));
    }
    // In the same statement (the touches are ranked once): the total won
    // (d = -1) and the revenue with no touch (d = -2).
    q.push(&format!(
        " UNION ALL SELECT NULL AS c, -1 AS d, {} AS units, 0 AS shares FROM won w \
         UNION ALL SELECT NULL AS c, -2 AS d, {} AS units, {} AS shares FROM won w \
         WHERE w.id NOT IN (SELECT opp FROM t WHERE rn = 1)",
        sum("w.amount"),
        sum("w.amount"),
        sum("1"),
    ));
    let mut total = 0;
    let mut bare = (0, 0);
    for row in db.query_all_raw(q.statement()).await? {
        let c: Option<Uuid> = row.try_get("", "c")?;
        let d = i64_at(&row, "d")?;
        match d {
            -1 => total = i64_at(&row, "units")?,
            -2 => bare = (i64_at(&row, "units")?, i64_at(&row, "shares")?),
            _ => add(c, i64_at(&row, "units")?, d, i64_at(&row, "shares")?),
        }
    }
    if bare.1 > 0 {
        credits.push(Credit {
            campaign_id: None,
            campaign_name: None,
            parts: vec![(bare.0, 1)],
            share_parts: vec![(bare.1, 1)],
        });
    }
    let ids: Vec<Uuid> = credits.iter().filter_map(|c| c.campaign_id).collect();
    let names = campaign_names(db, &ids).await?;
    for c in &mut credits {
        c.campaign_name = c
            .campaign_id
            .and_then(|id| names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()));
    }
    Ok((credits, total))
}

// --------------------------------------------------------------------- series

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesMetric {
    LeadsCreated,
    Mqls,
    OpportunitiesCreated,
    PipelineCreated,
    WonRevenue,
    WinRate,
    AverageDealSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
    Quarter,
}

impl Interval {
    fn sql(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Quarter => "quarter",
        }
    }

    /// The start of the bucket holding `t`.
    pub fn floor(self, t: DateTime<Utc>) -> NaiveDate {
        let d = t.date_naive();
        match self {
            Interval::Day => d,
            Interval::Week => d - Duration::days(d.weekday().num_days_from_monday().into()),
            Interval::Month => d.with_day(1).unwrap_or(d),
            Interval::Quarter => {
                NaiveDate::from_ymd_opt(d.year(), ((d.month() - 1) / 3) * 3 + 1, 1).unwrap_or(d)
            }
        }
    }

    fn next(self, d: NaiveDate) -> NaiveDate {
        match self {
            Interval::Day => d + Duration::days(1),
            Interval::Week => d + Duration::days(7),
            Interval::Month => d.checked_add_months(chrono::Months::new(1)).unwrap_or(d),
            Interval::Quarter => d.checked_add_months(chrono::Months::new(3)).unwrap_or(d),
        }
    }
}

/// One bucket: counts and sums as the database computed them.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: NaiveDate,
    /// Count, or numerator of a rate.
    pub n: i64,
    /// Denominator of a rate / count behind an average.
    pub d: i64,
    /// Storage units.
    pub units: i64,
}

/// Most buckets one series may have.
pub const MAX_BUCKETS: usize = 1_000;

pub async fn series(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    metric: SeriesMetric,
    interval: Interval,
) -> AppResult<Vec<Bucket>> {
    let mut starts = Vec::new();
    let mut b = interval.floor(p.from);
    let end = p.to;
    while b
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc() < end)
        .unwrap_or(false)
    {
        starts.push(b);
        if starts.len() > MAX_BUCKETS {
            return Err(AppError::bad_input(
                "interval",
                format!("more than {MAX_BUCKETS} buckets: choose a longer interval"),
            ));
        }
        b = interval.next(b);
    }
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    let iv = interval.sql();
    match metric {
        SeriesMetric::LeadsCreated => {
            q.push(&format!("SELECT {} AS b, COUNT(*) AS n, 0 AS d, 0 AS units FROM leads l WHERE l.created_at >= ", q.bucket(iv, "l.created_at")))
                .bind(p.from)
                .push(" AND l.created_at < ")
                .bind(p.to);
            lead_conditions(&mut q, f, "l");
        }
        SeriesMetric::Mqls => {
            q.push(&format!(
                "SELECT {} AS b, COUNT(*) AS n, 0 AS d, 0 AS units FROM leads l WHERE l.mql_at >= ",
                q.bucket(iv, "l.mql_at")
            ))
            .bind(p.from)
            .push(" AND l.mql_at < ")
            .bind(p.to);
            lead_conditions(&mut q, f, "l");
        }
        SeriesMetric::OpportunitiesCreated | SeriesMetric::PipelineCreated => {
            q.push(&format!(
                "SELECT {} AS b, COUNT(*) AS n, 0 AS d, {} AS units FROM opportunities o WHERE o.created_at >= ",
                q.bucket(iv, "o.created_at"),
                sum("o.amount")
            ))
            .bind(p.from)
            .push(" AND o.created_at < ")
            .bind(p.to);
            opp_conditions(&mut q, f, "o");
        }
        SeriesMetric::WonRevenue | SeriesMetric::WinRate | SeriesMetric::AverageDealSize => {
            q.push(&format!(
                "SELECT {} AS b, {} AS n, {} AS d, {} AS units",
                q.bucket(iv, "o.closed_at"),
                sum("CASE WHEN o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END"),
                sum("CASE WHEN o.stage IN ('CLOSED_WON', 'CLOSED_LOST') THEN 1 ELSE 0 END"),
                sum("CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount ELSE 0 END"),
            ));
            closed_in(&mut q, p, f);
        }
    }
    q.push(" GROUP BY b");
    // Group by the raw bucket, format the few groups after.
    let (inner, values) = q.into_parts();
    let mut q = Sql::new(backend);
    let label = if backend == DbBackend::Postgres {
        "to_char(s.b, 'YYYY-MM-DD')"
    } else {
        "s.b"
    };
    q.push(&format!("SELECT {label} AS b, s.n, s.d, s.units FROM ("))
        .push_with(&inner, values)
        .push(") s");
    let rows = db.query_all_raw(q.statement()).await?;
    let mut out: Vec<Bucket> = starts
        .into_iter()
        .map(|start| Bucket {
            start,
            n: 0,
            d: 0,
            units: 0,
        })
        .collect();
    for row in rows {
        let key: String = row.try_get("", "b")?;
        let Ok(start) = NaiveDate::parse_from_str(&key, "%Y-%m-%d") else {
            continue;
        };
        if let Some(bucket) = out.iter_mut().find(|b| b.start == start) {
            bucket.n = i64_at(&row, "n")?;
            bucket.d = i64_at(&row, "d")?;
            bucket.units = i64_at(&row, "units")?;
        }
    }
    Ok(out)
}

/// Which backend a connection speaks (for callers that format SQL themselves).
pub fn backend(db: &impl ConnectionTrait) -> DbBackend {
    db.get_database_backend()
}
