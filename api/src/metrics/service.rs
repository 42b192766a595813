//! Metric queries. Every aggregate runs in the database; Rust only turns a
//! handful of result rows into numbers (and divides exact sums as Decimals).

use super::rollups::LeadTable;
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

/// Filters shared by every metric (see docs/metrics.md, "Filters").
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
pub(crate) fn lead_conditions(q: &mut Sql, f: &MetricFilter, l: &str) {
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

/// Account metrics: segment, target flag and owner from the account, team
/// from the account owner's team; source and campaign select the accounts
/// with at least one lead (created whenever) of that source or campaign.
fn account_conditions(q: &mut Sql, f: &MetricFilter, a: &str) {
    if let Some(s) = f.segment {
        q.push(&format!(" AND {a}.segment = ")).bind(s.as_str());
    }
    if let Some(t) = f.is_target {
        q.push(&format!(" AND {a}.is_target = ")).bind(t);
    }
    if let Some(s) = f.source {
        q.push(&format!(
            " AND {a}.id IN (SELECT sl.account_id FROM leads sl WHERE sl.account_id IS NOT NULL AND sl.source = "
        ))
        .bind(s.as_str())
        .push(")");
    }
    if let Some(c) = f.campaign_id {
        q.push(&format!(
            " AND {a}.id IN (SELECT sl.account_id FROM leads sl WHERE sl.account_id IS NOT NULL AND sl.campaign_id = "
        ))
        .bind(c)
        .push(")");
    }
    if let Some(t) = f.team_id {
        q.push(&format!(
            " AND {a}.owner_id IN (SELECT id FROM users WHERE team_id = "
        ))
        .bind(t)
        .push(")");
    }
    if let Some(o) = f.owner_id {
        q.push(&format!(" AND {a}.owner_id = ")).bind(o);
    }
    if !f.account_ids.is_empty() {
        q.push(&format!(" AND {a}.id IN "))
            .bind_list(f.account_ids.iter().copied());
    }
}

pub(crate) fn has_opp_conditions(f: &MetricFilter) -> bool {
    f.segment.is_some()
        || f.is_target.is_some()
        || f.source.is_some()
        || f.campaign_id.is_some()
        || f.team_id.is_some()
        || f.owner_id.is_some()
        || !f.account_ids.is_empty()
}

/// Opportunity metrics: segment and target from the account, source and
/// campaign from the originating lead (none without a lead), team from the owner.
pub(crate) fn opp_conditions(q: &mut Sql, f: &MetricFilter, o: &str) {
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
pub(crate) fn i64_at(row: &QueryResult, col: &str) -> AppResult<i64> {
    match row.try_get::<Option<i64>>("", col) {
        Ok(v) => Ok(v.unwrap_or(0)),
        Err(_) => Ok(row
            .try_get::<Option<i32>>("", col)?
            .map(i64::from)
            .unwrap_or(0)),
    }
}

pub(crate) fn f64_at(row: &QueryResult, col: &str) -> AppResult<Option<f64>> {
    Ok(row.try_get::<Option<f64>>("", col)?)
}

pub(crate) fn ratio(num: i64, den: i64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

/// `SUM` that is an integer on both backends (PostgreSQL's SUM(bigint) is numeric).
pub(crate) fn sum(expr: &str) -> String {
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

/// How a lead-cohort count over a period reads: whole UTC days from a rollup
/// table, the partial days at either end from the leads themselves.
struct CohortSplit {
    /// The rollup table and its `[first, end)` whole days, when one keeps
    /// every filter and the grouping asked for.
    days: Option<(LeadTable, NaiveDate, NaiveDate)>,
    /// The parts of the period read from `leads`.
    raw: Vec<Period>,
}

/// 00:00 UTC of a day.
pub fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

impl CohortSplit {
    fn new(p: &Period, f: &MetricFilter, key: GroupKey) -> CohortSplit {
        let whole = CohortSplit {
            days: None,
            raw: vec![*p],
        };
        let Some(table) = rollup_table(f, key) else {
            return whole;
        };
        let mut first = p.from.date_naive();
        if midnight(first) < p.from {
            first += Duration::days(1);
        }
        let end = p.to.date_naive();
        if first >= end {
            return whole;
        }
        let raw = [(p.from, midnight(first)), (midnight(end), p.to)]
            .into_iter()
            .filter(|(a, b)| a < b)
            .map(|(from, to)| Period { from, to })
            .collect();
        CohortSplit {
            days: Some((table, first, end)),
            raw,
        }
    }
}

/// The rollup table that keeps every filter of `f` and the grouping `key`:
/// `lead_rollup_closed_loop` for source, campaign and segment alone,
/// `lead_rollup` for source, campaign, team and owner, `lead_rollup_segment`
/// for the account's segment and target flag, `lead_rollup_bi` for the
/// segment crossed with team; none for single accounts
/// (a narrow read of the leads by index) or the owner or target flag
/// crossed with the other kind.
fn rollup_table(f: &MetricFilter, key: GroupKey) -> Option<LeadTable> {
    if !f.account_ids.is_empty() {
        return None;
    }
    let by_owner = f.source.is_some()
        || f.campaign_id.is_some()
        || f.team_id.is_some()
        || f.owner_id.is_some()
        || matches!(
            key,
            GroupKey::By(GroupBy::Source | GroupBy::Campaign | GroupBy::CampaignKind)
        );
    let by_segment =
        f.segment.is_some() || f.is_target.is_some() || key == GroupKey::By(GroupBy::Segment);
    // Source, campaign and segment alone: the table without team and owner.
    let narrow = f.team_id.is_none() && f.owner_id.is_none() && f.is_target.is_none();
    match (by_owner, by_segment) {
        (true, _) if narrow => Some(LeadTable::ClosedLoop),
        (true, true) if f.owner_id.is_none() && f.is_target.is_none() => Some(LeadTable::Bi),
        (true, true) => None,
        (false, true) => Some(LeadTable::BySegment),
        // Unfiltered: the smaller table.
        (_, false) => Some(if by_owner {
            LeadTable::ByOwner
        } else {
            LeadTable::BySegment
        }),
    }
}

/// ` AND …` for the filters the rollup table `r` keeps (see `rollup_table`).
fn rollup_conditions(q: &mut Sql, f: &MetricFilter) {
    if let Some(s) = f.source {
        q.push(" AND r.source = ").bind(s.as_str());
    }
    if let Some(c) = f.campaign_id {
        q.push(" AND r.campaign_id = ").bind(c);
    }
    if let Some(t) = f.team_id {
        q.push(" AND r.team_id = ").bind(t);
    }
    if let Some(o) = f.owner_id {
        q.push(" AND r.owner_id = ").bind(o);
    }
    if let Some(seg) = f.segment {
        q.push(" AND r.segment = ").bind(seg.as_str());
    }
    if let Some(t) = f.is_target {
        q.push(" AND r.is_target = ").bind(i16::from(t));
    }
}

impl CohortSplit {
    /// Pushes the parts of a cohort read, joined by `UNION ALL`: the whole
    /// days from the rollup table (`r`; `rollup` writes `SELECT … FROM
    /// table r…` up to its `WHERE`), then each partial day from the leads
    /// (`l`; `lead` writes `SELECT … FROM leads l…` up to its `WHERE`), each
    /// bounded by the period and the filters and grouped by its first column.
    fn push_parts(
        &self,
        q: &mut Sql,
        f: &MetricFilter,
        rollup: impl Fn(&mut Sql, LeadTable),
        lead: impl Fn(&mut Sql),
    ) {
        let mut parts = 0;
        if let Some((table, first, end)) = self.days {
            rollup(q, table);
            q.push(" WHERE r.day >= ")
                .bind(first)
                .push(" AND r.day < ")
                .bind(end);
            rollup_conditions(q, f);
            q.push(" GROUP BY 1");
            parts += 1;
        }
        for part in &self.raw {
            if parts > 0 {
                q.push(" UNION ALL ");
            }
            lead(q);
            q.push(" WHERE l.created_at >= ")
                .bind(part.from)
                .push(" AND l.created_at < ")
                .bind(part.to);
            lead_conditions(q, f, "l");
            q.push(" GROUP BY 1");
            parts += 1;
        }
    }
}

/// The funnel's counts `r1`…`r6` (and `opps`, leads converted into an
/// opportunity) for the cohort, per group `g` (a constant when `key` is).
/// `key` maps a rollup row (`r`, campaigns `gc`) and a lead (`l`,
/// campaigns `gc`, accounts `ga`) to its group.
fn cohort_counts(q: &mut Sql, p: &Period, f: &MetricFilter, key: GroupKey) {
    let split = CohortSplit::new(p, f, key);
    q.push("SELECT g");
    for c in ["r1", "r2", "r3", "r4", "r5", "opps", "r6", "won_amount"] {
        q.push(&format!(", {} AS {c}", sum(c)));
    }
    q.push(" FROM (");
    split.push_parts(
        q,
        f,
        |q, table| {
            q.push(&format!(
                "SELECT {g} AS g, SUM(r.leads) AS r1, SUM(r.mqls) AS r2, SUM(r.sals) AS r3, SUM(r.sqls) AS r4, \
                 SUM(r.converted) AS r5, SUM(r.opportunities) AS opps, SUM(r.won) AS r6, SUM(r.won_amount) AS won_amount \
                 FROM {table} r{join}",
                g = key.rollup(q.backend),
                table = table.name(),
                join = key.rollup_join(),
            ));
        },
        |q| {
            q.push(&format!(
                "SELECT {g} AS g, COUNT(*) AS r1, COUNT(l.mql_at) AS r2, COUNT(l.sal_at) AS r3, COUNT(l.sql_at) AS r4, \
                 COUNT(l.converted_at) AS r5, COUNT(l.converted_opportunity_id) AS opps, \
                 SUM(CASE WHEN o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END) AS r6, \
                 SUM(CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount ELSE 0 END) AS won_amount \
                 FROM leads l{join} LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id",
                g = key.lead(),
                join = key.lead_join(),
            ));
        },
    );
    // A rollup row whose leads all moved elsewhere counts nothing.
    q.push(") x GROUP BY g HAVING SUM(r1) > 0");
}

/// What a cohort count is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupKey {
    Nothing,
    By(GroupBy),
}

impl GroupKey {
    fn rollup(self, backend: DbBackend) -> String {
        match self {
            GroupKey::Nothing => "0".into(),
            GroupKey::By(GroupBy::Source) => "r.source".into(),
            GroupKey::By(GroupBy::Campaign) => match backend {
                DbBackend::Postgres => {
                    "NULLIF(r.campaign_id, '00000000-0000-0000-0000-000000000000'::uuid)".into()
                }
                _ => "NULLIF(r.campaign_id, X'00000000000000000000000000000000')".into(),
            },
            GroupKey::By(GroupBy::CampaignKind) => "gc.kind".into(),
            GroupKey::By(GroupBy::Segment) => "NULLIF(r.segment, 'NONE')".into(),
        }
    }

    fn rollup_join(self) -> &'static str {
        match self {
            GroupKey::By(GroupBy::CampaignKind) => {
                " LEFT JOIN campaigns gc ON gc.id = r.campaign_id"
            }
            _ => "",
        }
    }

    fn lead(self) -> &'static str {
        match self {
            GroupKey::Nothing => "0",
            GroupKey::By(GroupBy::Source) => "l.source",
            GroupKey::By(GroupBy::Campaign) => "l.campaign_id",
            GroupKey::By(GroupBy::CampaignKind) => "gc.kind",
            GroupKey::By(GroupBy::Segment) => "ga.segment",
        }
    }

    fn lead_join(self) -> &'static str {
        match self {
            GroupKey::By(GroupBy::CampaignKind) => {
                " LEFT JOIN campaigns gc ON gc.id = l.campaign_id"
            }
            GroupKey::By(GroupBy::Segment) => " LEFT JOIN accounts ga ON ga.id = l.account_id",
            _ => "",
        }
    }
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

/// The funnel of the leads created in the period: counts from the cohort
/// rollups, medians from the leads' timings (`super::timings`: a lead is
/// timed for a step when it entered both stages itself, the next no earlier
/// than this one).
pub async fn funnel(db: &impl ConnectionTrait, p: &Period, f: &MetricFilter) -> AppResult<Funnel> {
    let backend = db.get_database_backend();
    let mut reached = [0i64; 6];
    let mut counts = Sql::new(backend);
    cohort_counts(&mut counts, p, f, GroupKey::Nothing);
    let (row, m) = tokio::try_join!(
        async { Ok::<_, AppError>(db.query_one_raw(counts.statement()).await?) },
        super::timings::medians(db, p, f, &super::timings::FUNNEL_STEPS),
    )?;
    read_reached(row.as_ref(), &mut reached)?;
    let medians: Vec<Option<f64>> = super::timings::FUNNEL_STEPS
        .iter()
        .map(|k| m.median(*k))
        .collect();
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
            median_hours_to_next: medians.get(i).copied().flatten(),
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

/// One row `won, lost, won_amount` of the opportunities closed in the period.
fn outcome_counts(q: &mut Sql, p: &Period, f: &MetricFilter) {
    q.push(&format!(
        "SELECT {} AS won, {} AS lost, {} AS won_amount",
        sum("CASE WHEN o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END"),
        sum("CASE WHEN o.stage = 'CLOSED_LOST' THEN 1 ELSE 0 END"),
        sum("CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount ELSE 0 END"),
    ));
    closed_in(q, p, f);
}

/// Won and lost opportunities closed in the period, their won amount and sales cycle.
pub async fn outcomes(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Outcomes> {
    let mut out = outcome_totals(db, p, f).await?;
    out.median_cycle_days = sales_cycle_days(db, p, f).await?;
    Ok(out)
}

/// Won and lost opportunities closed in the period and their won amount, in
/// one statement (winRate, averageDealSize and wonRevenue share it); no
/// sales cycle (`median_cycle_days` stays `None`).
pub async fn outcome_totals(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Outcomes> {
    let mut q = Sql::new(db.get_database_backend());
    outcome_counts(&mut q, p, f);
    let mut out = Outcomes::default();
    if let Some(row) = db.query_one_raw(q.statement()).await? {
        out.won = i64_at(&row, "won")?;
        out.lost = i64_at(&row, "lost")?;
        out.won_amount = i64_at(&row, "won_amount")?;
    }
    Ok(out)
}

/// Median days from creation to close of the opportunities won in the period.
pub async fn sales_cycle_days(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Option<f64>> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    let days = format!("{} / 24.0", q.hours("o.created_at", "o.closed_at"));
    let mut inner = Sql::new(backend);
    inner.push(&format!("SELECT 1 AS k, {days} AS v"));
    closed_in(&mut inner, p, f);
    inner.push(" AND o.stage = 'CLOSED_WON'");
    let (text, values) = inner.into_parts();
    let m = q.median_by(&text);
    q.push_with(&m, values);
    match db.query_one_raw(q.statement()).await? {
        Some(row) => f64_at(&row, "median"),
        None => Ok(None),
    }
}

// ------------------------------------------------------------- speed to lead

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeedToLead {
    pub median_hours: Option<f64>,
    pub touched: i64,
    pub untouched: i64,
}

/// Speed to lead of the leads created in the period: the median from the
/// leads' timings (every touched lead has one), the leads from the cohort
/// rollups.
pub async fn speed_to_lead(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<SpeedToLead> {
    let backend = db.get_database_backend();
    let mut counts = Sql::new(backend);
    cohort_counts(&mut counts, p, f, GroupKey::Nothing);
    let (row, m) = tokio::try_join!(
        async { Ok::<_, AppError>(db.query_one_raw(counts.statement()).await?) },
        super::timings::medians(db, p, f, &[super::timings::SPEED_TO_LEAD]),
    )?;
    let mut reached = [0i64; 6];
    read_reached(row.as_ref(), &mut reached)?;
    let touched = m.count(super::timings::SPEED_TO_LEAD);
    Ok(SpeedToLead {
        median_hours: m.median(super::timings::SPEED_TO_LEAD),
        touched,
        untouched: reached[0] - touched,
    })
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
    Ok(retention_at(db, p.from, &[p.to], f)
        .await?
        .pop()
        .unwrap_or_default())
}

/// `WITH ends (b, e) AS (VALUES (0, t0), (1, t1), …)`: the instants a
/// metric is read at, numbered. Callers ensure `ends` is not empty.
fn ends_cte(q: &mut Sql, ends: &[DateTime<Utc>]) {
    q.push("WITH ends (b, e) AS (VALUES ");
    for (i, at) in ends.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(").bind(i as i64).push(", ").bind(*at).push(")");
    }
    q.push(") ");
}

/// One number per end, in order, from rows `(b, <col>)`.
fn per_end(rows: &[QueryResult], n: usize, col: &str) -> AppResult<Vec<i64>> {
    let mut out = vec![0; n];
    for row in rows {
        let b = i64_at(row, "b")?;
        if let Some(v) = usize::try_from(b).ok().and_then(|b| out.get_mut(b)) {
            *v = i64_at(row, col)?;
        }
    }
    Ok(out)
}

/// Rows `b, base, retained` of `retention_at`.
fn retention_rows(q: &mut Sql, from: DateTime<Utc>, ends: &[DateTime<Utc>], f: &MetricFilter) {
    ends_cte(q, ends);
    q.push(&format!(
        "SELECT ends.b AS b, COUNT(*) AS base, {} AS retained FROM ends CROSS JOIN accounts a \
         WHERE a.became_customer_at IS NOT NULL AND a.became_customer_at <= ",
        sum("CASE WHEN a.churned_at IS NULL OR a.churned_at >= ends.e THEN 1 ELSE 0 END")
    ))
    .bind(from)
    .push(" AND (a.churned_at IS NULL OR a.churned_at > ")
    .bind(from)
    .push(")");
    account_conditions(q, f, "a");
    q.push(" GROUP BY ends.b");
}

/// Retention from `from` to each of `ends` (each after `from`), in one
/// statement: the accounts that were customers at `from`, and of those the
/// ones not churned before the end.
pub async fn retention_at(
    db: &impl ConnectionTrait,
    from: DateTime<Utc>,
    ends: &[DateTime<Utc>],
    f: &MetricFilter,
) -> AppResult<Vec<Retention>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::new(db.get_database_backend());
    retention_rows(&mut q, from, ends, f);
    let rows = db.query_all_raw(q.statement()).await?;
    let base = per_end(&rows, ends.len(), "base")?;
    let retained = per_end(&rows, ends.len(), "retained")?;
    Ok(base
        .into_iter()
        .zip(retained)
        .map(|(customers_at_start, retained)| Retention {
            customers_at_start,
            retained,
        })
        .collect())
}

// -------------------------------------------------------- goal-only metrics

/// Rows `b, n` of `new_customers_at`.
fn new_customer_rows(q: &mut Sql, from: DateTime<Utc>, ends: &[DateTime<Utc>], f: &MetricFilter) {
    ends_cte(q, ends);
    q.push(
        "SELECT ends.b AS b, COUNT(*) AS n FROM ends JOIN accounts a \
         ON a.became_customer_at < ends.e WHERE a.became_customer_at >= ",
    )
    .bind(from);
    account_conditions(q, f, "a");
    q.push(" GROUP BY ends.b");
}

/// New customers from `from` to each of `ends`, in one statement: accounts
/// that became customers in `[from, end)` (account filters, as retention).
pub async fn new_customers_at(
    db: &impl ConnectionTrait,
    from: DateTime<Utc>,
    ends: &[DateTime<Utc>],
    f: &MetricFilter,
) -> AppResult<Vec<i64>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::new(db.get_database_backend());
    new_customer_rows(&mut q, from, ends, f);
    let rows = db.query_all_raw(q.statement()).await?;
    per_end(&rows, ends.len(), "n")
}

/// Rows `b, n` of `qualified_leads_won_at`.
fn qualified_won_rows(q: &mut Sql, from: DateTime<Utc>, ends: &[DateTime<Utc>], f: &MetricFilter) {
    ends_cte(q, ends);
    q.push(
        "SELECT ends.b AS b, COUNT(*) AS n FROM ends JOIN leads l ON l.mql_at < ends.e \
         JOIN opportunities o ON o.id = l.converted_opportunity_id AND o.stage = 'CLOSED_WON' \
         WHERE l.mql_at >= ",
    )
    .bind(from);
    lead_conditions(q, f, "l");
    q.push(" GROUP BY ends.b");
}

/// Qualified leads won from `from` to each of `ends`, in one statement:
/// leads that became MQL (entered MQL or a later main-path stage) in
/// `[from, end)` and whose opportunity is closed won as the data stands,
/// whenever it closed (lead filters).
pub async fn qualified_leads_won_at(
    db: &impl ConnectionTrait,
    from: DateTime<Utc>,
    ends: &[DateTime<Utc>],
    f: &MetricFilter,
) -> AppResult<Vec<i64>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Sql::new(db.get_database_backend());
    qualified_won_rows(&mut q, from, ends, f);
    let rows = db.query_all_raw(q.statement()).await?;
    per_end(&rows, ends.len(), "n")
}

// ------------------------------------------------------------------- pipeline

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStage {
    pub stage: OpportunityStage,
    pub count: i64,
    /// Storage units.
    pub amount: i64,
}

/// The open stages, in order.
const OPEN_STAGES: [OpportunityStage; 3] = [
    OpportunityStage::Discovery,
    OpportunityStage::Proposal,
    OpportunityStage::Negotiation,
];

/// The pipeline as it stood at the period's end: opportunities created
/// before `to` whose stage history puts them in an open stage at `to` (the
/// last change before `to`), by that stage, at their current amount.
pub async fn pipeline(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
) -> AppResult<Vec<PipelineStage>> {
    pipeline_walking(db, p, f, Walk::Auto).await
}

/// Which histories the pipeline walks (see `pipeline_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Those of the opportunities that moved since the end when fewer than
    /// `FEW_MOVED` changes came since, else every history.
    Auto,
    /// Every history.
    Everything,
    /// Only those of the opportunities that moved since the end.
    Moved,
}

/// The pipeline with the way of reading it chosen: both ways give the same
/// numbers (the tests compare them on data too small for `Auto` to walk
/// every history).
pub async fn pipeline_walking(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    walk: Walk,
) -> AppResult<Vec<PipelineStage>> {
    let rows = pipeline_at(db, &[("end".to_owned(), p.to)], f, walk).await?;
    Ok(OPEN_STAGES
        .into_iter()
        .map(|stage| {
            let (count, amount) = rows
                .iter()
                .find(|(_, s, _, _)| *s == stage)
                .map(|(_, _, n, a)| (*n, *a))
                .unwrap_or((0, 0));
            PipelineStage {
                stage,
                count,
                amount,
            }
        })
        .collect())
}

/// Opportunity stage changes since the earliest end below which
/// `pipeline_at` reads the others where they stand now.
const FEW_MOVED: i64 = 2_000;

/// The pipeline at each of `ends` (a label and an instant), in one
/// statement: `(label, stage, count, storage units)` for the open stages
/// that hold something. Each stage change holds from its time until the
/// next change of the same opportunity (ordered by time, then id), kept on
/// it as `until_at` by every write; an opportunity without any recorded
/// history (rows loaded around Lockstep) is read as it stands: its current
/// stage, if open.
///
/// An opportunity with no stage change at or after an end stands at that
/// end where it stands now (its history is a chain that ends in its current
/// stage): those are read from `opportunities` alone, and only the changes
/// of the opportunities that moved since (found by
/// `ix_stage_changes_opportunity_at`) are read. For a period ending now
/// that is a handful (1.2 s → 21 ms in psql at 1M leads). When `FEW_MOVED`
/// or more changes came since the earliest end (an end long ago, a series),
/// the changes into an open stage that held at an end (`at` before it,
/// `until_at` after it or none) are read from one index instead (an end 90
/// days back at 1M leads: 1.1 s when every history was walked → 158 ms).
async fn pipeline_at(
    db: &impl ConnectionTrait,
    ends: &[(String, DateTime<Utc>)],
    f: &MetricFilter,
    walk: Walk,
) -> AppResult<Vec<(String, OpportunityStage, i64, i64)>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let first = ends.iter().map(|(_, at)| *at).min().unwrap_or_default();
    // How many opportunity stage changes there are since the earliest end,
    // counting to `FEW_MOVED` at most (a range of the index).
    let mut probe = Sql::new(backend);
    probe
        .push(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM stage_changes sc \
             WHERE sc.opportunity_id IS NOT NULL AND sc.at >= ",
        )
        .bind(first)
        .push(&format!(" LIMIT {FEW_MOVED}) x"));
    let few_moved = match walk {
        Walk::Everything => false,
        Walk::Moved => true,
        Walk::Auto => {
            let moved = match db.query_one_raw(probe.statement()).await? {
                Some(row) => i64_at(&row, "n")?,
                None => 0,
            };
            moved < FEW_MOVED
        }
    };

    let mut q = Sql::new(backend);
    q.push("WITH ends (b, e) AS (VALUES ");
    for (i, (label, at)) in ends.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(")
            .bind(label.clone())
            .push(", ")
            .bind(*at)
            .push(")");
    }
    // The histories walked: those of the opportunities that moved since the
    // earliest end, or all.
    if few_moved {
        q.push(
            "), moved AS (SELECT DISTINCT sc.opportunity_id AS opp FROM stage_changes sc \
             WHERE sc.opportunity_id IS NOT NULL AND sc.at >= ",
        )
        .bind(first);
    }
    // The changes into an open stage before the latest end, each with the
    // time of the opportunity's next change kept on it (`until_at`): of the
    // opportunities that moved (by `ix_stage_changes_opportunity`), or all
    // (from `ix_stage_changes_open_spans` alone).
    let last = ends.iter().map(|(_, at)| *at).max().unwrap_or_default();
    q.push(
        "), h AS (SELECT sc.opportunity_id AS opp, sc.to_stage AS stage, sc.at AS since, \
         sc.until_at AS until FROM stage_changes sc WHERE sc.opportunity_id IS NOT NULL \
         AND sc.to_stage IN ('DISCOVERY', 'PROPOSAL', 'NEGOTIATION') AND sc.at < ",
    )
    .bind(last);
    if few_moved {
        q.push(" AND sc.opportunity_id IN (SELECT opp FROM moved)");
    }
    q.push(") ");
    // Their stage at each end: the change that holds then. Walking only the
    // opportunities that moved, only those that moved at or after this end
    // (a next change then), the others being read where they stand below.
    let holds = if few_moved {
        "h.until IS NOT NULL AND h.until >= ends.e"
    } else {
        "(h.until IS NULL OR h.until >= ends.e)"
    };
    q.push(&format!(
        "SELECT ends.b AS b, h.stage AS stage, COUNT(*) AS n, {} AS amount \
         FROM ends JOIN h ON h.since < ends.e AND {holds} \
         JOIN opportunities o ON o.id = h.opp AND o.created_at < ends.e \
         WHERE h.stage IN ('DISCOVERY', 'PROPOSAL', 'NEGOTIATION')",
        sum("o.amount")
    ));
    opp_conditions(&mut q, f, "o");
    // Where they stand now: the opportunities without a history, or (few
    // moved) every open opportunity created before the end (an index range)
    // less those that moved since, as a negative row (the rows of a stage
    // are added up below). Subtracting the few that moved costs a few
    // lookups, where asking each open opportunity whether it moved cost one
    // each (25,000 at 1M leads).
    q.push(&format!(
        " GROUP BY ends.b, h.stage UNION ALL \
         SELECT ends.b AS b, o.stage AS stage, COUNT(*) AS n, {} AS amount \
         FROM ends JOIN opportunities o ON o.created_at < ends.e \
         WHERE o.stage IN ('DISCOVERY', 'PROPOSAL', 'NEGOTIATION')",
        sum("o.amount")
    ));
    if !few_moved {
        q.push(" AND NOT EXISTS (SELECT 1 FROM stage_changes sc WHERE sc.opportunity_id = o.id)");
    }
    opp_conditions(&mut q, f, "o");
    q.push(" GROUP BY ends.b, o.stage");
    if few_moved {
        q.push(&format!(
            " UNION ALL \
             SELECT ends.b AS b, o.stage AS stage, -COUNT(*) AS n, -{} AS amount \
             FROM ends JOIN opportunities o ON o.created_at < ends.e \
             WHERE o.stage IN ('DISCOVERY', 'PROPOSAL', 'NEGOTIATION') AND o.id IN (SELECT opp FROM moved) \
             AND EXISTS (SELECT 1 FROM stage_changes sc WHERE sc.opportunity_id = o.id AND sc.at >= ends.e)",
            sum("o.amount")
        ));
        opp_conditions(&mut q, f, "o");
        q.push(" GROUP BY ends.b, o.stage");
    }
    let mut out: Vec<(String, OpportunityStage, i64, i64)> = Vec::new();
    for row in db.query_all_raw(q.statement()).await? {
        let label: String = row.try_get("", "b")?;
        let stage: String = row.try_get("", "stage")?;
        let Some(stage) = OPEN_STAGES.into_iter().find(|s| s.as_str() == stage) else {
            continue;
        };
        let (n, amount) = (i64_at(&row, "n")?, i64_at(&row, "amount")?);
        match out
            .iter_mut()
            .find(|(l, s, _, _)| *l == label && *s == stage)
        {
            Some(r) => {
                r.2 += n;
                r.3 += amount;
            }
            None => out.push((label, stage, n, amount)),
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
    cycle: Cycle,
) -> AppResult<Vec<ClosedLoopRow>> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    cohort_counts(&mut q, p, f, GroupKey::By(group));
    let rows = db.query_all_raw(q.statement()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (key, campaign_id) = group_key(&row, group)?;
        out.push(ClosedLoopRow {
            key,
            campaign_id,
            campaign_name: None,
            leads: i64_at(&row, "r1")?,
            mqls: i64_at(&row, "r2")?,
            opportunities: i64_at(&row, "opps")?,
            won: i64_at(&row, "r6")?,
            won_amount: i64_at(&row, "won_amount")?,
            median_cycle_days: None,
        });
    }
    if cycle == Cycle::With {
        cycle_medians(db, p, f, group, &mut out).await?;
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

/// Whether closed-loop rows carry their sales cycle's median (a statement
/// of its own, over the cohort's won opportunities: asked only when the
/// field is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    With,
    Without,
}

/// Medians of the sales cycle per group, in one statement, over the
/// cohort's converted leads only (their own, narrow index).
async fn cycle_medians(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    group: GroupBy,
    out: &mut [ClosedLoopRow],
) -> AppResult<()> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    let key = GroupKey::By(group);
    q.push(&format!(
        "WITH cohort AS (SELECT {} AS g, l.converted_opportunity_id AS opp FROM leads l{} WHERE l.created_at >= ",
        key.lead(),
        key.lead_join()
    ))
    .bind(p.from)
    .push(" AND l.created_at < ")
    .bind(p.to)
    .push(" AND l.converted_opportunity_id IS NOT NULL");
    lead_conditions(&mut q, f, "l");
    q.push(") ");
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
    Ok(())
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

impl Model {
    /// As `attribution_credits.model` stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::FirstTouch => "FIRST_TOUCH",
            Model::LastTouch => "LAST_TOUCH",
            Model::Linear => "LINEAR",
            Model::WShaped => "W_SHAPED",
        }
    }
}

/// Revenue won in the period, credited to campaigns by `model`.
/// Returns the credits and the total won amount (storage units).
///
/// Reads the credits each won opportunity gave when it was won (kept by
/// `rollups`), summed per campaign and denominator so that the sums stay
/// exact; rows with no campaign are the unattributed revenue.
pub async fn attribution(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    model: Model,
) -> AppResult<(Vec<Credit>, i64)> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    q.push(&format!(
        "SELECT ac.campaign_id AS c, ac.d AS d, {} AS units, {} AS shares FROM attribution_credits ac \
         WHERE ac.model = ",
        sum("ac.units"),
        sum("ac.shares")
    ))
    .bind(model.as_str())
    .push(" AND ac.closed_at >= ")
    .bind(p.from)
    .push(" AND ac.closed_at < ")
    .bind(p.to);
    if has_opp_conditions(f) {
        q.push(" AND ac.opportunity_id IN (SELECT o.id FROM opportunities o WHERE 1 = 1");
        opp_conditions(&mut q, f, "o");
        q.push(")");
    }
    // In the same statement: the total won (d = -1).
    q.push(&format!(
        " GROUP BY ac.campaign_id, ac.d UNION ALL SELECT NULL AS c, -1 AS d, {} AS units, 0 AS shares",
        sum("o.amount")
    ));
    closed_in(&mut q, p, f);
    q.push(" AND o.stage = 'CLOSED_WON'");
    let mut credits: Vec<Credit> = Vec::new();
    let mut total = 0;
    for row in db.query_all_raw(q.statement()).await? {
        let c: Option<Uuid> = row.try_get("", "c")?;
        let d = i64_at(&row, "d")?;
        let (units, shares) = (i64_at(&row, "units")?, i64_at(&row, "shares")?);
        if d == -1 {
            total = units;
            continue;
        }
        if d <= 0 {
            continue;
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
    /// The open pipeline at each bucket's end (or the period's, if earlier).
    Pipeline,
    WonRevenue,
    WinRate,
    AverageDealSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The start of the bucket after the one starting at `d`.
    pub fn next(self, d: NaiveDate) -> NaiveDate {
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

/// The starts of the buckets of `interval` that cover the period (the
/// first may start before it); at most `MAX_BUCKETS`.
pub fn bucket_starts(p: &Period, interval: Interval) -> AppResult<Vec<NaiveDate>> {
    let mut starts = Vec::new();
    let mut b = interval.floor(p.from);
    while midnight(b) < p.to {
        starts.push(b);
        if starts.len() > MAX_BUCKETS {
            return Err(AppError::bad_input(
                "interval",
                format!("more than {MAX_BUCKETS} buckets: choose a longer interval"),
            ));
        }
        b = interval.next(b);
    }
    Ok(starts)
}

pub async fn series(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    metric: SeriesMetric,
    interval: Interval,
) -> AppResult<Vec<Bucket>> {
    let starts = bucket_starts(p, interval)?;
    if metric == SeriesMetric::Pipeline {
        // Each bucket: the pipeline at its end, or at the period's end for the last.
        let ends: Vec<(String, DateTime<Utc>)> = starts
            .iter()
            .map(|s| {
                let next = midnight(interval.next(*s));
                (s.format("%Y-%m-%d").to_string(), next.min(p.to))
            })
            .collect();
        let rows = pipeline_at(db, &ends, f, Walk::Auto).await?;
        return Ok(starts
            .into_iter()
            .map(|start| {
                let label = start.format("%Y-%m-%d").to_string();
                let (n, units) = rows
                    .iter()
                    .filter(|(l, _, _, _)| *l == label)
                    .fold((0, 0), |(n, u), r| (n + r.2, u + r.3));
                Bucket {
                    start,
                    n,
                    d: 0,
                    units,
                }
            })
            .collect());
    }
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    series_rows(&mut q, p, f, metric, interval);
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

/// Rows `b, n, d, units` of `series` per raw bucket `b` (a timestamp on
/// PostgreSQL, `YYYY-MM-DD` on SQLite); nothing for `Pipeline` (read at ends).
fn series_rows(
    q: &mut Sql,
    p: &Period,
    f: &MetricFilter,
    metric: SeriesMetric,
    interval: Interval,
) {
    let iv = interval.sql();
    match metric {
        SeriesMetric::Pipeline => {}
        SeriesMetric::LeadsCreated => {
            // Buckets start at midnight UTC: whole days from a lead rollup,
            // the partial days at either end from the leads.
            let split = CohortSplit::new(p, f, GroupKey::Nothing);
            q.push(&format!(
                "SELECT x.b AS b, {} AS n, 0 AS d, 0 AS units FROM (",
                sum("x.n")
            ));
            let day = match q.backend {
                DbBackend::Postgres => "CAST(r.day AS TIMESTAMP)",
                _ => "r.day",
            };
            split.push_parts(
                q,
                f,
                |q, table| {
                    q.push(&format!(
                        "SELECT {} AS b, SUM(r.leads) AS n FROM {} r",
                        q.bucket(iv, day),
                        table.name()
                    ));
                },
                |q| {
                    q.push(&format!(
                        "SELECT {} AS b, COUNT(*) AS n FROM leads l",
                        q.bucket(iv, "l.created_at")
                    ));
                },
            );
            q.push(") x");
        }
        SeriesMetric::Mqls => {
            q.push(&format!(
                "SELECT {} AS b, COUNT(*) AS n, 0 AS d, 0 AS units FROM leads l WHERE l.mql_at >= ",
                q.bucket(iv, "l.mql_at")
            ))
            .bind(p.from)
            .push(" AND l.mql_at < ")
            .bind(p.to);
            lead_conditions(q, f, "l");
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
            opp_conditions(q, f, "o");
        }
        SeriesMetric::WonRevenue | SeriesMetric::WinRate | SeriesMetric::AverageDealSize => {
            q.push(&format!(
                "SELECT {} AS b, {} AS n, {} AS d, {} AS units",
                q.bucket(iv, "o.closed_at"),
                sum("CASE WHEN o.stage = 'CLOSED_WON' THEN 1 ELSE 0 END"),
                sum("CASE WHEN o.stage IN ('CLOSED_WON', 'CLOSED_LOST') THEN 1 ELSE 0 END"),
                sum("CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount ELSE 0 END"),
            ));
            closed_in(q, p, f);
        }
    }
    q.push(" GROUP BY b");
}

/// Which backend a connection speaks (for callers that format SQL themselves).
pub fn backend(db: &impl ConnectionTrait) -> DbBackend {
    db.get_database_backend()
}

// ---------------------------------------------------------------- batches

/// One reading of a batch (`read_many`): the query one of the functions
/// above runs, so that many goals' actuals are read in one statement with
/// the very SQL a single one is read with.
#[derive(Debug, Clone)]
pub enum Reading {
    /// `outcomes`' counts: `x` won, `y` lost, `z` the won amount.
    Outcomes(Period, MetricFilter),
    /// `retention_at`: per end (`b` its index), `x` retained of `y` customers at `from`.
    Retention(DateTime<Utc>, Vec<DateTime<Utc>>, MetricFilter),
    /// `new_customers_at`: per end (`b` its index), `x` new customers.
    NewCustomers(DateTime<Utc>, Vec<DateTime<Utc>>, MetricFilter),
    /// `qualified_leads_won_at`: per end (`b` its index), `x` leads.
    QualifiedLeadsWon(DateTime<Utc>, Vec<DateTime<Utc>>, MetricFilter),
    /// `series` (not `Pipeline`): per bucket (`b` its start, `YYYY-MM-DD`),
    /// `x` the count, `y` the denominator, `z` the units.
    Series(Period, MetricFilter, SeriesMetric, Interval),
}

/// A row of a batch: the reading's index `k`, the bucket `b` (see `Reading`) and its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingRow {
    pub k: usize,
    pub b: String,
    pub x: i64,
    pub y: i64,
    pub z: i64,
}

/// Most readings one statement holds (SQLite allows 500 terms in a
/// compound SELECT), and about the most parameters it binds.
const BATCH_READINGS: usize = 200;
const BATCH_VALUES: usize = 20_000;

/// Reads many metrics at once: each reading's own query, tagged with its
/// index and its columns named alike, joined by `UNION ALL`. One statement
/// for up to `BATCH_READINGS` readings (a page of goals: one or, for the
/// largest pages, a few), whatever their metrics, periods and filters.
pub async fn read_many(
    db: &impl ConnectionTrait,
    readings: &[Reading],
) -> AppResult<Vec<ReadingRow>> {
    let backend = db.get_database_backend();
    let big = |e: &str| format!("CAST({e} AS BIGINT)");
    let mut out = Vec::new();
    let mut q = Sql::new(backend);
    let (mut terms, mut values) = (0usize, 0usize);
    for (k, r) in readings.iter().enumerate() {
        let mut inner = Sql::new(backend);
        let cols = match r {
            Reading::Outcomes(p, f) => {
                outcome_counts(&mut inner, p, f);
                format!(
                    "'' AS b, {} AS x, {} AS y, {} AS z",
                    big("s.won"),
                    big("s.lost"),
                    big("s.won_amount")
                )
            }
            Reading::Retention(from, ends, f) if !ends.is_empty() => {
                retention_rows(&mut inner, *from, ends, f);
                format!(
                    "CAST(s.b AS TEXT) AS b, {} AS x, {} AS y, {} AS z",
                    big("s.retained"),
                    big("s.base"),
                    big("0")
                )
            }
            Reading::NewCustomers(from, ends, f) if !ends.is_empty() => {
                new_customer_rows(&mut inner, *from, ends, f);
                format!(
                    "CAST(s.b AS TEXT) AS b, {} AS x, {} AS y, {} AS z",
                    big("s.n"),
                    big("0"),
                    big("0")
                )
            }
            Reading::QualifiedLeadsWon(from, ends, f) if !ends.is_empty() => {
                qualified_won_rows(&mut inner, *from, ends, f);
                format!(
                    "CAST(s.b AS TEXT) AS b, {} AS x, {} AS y, {} AS z",
                    big("s.n"),
                    big("0"),
                    big("0")
                )
            }
            Reading::Series(p, f, metric, interval) if *metric != SeriesMetric::Pipeline => {
                series_rows(&mut inner, p, f, *metric, *interval);
                let label = if backend == DbBackend::Postgres {
                    "to_char(s.b, 'YYYY-MM-DD')"
                } else {
                    "s.b"
                };
                format!(
                    "{label} AS b, {} AS x, {} AS y, {} AS z",
                    big("s.n"),
                    big("s.d"),
                    big("s.units")
                )
            }
            // Nothing to read.
            _ => continue,
        };
        let (text, vals) = inner.into_parts();
        if terms > 0 && (terms >= BATCH_READINGS || values + vals.len() > BATCH_VALUES) {
            let full = std::mem::replace(&mut q, Sql::new(backend));
            out.extend(batch_rows(db, full).await?);
            (terms, values) = (0, 0);
        }
        if terms > 0 {
            q.push(" UNION ALL ");
        }
        values += vals.len();
        q.push(&format!("SELECT {k} AS k, {cols} FROM ("))
            .push_with(&text, vals)
            .push(") s");
        terms += 1;
    }
    if terms > 0 {
        out.extend(batch_rows(db, q).await?);
    }
    Ok(out)
}

async fn batch_rows(db: &impl ConnectionTrait, q: Sql) -> AppResult<Vec<ReadingRow>> {
    let mut out = Vec::new();
    for row in db.query_all_raw(q.statement()).await? {
        out.push(ReadingRow {
            k: usize::try_from(i64_at(&row, "k")?).unwrap_or(usize::MAX),
            b: row.try_get::<Option<String>>("", "b")?.unwrap_or_default(),
            x: i64_at(&row, "x")?,
            y: i64_at(&row, "y")?,
            z: i64_at(&row, "z")?,
        });
    }
    Ok(out)
}
