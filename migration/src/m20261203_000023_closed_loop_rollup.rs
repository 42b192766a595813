//! `lead_rollup_closed_loop`: the funnel counts of the leads created each
//! UTC day per source, campaign and account segment — the grouping of the BI
//! view `bi_closed_loop`, which summed `lead_rollup_bi` over teams on each
//! read (a year summed by source: ~140 ms at 1M leads). The view now reads
//! its rows as they are: same columns, same types, same numbers. The
//! closed-loop metric reads it too when no team, owner or target flag is
//! asked (fewer rows than `lead_rollup`, which also keys team and owner).
//!
//! Kept by the services in each write's transaction and filled by a rebuild
//! (`api::metrics::rollups`, version 4): this migration creates it empty.
//! "None" is the nil UUID (campaign) and `NONE` (segment), as in the other
//! lead rollups.

use crate::m20261127_000006_metric_rollups::lead_rollup;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LeadRollupClosedLoop {
    Table,
    Day,
    Source,
    CampaignId,
    Segment,
}

const NIL: &str = "'00000000-0000-0000-0000-000000000000'::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(lead_rollup(
            LeadRollupClosedLoop::Table,
            vec![
                date(LeadRollupClosedLoop::Day),
                string_len(LeadRollupClosedLoop::Source, 16),
                uuid(LeadRollupClosedLoop::CampaignId),
                string_len(LeadRollupClosedLoop::Segment, 16),
            ],
        ))
        .await?;
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            // The columns (names, types, order) of migration 20's definition.
            db.execute_unprepared(&format!(
                "CREATE OR REPLACE VIEW bi_closed_loop AS
                 SELECT r.day, CAST(r.source AS VARCHAR) AS source, NULLIF(r.campaign_id, {NIL}) AS campaign_id,
                        c.name AS campaign_name, c.kind AS campaign_kind,
                        CAST(NULLIF(r.segment, 'NONE') AS VARCHAR) AS segment,
                        r.leads, r.mqls, r.opportunities, r.won, r.won_amount / 10000.0 AS won_revenue
                 FROM lead_rollup_closed_loop r
                 LEFT JOIN campaigns c ON c.id = r.campaign_id
                 WHERE r.leads <> 0"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            // Back to migration 20's definition, over `lead_rollup_bi`.
            let [_, closed_loop] = crate::m20261203_000020_bi_rollup::views();
            db.execute_unprepared(&closed_loop).await?;
        }
        db.execute_unprepared("DROP TABLE lead_rollup_closed_loop")
            .await?;
        Ok(())
    }
}
