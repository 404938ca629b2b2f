//! The peer: the same three paths with rsip 0.4 (`SipMessage::try_from`,
//! then its typed headers), for benches/parser.rs and the instruction
//! count example.

#![allow(dead_code)] // each includer uses what it needs

use rsip::headers::{ToTypedHeader, UntypedHeader};
use rsip::message::HasHeaders;
use rsip::prelude::HeadersExt;
use rsip::{Header, SipMessage};

/// rsip's parse: start line, Request-URI, header lines into owned values.
pub(crate) fn parse(msg: &[u8]) -> usize {
    let m = SipMessage::try_from(msg).expect("rsip parses the fixture");
    m.headers().iter().count() + m.body().len()
}

/// rsip's parse plus the routing fields, typed.
pub(crate) fn routing(msg: &[u8]) -> usize {
    let m = SipMessage::try_from(msg).expect("rsip parses the fixture");
    let via = m.via_header().expect("Via").typed().expect("typed Via");
    let mut n = via.branch().map_or(0, |b| b.to_string().len());
    n += via.uri.host_with_port.to_string().len();
    n += m.call_id_header().expect("Call-ID").value().len();
    n += m
        .cseq_header()
        .expect("CSeq")
        .typed()
        .expect("typed CSeq")
        .seq as usize;
    if let Ok(mf) = m.max_forwards_header() {
        n += mf.num().expect("Max-Forwards") as usize;
    }
    let to = m.to_header().expect("To").typed().expect("typed To");
    n += to.tag().map_or(0, |t| t.to_string().len());
    let from = m.from_header().expect("From").typed().expect("typed From");
    n += from.tag().map_or(0, |t| t.to_string().len());
    if let Some(r) = m.route_header() {
        n += r.typed().expect("typed Route").uris().len();
    }
    n
}

/// rsip's parse plus every typed header it offers.
pub(crate) fn views(msg: &[u8]) -> usize {
    let m = SipMessage::try_from(msg).expect("rsip parses the fixture");
    let mut n = m.body().len();
    for h in m.headers().iter() {
        n += match h {
            Header::Via(v) => v.typed().map_or(0, |v| v.params.len()),
            Header::From(v) => v.typed().map_or(0, |v| v.params.len()),
            Header::To(v) => v.typed().map_or(0, |v| v.params.len()),
            Header::CSeq(v) => v.typed().map_or(0, |v| v.seq as usize),
            Header::CallId(v) => v.value().len(),
            Header::MaxForwards(v) => v.num().unwrap_or(0) as usize,
            Header::Contact(v) => v.typed().map_or(0, |v| v.params.len()),
            Header::Route(v) => v.typed().map_or(0, |v| v.uris().len()),
            Header::RecordRoute(v) => v.typed().map_or(0, |v| v.uris().len()),
            Header::ContentType(v) => v.typed().map_or(0, |_| 1),
            Header::Authorization(v) => v.typed().map_or(0, |v| v.response.len()),
            Header::Expires(v) => v.seconds().unwrap_or(0) as usize,
            Header::MinExpires(v) => v.seconds().unwrap_or(0) as usize,
            Header::Supported(v) => v.value().split(',').count(),
            Header::Require(v) => v.value().split(',').count(),
            Header::ProxyRequire(v) => v.value().split(',').count(),
            Header::Allow(v) => v.typed().map_or(0, |v| v.0.len()),
            _ => 0,
        };
    }
    n
}
