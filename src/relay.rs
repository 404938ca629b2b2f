//! A blind UDP relay engine: the benchmark peer "relay on the sipring shell".
//!
//! It is not a SIP proxy: it parses nothing and keeps no state but the last
//! client address. A datagram from the next hop (`forward_to`) goes to the
//! last client, out of the public socket; any other datagram goes to the
//! next hop, out of this core's private socket (so the next hop's answers come
//! back to this core). With it, `sipring serve --relay` measures what the
//! shell alone costs per message, next to the bench harness's relay-std and
//! relay-glommio (BENCHMARKS.md).

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::engine::{
    ConnEvent, CoreContext, Disposition, Engine, Listener, Peer, Received, Reply, Request,
    Transmit, Transport,
};
use crate::time::Instant;

/// The relay of one core.
#[derive(Debug)]
pub struct BlindRelay {
    next_hop: SocketAddr,
    client: Option<SocketAddr>,
    /// Queued datagrams, back to back; reused.
    bytes: Vec<u8>,
    /// (destination, source socket, end offset in `bytes`); reused.
    queue: VecDeque<(SocketAddr, Listener, usize)>,
    sent_upto: usize,
}

impl BlindRelay {
    /// A relay for one core that forwards to `next_hop`.
    pub fn new(_ctx: CoreContext, next_hop: SocketAddr) -> Self {
        BlindRelay {
            next_hop,
            client: None,
            bytes: Vec::with_capacity(1 << 16),
            queue: VecDeque::with_capacity(256),
            sent_upto: 0,
        }
    }

    fn push(&mut self, dest: SocketAddr, source: Listener, msg: &[u8]) {
        self.bytes.extend_from_slice(msg);
        self.queue.push_back((dest, source, self.bytes.len()));
    }
}

impl Engine for BlindRelay {
    fn handle_message(&mut self, _now: Instant, msg: Received<'_>) -> Disposition {
        if msg.peer.addr == self.next_hop {
            if let Some(client) = self.client {
                self.push(client, Listener::Public, msg.bytes);
            }
        } else {
            self.client = Some(msg.peer.addr);
            self.push(self.next_hop, Listener::Private, msg.bytes);
        }
        Disposition::Consumed
    }

    fn handle_handoff(&mut self, now: Instant, msg: Received<'_>) {
        self.handle_message(now, msg);
    }

    fn handle_reply(&mut self, _now: Instant, _reply: Reply) {}

    fn handle_conn_event(&mut self, _now: Instant, _event: ConnEvent) {}

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let Some((dest, source, end)) = self.queue.pop_front() else {
            self.bytes.clear();
            self.sent_upto = 0;
            return None;
        };
        buf.clear();
        buf.extend_from_slice(&self.bytes[self.sent_upto..end]);
        self.sent_upto = end;
        Some(Transmit {
            dest: Peer {
                addr: dest,
                transport: Transport::Udp,
                conn: None,
            },
            len: buf.len(),
            source,
        })
    }

    fn poll_request(&mut self) -> Option<Request> {
        None
    }
}
