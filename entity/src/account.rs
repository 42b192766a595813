use crate::enums::{AccountStatus, Segment};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// Lower-case, unique when present.
    #[sea_orm(unique)]
    pub domain: Option<String>,
    pub industry: Option<String>,
    pub segment: Segment,
    pub employees: Option<i32>,
    /// Money units (see `money`).
    pub annual_revenue: Option<i64>,
    pub is_target: bool,
    pub status: AccountStatus,
    pub became_customer_at: Option<DateTimeUtc>,
    pub churned_at: Option<DateTimeUtc>,
    pub owner_id: Option<Uuid>,
    /// Subject of the caller that created the record.
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
