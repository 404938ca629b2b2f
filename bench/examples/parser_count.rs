//! Runs one parser benchmark path N times over one corpus message, for
//! instruction counts that the machine's load cannot disturb:
//!
//! ```text
//! cargo build --release -p sipring-bench --example parser_count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/parser_count PATH MESSAGE N
//! ```
//!
//! Instructions per message = (Ir at N - Ir at 0) / N. PATH is one of
//! a_index, b_routing, c_views, rsip_parse, rsip_routing, rsip_views;
//! MESSAGE one of the corpus names (benches/parser/corpus.rs).

use std::hint::black_box;

#[path = "../benches/parser/corpus.rs"]
mod corpus;
#[path = "../benches/parser/rsip_paths.rs"]
mod rsip_paths;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, message, n] = args.as_slice() else {
        eprintln!("usage: parser_count PATH MESSAGE N");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N");
    let msg = corpus::MESSAGES
        .iter()
        .find(|(name, _)| name == message)
        .map(|(_, m)| *m)
        .expect("a corpus message name");
    let f: fn(&[u8]) -> usize = match path.as_str() {
        "a_index" => corpus::index_only,
        "b_routing" => corpus::routing,
        "c_views" => corpus::every_view,
        "rsip_parse" => rsip_paths::parse,
        "rsip_routing" => rsip_paths::routing,
        "rsip_views" => rsip_paths::views,
        _ => panic!("unknown path {path}"),
    };
    let mut sum = 0usize;
    for _ in 0..n {
        sum = sum.wrapping_add(f(black_box(msg)));
    }
    black_box(sum);
}
