use sea_orm::entity::prelude::*;

/// The variable pay of a team or of one user over a period, paid on the
/// goals linked to it. `variable_target` is money in 1/10,000 units.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "compensation_plans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub team_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub period_start: DateTimeUtc,
    pub period_end: DateTimeUtc,
    pub variable_target: i64,
    /// Set once the plan's weights summed to 1 and it was activated.
    pub activated_at: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
