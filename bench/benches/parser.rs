//! Parser benchmarks: sipring-parser against rsip, the same messages in the
//! same run (BENCHMARKS.md, "Parser").
//!
//! Per message of the corpus (bench/fixtures/parser):
//! - `a_index`: sipring's index only;
//! - `b_routing`: index plus what a proxy routes by (`Message::routing`);
//! - `c_views`: index plus every typed view;
//! - `rsip_parse`: rsip's parse (`SipMessage::try_from`: start line, URI,
//!   header lines into owned strings);
//! - `rsip_routing`: rsip's parse plus the same routing fields, typed;
//! - `rsip_views`: rsip's parse plus every typed header it offers.
//!
//! `cargo bench -p sipring-bench --bench parser`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
#[path = "parser/corpus.rs"]
mod corpus;
#[path = "parser/rsip_paths.rs"]
mod rsip_paths;

fn parser(c: &mut Criterion) {
    for (name, msg) in corpus::MESSAGES {
        // Both parsers must read every fixture, or the comparison is void.
        assert!(
            rsip_paths::views(msg) > 0 && corpus::every_view(msg) > 0,
            "{name}"
        );
        let mut g = c.benchmark_group(format!("parser/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("a_index", |b| b.iter(|| corpus::index_only(black_box(msg))));
        g.bench_function("b_routing", |b| b.iter(|| corpus::routing(black_box(msg))));
        g.bench_function("c_views", |b| b.iter(|| corpus::every_view(black_box(msg))));
        g.bench_function("rsip_parse", |b| {
            b.iter(|| rsip_paths::parse(black_box(msg)))
        });
        g.bench_function("rsip_routing", |b| {
            b.iter(|| rsip_paths::routing(black_box(msg)))
        });
        g.bench_function("rsip_views", |b| {
            b.iter(|| rsip_paths::views(black_box(msg)))
        });
        g.finish();
    }
}

criterion_group!(benches, parser);
criterion_main!(benches);
