//! The first entry into INQUIRY itself on each lead (`inquiry_at`), kept by
//! the leads service with the other first-entry times, so that the funnel's
//! INQUIRY → MQL median (which times only leads that entered both stages
//! themselves) reads the lead instead of probing its history.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Leads {
    Table,
    InquiryAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Leads::Table)
                    .add_column(timestamp_with_time_zone_null(Leads::InquiryAt))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE leads SET inquiry_at = h.at \
                 FROM (SELECT lead_id, MIN(at) AS at FROM stage_changes \
                       WHERE lead_id IS NOT NULL AND to_stage = 'INQUIRY' GROUP BY lead_id) h \
                 WHERE h.lead_id = leads.id",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Leads::Table)
                    .drop_column(Leads::InquiryAt)
                    .to_owned(),
            )
            .await
    }
}
