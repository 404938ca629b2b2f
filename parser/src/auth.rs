//! Authorization, Proxy-Authorization, WWW-Authenticate and
//! Proxy-Authenticate (RFC 3261 §20.7, §20.27, §20.28, §20.44; RFC 7616,
//! RFC 8760): the scheme, its comma-separated parameters (token or quoted
//! values), and the Digest parameters by name. An unknown scheme is kept
//! raw (RFC 4475 `regaut01`: a proxy forwards it unmodified).

use crate::error::{Error, ErrorKind};
use crate::header::HeaderKind;
use crate::scan::{self, List, PResult, Pos, is_token, quoted_end};

/// Credentials or a challenge: `scheme LWS params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth<'a> {
    /// The scheme as written (`Digest`).
    pub scheme: &'a [u8],
    /// Everything after the scheme, as written.
    pub params_raw: &'a [u8],
}

/// One `name=value` auth parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthParam<'a> {
    /// The name as written.
    pub name: &'a [u8],
    /// The value without quotes (quoted-pairs kept as written; see
    /// [`crate::unquote_pairs`]).
    pub value: &'a [u8],
    /// Whether the value was a quoted string.
    pub quoted: bool,
}

/// The Digest parameters, by name (values without quotes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest<'a> {
    /// `username`.
    pub username: Option<&'a [u8]>,
    /// `realm`.
    pub realm: Option<&'a [u8]>,
    /// `nonce`.
    pub nonce: Option<&'a [u8]>,
    /// `uri` (digest-uri).
    pub uri: Option<&'a [u8]>,
    /// `response`.
    pub response: Option<&'a [u8]>,
    /// `algorithm` (MD5, SHA-256, ...).
    pub algorithm: Option<&'a [u8]>,
    /// `cnonce`.
    pub cnonce: Option<&'a [u8]>,
    /// `opaque`.
    pub opaque: Option<&'a [u8]>,
    /// `qop` (a list in a challenge, one value in credentials).
    pub qop: Option<&'a [u8]>,
    /// `nc` (8 hex digits).
    pub nc: Option<&'a [u8]>,
    /// `stale` (challenges).
    pub stale: Option<&'a [u8]>,
    /// `domain` (challenges).
    pub domain: Option<&'a [u8]>,
    /// `userhash` (RFC 7616).
    pub userhash: Option<&'a [u8]>,
}

impl<'a> Auth<'a> {
    /// Parses one header value of the four auth headers. Digest
    /// parameters are validated; other schemes are kept raw.
    pub fn parse(s: &'a [u8]) -> Result<Auth<'a>, Error> {
        Auth::parse_inner(s)
            .map_err(|p| Error::at(ErrorKind::BadHeader(HeaderKind::Authorization), p, s))
    }

    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<Auth<'a>> {
        let s = scan::trim(s);
        let se = scan::run(s, 0, is_token);
        if se == 0 || (se < s.len() && !scan::is_lws(s[se])) {
            return Err(Pos::of(s));
        }
        let auth = Auth {
            scheme: &s[..se],
            params_raw: scan::trim(&s[se..]),
        };
        if auth.is_digest() && !auth.params_raw.is_empty() {
            for p in List::new(auth.params_raw) {
                parse_param(p)?;
            }
        }
        Ok(auth)
    }

    /// Whether the scheme is Digest.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"Digest")
    }

    /// The parameters (those that parse as `name=value`).
    pub fn params(&self) -> impl Iterator<Item = AuthParam<'a>> + 'a {
        List::new(self.params_raw).filter_map(|p| parse_param(p).ok())
    }

    /// The parameter `name` (case-insensitive).
    pub fn param(&self, name: &[u8]) -> Option<AuthParam<'a>> {
        self.params().find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The Digest parameters (`None` for another scheme).
    pub fn digest(&self) -> Option<Digest<'a>> {
        if !self.is_digest() {
            return None;
        }
        const NAMES: [&[u8]; 13] = [
            b"username",
            b"realm",
            b"nonce",
            b"uri",
            b"response",
            b"algorithm",
            b"cnonce",
            b"opaque",
            b"qop",
            b"nc",
            b"stale",
            b"domain",
            b"userhash",
        ];
        let mut v: [Option<&'a [u8]>; 13] = [None; 13];
        for p in self.params() {
            if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(p.name)) {
                v[i] = v[i].or(Some(p.value));
            }
        }
        let [
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            stale,
            domain,
            userhash,
        ] = v;
        let d = Digest {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
            stale,
            domain,
            userhash,
        };
        Some(d)
    }
}

/// `name LWS? = LWS? (token / quoted-string)`.
fn parse_param(p: &[u8]) -> PResult<AuthParam<'_>> {
    let ne = scan::run(p, 0, is_token);
    let eq = scan::skip_lws(p, ne);
    if ne == 0 || p.get(eq) != Some(&b'=') {
        return Err(Pos::of(p));
    }
    let vs = scan::skip_lws(p, eq + 1);
    if p.get(vs) == Some(&b'"') {
        let ve = quoted_end(p, vs).ok_or(Pos::of(&p[vs..]))?;
        if ve != p.len() {
            return Err(Pos::of(&p[ve..]));
        }
        return Ok(AuthParam {
            name: &p[..ne],
            value: &p[vs + 1..ve - 1],
            quoted: true,
        });
    }
    let value = &p[vs..];
    if !scan::is_token_str(value) && !value.iter().all(|&b| is_token(b) || b == b'/' || b == b'=') {
        return Err(Pos::of(value));
    }
    if value.is_empty() {
        return Err(Pos::of(value));
    }
    Ok(AuthParam {
        name: &p[..ne],
        value,
        quoted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_credentials_and_challenges() {
        let a = Auth::parse(b"Digest username=\"bob\", realm=\"biloxi.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5").unwrap();
        assert!(a.is_digest());
        let d = a.digest().unwrap();
        assert_eq!(d.username, Some(&b"bob"[..]));
        assert_eq!(d.realm, Some(&b"biloxi.com"[..]));
        assert_eq!(d.uri, Some(&b"sip:bob@biloxi.com"[..]));
        assert_eq!(d.qop, Some(&b"auth"[..]));
        assert_eq!(d.nc, Some(&b"00000001"[..]));
        assert_eq!(d.algorithm, Some(&b"MD5"[..]));
        assert_eq!(a.params().count(), 10);
        assert!(a.param(b"CNONCE").unwrap().quoted);

        let c = Auth::parse(b"Digest realm=\"atlanta.com\", domain=\"sip:ss1.carrier.com\", qop=\"auth,auth-int\", nonce=\"f84f1cec41e6cbe5aea9c8e88d359\", opaque=\"\", stale=FALSE, algorithm=SHA-256").unwrap();
        let d = c.digest().unwrap();
        assert_eq!(d.qop, Some(&b"auth,auth-int"[..]));
        assert_eq!(d.opaque, Some(&b""[..]));
        assert_eq!(d.stale, Some(&b"FALSE"[..]));

        // Escaped quote inside a quoted value.
        let a = Auth::parse(b"Digest username=\"a\\\"b\", realm=\"r\"").unwrap();
        let u = a.digest().unwrap().username.unwrap();
        assert_eq!(scan::unquote_pairs(u).collect::<Vec<u8>>(), b"a\"b");

        // RFC 4475 regaut01: an unknown scheme is kept raw.
        let a = Auth::parse(b"NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert_eq!(a.scheme, b"NoOneKnowsThisScheme");
        assert_eq!(a.params_raw, b"opaque-data=here");
        assert!(a.digest().is_none());
        assert!(Auth::parse(b"Bearer abc.def-ghi~").is_ok());
    }

    #[test]
    fn malformed_digest() {
        for bad in [
            &b""[..],
            b"Digest username",
            b"Digest username=\"bob",
            b"Digest username=\"bob\"x",
            b"Digest realm=",
            b"Digest ,",
            b"Digest a=b,,c=d",
            b"\"Digest\" a=b",
        ] {
            assert!(
                Auth::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Auth::parse(b"Digest").is_ok());
    }
}
