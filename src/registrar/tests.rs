//! The registrar inside the proxy engine, under virtual time, over a real
//! embedded store (answered synchronously by the test's pump).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::block_on;
use sipring_parser::Message;

use super::*;
use crate::auth::digest::{self, Algorithm, Inputs};
use crate::counters::CoreCounters;
use crate::engine::{CoreContext, Disposition, Engine, Listener, Received, Transport};
use crate::proxy::{ProxyEngine, ProxySettings};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
use crate::users::{Aor, new_user};

const PROXY: &str = "192.0.2.1";
const PUBLIC: u16 = 5060;
const PRIVATE: u16 = 5070;
const ALICE: &str = "198.51.100.10:5062";
const BOB: &str = "203.0.113.20:5080";
const BOB2: &str = "203.0.113.21:5080";
const OUTSIDER: &str = "233.252.0.1:5060";
const PEER: &str = "198.51.100.99:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ctx(core: CoreId, cores: CoreId) -> CoreContext {
    CoreContext {
        core,
        cores,
        public_udp: Some(addr(&format!("{PROXY}:{PUBLIC}"))),
        public_tcp: None,
        private_udp: Some(addr(&format!("{PROXY}:{}", PRIVATE + core))),
        private_tcp: None,
        advertised_host: PROXY.to_owned(),
        counters: Arc::new(CoreCounters::new(core)),
    }
}

#[derive(Clone, Debug)]
struct Sent {
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl Sent {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    fn status(&self) -> Option<u16> {
        let t = self.text();
        t.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }
    fn method(&self) -> Option<String> {
        let t = self.text();
        (!t.starts_with("SIP/")).then(|| t.split(' ').next().unwrap().to_owned())
    }
    fn headers(&self, name: &str) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
            .collect()
    }
}

/// The proxy's cores with their registrars, one store, virtual time.
struct Rig {
    now: Instant,
    cores: Vec<ProxyEngine>,
    store: EmbeddedStore,
    sent: Vec<Sent>,
    dir: std::path::PathBuf,
    wall_base: i64,
    /// Answer every store request with an error (an outage).
    store_down: bool,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings(wall_base: i64) -> RegistrarSettings {
    RegistrarSettings {
        domains: vec!["example.com".into(), PROXY.into()],
        trusted: vec![IpNet::parse("198.51.100.99").unwrap()],
        auth: AuthSettings {
            secret: b"test".to_vec(),
            node: 1,
            wall_base_ms: wall_base,
            ..AuthSettings::default()
        },
        node_id: "node-1".into(),
        wall_base_ms: wall_base,
        ..RegistrarSettings::default()
    }
}

impl Rig {
    fn new(name: &str, cores: CoreId, tune: impl Fn(&mut RegistrarSettings)) -> Rig {
        let dir = std::env::temp_dir().join(format!("sipring-reg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = EmbeddedStore::open(&dir).unwrap();
        // Virtual time starts at 1 s; its wall clock is the real one.
        let wall_base = crate::store::wall_ms() - 1_000;
        let mut s = settings(wall_base);
        tune(&mut s);
        let cfg = Arc::new(s);
        let cores = (0..cores)
            .map(|c| {
                let mut p = ProxyEngine::new(ctx(c, cores), ProxySettings::default());
                p.set_services(Box::new(Registrar::new(
                    cfg.clone(),
                    store.epochs(),
                    c,
                    7 + u64::from(c),
                )));
                p
            })
            .collect();
        let rig = Rig {
            now: Instant::from_millis(1_000),
            cores,
            store,
            sent: Vec::new(),
            dir,
            wall_base,
            store_down: false,
        };
        for (aor, pw, phone) in [
            ("alice@example.com", "alice-pw", None),
            ("bob@example.com", "bob-pw", Some("+15551230002")),
        ] {
            let a = Aor::parse(aor).unwrap();
            let u = new_user(&a, pw, None, phone.map(str::to_owned), true);
            block_on(rig.store.put_user(u)).unwrap();
        }
        rig
    }

    fn deliver(&mut self, from: &str, bytes: &[u8], listener: Listener) {
        let msg = Received {
            bytes,
            peer: Peer {
                addr: addr(from),
                transport: Transport::Udp,
                conn: None,
            },
            local: addr(&format!("{PROXY}:{PUBLIC}")),
            listener,
        };
        let now = self.now;
        if let Disposition::HandOff(to) = self.cores[0].handle_message(now, msg) {
            self.cores[usize::from(to)].handle_handoff(now, msg);
        }
        self.pump();
    }

    fn send(&mut self, from: &str, bytes: &[u8]) -> Vec<Sent> {
        self.deliver(from, bytes, Listener::Public);
        std::mem::take(&mut self.sent)
    }

    /// Runs the store's requests to completion and collects what was sent.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut any = false;
            for core in &mut self.cores {
                while let Some(req) = core.poll_request() {
                    any = true;
                    let Request::Store { token, op } = req else {
                        panic!("unexpected {req:?}")
                    };
                    let answer = if self.store_down {
                        Err(crate::store::StoreError::Unavailable("down".into()))
                    } else {
                        block_on(op.run(&self.store))
                    };
                    core.handle_reply(now, Reply::Store { token, answer });
                }
            }
            let mut buf = Vec::new();
            for core in &mut self.cores {
                while let Some(t) = core.poll_transmit(now, &mut buf) {
                    self.sent.push(Sent {
                        to: t.dest.addr,
                        bytes: buf[..t.len].to_vec(),
                    });
                }
            }
            if !any {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.cores.iter().filter_map(|c| c.poll_timeout()).min() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            for c in &mut self.cores {
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
            }
            self.pump();
        }
        self.now = until;
        self.sent.clear();
    }
}

fn register(user: &str, contact: &str, call_id: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{PROXY}:{PUBLIC} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {contact};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=r{cseq}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(from: &str, ruri: &str, via: &str, call_id: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from}>;tag=i{cseq}\r\n\
         To: <{ruri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Contact: <sip:c@{via}>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Credentials answering `challenge` (a 401/407) the way a client does.
fn answer(
    challenge: &Sent,
    alg: Algorithm,
    user: &str,
    pw: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let name = if challenge.status() == Some(407) {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    let bytes = challenge.bytes.clone();
    let m = Message::parse(&bytes).unwrap();
    let kind = if name == "WWW-Authenticate" {
        sipring_parser::HeaderKind::WwwAuthenticate
    } else {
        sipring_parser::HeaderKind::ProxyAuthenticate
    };
    let d = m
        .auths(kind)
        .filter_map(|a| a.ok()?.digest())
        .find(|d| Algorithm::parse(d.algorithm) == Some(alg))
        .expect("a challenge for the algorithm");
    let realm = std::str::from_utf8(d.realm.unwrap()).unwrap();
    let nonce = std::str::from_utf8(d.nonce.unwrap()).unwrap();
    let ha1 = digest::ha1(alg.is_sha256(), user, realm, pw);
    let nc = format!("{nc:08x}");
    let i = Inputs {
        method: method.as_bytes(),
        uri: uri.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: nc.as_bytes(),
        cnonce: b"c0ffee",
        qop: Some(b"auth"),
    };
    let r = digest::response(alg, &ha1, &i);
    let header = if name == "WWW-Authenticate" {
        "Authorization"
    } else {
        "Proxy-Authorization"
    };
    format!(
        "{header}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc}\r\n",
        r.as_str(),
        alg.name()
    )
}

fn only_status(out: &[Sent]) -> u16 {
    let codes: Vec<u16> = out
        .iter()
        .filter_map(Sent::status)
        .filter(|&c| c != 100)
        .collect();
    assert_eq!(codes.len(), 1, "{out:#?}");
    codes[0]
}

/// Registers `user` at `contact` with digest authentication; the 200 OK.
fn register_ok(
    rig: &mut Rig,
    user: &str,
    pw: &str,
    contact: &str,
    call_id: &str,
    extra: &str,
) -> Sent {
    let first = rig.send(
        contact,
        &register(
            user,
            contact,
            call_id,
            1,
            &format!("Contact: <sip:{user}@{contact}>\r\n{extra}"),
        ),
    );
    assert_eq!(only_status(&first), 401);
    let auth = answer(
        &first[0],
        Algorithm::Md5,
        user,
        pw,
        "REGISTER",
        &format!("sip:{PROXY}:{PUBLIC}"),
        1,
    );
    let out = rig.send(
        contact,
        &register(
            user,
            contact,
            call_id,
            2,
            &format!("Contact: <sip:{user}@{contact}>\r\n{extra}{auth}"),
        ),
    );
    assert_eq!(only_status(&out), 200, "{out:#?}");
    out.into_iter().find(|s| s.status() == Some(200)).unwrap()
}

#[test]
fn register_with_digest_then_an_authenticated_call_forks_to_the_binding() {
    let mut rig = Rig::new("call", 1, |_| {});
    let first = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "r1",
            1,
            &format!("Contact: <sip:bob@{BOB}>\r\n"),
        ),
    );
    assert_eq!(only_status(&first), 401);
    let challenges = first[0].headers("WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "MD5 and SHA-256");
    assert!(
        challenges[0].contains("realm=\"example.com\"") && challenges[0].ends_with("algorithm=MD5")
    );
    assert!(challenges[1].ends_with("algorithm=SHA-256"));
    let auth = answer(
        &first[0],
        Algorithm::Sha256,
        "bob",
        "bob-pw",
        "REGISTER",
        &format!("sip:{PROXY}:{PUBLIC}"),
        1,
    );
    let ok = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "r1",
            2,
            &format!("Contact: <sip:bob@{BOB}>\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&ok), 200, "{auth}\n{}", ok[0].text());
    let contacts = ok[0].headers("Contact");
    assert_eq!(contacts, vec![format!("<sip:bob@{BOB}>;expires=3600")]);
    assert_eq!(ok[0].headers("Date").len(), 1);
    let stored = block_on(rig.store.bindings("bob@example.com")).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].node.as_str(), stored[0].core), ("node-1", 0));
    assert_eq!(stored[0].source.as_deref(), Some(&*format!("udp:{BOB}")));

    // Alice calls bob: challenged (407), then forked to bob's contact.
    let inv = invite(
        "alice@example.com",
        "sip:bob@example.com",
        ALICE,
        "c1",
        1,
        "",
    );
    let out = rig.send(ALICE, &inv);
    assert_eq!(only_status(&out), 407);
    let ch = out
        .iter()
        .find(|s| s.status() == Some(407))
        .unwrap()
        .clone();
    rig.send(ALICE, &format!("ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK-c1-1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=i1\r\nTo: <sip:bob@example.com>;tag=x\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").into_bytes());
    let auth = answer(
        &ch,
        Algorithm::Md5,
        "alice",
        "alice-pw",
        "INVITE",
        "sip:bob@example.com",
        1,
    );
    let out = rig.send(
        ALICE,
        &invite(
            "alice@example.com",
            "sip:bob@example.com",
            ALICE,
            "c1",
            2,
            &auth,
        ),
    );
    let fwd: Vec<&Sent> = out
        .iter()
        .filter(|s| s.method().as_deref() == Some("INVITE"))
        .collect();
    assert_eq!(fwd.len(), 1, "{out:#?}");
    assert_eq!(fwd[0].to, addr(BOB));
    assert!(
        fwd[0]
            .text()
            .starts_with(&format!("INVITE sip:bob@{BOB} SIP/2.0"))
    );

    // A caller from outside needs no credentials to reach bob.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "c2",
            1,
            "",
        ),
    );
    assert!(
        out.iter()
            .any(|s| s.method().as_deref() == Some("INVITE") && s.to == addr(BOB))
    );
}

#[test]
fn wrong_credentials_get_a_new_challenge_then_403_and_are_counted() {
    let mut rig = Rig::new("wrong", 1, |_| {});
    let first = rig.send(BOB, &register("bob", BOB, "w1", 1, ""));
    let bad = answer(
        &first[0],
        Algorithm::Md5,
        "bob",
        "guess",
        "REGISTER",
        "x",
        1,
    );
    let again = rig.send(BOB, &register("bob", BOB, "w1", 2, &bad));
    assert_eq!(only_status(&again), 401);
    let bad = answer(
        &again[0],
        Algorithm::Md5,
        "bob",
        "guess2",
        "REGISTER",
        "x",
        1,
    );
    assert_eq!(
        only_status(&rig.send(BOB, &register("bob", BOB, "w1", 3, &bad))),
        403
    );
    // A digest username that is not the AOR's user.
    let carol = answer(
        &first[0],
        Algorithm::Md5,
        "carol",
        "bob-pw",
        "REGISTER",
        "x",
        1,
    );
    assert_eq!(
        only_status(&rig.send(BOB, &register("bob", BOB, "w1", 4, &carol))),
        403
    );
    // An unknown user is challenged like any other, then 404.
    let first = rig.send(BOB, &register("nobody", BOB, "w2", 1, ""));
    assert_eq!(only_status(&first), 401);
    let creds = answer(&first[0], Algorithm::Md5, "nobody", "x", "REGISTER", "x", 1);
    assert_eq!(
        only_status(&rig.send(BOB, &register("nobody", BOB, "w2", 2, &creds))),
        404
    );
    // Malformed credentials: 400.
    let out = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "w3",
            1,
            "Authorization: Digest realm=\"example.com\", nonce=\"x\r\n",
        ),
    );
    assert_eq!(only_status(&out), 400);
}

#[test]
fn refresh_remove_star_query_and_the_rules() {
    let mut rig = Rig::new("rules", 1, |_| {});
    register_ok(&mut rig, "bob", "bob-pw", BOB, "q1", "");
    // A second contact in the same registration Call-ID... the 200 lists both.
    let ok = register_ok(&mut rig, "bob", "bob-pw", BOB2, "q2", "Expires: 600\r\n");
    let mut contacts = ok.headers("Contact");
    contacts.sort();
    assert_eq!(
        contacts,
        vec![
            format!("<sip:bob@{BOB}>;expires=3600"),
            format!("<sip:bob@{BOB2}>;expires=600")
        ]
    );
    // Each request needs fresh credentials: take a challenge first.
    let mut cseq = 10;
    let mut with_auth = |rig: &mut Rig, call_id: &str, extra: &str| -> Vec<Sent> {
        cseq += 2;
        let ch = rig.send(BOB, &register("bob", BOB, call_id, cseq, extra));
        assert_eq!(only_status(&ch), 401);
        let auth = answer(&ch[0], Algorithm::Md5, "bob", "bob-pw", "REGISTER", "x", 1);
        rig.send(
            BOB,
            &register("bob", BOB, call_id, cseq + 1, &format!("{extra}{auth}")),
        )
    };
    // Too brief: 423 with Min-Expires.
    let out = with_auth(
        &mut rig,
        "q1",
        &format!("Contact: <sip:bob@{BOB}>;expires=10\r\n"),
    );
    assert_eq!(only_status(&out), 423);
    assert_eq!(out[0].headers("Min-Expires"), vec!["60"]);
    // Query: no Contact.
    let out = with_auth(&mut rig, "q3", "");
    assert_eq!(only_status(&out), 200);
    assert_eq!(out[0].headers("Contact").len(), 2);
    // Remove one.
    let out = with_auth(
        &mut rig,
        "q1",
        &format!("Contact: <sip:bob@{BOB}>;expires=0\r\n"),
    );
    assert_eq!(
        out[0].headers("Contact"),
        vec![format!("<sip:bob@{BOB2}>;expires=600")]
    );
    // Out of order: CSeq 1 on Call-ID q2, which is at 2.
    let ch = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "q2",
            0,
            &format!("Contact: <sip:bob@{BOB2}>\r\n"),
        ),
    );
    let auth = answer(&ch[0], Algorithm::Md5, "bob", "bob-pw", "REGISTER", "x", 1);
    let out = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "q2",
            1,
            &format!("Contact: <sip:bob@{BOB2}>\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&out), 500);
    // `*`.
    let out = with_auth(&mut rig, "q9", "Contact: *\r\nExpires: 0\r\n");
    assert_eq!(only_status(&out), 200);
    assert!(out[0].headers("Contact").is_empty());
    assert!(
        block_on(rig.store.bindings("bob@example.com"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_expired_binding_is_not_used() {
    let mut rig = Rig::new("expiry", 1, |_| {});
    register_ok(&mut rig, "bob", "bob-pw", BOB, "e1", "Expires: 60\r\n");
    register_ok(&mut rig, "bob", "bob-pw", BOB2, "e2", "Expires: 120\r\n");
    let call = |rig: &mut Rig, n: u32| -> Vec<SocketAddr> {
        let out = rig.send(
            OUTSIDER,
            &invite(
                "carol@other.org",
                "sip:bob@example.com",
                OUTSIDER,
                &format!("x{n}"),
                1,
                "",
            ),
        );
        out.iter()
            .filter(|s| s.method().as_deref() == Some("INVITE"))
            .map(|s| s.to)
            .collect()
    };
    let mut both = call(&mut rig, 1);
    both.sort();
    assert_eq!(both, vec![addr(BOB), addr(BOB2)]);
    rig.advance(Duration::from_secs(61));
    assert_eq!(call(&mut rig, 2), vec![addr(BOB2)]);
    rig.advance(Duration::from_secs(60));
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "x3",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 480);
}

#[test]
fn unknown_users_foreign_domains_trusted_peers_and_phone_aliases() {
    let mut rig = Rig::new("routing", 1, |_| {});
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:nobody@example.com",
            OUTSIDER,
            "u1",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 404);
    // No open relay: an outsider to a foreign domain.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:dave@192.0.2.200",
            OUTSIDER,
            "u2",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 403);
    // A trusted peer may.
    let out = rig.send(
        PEER,
        &invite("carol@other.org", "sip:dave@192.0.2.200", PEER, "u3", 1, ""),
    );
    assert!(
        out.iter()
            .any(|s| s.method().as_deref() == Some("INVITE") && s.to == addr("192.0.2.200:5060"))
    );
    // A registered user with no live binding: 480.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "u4",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 480);
    // Phone alias, as sip:+1...@domain and as tel:.
    register_ok(&mut rig, "bob", "bob-pw", BOB, "p1", "");
    for (i, ruri) in ["sip:+15551230002@example.com", "tel:+1-555-123-0002"]
        .iter()
        .enumerate()
    {
        let out = rig.send(
            OUTSIDER,
            &invite("carol@other.org", ruri, OUTSIDER, &format!("t{i}"), 1, ""),
        );
        assert!(
            out.iter()
                .any(|s| s.method().as_deref() == Some("INVITE") && s.to == addr(BOB)),
            "{ruri}: {out:#?}"
        );
    }
    let out = rig.send(
        OUTSIDER,
        &invite("carol@other.org", "tel:+15550000000", OUTSIDER, "t9", 1, ""),
    );
    assert_eq!(only_status(&out), 404);
    // Alice (a local user) calling out is challenged first, then relayed.
    let out = rig.send(
        ALICE,
        &invite(
            "alice@example.com",
            "sip:dave@192.0.2.200",
            ALICE,
            "o1",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 407);
}

#[test]
fn path_is_stored_and_used_and_flows_go_to_their_source() {
    let mut rig = Rig::new("path", 1, |_| {});
    let extra = "Supported: path\r\nPath: <sip:192.0.2.50:5090;lr>\r\n";
    let ok = register_ok(&mut rig, "bob", "bob-pw", BOB, "pa1", extra);
    assert_eq!(ok.headers("Path"), vec!["<sip:192.0.2.50:5090;lr>"]);
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "pa2",
            1,
            "",
        ),
    );
    let fwd = out
        .iter()
        .find(|s| s.method().as_deref() == Some("INVITE"))
        .unwrap();
    assert_eq!(fwd.to, addr("192.0.2.50:5090"));
    assert_eq!(fwd.headers("Route"), vec!["<sip:192.0.2.50:5090;lr>"]);
    // RFC 5626: a flow is reached at the address the REGISTER came from.
    let mut rig = Rig::new("flow", 1, |_| {});
    let contact = "<sip:bob@10.9.9.9:5060>;+sip.instance=\"<urn:uuid:a>\";reg-id=1";
    let first = rig.send(
        BOB,
        &register("bob", BOB, "f1", 1, &format!("Contact: {contact}\r\n")),
    );
    let auth = answer(
        &first[0],
        Algorithm::Md5,
        "bob",
        "bob-pw",
        "REGISTER",
        "x",
        1,
    );
    let ok = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "f1",
            2,
            &format!("Contact: {contact}\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&ok), 200);
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "f2",
            1,
            "",
        ),
    );
    let fwd = out
        .iter()
        .find(|s| s.method().as_deref() == Some("INVITE"))
        .unwrap();
    assert_eq!(fwd.to, addr(BOB));
    assert!(
        fwd.text()
            .starts_with("INVITE sip:bob@10.9.9.9:5060 SIP/2.0")
    );
}

#[test]
fn rfc4475_registers() {
    let mut rig = Rig::new("rfc4475", 1, |_| {});
    let dat = |n: &str| {
        std::fs::read(format!(
            "{}/parser/tests/data/rfc4475/{n}.dat",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    // unksm2: non-SIP AOR and Contact.
    assert_eq!(only_status(&rig.send(OUTSIDER, &dat("unksm2"))), 400);
    // regaut01: an unknown scheme is ignored and challenged.
    let out = rig.send(OUTSIDER, &dat("regaut01"));
    assert_eq!(only_status(&out), 401);
    // regbadct: a Contact with URI headers outside < >.
    assert_eq!(only_status(&rig.send(OUTSIDER, &dat("regbadct"))), 400);
}

#[test]
fn registrations_are_bounded_per_tick() {
    let mut rig = Rig::new("storm", 1, |s| s.registrations_per_tick = 2);
    let codes: Vec<u16> = (0..4)
        .map(|i| only_status(&rig.send(BOB, &register("bob", BOB, &format!("s{i}"), 1, ""))))
        .collect();
    assert_eq!(codes, vec![401, 401, 503, 503]);
    rig.advance(Duration::from_millis(20));
    assert_eq!(
        only_status(&rig.send(BOB, &register("bob", BOB, "s9", 1, ""))),
        401
    );
    // Calls are not counted against it.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "s10",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 480);
}

#[test]
fn every_core_sees_a_change_made_through_another() {
    let mut rig = Rig::new("cores", 2, |_| {});
    // Call-IDs owned by each core.
    let owned = |core: CoreId, tag: &str| -> String {
        (0..)
            .map(|i| format!("{tag}{i}"))
            .find(|c| crate::engine::owner_core(sipring_ring::key_id(c.as_bytes()), 2) == core)
            .unwrap()
    };
    let reg_call = owned(1, "reg");
    register_ok(&mut rig, "bob", "bob-pw", BOB, &reg_call, "");
    // Core 0 reads bob's bindings into its cache.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            &owned(0, "a"),
            1,
            "",
        ),
    );
    assert!(out.iter().any(|s| s.method().as_deref() == Some("INVITE")));
    // Core 1 removes the binding.
    let ch = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            &reg_call,
            5,
            &format!("Contact: <sip:bob@{BOB}>;expires=0\r\n"),
        ),
    );
    let auth = answer(&ch[0], Algorithm::Md5, "bob", "bob-pw", "REGISTER", "x", 1);
    let out = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            &reg_call,
            6,
            &format!("Contact: <sip:bob@{BOB}>;expires=0\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&out), 200);
    // Core 0's cache knows at once.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            &owned(0, "b"),
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 480);
    let _ = rig.wall_base;
}

#[test]
fn calls_keep_flowing_from_the_caches_while_the_store_fails() {
    // Entries age out after 1 s, as with a cluster store.
    let mut rig = Rig::new("outage", 1, |s| s.cache_ttl = Some(Duration::from_secs(1)));
    register_ok(&mut rig, "bob", "bob-pw", BOB, "o1", "");
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "o2",
            1,
            "",
        ),
    );
    assert!(out.iter().any(|s| s.method().as_deref() == Some("INVITE")));
    rig.advance(Duration::from_secs(2));
    rig.store_down = true;
    // Outdated but known: used.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:bob@example.com",
            OUTSIDER,
            "o3",
            1,
            "",
        ),
    );
    assert!(
        out.iter()
            .any(|s| s.method().as_deref() == Some("INVITE") && s.to == addr(BOB)),
        "{out:#?}"
    );
    // Never known: 503.
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:zed@example.com",
            OUTSIDER,
            "o4",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 503);
    // A registration cannot be stored: 503.
    let ch = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "o1",
            7,
            &format!("Contact: <sip:bob@{BOB}>\r\n"),
        ),
    );
    let auth = answer(&ch[0], Algorithm::Md5, "bob", "bob-pw", "REGISTER", "x", 1);
    let out = rig.send(
        BOB,
        &register(
            "bob",
            BOB,
            "o1",
            8,
            &format!("Contact: <sip:bob@{BOB}>\r\n{auth}"),
        ),
    );
    assert_eq!(only_status(&out), 503);
    rig.store_down = false;
    let out = rig.send(
        OUTSIDER,
        &invite(
            "carol@other.org",
            "sip:zed@example.com",
            OUTSIDER,
            "o5",
            1,
            "",
        ),
    );
    assert_eq!(only_status(&out), 404);
}

#[test]
fn ip_blocks() {
    let n = IpNet::parse("10.0.0.0/8").unwrap();
    assert!(n.contains("10.1.2.3".parse().unwrap()));
    assert!(!n.contains("11.0.0.1".parse().unwrap()));
    assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
    assert!(
        IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap())
    );
    assert!(
        IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert!(IpNet::parse("10.0.0.0/33").is_err());
    assert!(IpNet::parse("host").is_err());
}

/// Seeded mutations of REGISTERs (with and without credentials, Path,
/// flows, `*`), INVITEs with Proxy-Authorization and the RFC 4475
/// registers: the registrar never panics, every request is answered or
/// forwarded, and registration still works afterwards.
#[test]
fn mutated_registers_and_credentials_never_break_the_registrar() {
    let mut rig = Rig::new("mutations", 2, |_| {});
    let first = rig.send(BOB, &register("bob", BOB, "m0", 1, ""));
    let creds = answer(
        &first[0],
        Algorithm::Md5,
        "bob",
        "bob-pw",
        "REGISTER",
        "x",
        1,
    );
    let pcreds = creds.replace("Authorization", "Proxy-Authorization");
    let dat = |n: &str| {
        std::fs::read(format!(
            "{}/parser/tests/data/rfc4475/{n}.dat",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let corpus: Vec<Vec<u8>> = vec![
        register(
            "bob",
            BOB,
            "m1",
            2,
            &format!("Contact: <sip:bob@{BOB}>;q=0.5;expires=120\r\n{creds}"),
        ),
        register(
            "bob",
            BOB,
            "m2",
            3,
            &format!(
                "Supported: path\r\nPath: <sip:192.0.2.50;lr>\r\nContact: <sip:bob@{BOB}>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n{creds}"
            ),
        ),
        register(
            "bob",
            BOB,
            "m3",
            4,
            &format!("Contact: *\r\nExpires: 0\r\n{creds}"),
        ),
        invite(
            "alice@example.com",
            "sip:bob@example.com",
            ALICE,
            "m4",
            1,
            &pcreds,
        ),
        invite("carol@other.org", "tel:+15551230002", OUTSIDER, "m5", 1, ""),
        dat("regaut01"),
        dat("cparam02"),
        dat("regescrt"),
    ];
    let mut rng = fastrand::Rng::with_seed(3261);
    let specials: &[u8] = b"\r\n ,;:<>\"\\=@%*\t\x00\xff";
    for round in 0..3_000 {
        let mut m = corpus[rng.usize(0..corpus.len())].clone();
        for _ in 0..rng.usize(1..5) {
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
        rig.send(OUTSIDER, &m);
        if round % 200 == 0 {
            rig.advance(Duration::from_secs(40));
        }
    }
    rig.advance(Duration::from_secs(40));
    // Still a working registrar.
    let ok = register_ok(&mut rig, "alice", "alice-pw", ALICE, "after", "");
    assert_eq!(ok.headers("Contact").len(), 1);
}
