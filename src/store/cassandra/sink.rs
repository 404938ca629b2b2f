//! The Cassandra [`DialogSink`]: turns a core's dialog events into dialog
//! mutations for its [`DialogWriter`].
//!
//! A dialog's row lives in the partition of its creation bucket, so a
//! Delete must name that bucket: the sink remembers, for each live dialog
//! of its core, a 64-bit hash of its identity and its bucket (24 bytes a
//! dialog), and forgets dialogs older than the dialogs' TTL, whose rows
//! Cassandra has removed anyway. The bucket and `updated_at` come from the
//! wall clock (shared with other nodes), read here, not in the engine.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Duration;

use super::model::{DialogKey, DialogMutation, DialogPartition, DialogRecord};
use super::writer::DialogWriter;
use super::{CassandraStore, wall_ms};
use crate::store::dialog::{DialogEvent, DialogSink};
use crate::time::Instant;

/// One core's Cassandra dialog sink.
#[derive(Debug)]
pub struct CassandraDialogs {
    writer: DialogWriter,
    node: Arc<str>,
    slice: u32,
    bucket_ms: i64,
    ttl: Duration,
    /// Identity hash -> (bucket, hash of the caller's tag).
    live: HashMap<u64, (i64, u64), BuildHasherDefault<IdentityHasher>>,
    /// (created, identity hash), oldest first: what to forget after `ttl`.
    order: VecDeque<(Instant, u64)>,
    /// Ends of dialogs this sink did not see established (not persisted).
    unknown_ends: u64,
}

impl CassandraDialogs {
    /// The sink of core `core` (its ring slice) of node `node`.
    pub fn new(store: &CassandraStore, node: &str, core: u16) -> Self {
        let c = store.config();
        CassandraDialogs {
            writer: store.dialog_writer(core),
            node: Arc::from(node),
            slice: u32::from(core),
            bucket_ms: c.bucket_ms(),
            ttl: Duration::from_secs(u64::from(c.dialog_ttl_secs)),
            live: HashMap::with_capacity_and_hasher(4096, BuildHasherDefault::default()),
            order: VecDeque::with_capacity(4096),
            unknown_ends: 0,
        }
    }

    /// Dialogs known live on this core.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// BYEs for dialogs this sink never saw established.
    pub fn unknown_ends(&self) -> u64 {
        self.unknown_ends
    }

    fn key(&self, bucket: i64, call_id: &[u8], from: &[u8], to: &[u8]) -> DialogKey {
        DialogKey {
            partition: DialogPartition {
                owner_node: self.node.clone(),
                slice: self.slice,
                bucket,
            },
            call_id: String::from_utf8_lossy(call_id).into_owned(),
            from_tag: String::from_utf8_lossy(from).into_owned(),
            to_tag: String::from_utf8_lossy(to).into_owned(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some(&(created, h)) = self.order.front() {
            if now.saturating_duration_since(created) < self.ttl {
                break;
            }
            self.order.pop_front();
            self.live.remove(&h);
        }
    }
}

/// The keys are already XXH3 hashes: use them as they are.
#[derive(Debug, Default)]
pub(crate) struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

fn h(b: &[u8]) -> u64 {
    sipring_ring::key_id(b)
}

/// The identity of a dialog whatever the direction of the request.
fn identity(call_id: &[u8], a: &[u8], b: &[u8]) -> u64 {
    let (x, y) = (h(a), h(b));
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    h(call_id) ^ lo.rotate_left(17) ^ hi.rotate_left(41)
}

impl DialogSink for CassandraDialogs {
    fn established(&mut self, now: Instant, d: DialogEvent<'_>) {
        let id = identity(d.call_id, d.from_tag, d.to_tag);
        let wall = wall_ms();
        let bucket = match self.live.get(&id) {
            Some(&(bucket, _)) => bucket, // an update stays in its partition
            None => {
                let bucket = wall.div_euclid(self.bucket_ms.max(1));
                self.live.insert(id, (bucket, h(d.from_tag)));
                self.order.push_back((now, id));
                bucket
            }
        };
        let key = self.key(bucket, d.call_id, d.from_tag, d.to_tag);
        self.writer.push(
            now,
            DialogMutation::Upsert(DialogRecord {
                key,
                state: d.state.to_vec(),
                updated_at_ms: wall,
            }),
        );
    }

    fn ended(&mut self, now: Instant, call_id: &[u8], tag_a: &[u8], tag_b: &[u8]) {
        let id = identity(call_id, tag_a, tag_b);
        let Some((bucket, caller)) = self.live.remove(&id) else {
            self.unknown_ends += 1;
            return;
        };
        let (from, to) = if h(tag_a) == caller {
            (tag_a, tag_b)
        } else {
            (tag_b, tag_a)
        };
        let key = self.key(bucket, call_id, from, to);
        self.writer.push(now, DialogMutation::Delete(key));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.writer.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.writer.handle_timeout(now);
        self.forget_old(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ignores_the_direction() {
        assert_eq!(identity(b"c1", b"a", b"b"), identity(b"c1", b"b", b"a"));
        assert_ne!(identity(b"c1", b"a", b"b"), identity(b"c2", b"a", b"b"));
        assert_ne!(identity(b"c1", b"a", b"b"), identity(b"c1", b"a", b"c"));
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::store::cassandra::CassandraConfig;
    use crate::store::cassandra::writer::{DialogWriter, WriterStats};

    #[test]
    #[ignore = "a timing probe, run by hand with --release"]
    fn sink_cost_per_call() {
        let c = CassandraConfig::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<DialogMutation>>(c.queue_batches);
        let drain = std::thread::spawn(move || {
            let mut n = 0usize;
            while let Some(b) = rx.blocking_recv() {
                n += b.len();
            }
            n
        });
        let mut sink = CassandraDialogs {
            writer: DialogWriter::new(tx, &c, Arc::new(WriterStats::default())),
            node: Arc::from("127.0.0.1:5060"),
            slice: 0,
            bucket_ms: c.bucket_ms(),
            ttl: Duration::from_secs(3600),
            live: HashMap::with_capacity_and_hasher(4096, BuildHasherDefault::default()),
            order: VecDeque::with_capacity(4096),
            unknown_ends: 0,
        };
        let state = vec![b'x'; 500];
        let calls = 200_000u64;
        let t0 = std::time::Instant::now();
        for i in 0..calls {
            let now = Instant::from_nanos(i * 500_000);
            let call_id = format!("{i}-1@127.0.0.1");
            sink.established(
                now,
                DialogEvent {
                    call_id: call_id.as_bytes(),
                    from_tag: b"12345SIPpTag001",
                    to_tag: b"6789SIPpTag011",
                    state: &state,
                },
            );
            sink.handle_timeout(now);
            sink.ended(
                now,
                call_id.as_bytes(),
                b"6789SIPpTag011",
                b"12345SIPpTag001",
            );
        }
        let dt = t0.elapsed();
        drop(sink);
        let n = drain.join().unwrap();
        eprintln!(
            "{:.2} us per call (2 mutations), {n} mutations",
            dt.as_secs_f64() * 1e6 / calls as f64
        );
    }
}
