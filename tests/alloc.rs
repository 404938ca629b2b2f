//! The shell's packet path allocates nothing per message: a counting global
//! allocator counts allocations made on shell threads while they are inside
//! the synchronous packet path (socket read -> engine -> sends), under UDP
//! load with hand-offs between two cores. The engine is the test fixture
//! (tests/support), which itself allocates nothing for OPTIONS and forwards.
//!
//! Waiting for I/O (glommio's io_uring operations, its timers) happens outside
//! the packet path, once per wake-up rather than per message; the test prints
//! the process-wide count per message for information but asserts only the
//! packet path.

// A global allocator is an unsafe trait: this measurement is what the
// workspace's `unsafe_code = "deny"` leaves room for.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use support::*;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static IN_PATH: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            TOTAL.fetch_add(1, Relaxed);
            if sipring::shell::in_packet_path() {
                IN_PATH.fetch_add(1, Relaxed);
            }
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            TOTAL.fetch_add(1, Relaxed);
            if sipring::shell::in_packet_path() {
                IN_PATH.fetch_add(1, Relaxed);
            }
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn the_packet_path_allocates_nothing_per_message() {
    let cores = 2;
    let sink = udp_client();
    let shell = start(
        &test_config(cores),
        Some(udp_peer(sink.local_addr().unwrap())),
    );
    let public = shell.addrs()[0].public_udp.unwrap();
    let clients: Vec<_> = (0..8).map(|_| udp_client()).collect();
    let msgs: Vec<(Vec<u8>, Vec<u8>)> = (0..16)
        .map(|i| {
            (
                options(&format!("alloc-{i}@test"), ""),
                message(&format!("alloc-m-{i}@test"), "x"),
            )
        })
        .collect();
    let mut buf = vec![0u8; 65536];
    let mut round = |count: bool| {
        COUNTING.store(count, Relaxed);
        for r in 0..50 {
            for (i, c) in clients.iter().enumerate() {
                let (opt, msg) = &msgs[(r + i) % msgs.len()];
                c.send_to(opt, public).unwrap();
                c.send_to(msg, public).unwrap();
            }
            for c in &clients {
                c.recv_from(&mut buf).expect("OPTIONS answered");
            }
            for _ in &clients {
                sink.recv_from(&mut buf).expect("MESSAGE forwarded");
            }
        }
        COUNTING.store(false, Relaxed);
    };
    round(false); // warm-up: pools, queues and buffers reach their size
    round(true);
    let messages = 50 * clients.len() as u64 * 2;
    let in_path = IN_PATH.load(Relaxed);
    let total = TOTAL.load(Relaxed);
    eprintln!(
        "{messages} messages in: {in_path} allocations in the packet path, \
         {total} in the whole process ({:.2}/message, waits included)",
        total as f64 / messages as f64
    );
    let handoffs: u64 = shell.counters().iter().map(|c| c.handoffs_out()).sum();
    assert!(handoffs > 0, "the load included hand-offs");
    assert_eq!(in_path, 0, "allocations in the packet path");
    shell.stop();
    shell.join().unwrap();
    std::thread::sleep(Duration::from_millis(10));
}
