use super::service::{self, NewUser, UserFilter, UserOrder, UserPatch};
use crate::auth::{ADMINS, READERS};
use crate::error::AppError;
use crate::graphql::connection::{Conn, connection};
use crate::graphql::context::{caller, db, load_one, parse_id, parse_ids, require};
use crate::graphql::inputs::OrderDirection;
use crate::graphql::loaders::TeamById;
use crate::pagination::PageRequest;
use crate::records::common::search_term;
use crate::records::teams::graphql::Team;
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, Result};
use chrono::{DateTime, Utc};
use entity::enums::Role;
use entity::user;

/// A person who works in Lockstep.
pub struct User(pub user::Model);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Masked (null) for VIEWER and INTEGRATION callers.
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let c = caller(ctx)?;
        Ok(c.sees_personal_data("").then_some(self.0.email.as_str()))
    }
    /// Masked (null) for VIEWER and INTEGRATION callers.
    async fn name(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let c = caller(ctx)?;
        Ok(c.sees_personal_data("").then_some(self.0.name.as_str()))
    }
    async fn role(&self) -> Role {
        self.0.role
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn team(&self, ctx: &Context<'_>) -> Result<Option<Team>> {
        Ok(load_one::<TeamById>(ctx, self.0.team_id).await?.map(Team))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject, Default)]
pub struct UserFilterInput {
    pub team_id: Option<Vec<ID>>,
    pub role: Option<Vec<Role>>,
    pub active: Option<bool>,
    /// Case-insensitive substring of name or e-mail.
    pub search: Option<String>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum UserOrderField {
    Name,
    Email,
    CreatedAt,
}

#[derive(InputObject)]
pub struct UserOrderInput {
    pub field: UserOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<User> {
        require(ctx, READERS, "read users")?;
        Ok(User(service::get(db(ctx)?, parse_id(&id, "id")?).await?))
    }

    #[graphql(complexity = "PageRequest::size_hint(first, last) * child_complexity + 1")]
    #[allow(clippy::too_many_arguments)]
    async fn users(
        &self,
        ctx: &Context<'_>,
        filter: Option<UserFilterInput>,
        order_by: Option<UserOrderInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Conn<User>> {
        let caller = require(ctx, READERS, "read users")?;
        let f = filter.unwrap_or_default();
        // A user's searchable fields are its name and e-mail: a caller that
        // cannot read them must not find users by them.
        if f.search.is_some() && !caller.sees_personal_data("") {
            return Err(AppError::forbidden(
                "searching users by name or e-mail needs a role that reads them",
            )
            .into());
        }
        let filter = UserFilter {
            team_ids: parse_ids(&f.team_id.unwrap_or_default(), "teamId")?,
            roles: f.role.unwrap_or_default(),
            active: f.active,
            search: search_term(f.search)?,
        };
        let (order, desc) = match order_by {
            Some(o) => (
                match o.field {
                    UserOrderField::Name => UserOrder::Name,
                    UserOrderField::Email => UserOrder::Email,
                    UserOrderField::CreatedAt => UserOrder::CreatedAt,
                },
                o.direction == OrderDirection::Desc,
            ),
            None => (UserOrder::Name, false),
        };
        let page_req = PageRequest {
            first,
            after,
            last,
            before,
        };
        let db = db(ctx)?.clone();
        let page = service::list(&db, &filter, order, desc, &page_req).await?;
        Ok(connection(
            page,
            move || {
                let (db, filter) = (db.clone(), filter.clone());
                Box::pin(async move { service::count(&db, &filter).await })
            },
            User,
        ))
    }
}

#[derive(InputObject)]
pub struct CreateUserInput {
    pub email: String,
    pub name: String,
    pub team_id: Option<ID>,
    pub role: Role,
}

#[derive(InputObject)]
pub struct UpdateUserInput {
    pub email: Option<String>,
    pub name: Option<String>,
    /// null removes the user from their team.
    pub team_id: MaybeUndefined<ID>,
    pub role: Option<Role>,
    /// false deactivates the user, which ends their tokens.
    pub active: Option<bool>,
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Creates a user (ADMIN).
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<User> {
        require(ctx, ADMINS, "create users")?;
        let team_id = input
            .team_id
            .as_ref()
            .map(|t| parse_id(t, "teamId"))
            .transpose()?;
        let created = service::create(
            db(ctx)?,
            NewUser {
                email: input.email,
                name: input.name,
                team_id,
                role: input.role,
            },
        )
        .await?;
        Ok(User(created))
    }

    /// Updates a user (ADMIN).
    async fn update_user(&self, ctx: &Context<'_>, id: ID, input: UpdateUserInput) -> Result<User> {
        require(ctx, ADMINS, "update users")?;
        let patch = UserPatch {
            email: input.email,
            name: input.name,
            team_id: crate::graphql::inputs::patch_id(input.team_id, "teamId")?,
            role: input.role,
            active: input.active,
        };
        Ok(User(
            service::update(db(ctx)?, parse_id(&id, "id")?, patch).await?,
        ))
    }
}
