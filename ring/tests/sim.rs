//! The ring under the deterministic simulator: a thousand members with
//! churn, mass crashes, graceful leaves, loss and a partition, checked
//! against the oracle (the sorted live members).
//!
//! Each test draws a fresh seed (or takes `SIPRING_RING_SEED`), prints it,
//! and names it in every failure: `SIPRING_RING_SEED=<seed> cargo test -p
//! sipring-ring --test sim <test>` replays the failing run event for event.

use std::time::Duration;

use sipring_ring::sim::{Action, Sim, SimConfig};

/// The seed of this run: `SIPRING_RING_SEED`, else a fresh one.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("SIPRING_RING_SEED") {
        Ok(s) => s.parse().expect("SIPRING_RING_SEED is a u64"),
        // RandomState is seeded from the OS: a different run every time.
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(test.as_bytes());
            h.finish()
        }
    };
    eprintln!(
        "{test}: seed {seed} (replay: SIPRING_RING_SEED={seed} cargo test -p sipring-ring --test sim {test})"
    );
    seed
}

/// Fails the test naming the seed that reproduces it.
fn check<T>(seed: u64, what: &str, r: Result<T, String>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed with seed {seed} (SIPRING_RING_SEED={seed}): {e}"),
    }
}

/// Every lookup from random members finds the oracle's owner, and every
/// key has exactly one owner.
fn all_lookups_correct(sim: &mut Sim, seed: u64, count: usize) -> f64 {
    let report = sim.lookups(count, Duration::from_micros(500), Duration::from_secs(20));
    let wrong = report.wrong();
    assert!(
        wrong.is_empty() && report.unfinished == 0,
        "seed {seed}: {} of {} lookups wrong or failed, {} unfinished; first: {:?}",
        wrong.len(),
        report.records.len(),
        report.unfinished,
        wrong.first()
    );
    for _ in 0..200 {
        let key = sim.rng().next_u64();
        assert_eq!(
            sim.owners_of(key),
            1,
            "seed {seed}: key {key:#x} has not exactly one owner"
        );
    }
    assert!(
        sim.violations().is_empty(),
        "seed {seed}: {:?}",
        &sim.violations()[..1]
    );
    report.mean_hops()
}

/// Random distinct members of `from`, `n` of them.
fn pick(sim: &mut Sim, from: &[usize], n: usize) -> Vec<usize> {
    let mut v = from.to_vec();
    for i in 0..n.min(v.len()) {
        let j = i + sim.rng().index(v.len() - i);
        v.swap(i, j);
    }
    v.truncate(n);
    v
}

#[test]
fn thousand_members_with_churn() {
    let seed = seed("thousand_members_with_churn");
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let round = sim.round();
    check(seed, "building the ring", sim.build_ring(1000));
    let hops = all_lookups_correct(&mut sim, seed, 500);
    // Cold lookups: mean hops within 1/2 log2 N + 1 (about 6 here).
    assert!(
        hops <= 0.5 * 1000f64.log2() + 1.0,
        "seed {seed}: mean hops {hops}"
    );

    // Churn: for 15 rounds, every round 1% of the members crash, 1% leave
    // gracefully, and as many join (new proxies, and crashed ones
    // restarting with their old identity), all at random times.
    let mut crashed: Vec<usize> = Vec::new();
    let mut next_proxy = 10_000;
    for _ in 0..15 {
        let live = sim.live_indices();
        let victims = pick(&mut sim, &live, 20);
        let start = sim.now();
        for (k, &v) in victims.iter().enumerate() {
            let at = start + round.mul_f64(sim.rng().index(1000) as f64 / 1000.0);
            let action = if k % 2 == 0 {
                Action::Crash(v)
            } else {
                Action::Leave(v)
            };
            sim.schedule(at, action);
            if k % 2 == 0 {
                crashed.push(v);
            }
        }
        for k in 0..20 {
            let at = start + round.mul_f64(sim.rng().index(1000) as f64 / 1000.0);
            let joiner = if k % 4 == 0 && !crashed.is_empty() {
                // A crashed member comes back, same identifier and address.
                let c = crashed.remove(0);
                if sim.members()[c].alive {
                    continue;
                }
                sim.restart(c);
                c
            } else {
                next_proxy += 1;
                sim.add_member(next_proxy, 0)
            };
            sim.schedule(at, Action::Join(joiner));
        }
        sim.run_for(round);
    }
    // Quiet again: every join and leave completes, ownership converges,
    // then every lookup is right.
    let took = check(
        seed,
        "reconverging after churn",
        sim.run_until_ok(round * 30, round / 10, |s| {
            s.check_settled()?;
            s.check_ownership()
        }),
    );
    eprintln!(
        "seed {seed}: {} live members, ownership converged {:.1} rounds after churn stopped",
        sim.live_indices().len(),
        took.as_secs_f64() / round.as_secs_f64()
    );
    all_lookups_correct(&mut sim, seed, 500);
}

#[test]
fn ten_percent_crash_reconverges_in_three_rounds() {
    let seed = seed("ten_percent_crash_reconverges_in_three_rounds");
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let round = sim.round();
    check(seed, "building the ring", sim.build_ring(300));
    let live = sim.live_indices();
    for v in pick(&mut sim, &live, 30) {
        sim.act(Action::Crash(v));
    }
    let took = check(
        seed,
        "reconverging after 10% crashes",
        sim.run_until_ok(round * 3, Duration::from_millis(10), |s| {
            s.check_ownership()
        }),
    );
    eprintln!("seed {seed}: 10% of 300 crashed, converged in {took:?}");
    all_lookups_correct(&mut sim, seed, 300);
    // Later the successor lists and fingers are whole again too.
    check(
        seed,
        "successor lists",
        sim.run_until_ok(round * 20, round / 10, |s| s.check_successor_lists()),
    );
    check(
        seed,
        "fingers",
        sim.run_until_ok(round * 60, round / 2, |s| s.check_fingers()),
    );
}

#[test]
fn a_quarter_crashing_at_once_loses_no_key() {
    let seed = seed("a_quarter_crashing_at_once_loses_no_key");
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let round = sim.round();
    check(seed, "building the ring", sim.build_ring(200));
    let live = sim.live_indices();
    for v in pick(&mut sim, &live, 50) {
        sim.act(Action::Crash(v));
    }
    check(
        seed,
        "reconverging after 25% crashes",
        sim.run_until_ok(round * 10, round / 10, |s| s.check_ownership()),
    );
    all_lookups_correct(&mut sim, seed, 200);
}

#[test]
fn graceful_leaves_hand_every_slice_over() {
    let seed = seed("graceful_leaves_hand_every_slice_over");
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let round = sim.round();
    check(seed, "building the ring", sim.build_ring(200));
    let live = sim.live_indices();
    for v in pick(&mut sim, &live, 20) {
        sim.act(Action::Leave(v));
    }
    // Leaves need no failure detection: a round is plenty.
    check(
        seed,
        "reconverging after leaves",
        sim.run_until_ok(round, Duration::from_millis(10), |s| s.check_ownership()),
    );
    all_lookups_correct(&mut sim, seed, 200);
}

#[test]
fn lossy_network() {
    let seed = seed("lossy_network");
    let mut sim = Sim::new(SimConfig {
        seed,
        loss: 0.01,
        ..SimConfig::default()
    });
    let round = sim.round();
    check(seed, "building the ring under 1% loss", sim.build_ring(200));
    let live = sim.live_indices();
    for v in pick(&mut sim, &live, 10) {
        sim.act(Action::Crash(v));
    }
    check(
        seed,
        "reconverging under 1% loss",
        sim.run_until_ok(round * 10, round / 10, |s| s.check_ownership()),
    );
    // Under loss a lookup may need retransmissions, and a member whose
    // three tries are all lost is taken for dead for a round (Chord has
    // no way to tell): a rare lookup may fail or name the next member.
    let report = sim.lookups(300, Duration::from_micros(500), Duration::from_secs(20));
    let bad = report.records.len() - report.correct();
    assert!(
        bad * 100 <= report.records.len(),
        "seed {seed}: {bad} of 300 lookups failed or wrong"
    );
    // Once the loss stops, every lookup is right again.
    sim.set_loss(0.0);
    check(
        seed,
        "reconverging after the loss stopped",
        sim.run_until_ok(round * 10, round / 10, |s| s.check_ownership()),
    );
    all_lookups_correct(&mut sim, seed, 300);
}

#[test]
fn a_healed_partition_merges_into_one_ring() {
    let seed = seed("a_healed_partition_merges_into_one_ring");
    let mut sim = Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    let round = sim.round();
    let members = check(seed, "building the ring", sim.build_ring(100));
    // Cut the ring in two random halves for 10 rounds: each side declares
    // the other dead and forms its own ring.
    let side: Vec<u32> = members
        .iter()
        .map(|_| (sim.rng().next_u64() & 1) as u32)
        .collect();
    sim.partition(|i| side[i]);
    sim.run_for(round * 10);
    sim.heal();
    let took = check(
        seed,
        "merging after the partition healed",
        sim.run_until_ok(round * 40, round / 10, |s| s.check_ownership()),
    );
    eprintln!(
        "seed {seed}: merged {:.1} rounds after the partition healed",
        took.as_secs_f64() / round.as_secs_f64()
    );
    all_lookups_correct(&mut sim, seed, 200);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let mut sim = Sim::new(SimConfig {
            seed,
            loss: 0.01,
            ..SimConfig::default()
        });
        sim.build_ring(50).unwrap();
        let live = sim.live_indices();
        sim.act(Action::Crash(live[3]));
        sim.run_for(Duration::from_secs(5));
        let state: Vec<_> = sim
            .live_indices()
            .iter()
            .map(|&i| {
                (
                    sim.node(i).successors().to_vec(),
                    sim.node(i).slice(),
                    sim.node(i).version(),
                )
            })
            .collect();
        (sim.net_stats(), sim.now(), state)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}
