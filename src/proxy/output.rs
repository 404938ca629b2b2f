//! The engine's outgoing queue and its buffer pool.
//!
//! Messages the engine decides to send are written back to back into one
//! byte arena per core and queued with their destination; `poll_transmit`
//! copies each into the shell's output buffer. The arena is cleared whenever
//! the queue empties, so it stops growing after the first burst.
//!
//! Transactions keep the bytes they may retransmit (a forwarded request, the
//! last response) in `Vec<u8>`s taken from a free list and returned when the
//! transaction ends: after warm-up no message allocates.

use std::collections::VecDeque;

use crate::engine::{Listener, Peer, Transmit};

/// One queued message: destination, source socket and its span in the arena.
#[derive(Clone, Copy, Debug)]
struct Queued {
    dest: Peer,
    source: Listener,
    start: usize,
    end: usize,
}

/// The per-core queue of messages to send.
#[derive(Debug, Default)]
pub(crate) struct Output {
    arena: Vec<u8>,
    queue: VecDeque<Queued>,
}

impl Output {
    pub(crate) fn with_capacity(bytes: usize, messages: usize) -> Self {
        Output {
            arena: Vec::with_capacity(bytes),
            queue: VecDeque::with_capacity(messages),
        }
    }

    /// Queues a copy of `msg`.
    pub(crate) fn push(&mut self, dest: Peer, source: Listener, msg: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(msg);
        self.queue.push_back(Queued {
            dest,
            source,
            start,
            end: self.arena.len(),
        });
    }

    /// Queues a message written in place by `write` (which appends to the
    /// arena). Returns the written bytes' span for a caller that also keeps
    /// a copy.
    pub(crate) fn write(
        &mut self,
        dest: Peer,
        source: Listener,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> &[u8] {
        let start = self.arena.len();
        write(&mut self.arena);
        let end = self.arena.len();
        self.queue.push_back(Queued {
            dest,
            source,
            start,
            end,
        });
        &self.arena[start..end]
    }

    /// Copies the next message into `buf`.
    pub(crate) fn pop(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let Some(q) = self.queue.pop_front() else {
            self.arena.clear();
            return None;
        };
        buf.clear();
        buf.extend_from_slice(&self.arena[q.start..q.end]);
        if self.queue.is_empty() {
            self.arena.clear();
        }
        Some(Transmit {
            dest: q.dest,
            len: buf.len(),
            source: q.source,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A free list of byte buffers.
#[derive(Debug, Default)]
pub(crate) struct BufPool {
    free: Vec<Vec<u8>>,
}

/// Buffers larger than this are not kept (a rare huge message should not pin
/// its memory).
const KEEP_CAPACITY: usize = 16 * 1024;
/// Most buffers kept.
const KEEP_COUNT: usize = 64 * 1024;

impl BufPool {
    /// An empty buffer.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(|| Vec::with_capacity(2048))
    }

    /// A buffer holding a copy of `bytes`.
    pub(crate) fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut b = self.take();
        b.extend_from_slice(bytes);
        b
    }

    /// Returns a buffer to the pool.
    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > KEEP_CAPACITY || self.free.len() >= KEEP_COUNT {
            return;
        }
        buf.clear();
        self.free.push(buf);
    }

    /// Returns an optional buffer to the pool.
    pub(crate) fn give_opt(&mut self, buf: Option<Vec<u8>>) {
        if let Some(b) = buf {
            self.give(b);
        }
    }
}
