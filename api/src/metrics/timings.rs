//! Lead timings: the durations behind the funnel's medians (hours from each
//! stage to the next) and speed to lead's (hours from creation to the first
//! touch), kept at write time (tables in migration 22).
//!
//! A median over the leads created in a period used to read every such lead
//! (and, for the funnel, the stage history of those that skipped a stage)
//! and sort the durations: ~0.5–1.5 s at 1M leads. Now each lead's timings
//! are rows of `lead_timings`, each with a *bucket* that never decreases as
//! the duration grows, and `lead_timing_rollup` counts them per metric, UTC
//! month of creation and bucket. A median is exact and takes two short
//! statements:
//! 1. how many timings each bucket holds in the period (whole months from
//!    the rollup, the partial months at either end from an index);
//! 2. the middle value(s), read from the one or two buckets that hold the
//!    middle rank(s), in value order.
//!
//! The rollup knows no filter: a filtered median (source, team, segment…)
//! is taken over the filtered leads themselves, timed by the same
//! definition (`steps`) the write path keeps the rows with.
//!
//! The unit of work calls [`refresh`] at commit for every lead it locked,
//! created or deleted; [`rebuild_in`] refills both tables from the records.

use super::service::{MetricFilter, Period, f64_at, i64_at, lead_conditions, midnight};
use super::sql::Sql;
use crate::error::AppResult;
use chrono::{Datelike, NaiveDate};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Metric 1–5: the funnel's step k (stage k → stage k + 1 of INQUIRY, MQL,
/// SAL, SQL, OPPORTUNITY, WON).
pub const FUNNEL_STEPS: [i16; 5] = [1, 2, 3, 4, 5];
/// Metric 6: hours from a lead's creation to its first touch.
pub const SPEED_TO_LEAD: i16 = 6;

/// The bucket of a duration of `h` hours (a column): 0 within a second of
/// zero; else, with `s` the duration in seconds and `d` its number of
/// digits before the point, `d * 100` plus its first two significant digits
/// (10–99), negated for negative durations. Within a power of ten it grows
/// with the duration, and every bucket of the next power is higher (a
/// rounding that gives 100 still stays below the next power's first, 10):
/// bucket order is value order, which is all the medians rely on.
fn bucket(backend: DbBackend, h: &str) -> String {
    let floor = |x: String| match backend {
        DbBackend::Postgres => format!("CAST(floor({x}) AS INTEGER)"),
        // Non-negative here: truncation is the floor.
        _ => format!("CAST({x} AS INTEGER)"),
    };
    let magnitude = |s: String| {
        let mut out = format!("CASE WHEN {s} < 1 THEN 0");
        for d in 1..=10i32 {
            out.push_str(&format!(
                " WHEN {s} < 1e{d} THEN {} + {}",
                d * 100,
                floor(format!("{s} * 1e{}", 2 - d))
            ));
        }
        out.push_str(" ELSE 1100 END");
        out
    };
    format!(
        "CASE WHEN {h} >= 0 THEN {} ELSE -({}) END",
        magnitude(format!("({h} * 3600.0)")),
        magnitude(format!("({h} * -3600.0)"))
    )
}

/// The UTC month of a timestamp column, as `lead_timing_rollup.month` holds it.
fn month_of(backend: DbBackend, col: &str) -> String {
    match backend {
        DbBackend::Postgres => {
            format!("CAST(CAST(date_trunc('month', {col} AT TIME ZONE 'UTC') AS DATE) AS TEXT)")
        }
        _ => format!("strftime('%Y-%m-01', {col})"),
    }
}

/// Which leads a `steps` CTE times.
#[derive(Clone, Copy)]
enum Leads<'a> {
    /// These leads (a write's).
    Ids(&'a [Uuid]),
    /// Every lead (a rebuild).
    All,
    /// The leads created in the period, after filters (a filtered median).
    Cohort(&'a Period, &'a MetricFilter),
}

/// `WITH reach AS (…), steps AS (…) `: per lead, its timings of `metrics`
/// as rows `id, created_at, metric, h` (hours), before the sign rule
/// (`metric = 6 OR h >= 0` keeps the timed ones).
///
/// Per lead: t1 INQUIRY (kept on the lead), t2 MQL … t4 SQL, the first time
/// it entered each stage *itself* (from the lead's first-entry times, or its
/// history when it skipped the stage or came back to it), t5 OPPORTUNITY at
/// conversion, t6 WON when its opportunity was won. A lead is timed for step
/// k when it entered both stages itself and the next no earlier than this
/// one; every step ends at MQL or later, so only leads that became MQL
/// have one. Speed to lead times every touched lead, whatever the sign.
fn steps(q: &mut Sql, leads: Leads<'_>, metrics: &[i16]) {
    let first = |stage: &str| {
        format!(
            "(SELECT MIN(sc.at) FROM stage_changes sc WHERE sc.to_stage = '{stage}' AND sc.lead_id = l.id)"
        )
    };
    // The lead keeps the first entry into each stage "or a later one"; when
    // that is strictly before the first entry into a later one (or there is
    // none), it was an entry into the stage itself, and the first. Only the
    // other leads read the history, by `ix_stage_changes_to_stage`.
    let itself = |col: &str, later: &str, stage: &str| {
        format!(
            "CASE WHEN l.{later} IS NULL OR l.{col} < l.{later} THEN l.{col} ELSE {} END",
            first(stage)
        )
    };
    q.push(&format!(
        "WITH reach AS (SELECT l.id, l.created_at, l.first_touch_at, l.mql_at, l.inquiry_at AS t1, \
         {} AS t2, {} AS t3, {} AS t4, \
         l.converted_at AS t5, o.closed_at AS t6 FROM leads l \
         LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id AND o.stage = 'CLOSED_WON'",
        itself("mql_at", "sal_at", "MQL"),
        itself("sal_at", "sql_at", "SAL"),
        itself("sql_at", "converted_at", "SQL"),
    ));
    match leads {
        Leads::Ids(ids) => {
            q.push(" WHERE l.id IN ").bind_list(ids.iter().copied());
        }
        Leads::All => {}
        Leads::Cohort(p, f) => {
            q.push(" WHERE l.created_at >= ")
                .bind(p.from)
                .push(" AND l.created_at < ")
                .bind(p.to);
            if !metrics.contains(&SPEED_TO_LEAD) {
                // Funnel steps only: the leads that became MQL (their own
                // covering indexes).
                q.push(" AND l.mql_at IS NOT NULL");
            }
            lead_conditions(q, f, "l");
        }
    }
    q.push("), steps AS (");
    let mut parts = Vec::new();
    for k in FUNNEL_STEPS.into_iter().filter(|k| metrics.contains(k)) {
        let n = k + 1;
        parts.push(format!(
            "SELECT id, created_at, {k} AS metric, {h} AS h FROM reach \
             WHERE mql_at IS NOT NULL AND t{k} IS NOT NULL AND t{n} IS NOT NULL",
            h = q.hours(&format!("t{k}"), &format!("t{n}")),
        ));
    }
    if metrics.contains(&SPEED_TO_LEAD) {
        parts.push(format!(
            "SELECT id, created_at, {SPEED_TO_LEAD} AS metric, {h} AS h FROM reach WHERE first_touch_at IS NOT NULL",
            h = q.hours("created_at", "first_touch_at"),
        ));
    }
    q.push(&parts.join(" UNION ALL "));
    q.push(") ");
}

/// Every metric kept.
const ALL: [i16; 6] = [1, 2, 3, 4, 5, SPEED_TO_LEAD];

/// `INSERT`s the timings of the leads `scope` selects (all when `None`).
fn insert(q: &mut Sql, scope: Option<&[Uuid]>) {
    steps(q, scope.map_or(Leads::All, Leads::Ids), &ALL);
    q.push(&format!(
        "INSERT INTO lead_timings (lead_id, metric, created_at, bucket, hours) \
         SELECT id, metric, created_at, {b}, h FROM steps WHERE metric = {SPEED_TO_LEAD} OR h >= 0",
        b = bucket(q.backend, "h"),
    ));
}

/// The medians of `metrics` over a filtered cohort, from the leads
/// themselves with the very definition the kept timings are written by
/// (`steps`): the kept rollup knows no filter, and the filtered leads are
/// found faster by the leads' own covering indexes than among the timings.
async fn cohort_medians(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    metrics: &[i16],
) -> AppResult<Medians> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend);
    steps(&mut q, Leads::Cohort(p, f), metrics);
    let m = q.median_by(&format!(
        "SELECT metric AS k, h AS v FROM steps WHERE metric = {SPEED_TO_LEAD} OR h >= 0"
    ));
    q.push(&m);
    let mut out = Medians::default();
    for m in metrics {
        out.0.insert(*m, (0, None));
    }
    for row in db.query_all_raw(q.statement()).await? {
        let k = i64_at(&row, "k")?;
        out.0
            .insert(k as i16, (i64_at(&row, "n")?, f64_at(&row, "median")?));
    }
    Ok(out)
}

/// Rollup rows: (metric, month `YYYY-MM-01`, bucket) → count.
type Counts = BTreeMap<(i16, String, i32), i64>;

/// One timing as read back for comparison: metric, month, bucket, the
/// creation time as text and the hours' bits.
type Timing = (i16, String, i32, String, u64);

/// Per lead, its timings as kept (`0`) and as they stand now (`1`), in one
/// statement.
async fn kept_and_due(
    db: &impl ConnectionTrait,
    leads: &[Uuid],
) -> AppResult<BTreeMap<Uuid, [Vec<Timing>; 2]>> {
    let backend = db.get_database_backend();
    let text = |col: &str| format!("CAST({col} AS TEXT)");
    let mut q = Sql::new(backend);
    steps(&mut q, Leads::Ids(leads), &ALL);
    q.push(&format!(
        "SELECT 0 AS side, t.lead_id AS id, CAST(t.metric AS INTEGER) AS metric, {m} AS month, t.bucket AS bucket, \
         {c} AS created, t.hours AS h FROM lead_timings t WHERE t.lead_id IN ",
        m = month_of(backend, "t.created_at"),
        c = text("t.created_at"),
    ))
    .bind_list(leads.iter().copied());
    q.push(&format!(
        " UNION ALL SELECT 1, id, CAST(metric AS INTEGER), {m}, {b}, {c}, h FROM steps \
         WHERE metric = {SPEED_TO_LEAD} OR h >= 0",
        m = month_of(backend, "created_at"),
        b = bucket(backend, "h"),
        c = text("created_at"),
    ));
    let mut out: BTreeMap<Uuid, [Vec<Timing>; 2]> = BTreeMap::new();
    for row in db.query_all_raw(q.statement()).await? {
        let side: i32 = row.try_get_by_index(0)?;
        let id: Uuid = row.try_get_by_index(1)?;
        let metric: i32 = row.try_get_by_index(2)?;
        let month: String = row.try_get_by_index(3)?;
        let bucket: i32 = row.try_get_by_index(4)?;
        let created: String = row.try_get_by_index(5)?;
        let h: f64 = row.try_get_by_index(6)?;
        let sides = out.entry(id).or_default();
        sides[usize::from(side == 1)].push((metric as i16, month, bucket, created, h.to_bits()));
    }
    Ok(out)
}

/// Rewrites the timings of those of `leads` whose timings changed in this
/// transaction (one statement compares what is kept with what is due; a
/// write that moves no timing costs nothing more) and moves the rollup by
/// the difference (rows in key order, so that writers of the same rows lock
/// them in one order).
pub async fn refresh(db: &impl ConnectionTrait, leads: &[Uuid]) -> AppResult<()> {
    if leads.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let mut delta = Counts::new();
    for chunk in leads.chunks(1000) {
        let mut changed = Vec::new();
        let mut had_rows = Vec::new();
        for (id, [mut kept, mut due]) in kept_and_due(db, chunk).await? {
            kept.sort();
            due.sort();
            if kept == due {
                continue;
            }
            for (m, month, b, ..) in &kept {
                *delta.entry((*m, month.clone(), *b)).or_insert(0) -= 1;
            }
            for (m, month, b, ..) in &due {
                *delta.entry((*m, month.clone(), *b)).or_insert(0) += 1;
            }
            if !kept.is_empty() {
                had_rows.push(id);
            }
            changed.push(id);
        }
        if !had_rows.is_empty() {
            let mut del = Sql::new(backend);
            del.push("DELETE FROM lead_timings WHERE lead_id IN ")
                .bind_list(had_rows.iter().copied());
            db.execute_raw(del.statement()).await?;
        }
        if !changed.is_empty() {
            let mut ins = Sql::new(backend);
            insert(&mut ins, Some(&changed));
            db.execute_raw(ins.statement()).await?;
        }
    }
    delta.retain(|_, n| *n != 0);
    let rows: Vec<_> = delta.into_iter().collect();
    for chunk in rows.chunks(500) {
        let mut q = Sql::new(backend);
        q.push("INSERT INTO lead_timing_rollup (metric, month, bucket, n) VALUES ");
        for (i, ((metric, month, bucket), n)) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push("(")
                .bind(*metric)
                .push(", ")
                .bind_date(month)
                .push(", ")
                .bind(*bucket)
                .push(", ")
                .bind(*n)
                .push(")");
        }
        q.push(" ON CONFLICT (metric, month, bucket) DO UPDATE SET n = lead_timing_rollup.n + excluded.n");
        db.execute_raw(q.statement()).await?;
    }
    Ok(())
}

/// Refills both tables from the records (they are empty).
pub async fn rebuild_in(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let mut ins = Sql::new(backend);
    insert(&mut ins, None);
    db.execute_raw(ins.statement()).await?;
    let month = match backend {
        DbBackend::Postgres => {
            "CAST(date_trunc('month', created_at AT TIME ZONE 'UTC') AS DATE)".to_owned()
        }
        _ => month_of(backend, "created_at"),
    };
    db.execute_raw(Statement::from_string(
        backend,
        format!(
            "INSERT INTO lead_timing_rollup (metric, month, bucket, n) \
             SELECT metric, {month}, bucket, COUNT(*) FROM lead_timings GROUP BY 1, 2, 3"
        ),
    ))
    .await?;
    Ok(())
}

/// The medians of some metrics over the leads created in the period (after
/// filters), and how many timings each has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Medians(BTreeMap<i16, (i64, Option<f64>)>);

impl Medians {
    pub fn median(&self, metric: i16) -> Option<f64> {
        self.0.get(&metric).and_then(|(_, m)| *m)
    }

    /// How many leads of the period have this timing.
    pub fn count(&self, metric: i16) -> i64 {
        self.0.get(&metric).map_or(0, |(n, _)| *n)
    }
}

fn is_unfiltered(f: &MetricFilter) -> bool {
    f.segment.is_none()
        && f.source.is_none()
        && f.campaign_id.is_none()
        && f.team_id.is_none()
        && f.owner_id.is_none()
        && f.account_ids.is_empty()
        && f.is_target.is_none()
}

/// The first day of the month after `d`'s (or `d` when it is a first).
fn month_at_or_after(d: NaiveDate) -> NaiveDate {
    let first = d.with_day(1).unwrap_or(d);
    if first == d {
        d
    } else {
        first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(d)
    }
}

/// ` FROM lead_timings t WHERE …` for the timings of the leads created in
/// `[from, to)`.
fn timings_in(q: &mut Sql, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) {
    q.push(" FROM lead_timings t WHERE t.created_at >= ")
        .bind(from)
        .push(" AND t.created_at < ")
        .bind(to);
}

fn metric_list(metrics: &[i16]) -> String {
    metrics
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The exact medians of `metrics` over the leads created in the period
/// (after filters): the mean of the two middle values for an even count.
pub async fn medians(
    db: &impl ConnectionTrait,
    p: &Period,
    f: &MetricFilter,
    metrics: &[i16],
) -> AppResult<Medians> {
    if !is_unfiltered(f) {
        return cohort_medians(db, p, f, metrics).await;
    }
    let backend = db.get_database_backend();
    let list = metric_list(metrics);
    // 1. Timings per metric and bucket in the period.
    let mut q = Sql::new(backend);
    q.push("SELECT CAST(metric AS INTEGER) AS metric, bucket, CAST(SUM(n) AS BIGINT) AS n FROM (");
    let mut raw = vec![(p.from, p.to)];
    // Whole months: from the first month start at or after `from` to the
    // start of `to`'s month.
    let day = p.from.date_naive();
    let first = if midnight(day) == p.from {
        month_at_or_after(day)
    } else {
        month_at_or_after(day + chrono::Duration::days(1))
    };
    let end = p.to.date_naive().with_day(1).unwrap_or(p.to.date_naive());
    if first < end {
        q.push(&format!(
            "SELECT metric, bucket, n FROM lead_timing_rollup WHERE metric IN ({list}) AND month >= "
        ))
        .bind(first)
        .push(" AND month < ")
        .bind(end);
        raw = [(p.from, midnight(first)), (midnight(end), p.to)]
            .into_iter()
            .filter(|(a, b)| a < b)
            .collect();
        if !raw.is_empty() {
            q.push(" UNION ALL ");
        }
    }
    for (i, (from, to)) in raw.iter().enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        q.push("SELECT t.metric AS metric, t.bucket AS bucket, COUNT(*) AS n");
        timings_in(&mut q, *from, *to);
        q.push(&format!(
            " AND t.metric IN ({list}) GROUP BY t.metric, t.bucket"
        ));
    }
    q.push(") x GROUP BY metric, bucket HAVING SUM(n) > 0 ORDER BY metric, bucket");
    let mut buckets: BTreeMap<i16, Vec<(i32, i64)>> = BTreeMap::new();
    for row in db.query_all_raw(q.statement()).await? {
        let metric: i32 = row.try_get_by_index(0)?;
        let bucket: i32 = row.try_get_by_index(1)?;
        let n: i64 = row.try_get_by_index(2)?;
        buckets.entry(metric as i16).or_default().push((bucket, n));
    }
    let mut out = Medians::default();
    for m in metrics {
        out.0.insert(*m, (0, None));
    }
    // 2. The middle value(s): ranks (n - 1) / 2 and n / 2 from 0, each in
    // the bucket where the running count passes it.
    let mut reads: Vec<(i16, i32, i64, i64)> = Vec::new();
    for (metric, rows) in &buckets {
        let n: i64 = rows.iter().map(|(_, c)| c).sum();
        out.0.insert(*metric, (n, None));
        let ranks = [(n - 1) / 2, n / 2];
        let mut at = Vec::with_capacity(2);
        for r in ranks {
            let mut before = 0;
            for (bucket, c) in rows {
                if r < before + c {
                    at.push((*bucket, r - before));
                    break;
                }
                before += c;
            }
        }
        match at.as_slice() {
            [(b1, o1), (b2, o2)] if b1 == b2 => reads.push((*metric, *b1, *o1, o2 - o1 + 1)),
            [(b1, o1), (b2, o2)] => {
                reads.push((*metric, *b1, *o1, 1));
                reads.push((*metric, *b2, *o2, 1));
            }
            _ => {}
        }
    }
    if reads.is_empty() {
        return Ok(out);
    }
    let mut q = Sql::new(backend);
    for (i, (metric, bucket, offset, limit)) in reads.iter().enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        q.push(&format!(
            "SELECT {metric} AS metric, v FROM (SELECT t.hours AS v"
        ));
        timings_in(&mut q, p.from, p.to);
        q.push(&format!(" AND t.metric = {metric} AND t.bucket = "))
            .bind(*bucket)
            .push(&format!(
                " ORDER BY t.hours LIMIT {limit} OFFSET {offset}) x{i}"
            ));
    }
    let mut middle: BTreeMap<i16, Vec<f64>> = BTreeMap::new();
    for row in db.query_all_raw(q.statement()).await? {
        let metric: i32 = row.try_get_by_index(0)?;
        let v: f64 = row.try_get_by_index(1)?;
        middle.entry(metric as i16).or_default().push(v);
    }
    for (metric, vs) in middle {
        let lo = vs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let median = match backend {
            // percentile_cont(0.5)'s interpolation.
            DbBackend::Postgres => lo + (hi - lo) * 0.5,
            _ => (lo + hi) / 2.0,
        };
        if let Some(e) = out.0.get_mut(&metric) {
            e.1 = Some(median);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_the_first() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(month_at_or_after(d("2026-03-01")), d("2026-03-01"));
        assert_eq!(month_at_or_after(d("2026-03-02")), d("2026-04-01"));
        assert_eq!(month_at_or_after(d("2026-12-31")), d("2027-01-01"));
    }
}
