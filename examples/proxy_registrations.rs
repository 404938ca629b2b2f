//! Drives sipp-like digest-authenticated registrations (REGISTER, 401,
//! REGISTER with Authorization, 200: bench/scenarios/register_uac.xml)
//! through one `ProxyEngine` with the registrar `Services`, in memory under
//! virtual time, for instruction counts of the core thread's side of a
//! registration:
//!
//! ```sh
//! cargo build --release --example proxy_registrations
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     --toggle-collect='<sipring::proxy::ProxyEngine as sipring::engine::Engine>::*' \
//!     --toggle-collect='proxy_registrations::store_round_trip' \
//!     target/release/examples/proxy_registrations 20000 1000
//! ```
//!
//! "Collected" divided by the registrations is the core thread's
//! instructions per registration (without `--toggle-collect`, the whole
//! program; `callgrind_annotate --inclusive=yes /tmp/cg.out` breaks it
//! down). SHA-256 (nonce signatures) runs its portable code under
//! valgrind, which does not offer the SHA extensions; natively the SHA
//! instructions make it cheaper than counted here.
//!
//! Arguments: registrations (default 20000) and users cycled (default
//! 1000, as `sipring-bench --users 1000`). The store is an in-memory
//! [`Store`] that answers at once on the calling thread (no storage
//! thread, no fsync): what is counted is the engine, the registrar, the
//! location caches and digest authentication, plus the shard-facing side
//! of a store request (`StoreOp::run`, the `Pending` channel), in
//! `store_round_trip`. The client's side (building requests, computing
//! the digest response) is the harness's and is left out by looking at
//! those entry points only. The engine is called through `&mut dyn Engine`
//! so that they stay visible as functions.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipring::auth::digest::{self, Algorithm, Inputs};
use sipring::counters::CoreCounters;
use sipring::engine::{CoreContext, Engine, Listener, Peer, Received, Reply, Request, Transport};
use sipring::proxy::{ProxyEngine, ProxySettings};
use sipring::registrar::{Registrar, RegistrarSettings};
use sipring::store::{
    Binding, BindingSet, BindingUpdate, DialogMutation, DialogPartition, DialogRecord, Epochs,
    Pending, ProxyInfo, Store, StoreAnswer, StoreError, StoreOp, User,
};
use sipring::time::Instant;
use sipring::users::{Aor, new_user};

const PROXY: &str = "127.0.0.1:5060";
const UAC: &str = "127.0.0.1:6001";
const DOMAIN: &str = "127.0.0.1";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Users and bindings in memory, answered at once (the answer is ready
/// before `StoreOp::run` returns).
#[derive(Debug, Default)]
struct MemStore {
    users: Mutex<HashMap<String, User>>,
    bindings: Mutex<HashMap<String, Vec<Binding>>>,
    epochs: Arc<Epochs>,
}

fn ready<T>(v: T) -> Pending<T> {
    let (answer, pending) = Pending::channel();
    answer.send(Ok(v));
    pending
}

fn unsupported<T>() -> Pending<T> {
    Pending::failed(StoreError::Backend("not in this example".into()))
}

impl Store for MemStore {
    fn user(&self, aor: &str) -> Pending<Option<User>> {
        ready(self.users.lock().unwrap().get(aor).cloned())
    }
    fn user_by_phone(&self, _: &str) -> Pending<Option<User>> {
        ready(None)
    }
    fn put_user(&self, user: User) -> Pending<()> {
        self.users.lock().unwrap().insert(user.aor.clone(), user);
        self.epochs.bump_users();
        ready(())
    }
    fn delete_user(&self, _: &str) -> Pending<bool> {
        unsupported()
    }
    fn list_users(&self) -> Pending<Vec<User>> {
        unsupported()
    }
    fn bindings(&self, aor: &str) -> Pending<Vec<Binding>> {
        ready(
            self.bindings
                .lock()
                .unwrap()
                .get(aor)
                .cloned()
                .unwrap_or_default(),
        )
    }
    fn update_bindings(&self, aor: &str, update: BindingUpdate) -> Pending<BindingSet> {
        let mut all = self.bindings.lock().unwrap();
        let bs = all.entry(aor.to_owned()).or_default();
        if update.remove_all {
            bs.clear();
        }
        bs.retain(|b| !update.remove.contains(&b.contact));
        for p in update.put {
            bs.retain(|b| b.contact != p.contact);
            bs.push(p);
        }
        bs.sort_by(|a, b| a.contact.cmp(&b.contact));
        let set = BindingSet {
            bindings: bs.clone(),
            epoch: self.epochs.bump_bindings(aor),
        };
        ready(set)
    }
    fn put_proxy(&self, _: ProxyInfo) -> Pending<()> {
        unsupported()
    }
    fn heartbeat(&self, _: &str, _: i64, _: f64) -> Pending<()> {
        unsupported()
    }
    fn proxies(&self) -> Pending<Vec<ProxyInfo>> {
        unsupported()
    }
    fn delete_proxy(&self, _: &str) -> Pending<()> {
        unsupported()
    }
    fn write_dialogs(&self, _: Vec<DialogMutation>) -> Pending<()> {
        unsupported()
    }
    fn dialogs(&self, _: Vec<DialogPartition>) -> Pending<Vec<DialogRecord>> {
        unsupported()
    }
    fn epochs(&self) -> Arc<Epochs> {
        self.epochs.clone()
    }
}

/// What the shell does with a `Request::Store`: send the op, and (here at
/// once) take the answer.
#[inline(never)]
fn store_round_trip(store: &MemStore, op: StoreOp) -> Result<StoreAnswer, StoreError> {
    let mut fut = op.run(store);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(&mut fut).poll(&mut cx) {
        std::task::Poll::Ready(a) => a,
        std::task::Poll::Pending => panic!("the in-memory store answers at once"),
    }
}

/// The bench's user `i` (as bench/src/users.rs names them).
fn user(i: u32) -> (String, String) {
    (format!("u{i:06}"), format!("pw{i:06}x"))
}

fn register(user: &str, n: u64, cseq: u32, auth: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{PROXY} SIP/2.0\r\n\
Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-4242-{n}-{cseq}\r\n\
From: <sip:{user}@{DOMAIN}>;tag=4242SIPpTag00{n}\r\n\
To: <sip:{user}@{DOMAIN}>\r\n\
Call-ID: {n}-4242@127.0.0.1\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@{UAC};transport=UDP>\r\n\
{auth}\
Expires: 3600\r\n\
Max-Forwards: 70\r\n\
User-Agent: sipring-bench\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The quoted `name="..."` value of the first challenge in a 401.
fn param<'a>(msg: &'a str, name: &str) -> &'a str {
    let i = msg.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let j = i + msg[i..].find('"').unwrap();
    &msg[i..j]
}

/// The Authorization line sipp writes for the first (MD5) challenge.
fn authorization(challenge: &str, user: &str, pw: &str) -> String {
    let realm = param(challenge, "realm");
    let nonce = param(challenge, "nonce");
    let uri = format!("sip:{PROXY}");
    let ha1 = digest::ha1(false, user, realm, pw);
    let i = Inputs {
        method: b"REGISTER",
        uri: uri.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: b"00000001",
        cnonce: b"6b8b4567",
        qop: Some(b"auth"),
    };
    let r = digest::response(Algorithm::Md5, &ha1, &i);
    format!(
        "Authorization: Digest username=\"{user}\",realm=\"{realm}\",cnonce=\"6b8b4567\",\
nc=00000001,qop=auth,uri=\"{uri}\",nonce=\"{nonce}\",response=\"{}\",algorithm=MD5\r\n",
        r.as_str()
    )
}

/// Runs the store requests the engine asked for, feeding the answers back.
fn pump(engine: &mut dyn Engine, store: &MemStore, now: Instant) -> u64 {
    let mut n = 0;
    while let Some(req) = engine.poll_request() {
        let Request::Store { token, op } = req else {
            panic!("unexpected {req:?}")
        };
        let answer = store_round_trip(store, op);
        engine.handle_reply(now, Reply::Store { token, answer });
        n += 1;
    }
    n
}

fn rx(bytes: &[u8], peer: Peer) -> Received<'_> {
    Received {
        bytes,
        peer,
        local: addr(PROXY),
        listener: Listener::Public,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let regs: u64 = args.next().map_or(20_000, |a| a.parse().unwrap());
    let users: u32 = args.next().map_or(1_000, |a| a.parse().unwrap());
    let ctx = CoreContext {
        core: 0,
        cores: 1,
        public_udp: Some(addr(PROXY)),
        public_tcp: None,
        private_udp: Some(addr("127.0.0.1:5061")),
        private_tcp: None,
        advertised_host: DOMAIN.to_owned(),
        counters: Arc::new(CoreCounters::new(0)),
    };
    // Virtual time starts at 1 s; wall clock at 2026-01-01.
    let wall_base = 1_767_225_600_000 - 1_000;
    let mut cfg = RegistrarSettings {
        domains: vec![DOMAIN.into()],
        node_id: "bench".into(),
        wall_base_ms: wall_base,
        // sipp's rate in this run is not the point: never shed.
        registrations_per_tick: u32::MAX,
        ..RegistrarSettings::default()
    };
    cfg.auth.wall_base_ms = wall_base;
    let store = MemStore::default();
    for i in 1..=users {
        let (u, p) = user(i);
        let aor = Aor::parse(&format!("{u}@{DOMAIN}")).unwrap();
        let mut done = store.put_user(new_user(&aor, &p, None, None, true));
        assert!(matches!(done.try_take(), Some(Ok(()))));
    }
    let mut proxy = ProxyEngine::new(ctx, ProxySettings::default());
    proxy.set_services(Box::new(Registrar::new(
        Arc::new(cfg),
        store.epochs(),
        0,
        7,
    )));
    let engine: &mut dyn Engine = &mut proxy;
    let mut now = Instant::from_millis(1_000);
    let mut buf = Vec::with_capacity(65_536);
    let uac = Peer {
        addr: addr(UAC),
        transport: Transport::Udp,
        conn: None,
    };
    let (mut store_ops, mut ok) = (0u64, 0u64);
    for n in 0..regs {
        let (u, p) = user(1 + (n % u64::from(users)) as u32);
        let first = register(&u, n, 1, "");
        engine.handle_message(now, rx(&first, uac));
        store_ops += pump(engine, &store, now);
        let mut challenge = None;
        while let Some(t) = engine.poll_transmit(now, &mut buf) {
            let text = String::from_utf8_lossy(&buf[..t.len]).into_owned();
            if text.starts_with("SIP/2.0 401") {
                challenge = Some(text);
            }
        }
        let challenge = challenge.expect("a 401 to the first REGISTER");
        let second = register(&u, n, 2, &authorization(&challenge, &u, &p));
        engine.handle_message(now, rx(&second, uac));
        store_ops += pump(engine, &store, now);
        while let Some(t) = engine.poll_transmit(now, &mut buf) {
            let status = &buf[..t.len.min(11)];
            assert_eq!(
                status,
                b"SIP/2.0 200",
                "{}",
                String::from_utf8_lossy(&buf[..t.len])
            );
            ok += 1;
        }
        // 2000 registrations/s of virtual time.
        now += Duration::from_micros(500);
        while engine.poll_timeout().is_some_and(|t| t <= now) {
            engine.handle_timeout(now);
        }
    }
    assert_eq!(ok, regs, "every registration answered 200");
    eprintln!("{regs} registrations over {users} users: {ok} 200 OK, {store_ops} store requests");
}
