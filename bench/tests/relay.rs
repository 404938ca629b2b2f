//! The blind relays forward both ways, over UDP and TCP, on both runtimes:
//! each relay is started as `sipring-bench relay` (stopped by its guard) and
//! datagrams / bytes are pushed through it on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use sipring_bench::process::{ProcessGuard, wait_until};
use sipring_bench::procfs::{SocketKind, port_bound};
use sipring_bench::runner::free_ports;

const TIMEOUT: Duration = Duration::from_secs(5);

fn start_relay(
    runtime: &str,
    transport: &str,
    args: &[String],
    port: u16,
    kind: SocketKind,
) -> ProcessGuard {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipring-bench"));
    c.args([
        "relay",
        "--runtime",
        runtime,
        "--transport",
        transport,
        "--lifetime-s",
        "60",
    ])
    .args(args)
    .stdin(Stdio::null());
    let mut g = ProcessGuard::spawn("relay", c).unwrap();
    let up = wait_until(TIMEOUT, || {
        Ok(g.try_status()?.is_none() && port_bound(port, kind))
    })
    .unwrap();
    assert!(up, "{runtime} relay did not bind {port}");
    g
}

fn udp_round_trip(runtime: &str) {
    // The test's own sockets take their ports at once; only the relay's,
    // bound by another process, is chosen ahead.
    let p = free_ports(1).unwrap();
    let uac = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    let uas = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
    for s in [&uac, &uas] {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
    }
    let listen = SocketAddr::from(([127, 0, 0, 1], p[0]));
    let args = [
        "--listen".to_owned(),
        listen.to_string(),
        "--forward-to".to_owned(),
        uas.local_addr().unwrap().to_string(),
        "--client".to_owned(),
        uac.local_addr().unwrap().to_string(),
    ];
    let _relay = start_relay(runtime, "udp", &args, p[0], SocketKind::Udp);
    let mut buf = [0u8; 2048];
    for i in 0..20 {
        let req = format!("INVITE sip:x@y SIP/2.0\r\nCSeq: {i} INVITE\r\n\r\n");
        uac.send_to(req.as_bytes(), listen).unwrap();
        let (n, from) = uas.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], req.as_bytes(), "{runtime}: request unchanged");
        assert_ne!(from, uac.local_addr().unwrap(), "it came from the relay");
        // The callee answers whoever sent the request: the relay's callee side.
        let resp = format!("SIP/2.0 200 OK\r\nCSeq: {i} INVITE\r\n\r\n");
        uas.send_to(resp.as_bytes(), from).unwrap();
        let (n, from) = uac.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], resp.as_bytes(), "{runtime}: response unchanged");
        assert_eq!(
            from, listen,
            "{runtime}: the response comes from the proxy address"
        );
    }
}

fn tcp_round_trip(runtime: &str) {
    let p = free_ports(1).unwrap();
    let uas = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], p[0]));
    let args = [
        "--listen".to_owned(),
        listen.to_string(),
        "--forward-to".to_owned(),
        uas.local_addr().unwrap().to_string(),
    ];
    let _relay = start_relay(runtime, "tcp", &args, p[0], SocketKind::TcpListen);
    let mut uac = TcpStream::connect(listen).unwrap();
    uac.set_read_timeout(Some(TIMEOUT)).unwrap();
    uac.write_all(b"REGISTER sip:y SIP/2.0\r\n\r\n").unwrap();
    let (mut conn, _) = uas.accept().unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 26];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"REGISTER sip:y SIP/2.0\r\n\r\n");
    conn.write_all(b"SIP/2.0 401 Unauthorized\r\n\r\n").unwrap();
    let mut back = [0u8; 28];
    uac.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"SIP/2.0 401 Unauthorized\r\n\r\n", "{runtime}");
}

#[test]
fn std_relay_udp() {
    udp_round_trip("std");
}

#[test]
fn glommio_relay_udp() {
    udp_round_trip("glommio");
}

#[test]
fn std_relay_tcp() {
    tcp_round_trip("std");
}

#[test]
fn glommio_relay_tcp() {
    tcp_round_trip("glommio");
}
