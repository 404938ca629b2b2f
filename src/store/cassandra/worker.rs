//! The storage thread: a current-thread tokio runtime that owns the scylla
//! session. It receives jobs (user, binding, proxy requests) and each core's
//! queue of dialog flushes over channels; each job runs as its own task;
//! each core's flushes are written in order by one task per core.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::{self, Client, SharedClient};
use super::config::CassandraConfig;
use super::model::DialogMutation;
use super::sink::IdentityHasher;
use super::{StoreError, StoreStats};

/// A request to run on the storage thread.
pub(crate) type Job =
    Box<dyn FnOnce(SharedClient) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What the storage thread receives.
pub(crate) enum Msg {
    /// Run this.
    Job(Job),
    /// A core's dialog queue: write its flushes.
    Core {
        core: u16,
        rx: mpsc::Receiver<Vec<DialogMutation>>,
    },
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Job(_) => f.write_str("Job"),
            Msg::Core { core, .. } => write!(f, "Core({core})"),
        }
    }
}

/// How long the storage thread keeps writing queued dialog flushes after
/// every handle is gone.
const DRAIN: Duration = Duration::from_secs(5);

/// Starts the thread; returns once it is connected (or failed to).
pub(crate) fn start(
    config: CassandraConfig,
    stats: Arc<StoreStats>,
) -> Result<(mpsc::Sender<Msg>, std::thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel(config.queue_jobs);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sipring-cassandra".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(StoreError::Backend(format!("tokio runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(run(config, stats, rx, ready_tx));
        })
        .map_err(|e| StoreError::Backend(format!("storage thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((tx, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(StoreError::Backend("storage thread died at start".into())),
    }
}

async fn run(
    config: CassandraConfig,
    stats: Arc<StoreStats>,
    mut rx: mpsc::Receiver<Msg>,
    ready: std::sync::mpsc::Sender<Result<(), StoreError>>,
) {
    let connect = Client::connect(&config);
    let limit = Duration::from_millis(config.connect_timeout_ms.saturating_mul(2));
    let client = match tokio::time::timeout(limit, connect).await {
        Ok(Ok(c)) => Arc::new(c),
        Ok(Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(StoreError::Unavailable(format!(
                "no connection to {:?} within {limit:?}",
                config.hosts
            ))));
            return;
        }
    };
    tracing::info!(hosts = ?config.hosts, keyspace = %config.keyspace, "cassandra: connected");
    let _ = ready.send(Ok(()));
    let config = Arc::new(config);
    let mut cores = Vec::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Job(job) => {
                tokio::spawn(job(client.clone()));
            }
            Msg::Core { core, rx } => {
                cores.push(tokio::spawn(dialog_loop(
                    client.clone(),
                    core,
                    rx,
                    stats.clone(),
                    config.clone(),
                )));
            }
        }
    }
    // Every handle is gone; writers flushed when dropped. Write what is
    // queued, for a bounded time.
    let _ = tokio::time::timeout(DRAIN, async {
        for c in cores {
            let _ = c.await;
        }
    })
    .await;
}

/// Writes one core's flushes, in order. Flushes that queued up while a
/// write was in flight are merged into the next write (up to 4 × batch_max
/// mutations), so that mutations of one partition from several flushes share
/// requests.
async fn dialog_loop(
    client: SharedClient,
    core: u16,
    mut rx: mpsc::Receiver<Vec<DialogMutation>>,
    stats: Arc<StoreStats>,
    config: Arc<CassandraConfig>,
) {
    let merge_max = config.batch_max.saturating_mul(4);
    let initial = Duration::from_millis(config.retry_initial_ms.max(1));
    let max = Duration::from_millis(config.retry_max_ms.max(config.retry_initial_ms).max(1));
    let mut degraded_since: Option<std::time::Instant> = None;
    while let Some(mut muts) = rx.recv().await {
        stats.dialog_flushes.fetch_add(1, Ordering::Relaxed);
        let mut merged = false;
        while muts.len() < merge_max {
            match rx.try_recv() {
                Ok(more) => {
                    stats.dialog_flushes.fetch_add(1, Ordering::Relaxed);
                    muts.extend(more);
                    merged = true;
                }
                Err(_) => break,
            }
        }
        // One flush spans one batch window: a dialog that starts and ends
        // in it is rare, so only merged flushes (a backlog) are coalesced.
        if merged || muts.len() > config.batch_max {
            let coalesced = coalesce(&mut muts);
            stats
                .dialog_mutations_coalesced
                .fetch_add(coalesced as u64, Ordering::Relaxed);
        }
        let mut backoff = initial;
        loop {
            match write(&client, &muts, config.batch_max, &stats).await {
                Ok(()) => {
                    if let Some(since) = degraded_since.take() {
                        stats.set_degraded(false);
                        tracing::info!(
                            core,
                            down_ms = since.elapsed().as_millis() as u64,
                            dropped = stats.dialog_mutations_dropped(),
                            "cassandra: dialog writes resumed"
                        );
                    }
                    break;
                }
                Err((failed, StoreError::Backend(e))) => {
                    stats
                        .dialog_mutations_failed
                        .fetch_add(failed.len() as u64, Ordering::Relaxed);
                    tracing::error!(
                        core,
                        n = failed.len(),
                        "cassandra: dialog write refused: {e}"
                    );
                    break;
                }
                Err((failed, e)) => {
                    stats.dialog_retries.fetch_add(1, Ordering::Relaxed);
                    if degraded_since.is_none() {
                        degraded_since = Some(std::time::Instant::now());
                        if !stats.set_degraded(true) {
                            tracing::warn!(
                                core,
                                "cassandra: storage degraded, retrying dialog writes: {e}"
                            );
                        }
                    }
                    muts = failed;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }
}

/// Largest UNLOGGED BATCH sent, in (estimated) bytes: under Cassandra's
/// default `batch_size_fail_threshold` (50 KiB) with room to spare.
const MAX_BATCH_BYTES: usize = 40 * 1024;

/// Most dialog requests one core has in flight at once.
const MAX_IN_FLIGHT: usize = 32;

/// About how many bytes a mutation adds to a batch.
fn size_of(m: &DialogMutation) -> usize {
    let k = m.key();
    let key = k.partition.owner_node.len() + k.call_id.len() + k.from_tag.len() + k.to_tag.len();
    match m {
        DialogMutation::Upsert(r) => 64 + key + r.state.len(),
        DialogMutation::Delete(_) => 48 + key,
    }
}

/// The mutations cut into requests: by partition, then at most `batch_max`
/// mutations and `MAX_BATCH_BYTES` each.
fn requests(muts: &[DialogMutation], batch_max: usize) -> Vec<Vec<&DialogMutation>> {
    let mut out = Vec::new();
    for group in client::by_partition(muts).into_values() {
        let mut chunk: Vec<&DialogMutation> = Vec::new();
        let mut bytes = 0;
        for m in group {
            let n = size_of(m);
            if !chunk.is_empty() && (chunk.len() >= batch_max || bytes + n > MAX_BATCH_BYTES) {
                out.push(std::mem::take(&mut chunk));
                bytes = 0;
            }
            chunk.push(m);
            bytes += n;
        }
        if !chunk.is_empty() {
            out.push(chunk);
        }
    }
    out
}

/// Writes the mutations: one request per partition chunk (`requests`), up
/// to `MAX_IN_FLIGHT` at once. On failure returns the mutations of the
/// requests that failed and one of their errors (a transient one if any).
async fn write(
    client: &Client,
    muts: &[DialogMutation],
    batch_max: usize,
    stats: &StoreStats,
) -> Result<(), (Vec<DialogMutation>, StoreError)> {
    let reqs = requests(muts, batch_max);
    let mut failed = Vec::new();
    let mut error = None;
    for wave in reqs.chunks(MAX_IN_FLIGHT) {
        let results = client::join_all(wave.iter().map(|r| client.write_partition(r))).await;
        for (req, r) in wave.iter().zip(results) {
            match r {
                Ok(requests) => {
                    stats.dialog_requests.fetch_add(requests, Ordering::Relaxed);
                    stats
                        .dialog_mutations_persisted
                        .fetch_add(req.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    failed.extend(req.iter().map(|m| (*m).clone()));
                    if error.is_none() || !matches!(e, StoreError::Backend(_)) {
                        error = Some(e);
                    }
                }
            }
        }
    }
    match error {
        None => Ok(()),
        Some(e) => Err((failed, e)),
    }
}

/// Keeps only the last mutation of each dialog (the row's final state);
/// returns how many were removed. Dialogs are told apart by a 64-bit hash
/// of their key; on a (rare) collision of two different keys both are kept.
fn coalesce(muts: &mut Vec<DialogMutation>) -> usize {
    let before = muts.len();
    let mut last: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>> =
        HashMap::with_capacity_and_hasher(before, BuildHasherDefault::default());
    let mut superseded = vec![false; before];
    let mut any = false;
    for (i, m) in muts.iter().enumerate() {
        let k = m.key();
        let h = sipring_ring::key_id(k.call_id.as_bytes())
            ^ sipring_ring::key_id(k.from_tag.as_bytes()).rotate_left(17)
            ^ sipring_ring::key_id(k.to_tag.as_bytes()).rotate_left(41)
            ^ (k.partition.bucket as u64).rotate_left(7)
            ^ u64::from(k.partition.slice);
        match last.get(&h) {
            Some(&j) if muts[j].key() == k => {
                superseded[j] = true;
                any = true;
                last.insert(h, i);
            }
            Some(_) => {} // a collision: keep both
            None => {
                last.insert(h, i);
            }
        }
    }
    if !any {
        return 0;
    }
    let mut i = 0;
    muts.retain(|_| {
        i += 1;
        !superseded[i - 1]
    });
    before - muts.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cassandra::model::{DialogKey, DialogPartition, DialogRecord};

    fn key(c: &str) -> DialogKey {
        DialogKey {
            partition: DialogPartition::new("n", 0, 0, 1000),
            call_id: c.into(),
            from_tag: "f".into(),
            to_tag: "t".into(),
        }
    }

    fn up(c: &str, s: u8) -> DialogMutation {
        DialogMutation::Upsert(DialogRecord {
            key: key(c),
            state: vec![s],
            updated_at_ms: 0,
        })
    }

    #[test]
    fn requests_are_cut_by_partition_count_and_size() {
        let big = |c: &str| {
            DialogMutation::Upsert(DialogRecord {
                key: key(c),
                state: vec![0; 10_000],
                updated_at_ms: 0,
            })
        };
        let mut muts: Vec<DialogMutation> = (0..10).map(|i| up(&format!("s{i}"), 0)).collect();
        let other = DialogKey {
            partition: DialogPartition::new("n", 1, 0, 1000),
            ..key("x")
        };
        muts.push(DialogMutation::Delete(other));
        let r = requests(&muts, 4);
        let sizes: Vec<usize> = r.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![4, 4, 2, 1],
            "by count, then the other partition"
        );
        let muts: Vec<DialogMutation> = (0..10).map(|i| big(&format!("b{i}"))).collect();
        let r = requests(&muts, 64);
        assert!(r.iter().all(|c| c.len() <= 4), "40 KiB cap");
        assert_eq!(r.iter().map(Vec::len).sum::<usize>(), 10);
    }

    #[test]
    fn coalesce_keeps_the_last_mutation_of_each_dialog_in_order() {
        let mut m = vec![
            up("a", 1),
            up("b", 1),
            up("a", 2),
            DialogMutation::Delete(key("b")),
            up("c", 1),
        ];
        assert_eq!(coalesce(&mut m), 2);
        assert_eq!(
            m,
            vec![up("a", 2), DialogMutation::Delete(key("b")), up("c", 1)]
        );
        let mut m = vec![up("a", 1), up("b", 1)];
        assert_eq!(coalesce(&mut m), 0);
    }
}
