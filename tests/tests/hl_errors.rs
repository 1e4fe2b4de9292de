//! Error paths of the safe `rdkafka-hl` API: arguments rejected before
//! anything is sent, deliveries that cannot succeed, and clients dropped
//! while operations are outstanding. Unreachable brokers are 127.0.0.1:1,
//! a loopback port that nothing listens on.

use std::time::{Duration, Instant};

use rdkafka_e2e::{drop_within, unique_name, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    Config, Consumer, DeliveryFuture, Error, ErrorCode, KafkaError, Producer, Record, TopicPartitionOffset,
};
use rdkafka_ll as ll;

const UNREACHABLE_BROKER: &str = "127.0.0.1:1";

fn unreachable_config() -> Config {
    Config::new()
        .set("bootstrap.servers", UNREACHABLE_BROKER)
        .unwrap_or_else(|error| panic!("invalid bootstrap.servers: {error}"))
}

fn set(config: Config, key: &str, value: &str) -> Config {
    config
        .set(key, value)
        .unwrap_or_else(|error| panic!("invalid setting {key}={value}: {error}"))
}

#[test]
fn send_invalid_topic_rejected() {
    let target = Target::mock();
    let producer = Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    let cases = [("bad\0topic", "it contains a NUL byte"), ("", "it is empty")];

    for (topic, expected_reason) in cases {
        let result = producer.send(Record::to(topic).key("k").value("v")).map_err(Error::from);

        match result {
            Err(Error::InvalidArgument { what, value, reason }) => {
                assert_eq!(what, "topic name", "kind of the rejected argument for topic {topic:?}");
                assert_eq!(value, topic, "value of the rejected argument");
                assert_eq!(reason, expected_reason, "reason for rejecting topic {topic:?}");
            }
            other => panic!("send to topic {topic:?} returned {other:?}, expected Error::InvalidArgument"),
        }
        assert_eq!(producer.in_flight_count(), 0, "in-flight count after the rejected send to {topic:?}");
    }
}

#[test]
fn config_unknown_key_named() {
    let result = Config::new().set("no.such.property", "42");

    let Err(error) = result else {
        panic!("Config::set accepted the unknown key no.such.property");
    };
    let text = error.to_string();
    match error {
        Error::Config { key, value, reason } => {
            assert_eq!(key, "no.such.property", "key in the error");
            // The value of an unknown key may be a secret under a misspelt
            // name, so it is hidden.
            assert_eq!(value, "[hidden]", "value in the error");
            assert!(reason.contains("No such configuration property"), "reason: {reason}");
        }
        other => panic!("Config::set returned {other:?}, expected Error::Config"),
    }
    assert!(text.contains("no.such.property=[hidden]"), "the error message names the key: {text}");
    assert!(!text.contains("42"), "the error message shows the value of an unknown key: {text}");
}

#[test]
fn send_unreachable_times_out() {
    let message_timeout = Duration::from_millis(1_000);
    let config = set(unreachable_config(), "message.timeout.ms", "1000");
    let producer = Producer::new(config).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    let bound = Duration::from_secs(10);

    let started = Instant::now();
    let future = producer
        .send(Record::to("unreachable").value("lost"))
        .unwrap_or_else(|error| panic!("send failed before any delivery attempt: {error}"));
    let result = future.wait_timeout(bound).map_err(Error::from);
    let elapsed = started.elapsed();

    match result {
        Err(Error::Kafka { operation, error }) => {
            assert_eq!(error.code, ErrorCode::MESSAGE_TIMED_OUT, "delivery error code: {error}");
            assert_eq!(operation, "delivery", "operation in the error");
        }
        Err(Error::TimedOut { .. }) => panic!("timed out after {bound:?} waiting for the delivery to fail"),
        other => panic!("delivery to {UNREACHABLE_BROKER} returned {other:?}, expected _MSG_TIMED_OUT"),
    }
    assert!(
        elapsed >= message_timeout,
        "the delivery failed after {elapsed:?}, before message.timeout.ms ({message_timeout:?})"
    );
    assert_eq!(producer.in_flight_count(), 0, "in-flight count after the failed delivery");
}

#[test]
fn send_unknown_partition_errors() {
    let target = Target::mock();
    let topic = target.create_topic("hl-unknown-partition", 2);
    let producer = Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));

    // Before the producer has the topic's metadata, librdkafka queues the
    // record and fails its delivery once the metadata shows no partition 7.
    let future = producer
        .send(Record::to(&topic).partition(7).value("nowhere"))
        .unwrap_or_else(|error| panic!("first send to partition 7 failed at once: {error}"));
    match future.wait_timeout(WAIT_TIMEOUT) {
        Err(error) => assert_eq!(
            error.code(),
            Some(ErrorCode::UNKNOWN_PARTITION),
            "delivery error of the send to partition 7: {error}"
        ),
        Ok(delivery) => panic!("send to partition 7 of a 2-partition topic was delivered: {delivery:?}"),
    }

    let delivery = producer
        .send(Record::to(&topic).partition(1).value("somewhere"))
        .unwrap_or_else(|error| panic!("send to partition 1 failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery to partition 1 failed: {error}"));
    assert_eq!((delivery.partition, delivery.offset), (1, 0), "partition and offset of the valid send");

    // With the metadata known, send itself rejects the partition.
    match producer.send(Record::to(&topic).partition(7).value("nowhere")) {
        Err(error) => assert_eq!(
            error.code(),
            Some(ErrorCode::UNKNOWN_PARTITION),
            "error of the send to partition 7 with known metadata: {error}"
        ),
        Ok(future) => panic!("send to partition 7 with known metadata was queued: {future:?}"),
    }
    assert_eq!(producer.in_flight_count(), 0, "in-flight count after the rejected send");
}

#[test]
fn producer_drop_resolves_futures() {
    const RECORDS: usize = 50;
    let close_timeout = Duration::from_millis(200);

    // The default message.timeout.ms (300 s) keeps every record queued, so
    // only the drop can resolve the futures.
    let mut producer = Producer::new(unreachable_config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    producer.set_close_timeout(close_timeout);
    let futures: Vec<DeliveryFuture> = (0..RECORDS)
        .map(|id| {
            let value = id.to_string();
            producer
                .send(Record::to("unreachable").value(&value))
                .unwrap_or_else(|error| panic!("send of record {id} failed: {error}"))
        })
        .collect();
    assert_eq!(producer.in_flight_count(), RECORDS, "in-flight count before the drop");
    let ready_before = futures.iter().filter(|future| future.is_ready()).count();
    assert_eq!(ready_before, 0, "futures resolved before the drop");

    // The drop flushes for the close timeout, purges the queue and waits up
    // to 5 s for the purge reports.
    let elapsed = drop_within(producer, Duration::from_secs(10), "a producer with 50 undeliverable records");
    assert!(elapsed >= close_timeout, "the drop returned after {elapsed:?}, before the close timeout {close_timeout:?}");

    for (id, future) in futures.into_iter().enumerate() {
        assert!(future.is_ready(), "the future of record {id} is still pending after the drop");
        match future.wait_timeout(Duration::ZERO).map_err(Error::from) {
            Err(Error::Kafka { operation, error }) => {
                assert_eq!(error.code, ErrorCode::PURGE_QUEUE, "error code of record {id}: {error}");
                assert_eq!(operation, "delivery", "operation in the error of record {id}");
            }
            other => panic!("record {id} resolved to {other:?}, expected a _PURGE_QUEUE delivery error"),
        }
    }
}

#[test]
fn consumer_drop_unreachable_bounded() {
    let close_timeout = Duration::from_millis(500);
    let config = set(unreachable_config(), "group.id", &unique_name("hl-unreachable"));
    let mut consumer = Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
    consumer.set_close_timeout(close_timeout);
    consumer
        .subscribe(&["unreachable"])
        .unwrap_or_else(|error| panic!("subscribe failed: {error}"));
    if let Some(result) = consumer.poll(Duration::from_millis(200)) {
        panic!("poll with no reachable broker returned {:?}", result.map(|message| message.detach()));
    }

    let elapsed = drop_within(consumer, Duration::from_secs(5), "a consumer whose broker is unreachable");
    assert!(elapsed <= close_timeout + Duration::from_secs(1), "the drop took {elapsed:?}, close timeout {close_timeout:?}");
}

/// Checks that the close timeout bounds dropping a consumer whose commit
/// waits for an unreachable group coordinator.
///
/// librdkafka 2.12.1's `rd_kafka_destroy_flags` waits for such a commit
/// until `session.timeout.ms` (45 s by default) after the close started,
/// even with `RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE`, so `Consumer::drop`
/// must leave that wait to another thread.
#[test]
fn consumer_drop_pending_commit_bounded() {
    let close_timeout = Duration::from_millis(500);
    let config = set(unreachable_config(), "group.id", &unique_name("hl-pending-commit"));
    let mut consumer = Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
    consumer.set_close_timeout(close_timeout);

    let commit = consumer
        .commit_offsets(&[TopicPartitionOffset::new("unreachable", 0, 5)])
        .unwrap_or_else(|error| panic!("commit_offsets failed to start: {error}"));
    assert!(!commit.is_ready(), "the commit to an unreachable coordinator resolved at once: {commit:?}");

    let elapsed = drop_within(consumer, Duration::from_secs(5), "a consumer with a commit waiting for its coordinator");
    assert!(elapsed <= close_timeout + Duration::from_secs(1), "the drop took {elapsed:?}, close timeout {close_timeout:?}");

    match commit.wait_timeout(Duration::ZERO) {
        Err(Error::Closed { operation }) => assert_eq!(operation, "commit", "operation in the error"),
        other => panic!("the pending commit resolved to {other:?} after the drop, expected Error::Closed"),
    }
}

/// A waker that drops the last handle of a consumer, which then shuts down
/// on its own event thread.
struct DroppingWaker {
    consumer: std::sync::Mutex<Option<std::sync::Arc<Consumer>>>,
}

impl std::task::Wake for DroppingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        let consumer = self.consumer.lock().unwrap().take();
        drop(consumer);
    }
}

/// Checks that a consumer dropped on its own event thread, from the waker
/// of a commit future, shuts down without waiting for commit results that
/// only that thread could deliver.
#[test]
fn consumer_dropped_by_commit_waker() {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Waker};

    let target = Target::mock();
    let topic = target.create_topic("hl-waker-drop", 1);
    let producer = rdkafka_hl::Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    producer
        .send(Record::to(&topic).value("one"))
        .unwrap_or_else(|error| panic!("send failed: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("delivery failed: {error}"));

    let config = set(target.group_config(&unique_name("hl-waker-drop")), "auto.offset.reset", "earliest");
    let mut consumer = Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
    consumer.set_close_timeout(Duration::from_secs(60));
    consumer.subscribe(&[&topic]).unwrap_or_else(|error| panic!("subscribe failed: {error}"));
    let started = Instant::now();
    let offset = loop {
        assert!(started.elapsed() < WAIT_TIMEOUT, "timed out after {WAIT_TIMEOUT:?} waiting for the message");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            break message.unwrap_or_else(|error| panic!("poll failed: {error}")).offset();
        }
    };
    let next = [TopicPartitionOffset::new(&topic, 0, offset + 1)];
    let mut first = consumer.commit_offsets(&next).unwrap_or_else(|error| panic!("commit failed to start: {error}"));
    let second = consumer.commit_offsets(&next).unwrap_or_else(|error| panic!("commit failed to start: {error}"));

    let consumer = Arc::new(consumer);
    let waker_state = Arc::new(DroppingWaker { consumer: Mutex::new(Some(Arc::clone(&consumer))) });
    drop(consumer);
    let waker = Waker::from(Arc::clone(&waker_state));
    let _ = Pin::new(&mut first).poll(&mut Context::from_waker(&waker));
    drop(waker);
    drop(waker_state);

    let bound = Duration::from_secs(10);
    let started = Instant::now();
    let result = second.wait_timeout(bound);
    let elapsed = started.elapsed();
    assert!(
        !matches!(result, Err(Error::TimedOut { .. })),
        "the second commit did not resolve within {bound:?} after the consumer was dropped by a waker"
    );
    assert!(elapsed < bound, "the second commit took {elapsed:?} to resolve");
}

/// Creates a consumer on the unreachable broker, subscribed to the topic
/// `unreachable`, whose client errors go to `handler`.
fn unreachable_consumer_with_handler(handler: impl FnMut(&KafkaError) + Send + 'static) -> Consumer {
    let config = set(unreachable_config(), "group.id", &unique_name("hl-on-error"));
    let mut consumer = Consumer::builder(config)
        .on_error(handler)
        .build()
        .unwrap_or_else(|error| panic!("failed to create a consumer with an error handler: {error}"));
    consumer.set_close_timeout(Duration::from_millis(500));
    consumer
        .subscribe(&["unreachable"])
        .unwrap_or_else(|error| panic!("subscribe failed: {error}"));
    consumer
}

/// Checks that a client error that no message carries, here a refused
/// connection, reaches the consumer's error handler on the polling thread.
/// Without a handler, such errors, a failed authentication among them, are
/// only logged.
#[test]
fn consumer_on_error_reports_unreachable() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let consumer = unreachable_consumer_with_handler(move |error| {
        let thread = std::thread::current().id();
        // The receiver is gone only when the test already ended.
        let _ = sender.send((error.clone(), thread));
    });

    let started = Instant::now();
    let mut received = Vec::new();
    let (error, thread) = loop {
        assert!(
            started.elapsed() < WAIT_TIMEOUT,
            "timed out after {WAIT_TIMEOUT:?} waiting for a _TRANSPORT or _ALL_BROKERS_DOWN error in the handler; it received {received:?}"
        );
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            panic!("poll with no reachable broker returned {:?}", result.map(|message| message.detach()));
        }
        if let Ok((error, thread)) = receiver.try_recv() {
            let code = error.code.raw();
            if code == ll::RD_KAFKA_RESP_ERR__TRANSPORT || code == ll::RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN {
                break (error, thread);
            }
            received.push(error);
        }
    };

    assert_eq!(thread, std::thread::current().id(), "the handler of {error} ran on another thread than the poll");
    assert!(!error.fatal, "the connection error is marked fatal: {error}");
    assert!(error.message.contains(UNREACHABLE_BROKER), "the error names the broker: {error}");
}

/// Gives the consumer an error handler that panics on every call. The
/// panic must stay inside the poll, and the handler must be called again
/// for the next error.
#[test]
fn consumer_on_error_panic_caught() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler_calls = std::sync::Arc::clone(&calls);
    let consumer = unreachable_consumer_with_handler(move |error| {
        handler_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("the error handler panics on purpose on {error}");
    });

    // A refused connection is reported as _TRANSPORT and then as
    // _ALL_BROKERS_DOWN, so the handler is called at least twice.
    let started = Instant::now();
    while calls.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < WAIT_TIMEOUT,
            "timed out after {WAIT_TIMEOUT:?} waiting for a second call of the panicking handler; it was called {} times",
            calls.load(std::sync::atomic::Ordering::SeqCst)
        );
        if let Some(result) = consumer.poll(Duration::from_millis(100)) {
            panic!("poll with no reachable broker returned {:?}", result.map(|message| message.detach()));
        }
    }
}
