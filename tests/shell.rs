//! The glommio shell over real loopback sockets, driven by the test fixture
//! engine (tests/support: a stateless OPTIONS answerer and forwarder, not a
//! proxy).

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sipring::counters::{DropReason, Method, MsgKind};
use support::*;

#[test]
fn udp_messages_reach_their_owner_core_from_every_core() {
    let cores = 2;
    let shell = start(&test_config(cores), None);
    let public = shell.addrs()[0].public_udp.unwrap();
    // Many client sockets, so that SO_REUSEPORT spreads them over both cores.
    let clients: Vec<_> = (0..32).map(|_| udp_client()).collect();
    for (i, c) in clients.iter().enumerate() {
        let call_id = format!("multi-{i}@test");
        c.send_to(&options(&call_id, ""), public).unwrap();
        let (resp, from) = recv(c);
        assert!(resp.starts_with(b"SIP/2.0 200 OK\r\n"));
        assert_eq!(from, public, "answered from the public port");
        assert_eq!(header_str(&resp, "Call-ID"), call_id);
        assert_eq!(
            header_str(&resp, "X-Core"),
            owner_of(&call_id, cores).to_string(),
            "answered by the owner core"
        );
    }
    let c = shell.counters();
    let options_in = MsgKind::Request(Method::Options);
    assert!(
        c.iter().all(|c| c.msgs_in(options_in) > 0),
        "both cores receive on the public port"
    );
    // Counters are bumped right after the send: give the cores a moment.
    eventually(|| {
        let handoffs: u64 = c.iter().map(|c| c.handoffs_out()).sum();
        let handoffs_in: u64 = c.iter().map(|c| c.handoffs_in()).sum();
        let sent: u64 = c.iter().map(|c| c.msgs_out(MsgKind::Response(2))).sum();
        handoffs > 0 && handoffs == handoffs_in && sent == 32
    });
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn private_ports_reach_their_core_directly() {
    let cores = 2;
    let shell = start(&test_config(cores), None);
    let client = udp_client();
    for a in shell.addrs() {
        let private = a.private_udp.unwrap();
        assert_ne!(Some(private), a.public_udp);
        let call_id = call_id_owned_by(a.core, cores, 1);
        client.send_to(&options(&call_id, ""), private).unwrap();
        let (resp, from) = recv(&client);
        assert_eq!(from, private, "answered from the private port it came to");
        assert_eq!(header_str(&resp, "X-Core"), a.core.to_string());
        assert_eq!(header_str(&resp, "X-Listener"), "private");
    }
    let handoffs: u64 = shell.counters().iter().map(|c| c.handoffs_out()).sum();
    assert_eq!(
        handoffs, 0,
        "messages on a core's private port need no hand-off"
    );
    // A message for the other core on a private port is handed off.
    let a0 = &shell.addrs()[0];
    let call_id = call_id_owned_by(1, cores, 2);
    client
        .send_to(&options(&call_id, ""), a0.private_udp.unwrap())
        .unwrap();
    let (resp, _) = recv(&client);
    assert_eq!(header_str(&resp, "X-Core"), "1");
    eventually(|| shell.counters()[0].handoffs_out() == 1);
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn udp_forwarding_goes_out_of_the_private_port() {
    let sink = udp_client();
    let shell = start(&test_config(1), Some(udp_peer(sink.local_addr().unwrap())));
    let client = udp_client();
    let msg = message("fwd-1@test", "hello");
    client
        .send_to(&msg, shell.addrs()[0].public_udp.unwrap())
        .unwrap();
    let (got, from) = recv(&sink);
    assert_eq!(got, msg, "forwarded unchanged");
    assert_eq!(Some(from), shell.addrs()[0].private_udp);
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn oversize_datagrams_are_dropped_and_counted() {
    let mut config = test_config(1);
    config.udp.max_message_size = 1300;
    let shell = start(&config, None);
    let client = udp_client();
    let public = shell.addrs()[0].public_udp.unwrap();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(1400));
    client.send_to(&options("big@test", &pad), public).unwrap();
    client.send_to(&options("small@test", ""), public).unwrap();
    let (resp, _) = recv(&client);
    assert_eq!(
        header_str(&resp, "Call-ID"),
        "small@test",
        "only the small one is answered"
    );
    assert_eq!(shell.counters()[0].drops(DropReason::TooLarge), 1);
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn tcp_framing_partial_pipelined_keepalive_and_cross_core_replies() {
    let cores = 2;
    let shell = start(&test_config(cores), None);
    let mut s = TcpStream::connect(shell.addrs()[0].public_tcp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut pending = Vec::new();

    // One message in three pieces.
    let m = options(&call_id_owned_by(0, cores, 10), "");
    for piece in [&m[..10], &m[10..60], &m[60..]] {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let r = read_framed(&mut s, &mut pending);
    assert!(r.starts_with(b"SIP/2.0 200 OK"));

    // Leading CRLF, then two messages in one write, owned by different cores:
    // the reply of the core that does not own the connection is carried back.
    let a = call_id_owned_by(0, cores, 11);
    let b = call_id_owned_by(1, cores, 12);
    let mut both = b"\r\n".to_vec();
    both.extend_from_slice(&options(&a, ""));
    both.extend_from_slice(&options(&b, ""));
    s.write_all(&both).unwrap();
    let mut answered = vec![
        header_str(&read_framed(&mut s, &mut pending), "Call-ID"),
        header_str(&read_framed(&mut s, &mut pending), "Call-ID"),
    ];
    answered.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(answered, want);
    // The owning core counts its hand-off after the send returns, which can
    // be after the reply is on the socket: wait for the count (bounded).
    let t0 = std::time::Instant::now();
    let mut carried: u64 = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        carried = shell.counters().iter().map(|c| c.handoffs_out()).sum();
        if carried >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        carried >= 2,
        "a hand-off in and a transmit carried back, got {carried}"
    );

    // RFC 5626 keep-alive: CRLFCRLF is answered with CRLF.
    s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");

    // A message with a body still frames after the ping.
    let c = call_id_owned_by(0, cores, 13);
    let mut with_body = options(&c, "");
    with_body.truncate(with_body.len() - b"Content-Length: 0\r\n\r\n".len());
    with_body.extend_from_slice(b"Content-Length: 4\r\n\r\nbody");
    s.write_all(&with_body).unwrap();
    assert_eq!(header_str(&read_framed(&mut s, &mut pending), "Call-ID"), c);

    // A bad Content-Length closes the connection and counts a drop.
    s.write_all(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: z\r\nContent-Length: x\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let malformed: u64 = shell
        .counters()
        .iter()
        .map(|c| c.drops(DropReason::Malformed))
        .sum();
    assert_eq!(malformed, 1);
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn tcp_outbound_connect_is_reused_by_remote_address() {
    let next_hop = TcpListener::bind("127.0.0.1:0").unwrap();
    let shell = start(
        &test_config(1),
        Some(tcp_peer(next_hop.local_addr().unwrap())),
    );
    let client = udp_client();
    let public = shell.addrs()[0].public_udp.unwrap();
    let m1 = message("tcp-out-1@test", "one");
    let m2 = message("tcp-out-2@test", "two");
    client.send_to(&m1, public).unwrap();
    let (mut conn, _) = next_hop.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_framed(&mut conn, &mut pending), m1);
    client.send_to(&m2, public).unwrap();
    assert_eq!(
        read_framed(&mut conn, &mut pending),
        m2,
        "same connection reused"
    );
    next_hop.set_nonblocking(true).unwrap();
    assert!(next_hop.accept().is_err(), "no second connection");
    eventually(|| shell.counters()[0].tcp_connections() == 1);
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn tcp_connection_limit_and_idle_timeout() {
    let mut config = test_config(1);
    config.tcp.max_connections_per_core = 2;
    config.tcp.idle_timeout_secs = 1;
    let shell = start(&config, None);
    let addr = shell.addrs()[0].public_tcp.unwrap();
    let mut open = Vec::new();
    for i in 0..2 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(&options(&format!("lim-{i}@test"), "")).unwrap();
        let mut pending = Vec::new();
        assert!(read_framed(&mut s, &mut pending).starts_with(b"SIP/2.0 200"));
        open.push(s);
    }
    let mut third = TcpStream::connect(addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        third.read(&mut buf).unwrap_or(0),
        0,
        "over the limit: closed"
    );
    assert_eq!(shell.counters()[0].drops(DropReason::ConnectionLimit), 1);
    // Idle for longer than the timeout: the shell closes both.
    let t0 = Instant::now();
    for s in &mut open {
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed when idle");
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "not before the timeout: {waited:?}"
    );
    eventually(|| shell.counters()[0].tcp_connections() == 0);
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn engine_timers_and_dns_requests_are_served() {
    let shell = start(&test_config(1), None);
    let client = udp_client();
    let public = shell.addrs()[0].public_udp.unwrap();
    let t0 = Instant::now();
    client
        .send_to(&options("delay@test", "X-Delay-Ms: 200\r\n"), public)
        .unwrap();
    let (resp, _) = recv(&client);
    assert_eq!(header_str(&resp, "Call-ID"), "delay@test");
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "answered by the timer"
    );
    client
        .send_to(&options("dns@test", "X-Resolve: localhost\r\n"), public)
        .unwrap();
    let (resp, _) = recv(&client);
    let resolved = header_str(&resp, "X-Resolved");
    assert!(
        resolved.contains("127.0.0.1") || resolved.contains("::1"),
        "resolved: {resolved:?}"
    );
    shell.stop();
    shell.join().unwrap();
}

#[test]
fn store_requests_are_answered_by_the_store_thread() {
    use futures_lite::future::block_on;
    use sipring::store::Store;
    let dir = std::env::temp_dir().join(format!("sipring-shell-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = sipring::store::embedded::EmbeddedStore::open(&dir).unwrap();
    let alice = sipring::store::suite::user("alice@example.com", None);
    block_on(store.put_user(alice)).unwrap();
    let config = test_config(2);
    let shared: std::sync::Arc<dyn Store> = std::sync::Arc::new(store.clone());
    let handle = sipring::shell::start_with_store(&config, Some(shared), |ctx| {
        support::Fixture::new(ctx, None)
    })
    .unwrap();
    let public = handle.addrs()[0].public_udp.unwrap();
    let client = udp_client();
    for (i, (aor, want)) in [("alice@example.com", "found"), ("bob@example.com", "none")]
        .into_iter()
        .enumerate()
    {
        let call_id = format!("store-{i}@test");
        let extra = format!("X-Store-User: {aor}\r\n");
        client.send_to(&options(&call_id, &extra), public).unwrap();
        let (resp, _) = recv(&client);
        assert_eq!(header_str(&resp, "X-User"), want, "{aor}");
    }
    handle.stop();
    handle.join().unwrap();
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_drains_in_flight_work_then_returns() {
    let shell = start(&test_config(2), None);
    let client = udp_client();
    let public = shell.addrs()[0].public_udp.unwrap();
    client
        .send_to(&options("inflight@test", "X-Delay-Ms: 400\r\n"), public)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    shell.stop();
    // New work while draining is refused by the engine...
    std::thread::sleep(Duration::from_millis(250));
    client.send_to(&options("late@test", ""), public).unwrap();
    let mut got = [recv(&client).0, recv(&client).0];
    got.sort_by_key(|m| header_str(m, "Call-ID"));
    assert_eq!(header_str(&got[0], "Call-ID"), "inflight@test");
    assert!(
        got[0].starts_with(b"SIP/2.0 200"),
        "in-flight work finishes"
    );
    assert!(got[1].starts_with(b"SIP/2.0 503"), "new work refused");
    // ...and the shell returns once idle, well before the drain bound.
    shell.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn metrics_endpoint_serves_the_counters() {
    let shell = start(&test_config(2), None);
    let m =
        sipring::metrics::serve("127.0.0.1:0".parse().unwrap(), shell.counters().to_vec()).unwrap();
    let client = udp_client();
    client
        .send_to(
            &options("metrics@test", ""),
            shell.addrs()[0].public_udp.unwrap(),
        )
        .unwrap();
    recv(&client);
    std::thread::sleep(Duration::from_millis(1200)); // one latency snapshot
    let mut s = TcpStream::connect(m.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"));
    for want in [
        r#"kind="request",method="OPTIONS",class=""} 1"#,
        r#"kind="response",method="",class="2xx"} 1"#,
        "sipring_handoffs_sent_total{core=\"1\"}",
        "sipring_drops_total{core=\"0\",reason=\"too_large\"} 0",
        "sipring_transactions_active{core=\"0\"}",
        "sipring_receive_to_send_seconds{core=\"0\",quantile=\"0.99\"}",
        "sipring_receive_to_send_samples_total",
    ] {
        assert!(body.contains(want), "missing {want} in\n{body}");
    }
    let samples: u64 = shell
        .counters()
        .iter()
        .map(|c| c.latency.count.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(samples, 1, "one receive-to-send sample");
    drop(m);
    shell.stop();
    shell.join().unwrap();
}
