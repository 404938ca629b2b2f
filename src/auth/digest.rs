//! The digest computations of RFC 7616 (and RFC 2617, RFC 8760 for SIP):
//! HA1, HA2 and the response, for MD5 and SHA-256 and their `-sess`
//! variants, in lowercase hex.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// A digest algorithm sipring accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (the default when a client names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// The algorithm a credentials' `algorithm` parameter names (absent:
    /// MD5); `None` for one sipring does not support.
    pub fn parse(name: Option<&[u8]>) -> Option<Algorithm> {
        let Some(n) = name else {
            return Some(Algorithm::Md5);
        };
        let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
        if eq("MD5") {
            Some(Algorithm::Md5)
        } else if eq("MD5-sess") {
            Some(Algorithm::Md5Sess)
        } else if eq("SHA-256") {
            Some(Algorithm::Sha256)
        } else if eq("SHA-256-sess") {
            Some(Algorithm::Sha256Sess)
        } else {
            None
        }
    }

    /// Its name in a challenge.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether it uses SHA-256 (and so the SHA-256 HA1).
    pub fn is_sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Length of its digests in hex.
    pub fn hex_len(self) -> usize {
        if self.is_sha256() { 64 } else { 32 }
    }
}

/// A hash in progress (MD5 or SHA-256), fed with `:`-separated parts.
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

impl Hasher {
    fn new(sha256: bool) -> Self {
        if sha256 {
            Hasher::Sha256(Sha256::new())
        } else {
            Hasher::Md5(Md5::new())
        }
    }

    fn parts(sha256: bool, parts: &[&[u8]]) -> Hex {
        // Joined on the stack and hashed in one call: the hashers' per-update
        // buffering costs more than the copy for these short inputs.
        let mut buf = [0u8; 512];
        let len = parts.iter().map(|p| p.len() + 1).sum::<usize>();
        if len <= buf.len() {
            let mut n = 0;
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    buf[n] = b':';
                    n += 1;
                }
                buf[n..n + p.len()].copy_from_slice(p);
                n += p.len();
            }
            return if sha256 {
                Hex::of(&Sha256::digest(&buf[..n]))
            } else {
                Hex::of(&Md5::digest(&buf[..n]))
            };
        }
        let mut h = Hasher::new(sha256);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h.update(b":");
            }
            h.update(p);
        }
        h.finish()
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
        }
    }

    fn finish(self) -> Hex {
        match self {
            Hasher::Md5(h) => Hex::of(&h.finalize()),
            Hasher::Sha256(h) => Hex::of(&h.finalize()),
        }
    }
}

/// A digest in lowercase hex, on the stack.
#[derive(Clone, Copy)]
pub struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Hex {
    fn of(bytes: &[u8]) -> Hex {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut h = Hex {
            buf: [0; 64],
            len: bytes.len() * 2,
        };
        for (i, b) in bytes.iter().enumerate() {
            h.buf[2 * i] = HEX[usize::from(b >> 4)];
            h.buf[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        h
    }

    /// The hex digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The hex digits as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// HA1 = H(username:realm:password), what a user record keeps (never the
/// password): MD5 for `md5`, SHA-256 for `sha256`.
pub fn ha1(sha256: bool, username: &str, realm: &str, password: &str) -> String {
    Hasher::parts(
        sha256,
        &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
    )
    .as_str()
    .to_owned()
}

/// What the client sent that enters the response.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The request's method.
    pub method: &'a [u8],
    /// `uri` (digest-uri).
    pub uri: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `nc` (with qop).
    pub nc: &'a [u8],
    /// `cnonce` (with qop, or a -sess algorithm).
    pub cnonce: &'a [u8],
    /// `qop`: `auth`, or absent (RFC 2069 compatibility).
    pub qop: Option<&'a [u8]>,
}

/// The expected `response` for `inputs`, from the stored HA1 of the
/// algorithm's hash (RFC 7616 §3.4.1-3.4.3; qop=auth only).
pub fn response(alg: Algorithm, stored_ha1: &str, i: &Inputs<'_>) -> Hex {
    let sha = alg.is_sha256();
    let sess;
    let ha1: &[u8] = if alg.is_sess() {
        sess = Hasher::parts(sha, &[stored_ha1.as_bytes(), i.nonce, i.cnonce]);
        sess.as_bytes()
    } else {
        stored_ha1.as_bytes()
    };
    let ha2 = Hasher::parts(sha, &[i.method, i.uri]);
    match i.qop {
        Some(qop) => Hasher::parts(sha, &[ha1, i.nonce, i.nc, i.cnonce, qop, ha2.as_bytes()]),
        None => Hasher::parts(sha, &[ha1, i.nonce, ha2.as_bytes()]),
    }
}

/// Compares two digests in constant time (case-insensitive hex).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1: the same request digested with MD5 and SHA-256.
    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let inputs = Inputs {
            method: b"GET",
            uri: b"/dir/index.html",
            nonce: b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc: b"00000001",
            cnonce: b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            qop: Some(b"auth"),
        };
        let md5 = ha1(false, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(
            response(Algorithm::Md5, &md5, &inputs).as_str(),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let sha = ha1(true, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(
            response(Algorithm::Sha256, &sha, &inputs).as_str(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    /// Inputs longer than the stack buffer hash the same, part by part.
    #[test]
    fn long_inputs_hash_in_parts() {
        let long = vec![b'x'; 600];
        let mut h = Md5::new();
        h.update(b"a:");
        h.update(&long);
        assert_eq!(
            Hasher::parts(false, &[b"a", &long]).as_str(),
            Hex::of(&h.finalize()).as_str()
        );
        assert_eq!(
            Hasher::parts(true, &[b"a", b"b"]).as_str(),
            Hex::of(&Sha256::digest(b"a:b")).as_str()
        );
    }

    /// RFC 2617 §3.5 (qop=auth, MD5) and the RFC 2069 form without qop.
    #[test]
    fn rfc2617_vector_and_no_qop() {
        let ha1 = ha1(false, "Mufasa", "testrealm@host.com", "Circle Of Life");
        let mut i = Inputs {
            method: b"GET",
            uri: b"/dir/index.html",
            nonce: b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc: b"00000001",
            cnonce: b"0a4f113b",
            qop: Some(b"auth"),
        };
        assert_eq!(
            response(Algorithm::Md5, &ha1, &i).as_str(),
            "6629fae49393a05397450978507c4ef1"
        );
        i.qop = None;
        // H(HA1:nonce:HA2), computed independently.
        let ha2 = Hasher::parts(false, &[b"GET", b"/dir/index.html"]);
        let want = Hasher::parts(false, &[ha1.as_bytes(), i.nonce, ha2.as_bytes()]);
        assert_eq!(response(Algorithm::Md5, &ha1, &i).as_str(), want.as_str());
    }

    #[test]
    fn algorithms_and_comparison() {
        assert_eq!(Algorithm::parse(None), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse(Some(b"sha-256")), Some(Algorithm::Sha256));
        assert_eq!(
            Algorithm::parse(Some(b"SHA-256-sess")),
            Some(Algorithm::Sha256Sess)
        );
        assert_eq!(Algorithm::parse(Some(b"SHA-512-256")), None);
        assert!(same(b"ABcd", b"abCD"));
        assert!(!same(b"abcd", b"abce"));
        assert!(!same(b"abc", b"abcd"));
    }
}
