//! The ring's wire format: one message per datagram, compact, versioned,
//! big-endian, decoded without panicking.
//!
//! ```text
//! magic    2  "sR"
//! version  1  VERSION (1); a node drops other versions (WireError::UnsupportedVersion)
//! kind     1  Body's discriminant (1..=12)
//! token    8  request id; a reply echoes its request's token
//! from     M  the sender (a member, below)
//! to       1  0: any member at the destination address (join, hints)
//!             1: followed by id u64, core u16: the addressed member
//! body        per kind (below)
//!
//! member  M = id u64, core u16, family u8 (4 | 6), ip (4 | 16 bytes), port u16
//! opt     tag u8 (0 | 1), then the value when 1
//! list    count u8 (<= MAX_LIST), then count members
//!
//! 1 Ping           -            2 Pong          -
//! 3 FindSuccessor  key u64      4 Owner         owner M, start u64 (owner's slice is (start, owner])
//! 5 Closer         list         6 GetNeighbors  -
//! 7 Neighbors      pred opt M, successors list
//! 8 Notify         -            9 Notified      handed opt u64    (we now own (handed, you])
//! 10 Leave         pred opt M, start u64, successors list
//! 11 Ack           -            12 NotMember    -
//! ```
//!
//! A message is a few dozen bytes (an IPv4 `Neighbors` with eight
//! successors: 195). Decoding checks every length before reading and rejects
//! trailing bytes, so any byte string either decodes to exactly one message
//! or to a `WireError`; `decode(encode(m)) == m` for every message (IPv6
//! flow labels and scope ids are not carried). The fuzz target `wire` in
//! `ring/fuzz` checks both properties.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::member::Member;

/// The two bytes every message starts with.
pub const MAGIC: [u8; 2] = *b"sR";
/// The version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The longest member list a message carries (successor lists, candidates).
pub const MAX_LIST: usize = 32;

/// Which member at the destination address a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    /// The member's identifier.
    pub id: u64,
    /// The member's core: the shell hands the datagram to that core.
    pub core: u16,
}

impl From<&Member> for Dest {
    fn from(m: &Member) -> Self {
        Dest {
            id: m.id,
            core: m.core,
        }
    }
}

/// One ring message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Request id, echoed by the reply.
    pub token: u64,
    /// The sender.
    pub from: Member,
    /// The addressed member, or `None` for whichever member answers at the
    /// address (joining through a bootstrap address, hints).
    pub to: Option<Dest>,
    /// What it says.
    pub body: Body,
}

/// The message kinds. Requests: `Ping`, `FindSuccessor`, `GetNeighbors`,
/// `Notify`, `Leave`; the rest are replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Are you alive (and a member)?
    Ping,
    /// Yes.
    Pong,
    /// Iterative lookup step: who owns `key`, or who is closer to it?
    FindSuccessor {
        /// The key's identifier.
        key: u64,
    },
    /// `owner` owns `key`; its slice is `(start, owner.id]`.
    Owner {
        /// The key's owner.
        owner: Member,
        /// The start (exclusive) of the owner's slice, as the replier knows
        /// it: the owner's predecessor's identifier.
        start: u64,
    },
    /// Ask one of these next, closest to the key first.
    Closer {
        /// Members that precede the key, closer to it than the replier.
        candidates: Vec<Member>,
    },
    /// Stabilize: tell me your predecessor and successor list.
    GetNeighbors,
    /// The replier's predecessor and successor list.
    Neighbors {
        /// Its predecessor, if known.
        pred: Option<Member>,
        /// Its successor list, nearest first.
        successors: Vec<Member>,
    },
    /// I think I am your predecessor.
    Notify,
    /// The answer to `Notify`.
    Notified {
        /// `Some(start)` when the replier accepted the notifier as its
        /// predecessor and handed it the keys `(start, notifier]`.
        handed: Option<u64>,
    },
    /// The sender leaves the ring gracefully; to its successor this hands
    /// over the slice `(start, sender]`, to its predecessor its successors.
    Leave {
        /// The leaving member's predecessor.
        pred: Option<Member>,
        /// The start (exclusive) of the leaving member's slice.
        start: u64,
        /// The leaving member's successor list.
        successors: Vec<Member>,
    },
    /// Acknowledges a `Leave`.
    Ack,
    /// The addressed member is not (or no longer) a member here.
    NotMember,
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Ping => 1,
            Body::Pong => 2,
            Body::FindSuccessor { .. } => 3,
            Body::Owner { .. } => 4,
            Body::Closer { .. } => 5,
            Body::GetNeighbors => 6,
            Body::Neighbors { .. } => 7,
            Body::Notify => 8,
            Body::Notified { .. } => 9,
            Body::Leave { .. } => 10,
            Body::Ack => 11,
            Body::NotMember => 12,
        }
    }

    /// Is this a request (which expects a reply)?
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Body::Ping
                | Body::FindSuccessor { .. }
                | Body::GetNeighbors
                | Body::Notify
                | Body::Leave { .. }
        )
    }
}

/// Why a datagram is not a ring message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// It ends before the message does.
    Truncated,
    /// It does not start with `MAGIC`.
    BadMagic,
    /// A version this node does not speak.
    UnsupportedVersion(u8),
    /// An unknown message kind.
    UnknownKind(u8),
    /// An option tag other than 0 or 1.
    BadTag(u8),
    /// An address family other than 4 or 6.
    BadAddressFamily(u8),
    /// A member list longer than `MAX_LIST`.
    ListTooLong(u8),
    /// Bytes left over after the message.
    TrailingBytes(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated ring message"),
            WireError::BadMagic => f.write_str("not a ring message (bad magic)"),
            WireError::UnsupportedVersion(v) => write!(f, "unsupported ring message version {v}"),
            WireError::UnknownKind(k) => write!(f, "unknown ring message kind {k}"),
            WireError::BadTag(t) => write!(f, "bad option tag {t}"),
            WireError::BadAddressFamily(a) => write!(f, "bad address family {a}"),
            WireError::ListTooLong(n) => write!(f, "member list of {n} (at most {MAX_LIST})"),
            WireError::TrailingBytes(n) => write!(f, "{n} bytes after the ring message"),
        }
    }
}

impl std::error::Error for WireError {}

impl Envelope {
    /// Appends the encoded message to `out`. Lists longer than `MAX_LIST`
    /// are cut to `MAX_LIST` (the node never builds longer ones).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.token.to_be_bytes());
        put_member(out, &self.from);
        match self.to {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.id.to_be_bytes());
                out.extend_from_slice(&d.core.to_be_bytes());
            }
        }
        match &self.body {
            Body::Ping
            | Body::Pong
            | Body::GetNeighbors
            | Body::Notify
            | Body::Ack
            | Body::NotMember => {}
            Body::FindSuccessor { key } => out.extend_from_slice(&key.to_be_bytes()),
            Body::Owner { owner, start } => {
                put_member(out, owner);
                out.extend_from_slice(&start.to_be_bytes());
            }
            Body::Closer { candidates } => put_list(out, candidates),
            Body::Neighbors { pred, successors } => {
                put_opt_member(out, pred.as_ref());
                put_list(out, successors);
            }
            Body::Notified { handed } => match handed {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    out.extend_from_slice(&s.to_be_bytes());
                }
            },
            Body::Leave {
                pred,
                start,
                successors,
            } => {
                put_opt_member(out, pred.as_ref());
                out.extend_from_slice(&start.to_be_bytes());
                put_list(out, successors);
            }
        }
    }

    /// The encoded message as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }

    /// Decodes one datagram. Never panics; any input that is not exactly one
    /// well-formed message is an error.
    pub fn decode(buf: &[u8]) -> Result<Envelope, WireError> {
        let mut r = Reader { buf, pos: 0 };
        let kind = r.header()?;
        let token = r.u64()?;
        let from = r.member()?;
        let to = r.dest()?;
        let body = match kind {
            1 => Body::Ping,
            2 => Body::Pong,
            3 => Body::FindSuccessor { key: r.u64()? },
            4 => Body::Owner {
                owner: r.member()?,
                start: r.u64()?,
            },
            5 => Body::Closer {
                candidates: r.list()?,
            },
            6 => Body::GetNeighbors,
            7 => Body::Neighbors {
                pred: r.opt_member()?,
                successors: r.list()?,
            },
            8 => Body::Notify,
            9 => Body::Notified {
                handed: if r.tag()? { Some(r.u64()?) } else { None },
            },
            10 => Body::Leave {
                pred: r.opt_member()?,
                start: r.u64()?,
                successors: r.list()?,
            },
            11 => Body::Ack,
            12 => Body::NotMember,
            k => return Err(WireError::UnknownKind(k)),
        };
        match buf.len() - r.pos {
            0 => Ok(Envelope {
                token,
                from,
                to,
                body,
            }),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

/// The addressed member of a datagram, read from its header alone, so that
/// a shell receiving every core's ring traffic on one socket can hand the
/// datagram to the right core without decoding it twice. `Ok(None)`: any
/// member at this address.
pub fn peek_destination(buf: &[u8]) -> Result<Option<Dest>, WireError> {
    let mut r = Reader { buf, pos: 0 };
    r.header()?;
    r.u64()?;
    r.member()?;
    r.dest()
}

fn put_member(out: &mut Vec<u8>, m: &Member) {
    out.extend_from_slice(&m.id.to_be_bytes());
    out.extend_from_slice(&m.core.to_be_bytes());
    match m.addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&m.addr.port().to_be_bytes());
}

fn put_opt_member(out: &mut Vec<u8>, m: Option<&Member>) {
    match m {
        None => out.push(0),
        Some(m) => {
            out.push(1);
            put_member(out, m);
        }
    }
}

fn put_list(out: &mut Vec<u8>, list: &[Member]) {
    let list = &list[..list.len().min(MAX_LIST)];
    out.push(list.len() as u8); // <= MAX_LIST (32)
    for m in list {
        put_member(out, m);
    }
}

/// A bounds-checked cursor: every read checks the length first.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn tag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(WireError::BadTag(t)),
        }
    }

    /// Magic and version; returns the kind byte.
    fn header(&mut self) -> Result<u8, WireError> {
        if self.array::<2>()? != MAGIC {
            return Err(WireError::BadMagic);
        }
        match self.u8()? {
            VERSION => self.u8(),
            v => Err(WireError::UnsupportedVersion(v)),
        }
    }

    fn member(&mut self) -> Result<Member, WireError> {
        let id = self.u64()?;
        let core = self.u16()?;
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            f => return Err(WireError::BadAddressFamily(f)),
        };
        let port = self.u16()?;
        Ok(Member {
            id,
            addr: SocketAddr::new(ip, port),
            core,
        })
    }

    fn opt_member(&mut self) -> Result<Option<Member>, WireError> {
        Ok(if self.tag()? {
            Some(self.member()?)
        } else {
            None
        })
    }

    fn dest(&mut self) -> Result<Option<Dest>, WireError> {
        Ok(if self.tag()? {
            Some(Dest {
                id: self.u64()?,
                core: self.u16()?,
            })
        } else {
            None
        })
    }

    fn list(&mut self) -> Result<Vec<Member>, WireError> {
        let n = self.u8()?;
        if usize::from(n) > MAX_LIST {
            return Err(WireError::ListTooLong(n));
        }
        // Capacity bounded by MAX_LIST, whatever the input claims.
        let mut v = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            v.push(self.member()?);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, last: u8, core: u16) -> Member {
        Member::new(id, SocketAddr::from(([10, 0, 0, last], 7000)), core)
    }

    fn m6(id: u64) -> Member {
        Member::new(
            id,
            SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7), 5070)),
            65535,
        )
    }

    /// One message of every kind, with the corner values of each field.
    pub(crate) fn samples() -> Vec<Envelope> {
        let list: Vec<Member> = (0..8).map(|i| m(i * 1000, i as u8, i as u16)).collect();
        let bodies = vec![
            Body::Ping,
            Body::Pong,
            Body::FindSuccessor { key: u64::MAX },
            Body::Owner {
                owner: m6(1),
                start: 0,
            },
            Body::Closer {
                candidates: vec![m(7, 7, 3)],
            },
            Body::Closer { candidates: vec![] },
            Body::GetNeighbors,
            Body::Neighbors {
                pred: Some(m6(9)),
                successors: list.clone(),
            },
            Body::Neighbors {
                pred: None,
                successors: vec![],
            },
            Body::Notify,
            Body::Notified { handed: None },
            Body::Notified { handed: Some(0) },
            Body::Leave {
                pred: Some(m(3, 3, 1)),
                start: 17,
                successors: list,
            },
            Body::Leave {
                pred: None,
                start: u64::MAX,
                successors: vec![m6(4)],
            },
            Body::Ack,
            Body::NotMember,
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Envelope {
                token: (i as u64) << 40 | 0xabcd,
                from: if i % 2 == 0 { m(42, 9, 2) } else { m6(43) },
                to: if i % 3 == 0 {
                    None
                } else {
                    Some(Dest {
                        id: i as u64,
                        core: 1,
                    })
                },
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for env in samples() {
            let bytes = env.to_vec();
            assert_eq!(Envelope::decode(&bytes), Ok(env.clone()), "{bytes:02x?}");
            assert_eq!(peek_destination(&bytes), Ok(env.to));
            assert_eq!(
                env.body.is_request(),
                [1, 3, 6, 8, 10].contains(&env.body.kind())
            );
        }
    }

    #[test]
    fn sizes_are_compact() {
        let s = samples();
        let neighbors = s
            .iter()
            .find(
                |e| matches!(&e.body, Body::Neighbors { successors, .. } if successors.len() == 8),
            )
            .unwrap();
        let mut v4 = neighbors.clone();
        v4.body = Body::Neighbors {
            pred: Some(m(1, 1, 1)),
            successors: (0..8).map(|i| m(i, 1, 1)).collect(),
        };
        v4.from = m(1, 1, 1);
        v4.to = Some(Dest { id: 1, core: 1 });
        assert_eq!(v4.to_vec().len(), 195);
        let ping = Envelope {
            token: 1,
            from: m(1, 1, 1),
            to: None,
            body: Body::Ping,
        };
        assert_eq!(ping.to_vec().len(), 2 + 1 + 1 + 8 + 17 + 1);
    }

    #[test]
    fn every_prefix_is_truncated_and_every_extension_trails() {
        for env in samples() {
            let bytes = env.to_vec();
            for cut in 0..bytes.len() {
                let r = Envelope::decode(&bytes[..cut]);
                assert!(r.is_err(), "prefix {cut} of {:?} decoded", env.body);
                if cut >= 4 {
                    assert_eq!(
                        r,
                        Err(WireError::Truncated),
                        "prefix {cut} of {:?}",
                        env.body
                    );
                }
            }
            let mut long = bytes.clone();
            long.extend_from_slice(&[0, 0, 0]);
            assert_eq!(Envelope::decode(&long), Err(WireError::TrailingBytes(3)));
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let ping = Envelope {
            token: 7,
            from: m(1, 1, 1),
            to: None,
            body: Body::Ping,
        }
        .to_vec();
        let with = |at: usize, byte: u8| {
            let mut b = ping.clone();
            b[at] = byte;
            b
        };
        // Offsets in a Ping: magic 0-1, version 2, kind 3, token 4-11,
        // from 12-28 (id 12-19, core 20-21, family 22, ip 23-26, port 27-28), to 29.
        let table: Vec<(&str, Vec<u8>, WireError)> = vec![
            ("empty", vec![], WireError::Truncated),
            ("one byte", vec![b's'], WireError::Truncated),
            ("bad magic", with(0, b'S'), WireError::BadMagic),
            (
                "http",
                b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                WireError::BadMagic,
            ),
            (
                "sip",
                b"INVITE sip:a@b SIP/2.0\r\n".to_vec(),
                WireError::BadMagic,
            ),
            ("version 0", with(2, 0), WireError::UnsupportedVersion(0)),
            ("version 2", with(2, 2), WireError::UnsupportedVersion(2)),
            ("kind 0", with(3, 0), WireError::UnknownKind(0)),
            ("kind 13", with(3, 13), WireError::UnknownKind(13)),
            ("kind 255", with(3, 255), WireError::UnknownKind(255)),
            ("family 5", with(22, 5), WireError::BadAddressFamily(5)),
            ("family 0", with(22, 0), WireError::BadAddressFamily(0)),
            ("dest tag 2", with(29, 2), WireError::BadTag(2)),
            ("dest tag without dest", with(29, 1), WireError::Truncated),
            ("family 6 with v4 bytes", with(22, 6), WireError::Truncated),
        ];
        for (name, bytes, want) in table {
            assert_eq!(Envelope::decode(&bytes), Err(want), "{name}");
        }
        // Bodies: a list count over MAX_LIST, an option tag of 7, a
        // Closer claiming 32 members but carrying one.
        let closer = |count: u8| {
            let mut b = Envelope {
                token: 7,
                from: m(1, 1, 1),
                to: None,
                body: Body::Closer {
                    candidates: vec![m(2, 2, 2)],
                },
            }
            .to_vec();
            b[30] = count;
            b
        };
        assert_eq!(
            Envelope::decode(&closer(33)),
            Err(WireError::ListTooLong(33))
        );
        assert_eq!(
            Envelope::decode(&closer(255)),
            Err(WireError::ListTooLong(255))
        );
        assert_eq!(Envelope::decode(&closer(32)), Err(WireError::Truncated));
        assert_eq!(
            Envelope::decode(&closer(0)),
            Err(WireError::TrailingBytes(17))
        );
        let mut notified = Envelope {
            token: 7,
            from: m(1, 1, 1),
            to: None,
            body: Body::Notified { handed: None },
        }
        .to_vec();
        notified[30] = 7;
        assert_eq!(Envelope::decode(&notified), Err(WireError::BadTag(7)));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            WireError::UnsupportedVersion(9).to_string(),
            "unsupported ring message version 9"
        );
        assert_eq!(
            WireError::ListTooLong(40).to_string(),
            "member list of 40 (at most 32)"
        );
    }
}
