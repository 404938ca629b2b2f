//! The blind relay: the floor cost of moving SIP packets through a user-space
//! process, with no parsing at all.
//!
//! A relay sits where the proxy would: sipp's caller sends to the relay's
//! caller-facing address, the relay forwards every datagram unchanged to the
//! callee from a second, callee-facing socket, and everything arriving on that
//! socket goes back to the caller. The mapping is fixed (one caller, one callee)
//! because nothing is parsed: responses are addressed by which socket they
//! arrive on, not by Via. sipp's callee answers to the address a request came
//! from, so it replies to the callee-facing socket. Over TCP the relay accepts
//! the caller's connection, opens one to the callee, and copies bytes both ways.
//!
//! Two builds of the same relay: [`std_net`] on blocking std sockets (one
//! thread per direction) and [`glommio_net`] on a pinned glommio executor with
//! `glommio::net` sockets (io_uring), the runtime sipring's data plane uses.
//! The harness runs them as `sipring-bench relay ...`.
//!
//! Every relay exits by itself after its lifetime, so no loop runs unbounded
//! even if the harness that started it dies.

pub mod glommio_net;
pub mod std_net;

use std::net::SocketAddr;
use std::time::Duration;

use crate::scenario::Transport;

/// How a relay is set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub transport: Transport,
    /// Caller-facing address (where sipp's uac sends).
    pub listen: SocketAddr,
    /// Callee-facing local address (UDP); port 0 picks one.
    pub upstream_bind: SocketAddr,
    /// The callee (sipp's uas).
    pub forward_to: SocketAddr,
    /// The caller's address (UDP: where packets from the callee go).
    pub client: Option<SocketAddr>,
    /// The relay exits after this long.
    pub lifetime: Duration,
    /// glommio: the CPU the executor is pinned to (`None`: unbound).
    pub core: Option<usize>,
    /// glommio: concurrent receives outstanding per socket.
    pub recv_depth: usize,
    /// glommio: spin this long before parking the reactor (`None`: never).
    pub spin_before_park: Option<Duration>,
    /// glommio: bytes asked of each receive (glommio allocates an io_uring
    /// buffer of this size per receive that goes through the ring).
    pub recv_buffer: usize,
}

/// Largest datagram the relay moves.
pub const MAX_DATAGRAM: usize = 65_535;

/// Receive and send buffers of the relay's UDP sockets (the kernel caps them
/// at `net.core.rmem_max`/`wmem_max`). Kamailio raises its own to the
/// maximum too; with the default (~208 KiB) a relay that loses the CPU for a
/// few milliseconds on a busy 2-core machine drops datagrams at 4000 calls/s.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER`] buffers.
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())?;
    Ok(s)
}
