//! The proxy engine allocates nothing per message once warm: a counting
//! global allocator counts allocations made inside the engine's calls
//! (`handle_message`, `handle_timeout`, `poll_transmit`) while sipp-like
//! INVITE–200–ACK–BYE calls run through it under virtual time. Transaction
//! entries, their buffers and the key table are recycled, so after a warm-up
//! at the same call rate the count stays at zero.

// A global allocator is an unsafe trait: this measurement is what the
// workspace's `unsafe_code = "deny"` leaves room for.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipring::counters::CoreCounters;
use sipring::engine::{CoreContext, Engine, Listener, Peer, Received, Transport};
use sipring::proxy::{ProxyEngine, ProxySettings};
use sipring::time::Instant;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: delegates to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` with allocations counted.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

fn count() -> u64 {
    COUNT.with(Cell::get)
}

const UAC: &str = "127.0.0.1:6001";
const UAS: &str = "127.0.0.1:6002";
const PROXY: &str = "127.0.0.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Harness {
    engine: ProxyEngine,
    now: Instant,
    buf: Vec<u8>,
    /// What the engine sent in the last step (copied outside the counted
    /// window).
    sent: Vec<(SocketAddr, Vec<u8>)>,
    scratch: Vec<(SocketAddr, usize, usize)>,
    bytes: Vec<u8>,
}

impl Harness {
    fn deliver(&mut self, from: &str, msg: &[u8]) {
        let rx = Received {
            bytes: msg,
            peer: Peer {
                addr: addr(from),
                transport: Transport::Udp,
                conn: None,
            },
            local: addr(PROXY),
            listener: Listener::Public,
        };
        let now = self.now;
        let engine = &mut self.engine;
        let buf = &mut self.buf;
        let bytes = &mut self.bytes;
        let scratch = &mut self.scratch;
        counted(|| {
            engine.handle_message(now, rx);
            while let Some(t) = engine.poll_transmit(now, buf) {
                let start = bytes.len();
                bytes.extend_from_slice(&buf[..t.len]);
                scratch.push((t.dest.addr, start, bytes.len()));
            }
        });
        self.flush();
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.engine.poll_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            let engine = &mut self.engine;
            counted(|| engine.handle_timeout(now));
        }
        self.now = until;
    }

    fn flush(&mut self) {
        for &(to, s, e) in &self.scratch {
            self.sent.push((to, self.bytes[s..e].to_vec()));
        }
        self.scratch.clear();
        self.bytes.clear();
    }

    fn take_to(&mut self, to: &str) -> Vec<u8> {
        let i = self
            .sent
            .iter()
            .position(|(a, _)| *a == addr(to))
            .expect("a message");
        let msg = self.sent.remove(i).1;
        self.sent.clear();
        msg
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .collect()
}

/// A UAS's response to a request it received.
fn respond(req: &[u8], code: &str) -> Vec<u8> {
    let req = std::str::from_utf8(req).unwrap();
    let mut out = format!("SIP/2.0 {code}\r\n");
    for v in header(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for v in header(req, "Record-Route") {
        out.push_str(&format!("Record-Route: {v}\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(req, name)[0]));
    }
    let to = header(req, "To")[0];
    if to.contains("tag=") {
        out.push_str(&format!("To: {to}\r\n"));
    } else {
        out.push_str(&format!("To: {to};tag=uas\r\n"));
    }
    out.push_str(&format!(
        "Contact: <sip:{UAS}>\r\nContent-Length: 0\r\n\r\n"
    ));
    out.into_bytes()
}

fn uac_request(method: &str, n: u32, branch: &str, cseq: u32, to_tag: &str) -> Vec<u8> {
    format!(
        "{method} sip:service@{PROXY} SIP/2.0\r\n\
Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{n}-{branch}\r\n\
From: sipp <sip:sipp@{UAC}>;tag={n}SIPpTag00\r\n\
To: service <sip:service@{PROXY}>{to_tag}\r\n\
Call-ID: {n}-4242@127.0.0.1\r\n\
CSeq: {cseq} {method}\r\n\
Contact: sip:sipp@{UAC}\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\r\n\
v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes()
}

/// One INVITE–180–200–ACK–BYE–200 call.
fn call(h: &mut Harness, n: u32) {
    h.deliver(UAC, &uac_request("INVITE", n, "0", 1, ""));
    let inv = h.take_to(UAS);
    h.deliver(UAS, &respond(&inv, "180 Ringing"));
    h.sent.clear();
    h.deliver(UAS, &respond(&inv, "200 OK"));
    h.sent.clear();
    h.deliver(UAC, &uac_request("ACK", n, "2", 1, ";tag=uas"));
    h.sent.clear();
    h.deliver(UAC, &uac_request("BYE", n, "3", 2, ";tag=uas"));
    let bye = h.take_to(UAS);
    h.deliver(UAS, &respond(&bye, "200 OK"));
    h.sent.clear();
    h.advance(Duration::from_millis(5));
}

#[test]
fn the_engine_allocates_nothing_per_call_once_warm() {
    let ctx = CoreContext {
        core: 0,
        cores: 1,
        public_udp: Some(addr(PROXY)),
        public_tcp: None,
        private_udp: Some(addr("127.0.0.1:5061")),
        private_tcp: None,
        advertised_host: "127.0.0.1".to_owned(),
        counters: Arc::new(CoreCounters::new(0)),
    };
    let settings = ProxySettings {
        forward_to: Some(addr(UAS)),
        ..ProxySettings::default()
    };
    let mut h = Harness {
        engine: ProxyEngine::new(ctx, settings),
        now: Instant::from_millis(1),
        buf: Vec::with_capacity(65_536),
        sent: Vec::new(),
        scratch: Vec::with_capacity(16),
        bytes: Vec::with_capacity(65_536),
    };
    // Warm-up: 200 calls/s of virtual time for 60 s, longer than every
    // transaction timer, so the tables reach their steady size.
    for n in 0..12_000 {
        call(&mut h, n);
    }
    let warm = count();
    assert!(warm > 0, "the counter works");
    for n in 12_000..16_000 {
        call(&mut h, n);
    }
    let per_call = (count() - warm) as f64 / 4_000.0;
    assert_eq!(
        count() - warm,
        0,
        "{per_call} allocations per call once warm"
    );
    assert!(h.engine.calls_active() > 0);
}
