use super::service::{self, CampaignFilter, CampaignOrder, NewCampaign};
use crate::auth::{CAMPAIGN_WRITERS, READERS};
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{db, parse_id, parse_ids, require, settings};
use crate::graphql::inputs::{OrderDirection, TimeRangeInput};
use crate::pagination::PageRequest;
use crate::records::common::search_term;
use crate::records::common::{money_to_units, units_to_money};
use async_graphql::{Context, Enum, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use entity::campaign;
use entity::enums::{CampaignKind, Channel};
use rust_decimal::Decimal;

/// A marketing campaign: content, offers, events, ads, e-mail, webinars.
pub struct Campaign(pub campaign::Model);

#[Object]
impl Campaign {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn channel(&self) -> Channel {
        self.0.channel
    }
    async fn kind(&self) -> CampaignKind {
        self.0.kind
    }
    async fn cost(&self, ctx: &Context<'_>) -> Result<Decimal> {
        Ok(units_to_money(self.0.cost, &settings(ctx)?.currency))
    }
    async fn starts_at(&self) -> DateTime<Utc> {
        self.0.starts_at
    }
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject, Default)]
pub struct CampaignFilterInput {
    pub id: Option<Vec<ID>>,
    pub channel: Option<Vec<Channel>>,
    pub kind: Option<Vec<CampaignKind>>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    pub starts_at: Option<TimeRangeInput>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum CampaignOrderField {
    Name,
    StartsAt,
    CreatedAt,
}

#[derive(InputObject)]
pub struct CampaignOrderInput {
    pub field: CampaignOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct CampaignsQuery;

#[Object]
impl CampaignsQuery {
    async fn campaign(&self, ctx: &Context<'_>, id: ID) -> Result<Campaign> {
        require(ctx, READERS, "read campaigns")?;
        Ok(Campaign(
            service::get(db(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }

    /// Campaigns, filtered and ordered (default: by name).
    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        filter: Option<CampaignFilterInput>,
        order_by: Option<CampaignOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<Campaign>> {
        require(ctx, READERS, "read campaigns")?;
        let f = filter.unwrap_or_default();
        let filter = CampaignFilter {
            ids: parse_ids(&f.id.unwrap_or_default(), "id")?,
            channels: f.channel.unwrap_or_default(),
            kinds: f.kind.unwrap_or_default(),
            search: search_term(f.search)?,
            starts_at: f.starts_at.map(Into::into).unwrap_or_default(),
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    CampaignOrderField::Name => CampaignOrder::Name,
                    CampaignOrderField::StartsAt => CampaignOrder::StartsAt,
                    CampaignOrderField::CreatedAt => CampaignOrder::CreatedAt,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (CampaignOrder::Name, false),
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
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            Campaign,
        ))
    }
}

#[derive(InputObject)]
pub struct CampaignInput {
    pub name: String,
    pub channel: Channel,
    pub kind: CampaignKind,
    /// Money in the deployment currency (default 0), at most 9,000,000 (so that every sum a metric makes stays exact at 100 million records).
    pub cost: Option<Decimal>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct CampaignsMutation;

#[Object]
impl CampaignsMutation {
    /// Creates a campaign (ADMIN, REVOPS, INTEGRATION).
    async fn create_campaign(&self, ctx: &Context<'_>, input: CampaignInput) -> Result<Campaign> {
        require(ctx, CAMPAIGN_WRITERS, "create campaigns")?;
        let currency = &settings(ctx)?.currency;
        let cost = money_to_units(input.cost.unwrap_or_default(), currency, "cost")?;
        let created = service::create(
            db(ctx)?,
            NewCampaign {
                name: input.name,
                channel: input.channel,
                kind: input.kind,
                cost,
                starts_at: input.starts_at,
                ends_at: input.ends_at,
            },
        )
        .await?;
        Ok(Campaign(created))
    }
}
