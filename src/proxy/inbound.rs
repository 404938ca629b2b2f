//! What the proxy reads from a message, through `sipring-parser`: the
//! parser's index and routing view, with the Via values, Route values and
//! Request-URI the engine uses parsed once, and the decision how a bad
//! message is treated: answered 400/505/513 with the parser's reason when a
//! response can be formed, dropped otherwise.

use sipring_parser::{HeaderKind, Lint, Message, NameAddr, Rport, Span, StartLine};
use smallvec::SmallVec;

/// The start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start<'a> {
    Request { method: &'a [u8], uri: &'a [u8] },
    Response { code: u16 },
}

/// One Via value (via-parm), as routing reads it.
#[derive(Clone, Debug)]
pub(crate) struct Via<'a> {
    /// The via-parm text (a slice of the message).
    pub(crate) raw: &'a [u8],
    /// The transport token as written.
    pub(crate) transport: &'a [u8],
    pub(crate) host: &'a [u8],
    pub(crate) port: Option<u16>,
    pub(crate) branch: Option<&'a [u8]>,
    /// `Some(None)`: `rport` without a value (RFC 3581).
    pub(crate) rport: Option<Option<u16>>,
    pub(crate) received: Option<&'a [u8]>,
}

impl<'a> Via<'a> {
    fn from_parser(v: &sipring_parser::Via<'a>) -> Via<'a> {
        Via {
            raw: v.raw,
            transport: v.transport_raw,
            host: v.host.raw,
            port: v.port,
            branch: v.branch,
            rport: v.rport.map(|r| match r {
                Rport::Requested => None,
                Rport::Port(p) => Some(p),
            }),
            received: v.received,
        }
    }
}

/// One Route value.
#[derive(Clone, Debug)]
pub(crate) struct RouteValue<'a> {
    /// The name-addr text.
    pub(crate) raw: &'a [u8],
}

/// A URI as routing reads it: scheme, user, host and port, and the SIP
/// parameters.
#[derive(Clone, Debug)]
pub(crate) struct Uri<'a> {
    pub(crate) scheme: &'a [u8],
    /// The host (empty for schemes other than sip/sips).
    pub(crate) host: &'a [u8],
    pub(crate) port: Option<u16>,
    sip: Option<sipring_parser::SipUri<'a>>,
}

impl<'a> Uri<'a> {
    /// Parses a URI (no `< >` around it); `None` when it does not parse.
    pub(crate) fn parse(raw: &'a [u8]) -> Option<Uri<'a>> {
        Some(Uri::from_parser(&sipring_parser::Uri::parse(raw).ok()?))
    }

    fn from_parser(u: &sipring_parser::Uri<'a>) -> Uri<'a> {
        let empty = &u.raw()[..0];
        match u.as_sip() {
            Some(s) => Uri {
                scheme: u.scheme(),
                host: s.host.raw,
                port: s.port,
                sip: Some(*s),
            },
            None => Uri {
                scheme: u.scheme(),
                host: empty,
                port: None,
                sip: None,
            },
        }
    }

    /// Whether the scheme is sip or sips.
    pub(crate) fn is_sip(&self) -> bool {
        self.sip.is_some()
    }

    /// A URI parameter (`Some(b"")` for a flag such as `lr`).
    pub(crate) fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        let v = self.sip?.param(name)?;
        Some(v.unwrap_or(&self.scheme[..0]))
    }

    /// URI headers (`?h=v`) follow the host.
    pub(crate) fn has_headers(&self) -> bool {
        self.sip.is_some_and(|s| s.has_headers())
    }
}

/// The URI of a name-addr (`"x" <uri>;p`) or addr-spec (`uri;p`) value.
pub(crate) fn name_addr_uri(v: &[u8]) -> Option<&[u8]> {
    Some(NameAddr::parse(v).ok()?.uri().ok()?.raw())
}

/// A parsed message: the parser's index and what routing read from it.
#[derive(Clone, Debug)]
pub(crate) struct Msg<'a> {
    /// The parser's view (index, typed views, writer).
    pub(crate) pm: Message<'a>,
    pub(crate) bytes: &'a [u8],
    pub(crate) start: Start<'a>,
    /// The SIP version is 2.0.
    pub(crate) version_ok: bool,
    /// The top Via (the others are read on demand).
    top: Via<'a>,
    route_values: SmallVec<[&'a [u8]; 4]>,
    /// The first Route value and its URI, read with the routing fields.
    first_route: Option<(&'a [u8], &'a [u8])>,
    ruri: Option<Uri<'a>>,
    pub(crate) call_id: &'a [u8],
    pub(crate) cseq: u32,
    pub(crate) cseq_method: &'a [u8],
    pub(crate) from_tag: Option<&'a [u8]>,
    pub(crate) to_tag: Option<&'a [u8]>,
    pub(crate) max_forwards: Option<u32>,
}

/// A request whose headers are too broken to process but good enough to
/// answer (it has Via lines): the parser's salvaged index.
#[derive(Clone, Debug)]
pub(crate) struct Partial<'a> {
    pub(crate) pm: Message<'a>,
    pub(crate) top_via: Option<Via<'a>>,
}

impl Partial<'_> {
    /// Where the answer goes.
    pub(crate) fn response_peer(&self, rx: crate::engine::Received<'_>) -> crate::engine::Peer {
        match &self.top_via {
            Some(v) => super::route::via_response_peer(v, rx),
            None => rx.peer,
        }
    }
}

/// A parsed message.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    Request(Msg<'a>),
    Response(Msg<'a>),
}

/// Why a message is not processed.
#[derive(Debug)]
pub(crate) enum Reject<'a> {
    /// Nothing can be answered: drop and count.
    Drop,
    /// A request answered with `code` and a reason.
    Answer {
        code: u16,
        reason: &'static str,
        /// Boxed: the error path may allocate, the common one stays small.
        msg: Box<Partial<'a>>,
    },
}

impl<'a> Msg<'a> {
    /// Every Via value that parses, top first (parsed on demand).
    pub(crate) fn vias(&self) -> impl Iterator<Item = Via<'a>> + '_ {
        self.pm
            .vias()
            .filter_map(|v| v.ok().map(|v| Via::from_parser(&v)))
    }

    /// Whether any Via header value contains `needle` right after the
    /// branch magic cookie (a cheap filter before parsing them: a search
    /// for the cookie's first byte, where a substring search would build
    /// a searcher per call).
    pub(crate) fn vias_mention_branch(&self, needle: &[u8]) -> bool {
        let cookie = sipring_parser::MAGIC_COOKIE;
        self.pm.values(HeaderKind::Via).any(|v| {
            let mut from = 0;
            while let Some(i) = memchr::memchr(cookie[0], &v[from..]) {
                let at = from + i;
                let rest = &v[at..];
                if rest.starts_with(cookie) && rest[cookie.len()..].starts_with(needle) {
                    return true;
                }
                from = at + 1;
            }
            false
        })
    }

    /// The top Via value.
    pub(crate) fn top_via(&self) -> &Via<'a> {
        &self.top
    }

    /// The Via value after the top one.
    pub(crate) fn second_via(&self) -> Option<Via<'a>> {
        self.vias().nth(1)
    }

    /// Every Route value, in order.
    pub(crate) fn routes(&self) -> impl Iterator<Item = RouteValue<'a>> + '_ {
        self.route_values.iter().map(|&raw| RouteValue { raw })
    }

    /// The URI of Route value `v` (one of [`Msg::routes`], or any other
    /// name-addr): the first Route's was read with the routing fields,
    /// others are parsed.
    pub(crate) fn route_uri<'v>(&self, v: &'v [u8]) -> Option<&'v [u8]>
    where
        'a: 'v,
    {
        match self.first_route {
            Some((raw, uri)) if core::ptr::eq(raw, v) => Some(uri),
            _ => name_addr_uri(v),
        }
    }

    /// The option tags of every Proxy-Require header.
    pub(crate) fn proxy_require(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.pm.proxy_require()
    }

    /// The Request-URI text (empty for a response).
    pub(crate) fn request_uri_raw(&self) -> &'a [u8] {
        match self.start {
            Start::Request { uri, .. } => uri,
            Start::Response { .. } => &self.bytes[..0],
        }
    }

    /// The parsed Request-URI.
    pub(crate) fn request_uri(&self) -> Option<Uri<'a>> {
        self.ruri.clone()
    }

    /// Whether the request's method is `method`.
    pub(crate) fn is_method(&self, method: &[u8]) -> bool {
        matches!(self.start, Start::Request { method: m, .. } if m == method)
    }

    /// Whether the request may create a dialog (and gets our Record-Route).
    pub(crate) fn creates_dialog(&self) -> bool {
        self.to_tag.is_none()
            && matches!(self.start, Start::Request { method, .. }
                if matches!(method, b"INVITE" | b"SUBSCRIBE" | b"REFER" | b"NOTIFY"))
    }

    /// The header lines of `kind`, each with its CRLF.
    pub(crate) fn lines(&self, kind: HeaderKind) -> impl Iterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.pm
            .headers_of(kind)
            .map(move |h| &bytes[h.line.range()])
    }

    /// The headers, up to the empty line.
    pub(crate) fn head(&self) -> &'a [u8] {
        let end = self.pm.body_span().start as usize;
        &self.bytes[..end.saturating_sub(2)]
    }
}

/// Where `part` (a slice of `whole`) starts in `whole`.
pub(crate) fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize)
}

/// The header line holding byte `at`.
pub(crate) fn line_at(pm: &Message<'_>, at: usize) -> Option<Span> {
    pm.headers()
        .find(|h| (h.line.start as usize..h.line.end as usize).contains(&at))
        .map(|h| h.line)
}

/// Grammar a proxy does not forward even where RFC 4475 lets a parser be
/// liberal: extra spaces in the Request-Line (`lwsstart`, `trws`), which
/// the RFC says must never be forwarded; answering 400 is the reading it
/// calls always reasonable.
fn refused_lint(l: Lint) -> bool {
    matches!(
        l,
        Lint::RequestLineExtraSpace | Lint::RequestLineTrailingSpace
    )
}

fn answer<'a>(bytes: &'a [u8], code: u16, reason: &'static str) -> Reject<'a> {
    let Some(pm) = Message::salvage(bytes) else {
        return Reject::Drop;
    };
    if !pm.is_request() || !pm.has(HeaderKind::Via) {
        return Reject::Drop;
    }
    let top_via = pm.top_via().ok().map(|v| Via::from_parser(&v));
    Reject::Answer {
        code,
        reason,
        msg: Box::new(Partial { pm, top_via }),
    }
}

/// Parses a message with `sipring-parser` and reads what routing needs.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Reject<'_>> {
    let pm = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) if e.is_answerable() => return Err(answer(bytes, e.status(), e.reason())),
        Err(_) => return Err(Reject::Drop),
    };
    let request = pm.is_request();
    let reject = |status: u16, reason: &'static str| {
        if request {
            answer(bytes, status, reason)
        } else {
            Reject::Drop
        }
    };
    if let Some(l) = pm.lints().iter().find(|&l| refused_lint(l)) {
        return Err(reject(400, l.reason()));
    }
    let routing = pm.routing().map_err(|e| reject(e.status(), e.reason()))?;
    let (start, version_ok) = match pm.start_line() {
        StartLine::Request(r) => (
            Start::Request {
                method: r.method.as_bytes(),
                uri: r.uri,
            },
            r.version == b"SIP/2.0",
        ),
        StartLine::Response(s) => (Start::Response { code: s.code }, true),
    };
    // The top Via is parsed (and must be sound); the ones below are the
    // previous hops' business and are read only when needed.
    let top = Via::from_parser(&routing.via);
    let mut route_values: SmallVec<[&[u8]; 4]> = SmallVec::new();
    if routing.route.is_some() {
        route_values.extend(pm.values(HeaderKind::Route));
    }
    let ruri = match start {
        Start::Request { .. } => pm.request_uri().ok().map(|u| Uri::from_parser(&u)),
        Start::Response { .. } => None,
    };
    let msg = Msg {
        bytes,
        start,
        version_ok,
        top,
        route_values,
        first_route: routing.route.map(|r| (r.raw, r.uri_raw)),
        ruri,
        call_id: routing.call_id,
        cseq: routing.cseq.number,
        cseq_method: routing.cseq.method.as_bytes(),
        from_tag: routing.from_tag,
        to_tag: routing.to_tag,
        max_forwards: routing.max_forwards,
        pm,
    };
    Ok(if request {
        Parsed::Request(msg)
    } else {
        Parsed::Response(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bKx\r\n\
v: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKy;received=192.0.2.1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice, A\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com>\r\n\
Proxy-Require: foo, bar\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\nTRAILING";

    #[test]
    fn reads_routing_headers() {
        let Ok(Parsed::Request(m)) = parse(INVITE) else {
            panic!("parses");
        };
        assert!(m.version_ok);
        assert!(m.is_method(b"INVITE"));
        assert_eq!(m.call_id, b"a84b4c76e66710@pc33.atlanta.example.com");
        assert_eq!((m.cseq, m.cseq_method), (314_159, &b"INVITE"[..]));
        assert_eq!(m.from_tag, Some(&b"1928301774"[..]));
        assert_eq!(m.to_tag, None);
        assert_eq!(m.max_forwards, Some(70));
        let vias: Vec<_> = m.vias().collect();
        assert_eq!(m.top_via().branch, vias[0].branch);
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].host, b"pc33.atlanta.example.com");
        assert_eq!(vias[0].rport, Some(None));
        assert_eq!((vias[1].transport, vias[1].port), (&b"TCP"[..], Some(5070)));
        assert_eq!(vias[2].host, b"[2001:db8::1]");
        assert_eq!(vias[2].received, Some(&b"192.0.2.1"[..]));
        let routes: Vec<_> = m.routes().map(|r| r.raw).collect();
        assert_eq!(
            routes,
            vec![
                &b"<sip:p1.example.com;lr>"[..],
                b"<sip:p2.example.com;lr>",
                b"<sip:p3.example.com>"
            ]
        );
        // The first Route's URI comes from the routing fields, the others
        // are parsed; both give what a fresh parse gives.
        assert!(core::ptr::eq(m.first_route.unwrap().0, routes[0]));
        for r in &routes {
            assert_eq!(m.route_uri(r), name_addr_uri(r));
        }
        assert_eq!(m.route_uri(routes[0]), Some(&b"sip:p1.example.com;lr"[..]));
        let tags: Vec<_> = m.proxy_require().collect();
        assert_eq!(tags, vec![&b"foo"[..], b"bar"]);
        let uri = m.request_uri().unwrap();
        assert!(uri.is_sip());
        assert_eq!(uri.host, b"biloxi.example.com");
        let via = m.top_via().raw;
        assert!(INVITE[offset_in(INVITE, via)..].starts_with(b"SIP/2.0/UDP pc33"));
    }

    #[test]
    fn uris() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com:5070;lr;transport=tcp?h=1")
            .unwrap();
        assert_eq!((u.host, u.port), (&b"example.com"[..], Some(5070)));
        assert_eq!(u.param(b"lr"), Some(&b""[..]));
        assert_eq!(u.param(b"transport"), Some(&b"tcp"[..]));
        assert!(u.has_headers());
        assert!(!Uri::parse(b"isbn:2983792873").unwrap().is_sip());
        assert!(Uri::parse(b"<sip:a@b>").is_none());
        assert_eq!(
            name_addr_uri(b" \"x\" <sip:a@b;lr>;p=1"),
            Some(&b"sip:a@b;lr"[..])
        );
        assert_eq!(name_addr_uri(b"sip:a@b;tag=1"), Some(&b"sip:a@b"[..]));
    }

    #[test]
    fn rejects() {
        let bad_via = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;;,;,,\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert!(matches!(
            parse(bad_via),
            Err(Reject::Answer { code: 400, .. })
        ));
        let no_via = b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n";
        assert!(matches!(parse(no_via), Err(Reject::Drop)));
        let big_code = b"SIP/2.0 4294967301 BigCode\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert!(matches!(parse(big_code), Err(Reject::Drop)));
        assert!(matches!(parse(b"garbage"), Err(Reject::Drop)));
    }
}
