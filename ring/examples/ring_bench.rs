//! The ring's numbers for BENCHMARKS.md, from the deterministic simulator:
//! cold-lookup hops against ring size, and reconvergence after mass
//! crashes. Virtual time, so the figures do not depend on the machine.
//!
//! ```sh
//! cargo run --release -p sipring-ring --example ring_bench            # everything
//! cargo run --release -p sipring-ring --example ring_bench -- hops
//! cargo run --release -p sipring-ring --example ring_bench -- crashes
//! ```
//! `SEEDS=n` (default 3 for hops, 5 for crashes) sets how many seeded runs
//! each row aggregates; `CRASH_N` (default 1000) the ring size of the crash
//! runs.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use sipring_ring::sim::{Action, Sim, SimConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let cfg = SimConfig::default();
    println!(
        "config: r = {}, stabilize every {:?}, fix_fingers every {:?}, check_predecessor every {:?}, \
         rpc timeout {:?} x {} tries, latency {:?}..{:?} one way, no loss",
        cfg.node.successors,
        cfg.node.stabilize_interval,
        cfg.node.fix_fingers_interval,
        cfg.node.check_predecessor_interval,
        cfg.node.rpc_timeout,
        cfg.node.rpc_retries + 1,
        cfg.latency_min,
        cfg.latency_max
    );
    if what.is_empty() || what == "hops" {
        hops(env("SEEDS", 3));
    }
    if what.is_empty() || what == "crashes" {
        crashes(env("SEEDS", 5), env("CRASH_N", 1000));
    }
}

/// Mean and p99 hops of cold lookups (the node's iterative lookup, no
/// cache) from random members to random keys, in converged rings.
fn hops(seeds: usize) {
    println!();
    println!("| N | lookups | mean hops | p50 | p99 | max | target 1/2 log2 N + 1 | correct |");
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|");
    let mut n = 16;
    while n <= 4096 {
        let mut records = Vec::new();
        for seed in 0..seeds as u64 {
            let mut sim = Sim::new(SimConfig {
                seed: 1000 + seed,
                ..SimConfig::default()
            });
            if let Err(e) = sim.build_ring(n) {
                println!("N = {n}, seed {}: ring did not converge: {e}", 1000 + seed);
                return;
            }
            let report = sim.lookups(
                10_000 / seeds,
                Duration::from_micros(200),
                Duration::from_secs(30),
            );
            records.extend(report.records);
        }
        let report = sipring_ring::sim::LookupReport {
            records,
            unfinished: 0,
        };
        let target = 0.5 * (n as f64).log2() + 1.0;
        println!(
            "| {n} | {} | {:.2} | {} | {} | {} | {:.1} | {:.2}% |",
            report.records.len(),
            report.mean_hops(),
            report.hops_quantile(0.5),
            report.hops_quantile(0.99),
            report.hops_quantile(1.0),
            target,
            100.0 * report.correct() as f64 / report.records.len() as f64
        );
        n *= 2;
    }
}

/// Crashes a fraction of a converged ring at once and measures how long
/// until (a) ownership is right again (every live member's predecessor,
/// successor and slice are the true ones), (b) every successor list is
/// whole, (c) every finger is right. A second run with the same seed (the
/// simulator is deterministic, so it is the same run) stops at (a) and
/// checks 1000 lookups from random members there.
fn crashes(seeds: usize, n: usize) {
    println!();
    println!(
        "| crashed | runs | (a) ownership correct: median / max rounds (s) | (b) successor lists whole: median / max rounds | (c) fingers right: median / max rounds | lookups correct at (a) | lookup hops at (a): mean / p99 |"
    );
    println!("|--:|--:|--:|--:|--:|--:|--:|");
    for pct in [1usize, 10, 25] {
        let (mut own, mut lists, mut fingers) = (Vec::new(), Vec::new(), Vec::new());
        let (mut correct, mut total, mut failed) = (0, 0, 0);
        let mut hops = Vec::new();
        for seed in 0..seeds as u64 {
            let seed = 2000 + seed;
            // Run 1: the three times.
            let Some((mut sim, crash_at)) = crashed_ring(seed, n, pct) else {
                return;
            };
            let round = sim.round();
            let rounds = |sim: &Sim| (sim.now() - crash_at).as_secs_f64() / round.as_secs_f64();
            let step = Duration::from_millis(10);
            if let Err(e) = sim.run_until_ok(round * 30, step, |s| s.check_ownership()) {
                println!("{pct}% seed {seed}: {e}");
                failed += 1;
                continue;
            }
            own.push(rounds(&sim));
            match sim.run_until_ok(round * 60, step, |s| s.check_successor_lists()) {
                Ok(_) => lists.push(rounds(&sim)),
                Err(e) => println!("{pct}% seed {seed}: successor lists: {e}"),
            }
            match sim.run_until_ok(round * 120, step * 10, |s| s.check_fingers()) {
                Ok(_) => fingers.push(rounds(&sim)),
                Err(e) => println!("{pct}% seed {seed}: fingers: {e}"),
            }
            // Run 2: lookups at (a).
            let Some((mut sim, _)) = crashed_ring(seed, n, pct) else {
                return;
            };
            let _ = sim.run_until_ok(round * 30, step, |s| s.check_ownership());
            let report = sim.lookups(1000, Duration::ZERO, Duration::from_secs(30));
            correct += report.correct();
            total += report.records.len();
            hops.extend(report.records);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        let round_s = SimConfig::default().node.stabilize_interval.as_secs_f64();
        let (om, ox) = (med(&mut own), max(&own));
        let hops = sipring_ring::sim::LookupReport {
            records: hops,
            unfinished: 0,
        };
        println!(
            "| {pct}% of {n} | {}{} | {:.2} / {:.2} ({:.2} / {:.2} s) | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}% ({correct}/{total}) | {:.2} / {} |",
            own.len(),
            if failed > 0 {
                format!(" ({failed} not converged in 30 rounds)")
            } else {
                String::new()
            },
            om,
            ox,
            om * round_s,
            ox * round_s,
            med(&mut lists),
            max(&lists),
            med(&mut fingers),
            max(&fingers),
            100.0 * correct as f64 / total.max(1) as f64,
            hops.mean_hops(),
            hops.hops_quantile(0.99),
        );
    }
}

/// A converged ring of `n` with `pct`% of its members just crashed, and the
/// time of the crash.
fn crashed_ring(seed: u64, n: usize, pct: usize) -> Option<(Sim, sipring_ring::Instant)> {
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    if let Err(e) = sim.build_ring(n) {
        println!("seed {seed}: ring did not converge: {e}");
        return None;
    }
    // A random phase against the members' timers.
    let jitter = Duration::from_millis(sim.rng().below(1000));
    sim.run_for(jitter);
    let live = sim.live_indices();
    let k = (live.len() * pct).div_ceil(100);
    let mut victims = live.clone();
    for i in 0..k {
        let j = i + sim.rng().index(victims.len() - i);
        victims.swap(i, j);
    }
    for &v in &victims[..k] {
        sim.act(Action::Crash(v));
    }
    let at = sim.now();
    Some((sim, at))
}
