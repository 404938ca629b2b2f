//! Nonce-count replay protection in bounded memory (RFC 7616 §3.4.5).
//!
//! For each nonce in use the core remembers the highest `nc` seen and a
//! 64-bit window below it; a count seen before, or older than the window,
//! is a replay. Entries go when their nonce expires; at most `capacity`
//! are kept, the oldest evicted first. A nonce that may have been evicted
//! (issued no later than the newest evicted one) and is not tracked is
//! refused as a replay: the client gets a fresh nonce, never a second use.

use std::collections::{HashMap, VecDeque};

use super::nonce::NonceInfo;

#[derive(Clone, Copy, Debug)]
struct Window {
    max: u32,
    /// Bit i: `max - i` was seen.
    seen: u64,
}

/// One core's nonce counts.
#[derive(Debug)]
pub struct NonceCounts {
    map: HashMap<u64, Window>,
    /// (nonce id, issue time), in first-use order.
    order: VecDeque<(u64, i64)>,
    capacity: usize,
    /// Issue time of the newest nonce evicted while still live.
    evicted_upto: i64,
}

impl NonceCounts {
    /// At most `capacity` nonces tracked.
    pub fn new(capacity: usize) -> Self {
        NonceCounts {
            map: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            evicted_upto: i64::MIN,
        }
    }

    /// Nonces tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records count `nc` of nonce `info` at `now_ms`; whether it is new
    /// (`true`) or a replay (`false`). Nonces older than `ttl_ms` are
    /// forgotten (they no longer verify anyway).
    pub fn first_use(&mut self, info: &NonceInfo, nc: u32, now_ms: i64, ttl_ms: i64) -> bool {
        while let Some(&(id, issued)) = self.order.front() {
            if now_ms.saturating_sub(issued) <= ttl_ms && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            if self.map.remove(&id).is_some() && now_ms.saturating_sub(issued) <= ttl_ms {
                self.evicted_upto = self.evicted_upto.max(issued);
            }
        }
        if nc == 0 {
            return false;
        }
        match self.map.get_mut(&info.id) {
            None => {
                if info.issued_ms <= self.evicted_upto {
                    return false;
                }
                self.map.insert(info.id, Window { max: nc, seen: 1 });
                self.order.push_back((info.id, info.issued_ms));
                true
            }
            Some(w) if nc > w.max => {
                let shift = nc - w.max;
                w.seen = if shift >= 64 { 0 } else { w.seen << shift };
                w.seen |= 1;
                w.max = nc;
                true
            }
            Some(w) => {
                let d = w.max - nc;
                if d >= 64 || w.seen & (1 << d) != 0 {
                    return false;
                }
                w.seen |= 1 << d;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(id: u64, issued_ms: i64) -> NonceInfo {
        NonceInfo {
            issued_ms,
            node: 1,
            core: 0,
            retry: false,
            id,
        }
    }

    #[test]
    fn counts_are_used_once_within_a_window() {
        let mut c = NonceCounts::new(16);
        let n = nonce(1, 0);
        assert!(c.first_use(&n, 1, 10, 1000));
        assert!(!c.first_use(&n, 1, 10, 1000), "replayed nc");
        assert!(c.first_use(&n, 3, 10, 1000));
        assert!(
            c.first_use(&n, 2, 10, 1000),
            "out of order within the window"
        );
        assert!(!c.first_use(&n, 2, 10, 1000));
        assert!(c.first_use(&n, 100, 10, 1000));
        assert!(!c.first_use(&n, 3, 10, 1000), "older than the window");
        assert!(!c.first_use(&n, 0, 10, 1000), "nc 0 is never valid");
        // Another nonce has its own counts.
        assert!(c.first_use(&nonce(2, 5), 1, 10, 1000));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn memory_is_bounded_and_eviction_fails_safe() {
        let mut c = NonceCounts::new(4);
        for id in 0..10u64 {
            assert!(c.first_use(&nonce(id, id as i64), 1, 20, 1000));
            assert!(c.len() <= 4);
        }
        // Nonce 2 was evicted while live: its next count is refused (the
        // client gets a fresh nonce), never accepted twice.
        assert!(!c.first_use(&nonce(2, 2), 2, 20, 1000));
        // Expired nonces go by themselves.
        let mut c = NonceCounts::new(100);
        c.first_use(&nonce(1, 0), 1, 0, 1000);
        c.first_use(&nonce(2, 2000), 1, 2000, 1000);
        assert_eq!(c.len(), 1);
        // A newer nonce is tracked normally.
        assert!(c.first_use(&nonce(3, 2100), 1, 2100, 1000));
    }
}
