//! The core records. Each has a `service` (SeaORM, no GraphQL) and a
//! `graphql` half (types and resolvers that check roles and call the service).
//! Inputs every record's GraphQL half shares are in `crate::graphql::inputs`.

pub mod accounts;
pub mod campaigns;
pub mod common;
pub mod external_ids;
pub mod handoffs;
pub mod history;
pub mod leads;
pub mod opportunities;
pub mod stage_changes;
pub mod teams;
pub mod users;
