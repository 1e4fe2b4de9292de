//! Round trips through the safe `rdkafka-hl` API on the mock cluster and on
//! a real broker: sending from several threads, consuming in a group,
//! committing, and awaiting the futures of deliveries and commits.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka_e2e::{block_on, describe_missing, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    Consumer, Delivery, Error, ErrorCode, Header, Message, OwnedMessage, Producer, Record, Timestamp,
    TopicPartitionOffset,
};

const RECORD_COUNT: usize = 2_000;
const PARTITION_COUNT: i32 = 4;
const SENDER_THREADS: usize = 2;

/// Base of the explicit timestamps that some records carry, in milliseconds
/// since the Unix epoch (2020-09-13).
const EXPLICIT_TIMESTAMP_BASE: i64 = 1_600_000_000_000;

/// How long one `Consumer::poll` blocks, kept short so that deadlines are
/// checked often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a consumer must stay without messages for "nothing new" checks.
const QUIET_WINDOW: Duration = Duration::from_millis(1_500);

#[test]
fn round_trip_mock() {
    round_trip(&Target::mock());
}

#[test]
fn round_trip_real_broker() {
    if let Some(target) = Target::real_broker() {
        round_trip(&target);
    }
}

#[test]
fn futures_await_mock() {
    futures_await(&Target::mock());
}

#[test]
fn futures_await_real_broker() {
    if let Some(target) = Target::real_broker() {
        futures_await(&target);
    }
}

#[test]
fn commit_nothing_consumed_mock() {
    commit_nothing_consumed(&Target::mock());
}

#[test]
fn commit_nothing_consumed_real_broker() {
    if let Some(target) = Target::real_broker() {
        commit_nothing_consumed(&target);
    }
}

/// The record sent for one id, which is also what the consumer must read.
#[derive(Debug)]
struct ExpectedRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    /// The explicit timestamp, if the record sets one.
    timestamp: Option<i64>,
}

/// Returns the record for `id`. Most keys are distinct. Some keys and values
/// are empty or null, and some headers are null, empty or repeated, to check
/// that null and empty stay apart and that header order survives. The first
/// header is always `id`.
fn expected_record(id: usize) -> ExpectedRecord {
    let key = match id % 10 {
        3 => Some(Vec::new()),
        7 => None,
        _ => Some(format!("key-{id}").into_bytes()),
    };
    let value = match id % 8 {
        1 => None,
        5 => Some(Vec::new()),
        _ => Some(format!("value-{id}-").repeat(id % 4 + 1).into_bytes()),
    };

    let mut headers = vec![header("id", Some(id.to_string().as_bytes()))];
    if id % 4 == 2 {
        headers.push(header("trace", None));
    }
    if id % 6 == 0 {
        headers.push(header("empty", Some(b"")));
    }
    if id % 5 == 0 {
        headers.push(header("repeated", Some(b"first")));
        headers.push(header("repeated", None));
        headers.push(header("repeated", Some(b"third")));
    }

    let timestamp = (id % 9 == 4).then(|| EXPLICIT_TIMESTAMP_BASE + id as i64);
    ExpectedRecord { key, value, headers, timestamp }
}

fn header(name: &str, value: Option<&[u8]>) -> Header {
    Header {
        name: name.to_owned(),
        value: value.map(<[u8]>::to_vec),
    }
}

fn to_record<'a>(topic: &'a str, expected: &'a ExpectedRecord) -> Record<'a> {
    let mut record = Record::to(topic);
    if let Some(key) = &expected.key {
        record = record.key(key.as_slice());
    }
    if let Some(value) = &expected.value {
        record = record.value(value.as_slice());
    }
    for header in &expected.headers {
        record = match &header.value {
            Some(value) => record.header(&header.name, value.as_slice()),
            None => record.null_header(&header.name),
        };
    }
    if let Some(timestamp) = expected.timestamp {
        record = record.timestamp(timestamp);
    }
    record
}

/// Reads the id from a consumed message's first header.
fn record_id(message: &Message<'_>) -> usize {
    let headers = message.headers();
    let parsed = headers
        .first()
        .filter(|first| first.name == "id")
        .and_then(|first| first.value.as_deref())
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|text| text.parse().ok());
    parsed.unwrap_or_else(|| {
        panic!(
            "message at partition {} offset {} has no numeric `id` first header; headers: {headers:?}",
            message.partition(),
            message.offset()
        )
    })
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    elapsed.as_millis() as i64
}

fn new_consumer(target: &Target, group: &str) -> Consumer {
    let config = target
        .group_config(group)
        .set("auto.offset.reset", "earliest")
        .and_then(|config| config.set("enable.auto.commit", "false"))
        .unwrap_or_else(|error| panic!("invalid consumer configuration: {error}"));
    Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer in group {group}: {error}"))
}

fn new_producer(target: &Target) -> Producer {
    Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"))
}

/// Sends [`RECORD_COUNT`] records from [`SENDER_THREADS`] threads, reads
/// them back in a fresh group and checks each against its delivery, then
/// checks that the commit of everything consumed holds for the next
/// consumer of the group.
fn round_trip(target: &Target) {
    let topic = target.create_topic("hl-round-trip", PARTITION_COUNT);

    let producer = new_producer(target);
    let sent_after_ms = now_ms();
    let deliveries = send_all(&producer, &topic);
    let sent_before_ms = now_ms();
    assert_eq!(producer.in_flight_count(), 0, "in-flight count after every delivery future resolved");
    let partition_sizes = check_delivery_offsets(&deliveries);

    let group = unique_name("hl-round-trip");
    let consumer = new_consumer(target, &group);
    consumer
        .subscribe(&[&topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
    let messages = consume_all(&consumer, &topic);

    for (id, message) in &messages {
        check_message(target, *id, message, &topic, &deliveries[*id], (sent_after_ms, sent_before_ms));
    }

    check_commit_consumed(&consumer, &topic, &partition_sizes);
    drop(consumer);
    check_next_consumer_resumes(target, &producer, &group, &topic, &partition_sizes);
}

/// Sends every record, each sender thread taking every
/// [`SENDER_THREADS`]th id, waits for every delivery future and returns the
/// deliveries by id.
fn send_all(producer: &Producer, topic: &str) -> Vec<Delivery> {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("the deliveries of {RECORD_COUNT} records to {topic}"));

    let shares: Vec<Vec<(usize, Delivery)>> = thread::scope(|scope| {
        let senders: Vec<_> = (0..SENDER_THREADS)
            .map(|first_id| {
                let deadline = &deadline;
                scope.spawn(move || send_share(producer, topic, first_id, deadline))
            })
            .collect();
        senders
            .into_iter()
            .map(|sender| sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });

    let mut deliveries: Vec<Option<Delivery>> = vec![None; RECORD_COUNT];
    for (id, delivery) in shares.into_iter().flatten() {
        assert!(deliveries[id].is_none(), "record {id} was sent twice");
        deliveries[id] = Some(delivery);
    }
    deliveries
        .into_iter()
        .enumerate()
        .map(|(id, delivery)| delivery.unwrap_or_else(|| panic!("record {id} was never sent")))
        .collect()
}

/// Sends the records `first_id`, `first_id + SENDER_THREADS` and so on, then
/// waits for each delivery.
fn send_share(producer: &Producer, topic: &str, first_id: usize, deadline: &Deadline) -> Vec<(usize, Delivery)> {
    let mut futures = Vec::new();
    for id in (first_id..RECORD_COUNT).step_by(SENDER_THREADS) {
        let expected = expected_record(id);
        let future = producer
            .send(to_record(topic, &expected))
            .unwrap_or_else(|error| panic!("send of record {id} failed: {error}"));
        futures.push((id, future));
    }

    let mut deliveries = Vec::with_capacity(futures.len());
    for (id, future) in futures {
        let delivery = match future.wait_timeout(deadline.remaining()).map_err(Error::from) {
            Ok(delivery) => delivery,
            Err(Error::TimedOut { .. }) => deadline.fail(format!("record {id} has no delivery result")),
            Err(error) => panic!("delivery of record {id} failed: {error}"),
        };
        assert_eq!(delivery.topic, topic, "topic in the delivery of record {id}");
        deliveries.push((id, delivery));
    }
    deliveries
}

/// Checks that each partition got records and that its delivered offsets
/// are 0, 1, 2 and so on without gaps. Returns the number of records per
/// partition.
fn check_delivery_offsets(deliveries: &[Delivery]) -> Vec<i64> {
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for delivery in deliveries {
        offsets.entry(delivery.partition).or_default().push(delivery.offset);
    }

    let partitions: Vec<i32> = offsets.keys().copied().collect();
    let expected_partitions: Vec<i32> = (0..PARTITION_COUNT).collect();
    assert_eq!(partitions, expected_partitions, "partitions that deliveries reported");

    let mut sizes = Vec::new();
    for (partition, mut partition_offsets) in offsets {
        partition_offsets.sort_unstable();
        let expected: Vec<i64> = (0..partition_offsets.len() as i64).collect();
        assert_eq!(partition_offsets, expected, "sorted delivered offsets of partition {partition}");
        sizes.push(partition_offsets.len() as i64);
    }
    sizes
}

/// Polls until every id has arrived, failing on a duplicate, then polls a
/// while longer so that a duplicate of the last records is caught too.
fn consume_all(consumer: &Consumer, topic: &str) -> BTreeMap<usize, OwnedMessage> {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{RECORD_COUNT} records from {topic}"));
    let mut messages: BTreeMap<usize, OwnedMessage> = BTreeMap::new();

    while messages.len() < RECORD_COUNT {
        deadline.check(|| describe_missing(RECORD_COUNT, &messages.keys().copied().collect()));
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let message = result.unwrap_or_else(|error| panic!("poll failed: {error}"));
        let id = record_id(&message);
        if let Some(first) = messages.insert(id, message.detach()) {
            panic!(
                "record {id} was consumed twice: at partition {} offset {} and at partition {} offset {}",
                first.partition,
                first.offset,
                message.partition(),
                message.offset()
            );
        }
    }

    let quiet = Deadline::after(Duration::from_millis(300), "no message after the last record");
    while !quiet.is_expired() {
        if let Some(result) = consumer.poll(quiet.remaining()) {
            let message = result.unwrap_or_else(|error| panic!("poll failed: {error}"));
            panic!(
                "a message arrived after all {RECORD_COUNT} records: record {} at partition {} offset {}",
                record_id(&message),
                message.partition(),
                message.offset()
            );
        }
    }
    messages
}

/// Checks a consumed message against the record sent for `id` and its
/// delivery. `send_window_ms` is the time span in which the records were
/// sent, which contains every timestamp librdkafka assigned.
fn check_message(
    target: &Target,
    id: usize,
    message: &OwnedMessage,
    topic: &str,
    delivery: &Delivery,
    send_window_ms: (i64, i64),
) {
    let expected = expected_record(id);

    assert_eq!(message.topic, topic, "topic of record {id}");
    assert_eq!(message.partition, delivery.partition, "partition of record {id} against its delivery");
    assert_eq!(message.offset, delivery.offset, "offset of record {id} against its delivery");
    assert_eq!(message.key, expected.key, "key of record {id}");
    assert_eq!(message.value, expected.value, "value of record {id}");
    assert_eq!(message.headers, expected.headers, "headers of record {id}");

    match expected.timestamp {
        Some(timestamp) => {
            assert_eq!(message.timestamp, Timestamp::CreateTime(timestamp), "explicit timestamp of record {id}");
        }
        None => {
            let (after, before) = send_window_ms;
            let Timestamp::CreateTime(timestamp) = message.timestamp else {
                panic!("record {id} has timestamp {:?}, expected a create time", message.timestamp);
            };
            assert!(
                (after..=before).contains(&timestamp),
                "create time {timestamp} of record {id} is outside the send window {after}..={before}"
            );
        }
    }

    // NOTE: librdkafka 2.12.1's mock cluster responds to every produce request
    // with log append time 1234, so on the mock the delivery reports
    // LogAppendTime(1234) and only the real broker's can be compared.
    if let Target::RealBroker(_) = target {
        assert_eq!(delivery.timestamp, message.timestamp, "timestamp of record {id}'s delivery against the message");
    }
}

/// Commits everything consumed, checks the committed offsets, and checks
/// that a second commit with nothing new consumed resolves to `_NO_OFFSET`.
fn check_commit_consumed(consumer: &Consumer, topic: &str, partition_sizes: &[i64]) {
    let future = consumer
        .commit_consumed()
        .unwrap_or_else(|error| panic!("commit_consumed failed to start: {error}"));
    let mut committed = future
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit of everything consumed failed: {error}"));
    committed.sort_by_key(|entry| entry.partition);

    // Each partition's offsets are 0..size, so the next offset to read is size.
    let expected: Vec<TopicPartitionOffset> = partition_sizes
        .iter()
        .enumerate()
        .map(|(partition, size)| TopicPartitionOffset::new(topic, partition as i32, *size))
        .collect();
    assert_eq!(committed, expected, "offsets committed by commit_consumed");

    let repeated = consumer
        .commit_consumed()
        .unwrap_or_else(|error| panic!("second commit_consumed failed to start: {error}"))
        .wait_timeout(WAIT_TIMEOUT);
    match repeated {
        Err(error) => assert_eq!(
            error.code(),
            Some(ErrorCode::NO_OFFSET),
            "second commit_consumed with nothing new consumed: {error}"
        ),
        Ok(offsets) => panic!("second commit_consumed with nothing new consumed succeeded with {offsets:?}"),
    }
}

/// Starts a second consumer in `group` and checks that it resumes at the
/// committed offsets. It must read nothing during a quiet window, and then
/// read a new record on partition 0 at offset `partition_sizes[0]` as its
/// first message. Had the commit been lost, `auto.offset.reset=earliest` would
/// have made it read from offset 0.
fn check_next_consumer_resumes(
    target: &Target,
    producer: &Producer,
    group: &str,
    topic: &str,
    partition_sizes: &[i64],
) {
    let consumer = new_consumer(target, group);
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|error| panic!("second subscribe to {topic} failed: {error}"));

    let quiet = Deadline::after(QUIET_WINDOW, "no message for the second consumer");
    while !quiet.is_expired() {
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of the second consumer failed: {error}"));
            panic!(
                "the second consumer of group {group} read record {} at partition {} offset {}, \
                 although everything up to offsets {partition_sizes:?} was committed",
                record_id(&message),
                message.partition(),
                message.offset()
            );
        }
    }

    let marker_id = RECORD_COUNT.to_string();
    let marker = Record::to(topic).partition(0).value("marker").header("id", &marker_id);
    let delivery = producer
        .send(marker)
        .unwrap_or_else(|error| panic!("send of the marker record failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery of the marker record failed: {error}"));
    assert_eq!((delivery.partition, delivery.offset), (0, partition_sizes[0]), "partition and offset of the marker");

    let deadline = Deadline::after(WAIT_TIMEOUT, format!("the marker record at partition 0 offset {}", delivery.offset));
    let message = loop {
        deadline.check(|| "the second consumer read nothing".to_owned());
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            break result.unwrap_or_else(|error| panic!("poll of the second consumer failed: {error}"));
        }
    };
    assert_eq!(record_id(&message), RECORD_COUNT, "id of the second consumer's first message");
    assert_eq!(message.partition(), 0, "partition of the second consumer's first message");
    assert_eq!(message.offset(), partition_sizes[0], "offset of the second consumer's first message");
    assert_eq!(message.value(), Some(&b"marker"[..]), "value of the second consumer's first message");
}

/// Awaits a delivery future and a commit future on the std-only executor
/// [`block_on`], which polls a future again only after its waker was called.
fn futures_await(target: &Target) {
    let topic = target.create_topic("hl-futures-await", 1);
    // linger.ms keeps the delivery from completing before the first poll, so
    // the delivery future must return Pending and then call its waker.
    let config = target
        .config()
        .set("linger.ms", "100")
        .unwrap_or_else(|error| panic!("invalid linger.ms: {error}"));
    let producer = Producer::new(config).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));

    let future = producer
        .send(Record::to(&topic).key("awaited").value("awaited value"))
        .unwrap_or_else(|error| panic!("send failed: {error}"));
    let delivery = block_on(future, WAIT_TIMEOUT, "the awaited delivery").unwrap_or_else(|error| panic!("awaited delivery failed: {error}"));
    assert_eq!((delivery.topic, delivery.partition, delivery.offset), (topic.as_str(), 0, 0), "awaited delivery");

    let consumer = new_consumer(target, &unique_name("hl-futures-await"));
    consumer
        .subscribe(&[&topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("the awaited record from {topic}"));
    let message = loop {
        deadline.check(|| "the consumer read nothing".to_owned());
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            break result.unwrap_or_else(|error| panic!("poll failed: {error}"));
        }
    };
    assert_eq!(message.key(), Some(&b"awaited"[..]), "key of the consumed record");
    assert_eq!(message.offset(), 0, "offset of the consumed record");

    let committed = block_on(async { consumer.commit_message(&message)?.await }, WAIT_TIMEOUT, "the awaited commit")
        .unwrap_or_else(|error| panic!("awaited commit failed: {error}"));
    assert_eq!(committed, vec![TopicPartitionOffset::new(&topic, 0, 1)], "offsets of the awaited commit");
}

/// Checks that `commit_consumed` with nothing consumed resolves to
/// `_NO_OFFSET` instead of staying pending. It checks twice, first before any
/// subscription and then while subscribed to an empty topic.
fn commit_nothing_consumed(target: &Target) {
    let topic = target.create_topic("hl-commit-nothing", 1);
    let group = unique_name("hl-commit-nothing");
    let consumer = new_consumer(target, &group);

    expect_no_offset(&consumer, "before subscribing");

    consumer
        .subscribe(&[&topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
    let quiet = Deadline::after(Duration::from_millis(500), "no message from the empty topic");
    while !quiet.is_expired() {
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll failed: {error}"));
            panic!("the empty topic {topic} returned a message at offset {}", message.offset());
        }
    }

    expect_no_offset(&consumer, "subscribed to an empty topic");
}

fn expect_no_offset(consumer: &Consumer, case: &str) {
    let bound = Duration::from_secs(10);
    let future = consumer
        .commit_consumed()
        .unwrap_or_else(|error| panic!("commit_consumed {case} failed to start: {error}"));

    match future.wait_timeout(bound) {
        Err(Error::TimedOut { .. }) => {
            panic!("timed out after {bound:?} waiting for commit_consumed {case} to resolve")
        }
        Err(error) => assert_eq!(error.code(), Some(ErrorCode::NO_OFFSET), "error of commit_consumed {case}: {error}"),
        Ok(offsets) => panic!("commit_consumed {case} succeeded with {offsets:?}, expected _NO_OFFSET"),
    }
}

#[test]
fn expected_records_cover_null_and_empty() {
    let records: Vec<ExpectedRecord> = (0..RECORD_COUNT).map(expected_record).collect();
    let keys: BTreeSet<&Option<Vec<u8>>> = records.iter().map(|record| &record.key).collect();

    assert!(records.iter().any(|record| record.key.is_none()), "a record has a null key");
    assert!(records.iter().any(|record| record.key.as_deref() == Some(&b""[..])), "a record has an empty key");
    assert!(records.iter().any(|record| record.value.is_none()), "a record has a null value");
    assert!(records.iter().any(|record| record.value.as_deref() == Some(&b""[..])), "a record has an empty value");
    assert!(
        records.iter().any(|record| record.headers.iter().any(|header| header.value.is_none())),
        "a record has a null header"
    );
    assert!(
        records.iter().any(|record| record.headers.iter().any(|header| header.value.as_deref() == Some(&b""[..]))),
        "a record has an empty header"
    );
    // Every record with a non-empty key has its own key.
    let non_empty_keys = records.iter().filter(|record| record.key.as_ref().is_some_and(|key| !key.is_empty())).count();
    assert_eq!(keys.len(), non_empty_keys + 2, "distinct keys: every non-empty key plus null and empty");
}

/// Checks the leader epoch a consumed message carries: a new topic's
/// leader is in epoch 0 on the real broker.
fn leader_epoch_scenario(target: &Target, expected: Option<i32>) {
    let topic = target.create_topic("hl-epoch", 1);
    let producer = Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    producer
        .send(Record::to(&topic).value("epoch"))
        .unwrap_or_else(|error| panic!("send failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery failed: {error}"));

    let config = target
        .group_config(&unique_name("hl-epoch"))
        .set("auto.offset.reset", "earliest")
        .unwrap_or_else(|error| panic!("invalid setting: {error}"));
    let consumer = Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
    consumer.subscribe(&[&topic]).unwrap_or_else(|error| panic!("subscribe failed: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, "the message with a leader epoch");
    let message = loop {
        deadline.check(|| "no message yet".to_owned());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            break message.unwrap_or_else(|error| panic!("poll failed: {error}"));
        }
    };

    assert_eq!(message.leader_epoch(), expected, "leader epoch of the consumed message");
    assert_eq!(message.detach().leader_epoch, expected, "leader epoch of the detached message");
}

#[test]
fn leader_epoch_real_broker() {
    let Some(target) = Target::real_broker() else { return };
    leader_epoch_scenario(&target, Some(0));
}
