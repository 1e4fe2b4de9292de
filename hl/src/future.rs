//! Handles on results that the event thread delivers later.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;

use crate::completion::{Completion, CompletionFuture};
use crate::error::{Error, Result};
use crate::partitions::TopicPartitionOffset;
use crate::sync::Arc;

/// The pending result of a commit: the committed offsets.
pub type CommitFuture = KafkaFuture<Vec<TopicPartitionOffset>>;

pub(crate) type Slot<T, E = Error> = Arc<Completion<Result<T, E>>>;

/// The pending result of an operation that librdkafka completes in the
/// background, such as a commit or an admin request.
///
/// The client's event thread resolves it exactly once: with the result,
/// with an error when the operation fails, or with [`Error::Closed`] when
/// the client is dropped first. It never stays pending forever. Wait on it
/// with [`wait`](Self::wait) or [`wait_timeout`](Self::wait_timeout), check
/// it with [`is_ready`](Self::is_ready), or `.await` it on any executor.
///
/// Dropping it does not cancel the operation.
#[must_use = "dropping the future ignores whether the operation succeeded"]
pub struct KafkaFuture<T, E = Error> {
    slot: Slot<T, E>,
    operation: &'static str,
    /// The thread that resolves this future, where a blocking wait would
    /// never end.
    event_thread: ThreadId,
}

impl<T, E: From<Error>> KafkaFuture<T, E> {
    pub(crate) fn new(slot: Slot<T, E>, operation: &'static str, event_thread: ThreadId) -> Self {
        Self { slot, operation, event_thread }
    }

    /// Blocks until the result arrives.
    ///
    /// On the client's own event thread (in a waker), where the result can
    /// never arrive while this waits, it returns [`Error::OnEventThread`]
    /// unless the result is already there.
    pub fn wait(self) -> Result<T, E> {
        let operation = self.operation;
        if std::thread::current().id() == self.event_thread && !self.slot.is_ready() {
            return Err(Error::OnEventThread { operation }.into());
        }
        self.slot
            .wait(None)
            .unwrap_or_else(|| Err(Error::Closed { operation }.into()))
    }

    /// Blocks until the result arrives, or returns [`Error::TimedOut`] after
    /// `timeout`. The operation may still complete after a timeout.
    pub fn wait_timeout(self, timeout: Duration) -> Result<T, E> {
        let operation = self.operation;
        self.slot
            .wait(Some(timeout))
            .unwrap_or_else(|| Err(Error::TimedOut { operation, timeout }.into()))
    }

}

impl<T, E> KafkaFuture<T, E> {
    /// Returns whether the result has arrived, without blocking.
    pub fn is_ready(&self) -> bool {
        self.slot.is_ready()
    }
}

impl<T, E> Future for KafkaFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut CompletionFuture(&self.slot)).poll(context)
    }
}

impl<T, E> std::fmt::Debug for KafkaFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFuture")
            .field("operation", &self.operation)
            .field("ready", &self.is_ready())
            .finish()
    }
}
