//! Hand-offs and SLA policies: `sla_policies` (one active policy per route
//! fromTeam → toTeam) and `handoffs` (a lead or an opportunity passed from
//! one team to another, answered or expired), and on PostgreSQL the
//! `bi_handoffs` view.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SlaPolicies {
    Table,
    Id,
    Name,
    FromTeamId,
    ToTeamId,
    Period,
    QualifiedLeadTarget,
    ResponseHours,
    MinScore,
    Segments,
    Sources,
    AutoHandOff,
    ArchivedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Handoffs {
    Table,
    Id,
    LeadId,
    OpportunityId,
    FromTeamId,
    ToTeamId,
    FromUserId,
    ToUserId,
    RespondedById,
    PolicyId,
    Status,
    Reason,
    Note,
    ResponseNote,
    HandedAt,
    DueAt,
    RespondedAt,
    ExpiredAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Leads {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Opportunities {
    Table,
    Id,
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

pub(crate) const BI_HANDOFFS: &str = "CREATE VIEW bi_handoffs AS
 SELECT h.id AS handoff_id,
        CASE WHEN h.lead_id IS NOT NULL THEN 'LEAD' ELSE 'OPPORTUNITY' END AS record_type,
        h.lead_id, COALESCE(h.opportunity_id, l.converted_opportunity_id) AS opportunity_id,
        h.from_team_id, ft.name AS from_team_name, ft.function AS from_team_function,
        h.to_team_id, tt.name AS to_team_name, tt.function AS to_team_function,
        h.from_user_id, h.to_user_id, h.responded_by_id, h.policy_id,
        h.status, h.reason, h.handed_at, h.due_at, h.responded_at, h.expired_at,
        CASE WHEN h.responded_at IS NOT NULL THEN date_part('epoch', h.responded_at - h.handed_at) / 3600 END AS response_hours,
        (h.due_at IS NOT NULL AND h.status IN ('ACCEPTED', 'REJECTED') AND h.responded_at <= h.due_at) AS answered_in_time,
        (h.status = 'PENDING' AND h.due_at < now()) AS overdue,
        (h.status = 'ACCEPTED' AND o.id IS NOT NULL) AS accepted_to_opportunity,
        (h.status = 'ACCEPTED' AND o.stage = 'CLOSED_WON') AS accepted_won,
        l.source AS lead_source, l.campaign_id AS lead_campaign_id, a.segment
 FROM handoffs h
 JOIN teams ft ON ft.id = h.from_team_id
 JOIN teams tt ON tt.id = h.to_team_id
 LEFT JOIN leads l ON l.id = h.lead_id
 LEFT JOIN opportunities o ON o.id = COALESCE(h.opportunity_id, l.converted_opportunity_id)
 LEFT JOIN accounts a ON a.id = COALESCE(o.account_id, l.account_id)";

const BI_HANDOFFS_COMMENT: &str = "One row per hand-off: route (teams and their functions), status, rejection reason, handed/due/responded times, response hours, whether it was answered in time (ACCEPTED or REJECTED at or before due_at), whether it is overdue now, and whether an accepted one went on to an opportunity and a win. No personal data (notes are left out).";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SlaPolicies::Table)
                .col(pk_uuid(SlaPolicies::Id))
                .col(string(SlaPolicies::Name))
                .col(uuid(SlaPolicies::FromTeamId))
                .col(uuid(SlaPolicies::ToTeamId))
                .col(string(SlaPolicies::Period))
                .col(integer(SlaPolicies::QualifiedLeadTarget))
                .col(integer(SlaPolicies::ResponseHours))
                .col(integer_null(SlaPolicies::MinScore))
                .col(string_null(SlaPolicies::Segments))
                .col(string_null(SlaPolicies::Sources))
                .col(boolean(SlaPolicies::AutoHandOff).default(false))
                .col(timestamp_with_time_zone_null(SlaPolicies::ArchivedAt))
                .col(timestamp_with_time_zone(SlaPolicies::CreatedAt))
                .col(timestamp_with_time_zone(SlaPolicies::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_sla_policies_from_team",
                    (SlaPolicies::Table, SlaPolicies::FromTeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "fk_sla_policies_to_team",
                    (SlaPolicies::Table, SlaPolicies::ToTeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Handoffs::Table)
                .col(pk_uuid(Handoffs::Id))
                .col(uuid_null(Handoffs::LeadId))
                .col(uuid_null(Handoffs::OpportunityId))
                .col(uuid(Handoffs::FromTeamId))
                .col(uuid(Handoffs::ToTeamId))
                .col(uuid_null(Handoffs::FromUserId))
                .col(uuid_null(Handoffs::ToUserId))
                .col(uuid_null(Handoffs::RespondedById))
                .col(uuid_null(Handoffs::PolicyId))
                .col(string(Handoffs::Status))
                .col(string_null(Handoffs::Reason))
                .col(text_null(Handoffs::Note))
                .col(text_null(Handoffs::ResponseNote))
                .col(timestamp_with_time_zone(Handoffs::HandedAt))
                .col(timestamp_with_time_zone_null(Handoffs::DueAt))
                .col(timestamp_with_time_zone_null(Handoffs::RespondedAt))
                .col(timestamp_with_time_zone_null(Handoffs::ExpiredAt))
                .col(string(Handoffs::CreatedBy))
                .col(timestamp_with_time_zone(Handoffs::CreatedAt))
                .col(timestamp_with_time_zone(Handoffs::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_handoffs_lead",
                    (Handoffs::Table, Handoffs::LeadId),
                    (Leads::Table, Leads::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_opportunity",
                    (Handoffs::Table, Handoffs::OpportunityId),
                    (Opportunities::Table, Opportunities::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_from_team",
                    (Handoffs::Table, Handoffs::FromTeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_to_team",
                    (Handoffs::Table, Handoffs::ToTeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_from_user",
                    (Handoffs::Table, Handoffs::FromUserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_to_user",
                    (Handoffs::Table, Handoffs::ToUserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_responded_by",
                    (Handoffs::Table, Handoffs::RespondedById),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::SetNull,
                ))
                .foreign_key(&mut fk(
                    "fk_handoffs_policy",
                    (Handoffs::Table, Handoffs::PolicyId),
                    (SlaPolicies::Table, SlaPolicies::Id),
                    ForeignKeyAction::SetNull,
                ))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        for sql in [
            // At most one active policy per route; at most one PENDING hand-off per record.
            "CREATE UNIQUE INDEX ux_sla_policies_route ON sla_policies (from_team_id, to_team_id) WHERE archived_at IS NULL",
            "CREATE UNIQUE INDEX ux_handoffs_pending_lead ON handoffs (lead_id) WHERE status = 'PENDING' AND lead_id IS NOT NULL",
            "CREATE UNIQUE INDEX ux_handoffs_pending_opportunity ON handoffs (opportunity_id) WHERE status = 'PENDING' AND opportunity_id IS NOT NULL",
            // Lead.handoffs, Opportunity.handoffs.
            "CREATE INDEX ix_handoffs_lead ON handoffs (lead_id, handed_at)",
            "CREATE INDEX ix_handoffs_opportunity ON handoffs (opportunity_id, handed_at)",
            // The expiry job and `overdue`: PENDING ones by due time.
            "CREATE INDEX ix_handoffs_status_due ON handoffs (status, due_at)",
            // SLA compliance: a policy's hand-offs due in a period.
            "CREATE INDEX ix_handoffs_policy_due ON handoffs (policy_id, due_at)",
            // Hand-off audit and lists: hand-offs handed in a period.
            "CREATE INDEX ix_handoffs_handed ON handoffs (handed_at, id)",
            "CREATE INDEX ix_handoffs_to_team ON handoffs (to_team_id, handed_at)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(BI_HANDOFFS).await?;
            db.execute_unprepared(&format!(
                "COMMENT ON VIEW bi_handoffs IS '{}'",
                BI_HANDOFFS_COMMENT.replace('\'', "''")
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP VIEW IF EXISTS bi_handoffs")
                .await?;
        }
        m.drop_table(Table::drop().table(Handoffs::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(SlaPolicies::Table).to_owned())
            .await?;
        Ok(())
    }
}
