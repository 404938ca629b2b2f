//! Shared helpers of the shell tests: a TEST FIXTURE engine (not a SIP proxy)
//! and loopback clients.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use sipring::config::Config;
use sipring::counters::{CoreCounters, DropReason};
use sipring::engine::{
    ConnEvent, CoreContext, CoreId, Disposition, Engine, Listener, Peer, Received, Reply, Request,
    Transmit, Transport, owner_core,
};
use sipring::shell::{self, ShellHandle};
use sipring::time::Instant;

/// TEST FIXTURE, not a proxy: a stateless engine that exercises the shell.
///
/// - It hands every message to the core owning its Call-ID.
/// - OPTIONS: answered 200 with `X-Core` (the answering core) and
///   `X-Listener` (`public`/`private`/`handoff`), back over the transport and
///   connection it came on. With `X-Delay-Ms: N` the answer waits N ms on the
///   engine's timer; with `X-Resolve: HOST` it waits for a `Request::Resolve`
///   and carries `X-Resolved: IP,...`; with `X-Store-User: AOR` it asks the
///   store (`Request::Store`) and carries `X-User: found|none|error`.
///   While draining it answers 503.
/// - Other requests: forwarded unchanged to `forward` (if set), out of the
///   private socket.
/// - Responses: dropped (counted as stray).
#[derive(Debug)]
pub struct Fixture {
    ctx: CoreContext,
    forward: Option<Peer>,
    bytes: Vec<u8>,
    queue: VecDeque<(Peer, Listener, usize)>,
    sent_upto: usize,
    delayed: Vec<(Instant, Peer, Listener, Vec<u8>)>,
    resolving: Vec<(u64, Peer, Listener, Vec<u8>)>,
    requests: VecDeque<Request>,
    next_token: u64,
    draining: bool,
}

/// The value of header `name` (full name, case-insensitive) in `msg`.
pub fn header<'a>(msg: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let end = memchr_crlfcrlf(msg).unwrap_or(msg.len());
    for line in msg[..end].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
        {
            let v = &line[name.len() + 1..];
            let start = v.iter().position(|b| *b != b' ').unwrap_or(v.len());
            return Some(&v[start..]);
        }
    }
    None
}

fn memchr_crlfcrlf(m: &[u8]) -> Option<usize> {
    m.windows(4).position(|w| w == b"\r\n\r\n")
}

fn copy_headers(out: &mut Vec<u8>, req: &[u8]) {
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = header(req, name) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl Fixture {
    pub fn new(ctx: CoreContext, forward: Option<Peer>) -> Self {
        Fixture {
            ctx,
            forward,
            bytes: Vec::with_capacity(1 << 16),
            queue: VecDeque::with_capacity(256),
            sent_upto: 0,
            delayed: Vec::new(),
            resolving: Vec::new(),
            requests: VecDeque::new(),
            next_token: 0,
            draining: false,
        }
    }

    fn counters(&self) -> &CoreCounters {
        &self.ctx.counters
    }

    fn answer(&mut self, to: Peer, via: Listener, req: &[u8], code: &str, extra: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b"SIP/2.0 ");
        self.bytes.extend_from_slice(code.as_bytes());
        self.bytes.extend_from_slice(b"\r\n");
        copy_headers(&mut self.bytes, req);
        self.bytes.extend_from_slice(b"X-Core: ");
        self.bytes
            .push(b'0' + u8::try_from(self.ctx.core).unwrap_or(9));
        self.bytes.extend_from_slice(b"\r\nX-Listener: ");
        let l: &[u8] = match via {
            Listener::Public => b"public",
            Listener::Private => b"private",
        };
        self.bytes.extend_from_slice(l);
        self.bytes.extend_from_slice(b"\r\n");
        self.bytes.extend_from_slice(extra);
        self.bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        debug_assert!(start <= self.bytes.len());
        self.queue.push_back((to, via, self.bytes.len()));
    }

    fn handle_local(&mut self, now: Instant, msg: Received<'_>) {
        let b = msg.bytes;
        if b.starts_with(b"SIP/2.0 ") {
            self.counters().drop_msg(DropReason::StrayResponse);
            return;
        }
        if b.starts_with(b"OPTIONS ") {
            if self.draining {
                self.answer(msg.peer, msg.listener, b, "503 Service Unavailable", b"");
                return;
            }
            if let Some(ms) = header(b, "X-Delay-Ms") {
                let ms: u64 = std::str::from_utf8(ms).unwrap().trim().parse().unwrap();
                let due = now + Duration::from_millis(ms);
                self.delayed.push((due, msg.peer, msg.listener, b.to_vec()));
                return;
            }
            if let Some(aor) = header(b, "X-Store-User") {
                let token = self.next_token;
                self.next_token += 1;
                let aor = String::from_utf8(aor.to_vec()).unwrap();
                let op = sipring::store::StoreOp::User { aor };
                self.requests.push_back(Request::Store { token, op });
                self.resolving
                    .push((token, msg.peer, msg.listener, b.to_vec()));
                return;
            }
            if let Some(host) = header(b, "X-Resolve") {
                let token = self.next_token;
                self.next_token += 1;
                let host = String::from_utf8(host.to_vec()).unwrap();
                self.requests.push_back(Request::Resolve { token, host });
                self.resolving
                    .push((token, msg.peer, msg.listener, b.to_vec()));
                return;
            }
            self.answer(msg.peer, msg.listener, b, "200 OK", b"");
            return;
        }
        if let Some(dest) = self.forward {
            self.bytes.extend_from_slice(b);
            self.queue
                .push_back((dest, Listener::Private, self.bytes.len()));
        }
    }
}

impl Engine for Fixture {
    fn handle_message(&mut self, now: Instant, msg: Received<'_>) -> Disposition {
        let Some(call_id) = header(msg.bytes, "Call-ID") else {
            self.counters().drop_msg(DropReason::Malformed);
            return Disposition::Consumed;
        };
        let owner = owner_core(sipring_ring::key_id(call_id), self.ctx.cores);
        if owner != self.ctx.core {
            return Disposition::HandOff(owner);
        }
        self.handle_local(now, msg);
        Disposition::Consumed
    }

    fn handle_handoff(&mut self, now: Instant, msg: Received<'_>) {
        self.handle_local(now, msg);
    }

    fn handle_reply(&mut self, _now: Instant, reply: Reply) {
        let (token, extra) = match reply {
            Reply::Resolved { token, addrs } => {
                let ips: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                (token, format!("X-Resolved: {}\r\n", ips.join(",")))
            }
            Reply::Store { token, answer } => {
                let found = match answer {
                    Ok(sipring::store::StoreAnswer::User(Some(_))) => "found",
                    Ok(_) => "none",
                    Err(_) => "error",
                };
                (token, format!("X-User: {found}\r\n"))
            }
        };
        let Some(i) = self.resolving.iter().position(|r| r.0 == token) else {
            return;
        };
        let (_, peer, via, req) = self.resolving.swap_remove(i);
        self.answer(peer, via, &req, "200 OK", extra.as_bytes());
    }

    fn handle_conn_event(&mut self, _now: Instant, _event: ConnEvent) {}

    fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, peer, via, req) = self.delayed.swap_remove(i);
                self.answer(peer, via, &req, "200 OK", b"");
            } else {
                i += 1;
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.delayed.iter().map(|d| d.0).min()
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
            dest,
            len: buf.len(),
            source,
        })
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    fn drain(&mut self, _now: Instant) {
        self.draining = true;
    }

    fn is_idle(&self) -> bool {
        self.delayed.is_empty() && self.resolving.is_empty()
    }
}

/// A loopback test configuration: ephemeral ports, `cores` cores, unpinned.
pub fn test_config(cores: u16) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.cores = cores;
    c.server.pin = false;
    c.udp.recv_buffer = 1 << 20;
    c.udp.send_buffer = 1 << 20;
    c
}

/// Start a shell running the fixture.
pub fn start(config: &Config, forward: Option<Peer>) -> ShellHandle {
    shell::start(config, move |ctx| Fixture::new(ctx, forward)).expect("shell starts")
}

/// A Call-ID owned by `core` of `cores`, distinct per `n`.
pub fn call_id_owned_by(core: CoreId, cores: CoreId, n: u32) -> String {
    (0u32..)
        .map(|i| format!("test-{n}-{i}@sipring"))
        .find(|c| owner_core(sipring_ring::key_id(c.as_bytes()), cores) == core)
        .unwrap()
}

/// The core that owns `call_id`.
pub fn owner_of(call_id: &str, cores: CoreId) -> CoreId {
    owner_core(sipring_ring::key_id(call_id.as_bytes()), cores)
}

/// An OPTIONS request with `extra` header lines (each ending in CRLF).
pub fn options(call_id: &str, extra: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A MESSAGE request (forwarded by the fixture) with a body.
pub fn message(call_id: &str, body: &str) -> Vec<u8> {
    format!(
        "MESSAGE sip:u@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-{call_id}\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:u@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A UDP client on loopback with a receive timeout.
pub fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// Receive one datagram (panics after the socket's timeout).
pub fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = s
        .recv_from(&mut buf)
        .expect("a datagram before the timeout");
    buf.truncate(n);
    (buf, from)
}

/// Read one Content-Length-framed message (no body expected beyond it).
pub fn read_framed(s: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = memchr_crlfcrlf(pending) {
            let len: usize = header(pending, "Content-Length")
                .map(|v| std::str::from_utf8(v).unwrap().trim().parse().unwrap())
                .unwrap_or(0);
            let total = end + 4 + len;
            if pending.len() >= total {
                let rest = pending.split_off(total);
                return std::mem::replace(pending, rest);
            }
        }
        let n = s.read(&mut chunk).expect("read before the timeout");
        assert!(n > 0, "connection closed while waiting for a message");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Header value as a string.
pub fn header_str(msg: &[u8], name: &str) -> String {
    String::from_utf8_lossy(header(msg, name).unwrap_or(b"")).into_owned()
}

/// A TCP transport peer.
pub fn tcp_peer(addr: SocketAddr) -> Peer {
    Peer {
        addr,
        transport: Transport::Tcp,
        conn: None,
    }
}

/// A UDP transport peer.
pub fn udp_peer(addr: SocketAddr) -> Peer {
    Peer {
        addr,
        transport: Transport::Udp,
        conn: None,
    }
}

/// Wait (up to 3 s) until `cond` holds; counters are bumped just after the
/// send that a test observes, so they lag it by a moment.
pub fn eventually(cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "condition not reached in 3 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
