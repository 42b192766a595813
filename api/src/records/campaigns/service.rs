//! Campaigns: what marketing runs, and what touchpoints and leads point at.

use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{TimeRange, now, required_text, search_condition};
use crate::uow::{self, Work};
use chrono::{DateTime, Utc};
use entity::campaign::{self, Entity as Campaign};
use entity::enums::{CampaignKind, Channel};
use sea_orm::DatabaseConnection;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct CampaignFilter {
    pub ids: Vec<Uuid>,
    pub channels: Vec<Channel>,
    pub kinds: Vec<CampaignKind>,
    pub search: Option<String>,
    pub starts_at: TimeRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignOrder {
    Name,
    StartsAt,
    CreatedAt,
}

fn condition(f: &CampaignFilter) -> Condition {
    let mut c = Condition::all().add(f.starts_at.condition(campaign::Column::StartsAt));
    if !f.ids.is_empty() {
        c = c.add(campaign::Column::Id.is_in(f.ids.clone()));
    }
    if !f.channels.is_empty() {
        c = c.add(campaign::Column::Channel.is_in(f.channels.clone()));
    }
    if !f.kinds.is_empty() {
        c = c.add(campaign::Column::Kind.is_in(f.kinds.clone()));
    }
    if let Some(s) = &f.search {
        c = c.add(search_condition(&[campaign::Column::Name], s));
    }
    c
}

fn ordering(order: CampaignOrder, descending: bool) -> Ordering<Campaign> {
    let (name, column, key): (_, _, KeyFn<campaign::Model>) = match order {
        CampaignOrder::Name => ("name", campaign::Column::Name, |m| {
            (SortKey::Text(m.name.clone()), m.id)
        }),
        CampaignOrder::StartsAt => ("startsAt", campaign::Column::StartsAt, |m| {
            (SortKey::Time(m.starts_at), m.id)
        }),
        CampaignOrder::CreatedAt => ("createdAt", campaign::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: campaign::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &CampaignFilter,
    order: CampaignOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<campaign::Model>> {
    paginate(
        db,
        Campaign::find().filter(condition(filter)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, filter: &CampaignFilter) -> AppResult<u64> {
    Ok(Campaign::find().filter(condition(filter)).count(db).await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<campaign::Model> {
    Campaign::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("campaign"))
}

#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub channel: Channel,
    pub kind: CampaignKind,
    /// Storage units.
    pub cost: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// Creates a campaign (its own unit of work).
pub async fn create(db: &DatabaseConnection, input: NewCampaign) -> AppResult<campaign::Model> {
    let input = &input;
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, input.clone()).await?;
        w.commit(created).await
    })
    .await
}

/// Creates a campaign in the caller's unit of work.
pub async fn create_in(w: &mut Work, input: NewCampaign) -> AppResult<campaign::Model> {
    crate::records::common::check_summed_amount(input.cost, "cost")?;
    if let Some(end) = input.ends_at
        && end < input.starts_at
    {
        return Err(AppError::bad_input(
            "endsAt",
            "`endsAt` must not be before `startsAt`",
        ));
    }
    let am = campaign::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(required_text(&input.name, "name")?),
        channel: Set(input.channel),
        kind: Set(input.kind),
        cost: Set(input.cost),
        starts_at: Set(input.starts_at),
        ends_at: Set(input.ends_at),
        created_at: Set(now()),
    };
    w.insert(am).await
}
