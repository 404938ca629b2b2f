//! Stateless nonces: everything a verifier needs is in the nonce, signed
//! with the server secret (HMAC-SHA-256), so any core, and any node that
//! shares the secret, verifies a nonce without having kept it.
//!
//! Layout before hex encoding (31 bytes): issue time (wall-clock ms, u64)
//! | issuing node (u32) | issuing core (u16) | flags (u8: bit 0 = issued
//! after wrong credentials) | serial (u32) | the first 12 bytes of
//! HMAC-SHA-256(secret, the 19 bytes before).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const BODY: usize = 19;
const TAG: usize = 12;
/// Length of a nonce in hex.
pub const NONCE_LEN: usize = 2 * (BODY + TAG);
/// How far in the future an issue time may be (clock skew between nodes).
const SKEW_MS: i64 = 5_000;

/// What a valid nonce says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceInfo {
    /// When it was issued (wall-clock ms).
    pub issued_ms: i64,
    /// The node that issued it.
    pub node: u32,
    /// The core that issued it.
    pub core: u16,
    /// Issued in a re-challenge after wrong credentials.
    pub retry: bool,
    /// A 64-bit identity for replay tracking.
    pub id: u64,
}

/// Why a nonce is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceError {
    /// Not one of ours (bad length, bad hex, bad signature, from the future).
    Invalid,
    /// Ours but older than the nonce lifetime.
    Stale(NonceInfo),
}

/// Makes and checks nonces with one secret.
#[derive(Clone)]
pub struct NonceKey {
    mac: HmacSha256,
    node: u32,
    core: u16,
    serial: u32,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey")
            .field("node", &self.node)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// The key of core `core` of node `node`; `serial_seed` varies the
    /// serials between cores and restarts.
    pub fn new(secret: &[u8], node: u32, core: u16, serial_seed: u32) -> NonceKey {
        NonceKey {
            mac: HmacSha256::new_from_slice(secret).unwrap_or_else(|_| {
                // HMAC takes keys of any length; this is not reached.
                HmacSha256::new_from_slice(&[0u8; 32]).expect("a 32-byte key")
            }),
            node,
            core,
            serial: serial_seed,
        }
    }

    /// A new nonce issued at `now_ms` into `out` (hex, [`NONCE_LEN`]).
    pub fn issue(&mut self, now_ms: i64, retry: bool, out: &mut Vec<u8>) {
        self.serial = self.serial.wrapping_add(1);
        let mut b = [0u8; BODY + TAG];
        b[0..8].copy_from_slice(&(now_ms as u64).to_be_bytes());
        b[8..12].copy_from_slice(&self.node.to_be_bytes());
        b[12..14].copy_from_slice(&self.core.to_be_bytes());
        b[14] = u8::from(retry);
        b[15..19].copy_from_slice(&self.serial.to_be_bytes());
        let mut mac = self.mac.clone();
        mac.update(&b[..BODY]);
        let tag = mac.finalize().into_bytes();
        b[BODY..].copy_from_slice(&tag[..TAG]);
        hex_into(out, &b);
    }

    /// Checks a nonce at `now_ms`: ours, and issued within `ttl_ms`.
    pub fn verify(&self, nonce: &[u8], now_ms: i64, ttl_ms: i64) -> Result<NonceInfo, NonceError> {
        if nonce.len() != NONCE_LEN {
            return Err(NonceError::Invalid);
        }
        let mut b = [0u8; BODY + TAG];
        for (i, pair) in nonce.chunks_exact(2).enumerate() {
            b[i] = (unhex(pair[0]).ok_or(NonceError::Invalid)? << 4)
                | unhex(pair[1]).ok_or(NonceError::Invalid)?;
        }
        let mut mac = self.mac.clone();
        mac.update(&b[..BODY]);
        mac.verify_truncated_left(&b[BODY..])
            .map_err(|_| NonceError::Invalid)?;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[0..8]);
        let issued_ms = u64::from_be_bytes(ts) as i64;
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[BODY..BODY + 8]);
        let info = NonceInfo {
            issued_ms,
            node: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            core: u16::from_be_bytes([b[12], b[13]]),
            retry: b[14] & 1 != 0,
            id: u64::from_be_bytes(id),
        };
        if issued_ms > now_ms.saturating_add(SKEW_MS) {
            return Err(NonceError::Invalid);
        }
        if now_ms.saturating_sub(issued_ms) > ttl_ms {
            return Err(NonceError::Stale(info));
        }
        Ok(info)
    }

    /// Whether this key's node and core issued `info`'s nonce.
    pub fn issued_here(&self, info: &NonceInfo) -> bool {
        info.node == self.node && info.core == self.core
    }
}

fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_verify_on_any_core_with_the_secret_and_expire() {
        let mut a = NonceKey::new(b"secret", 7, 0, 1);
        let b = NonceKey::new(b"secret", 7, 1, 99);
        let other = NonceKey::new(b"another secret", 7, 0, 1);
        let mut n = Vec::new();
        a.issue(1_000_000, false, &mut n);
        assert_eq!(n.len(), NONCE_LEN);
        let info = b.verify(&n, 1_000_500, 30_000).unwrap();
        assert_eq!(
            (info.issued_ms, info.node, info.core, info.retry),
            (1_000_000, 7, 0, false)
        );
        assert!(a.issued_here(&info) && !b.issued_here(&info));
        assert_eq!(
            other.verify(&n, 1_000_500, 30_000),
            Err(NonceError::Invalid)
        );
        assert_eq!(
            b.verify(&n, 1_031_000, 30_000),
            Err(NonceError::Stale(info))
        );
        // From the future (beyond the skew allowance).
        assert_eq!(b.verify(&n, 990_000, 30_000), Err(NonceError::Invalid));
        // Tampered: any byte changed.
        let mut t = n.clone();
        t[3] = if t[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(b.verify(&t, 1_000_500, 30_000), Err(NonceError::Invalid));
        assert_eq!(b.verify(b"zz", 1_000_500, 30_000), Err(NonceError::Invalid));
        // Two nonces differ, and carry the retry flag.
        let mut m = Vec::new();
        a.issue(1_000_000, true, &mut m);
        assert_ne!(n, m);
        let mi = b.verify(&m, 1_000_000, 30_000).unwrap();
        assert!(mi.retry);
        assert_ne!(mi.id, info.id);
        // Upper-case hex is accepted.
        let upper: Vec<u8> = m.iter().map(u8::to_ascii_uppercase).collect();
        assert!(b.verify(&upper, 1_000_000, 30_000).is_ok());
    }
}
