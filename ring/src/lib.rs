//! sipring-ring: the Chord ring that sipring's proxies join.
//!
//! Each core of each proxy is a ring member (a virtual node, `Member`)
//! owning the slice of the 64-bit key space between its predecessor and
//! itself (AORs and Call-IDs placed by `key_id`). The crate performs no I/O
//! and reads no clock; time comes in as `time::Instant`.
//!
//! - `node::Node`: the sans-IO Chord member (Stoica et al. 2001 with
//!   successor lists): `create`/`join`/`leave`, `handle(now, from, bytes)`,
//!   `handle_timeout(now)`, `poll_timeout()`, `poll_send(buf)`,
//!   `poll_event()`, `lookup(now, key)`. Events say when the member's slice
//!   grows or shrinks, so the proxy loads or hands over that slice's state.
//! - `wire`: the versioned binary message format; its decoder never panics
//!   (fuzz target `wire` in `ring/fuzz`).
//! - `cache`: the per-core routing cache, an immutable `RoutingSnapshot`
//!   passed between cores as an `Arc` by message, plus cached lookup
//!   answers, dropped when the routing changes.
//! - `sim`: a deterministic simulator of thousands of members in one
//!   process (seeded RNG, event queue, virtual time, latency, loss, joins,
//!   crashes, leaves, partitions) with an oracle that checks ownership.
//! - `id`: `key_id`, interval arithmetic on the ring, member placement, and
//!   why the identifiers are 64 bits.
#![forbid(unsafe_code)]

pub mod cache;
pub mod id;
pub mod member;
pub mod node;
pub mod sim;
pub mod time;
pub mod wire;

pub use cache::{RoutingCache, RoutingSnapshot};
pub use id::{Slice, key_id};
pub use member::Member;
pub use node::{Answer, Config, Event, LookupError, LookupId, Node, State, Transmit};
pub use time::Instant;
