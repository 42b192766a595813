//! Leads: the funnel's people. Every stage change is recorded.

use crate::error::{AppError, AppResult};
use crate::metrics::rollups::{self, Leads, Won};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{
    Patch, TimeRange, email_domain, normalize_email, not_future, now, optional_text,
    search_condition,
};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::stage_changes::{self, Actor, Subject};
use chrono::{DateTime, Utc};
use entity::enums::{Channel, LeadStage, RecordKind, Segment};
use entity::lead::{self, Entity as Lead};
use entity::{account, touchpoint};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionSession, TransactionTrait,
};
use uuid::Uuid;

/// Most leads `createLeads` takes in one call.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub ids: Vec<Uuid>,
    pub stages: Vec<LeadStage>,
    pub sources: Vec<Channel>,
    pub segments: Vec<Segment>,
    pub account_ids: Vec<Uuid>,
    pub owner_ids: Vec<Uuid>,
    pub campaign_ids: Vec<Uuid>,
    pub team_ids: Vec<Uuid>,
    pub created_at: TimeRange,
    pub search: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadOrder {
    CreatedAt,
    UpdatedAt,
    Email,
    Score,
}

fn condition(f: &LeadFilter) -> Condition {
    let mut c = Condition::all().add(f.created_at.condition(lead::Column::CreatedAt));
    if !f.ids.is_empty() {
        c = c.add(lead::Column::Id.is_in(f.ids.clone()));
    }
    if !f.stages.is_empty() {
        c = c.add(lead::Column::Stage.is_in(f.stages.clone()));
    }
    if !f.sources.is_empty() {
        c = c.add(lead::Column::Source.is_in(f.sources.clone()));
    }
    if !f.segments.is_empty() {
        c = c.add(
            lead::Column::AccountId.in_subquery(
                Query::select()
                    .column(account::Column::Id)
                    .from(account::Entity)
                    .and_where(account::Column::Segment.is_in(f.segments.clone()))
                    .to_owned(),
            ),
        );
    }
    for (col, ids) in [
        (lead::Column::AccountId, &f.account_ids),
        (lead::Column::OwnerId, &f.owner_ids),
        (lead::Column::CampaignId, &f.campaign_ids),
        (lead::Column::TeamId, &f.team_ids),
    ] {
        if !ids.is_empty() {
            c = c.add(col.is_in(ids.clone()));
        }
    }
    if let Some(s) = &f.search {
        c = c.add(search_condition(
            &[
                lead::Column::Email,
                lead::Column::FirstName,
                lead::Column::LastName,
                lead::Column::Company,
            ],
            s,
        ));
    }
    c
}

fn ordering(order: LeadOrder, descending: bool) -> Ordering<Lead> {
    let (name, column, key): (_, _, KeyFn<lead::Model>) = match order {
        LeadOrder::CreatedAt => ("createdAt", lead::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
        LeadOrder::UpdatedAt => ("updatedAt", lead::Column::UpdatedAt, |m| {
            (SortKey::Time(m.updated_at), m.id)
        }),
        LeadOrder::Email => ("email", lead::Column::Email, |m| {
            (SortKey::Text(m.email.clone()), m.id)
        }),
        LeadOrder::Score => ("score", lead::Column::Score, |m| {
            (SortKey::Int(m.score.into()), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: lead::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &LeadFilter,
    order: LeadOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<lead::Model>> {
    paginate(
        db,
        Lead::find().filter(condition(filter)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, filter: &LeadFilter) -> AppResult<u64> {
    Ok(Lead::find().filter(condition(filter)).count(db).await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<lead::Model> {
    Lead::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("lead"))
}

/// Fields of a lead, as written by create, update and upsert.
#[derive(Debug, Clone, Default)]
pub struct LeadFields {
    pub email: Option<String>,
    pub first_name: Patch<String>,
    pub last_name: Patch<String>,
    pub title: Patch<String>,
    pub company: Patch<String>,
    pub account_id: Patch<Uuid>,
    pub source: Option<Channel>,
    pub campaign_id: Patch<Uuid>,
    pub score: Option<i32>,
    pub owner_id: Patch<Uuid>,
    pub team_id: Patch<Uuid>,
    /// Initial stage on create; on upsert, a stage to move to.
    pub stage: Option<LeadStage>,
    /// Backfill (ADMIN and INTEGRATION only; the resolver checks the role).
    pub created_at: Option<DateTime<Utc>>,
    pub first_touch_at: Patch<DateTime<Utc>>,
}

async fn check_refs(db: &impl ConnectionTrait, f: &LeadFields) -> AppResult<()> {
    if let Some(Some(id)) = f.account_id {
        crate::records::accounts::service::get(db, id).await?;
    }
    if let Some(Some(id)) = f.owner_id {
        crate::records::users::service::get(db, id)
            .await
            .map_err(|_| AppError::not_found("owner"))?;
    }
    if let Some(Some(id)) = f.team_id {
        crate::records::teams::service::get(db, id).await?;
    }
    if let Some(Some(id)) = f.campaign_id {
        crate::records::campaigns::service::get(db, id).await?;
    }
    Ok(())
}

fn apply(am: &mut lead::ActiveModel, f: &LeadFields) -> AppResult<()> {
    if let Some(email) = &f.email {
        am.email = Set(normalize_email(email, "email")?);
    }
    for (target, value, field) in [
        (&mut am.first_name, &f.first_name, "firstName"),
        (&mut am.last_name, &f.last_name, "lastName"),
        (&mut am.title, &f.title, "title"),
        (&mut am.company, &f.company, "company"),
    ] {
        if let Some(v) = value {
            *target = Set(optional_text(v.clone(), field)?);
        }
    }
    if let Some(v) = f.account_id {
        am.account_id = Set(v);
    }
    if let Some(v) = f.source {
        am.source = Set(v);
    }
    if let Some(v) = f.campaign_id {
        am.campaign_id = Set(v);
    }
    if let Some(score) = f.score {
        if !(0..=1000).contains(&score) {
            return Err(AppError::bad_input(
                "score",
                "`score` must be between 0 and 1000",
            ));
        }
        am.score = Set(score);
    }
    if let Some(v) = f.owner_id {
        am.owner_id = Set(v);
    }
    if let Some(v) = f.team_id {
        am.team_id = Set(v);
    }
    if let Some(v) = f.first_touch_at {
        am.first_touch_at = Set(v.map(|t| not_future(t, "firstTouchAt")).transpose()?);
    }
    Ok(())
}

/// Keeps the first-entry times (MQL, SAL, SQL, CONVERTED — "or a later
/// main-path stage") in step with a stage reached at `at`. An imported
/// history may arrive out of order, so an earlier entry replaces a later one.
fn note_entry(am: &mut lead::ActiveModel, to: LeadStage, at: DateTime<Utc>) {
    let rank = to.rank().unwrap_or(0);
    for (min_rank, col) in [
        (2, &mut am.mql_at),
        (3, &mut am.sal_at),
        (4, &mut am.sql_at),
        (5, &mut am.converted_at),
    ] {
        let replace = match col.try_as_ref() {
            Some(Some(current)) => at < *current,
            _ => true,
        };
        if rank >= min_rank && replace {
            *col = Set(Some(at));
        }
    }
}

/// Creates a lead (and its first stage change) inside `db`'s transaction, if any.
pub async fn create(
    db: &impl ConnectionTrait,
    actor: &Actor,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    let Some(raw_email) = fields.email.as_deref() else {
        return Err(AppError::bad_input("email", "`email` is required"));
    };
    let email = normalize_email(raw_email, "email")?;
    check_refs(db, &fields).await?;
    let at = match fields.created_at {
        Some(t) => not_future(t, "createdAt")?,
        None => now(),
    };
    if let Some(Some(t)) = fields.first_touch_at
        && t < at
    {
        return Err(AppError::bad_input(
            "firstTouchAt",
            "`firstTouchAt` must not be before `createdAt`",
        ));
    }
    let stage = fields.stage.unwrap_or(LeadStage::Inquiry);
    if stage == LeadStage::Converted {
        return Err(AppError::bad_input(
            "stage",
            "a lead becomes CONVERTED through convertLead",
        ));
    }
    // Match the account by the e-mail's domain when none is given.
    let account_id = match fields.account_id {
        Some(id) => id,
        None => match email_domain(&email) {
            Some(domain) => crate::records::accounts::service::find_by_domain(db, domain)
                .await?
                .map(|a| a.id),
            None => None,
        },
    };
    let mut am = lead::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email),
        first_name: Set(None),
        last_name: Set(None),
        title: Set(None),
        company: Set(None),
        account_id: Set(account_id),
        source: Set(Channel::Other),
        campaign_id: Set(None),
        score: Set(0),
        stage: Set(stage),
        owner_id: Set(None),
        team_id: Set(None),
        converted_opportunity_id: Set(None),
        first_touch_at: Set(None),
        mql_at: Set(None),
        sal_at: Set(None),
        sql_at: Set(None),
        converted_at: Set(None),
        created_by: Set(actor.subject.clone()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    let mut f = fields;
    f.email = None;
    f.account_id = None;
    apply(&mut am, &f)?;
    note_entry(&mut am, stage, at);
    let created = am.insert(db).await?;
    rollups::leads_after(db, Leads::Lead(created.id)).await?;
    stage_changes::record(
        db,
        Subject::Lead(created.id),
        None,
        stage.as_str(),
        at,
        actor,
        None,
    )
    .await?;
    Ok(created)
}

/// Creates a lead and links its external ids, all or nothing.
pub async fn create_one<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    actor: &Actor,
    fields: LeadFields,
    refs: Vec<ExternalRef>,
) -> AppResult<lead::Model> {
    let txn = crate::db::begin_write(db).await?;
    let created = create(&txn, actor, fields).await?;
    for key in &refs {
        external_ids::link(&txn, RecordKind::Lead, key, created.id).await?;
    }
    txn.commit().await?;
    Ok(created)
}

/// Creates up to 1,000 leads in one transaction: all or none. An error names
/// the index of the input that failed.
pub async fn create_many<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    actor: &Actor,
    inputs: Vec<(LeadFields, Vec<ExternalRef>)>,
) -> AppResult<Vec<lead::Model>> {
    if inputs.len() > MAX_BATCH {
        return Err(AppError::bad_input(
            "inputs",
            format!("at most {MAX_BATCH} leads per call"),
        ));
    }
    let txn = crate::db::begin_write(db).await?;
    let mut out = Vec::with_capacity(inputs.len());
    for (i, (fields, refs)) in inputs.into_iter().enumerate() {
        let at_index = |e: AppError| match e {
            AppError::BadInput { field, message } => AppError::BadInput {
                field: field.map(|f| format!("inputs[{i}].{f}")),
                message: format!("inputs[{i}]: {message}"),
            },
            AppError::Conflict { field, message } => AppError::Conflict {
                field: field.map(|f| format!("inputs[{i}].{f}")),
                message: format!("inputs[{i}]: {message}"),
            },
            AppError::NotFound(what) => AppError::NotFound(format!("inputs[{i}]: {what}")),
            other => other,
        };
        let created = create(&txn, actor, fields).await.map_err(at_index)?;
        for key in &refs {
            external_ids::link(&txn, RecordKind::Lead, key, created.id)
                .await
                .map_err(at_index)?;
        }
        out.push(created);
    }
    txn.commit().await?;
    Ok(out)
}

/// Updates a lead's fields, in one transaction with the funnel rollup.
pub async fn update<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: Uuid,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    let txn = crate::db::begin_write(db).await?;
    check_refs(&txn, &fields).await?;
    let mut am = get(&txn, id).await?.into_active_model();
    apply(&mut am, &fields)?;
    am.updated_at = Set(now());
    rollups::leads_before(&txn, Leads::Lead(id)).await?;
    let updated = am.update(&txn).await?;
    rollups::leads_after(&txn, Leads::Lead(id)).await?;
    txn.commit().await?;
    Ok(updated)
}

/// Moves a lead to `to`, recording the change. CONVERTED leads are final;
/// CONVERTED itself is reached through `convert`.
pub async fn change_stage<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    actor: &Actor,
    id: Uuid,
    to: LeadStage,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<lead::Model> {
    let txn = crate::db::begin_write(db).await?;
    let updated = change_stage_in(&txn, actor, id, to, reason, at).await?;
    txn.commit().await?;
    Ok(updated)
}

async fn change_stage_in(
    db: &impl ConnectionTrait,
    actor: &Actor,
    id: Uuid,
    to: LeadStage,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<lead::Model> {
    let current = get(db, id).await?;
    if current.stage == LeadStage::Converted {
        return Err(AppError::conflict(
            Some("stage"),
            "a converted lead cannot change stage",
        ));
    }
    if to == LeadStage::Converted {
        return Err(AppError::bad_input(
            "to",
            "use convertLead to convert a lead",
        ));
    }
    if to == current.stage {
        return Err(AppError::bad_input(
            "to",
            format!("the lead is already {}", to.as_str()),
        ));
    }
    let at = check_change_time(db, Subject::Lead(id), current.created_at, at).await?;
    let from = current.stage;
    let mut am = current.into_active_model();
    am.stage = Set(to);
    note_entry(&mut am, to, at);
    am.updated_at = Set(now());
    rollups::leads_before(db, Leads::Lead(id)).await?;
    let updated = am.update(db).await?;
    rollups::leads_after(db, Leads::Lead(id)).await?;
    stage_changes::record(
        db,
        Subject::Lead(id),
        Some(from.as_str()),
        to.as_str(),
        at,
        actor,
        optional_text(reason, "reason")?,
    )
    .await?;
    // W-shaped credit reads the lead's first entry into MQL.
    rollups::refresh_credits(db, Won::Lead(id)).await?;
    Ok(updated)
}

/// A change's time: now, or a backfilled time that is not in the future,
/// not before the record's creation and not before its last change.
pub async fn check_change_time(
    db: &impl ConnectionTrait,
    subject: Subject,
    created_at: DateTime<Utc>,
    at: Option<DateTime<Utc>>,
) -> AppResult<DateTime<Utc>> {
    let Some(at) = at else { return Ok(now()) };
    let at = not_future(at, "at")?;
    if at < created_at {
        return Err(AppError::bad_input(
            "at",
            "`at` must not be before the record was created",
        ));
    }
    if let Some(last) = stage_changes::last(db, subject).await?
        && at < last.at
    {
        return Err(AppError::bad_input(
            "at",
            "`at` must not be before the record's last stage change",
        ));
    }
    Ok(at)
}

/// What `convert` needs to create the opportunity.
pub use crate::records::opportunities::service::NewOpportunity;

/// Converts a lead in one transaction: creates the opportunity, links both
/// ways, and moves the lead to CONVERTED with a stage change.
pub async fn convert<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    actor: &Actor,
    id: Uuid,
    mut opportunity: NewOpportunity,
    at: Option<DateTime<Utc>>,
) -> AppResult<(lead::Model, entity::opportunity::Model)> {
    let txn = crate::db::begin_write(db).await?;
    let current = get(&txn, id).await?;
    if current.stage == LeadStage::Converted || current.converted_opportunity_id.is_some() {
        return Err(AppError::conflict(
            Some("stage"),
            "the lead is already converted",
        ));
    }
    let at = check_change_time(&txn, Subject::Lead(id), current.created_at, at).await?;
    opportunity.lead_id = Some(id);
    opportunity.created_at = Some(at);
    let opp =
        crate::records::opportunities::service::create_in_txn(&txn, actor, opportunity).await?;
    let from = current.stage;
    let mut am = current.into_active_model();
    am.stage = Set(LeadStage::Converted);
    note_entry(&mut am, LeadStage::Converted, at);
    am.converted_opportunity_id = Set(Some(opp.id));
    am.updated_at = Set(now());
    rollups::leads_before(&txn, Leads::Lead(id)).await?;
    let lead = am.update(&txn).await?;
    rollups::leads_after(&txn, Leads::Lead(id)).await?;
    stage_changes::record(
        &txn,
        Subject::Lead(id),
        Some(from.as_str()),
        LeadStage::Converted.as_str(),
        at,
        actor,
        Some("converted".to_owned()),
    )
    .await?;
    txn.commit().await?;
    Ok((lead, opp))
}

/// Creates or updates the lead `key` maps to (idempotent). A differing
/// `stage` is recorded as a stage change.
pub async fn upsert<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    actor: &Actor,
    key: ExternalRef,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    let txn = crate::db::begin_write(db).await?;
    let model = match external_ids::lookup(&txn, RecordKind::Lead, &key).await? {
        Some(id) => {
            let stage = fields.stage;
            let mut f = fields;
            f.created_at = None;
            f.stage = None;
            let mut updated = update(&txn, id, f).await?;
            if let Some(to) = stage
                && to != updated.stage
            {
                updated = change_stage_in(&txn, actor, id, to, Some("synced".into()), None).await?;
            }
            updated
        }
        None => {
            let created = create(&txn, actor, fields).await?;
            external_ids::link(&txn, RecordKind::Lead, &key, created.id).await?;
            created
        }
    };
    txn.commit().await?;
    Ok(model)
}

/// Records a marketing touch of a lead by a campaign (attribution reads
/// these), and re-credits the lead's won opportunities in the same transaction.
pub async fn record_touchpoint<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    lead_id: Uuid,
    campaign_id: Uuid,
    occurred_at: Option<DateTime<Utc>>,
) -> AppResult<touchpoint::Model> {
    let txn = crate::db::begin_write(db).await?;
    get(&txn, lead_id).await?;
    crate::records::campaigns::service::get(&txn, campaign_id).await?;
    let at = match occurred_at {
        Some(t) => not_future(t, "occurredAt")?,
        None => now(),
    };
    let touch = touchpoint::ActiveModel {
        id: Set(Uuid::now_v7()),
        lead_id: Set(lead_id),
        campaign_id: Set(campaign_id),
        occurred_at: Set(at),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await?;
    rollups::refresh_credits(&txn, Won::Lead(lead_id)).await?;
    txn.commit().await?;
    Ok(touch)
}

/// Touchpoints of a lead, oldest first.
pub async fn touchpoints(
    db: &impl ConnectionTrait,
    lead_id: Uuid,
) -> AppResult<Vec<touchpoint::Model>> {
    Ok(touchpoint::Entity::find()
        .filter(touchpoint::Column::LeadId.eq(lead_id))
        .order_by_asc(touchpoint::Column::OccurredAt)
        .order_by_asc(touchpoint::Column::Id)
        .all(db)
        .await?)
}
