//! Fuzz target: every parse entry point, every typed view, the writer with
//! no edits (must round-trip) and with a proxy's edits (must re-parse).
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
