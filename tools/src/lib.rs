//! Lockstep's CLI-only code, kept out of the server library: the
//! deterministic data generator behind `lockstep seed` (and the demo data of
//! a fresh embedded database), and `lockstep bench` with its HTTP client.

pub mod bench;
pub mod read_bench;
pub mod seed;
pub mod webhook_bench;
