//! The HTTP surface: `/graphql` (GraphQL over HTTP, and GraphiQL for
//! browsers), GraphiQL's embedded assets, `/healthz` and `/readyz`.

mod graphiql;
mod graphql_http;
pub mod graphql_ws;
mod hostile;
mod ops;

pub use ops::metrics_router;

use crate::auth::JwtKeys;
use crate::config::Config;
use crate::db::{self, StatementCounter};
use crate::graphql::documents::DocumentCache;
use crate::graphql::persisted::PersistedQueries;
use crate::graphql::{LockstepSchema, build_schema};
use crate::jobs::RunnerHealth;
use crate::metrics::cache::MetricsCache;
use crate::telemetry::limits::Limiter;
use crate::telemetry::prom::Metrics;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Shared by every request; holds no state another replica would need.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    /// The metric statements' pool (PostgreSQL: a second, smaller pool that
    /// plans each statement for its period; SQLite: `db`).
    pub metrics_db: DatabaseConnection,
    pub schema: LockstepSchema,
    /// Parsed documents by query text (see `graphql::documents`).
    pub documents: DocumentCache,
    /// Automatic persisted queries: texts by their SHA-256.
    pub persisted: PersistedQueries,
    pub keys: Arc<JwtKeys>,
    pub config: Arc<Config>,
    /// SQL statements issued through `db` and `metrics_db` (tests and benchmarks read it).
    pub statements: Arc<StatementCounter>,
    /// Whole metric responses, keyed by role, request and data version.
    pub metrics_cache: MetricsCache,
    /// The liveness of this process's job runner, when it runs one.
    pub jobs: Option<Arc<RunnerHealth>>,
    /// Prometheus metrics of this application (`/metrics`).
    pub telemetry: Arc<Metrics>,
    /// Rate limits (token buckets of this process).
    pub limiter: Arc<Limiter>,
    /// The key webhook secrets are derived from (none: webhooks without a
    /// declared secret are refused).
    pub webhook_key: Option<Arc<crate::webhooks::secrets::WebhookKey>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Keys(#[from] crate::auth::jwt::KeyError),
    #[error("integrations in the configuration: {0}")]
    Integrations(String),
}

/// A built application: its router and its state.
pub struct App {
    pub router: Router,
    pub state: AppState,
}

impl App {
    /// Connects, migrates, and builds the router.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let statements = Arc::new(StatementCounter::default());
        let db = db::connect(config.database_url(), statements.clone()).await?;
        crate::setup::migrate(&db).await?;
        let metrics_db =
            db::connect_metrics(config.database_url(), &db, statements.clone()).await?;
        let keys = Arc::new(JwtKeys::from_config(&config)?);
        crate::webhooks::service::sync_declared(&db, &config.integrations)
            .await
            .map_err(|e| StartError::Integrations(e.detail()))?;
        let webhook_key = crate::webhooks::secrets::WebhookKey::from_config(&config).map(Arc::new);
        let documents = DocumentCache::new();
        let schema = build_schema(
            &config,
            Some(db.clone()),
            Some(metrics_db.clone()),
            webhook_key.clone(),
        );
        let limiter = Arc::new(Limiter::with_database(
            &config.rate_limits,
            &config.webhook_rate,
            Some(&db),
        ));
        let state = AppState {
            db,
            metrics_db,
            schema,
            documents,
            persisted: PersistedQueries::new(),
            keys,
            metrics_cache: MetricsCache::new(config.metrics_cache_secs),
            telemetry: Arc::new(Metrics::new()),
            limiter,
            webhook_key,
            config: Arc::new(config),
            statements,
            jobs: None,
        };
        Ok(App {
            router: router(state.clone()),
            state,
        })
    }

    /// Makes `/readyz` report this process's job runner.
    pub fn with_jobs(mut self, health: Arc<RunnerHealth>) -> App {
        self.state.jobs = Some(health);
        self.router = router(self.state.clone());
        self
    }

    /// Serves until `shutdown` resolves; in-flight requests finish first.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The peer address feeds the per-address rate limit.
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let mut app = Router::new()
        .route(
            "/graphql",
            get(graphql_ws::get_or_upgrade)
                .post(graphql_http::post_handler)
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    ops::address_limit,
                )),
        )
        .route("/graphiql/{file}", get(graphiql::asset))
        .route(
            "/webhooks/{provider}",
            axum::routing::post(crate::webhooks::http::receive_one),
        )
        .route(
            "/webhooks/{provider}/{integration}",
            axum::routing::post(crate::webhooks::http::receive_for),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if config.metrics_bind.is_none() {
        app = app.route("/metrics", get(ops::metrics_with_token));
    }
    let mut app = app
        .with_state(state.clone())
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(axum::middleware::map_response(too_large_as_json))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http().make_span_with(ops::RequestSpan))
        // A panic anywhere in a request is an INTERNAL answer, never a
        // dropped connection; inside the request-id and metrics layers, so
        // the answer carries its id and is counted.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_as_internal,
        ))
        .layer(middleware::from_fn_with_state(state, ops::observe))
        .layer(PropagateRequestIdLayer::new(
            crate::telemetry::request_id::HEADER,
        ))
        .layer(SetRequestIdLayer::new(
            crate::telemetry::request_id::HEADER,
            MakeRequestUuid,
        ))
        .layer(middleware::map_request(
            crate::telemetry::request_id::sanitize,
        ));
    if !config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = config
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([
                    axum::http::header::AUTHORIZATION,
                    axum::http::header::CONTENT_TYPE,
                    axum::http::header::ACCEPT,
                    crate::telemetry::request_id::HEADER,
                    axum::http::HeaderName::from_static("traceparent"),
                    axum::http::HeaderName::from_static("tracestate"),
                ])
                .expose_headers([
                    crate::telemetry::request_id::HEADER,
                    axum::http::header::RETRY_AFTER,
                ]),
        );
    }
    app
}

/// The process is up.
/// The answer to a request whose handling panicked: logged, then INTERNAL.
fn panic_as_internal(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "a request panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({
            "errors": [{ "message": "internal error", "extensions": { "code": "INTERNAL" } }]
        })),
    )
        .into_response()
}

/// A body over the limit answers 413 as a GraphQL-over-HTTP error with a
/// code, like every other refusal (the limit layer itself answers text).
async fn too_large_as_json(res: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_json = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return res;
    }
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(serde_json::json!({
            "errors": [{
                "message": "the request body is larger than this server accepts",
                "extensions": { "code": "BAD_USER_INPUT" }
            }]
        })),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The database answers, and this process's job runner (if it runs one)
/// is running: `{"jobs": "stopped"}` with 503 when it ended or stopped ticking.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let jobs_alive = state.jobs.as_ref().map(|h| h.is_alive());
    let db_ok = match state.db.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            false
        }
    };
    let mut body = serde_json::Map::new();
    let ready = db_ok && jobs_alive != Some(false);
    body.insert(
        "status".into(),
        (if ready { "ready" } else { "unavailable" }).into(),
    );
    if let Some(alive) = jobs_alive {
        if !alive {
            tracing::warn!("readiness check: the job runner is stopped");
        }
        body.insert(
            "jobs".into(),
            (if alive { "running" } else { "stopped" }).into(),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(serde_json::Value::Object(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_request_is_an_internal_json_answer() {
        async fn boom() -> &'static str {
            panic!("resolver bug")
        }
        let app = Router::new().route("/boom", get(boom)).layer(
            tower_http::catch_panic::CatchPanicLayer::custom(panic_as_internal),
        );
        let req = axum::http::Request::get("/boom")
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        let res = app.oneshot(req).await.unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        assert_eq!(body["errors"][0]["message"], "internal error");
    }
}
