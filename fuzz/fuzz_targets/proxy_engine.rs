//! Fuzzes the proxy engine's network entry point: arbitrary bytes arrive as
//! a request or response over UDP or TCP, then every timer fires. The
//! engine must never panic and never allocate without bound.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run proxy_engine` (from the repository root).
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sipring::counters::CoreCounters;
use sipring::engine::{ConnId, CoreContext, Engine, Listener, Peer, Received, Transport};
use sipring::proxy::{ProxyEngine, ProxySettings};
use sipring::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let ctx = CoreContext {
        core: 0,
        cores: 1,
        public_udp: Some(addr("127.0.0.1:5060")),
        public_tcp: Some(addr("127.0.0.1:5060")),
        private_udp: Some(addr("127.0.0.1:5061")),
        private_tcp: Some(addr("127.0.0.1:5061")),
        advertised_host: "127.0.0.1".to_owned(),
        counters: Arc::new(CoreCounters::new(0)),
    };
    let settings = ProxySettings {
        forward_to: (flags & 1 == 0).then(|| addr("127.0.0.1:5080")),
        ..ProxySettings::default()
    };
    let mut engine = ProxyEngine::new(ctx, settings);
    let transport = if flags & 2 == 0 { Transport::Udp } else { Transport::Tcp };
    let msg = Received {
        bytes,
        peer: Peer {
            addr: addr("127.0.0.1:5062"),
            transport,
            conn: (transport == Transport::Tcp).then_some(ConnId { core: 0, id: 1 }),
        },
        local: addr("127.0.0.1:5060"),
        listener: if flags & 4 == 0 { Listener::Public } else { Listener::Private },
    };
    let mut now = Instant::from_millis(1);
    let mut buf = Vec::new();
    engine.handle_message(now, msg);
    // The same bytes twice: the retransmission paths.
    engine.handle_message(now, msg);
    for _ in 0..64 {
        while engine.poll_transmit(now, &mut buf).is_some() {}
        while engine.poll_request().is_some() {}
        match engine.poll_timeout() {
            Some(t) => {
                now = t.max(now + Duration::from_millis(1));
                engine.handle_timeout(now);
            }
            None => break,
        }
    }
});
