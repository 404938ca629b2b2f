//! The parser benchmark corpus (bench/fixtures/parser): realistic carrier
//! messages as byte fixtures, shared by `benches/parser.rs` and the
//! zero-allocation test of the benchmarked paths (tests/parser_alloc.rs).

#![allow(dead_code)] // each includer uses what it needs

/// (name, bytes) of each benchmarked message.
pub(crate) const MESSAGES: [(&str, &[u8]); 6] = [
    (
        "invite_sdp_1k",
        include_bytes!("../../fixtures/parser/invite.sip"),
    ),
    (
        "ok200_3via_4rr",
        include_bytes!("../../fixtures/parser/ok200.sip"),
    ),
    (
        "register_digest",
        include_bytes!("../../fixtures/parser/register.sip"),
    ),
    ("ack", include_bytes!("../../fixtures/parser/ack.sip")),
    ("bye", include_bytes!("../../fixtures/parser/bye.sip")),
    (
        "invite_3k5",
        include_bytes!("../../fixtures/parser/large.sip"),
    ),
];

use sipring_parser::{ContactValue, HeaderKind, Message};

/// (a) The index only: start line, header lines, body framing.
pub(crate) fn index_only(msg: &[u8]) -> usize {
    let m = Message::parse(msg).expect("fixture parses");
    m.header_count() + m.body().len()
}

/// (b) The index plus what a proxy routes by: top Via branch and sent-by,
/// Call-ID, CSeq, Max-Forwards, From and To tags, first Route.
pub(crate) fn routing(msg: &[u8]) -> usize {
    let m = Message::parse(msg).expect("fixture parses");
    let r = m.routing().expect("fixture routes");
    r.via.branch.map_or(0, <[u8]>::len)
        + r.via.host.raw.len()
        + usize::from(r.via.port.unwrap_or(5060))
        + r.call_id.len()
        + r.cseq.number as usize
        + r.max_forwards.unwrap_or(70) as usize
        + r.to_tag.map_or(0, <[u8]>::len)
        + r.from_tag.map_or(0, <[u8]>::len)
        + r.route.map_or(0, |a| a.uri_raw.len())
}

/// (c) Every typed view of every header that has one, every value.
pub(crate) fn every_view(msg: &[u8]) -> usize {
    let m = Message::parse(msg).expect("fixture parses");
    let mut n = 0;
    if let Ok(u) = m.request_uri() {
        n += u.raw().len();
    }
    for v in m.vias() {
        let v = v.expect("Via");
        n += v.branch.map_or(0, <[u8]>::len) + v.params().count();
    }
    let from = m.from().expect("From");
    n += from.uri().expect("From URI").raw().len() + from.tag().map_or(0, <[u8]>::len);
    let to = m.to().expect("To");
    n += to.uri().expect("To URI").raw().len();
    n += m.call_id().expect("Call-ID").len();
    n += m.cseq().expect("CSeq").number as usize;
    n += m.max_forwards().expect("Max-Forwards").unwrap_or(0) as usize;
    for c in m.contacts() {
        if let ContactValue::Addr(c) = c.expect("Contact") {
            n += c.addr.uri().expect("Contact URI").raw().len() + usize::from(c.q.is_some());
        }
    }
    for kind in [HeaderKind::Route, HeaderKind::RecordRoute, HeaderKind::Path] {
        for a in m.addrs(kind) {
            n += a.expect("route").uri().expect("route URI").raw().len();
        }
    }
    for a in m.addrs(HeaderKind::PAssertedIdentity) {
        n += a.expect("P-Asserted-Identity").uri_raw.len();
    }
    if let Some(t) = m.content_type().expect("Content-Type") {
        n += t.subtype.len();
    }
    n += m.expires().expect("Expires").unwrap_or(0) as usize;
    n += m.min_expires().expect("Min-Expires").unwrap_or(0) as usize;
    for kind in [
        HeaderKind::Require,
        HeaderKind::ProxyRequire,
        HeaderKind::Supported,
        HeaderKind::Unsupported,
        HeaderKind::Allow,
    ] {
        n += m.option_tags(kind).count();
    }
    for a in m.authorizations() {
        let d = a.expect("Authorization").digest().expect("Digest");
        n += d.response.map_or(0, <[u8]>::len);
    }
    n + m.body().len()
}
