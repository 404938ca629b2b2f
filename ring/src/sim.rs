//! A deterministic simulator of a whole ring in one process.
//!
//! Modelled on smoltcp's `tests/netsim.rs`: a seeded RNG, a binary-heap
//! event queue ordered by (virtual time, sequence number), and virtual time
//! that jumps to the next event, so a minute of ring life costs only the
//! work of its messages. Each datagram gets a latency drawn uniformly from
//! `[latency_min, latency_max]` and is lost with probability `loss`;
//! datagrams to crashed members vanish; a partition drops datagrams between
//! groups (at delivery, so those in flight when it starts are lost too).
//! Members are real `Node`s exchanging real encoded datagrams.
//!
//! The oracle is the sorted list of live members (alive and joined): the
//! true owner of a key is its successor there. `check_ownership` checks that
//! every live member's predecessor, successor and slice are the true ones
//! (so the slices tile the ring: every key has exactly one owner) and that
//! the `Acquired`/`Released` events a member emitted add up to its slice.
//! `lookups` runs lookups from random members and compares every answer
//! with the oracle. The same seed gives the same run, event for event.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::id::{Slice, in_half_open, member_id};
use crate::member::Member;
use crate::node::{Config, Event, LookupId, Node, State};
use crate::time::Instant;

/// A small, fast, seedable PRNG (xoshiro256**, seeded through SplitMix64).
/// The simulator's own, so a seed means the same run on every platform and
/// every version of the dependencies.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut split = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [split(), split(), split(), split()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..n` as an index.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `[lo, hi]`.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
        lo + Duration::from_nanos(self.below(span.saturating_add(1)))
    }
}

/// The simulated network and the members' configuration.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random choice (latency, loss, joins, who crashes).
    pub seed: u64,
    /// Shortest one-way latency.
    pub latency_min: Duration,
    /// Longest one-way latency.
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Every member's protocol configuration.
    pub node: Config,
}

impl Default for SimConfig {
    /// One data centre: 0.1 to 1 ms one way, no loss, default node config.
    fn default() -> Self {
        SimConfig {
            seed: 1,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(1),
            loss: 0.0,
            node: Config::default(),
        }
    }
}

/// Something the simulator does at a virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Member joins through a random live member (or creates the ring when
    /// there is none).
    Join(usize),
    /// Member crashes: it stops, silently.
    Crash(usize),
    /// Member leaves gracefully.
    Leave(usize),
}

#[derive(Debug)]
enum Kind {
    Deliver {
        from: usize,
        to: usize,
        data: Vec<u8>,
    },
    Wake(usize),
    Act(Action),
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    kind: Kind,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One simulated member.
#[derive(Debug)]
pub struct SimMember {
    /// The member's node.
    pub node: Node,
    /// False once crashed.
    pub alive: bool,
    /// Its partition group (datagrams cross no group boundary).
    pub group: u32,
    wake: Option<Instant>,
    /// The slice its events add up to.
    event_slice: Option<Slice>,
}

/// Datagram counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams delivered to a live member.
    pub delivered: u64,
    /// Lost to the loss rate.
    pub lost: u64,
    /// Sent to a crashed member (or to an address nobody has).
    pub to_dead: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Bytes sent.
    pub bytes: u64,
}

/// One finished lookup started by `Sim::lookups`.
#[derive(Clone, Copy, Debug)]
pub struct LookupRecord {
    /// Who asked.
    pub from: usize,
    /// The key.
    pub key: u64,
    /// The owner it found (`None`: it failed).
    pub owner: Option<Member>,
    /// The oracle's owner when the answer came.
    pub truth: Option<Member>,
    /// Hops taken.
    pub hops: u32,
    /// Virtual time it took.
    pub latency: Duration,
}

impl LookupRecord {
    /// Did it find the true owner?
    pub fn correct(&self) -> bool {
        self.owner.is_some() && self.owner == self.truth
    }
}

/// What a batch of lookups found.
#[derive(Clone, Debug, Default)]
pub struct LookupReport {
    /// Every lookup.
    pub records: Vec<LookupRecord>,
    /// Lookups that had not finished when the batch's time ran out.
    pub unfinished: usize,
}

impl LookupReport {
    /// Lookups that found the true owner.
    pub fn correct(&self) -> usize {
        self.records.iter().filter(|r| r.correct()).count()
    }

    /// Lookups that failed or found a wrong owner (with their records).
    pub fn wrong(&self) -> Vec<LookupRecord> {
        self.records
            .iter()
            .filter(|r| !r.correct())
            .copied()
            .collect()
    }

    /// Mean hops of the successful lookups.
    pub fn mean_hops(&self) -> f64 {
        let ok: Vec<u32> = self
            .records
            .iter()
            .filter(|r| r.owner.is_some())
            .map(|r| r.hops)
            .collect();
        if ok.is_empty() {
            return 0.0;
        }
        ok.iter().map(|&h| f64::from(h)).sum::<f64>() / ok.len() as f64
    }

    /// The q-quantile (0..=1) of hops of the successful lookups.
    pub fn hops_quantile(&self, q: f64) -> u32 {
        let mut h: Vec<u32> = self
            .records
            .iter()
            .filter(|r| r.owner.is_some())
            .map(|r| r.hops)
            .collect();
        if h.is_empty() {
            return 0;
        }
        h.sort_unstable();
        let i = ((h.len() as f64 * q).ceil() as usize).clamp(1, h.len()) - 1;
        h[i]
    }
}

/// The live members (alive and joined) at one moment, in ring order: the
/// truth that the members' state is checked against.
#[derive(Clone, Debug)]
pub struct Oracle {
    /// Their indices in the simulation.
    pub live: Vec<usize>,
    /// The members, sorted by identifier.
    pub members: Vec<Member>,
}

impl Oracle {
    /// The true owner of `key`: its successor on the ring.
    pub fn owner(&self, key: u64) -> Option<Member> {
        let at = self.members.partition_point(|m| m.id < key);
        self.members.get(at).or(self.members.first()).copied()
    }
}

/// The simulator. See the module docs.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: Instant,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    members: Vec<SimMember>,
    by_addr: HashMap<SocketAddr, usize>,
    buf: Vec<u8>,
    stats: NetStats,
    pending_lookups: BTreeMap<(usize, LookupId), (u64, Instant)>,
    finished_lookups: Vec<LookupRecord>,
    violations: Vec<String>,
    /// The oracle while membership does not change (dropped by actions,
    /// joins and leaves).
    oracle_cache: Option<Oracle>,
}

impl Sim {
    /// An empty simulation.
    pub fn new(cfg: SimConfig) -> Self {
        Sim {
            rng: Rng::new(cfg.seed),
            cfg,
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            members: Vec::new(),
            by_addr: HashMap::new(),
            buf: Vec::with_capacity(512),
            stats: NetStats::default(),
            pending_lookups: BTreeMap::new(),
            finished_lookups: Vec::new(),
            violations: Vec::new(),
            oracle_cache: None,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The simulation's RNG (for scenario choices that must follow the seed).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Datagram counters.
    pub fn net_stats(&self) -> NetStats {
        self.stats
    }

    /// Every member ever added, by index.
    pub fn members(&self) -> &[SimMember] {
        &self.members
    }

    /// The node of member `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.members[i].node
    }

    /// Events that did not add up (an `Acquired` not adjacent to the slice
    /// held, for instance). Empty in a correct run.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// The stabilization round, the unit of reconvergence times.
    pub fn round(&self) -> Duration {
        self.cfg.node.stabilize_interval
    }

    /// Adds a member for core `core` of proxy number `proxy` (address
    /// 10.x.y.z, port 7000 + core; identifier `member_id("proxy-N", core)`),
    /// not yet joined. Returns its index.
    pub fn add_member(&mut self, proxy: u32, core: u16) -> usize {
        let [_, a, b, c] = proxy.to_be_bytes();
        let addr = SocketAddr::from((Ipv4Addr::new(10, a, b, c), 7000 + core));
        let id = member_id(format!("proxy-{proxy}").as_bytes(), core);
        self.add_member_at(Member::new(id, addr, core))
    }

    /// Adds `member` (its address must be new), not yet joined.
    pub fn add_member_at(&mut self, member: Member) -> usize {
        let i = self.members.len();
        let prev = self.by_addr.insert(member.addr, i);
        assert!(prev.is_none(), "two simulated members at {}", member.addr);
        self.members.push(SimMember {
            node: Node::new(member, self.cfg.node.clone()),
            alive: true,
            group: 0,
            wake: None,
            event_slice: None,
        });
        i
    }

    /// Replaces crashed member `i` by a fresh node with the same identity
    /// (a restarted proxy core), not yet joined.
    pub fn restart(&mut self, i: usize) {
        let me = self.members[i].node.me();
        let m = &mut self.members[i];
        m.node = Node::new(me, self.cfg.node.clone());
        m.alive = true;
        m.wake = None;
        m.event_slice = None;
        self.oracle_cache = None;
    }

    /// Schedules `action` at `at`.
    pub fn schedule(&mut self, at: Instant, action: Action) {
        self.push(at, Kind::Act(action));
    }

    /// Does `action` now.
    pub fn act(&mut self, action: Action) {
        self.oracle_cache = None;
        match action {
            Action::Join(i) => {
                if !self.members[i].alive
                    || !matches!(self.members[i].node.state(), State::Idle | State::Left)
                {
                    return;
                }
                let live = self.live_indices();
                let now = self.now;
                if live.is_empty() {
                    self.members[i].node.create(now);
                } else {
                    let via = live[self.rng.index(live.len())];
                    let addr = self.members[via].node.me().addr;
                    self.members[i].node.join(now, addr);
                }
                self.drain(i);
            }
            Action::Crash(i) => {
                self.members[i].alive = false;
                self.members[i].wake = None;
            }
            Action::Leave(i) => {
                if self.members[i].alive {
                    let now = self.now;
                    self.members[i].node.leave(now);
                    self.drain(i);
                }
            }
        }
    }

    /// Puts each member in the group `group(index)`; datagrams between
    /// groups are dropped until `heal`.
    pub fn partition(&mut self, mut group: impl FnMut(usize) -> u32) {
        for (i, m) in self.members.iter_mut().enumerate() {
            m.group = group(i);
        }
    }

    /// Changes the loss rate from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        for m in &mut self.members {
            m.group = 0;
        }
    }

    /// Runs every event up to and including `until`; the clock ends there.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse(ev)) = self.queue.peek() {
            if ev.at > until {
                break;
            }
            let Some(Reverse(ev)) = self.queue.pop() else {
                break;
            };
            self.now = ev.at;
            self.process(ev.kind);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `check` passes (tested every `every`) or `limit` has
    /// passed; returns how long it took.
    pub fn run_until_ok(
        &mut self,
        limit: Duration,
        every: Duration,
        mut check: impl FnMut(&Sim) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let start = self.now;
        loop {
            match check(self) {
                Ok(()) => return Ok(self.now - start),
                Err(e) if self.now - start >= limit => {
                    return Err(format!("not converged after {:?}: {e}", self.now - start));
                }
                Err(_) => self.run_for(every),
            }
        }
    }

    fn push(&mut self, at: Instant, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn process(&mut self, kind: Kind) {
        match kind {
            Kind::Deliver { from, to, data } => {
                if !self.members[to].alive {
                    self.stats.to_dead += 1;
                    return;
                }
                if self.members[to].group != self.members[from].group {
                    self.stats.partitioned += 1;
                    return;
                }
                self.stats.delivered += 1;
                let src = self.members[from].node.me().addr;
                let now = self.now;
                if let Err(e) = self.members[to].node.handle(now, src, &data) {
                    self.violations
                        .push(format!("member {to} rejected a datagram: {e}"));
                }
                self.drain(to);
            }
            Kind::Wake(i) => {
                let m = &mut self.members[i];
                if !m.alive || m.wake != Some(self.now) {
                    return;
                }
                m.wake = None;
                let now = self.now;
                m.node.handle_timeout(now);
                self.drain(i);
            }
            Kind::Act(a) => self.act(a),
        }
    }

    /// Sends what member `i` queued, records its events, schedules its wake.
    fn drain(&mut self, i: usize) {
        let state = self.members[i].node.state();
        loop {
            self.send_queued(i);
            let mut join_failed = false;
            while let Some(ev) = self.members[i].node.poll_event() {
                join_failed |= matches!(ev, Event::JoinFailed(_));
                self.record_event(i, ev);
            }
            if !join_failed {
                break;
            }
            // As a shell would: offer another member to join through (the
            // one it tried may have crashed since).
            let live = self.live_indices();
            if live.is_empty() {
                break;
            }
            let via = live[self.rng.index(live.len())];
            let addr = self.members[via].node.me().addr;
            let now = self.now;
            self.members[i].node.hint(now, addr);
        }
        if self.members[i].node.state() != state {
            self.oracle_cache = None;
        }
        let m = &mut self.members[i];
        let next = m.node.poll_timeout();
        if let Some(t) = next
            && m.wake != Some(t)
        {
            m.wake = Some(t);
            let t = t.max(self.now);
            self.push(t, Kind::Wake(i));
        } else if next.is_none() {
            m.wake = None;
        }
    }

    fn send_queued(&mut self, i: usize) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(t) = self.members[i].node.poll_send(&mut buf) {
            self.stats.sent += 1;
            self.stats.bytes += t.len as u64;
            let Some(&to) = self.by_addr.get(&t.dest) else {
                self.stats.to_dead += 1;
                continue;
            };
            if self.rng.chance(self.cfg.loss) {
                self.stats.lost += 1;
                continue;
            }
            let at = self.now
                + self
                    .rng
                    .duration(self.cfg.latency_min, self.cfg.latency_max);
            self.push(
                at,
                Kind::Deliver {
                    from: i,
                    to,
                    data: buf[..t.len].to_vec(),
                },
            );
        }
        self.buf = buf;
    }

    fn record_event(&mut self, i: usize, ev: Event) {
        let me = self.members[i].node.me();
        match ev {
            Event::Acquired { slice, .. } => {
                let m = &mut self.members[i];
                m.event_slice = match m.event_slice {
                    None if slice.end == me.id => Some(slice),
                    Some(s) if slice.end == s.start && !s.is_whole() => {
                        Some(Slice::new(slice.start, me.id))
                    }
                    other => {
                        self.violations.push(format!(
                            "member {i}: acquired {slice} while holding {other:?}"
                        ));
                        Some(Slice::new(slice.start, me.id))
                    }
                };
            }
            Event::Released { slice, .. } => {
                let m = &mut self.members[i];
                m.event_slice = match m.event_slice {
                    Some(s) if s.start == slice.start && slice.end == me.id => None,
                    Some(s) if s.start == slice.start && s.contains(slice.end) => {
                        Some(Slice::new(slice.end, me.id))
                    }
                    other => {
                        self.violations.push(format!(
                            "member {i}: released {slice} while holding {other:?}"
                        ));
                        None
                    }
                };
            }
            Event::Lookup { id, key, result } => {
                if let Some((_, started)) = self.pending_lookups.remove(&(i, id)) {
                    let (owner, hops) = match result {
                        Ok(a) => (Some(a.owner), a.hops),
                        Err(_) => (None, 0),
                    };
                    let truth = self
                        .oracle_cache
                        .get_or_insert_with(|| Self::build_oracle(&self.members))
                        .owner(key);
                    self.finished_lookups.push(LookupRecord {
                        from: i,
                        key,
                        owner,
                        truth,
                        hops,
                        latency: self.now - started,
                    });
                }
            }
            Event::Joined => self.oracle_cache = None,
            Event::Left => {
                self.oracle_cache = None;
                if self.members[i].event_slice.is_some() {
                    self.violations
                        .push(format!("member {i} left holding a slice"));
                }
            }
            Event::JoinFailed(_) | Event::RoutingChanged(_) => {}
        }
    }

    // ---- the oracle ----

    /// Indices of the live members (alive and joined), in ring order.
    pub fn live_indices(&self) -> Vec<usize> {
        self.oracle().live
    }

    /// The true owner of `key`: its successor among the live members.
    pub fn true_owner(&self, key: u64) -> Option<Member> {
        self.oracle().owner(key)
    }

    /// The sorted live members, built once for many questions.
    pub fn oracle(&self) -> Oracle {
        match &self.oracle_cache {
            Some(o) => o.clone(),
            None => Self::build_oracle(&self.members),
        }
    }

    fn build_oracle(members: &[SimMember]) -> Oracle {
        let mut live: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].alive && members[i].node.state() == State::Joined)
            .collect();
        live.sort_by_key(|&i| members[i].node.me().id);
        Oracle {
            members: live.iter().map(|&i| members[i].node.me()).collect(),
            live,
        }
    }

    /// Every live member's predecessor, successor and slice are the true
    /// ones and its events add up to its slice: the slices tile the ring,
    /// so every key has exactly one owner, its successor.
    pub fn check_ownership(&self) -> Result<(), String> {
        let live = self.live_indices();
        if live.is_empty() {
            return Err("no live member: every key is without an owner".into());
        }
        let n = live.len();
        for (k, &i) in live.iter().enumerate() {
            let node = &self.members[i].node;
            let me = node.me();
            let pred = self.members[live[(k + n - 1) % n]].node.me();
            let succ = self.members[live[(k + 1) % n]].node.me();
            let want_slice = if n == 1 {
                Slice::whole(me.id)
            } else {
                Slice::new(pred.id, me.id)
            };
            if node.slice() != Some(want_slice) {
                let p = &self.members[live[(k + n - 1) % n]].node;
                return Err(format!(
                    "member {i} {me}: slice {:?}, want {want_slice}; its predecessor {:?}; the true \
                     predecessor's successors {:?}",
                    node.slice(),
                    node.predecessor(),
                    p.successors()
                ));
            }
            if self.members[i].event_slice != node.slice() {
                return Err(format!(
                    "member {i} {me}: events add up to {:?}, slice {:?}",
                    self.members[i].event_slice,
                    node.slice()
                ));
            }
            if n > 1 && node.predecessor() != Some(pred) {
                return Err(format!(
                    "member {i} {me}: predecessor {:?}, want {pred}",
                    node.predecessor()
                ));
            }
            if node.successor() != succ {
                let w = &self.members[live[(k + 1) % n]].node;
                return Err(format!(
                    "member {i} {me}: successor {}, want {succ} (whose predecessor is {:?}, successor {})",
                    node.successor(),
                    w.predecessor(),
                    w.successor()
                ));
            }
        }
        // The slices tile the ring: consecutive, so their sizes sum to 2^64.
        let total: u128 = live
            .iter()
            .filter_map(|&i| self.members[i].node.slice())
            .map(|s| s.len())
            .sum();
        if total != 1u128 << 64 {
            return Err(format!("slices cover {total} identifiers, not 2^64"));
        }
        Ok(())
    }

    /// No member is half way in or out (joining or leaving): the oracle's
    /// set of live members will not change by itself.
    pub fn check_settled(&self) -> Result<(), String> {
        for (i, m) in self.members.iter().enumerate() {
            if m.alive && matches!(m.node.state(), State::Joining | State::Leaving) {
                return Err(format!("member {i} is {:?}", m.node.state()));
            }
        }
        Ok(())
    }

    /// Every live member's successor list holds exactly the next r live
    /// members (fewer in a smaller ring).
    pub fn check_successor_lists(&self) -> Result<(), String> {
        let live = self.live_indices();
        let n = live.len();
        let r = self.cfg.node.successors.min(n.saturating_sub(1));
        for (k, &i) in live.iter().enumerate() {
            let want: Vec<Member> = (1..=r)
                .map(|d| self.members[live[(k + d) % n]].node.me())
                .collect();
            if self.members[i].node.successors() != want.as_slice() {
                return Err(format!(
                    "member {i}: successor list differs from the true one"
                ));
            }
        }
        Ok(())
    }

    /// Every live member's fingers point at the true owners of their starts.
    pub fn check_fingers(&self) -> Result<(), String> {
        let oracle = self.oracle();
        for &i in &oracle.live {
            let node = &self.members[i].node;
            let me = node.me();
            for (b, f) in node.fingers().iter().enumerate() {
                let owner = oracle.owner(me.id.wrapping_add(1 << b));
                let want = owner.filter(|o| *o != me);
                if *f != want {
                    return Err(format!("member {i}: finger {b} is {f:?}, want {want:?}"));
                }
            }
        }
        Ok(())
    }

    /// Builds a ring of `count` new members (proxy i, core 0): the first
    /// creates it, the rest join in waves (each wave a quarter of the ring
    /// so far, spread over one stabilization round, each through a random
    /// member), then runs until ownership has converged and every finger is
    /// right. Returns the new members' indices.
    pub fn build_ring(&mut self, count: usize) -> Result<Vec<usize>, String> {
        let first = self.members.len() as u32;
        let new: Vec<usize> = (0..count as u32)
            .map(|p| self.add_member(first + p, 0))
            .collect();
        let round = self.round();
        let mut next = 0;
        while next < new.len() {
            let live = self.live_indices().len();
            let wave = (live / 4).max(1).min(new.len() - next);
            for k in 0..wave {
                let at = self.now + round.mul_f64(k as f64 / wave as f64);
                self.schedule(at, Action::Join(new[next + k]));
            }
            next += wave;
            self.run_for(round);
        }
        let limit = round * 120;
        self.run_until_ok(limit, round / 10, |s| {
            s.check_ownership()?;
            if s.live_indices().len() != s.members.iter().filter(|m| m.alive).count() {
                return Err("not every member has joined".into());
            }
            s.check_fingers()
        })?;
        Ok(new)
    }

    /// Starts a lookup of `key` at member `from`.
    pub fn lookup(&mut self, from: usize, key: u64) {
        let now = self.now;
        let id = self.members[from].node.lookup(now, key);
        self.pending_lookups.insert((from, id), (key, now));
        self.drain(from);
    }

    /// Runs `count` lookups of random keys from random live members (one
    /// every `spacing`), waits up to `limit` for them, and reports.
    pub fn lookups(&mut self, count: usize, spacing: Duration, limit: Duration) -> LookupReport {
        self.finished_lookups.clear();
        self.pending_lookups.clear();
        for _ in 0..count {
            let live = self.live_indices();
            if live.is_empty() {
                break;
            }
            let from = live[self.rng.index(live.len())];
            let key = self.rng.next_u64();
            self.lookup(from, key);
            self.run_for(spacing);
        }
        let deadline = self.now + limit;
        while !self.pending_lookups.is_empty() && self.now < deadline {
            self.run_for(Duration::from_millis(10));
        }
        LookupReport {
            records: std::mem::take(&mut self.finished_lookups),
            unfinished: std::mem::take(&mut self.pending_lookups).len(),
        }
    }

    /// How many live members' slices hold `key` (1 in a converged ring).
    pub fn owners_of(&self, key: u64) -> usize {
        self.live_indices()
            .iter()
            .filter(|&&i| {
                self.members[i]
                    .node
                    .slice()
                    .is_some_and(|s| in_half_open(key, s.start, s.end))
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let va: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(Rng::new(43).next_u64(), va[0]);
        let mut r = Rng::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..10_000 {
            counts[r.index(10)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
        let hits = (0..10_000).filter(|_| r.chance(0.1)).count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert!(!r.chance(0.0));
    }
}
