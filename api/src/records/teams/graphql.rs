use super::service;
use crate::auth::{ADMINS, READERS};
use crate::graphql::context::{db, parse_id, require};
use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};
use entity::enums::TeamFunction;
use entity::team;

/// A team: marketing, sales development, sales, customer success or RevOps.
pub struct Team(pub team::Model);

#[Object]
impl Team {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn function(&self) -> TeamFunction {
        self.0.function
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The goals this team shares (not archived), by period start.
    async fn goals(&self, ctx: &Context<'_>) -> Result<Vec<crate::goals::graphql::Goal>> {
        let rows =
            crate::graphql::context::load_children::<crate::graphql::loaders::GoalsOfTeam, _>(
                ctx, self.0.id,
            )
            .await?;
        let goals: Vec<crate::goals::graphql::Goal> = rows
            .into_iter()
            .map(crate::goals::graphql::Goal::now)
            .collect();
        let refs: Vec<&crate::goals::graphql::Goal> = goals.iter().collect();
        crate::goals::graphql::prime_goals(ctx, ctx.look_ahead(), &refs).await?;
        Ok(goals)
    }
}

#[derive(Default)]
pub struct TeamsQuery;

#[Object]
impl TeamsQuery {
    /// One team by id.
    async fn team(&self, ctx: &Context<'_>, id: ID) -> Result<Team> {
        require(ctx, READERS, "read teams")?;
        Ok(Team(service::get(db(ctx)?, parse_id(&id, "id")?).await?))
    }

    /// Every team, by name.
    async fn teams(&self, ctx: &Context<'_>) -> Result<Vec<Team>> {
        require(ctx, READERS, "read teams")?;
        Ok(service::list(db(ctx)?)
            .await?
            .into_iter()
            .map(Team)
            .collect())
    }
}

#[derive(InputObject)]
pub struct CreateTeamInput {
    pub name: String,
    pub function: TeamFunction,
}

#[derive(Default)]
pub struct TeamsMutation;

#[Object]
impl TeamsMutation {
    /// Creates a team (ADMIN).
    async fn create_team(&self, ctx: &Context<'_>, input: CreateTeamInput) -> Result<Team> {
        require(ctx, ADMINS, "create teams")?;
        Ok(Team(
            service::create(db(ctx)?, &input.name, input.function).await?,
        ))
    }
}
