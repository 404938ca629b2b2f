//! Proves the zero-allocation claims with a counting global allocator:
//! indexing a message (up to 32 headers), reading what a proxy routes by,
//! iterating every value of every typed view, and writing with edits into a
//! warm output buffer allocate nothing.

// A global allocator is an unsafe trait: this measurement is what the
// workspace's `unsafe_code = "deny"` leaves room for (the parser crate
// itself is `forbid(unsafe_code)`).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sipring_parser::{ContactValue, Edit, HeaderKind, Message};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

fn message_with_headers(n: usize) -> Vec<u8> {
    let mut m = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.4>;q=0.5;expires=60\r\n\
Supported: path, gruu\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"a\", nonce=\"n\", uri=\"sip:b\", response=\"r\"\r\n\
Content-Type: application/sdp\r\n"
        .to_vec();
    let mut i = 0;
    while m.split(|&b| b == b'\n').count() - 2 < n {
        m.extend_from_slice(format!("X-Filler-{i}: value {i}\r\n").as_bytes());
        i += 1;
    }
    m.extend_from_slice(b"Content-Length: 4\r\n\r\nv=0\n");
    m
}

#[test]
fn index_and_routing_do_not_allocate() {
    let msg = message_with_headers(31); // + Content-Length = 32 headers
    let n = allocations(|| {
        let m = Message::parse(&msg).unwrap();
        assert_eq!(m.header_count(), 32);
        let r = m.routing().unwrap();
        assert_eq!(r.max_forwards, Some(70));
        let _ = r.route.unwrap().uri().unwrap();
        let _ = m.request_uri().unwrap();
    });
    assert_eq!(n, 0, "index + routing allocated");
}

#[test]
fn every_view_and_iteration_does_not_allocate() {
    let msg = message_with_headers(20);
    let n = allocations(|| {
        let m = Message::parse(&msg).unwrap();
        let mut count = 0;
        for v in m.vias() {
            count += v.unwrap().params().count();
        }
        for r in m.routes() {
            count += usize::from(r.unwrap().uri().unwrap().as_sip().unwrap().lr());
        }
        for c in m.contacts() {
            if let ContactValue::Addr(c) = c.unwrap() {
                count += usize::from(c.q.unwrap());
            }
        }
        count += m.supported().count() + m.proxy_require().count();
        for a in m.proxy_authorizations() {
            count += a.unwrap().digest().unwrap().username.unwrap().len();
        }
        count += m.from().unwrap().display_name.unwrap().unescaped().count();
        count += m.to().unwrap().uri().unwrap().raw().len();
        count += m.content_type().unwrap().unwrap().subtype.len();
        count += m.values(HeaderKind::Other).count();
        count += m.headers().filter(|h| h.kind == HeaderKind::Other).count();
        assert!(count > 0);
    });
    assert_eq!(n, 0, "views allocated");
}

#[test]
fn writing_into_a_warm_buffer_does_not_allocate() {
    let msg = message_with_headers(20);
    let m = Message::parse(&msg).unwrap();
    let mut out = Vec::with_capacity(4096);
    let edits = [
        Edit::PrependVia(b"SIP/2.0/UDP proxy.example.com:5061;branch=z9hG4bKabc"),
        Edit::SetViaReceived {
            received: Some(b"192.0.2.9"),
            rport: Some(5062),
        },
        Edit::PrependRecordRoute(b"<sip:proxy.example.com:5061;lr>"),
        Edit::RemoveTopRoute,
        Edit::DecrementMaxForwards,
    ];
    let n = allocations(|| {
        for _ in 0..10 {
            out.clear();
            m.write(&edits, &mut out);
        }
    });
    assert_eq!(n, 0, "writer allocated");
    assert!(Message::parse(&out).is_ok());
}
