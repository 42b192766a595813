//! Getting a database ready to serve: migrations, then the metric rollups.

use migration::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, DbErr};

/// Runs the pending migrations, then rebuilds the metric rollups when they
/// predate this code (see `metrics::rollups`).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await?;
    let started = std::time::Instant::now();
    if crate::metrics::rollups::ensure(db).await? {
        crate::telemetry::prom::observe_rollup_rebuild(started.elapsed().as_secs_f64());
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "rebuilt the metric rollups"
        );
    }
    Ok(())
}
