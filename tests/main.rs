//! Lockstep's integration tests: one binary, a module per area. Every data
//! test runs on SQLite and on PostgreSQL (see `harness`).

#[allow(dead_code)] // not every helper is used by every module
mod harness;

mod accounts;
mod auth;
mod bench_reads;
mod cache;
mod cli;
mod concurrency;
mod goals;
mod handoffs;
mod hostile;
mod http;
mod import_cli;
mod imports;
mod jobs;
mod leads;
mod metrics;
mod numbers;
mod opportunities;
mod ops;
mod plans;
mod reference;
mod rollups;
mod rows;
mod seed;
mod webhooks;
