//! Stress run of the pairing of operations with their results. Many
//! threads send through one producer with a tiny local queue, then many
//! threads read and commit asynchronously. Every count must match exactly.
//!
//! Run: `cargo run --release --example stress -- [--threads N] [--messages N] [--brokers HOST:PORT]`
//! (default 8 threads, 200,000 messages, librdkafka's mock cluster). Each
//! phase is bounded by a timeout of 300 s.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka_hl::{AdminClient, CommitFuture, Config, Consumer, DeliveryFuture, MockCluster, Producer, Record};

const PHASE_TIMEOUT: Duration = Duration::from_secs(300);
const PARTITIONS: i32 = 8;

fn main() -> ExitCode {
    let mut threads = 8usize;
    let mut messages = 200_000u64;
    let mut brokers = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value) {
            ("--threads", Some(value)) => value.parse().map(|value| threads = value).is_ok(),
            ("--messages", Some(value)) => value.parse().map(|value| messages = value).is_ok(),
            ("--brokers", Some(value)) => {
                brokers = Some(value);
                true
            }
            _ => false,
        };
        if !parsed || threads == 0 || messages == 0 {
            eprintln!("usage: stress [--threads N (at least 1)] [--messages N (at least 1)] [--brokers HOST:PORT]");
            return ExitCode::from(2);
        }
    }

    match run(threads, messages, brokers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stress failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(threads: usize, messages: u64, brokers: Option<String>) -> Result<(), String> {
    let topic = format!("stress-{}", std::process::id());
    let (_mock, servers) = match brokers {
        Some(servers) => {
            let admin = AdminClient::new(config(&servers)?).map_err(text)?;
            admin.create_topic(&topic, PARTITIONS, 1, Duration::from_secs(30)).map_err(text)?;
            (None, servers)
        }
        None => {
            let cluster = MockCluster::new(3).map_err(text)?;
            cluster.set_group_initial_rebalance_delay(Duration::ZERO);
            cluster.create_topic(&topic, PARTITIONS, 1).map_err(text)?;
            let servers = cluster.bootstrap_servers();
            (Some(cluster), servers)
        }
    };

    let started = Instant::now();
    let delivered = produce(&servers, &topic, threads, messages)?;
    println!("sent {messages}, resolved once {delivered} in {:.2} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let (consumed, commits) = consume(&servers, &topic, threads, messages)?;
    println!(
        "consumed {consumed}, commits resolved once {commits} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn config(servers: &str) -> Result<Config, String> {
    Config::new().set("bootstrap.servers", servers).map_err(text)
}

/// Sends `messages` from `threads` threads through one producer whose local
/// queue takes 10 messages, and returns how many futures resolved.
fn produce(servers: &str, topic: &str, threads: usize, messages: u64) -> Result<u64, String> {
    let producer = Producer::new(
        config(servers)?
            .set("queue.buffering.max.messages", "10")
            .and_then(|config| config.set("linger.ms", "0"))
            .map_err(text)?,
    )
    .map_err(text)?;
    let next = AtomicU64::new(0);

    let futures: Vec<Vec<(u64, DeliveryFuture)>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut futures = Vec::new();
                    loop {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        if id >= messages {
                            return Ok(futures);
                        }
                        let record = Record::to(topic).key(id.to_string()).value(id.to_be_bytes().to_vec());
                        let future = producer.send_wait(record, PHASE_TIMEOUT).map_err(|error| error.to_string())?;
                        futures.push((id, future));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a sending thread panicked"))
            .collect::<Result<_, String>>()
    })?;

    let mut resolved = HashSet::new();
    for (id, future) in futures.into_iter().flatten() {
        future
            .wait_timeout(PHASE_TIMEOUT)
            .map_err(|error| format!("message {id} was not delivered: {error}"))?;
        if !resolved.insert(id) {
            return Err(format!("message {id} resolved twice"));
        }
    }
    if resolved.len() as u64 != messages {
        return Err(format!("{} of {messages} sends resolved", resolved.len()));
    }
    Ok(resolved.len() as u64)
}

/// Reads every message with one consumer shared by `threads` threads, each
/// committing every message it reads asynchronously. Returns the count of
/// distinct messages and of commits resolved.
fn consume(servers: &str, topic: &str, threads: usize, messages: u64) -> Result<(u64, u64), String> {
    let consumer = Consumer::new(
        config(servers)?
            .set("group.id", &format!("{topic}-group"))
            .and_then(|config| config.set("auto.offset.reset", "earliest"))
            .and_then(|config| config.set("enable.auto.commit", "false"))
            .map_err(text)?,
    )
    .map_err(text)?;
    consumer.subscribe(&[topic]).map_err(text)?;
    let seen = Mutex::new(HashSet::new());
    let deadline = Instant::now() + PHASE_TIMEOUT;

    let commits: Vec<Vec<CommitFuture>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut commits = Vec::new();
                    while (seen.lock().unwrap().len() as u64) < messages {
                        if Instant::now() > deadline {
                            return Err(format!("timed out after {PHASE_TIMEOUT:?} reading messages"));
                        }
                        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                            continue;
                        };
                        let message = message.map_err(text)?;
                        let value = message.value().unwrap_or_default();
                        let id = u64::from_be_bytes(value.try_into().map_err(|_| "a message has no id".to_owned())?);
                        if !seen.lock().unwrap().insert(id) {
                            return Err(format!("message {id} was read twice"));
                        }
                        commits.push(consumer.commit_message(&message).map_err(text)?);
                    }
                    Ok(commits)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a reading thread panicked"))
            .collect::<Result<_, String>>()
    })?;

    let mut resolved = 0u64;
    for commit in commits.into_iter().flatten() {
        commit.wait_timeout(PHASE_TIMEOUT).map_err(|error| format!("a commit failed: {error}"))?;
        resolved += 1;
    }
    let consumed = seen.into_inner().unwrap().len() as u64;
    if consumed != messages || resolved != messages {
        return Err(format!("consumed {consumed} and resolved {resolved} commits, expected {messages} each"));
    }
    Ok((consumed, resolved))
}

fn text(error: rdkafka_hl::Error) -> String {
    error.to_string()
}
