//! A core's dialog writer: gathers the core's dialog mutations and hands
//! them to the storage thread in flushes of up to `batch_max`, at most
//! `batch_window` after the oldest one arrived.
//!
//! Sans-IO apart from a channel send that never waits: time comes in as an
//! argument, and whoever owns the writer (the shell's core loop) calls
//! `handle_timeout` at `poll_timeout`. A flush that finds the core's queue
//! full is dropped and counted, never waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::CassandraConfig;
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
    window: Duration,
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
            window: c.batch_window(),
            stats,
        }
    }

    /// Queues a mutation; flushes when `batch_max` are held.
    pub fn push(&mut self, now: Instant, m: DialogMutation) {
        if self.buf.is_empty() {
            self.oldest = Some(now);
        }
        self.buf.push(m);
        if self.buf.len() >= self.batch_max {
            self.flush();
        }
    }

    /// When `handle_timeout` must run (the oldest mutation's window end).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.window)
    }

    /// Flushes if the window of the oldest mutation has ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|due| due <= now) {
            self.flush();
        }
    }

    /// Hands every held mutation to the storage thread now.
    pub fn flush(&mut self) {
        self.oldest = None;
        if self.buf.is_empty() {
            return;
        }
        let n = self.buf.len();
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(self.batch_max));
        match self.tx.try_send(batch) {
            Ok(()) => WriterStats::add(&self.stats.queued, n),
            Err(_) => WriterStats::add(&self.stats.dropped, n),
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
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (mut w, mut rx) = writer(1, 2);
        let t = Instant::from_nanos(0);
        for i in 0..5 {
            w.push(t, del(i));
        }
        assert_eq!(w.stats().queued(), 2);
        assert_eq!(w.stats().dropped(), 3);
        assert_eq!(rx.try_recv().unwrap(), vec![del(0)]);
        drop(rx);
        w.push(t, del(9));
        assert_eq!(w.stats().dropped(), 4, "a closed queue counts too");
    }
}
