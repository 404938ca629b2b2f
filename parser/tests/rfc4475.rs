//! RFC 4475 torture tests: every message in tests/data/rfc4475 behaves as
//! EXPECTED.tsv says. `valid` messages parse, every typed view reads them,
//! and the views give what the RFC text describes; `invalid` messages are
//! rejected or flagged with the reason the RFC names. The files are checked
//! against SHA256SUMS first, so they are provably the RFC's bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use sipring_parser::{
    ContactValue, Error, ErrorKind, HeaderKind, HostKind, Lint, Message, Method, StartLine,
    StreamItem, Transport, Uri, unescape, unquote_pairs,
};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every typed view of a message; the first error, if any.
fn all_views(m: &Message<'_>) -> Result<(), Error> {
    if m.is_request() {
        m.request_uri()?;
    }
    m.routing()?;
    for v in m.vias() {
        v?;
    }
    for kind in [HeaderKind::From, HeaderKind::To] {
        if m.has(kind) {
            let a = if kind == HeaderKind::From {
                m.from()?
            } else {
                m.to()?
            };
            a.uri()?;
        }
    }
    m.call_id()?;
    m.cseq()?;
    m.max_forwards()?;
    for c in m.contacts() {
        if let ContactValue::Addr(c) = c? {
            c.addr.uri()?;
        }
    }
    for kind in [HeaderKind::Route, HeaderKind::RecordRoute, HeaderKind::Path] {
        for a in m.addrs(kind) {
            a?.uri()?;
        }
    }
    m.content_type()?;
    m.expires()?;
    m.min_expires()?;
    for kind in [
        HeaderKind::Require,
        HeaderKind::ProxyRequire,
        HeaderKind::Supported,
        HeaderKind::Unsupported,
    ] {
        let _ = m.option_tags(kind).count();
    }
    for kind in [
        HeaderKind::Authorization,
        HeaderKind::ProxyAuthorization,
        HeaderKind::WwwAuthenticate,
        HeaderKind::ProxyAuthenticate,
    ] {
        for a in m.auths(kind) {
            let _ = a?.digest();
        }
    }
    Ok(())
}

fn parse(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn views_ok(name: &str, bytes: &[u8]) {
    let m = parse(bytes);
    if let Err(e) = all_views(&m) {
        panic!("{name}: a view failed: {e}");
    }
}

fn sip_user<'a>(u: &Uri<'a>) -> &'a [u8] {
    u.as_sip().and_then(|s| s.user).unwrap_or_default()
}

/// The checks the RFC text names, per valid message.
fn check_valid(name: &str, b: &[u8]) {
    views_ok(name, b);
    let m = parse(b);
    match name {
        "wsinv" => {
            let r = m.routing().unwrap();
            assert_eq!(r.to_tag, Some(&b"1918181833n"[..]));
            assert_eq!(r.from_tag, Some(&b"98asjd8"[..]));
            assert_eq!(r.max_forwards, Some(68));
            assert_eq!((r.cseq.number, r.cseq.method), (9, Method::Invite));
            let dn = m.from().unwrap().display_name.unwrap();
            assert_eq!(dn.unescaped().collect::<Vec<u8>>(), b"J Rosenberg \\\"");
            assert_eq!(m.content_length(), Some(150));
            assert_eq!(m.body().len(), 150);
            let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
            let hosts: Vec<&[u8]> = vias.iter().map(|v| v.host.raw).collect();
            assert_eq!(
                hosts,
                vec![
                    &b"192.0.2.2"[..],
                    b"spindle.example.com",
                    b"192.168.255.111"
                ]
            );
            assert_eq!(vias[1].transport, Transport::Tcp);
            assert_eq!(vias[2].branch, Some(&b"z9hG4bK30239"[..]));
            // Compact and folded headers: `s :` is an empty Subject, `v:`
            // a Via, `m:` a Contact.
            assert_eq!(m.header(HeaderKind::Subject).unwrap().value, b"");
            let nf = m.headers_named(b"NewFangledHeader").next().unwrap();
            assert_eq!(nf.value, b"newfangled value\r\n continued newfangled value");
            let Some(Ok(ContactValue::Addr(c))) = m.contacts().next() else {
                panic!()
            };
            assert_eq!(
                c.addr.display_name.unwrap().text(),
                b"Quoted string \\\"\\\""
            );
            assert_eq!(c.q, Some(330));
            assert_eq!(c.addr.param(b"newparam"), Some(Some(&b"newvalue"[..])));
            assert!(c.addr.params().contains(b"secondparam"));
            let route = m.routes().next().unwrap().unwrap().uri().unwrap();
            assert!(route.as_sip().unwrap().lr());
            let ruri = m.request_uri().unwrap();
            assert!(ruri.as_sip().unwrap().params().contains(b"unknownparam"));
            assert!(m.lints().contains(Lint::Folded));
        }
        "intmeth" => {
            let method = m.method().unwrap();
            assert_eq!(
                method,
                Method::Other(b"!interesting-Method0123456789_*+`.%indeed'~")
            );
            assert_eq!(m.cseq().unwrap().method, method);
            let v = m.top_via().unwrap();
            assert_eq!(v.branch, Some(&b"z9hG4bK-.!%66*_+`'~"[..]));
            let to = m.to().unwrap();
            let dn: Vec<u8> = to.display_name.unwrap().unescaped().collect();
            assert_eq!(dn, b"BEL:\x07 NUL:\x00 DEL:\x7f");
            assert_eq!(
                m.call_id().unwrap(),
                b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
            );
            let u = m.request_uri().unwrap();
            let s = u.as_sip().unwrap();
            assert_eq!(
                s.user,
                Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
            );
            assert_eq!(
                s.password,
                Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
            );
            let ext = m
                .headers_named(b"extensionHeader-!.%*+_`'~")
                .next()
                .unwrap();
            assert!(std::str::from_utf8(ext.value).is_ok());
        }
        "esc01" => {
            let u = m.request_uri().unwrap();
            assert_eq!(
                unescape(sip_user(&u)).collect::<Vec<u8>>(),
                b"sips:user@example.com"
            );
            let to = m.to().unwrap().uri().unwrap();
            let user = Uri::parse(b"sip:user@example.com").unwrap();
            assert!(to.as_sip().unwrap().user_eq(user.as_sip().unwrap()));
            let from = m.from().unwrap().uri().unwrap();
            assert_eq!(
                unescape(sip_user(&from)).collect::<Vec<u8>>(),
                b"I have spaces"
            );
            let Some(Ok(ContactValue::Addr(c))) = m.contacts().next() else {
                panic!()
            };
            let cu = c.addr.uri().unwrap();
            let cu = cu.as_sip().unwrap();
            assert_eq!(unescape(cu.user.unwrap()).collect::<Vec<u8>>(), b"caller");
            assert!(cu.lr(), "%6C%72 is lr");
            let v = cu.params().get(b"name").unwrap().value.unwrap();
            // Decoded once: value%41, never valueA.
            assert_eq!(unescape(v).collect::<Vec<u8>>(), b"value%41");
            assert_eq!(m.header(HeaderKind::ContentType).unwrap().name, b"C");
        }
        "escnull" => {
            let to = m.to().unwrap().uri().unwrap();
            assert_eq!(
                unescape(sip_user(&to)).collect::<Vec<u8>>(),
                b"null-\x00-null"
            );
            let users: Vec<Uri<'_>> = m
                .contacts()
                .map(|c| match c.unwrap() {
                    ContactValue::Addr(c) => c.addr.uri().unwrap(),
                    ContactValue::Star => panic!(),
                })
                .collect();
            assert_eq!(users.len(), 2);
            assert!(
                !users[0]
                    .as_sip()
                    .unwrap()
                    .user_eq(users[1].as_sip().unwrap())
            );
            assert_eq!(unescape(sip_user(&users[0])).collect::<Vec<u8>>(), b"\x00");
            assert_eq!(
                unescape(sip_user(&users[1])).collect::<Vec<u8>>(),
                b"\x00\x00"
            );
        }
        "esc02" => {
            assert_eq!(m.method(), Some(Method::Other(b"RE%47IST%45R")));
            assert_eq!(m.cseq().unwrap().method, Method::Other(b"RE%47IST%45R"));
            assert_eq!(m.contacts().count(), 2);
            assert_eq!(m.headers_named(b"C%6Fntact").count(), 1);
            assert_eq!(m.to().unwrap().display_name.unwrap().text(), b"%Z%45");
        }
        "lwsdisp" => {
            assert_eq!(m.from().unwrap().display_name.unwrap().raw, b"caller");
        }
        "longreq" => {
            assert_eq!(b.len(), 3515);
            assert!(m.vias().count() >= 10);
            assert!(m.call_id().unwrap().len() > 100);
            let to = m.to().unwrap();
            assert!(to.display_name.unwrap().text().len() > 80);
            let u = to.uri().unwrap();
            assert_eq!(u.as_sip().unwrap().port, Some(6000));
        }
        "dblreq" => {
            assert_eq!(m.method(), Some(Method::Register));
            assert!(m.lints().contains(Lint::TrailingOctets));
            assert!(m.consumed() < b.len());
            assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
            assert!(m.body().is_empty());
            let mut out = Vec::new();
            m.write(&[], &mut out);
            assert!(!out.windows(6).any(|w| w == b"INVITE"), "never forwarded");
        }
        "semiuri" => {
            let u = m.request_uri().unwrap();
            let s = u.as_sip().unwrap();
            assert_eq!(s.user, Some(&b"user;par=u%40example.net"[..]));
            assert_eq!(s.host.raw, b"example.com");
            assert!(s.params().is_empty());
            assert_eq!(m.values(HeaderKind::Accept).count(), 6);
        }
        "transports" => {
            let t: Vec<Transport<'_>> = m.vias().map(|v| v.unwrap().transport).collect();
            assert_eq!(
                t,
                vec![
                    Transport::Udp,
                    Transport::Sctp,
                    Transport::Tls,
                    Transport::Other(b"UNKNOWN"),
                    Transport::Tcp
                ]
            );
        }
        "mpart01" => {
            assert_eq!(m.content_length(), Some(553));
            assert_eq!(m.body().len(), 553);
            assert!(m.body().contains(&0));
            let ct = m.content_type().unwrap().unwrap();
            assert!(ct.is(b"multipart", b"mixed"));
            assert!(ct.params().get(b"boundary").is_some());
        }
        "unreason" => {
            let StartLine::Response(s) = m.start_line() else {
                panic!()
            };
            assert_eq!(s.code, 200);
            assert!(std::str::from_utf8(s.reason).is_ok());
            assert!(s.reason.len() > 20);
        }
        "noreason" => {
            let StartLine::Response(s) = m.start_line() else {
                panic!()
            };
            assert_eq!((s.code, s.reason), (100, &b""[..]));
            assert!(m.lints().is_empty());
        }
        "unkscm" | "novelsc" => {
            let Uri::Absolute(a) = m.request_uri().unwrap() else {
                panic!("opaque URI")
            };
            let want: &[u8] = if name == "unkscm" {
                b"nobodyKnowsThisScheme"
            } else {
                b"soap.beep"
            };
            assert_eq!(a.scheme, want);
        }
        "unksm2" => {
            assert_eq!(m.to().unwrap().uri().unwrap().scheme(), b"isbn");
            assert_eq!(m.from().unwrap().uri().unwrap().scheme(), b"http");
            let Some(Ok(ContactValue::Addr(c))) = m.contacts().next() else {
                panic!()
            };
            assert_eq!(c.addr.uri().unwrap().scheme(), b"name");
        }
        "bext01" => {
            assert_eq!(
                m.require().collect::<Vec<_>>(),
                vec![&b"nothingSupportsThis"[..], b"nothingSupportsThisEither"]
            );
            assert_eq!(
                m.proxy_require().collect::<Vec<_>>(),
                vec![&b"noProxiesSupportThis"[..], b"norDoAnyProxiesSupportThis"]
            );
        }
        "invut" => {
            let ct = m.content_type().unwrap().unwrap();
            assert!(ct.is(b"application", b"unknownformat"));
        }
        "regaut01" => {
            let a = m.authorizations().next().unwrap().unwrap();
            assert_eq!(a.scheme, b"NoOneKnowsThisScheme");
            assert!(a.digest().is_none());
            assert_eq!(a.params_raw, b"opaque-data=here");
        }
        "bcast" => {
            let v = m.vias().nth(1).unwrap().unwrap();
            assert_eq!(
                v.host.kind,
                HostKind::Ipv4("255.255.255.255".parse().unwrap())
            );
        }
        "zeromf" => assert_eq!(m.max_forwards(), Ok(Some(0))),
        "cparam01" | "cparam02" => {
            let Some(Ok(ContactValue::Addr(c))) = m.contacts().next() else {
                panic!()
            };
            let u = c.addr.uri().unwrap();
            let in_uri = u.as_sip().unwrap().params().contains(b"unknownparam");
            let in_header = c.addr.params().contains(b"unknownparam");
            assert_eq!(
                (in_uri, in_header),
                (name == "cparam02", name == "cparam01")
            );
        }
        "regescrt" => {
            let Some(Ok(ContactValue::Addr(c))) = m.contacts().next() else {
                panic!()
            };
            let u = c.addr.uri().unwrap();
            let h: Vec<_> = u.as_sip().unwrap().headers().collect();
            assert_eq!(h, vec![(&b"Route"[..], &b"%3Csip:sip.example.com%3E"[..])]);
        }
        "sdp01" => {
            assert_eq!(
                m.values(HeaderKind::Accept).next(),
                Some(&b"text/nobodyKnowsThis"[..])
            );
        }
        "inv2543" => {
            assert!(m.lints().contains(Lint::MissingContentLength));
            assert_eq!(m.content_length(), None);
            assert_eq!(m.body().len(), 105);
            let r = m.routing().unwrap();
            assert_eq!(r.via.branch, None);
            assert!(!r.via.has_rfc3261_branch());
            assert_eq!(r.from_tag, None);
            assert_eq!(r.max_forwards, None);
        }
        other => panic!("no check written for valid message {other}"),
    }
}

/// How each invalid message is rejected or flagged, per the RFC's reason.
fn check_invalid(name: &str, b: &[u8]) {
    let rejected = |kind: ErrorKind| {
        let e = Message::parse(b).expect_err(name);
        assert_eq!(e.kind(), kind, "{name}");
        e
    };
    let views = |kind: ErrorKind| {
        let m = parse(b);
        let e = all_views(&m).expect_err(name);
        assert_eq!(e.kind(), kind, "{name}: {e}");
        assert!(e.offset() < b.len());
        e
    };
    match name {
        "badinv01" => {
            views(ErrorKind::BadHeader(HeaderKind::Via));
            let m = parse(b);
            assert!(m.contacts().next().unwrap().is_err(), "Contact ;;;; too");
        }
        "clerr" => {
            let e = rejected(ErrorKind::ContentLengthTooLarge);
            assert!(e.is_framing() && e.is_answerable() && e.status() == 400);
            // Over TCP: wait for more data.
            assert!(matches!(
                Message::parse_stream(b, 65_535),
                Ok(StreamItem::Partial)
            ));
        }
        "ncl" | "mcl01" => {
            let kind = if name == "ncl" {
                ErrorKind::BadContentLength
            } else {
                ErrorKind::ConflictingContentLength
            };
            let e = rejected(kind);
            assert!(e.is_framing());
            // Over TCP: close the connection.
            assert_eq!(Message::parse_stream(b, 65_535).unwrap_err().kind(), kind);
        }
        "scalar02" => {
            views(ErrorKind::BadHeader(HeaderKind::CSeq));
            let m = parse(b);
            // The liberal part: Max-Forwards 300 and a huge Expires read.
            assert_eq!(m.max_forwards(), Ok(Some(300)));
            assert_eq!(m.expires(), Ok(Some(u32::MAX)));
        }
        "scalarlg" => {
            let e = views(ErrorKind::BadHeader(HeaderKind::CSeq));
            assert!(
                !parse(b).is_request() && !e.is_answerable(),
                "a response: discard"
            );
        }
        "quotbal" => {
            views(ErrorKind::BadHeader(HeaderKind::To));
        }
        "ltgtruri" => {
            let e = views(ErrorKind::BadRequestUri);
            assert_eq!(e.status(), 400);
        }
        "lwsruri" => {
            rejected(ErrorKind::BadRequestUri);
        }
        "lwsstart" | "trws" => {
            let m = parse(b);
            let lint = if name == "lwsstart" {
                Lint::RequestLineExtraSpace
            } else {
                Lint::RequestLineTrailingSpace
            };
            assert_eq!(m.lints().first_violation(), Some(lint));
            all_views(&m).unwrap();
        }
        "escruri" => {
            let m = parse(b);
            let u = m.request_uri().unwrap();
            let s = u.as_sip().unwrap();
            assert!(s.has_headers(), "flagged: headers in the Request-URI");
            assert_eq!(s.without_headers(), b"sip:user@example.com");
        }
        "baddate" => {
            // Liberal reading: Date is not interpreted by a proxy.
            views_ok(name, b);
            assert!(parse(b).header(HeaderKind::Date).is_some());
        }
        "regbadct" => {
            views(ErrorKind::BadHeader(HeaderKind::Contact));
        }
        "badaspec" => {
            let m = parse(b);
            let to = m.to().unwrap();
            assert!(to.lints.contains(Lint::SpaceInAngleBrackets));
            assert_eq!(to.uri_raw, b"sip:t.watson@example.org");
        }
        "baddn" => {
            let e = rejected(ErrorKind::MissingEmptyLine);
            assert!(e.is_answerable());
            let s = Message::salvage(b).unwrap();
            assert_eq!(
                s.from().unwrap_err().kind(),
                ErrorKind::BadHeader(HeaderKind::From)
            );
            assert_eq!(
                s.to().unwrap_err().kind(),
                ErrorKind::BadHeader(HeaderKind::To)
            );
        }
        "badvers" => {
            let e = rejected(ErrorKind::VersionNotSupported);
            assert_eq!((e.status(), e.reason()), (505, "Version Not Supported"));
            assert!(e.is_answerable());
            let s = Message::salvage(b).unwrap();
            assert!(s.top_via().is_ok());
        }
        "mismatch01" | "mismatch02" => {
            views(ErrorKind::CSeqMethodMismatch);
        }
        "bigcode" => {
            let e = rejected(ErrorKind::BadStatusCode);
            assert!(!e.is_answerable(), "a response: drop");
        }
        "badbranch" => {
            let m = parse(b);
            all_views(&m).unwrap();
            let v = m.top_via().unwrap();
            assert_eq!(v.branch, Some(&b"z9hG4bK"[..]));
            assert!(!v.has_rfc3261_branch(), "flagged: no transaction id");
        }
        "insuf" => {
            let e = views(ErrorKind::MissingHeader(HeaderKind::CallId));
            assert_eq!(e.reason(), "Missing Call-ID Header");
            let m = parse(b);
            assert!(!m.has(HeaderKind::From) && !m.has(HeaderKind::To));
        }
        "multi01" => {
            let e = views(ErrorKind::DuplicateHeader(HeaderKind::CallId));
            assert_eq!(e.reason(), "Multiple Call-ID Headers");
            let m = parse(b);
            for k in [
                HeaderKind::To,
                HeaderKind::From,
                HeaderKind::MaxForwards,
                HeaderKind::CSeq,
            ] {
                assert!(m.single(k).is_err(), "{k:?}");
            }
        }
        other => panic!("no check written for invalid message {other}"),
    }
}

#[test]
fn files_are_the_rfc_bytes() {
    let sums = String::from_utf8(read("SHA256SUMS")).unwrap();
    let mut n = 0;
    for line in sums.lines() {
        let (hash, file) = line.split_once("  ").unwrap();
        let digest = Sha256::digest(read(file));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, hash, "{file} differs from the RFC archive");
        n += 1;
    }
    assert_eq!(n, 50);
}

#[test]
fn every_message_behaves_as_expected() {
    let tsv = String::from_utf8(read("EXPECTED.tsv")).unwrap();
    let mut rows = tsv.lines();
    let header: Vec<&str> = rows.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_name, c_file, c_expect) = (col("name"), col("file"), col("expect"));
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        let f: Vec<&str> = row.split('\t').collect();
        let (name, file, expect) = (f[c_name], f[c_file], f[c_expect]);
        let bytes = read(file);
        match expect {
            "valid" => check_valid(name, &bytes),
            "invalid" => check_invalid(name, &bytes),
            _ => {
                // test.dat: not a torture test; it must only not break us.
                assert_eq!(name, "test");
                let _ = Message::parse(&bytes);
                continue;
            }
        }
        *counts.entry(expect).or_default() += 1;
    }
    assert_eq!(counts.get("valid"), Some(&26));
    assert_eq!(counts.get("invalid"), Some(&23));
}

#[test]
fn round_trip_without_edits() {
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "dat") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let Some(m) = Message::parse(&bytes)
            .ok()
            .or_else(|| Message::salvage(&bytes))
        else {
            continue;
        };
        let mut out = Vec::new();
        m.write(&[], &mut out);
        assert_eq!(out, m.as_bytes(), "{path:?}");
        if !m.lints().contains(Lint::TrailingOctets) {
            assert_eq!(out, bytes, "{path:?}");
        }
    }
}

#[test]
fn liberal_payloads_unescape_quoted_pairs() {
    let b = read("intmeth.dat");
    let m = parse(&b);
    let raw = m.to().unwrap().display_name.unwrap().text();
    assert!(unquote_pairs(raw).any(|c| c == 0));
}
