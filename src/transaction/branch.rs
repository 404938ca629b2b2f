//! Branch and tag generation from a seeded RNG.
//!
//! Branches must be unique in space and time (RFC 3261 §8.1.1.7). A proxy
//! branch is the magic cookie, 16 hex digits of the request's loop-detection
//! hash (§16.6 step 8, compared by §16.3 step 4) and 16 hex digits that make
//! it unique: 32 random bits and a 32-bit per-core counter, so two branches
//! of one core never collide and two cores (or nodes) collide only by
//! chance. A stateless branch (§16.11) replaces the unique part with a hash
//! of the incoming branch, so retransmissions get the same one. The RNG is seeded by whoever builds the core (the
//! shell from OS entropy and the core index, tests from a constant), so test
//! runs are reproducible. Values are fixed-size arrays: no allocation.

use super::key::MAGIC_COOKIE;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Length of a generated branch.
pub const BRANCH_LEN: usize = MAGIC_COOKIE.len() + 16 + 16;

/// Generates branches and tags for one core.
#[derive(Debug)]
pub struct BranchGenerator {
    rng: fastrand::Rng,
    counter: u32,
}

fn hex_into(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

impl BranchGenerator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        BranchGenerator {
            rng: fastrand::Rng::with_seed(seed),
            counter: 0,
        }
    }

    /// A fresh RFC 3261 branch carrying `loop_hash`.
    pub fn branch(&mut self, loop_hash: u64) -> [u8; BRANCH_LEN] {
        let unique = (u64::from(self.rng.u32(..)) << 32) | u64::from(self.counter);
        self.counter = self.counter.wrapping_add(1);
        Self::compose(loop_hash, unique)
    }

    /// The branch for a request forwarded statelessly: the same for the
    /// same `loop_hash` and `request_hash`.
    pub fn stateless_branch(&self, loop_hash: u64, request_hash: u64) -> [u8; BRANCH_LEN] {
        Self::compose(loop_hash, request_hash)
    }

    fn compose(loop_hash: u64, unique: u64) -> [u8; BRANCH_LEN] {
        let mut b = [0u8; BRANCH_LEN];
        let (cookie, rest) = b.split_at_mut(MAGIC_COOKIE.len());
        cookie.copy_from_slice(MAGIC_COOKIE);
        let (lh, un) = rest.split_at_mut(16);
        hex_into(lh, loop_hash);
        hex_into(un, unique);
        b
    }

    /// A fresh tag (for responses the proxy generates itself), 64 random bits.
    pub fn tag(&mut self) -> [u8; 16] {
        let mut t = [0u8; 16];
        hex_into(&mut t, self.rng.u64(..));
        t
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.rng.u64(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::is_rfc3261_branch;

    #[test]
    fn branches_are_unique_rfc3261_and_reproducible() {
        let mut g = BranchGenerator::new(42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let b = g.branch(7);
            assert!(is_rfc3261_branch(&b));
            assert!(b[7..].iter().all(u8::is_ascii_hexdigit));
            assert!(seen.insert(b));
        }
        assert_eq!(
            BranchGenerator::new(7).branch(1),
            BranchGenerator::new(7).branch(1)
        );
        assert_eq!(&g.branch(0xabc)[7..23], b"0000000000000abc");
        assert_eq!(g.stateless_branch(1, 2), g.stateless_branch(1, 2));
        assert_ne!(BranchGenerator::new(7).tag(), BranchGenerator::new(8).tag());
    }
}
