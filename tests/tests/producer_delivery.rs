//! Deliveries of the `rdkafka-hl` producer on the mock cluster and on a
//! real broker. The tests cover many sender threads on one producer, owned
//! and borrowed payloads, a local queue limited to 10 messages, and wakers
//! that call back into the producer on its event thread.

// DeliveryError hands payloads back by value, and these helpers pass it on.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_e2e::{describe_missing, drop_within, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    Config, Consumer, Delivery, DeliveryError, DeliveryFuture, Error, ErrorCode, MockCluster, OwnedMessage, Payload,
    Producer, Record,
};

/// How long one `Consumer::poll` blocks, kept short so that deadlines are
/// checked often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// The name of the producer's event thread, on which wakers run.
const EVENT_THREAD_NAME: &str = "rdkafka-producer";

#[test]
fn multi_partition_mock() {
    multi_partition(&Target::mock());
}

#[test]
fn multi_partition_real_broker() {
    if let Some(target) = Target::real_broker() {
        multi_partition(&target);
    }
}

#[test]
fn owned_payloads_mock() {
    owned_payloads(&Target::mock());
}

#[test]
fn owned_payloads_real_broker() {
    if let Some(target) = Target::real_broker() {
        owned_payloads(&target);
    }
}

fn set(config: Config, key: &str, value: &str) -> Config {
    config
        .set(key, value)
        .unwrap_or_else(|error| panic!("invalid setting {key}={value}: {error}"))
}

fn new_producer(config: Config) -> Producer {
    Producer::new(config).unwrap_or_else(|error| panic!("failed to create a producer: {error}"))
}

/// Returns the one cluster of a mock target.
fn mock_cluster(target: &Target) -> &MockCluster {
    match target {
        Target::Mock(cluster) => cluster,
        Target::RealBroker(_) => panic!("this scenario needs the mock cluster"),
    }
}

/// Counts how often the delivery future of each id resolves, as seen
/// through wakers: a future that is pending when first polled must wake
/// exactly once, and one that is ready at its first poll counts as
/// resolved there.
struct ResolutionCounter {
    counts: Vec<AtomicUsize>,
    total: AtomicUsize,
}

impl ResolutionCounter {
    fn new(ids: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: (0..ids).map(|_| AtomicUsize::new(0)).collect(),
            total: AtomicUsize::new(0),
        })
    }

    fn record(&self, id: usize) {
        self.counts[id].fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
    }

    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// Waits until every id has resolved at least once, then checks that
    /// each resolved exactly once, also after a short quiet window in which
    /// a late second wake-up would show.
    fn check_each_once(&self, deadline: &Deadline) {
        let ids = self.counts.len();
        while self.total() < ids {
            deadline.check(|| {
                let resolved: BTreeSet<usize> = (0..ids).filter(|id| self.count(*id) > 0).collect();
                format!("futures resolved: {}", describe_missing(ids, &resolved))
            });
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(100));

        let wrong: Vec<(usize, usize)> = (0..ids)
            .map(|id| (id, self.count(id)))
            .filter(|(_, count)| *count != 1)
            .take(20)
            .collect();
        assert!(
            wrong.is_empty(),
            "futures that did not resolve exactly once, as (id, resolutions): {wrong:?}"
        );
        assert_eq!(self.total(), ids, "resolutions of {ids} futures");
    }

    fn count(&self, id: usize) -> usize {
        self.counts[id].load(Ordering::SeqCst)
    }
}

struct CountingWaker {
    counter: Arc<ResolutionCounter>,
    id: usize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.counter.record(self.id);
    }
}

/// A delivery future that was polled once with a [`CountingWaker`], and
/// its result once it is known.
struct WatchedDelivery {
    id: usize,
    future: Option<DeliveryFuture>,
    result: Option<Result<Delivery, DeliveryError>>,
    waker: Waker,
}

impl WatchedDelivery {
    fn new(id: usize, future: DeliveryFuture, counter: &Arc<ResolutionCounter>) -> Self {
        let waker = Waker::from(Arc::new(CountingWaker {
            counter: Arc::clone(counter),
            id,
        }));
        let mut watched = Self {
            id,
            future: Some(future),
            result: None,
            waker,
        };
        if watched.poll() {
            counter.record(id);
        }
        watched
    }

    /// Polls the future unless its result is known, and returns whether it
    /// became ready on this call.
    fn poll(&mut self) -> bool {
        let Some(future) = self.future.as_mut() else {
            return false;
        };
        let mut context = Context::from_waker(&self.waker);
        match Pin::new(future).poll(&mut context) {
            Poll::Ready(result) => {
                self.result = Some(result);
                self.future = None;
                true
            }
            Poll::Pending => false,
        }
    }

    /// Returns the result of a future whose waker has been called.
    fn into_result(mut self) -> Result<Delivery, DeliveryError> {
        self.poll();
        let id = self.id;
        self.result
            .unwrap_or_else(|| panic!("the future of record {id} is pending although its waker was called"))
    }
}

/// Checks that every watched future resolved exactly once and returns the
/// deliveries by id, failing on any delivery error.
fn deliveries_by_id(watched: Vec<WatchedDelivery>, counter: &ResolutionCounter, topic: &str) -> Vec<Delivery> {
    let count = counter.counts.len();
    let deadline = Deadline::after(
        WAIT_TIMEOUT,
        format!("the delivery futures of {count} records to {topic}"),
    );
    counter.check_each_once(&deadline);

    let mut deliveries: Vec<Option<Delivery>> = vec![None; count];
    for watched in watched {
        let id = watched.id;
        let delivery = watched
            .into_result()
            .unwrap_or_else(|error| panic!("delivery of record {id} failed: {error}"));
        assert_eq!(delivery.topic, topic, "topic in the delivery of record {id}");
        assert!(deliveries[id].is_none(), "record {id} has two delivery futures");
        deliveries[id] = Some(delivery);
    }
    deliveries
        .into_iter()
        .enumerate()
        .map(|(id, delivery)| delivery.unwrap_or_else(|| panic!("record {id} was never sent")))
        .collect()
}

/// Checks that the deliveries cover the partitions `0..partitions` and that
/// each partition's delivered offsets are 0, 1, 2 and so on without gaps or
/// repeats, which would show two futures paired with one report.
fn check_offsets_dense(deliveries: &[Delivery], partitions: i32) {
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for delivery in deliveries {
        offsets.entry(delivery.partition).or_default().push(delivery.offset);
    }

    let reported: Vec<i32> = offsets.keys().copied().collect();
    let expected: Vec<i32> = (0..partitions).collect();
    assert_eq!(reported, expected, "partitions that deliveries reported");

    for (partition, mut partition_offsets) in offsets {
        partition_offsets.sort_unstable();
        let expected: Vec<i64> = (0..partition_offsets.len() as i64).collect();
        assert_eq!(
            partition_offsets, expected,
            "sorted delivered offsets of partition {partition}"
        );
    }
}

fn new_consumer(target: &Target) -> Consumer {
    let group = unique_name("producer-check");
    let config = set(target.group_config(&group), "auto.offset.reset", "earliest");
    let config = set(config, "enable.auto.commit", "false");
    Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer in group {group}: {error}"))
}

/// Reads `count` records from `topic`, whose keys are their ids in decimal,
/// and returns them by id. Fails on a duplicate or an unknown id.
fn consume_by_id(target: &Target, topic: &str, count: usize) -> BTreeMap<usize, OwnedMessage> {
    let consumer = new_consumer(target);
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{count} records from {topic}"));
    let mut messages = BTreeMap::new();

    while messages.len() < count {
        deadline.check(|| describe_missing(count, &messages.keys().copied().collect()));
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let message = result
            .unwrap_or_else(|error| panic!("poll of {topic} failed: {error}"))
            .detach();
        let id = record_id(&message);
        assert!(
            id < count,
            "record id {id} at partition {} offset {} is out of range",
            message.partition,
            message.offset
        );
        if let Some(first) = messages.insert(id, message) {
            panic!(
                "record {id} was consumed twice, first at partition {} offset {}",
                first.partition, first.offset
            );
        }
    }
    messages
}

/// Reads the id from a consumed record's key.
fn record_id(message: &OwnedMessage) -> usize {
    let parsed = message
        .key
        .as_deref()
        .and_then(|key| std::str::from_utf8(key).ok())
        .and_then(|text| text.parse().ok());
    parsed.unwrap_or_else(|| {
        panic!(
            "record at partition {} offset {} has key {:?}, expected a decimal id",
            message.partition, message.offset, message.key
        )
    })
}

const MULTI_PARTITIONS: i32 = 8;
const MULTI_RECORDS: usize = 20_000;
const MULTI_THREADS: usize = 4;

fn multi_value(id: usize) -> Vec<u8> {
    format!("multi-{id}").into_bytes()
}

/// Sends [`MULTI_RECORDS`] records from [`MULTI_THREADS`] threads through
/// one producer to [`MULTI_PARTITIONS`] partitions, checks that every
/// future resolves once, then reads everything back and compares each
/// record's partition and offset with its delivery.
fn multi_partition(target: &Target) {
    let topic = target.create_topic("producer-multi", MULTI_PARTITIONS);
    let producer = new_producer(target.config());
    let counter = ResolutionCounter::new(MULTI_RECORDS);

    let watched: Vec<WatchedDelivery> = thread::scope(|scope| {
        let senders: Vec<_> = (0..MULTI_THREADS)
            .map(|first_id| {
                let (producer, topic, counter) = (&producer, topic.as_str(), &counter);
                scope.spawn(move || {
                    let mut watched = Vec::new();
                    for id in (first_id..MULTI_RECORDS).step_by(MULTI_THREADS) {
                        let key = id.to_string();
                        let future = producer
                            .send(Record::to(topic).key(&key).value(multi_value(id)))
                            .unwrap_or_else(|error| panic!("send of record {id} failed: {error}"));
                        watched.push(WatchedDelivery::new(id, future, counter));
                    }
                    watched
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|sender| sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });

    let deliveries = deliveries_by_id(watched, &counter, &topic);
    assert_eq!(
        producer.in_flight_count(),
        0,
        "in-flight count after every future resolved"
    );
    check_offsets_dense(&deliveries, MULTI_PARTITIONS);

    let messages = consume_by_id(target, &topic, MULTI_RECORDS);
    for (id, message) in &messages {
        let delivery = &deliveries[*id];
        assert_eq!(
            message.partition, delivery.partition,
            "partition of record {id} against its delivery"
        );
        assert_eq!(
            message.offset, delivery.offset,
            "offset of record {id} against its delivery"
        );
        assert_eq!(
            message.value.as_deref(),
            Some(multi_value(*id).as_slice()),
            "value of record {id}"
        );
    }
}

/// How a value of [`owned_payloads`] is passed to `Record::value`.
#[derive(Debug, Clone, Copy)]
enum ValueForm {
    Vec,
    Boxed,
    Shared,
    String,
    Custom,
    BorrowedSlice,
    BorrowedVec,
    BorrowedStr,
}

const VALUE_FORMS: [ValueForm; 8] = [
    ValueForm::Vec,
    ValueForm::Boxed,
    ValueForm::Shared,
    ValueForm::String,
    ValueForm::Custom,
    ValueForm::BorrowedSlice,
    ValueForm::BorrowedVec,
    ValueForm::BorrowedStr,
];

/// Value sizes in bytes. 70,000 is above librdkafka's default
/// `message.copy.max.bytes` (65,535), above which librdkafka points at the
/// value instead of copying it into the request.
const VALUE_SIZES: [usize; 4] = [0, 1, 1_000, 70_000];

/// Returns the value bytes of record `id`. They are ASCII letters, so that
/// every form, `String` included, can carry them, and the id shifts them so
/// that records differ.
fn payload_bytes(id: usize, size: usize) -> Vec<u8> {
    (0..size).map(|index| b'a' + ((index * 7 + id) % 26) as u8).collect()
}

/// Sends values of every [`ValueForm`] and size, plus one record with a
/// null value and one of 300,000 bytes, and reads them back byte for byte.
/// Borrowed sources are overwritten right after `send`, so that a value
/// librdkafka did not copy would arrive changed. Odd ids have owned keys.
fn owned_payloads(target: &Target) {
    let topic = target.create_topic("producer-payloads", 2);
    let producer = new_producer(target.config());

    let mut cases: Vec<(ValueForm, usize)> = Vec::new();
    for form in VALUE_FORMS {
        for size in VALUE_SIZES {
            cases.push((form, size));
        }
    }
    cases.push((ValueForm::Vec, 300_000));
    let null_value_id = cases.len();
    let count = cases.len() + 1;

    let mut expected_values: Vec<Option<Vec<u8>>> = Vec::new();
    let mut futures: Vec<DeliveryFuture> = Vec::new();
    for (id, (form, size)) in cases.iter().copied().enumerate() {
        let bytes = payload_bytes(id, size);
        let key = id.to_string();
        let mut source = bytes.clone();

        let value = value_in_form(form, &bytes, &source);
        assert_eq!(
            value.is_owned(),
            form.is_owned(),
            "whether {form:?} converts into an owned payload"
        );
        let record = Record::to(&topic).value(value);
        let record = if id % 2 == 1 {
            record.key(key.clone())
        } else {
            record.key(key.as_str())
        };
        let result = producer.send(record).map_err(|error| error.to_string());
        // librdkafka copied a borrowed value during `send`, so changing and
        // dropping the source now must not change what is delivered.
        source.fill(0xEE);
        drop(source);

        let future =
            result.unwrap_or_else(|error| panic!("send of record {id} ({form:?}, {size} bytes) failed: {error}"));
        futures.push(future);
        expected_values.push(Some(bytes));
    }
    let null_key = null_value_id.to_string();
    let null_future = producer
        .send(Record::to(&topic).key(&null_key))
        .unwrap_or_else(|error| panic!("send of the record with a null value failed: {error}"));
    futures.push(null_future);
    expected_values.push(None);

    let mut deliveries = Vec::new();
    for (id, future) in futures.into_iter().enumerate() {
        let delivery = future
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of record {id} failed: {error}"));
        deliveries.push(delivery);
    }

    let messages = consume_by_id(target, &topic, count);
    for (id, message) in &messages {
        let description = match cases.get(*id) {
            Some((form, size)) => format!("record {id} ({form:?}, {size} bytes)"),
            None => format!("record {id} (null value)"),
        };
        assert_eq!(message.value, expected_values[*id], "value of {description}");
        assert_eq!(
            message.partition, deliveries[*id].partition,
            "partition of {description} against its delivery"
        );
        assert_eq!(
            message.offset, deliveries[*id].offset,
            "offset of {description} against its delivery"
        );
    }
}

impl ValueForm {
    fn is_owned(self) -> bool {
        !matches!(
            self,
            ValueForm::BorrowedSlice | ValueForm::BorrowedVec | ValueForm::BorrowedStr
        )
    }
}

/// Returns `bytes` as a payload in `form`: owned forms copy `bytes`, and
/// borrowed forms borrow `source`, which contains the same bytes.
fn value_in_form<'a>(form: ValueForm, bytes: &[u8], source: &'a Vec<u8>) -> Payload<'a> {
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("payload bytes are ASCII letters");
    match form {
        ValueForm::Vec => bytes.to_vec().into(),
        ValueForm::Boxed => Box::<[u8]>::from(bytes).into(),
        ValueForm::Shared => Arc::<[u8]>::from(bytes).into(),
        ValueForm::String => text(bytes).into(),
        ValueForm::Custom => Payload::shared(bytes.to_vec()),
        ValueForm::BorrowedSlice => source.as_slice().into(),
        ValueForm::BorrowedVec => source.into(),
        ValueForm::BorrowedStr => std::str::from_utf8(source)
            .expect("payload bytes are ASCII letters")
            .into(),
    }
}

const SMALL_QUEUE_THREADS: usize = 8;
const SMALL_QUEUE_SENDS_PER_THREAD: usize = 5_000;
const SMALL_QUEUE_PARTITIONS: i32 = 4;

/// How long one `send_wait` of [`small_queue_no_deadlock`] may wait for
/// room in the queue.
const SEND_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on all sends of [`small_queue_no_deadlock`]. Alone, they took
/// 0.8 s on the mock cluster (debug build, 2 cores, measured with
/// `cargo test -p rdkafka-e2e --test producer_delivery small_queue -- --nocapture`).
const SMALL_QUEUE_BOUND: Duration = Duration::from_secs(30);

/// Sends from 8 threads with `send_wait` through a producer whose local
/// queue is limited to 10 messages, so that the senders keep waiting for
/// room that only delivery reports free. A sender that waited while holding a
/// lock the event thread needs would deadlock here.
#[test]
fn small_queue_no_deadlock() {
    let target = Target::mock();
    let topic = target.create_topic("producer-small-queue", SMALL_QUEUE_PARTITIONS);
    let config = set(target.config(), "queue.buffering.max.messages", "10");
    let config = set(config, "linger.ms", "0");
    let producer = Arc::new(new_producer(config));
    let records = SMALL_QUEUE_THREADS * SMALL_QUEUE_SENDS_PER_THREAD;
    let counter = ResolutionCounter::new(records);
    let sent = Arc::new(AtomicUsize::new(0));

    let started = Instant::now();
    let driver = {
        let (producer, topic, counter, sent) = (
            Arc::clone(&producer),
            topic.clone(),
            Arc::clone(&counter),
            Arc::clone(&sent),
        );
        thread::spawn(move || send_with_small_queue(&producer, &topic, &counter, &sent))
    };
    let deadline = Deadline::after(
        SMALL_QUEUE_BOUND,
        format!("{records} send_wait calls through a queue of 10 messages"),
    );
    while !driver.is_finished() {
        deadline.check(|| {
            format!(
                "{} sends returned, {} futures resolved, {} messages in flight",
                sent.load(Ordering::SeqCst),
                counter.total(),
                producer.in_flight_count()
            )
        });
        thread::sleep(Duration::from_millis(10));
    }
    let watched = driver.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let elapsed = started.elapsed();

    assert_eq!(
        sent.load(Ordering::SeqCst),
        records,
        "send_wait calls that returned a future"
    );
    assert_eq!(watched.len(), records, "watched delivery futures");
    let deliveries = deliveries_by_id(watched, &counter, &topic);
    check_offsets_dense(&deliveries, SMALL_QUEUE_PARTITIONS);
    assert_eq!(
        producer.in_flight_count(),
        0,
        "in-flight count after every future resolved"
    );
    eprintln!("{records} sends through a queue of 10 messages took {elapsed:?}");

    let producer =
        Arc::try_unwrap(producer).unwrap_or_else(|_| panic!("the producer is still shared after the senders ended"));
    drop_within(producer, Duration::from_secs(10), "the producer after all deliveries");
}

fn send_with_small_queue(
    producer: &Producer,
    topic: &str,
    counter: &Arc<ResolutionCounter>,
    sent: &AtomicUsize,
) -> Vec<WatchedDelivery> {
    thread::scope(|scope| {
        let senders: Vec<_> = (0..SMALL_QUEUE_THREADS)
            .map(|thread_index| {
                scope.spawn(move || {
                    let first_id = thread_index * SMALL_QUEUE_SENDS_PER_THREAD;
                    let mut watched = Vec::with_capacity(SMALL_QUEUE_SENDS_PER_THREAD);
                    for id in first_id..first_id + SMALL_QUEUE_SENDS_PER_THREAD {
                        let key = id.to_string();
                        let future = producer
                            .send_wait(Record::to(topic).key(&key).value(&key), SEND_WAIT_TIMEOUT)
                            .unwrap_or_else(|error| panic!("send_wait of record {id} failed: {error}"));
                        sent.fetch_add(1, Ordering::SeqCst);
                        watched.push(WatchedDelivery::new(id, future, counter));
                    }
                    watched
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|sender| sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// What a [`ReenteringWaker`] saw when it ran.
#[derive(Debug)]
struct ReentryReport {
    thread_name: Option<String>,
    /// The futures of the two records sent from the waker, or the errors.
    inner_sends: Vec<Result<DeliveryFuture, String>>,
    /// `send_wait` with a full queue: its error code and how long it took.
    full_send_wait: (Result<(), Option<ErrorCode>>, Duration),
    /// `flush`: its result and how long it took.
    flush: (Result<(), Error>, Duration),
}

/// A waker that, when the producer's event thread wakes it, sends two
/// more records through the same producer, tries `send_wait` while the
/// queue is full and calls `flush`, then reports what happened. Only the
/// first wake-up does this.
struct ReenteringWaker {
    producer: Arc<Producer>,
    topic: String,
    report: Mutex<Option<mpsc::Sender<ReentryReport>>>,
}

/// `send_wait` timeout in the waker. The waker must not wait this long.
const REENTRY_SEND_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// `flush` timeout in the waker. The waker must not wait this long.
const REENTRY_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

impl Wake for ReenteringWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(sender) = self.report.lock().expect("the report lock is not poisoned").take() else {
            return;
        };
        let thread_name = thread::current().name().map(str::to_owned);

        let inner_sends = ["inner-1", "inner-2"]
            .into_iter()
            .map(|value| {
                self.producer
                    .send(Record::to(&self.topic).value(value))
                    .map_err(|error| error.to_string())
            })
            .collect();

        let started = Instant::now();
        let full = self
            .producer
            .send_wait(Record::to(&self.topic).value("inner-3"), REENTRY_SEND_WAIT_TIMEOUT);
        let full_send_wait = (full.map(drop).map_err(|error| error.code()), started.elapsed());

        let started = Instant::now();
        let flushed = self.producer.flush(REENTRY_FLUSH_TIMEOUT);
        let flush = (flushed, started.elapsed());

        // The receiver is gone only when the test already failed.
        let _ = sender.send(ReentryReport {
            thread_name,
            inner_sends,
            full_send_wait,
            flush,
        });
    }
}

/// Bound on calls that must return at once instead of waiting for their
/// timeouts.
const PROMPT: Duration = Duration::from_secs(1);

/// Checks a waker that runs on the producer's event thread and calls back
/// into the producer. Its sends must succeed and resolve. `send_wait` on a
/// full queue and `flush` must return at once, because only the event
/// thread, which is busy running the waker, could deliver the reports they
/// would wait for.
#[test]
fn waker_reenters_producer() {
    let target = Target::mock();
    let topic = target.create_topic("producer-reentry", 1);
    // linger.ms keeps the first record from being delivered before its
    // first poll, and keeps the waker's records queued while it runs, so
    // that two of them fill a queue of 2.
    let config = set(target.config(), "linger.ms", "200");
    let config = set(config, "queue.buffering.max.messages", "2");
    let producer = Arc::new(new_producer(config));

    let (sender, receiver) = mpsc::channel();
    let waker_state = Arc::new(ReenteringWaker {
        producer: Arc::clone(&producer),
        topic: topic.clone(),
        report: Mutex::new(Some(sender)),
    });
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut outer = producer
        .send(Record::to(&topic).value("outer"))
        .unwrap_or_else(|error| panic!("send of the outer record failed: {error}"));
    let mut context = Context::from_waker(&waker);
    assert!(
        Pin::new(&mut outer).poll(&mut context).is_pending(),
        "the outer delivery resolved before linger.ms passed"
    );

    let report = receiver.recv_timeout(WAIT_TIMEOUT).unwrap_or_else(|_| {
        panic!("timed out after {WAIT_TIMEOUT:?} waiting for the waker of the outer delivery to run")
    });

    assert_eq!(
        report.thread_name.as_deref(),
        Some(EVENT_THREAD_NAME),
        "thread that ran the waker"
    );
    let (full_result, full_elapsed) = &report.full_send_wait;
    assert_eq!(
        *full_result,
        Err(Some(ErrorCode::QUEUE_FULL)),
        "send_wait on the event thread with a full queue"
    );
    assert!(
        *full_elapsed < PROMPT,
        "send_wait on the event thread took {full_elapsed:?}, expected it to return at once"
    );
    let (flush_result, flush_elapsed) = &report.flush;
    match flush_result {
        Err(Error::OnEventThread { operation }) => assert_eq!(*operation, "flush", "operation in the error"),
        other => panic!("flush on the event thread returned {other:?}, expected Error::OnEventThread"),
    }
    assert!(
        *flush_elapsed < PROMPT,
        "flush on the event thread took {flush_elapsed:?}, expected it to return at once"
    );

    match Pin::new(&mut outer).poll(&mut context) {
        Poll::Ready(Ok(delivery)) => assert_eq!(delivery.offset, 0, "offset of the outer record"),
        other => panic!("the outer future after its waker ran: {other:?}, expected a delivery"),
    }
    for (index, inner) in report.inner_sends.into_iter().enumerate() {
        let future = inner.unwrap_or_else(|error| panic!("send {} from the waker failed: {error}", index + 1));
        let delivery = future
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of record {} sent from the waker failed: {error}", index + 1));
        assert_eq!(
            delivery.offset,
            index as i64 + 1,
            "offset of record {} sent from the waker",
            index + 1
        );
    }
    assert_eq!(
        producer.in_flight_count(),
        0,
        "in-flight count after the waker's records resolved"
    );

    drop(waker);
    drop(waker_state);
    let producer = Arc::try_unwrap(producer).unwrap_or_else(|_| panic!("the waker still holds the producer"));
    drop_within(
        producer,
        Duration::from_secs(10),
        "the producer after the re-entrant waker",
    );
}

/// What a [`WaitingWaker`] saw: its thread's name, the offset or error of
/// its wait, and how long the wait took.
type WaitReport = (Option<String>, Result<i64, String>, Duration);

/// A waker that sends a record and waits for its delivery with a timeout.
struct WaitingWaker {
    producer: Arc<Producer>,
    topic: String,
    report: Mutex<Option<mpsc::Sender<WaitReport>>>,
}

impl Wake for WaitingWaker {
    fn wake(self: Arc<Self>) {
        let Some(sender) = self.report.lock().expect("the report lock is not poisoned").take() else {
            return;
        };
        let thread_name = thread::current().name().map(str::to_owned);
        let started = Instant::now();
        let result = match self.producer.send(Record::to(&self.topic).value("inner")) {
            Ok(future) => future
                .wait_timeout(REENTRY_SEND_WAIT_TIMEOUT)
                .map(|delivery| delivery.offset)
                .map_err(|error| format!("{:?}", error.error)),
            Err(error) => Err(format!("send failed: {error}")),
        };
        // The receiver is gone only when the test already failed.
        let _ = sender.send((thread_name, result, started.elapsed()));
    }
}

/// A waker on the event thread that waits for a report with a timeout
/// must get `OnEventThread` at once, as `wait` does: blocking that thread
/// would hold up every report of the producer for the whole timeout.
#[test]
fn waker_wait_timeout_refused() {
    let target = Target::mock();
    let topic = target.create_topic("producer-waker-wait", 1);
    // linger.ms keeps the waker's own record from being delivered while
    // the waker runs.
    let producer = Arc::new(new_producer(set(target.config(), "linger.ms", "200")));
    let (sender, receiver) = mpsc::channel();
    let waker = Waker::from(Arc::new(WaitingWaker {
        producer: Arc::clone(&producer),
        topic: topic.clone(),
        report: Mutex::new(Some(sender)),
    }));

    let mut outer = producer
        .send(Record::to(&topic).value("outer"))
        .unwrap_or_else(|error| panic!("send of the outer record failed: {error}"));
    assert!(
        Pin::new(&mut outer).poll(&mut Context::from_waker(&waker)).is_pending(),
        "the outer delivery resolved before linger.ms passed"
    );
    let (thread_name, result, elapsed) = receiver
        .recv_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|_| panic!("timed out after {WAIT_TIMEOUT:?} waiting for the waker to run"));

    assert_eq!(thread_name.as_deref(), Some(EVENT_THREAD_NAME), "thread that ran the waker");
    assert!(
        matches!(&result, Err(error) if error.contains("OnEventThread")),
        "wait_timeout on the event thread returned {result:?}, expected Error::OnEventThread"
    );
    assert!(elapsed < PROMPT, "wait_timeout on the event thread took {elapsed:?}, expected it to return at once");
    let delivery = outer
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery of the outer record failed: {error}"));
    assert_eq!(delivery.offset, 0, "offset of the outer record");
}

/// What a [`DroppingWaker`] saw when it ran.
struct DropReport {
    thread_name: Option<String>,
    drop_elapsed: Duration,
}

/// A waker that owns the last handle of a producer and drops it when the
/// producer's event thread wakes it, reporting the thread and how long the
/// drop took.
struct DroppingWaker {
    producer: Mutex<Option<Producer>>,
    report: Mutex<Option<mpsc::Sender<DropReport>>>,
}

impl Wake for DroppingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let producer = self.producer.lock().expect("the producer lock is not poisoned").take();
        let Some(sender) = self.report.lock().expect("the report lock is not poisoned").take() else {
            return;
        };
        let started = Instant::now();
        drop(producer);
        let drop_elapsed = started.elapsed();
        let thread_name = thread::current().name().map(str::to_owned);
        // The receiver is gone only when the test already failed.
        let _ = sender.send(DropReport {
            thread_name,
            drop_elapsed,
        });
    }
}

const STUCK_RECORDS: usize = 20;

/// Drops the last handle of a producer from a waker on its own event
/// thread while records to a down broker are queued. The drop cannot wait
/// for reports there, so it must return at once, and every queued record's
/// future must still resolve, handing its owned value back.
#[test]
fn waker_drops_producer() {
    let cluster =
        MockCluster::new(2).unwrap_or_else(|error| panic!("failed to start a mock cluster of 2 brokers: {error}"));
    let live_topic = unique_name("producer-drop-live");
    let stuck_topic = unique_name("producer-drop-stuck");
    for topic in [&live_topic, &stuck_topic] {
        cluster
            .create_topic(topic, 1, 1)
            .unwrap_or_else(|error| panic!("failed to create topic {topic}: {error}"));
    }
    set_partition_leader(&cluster, &live_topic, 1);
    set_partition_leader(&cluster, &stuck_topic, 2);
    cluster
        .set_broker_down(2)
        .unwrap_or_else(|error| panic!("failed to take broker 2 down: {error}"));

    let config = Config::new()
        .set("bootstrap.servers", &cluster.bootstrap_servers())
        .unwrap_or_else(|error| panic!("invalid bootstrap.servers: {error}"));
    let producer = new_producer(set(config, "linger.ms", "200"));
    let stuck: Vec<DeliveryFuture> = (0..STUCK_RECORDS)
        .map(|id| {
            producer
                .send(Record::to(&stuck_topic).value(stuck_value(id)))
                .unwrap_or_else(|error| panic!("send of stuck record {id} failed: {error}"))
        })
        .collect();
    let mut trigger = producer
        .send(Record::to(&live_topic).value("trigger"))
        .unwrap_or_else(|error| panic!("send of the trigger record failed: {error}"));

    let (sender, receiver) = mpsc::channel();
    let waker = Waker::from(Arc::new(DroppingWaker {
        producer: Mutex::new(Some(producer)),
        report: Mutex::new(Some(sender)),
    }));
    let mut context = Context::from_waker(&waker);
    assert!(
        Pin::new(&mut trigger).poll(&mut context).is_pending(),
        "the trigger resolved before linger.ms passed"
    );

    let report = receiver
        .recv_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|_| panic!("timed out after {WAIT_TIMEOUT:?} waiting for the waker to drop the producer"));
    assert_eq!(
        report.thread_name.as_deref(),
        Some(EVENT_THREAD_NAME),
        "thread that ran the waker"
    );
    let drop_elapsed = report.drop_elapsed;
    assert!(
        drop_elapsed < PROMPT,
        "dropping the producer on its event thread took {drop_elapsed:?}"
    );

    match Pin::new(&mut trigger).poll(&mut context) {
        Poll::Ready(Ok(delivery)) => assert_eq!(delivery.offset, 0, "offset of the trigger record"),
        other => panic!("the trigger future after its waker ran: {other:?}, expected a delivery"),
    }
    for (id, future) in stuck.into_iter().enumerate() {
        let error = match future.wait_timeout(WAIT_TIMEOUT) {
            Ok(delivery) => panic!("stuck record {id} was delivered to a down broker: {delivery:?}"),
            Err(error) => error,
        };
        let closed_or_purged =
            matches!(error.error, Error::Closed { .. }) || error.code() == Some(ErrorCode::PURGE_QUEUE);
        assert!(
            closed_or_purged,
            "stuck record {id} resolved with {:?}, expected Error::Closed or _PURGE_QUEUE",
            error.error
        );
        // A purged record's value comes back. A record closed without a
        // report does not hand its value back, because librdkafka may
        // still point at it; the producer keeps it until the client is
        // destroyed.
        let expected = (!matches!(error.error, Error::Closed { .. })).then(|| stuck_value(id));
        let value = error.value.map(rdkafka_hl::OwnedPayload::into_vec);
        assert_eq!(value, expected, "owned value handed back for stuck record {id}");
    }
}

fn stuck_value(id: usize) -> Vec<u8> {
    format!("stuck-{id}").into_bytes()
}

/// Makes `broker_id` the leader of partition 0 of `topic` on the mock.
fn set_partition_leader(cluster: &MockCluster, topic: &str, broker_id: i32) {
    let c_topic = std::ffi::CString::new(topic).expect("topic names have no NUL byte");
    // SAFETY: the cluster pointer is valid while `cluster` lives, and the
    // topic name is NUL-terminated. The mock copies what it needs.
    let code =
        unsafe { rdkafka_ll::rd_kafka_mock_partition_set_leader(cluster.as_ptr(), c_topic.as_ptr(), 0, broker_id) };
    assert_eq!(
        ErrorCode::from_raw(code),
        ErrorCode::from_raw(0),
        "setting broker {broker_id} as leader of {topic}/0"
    );
}

const QUEUE_LIMIT: usize = 10;
const QUEUE_FULL_SENDS: usize = 30;

fn queue_full_value(id: usize) -> Vec<u8> {
    format!("queued-{id}").into_bytes()
}

/// Fills a local queue of 10 messages while the only broker is down: the
/// first 10 sends are queued and the other 20 fail at once with
/// `_QUEUE_FULL`, handing their records back unchanged. Once the broker is
/// up, the 10 queued records are delivered in order and the 20 handed-back
/// records can be sent again.
#[test]
fn queue_full_exact() {
    let target = Target::mock();
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-queue-full", 1);
    cluster
        .set_broker_down(1)
        .unwrap_or_else(|error| panic!("failed to take broker 1 down: {error}"));
    let config = set(
        target.config(),
        "queue.buffering.max.messages",
        &QUEUE_LIMIT.to_string(),
    );
    let config = set(config, "reconnect.backoff.max.ms", "200");
    let producer = new_producer(config);

    // Even ids have owned values, odd ids borrow theirs from `values`.
    let values: Vec<Vec<u8>> = (0..QUEUE_FULL_SENDS).map(queue_full_value).collect();
    let keys: Vec<String> = (0..QUEUE_FULL_SENDS).map(|id| id.to_string()).collect();
    let mut queued = Vec::new();
    let mut rejected = Vec::new();
    for id in 0..QUEUE_FULL_SENDS {
        let record = Record::to(&topic).key(keys[id].as_str());
        let record = if id % 2 == 0 {
            record.value(values[id].clone())
        } else {
            record.value(values[id].as_slice())
        };
        match producer.send(record) {
            Ok(future) => queued.push((id, future)),
            Err(error) => rejected.push((id, error)),
        }
    }

    let queued_ids: Vec<usize> = queued.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        queued_ids,
        (0..QUEUE_LIMIT).collect::<Vec<_>>(),
        "ids of the sends that were queued"
    );
    assert_eq!(
        rejected.len(),
        QUEUE_FULL_SENDS - QUEUE_LIMIT,
        "sends rejected with a full queue"
    );
    for (id, error) in &rejected {
        assert_eq!(
            error.code(),
            Some(ErrorCode::QUEUE_FULL),
            "error of send {id}: {}",
            error.error
        );
        assert_eq!(
            error.record.topic(),
            topic,
            "topic of the record handed back by send {id}"
        );
        assert_eq!(
            error.record.key_bytes(),
            Some(keys[*id].as_bytes()),
            "key of the record handed back by send {id}"
        );
        assert_eq!(
            error.record.value_bytes(),
            Some(values[*id].as_slice()),
            "value of the record handed back by send {id}"
        );
    }
    assert_eq!(
        producer.in_flight_count(),
        QUEUE_LIMIT,
        "in-flight count with the broker down"
    );
    let ready: Vec<usize> = queued
        .iter()
        .filter(|(_, future)| future.is_ready())
        .map(|(id, _)| *id)
        .collect();
    assert!(
        ready.is_empty(),
        "futures of queued records resolved while the broker was down: {ready:?}"
    );

    cluster
        .set_broker_up(1)
        .unwrap_or_else(|error| panic!("failed to bring broker 1 up: {error}"));
    producer
        .flush(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("flush after the broker came up failed: {error}"));
    for (id, future) in queued {
        let delivery = future
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of queued record {id} failed: {error}"));
        assert_eq!(delivery.offset, id as i64, "offset of queued record {id}");
    }

    let mut resent = Vec::new();
    for (id, error) in rejected {
        let future = producer
            .send_wait(*error.record, WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("second send of handed-back record {id} failed: {error}"));
        resent.push((id, future));
    }
    for (id, future) in resent {
        let delivery = future
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of handed-back record {id} failed: {error}"));
        assert_eq!(delivery.offset, id as i64, "offset of handed-back record {id}");
    }
}

const FLUSH_ROUNDS: usize = 20;
const FLUSH_RECORDS: usize = 1_000;

/// Checks that `flush` returns `Ok` only after every future is resolved,
/// as its documentation promises. The gap between the last report leaving
/// the pending table and its future being resolved is short, so each of
/// the 20 rounds sends 1,000 records, which librdkafka reports in a few
/// large events that take longer to resolve.
#[test]
fn flush_resolves_futures() {
    let target = Target::mock();
    let topic = target.create_topic("producer-flush", 1);
    let producer = new_producer(target.config());

    for round in 0..FLUSH_ROUNDS {
        let futures: Vec<DeliveryFuture> = (0..FLUSH_RECORDS)
            .map(|id| {
                producer
                    .send(Record::to(&topic).value("flushed"))
                    .unwrap_or_else(|error| panic!("send {id} of round {round} failed: {error}"))
            })
            .collect();
        producer
            .flush(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("flush of round {round} failed: {error}"));

        let pending = (0..FLUSH_RECORDS).filter(|id| !futures[*id].is_ready()).count();
        if pending > 0 {
            // Tell a late resolution apart from a lost one.
            thread::sleep(Duration::from_millis(200));
            let still_pending = (0..FLUSH_RECORDS).filter(|id| !futures[*id].is_ready()).count();
            panic!(
                "round {round}: flush returned Ok while {pending} of {FLUSH_RECORDS} futures were unresolved; \
                 200 ms later {still_pending} were"
            );
        }
    }
}
