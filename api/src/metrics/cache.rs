//! A short-lived cache of whole metric responses, for BI dashboards that send
//! the same queries again and again.
//!
//! - Only operations that select nothing but `metrics` are cached, and only
//!   answers without errors.
//! - The key holds the caller's role, the exact request (query, operation
//!   name, variables) and the database's data version: a role never reads
//!   another role's entry.
//! - Every write raises the data version inside its own transaction
//!   (`bump`, called by the unit of work), so an entry computed before a
//!   write is never served after it, on this replica or any other: the
//!   cache keeps nothing another replica needs, it only saves work. The
//!   version is the sum of a few slots, each write raising one at random,
//!   so that concurrent writers do not queue on one row; a sum of counters
//!   that only grow changes with every write.
//! - Entries live `metrics_cache_secs` (0 disables the cache) and the cache
//!   holds at most `MAX_BYTES` of responses.

use crate::error::AppResult;
use async_graphql::parser::types::{OperationDefinition, OperationType, Selection};
use entity::enums::Role;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;

/// Upper bound of the cached response bodies, in bytes (approximate).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    role: Role,
    version: i64,
    request: String,
}

#[derive(Clone)]
pub struct MetricsCache {
    inner: Option<moka::sync::Cache<CacheKey, Arc<Json>>>,
}

impl MetricsCache {
    pub fn new(ttl_secs: u64) -> MetricsCache {
        let inner = (ttl_secs > 0).then(|| {
            moka::sync::Cache::builder()
                .time_to_live(Duration::from_secs(ttl_secs))
                .weigher(|k: &CacheKey, v: &Arc<Json>| {
                    let size = k.request.len() + v.to_string().len();
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .max_capacity(MAX_BYTES)
                .build()
        });
        MetricsCache { inner }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn key(
        role: Role,
        version: i64,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&serde_json::Map<String, Json>>,
    ) -> CacheKey {
        let request = serde_json::json!([query, operation_name, variables]).to_string();
        CacheKey {
            role,
            version,
            request,
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<Json>> {
        self.inner.as_ref()?.get(key)
    }

    pub fn insert(&self, key: CacheKey, body: Json) {
        if let Some(cache) = &self.inner {
            cache.insert(key, Arc::new(body));
        }
    }
}

/// Whether `op` is a query selecting only `metrics` (and `__typename`) at its root.
pub fn metrics_only(op: &OperationDefinition) -> bool {
    if op.ty != OperationType::Query {
        return false;
    }
    let items = &op.selection_set.node.items;
    !items.is_empty()
        && items.iter().all(|s| match &s.node {
            Selection::Field(f) => {
                let n = f.node.name.node.as_str();
                n == "metrics" || n == "__typename"
            }
            _ => false,
        })
        && items.iter().any(|s| match &s.node {
            Selection::Field(f) => f.node.name.node.as_str() == "metrics",
            _ => false,
        })
}

/// The current data version (see the module's documentation).
pub async fn data_version(db: &impl ConnectionTrait) -> AppResult<i64> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) AS version FROM data_version",
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64>("", "version")?,
        None => 0,
    })
}

/// Marks every cached metric stale, here and on every replica, when the
/// transaction it runs in commits (the unit of work calls it).
pub async fn bump(db: &impl ConnectionTrait) -> AppResult<()> {
    let backend = db.get_database_backend();
    let slot = rand::random_range(1..=i64::from(crate::uow::DATA_VERSION_SLOTS));
    db.execute_raw(Statement::from_string(
        backend,
        format!("UPDATE data_version SET version = version + 1 WHERE id = {slot}"),
    ))
    .await?;
    Ok(())
}
