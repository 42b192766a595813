//! The GraphQL schema: each domain contributes a query and a mutation root,
//! merged here. Resolvers check the caller's role, then call a service.

pub mod connection;
pub mod loaders;
pub mod me;

use crate::auth::Caller;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::records;
use async_graphql::{Context, EmptySubscription, MergedObject, Schema};
use entity::enums::Role;
use sea_orm::DatabaseConnection;

#[derive(MergedObject, Default)]
pub struct Query(
    me::MeQuery,
    records::teams::graphql::TeamsQuery,
    records::users::graphql::UsersQuery,
    records::accounts::graphql::AccountsQuery,
    records::campaigns::graphql::CampaignsQuery,
    records::leads::graphql::LeadsQuery,
    records::opportunities::graphql::OpportunitiesQuery,
    crate::metrics::graphql::MetricsQuery,
    crate::jobs::graphql::JobsQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    records::teams::graphql::TeamsMutation,
    records::users::graphql::UsersMutation,
    records::accounts::graphql::AccountsMutation,
    records::campaigns::graphql::CampaignsMutation,
    records::leads::graphql::LeadsMutation,
    records::opportunities::graphql::OpportunitiesMutation,
);

pub type LockstepSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema with the configured limits. Per-request data (the
/// caller, the loaders) is added by the HTTP handler.
pub fn build_schema(config: &Config, db: Option<DatabaseConnection>) -> LockstepSchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity)
        .limit_directives(50);
    // Spans for top-level fields, only when traces are exported: an
    // extension is called for every field, so none is installed otherwise.
    if config.otel_endpoint.is_some() || crate::telemetry::otel_enabled() {
        builder = builder.extension(crate::telemetry::spans::ResolverSpans);
    }
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(db) = db {
        builder = builder.data(db);
    }
    builder = builder.data(Settings {
        currency: config.currency.to_uppercase(),
    });
    builder.finish()
}

/// Deployment settings resolvers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub currency: String,
}

/// The SDL, as printed by `lockstep schema` and kept in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&Config::default(), None).sdl()
}

/// The caller of this request.
pub fn caller<'a>(ctx: &Context<'a>) -> AppResult<&'a Caller> {
    ctx.data_opt::<Caller>()
        .ok_or_else(|| AppError::Unauthenticated("authentication required".into()))
}

/// The caller, if they hold one of `roles`; FORBIDDEN otherwise.
pub fn require<'a>(ctx: &Context<'a>, roles: &[Role], action: &str) -> AppResult<&'a Caller> {
    let caller = caller(ctx)?;
    caller.require(roles, action)?;
    Ok(caller)
}

pub fn db<'a>(ctx: &Context<'a>) -> AppResult<&'a DatabaseConnection> {
    ctx.data_opt::<DatabaseConnection>()
        .ok_or_else(|| AppError::Internal("no database in context".into()))
}

pub fn settings<'a>(ctx: &Context<'a>) -> AppResult<&'a Settings> {
    ctx.data_opt::<Settings>()
        .ok_or_else(|| AppError::Internal("no settings in context".into()))
}

/// Parses an `ID!` argument as a UUID (BAD_USER_INPUT otherwise).
pub fn parse_id(id: &async_graphql::ID, field: &str) -> AppResult<uuid::Uuid> {
    uuid::Uuid::parse_str(id.as_str())
        .map_err(|_| AppError::bad_input(field, format!("`{field}` is not a valid id")))
}

pub fn parse_ids(ids: &[async_graphql::ID], field: &str) -> AppResult<Vec<uuid::Uuid>> {
    ids.iter().map(|id| parse_id(id, field)).collect()
}

/// Loads the children of one parent through a DataLoader.
pub async fn load_children<L, V>(ctx: &Context<'_>, key: L::Key) -> async_graphql::Result<Vec<V>>
where
    L: ChildLoader<V>,
{
    let loader = ctx
        .data_opt::<async_graphql::dataloader::DataLoader<L, async_graphql::dataloader::HashMapCache>>()
        .ok_or_else(|| AppError::Internal("loader missing".into()))?;
    Ok(loader.load_one(key).await?.unwrap_or_default())
}

/// A loader that answers a list of children per key.
pub trait ChildLoader<V>:
    async_graphql::dataloader::Loader<Self::Key, Value = Vec<V>, Error = loaders::LoadError>
{
    type Key: Send + Sync + std::hash::Hash + Eq + Clone + 'static;
}
impl ChildLoader<crate::records::external_ids::ExternalRef> for loaders::ExternalIdsOf {
    type Key = (entity::enums::RecordKind, uuid::Uuid);
}
impl<E: sea_orm::EntityTrait, T> ChildLoader<E::Model> for loaders::GroupedBy<E, T>
where
    loaders::GroupedBy<E, T>: async_graphql::dataloader::Loader<
            uuid::Uuid,
            Value = Vec<E::Model>,
            Error = loaders::LoadError,
        >,
{
    type Key = uuid::Uuid;
}
impl<E: sea_orm::EntityTrait, T> ChildLoader<E::Model> for loaders::CappedChildren<E, T>
where
    loaders::CappedChildren<E, T>: async_graphql::dataloader::Loader<
            loaders::Capped,
            Value = Vec<E::Model>,
            Error = loaders::LoadError,
        >,
{
    type Key = loaders::Capped;
}

/// Loads the keys of a whole page in one batch, so that each node's field
/// is then answered from the request's loader cache. Without it, the
/// DataLoader's batching window may split a large page into several batches.
pub async fn prime<L, K>(
    ctx: &Context<'_>,
    keys: impl IntoIterator<Item = K>,
) -> async_graphql::Result<()>
where
    L: async_graphql::dataloader::Loader<K, Error = loaders::LoadError>,
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
{
    let loader = ctx
        .data_opt::<async_graphql::dataloader::DataLoader<L, async_graphql::dataloader::HashMapCache>>()
        .ok_or_else(|| AppError::Internal("loader missing".into()))?;
    let keys: std::collections::HashSet<K> = keys.into_iter().collect();
    if !keys.is_empty() {
        loader.load_many(keys).await?;
    }
    Ok(())
}

/// Which fields a connection's nodes select (`nodes { … }` or `edges { node { … } }`).
pub fn node_selects(ctx: &Context<'_>, field: &str) -> bool {
    let look = ctx.look_ahead();
    look.field("nodes").field(field).exists()
        || look.field("edges").field("node").field(field).exists()
}

/// Loads one record through a DataLoader.
pub async fn load_one<L>(
    ctx: &Context<'_>,
    id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<L::Value>>
where
    L: async_graphql::dataloader::Loader<uuid::Uuid, Error = loaders::LoadError>,
{
    let Some(id) = id else { return Ok(None) };
    let loader = ctx
        .data_opt::<async_graphql::dataloader::DataLoader<L, async_graphql::dataloader::HashMapCache>>()
        .ok_or_else(|| AppError::Internal("loader missing".into()))?;
    Ok(loader.load_one(id).await?)
}
