//! The writer: the edits a proxy makes to a message it forwards, applied
//! in one pass into a reused output buffer, copying every untouched byte
//! verbatim (Kamailio's "lumps"). Each edit becomes a patch (a byte range
//! of the input replaced by some output); patches are sorted by position
//! and the output is the input with the patches applied. With no edits the
//! output is the message's bytes, unchanged.

use smallvec::SmallVec;

use crate::header::HeaderKind;
use crate::message::{Line, Message};
use crate::scan::{self, List, offset_of};
use crate::via::Rport;

/// A header named by kind (matching full and compact forms) or by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderName<'e> {
    /// A known kind.
    Kind(HeaderKind),
    /// Any name, compared case-insensitively (a known name is classified).
    Named(&'e [u8]),
}

impl<'e> HeaderName<'e> {
    fn matches(&self, kind: HeaderKind, name: &[u8]) -> bool {
        match *self {
            HeaderName::Kind(k) => k == kind,
            HeaderName::Named(n) => {
                let k = HeaderKind::from_name(n);
                if k == HeaderKind::Other {
                    kind == HeaderKind::Other && name.eq_ignore_ascii_case(n)
                } else {
                    k == kind
                }
            }
        }
    }

    fn text(&self) -> &'e [u8] {
        match *self {
            HeaderName::Kind(k) => k.name().as_bytes(),
            HeaderName::Named(n) => n,
        }
    }
}

impl From<HeaderKind> for HeaderName<'_> {
    fn from(k: HeaderKind) -> Self {
        HeaderName::Kind(k)
    }
}

/// One edit. Values are header values without name, colon or CRLF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Edit<'e> {
    /// A new `Via:` line above the first Via (the proxy's own Via).
    PrependVia(&'e [u8]),
    /// Removes the top Via value (the whole line if it is the only value):
    /// what a proxy does to a response before forwarding it.
    RemoveTopVia,
    /// RFC 3581 / RFC 3261 §18.2.1 on the top Via: appends
    /// `;received=<received>`, and gives a bare `;rport` the value `rport`.
    SetViaReceived {
        /// The source address, when it differs from sent-by.
        received: Option<&'e [u8]>,
        /// The source port, written only where the Via has a bare `rport`.
        rport: Option<u16>,
    },
    /// A new `Record-Route:` line above the first Record-Route (without
    /// one: below the last Via).
    PrependRecordRoute(&'e [u8]),
    /// Removes the top Route value (loose routing, RFC 3261 §16.4).
    RemoveTopRoute,
    /// Writes the Request-Line as `METHOD SP uri SP SIP/2.0` with the new
    /// URI (requests only; this also drops any extra white space of the
    /// original line, RFC 4475 `lwsstart`/`trws`).
    ReplaceRequestUri(&'e [u8]),
    /// Sets the first Max-Forwards value (adds the header if absent).
    SetMaxForwards(u32),
    /// Max-Forwards minus one (saturating at 0); a missing or unreadable
    /// value becomes 70 (RFC 3261 §16.6 step 3).
    DecrementMaxForwards,
    /// Adds `name: value` after the last header.
    AddHeader {
        /// The header name.
        name: &'e [u8],
        /// The value.
        value: &'e [u8],
    },
    /// Replaces the value of the first header named `name` and removes the
    /// others; adds it when absent.
    ReplaceHeader {
        /// Which header.
        name: HeaderName<'e>,
        /// The new value.
        value: &'e [u8],
    },
    /// Removes every header named `name`.
    RemoveHeader(HeaderName<'e>),
}

/// What a patch writes in place of its range.
#[derive(Clone, Copy, Debug)]
enum Out<'e> {
    Nothing,
    /// `name: value CRLF`.
    Line(&'e [u8], &'e [u8]),
    /// `name: <number> CRLF`.
    NumLine(&'e [u8], u32),
    Bytes(&'e [u8]),
    Num(u32),
    RequestLine(&'e [u8]),
    Received(&'e [u8]),
    Rport(u16),
}

#[derive(Clone, Copy, Debug)]
struct Patch<'e> {
    start: u32,
    end: u32,
    seq: u16,
    out: Out<'e>,
}

fn write_num(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl<'a> Message<'a> {
    /// Appends the message with `edits` applied to `out` (which a proxy
    /// reuses, so a warm buffer does not allocate). With no edits the
    /// output equals [`Message::as_bytes`]. Edits that do not apply (a
    /// Request-URI on a response, removing an absent Route) do nothing.
    pub fn write<'e>(&self, edits: &[Edit<'e>], out: &mut Vec<u8>) {
        let buf = self.buf;
        let (start, end) = (self.start as usize, self.end as usize);
        if edits.is_empty() {
            out.extend_from_slice(&buf[start..end]);
            return;
        }
        let mut patches: SmallVec<[Patch<'e>; 16]> = SmallVec::new();
        let mut push = |start: usize, end: usize, out: Out<'e>| {
            let seq = patches.len() as u16;
            patches.push(Patch {
                start: start as u32,
                end: end as u32,
                seq,
                out,
            });
        };
        let first = |kind: HeaderKind| self.headers.iter().find(|e| e.kind == kind);
        let hs = self.headers_start as usize;
        let he = self.headers_end as usize;
        for edit in edits {
            match *edit {
                Edit::PrependVia(v) => {
                    let at = first(HeaderKind::Via).map_or(hs, |e| e.line.start as usize);
                    push(at, at, Out::Line(b"Via", v));
                }
                Edit::PrependRecordRoute(v) => {
                    // Above the first Record-Route; without one, below the
                    // last Via (where readers expect it), else at the top.
                    let at = match first(HeaderKind::RecordRoute) {
                        Some(e) => e.line.start as usize,
                        None => self
                            .headers
                            .iter()
                            .rev()
                            .find(|e| e.kind == HeaderKind::Via)
                            .map_or(hs, |e| e.line.end as usize),
                    };
                    push(at, at, Out::Line(b"Record-Route", v));
                }
                Edit::RemoveTopVia | Edit::RemoveTopRoute => {
                    let kind = if matches!(edit, Edit::RemoveTopVia) {
                        HeaderKind::Via
                    } else {
                        HeaderKind::Route
                    };
                    let Some(e) = first(kind) else { continue };
                    let value = &buf[e.value.range()];
                    let mut list = List::new(value);
                    list.next();
                    match list.next() {
                        // Only value: the whole line goes.
                        None => push(e.line.start as usize, e.line.end as usize, Out::Nothing),
                        Some(second) => {
                            let to = offset_of(buf, second);
                            push(e.value.start as usize, to, Out::Nothing);
                        }
                    }
                }
                Edit::SetViaReceived { received, rport } => {
                    let Some(e) = first(HeaderKind::Via) else {
                        continue;
                    };
                    let value = &buf[e.value.range()];
                    let Some(top) = List::new(value).next() else {
                        continue;
                    };
                    let Ok(via) = crate::via::Via::parse_inner(top) else {
                        continue;
                    };
                    if let (Some(port), Some(Rport::Requested)) = (rport, via.rport) {
                        if let Some(p) = via.params().find(|p| p.is(b"rport")) {
                            let at = offset_of(buf, p.name);
                            push(at, at + p.name.len(), Out::Rport(port));
                        }
                    }
                    if let Some(r) = received {
                        let at = offset_of(buf, top) + top.len();
                        push(at, at, Out::Received(r));
                    }
                }
                Edit::ReplaceRequestUri(uri) => {
                    if matches!(self.line, Line::Request { .. }) {
                        push(start, hs, Out::RequestLine(uri));
                    }
                }
                Edit::SetMaxForwards(n) => match first(HeaderKind::MaxForwards) {
                    Some(e) => push(e.value.start as usize, e.value.end as usize, Out::Num(n)),
                    None => push(he, he, Out::NumLine(b"Max-Forwards", n)),
                },
                Edit::DecrementMaxForwards => match first(HeaderKind::MaxForwards) {
                    Some(e) => {
                        let n = scan::parse_u32(&buf[e.value.range()])
                            .map_or(70, |n| n.saturating_sub(1));
                        push(e.value.start as usize, e.value.end as usize, Out::Num(n));
                    }
                    None => push(he, he, Out::NumLine(b"Max-Forwards", 70)),
                },
                Edit::AddHeader { name, value } => push(he, he, Out::Line(name, value)),
                Edit::ReplaceHeader { name, value } => {
                    let mut found = false;
                    for h in self.headers() {
                        if !name.matches(h.kind, h.name) {
                            continue;
                        }
                        if found {
                            push(h.line.start as usize, h.line.end as usize, Out::Nothing);
                        } else {
                            found = true;
                            push(
                                h.value_span.start as usize,
                                h.value_span.end as usize,
                                Out::Bytes(value),
                            );
                        }
                    }
                    if !found {
                        push(he, he, Out::Line(name.text(), value));
                    }
                }
                Edit::RemoveHeader(name) => {
                    for h in self.headers() {
                        if name.matches(h.kind, h.name) {
                            push(h.line.start as usize, h.line.end as usize, Out::Nothing);
                        }
                    }
                }
            }
        }
        patches.sort_unstable_by_key(|p| (p.start, p.seq));

        let method = match self.line {
            Line::Request {
                method, version, ..
            } => (&buf[method.range()], &buf[version.range()]),
            Line::Response { .. } => (&b""[..], &b""[..]),
        };
        let mut cursor = start;
        for p in &patches {
            let (ps, pe) = (p.start as usize, p.end as usize);
            if ps > cursor {
                out.extend_from_slice(&buf[cursor..ps]);
                cursor = ps;
            }
            match p.out {
                Out::Nothing => {}
                Out::Line(name, value) => {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
                Out::NumLine(name, n) => {
                    out.extend_from_slice(name);
                    out.extend_from_slice(b": ");
                    write_num(out, n);
                    out.extend_from_slice(b"\r\n");
                }
                Out::Bytes(b) => out.extend_from_slice(b),
                Out::Num(n) => write_num(out, n),
                Out::RequestLine(uri) => {
                    out.extend_from_slice(method.0);
                    out.push(b' ');
                    out.extend_from_slice(uri);
                    out.push(b' ');
                    out.extend_from_slice(method.1);
                    out.extend_from_slice(b"\r\n");
                }
                Out::Received(r) => {
                    out.extend_from_slice(b";received=");
                    out.extend_from_slice(r);
                }
                Out::Rport(port) => {
                    out.extend_from_slice(b"rport=");
                    write_num(out, u32::from(port));
                }
            }
            cursor = cursor.max(pe);
        }
        if cursor < end {
            out.extend_from_slice(&buf[cursor..end]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n\
v: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKb\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
X-Trace: 1\r\n\
x-trace: 2\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn apply(msg: &[u8], edits: &[Edit<'_>]) -> Vec<u8> {
        let m = Message::parse(msg).unwrap();
        let mut out = Vec::new();
        m.write(edits, &mut out);
        out
    }

    fn text(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    #[test]
    fn no_edits_is_identity() {
        assert_eq!(apply(INVITE, &[]), INVITE);
    }

    #[test]
    fn proxy_forwarding_edits() {
        let out = apply(
            INVITE,
            &[
                Edit::PrependVia(b"SIP/2.0/UDP proxy.example.com:5061;branch=z9hG4bKp"),
                Edit::SetViaReceived {
                    received: Some(b"192.0.2.7"),
                    rport: Some(5099),
                },
                Edit::PrependRecordRoute(b"<sip:proxy.example.com:5061;lr>"),
                Edit::RemoveTopRoute,
                Edit::ReplaceRequestUri(b"sip:bob@192.0.2.9:5070"),
                Edit::DecrementMaxForwards,
            ],
        );
        let want = "INVITE sip:bob@192.0.2.9:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example.com:5061;branch=z9hG4bKp\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport=5099;received=192.0.2.7, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n\
v: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKb\r\n\
Record-Route: <sip:proxy.example.com:5061;lr>\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p2.example.com;lr>\r\n\
Route: <sip:p3.example.com;lr>\r\n";
        assert!(text(&out).starts_with(want), "{}", text(&out));
        // The output parses and reads back what was written.
        let m = Message::parse(&out).unwrap();
        let r = m.routing().unwrap();
        assert_eq!(r.via.branch, Some(&b"z9hG4bKp"[..]));
        assert_eq!(r.max_forwards, Some(69));
        assert_eq!(r.route.unwrap().uri_raw, b"sip:p2.example.com;lr");
        assert_eq!(m.vias().count(), 4);
        assert_eq!(m.body(), b"v=0\n");
    }

    #[test]
    fn response_edits() {
        // A response: the top Via value goes, the line stays for the next.
        let out = apply(INVITE, &[Edit::RemoveTopVia]);
        let m = Message::parse(&out).unwrap();
        let vias: Vec<_> = m.vias().map(|v| v.unwrap().host.raw).collect();
        assert_eq!(vias, vec![&b"10.0.0.1"[..], b"10.0.0.2"]);
        // Twice: the first line is gone entirely.
        let out2 = apply(&out, &[Edit::RemoveTopVia]);
        assert!(text(&out2).contains("\r\nv: SIP/2.0/TCP 10.0.0.2"));
        assert!(!text(&out2).contains("Via:"));
        // Route lists shrink value by value, then line by line.
        let mut msg = INVITE.to_vec();
        for want in [2, 1, 0] {
            msg = apply(&msg, &[Edit::RemoveTopRoute]);
            assert_eq!(Message::parse(&msg).unwrap().routes().count(), want);
        }
        assert_eq!(apply(&msg, &[Edit::RemoveTopRoute]), msg);
    }

    #[test]
    fn header_edits() {
        let out = apply(
            INVITE,
            &[
                Edit::RemoveHeader(HeaderName::Named(b"X-TRACE")),
                Edit::ReplaceHeader {
                    name: HeaderKind::Via.into(),
                    value: b"SIP/2.0/UDP only.example.com;branch=z9hG4bKo",
                },
                Edit::AddHeader {
                    name: b"Supported",
                    value: b"path",
                },
                Edit::SetMaxForwards(10),
            ],
        );
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.headers_named(b"x-trace").count(), 0);
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.top_via().unwrap().host.raw, b"only.example.com");
        assert_eq!(m.supported().collect::<Vec<_>>(), vec![&b"path"[..]]);
        assert_eq!(m.max_forwards(), Ok(Some(10)));
        assert_eq!(m.body(), b"v=0\n");

        // Absent headers are added before the empty line.
        let bye = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        let out = apply(
            bye,
            &[
                Edit::DecrementMaxForwards,
                Edit::ReplaceHeader {
                    name: HeaderName::Named(b"Content-Length"),
                    value: b"0",
                },
            ],
        );
        assert_eq!(
            text(&out),
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        // ReplaceRequestUri normalises the extra white space of lwsstart.
        let m = b"INVITE  sip:user@example.com  SIP/2.0  \r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(
            text(&apply(
                m,
                &[Edit::ReplaceRequestUri(b"sip:user@example.com")]
            )),
            "INVITE sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n"
        );
        // Does nothing to a response.
        let r = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(apply(r, &[Edit::ReplaceRequestUri(b"sip:x")]), r);
    }

    #[test]
    fn output_buffer_is_appended_and_reusable() {
        let m = Message::parse(INVITE).unwrap();
        let mut out = b"prefix".to_vec();
        m.write(&[], &mut out);
        assert_eq!(&out[6..], INVITE);
        out.clear();
        m.write(&[Edit::DecrementMaxForwards], &mut out);
        assert!(text(&out).contains("Max-Forwards: 69\r\n"));
        let mut n = Vec::new();
        write_num(&mut n, 0);
        write_num(&mut n, u32::MAX);
        assert_eq!(n, b"04294967295");
    }
}
