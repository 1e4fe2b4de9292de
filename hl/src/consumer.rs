//! The consumer.

use std::ffi::CStr;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka_ll as ll;

use crate::completion::Completion;
use crate::config::Config;
use crate::error::{take_rd_kafka_error, timeout_ms, Error, ErrorCode, KafkaError, Result};
use crate::event::{handle_common_event, EventThread};
use crate::future::{CommitFuture, Slot};
use crate::message::Message;
use crate::native::{NativeClient, NativeEvent, NativeQueue};
use crate::partitions::{read_partition_list, NativePartitionList, TopicPartitionOffset};
use crate::pending::Pending;

/// How long dropping a consumer waits for it to leave its group and for
/// outstanding commits.
pub const DEFAULT_CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

type CommitSlot = Slot<Vec<TopicPartitionOffset>>;

/// A Kafka consumer in a consumer group.
///
/// [`poll`](Self::poll) reads messages on the caller's thread. Commits
/// return a [`CommitFuture`] that a background event thread resolves from
/// librdkafka's commit result, matched by the commit's id.
///
/// ```
/// use std::time::Duration;
/// use rdkafka_hl::{Config, Consumer, MockCluster, Producer, Record};
///
/// let cluster = MockCluster::new(1)?;
/// let servers = cluster.bootstrap_servers();
/// let producer = Producer::new(Config::new().set("bootstrap.servers", &servers)?)?;
/// producer.send(Record::to("greetings").value("hello"))?.wait()?;
///
/// let consumer = Consumer::new(
///     Config::new()
///         .set("bootstrap.servers", &servers)?
///         .set("group.id", "readers")?
///         .set("auto.offset.reset", "earliest")?,
/// )?;
/// consumer.subscribe(&["greetings"])?;
/// let message = loop {
///     if let Some(message) = consumer.poll(Duration::from_secs(1)) {
///         break message?;
///     }
/// };
/// assert_eq!(message.value(), Some(&b"hello"[..]));
/// let committed = consumer.commit_message(&message)?.wait()?;
/// assert_eq!(committed[0].offset, 1);
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct Consumer {
    events: EventThread,
    commits: Arc<Pending<CommitSlot>>,
    close_timeout: Duration,
    queue: Arc<NativeQueue>,
    client: Arc<NativeClient>,
}

impl Consumer {
    /// Creates a consumer. Set `group.id` to subscribe or commit.
    ///
    /// # Errors
    ///
    /// [`Error::ClientCreation`] when librdkafka rejects the configuration
    /// as a whole.
    pub fn new(mut config: Config) -> Result<Self> {
        config.set_in_place("log.queue", "true")?;

        let client = NativeClient::new(ll::RD_KAFKA_CONSUMER, config.into_native())
            .map(Arc::new)
            .map_err(|reason| Error::ClientCreation { kind: "consumer", reason })?;
        // SAFETY: the client is valid. Redirecting the main queue makes
        // consumer_poll serve errors and rebalances too.
        unsafe { ll::rd_kafka_poll_set_consumer(client.as_ptr()) };

        let queue = Arc::new(NativeQueue::new(&client));
        // SAFETY: both handles are valid; log.queue is enabled above.
        unsafe { ll::rd_kafka_set_log_queue(client.as_ptr(), queue.as_ptr()) };

        let commits = Arc::new(Pending::new());
        let handler_commits = Arc::clone(&commits);
        let events = EventThread::spawn("rdkafka-consumer", Arc::clone(&queue), move |event| {
            if let Some(event) = handle_common_event(event) {
                handle_commit_event(&handler_commits, event);
            }
        })
        .map_err(|error| Error::ClientCreation {
            kind: "consumer",
            reason: format!("failed to start the event thread: {error}"),
        })?;

        Ok(Self {
            events,
            commits,
            close_timeout: DEFAULT_CONSUMER_CLOSE_TIMEOUT,
            queue,
            client,
        })
    }

    /// Subscribes to topics, replacing the current subscription. Names
    /// starting with `^` are regular expressions.
    pub fn subscribe(&self, topics: &[&str]) -> Result<()> {
        let list = NativePartitionList::from_topics(topics)?;
        // SAFETY: the client and the list are valid; librdkafka copies it.
        let code = unsafe { ll::rd_kafka_subscribe(self.client.as_ptr(), list.as_ptr()) };
        check(code, "subscribe")
    }

    /// Waits up to `timeout` for the next message. Returns `None` when none
    /// arrived, and an error for a consumer error or a per-partition event
    /// such as [`ErrorCode::PARTITION_EOF`].
    pub fn poll(&self, timeout: Duration) -> Option<Result<Message<'_>>> {
        // SAFETY: the client is valid; the message returned is ours.
        let raw = unsafe { ll::rd_kafka_consumer_poll(self.client.as_ptr(), timeout_ms(timeout)) };
        let raw = NonNull::new(raw)?;

        // SAFETY: raw is a message we own; it stays valid until destroyed.
        let code = unsafe { raw.as_ref().err };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: as above; the error string lives until destroy.
            let message = unsafe { ll::rd_kafka_message_errstr(raw.as_ptr()) };
            // SAFETY: the string is NUL-terminated and read before destroy.
            let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
            // SAFETY: we own the message and do not use it again.
            unsafe { ll::rd_kafka_message_destroy(raw.as_ptr()) };

            let error = KafkaError::with_message(ErrorCode::from_raw(code), text);
            return Some(Err(Error::Kafka { operation: "poll", error }));
        }

        // SAFETY: the message is ours, has no error, and borrows self.
        Some(Ok(unsafe { Message::from_raw(raw) }))
    }

    /// Commits the given offsets (the offset of the next message to read
    /// in each partition) in the background.
    pub fn commit_offsets(&self, offsets: &[TopicPartitionOffset]) -> Result<CommitFuture> {
        let list = NativePartitionList::from_offsets(offsets)?;
        self.commit_list(list.as_ptr())
    }

    /// Commits the position after `message` in its partition.
    pub fn commit_message(&self, message: &Message<'_>) -> Result<CommitFuture> {
        let next = TopicPartitionOffset::new(message.topic(), message.partition(), message.offset() + 1);
        self.commit_offsets(std::slice::from_ref(&next))
    }

    /// Commits the current position of every assigned partition. Resolves
    /// with [`ErrorCode::NO_OFFSET`] when nothing was consumed since the
    /// last commit.
    pub fn commit_consumed(&self) -> Result<CommitFuture> {
        self.commit_list(ptr::null())
    }

    fn commit_list(&self, list: *const ll::rd_kafka_topic_partition_list_t) -> Result<CommitFuture> {
        // Invariant 1 of the pending table: register first.
        let slot: CommitSlot = Completion::new();
        let id = self
            .commits
            .register(Arc::clone(&slot))
            .map_err(|_| Error::Closed { operation: "commit" })?;

        // SAFETY: the client, queue and list (or NULL) are valid; the result
        // is posted to our queue as an OFFSET_COMMIT event carrying `id`.
        let code = unsafe {
            ll::rd_kafka_commit_queue(self.client.as_ptr(), list, self.queue.as_ptr(), None, id as *mut _)
        };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            self.commits.take(id);
            return Err(Error::kafka("commit", code));
        }
        Ok(CommitFuture::new(slot, "commit"))
    }

    /// Sets how long dropping the consumer waits to leave the group and for
    /// outstanding commits (default [`DEFAULT_CONSUMER_CLOSE_TIMEOUT`]).
    pub fn set_close_timeout(&mut self, timeout: Duration) {
        self.close_timeout = timeout;
    }

    fn shut_down(&mut self) {
        let deadline = Instant::now() + self.close_timeout;
        let closed = self.leave_group(deadline);
        if !closed {
            log::warn!("the consumer did not close within {:?}; destroying it without waiting", self.close_timeout);
        }

        self.commits
            .wait_until_empty(deadline.saturating_duration_since(Instant::now()));
        self.events.stop();

        // Invariant 4: commits with no result are resolved here, once.
        for slot in self.commits.close() {
            slot.resolve(Err(Error::Closed { operation: "commit" }));
        }
        if !closed {
            self.client.destroy_without_waiting();
        }
    }

    /// Leaves the group, serving the rebalance that closing causes.
    /// Returns whether librdkafka finished before `deadline`.
    fn leave_group(&self, deadline: Instant) -> bool {
        let close_queue = NativeQueue::new(&self.client);
        // SAFETY: the client and queue are valid.
        let error = unsafe { ll::rd_kafka_consumer_close_queue(self.client.as_ptr(), close_queue.as_ptr()) };
        if !error.is_null() {
            // SAFETY: we own the returned error.
            let error = unsafe { take_rd_kafka_error(error) };
            // A consumer that never joined a group has nothing to leave.
            return error.code == ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR__UNKNOWN_GROUP)
                || error.code == ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR__DESTROY);
        }

        loop {
            // SAFETY: the client is valid.
            if unsafe { ll::rd_kafka_consumer_closed(self.client.as_ptr()) } != 0 {
                return true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return false;
            }
            if let Some(event) = close_queue.poll(timeout_ms(remaining.min(Duration::from_millis(100)))) {
                if let Some(event) = handle_common_event(event) {
                    serve_rebalance(&self.client, &event);
                }
            }
        }
    }
}

impl Drop for Consumer {
    /// Leaves the group and waits for outstanding commits, together at most
    /// the close timeout, then resolves every commit future still pending
    /// with [`Error::Closed`]. When the close did not finish in time,
    /// librdkafka's client is destroyed on a thread of its own, so `drop`
    /// returns without waiting for it.
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("pending_commits", &self.commits.len())
            .finish_non_exhaustive()
    }
}

fn check(code: ll::rd_kafka_resp_err_t, operation: &'static str) -> Result<()> {
    if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(Error::kafka(operation, code))
    }
}

fn handle_commit_event(commits: &Pending<CommitSlot>, event: NativeEvent) {
    if event.event_type() != ll::RD_KAFKA_EVENT_OFFSET_COMMIT {
        return;
    }

    // Invariant 3: the commit is found by the id in the event's opaque.
    let id = event.opaque() as u64;
    let Some(slot) = commits.take(id) else {
        log::error!("commit result for unknown commit id {id}");
        return;
    };

    // SAFETY: the event is a valid OFFSET_COMMIT event; the list it
    // returns lives as long as the event.
    let entries = unsafe { read_partition_list(ll::rd_kafka_event_topic_partition_list(event.as_ptr())) };
    let code = event.error_code();

    let result = if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        let error = KafkaError::with_message(ErrorCode::from_raw(code), event.error_string());
        Err(Error::Kafka { operation: "commit", error })
    } else if let Some((_, Some(error))) = entries.iter().find(|(_, error)| error.is_some()) {
        Err(Error::Kafka { operation: "commit", error: error.clone() })
    } else {
        Ok(entries.into_iter().map(|(entry, _)| entry).collect())
    };
    slot.resolve(result);
}

/// Applies a rebalance event the way librdkafka would without a rebalance
/// callback: assign on assignment, unassign on revocation, for both the
/// eager and the cooperative protocol.
fn serve_rebalance(client: &NativeClient, event: &NativeEvent) {
    if event.event_type() != ll::RD_KAFKA_EVENT_REBALANCE {
        return;
    }
    // SAFETY: the event is a valid REBALANCE event; its list lives as long
    // as the event.
    let partitions = unsafe { ll::rd_kafka_event_topic_partition_list(event.as_ptr()) };
    // SAFETY: the client is valid; the protocol name is a static string.
    let protocol = unsafe { CStr::from_ptr(ll::rd_kafka_rebalance_protocol(client.as_ptr())) };
    let cooperative = protocol.to_bytes() == b"COOPERATIVE";
    let assigning = event.error_code() == ll::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;

    // SAFETY: the client and the list are valid for each call.
    let error = unsafe {
        match (cooperative, assigning) {
            (true, true) => ll::rd_kafka_incremental_assign(client.as_ptr(), partitions),
            (true, false) => ll::rd_kafka_incremental_unassign(client.as_ptr(), partitions),
            (false, true) => return log_code(ll::rd_kafka_assign(client.as_ptr(), partitions)),
            (false, false) => return log_code(ll::rd_kafka_assign(client.as_ptr(), ptr::null())),
        }
    };
    if !error.is_null() {
        // SAFETY: we own the returned error.
        let error = unsafe { take_rd_kafka_error(error) };
        log::error!("rebalance while closing failed: {error}");
    }
}

fn log_code(code: ll::rd_kafka_resp_err_t) {
    if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        log::error!("rebalance while closing failed: {}", ErrorCode::from_raw(code));
    }
}
