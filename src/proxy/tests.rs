//! Deterministic tests of the proxy engine under virtual time: a UAC, the
//! proxy and one or more UASes exchange bytes in memory (the quinn-proto
//! `Pair` pattern); time jumps to the engine's next timer, so a 32 s Timer B
//! or a 3 min Timer C takes no real time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::counters::CoreCounters;

const PROXY: &str = "192.0.2.1";
const PUBLIC: u16 = 5060;
const PRIVATE: u16 = 5070;
const UAC: &str = "198.51.100.10:5062";
const UAS: &str = "203.0.113.20:5080";
const UAS2: &str = "203.0.113.21:5080";
const UAS3: &str = "203.0.113.22:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ctx(core: CoreId, cores: CoreId) -> CoreContext {
    CoreContext {
        core,
        cores,
        public_udp: Some(addr(&format!("{PROXY}:{PUBLIC}"))),
        public_tcp: Some(addr(&format!("{PROXY}:{PUBLIC}"))),
        private_udp: Some(addr(&format!("{PROXY}:{}", PRIVATE + core))),
        private_tcp: Some(addr(&format!("{PROXY}:{}", PRIVATE + core))),
        advertised_host: PROXY.to_owned(),
        counters: Arc::new(CoreCounters::new(core)),
    }
}

/// A message the proxy sent.
#[derive(Clone, Debug)]
struct Sent {
    to: SocketAddr,
    transport: Transport,
    source: Listener,
    bytes: Vec<u8>,
}

impl Sent {
    /// The start line and headers (the body may be binary).
    fn text(&self) -> &str {
        let end = self
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(self.bytes.len(), |p| p + 4);
        std::str::from_utf8(&self.bytes[..end]).unwrap()
    }

    fn start(&self) -> &str {
        self.text().split("\r\n").next().unwrap()
    }

    /// The status code of a response.
    fn status(&self) -> Option<u16> {
        self.start()
            .strip_prefix("SIP/2.0 ")
            .map(|r| r[..3].parse().unwrap())
    }

    /// The method of a request.
    fn method(&self) -> Option<&str> {
        (!self.start().starts_with("SIP/")).then(|| self.start().split(' ').next().unwrap())
    }

    /// Every value line of header `name` (full name only).
    fn headers(&self, name: &str) -> Vec<&str> {
        let head = self.text().split("\r\n\r\n").next().unwrap();
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).first().copied()
    }

    fn top_branch(&self) -> String {
        let via = self.header("Via").unwrap();
        let b = via.split(";branch=").nth(1).unwrap();
        b.split([';', ',']).next().unwrap().to_owned()
    }
}

/// A configurable location service for forking tests: user `fork` forks
/// to the contacts; user `wait` waits, then forks to them after
/// `Reply::Store` token 1 (any answer); others are proxied as usual.
#[derive(Debug, Default)]
struct Static {
    contacts: Vec<Vec<u8>>,
    waiting: Vec<u64>,
    decisions: Vec<(u64, Action)>,
    abandoned: Vec<u64>,
}

impl Static {
    fn targets(&self) -> Vec<Target> {
        self.contacts
            .iter()
            .map(|c| Target {
                uri: c.clone(),
                route: Vec::new(),
                dest: None,
            })
            .collect()
    }
}

impl Services for Static {
    fn on_request(&mut self, _now: Instant, req: &NewRequest<'_>, call: u64) -> Action {
        let uri = req.message.request_uri().unwrap();
        match uri.as_sip().and_then(|u| u.user) {
            Some(b"fork") => Action::Fork(self.targets()),
            Some(b"wait") => {
                self.waiting.push(call);
                Action::Wait
            }
            _ => Action::Proxy,
        }
    }
    fn handle_reply(&mut self, _now: Instant, _reply: Reply) {
        for call in std::mem::take(&mut self.waiting) {
            let t = self.targets();
            self.decisions.push((call, Action::Fork(t)));
        }
    }
    fn poll_decision(&mut self) -> Option<(u64, Action)> {
        self.decisions.pop()
    }
    fn poll_request(&mut self) -> Option<Request> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn abandon(&mut self, call: u64) {
        self.abandoned.push(call);
    }
}

/// The proxy with its cores, the virtual clock and what it sent.
struct Net {
    now: Instant,
    cores: Vec<ProxyEngine>,
    sent: Vec<Sent>,
}

impl Net {
    fn new(cfg: ProxySettings) -> Self {
        Self::with_cores(cfg, 1)
    }

    fn with_cores(cfg: ProxySettings, n: CoreId) -> Self {
        Net {
            now: Instant::from_millis(1_000),
            cores: (0..n)
                .map(|c| ProxyEngine::new(ctx(c, n), cfg.clone()))
                .collect(),
            sent: Vec::new(),
        }
    }

    fn forward_to() -> Self {
        Self::new(ProxySettings {
            forward_to: Some(addr(UAS)),
            ..ProxySettings::default()
        })
    }

    fn counters(&self) -> &CoreCounters {
        &self.cores[0].counters
    }

    /// Delivers `bytes` from `from` over UDP to the public port (or a
    /// private port for `listener: Private`), following hand-offs.
    fn deliver(&mut self, from: &str, bytes: &[u8], transport: Transport, listener: Listener) {
        let peer = Peer {
            addr: addr(from),
            transport,
            conn: (transport == Transport::Tcp).then_some(crate::engine::ConnId { core: 0, id: 1 }),
        };
        let msg = Received {
            bytes,
            peer,
            local: addr(&format!("{PROXY}:{PUBLIC}")),
            listener,
        };
        let now = self.now;
        if let Disposition::HandOff(to) = self.cores[0].handle_message(now, msg) {
            self.cores[usize::from(to)].handle_handoff(now, msg);
        }
        self.collect();
    }

    fn send(&mut self, from: &str, bytes: &[u8]) {
        self.deliver(from, bytes, Transport::Udp, Listener::Public);
    }

    /// A response arriving on the private port of core 0.
    fn reply(&mut self, from: &str, bytes: &[u8]) {
        self.deliver(from, bytes, Transport::Udp, Listener::Private);
    }

    fn collect(&mut self) {
        let now = self.now;
        let mut buf = Vec::new();
        for core in &mut self.cores {
            while let Some(t) = core.poll_transmit(now, &mut buf) {
                self.sent.push(Sent {
                    to: t.dest.addr,
                    transport: t.dest.transport,
                    source: t.source,
                    bytes: buf[..t.len].to_vec(),
                });
            }
        }
    }

    /// Everything sent since the last call.
    fn take(&mut self) -> Vec<Sent> {
        std::mem::take(&mut self.sent)
    }

    /// The one message sent since the last call.
    fn take_one(&mut self) -> Sent {
        let mut s = self.take();
        assert_eq!(
            s.len(),
            1,
            "expected one message, got {:#?}",
            s.iter().map(Sent::text).collect::<Vec<_>>()
        );
        s.pop().unwrap()
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.cores.iter().filter_map(|c| c.poll_timeout()).min()
    }

    /// Advances virtual time to `until`, firing every timer on the way.
    fn run_until(&mut self, until: Instant) {
        let mut steps = 0;
        while let Some(t) = self.next_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            for core in &mut self.cores {
                core.handle_timeout(now);
            }
            self.collect();
            steps += 1;
            assert!(steps < 10_000, "timers do not converge");
        }
        self.now = self.now.max(until);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn active(&self) -> usize {
        self.cores.iter().map(ProxyEngine::calls_active).sum()
    }
}

/// A request from the UAC.
fn request(
    method: &str,
    ruri: &str,
    branch: &str,
    cseq: u32,
    call_id: &str,
    to_tag: Option<&str>,
    extra: &str,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP {UAC};branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>{to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@{UAC}>\r\n\
{extra}\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(branch: &str, call_id: &str) -> Vec<u8> {
    request(
        "INVITE",
        &format!("sip:service@{PROXY}:{PUBLIC}"),
        branch,
        1,
        call_id,
        None,
        "",
    )
}

/// A response from a UAS to a request it received from the proxy.
fn respond(req: &Sent, code: u16, reason: &str, tag: Option<&str>) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.headers("Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for rr in req.headers("Record-Route") {
        out.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    out.push_str(&format!("From: {}\r\n", req.header("From").unwrap()));
    let to = req.header("To").unwrap();
    match tag {
        Some(t) if !to.contains(";tag=") => out.push_str(&format!("To: {to};tag={t}\r\n")),
        _ => out.push_str(&format!("To: {to}\r\n")),
    }
    out.push_str(&format!("Call-ID: {}\r\n", req.header("Call-ID").unwrap()));
    out.push_str(&format!("CSeq: {}\r\n", req.header("CSeq").unwrap()));
    out.push_str(&format!(
        "Contact: <sip:bob@{UAS}>\r\nContent-Length: 0\r\n\r\n"
    ));
    out.into_bytes()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------------------ calls

#[test]
fn uac_proxy_uas_call() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-c1", "call-1@uac"));
    let out = net.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let trying = &out[0];
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.to, addr(UAC), "rport: back to the source");
    assert_eq!(trying.source, Listener::Public);
    let inv = out[1].clone();
    assert_eq!(inv.method(), Some("INVITE"));
    assert_eq!(inv.to, addr(UAS));
    assert_eq!(inv.source, Listener::Private);
    assert_eq!(
        inv.start(),
        format!("INVITE sip:service@{PROXY}:{PUBLIC} SIP/2.0")
    );
    let vias = inv.headers("Via");
    assert_eq!(vias.len(), 2);
    assert!(vias[0].starts_with(&format!("SIP/2.0/UDP {PROXY}:{PRIVATE};branch=z9hG4bK")));
    assert_eq!(
        vias[1],
        format!("SIP/2.0/UDP {UAC};branch=z9hG4bK-c1;rport=5062;received=198.51.100.10")
    );
    assert_eq!(inv.header("Max-Forwards"), Some("69"));
    let rr = inv.header("Record-Route").unwrap();
    // Node (derived from the advertised address) and core in `sr`.
    let node = sipring_ring::key_id(format!("{PROXY}:{PUBLIC}").as_bytes()) & 0xffff_ffff;
    assert_eq!(rr, format!("<sip:{PROXY}:{PRIVATE};lr;sr={node:x}.0>"));

    // 180 and 200 come back without our Via.
    net.reply(UAS, &respond(&inv, 180, "Ringing", Some("b1")));
    let ringing = net.take_one();
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.to, addr(UAC));
    assert_eq!(ringing.headers("Via").len(), 1);
    assert!(ringing.header("Via").unwrap().contains("branch=z9hG4bK-c1"));
    net.reply(UAS, &respond(&inv, 200, "OK", Some("b1")));
    let ok = net.take_one();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("Record-Route"), Some(rr));

    // The 2xx ACK and the BYE are new transactions, carried to forward_to.
    let ruri = format!("sip:service@{PROXY}:{PUBLIC}");
    net.send(
        UAC,
        &request(
            "ACK",
            &ruri,
            "z9hG4bK-c1ack",
            1,
            "call-1@uac",
            Some("b1"),
            "",
        ),
    );
    let ack = net.take_one();
    assert_eq!((ack.method(), ack.to), (Some("ACK"), addr(UAS)));
    assert_eq!(ack.headers("Via").len(), 2);
    net.send(
        UAC,
        &request(
            "BYE",
            &ruri,
            "z9hG4bK-c1bye",
            2,
            "call-1@uac",
            Some("b1"),
            "",
        ),
    );
    let bye = net.take_one();
    assert_eq!((bye.method(), bye.to), (Some("BYE"), addr(UAS)));
    assert!(
        bye.header("Record-Route").is_none(),
        "in-dialog: no Record-Route"
    );
    net.reply(UAS, &respond(&bye, 200, "OK", None));
    let bye_ok = net.take_one();
    assert_eq!((bye_ok.status(), bye_ok.to), (Some(200), addr(UAC)));
    assert!(bye_ok.header("CSeq").unwrap().ends_with("BYE"));

    // Everything is forgotten once the transaction timers run out.
    assert_eq!(net.active(), 2);
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.active(), 0);
    assert!(net.take().is_empty(), "nothing retransmitted");
}

#[test]
fn delayed_100_trying_is_sent_only_when_needed() {
    let mut net = Net::new(ProxySettings {
        forward_to: Some(addr(UAS)),
        trying_delay: ms(200),
        ..ProxySettings::default()
    });
    // The callee rings within 200 ms: no 100 at all.
    net.send(UAC, &invite("z9hG4bK-d1", "d1@uac"));
    let inv = net.take_one();
    assert_eq!(inv.method(), Some("INVITE"));
    net.run_for(ms(50));
    net.reply(UAS, &respond(&inv, 180, "Ringing", Some("b1")));
    assert_eq!(net.take_one().status(), Some(180));
    net.run_for(ms(1_000));
    assert!(net.take().is_empty());
    // Silence for 200 ms: the 100 goes out then.
    net.send(UAC, &invite("z9hG4bK-d2", "d2@uac"));
    assert_eq!(net.take_one().method(), Some("INVITE"));
    net.run_for(ms(199));
    assert!(net.take().is_empty());
    net.run_for(ms(1));
    assert_eq!(net.take_one().status(), Some(100));
    // A retransmission before that gets the 100 at once.
    let inv3 = invite("z9hG4bK-d3", "d3@uac");
    net.send(UAC, &inv3);
    net.take();
    net.run_for(ms(100));
    net.send(UAC, &inv3);
    assert_eq!(net.take_one().status(), Some(100));
}

#[test]
fn retransmissions_are_absorbed_both_ways() {
    let mut net = Net::forward_to();
    let inv_bytes = invite("z9hG4bK-r1", "call-r@uac");
    net.send(UAC, &inv_bytes);
    let inv = net.take()[1].clone();
    // The UAC retransmits: the 100 is resent, the INVITE is not forwarded.
    net.send(UAC, &inv_bytes);
    let again = net.take_one();
    assert_eq!(again.status(), Some(100));
    // No answer from the UAS: Timer A retransmits the INVITE at 500 ms.
    net.run_for(ms(500));
    let retx = net.take_one();
    assert_eq!(retx.bytes, inv.bytes);
    // 180 stops Timer A; a retransmitted 180 is forwarded again (§16.7).
    let ringing = respond(&inv, 180, "Ringing", Some("b1"));
    net.reply(UAS, &ringing);
    assert_eq!(net.take_one().status(), Some(180));
    net.run_for(ms(10_000));
    assert!(net.take().is_empty(), "no retransmission in Proceeding");
    // 486: ACKed hop by hop and forwarded once.
    let busy = respond(&inv, 486, "Busy Here", Some("b1"));
    net.reply(UAS, &busy);
    let out = net.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let ack = out.iter().find(|s| s.method() == Some("ACK")).unwrap();
    assert_eq!(ack.to, addr(UAS));
    assert_eq!(
        ack.top_branch(),
        inv.top_branch(),
        "ACK for non-2xx: same branch"
    );
    assert!(ack.header("To").unwrap().contains("tag=b1"));
    assert_eq!(ack.header("CSeq"), Some("1 ACK"));
    let fwd = out.iter().find(|s| s.status() == Some(486)).unwrap();
    assert_eq!(fwd.to, addr(UAC));
    // A retransmitted 486 gets the same ACK, nothing upstream.
    net.reply(UAS, &busy);
    let ack2 = net.take_one();
    assert_eq!(ack2.bytes, ack.bytes);
    // Upstream: no ACK yet, Timer G resends the 486 at 500 ms, 1.5 s.
    net.run_for(ms(500));
    assert_eq!(net.take_one().status(), Some(486));
    // The UAC's ACK (same branch as its INVITE) is absorbed.
    let ruri = format!("sip:service@{PROXY}:{PUBLIC}");
    net.send(
        UAC,
        &request("ACK", &ruri, "z9hG4bK-r1", 1, "call-r@uac", Some("b1"), ""),
    );
    assert!(net.take().is_empty(), "hop-by-hop ACK absorbed");
    net.run_for(ms(5_000));
    assert!(net.take().is_empty(), "Timer G stopped by the ACK");
    // A 2xx retransmission after the call ended is forwarded statelessly.
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.active(), 0);
}

#[test]
fn two_hundred_retransmissions_are_forwarded_end_to_end() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-t1", "call-t@uac"));
    let inv = net.take()[1].clone();
    let ok = respond(&inv, 200, "OK", Some("b1"));
    net.reply(UAS, &ok);
    assert_eq!(net.take_one().status(), Some(200));
    net.reply(UAS, &ok);
    assert_eq!(net.take_one().status(), Some(200), "RFC 6026 Accepted");
    // After Timer L/M the transaction is gone: forwarded statelessly by Via.
    net.run_for(Duration::from_secs(33));
    assert_eq!(net.active(), 0);
    net.reply(UAS, &ok);
    let late = net.take_one();
    assert_eq!((late.status(), late.to), (Some(200), addr(UAC)));
}

#[test]
fn cancel_before_the_final_response() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-x1", "call-x@uac"));
    let inv = net.take()[1].clone();
    net.reply(UAS, &respond(&inv, 180, "Ringing", Some("b1")));
    net.take();
    let ruri = format!("sip:service@{PROXY}:{PUBLIC}");
    net.send(
        UAC,
        &request("CANCEL", &ruri, "z9hG4bK-x1", 1, "call-x@uac", None, ""),
    );
    let out = net.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let ok = out.iter().find(|s| s.status() == Some(200)).unwrap();
    assert_eq!(ok.to, addr(UAC));
    assert_eq!(ok.header("CSeq"), Some("1 CANCEL"));
    let cancel = out
        .iter()
        .find(|s| s.method() == Some("CANCEL"))
        .unwrap()
        .clone();
    assert_eq!(cancel.to, addr(UAS));
    assert_eq!(cancel.top_branch(), inv.top_branch());
    assert_eq!(cancel.headers("Via").len(), 1);
    assert_eq!(cancel.header("CSeq"), Some("1 CANCEL"));
    assert_eq!(cancel.start(), inv.start().replace("INVITE", "CANCEL"));
    // The UAS answers the CANCEL (absorbed) and the INVITE with 487.
    net.reply(UAS, &respond(&cancel, 200, "OK", Some("b1")));
    assert!(net.take().is_empty());
    net.reply(UAS, &respond(&inv, 487, "Request Terminated", Some("b1")));
    let out = net.take();
    assert!(
        out.iter()
            .any(|s| s.method() == Some("ACK") && s.to == addr(UAS))
    );
    let fwd = out.iter().find(|s| s.status() == Some(487)).unwrap();
    assert_eq!(fwd.to, addr(UAC));
    // A retransmitted CANCEL gets the 200 again.
    net.send(
        UAC,
        &request("CANCEL", &ruri, "z9hG4bK-x1", 1, "call-x@uac", None, ""),
    );
    assert_eq!(net.take_one().status(), Some(200));
    net.send(
        UAC,
        &request("ACK", &ruri, "z9hG4bK-x1", 1, "call-x@uac", Some("b1"), ""),
    );
    assert!(net.take().is_empty());
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.active(), 0);
}

#[test]
fn cancel_after_the_200_changes_nothing() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-y1", "call-y@uac"));
    let inv = net.take()[1].clone();
    net.reply(UAS, &respond(&inv, 200, "OK", Some("b1")));
    assert_eq!(net.take_one().status(), Some(200));
    let ruri = format!("sip:service@{PROXY}:{PUBLIC}");
    net.send(
        UAC,
        &request("CANCEL", &ruri, "z9hG4bK-y1", 1, "call-y@uac", None, ""),
    );
    let ok = net.take_one();
    assert_eq!(
        ok.status(),
        Some(200),
        "§16.10: 200 to the CANCEL, nothing forwarded"
    );
    assert_eq!(ok.header("CSeq"), Some("1 CANCEL"));
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-z1", "call-z@uac"));
    let inv = net.take()[1].clone();
    let ruri = format!("sip:service@{PROXY}:{PUBLIC}");
    net.send(
        UAC,
        &request("CANCEL", &ruri, "z9hG4bK-z1", 1, "call-z@uac", None, ""),
    );
    let ok = net.take_one();
    assert_eq!(
        ok.status(),
        Some(200),
        "no CANCEL downstream before a provisional"
    );
    net.reply(UAS, &respond(&inv, 100, "Trying", None));
    let cancel = net.take_one();
    assert_eq!(cancel.method(), Some("CANCEL"));
    assert_eq!(cancel.top_branch(), inv.top_branch());
}

// ------------------------------------------------------------------ timers

#[test]
fn timer_b_gives_408_to_the_caller() {
    let start = std::time::Instant::now();
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-b1", "call-b@uac"));
    net.take();
    net.run_for(ms(31_999));
    let retx = net.take();
    assert_eq!(retx.len(), 6, "Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
    assert!(
        retx.iter()
            .all(|s| s.method() == Some("INVITE") && s.to == addr(UAS))
    );
    net.run_for(ms(1));
    let timeout = net.take_one();
    assert_eq!((timeout.status(), timeout.to), (Some(408), addr(UAC)));
    assert!(timeout.header("To").unwrap().contains(";tag="));
    assert!(start.elapsed() < Duration::from_secs(2), "virtual time");
}

#[test]
fn timer_c_cancels_a_ringing_branch() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-tc", "call-tc@uac"));
    let inv = net.take()[1].clone();
    net.reply(UAS, &respond(&inv, 180, "Ringing", Some("b1")));
    net.take();
    net.run_for(Duration::from_secs(180));
    assert!(net.take().is_empty());
    net.run_for(Duration::from_secs(1));
    let cancel = net.take_one();
    assert_eq!(cancel.method(), Some("CANCEL"));
    // The UAS never answers: the CANCEL is retransmitted and, 64*T1 later,
    // the caller gets 408.
    net.run_for(Duration::from_secs(31));
    let retx = net.take();
    assert!(!retx.is_empty() && retx.iter().all(|s| s.method() == Some("CANCEL")));
    net.run_for(Duration::from_secs(2));
    let out = net.take();
    let timeout = out.iter().find(|s| s.status().is_some()).unwrap();
    assert_eq!((timeout.status(), timeout.to), (Some(408), addr(UAC)));
}

#[test]
fn timer_c_then_487_is_forwarded() {
    let cfg = ProxySettings {
        forward_to: Some(addr(UAS)),
        timers: TimerConfig {
            timer_c: Duration::from_secs(200),
            ..TimerConfig::default()
        },
        ..ProxySettings::default()
    };
    let mut net = Net::new(cfg);
    net.send(UAC, &invite("z9hG4bK-tc2", "call-tc2@uac"));
    let inv = net.take()[1].clone();
    net.reply(UAS, &respond(&inv, 183, "Session Progress", Some("b1")));
    net.take();
    net.run_for(Duration::from_secs(100));
    net.reply(UAS, &respond(&inv, 180, "Ringing", Some("b1")));
    net.take();
    net.run_for(Duration::from_secs(199));
    assert!(net.take().is_empty(), "Timer C restarted by the 180");
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.take_one().method(), Some("CANCEL"));
    net.reply(UAS, &respond(&inv, 487, "Request Terminated", Some("b1")));
    let out = net.take();
    assert!(
        out.iter()
            .any(|s| s.status() == Some(487) && s.to == addr(UAC))
    );
}

// ------------------------------------------------------------------ forking

fn forking_net() -> Net {
    let mut net = Net::new(ProxySettings::default());
    let contacts = [UAS, UAS2, UAS3]
        .iter()
        .map(|a| format!("sip:bob@{a}").into_bytes())
        .collect();
    net.cores[0].set_services(Box::new(Static {
        contacts,
        ..Static::default()
    }));
    net
}

fn fork_invite(net: &mut Net, call: &str) -> Vec<Sent> {
    let bytes = request(
        "INVITE",
        &format!("sip:fork@{PROXY}"),
        &format!("z9hG4bK-{call}"),
        1,
        call,
        None,
        "",
    );
    net.send(UAC, &bytes);
    let out = net.take();
    assert_eq!(out[0].status(), Some(100));
    let branches: Vec<Sent> = out[1..].to_vec();
    assert_eq!(branches.len(), 3);
    branches
}

#[test]
fn forks_in_parallel_and_picks_the_best_response() {
    let mut net = forking_net();
    let b = fork_invite(&mut net, "f1");
    let dests: Vec<_> = b.iter().map(|s| s.to).collect();
    assert_eq!(dests, vec![addr(UAS), addr(UAS2), addr(UAS3)]);
    assert_eq!(b[1].start(), format!("INVITE sip:bob@{UAS2} SIP/2.0"));
    let branches: std::collections::HashSet<_> = b.iter().map(Sent::top_branch).collect();
    assert_eq!(branches.len(), 3, "a unique branch per target");
    net.reply(UAS, &respond(&b[0], 486, "Busy Here", Some("t1")));
    assert_eq!(
        net.take_one().method(),
        Some("ACK"),
        "held back: other branches pending"
    );
    net.reply(
        UAS2,
        &respond(&b[1], 503, "Service Unavailable", Some("t2")),
    );
    net.take();
    net.reply(UAS3, &respond(&b[2], 404, "Not Found", Some("t3")));
    let out = net.take();
    let best = out.iter().find(|s| s.status().is_some()).unwrap();
    assert_eq!(best.status(), Some(486), "lowest class, first received");
    assert_eq!(best.to, addr(UAC));
}

#[test]
fn a_waiting_request_is_routed_when_the_services_decide() {
    let mut net = forking_net();
    let inv = request(
        "INVITE",
        &format!("sip:wait@{PROXY}"),
        "z9hG4bK-w1",
        1,
        "w1",
        None,
        "",
    );
    net.send(UAC, &inv);
    let out = net.take();
    assert_eq!(out.len(), 1, "only 100 Trying while the services wait");
    assert_eq!(out[0].status(), Some(100));
    // A retransmission is absorbed (the 100 again), not decided twice.
    net.send(UAC, &inv);
    assert_eq!(net.take_one().status(), Some(100));
    let now = net.now;
    net.cores[0].handle_reply(
        now,
        Reply::Store {
            token: 1,
            answer: Err(crate::store::StoreError::Overloaded),
        },
    );
    net.collect();
    let out = net.take();
    let dests: Vec<_> = out.iter().map(|s| s.to).collect();
    assert_eq!(dests, vec![addr(UAS), addr(UAS2), addr(UAS3)]);
    assert_eq!(out[0].start(), format!("INVITE sip:bob@{UAS} SIP/2.0"));
}

#[test]
fn a_cancel_or_a_silent_store_ends_a_waiting_request() {
    let mut net = forking_net();
    let inv = request(
        "INVITE",
        &format!("sip:wait@{PROXY}"),
        "z9hG4bK-w2",
        1,
        "w2",
        None,
        "",
    );
    net.send(UAC, &inv);
    net.take();
    let cancel = request(
        "CANCEL",
        &format!("sip:wait@{PROXY}"),
        "z9hG4bK-w2",
        1,
        "w2",
        None,
        "",
    );
    net.send(UAC, &cancel);
    let codes: Vec<_> = net.take().iter().filter_map(Sent::status).collect();
    assert_eq!(codes, vec![200, 487]);
    // The decision that comes later is ignored.
    let now = net.now;
    net.cores[0].handle_reply(
        now,
        Reply::Store {
            token: 1,
            answer: Err(crate::store::StoreError::Overloaded),
        },
    );
    net.collect();
    assert!(net.take().iter().all(|s| s.method() != Some("INVITE")));

    // No decision at all: 503 after the wait limit.
    let msg = request(
        "MESSAGE",
        &format!("sip:wait@{PROXY}"),
        "z9hG4bK-w3",
        1,
        "w3",
        None,
        "",
    );
    net.send(UAC, &msg);
    assert!(net.take().is_empty());
    net.run_for(WAIT_LIMIT + Duration::from_secs(1));
    // (The 487 above is retransmitted meanwhile: no ACK came.)
    let out = net.take();
    let to_message: Vec<_> = out
        .iter()
        .filter(|s| String::from_utf8_lossy(&s.bytes).contains("Call-ID: w3\r\n"))
        .filter_map(Sent::status)
        .collect();
    assert_eq!(to_message, vec![503]);
}

#[test]
fn targets_carry_their_path_and_flow() {
    let mut net = Net::new(ProxySettings::default());
    let flow = Peer {
        addr: addr(UAS2),
        transport: Transport::Udp,
        conn: None,
    };
    let targets = vec![
        Target {
            uri: format!("sip:bob@{UAS}").into_bytes(),
            route: vec![
                b"<sip:edge.example.net;lr>".to_vec(),
                b"<sip:203.0.113.99:5090;lr>".to_vec(),
            ],
            dest: Some(flow),
        },
        Target {
            uri: format!("sip:bob@{UAS3}").into_bytes(),
            route: vec![b"<sip:203.0.113.99:5090;lr>".to_vec()],
            dest: None,
        },
    ];
    #[derive(Debug)]
    struct Fixed(Vec<Target>);
    impl Services for Fixed {
        fn on_request(&mut self, _: Instant, _: &NewRequest<'_>, _: u64) -> Action {
            Action::Fork(self.0.clone())
        }
        fn handle_reply(&mut self, _: Instant, _: Reply) {}
        fn poll_decision(&mut self) -> Option<(u64, Action)> {
            None
        }
        fn poll_request(&mut self) -> Option<Request> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn abandon(&mut self, _: u64) {}
    }
    net.cores[0].set_services(Box::new(Fixed(targets)));
    let inv = request(
        "INVITE",
        &format!("sip:bob@{PROXY}"),
        "z9hG4bK-p1",
        1,
        "p1",
        None,
        "",
    );
    net.send(UAC, &inv);
    let out: Vec<Sent> = net
        .take()
        .into_iter()
        .filter(|s| s.method().is_some())
        .collect();
    assert_eq!(out.len(), 2);
    // The flow's address, whatever the Path says; the Path as Route.
    assert_eq!(out[0].to, addr(UAS2));
    assert_eq!(out[0].start(), format!("INVITE sip:bob@{UAS} SIP/2.0"));
    let text = String::from_utf8_lossy(&out[0].bytes);
    assert!(
        text.contains("Route: <sip:edge.example.net;lr>\r\nRoute: <sip:203.0.113.99:5090;lr>\r\n"),
        "{text}"
    );
    // No flow: the first Path entry is the next hop.
    assert_eq!(out[1].to, addr("203.0.113.99:5090"));
}

#[test]
fn a_6xx_wins_and_cancels_the_other_branches() {
    let mut net = forking_net();
    let b = fork_invite(&mut net, "f2");
    net.reply(UAS, &respond(&b[0], 180, "Ringing", Some("t1")));
    net.reply(UAS2, &respond(&b[1], 180, "Ringing", Some("t2")));
    net.take();
    net.reply(UAS3, &respond(&b[2], 603, "Decline", Some("t3")));
    let out = net.take();
    let cancels: Vec<_> = out
        .iter()
        .filter(|s| s.method() == Some("CANCEL"))
        .map(|s| s.to)
        .collect();
    assert_eq!(cancels, vec![addr(UAS), addr(UAS2)]);
    net.reply(UAS, &respond(&b[0], 487, "Request Terminated", Some("t1")));
    net.reply(UAS2, &respond(&b[1], 487, "Request Terminated", Some("t2")));
    let out = net.take();
    let finals: Vec<_> = out.iter().filter_map(Sent::status).collect();
    assert_eq!(finals, vec![603]);
}

#[test]
fn a_2xx_is_forwarded_at_once_and_cancels_the_rest() {
    let mut net = forking_net();
    let b = fork_invite(&mut net, "f3");
    net.reply(UAS2, &respond(&b[1], 180, "Ringing", Some("t2")));
    assert_eq!(net.take_one().status(), Some(180));
    net.reply(UAS, &respond(&b[0], 200, "OK", Some("t1")));
    let out = net.take();
    assert_eq!(out[0].status(), Some(200));
    let cancels: Vec<_> = out
        .iter()
        .filter(|s| s.method() == Some("CANCEL"))
        .map(|s| s.to)
        .collect();
    assert_eq!(
        cancels,
        vec![addr(UAS2)],
        "no CANCEL before a provisional (UAS3)"
    );
    // UAS3 rings late: it gets its CANCEL then.
    net.reply(UAS3, &respond(&b[2], 180, "Ringing", Some("t3")));
    let out = net.take();
    assert!(
        out.iter()
            .any(|s| s.method() == Some("CANCEL") && s.to == addr(UAS3))
    );
    assert!(
        !out.iter().any(|s| s.status() == Some(180)),
        "no provisional after the 200"
    );
    // A second 2xx (another fork answered too) is forwarded as well.
    net.reply(UAS3, &respond(&b[2], 200, "OK", Some("t3")));
    let out = net.take();
    assert!(
        out.iter()
            .any(|s| s.status() == Some(200) && s.to == addr(UAC))
    );
}

#[test]
fn only_503_becomes_500() {
    let mut net = Net::forward_to();
    net.send(UAC, &invite("z9hG4bK-u1", "call-u@uac"));
    let inv = net.take()[1].clone();
    net.reply(UAS, &respond(&inv, 503, "Service Unavailable", Some("b1")));
    let out = net.take();
    let fwd = out.iter().find(|s| s.status().is_some()).unwrap();
    assert_eq!(fwd.status(), Some(500));
}

// ------------------------------------------------------------------ errors

fn answer_to(net: &mut Net, bytes: &[u8]) -> Option<u16> {
    net.send(UAC, bytes);
    let out = net.take();
    assert!(out.len() <= 1, "{out:#?}");
    out.first().and_then(Sent::status)
}

#[test]
fn every_error_response() {
    let mut net = Net::forward_to();
    let ruri = format!("sip:service@{PROXY}:{PUBLIC}");
    // 416: unsupported URI scheme.
    let tel = request("OPTIONS", "tel:+15551234", "z9hG4bK-e1", 1, "e1", None, "");
    assert_eq!(answer_to(&mut net, &tel), Some(416));
    // 420 with Unsupported listing the tags.
    let pr = request(
        "OPTIONS",
        &ruri,
        "z9hG4bK-e2",
        1,
        "e2",
        None,
        "Proxy-Require: foo, bar\r\n",
    );
    net.send(UAC, &pr);
    let r = net.take_one();
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.header("Unsupported"), Some("foo, bar"));
    // 483: Max-Forwards 0.
    let mf = String::from_utf8(invite("z9hG4bK-e3", "e3"))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(answer_to(&mut net, mf.as_bytes()), Some(483));
    // 505: wrong version.
    let v = String::from_utf8(invite("z9hG4bK-e4", "e4"))
        .unwrap()
        .replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    assert_eq!(answer_to(&mut net, v.as_bytes()), Some(505));
    // 513: too large.
    let big = request(
        "MESSAGE",
        &ruri,
        "z9hG4bK-e5",
        1,
        "e5",
        None,
        &format!("X-Pad: {}\r\n", "x".repeat(20_000)),
    );
    assert_eq!(answer_to(&mut net, &big), Some(513));
    // 400 with a reason.
    let nocallid = String::from_utf8(invite("z9hG4bK-e6", "e6"))
        .unwrap()
        .replace("Call-ID: e6\r\n", "");
    net.send(UAC, nocallid.as_bytes());
    let r = net.take_one();
    assert_eq!(r.status(), Some(400));
    assert_eq!(r.start(), "SIP/2.0 400 Missing Call-ID Header");
    let mismatch = String::from_utf8(request("OPTIONS", &ruri, "z9hG4bK-e7", 1, "e7", None, ""))
        .unwrap()
        .replace("1 OPTIONS", "1 INVITE");
    assert_eq!(answer_to(&mut net, mismatch.as_bytes()), Some(400));
    // Unanswerable requests and malformed responses: counted drops.
    let drops = net.counters().drops(DropReason::Malformed);
    assert_eq!(
        answer_to(&mut net, b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n\r\n"),
        None
    );
    assert_eq!(
        answer_to(&mut net, b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n"),
        None
    );
    assert_eq!(answer_to(&mut net, b"\x00\x01garbage"), None);
    assert_eq!(net.counters().drops(DropReason::Malformed), drops + 3);
    // A stray response is dropped and counted.
    let stray = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {UAS};branch=z9hG4bKzz\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: s\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    net.reply(UAS, stray.as_bytes());
    assert!(net.take().is_empty());
    assert_eq!(net.counters().drops(DropReason::StrayResponse), 1);
    // An INVITE answered here absorbs its retransmission and ACK.
    net.send(UAC, mf.as_bytes());
    assert_eq!(net.take_one().status(), Some(483));
    net.send(
        UAC,
        &request("ACK", &ruri, "z9hG4bK-e3", 1, "e3", Some("x"), ""),
    );
    assert!(net.take().is_empty(), "ACK to a local 483 is not forwarded");
}

#[test]
fn loop_detected_but_spiral_allowed() {
    let mut net = Net::forward_to();
    net.send(
        UAC,
        &request(
            "OPTIONS",
            &format!("sip:bob@{UAS}"),
            "z9hG4bK-l1",
            1,
            "l1",
            None,
            "",
        ),
    );
    let fwd = net.take_one();
    // The same request comes back to us through another proxy: a loop.
    let looped = String::from_utf8(fwd.bytes.clone()).unwrap().replacen(
        "\r\nVia:",
        &format!("\r\nVia: SIP/2.0/UDP {UAS};branch=z9hG4bK-p1\r\nVia:"),
        1,
    );
    net.deliver(UAS, looped.as_bytes(), Transport::Udp, Listener::Public);
    let r = net.take_one();
    assert_eq!((r.status(), r.to), (Some(482), addr(UAS)));
    // Back with another Request-URI: a spiral, forwarded.
    let spiral = String::from_utf8(fwd.bytes.clone()).unwrap().replacen(
        &format!("sip:bob@{UAS}"),
        "sip:carol@example.net",
        1,
    );
    net.deliver(UAS2, spiral.as_bytes(), Transport::Udp, Listener::Public);
    let f = net.take_one();
    assert_eq!(f.method(), Some("OPTIONS"), "{}", f.text());
}

#[test]
fn loose_and_strict_routing() {
    let mut net = Net::new(ProxySettings::default());
    // Our Route on top is removed; the next one (loose) is the next hop.
    let r = request(
        "OPTIONS",
        "sip:bob@example.com",
        "z9hG4bK-ro1",
        1,
        "ro1",
        None,
        &format!("Route: <sip:{PROXY}:{PRIVATE};lr>, <sip:{UAS2};lr>\r\n"),
    );
    net.send(UAC, &r);
    let f = net.take_one();
    assert_eq!(f.to, addr(UAS2));
    assert_eq!(f.headers("Route"), vec![format!("<sip:{UAS2};lr>")]);
    assert_eq!(f.start(), "OPTIONS sip:bob@example.com SIP/2.0");
    // A strict router next: the Request-URI goes last into Route (§16.6 step 6).
    let r = request(
        "OPTIONS",
        "sip:bob@example.com",
        "z9hG4bK-ro2",
        1,
        "ro2",
        None,
        &format!("Route: <sip:{UAS3}>\r\n"),
    );
    net.send(UAC, &r);
    let f = net.take_one();
    assert_eq!(f.to, addr(UAS3));
    assert_eq!(f.start(), format!("OPTIONS sip:{UAS3} SIP/2.0"));
    assert_eq!(f.headers("Route"), vec!["<sip:bob@example.com>".to_owned()]);
    // A strict router before us put our Record-Route into the Request-URI:
    // the real Request-URI is the last Route (§16.4).
    let r = request(
        "BYE",
        &format!("sip:{PROXY}:{PRIVATE};lr;sr=0.0"),
        "z9hG4bK-ro3",
        2,
        "ro3",
        Some("x"),
        &format!("Route: <sip:bob@{UAS}>\r\n"),
    );
    net.send(UAC, &r);
    let f = net.take_one();
    assert_eq!(
        (f.to, f.start()),
        (addr(UAS), format!("BYE sip:bob@{UAS} SIP/2.0").as_str())
    );
    assert!(f.headers("Route").is_empty());
    // No route and addressed to us: 404.
    let r = request(
        "OPTIONS",
        &format!("sip:nobody@{PROXY}"),
        "z9hG4bK-ro4",
        1,
        "ro4",
        None,
        "",
    );
    assert_eq!(answer_to(&mut net, &r), Some(404));
}

#[test]
fn requests_from_the_next_hop_follow_their_route() {
    let mut net = Net::forward_to();
    // The callee's BYE comes from forward_to with our Record-Route as Route.
    let bye = request(
        "BYE",
        &format!("sip:alice@{UAC}"),
        "z9hG4bK-nh1",
        1,
        "nh1",
        Some("x"),
        &format!("Route: <sip:{PROXY}:{PRIVATE};lr;sr=0.0>\r\n"),
    );
    net.deliver(UAS, &bye, Transport::Udp, Listener::Private);
    let f = net.take_one();
    assert_eq!(f.to, addr(UAC));
}

#[test]
fn names_are_resolved_off_the_packet_path() {
    let mut net = Net::new(ProxySettings::default());
    let r = request(
        "OPTIONS",
        "sip:bob@uas.example.net:5090",
        "z9hG4bK-d1",
        1,
        "d1",
        None,
        "",
    );
    net.send(UAC, &r);
    assert!(net.take().is_empty());
    let Some(Request::Resolve { token, host }) = net.cores[0].poll_request() else {
        panic!("a lookup");
    };
    assert_eq!(host, "uas.example.net");
    net.cores[0].handle_reply(
        net.now,
        Reply::Resolved {
            token,
            addrs: vec!["203.0.113.50".parse().unwrap()],
        },
    );
    net.collect();
    let f = net.take_one();
    assert_eq!(f.to, addr("203.0.113.50:5090"));
    // Cached: the next request goes at once.
    net.send(
        UAC,
        &request(
            "OPTIONS",
            "sip:bob@uas.example.net:5090",
            "z9hG4bK-d2",
            1,
            "d2",
            None,
            "",
        ),
    );
    assert_eq!(net.take_one().to, addr("203.0.113.50:5090"));
    // A name that does not resolve: 503.
    net.send(
        UAC,
        &request(
            "OPTIONS",
            "sip:bob@nowhere.invalid",
            "z9hG4bK-d3",
            1,
            "d3",
            None,
            "",
        ),
    );
    let Some(Request::Resolve { token, .. }) = net.cores[0].poll_request() else {
        panic!("a lookup");
    };
    net.cores[0].handle_reply(
        net.now,
        Reply::Resolved {
            token,
            addrs: vec![],
        },
    );
    net.collect();
    assert_eq!(net.take_one().status(), Some(503));
}

#[test]
fn messages_go_to_the_core_owning_their_call_id() {
    let mut net = Net::with_cores(
        ProxySettings {
            forward_to: Some(addr(UAS)),
            ..ProxySettings::default()
        },
        2,
    );
    let mut seen = [false; 2];
    for i in 0..16 {
        let call = format!("owner-{i}@uac");
        let owner = owner_core(sipring_ring::key_id(call.as_bytes()), 2);
        net.send(UAC, &invite(&format!("z9hG4bK-o{i}"), &call));
        let out = net.take();
        let inv = out.iter().find(|s| s.method() == Some("INVITE")).unwrap();
        // The owner writes its own private port into the Via.
        assert!(
            inv.header("Via")
                .unwrap()
                .contains(&format!(":{};", PRIVATE + owner))
        );
        assert_eq!(net.cores[usize::from(owner)].calls_active(), 1);
        seen[usize::from(owner)] = true;
        net.cores[usize::from(owner)] = ProxyEngine::new(
            ctx(owner, 2),
            ProxySettings {
                forward_to: Some(addr(UAS)),
                ..ProxySettings::default()
            },
        );
    }
    assert_eq!(seen, [true, true]);
}

#[test]
fn large_requests_go_over_tcp_and_back_to_udp_without_a_connection() {
    let mut net = Net::forward_to();
    let pad = format!("X-Pad: {}\r\n", "p".repeat(1_400));
    let big = request(
        "MESSAGE",
        &format!("sip:bob@{UAS}"),
        "z9hG4bK-big",
        1,
        "big@uac",
        None,
        &pad,
    );
    net.send(UAC, &big);
    let fwd = net.take_one();
    assert_eq!((fwd.to, fwd.transport), (addr(UAS), Transport::Tcp));
    assert!(fwd.header("Via").unwrap().starts_with("SIP/2.0/TCP "));
    // The next hop takes no TCP: the same request again over UDP, and
    // retransmitted as UDP requests are.
    net.cores[0].handle_conn_event(net.now, ConnEvent::ConnectFailed(addr(UAS)));
    net.collect();
    let again = net.take_one();
    assert_eq!((again.to, again.transport), (addr(UAS), Transport::Udp));
    assert!(again.header("Via").unwrap().starts_with("SIP/2.0/UDP "));
    assert_eq!(again.top_branch(), fwd.top_branch());
    net.run_for(ms(500));
    assert_eq!(net.take_one().transport, Transport::Udp, "Timer E");
    // A destination that asks for TCP and cannot be reached: the branch
    // counts as a 503 (§16.9), which goes upstream as 500 (§16.7 step 6).
    let mut net = Net::new(ProxySettings::default());
    let uri = format!("sip:bob@{UAS2};transport=tcp");
    net.send(
        UAC,
        &request("MESSAGE", &uri, "z9hG4bK-tcp", 1, "tcp2@uac", None, ""),
    );
    let fwd = net.take_one();
    assert_eq!((fwd.to, fwd.transport), (addr(UAS2), Transport::Tcp));
    net.cores[0].handle_conn_event(net.now, ConnEvent::ConnectFailed(addr(UAS)));
    net.collect();
    assert!(net.take().is_empty(), "another destination");
    net.cores[0].handle_conn_event(net.now, ConnEvent::ConnectFailed(addr(UAS2)));
    net.collect();
    let r = net.take_one();
    assert_eq!((r.status(), r.to), (Some(500), addr(UAC)));
}

#[test]
fn tcp_requests_keep_their_connection_for_responses() {
    let mut net = Net::forward_to();
    net.deliver(
        UAC,
        &invite("z9hG4bK-tcp", "tcp@uac"),
        Transport::Tcp,
        Listener::Public,
    );
    let out = net.take();
    assert_eq!(out[0].transport, Transport::Tcp);
    assert_eq!(out[1].transport, Transport::Tcp, "same transport onward");
    assert!(out[1].header("Via").unwrap().starts_with("SIP/2.0/TCP "));
    assert!(
        out[1]
            .header("Record-Route")
            .unwrap()
            .contains(";transport=tcp")
    );
    // Reliable: no Timer A.
    net.run_for(ms(1_000));
    assert!(net.take().is_empty());
}

/// Every RFC 4475 message, as a proxy should treat it
/// (tests/sipp/rfc4475_proxy.tsv, which the sipp end-to-end test shares).
#[test]
fn rfc4475_torture_messages() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("parser/tests/data/rfc4475");
    let table = std::fs::read_to_string(root.join("tests/sipp/rfc4475_proxy.tsv")).unwrap();
    let mut n = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, want) = line.split_once('\t').unwrap();
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let mut net = Net::forward_to();
        net.send(UAC, &bytes);
        let out = net.take();
        match want {
            "forward" => {
                let fwd: Vec<_> = out.iter().filter(|s| s.to == addr(UAS)).collect();
                assert_eq!(fwd.len(), 1, "{name}: {out:#?}");
                assert!(
                    out.iter()
                        .all(|s| s.to == addr(UAS) || s.status() == Some(100)),
                    "{name}"
                );
                // Our Via on top (TCP for longreq: §18.1.1), the rest intact.
                let t = match fwd[0].transport {
                    Transport::Tcp => "TCP",
                    Transport::Udp => "UDP",
                };
                let via = format!("Via: SIP/2.0/{t} {PROXY}:{PRIVATE};branch=z9hG4bK");
                assert!(fwd[0].text().contains(&via), "{name}");
                let body_at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let sent_body_at = fwd[0]
                    .bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap()
                    + 4;
                let body = &fwd[0].bytes[sent_body_at..];
                assert!(bytes[body_at..].starts_with(body), "{name}: body copied");
                if name == "dblreq" {
                    assert!(body.is_empty(), "trailing octets are not forwarded");
                }
                if name == "mpart01" {
                    assert_eq!(body.len(), 553);
                }
            }
            "drop" => assert!(out.is_empty(), "{name}: {out:#?}"),
            code => {
                let code: u16 = code.parse().unwrap();
                assert_eq!(out.len(), 1, "{name}: {out:#?}");
                assert_eq!(out[0].status(), Some(code), "{name}: {}", out[0].text());
            }
        }
        n += 1;
    }
    assert_eq!(n, 50, "every file of the archive");
}

/// Seeded mutations of real messages (the RFC 4475 archive and a call's
/// messages) sent both as requests and as responses: the engine never
/// panics, answers or drops each one, and keeps serving calls. The
/// cargo-fuzz target `proxy_engine` (fuzz/) explores further.
#[test]
fn mutated_messages_never_break_the_engine() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("parser/tests/data/rfc4475");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "dat").then(|| std::fs::read(p).unwrap())
        })
        .collect();
    corpus.push(invite("z9hG4bK-m1", "m1@uac"));
    corpus.push(request(
        "BYE",
        "sip:bob@203.0.113.20:5080",
        "z9hG4bK-m2",
        2,
        "m1@uac",
        Some("b1"),
        &format!("Route: <sip:{PROXY}:{PRIVATE};lr;sr=1.0>\r\n"),
    ));
    let mut rng = fastrand::Rng::with_seed(4475);
    let mut net = Net::forward_to();
    let specials: &[u8] = b"\r\n ,;:<>\"\\=@%\t\x00\xff";
    for round in 0..20_000 {
        let mut m = corpus[rng.usize(0..corpus.len())].clone();
        for _ in 0..rng.usize(1..6) {
            if m.is_empty() {
                break;
            }
            let i = rng.usize(0..m.len());
            match rng.u8(0..5) {
                0 => m[i] = specials[rng.usize(0..specials.len())],
                1 => m[i] = rng.u8(..),
                2 => m.truncate(i),
                3 => {
                    let j = rng.usize(i..m.len());
                    let chunk = m[i..j].to_vec();
                    m.splice(i..i, chunk);
                }
                _ => {
                    m.remove(i);
                }
            }
        }
        if round % 2 == 0 {
            net.send(UAC, &m);
        } else {
            net.reply(UAS, &m);
        }
        net.take();
        if round % 100 == 0 {
            net.run_for(Duration::from_secs(7));
            net.take();
        }
    }
    // Still a working proxy.
    net.send(UAC, &invite("z9hG4bK-after", "after@uac"));
    let out = net.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!(out[1].method(), Some("INVITE"));
}
