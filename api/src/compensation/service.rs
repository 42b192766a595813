//! Compensation plans and their links to goals. Every change to a link's
//! weight or curve, and its removal, is a new version with who and when;
//! a statement as of a time reads the versions in force then.

use super::payout::{self, Branch, Curve, Fraction};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::goals::actuals::{self, Actual, ReadKey};
use crate::goals::service as goals;
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{minor_units, now, required_text};
use crate::uow::{self, Work};
use chrono::{DateTime, Utc};
use entity::enums::Role;
use entity::money::UNITS_PER_WHOLE;
use entity::{compensation_link as link, compensation_link_version as link_version};
use entity::{compensation_plan as plan, goal};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, Set, Statement,
};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct NewPlan {
    pub name: String,
    pub team_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Storage units.
    pub variable_target: i64,
}

/// A change to a link's weight or curve (`None` keeps it).
#[derive(Debug, Clone, Copy, Default)]
pub struct CurvePatch {
    pub weight: Option<i64>,
    pub threshold: Option<i64>,
    pub accelerator: Option<i64>,
    pub cap: Option<i64>,
}

/// May the caller read this plan? ADMIN and REVOPS read every plan; a
/// MEMBER their own and their team's; nobody else any.
pub fn may_read(caller: &Caller, p: &plan::Model) -> AppResult<()> {
    let ok = match caller.role {
        Role::Admin | Role::Revops => true,
        Role::Member => {
            (p.user_id.is_some() && p.user_id == caller.user_id())
                || (p.team_id.is_some() && p.team_id == caller.team_id)
        }
        Role::Viewer | Role::Integration => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::forbidden(format!(
            "role {} may not read this compensation plan",
            caller.role.as_str()
        )))
    }
}

/// Which plans a list holds (every filter given must hold).
#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    /// Plans for this team.
    pub team_id: Option<Uuid>,
    /// Plans for this user.
    pub user_id: Option<Uuid>,
    /// Activated plans (true) or drafts (false).
    pub active: Option<bool>,
    /// Plans whose period holds this instant.
    pub active_at: Option<DateTime<Utc>>,
}

/// The plans the caller may read, as a condition: the rule of `may_read`
/// (ADMIN and REVOPS every plan; a MEMBER their own and their team's;
/// anyone else FORBIDDEN).
pub fn readable(caller: &Caller) -> AppResult<Condition> {
    match caller.role {
        Role::Admin | Role::Revops => Ok(Condition::all()),
        Role::Member => {
            // Never true: a MEMBER with neither a user nor a team reads nothing.
            let mut c = Condition::any().add(plan::Column::Id.is_null());
            if let Some(u) = caller.user_id() {
                c = c.add(plan::Column::UserId.eq(u));
            }
            if let Some(t) = caller.team_id {
                c = c.add(plan::Column::TeamId.eq(t));
            }
            Ok(c)
        }
        Role::Viewer | Role::Integration => Err(AppError::forbidden(format!(
            "role {} may not read compensation plans",
            caller.role.as_str()
        ))),
    }
}

fn plan_condition(f: &PlanFilter, scope: Condition) -> Condition {
    let mut c = Condition::all().add(scope);
    if let Some(t) = f.team_id {
        c = c.add(plan::Column::TeamId.eq(t));
    }
    if let Some(u) = f.user_id {
        c = c.add(plan::Column::UserId.eq(u));
    }
    match f.active {
        Some(true) => c = c.add(plan::Column::ActivatedAt.is_not_null()),
        Some(false) => c = c.add(plan::Column::ActivatedAt.is_null()),
        None => {}
    }
    if let Some(at) = f.active_at {
        c = c
            .add(plan::Column::PeriodStart.lte(at))
            .add(plan::Column::PeriodEnd.gt(at));
    }
    c
}

fn plan_ordering() -> Ordering<plan::Entity> {
    let key: KeyFn<plan::Model> = |m| (SortKey::Time(m.period_start), m.id);
    Ordering {
        name: "periodStart",
        column: plan::Column::PeriodStart,
        id: plan::Column::Id,
        descending: false,
        key,
    }
}

/// One page of the plans matching `f` within `scope` (see `readable`), by period start.
pub async fn list(
    db: &impl ConnectionTrait,
    f: &PlanFilter,
    scope: Condition,
    page: &PageRequest,
) -> AppResult<Page<plan::Model>> {
    paginate(
        db,
        plan::Entity::find().filter(plan_condition(f, scope)),
        &plan_ordering(),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, f: &PlanFilter, scope: Condition) -> AppResult<u64> {
    Ok(plan::Entity::find()
        .filter(plan_condition(f, scope))
        .count(db)
        .await?)
}

fn check_curve(c: Curve) -> AppResult<()> {
    if c.weight <= 0 || c.weight > UNITS_PER_WHOLE {
        return Err(AppError::bad_input(
            "weight",
            "`weight` must be above 0 and at most 1",
        ));
    }
    for (v, field) in [(c.threshold, "threshold"), (c.accelerator, "accelerator")] {
        if v < 0 {
            return Err(AppError::bad_input(
                field,
                format!("`{field}` must not be negative"),
            ));
        }
    }
    if c.cap <= 0 {
        return Err(AppError::bad_input("cap", "`cap` must be above 0"));
    }
    if c.threshold > c.cap {
        return Err(AppError::bad_input(
            "threshold",
            "`threshold` must not be above `cap`",
        ));
    }
    Ok(())
}

fn overlaps(p: &plan::Model, g: &goal::Model) -> bool {
    g.period_start < p.period_end && g.period_end > p.period_start
}

/// Creates a plan, in draft (its own unit of work).
pub async fn create(db: &DatabaseConnection, by: &str, p: NewPlan) -> AppResult<plan::Model> {
    let name = required_text(&p.name, "name")?;
    if p.team_id.is_some() == p.user_id.is_some() {
        return Err(AppError::bad_input(
            "teamId",
            "a plan is for a team or for a user: give exactly one of `teamId` and `userId`",
        ));
    }
    if p.period_start >= p.period_end {
        return Err(AppError::bad_input(
            "periodEnd",
            "`periodEnd` must be after `periodStart`",
        ));
    }
    if p.variable_target <= 0 {
        return Err(AppError::bad_input(
            "variableTarget",
            "`variableTarget` must be above 0",
        ));
    }
    let (p, name) = (&p, &name);
    uow::run(db, |mut w| async move {
        let d = w.db();
        if let Some(t) = p.team_id
            && entity::team::Entity::find_by_id(t).one(d).await?.is_none()
        {
            return Err(AppError::bad_input("teamId", "no such team"));
        }
        if let Some(u) = p.user_id
            && entity::user::Entity::find_by_id(u).one(d).await?.is_none()
        {
            return Err(AppError::bad_input("userId", "no such user"));
        }
        let at = now();
        let created = w
            .insert(plan::ActiveModel {
                id: Set(Uuid::now_v7()),
                name: Set(name.clone()),
                team_id: Set(p.team_id),
                user_id: Set(p.user_id),
                period_start: Set(p.period_start),
                period_end: Set(p.period_end),
                variable_target: Set(p.variable_target),
                activated_at: Set(None),
                created_by: Set(by.to_owned()),
                created_at: Set(at),
                updated_at: Set(at),
            })
            .await?;
        w.commit(created).await
    })
    .await
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<plan::Model> {
    plan::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("compensation plan"))
}

/// Locks a plan's row until the unit commits: changes to one plan's links queue.
async fn lock_plan(w: &mut Work, id: Uuid) -> AppResult<plan::Model> {
    let db = w.db();
    let backend = db.get_database_backend();
    if backend == sea_orm::DbBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "SELECT id FROM compensation_plans WHERE id = $1 FOR UPDATE",
            [id.into()],
        ))
        .await?;
    }
    get(db, id).await
}

async fn add_version(
    w: &mut Work,
    l: &link::Model,
    version: i32,
    removed: bool,
    by: &str,
    at: DateTime<Utc>,
) -> AppResult<()> {
    w.insert(link_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        link_id: Set(l.id),
        plan_id: Set(l.plan_id),
        goal_id: Set(l.goal_id),
        version: Set(version),
        weight: Set(l.weight),
        threshold: Set(l.threshold),
        accelerator: Set(l.accelerator),
        cap: Set(l.cap),
        removed: Set(removed),
        valid_from: Set(at),
        changed_by: Set(by.to_owned()),
    })
    .await?;
    Ok(())
}

async fn last_version(db: &impl ConnectionTrait, link_id: Uuid) -> AppResult<i32> {
    Ok(link_versions(db, link_id)
        .await?
        .last()
        .map_or(0, |v| v.version))
}

/// Links a goal to a plan (its own unit of work).
pub async fn link_goal(
    db: &DatabaseConnection,
    by: &str,
    plan_id: Uuid,
    goal_id: Uuid,
    curve: Curve,
) -> AppResult<link::Model> {
    check_curve(curve)?;
    uow::run(db, |mut w| async move {
        let p = lock_plan(&mut w, plan_id).await?;
        let g = goals::get(w.db(), goal_id)
            .await
            .map_err(|_| AppError::bad_input("goalId", "no such goal"))?;
        if g.archived_at.is_some() {
            return Err(AppError::bad_input("goalId", "the goal is archived"));
        }
        if !overlaps(&p, &g) {
            return Err(AppError::bad_input(
                "goalId",
                "the goal's period does not overlap the plan's",
            ));
        }
        if live_links(w.db(), &[plan_id])
            .await?
            .iter()
            .any(|l| l.goal_id == goal_id)
        {
            return Err(AppError::conflict(
                Some("goalId"),
                "the goal is already linked to this plan",
            ));
        }
        let at = now();
        let created = w
            .insert(link::ActiveModel {
                id: Set(Uuid::now_v7()),
                plan_id: Set(plan_id),
                goal_id: Set(goal_id),
                weight: Set(curve.weight),
                threshold: Set(curve.threshold),
                accelerator: Set(curve.accelerator),
                cap: Set(curve.cap),
                removed_at: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
            })
            .await?;
        add_version(&mut w, &created, 1, false, by, at).await?;
        w.commit(created).await
    })
    .await
}

async fn live_link(w: &mut Work, link_id: Uuid) -> AppResult<link::Model> {
    let l = link::Entity::find_by_id(link_id)
        .one(w.db())
        .await?
        .ok_or_else(|| AppError::not_found("compensation link"))?;
    lock_plan(w, l.plan_id).await?;
    // Read again under the plan's lock.
    let l = link::Entity::find_by_id(link_id)
        .one(w.db())
        .await?
        .ok_or_else(|| AppError::not_found("compensation link"))?;
    if l.removed_at.is_some() {
        return Err(AppError::bad_input("id", "the goal was unlinked"));
    }
    Ok(l)
}

/// Changes a link's weight or curve: a new version (its own unit of work).
pub async fn update_link(
    db: &DatabaseConnection,
    by: &str,
    link_id: Uuid,
    patch: CurvePatch,
) -> AppResult<link::Model> {
    uow::run(db, |mut w| async move {
        let before = live_link(&mut w, link_id).await?;
        let curve = Curve {
            weight: patch.weight.unwrap_or(before.weight),
            threshold: patch.threshold.unwrap_or(before.threshold),
            accelerator: patch.accelerator.unwrap_or(before.accelerator),
            cap: patch.cap.unwrap_or(before.cap),
        };
        check_curve(curve)?;
        if curve == curve_of(&before) {
            return w.commit(before).await;
        }
        let at = now();
        let mut am = before.clone().into_active_model();
        am.weight = Set(curve.weight);
        am.threshold = Set(curve.threshold);
        am.accelerator = Set(curve.accelerator);
        am.cap = Set(curve.cap);
        am.updated_at = Set(at);
        let after = w.update(am).await?;
        let v = last_version(w.db(), link_id).await?;
        add_version(&mut w, &after, v + 1, false, by, at).await?;
        w.commit(after).await
    })
    .await
}

/// Unlinks a goal from a plan: a last version marks it removed (its own unit of work).
pub async fn unlink_goal(
    db: &DatabaseConnection,
    by: &str,
    plan_id: Uuid,
    goal_id: Uuid,
) -> AppResult<link::Model> {
    uow::run(db, |mut w| async move {
        lock_plan(&mut w, plan_id).await?;
        let Some(before) = live_links(w.db(), &[plan_id])
            .await?
            .into_iter()
            .find(|l| l.goal_id == goal_id)
        else {
            return Err(AppError::not_found("link of this goal to this plan"));
        };
        let at = now();
        let mut am = before.clone().into_active_model();
        am.removed_at = Set(Some(at));
        am.updated_at = Set(at);
        let after = w.update(am).await?;
        let v = last_version(w.db(), after.id).await?;
        add_version(&mut w, &after, v + 1, true, by, at).await?;
        w.commit(after).await
    })
    .await
}

/// Activates a plan whose links' weights sum to 1 (its own unit of work).
pub async fn activate(db: &DatabaseConnection, plan_id: Uuid) -> AppResult<plan::Model> {
    uow::run(db, |mut w| async move {
        let p = lock_plan(&mut w, plan_id).await?;
        if p.activated_at.is_some() {
            return w.commit(p).await;
        }
        let links = live_links(w.db(), &[plan_id]).await?;
        let sum: i64 = links.iter().map(|l| l.weight).sum();
        if sum != UNITS_PER_WHOLE {
            return Err(AppError::bad_input(
                "planId",
                format!(
                    "the weights of a plan's links must sum to 1 to activate it; they sum to {}",
                    Decimal::new(sum, 4).normalize()
                ),
            ));
        }
        let at = now();
        let mut am = p.into_active_model();
        am.activated_at = Set(Some(at));
        am.updated_at = Set(at);
        let p = w.update(am).await?;
        w.commit(p).await
    })
    .await
}

pub fn curve_of(l: &link::Model) -> Curve {
    Curve {
        weight: l.weight,
        threshold: l.threshold,
        accelerator: l.accelerator,
        cap: l.cap,
    }
}

pub fn curve_of_version(v: &link_version::Model) -> Curve {
    Curve {
        weight: v.weight,
        threshold: v.threshold,
        accelerator: v.accelerator,
        cap: v.cap,
    }
}

/// The links of these plans as they stand now, not removed.
pub async fn live_links(
    db: &impl ConnectionTrait,
    plan_ids: &[Uuid],
) -> AppResult<Vec<link::Model>> {
    Ok(link::Entity::find()
        .filter(link::Column::PlanId.is_in(plan_ids.iter().copied()))
        .filter(link::Column::RemovedAt.is_null())
        .order_by_asc(link::Column::CreatedAt)
        .order_by_asc(link::Column::Id)
        .all(db)
        .await?)
}

/// Every version of a link, oldest first.
pub async fn link_versions(
    db: &impl ConnectionTrait,
    link_id: Uuid,
) -> AppResult<Vec<link_version::Model>> {
    Ok(link_version::Entity::find()
        .filter(link_version::Column::LinkId.eq(link_id))
        .order_by_asc(link_version::Column::Version)
        .all(db)
        .await?)
}

/// The links of these plans in force at `at`: each link's latest version
/// from before `at`, unless that version removed it.
pub async fn links_at(
    db: &impl ConnectionTrait,
    plan_ids: &[Uuid],
    at: DateTime<Utc>,
) -> AppResult<Vec<link_version::Model>> {
    let rows = link_version::Entity::find()
        .filter(link_version::Column::PlanId.is_in(plan_ids.iter().copied()))
        .filter(link_version::Column::ValidFrom.lte(at))
        .order_by_asc(link_version::Column::LinkId)
        .order_by_asc(link_version::Column::Version)
        .all(db)
        .await?;
    let mut last: Vec<link_version::Model> = Vec::new();
    for v in rows {
        match last.last_mut() {
            Some(l) if l.link_id == v.link_id => *l = v,
            _ => last.push(v),
        }
    }
    last.retain(|v| !v.removed);
    Ok(last)
}

/// One line of a statement: a link in force, its goal and what it pays.
#[derive(Debug, Clone)]
pub struct Line {
    pub link: link_version::Model,
    pub goal: goal::Model,
    /// The goal's target as it stood at the statement's time.
    pub target: i64,
    pub actual: Actual,
    pub attainment: Option<Fraction>,
    pub payout: Decimal,
    pub branch: Branch,
}

#[derive(Debug, Clone)]
pub struct CompStatement {
    pub plan: plan::Model,
    pub as_of: DateTime<Utc>,
    pub lines: Vec<Line>,
    pub total: Decimal,
}

/// What a plan pays as things stood at `at`: the links, weights, curves and
/// targets in force then, each goal's actual from its period's start to
/// `at` (or its end, if earlier) as the data stands.
pub async fn statement(
    db: &impl ConnectionTrait,
    p: plan::Model,
    at: DateTime<Utc>,
    currency: &str,
) -> AppResult<CompStatement> {
    let links = links_at(db, &[p.id], at).await?;
    let goal_ids: Vec<Uuid> = links.iter().map(|l| l.goal_id).collect();
    let goals: HashMap<Uuid, goal::Model> = goal::Entity::find()
        .filter(goal::Column::Id.is_in(goal_ids.clone()))
        .all(db)
        .await?
        .into_iter()
        .map(|g| (g.id, g))
        .collect();
    let targets = goals::targets_at(db, &goal_ids, at).await?;
    let minor = minor_units(currency);
    let links: Vec<(link_version::Model, goal::Model)> = links
        .into_iter()
        .filter_map(|l| goals.get(&l.goal_id).cloned().map(|g| (l, g)))
        .collect();
    // Every line's actual in one batch.
    let keys: Vec<ReadKey> = links.iter().map(|(_, g)| ReadKey::actual(g, at)).collect();
    let read = actuals::read(db, &keys).await?;
    let mut lines = Vec::with_capacity(links.len());
    let mut total = Decimal::new(0, minor);
    for ((l, g), values) in links.into_iter().zip(read) {
        let target = targets.get(&g.id).copied().unwrap_or(g.target);
        let actual = values
            .first()
            .map_or(Actual::zero(actuals::kind(g.metric)), |(_, a)| *a);
        let attainment = actual.attainment(actuals::kind(g.metric), target);
        let (payout, branch) =
            payout::payout(p.variable_target, curve_of_version(&l), attainment, minor)?;
        total += payout;
        lines.push(Line {
            link: l,
            goal: g,
            target,
            actual,
            attainment,
            payout,
            branch,
        });
    }
    Ok(CompStatement {
        plan: p,
        as_of: at,
        lines,
        total,
    })
}
