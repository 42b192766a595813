//! Compensation in GraphQL: plans, links, statements and the alignment report.

use super::alignment;
use super::payout::{Branch, Curve};
use super::service::{self, CurvePatch, NewPlan, PlanFilter};
use crate::auth::{COMPENSATION_READERS, PLANNERS};
use crate::goals::graphql::{Goal, actual_value, ratio_units, target_value, units_ratio};
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{db, load_children, load_one, parse_id, require, settings};
use crate::graphql::loaders::{GoalById, LinkVersionsOf, LinksOfPlan, TeamById, UserById};
use crate::pagination::PageRequest;
use crate::records::common::{money_to_units, units_to_money};
use crate::records::teams::graphql::Team;
use crate::records::users::graphql::User;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{compensation_link as link, compensation_link_version as link_version};
use entity::{compensation_plan as plan, goal};
use rust_decimal::Decimal;

/// The variable pay of a team or of one user over a period, paid on the
/// goals linked to it (docs/goals.md, "Compensation").
pub struct CompensationPlan(pub plan::Model);

#[Object]
impl CompensationPlan {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The team the plan is for (null for a user's plan).
    async fn team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, self.0.team_id).await?.map(Team))
    }
    /// The user the plan is for (null for a team's plan).
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.user_id).await?.map(User))
    }
    /// Start of the half-open period `[periodStart, periodEnd)`.
    async fn period_start(&self) -> DateTime<Utc> {
        self.0.period_start
    }
    async fn period_end(&self) -> DateTime<Utc> {
        self.0.period_end
    }
    /// The variable pay at 100% attainment of every link (money).
    async fn variable_target(&self, ctx: &Context<'_>) -> Result<Decimal> {
        Ok(units_to_money(
            self.0.variable_target,
            &settings(ctx)?.currency,
        ))
    }
    /// When the plan was activated (null: still a draft).
    async fn activated_at(&self) -> Option<DateTime<Utc>> {
        self.0.activated_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The goals linked to the plan now (unlinked ones left out).
    async fn links(&self, ctx: &Context<'_>) -> Result<Vec<CompensationLink>> {
        Ok(load_children::<LinksOfPlan, _>(ctx, self.0.id)
            .await?
            .into_iter()
            .filter(|l| l.removed_at.is_none())
            .map(CompensationLink)
            .collect())
    }
}

/// A goal linked to a plan, with its weight and payout curve (docs/goals.md, "Payout").
pub struct CompensationLink(pub link::Model);

#[Object]
impl CompensationLink {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn goal(&self, ctx: &Context<'_>) -> Result<Goal> {
        let g = load_one::<GoalById>(ctx, Some(self.0.goal_id))
            .await?
            .ok_or_else(|| crate::error::AppError::not_found("goal"))?;
        Ok(Goal::now(g))
    }
    /// The share of the plan's variable target this goal carries.
    async fn weight(&self) -> Decimal {
        units_ratio(self.0.weight)
    }
    /// Below this attainment the link pays nothing.
    async fn threshold(&self) -> Decimal {
        units_ratio(self.0.threshold)
    }
    /// Multiplies the attainment above 1.
    async fn accelerator(&self) -> Decimal {
        units_ratio(self.0.accelerator)
    }
    /// The link never pays above variable target × weight × cap.
    async fn cap(&self) -> Decimal {
        units_ratio(self.0.cap)
    }
    /// When the goal was unlinked (null while linked).
    async fn removed_at(&self) -> Option<DateTime<Utc>> {
        self.0.removed_at
    }
    /// Every version of the link, oldest first: weight and curve, who changed
    /// them and when; the last is marked `removed` once unlinked.
    async fn versions(&self, ctx: &Context<'_>) -> Result<Vec<CompensationLinkVersion>> {
        Ok(load_children::<LinkVersionsOf, _>(ctx, self.0.id)
            .await?
            .into_iter()
            .map(CompensationLinkVersion)
            .collect())
    }
}

/// One state of a link, from `validFrom` until its next version.
pub struct CompensationLinkVersion(pub link_version::Model);

#[Object]
impl CompensationLinkVersion {
    /// 1 for the link as made, then one more per change.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn weight(&self) -> Decimal {
        units_ratio(self.0.weight)
    }
    async fn threshold(&self) -> Decimal {
        units_ratio(self.0.threshold)
    }
    async fn accelerator(&self) -> Decimal {
        units_ratio(self.0.accelerator)
    }
    async fn cap(&self) -> Decimal {
        units_ratio(self.0.cap)
    }
    /// True for the version that unlinked the goal.
    async fn removed(&self) -> bool {
        self.0.removed
    }
    async fn valid_from(&self) -> DateTime<Utc> {
        self.0.valid_from
    }
    /// Who made the change (the token subject).
    async fn changed_by(&self) -> &str {
        &self.0.changed_by
    }
}

/// Which part of the payout curve a line's attainment fell on.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum PayoutBranch {
    /// No attainment (a rate over nothing): pays 0.
    NoAttainment,
    /// Attainment below the threshold: pays 0.
    BelowThreshold,
    /// Threshold ≤ attainment ≤ 1: variable target × weight × attainment.
    Linear,
    /// Attainment above 1: variable target × weight × (1 + (attainment − 1) × accelerator).
    Accelerated,
    /// Held at variable target × weight × cap.
    Capped,
}

impl From<Branch> for PayoutBranch {
    fn from(b: Branch) -> Self {
        match b {
            Branch::NoAttainment => PayoutBranch::NoAttainment,
            Branch::BelowThreshold => PayoutBranch::BelowThreshold,
            Branch::Linear => PayoutBranch::Linear,
            Branch::Accelerated => PayoutBranch::Accelerated,
            Branch::Capped => PayoutBranch::Capped,
        }
    }
}

/// One link of a statement and what it pays.
#[derive(SimpleObject)]
pub struct StatementLine {
    /// The goal, read as of the statement's time.
    pub goal: Goal,
    /// The goal's target then.
    pub target: Decimal,
    /// The goal's actual from its period's start to the statement's time.
    pub actual: Option<Decimal>,
    /// actual / target, exact (null for a rate over nothing: pays 0).
    pub attainment: Option<Decimal>,
    pub weight: Decimal,
    pub threshold: Decimal,
    pub accelerator: Decimal,
    pub cap: Decimal,
    /// What the link pays, rounded once to the currency's decimals (half to even).
    pub payout: Decimal,
    pub branch: PayoutBranch,
}

/// What a plan pays, as things stood at `asOf`.
#[derive(SimpleObject)]
pub struct CompensationStatement {
    pub plan: CompensationPlan,
    pub as_of: DateTime<Utc>,
    /// The sum of the lines' payouts.
    pub total: Decimal,
    pub lines: Vec<StatementLine>,
}

/// A goal a team shares with other teams.
#[derive(SimpleObject)]
pub struct SharedGoal {
    pub goal: Goal,
    /// The other teams that share it.
    pub shared_with: Vec<GoalShare>,
}

/// A team sharing a goal.
#[derive(SimpleObject)]
pub struct GoalShare {
    pub team: Team,
}

/// How one team is paid and measured together with the others.
#[derive(SimpleObject)]
pub struct TeamAlignment {
    pub team: Team,
    /// The share of the variable target of the team's plans (a user's plan
    /// counts for the user's team) linked to revenue goals (REVENUE_WON,
    /// QUALIFIED_LEADS_WON, NEW_CUSTOMERS, PIPELINE_CREATED, RETENTION)
    /// shared with at least one team of another function; null without plans.
    pub revenue_linked_share: Option<Decimal>,
    /// Goals in force the team shares with other teams.
    pub shared_goals: Vec<SharedGoal>,
    /// Where the team is not yet aligned, in plain words.
    pub warnings: Vec<String>,
}

/// Whether sales and marketing are one team, in numbers.
#[derive(SimpleObject)]
pub struct Alignment {
    pub as_of: DateTime<Utc>,
    /// Every team, by name.
    pub teams: Vec<TeamAlignment>,
}

/// Which plans a list holds: every filter given must hold.
#[derive(InputObject, Default)]
pub struct CompensationPlanFilterInput {
    /// Plans for this team.
    pub team_id: Option<ID>,
    /// Plans for this user.
    pub user_id: Option<ID>,
    /// Activated plans (true) or drafts (false); both when left out.
    pub active: Option<bool>,
    /// Plans whose period `[periodStart, periodEnd)` holds this instant.
    pub active_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct CompensationQuery;

async fn readable_plan(ctx: &Context<'_>, id: &ID, field: &str) -> Result<plan::Model> {
    let who = require(ctx, COMPENSATION_READERS, "read compensation")?;
    let p = service::get(db(ctx)?, parse_id(id, field)?).await?;
    service::may_read(who, &p)?;
    Ok(p)
}

#[Object]
impl CompensationQuery {
    /// One plan (ADMIN and REVOPS: any; MEMBER: their own and their team's).
    async fn compensation_plan(&self, ctx: &Context<'_>, id: ID) -> Result<CompensationPlan> {
        Ok(CompensationPlan(readable_plan(ctx, &id, "id").await?))
    }

    /// The plans the caller may read, filtered, by period start (ADMIN and
    /// REVOPS: every plan; MEMBER: their own and their team's; VIEWER and
    /// INTEGRATION: FORBIDDEN).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    async fn compensation_plans(
        &self,
        ctx: &Context<'_>,
        filter: Option<CompensationPlanFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<CompensationPlan>> {
        let who = require(ctx, COMPENSATION_READERS, "read compensation")?;
        let scope = service::readable(who)?;
        let f = filter.unwrap_or_default();
        let id = |v: &Option<ID>, field: &str| v.as_ref().map(|i| parse_id(i, field)).transpose();
        let filter = PlanFilter {
            team_id: id(&f.team_id, "teamId")?,
            user_id: id(&f.user_id, "userId")?,
            active: f.active,
            active_at: f.active_at,
        };
        let db = db(ctx)?.clone();
        let page = service::list(
            &db,
            &filter,
            scope.clone(),
            &PageRequest {
                first,
                after,
                last,
                before,
            },
        )
        .await?;
        Ok(connection(
            page,
            move || {
                let (db, filter, scope) = (db.clone(), filter.clone(), scope.clone());
                Box::pin(async move { service::count(&db, &filter, scope).await })
            },
            CompensationPlan,
        ))
    }

    /// What a plan pays as things stood at `asOf` (default: now): the
    /// links, weights, curves and targets in force then, and each goal's
    /// actual up to then (docs/goals.md, "Payout"). ADMIN and REVOPS read
    /// any plan; a MEMBER their own and their team's.
    async fn compensation_statement(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<CompensationStatement> {
        let p = readable_plan(ctx, &plan_id, "planId").await?;
        let currency = settings(ctx)?.currency.clone();
        let at = as_of.unwrap_or_else(crate::records::common::now);
        let s = service::statement(db(ctx)?, p, at, &currency).await?;
        Ok(CompensationStatement {
            plan: CompensationPlan(s.plan),
            as_of: s.as_of,
            total: s.total,
            lines: s
                .lines
                .into_iter()
                .map(|l| {
                    let c = service::curve_of_version(&l.link);
                    StatementLine {
                        target: target_value(l.goal.metric, l.target, &currency),
                        actual: actual_value(l.goal.metric, l.actual, &currency),
                        attainment: l.attainment.and_then(|f| f.to_decimal()),
                        weight: units_ratio(c.weight),
                        threshold: units_ratio(c.threshold),
                        accelerator: units_ratio(c.accelerator),
                        cap: units_ratio(c.cap),
                        payout: l.payout,
                        branch: l.branch.into(),
                        goal: Goal::at(l.goal, at, l.target),
                    }
                })
                .collect(),
        })
    }

    /// Per team, the share of its plans' variable target paid on revenue
    /// goals shared with another function, the goals it shares with whom,
    /// and warnings in plain words, as things stood at `asOf` (default:
    /// now). ADMIN and REVOPS (docs/goals.md, "Alignment").
    async fn alignment(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Alignment> {
        require(ctx, PLANNERS, "read the alignment report")?;
        let at = as_of.unwrap_or_else(crate::records::common::now);
        let rows = alignment::report(db(ctx)?, at).await?;
        let goal_at = |g: goal::Model| {
            let t = g.target;
            Goal::at(g, at, t)
        };
        let report = Alignment {
            as_of: at,
            teams: rows
                .into_iter()
                .map(|r| TeamAlignment {
                    team: Team(r.team),
                    revenue_linked_share: r.revenue_linked_share,
                    shared_goals: r
                        .shared_goals
                        .into_iter()
                        .map(|s| SharedGoal {
                            goal: goal_at(s.goal),
                            shared_with: s
                                .shared_with
                                .into_iter()
                                .map(|t| GoalShare { team: Team(t) })
                                .collect(),
                        })
                        .collect(),
                    warnings: r.warnings,
                })
                .collect(),
        };
        let goals: Vec<&Goal> = report
            .teams
            .iter()
            .flat_map(|t| t.shared_goals.iter().map(|s| &s.goal))
            .collect();
        let look = ctx
            .look_ahead()
            .field("teams")
            .field("sharedGoals")
            .field("goal");
        crate::goals::graphql::prime_goals(ctx, look, &goals).await?;
        Ok(report)
    }
}

#[derive(InputObject)]
pub struct CompensationPlanInput {
    pub name: String,
    /// The team the plan is for (give this or `userId`).
    pub team_id: Option<ID>,
    /// The user the plan is for (give this or `teamId`).
    pub user_id: Option<ID>,
    /// Start of the half-open period `[periodStart, periodEnd)`.
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The variable pay at 100% attainment (money, above 0).
    pub variable_target: Decimal,
}

fn curve_units(
    weight: Decimal,
    threshold: Decimal,
    accelerator: Decimal,
    cap: Decimal,
) -> Result<Curve> {
    Ok(Curve {
        weight: ratio_units(weight, "weight")?,
        threshold: ratio_units(threshold, "threshold")?,
        accelerator: ratio_units(accelerator, "accelerator")?,
        cap: ratio_units(cap, "cap")?,
    })
}

#[derive(Default)]
pub struct CompensationMutation;

#[Object]
impl CompensationMutation {
    /// Creates a plan, in draft (ADMIN, REVOPS).
    async fn create_compensation_plan(
        &self,
        ctx: &Context<'_>,
        input: CompensationPlanInput,
    ) -> Result<CompensationPlan> {
        let who = require(ctx, PLANNERS, "create compensation plans")?;
        let currency = &settings(ctx)?.currency;
        let opt = |id: &Option<ID>, f: &str| id.as_ref().map(|i| parse_id(i, f)).transpose();
        let p = service::create(
            db(ctx)?,
            &who.subject,
            NewPlan {
                name: input.name,
                team_id: opt(&input.team_id, "teamId")?,
                user_id: opt(&input.user_id, "userId")?,
                period_start: input.period_start,
                period_end: input.period_end,
                variable_target: money_to_units(input.variable_target, currency, "variableTarget")?,
            },
        )
        .await?;
        Ok(CompensationPlan(p))
    }

    /// Links a goal to a plan (ADMIN, REVOPS): the goal's period must overlap
    /// the plan's. `weight` is the share of the variable target it carries
    /// (above 0, at most 1); below `threshold` it pays nothing; above an
    /// attainment of 1 it pays `accelerator` times faster; never above `cap`
    /// times its share.
    #[allow(clippy::too_many_arguments)]
    async fn link_goal(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        goal_id: ID,
        weight: Decimal,
        #[graphql(default)] threshold: Decimal,
        #[graphql(default_with = "Decimal::ONE")] accelerator: Decimal,
        #[graphql(default_with = "Decimal::TWO")] cap: Decimal,
    ) -> Result<CompensationLink> {
        let who = require(ctx, PLANNERS, "link goals to plans")?;
        let curve = curve_units(weight, threshold, accelerator, cap)?;
        Ok(CompensationLink(
            service::link_goal(
                db(ctx)?,
                &who.subject,
                parse_id(&plan_id, "planId")?,
                parse_id(&goal_id, "goalId")?,
                curve,
            )
            .await?,
        ))
    }

    /// Changes a link's weight or curve (ADMIN, REVOPS): kept as a new
    /// version, so statements as of earlier times read the old one.
    async fn update_link(
        &self,
        ctx: &Context<'_>,
        id: ID,
        weight: Option<Decimal>,
        threshold: Option<Decimal>,
        accelerator: Option<Decimal>,
        cap: Option<Decimal>,
    ) -> Result<CompensationLink> {
        let who = require(ctx, PLANNERS, "change links")?;
        let u = |d: Option<Decimal>, f: &str| d.map(|d| ratio_units(d, f)).transpose();
        let patch = CurvePatch {
            weight: u(weight, "weight")?,
            threshold: u(threshold, "threshold")?,
            accelerator: u(accelerator, "accelerator")?,
            cap: u(cap, "cap")?,
        };
        Ok(CompensationLink(
            service::update_link(db(ctx)?, &who.subject, parse_id(&id, "id")?, patch).await?,
        ))
    }

    /// Unlinks a goal from a plan (ADMIN, REVOPS); the link's history stays.
    async fn unlink_goal(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        goal_id: ID,
    ) -> Result<CompensationLink> {
        let who = require(ctx, PLANNERS, "unlink goals")?;
        Ok(CompensationLink(
            service::unlink_goal(
                db(ctx)?,
                &who.subject,
                parse_id(&plan_id, "planId")?,
                parse_id(&goal_id, "goalId")?,
            )
            .await?,
        ))
    }

    /// Activates a plan whose links' weights sum to exactly 1 (ADMIN, REVOPS).
    async fn activate_plan(&self, ctx: &Context<'_>, plan_id: ID) -> Result<CompensationPlan> {
        require(ctx, PLANNERS, "activate plans")?;
        Ok(CompensationPlan(
            service::activate(db(ctx)?, parse_id(&plan_id, "planId")?).await?,
        ))
    }
}
