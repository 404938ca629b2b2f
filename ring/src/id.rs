//! Identifiers on the ring, the hash that places keys on it, and slices of it.
//!
//! Keys (Call-IDs, AORs) and members share one 64-bit identifier space,
//! arithmetic modulo 2^64. The hash is XXH3-64 with seed 0: fast on short
//! keys, well distributed, and fixed by its specification, so every node of
//! every version agrees on where a key lives. Changing it is a
//! wire-incompatible change.
//!
//! Why 64 bits and not 128: the width only has to keep *member* identifiers
//! apart (two keys on the same identifier merely share an owner). For n
//! members placed by a hash the chance that any two collide is about
//! n^2 / 2^65: 3e-12 for 10,000 members (a hundred proxies of a hundred
//! cores), 3e-8 for a million, and a collision is still detected when the
//! second member joins (`JoinError::IdCollision`). Chord's hop count and load
//! balance depend on the number of members, not on the width. 128 bits
//! would double every identifier on the wire and in the finger table (128
//! fingers instead of 64), make the interval arithmetic `u128`, and move
//! every key already placed by the proxy's `owner_core(key_id(..))`.

use std::fmt;

/// The ring identifier of a key's bytes (Call-ID as written, AOR in its
/// canonical form).
pub fn key_id(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// A member's identifier placed by hashing: the proxy's stable name (its
/// node id) with the core number as the hash seed. This is Chord's usual
/// placement (consistent hashing of virtual nodes): each proxy's cores land
/// at independent random points, so a proxy's share of the keys is the sum
/// of `cores` random slices and evens out as cores grow.
pub fn member_id(node: &[u8], core: u16) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(node, u64::from(core))
}

/// The identifier that makes core `core` of a single node own exactly the
/// keys that `sipring::engine::owner_core(key, cores)` gives it: the last
/// identifier of the core's equal, contiguous slice, `ceil((core + 1) * 2^64
/// / cores) - 1`. A one-node ring whose members use these identifiers agrees
/// with the proxy's single-node rule key for key. (Several nodes cannot all
/// use it: their members would collide; they use `member_id`.)
pub fn core_slice_end(core: u16, cores: u16) -> u64 {
    let cores = u128::from(cores.max(1));
    let next = u128::from(core).min(cores - 1) + 1;
    let end = (next << 64).div_ceil(cores) - 1;
    u64::try_from(end).unwrap_or(u64::MAX)
}

/// Is `x` in the open interval `(a, b)` going clockwise? `(a, a)` is the
/// whole ring except `a`.
#[inline]
pub fn in_open(x: u64, a: u64, b: u64) -> bool {
    let dx = x.wrapping_sub(a);
    let db = b.wrapping_sub(a);
    dx != 0 && (db == 0 || dx < db)
}

/// Is `x` in the half-open interval `(a, b]` going clockwise? `(a, a]` is the
/// whole ring.
#[inline]
pub fn in_half_open(x: u64, a: u64, b: u64) -> bool {
    let dx = x.wrapping_sub(a);
    let db = b.wrapping_sub(a);
    db == 0 || (dx != 0 && dx <= db)
}

/// A contiguous arc of the ring: the identifiers in `(start, end]`, going
/// clockwise. A member owns the slice from its predecessor (exclusive) to
/// itself (inclusive). `start == end` is the whole ring (a member alone).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slice {
    /// Exclusive start: the predecessor's identifier.
    pub start: u64,
    /// Inclusive end: the owner's identifier.
    pub end: u64,
}

impl Slice {
    /// The slice `(start, end]`.
    pub const fn new(start: u64, end: u64) -> Self {
        Slice { start, end }
    }

    /// The whole ring, owned by a member alone at `id`.
    pub const fn whole(id: u64) -> Self {
        Slice { start: id, end: id }
    }

    /// Does the slice hold `key`?
    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        in_half_open(key, self.start, self.end)
    }

    /// Is this the whole ring?
    pub fn is_whole(&self) -> bool {
        self.start == self.end
    }

    /// Number of identifiers in the slice (2^64 for the whole ring).
    pub fn len(&self) -> u128 {
        match self.end.wrapping_sub(self.start) {
            0 => 1u128 << 64,
            n => u128::from(n),
        }
    }

    /// A slice is never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Debug for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:016x}, {:016x}]", self.start, self.end)
    }
}

impl fmt::Display for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_stable() {
        // Pinned: a change here moves every key to another owner.
        assert_eq!(key_id(b""), 0x2d06_8005_38d3_94c2);
        assert_ne!(
            key_id(b"a84b4c76e66710@pc33.atlanta.com"),
            key_id(b"a84b4c76e66710@pc33.atlanta.coM")
        );
    }

    #[test]
    fn intervals_wrap_around_zero() {
        // (a, b) without wrap, with wrap, and the degenerate whole ring.
        let table: &[(u64, u64, u64, bool, bool)] = &[
            // x, a, b, in (a,b), in (a,b]
            (5, 1, 10, true, true),
            (10, 1, 10, false, true),
            (1, 1, 10, false, false),
            (11, 1, 10, false, false),
            (0, u64::MAX - 1, 3, true, true),
            (u64::MAX, u64::MAX - 1, 3, true, true),
            (3, u64::MAX - 1, 3, false, true),
            (4, u64::MAX - 1, 3, false, false),
            (7, 7, 7, false, true),
            (8, 7, 7, true, true),
            (6, 7, 7, true, true),
        ];
        for &(x, a, b, open, half) in table {
            assert_eq!(in_open(x, a, b), open, "{x} in ({a}, {b})");
            assert_eq!(in_half_open(x, a, b), half, "{x} in ({a}, {b}]");
        }
    }

    #[test]
    fn slices() {
        let s = Slice::new(u64::MAX - 1, 1);
        assert!(s.contains(u64::MAX) && s.contains(0) && s.contains(1));
        assert!(!s.contains(u64::MAX - 1) && !s.contains(2));
        assert_eq!(s.len(), 3);
        let w = Slice::whole(42);
        assert!(w.is_whole() && w.contains(42) && w.contains(0));
        assert_eq!(w.len(), 1 << 64);
    }

    /// The single-node rule of the proxy (`sipring::engine::owner_core`),
    /// copied here: the ring crate does not depend on the proxy.
    fn owner_core(key_id: u64, cores: u16) -> u16 {
        u16::try_from((u128::from(key_id) * u128::from(cores)) >> 64).unwrap()
    }

    #[test]
    fn core_slice_ends_reproduce_owner_core() {
        for cores in 1..=13u16 {
            let ids: Vec<u64> = (0..cores).map(|c| core_slice_end(c, cores)).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(*ids.last().unwrap(), u64::MAX);
            // The Chord owner of a key is its successor: the first member
            // identifier >= key (no wrap needed: the last one is u64::MAX).
            let chord_owner = |k: u64| ids.iter().position(|&id| id >= k).unwrap() as u16;
            let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1];
            for &id in &ids {
                probes.extend([id, id.wrapping_add(1), id.wrapping_sub(1)]);
            }
            probes.extend((0..200u64).map(|i| key_id(&i.to_be_bytes())));
            for k in probes {
                assert_eq!(
                    chord_owner(k),
                    owner_core(k, cores),
                    "key {k:#x}, {cores} cores"
                );
            }
        }
    }

    #[test]
    fn member_ids_differ_per_core() {
        assert_ne!(member_id(b"proxy-a", 0), member_id(b"proxy-a", 1));
        assert_ne!(member_id(b"proxy-a", 0), member_id(b"proxy-b", 0));
        assert_eq!(member_id(b"proxy-a", 3), member_id(b"proxy-a", 3));
    }
}
