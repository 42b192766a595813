use crate::enums::RecordKind;
use sea_orm::entity::prelude::*;

/// Maps an external system's record id (`system`, `external_id`) to exactly
/// one Lockstep record of a kind.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "external_ids")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub record_kind: RecordKind,
    pub system: String,
    pub external_id: String,
    pub record_id: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
