//! Lockstep's library: configuration, auth, the GraphQL schema, services and
//! the HTTP surface. `App::build` turns a `Config` into a ready router.

pub mod auth;
pub mod compensation;
pub mod config;
pub mod db;
pub mod error;
pub mod goals;
pub mod graphql;
pub mod http;
pub mod import;
pub mod jobs;
pub mod metrics;
pub mod pagination;
pub mod records;
pub mod rows;
pub mod setup;
pub mod telemetry;
pub mod uow;
pub mod webhooks;

pub use config::Config;
pub use http::App;
