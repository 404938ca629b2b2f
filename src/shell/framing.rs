//! Stream framing for SIP over TCP (RFC 3261 §18.3): where one message ends
//! in a byte stream.
//!
//! A message is its header section up to the empty line, plus exactly
//! Content-Length body bytes (a stream message without Content-Length has no
//! body). CRLFs before a message are skipped (§7.5); a double CRLF is an RFC
//! 5626 keep-alive "ping" that the shell answers with a single CRLF "pong".
//!
//! This is the shell's own small framer, kept behind one function
//! ([`frame`]) so that switching to the parser crate's stream framing API is
//! a change of that function's body only.

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message of this many bytes (headers, empty line and body).
    Message(usize),
    /// An RFC 5626 keep-alive ping (CRLFCRLF) of `len` bytes, to answer with CRLF.
    Ping {
        /// Bytes to discard, including any leading CRLFs.
        len: usize,
    },
    /// Bytes to discard (a lone CRLF: a pong, or padding).
    Skip(usize),
    /// Not enough bytes yet.
    Partial,
    /// The stream cannot be framed (bad or missing Content-Length value,
    /// header section larger than `max`): close the connection.
    Invalid(&'static str),
}

/// Frame the start of `buf`, allowing messages up to `max` bytes.
pub fn frame(buf: &[u8], max: usize) -> Frame {
    if buf.starts_with(b"\r\n\r\n") {
        return Frame::Ping { len: 4 };
    }
    if buf.starts_with(b"\r\n") {
        // A lone CRLF (pong or padding) unless more CRLF may follow.
        return if buf.len() == 2 {
            Frame::Partial
        } else {
            Frame::Skip(2)
        };
    }
    if buf == b"\r" {
        return Frame::Partial;
    }
    let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() >= max {
            Frame::Invalid("header section too large")
        } else {
            Frame::Partial
        };
    };
    let head_len = head_end + 4;
    let body = match content_length(&buf[..head_end + 2]) {
        Ok(n) => n,
        Err(e) => return Frame::Invalid(e),
    };
    let len = head_len.saturating_add(body);
    if len > max {
        return Frame::Invalid("message too large");
    }
    if buf.len() < len {
        return Frame::Partial;
    }
    Frame::Message(len)
}

/// The Content-Length (or compact `l`) value of a header section, 0 if absent.
fn content_length(head: &[u8]) -> Result<usize, &'static str> {
    // Skip the start line; header lines end in CRLF (the caller includes the
    // last one). Folded continuation lines start with SP/HT and are ignored.
    let mut lines = head.split(|&b| b == b'\n');
    lines.next();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = trim(&line[colon + 1..]);
            if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
                return Err("bad Content-Length");
            }
            return Ok(value
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')));
        }
    }
    Ok(0)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn frames_messages_pings_and_partials() {
        assert_eq!(frame(MSG, 65535), Frame::Message(MSG.len()));
        for cut in 0..MSG.len() {
            let f = frame(&MSG[..cut], 65535);
            assert_eq!(f, Frame::Partial, "cut {cut}");
        }
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame(&two, 65535), Frame::Message(MSG.len()));
        assert_eq!(frame(b"\r\n\r\nOPTIONS", 65535), Frame::Ping { len: 4 });
        assert_eq!(frame(b"\r\nOPTIONS", 65535), Frame::Skip(2));
        assert_eq!(frame(b"\r\n", 65535), Frame::Partial);
    }

    #[test]
    fn compact_form_case_and_absent_length() {
        let m = b"BYE sip:a SIP/2.0\r\nl:  3\r\n\r\nabc";
        assert_eq!(frame(m, 65535), Frame::Message(m.len()));
        let m = b"BYE sip:a SIP/2.0\r\ncontent-LENGTH:0\r\n\r\n";
        assert_eq!(frame(m, 65535), Frame::Message(m.len()));
        let m = b"BYE sip:a SIP/2.0\r\nVia: x\r\n\r\nNEXT";
        assert_eq!(frame(m, 65535), Frame::Message(m.len() - 4));
    }

    #[test]
    fn rejects_bad_lengths_and_oversize() {
        let m = b"BYE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(frame(m, 65535), Frame::Invalid(_)));
        let m = b"BYE sip:a SIP/2.0\r\nContent-Length: 99999\r\n\r\n";
        assert!(matches!(frame(m, 65535), Frame::Invalid(_)));
        assert!(matches!(frame(&[b'a'; 100], 100), Frame::Invalid(_)));
    }
}
