//! The byte layout of the embedded store's keys and values.
//!
//! Values start with a version byte; strings and lists are length-prefixed
//! (u32, big-endian). Keys are built so that redb's byte order gives the
//! ranges the store needs: a binding key is the length-prefixed AOR then
//! the contact (all of an AOR's bindings are one range, by contact); an
//! expiry key is the expiry time (big-endian, sign-flipped) then the
//! binding key (the expired ones are the range up to now); a dialog key is
//! its partition (owner node, slice, bucket) then its identity.

use crate::store::model::{Binding, DialogKey, DialogPartition, ProxyInfo, User};

const V1: u8 = 1;

/// A value that does not decode: a damaged file or a newer format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

#[derive(Debug, Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Self {
        Enc(vec![V1])
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(v as u64)
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    fn strs(&mut self, v: &[String]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        for s in v {
            self.str(s);
        }
        self
    }
}

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn new(b: &'a [u8]) -> Result<Self, Corrupt> {
        match b.split_first() {
            Some((&V1, rest)) => Ok(Dec(rest)),
            _ => Err(Corrupt),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(self.u64()? as i64)
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, Corrupt> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| Corrupt)
    }
    fn opt_str(&mut self) -> Result<Option<String>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(Corrupt),
        }
    }
    fn strs(&mut self) -> Result<Vec<String>, Corrupt> {
        let n = self.u32()? as usize;
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(self.str()?);
        }
        Ok(v)
    }
}

pub(crate) fn user(u: &User) -> Vec<u8> {
    let mut e = Enc::new();
    e.str(&u.realm)
        .str(&u.ha1_md5)
        .str(&u.ha1_sha256)
        .opt_str(u.phone.as_deref())
        .u8(u8::from(u.enabled));
    e.0
}

pub(crate) fn user_from(aor: &str, b: &[u8]) -> Result<User, Corrupt> {
    let mut d = Dec::new(b)?;
    Ok(User {
        aor: aor.to_owned(),
        realm: d.str()?,
        ha1_md5: d.str()?,
        ha1_sha256: d.str()?,
        phone: d.opt_str()?,
        enabled: d.u8()? != 0,
    })
}

/// The key of a binding: the AOR (length-prefixed) then the contact.
pub(crate) fn binding_key(aor: &str, contact: &str) -> Vec<u8> {
    let mut k = aor_prefix(aor);
    k.extend_from_slice(contact.as_bytes());
    k
}

/// The common prefix of every binding key of `aor`.
pub(crate) fn aor_prefix(aor: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + aor.len() + 48);
    k.extend_from_slice(&(aor.len() as u32).to_be_bytes());
    k.extend_from_slice(aor.as_bytes());
    k
}

/// The AOR and contact of a binding key.
pub(crate) fn split_binding_key(k: &[u8]) -> Result<(&str, &str), Corrupt> {
    if k.len() < 4 {
        return Err(Corrupt);
    }
    let n = u32::from_be_bytes([k[0], k[1], k[2], k[3]]) as usize;
    let rest = &k[4..];
    if rest.len() < n {
        return Err(Corrupt);
    }
    let aor = std::str::from_utf8(&rest[..n]).map_err(|_| Corrupt)?;
    let contact = std::str::from_utf8(&rest[n..]).map_err(|_| Corrupt)?;
    Ok((aor, contact))
}

pub(crate) fn binding(b: &Binding) -> Vec<u8> {
    let mut e = Enc::new();
    e.str(&b.node)
        .u16(b.core)
        .strs(&b.path)
        .opt_str(b.instance.as_deref());
    match b.reg_id {
        Some(r) => e.u8(1).u32(r),
        None => e.u8(0),
    };
    e.u16(b.q_milli)
        .str(&b.call_id)
        .u32(b.cseq)
        .i64(b.expires_at_ms)
        .opt_str(b.source.as_deref());
    e.0
}

pub(crate) fn binding_from(key: &[u8], b: &[u8]) -> Result<Binding, Corrupt> {
    let (aor, contact) = split_binding_key(key)?;
    let mut d = Dec::new(b)?;
    Ok(Binding {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        node: d.str()?,
        core: d.u16()?,
        path: d.strs()?,
        instance: d.opt_str()?,
        reg_id: match d.u8()? {
            0 => None,
            1 => Some(d.u32()?),
            _ => return Err(Corrupt),
        },
        q_milli: d.u16()?,
        call_id: d.str()?,
        cseq: d.u32()?,
        expires_at_ms: d.i64()?,
        source: d.opt_str()?,
    })
}

/// A time as bytes that sort like the time (big-endian, sign bit flipped).
fn time_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The expiry index key of a binding.
pub(crate) fn expiry_key(expires_at_ms: i64, binding_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + binding_key.len());
    k.extend_from_slice(&time_key(expires_at_ms));
    k.extend_from_slice(binding_key);
    k
}

/// The first expiry key after every binding expired at `now_ms`.
pub(crate) fn expiry_bound(now_ms: i64) -> [u8; 8] {
    time_key(now_ms.saturating_add(1))
}

/// The binding key inside an expiry key.
pub(crate) fn binding_key_of_expiry(k: &[u8]) -> Option<&[u8]> {
    k.get(8..)
}

pub(crate) fn proxy(p: &ProxyInfo) -> Vec<u8> {
    let mut e = Enc::new();
    e.strs(&p.addresses).u16(p.cores);
    e.u32(u32::try_from(p.ring_ids.len()).unwrap_or(u32::MAX));
    for id in &p.ring_ids {
        e.u64(*id);
    }
    e.i64(p.started_at_ms)
        .i64(p.heartbeat_ms)
        .u64(p.load.to_bits());
    e.0
}

pub(crate) fn proxy_from(node_id: &str, b: &[u8]) -> Result<ProxyInfo, Corrupt> {
    let mut d = Dec::new(b)?;
    let addresses = d.strs()?;
    let cores = d.u16()?;
    let n = d.u32()? as usize;
    let mut ring_ids = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        ring_ids.push(d.u64()?);
    }
    Ok(ProxyInfo {
        node_id: node_id.to_owned(),
        addresses,
        cores,
        ring_ids,
        started_at_ms: d.i64()?,
        heartbeat_ms: d.i64()?,
        load: f64::from_bits(d.u64()?),
    })
}

/// The common prefix of the dialog keys of a partition.
pub(crate) fn partition_prefix(p: &DialogPartition) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(&(p.owner_node.len() as u32).to_be_bytes());
    k.extend_from_slice(p.owner_node.as_bytes());
    k.extend_from_slice(&p.slice.to_be_bytes());
    k.extend_from_slice(&time_key(p.bucket));
    k
}

pub(crate) fn dialog_key(k: &DialogKey) -> Vec<u8> {
    let mut out = partition_prefix(&k.partition);
    for s in [&k.call_id, &k.from_tag, &k.to_tag] {
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

pub(crate) fn dialog_key_from(p: &DialogPartition, k: &[u8]) -> Result<DialogKey, Corrupt> {
    let prefix = partition_prefix(p);
    let rest = k.strip_prefix(&prefix[..]).ok_or(Corrupt)?;
    // The identity is three length-prefixed strings: reuse the decoder
    // (it wants a version byte first).
    let mut buf = Vec::with_capacity(rest.len() + 1);
    buf.push(V1);
    buf.extend_from_slice(rest);
    let mut d = Dec::new(&buf)?;
    Ok(DialogKey {
        partition: p.clone(),
        call_id: d.str()?,
        from_tag: d.str()?,
        to_tag: d.str()?,
    })
}

pub(crate) fn dialog_value(updated_at_ms: i64, state: &[u8]) -> Vec<u8> {
    let mut e = Enc::new();
    e.i64(updated_at_ms).bytes(state);
    e.0
}

pub(crate) fn dialog_value_from(b: &[u8]) -> Result<(i64, Vec<u8>), Corrupt> {
    let mut d = Dec::new(b)?;
    Ok((d.i64()?, d.bytes()?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let u = User {
            aor: "alice@example.com".into(),
            realm: "example.com".into(),
            ha1_md5: "a".repeat(32),
            ha1_sha256: "b".repeat(64),
            phone: Some("+15551230001".into()),
            enabled: true,
        };
        assert_eq!(user_from(&u.aor, &user(&u)), Ok(u));
        let b = Binding {
            aor: "alice@example.com".into(),
            contact: "<sip:alice@10.0.0.1:5060>".into(),
            node: "n1".into(),
            core: 3,
            path: vec!["<sip:p1;lr>".into(), "<sip:p2;lr>".into()],
            instance: Some("<urn:uuid:1>".into()),
            reg_id: Some(2),
            q_milli: 500,
            call_id: "c1".into(),
            cseq: 7,
            expires_at_ms: 1_700_000_000_000,
            source: None,
        };
        let key = binding_key(&b.aor, &b.contact);
        assert_eq!(binding_from(&key, &binding(&b)), Ok(b.clone()));
        assert!(key.starts_with(&aor_prefix(&b.aor)));
        // "alice@example.co" is a different AOR, not a prefix of this one.
        assert!(!key.starts_with(&aor_prefix("alice@example.co")));
        let p = ProxyInfo {
            node_id: "n1".into(),
            addresses: vec!["udp:127.0.0.1:5060".into()],
            cores: 2,
            ring_ids: vec![1, u64::MAX],
            started_at_ms: 1,
            heartbeat_ms: 2,
            load: 0.5,
        };
        assert_eq!(proxy_from("n1", &proxy(&p)), Ok(p));
        let dk = DialogKey {
            partition: DialogPartition::new("n1", 1, 5_000, 1_000),
            call_id: "c".into(),
            from_tag: "f".into(),
            to_tag: "t".into(),
        };
        assert_eq!(dialog_key_from(&dk.partition, &dialog_key(&dk)), Ok(dk));
        assert_eq!(
            dialog_value_from(&dialog_value(9, b"st")),
            Ok((9, b"st".to_vec()))
        );
        assert_eq!(user_from("x", &[2, 0]), Err(Corrupt));
        assert_eq!(user_from("x", &[1, 0, 0]), Err(Corrupt));
    }

    #[test]
    fn expiry_keys_sort_by_time() {
        let k = binding_key("a", "c");
        let early = expiry_key(-5, &k);
        let late = expiry_key(1_000, &k);
        assert!(early < late);
        assert!(late[..8] < expiry_bound(1_000)[..]);
        assert!(late[..8] >= expiry_bound(999)[..]);
        assert_eq!(binding_key_of_expiry(&late), Some(&k[..]));
    }
}
