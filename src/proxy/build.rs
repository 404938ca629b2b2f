//! The messages the proxy writes: a forwarded request (its own Via and
//! Record-Route on top, received/rport on the previous hop's Via,
//! Max-Forwards decremented, the Route set and Request-URI as routing
//! decided), a forwarded response (its top Via removed), responses it
//! generates itself, and the CANCEL and hop-by-hop ACK of a branch.
//!
//! Edits are applied while the message is copied, in one pass over the
//! original bytes (Kamailio's "lumps"): untouched headers and the body are
//! copied verbatim, nothing is re-serialised.

use std::io::Write;

use super::inbound::{Hdr, Msg, Parsed, Partial, Start, parse};
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

/// Writes the top Via value with `received` (when the source IP differs
/// from sent-by) and the `rport` value (when asked for), per §18.2.1 and
/// RFC 3581; the rest of its line verbatim.
fn write_top_via_line(out: &mut Vec<u8>, m: &Msg<'_>, rx: Option<&Received<'_>>) {
    let via = m.top_via();
    let line = &m.headers[via.header].line;
    let Some(rx) = rx else {
        out.extend_from_slice(&m.bytes[line.clone()]);
        return;
    };
    let src = rx.peer.addr;
    let mut at = line.start;
    if let Some(rport) = &via.rport_span {
        out.extend_from_slice(&m.bytes[at..rport.end]);
        out.push(b'=');
        push_u64(out, u64::from(src.port()));
        at = rport.end;
    }
    out.extend_from_slice(&m.bytes[at..via.span.end]);
    // RFC 3581: with rport, received is added even when it equals sent-by.
    let same_host = parse_ip(via.host) == Some(src.ip());
    if via.received.is_none() && (!same_host || via.rport == Some(None)) {
        out.extend_from_slice(b";received=");
        // Formatted straight into the buffer: no allocation.
        let _ = write!(out, "{}", src.ip());
    }
    out.extend_from_slice(&m.bytes[via.span.end..line.end]);
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
    let Start::Request { method, .. } = m.start else {
        return;
    };
    match plan.request_uri {
        Some(uri) => {
            out.extend_from_slice(method);
            out.push(b' ');
            out.extend_from_slice(uri);
            out.extend_from_slice(b" SIP/2.0\r\n");
        }
        None => {
            out.extend_from_slice(&m.bytes[m.start_line.clone()]);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(me.via_prefix(transport));
    out.extend_from_slice(branch);
    out.extend_from_slice(b"\r\n");
    if record_route {
        out.extend_from_slice(me.record_route(transport));
    }
    if m.max_forwards.is_none() {
        out.extend_from_slice(b"Max-Forwards: 70\r\n");
    }
    let mut routes_written = plan.routes.is_none();
    let write_routes = |out: &mut Vec<u8>| {
        if let Some(routes) = &plan.routes {
            for r in routes {
                out.extend_from_slice(b"Route: ");
                out.extend_from_slice(r);
                out.extend_from_slice(b"\r\n");
            }
        }
    };
    for (i, h) in m.headers.iter().enumerate() {
        match h.kind {
            Hdr::Via if i == m.top_via().header => write_top_via_line(out, m, Some(&rx)),
            Hdr::MaxForwards => {
                let n = m.max_forwards.unwrap_or(70).saturating_sub(1);
                out.extend_from_slice(b"Max-Forwards: ");
                push_u64(out, u64::from(n));
                out.extend_from_slice(b"\r\n");
            }
            Hdr::Route if plan.routes.is_some() => {
                if !routes_written {
                    write_routes(out);
                    routes_written = true;
                }
            }
            _ => out.extend_from_slice(&m.bytes[h.line.clone()]),
        }
    }
    if !routes_written {
        write_routes(out);
    }
    if let Some(uri) = plan.append_route {
        out.extend_from_slice(b"Route: <");
        out.extend_from_slice(uri);
        out.extend_from_slice(b">\r\n");
    }
    if !m.has_content_length && transport == Transport::Tcp {
        let _ = write!(out, "Content-Length: {}\r\n", m.body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&m.bytes[m.body.clone()]);
}

/// A response forwarded upstream: the top Via value (ours) removed.
pub(crate) fn forward_response(out: &mut Vec<u8>, m: &Msg<'_>) {
    let via = m.top_via();
    let line = &m.headers[via.header].line;
    out.extend_from_slice(&m.bytes[..line.start]);
    if !via.alone {
        // "Via: ours, next" -> "Via: next"
        let value_start = m.headers[via.header].value.start;
        out.extend_from_slice(&m.bytes[line.start..value_start]);
        let mut rest = via.span.end;
        while rest < line.end && matches!(m.bytes[rest], b',' | b' ' | b'\t' | b'\r' | b'\n') {
            rest += 1;
        }
        out.extend_from_slice(&m.bytes[rest..line.end]);
    }
    out.extend_from_slice(&m.bytes[line.end..m.headers_end + 2]);
    out.extend_from_slice(&m.bytes[m.body.clone()]);
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
    for (i, h) in m.headers.iter().enumerate() {
        let line = &m.bytes[h.line.clone()];
        match h.kind {
            Hdr::Via if i == m.top_via().header => write_top_via_line(out, m, rx),
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => out.extend_from_slice(line),
            Hdr::To => to_line(out, line, m.to_tag.is_some(), code, tag),
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
) {
    if let Ok(Parsed::Request(m)) = parse(request) {
        response_from(out, &m, None, code, reason, tag, &[]);
    }
}

/// An answer to a request too broken to parse fully: its Via, From, To,
/// Call-ID and CSeq lines as they are.
pub(crate) fn partial_response(
    out: &mut Vec<u8>,
    m: &Partial<'_>,
    rx: Received<'_>,
    code: u16,
    reason: &str,
    tag: &[u8],
) {
    let _ = rx;
    status_line(out, code, reason);
    for h in &m.headers {
        let line = &m.bytes[h.line.clone()];
        match h.kind {
            Hdr::Via | Hdr::From | Hdr::CallId | Hdr::CSeq => out.extend_from_slice(line),
            Hdr::To => {
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
    // Our Via is the first line of what we forwarded, alone on it.
    out.extend_from_slice(&fwd.bytes[fwd.headers[fwd.top_via().header].line.clone()]);
    for line in fwd.lines(Hdr::Route) {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    for line in fwd.lines(Hdr::From) {
        out.extend_from_slice(line);
    }
    match to {
        Some(to) => out.extend_from_slice(to),
        None => {
            for line in fwd.lines(Hdr::To) {
                out.extend_from_slice(line);
            }
        }
    }
    for line in fwd.lines(Hdr::CallId) {
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
        let to = response.lines(Hdr::To).next();
        branch_request(out, &fwd, b"ACK", to);
    }
}

/// Rewrites a request this proxy forwarded over TCP to go over UDP: our Via
/// (the line after the start line) and our Record-Route (the line after
/// it, if any) take their UDP forms. False if the request does not start
/// with our TCP Via.
pub(crate) fn retarget_to_udp(request: &mut Vec<u8>, me: &Identity) -> bool {
    let Some(first) = memchr::memmem::find(request, b"\r\n") else {
        return false;
    };
    let via_at = first + 2;
    if !request[via_at..].starts_with(me.via_prefix(Transport::Tcp)) {
        return false;
    }
    let tcp_via = me.via_prefix(Transport::Tcp).len();
    request.splice(
        via_at..via_at + tcp_via,
        me.via_prefix(Transport::Udp).iter().copied(),
    );
    let Some(via_end) = memchr::memmem::find(&request[via_at..], b"\r\n") else {
        return true;
    };
    let rr_at = via_at + via_end + 2;
    let rr_tcp = me.record_route(Transport::Tcp);
    if request[rr_at..].starts_with(rr_tcp) {
        request.splice(
            rr_at..rr_at + rr_tcp.len(),
            me.record_route(Transport::Udp).iter().copied(),
        );
    }
    true
}
