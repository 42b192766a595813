//! `POST /webhooks/{provider}/{integrationId}` and `POST /webhooks/{provider}`.
//!
//! In order: an unknown provider or integration is 404, a disabled one 410,
//! an integration over its rate 429, the wrong content type 415, a missing
//! or wrong signature or a stale timestamp 401, a body that does not parse
//! 400 (with the reason), a body over the limit 413 (before all of these).
//! Nothing is stored for any of them. Accepted events are stored with their
//! jobs in one transaction, then the answer is 200 — duplicates included.

use super::service::{self, Stored};
use super::{Refusal, Request};
use crate::error::{AppError, ErrorCode};
use crate::http::AppState;
use crate::telemetry::prom;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use entity::enums::WebhookProvider;
use serde_json::json;

pub async fn receive_one(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive(state, provider, None, method, uri, headers, body).await
}

pub async fn receive_for(
    State(state): State<AppState>,
    Path((provider, integration)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive(
        state,
        provider,
        Some(integration),
        method,
        uri,
        headers,
        body,
    )
    .await
}

async fn receive(
    state: AppState,
    provider: String,
    integration: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = WebhookProvider::from_slug(&provider) else {
        return refuse(
            None,
            Refusal::NotFound(format!("no webhook provider `{provider}`")),
        );
    };
    let integration = match service::find_for_url(&state.db, provider, integration.as_deref()).await
    {
        Ok(i) => i,
        Err(AppError::NotFound(_)) => {
            return refuse(
                Some(provider),
                Refusal::NotFound(format!("no such {} integration", provider.slug())),
            );
        }
        Err(e) => return internal(provider, e),
    };
    if integration.disabled_at.is_some() {
        return refuse(Some(provider), Refusal::Gone);
    }
    if let Err(wait) = state.limiter.check_webhook(integration.id).await {
        let secs = crate::telemetry::limits::retry_after_secs(wait);
        state.telemetry.rate_limited("webhook");
        prom::webhook_request(provider.slug(), "429");
        let mut res = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("rate limit exceeded: retry in {secs} s"),
            ErrorCode::RateLimited,
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let now = crate::records::common::now();
    let settings: serde_json::Value =
        serde_json::from_str(&integration.settings).unwrap_or(serde_json::Value::Null);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let base = match &state.config.public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
        ),
    };
    let req = Request {
        method: method.as_str(),
        url: format!("{base}{path}"),
        headers: &headers,
        body: &body,
        now,
        secrets: service::accepted_secrets(
            &integration,
            state.webhook_key.as_deref(),
            &state.config,
            now,
        ),
        settings: &settings,
    };
    if req.secrets.is_empty() {
        tracing::warn!(integration = %integration.id, "a webhook integration has no usable secret (is `webhook_key` set?)");
        return refuse(
            Some(provider),
            Refusal::unauthorized("this integration has no secret it can check"),
        );
    }
    let events = match super::parse(provider, &req) {
        Ok(events) => events,
        Err(r) => return refuse(Some(provider), r),
    };
    match service::store(&state.db, &integration, &events).await {
        Ok(Stored {
            accepted,
            duplicates,
        }) => {
            prom::webhook_events(provider.slug(), "received", accepted as u64);
            prom::webhook_events(provider.slug(), "duplicate", duplicates as u64);
            prom::webhook_request(provider.slug(), "200");
            if provider == WebhookProvider::Salesforce {
                return super::salesforce::ack();
            }
            (
                StatusCode::OK,
                axum::Json(json!({ "accepted": accepted, "duplicates": duplicates })),
            )
                .into_response()
        }
        Err(e) => internal(provider, e),
    }
}

fn internal(provider: WebhookProvider, e: AppError) -> Response {
    tracing::error!(error = %e.detail(), provider = provider.slug(), "storing webhook events failed");
    prom::webhook_request(provider.slug(), "500");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
        ErrorCode::Internal,
    )
}

fn refuse(provider: Option<WebhookProvider>, r: Refusal) -> Response {
    let (status, message, code) = match r {
        Refusal::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m, ErrorCode::Unauthenticated),
        Refusal::BadRequest(m) => (StatusCode::BAD_REQUEST, m, ErrorCode::BadUserInput),
        Refusal::NotFound(m) => (StatusCode::NOT_FOUND, m, ErrorCode::NotFound),
        Refusal::Gone => (
            StatusCode::GONE,
            "this integration is disabled".to_owned(),
            ErrorCode::Forbidden,
        ),
        Refusal::UnsupportedMediaType(m) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            m,
            ErrorCode::BadUserInput,
        ),
    };
    let slug = provider.map(|p| p.slug()).unwrap_or("unknown");
    prom::webhook_request(slug, status.as_str());
    tracing::info!(provider = slug, status = status.as_u16(), reason = %message, "webhook refused");
    error(status, &message, code)
}

/// A JSON error like every other of the server's HTTP errors.
fn error(status: StatusCode, message: &str, code: ErrorCode) -> Response {
    (
        status,
        axum::Json(json!({
            "errors": [{ "message": message, "extensions": { "code": code.as_str() } }]
        })),
    )
        .into_response()
}
