//! What a goal has reached: its metric over its own period (cut at the time
//! asked for) and filters, read through the metrics service — the same SQL
//! (and rollups) `metrics(period, filter)` answers with — and the
//! attainment against a target as an exact fraction.

use crate::compensation::payout::Fraction;
use crate::error::AppResult;
use crate::metrics::service::{
    self as metrics, Interval, MetricFilter, Period, SeriesMetric, midnight,
};
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::GoalMetric;
use entity::goal;
use entity::money::UNITS_PER_WHOLE;
use sea_orm::ConnectionTrait;

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
    fn zero(k: Kind) -> Actual {
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

/// The goal's filters as the metrics service takes them.
pub fn filter(g: &goal::Model) -> MetricFilter {
    MetricFilter {
        segment: g.segment,
        source: g.source,
        campaign_id: g.campaign_id,
        team_id: g.team_id,
        ..Default::default()
    }
}

/// The goal's period cut at `to` (none when nothing of it is before `to`).
fn period_to(g: &goal::Model, to: DateTime<Utc>) -> Option<Period> {
    Period::new(g.period_start, g.period_end.min(to)).ok()
}

/// The goal's metric over `[periodStart, min(periodEnd, to))`.
pub async fn actual(
    db: &impl ConnectionTrait,
    g: &goal::Model,
    to: DateTime<Utc>,
) -> AppResult<Actual> {
    let k = kind(g.metric);
    let Some(p) = period_to(g, to) else {
        return Ok(Actual::zero(k));
    };
    let f = filter(g);
    let ends = [p.to];
    Ok(match g.metric {
        GoalMetric::RevenueWon => {
            let o = metrics::outcomes(db, &p, &f).await?;
            Actual {
                n: o.won_amount,
                d: 1,
            }
        }
        GoalMetric::WinRate => {
            let o = metrics::outcomes(db, &p, &f).await?;
            Actual {
                n: o.won,
                d: o.won + o.lost,
            }
        }
        GoalMetric::Retention => {
            let r = metrics::retention(db, &p, &f).await?;
            Actual {
                n: r.retained,
                d: r.customers_at_start,
            }
        }
        GoalMetric::PipelineCreated | GoalMetric::Mqls => {
            // The series' SQL, in as few buckets as it has.
            let (m, money) = series_metric(g.metric);
            let buckets = metrics::series(db, &p, &f, m, Interval::Quarter).await?;
            let n = buckets
                .iter()
                .map(|b| if money { b.units } else { b.n })
                .sum();
            Actual { n, d: 1 }
        }
        GoalMetric::NewCustomers => Actual {
            n: metrics::new_customers_at(db, p.from, &ends, &f)
                .await?
                .first()
                .copied()
                .unwrap_or(0),
            d: 1,
        },
        GoalMetric::QualifiedLeadsWon => Actual {
            n: metrics::qualified_leads_won_at(db, p.from, &ends, &f)
                .await?
                .first()
                .copied()
                .unwrap_or(0),
            d: 1,
        },
    })
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

/// The cumulative actual at the end of each bucket of `interval` over the
/// goal's period (the last bucket ends with the period): `(bucket start,
/// actual from periodStart to the bucket's end)`.
pub async fn cumulative(
    db: &impl ConnectionTrait,
    g: &goal::Model,
    interval: Interval,
) -> AppResult<Vec<(NaiveDate, Actual)>> {
    let p = Period::new(g.period_start, g.period_end)?;
    let f = filter(g);
    let starts = metrics::bucket_starts(&p, interval)?;
    let ends: Vec<DateTime<Utc>> = starts
        .iter()
        .map(|s| midnight(interval.next(*s)).min(p.to))
        .collect();
    let counts =
        |v: Vec<i64>| -> Vec<Actual> { v.into_iter().map(|n| Actual { n, d: 1 }).collect() };
    let values: Vec<Actual> = match g.metric {
        GoalMetric::NewCustomers => counts(metrics::new_customers_at(db, p.from, &ends, &f).await?),
        GoalMetric::QualifiedLeadsWon => {
            counts(metrics::qualified_leads_won_at(db, p.from, &ends, &f).await?)
        }
        GoalMetric::Retention => metrics::retention_at(db, p.from, &ends, &f)
            .await?
            .into_iter()
            .map(|r| Actual {
                n: r.retained,
                d: r.customers_at_start,
            })
            .collect(),
        GoalMetric::RevenueWon
        | GoalMetric::PipelineCreated
        | GoalMetric::Mqls
        | GoalMetric::WinRate => {
            let (m, money) = series_metric(g.metric);
            let rate = g.metric == GoalMetric::WinRate;
            let buckets = metrics::series(db, &p, &f, m, interval).await?;
            let mut acc = Actual {
                n: 0,
                d: if rate { 0 } else { 1 },
            };
            buckets
                .iter()
                .map(|b| {
                    acc.n += if money { b.units } else { b.n };
                    if rate {
                        acc.d += b.d;
                    }
                    acc
                })
                .collect()
        }
    };
    Ok(starts.into_iter().zip(values).collect())
}
