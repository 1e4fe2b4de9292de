//! The consumer.
//!
//! A consumer pairs two librdkafka queues with Rust state. Messages,
//! rebalances and consumer errors arrive on the consumer queue, which the
//! caller drains through [`Consumer::poll`], [`Consumer::messages`] or
//! [`Consumer::recv`]. Commit results and log lines arrive on an event
//! queue of the consumer's own, drained by its event thread, which resolves
//! each [`CommitFuture`](crate::CommitFuture) by the id that travelled as the commit's opaque
//! (the same pairing as the producer's deliveries).

mod assignment;
mod client_errors;
mod offsets;
mod rebalance;
mod stream;

use std::ffi::CStr;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka_ll as ll;

use crate::config::Config;
use crate::error::{take_rd_kafka_error, timeout_ms, Error, ErrorCode, KafkaError, Result};
use crate::event::{handle_common_event, EventThread};
use crate::future::Slot;
use crate::message::Message;
use crate::native::{NativeClient, NativeEvent, NativeQueue};
use crate::partitions::{all_or_errors, read_partition_list, split_errors, TopicPartitionOffset};
use crate::pending::Pending;

pub use assignment::{ConsumerGroupMetadata, RebalanceProtocol};
pub use rebalance::RebalanceListener;
pub use stream::{Messages, Recv};

use client_errors::{ErrorHandler, ErrorSlot};
use rebalance::{PollGuard, RebalanceSlot};
use stream::WakerHub;

/// How long dropping a consumer waits for it to leave its group and for
/// outstanding commits.
pub const DEFAULT_CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

type CommitSlot = Slot<Vec<TopicPartitionOffset>>;

/// Options of a [`Consumer`] beyond its librdkafka configuration.
pub struct ConsumerBuilder {
    config: Config,
    close_timeout: Duration,
    listener: Option<Box<dyn RebalanceListener>>,
    on_error: Option<ErrorHandler>,
}

impl ConsumerBuilder {
    /// Sets how long closing or dropping the consumer waits to leave the
    /// group and for outstanding commits (default
    /// [`DEFAULT_CONSUMER_CLOSE_TIMEOUT`]).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets a listener that runs when partitions are assigned or revoked,
    /// on the thread that polls. See [`RebalanceListener`].
    pub fn rebalance_listener(mut self, listener: impl RebalanceListener + 'static) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Sets the handler of client errors that librdkafka reports outside
    /// any message, such as a failed SASL authentication
    /// ([`ErrorCode::AUTHENTICATION`]), a broker certificate that does not
    /// verify ([`ErrorCode::SSL`]) or all brokers being down.
    ///
    /// librdkafka queues these errors with the messages, so the handler
    /// runs inside [`poll`](Consumer::poll) or [`recv`](Consumer::recv), on
    /// the polling thread, and only while the consumer is polled. It must
    /// not block; a panic in it is caught and logged. Without a handler,
    /// librdkafka logs these errors, and the `log` crate receives the lines.
    pub fn on_error(mut self, handler: impl FnMut(&KafkaError) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(handler));
        self
    }

    /// Creates the consumer. The configuration must set `group.id`.
    ///
    /// # Errors
    ///
    /// [`Error::ClientCreation`] when `group.id` is missing or librdkafka
    /// rejects the configuration as a whole.
    pub fn build(self) -> Result<Consumer> {
        let mut config = self.config;
        config.set_in_place("log.queue", "true")?;
        let conf = config.into_native();
        rebalance::install(&conf);
        if self.on_error.is_some() {
            client_errors::install(&conf);
        }

        let client = NativeClient::new(ll::RD_KAFKA_CONSUMER, conf)
            .map(Arc::new)
            .map_err(|reason| Error::ClientCreation { kind: "consumer", reason })?;
        // SAFETY: the client is valid. Redirecting the main queue makes the
        // consumer queue carry errors and rebalances too.
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

        // librdkafka's high-level consumer, and so its poll, needs a group.
        let messages = NativeQueue::consumer(&client).ok_or_else(|| Error::ClientCreation {
            kind: "consumer",
            reason: "group.id is not set; set it, even when partitions are assigned by hand".to_owned(),
        })?;
        let wakers = WakerHub::start(&client, &messages).map_err(|error| Error::ClientCreation {
            kind: "consumer",
            reason: format!("failed to start the waker thread: {error}"),
        })?;

        Ok(Consumer {
            events,
            commits,
            close_timeout: self.close_timeout,
            closed: false,
            listener: RebalanceSlot::new(self.listener),
            errors: ErrorSlot::new(self.on_error),
            wakers,
            messages,
            queue,
            client,
        })
    }
}

/// A Kafka consumer.
///
/// [`poll`](Self::poll) reads messages on the caller's thread;
/// [`recv`](Self::recv) awaits one on any executor. Commits return a
/// [`CommitFuture`](crate::CommitFuture) that a background event thread resolves from
/// librdkafka's commit result, matched by the commit's id.
///
/// Without a [`RebalanceListener`], partitions are assigned and revoked as
/// librdkafka would do it, for both the eager and the `cooperative-sticky`
/// protocols.
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
    closed: bool,
    listener: RebalanceSlot,
    errors: ErrorSlot,
    wakers: WakerHub,
    messages: NativeQueue,
    queue: Arc<NativeQueue>,
    client: Arc<NativeClient>,
}

impl Consumer {
    /// Creates a consumer with default options; see [`Consumer::builder`].
    /// The configuration must set `group.id`.
    ///
    /// # Errors
    ///
    /// [`Error::ClientCreation`] when `group.id` is missing or librdkafka
    /// rejects the configuration as a whole.
    pub fn new(config: Config) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Starts a consumer with options beyond the configuration.
    pub fn builder(config: Config) -> ConsumerBuilder {
        ConsumerBuilder {
            config,
            close_timeout: DEFAULT_CONSUMER_CLOSE_TIMEOUT,
            listener: None,
            on_error: None,
        }
    }

    /// Waits up to `timeout` for the next message. Returns `None` when none
    /// arrived, and an error for a consumer error or a per-partition event
    /// such as [`ErrorCode::PARTITION_EOF`] (with `enable.partition.eof`).
    ///
    /// Rebalances are served inside this call, so a [`RebalanceListener`]
    /// runs here.
    pub fn poll(&self, timeout: Duration) -> Option<Result<Message<'_>>> {
        let raw = {
            let _polling = PollGuard::enter(self);
            // SAFETY: the client is valid; the message returned is ours.
            unsafe { ll::rd_kafka_consumer_poll(self.client.as_ptr(), timeout_ms(timeout)) }
        };
        let raw = NonNull::new(raw)?;
        Some(self.take_message(raw))
    }

    /// Turns a polled message into a [`Message`] or its error.
    fn take_message(&self, raw: NonNull<ll::rd_kafka_message_t>) -> Result<Message<'_>> {
        // SAFETY: raw is a message we own; it stays valid until destroyed.
        let fields = unsafe { raw.as_ref() };
        if fields.err == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            // SAFETY: the message is ours, has no error, and borrows self.
            return Ok(unsafe { Message::from_raw(raw) });
        }

        // SAFETY: the message is valid; the strings live until destroy.
        let (text, topic) = unsafe {
            let text = CStr::from_ptr(ll::rd_kafka_message_errstr(raw.as_ptr()));
            let topic = if fields.rkt.is_null() {
                String::new()
            } else {
                CStr::from_ptr(ll::rd_kafka_topic_name(fields.rkt)).to_string_lossy().into_owned()
            };
            (text.to_string_lossy().into_owned(), topic)
        };
        let error = Error::Consume {
            topic,
            partition: fields.partition,
            offset: fields.offset,
            error: KafkaError::with_message(ErrorCode::from_raw(fields.err), text),
        };
        // SAFETY: we own the message and do not use it again.
        unsafe { ll::rd_kafka_message_destroy(raw.as_ptr()) };
        Err(error)
    }

    /// Returns the member id the group coordinator gave this consumer, or
    /// `None` before it joined a group.
    pub fn member_id(&self) -> Option<String> {
        // SAFETY: the client is valid; the string returned is ours to free.
        let raw = unsafe { ll::rd_kafka_memberid(self.client.as_ptr()) };
        if raw.is_null() {
            return None;
        }
        // SAFETY: a non-NULL result is a NUL-terminated string.
        let id = unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned();
        // SAFETY: librdkafka allocated the string for us.
        unsafe { ll::rd_kafka_mem_free(self.client.as_ptr(), raw.cast()) };
        (!id.is_empty()).then_some(id)
    }

    /// Sets how long dropping the consumer waits to leave the group and for
    /// outstanding commits (default [`DEFAULT_CONSUMER_CLOSE_TIMEOUT`]).
    pub fn set_close_timeout(&mut self, timeout: Duration) {
        self.close_timeout = timeout;
    }

    /// Closes the consumer: leaves the group and waits for outstanding
    /// commits, together at most `timeout`, then resolves every commit
    /// future still pending with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when leaving the group did not finish in time;
    /// librdkafka's client is then destroyed on a thread of its own.
    pub fn close(mut self, timeout: Duration) -> Result<()> {
        self.close_timeout = timeout;
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;

        // A timeout too large for an Instant means no deadline at all.
        let deadline = Instant::now().checked_add(self.close_timeout);
        let closed = self.leave_group(deadline);
        // On the event thread (the last handle dropped by a waker), no
        // commit result can arrive while this waits, so it does not wait.
        if !self.events.is_current() {
            let remaining = deadline.map_or(Duration::MAX, |deadline| deadline.saturating_duration_since(Instant::now()));
            self.commits.wait_until_empty(remaining);
        }
        self.events.stop();
        self.wakers.stop(&self.messages);

        // Invariant 4 of the pending table: commits with no result are
        // resolved here, once.
        for slot in self.commits.close() {
            slot.resolve(Err(Error::Closed { operation: "commit" }));
        }
        if closed {
            return Ok(());
        }
        log::warn!(
            "the consumer did not close within {:?}; destroying it without waiting",
            self.close_timeout
        );
        self.client.destroy_without_waiting();
        Err(Error::TimedOut { operation: "consumer close", timeout: self.close_timeout })
    }

    /// Leaves the group, serving the rebalance that closing causes.
    /// Returns whether librdkafka finished before `deadline`.
    fn leave_group(&self, deadline: Option<Instant>) -> bool {
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
            let remaining = deadline.map_or(Duration::MAX, |deadline| deadline.saturating_duration_since(Instant::now()));
            if remaining.is_zero() {
                return false;
            }
            if let Some(event) = close_queue.poll(timeout_ms(remaining.min(Duration::from_millis(100)))) {
                if let Some(event) = handle_common_event(event) {
                    rebalance::serve_close_event(self, &event, deadline);
                }
            }
        }
    }

    pub(crate) fn client_ptr(&self) -> *mut ll::rd_kafka_t {
        self.client.as_ptr()
    }
}

impl Drop for Consumer {
    /// Closes the consumer as [`close`](Consumer::close) does, with the
    /// close timeout. When the close does not finish in time, librdkafka's
    /// client is destroyed on a thread of its own, so `drop` returns
    /// without waiting for it.
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("pending_commits", &self.commits.len())
            .finish_non_exhaustive()
    }
}

fn handle_commit_event(commits: &Pending<CommitSlot>, event: NativeEvent) {
    if event.event_type() != ll::RD_KAFKA_EVENT_OFFSET_COMMIT {
        return;
    }

    // Invariant 3 of the pending table: the commit is found by the id in
    // the event's opaque.
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
    } else {
        // With no offsets given, librdkafka lists every assigned partition,
        // those with nothing to commit at OFFSET_INVALID; they were not
        // committed, so they are not reported as committed.
        let (committed, failed) = split_errors(entries);
        let committed = committed.into_iter().filter(|entry| entry.offset >= 0).collect();
        all_or_errors("commit", (committed, failed))
    };

    // Woken after the event is gone, so no librdkafka object is held.
    drop(event);
    slot.resolve(result);
}
