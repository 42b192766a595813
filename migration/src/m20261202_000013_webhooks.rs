//! CRM webhooks: `integrations` (one per connected CRM, secrets derived,
//! never stored) and `webhook_events`, the durable inbox: unique per
//! (integration, provider event id), applied by jobs in order per CRM record.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
    Provider,
    Name,
    Settings,
    SecretSalt,
    PreviousSalt,
    PreviousExpiresAt,
    Declared,
    DisabledAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    IntegrationId,
    Provider,
    EventId,
    EventType,
    RecordKey,
    OccurredAt,
    ReceivedAt,
    Body,
    Status,
    Attempts,
    LastError,
    Outcome,
    AppliedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Integrations::Table)
                .col(pk_uuid(Integrations::Id))
                .col(string(Integrations::Provider))
                .col(string(Integrations::Name).unique_key())
                .col(text(Integrations::Settings))
                .col(string_null(Integrations::SecretSalt))
                .col(string_null(Integrations::PreviousSalt))
                .col(timestamp_with_time_zone_null(
                    Integrations::PreviousExpiresAt,
                ))
                .col(boolean(Integrations::Declared).default(false))
                .col(timestamp_with_time_zone_null(Integrations::DisabledAt))
                .col(timestamp_with_time_zone(Integrations::CreatedAt))
                .col(timestamp_with_time_zone(Integrations::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebhookEvents::Table)
                .col(pk_uuid(WebhookEvents::Id))
                .col(uuid(WebhookEvents::IntegrationId))
                .col(string(WebhookEvents::Provider))
                .col(string(WebhookEvents::EventId))
                .col(string(WebhookEvents::EventType))
                .col(string(WebhookEvents::RecordKey))
                .col(timestamp_with_time_zone(WebhookEvents::OccurredAt))
                .col(timestamp_with_time_zone(WebhookEvents::ReceivedAt))
                .col(text(WebhookEvents::Body))
                .col(string(WebhookEvents::Status))
                .col(integer(WebhookEvents::Attempts).default(0))
                .col(text_null(WebhookEvents::LastError))
                .col(string_null(WebhookEvents::Outcome))
                .col(timestamp_with_time_zone_null(WebhookEvents::AppliedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookEvents::Table, WebhookEvents::IntegrationId)
                        .to(Integrations::Table, Integrations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A provider's event is stored once per integration: a redelivery is a no-op.
        m.create_index(
            Index::create()
                .name("ux_webhook_events_integration_event")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::IntegrationId)
                .col(WebhookEvents::EventId)
                .unique()
                .to_owned(),
        )
        .await?;
        // Applying in order per CRM record, and "is there a newer one applied?".
        m.create_index(
            Index::create()
                .name("ix_webhook_events_record")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::IntegrationId)
                .col(WebhookEvents::RecordKey)
                .col(WebhookEvents::OccurredAt)
                .to_owned(),
        )
        .await?;
        // Operators' lists and health: by status and arrival.
        m.create_index(
            Index::create()
                .name("ix_webhook_events_status_received")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::Status)
                .col(WebhookEvents::ReceivedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_events_integration_received")
                .table(WebhookEvents::Table)
                .col(WebhookEvents::IntegrationId)
                .col(WebhookEvents::ReceivedAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WebhookEvents::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Integrations::Table).to_owned())
            .await?;
        Ok(())
    }
}
