//! What the `wire` fuzz target checks for one input (shared with the
//! corpus replay test, which includes this file by path).
//!
//! 1. `Envelope::decode` never panics; whatever it accepts re-encodes to
//!    the very same bytes (the format is canonical), and
//!    `peek_destination` agrees with it.
//! 2. A joined node handles the input as one datagram without panicking,
//!    and keeps answering a ping afterwards.
//! 3. The input cut into length-prefixed datagrams (`[len u8][bytes]...`)
//!    is fed to one node in turn, with virtual time advancing and timers
//!    firing between them: sequences of messages reach deeper states.

use std::net::SocketAddr;
use std::time::Duration;

use sipring_ring::wire::{Body, Envelope, peek_destination};
use sipring_ring::{Config, Instant, Member, Node};

fn node(now: Instant) -> Node {
    let me = Member::new(
        0x8000_0000_0000_0000,
        SocketAddr::from(([127, 0, 0, 1], 7000)),
        0,
    );
    let mut n = Node::new(me, Config::default());
    n.create(now);
    n
}

fn drain(n: &mut Node, buf: &mut Vec<u8>) {
    while let Some(t) = n.poll_send(buf) {
        assert_eq!(t.len, buf.len());
        // Everything the node sends is a valid message.
        assert!(
            Envelope::decode(buf).is_ok(),
            "the node sent an undecodable datagram"
        );
    }
    while n.poll_event().is_some() {}
}

/// The source address the datagram claims (so the node does not drop it
/// for a mismatch), or a fixed one.
fn source(data: &[u8]) -> SocketAddr {
    match Envelope::decode(data) {
        Ok(env) => env.from.addr,
        Err(_) => SocketAddr::from(([127, 0, 0, 2], 7000)),
    }
}

pub(crate) fn check(data: &[u8]) {
    // 1. The decoder.
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.to_vec(), data, "decode/encode is not the identity");
        assert_eq!(peek_destination(data), Ok(env.to));
    }

    // 2. One datagram to a joined node.
    let mut buf = Vec::new();
    let mut now = Instant::from_millis(1_000);
    let mut n = node(now);
    drain(&mut n, &mut buf);
    let _ = n.handle(now, source(data), data);
    drain(&mut n, &mut buf);
    let pinger = Member::new(1, SocketAddr::from(([127, 0, 0, 3], 7000)), 0);
    let ping = Envelope {
        token: 42,
        from: pinger,
        to: None,
        body: Body::Ping,
    };
    n.handle(now, pinger.addr, &ping.to_vec())
        .expect("a valid ping");
    let mut answered = false;
    while n.poll_send(&mut buf).is_some() {
        let env = Envelope::decode(&buf).expect("a valid reply");
        answered |= env.token == 42 && matches!(env.body, Body::Pong | Body::NotMember);
    }
    assert!(answered, "the node stopped answering pings");

    // 3. A sequence of datagrams to one node, timers in between.
    let mut n = node(now);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (dgram, tail) = tail.split_at(len);
        rest = tail;
        let _ = n.handle(now, source(dgram), dgram);
        drain(&mut n, &mut buf);
        now += Duration::from_millis(97);
        if n.poll_timeout().is_some_and(|t| t <= now) {
            n.handle_timeout(now);
            drain(&mut n, &mut buf);
        }
    }
    // Run the timers out: retransmissions and failure handling must not panic.
    for _ in 0..8 {
        match n.poll_timeout() {
            Some(t) => {
                now = now.max(t);
                n.handle_timeout(now);
                drain(&mut n, &mut buf);
            }
            None => break,
        }
    }
}
