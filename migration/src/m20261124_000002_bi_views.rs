//! Read-only SQL views for BI tools (PostgreSQL only), with stable column
//! names. They hold no personal data (no e-mail or names): give a BI tool's
//! role SELECT on them and nothing else (see README).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const VIEWS: &[(&str, &str, &str)] = &[
    (
        "bi_leads",
        "One row per lead: where it came from and when it first reached each funnel stage (a skipped stage counts as reached when a later one is). No personal data.",
        "CREATE VIEW bi_leads AS
         SELECT l.id AS lead_id, l.created_at, l.source, l.stage, l.score,
                l.campaign_id, c.name AS campaign_name, c.kind AS campaign_kind,
                l.account_id, a.name AS account_name, a.segment, COALESCE(a.is_target, false) AS is_target,
                l.owner_id, l.team_id, l.first_touch_at,
                EXTRACT(EPOCH FROM (l.first_touch_at - l.created_at)) / 3600.0 AS hours_to_first_touch,
                h.mql_at, h.sal_at, h.sql_at, h.converted_at,
                l.converted_opportunity_id AS opportunity_id,
                (o.stage = 'CLOSED_WON') AS won,
                CASE WHEN o.stage = 'CLOSED_WON' THEN o.closed_at END AS won_at,
                CASE WHEN o.stage = 'CLOSED_WON' THEN o.amount / 10000.0 END AS won_amount
         FROM leads l
         LEFT JOIN accounts a ON a.id = l.account_id
         LEFT JOIN campaigns c ON c.id = l.campaign_id
         LEFT JOIN opportunities o ON o.id = l.converted_opportunity_id
         LEFT JOIN (
           SELECT lead_id,
                  MIN(CASE WHEN to_stage IN ('MQL', 'SAL', 'SQL', 'CONVERTED') THEN at END) AS mql_at,
                  MIN(CASE WHEN to_stage IN ('SAL', 'SQL', 'CONVERTED') THEN at END) AS sal_at,
                  MIN(CASE WHEN to_stage IN ('SQL', 'CONVERTED') THEN at END) AS sql_at,
                  MIN(CASE WHEN to_stage = 'CONVERTED' THEN at END) AS converted_at
           FROM stage_changes WHERE lead_id IS NOT NULL GROUP BY lead_id
         ) h ON h.lead_id = l.id",
    ),
    (
        "bi_opportunities",
        "One row per opportunity with its account segment, originating lead's source and campaign, owner's team, amount (decimal) and cycle.",
        "CREATE VIEW bi_opportunities AS
         SELECT o.id AS opportunity_id, o.name, o.stage, o.amount / 10000.0 AS amount, o.currency,
                o.created_at, o.closed_at, o.lost_reason, o.sourced_by,
                o.stage IN ('CLOSED_WON', 'CLOSED_LOST') AS is_closed, o.stage = 'CLOSED_WON' AS is_won,
                CASE WHEN o.closed_at IS NOT NULL THEN EXTRACT(EPOCH FROM (o.closed_at - o.created_at)) / 86400.0 END AS cycle_days,
                o.account_id, a.name AS account_name, a.segment, a.is_target,
                o.lead_id, l.source AS lead_source, l.campaign_id AS lead_campaign_id,
                o.owner_id, u.team_id AS owner_team_id
         FROM opportunities o
         JOIN accounts a ON a.id = o.account_id
         LEFT JOIN leads l ON l.id = o.lead_id
         LEFT JOIN users u ON u.id = o.owner_id",
    ),
    (
        "bi_stage_changes",
        "Every stage change of a lead or an opportunity: when, from, to, who, why.",
        "CREATE VIEW bi_stage_changes AS
         SELECT sc.id AS stage_change_id,
                CASE WHEN sc.lead_id IS NOT NULL THEN 'LEAD' ELSE 'OPPORTUNITY' END AS record_type,
                COALESCE(sc.lead_id, sc.opportunity_id) AS record_id,
                sc.from_stage, sc.to_stage, sc.at, sc.actor, sc.actor_user_id, sc.reason
         FROM stage_changes sc",
    ),
    (
        "bi_funnel_daily",
        "The funnel per lead-creation day (UTC), additive: summing a period's days gives GraphQL's funnel `reached` for that period.",
        "CREATE VIEW bi_funnel_daily AS
         SELECT (created_at AT TIME ZONE 'UTC')::date AS day, source, segment, campaign_id, team_id,
                COUNT(*) AS leads,
                COUNT(mql_at) AS reached_mql,
                COUNT(sal_at) AS reached_sal,
                COUNT(sql_at) AS reached_sql,
                COUNT(converted_at) AS reached_opportunity,
                COUNT(*) FILTER (WHERE won) AS reached_won
         FROM bi_leads
         GROUP BY 1, 2, 3, 4, 5",
    ),
    (
        "bi_closed_loop",
        "Closed-loop revenue per lead-creation day, source, campaign and segment, additive: summing a period's days gives GraphQL's closedLoop counts and wonRevenue.",
        "CREATE VIEW bi_closed_loop AS
         SELECT (created_at AT TIME ZONE 'UTC')::date AS day, source, campaign_id, campaign_name, campaign_kind, segment,
                COUNT(*) AS leads,
                COUNT(mql_at) AS mqls,
                COUNT(opportunity_id) AS opportunities,
                COUNT(*) FILTER (WHERE won) AS won,
                COALESCE(SUM(won_amount), 0) AS won_revenue
         FROM bi_leads
         GROUP BY 1, 2, 3, 4, 5, 6",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Indexes the metric queries lean on (both backends).
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS ix_stage_changes_to_stage ON stage_changes (to_stage, lead_id, at)")
            .await?;
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS ix_opportunities_stage_closed ON opportunities (stage, closed_at)")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS ix_leads_converted ON leads (converted_opportunity_id)",
        )
        .await?;
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (name, comment, sql) in VIEWS {
            db.execute_unprepared(sql).await?;
            db.execute_unprepared(&format!(
                "COMMENT ON VIEW {name} IS '{}'",
                comment.replace('\'', "''")
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for (name, _, _) in VIEWS.iter().rev() {
                db.execute_unprepared(&format!("DROP VIEW IF EXISTS {name}"))
                    .await?;
            }
        }
        for ix in [
            "ix_stage_changes_to_stage",
            "ix_opportunities_stage_closed",
            "ix_leads_converted",
        ] {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {ix}"))
                .await?;
        }
        Ok(())
    }
}
