//! The store: users, bindings (registrations), proxies and dialog state,
//! behind one interface, [`Store`], with two backends:
//! - [`embedded`]: redb in a file under `--data-dir`, the single-node
//!   default (no database to install);
//! - [`cassandra`]: a Cassandra cluster through the scylla driver, for
//!   clusters.
//!
//! Threading (docs/storage.md): a backend runs on its own thread(s). Every
//! method returns at once with a [`Pending`], a future the storage thread
//! completes; glommio shards await it without ever blocking, and no tokio
//! runtime runs on a shard. A full queue fails the request at once with
//! [`StoreError::Overloaded`].
//!
//! The sans-IO engine never holds a store: it asks through
//! `engine::Request::Store` ([`StoreOp`]); the shell runs the op with
//! [`StoreOp::run`] and feeds the answer back as `engine::Reply::Store`.
//!
//! Caches: each core keeps users and bindings it has read. A backend bumps
//! the change counters of [`Epochs`] when a write commits, so a core knows
//! whether what it read is still current without asking (exact within one
//! process; writes made by other nodes are seen after the cache's TTL).
//!
//! [`StoreSelection`] is the choice the configuration makes: `[store] url`
//! or `--store`, `embedded` (the default) or `cassandra://...`.

pub mod cassandra;
pub mod dialog;
pub mod embedded;
pub mod model;
pub mod pending;
pub mod suite;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use cassandra::CassandraConfig;
pub use model::{
    Binding, DialogKey, DialogMutation, DialogPartition, DialogRecord, ProxyInfo, User,
};
pub use pending::{Answer, Pending, StoreError, wall_ms};

/// A change to the bindings of one AOR, applied atomically and durably:
/// `remove_all` first (`Contact: *`), then the removals, then the puts
/// (add or refresh, keyed by `contact`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindingUpdate {
    /// Remove every binding of the AOR first.
    pub remove_all: bool,
    /// Contacts to remove.
    pub remove: Vec<String>,
    /// Bindings to add or refresh (each replaces the row of its contact).
    pub put: Vec<Binding>,
}

/// The bindings of an AOR right after a write, and the AOR's change
/// counter ([`Epochs::bindings`]) as that write left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingSet {
    /// Every live binding of the AOR, the write included.
    pub bindings: Vec<Binding>,
    /// The AOR's change counter after the write.
    pub epoch: u64,
}

/// A storage backend. Every method returns at once; the work happens on
/// the backend's own thread(s) and the answer comes through the
/// [`Pending`]. A write is answered only once it is durable (embedded: the
/// redb commit, fsync included; Cassandra: acknowledged at LOCAL_QUORUM).
///
/// Times in records are wall-clock milliseconds ([`wall_ms`]). The test
/// suite [`suite::run_all`] checks a backend against this contract.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The user with this AOR (`user@domain`).
    fn user(&self, aor: &str) -> Pending<Option<User>>;

    /// The user with this E.164 alias (`+15551234567`).
    fn user_by_phone(&self, phone: &str) -> Pending<Option<User>>;

    /// Creates or replaces a user, and its phone index entry (a changed
    /// phone leaves no entry for the old one).
    fn put_user(&self, user: User) -> Pending<()>;

    /// Deletes a user, its phone index entry and its bindings; whether it
    /// existed.
    fn delete_user(&self, aor: &str) -> Pending<bool>;

    /// Every user, ordered by AOR.
    fn list_users(&self) -> Pending<Vec<User>>;

    /// The live bindings of an AOR (those whose `expires_at_ms` is in the
    /// future), ordered by contact.
    fn bindings(&self, aor: &str) -> Pending<Vec<Binding>>;

    /// Applies `update` to the bindings of `aor` (every `put` must be of
    /// this AOR) and answers with the live bindings afterwards. A binding
    /// disappears by itself at its `expires_at_ms`.
    fn update_bindings(&self, aor: &str, update: BindingUpdate) -> Pending<BindingSet>;

    /// Registers or replaces a proxy node.
    fn put_proxy(&self, proxy: ProxyInfo) -> Pending<()>;

    /// Records a proxy's heartbeat and load.
    fn heartbeat(&self, node_id: &str, at_ms: i64, load: f64) -> Pending<()>;

    /// Every proxy node, ordered by id.
    fn proxies(&self) -> Pending<Vec<ProxyInfo>>;

    /// Removes a proxy node.
    fn delete_proxy(&self, node_id: &str) -> Pending<()>;

    /// Applies dialog mutations in order (the Cassandra backend also has a
    /// batching per-core writer, `DialogWriter`, for the packet path).
    fn write_dialogs(&self, mutations: Vec<DialogMutation>) -> Pending<()>;

    /// The dialogs of these partitions (a failed owner's slice: see
    /// [`DialogPartition::recent`]).
    fn dialogs(&self, partitions: Vec<DialogPartition>) -> Pending<Vec<DialogRecord>>;

    /// The change counters this backend bumps when a write commits.
    fn epochs(&self) -> Arc<Epochs>;
}

/// Number of binding change counters (AORs share them by hash). A write
/// to one AOR makes every core refetch the cached bindings of the AORs
/// sharing its counter, so there are many: with 1024, 1000 users
/// registering in turn found their bindings stale 2 times in 3 (a store
/// read before most writes); with 65536 (512 KiB) it is about 1 in 65.
const EPOCH_BUCKETS: usize = 65_536;

/// Change counters that a backend bumps when a write commits, read by the
/// cores' caches: a cached answer read when the counter was `e` is current
/// while the counter is still `e`. One counter for all users (they change
/// rarely) and [`EPOCH_BUCKETS`] for bindings, chosen by the AOR's hash.
/// Relaxed atomics written by the storage thread, read by any core.
#[derive(Debug)]
pub struct Epochs {
    users: AtomicU64,
    bindings: Box<[AtomicU64]>,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs {
            users: AtomicU64::new(0),
            bindings: (0..EPOCH_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Epochs {
    fn bucket(&self, aor: &str) -> &AtomicU64 {
        let h = sipring_ring::key_id(aor.as_bytes()) as usize;
        &self.bindings[h % self.bindings.len()]
    }

    /// The users' counter.
    pub fn users(&self) -> u64 {
        self.users.load(Ordering::Acquire)
    }

    /// A user changed (after its write committed).
    pub fn bump_users(&self) -> u64 {
        self.users.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The counter of `aor`'s bindings.
    pub fn bindings(&self, aor: &str) -> u64 {
        self.bucket(aor).load(Ordering::Acquire)
    }

    /// `aor`'s bindings changed (after the write committed); the new value.
    pub fn bump_bindings(&self, aor: &str) -> u64 {
        self.bucket(aor).fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// What a core's engine asks of the store (`engine::Request::Store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// [`Store::user`].
    User {
        /// The AOR.
        aor: String,
    },
    /// [`Store::user_by_phone`].
    UserByPhone {
        /// The E.164 number.
        phone: String,
    },
    /// [`Store::bindings`].
    Bindings {
        /// The AOR.
        aor: String,
    },
    /// [`Store::update_bindings`].
    UpdateBindings {
        /// The AOR.
        aor: String,
        /// The change.
        update: BindingUpdate,
    },
}

/// The answer to a [`StoreOp`] (`engine::Reply::Store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    /// To `User` and `UserByPhone`.
    User(Option<User>),
    /// To `Bindings`.
    Bindings(Vec<Binding>),
    /// To `UpdateBindings`.
    Updated(BindingSet),
}

impl StoreOp {
    /// Sends the op to `store`; the future completes with its answer.
    pub fn run(self, store: &dyn Store) -> OpFuture {
        match self {
            StoreOp::User { aor } => OpFuture::User(store.user(&aor)),
            StoreOp::UserByPhone { phone } => OpFuture::User(store.user_by_phone(&phone)),
            StoreOp::Bindings { aor } => OpFuture::Bindings(store.bindings(&aor)),
            StoreOp::UpdateBindings { aor, update } => {
                OpFuture::Updated(store.update_bindings(&aor, update))
            }
        }
    }
}

/// The future of [`StoreOp::run`].
#[derive(Debug)]
pub enum OpFuture {
    /// A user look-up.
    User(Pending<Option<User>>),
    /// A bindings look-up.
    Bindings(Pending<Vec<Binding>>),
    /// A bindings update.
    Updated(Pending<BindingSet>),
}

impl Future for OpFuture {
    type Output = Result<StoreAnswer, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            OpFuture::User(p) => Pin::new(p).poll(cx).map(|r| r.map(StoreAnswer::User)),
            OpFuture::Bindings(p) => Pin::new(p).poll(cx).map(|r| r.map(StoreAnswer::Bindings)),
            OpFuture::Updated(p) => Pin::new(p).poll(cx).map(|r| r.map(StoreAnswer::Updated)),
        }
    }
}

/// Which backend `sipring serve` uses.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreSelection {
    /// The embedded store in this directory (single node).
    Embedded(PathBuf),
    /// A Cassandra cluster (`[cassandra]` overridden by the URL).
    Cassandra(CassandraConfig),
}

impl StoreSelection {
    /// The selection for `url` (`embedded`, or `cassandra://...` applied
    /// over `cassandra`), with `data_dir` for the embedded store.
    pub fn from_url(
        url: &str,
        data_dir: PathBuf,
        cassandra: &CassandraConfig,
    ) -> Result<StoreSelection, String> {
        if url.is_empty() || url == "embedded" {
            return Ok(StoreSelection::Embedded(data_dir));
        }
        if url.starts_with("cassandra://") {
            let mut c = cassandra.clone();
            c.apply_url(url).map_err(|e| e.to_string())?;
            return Ok(StoreSelection::Cassandra(c));
        }
        Err(format!(
            "store {url:?}: expected \"embedded\" or cassandra://host1,host2/keyspace"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend() {
        let base = CassandraConfig {
            batch_max: 8,
            ..CassandraConfig::default()
        };
        let d = PathBuf::from("/d");
        assert_eq!(
            StoreSelection::from_url("embedded", d.clone(), &base),
            Ok(StoreSelection::Embedded(d.clone()))
        );
        let Ok(StoreSelection::Cassandra(c)) =
            StoreSelection::from_url("cassandra://h1,h2/ks?rf=3", d.clone(), &base)
        else {
            panic!("not cassandra");
        };
        assert_eq!(
            (c.hosts.len(), c.keyspace.as_str(), c.batch_max),
            (2, "ks", 8)
        );
        assert!(StoreSelection::from_url("redis://x", d, &base).is_err());
    }

    #[test]
    fn epochs_count_per_aor_bucket() {
        let e = Epochs::default();
        assert_eq!(e.bindings("a@x"), 0);
        assert_eq!(e.bump_bindings("a@x"), 1);
        assert_eq!(e.bindings("a@x"), 1);
        assert_eq!(e.users(), 0);
        assert_eq!(e.bump_users(), 1);
    }
}
