//! Unit tests of the node: a few members wired together by hand, virtual
//! time, zero latency. Whole-ring behaviour is tested through the
//! simulator (`ring/tests/sim.rs`).

use std::net::SocketAddr;

use super::*;

fn member(id: u64, port: u16) -> Member {
    Member::new(id, SocketAddr::from(([127, 0, 0, 1], port)), 0)
}

/// Nodes on a perfect network: every datagram arrives at once, unless
/// `drop_to` says otherwise.
struct Net {
    nodes: Vec<Node>,
    now: Instant,
    events: Vec<Vec<Event>>,
    drop_to: Vec<SocketAddr>,
}

impl Net {
    fn new(ids: &[u64]) -> Self {
        let nodes: Vec<Node> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| Node::new(member(id, 7000 + i as u16), Config::default()))
            .collect();
        let events = nodes.iter().map(|_| Vec::new()).collect();
        Net {
            nodes,
            now: Instant::from_millis(1000),
            events,
            drop_to: Vec::new(),
        }
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].me().addr
    }

    /// Delivers datagrams until none is left, collecting events.
    fn pump(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[i].poll_event() {
                    self.events[i].push(ev);
                }
                while let Some(t) = self.nodes[i].poll_send(&mut buf) {
                    moved = true;
                    if self.drop_to.contains(&t.dest) {
                        continue;
                    }
                    let from = self.nodes[i].me().addr;
                    if let Some(j) = self.nodes.iter().position(|n| n.me().addr == t.dest) {
                        let now = self.now;
                        self.nodes[j].handle(now, from, &buf[..t.len]).unwrap();
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances virtual time timer by timer for `d`.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self.nodes.iter_mut().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in &mut self.nodes {
                        if n.poll_timeout().is_some_and(|t| t <= now) {
                            n.handle_timeout(now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn slices(&self, i: usize) -> Vec<(bool, Slice)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Acquired { slice, .. } => Some((true, *slice)),
                Event::Released { slice, .. } => Some((false, *slice)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_lone_member_owns_every_key_and_answers_lookups_itself() {
    let mut net = Net::new(&[1000]);
    assert_eq!(net.nodes[0].poll_timeout(), None);
    let now = net.now;
    net.nodes[0].create(now);
    assert!(net.nodes[0].is_joined());
    assert!(net.nodes[0].poll_timeout().is_some());
    let id = net.nodes[0].lookup(now, 5);
    net.pump();
    assert!(matches!(net.events[0][0], Event::Joined));
    assert_eq!(net.slices(0), vec![(true, Slice::whole(1000))]);
    let me = net.nodes[0].me();
    let answer = net.events[0].iter().find_map(|e| match e {
        Event::Lookup { id: i, result, .. } if *i == id => Some(*result),
        _ => None,
    });
    let a = answer.unwrap().unwrap();
    assert_eq!((a.owner, a.hops), (me, 0));
    assert!(net.nodes[0].owns(0) && net.nodes[0].owns(u64::MAX));
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::RoutingChanged(_)))
    );
}

#[test]
fn a_joiner_takes_its_slice_from_its_successor() {
    let mut net = Net::new(&[1000, 5000, 3000]);
    let now = net.now;
    net.nodes[0].create(now);
    let a0 = net.addr(0);
    net.nodes[1].join(now, a0);
    net.run(Duration::from_secs(3));
    assert!(net.nodes[1].is_joined());
    assert_eq!(net.nodes[0].slice(), Some(Slice::new(5000, 1000)));
    assert_eq!(net.nodes[1].slice(), Some(Slice::new(1000, 5000)));
    // The successor released exactly what the joiner acquired.
    assert_eq!(
        net.slices(0),
        vec![(true, Slice::whole(1000)), (false, Slice::new(1000, 5000))]
    );
    assert_eq!(net.slices(1), vec![(true, Slice::new(1000, 5000))]);
    let a1 = net.addr(1);
    net.nodes[2].join(net.now, a1);
    net.run(Duration::from_secs(3));
    let members: Vec<Member> = net.nodes.iter().map(|n| n.me()).collect();
    let m = |i: usize| members[i];
    assert_eq!(net.nodes[0].successor(), m(2));
    assert_eq!(net.nodes[2].successor(), m(1));
    assert_eq!(net.nodes[1].successor(), m(0));
    assert_eq!(net.nodes[1].predecessor(), Some(m(2)));
    assert_eq!(net.nodes[1].slice(), Some(Slice::new(3000, 5000)));
    assert_eq!(net.nodes[2].slice(), Some(Slice::new(1000, 3000)));
    assert_eq!(net.nodes[0].successors(), &[m(2), m(1)]);
    assert_eq!(net.slices(1).last(), Some(&(false, Slice::new(1000, 3000))));
    // Every node answers every key's owner.
    for i in 0..3 {
        for (key, owner) in [
            (1500, 2),
            (3000, 2),
            (3001, 1),
            (5001, 0),
            (999, 0),
            (1000, 0),
        ] {
            let now = net.now;
            let id = net.nodes[i].lookup(now, key);
            net.pump();
            let got = net.events[i].iter().rev().find_map(|e| match e {
                Event::Lookup { id: x, result, .. } if *x == id => Some(*result),
                _ => None,
            });
            assert_eq!(got.unwrap().unwrap().owner, m(owner), "key {key} from {i}");
        }
    }
}

#[test]
fn a_graceful_leave_hands_the_slice_to_the_successor() {
    let mut net = Net::new(&[1000, 2000, 3000]);
    let now = net.now;
    net.nodes[0].create(now);
    let a0 = net.addr(0);
    net.nodes[1].join(now, a0);
    net.nodes[2].join(now, a0);
    net.run(Duration::from_secs(5));
    assert_eq!(net.nodes[2].slice(), Some(Slice::new(2000, 3000)));
    let now = net.now;
    net.nodes[1].leave(now);
    assert_eq!(net.nodes[1].state(), State::Leaving);
    net.pump();
    assert_eq!(net.nodes[1].state(), State::Left);
    assert!(net.events[1].iter().any(|e| matches!(e, Event::Left)));
    assert_eq!(net.slices(1).last(), Some(&(false, Slice::new(1000, 2000))));
    let m0 = net.nodes[0].me();
    let m1 = net.nodes[1].me();
    assert_eq!(net.nodes[2].slice(), Some(Slice::new(1000, 3000)));
    assert_eq!(net.nodes[2].predecessor(), Some(m0));
    let handed = net.events[2].iter().any(
        |e| matches!(e, Event::Acquired { slice, from: Some(f) } if *slice == Slice::new(1000, 2000) && *f == m1),
    );
    assert!(handed, "{:?}", net.events[2]);
    assert_eq!(net.nodes[0].successor(), net.nodes[2].me());
    // A left node answers NotMember, and others route around it.
    net.run(Duration::from_secs(3));
    assert!(!net.nodes[0].successors().contains(&m1));
}

#[test]
fn a_silent_successor_is_declared_dead_after_the_retries() {
    let mut net = Net::new(&[1000, 2000, 3000]);
    let now = net.now;
    net.nodes[0].create(now);
    let a0 = net.addr(0);
    net.nodes[1].join(now, a0);
    net.nodes[2].join(now, a0);
    net.run(Duration::from_secs(5));
    let m2 = net.nodes[2].me();
    assert_eq!(net.nodes[1].successor(), m2);
    // Member 2 crashes: nothing reaches it any more, and it stays quiet.
    let a2 = net.addr(2);
    net.drop_to.push(a2);
    let crashed = net.nodes.remove(2);
    net.events.remove(2);
    drop(crashed);
    net.run(Duration::from_secs(3));
    assert_eq!(net.nodes[1].successor(), net.nodes[0].me());
    assert_eq!(net.nodes[0].predecessor(), Some(net.nodes[1].me()));
    assert_eq!(net.nodes[0].slice(), Some(Slice::new(2000, 1000)));
    assert!(net.nodes[1].stats().retransmits >= 1);
    assert!(net.nodes[1].stats().declared_dead >= 1);
    // Member 0 gained the dead member's slice.
    assert!(net.slices(0).contains(&(true, Slice::new(2000, 3000))));
}

#[test]
fn malformed_and_misaddressed_datagrams_are_dropped_and_counted() {
    let mut net = Net::new(&[1000, 2000]);
    let now = net.now;
    net.nodes[0].create(now);
    let a1 = net.addr(1);
    let r = net.nodes[0].handle(now, a1, b"INVITE sip:x SIP/2.0\r\n");
    assert_eq!(r, Err(RecvError::Malformed(WireError::BadMagic)));
    // A sender claiming another address than its source.
    let ping = Envelope {
        token: 1,
        from: net.nodes[1].me(),
        to: None,
        body: Body::Ping,
    }
    .to_vec();
    let elsewhere = SocketAddr::from(([127, 0, 0, 9], 1));
    assert_eq!(
        net.nodes[0].handle(now, elsewhere, &ping),
        Err(RecvError::SourceMismatch)
    );
    assert_eq!(net.nodes[0].stats().malformed, 1);
    assert_eq!(net.nodes[0].stats().source_mismatch, 1);
    // The node still serves: the ping gets a pong.
    net.nodes[0].handle(now, a1, &ping).unwrap();
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    while let Some(t) = net.nodes[0].poll_send(&mut buf) {
        replies.push((t.dest, Envelope::decode(&buf).unwrap()));
    }
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, a1);
    assert_eq!((replies[0].1.token, &replies[0].1.body), (1, &Body::Pong));
    // A request for another member id at this address: NotMember.
    let mut misaddressed = Envelope::decode(&ping).unwrap();
    misaddressed.to = Some(Dest { id: 77, core: 0 });
    net.nodes[0]
        .handle(now, a1, &misaddressed.to_vec())
        .unwrap();
    net.nodes[0].poll_send(&mut buf).unwrap();
    assert_eq!(Envelope::decode(&buf).unwrap().body, Body::NotMember);
    // An unmatched reply is a stale reply, nothing more.
    let pong = Envelope {
        token: 999,
        from: net.nodes[1].me(),
        to: None,
        body: Body::Pong,
    };
    net.nodes[0].handle(now, a1, &pong.to_vec()).unwrap();
    assert_eq!(net.nodes[0].stats().stale_replies, 1);
}

#[test]
fn a_node_that_is_not_joined_answers_not_member() {
    let mut net = Net::new(&[1000, 2000]);
    let a1 = net.addr(1);
    let req = Envelope {
        token: 5,
        from: net.nodes[1].me(),
        to: None,
        body: Body::FindSuccessor { key: 3 },
    };
    let now = net.now;
    net.nodes[0].handle(now, a1, &req.to_vec()).unwrap();
    let mut buf = Vec::new();
    net.nodes[0].poll_send(&mut buf).unwrap();
    assert_eq!(Envelope::decode(&buf).unwrap().body, Body::NotMember);
    let id = net.nodes[0].lookup(now, 3);
    let ev = net.nodes[0].poll_event();
    assert!(
        matches!(ev, Some(Event::Lookup { id: x, result: Err(LookupError::NotJoined), .. }) if x == id),
        "{ev:?}"
    );
}

#[test]
fn a_taken_identifier_fails_the_join() {
    let mut net = Net::new(&[1000, 2000]);
    let now = net.now;
    net.nodes[0].create(now);
    let a0 = net.addr(0);
    net.nodes[1].join(now, a0);
    net.run(Duration::from_secs(2));
    // A third node with member 1's identifier at another address.
    let twin = Node::new(member(2000, 7999), Config::default());
    net.nodes.push(twin);
    net.events.push(Vec::new());
    net.nodes[2].join(net.now, a0);
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[2].state(), State::Idle);
    let m1 = net.nodes[1].me();
    assert!(
        net.events[2]
            .iter()
            .any(|e| matches!(e, Event::JoinFailed(JoinError::IdCollision(m)) if *m == m1)),
        "{:?}",
        net.events[2]
    );
}

#[test]
fn a_join_through_a_silent_address_is_retried() {
    let mut net = Net::new(&[1000]);
    let nowhere = SocketAddr::from(([127, 0, 0, 2], 9));
    let now = net.now;
    net.nodes[0].join(now, nowhere);
    net.run(Duration::from_secs(3));
    assert_eq!(net.nodes[0].state(), State::Joining);
    let failures = net.events[0]
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::JoinFailed(JoinError::Lookup(LookupError::Unreachable))
            )
        })
        .count();
    assert!(failures >= 2, "{:?}", net.events[0]);
    // Leaving while joining just stops.
    net.nodes[0].leave(net.now);
    assert_eq!(net.nodes[0].state(), State::Left);
    assert_eq!(net.nodes[0].poll_timeout(), None);
}

#[test]
fn snapshots_follow_the_routing_version() {
    let mut net = Net::new(&[1000, 2000]);
    let now = net.now;
    net.nodes[0].create(now);
    let a0 = net.addr(0);
    net.nodes[1].join(now, a0);
    net.run(Duration::from_secs(3));
    let last = net.events[0]
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::RoutingChanged(s) => Some(Arc::clone(s)),
            _ => None,
        })
        .unwrap();
    assert_eq!(last.version(), net.nodes[0].version());
    assert_eq!(last.slice(), net.nodes[0].slice());
    assert_eq!(last.successors(), &[net.nodes[1].me()]);
    // A quiet ring does not change its version.
    let v = net.nodes[0].version();
    net.run(Duration::from_secs(5));
    assert_eq!(net.nodes[0].version(), v);
}
