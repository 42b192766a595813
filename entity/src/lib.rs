//! SeaORM entities of Lockstep: one module per table, no business logic.
//!
//! Conventions shared by every table:
//! - ids are UUIDs (v7, so they sort by creation time);
//! - times are UTC (`DateTimeUtc`);
//! - money is stored as integer units of 1/10,000 of the deployment currency
//!   (see [`money`]), so sums are exact in SQL on both SQLite and PostgreSQL;
//! - enums are stored as their upper-case names.

pub mod account;
pub mod campaign;
pub mod compensation_link;
pub mod compensation_link_version;
pub mod compensation_plan;
pub mod enums;
pub mod external_id;
pub mod goal;
pub mod goal_team;
pub mod goal_version;
pub mod handoff;
pub mod integration;
pub mod job;
pub mod job_schedule;
pub mod lead;
pub mod money;
pub mod opportunity;
pub mod sla_policy;
pub mod stage_change;
pub mod team;
pub mod touchpoint;
pub mod user;
pub mod webhook_event;

pub mod prelude {
    pub use super::account::Entity as Account;
    pub use super::campaign::Entity as Campaign;
    pub use super::compensation_link::Entity as CompensationLink;
    pub use super::compensation_link_version::Entity as CompensationLinkVersion;
    pub use super::compensation_plan::Entity as CompensationPlan;
    pub use super::external_id::Entity as ExternalId;
    pub use super::goal::Entity as Goal;
    pub use super::goal_team::Entity as GoalTeam;
    pub use super::goal_version::Entity as GoalVersion;
    pub use super::handoff::Entity as Handoff;
    pub use super::integration::Entity as Integration;
    pub use super::job::Entity as Job;
    pub use super::job_schedule::Entity as JobSchedule;
    pub use super::lead::Entity as Lead;
    pub use super::opportunity::Entity as Opportunity;
    pub use super::sla_policy::Entity as SlaPolicy;
    pub use super::stage_change::Entity as StageChange;
    pub use super::team::Entity as Team;
    pub use super::touchpoint::Entity as Touchpoint;
    pub use super::user::Entity as User;
    pub use super::webhook_event::Entity as WebhookEvent;
}
