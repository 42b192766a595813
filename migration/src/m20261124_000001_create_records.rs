//! The core records: teams, users, accounts, campaigns, leads, touchpoints,
//! opportunities, their stage history, and external ids.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    Name,
    Function,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    TeamId,
    Role,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Name,
    Domain,
    Industry,
    Segment,
    Employees,
    AnnualRevenue,
    IsTarget,
    Status,
    BecameCustomerAt,
    ChurnedAt,
    OwnerId,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Campaigns {
    Table,
    Id,
    Name,
    Channel,
    Kind,
    Cost,
    StartsAt,
    EndsAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Leads {
    Table,
    Id,
    Email,
    FirstName,
    LastName,
    Title,
    Company,
    AccountId,
    Source,
    CampaignId,
    Score,
    Stage,
    OwnerId,
    TeamId,
    ConvertedOpportunityId,
    FirstTouchAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Touchpoints {
    Table,
    Id,
    LeadId,
    CampaignId,
    OccurredAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Opportunities {
    Table,
    Id,
    Name,
    AccountId,
    LeadId,
    OwnerId,
    Stage,
    Amount,
    Currency,
    ExpectedCloseDate,
    ClosedAt,
    LostReason,
    SourcedBy,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StageChanges {
    Table,
    Id,
    LeadId,
    OpportunityId,
    FromStage,
    ToStage,
    At,
    Actor,
    ActorUserId,
    Reason,
}

#[derive(DeriveIden)]
enum ExternalIds {
    Table,
    Id,
    RecordKind,
    System,
    ExternalId,
    RecordId,
    CreatedAt,
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: &[&'static str]) -> IndexCreateStatement {
    let mut stmt = Index::create().name(name).table(table).to_owned();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    stmt
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Teams::Table)
                .col(pk_uuid(Teams::Id))
                .col(string_uniq(Teams::Name))
                .col(string(Teams::Function))
                .col(timestamp_with_time_zone(Teams::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(pk_uuid(Users::Id))
                .col(string_uniq(Users::Email))
                .col(string(Users::Name))
                .col(uuid_null(Users::TeamId))
                .col(string(Users::Role))
                .col(boolean(Users::Active).default(true))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_users_team",
                    (Users::Table, Users::TeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .col(pk_uuid(Accounts::Id))
                .col(string(Accounts::Name))
                .col(string_null(Accounts::Domain).unique_key())
                .col(string_null(Accounts::Industry))
                .col(string(Accounts::Segment))
                .col(integer_null(Accounts::Employees))
                .col(big_integer_null(Accounts::AnnualRevenue))
                .col(boolean(Accounts::IsTarget).default(false))
                .col(string(Accounts::Status))
                .col(timestamp_with_time_zone_null(Accounts::BecameCustomerAt))
                .col(timestamp_with_time_zone_null(Accounts::ChurnedAt))
                .col(uuid_null(Accounts::OwnerId))
                .col(string(Accounts::CreatedBy))
                .col(timestamp_with_time_zone(Accounts::CreatedAt))
                .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_accounts_owner",
                    (Accounts::Table, Accounts::OwnerId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Campaigns::Table)
                .col(pk_uuid(Campaigns::Id))
                .col(string(Campaigns::Name))
                .col(string(Campaigns::Channel))
                .col(string(Campaigns::Kind))
                .col(big_integer(Campaigns::Cost).default(0))
                .col(timestamp_with_time_zone(Campaigns::StartsAt))
                .col(timestamp_with_time_zone_null(Campaigns::EndsAt))
                .col(timestamp_with_time_zone(Campaigns::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Leads::Table)
                .col(pk_uuid(Leads::Id))
                .col(string_uniq(Leads::Email))
                .col(string_null(Leads::FirstName))
                .col(string_null(Leads::LastName))
                .col(string_null(Leads::Title))
                .col(string_null(Leads::Company))
                .col(uuid_null(Leads::AccountId))
                .col(string(Leads::Source))
                .col(uuid_null(Leads::CampaignId))
                .col(integer(Leads::Score).default(0))
                .col(string(Leads::Stage))
                .col(uuid_null(Leads::OwnerId))
                .col(uuid_null(Leads::TeamId))
                // No FK: opportunities reference leads; this is the way back.
                .col(uuid_null(Leads::ConvertedOpportunityId))
                .col(timestamp_with_time_zone_null(Leads::FirstTouchAt))
                .col(string(Leads::CreatedBy))
                .col(timestamp_with_time_zone(Leads::CreatedAt))
                .col(timestamp_with_time_zone(Leads::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_leads_account",
                    (Leads::Table, Leads::AccountId),
                    (Accounts::Table, Accounts::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_leads_campaign",
                    (Leads::Table, Leads::CampaignId),
                    (Campaigns::Table, Campaigns::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_leads_owner",
                    (Leads::Table, Leads::OwnerId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_leads_team",
                    (Leads::Table, Leads::TeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Touchpoints::Table)
                .col(pk_uuid(Touchpoints::Id))
                .col(uuid(Touchpoints::LeadId))
                .col(uuid(Touchpoints::CampaignId))
                .col(timestamp_with_time_zone(Touchpoints::OccurredAt))
                .col(timestamp_with_time_zone(Touchpoints::CreatedAt))
                .foreign_key(&mut fk(
                    "fk_touchpoints_lead",
                    (Touchpoints::Table, Touchpoints::LeadId),
                    (Leads::Table, Leads::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_touchpoints_campaign",
                    (Touchpoints::Table, Touchpoints::CampaignId),
                    (Campaigns::Table, Campaigns::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Opportunities::Table)
                .col(pk_uuid(Opportunities::Id))
                .col(string(Opportunities::Name))
                .col(uuid(Opportunities::AccountId))
                .col(uuid_null(Opportunities::LeadId))
                .col(uuid_null(Opportunities::OwnerId))
                .col(string(Opportunities::Stage))
                .col(big_integer(Opportunities::Amount).default(0))
                .col(string_len(Opportunities::Currency, 3))
                .col(date_null(Opportunities::ExpectedCloseDate))
                .col(timestamp_with_time_zone_null(Opportunities::ClosedAt))
                .col(string_null(Opportunities::LostReason))
                .col(string(Opportunities::SourcedBy))
                .col(string(Opportunities::CreatedBy))
                .col(timestamp_with_time_zone(Opportunities::CreatedAt))
                .col(timestamp_with_time_zone(Opportunities::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_opportunities_account",
                    (Opportunities::Table, Opportunities::AccountId),
                    (Accounts::Table, Accounts::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "fk_opportunities_lead",
                    (Opportunities::Table, Opportunities::LeadId),
                    (Leads::Table, Leads::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_opportunities_owner",
                    (Opportunities::Table, Opportunities::OwnerId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(StageChanges::Table)
                .col(pk_uuid(StageChanges::Id))
                .col(uuid_null(StageChanges::LeadId))
                .col(uuid_null(StageChanges::OpportunityId))
                .col(string_null(StageChanges::FromStage))
                .col(string(StageChanges::ToStage))
                .col(timestamp_with_time_zone(StageChanges::At))
                .col(string(StageChanges::Actor))
                .col(uuid_null(StageChanges::ActorUserId))
                .col(string_null(StageChanges::Reason))
                .foreign_key(&mut fk(
                    "fk_stage_changes_lead",
                    (StageChanges::Table, StageChanges::LeadId),
                    (Leads::Table, Leads::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_stage_changes_opportunity",
                    (StageChanges::Table, StageChanges::OpportunityId),
                    (Opportunities::Table, Opportunities::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ExternalIds::Table)
                .col(pk_uuid(ExternalIds::Id))
                .col(string(ExternalIds::RecordKind))
                .col(string(ExternalIds::System))
                .col(string(ExternalIds::ExternalId))
                .col(uuid(ExternalIds::RecordId))
                .col(timestamp_with_time_zone(ExternalIds::CreatedAt))
                .to_owned(),
        )
        .await?;

        let indexes = [
            index(
                "ux_external_ids_key",
                ExternalIds::Table,
                &["record_kind", "system", "external_id"],
            )
            .unique()
            .to_owned(),
            index(
                "ix_external_ids_record",
                ExternalIds::Table,
                &["record_kind", "record_id"],
            ),
            index("ix_users_team", Users::Table, &["team_id"]),
            index("ix_accounts_name", Accounts::Table, &["name", "id"]),
            index(
                "ix_accounts_created",
                Accounts::Table,
                &["created_at", "id"],
            ),
            index("ix_accounts_owner", Accounts::Table, &["owner_id"]),
            index("ix_leads_created", Leads::Table, &["created_at", "id"]),
            index("ix_leads_account", Leads::Table, &["account_id"]),
            index("ix_leads_owner", Leads::Table, &["owner_id"]),
            index("ix_leads_campaign", Leads::Table, &["campaign_id"]),
            index("ix_leads_team", Leads::Table, &["team_id"]),
            index(
                "ix_touchpoints_lead",
                Touchpoints::Table,
                &["lead_id", "occurred_at", "id"],
            ),
            index(
                "ix_touchpoints_campaign",
                Touchpoints::Table,
                &["campaign_id"],
            ),
            index(
                "ix_opportunities_account",
                Opportunities::Table,
                &["account_id"],
            ),
            index("ix_opportunities_lead", Opportunities::Table, &["lead_id"]),
            index(
                "ix_opportunities_owner",
                Opportunities::Table,
                &["owner_id"],
            ),
            index(
                "ix_opportunities_created",
                Opportunities::Table,
                &["created_at", "id"],
            ),
            index(
                "ix_opportunities_closed",
                Opportunities::Table,
                &["closed_at"],
            ),
            index(
                "ix_stage_changes_lead",
                StageChanges::Table,
                &["lead_id", "at"],
            ),
            index(
                "ix_stage_changes_opportunity",
                StageChanges::Table,
                &["opportunity_id", "at"],
            ),
        ];
        for stmt in indexes {
            m.create_index(stmt).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ExternalIds::Table.into_iden(),
            StageChanges::Table.into_iden(),
            Opportunities::Table.into_iden(),
            Touchpoints::Table.into_iden(),
            Leads::Table.into_iden(),
            Campaigns::Table.into_iden(),
            Accounts::Table.into_iden(),
            Users::Table.into_iden(),
            Teams::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
