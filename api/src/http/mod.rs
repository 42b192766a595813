//! The HTTP surface: `/graphql` (GraphQL over HTTP, and GraphiQL for
//! browsers), GraphiQL's embedded assets, `/healthz` and `/readyz`.

mod graphiql;
mod graphql_http;

use crate::auth::JwtKeys;
use crate::config::Config;
use crate::db::{self, StatementCounter};
use crate::graphql::{LockstepSchema, build_schema};
use crate::metrics::cache::MetricsCache;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Shared by every request; holds no state another replica would need.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub schema: LockstepSchema,
    pub keys: Arc<JwtKeys>,
    pub config: Arc<Config>,
    /// SQL statements issued through `db` (tests and benchmarks read it).
    pub statements: Arc<StatementCounter>,
    /// Whole metric responses, keyed by role, request and data version.
    pub metrics_cache: MetricsCache,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Keys(#[from] crate::auth::jwt::KeyError),
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
        let keys = Arc::new(JwtKeys::from_config(&config)?);
        let schema = build_schema(&config, Some(db.clone()));
        let state = AppState {
            db,
            schema,
            keys,
            metrics_cache: MetricsCache::new(config.metrics_cache_secs),
            config: Arc::new(config),
            statements,
        };
        Ok(App {
            router: router(state.clone()),
            state,
        })
    }

    /// Serves until `shutdown` resolves; in-flight requests finish first.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let mut app = Router::new()
        .route(
            "/graphql",
            get(graphql_http::get_handler).post(graphql_http::post_handler),
        )
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(TraceLayer::new_for_http());
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
                ]),
        );
    }
    app
}

/// The process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The database answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable" })),
            )
        }
    }
}
