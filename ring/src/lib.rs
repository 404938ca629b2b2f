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
//!
//! # Driving a node
//!
//! The driver (the proxy's shell, the simulator, this example) owns the
//! sockets and the clock. After anything it feeds the node, it sends what
//! `poll_send` writes, acts on `poll_event`, and wakes the node at
//! `poll_timeout`:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use sipring_ring::{Config, Event, Instant, Member, Node, id};
//!
//! let member = |core: u16| {
//!     let addr = SocketAddr::from(([127, 0, 0, 1], 5100 + core));
//!     Member::new(id::member_id(b"proxy-a", core), addr, core)
//! };
//! let mut nodes = [Node::new(member(0), Config::default()), Node::new(member(1), Config::default())];
//! let mut now = Instant::from_millis(1);
//! nodes[0].create(now); // a new ring
//! nodes[1].join(now, member(0).addr); // join through any member's address
//!
//! let mut buf = Vec::new();
//! let mut owned = [0u128; 2];
//! for _ in 0..100 {
//!     // Deliver every datagram (a real shell sends them over UDP).
//!     for i in 0..2 {
//!         while let Some(t) = nodes[i].poll_send(&mut buf) {
//!             let to = nodes.iter().position(|n| n.me().addr == t.dest).unwrap();
//!             let from = nodes[i].me().addr;
//!             nodes[to].handle(now, from, &buf[..t.len]).unwrap();
//!         }
//!         while let Some(ev) = nodes[i].poll_event() {
//!             match ev {
//!                 Event::Acquired { slice, .. } => owned[i] += slice.len(), // load its state
//!                 Event::Released { slice, .. } => owned[i] -= slice.len(), // hand it over
//!                 _ => {}
//!             }
//!         }
//!     }
//!     // Sleep until the earliest timer.
//!     now = nodes.iter_mut().filter_map(|n| n.poll_timeout()).min().unwrap();
//!     nodes.iter_mut().for_each(|n| n.handle_timeout(now));
//! }
//! // The two members split the ring between them, and agree on every key.
//! assert_eq!(owned[0] + owned[1], 1 << 64);
//! let key = sipring_ring::key_id(b"a84b4c76e66710@pc33.atlanta.com");
//! assert!(nodes[0].owns(key) != nodes[1].owns(key));
//! ```
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
