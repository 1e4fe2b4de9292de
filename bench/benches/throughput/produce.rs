//! Produce measurements: time from the first send until the last delivery
//! report, for every message.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer as _, ProducerContext};
use rdkafka::ClientContext;
use rdkafka_hl::{Config, Producer, Record};
use rdkafka_ll as ll;

use crate::cluster::Target;
use crate::report::Measurement;
use crate::runtime::{block_on, peak_rss, Stopwatch};
use crate::{Options, Variant, PHASE_TIMEOUT};

pub fn run(variant: Variant, options: &Options) -> Result<Measurement, String> {
    let target = Target::new(options, 3)?;
    let payload = vec![b'x'; options.size];
    let (wall, cpu) = match variant {
        Variant::ProduceRawCallback => raw_callback(&target, options.messages, &payload)?,
        Variant::ProduceRawEvents => raw_events(&target, options.messages, &payload)?,
        Variant::ProduceHlFuture => hl(&target, options.messages, &payload, false)?,
        Variant::ProduceHlOwned => hl(&target, options.messages, &payload, true)?,
        Variant::ProduceRdkafkaBase => rdkafka_base(&target, options.messages, &payload)?,
        Variant::ProduceRdkafkaFuture => rdkafka_future(&target, options.messages, &payload)?,
        other => return Err(format!("{} is not a produce variant", other.name())),
    };
    Ok(Measurement {
        wall,
        cpu,
        peak_bytes: peak_rss(),
        messages: options.messages,
        latency: None,
    })
}

/// Delivery reports counted by [`count_delivery`], which librdkafka calls
/// on the thread that polls.
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Counts one delivery report. It only touches atomics, so it cannot
/// panic across the FFI boundary.
unsafe extern "C" fn count_delivery(_client: *mut ll::rd_kafka_t, message: *const ll::rd_kafka_message_t, _opaque: *mut c_void) {
    // SAFETY: librdkafka passes a valid message for the callback's duration.
    let failed = unsafe { (*message).err } != ll::RD_KAFKA_RESP_ERR_NO_ERROR;
    if failed {
        FAILED.fetch_add(1, Ordering::Relaxed);
    } else {
        DELIVERED.fetch_add(1, Ordering::Relaxed);
    }
}

/// A raw producer handle, destroyed on drop.
struct RawProducer(*mut ll::rd_kafka_t);

// SAFETY: librdkafka client handles may be used from any thread.
unsafe impl Send for RawProducer {}
// SAFETY: as above.
unsafe impl Sync for RawProducer {}

impl RawProducer {
    fn new(target: &Target, configure: impl FnOnce(*mut ll::rd_kafka_conf_t)) -> Result<Self, String> {
        let mut errstr = [0 as c_char; 512];
        // SAFETY: rd_kafka_conf_new has no preconditions.
        let conf = unsafe { ll::rd_kafka_conf_new() };
        for (key, value) in target.producer_properties() {
            let (c_key, c_value) = (CString::new(key).unwrap(), CString::new(value).unwrap());
            // SAFETY: conf is valid; the strings are NUL-terminated.
            let result =
                unsafe { ll::rd_kafka_conf_set(conf, c_key.as_ptr(), c_value.as_ptr(), errstr.as_mut_ptr(), errstr.len()) };
            if result != ll::RD_KAFKA_CONF_OK {
                return Err(format!("rd_kafka_conf_set {key} failed"));
            }
        }
        configure(conf);
        // SAFETY: conf is valid and taken by rd_kafka_new on success.
        let client = unsafe { ll::rd_kafka_new(ll::RD_KAFKA_PRODUCER, conf, errstr.as_mut_ptr(), errstr.len()) };
        if client.is_null() {
            return Err("rd_kafka_new failed".to_owned());
        }
        Ok(Self(client))
    }

    /// Sends one copied message; returns the error code.
    fn produce(&self, topic: &CString, payload: &[u8], flags: i32) -> ll::rd_kafka_resp_err_t {
        // SAFETY: the handle is valid; the topic and payload outlive the
        // call and librdkafka copies the payload.
        unsafe {
            ll::rd_kafka_producev(
                self.0,
                ll::RD_KAFKA_VTYPE_TOPIC,
                topic.as_ptr(),
                ll::RD_KAFKA_VTYPE_VALUE,
                payload.as_ptr() as *mut c_void,
                payload.len(),
                ll::RD_KAFKA_VTYPE_MSGFLAGS,
                flags,
                ll::RD_KAFKA_VTYPE_END,
            )
        }
    }
}

impl Drop for RawProducer {
    fn drop(&mut self) {
        // SAFETY: self owns the handle and nothing uses it any more.
        unsafe { ll::rd_kafka_destroy(self.0) };
    }
}

fn raw_callback(target: &Target, messages: u64, payload: &[u8]) -> Result<(Duration, Duration), String> {
    let producer = RawProducer::new(target, |conf| {
        // SAFETY: conf is valid; the callback is a plain function.
        unsafe { ll::rd_kafka_conf_set_dr_msg_cb(conf, Some(count_delivery)) }
    })?;
    let topic = CString::new(target.topic.as_str()).unwrap();
    let clock = Stopwatch::start();

    for sent in 0..messages {
        loop {
            match producer.produce(&topic, payload, ll::RD_KAFKA_MSG_F_COPY) {
                ll::RD_KAFKA_RESP_ERR_NO_ERROR => break,
                // SAFETY: the handle is valid.
                ll::RD_KAFKA_RESP_ERR__QUEUE_FULL => unsafe { ll::rd_kafka_poll(producer.0, 1) },
                code => return Err(format!("producev failed with {code}")),
            };
        }
        if sent % 1000 == 0 {
            // SAFETY: the handle is valid.
            unsafe { ll::rd_kafka_poll(producer.0, 0) };
        }
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while DELIVERED.load(Ordering::Relaxed) + FAILED.load(Ordering::Relaxed) < messages {
        if Instant::now() > deadline {
            return Err("timed out waiting for delivery reports".to_owned());
        }
        // SAFETY: the handle is valid.
        unsafe { ll::rd_kafka_poll(producer.0, 100) };
    }
    let times = clock.stop();
    check_failures(FAILED.load(Ordering::Relaxed))?;
    Ok(times)
}

fn raw_events(target: &Target, messages: u64, payload: &[u8]) -> Result<(Duration, Duration), String> {
    let producer = Arc::new(RawProducer::new(target, |conf| {
        // SAFETY: conf is valid.
        unsafe { ll::rd_kafka_conf_set_events(conf, ll::RD_KAFKA_EVENT_DR) }
    })?);
    let topic = CString::new(target.topic.as_str()).unwrap();
    let clock = Stopwatch::start();

    let drain = {
        let producer = Arc::clone(&producer);
        thread::spawn(move || {
            // SAFETY: the handle is valid while the Arc lives.
            let queue = unsafe { ll::rd_kafka_queue_get_main(producer.0) };
            let (mut delivered, mut failed) = (0u64, 0u64);
            let deadline = Instant::now() + PHASE_TIMEOUT;
            while delivered + failed < messages && Instant::now() < deadline {
                // SAFETY: the queue is valid; each event is destroyed here.
                unsafe {
                    let event = ll::rd_kafka_queue_poll(queue, 100);
                    if event.is_null() {
                        continue;
                    }
                    loop {
                        let message = ll::rd_kafka_event_message_next(event);
                        if message.is_null() {
                            break;
                        }
                        if (*message).err == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
                            delivered += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    ll::rd_kafka_event_destroy(event);
                }
            }
            // SAFETY: the queue reference is ours.
            unsafe { ll::rd_kafka_queue_destroy(queue) };
            (delivered, failed)
        })
    };

    for _ in 0..messages {
        let code = producer.produce(&topic, payload, ll::RD_KAFKA_MSG_F_COPY | ll::RD_KAFKA_MSG_F_BLOCK);
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("producev failed with {code}"));
        }
    }
    let (delivered, failed) = drain.join().map_err(|_| "the drain thread panicked".to_owned())?;
    let times = clock.stop();
    if delivered + failed < messages {
        return Err("timed out waiting for delivery reports".to_owned());
    }
    check_failures(failed)?;
    Ok(times)
}

fn hl(target: &Target, messages: u64, payload: &[u8], owned: bool) -> Result<(Duration, Duration), String> {
    let config = target
        .producer_properties()
        .into_iter()
        .try_fold(Config::new(), |config, (key, value)| config.set(key, &value))
        .map_err(|error| error.to_string())?;
    let producer = Producer::new(config).map_err(|error| error.to_string())?;
    let mut futures = Vec::with_capacity(messages as usize);
    let clock = Stopwatch::start();

    for _ in 0..messages {
        let record = if owned {
            Record::to(&target.topic).value(payload.to_vec())
        } else {
            Record::to(&target.topic).value(payload)
        };
        let future = producer.send_wait(record, PHASE_TIMEOUT).map_err(|error| error.to_string())?;
        futures.push(future);
    }
    let mut failed = 0;
    for future in futures {
        if future.wait_timeout(PHASE_TIMEOUT).is_err() {
            failed += 1;
        }
    }
    let times = clock.stop();
    check_failures(failed)?;
    Ok(times)
}

/// Counts rust-rdkafka's delivery reports.
#[derive(Default)]
struct CountingContext {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        let counter = if result.is_ok() { &self.delivered } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn rdkafka_config(target: &Target) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in target.producer_properties() {
        config.set(key, value);
    }
    config
}

fn rdkafka_base(target: &Target, messages: u64, payload: &[u8]) -> Result<(Duration, Duration), String> {
    let producer: BaseProducer<CountingContext> = rdkafka_config(target)
        .create_with_context(CountingContext::default())
        .map_err(|error| error.to_string())?;
    let clock = Stopwatch::start();

    for sent in 0..messages {
        let mut record = BaseRecord::<(), [u8]>::to(&target.topic).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), returned)) => {
                    producer.poll(Duration::from_millis(1));
                    record = returned;
                }
                Err((error, _)) => return Err(format!("send failed: {error}")),
            }
        }
        if sent % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let context = producer.context();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while context.delivered.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed) < messages {
        if Instant::now() > deadline {
            return Err("timed out waiting for delivery reports".to_owned());
        }
        producer.poll(Duration::from_millis(100));
    }
    let times = clock.stop();
    check_failures(context.failed.load(Ordering::Relaxed))?;
    Ok(times)
}

fn rdkafka_future(target: &Target, messages: u64, payload: &[u8]) -> Result<(Duration, Duration), String> {
    let producer: FutureProducer = rdkafka_config(target).create().map_err(|error| error.to_string())?;
    let mut futures = Vec::with_capacity(messages as usize);
    let clock = Stopwatch::start();

    for _ in 0..messages {
        let mut record = FutureRecord::<(), [u8]>::to(&target.topic).payload(payload);
        loop {
            match producer.send_result(record) {
                Ok(future) => {
                    futures.push(future);
                    break;
                }
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), returned)) => {
                    thread::sleep(Duration::from_millis(1));
                    record = returned;
                }
                Err((error, _)) => return Err(format!("send failed: {error}")),
            }
        }
    }
    let mut failed = 0;
    for future in futures {
        if !matches!(block_on(future), Ok(Ok(_))) {
            failed += 1;
        }
    }
    let times = clock.stop();
    check_failures(failed)?;
    Ok(times)
}

fn check_failures(failed: u64) -> Result<(), String> {
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} messages failed"))
    }
}
