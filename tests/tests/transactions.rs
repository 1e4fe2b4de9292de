//! Transactions of the `rdkafka-hl` producer on the mock cluster and on a
//! real broker. The tests cover which messages `read_committed` and
//! `read_uncommitted` consumers see, purges on abort, consumer offsets sent
//! in a transaction, a copy loop that aborts every second transaction,
//! fencing by a newer producer, and the recovery classification of errors.
//!
//! librdkafka 2.12.1's mock cluster implements transactions only in part,
//! as its `rdkafka_mock_handlers.c` shows and as running each scenario on
//! it confirmed. It writes no transaction markers and reports no aborted
//! transactions in Fetch responses, so a `read_committed` consumer also
//! reads aborted messages. Its TxnOffsetCommit handler discards the offsets.
//! Its InitProducerId hands each producer a new producer id instead of
//! bumping the epoch of the old one, so it fences no producer. The
//! scenarios that depend on those parts run on the real broker only.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka_e2e::{unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    AdminClient, AdminOptions, Config, Consumer, Delivery, DeliveryFuture, Error, ErrorCode, KafkaError,
    MockCluster, OwnedMessage, Producer, Record, Recovery, TopicPartition, TopicPartitionOffset, OFFSET_BEGINNING,
    OFFSET_INVALID,
};
use rdkafka_ll as ll;

/// Bound of each blocking transactional call, such as a commit.
const TRANSACTION_TIMEOUT: Duration = WAIT_TIMEOUT;

/// The producer was fenced by a newer one with the same `transactional.id`.
const FENCED: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR__FENCED);
/// The call is not valid in the producer's transactional state (`_STATE`).
const INVALID_STATE: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR__STATE);
/// The producer has no `transactional.id`.
const NOT_CONFIGURED: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR__NOT_CONFIGURED);

/// How long one `Consumer::poll` blocks, kept short so that deadlines are
/// checked often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a reader must stay without messages after it got all it
/// expected, to catch messages that must not be there.
const QUIET_WINDOW: Duration = Duration::from_millis(500);

const READ_COMMITTED: &str = "read_committed";
const READ_UNCOMMITTED: &str = "read_uncommitted";

/// Partitions of the copy loop's input and output topics.
const COPY_PARTITIONS: i32 = 2;
/// Input records per partition of the copy loop.
const COPY_RECORDS_PER_PARTITION: i64 = 12;
/// Most input records that one transaction of the copy loop copies.
const COPY_BATCH: usize = 5;

#[test]
fn visibility_mock() {
    visibility(&mock_target());
}

#[test]
fn visibility_real_broker() {
    if let Some(target) = Target::real_broker() {
        visibility(&target);
    }
}

#[test]
fn abort_purges_queued_mock() {
    abort_purges_queued(&mock_target());
}

#[test]
fn abort_purges_queued_real_broker() {
    if let Some(target) = Target::real_broker() {
        abort_purges_queued(&target);
    }
}

// NOTE: no mock variant, because librdkafka 2.12.1's mock cluster discards
// the offsets of TxnOffsetCommit, so `committed` never changes there.
#[test]
fn sent_offsets_real_broker() {
    if let Some(target) = Target::real_broker() {
        sent_offsets(&target);
    }
}

// NOTE: no mock variant, because the mock neither stores the sent offsets
// that the rewind reads nor hides aborted copies from read_committed readers.
#[test]
fn copy_loop_real_broker() {
    if let Some(target) = Target::real_broker() {
        copy_loop(&target);
    }
}

// NOTE: no mock variant, because the mock gives the second producer a new
// producer id and leaves the first one unfenced.
#[test]
fn fencing_real_broker() {
    if let Some(target) = Target::real_broker() {
        fencing(&target);
    }
}

/// Starts a mock cluster of 3 brokers whose groups rebalance at once, so
/// that the transaction coordinator, the group coordinator and the
/// partition leaders may sit on different brokers, as in a real cluster.
fn mock_target() -> Target {
    let cluster = MockCluster::new(3)
        .unwrap_or_else(|error| panic!("failed to start a mock cluster of 3 brokers: {error}"));
    cluster.set_group_initial_rebalance_delay(Duration::ZERO);
    Target::Mock(cluster)
}

fn set(config: Config, key: &str, value: &str) -> Config {
    config
        .set(key, value)
        .unwrap_or_else(|error| panic!("invalid setting {key}={value}: {error}"))
}

/// Creates a producer with `transactional.id` set to `transactional_id`
/// and the extra `settings`, and initializes its transactions.
fn transactional_producer(target: &Target, transactional_id: &str, settings: &[(&str, &str)]) -> Producer {
    let mut config = set(target.config(), "transactional.id", transactional_id);
    for (key, value) in settings {
        config = set(config, key, value);
    }
    let producer = Producer::new(config).unwrap_or_else(|error| {
        panic!("failed to create the producer with transactional.id {transactional_id}: {error}")
    });
    producer
        .init_transactions(TRANSACTION_TIMEOUT)
        .unwrap_or_else(|error| panic!("init_transactions for transactional.id {transactional_id} failed: {error}"));
    producer
}

/// Creates a consumer in `group` with manual commits and the given
/// `isolation.level`.
fn new_consumer(target: &Target, group: &str, isolation: &str) -> Consumer {
    let config = target.group_config(group);
    let config = set(config, "isolation.level", isolation);
    let config = set(config, "enable.auto.commit", "false");
    let config = set(config, "auto.offset.reset", "earliest");
    Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer in group {group}: {error}"))
}

/// Waits for the delivery of the message that `description` names and
/// returns it.
fn wait_delivery(future: DeliveryFuture, description: &str) -> Delivery {
    match future.wait_timeout(WAIT_TIMEOUT) {
        Ok(delivery) => delivery,
        Err(error) if matches!(error.error, Error::TimedOut { .. }) => {
            panic!("timed out after {WAIT_TIMEOUT:?} waiting for the delivery of {description}")
        }
        Err(error) => panic!("delivery of {description} failed: {error}"),
    }
}

/// A message as a reader saw it: partition, offset and value as text.
type ReadRecord = (i32, i64, String);

/// Reads partitions `0..partitions` of `topic` from their beginning with a
/// fresh consumer of the given `isolation.level` until `count` messages
/// arrived, then fails if another one arrives within [`QUIET_WINDOW`].
/// Returns the messages in the order read.
fn read_topic(target: &Target, topic: &str, partitions: i32, isolation: &str, count: usize) -> Vec<ReadRecord> {
    let consumer = new_consumer(target, &unique_name("txn-reader"), isolation);
    let start: Vec<TopicPartitionOffset> =
        (0..partitions).map(|partition| TopicPartitionOffset::new(topic, partition, OFFSET_BEGINNING)).collect();
    consumer
        .assign(&start)
        .unwrap_or_else(|error| panic!("assign of {topic} to the {isolation} reader failed: {error}"));

    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{count} messages of {topic} for a {isolation} reader"));
    let mut records = Vec::new();
    while records.len() < count {
        deadline.check(|| format!("got {} so far: {records:?}", records.len()));
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of the {isolation} reader failed: {error}"));
            records.push(read_record(&message.detach()));
        }
    }

    let quiet = Deadline::after(QUIET_WINDOW, "no message after the expected ones");
    while !quiet.is_expired() {
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of the {isolation} reader failed: {error}"));
            panic!(
                "the {isolation} reader of {topic} got {:?} after the {count} expected messages {records:?}",
                read_record(&message.detach())
            );
        }
    }
    records
}

fn read_record(message: &OwnedMessage) -> ReadRecord {
    let value = message.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
    (message.partition, message.offset, value)
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Commit,
    Abort,
}

/// Sends `value` in a transaction of its own, waits until the broker has
/// stored it, then ends the transaction with `outcome`. Returns the offset
/// of the message.
fn send_in_transaction(producer: &Producer, topic: &str, value: &str, outcome: Outcome) -> i64 {
    producer
        .begin_transaction()
        .unwrap_or_else(|error| panic!("begin_transaction for {value:?} failed: {error}"));
    let future = producer
        .send(Record::to(topic).partition(0).value(value))
        .unwrap_or_else(|error| panic!("send of {value:?} failed: {error}"));
    // Waiting for the delivery puts the message in the log before an abort,
    // so that read_uncommitted readers can see it.
    let delivery = wait_delivery(future, value);

    let ended = match outcome {
        Outcome::Commit => producer.commit_transaction(TRANSACTION_TIMEOUT),
        Outcome::Abort => producer.abort_transaction(TRANSACTION_TIMEOUT),
    };
    ended.unwrap_or_else(|error| panic!("{outcome:?} of the transaction of {value:?} failed: {error}"));
    delivery.offset
}

/// Sends A in a committed transaction, B in an aborted one and C in a
/// committed one, and checks what readers of either isolation level see.
fn visibility(target: &Target) {
    let topic = target.create_topic("txn-visibility", 1);
    let producer = transactional_producer(target, &unique_name("txn-visibility"), &[]);

    let offsets = [
        send_in_transaction(&producer, &topic, "A", Outcome::Commit),
        send_in_transaction(&producer, &topic, "B", Outcome::Abort),
        send_in_transaction(&producer, &topic, "C", Outcome::Commit),
    ];

    let record = |offset: i64, value: &str| (0, offset, value.to_owned());
    match target {
        Target::RealBroker(_) => {
            // Each transaction ends with a marker that takes an offset.
            assert_eq!(offsets, [0, 2, 4], "offsets of A, B and C");
            let committed = read_topic(target, &topic, 1, READ_COMMITTED, 2);
            assert_eq!(committed, vec![record(0, "A"), record(4, "C")], "what the read_committed reader saw");
            let uncommitted = read_topic(target, &topic, 1, READ_UNCOMMITTED, 3);
            assert_eq!(
                uncommitted,
                vec![record(0, "A"), record(2, "B"), record(4, "C")],
                "what the read_uncommitted reader saw"
            );
        }
        Target::Mock(_) => {
            // The mock writes no markers and reports no aborted
            // transactions, so both readers see the aborted B.
            assert_eq!(offsets, [0, 1, 2], "offsets of A, B and C");
            let expected = vec![record(0, "A"), record(1, "B"), record(2, "C")];
            let committed = read_topic(target, &topic, 1, READ_COMMITTED, 3);
            assert_eq!(committed, expected, "what the read_committed reader saw");
            let uncommitted = read_topic(target, &topic, 1, READ_UNCOMMITTED, 3);
            assert_eq!(uncommitted, expected, "what the read_uncommitted reader saw");
        }
    }
}

/// Checks that an abort resolves the futures of queued messages with
/// `_PURGE_QUEUE` and hands their owned keys and values back, and that the
/// producer then commits a new transaction.
fn abort_purges_queued(target: &Target) {
    const RECORDS: usize = 5;
    let topic = target.create_topic("txn-purge", 1);
    // linger.ms keeps every message in librdkafka's queue until the abort.
    let producer = transactional_producer(target, &unique_name("txn-purge"), &[("linger.ms", "10000")]);

    producer.begin_transaction().unwrap_or_else(|error| panic!("begin_transaction failed: {error}"));
    let futures: Vec<DeliveryFuture> = (0..RECORDS)
        .map(|id| {
            let record = Record::to(&topic).key(format!("key-{id}")).value(format!("queued value {id}"));
            producer.send(record).unwrap_or_else(|error| panic!("send of record {id} failed: {error}"))
        })
        .collect();
    assert_eq!(producer.in_flight_count(), RECORDS, "in-flight count before the abort");
    for (id, future) in futures.iter().enumerate() {
        assert!(!future.is_ready(), "the future of record {id} resolved before the abort");
    }

    producer
        .abort_transaction(TRANSACTION_TIMEOUT)
        .unwrap_or_else(|error| panic!("abort_transaction with {RECORDS} queued messages failed: {error}"));

    for (id, future) in futures.into_iter().enumerate() {
        let error = match future.wait_timeout(WAIT_TIMEOUT) {
            Ok(delivery) => {
                panic!("record {id} was delivered at offset {} although its transaction was aborted", delivery.offset)
            }
            Err(error) => error,
        };
        match &error.error {
            Error::Kafka { operation, error } => {
                assert_eq!(error.code, ErrorCode::PURGE_QUEUE, "error code of record {id}: {error}");
                assert_eq!(*operation, "delivery", "operation in the error of record {id}");
            }
            other => panic!("record {id} resolved to {other:?}, expected a _PURGE_QUEUE delivery error"),
        }
        let key = error.key.map(|key| key.into_vec());
        let value = error.value.map(|value| value.into_vec());
        assert_eq!(key, Some(format!("key-{id}").into_bytes()), "key handed back for record {id}");
        assert_eq!(value, Some(format!("queued value {id}").into_bytes()), "value handed back for record {id}");
    }
    assert_eq!(producer.in_flight_count(), 0, "in-flight count after the purge reports");

    // The next transaction works, and commit_transaction sends its message
    // without waiting for linger.ms.
    producer.begin_transaction().unwrap_or_else(|error| panic!("begin_transaction after the abort failed: {error}"));
    let future = producer
        .send(Record::to(&topic).value("after the abort"))
        .unwrap_or_else(|error| panic!("send after the abort failed: {error}"));
    producer
        .commit_transaction(TRANSACTION_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit_transaction after the abort failed: {error}"));
    let delivery = wait_delivery(future, "the message after the abort");

    let read = read_topic(target, &topic, 1, READ_COMMITTED, 1);
    assert_eq!(read, vec![(0, delivery.offset, "after the abort".to_owned())], "what the read_committed reader saw");
}

/// Returns the group's committed offsets of `partitions` as
/// `(partition, offset)` pairs, read through `consumer`. `context` names
/// the step for the failure message.
fn committed_offsets(consumer: &Consumer, partitions: &[TopicPartition], context: &str) -> Vec<(i32, i64)> {
    let mut committed = consumer
        .committed(partitions, WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("committed {context} failed: {error}"));
    committed.sort_by_key(|entry| entry.partition);
    committed.into_iter().map(|entry| (entry.partition, entry.offset)).collect()
}

/// Runs one transaction that sends a message to `output` and `offsets` for
/// the group of `group_consumer`, and ends it with `outcome`.
fn send_offsets_in_transaction(
    producer: &Producer,
    group_consumer: &Consumer,
    output: &str,
    offsets: &[TopicPartitionOffset],
    outcome: Outcome,
) {
    producer.begin_transaction().unwrap_or_else(|error| panic!("begin_transaction failed: {error}"));
    let future = producer
        .send(Record::to(output).value(format!("{outcome:?} with offsets {offsets:?}")))
        .unwrap_or_else(|error| panic!("send to {output} failed: {error}"));
    let group = group_consumer
        .group_metadata()
        .unwrap_or_else(|error| panic!("group_metadata failed: {error}"));
    producer
        .send_offsets_to_transaction(offsets, &group, TRANSACTION_TIMEOUT)
        .unwrap_or_else(|error| panic!("send_offsets_to_transaction of {offsets:?} failed: {error}"));

    match outcome {
        Outcome::Commit => {
            producer
                .commit_transaction(TRANSACTION_TIMEOUT)
                .unwrap_or_else(|error| panic!("commit_transaction with offsets {offsets:?} failed: {error}"));
            wait_delivery(future, "the message of the committed transaction");
        }
        Outcome::Abort => {
            producer
                .abort_transaction(TRANSACTION_TIMEOUT)
                .unwrap_or_else(|error| panic!("abort_transaction with offsets {offsets:?} failed: {error}"));
            // The message was queued or in flight, so it was either purged
            // or written and then aborted; either way its future resolves.
            match future.wait_timeout(WAIT_TIMEOUT) {
                Ok(_) => {}
                Err(error) if error.code() == Some(ErrorCode::PURGE_QUEUE) => {}
                Err(error) => panic!("the message of the aborted transaction resolved to {error}"),
            }
        }
    }
}

/// Checks that offsets sent in an aborted transaction leave the group's
/// committed offsets unchanged and that a commit sets exactly the sent ones.
fn sent_offsets(target: &Target) {
    let input = target.create_topic("txn-offsets-input", 2);
    let output = target.create_topic("txn-offsets-output", 1);
    let group = unique_name("txn-offsets");
    // read_committed makes `committed` ask for stable offsets, so that it
    // waits for the markers of a just-committed transaction.
    let consumer = new_consumer(target, &group, READ_COMMITTED);
    let producer = transactional_producer(target, &unique_name("txn-offsets"), &[]);
    let partitions = [TopicPartition::new(&input, 0), TopicPartition::new(&input, 1)];
    let offsets = |first: i64, second: i64| {
        [TopicPartitionOffset::new(&input, 0, first), TopicPartitionOffset::new(&input, 1, second)]
    };

    let no_offsets = [(0, OFFSET_INVALID), (1, OFFSET_INVALID)];
    assert_eq!(
        committed_offsets(&consumer, &partitions, "before any transaction"),
        no_offsets,
        "committed offsets before any transaction"
    );

    send_offsets_in_transaction(&producer, &consumer, &output, &offsets(3, 5), Outcome::Abort);
    assert_eq!(
        committed_offsets(&consumer, &partitions, "after the first abort"),
        no_offsets,
        "committed offsets after an aborted transaction sent 3 and 5"
    );

    send_offsets_in_transaction(&producer, &consumer, &output, &offsets(2, 6), Outcome::Commit);
    assert_eq!(
        committed_offsets(&consumer, &partitions, "after the commit"),
        [(0, 2), (1, 6)],
        "committed offsets after a committed transaction sent 2 and 6"
    );

    send_offsets_in_transaction(&producer, &consumer, &output, &offsets(4, 9), Outcome::Abort);
    assert_eq!(
        committed_offsets(&consumer, &partitions, "after the second abort"),
        [(0, 2), (1, 6)],
        "committed offsets after an aborted transaction sent 4 and 9"
    );

    // The admin API shows the same offsets, and no other partition.
    let admin = AdminClient::new(target.config())
        .unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
    let listed = admin
        .list_consumer_group_offsets(&group, None, &AdminOptions::new().request_timeout(WAIT_TIMEOUT))
        .unwrap_or_else(|error| panic!("list_consumer_group_offsets of {group} failed to start: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("list_consumer_group_offsets of {group} failed: {error}"));
    let mut listed: Vec<(String, i32, i64, Option<KafkaError>)> = listed
        .partitions
        .into_iter()
        .map(|entry| (entry.topic, entry.partition, entry.offset, entry.error))
        .collect();
    listed.sort_by(|left, right| (&left.0, left.1).cmp(&(&right.0, right.1)));
    assert_eq!(
        listed,
        vec![(input.clone(), 0, 2, None), (input.clone(), 1, 6, None)],
        "offsets of group {group} that the admin client listed"
    );
}

/// Produces the copy loop's input: [`COPY_RECORDS_PER_PARTITION`] records
/// to each partition, with values `p<partition>-<index>`. Returns the
/// values by partition.
fn produce_copy_input(target: &Target, topic: &str) -> BTreeMap<i32, Vec<String>> {
    let producer = Producer::new(target.config())
        .unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut futures = Vec::new();
    for partition in 0..COPY_PARTITIONS {
        for index in 0..COPY_RECORDS_PER_PARTITION {
            let value = format!("p{partition}-{index:02}");
            let future = producer
                .send(Record::to(topic).partition(partition).value(value.as_str()))
                .unwrap_or_else(|error| panic!("send of input record {value} failed: {error}"));
            futures.push((partition, index, value.clone(), future));
            values.entry(partition).or_default().push(value);
        }
    }
    for (partition, index, value, future) in futures {
        let delivery = wait_delivery(future, &format!("input record {value}"));
        let stored_at = (delivery.partition, delivery.offset);
        assert_eq!(stored_at, (partition, index), "partition and offset of input record {value}");
    }
    values
}

/// Polls up to [`COPY_BATCH`] input records, ending the batch early when a
/// poll returns nothing after at least one record. Checks that each record
/// has the offset that `next` stores for its partition, and advances `next`.
fn poll_copy_batch(consumer: &Consumer, next: &mut BTreeMap<i32, i64>, deadline: &Deadline) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    while batch.len() < COPY_BATCH {
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            if !batch.is_empty() {
                break;
            }
            deadline.check(|| format!("no input record arrived; next offsets by partition {next:?}"));
            continue;
        };
        let message = result.unwrap_or_else(|error| panic!("poll of the copy consumer failed: {error}"));
        let expected = next.get(&message.partition()).copied();
        assert_eq!(
            Some(message.offset()),
            expected,
            "offset of the record read from input partition {}, which must follow the last one read or rewound to",
            message.partition()
        );
        next.insert(message.partition(), message.offset() + 1);
        batch.push(message.detach());
    }
    batch
}

/// Copies an input topic to an output topic in transactions that send the
/// consumer's offsets, aborting every second transaction and rewinding the
/// consumer to the committed offsets. Checks that read_committed readers of
/// the output see every input record exactly once, in order per partition.
fn copy_loop(target: &Target) {
    let input = target.create_topic("txn-copy-input", COPY_PARTITIONS);
    let output = target.create_topic("txn-copy-output", COPY_PARTITIONS);
    let input_values = produce_copy_input(target, &input);
    let total = COPY_PARTITIONS as i64 * COPY_RECORDS_PER_PARTITION;

    let consumer = new_consumer(target, &unique_name("txn-copy"), READ_COMMITTED);
    consumer.subscribe(&[&input]).unwrap_or_else(|error| panic!("subscribe to {input} failed: {error}"));
    let producer = transactional_producer(target, &unique_name("txn-copy"), &[]);
    let partitions: Vec<TopicPartition> =
        (0..COPY_PARTITIONS).map(|partition| TopicPartition::new(&input, partition)).collect();

    // The offsets this loop committed, by partition, and the offset of the
    // next record the consumer must return.
    let mut committed: BTreeMap<i32, i64> = (0..COPY_PARTITIONS).map(|partition| (partition, OFFSET_INVALID)).collect();
    let mut next: BTreeMap<i32, i64> = (0..COPY_PARTITIONS).map(|partition| (partition, 0)).collect();
    let (mut transactions, mut aborts) = (0usize, 0usize);
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("the copy loop to commit all {total} input records"));

    while committed.values().map(|offset| (*offset).max(0)).sum::<i64>() < total {
        deadline.check(|| format!("committed offsets {committed:?} after {transactions} transactions"));
        let batch = poll_copy_batch(&consumer, &mut next, &deadline);

        producer.begin_transaction().unwrap_or_else(|error| panic!("begin_transaction {transactions} failed: {error}"));
        let futures: Vec<DeliveryFuture> = batch
            .iter()
            .map(|message| {
                let value = message.value.clone().unwrap_or_default();
                producer
                    .send(Record::to(&output).partition(message.partition).value(value))
                    .unwrap_or_else(|error| panic!("send of the copy of {message:?} failed: {error}"))
            })
            .collect();
        let mut sent: BTreeMap<i32, i64> = BTreeMap::new();
        for message in &batch {
            sent.insert(message.partition, message.offset + 1);
        }
        let offsets: Vec<TopicPartitionOffset> =
            sent.iter().map(|(partition, offset)| TopicPartitionOffset::new(&input, *partition, *offset)).collect();
        let group = consumer.group_metadata().unwrap_or_else(|error| panic!("group_metadata failed: {error}"));
        producer
            .send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
            .unwrap_or_else(|error| {
                panic!("send_offsets_to_transaction {transactions} of {offsets:?} failed: {error}")
            });

        if transactions % 2 == 1 {
            producer
                .abort_transaction(TRANSACTION_TIMEOUT)
                .unwrap_or_else(|error| panic!("abort_transaction {transactions} failed: {error}"));
            for future in futures {
                match future.wait_timeout(WAIT_TIMEOUT) {
                    Ok(_) => {}
                    Err(error) if error.code() == Some(ErrorCode::PURGE_QUEUE) => {}
                    Err(error) => panic!("a copy in aborted transaction {transactions} resolved to {error}"),
                }
            }
            next = rewind(&consumer, &partitions, &committed);
            aborts += 1;
        } else {
            producer
                .commit_transaction(TRANSACTION_TIMEOUT)
                .unwrap_or_else(|error| panic!("commit_transaction {transactions} failed: {error}"));
            for future in futures {
                wait_delivery(future, &format!("a copy in committed transaction {transactions}"));
            }
            committed.extend(sent);
        }
        transactions += 1;
    }
    assert!(aborts >= 1, "the copy loop finished in {transactions} transactions without an abort");

    let final_offsets = committed_offsets(&consumer, &partitions, "after the copy loop");
    let expected_offsets: Vec<(i32, i64)> =
        (0..COPY_PARTITIONS).map(|partition| (partition, COPY_RECORDS_PER_PARTITION)).collect();
    assert_eq!(final_offsets, expected_offsets, "committed offsets after the copy loop");

    let read = read_topic(target, &output, COPY_PARTITIONS, READ_COMMITTED, total as usize);
    let mut copied: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (partition, _, value) in read {
        copied.entry(partition).or_default().push(value);
    }
    assert_eq!(copied, input_values, "output values by partition, read with read_committed");
}

/// Reads the group's committed offsets, checks them against `committed`,
/// the offsets the copy loop committed, and seeks the consumer there.
/// Returns the offset of the next record each partition must return.
fn rewind(consumer: &Consumer, partitions: &[TopicPartition], committed: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    let stored = committed_offsets(consumer, partitions, "after an abort");
    let expected: Vec<(i32, i64)> = committed.iter().map(|(partition, offset)| (*partition, *offset)).collect();
    assert_eq!(stored, expected, "committed offsets read back after an abort");

    // A partition with no committed offset starts from its first record.
    let rewind: Vec<TopicPartitionOffset> = stored
        .iter()
        .map(|(partition, offset)| {
            let offset = if *offset == OFFSET_INVALID { OFFSET_BEGINNING } else { *offset };
            TopicPartitionOffset::new(&partitions[0].topic, *partition, offset)
        })
        .collect();
    consumer
        .seek(&rewind, TRANSACTION_TIMEOUT)
        .unwrap_or_else(|error| panic!("seek to the committed offsets {rewind:?} failed: {error}"));
    stored.into_iter().map(|(partition, offset)| (partition, offset.max(0))).collect()
}

/// Checks that a second producer with the same `transactional.id` fences
/// the first, whose calls then fail with a fatal error, and that the
/// transaction the first left open is aborted.
fn fencing(target: &Target) {
    let topic = target.create_topic("txn-fencing", 1);
    let transactional_id = unique_name("txn-fencing");

    let first = transactional_producer(target, &transactional_id, &[]);
    first.begin_transaction().unwrap_or_else(|error| panic!("begin_transaction of the first producer failed: {error}"));
    let future = first
        .send(Record::to(&topic).value("from the first producer"))
        .unwrap_or_else(|error| panic!("send of the first producer failed: {error}"));
    let delivery = wait_delivery(future, "the first producer's message");
    assert_eq!(delivery.offset, 0, "offset of the first producer's message");

    // init_transactions of the second producer bumps the producer epoch and
    // aborts the first producer's open transaction.
    let second = transactional_producer(target, &transactional_id, &[]);

    let error = match first.commit_transaction(TRANSACTION_TIMEOUT) {
        Ok(()) => panic!("commit_transaction of the fenced producer succeeded"),
        Err(error) => error,
    };
    assert_eq!(error.code(), Some(FENCED), "code of the fenced commit's error: {error}");
    assert_eq!(error.recovery(), Recovery::Fatal, "recovery from the fenced commit's error: {error}");
    assert!(error.is_fatal(), "the fenced commit's error is not fatal: {error}");

    let fatal = first
        .fatal_error()
        .unwrap_or_else(|| panic!("the fenced producer reports no fatal error after {error}"));
    assert_eq!(fatal.code, FENCED, "code of the fenced producer's fatal error: {fatal}");
    assert!(fatal.fatal, "the fatal error is not marked fatal: {fatal}");
    assert_eq!(second.fatal_error(), None, "fatal error of the second producer");

    // Later calls of the fenced producer, sends included, fail with the
    // same fatal `_FENCED` error.
    let begin = first.begin_transaction().expect_err("begin_transaction of the fenced producer succeeded");
    assert_eq!(begin.recovery(), Recovery::Fatal, "recovery from the fenced begin_transaction: {begin}");
    assert_eq!(begin.code(), Some(FENCED), "code of the fenced begin_transaction's error: {begin}");
    let abort = first
        .abort_transaction(TRANSACTION_TIMEOUT)
        .expect_err("abort_transaction of the fenced producer succeeded");
    assert_eq!(abort.recovery(), Recovery::Fatal, "recovery from the fenced abort_transaction: {abort}");
    assert_eq!(abort.code(), Some(FENCED), "code of the fenced abort_transaction's error: {abort}");
    let send = first
        .send(Record::to(&topic).value("after fencing"))
        .expect_err("send of the fenced producer succeeded");
    assert_eq!(send.code(), Some(FENCED), "code of the fenced producer's send error: {send}");
    assert!(send.error.is_fatal(), "the fenced producer's send error is not fatal: {send}");
    assert_eq!(send.record.value_bytes(), Some(&b"after fencing"[..]), "record handed back by the failed send");

    // The second producer commits. Readers see only its message, which
    // follows the first producer's message at 0 and the abort marker at 1.
    let offset = send_in_transaction(&second, &topic, "from the second producer", Outcome::Commit);
    assert_eq!(offset, 2, "offset of the second producer's message");
    let read = read_topic(target, &topic, 1, READ_COMMITTED, 1);
    assert_eq!(read, vec![(0, 2, "from the second producer".to_owned())], "what the read_committed reader saw");
}

/// Checks that transactional calls on a producer without `transactional.id`,
/// or made out of order, fail with errors whose recovery is `Recovery::None`.
#[test]
fn call_order_errors_mock() {
    let target = mock_target();
    let topic = target.create_topic("txn-call-order", 1);

    let plain = Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    let error = plain.begin_transaction().expect_err("begin_transaction without transactional.id succeeded");
    assert_eq!(error.code(), Some(NOT_CONFIGURED), "code without transactional.id: {error}");
    assert_eq!(error.recovery(), Recovery::None, "recovery without transactional.id: {error}");

    let config = set(target.config(), "transactional.id", &unique_name("txn-call-order"));
    let producer = Producer::new(config).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    let error = producer.begin_transaction().expect_err("begin_transaction before init_transactions succeeded");
    assert_eq!(error.code(), Some(INVALID_STATE), "code before init_transactions: {error}");
    assert_eq!(error.recovery(), Recovery::None, "recovery before init_transactions: {error}");

    producer
        .init_transactions(TRANSACTION_TIMEOUT)
        .unwrap_or_else(|error| panic!("init_transactions failed: {error}"));
    let error = producer
        .commit_transaction(TRANSACTION_TIMEOUT)
        .expect_err("commit_transaction outside a transaction succeeded");
    assert_eq!(error.code(), Some(INVALID_STATE), "code of a commit outside a transaction: {error}");
    assert_eq!(error.recovery(), Recovery::None, "recovery from a commit outside a transaction: {error}");

    let send = producer.send(Record::to(&topic).value("outside")).expect_err("send outside a transaction succeeded");
    assert_eq!(send.code(), Some(INVALID_STATE), "code of a send outside a transaction: {send}");
    assert_eq!(send.record.value_bytes(), Some(&b"outside"[..]), "record handed back by the failed send");
    assert_eq!(producer.fatal_error(), None, "fatal error after calls out of order");
}

#[test]
fn recovery_classification() {
    let kafka = |fatal: bool, transaction_requires_abort: bool, retriable: bool| Error::Kafka {
        operation: "commit_transaction",
        error: KafkaError {
            fatal,
            transaction_requires_abort,
            retriable,
            ..KafkaError::from_code(FENCED)
        },
    };

    let cases = [
        ((true, true, true), Recovery::Fatal),
        ((true, false, false), Recovery::Fatal),
        ((false, true, true), Recovery::AbortTransaction),
        ((false, true, false), Recovery::AbortTransaction),
        ((false, false, true), Recovery::Retry),
        ((false, false, false), Recovery::None),
    ];
    for ((fatal, requires_abort, retriable), expected) in cases {
        let error = kafka(fatal, requires_abort, retriable);
        assert_eq!(
            error.recovery(),
            expected,
            "recovery for fatal={fatal} transaction_requires_abort={requires_abort} retriable={retriable}"
        );
    }

    let timed_out = Error::TimedOut { operation: "commit_transaction", timeout: Duration::from_secs(1) };
    assert_eq!(timed_out.recovery(), Recovery::None, "recovery from Error::TimedOut");
    let closed = Error::Closed { operation: "delivery" };
    assert_eq!(closed.recovery(), Recovery::None, "recovery from Error::Closed");
}
