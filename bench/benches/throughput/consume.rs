//! Consume measurements: the topic is filled first, untimed; then the time
//! from assigning every partition at its beginning until the last message
//! is read.

use std::ffi::{c_char, CString};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use rdkafka_hl::{Config, Consumer, Producer, Record, TopicPartitionOffset, OFFSET_BEGINNING};
use rdkafka_ll as ll;

use crate::cluster::Target;
use crate::report::Measurement;
use crate::runtime::{block_on, peak_rss, Stopwatch};
use crate::{Options, Variant, PHASE_TIMEOUT};

/// Messages between two commits of the commit variant.
const COMMIT_EVERY: u64 = 1000;

/// The maximum number of messages, and bytes, one partition gets, under
/// the mock cluster's limits of 100,000 messages and 5 MiB per partition (measured
/// with librdkafka 2.12.1), which drop older messages.
const MESSAGES_PER_PARTITION: u64 = 90_000;
const BYTES_PER_PARTITION: u64 = 4 * 1024 * 1024;

pub fn run(variant: Variant, options: &Options) -> Result<Measurement, String> {
    let target = Target::new(options, partitions_for(options))?;
    fill(&target, options)?;
    let group = format!("{}-group", target.topic);

    let mut latency = None;
    let (wall, cpu) = match variant {
        Variant::ConsumeRaw => raw(&target, &group, options.messages)?,
        Variant::ConsumeHlPoll => hl_poll(&target, &group, options.messages)?,
        Variant::ConsumeHlStream => hl_stream(&target, &group, options.messages)?,
        Variant::ConsumeRdkafkaBase => rdkafka_base(&target, &group, options.messages)?,
        Variant::ConsumeRdkafkaStream => rdkafka_stream(&target, &group, options.messages)?,
        Variant::CommitHl => {
            let (times, latencies) = hl_commit(&target, &group, options.messages)?;
            latency = Some(latencies);
            times
        }
        other => return Err(format!("{} is not a consume variant", other.name())),
    };
    Ok(Measurement {
        wall,
        cpu,
        peak_bytes: peak_rss(),
        messages: options.messages,
        latency,
    })
}

/// Enough partitions that no partition goes over the mock cluster's limits.
fn partitions_for(options: &Options) -> i32 {
    // Each record takes about 70 bytes besides its payload.
    let bytes = options.messages * (options.size as u64 + 70);
    let needed = options.messages.div_ceil(MESSAGES_PER_PARTITION).max(bytes.div_ceil(BYTES_PER_PARTITION));
    needed.clamp(3, 1000) as i32
}

fn fill(target: &Target, options: &Options) -> Result<(), String> {
    let config = target
        .producer_properties()
        .into_iter()
        .try_fold(Config::new(), |config, (key, value)| config.set(key, &value))
        .map_err(|error| error.to_string())?;
    let producer = Producer::new(config).map_err(|error| error.to_string())?;
    let payload = vec![b'x'; options.size];
    for sent in 0..options.messages {
        let partition = (sent % target.partitions as u64) as i32;
        let record = Record::to(&target.topic).partition(partition).value(&payload[..]);
        // The futures are not kept: the flush below waits for every report.
        let _delivery = producer.send_wait(record, PHASE_TIMEOUT).map_err(|error| error.to_string())?;
    }
    producer.flush(PHASE_TIMEOUT).map_err(|error| format!("filling the topic: {error}"))
}

fn hl_consumer(target: &Target, group: &str) -> Result<Consumer, String> {
    let config = target
        .consumer_properties(group)
        .into_iter()
        .try_fold(Config::new(), |config, (key, value)| config.set(key, &value))
        .map_err(|error| error.to_string())?;
    let consumer = Consumer::new(config).map_err(|error| error.to_string())?;
    let partitions: Vec<TopicPartitionOffset> = (0..target.partitions)
        .map(|partition| TopicPartitionOffset::new(target.topic.clone(), partition, OFFSET_BEGINNING))
        .collect();
    consumer.assign(&partitions).map_err(|error| error.to_string())?;
    Ok(consumer)
}

fn hl_poll(target: &Target, group: &str, messages: u64) -> Result<(Duration, Duration), String> {
    let clock = Stopwatch::start();
    let consumer = hl_consumer(target, group)?;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut read = 0;
    while read < messages {
        if Instant::now() > deadline {
            return Err(format!("timed out after reading {read} messages"));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_message)) => read += 1,
            Some(Err(error)) => return Err(error.to_string()),
            None => {}
        }
    }
    Ok(clock.stop())
}

fn hl_stream(target: &Target, group: &str, messages: u64) -> Result<(Duration, Duration), String> {
    let clock = Stopwatch::start();
    let consumer = hl_consumer(target, group)?;
    // The read loop has no bound of its own: the parent kills a child that
    // runs longer than CHILD_TIMEOUT.
    block_on(async {
        for _ in 0..messages {
            consumer.recv().await.map_err(|error| error.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    Ok(clock.stop())
}

/// Wall and CPU time of a measured section.
type Times = (Duration, Duration);

/// Median and 99th percentile of commit latency.
type Latencies = (Duration, Duration);

fn hl_commit(target: &Target, group: &str, messages: u64) -> Result<(Times, Latencies), String> {
    let clock = Stopwatch::start();
    let consumer = hl_consumer(target, group)?;
    let (sender, receiver) = mpsc::channel::<(Instant, rdkafka_hl::CommitFuture)>();
    let waiter = thread::spawn(move || {
        let mut latencies = Vec::new();
        for (started, future) in receiver {
            future.wait_timeout(PHASE_TIMEOUT).map_err(|error| error.to_string())?;
            latencies.push(started.elapsed());
        }
        Ok::<_, String>(latencies)
    });

    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut read = 0;
    while read < messages {
        if Instant::now() > deadline {
            return Err(format!("timed out after reading {read} messages"));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                read += 1;
                if read % COMMIT_EVERY == 0 || read == messages {
                    let future = consumer.commit_message(&message).map_err(|error| error.to_string())?;
                    sender.send((Instant::now(), future)).map_err(|_| "the commit waiter stopped".to_owned())?;
                }
            }
            Some(Err(error)) => return Err(error.to_string()),
            None => {}
        }
    }
    drop(sender);
    let mut latencies = waiter.join().map_err(|_| "the commit waiter panicked".to_owned())??;
    let times = clock.stop();

    latencies.sort();
    let median = latencies.get(latencies.len() / 2).copied().unwrap_or_default();
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default();
    Ok((times, (median, p99)))
}

fn raw(target: &Target, group: &str, messages: u64) -> Result<(Duration, Duration), String> {
    let clock = Stopwatch::start();
    let mut errstr = [0 as c_char; 512];
    // SAFETY: rd_kafka_conf_new has no preconditions.
    let conf = unsafe { ll::rd_kafka_conf_new() };
    for (key, value) in target.consumer_properties(group) {
        let (c_key, c_value) = (CString::new(key).unwrap(), CString::new(value).unwrap());
        // SAFETY: conf is valid; the strings are NUL-terminated.
        let result = unsafe { ll::rd_kafka_conf_set(conf, c_key.as_ptr(), c_value.as_ptr(), errstr.as_mut_ptr(), errstr.len()) };
        if result != ll::RD_KAFKA_CONF_OK {
            return Err(format!("rd_kafka_conf_set {key} failed"));
        }
    }
    // SAFETY: conf is valid and taken by rd_kafka_new on success.
    let client = unsafe { ll::rd_kafka_new(ll::RD_KAFKA_CONSUMER, conf, errstr.as_mut_ptr(), errstr.len()) };
    if client.is_null() {
        return Err("rd_kafka_new failed".to_owned());
    }
    let topic = CString::new(target.topic.as_str()).unwrap();

    // SAFETY: the client is valid; the list is created, filled, passed to
    // rd_kafka_assign, which copies it, and destroyed here.
    unsafe {
        ll::rd_kafka_poll_set_consumer(client);
        let list = ll::rd_kafka_topic_partition_list_new(target.partitions);
        for partition in 0..target.partitions {
            (*ll::rd_kafka_topic_partition_list_add(list, topic.as_ptr(), partition)).offset = ll::RD_KAFKA_OFFSET_BEGINNING;
        }
        ll::rd_kafka_assign(client, list);
        ll::rd_kafka_topic_partition_list_destroy(list);
    }

    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut read = 0;
    let mut outcome = Ok(());
    while read < messages {
        if Instant::now() > deadline {
            outcome = Err(format!("timed out after reading {read} messages"));
            break;
        }
        // SAFETY: the client is valid; each message is destroyed here.
        unsafe {
            let message = ll::rd_kafka_consumer_poll(client, 100);
            if message.is_null() {
                continue;
            }
            if (*message).err == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
                read += 1;
            }
            ll::rd_kafka_message_destroy(message);
        }
    }
    let times = clock.stop();
    // SAFETY: the client is valid and not used after destroy.
    unsafe {
        ll::rd_kafka_consumer_close(client);
        ll::rd_kafka_destroy(client);
    }
    outcome.map(|()| times)
}

fn rdkafka_config(target: &Target, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in target.consumer_properties(group) {
        config.set(key, value);
    }
    config
}

fn rdkafka_assignment(target: &Target) -> Result<TopicPartitionList, String> {
    let mut list = TopicPartitionList::new();
    for partition in 0..target.partitions {
        list.add_partition_offset(&target.topic, partition, Offset::Beginning)
            .map_err(|error| error.to_string())?;
    }
    Ok(list)
}

fn rdkafka_base(target: &Target, group: &str, messages: u64) -> Result<(Duration, Duration), String> {
    let clock = Stopwatch::start();
    let consumer: BaseConsumer = rdkafka_config(target, group).create().map_err(|error| error.to_string())?;
    consumer.assign(&rdkafka_assignment(target)?).map_err(|error| error.to_string())?;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut read = 0;
    while read < messages {
        if Instant::now() > deadline {
            return Err(format!("timed out after reading {read} messages"));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_message)) => read += 1,
            Some(Err(error)) => return Err(error.to_string()),
            None => {}
        }
    }
    Ok(clock.stop())
}

fn rdkafka_stream(target: &Target, group: &str, messages: u64) -> Result<(Duration, Duration), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let clock = Stopwatch::start();
    runtime.block_on(async {
        let consumer: StreamConsumer = rdkafka_config(target, group).create().map_err(|error| error.to_string())?;
        consumer.assign(&rdkafka_assignment(target)?).map_err(|error| error.to_string())?;
        for _ in 0..messages {
            consumer.recv().await.map_err(|error| error.to_string())?;
        }
        Ok::<_, String>(())
    })?;
    Ok(clock.stop())
}
