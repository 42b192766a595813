use sea_orm::entity::prelude::*;

/// One stage change of a lead or an opportunity (exactly one of the two ids is
/// set). `from_stage`/`to_stage` hold the stage names of that record's kind.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stage_changes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub lead_id: Option<Uuid>,
    pub opportunity_id: Option<Uuid>,
    pub from_stage: Option<String>,
    pub to_stage: String,
    pub at: DateTimeUtc,
    /// Subject of the caller that made the change.
    pub actor: String,
    pub actor_user_id: Option<Uuid>,
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
