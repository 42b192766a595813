use sea_orm::entity::prelude::*;

/// One target a goal had, from `valid_from` until its next version
/// (append-only: versions are never changed).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "goal_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub goal_id: Uuid,
    /// 1, 2, … per goal.
    pub version: i32,
    pub target: i64,
    pub valid_from: DateTimeUtc,
    /// The token subject of whoever made the change.
    pub changed_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
