//! GraphQL subscriptions over WebSocket at `GET /graphql` (the
//! `graphql-transport-ws` protocol GraphiQL speaks, and the older
//! `graphql-ws`). The token is checked as for queries: from the
//! `connection_init` payload's `Authorization` (what GraphiQL sends from its
//! Headers tab), or else the upgrade request's `Authorization` header; a
//! connection without a valid one is closed, and a subscription ends when
//! the token it was opened with expires.
//!
//! Rate limits and `/metrics` reach WebSocket traffic too: opening a
//! connection takes a token from the caller's subject budget, and so does
//! every operation started on it; each operation counts in
//! `lockstep_graphql_requests_total` with type `subscription`.

use super::AppState;
use super::graphql_http;
use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, RawQuery, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

use crate::error::AppError;
use crate::telemetry::limits::{Limiter, retry_after_secs};
use crate::telemetry::prom::Metrics;
use async_graphql::{ServerError, ServerResult};
use entity::enums::Role;

/// What a WebSocket connection's operations are limited and counted by.
#[derive(Clone)]
pub struct WsSession {
    limiter: Arc<Limiter>,
    telemetry: Arc<Metrics>,
    role: Role,
    subject: String,
}

impl WsSession {
    /// Takes a token from the caller's budget; the GraphQL error otherwise.
    async fn take(&self, operation: &str) -> ServerResult<()> {
        match self.limiter.check_subject(self.role, &self.subject).await {
            Ok(()) => Ok(()),
            Err(wait) => {
                let secs = retry_after_secs(wait);
                self.telemetry.rate_limited(&self.role.as_str());
                self.telemetry
                    .graphql_count(operation, "subscription", "RATE_LIMITED");
                tracing::info!(budget = %self.role.as_str(), retry_after_secs = secs, "rate limited (WebSocket)");
                let e = async_graphql::Error::from(AppError::RateLimited {
                    retry_after_secs: secs,
                });
                Err(ServerError {
                    message: e.message,
                    source: None,
                    locations: Vec::new(),
                    path: Vec::new(),
                    extensions: e.extensions,
                })
            }
        }
    }
}

/// The schema as the WebSocket sees it: every operation started on a
/// connection first takes a token from the caller's budget (the connection's
/// [`WsSession`], set once `connection_init` is accepted) and is counted.
/// Outside the schema, so requests over HTTP pay nothing for it.
#[derive(Clone)]
struct WsExecutor {
    schema: crate::graphql::LockstepSchema,
    session: Arc<std::sync::OnceLock<WsSession>>,
}

impl async_graphql::Executor for WsExecutor {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        self.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> futures_util::stream::BoxStream<'static, async_graphql::Response> {
        use futures_util::StreamExt;
        let schema = self.schema.clone();
        let session = self.session.get().cloned();
        let started = async move {
            if let Some(session) = &session {
                let operation = session
                    .telemetry
                    .operation_label(request.operation_name.as_deref());
                if let Err(e) = session.take(&operation).await {
                    return futures_util::stream::once(async move {
                        async_graphql::Response::from_errors(vec![e])
                    })
                    .boxed();
                }
                session
                    .telemetry
                    .graphql_count(&operation, "subscription", "OK");
            }
            async_graphql::Executor::execute_stream(&schema, request, session_data)
        };
        futures_util::stream::once(started).flatten().boxed()
    }
}

/// When the token a WebSocket connection was opened with expires (Unix
/// seconds): its subscriptions end then, with an UNAUTHENTICATED error.
#[derive(Debug, Clone, Copy)]
pub struct TokenExpiry(pub u64);

/// `GET /graphql`: a WebSocket upgrade for subscriptions, else a query or GraphiQL.
pub async fn get_or_upgrade(State(state): State<AppState>, req: Request) -> Response {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (mut parts, _body) = req.into_parts();
    if !is_upgrade {
        let raw = parts.uri.query().map(str::to_owned);
        return graphql_http::get_handler(State(state), parts.headers, RawQuery(raw)).await;
    }
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let header_auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let schema = state.schema.clone();
    // A message is held to the same limit as a request body.
    let limit = state.config.body_limit_bytes;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            let slot = Arc::new(std::sync::OnceLock::new());
            let executor = WsExecutor {
                schema,
                session: slot.clone(),
            };
            GraphQLWebSocket::new(stream, executor, protocol)
                .on_connection_init(move |payload| async move {
                    let from_payload = ["Authorization", "authorization"]
                        .iter()
                        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))
                        .map(str::to_owned);
                    let Some(raw) = from_payload.or(header_auth) else {
                        return Err(async_graphql::Error::new(
                            "authentication required: send {\"Authorization\": \"Bearer <token>\"} in connection_init",
                        ));
                    };
                    let (caller, exp) = graphql_http::authenticate_bearer_until(&state, &raw)
                        .await
                        .map_err(async_graphql::Error::from)?;
                    let session = WsSession {
                        limiter: state.limiter.clone(),
                        telemetry: state.telemetry.clone(),
                        role: caller.role,
                        subject: caller.subject.clone(),
                    };
                    session
                        .take("none")
                        .await
                        .map_err(|e| async_graphql::Error::new(e.message))?;
                    let _ = slot.set(session);
                    let mut data = Data::default();
                    data.insert(caller);
                    data.insert(TokenExpiry(exp));
                    crate::graphql::loaders::register(
                        &mut data,
                        &state.db,
                        &state.metrics_db,
                        Duration::from_micros(state.config.loader_delay_us),
                    );
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}
