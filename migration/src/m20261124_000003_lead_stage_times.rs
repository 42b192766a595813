//! First-entry times of the funnel stages on each lead (MQL, SAL, SQL,
//! CONVERTED — "or a later main-path stage"), kept in step with the stage
//! history by the leads service, so funnel metrics scan one table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261124_000002_bi_views::VIEWS;

/// `bi_leads` over the kept first-entry times: same columns, same meaning.
const BI_LEADS: &str = "CREATE OR REPLACE VIEW bi_leads AS
     SELECT l.id AS lead_id, l.created_at, l.source, l.stage, l.score,
            l.campaign_id, c.name AS campaign_name, c.kind AS campaign_kind,
            l.account_id, a.name AS account_name, a.segment, COALESCE(a.is_target, false) AS is_target,
            l.owner_id, l.team_id, l.first_touch_at,
            EXTRACT(EPOCH FROM (l.first_touch_at - l.created_at)) / 3600.0 AS hours_to_first_touch,
            l.mql_at, l.sal_at, l.sql_at, l.converted_at,
            l.converted_opportunity_id AS opportunity_id,
            (o.stage = 'CLOSED_WON') AS won,
            CASE WHEN o.stage = 'CLOSED_WON' THEN o.closed_at END AS won_at,
            CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount / 10000.0 END AS won_amount
     FROM leads l
     LEFT JOIN accounts a ON a.id = l.account_id
     LEFT JOIN campaigns c ON c.id = l.campaign_id
     LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Leads {
    Table,
    MqlAt,
    SalAt,
    SqlAt,
    ConvertedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Leads::MqlAt, Leads::SalAt, Leads::SqlAt, Leads::ConvertedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Leads::Table)
                        .add_column(timestamp_with_time_zone_null(col))
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE leads SET mql_at = h.mql_at, sal_at = h.sal_at, sql_at = h.sql_at, converted_at = h.converted_at \
             FROM (SELECT lead_id, \
                     MIN(CASE WHEN to_stage IN ('MQL', 'SAL', 'SQL', 'CONVERTED') THEN at END) AS mql_at, \
                     MIN(CASE WHEN to_stage IN ('SAL', 'SQL', 'CONVERTED') THEN at END) AS sal_at, \
                     MIN(CASE WHEN to_stage IN ('SQL', 'CONVERTED') THEN at END) AS sql_at, \
                     MIN(CASE WHEN to_stage = 'CONVERTED' THEN at END) AS converted_at \
                   FROM stage_changes WHERE lead_id IS NOT NULL GROUP BY lead_id) h \
             WHERE h.lead_id = leads.id",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS ix_leads_mql_at ON leads (mql_at)")
            .await?;
        if db.get_database_backend() == DbBackend::Postgres {
            // bi_leads reads the kept times instead of aggregating the whole history.
            db.execute_unprepared(BI_LEADS).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres
            && let Some((_, _, sql)) = VIEWS.iter().find(|(name, _, _)| *name == "bi_leads")
        {
            db.execute_unprepared(&sql.replacen("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
                .await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS ix_leads_mql_at")
            .await?;
        for col in [Leads::MqlAt, Leads::SalAt, Leads::SqlAt, Leads::ConvertedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Leads::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
