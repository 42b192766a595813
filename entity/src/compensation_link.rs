use sea_orm::entity::prelude::*;

/// A goal linked to a plan, as it stands now (its history is in
/// `compensation_link_versions`). Weight, threshold, accelerator and cap
/// are in 1/10,000 units (a weight of 0.5 is 5,000).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "compensation_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub plan_id: Uuid,
    pub goal_id: Uuid,
    pub weight: i64,
    pub threshold: i64,
    pub accelerator: i64,
    pub cap: i64,
    /// Set when the goal was unlinked.
    pub removed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
