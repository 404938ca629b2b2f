//! The Via view (RFC 3261 §20.42, RFC 3581): sent-protocol, sent-by and the
//! parameters a proxy routes responses by (branch, received, rport, maddr,
//! ttl), with LWS allowed around `/ : ; =` as the grammar says (RFC 4475
//! `wsinv`).

use crate::error::{Error, ErrorKind};
use crate::header::HeaderKind;
use crate::scan::{self, PResult, Params, Pos, each_param, is_token, skip_lws};
use crate::uri::{Host, host_port};

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// A transport named in a Via.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
    /// SCTP.
    Sctp,
    /// TLS-SCTP.
    TlsSctp,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket (RFC 7118).
    Wss,
    /// Any other (RFC 4475 `transports`: UNKNOWN).
    Other(&'a [u8]),
}

impl<'a> Transport<'a> {
    /// Classifies a transport token (case-insensitive).
    pub fn from_token(t: &'a [u8]) -> Transport<'a> {
        let eq = |s: &[u8]| t.eq_ignore_ascii_case(s);
        if eq(b"UDP") {
            Transport::Udp
        } else if eq(b"TCP") {
            Transport::Tcp
        } else if eq(b"TLS") {
            Transport::Tls
        } else if eq(b"SCTP") {
            Transport::Sctp
        } else if eq(b"TLS-SCTP") {
            Transport::TlsSctp
        } else if eq(b"WS") {
            Transport::Ws
        } else if eq(b"WSS") {
            Transport::Wss
        } else {
            Transport::Other(t)
        }
    }

    /// Whether the transport is reliable (no retransmissions needed).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// `rport` (RFC 3581).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rport {
    /// `;rport` without a value: the client asks for the source port.
    Requested,
    /// `;rport=1234`.
    Port(u16),
}

/// One Via value (`via-parm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// The value as written.
    pub raw: &'a [u8],
    /// Protocol name (`SIP`).
    pub protocol: &'a [u8],
    /// Protocol version (`2.0`).
    pub version: &'a [u8],
    /// The transport token as written.
    pub transport_raw: &'a [u8],
    /// The transport.
    pub transport: Transport<'a>,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// `branch`.
    pub branch: Option<&'a [u8]>,
    /// `received`.
    pub received: Option<&'a [u8]>,
    /// `rport`.
    pub rport: Option<Rport>,
    /// `maddr`.
    pub maddr: Option<&'a [u8]>,
    /// `ttl`.
    pub ttl: Option<u8>,
    params: &'a [u8],
}

impl<'a> Via<'a> {
    /// Parses one via-parm (already split from its list).
    pub fn parse(s: &'a [u8]) -> Result<Via<'a>, Error> {
        Via::parse_inner(s).map_err(|p| Error::at(ErrorKind::BadHeader(HeaderKind::Via), p, s))
    }

    pub(crate) fn parse_inner(s: &'a [u8]) -> PResult<Via<'a>> {
        let raw = scan::trim(s);
        let s = raw;
        // sent-protocol: name SLASH version SLASH transport (SLASH = SWS / SWS).
        let token = |i: usize| {
            let e = scan::run(s, i, is_token);
            if e == i { Err(Pos::of(&s[i..])) } else { Ok(e) }
        };
        let slash = |i: usize| {
            let j = skip_lws(s, i);
            if s.get(j) == Some(&b'/') {
                Ok(skip_lws(s, j + 1))
            } else {
                Err(Pos::of(&s[j..]))
            }
        };
        let pe = token(0)?;
        let vs = slash(pe)?;
        let ve = token(vs)?;
        let ts = slash(ve)?;
        let te = token(ts)?;
        // LWS, then sent-by up to the first ';' (or the end).
        let hs = skip_lws(s, te);
        if hs == te || hs == s.len() {
            return Err(Pos::of(&s[te..]));
        }
        let semi = memchr::memchr(b';', &s[hs..]).map_or(s.len(), |i| hs + i);
        let (host, port) = host_port(&s[hs..semi], true)?;
        let transport_raw = &s[ts..te];
        let mut via = Via {
            raw,
            protocol: &s[..pe],
            version: &s[vs..ve],
            transport_raw,
            transport: Transport::from_token(transport_raw),
            host,
            port,
            branch: None,
            received: None,
            rport: None,
            maddr: None,
            ttl: None,
            params: &s[semi..],
        };
        each_param(via.params, |p| {
            let bad = Pos::of(p.name);
            let n = p.name;
            // Dispatch on length and first letter, then compare.
            match (n.len(), n[0] | 0x20) {
                (6, b'b') if p.named(b"branch") => {
                    via.branch = Some(p.value.filter(|v| scan::is_token_str(v)).ok_or(bad)?);
                }
                (8, b'r') if p.named(b"received") => {
                    let v = p.value.ok_or(bad)?;
                    Host::parse(v).map_err(|_| bad)?;
                    via.received = Some(v);
                }
                (5, b'r') if p.named(b"rport") => {
                    via.rport = Some(match p.value {
                        None => Rport::Requested,
                        Some(v) => Rport::Port(scan::parse_port(v).ok_or(bad)?),
                    });
                }
                (5, b'm') if p.named(b"maddr") => {
                    let v = p.value.ok_or(bad)?;
                    Host::parse(v).map_err(|_| bad)?;
                    via.maddr = Some(v);
                }
                (3, b't') if p.named(b"ttl") => {
                    let v = p.value.and_then(scan::parse_u32).ok_or(bad)?;
                    via.ttl = Some(u8::try_from(v).map_err(|_| bad)?);
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(via)
    }

    /// Every parameter, as written.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The value of parameter `name` (`Some(None)` for a flag).
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params().get(name).map(|p| p.value)
    }

    /// Whether the protocol is SIP/2.0.
    pub fn is_sip2(&self) -> bool {
        self.protocol.eq_ignore_ascii_case(b"SIP") && self.version == b"2.0"
    }

    /// Whether the branch starts with the RFC 3261 magic cookie and has
    /// something after it (RFC 4475 `badbranch` has only the cookie: fall
    /// back to RFC 2543 matching or answer 400).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::HostKind;

    #[test]
    fn vias() {
        let v = Via::parse(b"SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5060;maddr=224.2.0.1;ttl=16;x=\"y;z\"").unwrap();
        assert!(v.is_sip2());
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!((v.host.raw, v.port), (&b"pc33.atlanta.com"[..], Some(5066)));
        assert_eq!(v.branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(v.received, Some(&b"192.0.2.1"[..]));
        assert_eq!(v.rport, Some(Rport::Port(5060)));
        assert_eq!(v.maddr, Some(&b"224.2.0.1"[..]));
        assert_eq!(v.ttl, Some(16));
        assert_eq!(v.param(b"x"), Some(Some(&b"\"y;z\""[..])));
        assert!(v.has_rfc3261_branch());

        // RFC 4475 wsinv: LWS and folding everywhere the grammar allows.
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol, v.version), (&b"SIP"[..], &b"2.0"[..]));
        assert_eq!(v.host.raw, b"192.0.2.2");
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse(
            b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
        )
        .unwrap();
        assert_eq!(v.transport, Transport::Tcp);
        assert_eq!(v.host.raw, b"spindle.example.com");
        assert_eq!(v.branch, Some(&b"z9hG4bK9ikj8"[..]));
        let v = Via::parse(b"SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
            .unwrap();
        assert_eq!(v.branch, Some(&b"z9hG4bK30239"[..]));

        let v = Via::parse(b"SIP/2.0/TCP [2001:db8::9:1] : 5070 ;rport").unwrap();
        assert_eq!(
            v.host.kind,
            HostKind::Ipv6("2001:db8::9:1".parse().unwrap())
        );
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport, Some(Rport::Requested));

        let v = Via::parse(b"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").unwrap();
        assert_eq!(v.transport, Transport::Other(b"UNKNOWN"));
        let v = Via::parse(b"SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw").unwrap();
        assert!(!v.is_sip2());
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert!(!v.has_rfc3261_branch());
    }

    #[test]
    fn malformed_vias() {
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
            b"SIP/2.0 host",
            b"SIP/2.0/UDPhost",
            b"SIP/2.0/UDP 192.0.2.15;;",
            b"SIP/2.0/UDP host;branch",
            b"SIP/2.0/UDP host;branch=",
            b"SIP/2.0/UDP host;rport=x",
            b"SIP/2.0/UDP host;ttl=256",
            b"SIP/2.0/UDP host;received=not!ip",
            b"SIP/2.0/UDP host:0x50",
            b"SIP/2.0/UDP host extra",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP ho<st",
        ] {
            assert!(
                Via::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
