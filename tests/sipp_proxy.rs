//! End to end with real sipp: `sipp uac -> sipring serve -> sipp uas` over
//! loopback. Every process is started on free ports and killed by its pid
//! when its guard drops; every run is bounded in calls and time. Without
//! sipp the tests skip, unless SIPRING_REQUIRE_SIPP=1 (scripts/test-all.sh)
//! makes that a failure.

mod sipp_support;

use sipp_support::{free_ports, scenario, sipp};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the child by its pid when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sipp run at a time: the load tests share two cores with the build
/// and each other, and a run's timing should not depend on its neighbours.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `sipring serve` on 127.0.0.1:`port` with `cores` cores (private ports
/// follow), forwarding to `forward_to`; returns once every core listens.
fn sipring(port: u16, cores: u16, forward_to: SocketAddr) -> Proc {
    let data =
        std::env::temp_dir().join(format!("sipring-sipp-proxy-{}-{port}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipring"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--cores", &cores.to_string(), "--forward-to"])
        .arg(forward_to.to_string())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipring starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
            if line.contains("ERROR") || line.contains("WARN") {
                eprintln!("sipring: {line}");
            }
        }
    });
    let proc = Proc {
        child,
        name: "sipring",
    };
    for _ in 0..cores {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("sipring listens");
    }
    proc
}

fn sipp_uas(sipp: &Path, port: u16, args: &[&str]) -> Proc {
    let child = Command::new(sipp)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas starts");
    // sipp binds before it reads its scenario; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    Proc { child, name: "uas" }
}

/// Runs a sipp UAC to completion (bounded by `limit`) and returns its exit
/// status and final statistics screen.
fn sipp_uac(sipp: &Path, port: u16, target: u16, args: &[&str], limit: Duration) -> (i32, String) {
    let errors = std::env::temp_dir().join(format!("sipring-test-uac-{port}.err"));
    let _ = std::fs::remove_file(&errors);
    let mut child = Command::new(sipp)
        .arg(format!("127.0.0.1:{target}"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .args(["-trace_err", "-error_file"])
        .arg(&errors)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp uac starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut uac = Proc { child, name: "uac" };
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = uac.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < limit,
            "{} did not finish within {limit:?}",
            uac.name
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = uac.child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let mut screen = reader.join().unwrap() + &err;
    if let Ok(log) = std::fs::read(&errors) {
        // The first errors sipp logged, for a failing assertion's message.
        let log = String::from_utf8_lossy(&log);
        screen.push_str("\n--- sipp errors ---\n");
        screen.extend(log.chars().take(6_000));
        let _ = std::fs::remove_file(&errors);
    }
    (status.code().unwrap_or(-1), screen)
}

/// The cumulative count on a statistics line of sipp's final screen.
fn stat(screen: &str, label: &str) -> u64 {
    screen
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{label}' in sipp's output:\n{screen}"))
}

fn run_calls(
    transport: &str,
    rate: u32,
    calls: u32,
    extra_uac: &[&str],
    extra_uas: &[&str],
    uas_scenario: &[&str],
    uac_scenario: &[&str],
) {
    let _serial = serial();
    let Some(sipp) = sipp() else { return };
    let base = free_ports(6);
    let (proxy, uas, uac) = (base, base + 3, base + 4);
    let mut uas_args: Vec<&str> = vec!["-t", transport];
    uas_args.extend_from_slice(uas_scenario);
    uas_args.extend_from_slice(extra_uas);
    let _uas = sipp_uas(&sipp, uas, &uas_args);
    let _proxy = sipring(proxy, 2, SocketAddr::from(([127, 0, 0, 1], uas)));
    let (rate_s, calls_s) = (rate.to_string(), calls.to_string());
    let mut args: Vec<&str> = vec![
        "-t",
        transport,
        "-r",
        &rate_s,
        "-m",
        &calls_s,
        "-timeout",
        "120s",
        "-timeout_error",
    ];
    args.extend_from_slice(uac_scenario);
    args.extend_from_slice(extra_uac);
    let (code, screen) = sipp_uac(&sipp, uac, proxy, &args, Duration::from_secs(150));
    let ok = stat(&screen, "Successful call");
    let failed = stat(&screen, "Failed call");
    assert_eq!(
        (ok, failed),
        (u64::from(calls), 0),
        "exit {code}:\n{screen}"
    );
    assert_eq!(
        code, 0,
        "sipp exit status (0: every call succeeded):\n{screen}"
    );
}

#[test]
fn sipp_udp_500_calls_per_second_for_10_s() {
    run_calls("u1", 500, 5_000, &[], &[], &["-sn", "uas"], &["-sn", "uac"]);
}

#[test]
fn sipp_tcp_500_calls_per_second_for_10_s() {
    run_calls("t1", 500, 5_000, &[], &[], &["-sn", "uas"], &["-sn", "uac"]);
}

#[test]
fn sipp_cancel_scenario() {
    let (uas, uac) = (scenario("uas_cancel.xml"), scenario("uac_cancel.xml"));
    run_calls("u1", 100, 500, &[], &[], &["-sf", &uas], &["-sf", &uac]);
}

/// 10% of the UAC's messages lost both ways: sipring's transactions
/// absorb and answer the retransmissions. (Loss at sipp's UAS is left out:
/// a sipp UAS that "loses" a call's first INVITE ignores its
/// retransmissions, whatever is in between.)
#[test]
fn sipp_with_10_percent_loss_still_completes() {
    let (uac, uas): (&[&str], &[&str]) = (&["-sn", "uac"], &["-sn", "uas"]);
    run_calls("u1", 100, 500, &["-lost", "10"], &[], uas, uac);
}

/// The RFC 4475 messages over UDP: each gets the answer
/// tests/sipp/rfc4475_proxy.tsv names (or is forwarded, or dropped), and
/// sipring keeps serving calls afterwards.
#[test]
fn rfc4475_messages_over_udp_then_calls_still_work() {
    let _serial = serial();
    let Some(sipp) = sipp() else { return };
    let base = free_ports(6);
    let (proxy, hop, uac) = (base, base + 3, base + 4);
    let next_hop = UdpSocket::bind(("127.0.0.1", hop)).unwrap();
    next_hop
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _proxy = sipring(proxy, 2, next_hop.local_addr().unwrap());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = std::fs::read_to_string(root.join("tests/sipp/rfc4475_proxy.tsv")).unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut checked = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, want) = line.split_once('\t').unwrap();
        let msg =
            std::fs::read(root.join(format!("parser/tests/data/rfc4475/{name}.dat"))).unwrap();
        // Answers go where the Via says: most of these name other hosts, so
        // only the forwarded ones and the answers sent back to the source
        // (rport, or a Via naming 127.0.0.1's port) can be seen here. The
        // deterministic test (src/proxy/tests.rs) checks every answer; this
        // one checks that none of them disturbs the running process.
        client.send_to(&msg, ("127.0.0.1", proxy)).unwrap();
        // The next hop never answers, so earlier requests come again
        // (Timers A and E): those retransmissions are byte-identical.
        let mut got = None;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(400) {
            if let Ok((n, _)) = next_hop.recv_from(&mut buf) {
                if !seen.iter().any(|s| s[..] == buf[..n]) {
                    got = Some(buf[..n].to_vec());
                    break;
                }
            }
        }
        // The method is kept (the Request-URI may change: mpart01's Route
        // names a strict router).
        let start = |m: &[u8]| m.split(|&b| b == b' ').next().unwrap().to_vec();
        match (want, got) {
            ("forward", Some(fwd)) => {
                assert_eq!(start(&fwd), start(&msg), "{name}: the method is kept");
                seen.push(fwd);
            }
            ("forward", None) => panic!("{name}: not forwarded"),
            (_, Some(fwd)) => panic!("{name}: forwarded: {}", String::from_utf8_lossy(&fwd)),
            (_, None) => {}
        }
        checked += 1;
    }
    assert_eq!(checked, 50);
    // An answer that comes back to us: 483 for Max-Forwards 0 with rport.
    let zero = format!(
        "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-zmf;rport\r\n\
Max-Forwards: 0\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: zmf@t\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        client.local_addr().unwrap().port()
    );
    client
        .send_to(zero.as_bytes(), ("127.0.0.1", proxy))
        .unwrap();
    // Earlier answers sent back to this socket may still be queued.
    let t0 = Instant::now();
    loop {
        let (n, _) = client.recv_from(&mut buf).expect("483 comes back");
        if buf[..n].starts_with(b"SIP/2.0 483 ") && buf[..n].windows(8).any(|w| w == b"zmf@t\r\nC")
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no 483");
    }
    drop(next_hop);
    // Still serving: a short sipp run through the same process.
    let uas_port = hop;
    let _uas = sipp_uas(&sipp, uas_port, &["-sn", "uas"]);
    let (code, screen) = sipp_uac(
        &sipp,
        uac,
        proxy,
        &["-sn", "uac", "-r", "50", "-m", "50"],
        Duration::from_secs(60),
    );
    assert_eq!(
        (code, stat(&screen, "Successful call")),
        (0, 50),
        "{screen}"
    );
}
