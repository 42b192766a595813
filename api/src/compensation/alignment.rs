//! The alignment report: per team, how much of its plans' variable target is
//! paid on revenue goals it shares with another function, which goals it
//! shares with whom, and plain-worded warnings where that is not yet so.
//!
//! Read as things stood at `as_of`: the goals and plans whose period holds
//! it (created by then, goals not archived by then), the links, weights and
//! curves in force then. A user's plan counts for the user's team.

use super::service::links_at;
use crate::error::AppResult;
use chrono::{DateTime, Utc};
use entity::enums::{GoalMetric, TeamFunction};
use entity::money::UNITS_PER_WHOLE;
use entity::{compensation_plan as plan, goal, goal_team, team, user};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SharedGoal {
    pub goal: goal::Model,
    /// The other teams that share it.
    pub shared_with: Vec<team::Model>,
}

#[derive(Debug, Clone)]
pub struct TeamAlignment {
    pub team: team::Model,
    /// Σ over the team's plans of V × (weight linked to revenue goals shared
    /// with another function) / Σ V; none without plans.
    pub revenue_linked_share: Option<Decimal>,
    pub shared_goals: Vec<SharedGoal>,
    pub warnings: Vec<String>,
}

fn weight(units: i64) -> Decimal {
    Decimal::new(units, 4).normalize()
}

fn metric_name(m: GoalMetric) -> String {
    m.as_str()
}

pub async fn report(db: &impl ConnectionTrait, at: DateTime<Utc>) -> AppResult<Vec<TeamAlignment>> {
    let teams = team::Entity::find()
        .order_by_asc(team::Column::Name)
        .all(db)
        .await?;
    let function: HashMap<Uuid, TeamFunction> = teams.iter().map(|t| (t.id, t.function)).collect();
    let goals: Vec<goal::Model> = goal::Entity::find()
        .filter(goal::Column::PeriodStart.lte(at))
        .filter(goal::Column::PeriodEnd.gt(at))
        .filter(goal::Column::CreatedAt.lte(at))
        .filter(
            Condition::any()
                .add(goal::Column::ArchivedAt.is_null())
                .add(goal::Column::ArchivedAt.gt(at)),
        )
        .order_by_asc(goal::Column::Name)
        .all(db)
        .await?;
    let goal_ids: Vec<Uuid> = goals.iter().map(|g| g.id).collect();
    let sharing = goal_team::Entity::find()
        .filter(goal_team::Column::GoalId.is_in(goal_ids.clone()))
        .all(db)
        .await?;
    let sharers = |g: Uuid| -> Vec<Uuid> {
        sharing
            .iter()
            .filter(|s| s.goal_id == g)
            .map(|s| s.team_id)
            .collect()
    };
    let plans: Vec<plan::Model> = plan::Entity::find()
        .filter(plan::Column::PeriodStart.lte(at))
        .filter(plan::Column::PeriodEnd.gt(at))
        .filter(plan::Column::CreatedAt.lte(at))
        .order_by_asc(plan::Column::Name)
        .all(db)
        .await?;
    let user_ids: Vec<Uuid> = plans.iter().filter_map(|p| p.user_id).collect();
    let user_team: HashMap<Uuid, Option<Uuid>> = user::Entity::find()
        .filter(user::Column::Id.is_in(user_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.team_id))
        .collect();
    let plan_ids: Vec<Uuid> = plans.iter().map(|p| p.id).collect();
    let links = links_at(db, &plan_ids, at).await?;
    // Goals linked as of `at` may lie outside `goals` (another period, archived since).
    let linked_ids: BTreeSet<Uuid> = links.iter().map(|l| l.goal_id).collect();
    let missing: Vec<Uuid> = linked_ids
        .iter()
        .filter(|id| !goal_ids.contains(id))
        .copied()
        .collect();
    let mut all_goals: HashMap<Uuid, goal::Model> =
        goals.iter().map(|g| (g.id, g.clone())).collect();
    let extra_sharing = if missing.is_empty() {
        Vec::new()
    } else {
        for g in goal::Entity::find()
            .filter(goal::Column::Id.is_in(missing.clone()))
            .all(db)
            .await?
        {
            all_goals.insert(g.id, g);
        }
        goal_team::Entity::find()
            .filter(goal_team::Column::GoalId.is_in(missing))
            .all(db)
            .await?
    };
    let all_sharers = |g: Uuid| -> Vec<Uuid> {
        sharing
            .iter()
            .chain(extra_sharing.iter())
            .filter(|s| s.goal_id == g)
            .map(|s| s.team_id)
            .collect()
    };

    let mut out = Vec::with_capacity(teams.len());
    for t in &teams {
        let mut warnings = Vec::new();
        // Goals this team shares.
        let mut shared_goals = Vec::new();
        for g in &goals {
            let who = sharers(g.id);
            if !who.contains(&t.id) {
                continue;
            }
            let others: Vec<team::Model> = teams
                .iter()
                .filter(|o| o.id != t.id && who.contains(&o.id))
                .cloned()
                .collect();
            let functions: BTreeSet<String> = who
                .iter()
                .filter_map(|id| function.get(id))
                .map(|f| f.as_str())
                .collect();
            if functions.len() < 2 {
                warnings.push(format!(
                    "Goal “{}” is shared only within {}: no other function is measured on it.",
                    g.name,
                    functions.into_iter().next().unwrap_or_default()
                ));
            }
            if !others.is_empty() {
                shared_goals.push(SharedGoal {
                    goal: g.clone(),
                    shared_with: others,
                });
            }
        }
        // The team's plans, and the share of their variable target on
        // revenue goals shared with another function.
        let mine: Vec<&plan::Model> = plans
            .iter()
            .filter(|p| {
                p.team_id == Some(t.id)
                    || p.user_id.and_then(|u| user_team.get(&u).copied().flatten()) == Some(t.id)
            })
            .collect();
        let mut total_v = Decimal::ZERO;
        let mut aligned_v = Decimal::ZERO;
        for p in &mine {
            let draft = if p.activated_at.is_some_and(|a| a <= at) {
                ""
            } else {
                " (draft)"
            };
            let pl: Vec<_> = links.iter().filter(|l| l.plan_id == p.id).collect();
            let sum: i64 = pl.iter().map(|l| l.weight).sum();
            let v = Decimal::from(p.variable_target);
            total_v += v;
            if pl.is_empty() {
                warnings.push(format!(
                    "Plan “{}”{draft} has no active link: its variable target is paid on nothing.",
                    p.name
                ));
                continue;
            }
            if sum != UNITS_PER_WHOLE {
                warnings.push(format!(
                    "Plan “{}”{draft}: the weights of its links sum to {}, not 1.",
                    p.name,
                    weight(sum)
                ));
            }
            let metrics: Vec<GoalMetric> = pl
                .iter()
                .filter_map(|l| all_goals.get(&l.goal_id).map(|g| g.metric))
                .collect();
            if !metrics.is_empty() && metrics.iter().all(|m| m.is_volume()) {
                let names: BTreeSet<String> = metrics.iter().map(|m| metric_name(*m)).collect();
                warnings.push(format!(
                    "Plan “{}”{draft} is paid only on volume ({}), not on revenue.",
                    p.name,
                    names.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            let aligned: i64 = pl
                .iter()
                .filter(|l| {
                    all_goals.get(&l.goal_id).is_some_and(|g| {
                        g.metric.is_revenue()
                            && all_sharers(g.id)
                                .iter()
                                .any(|o| function.get(o).is_some_and(|f| *f != t.function))
                    })
                })
                .map(|l| l.weight)
                .sum();
            // Over-linked plans (weights above 1) count as a whole, no more.
            let denom = Decimal::from(sum.max(UNITS_PER_WHOLE));
            aligned_v += v * Decimal::from(aligned) / denom;
        }
        let share = (!total_v.is_zero()).then(|| (aligned_v / total_v).normalize());
        if t.function == TeamFunction::Marketing && share.is_none_or(|s| s.is_zero()) {
            warnings.push(format!(
                "Marketing team “{}” has no plan linked to a revenue goal shared with another function: it is not paid on revenue.",
                t.name
            ));
        }
        out.push(TeamAlignment {
            team: t.clone(),
            revenue_linked_share: share,
            shared_goals,
            warnings,
        });
    }
    Ok(out)
}
