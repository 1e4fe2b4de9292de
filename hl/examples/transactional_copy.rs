//! Transactional copy: consume from one topic, transform, produce to
//! another, and commit the consumer's offsets in the same transaction, so
//! that each input message is copied exactly once even across failures.
//!
//! With no arguments it runs on librdkafka's mock cluster (3 brokers) in
//! this process; `--brokers HOST:PORT` uses a real cluster. Run with
//! `--help` for the options.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka_hl::{
    AdminClient, Config, Consumer, Error, MockCluster, Producer, Record, Recovery, TopicPartition,
    TopicPartitionOffset,
};

const USAGE: &str = "\
usage: transactional_copy [OPTIONS]

Produces numbered messages to an input topic, then copies them to an
output topic in transactions that also commit the consumer's offsets, and
checks with a read_committed consumer that every message was copied
exactly once.

options:
  --brokers HOST:PORT[,...]  use this Kafka cluster (default: librdkafka's mock
                             cluster with 3 brokers, in this process)
  --messages N               number of messages to copy (default 10000)
  --batch N                  messages per transaction (default 500)
  -h, --help                 print this help";

/// The limit of each blocking step: a transactional call, a phase of reading.
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let (brokers, messages, batch) = match parse_options() {
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

    match run(brokers, messages, batch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("transactional_copy failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options() -> Result<Option<(Option<String>, u64, u64)>, String> {
    let (mut brokers, mut messages, mut batch) = (None, 10_000u64, 500u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--brokers" => brokers = Some(value()?),
            "--messages" => messages = positive(&flag, &value()?)?,
            "--batch" => batch = positive(&flag, &value()?)?,
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    Ok(Some((brokers, messages, batch)))
}

fn positive(flag: &str, text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(number) if number > 0 => Ok(number),
        _ => Err(format!("{flag} takes a whole number of at least 1, got {text:?}")),
    }
}

fn run(brokers: Option<String>, messages: u64, batch: u64) -> Result<(), String> {
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
    );
    let (input, output) = (format!("copy-input-{suffix}"), format!("copy-output-{suffix}"));

    // The mock cluster lives until the end of the run.
    let (_mock, servers) = match brokers {
        Some(servers) => {
            let admin = AdminClient::new(config(&servers)?).map_err(text)?;
            for topic in [&input, &output] {
                admin.create_topic(topic, 3, 1, TIMEOUT).map_err(text)?;
            }
            (None, servers)
        }
        None => {
            let cluster = MockCluster::new(3).map_err(text)?;
            cluster.set_group_initial_rebalance_delay(Duration::ZERO);
            for topic in [&input, &output] {
                cluster.create_topic(topic, 3, 3).map_err(text)?;
            }
            let servers = cluster.bootstrap_servers();
            (Some(cluster), servers)
        }
    };

    produce_input(&servers, &input, messages)?;
    let started = Instant::now();
    let transactions = copy(&servers, &input, &output, &suffix, messages, batch)?;
    let elapsed = started.elapsed();
    let verified = verify_output(&servers, &output, messages)?;

    println!("copied {messages} in {transactions} transactions, verified {verified}");
    println!("copy: {:.0} msgs/s in {:.2} s", messages as f64 / elapsed.as_secs_f64(), elapsed.as_secs_f64());
    Ok(())
}

fn config(servers: &str) -> Result<Config, String> {
    Config::new().set("bootstrap.servers", servers).map_err(text)
}

fn produce_input(servers: &str, topic: &str, messages: u64) -> Result<(), String> {
    let producer = Producer::new(config(servers)?).map_err(text)?;
    let mut futures = Vec::with_capacity(messages as usize);
    for id in 0..messages {
        let record = Record::to(topic).key(id.to_string()).value(format!("message {id}"));
        futures.push(producer.send_wait(record, TIMEOUT).map_err(|error| error.to_string())?);
    }
    for future in futures {
        future.wait_timeout(TIMEOUT).map_err(|error| format!("input not delivered: {error}"))?;
    }
    Ok(())
}

/// Copies every input message in transactions of up to `batch` messages.
/// Returns the number of committed transactions.
fn copy(servers: &str, input: &str, output: &str, suffix: &str, messages: u64, batch: u64) -> Result<u64, String> {
    let consumer = Consumer::new(
        config(servers)?
            .set("group.id", &format!("copier-{suffix}"))
            .and_then(|config| config.set("enable.auto.commit", "false"))
            .and_then(|config| config.set("auto.offset.reset", "earliest"))
            .and_then(|config| config.set("isolation.level", "read_committed"))
            .map_err(text)?,
    )
    .map_err(text)?;
    consumer.subscribe(&[input]).map_err(text)?;
    let producer = Producer::new(
        config(servers)?.set("transactional.id", &format!("copier-{suffix}")).map_err(text)?,
    )
    .map_err(text)?;
    producer.init_transactions(TIMEOUT).map_err(text)?;

    let (mut copied, mut transactions) = (0u64, 0u64);
    let deadline = Instant::now() + TIMEOUT;
    while copied < messages {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {TIMEOUT:?} copying: {copied} of {messages} copied"));
        }
        producer.begin_transaction().map_err(text)?;
        let mut next_offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut in_transaction = 0u64;

        while in_transaction < batch && copied + in_transaction < messages {
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                break;
            };
            let message = message.map_err(text)?;
            let value = message.value().unwrap_or_default().to_ascii_uppercase();
            let key = message.key().unwrap_or_default().to_vec();
            // commit_transaction fails if any message of the transaction
            // failed, so the delivery futures need no checking here.
            let _delivery = producer
                .send(Record::to(output).key(key).value(value))
                .map_err(|error| error.to_string())?;
            next_offsets.insert((message.topic().to_owned(), message.partition()), message.offset() + 1);
            in_transaction += 1;
        }

        let offsets: Vec<TopicPartitionOffset> = next_offsets
            .into_iter()
            .map(|((topic, partition), offset)| TopicPartitionOffset::new(topic, partition, offset))
            .collect();
        let group = consumer.group_metadata().map_err(text)?;
        let committed = producer
            .send_offsets_to_transaction(&offsets, &group, TIMEOUT)
            .and_then(|()| producer.commit_transaction(TIMEOUT));
        match committed {
            Ok(()) => {
                copied += in_transaction;
                transactions += 1;
            }
            Err(error) => recover(&producer, &consumer, &offsets, error)?,
        }
    }
    Ok(transactions)
}

/// Handles a failed transaction: retrying is left to the next round,
/// an abort rewinds the consumer to the last committed offsets.
fn recover(producer: &Producer, consumer: &Consumer, offsets: &[TopicPartitionOffset], error: Error) -> Result<(), String> {
    match error.recovery() {
        Recovery::Retry | Recovery::AbortTransaction => {
            eprintln!("transaction failed ({error}); aborting and rewinding");
            producer.abort_transaction(TIMEOUT).map_err(text)?;
            let partitions: Vec<TopicPartition> =
                offsets.iter().map(|entry| TopicPartition::new(entry.topic.clone(), entry.partition)).collect();
            let committed = consumer.committed(&partitions, TIMEOUT).map_err(text)?;
            let rewind: Vec<TopicPartitionOffset> = committed
                .into_iter()
                .map(|entry| {
                    let offset = if entry.offset < 0 { rdkafka_hl::OFFSET_BEGINNING } else { entry.offset };
                    TopicPartitionOffset::new(entry.topic, entry.partition, offset)
                })
                .collect();
            consumer.seek(&rewind, TIMEOUT).map_err(text)
        }
        Recovery::Fatal | Recovery::None => Err(format!("transaction failed: {error}")),
    }
}

/// Reads the output with a read_committed consumer and checks each input
/// id arrived once, transformed. Returns the count.
fn verify_output(servers: &str, topic: &str, messages: u64) -> Result<u64, String> {
    let consumer = Consumer::new(
        config(servers)?
            .set("group.id", &format!("{topic}-verifier"))
            .and_then(|config| config.set("auto.offset.reset", "earliest"))
            .and_then(|config| config.set("isolation.level", "read_committed"))
            .map_err(text)?,
    )
    .map_err(text)?;
    consumer.subscribe(&[topic]).map_err(text)?;

    let mut seen = HashSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while (seen.len() as u64) < messages {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {TIMEOUT:?} reading the output: {} of {messages}", seen.len()));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(text)?;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let id: u64 = key.parse().map_err(|_| format!("output message with key {key:?} has no id"))?;
        let expected = format!("MESSAGE {id}");
        if message.value() != Some(expected.as_bytes()) {
            return Err(format!("output message {id} has value {:?}", message.value().map(String::from_utf8_lossy)));
        }
        if !seen.insert(id) {
            return Err(format!("output message {id} was copied twice"));
        }
    }
    Ok(seen.len() as u64)
}

fn text(error: Error) -> String {
    error.to_string()
}
