//! Shared goals (`service`), what they have reached (`actuals`: read
//! through the metrics service, so they follow the rollups), and their
//! GraphQL half. Definitions are in docs/goals.md.

pub mod actuals;
pub mod graphql;
pub mod service;
