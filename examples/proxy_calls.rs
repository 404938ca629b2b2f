//! Drives sipp-like calls (INVITE 180 200 ACK BYE 200, with the bench's
//! Record-Route and Route) through one `ProxyEngine` in memory under virtual
//! time, for instruction counts of the engine alone:
//!
//! ```sh
//! cargo build --release --example proxy_calls
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out target/release/examples/proxy_calls 20000
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'Engine>::(handle|poll)'
//! ```
//!
//! The engine is called through `&mut dyn Engine`, so its entry points stay
//! visible as functions; the harness builds responses with plain byte
//! edits outside them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipring::counters::CoreCounters;
use sipring::engine::{CoreContext, Engine, Listener, Peer, Received, Transport};
use sipring::proxy::{ProxyEngine, ProxySettings};
use sipring::time::Instant;

const UAC: &str = "127.0.0.1:6001";
const UAS: &str = "127.0.0.1:6002";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// The header lines of `req` a UAS copies into its response.
fn respond(req: &[u8], status: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
    let head = &req[..find(req, b"\r\n\r\n") + 2];
    for line in head.split(|&b| b == b'\n').skip(1) {
        for name in [
            &b"Via:"[..],
            b"Record-Route:",
            b"From:",
            b"Call-ID:",
            b"CSeq:",
        ] {
            if line.starts_with(name) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        if line.starts_with(b"To:") {
            out.extend_from_slice(&line[..line.len() - 1]);
            out.extend_from_slice(b";tag=uas1\r\n");
        }
    }
    out.extend_from_slice(
        b"Contact: <sip:127.0.0.1:6002;transport=UDP>\r\nContent-Length: 0\r\n\r\n",
    );
}

fn request(method: &str, n: u64, cseq: u32, route: &str, to_tag: &str, body: bool) -> Vec<u8> {
    let sdp = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let (ctype, body) = if body {
        ("Content-Type: application/sdp\r\n", sdp)
    } else {
        ("", "")
    };
    let ruri = if route.is_empty() {
        "sip:service@127.0.0.1:5060".to_owned()
    } else {
        format!("sip:{UAS};transport=UDP")
    };
    format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-4242-{n}-{cseq}{method}\r\n\
{route}\
From: sipp <sip:sipp@{UAC}>;tag=4242SIPpTag00{n}\r\n\
To: service <sip:service@127.0.0.1:5060>{to_tag}\r\n\
Call-ID: {n}-4242@127.0.0.1\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:sipp@{UAC};transport=UDP>\r\n\
Max-Forwards: 70\r\n\
Subject: sipring-bench\r\n\
{ctype}\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn rx(bytes: &[u8], peer: Peer, listener: Listener) -> Received<'_> {
    Received {
        bytes,
        peer,
        local: SocketAddr::from(([127, 0, 0, 1], 5060)),
        listener,
    }
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .map_or(20_000, |a| a.parse().unwrap());
    let ctx = CoreContext {
        core: 0,
        cores: 1,
        public_udp: Some(addr("127.0.0.1:5060")),
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
    let mut proxy = ProxyEngine::new(ctx, settings);
    let engine: &mut dyn Engine = &mut proxy;
    let mut now = Instant::from_millis(1);
    let mut buf = Vec::with_capacity(65_536);
    let mut to_uas = Vec::with_capacity(4096);
    let mut resp = Vec::with_capacity(4096);
    let uac = Peer {
        addr: addr(UAC),
        transport: Transport::Udp,
        conn: None,
    };
    let uas = Peer {
        addr: addr(UAS),
        transport: Transport::Udp,
        conn: None,
    };
    let mut sent = 0u64;
    for n in 0..calls {
        // INVITE from the caller: 100 upstream, INVITE downstream.
        let invite = request("INVITE", n, 1, "", "", true);
        engine.handle_message(now, rx(&invite, uac, Listener::Public));
        while let Some(t) = engine.poll_transmit(now, &mut buf) {
            sent += 1;
            if t.dest.addr == uas.addr {
                to_uas.clear();
                to_uas.extend_from_slice(&buf[..t.len]);
            }
        }
        for status in [&b"180 Ringing"[..], b"200 OK"] {
            respond(&to_uas, status, &mut resp);
            engine.handle_message(now, rx(&resp, uas, Listener::Private));
            while engine.poll_transmit(now, &mut buf).is_some() {
                sent += 1;
            }
        }
        // The caller's ACK and BYE follow the Record-Route.
        let rr = {
            let i = find(&to_uas, b"Record-Route: ");
            let j = i + find(&to_uas[i..], b"\r\n");
            format!(
                "Route: {}\r\n",
                std::str::from_utf8(&to_uas[i + 14..j]).unwrap()
            )
        };
        let ack = request("ACK", n, 1, &rr, ";tag=uas1", false);
        engine.handle_message(now, rx(&ack, uac, Listener::Public));
        while engine.poll_transmit(now, &mut buf).is_some() {
            sent += 1;
        }
        let bye = request("BYE", n, 2, &rr, ";tag=uas1", false);
        engine.handle_message(now, rx(&bye, uac, Listener::Public));
        while let Some(t) = engine.poll_transmit(now, &mut buf) {
            sent += 1;
            to_uas.clear();
            to_uas.extend_from_slice(&buf[..t.len]);
        }
        respond(&to_uas, b"200 OK", &mut resp);
        engine.handle_message(now, rx(&resp, uas, Listener::Private));
        while engine.poll_transmit(now, &mut buf).is_some() {
            sent += 1;
        }
        // 2000 calls/s of virtual time.
        now += Duration::from_micros(500);
        while engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now);
        }
    }
    assert_eq!(sent, calls * 7, "7 messages out per call");
    eprintln!(
        "{calls} calls, {sent} messages sent, {} calls active",
        proxy.calls_active()
    );
}
