//! The RFC 3261 §16 stateful proxy: one core's [`Engine`].
//!
//! Each request that arrives on the core owning its Call-ID gets a call
//! (`call::Call`): a server transaction and one client transaction per
//! branch, all §17 state machines from `crate::transaction`, with their
//! timers in one per-core `TimerWheel` entry per call. The engine checks the
//! request (§16.3: version, scheme, Max-Forwards, loops, Proxy-Require),
//! processes its Route (§16.4, loose routing, strict-router compatibility),
//! picks the next hop (`forward_to`, then the top Route, then the
//! Request-URI, resolving names off the packet path), forwards it with its
//! own Via (a unique magic-cookie branch, this core's private port) and, for
//! dialog-creating requests, a Record-Route carrying node and core, and
//! answers INVITE with 100 Trying. Responses go back through §16.7: 1xx and
//! 2xx forwarded at once, 300–699 collected and the best one sent when every
//! branch is done (6xx first, 503 becomes 500), CANCEL of the other branches
//! after a 2xx or 6xx, Timer C, hop-by-hop ACK for 300–699 and end-to-end
//! forwarding of the 2xx ACK. Retransmissions are absorbed both ways by the
//! transactions. Malformed requests that can be answered get 400 with a
//! reason; others, and malformed responses, are dropped and counted.
//!
//! Nothing here reads a clock or touches a socket: the shell passes `now`
//! and drains `poll_transmit`, and the tests drive it under virtual time.

mod build;
mod call;
mod inbound;
mod output;
mod route;
mod services;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::counters::{CoreCounters, DropReason};
use crate::engine::{
    ConnEvent, CoreContext, CoreId, Disposition, Engine, Listener, Peer, Received, Reply, Request,
    Transmit, Transport, owner_core,
};
use crate::store::dialog::{DialogEvent, DialogSink};
use crate::time::Instant;
use crate::timer::TimerWheel;
use crate::transaction::{
    BranchGenerator, ClientEffect, InviteClient, InviteServer, NonInviteClient, NonInviteServer,
    ServerEffect, StatusClass, TimerConfig, TxKey, is_rfc3261_branch,
};

use call::{Best, Branch, Call, CancelTx, ClientTx, Kind, ServerTx, better};
use inbound::{Msg, Parsed, Start};
use output::{BufPool, Output};
use route::{Identity, NextHop};
pub use services::{Action, NewRequest, Services, Target};

/// The granularity of the engine's wake-ups for timers.
const TIMER_BATCH: Duration = Duration::from_millis(10);

/// What the proxy engine is configured with (from `[proxy]`, `[server]` and
/// the command line).
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// Send every request to this next hop (`forward_to`), except requests
    /// that come from it, which are routed by Route and Request-URI.
    pub forward_to: Option<SocketAddr>,
    /// Transaction timers (T1, T2, T4, Timer C).
    pub timers: TimerConfig,
    /// Requests larger than this are answered 513 (§18.1.1 / §21.5.14).
    pub max_message_size: usize,
    /// Add Record-Route to dialog-creating requests.
    pub record_route: bool,
    /// This node's identifier, written with the core into the Record-Route
    /// (0: derived from the advertised address).
    pub node: u64,
    /// Seed of the core's RNG (branches, tags); each core mixes in its index.
    pub seed: u64,
    /// How long a resolved name is kept.
    pub dns_ttl: Duration,
    /// Requests forwarded over UDP that would be larger than this go over
    /// TCP instead (RFC 3261 §18.1.1: 1300 bytes when the path MTU is
    /// unknown), falling back to UDP if the connection cannot be opened;
    /// `None` never switches. Only when this node serves TCP.
    pub udp_max_request: Option<usize>,
    /// 100 Trying to an INVITE: at once (zero), or only when nothing else
    /// went upstream this long after the INVITE (RFC 3261 §17.2.1: a 100 is
    /// owed unless another response follows within 200 ms). Capped at T1.
    pub trying_delay: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            forward_to: None,
            timers: TimerConfig::default(),
            max_message_size: 16 * 1024,
            record_route: true,
            node: 0,
            seed: 0,
            dns_ttl: Duration::from_secs(60),
            trying_delay: Duration::ZERO,
            udp_max_request: Some(1300),
        }
    }
}

impl ProxySettings {
    /// The settings of `sipring serve`: `[proxy]` of the configuration,
    /// `forward_to` already resolved, and a random seed.
    pub fn from_config(config: &crate::config::Config, forward_to: Option<SocketAddr>) -> Self {
        use std::hash::BuildHasher;
        let p = &config.proxy;
        ProxySettings {
            forward_to,
            timers: TimerConfig {
                t1: Duration::from_millis(p.t1_ms),
                t2: Duration::from_millis(p.t2_ms),
                t4: Duration::from_millis(p.t4_ms),
                timer_c: Duration::from_secs(p.timer_c_secs),
            },
            max_message_size: p.max_request_size,
            record_route: p.record_route,
            // The node's id (server.node_id, or its advertised address),
            // hashed short for the Record-Route.
            node: sipring_ring::key_id(config.effective_node_id().as_bytes()) & 0xffff_ffff,
            // std's per-process random keys: a seed without another crate.
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
            dns_ttl: Duration::from_secs(config.dns.cache_ttl_secs.max(1)),
            trying_delay: Duration::from_millis(p.trying_delay_ms),
            udp_max_request: (p.udp_max_request > 0).then_some(p.udp_max_request),
        }
    }
}

/// Identity hasher for keys that carry their own 64-bit hash (`TxKey`).
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `TxKey`; fold anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// What a transaction key points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// The server transaction of call `.0`.
    Server(u32),
    /// Branch `.1` of call `.0`.
    Client(u32, u8),
    /// The CANCEL sent on branch `.1` of call `.0`.
    Cancel(u32, u8),
}

/// A pending DNS lookup and the calls waiting for it.
#[derive(Debug)]
struct Lookup {
    host: String,
    waiting: SmallVec<[u32; 4]>,
}

/// One core's stateful SIP proxy.
#[derive(Debug)]
pub struct ProxyEngine {
    core: CoreId,
    cores: CoreId,
    me: Identity,
    cfg: ProxySettings,
    counters: Arc<CoreCounters>,
    ids: BranchGenerator,
    wheel: TimerWheel<u32>,
    calls: Vec<Option<Call>>,
    free: Vec<u32>,
    active: usize,
    keys: HashMap<TxKey, Slot, BuildHasherDefault<PassThrough>>,
    out: Output,
    pool: BufPool,
    requests: VecDeque<Request>,
    dns: HashMap<String, (IpAddr, Instant)>,
    lookups: HashMap<u64, Lookup>,
    next_token: u64,
    draining: bool,
    services: Option<Box<dyn Services>>,
    /// Calls waiting for a decision of the services, by token.
    waits: HashMap<u64, u32>,
    next_wait: u64,
    dialogs: Option<Box<dyn DialogSink>>,
}

/// How long a request waits for the services' decision (a store answer)
/// before it is answered 503.
const WAIT_LIMIT: Duration = Duration::from_secs(8);

fn status_class(code: u16) -> Option<StatusClass> {
    StatusClass::of(code)
}

impl ProxyEngine {
    /// The engine of the core described by `ctx`.
    pub fn new(ctx: CoreContext, cfg: ProxySettings) -> Self {
        let node = if cfg.node != 0 {
            cfg.node
        } else {
            // A short stable id of this node: its advertised address.
            let public = ctx.public_udp.or(ctx.public_tcp).map_or(0, |a| a.port());
            let id = format!("{}:{public}", ctx.advertised_host);
            sipring_ring::key_id(id.as_bytes()) & 0xffff_ffff
        };
        let me = Identity::new(&ctx, node);
        let seed = cfg.seed ^ u64::from(ctx.core).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ProxyEngine {
            core: ctx.core,
            cores: ctx.cores,
            me,
            counters: ctx.counters,
            ids: BranchGenerator::new(seed),
            wheel: TimerWheel::with_capacity(Instant::ZERO, 1024),
            calls: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            active: 0,
            keys: HashMap::with_capacity_and_hasher(4096, BuildHasherDefault::default()),
            out: Output::with_capacity(64 * 1024, 256),
            pool: BufPool::default(),
            requests: VecDeque::new(),
            dns: HashMap::new(),
            lookups: HashMap::new(),
            next_token: 1,
            draining: false,
            services: None,
            waits: HashMap::new(),
            next_wait: 1,
            dialogs: None,
            cfg,
        }
    }

    /// Installs the registrar, authentication and location service: it
    /// decides what happens to every new request (see [`Services`]).
    pub fn set_services(&mut self, services: Box<dyn Services>) {
        self.services = Some(services);
    }

    /// Installs the dialog-state sink (the Cassandra store): it hears of
    /// every dialog a 2xx to an INVITE establishes or updates and of every
    /// BYE that ends one.
    pub fn set_dialog_sink(&mut self, sink: Box<dyn DialogSink>) {
        self.dialogs = Some(sink);
    }

    /// Number of calls (proxied requests) in flight on this core.
    pub fn calls_active(&self) -> usize {
        self.active
    }

    fn drop_msg(&self, reason: DropReason) {
        self.counters.drop_msg(reason);
    }

    // ------------------------------------------------------------ arrival

    fn on_message(&mut self, now: Instant, msg: Received<'_>, handed_off: bool) -> Disposition {
        let parsed = match inbound::parse(msg.bytes) {
            Ok(p) => p,
            Err(inbound::Reject::Drop) => {
                self.drop_msg(DropReason::Malformed);
                return Disposition::Consumed;
            }
            Err(inbound::Reject::Answer {
                code,
                reason,
                msg: m,
            }) => {
                // Answer from this core: without a usable Call-ID there is
                // no owner, and the answer keeps no state.
                self.respond_stateless(&m, msg, code, reason);
                return Disposition::Consumed;
            }
        };
        let m = match parsed {
            Parsed::Request(m) | Parsed::Response(m) => m,
        };
        if !handed_off && self.cores > 1 {
            let owner = owner_core(sipring_ring::key_id(m.call_id), self.cores);
            if owner != self.core {
                return Disposition::HandOff(owner);
            }
        }
        match m.start {
            Start::Response { code } => self.on_response(now, &m, code),
            Start::Request { .. } => self.on_request(now, &m, msg),
        }
        self.counters.set_transactions_active(self.active as u64);
        Disposition::Consumed
    }

    fn on_request(&mut self, now: Instant, m: &Msg<'_>, rx: Received<'_>) {
        let Start::Request { method, .. } = m.start else {
            return;
        };
        let key = server_key(m, rx.peer.transport);
        if method == b"ACK" {
            return self.on_ack(now, m, rx, &key);
        }
        if let Some(&Slot::Server(id)) = self.keys.get(&key) {
            // A retransmission (§17.2.1, §17.2.2).
            return self.on_retransmission(now, id);
        }
        if self.draining {
            self.drop_msg(DropReason::Draining);
            return self.respond_new(now, m, rx, 503, "Service Unavailable", &[]);
        }
        if !m.version_ok {
            return self.respond_new(now, m, rx, 505, "Version Not Supported", &[]);
        }
        if m.bytes.len() > self.cfg.max_message_size {
            return self.respond_new(now, m, rx, 513, "Message Too Large", &[]);
        }
        if m.cseq_method != method {
            return self.respond_new(now, m, rx, 400, "CSeq Method Does Not Match", &[]);
        }
        if method == b"CANCEL" {
            return self.on_cancel(now, m, rx, key);
        }
        let Some(ruri) = m.request_uri() else {
            return self.respond_new(now, m, rx, 400, "Malformed Request-URI", &[]);
        };
        // A tel: URI may name a user's phone alias: the services decide.
        let tel = self.services.is_some() && ruri.scheme.eq_ignore_ascii_case(b"tel");
        if !ruri.is_sip() && !tel {
            return self.respond_new(now, m, rx, 416, "Unsupported URI Scheme", &[]);
        }
        if ruri.has_headers() {
            // §19.1.5: headers are not allowed in a Request-URI (RFC 4475
            // escruri); a proxy must not forward them.
            return self.respond_new(now, m, rx, 400, "Headers In Request-URI", &[]);
        }
        if m.max_forwards == Some(0) {
            return self.respond_new(now, m, rx, 483, "Too Many Hops", &[]);
        }
        let mut unsupported: SmallVec<[&[u8]; 4]> = SmallVec::new();
        for tag in m.proxy_require() {
            unsupported.push(tag);
        }
        if !unsupported.is_empty() {
            let mut line = self.pool.take();
            line.extend_from_slice(b"Unsupported: ");
            for (i, t) in unsupported.iter().enumerate() {
                if i > 0 {
                    line.extend_from_slice(b", ");
                }
                line.extend_from_slice(t);
            }
            line.extend_from_slice(b"\r\n");
            self.respond_new(now, m, rx, 420, "Bad Extension", &line);
            self.pool.give(line);
            return;
        }
        let loop_hash = route::loop_hash(m);
        if self.me.has_looped(m, loop_hash) {
            return self.respond_new(now, m, rx, 482, "Loop Detected", &[]);
        }
        // A BYE ends its dialog (from whichever side it comes).
        if method == b"BYE"
            && let (Some(sink), Some(a), Some(b)) = (self.dialogs.as_mut(), m.from_tag, m.to_tag)
        {
            sink.ended(now, m.call_id, a, b);
        }
        // The registrar, authentication and location service (§16.5).
        if let Some(mut services) = self.services.take() {
            let token = self.next_wait;
            self.next_wait += 1;
            let req = NewRequest {
                message: &m.pm,
                method,
                source: rx.peer,
                listener: rx.listener,
                to_me: ruri.is_sip() && self.me.is_me(ruri.host, ruri.port),
                routed: route::routed_elsewhere(&self.me, m),
                in_dialog: m.to_tag.is_some(),
            };
            let action = services.on_request(now, &req, token);
            self.services = Some(services);
            match action {
                Action::Proxy if !ruri.is_sip() => {
                    return self.respond_new(now, m, rx, 416, "Unsupported URI Scheme", &[]);
                }
                Action::Proxy => {}
                Action::Respond {
                    code,
                    reason,
                    headers,
                } => return self.respond_new(now, m, rx, code, reason, &headers),
                Action::Fork(targets) => {
                    return self.start_target_call(now, m, rx, key, &targets, loop_hash);
                }
                Action::Wait => {
                    let id = self.open_call(now, m, rx, key);
                    self.wait_for(now, id, token);
                    return;
                }
            }
        }
        let plan = match route::plan(&self.me, m, self.cfg.forward_to, rx.peer, None) {
            Ok(p) => p,
            Err(route::NoRoute { code, reason }) => {
                self.drop_msg(DropReason::NoRoute);
                return self.respond_new(now, m, rx, code, reason, &[]);
            }
        };
        self.start_call(now, m, rx, key, plan, loop_hash);
    }

    /// A request retransmission for call `id`.
    fn on_retransmission(&mut self, now: Instant, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if call.trying_due.is_some() {
            // The UAC retransmits before the delayed 100: send it now.
            call.trying_due = None;
            self.respond_call(now, id, 100, "Trying");
            return self.reschedule(now, id);
        }
        let effect = match &mut call.server {
            ServerTx::Invite(t) => t.on_request(),
            ServerTx::NonInvite(t) => t.on_request(),
        };
        if effect == ServerEffect::Resend {
            if let Some(r) = &call.response {
                self.out.push(call.upstream, call.listener, r);
            }
        }
        let _ = now;
    }

    /// ACK: hop-by-hop for our 300–699 (absorbed by the INVITE server
    /// transaction), otherwise an end-to-end 2xx ACK forwarded statelessly.
    fn on_ack(&mut self, now: Instant, m: &Msg<'_>, rx: Received<'_>, key: &TxKey) {
        if let Some(&Slot::Server(id)) = self.keys.get(key) {
            let effect = match self.calls[id as usize].as_mut().map(|c| &mut c.server) {
                Some(ServerTx::Invite(t)) => t.on_ack(now),
                _ => ServerEffect::None,
            };
            self.reschedule(now, id);
            if effect != ServerEffect::Deliver {
                return;
            }
        }
        if !m.version_ok || m.max_forwards == Some(0) {
            self.drop_msg(DropReason::Malformed);
            return;
        }
        let Some(ruri) = m.request_uri() else {
            self.drop_msg(DropReason::Malformed);
            return;
        };
        if !ruri.is_sip() {
            self.drop_msg(DropReason::NoRoute);
            return;
        }
        let loop_hash = route::loop_hash(m);
        if self.me.has_looped(m, loop_hash) {
            self.drop_msg(DropReason::Other);
            return;
        }
        let plan = match route::plan(&self.me, m, self.cfg.forward_to, rx.peer, None) {
            Ok(p) => p,
            Err(_) => {
                self.drop_msg(DropReason::NoRoute);
                return;
            }
        };
        let Some(dest) = self.resolve_now(&plan.next_hop, rx.peer.transport) else {
            // No lookups for a stateless ACK: a name we do not know is
            // resolved for later, and this ACK is lost (the UAS retransmits
            // its 2xx, and the next ACK finds the answer).
            if let NextHop::Name { host, .. } = &plan.next_hop {
                self.request_lookup(host, None);
            }
            self.drop_msg(DropReason::NoRoute);
            return;
        };
        // A stateless branch: the same for every retransmission (§16.11).
        let branch = self.ids.stateless_branch(loop_hash, key.hash64());
        let source = Listener::Private;
        let me = &self.me;
        let rr = false;
        self.out.write(dest, source, |buf| {
            build::forward_request(buf, m, me, &plan, &branch, dest.transport, rx, rr);
        });
    }

    /// CANCEL (§16.10): answered 200 here and applied to every pending
    /// branch of the INVITE it matches; forwarded statelessly when it
    /// matches nothing.
    fn on_cancel(&mut self, now: Instant, m: &Msg<'_>, rx: Received<'_>, key: TxKey) {
        let invite_key = server_key_with_method(m, rx.peer.transport, b"INVITE");
        let Some(&Slot::Server(invite)) = self.keys.get(&invite_key) else {
            let Some(ruri) = m.request_uri() else {
                return self.respond_new(now, m, rx, 400, "Malformed Request-URI", &[]);
            };
            if !ruri.is_sip() {
                return self.respond_new(now, m, rx, 416, "Unsupported URI Scheme", &[]);
            }
            let plan = match route::plan(&self.me, m, self.cfg.forward_to, rx.peer, None) {
                Ok(p) => p,
                Err(route::NoRoute { code, reason }) => {
                    return self.respond_new(now, m, rx, code, reason, &[]);
                }
            };
            let Some(dest) = self.resolve_now(&plan.next_hop, rx.peer.transport) else {
                return self.respond_new(now, m, rx, 481, "Call/Transaction Does Not Exist", &[]);
            };
            let loop_hash = route::loop_hash(m);
            let branch = self.ids.stateless_branch(loop_hash, key.hash64());
            let me = &self.me;
            self.out.write(dest, Listener::Private, |buf| {
                build::forward_request(buf, m, me, &plan, &branch, dest.transport, rx, false);
            });
            return;
        };
        // 200 for the CANCEL, from its own server transaction.
        self.respond_new(now, m, rx, 200, "OK", &[]);
        self.cancel_call(now, invite);
    }

    /// Cancels every pending branch of INVITE call `id`.
    fn cancel_call(&mut self, now: Instant, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if call.kind != Kind::Invite || call.server.is_final() {
            return;
        }
        call.cancelled = true;
        if call.resolving || call.branches.is_empty() {
            // Nothing forwarded yet: the request ends here.
            call.resolving = false;
            self.stop_waiting(id);
            self.respond_call(now, id, 487, "Request Terminated");
            return;
        }
        for i in 0..call.branches.len() {
            self.cancel_branch(now, id, i);
        }
        self.reschedule(now, id);
    }

    /// Sends a CANCEL on one branch, or notes it for the first provisional
    /// response (§9.1: no CANCEL before one).
    fn cancel_branch(&mut self, now: Instant, id: u32, i: usize) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        let b = &mut call.branches[i];
        let ClientTx::Invite(tx) = &mut b.tx else {
            return;
        };
        if b.final_code.is_some() || b.cancel.is_some() || tx.is_final() {
            return;
        }
        if !tx.has_provisional() {
            b.cancel_pending = true;
            return;
        }
        b.cancel_pending = false;
        let Some(request) = b.request.as_deref() else {
            return;
        };
        let mut bytes = self.pool.take();
        build::cancel(&mut bytes, request);
        tx.cancel_sent(now);
        let reliable = b.dest.transport == Transport::Tcp;
        self.out.push(b.dest, Listener::Private, &bytes);
        b.cancel = Some(CancelTx {
            tx: NonInviteClient::new(now, self.cfg.timers, reliable),
            bytes,
        });
        let key = TxKey::client(&b.branch, b"CANCEL");
        self.keys.insert(key, Slot::Cancel(id, i as u8));
    }

    // ------------------------------------------------------------ calls

    fn alloc_call(&mut self, call: Call) -> u32 {
        self.active += 1;
        if let Some(id) = self.free.pop() {
            self.calls[id as usize] = Some(call);
            id
        } else {
            self.calls.push(Some(call));
            (self.calls.len() - 1) as u32
        }
    }

    /// Starts a call for a new request: server transaction, 100 Trying for
    /// INVITE, then the branch (at once, or after a DNS answer).
    fn start_call(
        &mut self,
        now: Instant,
        m: &Msg<'_>,
        rx: Received<'_>,
        key: TxKey,
        plan: route::Plan,
        loop_hash: u64,
    ) {
        let id = self.open_call(now, m, rx, key);
        match self.resolve_now(&plan.next_hop, plan.transport(rx.peer.transport)) {
            Some(dest) => self.add_branch(now, id, m, rx, &plan, dest, loop_hash),
            None => {
                let NextHop::Name { host, .. } = plan.next_hop else {
                    return;
                };
                if let Some(call) = self.calls[id as usize].as_mut() {
                    call.resolving = true;
                }
                self.request_lookup(host, Some(id));
            }
        }
        self.reschedule(now, id);
    }

    /// Starts a call forked to the targets of the location service
    /// (§16.5–16.6): one branch each; targets that do not route (or need a
    /// lookup) are skipped; 480 when none is left.
    fn start_target_call(
        &mut self,
        now: Instant,
        m: &Msg<'_>,
        rx: Received<'_>,
        key: TxKey,
        targets: &[Target],
        loop_hash: u64,
    ) {
        let id = self.open_call(now, m, rx, key);
        self.fork_to(now, id, m, rx, targets, loop_hash);
    }

    fn fork_to(
        &mut self,
        now: Instant,
        id: u32,
        m: &Msg<'_>,
        rx: Received<'_>,
        targets: &[Target],
        loop_hash: u64,
    ) {
        for t in targets {
            let Ok(plan) = route::plan_target(&self.me, m, t) else {
                continue;
            };
            if let Some(dest) = self.resolve_now(&plan.next_hop, plan.transport(rx.peer.transport))
            {
                self.add_branch(now, id, m, rx, &plan, dest, loop_hash);
            }
        }
        if self.calls[id as usize]
            .as_ref()
            .is_some_and(|c| c.branches.is_empty())
        {
            self.respond_call(now, id, 480, "Temporarily Unavailable");
        }
        self.reschedule(now, id);
    }

    /// Call `id` waits for the services' decision `token`.
    fn wait_for(&mut self, now: Instant, id: u32, token: u64) {
        if let Some(call) = self.calls[id as usize].as_mut() {
            call.waiting = Some((token, now + WAIT_LIMIT));
            self.waits.insert(token, id);
        }
        self.reschedule(now, id);
    }

    /// Applies the services' decisions for waiting calls.
    fn drain_decisions(&mut self, now: Instant) {
        loop {
            let Some((token, action)) = self.services.as_mut().and_then(|s| s.poll_decision())
            else {
                return;
            };
            let Some(id) = self.waits.remove(&token) else {
                continue;
            };
            let Some(call) = self.calls[id as usize].as_mut() else {
                continue;
            };
            if call.waiting.map(|w| w.0) != Some(token) || call.server.is_final() {
                continue;
            }
            call.waiting = None;
            match action {
                Action::Respond {
                    code,
                    reason,
                    headers,
                } => self.respond_call_with(now, id, code, reason, &headers),
                Action::Wait => {
                    // A decision must decide.
                    tracing::debug!("services decided to wait again");
                    self.respond_call(now, id, 500, "Server Internal Error");
                }
                Action::Proxy | Action::Fork(_) => self.resume(now, id, action),
            }
            self.reschedule(now, id);
        }
    }

    /// Routes a call that waited: as usual (`Proxy`) or to targets.
    fn resume(&mut self, now: Instant, id: u32, action: Action) {
        let Some(call) = self.calls[id as usize].as_ref() else {
            return;
        };
        let (upstream, listener) = (call.upstream, call.listener);
        let Some(kept) = call.request.as_deref() else {
            return;
        };
        // A working copy: the call keeps its own for the responses it may
        // still generate.
        let request = self.pool.copy_of(kept);
        let rx = Received {
            bytes: &request,
            peer: upstream,
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            listener,
        };
        if let Ok(Parsed::Request(m)) = inbound::parse(&request) {
            let loop_hash = route::loop_hash(&m);
            match action {
                Action::Fork(targets) => self.fork_to(now, id, &m, rx, &targets, loop_hash),
                _ => match route::plan(&self.me, &m, self.cfg.forward_to, upstream, None) {
                    Ok(plan) => {
                        let transport = plan.transport(upstream.transport);
                        match self.resolve_now(&plan.next_hop, transport) {
                            Some(dest) => self.add_branch(now, id, &m, rx, &plan, dest, loop_hash),
                            None => {
                                if let NextHop::Name { host, .. } = plan.next_hop {
                                    if let Some(call) = self.calls[id as usize].as_mut() {
                                        call.resolving = true;
                                    }
                                    self.request_lookup(host, Some(id));
                                }
                            }
                        }
                    }
                    Err(route::NoRoute { code, reason }) => {
                        self.drop_msg(DropReason::NoRoute);
                        self.respond_call(now, id, code, reason);
                    }
                },
            }
        }
        self.pool.give(request);
    }

    /// Creates the call and its server transaction; answers 100 Trying to
    /// an INVITE at once (it stops the UAC's retransmissions, §16.2).
    fn open_call(&mut self, now: Instant, m: &Msg<'_>, rx: Received<'_>, key: TxKey) -> u32 {
        let reliable = rx.peer.transport == Transport::Tcp;
        let invite = m.is_method(b"INVITE");
        let server = if invite {
            ServerTx::Invite(InviteServer::new(self.cfg.timers, reliable))
        } else {
            ServerTx::NonInvite(NonInviteServer::new(self.cfg.timers, reliable))
        };
        let upstream = route::response_peer(m, rx);
        let call = Call {
            kind: if invite { Kind::Invite } else { Kind::Other },
            server,
            server_key: key.clone(),
            upstream,
            listener: rx.listener,
            request: Some(self.pool.copy_of(m.bytes)),
            response: None,
            branches: SmallVec::new(),
            best: None,
            cancelled: false,
            resolving: false,
            local_tag: self.ids.tag(),
            timer: None,
            trying_due: None,
            waiting: None,
        };
        let id = self.alloc_call(call);
        self.keys.insert(key, Slot::Server(id));
        if invite {
            let delay = self.cfg.trying_delay.min(self.cfg.timers.t1);
            if delay.is_zero() {
                self.send_trying(now, id, m, rx);
            } else if let Some(call) = self.calls[id as usize].as_mut() {
                call.trying_due = Some(now + delay);
            }
        }
        id
    }

    /// 100 Trying for a new INVITE, built from the message at hand.
    fn send_trying(&mut self, now: Instant, id: u32, m: &Msg<'_>, rx: Received<'_>) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        call.trying_due = None;
        let ServerTx::Invite(t) = &mut call.server else {
            return;
        };
        if t.on_send(now, StatusClass::Trying) != ServerEffect::Send {
            return;
        }
        let mut response = self.pool.take();
        build::local_response(&mut response, m, rx, 100, "Trying", &call.local_tag, &[]);
        self.out.push(call.upstream, call.listener, &response);
        call.response = Some(response);
    }

    /// Forwards the call's request to `dest` as a new branch.
    #[allow(clippy::too_many_arguments)]
    fn add_branch(
        &mut self,
        now: Instant,
        id: u32,
        m: &Msg<'_>,
        rx: Received<'_>,
        plan: &route::Plan,
        dest: Peer,
        loop_hash: u64,
    ) {
        let branch = self.ids.branch(loop_hash);
        let rr = self.cfg.record_route && m.creates_dialog();
        let mut bytes = self.pool.take();
        let mut dest = dest;
        build::forward_request(
            &mut bytes,
            m,
            &self.me,
            plan,
            &branch,
            dest.transport,
            rx,
            rr,
        );
        // §18.1.1: too large for UDP, so TCP (back to UDP if it cannot connect).
        let switched = dest.transport == Transport::Udp
            && self.me.serves_tcp()
            && self
                .cfg
                .udp_max_request
                .is_some_and(|max| bytes.len() > max);
        if switched {
            dest.transport = Transport::Tcp;
            bytes.clear();
            build::forward_request(
                &mut bytes,
                m,
                &self.me,
                plan,
                &branch,
                dest.transport,
                rx,
                rr,
            );
        }
        self.out.push(dest, Listener::Private, &bytes);
        let reliable = dest.transport == Transport::Tcp;
        let Some(call) = self.calls[id as usize].as_mut() else {
            self.pool.give(bytes);
            return;
        };
        let tx = if call.kind == Kind::Invite {
            ClientTx::Invite(InviteClient::new(now, self.cfg.timers, reliable, true))
        } else {
            ClientTx::NonInvite(NonInviteClient::new(now, self.cfg.timers, reliable))
        };
        let index = call.branches.len();
        let key = TxKey::client(&branch, m.cseq_method);
        self.keys.insert(key.clone(), Slot::Client(id, index as u8));
        call.branches.push(Branch {
            branch,
            key,
            tx,
            dest,
            request: Some(bytes),
            ack: None,
            cancel: None,
            cancel_pending: call.cancelled,
            final_code: None,
            tcp_switched: switched,
        });
    }

    /// Answers a new request this proxy will not forward, from a server
    /// transaction that absorbs its retransmissions (and, for INVITE, the
    /// ACK).
    fn respond_new(
        &mut self,
        now: Instant,
        m: &Msg<'_>,
        rx: Received<'_>,
        code: u16,
        reason: &str,
        extra: &[u8],
    ) {
        let reliable = rx.peer.transport == Transport::Tcp;
        let method = match m.start {
            Start::Request { method, .. } => method,
            Start::Response { .. } => return,
        };
        let invite = method == b"INVITE";
        let kind = if invite {
            Kind::Invite
        } else if method == b"CANCEL" {
            Kind::Cancel
        } else {
            Kind::Other
        };
        let key = server_key(m, rx.peer.transport);
        let upstream = route::response_peer(m, rx);
        let mut server = if invite {
            ServerTx::Invite(InviteServer::new(self.cfg.timers, reliable))
        } else {
            ServerTx::NonInvite(NonInviteServer::new(self.cfg.timers, reliable))
        };
        let Some(class) = status_class(code) else {
            return;
        };
        let send = match &mut server {
            ServerTx::Invite(t) => t.on_send(now, class),
            ServerTx::NonInvite(t) => t.on_send(now, class),
        };
        let tag = self.ids.tag();
        let mut response = self.pool.take();
        build::local_response(&mut response, m, rx, code, reason, &tag, extra);
        if send == ServerEffect::Send {
            self.out.push(upstream, rx.listener, &response);
        }
        if server.is_terminated() || self.keys.contains_key(&key) {
            self.pool.give(response);
            return;
        }
        let call = Call {
            kind,
            server,
            server_key: key.clone(),
            upstream,
            listener: rx.listener,
            request: None,
            response: Some(response),
            branches: SmallVec::new(),
            best: None,
            cancelled: false,
            resolving: false,
            local_tag: tag,
            timer: None,
            trying_due: None,
            waiting: None,
        };
        let id = self.alloc_call(call);
        self.keys.insert(key, Slot::Server(id));
        self.reschedule(now, id);
    }

    /// Answers a request the parser could not fully read (no usable Call-ID
    /// or CSeq): statelessly, from this core.
    fn respond_stateless(
        &mut self,
        m: &inbound::Partial<'_>,
        rx: Received<'_>,
        code: u16,
        reason: &str,
    ) {
        let tag = self.ids.tag();
        let upstream = m.response_peer(rx);
        self.out.write(upstream, rx.listener, |buf| {
            build::partial_response(buf, m, code, reason, &tag);
        });
    }

    /// Sends a response the proxy generates for call `id` (100, 408, 487,
    /// 500, ...), built from the request it kept.
    fn respond_call(&mut self, now: Instant, id: u32, code: u16, reason: &str) {
        self.respond_call_with(now, id, code, reason, &[]);
    }

    /// [`Self::respond_call`] with extra header lines.
    fn respond_call_with(&mut self, now: Instant, id: u32, code: u16, reason: &str, extra: &[u8]) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        let Some(class) = status_class(code) else {
            return;
        };
        let Some(request) = call.request.as_deref() else {
            return;
        };
        let send = match &mut call.server {
            ServerTx::Invite(t) => t.on_send(now, class),
            ServerTx::NonInvite(t) => t.on_send(now, class),
        };
        if send != ServerEffect::Send {
            return;
        }
        call.trying_due = None;
        let mut response = call.response.take().unwrap_or_else(|| self.pool.take());
        response.clear();
        build::call_response(&mut response, request, code, reason, &call.local_tag, extra);
        self.out.push(call.upstream, call.listener, &response);
        call.response = Some(response);
        if class.is_final() {
            self.after_final(id);
        }
    }

    /// A final response went upstream: the request is no longer needed.
    fn after_final(&mut self, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if let Some(r) = call.request.take() {
            self.pool.give(r);
        }
        if let Some(best) = call.best.take() {
            self.pool.give_opt(best.bytes);
        }
    }

    // ------------------------------------------------------------ responses

    fn on_response(&mut self, now: Instant, m: &Msg<'_>, code: u16) {
        let Some(class) = status_class(code) else {
            self.drop_msg(DropReason::Malformed);
            return;
        };
        let Some(branch) = m.top_via().branch else {
            self.drop_msg(DropReason::StrayResponse);
            return;
        };
        let key = TxKey::client(branch, m.cseq_method);
        match self.keys.get(&key).copied() {
            Some(Slot::Client(id, i)) => {
                self.on_branch_response(now, id, usize::from(i), m, code, class)
            }
            Some(Slot::Cancel(id, i)) => {
                if let Some(call) = self.calls[id as usize].as_mut() {
                    if let Some(c) = call.branches[usize::from(i)].cancel.as_mut() {
                        c.tx.on_response(now, class);
                    }
                }
                self.reschedule(now, id);
            }
            _ => self.forward_stateless_response(m),
        }
    }

    /// §16.11: a response that matches no transaction is forwarded to the
    /// next Via when the top one is ours (2xx retransmissions after the
    /// transaction ended), and dropped otherwise.
    fn forward_stateless_response(&mut self, m: &Msg<'_>) {
        if !self.me.is_my_via(m.top_via()) {
            self.drop_msg(DropReason::StrayResponse);
            return;
        }
        let Some(dest) = m.second_via().as_ref().and_then(route::via_peer) else {
            self.drop_msg(DropReason::StrayResponse);
            return;
        };
        if !route::is_unicast(dest.addr.ip()) {
            self.drop_msg(DropReason::StrayResponse);
            return;
        }
        self.out.write(dest, Listener::Public, |buf| {
            build::forward_response(buf, m);
        });
    }

    fn on_branch_response(
        &mut self,
        now: Instant,
        id: u32,
        i: usize,
        m: &Msg<'_>,
        code: u16,
        class: StatusClass,
    ) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        let b = &mut call.branches[i];
        let effect = match &mut b.tx {
            ClientTx::Invite(t) => t.on_response(now, class),
            ClientTx::NonInvite(t) => t.on_response(now, class),
        };
        match effect {
            ClientEffect::Ack => {
                if let Some(ack) = &b.ack {
                    self.out.push(b.dest, Listener::Private, ack);
                }
            }
            ClientEffect::AckAndDeliver => {
                if let Some(request) = b.request.as_deref() {
                    let mut ack = self.pool.take();
                    build::ack(&mut ack, request, m);
                    self.out.push(b.dest, Listener::Private, &ack);
                    b.ack = Some(ack);
                }
                self.deliver(now, id, i, m, code, class);
            }
            ClientEffect::Deliver => self.deliver(now, id, i, m, code, class),
            _ => {}
        }
        self.reschedule(now, id);
    }

    /// §16.7 steps 3–10 for a response a branch passed up.
    fn deliver(
        &mut self,
        now: Instant,
        id: u32,
        i: usize,
        m: &Msg<'_>,
        code: u16,
        class: StatusClass,
    ) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        match class {
            StatusClass::Trying => {
                if call.branches[i].cancel_pending {
                    self.cancel_branch(now, id, i);
                }
            }
            StatusClass::Provisional => {
                let pending = call.branches[i].cancel_pending;
                self.forward_upstream(now, id, m, class);
                if pending {
                    self.cancel_branch(now, id, i);
                }
            }
            StatusClass::Success => {
                let b = &mut call.branches[i];
                let first = b.final_code.is_none();
                b.final_code = Some(code);
                if first {
                    self.pool.give_opt(b.request.take());
                }
                self.forward_upstream(now, id, m, class);
                let invite = self.calls[id as usize]
                    .as_ref()
                    .is_some_and(|c| c.kind == Kind::Invite);
                // The first 2xx of a branch (its retransmissions change
                // nothing) establishes, or for a re-INVITE updates, a dialog.
                if first
                    && invite
                    && let (Some(sink), Some(from_tag), Some(to_tag)) =
                        (self.dialogs.as_mut(), m.from_tag, m.to_tag)
                {
                    sink.established(
                        now,
                        DialogEvent {
                            call_id: m.call_id,
                            from_tag,
                            to_tag,
                            state: m.head(),
                        },
                    );
                }
                self.after_final(id);
                if first && invite {
                    self.cancel_others(now, id, i);
                }
            }
            StatusClass::Final => {
                let b = &mut call.branches[i];
                b.final_code = Some(code);
                self.pool.give_opt(b.request.take());
                if call.server.is_final() {
                    return;
                }
                if call
                    .best
                    .as_ref()
                    .is_none_or(|best| better(code, best.code))
                {
                    let mut bytes = call
                        .best
                        .take()
                        .and_then(|b| b.bytes)
                        .unwrap_or_else(|| self.pool.take());
                    bytes.clear();
                    build::forward_response(&mut bytes, m);
                    call.best = Some(Best {
                        code,
                        bytes: Some(bytes),
                    });
                }
                if code >= 600 && call.kind == Kind::Invite {
                    self.cancel_others(now, id, i);
                }
                self.maybe_send_best(now, id);
            }
        }
    }

    /// Forwards a 1xx or 2xx response upstream at once (our Via removed).
    fn forward_upstream(&mut self, now: Instant, id: u32, m: &Msg<'_>, class: StatusClass) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        let send = match &mut call.server {
            ServerTx::Invite(t) => t.on_send(now, class),
            ServerTx::NonInvite(t) => t.on_send(now, class),
        };
        if send != ServerEffect::Send {
            return;
        }
        call.trying_due = None;
        let mut response = call.response.take().unwrap_or_else(|| self.pool.take());
        response.clear();
        build::forward_response(&mut response, m);
        self.out.push(call.upstream, call.listener, &response);
        if class == StatusClass::Success && call.kind == Kind::Invite {
            // Accepted: 2xx retransmissions come from downstream, nothing
            // is resent from here.
            self.pool.give(response);
        } else {
            call.response = Some(response);
        }
    }

    /// CANCEL every branch but `except` (after a 2xx or 6xx, §16.7 step 10).
    fn cancel_others(&mut self, now: Instant, id: u32, except: usize) {
        let n = self.calls[id as usize]
            .as_ref()
            .map_or(0, |c| c.branches.len());
        for j in (0..n).filter(|&j| j != except) {
            self.cancel_branch(now, id, j);
        }
    }

    /// When every branch is final and nothing final went upstream yet, sends
    /// the best response (§16.7 step 6).
    fn maybe_send_best(&mut self, now: Instant, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if call.server.is_final() || !call.all_final() {
            return;
        }
        let Some(best) = call.best.take() else {
            return;
        };
        match best.bytes {
            Some(bytes) if best.code != 503 => {
                let Some(class) = status_class(best.code) else {
                    return;
                };
                let send = match &mut call.server {
                    ServerTx::Invite(t) => t.on_send(now, class),
                    ServerTx::NonInvite(t) => t.on_send(now, class),
                };
                if send == ServerEffect::Send {
                    call.trying_due = None;
                    self.out.push(call.upstream, call.listener, &bytes);
                }
                self.pool.give_opt(call.response.replace(bytes));
                self.after_final(id);
            }
            other => {
                self.pool.give_opt(other);
                let (code, reason) = match best.code {
                    // §16.7 step 6: a 503 is not forwarded, a 500 is sent instead.
                    503 => (500, "Server Internal Error"),
                    408 => (408, "Request Timeout"),
                    c => (c, "Service Unavailable"),
                };
                self.respond_call(now, id, code, reason);
            }
        }
    }

    /// A branch ended without a response: it counts as `code` (§16.7 step
    /// 6 / §16.9).
    fn branch_failed(&mut self, now: Instant, id: u32, i: usize, code: u16) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        let b = &mut call.branches[i];
        if b.final_code.is_some() {
            return;
        }
        b.final_code = Some(code);
        self.pool.give_opt(b.request.take());
        if call
            .best
            .as_ref()
            .is_none_or(|best| better(code, best.code))
        {
            let old = call.best.replace(Best { code, bytes: None });
            self.pool.give_opt(old.and_then(|b| b.bytes));
        }
        self.maybe_send_best(now, id);
    }

    // ------------------------------------------------------------ timers

    /// Puts call `id`'s next deadline into the wheel, or frees the call
    /// when it is over.
    fn reschedule(&mut self, now: Instant, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if call.is_done() {
            return self.free_call(id);
        }
        let _ = now;
        match (call.poll_timeout(), call.timer) {
            (Some(t), Some(k)) => {
                if !self.wheel.reschedule(k, t) {
                    call.timer = Some(self.wheel.insert(t, id));
                }
            }
            (Some(t), None) => call.timer = Some(self.wheel.insert(t, id)),
            (None, Some(k)) => {
                self.wheel.cancel(k);
                call.timer = None;
            }
            (None, None) => {}
        }
    }

    /// Call `id` no longer wants the services' decision.
    fn stop_waiting(&mut self, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if let Some((token, _)) = call.waiting.take() {
            self.waits.remove(&token);
            if let Some(s) = self.services.as_mut() {
                s.abandon(token);
            }
        }
    }

    fn free_call(&mut self, id: u32) {
        self.stop_waiting(id);
        let Some(mut call) = self.calls[id as usize].take() else {
            return;
        };
        if let Some(k) = call.timer.take() {
            self.wheel.cancel(k);
        }
        if self.keys.get(&call.server_key) == Some(&Slot::Server(id)) {
            self.keys.remove(&call.server_key);
        }
        for b in call.branches.drain(..) {
            self.keys.remove(&b.key);
            if b.cancel.is_some() {
                self.keys.remove(&TxKey::client(&b.branch, b"CANCEL"));
            }
            self.pool.give_opt(b.request);
            self.pool.give_opt(b.ack);
            self.pool.give_opt(b.cancel.map(|c| c.bytes));
        }
        self.pool.give_opt(call.request);
        self.pool.give_opt(call.response);
        self.pool.give_opt(call.best.and_then(|b| b.bytes));
        self.free.push(id);
        self.active -= 1;
    }

    fn on_call_timeout(&mut self, now: Instant, id: u32) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        call.timer = None;
        if call.trying_due.is_some_and(|t| t <= now) {
            call.trying_due = None;
            self.respond_call(now, id, 100, "Trying");
        }
        if self.calls[id as usize]
            .as_ref()
            .and_then(|c| c.waiting)
            .is_some_and(|(_, deadline)| deadline <= now)
        {
            // The store did not answer in time.
            self.stop_waiting(id);
            self.drop_msg(DropReason::Other);
            self.respond_call(now, id, 503, "Service Unavailable");
        }
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        // Server side: Timer G resends, H/I/J/L end.
        let due = call.server.poll_timeout().is_some_and(|t| t <= now);
        if due {
            let effect = match &mut call.server {
                ServerTx::Invite(t) => t.on_timeout(now),
                ServerTx::NonInvite(t) => t.on_timeout(now),
            };
            if effect == ServerEffect::Resend {
                if let Some(r) = &call.response {
                    self.out.push(call.upstream, call.listener, r);
                }
            }
        }
        let n = call.branches.len();
        for i in 0..n {
            self.on_branch_timeout(now, id, i);
        }
        self.reschedule(now, id);
    }

    fn on_branch_timeout(&mut self, now: Instant, id: u32, i: usize) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        let b = &mut call.branches[i];
        if let Some(c) = b.cancel.as_mut() {
            if c.tx.poll_timeout().is_some_and(|t| t <= now)
                && c.tx.on_timeout(now) == ClientEffect::Retransmit
            {
                self.out.push(b.dest, Listener::Private, &c.bytes);
            }
        }
        if b.tx.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        let effect = match &mut b.tx {
            ClientTx::Invite(t) => t.on_timeout(now),
            ClientTx::NonInvite(t) => t.on_timeout(now),
        };
        match effect {
            ClientEffect::Retransmit => {
                if let Some(r) = &b.request {
                    self.out.push(b.dest, Listener::Private, r);
                }
            }
            ClientEffect::Timeout => self.branch_failed(now, id, i, 408),
            ClientEffect::TransportError => self.branch_failed(now, id, i, 503),
            ClientEffect::Cancel => self.cancel_branch(now, id, i),
            _ => {}
        }
    }

    /// No TCP connection to `addr`: branches sent there over TCP because
    /// of their size go again over UDP (§18.1.1); others fail as a 503
    /// would (§16.9).
    fn on_connect_failed(&mut self, now: Instant, addr: SocketAddr) {
        let hit: SmallVec<[(u32, usize); 8]> = self
            .calls
            .iter()
            .enumerate()
            .filter_map(|(id, c)| Some((id, c.as_ref()?)))
            .flat_map(|(id, c)| {
                c.branches.iter().enumerate().filter_map(move |(i, b)| {
                    (b.dest.addr == addr
                        && b.dest.transport == Transport::Tcp
                        && b.final_code.is_none())
                    .then_some((id as u32, i))
                })
            })
            .collect();
        for (id, i) in hit {
            let Some(call) = self.calls[id as usize].as_mut() else {
                continue;
            };
            let invite = call.kind == Kind::Invite;
            let b = &mut call.branches[i];
            let retry = match (b.tcp_switched, b.request.as_mut()) {
                (true, Some(request)) => build::retarget_to_udp(request, &self.me),
                _ => false,
            };
            if retry {
                b.tcp_switched = false;
                b.dest.transport = Transport::Udp;
                b.tx = if invite {
                    ClientTx::Invite(InviteClient::new(now, self.cfg.timers, false, true))
                } else {
                    ClientTx::NonInvite(NonInviteClient::new(now, self.cfg.timers, false))
                };
                if let Some(r) = &b.request {
                    self.out.push(b.dest, Listener::Private, r);
                }
            } else {
                let _ = match &mut b.tx {
                    ClientTx::Invite(t) => t.on_transport_error(),
                    ClientTx::NonInvite(t) => t.on_transport_error(),
                };
                self.branch_failed(now, id, i, 503);
            }
            self.reschedule(now, id);
        }
    }

    // ------------------------------------------------------------ DNS

    /// The destination for `hop` if it needs no lookup (or the answer is
    /// cached).
    fn resolve_now(&mut self, hop: &NextHop, transport: Transport) -> Option<Peer> {
        match hop {
            NextHop::Addr(addr, t) => Some(Peer {
                addr: *addr,
                transport: t.unwrap_or(transport),
                conn: None,
            }),
            NextHop::Name {
                host,
                port,
                transport: t,
            } => {
                let (ip, _) = self.dns.get(*host).copied()?;
                Some(Peer {
                    addr: SocketAddr::new(ip, *port),
                    transport: t.unwrap_or(transport),
                    conn: None,
                })
            }
        }
    }

    fn request_lookup(&mut self, host: &str, waiter: Option<u32>) {
        if let Some(l) = self.lookups.values_mut().find(|l| l.host == host) {
            l.waiting.extend(waiter);
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.lookups.insert(
            token,
            Lookup {
                host: host.to_owned(),
                waiting: waiter.into_iter().collect(),
            },
        );
        self.requests.push_back(Request::Resolve {
            token,
            host: host.to_owned(),
        });
    }

    fn on_resolved(&mut self, now: Instant, token: u64, addrs: &[IpAddr]) {
        let Some(lookup) = self.lookups.remove(&token) else {
            return;
        };
        if let Some(&ip) = addrs.first() {
            self.dns
                .insert(lookup.host.clone(), (ip, now + self.cfg.dns_ttl));
        }
        for id in lookup.waiting {
            self.continue_call(now, id, addrs.first().copied());
        }
    }

    /// A call waited for a lookup: forward it now, or answer 503 if the name
    /// did not resolve.
    fn continue_call(&mut self, now: Instant, id: u32, ip: Option<IpAddr>) {
        let Some(call) = self.calls[id as usize].as_mut() else {
            return;
        };
        if !call.resolving {
            return;
        }
        call.resolving = false;
        let Some(ip) = ip else {
            self.drop_msg(DropReason::NoRoute);
            self.respond_call(now, id, 503, "Service Unavailable");
            return self.reschedule(now, id);
        };
        let Some(request) = call.request.take() else {
            return;
        };
        let rx = Received {
            bytes: &request,
            peer: call.upstream,
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            listener: call.listener,
        };
        if let Ok(Parsed::Request(m)) = inbound::parse(&request) {
            if let Ok(plan) = route::plan(&self.me, &m, self.cfg.forward_to, call.upstream, None) {
                let loop_hash = route::loop_hash(&m);
                let transport = plan.transport(call.upstream.transport);
                let port = match &plan.next_hop {
                    NextHop::Name { port, .. } => *port,
                    NextHop::Addr(a, _) => a.port(),
                };
                let dest = Peer {
                    addr: SocketAddr::new(ip, port),
                    transport,
                    conn: None,
                };
                self.add_branch(now, id, &m, rx, &plan, dest, loop_hash);
            }
        }
        if let Some(call) = self.calls[id as usize].as_mut() {
            call.request = Some(request);
        }
        self.reschedule(now, id);
    }
}

/// The server transaction key of a request (§17.2.3).
fn server_key(m: &Msg<'_>, transport: Transport) -> TxKey {
    let method = match m.start {
        Start::Request { method, .. } => method,
        Start::Response { .. } => m.cseq_method,
    };
    server_key_with_method(m, transport, method)
}

fn server_key_with_method(m: &Msg<'_>, transport: Transport, method: &[u8]) -> TxKey {
    let via = m.top_via();
    match via.branch {
        Some(b) if is_rfc3261_branch(b) => {
            let default = if via.transport.eq_ignore_ascii_case(b"TLS") {
                5061
            } else {
                5060
            };
            let _ = transport;
            TxKey::server(b, via.host, via.port.unwrap_or(default), method, m.call_id)
        }
        _ => TxKey::server_rfc2543(
            m.request_uri_raw(),
            m.from_tag.unwrap_or_default(),
            m.call_id,
            m.cseq,
            method,
            via.raw,
            m.to_tag.unwrap_or_default(),
        ),
    }
}

impl Engine for ProxyEngine {
    fn handle_message(&mut self, now: Instant, msg: Received<'_>) -> Disposition {
        self.on_message(now, msg, false)
    }

    fn handle_handoff(&mut self, now: Instant, msg: Received<'_>) {
        self.on_message(now, msg, true);
    }

    fn handle_reply(&mut self, now: Instant, reply: Reply) {
        match reply {
            Reply::Resolved { token, addrs } => self.on_resolved(now, token, &addrs),
            reply @ Reply::Store { .. } => {
                if let Some(s) = self.services.as_mut() {
                    s.handle_reply(now, reply);
                }
                self.drain_decisions(now);
            }
        }
        self.counters.set_transactions_active(self.active as u64);
    }

    fn handle_conn_event(&mut self, now: Instant, event: ConnEvent) {
        let conn = match event {
            ConnEvent::Closed(conn) => conn,
            ConnEvent::ConnectFailed(addr) => return self.on_connect_failed(now, addr),
        };
        // Responses owed on a closed connection cannot be delivered: the
        // server transactions using it end (§18.2.2 would reconnect to the
        // Via address; a UA on TCP keeps its connection for the dialog).
        let ids: SmallVec<[u32; 8]> = self
            .calls
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| c.upstream.conn == Some(conn))
                    .map(|_| i as u32)
            })
            .collect();
        for id in ids {
            if let Some(call) = self.calls[id as usize].as_mut() {
                match &mut call.server {
                    ServerTx::Invite(t) => t.on_transport_error(),
                    ServerTx::NonInvite(t) => t.on_transport_error(),
                }
                let n = call.branches.len();
                for i in 0..n {
                    self.cancel_branch(now, id, i);
                }
            }
            self.reschedule(now, id);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, id)) = self.wheel.poll_expired(now) {
            self.on_call_timeout(now, id);
        }
        self.dns.retain(|_, (_, expires)| *expires > now);
        if let Some(d) = self.dialogs.as_mut() {
            d.handle_timeout(now);
        }
        if let Some(s) = self.services.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.drain_decisions(now);
        self.counters.set_transactions_active(self.active as u64);
    }

    /// The wheel's next deadline, rounded up to `TIMER_BATCH`: SIP timers
    /// are minimums of half a second or more, so firing up to 10 ms late
    /// lets one wake-up serve all the timers of that window (at 2000
    /// calls/s about 60 expire per 10 ms) instead of one wake-up per
    /// millisecond.
    fn poll_timeout(&self) -> Option<Instant> {
        let batch = TIMER_BATCH.as_nanos() as u64;
        let wheel = self
            .wheel
            .next_deadline()
            .map(|t| Instant::from_nanos(t.as_nanos().div_ceil(batch).saturating_mul(batch)));
        let sink = self.dialogs.as_ref().and_then(|d| d.poll_timeout());
        let services = self.services.as_ref().and_then(|s| s.poll_timeout());
        [wheel, sink, services].into_iter().flatten().min()
    }

    fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.out.pop(buf)
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.requests
            .pop_front()
            .or_else(|| self.services.as_mut()?.poll_request())
    }

    fn drain(&mut self, _now: Instant) {
        self.draining = true;
    }

    /// Idle once no request waits for its final response: transactions
    /// that only absorb retransmissions (Timers D, I, J, K, L, M) do not
    /// hold the process.
    fn is_idle(&self) -> bool {
        self.out.is_empty()
            && self
                .calls
                .iter()
                .flatten()
                .all(|c| c.server.is_final() && c.branches.iter().all(|b| b.final_code.is_some()))
    }
}
