use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{
    Patch, TimeRange, normalize_domain, not_future, now, optional_text, required_text,
    search_condition,
};
use crate::records::external_ids::{self, ExternalRef};
use crate::records::stage_changes::Actor;
use crate::uow::{self, Work};
use chrono::{DateTime, Utc};
use entity::account::{self, Entity as Account};
use entity::enums::{AccountStatus, RecordKind, Segment};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
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

/// Creates an account in the caller's unit.
pub async fn create_in(
    w: &mut Work,
    actor: &Actor,
    fields: AccountFields,
) -> AppResult<account::Model> {
    if fields.created_at.is_some() {
        actor.check_backfill("createdAt")?;
    }
    check_owner(w.db(), &fields.owner_id).await?;
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
        created_by: Set(actor.subject.clone()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    if fields.name.is_none() {
        return Err(AppError::bad_input("name", "`name` is required"));
    }
    apply(&mut am, fields)?;
    w.insert_account(am).await
}

/// Updates an account (its own unit); a change of segment or target flag
/// moves its leads' funnel counts in the rollup.
pub async fn update(
    db: &DatabaseConnection,
    id: Uuid,
    fields: AccountFields,
) -> AppResult<account::Model> {
    let fields = &fields;
    uow::run(db, |mut w| async move {
        let updated = update_in(&mut w, id, fields.clone()).await?;
        w.commit(updated).await
    })
    .await
}

/// Updates an account in the caller's unit (locked, then read).
pub async fn update_in(w: &mut Work, id: Uuid, fields: AccountFields) -> AppResult<account::Model> {
    let current = w.lock_account(id).await?;
    check_owner(w.db(), &fields.owner_id).await?;
    w.update_account(current, |am| {
        apply(am, fields)?;
        am.updated_at = Set(now());
        Ok(())
    })
    .await
}

/// Creates or updates the account an external id maps to (its own unit);
/// the same call twice leaves one record.
pub async fn upsert(
    db: &DatabaseConnection,
    actor: &Actor,
    key: ExternalRef,
    fields: AccountFields,
) -> AppResult<account::Model> {
    let (key, fields) = (&key, &fields);
    uow::run(db, |mut w| async move {
        let model = upsert_in(&mut w, actor, key, fields.clone()).await?;
        w.commit(model).await
    })
    .await
}

/// Creates or updates the account an external id maps to, in the caller's unit.
pub async fn upsert_in(
    w: &mut Work,
    actor: &Actor,
    key: &ExternalRef,
    fields: AccountFields,
) -> AppResult<account::Model> {
    Ok(
        match external_ids::lookup(w.db(), RecordKind::Account, key).await? {
            Some(id) => {
                let mut f = fields;
                f.created_at = None;
                update_in(w, id, f).await?
            }
            None => {
                let created = create_in(w, actor, fields).await?;
                external_ids::link(w, RecordKind::Account, key, created.id).await?;
                created
            }
        },
    )
}

/// Creates an account and links its external ids (its own unit), all or
/// nothing.
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    fields: AccountFields,
    refs: Vec<ExternalRef>,
) -> AppResult<account::Model> {
    let (fields, refs) = (&fields, &refs);
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, actor, fields.clone()).await?;
        for key in refs {
            external_ids::link(&mut w, RecordKind::Account, key, created.id).await?;
        }
        w.commit(created).await
    })
    .await
}
