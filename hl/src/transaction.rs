//! Transactions of a producer.

use std::time::{Duration, Instant};

use rdkafka_ll as ll;

use crate::consumer::ConsumerGroupMetadata;
use crate::error::{check_error, timeout_ms, Error, Result};
use crate::partitions::{NativePartitionList, TopicPartitionOffset};
use crate::producer::Producer;

/// The recovery step after a transactional call failed, from
/// [`Error::recovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Call the same method again.
    Retry,
    /// Call [`Producer::abort_transaction`], rewind the input to the last
    /// committed offsets, and start a new transaction.
    AbortTransaction,
    /// The producer is unusable (fenced by a newer producer with the same
    /// `transactional.id`, say): drop it and create a new one.
    Fatal,
    /// The error is not a transactional one; handle it by its kind.
    None,
}

impl Error {
    /// Returns how to recover from a failed transactional call, as
    /// librdkafka classifies the error.
    pub fn recovery(&self) -> Recovery {
        let Error::Kafka { error, .. } = self else {
            return Recovery::None;
        };
        if error.fatal {
            Recovery::Fatal
        } else if error.transaction_requires_abort {
            Recovery::AbortTransaction
        } else if error.retriable {
            Recovery::Retry
        } else {
            Recovery::None
        }
    }
}

/// Transactions, enabled by setting `transactional.id` on the producer.
///
/// A transaction makes its messages, and the consumer offsets sent with
/// [`send_offsets_to_transaction`](Producer::send_offsets_to_transaction),
/// visible to `read_committed` consumers all at once, or not at all.
/// Messages that an abort purges resolve their delivery futures with
/// [`ErrorCode::PURGE_QUEUE`](crate::ErrorCode::PURGE_QUEUE).
///
/// Each call blocks up to its timeout and may fail in three ways, which
/// [`Error::recovery`] distinguishes:
///
/// ```
/// use std::time::{Duration, Instant};
/// use rdkafka_hl::{Config, MockCluster, Producer, Record, Recovery};
///
/// let cluster = MockCluster::new(3)?;
/// let producer = Producer::new(
///     Config::new()
///         .set("bootstrap.servers", &cluster.bootstrap_servers())?
///         .set("transactional.id", "example-copier")?,
/// )?;
/// let timeout = Duration::from_secs(10);
/// producer.init_transactions(timeout)?;
///
/// producer.begin_transaction()?;
/// producer.send(Record::to("output").value("result"))?;
/// loop {
///     match producer.commit_transaction(timeout) {
///         Ok(()) => break,
///         Err(error) => match error.recovery() {
///             Recovery::Retry => continue,
///             Recovery::AbortTransaction => {
///                 producer.abort_transaction(timeout)?;
///                 // Rewind the input here, then begin again.
///                 break;
///             }
///             Recovery::Fatal | Recovery::None => return Err(error),
///         },
///     }
/// }
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
impl Producer {
    /// Registers the `transactional.id` with the cluster, fencing older
    /// producers with the same id, and aborts what they left open. Call
    /// once, before the first transaction.
    pub fn init_transactions(&self, timeout: Duration) -> Result<()> {
        self.refuse_on_event_thread("init_transactions")?;
        // SAFETY: the client is valid.
        let error = unsafe { ll::rd_kafka_init_transactions(self.client_ptr(), timeout_ms(timeout)) };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "init_transactions") }
    }

    /// Starts a transaction.
    pub fn begin_transaction(&self) -> Result<()> {
        // SAFETY: the client is valid.
        let error = unsafe { ll::rd_kafka_begin_transaction(self.client_ptr()) };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "begin_transaction") }
    }

    /// Adds consumer offsets (the next offset to read in each partition)
    /// to the transaction, committed for the consumer's group only if the
    /// transaction commits. `group` comes from
    /// [`Consumer::group_metadata`](crate::Consumer::group_metadata).
    pub fn send_offsets_to_transaction(
        &self,
        offsets: &[TopicPartitionOffset],
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<()> {
        self.refuse_on_event_thread("send_offsets_to_transaction")?;
        let list = NativePartitionList::from_offsets(offsets)?;
        // SAFETY: the client, list and metadata are valid for the call.
        let error = unsafe {
            ll::rd_kafka_send_offsets_to_transaction(self.client_ptr(), list.as_ptr(), group.as_ptr(), timeout_ms(timeout))
        };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "send_offsets_to_transaction") }
    }

    /// Commits the transaction: flushes its messages, then makes them and
    /// its offsets visible. When it returns `Ok`, the delivery future of
    /// every message of the transaction is resolved.
    pub fn commit_transaction(&self, timeout: Duration) -> Result<()> {
        self.refuse_on_event_thread("commit_transaction")?;
        let started = Instant::now();
        // SAFETY: the client is valid.
        let error = unsafe { ll::rd_kafka_commit_transaction(self.client_ptr(), timeout_ms(timeout)) };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "commit_transaction") }?;

        // librdkafka counts a report as done when the event thread takes it
        // from the queue, a moment before the future is resolved.
        if self.wait_for_reports(timeout.saturating_sub(started.elapsed())) {
            Ok(())
        } else {
            Err(Error::TimedOut { operation: "commit_transaction", timeout })
        }
    }

    /// Aborts the transaction: purges its unsent messages and discards what
    /// was sent.
    pub fn abort_transaction(&self, timeout: Duration) -> Result<()> {
        self.refuse_on_event_thread("abort_transaction")?;
        // SAFETY: the client is valid.
        let error = unsafe { ll::rd_kafka_abort_transaction(self.client_ptr(), timeout_ms(timeout)) };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "abort_transaction") }
    }
}
