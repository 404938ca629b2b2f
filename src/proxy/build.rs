//! The messages the proxy writes. Forwarded requests and responses go
//! through `sipring-parser`'s one-pass edit writer (its own Via and
//! Record-Route on top, received/rport on the previous hop's Via,
//! Max-Forwards decremented, the Route set and Request-URI as routing
//! decided; for a response, the top Via removed): untouched headers and the
//! body are copied verbatim. Responses the proxy generates itself, and the
//! CANCEL and hop-by-hop ACK of a branch, are assembled from the header
//! lines of the request they answer or follow.

use std::io::Write;

use sipring_parser::{Edit, HeaderKind, HeaderName};
use smallvec::SmallVec;

use super::inbound::{Msg, Parsed, Partial, Via, line_at, offset_in, parse};
use super::route::{Identity, Plan, parse_ip};
use crate::engine::{Received, Transport};

/// Appends `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
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

/// A small stack buffer for the values the edits refer to.
type Scratch = SmallVec<[u8; 256]>;

/// What §18.2.1 and RFC 3581 add to the top Via of a request from `rx`:
/// `received` (the source IP, when it differs from sent-by, or always when
/// rport is asked for) and the rport value.
fn received_for(via: &Via<'_>, rx: &Received<'_>, ip: &mut Scratch) -> (bool, Option<u16>) {
    let src = rx.peer.addr;
    let bare_rport = via.rport == Some(None);
    let same_host = parse_ip(via.host) == Some(src.ip());
    let add = via.received.is_none() && (!same_host || bare_rport);
    if add {
        // Formatted on the stack: no allocation.
        let _ = write!(ip, "{}", src.ip());
    }
    (add, bare_rport.then_some(src.port()))
}

/// The forwarded request (§16.6 steps 1–8).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_request(
    out: &mut Vec<u8>,
    m: &Msg<'_>,
    me: &Identity,
    plan: &Plan<'_>,
    branch: &[u8],
    transport: Transport,
    rx: Received<'_>,
    record_route: bool,
) {
    let mut via = Scratch::new();
    via.extend_from_slice(me.via_value(transport));
    via.extend_from_slice(branch);
    let mut ip = Scratch::new();
    let (received, rport) = received_for(m.top_via(), &rx, &mut ip);
    let mut appended = Scratch::new();
    let mut length = Scratch::new();
    let mut edits: SmallVec<[Edit<'_>; 12]> = SmallVec::new();
    if let Some(uri) = plan.request_uri {
        edits.push(Edit::ReplaceRequestUri(uri));
    }
    edits.push(Edit::PrependVia(&via));
    if received || rport.is_some() {
        edits.push(Edit::SetViaReceived {
            received: received.then_some(&ip[..]),
            rport,
        });
    }
    if record_route {
        edits.push(Edit::PrependRecordRoute(me.record_route_value(transport)));
    }
    edits.push(Edit::DecrementMaxForwards);
    if let Some(routes) = &plan.routes {
        let original: SmallVec<[&[u8]; 4]> = m.routes().map(|r| r.raw).collect();
        if !original.is_empty() && routes[..] == original[1..] {
            edits.push(Edit::RemoveTopRoute);
        } else {
            edits.push(Edit::RemoveHeader(HeaderName::Kind(HeaderKind::Route)));
            for r in routes {
                edits.push(Edit::AddHeader {
                    name: b"Route",
                    value: r,
                });
            }
        }
    }
    if let Some(uri) = plan.append_route {
        appended.push(b'<');
        appended.extend_from_slice(uri);
        appended.push(b'>');
        edits.push(Edit::AddHeader {
            name: b"Route",
            value: &appended,
        });
    }
    if transport == Transport::Tcp && m.pm.content_length().is_none() {
        let _ = write!(length, "{}", m.pm.body().len());
        edits.push(Edit::AddHeader {
            name: b"Content-Length",
            value: &length,
        });
    }
    m.pm.write(&edits, out);
}

/// A response forwarded upstream: the top Via value (ours) removed.
pub(crate) fn forward_response(out: &mut Vec<u8>, m: &Msg<'_>) {
    m.pm.write(&[Edit::RemoveTopVia], out);
}

fn status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"SIP/2.0 ");
    push_u64(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn to_line(out: &mut Vec<u8>, line: &[u8], has_tag: bool, code: u16, tag: &[u8]) {
    if has_tag || code == 100 {
        out.extend_from_slice(line);
        return;
    }
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    out.extend_from_slice(body.trim_ascii_end());
    out.extend_from_slice(b";tag=");
    out.extend_from_slice(tag);
    out.extend_from_slice(b"\r\n");
}

/// Where a bare `rport` parameter name ends in a via-parm.
fn bare_rport_end(raw: &[u8]) -> Option<usize> {
    let mut from = 0;
    // A search for 'r' then a compare: via-parms are short, and
    // memmem::find would build a searcher per call.
    while let Some(i) = memchr::memchr(b'r', &raw[from..]) {
        let at = from + i;
        let end = at + 5;
        if !raw[at..].starts_with(b"rport") {
            from = at + 1;
            continue;
        }
        let before = raw[..at].trim_ascii_end();
        let after = raw[end..].trim_ascii_start();
        if before.ends_with(b";") && !after.starts_with(b"=") {
            return Some(end);
        }
        from = end;
    }
    None
}

/// Writes the line holding the top Via with `received`/`rport` filled in.
fn top_via_line(out: &mut Vec<u8>, m: &Msg<'_>, line: &[u8], line_start: usize, rx: &Received<'_>) {
    let via = m.top_via();
    let at = offset_in(m.bytes, via.raw) - line_start;
    let via_end = at + via.raw.len();
    if via_end > line.len() {
        out.extend_from_slice(line);
        return;
    }
    let mut ip = Scratch::new();
    let (received, rport) = received_for(via, rx, &mut ip);
    let mut copied = 0;
    if let (Some(port), Some(end)) = (rport, bare_rport_end(via.raw)) {
        out.extend_from_slice(&line[..at + end]);
        out.push(b'=');
        push_u64(out, u64::from(port));
        copied = at + end;
    }
    out.extend_from_slice(&line[copied..via_end]);
    if received {
        out.extend_from_slice(b";received=");
        out.extend_from_slice(&ip);
    }
    out.extend_from_slice(&line[via_end..]);
}

/// A response this proxy generates for request `m` (§8.2.6: Via, From, To
/// with a tag, Call-ID and CSeq copied).
pub(crate) fn local_response(
    out: &mut Vec<u8>,
    m: &Msg<'_>,
    rx: Received<'_>,
    code: u16,
    reason: &str,
    tag: &[u8],
    extra: &[u8],
) {
    response_from(out, m, Some(&rx), code, reason, tag, extra);
}

fn response_from(
    out: &mut Vec<u8>,
    m: &Msg<'_>,
    rx: Option<&Received<'_>>,
    code: u16,
    reason: &str,
    tag: &[u8],
    extra: &[u8],
) {
    status_line(out, code, reason);
    let top = line_at(&m.pm, offset_in(m.bytes, m.top_via().raw)).map(|s| s.start);
    for h in m.pm.headers() {
        let line = &m.bytes[h.line.range()];
        match h.kind {
            HeaderKind::Via if Some(h.line.start) == top => match rx {
                Some(rx) => top_via_line(out, m, line, h.line.start as usize, rx),
                None => out.extend_from_slice(line),
            },
            HeaderKind::Via | HeaderKind::From | HeaderKind::CallId | HeaderKind::CSeq => {
                out.extend_from_slice(line);
            }
            HeaderKind::To => to_line(out, line, m.to_tag.is_some(), code, tag),
            _ => {}
        }
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// A response generated for a call, from the request it kept.
pub(crate) fn call_response(
    out: &mut Vec<u8>,
    request: &[u8],
    code: u16,
    reason: &str,
    tag: &[u8],
    extra: &[u8],
) {
    if let Ok(Parsed::Request(m)) = parse(request) {
        response_from(out, &m, None, code, reason, tag, extra);
    }
}

/// An answer to a request too broken to parse fully: its Via, From, To,
/// Call-ID and CSeq lines as they are.
pub(crate) fn partial_response(
    out: &mut Vec<u8>,
    m: &Partial<'_>,
    code: u16,
    reason: &str,
    tag: &[u8],
) {
    status_line(out, code, reason);
    let bytes = m.pm.buffer();
    for h in m.pm.headers() {
        let line = &bytes[h.line.range()];
        match h.kind {
            HeaderKind::Via | HeaderKind::From | HeaderKind::CallId | HeaderKind::CSeq => {
                out.extend_from_slice(line);
            }
            HeaderKind::To => {
                let has_tag = line.windows(5).any(|w| w.eq_ignore_ascii_case(b";tag="));
                to_line(out, line, has_tag, code, tag);
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// Request line, top Via and Route lines, Max-Forwards, From, To, Call-ID
/// and CSeq of a CANCEL or ACK for a branch's forwarded request (§9.1,
/// §17.1.1.3).
fn branch_request(out: &mut Vec<u8>, fwd: &Msg<'_>, method: &[u8], to: Option<&[u8]>) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(fwd.request_uri_raw());
    out.extend_from_slice(b" SIP/2.0\r\n");
    // Our Via: the first Via line of what we forwarded, alone on it.
    if let Some(via) = fwd.lines(HeaderKind::Via).next() {
        out.extend_from_slice(via);
    }
    for line in fwd.lines(HeaderKind::Route) {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    for line in fwd.lines(HeaderKind::From) {
        out.extend_from_slice(line);
    }
    match to {
        Some(to) => out.extend_from_slice(to),
        None => {
            for line in fwd.lines(HeaderKind::To) {
                out.extend_from_slice(line);
            }
        }
    }
    for line in fwd.lines(HeaderKind::CallId) {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"CSeq: ");
    push_u64(out, u64::from(fwd.cseq));
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}

/// The CANCEL for a forwarded INVITE.
pub(crate) fn cancel(out: &mut Vec<u8>, forwarded: &[u8]) {
    if let Ok(Parsed::Request(fwd)) = parse(forwarded) {
        branch_request(out, &fwd, b"CANCEL", None);
    }
}

/// The hop-by-hop ACK for a 300–699 response to a forwarded INVITE: its To
/// is the response's (with the tag).
pub(crate) fn ack(out: &mut Vec<u8>, forwarded: &[u8], response: &Msg<'_>) {
    if let Ok(Parsed::Request(fwd)) = parse(forwarded) {
        let to = response.lines(HeaderKind::To).next();
        branch_request(out, &fwd, b"ACK", to);
    }
}

/// Rewrites a request this proxy forwarded over TCP to go over UDP: our
/// Via and Record-Route values take their UDP forms. False if it holds no
/// Via of ours for TCP.
pub(crate) fn retarget_to_udp(request: &mut Vec<u8>, me: &Identity) -> bool {
    let (tcp_via, udp_via) = (me.via_value(Transport::Tcp), me.via_value(Transport::Udp));
    let Some(at) = memchr::memmem::find(request, tcp_via) else {
        return false;
    };
    request.splice(at..at + tcp_via.len(), udp_via.iter().copied());
    let (tcp_rr, udp_rr) = (
        me.record_route_value(Transport::Tcp),
        me.record_route_value(Transport::Udp),
    );
    if let Some(at) = memchr::memmem::find(request, tcp_rr) {
        request.splice(at..at + tcp_rr.len(), udp_rr.iter().copied());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::bare_rport_end;

    #[test]
    fn finds_a_bare_rport() {
        assert_eq!(
            bare_rport_end(b"SIP/2.0/UDP h;branch=z9hG4bK1;rport"),
            Some(35)
        );
        assert_eq!(bare_rport_end(b"SIP/2.0/UDP h;rport ;branch=x"), Some(19));
        assert_eq!(bare_rport_end(b"SIP/2.0/UDP h;rport=5060"), None);
        assert_eq!(bare_rport_end(b"SIP/2.0/UDP rport.example.com;x=1"), None);
    }
}
