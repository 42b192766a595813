use crate::enums::{Channel, GoalMetric, Segment};
use sea_orm::entity::prelude::*;

/// A goal shared by one or more teams: a metric over a half-open period,
/// with filters, against a target. `target` is the current one (every
/// target it ever had is in `goal_versions`), in 1/10,000 units: money for
/// REVENUE_WON and PIPELINE_CREATED, a count for NEW_CUSTOMERS,
/// QUALIFIED_LEADS_WON and MQLS, a fraction for WIN_RATE and RETENTION.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "goals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub metric: GoalMetric,
    pub target: i64,
    pub period_start: DateTimeUtc,
    pub period_end: DateTimeUtc,
    pub segment: Option<Segment>,
    pub source: Option<Channel>,
    pub campaign_id: Option<Uuid>,
    /// Filter: the team whose records count (not the teams that share it).
    pub team_id: Option<Uuid>,
    pub archived_at: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
