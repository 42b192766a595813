//! GraphiQL, served from assets embedded in the binary (no CDN), under a
//! strict Content-Security-Policy.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../assets/graphiql/index.html");

/// Scripts and styles only from this server; GraphiQL's editor needs inline styles.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        INDEX,
    )
        .into_response()
}

fn lookup(file: &str) -> Option<(&'static [u8], &'static str)> {
    Some(match file {
        "react.production.min.js" => (
            include_bytes!("../../assets/graphiql/react.production.min.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../../assets/graphiql/react-dom.production.min.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        "graphiql.min.js" => (
            include_bytes!("../../assets/graphiql/graphiql.min.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        "graphiql.min.css" => (
            include_bytes!("../../assets/graphiql/graphiql.min.css").as_slice(),
            "text/css; charset=utf-8",
        ),
        "lockstep.css" => (
            include_bytes!("../../assets/graphiql/lockstep.css").as_slice(),
            "text/css; charset=utf-8",
        ),
        "init.js" => (
            include_bytes!("../../assets/graphiql/init.js").as_slice(),
            "text/javascript; charset=utf-8",
        ),
        _ => return None,
    })
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match lookup(&file) {
        Some((body, mime)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=86400"),
                ),
            ],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
