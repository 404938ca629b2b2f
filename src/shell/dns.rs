//! A per-core cache of A/AAAA lookups for `Request::Resolve`.
//!
//! Lookups run on glommio's blocking thread pool (`spawn_blocking`) through
//! the system resolver (`getaddrinfo`, so /etc/hosts and nsswitch apply); the
//! core never blocks on them. The system resolver gives no TTL, so answers
//! are kept for a configured time (negative answers for a shorter one).

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Resolved names of one core.
#[derive(Debug)]
pub(crate) struct DnsCache {
    entries: HashMap<String, (Vec<IpAddr>, Instant)>,
    ttl: Duration,
    negative_ttl: Duration,
}

impl DnsCache {
    pub(crate) fn new(ttl: Duration, negative_ttl: Duration) -> Self {
        DnsCache {
            entries: HashMap::new(),
            ttl,
            negative_ttl,
        }
    }

    /// The cached answer for `host`, if still fresh.
    pub(crate) fn get(&self, host: &str, now: Instant) -> Option<&[IpAddr]> {
        match self.entries.get(host) {
            Some((addrs, expires)) if *expires > now => Some(addrs),
            _ => None,
        }
    }

    /// Remember an answer.
    pub(crate) fn insert(&mut self, host: String, addrs: Vec<IpAddr>, now: Instant) {
        let ttl = if addrs.is_empty() {
            self.negative_ttl
        } else {
            self.ttl
        };
        self.entries.insert(host, (addrs, now + ttl));
    }

    /// Forget expired answers.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.entries.retain(|_, (_, expires)| *expires > now);
    }
}

/// Resolve `host` with the system resolver (blocking; run it off the core).
/// An IP literal resolves to itself.
pub(crate) fn resolve_blocking(host: &str) -> Vec<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vec![ip];
    }
    let mut out = Vec::new();
    if let Ok(addrs) = (bare, 0u16).to_socket_addrs() {
        for a in addrs {
            if !out.contains(&a.ip()) {
                out.push(a.ip());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_expires_and_literals_resolve() {
        let mut c = DnsCache::new(Duration::from_secs(10), Duration::from_secs(1));
        let t = Instant::now();
        c.insert("a".into(), vec!["10.0.0.1".parse().unwrap()], t);
        c.insert("b".into(), vec![], t);
        assert!(c.get("a", t + Duration::from_secs(5)).is_some());
        assert!(c.get("b", t + Duration::from_secs(2)).is_none());
        c.expire(t + Duration::from_secs(11));
        assert!(c.get("a", t).is_none());
        assert_eq!(
            resolve_blocking("127.0.0.1"),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve_blocking("[::1]"),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert!(
            resolve_blocking("localhost")
                .iter()
                .all(|ip| ip.is_loopback())
        );
    }
}
