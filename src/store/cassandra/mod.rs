//! The Cassandra backend of the store: users, bindings, proxies and dialog
//! state in a Cassandra (or ScyllaDB) cluster through the scylla driver.
//!
//! Threading: the scylla driver needs tokio, so it runs on one dedicated
//! storage thread with its own current-thread tokio runtime (`worker`).
//! Shards never block on it and run no tokio runtime: they hand it work
//! over bounded channels (`try_send`, which never waits) and get answers
//! through oneshot channels whose receivers are runtime-agnostic futures, so
//! a glommio task awaits them and is woken from the storage thread.
//!
//! Dialog state: each core owns a [`DialogWriter`] that gathers its dialog
//! mutations and flushes them as one message when it holds `batch_max` of
//! them or its oldest is `batch_window` old. The storage thread writes a
//! flush grouped by partition (an UNLOGGED BATCH per partition, or
//! concurrent statements: `batch_mode`), retrying with exponential backoff
//! while Cassandra is slow or down. Each core's queue of flushes is bounded:
//! when it is full the core drops the flush and counts its mutations, so
//! calls keep flowing and memory stays bounded. [`StoreStats`] reports the
//! degraded state, the counts and the batching factor.

mod client;
pub mod config;
mod metrics;
mod schema;
mod sink;
mod worker;
mod writer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use crate::store::model;
pub use crate::store::pending::{Pending, StoreError, wall_ms};
pub use config::{BatchMode, CassandraConfig, ConfigError, Replication};
pub use model::{
    Binding, DialogKey, DialogMutation, DialogPartition, DialogRecord, ProxyInfo, User,
};
pub use sink::CassandraDialogs;
pub use writer::{DialogWriter, WriterStats};

use client::SharedClient;
use worker::{Job, Msg};

/// The storage thread's counters: written by it (and, for the dialog
/// queues, by each core's [`WriterStats`]), read by the metrics thread.
#[derive(Debug, Default)]
pub struct StoreStats {
    degraded: AtomicBool,
    /// Dialog mutations written to Cassandra.
    pub dialog_mutations_persisted: AtomicU64,
    /// Cassandra requests made for dialog mutations (batches or statements).
    pub dialog_requests: AtomicU64,
    /// Flushes received from the cores.
    pub dialog_flushes: AtomicU64,
    /// Mutations made redundant by a later one of the same dialog in the
    /// same write (not sent).
    pub dialog_mutations_coalesced: AtomicU64,
    /// Mutations Cassandra refused for good (not retried).
    pub dialog_mutations_failed: AtomicU64,
    /// Failed dialog write attempts that were retried.
    pub dialog_retries: AtomicU64,
    /// User, binding and proxy requests that failed.
    pub job_errors: AtomicU64,
    writers: Mutex<Vec<Arc<WriterStats>>>,
}

impl StoreStats {
    /// Whether Cassandra is failing requests now (set by a failed write,
    /// cleared by the next successful dialog write).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub(crate) fn set_degraded(&self, on: bool) -> bool {
        self.degraded.swap(on, Ordering::Relaxed)
    }

    /// Mutations the cores dropped because their queue was full (Cassandra
    /// too slow or down for too long): never persisted.
    pub fn dialog_mutations_dropped(&self) -> u64 {
        self.writers().iter().map(|w| w.dropped()).sum()
    }

    /// Mutations the cores queued for the storage thread.
    pub fn dialog_mutations_queued(&self) -> u64 {
        self.writers().iter().map(|w| w.queued()).sum()
    }

    fn writers(&self) -> Vec<Arc<WriterStats>> {
        self.writers.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// A plain copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            degraded: self.degraded(),
            persisted: r(&self.dialog_mutations_persisted),
            requests: r(&self.dialog_requests),
            flushes: r(&self.dialog_flushes),
            coalesced: r(&self.dialog_mutations_coalesced),
            failed: r(&self.dialog_mutations_failed),
            retries: r(&self.dialog_retries),
            dropped: self.dialog_mutations_dropped(),
            queued: self.dialog_mutations_queued(),
            job_errors: r(&self.job_errors),
        }
    }
}

/// A copy of [`StoreStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Cassandra failing now.
    pub degraded: bool,
    /// Dialog mutations written.
    pub persisted: u64,
    /// Cassandra requests made for them.
    pub requests: u64,
    /// Flushes received from the cores.
    pub flushes: u64,
    /// Mutations coalesced away.
    pub coalesced: u64,
    /// Mutations refused for good.
    pub failed: u64,
    /// Retried write attempts.
    pub retries: u64,
    /// Mutations dropped by full core queues.
    pub dropped: u64,
    /// Mutations queued by the cores.
    pub queued: u64,
    /// Failed user/binding/proxy requests.
    pub job_errors: u64,
}

/// A handle to the Cassandra store, shared by every core (cheap to clone,
/// `Send`). Each request returns a [`Pending`] future at once.
#[derive(Clone, Debug)]
pub struct CassandraStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Msg>,
    config: CassandraConfig,
    stats: Arc<StoreStats>,
    epochs: Arc<crate::store::Epochs>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CassandraStore {
    /// Starts the storage thread, connects to the cluster and creates the
    /// schema when absent. Blocks the calling thread (not a shard: `main`,
    /// at start-up) until connected, or fails after `connect_timeout_ms`.
    pub fn connect(config: CassandraConfig) -> Result<CassandraStore, StoreError> {
        config
            .validate()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let stats = Arc::new(StoreStats::default());
        let (tx, thread) = worker::start(config.clone(), stats.clone())?;
        Ok(CassandraStore {
            inner: Arc::new(Inner {
                tx,
                config,
                stats,
                epochs: Arc::default(),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &CassandraConfig {
        &self.inner.config
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.inner.stats
    }

    /// A dialog writer for `core` (call once per core, on any thread).
    pub fn dialog_writer(&self, core: u16) -> DialogWriter {
        let (tx, rx) = mpsc::channel(self.inner.config.queue_batches);
        let stats = Arc::new(WriterStats::default());
        if let Ok(mut w) = self.inner.stats.writers.lock() {
            w.push(stats.clone());
        }
        // The storage thread's own queue: if it is full or gone, the
        // writer's sends fail and count as dropped.
        let _ = self.inner.tx.try_send(Msg::Core { core, rx });
        DialogWriter::new(tx, &self.inner.config, stats)
    }

    fn call<T, F, Fut>(&self, f: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(SharedClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let stats = self.inner.stats.clone();
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let r = f(client).await;
                if r.is_err() {
                    stats.job_errors.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(r);
            })
        });
        match self.inner.tx.try_send(Msg::Job(job)) {
            Ok(()) => Pending::Waiting(rx),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Pending::Failed(Some(StoreError::Overloaded))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Pending::Failed(Some(
                StoreError::Unavailable("storage thread stopped".into()),
            )),
        }
    }

    /// The user with this AOR.
    pub fn user(&self, aor: &str) -> Pending<Option<User>> {
        let aor = aor.to_owned();
        self.call(move |c| async move { c.get_user(&aor).await })
    }

    /// The user with this E.164 alias.
    pub fn user_by_phone(&self, phone: &str) -> Pending<Option<User>> {
        let phone = phone.to_owned();
        self.call(move |c| async move { c.user_by_phone(&phone).await })
    }

    /// Creates or replaces a user (and its phone index entry).
    pub fn put_user(&self, user: User) -> Pending<()> {
        self.call(move |c| async move { c.put_user(&user).await })
    }

    /// Deletes a user, its phone index entry and its bindings; whether it
    /// existed.
    pub fn delete_user(&self, aor: &str) -> Pending<bool> {
        let aor = aor.to_owned();
        self.call(move |c| async move { c.delete_user(&aor).await })
    }

    /// Every user, by AOR.
    pub fn list_users(&self) -> Pending<Vec<User>> {
        self.call(move |c| async move { c.list_users().await })
    }

    /// The live bindings of an AOR.
    pub fn bindings(&self, aor: &str) -> Pending<Vec<Binding>> {
        let aor = aor.to_owned();
        self.call(move |c| async move { c.bindings(&aor).await })
    }

    /// Adds or refreshes a binding; Cassandra removes it after `ttl`.
    pub fn put_binding(&self, binding: Binding, ttl: Duration) -> Pending<()> {
        let secs = u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX);
        self.call(move |c| async move { c.put_binding(&binding, secs).await })
    }

    /// Removes one binding.
    pub fn delete_binding(&self, aor: &str, contact: &str) -> Pending<()> {
        let (aor, contact) = (aor.to_owned(), contact.to_owned());
        self.call(move |c| async move { c.delete_binding(&aor, &contact).await })
    }

    /// Removes every binding of an AOR (`Contact: *`).
    pub fn delete_bindings(&self, aor: &str) -> Pending<()> {
        let aor = aor.to_owned();
        self.call(move |c| async move { c.delete_bindings(&aor).await })
    }

    /// Registers or replaces a proxy node.
    pub fn put_proxy(&self, proxy: ProxyInfo) -> Pending<()> {
        self.call(move |c| async move { c.put_proxy(&proxy).await })
    }

    /// Records a proxy's heartbeat and load.
    pub fn heartbeat(&self, node_id: &str, at_ms: i64, load: f64) -> Pending<()> {
        let node_id = node_id.to_owned();
        self.call(move |c| async move { c.heartbeat(&node_id, at_ms, load).await })
    }

    /// Every proxy node, by id.
    pub fn proxies(&self) -> Pending<Vec<ProxyInfo>> {
        self.call(move |c| async move { c.proxies().await })
    }

    /// Writes this node's row now and its heartbeat every `every` from the
    /// storage thread (until the store shuts down). `load` is read at each
    /// beat.
    pub fn announce(
        &self,
        proxy: ProxyInfo,
        every: Duration,
        load: impl Fn() -> f64 + Send + 'static,
    ) -> Pending<()> {
        let every = every.max(Duration::from_millis(10));
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            Box::pin(async move {
                let _ = reply.send(c.put_proxy(&proxy).await);
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = c.heartbeat(&proxy.node_id, wall_ms(), load()).await {
                        tracing::warn!("cassandra: heartbeat of {}: {e}", proxy.node_id);
                    }
                }
            })
        });
        match self.inner.tx.try_send(Msg::Job(job)) {
            Ok(()) => Pending::Waiting(rx),
            Err(_) => Pending::Failed(Some(StoreError::Overloaded)),
        }
    }

    /// Removes a proxy node.
    pub fn delete_proxy(&self, node_id: &str) -> Pending<()> {
        let node_id = node_id.to_owned();
        self.call(move |c| async move { c.delete_proxy(&node_id).await })
    }

    /// The dialogs of these partitions (a failed owner's slice: see
    /// [`DialogPartition::recent`]), read concurrently.
    pub fn dialogs(&self, partitions: Vec<DialogPartition>) -> Pending<Vec<DialogRecord>> {
        self.call(move |c| async move {
            let reads = partitions.iter().map(|p| c.dialogs(p));
            let mut out = Vec::new();
            for r in client::join_all(reads).await {
                out.extend(r?);
            }
            Ok(out)
        })
    }

    /// Stops the storage thread once every handle and writer is gone:
    /// flushes queued dialog mutations (for at most `timeout`) and joins it.
    pub fn shutdown(self, timeout: Duration) {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            return; // another handle lives: the last one shuts down
        };
        let thread = inner.thread.lock().ok().and_then(|mut t| t.take());
        drop(inner.tx);
        if let Some(t) = thread {
            let deadline = std::time::Instant::now() + timeout;
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The storage interface shared with the embedded store (docs/storage.md).
/// Writes bump this process's change counters once Cassandra acknowledged
/// them; writes made through other nodes are not seen there, so caches in
/// front of this backend also expire by age.
impl crate::store::Store for CassandraStore {
    fn user(&self, aor: &str) -> Pending<Option<User>> {
        CassandraStore::user(self, aor)
    }

    fn user_by_phone(&self, phone: &str) -> Pending<Option<User>> {
        CassandraStore::user_by_phone(self, phone)
    }

    fn put_user(&self, user: User) -> Pending<()> {
        let epochs = self.inner.epochs.clone();
        self.call(move |c| async move {
            c.put_user(&user).await?;
            epochs.bump_users();
            Ok(())
        })
    }

    fn delete_user(&self, aor: &str) -> Pending<bool> {
        let aor = aor.to_owned();
        let epochs = self.inner.epochs.clone();
        self.call(move |c| async move {
            let existed = c.delete_user(&aor).await?;
            epochs.bump_users();
            epochs.bump_bindings(&aor);
            Ok(existed)
        })
    }

    fn list_users(&self) -> Pending<Vec<User>> {
        CassandraStore::list_users(self)
    }

    fn bindings(&self, aor: &str) -> Pending<Vec<Binding>> {
        let aor = aor.to_owned();
        self.call(move |c| async move {
            let now = wall_ms();
            let mut v = c.bindings(&aor).await?;
            // The TTL has a granularity of seconds: be exact.
            v.retain(|b| b.expires_at_ms > now);
            Ok(v)
        })
    }

    fn update_bindings(
        &self,
        aor: &str,
        update: crate::store::BindingUpdate,
    ) -> Pending<crate::store::BindingSet> {
        let aor = aor.to_owned();
        let epochs = self.inner.epochs.clone();
        self.call(move |c| async move {
            if let Some(b) = update.put.iter().find(|b| b.aor != aor) {
                return Err(StoreError::Backend(format!(
                    "binding of {} in an update of {aor}",
                    b.aor
                )));
            }
            // One atomic batch on the AOR's partition (client::update_bindings).
            let now = wall_ms();
            let put: Vec<(Binding, u32)> = update
                .put
                .into_iter()
                .map(|b| {
                    // Whole seconds, rounded up: the row outlives its expiry
                    // by under a second, and reads filter on expires_at.
                    let ms = (b.expires_at_ms - now).max(1000);
                    let secs = u32::try_from((ms + 999) / 1000).unwrap_or(u32::MAX);
                    (b, secs)
                })
                .collect();
            c.update_bindings(&aor, update.remove_all, &update.remove, &put)
                .await?;
            let epoch = epochs.bump_bindings(&aor);
            let now = wall_ms();
            let mut bindings = c.bindings(&aor).await?;
            bindings.retain(|b| b.expires_at_ms > now);
            Ok(crate::store::BindingSet { bindings, epoch })
        })
    }

    fn put_proxy(&self, proxy: ProxyInfo) -> Pending<()> {
        CassandraStore::put_proxy(self, proxy)
    }

    fn heartbeat(&self, node_id: &str, at_ms: i64, load: f64) -> Pending<()> {
        CassandraStore::heartbeat(self, node_id, at_ms, load)
    }

    fn proxies(&self) -> Pending<Vec<ProxyInfo>> {
        CassandraStore::proxies(self)
    }

    fn delete_proxy(&self, node_id: &str) -> Pending<()> {
        CassandraStore::delete_proxy(self, node_id)
    }

    fn write_dialogs(&self, mutations: Vec<DialogMutation>) -> Pending<()> {
        self.call(move |c| async move {
            // In order, one partition's run at a time.
            let mut i = 0;
            while i < mutations.len() {
                let p = &mutations[i].key().partition;
                let run: Vec<&DialogMutation> = mutations[i..]
                    .iter()
                    .take_while(|m| &m.key().partition == p)
                    .collect();
                i += run.len();
                c.write_partition(&run).await?;
            }
            Ok(())
        })
    }

    fn dialogs(&self, partitions: Vec<DialogPartition>) -> Pending<Vec<DialogRecord>> {
        CassandraStore::dialogs(self, partitions)
    }

    fn epochs(&self) -> Arc<crate::store::Epochs> {
        self.inner.epochs.clone()
    }
}
