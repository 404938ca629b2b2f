//! Fuzzes the registrar, digest authentication and location service inside
//! the proxy engine: arbitrary bytes arrive as a request; the store's
//! answers are canned (every AOR starting with `a` is a user with a known
//! password and one binding; `tel:`/phone look-ups find nobody), then every
//! timer fires. The engine must never panic.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run registrar` (from the repository root).
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sipring::counters::CoreCounters;
use sipring::engine::{CoreContext, Engine, Listener, Peer, Received, Reply, Request, Transport};
use sipring::proxy::{ProxyEngine, ProxySettings};
use sipring::registrar::{Registrar, RegistrarSettings};
use sipring::store::{Binding, BindingSet, Epochs, StoreAnswer, StoreOp, User};
use sipring::time::Instant;

fn user(aor: &str) -> Option<User> {
    aor.starts_with('a').then(|| User {
        aor: aor.to_owned(),
        realm: "example.com".into(),
        ha1_md5: sipring::auth::digest::ha1(false, "alice", "example.com", "pw"),
        ha1_sha256: sipring::auth::digest::ha1(true, "alice", "example.com", "pw"),
        phone: None,
        enabled: true,
    })
}

fn binding(aor: &str) -> Binding {
    Binding {
        aor: aor.to_owned(),
        contact: "sip:alice@127.0.0.1:5070".into(),
        node: "n".into(),
        core: 0,
        path: vec!["<sip:127.0.0.1:5090;lr>".into()],
        instance: None,
        reg_id: None,
        q_milli: 1000,
        call_id: "c".into(),
        cseq: 1,
        expires_at_ms: i64::MAX / 2,
        source: Some("udp:127.0.0.1:5070".into()),
    }
}

fn canned(op: StoreOp) -> StoreAnswer {
    match op {
        StoreOp::User { aor } => StoreAnswer::User(user(&aor)),
        StoreOp::UserByPhone { .. } => StoreAnswer::User(None),
        StoreOp::Bindings { aor } => StoreAnswer::Bindings(vec![binding(&aor)]),
        StoreOp::UpdateBindings { update, .. } => StoreAnswer::Updated(BindingSet {
            bindings: update.put,
            epoch: 1,
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
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
    let mut engine = ProxyEngine::new(ctx, ProxySettings::default());
    let cfg = Arc::new(RegistrarSettings {
        domains: vec!["example.com".into(), "127.0.0.1".into()],
        ..RegistrarSettings::default()
    });
    engine.set_services(Box::new(Registrar::new(cfg, Arc::new(Epochs::default()), 0, 1)));
    let mut now = Instant::from_millis(1_000);
    let msg = Received {
        bytes: data,
        peer: Peer {
            addr: addr("192.0.2.7:5060"),
            transport: Transport::Udp,
            conn: None,
        },
        local: addr("127.0.0.1:5060"),
        listener: Listener::Public,
    };
    let _ = engine.handle_message(now, msg);
    let mut buf = Vec::new();
    for _ in 0..16 {
        while engine.poll_transmit(now, &mut buf).is_some() {}
        let Some(req) = engine.poll_request() else {
            break;
        };
        if let Request::Store { token, op } = req {
            let answer = Ok(canned(op));
            engine.handle_reply(now, Reply::Store { token, answer });
        }
    }
    for _ in 0..64 {
        let Some(t) = engine.poll_timeout() else {
            break;
        };
        now = now.max(t) + Duration::from_millis(1);
        engine.handle_timeout(now);
        while engine.poll_transmit(now, &mut buf).is_some() {}
    }
});
