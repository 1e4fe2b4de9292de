//! Shared helpers for the end-to-end tests of `rdkafka-ll` and `rdkafka-hl`.
//!
//! Each scenario runs on two targets: librdkafka's mock cluster, which runs
//! inside the test process, and a real Kafka broker whose address is in
//! `KAFKA_BOOTSTRAP_SERVERS`. Start one with `tests/broker/kafka.sh start`,
//! which prints the address as its last line:
//!
//! ```sh
//! export KAFKA_BOOTSTRAP_SERVERS=$(tests/broker/kafka.sh start | tail -1)
//! cargo test -p rdkafka-e2e
//! tests/broker/kafka.sh stop
//! ```
//!
//! Without the variable the real-broker tests print a notice and pass
//! without running, unless `CI` is set, in which case they fail.
//!
//! The failover tests need a three-node cluster instead; see [`cluster`].

use std::collections::BTreeSet;
use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka_hl::{AdminClient, Config, MockCluster};

pub mod cluster;

/// The environment variable that contains the real broker's bootstrap servers.
pub const BOOTSTRAP_SERVERS_VAR: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// Default bound for one wait on the cluster, such as a delivery, a commit
/// or all messages of a scenario.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Returns the real broker's bootstrap servers from `KAFKA_BOOTSTRAP_SERVERS`.
///
/// When the variable is unset or empty, this panics if `CI` is set to a
/// non-empty value, so that CI cannot pass without running the real-broker
/// tests. Otherwise it writes a notice to stderr and returns `None`, and the
/// caller returns early.
///
/// The notice goes straight to the process's stderr rather than through
/// `eprintln!`, because the test harness captures `eprintln!` output of
/// passing tests and the skip would go unnoticed.
#[track_caller]
pub fn real_broker() -> Option<String> {
    required_env(
        BOOTSTRAP_SERVERS_VAR,
        "a real Kafka broker",
        "Start the broker with `tests/broker/kafka.sh start` and set \
         KAFKA_BOOTSTRAP_SERVERS to the address it prints as its last line \
         (or source target/kafka-broker/env).",
    )
}

/// Returns the trimmed value of the environment variable `var`, which a
/// test needs for `what`. When it is unset or empty, this panics if `CI` is
/// set to a non-empty value, and otherwise writes a notice to stderr and
/// returns `None`. `how_to_set` explains how to start the missing
/// service and set the variable.
#[track_caller]
pub(crate) fn required_env(var: &str, what: &str, how_to_set: &str) -> Option<String> {
    let value = std::env::var(var).unwrap_or_default();
    if !value.trim().is_empty() {
        return Some(value.trim().to_owned());
    }

    let test = thread::current().name().unwrap_or("this test").to_owned();
    let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    if in_ci {
        panic!("{test} needs {what}, but {var} is not set and CI is set. {how_to_set}");
    }

    let notice = format!("skipping {test} because it needs {what} and {var} is not set. {how_to_set}\n");
    // A failed write is ignored because the notice is only informational.
    let _ = std::io::stderr().write_all(notice.as_bytes());
    None
}

/// Returns a name that no other test, test run or concurrent test process
/// uses, made of `prefix`, the process id, a per-process counter and the
/// current time in microseconds. The result contains only characters that Kafka
/// allows in topic and group names.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros())
        .unwrap_or(0);
    format!("{prefix}-{}-{count}-{micros}", std::process::id())
}

/// Starts a mock cluster of one broker whose consumer groups rebalance at
/// once. The mock's default 3 s delay before a group's first rebalance
/// would dominate every consumer test.
pub fn start_mock_cluster() -> MockCluster {
    let cluster = MockCluster::new(1).unwrap_or_else(|error| panic!("failed to start the mock cluster: {error}"));
    cluster.set_group_initial_rebalance_delay(Duration::ZERO);
    cluster
}

/// The cluster a scenario runs on.
pub enum Target {
    /// librdkafka's mock cluster, inside this process.
    Mock(MockCluster),
    /// A real broker, by its bootstrap servers.
    RealBroker(String),
}

impl Target {
    /// Starts a fresh mock cluster (see [`start_mock_cluster`]).
    pub fn mock() -> Self {
        Target::Mock(start_mock_cluster())
    }

    /// Returns the real broker from `KAFKA_BOOTSTRAP_SERVERS`, or `None` when
    /// the test is to be skipped (see [`real_broker`]).
    #[track_caller]
    pub fn real_broker() -> Option<Self> {
        real_broker().map(Target::RealBroker)
    }

    /// Returns the target's name for failure messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Mock(_) => "mock cluster",
            Target::RealBroker(_) => "real broker",
        }
    }

    /// Returns the `bootstrap.servers` value for clients of this target.
    pub fn bootstrap_servers(&self) -> String {
        match self {
            Target::Mock(cluster) => cluster.bootstrap_servers(),
            Target::RealBroker(servers) => servers.clone(),
        }
    }

    /// Creates a client configuration with `bootstrap.servers` set.
    pub fn config(&self) -> Config {
        let servers = self.bootstrap_servers();
        Config::new()
            .set("bootstrap.servers", &servers)
            .unwrap_or_else(|error| panic!("invalid bootstrap.servers {servers:?}: {error}"))
    }

    /// Creates a consumer configuration for `group`, with `bootstrap.servers`
    /// and `group.id` set.
    ///
    /// On the mock the session timeout is lowered to 3 s, with heartbeats
    /// every 0.5 s. After a member leaves, librdkafka 2.12.1's mock cluster
    /// keeps the group rebalancing for the session timeout minus one second
    /// before it responds to the next JoinGroup. With the default 45 s timeout
    /// that stalls every test that hands a group from one consumer to the
    /// next. A real broker rejects session timeouts below its
    /// `group.min.session.timeout.ms` (6 s by default), so it keeps the defaults.
    pub fn group_config(&self, group: &str) -> Config {
        let mut settings = vec![("group.id", group)];
        if let Target::Mock(_) = self {
            settings.push(("session.timeout.ms", "3000"));
            settings.push(("heartbeat.interval.ms", "500"));
        }

        let mut config = self.config();
        for (key, value) in settings {
            config = config
                .set(key, value)
                .unwrap_or_else(|error| panic!("invalid consumer setting {key}={value}: {error}"));
        }
        config
    }

    /// Creates a topic with a unique name starting with `prefix`, with
    /// `partitions` partitions and one replica, and returns its name.
    ///
    /// On the real broker this goes through [`AdminClient::create_topic`]
    /// and on the mock through [`MockCluster::create_topic`], because the
    /// mock does not implement the admin requests.
    pub fn create_topic(&self, prefix: &str, partitions: i32) -> String {
        let name = unique_name(prefix);
        let result = match self {
            Target::Mock(cluster) => cluster.create_topic(&name, partitions, 1),
            Target::RealBroker(_) => {
                let admin = AdminClient::new(self.config())
                    .unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
                admin.create_topic(&name, partitions, 1, WAIT_TIMEOUT)
            }
        };
        if let Err(error) = result {
            panic!(
                "failed to create topic {name} with {partitions} partitions on the {}: {error}",
                self.kind()
            );
        }
        name
    }
}

/// A bound on a wait, with a description of what is waited for, so that a
/// timeout fails with a message such as "timed out after 30s waiting for
/// 1000 messages; got 998, missing ids [17, 503]".
#[derive(Debug)]
pub struct Deadline {
    what: String,
    timeout: Duration,
    end: Instant,
}

impl Deadline {
    /// Starts a deadline `timeout` from now for the wait described by `what`.
    pub fn after(timeout: Duration, what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            timeout,
            end: Instant::now() + timeout,
        }
    }

    /// Returns the time left, zero once the deadline has passed.
    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// Returns whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Panics with the timeout, what was waited for and `progress`, which
    /// describes how far the wait got.
    #[track_caller]
    pub fn fail(&self, progress: impl Display) -> ! {
        panic!("timed out after {:?} waiting for {}; {progress}", self.timeout, self.what)
    }

    /// Panics through [`Deadline::fail`] once the deadline has passed.
    #[track_caller]
    pub fn check(&self, progress: impl FnOnce() -> String) {
        if self.is_expired() {
            self.fail(progress());
        }
    }
}

/// Drops `value` on another thread and returns how long the drop took, or
/// panics when it has not returned after `bound`. `what` names the value in
/// the failure message.
///
/// A drop that never returns leaves its thread running, which does not keep
/// the test process from exiting.
#[track_caller]
pub fn drop_within<T: Send + 'static>(value: T, bound: Duration, what: &str) -> Duration {
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let started = Instant::now();
        drop(value);
        // The receiver is gone only after a timeout, which already failed.
        let _ = sender.send(started.elapsed());
    });

    match receiver.recv_timeout(bound) {
        Ok(elapsed) => elapsed,
        Err(_) => panic!("timed out after {bound:?} waiting for the drop of {what} to return"),
    }
}

/// Describes which of the ids `0..count` are not in `received`, listing at
/// most the first 20, for example "got 998 of 1000, missing ids [17, 503]".
pub fn describe_missing(count: usize, received: &BTreeSet<usize>) -> String {
    const LISTED: usize = 20;

    let missing: Vec<usize> = (0..count).filter(|id| !received.contains(id)).collect();
    let got = count - missing.len();
    let listed = &missing[..missing.len().min(LISTED)];
    let mut text = format!("got {got} of {count}, missing ids {listed:?}");
    if missing.len() > LISTED {
        text.push_str(&format!(" and {} more", missing.len() - LISTED));
    }
    text
}

/// Runs `future` to completion on the current thread and returns its output.
///
/// This is a minimal executor built on std: the waker unparks this thread,
/// and the future is polled again only after its waker was called. A future
/// that is still pending after `timeout`, or that never calls its waker, makes
/// this panic with a message naming `what`.
#[track_caller]
pub fn block_on<F: Future>(future: F, timeout: Duration, what: &str) -> F::Output {
    let mut future = pin!(future);
    let waker_state = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&waker_state));
    let mut context = Context::from_waker(&waker);
    let deadline = Deadline::after(timeout, what);

    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        // Park until the waker runs. park_timeout may also return
        // spuriously, so the flag decides whether to poll again.
        while !waker_state.woken.swap(false, Ordering::Acquire) {
            deadline.check(|| "the future is still pending and its waker was not called".to_owned());
            thread::park_timeout(deadline.remaining());
        }
    }
}

/// A waker that records the wake-up and unparks the thread running
/// [`block_on`].
struct ThreadWaker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_name_differs_per_call() {
        let first = unique_name("topic");
        let second = unique_name("topic");

        assert_ne!(first, second);
        assert!(first.starts_with("topic-"), "{first}");
        assert!(
            first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{first} contains a character Kafka rejects in topic names"
        );
    }

    #[test]
    fn describe_missing_lists_gaps() {
        let received: BTreeSet<usize> = (0..10).filter(|id| *id != 3 && *id != 7).collect();

        assert_eq!(describe_missing(10, &received), "got 8 of 10, missing ids [3, 7]");
    }

    #[test]
    fn describe_missing_truncates_long_lists() {
        let text = describe_missing(25, &BTreeSet::new());

        assert!(text.starts_with("got 0 of 25, missing ids [0, 1,"), "{text}");
        assert!(text.ends_with("19] and 5 more"), "{text}");
    }

    #[test]
    fn block_on_returns_output_after_wake() {
        let (sender, receiver) = std::sync::mpsc::channel::<Waker>();
        let ready = Arc::new(AtomicBool::new(false));
        let wake_later = {
            let ready = Arc::clone(&ready);
            thread::spawn(move || {
                let waker = receiver.recv().unwrap();
                ready.store(true, Ordering::Release);
                waker.wake();
            })
        };

        let mut sent = false;
        let output = block_on(
            std::future::poll_fn(|context| {
                if ready.load(Ordering::Acquire) {
                    return Poll::Ready(42);
                }
                if !sent {
                    sender.send(context.waker().clone()).unwrap();
                    sent = true;
                }
                Poll::Pending
            }),
            Duration::from_secs(10),
            "the test future",
        );

        assert_eq!(output, 42);
        wake_later.join().unwrap();
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for a future that never wakes")]
    fn block_on_times_out_without_wake() {
        block_on(std::future::pending::<()>(), Duration::from_millis(50), "a future that never wakes");
    }
}

/// Messages whose value is their id in decimal, for tests that check
/// exactly which messages a consumer reads, and how often.
pub mod numbered {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rdkafka_hl::{Config, Consumer, Delivery, Error, Message, Producer, Record};

    use crate::{Deadline, Target, WAIT_TIMEOUT};

    /// How long one `Consumer::poll` blocks in these helpers, kept short so
    /// that deadlines are checked often.
    pub const POLL_TIMEOUT: Duration = Duration::from_millis(100);

    /// A message as read: its partition, its offset and the id in its value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Read {
        /// The partition.
        pub partition: i32,
        /// The offset.
        pub offset: i64,
        /// The id parsed from the value.
        pub id: usize,
    }

    /// Returns `config` with `key` set to `value`, panicking with both when
    /// librdkafka rejects the setting.
    #[track_caller]
    pub fn set(config: Config, key: &str, value: &str) -> Config {
        config
            .set(key, value)
            .unwrap_or_else(|error| panic!("invalid setting {key}={value}: {error}"))
    }

    /// Returns the consumer configuration for `group` on `target` (see
    /// [`Target::group_config`]) that reads from the earliest offset and
    /// commits only when asked, with `settings` applied last.
    pub fn consumer_config(target: &Target, group: &str, settings: &[(&str, &str)]) -> Config {
        let mut config = target.group_config(group);
        config = set(config, "auto.offset.reset", "earliest");
        config = set(config, "enable.auto.commit", "false");
        for (key, value) in settings {
            config = set(config, key, value);
        }
        config
    }

    /// Creates a consumer from `config`, panicking with the error.
    #[track_caller]
    pub fn new_consumer(config: Config) -> Consumer {
        Consumer::new(config).unwrap_or_else(|error| panic!("failed to create a consumer: {error}"))
    }

    /// Creates a producer for `target`, panicking with the error.
    #[track_caller]
    pub fn new_producer(target: &Target) -> Producer {
        Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"))
    }

    /// Sends one message for each id to `topic`, to `partition` if given,
    /// and waits up to [`WAIT_TIMEOUT`] for every delivery. Returns the
    /// deliveries in the order of `ids`.
    pub fn send(
        producer: &Producer,
        topic: &str,
        partition: Option<i32>,
        ids: impl IntoIterator<Item = usize>,
    ) -> Vec<Delivery> {
        let mut futures = Vec::new();
        for id in ids {
            let value = id.to_string();
            let mut record = Record::to(topic).value(value);
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            let future = producer
                .send(record)
                .unwrap_or_else(|error| panic!("send of message {id} to {topic} failed: {error}"));
            futures.push((id, future));
        }

        let deadline = Deadline::after(WAIT_TIMEOUT, format!("{} deliveries to {topic}", futures.len()));
        let mut deliveries = Vec::with_capacity(futures.len());
        for (id, future) in futures {
            let delivery = match future.wait_timeout(deadline.remaining()).map_err(Error::from) {
                Ok(delivery) => delivery,
                Err(Error::TimedOut { .. }) => deadline.fail(format!("message {id} has no delivery result")),
                Err(error) => panic!("delivery of message {id} to {topic} failed: {error}"),
            };
            deliveries.push(delivery);
        }
        deliveries
    }

    /// Parses the id from a message's value.
    #[track_caller]
    pub fn id(message: &Message<'_>) -> usize {
        let parsed = message
            .value()
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|text| text.parse().ok());
        parsed.unwrap_or_else(|| {
            panic!(
                "message at {} [{}] offset {} has no decimal id as its value: {:?}",
                message.topic(),
                message.partition(),
                message.offset(),
                message.value()
            )
        })
    }

    /// Returns where `message` is and its id.
    #[track_caller]
    pub fn read(message: &Message<'_>) -> Read {
        Read {
            partition: message.partition(),
            offset: message.offset(),
            id: id(message),
        }
    }

    /// Polls until `count` messages arrived, failing on any error and after
    /// [`WAIT_TIMEOUT`]. `what` names the consumer in failure messages.
    #[track_caller]
    pub fn poll_count(consumer: &Consumer, count: usize, what: &str) -> Vec<Read> {
        let deadline = Deadline::after(WAIT_TIMEOUT, format!("{count} messages for {what}"));
        let mut reads = Vec::with_capacity(count);
        while reads.len() < count {
            deadline.check(|| format!("got {} messages: {}", reads.len(), describe_reads(&reads)));
            if let Some(result) = consumer.poll(POLL_TIMEOUT) {
                let message = result.unwrap_or_else(|error| panic!("poll of {what} failed: {error}"));
                reads.push(read(&message));
            }
        }
        reads
    }

    /// Polls for `window` and fails if a message or an error arrives.
    #[track_caller]
    pub fn expect_none(consumer: &Consumer, window: Duration, what: &str) {
        let quiet = Deadline::after(window, format!("no message for {what}"));
        while !quiet.is_expired() {
            match consumer.poll(quiet.remaining().min(POLL_TIMEOUT)) {
                None => {}
                Some(Ok(message)) => panic!(
                    "{what} read a message during a {window:?} window that must stay quiet: {:?}",
                    read(&message)
                ),
                Some(Err(error)) => panic!("poll of {what} failed: {error}"),
            }
        }
    }

    /// Describes reads as the offsets read from each partition, for failure
    /// messages.
    pub fn describe_reads(reads: &[Read]) -> String {
        let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for read in reads {
            by_partition.entry(read.partition).or_default().push(read.offset);
        }
        let lines: Vec<String> = by_partition
            .iter()
            .map(|(partition, offsets)| format!("partition {partition} offsets {offsets:?}"))
            .collect();
        lines.join("; ")
    }
}
