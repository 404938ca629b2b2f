//! The per-core routing cache: key -> owner without a lock and, in steady
//! state, without a network hop.
//!
//! Two parts:
//! - `RoutingSnapshot`: an immutable copy of what a member knows (its slice,
//!   predecessor, successor list, fingers), produced by `Node::snapshot`
//!   and delivered in `Event::RoutingChanged`. It is shared as an
//!   `Arc<RoutingSnapshot>`: the core that runs the node sends the `Arc` to
//!   the other cores over the shell's channel mesh, and each core installs
//!   it in its own cache. Nothing is ever written through the `Arc`, so a
//!   core reads it without a lock or an atomic beyond the one `Arc` clone
//!   per routing change (the "swapped by message" option of the issue:
//!   state is owned by one core and reached by message, as
//!   docs/architecture.md asks; no `ArcSwap` or epoch collection needed).
//! - `RoutingCache`: owned by value by one core. It holds the slices the
//!   snapshot knows exactly (this member's own, and those between
//!   consecutive successors) plus the answers of cold lookups, each of
//!   which names a whole slice, so one cold lookup per member makes every
//!   later key of that member's slice a hit. A lookup reads a bucket index
//!   over the identifier's top bits and one or two slice ends (see
//!   `RoutingCache`). When the routing version
//!   changes (a member joined, failed or left as far as this member can
//!   tell) every cached answer is dropped.
//!
//! A cached owner can still be wrong: a member can join far away without
//! this one noticing (Chord is eventually consistent). The owner always
//! checks `Node::owns(key)`; on "not mine" the sender calls `forget` and
//! looks the key up again.

use std::sync::Arc;

use crate::id::{Slice, in_half_open, in_open};
use crate::member::Member;
use crate::node::Answer;

/// What one member knew about the ring at one routing version. Immutable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingSnapshot {
    version: u64,
    me: Member,
    slice: Option<Slice>,
    predecessor: Option<Member>,
    successors: Vec<Member>,
    fingers: Vec<Member>,
    /// The slices whose owner is known exactly.
    known: Vec<(Slice, Member)>,
}

impl RoutingSnapshot {
    pub(crate) fn new(
        version: u64,
        me: Member,
        slice: Option<Slice>,
        predecessor: Option<Member>,
        successors: Vec<Member>,
        finger_table: &[Option<Member>],
    ) -> Self {
        let mut fingers: Vec<Member> = Vec::new();
        for f in finger_table.iter().flatten() {
            if !fingers.contains(f) {
                fingers.push(*f);
            }
        }
        fingers.sort_by_key(|f| f.id.wrapping_sub(me.id));
        let mut known = Vec::with_capacity(successors.len() + 1);
        if let Some(s) = slice {
            known.push((s, me));
        }
        let mut prev = me.id;
        for s in &successors {
            known.push((Slice::new(prev, s.id), *s));
            prev = s.id;
        }
        RoutingSnapshot {
            version,
            me,
            slice,
            predecessor,
            successors,
            fingers,
            known,
        }
    }

    /// The member's routing version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The member it describes.
    pub fn me(&self) -> Member {
        self.me
    }

    /// Its slice.
    pub fn slice(&self) -> Option<Slice> {
        self.slice
    }

    /// Its predecessor.
    pub fn predecessor(&self) -> Option<Member> {
        self.predecessor
    }

    /// Its successor list, nearest first.
    pub fn successors(&self) -> &[Member] {
        &self.successors
    }

    /// The distinct members of its finger table, in ring order from it.
    pub fn fingers(&self) -> &[Member] {
        &self.fingers
    }

    /// The slices whose owner the member knows exactly: its own, and those
    /// between consecutive successors.
    pub fn known_slices(&self) -> &[(Slice, Member)] {
        &self.known
    }

    /// The owner of `key` if one of the known slices holds it.
    pub fn owner(&self, key: u64) -> Option<Member> {
        self.known
            .iter()
            .find(|(s, _)| s.contains(key))
            .map(|(_, m)| *m)
    }

    /// The known member closest before `key` (where a lookup starts).
    pub fn next_hop(&self, key: u64) -> Option<Member> {
        self.fingers
            .iter()
            .chain(self.successors.iter())
            .filter(|m| in_open(m.id, self.me.id, key))
            .min_by_key(|m| key.wrapping_sub(m.id))
            .copied()
    }
}

/// One core's cache of key -> owner. See the module docs.
///
/// Layout: the cached slices that do not wrap past zero as three parallel
/// arrays sorted by slice end, plus a bucket index over the top bits of
/// the identifier (about two buckets per slice) giving, for each bucket,
/// the first slice ending in or after it. Member identifiers are hashes,
/// so a bucket holds one or two slice ends and a lookup reads the index,
/// one or two ends, and the hit's start and owner: a handful of loads
/// whatever the ring's size, where a plain binary search over 65,536
/// slices takes 16 dependent ones. An insert is O(n) (arrays shift, index
/// rebuilt), paid once per cold lookup.
#[derive(Debug)]
pub struct RoutingCache {
    snapshot: Arc<RoutingSnapshot>,
    ends: Vec<u64>,
    starts: Vec<u64>,
    owners: Vec<Member>,
    /// `first[b]`: index of the first end >= `b << shift`; one more entry
    /// than there are buckets (the last is `ends.len()`).
    first: Vec<u32>,
    shift: u32,
    /// The one cached slice that wraps past zero (or is the whole ring).
    wrap: Option<(Slice, Member)>,
    capacity: usize,
}

impl RoutingCache {
    /// Answers kept before the cache starts over (65,536 slices: a ring of
    /// that many members fits).
    pub const DEFAULT_CAPACITY: usize = 1 << 16;

    /// A cache over `snapshot`.
    pub fn new(snapshot: Arc<RoutingSnapshot>) -> Self {
        Self::with_capacity(snapshot, Self::DEFAULT_CAPACITY)
    }

    /// A cache over `snapshot` holding at most `capacity` slices (at most
    /// 2^20).
    pub fn with_capacity(snapshot: Arc<RoutingSnapshot>, capacity: usize) -> Self {
        let mut c = RoutingCache {
            snapshot,
            ends: Vec::new(),
            starts: Vec::new(),
            owners: Vec::new(),
            first: Vec::new(),
            shift: 63,
            wrap: None,
            capacity: capacity.clamp(1, 1 << 20),
        };
        c.reload();
        c
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Arc<RoutingSnapshot> {
        &self.snapshot
    }

    /// Number of slices held.
    pub fn len(&self) -> usize {
        self.ends.len() + usize::from(self.wrap.is_some())
    }

    /// Does the cache hold no slice?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Installs a newer snapshot (delivered by message). A different
    /// routing version drops every cached answer.
    pub fn install(&mut self, snapshot: Arc<RoutingSnapshot>) {
        let changed = snapshot.version != self.snapshot.version || snapshot.me != self.snapshot.me;
        self.snapshot = snapshot;
        if changed {
            self.reload();
        }
    }

    /// The cached owner of `key`, if any: no lock, no allocation, no hop.
    #[inline]
    pub fn lookup(&self, key: u64) -> Option<Member> {
        let b = (key >> self.shift) as usize;
        if let (Some(&lo), Some(&hi)) = (self.first.get(b), self.first.get(b + 1))
            && let Some(bucket) = self.ends.get(lo as usize..hi as usize)
        {
            let i = lo as usize + bucket.partition_point(|&e| e < key);
            if let (Some(&end), Some(&start), Some(owner)) =
                (self.ends.get(i), self.starts.get(i), self.owners.get(i))
                && in_half_open(key, start, end)
            {
                return Some(*owner);
            }
        }
        match self.wrap {
            Some((s, m)) if s.contains(key) => Some(m),
            _ => None,
        }
    }

    /// Caches a cold lookup's answer (its whole slice). Answers from before
    /// the installed routing version are ignored (returns false): the ring
    /// changed since they were given.
    pub fn insert(&mut self, answer: &Answer) -> bool {
        if answer.version < self.snapshot.version {
            return false;
        }
        if self.len() >= self.capacity {
            self.reload();
        }
        if answer.slice.start < answer.slice.end {
            self.put_sorted(answer.slice, answer.owner);
        } else {
            // The one slice that wraps past zero: rare, done the long way.
            self.put(answer.slice, answer.owner);
            self.reindex();
        }
        true
    }

    /// `put` for a slice that does not wrap, in O(log n) searches plus
    /// the arrays' shift and an update of the index's tail: the slices it
    /// overlaps are the ones ending inside it and the one after them if
    /// that one holds its end.
    fn put_sorted(&mut self, slice: Slice, owner: Member) {
        let (s, e) = (slice.start, slice.end);
        if self
            .wrap
            .is_some_and(|(w, _)| w.contains(e) || slice.contains(w.end))
        {
            self.wrap = None;
        }
        let lo = self.ends.partition_point(|&x| x <= s);
        let mut hi = self.ends.partition_point(|&x| x <= e);
        if self.starts.get(hi).is_some_and(|&start| start < e) {
            hi += 1;
        }
        self.ends.splice(lo..hi, [e]);
        self.starts.splice(lo..hi, [s]);
        self.owners.splice(lo..hi, [owner]);
        self.reindex_after(lo, hi, e);
    }

    /// Updates the index after slices `lo..hi` were replaced by one ending
    /// at `end` (now at `lo`); rebuilds it when the bucket count changes.
    fn reindex_after(&mut self, lo: usize, hi: usize, end: u64) {
        let n = self.ends.len();
        let buckets = self.first.len().saturating_sub(1);
        if Self::bucket_bits(n) != 64 - self.shift || buckets != 1 << (64 - self.shift) {
            self.reindex();
            return;
        }
        // Buckets whose first slice was before `lo` are unchanged; the rest
        // point at the new slice if it ends in or after them, else shift.
        let from = self.first[..buckets].partition_point(|&f| (f as usize) < lo);
        for b in from..buckets {
            let f = self.first[b] as usize;
            let bucket_start = (b as u64) << self.shift;
            let nf = if end >= bucket_start {
                lo
            } else {
                f.max(hi) - (hi - lo) + 1
            };
            self.first[b] = nf as u32;
        }
        self.first[buckets] = n as u32;
    }

    fn bucket_bits(n: usize) -> u32 {
        (usize::BITS - n.leading_zeros()).clamp(1, 21)
    }

    /// Drops every slice cached for `owner` (it failed, or said a key is
    /// not its own).
    pub fn forget(&mut self, owner: &Member) {
        if self.wrap.is_some_and(|(_, m)| m == *owner) {
            self.wrap = None;
        }
        self.remove_where(|_, m| m == owner);
        self.reindex();
    }

    fn reload(&mut self) {
        self.ends.clear();
        self.starts.clear();
        self.owners.clear();
        self.wrap = None;
        let snapshot = Arc::clone(&self.snapshot);
        for (s, m) in snapshot.known_slices() {
            self.put(*s, *m);
        }
        self.reindex();
    }

    /// Inserts `(slice, owner)`, first removing the slices it overlaps.
    /// The caller reindexes.
    fn put(&mut self, slice: Slice, owner: Member) {
        // Two arcs overlap exactly when one holds the other's end.
        let overlaps = |s: &Slice| s.contains(slice.end) || slice.contains(s.end);
        if self.wrap.is_some_and(|(s, _)| overlaps(&s)) {
            self.wrap = None;
        }
        self.remove_where(|s, _| overlaps(&s));
        if slice.start >= slice.end {
            self.wrap = Some((slice, owner));
        } else {
            let at = self.ends.partition_point(|&e| e < slice.end);
            self.ends.insert(at, slice.end);
            self.starts.insert(at, slice.start);
            self.owners.insert(at, owner);
        }
    }

    fn remove_where(&mut self, mut gone: impl FnMut(Slice, &Member) -> bool) {
        let mut w = 0;
        for r in 0..self.ends.len() {
            if !gone(Slice::new(self.starts[r], self.ends[r]), &self.owners[r]) {
                self.ends[w] = self.ends[r];
                self.starts[w] = self.starts[r];
                self.owners[w] = self.owners[r];
                w += 1;
            }
        }
        self.ends.truncate(w);
        self.starts.truncate(w);
        self.owners.truncate(w);
    }

    /// Rebuilds the bucket index: 2^k buckets for n slices, 2^k > n.
    fn reindex(&mut self) {
        let n = self.ends.len();
        let k = Self::bucket_bits(n);
        self.shift = 64 - k;
        let buckets = 1usize << k;
        self.first.clear();
        self.first.reserve(buckets + 1);
        let mut i = 0;
        for b in 0..buckets as u64 {
            let lo = b << self.shift;
            while i < n && self.ends[i] < lo {
                i += 1;
            }
            self.first.push(i as u32);
        }
        self.first.push(n as u32);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn m(id: u64) -> Member {
        Member::new(id, SocketAddr::from(([10, 0, 0, 1], 7000)), (id % 7) as u16)
    }

    fn answer(start: u64, owner: u64, version: u64) -> Answer {
        Answer {
            key: owner,
            owner: m(owner),
            slice: Slice::new(start, owner),
            hops: 3,
            version,
        }
    }

    fn snapshot(version: u64) -> Arc<RoutingSnapshot> {
        // Member 100 with predecessor 50 and successors 200, 300.
        Arc::new(RoutingSnapshot::new(
            version,
            m(100),
            Some(Slice::new(50, 100)),
            Some(m(50)),
            vec![m(200), m(300)],
            &[Some(m(200)), Some(m(200)), Some(m(1000)), None],
        ))
    }

    #[test]
    fn snapshot_knows_its_slice_and_the_successor_chain() {
        let s = snapshot(1);
        assert_eq!(s.owner(51), Some(m(100)));
        assert_eq!(s.owner(100), Some(m(100)));
        assert_eq!(s.owner(101), Some(m(200)));
        assert_eq!(s.owner(300), Some(m(300)));
        assert_eq!(s.owner(301), None);
        assert_eq!(s.owner(50), None);
        assert_eq!(s.fingers(), &[m(200), m(1000)]);
        assert_eq!(s.next_hop(5000), Some(m(1000)));
        assert_eq!(s.next_hop(250), Some(m(200)));
    }

    #[test]
    fn answers_fill_the_cache_and_a_new_version_drops_them() {
        let mut c = RoutingCache::new(snapshot(1));
        assert_eq!(c.len(), 3);
        assert_eq!(c.lookup(150), Some(m(200)));
        assert_eq!(c.lookup(500), None);
        assert!(c.insert(&answer(400, 600, 1)));
        assert_eq!(c.lookup(401), Some(m(600)));
        assert_eq!(c.lookup(600), Some(m(600)));
        assert_eq!(c.lookup(400), None);
        assert_eq!(c.lookup(601), None);
        // An answer from an older routing version is refused.
        c.install(snapshot(2));
        assert_eq!(c.lookup(500), None, "dropped on a new version");
        assert_eq!(c.lookup(150), Some(m(200)), "the snapshot's slices stay");
        assert!(!c.insert(&answer(400, 600, 1)));
        assert!(c.insert(&answer(400, 600, 2)));
        // The same version again keeps the answers.
        c.install(snapshot(2));
        assert_eq!(c.lookup(500), Some(m(600)));
    }

    #[test]
    fn wrapping_slices_and_overlaps() {
        let mut c = RoutingCache::new(snapshot(1));
        assert!(c.insert(&answer(u64::MAX - 10, 5, 1)));
        assert_eq!(c.lookup(u64::MAX), Some(m(5)));
        assert_eq!(c.lookup(0), Some(m(5)));
        assert_eq!(c.lookup(5), Some(m(5)));
        assert_eq!(c.lookup(6), None);
        // A member joined at 3: its answer replaces the overlapping slice.
        assert!(c.insert(&answer(u64::MAX - 10, 3, 1)));
        assert_eq!(c.lookup(0), Some(m(3)));
        assert_eq!(c.lookup(4), None);
        // A new answer overlapping two cached slices replaces both.
        assert!(c.insert(&answer(1000, 2000, 1)));
        assert!(c.insert(&answer(2000, 3000, 1)));
        assert!(c.insert(&answer(1500, 2500, 1)));
        assert_eq!(c.lookup(1200), None);
        assert_eq!(c.lookup(2001), Some(m(2500)));
        assert_eq!(c.lookup(2600), None);
        c.forget(&m(2500));
        assert_eq!(c.lookup(2001), None);
        c.forget(&m(3));
        assert_eq!(c.lookup(0), None);
    }

    #[test]
    fn a_full_cache_starts_over() {
        let mut c = RoutingCache::with_capacity(snapshot(1), 5);
        for i in 0..10u64 {
            assert!(c.insert(&answer(10_000 + i * 10, 10_000 + i * 10 + 5, 1)));
            assert!(c.len() <= 5 + 1);
        }
        assert_eq!(c.lookup(10_095), Some(m(10_095)));
        assert_eq!(c.lookup(150), Some(m(200)));
    }

    #[test]
    fn lookups_agree_with_a_linear_scan() {
        // Random answers (some wrapping, some overlapping earlier ones)
        // against a plain list with the same replace-on-overlap rule.
        let mut rng = crate::sim::Rng::new(3);
        let mut c = RoutingCache::new(snapshot(1));
        let mut model: Vec<(Slice, Member)> = snapshot(1).known_slices().to_vec();
        for round in 0..2000u64 {
            let start = rng.next_u64();
            let len = 1 + rng.below(if round % 3 == 0 {
                u64::MAX / 64
            } else {
                u64::MAX / 4096
            });
            let slice = Slice::new(start, start.wrapping_add(len));
            let owner = m(slice.end);
            model.retain(|(s, _)| !(s.contains(slice.end) || slice.contains(s.end)));
            model.push((slice, owner));
            assert!(c.insert(&Answer {
                key: slice.end,
                owner,
                slice,
                hops: 1,
                version: 1,
            }));
            assert_eq!(c.len(), model.len());
            // The index kept up incrementally equals a fresh one.
            let kept = c.first.clone();
            c.reindex();
            assert_eq!(kept, c.first, "round {round}");
            for _ in 0..20 {
                let probe = match rng.below(3) {
                    0 => rng.next_u64(),
                    1 => model[rng.index(model.len())].0.end,
                    _ => model[rng.index(model.len())].0.start,
                };
                let want = model
                    .iter()
                    .find(|(s, _)| s.contains(probe))
                    .map(|(_, m)| *m);
                assert_eq!(c.lookup(probe), want, "round {round}, key {probe:#x}");
            }
        }
    }

    #[test]
    fn whole_ring_owner() {
        let alone = Arc::new(RoutingSnapshot::new(
            1,
            m(7),
            Some(Slice::whole(7)),
            None,
            vec![],
            &[],
        ));
        let c = RoutingCache::new(alone);
        for k in [0, 7, 8, u64::MAX] {
            assert_eq!(c.lookup(k), Some(m(7)));
        }
    }
}
