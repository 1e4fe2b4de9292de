//! Offsets of the consumer on the mock cluster and on a real broker:
//! seeks, pause and resume, watermarks, look-ups by timestamp, offsets
//! stored by hand, and the end-of-partition event.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka_e2e::numbered::{
    self, consumer_config, expect_none, new_consumer, new_producer, poll_count, Read, POLL_TIMEOUT,
};
use rdkafka_e2e::{unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    Consumer, Error, ErrorCode, Message, Record, Timestamp, TopicPartition, TopicPartitionOffset, OFFSET_BEGINNING,
    OFFSET_END, OFFSET_INVALID,
};

/// How long a consumer must stay without messages for "nothing more" and
/// "paused" checks.
const QUIET_WINDOW: Duration = Duration::from_millis(1_000);

/// librdkafka's `_STATE`: the partition is not in a state for the call,
/// such as a seek or store outside the assignment.
const STATE: ErrorCode = ErrorCode::from_raw(rdkafka_ll::RD_KAFKA_RESP_ERR__STATE);

/// How long a seek or an offset look-up may wait for the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn seek_replays_mock() {
    seek_replays(&Target::mock());
}

#[test]
fn seek_replays_real_broker() {
    if let Some(target) = Target::real_broker() {
        seek_replays(&target);
    }
}

#[test]
fn seek_after_assign_mock() {
    seek_after_assign(&Target::mock());
}

#[test]
fn seek_after_assign_real_broker() {
    if let Some(target) = Target::real_broker() {
        seek_after_assign(&target);
    }
}

#[test]
fn pause_resume_mock() {
    pause_resume(&Target::mock());
}

#[test]
fn pause_resume_real_broker() {
    if let Some(target) = Target::real_broker() {
        pause_resume(&target);
    }
}

#[test]
fn pause_across_rebalance_mock() {
    pause_across_rebalance(&Target::mock());
}

#[test]
fn pause_across_rebalance_real_broker() {
    if let Some(target) = Target::real_broker() {
        pause_across_rebalance(&target);
    }
}

#[test]
fn watermarks_mock() {
    watermarks(&Target::mock());
}

#[test]
fn watermarks_real_broker() {
    if let Some(target) = Target::real_broker() {
        watermarks(&target);
    }
}

// The mock cluster gives every message the log append time 1234
// (librdkafka 2.12.1), so look-ups by timestamp run on the real broker only.
#[test]
fn offsets_for_times_real_broker() {
    if let Some(target) = Target::real_broker() {
        offsets_for_times(&target);
    }
}

#[test]
fn manual_store_mock() {
    manual_store(&Target::mock());
}

#[test]
fn manual_store_real_broker() {
    if let Some(target) = Target::real_broker() {
        manual_store(&target);
    }
}

#[test]
fn partition_eof_mock() {
    partition_eof(&Target::mock());
}

#[test]
fn partition_eof_real_broker() {
    if let Some(target) = Target::real_broker() {
        partition_eof(&target);
    }
}

fn subscribe(consumer: &Consumer, topic: &str) {
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
}

fn assign(consumer: &Consumer, entries: &[TopicPartitionOffset]) {
    consumer
        .assign(entries)
        .unwrap_or_else(|error| panic!("assign of {entries:?} failed: {error}"));
}

fn seek(consumer: &Consumer, topic: &str, partition: i32, offset: i64) {
    consumer
        .seek(&[TopicPartitionOffset::new(topic, partition, offset)], CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("seek of partition {partition} to offset {offset} failed: {error}"));
}

fn reads_from(partition: i32, offsets: std::ops::Range<i64>, id_of: impl Fn(i64) -> usize) -> Vec<Read> {
    offsets
        .map(|offset| Read {
            partition,
            offset,
            id: id_of(offset),
        })
        .collect()
}

fn assigned_partitions(consumer: &Consumer, what: &str) -> BTreeSet<i32> {
    let assignment = consumer
        .assignment()
        .unwrap_or_else(|error| panic!("assignment of {what} failed: {error}"));
    assignment.into_iter().map(|entry| entry.partition).collect()
}

/// Polls until the assignment of `consumer` is exactly `expected`, failing
/// if a message arrives meanwhile.
fn wait_for_assignment(consumer: &Consumer, expected: &BTreeSet<i32>, what: &str) {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{what} to be assigned partitions {expected:?}"));
    loop {
        let assigned = assigned_partitions(consumer, what);
        if &assigned == expected {
            return;
        }
        deadline.check(|| format!("it has {assigned:?}"));
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of {what} failed: {error}"));
            panic!(
                "{what} read {:?} before it was assigned {expected:?}",
                numbered::read(&message)
            );
        }
    }
}

/// Seeks back, to the beginning and to the end of a partition, and checks
/// the exact messages read after each seek.
fn seek_replays(target: &Target) {
    let topic = target.create_topic("offsets-seek", 1);
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..30);
    let consumer = new_consumer(consumer_config(target, &unique_name("offsets-seek"), &[]));
    assign(&consumer, &[TopicPartitionOffset::new(&topic, 0, OFFSET_BEGINNING)]);
    let id_of = |offset: i64| offset as usize;

    assert_eq!(
        poll_count(&consumer, 30, "the consumer"),
        reads_from(0, 0..30, id_of),
        "reads before any seek"
    );

    seek(&consumer, &topic, 0, 10);
    assert_eq!(
        poll_count(&consumer, 20, "the consumer"),
        reads_from(0, 10..30, id_of),
        "reads after a seek to 10"
    );
    expect_none(&consumer, Duration::from_millis(300), "the consumer after offset 29");

    let partition = [TopicPartition::new(&topic, 0)];
    consumer
        .seek_to_beginning(&partition, CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("seek_to_beginning failed: {error}"));
    assert_eq!(
        poll_count(&consumer, 5, "the consumer"),
        reads_from(0, 0..5, id_of),
        "reads after seek_to_beginning"
    );

    consumer
        .seek_to_end(&partition, CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("seek_to_end failed: {error}"));
    // librdkafka looks the end offset up with a request of its own after
    // the seek returns, so a message sent before the response arrives is
    // skipped. Two seconds leave room for a loaded machine, where 500 ms
    // once proved too short.
    expect_none(&consumer, Duration::from_secs(2), "the consumer after seek_to_end");
    numbered::send(&producer, &topic, Some(0), [30]);
    assert_eq!(
        poll_count(&consumer, 1, "the consumer"),
        reads_from(0, 30..31, id_of),
        "read after seek_to_end"
    );
    let position = consumer
        .position(&partition)
        .unwrap_or_else(|error| panic!("position failed: {error}"));
    assert_eq!(
        position,
        vec![TopicPartitionOffset::new(&topic, 0, 31)],
        "position after offset 30"
    );
}

/// Seeks at once after `assign`, before librdkafka has started fetching.
/// The seek may succeed or fail, but it must return within its timeout,
/// and the first message must match its outcome.
fn seek_after_assign(target: &Target) {
    let topic = target.create_topic("offsets-seek-early", 1);
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..10);
    let consumer = new_consumer(consumer_config(target, &unique_name("offsets-seek-early"), &[]));

    assign(&consumer, &[TopicPartitionOffset::new(&topic, 0, 0)]);
    let started = Instant::now();
    let outcome = consumer.seek(&[TopicPartitionOffset::new(&topic, 0, 5)], CALL_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(
        elapsed < CALL_TIMEOUT + Duration::from_secs(2),
        "seek straight after assign took {elapsed:?}"
    );

    let first = poll_count(&consumer, 1, "the consumer");
    match &outcome {
        Ok(()) => assert_eq!(
            first,
            reads_from(0, 5..6, |offset| offset as usize),
            "first read after a successful seek"
        ),
        Err(error) => {
            eprintln!("seek straight after assign failed after {elapsed:?}: {error}");
            assert_eq!(
                first,
                reads_from(0, 0..1, |offset| offset as usize),
                "first read after a failed seek"
            );
        }
    }

    // librdkafka rejects a seek of a partition outside the assignment with
    // _STATE.
    let outcome = consumer.seek(&[TopicPartitionOffset::new(&topic, 3, 0)], CALL_TIMEOUT);
    match outcome {
        Err(Error::Partitions { operation, failed }) => {
            assert_eq!(operation, "seek", "operation of the failed seek");
            assert_eq!(failed.len(), 1, "failed partitions of the seek: {failed:?}");
            assert_eq!(
                (failed[0].topic.as_str(), failed[0].partition),
                (topic.as_str(), 3),
                "failed partition"
            );
            assert_eq!(
                failed[0].error.code, STATE,
                "error of the seek of an unassigned partition"
            );
        }
        other => panic!("seek of an unassigned partition returned {other:?}, expected Error::Partitions"),
    }
}

/// Pauses one of two partitions: only the other one is read until resume,
/// and then the paused partition's messages arrive.
fn pause_resume(target: &Target) {
    let topic = target.create_topic("offsets-pause", 2);
    let consumer = new_consumer(consumer_config(target, &unique_name("offsets-pause"), &[]));
    subscribe(&consumer, &topic);
    wait_for_assignment(&consumer, &BTreeSet::from([0, 1]), "the consumer");

    let paused = [TopicPartition::new(&topic, 0)];
    consumer
        .pause(&paused)
        .unwrap_or_else(|error| panic!("pause of partition 0 failed: {error}"));
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..5);
    numbered::send(&producer, &topic, Some(1), 5..10);

    let reads = poll_count(&consumer, 5, "the consumer with partition 0 paused");
    assert_eq!(
        reads,
        reads_from(1, 0..5, |offset| offset as usize + 5),
        "reads with partition 0 paused"
    );
    expect_none(&consumer, QUIET_WINDOW, "the consumer with partition 0 paused");

    consumer
        .resume(&paused)
        .unwrap_or_else(|error| panic!("resume of partition 0 failed: {error}"));
    let reads = poll_count(&consumer, 5, "the consumer after resume");
    assert_eq!(
        reads,
        reads_from(0, 0..5, |offset| offset as usize),
        "reads after resuming partition 0"
    );
    expect_none(
        &consumer,
        Duration::from_millis(300),
        "the consumer after both partitions",
    );
}

/// Pauses every partition of a `cooperative-sticky` member, then lets a
/// second member join. The cooperative protocol revokes only the partitions
/// that move, so the first member's remaining partitions must stay paused,
/// while the second member reads the partitions it was given.
fn pause_across_rebalance(target: &Target) {
    const PARTITIONS: i32 = 4;
    let topic = target.create_topic("offsets-pause-rebalance", PARTITIONS);
    let group = unique_name("offsets-pause-rebalance");
    let settings = [("partition.assignment.strategy", "cooperative-sticky")];
    let first = new_consumer(consumer_config(target, &group, &settings));
    subscribe(&first, &topic);
    let every: BTreeSet<i32> = (0..PARTITIONS).collect();
    wait_for_assignment(&first, &every, "the first member");
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|partition| TopicPartition::new(&topic, partition))
        .collect();
    first
        .pause(&all)
        .unwrap_or_else(|error| panic!("pause of every partition failed: {error}"));

    let second = new_consumer(consumer_config(target, &group, &settings));
    subscribe(&second, &topic);
    let deadline = Deadline::after(WAIT_TIMEOUT, "the second member to take partitions from the first");
    let (kept_partitions, moved_partitions) = loop {
        for (consumer, what) in [(&first, "the first member"), (&second, "the second member")] {
            if let Some(result) = consumer.poll(Duration::from_millis(50)) {
                let message = result.unwrap_or_else(|error| panic!("poll of {what} failed: {error}"));
                panic!(
                    "{what} read {:?} before anything was produced",
                    numbered::read(&message)
                );
            }
        }
        let kept_partitions = assigned_partitions(&first, "the first member");
        let moved_partitions = assigned_partitions(&second, "the second member");
        if !kept_partitions.is_empty()
            && !moved_partitions.is_empty()
            && kept_partitions.len() + moved_partitions.len() == PARTITIONS as usize
        {
            break (kept_partitions, moved_partitions);
        }
        deadline.check(|| format!("first has {kept_partitions:?}, second has {moved_partitions:?}"));
    };

    // Each partition gets offsets 0..5, and the message at offset `o` of
    // partition `p` has id `o * 4 + p`.
    let producer = new_producer(target);
    for partition in 0..PARTITIONS {
        let ids = (0..5).map(|offset| offset * PARTITIONS as usize + partition as usize);
        numbered::send(&producer, &topic, Some(partition), ids);
    }

    let moved_count = moved_partitions.len() * 5;
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{moved_count} messages for the second member"));
    let mut second_reads = Vec::new();
    while second_reads.len() < moved_count {
        deadline.check(|| format!("it read {second_reads:?}"));
        if let Some(result) = first.poll(Duration::from_millis(20)) {
            let message = result.unwrap_or_else(|error| panic!("poll of the first member failed: {error}"));
            panic!(
                "the first member read {:?} from its paused partitions {kept_partitions:?} after the rebalance",
                numbered::read(&message)
            );
        }
        if let Some(result) = second.poll(Duration::from_millis(20)) {
            let message = result.unwrap_or_else(|error| panic!("poll of the second member failed: {error}"));
            second_reads.push(numbered::read(&message));
        }
    }
    let read_partitions: BTreeSet<i32> = second_reads.iter().map(|read| read.partition).collect();
    assert_eq!(read_partitions, moved_partitions, "partitions the second member read");
    expect_none(
        &first,
        QUIET_WINDOW,
        "the first member, whose kept_partitions partitions stay paused",
    );

    let kept_list: Vec<TopicPartition> = kept_partitions
        .iter()
        .map(|&partition| TopicPartition::new(&topic, partition))
        .collect();
    first
        .resume(&kept_list)
        .unwrap_or_else(|error| panic!("resume of {kept_partitions:?} failed: {error}"));
    let mut reads = poll_count(&first, kept_partitions.len() * 5, "the first member after resume");
    reads.sort();
    let expected: Vec<Read> = kept_partitions
        .iter()
        .flat_map(|&partition| {
            reads_from(partition, 0..5, move |offset| {
                offset as usize * PARTITIONS as usize + partition as usize
            })
        })
        .collect();
    assert_eq!(
        reads, expected,
        "reads of the first member after resuming its kept_partitions partitions"
    );
}

/// Checks the watermarks of an empty partition and of one with ten messages.
fn watermarks(target: &Target) {
    let topic = target.create_topic("offsets-watermarks", 2);
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..10);
    let consumer = new_consumer(consumer_config(target, &unique_name("offsets-watermarks"), &[]));

    let filled = consumer
        .query_watermark_offsets(&topic, 0, CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("watermarks of partition 0 failed: {error}"));
    assert_eq!(filled, (0, 10), "watermarks of the partition with ten messages");
    let empty = consumer
        .query_watermark_offsets(&topic, 1, CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("watermarks of partition 1 failed: {error}"));
    assert_eq!(empty, (0, 0), "watermarks of the empty partition");
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    elapsed.as_millis() as i64
}

/// Sends ten messages with timestamps 10 ms apart, then looks up offsets by
/// timestamp: a message's exact timestamp returns its offset, one
/// millisecond later returns the next offset, and past the last message
/// returns `OFFSET_END`.
fn offsets_for_times(target: &Target) {
    const COUNT: i64 = 10;
    const STEP_MS: i64 = 10;
    let topic = target.create_topic("offsets-for-times", 1);
    // Ten minutes in the past: inside the broker's default limits on how far
    // a create time may lie from the broker's clock and inside retention.
    let base = now_ms() - 600_000;
    let producer = new_producer(target);
    for offset in 0..COUNT {
        let value = offset.to_string();
        let delivery = producer
            .send(
                Record::to(&topic)
                    .partition(0)
                    .value(value)
                    .timestamp(base + offset * STEP_MS),
            )
            .unwrap_or_else(|error| panic!("send of message {offset} failed: {error}"))
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of message {offset} failed: {error}"));
        assert_eq!(delivery.offset, offset, "offset of message {offset}");
        assert_eq!(
            delivery.timestamp,
            Timestamp::CreateTime(base + offset * STEP_MS),
            "timestamp of message {offset}"
        );
    }

    let consumer = new_consumer(consumer_config(target, &unique_name("offsets-for-times"), &[]));
    let watermarks = consumer
        .query_watermark_offsets(&topic, 0, CALL_TIMEOUT)
        .unwrap_or_else(|error| panic!("watermarks failed: {error}"));
    assert_eq!(watermarks, (0, COUNT), "watermarks after {COUNT} messages");

    let look_up = |timestamp: i64| -> i64 {
        let found = consumer
            .offsets_for_times(&[TopicPartitionOffset::new(&topic, 0, timestamp)], CALL_TIMEOUT)
            .unwrap_or_else(|error| panic!("offsets_for_times at {timestamp} failed: {error}"));
        assert_eq!(found.len(), 1, "entries returned for timestamp {timestamp}: {found:?}");
        found[0].offset
    };
    assert_eq!(look_up(base - 1_000), 0, "offset for a time before the first message");
    for offset in 0..COUNT {
        let timestamp = base + offset * STEP_MS;
        assert_eq!(
            look_up(timestamp),
            offset,
            "offset for the exact timestamp of message {offset}"
        );
        let next = if offset + 1 < COUNT { offset + 1 } else { OFFSET_END };
        assert_eq!(look_up(timestamp + 1), next, "offset for 1 ms after message {offset}");
    }

    assign(&consumer, &[TopicPartitionOffset::new(&topic, 0, OFFSET_BEGINNING)]);
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{COUNT} messages from {topic}"));
    let mut offset = 0;
    while offset < COUNT {
        deadline.check(|| format!("read {offset}"));
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let message = result.unwrap_or_else(|error| panic!("poll failed: {error}"));
        assert_eq!(message.offset(), offset, "offset of the next message");
        assert_eq!(
            message.timestamp(),
            Timestamp::CreateTime(base + offset * STEP_MS),
            "timestamp at offset {offset}"
        );
        offset += 1;
    }
}

fn commit_consumed(consumer: &Consumer) -> Result<Vec<TopicPartitionOffset>, Error> {
    let mut committed = consumer
        .commit_consumed()
        .unwrap_or_else(|error| panic!("commit_consumed failed to start: {error}"))
        .wait_timeout(WAIT_TIMEOUT)?;
    committed.sort_by_key(|entry| entry.partition);
    Ok(committed)
}

fn committed(consumer: &Consumer, topic: &str) -> Vec<TopicPartitionOffset> {
    let partitions = [TopicPartition::new(topic, 0), TopicPartition::new(topic, 1)];
    let mut committed = consumer
        .committed(&partitions, WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("committed() failed: {error}"));
    committed.sort_by_key(|entry| entry.partition);
    committed
}

/// With `enable.auto.offset.store=false`, `commit_consumed` commits exactly
/// the offsets stored by hand, not the position of what was read.
fn manual_store(target: &Target) {
    let topic = target.create_topic("offsets-store", 2);
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..5);
    numbered::send(&producer, &topic, Some(1), 5..10);
    let config = consumer_config(
        target,
        &unique_name("offsets-store"),
        &[("enable.auto.offset.store", "false")],
    );
    let consumer = new_consumer(config);
    subscribe(&consumer, &topic);

    let deadline = Deadline::after(WAIT_TIMEOUT, format!("10 messages from {topic}"));
    let mut messages: Vec<Message<'_>> = Vec::new();
    while messages.len() < 10 {
        deadline.check(|| format!("read {}", messages.len()));
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            messages.push(result.unwrap_or_else(|error| panic!("poll failed: {error}")));
        }
    }
    messages.sort_by_key(|message| (message.partition(), message.offset()));

    match commit_consumed(&consumer) {
        Err(error) => assert_eq!(
            error.code(),
            Some(ErrorCode::NO_OFFSET),
            "commit with nothing stored: {error}"
        ),
        Ok(offsets) => panic!("commit with nothing stored committed {offsets:?}"),
    }

    // Store partition 0 up to offset 2, leave partition 1 unstored.
    for message in &messages[0..3] {
        consumer
            .store_message(message)
            .unwrap_or_else(|error| panic!("store_message at offset {} failed: {error}", message.offset()));
    }
    let first =
        commit_consumed(&consumer).unwrap_or_else(|error| panic!("commit of the stored offsets failed: {error}"));
    assert_eq!(
        valid_offsets(&first),
        vec![TopicPartitionOffset::new(&topic, 0, 3)],
        "offsets of the commit after storing partition 0 up to offset 2, in {first:?}"
    );
    assert_eq!(
        committed(&consumer, &topic),
        vec![
            TopicPartitionOffset::new(&topic, 0, 3),
            TopicPartitionOffset::new(&topic, 1, OFFSET_INVALID)
        ],
        "committed offsets after the first commit"
    );

    // Store the last message of partition 1 only.
    let last = &messages[9];
    assert_eq!((last.partition(), last.offset()), (1, 4), "last message read");
    consumer
        .store_message(last)
        .unwrap_or_else(|error| panic!("store_message of partition 1 offset 4 failed: {error}"));
    let second = commit_consumed(&consumer).unwrap_or_else(|error| panic!("second commit failed: {error}"));
    assert_eq!(
        valid_offsets(&second),
        vec![TopicPartitionOffset::new(&topic, 1, 5)],
        "offsets of the commit after storing partition 1 offset 4, in {second:?}"
    );
    assert_eq!(
        committed(&consumer, &topic),
        vec![
            TopicPartitionOffset::new(&topic, 0, 3),
            TopicPartitionOffset::new(&topic, 1, 5)
        ],
        "committed offsets after the second commit"
    );

    // librdkafka rejects a store for a partition outside the assignment
    // with _STATE.
    match consumer.store_offsets(&[TopicPartitionOffset::new(&topic, 9, 1)]) {
        Err(Error::Partitions { operation, failed }) => {
            assert_eq!(operation, "store offsets", "operation of the failed store");
            assert_eq!(failed.len(), 1, "failed partitions of the store: {failed:?}");
            assert_eq!(
                (failed[0].partition, failed[0].offset),
                (9, 1),
                "failed partition and offset of the store"
            );
            assert_eq!(
                failed[0].error.code, STATE,
                "error of the store for an unassigned partition"
            );
        }
        other => panic!("store for an unassigned partition returned {other:?}, expected Error::Partitions"),
    }
    drop(messages);

    // With the default enable.auto.offset.store=true, librdkafka rejects
    // offsets stored by hand.
    let automatic = new_consumer(consumer_config(target, &unique_name("offsets-store-auto"), &[]));
    subscribe(&automatic, &topic);
    poll_count(&automatic, 1, "the consumer with automatic stores");
    match automatic.store_offsets(&[TopicPartitionOffset::new(&topic, 0, 1)]) {
        Err(Error::Kafka { operation, error }) => {
            assert_eq!(operation, "store offsets", "operation of the rejected store");
            assert_eq!(
                error.code,
                ErrorCode::INVALID_ARGUMENT,
                "error of a store with automatic stores: {error}"
            );
        }
        other => panic!("store with enable.auto.offset.store=true returned {other:?}, expected _INVALID_ARG"),
    }
}

/// Returns the entries with an offset, leaving out `OFFSET_INVALID` ones.
fn valid_offsets(entries: &[TopicPartitionOffset]) -> Vec<TopicPartitionOffset> {
    entries.iter().filter(|entry| entry.offset >= 0).cloned().collect()
}

/// Checks that the commit future resolves to the committed offsets only, as
/// `commit_offsets` documents. When only one of two assigned partitions has
/// a stored offset, `commit_consumed` commits only that one, so the other
/// must not be in the result.
#[test]
fn commit_result_lists_committed_only() {
    let target = Target::mock();
    let topic = target.create_topic("offsets-commit-result", 2);
    let producer = new_producer(&target);
    numbered::send(&producer, &topic, Some(0), 0..2);
    numbered::send(&producer, &topic, Some(1), 2..4);
    let config = consumer_config(
        &target,
        &unique_name("offsets-commit-result"),
        &[("enable.auto.offset.store", "false")],
    );
    let consumer = new_consumer(config);
    subscribe(&consumer, &topic);

    let deadline = Deadline::after(WAIT_TIMEOUT, format!("a message of partition 0 of {topic}"));
    loop {
        deadline.check(|| "none arrived".to_owned());
        let Some(result) = consumer.poll(POLL_TIMEOUT) else {
            continue;
        };
        let message = result.unwrap_or_else(|error| panic!("poll failed: {error}"));
        if message.partition() == 0 {
            consumer
                .store_message(&message)
                .unwrap_or_else(|error| panic!("store_message failed: {error}"));
            break;
        }
    }
    assert_eq!(
        assigned_partitions(&consumer, "the consumer"),
        BTreeSet::from([0, 1]),
        "assignment when committing"
    );

    let result = commit_consumed(&consumer).unwrap_or_else(|error| panic!("commit failed: {error}"));
    assert_eq!(
        committed(&consumer, &topic),
        vec![
            TopicPartitionOffset::new(&topic, 0, 1),
            TopicPartitionOffset::new(&topic, 1, OFFSET_INVALID)
        ],
        "committed offsets, which show that partition 1 was not committed"
    );
    assert_eq!(
        result,
        vec![TopicPartitionOffset::new(&topic, 0, 1)],
        "offsets that the commit future resolved to"
    );
}

/// Which of the expected events `poll` returned, in order.
#[derive(Debug, PartialEq, Eq)]
enum Polled {
    Message(Read),
    Eof { partition: i32, offset: i64 },
}

fn poll_events(consumer: &Consumer, topic: &str, count: usize) -> Vec<Polled> {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{count} messages and end-of-partition events"));
    let mut events = Vec::new();
    while events.len() < count {
        deadline.check(|| format!("got {events:?}"));
        match consumer.poll(POLL_TIMEOUT) {
            None => {}
            Some(Ok(message)) => events.push(Polled::Message(numbered::read(&message))),
            Some(Err(Error::Consume {
                topic: error_topic,
                partition,
                offset,
                error,
            })) => {
                assert_eq!(
                    error.code,
                    ErrorCode::PARTITION_EOF,
                    "code of the consume error at partition {partition}: {error}"
                );
                assert_eq!(error_topic, topic, "topic of the end-of-partition event");
                events.push(Polled::Eof { partition, offset });
            }
            Some(Err(error)) => panic!("poll failed with an error other than Error::Consume: {error}"),
        }
    }
    events
}

/// With `enable.partition.eof=true`, reaching the end of a partition
/// returns `Error::Consume` with `_PARTITION_EOF`, naming the topic, the
/// partition and the offset after its last message, once per time the
/// end is reached.
fn partition_eof(target: &Target) {
    let topic = target.create_topic("offsets-eof", 2);
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..3);
    let config = consumer_config(target, &unique_name("offsets-eof"), &[("enable.partition.eof", "true")]);
    let consumer = new_consumer(config);
    assign(
        &consumer,
        &[
            TopicPartitionOffset::new(&topic, 0, OFFSET_BEGINNING),
            TopicPartitionOffset::new(&topic, 1, OFFSET_BEGINNING),
        ],
    );

    let events = poll_events(&consumer, &topic, 5);
    let partition_zero: Vec<&Polled> = events
        .iter()
        .filter(|event| {
            matches!(
                event,
                Polled::Message(Read { partition: 0, .. }) | Polled::Eof { partition: 0, .. }
            )
        })
        .collect();
    let expected_zero = [
        Polled::Message(Read {
            partition: 0,
            offset: 0,
            id: 0,
        }),
        Polled::Message(Read {
            partition: 0,
            offset: 1,
            id: 1,
        }),
        Polled::Message(Read {
            partition: 0,
            offset: 2,
            id: 2,
        }),
        Polled::Eof {
            partition: 0,
            offset: 3,
        },
    ];
    assert_eq!(
        partition_zero,
        expected_zero.iter().collect::<Vec<_>>(),
        "events of partition 0 in {events:?}"
    );
    assert!(
        events.contains(&Polled::Eof {
            partition: 1,
            offset: 0
        }),
        "end of the empty partition 1 in {events:?}"
    );
    expect_none(
        &consumer,
        Duration::from_millis(500),
        "the consumer at the end of both partitions",
    );

    numbered::send(&producer, &topic, Some(0), [3]);
    let events = poll_events(&consumer, &topic, 2);
    assert_eq!(
        events,
        vec![
            Polled::Message(Read {
                partition: 0,
                offset: 3,
                id: 3
            }),
            Polled::Eof {
                partition: 0,
                offset: 4
            }
        ],
        "events after one more message in partition 0"
    );
}

/// Checks that calls that take a partition list accept an empty one.
/// librdkafka gives an empty list no element array (`elems` is NULL in
/// librdkafka 2.12.1's `rd_kafka_topic_partition_list_new(0)`), which hl
/// must not turn into a slice.
#[test]
fn empty_partition_lists() {
    let target = Target::mock();
    let consumer = new_consumer(consumer_config(&target, &unique_name("offsets-empty-list"), &[]));

    let position = consumer
        .position(&[])
        .unwrap_or_else(|error| panic!("position of no partitions failed: {error}"));
    assert_eq!(position, Vec::new(), "position of no partitions");
    consumer
        .pause(&[])
        .unwrap_or_else(|error| panic!("pause of no partitions failed: {error}"));
    consumer
        .resume(&[])
        .unwrap_or_else(|error| panic!("resume of no partitions failed: {error}"));
}
