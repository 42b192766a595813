//! Goals in GraphQL: `goal`, `goals`, `Team.goals`, and the mutations.

use super::actuals::{self, Actual, Kind, ReadKey};
use super::service::{self, GoalFilter, GoalOrder, GoalPatch, NewGoal};
use crate::auth::{PLANNERS, READERS};
use crate::compensation::payout::Fraction;
use crate::error::{AppError, AppResult};
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{
    db, load_children, load_one, parse_id, parse_ids, prime, require, settings,
};
use crate::graphql::inputs::{OrderDirection, patch, patch_id};
use crate::graphql::loaders::{GoalReadings, GoalTeamsOf, GoalVersionsOf, TeamById};
use crate::metrics::graphql::SeriesInterval;
use crate::metrics::service::Interval;
use crate::pagination::PageRequest;
use crate::records::common::{money_to_units, units_to_money};
use crate::records::teams::graphql::Team;
use async_graphql::Lookahead;
use async_graphql::dataloader::{DataLoader, HashMapCache};
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use entity::enums::{Channel, GoalMetric, Segment};
use entity::{goal, goal_version};
use rust_decimal::Decimal;

/// A ratio given by a client (weight, threshold, a rate or count target…)
/// → 1/10,000 units: not negative, at most 4 decimals, at most 1,000,000.
pub fn ratio_units(d: Decimal, field: &str) -> AppResult<i64> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must not be negative"),
        ));
    }
    if d.normalize().scale() > 4 {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` has more than 4 decimals"),
        ));
    }
    if d > Decimal::from(1_000_000) {
        return Err(AppError::bad_input(
            field,
            format!("`{field}` must be at most 1000000"),
        ));
    }
    Ok((d * Decimal::from(entity::money::UNITS_PER_WHOLE))
        .trunc()
        .to_string()
        .parse::<i64>()
        .unwrap_or(0))
}

/// 1/10,000 units → a decimal without trailing zeros.
pub fn units_ratio(units: i64) -> Decimal {
    Decimal::new(units, 4).normalize()
}

/// A goal's target given by a client → 1/10,000 units.
fn target_units(metric: GoalMetric, target: Decimal, currency: &str) -> AppResult<i64> {
    match actuals::kind(metric) {
        Kind::Money => money_to_units(target, currency, "target"),
        Kind::Count | Kind::Rate => ratio_units(target, "target"),
    }
}

/// A target (1/10,000 units) as a client reads it.
pub fn target_value(metric: GoalMetric, target: i64, currency: &str) -> Decimal {
    match actuals::kind(metric) {
        Kind::Money => units_to_money(target, currency),
        Kind::Count | Kind::Rate => units_ratio(target),
    }
}

/// An actual as a client reads it: money, a count, or a rate (null over nothing).
pub fn actual_value(metric: GoalMetric, a: Actual, currency: &str) -> Option<Decimal> {
    match actuals::kind(metric) {
        Kind::Money => Some(units_to_money(a.n, currency)),
        Kind::Count => Some(Decimal::from(a.n)),
        Kind::Rate => Fraction::new(i128::from(a.n), i128::from(a.d)).and_then(|f| f.to_decimal()),
    }
}

/// Where a goal stands against a straight line through its period.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum PaceStatus {
    /// Attainment at least 10% above what the straight line expects by now.
    Ahead,
    /// Within 10% of it.
    OnTrack,
    /// More than 10% below it.
    Behind,
}

/// The attainment expected by now and where the goal stands against it.
#[derive(SimpleObject)]
pub struct Pace {
    /// The share of the period elapsed by now (0 before it starts, 1 after
    /// it ends): the attainment a straight line through the period expects.
    /// For WIN_RATE and RETENTION, 1 throughout (a rate is meant to hold all along).
    pub expected: Decimal,
    /// AHEAD, ON_TRACK or BEHIND (null when there is no attainment: a rate over nothing).
    pub status: Option<PaceStatus>,
}

/// The expected attainment at `now` and the status of `attainment` against it.
pub fn pace(g: &goal::Model, attainment: Option<Fraction>, now: DateTime<Utc>) -> Pace {
    let expected = if actuals::kind(g.metric) == Kind::Rate {
        Decimal::ONE
    } else {
        let total = (g.period_end - g.period_start).num_milliseconds();
        let gone = (now - g.period_start).num_milliseconds().clamp(0, total);
        (Decimal::from(gone) / Decimal::from(total.max(1))).normalize()
    };
    let tenth = Decimal::new(1, 1);
    let status = attainment.and_then(|a| a.to_decimal()).map(|a| {
        if a > expected && a >= expected * (Decimal::ONE + tenth) {
            PaceStatus::Ahead
        } else if a < expected * (Decimal::ONE - tenth) {
            PaceStatus::Behind
        } else {
            PaceStatus::OnTrack
        }
    });
    Pace { expected, status }
}

/// One version of a goal's target.
pub struct GoalVersion(pub goal_version::Model, pub GoalMetric);

#[Object]
impl GoalVersion {
    /// 1 for the goal as created, then one more per change of target.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn target(&self, ctx: &Context<'_>) -> Result<Decimal> {
        Ok(target_value(
            self.1,
            self.0.target,
            &settings(ctx)?.currency,
        ))
    }
    /// From when this target held (until the next version).
    async fn valid_from(&self) -> DateTime<Utc> {
        self.0.valid_from
    }
    /// Who made the change (the token subject).
    async fn changed_by(&self) -> &str {
        &self.0.changed_by
    }
}

/// A point of a goal's cumulative series.
#[derive(SimpleObject)]
pub struct GoalPoint {
    /// The bucket's start.
    pub start: DateTime<Utc>,
    /// The actual from the period's start to the bucket's end (the period's
    /// end for the last bucket).
    pub actual: Option<Decimal>,
    /// That actual / the target (as it stands now, or at `asOf`).
    pub attainment: Option<Decimal>,
}

/// A goal shared by one or more teams: a metric over a half-open period,
/// with filters, against a target (docs/goals.md).
pub struct Goal {
    pub model: goal::Model,
    /// The time the goal is read at (null: now).
    pub as_of: Option<DateTime<Utc>>,
    /// The target as it stood then.
    pub target: i64,
    /// `asOf`, or the time the goal was read (every field reads at one instant).
    when: DateTime<Utc>,
}

/// Reads a goal's actual or series through the request's `GoalReadings`
/// loader (batched with the other goals of the request).
async fn reading(ctx: &Context<'_>, key: ReadKey) -> Result<Vec<(NaiveDate, Actual)>> {
    let loader = ctx
        .data_opt::<DataLoader<GoalReadings, HashMapCache>>()
        .ok_or_else(|| AppError::Internal("loader missing".into()))?;
    Ok(loader
        .load_one(key)
        .await
        .map_err(async_graphql::Error::from)?
        .unwrap_or_default())
}

/// The intervals of the `series` fields selected in `look` (a goal's selection).
fn series_intervals(look: &Lookahead<'_>) -> Vec<Interval> {
    let mut out = Vec::new();
    for f in look.field("series").selection_fields() {
        for (name, v) in f.arguments().unwrap_or_default() {
            if name.as_str() != "interval" {
                continue;
            }
            if let async_graphql::Value::Enum(e) = v {
                out.push(match e.as_str() {
                    "DAY" => Interval::Day,
                    "WEEK" => Interval::Week,
                    "MONTH" => Interval::Month,
                    _ => Interval::Quarter,
                });
            }
        }
    }
    out
}

/// Loads in one batch what the selection `look` (a goal's fields) will read
/// of `goals`: their actuals and series. The nodes' fields are then
/// answered from the request's loader cache, however long they take to
/// resolve (the DataLoader's window alone may split a large list).
pub async fn prime_goals(ctx: &Context<'_>, look: Lookahead<'_>, goals: &[&Goal]) -> Result<()> {
    let actual = ["actual", "attainment", "remaining", "pace"]
        .iter()
        .any(|f| look.field(f).exists());
    let intervals = series_intervals(&look);
    let mut keys = Vec::new();
    for g in goals {
        if actual {
            keys.push(g.actual_key());
        }
        keys.extend(intervals.iter().map(|i| ReadKey::series(&g.model, *i)));
    }
    prime::<GoalReadings, _>(ctx, keys).await
}

impl Goal {
    pub fn now(model: goal::Model) -> Goal {
        Goal {
            target: model.target,
            model,
            as_of: None,
            when: Utc::now(),
        }
    }

    pub fn at(model: goal::Model, as_of: DateTime<Utc>, target: i64) -> Goal {
        Goal {
            model,
            as_of: Some(as_of),
            target,
            when: as_of,
        }
    }

    fn when(&self) -> DateTime<Utc> {
        self.when
    }

    fn actual_key(&self) -> ReadKey {
        ReadKey::actual(&self.model, self.when())
    }

    async fn measured(&self, ctx: &Context<'_>) -> Result<Actual> {
        let k = actuals::kind(self.model.metric);
        Ok(reading(ctx, self.actual_key())
            .await?
            .first()
            .map_or(Actual::zero(k), |(_, a)| *a))
    }

    fn attainment_of(&self, a: Actual) -> Option<Fraction> {
        a.attainment(actuals::kind(self.model.metric), self.target)
    }
}

#[Object]
impl Goal {
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.model.name
    }
    async fn metric(&self) -> GoalMetric {
        self.model.metric
    }
    /// The target (as it stood at `asOf`, when given): money for REVENUE_WON
    /// and PIPELINE_CREATED, a count for NEW_CUSTOMERS, QUALIFIED_LEADS_WON
    /// and MQLS, a fraction for WIN_RATE and RETENTION.
    async fn target(&self, ctx: &Context<'_>) -> Result<Decimal> {
        Ok(target_value(
            self.model.metric,
            self.target,
            &settings(ctx)?.currency,
        ))
    }
    /// Start of the half-open period `[periodStart, periodEnd)`.
    async fn period_start(&self) -> DateTime<Utc> {
        self.model.period_start
    }
    async fn period_end(&self) -> DateTime<Utc> {
        self.model.period_end
    }
    /// Filter: the segment of the records counted.
    async fn segment(&self) -> Option<Segment> {
        self.model.segment
    }
    /// Filter: the source of the records counted.
    async fn source(&self) -> Option<Channel> {
        self.model.source
    }
    /// Filter: the campaign of the records counted.
    async fn campaign_id(&self) -> Option<ID> {
        self.model.campaign_id.map(|id| ID(id.to_string()))
    }
    /// Filter: the team whose records count (see `teams` for who shares the goal).
    async fn team_id(&self) -> Option<ID> {
        self.model.team_id.map(|id| ID(id.to_string()))
    }
    /// The teams that share the goal.
    async fn teams(&self, ctx: &Context<'_>) -> Result<Vec<Team>> {
        let rows = load_children::<GoalTeamsOf, _>(ctx, self.model.id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(t) = load_one::<TeamById>(ctx, Some(r.team_id)).await? {
                out.push(Team(t));
            }
        }
        Ok(out)
    }
    /// The time the goal is read at (null: now).
    async fn as_of(&self) -> Option<DateTime<Utc>> {
        self.as_of
    }
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.model.archived_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
    /// Every target the goal had, oldest first, with who changed it and when.
    async fn versions(&self, ctx: &Context<'_>) -> Result<Vec<GoalVersion>> {
        Ok(load_children::<GoalVersionsOf, _>(ctx, self.model.id)
            .await?
            .into_iter()
            .map(|v| GoalVersion(v, self.model.metric))
            .collect())
    }
    /// The goal's metric over its period and filters, up to now (or `asOf`),
    /// as the data stands: money, a count, or a rate (null over nothing).
    async fn actual(&self, ctx: &Context<'_>) -> Result<Option<Decimal>> {
        let a = self.measured(ctx).await?;
        Ok(actual_value(self.model.metric, a, &settings(ctx)?.currency))
    }
    /// actual / target, exact (null for a rate over nothing).
    async fn attainment(&self, ctx: &Context<'_>) -> Result<Option<Decimal>> {
        let a = self.measured(ctx).await?;
        Ok(self.attainment_of(a).and_then(|f| f.to_decimal()))
    }
    /// target − actual, never below 0.
    async fn remaining(&self, ctx: &Context<'_>) -> Result<Option<Decimal>> {
        let currency = &settings(ctx)?.currency;
        let a = self.measured(ctx).await?;
        let target = target_value(self.model.metric, self.target, currency);
        Ok(actual_value(self.model.metric, a, currency).map(|v| (target - v).max(Decimal::ZERO)))
    }
    /// The attainment a straight line through the period expects by now (or
    /// `asOf`), and whether the goal is AHEAD, ON_TRACK or BEHIND it.
    async fn pace(&self, ctx: &Context<'_>) -> Result<Pace> {
        let a = self.measured(ctx).await?;
        Ok(pace(&self.model, self.attainment_of(a), self.when()))
    }
    /// The cumulative actual at the end of each bucket of the period (days,
    /// weeks from Monday, months or quarters), as the data stands.
    #[graphql(complexity = 5)]
    async fn series(&self, ctx: &Context<'_>, interval: SeriesInterval) -> Result<Vec<GoalPoint>> {
        let currency = &settings(ctx)?.currency;
        let points = reading(ctx, ReadKey::series(&self.model, interval.into())).await?;
        Ok(points
            .into_iter()
            .map(|(start, a)| GoalPoint {
                start: crate::metrics::service::midnight(start),
                actual: actual_value(self.model.metric, a, currency),
                attainment: self.attainment_of(a).and_then(|f| f.to_decimal()),
            })
            .collect())
    }
}

impl From<SeriesInterval> for Interval {
    fn from(i: SeriesInterval) -> Interval {
        match i {
            SeriesInterval::Day => Interval::Day,
            SeriesInterval::Week => Interval::Week,
            SeriesInterval::Month => Interval::Month,
            SeriesInterval::Quarter => Interval::Quarter,
        }
    }
}

/// Which goals a list holds.
#[derive(InputObject, Default)]
pub struct GoalFilterInput {
    /// Goals this team shares.
    pub team_id: Option<ID>,
    /// Goals whose period holds this instant.
    pub active_at: Option<DateTime<Utc>>,
    /// Goals of these metrics.
    pub metric: Option<Vec<GoalMetric>>,
    /// Archived goals (true) or the others (false, the default).
    #[graphql(default)]
    pub archived: bool,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum GoalOrderField {
    Name,
    PeriodStart,
    CreatedAt,
}

#[derive(InputObject)]
pub struct GoalOrderInput {
    pub field: GoalOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct GoalsQuery;

#[Object]
impl GoalsQuery {
    /// One goal by id; with `asOf`, its target as it stood then (before
    /// the goal was made: its first target) and its actual, attainment and
    /// pace up to then.
    async fn goal(&self, ctx: &Context<'_>, id: ID, as_of: Option<DateTime<Utc>>) -> Result<Goal> {
        require(ctx, READERS, "read goals")?;
        let db = db(ctx)?;
        let g = service::get(db, parse_id(&id, "id")?).await?;
        Ok(match as_of {
            None => Goal::now(g),
            Some(at) => {
                let targets = service::targets_at(db, &[g.id], at).await?;
                let target = targets.get(&g.id).copied().unwrap_or(g.target);
                Goal::at(g, at, target)
            }
        })
    }

    /// Goals, filtered and ordered (default: by period start).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn goals(
        &self,
        ctx: &Context<'_>,
        filter: Option<GoalFilterInput>,
        order_by: Option<GoalOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Goal>> {
        require(ctx, READERS, "read goals")?;
        let f = filter.unwrap_or_default();
        let filter = GoalFilter {
            team_id: f
                .team_id
                .as_ref()
                .map(|t| parse_id(t, "teamId"))
                .transpose()?,
            active_at: f.active_at,
            metrics: f.metric.unwrap_or_default(),
            archived: f.archived,
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    GoalOrderField::Name => GoalOrder::Name,
                    GoalOrderField::PeriodStart => GoalOrder::PeriodStart,
                    GoalOrderField::CreatedAt => GoalOrder::CreatedAt,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (GoalOrder::PeriodStart, false),
        };
        let db = db(ctx)?.clone();
        let page = service::list(
            &db,
            &filter,
            order,
            desc,
            &PageRequest {
                first,
                after,
                last,
                before,
            },
        )
        .await?;
        let conn = connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            Goal::now,
        );
        let goals: Vec<&Goal> = conn.edges.iter().map(|e| &e.node).collect();
        let look = ctx.look_ahead();
        prime_goals(ctx, look.field("nodes"), &goals).await?;
        prime_goals(ctx, look.field("edges").field("node"), &goals).await?;
        Ok(conn)
    }
}

#[derive(InputObject)]
pub struct GoalInput {
    pub name: String,
    pub metric: GoalMetric,
    /// Above 0: money (in the deployment currency) for REVENUE_WON and
    /// PIPELINE_CREATED, a count for NEW_CUSTOMERS, QUALIFIED_LEADS_WON and
    /// MQLS, a fraction (at most 1) for WIN_RATE and RETENTION.
    pub target: Decimal,
    /// Start of the half-open period `[periodStart, periodEnd)`.
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Filter: count only records of this segment.
    pub segment: Option<Segment>,
    /// Filter: count only records of this source.
    pub source: Option<Channel>,
    /// Filter: count only records of this campaign.
    pub campaign_id: Option<ID>,
    /// Filter: count only records of this team (docs/metrics.md, "Filters").
    pub team_id: Option<ID>,
    /// The teams that share the goal (at least one).
    pub team_ids: Vec<ID>,
}

/// A change to a goal: fields left out are kept; a filter set to null is
/// cleared. A new target is kept as a new version.
#[derive(InputObject, Default)]
pub struct GoalPatchInput {
    pub name: Option<String>,
    pub target: Option<Decimal>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub segment: MaybeUndefined<Segment>,
    pub source: MaybeUndefined<Channel>,
    pub campaign_id: MaybeUndefined<ID>,
    pub team_id: MaybeUndefined<ID>,
    /// Replaces the teams that share the goal.
    pub team_ids: Option<Vec<ID>>,
}

#[derive(Default)]
pub struct GoalsMutation;

#[Object]
impl GoalsMutation {
    /// Creates a goal (ADMIN, REVOPS).
    async fn create_goal(&self, ctx: &Context<'_>, input: GoalInput) -> Result<Goal> {
        let who = require(ctx, PLANNERS, "create goals")?;
        let currency = &settings(ctx)?.currency;
        let opt = |id: &Option<ID>, f: &str| id.as_ref().map(|i| parse_id(i, f)).transpose();
        let g = service::create(
            db(ctx)?,
            &who.subject,
            NewGoal {
                name: input.name,
                metric: input.metric,
                target: target_units(input.metric, input.target, currency)?,
                period_start: input.period_start,
                period_end: input.period_end,
                segment: input.segment,
                source: input.source,
                campaign_id: opt(&input.campaign_id, "campaignId")?,
                team_id: opt(&input.team_id, "teamId")?,
                team_ids: parse_ids(&input.team_ids, "teamIds")?,
            },
        )
        .await?;
        Ok(Goal::now(g))
    }

    /// Changes a goal (ADMIN, REVOPS); a new target is a new version.
    async fn update_goal(&self, ctx: &Context<'_>, id: ID, input: GoalPatchInput) -> Result<Goal> {
        let who = require(ctx, PLANNERS, "change goals")?;
        let currency = &settings(ctx)?.currency;
        let db = db(ctx)?;
        let id = parse_id(&id, "id")?;
        let metric = service::get(db, id).await?.metric;
        let g = service::update(
            db,
            &who.subject,
            id,
            GoalPatch {
                name: input.name,
                target: input
                    .target
                    .map(|t| target_units(metric, t, currency))
                    .transpose()?,
                period_start: input.period_start,
                period_end: input.period_end,
                segment: patch(input.segment),
                source: patch(input.source),
                campaign_id: patch_id(input.campaign_id, "campaignId")?,
                team_id: patch_id(input.team_id, "teamId")?,
                team_ids: input
                    .team_ids
                    .map(|t| parse_ids(&t, "teamIds"))
                    .transpose()?,
            },
        )
        .await?;
        Ok(Goal::now(g))
    }

    /// Archives a goal (ADMIN, REVOPS): it leaves the default lists, can no
    /// longer be linked or changed, and keeps its history.
    async fn archive_goal(&self, ctx: &Context<'_>, id: ID) -> Result<Goal> {
        require(ctx, PLANNERS, "archive goals")?;
        Ok(Goal::now(
            service::archive(db(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }
}
