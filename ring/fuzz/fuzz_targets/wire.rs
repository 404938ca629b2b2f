//! Fuzz target `wire`: the ring's datagram decoder and the node that
//! handles datagrams. The checks live in `../check.rs`, shared with the
//! corpus replay test (ring/tests/fuzz_corpus.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
