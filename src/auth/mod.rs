//! Digest authentication (RFC 7616, RFC 8760 for SIP, compatible with RFC
//! 2617 clients): MD5 and SHA-256 (and their `-sess` forms), qop=auth,
//! checked against the HA1 digests a user record keeps (never a password).
//!
//! Nonces are stateless ([`nonce`]): signed with the server secret and
//! carrying their issue time, issuer node and core, so any core (and any
//! node sharing the secret) verifies them. Replay protection is per core
//! ([`replay`], bounded memory): a valid nonce issued by another core or
//! node is answered with a fresh challenge marked `stale=true` (the client
//! retries at once with a nonce of this core, without asking its user), so
//! every accepted nonce count is checked by the core that tracks it. The
//! same goes for an expired nonce and a replayed count.
//!
//! Wrong credentials: the first time, a fresh challenge whose nonce is
//! flagged "retry"; wrong again with a flagged nonce, 403 (the caller
//! answers it). Failures are counted per source address.
//!
//! Sans-IO: time comes in as `Instant` and becomes wall-clock time through
//! [`AuthSettings::wall_base_ms`] (nonce times are shared between nodes).

pub mod digest;
pub mod nonce;
pub mod replay;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use sipring_parser::Digest;

use crate::store::User;
use crate::time::Instant;
pub use digest::Algorithm;
use digest::Inputs;
use nonce::{NonceError, NonceKey};
use replay::NonceCounts;

/// How a node authenticates (from `[auth]`).
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// The server secret that signs nonces (shared by the nodes of a
    /// cluster).
    pub secret: Vec<u8>,
    /// How long a nonce is accepted.
    pub nonce_ttl: Duration,
    /// The algorithms offered, one challenge header each, in this order.
    pub algorithms: Vec<Algorithm>,
    /// Nonces whose counts one core tracks at most.
    pub max_nonces: usize,
    /// This node's id in nonces.
    pub node: u32,
    /// Wall-clock milliseconds at `Instant::ZERO` of the engine's clock.
    pub wall_base_ms: i64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            secret: b"sipring default secret: set [auth] secret".to_vec(),
            nonce_ttl: Duration::from_secs(300),
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            max_nonces: 65_536,
            node: 0,
            wall_base_ms: 0,
        }
    }
}

/// What to do with a request after checking its credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated.
    Ok,
    /// Challenge again (401/407): `stale` when the credentials were right
    /// but the nonce cannot be used here (expired, another core's, a
    /// replayed count); `retry` after wrong credentials.
    Challenge {
        /// `stale=true` in the challenge.
        stale: bool,
        /// Flag the new nonce: wrong again means 403.
        retry: bool,
    },
    /// Wrong credentials after a re-challenge, or a disabled user: 403.
    Forbidden,
    /// Unusable credentials: 400 with this reason.
    Malformed(&'static str),
}

/// Most source addresses whose failures are counted.
const MAX_SOURCES: usize = 4096;

/// One core's authenticator.
#[derive(Debug)]
pub struct Authenticator {
    cfg: AuthSettings,
    key: NonceKey,
    counts: NonceCounts,
    failures: HashMap<IpAddr, u64>,
    failed: u64,
    nonce: Vec<u8>,
}

impl Authenticator {
    /// The authenticator of core `core`; `seed` varies nonce serials.
    pub fn new(cfg: &AuthSettings, core: u16, seed: u64) -> Self {
        Authenticator {
            key: NonceKey::new(&cfg.secret, cfg.node, core, seed as u32),
            counts: NonceCounts::new(cfg.max_nonces),
            failures: HashMap::new(),
            failed: 0,
            nonce: Vec::with_capacity(nonce::NONCE_LEN),
            cfg: cfg.clone(),
        }
    }

    /// Wall-clock milliseconds at `now`.
    pub fn wall_ms(&self, now: Instant) -> i64 {
        self.cfg
            .wall_base_ms
            .saturating_add((now.as_nanos() / 1_000_000) as i64)
    }

    /// Wrong credentials seen from `ip`.
    pub fn failures_from(&self, ip: IpAddr) -> u64 {
        self.failures.get(&ip).copied().unwrap_or(0)
    }

    /// Wrong credentials seen in all.
    pub fn failures(&self) -> u64 {
        self.failed
    }

    /// Nonces whose counts are tracked.
    pub fn tracked_nonces(&self) -> usize {
        self.counts.len()
    }

    /// Writes the challenge header lines (one per algorithm, all with one
    /// new nonce): `WWW-Authenticate` (401) or `Proxy-Authenticate` (407).
    pub fn write_challenge(
        &mut self,
        now: Instant,
        realm: &str,
        proxy: bool,
        stale: bool,
        retry: bool,
        out: &mut Vec<u8>,
    ) {
        self.nonce.clear();
        let wall = self.wall_ms(now);
        self.key.issue(wall, retry, &mut self.nonce);
        let name: &[u8] = if proxy {
            b"Proxy-Authenticate: Digest realm=\""
        } else {
            b"WWW-Authenticate: Digest realm=\""
        };
        for alg in &self.cfg.algorithms {
            out.extend_from_slice(name);
            out.extend_from_slice(realm.as_bytes());
            out.extend_from_slice(b"\", nonce=\"");
            out.extend_from_slice(&self.nonce);
            out.extend_from_slice(b"\", qop=\"auth\", algorithm=");
            out.extend_from_slice(alg.name().as_bytes());
            if stale {
                out.extend_from_slice(b", stale=true");
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Checks Digest credentials (already matched to this realm and user)
    /// of a `method` request from `source` against `user`'s HA1s.
    pub fn check(
        &mut self,
        now: Instant,
        method: &[u8],
        creds: &Digest<'_>,
        user: &User,
        source: IpAddr,
    ) -> Verdict {
        let (Some(nonce), Some(response), Some(uri)) = (creds.nonce, creds.response, creds.uri)
        else {
            return Verdict::Malformed("Incomplete Credentials");
        };
        let Some(alg) = Algorithm::parse(creds.algorithm) else {
            // Not one we offered: offer ours again.
            return Verdict::Challenge {
                stale: false,
                retry: false,
            };
        };
        let qop = match creds.qop {
            None => None,
            Some(q) if q.eq_ignore_ascii_case(b"auth") => Some(q),
            Some(_) => {
                return Verdict::Challenge {
                    stale: false,
                    retry: false,
                };
            }
        };
        let nc = match (qop, creds.nc) {
            (None, _) => 1,
            (Some(_), Some(nc)) => match parse_nc(nc) {
                Some(n) => n,
                None => return Verdict::Malformed("Malformed Nonce Count"),
            },
            (Some(_), None) => return Verdict::Malformed("Incomplete Credentials"),
        };
        if qop.is_some() && creds.cnonce.is_none() {
            return Verdict::Malformed("Incomplete Credentials");
        }
        let wall = self.wall_ms(now);
        let ttl = i64::try_from(self.cfg.nonce_ttl.as_millis()).unwrap_or(i64::MAX);
        let (info, expired) = match self.key.verify(nonce, wall, ttl) {
            Ok(info) => (info, false),
            Err(NonceError::Stale(info)) => (info, true),
            Err(NonceError::Invalid) => {
                return Verdict::Challenge {
                    stale: false,
                    retry: false,
                };
            }
        };
        let ha1 = if alg.is_sha256() {
            &user.ha1_sha256
        } else {
            &user.ha1_md5
        };
        if ha1.len() != alg.hex_len() {
            // No HA1 for this algorithm: offer the others.
            return Verdict::Challenge {
                stale: false,
                retry: false,
            };
        }
        let inputs = Inputs {
            method,
            uri,
            nonce,
            nc: creds.nc.unwrap_or_default(),
            cnonce: creds.cnonce.unwrap_or_default(),
            qop,
        };
        let want = digest::response(alg, ha1, &inputs);
        if !digest::same(want.as_bytes(), response) {
            self.failed += 1;
            if self.failures.len() < MAX_SOURCES || self.failures.contains_key(&source) {
                *self.failures.entry(source).or_insert(0) += 1;
            }
            tracing::debug!(%source, user = %user.aor, "wrong digest credentials");
            if info.retry && !expired {
                return Verdict::Forbidden;
            }
            return Verdict::Challenge {
                stale: false,
                retry: true,
            };
        }
        if !user.enabled {
            return Verdict::Forbidden;
        }
        if expired || !self.key.issued_here(&info) || !self.counts.first_use(&info, nc, wall, ttl) {
            return Verdict::Challenge {
                stale: true,
                retry: false,
            };
        }
        Verdict::Ok
    }
}

/// `nc`: exactly 8 hex digits.
fn parse_nc(nc: &[u8]) -> Option<u32> {
    if nc.len() != 8 {
        return None;
    }
    let s = std::str::from_utf8(nc).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Finds the credentials meant for `realm` among a request's
/// `Authorization` (or `Proxy-Authorization`) headers. Another scheme, or
/// Digest for another realm, is ignored (RFC 4475 `regaut01`: challenge as
/// if absent). `Err` for a Digest header that does not parse.
pub fn credentials_for<'a>(
    msg: &sipring_parser::Message<'a>,
    proxy: bool,
    realm: &[u8],
) -> Result<Option<Digest<'a>>, &'static str> {
    let kind = if proxy {
        sipring_parser::HeaderKind::ProxyAuthorization
    } else {
        sipring_parser::HeaderKind::Authorization
    };
    let mut found = None;
    for header in msg.headers_of(kind) {
        let value = header.value;
        let Ok(auth) = sipring_parser::Auth::parse(value) else {
            // An unknown scheme parses; a broken Digest does not.
            if starts_with_digest(value) {
                return Err("Malformed Authorization");
            }
            continue;
        };
        if !auth.is_digest() {
            continue;
        }
        let d = digest_params(&auth);
        match d.realm {
            Some(r) if r.eq_ignore_ascii_case(realm) => found = found.or(Some(d)),
            Some(_) => {}
            None => return Err("Malformed Authorization"),
        }
    }
    Ok(found)
}

/// The Digest parameters of credentials (`Auth::digest` without its
/// search through every known name for each parameter: names are told
/// apart by length first). The first of a repeated parameter counts.
fn digest_params<'a>(auth: &sipring_parser::Auth<'a>) -> Digest<'a> {
    let mut d = Digest::default();
    for p in auth.params() {
        let n = p.name;
        let slot = match n.len() {
            2 if n.eq_ignore_ascii_case(b"nc") => &mut d.nc,
            3 if n.eq_ignore_ascii_case(b"uri") => &mut d.uri,
            3 if n.eq_ignore_ascii_case(b"qop") => &mut d.qop,
            5 if n.eq_ignore_ascii_case(b"realm") => &mut d.realm,
            5 if n.eq_ignore_ascii_case(b"nonce") => &mut d.nonce,
            5 if n.eq_ignore_ascii_case(b"stale") => &mut d.stale,
            6 if n.eq_ignore_ascii_case(b"cnonce") => &mut d.cnonce,
            6 if n.eq_ignore_ascii_case(b"opaque") => &mut d.opaque,
            6 if n.eq_ignore_ascii_case(b"domain") => &mut d.domain,
            8 if n.eq_ignore_ascii_case(b"username") => &mut d.username,
            8 if n.eq_ignore_ascii_case(b"response") => &mut d.response,
            8 if n.eq_ignore_ascii_case(b"userhash") => &mut d.userhash,
            9 if n.eq_ignore_ascii_case(b"algorithm") => &mut d.algorithm,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(p.value);
        }
    }
    d
}

fn starts_with_digest(v: &[u8]) -> bool {
    let v = v.trim_ascii_start();
    v.len() >= 6 && v[..6].eq_ignore_ascii_case(b"Digest")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipring_parser::Message;

    fn user(password: &str, enabled: bool) -> User {
        User {
            aor: "alice@example.com".into(),
            realm: "example.com".into(),
            ha1_md5: digest::ha1(false, "alice", "example.com", password),
            ha1_sha256: digest::ha1(true, "alice", "example.com", password),
            phone: None,
            enabled,
        }
    }

    fn settings() -> AuthSettings {
        AuthSettings {
            secret: b"test secret".to_vec(),
            nonce_ttl: Duration::from_secs(30),
            node: 5,
            wall_base_ms: 1_700_000_000_000,
            ..AuthSettings::default()
        }
    }

    fn nonce_of(challenge: &[u8]) -> String {
        let s = std::str::from_utf8(challenge).unwrap();
        let i = s.find("nonce=\"").unwrap() + 7;
        s[i..i + nonce::NONCE_LEN].to_owned()
    }

    /// Credentials the way a client computes them.
    fn authorization(alg: Algorithm, nonce: &str, nc: &str, password: &str) -> String {
        let ha1 = digest::ha1(alg.is_sha256(), "alice", "example.com", password);
        let i = Inputs {
            method: b"REGISTER",
            uri: b"sip:example.com",
            nonce: nonce.as_bytes(),
            nc: nc.as_bytes(),
            cnonce: b"0a4f113b",
            qop: Some(b"auth"),
        };
        let r = digest::response(alg, &ha1, &i);
        format!(
            "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", \
             response=\"{}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc}",
            r.as_str(),
            alg.name()
        )
    }

    fn register(auth: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             To: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
             Call-ID: c1\r\nCSeq: 1 REGISTER\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn check(a: &mut Authenticator, now: Instant, auth: &str, u: &User) -> Verdict {
        let bytes = register(&format!("Authorization: {auth}\r\n"));
        let m = Message::parse(&bytes).unwrap();
        let d = credentials_for(&m, false, b"example.com").unwrap().unwrap();
        a.check(now, b"REGISTER", &d, u, "192.0.2.1".parse().unwrap())
    }

    #[test]
    fn digest_params_agree_with_the_parser() {
        for v in [
            &b"Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:x\", \
               response=\"r\", algorithm=MD5, cnonce=\"c\", opaque=\"o\", qop=auth, nc=00000001, \
               stale=false, domain=\"d\", userhash=false"[..],
            b"Digest USERNAME=\"a\", Realm=x, realm=y, foo=bar, NC=00000002",
            b"Digest realm=\"r\"",
        ] {
            let auth = sipring_parser::Auth::parse(v).unwrap();
            assert_eq!(Some(digest_params(&auth)), auth.digest(), "{v:?}");
        }
    }

    #[test]
    fn a_challenge_answered_right_authenticates_once_per_count() {
        let mut a = Authenticator::new(&settings(), 0, 1);
        let now = Instant::from_millis(1_000);
        let mut ch = Vec::new();
        a.write_challenge(now, "example.com", false, false, false, &mut ch);
        let text = String::from_utf8(ch.clone()).unwrap();
        assert!(text.starts_with("WWW-Authenticate: Digest realm=\"example.com\", nonce=\""));
        assert!(text.contains("algorithm=MD5\r\n") && text.contains("algorithm=SHA-256\r\n"));
        assert!(!text.contains("stale"));
        let n = nonce_of(&ch);
        let u = user("s3cret", true);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let nc = if alg == Algorithm::Md5 {
                "00000001"
            } else {
                "00000002"
            };
            let auth = authorization(alg, &n, nc, "s3cret");
            assert_eq!(check(&mut a, now, &auth, &u), Verdict::Ok, "{alg:?}");
            // The same count again is a replay: a fresh, stale challenge.
            assert_eq!(
                check(&mut a, now, &auth, &u),
                Verdict::Challenge {
                    stale: true,
                    retry: false
                }
            );
        }
    }

    #[test]
    fn wrong_credentials_are_challenged_then_forbidden_and_counted() {
        let mut a = Authenticator::new(&settings(), 0, 1);
        let now = Instant::from_millis(1_000);
        let u = user("s3cret", true);
        let mut ch = Vec::new();
        a.write_challenge(now, "example.com", false, false, false, &mut ch);
        let wrong = authorization(Algorithm::Md5, &nonce_of(&ch), "00000001", "guess");
        assert_eq!(
            check(&mut a, now, &wrong, &u),
            Verdict::Challenge {
                stale: false,
                retry: true
            }
        );
        let mut ch = Vec::new();
        a.write_challenge(now, "example.com", false, false, true, &mut ch);
        let wrong = authorization(Algorithm::Md5, &nonce_of(&ch), "00000001", "guess2");
        assert_eq!(check(&mut a, now, &wrong, &u), Verdict::Forbidden);
        assert_eq!(a.failures_from("192.0.2.1".parse().unwrap()), 2);
        assert_eq!(a.failures(), 2);
        // Right credentials on the flagged nonce still pass.
        let right = authorization(Algorithm::Md5, &nonce_of(&ch), "00000001", "s3cret");
        assert_eq!(check(&mut a, now, &right, &u), Verdict::Ok);
        // A disabled user is refused even with the right password.
        let off = user("s3cret", false);
        let right = authorization(Algorithm::Md5, &nonce_of(&ch), "00000002", "s3cret");
        assert_eq!(check(&mut a, now, &right, &off), Verdict::Forbidden);
    }

    #[test]
    fn expired_foreign_and_forged_nonces() {
        let cfg = settings();
        let mut a = Authenticator::new(&cfg, 0, 1);
        let mut b = Authenticator::new(&cfg, 1, 2);
        let u = user("s3cret", true);
        let t0 = Instant::from_millis(1_000);
        let mut ch = Vec::new();
        a.write_challenge(t0, "example.com", false, false, false, &mut ch);
        let n = nonce_of(&ch);
        let auth = authorization(Algorithm::Md5, &n, "00000001", "s3cret");
        let stale = Verdict::Challenge {
            stale: true,
            retry: false,
        };
        // Core 1 verifies core 0's nonce but asks for one of its own.
        assert_eq!(check(&mut b, t0, &auth, &u), stale);
        // Expired: stale.
        let late = t0 + Duration::from_secs(31);
        assert_eq!(check(&mut a, late, &auth, &u), stale);
        // Another secret: not ours at all, a plain challenge.
        let mut other = Authenticator::new(
            &AuthSettings {
                secret: b"other".to_vec(),
                ..cfg.clone()
            },
            0,
            1,
        );
        assert_eq!(
            check(&mut other, t0, &auth, &u),
            Verdict::Challenge {
                stale: false,
                retry: false
            }
        );
        // Unsupported algorithm or qop: challenged again.
        let bad = auth.replace("algorithm=MD5", "algorithm=SHA-512-256");
        assert_eq!(
            check(&mut a, t0, &bad, &u),
            Verdict::Challenge {
                stale: false,
                retry: false
            }
        );
        let bad = auth.replace("nc=00000001", "nc=1");
        assert_eq!(
            check(&mut a, t0, &bad, &u),
            Verdict::Malformed("Malformed Nonce Count")
        );
        let bad = auth.replace("response=", "x-response=");
        assert_eq!(
            check(&mut a, t0, &bad, &u),
            Verdict::Malformed("Incomplete Credentials")
        );
    }

    #[test]
    fn credentials_are_picked_by_scheme_and_realm() {
        // RFC 4475 regaut01: an unknown scheme is ignored.
        let bytes = register("Authorization: NoOneKnowsThisScheme opaque-data=here\r\n");
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(credentials_for(&m, false, b"example.com"), Ok(None));
        // Another realm's credentials are not ours; ours are found among several.
        let bytes = register(
            "Authorization: Digest username=\"a\", realm=\"other.org\", nonce=\"n\", uri=\"u\", response=\"r\"\r\n\
             Authorization: Digest username=\"alice\", realm=\"EXAMPLE.com\", nonce=\"n\", uri=\"u\", response=\"r\"\r\n",
        );
        let m = Message::parse(&bytes).unwrap();
        let d = credentials_for(&m, false, b"example.com").unwrap().unwrap();
        assert_eq!(d.username, Some(&b"alice"[..]));
        assert_eq!(credentials_for(&m, true, b"example.com"), Ok(None));
        // A Digest header that does not parse is an error (400).
        let bytes = register("Authorization: Digest username=\"alice, realm=\r\n");
        let m = Message::parse(&bytes).unwrap();
        assert!(credentials_for(&m, false, b"example.com").is_err());
    }
}
