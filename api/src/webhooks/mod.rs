//! CRM webhooks: HubSpot, Salesforce, Pipedrive and a signed generic
//! envelope, into the one funnel (see docs/webhooks.md).
//!
//! - [`http`]: `POST /webhooks/{provider}[/{integrationId}]` checks the
//!   integration, the signature (constant time) and the timestamp window,
//!   parses, and stores each event in the inbox (`webhook_events`) with a
//!   `webhooks.apply` job, in one transaction, before answering 2xx. No
//!   domain work happens on the request.
//! - [`apply`]: the job applies an event through the same services GraphQL
//!   calls, in one unit of work with marking it APPLIED, in order per CRM
//!   record; an event older than what the record holds is not applied.
//! - [`service`]: integrations (create, rotate, disable, declared ones) and
//!   the inbox for operators (lists, replay, health).
//! - one module per provider: how it signs, and what its events mean.

pub mod apply;
pub mod generic;
pub mod graphql;
pub mod http;
pub mod hubspot;
pub mod pipedrive;
pub mod salesforce;
pub mod secrets;
pub mod service;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use entity::enums::WebhookProvider;

/// The job kind that applies one inbox event.
pub const APPLY: &str = "webhooks.apply";

/// How far a signed timestamp may be from now.
pub const TIMESTAMP_WINDOW_SECS: i64 = 5 * 60;

/// Attempts an event gets before it is DEAD.
pub const MAX_ATTEMPTS: i32 = 5;

/// One event parsed from a request, ready for the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub event_id: String,
    pub event_type: String,
    pub record_key: String,
    pub occurred_at: DateTime<Utc>,
    /// The event as received (its own element of a batch), as text.
    pub body: String,
}

/// Why a request was refused; nothing is stored for any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: a missing or wrong signature or credentials, or a stale timestamp.
    Unauthorized(String),
    /// 400: the body does not parse (the reason says where).
    BadRequest(String),
    /// 404: no such provider or integration.
    NotFound(String),
    /// 410: the integration is disabled.
    Gone,
    /// 415: not the content type the provider sends.
    UnsupportedMediaType(String),
}

impl Refusal {
    pub fn bad(msg: impl Into<String>) -> Refusal {
        Refusal::BadRequest(msg.into())
    }
    pub fn unauthorized(msg: impl Into<String>) -> Refusal {
        Refusal::Unauthorized(msg.into())
    }
}

/// A request as a provider module sees it.
pub struct Request<'a> {
    pub method: &'a str,
    /// The URL the provider called, as HubSpot signs it (scheme, host, path, query).
    pub url: String,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The integration's accepted secrets: the current one, then a rotated-out
    /// one still in its grace period.
    pub secrets: Vec<String>,
    /// The integration's settings.
    pub settings: &'a serde_json::Value,
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// 415 unless the content type's essence is one of `accepted`.
    pub fn require_content_type(&self, accepted: &[&str]) -> Result<(), Refusal> {
        let ct = self.header("content-type").unwrap_or("");
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if accepted.iter().any(|a| *a == essence) {
            Ok(())
        } else {
            Err(Refusal::UnsupportedMediaType(format!(
                "content type must be {}, not `{}`",
                accepted.join(" or "),
                if ct.is_empty() { "(none)" } else { ct }
            )))
        }
    }

    /// 401 when `at` is more than five minutes from now.
    pub fn check_window(&self, at: DateTime<Utc>) -> Result<(), Refusal> {
        if (self.now - at).num_milliseconds().abs() > TIMESTAMP_WINDOW_SECS * 1000 {
            Err(Refusal::unauthorized(
                "the signed timestamp is more than 5 minutes from now",
            ))
        } else {
            Ok(())
        }
    }
}

/// Checks a request the provider's way and parses its events.
pub fn parse(provider: WebhookProvider, req: &Request<'_>) -> Result<Vec<Incoming>, Refusal> {
    match provider {
        WebhookProvider::Generic => generic::parse(req),
        WebhookProvider::Hubspot => hubspot::parse(req),
        WebhookProvider::Pipedrive => pipedrive::parse(req),
        WebhookProvider::Salesforce => salesforce::parse(req),
    }
}

/// Whether an applied event of type `newer` (later in CRM time, same record)
/// makes an event of type `older` stale: both set the same state of the
/// record, so applying the older one would roll it back.
pub fn supersedes(provider: WebhookProvider, newer: &str, older: &str) -> bool {
    match provider {
        WebhookProvider::Generic => {
            generic::is_state_event(newer) && generic::is_state_event(older)
        }
        WebhookProvider::Hubspot => hubspot::supersedes(newer, older),
        // Their events carry the record's whole state.
        WebhookProvider::Pipedrive | WebhookProvider::Salesforce => true,
    }
}

/// Bounded text for an id or a type (1–255 characters, no control characters).
pub fn check_token(value: &str, what: &str) -> Result<String, Refusal> {
    let v = value.trim();
    if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
        return Err(Refusal::bad(format!(
            "`{what}` must be 1 to 255 printable characters"
        )));
    }
    Ok(v.to_owned())
}

/// Milliseconds since the epoch as a time.
pub fn from_millis(ms: i64, what: &str) -> Result<DateTime<Utc>, Refusal> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Refusal::bad(format!("`{what}` is not a valid time")))
}
