use crate::enums::{Channel, LeadStage};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "leads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Lower-case, unique.
    #[sea_orm(unique)]
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub account_id: Option<Uuid>,
    pub source: Channel,
    pub campaign_id: Option<Uuid>,
    pub score: i32,
    pub stage: LeadStage,
    pub owner_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub converted_opportunity_id: Option<Uuid>,
    pub first_touch_at: Option<DateTimeUtc>,
    /// First time the lead reached MQL or a later main-path stage (kept by
    /// the leads service from the stage history; metrics read it).
    pub mql_at: Option<DateTimeUtc>,
    /// First time the lead reached SAL or later.
    pub sal_at: Option<DateTimeUtc>,
    /// First time the lead reached SQL or later.
    pub sql_at: Option<DateTimeUtc>,
    /// When the lead was converted.
    pub converted_at: Option<DateTimeUtc>,
    /// First time the lead entered INQUIRY itself (its creation, for a lead
    /// created at INQUIRY): the start of the funnel's first timed step.
    pub inquiry_at: Option<DateTimeUtc>,
    /// Subject of the caller that created the record.
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
