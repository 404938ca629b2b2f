//! Per-core counters: the metrics sink of the data plane.
//!
//! Each core owns one [`CoreCounters`]. Only that core writes it (the shell and
//! the core's engine, both on the core's thread); the metrics thread reads it
//! when Prometheus scrapes. Writes are relaxed atomic load+store pairs, which
//! are plain `mov`s on x86: no lock prefix, no shared cache line written by two
//! cores. This module is sans-IO (std only), so the engine can count without
//! knowing about Prometheus; `crate::metrics` turns these numbers into the
//! exposition format.
//!
//! Who counts what:
//! - the shell counts every message in and out ([`CoreCounters::count_in`],
//!   [`CoreCounters::count_out`], classified by [`MsgKind::sniff`]), hand-offs,
//!   TCP connections, shell-level drops, and receive-to-send latency;
//! - the engine counts its own drops ([`CoreCounters::drop_msg`] with an
//!   engine [`DropReason`]) and sets the active transaction gauge
//!   ([`CoreCounters::set_transactions_active`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// SIP methods that get their own label; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// SUBSCRIBE
    Subscribe,
    /// NOTIFY
    Notify,
    /// PUBLISH
    Publish,
    /// INFO
    Info,
    /// PRACK
    Prack,
    /// UPDATE
    Update,
    /// MESSAGE
    Message,
    /// REFER
    Refer,
    /// Any other token.
    Other,
}

impl Method {
    /// Every method, in label order.
    pub const ALL: [Method; 15] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
        Method::Subscribe,
        Method::Notify,
        Method::Publish,
        Method::Info,
        Method::Prack,
        Method::Update,
        Method::Message,
        Method::Refer,
        Method::Other,
    ];

    /// The method's name as a label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Other => "other",
        }
    }

    /// The method named by `token` (case-sensitive, as RFC 3261 says).
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"MESSAGE" => Method::Message,
            b"REFER" => Method::Refer,
            _ => Method::Other,
        }
    }
}

/// What a message is, for counting: a request by method or a response by
/// status class (1 for 1xx ... 6 for 6xx; 0 when the code is unreadable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgKind {
    /// A request.
    Request(Method),
    /// A response of this status class (0..=6).
    Response(u8),
}

/// Number of distinct `MsgKind` slots: 15 methods + classes 0..=6.
pub const MSG_KINDS: usize = Method::ALL.len() + 7;

impl MsgKind {
    /// Classify a message by its start line without parsing it: the first
    /// token is either `SIP/2.0` (a response; the next three bytes are the
    /// code) or the method. Keep-alives and garbage count as `Other`.
    pub fn sniff(bytes: &[u8]) -> MsgKind {
        if let Some(rest) = bytes.strip_prefix(b"SIP/2.0 ") {
            let class = match rest.first() {
                Some(d @ b'1'..=b'6') => d - b'0',
                _ => 0,
            };
            return MsgKind::Response(class);
        }
        let end = bytes.iter().take(16).position(|&b| b == b' ');
        match end {
            Some(end) => MsgKind::Request(Method::from_token(&bytes[..end])),
            None => MsgKind::Request(Method::Other),
        }
    }

    /// Index into the per-kind counter arrays.
    pub fn index(self) -> usize {
        match self {
            MsgKind::Request(m) => m as usize,
            MsgKind::Response(class) => Method::ALL.len() + usize::from(class.min(6)),
        }
    }

    /// The kind stored at `index` (inverse of `index`).
    pub fn from_index(index: usize) -> MsgKind {
        match Method::ALL.get(index) {
            Some(&m) => MsgKind::Request(m),
            None => MsgKind::Response(u8::try_from(index - Method::ALL.len()).unwrap_or(0)),
        }
    }
}

/// Why a message was dropped. The shell's reasons come first; the engine adds
/// its own here (this enum is the one list of reasons the metrics export).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Unparseable and not answerable (engine), or bad stream framing (shell).
    Malformed,
    /// Larger than the configured maximum message size.
    TooLarge,
    /// The socket refused the send (buffer full, unreachable, ...).
    SendFailed,
    /// The hand-off queue to the owning core was full.
    HandOffQueueFull,
    /// A new TCP connection over the per-core limit.
    ConnectionLimit,
    /// A TCP connection could not be opened.
    ConnectFailed,
    /// A response that matches no transaction and cannot be forwarded (engine).
    StrayResponse,
    /// A new request while draining for shutdown (engine).
    Draining,
    /// No route to the destination (engine).
    NoRoute,
    /// Anything else.
    Other,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::SendFailed,
        DropReason::HandOffQueueFull,
        DropReason::ConnectionLimit,
        DropReason::ConnectFailed,
        DropReason::StrayResponse,
        DropReason::Draining,
        DropReason::NoRoute,
        DropReason::Other,
    ];

    /// The reason as a label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too_large",
            DropReason::SendFailed => "send_failed",
            DropReason::HandOffQueueFull => "handoff_queue_full",
            DropReason::ConnectionLimit => "connection_limit",
            DropReason::ConnectFailed => "connect_failed",
            DropReason::StrayResponse => "stray_response",
            DropReason::Draining => "draining",
            DropReason::NoRoute => "no_route",
            DropReason::Other => "other",
        }
    }
}

/// Quantiles of the receive-to-send latency, published by the core from its
/// own hdrhistogram about once a second (nanoseconds).
#[derive(Debug, Default)]
pub struct LatencySnapshot {
    /// Median.
    pub p50: AtomicU64,
    /// 90th percentile.
    pub p90: AtomicU64,
    /// 99th percentile.
    pub p99: AtomicU64,
    /// 99.9th percentile.
    pub p999: AtomicU64,
    /// Maximum.
    pub max: AtomicU64,
    /// Number of samples.
    pub count: AtomicU64,
    /// Sum of all samples.
    pub sum: AtomicU64,
}

/// The counters of one core. Create one per core, share it (`Arc`) with the
/// metrics thread, and write it only from its core.
#[derive(Debug)]
pub struct CoreCounters {
    core: u16,
    msgs_in: [AtomicU64; MSG_KINDS],
    msgs_out: [AtomicU64; MSG_KINDS],
    drops: [AtomicU64; DropReason::ALL.len()],
    handoffs_out: AtomicU64,
    handoffs_in: AtomicU64,
    transactions_active: AtomicU64,
    tcp_connections: AtomicU64,
    /// Receive-to-send latency quantiles (written by the shell).
    pub latency: LatencySnapshot,
}

/// Add one to a counter that only this thread writes: a relaxed load and
/// store, not a locked read-modify-write.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl CoreCounters {
    /// Zeroed counters for core `core`.
    pub fn new(core: u16) -> Self {
        CoreCounters {
            core,
            msgs_in: std::array::from_fn(|_| AtomicU64::new(0)),
            msgs_out: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            handoffs_out: AtomicU64::new(0),
            handoffs_in: AtomicU64::new(0),
            transactions_active: AtomicU64::new(0),
            tcp_connections: AtomicU64::new(0),
            latency: LatencySnapshot::default(),
        }
    }

    /// The core these counters belong to.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// A message was received (shell).
    #[inline]
    pub fn count_in(&self, kind: MsgKind) {
        bump(&self.msgs_in[kind.index()], 1);
    }

    /// A message was sent (shell).
    #[inline]
    pub fn count_out(&self, kind: MsgKind) {
        bump(&self.msgs_out[kind.index()], 1);
    }

    /// A message was dropped for `reason` (shell or engine).
    #[inline]
    pub fn drop_msg(&self, reason: DropReason) {
        bump(&self.drops[reason as usize], 1);
    }

    /// A message was handed off to another core (shell).
    #[inline]
    pub fn handoff_out(&self) {
        bump(&self.handoffs_out, 1);
    }

    /// A message arrived from another core (shell).
    #[inline]
    pub fn handoff_in(&self) {
        bump(&self.handoffs_in, 1);
    }

    /// The number of live transactions on this core (engine).
    #[inline]
    pub fn set_transactions_active(&self, n: u64) {
        self.transactions_active.store(n, Relaxed);
    }

    /// The number of open TCP connections on this core (shell).
    #[inline]
    pub fn set_tcp_connections(&self, n: u64) {
        self.tcp_connections.store(n, Relaxed);
    }

    /// Messages received of `kind`.
    pub fn msgs_in(&self, kind: MsgKind) -> u64 {
        self.msgs_in[kind.index()].load(Relaxed)
    }

    /// Messages sent of `kind`.
    pub fn msgs_out(&self, kind: MsgKind) -> u64 {
        self.msgs_out[kind.index()].load(Relaxed)
    }

    /// Total messages received.
    pub fn msgs_in_total(&self) -> u64 {
        self.msgs_in.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Total messages sent.
    pub fn msgs_out_total(&self) -> u64 {
        self.msgs_out.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Drops for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }

    /// Hand-offs sent to other cores.
    pub fn handoffs_out(&self) -> u64 {
        self.handoffs_out.load(Relaxed)
    }

    /// Hand-offs received from other cores.
    pub fn handoffs_in(&self) -> u64 {
        self.handoffs_in.load(Relaxed)
    }

    /// Live transactions.
    pub fn transactions_active(&self) -> u64 {
        self.transactions_active.load(Relaxed)
    }

    /// Open TCP connections.
    pub fn tcp_connections(&self) -> u64 {
        self.tcp_connections.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_classifies_start_lines() {
        let cases: &[(&[u8], MsgKind)] = &[
            (
                b"INVITE sip:a@b SIP/2.0\r\n",
                MsgKind::Request(Method::Invite),
            ),
            (b"ACK sip:a@b SIP/2.0\r\n", MsgKind::Request(Method::Ack)),
            (b"FOO sip:a@b SIP/2.0\r\n", MsgKind::Request(Method::Other)),
            (b"SIP/2.0 180 Ringing\r\n", MsgKind::Response(1)),
            (b"SIP/2.0 200 OK\r\n", MsgKind::Response(2)),
            (b"SIP/2.0 603 Decline\r\n", MsgKind::Response(6)),
            (b"SIP/2.0 x", MsgKind::Response(0)),
            (b"\r\n\r\n", MsgKind::Request(Method::Other)),
            (b"", MsgKind::Request(Method::Other)),
        ];
        for (bytes, want) in cases {
            assert_eq!(MsgKind::sniff(bytes), *want, "{:?}", bytes);
        }
    }

    #[test]
    fn kind_index_round_trips() {
        for i in 0..MSG_KINDS {
            assert_eq!(MsgKind::from_index(i).index(), i);
        }
    }

    #[test]
    fn counters_add_up() {
        let c = CoreCounters::new(3);
        c.count_in(MsgKind::Request(Method::Invite));
        c.count_in(MsgKind::Request(Method::Invite));
        c.count_out(MsgKind::Response(2));
        c.drop_msg(DropReason::TooLarge);
        c.set_transactions_active(7);
        assert_eq!(c.msgs_in(MsgKind::Request(Method::Invite)), 2);
        assert_eq!(c.msgs_in_total(), 2);
        assert_eq!(c.msgs_out_total(), 1);
        assert_eq!(c.drops(DropReason::TooLarge), 1);
        assert_eq!(c.transactions_active(), 7);
        assert_eq!(c.core(), 3);
    }
}
