use crate::error::{AppError, AppResult};
use crate::records::common::{now, required_text};
use crate::uow;
use entity::enums::TeamFunction;
use entity::team::{self, Entity as Team};
use sea_orm::DatabaseConnection;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, Set};
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

/// Creates a team (its own unit of work).
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    function: TeamFunction,
) -> AppResult<team::Model> {
    let am = team::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(required_text(name, "name")?),
        function: Set(function),
        created_at: Set(now()),
    };
    let am = &am;
    uow::run(db, |mut w| async move {
        let created = w.insert(am.clone()).await?;
        w.commit(created).await
    })
    .await
}
