//! Ring members: one per core of each proxy.

use std::fmt;
use std::net::SocketAddr;

/// A ring member: a virtual node, one per (proxy, core). It owns the slice of
/// the ring from its predecessor (exclusive) to `id` (inclusive).
///
/// `addr` is where the member's ring messages are sent and where it sends
/// them from; several members (the cores of one proxy) may share it, and
/// `core` tells them apart. Two values are the same member when all three
/// fields are equal; a restarted proxy core that keeps its identifier and
/// address is the same member again.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Member {
    /// Position on the ring (see `id::member_id`, `id::core_slice_end`).
    pub id: u64,
    /// The proxy's ring endpoint.
    pub addr: SocketAddr,
    /// The core within that proxy.
    pub core: u16,
}

impl Member {
    /// A member at `id`, reached at `addr`, core `core` there.
    pub const fn new(id: u64, addr: SocketAddr, core: u16) -> Self {
        Member { id, addr, core }
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}@{}/{}", self.id, self.addr, self.core)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
