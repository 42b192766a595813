//! Tables the metrics read instead of the raw records, kept in step by the
//! services in the same transaction as every write that changes them:
//! - `attribution_credits`: each won opportunity's credit per campaign and
//!   attribution model, as exact fractions (`units / d` storage units and
//!   `shares / d` opportunities); a row with no campaign is revenue with no
//!   touch. `closed_at` is the opportunity's (closed opportunities are final).
//! - `lead_rollup`: per UTC day of creation and per source, campaign, team
//!   and owner, how many leads were created and how many of them reached
//!   each funnel stage, became opportunities, were won and for how much.
//!   "None" is the nil UUID, so that the key is unique on both databases.
//! - `lead_rollup_segment`: the same counts per day and per segment and
//!   target flag of the lead's account (`NONE` and -1 without an account).
//!   A separate table: crossing both sets of keys would leave about two
//!   leads a row, no cheaper to read than the leads.
//! - `metric_rollups`: the version of the code that last rebuilt them; the
//!   server rebuilds both from the records when its version is newer
//!   (`api::metrics::rollups::ensure`). Migrations hold schema only, so this
//!   one leaves the tables empty and at version 0.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AttributionCredits {
    Table,
    OpportunityId,
    Model,
    ClosedAt,
    CampaignId,
    D,
    Units,
    Shares,
}

#[derive(DeriveIden)]
enum LeadRollup {
    Table,
    Day,
    Source,
    CampaignId,
    TeamId,
    OwnerId,
}

#[derive(DeriveIden)]
enum LeadRollupSegment {
    Table,
    Day,
    Segment,
    IsTarget,
}

/// The counts both lead rollups keep, per key.
#[derive(DeriveIden, Clone, Copy)]
enum Counts {
    Leads,
    Mqls,
    Sals,
    Sqls,
    Converted,
    Opportunities,
    Won,
    WonAmount,
}

const COUNTS: [Counts; 8] = [
    Counts::Leads,
    Counts::Mqls,
    Counts::Sals,
    Counts::Sqls,
    Counts::Converted,
    Counts::Opportunities,
    Counts::Won,
    Counts::WonAmount,
];

/// A lead rollup: its key columns, which are its primary key, then the counts.
pub(crate) fn lead_rollup(table: impl IntoIden, key: Vec<ColumnDef>) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(table);
    let mut pk = Index::create();
    for col in key {
        pk.col(Alias::new(col.get_column_name()));
        t.col(col);
    }
    for c in COUNTS {
        t.col(big_integer(c));
    }
    t.primary_key(&mut pk);
    t.to_owned()
}

#[derive(DeriveIden)]
enum Opportunities {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AttributionCredits::Table)
                .col(uuid(AttributionCredits::OpportunityId))
                .col(string_len(AttributionCredits::Model, 16))
                .col(timestamp_with_time_zone(AttributionCredits::ClosedAt))
                .col(uuid_null(AttributionCredits::CampaignId))
                .col(big_integer(AttributionCredits::D))
                .col(big_integer(AttributionCredits::Units))
                .col(big_integer(AttributionCredits::Shares))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_attribution_credits_opportunity")
                        .from(AttributionCredits::Table, AttributionCredits::OpportunityId)
                        .to(Opportunities::Table, Opportunities::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_attribution_credits_opportunity")
                .table(AttributionCredits::Table)
                .col(AttributionCredits::OpportunityId)
                .to_owned(),
        )
        .await?;
        m.create_table(lead_rollup(
            LeadRollup::Table,
            vec![
                date(LeadRollup::Day),
                string_len(LeadRollup::Source, 16),
                uuid(LeadRollup::CampaignId),
                uuid(LeadRollup::TeamId),
                uuid(LeadRollup::OwnerId),
            ],
        ))
        .await?;
        m.create_table(lead_rollup(
            LeadRollupSegment::Table,
            vec![
                date(LeadRollupSegment::Day),
                string_len(LeadRollupSegment::Segment, 16),
                small_integer(LeadRollupSegment::IsTarget),
            ],
        ))
        .await?;
        let db = m.get_connection();
        // A period's credits by model, read from the index alone.
        let cover = "campaign_id, d, units, shares, opportunity_id";
        db.execute_unprepared(&if db.get_database_backend() == DbBackend::Postgres {
            format!(
                "CREATE INDEX ix_attribution_credits_period ON attribution_credits (model, closed_at) INCLUDE ({cover})"
            )
        } else {
            format!(
                "CREATE INDEX ix_attribution_credits_period ON attribution_credits (model, closed_at, {cover})"
            )
        })
        .await?;
        db.execute_unprepared(
            "CREATE TABLE metric_rollups (id INTEGER NOT NULL PRIMARY KEY, version BIGINT NOT NULL)",
        )
        .await?;
        db.execute_unprepared("INSERT INTO metric_rollups (id, version) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for table in [
            "metric_rollups",
            "lead_rollup_segment",
            "lead_rollup",
            "attribution_credits",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        Ok(())
    }
}
