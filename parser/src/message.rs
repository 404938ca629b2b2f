//! [`Message`]: the index over a receive buffer, and the framing of
//! datagrams and streams.
//!
//! The index pass finds the start line and every header line (name span,
//! value span, [`HeaderKind`], folded continuation lines kept inside the
//! value span), the empty line and the body. Per line: a known name
//! directly followed by `:` is recognised from three 64-bit words
//! ([`HeaderKind`]'s table, no byte loop), other names are scanned with
//! the token table; the line end is found sixteen bytes at a time
//! (`scan::find_lf`). Typed views are parsed on
//! demand from the index (see the accessor methods). Nothing here
//! allocates for messages with up to 32 headers.

use core::ops::Range;

use smallvec::SmallVec;

use crate::addr::{ContactValue, NameAddr};
use crate::auth::Auth;
use crate::error::{Error, ErrorKind};
use crate::fields::{self, CSeq, MediaType, Method};
use crate::header::HeaderKind;
use crate::lint::{Lint, Lints};
use crate::scan::{self, List, PResult, Pos, is_token};
use crate::uri::Uri;
use crate::via::Via;

/// A byte range in the buffer given to the parser.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        // The parser refuses buffers over u32::MAX bytes, so these fit.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// As a `Range<usize>`.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The length in bytes.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// One indexed header line (20 bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) kind: HeaderKind,
    pub(crate) name_len: u16,
    /// The whole line, from the name to after its line end (folds included).
    pub(crate) line: Span,
    /// The value, trimmed of LWS at both ends.
    pub(crate) value: Span,
}

/// Headers held inline before the index spills to the heap.
pub const INLINE_HEADERS: usize = 32;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Line {
    Request {
        method: Span,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        code: u16,
        reason: Span,
    },
}

/// A parsed SIP message borrowing its buffer. Spans and error offsets are
/// offsets in the buffer given to the parser.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    pub(crate) buf: &'a [u8],
    /// Where the start line begins (after skipped leading CRLFs).
    pub(crate) start: u32,
    pub(crate) line: Line,
    /// The start line without its line end.
    pub(crate) line_text: Span,
    /// Where the first header line begins (after the start line's end).
    pub(crate) headers_start: u32,
    pub(crate) headers: SmallVec<[Entry; INLINE_HEADERS]>,
    seen: u128,
    multi: u128,
    /// Where the empty line ending the headers begins.
    pub(crate) headers_end: u32,
    body: Span,
    /// One past the message's last byte.
    pub(crate) end: u32,
    content_length: Option<u32>,
    lints: Lints,
}

/// The start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A Request-Line.
    Request(RequestLine<'a>),
    /// A Status-Line.
    Response(StatusLine<'a>),
}

/// `Method SP Request-URI SP SIP-Version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method.
    pub method: Method<'a>,
    /// The Request-URI as written (parse with [`Message::request_uri`]).
    pub uri: &'a [u8],
    /// The version as written.
    pub version: &'a [u8],
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusLine<'a> {
    /// The version as written.
    pub version: &'a [u8],
    /// The status code, 100..=699 (0 only in a salvaged message).
    pub code: u16,
    /// The reason phrase as written (may be empty, or UTF-8).
    pub reason: &'a [u8],
}

/// One header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The kind of its name.
    pub kind: HeaderKind,
    /// The name as written.
    pub name: &'a [u8],
    /// The value, trimmed (folded lines keep their CRLF and white space).
    pub value: &'a [u8],
    /// Its position among the message's headers.
    pub index: usize,
    /// The whole line including its line end.
    pub line: Span,
    /// The value's span.
    pub value_span: Span,
}

/// What the front of a stream buffer holds.
// The message lives on the stack by design: boxing it would allocate per
// message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum StreamItem<'a> {
    /// A complete, valid message; drop [`Message::consumed`] bytes.
    Message(Message<'a>),
    /// A framed message that does not parse: drop `len` bytes and answer
    /// when `error.is_answerable()` (headers from [`Message::salvage`] of
    /// the first `len` bytes).
    Malformed {
        /// Bytes the message occupies (leading CRLFs included).
        len: usize,
        /// Why it does not parse.
        error: Error,
    },
    /// An RFC 5626 CRLFCRLF keep-alive ping of `len` bytes: answer with a
    /// single CRLF pong.
    KeepAlive {
        /// Bytes to drop.
        len: usize,
    },
    /// More bytes are needed.
    Partial,
}

/// What a proxy needs to route, read in one pass over the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing<'a> {
    /// The top Via value.
    pub via: Via<'a>,
    /// Call-ID.
    pub call_id: &'a [u8],
    /// CSeq.
    pub cseq: CSeq<'a>,
    /// From tag.
    pub from_tag: Option<&'a [u8]>,
    /// To tag.
    pub to_tag: Option<&'a [u8]>,
    /// Max-Forwards (absent: `None`; the writer adds 70 on decrement).
    pub max_forwards: Option<u32>,
    /// The first Route value.
    pub route: Option<NameAddr<'a>>,
}

enum Mode {
    Datagram,
    Salvage,
    Stream(usize),
}

/// What `index` found; the message itself is filled in place (it is large:
/// moving it costs more than building it where it will live).
enum Step {
    Done(Option<Error>),
    Partial,
    KeepAlive(usize),
}

fn err(kind: ErrorKind, at: usize) -> Error {
    Error::new(kind, at)
}

impl<'a> Message<'a> {
    /// Parses one datagram (UDP): Content-Length bounds the body, a
    /// missing one means the body runs to the end, octets after the body
    /// are ignored ([`Lint::TrailingOctets`]). Leading CRLFs are skipped;
    /// a datagram of only CRLFs is [`ErrorKind::Empty`] (a keep-alive).
    ///
    /// On error, [`Error::is_answerable`] says whether a response can be
    /// sent, built from [`Message::salvage`].
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        let mut m = Message::empty(buf);
        match index(&mut m, Mode::Datagram)? {
            Step::Done(None) => Ok(m),
            Step::Done(Some(e)) => Err(e.with_message(m.is_request(), m.has(HeaderKind::Via))),
            Step::Partial | Step::KeepAlive(_) => Err(err(ErrorKind::Empty, 0)),
        }
    }

    fn empty(buf: &'a [u8]) -> Message<'a> {
        Message {
            buf,
            start: 0,
            line: Line::Response {
                version: Span::default(),
                code: 0,
                reason: Span::default(),
            },
            line_text: Span::default(),
            headers_start: 0,
            headers: SmallVec::new(),
            seen: 0,
            multi: 0,
            headers_end: 0,
            body: Span::default(),
            end: 0,
            content_length: None,
            lints: Lints::EMPTY,
        }
    }

    /// Frames and parses the message at the front of a stream buffer (TCP,
    /// TLS): `Partial` until the whole message is in; leading CRLFs are
    /// skipped and CRLFCRLF is a keep-alive. A missing Content-Length means
    /// an empty body ([`Lint::MissingContentLength`]). `Err` means the
    /// stream cannot be framed (bad Content-Length, header section or
    /// message over `max_len`): close the connection.
    pub fn parse_stream(buf: &'a [u8], max_len: usize) -> Result<StreamItem<'a>, Error> {
        let mut m = Message::empty(buf);
        match index(&mut m, Mode::Stream(max_len))? {
            Step::Done(None) => Ok(StreamItem::Message(m)),
            Step::Done(Some(e)) => {
                let e = e.with_message(m.is_request(), m.has(HeaderKind::Via));
                if e.is_framing() {
                    Err(e)
                } else {
                    Ok(StreamItem::Malformed {
                        len: m.end as usize,
                        error: e,
                    })
                }
            }
            Step::Partial => Ok(StreamItem::Partial),
            Step::KeepAlive(len) => Ok(StreamItem::KeepAlive { len }),
        }
    }

    /// The index of a datagram that [`Message::parse`] refused, for building
    /// the 400/505 response: framing and start-line problems are ignored
    /// (a bad start line reads as a request with what spans could be
    /// found). `None` when not even the header lines can be found.
    pub fn salvage(buf: &'a [u8]) -> Option<Message<'a>> {
        let mut m = Message::empty(buf);
        match index(&mut m, Mode::Salvage) {
            Ok(Step::Done(_)) => Some(m),
            _ => None,
        }
    }

    /// The whole buffer given to the parser.
    pub fn buffer(&self) -> &'a [u8] {
        self.buf
    }

    /// The message's bytes: start line to the end of the body (without
    /// leading CRLFs or trailing octets).
    pub fn as_bytes(&self) -> &'a [u8] {
        &self.buf[self.start as usize..self.end as usize]
    }

    /// The message's span in the buffer.
    pub fn span(&self) -> Span {
        Span {
            start: self.start,
            end: self.end,
        }
    }

    /// Bytes of the buffer the message used (leading CRLFs included):
    /// what a stream reader drops.
    pub fn consumed(&self) -> usize {
        self.end as usize
    }

    /// Accepted deviations from the grammar (see [`Lint`]).
    pub fn lints(&self) -> Lints {
        self.lints
    }

    fn slice(&self, s: Span) -> &'a [u8] {
        &self.buf[s.range()]
    }

    /// An error found in this message, marked with whether it is a
    /// request with a Via (so [`Error::is_answerable`] holds for views too).
    fn mark(&self, e: Error) -> Error {
        e.with_message(self.is_request(), self.has(HeaderKind::Via))
    }

    fn err_at(&self, kind: ErrorKind, p: Pos) -> Error {
        self.mark(Error::at(kind, p, self.buf))
    }

    fn err(&self, kind: ErrorKind, at: usize) -> Error {
        self.mark(err(kind, at))
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine<'a> {
        match self.line {
            Line::Request {
                method,
                uri,
                version,
            } => StartLine::Request(RequestLine {
                method: Method::from_bytes(self.slice(method)),
                uri: self.slice(uri),
                version: self.slice(version),
            }),
            Line::Response {
                version,
                code,
                reason,
            } => StartLine::Response(StatusLine {
                version: self.slice(version),
                code,
                reason: self.slice(reason),
            }),
        }
    }

    /// The start line's text without its line end.
    pub fn start_line_raw(&self) -> &'a [u8] {
        self.slice(self.line_text)
    }

    /// Whether it is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.line, Line::Request { .. })
    }

    /// The request method (`None` for a response).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.line {
            Line::Request { method, .. } => Some(Method::from_bytes(self.slice(method))),
            Line::Response { .. } => None,
        }
    }

    /// The status code (`None` for a request).
    pub fn status(&self) -> Option<u16> {
        match self.line {
            Line::Response { code, .. } => Some(code),
            Line::Request { .. } => None,
        }
    }

    /// The Request-URI as written (`None` for a response).
    pub fn request_uri_raw(&self) -> Option<&'a [u8]> {
        match self.line {
            Line::Request { uri, .. } => Some(self.slice(uri)),
            Line::Response { .. } => None,
        }
    }

    /// The Request-URI's span (`None` for a response).
    pub fn request_uri_span(&self) -> Option<Span> {
        match self.line {
            Line::Request { uri, .. } => Some(uri),
            Line::Response { .. } => None,
        }
    }

    /// The parsed Request-URI ([`ErrorKind::BadRequestUri`] when it does
    /// not parse, e.g. RFC 4475 `ltgtruri`'s `<sip:...>`).
    pub fn request_uri(&self) -> Result<Uri<'a>, Error> {
        let Line::Request { uri, .. } = self.line else {
            return Err(self.err(ErrorKind::BadRequestLine, self.start as usize));
        };
        Uri::parse_inner(self.slice(uri)).map_err(|p| self.err_at(ErrorKind::BadRequestUri, p))
    }

    /// Every header line, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = Header<'a>> + '_ {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, e)| self.header_at(i, e))
    }

    fn header_at(&self, index: usize, e: &Entry) -> Header<'a> {
        Header {
            kind: e.kind,
            name: &self.buf[e.line.start as usize..e.line.start as usize + e.name_len as usize],
            value: self.slice(e.value),
            index,
            line: e.line,
            value_span: e.value,
        }
    }

    /// The number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// Whether a header of `kind` is present.
    pub fn has(&self, kind: HeaderKind) -> bool {
        self.seen & kind.bit() != 0
    }

    /// The first header of `kind`.
    pub fn header(&self, kind: HeaderKind) -> Option<Header<'a>> {
        if !self.has(kind) {
            return None;
        }
        self.headers_of(kind).next()
    }

    /// Every header of `kind`, in order.
    pub fn headers_of(&self, kind: HeaderKind) -> impl Iterator<Item = Header<'a>> + '_ {
        let present = if self.has(kind) {
            self.headers.len()
        } else {
            0
        };
        self.headers[..present]
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.kind == kind)
            .map(|(i, e)| self.header_at(i, e))
    }

    /// Every header whose name is `name` (case-insensitive; a known name
    /// also matches its compact form).
    pub fn headers_named<'n>(&'n self, name: &'n [u8]) -> impl Iterator<Item = Header<'a>> + 'n {
        let kind = HeaderKind::from_name(name);
        self.headers().filter(move |h| {
            if kind == HeaderKind::Other {
                h.kind == HeaderKind::Other && h.name.eq_ignore_ascii_case(name)
            } else {
                h.kind == kind
            }
        })
    }

    /// The comma-separated values of every header of `kind`, in order
    /// (quotes and angle brackets respected; each trimmed).
    pub fn values(&self, kind: HeaderKind) -> impl Iterator<Item = &'a [u8]> + '_ {
        let buf = self.buf;
        self.headers
            .iter()
            .filter(move |e| e.kind == kind)
            .flat_map(move |e| List::new(&buf[e.value.range()]))
    }

    /// The only header of a single-valued `kind`, `None` when absent.
    pub fn single(&self, kind: HeaderKind) -> Result<Option<Header<'a>>, Error> {
        if self.multi & kind.bit() != 0 {
            let second = self.headers_of(kind).nth(1).map_or(0, |h| h.line.start);
            return Err(self.err(ErrorKind::DuplicateHeader(kind), second as usize));
        }
        Ok(self.header(kind))
    }

    fn required(&self, kind: HeaderKind) -> Result<Header<'a>, Error> {
        self.single(kind)?
            .ok_or(self.err(ErrorKind::MissingHeader(kind), self.headers_start as usize))
    }

    /// The body (bounded by Content-Length).
    pub fn body(&self) -> &'a [u8] {
        self.slice(self.body)
    }

    /// The body's span.
    pub fn body_span(&self) -> Span {
        self.body
    }

    /// The Content-Length value, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Every Via value, top first, across headers.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, Error>> + '_ {
        self.values(HeaderKind::Via).map(move |v| {
            Via::parse_inner(v).map_err(|p| self.err_at(ErrorKind::BadHeader(HeaderKind::Via), p))
        })
    }

    /// The top Via value.
    pub fn top_via(&self) -> Result<Via<'a>, Error> {
        match self.vias().next() {
            Some(v) => v,
            None => Err(self.err(
                ErrorKind::MissingHeader(HeaderKind::Via),
                self.headers_start as usize,
            )),
        }
    }

    /// Call-ID.
    pub fn call_id(&self) -> Result<&'a [u8], Error> {
        let h = self.required(HeaderKind::CallId)?;
        fields::call_id(h.value).map_err(|p| self.bad(HeaderKind::CallId, p))
    }

    fn bad(&self, kind: HeaderKind, p: Pos) -> Error {
        self.err_at(ErrorKind::BadHeader(kind), p)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq<'a>, Error> {
        let h = self.required(HeaderKind::CSeq)?;
        CSeq::parse_inner(h.value).map_err(|p| self.bad(HeaderKind::CSeq, p))
    }

    /// Max-Forwards (`None` when absent; more than 32 bits is an error).
    pub fn max_forwards(&self) -> Result<Option<u32>, Error> {
        self.number(HeaderKind::MaxForwards, false)
    }

    /// Expires (overlarge values saturate, RFC 4475 `scalar02`).
    pub fn expires(&self) -> Result<Option<u32>, Error> {
        self.number(HeaderKind::Expires, true)
    }

    /// Min-Expires.
    pub fn min_expires(&self) -> Result<Option<u32>, Error> {
        self.number(HeaderKind::MinExpires, true)
    }

    fn number(&self, kind: HeaderKind, saturate: bool) -> Result<Option<u32>, Error> {
        match self.single(kind)? {
            None => Ok(None),
            Some(h) => fields::number(h.value, saturate)
                .map(Some)
                .map_err(|p| self.bad(kind, p)),
        }
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr<'a>, Error> {
        self.addr(HeaderKind::From)
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr<'a>, Error> {
        self.addr(HeaderKind::To)
    }

    fn addr(&self, kind: HeaderKind) -> Result<NameAddr<'a>, Error> {
        let h = self.required(kind)?;
        NameAddr::parse_inner(h.value).map_err(|p| self.bad(kind, p))
    }

    /// Every Contact value, across headers.
    pub fn contacts(&self) -> impl Iterator<Item = Result<ContactValue<'a>, Error>> + '_ {
        self.values(HeaderKind::Contact).map(move |v| {
            ContactValue::parse_inner(v).map_err(|p| self.bad(HeaderKind::Contact, p))
        })
    }

    /// Every Route value, in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + '_ {
        self.addrs(HeaderKind::Route)
    }

    /// Every Record-Route value, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + '_ {
        self.addrs(HeaderKind::RecordRoute)
    }

    /// Every Path value, in order (RFC 3327).
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + '_ {
        self.addrs(HeaderKind::Path)
    }

    /// Every name-addr value of `kind` (Route, Record-Route, Path,
    /// Service-Route, P-Asserted-Identity, ...).
    pub fn addrs(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + '_ {
        self.values(kind)
            .map(move |v| NameAddr::parse_inner(v).map_err(|p| self.bad(kind, p)))
    }

    /// Content-Type (`None` when absent).
    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, Error> {
        match self.single(HeaderKind::ContentType)? {
            None => Ok(None),
            Some(h) => MediaType::parse_inner(h.value)
                .map(Some)
                .map_err(|p| self.bad(HeaderKind::ContentType, p)),
        }
    }

    /// The option tags of every header of `kind` (Require, Proxy-Require,
    /// Supported, Unsupported), skipping empty elements.
    pub fn option_tags(&self, kind: HeaderKind) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.values(kind).filter(|t| !t.is_empty())
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.option_tags(HeaderKind::Require)
    }

    /// Proxy-Require option tags.
    pub fn proxy_require(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.option_tags(HeaderKind::ProxyRequire)
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.option_tags(HeaderKind::Supported)
    }

    /// Unsupported option tags.
    pub fn unsupported(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.option_tags(HeaderKind::Unsupported)
    }

    /// Every header of one of the four auth kinds, parsed (one credential
    /// or challenge per header line).
    pub fn auths(&self, kind: HeaderKind) -> impl Iterator<Item = Result<Auth<'a>, Error>> + '_ {
        self.headers_of(kind)
            .map(move |h| Auth::parse_inner(h.value).map_err(|p| self.bad(kind, p)))
    }

    /// Authorization headers.
    pub fn authorizations(&self) -> impl Iterator<Item = Result<Auth<'a>, Error>> + '_ {
        self.auths(HeaderKind::Authorization)
    }

    /// Proxy-Authorization headers.
    pub fn proxy_authorizations(&self) -> impl Iterator<Item = Result<Auth<'a>, Error>> + '_ {
        self.auths(HeaderKind::ProxyAuthorization)
    }

    /// WWW-Authenticate headers.
    pub fn www_authenticates(&self) -> impl Iterator<Item = Result<Auth<'a>, Error>> + '_ {
        self.auths(HeaderKind::WwwAuthenticate)
    }

    /// Proxy-Authenticate headers.
    pub fn proxy_authenticates(&self) -> impl Iterator<Item = Result<Auth<'a>, Error>> + '_ {
        self.auths(HeaderKind::ProxyAuthenticate)
    }

    /// What a proxy routes by, in one pass: top Via, Call-ID, CSeq, From
    /// and To tags, Max-Forwards, first Route. Errors when one of Via,
    /// From, To, Call-ID, CSeq is missing, malformed or (single-valued)
    /// repeated, and when a request's CSeq method differs from its method
    /// (RFC 4475 `mismatch01`). Each error has its 400 reason.
    pub fn routing(&self) -> Result<Routing<'a>, Error> {
        let mut via = None;
        let mut call_id = None;
        let mut cseq = None;
        let mut from = None;
        let mut to = None;
        let mut mf = None;
        let mut route = None;
        for e in &self.headers {
            let slot = match e.kind {
                HeaderKind::Via => &mut via,
                HeaderKind::CallId => &mut call_id,
                HeaderKind::CSeq => &mut cseq,
                HeaderKind::From => &mut from,
                HeaderKind::To => &mut to,
                HeaderKind::MaxForwards => &mut mf,
                HeaderKind::Route => &mut route,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(e.value);
            }
        }
        const SINGLE: u128 = HeaderKind::From.bit()
            | HeaderKind::To.bit()
            | HeaderKind::CallId.bit()
            | HeaderKind::CSeq.bit()
            | HeaderKind::MaxForwards.bit();
        if self.multi & SINGLE != 0 {
            for k in [
                HeaderKind::CallId,
                HeaderKind::CSeq,
                HeaderKind::From,
                HeaderKind::To,
                HeaderKind::MaxForwards,
            ] {
                self.single(k)?;
            }
        }
        let missing = |k| self.err(ErrorKind::MissingHeader(k), self.headers_start as usize);
        let value = |s: Option<Span>, k| s.map(|s| self.slice(s)).ok_or_else(|| missing(k));
        let v = value(via, HeaderKind::Via)?;
        let top = List::new(v).next().unwrap_or(v);
        let via = Via::parse_inner(top).map_err(|p| self.bad(HeaderKind::Via, p))?;
        let call_id = fields::call_id(value(call_id, HeaderKind::CallId)?)
            .map_err(|p| self.bad(HeaderKind::CallId, p))?;
        let cseq = CSeq::parse_inner(value(cseq, HeaderKind::CSeq)?)
            .map_err(|p| self.bad(HeaderKind::CSeq, p))?;
        let from = NameAddr::parse_inner(value(from, HeaderKind::From)?)
            .map_err(|p| self.bad(HeaderKind::From, p))?;
        let to = NameAddr::parse_inner(value(to, HeaderKind::To)?)
            .map_err(|p| self.bad(HeaderKind::To, p))?;
        let max_forwards = match mf {
            None => None,
            Some(s) => Some(
                fields::number(self.slice(s), false)
                    .map_err(|p| self.bad(HeaderKind::MaxForwards, p))?,
            ),
        };
        let route = match route {
            None => None,
            Some(s) => {
                let r = self.slice(s);
                let first = List::new(r).next().unwrap_or(r);
                Some(NameAddr::parse_inner(first).map_err(|p| self.bad(HeaderKind::Route, p))?)
            }
        };
        if let Line::Request { method, .. } = self.line {
            if self.slice(method) != cseq.method.as_bytes() {
                return Err(self.err(ErrorKind::CSeqMethodMismatch, self.start as usize));
            }
        }
        Ok(Routing {
            via,
            call_id,
            cseq,
            from_tag: from.tag(),
            to_tag: to.tag(),
            max_forwards,
            route,
        })
    }
}

/// The start line's parts, or the error (with a best-effort line for
/// salvage).
fn parse_start_line(buf: &[u8], s: usize, e: usize, lints: &mut Lints) -> (Line, Option<Error>) {
    let line = &buf[s..e];
    let at = |i: usize| s + i;
    let sp = |a: usize, b: usize| Span::new(s + a, s + b);
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let vend = memchr::memchr(b' ', line).unwrap_or(line.len());
        let mut resp = Line::Response {
            version: sp(0, vend),
            code: 0,
            reason: sp(line.len(), line.len()),
        };
        let cs = (vend + 1).min(line.len());
        let ce = scan::run(line, cs, |b| b.is_ascii_digit());
        let code = if ce - cs == 3 {
            scan::parse_u32(&line[cs..ce]).filter(|c| (100..=699).contains(c))
        } else {
            None
        };
        let Some(code) = code else {
            return (resp, Some(err(ErrorKind::BadStatusCode, at(cs))));
        };
        let reason = match line.get(ce) {
            None => {
                lints.insert(Lint::StatusLineNoReasonSpace);
                sp(ce, ce)
            }
            Some(b' ') => sp(ce + 1, line.len()),
            Some(_) => return (resp, Some(err(ErrorKind::BadStatusCode, at(cs)))),
        };
        resp = Line::Response {
            version: sp(0, vend),
            code: code as u16,
            reason,
        };
        if !is_sip2(&line[..vend]) {
            return (resp, Some(err(ErrorKind::VersionNotSupported, at(0))));
        }
        return (resp, None);
    }
    // Request-Line. Best effort spans first (salvage reads them).
    let me = scan::run(line, 0, is_token);
    let mut z = line.len();
    while z > me && matches!(line[z - 1], b' ' | b'\t') {
        z -= 1;
    }
    let vs = line[..z]
        .iter()
        .rposition(|&b| b == b' ')
        .map_or(z, |i| i + 1)
        .max(me);
    let mut us = me;
    while us < vs && line[us] == b' ' {
        us += 1;
    }
    let mut ue = vs.saturating_sub(1).max(us);
    while ue > us && line[ue - 1] == b' ' {
        ue -= 1;
    }
    let req = Line::Request {
        method: sp(0, me),
        uri: sp(us, ue),
        version: sp(vs, z),
    };
    if me == 0 {
        return (req, Some(err(ErrorKind::BadStartLine, at(0))));
    }
    if line.get(me) != Some(&b' ') {
        return (req, Some(err(ErrorKind::BadMethod, at(me))));
    }
    if us >= ue || vs >= z || vs <= ue {
        return (req, Some(err(ErrorKind::BadRequestLine, at(me))));
    }
    if us > me + 1 || vs > ue + 1 {
        lints.insert(Lint::RequestLineExtraSpace);
    }
    if z < line.len() {
        lints.insert(Lint::RequestLineTrailingSpace);
    }
    if line[us..ue].iter().any(|&b| scan::is_lws(b)) {
        return (req, Some(err(ErrorKind::BadRequestUri, at(us))));
    }
    let version = &line[vs..z];
    if !is_sip2(version) {
        let kind = if is_sip_version(version) {
            ErrorKind::VersionNotSupported
        } else {
            ErrorKind::BadRequestLine
        };
        return (req, Some(err(kind, at(vs))));
    }
    (req, None)
}

fn is_sip2(v: &[u8]) -> bool {
    v.len() == 7 && v[..4].eq_ignore_ascii_case(b"SIP/") && &v[4..] == b"2.0"
}

/// `SIP/1*DIGIT.1*DIGIT`.
fn is_sip_version(v: &[u8]) -> bool {
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let n = &v[4..];
    match memchr::memchr(b'.', n) {
        Some(d) => {
            d > 0
                && d + 1 < n.len()
                && n[..d].iter().all(u8::is_ascii_digit)
                && n[d + 1..].iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

/// Parses a Content-Length value: digits only, fitting 32 bits.
fn content_length(v: &[u8]) -> PResult<u32> {
    scan::parse_u32(v).ok_or(Pos::of(v))
}

fn index(m: &mut Message<'_>, mode: Mode) -> Result<Step, Error> {
    let buf = m.buf;
    if buf.len() > u32::MAX as usize {
        return Err(err(ErrorKind::TooLarge, 0));
    }
    let (stream, max) = match mode {
        Mode::Stream(max) => (true, max),
        _ => (false, usize::MAX),
    };
    let partial = |from: usize| {
        if buf.len() - from >= max {
            Err(err(ErrorKind::TooLarge, from))
        } else {
            Ok(Step::Partial)
        }
    };
    let mut lints = Lints::EMPTY;

    // Leading CRLFs (RFC 3261 §7.5) and the RFC 5626 keep-alive.
    let mut pos = 0;
    if stream {
        if buf.starts_with(b"\r\n\r\n") {
            return Ok(Step::KeepAlive(4));
        }
        if b"\r\n\r\n".starts_with(buf) {
            return Ok(Step::Partial);
        }
        if buf.starts_with(b"\r\n") {
            pos = 2;
        }
    } else {
        while pos < buf.len() && matches!(buf[pos], b'\r' | b'\n') {
            pos += 1;
        }
        if pos == buf.len() {
            return Err(err(ErrorKind::Empty, 0));
        }
    }
    let start = pos;

    // Start line.
    let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
        if stream {
            return partial(start);
        }
        return Err(err(ErrorKind::BadStartLine, buf.len()));
    };
    let nl = pos + nl;
    let line_stop = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        lints.insert(Lint::BareLf);
        nl
    };
    let headers_start = nl + 1;

    // Header lines.
    let headers = &mut m.headers;
    let mut seen: u128 = 0;
    let mut multi: u128 = 0;
    let mut fatal: Option<Error> = None;
    let mut clen: Option<u32> = None;
    let mut p = headers_start;
    let (headers_end, body_start) = loop {
        let Some(&c) = buf.get(p) else {
            if stream {
                return partial(start);
            }
            fatal.get_or_insert(err(ErrorKind::MissingEmptyLine, p));
            break (p, p);
        };
        if c == b'\r' {
            match buf.get(p + 1) {
                Some(b'\n') => break (p, p + 2),
                None if stream => return partial(start),
                _ => {}
            }
        } else if c == b'\n' {
            lints.insert(Lint::BareLf);
            break (p, p + 1);
        }
        // name *(SP/HT) ':', a known name followed by ':' found at once.
        let known = HeaderKind::known_at(buf, p);
        let (ne, colon) = match known {
            Some((n, _)) => (p + n, p + n),
            None => {
                let ne = scan::run(buf, p, is_token);
                let mut colon = ne;
                while colon < buf.len() && matches!(buf[colon], b' ' | b'\t') {
                    colon += 1;
                }
                (ne, colon)
            }
        };
        // The line's end, following folds.
        let mut search = colon.min(buf.len());
        let eol = loop {
            match scan::find_lf(buf, search) {
                None => break None,
                Some(nl) => match buf.get(nl + 1) {
                    Some(b' ' | b'\t') => {
                        lints.insert(Lint::Folded);
                        search = nl + 1;
                    }
                    None if stream => return partial(start),
                    _ => break Some(nl),
                },
            }
        };
        let (line_end, stop) = match eol {
            Some(nl) => {
                let stop = if nl > p && buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    lints.insert(Lint::BareLf);
                    nl
                };
                (nl + 1, stop)
            }
            None => {
                if stream {
                    return partial(start);
                }
                // The datagram ends inside a header line.
                fatal.get_or_insert(err(ErrorKind::MissingEmptyLine, buf.len()));
                (buf.len(), buf.len())
            }
        };
        if ne == p || buf.get(colon) != Some(&b':') || colon >= stop {
            // Not `name:`: skip the line, remember the error.
            fatal.get_or_insert(err(ErrorKind::BadHeaderLine, p));
            if line_end >= buf.len() {
                break (buf.len(), buf.len());
            }
            p = line_end;
            continue;
        }
        let mut vs = colon + 1;
        let mut ve = stop;
        while vs < ve && scan::is_lws(buf[vs]) {
            vs += 1;
        }
        while ve > vs && scan::is_lws(buf[ve - 1]) {
            ve -= 1;
        }
        let kind = match known {
            Some((_, kind)) => kind,
            None => HeaderKind::classify_in(buf, p, ne - p),
        };
        let bit = kind.bit();
        multi |= seen & bit;
        seen |= bit;
        if kind == HeaderKind::ContentLength {
            match content_length(&buf[vs..ve]) {
                Ok(n) => {
                    if clen.is_some_and(|c| c != n) {
                        fatal.get_or_insert(err(ErrorKind::ConflictingContentLength, p));
                    }
                    clen = Some(n);
                }
                Err(_) => {
                    fatal.get_or_insert(err(ErrorKind::BadContentLength, vs));
                }
            }
        }
        headers.push(Entry {
            kind,
            name_len: u16::try_from(ne - p).unwrap_or(u16::MAX),
            line: Span::new(p, line_end),
            value: Span::new(vs, ve),
        });
        p = line_end;
    };

    // Body.
    let (body_end, end) = if stream {
        if let Some(e) = fatal.filter(|e| e.is_framing()) {
            return Err(e);
        }
        let n = match clen {
            Some(n) => n as usize,
            None => {
                lints.insert(Lint::MissingContentLength);
                0
            }
        };
        let total = body_start.saturating_add(n);
        if total - start > max {
            return Err(err(ErrorKind::TooLarge, start));
        }
        if buf.len() < total {
            return Ok(Step::Partial);
        }
        (total, total)
    } else {
        match clen {
            Some(n) if body_start + n as usize > buf.len() => {
                fatal.get_or_insert(err(ErrorKind::ContentLengthTooLarge, body_start));
                (buf.len(), buf.len())
            }
            Some(n) => {
                let e = body_start + n as usize;
                if e < buf.len() {
                    lints.insert(Lint::TrailingOctets);
                }
                (e, e)
            }
            None => {
                lints.insert(Lint::MissingContentLength);
                (buf.len(), buf.len())
            }
        }
    };

    let (line, line_err) = parse_start_line(buf, start, line_stop, &mut lints);
    let fatal = line_err.or(fatal);
    m.start = start as u32;
    m.line = line;
    m.line_text = Span::new(start, line_stop);
    m.headers_start = headers_start as u32;
    m.seen = seen;
    m.multi = multi;
    m.headers_end = headers_end as u32;
    m.body = Span::new(body_start.min(body_end), body_end);
    m.end = end as u32;
    m.content_length = clen;
    m.lints = lints;
    Ok(Step::Done(fatal))
}

#[cfg(test)]
mod tests;
