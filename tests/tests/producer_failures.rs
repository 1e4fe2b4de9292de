//! Failures of the `rdkafka-hl` producer. The tests cover batches that
//! time out or that the broker rejects, producers dropped with messages
//! queued or in flight, and oversized messages. They also cover
//! configuration that would turn delivery reports off, client error
//! handlers, serializers, and error codes that librdkafka has no name for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_e2e::{drop_within, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    AdminClient, Config, Delivery, DeliveryFuture, Error, ErrorCode, KafkaError, MockCluster, OwnedPayload, Producer,
    Record, SerializingProducer,
};
use rdkafka_ll as ll;

/// The Kafka protocol's API key of Produce requests.
const PRODUCE_API_KEY: i16 = 0;

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

/// Starts a mock cluster of `brokers` brokers as a target.
fn mock_target(brokers: usize) -> Target {
    let cluster = MockCluster::new(brokers)
        .unwrap_or_else(|error| panic!("failed to start a mock cluster of {brokers} brokers: {error}"));
    Target::Mock(cluster)
}

fn set_brokers(cluster: &MockCluster, brokers: i32, up: bool) {
    for broker_id in 1..=brokers {
        let result = if up {
            cluster.set_broker_up(broker_id)
        } else {
            cluster.set_broker_down(broker_id)
        };
        result.unwrap_or_else(|error| panic!("failed to set mock broker {broker_id} up={up}: {error}"));
    }
}

/// Sends one record to each partition and waits for its delivery, so that
/// the producer has the topic's metadata and a connection to every leader.
fn prime_partitions(producer: &Producer, topic: &str, partitions: i32) {
    for partition in 0..partitions {
        producer
            .send(Record::to(topic).partition(partition).value("prime"))
            .unwrap_or_else(|error| panic!("send of the priming record to partition {partition} failed: {error}"))
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of the priming record to partition {partition} failed: {error}"));
    }
}

/// Returns the owned value of record `id`, 100 to 355 bytes that differ
/// per id.
fn failing_value(id: usize) -> Vec<u8> {
    (0..100 + id % 256).map(|index| (index * 13 + id) as u8).collect()
}

/// Returns the owned key of record `id` for even ids, which a failure hands
/// back, and `None` for odd ids, whose keys are borrowed.
fn failing_key(id: usize) -> Option<Vec<u8>> {
    (id % 2 == 0).then(|| format!("key-{id}").into_bytes())
}

/// Sends `count` records with owned values, round-robin over `partitions`.
fn send_failing_records(producer: &Producer, topic: &str, count: usize, partitions: i32) -> Vec<DeliveryFuture> {
    (0..count)
        .map(|id| {
            let partition = (id % partitions as usize) as i32;
            let borrowed_key = format!("key-{id}");
            let record = Record::to(topic).partition(partition).value(failing_value(id));
            let record = match failing_key(id) {
                Some(key) => record.key(key),
                None => record.key(borrowed_key.as_str()),
            };
            producer
                .send(record)
                .unwrap_or_else(|error| panic!("send of record {id} failed at once: {error}"))
        })
        .collect()
}

/// Waits for every future, checks that each failed with `expected` and
/// handed back its owned key and value byte for byte, and returns how long
/// the last one took from `sent_at`.
fn expect_all_failed(futures: Vec<DeliveryFuture>, expected: ErrorCode, sent_at: Instant) -> Duration {
    let deadline = Deadline::after(
        WAIT_TIMEOUT,
        format!("{} deliveries to fail with {expected}", futures.len()),
    );
    for (id, future) in futures.into_iter().enumerate() {
        let error = match future.wait_timeout(deadline.remaining()) {
            Ok(delivery) => panic!("record {id} was delivered, expected it to fail with {expected}: {delivery:?}"),
            Err(error) if matches!(error.error, Error::TimedOut { .. }) => {
                deadline.fail(format!("record {id} has no delivery result"))
            }
            Err(error) => error,
        };
        assert_eq!(
            error.code(),
            Some(expected),
            "error code of record {id}: {}",
            error.error
        );
        match &error.error {
            Error::Kafka { operation, .. } => {
                assert_eq!(*operation, "delivery", "operation in the error of record {id}")
            }
            other => panic!("record {id} failed with {other:?}, expected Error::Kafka"),
        }
        let value = error.value.map(OwnedPayload::into_vec);
        assert_eq!(
            value,
            Some(failing_value(id)),
            "owned value handed back for record {id}"
        );
        let key = error.key.map(OwnedPayload::into_vec);
        assert_eq!(key, failing_key(id), "owned key handed back for record {id}");
    }
    sent_at.elapsed()
}

const FAILING_RECORDS: usize = 200;
const FAILING_BROKERS: i32 = 3;
const FAILING_PARTITIONS: i32 = 6;

/// Takes all three brokers down once the producer has the topic's metadata
/// and sends 200 records across its six partitions. Every future must fail
/// with `_MSG_TIMED_OUT` after `message.timeout.ms` and hand its owned key
/// and value back.
#[test]
fn failed_batches_time_out() {
    let message_timeout = Duration::from_millis(1_500);
    let target = mock_target(FAILING_BROKERS as usize);
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-timeout", FAILING_PARTITIONS);
    let config = set(
        target.config(),
        "message.timeout.ms",
        &message_timeout.as_millis().to_string(),
    );
    // The record sent after the outage must reach a reconnected broker
    // within message.timeout.ms.
    let config = set(config, "reconnect.backoff.max.ms", "200");
    let producer = new_producer(config);
    prime_partitions(&producer, &topic, FAILING_PARTITIONS);

    set_brokers(cluster, FAILING_BROKERS, false);
    let sent_at = Instant::now();
    let futures = send_failing_records(&producer, &topic, FAILING_RECORDS, FAILING_PARTITIONS);
    let before_timeout = Duration::from_millis(1_000);
    thread::sleep(before_timeout.saturating_sub(sent_at.elapsed()));
    let resolved_early = futures.iter().filter(|future| future.is_ready()).count();
    assert_eq!(
        resolved_early, 0,
        "futures resolved within {before_timeout:?} of sending, before message.timeout.ms ({message_timeout:?})"
    );
    let elapsed = expect_all_failed(futures, ErrorCode::MESSAGE_TIMED_OUT, sent_at);

    assert!(
        elapsed >= message_timeout,
        "the deliveries failed after {elapsed:?}, before message.timeout.ms ({message_timeout:?})"
    );
    assert_eq!(
        producer.in_flight_count(),
        0,
        "in-flight count after every delivery failed"
    );

    set_brokers(cluster, FAILING_BROKERS, true);
    let delivery = producer
        .send(Record::to(&topic).partition(0).value("after the outage"))
        .unwrap_or_else(|error| panic!("send after the brokers came back failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery after the brokers came back failed: {error}"));
    assert_eq!(
        (delivery.partition, delivery.offset),
        (0, 1),
        "partition and offset of the record after the outage"
    );
}

/// Makes the mock reject the next Produce requests with
/// `TOPIC_AUTHORIZATION_FAILED`, which librdkafka does not retry. Then it
/// sends 200 records, batched by `linger.ms`, over six partitions. Each
/// failed batch reports many messages at once, and every future must fail
/// with the broker's code and hand back its own key and value.
#[test]
fn rejected_batches_hand_back() {
    let target = mock_target(FAILING_BROKERS as usize);
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-rejected", FAILING_PARTITIONS);
    let config = set(target.config(), "linger.ms", "50");
    let producer = new_producer(config);
    prime_partitions(&producer, &topic, FAILING_PARTITIONS);

    let rejection = ll::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    let errors = [rejection; 50];
    // SAFETY: the cluster pointer is valid while `cluster` lives, and the
    // array contains `errors.len()` codes, which the mock copies.
    unsafe {
        ll::rd_kafka_mock_push_request_errors_array(cluster.as_ptr(), PRODUCE_API_KEY, errors.len(), errors.as_ptr())
    };
    let sent_at = Instant::now();
    let futures = send_failing_records(&producer, &topic, FAILING_RECORDS, FAILING_PARTITIONS);
    expect_all_failed(futures, ErrorCode::from_raw(rejection), sent_at);
    assert_eq!(
        producer.in_flight_count(),
        0,
        "in-flight count after every delivery failed"
    );

    // SAFETY: as above.
    unsafe { ll::rd_kafka_mock_clear_request_errors(cluster.as_ptr(), PRODUCE_API_KEY) };
    let other_topic = target.create_topic("producer-rejected-other", 1);
    let delivery = producer
        .send(Record::to(&other_topic).value("after the rejections"))
        .unwrap_or_else(|error| panic!("send to another topic after the rejections failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery to another topic after the rejections failed: {error}"));
    assert_eq!(delivery.offset, 0, "offset of the record to another topic");
}

const DROPPED_RECORDS: usize = 100;

/// How a record's future resolved when its producer was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DropOutcome {
    PurgedQueued,
    PurgedInFlight,
    Closed,
}

/// Waits for the futures of a dropped producer, checks that each resolved
/// with a purge error or `Error::Closed` and handed back its owned value,
/// and counts the outcomes.
fn expect_dropped(futures: Vec<DeliveryFuture>) -> BTreeMap<DropOutcome, usize> {
    let mut outcomes = BTreeMap::new();
    for (id, future) in futures.into_iter().enumerate() {
        assert!(
            future.is_ready(),
            "the future of record {id} is still pending after the drop returned"
        );
        let error = match future.wait_timeout(Duration::ZERO) {
            Ok(delivery) => panic!("record {id} was delivered although the producer was dropped: {delivery:?}"),
            Err(error) => error,
        };
        let outcome = match (&error.error, error.code()) {
            (Error::Closed { .. }, _) => DropOutcome::Closed,
            (_, Some(ErrorCode::PURGE_QUEUE)) => DropOutcome::PurgedQueued,
            (_, Some(ErrorCode::PURGE_INFLIGHT)) => DropOutcome::PurgedInFlight,
            (other, _) => panic!("record {id} resolved with {other:?}, expected a purge error or Error::Closed"),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
        let value = error.value.map(OwnedPayload::into_vec);
        assert_eq!(
            value,
            Some(failing_value(id)),
            "owned value handed back for record {id} ({outcome:?})"
        );
    }
    outcomes
}

/// Bound on a drop with a short close timeout. The drop waits up to 5 s
/// for purge reports, but librdkafka 2.12.1 reports purged messages at
/// once, whether queued, partly sent or waiting for a response
/// (`rd_kafka_broker_handle_purge_queues`).
const DROP_BOUND: Duration = Duration::from_secs(8);

/// Drops a producer whose only broker is down, with 100 owned records
/// queued. The drop must return after the close timeout, and every future
/// must resolve with `_PURGE_QUEUE` and hand back its value.
#[test]
fn drop_purges_queued() {
    let close_timeout = Duration::from_millis(300);
    let target = Target::mock();
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-drop-queued", 2);
    let mut producer = new_producer(target.config());
    producer.set_close_timeout(close_timeout);
    prime_partitions(&producer, &topic, 2);

    cluster
        .set_broker_down(1)
        .unwrap_or_else(|error| panic!("failed to take broker 1 down: {error}"));
    let futures = send_failing_records(&producer, &topic, DROPPED_RECORDS, 2);
    let elapsed = drop_within(
        producer,
        DROP_BOUND,
        "a producer with 100 records queued for a down broker",
    );

    assert!(
        elapsed >= close_timeout,
        "the drop returned after {elapsed:?}, before the close timeout {close_timeout:?}"
    );
    let outcomes = expect_dropped(futures);
    assert_eq!(
        outcomes,
        BTreeMap::from([(DropOutcome::PurgedQueued, DROPPED_RECORDS)]),
        "outcomes of the dropped records"
    );
}

/// Drops a producer while one request of at most 10 records waits for a
/// broker that responds after 5 s, and the other records wait behind it
/// (`max.in.flight=1`, `batch.num.messages=10`). The drop must return soon
/// after the close timeout. Every future must resolve, the in-flight ones
/// with `_PURGE_INFLIGHT`, and hand back its value.
#[test]
fn drop_purges_in_flight() {
    let close_timeout = Duration::from_millis(500);
    let target = Target::mock();
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-drop-in-flight", 1);
    let config = set(target.config(), "max.in.flight", "1");
    let config = set(config, "batch.num.messages", "10");
    let mut producer = new_producer(config);
    producer.set_close_timeout(close_timeout);
    prime_partitions(&producer, &topic, 1);

    // SAFETY: the cluster pointer is valid while `cluster` lives.
    let code = unsafe { ll::rd_kafka_mock_broker_set_rtt(cluster.as_ptr(), 1, 5_000) };
    assert_eq!(
        code,
        ll::RD_KAFKA_RESP_ERR_NO_ERROR,
        "setting a 5 s round-trip time on broker 1"
    );
    let futures = send_failing_records(&producer, &topic, DROPPED_RECORDS, 1);
    let elapsed = drop_within(
        producer,
        DROP_BOUND,
        "a producer with records in flight to a slow broker",
    );

    assert!(
        elapsed >= close_timeout,
        "the drop returned after {elapsed:?}, before the close timeout {close_timeout:?}"
    );
    assert!(
        elapsed < close_timeout + Duration::from_secs(2),
        "the drop took {elapsed:?}; purged requests should report at once (close timeout {close_timeout:?})"
    );
    let outcomes = expect_dropped(futures);
    // One request of at most batch.num.messages records is in flight.
    let in_flight = outcomes.get(&DropOutcome::PurgedInFlight).copied().unwrap_or(0);
    assert!(
        (1..=10).contains(&in_flight),
        "records purged in flight: {in_flight}, expected 1 to 10; outcomes: {outcomes:?}"
    );
    assert_eq!(
        outcomes.values().sum::<usize>(),
        DROPPED_RECORDS,
        "dropped records with an outcome"
    );
}

/// Returns an owned value of 5,000 bytes.
fn oversized_value() -> Vec<u8> {
    failing_value(7).into_iter().cycle().take(5_000).collect()
}

/// Checks that a producer whose `message.max.bytes` is 2,000 rejects a
/// 5,000-byte value at once and hands the record back unchanged.
#[test]
fn oversized_rejected_mock() {
    let target = Target::mock();
    let topic = target.create_topic("producer-oversized", 1);
    let producer = new_producer(set(target.config(), "message.max.bytes", "2000"));
    let value = oversized_value();

    let error = match producer.send(Record::to(&topic).key("big").value(value.clone())) {
        Ok(future) => panic!(
            "send of a {}-byte value with message.max.bytes=2000 was queued: {future:?}",
            value.len()
        ),
        Err(error) => error,
    };
    assert_eq!(
        error.code(),
        Some(ErrorCode::MESSAGE_SIZE_TOO_LARGE),
        "error of the oversized send: {}",
        error.error
    );
    assert_eq!(error.record.topic(), topic, "topic of the handed-back record");
    assert_eq!(
        error.record.key_bytes(),
        Some(&b"big"[..]),
        "key of the handed-back record"
    );
    assert_eq!(
        error.record.value_bytes(),
        Some(value.as_slice()),
        "value of the handed-back record"
    );
    assert_eq!(producer.in_flight_count(), 0, "in-flight count after the rejected send");

    let delivery = producer
        .send(Record::to(&topic).value(&value[..1_000]))
        .unwrap_or_else(|error| panic!("send of a 1,000-byte value failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery of a 1,000-byte value failed: {error}"));
    assert_eq!(delivery.offset, 0, "offset of the first record that fits");
}

/// Sends a 5,000-byte value to a topic whose `max.message.bytes` is 1,000,
/// from a producer that allows 1,000,000 bytes (librdkafka's default). The
/// broker (Kafka 4.1.1 from `tests/broker`) rejects the batch with
/// `MESSAGE_TOO_LARGE` (code 10), which librdkafka names
/// `MSG_SIZE_TOO_LARGE`. The future must fail with it and hand the value
/// back.
#[test]
fn oversized_real_broker() {
    let Some(target) = Target::real_broker() else {
        return;
    };
    let topic = unique_name("producer-oversized");
    let admin =
        AdminClient::new(target.config()).unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
    admin
        .create_topic_with_configs(&topic, 1, 1, &[("max.message.bytes", "1000")], WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("failed to create topic {topic} with max.message.bytes=1000: {error}"));
    let producer = new_producer(target.config());
    let value = oversized_value();

    let result = producer
        .send(Record::to(&topic).value(value.clone()))
        .unwrap_or_else(|error| panic!("send of a {}-byte value failed at once: {error}", value.len()))
        .wait_timeout(WAIT_TIMEOUT);
    let error = match result {
        Ok(delivery) => panic!(
            "a {}-byte value was delivered to a topic with max.message.bytes=1000: {delivery:?}",
            value.len()
        ),
        Err(error) => error,
    };
    assert_eq!(
        error.code(),
        Some(ErrorCode::MESSAGE_SIZE_TOO_LARGE),
        "error of the oversized delivery: {}",
        error.error
    );
    assert_eq!(
        error.value.map(OwnedPayload::into_vec),
        Some(value),
        "owned value handed back"
    );

    let delivery = producer
        .send(Record::to(&topic).value("small"))
        .unwrap_or_else(|error| panic!("send of a small value failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery of a small value failed: {error}"));
    assert_eq!(delivery.offset, 0, "offset of the small record");
}

const REPORT_ONLY_ERROR_RECORDS: usize = 100;

/// Sets `delivery.report.only.error=true`, which would make librdkafka
/// report only failed messages. Every successful send must still resolve
/// with its delivery.
#[test]
fn report_only_error_ignored() {
    let target = Target::mock();
    let topic = target.create_topic("producer-only-error", 2);
    let producer = new_producer(set(target.config(), "delivery.report.only.error", "true"));

    let futures: Vec<DeliveryFuture> = (0..REPORT_ONLY_ERROR_RECORDS)
        .map(|id| {
            let partition = (id % 2) as i32;
            producer
                .send(Record::to(&topic).partition(partition).value("reported"))
                .unwrap_or_else(|error| panic!("send of record {id} failed: {error}"))
        })
        .collect();
    let deadline = Deadline::after(
        WAIT_TIMEOUT,
        format!("{REPORT_ONLY_ERROR_RECORDS} deliveries with delivery.report.only.error=true"),
    );
    let mut deliveries: Vec<Delivery> = Vec::new();
    for (id, future) in futures.into_iter().enumerate() {
        match future.wait_timeout(deadline.remaining()) {
            Ok(delivery) => deliveries.push(delivery),
            Err(error) if matches!(error.error, Error::TimedOut { .. }) => {
                deadline.fail(format!("record {id} has no delivery result"))
            }
            Err(error) => panic!("delivery of record {id} failed: {error}"),
        }
    }

    for (id, delivery) in deliveries.iter().enumerate() {
        let expected = ((id % 2) as i32, (id / 2) as i64);
        assert_eq!(
            (delivery.partition, delivery.offset),
            expected,
            "partition and offset of record {id}"
        );
    }
    assert_eq!(producer.in_flight_count(), 0, "in-flight count after every delivery");
}

/// Codes that a client error handler may receive when its only broker goes
/// down: `_TRANSPORT` for the closed connection, `_ALL_BROKERS_DOWN` once
/// no broker is left.
fn is_broker_down_error(error: &KafkaError) -> bool {
    let code = error.code.raw();
    code == ll::RD_KAFKA_RESP_ERR__TRANSPORT || code == ll::RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
}

/// Creates a producer for `target` that connects again at most 200 ms
/// after a broker comes back, with `handler` as its error handler.
fn producer_with_handler(target: &Target, handler: impl FnMut(&KafkaError) + Send + 'static) -> Producer {
    let config = set(target.config(), "reconnect.backoff.max.ms", "200");
    Producer::builder(config)
        .on_error(handler)
        .build()
        .unwrap_or_else(|error| panic!("failed to create a producer with an error handler: {error}"))
}

fn send_and_wait(producer: &Producer, topic: &str, value: &str) -> Delivery {
    producer
        .send(Record::to(topic).value(value))
        .unwrap_or_else(|error| panic!("send of the record {value:?} failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery of the record {value:?} failed: {error}"))
}

/// Takes the only broker down and checks that the error handler receives
/// `_TRANSPORT` or `_ALL_BROKERS_DOWN` on the event thread, and that sends
/// are delivered again once the broker is back.
#[test]
fn on_error_brokers_down() {
    let target = Target::mock();
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-on-error", 1);
    let (sender, receiver) = mpsc::channel();
    let producer = producer_with_handler(&target, move |error| {
        let thread_name = thread::current().name().map(str::to_owned);
        // The receiver is gone only when the test already ended.
        let _ = sender.send((error.clone(), thread_name));
    });
    assert_eq!(
        send_and_wait(&producer, &topic, "before").offset,
        0,
        "offset of the record before the outage"
    );

    cluster
        .set_broker_down(1)
        .unwrap_or_else(|error| panic!("failed to take broker 1 down: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, "a _TRANSPORT or _ALL_BROKERS_DOWN error in the handler");
    let mut received = Vec::new();
    let (error, thread_name) = loop {
        match receiver.recv_timeout(deadline.remaining()) {
            Ok((error, thread_name)) if is_broker_down_error(&error) => break (error, thread_name),
            Ok((error, _)) => received.push(error),
            Err(_) => deadline.fail(format!("the handler received only {received:?}")),
        }
    };
    assert_eq!(
        thread_name.as_deref(),
        Some("rdkafka-producer"),
        "thread that ran the handler for {error}"
    );
    assert!(!error.fatal, "the broker-down error is marked fatal: {error}");
    assert!(
        producer.fatal_error().is_none(),
        "fatal error after the outage: {:?}",
        producer.fatal_error()
    );

    cluster
        .set_broker_up(1)
        .unwrap_or_else(|error| panic!("failed to bring broker 1 up: {error}"));
    assert_eq!(
        send_and_wait(&producer, &topic, "after").offset,
        1,
        "offset of the record after the outage"
    );
}

/// Gives the producer an error handler that panics on every call and takes
/// the broker down twice. The handler must be called in both outages and
/// sends must be delivered after each, which shows that the panics neither
/// stop the event thread nor remove the handler.
#[test]
fn on_error_panic_survives() {
    let target = Target::mock();
    let cluster = mock_cluster(&target);
    let topic = target.create_topic("producer-on-error-panic", 1);
    let calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = Arc::clone(&calls);
    let producer = producer_with_handler(&target, move |error| {
        handler_calls.fetch_add(1, Ordering::SeqCst);
        panic!("the error handler panics on purpose on {error}");
    });
    assert_eq!(
        send_and_wait(&producer, &topic, "first").offset,
        0,
        "offset of the first record"
    );

    for outage in 1..=2 {
        let calls_before = calls.load(Ordering::SeqCst);
        cluster
            .set_broker_down(1)
            .unwrap_or_else(|error| panic!("failed to take broker 1 down in outage {outage}: {error}"));
        let deadline = Deadline::after(
            WAIT_TIMEOUT,
            format!("a call of the panicking handler in outage {outage}"),
        );
        while calls.load(Ordering::SeqCst) == calls_before {
            deadline.check(|| format!("the handler was called {calls_before} times before the outage and not since"));
            thread::sleep(Duration::from_millis(10));
        }
        cluster
            .set_broker_up(1)
            .unwrap_or_else(|error| panic!("failed to bring broker 1 up in outage {outage}: {error}"));

        let delivery = send_and_wait(&producer, &topic, &format!("after outage {outage}"));
        assert_eq!(delivery.offset, outage, "offset of the record after outage {outage}");
    }
    assert!(
        producer.fatal_error().is_none(),
        "fatal error after the panics: {:?}",
        producer.fatal_error()
    );
}

/// Serializes counts as 8 big-endian bytes. Negative counts fail and zero
/// panics.
fn serialize_count(count: &i64) -> Result<Vec<u8>, String> {
    match *count {
        0 => panic!("a count of zero panics on purpose"),
        count if count < 0 => Err(format!("negative count {count}")),
        count => Ok(count.to_be_bytes().to_vec()),
    }
}

/// Checks that a failing and a panicking value serializer, and a failing
/// key serializer, make `send` return `Error::Serialization` without
/// sending anything, and that the producer then still delivers.
#[test]
fn serializer_errors() {
    let target = Target::mock();
    let topic = target.create_topic("producer-serializer", 1);
    let key_serializer = |key: &str| -> Result<Vec<u8>, &'static str> {
        if key.is_empty() {
            Err("empty key")
        } else {
            Ok(key.as_bytes().to_vec())
        }
    };
    let producer = SerializingProducer::new(new_producer(target.config()), key_serializer, serialize_count);

    let cases: [(&str, i64, &str, &str); 3] = [
        ("negative", -3, "value", "negative count -3"),
        (
            "zero",
            0,
            "value",
            "the serializer panicked: a count of zero panics on purpose",
        ),
        ("", 5, "key", "empty key"),
    ];
    for (key, count, expected_part, expected_reason) in cases {
        match producer.send(&topic, Some(key), Some(&count)) {
            Err(Error::Serialization { part, reason }) => {
                assert_eq!(
                    part, expected_part,
                    "serialized part that failed for key {key:?} and count {count}"
                );
                assert_eq!(reason, expected_reason, "reason for key {key:?} and count {count}");
            }
            Err(other) => {
                panic!("send with key {key:?} and count {count} failed with {other:?}, expected Error::Serialization")
            }
            Ok(future) => panic!("send with key {key:?} and count {count} was queued: {future:?}"),
        }
    }
    assert_eq!(
        producer.producer().in_flight_count(),
        0,
        "in-flight count after the failed serializations"
    );

    let delivery = producer
        .send(&topic, Some("valid"), Some(&42))
        .unwrap_or_else(|error| panic!("send with a valid count failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery with a valid count failed: {error}"));
    // Offset 0 shows that none of the failed sends reached the topic.
    assert_eq!(delivery.offset, 0, "offset of the first valid record");
}

/// Raw codes that librdkafka 2.12.1 has no name for.
const UNKNOWN_CODES: [i32; 4] = [-12345, 12345, i32::MIN, i32::MAX];

/// Checks that codes that librdkafka has no name for keep their raw value and
/// that naming, describing and formatting them does not panic.
#[test]
fn unknown_error_codes() {
    for raw in UNKNOWN_CODES {
        let code = ErrorCode::from_raw(raw);

        assert_eq!(code.raw(), raw, "raw value of ErrorCode::from_raw({raw})");
        assert!(!code.is_ok(), "ErrorCode::from_raw({raw}) is NO_ERROR");
        let name = code.name().into_owned();
        assert!(name.contains(&raw.to_string()), "name of code {raw}: {name:?}");
        let description = code.description().into_owned();
        assert!(
            description.contains(&raw.to_string()),
            "description of code {raw}: {description:?}"
        );
        assert_eq!(code.to_string(), name, "Display of code {raw}");
        assert_eq!(format!("{code:?}"), format!("{name}({raw})"), "Debug of code {raw}");

        let error = KafkaError::from_code(code);
        assert_eq!(error.code, code, "code of KafkaError::from_code({raw})");
        assert_eq!(error.message, description, "message of KafkaError::from_code({raw})");
        assert!(!error.fatal, "KafkaError::from_code({raw}) is fatal");
        let text = Error::Kafka {
            operation: "delivery",
            error,
        }
        .to_string();
        assert!(
            text.contains(name.as_str()),
            "message of an Error::Kafka with code {raw}: {text:?}"
        );
    }
}

/// Checks that the name `ErrorCode::name` returns for an unknown code keeps
/// its text when another unknown code is named on the same thread.
///
/// librdkafka 2.12.1 formats the names of unknown codes into one
/// thread-local buffer (`static RD_TLS char ret[32]` in `rd_kafka_err2name`
/// and `rd_kafka_err2str`), so the next unknown code overwrites the text,
/// and the thread's exit frees it; the name must not borrow that buffer.
#[test]
fn unknown_code_name_stable() {
    let first_name = ErrorCode::from_raw(-12345).name();
    let first_description = ErrorCode::from_raw(-12345).description();
    let name_copy = first_name.clone().into_owned();
    let description_copy = first_description.clone().into_owned();

    let _ = ErrorCode::from_raw(-678).name();
    let _ = ErrorCode::from_raw(-678).description();

    assert_eq!(first_name, name_copy, "name of code -12345 after naming code -678");
    assert_eq!(
        first_description, description_copy,
        "description of code -12345 after describing code -678"
    );
}
