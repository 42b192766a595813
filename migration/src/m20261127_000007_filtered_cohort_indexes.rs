//! A second index of the leads that became MQL (beside migration 5's narrow
//! `ix_leads_mql_cohort`), that also covers the columns the metric filters
//! read (source, campaign, team, owner, account): the funnel's medians for a
//! team, owner, source, campaign or segment read it alone instead of
//! fetching each lead's row (for one team at 1M leads: ~480 → ~230 ms).
//! Unfiltered medians keep reading the narrow index, which is half the size.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COVER: &str = "mql_at, sal_at, sql_at, converted_at, converted_opportunity_id, source, campaign_id, team_id, owner_id, account_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        // SQLite has no INCLUDE: there the columns join the key.
        let sql = if db.get_database_backend() == DbBackend::Postgres {
            format!(
                "CREATE INDEX IF NOT EXISTS ix_leads_mql_cohort_filtered ON leads (created_at) INCLUDE ({COVER}) WHERE mql_at IS NOT NULL"
            )
        } else {
            format!(
                "CREATE INDEX IF NOT EXISTS ix_leads_mql_cohort_filtered ON leads (created_at, {COVER}) WHERE mql_at IS NOT NULL"
            )
        };
        db.execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS ix_leads_mql_cohort_filtered")
            .await?;
        Ok(())
    }
}
