//! Small typed views: methods, CSeq, Call-ID, Content-Type, numeric
//! headers (Max-Forwards, Expires, Min-Expires, Content-Length).

use crate::error::{Error, ErrorKind};
use crate::header::HeaderKind;
use crate::scan::{self, PResult, Params, Pos, each_param, is_token, is_word};

/// A request method. Methods are case-sensitive (RFC 3261 §7.1): `invite`
/// is an extension method, and so is `RE%47IST%45R` (RFC 4475 `esc02`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// OPTIONS.
    Options,
    /// REGISTER.
    Register,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// INFO (RFC 6086).
    Info,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// UPDATE (RFC 3311).
    Update,
    /// Any other token.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Classifies a method token (no validation).
    pub fn from_bytes(m: &'a [u8]) -> Method<'a> {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => Method::Other(m),
        }
    }

    /// The method as text.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Update => b"UPDATE",
            Method::Other(m) => m,
        }
    }
}

/// CSeq: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (must fit 32 bits; RFC 4475 `scalar02`).
    pub number: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &'a [u8]) -> Result<CSeq<'a>, Error> {
        CSeq::parse_inner(s).map_err(|p| Error::at(ErrorKind::BadHeader(HeaderKind::CSeq), p, s))
    }

    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<CSeq<'a>> {
        let s = scan::trim(s);
        let de = scan::run(s, 0, |b| b.is_ascii_digit());
        let number = scan::parse_u32(&s[..de]).ok_or(Pos::of(s))?;
        let ms = scan::skip_lws(s, de);
        if ms == de || ms == s.len() {
            return Err(Pos::of(&s[de..]));
        }
        let m = &s[ms..];
        if !scan::is_token_str(m) {
            return Err(Pos::of(m));
        }
        Ok(CSeq {
            number,
            method: Method::from_bytes(m),
        })
    }
}

/// Validates a Call-ID: `word [ "@" word ]`.
pub(crate) fn call_id(s: &[u8]) -> PResult<&[u8]> {
    let s = scan::trim(s);
    // Word characters around at most one '@', neither side empty: a run
    // of words, then at most '@' and another run.
    let a = scan::run(s, 0, is_word);
    if a == s.len() {
        return if s.is_empty() { Err(Pos::of(s)) } else { Ok(s) };
    }
    if s[a] != b'@' {
        return Err(Pos::of(&s[a..]));
    }
    let b = scan::run(s, a + 1, is_word);
    if b < s.len() {
        return Err(Pos::of(&s[b..]));
    }
    if a == 0 || a + 1 == s.len() {
        return Err(Pos::of(s));
    }
    Ok(s)
}

/// A delta-seconds or count value: 1*DIGIT, saturating at u32::MAX when
/// `saturate` (Expires), else it must fit 32 bits.
pub(crate) fn number(s: &[u8], saturate: bool) -> PResult<u32> {
    let t = scan::trim(s);
    let v = if saturate {
        scan::parse_u32_saturating(t)
    } else {
        scan::parse_u32(t)
    };
    v.ok_or(Pos::of(t))
}

/// A Content-Type: `type/subtype;params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// The type (`application`).
    pub kind: &'a [u8],
    /// The subtype (`sdp`).
    pub subtype: &'a [u8],
    params: &'a [u8],
}

impl<'a> MediaType<'a> {
    /// Parses `m-type SLASH m-subtype *(SEMI m-parameter)`.
    pub fn parse(s: &'a [u8]) -> Result<MediaType<'a>, Error> {
        MediaType::parse_inner(s)
            .map_err(|p| Error::at(ErrorKind::BadHeader(HeaderKind::ContentType), p, s))
    }

    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<MediaType<'a>> {
        let s = scan::trim(s);
        let te = scan::run(s, 0, is_token);
        let sl = scan::skip_lws(s, te);
        if te == 0 || s.get(sl) != Some(&b'/') {
            return Err(Pos::of(s));
        }
        let ss = scan::skip_lws(s, sl + 1);
        let se = scan::run(s, ss, is_token);
        if se == ss {
            return Err(Pos::of(&s[ss..]));
        }
        let params = &s[se..];
        each_param(params, |_| Ok(()))?;
        Ok(MediaType {
            kind: &s[..te],
            subtype: &s[ss..se],
            params,
        })
    }

    /// Whether it is `kind/subtype` (case-insensitive).
    pub fn is(&self, kind: &[u8], subtype: &[u8]) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// The parameters (`;boundary=...`).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // case tables
mod tests {
    use super::*;

    #[test]
    fn cseqs() {
        let cases: &[(&[u8], Option<(u32, Method<'_>)>)] = &[
            (b"314159 INVITE", Some((314_159, Method::Invite))),
            (b"0009\r\n  INVITE", Some((9, Method::Invite))),
            (b"4294967295 ACK", Some((u32::MAX, Method::Ack))),
            (b"8 RE%47IST%45R", Some((8, Method::Other(b"RE%47IST%45R")))),
            (b"36893488147419103232 REGISTER", None),
            (b"1INVITE", None),
            (b"1 ", None),
            (b"INVITE", None),
            (b"-1 INVITE", None),
            (b"1 INV ITE", None),
        ];
        for (s, want) in cases {
            let got = CSeq::parse(s).ok().map(|c| (c.number, c.method));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(s));
        }
        assert_eq!(Method::from_bytes(b"invite"), Method::Other(b"invite"));
        assert_eq!(Method::Register.as_bytes(), b"REGISTER");
    }

    #[test]
    fn call_ids() {
        for ok in [
            &b"a84b4c76e66710@pc33.atlanta.com"[..],
            b"x",
            b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        ] {
            assert!(call_id(ok).is_ok(), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [&b""[..], b"a b", b"@x", b"x@", b"a@b@c", b"\xff"] {
            assert!(call_id(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn media_types() {
        let m = MediaType::parse(b"multipart/signed;\r\n protocol=\"application/pkcs7-signature\";\r\n micalg=sha1; boundary=boundary42").unwrap();
        assert!(m.is(b"Multipart", b"SIGNED"));
        assert_eq!(
            m.params().get(b"boundary").unwrap().value,
            Some(&b"boundary42"[..])
        );
        assert!(MediaType::parse(b"application / sdp").is_ok());
        for bad in [
            &b"application"[..],
            b"/sdp",
            b"application/",
            b"a/b;",
            b"a/b c",
        ] {
            assert!(
                MediaType::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b" 0068 ", false), Ok(68));
        assert!(number(b"300x", false).is_err());
        assert_eq!(number(&[b'1'; 100], true), Ok(u32::MAX));
        assert!(number(&[b'1'; 100], false).is_err());
    }
}
