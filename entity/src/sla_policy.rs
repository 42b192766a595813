use crate::enums::SlaPeriod;
use sea_orm::entity::prelude::*;

/// The service-level agreement of one route fromTeam → toTeam: how many
/// qualified leads the sender delivers per period, how fast the receiver
/// answers each hand-off, and which leads qualify. At most one active
/// (not archived) policy per route.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sla_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub from_team_id: Uuid,
    pub to_team_id: Uuid,
    pub period: SlaPeriod,
    /// MQLs per period.
    pub qualified_lead_target: i32,
    /// Hours the receiving team has to accept or reject a hand-off.
    pub response_hours: i32,
    /// Qualification: the lead's score at least this.
    pub min_score: Option<i32>,
    /// Qualification: the lead's account in one of these segments
    /// (comma-separated names; null for any).
    pub segments: Option<String>,
    /// Qualification: the lead's source one of these (comma-separated; null for any).
    pub sources: Option<String>,
    /// Hand a qualifying lead off to `to_team_id` at once.
    pub auto_hand_off: bool,
    pub archived_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
