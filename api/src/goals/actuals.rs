//! What a goal has reached: its metric over its own period (cut at the time
//! asked for) and filters, read through the metrics service — the same SQL
//! (and rollups) `metrics(period, filter)` answers with — and the
//! attainment against a target as an exact fraction.
//!
//! Many goals are read at once (`read`): each goal's reading is the metric
//! function's own query, and a batch of them is one statement
//! (`metrics::read_many`), so a page of goals costs the same few
//! statements whatever its size (`GoalReadings`, the request's DataLoader).

use crate::compensation::payout::Fraction;
use crate::error::AppResult;
use crate::metrics::service::{
    self as metrics, Interval, MetricFilter, Period, Reading, ReadingRow, SeriesMetric, midnight,
};
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{Channel, GoalMetric, Segment};
use entity::goal;
use entity::money::UNITS_PER_WHOLE;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

/// How a metric's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Money, in storage units (1/10,000).
    Money,
    /// A count.
    Count,
    /// A rate: `n / d` (none when `d` is 0).
    Rate,
}

pub fn kind(m: GoalMetric) -> Kind {
    match m {
        GoalMetric::RevenueWon | GoalMetric::PipelineCreated => Kind::Money,
        GoalMetric::NewCustomers | GoalMetric::QualifiedLeadsWon | GoalMetric::Mqls => Kind::Count,
        GoalMetric::WinRate | GoalMetric::Retention => Kind::Rate,
    }
}

/// A metric's value: storage units (money), a count, or `n / d` (rates;
/// `d` is 1 for the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actual {
    pub n: i64,
    pub d: i64,
}

impl Actual {
    pub fn zero(k: Kind) -> Actual {
        Actual {
            n: 0,
            d: if k == Kind::Rate { 0 } else { 1 },
        }
    }

    /// actual / target (`target` in 1/10,000 units), exactly; none for a
    /// rate over nothing.
    pub fn attainment(self, k: Kind, target: i64) -> Option<Fraction> {
        let (n, d, t) = (i128::from(self.n), i128::from(self.d), i128::from(target));
        let per = i128::from(UNITS_PER_WHOLE);
        match k {
            Kind::Money => Fraction::new(n, t),
            Kind::Count => Fraction::new(n * per, t),
            Kind::Rate => Fraction::new(n * per, d * t),
        }
    }
}

/// What one goal is read for: its actual over `[from, to)` (`interval`
/// none), or its cumulative actual at the end of each bucket of `interval`
/// over `[from, to)`. Goals with the same metric, period and filters share a
/// key (and so a reading).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    pub metric: GoalMetric,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub segment: Option<Segment>,
    pub source: Option<Channel>,
    pub campaign_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub interval: Option<Interval>,
}

impl ReadKey {
    /// The goal's actual up to `to` (its period cut there).
    pub fn actual(g: &goal::Model, to: DateTime<Utc>) -> ReadKey {
        ReadKey {
            to: g.period_end.min(to),
            interval: None,
            ..ReadKey::series(g, Interval::Quarter)
        }
    }

    /// The goal's cumulative series over its whole period.
    pub fn series(g: &goal::Model, interval: Interval) -> ReadKey {
        ReadKey {
            metric: g.metric,
            from: g.period_start,
            to: g.period_end,
            segment: g.segment,
            source: g.source,
            campaign_id: g.campaign_id,
            team_id: g.team_id,
            interval: Some(interval),
        }
    }

    fn filter(&self) -> MetricFilter {
        MetricFilter {
            segment: self.segment,
            source: self.source,
            campaign_id: self.campaign_id,
            team_id: self.team_id,
            ..Default::default()
        }
    }
}

/// The series metric that adds up to a goal metric, and whether its sum is money.
fn series_metric(m: GoalMetric) -> (SeriesMetric, bool) {
    match m {
        GoalMetric::RevenueWon => (SeriesMetric::WonRevenue, true),
        GoalMetric::PipelineCreated => (SeriesMetric::PipelineCreated, true),
        GoalMetric::WinRate => (SeriesMetric::WinRate, false),
        _ => (SeriesMetric::Mqls, false),
    }
}

/// How one key is read: the reading (none for an empty period) and the
/// buckets' starts and ends.
struct Plan {
    reading: Option<Reading>,
    starts: Vec<NaiveDate>,
}

fn plan(key: &ReadKey) -> AppResult<Plan> {
    let f = key.filter();
    let Ok(p) = Period::new(key.from, key.to) else {
        // Nothing of the period before `to`: zero.
        return Ok(Plan {
            reading: None,
            starts: vec![key.from.date_naive()],
        });
    };
    let Some(interval) = key.interval else {
        // The actual: one value at `to`.
        let ends = vec![p.to];
        let reading = match key.metric {
            GoalMetric::RevenueWon | GoalMetric::WinRate => Reading::Outcomes(p, f),
            GoalMetric::Retention => Reading::Retention(p.from, ends, f),
            GoalMetric::NewCustomers => Reading::NewCustomers(p.from, ends, f),
            GoalMetric::QualifiedLeadsWon => Reading::QualifiedLeadsWon(p.from, ends, f),
            // The series' SQL, in as few buckets as it has.
            GoalMetric::PipelineCreated | GoalMetric::Mqls => {
                Reading::Series(p, f, series_metric(key.metric).0, Interval::Quarter)
            }
        };
        return Ok(Plan {
            reading: Some(reading),
            starts: vec![p.from.date_naive()],
        });
    };
    let starts = metrics::bucket_starts(&p, interval)?;
    let ends: Vec<DateTime<Utc>> = starts
        .iter()
        .map(|s| midnight(interval.next(*s)).min(p.to))
        .collect();
    let reading = match key.metric {
        GoalMetric::Retention => Reading::Retention(p.from, ends, f),
        GoalMetric::NewCustomers => Reading::NewCustomers(p.from, ends, f),
        GoalMetric::QualifiedLeadsWon => Reading::QualifiedLeadsWon(p.from, ends, f),
        GoalMetric::RevenueWon
        | GoalMetric::PipelineCreated
        | GoalMetric::Mqls
        | GoalMetric::WinRate => Reading::Series(p, f, series_metric(key.metric).0, interval),
    };
    Ok(Plan {
        reading: Some(reading),
        starts,
    })
}

/// A key's values from its rows: one per bucket start (one for an actual).
fn values(key: &ReadKey, plan: &Plan, rows: &[&ReadingRow]) -> Vec<(NaiveDate, Actual)> {
    let k = kind(key.metric);
    let zero = Actual::zero(k);
    let Some(reading) = &plan.reading else {
        return plan.starts.iter().map(|s| (*s, zero)).collect();
    };
    let at_end = |i: usize| rows.iter().find(|r| r.b == i.to_string());
    let vals: Vec<Actual> = match reading {
        Reading::Outcomes(..) => {
            let (won, lost, amount) = rows.first().map_or((0, 0, 0), |r| (r.x, r.y, r.z));
            vec![if key.metric == GoalMetric::WinRate {
                Actual {
                    n: won,
                    d: won + lost,
                }
            } else {
                Actual { n: amount, d: 1 }
            }]
        }
        Reading::Retention(..) => (0..plan.starts.len())
            .map(|i| at_end(i).map_or(zero, |r| Actual { n: r.x, d: r.y }))
            .collect(),
        Reading::NewCustomers(..) | Reading::QualifiedLeadsWon(..) => (0..plan.starts.len())
            .map(|i| Actual {
                n: at_end(i).map_or(0, |r| r.x),
                d: 1,
            })
            .collect(),
        Reading::Series(..) => {
            let money = series_metric(key.metric).1;
            let rate = key.metric == GoalMetric::WinRate;
            let add = |acc: &mut Actual, r: &ReadingRow| {
                acc.n += if money { r.z } else { r.x };
                if rate {
                    acc.d += r.y;
                }
            };
            let mut acc = zero;
            if key.interval.is_none() {
                // The actual: every bucket adds up.
                for r in rows {
                    add(&mut acc, r);
                }
                vec![acc]
            } else {
                plan.starts
                    .iter()
                    .map(|s| {
                        let label = s.format("%Y-%m-%d").to_string();
                        if let Some(r) = rows.iter().find(|r| r.b == label) {
                            add(&mut acc, r);
                        }
                        acc
                    })
                    .collect()
            }
        }
    };
    plan.starts.iter().copied().zip(vals).collect()
}

/// Reads many keys at once (one statement for a page of them): for each,
/// `(bucket start, cumulative actual)` per bucket, or one `(period start,
/// actual)` for an actual.
pub async fn read(
    db: &impl ConnectionTrait,
    keys: &[ReadKey],
) -> AppResult<Vec<Vec<(NaiveDate, Actual)>>> {
    let plans: Vec<Plan> = keys.iter().map(plan).collect::<AppResult<_>>()?;
    // Only the keys with something to read, indexed as `read_many` numbers them.
    let mut index = Vec::new();
    let mut readings = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        if let Some(r) = &p.reading {
            index.push(i);
            readings.push(r.clone());
        }
    }
    let rows = metrics::read_many(db, &readings).await?;
    let mut by_key: Vec<Vec<&ReadingRow>> = vec![Vec::new(); keys.len()];
    for r in &rows {
        if let Some(list) = index.get(r.k).and_then(|i| by_key.get_mut(*i)) {
            list.push(r);
        }
    }
    Ok(keys
        .iter()
        .zip(&plans)
        .zip(&by_key)
        .map(|((key, plan), rows)| values(key, plan, rows))
        .collect())
}

/// The goal's metric over `[periodStart, min(periodEnd, to))`.
pub async fn actual(
    db: &impl ConnectionTrait,
    g: &goal::Model,
    to: DateTime<Utc>,
) -> AppResult<Actual> {
    let k = kind(g.metric);
    Ok(read(db, &[ReadKey::actual(g, to)])
        .await?
        .first()
        .and_then(|v| v.first())
        .map_or(Actual::zero(k), |(_, a)| *a))
}

/// The cumulative actual at the end of each bucket of `interval` over the
/// goal's period (the last bucket ends with the period): `(bucket start,
/// actual from periodStart to the bucket's end)`.
pub async fn cumulative(
    db: &impl ConnectionTrait,
    g: &goal::Model,
    interval: Interval,
) -> AppResult<Vec<(NaiveDate, Actual)>> {
    Ok(read(db, &[ReadKey::series(g, interval)])
        .await?
        .pop()
        .unwrap_or_default())
}
