//! sipring: a thread-per-core stateful SIP proxy cluster.
//!
//! The sans-IO protocol core (transactions, proxy logic, registrar) lives in
//! modules that never touch a socket or read a clock; the glommio shell and
//! the storage thread drive it. See `docs/architecture.md`.

pub mod auth;
pub mod cli;
pub mod config;
pub mod counters;
pub mod engine;
pub mod location;
pub mod metrics;
pub mod proxy;
pub mod registrar;
pub mod relay;
pub mod shell;
pub mod store;
pub mod time;
pub mod timer;
pub mod transaction;
pub mod users;
