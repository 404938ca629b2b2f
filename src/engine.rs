//! The boundary between one core's sans-IO protocol engine and the glommio
//! shell that drives it.
//!
//! The shell owns sockets, connections, timers and threads; the engine owns
//! every protocol decision. The shell feeds the engine what arrived
//! (`handle_message`, `handle_handoff`, `handle_reply`) and the current time,
//! then drains what the engine wants done (`poll_transmit`, `poll_request`)
//! and sleeps until `poll_timeout`. Nothing here imports glommio, tokio or
//! scylla, so the whole engine runs under virtual time in tests (the
//! quinn-proto pattern, see docs/examples-to-follow.md).
//!
//! Ownership: every message belongs to the core that owns its Call-ID
//! (`owner_core`). A message that arrives on another core is handed off to
//! the owner with `Disposition::HandOff`; the owner writes its private port
//! into the Via and Record-Route it adds, so responses and in-dialog requests
//! come straight back to it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::counters::CoreCounters;
use crate::time::Instant;

/// Index of a core (shard) within one sipring process.
pub type CoreId = u16;

/// The SIP transport a message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One message per datagram.
    Udp,
    /// A byte stream framed by Content-Length.
    Tcp,
}

/// A stream connection. Each connection is owned by the core that accepted or
/// opened it; a transmit on a connection owned by another core is carried
/// there by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// The core that owns the socket.
    pub core: CoreId,
    /// Unique within that core for the life of the process.
    pub id: u32,
}

/// The remote end of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Remote address and port.
    pub addr: SocketAddr,
    /// Transport to use or used.
    pub transport: Transport,
    /// For streams: the connection it came on, or to send on. `None` on a
    /// transmit asks the shell to reuse a connection to `addr` or open one.
    pub conn: Option<ConnId>,
}

/// Which of this core's sockets a message arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The public SIP port, shared by all cores with SO_REUSEPORT.
    Public,
    /// This core's private port (advertised in its Via and Record-Route).
    Private,
}

/// A complete SIP message as it arrived (one datagram, or one framed message
/// from a stream).
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    /// The message bytes, borrowed from the shell's receive buffer.
    pub bytes: &'a [u8],
    /// Who sent it and how.
    pub peer: Peer,
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// Which socket it arrived on.
    pub listener: Listener,
}

/// What the engine did with a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Handled here (including answered with an error or dropped and counted).
    Consumed,
    /// Owned by another core: the shell copies the bytes there, where they
    /// enter through `handle_handoff`.
    HandOff(CoreId),
}

/// A message the engine wrote into the shell's output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: Peer,
    /// Number of bytes written at the start of the output buffer.
    pub len: usize,
    /// For UDP: which of this core's sockets sends it. Requests the engine
    /// forwards or originates go out of `Private` (the port in its Via, so
    /// rport responses come back to this core); a response goes out of the
    /// listener its request arrived on (`Received::listener`). Ignored for
    /// TCP, where the connection decides.
    pub source: Listener,
}

/// A connection-level fact the shell reports to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// A stream connection closed or failed; transactions using it fail over
    /// or time out as RFC 3261 §18 says.
    Closed(ConnId),
    /// An outbound connection to this address could not be opened (refused,
    /// unreachable, timed out): what was queued on it is lost. Reported
    /// just before that connection's `Closed`, so a request sent over TCP
    /// because of its size can be retried over UDP (RFC 3261 §18.1.1).
    ConnectFailed(SocketAddr),
}

/// Work the engine asks the shell to do off the packet path. Each request
/// carries a token that comes back with its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Resolve a host name to addresses (A/AAAA), for routing.
    Resolve {
        /// Correlates the reply.
        token: u64,
        /// The name to resolve.
        host: String,
    },
    /// Run a store operation (a user or bindings look-up, a bindings
    /// update): the shell hands it to the store's thread and feeds the
    /// answer back as `Reply::Store`; without a store the answer is
    /// `StoreError::Unavailable`. Never blocks the core.
    Store {
        /// Correlates the reply.
        token: u64,
        /// What to do.
        op: crate::store::StoreOp,
    },
}

/// The answer to a `Request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Addresses for a `Resolve`; empty when the name does not resolve.
    Resolved {
        /// The request's token.
        token: u64,
        /// The addresses found (ports are 0: the engine applies its own).
        addrs: Vec<std::net::IpAddr>,
    },
    /// The answer to a `Request::Store`.
    Store {
        /// The request's token.
        token: u64,
        /// The store's answer.
        answer: Result<crate::store::StoreAnswer, crate::store::StoreError>,
    },
}

/// What the shell tells an engine about its core when it builds it: the shell
/// calls the factory `Fn(CoreContext) -> E` once per core, on that core's
/// thread (so `E` need not be `Send`).
#[derive(Clone, Debug)]
pub struct CoreContext {
    /// This core.
    pub core: CoreId,
    /// Number of cores in this process (the `cores` argument of `owner_core`).
    pub cores: CoreId,
    /// The public UDP socket's address (shared by all cores), if UDP is on.
    pub public_udp: Option<SocketAddr>,
    /// The public TCP listener's address (shared by all cores), if TCP is on.
    pub public_tcp: Option<SocketAddr>,
    /// This core's private UDP address (`private_base + core`), if UDP is on.
    pub private_udp: Option<SocketAddr>,
    /// This core's private TCP address (same port), if TCP is on.
    pub private_tcp: Option<SocketAddr>,
    /// The host to write into Via sent-by and Record-Route: the configured
    /// `advertise` address, else the listen IP when it is not a wildcard, else
    /// the domain.
    pub advertised_host: String,
    /// This core's counters: the engine's metrics sink (see `crate::counters`).
    pub counters: Arc<CoreCounters>,
}

/// One core's sans-IO protocol engine, driven by the shell.
pub trait Engine {
    /// A message arrived on one of this core's sockets.
    fn handle_message(&mut self, now: Instant, msg: Received<'_>) -> Disposition;

    /// A message another core handed to this one; it is handled here whatever
    /// its key says (never handed off again).
    fn handle_handoff(&mut self, now: Instant, msg: Received<'_>);

    /// A reply to an earlier `Request`.
    fn handle_reply(&mut self, now: Instant, reply: Reply);

    /// A connection event.
    fn handle_conn_event(&mut self, now: Instant, event: ConnEvent);

    /// Fire every timer due at or before `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// When `handle_timeout` must next be called, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next message to send: written into `buf` (cleared first), with
    /// its destination. `None` when there is nothing to send.
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit>;

    /// The next request for the shell, if any.
    fn poll_request(&mut self) -> Option<Request>;

    /// Shutdown has begun (SIGINT/SIGTERM): from now on take no new
    /// transactions (answer new requests 503 or drop them, counting
    /// `DropReason::Draining`), but finish those in flight. The shell keeps
    /// feeding messages and timers until `is_idle` or its drain bound.
    fn drain(&mut self, now: Instant) {
        let _ = now;
    }

    /// No transaction is in flight, so the process may exit. Checked by the
    /// shell after `drain`. The default (always idle) suits stateless engines.
    fn is_idle(&self) -> bool {
        true
    }
}

/// The core that owns a key (a Call-ID), given the key's 64-bit ring id and
/// the number of cores: the key space is cut into `cores` equal contiguous
/// slices, as the Chord ring cuts it between members.
pub fn owner_core(key_id: u64, cores: CoreId) -> CoreId {
    let cores = u128::from(cores.max(1));
    // The product is < 2^64 * cores, so the shift yields a value < cores.
    CoreId::try_from((u128::from(key_id) * cores) >> 64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_core_cuts_the_key_space_into_equal_slices() {
        assert_eq!(owner_core(0, 4), 0);
        assert_eq!(owner_core(u64::MAX / 4, 4), 0);
        assert_eq!(owner_core(u64::MAX / 4 + 1, 4), 1);
        assert_eq!(owner_core(u64::MAX, 4), 3);
        assert_eq!(owner_core(u64::MAX, 1), 0);
        assert_eq!(owner_core(12345, 0), 0);
    }
}
