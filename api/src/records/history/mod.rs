pub mod graphql;
pub mod service;
