//! Instruction counts of one routing-cache lookup and of its peers, for
//! `valgrind --tool=callgrind` (stable where wall-clock timings on the
//! shared 2-core machine are not). Each `lookups_*` function runs
//! `ROUNDS` lookups of random keys (1024 keys, cycled) in a cache holding
//! every slice of a ring of 64, 4096 or 65536 members; `lookups_baseline`
//! is the same loop without a lookup, to subtract.
//!
//! ```sh
//! cargo build --release -p sipring-ring --example cache_cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cache.cg \
//!     --toggle-collect='cache_cost::lookups_*' target/release/examples/cache_cost
//! callgrind_annotate /tmp/cache.cg | grep lookups_
//! ```
//! Ir per lookup = (the function's inclusive Ir - `lookups_baseline`'s) /
//! ROUNDS. Give one ring size as the argument (64, 4096, 65536) to count
//! one size per run.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::net::SocketAddr;

use sipring_ring::id::in_half_open;
use sipring_ring::sim::Rng;
use sipring_ring::{Answer, Config, Instant, Member, Node, RoutingCache, Slice};

const ROUNDS: usize = 1_000_000;

fn member(id: u64) -> Member {
    Member::new(
        id,
        SocketAddr::from(([10, 0, 0, 1], 7000)),
        (id % 16) as u16,
    )
}

#[inline(never)]
fn lookups_baseline(keys: &[u64]) -> u64 {
    let mut x = 0;
    for r in 0..ROUNDS {
        x ^= black_box(keys[r & 1023]);
    }
    x
}

#[inline(never)]
fn lookups_routing_cache(cache: &RoutingCache, keys: &[u64]) -> u64 {
    let mut x = 0;
    for r in 0..ROUNDS {
        x ^= cache.lookup(black_box(keys[r & 1023])).map_or(0, |m| m.id);
    }
    x
}

#[inline(never)]
fn lookups_btreemap(
    map: &BTreeMap<u64, (u64, Member)>,
    wrap: (Slice, Member),
    keys: &[u64],
) -> u64 {
    let mut x = 0;
    for r in 0..ROUNDS {
        let k = black_box(keys[r & 1023]);
        let m = match map.range(k..).next() {
            Some((&end, &(start, m))) if in_half_open(k, start, end) => Some(m),
            _ => wrap.0.contains(k).then_some(wrap.1),
        };
        x ^= m.map_or(0, |m| m.id);
    }
    x
}

#[inline(never)]
fn lookups_hashmap_per_key(map: &HashMap<u64, Member>, keys: &[u64]) -> u64 {
    let mut x = 0;
    for r in 0..ROUNDS {
        x ^= map.get(&black_box(keys[r & 1023])).map_or(0, |m| m.id);
    }
    x
}

#[inline(never)]
fn lookups_owner_core(keys: &[u64]) -> u64 {
    let mut x = 0;
    for r in 0..ROUNDS {
        x ^= ((u128::from(black_box(keys[r & 1023])) * 16) >> 64) as u64;
    }
    x
}

fn main() {
    let mut rng = Rng::new(7);
    let keys: Vec<u64> = (0..1024).map(|_| rng.next_u64()).collect();
    println!("baseline {}", lookups_baseline(&keys));
    let sizes: Vec<usize> = match std::env::args().nth(1) {
        Some(n) => vec![n.parse().expect("a ring size")],
        None => vec![64, 4096, 65536],
    };
    for n in sizes {
        let mut ids: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut node = Node::new(member(ids[0]), Config::default());
        node.create(Instant::ZERO);
        let mut cache = RoutingCache::with_capacity(node.snapshot(), n + 1);
        let mut slices = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let slice = Slice::new(ids[(i + ids.len() - 1) % ids.len()], id);
            slices.push((slice, member(id)));
            cache.insert(&Answer {
                key: id,
                owner: member(id),
                slice,
                hops: 1,
                version: node.version(),
            });
        }
        let btree: BTreeMap<u64, (u64, Member)> =
            slices.iter().map(|(s, m)| (s.end, (s.start, *m))).collect();
        let wrap = *slices
            .iter()
            .find(|(s, _)| s.start >= s.end)
            .expect("one slice wraps");
        let per_key: HashMap<u64, Member> = keys
            .iter()
            .map(|&k| (k, cache.lookup(k).expect("hit")))
            .collect();
        println!(
            "n={n}: {} {} {} {}",
            lookups_routing_cache(&cache, &keys),
            lookups_btreemap(&btree, wrap, &keys),
            lookups_hashmap_per_key(&per_key, &keys),
            lookups_owner_core(&keys)
        );
    }
}
