//! The registrar end to end with real sipp over loopback: users added with
//! `sipring user add` while the server runs (through its admin socket),
//! REGISTER with digest authentication (sipp's `[authentication]`,
//! `-au`/`-ap`), two registered UAs calling each other through sipring with
//! INVITE authentication (407), an expired binding not used, and a restart
//! that keeps users and bindings. Every process is killed by its pid when
//! its guard drops; every run is bounded in time. Without sipp the test
//! skips, unless SIPRING_REQUIRE_SIPP=1 (scripts/test-all.sh).

mod sipp_support;

use sipp_support::{free_ports, scenario, sipp};
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the child by its pid when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sipring")
}

/// `sipring serve` on 127.0.0.1:`port`, 2 cores, with `data` and `config`;
/// returns once every core listens.
fn sipring(port: u16, data: &Path, config: &Path) -> Proc {
    let mut child = Command::new(bin())
        .args(["serve", "--cores", "2", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
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
    let proc = Proc(child);
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("sipring listens");
    }
    proc
}

fn user_add(data: &Path, aor: &str, password: &str) {
    let out = Command::new(bin())
        .args(["user", "add", aor, "--password", password, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "user add {aor}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs sipp to completion (at most `limit`); exit status and output.
fn sipp_run(sipp: &Path, port: u16, target: u16, args: &[&str], limit: Duration) -> (i32, String) {
    let errors = std::env::temp_dir().join(format!("sipring-reg-test-{port}.err"));
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
        .expect("sipp starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut p = Proc(child);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < limit, "sipp did not finish within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut screen = reader.join().unwrap();
    if let Some(mut e) = p.0.stderr.take() {
        let _ = e.read_to_string(&mut screen);
    }
    if let Ok(log) = std::fs::read(&errors) {
        screen.push_str("\n--- sipp errors ---\n");
        screen.extend(String::from_utf8_lossy(&log).chars().take(6_000));
        let _ = std::fs::remove_file(&errors);
    }
    (status.code().unwrap_or(-1), screen)
}

/// Registers `user` (password `pw`) from `port` for `expires` seconds.
fn register(sipp: &Path, port: u16, proxy: u16, user: &str, pw: &str, expires: u32) {
    let (code, screen) = sipp_run(
        sipp,
        port,
        proxy,
        &[
            "-sf",
            &scenario("register_auth.xml"),
            "-s",
            user,
            "-au",
            user,
            "-ap",
            pw,
            "-key",
            "domain",
            "127.0.0.1",
            "-key",
            "expires",
            &expires.to_string(),
            "-m",
            "1",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "register {user}: {screen}");
}

/// A sipp UAS (the built-in scenario) on `port`, for `calls` calls.
fn uas(sipp: &Path, port: u16, calls: u32) -> Proc {
    let child = Command::new(sipp)
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-nostdin",
        ])
        .args(["-m", &calls.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas starts");
    std::thread::sleep(Duration::from_millis(300));
    Proc(child)
}

/// `caller` (password `pw`) calls `callee` through sipring from `port`.
fn call(sipp: &Path, port: u16, proxy: u16, caller: &str, pw: &str, callee: &str) -> (i32, String) {
    sipp_run(
        sipp,
        port,
        proxy,
        &[
            "-sf",
            &scenario("call_auth.xml"),
            "-s",
            callee,
            "-au",
            caller,
            "-ap",
            pw,
            "-key",
            "caller",
            caller,
            "-key",
            "domain",
            "127.0.0.1",
            "-m",
            "1",
        ],
        Duration::from_secs(30),
    )
}

/// An INVITE from outside (no credentials needed to call a user): the
/// status of the first final response.
fn outside_invite(proxy: u16, callee: &str) -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = s.local_addr().unwrap();
    let msg = format!(
        "INVITE sip:{callee}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-out-{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@other.example.org>;tag=o1\r\nTo: <sip:{callee}@127.0.0.1>\r\n\
         Call-ID: out-{}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@{me}>\r\nContent-Length: 0\r\n\r\n",
        me.port(),
        me.port()
    );
    s.send_to(msg.as_bytes(), ("127.0.0.1", proxy)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = s.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = text[8..11].parse().unwrap();
        if code >= 200 {
            return code;
        }
    }
}

fn stop(p: &mut Proc) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(p.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if p.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("sipring did not stop on SIGTERM");
}

#[test]
fn register_call_expire_and_restart_with_sipp() {
    let Some(sipp) = sipp() else { return };
    let base = free_ports(10);
    let proxy = base;
    let (alice_ua, alice_out, bob_ua, bob_out, carol_ua) =
        (base + 4, base + 5, base + 6, base + 7, base + 8);
    let dir = std::env::temp_dir().join(format!("sipring-sipp-registrar-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    let config = dir.join("sipring.toml");
    // Short registrations allowed, so one can expire within the test.
    std::fs::write(&config, "[registrar]\nmin_expires = 1\n").unwrap();

    let mut server = sipring(proxy, &data, &config);
    // Users added while the server runs go through its admin socket.
    user_add(&data, "alice@127.0.0.1", "alice-pw");
    user_add(&data, "bob@127.0.0.1", "bob-pw");
    user_add(&data, "carol@127.0.0.1", "carol-pw");

    register(&sipp, alice_ua, proxy, "alice", "alice-pw", 3600);
    register(&sipp, bob_ua, proxy, "bob", "bob-pw", 3600);
    register(&sipp, carol_ua, proxy, "carol", "carol-pw", 2);

    // Alice calls bob, then bob calls alice.
    {
        let _bob = uas(&sipp, bob_ua, 1);
        let (code, screen) = call(&sipp, alice_out, proxy, "alice", "alice-pw", "bob");
        assert_eq!(code, 0, "alice -> bob: {screen}");
    }
    {
        let _alice = uas(&sipp, alice_ua, 1);
        let (code, screen) = call(&sipp, bob_out, proxy, "bob", "bob-pw", "alice");
        assert_eq!(code, 0, "bob -> alice: {screen}");
    }
    // Carol's binding expires: not used (480), while bob's still is.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(outside_invite(proxy, "carol"), 480);
    assert_eq!(outside_invite(proxy, "nobody"), 404);

    // A restart keeps users and bindings.
    stop(&mut server);
    drop(server);
    let _server = sipring(proxy, &data, &config);
    {
        let _bob = uas(&sipp, bob_ua, 1);
        let (code, screen) = call(&sipp, alice_out, proxy, "alice", "alice-pw", "bob");
        assert_eq!(code, 0, "alice -> bob after a restart: {screen}");
    }
    assert_eq!(outside_invite(proxy, "carol"), 480);
    let _ = std::fs::remove_dir_all(&dir);
}
