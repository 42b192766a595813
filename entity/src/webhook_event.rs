use crate::enums::{WebhookProvider, WebhookStatus};
use sea_orm::entity::prelude::*;

/// One event a CRM pushed, kept in the inbox from the moment it was
/// accepted: unique per (integration, provider event id).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub integration_id: Uuid,
    pub provider: WebhookProvider,
    /// The provider's id of the event (unique per integration).
    pub event_id: String,
    /// The provider's event type, e.g. `lead.upserted`, `contact.propertyChange`.
    pub event_type: String,
    /// The CRM record it is about (`lead:<id>`, `opportunity:<id>`…): events
    /// of one record are applied in `occurred_at` order.
    pub record_key: String,
    /// When the change happened in the CRM.
    pub occurred_at: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// The event as received (its own part of a batch).
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub status: WebhookStatus,
    pub attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// What applying it did (`applied`, `superseded`…).
    pub outcome: Option<String>,
    pub applied_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
