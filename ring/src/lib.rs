//! sipring-ring: the Chord ring that sipring's proxies join.
//!
//! Each core of each proxy is a ring member (a virtual node) owning a slice of
//! the key space (AORs, Call-IDs). The crate will hold a sans-IO Chord node
//! (`handle(now, from, msg)`, `poll_send()`, `poll_timeout()`, `lookup(key)`),
//! its binary wire format, a lock-free per-core routing cache and a
//! deterministic many-node simulator. It performs no I/O and reads no clock.
#![forbid(unsafe_code)]

pub mod id;

pub use id::key_id;
