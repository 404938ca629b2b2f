//! Routing decisions: who "this proxy" is, Route processing (§16.4), the
//! strict-router rewrite (§16.6 step 6), the next hop (§16.6 step 7), loop
//! detection (§16.3 step 4), and where responses go (§18.2.2, RFC 3581).

use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::inbound::{Msg, Uri, Via};
use crate::engine::{CoreContext, CoreId, Peer, Received, Transport};
use crate::transaction::{BRANCH_LEN, MAGIC_COOKIE};

/// The URI parameter of our Record-Route that names node and core.
pub(crate) const RR_PARAM: &[u8] = b"sr";

/// The addresses and names under which this core (and its node) is reached.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Host written into Via sent-by and Record-Route.
    pub(crate) host: String,
    /// Local IP addresses (public and private sockets).
    ips: SmallVec<[IpAddr; 2]>,
    /// The public SIP port (UDP or TCP).
    pub(crate) public_port: u16,
    /// The first core's private port (ports `private_base..private_base+cores`).
    private_base: u16,
    cores: CoreId,
    /// `SIP/2.0/UDP host:port;branch=` and the TCP one, written once.
    via_udp: Vec<u8>,
    via_tcp: Vec<u8>,
    /// Our Record-Route value for UDP and for TCP.
    rr_udp: Vec<u8>,
    rr_tcp: Vec<u8>,
    tcp: bool,
}

impl Identity {
    pub(crate) fn new(ctx: &CoreContext, node: u64) -> Self {
        let public = ctx.public_udp.or(ctx.public_tcp);
        let private = ctx.private_udp.or(ctx.private_tcp);
        let mut ips: SmallVec<[IpAddr; 2]> = SmallVec::new();
        for a in [public, private].into_iter().flatten() {
            if !a.ip().is_unspecified() && !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
        let public_port = public.map_or(5060, |a| a.port());
        let private_port = private.map_or(public_port, |a| a.port());
        let host = &ctx.advertised_host;
        let via = |t: &str| format!("SIP/2.0/{t} {host}:{private_port};branch=").into_bytes();
        let sr = std::str::from_utf8(RR_PARAM).unwrap_or("sr");
        let rr = |t: &str| {
            format!(
                "<sip:{host}:{private_port}{t};lr;{sr}={node:x}.{}>",
                ctx.core
            )
            .into_bytes()
        };
        Identity {
            via_udp: via("UDP"),
            via_tcp: via("TCP"),
            rr_udp: rr(""),
            rr_tcp: rr(";transport=tcp"),
            tcp: ctx.private_tcp.is_some(),
            host: ctx.advertised_host.clone(),
            ips,
            public_port,
            private_base: private_port.saturating_sub(ctx.core),
            cores: ctx.cores.max(1),
        }
    }

    /// Whether this core serves TCP.
    pub(crate) fn serves_tcp(&self) -> bool {
        self.tcp
    }

    /// Our Via value up to the branch value.
    pub(crate) fn via_value(&self, t: Transport) -> &[u8] {
        match t {
            Transport::Udp => &self.via_udp,
            Transport::Tcp => &self.via_tcp,
        }
    }

    /// Our Record-Route value.
    pub(crate) fn record_route_value(&self, t: Transport) -> &[u8] {
        match t {
            Transport::Udp => &self.rr_udp,
            Transport::Tcp => &self.rr_tcp,
        }
    }

    /// Whether `host:port` names this node (any of its cores).
    pub(crate) fn is_me(&self, host: &[u8], port: Option<u16>) -> bool {
        let port = port.unwrap_or(5060);
        let port_ok = port == self.public_port
            || (port >= self.private_base && port - self.private_base < self.cores);
        if !port_ok {
            return false;
        }
        if host.eq_ignore_ascii_case(self.host.as_bytes()) {
            return true;
        }
        match parse_ip(host) {
            Some(ip) => self.ips.contains(&ip),
            None => false,
        }
    }

    /// Whether a Via was written by this node.
    pub(crate) fn is_my_via(&self, via: &Via<'_>) -> bool {
        self.is_me(via.host, via.port)
    }

    /// §16.3 step 4: a Via of ours whose loop-detection part equals this
    /// request's means the request came back unchanged (a loop); a different
    /// one is a spiral.
    pub(crate) fn has_looped(&self, m: &Msg<'_>, loop_hash: u64) -> bool {
        let mut hex = [0u8; 16];
        hex_into(&mut hex, loop_hash);
        // Only a request that passed here before carries our loop hash.
        if !m.vias_mention_branch(&hex) {
            return false;
        }
        m.vias().any(|v| {
            self.is_my_via(&v)
                && v.branch.is_some_and(|b| {
                    b.len() == BRANCH_LEN
                        && b.starts_with(MAGIC_COOKIE)
                        && b[MAGIC_COOKIE.len()..MAGIC_COOKIE.len() + 16] == hex
                })
        })
    }

    /// Whether a URI is a Record-Route this node wrote (strict routers put
    /// it into the Request-URI).
    fn is_my_record_route(&self, uri: &Uri<'_>) -> bool {
        uri.param(RR_PARAM).is_some() && self.is_me(uri.host, uri.port)
    }
}

fn hex_into(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// An IP literal (IPv6 in brackets or bare).
pub(crate) fn parse_ip(host: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(host).ok()?;
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// Whether an address may receive a forwarded response.
pub(crate) fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

/// The loop-detection hash of a request (§16.6 step 8): Request-URI as
/// received, top Route, From and To tags, Call-ID and CSeq number. A spiral
/// (same request, new Request-URI or Route) hashes differently.
pub(crate) fn loop_hash(m: &Msg<'_>) -> u64 {
    let k = sipring_ring::key_id;
    let mut h = k(m.request_uri_raw());
    h = h.rotate_left(7) ^ k(m.routes().next().map_or(&b""[..], |r| r.raw));
    h = h.rotate_left(7) ^ k(m.from_tag.unwrap_or_default());
    h = h.rotate_left(7) ^ k(m.to_tag.unwrap_or_default());
    h = h.rotate_left(7) ^ k(m.call_id);
    h.rotate_left(7) ^ u64::from(m.cseq)
}

/// Where the request goes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NextHop<'a> {
    /// An address (an IP literal, or `forward_to`), with the transport the
    /// URI asked for.
    Addr(SocketAddr, Option<Transport>),
    /// A name to resolve.
    Name {
        host: &'a str,
        port: u16,
        transport: Option<Transport>,
    },
}

/// How a request is forwarded: the next hop, and the Request-URI and Route
/// set it carries when §16.4/§16.6 change them.
#[derive(Clone, Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) next_hop: NextHop<'a>,
    /// The new Request-URI, when it changes.
    pub(crate) request_uri: Option<&'a [u8]>,
    /// The new Route values (written as `Route: <value>` lines), when they
    /// change; `Some(empty)` removes every Route.
    pub(crate) routes: Option<SmallVec<[&'a [u8]; 4]>>,
    /// The Request-URI appended as the last Route (strict-router rewrite):
    /// written as `<uri>`.
    pub(crate) append_route: Option<&'a [u8]>,
}

impl Plan<'_> {
    /// The transport to use: the URI's, else the one the request came on.
    pub(crate) fn transport(&self, incoming: Transport) -> Transport {
        let t = match &self.next_hop {
            NextHop::Addr(_, t) => *t,
            NextHop::Name { transport, .. } => *transport,
        };
        t.unwrap_or(incoming)
    }
}

/// A request that cannot be routed, and the answer it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoRoute {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

fn uri_transport(uri: &Uri<'_>) -> Option<Transport> {
    let t = uri.param(b"transport")?;
    if t.eq_ignore_ascii_case(b"tcp") {
        Some(Transport::Tcp)
    } else if t.eq_ignore_ascii_case(b"udp") {
        Some(Transport::Udp)
    } else {
        None
    }
}

fn uri_hop<'a>(uri: &Uri<'a>) -> Result<NextHop<'a>, NoRoute> {
    let transport = uri_transport(uri);
    let host = uri.param(b"maddr").unwrap_or(uri.host);
    let default_port = if uri.scheme.eq_ignore_ascii_case(b"sips") {
        5061
    } else {
        5060
    };
    let port = uri.port.unwrap_or(default_port);
    if let Some(ip) = parse_ip(host) {
        return Ok(NextHop::Addr(SocketAddr::new(ip, port), transport));
    }
    let host = std::str::from_utf8(host)
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or(NoRoute {
            code: 400,
            reason: "Bad Host",
        })?;
    Ok(NextHop::Name {
        host,
        port,
        transport,
    })
}

/// Route processing (§16.4), the strict-router rewrite (§16.6 step 6) and
/// the next hop (§16.6 step 7). With `forward_to`, every request goes there
/// except those that come from it, which follow their Route and
/// Request-URI (so the callee's BYE goes back to the caller). `target`, a
/// contact from the location service (§16.5), replaces the Request-URI.
pub(crate) fn plan<'a, 'm: 'a>(
    me: &Identity,
    m: &Msg<'m>,
    forward_to: Option<SocketAddr>,
    from: Peer,
    target: Option<&'a [u8]>,
) -> Result<Plan<'a>, NoRoute> {
    let bad_route = NoRoute {
        code: 400,
        reason: "Malformed Route",
    };
    let mut routes: SmallVec<[&'a [u8]; 4]> = SmallVec::new();
    for r in m.routes() {
        routes.push(r.raw);
    }
    let original_routes = routes.len();
    let mut ruri_raw = m.request_uri_raw();
    let mut ruri = m.request_uri().ok_or(NoRoute {
        code: 400,
        reason: "Malformed Request-URI",
    })?;
    let mut request_uri = None;
    // §16.4: a strict router before us put our Record-Route into the
    // Request-URI; the real one is the last Route.
    if me.is_my_record_route(&ruri) {
        if let Some(last) = routes.pop() {
            let inner = m.route_uri(last).ok_or(bad_route)?;
            ruri = Uri::parse(inner).ok_or(bad_route)?;
            ruri_raw = inner;
            request_uri = Some(inner);
        }
    }
    if let Some(t) = target {
        ruri = Uri::parse(t).ok_or(NoRoute {
            code: 500,
            reason: "Bad Contact",
        })?;
        ruri_raw = t;
        request_uri = Some(t);
    }
    // §16.4: our own Route entry at the top is removed.
    if let Some(first) = routes.first() {
        let uri = Uri::parse(m.route_uri(first).ok_or(bad_route)?).ok_or(bad_route)?;
        if me.is_me(uri.host, uri.port) {
            routes.remove(0);
        }
    }
    // §16.6 step 6: the next hop is a strict router.
    let mut append_route = None;
    if let Some(first) = routes.first() {
        let inner = m.route_uri(first).ok_or(bad_route)?;
        let uri = Uri::parse(inner).ok_or(bad_route)?;
        if uri.param(b"lr").is_none() {
            append_route = Some(ruri_raw);
            request_uri = Some(inner);
            routes.remove(0);
            let next_hop = uri_hop(&uri)?;
            return Ok(Plan {
                next_hop: forward_hop(forward_to, from).unwrap_or(next_hop),
                request_uri,
                routes: Some(routes),
                append_route,
            });
        }
    }
    let next_hop = match forward_hop(forward_to, from) {
        Some(hop) => hop,
        None => match routes.first() {
            Some(first) => {
                let inner = m.route_uri(first).ok_or(bad_route)?;
                uri_hop(&Uri::parse(inner).ok_or(bad_route)?)?
            }
            None => {
                if target.is_none() && me.is_me(ruri.host, ruri.port) {
                    // Addressed to this proxy, nothing to route by: no
                    // location service in this build.
                    return Err(NoRoute {
                        code: 404,
                        reason: "Not Found",
                    });
                }
                uri_hop(&ruri)?
            }
        },
    };
    Ok(Plan {
        next_hop,
        request_uri,
        routes: (routes.len() != original_routes).then_some(routes),
        append_route,
    })
}

/// Whether a Route that is not ours remains: the sender routes the
/// request elsewhere (its top Route, when ours, is ignored).
pub(crate) fn routed_elsewhere(me: &Identity, m: &Msg<'_>) -> bool {
    let mut routes = m.routes();
    let Some(first) = routes.next() else {
        return false;
    };
    let mine = m
        .route_uri(first.raw)
        .and_then(Uri::parse)
        .is_some_and(|u| me.is_me(u.host, u.port));
    !mine || routes.next().is_some()
}

/// The plan for one target of the location service (§16.5-16.6): the
/// contact becomes the Request-URI, the registration's Path goes on top of
/// the Routes left after ours, and the next hop is the flow's address,
/// else the first Route, else the contact.
pub(crate) fn plan_target<'a, 'm: 'a>(
    me: &Identity,
    m: &Msg<'m>,
    t: &'a super::Target,
) -> Result<Plan<'a>, NoRoute> {
    let bad = NoRoute {
        code: 500,
        reason: "Bad Contact",
    };
    let mut routes: SmallVec<[&'a [u8]; 4]> = t.route.iter().map(|r| &r[..]).collect();
    let mut original = 0;
    for (i, r) in m.routes().enumerate() {
        original += 1;
        if i == 0 {
            let mine = m
                .route_uri(r.raw)
                .and_then(Uri::parse)
                .is_some_and(|u| me.is_me(u.host, u.port));
            if mine {
                continue;
            }
        }
        routes.push(r.raw);
    }
    let next_hop = match (t.dest, routes.first()) {
        (Some(p), _) => NextHop::Addr(p.addr, Some(p.transport)),
        (None, Some(first)) => {
            let inner = m.route_uri(first).ok_or(bad)?;
            uri_hop(&Uri::parse(inner).ok_or(bad)?)?
        }
        (None, None) => uri_hop(&Uri::parse(&t.uri).ok_or(bad)?)?,
    };
    let changed = !t.route.is_empty() || routes.len() != original;
    Ok(Plan {
        next_hop,
        request_uri: Some(&t.uri),
        routes: changed.then_some(routes),
        append_route: None,
    })
}

fn forward_hop<'a>(forward_to: Option<SocketAddr>, from: Peer) -> Option<NextHop<'a>> {
    let hop = forward_to?;
    (from.addr != hop).then_some(NextHop::Addr(hop, None))
}

/// Where responses to a request go (§18.2.2 with RFC 3581): back over the
/// connection for TCP; for UDP to the source address when the top Via asks
/// for rport, else to the source IP and the sent-by port.
pub(crate) fn response_peer(m: &Msg<'_>, rx: Received<'_>) -> Peer {
    via_response_peer(m.top_via(), rx)
}

pub(crate) fn via_response_peer(via: &Via<'_>, rx: Received<'_>) -> Peer {
    match rx.peer.transport {
        Transport::Tcp => rx.peer,
        Transport::Udp => {
            let addr = if via.rport.is_some() {
                rx.peer.addr
            } else {
                SocketAddr::new(rx.peer.addr.ip(), via.port.unwrap_or(5060))
            };
            Peer {
                addr,
                transport: Transport::Udp,
                conn: None,
            }
        }
    }
}

/// Where a response goes when forwarded statelessly: the Via's received
/// and rport, else its sent-by (an IP literal only).
pub(crate) fn via_peer(via: &Via<'_>) -> Option<Peer> {
    let ip = match via.received.and_then(parse_ip) {
        Some(ip) => ip,
        None => parse_ip(via.host)?,
    };
    let port = via.rport.flatten().or(via.port).unwrap_or(5060);
    let transport = if via.transport.eq_ignore_ascii_case(b"TCP") {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    Some(Peer {
        addr: SocketAddr::new(ip, port),
        transport,
        conn: None,
    })
}
