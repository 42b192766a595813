//! Leads by stage and source in creation order: the page "the MQL leads of
//! one source, newest first" (`leads(filter: {stage: [MQL], source:
//! [PAID]})`) walked the creation index and threw away every lead
//! of another stage or source (at 1M leads, most of them). With this index
//! it reads the page's rows in order and stops, on either database.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS ix_leads_stage_source_created ON leads (stage, source, created_at, id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_leads_stage_source_created")
            .await?;
        Ok(())
    }
}
