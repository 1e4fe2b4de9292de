//! Consumer groups on the mock cluster and on a real broker: how two members
//! split a topic and hand it over, async commits, tens of thousands of
//! commits while another thread polls, and rebalance listeners.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_e2e::numbered::{
    self, consumer_config, describe_reads, expect_none, new_consumer, new_producer, poll_count, Read, POLL_TIMEOUT,
};
use rdkafka_e2e::{drop_within, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    CommitFuture, Consumer, Error, ErrorCode, RebalanceListener, RebalanceProtocol, TopicPartition,
    TopicPartitionOffset, OFFSET_BEGINNING, OFFSET_INVALID,
};

const PARTITIONS: i32 = 4;

/// Messages per partition in each of the two batches of the handover.
const BATCH_PER_PARTITION: usize = 50;

/// Messages that the leaving member reads from the second batch without
/// committing them.
const UNCOMMITTED_READS: usize = 10;

/// Commits that the commit storm issues on the mock, one per message.
const STORM_COMMITS: usize = 20_000;

/// Commits that the commit storm issues on the real broker. With 20,000
/// commits, this test measured about 170 commits a second against the test
/// broker (Kafka 4.1.1, one node, 2 cores), so they took 116 s, and a
/// `committed()` call right after them timed out for another 45 s.
const STORM_COMMITS_REAL_BROKER: usize = 2_000;

/// How long a consumer must stay without messages for "nothing more" checks.
const QUIET_WINDOW: Duration = Duration::from_millis(1_000);

/// How a member leaves the group in the handover.
#[derive(Debug, Clone, Copy)]
enum Leave {
    Close,
    Drop,
}

#[test]
fn handover_eager_mock() {
    handover(&Target::mock(), "range", Leave::Close);
}

#[test]
fn handover_eager_real_broker() {
    if let Some(target) = Target::real_broker() {
        handover(&target, "range", Leave::Close);
    }
}

#[test]
fn handover_cooperative_mock() {
    handover(&Target::mock(), "cooperative-sticky", Leave::Drop);
}

#[test]
fn handover_cooperative_real_broker() {
    if let Some(target) = Target::real_broker() {
        handover(&target, "cooperative-sticky", Leave::Drop);
    }
}

#[test]
fn async_commit_mock() {
    async_commit(&Target::mock());
}

#[test]
fn async_commit_real_broker() {
    if let Some(target) = Target::real_broker() {
        async_commit(&target);
    }
}

#[test]
fn commit_storm_mock() {
    commit_storm(&Target::mock(), STORM_COMMITS);
}

#[test]
fn commit_storm_real_broker() {
    if let Some(target) = Target::real_broker() {
        commit_storm(&target, STORM_COMMITS_REAL_BROKER);
    }
}

#[test]
fn listener_from_beginning_mock() {
    listener_from_beginning(&Target::mock());
}

#[test]
fn listener_from_beginning_real_broker() {
    if let Some(target) = Target::real_broker() {
        listener_from_beginning(&target);
    }
}

#[test]
fn listener_revoke_commits_mock() {
    listener_revoke_commits(&Target::mock());
}

#[test]
fn listener_revoke_commits_real_broker() {
    if let Some(target) = Target::real_broker() {
        listener_revoke_commits(&target);
    }
}

#[test]
fn listener_panic_mock() {
    listener_panic(&Target::mock());
}

#[test]
fn listener_panic_real_broker() {
    if let Some(target) = Target::real_broker() {
        listener_panic(&target);
    }
}

fn subscribe(consumer: &Consumer, topic: &str) {
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
}

fn assigned_partitions(consumer: &Consumer, what: &str) -> BTreeSet<i32> {
    let assignment = consumer
        .assignment()
        .unwrap_or_else(|error| panic!("assignment of {what} failed: {error}"));
    assignment.into_iter().map(|entry| entry.partition).collect()
}

fn all_partitions(topic: &str, count: i32) -> Vec<TopicPartition> {
    (0..count)
        .map(|partition| TopicPartition::new(topic, partition))
        .collect()
}

fn offsets(topic: &str, entries: &[(i32, i64)]) -> Vec<TopicPartitionOffset> {
    entries
        .iter()
        .map(|&(partition, offset)| TopicPartitionOffset::new(topic, partition, offset))
        .collect()
}

fn sorted(mut entries: Vec<TopicPartitionOffset>) -> Vec<TopicPartitionOffset> {
    entries.sort_by_key(|entry| entry.partition);
    entries
}

/// Commits what `consumer` consumed and waits for the result.
fn commit_consumed(consumer: &Consumer, what: &str) -> Vec<TopicPartitionOffset> {
    let committed = consumer
        .commit_consumed()
        .unwrap_or_else(|error| panic!("commit_consumed of {what} failed to start: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit_consumed of {what} failed: {error}"));
    sorted(committed)
}

fn committed(consumer: &Consumer, partitions: &[TopicPartition], what: &str) -> Vec<TopicPartitionOffset> {
    let committed = consumer
        .committed(partitions, WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("committed() of {what} failed: {error}"));
    sorted(committed)
}

/// Sends `per_partition` messages to each partition, starting at
/// `first_offset` in every partition. The message at partition `p` and
/// offset `o` gets id `o * PARTITIONS + p`, and the delivered offsets are
/// checked against it.
fn send_batch(target: &Target, topic: &str, first_offset: usize, per_partition: usize) {
    let producer = new_producer(target);
    let partitions = PARTITIONS as usize;
    for partition in 0..PARTITIONS {
        let ids = (first_offset..first_offset + per_partition).map(|offset| offset * partitions + partition as usize);
        for (delivery, offset) in numbered::send(&producer, topic, Some(partition), ids)
            .iter()
            .zip(first_offset..)
        {
            assert_eq!(
                (delivery.partition, delivery.offset),
                (partition, offset as i64),
                "partition and offset of a delivery to {topic}"
            );
        }
    }
}

/// Polls both members until their assignments are non-empty and together
/// cover all partitions. At every check the two assignments must be
/// disjoint, and no message may arrive because nothing was produced yet.
fn wait_for_split(first: &Consumer, second: &Consumer, topic: &str) -> (BTreeSet<i32>, BTreeSet<i32>) {
    let every: BTreeSet<i32> = (0..PARTITIONS).collect();
    let deadline = Deadline::after(
        WAIT_TIMEOUT,
        format!("second_assigned members to split the {PARTITIONS} partitions of {topic}"),
    );
    loop {
        for (consumer, what) in [(first, "the first member"), (second, "the second member")] {
            if let Some(result) = consumer.poll(Duration::from_millis(50)) {
                match result {
                    Ok(message) => panic!(
                        "{what} read {:?} before anything was produced",
                        numbered::read(&message)
                    ),
                    Err(error) => panic!("poll of {what} failed: {error}"),
                }
            }
        }

        let (first_assigned, second_assigned) = (
            assigned_partitions(first, "the first member"),
            assigned_partitions(second, "the second member"),
        );
        let overlap: Vec<i32> = first_assigned.intersection(&second_assigned).copied().collect();
        assert!(
            overlap.is_empty(),
            "both members have partitions {overlap:?}: first {first_assigned:?}, second {second_assigned:?}"
        );
        let union: BTreeSet<i32> = first_assigned.union(&second_assigned).copied().collect();
        if !first_assigned.is_empty() && !second_assigned.is_empty() && union == every {
            return (first_assigned, second_assigned);
        }
        deadline.check(|| format!("first has {first_assigned:?}, second has {second_assigned:?}"));
    }
}

/// Polls both members until `count` messages arrived in total, and checks
/// that each came from a partition assigned to the member that read it.
fn poll_both(
    first: (&Consumer, &BTreeSet<i32>),
    second: (&Consumer, &BTreeSet<i32>),
    count: usize,
) -> (Vec<Read>, Vec<Read>) {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{count} messages across both members"));
    let mut reads = (Vec::new(), Vec::new());
    while reads.0.len() + reads.1.len() < count {
        deadline.check(|| {
            format!(
                "first read {}, second read {}",
                describe_reads(&reads.0),
                describe_reads(&reads.1)
            )
        });
        for (index, (consumer, partitions)) in [first, second].into_iter().enumerate() {
            let Some(result) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let message = result.unwrap_or_else(|error| panic!("poll of member {index} failed: {error}"));
            let read = numbered::read(&message);
            assert!(
                partitions.contains(&read.partition),
                "member {index} read {read:?} from a partition outside its assignment {partitions:?}"
            );
            if index == 0 {
                reads.0.push(read);
            } else {
                reads.1.push(read);
            }
        }
    }
    reads
}

fn ids_of(reads: &[Read]) -> Vec<usize> {
    let mut ids: Vec<usize> = reads.iter().map(|read| read.id).collect();
    ids.sort_unstable();
    ids
}

/// What happened to the second member of the handover, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    Read(Read),
}

/// Describes steps compactly, with each run of reads from one partition as
/// `read p0 50..=99`.
fn describe_steps(steps: &[Step]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i64, i64)> = None;
    let flush = |run: &mut Option<(i32, i64, i64)>, parts: &mut Vec<String>| {
        if let Some((partition, first, last)) = run.take() {
            parts.push(format!("read p{partition} {first}..={last}"));
        }
    };
    for step in steps {
        match step {
            Step::Read(read) => match &mut run {
                Some((partition, _, last)) if *partition == read.partition && *last + 1 == read.offset => {
                    *last = read.offset;
                }
                _ => {
                    flush(&mut run, &mut parts);
                    run = Some((read.partition, read.offset, read.offset));
                }
            },
            Step::Assigned(partitions) => {
                flush(&mut run, &mut parts);
                parts.push(format!("assigned {partitions:?}"));
            }
            Step::Revoked(partitions) => {
                flush(&mut run, &mut parts);
                parts.push(format!("revoked {partitions:?}"));
            }
        }
    }
    flush(&mut run, &mut parts);
    parts.join(", ")
}

/// Records rebalances in the same log as the test records reads.
struct Recorder(Arc<Mutex<Vec<Step>>>);

impl RebalanceListener for Recorder {
    fn on_assign(&mut self, _consumer: &Consumer, partitions: &mut [TopicPartitionOffset]) {
        let assigned = partitions.iter().map(|entry| entry.partition).collect();
        self.0.lock().unwrap().push(Step::Assigned(assigned));
    }

    fn on_revoke(&mut self, _consumer: &Consumer, partitions: &[TopicPartitionOffset], _lost: bool) {
        let revoked = partitions.iter().map(|entry| entry.partition).collect();
        self.0.lock().unwrap().push(Step::Revoked(revoked));
    }
}

/// Checks the steps of the second member after the first left. A partition
/// it keeps (in `kept_partitions`) continues at `kept_next`, a partition
/// assigned to it starts at the committed offset `committed`, a revoked
/// partition yields nothing until assigned again, and each read is the next
/// offset. So a message is read twice only when its partition was revoked
/// before its offset was committed. Returns the next offset of each
/// partition at the end.
fn check_takeover_steps(
    steps: &[Step],
    kept_partitions: &BTreeSet<i32>,
    kept_next: i64,
    committed: i64,
) -> BTreeMap<i32, i64> {
    let mut next: BTreeMap<i32, i64> = kept_partitions
        .iter()
        .map(|&partition| (partition, kept_next))
        .collect();
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::Assigned(partitions) => {
                for partition in partitions {
                    next.insert(*partition, committed);
                }
            }
            Step::Revoked(partitions) => {
                for partition in partitions {
                    next.remove(partition);
                }
            }
            Step::Read(read) => {
                let expected = next.get(&read.partition).copied();
                assert_eq!(
                    expected,
                    Some(read.offset),
                    "step {index} of the second member read {read:?}, expected the next offset of an assigned \
                     partition; steps: {}",
                    describe_steps(steps)
                );
                next.insert(read.partition, read.offset + 1);
            }
        }
    }
    next
}

/// Splits a 4-partition topic between two members. After both commit a
/// first batch, the first member reads part of a second batch without
/// committing and leaves. The second member must take over all partitions, each from its
/// committed offset, and read the whole second batch, with no message lost
/// and a message read twice only where it was not committed.
fn handover(target: &Target, strategy: &str, leave: Leave) {
    let topic = target.create_topic("group-handover", PARTITIONS);
    let group = unique_name("group-handover");
    let settings = [("partition.assignment.strategy", strategy)];
    let steps = Arc::new(Mutex::new(Vec::new()));
    let first = new_consumer(consumer_config(target, &group, &settings));
    let second = Consumer::builder(consumer_config(target, &group, &settings))
        .rebalance_listener(Recorder(Arc::clone(&steps)))
        .build()
        .unwrap_or_else(|error| panic!("failed to create the second member: {error}"));
    subscribe(&first, &topic);
    subscribe(&second, &topic);

    let (first_partitions, second_partitions) = wait_for_split(&first, &second, &topic);
    let expected_protocol = if strategy == "cooperative-sticky" {
        RebalanceProtocol::Cooperative
    } else {
        RebalanceProtocol::Eager
    };
    assert_eq!(
        first.rebalance_protocol(),
        expected_protocol,
        "rebalance protocol of the first member with {strategy}"
    );
    assert_eq!(
        second.rebalance_protocol(),
        expected_protocol,
        "rebalance protocol of the second member with {strategy}"
    );

    // First batch: offsets 0..50 of every partition, read and committed by
    // the member that owns each partition.
    send_batch(target, &topic, 0, BATCH_PER_PARTITION);
    let batch = BATCH_PER_PARTITION * PARTITIONS as usize;
    let (first_reads, second_reads) = poll_both((&first, &first_partitions), (&second, &second_partitions), batch);
    let mut both = ids_of(&first_reads);
    both.extend(ids_of(&second_reads));
    both.sort_unstable();
    assert_eq!(
        both,
        (0..batch).collect::<Vec<_>>(),
        "ids of the first batch read by both members together"
    );

    let full = BATCH_PER_PARTITION as i64;
    let expected_first: Vec<(i32, i64)> = first_partitions.iter().map(|&partition| (partition, full)).collect();
    let expected_second: Vec<(i32, i64)> = second_partitions.iter().map(|&partition| (partition, full)).collect();
    assert_eq!(
        commit_consumed(&first, "the first member"),
        offsets(&topic, &expected_first),
        "first member's commit"
    );
    assert_eq!(
        commit_consumed(&second, "the second member"),
        offsets(&topic, &expected_second),
        "second member's commit"
    );

    // Second batch: offsets 50..100. The first member reads a few of its
    // messages and leaves without committing them.
    send_batch(target, &topic, BATCH_PER_PARTITION, BATCH_PER_PARTITION);
    let uncommitted = poll_count(&first, UNCOMMITTED_READS, "the first member in the second batch");
    let mut first_next: BTreeMap<i32, i64> = first_partitions.iter().map(|&partition| (partition, full)).collect();
    for read in &uncommitted {
        let expected = first_next.get(&read.partition).copied();
        assert_eq!(
            expected,
            Some(read.offset),
            "first member's read {read:?} in the second batch"
        );
        first_next.insert(read.partition, read.offset + 1);
    }

    let bound = Duration::from_secs(30);
    match leave {
        Leave::Close => {
            let started = Instant::now();
            first.close(bound).unwrap_or_else(|error| {
                panic!(
                    "close of the first member failed after {:?}: {error}",
                    started.elapsed()
                )
            });
        }
        Leave::Drop => {
            drop_within(first, bound, "the first member");
        }
    }

    // The second member takes over every partition and reads offsets
    // 50..100 of each. It is done when, by the steps it took, every
    // partition is assigned and read up to offset 100.
    let takeover_start = steps.lock().unwrap().len();
    let everything: BTreeMap<i32, i64> = (0..PARTITIONS).map(|partition| (partition, 2 * full)).collect();
    let deadline = Deadline::after(
        WAIT_TIMEOUT,
        format!("the second member to read the second batch of {topic}"),
    );
    let mut taken_over = BTreeSet::new();
    loop {
        let next = check_takeover_steps(&steps.lock().unwrap()[takeover_start..], &second_partitions, full, full);
        if next == everything {
            break;
        }
        deadline.check(|| {
            format!(
                "next offsets {next:?}; {}",
                describe_missing_ids(batch..2 * batch, &taken_over)
            )
        });
        let Some(result) = second.poll(POLL_TIMEOUT) else {
            continue;
        };
        let message = result.unwrap_or_else(|error| panic!("poll of the second member failed: {error}"));
        let read = numbered::read(&message);
        steps.lock().unwrap().push(Step::Read(read));
        taken_over.insert(read.id);
    }
    expect_none(&second, QUIET_WINDOW, "the second member after the second batch");
    assert_eq!(
        assigned_partitions(&second, "the second member"),
        (0..PARTITIONS).collect::<BTreeSet<i32>>(),
        "second member's assignment after the first left"
    );
    assert_eq!(
        second.rebalance_protocol(),
        expected_protocol,
        "rebalance protocol after the handover"
    );
    assert_eq!(
        taken_over,
        (batch..2 * batch).collect(),
        "ids of the second batch read by the second member"
    );

    let steps = steps.lock().unwrap().split_off(takeover_start);
    let read_twice = steps.iter().filter(|step| matches!(step, Step::Read(_))).count() - batch;
    eprintln!(
        "the second member read {read_twice} messages twice on the {}: {}",
        target.kind(),
        describe_steps(&steps)
    );

    let final_offsets: Vec<(i32, i64)> = everything.into_iter().collect();
    assert_eq!(
        commit_consumed(&second, "the second member"),
        offsets(&topic, &final_offsets),
        "final commit"
    );
    assert_eq!(
        committed(&second, &all_partitions(&topic, PARTITIONS), "the second member"),
        offsets(&topic, &final_offsets),
        "committed offsets after the handover"
    );
}

fn describe_missing_ids(expected: std::ops::Range<usize>, got: &BTreeSet<usize>) -> String {
    let missing: Vec<usize> = expected.filter(|id| !got.contains(id)).take(20).collect();
    format!("got {} ids, first missing {missing:?}", got.len())
}

/// A waker that counts its calls.
#[derive(Default)]
struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls a commit future by hand until it resolves, and checks that its
/// waker was called once, or not at all when the first poll was ready.
fn resolve_once(future: CommitFuture, what: &str) -> Result<Vec<TopicPartitionOffset>, Error> {
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(Arc::clone(&counter));
    let mut context = Context::from_waker(&waker);
    let mut pinned = std::pin::pin!(future);
    if let Poll::Ready(result) = pinned.as_mut().poll(&mut context) {
        return result;
    }

    let deadline = Deadline::after(WAIT_TIMEOUT, format!("the waker of {what}"));
    while counter.wakes.load(Ordering::SeqCst) == 0 {
        deadline.check(|| "the future is pending and its waker was not called".to_owned());
        thread::sleep(Duration::from_millis(5));
    }
    // A second call of the waker would show up in this window.
    thread::sleep(Duration::from_millis(100));
    let Poll::Ready(result) = pinned.as_mut().poll(&mut context) else {
        panic!("{what} is still pending after its waker was called");
    };
    assert_eq!(counter.wakes.load(Ordering::SeqCst), 1, "calls of the waker of {what}");
    result
}

/// Returns the `Debug` output of `consumer`, which shows how many commits
/// are still pending.
fn pending_commits(consumer: &Consumer) -> String {
    format!("{consumer:?}")
}

/// Checks that an async commit resolves once with the offsets, that
/// `committed()` returns them and that the next member starts there.
/// Commits for partitions that the consumer does not own must resolve
/// within a bound.
fn async_commit(target: &Target) {
    let topic = target.create_topic("group-async-commit", 1);
    let other = target.create_topic("group-async-other", 1);
    let group = unique_name("group-async-commit");
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..10);

    let consumer = new_consumer(consumer_config(target, &group, &[]));
    subscribe(&consumer, &topic);
    let reads = poll_count(&consumer, 6, "the first member");
    let ids: Vec<usize> = reads.iter().map(|read| read.id).collect();
    assert_eq!(ids, (0..6).collect::<Vec<_>>(), "ids of the first six reads");

    let future = consumer
        .commit_offsets(&offsets(&topic, &[(0, 6)]))
        .unwrap_or_else(|error| panic!("commit_offsets failed to start: {error}"));
    let result = resolve_once(future, "the commit of offset 6");
    assert_eq!(
        result.unwrap_or_else(|error| panic!("commit of offset 6 failed: {error}")),
        offsets(&topic, &[(0, 6)]),
        "offsets the commit future resolved to"
    );
    assert_eq!(
        pending_commits(&consumer),
        "Consumer { pending_commits: 0, .. }",
        "consumer after the commit"
    );
    assert_eq!(
        committed(&consumer, &all_partitions(&topic, 1), "the first member"),
        offsets(&topic, &[(0, 6)]),
        "committed() after the async commit"
    );

    check_foreign_commits(&consumer, &topic, &other);

    let started = Instant::now();
    consumer.close(Duration::from_secs(30)).unwrap_or_else(|error| {
        panic!(
            "close of the first member failed after {:?}: {error}",
            started.elapsed()
        )
    });

    let next = new_consumer(consumer_config(target, &group, &[]));
    subscribe(&next, &topic);
    let resumed = poll_count(&next, 4, "the next member");
    let expected: Vec<Read> = (6..10)
        .map(|id| Read {
            partition: 0,
            offset: id as i64,
            id,
        })
        .collect();
    assert_eq!(
        resumed, expected,
        "reads of the next member, which must start at the committed offset 6"
    );
    expect_none(&next, QUIET_WINDOW, "the next member after offset 9");
}

/// Commits offsets for partitions that `consumer` was not assigned, each
/// of which must resolve within a bound. A partition of a topic the member
/// did not subscribe to is committed, because Kafka's group coordinator
/// checks the member and generation of a commit but not which partitions
/// the member owns. A partition or topic that does not exist fails with
/// `UNKNOWN_TOPIC_OR_PART`.
fn check_foreign_commits(consumer: &Consumer, topic: &str, other: &str) {
    let bound = Duration::from_secs(15);
    let commit = |entry: &TopicPartitionOffset, case: &str| {
        let outcome = consumer
            .commit_offsets(std::slice::from_ref(entry))
            .and_then(|future| future.wait_timeout(bound));
        if let Err(Error::TimedOut { .. }) = outcome {
            panic!("commit for {case} ({entry:?}) is still pending after {bound:?}");
        }
        outcome
    };

    let unsubscribed = TopicPartitionOffset::new(other, 0, 3);
    let outcome = commit(&unsubscribed, "a partition of a topic not subscribed to");
    let committed_offsets =
        outcome.unwrap_or_else(|error| panic!("commit for a topic not subscribed to failed: {error}"));
    assert_eq!(
        committed_offsets,
        vec![unsubscribed.clone()],
        "offsets of the commit for a topic not subscribed to"
    );
    assert_eq!(
        committed(consumer, &all_partitions(other, 1), "the member"),
        vec![unsubscribed],
        "committed offset of the topic not subscribed to"
    );

    let missing_topic = unique_name("group-async-missing");
    let missing = [
        (
            "a partition that does not exist",
            TopicPartitionOffset::new(topic, 7, 3),
        ),
        (
            "a topic that does not exist",
            TopicPartitionOffset::new(&missing_topic, 0, 3),
        ),
    ];
    for (case, entry) in missing {
        match commit(&entry, case) {
            Err(error) => assert_eq!(
                error.code(),
                Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
                "error of the commit for {case}: {error}"
            ),
            Ok(committed_offsets) => panic!("commit for {case} succeeded with {committed_offsets:?}"),
        }
    }
}

/// The offset that a commit of the storm committed, and its result.
type CommitOutcome = (i64, Result<Vec<TopicPartitionOffset>, Error>);

/// What the polling thread of the commit storm hands to the main thread.
enum Polled {
    /// A partition 1 message at this offset, for the main thread to commit.
    ToCommit(i64),
    /// The future of the polling thread's own commit of a partition 0
    /// message, with the offset it commits.
    Committing(i64, CommitFuture),
}

/// Commits every one of `commits` messages on its own while
/// another thread polls. The polling thread commits its partition 0
/// messages with `commit_message`, and the main thread commits the
/// partition 1 messages with `commit_offsets`. Every commit future must
/// resolve to its own offset within a bound, while the other thread still
/// polls, and the last offsets must be committed.
fn commit_storm(target: &Target, commits: usize) {
    let topic = target.create_topic("group-commit-storm", 2);
    let group = unique_name("group-commit-storm");
    let per_partition = commits / 2;
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..per_partition);
    numbered::send(&producer, &topic, Some(1), per_partition..commits);
    drop(producer);

    let consumer = new_consumer(consumer_config(target, &group, &[]));
    subscribe(&consumer, &topic);
    let stop_polling = AtomicBool::new(false);
    let started = Instant::now();
    let deadline = Deadline::after(
        Duration::from_secs(60),
        format!("{commits} commits while another thread polls"),
    );

    let (polled, futures) = thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<Polled>();
        let poller = scope.spawn(|| {
            let sender = sender;
            let mut polled = 0;
            while !stop_polling.load(Ordering::Acquire) && !deadline.is_expired() {
                let Some(result) = consumer.poll(POLL_TIMEOUT) else {
                    continue;
                };
                let message = result.unwrap_or_else(|error| panic!("poll during the commit storm failed: {error}"));
                polled += 1;
                let handed = if message.partition() == 0 {
                    let future = consumer.commit_message(&message).unwrap_or_else(|error| {
                        panic!("commit_message at offset {} failed to start: {error}", message.offset())
                    });
                    Polled::Committing(message.offset() + 1, future)
                } else {
                    Polled::ToCommit(message.offset())
                };
                // The receiver is gone only when the main thread failed.
                let _ = sender.send(handed);
            }
            polled
        });

        // Futures by partition, each with the offset it commits.
        let mut futures: [Vec<(i64, CommitFuture)>; 2] = [Vec::new(), Vec::new()];
        while futures[0].len() + futures[1].len() < commits {
            let Ok(handed) = receiver.recv_timeout(deadline.remaining()) else {
                stop_polling.store(true, Ordering::Release);
                deadline.fail(format!(
                    "{} partition 0 and {} partition 1 commits were issued, or the polling thread failed \
                     (see its panic)",
                    futures[0].len(),
                    futures[1].len()
                ));
            };
            match handed {
                Polled::Committing(next, future) => futures[0].push((next, future)),
                Polled::ToCommit(offset) => {
                    let next = offset + 1;
                    let future = consumer
                        .commit_offsets(&offsets(&topic, &[(1, next)]))
                        .unwrap_or_else(|error| panic!("commit_offsets of offset {next} failed to start: {error}"));
                    futures[1].push((next, future));
                }
            }
        }

        // The polling thread goes on polling while the futures resolve.
        let results: Vec<Vec<CommitOutcome>> = futures
            .into_iter()
            .map(|partition_futures| {
                partition_futures
                    .into_iter()
                    .map(|(next, future)| (next, future.wait_timeout(deadline.remaining())))
                    .collect()
            })
            .collect();
        stop_polling.store(true, Ordering::Release);
        let polled = poller.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (polled, results)
    });
    let elapsed = started.elapsed();
    assert_eq!(polled, commits, "messages read during the commit storm");

    for (partition, results) in (0..).zip(futures) {
        assert_eq!(results.len(), per_partition, "commits issued for partition {partition}");
        let mut failures = Vec::new();
        for (next, result) in results {
            match result {
                Ok(committed) => assert_eq!(
                    committed,
                    offsets(&topic, &[(partition, next)]),
                    "offsets of the commit of offset {next} in partition {partition}"
                ),
                Err(error) => failures.push(format!("offset {next}: {error}")),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {per_partition} commits in partition {partition} failed or timed out, first {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    assert_eq!(
        pending_commits(&consumer),
        "Consumer { pending_commits: 0, .. }",
        "consumer after the storm"
    );

    let last = per_partition as i64;
    assert_eq!(
        committed(&consumer, &all_partitions(&topic, 2), "the consumer"),
        offsets(&topic, &[(0, last), (1, last)]),
        "committed offsets after the storm"
    );
    eprintln!("{commits} commits on the {} resolved in {elapsed:?}", target.kind());
}

/// What a recording listener saw.
#[derive(Debug, Default)]
struct Seen {
    assigned: Vec<Vec<TopicPartitionOffset>>,
    revoked: Vec<(Vec<TopicPartitionOffset>, bool)>,
    revoke_commits: Vec<Result<Vec<TopicPartitionOffset>, String>>,
}

/// Starts every assigned partition from its beginning, and records what it
/// was given.
struct FromBeginning(Arc<Mutex<Seen>>);

impl RebalanceListener for FromBeginning {
    fn on_assign(&mut self, _consumer: &Consumer, partitions: &mut [TopicPartitionOffset]) {
        self.0.lock().unwrap().assigned.push(partitions.to_vec());
        for partition in partitions {
            partition.offset = OFFSET_BEGINNING;
        }
    }
}

/// Commits what was consumed before partitions are revoked, and records
/// the commit's result.
struct CommitOnRevoke(Arc<Mutex<Seen>>);

impl RebalanceListener for CommitOnRevoke {
    fn on_assign(&mut self, _consumer: &Consumer, partitions: &mut [TopicPartitionOffset]) {
        self.0.lock().unwrap().assigned.push(partitions.to_vec());
    }

    fn on_revoke(&mut self, consumer: &Consumer, partitions: &[TopicPartitionOffset], lost: bool) {
        let result = consumer
            .commit_consumed()
            .and_then(|future| future.wait_timeout(Duration::from_secs(10)))
            .map(sorted)
            .map_err(|error| error.to_string());
        let mut seen = self.0.lock().unwrap();
        seen.revoked.push((partitions.to_vec(), lost));
        seen.revoke_commits.push(result);
    }
}

/// Panics in both methods after counting the call.
struct Panicking(Arc<Mutex<Seen>>);

impl RebalanceListener for Panicking {
    fn on_assign(&mut self, _consumer: &Consumer, partitions: &mut [TopicPartitionOffset]) {
        self.0.lock().unwrap().assigned.push(partitions.to_vec());
        panic!("test listener panics in on_assign");
    }

    fn on_revoke(&mut self, _consumer: &Consumer, partitions: &[TopicPartitionOffset], lost: bool) {
        self.0.lock().unwrap().revoked.push((partitions.to_vec(), lost));
        panic!("test listener panics in on_revoke");
    }
}

fn with_listener(target: &Target, group: &str, listener: impl RebalanceListener + 'static) -> Consumer {
    Consumer::builder(consumer_config(target, group, &[]))
        .rebalance_listener(listener)
        .build()
        .unwrap_or_else(|error| panic!("failed to create a consumer with a listener: {error}"))
}

/// Checks that a listener that sets `OFFSET_BEGINNING` on assignment makes
/// a member re-read both partitions from offset 0, although the group
/// committed everything.
fn listener_from_beginning(target: &Target) {
    let topic = target.create_topic("group-from-beginning", 2);
    let group = unique_name("group-from-beginning");
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..10);
    numbered::send(&producer, &topic, Some(1), 10..20);

    let first = new_consumer(consumer_config(target, &group, &[]));
    subscribe(&first, &topic);
    poll_count(&first, 20, "the first member");
    assert_eq!(
        commit_consumed(&first, "the first member"),
        offsets(&topic, &[(0, 10), (1, 10)]),
        "first commit"
    );
    first
        .close(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("close of the first member failed: {error}"));

    let seen = Arc::new(Mutex::new(Seen::default()));
    let second = with_listener(target, &group, FromBeginning(Arc::clone(&seen)));
    subscribe(&second, &topic);
    let mut reads = poll_count(&second, 20, "the member with the listener");
    reads.sort();
    let expected: Vec<Read> = (0..20)
        .map(|id| Read {
            partition: (id / 10) as i32,
            offset: (id % 10) as i64,
            id,
        })
        .collect();
    assert_eq!(reads, expected, "reads after on_assign set OFFSET_BEGINNING");
    expect_none(
        &second,
        QUIET_WINDOW,
        "the member with the listener after both partitions",
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen.assigned.len(), 1, "on_assign calls: {:?}", seen.assigned);
    assert_eq!(
        sorted(seen.assigned[0].clone()),
        offsets(&topic, &[(0, OFFSET_INVALID), (1, OFFSET_INVALID)]),
        "partitions given to on_assign"
    );
}

/// Commits in `on_revoke` of a listener, once when the member unsubscribes
/// and once when it closes. Each commit must cover exactly what was read,
/// and the next subscription and the next member must resume there.
fn listener_revoke_commits(target: &Target) {
    let topic = target.create_topic("group-revoke-commits", 1);
    let group = unique_name("group-revoke-commits");
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..20);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let consumer = with_listener(target, &group, CommitOnRevoke(Arc::clone(&seen)));
    subscribe(&consumer, &topic);
    let reads = poll_count(&consumer, 5, "the member before unsubscribing");
    assert_eq!(
        reads.last().map(|read| read.offset),
        Some(4),
        "last offset read before unsubscribing"
    );

    consumer
        .unsubscribe()
        .unwrap_or_else(|error| panic!("unsubscribe failed: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, "on_revoke after unsubscribe");
    while seen.lock().unwrap().revoked.is_empty() {
        deadline.check(|| "the listener saw no revocation".to_owned());
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll after unsubscribe failed: {error}"));
            panic!("read {:?} after unsubscribe", numbered::read(&message));
        }
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.revoked,
            vec![(offsets(&topic, &[(0, OFFSET_INVALID)]), false)],
            "on_revoke after unsubscribe"
        );
        assert_eq!(
            seen.revoke_commits,
            vec![Ok(offsets(&topic, &[(0, 5)]))],
            "commit in on_revoke after unsubscribe"
        );
    }

    subscribe(&consumer, &topic);
    let reads = poll_count(&consumer, 3, "the member after subscribing again");
    let expected: Vec<Read> = (5..8)
        .map(|id| Read {
            partition: 0,
            offset: id as i64,
            id,
        })
        .collect();
    assert_eq!(
        reads, expected,
        "reads after subscribing again, which resume at the commit of on_revoke"
    );

    let started = Instant::now();
    consumer
        .close(Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("close failed after {:?}: {error}", started.elapsed()));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.revoked.len(), 2, "on_revoke calls after close: {:?}", seen.revoked);
        assert!(!seen.revoked[1].1, "the revocation on close is not a loss");
        assert_eq!(
            seen.revoke_commits[1],
            Ok(offsets(&topic, &[(0, 8)])),
            "commit in on_revoke during close"
        );
    }

    let next = new_consumer(consumer_config(target, &group, &[]));
    assert_eq!(
        committed(&next, &all_partitions(&topic, 1), "the next member"),
        offsets(&topic, &[(0, 8)]),
        "committed offset after close"
    );
    subscribe(&next, &topic);
    let first = poll_count(&next, 1, "the next member");
    assert_eq!(
        first,
        vec![Read {
            partition: 0,
            offset: 8,
            id: 8
        }],
        "first read of the next member"
    );
}

/// Checks that with a listener that panics in both methods the assignment
/// goes ahead, every message arrives, and close still finishes.
fn listener_panic(target: &Target) {
    let topic = target.create_topic("group-listener-panic", 2);
    let group = unique_name("group-listener-panic");
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..5);
    numbered::send(&producer, &topic, Some(1), 5..10);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let consumer = with_listener(target, &group, Panicking(Arc::clone(&seen)));
    subscribe(&consumer, &topic);
    let reads = poll_count(&consumer, 10, "the member with a panicking listener");
    assert_eq!(
        ids_of(&reads),
        (0..10).collect::<Vec<_>>(),
        "ids read despite the panic in on_assign"
    );
    assert_eq!(
        assigned_partitions(&consumer, "the member"),
        BTreeSet::from([0, 1]),
        "assignment after the panic in on_assign"
    );
    assert_eq!(seen.lock().unwrap().assigned.len(), 1, "on_assign calls");

    let started = Instant::now();
    consumer.close(Duration::from_secs(30)).unwrap_or_else(|error| {
        panic!(
            "close after a panic in on_revoke failed after {:?}: {error}",
            started.elapsed()
        )
    });
    assert_eq!(seen.lock().unwrap().revoked.len(), 1, "on_revoke calls on close");
}
