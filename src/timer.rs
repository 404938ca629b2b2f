//! The per-core timer wheel.
//!
//! Every core keeps its protocol timers (transaction timers A–M, Timer C,
//! DNS cache expiry) in one hierarchical timing wheel: six levels of 64 slots
//! with a 1 ms tick, covering about 2.2 years. Insert, cancel and reschedule
//! are O(1) (an intrusive doubly linked list per slot, entries in a slab);
//! finding the next deadline is O(levels) with one occupancy bitmap per level.
//! An entry far in the future sits in a coarse slot and cascades to finer
//! levels as time approaches it, so it costs nothing until then.
//!
//! The wheel reads no clock: `poll_expired(now)` is given the time, and
//! `next_deadline()` tells the driver when to call it again. A deadline at a
//! coarse level is reported as its slot's start, which is never later than
//! the true deadline; the driver then wakes, the entries cascade, and the
//! next call reports the exact time. A timer never fires before its deadline
//! (deadlines round up to the next tick).
//!
//! Why not a binary heap: cancellation is the common case here (a transaction
//! that completes cancels its retransmission and timeout timers), and a heap
//! with lazy deletion keeps every cancelled Timer C entry for three minutes.

use std::fmt;

use crate::time::Instant;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 6;
/// The span of the top level, in ticks: deadlines farther away wait in the
/// top level's last slot and are placed again when it is reached.
const TOP_RANGE: u64 = 1 << (SLOT_BITS as usize * LEVELS);
const NANOS_PER_TICK: u64 = 1_000_000;
const NIL: u32 = u32::MAX;
/// The list index of the expired list (after the LEVELS * SLOTS slot lists).
const EXPIRED: u16 = (LEVELS * SLOTS) as u16;
/// The list index of a free slab entry.
const FREE: u16 = EXPIRED + 1;

/// Identifies one scheduled timer. Stale keys (of a timer that fired or was
/// cancelled) are recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

struct Entry<T> {
    value: Option<T>,
    generation: u32,
    /// Deadline in ticks.
    deadline: u64,
    prev: u32,
    next: u32,
    /// Which list the entry is on: a slot (level * SLOTS + slot), EXPIRED or FREE.
    list: u16,
}

/// A hierarchical timing wheel holding values of type `T`.
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    /// Heads of the slot lists, then the expired list.
    heads: Vec<u32>,
    /// Bit `s` of `occupied[l]` is set when slot `s` of level `l` is non-empty.
    occupied: [u64; LEVELS],
    /// The wheel's current time in ticks: every entry on a slot list is later.
    elapsed: u64,
    len: usize,
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("elapsed_ms", &self.elapsed)
            .finish_non_exhaustive()
    }
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new(Instant::ZERO)
    }
}

fn tick_floor(t: Instant) -> u64 {
    t.as_nanos() / NANOS_PER_TICK
}

fn tick_ceil(t: Instant) -> u64 {
    t.as_nanos().div_ceil(NANOS_PER_TICK)
}

/// The level at which a deadline `when` (> `elapsed`) is stored: the highest
/// 6-bit group in which the two differ.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (SLOT_BITS as usize * level)) as usize) & (SLOTS - 1)
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose current time is `now`.
    pub fn new(now: Instant) -> Self {
        Self::with_capacity(now, 0)
    }

    /// An empty wheel with room for `capacity` timers before it allocates.
    pub fn with_capacity(now: Instant, capacity: usize) -> Self {
        TimerWheel {
            entries: Vec::with_capacity(capacity),
            free_head: NIL,
            heads: vec![NIL; LEVELS * SLOTS + 1],
            occupied: [0; LEVELS],
            elapsed: tick_floor(now),
            len: 0,
        }
    }

    /// Number of scheduled timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `value` to expire at `deadline`. A deadline at or before the
    /// wheel's current time expires on the next `poll_expired`.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let e = &mut self.entries[index as usize];
            self.free_head = e.next;
            e.value = Some(value);
            index
        } else {
            let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 timers");
            assert!(index != NIL, "fewer than 2^32 - 1 timers");
            self.entries.push(Entry {
                value: Some(value),
                generation: 0,
                deadline: 0,
                prev: NIL,
                next: NIL,
                list: FREE,
            });
            index
        };
        self.len += 1;
        self.entries[index as usize].deadline = tick_ceil(deadline);
        self.link(index);
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancels a timer, returning its value; `None` if it already fired or
    /// was cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let index = self.live(key)?;
        self.unlink(index);
        Some(self.release(index))
    }

    /// Moves a scheduled timer to a new deadline, keeping its key. Returns
    /// false (and does nothing) if the key is stale.
    pub fn reschedule(&mut self, key: TimerKey, deadline: Instant) -> bool {
        let Some(index) = self.live(key) else {
            return false;
        };
        self.unlink(index);
        self.entries[index as usize].deadline = tick_ceil(deadline);
        self.link(index);
        true
    }

    /// The deadline of a scheduled timer (rounded up to the tick).
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        let index = self.live(key)?;
        Some(Instant::from_millis(self.entries[index as usize].deadline))
    }

    /// The value of a scheduled timer.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        let index = self.live(key)?;
        self.entries[index as usize].value.as_mut()
    }

    /// When `poll_expired` should next be called: never later than the
    /// earliest deadline (it may be earlier, when that deadline still sits
    /// in a coarse slot). `None` when the wheel is empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.heads[EXPIRED as usize] != NIL {
            return Some(Instant::from_millis(self.elapsed));
        }
        self.next_expiration()
            .map(|(_, _, tick)| Instant::from_millis(tick))
    }

    /// Removes and returns one timer whose deadline is at or before `now`,
    /// with the key it had. Call until it returns `None`.
    pub fn poll_expired(&mut self, now: Instant) -> Option<(TimerKey, T)> {
        let now_tick = tick_floor(now);
        loop {
            let head = self.heads[EXPIRED as usize];
            if head != NIL {
                self.unlink(head);
                let key = TimerKey {
                    index: head,
                    generation: self.entries[head as usize].generation,
                };
                return Some((key, self.release(head)));
            }
            match self.next_expiration() {
                Some((level, slot, tick)) if tick <= now_tick => {
                    debug_assert!(tick >= self.elapsed);
                    self.elapsed = tick;
                    self.cascade(level, slot);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now_tick);
                    return None;
                }
            }
        }
    }

    fn live(&self, key: TimerKey) -> Option<u32> {
        let e = self.entries.get(key.index as usize)?;
        (e.generation == key.generation && e.list != FREE).then_some(key.index)
    }

    /// Puts an unlinked entry on the list its deadline calls for.
    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let list = if deadline <= self.elapsed {
            EXPIRED
        } else {
            let level = level_for(self.elapsed, deadline);
            let (level, slot) = if level < LEVELS {
                (level, slot_for(deadline, level))
            } else {
                // Past the end of the top level's current span: the top level
                // is used as a circular wheel, in the slot of the deadline or,
                // when that is a full span or more away, of the farthest tick
                // it can hold. The entry is placed again when that slot comes.
                let top = LEVELS - 1;
                let placed = deadline.min(self.elapsed + TOP_RANGE - 1);
                (top, slot_for(placed, top))
            };
            self.occupied[level] |= 1 << slot;
            u16::try_from(level * SLOTS + slot).unwrap_or(EXPIRED)
        };
        let head = self.heads[list as usize];
        let e = &mut self.entries[index as usize];
        e.list = list;
        e.prev = NIL;
        e.next = head;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[list as usize] = index;
    }

    fn unlink(&mut self, index: u32) {
        let (list, prev, next) = {
            let e = &self.entries[index as usize];
            (e.list, e.prev, e.next)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[list as usize] = next;
            if next == NIL && list < EXPIRED {
                let (level, slot) = (list as usize / SLOTS, list as usize % SLOTS);
                self.occupied[level] &= !(1 << slot);
            }
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[index as usize];
        e.prev = NIL;
        e.next = NIL;
    }

    fn release(&mut self, index: u32) -> T {
        let e = &mut self.entries[index as usize];
        e.list = FREE;
        e.generation = e.generation.wrapping_add(1);
        e.next = self.free_head;
        self.free_head = index;
        self.len -= 1;
        e.value.take().expect("a live timer has a value")
    }

    /// Moves every entry of a slot that the wheel's time has reached down to
    /// a finer level, or to the expired list.
    fn cascade(&mut self, level: usize, slot: usize) {
        let list = level * SLOTS + slot;
        let mut index = self.heads[list];
        self.heads[list] = NIL;
        self.occupied[level] &= !(1 << slot);
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.link(index);
            index = next;
        }
    }

    /// The earliest non-empty slot: (level, slot, its start in ticks). The
    /// lowest non-empty level always holds the earliest deadline, because an
    /// entry at level `l` expires within the wheel's current level-`l + 1`
    /// slot while every entry above lies in a later one.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = SLOT_BITS as usize * level;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            // Search cyclically from the slot after the current one; the
            // current slot itself comes last (a full span ahead).
            let from = (slot_for(self.elapsed, level) + 1) % SLOTS;
            let zeros = occupied.rotate_right(from as u32).trailing_zeros() as usize;
            let slot = (zeros + from) % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut tick = level_start + slot as u64 * slot_range;
            if tick <= self.elapsed {
                // Only the top level wraps (an entry past its current span).
                debug_assert_eq!(level, LEVELS - 1);
                tick += level_range;
            }
            return Some((level, slot, tick));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Drives the wheel the way a shell does: jump to `next_deadline`, poll.
    fn fire_all(w: &mut TimerWheel<u32>, until: Instant) -> Vec<(u64, u32)> {
        let mut fired = Vec::new();
        let mut steps = 0;
        while let Some(t) = w.next_deadline() {
            if t > until {
                break;
            }
            while let Some((_, v)) = w.poll_expired(t) {
                fired.push((t.as_nanos() / NANOS_PER_TICK, v));
            }
            steps += 1;
            assert!(steps < 100_000, "the wheel does not make progress");
        }
        fired
    }

    #[test]
    fn fires_in_deadline_order_never_early() {
        let mut w = TimerWheel::new(ms(0));
        for (i, d) in [32_000u64, 500, 1_000, 180_000, 4_000, 1, 64, 4_096, 262_144]
            .into_iter()
            .enumerate()
        {
            w.insert(ms(d), i as u32);
        }
        let fired = fire_all(&mut w, ms(1_000_000));
        let times: Vec<u64> = fired.iter().map(|&(t, _)| t).collect();
        assert_eq!(
            times,
            vec![1, 64, 500, 1_000, 4_000, 4_096, 32_000, 180_000, 262_144]
        );
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn deadline_rounds_up_to_the_tick() {
        let mut w = TimerWheel::new(ms(0));
        w.insert(Instant::from_nanos(1_500_000), 7);
        assert_eq!(w.poll_expired(Instant::from_nanos(1_499_999)), None);
        assert_eq!(w.next_deadline(), Some(ms(2)));
        assert_eq!(w.poll_expired(ms(2)).map(|(_, v)| v), Some(7));
    }

    #[test]
    fn past_deadline_expires_at_once() {
        let mut w = TimerWheel::new(ms(1_000));
        w.insert(ms(10), 1);
        assert_eq!(w.next_deadline(), Some(ms(1_000)));
        assert_eq!(w.poll_expired(ms(1_000)).map(|(_, v)| v), Some(1));
    }

    #[test]
    fn cancel_and_stale_keys() {
        let mut w = TimerWheel::new(ms(0));
        let a = w.insert(ms(100), 1);
        let b = w.insert(ms(100), 2);
        let c = w.insert(ms(5_000), 3);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.deadline(c), Some(ms(5_000)));
        assert_eq!(w.cancel(c), Some(3));
        // The slot of `c` is freed and reused: the old key stays stale.
        let d = w.insert(ms(7), 4);
        assert_eq!(w.cancel(c), None);
        assert!(!w.reschedule(c, ms(1)));
        assert_eq!(fire_all(&mut w, ms(10_000)), vec![(7, 4), (100, 2)]);
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.cancel(d), None);
    }

    #[test]
    fn reschedule_keeps_the_key() {
        let mut w = TimerWheel::new(ms(0));
        let k = w.insert(ms(180_000), 1);
        assert!(w.reschedule(k, ms(50)));
        assert_eq!(w.deadline(k), Some(ms(50)));
        *w.get_mut(k).unwrap() = 9;
        let (fired_key, v) = w.poll_expired(ms(50)).unwrap();
        assert_eq!((fired_key, v), (k, 9));
        assert!(!w.reschedule(k, ms(60)));
    }

    #[test]
    fn a_32_second_timer_takes_no_real_time() {
        let start = std::time::Instant::now();
        let mut w = TimerWheel::new(ms(0));
        w.insert(ms(0) + Duration::from_secs(32), ());
        let mut wakeups = 0;
        let now = loop {
            let now = w.next_deadline().unwrap();
            wakeups += 1;
            if w.poll_expired(now).is_some() {
                break now;
            }
        };
        assert_eq!(now, ms(32_000));
        assert!(wakeups <= LEVELS, "{wakeups} wake-ups");
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn deadlines_beyond_the_top_level_wait_and_never_fire_early() {
        let mut w = TimerWheel::new(ms(5));
        let far = 3 * TOP_RANGE + 17;
        w.insert(ms(far), 1);
        w.insert(ms(TOP_RANGE - 1), 2);
        let mut fired = Vec::new();
        for _ in 0..1_000 {
            let t = w.next_deadline().unwrap();
            while let Some((_, v)) = w.poll_expired(t) {
                fired.push((t, v));
            }
            if w.is_empty() {
                break;
            }
        }
        assert_eq!(fired, vec![(ms(TOP_RANGE - 1), 2), (ms(far), 1)]);
    }

    /// The wheel against a BTreeMap model, under a seeded random workload of
    /// inserts, cancels, reschedules and polls at random times.
    #[test]
    fn matches_a_model_under_random_operations() {
        model_check(0x5eed, 0, [10, 1_000, 70_000, 5_000_000]);
    }

    /// The same across the end of the top level's span, with deadlines
    /// beyond it.
    #[test]
    fn matches_a_model_across_the_top_level_span() {
        model_check(
            7,
            TOP_RANGE - 30_000,
            [100, 70_000, TOP_RANGE, 3 * TOP_RANGE],
        );
    }

    fn model_check(seed: u64, start: u64, spans: [u64; 4]) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut w = TimerWheel::new(ms(start));
        // (deadline tick, id) -> key
        let mut model: BTreeMap<(u64, u32), TimerKey> = BTreeMap::new();
        let mut keys: Vec<(u32, u64, TimerKey)> = Vec::new();
        let mut now = start;
        for id in 0..20_000u32 {
            match rng.u8(0..10) {
                0..=4 => {
                    let span = spans[rng.usize(0..4)];
                    let d = now + rng.u64(0..span);
                    let k = w.insert(ms(d), id);
                    model.insert((d.max(now), id), k);
                    keys.push((id, d.max(now), k));
                }
                5 | 6 if !keys.is_empty() => {
                    let (kid, d, k) = keys.swap_remove(rng.usize(0..keys.len()));
                    let expect = model.remove(&(d, kid)).map(|_| kid);
                    assert_eq!(w.cancel(k), expect);
                }
                7 if !keys.is_empty() => {
                    let i = rng.usize(0..keys.len());
                    let (kid, d, k) = keys[i];
                    let nd = now + rng.u64(0..100_000);
                    let live = model.remove(&(d, kid)).is_some();
                    assert_eq!(w.reschedule(k, ms(nd)), live);
                    if live {
                        model.insert((nd, kid), k);
                        keys[i] = (kid, nd, k);
                    }
                }
                _ => {
                    now += if rng.u8(0..50) == 0 {
                        rng.u64(0..spans[3])
                    } else {
                        rng.u64(0..20_000)
                    };
                    let mut fired = Vec::new();
                    while let Some((k, v)) = w.poll_expired(ms(now)) {
                        fired.push((k, v));
                    }
                    let mut expect = Vec::new();
                    while let Some((&(d, kid), &k)) = model.first_key_value() {
                        if d > now {
                            break;
                        }
                        model.remove(&(d, kid));
                        expect.push((k, kid));
                    }
                    fired.sort_by_key(|&(_, v)| v);
                    expect.sort_by_key(|&(_, v)| v);
                    assert_eq!(fired, expect, "at {now} ms");
                    if let Some((&(d, _), _)) = model.first_key_value() {
                        let next = w.next_deadline().unwrap();
                        assert!(next <= ms(d) && next >= ms(now), "next {next:?} vs {d}");
                    } else {
                        assert_eq!(w.next_deadline(), None);
                    }
                }
            }
            assert_eq!(w.len(), model.len());
        }
    }
}
