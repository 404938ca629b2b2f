//! Cassandra stopped in the middle of a stream of dialog writes: the writer
//! never blocks, the store reports itself degraded, mutations beyond the
//! bounded queue are dropped and counted, and writes resume once the node is
//! back.
//!
//! It stops and restarts the test node with scripts/cassandra/{stop,start}.sh,
//! so it runs only where that node is ours to restart:
//! `SIPRING_CASSANDRA_MANAGED=1` (set by scripts/test-all.sh). Its own test
//! binary, so no other Cassandra test runs while the node is down.

mod cassandra_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant as StdInstant};

use futures_lite::future::block_on;
use sipring::store::cassandra::{
    CassandraStore, DialogKey, DialogMutation, DialogPartition, DialogRecord, StoreError,
};
use sipring::time::Instant;

use cassandra_support::{config, now_ms, wait_until};

fn script(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/cassandra")
        .join(name);
    // Restart on the same address (the node's data is kept).
    let addr = cassandra_support::address();
    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
    let status = Command::new(&path)
        .env("SIPRING_CASSANDRA_FRESH", "0")
        .env("SIPRING_CASSANDRA_HOST", host)
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(status.success(), "{} failed", path.display());
}

fn record(p: &DialogPartition, i: u64) -> DialogRecord {
    DialogRecord {
        key: DialogKey {
            partition: p.clone(),
            call_id: format!("outage-{i}"),
            from_tag: "a".into(),
            to_tag: "b".into(),
        },
        state: vec![1; 64],
        updated_at_ms: now_ms(),
    }
}

/// One "call": its dialog created, then ended.
struct Calls {
    p: DialogPartition,
    next: u64,
    pushed: u64,
}

impl Calls {
    fn run(
        &mut self,
        w: &mut sipring::store::cassandra::DialogWriter,
        start: StdInstant,
        for_: Duration,
    ) {
        let end = StdInstant::now() + for_;
        while StdInstant::now() < end {
            let now = Instant::from_nanos(start.elapsed().as_nanos() as u64);
            let r = record(&self.p, self.next);
            w.push(now, DialogMutation::Upsert(r.clone()));
            w.push(now, DialogMutation::Delete(r.key));
            self.next += 1;
            self.pushed += 2;
            w.handle_timeout(now);
            std::thread::sleep(Duration::from_millis(2));
        }
        let now = Instant::from_nanos(start.elapsed().as_nanos() as u64);
        w.handle_timeout(now);
    }
}

#[test]
fn cassandra_down_mid_run_degrades_then_resumes() {
    if std::env::var("SIPRING_CASSANDRA_MANAGED").ok().as_deref() != Some("1") {
        eprintln!(
            "SKIP: the node is not ours to restart (SIPRING_CASSANDRA_MANAGED=1 is set by scripts/test-all.sh)"
        );
        return;
    }
    let Some(mut c) = config("outage") else {
        return;
    };
    // A small queue, so that the outage overflows it: 8 flushes of 16.
    c.batch_max = 16;
    c.queue_batches = 8;
    c.request_timeout_ms = 1_000;
    c.retry_max_ms = 500;
    let store = CassandraStore::connect(c.clone()).unwrap();
    let stats = store.stats().clone();
    let mut w = store.dialog_writer(0);
    let start = StdInstant::now();
    let mut calls = Calls {
        p: DialogPartition::new("node-o", 0, now_ms(), c.bucket_ms()),
        next: 0,
        pushed: 0,
    };

    calls.run(&mut w, start, Duration::from_secs(1));
    assert!(wait_until(Duration::from_secs(10), || stats
        .snapshot()
        .persisted
        > 0));
    assert!(!stats.degraded());

    script("stop.sh");
    let before_outage = calls.pushed;
    // Calls keep flowing: pushes return at once while the node is down.
    let t = StdInstant::now();
    calls.run(&mut w, start, Duration::from_secs(3));
    assert!(calls.pushed > before_outage);
    assert!(t.elapsed() < Duration::from_secs(30), "pushes blocked");
    assert!(
        wait_until(Duration::from_secs(20), || stats.degraded()),
        "degraded state not reported: {:?}",
        stats.snapshot()
    );
    // A lookup fails (it does not hang) while the node is down.
    assert!(matches!(
        block_on(store.user("x@example.com")),
        Err(StoreError::Unavailable(_) | StoreError::Overloaded)
    ));
    // The bounded queue overflowed: dropped, and counted.
    calls.run(&mut w, start, Duration::from_secs(1));
    let s = stats.snapshot();
    assert!(s.dropped > 0, "{s:?}");
    assert!(s.retries > 0, "{s:?}");

    script("start.sh");
    let persisted_at_restart = stats.snapshot().persisted;
    calls.run(&mut w, start, Duration::from_secs(1));
    w.flush();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = stats.snapshot();
            !s.degraded && s.persisted > persisted_at_restart
        }),
        "writes did not resume: {:?}",
        stats.snapshot()
    );
    // Everything pushed is accounted for: written, coalesced or dropped.
    assert!(
        wait_until(Duration::from_secs(30), || {
            w.flush(); // what the writer still holds, once there is room
            let s = stats.snapshot();
            s.persisted + s.coalesced + s.dropped + s.failed == calls.pushed
        }),
        "pushed {} but {:?}",
        calls.pushed,
        stats.snapshot()
    );
    // Every call ended: no dialog row is left.
    let recent = DialogPartition::recent("node-o", 0, now_ms(), 3_600_000, c.bucket_ms());
    let left = block_on(store.dialogs(recent)).unwrap();
    let s = stats.snapshot();
    // Rows whose delete was dropped stay until their TTL; each one is a
    // dropped mutation.
    assert!(
        left.len() as u64 <= s.dropped,
        "{} rows left, {s:?}",
        left.len()
    );
    eprintln!(
        "outage: pushed {}, {s:?}, rows left {}",
        calls.pushed,
        left.len()
    );
    drop(w);
    store.shutdown(Duration::from_secs(5));
}
