use sea_orm::entity::prelude::*;

/// One state of a link, from `valid_from` until its next version
/// (append-only). `removed` marks the version that unlinked the goal.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "compensation_link_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub link_id: Uuid,
    pub plan_id: Uuid,
    pub goal_id: Uuid,
    /// 1, 2, … per link.
    pub version: i32,
    pub weight: i64,
    pub threshold: i64,
    pub accelerator: i64,
    pub cap: i64,
    pub removed: bool,
    pub valid_from: DateTimeUtc,
    /// The token subject of whoever made the change.
    pub changed_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
