//! Rate limits: token buckets (GCRA) per subject, with a budget per role,
//! and per client address.
//!
//! Address buckets always live in this process (`governor`): they guard each
//! replica against floods before a token is even read. Subject buckets live
//! in this process too unless `rate_limits.shared` is on and the database is
//! PostgreSQL: then every replica takes from the same bucket, one statement
//! on the UNLOGGED `rate_limit_buckets` table per request (see README,
//! "Rate limits").

use crate::config::{Budget, RateLimits};
use entity::enums::Role;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

type Keyed<K> = Option<DefaultKeyedRateLimiter<K>>;

pub struct Limiter {
    admin: Keyed<String>,
    revops: Keyed<String>,
    member: Keyed<String>,
    viewer: Keyed<String>,
    integration: Keyed<String>,
    address: Keyed<IpAddr>,
    /// Budgets per role, for the shared buckets.
    budgets: RateLimits,
    /// Where the shared buckets are (PostgreSQL with `rate_limits.shared`).
    shared: Option<DatabaseConnection>,
    webhook: Keyed<uuid::Uuid>,
    /// The per-integration webhook budget, for the shared buckets.
    webhook_budget: Budget,
    checks: AtomicU64,
    clock: DefaultClock,
}

/// Longest subject kept in a shared bucket's key.
const MAX_KEY_SUBJECT_CHARS: usize = 250;

/// One GCRA step in one statement: a key's "theoretical arrival time" moves
/// on by one emission interval (`$2` µs) if that keeps it within the burst
/// window (`$3` µs) of now, the database's clock; otherwise nothing changes
/// and no row comes back. A key seen for the first time starts full.
const TAKE_SQL: &str = "INSERT INTO rate_limit_buckets AS b (key, tat_us) \
     SELECT $1, n.now_us + $2 FROM \
     (SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS now_us) n \
     ON CONFLICT (key) DO UPDATE SET tat_us = GREATEST(b.tat_us, EXCLUDED.tat_us - $2) + $2 \
     WHERE GREATEST(b.tat_us, EXCLUDED.tat_us - $2) + $2 - $3 <= EXCLUDED.tat_us - $2 \
     RETURNING tat_us";

/// How long until the refused key's next token (µs).
const WAIT_SQL: &str = "SELECT GREATEST(tat_us + $2 - $3 - \
     CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT), 0) AS wait_us \
     FROM rate_limit_buckets WHERE key = $1";

fn keyed<K: std::hash::Hash + Eq + Clone>(enabled: bool, budget: &Budget) -> Keyed<K> {
    if !enabled {
        return None;
    }
    let rate = NonZeroU32::new(budget.per_second)?;
    let burst = NonZeroU32::new(budget.burst).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Limiter {
    /// Buckets in this process only.
    pub fn new(config: &RateLimits) -> Limiter {
        Limiter::with_database(config, &Budget::default(), None)
    }

    /// With a budget per webhook integration, and with `rate_limits.shared`
    /// on and `db` PostgreSQL, subject buckets kept in `db`, shared by every
    /// replica.
    pub fn with_database(
        config: &RateLimits,
        webhook: &Budget,
        db: Option<&DatabaseConnection>,
    ) -> Limiter {
        let on = config.enabled;
        let shared = db
            .filter(|db| on && config.shared && db.get_database_backend() == DbBackend::Postgres)
            .cloned();
        Limiter {
            admin: keyed(on, &config.admin),
            revops: keyed(on, &config.revops),
            member: keyed(on, &config.member),
            viewer: keyed(on, &config.viewer),
            integration: keyed(on, &config.integration),
            address: keyed(on, &config.address),
            budgets: config.clone(),
            shared,
            webhook: keyed(on, webhook),
            webhook_budget: *webhook,
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    fn for_role(&self, role: Role) -> &Keyed<String> {
        match role {
            Role::Admin => &self.admin,
            Role::Revops => &self.revops,
            Role::Member => &self.member,
            Role::Viewer => &self.viewer,
            Role::Integration => &self.integration,
        }
    }

    /// Whether subject buckets are shared by the replicas (in the database).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    fn budget(&self, role: Role) -> Budget {
        match role {
            Role::Admin => self.budgets.admin,
            Role::Revops => self.budgets.revops,
            Role::Member => self.budgets.member,
            Role::Viewer => self.budgets.viewer,
            Role::Integration => self.budgets.integration,
        }
    }

    /// Takes a token from the subject's bucket; `Err(wait)` when it is empty.
    pub async fn check_subject(&self, role: Role, subject: &str) -> Result<(), Duration> {
        let Some(limiter) = self.for_role(role) else {
            return Ok(());
        };
        // One bucket per (role, subject): a subject's tokens of two roles do not share.
        let subject: String = subject.chars().take(MAX_KEY_SUBJECT_CHARS).collect();
        let key = format!("{}:{subject}", role.as_str());
        if let Some(db) = &self.shared {
            match take_shared(db, &format!("subject:{key}"), self.budget(role)).await {
                Ok(outcome) => return outcome,
                // The shared bucket is out of reach: this replica's own
                // bucket still holds the subject to its budget here.
                Err(e) => {
                    tracing::warn!(error = %e, "shared rate limit unavailable; using this replica's bucket")
                }
            }
        }
        self.housekeeping();
        limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Takes a token from the client address's bucket.
    pub fn check_address(&self, addr: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.address else {
            return Ok(());
        };
        self.housekeeping();
        limiter
            .check_key(&addr)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Takes a token from a webhook integration's bucket: the shared one
    /// (every replica's requests count) when subject buckets are shared,
    /// else, or when the database does not answer, this replica's.
    pub async fn check_webhook(&self, integration: uuid::Uuid) -> Result<(), Duration> {
        let Some(limiter) = &self.webhook else {
            return Ok(());
        };
        if let Some(db) = &self.shared {
            match take_shared(db, &format!("webhook:{integration}"), self.webhook_budget).await {
                Ok(outcome) => return outcome,
                Err(e) => {
                    tracing::warn!(error = %e, "shared webhook rate limit unavailable; using this replica's bucket")
                }
            }
        }
        self.housekeeping();
        limiter
            .check_key(&integration)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Every few thousand checks, forgets buckets that are full again (so
    /// memory follows the active clients, not every client ever seen).
    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 != 4095 {
            return;
        }
        for limiter in [
            &self.admin,
            &self.revops,
            &self.member,
            &self.viewer,
            &self.integration,
        ]
        .into_iter()
        .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(l) = &self.address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.webhook {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Takes one token of `budget` from the shared bucket `key`: `Ok(Ok(()))`
/// taken, `Ok(Err(wait))` empty, `Err` when the database did not answer.
pub async fn take_shared(
    db: &DatabaseConnection,
    key: &str,
    budget: Budget,
) -> Result<Result<(), Duration>, sea_orm::DbErr> {
    let Some(rate) = NonZeroU32::new(budget.per_second) else {
        return Ok(Ok(()));
    };
    let burst = budget.burst.max(1);
    let emission_us = (1_000_000 / u64::from(rate.get())).max(1) as i64;
    let window_us = emission_us.saturating_mul(i64::from(burst));
    let values = || -> Vec<sea_orm::Value> {
        vec![key.to_owned().into(), emission_us.into(), window_us.into()]
    };
    let taken = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            TAKE_SQL,
            values(),
        ))
        .await?;
    if taken.is_some() {
        return Ok(Ok(()));
    }
    let wait_us: i64 = match db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            WAIT_SQL,
            values(),
        ))
        .await?
    {
        Some(row) => row.try_get("", "wait_us")?,
        None => emission_us,
    };
    Ok(Err(Duration::from_micros(wait_us.max(1) as u64)))
}

/// Forgets shared buckets that are full again (their arrival time has
/// passed: a missing key starts full too). Returns how many.
pub async fn prune_shared(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(0);
    }
    let res = db
        .execute_unprepared(
            "DELETE FROM rate_limit_buckets WHERE tat_us < \
             CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
        )
        .await?;
    Ok(res.rows_affected())
}

/// Whole seconds to put in `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}
