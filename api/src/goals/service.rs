//! Goals: create, edit (a new target is a new version, with who and when),
//! archive, read as they stood at any time, and list.

use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{now, required_text};
use crate::uow::{self, Work};
use chrono::{DateTime, Utc};
use entity::enums::{Channel, GoalMetric, Segment};
use entity::goal::{self, Entity as Goal};
use entity::{goal_team, goal_version};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, Set, Statement,
};
use uuid::Uuid;

/// What a new goal is made of. `target` in 1/10,000 units (see `entity::goal`).
#[derive(Debug, Clone)]
pub struct NewGoal {
    pub name: String,
    pub metric: GoalMetric,
    pub target: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub segment: Option<Segment>,
    pub source: Option<Channel>,
    pub campaign_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub team_ids: Vec<Uuid>,
}

/// A change to a goal: `None` keeps a field. Filters given as `Some(None)` are cleared.
#[derive(Debug, Clone, Default)]
pub struct GoalPatch {
    pub name: Option<String>,
    pub target: Option<i64>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub segment: Option<Option<Segment>>,
    pub source: Option<Option<Channel>>,
    pub campaign_id: Option<Option<Uuid>>,
    pub team_id: Option<Option<Uuid>>,
    pub team_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, Default)]
pub struct GoalFilter {
    /// Goals this team shares.
    pub team_id: Option<Uuid>,
    /// Goals whose period holds this instant.
    pub active_at: Option<DateTime<Utc>>,
    pub metrics: Vec<GoalMetric>,
    /// Archived ones (true) or the others (false).
    pub archived: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalOrder {
    Name,
    PeriodStart,
    CreatedAt,
}

fn check_period(start: DateTime<Utc>, end: DateTime<Utc>) -> AppResult<()> {
    if start >= end {
        return Err(AppError::bad_input(
            "periodEnd",
            "`periodEnd` must be after `periodStart`",
        ));
    }
    Ok(())
}

/// Refuses a target that is not positive, or a rate target above 1.
pub fn check_target(metric: GoalMetric, target: i64) -> AppResult<()> {
    if target <= 0 {
        return Err(AppError::bad_input("target", "`target` must be above 0"));
    }
    if matches!(metric, GoalMetric::WinRate | GoalMetric::Retention)
        && target > entity::money::UNITS_PER_WHOLE
    {
        return Err(AppError::bad_input(
            "target",
            "a rate's `target` is a fraction: at most 1",
        ));
    }
    Ok(())
}

async fn check_refs(w: &Work, g: &NewGoal) -> AppResult<()> {
    let db = w.db();
    if let Some(c) = g.campaign_id
        && entity::campaign::Entity::find_by_id(c)
            .one(db)
            .await?
            .is_none()
    {
        return Err(AppError::bad_input("campaignId", "no such campaign"));
    }
    let mut teams: Vec<Uuid> = g.team_ids.clone();
    teams.extend(g.team_id);
    teams.sort();
    teams.dedup();
    if !teams.is_empty() {
        let found = entity::team::Entity::find()
            .filter(entity::team::Column::Id.is_in(teams.clone()))
            .count(db)
            .await?;
        if found != teams.len() as u64 {
            return Err(AppError::bad_input("teamIds", "no such team"));
        }
    }
    if g.team_ids.is_empty() {
        return Err(AppError::bad_input(
            "teamIds",
            "a goal is shared by at least one team",
        ));
    }
    Ok(())
}

/// Creates a goal with its first version (its own unit of work).
pub async fn create(db: &DatabaseConnection, by: &str, g: NewGoal) -> AppResult<goal::Model> {
    let g = &g;
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, by, g.clone()).await?;
        w.commit(created).await
    })
    .await
}

pub async fn create_in(w: &mut Work, by: &str, mut g: NewGoal) -> AppResult<goal::Model> {
    g.name = required_text(&g.name, "name")?;
    check_period(g.period_start, g.period_end)?;
    check_target(g.metric, g.target)?;
    g.team_ids.sort();
    g.team_ids.dedup();
    check_refs(w, &g).await?;
    let at = now();
    let created = w
        .insert(goal::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(g.name.clone()),
            metric: Set(g.metric),
            target: Set(g.target),
            period_start: Set(g.period_start),
            period_end: Set(g.period_end),
            segment: Set(g.segment),
            source: Set(g.source),
            campaign_id: Set(g.campaign_id),
            team_id: Set(g.team_id),
            archived_at: Set(None),
            created_by: Set(by.to_owned()),
            created_at: Set(at),
            updated_at: Set(at),
        })
        .await?;
    for t in &g.team_ids {
        w.insert(goal_team::ActiveModel {
            goal_id: Set(created.id),
            team_id: Set(*t),
        })
        .await?;
    }
    add_version(w, &created, 1, by, at).await?;
    Ok(created)
}

async fn add_version(
    w: &mut Work,
    g: &goal::Model,
    version: i32,
    by: &str,
    at: DateTime<Utc>,
) -> AppResult<()> {
    w.insert(goal_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        goal_id: Set(g.id),
        version: Set(version),
        target: Set(g.target),
        valid_from: Set(at),
        changed_by: Set(by.to_owned()),
    })
    .await?;
    Ok(())
}

/// Locks a goal's row until the unit commits (edits of one goal queue).
pub async fn lock_in(w: &mut Work, id: Uuid) -> AppResult<goal::Model> {
    let db = w.db();
    let backend = db.get_database_backend();
    if backend == sea_orm::DbBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "SELECT id FROM goals WHERE id = $1 FOR UPDATE",
            [id.into()],
        ))
        .await?;
    }
    get(db, id).await
}

/// Changes a goal (its own unit of work). A new target is a new version.
pub async fn update(
    db: &DatabaseConnection,
    by: &str,
    id: Uuid,
    patch: GoalPatch,
) -> AppResult<goal::Model> {
    let patch = &patch;
    uow::run(db, |mut w| async move {
        let g = update_in(&mut w, by, id, patch.clone()).await?;
        w.commit(g).await
    })
    .await
}

pub async fn update_in(w: &mut Work, by: &str, id: Uuid, p: GoalPatch) -> AppResult<goal::Model> {
    let before = lock_in(w, id).await?;
    if before.archived_at.is_some() {
        return Err(AppError::bad_input("id", "the goal is archived"));
    }
    let mut next = NewGoal {
        name: p.name.clone().unwrap_or_else(|| before.name.clone()),
        metric: before.metric,
        target: p.target.unwrap_or(before.target),
        period_start: p.period_start.unwrap_or(before.period_start),
        period_end: p.period_end.unwrap_or(before.period_end),
        segment: p.segment.unwrap_or(before.segment),
        source: p.source.unwrap_or(before.source),
        campaign_id: p.campaign_id.unwrap_or(before.campaign_id),
        team_id: p.team_id.unwrap_or(before.team_id),
        team_ids: match &p.team_ids {
            Some(t) => t.clone(),
            None => teams_of(w.db(), &[id])
                .await?
                .into_iter()
                .map(|t| t.team_id)
                .collect(),
        },
    };
    next.name = required_text(&next.name, "name")?;
    check_period(next.period_start, next.period_end)?;
    check_target(next.metric, next.target)?;
    next.team_ids.sort();
    next.team_ids.dedup();
    check_refs(w, &next).await?;
    let at = now();
    let mut am = before.clone().into_active_model();
    am.name = Set(next.name);
    am.target = Set(next.target);
    am.period_start = Set(next.period_start);
    am.period_end = Set(next.period_end);
    am.segment = Set(next.segment);
    am.source = Set(next.source);
    am.campaign_id = Set(next.campaign_id);
    am.team_id = Set(next.team_id);
    am.updated_at = Set(at);
    let after = w.update(am).await?;
    if p.team_ids.is_some() {
        let db = w.db();
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DbBackend::Postgres => "DELETE FROM goal_teams WHERE goal_id = $1",
                _ => "DELETE FROM goal_teams WHERE goal_id = ?",
            },
            [id.into()],
        ))
        .await?;
        for t in &next.team_ids {
            w.insert(goal_team::ActiveModel {
                goal_id: Set(id),
                team_id: Set(*t),
            })
            .await?;
        }
    }
    if after.target != before.target {
        let last = versions(w.db(), id).await?.last().map_or(0, |v| v.version);
        add_version(w, &after, last + 1, by, at).await?;
    }
    Ok(after)
}

/// Archives a goal (its own unit of work): it stays readable, and the
/// plans linked to it keep their history.
pub async fn archive(db: &DatabaseConnection, id: Uuid) -> AppResult<goal::Model> {
    uow::run(db, |mut w| async move {
        let before = lock_in(&mut w, id).await?;
        if before.archived_at.is_some() {
            return w.commit(before).await;
        }
        let at = now();
        let mut am = before.into_active_model();
        am.archived_at = Set(Some(at));
        am.updated_at = Set(at);
        let g = w.update(am).await?;
        w.commit(g).await
    })
    .await
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<goal::Model> {
    Goal::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("goal"))
}

/// Every version of a goal, oldest first.
pub async fn versions(
    db: &impl ConnectionTrait,
    goal_id: Uuid,
) -> AppResult<Vec<goal_version::Model>> {
    Ok(goal_version::Entity::find()
        .filter(goal_version::Column::GoalId.eq(goal_id))
        .order_by_asc(goal_version::Column::Version)
        .all(db)
        .await?)
}

/// The targets of goals as they stood at `at`: each goal's latest version
/// from before `at`; before its first version, its first target (a goal
/// made during its period measures from the period's start all the same).
pub async fn targets_at(
    db: &impl ConnectionTrait,
    goal_ids: &[Uuid],
    at: DateTime<Utc>,
) -> AppResult<std::collections::HashMap<Uuid, i64>> {
    let rows = goal_version::Entity::find()
        .filter(goal_version::Column::GoalId.is_in(goal_ids.iter().copied()))
        .order_by_asc(goal_version::Column::Version)
        .all(db)
        .await?;
    let mut out = std::collections::HashMap::new();
    for v in rows {
        if v.valid_from <= at || !out.contains_key(&v.goal_id) {
            out.insert(v.goal_id, v.target);
        }
    }
    Ok(out)
}

/// The teams sharing the goals, by goal.
pub async fn teams_of(
    db: &impl ConnectionTrait,
    goal_ids: &[Uuid],
) -> AppResult<Vec<goal_team::Model>> {
    Ok(goal_team::Entity::find()
        .filter(goal_team::Column::GoalId.is_in(goal_ids.iter().copied()))
        .all(db)
        .await?)
}

fn condition(f: &GoalFilter) -> Condition {
    let mut c = Condition::all();
    c = c.add(if f.archived {
        goal::Column::ArchivedAt.is_not_null()
    } else {
        goal::Column::ArchivedAt.is_null()
    });
    if let Some(t) = f.team_id {
        c = c.add(
            goal::Column::Id.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(goal_team::Column::GoalId)
                    .from(goal_team::Entity)
                    .and_where(goal_team::Column::TeamId.eq(t))
                    .to_owned(),
            ),
        );
    }
    if let Some(at) = f.active_at {
        c = c
            .add(goal::Column::PeriodStart.lte(at))
            .add(goal::Column::PeriodEnd.gt(at));
    }
    if !f.metrics.is_empty() {
        c = c.add(goal::Column::Metric.is_in(f.metrics.clone()));
    }
    c
}

fn ordering(order: GoalOrder, descending: bool) -> Ordering<Goal> {
    let (name, column, key): (_, _, KeyFn<goal::Model>) = match order {
        GoalOrder::Name => ("name", goal::Column::Name, |m| {
            (SortKey::Text(m.name.clone()), m.id)
        }),
        GoalOrder::PeriodStart => ("periodStart", goal::Column::PeriodStart, |m| {
            (SortKey::Time(m.period_start), m.id)
        }),
        GoalOrder::CreatedAt => ("createdAt", goal::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: goal::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    f: &GoalFilter,
    order: GoalOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<goal::Model>> {
    paginate(
        db,
        Goal::find().filter(condition(f)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, f: &GoalFilter) -> AppResult<u64> {
    Ok(Goal::find().filter(condition(f)).count(db).await?)
}

/// The goals shared by any of `teams`, with the sharing rows (for `Team.goals`).
pub async fn of_teams(
    db: &impl ConnectionTrait,
    teams: &[Uuid],
) -> AppResult<Vec<(Uuid, goal::Model)>> {
    let links = goal_team::Entity::find()
        .filter(goal_team::Column::TeamId.is_in(teams.iter().copied()))
        .all(db)
        .await?;
    let ids: Vec<Uuid> = links.iter().map(|l| l.goal_id).collect();
    let goals = Goal::find()
        .filter(goal::Column::Id.is_in(ids))
        .order_by_asc(goal::Column::PeriodStart)
        .order_by_asc(goal::Column::Id)
        .all(db)
        .await?;
    let mut out = Vec::new();
    for g in goals {
        for l in links.iter().filter(|l| l.goal_id == g.id) {
            out.push((l.team_id, g.clone()));
        }
    }
    Ok(out)
}
