//! What the fuzz target checks for one input; shared with the corpus replay
//! test (parser/tests/fuzz_corpus.rs). Panics on any broken invariant.

use sipring_parser::{
    Auth, CSeq, ContactValue, Edit, HeaderKind, HeaderName, MediaType, Message, NameAddr,
    StreamItem, Uri, Via,
};

/// Reads every typed view of `m`; none may panic.
fn views(m: &Message<'_>) {
    let len = m.buffer().len();
    let mut n = 0usize;
    let _ = m.start_line();
    if let Ok(u) = m.request_uri() {
        n += u.raw().len();
        if let Some(s) = u.as_sip() {
            n += s.params().count() + s.headers().count();
            n += usize::from(s.lr()) + usize::from(s.ttl().is_some());
            n += usize::from(s.equivalent(s));
        }
    }
    match m.routing() {
        Ok(r) => n += r.call_id.len() + r.via.host.raw.len(),
        Err(e) => assert!(e.offset() <= len),
    }
    for v in m.vias() {
        match v {
            Ok(v) => n += v.params().count() + usize::from(v.has_rfc3261_branch()),
            Err(e) => assert!(e.offset() <= len),
        }
    }
    for a in [m.from(), m.to()].into_iter().flatten() {
        n += a.params().count();
        if let Some(d) = a.display_name {
            n += d.unescaped().count();
        }
        let _ = a.uri();
    }
    let _ = (
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.expires(),
        m.min_expires(),
    );
    for c in m.contacts().flatten() {
        if let ContactValue::Addr(c) = c {
            let _ = c.addr.uri();
        }
    }
    for k in [HeaderKind::Route, HeaderKind::RecordRoute, HeaderKind::Path] {
        for a in m.addrs(k).flatten() {
            let _ = a.uri();
        }
    }
    if let Ok(Some(t)) = m.content_type() {
        n += t.params().count();
    }
    for k in [
        HeaderKind::Require,
        HeaderKind::ProxyRequire,
        HeaderKind::Supported,
        HeaderKind::Unsupported,
    ] {
        n += m.option_tags(k).count();
    }
    for k in [
        HeaderKind::Authorization,
        HeaderKind::ProxyAuthorization,
        HeaderKind::WwwAuthenticate,
        HeaderKind::ProxyAuthenticate,
    ] {
        for a in m.auths(k).flatten() {
            n += a.params().count();
            let _ = a.digest();
        }
    }
    for h in m.headers() {
        assert!(h.line.range().end <= len && h.value_span.range().end <= len);
        n += h.value.len();
    }
    assert!(m.body_span().range().end <= len);
    std::hint::black_box(n);
}

/// The writer: no edits give the message's bytes; a proxy's edits give a
/// message that parses again with the same body.
fn writer(m: &Message<'_>) {
    let mut out = Vec::new();
    m.write(&[], &mut out);
    assert_eq!(out, m.as_bytes(), "no-edit write must round-trip");
    out.clear();
    m.write(
        &[
            Edit::PrependVia(b"SIP/2.0/UDP fuzz.example.com;branch=z9hG4bKfuzz"),
            Edit::SetViaReceived {
                received: Some(b"192.0.2.1"),
                rport: Some(5060),
            },
            Edit::PrependRecordRoute(b"<sip:fuzz.example.com;lr>"),
            Edit::RemoveTopRoute,
            Edit::ReplaceRequestUri(b"sip:x@example.com"),
            Edit::DecrementMaxForwards,
            Edit::RemoveHeader(HeaderName::Named(b"X-Fuzz")),
            Edit::AddHeader {
                name: b"X-Fuzz",
                value: b"1",
            },
        ],
        &mut out,
    );
    let again = Message::parse(&out).expect("edited output must parse");
    assert_eq!(again.body(), m.body());
}

/// Checks one input.
pub(crate) fn check(data: &[u8]) {
    match Message::parse(data) {
        Ok(m) => {
            assert!(m.consumed() <= data.len());
            views(&m);
            writer(&m);
        }
        Err(e) => {
            assert!(e.offset() <= data.len());
            assert!(!e.reason().is_empty());
            if let Some(m) = Message::salvage(data) {
                views(&m);
            }
        }
    }
    match Message::parse_stream(data, 65_535) {
        Ok(StreamItem::Message(m)) => {
            assert!(m.consumed() <= data.len());
            views(&m);
            writer(&m);
        }
        Ok(StreamItem::Malformed { len, .. }) => assert!(len <= data.len()),
        Ok(StreamItem::KeepAlive { len }) => assert!(len <= data.len()),
        Ok(StreamItem::Partial) | Err(_) => {}
    }
    // The views straight on the raw bytes.
    if let Ok(u) = Uri::parse(data) {
        if let Some(s) = u.as_sip() {
            assert!(s.equivalent(s));
            let _ = s.without_headers();
        }
    }
    let _ = Via::parse(data);
    let _ = NameAddr::parse(data);
    let _ = ContactValue::parse(data);
    let _ = CSeq::parse(data);
    let _ = MediaType::parse(data);
    if let Ok(a) = Auth::parse(data) {
        let _ = a.digest();
    }
}
