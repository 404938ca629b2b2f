//! `sipring serve` as a process: it relays, and SIGTERM/SIGINT make it drain
//! and exit 0. Every process started here is killed by its pid on drop.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the child by pid when dropped (a failed assertion leaves nothing).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(st) = self.0.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Start `sipring serve ARGS` and return it with its public UDP address,
/// read from its log.
fn serve(args: &[&str]) -> (Proc, SocketAddr) {
    // Each process its own embedded store (the file is locked while open).
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = std::env::temp_dir().join(format!("sipring-serve-data-{}-{n}", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_sipring"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let stderr = proc.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("sipring: {line}");
            if let Some(i) = line.find("public_udp=Some(") {
                let rest = &line[i + "public_udp=Some(".len()..];
                let addr = rest[..rest.find(')').unwrap()]
                    .parse::<SocketAddr>()
                    .unwrap();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("sipring logs its address");
    (proc, addr)
}

#[test]
fn serve_relays_and_exits_0_on_sigterm_and_sigint() {
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let hop = sink.local_addr().unwrap().to_string();
        let (mut proc, public) = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "2",
            "--relay",
            "--forward-to",
            &hop,
        ]);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", public)
            .unwrap();
        let mut buf = [0u8; 256];
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        proc.signal(sig);
        let status = proc
            .wait_timeout(Duration::from_secs(10))
            .expect("exits after the signal");
        assert_eq!(status.code(), Some(0), "{sig}: graceful exit");
    }
}

#[test]
fn serve_rejects_a_bad_config_with_status_2() {
    let dir = std::env::temp_dir().join(format!("sipring-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nno_such_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sipring"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));
    std::fs::remove_dir_all(&dir).unwrap();
}
