//! Unit tests of the index, the framing and the message-level views.
#![allow(clippy::type_complexity)] // case tables

use super::*;
use crate::{ContactValue, Rport, Transport};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bKx\r\n\
v: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKy;received=192.0.2.1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
f: \"Alice, A\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com>\r\n\
Record-Route: <sip:rr.example.com;lr>\r\n\
Proxy-Require: foo, bar\r\n\
Require: 100rel\r\n\
k: path, gruu\r\n\
m: <sip:alice@192.0.2.4>;expires=60, *\r\n\
c: application/sdp\r\n\
Expires: 120\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"atlanta.example.com\", nonce=\"n\", uri=\"sip:bob@biloxi.example.com\", response=\"r\"\r\n\
X-Custom: a\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\nTRAILING";

#[test]
fn index_and_views() {
    let m = Message::parse(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.header_count(), 19);
    assert!(m.lints().contains(Lint::Folded));
    assert!(m.lints().contains(Lint::TrailingOctets));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.as_bytes(), &INVITE[..INVITE.len() - 8]);
    assert_eq!(m.consumed(), INVITE.len() - 8);

    let StartLine::Request(rl) = m.start_line() else {
        panic!()
    };
    assert_eq!(rl.uri, b"sip:bob@biloxi.example.com;transport=tcp");
    assert_eq!(rl.version, b"SIP/2.0");
    let uri = m.request_uri().unwrap();
    assert_eq!(uri.as_sip().unwrap().transport(), Some(&b"tcp"[..]));

    let vias: Vec<Via<'_>> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].rport, Some(Rport::Requested));
    assert_eq!(
        (vias[1].transport, vias[1].port),
        (Transport::Tcp, Some(5070))
    );
    assert_eq!(vias[2].host.raw, b"[2001:db8::1]");
    assert_eq!(vias[2].received, Some(&b"192.0.2.1"[..]));

    let r = m.routing().unwrap();
    assert_eq!(r.via.branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(r.call_id, b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!((r.cseq.number, r.cseq.method), (314_159, Method::Invite));
    assert_eq!(r.from_tag, Some(&b"1928301774"[..]));
    assert_eq!(r.to_tag, None);
    assert_eq!(r.max_forwards, Some(70));
    assert_eq!(r.route.unwrap().uri_raw, b"sip:p1.example.com;lr");

    let routes: Vec<&[u8]> = m.routes().map(|r| r.unwrap().uri_raw).collect();
    assert_eq!(
        routes,
        vec![
            &b"sip:p1.example.com;lr"[..],
            b"sip:p2.example.com;lr",
            b"sip:p3.example.com"
        ]
    );
    assert_eq!(m.record_routes().count(), 1);
    assert_eq!(m.paths().count(), 0);
    assert_eq!(
        m.proxy_require().collect::<Vec<_>>(),
        vec![&b"foo"[..], b"bar"]
    );
    assert_eq!(m.require().collect::<Vec<_>>(), vec![&b"100rel"[..]]);
    assert_eq!(m.supported().count(), 2);
    assert_eq!(m.unsupported().count(), 0);
    let contacts: Vec<_> = m.contacts().map(Result::unwrap).collect();
    assert!(matches!(contacts[0], ContactValue::Addr(c) if c.expires == Some(60)));
    assert_eq!(contacts[1], ContactValue::Star);
    assert!(
        m.content_type()
            .unwrap()
            .unwrap()
            .is(b"application", b"sdp")
    );
    assert_eq!(m.expires(), Ok(Some(120)));
    assert_eq!(m.min_expires(), Ok(None));
    let auth = m.proxy_authorizations().next().unwrap().unwrap();
    assert_eq!(auth.digest().unwrap().username, Some(&b"alice"[..]));
    assert_eq!(m.authorizations().count(), 0);
    assert_eq!(m.from().unwrap().display_name.unwrap().text(), b"Alice, A");
    assert_eq!(m.headers_named(b"x-custom").next().unwrap().value, b"a");
    assert_eq!(m.headers_named(b"t").next().unwrap().name, b"To");
    let h = m.header(HeaderKind::CallId).unwrap();
    assert_eq!(h.name, b"i");
    assert_eq!(&INVITE[h.value_span.range()], h.value);
}

#[test]
fn responses() {
    let cases: &[(&[u8], Option<(u16, &[u8])>)] = &[
        (b"SIP/2.0 200 OK\r\n\r\n", Some((200, b"OK"))),
        (b"SIP/2.0 100 \r\n\r\n", Some((100, b""))),
        (b"SIP/2.0 100\r\n\r\n", Some((100, b""))),
        (
            b"SIP/2.0 699 Whatever it says\r\n\r\n",
            Some((699, b"Whatever it says")),
        ),
        (b"SIP/2.0 099 Low\r\n\r\n", None),
        (b"SIP/2.0 700 High\r\n\r\n", None),
        (b"SIP/2.0 4294967301 Big\r\n\r\n", None),
        (b"SIP/2.0 20 Short\r\n\r\n", None),
        (b"SIP/2.0 2000 Long\r\n\r\n", None),
        (b"SIP/2.0 200OK\r\n\r\n", None),
        (b"SIP/3.0 200 OK\r\n\r\n", None),
    ];
    for (msg, want) in cases {
        let got = Message::parse(msg).ok().map(|m| match m.start_line() {
            StartLine::Response(s) => (s.code, s.reason),
            StartLine::Request(_) => panic!(),
        });
        assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(msg));
    }
    let e = Message::parse(b"SIP/2.0 4294967301 Big\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadStatusCode);
    assert!(!e.is_answerable());
    let m = Message::parse(b"SIP/2.0 100\r\n\r\n").unwrap();
    assert!(m.lints().contains(Lint::StatusLineNoReasonSpace));
}

#[test]
fn request_lines() {
    use ErrorKind::*;
    let cases: &[(&[u8], Result<&[u8], ErrorKind>, Option<Lint>)] = &[
        (b"OPTIONS sip:a@b SIP/2.0", Ok(b"sip:a@b"), None),
        (b"OPTIONS sip:a@b sip/2.0", Ok(b"sip:a@b"), None),
        (
            b"INVITE  sip:a@b  SIP/2.0",
            Ok(b"sip:a@b"),
            Some(Lint::RequestLineExtraSpace),
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0  ",
            Ok(b"sip:a@b"),
            Some(Lint::RequestLineTrailingSpace),
        ),
        (b"INVITE sip:a@b; lr SIP/2.0", Err(BadRequestUri), None),
        (b"OPTIONS sip:a@b SIP/7.0", Err(VersionNotSupported), None),
        (b"OPTIONS sip:a@b SIP/2.1", Err(VersionNotSupported), None),
        (b"OPTIONS sip:a@b HTTP/1.1", Err(BadRequestLine), None),
        (b"OPTIONS sip:a@b", Err(BadRequestLine), None),
        (b"OPTIONS", Err(BadMethod), None),
        (b"OPTIONS ", Err(BadRequestLine), None),
        (b"OPT@IONS sip:a@b SIP/2.0", Err(BadMethod), None),
        (b" OPTIONS sip:a@b SIP/2.0", Err(BadStartLine), None),
        (b"\x00\x01", Err(BadStartLine), None),
    ];
    for (line, want, lint) in cases {
        let mut msg = line.to_vec();
        msg.extend_from_slice(b"\r\nVia: SIP/2.0/UDP h\r\n\r\n");
        let got = Message::parse(&msg);
        match (&got, want) {
            (Ok(m), Ok(uri)) => {
                assert_eq!(m.request_uri_raw(), Some(*uri));
                if let Some(l) = lint {
                    assert!(
                        m.lints().contains(*l),
                        "{:?}",
                        String::from_utf8_lossy(line)
                    );
                }
            }
            (Err(e), Err(k)) => {
                assert_eq!(e.kind(), *k, "{:?}", String::from_utf8_lossy(line));
                assert!(e.is_answerable());
                assert!(Message::salvage(&msg).is_some());
            }
            _ => panic!("{:?}: {got:?}", String::from_utf8_lossy(line)),
        }
    }
}

#[test]
fn header_lines() {
    // Compact forms, case, LWS before the colon, folding, empty values.
    let m = Message::parse(
        b"MESSAGE sip:a@b SIP/2.0\r\nTO :\r\n sip:a@b\r\nsubject:\r\nX-Empty:   \r\nv:SIP/2.0/UDP h\r\n\r\n",
    )
    .unwrap();
    let h: Vec<Header<'_>> = m.headers().collect();
    assert_eq!(h[0].kind, HeaderKind::To);
    assert_eq!(h[0].name, b"TO");
    assert_eq!(h[0].value, b"sip:a@b");
    assert_eq!((h[1].kind, h[1].value), (HeaderKind::Subject, &b""[..]));
    assert_eq!(h[2].value, b"");
    assert_eq!(h[3].value, b"SIP/2.0/UDP h");
    // Bare LF line ends are accepted and flagged.
    let m = Message::parse(b"BYE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nl: 2\n\nhi").unwrap();
    assert!(m.lints().contains(Lint::BareLf));
    assert_eq!(m.body(), b"hi");
    assert_eq!(m.top_via().unwrap().host.raw, b"h");
    // Lines that are not `name:`.
    for bad in [
        &b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFoobar roobar\r\n\r\n"[..],
        b"BYE sip:a@b SIP/2.0\r\n folded-first\r\nVia: SIP/2.0/UDP h\r\n\r\n",
        b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n: novalue\r\n\r\n",
        b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nNa me: x\r\n\r\n",
        b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\rX\r\n\r\n",
    ] {
        let e = Message::parse(bad).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::BadHeaderLine,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(e.is_answerable());
        let s = Message::salvage(bad).unwrap();
        assert!(s.top_via().is_ok());
    }
}

#[test]
fn datagram_framing() {
    use ErrorKind::*;
    let head = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n";
    let cases: &[(&[u8], &[u8], Result<&[u8], ErrorKind>)] = &[
        (b"Content-Length: 5\r\n\r\n", b"hello", Ok(b"hello")),
        (b"l: 5\r\n\r\n", b"hello world", Ok(b"hello")),
        (b"\r\n", b"to the end", Ok(b"to the end")),
        (b"Content-Length: 0\r\n\r\n", b"", Ok(b"")),
        (
            b"Content-Length: 6\r\n\r\n",
            b"hello",
            Err(ContentLengthTooLarge),
        ),
        (b"Content-Length: -1\r\n\r\n", b"", Err(BadContentLength)),
        (b"Content-Length: \r\n\r\n", b"", Err(BadContentLength)),
        (b"Content-Length: 1x\r\n\r\n", b"", Err(BadContentLength)),
        (
            b"Content-Length: 99999999999\r\n\r\n",
            b"",
            Err(BadContentLength),
        ),
        (
            b"Content-Length: 1\r\nl: 2\r\n\r\n",
            b"ab",
            Err(ConflictingContentLength),
        ),
        (b"Content-Length: 2\r\nl: 02\r\n\r\n", b"ab", Ok(b"ab")),
        (b"Content-Length: 0\r\n", b"", Err(MissingEmptyLine)),
        (b"Content-Length: 0", b"", Err(MissingEmptyLine)),
    ];
    for (headers, body, want) in cases {
        let mut msg = head.to_vec();
        msg.extend_from_slice(headers);
        msg.extend_from_slice(body);
        let got = Message::parse(&msg);
        match (&got, want) {
            (Ok(m), Ok(b)) => assert_eq!(m.body(), *b),
            (Err(e), Err(k)) => {
                assert_eq!(e.kind(), *k);
                assert!(e.is_framing());
                assert!(e.is_answerable());
            }
            _ => panic!("{:?}: {got:?}", String::from_utf8_lossy(&msg)),
        }
    }
    assert_eq!(Message::parse(b"").unwrap_err().kind(), Empty);
    assert_eq!(Message::parse(b"\r\n\r\n").unwrap_err().kind(), Empty);
    let m = Message::parse(b"\r\n\r\nBYE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n").unwrap();
    assert_eq!(m.span().start, 4);
    assert!(m.as_bytes().starts_with(b"BYE"));
    assert_eq!(
        Message::parse(b"BYE sip:a SIP/2.0").unwrap_err().kind(),
        BadStartLine
    );
}

fn frame(b: &[u8]) -> Result<StreamItem<'_>, Error> {
    Message::parse_stream(b, 65_535)
}

#[test]
fn stream_framing() {
    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nContent-Length: 5\r\n\r\nhello";
    assert!(matches!(frame(MSG), Ok(StreamItem::Message(m)) if m.consumed() == MSG.len()));
    for cut in 0..MSG.len() {
        assert!(
            matches!(frame(&MSG[..cut]), Ok(StreamItem::Partial)),
            "cut {cut}"
        );
    }
    let mut two = MSG.to_vec();
    two.extend_from_slice(MSG);
    assert!(matches!(frame(&two), Ok(StreamItem::Message(m)) if m.consumed() == MSG.len()));
    assert!(matches!(
        frame(b"\r\n\r\nOPTIONS"),
        Ok(StreamItem::KeepAlive { len: 4 })
    ));
    assert!(matches!(
        frame(b"\r\n\r\n"),
        Ok(StreamItem::KeepAlive { len: 4 })
    ));
    for p in [&b""[..], b"\r", b"\r\n", b"\r\n\r"] {
        assert!(matches!(frame(p), Ok(StreamItem::Partial)));
    }
    let mut lead = b"\r\n".to_vec();
    lead.extend_from_slice(MSG);
    assert!(
        matches!(frame(&lead), Ok(StreamItem::Message(m)) if m.consumed() == lead.len() && m.body() == b"hello")
    );
    // No Content-Length on a stream: an empty body, flagged.
    let m = b"BYE sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\nNEXT";
    let Ok(StreamItem::Message(msg)) = frame(m) else {
        panic!()
    };
    assert_eq!(msg.consumed(), m.len() - 4);
    assert!(msg.lints().contains(Lint::MissingContentLength));
    // A folded line at the end of the buffer may continue: wait.
    assert!(matches!(
        frame(b"BYE sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n"),
        Ok(StreamItem::Partial)
    ));
    // Framing errors close the connection.
    for bad in [
        &b"BYE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n"[..],
        b"BYE sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab",
        b"BYE sip:a SIP/2.0\r\nContent-Length: 99999\r\n\r\n",
    ] {
        assert!(frame(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        Message::parse_stream(&[b'a'; 100], 100).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
    // A framed but malformed message is skipped with its length.
    let bad = b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/2.0/TCP h\r\nContent-Length: 0\r\n\r\nX";
    match frame(bad) {
        Ok(StreamItem::Malformed { len, error }) => {
            assert_eq!(len, bad.len() - 1);
            assert_eq!(error.status(), 505);
            assert!(error.is_answerable());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn routing_errors() {
    let base = |extra: &str, drop: &str| {
        let mut s = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        for h in [
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:c@d>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: x@y",
            "CSeq: 1 OPTIONS",
            "Max-Forwards: 70",
        ] {
            if !h.starts_with(drop) || drop.is_empty() {
                s.push_str(h);
                s.push_str("\r\n");
            }
        }
        s.push_str(extra);
        s.push_str("\r\n");
        s.into_bytes()
    };
    use ErrorKind::*;
    let cases: &[(&str, &str, ErrorKind)] = &[
        ("", "Via", MissingHeader(HeaderKind::Via)),
        ("", "From", MissingHeader(HeaderKind::From)),
        ("", "To", MissingHeader(HeaderKind::To)),
        ("", "Call-ID", MissingHeader(HeaderKind::CallId)),
        ("", "CSeq", MissingHeader(HeaderKind::CSeq)),
        ("Call-ID: z\r\n", "", DuplicateHeader(HeaderKind::CallId)),
        ("t: <sip:e@f>\r\n", "", DuplicateHeader(HeaderKind::To)),
        (
            "Max-Forwards: 5\r\n",
            "",
            DuplicateHeader(HeaderKind::MaxForwards),
        ),
        ("CSeq: 2 INVITE\r\n", "CSeq", CSeqMethodMismatch),
        (
            "CSeq: 36893488147419103232 OPTIONS\r\n",
            "CSeq",
            BadHeader(HeaderKind::CSeq),
        ),
        (
            "Max-Forwards: x\r\n",
            "Max-Forwards",
            BadHeader(HeaderKind::MaxForwards),
        ),
        (
            "To: \"unterminated <sip:a@b>\r\n",
            "To",
            BadHeader(HeaderKind::To),
        ),
        (
            "Via: SIP/2.0/UDP h;;\r\n",
            "Via",
            BadHeader(HeaderKind::Via),
        ),
        ("Call-ID: a b\r\n", "Call-ID", BadHeader(HeaderKind::CallId)),
        ("Route: junk\r\n", "", BadHeader(HeaderKind::Route)),
    ];
    for (extra, drop, want) in cases {
        let msg = base(extra, drop);
        let m = Message::parse(&msg).unwrap();
        let e = m.routing().unwrap_err();
        assert_eq!(e.kind(), *want, "{extra:?} without {drop:?}");
        assert!(!e.reason().is_empty());
        // A request: answerable when it has a Via line.
        let has_via = *drop != "Via" || extra.starts_with("Via");
        assert_eq!(e.is_answerable(), has_via, "{extra:?} without {drop:?}");
        assert!(e.offset() <= msg.len());
    }
    assert!(Message::parse(&base("", "")).unwrap().routing().is_ok());
    // Max-Forwards is optional.
    let m = base("", "Max-Forwards");
    assert_eq!(
        Message::parse(&m).unwrap().routing().unwrap().max_forwards,
        None
    );
}

#[test]
fn many_headers_spill_but_parse() {
    let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..100 {
        msg.extend_from_slice(format!("Via: SIP/2.0/UDP h{i};branch=z9hG4bK{i}\r\n").as_bytes());
    }
    msg.extend_from_slice(b"\r\n");
    let m = Message::parse(&msg).unwrap();
    assert_eq!(m.vias().count(), 100);
    let mut out = Vec::new();
    m.write(&[], &mut out);
    assert_eq!(out, msg);
}
