//! `me`: who the caller is.

use super::context::{caller, load_one};
use super::loaders::TeamById;
use crate::records::{teams::graphql::Team, users::graphql::User};
use async_graphql::{Context, Object, Result, SimpleObject};
use entity::enums::Role;

#[derive(Default)]
pub struct MeQuery;

/// The authenticated caller: a user, or a service account with no user record.
#[derive(SimpleObject)]
pub struct Me {
    /// The token's subject.
    pub subject: String,
    pub role: Role,
    /// The user the token names, if any.
    pub user: Option<User>,
    /// The caller's team, if any.
    pub team: Option<Team>,
}

#[Object]
impl MeQuery {
    /// The caller of this request. Every valid token may ask.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let caller = caller(ctx)?;
        let team = load_one::<TeamById>(ctx, caller.team_id).await?;
        Ok(Me {
            subject: caller.subject.clone(),
            role: caller.role,
            user: caller.user.clone().map(User),
            team: team.map(Team),
        })
    }
}
