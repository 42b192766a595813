//! `lead_rollup_bi`: the funnel counts of the leads created each UTC day, per
//! source, campaign, team and account segment — exactly the grouping of the
//! BI views `bi_funnel_daily` and `bi_closed_loop`, which aggregated every
//! lead of `bi_leads` on each read (a year summed by source: 1.2–2.0 s at 1M
//! leads). They now read this table: same columns, same numbers. "None" is
//! the nil UUID (campaign, team) and `NONE` (segment), as in `lead_rollup`;
//! the views turn them back into NULL.
//!
//! Like the other rollups it is kept by the services in each write's
//! transaction and filled by a rebuild (`api::metrics::rollups`, version 2):
//! this migration creates it empty. `CREATE OR REPLACE VIEW` keeps the
//! views' grants (a BI role's `GRANT SELECT`). The primary key leads with
//! `bi_closed_loop`'s grouping (day, source, campaign, segment), then team.

use crate::m20261127_000006_metric_rollups::lead_rollup;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LeadRollupBi {
    Table,
    Day,
    Source,
    CampaignId,
    TeamId,
    Segment,
}

const NIL: &str = "'00000000-0000-0000-0000-000000000000'::uuid";

/// The views over the rollup: their columns (names, types, order) are those
/// of migration 2's, which aggregated `bi_leads`.
pub(crate) fn views() -> [String; 2] {
    [
        format!(
            "CREATE OR REPLACE VIEW bi_funnel_daily AS
             SELECT r.day, CAST(r.source AS VARCHAR) AS source, CAST(NULLIF(r.segment, 'NONE') AS VARCHAR) AS segment,
                    NULLIF(r.campaign_id, {NIL}) AS campaign_id, NULLIF(r.team_id, {NIL}) AS team_id,
                    r.leads, r.mqls AS reached_mql, r.sals AS reached_sal, r.sqls AS reached_sql,
                    r.converted AS reached_opportunity, r.won AS reached_won
             FROM lead_rollup_bi r
             WHERE r.leads <> 0"
        ),
        // Summed over teams first, by the primary key's leading columns,
        // then named: joining the campaigns before grouping sorted every row
        // with the campaign's name and kind (twice the time).
        format!(
            "CREATE OR REPLACE VIEW bi_closed_loop AS
             SELECT r.day, CAST(r.source AS VARCHAR) AS source, NULLIF(r.campaign_id, {NIL}) AS campaign_id,
                    c.name AS campaign_name, c.kind AS campaign_kind,
                    CAST(NULLIF(r.segment, 'NONE') AS VARCHAR) AS segment,
                    r.leads, r.mqls, r.opportunities, r.won, r.won_revenue
             FROM (SELECT day, source, campaign_id, segment,
                          CAST(SUM(leads) AS BIGINT) AS leads, CAST(SUM(mqls) AS BIGINT) AS mqls,
                          CAST(SUM(opportunities) AS BIGINT) AS opportunities, CAST(SUM(won) AS BIGINT) AS won,
                          SUM(won_amount) / 10000.0 AS won_revenue
                   FROM lead_rollup_bi
                   GROUP BY day, source, campaign_id, segment
                   HAVING SUM(leads) <> 0) r
             LEFT JOIN campaigns c ON c.id = r.campaign_id"
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(lead_rollup(
            LeadRollupBi::Table,
            vec![
                date(LeadRollupBi::Day),
                string_len(LeadRollupBi::Source, 16),
                uuid(LeadRollupBi::CampaignId),
                string_len(LeadRollupBi::Segment, 16),
                uuid(LeadRollupBi::TeamId),
            ],
        ))
        .await?;
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for sql in views() {
                db.execute_unprepared(&sql).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            // Back to migration 2's definitions, over `bi_leads`.
            for (name, _, sql) in crate::m20261124_000002_bi_views::VIEWS {
                if ["bi_funnel_daily", "bi_closed_loop"].contains(name) {
                    db.execute_unprepared(&sql.replacen(
                        "CREATE VIEW",
                        "CREATE OR REPLACE VIEW",
                        1,
                    ))
                    .await?;
                }
            }
        }
        db.execute_unprepared("DROP TABLE lead_rollup_bi").await?;
        Ok(())
    }
}
