//! The producer.

use std::ffi::CStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka_ll as ll;

use crate::completion::Completion;
use crate::config::Config;
use crate::future::{Delivery, DeliveryFuture, Slot};
use crate::error::{take_rd_kafka_error, timeout_ms, Error, ErrorCode, KafkaError, Result};
use crate::event::{handle_common_event, EventThread};
use crate::message::Timestamp;
use crate::native::{NativeClient, NativeEvent, NativeQueue};
use crate::pending::Pending;
use crate::record::{vu, Record};

/// How long dropping a producer waits for outstanding messages to be
/// delivered before it purges them.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing waits for the reports of purged messages.
const PURGE_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Kafka producer.
///
/// [`send`](Self::send) queues a message and returns a [`DeliveryFuture`]
/// that a background event thread resolves when librdkafka reports the
/// delivery. A producer can be shared between threads (`&self` methods).
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
/// assert_eq!((delivery.topic.as_str(), delivery.offset), ("greetings", 0));
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct Producer {
    events: EventThread,
    pending: Arc<Pending<Slot<Delivery>>>,
    close_timeout: Duration,
    client: Arc<NativeClient>,
}

impl Producer {
    /// Creates a producer.
    ///
    /// # Errors
    ///
    /// [`Error::ClientCreation`] when librdkafka rejects the configuration
    /// as a whole (for example conflicting properties).
    pub fn new(mut config: Config) -> Result<Self> {
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

        let pending = Arc::new(Pending::new());
        let handler_pending = Arc::clone(&pending);
        let events = EventThread::spawn("rdkafka-producer", queue, move |event| {
            handle_producer_event(&handler_pending, event)
        })
        .map_err(|error| Error::ClientCreation {
            kind: "producer",
            reason: format!("failed to start the event thread: {error}"),
        })?;

        Ok(Self {
            events,
            pending,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            client,
        })
    }

    /// Queues a record for sending and returns the future of its delivery.
    ///
    /// librdkafka copies the key, value and headers, so the record may be
    /// dropped at once.
    ///
    /// # Errors
    ///
    /// Failures known at once are returned here and create no future: an
    /// invalid topic name, a full local queue ([`ErrorCode::QUEUE_FULL`]),
    /// a message over `message.max.bytes`, a partition that the topic's
    /// metadata, once known, does not list. Before the metadata arrives, a
    /// send to a missing partition returns a future that fails with
    /// [`ErrorCode::UNKNOWN_PARTITION`].
    pub fn send(&self, record: Record<'_>) -> Result<DeliveryFuture> {
        let topic = record.c_topic()?;
        let headers = record.native_headers();
        let mut args = record.produce_args(headers.as_ref());
        args.push(vu(ll::RD_KAFKA_VTYPE_TOPIC, ll::rd_kafka_vu_s__bindgen_ty_1 { cstr: topic.as_ptr() }));

        // Invariant 1 of the pending table: register before librdkafka can
        // report, so the event thread always finds the completion.
        let slot: Slot<Delivery> = Completion::new();
        let id = self
            .pending
            .register(Arc::clone(&slot))
            .map_err(|_| Error::Closed { operation: "send" })?;
        args.push(vu(ll::RD_KAFKA_VTYPE_OPAQUE, ll::rd_kafka_vu_s__bindgen_ty_1 { ptr: id as *mut _ }));

        // SAFETY: the client is valid, and every pointer in args (topic,
        // key, value, headers) stays valid for the call; librdkafka copies
        // the bytes (RD_KAFKA_MSG_F_COPY).
        let error = unsafe { ll::rd_kafka_produceva(self.client.as_ptr(), args.as_ptr(), args.len()) };

        if !error.is_null() {
            self.pending.take(id);
            // SAFETY: a non-NULL result is an error object we own.
            let error = unsafe { take_rd_kafka_error(error) };
            return Err(Error::Kafka { operation: "send", error });
        }

        if let Some(headers) = headers {
            headers.release();
        }
        Ok(DeliveryFuture::new(slot, "delivery"))
    }

    /// Waits until every message sent so far has its delivery report and
    /// its future is resolved.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when messages are still outstanding after
    /// `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
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
        if self.pending.wait_until_empty(remaining) {
            Ok(())
        } else {
            Err(timed_out)
        }
    }

    /// The number of sent messages whose futures are not yet resolved.
    pub fn in_flight_count(&self) -> usize {
        self.pending.len()
    }

    /// Sets how long dropping the producer waits for deliveries before it
    /// purges what is left (default [`DEFAULT_CLOSE_TIMEOUT`]).
    pub fn set_close_timeout(&mut self, timeout: Duration) {
        self.close_timeout = timeout;
    }

    fn shut_down(&mut self) {
        if self.flush(self.close_timeout).is_err() {
            let flags = ll::RD_KAFKA_PURGE_F_QUEUE | ll::RD_KAFKA_PURGE_F_INFLIGHT;
            // SAFETY: the client is valid.
            unsafe { ll::rd_kafka_purge(self.client.as_ptr(), flags) };
            self.pending.wait_until_empty(PURGE_REPORT_TIMEOUT);
        }
        self.events.stop();

        // Invariant 4: whatever got no report is resolved here, once.
        for slot in self.pending.close() {
            slot.resolve(Err(Error::Closed { operation: "delivery" }));
        }
    }
}

impl Drop for Producer {
    /// Waits up to the close timeout for outstanding deliveries, then
    /// purges the rest, waits up to 5 s for their reports and resolves every
    /// future still pending with [`Error::Closed`].
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("in_flight", &self.in_flight_count())
            .finish_non_exhaustive()
    }
}

fn handle_producer_event(pending: &Pending<Slot<Delivery>>, event: NativeEvent) {
    let Some(event) = handle_common_event(event) else {
        return;
    };
    if event.event_type() != ll::RD_KAFKA_EVENT_DR {
        return;
    }

    loop {
        // SAFETY: the event is a valid DR event; each message it returns
        // lives as long as the event.
        let message = unsafe { ll::rd_kafka_event_message_next(event.as_ptr()) };
        if message.is_null() {
            break;
        }
        // SAFETY: message is valid, see above.
        let (id, result) = unsafe { delivery_result(message) };

        // Invariant 3: find the completion by the id in the opaque.
        match pending.take(id) {
            Some(slot) => {
                slot.resolve(result);
            }
            None => log::error!("delivery report for unknown message id {id}"),
        }
    }
}

/// Reads the id and outcome of one reported message.
///
/// # Safety
///
/// `message` must be a valid message of a delivery-report event.
unsafe fn delivery_result(message: *const ll::rd_kafka_message_t) -> (u64, Result<Delivery>) {
    // SAFETY: the caller guarantees a valid message.
    let fields = unsafe { &*message };
    let id = fields._private as u64;

    if fields.err != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        let code = ErrorCode::from_raw(fields.err);
        let error = KafkaError::from_code(code);
        return (id, Err(Error::Kafka { operation: "delivery", error }));
    }

    // SAFETY: a reported message keeps its topic, whose name is valid
    // while the message lives.
    let topic = unsafe { CStr::from_ptr(ll::rd_kafka_topic_name(fields.rkt)) };
    let delivery = Delivery {
        topic: topic.to_string_lossy().into_owned(),
        partition: fields.partition,
        offset: fields.offset,
        // SAFETY: the caller guarantees a valid message.
        timestamp: unsafe { Timestamp::of(message) },
    };
    (id, Ok(delivery))
}
