//! A core's dialog writer: gathers the core's dialog mutations and hands
//! them to the storage thread in flushes of up to `batch_max`, at most
//! `batch_window` after the oldest one arrived.
//!
//! Sans-IO apart from a channel send that never waits: time comes in as an
//! argument, and whoever owns the writer (the core's engine) calls
//! `handle_timeout` at `poll_timeout`. A flush that finds the core's queue
//! full is kept and tried again `BLOCKED_RETRY` later, growing with the
//! mutations that keep coming up to `queue_batches × batch_max` held
//! mutations; beyond that new mutations are dropped and counted. Nothing
//! ever waits, and a core never holds more than that bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::CassandraConfig;

/// How long a writer whose queue was full waits before trying again.
const BLOCKED_RETRY: Duration = Duration::from_millis(20);
use super::model::DialogMutation;
use crate::time::Instant;

/// One core's writer counters, written only by that core.
#[derive(Debug, Default)]
pub struct WriterStats {
    queued: AtomicU64,
    dropped: AtomicU64,
}

impl WriterStats {
    /// Mutations handed to the storage thread.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Mutations dropped because the queue was full or the thread gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    // One writer per counter: a load and a store, no locked instruction.
    fn add(counter: &AtomicU64, n: usize) {
        let v = counter.load(Ordering::Relaxed);
        counter.store(v + n as u64, Ordering::Relaxed);
    }
}

/// A core's batching dialog writer (see the module docs).
#[derive(Debug)]
pub struct DialogWriter {
    tx: mpsc::Sender<Vec<DialogMutation>>,
    buf: Vec<DialogMutation>,
    oldest: Option<Instant>,
    batch_max: usize,
    max_held: usize,
    window: Duration,
    /// The queue was full: no send before this.
    blocked_until: Option<Instant>,
    stats: Arc<WriterStats>,
}

impl DialogWriter {
    pub(crate) fn new(
        tx: mpsc::Sender<Vec<DialogMutation>>,
        c: &CassandraConfig,
        stats: Arc<WriterStats>,
    ) -> Self {
        DialogWriter {
            tx,
            buf: Vec::with_capacity(c.batch_max),
            oldest: None,
            batch_max: c.batch_max,
            max_held: c.batch_max.saturating_mul(c.queue_batches).max(c.batch_max),
            window: c.batch_window(),
            blocked_until: None,
            stats,
        }
    }

    /// Queues a mutation; flushes when `batch_max` are held (and the queue
    /// is not known to be full). Drops and counts it when the writer already
    /// holds its bound.
    pub fn push(&mut self, now: Instant, m: DialogMutation) {
        if self.buf.len() >= self.max_held {
            WriterStats::add(&self.stats.dropped, 1);
            return;
        }
        if self.buf.is_empty() {
            self.oldest = Some(now);
        }
        self.buf.push(m);
        if self.buf.len() >= self.batch_max && self.blocked_until.is_none_or(|t| t <= now) {
            self.send(now);
        }
    }

    /// When `handle_timeout` must run: the oldest mutation's window end, or
    /// the next try after a full queue.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = self.oldest? + self.window;
        Some(self.blocked_until.map_or(due, |b| b.max(due)))
    }

    /// Flushes if the window of the oldest mutation has ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|due| due <= now) {
            self.send(now);
        }
    }

    /// Hands every held mutation to the storage thread now (if its queue
    /// has room; else they stay held).
    pub fn flush(&mut self) {
        let now = self.oldest.unwrap_or_default();
        self.send(now);
    }

    fn send(&mut self, now: Instant) {
        if self.buf.is_empty() {
            self.oldest = None;
            return;
        }
        let n = self.buf.len();
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(self.batch_max));
        match self.tx.try_send(batch) {
            Ok(()) => {
                WriterStats::add(&self.stats.queued, n);
                self.oldest = None;
                self.blocked_until = None;
            }
            Err(mpsc::error::TrySendError::Full(batch)) => {
                // Keep them; try again a little later.
                self.buf = batch;
                self.blocked_until = Some(now + BLOCKED_RETRY);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                WriterStats::add(&self.stats.dropped, n);
                self.oldest = None;
            }
        }
    }

    /// Mutations held, not yet flushed.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// This writer's counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }
}

impl Drop for DialogWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::cassandra::model::{DialogKey, DialogPartition};

    fn del(i: u32) -> DialogMutation {
        DialogMutation::Delete(DialogKey {
            partition: DialogPartition::new("n", 0, 0, 1000),
            call_id: format!("c{i}"),
            from_tag: "f".into(),
            to_tag: "t".into(),
        })
    }

    fn writer(
        batch_max: usize,
        queue: usize,
    ) -> (DialogWriter, mpsc::Receiver<Vec<DialogMutation>>) {
        let (tx, rx) = mpsc::channel(queue);
        let c = CassandraConfig {
            batch_max,
            queue_batches: queue,
            batch_window_us: 5_000,
            ..CassandraConfig::default()
        };
        (DialogWriter::new(tx, &c, Arc::default()), rx)
    }

    #[test]
    fn flushes_at_batch_max_or_at_the_end_of_the_window() {
        let (mut w, mut rx) = writer(3, 8);
        let t0 = Instant::from_nanos(1_000_000);
        w.push(t0, del(1));
        assert_eq!(w.poll_timeout(), Some(t0 + Duration::from_millis(5)));
        w.push(t0 + Duration::from_millis(1), del(2));
        w.handle_timeout(t0 + Duration::from_millis(4));
        assert!(rx.try_recv().is_err(), "not yet due");
        w.push(t0 + Duration::from_millis(2), del(3));
        assert_eq!(rx.try_recv().unwrap().len(), 3, "full batch");
        assert_eq!(w.poll_timeout(), None);

        let t1 = t0 + Duration::from_millis(10);
        w.push(t1, del(4));
        w.handle_timeout(t1 + Duration::from_millis(5));
        assert_eq!(rx.try_recv().unwrap(), vec![del(4)]);
        assert_eq!(w.stats().queued(), 4);
    }

    #[test]
    fn a_full_queue_holds_up_to_the_bound_then_drops_and_counts() {
        // batch_max 1, queue of 2 flushes: the writer holds at most 2.
        let (mut w, mut rx) = writer(1, 2);
        let t = Instant::from_nanos(0);
        for i in 0..6 {
            w.push(t, del(i));
        }
        assert_eq!(w.stats().queued(), 2, "two flushes queued");
        assert_eq!(w.held(), 2, "two held while the queue is full");
        assert_eq!(w.stats().dropped(), 2, "the rest dropped");
        // Not retried before BLOCKED_RETRY: no busy loop.
        assert_eq!(w.poll_timeout(), Some(t + BLOCKED_RETRY));
        assert_eq!(rx.try_recv().unwrap(), vec![del(0)]);
        w.handle_timeout(t + BLOCKED_RETRY);
        assert_eq!(w.held(), 0, "sent once there is room");
        assert_eq!(rx.try_recv().unwrap(), vec![del(1)]);
        assert_eq!(rx.try_recv().unwrap(), vec![del(2), del(3)]);
        drop(rx);
        w.push(t, del(9));
        assert_eq!(w.stats().dropped(), 3, "a closed queue counts too");
    }
}
