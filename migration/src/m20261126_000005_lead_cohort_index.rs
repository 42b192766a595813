//! A covering index for lead cohorts: the funnel, closed loop, speed to lead
//! and the lead series read a year of leads by creation time and need only
//! these columns, so the database scans the index and never the wide rows.
//! Likewise attribution reads each won opportunity's touches, in order, with
//! their campaign, from one index (it replaces `ix_touchpoints_lead`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: &str = "mql_at, sal_at, sql_at, converted_at, converted_opportunity_id, first_touch_at, source, campaign_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let sql = if db.get_database_backend() == DbBackend::Postgres {
            [
                format!("CREATE INDEX IF NOT EXISTS ix_leads_cohort ON leads (created_at) INCLUDE ({COLUMNS})"),
                "CREATE INDEX IF NOT EXISTS ix_touchpoints_attribution ON touchpoints (lead_id, occurred_at, id) INCLUDE (campaign_id)".to_owned(),
            ]
        } else {
            // SQLite has no INCLUDE: the columns join the key, to the same effect.
            [
                format!("CREATE INDEX IF NOT EXISTS ix_leads_cohort ON leads (created_at, {COLUMNS})"),
                "CREATE INDEX IF NOT EXISTS ix_touchpoints_attribution ON touchpoints (lead_id, occurred_at, id, campaign_id)".to_owned(),
            ]
        };
        for s in sql {
            db.execute_unprepared(&s).await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS ix_touchpoints_lead")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_touchpoints_lead ON touchpoints (lead_id, occurred_at, id)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_touchpoints_attribution")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_leads_cohort")
            .await?;
        Ok(())
    }
}
