//! The benchmarked parser paths (a) index only and (b) index + routing
//! fields allocate nothing on any message of the benchmark corpus: a
//! counting global allocator proves it.

// A global allocator is an unsafe trait: this measurement is what the
// workspace's `unsafe_code = "deny"` leaves room for.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

#[path = "../benches/parser/corpus.rs"]
mod corpus;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce() -> usize) -> usize {
    let before = ALLOCS.with(Cell::get);
    std::hint::black_box(f());
    ALLOCS.with(Cell::get) - before
}

#[test]
fn index_and_routing_allocate_nothing_on_the_bench_corpus() {
    for (name, msg) in corpus::MESSAGES {
        assert_eq!(allocations(|| corpus::index_only(msg)), 0, "(a) {name}");
        assert_eq!(allocations(|| corpus::routing(msg)), 0, "(b) {name}");
        // (c) is not claimed allocation-free, but it is today: say so if
        // that changes.
        assert_eq!(allocations(|| corpus::every_view(msg)), 0, "(c) {name}");
    }
}
