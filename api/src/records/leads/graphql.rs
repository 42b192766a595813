use super::service::{self, Conversion, LeadFields, LeadFilter, LeadOrder, SearchPersonal};
use crate::auth::{READERS, RECORD_WRITERS};
use crate::error::AppError;
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{
    Primes, caller, db, feed_children, load_children, load_one, node_selects, parse_id, parse_ids,
    prime, prime_children, require, settings,
};
use crate::graphql::context::{acting, resolve_actor};
use crate::graphql::inputs::{
    ExternalIdInput, ExternalIdNode, OrderDirection, TimeRangeInput, patch, patch_id,
};
use crate::graphql::loaders::{
    AccountById, CampaignById, ExternalIdsOf, LeadById, OpportunityById, StageHistoryOfLead,
    TeamById, TouchpointsOfLead, UserById,
};
use crate::pagination::PageRequest;
use crate::records::accounts::graphql::Account;
use crate::records::campaigns::graphql::Campaign;
use crate::records::common::search_term;
use crate::records::common::{check_currency, money_to_units};
use crate::records::external_ids::ExternalRef;
use crate::records::opportunities::graphql::Opportunity;
use crate::records::stage_changes::Actor;
use crate::records::teams::graphql::Team;
use crate::records::users::graphql::User;
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::{Channel, LeadStage, RecordKind, Role, Segment, SourcedBy};
use entity::{lead, stage_change, touchpoint};
use rust_decimal::Decimal;

/// A person in the funnel. Personal fields (email, names, title) are null
/// for VIEWER callers, and for INTEGRATION callers on leads they did not create.
pub struct Lead(pub lead::Model);

impl Lead {
    fn personal<'a>(
        &'a self,
        ctx: &Context<'_>,
        value: Option<&'a str>,
    ) -> Result<Option<&'a str>> {
        let c = caller(ctx)?;
        Ok(value.filter(|_| c.sees_personal_data(&self.0.created_by)))
    }
}

#[Object]
impl Lead {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        self.personal(ctx, Some(&self.0.email))
    }
    async fn first_name(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        self.personal(ctx, self.0.first_name.as_deref())
    }
    async fn last_name(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        self.personal(ctx, self.0.last_name.as_deref())
    }
    /// First and last name.
    async fn name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let parts: Vec<&str> = [self.0.first_name.as_deref(), self.0.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let full = (!parts.is_empty()).then(|| parts.join(" "));
        Ok(self.personal(ctx, full.as_deref())?.map(str::to_owned))
    }
    async fn title(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        self.personal(ctx, self.0.title.as_deref())
    }
    async fn company(&self) -> Option<&str> {
        self.0.company.as_deref()
    }
    async fn account(&self, ctx: &Context<'_>) -> Result<Option<Account>> {
        Ok(load_one::<AccountById>(ctx, self.0.account_id)
            .await?
            .map(Account))
    }
    async fn source(&self) -> Channel {
        self.0.source
    }
    async fn campaign(&self, ctx: &Context<'_>) -> Result<Option<Campaign>> {
        Ok(load_one::<CampaignById>(ctx, self.0.campaign_id)
            .await?
            .map(Campaign))
    }
    async fn score(&self) -> i32 {
        self.0.score
    }
    async fn stage(&self) -> LeadStage {
        self.0.stage
    }
    async fn owner(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.owner_id).await?.map(User))
    }
    async fn team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, self.0.team_id).await?.map(Team))
    }
    /// The opportunity created when the lead was converted.
    async fn converted_opportunity(&self, ctx: &Context<'_>) -> Result<Option<Opportunity>> {
        Ok(
            load_one::<OpportunityById>(ctx, self.0.converted_opportunity_id)
                .await?
                .map(Opportunity),
        )
    }
    /// Marketing touches, oldest first.
    async fn touchpoints(&self, ctx: &Context<'_>) -> Result<Vec<Touchpoint>> {
        let rows = load_children::<TouchpointsOfLead, _>(ctx, self.0.id).await?;
        Ok(rows.into_iter().map(Touchpoint).collect())
    }
    /// Every stage change, oldest first.
    async fn stage_history(&self, ctx: &Context<'_>) -> Result<Vec<StageChange>> {
        let rows = load_children::<StageHistoryOfLead, _>(ctx, self.0.id).await?;
        Ok(rows.into_iter().map(StageChange).collect())
    }
    /// Its hand-offs between teams, oldest first.
    async fn handoffs(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<crate::records::handoffs::graphql::Handoff>> {
        let rows =
            load_children::<crate::graphql::loaders::HandoffsOfLead, _>(ctx, self.0.id).await?;
        Ok(rows
            .into_iter()
            .map(crate::records::handoffs::graphql::Handoff)
            .collect())
    }
    async fn external_ids(&self, ctx: &Context<'_>) -> Result<Vec<ExternalIdNode>> {
        let refs = load_children::<ExternalIdsOf, _>(ctx, (RecordKind::Lead, self.0.id)).await?;
        Ok(refs.into_iter().map(ExternalIdNode).collect())
    }
    async fn first_touch_at(&self) -> Option<DateTime<Utc>> {
        self.0.first_touch_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A marketing touch of a lead by a campaign.
pub struct Touchpoint(pub touchpoint::Model);

#[Object]
impl Touchpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn lead(&self, ctx: &Context<'_>) -> Result<Option<Lead>> {
        Ok(load_one::<LeadById>(ctx, Some(self.0.lead_id))
            .await?
            .map(Lead))
    }
    async fn campaign(&self, ctx: &Context<'_>) -> Result<Option<Campaign>> {
        Ok(load_one::<CampaignById>(ctx, Some(self.0.campaign_id))
            .await?
            .map(Campaign))
    }
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One stage change of a lead or an opportunity: when, by whom, why.
pub struct StageChange(pub stage_change::Model);

#[Object]
impl StageChange {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The stage before (null for the first stage).
    async fn from_stage(&self) -> Option<&str> {
        self.0.from_stage.as_deref()
    }
    async fn to_stage(&self) -> &str {
        &self.0.to_stage
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// The token subject that made the change; for callers that do not see
    /// personal data, the acting user's id instead (a subject may be an
    /// e-mail address).
    async fn actor(&self, ctx: &Context<'_>) -> Result<String> {
        let c = caller(ctx)?;
        Ok(match self.0.actor_user_id {
            Some(user) if !c.sees_personal_data("") => user.to_string(),
            _ => self.0.actor.clone(),
        })
    }
    /// The user that made the change, when a user did.
    async fn actor_user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        Ok(load_one::<UserById>(ctx, self.0.actor_user_id)
            .await?
            .map(User))
    }
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
}

/// Loads the relations a page of leads selects, one batch each, at once.
async fn prime_leads<'a>(
    ctx: &Context<'_>,
    leads: impl Iterator<Item = &'a lead::Model> + Clone + Send,
) -> Result<()> {
    let mut primes = Primes::default();
    if node_selects(ctx, "account") {
        primes.add(prime::<AccountById, _>(
            ctx,
            leads.clone().filter_map(|l| l.account_id),
        ));
    }
    if node_selects(ctx, "owner") {
        primes.add(prime::<UserById, _>(
            ctx,
            leads.clone().filter_map(|l| l.owner_id),
        ));
    }
    if node_selects(ctx, "team") {
        primes.add(prime::<TeamById, _>(
            ctx,
            leads.clone().filter_map(|l| l.team_id),
        ));
    }
    if node_selects(ctx, "campaign") {
        primes.add(prime::<CampaignById, _>(
            ctx,
            leads.clone().filter_map(|l| l.campaign_id),
        ));
    }
    if node_selects(ctx, "convertedOpportunity") {
        primes.add(prime::<OpportunityById, _>(
            ctx,
            leads.clone().filter_map(|l| l.converted_opportunity_id),
        ));
    }
    if node_selects(ctx, "stageHistory") {
        primes.add(prime_children::<StageHistoryOfLead, _>(
            ctx,
            leads.clone().map(|l| l.id),
        ));
    }
    if node_selects(ctx, "touchpoints") {
        primes.add(prime_children::<TouchpointsOfLead, _>(
            ctx,
            leads.clone().map(|l| l.id),
        ));
    }
    primes.run().await
}

#[derive(InputObject, Default)]
pub struct LeadFilterInput {
    pub id: Option<Vec<ID>>,
    pub stage: Option<Vec<LeadStage>>,
    pub source: Option<Vec<Channel>>,
    /// The segment of the lead's account.
    pub segment: Option<Vec<Segment>>,
    pub account_id: Option<Vec<ID>>,
    pub owner_id: Option<Vec<ID>>,
    pub campaign_id: Option<Vec<ID>>,
    pub team_id: Option<Vec<ID>>,
    pub created_at: Option<TimeRangeInput>,
    /// Case-insensitive substring of e-mail, first or last name, or company.
    pub search: Option<String>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum LeadOrderField {
    CreatedAt,
    UpdatedAt,
    Email,
    Score,
}

#[derive(InputObject)]
pub struct LeadOrderInput {
    pub field: LeadOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct LeadsQuery;

#[Object]
impl LeadsQuery {
    async fn lead(&self, ctx: &Context<'_>, id: ID) -> Result<Lead> {
        require(ctx, READERS, "read leads")?;
        let (db, id) = (db(ctx)?, parse_id(&id, "id")?);
        // The children asked for are read beside the lead, not after it.
        let look = ctx.look_ahead();
        let mut primes = Primes::default();
        if look.field("stageHistory").exists() {
            // PostgreSQL: with the lead, in one statement.
            if let Some((lead, history)) = service::get_with_history(db, id).await? {
                feed_children::<StageHistoryOfLead, _>(ctx, id, history).await?;
                if look.field("touchpoints").exists() {
                    prime_children::<TouchpointsOfLead, _>(ctx, [id]).await?;
                }
                return Ok(Lead(lead));
            }
            primes.add(prime_children::<StageHistoryOfLead, _>(ctx, [id]));
        }
        if look.field("touchpoints").exists() {
            primes.add(prime_children::<TouchpointsOfLead, _>(ctx, [id]));
        }
        Ok(Lead(primes.beside(service::get(db, id)).await?))
    }

    /// Leads, filtered and ordered (default: newest first).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn leads(
        &self,
        ctx: &Context<'_>,
        filter: Option<LeadFilterInput>,
        order_by: Option<LeadOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Lead>> {
        let caller = require(ctx, READERS, "read leads")?;
        let f = filter.unwrap_or_default();
        let filter = LeadFilter {
            search_personal: match caller.role {
                Role::Admin | Role::Revops | Role::Member => SearchPersonal::All,
                Role::Viewer => SearchPersonal::None,
                Role::Integration => SearchPersonal::CreatedBy(caller.subject.clone()),
            },
            ids: parse_ids(&f.id.unwrap_or_default(), "id")?,
            stages: f.stage.unwrap_or_default(),
            sources: f.source.unwrap_or_default(),
            segments: f.segment.unwrap_or_default(),
            account_ids: parse_ids(&f.account_id.unwrap_or_default(), "accountId")?,
            owner_ids: parse_ids(&f.owner_id.unwrap_or_default(), "ownerId")?,
            campaign_ids: parse_ids(&f.campaign_id.unwrap_or_default(), "campaignId")?,
            team_ids: parse_ids(&f.team_id.unwrap_or_default(), "teamId")?,
            created_at: f.created_at.map(Into::into).unwrap_or_default(),
            search: search_term(f.search)?,
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    LeadOrderField::CreatedAt => LeadOrder::CreatedAt,
                    LeadOrderField::UpdatedAt => LeadOrder::UpdatedAt,
                    LeadOrderField::Email => LeadOrder::Email,
                    LeadOrderField::Score => LeadOrder::Score,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (LeadOrder::CreatedAt, true),
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
        prime_leads(ctx, page.items.iter().map(|(_, m)| m)).await?;
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            Lead,
        ))
    }
}

/// Fields of a lead. On create, `email` is required; on update and upsert,
/// fields left out keep their value and null clears them.
#[derive(InputObject, Default)]
pub struct LeadInput {
    pub email: Option<String>,
    pub first_name: MaybeUndefined<String>,
    pub last_name: MaybeUndefined<String>,
    pub title: MaybeUndefined<String>,
    pub company: MaybeUndefined<String>,
    /// Default: the account whose domain is the e-mail's (public mail domains never match).
    pub account_id: MaybeUndefined<ID>,
    /// Default OTHER.
    pub source: Option<Channel>,
    pub campaign_id: MaybeUndefined<ID>,
    pub score: Option<i32>,
    pub owner_id: MaybeUndefined<ID>,
    pub team_id: MaybeUndefined<ID>,
    /// On create: the initial stage (default INQUIRY). On upsert: a stage to move to.
    pub stage: Option<LeadStage>,
    /// Backfill: when the lead was created in the source system (ADMIN and INTEGRATION only).
    pub created_at: Option<DateTime<Utc>>,
    /// When sales first reached out to the lead (speed to lead); not in the future.
    pub first_touch_at: MaybeUndefined<DateTime<Utc>>,
    /// External ids to link to the new lead.
    pub external_ids: Option<Vec<ExternalIdInput>>,
    /// The reason of the creation entry in the stage history (on upsert, of
    /// the stage change it records; default "synced").
    pub reason: Option<String>,
    /// Imports: the user who created the lead in the source system,
    /// recorded on its creation entry (on upsert, on the stage change).
    /// ADMIN and INTEGRATION only.
    pub actor_user_id: Option<ID>,
    /// Imports: the user who made it in the source system by one of its
    /// external ids, instead of `actorUserId` (ADMIN and INTEGRATION only).
    pub actor_external_id: Option<ExternalIdInput>,
}

impl LeadInput {
    pub(crate) fn into_fields(self) -> Result<(LeadFields, Vec<ExternalRef>), AppError> {
        let refs = self
            .external_ids
            .unwrap_or_default()
            .into_iter()
            .map(|e| ExternalRef::normalized(&e.system, &e.id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            LeadFields {
                email: self.email,
                first_name: patch(self.first_name),
                last_name: patch(self.last_name),
                title: patch(self.title),
                company: patch(self.company),
                account_id: patch_id(self.account_id, "accountId")?,
                source: self.source,
                campaign_id: patch_id(self.campaign_id, "campaignId")?,
                score: self.score,
                owner_id: patch_id(self.owner_id, "ownerId")?,
                team_id: patch_id(self.team_id, "teamId")?,
                stage: self.stage,
                created_at: self.created_at,
                first_touch_at: patch(self.first_touch_at),
                reason: self.reason,
                actor_user_id: self
                    .actor_user_id
                    .as_ref()
                    .map(|u| parse_id(u, "actorUserId"))
                    .transpose()?,
            },
            refs,
        ))
    }
}

/// The opportunity `convertLead` creates.
#[derive(InputObject)]
pub struct ConvertLeadOpportunityInput {
    pub name: String,
    /// Default: the lead's account.
    pub account_id: Option<ID>,
    /// Money, at least 0 and at most 9,000,000 (so that every sum a metric makes stays exact at 100 million records).
    pub amount: Decimal,
    /// Default: the deployment currency (the only one accepted).
    pub currency: Option<String>,
    pub expected_close_date: Option<NaiveDate>,
    /// Default: the lead's owner.
    pub owner_id: Option<ID>,
    /// Default: PARTNER for partner leads, SALES_DEVELOPMENT for outbound, MARKETING otherwise.
    pub sourced_by: Option<SourcedBy>,
    /// External ids to link to the new opportunity (so that the CRM's
    /// opportunity maps to it).
    pub external_ids: Option<Vec<ExternalIdInput>>,
}

#[derive(InputObject)]
pub struct TouchpointInput {
    pub lead_id: ID,
    pub campaign_id: ID,
    /// Default now.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The result of `convertLead`.
#[derive(SimpleObject)]
pub struct ConvertLeadPayload {
    pub lead: Lead,
    pub opportunity: Opportunity,
}

#[derive(Default)]
pub struct LeadsMutation;

#[Object]
impl LeadsMutation {
    async fn create_lead(&self, ctx: &Context<'_>, input: LeadInput) -> Result<Lead> {
        let caller = require(ctx, RECORD_WRITERS, "create leads")?;
        let mut input = input;
        resolve_actor(
            ctx,
            caller,
            &mut input.actor_user_id,
            &mut input.actor_external_id,
        )
        .await?;
        let (fields, refs) = input.into_fields()?;
        Ok(Lead(
            service::create(db(ctx)?, &Actor::from(caller), fields, refs).await?,
        ))
    }

    /// Creates up to 1,000 leads in one transaction: all or none.
    async fn create_leads(&self, ctx: &Context<'_>, inputs: Vec<LeadInput>) -> Result<Vec<Lead>> {
        let caller = require(ctx, RECORD_WRITERS, "create leads")?;
        if inputs.len() > service::MAX_BATCH {
            return Err(AppError::bad_input(
                "inputs",
                format!("at most {} leads per call", service::MAX_BATCH),
            )
            .into());
        }
        let mut batch = Vec::with_capacity(inputs.len());
        for (i, mut input) in inputs.into_iter().enumerate() {
            resolve_actor(
                ctx,
                caller,
                &mut input.actor_user_id,
                &mut input.actor_external_id,
            )
            .await
            .map_err(|e| match e {
                AppError::NotFound(what) => AppError::NotFound(format!("inputs[{i}]: {what}")),
                other => other,
            })?;
            batch.push(input.into_fields()?);
        }
        let created = service::create_many(db(ctx)?, &Actor::from(caller), batch).await?;
        Ok(created.into_iter().map(Lead).collect())
    }

    /// Updates a lead's fields (its stage changes through `changeLeadStage`).
    async fn update_lead(&self, ctx: &Context<'_>, id: ID, input: LeadInput) -> Result<Lead> {
        let caller = require(ctx, RECORD_WRITERS, "update leads")?;
        let mut input = input;
        resolve_actor(
            ctx,
            caller,
            &mut input.actor_user_id,
            &mut input.actor_external_id,
        )
        .await?;
        let (fields, refs) = input.into_fields()?;
        if fields.stage.is_some() {
            return Err(
                AppError::bad_input("stage", "change the stage with changeLeadStage").into(),
            );
        }
        if fields.created_at.is_some() || !refs.is_empty() {
            return Err(
                AppError::invalid("createdAt and externalIds are set on create or upsert").into(),
            );
        }
        Ok(Lead(
            service::update(db(ctx)?, &Actor::from(caller), parse_id(&id, "id")?, fields).await?,
        ))
    }

    /// Moves a lead to another stage, recording when, who and why.
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn change_lead_stage(
        &self,
        ctx: &Context<'_>,
        id: ID,
        to: LeadStage,
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
    ) -> Result<Lead> {
        let caller = require(ctx, RECORD_WRITERS, "change lead stages")?;
        let actor = acting(
            ctx,
            caller,
            actor_user_id.as_ref(),
            actor_external_id.as_ref(),
        )
        .await?;
        let lead =
            service::change_stage(db(ctx)?, &actor, parse_id(&id, "id")?, to, reason, at).await?;
        Ok(Lead(lead))
    }

    /// Creates an opportunity from a lead, links them, and moves the lead to
    /// CONVERTED — in one transaction.
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn convert_lead(
        &self,
        ctx: &Context<'_>,
        id: ID,
        opportunity: ConvertLeadOpportunityInput,
        #[graphql(desc = "Backfill: when the conversion happened (ADMIN and INTEGRATION only)")] at: Option<DateTime<Utc>>,
        #[graphql(
            desc = "The reason of the lead's CONVERTED entry and of the opportunity's creation entry (default \"converted\")"
        )]
        reason: Option<String>,
        #[graphql(
            desc = "Imports: the user who converted the lead in the source system (ADMIN and INTEGRATION only)"
        )]
        actor_user_id: Option<ID>,
        #[graphql(
            desc = "Imports: the user who converted the lead, by one of its external ids, instead of `actorUserId` (ADMIN and INTEGRATION only)"
        )]
        actor_external_id: Option<ExternalIdInput>,
    ) -> Result<ConvertLeadPayload> {
        let caller = require(ctx, RECORD_WRITERS, "convert leads")?;
        let actor = acting(
            ctx,
            caller,
            actor_user_id.as_ref(),
            actor_external_id.as_ref(),
        )
        .await?;
        let external_ids = opportunity
            .external_ids
            .unwrap_or_default()
            .into_iter()
            .map(|e| ExternalRef::normalized(&e.system, &e.id))
            .collect::<Result<Vec<_>, _>>()?;
        let deployment = &settings(ctx)?.currency;
        let currency = check_currency(
            opportunity.currency.as_deref().unwrap_or(deployment),
            deployment,
        )?;
        let conversion = Conversion {
            name: opportunity.name,
            account_id: opportunity
                .account_id
                .as_ref()
                .map(|a| parse_id(a, "accountId"))
                .transpose()?,
            owner_id: opportunity
                .owner_id
                .as_ref()
                .map(|o| parse_id(o, "ownerId"))
                .transpose()?,
            amount: money_to_units(opportunity.amount, &currency, "amount")?,
            currency,
            expected_close_date: opportunity.expected_close_date,
            sourced_by: opportunity.sourced_by,
            reason,
            external_ids,
        };
        let (lead, opp) =
            service::convert(db(ctx)?, &actor, parse_id(&id, "id")?, conversion, at).await?;
        Ok(ConvertLeadPayload {
            lead: Lead(lead),
            opportunity: Opportunity(opp),
        })
    }

    /// Creates or updates the lead that `externalId` maps to (idempotent).
    async fn upsert_lead(
        &self,
        ctx: &Context<'_>,
        external_id: ExternalIdInput,
        input: LeadInput,
    ) -> Result<Lead> {
        let caller = require(ctx, RECORD_WRITERS, "upsert leads")?;
        let key = ExternalRef::normalized(&external_id.system, &external_id.id)?;
        let mut input = input;
        resolve_actor(
            ctx,
            caller,
            &mut input.actor_user_id,
            &mut input.actor_external_id,
        )
        .await?;
        let (fields, _) = input.into_fields()?;
        Ok(Lead(
            service::upsert(db(ctx)?, &Actor::from(caller), key, fields).await?,
        ))
    }

    /// Records a marketing touch of a lead by a campaign (read by attribution).
    async fn record_touchpoint(
        &self,
        ctx: &Context<'_>,
        input: TouchpointInput,
    ) -> Result<Touchpoint> {
        require(ctx, RECORD_WRITERS, "record touchpoints")?;
        let tp = service::record_touchpoint(
            db(ctx)?,
            parse_id(&input.lead_id, "leadId")?,
            parse_id(&input.campaign_id, "campaignId")?,
            input.occurred_at,
        )
        .await?;
        Ok(Touchpoint(tp))
    }
}
