//! The per-core routing cache's lookup (BENCHMARKS.md, "Chord ring"),
//! against peers measured in the same run:
//! - `owner_core`: the proxy's single-node rule, one multiply and shift
//!   (the floor: no table at all);
//! - `btreemap`: the same slices in a `BTreeMap` keyed by slice end (the
//!   obvious std container for "first end >= key");
//! - `hashmap_per_key`: a `HashMap` of key -> owner (caching each key's
//!   answer instead of its slice; hits only).
//!
//! Each lookup is of a key drawn at random (1024 keys, cycled), in a cache
//! holding the slices of a ring of 64, 4096 or 65536 members; every lookup
//! hits.
//!
//! `cargo bench -p sipring-bench --bench ring_cache`

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use sipring_ring::id::in_half_open;
use sipring_ring::sim::Rng;
use sipring_ring::{Answer, Config, Instant, Member, Node, RoutingCache, Slice};

fn member(id: u64) -> Member {
    Member::new(
        id,
        SocketAddr::from(([10, 0, 0, 1], 7000)),
        (id % 16) as u16,
    )
}

/// A cache over a ring of `n` random members, every slice cached.
fn full_cache(n: usize, rng: &mut Rng) -> (RoutingCache, Vec<(Slice, Member)>) {
    let mut ids: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut node = Node::new(member(ids[0]), Config::default());
    node.create(Instant::ZERO);
    let mut cache = RoutingCache::with_capacity(node.snapshot(), n + 1);
    let mut slices = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let prev = ids[(i + ids.len() - 1) % ids.len()];
        let slice = Slice::new(prev, id);
        slices.push((slice, member(id)));
        assert!(cache.insert(&Answer {
            key: id,
            owner: member(id),
            slice,
            hops: 1,
            version: node.version(),
        }));
    }
    (cache, slices)
}

fn owner_core(key: u64, cores: u16) -> u16 {
    u16::try_from((u128::from(key) * u128::from(cores)) >> 64).unwrap_or(0)
}

fn ring_cache(c: &mut Criterion) {
    let mut rng = Rng::new(7);
    let keys: Vec<u64> = (0..1024).map(|_| rng.next_u64()).collect();
    for n in [64usize, 4096, 65536] {
        let (cache, slices) = full_cache(n, &mut rng);
        for &k in &keys {
            assert!(cache.lookup(k).is_some(), "every key hits");
        }
        let btree: BTreeMap<u64, (u64, Member)> =
            slices.iter().map(|(s, m)| (s.end, (s.start, *m))).collect();
        let wrap = *slices.iter().find(|(s, _)| s.start >= s.end).unwrap();
        let per_key: HashMap<u64, Member> = keys
            .iter()
            .map(|&k| (k, cache.lookup(k).unwrap()))
            .collect();

        let mut g = c.benchmark_group(format!("ring_cache/{n}"));
        let mut i = 0usize;
        g.bench_function("routing_cache", |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                cache.lookup(black_box(keys[i]))
            })
        });
        g.bench_function("owner_core", |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                owner_core(black_box(keys[i]), 16)
            })
        });
        g.bench_function("btreemap", |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                let k = black_box(keys[i]);
                match btree.range(k..).next() {
                    Some((&end, &(start, m))) if in_half_open(k, start, end) => Some(m),
                    _ => wrap.0.contains(k).then_some(wrap.1),
                }
            })
        });
        g.bench_function("hashmap_per_key", |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                per_key.get(&black_box(keys[i])).copied()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, ring_cache);
criterion_main!(benches);
