//! The sans-IO Chord node: one ring member's protocol state machine.
//!
//! Chord as in Stoica et al. (SIGCOMM 2001), with successor lists for
//! failures. The node performs no I/O and reads no clock (the quinn-proto
//! pattern): the driver feeds it datagrams with `handle(now, from, bytes)`,
//! calls `handle_timeout(now)` at `poll_timeout()`, sends what
//! `poll_send(buf)` writes, and acts on `poll_event()`.
//!
//! What it runs:
//! - join through any member's address: an iterative lookup of its own
//!   identifier finds its successor; the successor hands over the keys
//!   between its old predecessor and the joiner when the joiner notifies it
//!   (`Notified { handed }`), so the slice moves with no overlap.
//! - stabilize (every `stabilize_interval`): ask the successor for its
//!   predecessor and successor list, adopt a closer successor, notify it.
//! - fix_fingers (every `fix_fingers_interval`): one finger lookup per tick,
//!   highest finger first; fingers whose start falls in the answered slice
//!   are filled from the same answer, fingers within the successor's reach
//!   need no lookup.
//! - check_predecessor (every `check_predecessor_interval`): ping it.
//! - failure detection by timeouts: every request is retransmitted
//!   `rpc_retries` times, `rpc_timeout` apart; a member that answers none is
//!   dead: it leaves every table. When the successor dies the rest of the
//!   successor list is pinged at once, so a run of dead successors costs one
//!   timeout, not one each. A `Notify` from behind the current predecessor
//!   makes the node ping its predecessor at once instead of waiting for
//!   the periodic check.
//! - graceful leave: the leaving member hands its slice to its successor
//!   (`Leave`, acknowledged) and its successor list to its predecessor.
//! - iterative lookups: the querier asks the closest preceding member it
//!   knows, which answers with the owner (the key is between it and its
//!   successor) or with closer candidates; each answer is one hop. Answers
//!   name the owner's slice, so a cache can hold the whole slice.
//! - healing partitions: members declared dead are remembered for
//!   `dead_memory`; each stabilize round one of them is asked for this
//!   node's successor, and a closer successor found there is adopted, which
//!   merges rings that split while the network was cut. The driver can
//!   add addresses of possible members with `hint` (the proxies listed in
//!   the name server).
//!
//! Events tell the driver when the slice this member owns grows
//! (`Acquired`: load that state) or shrinks (`Released`: hand it over), and
//! when its routing knowledge changed (`RoutingChanged`, with a snapshot for
//! the per-core caches).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::RoutingSnapshot;
use crate::id::{Slice, in_half_open, in_open};
use crate::member::Member;
use crate::time::Instant;
use crate::wire::{Body, Dest, Envelope, MAX_LIST, WireError};

/// Number of fingers: one per bit of the identifier.
const FINGERS: usize = 64;
/// Candidates a `Closer` reply carries.
const CLOSER_CANDIDATES: usize = 3;
/// Candidates a lookup keeps in reserve.
const LOOKUP_CANDIDATES: usize = 8;
/// Recently heard members remembered for a rejoin.
const ACQUAINTANCES: usize = 8;

/// Protocol timing and sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Length r of the successor list (1..=32). With r successors the ring
    /// survives unless r consecutive members fail within one detection.
    pub successors: usize,
    /// Period of stabilize (one stabilization round).
    pub stabilize_interval: Duration,
    /// Period of fix_fingers (one finger lookup per tick at most).
    pub fix_fingers_interval: Duration,
    /// Period of check_predecessor.
    pub check_predecessor_interval: Duration,
    /// How long to wait for a reply before retransmitting.
    pub rpc_timeout: Duration,
    /// Retransmissions before a silent member is declared dead.
    pub rpc_retries: u8,
    /// A lookup gives up after this many hops.
    pub max_hops: u32,
    /// Wait before trying a failed join again.
    pub join_retry_interval: Duration,
    /// How long members declared dead are remembered (and probed, to merge
    /// rings after a partition heals).
    pub dead_memory: Duration,
}

impl Default for Config {
    /// Values for proxies in one data centre (round trips well under a
    /// millisecond): a member is declared dead when three tries 150 ms
    /// apart go unanswered (450 ms), so that one lost datagram and its
    /// retransmission (1 in 2,500 requests at 1% loss) do not kill it.
    fn default() -> Self {
        Config {
            successors: 8,
            stabilize_interval: Duration::from_secs(1),
            fix_fingers_interval: Duration::from_millis(500),
            check_predecessor_interval: Duration::from_secs(1),
            rpc_timeout: Duration::from_millis(150),
            rpc_retries: 2,
            max_hops: 32,
            join_retry_interval: Duration::from_secs(1),
            dead_memory: Duration::from_secs(60),
        }
    }
}

/// Where the node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Created, neither joined nor joining.
    Idle,
    /// Looking for its successor through a bootstrap address.
    Joining,
    /// A member of the ring.
    Joined,
    /// Handing its slice over; answers `NotMember`.
    Leaving,
    /// Gone; answers `NotMember`.
    Left,
}

/// Identifies a lookup started with `Node::lookup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(u64);

/// A lookup's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The key looked up.
    pub key: u64,
    /// Its owner.
    pub owner: Member,
    /// The owner's whole slice, as the answering member knows it (`key` is
    /// in it): every key in it has the same owner.
    pub slice: Slice,
    /// Members asked (0: this node knew the answer).
    pub hops: u32,
    /// This node's routing version when the answer came (see
    /// `RoutingCache::insert`).
    pub version: u64,
}

/// Why a lookup failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupError {
    /// This node is not a member (yet, or any more).
    NotJoined,
    /// Every member that could have answered was silent or gone.
    Unreachable,
    /// The lookup went on for `max_hops` without reaching the owner.
    TooManyHops,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LookupError::NotJoined => "not a member of the ring",
            LookupError::Unreachable => "no member on the way to the key answered",
            LookupError::TooManyHops => "too many hops",
        })
    }
}

impl std::error::Error for LookupError {}

/// Why a join attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinError {
    /// The bootstrap member or the way to the successor did not answer;
    /// the node tries again after `join_retry_interval`.
    Lookup(LookupError),
    /// Another member already has this identifier: the node stays `Idle`.
    IdCollision(Member),
    /// The ring still lists this member from an earlier life; the node tries
    /// again after `join_retry_interval` (the stale entry times out).
    StaleSelf,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Lookup(e) => write!(f, "join lookup failed: {e}"),
            JoinError::IdCollision(m) => write!(f, "identifier already taken by {m}"),
            JoinError::StaleSelf => f.write_str("the ring still lists this member"),
        }
    }
}

impl std::error::Error for JoinError {}

/// What the node tells its driver.
#[derive(Clone, Debug)]
pub enum Event {
    /// The node became a member (its slice follows in `Acquired`).
    Joined,
    /// A join attempt failed (see `JoinError` for whether it is retried).
    JoinFailed(JoinError),
    /// This member now owns `slice` too: load its state. `from` is the
    /// member that held it when it handed it over (a leave), `None` when its
    /// holder failed or the slice is new to the ring.
    Acquired {
        /// The keys gained.
        slice: Slice,
        /// Who handed them over.
        from: Option<Member>,
    },
    /// This member no longer owns `slice`: hand its state over or drop it.
    /// `to` is the new owner when known.
    Released {
        /// The keys lost.
        slice: Slice,
        /// Their new owner.
        to: Option<Member>,
    },
    /// A lookup finished.
    Lookup {
        /// The id `lookup` returned.
        id: LookupId,
        /// The key looked up.
        key: u64,
        /// The owner or why not.
        result: Result<Answer, LookupError>,
    },
    /// The routing tables changed (predecessor, successors, fingers or
    /// slice): the new snapshot, for the per-core caches.
    RoutingChanged(Arc<RoutingSnapshot>),
    /// A graceful leave finished: the node is `Left`.
    Left,
}

/// A datagram `poll_send` wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: SocketAddr,
    /// Its length (the whole of the buffer passed in).
    pub len: usize,
}

/// Why `handle` dropped a datagram (count it; the node keeps serving).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Not a ring message.
    Malformed(WireError),
    /// The sender claims an address other than the one it came from.
    SourceMismatch,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Malformed(e) => e.fmt(f),
            RecvError::SourceMismatch => f.write_str("sender address differs from the source"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Counters, for metrics and the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handled, dropped ones included.
    pub received: u64,
    /// Datagrams that were not ring messages.
    pub malformed: u64,
    /// Datagrams whose sender address was not their source.
    pub source_mismatch: u64,
    /// Replies that matched no outstanding request (late or duplicate).
    pub stale_replies: u64,
    /// Messages queued for sending, retransmissions included.
    pub sent: u64,
    /// Retransmitted requests.
    pub retransmits: u64,
    /// Members this node declared dead.
    pub declared_dead: u64,
    /// Lookups finished, by this node's own use or `lookup`.
    pub lookups: u64,
    /// Lookups that failed.
    pub lookups_failed: u64,
}

/// What a request was for, which decides what its reply or failure does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Stabilize,
    ProbeSuccessor,
    CheckPred,
    Notify,
    Lookup(u64),
    Leave,
}

/// Whom a request goes to: a member, or whoever answers at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Member(Member),
    Addr(SocketAddr),
}

impl Target {
    fn addr(&self) -> SocketAddr {
        match self {
            Target::Member(m) => m.addr,
            Target::Addr(a) => *a,
        }
    }

    fn member(&self) -> Option<Member> {
        match self {
            Target::Member(m) => Some(*m),
            Target::Addr(_) => None,
        }
    }

    fn answered_by(&self, from: &Member) -> bool {
        match self {
            Target::Member(m) => m == from,
            Target::Addr(a) => from.addr == *a,
        }
    }
}

#[derive(Debug)]
struct Rpc {
    to: Target,
    env: Envelope,
    attempts: u8,
    deadline: Instant,
    purpose: Purpose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LookupPurpose {
    User,
    Join,
    Finger(u8),
    Merge,
}

#[derive(Debug)]
struct Lookup {
    key: u64,
    purpose: LookupPurpose,
    hops: u32,
    /// Who to ask next, closest preceding the key first.
    candidates: Vec<Target>,
    /// Members already asked (never asked twice: no loops).
    asked: Vec<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Dead {
    member: Member,
    since: Instant,
    /// It left gracefully: not worth probing.
    left: bool,
}

/// One ring member's Chord state machine. See the module docs.
#[derive(Debug)]
pub struct Node {
    me: Member,
    cfg: Config,
    state: State,
    /// Addresses to join through, tried in turn: the bootstrap address,
    /// and for a rejoin the members heard from lately.
    bootstrap: Vec<SocketAddr>,
    join_attempts: usize,
    /// Addresses of members heard from lately, most recent first.
    acquaintances: VecDeque<SocketAddr>,
    join_retry: Option<Instant>,
    pred: Option<Member>,
    /// A member that notified from behind the predecessor: it becomes the
    /// predecessor if the current one turns out dead.
    pred_candidate: Option<Member>,
    /// The slice this member owns, as announced by events.
    slice: Option<Slice>,
    /// Successor list, nearest first; empty when alone.
    succs: Vec<Member>,
    fingers: [Option<Member>; FINGERS],
    next_finger: usize,
    finger_lookup: Option<u64>,
    dead: Vec<Dead>,
    next_dead_probe: usize,
    pending: BTreeMap<u64, Rpc>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    next_token: u64,
    lookups: BTreeMap<u64, Lookup>,
    next_lookup: u64,
    stabilizing: Option<(u64, Member)>,
    notifying: Option<u64>,
    checking_pred: Option<u64>,
    leaves_pending: usize,
    next_stabilize: Instant,
    next_fix: Instant,
    next_check_pred: Instant,
    out: VecDeque<(SocketAddr, Envelope)>,
    events: VecDeque<Event>,
    version: u64,
    published: u64,
    stats: Stats,
}

impl Node {
    /// A node for member `me`, not yet in a ring (`create` or `join` next).
    pub fn new(me: Member, mut cfg: Config) -> Self {
        cfg.successors = cfg.successors.clamp(1, MAX_LIST);
        Node {
            me,
            cfg,
            state: State::Idle,
            bootstrap: Vec::new(),
            join_attempts: 0,
            acquaintances: VecDeque::new(),
            join_retry: None,
            pred: None,
            pred_candidate: None,
            slice: None,
            succs: Vec::new(),
            fingers: [None; FINGERS],
            next_finger: FINGERS - 1,
            finger_lookup: None,
            dead: Vec::new(),
            next_dead_probe: 0,
            pending: BTreeMap::new(),
            deadlines: BinaryHeap::new(),
            next_token: 1,
            lookups: BTreeMap::new(),
            next_lookup: 1,
            stabilizing: None,
            notifying: None,
            checking_pred: None,
            leaves_pending: 0,
            next_stabilize: Instant::ZERO,
            next_fix: Instant::ZERO,
            next_check_pred: Instant::ZERO,
            out: VecDeque::new(),
            events: VecDeque::new(),
            version: 0,
            published: 0,
            stats: Stats::default(),
        }
    }

    /// This member.
    pub fn me(&self) -> Member {
        self.me
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Where the node is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Is the node a member of a ring?
    pub fn is_joined(&self) -> bool {
        self.state == State::Joined
    }

    /// The predecessor, if known.
    pub fn predecessor(&self) -> Option<Member> {
        self.pred
    }

    /// The successor (this member when alone).
    pub fn successor(&self) -> Member {
        self.succs.first().copied().unwrap_or(self.me)
    }

    /// The successor list, nearest first (empty when alone).
    pub fn successors(&self) -> &[Member] {
        &self.succs
    }

    /// The finger table: `fingers()[i]` is the owner of `me.id + 2^i`.
    pub fn fingers(&self) -> &[Option<Member>; FINGERS] {
        &self.fingers
    }

    /// The slice this member owns (`None` until it has one).
    pub fn slice(&self) -> Option<Slice> {
        self.slice
    }

    /// Does this member own `key`?
    pub fn owns(&self, key: u64) -> bool {
        self.slice.is_some_and(|s| s.contains(key))
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The routing version: it changes whenever the predecessor, successor
    /// list, fingers or slice change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A snapshot of what this member knows, for the per-core caches.
    pub fn snapshot(&self) -> Arc<RoutingSnapshot> {
        Arc::new(RoutingSnapshot::new(
            self.version,
            self.me,
            self.slice,
            self.pred,
            self.succs.clone(),
            &self.fingers,
        ))
    }

    /// Starts a new ring with this member alone in it: it owns every key.
    pub fn create(&mut self, now: Instant) {
        if !matches!(self.state, State::Idle | State::Left) {
            return;
        }
        self.reset_tables();
        self.become_joined(now);
        self.set_slice_start(self.me.id, None, None);
        self.flush_routing();
    }

    /// Joins the ring that the member at `bootstrap` belongs to. Retries
    /// every `join_retry_interval` until it succeeds (`Event::Joined`) or
    /// finds its identifier taken.
    pub fn join(&mut self, now: Instant, bootstrap: SocketAddr) {
        if !matches!(self.state, State::Idle | State::Left) {
            return;
        }
        self.reset_tables();
        self.acquaintances.clear();
        self.state = State::Joining;
        self.bootstrap = vec![bootstrap];
        self.join_attempts = 0;
        self.start_join(now);
    }

    /// Leaves the ring gracefully: hands the slice to the successor
    /// (`Event::Released` now, `Event::Left` when both neighbours
    /// acknowledged or timed out). A node that is not joined just stops.
    pub fn leave(&mut self, now: Instant) {
        match self.state {
            State::Joined => {}
            State::Idle | State::Joining => {
                self.stop();
                self.events.push_back(Event::Left);
                return;
            }
            State::Leaving | State::Left => return,
        }
        let succ = self.successor();
        let start = self.slice.map_or(self.me.id, |s| s.start);
        if let Some(slice) = self.slice.take() {
            let to = (succ != self.me).then_some(succ);
            self.events.push_back(Event::Released { slice, to });
        }
        if succ == self.me {
            self.stop();
            self.events.push_back(Event::Left);
            self.flush_routing();
            return;
        }
        // Drop everything in flight; only the two Leave requests remain.
        self.cancel_all();
        self.state = State::Leaving;
        let body = Body::Leave {
            pred: self.pred,
            start,
            successors: self.succs.clone(),
        };
        self.request(now, Target::Member(succ), body.clone(), Purpose::Leave);
        self.leaves_pending = 1;
        if let Some(p) = self.pred.filter(|p| *p != succ) {
            self.request(now, Target::Member(p), body, Purpose::Leave);
            self.leaves_pending += 1;
        }
        self.version += 1;
        self.flush_routing();
    }

    /// Asks who owns `key`. The answer comes as `Event::Lookup` with the
    /// returned id (at once when this node knows it).
    pub fn lookup(&mut self, now: Instant, key: u64) -> LookupId {
        let id = self.start_lookup(now, key, LookupPurpose::User, None);
        self.flush_routing();
        LookupId(id)
    }

    /// Tells the node of a possible member at `addr` (for instance a proxy
    /// listed in the name server). A joining node adds it to the addresses
    /// it tries in turn (answer a `JoinFailed` with a hint when the
    /// bootstrap member may be gone). A joined node asks it for its own
    /// successor and adopts a closer one: this merges rings that formed
    /// apart. Cheap; the driver may call it every few rounds.
    pub fn hint(&mut self, now: Instant, addr: SocketAddr) {
        if addr == self.me.addr {
            return;
        }
        if self.state == State::Joining {
            if !self.bootstrap.contains(&addr) {
                // Tried next; the oldest addresses are dropped.
                self.bootstrap
                    .insert(self.join_attempts % (self.bootstrap.len() + 1), addr);
                self.bootstrap.truncate(ACQUAINTANCES);
            }
            return;
        }
        if self.state == State::Joined {
            self.start_lookup(
                now,
                self.me.id,
                LookupPurpose::Merge,
                Some(Target::Addr(addr)),
            );
            self.flush_routing();
        }
    }

    /// Handles one received datagram from `from`.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), RecvError> {
        self.stats.received += 1;
        let env = match Envelope::decode(datagram) {
            Ok(env) => env,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(RecvError::Malformed(e));
            }
        };
        if env.from.addr != from {
            self.stats.source_mismatch += 1;
            return Err(RecvError::SourceMismatch);
        }
        self.handle_envelope(now, env);
        self.flush_routing();
        Ok(())
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, token))) = self.deadlines.peek() {
            if self.pending.get(&token).is_some_and(|r| r.deadline == t) {
                break;
            }
            self.deadlines.pop();
        }
        let rpc = self.deadlines.peek().map(|Reverse((t, _))| *t);
        let periodic = match self.state {
            State::Joined => Some(
                self.next_stabilize
                    .min(self.next_fix)
                    .min(self.next_check_pred),
            ),
            State::Joining => self.join_retry,
            _ => None,
        };
        match (rpc, periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: retransmissions, failure detection,
    /// stabilize, fix_fingers, check_predecessor, join retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((t, token))) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let Some(rpc) = self.pending.get_mut(&token) else {
                continue;
            };
            if rpc.deadline != t {
                continue;
            }
            if rpc.attempts <= self.cfg.rpc_retries {
                rpc.attempts += 1;
                rpc.deadline = now + self.cfg.rpc_timeout;
                self.deadlines.push(Reverse((rpc.deadline, token)));
                self.out.push_back((rpc.to.addr(), rpc.env.clone()));
                self.stats.sent += 1;
                self.stats.retransmits += 1;
            } else if let Some(rpc) = self.pending.remove(&token) {
                self.rpc_failed(now, token, rpc);
            }
        }
        match self.state {
            State::Joined => {
                if now >= self.next_stabilize {
                    self.next_stabilize = now + self.cfg.stabilize_interval;
                    self.stabilize_tick(now);
                }
                if now >= self.next_check_pred && self.state == State::Joined {
                    self.next_check_pred = now + self.cfg.check_predecessor_interval;
                    self.check_predecessor(now);
                }
                if now >= self.next_fix && self.state == State::Joined {
                    self.next_fix = now + self.cfg.fix_fingers_interval;
                    self.fix_fingers(now);
                }
            }
            State::Joining if self.join_retry.is_some_and(|t| t <= now) => {
                self.join_retry = None;
                self.start_join(now);
            }
            _ => {}
        }
        self.flush_routing();
    }

    /// Writes the next datagram to send into `buf` (cleared first).
    pub fn poll_send(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dest, env) = self.out.pop_front()?;
        buf.clear();
        env.encode(buf);
        Some(Transmit {
            dest,
            len: buf.len(),
        })
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- life cycle ----

    fn reset_tables(&mut self) {
        self.cancel_all();
        self.pred = None;
        self.pred_candidate = None;
        self.slice = None;
        self.succs.clear();
        self.fingers = [None; FINGERS];
        self.dead.clear();
        self.join_retry = None;
    }

    /// Drops every request in flight; the driver's own lookups end with
    /// `NotJoined` (the node is leaving or starting over).
    fn cancel_all(&mut self) {
        self.pending.clear();
        self.deadlines.clear();
        for (id, l) in std::mem::take(&mut self.lookups) {
            if l.purpose == LookupPurpose::User {
                self.stats.lookups += 1;
                self.stats.lookups_failed += 1;
                self.events.push_back(Event::Lookup {
                    id: LookupId(id),
                    key: l.key,
                    result: Err(LookupError::NotJoined),
                });
            }
        }
        self.stabilizing = None;
        self.notifying = None;
        self.checking_pred = None;
        self.finger_lookup = None;
    }

    fn stop(&mut self) {
        self.reset_tables();
        self.state = State::Left;
        self.version += 1;
    }

    fn become_joined(&mut self, now: Instant) {
        self.state = State::Joined;
        self.join_retry = None;
        // Spread the members' periodic work over the period (the phase
        // comes from the identifier: no clock, no RNG).
        let phase = |d: Duration| {
            let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
            Duration::from_nanos(self.me.id % n)
        };
        self.next_stabilize = now + phase(self.cfg.stabilize_interval);
        self.next_fix = now + phase(self.cfg.fix_fingers_interval);
        self.next_check_pred = now + phase(self.cfg.check_predecessor_interval);
        self.version += 1;
        self.events.push_back(Event::Joined);
    }

    fn start_join(&mut self, now: Instant) {
        if !self.bootstrap.is_empty() {
            let addr = self.bootstrap[self.join_attempts % self.bootstrap.len()];
            self.join_attempts += 1;
            self.start_lookup(
                now,
                self.me.id,
                LookupPurpose::Join,
                Some(Target::Addr(addr)),
            );
        }
    }

    fn join_answer(&mut self, now: Instant, result: Result<Answer, LookupError>) {
        if self.state != State::Joining {
            return;
        }
        let err = match result {
            Ok(a) if a.owner == self.me => JoinError::StaleSelf,
            Ok(a) if a.owner.id == self.me.id => {
                self.state = State::Idle;
                self.events
                    .push_back(Event::JoinFailed(JoinError::IdCollision(a.owner)));
                return;
            }
            Ok(a) => {
                self.succs = vec![a.owner];
                self.become_joined(now);
                self.stabilize_now(now);
                return;
            }
            Err(e) => JoinError::Lookup(e),
        };
        self.join_retry = Some(now + self.cfg.join_retry_interval);
        self.events.push_back(Event::JoinFailed(err));
    }

    // ---- requests and replies ----

    fn send(&mut self, to: Target, token: u64, body: Body) {
        let env = Envelope {
            token,
            from: self.me,
            to: to.member().map(|m| Dest::from(&m)),
            body,
        };
        self.out.push_back((to.addr(), env));
        self.stats.sent += 1;
    }

    fn request(&mut self, now: Instant, to: Target, body: Body, purpose: Purpose) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let env = Envelope {
            token,
            from: self.me,
            to: to.member().map(|m| Dest::from(&m)),
            body,
        };
        self.out.push_back((to.addr(), env.clone()));
        self.stats.sent += 1;
        let deadline = now + self.cfg.rpc_timeout;
        self.deadlines.push(Reverse((deadline, token)));
        self.pending.insert(
            token,
            Rpc {
                to,
                env,
                attempts: 1,
                deadline,
                purpose,
            },
        );
        token
    }

    fn reply(&mut self, to: &Envelope, body: Body) {
        self.send(Target::Member(to.from), to.token, body);
    }

    /// Handles one decoded message (for drivers that decode themselves;
    /// `handle` checks the source address first).
    pub fn handle_envelope(&mut self, now: Instant, env: Envelope) {
        if env.from == self.me {
            return;
        }
        if env.body != Body::NotMember {
            self.heard_from(&env.from);
        }
        if env.body.is_request() {
            let for_me = env
                .to
                .is_none_or(|d| d.id == self.me.id && d.core == self.me.core);
            if !for_me || self.state != State::Joined {
                self.reply(&env, Body::NotMember);
                return;
            }
            match &env.body {
                Body::Ping => self.reply(&env, Body::Pong),
                Body::FindSuccessor { key } => {
                    let body = self.find_successor(*key);
                    self.reply(&env, body);
                }
                Body::GetNeighbors => {
                    let body = Body::Neighbors {
                        pred: self.pred,
                        successors: self.succs.clone(),
                    };
                    self.reply(&env, body);
                }
                Body::Notify => {
                    let handed = self.on_notify(now, env.from);
                    self.reply(&env, Body::Notified { handed });
                }
                Body::Leave {
                    pred,
                    start,
                    successors,
                } => {
                    self.on_leave(now, env.from, *pred, *start, successors);
                    self.reply(&env, Body::Ack);
                }
                _ => {}
            }
            return;
        }
        let Some(rpc) = self.pending.get(&env.token) else {
            self.stats.stale_replies += 1;
            return;
        };
        if !rpc.to.answered_by(&env.from) {
            self.stats.stale_replies += 1;
            return;
        }
        let Some(rpc) = self.pending.remove(&env.token) else {
            return;
        };
        self.on_reply(now, env.token, rpc, env.from, env.body);
    }

    fn on_reply(&mut self, now: Instant, token: u64, rpc: Rpc, from: Member, body: Body) {
        match (rpc.purpose, body) {
            (_, Body::NotMember) => self.rpc_failed(now, token, rpc),
            (Purpose::Stabilize, Body::Neighbors { pred, successors }) => {
                if self.stabilizing.is_some_and(|(t, _)| t == token) {
                    self.stabilizing = None;
                }
                self.on_neighbors(now, from, pred, &successors);
            }
            (Purpose::ProbeSuccessor, Body::Pong) => {}
            (Purpose::CheckPred, Body::Pong) => {
                self.checking_pred = None;
                // The predecessor lives; whoever notified from behind it
                // will learn of it when it stabilizes.
                self.pred_candidate = None;
            }
            (Purpose::Notify, Body::Notified { handed }) => {
                self.notifying = None;
                if let Some(start) = handed {
                    self.on_handed(start, from);
                }
            }
            (Purpose::Lookup(id), Body::Owner { owner, start }) => {
                self.lookup_owner(now, id, owner, start);
            }
            (Purpose::Lookup(id), Body::Closer { candidates }) => {
                self.lookup_closer(now, id, from, &candidates);
            }
            (Purpose::Leave, Body::Ack) => self.leave_acked(),
            (_, _) => {
                // A reply of the wrong kind: treat the member as broken.
                self.rpc_failed(now, token, rpc);
            }
        }
    }

    /// A request got no answer after its retransmissions (or `NotMember`).
    fn rpc_failed(&mut self, now: Instant, token: u64, rpc: Rpc) {
        match rpc.purpose {
            Purpose::Stabilize => {
                if self.stabilizing.is_some_and(|(t, _)| t == token) {
                    self.stabilizing = None;
                }
                if let Some(m) = rpc.to.member() {
                    self.successor_failed(now, m);
                }
            }
            Purpose::ProbeSuccessor => {
                if let Some(m) = rpc.to.member() {
                    self.declare_dead(now, m);
                }
            }
            Purpose::CheckPred => {
                self.checking_pred = None;
                if let Some(m) = rpc.to.member() {
                    self.declare_dead(now, m);
                }
            }
            Purpose::Notify => {
                self.notifying = None;
                if let Some(m) = rpc.to.member() {
                    self.successor_failed(now, m);
                }
            }
            Purpose::Lookup(id) => {
                if let Some(m) = rpc.to.member() {
                    self.declare_dead(now, m);
                }
                self.lookup_next(now, id);
            }
            Purpose::Leave => self.leave_acked(),
        }
    }

    // ---- Chord: answering ----

    /// The owner of `key` if this node knows it without asking: its own
    /// slice, or the keys between it and its successor.
    fn local_owner(&self, key: u64) -> Option<(Member, u64)> {
        if let Some(s) = self.slice
            && s.contains(key)
        {
            return Some((self.me, s.start));
        }
        let succ = self.successor();
        if succ != self.me && in_half_open(key, self.me.id, succ.id) {
            return Some((succ, self.me.id));
        }
        None
    }

    fn find_successor(&self, key: u64) -> Body {
        if let Some((owner, start)) = self.local_owner(key) {
            return Body::Owner { owner, start };
        }
        let mut candidates = Vec::with_capacity(CLOSER_CANDIDATES);
        self.closest_preceding(key, CLOSER_CANDIDATES, &mut candidates);
        if candidates.is_empty() {
            // Alone without a slice (between a failure and a notify): the
            // successor is the best guess.
            return Body::Owner {
                owner: self.successor(),
                start: self.me.id,
            };
        }
        Body::Closer { candidates }
    }

    /// Up to `n` known live members strictly between this member and `key`,
    /// closest to `key` first.
    fn closest_preceding(&self, key: u64, n: usize, out: &mut Vec<Member>) {
        let me = self.me.id;
        let known = self
            .fingers
            .iter()
            .flatten()
            .chain(self.succs.iter())
            .chain(self.pred.iter());
        for m in known {
            if !in_open(m.id, me, key) || out.iter().any(|o| o.id == m.id) {
                continue;
            }
            // Keep `out` sorted by distance to the key, at most n long.
            let d = key.wrapping_sub(m.id);
            let at = out.partition_point(|o| key.wrapping_sub(o.id) < d);
            if at < n {
                if out.len() == n {
                    out.pop();
                }
                out.insert(at, *m);
            }
        }
    }

    // ---- Chord: stabilize, notify, check_predecessor ----

    fn stabilize_tick(&mut self, now: Instant) {
        self.stabilize_now(now);
        // Forget old deaths; probe one remembered dead member (merges rings
        // that a partition split).
        let forget = self.cfg.dead_memory;
        self.dead
            .retain(|d| now.saturating_duration_since(d.since) < forget);
        let probes: Vec<Member> = self
            .dead
            .iter()
            .filter(|d| !d.left)
            .map(|d| d.member)
            .collect();
        if !probes.is_empty() {
            let m = probes[self.next_dead_probe % probes.len()];
            self.next_dead_probe = self.next_dead_probe.wrapping_add(1);
            self.start_lookup(
                now,
                self.me.id,
                LookupPurpose::Merge,
                Some(Target::Member(m)),
            );
        }
    }

    fn stabilize_now(&mut self, now: Instant) {
        if self.state != State::Joined {
            return;
        }
        if self.succs.is_empty() {
            // Alone: a predecessor is also the successor (a ring of two).
            match self.pred {
                Some(p) => self.set_successors(vec![p]),
                None => return,
            }
        }
        let succ = self.successor();
        if self.stabilizing.is_some_and(|(_, m)| m == succ) {
            return;
        }
        let token = self.request(
            now,
            Target::Member(succ),
            Body::GetNeighbors,
            Purpose::Stabilize,
        );
        self.stabilizing = Some((token, succ));
    }

    fn on_neighbors(&mut self, now: Instant, from: Member, pred: Option<Member>, list: &[Member]) {
        if self.state != State::Joined || from != self.successor() {
            return;
        }
        if let Some(x) = pred
            && x != self.me
            && in_open(x.id, self.me.id, from.id)
            && !self.is_dead(&x)
        {
            // A member joined between us: it is the successor now.
            let mut l = vec![x, from];
            l.extend_from_slice(list);
            self.set_successors(l);
            self.stabilize_now(now);
            return;
        }
        let mut l = Vec::with_capacity(list.len() + 1);
        l.push(from);
        l.extend_from_slice(list);
        self.set_successors(l);
        if self.notifying.is_none() {
            let token = self.request(now, Target::Member(from), Body::Notify, Purpose::Notify);
            self.notifying = Some(token);
        }
    }

    /// Sets the successor list from `list` (nearest first): entries after
    /// this member (the list wrapped around the ring), dead members and
    /// repeats are dropped, and it is cut to r.
    fn set_successors(&mut self, list: Vec<Member>) {
        let mut out: Vec<Member> = Vec::with_capacity(self.cfg.successors);
        for m in list {
            if m.id == self.me.id {
                break;
            }
            if self.is_dead(&m) || out.iter().any(|o| o.id == m.id) {
                continue;
            }
            out.push(m);
            if out.len() == self.cfg.successors {
                break;
            }
        }
        if out != self.succs {
            self.succs = out;
            self.version += 1;
        }
    }

    /// `m` says it is our predecessor. Returns the start of the keys handed
    /// to it, if any.
    fn on_notify(&mut self, now: Instant, m: Member) -> Option<u64> {
        if m.id == self.me.id {
            return None;
        }
        if self.succs.is_empty() {
            // Alone: the notifier is the successor too.
            self.set_successors(vec![m]);
        }
        let accept = match self.pred {
            None => true,
            Some(p) => p == m || in_open(m.id, p.id, self.me.id),
        };
        if accept {
            self.set_pred(m)
        } else {
            // From behind the predecessor: it may be dead. Remember the
            // closest such candidate and check the predecessor now.
            let better = self
                .pred_candidate
                .is_none_or(|c| in_open(m.id, c.id, self.me.id));
            if better {
                self.pred_candidate = Some(m);
            }
            self.check_predecessor(now);
            None
        }
    }

    fn set_pred(&mut self, p: Member) -> Option<u64> {
        if self.pred != Some(p) {
            self.pred = Some(p);
            self.version += 1;
        }
        if self.pred_candidate == Some(p) {
            self.pred_candidate = None;
        }
        self.set_slice_start(p.id, Some(p), None)
    }

    /// Moves the start of this member's slice to `start`, announcing the
    /// keys gained or lost. Returns the old start when keys were released
    /// (to `to`).
    fn set_slice_start(
        &mut self,
        start: u64,
        to: Option<Member>,
        from: Option<Member>,
    ) -> Option<u64> {
        let new = Slice::new(start, self.me.id);
        let Some(old) = self.slice else {
            self.slice = Some(new);
            self.version += 1;
            self.events.push_back(Event::Acquired { slice: new, from });
            return None;
        };
        if old.start == start {
            return None;
        }
        self.slice = Some(new);
        self.version += 1;
        if in_open(start, old.start, self.me.id) {
            self.events.push_back(Event::Released {
                slice: Slice::new(old.start, start),
                to,
            });
            Some(old.start)
        } else {
            self.events.push_back(Event::Acquired {
                slice: Slice::new(start, old.start),
                from,
            });
            None
        }
    }

    /// The successor accepted our notify and handed us `(start, me]`. Only
    /// a member without a predecessor takes it (a joiner, or one whose
    /// predecessor failed): with a predecessor the slice starts there, and
    /// the successor's idea of its old slice may be stale.
    fn on_handed(&mut self, start: u64, from: Member) {
        if self.state != State::Joined || self.pred.is_some() {
            return;
        }
        let grows = match self.slice {
            None => true,
            Some(s) => in_open(s.start, start, self.me.id),
        };
        if grows {
            self.set_slice_start(start, None, Some(from));
        }
    }

    fn check_predecessor(&mut self, now: Instant) {
        let Some(p) = self.pred else {
            // No predecessor: a waiting candidate takes the place.
            if let Some(c) = self.pred_candidate.take() {
                self.set_pred(c);
            }
            return;
        };
        if self.checking_pred.is_none() {
            let token = self.request(now, Target::Member(p), Body::Ping, Purpose::CheckPred);
            self.checking_pred = Some(token);
        }
    }

    // ---- failures ----

    fn is_dead(&self, m: &Member) -> bool {
        self.dead.iter().any(|d| d.member == *m)
    }

    fn heard_from(&mut self, m: &Member) {
        if let Some(i) = self.dead.iter().position(|d| d.member == *m && !d.left) {
            self.dead.swap_remove(i);
        }
        if self.acquaintances.front() != Some(&m.addr) {
            self.acquaintances.retain(|a| *a != m.addr);
            self.acquaintances.push_front(m.addr);
            self.acquaintances.truncate(ACQUAINTANCES);
        }
    }

    /// The successor did not answer: drop it, ping the rest of the list at
    /// once (a run of dead successors is found in one timeout) and
    /// stabilize with the next one.
    fn successor_failed(&mut self, now: Instant, m: Member) {
        self.declare_dead(now, m);
        if self.state != State::Joined {
            return;
        }
        let probing: Vec<Member> = self
            .pending
            .values()
            .filter(|r| r.purpose == Purpose::ProbeSuccessor)
            .filter_map(|r| r.to.member())
            .collect();
        for s in self.succs.clone().into_iter().skip(1) {
            if !probing.contains(&s) {
                self.request(now, Target::Member(s), Body::Ping, Purpose::ProbeSuccessor);
            }
        }
    }

    fn declare_dead(&mut self, now: Instant, m: Member) {
        self.forget_member(now, m, false);
    }

    /// Removes `m` from every table and remembers it as dead (or left).
    fn forget_member(&mut self, now: Instant, m: Member, left: bool) {
        if !self.is_dead(&m) {
            self.dead.push(Dead {
                member: m,
                since: now,
                left,
            });
            self.stats.declared_dead += 1;
        } else if left && let Some(d) = self.dead.iter_mut().find(|d| d.member == m) {
            d.left = true;
        }
        let was_succ = self.succs.first() == Some(&m);
        if let Some(i) = self.succs.iter().position(|s| *s == m) {
            self.succs.remove(i);
            self.version += 1;
        }
        for f in self.fingers.iter_mut() {
            if *f == Some(m) {
                *f = None;
                self.version += 1;
            }
        }
        if self.pred == Some(m) {
            // The slice stays as it is until the new predecessor notifies.
            self.pred = None;
            self.version += 1;
            if let Some(c) = self.pred_candidate.take()
                && self.state == State::Joined
            {
                self.set_pred(c);
            }
        }
        if self.pred_candidate == Some(m) {
            self.pred_candidate = None;
        }
        if was_succ && self.state == State::Joined {
            if self.succs.is_empty() {
                self.lost_all_successors(now);
            }
            self.stabilize_now(now);
        }
    }

    /// Every successor is gone: fall back to the nearest finger, then to
    /// the predecessor. With neither, a member that has heard of others
    /// (a joiner whose only successor failed, say) joins again through
    /// them; only one that knows nobody is alone and owns the whole ring:
    /// a member cut off from a large ring must not claim all of it.
    fn lost_all_successors(&mut self, now: Instant) {
        let me = self.me.id;
        let nearest = self
            .fingers
            .iter()
            .flatten()
            .chain(self.pred.iter())
            .filter(|m| m.id != me)
            .min_by_key(|m| m.id.wrapping_sub(me))
            .copied();
        if let Some(m) = nearest {
            self.set_successors(vec![m]);
            return;
        }
        let dead: Vec<SocketAddr> = self.dead.iter().map(|d| d.member.addr).collect();
        let mut via: Vec<SocketAddr> = self
            .acquaintances
            .iter()
            .copied()
            .filter(|a| !dead.contains(a))
            .collect();
        for b in &self.bootstrap {
            if !via.contains(b) {
                via.push(*b);
            }
        }
        if via.is_empty() {
            self.set_slice_start(me, None, None);
            return;
        }
        if let Some(slice) = self.slice.take() {
            self.events.push_back(Event::Released { slice, to: None });
        }
        self.reset_tables();
        self.state = State::Joining;
        self.bootstrap = via;
        self.join_attempts = 0;
        self.version += 1;
        self.start_join(now);
    }

    // ---- graceful leave ----

    fn on_leave(
        &mut self,
        now: Instant,
        m: Member,
        pred: Option<Member>,
        start: u64,
        list: &[Member],
    ) {
        let was_pred = self.pred == Some(m);
        let was_succ = self.successor() == m;
        if was_pred {
            // Its predecessor replaces it, not a waiting candidate.
            self.pred_candidate = None;
        }
        self.forget_member(now, m, true);
        if was_pred {
            // Its slice is ours now, and its predecessor is ours: the slice
            // starts there (or where its slice started, if it had none).
            let start = match pred.filter(|p| p.id != self.me.id && !self.is_dead(p)) {
                Some(p) => {
                    self.pred = Some(p);
                    self.version += 1;
                    p.id
                }
                None => start,
            };
            self.set_slice_start(start, None, Some(m));
        }
        if was_succ {
            let mut l: Vec<Member> = list.iter().copied().filter(|s| *s != m).collect();
            l.extend(self.succs.iter().copied());
            self.set_successors(l);
            if self.succs.is_empty() {
                self.lost_all_successors(now);
            }
            self.stabilize_now(now);
        }
    }

    fn leave_acked(&mut self) {
        if self.state != State::Leaving {
            return;
        }
        self.leaves_pending = self.leaves_pending.saturating_sub(1);
        if self.leaves_pending == 0 {
            self.stop();
            self.events.push_back(Event::Left);
        }
    }

    // ---- fix_fingers ----

    fn finger_start(&self, i: usize) -> u64 {
        self.me.id.wrapping_add(1u64 << i)
    }

    fn set_finger(&mut self, i: usize, m: Member) {
        let v = (m != self.me).then_some(m);
        if self.fingers[i] != v {
            self.fingers[i] = v;
            self.version += 1;
        }
    }

    /// One step of fix_fingers: walks down from the highest finger,
    /// filling those the successor covers, until one needs a lookup.
    fn fix_fingers(&mut self, now: Instant) {
        if self.finger_lookup.is_some() || self.succs.is_empty() {
            return;
        }
        for _ in 0..FINGERS {
            let i = self.next_finger;
            self.next_finger = if i == 0 { FINGERS - 1 } else { i - 1 };
            let start = self.finger_start(i);
            if let Some((owner, _)) = self.local_owner(start) {
                self.set_finger(i, owner);
                continue;
            }
            let id = self.start_lookup(now, start, LookupPurpose::Finger(i as u8), None);
            if self.lookups.contains_key(&id) {
                self.finger_lookup = Some(id);
            }
            return;
        }
    }

    fn finger_answer(&mut self, i: u8, result: Result<Answer, LookupError>) {
        let Ok(a) = result else { return };
        if self.state != State::Joined {
            return;
        }
        self.set_finger(usize::from(i), a.owner);
        for j in 0..FINGERS {
            if a.slice.contains(self.finger_start(j)) {
                self.set_finger(j, a.owner);
            }
        }
    }

    fn merge_answer(&mut self, now: Instant, result: Result<Answer, LookupError>) {
        let Ok(a) = result else { return };
        if self.state != State::Joined || a.owner.id == self.me.id || self.is_dead(&a.owner) {
            return;
        }
        let closer = self.succs.is_empty() || in_open(a.owner.id, self.me.id, self.successor().id);
        if closer {
            let mut l = vec![a.owner];
            l.extend(self.succs.iter().copied());
            self.set_successors(l);
            self.stabilize_now(now);
        }
    }

    // ---- iterative lookups ----

    fn start_lookup(
        &mut self,
        now: Instant,
        key: u64,
        purpose: LookupPurpose,
        first: Option<Target>,
    ) -> u64 {
        let id = self.next_lookup;
        self.next_lookup += 1;
        if purpose != LookupPurpose::Join && self.state != State::Joined {
            self.finish_lookup(now, id, key, purpose, Err(LookupError::NotJoined));
            return id;
        }
        let candidates = match first {
            Some(t) => vec![t],
            None => {
                if let Some((owner, start)) = self.local_owner(key) {
                    let a = Answer {
                        key,
                        owner,
                        slice: Slice::new(start, owner.id),
                        hops: 0,
                        version: self.version,
                    };
                    self.finish_lookup(now, id, key, purpose, Ok(a));
                    return id;
                }
                let mut c = Vec::with_capacity(LOOKUP_CANDIDATES);
                self.closest_preceding(key, LOOKUP_CANDIDATES, &mut c);
                c.into_iter().map(Target::Member).collect()
            }
        };
        self.lookups.insert(
            id,
            Lookup {
                key,
                purpose,
                hops: 0,
                candidates,
                asked: Vec::new(),
            },
        );
        self.lookup_next(now, id);
        id
    }

    /// Asks the lookup's best remaining candidate, or ends it.
    fn lookup_next(&mut self, now: Instant, id: u64) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        let next = loop {
            if l.candidates.is_empty() {
                break None;
            }
            let t = l.candidates.remove(0);
            let skip = match t {
                Target::Member(m) => {
                    // Members this node thinks dead are still asked when
                    // another member names them: its news may be newer.
                    m.id == self.me.id || l.asked.contains(&m.id)
                }
                Target::Addr(a) => a == self.me.addr && l.purpose != LookupPurpose::Join,
            };
            if !skip {
                break Some(t);
            }
        };
        let (key, purpose) = (l.key, l.purpose);
        let Some(t) = next else {
            self.lookups.remove(&id);
            self.finish_lookup(now, id, key, purpose, Err(LookupError::Unreachable));
            return;
        };
        if let Target::Member(m) = t {
            l.asked.push(m.id);
        }
        self.request(now, t, Body::FindSuccessor { key }, Purpose::Lookup(id));
    }

    fn lookup_owner(&mut self, now: Instant, id: u64, owner: Member, start: u64) {
        let Some(mut l) = self.lookups.remove(&id) else {
            return;
        };
        l.hops += 1;
        let slice = Slice::new(start, owner.id);
        let result = if slice.contains(l.key) {
            Ok(Answer {
                key: l.key,
                owner,
                slice,
                hops: l.hops,
                version: self.version,
            })
        } else {
            // An answer whose slice misses the key: try the others.
            self.lookups.insert(id, l);
            self.lookup_next(now, id);
            return;
        };
        self.finish_lookup(now, id, l.key, l.purpose, result);
    }

    fn lookup_closer(&mut self, now: Instant, id: u64, from: Member, candidates: &[Member]) {
        let max_hops = self.cfg.max_hops;
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        l.hops += 1;
        if l.hops >= max_hops {
            let (key, purpose) = (l.key, l.purpose);
            self.lookups.remove(&id);
            self.finish_lookup(now, id, key, purpose, Err(LookupError::TooManyHops));
            return;
        }
        // Only members strictly closer to the key than the replier count:
        // every step makes progress, so no lookup loops.
        let key = l.key;
        let dist = |m: &Member| key.wrapping_sub(m.id);
        let mut fresh: Vec<Target> = candidates
            .iter()
            .filter(|c| in_open(c.id, from.id, key) && c.id != self.me.id)
            .take(CLOSER_CANDIDATES)
            .map(|c| Target::Member(*c))
            .collect();
        fresh.extend(l.candidates.iter().copied());
        // Closest first; address-only targets (bootstrap) last.
        fresh.sort_by_key(|t| t.member().map_or(u64::MAX, |m| dist(&m)));
        fresh.dedup();
        fresh.truncate(LOOKUP_CANDIDATES);
        l.candidates = fresh;
        self.lookup_next(now, id);
    }

    fn finish_lookup(
        &mut self,
        now: Instant,
        id: u64,
        key: u64,
        purpose: LookupPurpose,
        result: Result<Answer, LookupError>,
    ) {
        self.stats.lookups += 1;
        if result.is_err() {
            self.stats.lookups_failed += 1;
        }
        match purpose {
            LookupPurpose::User => self.events.push_back(Event::Lookup {
                id: LookupId(id),
                key,
                result,
            }),
            LookupPurpose::Join => self.join_answer(now, result),
            LookupPurpose::Finger(i) => {
                if self.finger_lookup == Some(id) {
                    self.finger_lookup = None;
                }
                self.finger_answer(i, result);
            }
            LookupPurpose::Merge => self.merge_answer(now, result),
        }
    }

    fn flush_routing(&mut self) {
        if self.version != self.published {
            self.published = self.version;
            self.events
                .push_back(Event::RoutingChanged(self.snapshot()));
        }
    }
}

#[cfg(test)]
mod tests;
