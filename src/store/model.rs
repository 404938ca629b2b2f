//! The records every store backend keeps: users, bindings, proxies and
//! dialogs (docs/storage.md gives each backend's tables and keys).
//!
//! Times are wall-clock milliseconds since the Unix epoch (`*_ms`): they are
//! shared between nodes, unlike the engine's monotonic `Instant`.

/// A user ("subscriber") and its credentials. The password is never stored,
/// only its digests (HA1 = H(user:realm:password)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Address of record, `user@domain` (the partition key).
    pub aor: String,
    /// The digest realm the HA1s were computed for.
    pub realm: String,
    /// HA1 with MD5, lowercase hex.
    pub ha1_md5: String,
    /// HA1 with SHA-256, lowercase hex.
    pub ha1_sha256: String,
    /// E.164 alias (`+15551234567`), if any.
    pub phone: Option<String>,
    /// A disabled user can neither register nor be called.
    pub enabled: bool,
}

/// One registered contact of an AOR: a row of `bindings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The AOR it belongs to (the partition key).
    pub aor: String,
    /// The Contact URI (the clustering key).
    pub contact: String,
    /// The proxy node the client registered through.
    pub node: String,
    /// The core of that node that owns the registration.
    pub core: u16,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// `+sip.instance` (RFC 5626), if given.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626), if given.
    pub reg_id: Option<u32>,
    /// The `q` value in thousandths (0..=1000).
    pub q_milli: u16,
    /// Call-ID of the REGISTER that created or last refreshed it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// When it expires (the row also carries a TTL that removes it then).
    pub expires_at_ms: i64,
    /// The address the REGISTER came from (`transport:ip:port`), for NAT and flows.
    pub source: Option<String>,
}

/// A proxy node of the cluster: a row of `proxies`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyInfo {
    /// The node's identifier (stable across restarts).
    pub node_id: String,
    /// Its SIP addresses (`udp:ip:port`, `tcp:ip:port`).
    pub addresses: Vec<String>,
    /// Its number of cores.
    pub cores: u16,
    /// The Chord ring ids its cores own.
    pub ring_ids: Vec<u64>,
    /// When it started.
    pub started_at_ms: i64,
    /// Its last heartbeat.
    pub heartbeat_ms: i64,
    /// Its load (calls per second, or whatever the node reports), for clients
    /// choosing a proxy.
    pub load: f64,
}

use std::sync::Arc;

/// Where a dialog lives: its owner's partition and its identity within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogKey {
    /// The partition: owner node, ring slice, time bucket.
    pub partition: DialogPartition,
    /// Call-ID.
    pub call_id: String,
    /// The caller's tag (From tag of the initial INVITE).
    pub from_tag: String,
    /// The callee's tag (To tag of the 2xx).
    pub to_tag: String,
}

/// A partition of `dialogs`: the dialogs one owner (node and ring slice)
/// created within one time bucket. A node taking over a failed owner's slice
/// reads that slice's recent buckets (`DialogPartition::recent`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogPartition {
    /// The node that owns the dialogs (shared: every mutation of a core
    /// names it).
    pub owner_node: Arc<str>,
    /// The owner's ring slice (a core's slice of the key space).
    pub slice: u32,
    /// `created_at_ms / bucket_ms`.
    pub bucket: i64,
}

impl DialogPartition {
    /// The partition of a dialog created at `created_at_ms` by `owner_node`'s
    /// slice `slice`, with buckets of `bucket_ms`.
    pub fn new(owner_node: &str, slice: u32, created_at_ms: i64, bucket_ms: i64) -> Self {
        DialogPartition {
            owner_node: Arc::from(owner_node),
            slice,
            bucket: created_at_ms.div_euclid(bucket_ms.max(1)),
        }
    }

    /// Every partition of `owner_node`'s `slice` that may still hold a live
    /// dialog at `now_ms`: the buckets of the last `horizon_ms` (the dialogs'
    /// TTL), newest first.
    pub fn recent(
        owner_node: &str,
        slice: u32,
        now_ms: i64,
        horizon_ms: i64,
        bucket_ms: i64,
    ) -> Vec<DialogPartition> {
        let bucket_ms = bucket_ms.max(1);
        let newest = now_ms.div_euclid(bucket_ms);
        let oldest = (now_ms - horizon_ms).div_euclid(bucket_ms);
        let owner: Arc<str> = Arc::from(owner_node);
        (oldest..=newest)
            .rev()
            .map(|bucket| DialogPartition {
                owner_node: owner.clone(),
                slice,
                bucket,
            })
            .collect()
    }
}

/// A dialog's persisted state. `state` is the owner's own encoding of what a
/// successor needs to take the dialog over or close it (route sets, remote
/// targets, CSeqs); the store does not interpret it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogRecord {
    /// Where the row lives.
    pub key: DialogKey,
    /// The owner's encoding of the dialog.
    pub state: Vec<u8>,
    /// When it was written.
    pub updated_at_ms: i64,
}

/// A change to one dialog, as a core queues it for the next batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogMutation {
    /// Created (on the 2xx) or updated: write the whole row (with the TTL).
    Upsert(DialogRecord),
    /// Ended (BYE, timeout): delete the row.
    Delete(DialogKey),
}

impl DialogMutation {
    /// The row it changes.
    pub fn key(&self) -> &DialogKey {
        match self {
            DialogMutation::Upsert(r) => &r.key,
            DialogMutation::Delete(k) => k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_partitions_cover_the_horizon_newest_first() {
        let p = DialogPartition::recent("n1", 3, 10_500, 2_000, 1_000);
        let buckets: Vec<i64> = p.iter().map(|p| p.bucket).collect();
        assert_eq!(buckets, vec![10, 9, 8]);
        assert!(p.iter().all(|p| &*p.owner_node == "n1" && p.slice == 3));
        // A dialog created inside the horizon is in one of them.
        let d = DialogPartition::new("n1", 3, 8_600, 1_000);
        assert!(p.contains(&d));
    }
}
