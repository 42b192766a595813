//! The shared revenue metrics defined in `docs/metrics.md`, computed by the
//! database in SQL (one or two statements a metric). `service` knows SQL and
//! SeaORM, `graphql` the GraphQL types.

pub mod cache;
pub mod graphql;
pub mod handoffs;
pub mod rollups;
pub mod service;
pub(crate) mod sql;
pub mod timings;

pub use service::*;
