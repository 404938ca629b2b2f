//! One core's state and its synchronous packet path.
//!
//! `Core` owns the engine, this core's UDP descriptors, its TCP connections,
//! its end of the hand-off mesh and its output buffer. The glommio tasks in
//! `shell::tasks` wait for I/O and then call into `Core` synchronously
//! (`on_datagram`, `on_tcp_read`, `on_mesh`, `on_timer`, then `flush`); no
//! `RefCell` borrow is ever held across an `.await`.

use std::collections::HashMap;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use glommio::channels::channel_mesh::Senders;

use super::framing::{self, Frame};
use super::net;
use super::nudge::Nudge;
use super::{Clock, ShellTuning};
use crate::counters::{CoreCounters, DropReason, MsgKind};
use crate::engine::{
    ConnEvent, ConnId, CoreId, Disposition, Engine, Listener, Peer, Received, Reply, Request,
    Transmit, Transport,
};
use crate::time::Instant;

/// What travels between cores over the channel mesh. Buffers come from the
/// sender's pool and go back to it through its return queue, so steady-state
/// hand-offs allocate nothing.
#[derive(Debug)]
pub(crate) enum MeshMsg {
    /// A received message owned by the destination core.
    HandOff {
        /// The message bytes (a pooled buffer of the sending core).
        buf: Vec<u8>,
        /// Who sent it.
        peer: Peer,
        /// Where it arrived.
        local: SocketAddr,
        /// Which socket it arrived on.
        listener: Listener,
        /// The core whose pool `buf` belongs to.
        from: CoreId,
    },
    /// A message to send on a TCP connection the destination core owns.
    Transmit {
        /// The bytes to write (a pooled buffer of the sending core).
        buf: Vec<u8>,
        /// Destination (its `conn` is owned by the destination core).
        dest: Peer,
        /// The core whose pool `buf` belongs to.
        from: CoreId,
    },
}

/// Per-core pool of hand-off buffers. Other cores push emptied buffers back
/// into `returns` (a lock-free bounded queue).
#[derive(Debug)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
    returns: Arc<ArrayQueue<Vec<u8>>>,
}

impl BufPool {
    pub(crate) fn new(returns: Arc<ArrayQueue<Vec<u8>>>) -> Self {
        BufPool {
            free: Vec::with_capacity(returns.capacity()),
            returns,
        }
    }

    fn take(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut b = match self.free.pop().or_else(|| self.returns.pop()) {
            Some(b) => b,
            None => Vec::with_capacity(bytes.len().max(2048)),
        };
        b.clear();
        b.extend_from_slice(bytes);
        b
    }
}

/// One TCP connection owned by this core.
#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    listener: Listener,
    /// `None` while an outbound connect is in progress.
    fd: Option<RawFd>,
    /// Output the socket did not take yet (written by the flusher task).
    pending: Vec<u8>,
    flusher_running: bool,
    last_active: std::time::Instant,
}

/// One UDP socket of this core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpSock {
    pub(crate) fd: RawFd,
    pub(crate) local: SocketAddr,
}

/// Work that needs an async task, queued by the synchronous path and started
/// by the caller (which holds the `Rc`).
#[derive(Debug)]
pub(crate) enum Spawn {
    /// Resolve a name on the blocking pool.
    Resolve { token: u64, host: String },
    /// Await a store operation (the store's thread answers).
    Store {
        token: u64,
        fut: crate::store::OpFuture,
    },
    /// Open an outbound TCP connection for connection `id`.
    Connect { id: u32, addr: SocketAddr },
    /// Keep writing connection `id`'s pending output.
    Flush { id: u32 },
}

/// The state of one core.
pub(crate) struct Core<E> {
    pub(crate) id: CoreId,
    pub(crate) engine: E,
    pub(crate) clock: Clock,
    pub(crate) tuning: ShellTuning,
    pub(crate) counters: Arc<CoreCounters>,
    out: Vec<u8>,
    pub(crate) udp_public: Option<UdpSock>,
    pub(crate) udp_private: Option<UdpSock>,
    conns: HashMap<u32, Conn>,
    by_addr: HashMap<SocketAddr, u32>,
    next_conn: u32,
    mesh: Option<Senders<MeshMsg>>,
    pool: BufPool,
    /// Return queues of every core's pool, indexed by core.
    returns: Vec<Arc<ArrayQueue<Vec<u8>>>>,
    hist: hdrhistogram::Histogram<u64>,
    batch_start: Option<std::time::Instant>,
    pub(crate) timer_nudge: Nudge,
    pub(crate) armed: Option<Instant>,
    pub(crate) dns: super::dns::DnsCache,
    pub(crate) spawns: Vec<Spawn>,
    /// Where `Request::Store` goes (none: answered `Unavailable`).
    pub(crate) store: Option<Arc<dyn crate::store::Store>>,
}

impl<E> std::fmt::Debug for Core<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("id", &self.id).finish()
    }
}

impl<E: Engine> Core<E> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: CoreId,
        engine: E,
        clock: Clock,
        tuning: ShellTuning,
        counters: Arc<CoreCounters>,
        udp_public: Option<UdpSock>,
        udp_private: Option<UdpSock>,
        mesh: Option<Senders<MeshMsg>>,
        returns: Vec<Arc<ArrayQueue<Vec<u8>>>>,
    ) -> Self {
        let own_returns = returns[usize::from(id)].clone();
        let dns = super::dns::DnsCache::new(tuning.dns_ttl, tuning.dns_negative_ttl);
        Core {
            id,
            engine,
            clock,
            counters,
            out: Vec::with_capacity(tuning.max_message_size),
            udp_public,
            udp_private,
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            next_conn: 0,
            mesh,
            pool: BufPool::new(own_returns),
            returns,
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 2)
                .expect("valid histogram bounds"),
            batch_start: None,
            timer_nudge: Nudge::default(),
            armed: None,
            dns,
            spawns: Vec::new(),
            store: None,
            tuning,
        }
    }

    /// Note when the current batch was read, for receive-to-send latency.
    #[inline]
    pub(crate) fn begin_batch(&mut self, t: std::time::Instant) {
        self.batch_start.get_or_insert(t);
    }

    /// A datagram arrived on `listener`.
    pub(crate) fn on_datagram(&mut self, listener: Listener, bytes: &[u8], from: SocketAddr) {
        let sock = match listener {
            Listener::Public => self.udp_public,
            Listener::Private => self.udp_private,
        };
        let Some(sock) = sock else { return };
        self.counters.count_in(MsgKind::sniff(bytes));
        if bytes.len() > self.tuning.max_message_size {
            self.counters.drop_msg(DropReason::TooLarge);
            return;
        }
        let peer = Peer {
            addr: from,
            transport: Transport::Udp,
            conn: None,
        };
        self.deliver(bytes, peer, sock.local, listener);
    }

    fn deliver(&mut self, bytes: &[u8], peer: Peer, local: SocketAddr, listener: Listener) {
        let now = self.clock.now();
        let msg = Received {
            bytes,
            peer,
            local,
            listener,
        };
        if let Disposition::HandOff(to) = self.engine.handle_message(now, msg) {
            if to == self.id {
                self.engine.handle_handoff(now, msg);
            } else {
                self.hand_off(to, bytes, peer, local, listener);
            }
        }
    }

    fn hand_off(
        &mut self,
        to: CoreId,
        bytes: &[u8],
        peer: Peer,
        local: SocketAddr,
        listener: Listener,
    ) {
        let Some(mesh) = &self.mesh else {
            self.counters.drop_msg(DropReason::Other);
            return;
        };
        let buf = self.pool.take(bytes);
        let msg = MeshMsg::HandOff {
            buf,
            peer,
            local,
            listener,
            from: self.id,
        };
        match mesh.try_send_to(usize::from(to), msg) {
            Ok(()) => self.counters.handoff_out(),
            Err(e) => {
                self.counters.drop_msg(DropReason::HandOffQueueFull);
                if let glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                    MeshMsg::HandOff { buf, .. },
                )) = e
                {
                    self.pool.free.push(buf);
                }
            }
        }
    }

    /// A message from another core.
    pub(crate) fn on_mesh(&mut self, msg: MeshMsg) {
        match msg {
            MeshMsg::HandOff {
                buf,
                peer,
                local,
                listener,
                from,
            } => {
                self.counters.handoff_in();
                let now = self.clock.now();
                self.engine.handle_handoff(
                    now,
                    Received {
                        bytes: &buf,
                        peer,
                        local,
                        listener,
                    },
                );
                self.give_back(from, buf);
            }
            MeshMsg::Transmit { buf, dest, from } => {
                self.send_tcp(dest, &buf);
                self.give_back(from, buf);
            }
        }
    }

    fn give_back(&mut self, from: CoreId, buf: Vec<u8>) {
        if let Some(q) = self.returns.get(usize::from(from)) {
            // A full return queue means the owner has plenty: let it go.
            let _ = q.push(buf);
        }
    }

    /// Drain everything the engine wants done: transmits, then requests, until
    /// neither produces more. Records receive-to-send latency for the batch.
    pub(crate) fn flush(&mut self) {
        let mut sent = 0u64;
        loop {
            let now = self.clock.now();
            let mut out = mem::take(&mut self.out);
            while let Some(t) = self.engine.poll_transmit(now, &mut out) {
                let len = t.len.min(out.len());
                self.dispatch(t, &out[..len]);
                sent += 1;
            }
            self.out = out;
            let mut any = false;
            while let Some(req) = self.engine.poll_request() {
                any = true;
                self.request(req);
            }
            if !any {
                break;
            }
        }
        if let Some(t0) = self.batch_start.take() {
            if sent > 0 {
                let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let _ = self.hist.record_n(ns.clamp(1, 60_000_000_000), sent);
            }
        }
        self.check_timer();
    }

    fn check_timer(&mut self) {
        let want = self.engine.poll_timeout();
        let rearm = match (want, self.armed) {
            (Some(w), Some(a)) => w < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if rearm {
            self.timer_nudge.notify();
        }
    }

    /// Timers are due (or the deadline moved): fire what is due and flush.
    pub(crate) fn on_timer(&mut self) {
        let now = self.clock.now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.flush();
    }

    fn dispatch(&mut self, t: Transmit, bytes: &[u8]) {
        match t.dest.transport {
            Transport::Udp => {
                let sock = match t.source {
                    Listener::Public => self.udp_public.or(self.udp_private),
                    Listener::Private => self.udp_private.or(self.udp_public),
                };
                let Some(sock) = sock else {
                    self.counters.drop_msg(DropReason::NoRoute);
                    return;
                };
                if bytes.len() > self.tuning.max_message_size {
                    self.counters.drop_msg(DropReason::TooLarge);
                    return;
                }
                match net::udp_send(sock.fd, bytes, t.dest.addr) {
                    Ok(()) => self.counters.count_out(MsgKind::sniff(bytes)),
                    Err(e) => {
                        tracing::debug!(core = self.id, dest = %t.dest.addr, "udp send: {e}");
                        self.counters.drop_msg(DropReason::SendFailed);
                    }
                }
            }
            Transport::Tcp => self.send_tcp(t.dest, bytes),
        }
    }

    fn request(&mut self, req: Request) {
        match req {
            Request::Resolve { token, host } => {
                let now = std::time::Instant::now();
                if let Some(addrs) = self.dns.get(&host, now) {
                    let addrs = addrs.to_vec();
                    let now = self.clock.now();
                    self.engine
                        .handle_reply(now, Reply::Resolved { token, addrs });
                } else {
                    self.spawns.push(Spawn::Resolve { token, host });
                }
            }
            Request::Store { token, op } => match &self.store {
                Some(store) => {
                    let fut = op.run(&**store);
                    self.spawns.push(Spawn::Store { token, fut });
                }
                None => {
                    let answer = Err(crate::store::StoreError::Unavailable("no store".into()));
                    let now = self.clock.now();
                    self.engine
                        .handle_reply(now, Reply::Store { token, answer });
                }
            },
        }
    }

    /// A store operation was answered.
    pub(crate) fn on_store(
        &mut self,
        token: u64,
        answer: Result<crate::store::StoreAnswer, crate::store::StoreError>,
    ) {
        let now = self.clock.now();
        self.engine
            .handle_reply(now, Reply::Store { token, answer });
        self.flush();
    }

    /// A name resolved on the blocking pool.
    pub(crate) fn on_resolved(&mut self, token: u64, host: String, addrs: Vec<std::net::IpAddr>) {
        self.dns
            .insert(host, addrs.clone(), std::time::Instant::now());
        let now = self.clock.now();
        self.engine
            .handle_reply(now, Reply::Resolved { token, addrs });
        self.flush();
    }

    // ---- TCP ----

    /// Number of open (or opening) connections.
    pub(crate) fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Register an accepted connection; `None` when over the limit (the
    /// caller closes it).
    pub(crate) fn accept_conn(
        &mut self,
        fd: RawFd,
        peer: SocketAddr,
        local: SocketAddr,
        listener: Listener,
    ) -> Option<u32> {
        if self.conns.len() >= self.tuning.max_connections {
            self.counters.drop_msg(DropReason::ConnectionLimit);
            return None;
        }
        let id = self.new_conn(peer, local, listener, Some(fd));
        Some(id)
    }

    fn new_conn(
        &mut self,
        peer: SocketAddr,
        local: SocketAddr,
        listener: Listener,
        fd: Option<RawFd>,
    ) -> u32 {
        let id = self.next_conn;
        self.next_conn = self.next_conn.wrapping_add(1);
        self.conns.insert(
            id,
            Conn {
                peer,
                local,
                listener,
                fd,
                pending: Vec::new(),
                flusher_running: false,
                last_active: std::time::Instant::now(),
            },
        );
        self.by_addr.insert(peer, id);
        self.counters.set_tcp_connections(self.conns.len() as u64);
        id
    }

    /// Bytes arrived on connection `id`: frame and deliver every complete
    /// message at the front of `buf[..*filled]`, keep the rest. Returns false
    /// when the connection must be closed.
    pub(crate) fn on_tcp_read(&mut self, id: u32, buf: &mut Vec<u8>, filled: &mut usize) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        conn.last_active = std::time::Instant::now();
        let (peer_addr, local, listener, fd) = (conn.peer, conn.local, conn.listener, conn.fd);
        let peer = Peer {
            addr: peer_addr,
            transport: Transport::Tcp,
            conn: Some(ConnId { core: self.id, id }),
        };
        let mut start = 0;
        let keep = loop {
            match framing::frame(&buf[start..*filled], self.tuning.max_message_size) {
                Frame::Message(len) => {
                    let bytes = &buf[start..start + len];
                    self.counters.count_in(MsgKind::sniff(bytes));
                    self.deliver(bytes, peer, local, listener);
                    start += len;
                }
                Frame::Ping { len } => {
                    if let Some(fd) = fd {
                        let _ = net::tcp_send(fd, b"\r\n");
                    }
                    start += len;
                }
                Frame::Skip(len) => start += len,
                Frame::Partial => break true,
                Frame::Invalid(why) => {
                    tracing::debug!(core = self.id, peer = %peer_addr, "closing TCP connection: {why}");
                    let reason = if why.contains("large") {
                        DropReason::TooLarge
                    } else {
                        DropReason::Malformed
                    };
                    self.counters.drop_msg(reason);
                    break false;
                }
            }
        };
        buf.copy_within(start..*filled, 0);
        *filled -= start;
        if *filled == buf.len() {
            // A partial message fills the buffer: grow it (bounded by framing).
            let new_len = (buf.len() * 2).min(self.tuning.max_message_size + 4);
            buf.resize(new_len.max(buf.len() + 1), 0);
        }
        keep
    }

    fn send_tcp(&mut self, dest: Peer, bytes: &[u8]) {
        if let Some(c) = dest.conn {
            if c.core != self.id {
                self.carry_to(c.core, dest, bytes);
                return;
            }
            if self.conns.contains_key(&c.id) {
                self.write_conn(c.id, bytes);
                return;
            }
            // Closed: fall back to any connection to the address, or a new one
            // (RFC 3261 §18.2.2).
        }
        if let Some(&id) = self.by_addr.get(&dest.addr) {
            self.write_conn(id, bytes);
            return;
        }
        // While draining, in-flight transactions may still need a new
        // connection (a response whose connection closed): the engine, not
        // the shell, refuses new work.
        if self.conns.len() >= self.tuning.max_connections {
            self.counters.drop_msg(DropReason::ConnectionLimit);
            return;
        }
        let local = self
            .udp_public
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |s| s.local);
        let id = self.new_conn(dest.addr, local, Listener::Private, None);
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.pending.extend_from_slice(bytes);
        }
        self.counters.count_out(MsgKind::sniff(bytes));
        self.spawns.push(Spawn::Connect {
            id,
            addr: dest.addr,
        });
    }

    fn carry_to(&mut self, core: CoreId, dest: Peer, bytes: &[u8]) {
        let Some(mesh) = &self.mesh else {
            self.counters.drop_msg(DropReason::NoRoute);
            return;
        };
        let buf = self.pool.take(bytes);
        let msg = MeshMsg::Transmit {
            buf,
            dest,
            from: self.id,
        };
        match mesh.try_send_to(usize::from(core), msg) {
            Ok(()) => self.counters.handoff_out(),
            Err(_) => self.counters.drop_msg(DropReason::HandOffQueueFull),
        }
    }

    fn write_conn(&mut self, id: u32, bytes: &[u8]) {
        let max_pending = self.tuning.max_pending_output;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.last_active = std::time::Instant::now();
        let kind = MsgKind::sniff(bytes);
        let written = match conn.fd {
            Some(fd) if conn.pending.is_empty() => match net::tcp_send(fd, bytes) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(core = self.id, peer = %conn.peer, "tcp send: {e}");
                    self.counters.drop_msg(DropReason::SendFailed);
                    self.close_conn(id);
                    return;
                }
            },
            _ => 0,
        };
        self.counters.count_out(kind);
        if written < bytes.len() {
            conn.pending.extend_from_slice(&bytes[written..]);
            if conn.pending.len() > max_pending {
                self.counters.drop_msg(DropReason::SendFailed);
                self.close_conn(id);
                return;
            }
            if conn.fd.is_some() && !conn.flusher_running {
                conn.flusher_running = true;
                self.spawns.push(Spawn::Flush { id });
            }
        }
    }

    /// Flusher task step: write pending output. Returns true while more remains.
    pub(crate) fn flush_pending(&mut self, id: u32) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        let Some(fd) = conn.fd else { return true };
        match net::tcp_send(fd, &conn.pending) {
            Ok(n) => {
                conn.pending.drain(..n);
                if conn.pending.is_empty() {
                    conn.flusher_running = false;
                    return false;
                }
                true
            }
            Err(_) => {
                self.counters.drop_msg(DropReason::SendFailed);
                self.close_conn(id);
                false
            }
        }
    }

    /// An outbound connect finished.
    pub(crate) fn on_connected(&mut self, id: u32, fd: RawFd, local: SocketAddr) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        conn.fd = Some(fd);
        conn.local = local;
        if !conn.pending.is_empty() {
            conn.flusher_running = true;
            self.flush_pending(id);
            if self.conns.get(&id).is_some_and(|c| c.flusher_running) {
                self.spawns.push(Spawn::Flush { id });
            }
        }
        self.conns.contains_key(&id)
    }

    /// An outbound connect failed.
    pub(crate) fn on_connect_failed(&mut self, id: u32) {
        self.counters.drop_msg(DropReason::ConnectFailed);
        if let Some(peer) = self.conns.get(&id).map(|c| c.peer) {
            let now = self.clock.now();
            self.engine
                .handle_conn_event(now, ConnEvent::ConnectFailed(peer));
        }
        self.close_conn(id);
        self.flush();
    }

    /// Forget connection `id`, wake its reader with EOF and tell the engine.
    /// Idempotent.
    pub(crate) fn close_conn(&mut self, id: u32) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if self.by_addr.get(&conn.peer) == Some(&id) {
            self.by_addr.remove(&conn.peer);
        }
        if let Some(fd) = conn.fd {
            net::tcp_shutdown(fd);
        }
        self.counters.set_tcp_connections(self.conns.len() as u64);
        let now = self.clock.now();
        self.engine
            .handle_conn_event(now, ConnEvent::Closed(ConnId { core: self.id, id }));
    }

    /// Close connections idle longer than `idle` (pending output counts as
    /// activity only until the timeout).
    pub(crate) fn sweep_idle(&mut self, idle: Duration) {
        let now = std::time::Instant::now();
        let idle_ids: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_active) >= idle)
            .map(|(&id, _)| id)
            .collect();
        for id in idle_ids {
            tracing::debug!(core = self.id, "closing idle TCP connection {id}");
            self.close_conn(id);
        }
        if !self.conns.is_empty() {
            self.flush();
        }
    }

    /// Whether any connection still has output queued.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.conns.values().any(|c| !c.pending.is_empty())
    }

    /// Publish latency quantiles to the counters (for the metrics thread).
    pub(crate) fn publish_latency(&self) {
        let h = &self.hist;
        let l = &self.counters.latency;
        l.p50.store(h.value_at_quantile(0.5), Relaxed);
        l.p90.store(h.value_at_quantile(0.9), Relaxed);
        l.p99.store(h.value_at_quantile(0.99), Relaxed);
        l.p999.store(h.value_at_quantile(0.999), Relaxed);
        l.max.store(h.max(), Relaxed);
        l.count.store(h.len(), Relaxed);
        let sum = h
            .iter_recorded()
            .map(|v| v.value_iterated_to().saturating_mul(v.count_at_value()))
            .fold(0u64, u64::saturating_add);
        l.sum.store(sum, Relaxed);
    }
}
