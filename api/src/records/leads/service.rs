//! Leads: the funnel's people. Every stage change is recorded.

use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{
    Patch, TimeRange, email_domain, normalize_email, not_future, now, optional_text,
    search_condition,
};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::opportunities::service::NewOpportunity;
use crate::records::stage_changes::{self, Actor, Subject, check_change_time};
use crate::uow::{self, AccountLock, Found, Work};
use chrono::{DateTime, Utc};
use entity::enums::{Channel, LeadStage, RecordKind, Segment, SourcedBy};
use entity::lead::{self, Entity as Lead};
use entity::{account, touchpoint};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set,
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
    /// Which leads' personal fields (e-mail, names) `search` may match: a
    /// caller must not find a lead by what it cannot read.
    pub search_personal: SearchPersonal,
}

/// Whose personal fields a lead search may match (the company always).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SearchPersonal {
    #[default]
    All,
    None,
    /// Only the leads this subject created (an integration's own).
    CreatedBy(String),
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
        let company = search_condition(&[lead::Column::Company], s);
        let personal = || {
            search_condition(
                &[
                    lead::Column::Email,
                    lead::Column::FirstName,
                    lead::Column::LastName,
                ],
                s,
            )
        };
        c = c.add(match &f.search_personal {
            SearchPersonal::All => Condition::any().add(personal()).add(company),
            SearchPersonal::None => company,
            SearchPersonal::CreatedBy(subject) => Condition::any().add(company).add(
                Condition::all()
                    .add(lead::Column::CreatedBy.eq(subject.clone()))
                    .add(personal()),
            ),
        });
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
    crate::rows::one(Lead::find_by_id(id), db)
        .await?
        .ok_or_else(|| AppError::not_found("lead"))
}

/// A lead and its stage history (oldest first) in one statement, on
/// PostgreSQL: `None` on SQLite, where the two are read apart. One lead with
/// its history is the most common single read (a CRM's record page), and a
/// statement costs more than its rows here (the pool's round trips).
pub async fn get_with_history(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> AppResult<Option<(lead::Model, Vec<entity::stage_change::Model>)>> {
    use crate::rows::{Positional, joined};
    use entity::stage_change;
    use sea_orm::Iterable;
    use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
    if !crate::db::is_postgres(db) {
        return Ok(None);
    }
    let mut q = Query::select();
    q.from(Lead);
    for c in lead::Column::iter() {
        q.column((Lead, c));
    }
    for c in stage_change::Column::iter() {
        q.column((stage_change::Entity, c));
    }
    q.left_join(
        stage_change::Entity,
        Expr::col((stage_change::Entity, stage_change::Column::LeadId))
            .equals((Lead, lead::Column::Id)),
    )
    .and_where(Expr::col((Lead, lead::Column::Id)).eq(id))
    .order_by((stage_change::Entity, stage_change::Column::At), Order::Asc)
    .order_by((stage_change::Entity, stage_change::Column::Id), Order::Asc);
    let rows = db
        .query_all_raw(db.get_database_backend().build(&q))
        .await?;
    let history_at = <lead::Model as Positional>::COLUMNS;
    let mut found: Option<lead::Model> = None;
    let mut history = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(row) = r.try_as_pg_row() else {
            return Ok(None);
        };
        if found.is_none() {
            found = Some(Positional::at(row, 0)?);
        }
        if let Some(change) = joined(row, history_at)? {
            history.push(change);
        }
    }
    let lead = found.ok_or_else(|| AppError::not_found("lead"))?;
    Ok(Some((lead, history)))
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
    /// Backfill (actors that may backfill only).
    pub created_at: Option<DateTime<Utc>>,
    pub first_touch_at: Patch<DateTime<Utc>>,
    /// Why: the reason of the creation entry (on upsert, of the stage change
    /// it records).
    pub reason: Option<String>,
    /// Who (imports; ADMIN and INTEGRATION only): the user recorded as
    /// making the creation entry (on upsert, the stage change).
    pub actor_user_id: Option<Uuid>,
}

/// Checks the owner, team and campaign a lead refers to (the account is
/// checked by its lock).
async fn check_refs(w: &Work, f: &LeadFields) -> AppResult<()> {
    if let Some(Some(id)) = f.owner_id {
        w.check_exists(Found::User, id, "owner").await?;
    }
    if let Some(Some(id)) = f.team_id {
        crate::records::teams::service::get(w.db(), id).await?;
    }
    if let Some(Some(id)) = f.campaign_id {
        w.check_exists(Found::Campaign, id, "campaign").await?;
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
    // INQUIRY itself (the funnel's first timed step starts there).
    if to == LeadStage::Inquiry {
        let replace = match am.inquiry_at.try_as_ref() {
            Some(Some(current)) => at < *current,
            _ => true,
        };
        if replace {
            am.inquiry_at = Set(Some(at));
        }
    }
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

/// The account a new lead belongs to: the one given, or the account whose
/// domain is the e-mail's (public mail domains never match).
pub(crate) async fn account_of_new(w: &Work, fields: &LeadFields) -> AppResult<Option<Uuid>> {
    if let Some(id) = fields.account_id {
        return Ok(id);
    }
    let Some(email) = fields.email.as_deref() else {
        return Ok(None);
    };
    let email = normalize_email(email, "email")?;
    Ok(match email_domain(&email) {
        Some(domain) => crate::records::accounts::service::find_by_domain(w.db(), domain)
            .await?
            .map(|a| a.id),
        None => None,
    })
}

/// Creates a lead and its first stage change in the caller's unit. The
/// lead's account is locked first (so that its segment holds until commit).
pub async fn create_in(w: &mut Work, actor: &Actor, fields: LeadFields) -> AppResult<lead::Model> {
    let Some(raw_email) = fields.email.as_deref() else {
        return Err(AppError::bad_input("email", "`email` is required"));
    };
    let email = normalize_email(raw_email, "email")?;
    if fields.created_at.is_some() {
        actor.check_backfill("createdAt")?;
    }
    let actor = &actor.acting_as_in(w, fields.actor_user_id).await?;
    let reason = optional_text(fields.reason.clone(), "reason")?;
    let fields_backfilled = fields.created_at.is_some();
    let account_id = account_of_new(w, &fields).await?;
    if let Some(id) = account_id {
        w.lock_accounts(&[id], AccountLock::Reference).await?;
    }
    check_refs(w, &fields).await?;
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
        inquiry_at: Set(None),
        created_by: Set(actor.subject.clone()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    let mut f = fields;
    f.email = None;
    f.account_id = None;
    apply(&mut am, &f)?;
    note_entry(&mut am, stage, at);
    let created = w.insert_lead(am).await?;
    stage_changes::record(
        w,
        Subject::Lead(created.id),
        None,
        stage.as_str(),
        at,
        actor,
        reason,
    )
    .await?;
    // A lead imported with its own history (a backfilled creation) keeps it:
    // the SLA policies qualify only leads created now.
    if fields_backfilled {
        return Ok(created);
    }
    crate::records::handoffs::service::qualify_in(w, actor, created.id).await
}

/// Updates a lead's fields in the caller's unit and, when its score
/// changed, lets the SLA policies qualify it (MQL, maybe an auto hand-off).
pub async fn update_as_in(
    w: &mut Work,
    actor: &Actor,
    id: Uuid,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    if let Some(Some(account)) = fields.account_id {
        w.lock_accounts(&[account], AccountLock::Reference).await?;
    }
    let before = w.lock_lead(id).await?.score;
    let updated = update_in(w, id, fields).await?;
    if updated.score == before {
        return Ok(updated);
    }
    crate::records::handoffs::service::qualify_in(w, actor, id).await
}

/// Creates a lead and links its external ids, all or nothing.
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    fields: LeadFields,
    refs: Vec<ExternalRef>,
) -> AppResult<lead::Model> {
    let (fields, refs) = (&fields, &refs);
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, actor, fields.clone()).await?;
        for key in refs {
            external_ids::link(&mut w, RecordKind::Lead, key, created.id).await?;
        }
        w.commit(created).await
    })
    .await
}

/// Names the input of a batch an error is about.
fn at_index(i: usize) -> impl Fn(AppError) -> AppError {
    move |e| match e {
        AppError::BadInput { field, message } => AppError::BadInput {
            field: Some(match field {
                Some(f) => format!("inputs[{i}].{f}"),
                None => format!("inputs[{i}]"),
            }),
            message: format!("inputs[{i}]: {message}"),
        },
        AppError::Conflict { field, message } => AppError::Conflict {
            field: field.map(|f| format!("inputs[{i}].{f}")),
            message: format!("inputs[{i}]: {message}"),
        },
        AppError::NotFound(what) => AppError::NotFound(format!("inputs[{i}]: {what}")),
        AppError::Forbidden(message) => AppError::Forbidden(format!("inputs[{i}]: {message}")),
        other => other,
    }
}

/// Creates up to 1,000 leads in one unit: all or none. An error names the
/// index of the input that failed. Every account the batch references is
/// locked first, in one statement.
pub async fn create_many(
    db: &DatabaseConnection,
    actor: &Actor,
    inputs: Vec<(LeadFields, Vec<ExternalRef>)>,
) -> AppResult<Vec<lead::Model>> {
    if inputs.len() > MAX_BATCH {
        return Err(AppError::bad_input(
            "inputs",
            format!("at most {MAX_BATCH} leads per call"),
        ));
    }
    let inputs = &inputs;
    uow::run(db, |mut w| async move {
        let mut accounts = Vec::new();
        for (i, (fields, _)) in inputs.iter().enumerate() {
            if let Some(id) = account_of_new(&w, fields).await.map_err(at_index(i))? {
                accounts.push(id);
            }
        }
        w.lock_accounts(&accounts, AccountLock::Reference).await?;
        let mut out = Vec::with_capacity(inputs.len());
        for (i, (fields, refs)) in inputs.iter().enumerate() {
            let created = create_in(&mut w, actor, fields.clone())
                .await
                .map_err(at_index(i))?;
            for key in refs {
                external_ids::link(&mut w, RecordKind::Lead, key, created.id)
                    .await
                    .map_err(at_index(i))?;
            }
            out.push(created);
        }
        w.commit(out).await
    })
    .await
}

/// Updates a lead's fields (its own unit); a changed score may qualify it
/// by the SLA policies.
pub async fn update(
    db: &DatabaseConnection,
    actor: &Actor,
    id: Uuid,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    let fields = &fields;
    uow::run(db, |mut w| async move {
        let updated = update_as_in(&mut w, actor, id, fields.clone()).await?;
        w.commit(updated).await
    })
    .await
}

/// Updates a lead's fields in the caller's unit: a new account is locked
/// first, then the lead.
pub async fn update_in(w: &mut Work, id: Uuid, fields: LeadFields) -> AppResult<lead::Model> {
    if fields.stage.is_some() {
        return Err(AppError::bad_input(
            "stage",
            "change the stage with changeLeadStage",
        ));
    }
    if fields.reason.is_some() {
        return Err(AppError::bad_input(
            "reason",
            "`reason` goes with a creation or a stage change",
        ));
    }
    if fields.actor_user_id.is_some() {
        return Err(AppError::bad_input(
            "actorUserId",
            "`actorUserId` goes with a creation or a stage change",
        ));
    }
    if let Some(Some(account)) = fields.account_id {
        w.lock_accounts(&[account], AccountLock::Reference).await?;
    }
    let current = w.lock_lead(id).await?;
    check_refs(w, &fields).await?;
    w.update_lead(current, |am| {
        apply(am, &fields)?;
        am.updated_at = Set(now());
        Ok(())
    })
    .await
}

/// Moves a lead to `to`, recording the change (its own unit). CONVERTED
/// leads are final; CONVERTED itself is reached through `convert`.
pub async fn change_stage(
    db: &DatabaseConnection,
    actor: &Actor,
    id: Uuid,
    to: LeadStage,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<lead::Model> {
    let reason = &reason;
    uow::run(db, |mut w| async move {
        let updated = change_stage_in(&mut w, actor, id, to, reason.clone(), at).await?;
        w.commit(updated).await
    })
    .await
}

/// Moves a lead to `to` in the caller's unit: the lead is locked before it
/// is read, so the recorded `fromStage` is the stage it really left.
pub async fn change_stage_in(
    w: &mut Work,
    actor: &Actor,
    id: Uuid,
    to: LeadStage,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<lead::Model> {
    if at.is_some() {
        actor.check_backfill("at")?;
    }
    let current = w.lock_lead(id).await?;
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
    let reason = optional_text(reason, "reason")?;
    let at = check_change_time(w.db(), Subject::Lead(id), current.created_at, at).await?;
    let from = current.stage;
    let updated = w
        .update_lead(current, |am| {
            am.stage = Set(to);
            note_entry(am, to, at);
            am.updated_at = Set(now());
            Ok(())
        })
        .await?;
    stage_changes::record(
        w,
        Subject::Lead(id),
        Some(from.as_str()),
        to.as_str(),
        at,
        actor,
        reason,
    )
    .await?;
    Ok(updated)
}

/// The opportunity `convert` creates; what is left out defaults from the
/// lead as read inside the conversion's unit.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub name: String,
    /// Default: the lead's account (BAD_USER_INPUT when it has none).
    pub account_id: Option<Uuid>,
    /// Default: the lead's owner.
    pub owner_id: Option<Uuid>,
    /// Storage units.
    pub amount: i64,
    pub currency: String,
    pub expected_close_date: Option<chrono::NaiveDate>,
    /// Default: PARTNER for partner leads, SALES_DEVELOPMENT for outbound
    /// ones, MARKETING otherwise.
    pub sourced_by: Option<SourcedBy>,
    /// The reason of the lead's CONVERTED entry (default "converted"); the
    /// opportunity's creation entry gets the same.
    pub reason: Option<String>,
    /// External ids to link to the new opportunity.
    pub external_ids: Vec<ExternalRef>,
}

/// Converts a lead (its own unit): creates the opportunity, links both ways,
/// and moves the lead to CONVERTED with a stage change.
pub async fn convert(
    db: &DatabaseConnection,
    actor: &Actor,
    id: Uuid,
    conversion: Conversion,
    at: Option<DateTime<Utc>>,
) -> AppResult<(lead::Model, entity::opportunity::Model)> {
    let conversion = &conversion;
    uow::run(db, |mut w| async move {
        let out = convert_in(&mut w, actor, id, conversion.clone(), at).await?;
        w.commit(out).await
    })
    .await
}

/// Converts a lead in the caller's unit (the lead is locked, then read).
pub async fn convert_in(
    w: &mut Work,
    actor: &Actor,
    id: Uuid,
    conversion: Conversion,
    at: Option<DateTime<Utc>>,
) -> AppResult<(lead::Model, entity::opportunity::Model)> {
    if at.is_some() {
        actor.check_backfill("at")?;
    }
    let current = w.lock_lead(id).await?;
    if current.stage == LeadStage::Converted || current.converted_opportunity_id.is_some() {
        return Err(AppError::conflict(
            Some("stage"),
            "the lead is already converted",
        ));
    }
    let account_id = match conversion.account_id.or(current.account_id) {
        Some(a) => a,
        None => {
            return Err(AppError::bad_input(
                "accountId",
                "the lead has no account: give `accountId`",
            ));
        }
    };
    let sourced_by = conversion.sourced_by.unwrap_or(match current.source {
        Channel::Partner => SourcedBy::Partner,
        Channel::Outbound => SourcedBy::SalesDevelopment,
        _ => SourcedBy::Marketing,
    });
    let at = check_change_time(w.db(), Subject::Lead(id), current.created_at, at).await?;
    let opportunity = NewOpportunity {
        name: conversion.name,
        account_id,
        lead_id: Some(id),
        owner_id: conversion.owner_id.or(current.owner_id),
        amount: conversion.amount,
        currency: conversion.currency,
        expected_close_date: conversion.expected_close_date,
        sourced_by,
        created_at: Some(at),
        reason: conversion.reason.clone(),
    };
    // The conversion's time is the opportunity's creation: no backfill check
    // beyond `at`'s own.
    let opp = crate::records::opportunities::service::insert_in(w, actor, opportunity).await?;
    for key in &conversion.external_ids {
        external_ids::link(w, RecordKind::Opportunity, key, opp.id).await?;
    }
    let from = current.stage;
    let lead = w
        .update_lead(current, |am| {
            am.stage = Set(LeadStage::Converted);
            note_entry(am, LeadStage::Converted, at);
            am.converted_opportunity_id = Set(Some(opp.id));
            am.updated_at = Set(now());
            Ok(())
        })
        .await?;
    stage_changes::record(
        w,
        Subject::Lead(id),
        Some(from.as_str()),
        LeadStage::Converted.as_str(),
        at,
        actor,
        Some(optional_text(conversion.reason, "reason")?.unwrap_or_else(|| "converted".to_owned())),
    )
    .await?;
    Ok((lead, opp))
}

/// Records a lead's conversion into an opportunity that already exists (a
/// CRM that converted the lead told Lockstep of the opportunity first), in
/// the caller's unit: the opportunity gets the lead, the lead moves to
/// CONVERTED at `at` with a stage change — what `convert_in` ends with,
/// without creating another opportunity. Already linked to it: unchanged
/// (`None`); converted into another one, or an opportunity of another
/// lead: CONFLICT.
pub async fn link_conversion_in(
    w: &mut Work,
    actor: &Actor,
    id: Uuid,
    opportunity_id: Uuid,
    reason: Option<String>,
    at: Option<DateTime<Utc>>,
) -> AppResult<Option<lead::Model>> {
    if at.is_some() {
        actor.check_backfill("at")?;
    }
    let current = w.lock_lead(id).await?;
    match current.converted_opportunity_id {
        Some(o) if o == opportunity_id => return Ok(None),
        Some(_) => {
            return Err(AppError::conflict(
                Some("stage"),
                "the lead is already converted into another opportunity",
            ));
        }
        None => {}
    }
    if current.stage == LeadStage::Converted {
        return Err(AppError::conflict(
            Some("stage"),
            "the lead is already converted",
        ));
    }
    let opp = w.lock_opportunity(opportunity_id).await?;
    if opp.lead_id.is_some_and(|l| l != id) {
        return Err(AppError::conflict(
            Some("leadId"),
            "the opportunity comes from another lead",
        ));
    }
    let at = check_change_time(w.db(), Subject::Lead(id), current.created_at, at).await?;
    if opp.lead_id.is_none() {
        w.update_opportunity(opp, |am| {
            am.lead_id = Set(Some(id));
            am.updated_at = Set(now());
            Ok(())
        })
        .await?;
    }
    let from = current.stage;
    let lead = w
        .update_lead(current, |am| {
            am.stage = Set(LeadStage::Converted);
            note_entry(am, LeadStage::Converted, at);
            am.converted_opportunity_id = Set(Some(opportunity_id));
            am.updated_at = Set(now());
            Ok(())
        })
        .await?;
    stage_changes::record(
        w,
        Subject::Lead(id),
        Some(from.as_str()),
        LeadStage::Converted.as_str(),
        at,
        actor,
        Some(optional_text(reason, "reason")?.unwrap_or_else(|| "converted".to_owned())),
    )
    .await?;
    Ok(Some(lead))
}

/// Creates or updates the lead `key` maps to (idempotent; its own unit). A
/// differing `stage` is recorded as a stage change.
pub async fn upsert(
    db: &DatabaseConnection,
    actor: &Actor,
    key: ExternalRef,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    let (key, fields) = (&key, &fields);
    uow::run(db, |mut w| async move {
        let model = upsert_in(&mut w, actor, key, fields.clone()).await?;
        w.commit(model).await
    })
    .await
}

/// Creates or updates the lead `key` maps to, in the caller's unit.
pub async fn upsert_in(
    w: &mut Work,
    actor: &Actor,
    key: &ExternalRef,
    fields: LeadFields,
) -> AppResult<lead::Model> {
    Ok(
        match external_ids::lookup(w.db(), RecordKind::Lead, key).await? {
            Some(id) => {
                let stage = fields.stage;
                let mut f = fields;
                f.created_at = None;
                f.stage = None;
                let reason = f.reason.take().unwrap_or_else(|| "synced".into());
                let acting = actor.acting_as_in(w, f.actor_user_id.take()).await?;
                let mut updated = update_as_in(w, actor, id, f).await?;
                if let Some(to) = stage
                    && to != updated.stage
                {
                    updated = change_stage_in(w, &acting, id, to, Some(reason), None).await?;
                }
                updated
            }
            None => {
                let created = create_in(w, actor, fields).await?;
                external_ids::link(w, RecordKind::Lead, key, created.id).await?;
                created
            }
        },
    )
}

/// Records a marketing touch of a lead by a campaign (attribution reads
/// these); the lead's won opportunities are re-credited in the same unit.
pub async fn record_touchpoint(
    db: &DatabaseConnection,
    lead_id: Uuid,
    campaign_id: Uuid,
    occurred_at: Option<DateTime<Utc>>,
) -> AppResult<touchpoint::Model> {
    uow::run(db, |mut w| async move {
        let touch = record_touchpoint_in(&mut w, lead_id, campaign_id, occurred_at).await?;
        w.commit(touch).await
    })
    .await
}

/// Records a touch in the caller's unit.
pub async fn record_touchpoint_in(
    w: &mut Work,
    lead_id: Uuid,
    campaign_id: Uuid,
    occurred_at: Option<DateTime<Utc>>,
) -> AppResult<touchpoint::Model> {
    w.hold_lead(lead_id).await?;
    w.check_exists(Found::Campaign, campaign_id, "campaign")
        .await?;
    let at = match occurred_at {
        Some(t) => not_future(t, "occurredAt")?,
        None => now(),
    };
    w.insert_touchpoint(touchpoint::ActiveModel {
        id: Set(Uuid::now_v7()),
        lead_id: Set(lead_id),
        campaign_id: Set(campaign_id),
        occurred_at: Set(at),
        created_at: Set(now()),
    })
    .await
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
