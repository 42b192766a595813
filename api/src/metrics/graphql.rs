//! `metrics(period, filter)`: every metric as a flat, BI-friendly shape.
//! Each field runs its own SQL only when selected.
//! Metric statements run on the metrics pool (`context::metrics_db`).

use super::service::{self, GroupBy, Interval, MetricFilter, Model, Period, SeriesMetric};
use crate::auth::READERS;
use crate::graphql::context::{metrics_db, parse_id, parse_ids, require, settings};
use crate::records::common::units_to_money;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::enums::{Channel, OpportunityStage, Segment};
use rust_decimal::Decimal;

/// A half-open period `[from, to)` in UTC.
#[derive(InputObject, Clone, Copy)]
pub struct PeriodInput {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Filters every metric takes, each read from the record the metric counts:
/// lead metrics read segment and target from the lead's account and team
/// from the lead; opportunity metrics from the opportunity's account, its
/// originating lead (source, campaign) and its owner (team); retention from
/// the account (team: its owner's; source and campaign: any of its leads).
/// No filter is ever ignored. See docs/metrics.md, "Filters".
#[derive(InputObject, Default, Clone)]
pub struct MetricFilterInput {
    pub segment: Option<Segment>,
    pub source: Option<Channel>,
    pub campaign_id: Option<ID>,
    pub team_id: Option<ID>,
    pub owner_id: Option<ID>,
    pub account_ids: Option<Vec<ID>>,
    pub is_target: Option<bool>,
}

#[derive(Default)]
pub struct MetricsQuery;

#[Object]
impl MetricsQuery {
    /// Shared revenue metrics over a period (every role may read them).
    /// Every number is defined, with its fine print and an example, in
    /// docs/metrics.md of the Lockstep repository.
    async fn metrics(
        &self,
        ctx: &Context<'_>,
        period: PeriodInput,
        filter: Option<MetricFilterInput>,
    ) -> Result<Metrics> {
        require(ctx, READERS, "read metrics")?;
        let f = filter.unwrap_or_default();
        let opt_id =
            |id: &Option<ID>, field: &str| id.as_ref().map(|i| parse_id(i, field)).transpose();
        Ok(Metrics {
            period: Period::new(period.from, period.to)?,
            filter: MetricFilter {
                segment: f.segment,
                source: f.source,
                campaign_id: opt_id(&f.campaign_id, "campaignId")?,
                team_id: opt_id(&f.team_id, "teamId")?,
                owner_id: opt_id(&f.owner_id, "ownerId")?,
                account_ids: parse_ids(&f.account_ids.unwrap_or_default(), "accountIds")?,
                is_target: f.is_target,
            },
            outcomes: tokio::sync::OnceCell::new(),
        })
    }
}

pub struct Metrics {
    period: Period,
    filter: MetricFilter,
    /// Won/lost counts and won amount, one statement shared by winRate,
    /// averageDealSize and wonRevenue (salesCycle reads its median apart).
    outcomes: tokio::sync::OnceCell<service::Outcomes>,
}

impl Metrics {
    async fn outcomes(&self, ctx: &Context<'_>) -> Result<&service::Outcomes> {
        let db = metrics_db(ctx)?;
        Ok(self
            .outcomes
            .get_or_try_init(|| service::outcome_totals(db, &self.period, &self.filter))
            .await?)
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum FunnelStageName {
    Inquiry,
    Mql,
    Sal,
    Sql,
    Opportunity,
    Won,
}

#[derive(SimpleObject)]
pub struct FunnelStage {
    pub stage: FunnelStageName,
    /// Leads of the cohort whose history entered this stage or a later one.
    pub reached: i64,
    /// reached(next stage) / reached(this stage); null for WON or when none reached it.
    pub conversion: Option<f64>,
    /// Median hours from first entering this stage to first entering the
    /// next, over leads whose history entered both stages themselves
    /// (docs/metrics.md, "Funnel").
    pub median_hours_to_next: Option<f64>,
}

#[derive(SimpleObject)]
pub struct Funnel {
    pub stages: Vec<FunnelStage>,
    /// WON reached / INQUIRY reached.
    pub inquiry_to_won: Option<f64>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ClosedLoopGroup {
    Source,
    Campaign,
    CampaignKind,
    Segment,
}

#[derive(SimpleObject)]
pub struct ClosedLoopRow {
    /// The source, campaign id, campaign kind or segment (`NONE` when the lead has none).
    pub key: String,
    pub campaign_id: Option<ID>,
    pub campaign_name: Option<String>,
    pub leads: i64,
    pub mqls: i64,
    pub opportunities: i64,
    pub won: i64,
    pub won_revenue: Decimal,
    /// won / leads.
    pub close_rate: Option<f64>,
    pub avg_deal_size: Option<Decimal>,
    pub median_cycle_days: Option<f64>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AttributionModel {
    FirstTouch,
    LastTouch,
    Linear,
    WShaped,
}

#[derive(SimpleObject)]
pub struct AttributionRow {
    pub campaign_id: Option<ID>,
    pub campaign_name: Option<String>,
    /// True for revenue whose opportunity had no touch before it was created.
    pub unattributed: bool,
    /// Credited revenue, rounded to the currency's decimals by largest
    /// remainder (the rows add up to `total`).
    pub revenue: Decimal,
    /// Credited share of opportunities.
    pub opportunities: f64,
}

#[derive(SimpleObject)]
pub struct Attribution {
    pub rows: Vec<AttributionRow>,
    /// Revenue won in the period (the exact sum the rows divide).
    pub total: Decimal,
}

#[derive(SimpleObject)]
pub struct SpeedToLead {
    /// Median hours from creation to first touch, over touched leads.
    pub median_hours: Option<f64>,
    pub touched: i64,
    pub untouched: i64,
}

#[derive(SimpleObject)]
pub struct PipelineStage {
    pub stage: OpportunityStage,
    pub count: i64,
    pub amount: Decimal,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Pipeline {
    /// Open amount, all stages.
    pub total: Decimal,
    pub stages: Vec<PipelineStage>,
    #[graphql(skip)]
    units: i64,
    #[graphql(skip)]
    at: DateTime<Utc>,
}

#[async_graphql::ComplexObject]
impl Pipeline {
    /// Pipeline coverage of a REVENUE_WON goal at the period's end: this
    /// pipeline / (the goal's target − revenue won in the goal's period, by
    /// its filters, before the period's end). Null once the goal is met.
    async fn coverage(&self, ctx: &Context<'_>, goal_id: ID) -> Result<Option<f64>> {
        let db = metrics_db(ctx)?;
        let g = crate::goals::service::get(db, parse_id(&goal_id, "goalId")?).await?;
        if g.metric != entity::enums::GoalMetric::RevenueWon {
            return Err(crate::error::AppError::bad_input(
                "goalId",
                "coverage is defined for REVENUE_WON goals only",
            )
            .into());
        }
        let won = crate::goals::actuals::actual(db, &g, self.at).await?;
        let left = g.target - won.n;
        Ok((left > 0).then(|| self.units as f64 / left as f64))
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SeriesMetricName {
    LeadsCreated,
    Mqls,
    OpportunitiesCreated,
    /// Amount of the opportunities created in each bucket.
    PipelineCreated,
    /// The open pipeline as it stood at each bucket's end (the period's end
    /// for the last bucket): `amount` its total, `value` its opportunities.
    Pipeline,
    WonRevenue,
    WinRate,
    AverageDealSize,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SeriesInterval {
    Day,
    /// ISO weeks, starting Monday.
    Week,
    Month,
    Quarter,
}

/// One bucket of a series: counts and rates in `value`, money in `amount`.
#[derive(SimpleObject)]
pub struct SeriesPoint {
    pub start: DateTime<Utc>,
    pub value: Option<f64>,
    pub amount: Option<Decimal>,
}

fn money(units: i64, currency: &str) -> Decimal {
    units_to_money(units, currency)
}

/// Σ units/denominator, exactly, in whole currency units (not rounded).
fn exact(parts: &[(i64, i64)]) -> Decimal {
    let sum: Decimal = parts
        .iter()
        .filter(|(_, d)| *d != 0)
        .map(|(u, d)| Decimal::from(*u) / Decimal::from(*d))
        .sum();
    sum / Decimal::from(entity::money::UNITS_PER_WHOLE)
}

/// Rounds exact credits to the currency's decimals so that they add up to
/// `total` (already rounded) exactly: each is rounded down, then the minor
/// units left over go one each to the largest remainders (ties: the lower
/// campaign id first, the unattributed row before any campaign).
fn largest_remainder(
    exact: &[(Option<uuid::Uuid>, Decimal)],
    total: Decimal,
    currency: &str,
) -> Vec<Decimal> {
    let dp = crate::records::common::minor_units(currency);
    let scale = Decimal::from(10i64.pow(dp));
    let mut floors: Vec<Decimal> = exact.iter().map(|(_, x)| (x * scale).floor()).collect();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a].1 * scale - floors[a];
        let rb = exact[b].1 * scale - floors[b];
        rb.cmp(&ra).then(exact[a].0.cmp(&exact[b].0))
    });
    let left = (total * scale).round() - floors.iter().copied().sum::<Decimal>();
    let mut left = i64::try_from(left).unwrap_or(0).max(0);
    if !order.is_empty() {
        for &i in order.iter().cycle() {
            if left == 0 {
                break;
            }
            floors[i] += Decimal::ONE;
            left -= 1;
        }
    }
    floors
        .into_iter()
        .map(|m| {
            let mut r = m / scale;
            r.rescale(dp);
            r
        })
        .collect()
}

/// Rounds (half to even) and pads to the currency's decimals.
fn round_money(d: Decimal, currency: &str) -> Decimal {
    let dp = crate::records::common::minor_units(currency);
    let mut r = d.round_dp(dp);
    r.rescale(dp);
    r
}

fn share(parts: &[(i64, i64)]) -> f64 {
    parts
        .iter()
        .filter(|(_, d)| *d != 0)
        .map(|(n, d)| *n as f64 / *d as f64)
        .sum()
}

fn avg_money(units: i64, n: i64, currency: &str) -> Option<Decimal> {
    (n != 0).then(|| {
        let avg =
            Decimal::from(units) / Decimal::from(n) / Decimal::from(entity::money::UNITS_PER_WHOLE);
        round_money(avg, currency)
    })
}

#[Object]
impl Metrics {
    async fn period_from(&self) -> DateTime<Utc> {
        self.period.from
    }
    async fn period_to(&self) -> DateTime<Utc> {
        self.period.to
    }

    /// The combined funnel of the leads created in the period
    /// (docs/metrics.md, "Funnel").
    async fn funnel(&self, ctx: &Context<'_>) -> Result<Funnel> {
        let f = service::funnel(metrics_db(ctx)?, &self.period, &self.filter).await?;
        let name = |s: &str| match s {
            "INQUIRY" => FunnelStageName::Inquiry,
            "MQL" => FunnelStageName::Mql,
            "SAL" => FunnelStageName::Sal,
            "SQL" => FunnelStageName::Sql,
            "OPPORTUNITY" => FunnelStageName::Opportunity,
            _ => FunnelStageName::Won,
        };
        Ok(Funnel {
            stages: f
                .stages
                .into_iter()
                .map(|s| FunnelStage {
                    stage: name(s.stage),
                    reached: s.reached,
                    conversion: s.conversion,
                    median_hours_to_next: s.median_hours_to_next,
                })
                .collect(),
            inquiry_to_won: f.inquiry_to_won,
        })
    }

    /// Leads created in the period followed to revenue, grouped
    /// (docs/metrics.md, "Closed loop").
    async fn closed_loop(
        &self,
        ctx: &Context<'_>,
        group_by: ClosedLoopGroup,
    ) -> Result<Vec<ClosedLoopRow>> {
        let currency = settings(ctx)?.currency.clone();
        let group = match group_by {
            ClosedLoopGroup::Source => GroupBy::Source,
            ClosedLoopGroup::Campaign => GroupBy::Campaign,
            ClosedLoopGroup::CampaignKind => GroupBy::CampaignKind,
            ClosedLoopGroup::Segment => GroupBy::Segment,
        };
        // The sales cycle's medians cost a statement of their own: only
        // when asked for.
        let cycle = if ctx.look_ahead().field("medianCycleDays").exists() {
            service::Cycle::With
        } else {
            service::Cycle::Without
        };
        let rows = service::closed_loop(metrics_db(ctx)?, &self.period, &self.filter, group, cycle)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ClosedLoopRow {
                close_rate: (r.leads != 0).then(|| r.won as f64 / r.leads as f64),
                avg_deal_size: avg_money(r.won_amount, r.won, &currency),
                won_revenue: money(r.won_amount, &currency),
                key: r.key,
                campaign_id: r.campaign_id.map(|id| ID(id.to_string())),
                campaign_name: r.campaign_name,
                leads: r.leads,
                mqls: r.mqls,
                opportunities: r.opportunities,
                won: r.won,
                median_cycle_days: r.median_cycle_days,
            })
            .collect())
    }

    /// Revenue won in the period, credited to campaigns; the rows are rounded
    /// by largest remainder and add up to `total` exactly
    /// (docs/metrics.md, "Attribution").
    async fn attribution(&self, ctx: &Context<'_>, model: AttributionModel) -> Result<Attribution> {
        let currency = settings(ctx)?.currency.clone();
        let model = match model {
            AttributionModel::FirstTouch => Model::FirstTouch,
            AttributionModel::LastTouch => Model::LastTouch,
            AttributionModel::Linear => Model::Linear,
            AttributionModel::WShaped => Model::WShaped,
        };
        let (credits, total) =
            service::attribution(metrics_db(ctx)?, &self.period, &self.filter, model).await?;
        let total = money(total, &currency);
        let exacts: Vec<_> = credits
            .iter()
            .map(|c| (c.campaign_id, exact(&c.parts)))
            .collect();
        let rounded = largest_remainder(&exacts, total, &currency);
        let mut rows: Vec<AttributionRow> = credits
            .into_iter()
            .zip(rounded)
            .map(|(c, revenue)| AttributionRow {
                unattributed: c.campaign_id.is_none(),
                campaign_id: c.campaign_id.map(|id| ID(id.to_string())),
                campaign_name: c.campaign_name,
                revenue,
                opportunities: share(&c.share_parts),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.revenue
                .cmp(&a.revenue)
                .then(a.campaign_name.cmp(&b.campaign_name))
        });
        Ok(Attribution { rows, total })
    }

    /// Won / (won + lost), over opportunities closed in the period
    /// (docs/metrics.md, "Win rate").
    async fn win_rate(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        Ok(self.outcomes(ctx).await?.win_rate())
    }

    /// Mean amount of the opportunities won in the period
    /// (docs/metrics.md, "Win rate, average deal size…").
    async fn average_deal_size(&self, ctx: &Context<'_>) -> Result<Option<Decimal>> {
        let o = self.outcomes(ctx).await?;
        Ok(avg_money(o.won_amount, o.won, &settings(ctx)?.currency))
    }

    /// Revenue won in the period (docs/metrics.md, "Win rate, average deal size…").
    async fn won_revenue(&self, ctx: &Context<'_>) -> Result<Decimal> {
        let o = self.outcomes(ctx).await?;
        Ok(money(o.won_amount, &settings(ctx)?.currency))
    }

    /// Median days from creation to close of the opportunities won in the
    /// period (docs/metrics.md, "Win rate, average deal size…").
    async fn sales_cycle(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        Ok(service::sales_cycle_days(metrics_db(ctx)?, &self.period, &self.filter).await?)
    }

    /// Median hours from a lead's creation to its first touch (leads created
    /// in the period; docs/metrics.md, "Speed to lead").
    async fn speed_to_lead(&self, ctx: &Context<'_>) -> Result<SpeedToLead> {
        let s = service::speed_to_lead(metrics_db(ctx)?, &self.period, &self.filter).await?;
        Ok(SpeedToLead {
            median_hours: s.median_hours,
            touched: s.touched,
            untouched: s.untouched,
        })
    }

    /// Of the accounts that were customers at `from`, the fraction not
    /// churned before `to` (docs/metrics.md, "Retention").
    async fn retention(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        Ok(
            service::retention(metrics_db(ctx)?, &self.period, &self.filter)
                .await?
                .rate(),
        )
    }

    /// The pipeline as it stood at the period's end: opportunities created
    /// before `to` that their stage history puts in an open stage at `to`,
    /// by that stage, at their current amount (docs/metrics.md, "Pipeline").
    async fn pipeline(&self, ctx: &Context<'_>) -> Result<Pipeline> {
        let currency = settings(ctx)?.currency.clone();
        let stages = service::pipeline(metrics_db(ctx)?, &self.period, &self.filter).await?;
        let total: i64 = stages.iter().map(|s| s.amount).sum();
        Ok(Pipeline {
            units: total,
            at: self.period.to,
            total: money(total, &currency),
            stages: stages
                .into_iter()
                .map(|s| PipelineStage {
                    stage: s.stage,
                    count: s.count,
                    amount: money(s.amount, &currency),
                })
                .collect(),
        })
    }

    /// A metric per day, week (from Monday), month or quarter, empty buckets
    /// included (docs/metrics.md, "Series").
    async fn series(
        &self,
        ctx: &Context<'_>,
        metric: SeriesMetricName,
        interval: SeriesInterval,
    ) -> Result<Vec<SeriesPoint>> {
        let currency = settings(ctx)?.currency.clone();
        let m = match metric {
            SeriesMetricName::LeadsCreated => SeriesMetric::LeadsCreated,
            SeriesMetricName::Mqls => SeriesMetric::Mqls,
            SeriesMetricName::OpportunitiesCreated => SeriesMetric::OpportunitiesCreated,
            SeriesMetricName::PipelineCreated => SeriesMetric::PipelineCreated,
            SeriesMetricName::Pipeline => SeriesMetric::Pipeline,
            SeriesMetricName::WonRevenue => SeriesMetric::WonRevenue,
            SeriesMetricName::WinRate => SeriesMetric::WinRate,
            SeriesMetricName::AverageDealSize => SeriesMetric::AverageDealSize,
        };
        let i = match interval {
            SeriesInterval::Day => Interval::Day,
            SeriesInterval::Week => Interval::Week,
            SeriesInterval::Month => Interval::Month,
            SeriesInterval::Quarter => Interval::Quarter,
        };
        let buckets = service::series(metrics_db(ctx)?, &self.period, &self.filter, m, i).await?;
        Ok(buckets
            .into_iter()
            .map(|b| {
                let start = b
                    .start
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc())
                    .unwrap_or(self.period.from);
                let (value, amount) = match m {
                    SeriesMetric::LeadsCreated
                    | SeriesMetric::Mqls
                    | SeriesMetric::OpportunitiesCreated => (Some(b.n as f64), None),
                    SeriesMetric::PipelineCreated | SeriesMetric::WonRevenue => {
                        (None, Some(money(b.units, &currency)))
                    }
                    SeriesMetric::Pipeline => (Some(b.n as f64), Some(money(b.units, &currency))),
                    SeriesMetric::WinRate => ((b.d != 0).then(|| b.n as f64 / b.d as f64), None),
                    SeriesMetric::AverageDealSize => (None, avg_money(b.units, b.n, &currency)),
                };
                SeriesPoint {
                    start,
                    value,
                    amount,
                }
            })
            .collect())
    }
    /// SLA compliance of a policy, per period bucket of the policy (MONTH or
    /// QUARTER, the first and last cut to the period): MQLs delivered (leads
    /// handed off under the policy, by the time they became MQL) against the
    /// target; hand-offs due in the bucket (by `dueAt`), answered in time
    /// (ACCEPTED or REJECTED at or before `dueAt`) and the rate; median
    /// response hours over the due ones answered; and the due ones still
    /// PENDING past `dueAt` now. Filters read a lead hand-off's lead and an
    /// opportunity hand-off's opportunity, as the other metrics do.
    async fn sla_compliance(
        &self,
        ctx: &Context<'_>,
        policy_id: ID,
    ) -> Result<Vec<crate::metrics::handoffs::graphql::SlaComplianceRow>> {
        let db = metrics_db(ctx)?;
        let policy =
            crate::records::handoffs::policies::get(db, parse_id(&policy_id, "policyId")?).await?;
        let rows = crate::metrics::handoffs::sla_compliance(
            db,
            &self.period,
            &self.filter,
            &policy,
            chrono::Utc::now(),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|b| crate::metrics::handoffs::graphql::SlaComplianceRow::new(&policy, b))
            .collect())
    }

    /// The hand-offs handed in the period, grouped by route (fromTeam →
    /// toTeam), rejection reason, or user (who answered, else who it was
    /// handed to): handed, accepted, rejected, expired, still pending, the
    /// acceptance rate (accepted / handed), rejections by reason, and how
    /// many accepted ones went on to an opportunity and to a win.
    async fn handoff_audit(
        &self,
        ctx: &Context<'_>,
        group_by: crate::metrics::handoffs::graphql::HandoffAuditGroup,
    ) -> Result<Vec<crate::metrics::handoffs::graphql::HandoffAuditRow>> {
        let rows = crate::metrics::handoffs::handoff_audit(
            metrics_db(ctx)?,
            &self.period,
            &self.filter,
            group_by.into(),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(k, c)| crate::metrics::handoffs::graphql::HandoffAuditRow::new(k, c))
            .collect())
    }
}
