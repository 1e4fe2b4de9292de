//! Round trip: produce messages, consume them back in a consumer group,
//! commit, and check that every message arrived exactly once, intact.
//!
//! With no arguments it starts librdkafka's mock cluster (3 brokers) in
//! this process. Run `cargo run --release --example roundtrip -- --help`
//! for the options.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka_hl::{
    AdminClient, Config, Consumer, Delivery, DeliveryFuture, Error, ErrorCode, MockCluster, Producer, Record,
};

const USAGE: &str = "\
usage: roundtrip [OPTIONS]

Produces messages with distinct keys, an id header and a payload that
encodes the id, consumes them back in a new consumer group, commits, and
checks that each message arrived exactly once with its key, header and
payload.

options:
  --brokers HOST:PORT[,...]  use this Kafka cluster (default: start librdkafka's
                             mock cluster with 3 brokers in this process)
  --messages N               number of messages, 1 to 100000000 (default 100000)
  --partitions P             partitions of the new topic, 1 to 10000 (default 6)
  --size BYTES               payload size in bytes, 16 to 100000000 (default 100)
  --producers T              threads sending through one producer, 1 to 256 (default 2)
  --set KEY=VALUE            librdkafka property for both clients (repeatable)
  --timeout SECONDS          limit for each phase: topic creation, delivery,
                             consumption; 1 to 86400 (default 120)
  -h, --help                 print this help";

/// The name of the header that carries the message id.
const ID_HEADER: &str = "message-id";

/// How long a send waits for room in librdkafka's local queue.
const SEND_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Length of the hexadecimal id at the start of each payload.
const ID_WIDTH: usize = 16;

struct Options {
    brokers: Option<String>,
    messages: u64,
    partitions: i32,
    size: usize,
    producers: u64,
    properties: Vec<(String, String)>,
    timeout: Duration,
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("roundtrip failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        brokers: None,
        messages: 100_000,
        partitions: 6,
        size: 100,
        producers: 2,
        properties: Vec::new(),
        timeout: Duration::from_secs(120),
    };

    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => options.brokers = Some(value()?),
            "--messages" => options.messages = parse_number(&flag, &value()?, 1, 100_000_000)?,
            "--partitions" => options.partitions = parse_number(&flag, &value()?, 1, 10_000)?,
            "--size" => options.size = parse_number(&flag, &value()?, ID_WIDTH, 100_000_000)?,
            "--producers" => options.producers = parse_number(&flag, &value()?, 1, 256)?,
            "--timeout" => options.timeout = Duration::from_secs(parse_number(&flag, &value()?, 1, 86_400)?),
            "--set" => {
                let pair = value()?;
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--set takes KEY=VALUE, got {pair:?}"))?;
                options.properties.push((key.to_owned(), value.to_owned()));
            }
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    check_options(&options)?;
    Ok(Some(options))
}

/// Rejects, before anything starts, what would make the run fail later.
fn check_options(options: &Options) -> Result<(), String> {
    // The properties must be valid for librdkafka.
    base_config(options, "127.0.0.1:9092")?;

    if options.properties.iter().any(|(key, value)| key == "acks" && value == "0") {
        return Err("--set acks=0 is not supported: without acknowledgements, delivery reports carry no offset to verify".to_owned());
    }

    // librdkafka's mock cluster keeps at most 100,000 messages or 5 MiB per
    // partition (librdkafka 2.12.1) and drops older ones, which would read
    // back as missing messages.
    if options.brokers.is_none() {
        let partitions = options.partitions as u64;
        let per_partition = options.messages.div_ceil(partitions);
        let bytes_per_partition = per_partition * (options.size as u64 + 70);
        if per_partition > 100_000 || bytes_per_partition > 5 * 1024 * 1024 {
            return Err(format!(
                "{} messages of {} bytes over {} partitions exceed what librdkafka's mock cluster keeps \
                 (100,000 messages or 5 MiB per partition); use more --partitions, fewer --messages, \
                 or a real cluster with --brokers",
                options.messages, options.size, options.partitions
            ));
        }
    }
    Ok(())
}

fn parse_number<T>(flag: &str, text: &str, minimum: T, maximum: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(number) if number >= minimum && number <= maximum => Ok(number),
        _ => Err(format!("{flag} takes a whole number from {minimum} to {maximum}, got {text:?}")),
    }
}

fn run(options: &Options) -> Result<(), String> {
    let suffix = unique_suffix();
    let topic = format!("roundtrip-{suffix}");
    let group = format!("roundtrip-group-{suffix}");

    // The mock cluster lives until the end of the run.
    let (_mock, servers) = match &options.brokers {
        Some(servers) => {
            create_topic_on_cluster(options, servers, &topic)?;
            (None, servers.clone())
        }
        None => {
            let cluster = MockCluster::new(3).map_err(describe)?;
            cluster.set_group_initial_rebalance_delay(Duration::ZERO);
            cluster.create_topic(&topic, options.partitions, 1).map_err(describe)?;
            let servers = cluster.bootstrap_servers();
            (Some(cluster), servers)
        }
    };
    eprintln!(
        "topic {topic} with {} partitions on {}",
        options.partitions,
        if options.brokers.is_some() { servers.as_str() } else { "the mock cluster" }
    );

    let started = Instant::now();
    let deliveries = produce(options, &servers, &topic)?;
    let produce_time = started.elapsed();

    let started = Instant::now();
    let consumed = consume_and_verify(options, &servers, &topic, &group, &deliveries)?;
    let consume_time = started.elapsed();

    let count = options.messages;
    println!("produced {count}, delivered {count}, consumed {consumed}, verified {consumed}");
    println!(
        "produce: {}; consume: {}",
        throughput(count, options.size, produce_time),
        throughput(count, options.size, consume_time)
    );
    Ok(())
}

fn base_config(options: &Options, servers: &str) -> Result<Config, String> {
    let mut config = Config::new().set("bootstrap.servers", servers).map_err(describe)?;
    for (key, value) in &options.properties {
        config = config.set(key, value).map_err(describe)?;
    }
    Ok(config)
}

fn create_topic_on_cluster(options: &Options, servers: &str, topic: &str) -> Result<(), String> {
    let admin = AdminClient::new(base_config(options, servers)?).map_err(describe)?;
    admin
        .create_topic(topic, options.partitions, 1, options.timeout)
        .map_err(|error| format!("failed to create topic {topic} on {servers}: {error} (is a broker listening there?)"))
}

/// Sends every message and waits for every delivery. Returns the delivery
/// of each message, indexed by id.
fn produce(options: &Options, servers: &str, topic: &str) -> Result<Vec<Delivery>, String> {
    let producer = Producer::new(base_config(options, servers)?).map_err(describe)?;
    let sent = AtomicU64::new(0);
    let progress = Progress::new("produced", options.messages);

    let futures_per_thread: Vec<Vec<(u64, DeliveryFuture)>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..options.producers)
            .map(|thread_index| {
                let (producer, sent, progress) = (&producer, &sent, &progress);
                scope.spawn(move || {
                    let ids = (thread_index..options.messages).step_by(options.producers as usize);
                    let mut futures = Vec::new();
                    for id in ids {
                        futures.push((id, send_with_retry(producer, topic, id, options.size)?));
                        progress.update(sent.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                    Ok::<_, String>(futures)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a producer thread panicked"))
            .collect::<Result<_, _>>()
    })?;
    progress.finish();

    let deadline = Instant::now() + options.timeout;
    let mut deliveries: Vec<Option<Delivery>> = vec![None; options.messages as usize];
    for (id, future) in futures_per_thread.into_iter().flatten() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let delivery = future
            .wait_timeout(remaining)
            .map_err(|error| format!("message {id} was not delivered: {error}"))?;
        deliveries[id as usize] = Some(delivery);
    }
    Ok(deliveries.into_iter().map(|delivery| delivery.expect("every id was sent")).collect())
}

/// Sends one message, waiting while librdkafka's local queue is full. The
/// payload is owned, so librdkafka sends it without a copy.
fn send_with_retry(producer: &Producer, topic: &str, id: u64, size: usize) -> Result<DeliveryFuture, String> {
    let key = key_for(id);
    let id_text = id.to_string();
    let record = Record::to(topic)
        .key(&key)
        .value(payload_for(id, size))
        .header(ID_HEADER, &id_text);

    producer
        .send_wait(record, SEND_QUEUE_TIMEOUT)
        .map_err(|error| format!("failed to send message {id}: {error}"))
}

/// Reads every message back, checks it, and commits. Returns the count.
fn consume_and_verify(
    options: &Options,
    servers: &str,
    topic: &str,
    group: &str,
    deliveries: &[Delivery],
) -> Result<u64, String> {
    let config = base_config(options, servers)?
        .set("group.id", group)
        .and_then(|config| config.set("auto.offset.reset", "earliest"))
        .and_then(|config| config.set("enable.auto.commit", "false"))
        .map_err(describe)?;
    let consumer = Consumer::new(config).map_err(describe)?;
    consumer.subscribe(&[topic]).map_err(describe)?;

    let mut seen = vec![false; options.messages as usize];
    let mut consumed = 0u64;
    let mut commits = Vec::new();
    let progress = Progress::new("consumed", options.messages);
    let deadline = Instant::now() + options.timeout;

    while consumed < options.messages {
        if Instant::now() >= deadline {
            let missing = seen.iter().position(|&was_seen| !was_seen).unwrap_or(0);
            return Err(format!(
                "timed out after {:?} waiting for messages: consumed {consumed} of {}, first missing id {missing}",
                options.timeout, options.messages
            ));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(|error| format!("consumer error: {error}"))?;

        let id = verify_message(&message, options.size, deliveries)?;
        if std::mem::replace(&mut seen[id as usize], true) {
            return Err(format!("duplicate message {id} at partition {} offset {}", message.partition(), message.offset()));
        }
        consumed += 1;
        progress.update(consumed);

        if consumed % 10_000 == 0 {
            commits.push(consumer.commit_consumed().map_err(describe)?);
        }
    }
    progress.finish();

    for commit in commits {
        commit.wait_timeout(options.timeout).map_err(|error| format!("commit failed: {error}"))?;
    }
    verify_final_commit(&consumer, deliveries, options.timeout)?;
    Ok(consumed)
}

/// Checks one message against what was sent and delivered; returns its id.
fn verify_message(message: &rdkafka_hl::Message<'_>, size: usize, deliveries: &[Delivery]) -> Result<u64, String> {
    let place = format!("partition {} offset {}", message.partition(), message.offset());
    let value = message.value().ok_or_else(|| format!("message at {place} has a null payload"))?;
    let id = std::str::from_utf8(&value[..ID_WIDTH.min(value.len())])
        .ok()
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .filter(|&id| (id as usize) < deliveries.len())
        .ok_or_else(|| format!("message at {place} has a payload that encodes no valid id"))?;

    if value != payload_for(id, size).as_slice() {
        return Err(format!("wrong payload for message {id} at {place}"));
    }
    if message.key() != Some(key_for(id).as_bytes()) {
        return Err(format!("wrong key for message {id} at {place}: {:?}", message.key().map(String::from_utf8_lossy)));
    }
    let headers = message.headers();
    let id_header = headers.iter().find(|header| header.name == ID_HEADER);
    if id_header.and_then(|header| header.value.as_deref()) != Some(id.to_string().as_bytes()) {
        return Err(format!("wrong or missing {ID_HEADER} header for message {id} at {place}: {headers:?}"));
    }
    let delivery = &deliveries[id as usize];
    if (delivery.partition, delivery.offset) != (message.partition(), message.offset()) {
        return Err(format!(
            "message {id} read at {place}, but its delivery report said partition {} offset {}",
            delivery.partition, delivery.offset
        ));
    }
    Ok(id)
}

/// Commits the final positions and checks that they are one past the last
/// delivered offset of every partition.
fn verify_final_commit(consumer: &Consumer, deliveries: &[Delivery], timeout: Duration) -> Result<(), String> {
    let mut expected: BTreeMap<i32, i64> = BTreeMap::new();
    for delivery in deliveries {
        let next = expected.entry(delivery.partition).or_default();
        *next = (*next).max(delivery.offset + 1);
    }

    let committed = match consumer.commit_consumed().map_err(describe)?.wait_timeout(timeout) {
        Ok(committed) => committed,
        // The periodic commits may already have stored the final positions.
        Err(error) if error.code() == Some(ErrorCode::NO_OFFSET) => return Ok(()),
        Err(error) => return Err(format!("final commit failed: {error}")),
    };
    for entry in committed {
        let want = expected.get(&entry.partition).copied().unwrap_or(0);
        if entry.offset != want && !(want == 0 && entry.offset < 0) {
            return Err(format!(
                "committed offset {} for partition {}, expected {want}",
                entry.offset, entry.partition
            ));
        }
    }
    Ok(())
}

fn key_for(id: u64) -> String {
    format!("key-{id}")
}

/// Builds the payload of message `id`: its id in hexadecimal, then filler bytes
/// that depend on the id, so that a mixed-up payload is detected.
fn payload_for(id: u64, size: usize) -> Vec<u8> {
    let mut payload = format!("{id:0width$x}", width = ID_WIDTH).into_bytes();
    payload.extend((0..size - ID_WIDTH).map(|index| (id as usize).wrapping_add(index) as u8));
    payload
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}-{nanos}", std::process::id())
}

fn throughput(count: u64, size: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let rate = count as f64 / seconds;
    let megabytes = rate * size as f64 / 1e6;
    format!("{rate:.0} msgs/s, {megabytes:.1} MB/s in {seconds:.2} s")
}

fn describe(error: Error) -> String {
    error.to_string()
}

/// A progress line on standard error, shown only on a terminal.
struct Progress {
    label: &'static str,
    total: u64,
    enabled: bool,
}

impl Progress {
    fn new(label: &'static str, total: u64) -> Self {
        Self {
            label,
            total,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn update(&self, done: u64) {
        if self.enabled && (done % 5_000 == 0 || done == self.total) {
            eprint!("\r{} {done}/{}", self.label, self.total);
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}
