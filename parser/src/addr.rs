//! Addresses: `name-addr` / `addr-spec` values of From, To, Contact,
//! Route, Record-Route, Path (RFC 3261 §20.10, §25.1), with display names
//! (tokens or quoted strings with escapes) and header parameters, and the
//! Contact view (`*`, q, expires, +sip.instance, reg-id).
//!
//! The URI inside is validated for shape here and parsed on demand by
//! [`NameAddr::uri`], so reading a tag does not pay for a URI parse.

use crate::error::{Error, ErrorKind};
use crate::lint::{Lint, Lints};
use crate::scan::{self, PResult, Params, Pos, each_param, is_lws, quoted_end, unquote_pairs};
use crate::uri::Uri;

/// A display name as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisplayName<'a> {
    /// The text as written, quotes included when quoted.
    pub raw: &'a [u8],
    /// Whether it is a quoted string.
    pub quoted: bool,
}

impl<'a> DisplayName<'a> {
    /// The content: without quotes (quoted-pairs kept as written).
    pub fn text(&self) -> &'a [u8] {
        if self.quoted {
            scan::unquote(self.raw)
        } else {
            self.raw
        }
    }

    /// The content with quoted-pairs resolved (`\"` -> `"`), no allocation.
    pub fn unescaped(&self) -> impl Iterator<Item = u8> + 'a {
        let quoted = self.quoted;
        let t = self.text();
        let mut plain = t.iter();
        let mut pairs = unquote_pairs(t);
        core::iter::from_fn(move || {
            if quoted {
                pairs.next()
            } else {
                plain.next().copied()
            }
        })
    }
}

/// A `name-addr` (`"Name" <uri>;params`) or `addr-spec` (`uri;params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The whole value as written.
    pub raw: &'a [u8],
    /// The display name, if any.
    pub display_name: Option<DisplayName<'a>>,
    /// The URI text (without `< >`; parse it with [`NameAddr::uri`]).
    pub uri_raw: &'a [u8],
    /// Whether the URI was in angle brackets.
    pub angle: bool,
    /// Accepted deviations ([`Lint::SpaceInAngleBrackets`]).
    pub lints: Lints,
    params: &'a [u8],
    tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    /// Parses one name-addr or addr-spec (already split from its list).
    pub fn parse(s: &'a [u8]) -> Result<NameAddr<'a>, Error> {
        NameAddr::parse_inner(s).map_err(|p| Error::at(ErrorKind::BadUri, p, s))
    }

    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<NameAddr<'a>> {
        let s = scan::trim(s);
        if s.is_empty() {
            return Err(Pos::of(s));
        }
        let mut lints = Lints::EMPTY;
        let (display_name, open) = if s[0] == b'"' {
            let end = quoted_end(s, 0).ok_or(Pos::of(s))?;
            let open = scan::skip_lws(s, end);
            if s.get(open) != Some(&b'<') {
                return Err(Pos::of(&s[open..]));
            }
            (
                Some(DisplayName {
                    raw: &s[..end],
                    quoted: true,
                }),
                Some(open),
            )
        } else {
            // *(token LWS) then '<' is a name-addr; anything else (a URI's
            // ':' first) is an addr-spec. RFC 4475 lwsdisp: no LWS before '<'.
            let e = scan::run(s, 0, scan::is_token_or_lws);
            if s.get(e) == Some(&b'<') {
                let name = scan::trim(&s[..e]);
                let dn = (!name.is_empty()).then_some(DisplayName {
                    raw: name,
                    quoted: false,
                });
                (dn, Some(e))
            } else {
                (None, None)
            }
        };
        let (uri_raw, params) = match open {
            Some(open) => {
                // One pass: optional LWS (RFC 4475 badaspec), the URI up to
                // a byte no URI holds, optional LWS, then '>'.
                let us = scan::skip_lws(s, open + 1);
                let ue = scan::run(s, us, |b| !scan::is_not_uri(b));
                let close = scan::skip_lws(s, ue);
                if s.get(close) != Some(&b'>') {
                    return Err(Pos::of(&s[close.min(s.len())..]));
                }
                if us != open + 1 || close != ue {
                    lints.insert(Lint::SpaceInAngleBrackets);
                }
                (&s[us..ue], &s[close + 1..])
            }
            None => {
                // addr-spec: the URI ends at the first ';' (what follows is
                // header parameters) and must not hold '?' (RFC 3261 §20.10:
                // such a URI must be in angle brackets; RFC 4475 regbadct).
                let end = scan::run(s, 0, |b| b != b';' && !scan::is_not_uri(b) && b != b'?');
                let uri = &s[..end];
                if end < s.len() && s[end] != b';' && !is_lws(s[end]) {
                    return Err(Pos::of(&s[end..]));
                }
                (uri, &s[end..])
            }
        };
        check_uri_shape(uri_raw)?;
        let mut tag = None;
        each_param(params, |p| {
            if tag.is_none() && p.named(b"tag") {
                tag = p.value;
            }
            Ok(())
        })?;
        Ok(NameAddr {
            raw: s,
            display_name,
            uri_raw,
            angle: open.is_some(),
            lints,
            params,
            tag,
        })
    }

    /// Parses the URI.
    pub fn uri(&self) -> Result<Uri<'a>, Error> {
        Uri::parse(self.uri_raw)
    }

    /// The header parameters after the address (`;tag=..;expires=..`).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The value of header parameter `name` (`Some(None)` for a flag).
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params().get(name).map(|p| p.value)
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }
}

/// A URI's outline: `scheme:` then something, and (for an addr-spec) no
/// white space, quotes or brackets.
fn check_uri_shape(u: &[u8]) -> PResult<()> {
    let se = scan::run(u, 0, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
    });
    if se == 0 || !u[0].is_ascii_alphabetic() || u.get(se) != Some(&b':') || se + 1 == u.len() {
        return Err(Pos::of(u));
    }
    Ok(())
}

/// One Contact value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactValue<'a> {
    /// `*` (remove all bindings; REGISTER only).
    Star,
    /// An address with its parameters.
    Addr(Contact<'a>),
}

/// A Contact address with the parameters a registrar reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact<'a> {
    /// The address (URI, display name, every parameter).
    pub addr: NameAddr<'a>,
    /// `q`, in thousandths (0..=1000).
    pub q: Option<u16>,
    /// `expires` in seconds (overlarge values saturate).
    pub expires: Option<u32>,
    /// `+sip.instance` without its quotes (e.g. `<urn:uuid:...>`, RFC 5626).
    pub instance: Option<&'a [u8]>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
}

impl<'a> ContactValue<'a> {
    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<ContactValue<'a>> {
        if scan::trim(s) == b"*" {
            return Ok(ContactValue::Star);
        }
        let addr = NameAddr::parse_inner(s)?;
        let mut c = Contact {
            addr,
            q: None,
            expires: None,
            instance: None,
            reg_id: None,
        };
        each_param(addr.params, |p| {
            let bad = Pos::of(p.name);
            if p.named(b"q") {
                c.q = Some(p.value.and_then(parse_qvalue).ok_or(bad)?);
            } else if p.named(b"expires") {
                c.expires = Some(p.value.and_then(scan::parse_u32_saturating).ok_or(bad)?);
            } else if p.named(b"+sip.instance") {
                c.instance = Some(p.unquoted().ok_or(bad)?);
            } else if p.named(b"reg-id") {
                c.reg_id = Some(p.value.and_then(scan::parse_u32).ok_or(bad)?);
            }
            Ok(())
        })?;
        Ok(ContactValue::Addr(c))
    }

    /// Parses one Contact value.
    pub fn parse(s: &'a [u8]) -> Result<ContactValue<'a>, Error> {
        ContactValue::parse_inner(s)
            .map_err(|p| Error::at(ErrorKind::BadHeader(crate::HeaderKind::Contact), p, s))
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
pub(crate) fn parse_qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match memchr::memchr(b'.', v) {
        Some(d) => (&v[..d], &v[d + 1..]),
        None => (v, &v[v.len()..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut f: u16 = 0;
    for i in 0..3 {
        f = f * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(f),
        b"1" if f == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &[u8]) -> NameAddr<'_> {
        NameAddr::parse(s).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(s)))
    }

    #[test]
    fn name_addrs() {
        let a = na(b"\"Alice, A\" <sip:alice@atlanta.com>;tag=1928301774");
        assert_eq!(a.display_name.unwrap().text(), b"Alice, A");
        assert_eq!(a.uri_raw, b"sip:alice@atlanta.com");
        assert_eq!(a.tag(), Some(&b"1928301774"[..]));
        assert!(a.angle);

        let a = na(b"sip:bob@biloxi.com;tag=a6c85cf");
        assert!(!a.angle && a.display_name.is_none());
        assert_eq!(a.uri_raw, b"sip:bob@biloxi.com");
        assert_eq!(a.tag(), Some(&b"a6c85cf"[..]));

        // RFC 4475 wsinv: LWS and folding around ';' and '='.
        let a = na(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        );
        let dn = a.display_name.unwrap();
        assert_eq!(dn.unescaped().collect::<Vec<u8>>(), b"J Rosenberg \\\"");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
        let a = na(b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));

        // RFC 4475 lwsdisp: no LWS between the display name and '<'.
        let a = na(b"caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name.unwrap().raw, b"caller");

        // Tokens with unusual characters (RFC 4475 intmeth).
        let a = na(b"token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\xd1\x80\";tag=_token~1'+`*%!-.");
        assert_eq!(
            a.display_name.unwrap().raw,
            b"token1~` token2'+_ token3*%!.-"
        );
        assert_eq!(a.tag(), Some(&b"_token~1'+`*%!-."[..]));

        // RFC 4475 badaspec: accepted, flagged.
        let a = na(b"\"Watson, Thomas\" < sip:t.watson@example.org >");
        assert_eq!(a.uri_raw, b"sip:t.watson@example.org");
        assert!(a.lints.contains(Lint::SpaceInAngleBrackets));

        // Other schemes (RFC 4475 unksm2).
        assert_eq!(na(b"isbn:2983792873").uri_raw, b"isbn:2983792873");
        assert_eq!(na(b"<name:John_Smith>").uri_raw, b"name:John_Smith");
    }

    #[test]
    fn malformed_name_addrs() {
        for bad in [
            &b""[..],
            b"\"Mr. J. User <sip:j.user@example.com>", // quotbal
            b"Bell, Alexander <sip:a.g.bell@example.com>", // baddn
            b"Watson, Thomas <sip:t.watson@example.org>",
            b"\"Joe\" <sip:joe@example.org>;;;;", // badinv01
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E", // regbadct
            b"<sip:a@b",
            b"<>",
            b"\"x\" sip:a@b",
            b"<sip:a@b>;tag=",
            b"<sip:a@b> junk",
            b"nocolon",
        ] {
            assert!(
                NameAddr::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn contacts() {
        let ContactValue::Addr(c) = ContactValue::parse(
            b"<sip:u@192.0.2.1:5060;ob>;q=0.7;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.q, Some(700));
        assert_eq!(c.expires, Some(3600));
        assert_eq!(
            c.instance,
            Some(&b"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"[..])
        );
        assert_eq!(c.reg_id, Some(1));
        assert_eq!(ContactValue::parse(b" * ").unwrap(), ContactValue::Star);
        // RFC 4475 cparam01: ;unknownparam is a contact-param.
        let ContactValue::Addr(c) =
            ContactValue::parse(b"sip:+19725552222@gw1.example.net;unknownparam").unwrap()
        else {
            panic!()
        };
        assert!(c.addr.params().contains(b"unknownparam"));
        assert!(c.addr.uri().unwrap().as_sip().unwrap().params().is_empty());
        // ... and in cparam02 a url-param.
        let ContactValue::Addr(c) =
            ContactValue::parse(b"<sip:+19725552222@gw1.example.net;unknownparam>").unwrap()
        else {
            panic!()
        };
        assert!(!c.addr.params().contains(b"unknownparam"));
        let u = c.addr.uri().unwrap();
        assert!(u.as_sip().unwrap().params().contains(b"unknownparam"));
        // scalar02: an overlarge expires saturates.
        let ContactValue::Addr(c) =
            ContactValue::parse(b"<sip:user@host129.example.com>\r\n  ;expires=280297596632815")
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(c.expires, Some(u32::MAX));
        for bad in [
            &b"<sip:a@b>;q=2"[..],
            b"<sip:a@b>;q=0.1234",
            b"<sip:a@b>;reg-id=x",
            b"<sip:a@b>;q",
        ] {
            assert!(ContactValue::parse(bad).is_err());
        }
    }

    #[test]
    fn qvalues() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"0", Some(0)),
            (b"0.", Some(0)),
            (b"0.5", Some(500)),
            (b"0.33", Some(330)),
            (b"0.001", Some(1)),
            (b"1", Some(1000)),
            (b"1.000", Some(1000)),
            (b"1.001", None),
            (b"2", None),
            (b".5", None),
            (b"0.5x", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_qvalue(v), *want, "{:?}", String::from_utf8_lossy(v));
        }
    }
}
