//! RFC 3261 §10.3 processing of a REGISTER, as pure functions: the checks
//! that need neither the user nor the bindings ([`check`]), the change to
//! the bindings ([`plan`]: add, refresh, remove, `*`, Expires header and
//! parameter, 423 with Min-Expires, Call-ID/CSeq ordering, q, Path, RFC
//! 5626 instance and reg-id), and the 200 OK's header lines ([`ok_headers`]).

use std::io::Write as _;

use sipring_parser::{ContactValue, Message, Uri};

use crate::store::{Binding, BindingUpdate};

/// The registrar's limits (from `[registrar]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Shorter non-zero expirations get 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer expirations are cut to this.
    pub max_expires: u32,
    /// The expiration when the request gives none.
    pub default_expires: u32,
    /// Most bindings per AOR (403 past it).
    pub max_contacts: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_expires: 60,
            max_expires: 86_400,
            default_expires: 3_600,
            max_contacts: 16,
        }
    }
}

/// A refused REGISTER: the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Status.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Extra header lines.
    pub headers: Vec<u8>,
}

fn reject(code: u16, reason: &'static str) -> Reject {
    Reject {
        code,
        reason,
        headers: Vec::new(),
    }
}

/// One Contact of the REGISTER.
#[derive(Clone, Debug)]
pub struct ContactReq<'a> {
    /// The URI as written (no `< >`, no contact parameters).
    pub uri: &'a [u8],
    /// `expires` parameter.
    pub expires: Option<u32>,
    /// `q` in thousandths.
    pub q: Option<u16>,
    /// `+sip.instance`.
    pub instance: Option<&'a [u8]>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
}

/// What the REGISTER says, checked.
#[derive(Clone, Debug)]
pub struct RegisterReq<'a> {
    /// The AOR's user part (To).
    pub user: &'a [u8],
    /// The AOR's host (To), as written.
    pub host: &'a [u8],
    /// The AOR, `user@host` (host in lower case).
    pub aor: String,
    /// `Contact: *`.
    pub star: bool,
    /// The other Contacts.
    pub contacts: Vec<ContactReq<'a>>,
    /// The Expires header.
    pub expires: Option<u32>,
    /// Call-ID.
    pub call_id: &'a [u8],
    /// CSeq number.
    pub cseq: u32,
    /// Path values, in order.
    pub path: Vec<&'a [u8]>,
    /// The UA supports Path (RFC 3327: echo it in the 200 OK).
    pub path_supported: bool,
}

impl RegisterReq<'_> {
    /// The AOR, `user@host` (host in lower case).
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// The Path header lines the 200 OK echoes (RFC 3327: only to a UA
    /// that supports Path), each ending in CRLF.
    pub fn path_lines(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.path_supported {
            for p in &self.path {
                out.extend_from_slice(b"Path: ");
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

/// `user@host` with the host in lower case (bytes that are not UTF-8
/// become U+FFFD).
pub fn aor_of(user: &[u8], host: &[u8]) -> String {
    let mut s = String::with_capacity(user.len() + 1 + host.len());
    match std::str::from_utf8(user) {
        Ok(u) => s.push_str(u),
        Err(_) => s.push_str(&String::from_utf8_lossy(user)),
    }
    s.push('@');
    let at = s.len();
    match std::str::from_utf8(host) {
        Ok(h) => s.push_str(h),
        Err(_) => s.push_str(&String::from_utf8_lossy(host)),
    }
    s[at..].make_ascii_lowercase();
    s
}

/// Option tags the registrar supports in Require.
const SUPPORTED: [&[u8]; 2] = [b"path", b"outbound"];

/// The checks of a REGISTER that need no store: a SIP AOR with a user
/// part (RFC 4475 `unksm2`: 400), SIP Contacts in valid syntax (400), `*`
/// alone and with Expires 0 (400), Require (420).
pub fn check<'a>(m: &Message<'a>) -> Result<RegisterReq<'a>, Reject> {
    let to = m.to().map_err(|_| reject(400, "Malformed To"))?;
    let Ok(Uri::Sip(aor)) = to.uri() else {
        return Err(reject(400, "Invalid AOR: Not A SIP URI"));
    };
    let Some(user) = aor.user.filter(|u| !u.is_empty()) else {
        return Err(reject(400, "Invalid AOR: No User"));
    };
    let mut unsupported = Vec::new();
    for tag in m.require() {
        if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)) {
            if !unsupported.is_empty() {
                unsupported.extend_from_slice(b", ");
            }
            unsupported.extend_from_slice(tag);
        }
    }
    if !unsupported.is_empty() {
        let mut headers = b"Unsupported: ".to_vec();
        headers.extend_from_slice(&unsupported);
        headers.extend_from_slice(b"\r\n");
        return Err(Reject {
            code: 420,
            reason: "Bad Extension",
            headers,
        });
    }
    let expires = m.expires().map_err(|_| reject(400, "Malformed Expires"))?;
    let call_id = m.call_id().map_err(|_| reject(400, "Malformed Call-ID"))?;
    let cseq = m.cseq().map_err(|_| reject(400, "Malformed CSeq"))?.number;
    let mut star = false;
    let mut contacts = Vec::new();
    for c in m.contacts() {
        match c.map_err(|_| reject(400, "Malformed Contact"))? {
            ContactValue::Star => star = true,
            ContactValue::Addr(c) => {
                if let Some(l) = c.addr.lints.first_violation() {
                    return Err(reject(400, l.reason()));
                }
                match c.addr.uri() {
                    Ok(Uri::Sip(_)) => {}
                    Ok(_) => return Err(reject(400, "Unsupported Contact URI Scheme")),
                    Err(_) => return Err(reject(400, "Malformed Contact URI")),
                }
                contacts.push(ContactReq {
                    uri: c.addr.uri_raw,
                    expires: c.expires,
                    q: c.q,
                    instance: c.instance,
                    reg_id: c.reg_id,
                });
            }
        }
    }
    if star && (!contacts.is_empty() || expires != Some(0)) {
        return Err(reject(400, "Invalid Contact: *"));
    }
    let mut path = Vec::new();
    for p in m.paths() {
        path.push(p.map_err(|_| reject(400, "Malformed Path"))?.raw);
    }
    let path_supported = m.supported().any(|t| t.eq_ignore_ascii_case(b"path"))
        || m.require().any(|t| t.eq_ignore_ascii_case(b"path"));
    Ok(RegisterReq {
        user,
        host: aor.host.raw,
        aor: aor_of(user, aor.host.raw),
        star,
        contacts,
        expires,
        call_id,
        cseq,
        path,
        path_supported,
    })
}

/// Who registers, from where, when.
#[derive(Clone, Debug)]
pub struct Origin<'a> {
    /// This node's id.
    pub node: &'a str,
    /// The core handling the REGISTER.
    pub core: u16,
    /// Where it came from (`udp:IP:PORT`).
    pub source: String,
    /// Wall-clock ms now.
    pub wall_ms: i64,
}

/// What to do with the bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No Contact: answer with the current bindings.
    Query,
    /// Write this, then answer with the result.
    Update(BindingUpdate),
}

fn same_uri(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (
        sipring_parser::SipUri::parse(a),
        sipring_parser::SipUri::parse(b),
    ) {
        (Ok(x), Ok(y)) => x.equivalent(&y),
        _ => a == b,
    }
}

/// §10.3 steps 6-7 over the AOR's live bindings `existing`.
pub fn plan(
    r: &RegisterReq<'_>,
    existing: &[&Binding],
    rules: &Rules,
    origin: &Origin<'_>,
) -> Result<Plan, Reject> {
    let call_id = String::from_utf8_lossy(r.call_id);
    let out_of_order = |b: &Binding| b.call_id == call_id && r.cseq <= b.cseq;
    if r.star {
        if existing.iter().any(|b| out_of_order(b)) {
            return Err(reject(500, "Out Of Order Request"));
        }
        return Ok(Plan::Update(BindingUpdate {
            remove_all: true,
            ..BindingUpdate::default()
        }));
    }
    if r.contacts.is_empty() {
        return Ok(Plan::Query);
    }
    let aor = r.aor();
    let mut update = BindingUpdate::default();
    let mut count = existing.len();
    for c in &r.contacts {
        let expires = c.expires.or(r.expires).unwrap_or(rules.default_expires);
        if expires != 0 && expires < rules.min_expires {
            return Err(Reject {
                code: 423,
                reason: "Interval Too Brief",
                headers: format!("Min-Expires: {}\r\n", rules.min_expires).into_bytes(),
            });
        }
        let expires = expires.min(rules.max_expires);
        let old = existing
            .iter()
            .find(|b| same_uri(b.contact.as_bytes(), c.uri));
        if let Some(b) = old {
            if out_of_order(b) {
                return Err(reject(500, "Out Of Order Request"));
            }
        }
        if expires == 0 {
            if let Some(b) = old {
                update.remove.push(b.contact.clone());
                count -= 1;
            }
            continue;
        }
        // RFC 5626: the same instance and reg-id is the same flow; its
        // older contact goes.
        if let (Some(inst), Some(reg)) = (c.instance, c.reg_id) {
            let inst = String::from_utf8_lossy(inst);
            for b in existing {
                let same_flow = b.instance.as_deref() == Some(&*inst) && b.reg_id == Some(reg);
                if same_flow
                    && !same_uri(b.contact.as_bytes(), c.uri)
                    && !update.remove.contains(&b.contact)
                {
                    update.remove.push(b.contact.clone());
                    count -= 1;
                }
            }
        }
        let key = match old {
            Some(b) => b.contact.clone(),
            None => String::from_utf8_lossy(c.uri).into_owned(),
        };
        if old.is_none() {
            count += 1;
        }
        update.put.retain(|p: &Binding| p.contact != key);
        update.put.push(Binding {
            aor: aor.to_owned(),
            contact: key,
            node: origin.node.to_owned(),
            core: origin.core,
            path: r
                .path
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            instance: c.instance.map(|i| String::from_utf8_lossy(i).into_owned()),
            reg_id: c.reg_id,
            q_milli: c.q.unwrap_or(1000),
            call_id: call_id.clone().into_owned(),
            cseq: r.cseq,
            expires_at_ms: origin.wall_ms + i64::from(expires) * 1000,
            source: Some(origin.source.clone()),
        });
    }
    if count > rules.max_contacts {
        return Err(reject(403, "Too Many Contacts"));
    }
    Ok(Plan::Update(update))
}

/// The 200 OK's header lines: every live binding with its remaining
/// expiry (and q when not 1), the Path when the UA supports it, Date.
pub fn ok_headers(bindings: &[&Binding], r: &RegisterReq<'_>, wall_ms: i64) -> Vec<u8> {
    let mut out = Vec::new();
    write_ok_headers(
        &mut out,
        bindings,
        &r.path_lines(),
        wall_ms,
        &http_date(wall_ms),
    );
    out
}

/// [`ok_headers`] into `out`, from the Path lines
/// ([`RegisterReq::path_lines`]) and the Date ([`http_date`]) already
/// written, so that the registrar keeps neither the request nor the
/// formatting machinery around for the answer.
pub fn write_ok_headers(
    out: &mut Vec<u8>,
    bindings: &[&Binding],
    path_lines: &[u8],
    wall_ms: i64,
    date: &str,
) {
    out.reserve(64 + 96 * bindings.len() + path_lines.len());
    for b in bindings {
        let left = ((b.expires_at_ms - wall_ms).max(0) + 999) / 1000;
        out.extend_from_slice(b"Contact: <");
        out.extend_from_slice(b.contact.as_bytes());
        out.extend_from_slice(b">;expires=");
        push_decimal(out, left as u64);
        if b.q_milli != 1000 {
            let _ = write!(out, ";q={}.{:03}", b.q_milli / 1000, b.q_milli % 1000);
        }
        if let Some(i) = &b.instance {
            out.extend_from_slice(b";+sip.instance=\"");
            out.extend_from_slice(i.as_bytes());
            out.push(b'"');
        }
        if let Some(reg) = b.reg_id {
            out.extend_from_slice(b";reg-id=");
            push_decimal(out, u64::from(reg));
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(path_lines);
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// An RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`), the form SIP's Date
/// header takes (RFC 3261 §20.17).
pub fn http_date(wall_ms: i64) -> String {
    let secs = wall_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[weekday as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn reg(extra: &str, cseq: u32) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{cseq}\r\n\
             To: <sip:bob@Example.com>\r\nFrom: <sip:bob@example.com>;tag=1\r\n\
             Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn origin() -> Origin<'static> {
        Origin {
            node: "n1",
            core: 2,
            source: "udp:192.0.2.1:5060".into(),
            wall_ms: NOW,
        }
    }

    fn run(extra: &str, cseq: u32, existing: &[&Binding]) -> Result<Plan, Reject> {
        let bytes = reg(extra, cseq);
        let m = Message::parse(&bytes).unwrap();
        let r = check(&m)?;
        plan(&r, existing, &Rules::default(), &origin())
    }

    fn puts(p: Result<Plan, Reject>) -> Vec<Binding> {
        match p {
            Ok(Plan::Update(u)) => u.put,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn adds_with_expires_header_parameter_default_and_q() {
        let p = puts(run(
            "Contact: <sip:bob@10.0.0.1>;q=0.5, <sip:bob@10.0.0.2>;expires=120\r\nExpires: 600\r\n",
            1,
            &[],
        ));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].aor, "bob@example.com");
        assert_eq!(p[0].contact, "sip:bob@10.0.0.1");
        assert_eq!((p[0].q_milli, p[0].expires_at_ms), (500, NOW + 600_000));
        assert_eq!((p[1].q_milli, p[1].expires_at_ms), (1000, NOW + 120_000));
        assert_eq!((p[0].node.as_str(), p[0].core), ("n1", 2));
        assert_eq!(p[0].source.as_deref(), Some("udp:192.0.2.1:5060"));
        let p = puts(run("Contact: <sip:bob@10.0.0.1>\r\n", 1, &[]));
        assert_eq!(p[0].expires_at_ms, NOW + 3_600_000, "the default");
        let p = puts(run(
            "Contact: <sip:bob@10.0.0.1>\r\nExpires: 999999\r\n",
            1,
            &[],
        ));
        assert_eq!(p[0].expires_at_ms, NOW + 86_400_000, "capped");
    }

    #[test]
    fn too_brief_is_423_with_min_expires() {
        let r = run("Contact: <sip:bob@10.0.0.1>;expires=30\r\n", 1, &[]).unwrap_err();
        assert_eq!((r.code, r.reason), (423, "Interval Too Brief"));
        assert_eq!(r.headers, b"Min-Expires: 60\r\n");
    }

    #[test]
    fn call_id_and_cseq_ordering() {
        let b = puts(run("Contact: <sip:bob@10.0.0.1>\r\n", 5, &[])).remove(0);
        // Same Call-ID, lower or equal CSeq: refused.
        let r = run("Contact: <sip:bob@10.0.0.1>\r\n", 5, &[&b]).unwrap_err();
        assert_eq!(r.code, 500);
        assert_eq!(
            run("Contact: <sip:bob@10.0.0.1>\r\n", 4, &[&b])
                .unwrap_err()
                .code,
            500
        );
        // Higher: a refresh of the same row (equivalent URI, kept key).
        let p = puts(run("Contact: <sip:bob@10.0.0.1;lr>\r\n", 6, &[&b]));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].cseq, 6);
        // Another Call-ID: any CSeq.
        let mut other = b.clone();
        other.call_id = "another".into();
        other.cseq = 100;
        assert_eq!(
            puts(run("Contact: <sip:bob@10.0.0.1>\r\n", 1, &[&other])).len(),
            1
        );
    }

    #[test]
    fn removal_star_and_query() {
        let b = puts(run("Contact: <sip:bob@10.0.0.1>\r\n", 1, &[])).remove(0);
        let Ok(Plan::Update(u)) = run("Contact: <sip:bob@10.0.0.1>;expires=0\r\n", 2, &[&b]) else {
            panic!()
        };
        assert_eq!(
            (u.remove, u.put.len()),
            (vec!["sip:bob@10.0.0.1".to_owned()], 0)
        );
        let Ok(Plan::Update(u)) = run("Contact: *\r\nExpires: 0\r\n", 2, &[&b]) else {
            panic!()
        };
        assert!(u.remove_all);
        assert_eq!(
            run("Contact: *\r\nExpires: 0\r\n", 1, &[&b])
                .unwrap_err()
                .code,
            500
        );
        assert_eq!(run("Contact: *\r\n", 2, &[]).unwrap_err().code, 400);
        assert_eq!(
            run("Contact: *, <sip:a@b>\r\nExpires: 0\r\n", 2, &[])
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(run("", 2, &[&b]), Ok(Plan::Query));
    }

    #[test]
    fn path_instance_and_reg_id_are_kept_and_flows_replaced() {
        let p = puts(run(
            "Path: <sip:edge1;lr>, <sip:edge2;lr>\r\n\
             Contact: <sip:bob@10.0.0.1>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n",
            1,
            &[],
        ));
        assert_eq!(p[0].path, vec!["<sip:edge1;lr>", "<sip:edge2;lr>"]);
        assert_eq!(
            (p[0].instance.as_deref(), p[0].reg_id),
            (Some("<urn:uuid:1>"), Some(1))
        );
        let old = p[0].clone();
        let Ok(Plan::Update(u)) = run(
            "Contact: <sip:bob@10.0.0.9>;+sip.instance=\"<urn:uuid:1>\";reg-id=1\r\n",
            2,
            &[&old],
        ) else {
            panic!()
        };
        assert_eq!(u.remove, vec!["sip:bob@10.0.0.1".to_owned()]);
        assert_eq!(u.put[0].contact, "sip:bob@10.0.0.9");
    }

    #[test]
    fn bad_registers() {
        // RFC 4475 unksm2: a non-SIP AOR and Contact.
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/parser/tests/data/rfc4475/unksm2.dat"
        ))
        .unwrap();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(check(&m).unwrap_err().code, 400);
        let r = run("Contact: <mailto:bob@example.com>\r\n", 1, &[]).unwrap_err();
        assert_eq!((r.code, r.reason), (400, "Unsupported Contact URI Scheme"));
        let r = run("Require: path, foo\r\nContact: <sip:a@b>\r\n", 1, &[]).unwrap_err();
        assert_eq!((r.code, r.headers), (420, b"Unsupported: foo\r\n".to_vec()));
        assert_eq!(run("Expires: soon\r\n", 1, &[]).unwrap_err().code, 400);
        // Too many contacts.
        let many: String = (0..17)
            .map(|i| format!("Contact: <sip:b@10.0.0.{i}>\r\n"))
            .collect();
        assert_eq!(run(&many, 1, &[]).unwrap_err().code, 403);
    }

    #[test]
    fn the_ok_lists_bindings_path_and_date() {
        let p = puts(run(
            "Supported: path\r\nPath: <sip:edge;lr>\r\nContact: <sip:bob@10.0.0.1>;q=0.7;expires=100\r\n",
            1,
            &[],
        ));
        let bytes = reg("Supported: path\r\nPath: <sip:edge;lr>\r\n", 1);
        let m = Message::parse(&bytes).unwrap();
        let r = check(&m).unwrap();
        let h = String::from_utf8(ok_headers(&[&p[0]], &r, NOW + 40_500)).unwrap();
        assert_eq!(
            h,
            "Contact: <sip:bob@10.0.0.1>;expires=60;q=0.700\r\nPath: <sip:edge;lr>\r\n\
             Date: Tue, 14 Nov 2023 22:14:00 GMT\r\n"
        );
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
