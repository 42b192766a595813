//! SLA policies: one per route fromTeam → toTeam (while active), with the
//! sender's qualified-lead target, the receiver's response time, and the
//! criteria that make a lead MQL automatically.

use crate::error::{AppError, AppResult};
use crate::records::common::{Patch, now, required_text};
use crate::uow::{self, Work};
use entity::enums::{Channel, Segment, SlaPeriod, TeamFunction};
use entity::sla_policy::{self, Entity as SlaPolicy};
use entity::{account, lead};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

/// Fields of a policy, as written by create and update.
#[derive(Debug, Clone, Default)]
pub struct PolicyFields {
    pub name: Option<String>,
    pub from_team_id: Option<Uuid>,
    pub to_team_id: Option<Uuid>,
    pub period: Option<SlaPeriod>,
    pub qualified_lead_target: Option<i32>,
    pub response_hours: Option<i32>,
    pub min_score: Patch<i32>,
    pub segments: Patch<Vec<Segment>>,
    pub sources: Patch<Vec<Channel>>,
    pub auto_hand_off: Option<bool>,
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<sla_policy::Model> {
    SlaPolicy::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("SLA policy"))
}

/// Policies, oldest first; archived ones only when asked.
pub async fn list(
    db: &impl ConnectionTrait,
    include_archived: bool,
) -> AppResult<Vec<sla_policy::Model>> {
    let mut q = SlaPolicy::find();
    if !include_archived {
        q = q.filter(sla_policy::Column::ArchivedAt.is_null());
    }
    Ok(q.order_by_asc(sla_policy::Column::CreatedAt)
        .order_by_asc(sla_policy::Column::Id)
        .all(db)
        .await?)
}

/// The active policy of a route, if any.
pub async fn for_route(
    db: &impl ConnectionTrait,
    from_team: Uuid,
    to_team: Uuid,
) -> AppResult<Option<sla_policy::Model>> {
    Ok(SlaPolicy::find()
        .filter(sla_policy::Column::FromTeamId.eq(from_team))
        .filter(sla_policy::Column::ToTeamId.eq(to_team))
        .filter(sla_policy::Column::ArchivedAt.is_null())
        .one(db)
        .await?)
}

fn join<T: Copy>(values: &[T], name: impl Fn(T) -> String) -> Option<String> {
    (!values.is_empty()).then(|| {
        values
            .iter()
            .map(|v| name(*v))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The segments a policy's criteria name (empty: any).
pub fn segments(p: &sla_policy::Model) -> Vec<Segment> {
    split(p.segments.as_deref(), Segment::ALL, |s| s.as_str())
}

/// The sources a policy's criteria name (empty: any).
pub fn sources(p: &sla_policy::Model) -> Vec<Channel> {
    split(p.sources.as_deref(), Channel::ALL, |s| s.as_str())
}

fn split<T: Copy>(raw: Option<&str>, all: &[T], name: impl Fn(T) -> String) -> Vec<T> {
    raw.unwrap_or("")
        .split(',')
        .filter_map(|n| all.iter().copied().find(|v| name(*v) == n))
        .collect()
}

/// Whether a policy names any qualification criterion.
pub fn has_criteria(p: &sla_policy::Model) -> bool {
    p.min_score.is_some() || p.segments.is_some() || p.sources.is_some()
}

fn validate(p: &sla_policy::ActiveModel) -> AppResult<()> {
    if let Some(t) = p.qualified_lead_target.try_as_ref()
        && *t <= 0
    {
        return Err(AppError::bad_input(
            "qualifiedLeadTarget",
            "`qualifiedLeadTarget` must be positive",
        ));
    }
    if let Some(h) = p.response_hours.try_as_ref()
        && *h <= 0
    {
        return Err(AppError::bad_input(
            "responseHours",
            "`responseHours` must be positive",
        ));
    }
    if let Some(Some(s)) = p.min_score.try_as_ref()
        && !(0..=1000).contains(s)
    {
        return Err(AppError::bad_input(
            "minScore",
            "`minScore` must be between 0 and 1000",
        ));
    }
    Ok(())
}

fn apply(am: &mut sla_policy::ActiveModel, f: &PolicyFields) -> AppResult<()> {
    if let Some(n) = &f.name {
        am.name = Set(required_text(n, "name")?);
    }
    if let Some(v) = f.from_team_id {
        am.from_team_id = Set(v);
    }
    if let Some(v) = f.to_team_id {
        am.to_team_id = Set(v);
    }
    if let Some(v) = f.period {
        am.period = Set(v);
    }
    if let Some(v) = f.qualified_lead_target {
        am.qualified_lead_target = Set(v);
    }
    if let Some(v) = f.response_hours {
        am.response_hours = Set(v);
    }
    if let Some(v) = f.min_score {
        am.min_score = Set(v);
    }
    if let Some(v) = &f.segments {
        am.segments = Set(v.as_deref().and_then(|s| join(s, |x| x.as_str())));
    }
    if let Some(v) = &f.sources {
        am.sources = Set(v.as_deref().and_then(|s| join(s, |x| x.as_str())));
    }
    if let Some(v) = f.auto_hand_off {
        am.auto_hand_off = Set(v);
    }
    validate(am)
}

async fn check_route(w: &Work, from: Uuid, to: Uuid, exclude: Option<Uuid>) -> AppResult<()> {
    use crate::records::teams::service as teams;
    teams::get(w.db(), from)
        .await
        .map_err(|_| AppError::not_found("fromTeam"))?;
    teams::get(w.db(), to)
        .await
        .map_err(|_| AppError::not_found("toTeam"))?;
    if from == to {
        return Err(AppError::bad_input(
            "toTeamId",
            "a policy's route joins two different teams",
        ));
    }
    if let Some(existing) = for_route(w.db(), from, to).await?
        && Some(existing.id) != exclude
    {
        return Err(AppError::conflict(
            Some("toTeamId"),
            "this route already has an active SLA policy: update or archive it",
        ));
    }
    Ok(())
}

/// Creates a policy (its own unit).
pub async fn create(db: &DatabaseConnection, fields: PolicyFields) -> AppResult<sla_policy::Model> {
    let fields = &fields;
    uow::run(db, |mut w| async move {
        let (Some(from), Some(to)) = (fields.from_team_id, fields.to_team_id) else {
            return Err(AppError::bad_input(
                "toTeamId",
                "`fromTeamId` and `toTeamId` are required",
            ));
        };
        for (ok, field) in [
            (fields.name.is_some(), "name"),
            (fields.period.is_some(), "period"),
            (
                fields.qualified_lead_target.is_some(),
                "qualifiedLeadTarget",
            ),
            (fields.response_hours.is_some(), "responseHours"),
        ] {
            if !ok {
                return Err(AppError::bad_input(field, format!("`{field}` is required")));
            }
        }
        let at = now();
        let mut am = sla_policy::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(String::new()),
            from_team_id: Set(from),
            to_team_id: Set(to),
            period: Set(SlaPeriod::Month),
            qualified_lead_target: Set(0),
            response_hours: Set(0),
            min_score: Set(None),
            segments: Set(None),
            sources: Set(None),
            auto_hand_off: Set(false),
            archived_at: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        };
        apply(&mut am, fields)?;
        check_route(&w, from, to, None).await?;
        let created = w.insert(am).await?;
        w.commit(created).await
    })
    .await
}

/// Updates a policy (its own unit). Archived policies are final.
pub async fn update(
    db: &DatabaseConnection,
    id: Uuid,
    fields: PolicyFields,
) -> AppResult<sla_policy::Model> {
    let fields = &fields;
    uow::run(db, |mut w| async move {
        let current = get(w.db(), id).await?;
        if current.archived_at.is_some() {
            return Err(AppError::conflict(Some("id"), "the SLA policy is archived"));
        }
        let from = fields.from_team_id.unwrap_or(current.from_team_id);
        let to = fields.to_team_id.unwrap_or(current.to_team_id);
        let mut am = current.into_active_model();
        apply(&mut am, fields)?;
        check_route(&w, from, to, Some(id)).await?;
        am.updated_at = Set(now());
        let updated = w.update(am).await?;
        w.commit(updated).await
    })
    .await
}

/// Archives a policy (its own unit): it no longer times new hand-offs nor
/// qualifies leads; what it timed keeps its `dueAt`.
pub async fn archive(db: &DatabaseConnection, id: Uuid) -> AppResult<sla_policy::Model> {
    uow::run(db, |mut w| async move {
        let current = get(w.db(), id).await?;
        if current.archived_at.is_some() {
            return w.commit(current).await;
        }
        let mut am = current.into_active_model();
        let at = now();
        am.archived_at = Set(Some(at));
        am.updated_at = Set(at);
        let updated = w.update(am).await?;
        w.commit(updated).await
    })
    .await
}

/// The first active policy owned by a MARKETING team (oldest first) whose
/// criteria the lead meets; a policy without criteria qualifies nothing.
pub async fn qualifying(
    db: &impl ConnectionTrait,
    l: &lead::Model,
) -> AppResult<Option<sla_policy::Model>> {
    let marketing: Vec<Uuid> = entity::team::Entity::find()
        .filter(entity::team::Column::Function.eq(TeamFunction::Marketing))
        .all(db)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect();
    if marketing.is_empty() {
        return Ok(None);
    }
    let candidates = SlaPolicy::find()
        .filter(sla_policy::Column::ArchivedAt.is_null())
        .filter(sla_policy::Column::FromTeamId.is_in(marketing))
        .order_by_asc(sla_policy::Column::CreatedAt)
        .order_by_asc(sla_policy::Column::Id)
        .all(db)
        .await?;
    let mut segment: Option<Option<Segment>> = None;
    for p in candidates {
        if !has_criteria(&p) {
            continue;
        }
        if p.min_score.is_some_and(|min| l.score < min) {
            continue;
        }
        let srcs = sources(&p);
        if !srcs.is_empty() && !srcs.contains(&l.source) {
            continue;
        }
        let segs = segments(&p);
        if !segs.is_empty() {
            if segment.is_none() {
                segment = Some(match l.account_id {
                    Some(a) => account::Entity::find_by_id(a)
                        .one(db)
                        .await?
                        .map(|a| a.segment),
                    None => None,
                });
            }
            match segment.flatten() {
                Some(s) if segs.contains(&s) => {}
                _ => continue,
            }
        }
        return Ok(Some(p));
    }
    Ok(None)
}
