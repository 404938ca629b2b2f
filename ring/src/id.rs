//! Identifiers on the ring and the hash that places keys on it.
//!
//! Keys (Call-IDs, AORs) and members share one 64-bit identifier space. The
//! hash is XXH3-64 with seed 0: fast on short keys, well distributed, and
//! fixed by its specification, so every node of every version agrees on
//! where a key lives. Changing it is a wire-incompatible change.

/// The ring identifier of a key's bytes (Call-ID as written, AOR in its
/// canonical form).
pub fn key_id(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
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
}
