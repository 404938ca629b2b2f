//! What the proxy reads from a message: the start line, the headers it
//! routes by (Via, Call-ID, CSeq, From/To tags, Max-Forwards, Route,
//! Proxy-Require) and the byte spans its writer edits, all borrowed from the
//! receive buffer. It also decides how a bad message is treated: answered
//! 400/505 with a reason when a response can be formed, dropped otherwise.

use std::ops::Range;

use smallvec::SmallVec;

/// Header names the proxy cares about (compact forms included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hdr {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Route,
    RecordRoute,
    ProxyRequire,
    ContentLength,
    Other,
}

impl Hdr {
    fn classify(name: &[u8]) -> Hdr {
        let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
        match name.len() {
            1 => match name[0].to_ascii_lowercase() {
                b'v' => Hdr::Via,
                b'f' => Hdr::From,
                b't' => Hdr::To,
                b'i' => Hdr::CallId,
                b'l' => Hdr::ContentLength,
                _ => Hdr::Other,
            },
            _ if eq(b"Via") => Hdr::Via,
            _ if eq(b"From") => Hdr::From,
            _ if eq(b"To") => Hdr::To,
            _ if eq(b"Call-ID") => Hdr::CallId,
            _ if eq(b"CSeq") => Hdr::CSeq,
            _ if eq(b"Max-Forwards") => Hdr::MaxForwards,
            _ if eq(b"Route") => Hdr::Route,
            _ if eq(b"Record-Route") => Hdr::RecordRoute,
            _ if eq(b"Proxy-Require") => Hdr::ProxyRequire,
            _ if eq(b"Content-Length") => Hdr::ContentLength,
            _ => Hdr::Other,
        }
    }
}

/// One header line: its kind, the whole line with its CRLF, and the value.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub(crate) kind: Hdr,
    pub(crate) line: Range<usize>,
    pub(crate) value: Range<usize>,
}

/// The start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start<'a> {
    Request { method: &'a [u8], uri: &'a [u8] },
    Response { code: u16 },
}

/// One Via value (via-parm).
#[derive(Clone, Debug)]
pub(crate) struct Via<'a> {
    /// The via-parm text.
    pub(crate) raw: &'a [u8],
    /// Its span in the message.
    pub(crate) span: Range<usize>,
    /// Index of its header line.
    pub(crate) header: usize,
    /// Whether it is the only value on its line.
    pub(crate) alone: bool,
    pub(crate) transport: &'a [u8],
    pub(crate) host: &'a [u8],
    pub(crate) port: Option<u16>,
    pub(crate) branch: Option<&'a [u8]>,
    /// `Some(None)`: `rport` without a value (RFC 3581).
    pub(crate) rport: Option<Option<u16>>,
    /// The span of the bare `rport` parameter name, to give it its value.
    pub(crate) rport_span: Option<Range<usize>>,
    pub(crate) received: Option<&'a [u8]>,
}

/// One Route value.
#[derive(Clone, Debug)]
pub(crate) struct RouteValue<'a> {
    /// The name-addr text.
    pub(crate) raw: &'a [u8],
}

/// A SIP or SIPS URI (other schemes parse with an empty host).
#[derive(Clone, Debug)]
pub(crate) struct Uri<'a> {
    pub(crate) scheme: &'a [u8],
    /// The user part (without password), empty when absent.
    pub(crate) user: &'a [u8],
    pub(crate) host: &'a [u8],
    pub(crate) port: Option<u16>,
    params: &'a [u8],
    /// URI headers (`?h=v`) follow the host.
    pub(crate) has_headers: bool,
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    let s = trim(s);
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(v).ok()
}

fn parse_port(s: &[u8]) -> Option<u16> {
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

/// Splits `s` at `sep` outside quotes and angle brackets.
fn split_top(s: &[u8], sep: u8) -> impl Iterator<Item = Range<usize>> + '_ {
    // The common case, one value, without a byte-by-byte walk.
    let single = memchr::memchr(sep, s).is_none();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    let mut angle = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if single {
            done = true;
            return Some(0..s.len());
        }
        while i < s.len() {
            let c = s[i];
            match c {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                _ if c == sep && !quoted && !angle => {
                    let r = start..i;
                    i += 1;
                    start = i;
                    return Some(r);
                }
                _ => {}
            }
            i += 1;
        }
        done = true;
        Some(start..s.len())
    })
}

/// The value of parameter `name` in a `;a=b;c` list (`Some(b"")` for a
/// flag).
fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for p in params.split(|&b| b == b';') {
        let p = trim(p);
        let (k, v) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&p[..i]), trim(&p[i + 1..])),
            None => (p, &p[p.len()..]),
        };
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
}

/// Splits `host[:port]` (IPv6 in brackets).
fn host_port(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let s = trim(s);
    if s.first() == Some(&b'[') {
        let end = s.iter().position(|&b| b == b']')?;
        let host = &s[..=end];
        let rest = &s[end + 1..];
        return match rest {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(parse_port(port)?))),
            _ => None,
        };
    }
    match s.iter().position(|&b| b == b':') {
        Some(i) => Some((&s[..i], Some(parse_port(&s[i + 1..])?))),
        None => Some((s, None)),
    }
}

fn valid_host(h: &[u8]) -> bool {
    !h.is_empty()
        && h.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':' | b'_')
        })
}

impl<'a> Uri<'a> {
    /// Parses a URI; for schemes other than sip/sips only the scheme.
    pub(crate) fn parse(raw: &'a [u8]) -> Option<Uri<'a>> {
        let raw = trim(raw);
        if raw
            .iter()
            .any(|b| b.is_ascii_whitespace() || *b == b'<' || *b == b'>')
        {
            return None;
        }
        let colon = raw.iter().position(|&b| b == b':')?;
        let scheme = &raw[..colon];
        if scheme.is_empty()
            || !scheme
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let rest = &raw[colon + 1..];
        if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
            return Some(Uri {
                scheme,
                user: &rest[..0],
                host: &rest[..0],
                port: None,
                params: &rest[..0],
                has_headers: false,
            });
        }
        // '@' cannot appear unescaped in the user part, host or headers, so
        // the first one ends the userinfo (which may hold '?', ';', ',').
        let (user, rest) = match rest.iter().position(|&b| b == b'@') {
            Some(i) => {
                let userinfo = &rest[..i];
                let end = userinfo
                    .iter()
                    .position(|&b| b == b':')
                    .unwrap_or(userinfo.len());
                (&userinfo[..end], &rest[i + 1..])
            }
            None => (&rest[..0], rest),
        };
        // Headers (`?`) are not part of routing.
        let q = rest.iter().position(|&b| b == b'?');
        let hostpart = &rest[..q.unwrap_or(rest.len())];
        let (hp, params) = match hostpart.iter().position(|&b| b == b';') {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, &hostpart[hostpart.len()..]),
        };
        let (host, port) = host_port(hp)?;
        if !valid_host(host) {
            return None;
        }
        Some(Uri {
            scheme,
            user,
            host,
            port,
            params,
            has_headers: q.is_some(),
        })
    }

    /// Whether the scheme is sip or sips.
    pub(crate) fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"sip") || self.scheme.eq_ignore_ascii_case(b"sips")
    }

    /// A URI parameter (`Some(b"")` for a flag such as `lr`).
    pub(crate) fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_param(self.params, name)
    }
}

/// The URI of a name-addr (`"x" <uri>;p`) or addr-spec (`uri;p`) value.
pub(crate) fn name_addr_uri(v: &[u8]) -> Option<&[u8]> {
    let v = trim(v);
    match v.iter().position(|&b| b == b'<') {
        Some(open) => {
            let close = open + v[open..].iter().position(|&b| b == b'>')?;
            Some(trim(&v[open + 1..close]))
        }
        None => {
            let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
            Some(trim(&v[..end]))
        }
    }
}

/// Reads a From/To value: `None` when it is malformed (an unterminated
/// quoted display name, a display name that is not tokens, no URI), else
/// its tag parameter if any. The URI itself is not parsed: a proxy does not
/// route by From or To.
fn addr_tag(v: &[u8]) -> Option<Option<&[u8]>> {
    let v = trim(v);
    let (uri, params) = match v.first() {
        Some(b'"') => {
            // Quoted display name, then <uri>.
            let mut i = 1;
            loop {
                match v.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            let rest = trim(&v[i + 1..]);
            let inner = rest.strip_prefix(b"<")?;
            let close = memchr::memchr(b'>', inner)?;
            (&inner[..close], &inner[close + 1..])
        }
        _ => match memchr::memchr(b'<', v) {
            Some(open) => {
                let name = &v[..open];
                let token = |b: &u8| b.is_ascii_alphanumeric() || b" \t-.!%*_+`'~".contains(b);
                if !name.iter().all(token) {
                    return None;
                }
                let close = open + memchr::memchr(b'>', &v[open..])?;
                (&v[open + 1..close], &v[close + 1..])
            }
            None => {
                // addr-spec: everything after ';' is header parameters.
                let end = memchr::memchr(b';', v).unwrap_or(v.len());
                let uri = trim(&v[..end]);
                if uri.iter().any(u8::is_ascii_whitespace) {
                    return None;
                }
                (uri, &v[end..])
            }
        },
    };
    let uri = trim(uri);
    if uri.is_empty() || memchr::memchr(b':', uri).is_none() {
        return None;
    }
    Some(find_param(params, b"tag"))
}

fn parse_via(raw: &[u8], span: Range<usize>, header: usize, alone: bool) -> Option<Via<'_>> {
    // SIP / 2.0 / transport SP sent-by *(; param)
    let semi = raw.iter().position(|&b| b == b';').unwrap_or(raw.len());
    let (head, params) = raw.split_at(semi);
    let head = trim(head);
    let mut parts = head.splitn(3, |&b| b == b'/');
    let name = trim(parts.next()?);
    let version = trim(parts.next()?);
    let rest = trim(parts.next()?);
    if !name.eq_ignore_ascii_case(b"SIP") || version.is_empty() {
        return None;
    }
    let sp = rest.iter().position(|b| b.is_ascii_whitespace())?;
    let transport = &rest[..sp];
    let (host, port) = host_port(&rest[sp..])?;
    if transport.is_empty() || !valid_host(host) {
        return None;
    }
    let mut via = Via {
        raw,
        span: span.clone(),
        header,
        alone,
        transport,
        host,
        port,
        branch: None,
        rport: None,
        rport_span: None,
        received: None,
    };
    let base = span.start + semi;
    let mut off = 0;
    for p in params.split(|&b| b == b';') {
        let at = off;
        off += p.len() + 1;
        if at == 0 {
            continue; // before the first ';'
        }
        let t = trim(p);
        if t.is_empty() {
            return None; // ";;" (RFC 4475 badinv01)
        }
        let (k, v) = match t.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&t[..i]), Some(trim(&t[i + 1..]))),
            None => (t, None),
        };
        if k.is_empty() || v.is_some_and(<[u8]>::is_empty) {
            return None;
        }
        if k.eq_ignore_ascii_case(b"branch") {
            via.branch = Some(v?);
        } else if k.eq_ignore_ascii_case(b"rport") {
            match v {
                Some(v) => via.rport = Some(Some(parse_port(v)?)),
                None => {
                    via.rport = Some(None);
                    let lead = p.len() - p.trim_ascii_start().len();
                    let start = base + at + lead;
                    via.rport_span = Some(start..start + k.len());
                }
            }
        } else if k.eq_ignore_ascii_case(b"received") {
            via.received = v;
        }
    }
    Some(via)
}

/// A parsed message.
#[derive(Clone, Debug)]
pub(crate) struct Msg<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) start: Start<'a>,
    /// The start line without its CRLF.
    pub(crate) start_line: Range<usize>,
    /// The SIP version is 2.0.
    pub(crate) version_ok: bool,
    /// Every Via value, top first (parsed once).
    pub(crate) vias: SmallVec<[Via<'a>; 3]>,
    /// Every Route value, in order.
    pub(crate) route_values: SmallVec<[&'a [u8]; 4]>,
    /// The parsed Request-URI (requests).
    pub(crate) ruri: Option<Uri<'a>>,
    pub(crate) has_proxy_require: bool,
    pub(crate) call_id: &'a [u8],
    pub(crate) cseq: u32,
    pub(crate) cseq_method: &'a [u8],
    pub(crate) from_tag: Option<&'a [u8]>,
    pub(crate) to_tag: Option<&'a [u8]>,
    pub(crate) max_forwards: Option<u32>,
    pub(crate) headers: SmallVec<[Header; 24]>,
    /// Where the empty line ending the headers starts.
    pub(crate) headers_end: usize,
    /// The body (as long as Content-Length says, or to the end).
    pub(crate) body: Range<usize>,
    pub(crate) has_content_length: bool,
}

/// A request whose headers are too broken to process but good enough to
/// answer (it has Via lines).
#[derive(Clone, Debug)]
pub(crate) struct Partial<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) headers: SmallVec<[Header; 24]>,
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
    /// Every Via value, top first.
    pub(crate) fn vias(&self) -> std::slice::Iter<'_, Via<'a>> {
        self.vias.iter()
    }

    /// The top Via value.
    pub(crate) fn top_via(&self) -> &Via<'a> {
        &self.vias[0]
    }

    /// The Via value after the top one.
    pub(crate) fn second_via(&self) -> Option<&Via<'a>> {
        self.vias.get(1)
    }

    /// Every Route value, in order.
    pub(crate) fn routes(&self) -> impl Iterator<Item = RouteValue<'a>> + '_ {
        self.route_values.iter().map(|&raw| RouteValue { raw })
    }

    /// The option tags of every Proxy-Require header.
    pub(crate) fn proxy_require(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.headers
            .iter()
            .filter(|h| self.has_proxy_require && h.kind == Hdr::ProxyRequire)
            .flat_map(move |h| {
                bytes[h.value.clone()]
                    .split(|&b| b == b',')
                    .map(trim)
                    .filter(|t| !t.is_empty())
            })
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

    /// The header lines of `kind`.
    pub(crate) fn lines(&self, kind: Hdr) -> impl Iterator<Item = &'a [u8]> + '_ {
        let bytes = self.bytes;
        self.headers
            .iter()
            .filter(move |h| h.kind == kind)
            .map(move |h| &bytes[h.line.clone()])
    }
}

/// The rejection of a request that can be answered (it has a Via line), or
/// a drop.
fn answer<'a>(
    bytes: &'a [u8],
    headers: &SmallVec<[Header; 24]>,
    response: bool,
    code: u16,
    reason: &'static str,
) -> Reject<'a> {
    if response || !headers.iter().any(|h| h.kind == Hdr::Via) {
        return Reject::Drop;
    }
    let top_via = headers
        .iter()
        .enumerate()
        .find(|(_, h)| h.kind == Hdr::Via)
        .and_then(|(i, h)| {
            let v = &bytes[h.value.clone()];
            let r = split_top(v, b',').next()?;
            let s = h.value.start + r.start..h.value.start + r.end;
            parse_via(&bytes[s.clone()], s, i, true)
        });
    Reject::Answer {
        code,
        reason,
        msg: Box::new(Partial {
            bytes,
            headers: headers.clone(),
            top_via,
        }),
    }
}

/// The end of the line starting at `from` (the index of its CR), if a CRLF
/// follows.
fn line_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let lf = at + memchr::memchr(b'\n', bytes.get(at..)?)?;
        if lf > from && bytes[lf - 1] == b'\r' {
            return Some(lf - 1);
        }
        at = lf + 1;
    }
}

/// Parses a message: one pass over the header lines that records every
/// line's span and kind, and parses what routing needs (Via values, Route
/// values, the single-valued headers) as it goes.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Reject<'_>> {
    let Some(eol) = line_end(bytes, 0) else {
        return Err(Reject::Drop);
    };
    let line = &bytes[..eol];
    let response = line.starts_with(b"SIP/");
    let mut headers: SmallVec<[Header; 24]> = SmallVec::new();
    let mut vias: SmallVec<[Via<'_>; 3]> = SmallVec::new();
    let mut route_values: SmallVec<[&[u8]; 4]> = SmallVec::new();
    let mut bad_via = false;
    let mut has_proxy_require = false;
    let mut call_id = None;
    let mut cseq = None;
    let mut from = None;
    let mut to = None;
    let mut max_forwards = None;
    let mut content_length: Option<usize> = None;
    let mut content_length_bad = false;
    let mut duplicate = false;
    let mut pos = eol + 2;
    let headers_end;
    loop {
        if bytes[pos..].starts_with(b"\r\n") {
            headers_end = pos;
            break;
        }
        let Some(mut end) = line_end(bytes, pos) else {
            if pos >= bytes.len() || !bytes[pos..].contains(&b':') {
                // No empty line after the headers (RFC 4475 baddn).
                return Err(answer(bytes, &headers, response, 400, "Missing Empty Line"));
            }
            return Err(Reject::Drop);
        };
        // Folded continuation lines belong to this header.
        while matches!(bytes.get(end + 2), Some(b' ' | b'\t')) {
            let Some(e) = line_end(bytes, end + 2) else {
                return Err(Reject::Drop);
            };
            end = e;
        }
        let text = &bytes[pos..end];
        let Some(colon) = memchr::memchr(b':', text) else {
            return Err(Reject::Drop);
        };
        let name = trim(&text[..colon]);
        if name.is_empty() || name.iter().any(u8::is_ascii_whitespace) {
            return Err(Reject::Drop);
        }
        let raw_value = &bytes[pos + colon + 1..end];
        let value = trim(raw_value);
        let vstart = pos + colon + 1 + (raw_value.len() - raw_value.trim_ascii_start().len());
        let kind = Hdr::classify(name);
        let index = headers.len();
        match kind {
            Hdr::Via => {
                let n = split_top(value, b',').count();
                for r in split_top(value, b',') {
                    let span = vstart + r.start..vstart + r.end;
                    match parse_via(&bytes[span.clone()], span, index, n == 1) {
                        Some(v) => vias.push(v),
                        None => bad_via = true,
                    }
                }
            }
            Hdr::Route => {
                for r in split_top(value, b',') {
                    let v = trim(&value[r]);
                    if !v.is_empty() {
                        route_values.push(v);
                    }
                }
            }
            Hdr::ProxyRequire => has_proxy_require = true,
            Hdr::ContentLength => match parse_u32(value) {
                Some(n) => {
                    if content_length.is_some_and(|c| c != n as usize) {
                        duplicate = true;
                    }
                    content_length = Some(n as usize);
                }
                None => content_length_bad = true,
            },
            Hdr::CallId | Hdr::CSeq | Hdr::From | Hdr::To | Hdr::MaxForwards => {
                let slot = match kind {
                    Hdr::CallId => &mut call_id,
                    Hdr::CSeq => &mut cseq,
                    Hdr::From => &mut from,
                    Hdr::To => &mut to,
                    _ => &mut max_forwards,
                };
                duplicate |= slot.is_some();
                *slot = Some(value);
            }
            _ => {}
        }
        headers.push(Header {
            kind,
            line: pos..end + 2,
            value: vstart..vstart + value.len(),
        });
        pos = end + 2;
    }
    let body_start = headers_end + 2;
    let answerable = |code, reason| answer(bytes, &headers, response, code, reason);

    let start = if response {
        // SIP/2.0 SP code SP reason
        let mut it = line.splitn(3, |&b| b == b' ');
        let version = it.next().unwrap_or_default();
        let code = it.next().unwrap_or_default();
        if version != b"SIP/2.0" || code.len() != 3 {
            return Err(Reject::Drop);
        }
        match parse_u32(code) {
            Some(c @ 100..=699) => Start::Response { code: c as u16 },
            _ => return Err(Reject::Drop),
        }
    } else {
        let mut it = line.split(|&b| b == b' ');
        let (Some(method), Some(uri), Some(_version), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(answerable(400, "Malformed Request-Line"));
        };
        if method.is_empty() || uri.is_empty() || !method.iter().all(u8::is_ascii_graphic) {
            return Err(answerable(400, "Malformed Request-Line"));
        }
        Start::Request { method, uri }
    };
    let version_ok = match start {
        Start::Request { .. } => line.ends_with(b" SIP/2.0"),
        Start::Response { .. } => true,
    };
    if content_length_bad {
        return Err(answerable(400, "Bad Content-Length"));
    }
    if duplicate && content_length.is_some() && {
        let lengths = headers
            .iter()
            .filter(|h| h.kind == Hdr::ContentLength)
            .count();
        lengths > 1
    } {
        return Err(answerable(400, "Conflicting Content-Length"));
    }
    if duplicate {
        return Err(answerable(400, "Duplicate Header"));
    }
    let (Some(call_id), Some(cseq), Some(from), Some(to)) = (call_id, cseq, from, to) else {
        return Err(answerable(400, "Missing Required Header"));
    };
    if call_id.is_empty() || call_id.iter().any(u8::is_ascii_whitespace) {
        return Err(answerable(400, "Bad Call-ID"));
    }
    let cseq_num_end = cseq
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(cseq.len());
    let Some(cseq_num) = parse_u32(&cseq[..cseq_num_end]).filter(|&n| n < 1 << 31) else {
        return Err(answerable(400, "Bad CSeq"));
    };
    let cseq_method = trim(&cseq[cseq_num_end..]);
    if cseq_method.is_empty() {
        return Err(answerable(400, "Bad CSeq"));
    }
    let max_forwards = match max_forwards {
        Some(v) => match parse_u32(v) {
            Some(n) => Some(n.min(255)),
            None => return Err(answerable(400, "Bad Max-Forwards")),
        },
        None => None,
    };
    let (Some(from_tag), Some(to_tag)) = (addr_tag(from), addr_tag(to)) else {
        return Err(answerable(400, "Malformed From or To"));
    };
    if vias.is_empty() {
        if !headers.iter().any(|h| h.kind == Hdr::Via) {
            return Err(Reject::Drop);
        }
        return Err(answerable(400, "Malformed Via"));
    }
    // Every Via must parse: a proxy must not forward a broken one.
    if bad_via {
        return Err(answerable(400, "Malformed Via"));
    }
    let body = match content_length {
        Some(n) if body_start + n > bytes.len() => {
            return Err(answerable(400, "Content-Length Larger Than Message"));
        }
        Some(n) => body_start..body_start + n,
        None => body_start..bytes.len(),
    };
    let ruri = match start {
        Start::Request { uri, .. } => Uri::parse(uri),
        Start::Response { .. } => None,
    };
    let msg = Msg {
        bytes,
        start,
        start_line: 0..eol,
        version_ok,
        vias,
        route_values,
        ruri,
        has_proxy_require,
        call_id,
        cseq: cseq_num,
        cseq_method,
        from_tag,
        to_tag,
        max_forwards,
        headers,
        headers_end,
        body,
        has_content_length: content_length.is_some(),
    };
    Ok(if response {
        Parsed::Response(msg)
    } else {
        Parsed::Request(msg)
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
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].host, b"pc33.atlanta.example.com");
        assert_eq!(vias[0].rport, Some(None));
        assert_eq!(&INVITE[vias[0].rport_span.clone().unwrap()], b"rport");
        assert!(!vias[0].alone);
        assert_eq!((vias[1].transport, vias[1].port), (&b"TCP"[..], Some(5070)));
        assert_eq!(vias[2].host, b"[2001:db8::1]");
        assert_eq!(vias[2].received, Some(&b"192.0.2.1"[..]));
        assert!(vias[2].alone);
        let routes: Vec<_> = m.routes().map(|r| r.raw).collect();
        assert_eq!(
            routes,
            vec![
                &b"<sip:p1.example.com;lr>"[..],
                b"<sip:p2.example.com;lr>",
                b"<sip:p3.example.com>"
            ]
        );
        let tags: Vec<_> = m.proxy_require().collect();
        assert_eq!(tags, vec![&b"foo"[..], b"bar"]);
        assert_eq!(&INVITE[m.body.clone()], b"v=0\n");
        let uri = m.request_uri().unwrap();
        assert!(uri.is_sip());
        assert_eq!(uri.host, b"biloxi.example.com");
    }

    #[test]
    fn uris() {
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com:5070;lr;transport=tcp?h=1")
            .unwrap();
        assert_eq!((u.host, u.port), (&b"example.com"[..], Some(5070)));
        assert_eq!(u.param(b"lr"), Some(&b""[..]));
        assert_eq!(u.param(b"transport"), Some(&b"tcp"[..]));
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
