//! GraphQL over HTTP (the GraphQL-over-HTTP specification): media-type
//! negotiation, status codes for request errors, GET for queries only,
//! batching only when enabled, and the bearer token checked first.

use super::AppState;
use crate::auth::Caller;
use crate::error::{AppError, ErrorCode};
use crate::graphql::persisted::{self, Lookup};
use crate::metrics::cache::{self, MetricsCache};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
};
use async_graphql::{ErrorExtensionValues, Request, ServerError, Value, Variables};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Span;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";
const APPLICATION_JSON: &str = "application/json; charset=utf-8";

/// The media type the response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Media {
    GraphqlResponseJson,
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::GraphqlResponseJson => GRAPHQL_RESPONSE_JSON,
            Media::Json => APPLICATION_JSON,
        }
    }
}

/// One entry of an Accept header: type/subtype and its q.
fn accept_entries(headers: &HeaderMap) -> Vec<(String, f32)> {
    let Some(raw) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    raw.split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut q = 1.0f32;
            for p in pieces {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            Some((media, q))
        })
        .collect()
}

/// Picks the response media type; `None` when nothing acceptable (406).
pub(super) fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let entries = accept_entries(headers);
    if entries.is_empty() {
        return Some(Media::Json);
    }
    let q_of = |m: &str| {
        entries
            .iter()
            .filter(|(media, _)| media == m)
            .map(|(_, q)| *q)
            .fold(None, |acc: Option<f32>, q| {
                Some(acc.map_or(q, |a| a.max(q)))
            })
    };
    let grj = q_of("application/graphql-response+json").unwrap_or(0.0);
    let json = q_of("application/json").unwrap_or(0.0);
    let any = q_of("*/*").or(q_of("application/*")).unwrap_or(0.0);
    if grj > 0.0 && grj >= json {
        Some(Media::GraphqlResponseJson)
    } else if json > 0.0 {
        Some(Media::Json)
    } else if any > 0.0 {
        // Legacy clients send `*/*`: application/json is what they expect.
        Some(Media::Json)
    } else {
        None
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    accept_entries(headers)
        .iter()
        .any(|(m, q)| m == "text/html" && *q > 0.0)
}

pub(super) fn error_body(message: &str, code: ErrorCode) -> Json {
    json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] })
}

pub(super) fn respond(status: StatusCode, media: Media, body: &Json) -> Response {
    respond_bytes(status, media, to_bytes(body))
}

/// A body serialized as JSON (`{}` if it could not be, which a JSON value
/// or a GraphQL response never fails).
fn to_bytes(body: &impl serde::Serialize) -> Bytes {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{}"))
}

fn respond_bytes(status: StatusCode, media: Media, bytes: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.content_type()),
        )],
        bytes,
    )
        .into_response()
}

/// A request refused before execution (bad parameters, parse error).
fn request_error(media: Media, message: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        media,
        &error_body(message, ErrorCode::BadUserInput),
    )
}

fn unauthenticated(media: Media, message: &str) -> Response {
    let mut res = respond(
        StatusCode::UNAUTHORIZED,
        media,
        &error_body(message, ErrorCode::Unauthenticated),
    );
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// The parameters of one GraphQL request.
struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Option<Map<String, Json>>,
    extensions: Option<Map<String, Json>>,
}

fn params_from_json(value: Json) -> Result<Params, &'static str> {
    let Json::Object(mut obj) = value else {
        return Err("the request body must be a JSON object");
    };
    let query = match obj.remove("query") {
        Some(Json::String(q)) => Some(q),
        Some(_) => return Err("`query` must be a string"),
        None => None,
    };
    let operation_name = match obj.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(_) => return Err("`operationName` must be a string"),
    };
    let variables = match obj.remove("variables") {
        None | Some(Json::Null) => None,
        Some(Json::Object(m)) => Some(m),
        Some(_) => return Err("`variables` must be an object"),
    };
    let extensions = match obj.remove("extensions") {
        None | Some(Json::Null) => None,
        Some(Json::Object(m)) => Some(m),
        Some(_) => return Err("`extensions` must be an object"),
    };
    Ok(Params {
        query: query_or_persisted(query, extensions.as_ref())?,
        operation_name,
        variables,
        extensions,
    })
}

fn params_from_query_string(raw: &str) -> Result<Params, &'static str> {
    let mut query = None;
    let mut operation_name = None;
    let mut variables = None;
    let mut extensions = None;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "query" => query = Some(v.into_owned()),
            "operationName" if !v.is_empty() => operation_name = Some(v.into_owned()),
            "variables" if !v.is_empty() => match serde_json::from_str::<Json>(&v) {
                Ok(Json::Object(m)) => variables = Some(m),
                Ok(Json::Null) => {}
                _ => return Err("`variables` must be a JSON object"),
            },
            "extensions" if !v.is_empty() => match serde_json::from_str::<Json>(&v) {
                Ok(Json::Object(m)) => extensions = Some(m),
                Ok(Json::Null) => {}
                _ => return Err("`extensions` must be a JSON object"),
            },
            _ => {}
        }
    }
    Ok(Params {
        query: query_or_persisted(query, extensions.as_ref())?,
        operation_name,
        variables,
        extensions,
    })
}

/// The query text; only a persisted query's hash may stand in for it (the
/// empty text is then looked up, see `graphql::persisted`).
fn query_or_persisted(
    query: Option<String>,
    extensions: Option<&Map<String, Json>>,
) -> Result<String, &'static str> {
    match query {
        Some(q) => Ok(q),
        None if extensions.is_some_and(|e| e.contains_key("persistedQuery")) => Ok(String::new()),
        None => Err("`query` is required"),
    }
}

/// The operation `name` selects in `doc` (the only one when unnamed).
fn selected_operation<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(n)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        _ => return None,
    };
    Some(&op.node)
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, AppError> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::Unauthenticated(
                "authentication required: send Authorization: Bearer <token>".into(),
            )
        })?;
    authenticate_bearer(state, raw).await
}

/// The caller of an `Authorization` value (`Bearer <token>`).
pub(crate) async fn authenticate_bearer(state: &AppState, raw: &str) -> Result<Caller, AppError> {
    let (caller, _) = authenticate_bearer_until(state, raw).await?;
    Ok(caller)
}

/// The caller of an `Authorization` value and when its token expires (Unix seconds).
pub(crate) async fn authenticate_bearer_until(
    state: &AppState,
    raw: &str,
) -> Result<(Caller, u64), AppError> {
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AppError::Unauthenticated("the Authorization header must be `Bearer <token>`".into())
        })?;
    let claims = state.keys.verify(token)?;
    let exp = claims.exp;
    Ok((Caller::from_claims(&state.db, claims).await?, exp))
}

/// Who the logs name: the user's id, or a service account's subject; never an e-mail.
fn log_subject(caller: &Caller) -> String {
    match &caller.user {
        Some(user) => user.id.to_string(),
        None if caller.subject.contains('@') => "redacted".to_owned(),
        None => caller.subject.chars().take(128).collect(),
    }
}

fn type_label(op: Option<&OperationDefinition>) -> &'static str {
    match op.map(|o| o.ty) {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => "none",
    }
}

/// `OK`, or the first error's code.
fn outcome(errors: &[Json]) -> String {
    errors
        .first()
        .map(|e| {
            e["extensions"]["code"]
                .as_str()
                .unwrap_or(ErrorCode::Internal.as_str())
                .to_owned()
        })
        .unwrap_or_else(|| "OK".to_owned())
}

/// Counts a request refused before its document was read.
fn refused(state: &AppState, code: ErrorCode) {
    state.telemetry.graphql("none", "none", code.as_str(), 0.0);
    Span::current().record("code", code.as_str());
}

/// Names the caller in the request's span (and so in every log line after it).
fn record_caller(caller: &Caller) {
    let span = Span::current();
    span.record("subject", log_subject(caller));
    span.record("role", caller.role.as_str());
}

/// Outcome of one executed operation.
struct Executed {
    /// The response, serialized: the GraphQL response is written straight
    /// from the executor's values (no copy into `serde_json` values first),
    /// and a cached metric answer is these bytes, shared.
    body: Bytes,
    /// Refused before execution (parse or validation): no `data` entry.
    request_error: bool,
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    mut params: Params,
    get: bool,
    request_id: Option<&str>,
) -> Result<Executed, Response> {
    let started = Instant::now();
    let metrics = &state.telemetry;
    let op_label = metrics.operation_label(params.operation_name.as_deref());
    let span = Span::current();
    span.record("operation", op_label.as_str());
    // A request refused before execution: counted, and answered with its code.
    let refuse = |message: &str, code: ErrorCode| {
        metrics.graphql(
            &op_label,
            "none",
            code.as_str(),
            started.elapsed().as_secs_f64(),
        );
        span.record("code", code.as_str());
        Executed {
            body: to_bytes(&error_body(message, code)),
            request_error: true,
        }
    };
    // An automatic persisted query: the text of a known hash, or the text
    // with its hash to keep once it parses.
    let register = match state
        .persisted
        .lookup(&params.query, &mut params.extensions)
    {
        Ok(Lookup::Plain) => None,
        Ok(Lookup::Found(text)) => {
            params.query = text.to_string();
            None
        }
        Ok(Lookup::NotFound) => return Ok(refuse(persisted::NOT_FOUND, ErrorCode::NotFound)),
        Ok(Lookup::Register(hash)) => Some(hash),
        Err(message) => return Ok(refuse(&message, ErrorCode::BadUserInput)),
    };
    // Before anything recursive reads it (the parser, input coercion).
    if let Some(reason) = super::hostile::refuse(&params.query, params.variables.as_ref()) {
        return Ok(refuse(&reason, ErrorCode::BadUserInput));
    }
    // A document seen before comes from the cache; a new one is parsed here
    // and kept below once the executor accepted it.
    let (doc, fresh) = match state.documents.get(&params.query) {
        Some(doc) => (doc, false),
        None => match async_graphql::parser::parse_query(&params.query) {
            Ok(doc) => (Arc::new(doc), true),
            Err(e) => {
                let err = ServerError::new(e.to_string(), e.positions().next());
                let code = ErrorCode::BadUserInput.as_str();
                metrics.graphql(&op_label, "none", code, started.elapsed().as_secs_f64());
                span.record("code", code);
                return Ok(Executed {
                    body: to_bytes(&json!({ "errors": [error_json(err, request_id)] })),
                    request_error: true,
                });
            }
        },
    };
    if let Some(hash) = register {
        state.persisted.keep(hash, &params.query);
    }
    if let Some(reason) = super::hostile::enum_as_string(&doc) {
        return Ok(refuse(&reason, ErrorCode::BadUserInput));
    }
    if get
        && selected_operation(&doc, params.operation_name.as_deref())
            .is_some_and(|op| op.ty == OperationType::Mutation)
    {
        let code = ErrorCode::BadUserInput.as_str();
        metrics.graphql(&op_label, "mutation", code, started.elapsed().as_secs_f64());
        span.record("code", code);
        let mut res = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            Media::Json,
            &error_body("mutations must be sent with POST", ErrorCode::BadUserInput),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(res);
    }
    let operation_name = params.operation_name.clone();
    let operation = selected_operation(&doc, operation_name.as_deref());
    let ty = type_label(operation);
    span.record("operation_type", ty);
    // A dashboard's repeated metric query: served from the cache while no write intervened.
    let mut cache_key = None;
    if state.metrics_cache.enabled() && operation.is_some_and(cache::cacheable) {
        match cache::data_version(&state.db).await {
            Ok(version) => {
                let key = MetricsCache::key(
                    cache::Scope::of(caller),
                    version,
                    &params.query,
                    operation_name.as_deref(),
                    params.variables.as_ref(),
                );
                if let Some(body) = state.metrics_cache.get(&key) {
                    metrics.cache(true);
                    let elapsed = started.elapsed().as_secs_f64();
                    metrics.graphql(&op_label, ty, "OK", elapsed);
                    span.record("code", "OK");
                    tracing::info!(
                        operation = %op_label,
                        operation_type = ty,
                        subject = %log_subject(caller),
                        role = %caller.role.as_str(),
                        cache = "hit",
                        code = "OK",
                        duration_ms = elapsed * 1000.0,
                        "graphql"
                    );
                    return Ok(Executed {
                        body,
                        request_error: false,
                    });
                }
                metrics.cache(false);
                cache_key = Some(key);
            }
            Err(e) => {
                tracing::warn!(error = %e.detail(), "metric cache skipped: data version unreadable")
            }
        }
    }
    // The text is kept only for a new document (the cache's key).
    let new_text = fresh.then(|| params.query.clone());
    let mut request = Request::new(params.query);
    request.set_parsed_query((*doc).clone());
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = params.variables {
        request = request.variables(Variables::from_json(Json::Object(vars)));
    }
    if let Some(ext) = params.extensions {
        for (k, v) in ext {
            if let Ok(value) = Value::from_json(v) {
                request.extensions.insert(k, value);
            }
        }
    }
    request = request.data(caller.clone());
    crate::graphql::loaders::register(
        &mut request.data,
        &state.db,
        &state.metrics_db,
        Duration::from_micros(state.config.loader_delay_us),
    );
    let response = state.schema.execute(request).await;

    let request_error = response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    if let Some(text) = new_text
        && !request_error
    {
        state.documents.insert(&text, doc);
    }
    let error_count = response.errors.len();
    let errors: Vec<Json> = response
        .errors
        .into_iter()
        .map(|e| error_json(e, request_id))
        .collect();
    let code = outcome(&errors);
    let body = to_bytes(&ResponseBody {
        data: (!request_error).then_some(&response.data),
        errors: &errors,
        extensions: &response.extensions,
    });
    if let Some(key) = cache_key
        && error_count == 0
    {
        state.metrics_cache.insert(key, body.clone());
    }
    let elapsed = started.elapsed().as_secs_f64();
    metrics.graphql(&op_label, ty, &code, elapsed);
    span.record("code", code.as_str());
    tracing::info!(
        operation = %op_label,
        operation_type = ty,
        subject = %log_subject(caller),
        role = %caller.role.as_str(),
        errors = error_count,
        code = %code,
        duration_ms = elapsed * 1000.0,
        "graphql"
    );
    Ok(Executed {
        body,
        request_error,
    })
}

/// A GraphQL response as sent: `data` unless the request was refused before
/// execution, `errors` and `extensions` when there are any.
#[derive(serde::Serialize)]
struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "<[Json]>::is_empty")]
    errors: &'a [Json],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, Value>,
}

/// Serializes an error with its stable `extensions.code`; internal errors
/// are logged and replaced by a generic message carrying the request's id
/// (`extensions.requestId`), which finds the log line.
fn error_json(mut err: ServerError, request_id: Option<&str>) -> Json {
    // Lockstep's own errors carry their code already: `AppError` becomes a
    // GraphQL error through `ErrorExtensions`, where it is made.
    let has_code = err
        .extensions
        .as_ref()
        .is_some_and(|ext| ext.get("code").is_some());
    if !has_code {
        let code = if err.source.is_some() {
            // Some other failure reached a resolver's `?`: log it, mask it.
            tracing::error!(message = %err.message, path = ?err.path, "internal error");
            err.message = "internal error".into();
            ErrorCode::Internal
        } else {
            // Parse, validation, limit and argument-coercion errors: the client's input.
            ErrorCode::BadUserInput
        };
        err.extensions
            .get_or_insert_with(ErrorExtensionValues::default)
            .set("code", code.as_str());
    }
    let ext = err
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    let internal =
        matches!(ext.get("code"), Some(Value::String(c)) if c == ErrorCode::Internal.as_str());
    if internal && let Some(id) = request_id {
        ext.set("requestId", id);
    }
    serde_json::to_value(&err).unwrap_or_else(|_| error_body("internal error", ErrorCode::Internal))
}

fn status_for(media: Media, executed: &Executed) -> StatusCode {
    if executed.request_error && media == Media::GraphqlResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

pub async fn get_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let has_query =
        form_urlencoded::parse(raw.as_bytes()).any(|(k, _)| k == "query" || k == "extensions");
    if !has_query && wants_html(&headers) {
        return super::graphiql::page();
    }
    let Some(media) = negotiate(&headers) else {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    };
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => {
            refused(&state, ErrorCode::Unauthenticated);
            return unauthenticated(media, &e.message());
        }
    };
    record_caller(&caller);
    if let Err(wait) = state
        .limiter
        .check_subject(caller.role, &caller.subject)
        .await
    {
        return super::ops::rate_limited(&state, media, &caller.role.as_str(), wait);
    }
    let params = match params_from_query_string(&raw) {
        Ok(p) => p,
        Err(msg) => {
            refused(&state, ErrorCode::BadUserInput);
            return request_error(media, msg);
        }
    };
    let request_id = crate::telemetry::request_id::of(&headers);
    match execute(&state, &caller, params, true, request_id).await {
        Ok(executed) => respond_bytes(status_for(media, &executed), media, executed.body),
        Err(res) => res,
    }
}

pub async fn post_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(media) = negotiate(&headers) else {
        return StatusCode::NOT_ACCEPTABLE.into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some("application/json") {
        return respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            &error_body(
                "send the request as application/json",
                ErrorCode::BadUserInput,
            ),
        );
    }
    let caller = match authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => {
            refused(&state, ErrorCode::Unauthenticated);
            return unauthenticated(media, &e.message());
        }
    };
    record_caller(&caller);
    if let Err(wait) = state
        .limiter
        .check_subject(caller.role, &caller.subject)
        .await
    {
        return super::ops::rate_limited(&state, media, &caller.role.as_str(), wait);
    }
    let request_id = crate::telemetry::request_id::of(&headers);
    let value: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            refused(&state, ErrorCode::BadUserInput);
            return request_error(media, "the request body is not valid JSON");
        }
    };
    match value {
        Json::Array(items) => {
            let max = state.config.max_batch;
            if max == 0 {
                return request_error(media, "batched requests are disabled");
            }
            if items.is_empty() || items.len() > max {
                return request_error(
                    media,
                    "a batch must hold between 1 and max_batch operations",
                );
            }
            // The responses' bytes, in a JSON array.
            let mut out = Vec::with_capacity(2 + items.len() * 64);
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                let params = match params_from_json(item) {
                    Ok(p) => p,
                    Err(msg) => return request_error(media, msg),
                };
                match execute(&state, &caller, params, false, request_id).await {
                    Ok(executed) => {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&executed.body);
                    }
                    Err(res) => return res,
                }
            }
            out.push(b']');
            respond_bytes(StatusCode::OK, media, Bytes::from(out))
        }
        other => {
            let params = match params_from_json(other) {
                Ok(p) => p,
                Err(msg) => return request_error(media, msg),
            };
            match execute(&state, &caller, params, false, request_id).await {
                Ok(executed) => respond_bytes(status_for(media, &executed), media, executed.body),
                Err(res) => res,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiates_media_types() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(negotiate(&accept("application/json")), Some(Media::Json));
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            Some(Media::GraphqlResponseJson)
        );
        assert_eq!(negotiate(&accept("*/*")), Some(Media::Json));
        assert_eq!(negotiate(&accept("text/plain")), None);
    }
}
