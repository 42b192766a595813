//! What operators see: the request span, HTTP metrics, `/metrics`, the
//! per-address rate limit and the 429 answer.

use super::AppState;
use super::graphql_http::{Media, error_body, negotiate, respond};
use crate::error::ErrorCode;
use crate::telemetry::{self, request_id};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use entity::enums::Role;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::Span;
use tracing::field::Empty;

/// The span every request runs in: its id, and (filled in by the GraphQL
/// handler) the operation, the caller and the outcome. With OpenTelemetry on,
/// an incoming W3C `traceparent` becomes its parent.
#[derive(Clone, Copy)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> Span {
        let id = request_id::of(req.headers()).unwrap_or("-");
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %id,
            operation = Empty,
            operation_type = Empty,
            subject = Empty,
            role = Empty,
            code = Empty,
            otel.name = Empty,
            otel.kind = Empty,
        );
        if telemetry::otel_enabled() {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let _ = span.set_parent(telemetry::logging::extract_parent(req.headers()));
            span.record("otel.kind", "server");
            span.record(
                "otel.name",
                format!("{} {}", req.method(), route_of(req.uri().path())),
            );
        }
        span
    }
}

/// A bounded route label.
fn route_of(path: &str) -> &'static str {
    match path {
        "/graphql" => "/graphql",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        p if p.starts_with("/graphiql/") => "/graphiql",
        p if p.starts_with("/webhooks/") => "/webhooks",
        _ => "other",
    }
}

/// Decrements the in-flight gauge however the request ends (a client that
/// hangs up drops the future).
struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts every request by route and status, times it, keeps the in-flight
/// gauge and counts the SQL statements a `/graphql` request issues.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_of(req.uri().path());
    let started = Instant::now();
    let metrics = state.telemetry.clone();
    metrics.in_flight.inc();
    let _guard = InFlight(&metrics.in_flight);
    let (res, statements) = telemetry::count_statements(next.run(req)).await;
    if route == "/graphql" {
        metrics.statements_in_request(statements);
    }
    metrics.http(
        route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// The client's address: the peer, or the configured proxy header's last entry.
fn client_ip(state: &AppState, req: &Request) -> Option<IpAddr> {
    if let Some(name) = &state.config.rate_limits.client_ip_header
        && let Some(value) = req
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
        && let Some(ip) = value
            .rsplit(',')
            .next()
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
}

/// The per-address budget, checked before the token is.
pub async fn address_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(ip) = client_ip(&state, &req)
        && let Err(wait) = state.limiter.check_address(ip)
    {
        let media = negotiate(req.headers()).unwrap_or(Media::Json);
        return rate_limited(&state, media, "address", wait);
    }
    next.run(req).await
}

/// 429 with `Retry-After` and a GraphQL error coded `RATE_LIMITED`.
pub(super) fn rate_limited(
    state: &AppState,
    media: Media,
    budget: &str,
    wait: Duration,
) -> Response {
    let secs = telemetry::limits::retry_after_secs(wait);
    state.telemetry.rate_limited(budget);
    state
        .telemetry
        .graphql("none", "none", ErrorCode::RateLimited.as_str(), 0.0);
    Span::current().record("code", ErrorCode::RateLimited.as_str());
    tracing::info!(budget, retry_after_secs = secs, "rate limited");
    let mut body = error_body(
        &format!("rate limit exceeded: retry in {secs} s"),
        ErrorCode::RateLimited,
    );
    body["errors"][0]["extensions"]["retryAfter"] = json!(secs);
    let mut res = respond(StatusCode::TOO_MANY_REQUESTS, media, &body);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// `/metrics` on the GraphQL port: the scrape token or an ADMIN token.
pub async fn metrics_with_token(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match scrape_allowed(&state, &headers) {
        Ok(()) => render(&state).await,
        Err(status) => {
            let mut res =
                (status, "a scrape token or an ADMIN token is required\n").into_response();
            if status == StatusCode::UNAUTHORIZED {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            res
        }
    }
}

fn scrape_allowed(state: &AppState, headers: &HeaderMap) -> Result<(), StatusCode> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|raw| {
            raw.strip_prefix("Bearer ")
                .or_else(|| raw.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    if let Some(expected) = &state.config.metrics_token {
        use subtle::ConstantTimeEq;
        if !expected.0.is_empty() && bool::from(expected.0.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(());
        }
    }
    // An ADMIN token (service accounts included: no user lookup is needed for ADMIN).
    match state.keys.verify(token) {
        Ok(claims) if claims.role == Role::Admin => Ok(()),
        Ok(_) => Err(StatusCode::FORBIDDEN),
        Err(_) => Err(StatusCode::UNAUTHORIZED),
    }
}

async fn render(state: &AppState) -> Response {
    let text = state.telemetry.render(&state.db, &state.statements).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn metrics_open(State(state): State<AppState>) -> Response {
    render(&state).await
}

/// `/metrics` alone, without a token, for `metrics_bind` (a separate
/// address that only the scraper's network should reach).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_open))
        .with_state(state)
}
