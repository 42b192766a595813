//! Operating several replicas:
//! - `jobs.trace_parent`: the W3C `traceparent` of whoever enqueued a job,
//!   so the job's span links back to the request that asked for it;
//! - `rate_limit_buckets`: token buckets shared by every replica (GCRA: one
//!   "theoretical arrival time" per key, in microseconds of the database's
//!   clock), used when `rate_limits.shared` is on. UNLOGGED on PostgreSQL:
//!   a bucket is worth no WAL, and losing them in a crash only refills them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    TraceParent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(string_null(Jobs::TraceParent))
                    .to_owned(),
            )
            .await?;
        let unlogged = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "UNLOGGED ",
            _ => "",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE {unlogged}TABLE rate_limit_buckets (\
                 key VARCHAR(300) NOT NULL PRIMARY KEY, \
                 tat_us BIGINT NOT NULL)"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE rate_limit_buckets")
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .drop_column(Jobs::TraceParent)
                    .to_owned(),
            )
            .await
    }
}
