use crate::error::{AppError, AppResult};
use crate::pagination::{KeyFn, Ordering, Page, PageRequest, SortKey, paginate};
use crate::records::common::{Patch, normalize_email, now, required_text, search_condition};
use crate::uow::{self, Work};
use entity::enums::Role;
use entity::user::{self, Entity as User};
use sea_orm::DatabaseConnection;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, Set,
};
use uuid::Uuid;

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub team_ids: Vec<Uuid>,
    pub roles: Vec<Role>,
    pub active: Option<bool>,
    pub search: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    Name,
    Email,
    CreatedAt,
}

fn condition(f: &UserFilter) -> Condition {
    let mut c = Condition::all();
    if !f.team_ids.is_empty() {
        c = c.add(user::Column::TeamId.is_in(f.team_ids.clone()));
    }
    if !f.roles.is_empty() {
        c = c.add(user::Column::Role.is_in(f.roles.clone()));
    }
    if let Some(active) = f.active {
        c = c.add(user::Column::Active.eq(active));
    }
    if let Some(s) = &f.search {
        c = c.add(search_condition(
            &[user::Column::Name, user::Column::Email],
            s,
        ));
    }
    c
}

fn ordering(order: UserOrder, descending: bool) -> Ordering<User> {
    let (name, column, key): (_, _, KeyFn<user::Model>) = match order {
        UserOrder::Name => ("name", user::Column::Name, |m| {
            (SortKey::Text(m.name.clone()), m.id)
        }),
        UserOrder::Email => ("email", user::Column::Email, |m| {
            (SortKey::Text(m.email.clone()), m.id)
        }),
        UserOrder::CreatedAt => ("createdAt", user::Column::CreatedAt, |m| {
            (SortKey::Time(m.created_at), m.id)
        }),
    };
    Ordering {
        name,
        column,
        id: user::Column::Id,
        descending,
        key,
    }
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &UserFilter,
    order: UserOrder,
    descending: bool,
    page: &PageRequest,
) -> AppResult<Page<user::Model>> {
    paginate(
        db,
        User::find().filter(condition(filter)),
        &ordering(order, descending),
        page,
    )
    .await
}

pub async fn count(db: &impl ConnectionTrait, filter: &UserFilter) -> AppResult<u64> {
    Ok(User::find().filter(condition(filter)).count(db).await?)
}

pub async fn get(db: &impl ConnectionTrait, id: Uuid) -> AppResult<user::Model> {
    User::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

/// The user a token subject names: by id, or by e-mail. Other subjects
/// (service accounts) name no user.
pub async fn find_by_subject(
    db: &impl ConnectionTrait,
    subject: &str,
) -> AppResult<Option<user::Model>> {
    if let Ok(id) = Uuid::parse_str(subject) {
        return Ok(User::find_by_id(id).one(db).await?);
    }
    if subject.contains('@') {
        return Ok(User::find()
            .filter(user::Column::Email.eq(subject.trim().to_lowercase()))
            .one(db)
            .await?);
    }
    Ok(None)
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub team_id: Option<Uuid>,
    pub role: Role,
}

/// Creates a user (its own unit of work).
pub async fn create(db: &DatabaseConnection, input: NewUser) -> AppResult<user::Model> {
    let input = &input;
    uow::run(db, |mut w| async move {
        let created = create_in(&mut w, input.clone()).await?;
        w.commit(created).await
    })
    .await
}

/// Creates a user in the caller's unit of work.
pub async fn create_in(w: &mut Work, input: NewUser) -> AppResult<user::Model> {
    if let Some(team) = input.team_id {
        crate::records::teams::service::get(w.db(), team).await?;
    }
    let at = now();
    let am = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(normalize_email(&input.email, "email")?),
        name: Set(required_text(&input.name, "name")?),
        team_id: Set(input.team_id),
        role: Set(input.role),
        active: Set(true),
        created_at: Set(at),
        updated_at: Set(at),
    };
    w.insert(am).await
}

/// The user with this e-mail (compared lower-case), if any.
pub async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> AppResult<Option<user::Model>> {
    Ok(User::find()
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(db)
        .await?)
}

#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<String>,
    pub name: Option<String>,
    pub team_id: Patch<Uuid>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

/// Updates a user (its own unit of work).
pub async fn update(db: &DatabaseConnection, id: Uuid, patch: UserPatch) -> AppResult<user::Model> {
    let patch = &patch;
    uow::run(db, |mut w| async move {
        let updated = update_in(&mut w, id, patch.clone()).await?;
        w.commit(updated).await
    })
    .await
}

/// Updates a user in the caller's unit of work.
pub async fn update_in(w: &mut Work, id: Uuid, patch: UserPatch) -> AppResult<user::Model> {
    let db = w.db();
    let mut am = get(db, id).await?.into_active_model();
    if let Some(email) = patch.email {
        am.email = Set(normalize_email(&email, "email")?);
    }
    if let Some(name) = patch.name {
        am.name = Set(required_text(&name, "name")?);
    }
    if let Some(team) = patch.team_id {
        if let Some(t) = team {
            crate::records::teams::service::get(db, t).await?;
        }
        am.team_id = Set(team);
    }
    if let Some(role) = patch.role {
        am.role = Set(role);
    }
    if let Some(active) = patch.active {
        am.active = Set(active);
    }
    am.updated_at = Set(now());
    w.update(am).await
}
