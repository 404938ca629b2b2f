//! The parser's error: small, `Copy`, with the byte offset of the problem
//! and a reason a proxy can send as the reason phrase of its `400 Bad
//! Request` (or `505`), or put in a Warning header.

use core::fmt;

use crate::header::HeaderKind;
use crate::scan::Pos;

/// What went wrong. Every kind has a reason phrase ([`ErrorKind::reason`])
/// and a response status ([`ErrorKind::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The datagram holds only CR/LF/SP/HT: a keep-alive, drop it silently.
    Empty,
    /// Larger than the limit given (or than 4 GiB).
    TooLarge,
    /// The first line is neither a Request-Line nor a Status-Line, or it has
    /// no line end.
    BadStartLine,
    /// A Request-Line without method, Request-URI and SIP-Version.
    BadRequestLine,
    /// A method that is not a token.
    BadMethod,
    /// A Request-URI that does not parse (white space inside, `<>` around,
    /// bad syntax).
    BadRequestUri,
    /// A well-formed SIP-Version other than SIP/2.0 (answer 505).
    VersionNotSupported,
    /// A status code that is not three digits in 100..=699.
    BadStatusCode,
    /// A header line without a `name:`.
    BadHeaderLine,
    /// The header section is not ended by an empty line.
    MissingEmptyLine,
    /// Content-Length is not a number (negative, empty, too large a number).
    BadContentLength,
    /// Content-Length given twice with different values.
    ConflictingContentLength,
    /// Content-Length larger than the bytes after the header section.
    ContentLengthTooLarge,
    /// A header the message needs is absent.
    MissingHeader(HeaderKind),
    /// A single-valued header appears more than once.
    DuplicateHeader(HeaderKind),
    /// A header value does not parse.
    BadHeader(HeaderKind),
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch,
    /// A URI that does not parse (outside a header, e.g. [`crate::Uri::parse`]).
    BadUri,
}

impl ErrorKind {
    /// The reason phrase for the response (or a Warning's text).
    pub const fn reason(self) -> &'static str {
        match self {
            ErrorKind::Empty => "Empty Message",
            ErrorKind::TooLarge => "Message Too Large",
            ErrorKind::BadStartLine => "Malformed Start Line",
            ErrorKind::BadRequestLine => "Malformed Request-Line",
            ErrorKind::BadMethod => "Malformed Method",
            ErrorKind::BadRequestUri => "Malformed Request-URI",
            ErrorKind::VersionNotSupported => "Version Not Supported",
            ErrorKind::BadStatusCode => "Malformed Status Code",
            ErrorKind::BadHeaderLine => "Malformed Header Line",
            ErrorKind::MissingEmptyLine => "Missing Empty Line After Headers",
            ErrorKind::BadContentLength => "Malformed Content-Length",
            ErrorKind::ConflictingContentLength => "Conflicting Content-Length",
            ErrorKind::ContentLengthTooLarge => "Content-Length Larger Than Message",
            ErrorKind::MissingHeader(k) => k.missing_reason(),
            ErrorKind::DuplicateHeader(k) => k.duplicate_reason(),
            ErrorKind::BadHeader(k) => k.malformed_reason(),
            ErrorKind::CSeqMethodMismatch => "CSeq Method Does Not Match Request",
            ErrorKind::BadUri => "Malformed URI",
        }
    }

    /// The status to answer a request with: 505 for an unsupported
    /// version, 513 for a message too large, else 400.
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::VersionNotSupported => 505,
            ErrorKind::TooLarge => 513,
            _ => 400,
        }
    }

    /// Whether the message cannot be delimited: on a stream, close the
    /// connection; on a datagram, the body is not trustworthy.
    pub const fn is_framing(self) -> bool {
        matches!(
            self,
            ErrorKind::BadContentLength
                | ErrorKind::ConflictingContentLength
                | ErrorKind::ContentLengthTooLarge
                | ErrorKind::MissingEmptyLine
                | ErrorKind::TooLarge
        )
    }
}

const IS_REQUEST: u8 = 1;
const HAS_VIA: u8 = 2;

/// A parse error: what, where (byte offset in the buffer given to the
/// parser), and whether the message is a request that carries a Via, so
/// that a proxy can decide between answering (`status()`, `reason()`) and
/// dropping. 8 bytes, `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    kind: ErrorKind,
    offset: u32,
    flags: u8,
}

impl Error {
    pub(crate) const fn new(kind: ErrorKind, offset: usize) -> Error {
        Error {
            kind,
            offset: if offset > u32::MAX as usize {
                u32::MAX
            } else {
                offset as u32
            },
            flags: 0,
        }
    }

    /// An error at `pos` (a position inside `base`).
    pub(crate) fn at(kind: ErrorKind, pos: Pos, base: &[u8]) -> Error {
        Error::new(kind, pos.offset_in(base))
    }

    pub(crate) fn with_message(mut self, is_request: bool, has_via: bool) -> Error {
        self.flags = (u8::from(is_request) * IS_REQUEST) | (u8::from(has_via) * HAS_VIA);
        self
    }

    /// What went wrong.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The byte offset of the problem in the buffer given to the parser.
    pub const fn offset(&self) -> usize {
        self.offset as usize
    }

    /// The reason phrase (see [`ErrorKind::reason`]).
    pub const fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// The response status (see [`ErrorKind::status`]).
    pub const fn status(&self) -> u16 {
        self.kind.status()
    }

    /// Whether the message could not be delimited (see [`ErrorKind::is_framing`]).
    pub const fn is_framing(&self) -> bool {
        self.kind.is_framing()
    }

    /// Whether the start line says request. Only set on errors from
    /// [`crate::Message::parse`]; false elsewhere.
    pub const fn is_request(&self) -> bool {
        self.flags & IS_REQUEST != 0
    }

    /// Whether the header section has a Via header.
    pub const fn has_via(&self) -> bool {
        self.flags & HAS_VIA != 0
    }

    /// Whether a response can be sent: a request with a Via header. The
    /// caller then takes the headers for the response from
    /// [`crate::Message::salvage`]; everything else is dropped (a response
    /// is never answered, and without a Via there is nowhere to answer).
    pub const fn is_answerable(&self) -> bool {
        self.is_request() && self.has_via() && !matches!(self.kind, ErrorKind::Empty)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("request", &self.is_request())
            .field("via", &self.has_via())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind.reason(), self.offset)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_statuses() {
        assert_eq!(core::mem::size_of::<Error>(), 8);
        let e = Error::new(ErrorKind::VersionNotSupported, 30).with_message(true, true);
        assert_eq!((e.status(), e.reason()), (505, "Version Not Supported"));
        assert!(e.is_answerable());
        assert_eq!(e.to_string(), "Version Not Supported (at byte 30)");
        let e = Error::new(ErrorKind::MissingHeader(HeaderKind::CallId), 0);
        assert_eq!(e.reason(), "Missing Call-ID Header");
        assert!(!e.is_answerable());
        assert_eq!(
            ErrorKind::DuplicateHeader(HeaderKind::To).reason(),
            "Multiple To Headers"
        );
        assert_eq!(
            ErrorKind::BadHeader(HeaderKind::Via).reason(),
            "Malformed Via Header"
        );
        assert!(ErrorKind::ContentLengthTooLarge.is_framing());
    }
}
