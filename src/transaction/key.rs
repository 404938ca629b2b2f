//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3).
//!
//! A request carrying an RFC 3261 branch (the magic cookie `z9hG4bK` and at
//! least one more character) matches a server transaction by branch, top Via
//! sent-by and method, where ACK matches the INVITE it acknowledges and a
//! CANCEL its own transaction (the proxy finds the INVITE to cancel with the
//! INVITE method). The Call-ID is part of the key too: transactions live on
//! the core that owns their Call-ID, so two requests that share a branch but
//! not a Call-ID (a UAC bug, and RFC 4475's cparam01/cparam02) are two
//! transactions on every core count alike. Other requests (RFC 2543 peers, and RFC 4475's
//! `badbranch`, whose branch is the bare cookie) fall back to §17.2.3's
//! older rule: Request-URI, From tag, Call-ID, CSeq, top Via and, except for
//! ACK, To tag. A response matches a client transaction by branch and CSeq
//! method; the proxy's own branches are unique, so sent-by is not compared.
//!
//! A key is a canonical byte string (host lower-cased, ACK folded into
//! INVITE) with its hash, kept inline for the common sizes: building one to
//! look a message up allocates nothing.

use smallvec::SmallVec;

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Whether a Via branch follows RFC 3261 (magic cookie and an identifier).
pub fn is_rfc3261_branch(branch: &[u8]) -> bool {
    branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE)
}

const RFC3261: u8 = 1;
const RFC2543: u8 = 2;
const CLIENT: u8 = 3;

/// A transaction key: canonical bytes and their hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxKey {
    hash: u64,
    bytes: SmallVec<[u8; INLINE]>,
}

impl std::hash::Hash for TxKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// ACK is matched to the INVITE it acknowledges.
fn method_class(method: &[u8]) -> &[u8] {
    if method == b"ACK" { b"INVITE" } else { method }
}

/// Key bytes kept inline (the common sizes).
const INLINE: usize = 96;

/// Builds a key in a stack buffer of the inline size, spilling to a `Vec`
/// only for long keys: SmallVec's `extend_from_slice` costs a reserve
/// check and a call per field, about a third of a key's cost.
struct Builder {
    buf: [u8; INLINE],
    len: usize,
    /// The bytes once they outgrow `buf` (empty until then).
    long: Vec<u8>,
}

impl Builder {
    fn new(kind: u8) -> Self {
        let mut buf = [0; INLINE];
        buf[0] = kind;
        Builder {
            buf,
            len: 1,
            long: Vec::new(),
        }
    }

    /// Appends a length-prefixed field; returns the field's bytes.
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> &mut [u8] {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes();
        let start = self.len;
        let (at, end) = (start + 4, start + 4 + bytes.len());
        self.len = end;
        if self.long.is_empty() && end <= INLINE {
            self.buf[start..at].copy_from_slice(&len);
            let out = &mut self.buf[at..end];
            out.copy_from_slice(bytes);
            return out;
        }
        if self.long.is_empty() {
            self.long.extend_from_slice(&self.buf[..start]);
        }
        self.long.extend_from_slice(&len);
        self.long.extend_from_slice(bytes);
        &mut self.long[at..end]
    }

    #[inline]
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.put(bytes);
        self
    }

    #[inline]
    fn lower(&mut self, bytes: &[u8]) -> &mut Self {
        self.put(bytes).make_ascii_lowercase();
        self
    }

    fn finish(&mut self) -> TxKey {
        let bytes: SmallVec<[u8; INLINE]> = if self.long.is_empty() {
            SmallVec::from_buf_and_len(self.buf, self.len)
        } else {
            SmallVec::from_vec(std::mem::take(&mut self.long))
        };
        TxKey {
            hash: sipring_ring::key_id(&bytes),
            bytes,
        }
    }
}

impl TxKey {
    /// The server key of a request with an RFC 3261 branch: branch, top Via
    /// sent-by (host compared case-insensitively, port with the transport's
    /// default filled in by the caller), method and Call-ID.
    pub fn server(
        branch: &[u8],
        sent_by_host: &[u8],
        sent_by_port: u16,
        method: &[u8],
        call_id: &[u8],
    ) -> Self {
        Builder::new(RFC3261)
            .field(branch)
            .lower(sent_by_host)
            .field(&sent_by_port.to_le_bytes())
            .field(method_class(method))
            .field(call_id)
            .finish()
    }

    /// The server key of a request without an RFC 3261 branch (§17.2.3's
    /// RFC 2543 rule). `to_tag` is ignored for ACK, whose To tag is the one
    /// the transaction's response carried.
    #[allow(clippy::too_many_arguments)]
    pub fn server_rfc2543(
        request_uri: &[u8],
        from_tag: &[u8],
        call_id: &[u8],
        cseq: u32,
        method: &[u8],
        top_via: &[u8],
        to_tag: &[u8],
    ) -> Self {
        let to_tag: &[u8] = if method == b"ACK" { b"" } else { to_tag };
        Builder::new(RFC2543)
            .field(request_uri)
            .field(from_tag)
            .field(call_id)
            .field(&cseq.to_le_bytes())
            .field(method_class(method))
            .field(top_via)
            .field(to_tag)
            .finish()
    }

    /// The key of one of this proxy's client transactions: the branch it
    /// generated and the CSeq method (a response to the CANCEL carries the
    /// INVITE's branch and method CANCEL).
    pub fn client(branch: &[u8], cseq_method: &[u8]) -> Self {
        Builder::new(CLIENT)
            .field(branch)
            .field(cseq_method)
            .finish()
    }

    /// The key's 64-bit hash.
    pub fn hash64(&self) -> u64 {
        self.hash
    }

    /// Whether the key spilled to the heap (longer than its inline room).
    pub fn spilled(&self) -> bool {
        self.bytes.spilled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_cookie() {
        assert!(is_rfc3261_branch(b"z9hG4bK74bf9"));
        assert!(!is_rfc3261_branch(b"z9hG4bK"), "RFC 4475 badbranch");
        assert!(
            !is_rfc3261_branch(b"Z9HG4BK74bf9"),
            "the cookie is case-sensitive"
        );
        assert!(!is_rfc3261_branch(b"74bf9"));
        assert!(!is_rfc3261_branch(b""));
    }

    #[test]
    fn server_key_rules() {
        let k = TxKey::server(b"z9hG4bK1", b"Host.Example.COM", 5060, b"INVITE", b"c");
        assert_eq!(
            k,
            TxKey::server(b"z9hG4bK1", b"host.example.com", 5060, b"INVITE", b"c")
        );
        assert_eq!(
            k,
            TxKey::server(b"z9hG4bK1", b"host.example.com", 5060, b"ACK", b"c")
        );
        assert_eq!(
            k.hash64(),
            TxKey::server(b"z9hG4bK1", b"host.example.com", 5060, b"ACK", b"c").hash64()
        );
        assert_ne!(
            k,
            TxKey::server(b"z9hG4bK1", b"host.example.com", 5060, b"CANCEL", b"c")
        );
        assert_ne!(
            k,
            TxKey::server(b"z9hG4bK1", b"host.example.com", 5070, b"INVITE", b"c")
        );
        assert_ne!(
            k,
            TxKey::server(b"z9hG4bK2", b"host.example.com", 5060, b"INVITE", b"c")
        );
        assert_ne!(
            k,
            TxKey::server(b"z9hg4bk1", b"host.example.com", 5060, b"INVITE", b"c")
        );
        // Field boundaries cannot be shifted to forge a match.
        assert_ne!(
            TxKey::server(b"z9hG4bKa", b"bc", 1, b"X", b"c"),
            TxKey::server(b"z9hG4bKab", b"c", 1, b"X", b"c")
        );
        assert_ne!(
            k,
            TxKey::server(b"z9hG4bK1", b"host.example.com", 5060, b"INVITE", b"d")
        );
        assert!(!k.spilled());
    }

    #[test]
    fn rfc2543_key_rules() {
        let inv = TxKey::server_rfc2543(
            b"sip:b@h",
            b"f1",
            b"c@h",
            1,
            b"INVITE",
            b"SIP/2.0/UDP h",
            b"",
        );
        let ack = TxKey::server_rfc2543(
            b"sip:b@h",
            b"f1",
            b"c@h",
            1,
            b"ACK",
            b"SIP/2.0/UDP h",
            b"t9",
        );
        assert_eq!(inv, ack, "ACK matches whatever To tag the response gave");
        let other_cseq = TxKey::server_rfc2543(
            b"sip:b@h",
            b"f1",
            b"c@h",
            2,
            b"INVITE",
            b"SIP/2.0/UDP h",
            b"",
        );
        assert_ne!(inv, other_cseq);
        let tagged = TxKey::server_rfc2543(
            b"sip:b@h",
            b"f1",
            b"c@h",
            1,
            b"INVITE",
            b"SIP/2.0/UDP h",
            b"t9",
        );
        assert_ne!(inv, tagged);
        assert_ne!(inv, TxKey::server(b"sip:b@h", b"f1", 1, b"INVITE", b"c"));
    }

    #[test]
    fn long_keys_spill_and_compare_alike() {
        let long = vec![b'b'; 200];
        let a = TxKey::server(b"z9hG4bK1", b"HOST", 5060, b"INVITE", &long);
        let b = TxKey::server(b"z9hG4bK1", b"host", 5060, b"ACK", &long);
        assert!(a.spilled());
        assert_eq!(a, b);
        assert_eq!(a.hash64(), b.hash64());
        // A key that ends exactly at the inline size stays inline.
        let fit = vec![b'c'; INLINE - 1 - 4 - 8 - 4];
        let k = TxKey::client(b"z9hG4bK1", &fit);
        assert!(!k.spilled());
        assert_eq!(k.bytes.len(), INLINE);
        let over = vec![b'c'; fit.len() + 1];
        assert!(TxKey::client(b"z9hG4bK1", &over).spilled());
        assert_ne!(k, TxKey::client(b"z9hG4bK1", &over));
    }

    #[test]
    fn client_keys() {
        assert_eq!(
            TxKey::client(b"z9hG4bKx", b"INVITE"),
            TxKey::client(b"z9hG4bKx", b"INVITE")
        );
        assert_ne!(
            TxKey::client(b"z9hG4bKx", b"INVITE"),
            TxKey::client(b"z9hG4bKx", b"CANCEL")
        );
    }
}
