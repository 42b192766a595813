//! Compensation plans paid on shared goals: plans and their links to goals
//! (`service`, every edit kept as a version), the payout curve (`payout`,
//! exact money), the alignment report (`alignment`), and the GraphQL half.
//! Definitions are in docs/goals.md.

pub mod alignment;
pub mod graphql;
pub mod payout;
pub mod service;
