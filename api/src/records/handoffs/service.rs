//! Hand-offs: a lead or an opportunity passed from one team to another,
//! answered (ACCEPTED or REJECTED with a reason) by the receiving team, or
//! EXPIRED by the `handoffs.expire` job once past `dueAt`.

use super::policies;
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{TimeRange, not_future, now, optional_text};
use crate::records::leads::service::{self as leads, LeadFields};
use crate::records::opportunities::service::{self as opportunities, OpportunityPatch};
use crate::records::stage_changes::Actor;
use crate::uow::{self, Work};
use chrono::{DateTime, Duration, Utc};
use entity::enums::{HandoffReason, HandoffStatus, LeadStage, Role, TeamFunction};
use entity::handoff::{self, Entity as Handoff};
use entity::{lead, sla_policy};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

/// Who acts on a hand-off: the change's actor, plus the role and team the
/// rules read.
#[derive(Debug, Clone)]
pub struct Who {
    pub actor: Actor,
    pub role: Role,
    pub team_id: Option<Uuid>,
}

impl From<&Caller> for Who {
    fn from(c: &Caller) -> Self {
        Who {
            actor: Actor::from(c),
            role: c.role,
            team_id: c.team_id,
        }
    }
}

/// A hand-off to create. The backfill fields (ADMIN and INTEGRATION only)
/// record an imported hand-off as it was, without replaying its effects.
#[derive(Debug, Clone, Default)]
pub struct NewHandoff {
    pub lead_id: Option<Uuid>,
    pub opportunity_id: Option<Uuid>,
    pub to_team_id: Option<Uuid>,
    pub to_user_id: Option<Uuid>,
    /// Default: the caller's team (others: ADMIN, REVOPS, INTEGRATION).
    pub from_team_id: Option<Uuid>,
    pub note: Option<String>,
    pub handed_at: Option<DateTime<Utc>>,
    pub status: Option<HandoffStatus>,
    pub responded_at: Option<DateTime<Utc>>,
    pub reason: Option<HandoffReason>,
    pub from_user_id: Option<Uuid>,
    pub responded_by_id: Option<Uuid>,
    pub response_note: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct HandoffFilter {
    pub statuses: Vec<HandoffStatus>,
    pub from_team_ids: Vec<Uuid>,
    pub to_team_ids: Vec<Uuid>,
    pub to_user_ids: Vec<Uuid>,
    pub lead_ids: Vec<Uuid>,
    pub opportunity_ids: Vec<Uuid>,
    /// true: PENDING with `dueAt` before now; false: every other.
    pub overdue: Option<bool>,
    pub handed_at: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffOrder {
    HandedAt,
    DueAt,
    RespondedAt,
}

fn overdue_condition(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(handoff::Column::Status.eq(HandoffStatus::Pending))
        .add(handoff::Column::DueAt.lt(now))
}

fn condition(f: &HandoffFilter) -> Condition {
    let mut c = Condition::all().add(f.handed_at.condition(handoff::Column::HandedAt));
    if !f.statuses.is_empty() {
        c = c.add(handoff::Column::Status.is_in(f.statuses.clone()));
    }
    for (col, ids) in [
        (handoff::Column::FromTeamId, &f.from_team_ids),
        (handoff::Column::ToTeamId, &f.to_team_ids),
        (handoff::Column::ToUserId, &f.to_user_ids),
        (handoff::Column::LeadId, &f.lead_ids),
        (handoff::Column::OpportunityId, &f.opportunity_ids),
    ] {
        if !ids.is_empty() {
            c = c.add(col.is_in(ids.clone()));
        }
    }
    match f.overdue {
        Some(true) => c = c.add(overdue_condition(now())),
        Some(false) => c = c.add(overdue_condition(now()).not()),
        None => {}
    }
    c
}

fn ordering(order: HandoffOrder, descending: bool) -> Ordering<Handoff> {
    // Nullable times sort by their value or the epoch (a stable key either way).
    fn or_epoch(t: Option<DateTime<Utc>>) -> SortKey {
        SortKey::Time(t.unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
    }
    let (name, column, key): (_, _, KeyFn<handoff::Model>) = match order {
        HandoffOrder::HandedAt => ("handedAt", handoff::Column::HandedAt, |m| {
            (SortKey::Time(m.handed_at), m.id)
        }),
        HandoffOrder::DueAt => ("dueAt", handoff::Column::DueAt, |m| {
            (or_epoch(m.due_at), m.id)
        }),
        HandoffOrder::RespondedAt => ("respondedAt", handoff::Column::RespondedAt, |m| {
            (or_epoch(m.responded_at), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: handoff::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &HandoffFilter,
    order: HandoffOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<handoff::Model>> {
    // Keyset pages need a non-null sort key: ordered by a nullable time,
    // only the hand-offs that have it are listed.
    let mut select = Handoff::find().filter(condition(filter));
    match order {
        HandoffOrder::DueAt => select = select.filter(handoff::Column::DueAt.is_not_null()),
        HandoffOrder::RespondedAt => {
            select = select.filter(handoff::Column::RespondedAt.is_not_null())
        }
        HandoffOrder::HandedAt => {}
    }
    paginate(db, select, &ordering(order, descending), page).await
}

pub async fn count(
    db: &impl ConnectionTrait,
    filter: &HandoffFilter,
    order: HandoffOrder,
) -> AppResult<u64> {
    let mut select = Handoff::find().filter(condition(filter));
    match order {
        HandoffOrder::DueAt => select = select.filter(handoff::Column::DueAt.is_not_null()),
        HandoffOrder::RespondedAt => {
            select = select.filter(handoff::Column::RespondedAt.is_not_null())
        }
        HandoffOrder::HandedAt => {}
    }
    Ok(select.count(db).await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<handoff::Model> {
    Handoff::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("handoff"))
}

/// The PENDING hand-off of a lead or an opportunity, if any.
async fn pending_of(
    db: &impl ConnectionTrait,
    lead_id: Option<Uuid>,
    opportunity_id: Option<Uuid>,
) -> AppResult<Option<handoff::Model>> {
    let mut q = Handoff::find().filter(handoff::Column::Status.eq(HandoffStatus::Pending));
    q = match (lead_id, opportunity_id) {
        (Some(l), _) => q.filter(handoff::Column::LeadId.eq(l)),
        (None, Some(o)) => q.filter(handoff::Column::OpportunityId.eq(o)),
        (None, None) => return Ok(None),
    };
    Ok(q.one(db).await?)
}

/// A hand-off's `dueAt` under a policy.
pub fn due_at(
    handed_at: DateTime<Utc>,
    policy: Option<&sla_policy::Model>,
) -> Option<DateTime<Utc>> {
    policy.map(|p| handed_at + Duration::hours(p.response_hours.into()))
}

/// Creates a hand-off (its own unit).
pub async fn create(
    db: &DatabaseConnection,
    who: &Who,
    input: NewHandoff,
) -> AppResult<handoff::Model> {
    let input = &input;
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, who, input.clone()).await?;
        w.commit(created).await
    })
    .await
}

/// Creates a hand-off in the caller's unit: the lead or opportunity is
/// locked first, so that two hand-offs of one record queue on it and the
/// second sees the first PENDING one (CONFLICT).
pub async fn create_in(w: &mut Work, who: &Who, input: NewHandoff) -> AppResult<handoff::Model> {
    use crate::records::{teams::service as teams, users::service as users};
    let backfill = [
        (input.handed_at.is_some(), "handedAt"),
        (input.status.is_some(), "status"),
        (input.responded_at.is_some(), "respondedAt"),
        (input.from_user_id.is_some(), "fromUserId"),
        (input.responded_by_id.is_some(), "respondedById"),
        (input.response_note.is_some(), "responseNote"),
        (input.reason.is_some(), "reason"),
    ];
    for (given, field) in backfill {
        if given {
            who.actor.check_backfill(field)?;
        }
    }
    let (lead_id, opportunity_id) = match (input.lead_id, input.opportunity_id) {
        (Some(l), None) => (Some(l), None),
        (None, Some(o)) => (None, Some(o)),
        _ => {
            return Err(AppError::bad_input(
                "leadId",
                "give exactly one of `leadId` and `opportunityId`",
            ));
        }
    };
    let Some(to_team_id) = input.to_team_id else {
        return Err(AppError::bad_input("toTeamId", "`toTeamId` is required"));
    };
    let from_team_id = match (input.from_team_id, who.team_id) {
        (Some(f), own) if Some(f) != own => {
            if !matches!(who.role, Role::Admin | Role::Revops | Role::Integration) {
                return Err(AppError::forbidden(
                    "only ADMIN, REVOPS and INTEGRATION callers may hand off for another team",
                ));
            }
            f
        }
        (Some(f), _) => f,
        (None, Some(own)) => own,
        (None, None) => {
            return Err(AppError::bad_input(
                "fromTeamId",
                "the caller belongs to no team: give `fromTeamId`",
            ));
        }
    };
    // Lock the record before reading anything about it.
    match (lead_id, opportunity_id) {
        (Some(l), _) => {
            w.lock_lead(l).await?;
        }
        (_, Some(o)) => {
            w.lock_opportunity(o).await?;
        }
        _ => {}
    }
    teams::get(w.db(), from_team_id)
        .await
        .map_err(|_| AppError::not_found("fromTeam"))?;
    let to_team = teams::get(w.db(), to_team_id)
        .await
        .map_err(|_| AppError::not_found("toTeam"))?;
    if from_team_id == to_team_id {
        return Err(AppError::bad_input(
            "toTeamId",
            "a hand-off goes to another team than the sender's",
        ));
    }
    if let Some(u) = input.to_user_id {
        let user = users::get(w.db(), u)
            .await
            .map_err(|_| AppError::not_found("toUser"))?;
        if user.team_id != Some(to_team.id) || !user.active {
            return Err(AppError::bad_input(
                "toUserId",
                "`toUserId` must be an active member of the receiving team",
            ));
        }
    }
    for (id, what) in [
        (input.from_user_id, "fromUser"),
        (input.responded_by_id, "respondedBy"),
    ] {
        if let Some(u) = id {
            users::get(w.db(), u)
                .await
                .map_err(|_| AppError::not_found(what))?;
        }
    }
    let status = input.status.unwrap_or(HandoffStatus::Pending);
    let handed_at = match input.handed_at {
        Some(t) => not_future(t, "handedAt")?,
        None => now(),
    };
    let responded_at = match (status, input.responded_at) {
        (HandoffStatus::Accepted | HandoffStatus::Rejected, Some(t)) => {
            let t = not_future(t, "respondedAt")?;
            if t < handed_at {
                return Err(AppError::bad_input(
                    "respondedAt",
                    "`respondedAt` must not be before `handedAt`",
                ));
            }
            Some(t)
        }
        (HandoffStatus::Accepted | HandoffStatus::Rejected, None) => {
            return Err(AppError::bad_input(
                "respondedAt",
                "an answered hand-off needs `respondedAt`",
            ));
        }
        (_, Some(_)) => {
            return Err(AppError::bad_input(
                "respondedAt",
                "only an ACCEPTED or REJECTED hand-off has `respondedAt`",
            ));
        }
        (_, None) => None,
    };
    let reason = match (status, input.reason) {
        (HandoffStatus::Rejected, None) => {
            return Err(AppError::bad_input(
                "reason",
                "a REJECTED hand-off needs a `reason`",
            ));
        }
        (HandoffStatus::Rejected, r) => r,
        (_, Some(_)) => {
            return Err(AppError::bad_input(
                "reason",
                "only a REJECTED hand-off has a `reason`",
            ));
        }
        (_, None) => None,
    };
    if status == HandoffStatus::Pending
        && pending_of(w.db(), lead_id, opportunity_id).await?.is_some()
    {
        let field = if lead_id.is_some() {
            "leadId"
        } else {
            "opportunityId"
        };
        return Err(AppError::conflict(
            Some(field),
            "the record already has a PENDING hand-off",
        ));
    }
    let policy = policies::for_route(w.db(), from_team_id, to_team_id).await?;
    let due = due_at(handed_at, policy.as_ref());
    let at = now();
    let created = w
        .insert(handoff::ActiveModel {
            id: Set(Uuid::now_v7()),
            lead_id: Set(lead_id),
            opportunity_id: Set(opportunity_id),
            from_team_id: Set(from_team_id),
            to_team_id: Set(to_team_id),
            from_user_id: Set(input.from_user_id.or(who.actor.user_id)),
            to_user_id: Set(input.to_user_id),
            responded_by_id: Set(input.responded_by_id),
            policy_id: Set(policy.as_ref().map(|p| p.id)),
            status: Set(status),
            reason: Set(reason),
            note: Set(optional_text(input.note, "note")?),
            response_note: Set(optional_text(input.response_note, "responseNote")?),
            handed_at: Set(handed_at),
            due_at: Set(due),
            responded_at: Set(responded_at),
            expired_at: Set((status == HandoffStatus::Expired).then_some(due.unwrap_or(handed_at))),
            created_by: Set(who.actor.subject.clone()),
            created_at: Set(at),
            updated_at: Set(at),
        })
        .await?;
    w.note_handoff(&created);
    Ok(created)
}

/// An answer to a PENDING hand-off.
#[derive(Debug, Clone)]
pub enum Answer {
    Accept,
    Reject {
        reason: Option<HandoffReason>,
        note: Option<String>,
    },
}

/// Accepts or rejects a hand-off (its own unit).
pub async fn answer(
    db: &DatabaseConnection,
    who: &Who,
    id: Uuid,
    answer: Answer,
) -> AppResult<handoff::Model> {
    let answer = &answer;
    uow::run(db, |mut w| async move {
        let out = answer_in(&mut w, who, id, answer.clone()).await?;
        w.commit(out).await
    })
    .await
}

/// Whether `who` may answer hand-offs to `to_team`: its members, or
/// REVOPS and ADMIN.
fn check_receiver(who: &Who, to_team: Uuid) -> AppResult<()> {
    match who.role {
        Role::Admin | Role::Revops => Ok(()),
        Role::Member | Role::Integration if who.team_id == Some(to_team) => Ok(()),
        _ => Err(AppError::forbidden(
            "only members of the receiving team, REVOPS and ADMIN may answer a hand-off",
        )),
    }
}

/// Accepts or rejects a hand-off in the caller's unit. Locks the lead or
/// opportunity, then the hand-off (the unit's lock order), then checks it is
/// still PENDING: of two concurrent answers one wins, the other is CONFLICT.
pub async fn answer_in(
    w: &mut Work,
    who: &Who,
    id: Uuid,
    answer: Answer,
) -> AppResult<handoff::Model> {
    if let Answer::Reject { reason: None, .. } = answer {
        return Err(AppError::bad_input(
            "reason",
            "a rejection needs a `reason`",
        ));
    }
    // Unlocked: only the record and the route, which never change.
    let seen = get(w.db(), id).await?;
    check_receiver(who, seen.to_team_id)?;
    if let Some(l) = seen.lead_id {
        w.lock_lead(l).await?;
    }
    if let Some(o) = seen.opportunity_id {
        w.lock_opportunity(o).await?;
    }
    let current = w.lock_handoff(id).await?;
    if current.status != HandoffStatus::Pending {
        return Err(AppError::conflict(
            Some("status"),
            format!("the hand-off is already {}", current.status.as_str()),
        ));
    }
    let at = now();
    let responder = who.actor.user_id;
    let mut am = current.model().clone().into_active_model();
    am.responded_at = Set(Some(at));
    am.responded_by_id = Set(responder);
    am.updated_at = Set(at);
    match &answer {
        Answer::Accept => am.status = Set(HandoffStatus::Accepted),
        Answer::Reject { reason, note } => {
            am.status = Set(HandoffStatus::Rejected);
            am.reason = Set(*reason);
            am.response_note = Set(optional_text(note.clone(), "note")?);
        }
    }
    let updated = w.update(am).await?;
    apply_effects(w, who, &updated, &answer).await?;
    w.note_handoff(&updated);
    Ok(updated)
}

/// What an answer does to the lead or opportunity (live answers only;
/// imported ones are recorded as they were).
async fn apply_effects(
    w: &mut Work,
    who: &Who,
    h: &handoff::Model,
    answer: &Answer,
) -> AppResult<()> {
    let to_team = crate::records::teams::service::get(w.db(), h.to_team_id).await?;
    let sales_side = matches!(
        to_team.function,
        TeamFunction::SalesDevelopment | TeamFunction::Sales
    );
    let owner = who.actor.user_id.or(h.to_user_id);
    match (h.lead_id, h.opportunity_id, answer) {
        (Some(lead_id), _, Answer::Accept) if sales_side => {
            let l = current_lead(w, lead_id).await?;
            if l.stage == LeadStage::Mql {
                leads::change_stage_in(
                    w,
                    &who.actor,
                    lead_id,
                    LeadStage::Sal,
                    Some("handoff:accepted".to_owned()),
                    None,
                )
                .await?;
            }
            let mut fields = LeadFields {
                team_id: Some(Some(to_team.id)),
                ..LeadFields::default()
            };
            if let Some(o) = owner {
                fields.owner_id = Some(Some(o));
            }
            leads::update_in(w, lead_id, fields).await?;
        }
        (
            Some(lead_id),
            _,
            Answer::Reject {
                reason: Some(r), ..
            },
        ) => {
            let l = current_lead(w, lead_id).await?;
            let to = r.lead_stage();
            if l.stage != to && l.stage != LeadStage::Converted {
                leads::change_stage_in(
                    w,
                    &who.actor,
                    lead_id,
                    to,
                    Some(format!("handoff:rejected:{}", r.as_str())),
                    None,
                )
                .await?;
            }
        }
        (None, Some(opp_id), Answer::Accept) => {
            if let Some(o) = owner {
                opportunities::update_in(
                    w,
                    opp_id,
                    OpportunityPatch {
                        owner_id: Some(Some(o)),
                        ..OpportunityPatch::default()
                    },
                )
                .await?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn current_lead(w: &mut Work, id: Uuid) -> AppResult<lead::Model> {
    Ok(w.lock_lead(id).await?.model().clone())
}

/// Most hand-offs one expiry run marks (the next run takes the rest).
pub const EXPIRE_BATCH: u64 = 1_000;

/// Marks the PENDING hand-offs due before `now` EXPIRED (its own unit);
/// returns them. Idempotent: a second run finds nothing to do.
pub async fn expire_due(
    db: &DatabaseConnection,
    at: DateTime<Utc>,
) -> AppResult<Vec<handoff::Model>> {
    uow::run(db, |mut w| async move {
        let due = w.lock_due_handoffs(at, EXPIRE_BATCH).await?;
        let mut out = Vec::with_capacity(due.len());
        for h in due {
            let mut am = h.model().clone().into_active_model();
            am.status = Set(HandoffStatus::Expired);
            am.expired_at = Set(Some(at));
            am.updated_at = Set(now());
            let updated = w.update(am).await?;
            w.note_handoff(&updated);
            out.push(updated);
        }
        w.commit(out).await
    })
    .await
}

/// Qualifies a lead by the SLA policies, in the caller's unit (the lead is
/// locked): a lead at INQUIRY or RECYCLED that meets an active
/// MARKETING-owned policy's criteria becomes MQL (reason `sla:qualified`),
/// and with `autoHandOff` is handed off to the policy's team at once.
pub async fn qualify_in(w: &mut Work, actor: &Actor, lead_id: Uuid) -> AppResult<lead::Model> {
    let l = w.lock_lead(lead_id).await?.model().clone();
    if !matches!(l.stage, LeadStage::Inquiry | LeadStage::Recycled) {
        return Ok(l);
    }
    let Some(policy) = policies::qualifying(w.db(), &l).await? else {
        return Ok(l);
    };
    let l = leads::change_stage_in(
        w,
        actor,
        lead_id,
        LeadStage::Mql,
        Some("sla:qualified".to_owned()),
        None,
    )
    .await?;
    if policy.auto_hand_off && pending_of(w.db(), Some(lead_id), None).await?.is_none() {
        // Handed off by the policy, not by a user (the actor still signs it).
        let system = Who {
            actor: Actor {
                may_backfill: false,
                user_id: None,
                ..actor.clone()
            },
            role: Role::Admin,
            team_id: None,
        };
        create_in(
            w,
            &system,
            NewHandoff {
                lead_id: Some(lead_id),
                to_team_id: Some(policy.to_team_id),
                from_team_id: Some(policy.from_team_id),
                note: Some(format!("auto hand-off: {}", policy.name)),
                ..NewHandoff::default()
            },
        )
        .await?;
    }
    Ok(l)
}
