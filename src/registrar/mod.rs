//! The registrar, digest authentication and location service of one core:
//! the proxy's [`Services`].
//!
//! For each new request the proxy hands over:
//! - REGISTER for this node (its address or a local domain, or a user of
//!   the store whose domain the Request-URI names): RFC 3261 §10.3 checks
//!   (`register::check`), digest authentication (401), the bindings
//!   changed in one durable store write (`register::plan`), then 200 OK
//!   listing every binding. A REGISTER for another domain is proxied (with
//!   the relay rule below).
//! - Other initial requests: a caller whose From is a user of the store
//!   authenticates (407) unless it comes from a trusted peer. A Request-URI
//!   naming a user (by AOR, or by phone alias as `sip:+1555...@domain` or
//!   `tel:+1555...`) forks to its live bindings (480 with none, 404 when
//!   no such user exists in a local domain). Anything else is for a
//!   foreign destination: relayed only for an authenticated user, a
//!   trusted peer, or when a fixed next hop (`forward_to`) is configured;
//!   otherwise 403 (no open relay).
//! - Requests within a dialog (To tag) are routed by the proxy as usual.
//!
//! Users and bindings come from the per-core caches of `crate::location`;
//! a miss becomes a store request (`Request::Store`, deduplicated per key)
//! and the request waits (`Action::Wait`); when the answer comes the
//! request is decided again from the start with the cache filled. Work is
//! bounded per core: at most `max_pending` requests wait, and at most
//! `registrations_per_tick` REGISTERs are taken per 10 ms (503 with
//! Retry-After past either), so a registration storm cannot starve calls.

pub mod register;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sipring_parser::{Message, Uri};

use crate::auth::{AuthSettings, Authenticator, Verdict, credentials_for};
use crate::engine::{CoreId, Peer, Reply, Request};
use crate::location::{self, Location, Lookup};
use crate::proxy::{Action, NewRequest, Services};
use crate::store::Binding;
use crate::store::{BindingUpdate, Epochs, StoreAnswer, StoreError, StoreOp, User};
use crate::time::Instant;
use register::{Plan, Rules, aor_of};

/// The admission window of `registrations_per_tick`.
const TICK: Duration = Duration::from_millis(10);
/// Store round trips one request may need before it is answered 503.
const MAX_ROUNDS: u8 = 6;

/// An address block (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `IP` or `IP/PREFIX`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(u32::from(a)), u128::from(u32::from(b)), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            (IpAddr::V4(a), IpAddr::V6(b)) => match b.to_ipv4_mapped() {
                Some(b) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
                None => return false,
            },
            (IpAddr::V6(_), IpAddr::V4(_)) => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// The registrar's settings (from `[registrar]` and `[auth]`).
#[derive(Clone, Debug)]
pub struct RegistrarSettings {
    /// The domains this node serves (lower case): the configured domain,
    /// `registrar.domains`, the advertised host and listen address.
    pub domains: Vec<String>,
    /// Expiry limits and the most bindings per AOR.
    pub rules: Rules,
    /// Sources that need neither authentication nor the relay rule.
    pub trusted: Vec<IpNet>,
    /// Challenge (407) requests other than REGISTER from users of the store.
    pub authenticate_requests: bool,
    /// A fixed next hop (`forward_to`) is configured: requests for foreign
    /// destinations and unknown local users go there.
    pub next_hop: bool,
    /// Digest authentication.
    pub auth: AuthSettings,
    /// This node's id (bindings record it).
    pub node_id: String,
    /// Cached users and bindings are refetched after this long (clusters);
    /// `None`: only when the store's change counters move.
    pub cache_ttl: Option<Duration>,
    /// Most cache entries per map per core.
    pub cache_capacity: usize,
    /// Most requests waiting for the store per core.
    pub max_pending: usize,
    /// Most REGISTERs taken per core per 10 ms.
    pub registrations_per_tick: u32,
    /// Wall-clock ms at `Instant::ZERO` (bindings' expiry times are wall
    /// clock).
    pub wall_base_ms: i64,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        RegistrarSettings {
            domains: Vec::new(),
            rules: Rules::default(),
            trusted: Vec::new(),
            authenticate_requests: true,
            next_hop: false,
            auth: AuthSettings::default(),
            node_id: "sipring".into(),
            cache_ttl: None,
            cache_capacity: 200_000,
            max_pending: 8_192,
            registrations_per_tick: 1_000,
            wall_base_ms: 0,
        }
    }
}

impl RegistrarSettings {
    fn is_local(&self, host: &[u8]) -> bool {
        let host = trim_brackets(host);
        self.domains
            .iter()
            .any(|d| trim_brackets(d.as_bytes()).eq_ignore_ascii_case(host))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }
}

fn trim_brackets(h: &[u8]) -> &[u8] {
    h.strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(h)
}

/// What a request waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FetchKey {
    User(String),
    Phone(String),
    Bindings(String),
}

#[derive(Debug)]
enum Fetch {
    Read {
        key: FetchKey,
        /// The key's change counter when the read was sent.
        epoch: u64,
        waiters: Vec<u64>,
    },
    Update {
        call: u64,
        aor: String,
        /// The Path lines its 200 OK echoes.
        path_lines: Vec<u8>,
    },
}

/// A request waiting for the store.
#[derive(Debug)]
struct Job {
    bytes: Vec<u8>,
    meta: Meta,
    rounds: u8,
    /// A store read for it failed: decide from what the caches last knew,
    /// or answer 503.
    stale_ok: bool,
    /// Its credentials were accepted (a nonce count is used once: a
    /// request decided again must not be checked again).
    authenticated: bool,
}

/// What the proxy told about a request, beyond its bytes.
#[derive(Clone, Copy, Debug)]
struct Meta {
    source: Peer,
    to_me: bool,
    routed: bool,
    in_dialog: bool,
}

/// The next step of a request.
#[derive(Debug)]
enum Step {
    Done(Action),
    Need(FetchKey),
    Write {
        aor: String,
        update: BindingUpdate,
        /// The Path lines of the 200 OK (`RegisterReq::path_lines`).
        path_lines: Vec<u8>,
    },
}

/// What the registrar did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistrarStats {
    /// REGISTERs answered 200.
    pub registered: u64,
    /// Challenges sent (401 and 407).
    pub challenges: u64,
    /// Requests refused 403 (wrong credentials again, relaying, disabled).
    pub forbidden: u64,
    /// Requests refused 503 for load (pending or per-tick limit).
    pub shed: u64,
    /// Store requests sent.
    pub store_requests: u64,
    /// Store requests that failed.
    pub store_errors: u64,
}

/// One core's registrar, authentication and location service.
#[derive(Debug)]
pub struct Registrar {
    cfg: Arc<RegistrarSettings>,
    core: CoreId,
    auth: Authenticator,
    loc: Location,
    jobs: HashMap<u64, Job>,
    fetches: HashMap<u64, Fetch>,
    by_key: HashMap<FetchKey, u64>,
    requests: VecDeque<Request>,
    decisions: VecDeque<(u64, Action)>,
    next_token: u64,
    window: (Instant, u32),
    stats: RegistrarStats,
    /// While deciding a request whose store read failed: use what the
    /// caches last knew (calls keep flowing through a store outage).
    stale_ok: bool,
    /// The Date of 200 OKs: the wall-clock second it was written for.
    date: (i64, String),
}

impl Registrar {
    /// The registrar of core `core`, over the store whose change counters
    /// are `epochs`; `seed` varies the nonces.
    pub fn new(cfg: Arc<RegistrarSettings>, epochs: Arc<Epochs>, core: CoreId, seed: u64) -> Self {
        Registrar {
            auth: Authenticator::new(&cfg.auth, core, seed),
            loc: Location::new(epochs, cfg.cache_ttl, cfg.cache_capacity, cfg.wall_base_ms),
            core,
            jobs: HashMap::new(),
            fetches: HashMap::new(),
            by_key: HashMap::new(),
            requests: VecDeque::new(),
            decisions: VecDeque::new(),
            next_token: 1,
            window: (Instant::ZERO, 0),
            stats: RegistrarStats::default(),
            stale_ok: false,
            date: (i64::MIN, String::new()),
            cfg,
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> RegistrarStats {
        self.stats
    }

    /// Requests waiting for the store.
    pub fn pending(&self) -> usize {
        self.jobs.len()
    }

    /// The authenticator (failure counts per source).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn respond(&mut self, code: u16, reason: &'static str, headers: Vec<u8>) -> Step {
        match code {
            401 | 407 => self.stats.challenges += 1,
            403 => self.stats.forbidden += 1,
            _ => {}
        }
        Step::Done(Action::Respond {
            code,
            reason,
            headers,
        })
    }

    fn challenge(
        &mut self,
        now: Instant,
        realm: &str,
        proxy: bool,
        stale: bool,
        retry: bool,
    ) -> Step {
        let mut h = Vec::with_capacity(256);
        self.auth
            .write_challenge(now, realm, proxy, stale, retry, &mut h);
        if proxy {
            self.respond(407, "Proxy Authentication Required", h)
        } else {
            self.respond(401, "Unauthorized", h)
        }
    }

    fn unavailable(&mut self) -> Action {
        self.stats.shed += 1;
        Action::Respond {
            code: 503,
            reason: "Service Unavailable",
            headers: b"Retry-After: 5\r\n".to_vec(),
        }
    }

    /// The 200 OK's header lines (`register::write_ok_headers`), with the
    /// Date formatted once per second.
    fn ok_headers(
        date: &mut (i64, String),
        bindings: &[&Binding],
        path_lines: &[u8],
        wall_ms: i64,
    ) -> Vec<u8> {
        let sec = wall_ms.div_euclid(1000);
        if date.0 != sec {
            *date = (sec, register::http_date(wall_ms));
        }
        let mut h = Vec::new();
        register::write_ok_headers(&mut h, bindings, path_lines, wall_ms, &date.1);
        h
    }

    /// Takes one more REGISTER in this 10 ms window, if the budget allows.
    fn admit(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window.0) >= TICK {
            self.window = (now, 0);
        }
        if self.window.1 >= self.cfg.registrations_per_tick {
            return false;
        }
        self.window.1 += 1;
        true
    }

    // ------------------------------------------------------------ steps

    /// Decides a request from the caches, or says what it needs.
    fn step(&mut self, now: Instant, m: &Message<'_>, meta: &Meta, authed: &mut bool) -> Step {
        let method = m.method().map_or(&b""[..], |x| x.as_bytes());
        if method == b"REGISTER" {
            return self.register(now, m, meta, authed);
        }
        if meta.in_dialog {
            return Step::Done(Action::Proxy);
        }
        let ip = meta.source.addr.ip();
        let trusted = self.cfg.is_trusted(ip);
        // The caller: a user of the store proves who it is.
        let mut authenticated = *authed;
        if !trusted && !authenticated && self.cfg.authenticate_requests {
            let from = m.from().ok().and_then(|f| f.uri().ok());
            if let Some(Uri::Sip(u)) = from {
                if let Some(user) = u.user.filter(|u| !u.is_empty()) {
                    let aor = aor_of(user, u.host.raw);
                    let caller = match self.loc.user(&aor, now, self.stale_ok) {
                        Lookup::Miss => return Step::Need(FetchKey::User(aor)),
                        Lookup::Hit(c) => c,
                    };
                    if let Some(caller) = caller {
                        match self.authenticate(now, m, method, &caller, user, ip, true) {
                            None => {
                                authenticated = true;
                                *authed = true;
                            }
                            Some(step) => return step,
                        }
                    }
                }
            }
        }
        if meta.routed {
            return self.relay(trusted || authenticated);
        }
        // The callee.
        let ruri = match m.request_uri() {
            Ok(u) => u,
            Err(_) => return self.respond(400, "Malformed Request-URI", Vec::new()),
        };
        match ruri {
            Uri::Tel(t) => {
                let Some(phone) = tel_number(t.number) else {
                    return self.respond(404, "Not Found", Vec::new());
                };
                match self.loc.user_by_phone(&phone, now, self.stale_ok) {
                    Lookup::Miss => Step::Need(FetchKey::Phone(phone)),
                    Lookup::Hit(Some(u)) => {
                        let (aor, enabled) = (u.aor.clone(), u.enabled);
                        self.locate(now, aor, enabled)
                    }
                    Lookup::Hit(None) => self.respond(404, "Not Found", Vec::new()),
                }
            }
            Uri::Sip(u) => {
                let local = meta.to_me || self.cfg.is_local(u.host.raw);
                let Some(user) = u.user.filter(|u| !u.is_empty()) else {
                    // The proxy itself, or a host: route as usual.
                    return if local {
                        Step::Done(Action::Proxy)
                    } else {
                        self.relay(trusted || authenticated)
                    };
                };
                let aor = aor_of(user, u.host.raw);
                match self.loc.user(&aor, now, self.stale_ok) {
                    Lookup::Miss => return Step::Need(FetchKey::User(aor)),
                    Lookup::Hit(Some(callee)) => {
                        let enabled = callee.enabled;
                        return self.locate(now, aor, enabled);
                    }
                    Lookup::Hit(None) => {}
                }
                // `sip:+15551234567@domain`: a phone alias.
                if local {
                    if let Some(phone) = tel_number(user) {
                        match self.loc.user_by_phone(&phone, now, self.stale_ok) {
                            Lookup::Miss => return Step::Need(FetchKey::Phone(phone)),
                            Lookup::Hit(Some(callee)) => {
                                let (aor, enabled) = (callee.aor.clone(), callee.enabled);
                                return self.locate(now, aor, enabled);
                            }
                            Lookup::Hit(None) => {}
                        }
                    }
                    if self.cfg.next_hop {
                        return Step::Done(Action::Proxy);
                    }
                    return self.respond(404, "Not Found", Vec::new());
                }
                self.relay(trusted || authenticated)
            }
            Uri::Absolute(_) => Step::Done(Action::Proxy),
        }
    }

    /// A request for a foreign destination.
    fn relay(&mut self, allowed: bool) -> Step {
        if allowed || self.cfg.next_hop {
            Step::Done(Action::Proxy)
        } else {
            self.respond(403, "Relaying Denied", Vec::new())
        }
    }

    /// Forks to a user's live bindings.
    fn locate(&mut self, now: Instant, aor: String, enabled: bool) -> Step {
        if !enabled {
            return self.respond(480, "Temporarily Unavailable", Vec::new());
        }
        match self.loc.bindings(&aor, now, self.stale_ok) {
            Lookup::Miss => Step::Need(FetchKey::Bindings(aor)),
            Lookup::Hit(bs) if bs.is_empty() => {
                self.respond(480, "Temporarily Unavailable", Vec::new())
            }
            Lookup::Hit(bs) => Step::Done(Action::Fork(location::targets(&bs))),
        }
    }

    /// Checks the credentials of `user` (`None`: authenticated), or the
    /// step that answers the request.
    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &mut self,
        now: Instant,
        m: &Message<'_>,
        method: &[u8],
        user: &User,
        username: &[u8],
        source: IpAddr,
        proxy: bool,
    ) -> Option<Step> {
        let creds = match credentials_for(m, proxy, user.realm.as_bytes()) {
            Err(reason) => return Some(self.respond(400, reason, Vec::new())),
            Ok(None) => return Some(self.challenge(now, &user.realm, proxy, false, false)),
            Ok(Some(d)) => d,
        };
        if creds.username != Some(username) {
            return Some(self.respond(403, "Username Mismatch", Vec::new()));
        }
        match self.auth.check(now, method, &creds, user, source) {
            Verdict::Ok => None,
            Verdict::Challenge { stale, retry } => {
                Some(self.challenge(now, &user.realm, proxy, stale, retry))
            }
            Verdict::Forbidden => Some(self.respond(403, "Forbidden", Vec::new())),
            Verdict::Malformed(reason) => Some(self.respond(400, reason, Vec::new())),
        }
    }

    /// RFC 3261 §10.3.
    fn register(&mut self, now: Instant, m: &Message<'_>, meta: &Meta, authed: &mut bool) -> Step {
        let Ok(Uri::Sip(ruri)) = m.request_uri() else {
            return Step::Done(Action::Proxy);
        };
        let mut ours = meta.to_me || self.cfg.is_local(ruri.host.raw);
        let r = if ours {
            match register::check(m) {
                Ok(r) => r,
                Err(e) => return self.respond(e.code, e.reason, e.headers),
            }
        } else {
            // Another domain's registrar, unless the store has the user and
            // the Request-URI names its domain.
            let Ok(r) = register::check(m) else {
                return self.relay(self.cfg.is_trusted(meta.source.addr.ip()));
            };
            r
        };
        let user = match self.loc.user(r.aor(), now, self.stale_ok) {
            Lookup::Miss => return Step::Need(FetchKey::User(r.aor)),
            Lookup::Hit(u) => u,
        };
        if !ours {
            ours = user.is_some()
                && trim_brackets(ruri.host.raw).eq_ignore_ascii_case(trim_brackets(r.host));
            if !ours {
                return self.relay(self.cfg.is_trusted(meta.source.addr.ip()));
            }
        }
        let Some(user) = user else {
            // Challenge first (no hint whether the user exists), 404 to
            // credentials for nobody.
            let realm = String::from_utf8_lossy(r.host).to_ascii_lowercase();
            return match credentials_for(m, false, realm.as_bytes()) {
                Ok(None) => self.challenge(now, &realm, false, false, false),
                Err(reason) => self.respond(400, reason, Vec::new()),
                Ok(Some(_)) => self.respond(404, "Not Found", Vec::new()),
            };
        };
        if !*authed {
            if let Some(step) = self.authenticate(
                now,
                m,
                b"REGISTER",
                &user,
                r.user,
                meta.source.addr.ip(),
                false,
            ) {
                return step;
            }
            *authed = true;
        }
        let existing = match self.loc.bindings(r.aor(), now, self.stale_ok) {
            Lookup::Miss => return Step::Need(FetchKey::Bindings(r.aor)),
            Lookup::Hit(bs) => bs,
        };
        let origin = register::Origin {
            node: &self.cfg.node_id,
            core: self.core,
            source: location::source_of(&meta.source),
            wall_ms: self.loc.wall_ms(now),
        };
        match register::plan(&r, &existing, &self.cfg.rules, &origin) {
            Err(e) => self.respond(e.code, e.reason, e.headers),
            Ok(Plan::Query) => {
                let h =
                    Self::ok_headers(&mut self.date, &existing, &r.path_lines(), origin.wall_ms);
                self.stats.registered += 1;
                Step::Done(Action::Respond {
                    code: 200,
                    reason: "OK",
                    headers: h,
                })
            }
            Ok(Plan::Update(update)) => Step::Write {
                path_lines: r.path_lines(),
                aor: r.aor,
                update,
            },
        }
    }

    // ------------------------------------------------------------ store

    fn next_token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// Parks `call` on a read of `key` (one read per key in flight).
    fn fetch(&mut self, key: FetchKey, call: u64) {
        if let Some(token) = self.by_key.get(&key) {
            if let Some(Fetch::Read { waiters, .. }) = self.fetches.get_mut(token) {
                waiters.push(call);
                return;
            }
        }
        let token = self.next_token();
        let epochs = self.loc.epochs();
        let (epoch, op) = match &key {
            FetchKey::User(aor) => (epochs.users(), StoreOp::User { aor: aor.clone() }),
            FetchKey::Phone(p) => (epochs.users(), StoreOp::UserByPhone { phone: p.clone() }),
            FetchKey::Bindings(aor) => {
                (epochs.bindings(aor), StoreOp::Bindings { aor: aor.clone() })
            }
        };
        self.requests.push_back(Request::Store { token, op });
        self.stats.store_requests += 1;
        self.by_key.insert(key.clone(), token);
        self.fetches.insert(
            token,
            Fetch::Read {
                key,
                epoch,
                waiters: vec![call],
            },
        );
    }

    fn write(&mut self, call: u64, aor: String, update: BindingUpdate, path_lines: Vec<u8>) {
        let token = self.next_token();
        self.requests.push_back(Request::Store {
            token,
            op: StoreOp::UpdateBindings {
                aor: aor.clone(),
                update,
            },
        });
        self.stats.store_requests += 1;
        self.fetches.insert(
            token,
            Fetch::Update {
                call,
                aor,
                path_lines,
            },
        );
    }

    /// Runs a step's consequence for a waiting (or about to wait) `call`.
    fn follow(&mut self, call: u64, step: Step) -> Option<Action> {
        match step {
            Step::Done(a) => Some(a),
            // The store failed and the caches do not know: give up.
            Step::Need(_) if self.stale_ok => Some(self.unavailable()),
            Step::Need(key) => {
                self.fetch(key, call);
                None
            }
            Step::Write {
                aor,
                update,
                path_lines,
            } => {
                self.write(call, aor, update, path_lines);
                None
            }
        }
    }

    /// Decides a waiting request again (its data came).
    fn retry(&mut self, now: Instant, call: u64) {
        let Some(job) = self.jobs.get_mut(&call) else {
            return;
        };
        job.rounds += 1;
        if job.rounds > MAX_ROUNDS {
            self.jobs.remove(&call);
            let a = self.unavailable();
            self.decisions.push_back((call, a));
            return;
        }
        let bytes = std::mem::take(&mut job.bytes);
        let meta = job.meta;
        let mut authed = job.authenticated;
        self.stale_ok = job.stale_ok;
        let step = match Message::parse(&bytes) {
            Ok(m) => self.step(now, &m, &meta, &mut authed),
            Err(_) => Step::Done(Action::Respond {
                code: 500,
                reason: "Server Internal Error",
                headers: Vec::new(),
            }),
        };
        if let Some(job) = self.jobs.get_mut(&call) {
            job.bytes = bytes;
            job.authenticated = authed;
        }
        let action = self.follow(call, step);
        self.stale_ok = false;
        if let Some(a) = action {
            self.jobs.remove(&call);
            self.decisions.push_back((call, a));
        }
    }

    /// The write of a REGISTER committed: 200 OK with every binding.
    fn registered(
        &mut self,
        now: Instant,
        call: u64,
        bindings: &[crate::store::Binding],
        path_lines: &[u8],
    ) {
        if self.jobs.remove(&call).is_none() {
            return;
        }
        let live: Vec<&crate::store::Binding> = bindings.iter().collect();
        let wall = self.loc.wall_ms(now);
        let headers = Self::ok_headers(&mut self.date, &live, path_lines, wall);
        self.stats.registered += 1;
        self.decisions.push_back((
            call,
            Action::Respond {
                code: 200,
                reason: "OK",
                headers,
            },
        ));
    }

    fn failed(&mut self, call: u64, e: &StoreError) {
        if self.jobs.remove(&call).is_some() {
            tracing::debug!("store: {e}");
            let a = self.unavailable();
            self.decisions.push_back((call, a));
        }
    }
}

/// An E.164 number (`+` and digits, visual separators dropped), if `s` is
/// one.
fn tel_number(s: &[u8]) -> Option<String> {
    let digits: String = s
        .iter()
        .filter(|&&b| !matches!(b, b'-' | b'.' | b'(' | b')'))
        .map(|&b| b as char)
        .collect();
    let ok = digits.len() >= 2
        && digits.len() <= 16
        && digits.starts_with('+')
        && digits[1..].bytes().all(|b| b.is_ascii_digit());
    ok.then_some(digits)
}

impl Services for Registrar {
    fn on_request(&mut self, now: Instant, req: &NewRequest<'_>, call: u64) -> Action {
        let register = req.method == b"REGISTER";
        if register && !self.admit(now) {
            return self.unavailable();
        }
        let meta = Meta {
            source: req.source,
            to_me: req.to_me,
            routed: req.routed,
            in_dialog: req.in_dialog,
        };
        let mut authed = false;
        let step = match self.step(now, req.message, &meta, &mut authed) {
            Step::Done(a) => return a,
            other => other,
        };
        if self.jobs.len() >= self.cfg.max_pending {
            return self.unavailable();
        }
        // A write is answered from what the step kept (no decision again):
        // only a request that waits for a read keeps its bytes.
        let bytes = match step {
            Step::Need(_) => req.message.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        self.jobs.insert(
            call,
            Job {
                bytes,
                meta,
                rounds: 0,
                stale_ok: false,
                authenticated: authed,
            },
        );
        match self.follow(call, step) {
            Some(a) => {
                self.jobs.remove(&call);
                a
            }
            None => Action::Wait,
        }
    }

    fn handle_reply(&mut self, now: Instant, reply: Reply) {
        let Reply::Store { token, answer } = reply else {
            return;
        };
        let Some(fetch) = self.fetches.remove(&token) else {
            return;
        };
        if answer.is_err() {
            self.stats.store_errors += 1;
        }
        match fetch {
            Fetch::Read {
                key,
                epoch,
                waiters,
            } => {
                self.by_key.remove(&key);
                match (answer, &key) {
                    (Ok(StoreAnswer::User(u)), FetchKey::User(aor)) => {
                        self.loc.insert_user(aor, u, epoch, now)
                    }
                    (Ok(StoreAnswer::User(u)), FetchKey::Phone(p)) => {
                        self.loc.insert_phone(p, u, epoch, now)
                    }
                    (Ok(StoreAnswer::Bindings(bs)), FetchKey::Bindings(aor)) => {
                        self.loc.insert_bindings(aor, bs, epoch, now)
                    }
                    (Err(e), _) => {
                        // Decide from what the caches last knew, if anything.
                        tracing::debug!("store read failed: {e}");
                        for call in waiters {
                            if let Some(job) = self.jobs.get_mut(&call) {
                                job.stale_ok = true;
                            }
                            self.retry(now, call);
                        }
                        return;
                    }
                    (Ok(other), _) => {
                        let e = StoreError::Backend(format!("unexpected answer {other:?}"));
                        for call in waiters {
                            self.failed(call, &e);
                        }
                        return;
                    }
                }
                for call in waiters {
                    self.retry(now, call);
                }
            }
            Fetch::Update {
                call,
                aor,
                path_lines,
            } => match answer {
                Ok(StoreAnswer::Updated(set)) => {
                    self.registered(now, call, &set.bindings, &path_lines);
                    self.loc.insert_bindings(&aor, set.bindings, set.epoch, now);
                }
                Ok(_) => {
                    self.loc.forget_bindings(&aor);
                    self.failed(call, &StoreError::Backend("unexpected answer".into()));
                }
                Err(e) => {
                    self.loc.forget_bindings(&aor);
                    self.failed(call, &e);
                }
            },
        }
    }

    fn poll_decision(&mut self) -> Option<(u64, Action)> {
        self.decisions.pop_front()
    }

    fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.loc.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.loc.handle_timeout(now);
    }

    fn abandon(&mut self, call: u64) {
        self.jobs.remove(&call);
    }
}

#[cfg(test)]
mod tests;
