use crate::error::{AppError, AppResult};
use crate::metrics::rollups::{self, Leads};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{
    Patch, TimeRange, normalize_domain, not_future, now, optional_text, required_text,
    search_condition,
};
use crate::records::external_ids::{self, ExternalRef};
use chrono::{DateTime, Utc};
use entity::account::{self, Entity as Account};
use entity::enums::{AccountStatus, RecordKind, Segment};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, Set, TransactionSession, TransactionTrait,
};
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct AccountFilter {
    pub ids: Vec<Uuid>,
    pub segments: Vec<Segment>,
    pub statuses: Vec<AccountStatus>,
    pub owner_ids: Vec<Uuid>,
    pub is_target: Option<bool>,
    pub search: Option<String>,
    pub created_at: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOrder {
    Name,
    CreatedAt,
    UpdatedAt,
}

fn condition(f: &AccountFilter) -> Condition {
    let mut c = Condition::all().add(f.created_at.condition(account::Column::CreatedAt));
    if !f.ids.is_empty() {
        c = c.add(account::Column::Id.is_in(f.ids.clone()));
    }
    if !f.segments.is_empty() {
        c = c.add(account::Column::Segment.is_in(f.segments.clone()));
    }
    if !f.statuses.is_empty() {
        c = c.add(account::Column::Status.is_in(f.statuses.clone()));
    }
    if !f.owner_ids.is_empty() {
        c = c.add(account::Column::OwnerId.is_in(f.owner_ids.clone()));
    }
    if let Some(t) = f.is_target {
        c = c.add(account::Column::IsTarget.eq(t));
    }
    if let Some(s) = &f.search {
        c = c.add(search_condition(
            &[account::Column::Name, account::Column::Domain],
            s,
        ));
    }
    c
}

fn ordering(order: AccountOrder, descending: bool) -> Ordering<Account> {
    let (name, column, key): (_, _, KeyFn<account::Model>) = match order {
        AccountOrder::Name => ("name", account::Column::Name, |m| {
            (SortKey::Text(m.name.clone()), m.id)
        }),
        AccountOrder::CreatedAt => ("createdAt", account::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
        AccountOrder::UpdatedAt => ("updatedAt", account::Column::UpdatedAt, |m| {
            (SortKey::Time(m.updated_at), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: account::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AccountFilter,
    order: AccountOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<account::Model>> {
    paginate(
        db,
        Account::find().filter(condition(filter)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, filter: &AccountFilter) -> AppResult<u64> {
    Ok(Account::find().filter(condition(filter)).count(db).await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<account::Model> {
    Account::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("account"))
}

/// The account whose domain is `domain` (already normalized), if any.
pub async fn find_by_domain(
    db: &impl ConnectionTrait,
    domain: &str,
) -> AppResult<Option<account::Model>> {
    Ok(Account::find()
        .filter(account::Column::Domain.eq(domain))
        .one(db)
        .await?)
}

/// Fields of an account, as written by create and upsert.
#[derive(Debug, Clone, Default)]
pub struct AccountFields {
    pub name: Option<String>,
    pub domain: Patch<String>,
    pub industry: Patch<String>,
    pub segment: Option<Segment>,
    pub employees: Patch<i32>,
    /// Storage units.
    pub annual_revenue: Patch<i64>,
    pub is_target: Option<bool>,
    pub status: Option<AccountStatus>,
    pub became_customer_at: Patch<DateTime<Utc>>,
    pub churned_at: Patch<DateTime<Utc>>,
    pub owner_id: Patch<Uuid>,
    /// Backfilled creation time (ADMIN and INTEGRATION only; checked by the caller).
    pub created_at: Option<DateTime<Utc>>,
}

fn apply(am: &mut account::ActiveModel, f: AccountFields) -> AppResult<()> {
    if let Some(name) = f.name {
        am.name = Set(required_text(&name, "name")?);
    }
    if let Some(domain) = f.domain {
        am.domain = Set(domain.map(|d| normalize_domain(&d, "domain")).transpose()?);
    }
    if let Some(industry) = f.industry {
        am.industry = Set(optional_text(industry, "industry")?);
    }
    if let Some(segment) = f.segment {
        am.segment = Set(segment);
    }
    if let Some(employees) = f.employees {
        if employees.is_some_and(|e| e < 0) {
            return Err(AppError::bad_input(
                "employees",
                "`employees` must not be negative",
            ));
        }
        am.employees = Set(employees);
    }
    if let Some(revenue) = f.annual_revenue {
        am.annual_revenue = Set(revenue);
    }
    if let Some(t) = f.is_target {
        am.is_target = Set(t);
    }
    if let Some(at) = f.became_customer_at {
        am.became_customer_at = Set(at.map(|t| not_future(t, "becameCustomerAt")).transpose()?);
    }
    if let Some(at) = f.churned_at {
        am.churned_at = Set(at.map(|t| not_future(t, "churnedAt")).transpose()?);
    }
    if let Some(status) = f.status {
        am.status = Set(status);
        // A status change without its time gets the time of the change.
        let t = now();
        if status == AccountStatus::Customer && am.became_customer_at.as_ref().is_none() {
            am.became_customer_at = Set(Some(t));
        }
        if status == AccountStatus::Churned && am.churned_at.as_ref().is_none() {
            am.churned_at = Set(Some(t));
        }
    }
    if let Some(owner) = f.owner_id {
        am.owner_id = Set(owner);
    }
    Ok(())
}

async fn check_owner(db: &impl ConnectionTrait, owner: &Patch<Uuid>) -> AppResult<()> {
    if let Some(Some(id)) = owner {
        crate::records::users::service::get(db, *id)
            .await
            .map_err(|_| AppError::not_found("owner"))?;
    }
    Ok(())
}

pub async fn create(
    db: &impl ConnectionTrait,
    subject: &str,
    fields: AccountFields,
) -> AppResult<account::Model> {
    check_owner(db, &fields.owner_id).await?;
    let at = match fields.created_at {
        Some(t) => not_future(t, "createdAt")?,
        None => now(),
    };
    let mut am = account::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(String::new()),
        domain: Set(None),
        industry: Set(None),
        segment: Set(Segment::Smb),
        employees: Set(None),
        annual_revenue: Set(None),
        is_target: Set(false),
        status: Set(AccountStatus::Prospect),
        became_customer_at: Set(None),
        churned_at: Set(None),
        owner_id: Set(None),
        created_by: Set(subject.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    if fields.name.is_none() {
        return Err(AppError::bad_input("name", "`name` is required"));
    }
    apply(&mut am, fields)?;
    Ok(am.insert(db).await?)
}

/// Updates an account; a change of segment or target flag moves its leads'
/// funnel counts in the rollup, in the same transaction.
pub async fn update<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    id: Uuid,
    fields: AccountFields,
) -> AppResult<account::Model> {
    let txn = crate::db::begin_write(db).await?;
    let updated = update_in(&txn, id, fields).await?;
    txn.commit().await?;
    Ok(updated)
}

async fn update_in(
    db: &impl ConnectionTrait,
    id: Uuid,
    fields: AccountFields,
) -> AppResult<account::Model> {
    check_owner(db, &fields.owner_id).await?;
    let current = get(db, id).await?;
    let (segment, is_target) = (current.segment, current.is_target);
    let mut am = current.into_active_model();
    apply(&mut am, fields)?;
    am.updated_at = Set(now());
    let moves = am.segment.try_as_ref().is_some_and(|s| *s != segment)
        || am.is_target.try_as_ref().is_some_and(|t| *t != is_target);
    if !moves {
        return Ok(am.update(db).await?);
    }
    rollups::leads_before(db, Leads::Account(id)).await?;
    let updated = am.update(db).await?;
    rollups::leads_after(db, Leads::Account(id)).await?;
    Ok(updated)
}

/// Creates or updates the account an external id maps to; the same call
/// twice leaves one record.
pub async fn upsert<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    subject: &str,
    key: ExternalRef,
    fields: AccountFields,
) -> AppResult<account::Model> {
    let txn = crate::db::begin_write(db).await?;
    let model = match external_ids::lookup(&txn, RecordKind::Account, &key).await? {
        Some(id) => {
            let mut f = fields;
            f.created_at = None;
            update_in(&txn, id, f).await?
        }
        None => {
            let created = create(&txn, subject, fields).await?;
            external_ids::link(&txn, RecordKind::Account, &key, created.id).await?;
            created
        }
    };
    txn.commit().await?;
    Ok(model)
}

/// Creates an account and links its external ids, all or nothing.
pub async fn create_with_refs<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    subject: &str,
    fields: AccountFields,
    refs: Vec<ExternalRef>,
) -> AppResult<account::Model> {
    let txn = crate::db::begin_write(db).await?;
    let created = create(&txn, subject, fields).await?;
    for key in &refs {
        external_ids::link(&txn, RecordKind::Account, key, created.id).await?;
    }
    txn.commit().await?;
    Ok(created)
}
