//! Typed, layered configuration: defaults, then an optional `lockstep.toml`,
//! then `LOCKSTEP_*` environment variables (and `DATABASE_URL` as a fallback
//! for the database).

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`; unset means the embedded SQLite file.
    pub database_url: Option<String>,
    /// Address to listen on.
    pub bind: String,
    /// Seed a fresh embedded database with demo data.
    pub demo: bool,
    /// HS256 secret. Unset on the embedded default: generated into `secret_file`.
    pub jwt_secret: Option<Secret>,
    /// PEM public key (RSA, EC P-256 or Ed25519) for tokens issued by an SSO.
    pub jwt_public_key: Option<String>,
    /// The `kid` of `jwt_public_key`, when the SSO names its keys.
    pub jwt_key_id: Option<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Where a generated HS256 secret is kept (mode 0600).
    pub secret_file: PathBuf,
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    /// Largest accepted batch of operations in one request; 0 refuses batches.
    pub max_batch: usize,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    /// ISO 4217 code of the deployment's one currency.
    pub currency: String,
    /// Origins allowed by CORS (empty: same-origin only).
    pub cors_origins: Vec<String>,
    /// Metric cache window in seconds (0 disables the cache).
    pub metrics_cache_secs: u64,
    /// How long a DataLoader waits to batch keys, in microseconds.
    pub loader_delay_us: u64,
    /// Run the job runner inside `lockstep serve` (`lockstep worker` always runs it).
    pub jobs: bool,
    /// Jobs one runner runs at once.
    pub jobs_concurrency: usize,
    /// A claimed job's lease, in seconds: renewed while it runs; past it
    /// (the runner died), another runner takes the job.
    pub jobs_lease_secs: u64,
    /// How often an idle runner looks for due jobs, in milliseconds.
    pub jobs_poll_ms: u64,
    /// On shutdown, how long running jobs may take before they are released.
    pub jobs_grace_secs: u64,
    /// A bearer token that may scrape `/metrics` on the GraphQL port (besides ADMIN tokens).
    pub metrics_token: Option<Secret>,
    /// Serve `/metrics` on this address instead of the GraphQL port (no token asked there).
    pub metrics_bind: Option<String>,
    /// `human` (the default) or `json`: one JSON object per log line.
    pub log_format: String,
    /// OTLP/HTTP endpoint for traces (`OTEL_EXPORTER_OTLP_ENDPOINT` also sets it).
    pub otel_endpoint: Option<String>,
    /// `service.name` of the exported traces (`OTEL_SERVICE_NAME` also sets it).
    pub otel_service_name: String,
    /// Token buckets per subject (a budget per role) and per client address.
    pub rate_limits: RateLimits,
    /// The key webhook secrets are derived from (at least 32 characters).
    /// Unset: derived from `jwt_secret` (or the generated secret file).
    pub webhook_key: Option<Secret>,
    /// The address CRMs reach this server at, for `webhookUrl`
    /// (default `http://<bind>`).
    pub public_url: Option<String>,
    /// Webhook requests per second (and burst) each integration may send;
    /// `per_second = 0` means unlimited.
    pub webhook_rate: Budget,
    /// How long a rotated-out webhook secret keeps working, in seconds.
    pub webhook_secret_grace_secs: u64,
    /// Integrations declared here instead of through `createIntegration`
    /// (kept in step with this list at every start).
    pub integrations: Vec<DeclaredIntegration>,
}

/// An integration declared in `lockstep.toml`:
///
/// ```toml
/// [[integrations]]
/// id = "0193…"          # a UUID of your choice, stable across starts
/// name = "hubspot-prod"
/// provider = "HUBSPOT"
/// secret = "…"          # the provider's app secret, signing key or password
/// settings = { portalId = 62515 }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeclaredIntegration {
    pub id: uuid::Uuid,
    pub name: String,
    pub provider: String,
    pub secret: Secret,
    #[serde(default)]
    pub settings: serde_json::Value,
    #[serde(default)]
    pub disabled: bool,
}

/// A token bucket: `per_second` tokens flow in, at most `burst` are kept.
/// `per_second = 0` means unlimited.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Budget {
    pub per_second: u32,
    pub burst: u32,
}

impl Budget {
    pub const fn new(per_second: u32, burst: u32) -> Budget {
        Budget { per_second, burst }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RateLimits {
    pub enabled: bool,
    /// Subject budgets shared by every replica (kept in PostgreSQL; one
    /// statement per request). Off: each replica has its own buckets.
    pub shared: bool,
    /// Per client address, before authentication.
    pub address: Budget,
    /// Header naming the client address when Lockstep runs behind a proxy
    /// (e.g. `x-forwarded-for`: its last entry is used); unset: the peer address.
    pub client_ip_header: Option<String>,
    pub admin: Budget,
    pub revops: Budget,
    pub member: Budget,
    /// BI tools' budget.
    pub viewer: Budget,
    /// CRMs' and importers' budget.
    pub integration: Budget,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            shared: false,
            address: Budget::new(100, 400),
            client_ip_header: None,
            admin: Budget::new(50, 200),
            revops: Budget::new(20, 100),
            member: Budget::new(20, 100),
            viewer: Budget::new(10, 60),
            integration: Budget::new(50, 500),
        }
    }
}

impl Config {
    /// Sets a random HS256 secret when no JWT key is configured (for
    /// processes that verify no token, such as `lockstep worker`).
    pub fn ensure_some_jwt_key(&mut self) {
        if self.jwt_secret.is_none() && self.jwt_public_key.is_none() {
            self.jwt_secret = Some(Secret(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )));
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            bind: "127.0.0.1:8080".to_owned(),
            demo: true,
            jwt_secret: None,
            jwt_public_key: None,
            jwt_key_id: None,
            jwt_issuer: "lockstep".to_owned(),
            jwt_audience: "lockstep-api".to_owned(),
            secret_file: PathBuf::from("lockstep.secret"),
            introspection: true,
            max_depth: 15,
            max_complexity: 5_000,
            max_batch: 0,
            request_timeout_secs: 30,
            body_limit_bytes: 1024 * 1024,
            currency: "USD".to_owned(),
            cors_origins: Vec::new(),
            metrics_cache_secs: 30,
            loader_delay_us: 1_000,
            jobs: true,
            jobs_concurrency: 4,
            jobs_lease_secs: 30,
            jobs_poll_ms: 1_000,
            jobs_grace_secs: 20,
            metrics_token: None,
            metrics_bind: None,
            log_format: "human".to_owned(),
            otel_endpoint: None,
            otel_service_name: "lockstep".to_owned(),
            rate_limits: RateLimits::default(),
            webhook_key: None,
            public_url: None,
            webhook_rate: Budget::new(100, 1_000),
            webhook_secret_grace_secs: 24 * 3600,
            integrations: Vec::new(),
        }
    }
}

pub const DEFAULT_SQLITE_URL: &str = "sqlite://lockstep.db?mode=rwc";

impl Config {
    /// Defaults → `lockstep.toml` (if present) → `LOCKSTEP_*` → `DATABASE_URL`.
    pub fn load() -> Result<Config, Box<figment::Error>> {
        let mut config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file("lockstep.toml"))
            // Nested keys: `LOCKSTEP_RATE_LIMITS__VIEWER__PER_SECOND=5`.
            .merge(Env::prefixed("LOCKSTEP_").split("__"))
            .extract()
            .map_err(Box::new)?;
        if config.database_url.is_none() {
            config.database_url = std::env::var("DATABASE_URL").ok();
        }
        if config.otel_endpoint.is_none() {
            config.otel_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty());
        }
        if let Ok(name) = std::env::var("OTEL_SERVICE_NAME")
            && !name.is_empty()
        {
            config.otel_service_name = name;
        }
        Ok(config)
    }

    pub fn database_url(&self) -> &str {
        self.database_url.as_deref().unwrap_or(DEFAULT_SQLITE_URL)
    }

    /// True when running on the embedded default database.
    pub fn is_embedded_default(&self) -> bool {
        self.database_url.is_none()
    }
}
