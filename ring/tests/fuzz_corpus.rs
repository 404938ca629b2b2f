//! Replays the committed fuzz corpus (ring/fuzz/corpus/wire) through the
//! fuzz target's checks, so `cargo test` catches regressions the fuzzer
//! once found without libFuzzer or a nightly toolchain.

use std::path::PathBuf;

#[path = "../fuzz/check.rs"]
mod check;

#[test]
fn committed_corpus_passes_the_fuzz_checks() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the committed corpus") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check::check(&data));
        assert!(r.is_ok(), "{path:?} fails the fuzz checks");
        n += 1;
    }
    assert!(n >= 50, "only {n} inputs in {dir:?}");
}
