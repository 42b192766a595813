//! GraphQL subscriptions over WebSocket at `GET /graphql` (the
//! `graphql-transport-ws` protocol GraphiQL speaks, and the older
//! `graphql-ws`). The token is checked as for queries: from the
//! `connection_init` payload's `Authorization` (what GraphiQL sends from its
//! Headers tab), or else the upgrade request's `Authorization` header; a
//! connection without a valid one is closed, and a subscription ends when
//! the token it was opened with expires.

use super::AppState;
use super::graphql_http;
use async_graphql::Data;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, RawQuery, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

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
            GraphQLWebSocket::new(stream, schema, protocol)
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
                    let mut data = Data::default();
                    data.insert(caller);
                    data.insert(TokenExpiry(exp));
                    crate::graphql::loaders::register(
                        &mut data,
                        &state.db,
                        Duration::from_micros(state.config.loader_delay_us),
                    );
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}
