//! URIs (RFC 3261 §19.1, RFC 3966, RFC 3986): SIP and SIPS URIs with the
//! full grammar (user, password, host incl. IPv6 references, port, URI
//! parameters, URI headers), `tel:` URIs, and any other scheme kept as an
//! opaque absolute URI.
//!
//! Escapes are kept as written; comparisons decode them per §19.1.4
//! ([`SipUri::equivalent`], [`SipUri::user_eq`], [`crate::Param::is`]).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{Error, ErrorKind};
use crate::scan::{
    self, PResult, Params, Pos, eq_escaped, escaped_run, is_hnvchar, is_hostchar, is_paramchar,
    is_password, is_telchar, is_urichar, is_user, parse_port,
};

/// A host as written, with its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host<'a> {
    /// The host text as written (an IPv6 reference keeps its brackets).
    pub raw: &'a [u8],
    /// Domain name or address.
    pub kind: HostKind,
}

/// What a [`Host`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// A domain name (resolve it).
    Domain,
    /// A dotted IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference `[...]`.
    Ipv6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parses `hostname / IPv4address / IPv6reference`.
    pub(crate) fn parse(s: &'a [u8]) -> PResult<Host<'a>> {
        if s.first() == Some(&b'[') {
            if s.len() < 3 || s[s.len() - 1] != b']' {
                return Err(Pos::of(s));
            }
            let inner = core::str::from_utf8(&s[1..s.len() - 1]).map_err(|_| Pos::of(s))?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| Pos::of(s))?;
            return Ok(Host {
                raw: s,
                kind: HostKind::Ipv6(ip),
            });
        }
        // Dotted-decimal IPv4 first, in one pass (the common sent-by).
        if s.first().is_some_and(u8::is_ascii_digit) {
            if let Some(ip) = parse_ipv4(s) {
                return Ok(Host {
                    raw: s,
                    kind: HostKind::Ipv4(ip),
                });
            }
        }
        // One pass: host characters only, no empty label, and whether the
        // last label is numeric (then it must be an IPv4 address: a top
        // label starts with a letter).
        let mut prev = b'.';
        let mut numeric = true;
        for &b in s {
            if !is_hostchar(b) || (b == b'.' && prev == b'.') {
                return Err(Pos::of(s));
            }
            if b == b'.' {
                numeric = true;
            } else if !b.is_ascii_digit() {
                numeric = false;
            }
            prev = b;
        }
        if s.is_empty() || s[0] == b'-' {
            return Err(Pos::of(s));
        }
        if numeric && prev != b'.' {
            let ip = parse_ipv4(s).ok_or(Pos::of(s))?;
            return Ok(Host {
                raw: s,
                kind: HostKind::Ipv4(ip),
            });
        }
        Ok(Host {
            raw: s,
            kind: HostKind::Domain,
        })
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.kind {
            HostKind::Domain => None,
            HostKind::Ipv4(a) => Some(IpAddr::V4(a)),
            HostKind::Ipv6(a) => Some(IpAddr::V6(a)),
        }
    }

    /// Case-insensitive equality (§19.1.4); IP literals compare as addresses.
    pub fn eq_host(&self, other: &Host<'_>) -> bool {
        match (self.kind, other.kind) {
            (HostKind::Domain, HostKind::Domain) => self.raw.eq_ignore_ascii_case(other.raw),
            (a, b) => a == b,
        }
    }
}

/// Dotted-decimal IPv4 (no leading `+`, at most three digits an octet).
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut n, mut v, mut digits) = (0, 0u32, 0);
    for &b in s {
        if b.is_ascii_digit() {
            v = v * 10 + u32::from(b - b'0');
            digits += 1;
            if digits > 3 {
                return None;
            }
        } else if b == b'.' && digits > 0 && n < 3 {
            octets[n] = u8::try_from(v).ok()?;
            (n, v, digits) = (n + 1, 0, 0);
        } else {
            return None;
        }
    }
    if n != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(v).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Splits `host[:port]` with optional LWS around the colon (Via sent-by).
pub(crate) fn host_port(s: &[u8], lws: bool) -> PResult<(Host<'_>, Option<u16>)> {
    let s = if lws { scan::trim(s) } else { s };
    let (host, rest) = if s.first() == Some(&b'[') {
        match s.iter().position(|&b| b == b']') {
            Some(e) => s.split_at(e + 1),
            None => return Err(Pos::of(s)),
        }
    } else {
        match s
            .iter()
            .position(|&b| b == b':' || (lws && scan::is_lws(b)))
        {
            Some(e) => s.split_at(e),
            None => (s, &s[s.len()..]),
        }
    };
    let host = Host::parse(host)?;
    let rest = if lws { scan::trim_start(rest) } else { rest };
    if rest.is_empty() {
        return Ok((host, None));
    }
    if rest[0] != b':' {
        return Err(Pos::of(rest));
    }
    let p = if lws {
        scan::trim_start(&rest[1..])
    } else {
        &rest[1..]
    };
    match parse_port(p) {
        Some(port) => Ok((host, Some(port))),
        None => Err(Pos::of(p)),
    }
}

/// Any URI: SIP/SIPS, tel, or another scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:` (RFC 3966).
    Tel(TelUri<'a>),
    /// Any other scheme, kept opaque (RFC 4475 `unkscm`, `novelsc`, `unksm2`).
    Absolute(AbsoluteUri<'a>),
}

impl<'a> Uri<'a> {
    /// Parses a URI (no surrounding white space or `< >`).
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, Error> {
        Uri::parse_inner(s).map_err(|p| Error::at(ErrorKind::BadUri, p, s))
    }

    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<Uri<'a>> {
        let colon = s.iter().position(|&b| b == b':').ok_or(Pos::of(s))?;
        let scheme = &s[..colon];
        if scheme.is_empty()
            || !scheme[0].is_ascii_alphabetic()
            || !scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(Pos::of(s));
        }
        let rest = &s[colon + 1..];
        if scheme.eq_ignore_ascii_case(b"sip") {
            return SipUri::parse_rest(s, rest, false).map(Uri::Sip);
        }
        if scheme.eq_ignore_ascii_case(b"sips") {
            return SipUri::parse_rest(s, rest, true).map(Uri::Sip);
        }
        if scheme.eq_ignore_ascii_case(b"tel") {
            return TelUri::parse_rest(s, rest).map(Uri::Tel);
        }
        if rest.is_empty() || !rest.iter().all(|&b| is_urichar(b) || b >= 0x80) {
            return Err(Pos::of(rest));
        }
        Ok(Uri::Absolute(AbsoluteUri {
            raw: s,
            scheme,
            rest,
        }))
    }

    /// The URI as written.
    pub fn raw(&self) -> &'a [u8] {
        match self {
            Uri::Sip(u) => u.raw,
            Uri::Tel(u) => u.raw,
            Uri::Absolute(u) => u.raw,
        }
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &'a [u8] {
        match self {
            Uri::Sip(u) => &u.raw[..if u.secure { 4 } else { 3 }],
            Uri::Tel(u) => &u.raw[..3],
            Uri::Absolute(u) => u.scheme,
        }
    }

    /// The SIP/SIPS URI, if it is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

/// A SIP or SIPS URI. Parts are slices as written (escapes kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// The whole URI.
    pub raw: &'a [u8],
    /// `sips:`.
    pub secure: bool,
    /// The user part (may hold `;` parameters of a telephone-subscriber,
    /// RFC 4475 `semiuri`).
    pub user: Option<&'a [u8]>,
    /// The password.
    pub password: Option<&'a [u8]>,
    /// The host.
    pub host: Host<'a>,
    /// The port, if written.
    pub port: Option<u16>,
    params: &'a [u8],
    headers: &'a [u8],
}

impl<'a> SipUri<'a> {
    /// Parses a `sip:` or `sips:` URI.
    pub fn parse(s: &'a [u8]) -> Result<SipUri<'a>, Error> {
        match Uri::parse(s)? {
            Uri::Sip(u) => Ok(u),
            _ => Err(Error::new(ErrorKind::BadUri, 0)),
        }
    }

    fn parse_rest(raw: &'a [u8], s: &'a [u8], secure: bool) -> PResult<SipUri<'a>> {
        // '@' appears in neither host, parameters nor headers, so the first
        // one ends the userinfo, which may itself hold ';', '?' and ','.
        let (user, password, rest) = match memchr::memchr(b'@', s) {
            Some(at) => {
                let info = &s[..at];
                let (user, password) = match memchr::memchr(b':', info) {
                    Some(c) => (&info[..c], Some(&info[c + 1..])),
                    None => (info, None),
                };
                if !escaped_run(user, is_user) {
                    return Err(Pos::of(info));
                }
                if let Some(p) = password {
                    if !(p.iter().all(|&b| is_password(b)) && scan::valid_escapes(p)) {
                        return Err(Pos::of(p));
                    }
                }
                (Some(user), password, &s[at + 1..])
            }
            None => (None, None, s),
        };
        let hp_end = rest
            .iter()
            .position(|&b| b == b';' || b == b'?')
            .unwrap_or(rest.len());
        let (host, port) = host_port(&rest[..hp_end], false)?;
        let tail = &rest[hp_end..];
        let q = memchr::memchr(b'?', tail).unwrap_or(tail.len());
        let params = &tail[..q];
        let headers = if q < tail.len() {
            &tail[q + 1..]
        } else {
            &tail[q..]
        };
        validate_uri_params(params)?;
        if q < tail.len() {
            validate_uri_headers(headers)?;
        }
        Ok(SipUri {
            raw,
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The URI parameters (`;lr;transport=tcp`), as written.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The value of URI parameter `name` (`Some(None)` for a flag).
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params().get(name).map(|p| p.value)
    }

    /// `;lr` (loose routing, RFC 3261 §16.4).
    pub fn lr(&self) -> bool {
        self.params().contains(b"lr")
    }

    /// `;transport=`.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param(b"transport").flatten()
    }

    /// `;maddr=`.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.param(b"maddr").flatten()
    }

    /// `;user=` (e.g. `phone`).
    pub fn user_param(&self) -> Option<&'a [u8]> {
        self.param(b"user").flatten()
    }

    /// `;method=`.
    pub fn method_param(&self) -> Option<&'a [u8]> {
        self.param(b"method").flatten()
    }

    /// `;ttl=` (0..=255).
    pub fn ttl(&self) -> Option<u8> {
        self.param(b"ttl")
            .flatten()
            .and_then(scan::parse_u32)
            .and_then(|v| u8::try_from(v).ok())
    }

    /// The URI headers after `?`, as written (empty when none).
    pub fn headers_raw(&self) -> &'a [u8] {
        self.headers
    }

    /// Whether the URI carries `?headers` (RFC 4475 `escruri`: a proxy must
    /// not forward them in a Request-URI).
    pub fn has_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// The URI headers as (name, value) pairs, as written.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let h = self.headers;
        h.split(|&b| b == b'&').filter(|s| !s.is_empty()).map(|s| {
            match s.iter().position(|&b| b == b'=') {
                Some(e) => (&s[..e], &s[e + 1..]),
                None => (s, &s[s.len()..]),
            }
        })
    }

    /// The URI without its `?headers` (what a proxy may forward).
    pub fn without_headers(&self) -> &'a [u8] {
        let cut = if self.headers.is_empty() {
            if self.raw.last() == Some(&b'?') {
                self.raw.len() - 1
            } else {
                self.raw.len()
            }
        } else {
            self.raw.len() - self.headers.len() - 1
        };
        &self.raw[..cut]
    }

    /// Whether the user parts are equal per §19.1.4 (case-sensitive, escapes
    /// decoded): `sip:%75ser@h` has user `user`; `%00` and `%00%00` differ.
    pub fn user_eq(&self, other: &SipUri<'_>) -> bool {
        match (self.user, other.user) {
            (None, None) => true,
            (Some(a), Some(b)) => eq_escaped(a, b, false),
            _ => false,
        }
    }

    /// URI equivalence per RFC 3261 §19.1.4: scheme, userinfo
    /// (case-sensitive), host (case-insensitive), port (absent differs from
    /// 5060), the parameters user/ttl/method/maddr/transport (must match if
    /// either has one), other parameters present in both, and headers.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.secure != other.secure
            || !self.user_eq(other)
            || !opt_eq(self.password, other.password, false)
            || !self.host.eq_host(&other.host)
            || self.port != other.port
        {
            return false;
        }
        const STRICT: [&[u8]; 5] = [b"user", b"ttl", b"method", b"maddr", b"transport"];
        for name in STRICT {
            let a = self.params().get(name);
            let b = other.params().get(name);
            match (a, b) {
                (None, None) => {}
                (Some(x), Some(y)) => {
                    if !opt_eq(x.value, y.value, true) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        // A repeated parameter counts by its first occurrence on both sides.
        for p in self.params() {
            if let (Some(a), Some(b)) = (self.params().get(p.name), other.params().get(p.name)) {
                if !opt_eq(a.value, b.value, true) {
                    return false;
                }
            }
        }
        // Headers: every header of each must be in the other.
        let contains = |set: &SipUri<'_>, (n, v): (&[u8], &[u8])| {
            set.headers()
                .any(|(m, w)| eq_escaped(n, m, true) && eq_escaped(v, w, false))
        };
        self.headers().all(|h| contains(other, h)) && other.headers().all(|h| contains(self, h))
    }
}

fn opt_eq(a: Option<&[u8]>, b: Option<&[u8]>, ignore_case: bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => eq_escaped(x, y, ignore_case),
        _ => false,
    }
}

/// `*( ";" pname [ "=" pvalue ] )` with paramchar names and values.
fn validate_uri_params(s: &[u8]) -> PResult<()> {
    if s.is_empty() {
        return Ok(());
    }
    for p in s[1..].split(|&b| b == b';') {
        let (name, value) = match memchr::memchr(b'=', p) {
            Some(e) => (&p[..e], Some(&p[e + 1..])),
            None => (p, None),
        };
        if !escaped_run(name, is_paramchar) {
            return Err(Pos::of(p));
        }
        if let Some(v) = value {
            if !escaped_run(v, is_paramchar) {
                return Err(Pos::of(v));
            }
        }
    }
    Ok(())
}

/// `hname "=" hvalue *( "&" hname "=" hvalue )`.
fn validate_uri_headers(s: &[u8]) -> PResult<()> {
    for h in s.split(|&b| b == b'&') {
        let e = memchr::memchr(b'=', h).ok_or(Pos::of(h))?;
        let (name, value) = (&h[..e], &h[e + 1..]);
        if !escaped_run(name, is_hnvchar) {
            return Err(Pos::of(h));
        }
        if !(value.iter().all(|&b| is_hnvchar(b)) && scan::valid_escapes(value)) {
            return Err(Pos::of(value));
        }
    }
    Ok(())
}

/// A `tel:` URI (RFC 3966).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The whole URI.
    pub raw: &'a [u8],
    /// The number as written (with visual separators).
    pub number: &'a [u8],
    params: &'a [u8],
}

impl<'a> TelUri<'a> {
    fn parse_rest(raw: &'a [u8], s: &'a [u8]) -> PResult<TelUri<'a>> {
        let end = memchr::memchr(b';', s).unwrap_or(s.len());
        let number = &s[..end];
        if number.is_empty()
            || !number.iter().all(|&b| is_telchar(b))
            || !number
                .iter()
                .any(|b| b.is_ascii_hexdigit() || *b == b'*' || *b == b'#')
        {
            return Err(Pos::of(s));
        }
        let params = &s[end..];
        validate_uri_params(params)?;
        Ok(TelUri {
            raw,
            number,
            params,
        })
    }

    /// Whether the number is global (`+` and a country code).
    pub fn is_global(&self) -> bool {
        self.number.first() == Some(&b'+')
    }

    /// The parameters (`;phone-context=...`).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }
}

/// A URI of another scheme, kept opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbsoluteUri<'a> {
    /// The whole URI.
    pub raw: &'a [u8],
    /// The scheme.
    pub scheme: &'a [u8],
    /// Everything after `scheme:`.
    pub rest: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &[u8]) -> SipUri<'_> {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(s)),
        }
    }

    #[test]
    fn sip_uris() {
        let u = sip(b"sip:alice:secret@atlanta.com:5070;transport=tcp;lr?subject=x&h=");
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.password, Some(&b"secret"[..]));
        assert_eq!((u.host.raw, u.port), (&b"atlanta.com"[..], Some(5070)));
        assert_eq!(u.transport(), Some(&b"tcp"[..]));
        assert!(u.lr());
        assert_eq!(u.headers().count(), 2);
        assert_eq!(
            u.without_headers(),
            b"sip:alice:secret@atlanta.com:5070;transport=tcp;lr"
        );

        let u = sip(b"sips:[2001:db8::1]:5061;maddr=239.255.255.1;ttl=15");
        assert!(u.secure);
        assert_eq!(u.host.kind, HostKind::Ipv6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.maddr(), Some(&b"239.255.255.1"[..]));
        assert_eq!(u.ttl(), Some(15));
        assert_eq!(u.user, None);

        let u = sip(b"sip:192.0.2.1");
        assert_eq!(u.host.ip(), Some("192.0.2.1".parse().unwrap()));
        for (host, kind) in [
            (&b"pc33"[..], Some(HostKind::Domain)),
            (b"host5.example.com.", Some(HostKind::Domain)),
            (b"a-1.b2", Some(HostKind::Domain)),
            (b"10.0.0.256", None),
            (b"10.0.0", None),
            (b"1.2.3.4.5", None),
            (b"01.2.3.0004", None),
            (b"example.123", None),
            (b"1..2.3", None),
            (b".1.2.3", None),
            (b"1.2.3.", Some(HostKind::Domain)),
            (b"1.2.3.4a", Some(HostKind::Domain)),
            (b"1.2.3.4-", Some(HostKind::Domain)),
            (b"9host.example", Some(HostKind::Domain)),
            (
                b"255.255.255.255",
                Some(HostKind::Ipv4(Ipv4Addr::new(255, 255, 255, 255))),
            ),
            (
                b"010.0.0.1",
                Some(HostKind::Ipv4(Ipv4Addr::new(10, 0, 0, 1))),
            ),
        ] {
            assert_eq!(Host::parse(host).ok().map(|h| h.kind), kind, "{host:?}");
        }

        // RFC 4475 semiuri: the user part holds ';par=u%40example.net'.
        let u = sip(b"sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host.raw, b"example.com");
        assert!(u.params().is_empty());

        // RFC 4475 intmeth: unusual user and password characters.
        let u = sip(b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user,
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password,
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );

        // RFC 4475 esc01.
        let u = sip(b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert!(u.lr());
        let v = u.params().get(b"name").unwrap().value.unwrap();
        assert_eq!(scan::unescape(v).collect::<Vec<u8>>(), b"value%41");
        assert!(u.user_eq(&sip(b"sip:caller@host5.example.net")));
    }

    #[test]
    fn malformed_uris() {
        for bad in [
            &b"sip:"[..],
            b"sip:@host",
            b"sip:user@",
            b"sip:host:99999",
            b"sip:host:",
            b"sip:[::1",
            b"sip:[zz]",
            b"sip:ho st",
            b"sip:host;",
            b"sip:host;a=",
            b"sip:host?",
            b"sip:host?a",
            b"sip:us%zzer@host",
            b"<sip:user@example.com>",
            b"sip:user@example.com; lr",
            b":x",
            b"1abc:x",
            b"tel:",
            b"tel:x1",
            b"tel:--",
            b"http:",
            b"sip:a..b",
        ] {
            assert!(
                Uri::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn other_schemes() {
        for (s, scheme) in [
            (
                &b"tel:+1-201-555-0123;phone-context=example.com"[..],
                &b"tel"[..],
            ),
            (b"soap.beep://192.0.2.103:3002", b"soap.beep"),
            (
                b"nobodyKnowsThisScheme:totallyopaquecontent",
                b"nobodyKnowsThisScheme",
            ),
            (b"isbn:2983792873", b"isbn"),
            (b"http://www.example.com", b"http"),
            (b"name:John_Smith", b"name"),
            (b"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", b"urn"),
        ] {
            let u = Uri::parse(s).unwrap();
            assert_eq!(u.scheme(), scheme);
            assert_eq!(u.raw(), s);
            assert!(u.as_sip().is_none());
        }
        let Ok(Uri::Tel(t)) = Uri::parse(b"tel:+1-201-555-0123") else {
            panic!()
        };
        assert!(t.is_global());
        assert_eq!(t.number, b"+1-201-555-0123");
    }

    #[test]
    fn equivalence_per_19_1_4() {
        let eq = |a: &[u8], b: &[u8]| sip(a).equivalent(&sip(b));
        // RFC 3261 §19.1.4 examples of equivalent URIs.
        assert!(eq(
            b"sip:%61lice@atlanta.com;transport=TCP",
            b"sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            b"sip:carol@chicago.com;security=on",
            b"sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            b"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            b"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            b"sip:alice@atlanta.com?priority=urgent&subject=project%20x"
        ));
        // ... and of URIs that are not.
        assert!(!eq(
            b"SIP:ALICE@AtLanTa.CoM;Transport=udp",
            b"sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq(b"sip:bob@biloxi.com", b"sip:bob@biloxi.com:5060"));
        assert!(!eq(
            b"sip:bob@biloxi.com",
            b"sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq(
            b"sip:bob@biloxi.com",
            b"sip:bob@biloxi.com:6000;transport=tcp"
        ));
        assert!(!eq(
            b"sip:carol@chicago.com",
            b"sip:carol@chicago.com?Subject=next%20meeting"
        ));
        assert!(!eq(b"sip:bob@phone21.boxesbybob.com", b"sip:bob@192.0.2.4"));
        assert!(!eq(
            b"sip:carol@chicago.com;security=on",
            b"sip:carol@chicago.com;security=off"
        ));
        assert!(!eq(b"sip:%00@h", b"sip:%00%00@h"));
        // Found by the fuzzer: a repeated parameter must not break reflexivity.
        let u = sip(b"sip:u;.=0ip:u;.=0vvvv");
        assert!(u.equivalent(&u));
    }
}
