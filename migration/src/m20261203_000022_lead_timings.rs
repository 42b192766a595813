//! Lead timings: the durations the funnel's and speed to lead's medians are
//! taken over, kept at write time instead of computed from every lead of a
//! period (and their stage histories) on each read.
//!
//! - `lead_timings`: per lead and metric (1–5: the funnel's steps INQUIRY →
//!   MQL … OPPORTUNITY → WON, for the leads timed for that step; 6: creation
//!   → first touch), the lead's creation time, the duration in hours and its
//!   *bucket*, an integer that never decreases as the duration grows (two
//!   significant digits of the duration in seconds, per power of ten).
//! - `lead_timing_rollup`: how many timings each metric has per UTC month of
//!   lead creation and bucket.
//!
//! A median is then exact and cheap: the rollup (plus the partial months at
//! the period's ends, from `ix_lead_timings_period`) says which bucket holds
//! the middle rank(s); the middle value(s) are read from that bucket alone
//! (`ix_lead_timings_bucket`). Both are kept by the services in each write's
//! transaction and filled by a rebuild (`api::metrics::rollups`, version 3):
//! this migration creates them empty. No foreign key: the rows of a deleted
//! lead are removed by the same write, after it has read them to correct
//! the rollup.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LeadTimings {
    Table,
    LeadId,
    Metric,
    CreatedAt,
    Bucket,
    Hours,
}

#[derive(DeriveIden)]
enum LeadTimingRollup {
    Table,
    Metric,
    Month,
    Bucket,
    N,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LeadTimings::Table)
                .col(uuid(LeadTimings::LeadId))
                .col(small_integer(LeadTimings::Metric))
                .col(timestamp_with_time_zone(LeadTimings::CreatedAt))
                .col(integer(LeadTimings::Bucket))
                .col(double(LeadTimings::Hours))
                .primary_key(
                    Index::create()
                        .col(LeadTimings::LeadId)
                        .col(LeadTimings::Metric),
                )
                .to_owned(),
        )
        .await?;
        // The partial months at a period's ends: counts per bucket, read
        // from the index alone.
        m.create_index(
            Index::create()
                .name("ix_lead_timings_period")
                .table(LeadTimings::Table)
                .col(LeadTimings::Metric)
                .col(LeadTimings::CreatedAt)
                .col(LeadTimings::Bucket)
                .to_owned(),
        )
        .await?;
        // The middle values: one bucket of one metric, in the period, by value.
        m.create_index(
            Index::create()
                .name("ix_lead_timings_bucket")
                .table(LeadTimings::Table)
                .col(LeadTimings::Metric)
                .col(LeadTimings::Bucket)
                .col(LeadTimings::CreatedAt)
                .col(LeadTimings::Hours)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(LeadTimingRollup::Table)
                .col(small_integer(LeadTimingRollup::Metric))
                .col(date(LeadTimingRollup::Month))
                .col(integer(LeadTimingRollup::Bucket))
                .col(big_integer(LeadTimingRollup::N))
                .primary_key(
                    Index::create()
                        .col(LeadTimingRollup::Metric)
                        .col(LeadTimingRollup::Month)
                        .col(LeadTimingRollup::Bucket),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LeadTimingRollup::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(LeadTimings::Table).to_owned())
            .await?;
        Ok(())
    }
}
