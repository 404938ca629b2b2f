//! Benchmark of the Cassandra backend's dialog writes, without SIP: N "core"
//! threads each drive a `DialogWriter` as the proxy would at a given call
//! rate (an Upsert when a call is answered, a Delete `hold_ms` later), for a
//! bounded time, against a real Cassandra. Prints mutations persisted per
//! second, Cassandra requests, the batching factor (mutations per request),
//! and the CPU time of the storage thread and of the Cassandra JVM per 1000
//! mutations, so the two `batch_mode`s can be compared in one run
//! (scripts/bench-cassandra.sh, BENCHMARKS.md).
//!
//! `dialog_writes --cassandra HOST:PORT [--mode unlogged|concurrent]
//!   [--rate CALLS_PER_S] [--secs S] [--cores N] [--hold-ms MS]
//!   [--batch-max N] [--window-us US] [--cassandra-pid PID]`

#![allow(clippy::print_stdout)] // a benchmark program: its result line goes to stdout

use std::collections::VecDeque;
use std::time::{Duration, Instant as StdInstant};

use sipring::store::cassandra::{
    BatchMode, CassandraConfig, CassandraStore, DialogKey, DialogMutation, DialogPartition,
    DialogRecord,
};
use sipring::time::Instant;

struct Args {
    cassandra: String,
    mode: BatchMode,
    rate: u64,
    secs: u64,
    cores: u16,
    hold_ms: u64,
    batch_max: usize,
    window_us: u64,
    cassandra_pid: Option<u32>,
}

fn args() -> Args {
    let mut a = Args {
        cassandra: "127.0.0.1:9042".into(),
        mode: BatchMode::Unlogged,
        rate: 2000,
        secs: 10,
        cores: 2,
        hold_ms: 1000,
        batch_max: 64,
        window_us: 5000,
        cassandra_pid: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.chunks(2);
    while let Some([k, v]) = it.next() {
        let n = || {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{k} {v}: not a number"))
        };
        match k.as_str() {
            "--cassandra" => a.cassandra = v.clone(),
            "--mode" => {
                a.mode = match v.as_str() {
                    "unlogged" => BatchMode::Unlogged,
                    "concurrent" => BatchMode::Concurrent,
                    _ => panic!("--mode unlogged|concurrent"),
                }
            }
            "--rate" => a.rate = n(),
            "--secs" => a.secs = n(),
            "--cores" => a.cores = u16::try_from(n()).expect("--cores"),
            "--hold-ms" => a.hold_ms = n(),
            "--batch-max" => a.batch_max = usize::try_from(n()).expect("--batch-max"),
            "--window-us" => a.window_us = n(),
            "--cassandra-pid" => a.cassandra_pid = Some(u32::try_from(n()).expect("pid")),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

/// utime + stime of a task, in clock ticks (/proc/.../stat fields 14, 15).
fn ticks(stat_path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of this process's thread named `name`.
fn thread_ticks(name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return ticks(&p.join("stat").to_string_lossy()).unwrap_or(0);
        }
    }
    0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

fn main() {
    let a = args();
    let config = CassandraConfig {
        hosts: vec![a.cassandra.clone()],
        keyspace: "bench_dialogs".into(),
        batch_mode: a.mode,
        batch_max: a.batch_max,
        batch_window_us: a.window_us,
        ..CassandraConfig::default()
    };
    let bucket_ms = config.bucket_ms();
    let store = CassandraStore::connect(config).expect("connect");
    let stats = store.stats().clone();
    // The thread name as /proc shows it (15 bytes).
    let storage_thread = "sipring-cassand";
    let jvm_stat = a.cassandra_pid.map(|p| format!("/proc/{p}/stat"));
    let hz = 100.0; // USER_HZ on Linux

    let t0 = StdInstant::now();
    let s0 = stats.snapshot();
    let st0 = thread_ticks(storage_thread);
    let jvm0 = jvm_stat.as_deref().and_then(ticks).unwrap_or(0);

    let per_core = a.rate as f64 / f64::from(a.cores);
    let mut threads = Vec::new();
    for core in 0..a.cores {
        let mut w = store.dialog_writer(core);
        let (secs, hold) = (a.secs, Duration::from_millis(a.hold_ms));
        threads.push(std::thread::spawn(move || {
            let start = StdInstant::now();
            let at = |t: StdInstant| Instant::from_nanos(t.duration_since(start).as_nanos() as u64);
            let mut open: VecDeque<(StdInstant, DialogKey)> = VecDeque::new();
            let mut calls = 0u64;
            let end = start + Duration::from_secs(secs);
            loop {
                let now = StdInstant::now();
                if now >= end && open.is_empty() {
                    break;
                }
                // Calls due by now at the target rate.
                let due = (now.duration_since(start).as_secs_f64() * per_core) as u64;
                while now < end && calls < due {
                    let p =
                        DialogPartition::new("bench-node", u32::from(core), now_ms(), bucket_ms);
                    let key = DialogKey {
                        partition: p,
                        call_id: format!("{core}-{calls}-bench@198.51.100.7"),
                        from_tag: format!("f{calls:x}"),
                        to_tag: format!("t{calls:x}"),
                    };
                    w.push(
                        at(now),
                        DialogMutation::Upsert(DialogRecord {
                            key: key.clone(),
                            state: vec![0x5a; 200],
                            updated_at_ms: now_ms(),
                        }),
                    );
                    open.push_back((now + hold, key));
                    calls += 1;
                }
                while open.front().is_some_and(|(t, _)| *t <= now) {
                    if let Some((_, key)) = open.pop_front() {
                        w.push(at(now), DialogMutation::Delete(key));
                    }
                }
                w.handle_timeout(at(now));
                std::thread::sleep(Duration::from_micros(500));
            }
            w.flush();
            calls
        }));
    }
    let calls: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let pushed = calls * 2;
    let done = |s: &sipring::store::cassandra::StatsSnapshot| {
        s.persisted + s.coalesced + s.dropped + s.failed
            - (s0.persisted + s0.coalesced + s0.dropped + s0.failed)
    };
    let wait_end = StdInstant::now() + Duration::from_secs(60);
    while done(&stats.snapshot()) < pushed && StdInstant::now() < wait_end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let s = stats.snapshot();
    let st = (thread_ticks(storage_thread) - st0) as f64 / hz;
    let jvm = jvm_stat
        .as_deref()
        .and_then(ticks)
        .map(|t| (t - jvm0) as f64 / hz);
    let persisted = s.persisted - s0.persisted;
    let requests = s.requests - s0.requests;
    let k = persisted.max(1) as f64 / 1000.0;
    println!(
        "mode={:?} rate={} cores={} secs={} calls={} mutations={} persisted={} ({:.0}/s) \
         requests={} mutations/request={:.1} dropped={} failed={} coalesced={} \
         storage_cpu_s={:.2} ({:.1} ms/1000 mut) cassandra_cpu_s={} ({} ms/1000 mut)",
        a.mode,
        a.rate,
        a.cores,
        a.secs,
        calls,
        pushed,
        persisted,
        persisted as f64 / elapsed,
        requests,
        persisted as f64 / requests.max(1) as f64,
        s.dropped - s0.dropped,
        s.failed - s0.failed,
        s.coalesced - s0.coalesced,
        st,
        st * 1000.0 / k,
        jvm.map_or("-".into(), |j| format!("{j:.2}")),
        jvm.map_or("-".into(), |j| format!("{:.1}", j * 1000.0 / k)),
    );
    store.shutdown(Duration::from_secs(5));
}
