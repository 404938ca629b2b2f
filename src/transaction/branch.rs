//! Branch and tag generation from a seeded RNG.
//!
//! Branches must be unique in space and time (RFC 3261 §8.1.1.7): each is
//! the magic cookie, 64 random bits and a 32-bit per-core counter, so two
//! branches of one core never collide and two cores (or nodes) collide only
//! by chance in 64 bits. The RNG is seeded by whoever builds the core (the
//! shell from OS entropy and the core index, tests from a constant), so test
//! runs are reproducible. Values are fixed-size arrays: no allocation.

use super::key::MAGIC_COOKIE;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Length of a generated branch.
pub const BRANCH_LEN: usize = MAGIC_COOKIE.len() + 16 + 8;

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

    /// A fresh RFC 3261 branch.
    pub fn branch(&mut self) -> [u8; BRANCH_LEN] {
        let mut b = [0u8; BRANCH_LEN];
        let (cookie, rest) = b.split_at_mut(MAGIC_COOKIE.len());
        cookie.copy_from_slice(MAGIC_COOKIE);
        let (random, count) = rest.split_at_mut(16);
        hex_into(random, self.rng.u64(..));
        hex_into(count, u64::from(self.counter));
        self.counter = self.counter.wrapping_add(1);
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
            let b = g.branch();
            assert!(is_rfc3261_branch(&b));
            assert!(b[7..].iter().all(u8::is_ascii_hexdigit));
            assert!(seen.insert(b));
        }
        assert_eq!(
            BranchGenerator::new(7).branch(),
            BranchGenerator::new(7).branch()
        );
        assert_ne!(BranchGenerator::new(7).tag(), BranchGenerator::new(8).tag());
    }
}
