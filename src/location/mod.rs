//! The location service's per-core caches, in front of the store: users
//! (by AOR and by phone alias) and bindings (by AOR), and how bindings
//! become forking targets.
//!
//! Correctness: an entry records the store's change counter ([`Epochs`])
//! read before it was fetched; it is used only while the counter is
//! unchanged (every write that commits bumps it), so a refresh, a removal
//! or a new binding anywhere in this process is seen by every core at
//! once. Entries also expire by age when `ttl` is set (the Cassandra
//! backend, where other nodes write too). Bindings carry their expiry
//! time: an expired binding is never returned, and a per-core timer wheel
//! evicts each AOR's entry at its earliest expiry, so expiry never scans
//! users. At most `capacity` entries per map (past that the map is
//! emptied: a cache, not the truth). Sans-IO: `now` and the wall-clock
//! base come in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Peer, Transport};
use crate::proxy::Target;
use crate::store::{Binding, Epochs, User};
use crate::time::Instant;
use crate::timer::{TimerKey, TimerWheel};

/// Most expired cache entries handled per `handle_timeout` (the rest at
/// the next one): bounded work per tick.
pub const EXPIRIES_PER_TICK: usize = 1024;

/// A cached answer.
#[derive(Debug)]
struct Entry<T> {
    value: T,
    epoch: u64,
    at: Instant,
}

#[derive(Debug)]
struct BindingEntry {
    bindings: Vec<Binding>,
    epoch: u64,
    at: Instant,
    timer: Option<TimerKey>,
}

/// A cache look-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Current.
    Hit(T),
    /// Absent or stale: ask the store.
    Miss,
}

/// One core's location caches.
#[derive(Debug)]
pub struct Location {
    epochs: Arc<Epochs>,
    ttl: Option<Duration>,
    capacity: usize,
    wall_base_ms: i64,
    /// Shared (`Rc`): a look-up hands out the user without copying it.
    users: HashMap<String, Entry<Option<Rc<User>>>>,
    phones: HashMap<String, Entry<Option<Rc<User>>>>,
    bindings: HashMap<String, BindingEntry>,
    wheel: TimerWheel<String>,
}

impl Location {
    /// Caches validated by `epochs`; entries older than `ttl` (if any) are
    /// refetched; `wall_base_ms` is the wall-clock time at `Instant::ZERO`.
    pub fn new(
        epochs: Arc<Epochs>,
        ttl: Option<Duration>,
        capacity: usize,
        wall_base_ms: i64,
    ) -> Self {
        Location {
            epochs,
            ttl,
            capacity: capacity.max(16),
            wall_base_ms,
            users: HashMap::new(),
            phones: HashMap::new(),
            bindings: HashMap::new(),
            wheel: TimerWheel::new(Instant::ZERO),
        }
    }

    /// The change counters (read before a fetch, given back to `insert_*`).
    pub fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    /// Wall-clock milliseconds at `now`.
    pub fn wall_ms(&self, now: Instant) -> i64 {
        self.wall_base_ms
            .saturating_add((now.as_nanos() / 1_000_000) as i64)
    }

    fn instant_of(&self, wall_ms: i64) -> Instant {
        Instant::from_millis(wall_ms.saturating_sub(self.wall_base_ms).max(0) as u64)
    }

    fn young(&self, at: Instant, now: Instant) -> bool {
        self.ttl
            .is_none_or(|t| now.saturating_duration_since(at) < t)
    }

    /// The user with this AOR, if the cache knows it; with `stale`, what
    /// it last knew even if outdated (the store is failing).
    pub fn user(&self, aor: &str, now: Instant, stale: bool) -> Lookup<Option<Rc<User>>> {
        match self.users.get(aor) {
            Some(e) if stale || (e.epoch == self.epochs.users() && self.young(e.at, now)) => {
                Lookup::Hit(e.value.clone())
            }
            _ => Lookup::Miss,
        }
    }

    /// The user with this phone alias, if the cache knows it (`stale`: as
    /// for [`Location::user`]).
    pub fn user_by_phone(
        &self,
        phone: &str,
        now: Instant,
        stale: bool,
    ) -> Lookup<Option<Rc<User>>> {
        match self.phones.get(phone) {
            Some(e) if stale || (e.epoch == self.epochs.users() && self.young(e.at, now)) => {
                Lookup::Hit(e.value.clone())
            }
            _ => Lookup::Miss,
        }
    }

    /// Caches the answer to a user look-up sent when the users' counter
    /// was `epoch`.
    pub fn insert_user(&mut self, aor: &str, user: Option<User>, epoch: u64, now: Instant) {
        if self.users.len() >= self.capacity {
            self.users.clear();
        }
        let e = Entry {
            value: user.map(Rc::new),
            epoch,
            at: now,
        };
        self.users.insert(aor.to_owned(), e);
    }

    /// Caches the answer to a phone look-up.
    pub fn insert_phone(&mut self, phone: &str, user: Option<User>, epoch: u64, now: Instant) {
        if self.phones.len() >= self.capacity {
            self.phones.clear();
        }
        let e = Entry {
            value: user.map(Rc::new),
            epoch,
            at: now,
        };
        self.phones.insert(phone.to_owned(), e);
    }

    /// The live bindings of `aor`, if the cache knows them (`stale`: as for
    /// [`Location::user`]; expired bindings are never returned).
    pub fn bindings(&self, aor: &str, now: Instant, stale: bool) -> Lookup<Vec<&Binding>> {
        match self.bindings.get(aor) {
            Some(e) if stale || (e.epoch == self.epochs.bindings(aor) && self.young(e.at, now)) => {
                let wall = self.wall_ms(now);
                Lookup::Hit(
                    e.bindings
                        .iter()
                        .filter(|b| b.expires_at_ms > wall)
                        .collect(),
                )
            }
            _ => Lookup::Miss,
        }
    }

    /// Caches the bindings of `aor` read (or written) when its counter was
    /// `epoch`; the entry goes at the earliest expiry.
    pub fn insert_bindings(&mut self, aor: &str, bindings: Vec<Binding>, epoch: u64, now: Instant) {
        if let Some(old) = self.bindings.remove(aor) {
            if let Some(k) = old.timer {
                self.wheel.cancel(k);
            }
        }
        if self.bindings.len() >= self.capacity {
            self.bindings.clear();
            self.wheel = TimerWheel::new(now);
        }
        let timer = bindings.iter().map(|b| b.expires_at_ms).min().map(|ms| {
            self.wheel
                .insert(self.instant_of(ms).max(now), aor.to_owned())
        });
        self.bindings.insert(
            aor.to_owned(),
            BindingEntry {
                bindings,
                epoch,
                at: now,
                timer,
            },
        );
    }

    /// Forgets `aor`'s bindings (a write failed: the truth is unknown).
    pub fn forget_bindings(&mut self, aor: &str) {
        if let Some(old) = self.bindings.remove(aor) {
            if let Some(k) = old.timer {
                self.wheel.cancel(k);
            }
        }
    }

    /// Entries cached now (users, phones, AORs with bindings).
    pub fn len(&self) -> (usize, usize, usize) {
        (self.users.len(), self.phones.len(), self.bindings.len())
    }

    /// When an entry's earliest binding expires next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wheel.next_deadline()
    }

    /// Drops expired bindings from their entries (an entry left empty
    /// goes), at most [`EXPIRIES_PER_TICK`] entries per call.
    pub fn handle_timeout(&mut self, now: Instant) {
        let wall = self.wall_ms(now);
        for _ in 0..EXPIRIES_PER_TICK {
            let Some((_, aor)) = self.wheel.poll_expired(now) else {
                return;
            };
            let Some(mut e) = self.bindings.remove(&aor) else {
                continue;
            };
            e.bindings.retain(|b| b.expires_at_ms > wall);
            if let Some(next) = e.bindings.iter().map(|b| b.expires_at_ms).min() {
                e.timer = Some(
                    self.wheel
                        .insert(self.instant_of(next).max(now), aor.clone()),
                );
                self.bindings.insert(aor, e);
            }
        }
    }
}

/// The forking targets of live bindings, highest `q` first: the contact
/// (its URI headers dropped: they are for building requests, RFC 3261
/// §19.1.5), the Path as Route set (RFC 3327), and for an RFC 5626 flow
/// (`+sip.instance` and `reg-id`) the address the registration came from.
pub fn targets(bindings: &[&Binding]) -> Vec<Target> {
    let mut v: Vec<&&Binding> = bindings.iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.q_milli));
    v.into_iter()
        .map(|b| {
            let uri = match sipring_parser::SipUri::parse(b.contact.as_bytes()) {
                Ok(u) => u.without_headers().to_vec(),
                Err(_) => b.contact.clone().into_bytes(),
            };
            let flow = b.instance.is_some() && b.reg_id.is_some();
            Target {
                uri,
                route: b.path.iter().map(|p| p.clone().into_bytes()).collect(),
                dest: if flow {
                    b.source.as_deref().and_then(parse_source)
                } else {
                    None
                },
            }
        })
        .collect()
}

/// A binding's `source` (`udp:IP:PORT`, `tcp:IP:PORT`).
pub fn parse_source(s: &str) -> Option<Peer> {
    let (t, addr) = s.split_once(':')?;
    let transport = match t {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        _ => return None,
    };
    let addr: SocketAddr = addr.parse().ok()?;
    Some(Peer {
        addr,
        transport,
        conn: None,
    })
}

/// The `source` of a registration from `peer`.
pub fn source_of(peer: &Peer) -> String {
    let t = match peer.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    match peer.addr {
        // The common case without the formatting machinery.
        SocketAddr::V4(a) => {
            let mut s = String::with_capacity(25);
            s.push_str(t);
            s.push(':');
            for (i, o) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_decimal(&mut s, u32::from(*o));
            }
            s.push(':');
            push_decimal(&mut s, u32::from(a.port()));
            s
        }
        SocketAddr::V6(_) => format!("{t}:{}", peer.addr),
    }
}

fn push_decimal(s: &mut String, n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(buf[i..].iter().map(|&b| char::from(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_700_000_000_000;

    fn binding(contact: &str, expires_at_ms: i64, q: u16) -> Binding {
        Binding {
            aor: "bob@example.com".into(),
            contact: contact.into(),
            node: "n".into(),
            core: 0,
            path: vec![],
            instance: None,
            reg_id: None,
            q_milli: q,
            call_id: "c".into(),
            cseq: 1,
            expires_at_ms,
            source: Some("udp:192.0.2.9:5070".into()),
        }
    }

    #[test]
    fn entries_are_current_only_while_the_epoch_holds() {
        let epochs = Arc::new(Epochs::default());
        let mut loc = Location::new(epochs.clone(), None, 100, BASE);
        let t = Instant::from_millis(1_000);
        assert_eq!(loc.user("a@x", t, false), Lookup::Miss);
        let e = epochs.users();
        loc.insert_user("a@x", None, e, t);
        assert_eq!(loc.user("a@x", t, false), Lookup::Hit(None));
        epochs.bump_users();
        assert_eq!(
            loc.user("a@x", t, false),
            Lookup::Miss,
            "a user changed somewhere"
        );

        let aor = "bob@example.com";
        let e = epochs.bindings(aor);
        loc.insert_bindings(aor, vec![binding("sip:b@h1", BASE + 60_000, 1000)], e, t);
        assert!(matches!(loc.bindings(aor, t, false), Lookup::Hit(v) if v.len() == 1));
        epochs.bump_bindings(aor);
        assert_eq!(
            loc.bindings(aor, t, false),
            Lookup::Miss,
            "refreshed or removed elsewhere"
        );
    }

    #[test]
    fn expired_bindings_are_never_returned_and_entries_go_at_expiry() {
        let epochs = Arc::new(Epochs::default());
        let mut loc = Location::new(epochs.clone(), None, 100, BASE);
        let aor = "bob@example.com";
        let t0 = Instant::from_millis(0);
        let bs = vec![
            binding("sip:b@h1", BASE + 10_000, 1000),
            binding("sip:b@h2", BASE + 20_000, 500),
        ];
        loc.insert_bindings(aor, bs, epochs.bindings(aor), t0);
        // The wheel may wake early (a coarse slot), never late.
        assert!(loc.poll_timeout().unwrap() <= Instant::from_millis(10_000));
        // Before the timer: filtered at read time.
        let t = Instant::from_millis(15_000);
        let Lookup::Hit(v) = loc.bindings(aor, t, false) else {
            panic!("miss")
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].contact, "sip:b@h2");
        loc.handle_timeout(t);
        assert!(loc.poll_timeout().unwrap() <= Instant::from_millis(20_000));
        assert!(matches!(loc.bindings(aor, t, false), Lookup::Hit(v) if v.len() == 1));
        loc.handle_timeout(Instant::from_millis(20_000));
        assert_eq!(
            loc.bindings(aor, Instant::from_millis(20_000), false),
            Lookup::Miss
        );
        assert_eq!(loc.len().2, 0);
        assert_eq!(loc.poll_timeout(), None);
    }

    #[test]
    fn a_ttl_ages_entries_out() {
        let epochs = Arc::new(Epochs::default());
        let mut loc = Location::new(epochs, Some(Duration::from_secs(5)), 100, BASE);
        loc.insert_user("a@x", None, 0, Instant::ZERO);
        assert_eq!(
            loc.user("a@x", Instant::from_millis(4_999), false),
            Lookup::Hit(None)
        );
        assert_eq!(
            loc.user("a@x", Instant::from_millis(5_000), false),
            Lookup::Miss
        );
        // What it knew, when the store fails.
        assert_eq!(
            loc.user("a@x", Instant::from_millis(5_000), true),
            Lookup::Hit(None)
        );
    }

    #[test]
    fn targets_follow_q_path_and_flows() {
        let mut a = binding("sip:b@h1:5070;transport=tcp?Subject=x", BASE + 1, 500);
        a.path = vec!["<sip:edge;lr>".into()];
        let mut b = binding("sip:b@10.0.0.1:5070", BASE + 1, 1000);
        b.instance = Some("<urn:uuid:1>".into());
        b.reg_id = Some(1);
        let t = targets(&[&a, &b]);
        assert_eq!(t[0].uri, b"sip:b@10.0.0.1:5070");
        assert_eq!(
            t[0].dest,
            Some(Peer {
                addr: "192.0.2.9:5070".parse().unwrap(),
                transport: Transport::Udp,
                conn: None
            })
        );
        assert_eq!(t[1].uri, b"sip:b@h1:5070;transport=tcp");
        assert_eq!(t[1].route, vec![b"<sip:edge;lr>".to_vec()]);
        assert_eq!(t[1].dest, None);
        assert_eq!(
            parse_source("tcp:[::1]:5060").unwrap().transport,
            Transport::Tcp
        );
        assert_eq!(parse_source("sctp:1.2.3.4:5"), None);
        for (addr, t) in [
            ("192.0.2.9:5070", Transport::Udp),
            ("0.0.0.0:0", Transport::Tcp),
            ("255.255.255.255:65535", Transport::Udp),
            ("[2001:db8::1]:5060", Transport::Tcp),
        ] {
            let peer = Peer {
                addr: addr.parse().unwrap(),
                transport: t,
                conn: None,
            };
            let s = source_of(&peer);
            assert!(s.ends_with(addr), "{s}");
            assert_eq!(parse_source(&s), Some(peer));
        }
    }
}
