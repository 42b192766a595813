use crate::error::{AppError, AppResult};
use crate::records::common::{now, required_text};
use entity::enums::TeamFunction;
use entity::team::{self, Entity as Team};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, Set};
use uuid::Uuid;

pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<team::Model>> {
    Ok(Team::find()
        .order_by_asc(team::Column::Name)
        .all(db)
        .await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<team::Model> {
    Team::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("team"))
}

pub async fn create(
    db: &impl ConnectionTrait,
    name: &str,
    function: TeamFunction,
) -> AppResult<team::Model> {
    Ok(team::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(required_text(name, "name")?),
        function: Set(function),
        created_at: Set(now()),
    }
    .insert(db)
    .await?)
}
