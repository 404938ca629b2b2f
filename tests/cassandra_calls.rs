//! Calls through `sipring serve --store cassandra://...` with real sipp and
//! the real test node: dialog rows appear on the 2xx and go with the BYE;
//! 1000 calls/s for 30 s with every dialog written then deleted and no
//! failed call; Cassandra stopped in the middle of a run, calls unharmed,
//! the degraded state on /metrics, writes resuming once it is back.
//!
//! sipp uac -> sipring (2 cores) -> sipp uas on 127.0.0.1, free ports, every
//! process killed by its pid on drop, one run at a time. Without sipp or the
//! node these tests skip, unless SIPRING_REQUIRE_SIPP=1 /
//! SIPRING_REQUIRE_CASSANDRA=1 (scripts/test-all.sh) make that a failure.

mod cassandra_support;

mod sipp_support;

use sipp_support::{free_ports, sipp};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sipring::store::cassandra::{CassandraConfig, CassandraStore, DialogPartition};

use cassandra_support::{now_ms, wait_until};

/// Kills the child by its pid when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running `sipring serve --store cassandra://...` and what the test needs
/// to look at it.
struct Sipring {
    _proc: Proc,
    node: String,
    metrics: String,
}

/// sipring on 127.0.0.1:`port` (2 cores), forwarding to `hop`, persisting
/// dialogs in keyspace `ks` as node `node`.
fn sipring(port: u16, hop: u16, c: &CassandraConfig, node: &str) -> Sipring {
    let conf = std::env::temp_dir().join(format!("sipring-{node}.toml"));
    std::fs::write(&conf, format!("[server]\nnode_id = \"{node}\"\n")).unwrap();
    let url = format!("cassandra://{}/{}", c.hosts[0], c.keyspace);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipring"))
        .arg("serve")
        .arg("--config")
        .arg(&conf)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--cores", "2"])
        .args(["--forward-to", &format!("127.0.0.1:{hop}")])
        .args(["--store", &url, "--metrics", "127.0.0.1:0"])
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
            if line.contains("metrics endpoint")
                && let Some(i) = line.find("addr=")
            {
                let rest = &line[i + 5..];
                let end = rest.find(' ').unwrap_or(rest.len());
                let _ = tx.send(Some(rest[..end].to_owned()));
            }
            if line.contains("listening") {
                let _ = tx.send(None);
            }
            if line.contains("ERROR") || line.contains("WARN") || line.contains("cassandra") {
                eprintln!("sipring: {line}");
            }
        }
    });
    let proc = Proc(child);
    let mut metrics = None;
    let mut listening = 0;
    while listening < 2 {
        match rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sipring listens")
        {
            Some(m) => metrics = Some(m),
            None => listening += 1,
        }
    }
    let _ = std::fs::remove_file(&conf);
    Sipring {
        _proc: proc,
        node: node.to_owned(),
        metrics: metrics.expect("metrics address"),
    }
}

impl Sipring {
    /// A value on /metrics (0 when absent).
    fn metric(&self, name: &str) -> u64 {
        let mut s = TcpStream::connect(&self.metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Rows of this node's dialogs in Cassandra (both cores' slices).
    fn rows(&self, store: &CassandraStore) -> usize {
        let c = store.config();
        let mut parts = Vec::new();
        for slice in 0..2 {
            parts.extend(DialogPartition::recent(
                &self.node,
                slice,
                now_ms(),
                600_000,
                c.bucket_ms(),
            ));
        }
        block_on(store.dialogs(parts)).map_or(usize::MAX, |r| r.len())
    }
}

fn sipp_uas(sipp: &Path, port: u16) -> Proc {
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas starts");
    std::thread::sleep(Duration::from_millis(300));
    Proc(child)
}

/// Starts a sipp UAC: `rate` calls/s, `calls` calls, each `hold_ms` long;
/// returns it with its error log.
fn sipp_uac(
    sipp: &Path,
    port: u16,
    target: u16,
    rate: u32,
    calls: u32,
    hold_ms: u32,
) -> (Proc, PathBuf) {
    let _ = std::fs::remove_file(errors_file(port));
    let child = Command::new(sipp)
        .arg(format!("127.0.0.1:{target}"))
        .args([
            "-sn",
            "uac",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-nostdin",
        ])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
        .args([
            "-d",
            &hold_ms.to_string(),
            "-timeout",
            "150s",
            "-timeout_error",
        ])
        // A 2-core machine shared with a debug-built sipring, Cassandra and
        // the build can stall a process for seconds: let sipp retransmit
        // for about 30 s (not its default ~11 s for a BYE) before it calls
        // a call failed. Every call must still complete.
        .args(["-max_invite_retrans", "10", "-max_non_invite_retrans", "10"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(errors_file(port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uac starts");
    (Proc(child), errors_file(port))
}

/// Where the UAC on `port` logs its errors.
fn errors_file(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("sipring-cassandra-uac-{port}.err"))
}

/// Waits for the UAC (bounded), returns (successful, failed) calls.
fn finish(uac: (Proc, PathBuf), limit: Duration) -> (u64, u64, String) {
    let (mut uac, errors) = uac;
    let mut out = uac.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    while uac.0.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < limit,
            "sipp uac did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut screen = reader.join().unwrap();
    // The first errors sipp logged, for a failing assertion's message.
    if let Ok(log) = std::fs::read(&errors) {
        screen.push_str("\n--- sipp errors ---\n");
        screen.extend(String::from_utf8_lossy(&log).chars().take(4_000));
        let _ = std::fs::remove_file(&errors);
    }
    let stat = |label: &str| {
        screen
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{label}' in sipp's output:\n{screen}"))
    };
    (stat("Successful call"), stat("Failed call"), screen)
}

struct Setup {
    sipp: PathBuf,
    store: CassandraStore,
    cfg: CassandraConfig,
}

fn setup(test: &str) -> Option<Setup> {
    let sipp = sipp()?;
    let cfg = cassandra_support::config(test)?;
    // Creates the keyspace before sipring does, and reads it afterwards.
    let store = CassandraStore::connect(cfg.clone()).expect("connect");
    Some(Setup { sipp, store, cfg })
}

#[test]
fn dialog_rows_appear_with_the_2xx_and_go_with_the_bye() {
    let _serial = serial();
    let Some(s) = setup("calls_rows") else { return };
    let base = free_ports(6);
    let (proxy, uas, uac) = (base, base + 3, base + 4);
    let _uas = sipp_uas(&s.sipp, uas);
    let sipring = sipring(proxy, uas, &s.cfg, "rows-node");
    // 10 calls of 4 s each.
    let run = sipp_uac(&s.sipp, uac, proxy, 10, 10, 4_000);
    assert!(
        wait_until(Duration::from_secs(10), || sipring.rows(&s.store) == 10),
        "10 dialogs in Cassandra during the calls: {} rows",
        sipring.rows(&s.store)
    );
    let (ok, failed, screen) = finish(run, Duration::from_secs(60));
    assert_eq!((ok, failed), (10, 0), "{screen}");
    assert!(
        wait_until(Duration::from_secs(10), || sipring.rows(&s.store) == 0),
        "rows left after the BYEs: {}",
        sipring.rows(&s.store)
    );
    assert_eq!(
        sipring.metric("sipring_store_dialog_mutations_persisted_total"),
        20
    );
    s.store.shutdown(Duration::from_secs(5));
}

#[test]
fn thousand_calls_per_second_for_30_s_every_dialog_written_then_deleted() {
    let _serial = serial();
    let Some(s) = setup("calls_load") else { return };
    let base = free_ports(6);
    let (proxy, uas, uac) = (base, base + 3, base + 4);
    let _uas = sipp_uas(&s.sipp, uas);
    let sipring = sipring(proxy, uas, &s.cfg, "load-node");
    let calls = 30_000;
    let run = sipp_uac(&s.sipp, uac, proxy, 1000, calls, 1_000);
    let (ok, failed, screen) = finish(run, Duration::from_secs(120));
    assert_eq!((ok, failed), (u64::from(calls), 0), "{screen}");
    let want = 2 * u64::from(calls);
    let m = |n: &str| sipring.metric(n);
    assert!(
        wait_until(Duration::from_secs(30), || {
            m("sipring_store_dialog_mutations_persisted_total") >= want
        }),
        "persisted {} of {want}",
        m("sipring_store_dialog_mutations_persisted_total")
    );
    assert_eq!(m("sipring_store_dialog_mutations_persisted_total"), want);
    for n in [
        "sipring_store_dialog_mutations_dropped_total",
        "sipring_store_dialog_mutations_failed_total",
        "sipring_store_dialog_mutations_coalesced_total",
        "sipring_store_degraded",
    ] {
        assert_eq!(m(n), 0, "{n}");
    }
    assert_eq!(sipring.rows(&s.store), 0, "rows left");
    eprintln!(
        "1000 calls/s: {want} mutations in {} Cassandra requests",
        m("sipring_store_dialog_requests_total")
    );
    s.store.shutdown(Duration::from_secs(5));
}

fn script(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/cassandra")
        .join(name);
    let addr = cassandra_support::address();
    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
    let status = Command::new(&path)
        .env("SIPRING_CASSANDRA_FRESH", "0")
        .env("SIPRING_CASSANDRA_HOST", host)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(status.success(), "{} failed", path.display());
}

/// Restarts the test node whatever happens to the test.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        script("start.sh");
    }
}

#[test]
fn cassandra_stopped_mid_run_calls_continue_and_writes_resume() {
    if std::env::var("SIPRING_CASSANDRA_MANAGED").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED: the node is not ours to restart (SIPRING_CASSANDRA_MANAGED=1 is set by scripts/test-all.sh)"
        );
        return;
    }
    let _serial = serial();
    let Some(s) = setup("calls_outage") else {
        return;
    };
    let base = free_ports(6);
    let (proxy, uas, uac) = (base, base + 3, base + 4);
    let _uas = sipp_uas(&s.sipp, uas);
    let sipring = sipring(proxy, uas, &s.cfg, "outage-node");
    // 200 calls/s for 40 s, 500 ms each.
    let calls = 8_000;
    let run = sipp_uac(&s.sipp, uac, proxy, 200, calls, 500);
    let m = |n: &str| sipring.metric(n);
    assert!(wait_until(Duration::from_secs(10), || {
        m("sipring_store_dialog_mutations_persisted_total") > 0
    }));

    let _restart = RestartOnDrop;
    script("stop.sh");
    assert!(
        wait_until(Duration::from_secs(20), || m("sipring_store_degraded") == 1),
        "degraded state not reported"
    );
    std::thread::sleep(Duration::from_secs(2));
    script("start.sh");
    let at_restart = m("sipring_store_dialog_mutations_persisted_total");
    assert!(
        wait_until(Duration::from_secs(60), || {
            m("sipring_store_degraded") == 0
                && m("sipring_store_dialog_mutations_persisted_total") > at_restart
        }),
        "writes did not resume"
    );
    let (ok, failed, screen) = finish(run, Duration::from_secs(120));
    assert_eq!((ok, failed), (u64::from(calls), 0), "{screen}");
    // Every mutation is accounted for: persisted, or dropped and counted.
    let want = 2 * u64::from(calls);
    assert!(
        wait_until(Duration::from_secs(30), || {
            m("sipring_store_dialog_mutations_persisted_total")
                + m("sipring_store_dialog_mutations_dropped_total")
                + m("sipring_store_dialog_mutations_coalesced_total")
                + m("sipring_store_dialog_mutations_failed_total")
                == want
        }),
        "mutations unaccounted for"
    );
    eprintln!(
        "outage: persisted {}, dropped {}, retries {}",
        m("sipring_store_dialog_mutations_persisted_total"),
        m("sipring_store_dialog_mutations_dropped_total"),
        m("sipring_store_dialog_write_retries_total"),
    );
    s.store.shutdown(Duration::from_secs(5));
}
