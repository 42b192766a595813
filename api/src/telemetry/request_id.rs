//! `x-request-id`: taken from the request when it is a sane token, made
//! (a UUID) otherwise, and sent back on every response.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a client.
pub const MAX_LEN: usize = 128;

/// A client's id is kept only when it is short and made of token characters
/// (no spaces, quotes or control characters that could forge a log line).
pub fn is_valid(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

/// Drops a client's `x-request-id` that is not a sane token (or is sent
/// more than once), so `SetRequestIdLayer` makes a fresh one.
pub async fn sanitize(mut req: Request) -> Request {
    let values = req.headers().get_all(HEADER);
    let mut iter = values.iter();
    let keep = match (iter.next(), iter.next()) {
        (Some(v), None) => is_valid(v),
        (None, _) => true,
        _ => false,
    };
    if !keep {
        req.headers_mut().remove(HEADER);
    }
    req
}

/// The request's id (set by the layers before any handler runs).
pub fn of(headers: &HeaderMap) -> Option<&str> {
    headers.get(HEADER).and_then(|v| v.to_str().ok())
}
