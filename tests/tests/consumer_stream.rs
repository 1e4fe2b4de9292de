//! Reading messages through `recv()` and `messages()`, on the mock cluster
//! and on a real broker, and closing or dropping a consumer while its group
//! rebalances.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rdkafka_e2e::numbered::{self, consumer_config, expect_none, new_consumer, new_producer, Read, POLL_TIMEOUT};
use rdkafka_e2e::{block_on, describe_missing, drop_within, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{Consumer, Message, Result};

#[test]
fn recv_after_delay_mock() {
    recv_after_delay(&Target::mock());
}

#[test]
fn recv_after_delay_real_broker() {
    if let Some(target) = Target::real_broker() {
        recv_after_delay(&target);
    }
}

#[test]
fn recv_dropped_mock() {
    recv_dropped(&Target::mock());
}

#[test]
fn recv_dropped_real_broker() {
    if let Some(target) = Target::real_broker() {
        recv_dropped(&target);
    }
}

#[test]
fn messages_in_order_mock() {
    messages_in_order(Target::mock());
}

#[test]
fn messages_in_order_real_broker() {
    if let Some(target) = Target::real_broker() {
        messages_in_order(target);
    }
}

#[test]
fn close_during_rebalance_mock() {
    leave_during_rebalance(&Target::mock(), Leave::Close);
}

#[test]
fn close_during_rebalance_real_broker() {
    if let Some(target) = Target::real_broker() {
        leave_during_rebalance(&target, Leave::Close);
    }
}

#[test]
fn close_unpolled_mock() {
    close_unpolled(&Target::mock());
}

#[test]
fn close_unpolled_real_broker() {
    if let Some(target) = Target::real_broker() {
        close_unpolled(&target);
    }
}

#[test]
fn drop_during_rebalance_mock() {
    leave_during_rebalance(&Target::mock(), Leave::Drop);
}

#[test]
fn drop_during_rebalance_real_broker() {
    if let Some(target) = Target::real_broker() {
        leave_during_rebalance(&target, Leave::Drop);
    }
}

fn subscribe(consumer: &Consumer, topic: &str) {
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
}

/// Reads every message with `block_on(consumer.recv())` after a delay in
/// which statistics events pile up in the consumer queue, while more
/// messages arrive during the reads. Each message must arrive, in order.
fn recv_after_delay(target: &Target) {
    const BEFORE: usize = 100;
    const DURING: usize = 100;
    let topic = target.create_topic("stream-recv", 1);
    let producer = new_producer(target);
    numbered::send(&producer, &topic, Some(0), 0..BEFORE);

    let config = consumer_config(target, &unique_name("stream-recv"), &[("statistics.interval.ms", "50")]);
    let consumer = new_consumer(config);
    subscribe(&consumer, &topic);
    thread::sleep(Duration::from_millis(500));

    thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for batch in (BEFORE..BEFORE + DURING).collect::<Vec<_>>().chunks(10) {
                numbered::send(&producer, &topic, Some(0), batch.iter().copied());
                thread::sleep(Duration::from_millis(20));
            }
        });

        for expected in 0..BEFORE + DURING {
            let what = format!("recv() of message {expected}");
            let message =
                block_on(consumer.recv(), WAIT_TIMEOUT, &what).unwrap_or_else(|error| panic!("{what} failed: {error}"));
            let read = numbered::read(&message);
            assert_eq!(
                read,
                Read {
                    partition: 0,
                    offset: expected as i64,
                    id: expected
                },
                "message {expected} read by recv()"
            );
        }
        sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    expect_none(
        &consumer,
        Duration::from_millis(300),
        "the consumer after the last message",
    );
}

/// A waker that counts its calls and unparks the thread that polls.
struct UnparkCounter {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for UnparkCounter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// What one race between `recv()` and a timer ended with.
enum Race<'c> {
    Message(Result<Message<'c>>),
    /// The timer won, and the `recv()` future was dropped while pending.
    TimerWon,
}

/// Races a fresh `recv()` future against a timer of `timer`, as a
/// `select!` of the two would. The future is polled once, then again each
/// time its waker runs. When it is not ready by the time the timer expires,
/// it is dropped.
fn race_recv<'c>(consumer: &'c Consumer, timer: Duration, waker: &Arc<UnparkCounter>) -> Race<'c> {
    let mut future = pin!(consumer.recv());
    let as_waker = Waker::from(Arc::clone(waker));
    let mut context = Context::from_waker(&as_waker);
    let end = Instant::now() + timer;
    loop {
        let seen = waker.wakes.load(Ordering::SeqCst);
        if let Poll::Ready(result) = future.as_mut().poll(&mut context) {
            return Race::Message(result);
        }
        while waker.wakes.load(Ordering::SeqCst) == seen {
            let now = Instant::now();
            if now >= end {
                return Race::TimerWon;
            }
            thread::park_timeout(end - now);
        }
    }
}

/// Races `recv()` against timers of 0 to 2 ms many times while another
/// thread produces. Each race that the timer wins drops a pending `recv()`
/// future. In the end every id must have been read exactly once.
fn recv_dropped(target: &Target) {
    const COUNT: usize = 2_000;
    let topic = target.create_topic("stream-recv-race", 2);
    let producer = new_producer(target);
    let consumer = new_consumer(consumer_config(target, &unique_name("stream-recv-race"), &[]));
    subscribe(&consumer, &topic);
    let waker = Arc::new(UnparkCounter {
        thread: thread::current(),
        wakes: AtomicUsize::new(0),
    });

    let timers = [
        Duration::ZERO,
        Duration::from_micros(300),
        Duration::from_millis(1),
        Duration::from_millis(2),
    ];
    let mut races = 0usize;
    let mut timer_wins = 0usize;
    let mut reads: BTreeMap<usize, Read> = BTreeMap::new();
    thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for batch in (0..COUNT).collect::<Vec<_>>().chunks(50) {
                numbered::send(&producer, &topic, None, batch.iter().copied());
                thread::sleep(Duration::from_millis(5));
            }
        });

        let deadline = Deadline::after(WAIT_TIMEOUT, format!("{COUNT} messages through raced recv() futures"));
        while reads.len() < COUNT {
            deadline.check(|| describe_missing(COUNT, &reads.keys().copied().collect()));
            let timer = timers[races % timers.len()];
            races += 1;
            match race_recv(&consumer, timer, &waker) {
                Race::TimerWon => timer_wins += 1,
                Race::Message(result) => {
                    let message = result.unwrap_or_else(|error| panic!("raced recv() failed: {error}"));
                    let read = numbered::read(&message);
                    if let Some(earlier) = reads.insert(read.id, read) {
                        panic!("id {} was read twice: {earlier:?} and {read:?}", read.id);
                    }
                }
            }
        }
        sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });

    // More races that find nothing: each must end with the timer.
    for _ in 0..200 {
        if let Race::Message(result) = race_recv(&consumer, Duration::from_millis(1), &waker) {
            let described = result.map(|message| format!("{:?}", numbered::read(&message)));
            panic!("a raced recv() returned {described:?} after all {COUNT} messages were read");
        }
    }

    for partition in 0..2 {
        let offsets: Vec<i64> = reads
            .values()
            .filter(|read| read.partition == partition)
            .map(|read| read.offset)
            .collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(
            offsets.len() as i64,
            sorted.last().map_or(0, |last| last + 1),
            "offsets of partition {partition} have a gap"
        );
    }
    assert!(
        timer_wins > 0,
        "no race dropped a pending recv() future, so the test checked nothing"
    );
    eprintln!(
        "{races} races on the {}: {timer_wins} dropped a pending recv(), {} read a message",
        target.kind(),
        reads.len()
    );
}

/// Runs `scenario` on a thread of its own and waits up to `bound` for it,
/// failing with `what` when it has not finished by then. For blocking calls
/// that have no timeout of their own, such as the `messages()` iterator.
/// The thread of a scenario that never finishes is left running.
#[track_caller]
fn run_within<T: Send + 'static>(bound: Duration, what: &str, scenario: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    let handle = thread::spawn(move || {
        let output = scenario();
        // The receiver is gone only after a timeout, which already failed.
        let _ = sender.send(output);
    });
    match receiver.recv_timeout(bound) {
        Ok(output) => output,
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the scenario thread ended without sending its output"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out after {bound:?} waiting for {what}"),
    }
}

/// Reads every message of a 4-partition topic through the `messages()`
/// iterator, which must yield each partition's messages in offset order,
/// and then a marker message sent afterwards as the next item.
fn messages_in_order(target: Target) {
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 50;
    const COUNT: usize = PARTITIONS as usize * PER_PARTITION;

    run_within(
        WAIT_TIMEOUT,
        "the messages() iterator to yield every message",
        move || {
            let topic = target.create_topic("stream-messages", PARTITIONS);
            let producer = new_producer(&target);
            for partition in 0..PARTITIONS {
                let ids = (0..PER_PARTITION).map(|offset| offset * PARTITIONS as usize + partition as usize);
                numbered::send(&producer, &topic, Some(partition), ids);
            }
            let consumer = new_consumer(consumer_config(&target, &unique_name("stream-messages"), &[]));
            subscribe(&consumer, &topic);

            let mut messages = consumer.messages();
            let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|partition| (partition, 0)).collect();
            for index in 0..COUNT {
                let message = messages
                    .next()
                    .expect("the messages() iterator never ends")
                    .unwrap_or_else(|error| panic!("item {index} of messages() is an error: {error}"));
                let read = numbered::read(&message);
                let expected = next[&read.partition];
                assert_eq!(read.offset, expected, "offset of item {index} of messages(), {read:?}");
                assert_eq!(
                    read.id,
                    expected as usize * PARTITIONS as usize + read.partition as usize,
                    "id of {read:?}"
                );
                next.insert(read.partition, expected + 1);
            }
            let ends: BTreeSet<i64> = next.values().copied().collect();
            assert_eq!(
                ends,
                BTreeSet::from([PER_PARTITION as i64]),
                "next offset of each partition: {next:?}"
            );

            numbered::send(&producer, &topic, Some(0), [COUNT]);
            let marker = messages
                .next()
                .expect("the messages() iterator never ends")
                .unwrap_or_else(|error| panic!("the item after every message is an error: {error}"));
            assert_eq!(
                numbered::read(&marker),
                Read {
                    partition: 0,
                    offset: PER_PARTITION as i64,
                    id: COUNT
                },
                "the item of messages() after every message"
            );
        },
    );
}

#[derive(Debug, Clone, Copy)]
enum Leave {
    Close,
    Drop,
}

/// Subscribes and lets the group assign partitions without polling, so the
/// assignment event waits in the consumer queue, then closes. The close
/// must return within its timeout.
fn close_unpolled(target: &Target) {
    let topic = target.create_topic("stream-close-unpolled", 1);
    let consumer = new_consumer(consumer_config(target, &unique_name("stream-close-unpolled"), &[]));
    subscribe(&consumer, &topic);
    thread::sleep(Duration::from_millis(1_500));

    let timeout = Duration::from_secs(5);
    let (elapsed, outcome) = close_within(
        consumer,
        timeout,
        timeout + Duration::from_secs(5),
        "an unpolled consumer",
    );
    outcome.unwrap_or_else(|error| panic!("close of an unpolled consumer failed after {elapsed:?}: {error}"));
}

/// Returns the session timeout of a group on `target`: 3 s on the mock, as
/// `Target::group_config` sets it, and librdkafka's default of 45 s on the
/// broker.
fn session_timeout(target: &Target) -> Duration {
    match target {
        Target::Mock(_) => Duration::from_secs(3),
        Target::RealBroker(_) => Duration::from_secs(45),
    }
}

/// Stops polling a member while a second member joins, so the group waits
/// for it in a rebalance. Closing or dropping it then must finish within
/// the session timeout plus a margin, and the second member must get every
/// partition.
fn leave_during_rebalance(target: &Target, leave: Leave) {
    const PARTITIONS: i32 = 2;
    let topic = target.create_topic("stream-leave-rebalance", PARTITIONS);
    let group = unique_name("stream-leave-rebalance");
    let settings = [("heartbeat.interval.ms", "500")];
    let close_timeout = Duration::from_secs(60);
    let first = Consumer::builder(consumer_config(target, &group, &settings))
        .close_timeout(close_timeout)
        .build()
        .unwrap_or_else(|error| panic!("failed to create the first member: {error}"));
    subscribe(&first, &topic);
    let every: BTreeSet<i32> = (0..PARTITIONS).collect();
    let deadline = Deadline::after(WAIT_TIMEOUT, "the first member to be assigned every partition");
    loop {
        let assigned = assigned_partitions(&first);
        if assigned == every {
            break;
        }
        deadline.check(|| format!("it has {assigned:?}"));
        if let Some(result) = first.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of the first member failed: {error}"));
            panic!(
                "the first member read {:?} from an empty topic",
                numbered::read(&message)
            );
        }
    }

    let second = new_consumer(consumer_config(target, &group, &settings));
    subscribe(&second, &topic);
    // The second member's join starts a rebalance that waits for the first
    // member, which no longer polls. Three heartbeats of 500 ms let the
    // first member learn of it.
    let join_deadline = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < join_deadline {
        if let Some(result) = second.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of the second member failed: {error}"));
            panic!(
                "the second member read {:?} from an empty topic",
                numbered::read(&message)
            );
        }
    }
    assert!(
        assigned_partitions(&second).is_empty(),
        "the second member got partitions before the first left"
    );

    let bound = session_timeout(target) + Duration::from_secs(5);
    let elapsed = match leave {
        // NOTE: close and drop can block here without end. hl handles the
        // rebalance events of closing with rd_kafka_assign, whose request
        // librdkafka 2.12.1 drops without a reply once the group has
        // terminated. That happened in about one of a dozen runs of this
        // file, so both calls are bounded.
        Leave::Close => {
            let (elapsed, outcome) = close_within(first, close_timeout, bound, "the first member during a rebalance");
            outcome.unwrap_or_else(|error| panic!("close during a rebalance failed after {elapsed:?}: {error}"));
            elapsed
        }
        Leave::Drop => drop_within(first, bound, "the first member during a rebalance"),
    };
    assert!(
        elapsed <= bound,
        "{leave:?} during a rebalance took {elapsed:?}, more than {bound:?}"
    );

    let deadline = Deadline::after(WAIT_TIMEOUT, "the second member to be assigned every partition");
    loop {
        let assigned = assigned_partitions(&second);
        if assigned == every {
            break;
        }
        deadline.check(|| format!("it has {assigned:?}"));
        if let Some(result) = second.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of the second member failed: {error}"));
            panic!(
                "the second member read {:?} from an empty topic",
                numbered::read(&message)
            );
        }
    }
    eprintln!("{leave:?} during a rebalance on the {} took {elapsed:?}", target.kind());
}

/// Closes `consumer` with `timeout` on another thread and returns how long
/// `close` took and its result, or panics when it has not returned after
/// `bound`. A close that never returns leaves its thread running.
#[track_caller]
fn close_within(consumer: Consumer, timeout: Duration, bound: Duration, what: &str) -> (Duration, Result<()>) {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let started = Instant::now();
        let outcome = consumer.close(timeout);
        // The receiver is gone only after a timeout, which already failed.
        let _ = sender.send((started.elapsed(), outcome));
    });
    match receiver.recv_timeout(bound) {
        Ok(closed) => closed,
        Err(_) => panic!("timed out after {bound:?} waiting for close({timeout:?}) of {what} to return"),
    }
}

fn assigned_partitions(consumer: &Consumer) -> BTreeSet<i32> {
    let assignment = consumer
        .assignment()
        .unwrap_or_else(|error| panic!("assignment failed: {error}"));
    assignment.into_iter().map(|entry| entry.partition).collect()
}
