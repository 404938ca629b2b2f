//! How a store answers: [`Pending`], a future any executor can await (a
//! glommio shard, `block_on` in the CLI, tokio), woken from the storage
//! thread; and [`StoreError`], why a request failed.
//!
//! The channel is tokio's oneshot, which needs no tokio runtime on either
//! side: the storage thread sends, the shard's task is woken through the
//! standard `Waker`, and glommio accepts wakes from foreign threads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// Why a storage request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The backend is unreachable, slow or overloaded: retrying may succeed.
    Unavailable(String),
    /// The storage thread's queue is full: the request was not sent.
    Overloaded,
    /// A request the backend refused, or a result it could not read as
    /// expected: retrying will not help.
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "store unavailable: {e}"),
            StoreError::Overloaded => write!(f, "storage queue full"),
            StoreError::Backend(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The answer to a store request, as a future that any executor can await
/// (the storage thread wakes it). Dropping it abandons the answer, not the
/// request.
#[derive(Debug)]
pub enum Pending<T> {
    /// Sent; the answer comes through this channel.
    Waiting(oneshot::Receiver<Result<T, StoreError>>),
    /// Not sent (or answered at once): the result, taken by the first poll.
    Failed(Option<StoreError>),
}

/// The sending half of a [`Pending`], held by the backend.
#[derive(Debug)]
pub struct Answer<T>(oneshot::Sender<Result<T, StoreError>>);

impl<T> Answer<T> {
    /// Answers the request (ignored when the requester gave up).
    pub fn send(self, result: Result<T, StoreError>) {
        let _ = self.0.send(result);
    }
}

impl<T> Pending<T> {
    /// A request's two ends: the backend keeps the [`Answer`].
    pub fn channel() -> (Answer<T>, Pending<T>) {
        let (tx, rx) = oneshot::channel();
        (Answer(tx), Pending::Waiting(rx))
    }

    /// A request that failed before it was sent.
    pub fn failed(e: StoreError) -> Pending<T> {
        Pending::Failed(Some(e))
    }

    /// The answer if it has come, without waiting (for a shell that polls).
    pub fn try_take(&mut self) -> Option<Result<T, StoreError>> {
        match self {
            Pending::Waiting(rx) => match rx.try_recv() {
                Ok(r) => Some(r),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => Some(Err(stopped())),
            },
            Pending::Failed(e) => Some(Err(e.take().unwrap_or_else(stopped))),
        }
    }
}

pub(crate) fn stopped() -> StoreError {
    StoreError::Unavailable("storage thread stopped".into())
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Pending::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(stopped()))),
            Pending::Failed(e) => Poll::Ready(Err(e.take().unwrap_or_else(stopped))),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch: the stores' time base,
/// shared between nodes (unlike the engine's monotonic `Instant`).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
