//! Lockstep's integration tests: one binary, a module per area. Every data
//! test runs on SQLite and on PostgreSQL (see `harness`).

mod harness;

mod accounts;
mod auth;
mod http;
