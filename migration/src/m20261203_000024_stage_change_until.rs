//! `stage_changes.until_at`: for an opportunity's stage change, the time of
//! the opportunity's next change (ordered by time, then id), or NULL for
//! its latest. The pipeline at a moment long past then reads the changes
//! into an open stage that held at that moment — `at` before it, `until_at`
//! NULL or after it — from one index, instead of walking every history with
//! a window function (0.8–1.5 s at 1M leads for an end a year back).
//!
//! Derived data: kept by the services at each opportunity stage change and
//! filled by the rollups' rebuild (`api::metrics::rollups`, version 5); this
//! migration adds the column empty. Lead stage changes keep NULL.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StageChanges {
    Table,
    UntilAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(StageChanges::Table)
                .add_column(
                    ColumnDef::new(StageChanges::UntilAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        let cols = if db.get_database_backend() == DbBackend::Postgres {
            "(at) INCLUDE (until_at, opportunity_id, to_stage)"
        } else {
            "(at, until_at, opportunity_id, to_stage)"
        };
        db.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS ix_stage_changes_open_spans ON stage_changes {cols} \
             WHERE opportunity_id IS NOT NULL AND to_stage IN ('DISCOVERY', 'PROPOSAL', 'NEGOTIATION')"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ix_stage_changes_open_spans")
            .await?;
        m.alter_table(
            Table::alter()
                .table(StageChanges::Table)
                .drop_column(StageChanges::UntilAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
