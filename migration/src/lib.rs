//! Lockstep's schema migrations. Migrations hold schema only: demo and
//! benchmark data live in `api::seed`.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_records;
mod m20261124_000002_bi_views;
mod m20261124_000003_lead_stage_times;
mod m20261126_000004_data_version;
mod m20261126_000005_metric_indexes;
mod m20261127_000006_metric_rollups;
mod m20261127_000007_filtered_cohort_indexes;
mod m20261202_000008_data_version_slots;
mod m20261202_000009_jobs;
mod m20261202_000010_handoffs;
mod m20261202_000011_lead_inquiry_at;
mod m20261202_000012_goals;
mod m20261202_000013_webhooks;
mod m20261202_000014_operations;
mod m20261202_000018_integration_client_secrets;
mod m20261203_000019_lead_stage_source_index;
mod m20261203_000020_bi_rollup;
mod m20261203_000021_opportunity_changes_by_time;
mod m20261203_000022_lead_timings;
mod m20261203_000023_closed_loop_rollup;
mod m20261203_000024_stage_change_until;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_records::Migration),
            Box::new(m20261124_000002_bi_views::Migration),
            Box::new(m20261124_000003_lead_stage_times::Migration),
            Box::new(m20261126_000004_data_version::Migration),
            Box::new(m20261126_000005_metric_indexes::Migration),
            Box::new(m20261127_000006_metric_rollups::Migration),
            Box::new(m20261127_000007_filtered_cohort_indexes::Migration),
            Box::new(m20261202_000008_data_version_slots::Migration),
            Box::new(m20261202_000009_jobs::Migration),
            Box::new(m20261202_000010_handoffs::Migration),
            Box::new(m20261202_000011_lead_inquiry_at::Migration),
            Box::new(m20261202_000012_goals::Migration),
            Box::new(m20261202_000013_webhooks::Migration),
            Box::new(m20261202_000014_operations::Migration),
            Box::new(m20261202_000018_integration_client_secrets::Migration),
            Box::new(m20261203_000019_lead_stage_source_index::Migration),
            Box::new(m20261203_000020_bi_rollup::Migration),
            Box::new(m20261203_000021_opportunity_changes_by_time::Migration),
            Box::new(m20261203_000022_lead_timings::Migration),
            Box::new(m20261203_000023_closed_loop_rollup::Migration),
            Box::new(m20261203_000024_stage_change_until::Migration),
        ]
    }
}
