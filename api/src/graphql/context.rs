//! What every resolver reaches for: the caller and its role check, the
//! database, the deployment settings, ids, and the request's DataLoaders.
//! A leaf of the GraphQL layer: it knows no record's resolvers.

use super::loaders;
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use async_graphql::Context;
use entity::enums::Role;
use sea_orm::DatabaseConnection;

/// Deployment settings resolvers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub currency: String,
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

/// The pool of the metric statements (`crate::db::connect_metrics`), in the
/// schema's data beside the main pool.
#[derive(Clone)]
pub struct MetricsDb(pub DatabaseConnection);

/// The connection metric statements run on: the metrics pool, or the main
/// one when the schema has none.
pub fn metrics_db<'a>(ctx: &Context<'a>) -> AppResult<&'a DatabaseConnection> {
    match ctx.data_opt::<MetricsDb>() {
        Some(m) => Ok(&m.0),
        None => db(ctx),
    }
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

/// The request's DataLoader of `L` (every request registers them all).
fn loader<'a, L: Send + Sync + 'static>(
    ctx: &Context<'a>,
) -> AppResult<&'a async_graphql::dataloader::DataLoader<L, async_graphql::dataloader::HashMapCache>>
{
    ctx.data_opt()
        .ok_or_else(|| AppError::Internal("loader missing".into()))
}

/// Loads the children of one parent through a DataLoader.
pub async fn load_children<L, V>(ctx: &Context<'_>, key: L::Key) -> async_graphql::Result<Vec<V>>
where
    L: ChildLoader<V>,
{
    let loader = loader::<L>(ctx)?;
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
impl ChildLoader<entity::goal::Model> for loaders::GoalsOfTeam {
    type Key = uuid::Uuid;
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
///
/// The batch runs here, in the resolver's own task, and its rows are fed to
/// the loader's cache: going through `load_many` instead would wait out the
/// loader's batching delay and hop to a spawned task for keys that are all
/// known already. Keys with no row are not cached (a node asking for one
/// loads it, and finds nothing, as before).
pub async fn prime<L, K>(
    ctx: &Context<'_>,
    keys: impl IntoIterator<Item = K>,
) -> async_graphql::Result<()>
where
    L: async_graphql::dataloader::Loader<K, Error = loaders::LoadError>,
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
{
    let loader = loader::<L>(ctx)?;
    let keys: Vec<K> = keys
        .into_iter()
        .collect::<std::collections::HashSet<K>>()
        .into_iter()
        .collect();
    if !keys.is_empty() {
        let found = loader.loader().load(&keys).await?;
        loader.feed_many(found).await;
    }
    Ok(())
}

/// `prime` for a loader of children: a key with no row is cached as an
/// empty list (most leads have no touchpoints, say), so no node goes back
/// to the loader for it.
pub async fn prime_children<L, V>(
    ctx: &Context<'_>,
    keys: impl IntoIterator<Item = L::Key>,
) -> async_graphql::Result<()>
where
    L: ChildLoader<V>,
    V: Send + Sync + Clone + 'static,
{
    let loader = loader::<L>(ctx)?;
    let keys: Vec<L::Key> = keys
        .into_iter()
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    if !keys.is_empty() {
        let mut found = loader.loader().load(&keys).await?;
        loader
            .feed_many(keys.into_iter().map(|k| {
                let rows = found.remove(&k).unwrap_or_default();
                (k, rows)
            }))
            .await;
    }
    Ok(())
}

/// Puts one parent's children, read by other means, in its loader's cache.
pub async fn feed_children<L, V>(ctx: &Context<'_>, key: L::Key, rows: Vec<V>) -> AppResult<()>
where
    L: ChildLoader<V>,
    V: Send + Sync + Clone + 'static,
{
    let loader = loader::<L>(ctx)?;
    loader.feed_one(key, rows).await;
    Ok(())
}

/// A page's primes, run at once (each batch on its own pooled connection):
/// a page's relations then cost one round trip, not one each.
#[derive(Default)]
pub struct Primes<'a>(Vec<futures_util::future::BoxFuture<'a, async_graphql::Result<()>>>);

impl<'a> Primes<'a> {
    /// Adds a `prime` (or any batch) to run.
    pub fn add(
        &mut self,
        batch: impl std::future::Future<Output = async_graphql::Result<()>> + Send + 'a,
    ) {
        self.0.push(Box::pin(batch));
    }

    /// Runs them all; the first error wins.
    pub async fn run(self) -> async_graphql::Result<()> {
        futures_util::future::try_join_all(self.0).await.map(|_| ())
    }

    /// Runs them beside `lookup` (one record read by id, whose children the
    /// selection asks for), and gives what `lookup` found.
    pub async fn beside<T>(
        self,
        lookup: impl std::future::Future<Output = AppResult<T>> + Send,
    ) -> async_graphql::Result<T> {
        let lookup = async { lookup.await.map_err(async_graphql::Error::from) };
        let (found, ()) = futures_util::future::try_join(lookup, self.run()).await?;
        Ok(found)
    }
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
    let loader = loader::<L>(ctx)?;
    Ok(loader.load_one(id).await?)
}

/// The caller as an `Actor`, acting for the user `actorUserId` or
/// `actorExternalId` names, when one is given.
pub async fn acting(
    ctx: &Context<'_>,
    caller: &Caller,
    actor_user_id: Option<&async_graphql::ID>,
    actor_external_id: Option<&crate::graphql::inputs::ExternalIdInput>,
) -> AppResult<crate::records::stage_changes::Actor> {
    let user = actor_user(ctx, caller, actor_user_id, actor_external_id).await?;
    crate::records::stage_changes::Actor::from(caller)
        .acting_as(db(ctx)?, user)
        .await
}

/// The user `actorUserId` or `actorExternalId` names (not both; see
/// `Actor::named_user`).
pub async fn actor_user(
    ctx: &Context<'_>,
    caller: &Caller,
    actor_user_id: Option<&async_graphql::ID>,
    actor_external_id: Option<&crate::graphql::inputs::ExternalIdInput>,
) -> AppResult<Option<uuid::Uuid>> {
    let user = actor_user_id
        .map(|u| parse_id(u, "actorUserId"))
        .transpose()?;
    let external = actor_external_id
        .map(|e| crate::records::external_ids::ExternalRef::normalized(&e.system, &e.id))
        .transpose()?;
    crate::records::stage_changes::Actor::from(caller)
        .named_user(db(ctx)?, user, external.as_ref())
        .await
}

/// `actorUserId` set to the user `actorUserId` or `actorExternalId` names
/// (the input keeps one id for the services).
pub async fn resolve_actor(
    ctx: &Context<'_>,
    caller: &Caller,
    actor_user_id: &mut Option<async_graphql::ID>,
    actor_external_id: &mut Option<crate::graphql::inputs::ExternalIdInput>,
) -> AppResult<()> {
    if actor_external_id.is_none() {
        return Ok(());
    }
    let user = actor_user(
        ctx,
        caller,
        actor_user_id.as_ref(),
        actor_external_id.as_ref(),
    )
    .await?;
    *actor_user_id = user.map(|u| async_graphql::ID(u.to_string()));
    *actor_external_id = None;
    Ok(())
}
