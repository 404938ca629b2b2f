//! sipring-parser: a zero-copy SIP (RFC 3261) message parser and writer.
//!
//! `Message<'a>` borrows the receive buffer; an index pass records spans of the
//! start line and every header, and typed views are parsed on demand. No I/O,
//! no heap allocation for ordinary messages.
#![forbid(unsafe_code)]
