use crate::enums::{HandoffReason, HandoffStatus};
use sea_orm::entity::prelude::*;

/// A lead or an opportunity passed from one team to another (exactly one of
/// `lead_id` and `opportunity_id` is set). At most one PENDING hand-off per
/// lead and per opportunity (partial unique indexes).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "handoffs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub lead_id: Option<Uuid>,
    pub opportunity_id: Option<Uuid>,
    pub from_team_id: Uuid,
    pub to_team_id: Uuid,
    /// The user who handed it off, when a user did.
    pub from_user_id: Option<Uuid>,
    /// The user it was handed to, when one was named.
    pub to_user_id: Option<Uuid>,
    /// The user who accepted or rejected it.
    pub responded_by_id: Option<Uuid>,
    /// The SLA policy of the route when it was handed off (its `due_at`).
    pub policy_id: Option<Uuid>,
    pub status: HandoffStatus,
    pub reason: Option<HandoffReason>,
    #[sea_orm(column_type = "Text", nullable)]
    pub note: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub response_note: Option<String>,
    pub handed_at: DateTimeUtc,
    /// `handed_at` + the policy's response hours (none without a policy).
    pub due_at: Option<DateTimeUtc>,
    pub responded_at: Option<DateTimeUtc>,
    /// When the expiry job marked it EXPIRED.
    pub expired_at: Option<DateTimeUtc>,
    /// Subject of the caller that created it.
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
