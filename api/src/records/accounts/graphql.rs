use super::service::{self, AccountFields, AccountFilter, AccountOrder};
use crate::auth::{READERS, RECORD_WRITERS};
use crate::error::AppError;
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{
    db, load_children, load_one, node_selects, parse_id, parse_ids, prime, require, settings,
};
use crate::graphql::inputs::{
    ExternalIdInput, ExternalIdNode, OrderDirection, TimeRangeInput, patch, patch_id,
};
use crate::graphql::loaders::{
    Capped, ExternalIdsOf, LeadsOfAccount, OpportunitiesOfAccount, UserById,
};
use crate::pagination::PageRequest;
use crate::records::common::search_term;
use crate::records::common::{money_to_units, units_to_money};
use crate::records::external_ids::ExternalRef;
use crate::records::leads::graphql::Lead;
use crate::records::opportunities::graphql::Opportunity;
use crate::records::stage_changes::Actor;
use crate::records::users::graphql::User;
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result};
use chrono::{DateTime, Utc};
use entity::account;
use entity::enums::{AccountStatus, RecordKind, Segment};
use rust_decimal::Decimal;

/// A company: prospect, customer or churned.
pub struct Account(pub account::Model);

#[Object]
impl Account {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Lower-case web domain; leads are matched to the account by it.
    async fn domain(&self) -> Option<&str> {
        self.0.domain.as_deref()
    }
    async fn industry(&self) -> Option<&str> {
        self.0.industry.as_deref()
    }
    async fn segment(&self) -> Segment {
        self.0.segment
    }
    async fn employees(&self) -> Option<i32> {
        self.0.employees
    }
    async fn annual_revenue(&self, ctx: &Context<'_>) -> Result<Option<Decimal>> {
        let currency = &settings(ctx)?.currency;
        Ok(self.0.annual_revenue.map(|u| units_to_money(u, currency)))
    }
    /// On the ABM target list.
    async fn is_target(&self) -> bool {
        self.0.is_target
    }
    async fn status(&self) -> AccountStatus {
        self.0.status
    }
    async fn became_customer_at(&self) -> Option<DateTime<Utc>> {
        self.0.became_customer_at
    }
    async fn churned_at(&self) -> Option<DateTime<Utc>> {
        self.0.churned_at
    }
    async fn owner(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.owner_id).await?.map(User))
    }
    /// The account's newest leads.
    #[graphql(complexity = "first.clamp(0, 500) as usize * child_complexity + 1")]
    async fn leads(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<Lead>> {
        let limit = crate::graphql::inputs::child_limit(first)?;
        let rows = load_children::<LeadsOfAccount, _>(
            ctx,
            Capped {
                parent: self.0.id,
                limit,
            },
        )
        .await?;
        Ok(rows.into_iter().map(Lead).collect())
    }
    /// The account's newest opportunities.
    #[graphql(complexity = "first.clamp(0, 500) as usize * child_complexity + 1")]
    async fn opportunities(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<Opportunity>> {
        let limit = crate::graphql::inputs::child_limit(first)?;
        let rows = load_children::<OpportunitiesOfAccount, _>(
            ctx,
            Capped {
                parent: self.0.id,
                limit,
            },
        )
        .await?;
        Ok(rows.into_iter().map(Opportunity).collect())
    }
    /// Ids of this account in external systems (CRMs).
    async fn external_ids(&self, ctx: &Context<'_>) -> Result<Vec<ExternalIdNode>> {
        let refs = load_children::<ExternalIdsOf, _>(ctx, (RecordKind::Account, self.0.id)).await?;
        Ok(refs.into_iter().map(ExternalIdNode).collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject, Default)]
pub struct AccountFilterInput {
    pub id: Option<Vec<ID>>,
    pub segment: Option<Vec<Segment>>,
    pub status: Option<Vec<AccountStatus>>,
    pub owner_id: Option<Vec<ID>>,
    pub is_target: Option<bool>,
    /// Case-insensitive substring of name or domain.
    pub search: Option<String>,
    pub created_at: Option<TimeRangeInput>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum AccountOrderField {
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(InputObject)]
pub struct AccountOrderInput {
    pub field: AccountOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    async fn account(&self, ctx: &Context<'_>, id: ID) -> Result<Account> {
        require(ctx, READERS, "read accounts")?;
        Ok(Account(service::get(db(ctx)?, parse_id(&id, "id")?).await?))
    }

    /// Accounts, filtered and ordered (default: by name).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        filter: Option<AccountFilterInput>,
        order_by: Option<AccountOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Account>> {
        require(ctx, READERS, "read accounts")?;
        let f = filter.unwrap_or_default();
        let filter = AccountFilter {
            ids: parse_ids(&f.id.unwrap_or_default(), "id")?,
            segments: f.segment.unwrap_or_default(),
            statuses: f.status.unwrap_or_default(),
            owner_ids: parse_ids(&f.owner_id.unwrap_or_default(), "ownerId")?,
            is_target: f.is_target,
            search: search_term(f.search)?,
            created_at: f.created_at.map(Into::into).unwrap_or_default(),
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    AccountOrderField::Name => AccountOrder::Name,
                    AccountOrderField::CreatedAt => AccountOrder::CreatedAt,
                    AccountOrderField::UpdatedAt => AccountOrder::UpdatedAt,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (AccountOrder::Name, false),
        };
        let db = db(ctx)?.clone();
        let page = service::list(
            &db,
            &filter,
            order,
            desc,
            &PageRequest {
                first,
                after,
                last,
                before,
            },
        )
        .await?;
        if node_selects(ctx, "owner") {
            prime::<UserById, _>(ctx, page.items.iter().filter_map(|(_, a)| a.owner_id)).await?;
        }
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            Account,
        ))
    }
}

/// Fields of an account. On create, `name` is required; on update and
/// upsert, fields left out keep their value and null clears them.
#[derive(InputObject, Default)]
pub struct AccountInput {
    pub name: Option<String>,
    pub domain: MaybeUndefined<String>,
    pub industry: MaybeUndefined<String>,
    pub segment: Option<Segment>,
    pub employees: MaybeUndefined<i32>,
    pub annual_revenue: MaybeUndefined<Decimal>,
    pub is_target: Option<bool>,
    pub status: Option<AccountStatus>,
    pub became_customer_at: MaybeUndefined<DateTime<Utc>>,
    pub churned_at: MaybeUndefined<DateTime<Utc>>,
    pub owner_id: MaybeUndefined<ID>,
    /// Backfill: when the record was created in the source system (ADMIN and INTEGRATION only).
    pub created_at: Option<DateTime<Utc>>,
    /// External ids to link to the new record.
    pub external_ids: Option<Vec<ExternalIdInput>>,
}

impl AccountInput {
    pub(crate) fn into_fields(
        self,
        currency: &str,
    ) -> Result<(AccountFields, Vec<ExternalRef>), AppError> {
        let revenue = match patch(self.annual_revenue) {
            Some(Some(d)) => Some(Some(money_to_units(d, currency, "annualRevenue")?)),
            Some(None) => Some(None),
            None => None,
        };
        let refs = self
            .external_ids
            .unwrap_or_default()
            .into_iter()
            .map(|e| ExternalRef::normalized(&e.system, &e.id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            AccountFields {
                name: self.name,
                domain: patch(self.domain),
                industry: patch(self.industry),
                segment: self.segment,
                employees: patch(self.employees),
                annual_revenue: revenue,
                is_target: self.is_target,
                status: self.status,
                became_customer_at: patch(self.became_customer_at),
                churned_at: patch(self.churned_at),
                owner_id: patch_id(self.owner_id, "ownerId")?,
                created_at: self.created_at,
            },
            refs,
        ))
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    async fn create_account(&self, ctx: &Context<'_>, input: AccountInput) -> Result<Account> {
        let caller = require(ctx, RECORD_WRITERS, "create accounts")?;
        let (fields, refs) = input.into_fields(&settings(ctx)?.currency)?;
        let db = db(ctx)?;
        Ok(Account(
            service::create(db, &Actor::from(caller), fields, refs).await?,
        ))
    }

    async fn update_account(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: AccountInput,
    ) -> Result<Account> {
        require(ctx, RECORD_WRITERS, "update accounts")?;
        let (fields, refs) = input.into_fields(&settings(ctx)?.currency)?;
        if fields.created_at.is_some() || !refs.is_empty() {
            return Err(
                AppError::invalid("createdAt and externalIds are set on create or upsert").into(),
            );
        }
        Ok(Account(
            service::update(db(ctx)?, parse_id(&id, "id")?, fields).await?,
        ))
    }

    /// Creates or updates the account that `externalId` maps to (idempotent).
    async fn upsert_account(
        &self,
        ctx: &Context<'_>,
        external_id: ExternalIdInput,
        input: AccountInput,
    ) -> Result<Account> {
        let caller = require(ctx, RECORD_WRITERS, "upsert accounts")?;
        let key = ExternalRef::normalized(&external_id.system, &external_id.id)?;
        let (fields, _) = input.into_fields(&settings(ctx)?.currency)?;
        Ok(Account(
            service::upsert(db(ctx)?, &Actor::from(caller), key, fields).await?,
        ))
    }
}
