//! Shared goals and the compensation linked to them: `goals` (with the teams
//! that share each, `goal_teams`), `goal_versions` (every target a goal ever
//! had, append-only), `compensation_plans`, `compensation_links` (plan →
//! goal) and `compensation_link_versions` (every weight and payout curve a
//! link ever had, and its removal, append-only). On PostgreSQL, the
//! `bi_goals` and `bi_compensation` views.
//!
//! Money, targets, weights and curve points are integers of 1/10,000 (as
//! every amount in Lockstep), so sums stay exact in SQL on both databases.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Goals {
    Table,
    Id,
    Name,
    Metric,
    Target,
    PeriodStart,
    PeriodEnd,
    Segment,
    Source,
    CampaignId,
    TeamId,
    ArchivedAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GoalTeams {
    Table,
    GoalId,
    TeamId,
}

#[derive(DeriveIden)]
enum GoalVersions {
    Table,
    Id,
    GoalId,
    Version,
    Target,
    ValidFrom,
    ChangedBy,
}

#[derive(DeriveIden)]
enum CompensationPlans {
    Table,
    Id,
    Name,
    TeamId,
    UserId,
    PeriodStart,
    PeriodEnd,
    VariableTarget,
    ActivatedAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CompensationLinks {
    Table,
    Id,
    PlanId,
    GoalId,
    Weight,
    Threshold,
    Accelerator,
    Cap,
    RemovedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CompensationLinkVersions {
    Table,
    Id,
    LinkId,
    PlanId,
    GoalId,
    Version,
    Weight,
    Threshold,
    Accelerator,
    Cap,
    Removed,
    ValidFrom,
    ChangedBy,
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
enum Campaigns {
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

/// One row per goal and sharing team, with the goal's current target.
const BI_GOALS: &str = "CREATE VIEW bi_goals AS
 SELECT g.id AS goal_id, g.name AS goal_name, g.metric,
        g.target / 10000.0 AS target,
        g.period_start, g.period_end,
        g.segment AS filter_segment, g.source AS filter_source,
        g.campaign_id AS filter_campaign_id, g.team_id AS filter_team_id,
        gt.team_id AS shared_by_team_id, t.name AS shared_by_team_name, t.function AS shared_by_team_function,
        (SELECT COUNT(DISTINCT t2.function) FROM goal_teams gt2 JOIN teams t2 ON t2.id = gt2.team_id WHERE gt2.goal_id = g.id) AS functions_sharing,
        g.metric IN ('REVENUE_WON', 'QUALIFIED_LEADS_WON', 'NEW_CUSTOMERS', 'PIPELINE_CREATED', 'RETENTION') AS revenue_metric,
        g.archived_at, g.created_at
 FROM goals g
 LEFT JOIN goal_teams gt ON gt.goal_id = g.id
 LEFT JOIN teams t ON t.id = gt.team_id";

const BI_GOALS_COMMENT: &str = "One row per goal and team that shares it (a goal no team shares has one row with null team columns): metric, current target (money in the deployment currency, counts, or rates as fractions), half-open period, filters, how many distinct team functions share it, and whether its metric is measured in revenue. No compensation data.";

/// One row per plan and link in force now (weights and curves as they stand).
const BI_COMPENSATION: &str = "CREATE VIEW bi_compensation AS
 SELECT p.id AS plan_id, p.name AS plan_name, p.team_id AS plan_team_id, p.user_id AS plan_user_id,
        COALESCE(p.team_id, u.team_id) AS team_id,
        p.period_start, p.period_end, p.variable_target / 10000.0 AS variable_target,
        p.activated_at IS NOT NULL AS active, p.activated_at,
        l.id AS link_id, l.goal_id, g.name AS goal_name, g.metric AS goal_metric,
        l.weight / 10000.0 AS weight, l.threshold / 10000.0 AS threshold,
        l.accelerator / 10000.0 AS accelerator, l.cap / 10000.0 AS cap,
        p.variable_target * l.weight / 100000000.0 AS variable_at_target
 FROM compensation_plans p
 LEFT JOIN users u ON u.id = p.user_id
 LEFT JOIN compensation_links l ON l.plan_id = p.id AND l.removed_at IS NULL
 LEFT JOIN goals g ON g.id = l.goal_id";

const BI_COMPENSATION_COMMENT: &str = "Compensation data (restrict it: see the README): one row per plan and link in force now (a plan without links has one row with null link columns): the plan's team or user, period, variable target, whether it is active, and each link's goal, weight, threshold, accelerator, cap and the variable pay it carries at 100% attainment.";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Goals::Table)
                .col(pk_uuid(Goals::Id))
                .col(string(Goals::Name))
                .col(string(Goals::Metric))
                .col(big_integer(Goals::Target))
                .col(timestamp_with_time_zone(Goals::PeriodStart))
                .col(timestamp_with_time_zone(Goals::PeriodEnd))
                .col(string_null(Goals::Segment))
                .col(string_null(Goals::Source))
                .col(uuid_null(Goals::CampaignId))
                .col(uuid_null(Goals::TeamId))
                .col(timestamp_with_time_zone_null(Goals::ArchivedAt))
                .col(string(Goals::CreatedBy))
                .col(timestamp_with_time_zone(Goals::CreatedAt))
                .col(timestamp_with_time_zone(Goals::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_goals_campaign",
                    (Goals::Table, Goals::CampaignId),
                    (Campaigns::Table, Campaigns::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "fk_goals_team",
                    (Goals::Table, Goals::TeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(GoalTeams::Table)
                .col(uuid(GoalTeams::GoalId))
                .col(uuid(GoalTeams::TeamId))
                .primary_key(
                    Index::create()
                        .col(GoalTeams::GoalId)
                        .col(GoalTeams::TeamId),
                )
                .foreign_key(&mut fk(
                    "fk_goal_teams_goal",
                    (GoalTeams::Table, GoalTeams::GoalId),
                    (Goals::Table, Goals::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_goal_teams_team",
                    (GoalTeams::Table, GoalTeams::TeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(GoalVersions::Table)
                .col(pk_uuid(GoalVersions::Id))
                .col(uuid(GoalVersions::GoalId))
                .col(integer(GoalVersions::Version))
                .col(big_integer(GoalVersions::Target))
                .col(timestamp_with_time_zone(GoalVersions::ValidFrom))
                .col(string(GoalVersions::ChangedBy))
                .foreign_key(&mut fk(
                    "fk_goal_versions_goal",
                    (GoalVersions::Table, GoalVersions::GoalId),
                    (Goals::Table, Goals::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CompensationPlans::Table)
                .col(pk_uuid(CompensationPlans::Id))
                .col(string(CompensationPlans::Name))
                .col(uuid_null(CompensationPlans::TeamId))
                .col(uuid_null(CompensationPlans::UserId))
                .col(timestamp_with_time_zone(CompensationPlans::PeriodStart))
                .col(timestamp_with_time_zone(CompensationPlans::PeriodEnd))
                .col(big_integer(CompensationPlans::VariableTarget))
                .col(timestamp_with_time_zone_null(
                    CompensationPlans::ActivatedAt,
                ))
                .col(string(CompensationPlans::CreatedBy))
                .col(timestamp_with_time_zone(CompensationPlans::CreatedAt))
                .col(timestamp_with_time_zone(CompensationPlans::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_compensation_plans_team",
                    (CompensationPlans::Table, CompensationPlans::TeamId),
                    (Teams::Table, Teams::Id),
                    ForeignKeyAction::Restrict,
                ))
                .foreign_key(&mut fk(
                    "fk_compensation_plans_user",
                    (CompensationPlans::Table, CompensationPlans::UserId),
                    (Users::Table, Users::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CompensationLinks::Table)
                .col(pk_uuid(CompensationLinks::Id))
                .col(uuid(CompensationLinks::PlanId))
                .col(uuid(CompensationLinks::GoalId))
                .col(big_integer(CompensationLinks::Weight))
                .col(big_integer(CompensationLinks::Threshold))
                .col(big_integer(CompensationLinks::Accelerator))
                .col(big_integer(CompensationLinks::Cap))
                .col(timestamp_with_time_zone_null(CompensationLinks::RemovedAt))
                .col(timestamp_with_time_zone(CompensationLinks::CreatedAt))
                .col(timestamp_with_time_zone(CompensationLinks::UpdatedAt))
                .foreign_key(&mut fk(
                    "fk_compensation_links_plan",
                    (CompensationLinks::Table, CompensationLinks::PlanId),
                    (CompensationPlans::Table, CompensationPlans::Id),
                    ForeignKeyAction::Cascade,
                ))
                .foreign_key(&mut fk(
                    "fk_compensation_links_goal",
                    (CompensationLinks::Table, CompensationLinks::GoalId),
                    (Goals::Table, Goals::Id),
                    ForeignKeyAction::Restrict,
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(CompensationLinkVersions::Table)
                .col(pk_uuid(CompensationLinkVersions::Id))
                .col(uuid(CompensationLinkVersions::LinkId))
                .col(uuid(CompensationLinkVersions::PlanId))
                .col(uuid(CompensationLinkVersions::GoalId))
                .col(integer(CompensationLinkVersions::Version))
                .col(big_integer(CompensationLinkVersions::Weight))
                .col(big_integer(CompensationLinkVersions::Threshold))
                .col(big_integer(CompensationLinkVersions::Accelerator))
                .col(big_integer(CompensationLinkVersions::Cap))
                .col(boolean(CompensationLinkVersions::Removed).default(false))
                .col(timestamp_with_time_zone(
                    CompensationLinkVersions::ValidFrom,
                ))
                .col(string(CompensationLinkVersions::ChangedBy))
                .foreign_key(&mut fk(
                    "fk_compensation_link_versions_link",
                    (
                        CompensationLinkVersions::Table,
                        CompensationLinkVersions::LinkId,
                    ),
                    (CompensationLinks::Table, CompensationLinks::Id),
                    ForeignKeyAction::Cascade,
                ))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        for sql in [
            // Team.goals, alignment: the goals a team shares.
            "CREATE INDEX ix_goal_teams_team ON goal_teams (team_id, goal_id)",
            "CREATE INDEX ix_goals_period ON goals (period_start, period_end)",
            "CREATE UNIQUE INDEX ux_goal_versions ON goal_versions (goal_id, version)",
            "CREATE INDEX ix_compensation_plans_team ON compensation_plans (team_id)",
            "CREATE INDEX ix_compensation_plans_user ON compensation_plans (user_id)",
            // A goal is linked to a plan at most once at a time.
            "CREATE UNIQUE INDEX ux_compensation_links_live ON compensation_links (plan_id, goal_id) WHERE removed_at IS NULL",
            "CREATE UNIQUE INDEX ux_compensation_link_versions ON compensation_link_versions (link_id, version)",
            // A statement as of a time: a plan's link versions by time.
            "CREATE INDEX ix_compensation_link_versions_plan ON compensation_link_versions (plan_id, valid_from)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        if db.get_database_backend() == DbBackend::Postgres {
            for (view, sql, comment) in [
                ("bi_goals", BI_GOALS, BI_GOALS_COMMENT),
                ("bi_compensation", BI_COMPENSATION, BI_COMPENSATION_COMMENT),
            ] {
                db.execute_unprepared(sql).await?;
                db.execute_unprepared(&format!(
                    "COMMENT ON VIEW {view} IS '{}'",
                    comment.replace('\'', "''")
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP VIEW IF EXISTS bi_compensation")
                .await?;
            db.execute_unprepared("DROP VIEW IF EXISTS bi_goals")
                .await?;
        }
        for t in [
            CompensationLinkVersions::Table.into_iden(),
            CompensationLinks::Table.into_iden(),
            CompensationPlans::Table.into_iden(),
            GoalVersions::Table.into_iden(),
            GoalTeams::Table.into_iden(),
            Goals::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}
