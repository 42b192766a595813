//! The process's tracing subscriber: human-readable lines (the default) or
//! one JSON object per line, and OpenTelemetry export over OTLP/HTTP when
//! an endpoint is configured.

use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::RwLock;
use std::time::SystemTime;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl LogFormat {
    /// `json` (any case) is JSON; anything else is the human format.
    pub fn parse(s: &str) -> LogFormat {
        if s.trim().eq_ignore_ascii_case("json") {
            LogFormat::Json
        } else {
            LogFormat::Human
        }
    }
}

/// The tracer SQL statement spans are made with (the provider installed last).
static TRACER: RwLock<Option<opentelemetry_sdk::trace::SdkTracer>> = RwLock::new(None);

/// The JSON layer: one object per line with `timestamp`, `level`, the
/// event's fields at the top level and `spans` (outermost first: the
/// `request` span carries `request_id`, `operation`, `subject`, `role`).
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .with_writer(writer)
}

/// The OpenTelemetry layer for `provider` (also makes SQL statement spans
/// and `traceparent` extraction active in this process).
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let tracer = provider.tracer("lockstep");
    if let Ok(mut slot) = TRACER.write() {
        *slot = Some(tracer.clone());
    }
    super::set_otel_enabled(true);
    tracing_opentelemetry::layer().with_tracer(tracer)
}

/// Keeps the tracer provider; dropping it flushes the spans not yet sent.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("OpenTelemetry: shutting down the exporter failed: {e}");
        }
    }
}

/// Installs the process's subscriber: `filter` (`LOCKSTEP_LOG` overrides
/// it), `format`, and OTLP export when `otel_endpoint` is set.
pub fn init(
    default_filter: &str,
    format: LogFormat,
    otel_endpoint: Option<&str>,
    service_name: &str,
) -> Result<TelemetryGuard, Box<dyn std::error::Error + Send + Sync>> {
    let filter =
        EnvFilter::try_from_env("LOCKSTEP_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let provider = match otel_endpoint {
        Some(endpoint) => Some(otlp_provider(endpoint, service_name)?),
        None => None,
    };
    let otel = provider.as_ref().map(otel_layer);
    let (human, json) = match format {
        LogFormat::Human => (
            Some(tracing_subscriber::fmt::layer().with_target(false)),
            None,
        ),
        LogFormat::Json => (None, Some(json_layer(std::io::stdout))),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(human)
        .with(json)
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, Box<dyn std::error::Error + Send + Sync>> {
    use opentelemetry_otlp::WithExportConfig;
    let base = endpoint.trim_end_matches('/');
    // OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base address; traces go to /v1/traces.
    let url = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The W3C trace context of incoming `headers` (`traceparent`, `tracestate`).
pub fn extract_parent(headers: &axum::http::HeaderMap) -> Context {
    use opentelemetry::propagation::TextMapPropagator;
    struct Headers<'a>(&'a axum::http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers))
}

/// A finished SQL statement as a child span of the current span (its text,
/// never its parameter values).
pub fn sql_span(info: &sea_orm::metric::Info<'_>) {
    let Some(tracer) = TRACER.read().ok().and_then(|t| t.clone()) else {
        return;
    };
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let end = SystemTime::now();
    let start = end.checked_sub(info.elapsed).unwrap_or(end);
    let sql = &info.statement.sql;
    let name = sql
        .split_whitespace()
        .next()
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| "SQL".to_owned());
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("db.query.text", sql.chars().take(2048).collect::<String>()),
            KeyValue::new("db.system.name", backend(info.statement.db_backend)),
        ])
        .start_with_context(&tracer, &parent);
    if info.failed {
        span.set_status(opentelemetry::trace::Status::error("statement failed"));
    }
    span.end_with_timestamp(end);
}

fn backend(b: sea_orm::DbBackend) -> &'static str {
    match b {
        sea_orm::DbBackend::Postgres => "postgresql",
        sea_orm::DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}

/// The W3C `traceparent` of the current span, when tracing is on and the
/// span is part of a trace (kept with a job, so its run links back here).
pub fn current_traceparent() -> Option<String> {
    if !super::otel_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Links `span` to the span a W3C `traceparent` names (a job's run to the
/// request that enqueued it: a link, not a parent, since the run is its own
/// piece of work and may happen much later or more than once).
pub fn link_to(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    if !super::otel_enabled() {
        return;
    }
    struct One<'a>(&'a str);
    impl opentelemetry::propagation::Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&One(traceparent));
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}
