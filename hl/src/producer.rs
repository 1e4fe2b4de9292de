//! The producer.
//!
//! Each producer pairs librdkafka's main queue, where delivery reports
//! arrive, with a [`DeliveryTable`] of sends awaiting their reports, and
//! drains the queue on its own event thread. Threads that send serve
//! delivery reports too, every [`SENDS_PER_ASSIST`] sends, so that
//! librdkafka's messages are mostly freed by the thread that allocated
//! them (see [`Assist`]). The pairing invariants are
//! stated and enforced in the `deliveries` module. In addition, user
//! configuration cannot turn reports off, because the builder sets
//! `delivery.report.only.error=false` and the event mask after the user's
//! properties.
//!
//! One event thread per producer, not one per process. A producer connected
//! to a 3-broker cluster runs 6 threads, 5 of them librdkafka's own
//! (measured with librdkafka 2.12.1), so a shared thread would save one
//! thread in six, while one client's slow wakers would delay every other
//! client's reports. The thread blocks in `rd_kafka_queue_poll` rather than
//! in poll(2) on a descriptor that `rd_kafka_queue_io_event_enable` writes
//! to: both gave the same throughput (2.39 and 2.41 million messages per
//! second, medians of 5 rounds of 1,000,000 messages on the mock cluster, 2
//! cores; `cargo run --release --example event_wakeup`), and the blocking
//! poll needs no descriptor.

use std::cell::{Cell, RefCell};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka_ll as ll;

use crate::config::Config;
use crate::deliveries::{DeliveryFuture, DeliveryTable, Outcome};
use crate::error::{check_code, take_rd_kafka_error, timeout_ms, Error, ErrorCode, KafkaError, Result};
use crate::event::{handle_common_event, Assist, EventThread};
use crate::message::Timestamp;
use crate::native::{c_buffer_to_string, NativeClient, NativeEvent, NativeQueue};
use crate::record::{vu, ProduceArgs, Record};
use crate::topic_cache::TopicCache;

/// How long dropping a producer waits for outstanding messages to be
/// delivered before it purges them.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing waits for the reports of purged messages.
const PURGE_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The maximum time a waiting sender sleeps before it tries again, in case
/// the room it waits for was freed without a report (a purge, say).
const QUEUE_SPACE_RECHECK: Duration = Duration::from_millis(50);

/// How many sends a thread makes between two rounds of serving delivery
/// reports itself (see [`Assist`]).
const SENDS_PER_ASSIST: u32 = 256;

/// How many events one such round handles at most, logs included. A
/// delivery-report event covers at least one message, so a round that may
/// take twice as many events as there were sends since the last round
/// keeps up with the reports while the event thread backs off.
const EVENTS_PER_ASSIST: usize = 2 * SENDS_PER_ASSIST as usize;

thread_local! {
    /// Sends made on this thread, to pace its rounds of reports.
    static SENDS: Cell<u32> = const { Cell::new(0) };

    /// Whether this thread is in a round already: a waker or payload
    /// dropped in one may send again, and must not start another.
    static ASSISTING: Cell<bool> = const { Cell::new(false) };

    /// The reports of one event, reused from round to round.
    static REPORTS: RefCell<Vec<(u64, Outcome)>> = const { RefCell::new(Vec::new()) };
}

/// A handler for client errors that librdkafka reports outside any send,
/// such as all brokers being down. It runs on the producer's event thread.
type ErrorHandler = Box<dyn FnMut(&KafkaError) + Send>;

/// A send that failed at once: the error, and the record handed back.
/// Its message names the topic, the partition if one was chosen, and the
/// value's size.
#[derive(Debug, thiserror::Error)]
#[error("{error} (topic {:?}{}, value of {} bytes)", record.topic(), partition_text(record.partition_number()), record.value_bytes().map_or(0, <[u8]>::len))]
pub struct SendError<'a> {
    /// The cause.
    pub error: Error,
    /// The record, unchanged, for a retry. Boxed, so that a `Result` of a
    /// send stays small.
    pub record: Box<Record<'a>>,
}

fn partition_text(partition: Option<i32>) -> String {
    partition.map(|partition| format!(", partition {partition}")).unwrap_or_default()
}

impl SendError<'_> {
    /// Returns the librdkafka error code, for errors that have one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.error.code()
    }
}

impl From<SendError<'_>> for Error {
    fn from(error: SendError<'_>) -> Self {
        error.error
    }
}

/// The set of messages [`Producer::purge`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeScope {
    /// Messages still in librdkafka's local queue.
    Queued,
    /// Messages sent to a broker but not yet acknowledged. Their outcome
    /// becomes unknown: they may or may not be in the log.
    InFlight,
    /// Both.
    All,
}

/// Options of a [`Producer`] beyond its librdkafka configuration.
///
/// ```
/// use std::time::Duration;
/// use rdkafka_hl::{Config, MockCluster, Producer};
///
/// let cluster = MockCluster::new(1)?;
/// let producer = Producer::builder(Config::new().set("bootstrap.servers", &cluster.bootstrap_servers())?)
///     .close_timeout(Duration::from_secs(2))
///     .on_error(|error| eprintln!("producer error: {error}"))
///     .build()?;
/// # drop(producer);
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct ProducerBuilder {
    config: Config,
    close_timeout: Duration,
    on_error: Option<ErrorHandler>,
}

impl ProducerBuilder {
    /// Sets how long closing or dropping the producer waits for outstanding
    /// deliveries before it purges the rest (default [`DEFAULT_CLOSE_TIMEOUT`]).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets the handler of client errors that librdkafka reports outside
    /// any send, such as a failed SASL authentication
    /// ([`ErrorCode::AUTHENTICATION`]), all brokers being down or a fatal
    /// idempotence error. It runs on the producer's event thread and must not block;
    /// a panic in it is caught and logged. Without a handler, these errors
    /// are logged through the `log` crate.
    pub fn on_error(mut self, handler: impl FnMut(&KafkaError) + Send + 'static) -> Self {
        self.on_error = Some(Box::new(handler));
        self
    }

    /// Creates the producer.
    ///
    /// # Errors
    ///
    /// [`Error::ClientCreation`] when librdkafka rejects the configuration
    /// as a whole (for example conflicting properties).
    pub fn build(self) -> Result<Producer> {
        let mut config = self.config;
        config.set_in_place("delivery.report.only.error", "false")?;
        config.set_in_place("log.queue", "true")?;
        let conf = config.into_native();

        let events = ll::RD_KAFKA_EVENT_DR | ll::RD_KAFKA_EVENT_ERROR | ll::RD_KAFKA_EVENT_LOG;
        // SAFETY: conf is a valid conf owned by us.
        unsafe { ll::rd_kafka_conf_set_events(conf.as_ptr(), events) };

        let client = NativeClient::new(ll::RD_KAFKA_PRODUCER, conf)
            .map(Arc::new)
            .map_err(|reason| Error::ClientCreation { kind: "producer", reason })?;
        let queue = Arc::new(NativeQueue::main(&client));
        // SAFETY: both handles are valid; log.queue is enabled above.
        unsafe { ll::rd_kafka_set_log_queue(client.as_ptr(), queue.as_ptr()) };

        let deliveries = DeliveryTable::try_new().ok_or_else(|| Error::ClientCreation {
            kind: "producer",
            reason: format!(
                "{} producers, or delivery futures of dropped producers, exist already: the most one process can hold",
                crate::table_registry::CAPACITY
            ),
        })?;
        let mut handler = EventHandler {
            deliveries: Arc::clone(&deliveries),
            on_error: self.on_error,
            reports: Vec::new(),
        };
        let assist = Arc::new(Assist::default());
        let events = EventThread::spawn_assisted(
            "rdkafka-producer",
            Arc::clone(&queue),
            Some(Arc::clone(&assist)),
            move |event| handler.handle(event),
        )
        .map_err(|error| Error::ClientCreation {
            kind: "producer",
            reason: format!("failed to start the event thread: {error}"),
        })?;
        deliveries.set_event_thread(events.key());

        Ok(Producer {
            events,
            queue,
            assist,
            deliveries,
            topics: TopicCache::new(),
            close_timeout: self.close_timeout,
            closed: false,
            client,
        })
    }
}

/// A Kafka producer.
///
/// [`send`](Self::send) queues a message and returns a [`DeliveryFuture`]
/// that the producer resolves when librdkafka reports the delivery, on its
/// event thread or, for throughput, inside a later `send` on a sending
/// thread. A producer can be shared between threads (`&self` methods).
///
/// The property `delivery.report.only.error` is always set to `false`,
/// because every future is resolved by its own delivery report.
///
/// ```
/// use rdkafka_hl::{Config, MockCluster, Producer, Record};
///
/// let cluster = MockCluster::new(1)?;
/// let config = Config::new().set("bootstrap.servers", &cluster.bootstrap_servers())?;
/// let producer = Producer::new(config)?;
///
/// let delivery = producer.send(Record::to("greetings").key("k").value("hello"))?;
/// let delivery = delivery.wait()?;
/// assert_eq!((&*delivery.topic, delivery.offset), ("greetings", 0));
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct Producer {
    events: EventThread,
    /// The queue of delivery reports, errors and logs, which the event
    /// thread serves, and sending threads with it.
    queue: Arc<NativeQueue>,
    assist: Arc<Assist>,
    deliveries: Arc<DeliveryTable>,
    // Dropped before the client, whose handle the topic handles need.
    topics: TopicCache,
    close_timeout: Duration,
    closed: bool,
    client: Arc<NativeClient>,
}

impl Producer {
    /// Creates a producer with default options; see [`Producer::builder`].
    ///
    /// # Errors
    ///
    /// [`Error::ClientCreation`] when librdkafka rejects the configuration
    /// as a whole (for example conflicting properties).
    pub fn new(config: Config) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Starts a producer with options beyond the configuration.
    pub fn builder(config: Config) -> ProducerBuilder {
        ProducerBuilder {
            config,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            on_error: None,
        }
    }

    /// Queues a record for sending and returns the future of its delivery.
    ///
    /// Borrowed keys, values and headers are copied, so the caller may
    /// drop them at once. An owned value is sent without a copy and kept
    /// until the report; a failed delivery hands it back.
    ///
    /// # Errors
    ///
    /// Failures known at once create no future and hand the record back:
    /// an invalid topic name, a full local queue ([`ErrorCode::QUEUE_FULL`],
    /// see [`send_wait`](Self::send_wait)), a message over
    /// `message.max.bytes` ([`ErrorCode::MESSAGE_SIZE_TOO_LARGE`]), a
    /// partition that the topic's metadata, once known, does not list, a
    /// fatal error, or a closed producer. Before the metadata arrives, a
    /// send to a missing partition returns a future that fails with
    /// [`ErrorCode::UNKNOWN_PARTITION`].
    pub fn send<'a>(&self, mut record: Record<'a>) -> Result<DeliveryFuture, SendError<'a>> {
        self.send_record(&mut record).map_err(|error| SendError { error, record: Box::new(record) })
    }

    /// Sends `record`, leaving it as it was when the send fails. The record
    /// is borrowed rather than moved, because moving it on every send cost
    /// measurable time in profiles.
    fn send_record(&self, record: &mut Record<'_>) -> Result<DeliveryFuture> {
        let (topic, topic_index) = self.topics.get(&self.client, record.topic())?;
        let headers = record.native_headers()?;
        let mut args = ProduceArgs::new();
        record.push_produce_args(headers.as_ref(), &mut args);
        args.push(vu(ll::RD_KAFKA_VTYPE_RKT, ll::rd_kafka_vu_s__bindgen_ty_1 { rkt: topic }));

        // Moving the owned payloads into the table keeps their heap bytes
        // where `args` points. Invariant 1 of the delivery table: the send
        // is registered before librdkafka can report it.
        let payloads = match record.take_owned() {
            (None, None) => None,
            owned => Some(Box::new(owned)),
        };
        let id = match self.deliveries.register(topic_index, payloads) {
            Ok(id) => id,
            Err(payloads) => {
                restore(record, payloads);
                return Err(Error::Closed { operation: "send" });
            }
        };
        args.push(vu(ll::RD_KAFKA_VTYPE_OPAQUE, ll::rd_kafka_vu_s__bindgen_ty_1 { ptr: id as *mut _ }));

        let args = args.as_slice();
        // SAFETY: the client and topic handle are valid, and every pointer
        // in args (key, value, headers) stays valid for the call. librdkafka
        // copies all but an owned value, which the table keeps until the
        // report.
        let error = unsafe { ll::rd_kafka_produceva(self.client.as_ptr(), args.as_ptr(), args.len()) };

        if !error.is_null() {
            // SAFETY: a non-NULL result is an error object we own.
            let error = unsafe { take_rd_kafka_error(error) };
            restore(record, self.deliveries.unregister(id));
            return Err(Error::Kafka { operation: "send", error });
        }

        if let Some(headers) = headers {
            headers.release();
        }
        let future = DeliveryFuture::new(&self.deliveries, id);

        let sends = SENDS.with(|sends| {
            let count = sends.get().wrapping_add(1);
            sends.set(count);
            count
        });
        if sends % SENDS_PER_ASSIST == 0 {
            self.serve_reports();
        }
        Ok(future)
    }

    /// Serves delivery reports on the calling thread: one round of
    /// [`Assist`]. Other events go to the event thread.
    ///
    /// No lock is held while polling, and the wakers and payload drops of
    /// the reports run on this thread after the table's lock is released,
    /// as they would on the event thread.
    fn serve_reports(&self) {
        if self.events.is_current() || ASSISTING.with(|assisting| assisting.replace(true)) {
            return;
        }
        self.assist.record_round();

        let mut deferred = false;
        for _ in 0..EVENTS_PER_ASSIST {
            let Some(event) = self.queue.poll(0) else { break };
            if event.event_type() != ll::RD_KAFKA_EVENT_DR {
                self.assist.defer(event);
                deferred = true;
                continue;
            }
            REPORTS.with(|reports| apply_reports(&self.deliveries, event, &mut reports.borrow_mut()));
        }
        // Woken only after this thread's last poll, which would clear the
        // wake-up if the queue was empty (librdkafka 2.12.1).
        if deferred {
            self.queue.wake();
        }
        ASSISTING.with(|assisting| assisting.set(false));
    }

    /// Sends like [`send`](Self::send), but while librdkafka's local queue
    /// is full, waits for deliveries to free room, up to `timeout`. No lock
    /// is held while waiting.
    ///
    /// On the producer's own event thread (in a waker), it does not wait,
    /// because blocking that thread would hold up the reports that free
    /// room.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`ErrorCode::QUEUE_FULL`] when the queue is
    /// still full after `timeout`.
    #[inline]
    pub fn send_wait<'a>(&self, mut record: Record<'a>, timeout: Duration) -> Result<DeliveryFuture, SendError<'a>> {
        // On the event thread no report can arrive while this call waits.
        if self.events.is_current() {
            return self.send(record);
        }
        let seen = self.deliveries.progress();
        match self.send_record(&mut record) {
            Ok(future) => Ok(future),
            Err(error) if error.code() == Some(ErrorCode::QUEUE_FULL) => self.wait_and_send(record, error, seen, timeout),
            Err(error) => Err(SendError { error, record: Box::new(record) }),
        }
    }

    /// Serves reports and waits for room, then sends again, until
    /// `timeout`: the rest of [`send_wait`](Self::send_wait) once the queue
    /// was full (`error`). `seen` is the table's progress before that send.
    #[inline(never)]
    fn wait_and_send<'a>(&self, mut record: Record<'a>, mut error: Error, mut seen: u64, timeout: Duration) -> Result<DeliveryFuture, SendError<'a>> {
        // The clock is read only once the queue is full: most sends never
        // wait.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Reports free room in the queue: serve the ones waiting.
            self.serve_reports();
            if self.deliveries.progress() == seen {
                let now = Instant::now();
                if deadline.is_some_and(|deadline| now >= deadline) {
                    return Err(SendError { error, record: Box::new(record) });
                }
                let recheck = now + QUEUE_SPACE_RECHECK;
                let wake_at = deadline.map_or(recheck, |deadline| deadline.min(recheck));
                self.deliveries.wait_for_progress(seen, wake_at);
            }

            seen = self.deliveries.progress();
            error = match self.send_record(&mut record) {
                Ok(future) => return Ok(future),
                Err(error) if error.code() == Some(ErrorCode::QUEUE_FULL) => error,
                Err(error) => return Err(SendError { error, record: Box::new(record) }),
            };
        }
    }

    /// Waits until every message sent so far has its delivery report and
    /// its future is resolved.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when messages are still outstanding after
    /// `timeout`; [`Error::OnEventThread`] when called from a waker or
    /// handler running on the producer's event thread.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.refuse_on_event_thread("flush")?;
        let started = Instant::now();
        // SAFETY: the client is valid.
        let code = unsafe { ll::rd_kafka_flush(self.client.as_ptr(), timeout_ms(timeout)) };
        let timed_out = Error::TimedOut { operation: "flush", timeout };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(timed_out);
        }

        // librdkafka counts a report as done once the event thread has
        // taken it from the queue; wait for the futures to be resolved too.
        let remaining = timeout.saturating_sub(started.elapsed());
        if self.deliveries.wait_until_reported(remaining) {
            Ok(())
        } else {
            Err(timed_out)
        }
    }

    /// Removes messages that are not yet delivered. Their futures resolve
    /// with [`ErrorCode::PURGE_QUEUE`] or [`ErrorCode::PURGE_INFLIGHT`],
    /// handing owned payloads back.
    pub fn purge(&self, scope: PurgeScope) -> Result<()> {
        let flags = match scope {
            PurgeScope::Queued => ll::RD_KAFKA_PURGE_F_QUEUE,
            PurgeScope::InFlight => ll::RD_KAFKA_PURGE_F_INFLIGHT,
            PurgeScope::All => ll::RD_KAFKA_PURGE_F_QUEUE | ll::RD_KAFKA_PURGE_F_INFLIGHT,
        };
        // SAFETY: the client is valid.
        let code = unsafe { ll::rd_kafka_purge(self.client.as_ptr(), flags) };
        check_code(code, "purge")
    }

    /// Sets how long dropping the producer waits for outstanding deliveries
    /// before it purges the rest, replacing the builder's close timeout.
    pub fn set_close_timeout(&mut self, timeout: Duration) {
        self.close_timeout = timeout;
    }

    /// Returns the number of sent messages whose futures are not yet resolved.
    pub fn in_flight_count(&self) -> usize {
        self.deliveries.unreported()
    }

    /// Returns the fatal error that stopped this producer, if one occurred.
    /// After a fatal error (with `enable.idempotence=true`, for example)
    /// sends fail and the producer must be replaced.
    pub fn fatal_error(&self) -> Option<KafkaError> {
        let mut errstr = [0 as c_char; 512];
        // SAFETY: the client is valid; errstr is writable for its length.
        let code = unsafe { ll::rd_kafka_fatal_error(self.client.as_ptr(), errstr.as_mut_ptr(), errstr.len()) };
        if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        let mut error = KafkaError::with_message(ErrorCode::from_raw(code), c_buffer_to_string(&errstr));
        error.fatal = true;
        Some(error)
    }

    /// Closes the producer: waits up to `timeout` for outstanding
    /// deliveries, then purges what is left, waits up to 5 s for the purge
    /// reports, and resolves every future still pending with
    /// [`Error::Closed`]. Those futures hand no payload back: librdkafka
    /// may still point at it, so the producer keeps it until librdkafka's
    /// client is destroyed.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when messages were still outstanding after
    /// `timeout` and had to be purged.
    pub fn close(mut self, timeout: Duration) -> Result<()> {
        self.close_timeout = timeout;
        self.shut_down()
    }

    /// Waits until every send so far has its future resolved, up to
    /// `timeout`; returns whether that happened.
    pub(crate) fn wait_for_reports(&self, timeout: Duration) -> bool {
        self.deliveries.wait_until_reported(timeout)
    }

    pub(crate) fn client_ptr(&self) -> *mut ll::rd_kafka_t {
        self.client.as_ptr()
    }

    /// Fails a blocking call made on the producer's own event thread,
    /// which would wait for reports that only that thread delivers.
    pub(crate) fn refuse_on_event_thread(&self, operation: &'static str) -> Result<()> {
        if self.events.is_current() {
            Err(Error::OnEventThread { operation })
        } else {
            Ok(())
        }
    }

    fn shut_down(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;

        // On the event thread (the last handle dropped by a waker), no
        // report can arrive while this waits, so it purges at once.
        let on_event_thread = self.events.is_current();
        let flushed = self.flush(self.close_timeout);
        if flushed.is_err() {
            let _ = self.purge(PurgeScope::All);
            if !on_event_thread {
                self.deliveries.wait_until_reported(PURGE_REPORT_TIMEOUT);
            }
        }
        self.events.stop();

        // Invariant 4 of the delivery table: whatever got no report is
        // resolved here, once. librdkafka may still point at the owned
        // payloads of those sends, so they live until the client is
        // destroyed instead of being handed back.
        let retained = self.deliveries.close().finish();
        if !retained.is_empty() {
            self.client.keep_alive(Box::new(retained));
        }
        flushed
    }
}

impl Drop for Producer {
    /// Closes the producer as [`close`](Producer::close) does, with the
    /// close timeout of the builder.
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("in_flight", &self.in_flight_count())
            .finish_non_exhaustive()
    }
}

/// Puts back the owned payloads that a failed send had moved out.
fn restore(record: &mut Record<'_>, payloads: Option<Box<crate::deliveries::Payloads>>) {
    if let Some(payloads) = payloads {
        let (key, value) = *payloads;
        record.restore_owned(key, value);
    }
}

/// The state of the producer's event thread.
struct EventHandler {
    deliveries: Arc<DeliveryTable>,
    on_error: Option<ErrorHandler>,
    /// The reports of one event, reused from event to event.
    reports: Vec<(u64, Outcome)>,
}

impl EventHandler {
    fn handle(&mut self, event: NativeEvent) {
        match event.event_type() {
            ll::RD_KAFKA_EVENT_DR => self.handle_delivery_reports(event),
            ll::RD_KAFKA_EVENT_ERROR if self.on_error.is_some() => {
                let error = error_of_event(&event);
                drop(event);
                if let Some(handler) = self.on_error.as_mut() {
                    if catch_unwind(AssertUnwindSafe(|| handler(&error))).is_err() {
                        log::error!("the producer's error handler panicked on error {error}");
                    }
                }
            }
            _ => {
                handle_common_event(event);
            }
        }
    }

    fn handle_delivery_reports(&mut self, event: NativeEvent) {
        apply_reports(&self.deliveries, event, &mut self.reports);
    }
}

/// Reads the reports of a delivery-report event and applies them to the
/// table. `reports` is a buffer to reuse.
fn apply_reports(deliveries: &DeliveryTable, event: NativeEvent, reports: &mut Vec<(u64, Outcome)>) {
    reports.clear();
    loop {
        // SAFETY: the event is a valid DR event; each message it returns
        // lives as long as the event.
        let message = unsafe { ll::rd_kafka_event_message_next(event.as_ptr()) };
        if message.is_null() {
            break;
        }
        // SAFETY: message is valid, see above.
        reports.push(unsafe { delivery_outcome(message) });
    }

    // Destroying the event releases librdkafka's messages, which may
    // point into owned payloads, and frees room in its queue. Only then
    // are the reports applied (invariant 3: each by its id), the
    // payloads of delivered sends dropped and the futures woken, with
    // no lock held (invariant 2).
    drop(event);
    let applied = deliveries.apply(reports);
    if applied.unknown > 0 {
        log::error!("{} delivery reports matched no waiting send", applied.unknown);
    }
    let retained = applied.finish();
    debug_assert!(retained.is_empty(), "reports retain no payloads");
}

fn error_of_event(event: &NativeEvent) -> KafkaError {
    let mut error = KafkaError::with_message(ErrorCode::from_raw(event.error_code()), event.error_string());
    // SAFETY: the event is a valid ERROR event.
    error.fatal = unsafe { ll::rd_kafka_event_error_is_fatal(event.as_ptr()) } != 0;
    error
}

/// Reads the id and outcome of one reported message.
///
/// # Safety
///
/// `message` must be a valid message of a delivery-report event.
unsafe fn delivery_outcome(message: *const ll::rd_kafka_message_t) -> (u64, Outcome) {
    // SAFETY: the caller guarantees a valid message.
    let fields = unsafe { &*message };
    let outcome = Outcome {
        code: fields.err,
        partition: fields.partition,
        offset: fields.offset,
        // SAFETY: the caller guarantees a valid message.
        timestamp: unsafe { Timestamp::of(message) },
    };
    (fields._private as u64, outcome)
}
