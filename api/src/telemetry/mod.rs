//! Operating Lockstep: request ids, logs (human or JSON), Prometheus
//! metrics, OpenTelemetry traces and rate limits.

pub mod limits;
pub mod logging;
pub mod prom;
pub mod request_id;
pub mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

tokio::task_local! {
    /// SQL statements issued while answering the current request.
    static REQUEST_STATEMENTS: Arc<AtomicU64>;
}

/// Whether OpenTelemetry export is on in this process (spans for SQL
/// statements and `traceparent` extraction are skipped otherwise).
static OTEL_ON: AtomicBool = AtomicBool::new(false);

pub fn otel_enabled() -> bool {
    OTEL_ON.load(Ordering::Relaxed)
}

pub fn set_otel_enabled(on: bool) {
    OTEL_ON.store(on, Ordering::Relaxed);
}

/// Runs `fut` counting the SQL statements it issues (and those of the
/// DataLoader tasks it spawns); returns its output and the count.
pub async fn count_statements<F: std::future::Future>(fut: F) -> (F::Output, u64) {
    let counter = Arc::new(AtomicU64::new(0));
    let out = REQUEST_STATEMENTS.scope(counter.clone(), fut).await;
    (out, counter.load(Ordering::Relaxed))
}

/// Wraps a future spawned on behalf of the current request (DataLoader
/// batches) so its statements and spans stay the request's.
pub fn in_request<F>(fut: F) -> impl std::future::Future<Output = F::Output> + Send + 'static
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    use tracing::Instrument;
    let counter = REQUEST_STATEMENTS.try_with(Arc::clone).ok();
    let span = tracing::Span::current();
    async move {
        match counter {
            Some(c) => REQUEST_STATEMENTS.scope(c, fut).await,
            None => fut.await,
        }
    }
    .instrument(span)
}

/// Called by the connection for every SQL statement it ran.
pub fn statement_ran(info: &sea_orm::metric::Info<'_>) {
    let _ = REQUEST_STATEMENTS.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
    if otel_enabled() {
        logging::sql_span(info);
    }
}
