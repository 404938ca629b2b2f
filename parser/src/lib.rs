//! sipring-parser: a zero-copy SIP (RFC 3261) message parser and writer.
//!
//! No I/O, no dependency on the rest of sipring, and no heap allocation for
//! messages with up to [`INLINE_HEADERS`] headers: a [`Message`] borrows
//! the receive buffer and holds spans into it.
//!
//! # Two phases
//! 1. **Index** ([`Message::parse`] for a datagram, [`Message::parse_stream`]
//!    for TCP/TLS): the start line, every header line (name, value,
//!    [`HeaderKind`] with compact forms, folded lines), the body framed by
//!    Content-Length. Errors are framing and start-line problems.
//! 2. **Typed views**, parsed on demand from the index: [`Message::routing`]
//!    (everything a proxy routes by, in one pass), [`Message::vias`],
//!    [`Message::request_uri`] ([`Uri`]: SIP/SIPS with the full §19.1
//!    grammar, tel:, opaque), [`Message::from`]/[`Message::to`]
//!    ([`NameAddr`]), [`Message::contacts`], [`Message::routes`],
//!    [`Message::record_routes`], [`Message::paths`], [`Message::cseq`],
//!    [`Message::call_id`], [`Message::max_forwards`],
//!    [`Message::content_type`], [`Message::expires`],
//!    [`Message::min_expires`], the option tags ([`Message::require`],
//!    [`Message::proxy_require`], [`Message::supported`],
//!    [`Message::unsupported`]) and the four auth headers ([`Auth`],
//!    [`Digest`]). Iterating values never allocates.
//!
//! # Errors, lints and what to answer
//! [`Error`] is 8 bytes and `Copy`: an [`ErrorKind`] with a reason phrase
//! for a 400 (or 505 for [`ErrorKind::VersionNotSupported`]), the byte
//! offset, and [`Error::is_answerable`] (a request that has a Via; errors
//! of the views, [`Message::routing`] included, carry it too). To answer an
//! index error, take the headers from [`Message::salvage`]; otherwise drop.
//! Over a stream, [`StreamItem::Malformed`] gives the length to skip and
//! an `Err` from [`Message::parse_stream`] means: close the connection.
//! Where RFC 4475 allows a liberal reading, the parser accepts and records
//! a [`Lint`] ([`Message::lints`], [`NameAddr::lints`]); a strict element
//! answers 400 with [`Lint::reason`] for [`Lints::first_violation`].
//!
//! # Writer
//! [`Message::write`] applies a list of [`Edit`]s (prepend/remove Via,
//! Record-Route, Route, Request-URI, Max-Forwards, any header) in one pass
//! into a caller-owned `Vec<u8>`; untouched bytes are copied verbatim and
//! no edits give the input bytes back.
//!
//! # Example: a proxy forwarding a request
//! ```
//! use sipring_parser::{Edit, HeaderKind, Message};
//!
//! let datagram = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
//! Max-Forwards: 70\r\n\
//! Route: <sip:proxy.example.com;lr>, <sip:edge.example.net;lr>\r\n\
//! To: Bob <sip:bob@biloxi.example.com>\r\n\
//! From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
//! CSeq: 314159 INVITE\r\n\
//! Content-Length: 0\r\n\r\n";
//!
//! let msg = match Message::parse(datagram) {
//!     Ok(m) => m,
//!     Err(e) if e.is_answerable() => {
//!         let _headers = Message::salvage(datagram); // build "400 <reason>"
//!         panic!("answer {} {}", e.status(), e.reason());
//!     }
//!     Err(_) => return, // drop
//! };
//! let r = msg.routing().expect("routable");
//! assert_eq!(r.via.branch, Some(&b"z9hG4bK776asdhds"[..]));
//! assert_eq!(r.cseq.number, 314159);
//! assert_eq!(r.from_tag, Some(&b"1928301774"[..]));
//! assert_eq!(r.to_tag, None);
//! assert_eq!(r.max_forwards, Some(70));
//! let route = r.route.expect("a Route").uri().expect("a URI");
//! assert!(route.as_sip().expect("sip:").lr());
//!
//! let uri = msg.request_uri().expect("Request-URI");
//! assert_eq!(uri.as_sip().expect("sip:").host.raw, b"biloxi.example.com");
//! assert_eq!(msg.values(HeaderKind::Route).count(), 2);
//!
//! // Forward: our Via on top, answer rport, pop our Route, decrement.
//! let mut out = Vec::with_capacity(2048); // reused across messages
//! msg.write(
//!     &[
//!         Edit::PrependVia(b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1"),
//!         Edit::SetViaReceived { received: Some(b"192.0.2.1"), rport: Some(5060) },
//!         Edit::RemoveTopRoute,
//!         Edit::DecrementMaxForwards,
//!     ],
//!     &mut out,
//! );
//! let fwd = Message::parse(&out).unwrap();
//! assert_eq!(fwd.max_forwards(), Ok(Some(69)));
//! assert_eq!(fwd.vias().count(), 2);
//! assert_eq!(fwd.routes().count(), 1);
//! ```
#![forbid(unsafe_code)]

mod addr;
mod auth;
mod error;
mod fields;
mod header;
mod lint;
mod message;
mod scan;
mod uri;
mod via;
mod writer;

pub use addr::{Contact, ContactValue, DisplayName, NameAddr};
pub use auth::{Auth, AuthParam, Digest};
pub use error::{Error, ErrorKind};
pub use fields::{CSeq, MediaType, Method};
pub use header::HeaderKind;
pub use lint::{Lint, Lints};
pub use message::{
    Header, INLINE_HEADERS, Message, RequestLine, Routing, Span, StartLine, StatusLine, StreamItem,
};
pub use scan::{Param, Params, Unescape, Unquote, unescape, unquote_pairs};
pub use uri::{AbsoluteUri, Host, HostKind, SipUri, TelUri, Uri};
pub use via::{MAGIC_COOKIE, Rport, Transport, Via};
pub use writer::{Edit, HeaderName};
