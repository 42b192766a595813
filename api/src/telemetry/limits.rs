//! Rate limits: token buckets (GCRA, `governor`) per subject, with a budget
//! per role, and per client address. The buckets live in this process: each
//! replica enforces the budgets on its own (see README, "Rate limits").

use crate::config::{Budget, RateLimits};
use entity::enums::Role;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
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
    webhook: Keyed<uuid::Uuid>,
    checks: AtomicU64,
    clock: DefaultClock,
}

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
    pub fn new(config: &RateLimits) -> Limiter {
        Self::with_webhooks(config, &Budget::default())
    }

    /// With a budget per webhook integration too.
    pub fn with_webhooks(config: &RateLimits, webhook: &Budget) -> Limiter {
        let on = config.enabled;
        Limiter {
            admin: keyed(on, &config.admin),
            revops: keyed(on, &config.revops),
            member: keyed(on, &config.member),
            viewer: keyed(on, &config.viewer),
            integration: keyed(on, &config.integration),
            address: keyed(on, &config.address),
            webhook: keyed(on, webhook),
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

    /// Takes a token from the subject's bucket; `Err(wait)` when it is empty.
    pub fn check_subject(&self, role: Role, subject: &str) -> Result<(), Duration> {
        let Some(limiter) = self.for_role(role) else {
            return Ok(());
        };
        self.housekeeping();
        // One bucket per (role, subject): a subject's tokens of two roles do not share.
        let key = format!("{}:{subject}", role.as_str());
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

    /// Takes a token from a webhook integration's bucket.
    pub fn check_webhook(&self, integration: uuid::Uuid) -> Result<(), Duration> {
        let Some(limiter) = &self.webhook else {
            return Ok(());
        };
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

/// Whole seconds to put in `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}
