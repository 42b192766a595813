//! Covering indexes for the metrics, so the database reads narrow indexes and
//! never the wide rows:
//! - `ix_leads_cohort`: a year of leads by creation time, with the columns the
//!   funnel, closed loop, speed to lead and the lead series read;
//! - `ix_leads_mql_cohort` (partial, leads that became MQL): the funnel's
//!   medians, which only concern leads past INQUIRY;
//! - `ix_leads_converted_cover` (partial, converted leads only; replaces
//!   `ix_leads_converted`): a cohort's opportunities, for closed-loop cycles;
//! - `ix_opportunities_outcome`: an opportunity's stage, amount and dates by id;
//! - `ix_opportunities_stage_closed` gains the columns of won opportunities
//!   attribution reads;
//! - `ix_touchpoints_attribution` (replaces `ix_touchpoints_lead`): each won
//!   opportunity's touches, in order, with their campaign.
//!
//! SQLite has no INCLUDE: there the columns join the key, to the same effect.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, table, key, covered columns, partial-index predicate)
const INDEXES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "ix_leads_cohort",
        "leads",
        "created_at",
        "mql_at, sal_at, sql_at, converted_at, converted_opportunity_id, first_touch_at, source, campaign_id",
        "",
    ),
    (
        "ix_leads_mql_cohort",
        "leads",
        "created_at",
        "mql_at, sal_at, sql_at, converted_at, converted_opportunity_id",
        "mql_at IS NOT NULL",
    ),
    (
        "ix_leads_converted_cover",
        "leads",
        "converted_opportunity_id",
        "created_at, source, campaign_id, account_id, team_id, owner_id, mql_at",
        "converted_opportunity_id IS NOT NULL",
    ),
    (
        "ix_opportunities_outcome",
        "opportunities",
        "id",
        "stage, amount, created_at, closed_at",
        "",
    ),
    (
        "ix_opportunities_won",
        "opportunities",
        "stage, closed_at",
        "amount, lead_id, created_at, account_id, owner_id",
        "",
    ),
    (
        "ix_touchpoints_attribution",
        "touchpoints",
        "lead_id, occurred_at, id",
        "campaign_id",
        "",
    ),
];

/// Indexes the ones above make redundant, with their definitions (for `down`).
const REPLACED: &[(&str, &str)] = &[
    (
        "ix_leads_converted",
        "CREATE INDEX IF NOT EXISTS ix_leads_converted ON leads (converted_opportunity_id)",
    ),
    (
        "ix_opportunities_stage_closed",
        "CREATE INDEX IF NOT EXISTS ix_opportunities_stage_closed ON opportunities (stage, closed_at)",
    ),
    (
        "ix_touchpoints_lead",
        "CREATE INDEX IF NOT EXISTS ix_touchpoints_lead ON touchpoints (lead_id, occurred_at, id)",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let pg = db.get_database_backend() == DbBackend::Postgres;
        for (name, table, key, cover, predicate) in INDEXES {
            let mut sql = if pg {
                format!("CREATE INDEX IF NOT EXISTS {name} ON {table} ({key}) INCLUDE ({cover})")
            } else {
                format!("CREATE INDEX IF NOT EXISTS {name} ON {table} ({key}, {cover})")
            };
            if !predicate.is_empty() {
                sql.push_str(&format!(" WHERE {predicate}"));
            }
            db.execute_unprepared(&sql).await?;
        }
        for (name, _) in REPLACED {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (_, create) in REPLACED {
            db.execute_unprepared(create).await?;
        }
        for (name, ..) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
