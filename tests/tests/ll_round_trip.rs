//! A round trip through the raw `rdkafka-ll` bindings: produce with
//! `rd_kafka_producev`, read the delivery reports from the main event queue,
//! then read every message back with a consumer that assigns the partitions
//! itself.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_int, c_void, CStr, CString};

use rdkafka_e2e::{describe_missing, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_ll::*;

const MESSAGE_COUNT: usize = 300;
const PARTITION_COUNT: i32 = 3;

/// How long one `rd_kafka_queue_poll` or `rd_kafka_consumer_poll` blocks, in
/// milliseconds, kept short so that the deadline checks run often.
const POLL_TIMEOUT_MS: c_int = 100;

#[test]
fn round_trip_mock() {
    round_trip(&Target::mock());
}

#[test]
fn round_trip_real_broker() {
    if let Some(target) = Target::real_broker() {
        round_trip(&target);
    }
}

/// Produces [`MESSAGE_COUNT`] messages over [`PARTITION_COUNT`] partitions,
/// checks their delivery reports, then consumes them and checks that every
/// message arrives once, at the partition and offset of its report, with its
/// key and value.
fn round_trip(target: &Target) {
    let topic = target.create_topic("ll-round-trip", PARTITION_COUNT);
    let servers = target.bootstrap_servers();

    let reports = produce_all(&servers, &topic);
    check_report_offsets(&reports);
    consume_all(&servers, &topic, &reports);
}

fn partition_of(id: usize) -> i32 {
    (id % PARTITION_COUNT as usize) as i32
}

fn key_of(id: usize) -> Vec<u8> {
    format!("ll-key-{id}").into_bytes()
}

/// Returns a value of varying length that ends with the id as 8
/// little-endian bytes. The NUL bytes among them check that payloads are
/// copied as binary.
fn value_of(id: usize) -> Vec<u8> {
    let mut value = format!("ll-value-{id};").repeat(id % 5 + 1).into_bytes();
    value.extend_from_slice(&(id as u64).to_le_bytes());
    value
}

/// The fields of a delivery report or a consumed message, copied out of
/// librdkafka.
#[derive(Debug)]
struct CopiedMessage {
    error: rd_kafka_resp_err_t,
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Produces every message with `rd_kafka_producev` and returns the delivery
/// reports by message id, after checking each report against its message.
fn produce_all(servers: &str, topic: &str) -> BTreeMap<usize, CopiedMessage> {
    let producer = new_client(RD_KAFKA_PRODUCER, &[("bootstrap.servers", servers)], RD_KAFKA_EVENT_DR);
    let c_topic = CString::new(topic).expect("unique_name returns no NUL bytes");

    for id in 0..MESSAGE_COUNT {
        let key = key_of(id);
        let value = value_of(id);
        // The opaque is id + 1, so that no message carries the NULL opaque
        // that librdkafka also uses for "no opaque".
        let opaque = (id + 1) as *mut c_void;

        // SAFETY: the producer is valid. Each RD_KAFKA_VTYPE_* is followed by
        // the C arguments that rd_kafka_producev reads for it: a C string, an
        // int32_t, two pointer and size_t pairs, a pointer and an int. The
        // list ends with RD_KAFKA_VTYPE_END. RD_KAFKA_MSG_F_COPY makes
        // librdkafka copy the key and value before it returns.
        let error = unsafe {
            rd_kafka_producev(
                producer,
                RD_KAFKA_VTYPE_TOPIC,
                c_topic.as_ptr(),
                RD_KAFKA_VTYPE_PARTITION,
                partition_of(id),
                RD_KAFKA_VTYPE_KEY,
                key.as_ptr() as *mut c_void,
                key.len(),
                RD_KAFKA_VTYPE_VALUE,
                value.as_ptr() as *mut c_void,
                value.len(),
                RD_KAFKA_VTYPE_OPAQUE,
                opaque,
                RD_KAFKA_VTYPE_MSGFLAGS,
                RD_KAFKA_MSG_F_COPY,
                RD_KAFKA_VTYPE_END,
            )
        };
        assert_eq!(error, RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_producev of message {id} failed: {}", error_name(error));
    }

    let reports = collect_delivery_reports(producer, topic);

    // SAFETY: the producer is valid.
    let flushed = unsafe { rd_kafka_flush(producer, 10_000) };
    assert_eq!(flushed, RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_flush after all reports failed: {}", error_name(flushed));
    // SAFETY: the producer is valid.
    let queued = unsafe { rd_kafka_outq_len(producer) };
    assert_eq!(queued, 0, "rd_kafka_outq_len after all delivery reports");
    // SAFETY: the producer is valid, its queue references are destroyed and
    // it is not used again.
    unsafe { rd_kafka_destroy(producer) };

    reports
}

/// Reads delivery report events from the producer's main queue until every
/// message has its report, and checks each report.
fn collect_delivery_reports(producer: *mut rd_kafka_t, topic: &str) -> BTreeMap<usize, CopiedMessage> {
    // SAFETY: the producer is valid. The reference is destroyed below.
    let queue = unsafe { rd_kafka_queue_get_main(producer) };
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{MESSAGE_COUNT} delivery reports on topic {topic}"));
    let mut reports = BTreeMap::new();

    while reports.len() < MESSAGE_COUNT {
        deadline.check(|| describe_missing(MESSAGE_COUNT, &reports.keys().copied().collect()));

        // SAFETY: the queue is valid. An event it returns is ours to destroy.
        let event = unsafe { rd_kafka_queue_poll(queue, POLL_TIMEOUT_MS) };
        if event.is_null() {
            continue;
        }
        // SAFETY: the event is valid until it is destroyed below.
        let event_type = unsafe { rd_kafka_event_type(event) };
        if event_type != RD_KAFKA_EVENT_DR {
            // SAFETY: the event is valid, and rd_kafka_event_name returns a
            // static NUL-terminated string.
            let name = unsafe { copy_c_string(rd_kafka_event_name(event)) };
            panic!("the main queue returned a {name} event, but only delivery reports are enabled");
        }

        loop {
            // SAFETY: the event is a valid delivery report event. The message
            // it returns lives as long as the event.
            let message = unsafe { rd_kafka_event_message_next(event) };
            if message.is_null() {
                break;
            }
            // SAFETY: as above. The opaque is the `_private` field of a
            // delivery report message, as rdkafka.h documents.
            let (report, opaque) = unsafe { (copy_message(message), (*message)._private as usize) };

            assert!(
                (1..=MESSAGE_COUNT).contains(&opaque),
                "delivery report with opaque {opaque}, which no message was sent with: {report:?}"
            );
            let id = opaque - 1;
            check_report(id, &report, topic);
            assert!(!reports.contains_key(&id), "second delivery report for message {id}: {report:?}");
            reports.insert(id, report);
        }

        // SAFETY: the event is ours, and nothing borrowed from it is used
        // after this.
        unsafe { rd_kafka_event_destroy(event) };
    }

    // SAFETY: the queue reference is ours and not used again.
    unsafe { rd_kafka_queue_destroy(queue) };
    reports
}

fn check_report(id: usize, report: &CopiedMessage, topic: &str) {
    assert_eq!(
        report.error,
        RD_KAFKA_RESP_ERR_NO_ERROR,
        "delivery of message {id} failed: {}",
        error_name(report.error)
    );
    assert_eq!(report.topic, topic, "topic in the delivery report of message {id}");
    assert_eq!(report.partition, partition_of(id), "partition in the delivery report of message {id}");
    assert_eq!(report.key, Some(key_of(id)), "key in the delivery report of message {id}");
    assert_eq!(report.value, Some(value_of(id)), "value in the delivery report of message {id}");
}

/// Checks that in each partition the reported offsets, in send order, are
/// 0, 1, 2 and so on. One producer sends to a partition in order, and with
/// no failed requests nothing is retried out of order.
fn check_report_offsets(reports: &BTreeMap<usize, CopiedMessage>) {
    for partition in 0..PARTITION_COUNT {
        let offsets: Vec<i64> = reports
            .values()
            .filter(|report| report.partition == partition)
            .map(|report| report.offset)
            .collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();

        assert_eq!(offsets.len(), MESSAGE_COUNT / PARTITION_COUNT as usize, "reports for partition {partition}");
        assert_eq!(offsets, expected, "reported offsets of partition {partition}, in send order");
    }
}

/// Assigns all partitions from the beginning, consumes until every reported
/// message has arrived, and checks each against its report and its id.
fn consume_all(servers: &str, topic: &str, reports: &BTreeMap<usize, CopiedMessage>) {
    let group = unique_name("ll-round-trip");
    let settings = [
        ("bootstrap.servers", servers),
        ("group.id", group.as_str()),
        ("enable.auto.commit", "false"),
    ];
    let consumer = new_client(RD_KAFKA_CONSUMER, &settings, 0);
    assign_from_beginning(consumer, topic);

    let ids_by_position: BTreeMap<(i32, i64), usize> = reports
        .iter()
        .map(|(id, report)| ((report.partition, report.offset), *id))
        .collect();
    let mut next_offsets: BTreeMap<i32, i64> = (0..PARTITION_COUNT).map(|partition| (partition, 0)).collect();
    let mut received = BTreeSet::new();
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{MESSAGE_COUNT} messages from topic {topic}"));

    while received.len() < MESSAGE_COUNT {
        deadline.check(|| describe_missing(MESSAGE_COUNT, &received));

        // SAFETY: the consumer is valid. A message it returns is ours to
        // destroy.
        let raw = unsafe { rd_kafka_consumer_poll(consumer, POLL_TIMEOUT_MS) };
        if raw.is_null() {
            continue;
        }
        // SAFETY: the message is valid until it is destroyed below.
        let message = unsafe { copy_message(raw) };
        let error_text = (message.error != RD_KAFKA_RESP_ERR_NO_ERROR)
            // SAFETY: as above, and the error string lives as long as the message.
            .then(|| unsafe { copy_c_string(rd_kafka_message_errstr(raw)) });
        // SAFETY: the message is ours and nothing borrowed from it is used
        // after this.
        unsafe { rd_kafka_message_destroy(raw) };

        if let Some(text) = error_text {
            panic!("rd_kafka_consumer_poll returned error {}: {text}", error_name(message.error));
        }
        let position = (message.partition, message.offset);
        let Some(&id) = ids_by_position.get(&position) else {
            panic!("consumed a message at partition {} offset {} that no delivery report named: {message:?}", position.0, position.1);
        };
        assert!(received.insert(id), "message {id} was consumed twice");

        let next_offset = next_offsets.get_mut(&message.partition).expect("partition is in 0..PARTITION_COUNT");
        assert_eq!(message.offset, *next_offset, "offset of the next message consumed from partition {}", message.partition);
        *next_offset += 1;

        assert_eq!(message.topic, topic, "topic of consumed message {id}");
        assert_eq!(message.partition, partition_of(id), "partition of consumed message {id}");
        assert_eq!(message.key, Some(key_of(id)), "key of consumed message {id}");
        assert_eq!(message.value, Some(value_of(id)), "value of consumed message {id}");
    }

    // SAFETY: the consumer is valid.
    let closed = unsafe { rd_kafka_consumer_close(consumer) };
    assert_eq!(closed, RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_consumer_close failed: {}", error_name(closed));
    // SAFETY: the consumer is closed and not used again.
    unsafe { rd_kafka_destroy(consumer) };
}

/// Assigns every partition of `topic` to `consumer`, starting at
/// `RD_KAFKA_OFFSET_BEGINNING`.
fn assign_from_beginning(consumer: *mut rd_kafka_t, topic: &str) {
    let c_topic = CString::new(topic).expect("unique_name returns no NUL bytes");

    // SAFETY: rd_kafka_topic_partition_list_new only allocates. The list is
    // destroyed below.
    let list = unsafe { rd_kafka_topic_partition_list_new(PARTITION_COUNT) };
    for partition in 0..PARTITION_COUNT {
        // SAFETY: the list is valid and librdkafka copies the topic name. The
        // element returned points into the list, which is alive.
        unsafe {
            let element = rd_kafka_topic_partition_list_add(list, c_topic.as_ptr(), partition);
            (*element).offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    }

    // SAFETY: the consumer and the list are valid, and librdkafka copies the list.
    let error = unsafe { rd_kafka_assign(consumer, list) };
    // SAFETY: the list is ours and not used again.
    unsafe { rd_kafka_topic_partition_list_destroy(list) };
    assert_eq!(error, RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_assign failed: {}", error_name(error));
}

/// Creates a client of `kind` from `settings`, with `events` enabled on its
/// event queues (0 for none). Panics naming the setting that librdkafka
/// rejects.
fn new_client(kind: rd_kafka_type_t, settings: &[(&str, &str)], events: c_int) -> *mut rd_kafka_t {
    let mut errstr = [0 as c_char; 512];
    // SAFETY: rd_kafka_conf_new only allocates. The conf is passed to
    // rd_kafka_new below, which takes ownership of it on success.
    let conf = unsafe { rd_kafka_conf_new() };

    for (key, value) in settings {
        let c_key = CString::new(*key).expect("setting keys contain no NUL bytes");
        let c_value = CString::new(*value).expect("setting values contain no NUL bytes");
        // SAFETY: the conf is valid, the strings are NUL-terminated and
        // errstr is writable for its length.
        let result = unsafe { rd_kafka_conf_set(conf, c_key.as_ptr(), c_value.as_ptr(), errstr.as_mut_ptr(), errstr.len()) };
        assert_eq!(result, RD_KAFKA_CONF_OK, "rd_kafka_conf_set({key}={value}) failed: {}", buffer_text(&errstr));
    }
    if events != 0 {
        // SAFETY: the conf is valid.
        unsafe { rd_kafka_conf_set_events(conf, events) };
    }

    // SAFETY: the conf is valid and errstr is writable for its length.
    let client = unsafe { rd_kafka_new(kind, conf, errstr.as_mut_ptr(), errstr.len()) };
    if client.is_null() {
        // SAFETY: rd_kafka_new failed, so the conf is still ours.
        unsafe { rd_kafka_conf_destroy(conf) };
        panic!("rd_kafka_new failed: {}", buffer_text(&errstr));
    }
    client
}

/// Copies the fields of a message. The topic is empty when the message has
/// none, as some consumer errors do.
///
/// # Safety
///
/// `message` must point to a valid message for the duration of the call.
unsafe fn copy_message(message: *const rd_kafka_message_t) -> CopiedMessage {
    // SAFETY: the caller guarantees a valid message.
    let fields = unsafe { &*message };
    let topic = if fields.rkt.is_null() {
        String::new()
    } else {
        // SAFETY: the message keeps a reference to its topic, whose name is a
        // NUL-terminated string that lives as long as the topic.
        unsafe { copy_c_string(rd_kafka_topic_name(fields.rkt)) }
    };

    CopiedMessage {
        error: fields.err,
        topic,
        partition: fields.partition,
        offset: fields.offset,
        // SAFETY: librdkafka keeps key and payload valid for key_len and len
        // bytes while the message lives.
        key: unsafe { copy_bytes(fields.key, fields.key_len) },
        // SAFETY: as above.
        value: unsafe { copy_bytes(fields.payload, fields.len) },
    }
}

/// Copies `len` bytes at `data`, or returns `None` for a NULL pointer.
///
/// # Safety
///
/// A non-NULL `data` must be valid for reads of `len` bytes.
unsafe fn copy_bytes(data: *const c_void, len: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees that data is valid for len bytes.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec())
}

/// Copies a C string, or returns an empty string for NULL.
///
/// # Safety
///
/// A non-NULL `text` must point to a NUL-terminated string.
unsafe fn copy_c_string(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// Reads the NUL-terminated text that librdkafka wrote into `buffer`.
fn buffer_text(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Returns the librdkafka name of an error code, such as `_MSG_TIMED_OUT`.
fn error_name(code: rd_kafka_resp_err_t) -> String {
    // SAFETY: rd_kafka_err2name accepts any code and returns a static
    // NUL-terminated string.
    unsafe { copy_c_string(rd_kafka_err2name(code)) }
}
