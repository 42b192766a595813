use crate::enums::{OpportunityStage, SourcedBy};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "opportunities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub account_id: Uuid,
    /// The originating lead, if any.
    pub lead_id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub stage: OpportunityStage,
    /// Money units (see `money`).
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub expected_close_date: Option<Date>,
    pub closed_at: Option<DateTimeUtc>,
    pub lost_reason: Option<String>,
    pub sourced_by: SourcedBy,
    /// Subject of the caller that created the record.
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
