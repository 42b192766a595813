use super::service::{
    self, InitialStage, NewOpportunity, OpportunityFilter, OpportunityOrder, OpportunityPatch,
};
use crate::auth::{READERS, RECORD_WRITERS};
use crate::error::AppError;
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::acting;
use crate::graphql::context::{
    Primes, db, load_children, load_one, node_selects, parse_id, parse_ids, prime, prime_children,
    require, settings,
};
use crate::graphql::inputs::{
    ExternalIdInput, ExternalIdNode, OrderDirection, TimeRangeInput, patch, patch_id,
};
use crate::graphql::loaders::{
    AccountById, ExternalIdsOf, LeadById, StageHistoryOfOpportunity, UserById,
};
use crate::pagination::PageRequest;
use crate::records::accounts::graphql::Account;
use crate::records::common::search_term;
use crate::records::common::{check_currency, money_to_units, units_to_money};
use crate::records::external_ids::ExternalRef;
use crate::records::leads::graphql::{Lead, StageChange};
use crate::records::users::graphql::User;
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result};
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{OpportunityStage, RecordKind, Segment, SourcedBy};
use entity::opportunity;
use rust_decimal::Decimal;

/// A deal in the pipeline.
pub struct Opportunity(pub opportunity::Model);

#[Object]
impl Opportunity {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn account(&self, ctx: &Context<'_>) -> Result<Option<Account>> {
        Ok(load_one::<AccountById>(ctx, Some(self.0.account_id))
            .await?
            .map(Account))
    }
    /// The originating lead, if any.
    async fn lead(&self, ctx: &Context<'_>) -> Result<Option<Lead>> {
        Ok(load_one::<LeadById>(ctx, self.0.lead_id).await?.map(Lead))
    }
    async fn owner(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.owner_id).await?.map(User))
    }
    async fn stage(&self) -> OpportunityStage {
        self.0.stage
    }
    async fn is_closed(&self) -> bool {
        self.0.stage.is_closed()
    }
    async fn is_won(&self) -> bool {
        self.0.stage == OpportunityStage::ClosedWon
    }
    async fn amount(&self) -> Decimal {
        units_to_money(self.0.amount, &self.0.currency)
    }
    /// ISO 4217 code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn expected_close_date(&self) -> Option<NaiveDate> {
        self.0.expected_close_date
    }
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at
    }
    async fn lost_reason(&self) -> Option<&str> {
        self.0.lost_reason.as_deref()
    }
    async fn sourced_by(&self) -> SourcedBy {
        self.0.sourced_by
    }
    /// Every stage change, oldest first.
    async fn stage_history(&self, ctx: &Context<'_>) -> Result<Vec<StageChange>> {
        let rows = load_children::<StageHistoryOfOpportunity, _>(ctx, self.0.id).await?;
        Ok(rows.into_iter().map(StageChange).collect())
    }
    /// Its hand-offs between teams, oldest first.
    async fn handoffs(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<crate::records::handoffs::graphql::Handoff>> {
        let rows =
            load_children::<crate::graphql::loaders::HandoffsOfOpportunity, _>(ctx, self.0.id)
                .await?;
        Ok(rows
            .into_iter()
            .map(crate::records::handoffs::graphql::Handoff)
            .collect())
    }
    async fn external_ids(&self, ctx: &Context<'_>) -> Result<Vec<ExternalIdNode>> {
        let refs =
            load_children::<ExternalIdsOf, _>(ctx, (RecordKind::Opportunity, self.0.id)).await?;
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
pub struct OpportunityFilterInput {
    pub id: Option<Vec<ID>>,
    pub stage: Option<Vec<OpportunityStage>>,
    pub sourced_by: Option<Vec<SourcedBy>>,
    /// The segment of the opportunity's account.
    pub segment: Option<Vec<Segment>>,
    pub account_id: Option<Vec<ID>>,
    pub owner_id: Option<Vec<ID>>,
    pub lead_id: Option<Vec<ID>>,
    /// The campaign of the originating lead.
    pub campaign_id: Option<Vec<ID>>,
    pub created_at: Option<TimeRangeInput>,
    pub closed_at: Option<TimeRangeInput>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum OpportunityOrderField {
    CreatedAt,
    UpdatedAt,
    Amount,
    Name,
}

#[derive(InputObject)]
pub struct OpportunityOrderInput {
    pub field: OpportunityOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct OpportunitiesQuery;

#[Object]
impl OpportunitiesQuery {
    async fn opportunity(&self, ctx: &Context<'_>, id: ID) -> Result<Opportunity> {
        require(ctx, READERS, "read opportunities")?;
        let (db, id) = (db(ctx)?, parse_id(&id, "id")?);
        // The history, when asked for, is read beside the opportunity.
        let mut primes = Primes::default();
        if ctx.look_ahead().field("stageHistory").exists() {
            primes.add(prime_children::<StageHistoryOfOpportunity, _>(ctx, [id]));
        }
        Ok(Opportunity(primes.beside(service::get(db, id)).await?))
    }

    /// Opportunities, filtered and ordered (default: newest first).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn opportunities(
        &self,
        ctx: &Context<'_>,
        filter: Option<OpportunityFilterInput>,
        order_by: Option<OpportunityOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Opportunity>> {
        require(ctx, READERS, "read opportunities")?;
        let f = filter.unwrap_or_default();
        let filter = OpportunityFilter {
            ids: parse_ids(&f.id.unwrap_or_default(), "id")?,
            stages: f.stage.unwrap_or_default(),
            sourced_by: f.sourced_by.unwrap_or_default(),
            segments: f.segment.unwrap_or_default(),
            account_ids: parse_ids(&f.account_id.unwrap_or_default(), "accountId")?,
            owner_ids: parse_ids(&f.owner_id.unwrap_or_default(), "ownerId")?,
            lead_ids: parse_ids(&f.lead_id.unwrap_or_default(), "leadId")?,
            campaign_ids: parse_ids(&f.campaign_id.unwrap_or_default(), "campaignId")?,
            created_at: f.created_at.map(Into::into).unwrap_or_default(),
            closed_at: f.closed_at.map(Into::into).unwrap_or_default(),
            search: search_term(f.search)?,
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    OpportunityOrderField::CreatedAt => OpportunityOrder::CreatedAt,
                    OpportunityOrderField::UpdatedAt => OpportunityOrder::UpdatedAt,
                    OpportunityOrderField::Amount => OpportunityOrder::Amount,
                    OpportunityOrderField::Name => OpportunityOrder::Name,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (OpportunityOrder::CreatedAt, true),
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
        let opps = page.items.iter().map(|(_, m)| m);
        let mut primes = Primes::default();
        if node_selects(ctx, "account") {
            primes.add(prime::<AccountById, _>(
                ctx,
                opps.clone().map(|o| o.account_id),
            ));
        }
        if node_selects(ctx, "lead") {
            primes.add(prime::<LeadById, _>(
                ctx,
                opps.clone().filter_map(|o| o.lead_id),
            ));
        }
        if node_selects(ctx, "owner") {
            primes.add(prime::<UserById, _>(
                ctx,
                opps.clone().filter_map(|o| o.owner_id),
            ));
        }
        if node_selects(ctx, "stageHistory") {
            primes.add(prime_children::<StageHistoryOfOpportunity, _>(
                ctx,
                opps.clone().map(|o| o.id),
            ));
        }
        primes.run().await?;
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            Opportunity,
        ))
    }
}

/// Fields of an opportunity for create and upsert.
#[derive(InputObject)]
pub struct OpportunityInput {
    pub name: String,
    pub account_id: ID,
    /// The originating lead.
    pub lead_id: Option<ID>,
    pub owner_id: Option<ID>,
    /// Money, at least 0, in `currency`; at most 9,000,000 (so that every sum a metric makes stays exact at 100 million records).
    pub amount: Decimal,
    /// ISO 4217; default the deployment currency (the only one accepted).
    pub currency: Option<String>,
    pub expected_close_date: Option<NaiveDate>,
    /// Default SALES.
    pub sourced_by: Option<SourcedBy>,
    /// Stage to reach right away (imports); default DISCOVERY.
    pub stage: Option<OpportunityStage>,
    /// With a CLOSED_LOST stage.
    pub lost_reason: Option<String>,
    /// Backfill: creation time in the source system (ADMIN and INTEGRATION only).
    pub created_at: Option<DateTime<Utc>>,
    /// Backfill: close time, with a closed stage (ADMIN and INTEGRATION only).
    pub closed_at: Option<DateTime<Utc>>,
    pub external_ids: Option<Vec<ExternalIdInput>>,
    /// The reason of the creation entry in the stage history.
    pub reason: Option<String>,
    /// Imports: the user who created the opportunity in the source system,
    /// recorded on its stage history (on upsert, on the change it records).
    /// ADMIN and INTEGRATION only.
    pub actor_user_id: Option<ID>,
    /// Imports: the user who made it in the source system by one of its
    /// external ids, instead of `actorUserId` (ADMIN and INTEGRATION only).
    pub actor_external_id: Option<ExternalIdInput>,
}

impl OpportunityInput {
    pub(crate) fn into_parts(
        self,
        deployment: &str,
    ) -> Result<(NewOpportunity, InitialStage, Vec<ExternalRef>), AppError> {
        let currency = check_currency(self.currency.as_deref().unwrap_or(deployment), deployment)?;
        let refs = self
            .external_ids
            .unwrap_or_default()
            .into_iter()
            .map(|e| ExternalRef::normalized(&e.system, &e.id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            NewOpportunity {
                name: self.name,
                account_id: parse_id(&self.account_id, "accountId")?,
                lead_id: self
                    .lead_id
                    .as_ref()
                    .map(|l| parse_id(l, "leadId"))
                    .transpose()?,
                owner_id: self
                    .owner_id
                    .as_ref()
                    .map(|o| parse_id(o, "ownerId"))
                    .transpose()?,
                amount: money_to_units(self.amount, &currency, "amount")?,
                currency,
                expected_close_date: self.expected_close_date,
                sourced_by: self.sourced_by.unwrap_or(SourcedBy::Sales),
                created_at: self.created_at,
                reason: self.reason,
            },
            InitialStage {
                stage: self.stage,
                lost_reason: self.lost_reason,
                closed_at: self.closed_at,
            },
            refs,
        ))
    }
}

/// Changes to an opportunity: fields left out keep their value, null clears.
#[derive(InputObject, Default)]
pub struct UpdateOpportunityInput {
    pub name: Option<String>,
    pub account_id: Option<ID>,
    pub owner_id: MaybeUndefined<ID>,
    /// Money, at least 0 and at most 9,000,000 (so that every sum a metric makes stays exact at 100 million records).
    pub amount: Option<Decimal>,
    pub expected_close_date: MaybeUndefined<NaiveDate>,
    pub sourced_by: Option<SourcedBy>,
    /// External ids to add to the opportunity (e.g. the CRM's id of one made
    /// by `convertLead`); ids it already has are kept.
    pub external_ids: Option<Vec<ExternalIdInput>>,
}

#[derive(Default)]
pub struct OpportunitiesMutation;

#[Object]
impl OpportunitiesMutation {
    async fn create_opportunity(
        &self,
        ctx: &Context<'_>,
        input: OpportunityInput,
    ) -> Result<Opportunity> {
        let caller = require(ctx, RECORD_WRITERS, "create opportunities")?;
        let actor = acting(
            ctx,
            caller,
            input.actor_user_id.as_ref(),
            input.actor_external_id.as_ref(),
        )
        .await?;
        let (new, initial, refs) = input.into_parts(&settings(ctx)?.currency)?;
        Ok(Opportunity(
            service::create(db(ctx)?, &actor, new, initial, refs).await?,
        ))
    }

    /// Updates an opportunity's fields (its stage changes through `changeOpportunityStage`).
    async fn update_opportunity(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateOpportunityInput,
    ) -> Result<Opportunity> {
        require(ctx, RECORD_WRITERS, "update opportunities")?;
        let db = db(ctx)?;
        let id = parse_id(&id, "id")?;
        let current = service::get(db, id).await?;
        let patch = OpportunityPatch {
            name: input.name,
            account_id: input
                .account_id
                .as_ref()
                .map(|a| parse_id(a, "accountId"))
                .transpose()?,
            owner_id: patch_id(input.owner_id, "ownerId")?,
            amount: input
                .amount
                .map(|a| money_to_units(a, &current.currency, "amount"))
                .transpose()?,
            expected_close_date: patch(input.expected_close_date),
            sourced_by: input.sourced_by,
            external_ids: input
                .external_ids
                .unwrap_or_default()
                .into_iter()
                .map(|e| ExternalRef::normalized(&e.system, &e.id))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Opportunity(service::update(db, id, patch).await?))
    }

    /// Moves an opportunity to another stage; closing sets closedAt.
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn change_opportunity_stage(
        &self,
        ctx: &Context<'_>,
        id: ID,
        to: OpportunityStage,
        #[graphql(desc = "Required with CLOSED_LOST")] lost_reason: Option<String>,
        reason: Option<String>,
        #[graphql(desc = "Backfill: when the change happened (ADMIN and INTEGRATION only)")]
        at: Option<DateTime<Utc>>,
        #[graphql(
            desc = "Imports: the user who made the change in the source system (ADMIN and INTEGRATION only)"
        )]
        actor_user_id: Option<ID>,
        #[graphql(
            desc = "Imports: the user who made the change, by one of its external ids, instead of `actorUserId` (ADMIN and INTEGRATION only)"
        )]
        actor_external_id: Option<ExternalIdInput>,
    ) -> Result<Opportunity> {
        let caller = require(ctx, RECORD_WRITERS, "change opportunity stages")?;
        let actor = acting(
            ctx,
            caller,
            actor_user_id.as_ref(),
            actor_external_id.as_ref(),
        )
        .await?;
        let opp = service::change_stage(
            db(ctx)?,
            &actor,
            parse_id(&id, "id")?,
            to,
            lost_reason,
            reason,
            at,
        )
        .await?;
        Ok(Opportunity(opp))
    }

    /// Creates or updates the opportunity that `externalId` maps to (idempotent).
    async fn upsert_opportunity(
        &self,
        ctx: &Context<'_>,
        external_id: ExternalIdInput,
        input: OpportunityInput,
    ) -> Result<Opportunity> {
        let caller = require(ctx, RECORD_WRITERS, "upsert opportunities")?;
        let key = ExternalRef::normalized(&external_id.system, &external_id.id)?;
        let actor = acting(
            ctx,
            caller,
            input.actor_user_id.as_ref(),
            input.actor_external_id.as_ref(),
        )
        .await?;
        let (new, initial, _) = input.into_parts(&settings(ctx)?.currency)?;
        Ok(Opportunity(
            service::upsert(db(ctx)?, &actor, key, new, initial).await?,
        ))
    }
}
