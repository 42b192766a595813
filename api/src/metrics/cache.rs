//! A short-lived cache of whole metric responses, for BI dashboards that send
//! the same queries again and again.
//!
//! - Only operations that select nothing but metric-like roots (`metrics`,
//!   goals, compensation statements and plans, the alignment report) are
//!   cached, and only answers without errors.
//! - The key holds who may see what (`Scope`: the role, and for roles whose
//!   view depends on who they are — a MEMBER sees only their own and their
//!   team's compensation, an INTEGRATION what it wrote — the user, subject
//!   and team), the exact request (query, operation name, variables) and
//!   the database's data version: no cached answer crosses from one caller
//!   to another who may see something different.
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
use axum::body::Bytes;
use entity::enums::Role;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value as Json;
use std::time::Duration;

/// Upper bound of the cached response bodies, in bytes (approximate).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    scope: Scope,
    version: i64,
    request: String,
}

/// Who may see what: callers with equal scopes see the same answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    role: Role,
    /// For MEMBER and INTEGRATION: the token subject, the user and the team.
    who: Option<(String, Option<uuid::Uuid>, Option<uuid::Uuid>)>,
}

impl Scope {
    pub fn of(caller: &crate::auth::Caller) -> Scope {
        let who = match caller.role {
            // They see every plan, or none, whoever they are.
            Role::Admin | Role::Revops | Role::Viewer => None,
            Role::Member | Role::Integration => {
                Some((caller.subject.clone(), caller.user_id(), caller.team_id))
            }
        };
        Scope {
            role: caller.role,
            who,
        }
    }
}

#[derive(Clone)]
pub struct MetricsCache {
    /// Whole responses, serialized (a hit is sent as it is, no copy).
    inner: Option<moka::sync::Cache<CacheKey, Bytes>>,
}

impl MetricsCache {
    pub fn new(ttl_secs: u64) -> MetricsCache {
        let inner = (ttl_secs > 0).then(|| {
            moka::sync::Cache::builder()
                .time_to_live(Duration::from_secs(ttl_secs))
                .weigher(|k: &CacheKey, v: &Bytes| {
                    let size = k.request.len() + v.len();
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
        scope: Scope,
        version: i64,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&serde_json::Map<String, Json>>,
    ) -> CacheKey {
        let request = serde_json::json!([query, operation_name, variables]).to_string();
        CacheKey {
            scope,
            version,
            request,
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.inner.as_ref()?.get(key)
    }

    pub fn insert(&self, key: CacheKey, body: Bytes) {
        if let Some(cache) = &self.inner {
            cache.insert(key, body);
        }
    }
}

/// The root fields whose answers may be cached: metrics, and what is read
/// through them (goals, compensation statements, the alignment report).
pub const CACHEABLE: &[&str] = &[
    "metrics",
    "goal",
    "goals",
    "compensationPlan",
    "compensationPlans",
    "compensationStatement",
    "alignment",
];

/// Whether `op` is a query selecting only cacheable roots (and `__typename`).
pub fn cacheable(op: &OperationDefinition) -> bool {
    if op.ty != OperationType::Query {
        return false;
    }
    let items = &op.selection_set.node.items;
    !items.is_empty()
        && items.iter().all(|s| match &s.node {
            Selection::Field(f) => {
                let n = f.node.name.node.as_str();
                CACHEABLE.contains(&n) || n == "__typename"
            }
            _ => false,
        })
        && items.iter().any(|s| match &s.node {
            Selection::Field(f) => CACHEABLE.contains(&f.node.name.node.as_str()),
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
