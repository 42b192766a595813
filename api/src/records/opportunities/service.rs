//! Opportunities: deals in the pipeline. Every stage change is recorded;
//! closed opportunities are final.

use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{
    Patch, TimeRange, check_summed_amount, not_future, now, optional_text, required_text,
    search_condition,
};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::stage_changes::{self, Actor, Subject, check_change_time};
use crate::uow::{self, Found, Work};
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{OpportunityStage, RecordKind, Segment, SourcedBy};
use entity::opportunity::{self, Entity as Opportunity};
use entity::{account, lead};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
};
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct OpportunityFilter {
    pub ids: Vec<Uuid>,
    pub stages: Vec<OpportunityStage>,
    pub sourced_by: Vec<SourcedBy>,
    pub segments: Vec<Segment>,
    pub account_ids: Vec<Uuid>,
    pub owner_ids: Vec<Uuid>,
    pub lead_ids: Vec<Uuid>,
    pub campaign_ids: Vec<Uuid>,
    pub created_at: TimeRange,
    pub closed_at: TimeRange,
    pub search: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpportunityOrder {
    CreatedAt,
    UpdatedAt,
    Amount,
    Name,
}

fn condition(f: &OpportunityFilter) -> Condition {
    let mut c = Condition::all()
        .add(f.created_at.condition(opportunity::Column::CreatedAt))
        .add(f.closed_at.condition(opportunity::Column::ClosedAt));
    if !f.ids.is_empty() {
        c = c.add(opportunity::Column::Id.is_in(f.ids.clone()));
    }
    if !f.stages.is_empty() {
        c = c.add(opportunity::Column::Stage.is_in(f.stages.clone()));
    }
    if !f.sourced_by.is_empty() {
        c = c.add(opportunity::Column::SourcedBy.is_in(f.sourced_by.clone()));
    }
    if !f.segments.is_empty() {
        c = c.add(
            opportunity::Column::AccountId.in_subquery(
                Query::select()
                    .column(account::Column::Id)
                    .from(account::Entity)
                    .and_where(account::Column::Segment.is_in(f.segments.clone()))
                    .to_owned(),
            ),
        );
    }
    if !f.campaign_ids.is_empty() {
        c = c.add(
            opportunity::Column::LeadId.in_subquery(
                Query::select()
                    .column(lead::Column::Id)
                    .from(lead::Entity)
                    .and_where(lead::Column::CampaignId.is_in(f.campaign_ids.clone()))
                    .to_owned(),
            ),
        );
    }
    for (col, ids) in [
        (opportunity::Column::AccountId, &f.account_ids),
        (opportunity::Column::OwnerId, &f.owner_ids),
        (opportunity::Column::LeadId, &f.lead_ids),
    ] {
        if !ids.is_empty() {
            c = c.add(col.is_in(ids.clone()));
        }
    }
    if let Some(s) = &f.search {
        c = c.add(search_condition(&[opportunity::Column::Name], s));
    }
    c
}

fn ordering(order: OpportunityOrder, descending: bool) -> Ordering<Opportunity> {
    let (name, column, key): (_, _, KeyFn<opportunity::Model>) = match order {
        OpportunityOrder::CreatedAt => ("createdAt", opportunity::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
        OpportunityOrder::UpdatedAt => ("updatedAt", opportunity::Column::UpdatedAt, |m| {
            (SortKey::Time(m.updated_at), m.id)
        }),
        OpportunityOrder::Amount => ("amount", opportunity::Column::Amount, |m| {
            (SortKey::Int(m.amount), m.id)
        }),
        OpportunityOrder::Name => ("name", opportunity::Column::Name, |m| {
            (SortKey::Text(m.name.clone()), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: opportunity::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &OpportunityFilter,
    order: OpportunityOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<opportunity::Model>> {
    paginate(
        db,
        Opportunity::find().filter(condition(filter)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, filter: &OpportunityFilter) -> AppResult<u64> {
    Ok(Opportunity::find()
        .filter(condition(filter))
        .count(db)
        .await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<opportunity::Model> {
    Opportunity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("opportunity"))
}

/// A new opportunity (amount in storage units, currency already checked).
#[derive(Debug, Clone)]
pub struct NewOpportunity {
    pub name: String,
    pub account_id: Uuid,
    pub lead_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub expected_close_date: Option<NaiveDate>,
    pub sourced_by: SourcedBy,
    /// Backfill (actors that may backfill only).
    pub created_at: Option<DateTime<Utc>>,
    /// The reason of the creation entry.
    pub reason: Option<String>,
}

async fn check_refs(
    w: &Work,
    account_id: Option<Uuid>,
    owner_id: Option<Uuid>,
    lead_id: Option<Uuid>,
) -> AppResult<()> {
    let db = w.db();
    if let Some(id) = account_id {
        crate::records::accounts::service::get(db, id).await?;
    }
    if let Some(id) = owner_id {
        w.check_exists(Found::User, id, "owner").await?;
    }
    if let Some(id) = lead_id
        && lead::Entity::find_by_id(id).one(db).await?.is_none()
    {
        return Err(AppError::not_found("lead"));
    }
    Ok(())
}

/// Inserts an opportunity at DISCOVERY with its first stage change, in the
/// caller's unit (no backfill check: `created_at` is the caller's).
pub(crate) async fn insert_in(
    w: &mut Work,
    actor: &Actor,
    input: NewOpportunity,
) -> AppResult<opportunity::Model> {
    check_refs(w, Some(input.account_id), input.owner_id, input.lead_id).await?;
    let at = match input.created_at {
        Some(t) => not_future(t, "createdAt")?,
        None => now(),
    };
    check_summed_amount(input.amount, "amount")?;
    let created = w
        .insert_opportunity(opportunity::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(required_text(&input.name, "name")?),
            account_id: Set(input.account_id),
            lead_id: Set(input.lead_id),
            owner_id: Set(input.owner_id),
            stage: Set(OpportunityStage::Discovery),
            amount: Set(input.amount),
            currency: Set(input.currency),
            expected_close_date: Set(input.expected_close_date),
            closed_at: Set(None),
            lost_reason: Set(None),
            sourced_by: Set(input.sourced_by),
            created_by: Set(actor.subject.clone()),
            created_at: Set(at),
            updated_at: Set(at),
        })
        .await?;
    stage_changes::record(
        w,
        Subject::Opportunity(created.id),
        None,
        OpportunityStage::Discovery.as_str(),
        at,
        actor,
        optional_text(input.reason, "reason")?,
    )
    .await?;
    Ok(created)
}

/// A stage to reach right after creation (imports of open or closed deals).
#[derive(Debug, Clone, Default)]
pub struct InitialStage {
    pub stage: Option<OpportunityStage>,
    pub lost_reason: Option<String>,
    /// When the deal closed (backfill) — only with a closed stage.
    pub closed_at: Option<DateTime<Utc>>,
}

/// Creates an opportunity, moves it to its initial stage and links its
/// external ids, in the caller's unit.
pub async fn create_in(
    w: &mut Work,
    actor: &Actor,
    input: NewOpportunity,
    initial: InitialStage,
    refs: &[ExternalRef],
) -> AppResult<opportunity::Model> {
    if input.created_at.is_some() {
        actor.check_backfill("createdAt")?;
    }
    if initial.closed_at.is_some() {
        actor.check_backfill("closedAt")?;
    }
    let mut created = insert_in(w, actor, input).await?;
    if let Some(stage) = initial.stage
        && stage != created.stage
    {
        let at = initial.closed_at.filter(|_| stage.is_closed());
        created =
            change_stage_in(w, actor, created.id, stage, initial.lost_reason, None, at).await?;
    } else if initial.closed_at.is_some() {
        return Err(AppError::bad_input(
            "closedAt",
            "`closedAt` goes with a closed stage",
        ));
    }
    for key in refs {
        external_ids::link(w, RecordKind::Opportunity, key, created.id).await?;
    }
    Ok(created)
}

/// Creates an opportunity (its own unit), all or nothing.
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    input: NewOpportunity,
    initial: InitialStage,
    refs: Vec<ExternalRef>,
) -> AppResult<opportunity::Model> {
    let (input, initial, refs) = (&input, &initial, &refs);
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, actor, input.clone(), initial.clone(), refs).await?;
        w.commit(created).await
    })
    .await
}

/// Changes to an opportunity's fields (not its stage).
#[derive(Debug, Clone, Default)]
pub struct OpportunityPatch {
    pub name: Option<String>,
    pub account_id: Option<Uuid>,
    pub owner_id: Patch<Uuid>,
    pub amount: Option<i64>,
    pub expected_close_date: Patch<NaiveDate>,
    pub sourced_by: Option<SourcedBy>,
    /// External ids to add (one already linked to this opportunity is kept;
    /// one linked to another is a CONFLICT).
    pub external_ids: Vec<ExternalRef>,
}

/// Updates an opportunity's fields (its own unit); a won one's amount also
/// moves its lead's funnel rollup and its attribution credits.
pub async fn update(
    db: &DatabaseConnection,
    id: Uuid,
    patch: OpportunityPatch,
) -> AppResult<opportunity::Model> {
    let patch = &patch;
    uow::run(db, |mut w| async move {
        let updated = update_in(&mut w, id, patch.clone()).await?;
        w.commit(updated).await
    })
    .await
}

/// Updates an opportunity's fields in the caller's unit (locked, then read).
pub async fn update_in(
    w: &mut Work,
    id: Uuid,
    patch: OpportunityPatch,
) -> AppResult<opportunity::Model> {
    let current = w.lock_opportunity(id).await?;
    check_refs(w, patch.account_id, patch.owner_id.flatten(), None).await?;
    for key in &patch.external_ids {
        external_ids::link(w, RecordKind::Opportunity, key, id).await?;
    }
    w.update_opportunity(current, |am| {
        if let Some(name) = patch.name {
            am.name = Set(required_text(&name, "name")?);
        }
        if let Some(a) = patch.account_id {
            am.account_id = Set(a);
        }
        if let Some(o) = patch.owner_id {
            am.owner_id = Set(o);
        }
        if let Some(amount) = patch.amount {
            check_summed_amount(amount, "amount")?;
            am.amount = Set(amount);
        }
        if let Some(d) = patch.expected_close_date {
            am.expected_close_date = Set(d);
        }
        if let Some(s) = patch.sourced_by {
            am.sourced_by = Set(s);
        }
        am.updated_at = Set(now());
        Ok(())
    })
    .await
}

/// Moves an opportunity to `to` (its own unit). Closed ones are final;
/// CLOSED_LOST needs a lost reason; closing sets `closedAt` (the backfilled
/// `at`, or now).
pub async fn change_stage(
    db: &DatabaseConnection,
    actor: &Actor,
    id: Uuid,
    to: OpportunityStage,
    lost_reason: Option<String>,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<opportunity::Model> {
    let (lost_reason, reason) = (&lost_reason, &reason);
    uow::run(db, |mut w| async move {
        let updated = change_stage_in(
            &mut w,
            actor,
            id,
            to,
            lost_reason.clone(),
            reason.clone(),
            at,
        )
        .await?;
        w.commit(updated).await
    })
    .await
}

/// Moves an opportunity to `to` in the caller's unit (locked, then read).
pub async fn change_stage_in(
    w: &mut Work,
    actor: &Actor,
    id: Uuid,
    to: OpportunityStage,
    lost_reason: Option<String>,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<opportunity::Model> {
    if at.is_some() {
        actor.check_backfill("at")?;
    }
    let current = w.lock_opportunity(id).await?;
    if current.stage.is_closed() {
        return Err(AppError::conflict(
            Some("stage"),
            "a closed opportunity cannot change stage",
        ));
    }
    if to == current.stage {
        return Err(AppError::bad_input(
            "to",
            format!("the opportunity is already {}", to.as_str()),
        ));
    }
    let lost_reason = optional_text(lost_reason, "lostReason")?;
    if to == OpportunityStage::ClosedLost && lost_reason.is_none() {
        return Err(AppError::bad_input(
            "lostReason",
            "CLOSED_LOST needs a `lostReason`",
        ));
    }
    let reason = optional_text(reason, "reason")?;
    let at = check_change_time(w.db(), Subject::Opportunity(id), current.created_at, at).await?;
    let from = current.stage;
    let updated = w
        .update_opportunity(current, |am| {
            am.stage = Set(to);
            if to.is_closed() {
                am.closed_at = Set(Some(at));
            }
            if to == OpportunityStage::ClosedLost {
                am.lost_reason = Set(lost_reason);
            }
            am.updated_at = Set(now());
            Ok(())
        })
        .await?;
    stage_changes::record(
        w,
        Subject::Opportunity(id),
        Some(from.as_str()),
        to.as_str(),
        at,
        actor,
        reason,
    )
    .await?;
    Ok(updated)
}

/// Creates or updates the opportunity `key` maps to (idempotent; its own
/// unit). A differing stage is recorded as a stage change.
pub async fn upsert(
    db: &DatabaseConnection,
    actor: &Actor,
    key: ExternalRef,
    input: NewOpportunity,
    initial: InitialStage,
) -> AppResult<opportunity::Model> {
    let (key, input, initial) = (&key, &input, &initial);
    uow::run(db, |mut w| async move {
        let model = upsert_in(&mut w, actor, key, input.clone(), initial.clone()).await?;
        w.commit(model).await
    })
    .await
}

/// Creates or updates the opportunity `key` maps to, in the caller's unit.
pub async fn upsert_in(
    w: &mut Work,
    actor: &Actor,
    key: &ExternalRef,
    input: NewOpportunity,
    initial: InitialStage,
) -> AppResult<opportunity::Model> {
    if initial.closed_at.is_some() {
        actor.check_backfill("closedAt")?;
    }
    Ok(
        match external_ids::lookup(w.db(), RecordKind::Opportunity, key).await? {
            Some(id) => {
                let patch = OpportunityPatch {
                    name: Some(input.name),
                    account_id: Some(input.account_id),
                    owner_id: input.owner_id.map(Some),
                    amount: Some(input.amount),
                    expected_close_date: input.expected_close_date.map(Some),
                    sourced_by: Some(input.sourced_by),
                    external_ids: Vec::new(),
                };
                let mut updated = update_in(w, id, patch).await?;
                if let Some(to) = initial.stage
                    && to != updated.stage
                {
                    let at = initial.closed_at.filter(|_| to.is_closed());
                    updated = change_stage_in(
                        w,
                        actor,
                        id,
                        to,
                        initial.lost_reason,
                        input.reason.or_else(|| Some("synced".into())),
                        at,
                    )
                    .await?;
                }
                updated
            }
            None => create_in(w, actor, input, initial, std::slice::from_ref(key)).await?,
        },
    )
}
