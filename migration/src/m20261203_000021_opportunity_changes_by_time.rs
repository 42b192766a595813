//! Opportunity stage changes by time: the pipeline at a period's end reads
//! every opportunity where it stands now except those that moved at or after
//! that end, which it finds here (a range of this index), and walks only
//! their histories. Partial: lead stage changes (most of the table) are not
//! in it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_stage_changes_opportunity_at \
                 ON stage_changes (at, opportunity_id) WHERE opportunity_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_stage_changes_opportunity_at")
            .await?;
        Ok(())
    }
}
