//! Creating and deleting topics, and adding partitions.

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka_ll as ll;

use super::{wait_for, AdminClient, AdminOptions};
use crate::error::{Error, ErrorCode, KafkaError, Result};
use crate::future::KafkaFuture;
use crate::native::{c_buffer_to_string, NativeEvent};

/// A topic to create.
///
/// ```
/// use rdkafka_hl::NewTopic;
///
/// let topic = NewTopic::new("orders", 6, 3).config("min.insync.replicas", "2");
/// let placed = NewTopic::with_replica_assignment("pinned", vec![vec![1, 2], vec![2, 3]]);
/// # let _ = (topic, placed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    name: String,
    partitions: i32,
    replication_factor: i32,
    replica_assignment: Vec<Vec<i32>>,
    configs: Vec<(String, String)>,
}

impl NewTopic {
    /// Describes a topic with `partitions` partitions of `replication_factor`
    /// replicas each; -1 for either takes the broker's default.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            replica_assignment: Vec::new(),
            configs: Vec::new(),
        }
    }

    /// Describes a topic whose partition `i` has its replicas on the brokers listed
    /// in `assignment[i]`, the first of them the preferred leader.
    pub fn with_replica_assignment(name: impl Into<String>, assignment: Vec<Vec<i32>>) -> Self {
        Self {
            partitions: i32::try_from(assignment.len()).unwrap_or(i32::MAX),
            replication_factor: -1,
            replica_assignment: assignment,
            ..Self::new(name, 0, -1)
        }
    }

    /// Adds a topic configuration entry, such as `("retention.ms", "60000")`.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }

    fn to_native(&self) -> Result<OwnedNewTopic> {
        let name = c_string(&self.name, "topic name")?;
        let mut errstr = [0 as c_char; 512];
        // SAFETY: the name is NUL-terminated; errstr is writable.
        let raw = unsafe {
            ll::rd_kafka_NewTopic_new(name.as_ptr(), self.partitions, self.replication_factor, errstr.as_mut_ptr(), errstr.len())
        };
        let topic = OwnedNewTopic(NonNull::new(raw).ok_or_else(|| invalid(&self.name, &errstr))?);

        for (partition, brokers) in self.replica_assignment.iter().enumerate() {
            let mut brokers = brokers.clone();
            // SAFETY: the object is owned by `topic`; the broker ids are
            // valid for the call and copied.
            let code = unsafe {
                ll::rd_kafka_NewTopic_set_replica_assignment(
                    topic.0.as_ptr(),
                    partition as i32,
                    brokers.as_mut_ptr(),
                    brokers.len(),
                    errstr.as_mut_ptr(),
                    errstr.len(),
                )
            };
            if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(invalid(&self.name, &errstr));
            }
        }

        for (key, value) in &self.configs {
            let (c_key, c_value) = (c_string(key, "topic config key")?, c_string(value, "topic config value")?);
            // SAFETY: the object is owned by `topic`; librdkafka copies the strings.
            let code = unsafe { ll::rd_kafka_NewTopic_set_config(topic.0.as_ptr(), c_key.as_ptr(), c_value.as_ptr()) };
            if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(Error::kafka("set topic config", code));
            }
        }
        Ok(topic)
    }
}

/// Partitions to add to an existing topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    /// The topic.
    pub topic: String,
    /// The total number of partitions the topic shall have.
    pub total: usize,
}

/// The outcome of a request for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    /// The topic.
    pub name: String,
    /// The error for this topic, such as
    /// [`ErrorCode::TOPIC_ALREADY_EXISTS`], or `None` on success.
    pub error: Option<KafkaError>,
}

impl AdminClient {
    /// Creates topics. The future resolves to one [`TopicResult`] per topic.
    pub fn create_topics(&self, topics: &[NewTopic], options: &AdminOptions) -> Result<KafkaFuture<Vec<TopicResult>>> {
        let natives = topics.iter().map(NewTopic::to_native).collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|topic| topic.0.as_ptr()).collect();

        self.request("create topics", ll::RD_KAFKA_ADMIN_OP_CREATETOPICS, options, parse_create_topics, |options, queue| {
            // SAFETY: the client, topics, options and queue are valid; librdkafka copies the request.
            unsafe { ll::rd_kafka_CreateTopics(self.client_ptr(), pointers.as_mut_ptr(), pointers.len(), options, queue) }
        })
    }

    /// Deletes topics. The future resolves to one [`TopicResult`] per topic,
    /// with [`ErrorCode::UNKNOWN_TOPIC_OR_PARTITION`] for a missing one.
    pub fn delete_topics(&self, names: &[&str], options: &AdminOptions) -> Result<KafkaFuture<Vec<TopicResult>>> {
        let natives = names
            .iter()
            .map(|name| {
                let c_name = c_string(name, "topic name")?;
                // SAFETY: the name is NUL-terminated and copied.
                let raw = unsafe { ll::rd_kafka_DeleteTopic_new(c_name.as_ptr()) };
                Ok(OwnedDeleteTopic(NonNull::new(raw).expect("rd_kafka_DeleteTopic_new returned NULL")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|topic| topic.0.as_ptr()).collect();

        self.request("delete topics", ll::RD_KAFKA_ADMIN_OP_DELETETOPICS, options, parse_delete_topics, |options, queue| {
            // SAFETY: as for create_topics.
            unsafe { ll::rd_kafka_DeleteTopics(self.client_ptr(), pointers.as_mut_ptr(), pointers.len(), options, queue) }
        })
    }

    /// Raises the partition count of existing topics.
    pub fn create_partitions(
        &self,
        partitions: &[NewPartitions],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<TopicResult>>> {
        let mut errstr = [0 as c_char; 512];
        let natives = partitions
            .iter()
            .map(|entry| {
                let c_name = c_string(&entry.topic, "topic name")?;
                // SAFETY: the name is NUL-terminated; errstr is writable.
                let raw = unsafe { ll::rd_kafka_NewPartitions_new(c_name.as_ptr(), entry.total, errstr.as_mut_ptr(), errstr.len()) };
                NonNull::new(raw).map(OwnedNewPartitions).ok_or_else(|| invalid(&entry.topic, &errstr))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|entry| entry.0.as_ptr()).collect();

        self.request("create partitions", ll::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS, options, parse_create_partitions, |options, queue| {
            // SAFETY: as for create_topics.
            unsafe { ll::rd_kafka_CreatePartitions(self.client_ptr(), pointers.as_mut_ptr(), pointers.len(), options, queue) }
        })
    }

    /// Creates one topic and waits for the result, up to `timeout` (plus a
    /// second for librdkafka to report its own timeout).
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] with the broker's code for the topic, such as
    /// [`ErrorCode::TOPIC_ALREADY_EXISTS`]; [`Error::TimedOut`] when no
    /// result arrived in time.
    pub fn create_topic(&self, name: &str, partitions: i32, replication_factor: i32, timeout: Duration) -> Result<()> {
        self.create_topic_with_configs(name, partitions, replication_factor, &[], timeout)
    }

    /// Creates one topic with configuration entries, as
    /// [`create_topic`](Self::create_topic) does.
    pub fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<()> {
        let topic = configs
            .iter()
            .fold(NewTopic::new(name, partitions, replication_factor), |topic, (key, value)| topic.config(*key, *value));
        let options = AdminOptions::new().request_timeout(timeout);
        let results = wait_for(self.create_topics(&[topic], &options)?, &options)?;
        first_error("create topic", results)
    }

    /// Deletes one topic and waits for the result, up to `timeout`.
    pub fn delete_topic(&self, name: &str, timeout: Duration) -> Result<()> {
        let options = AdminOptions::new().request_timeout(timeout);
        let results = wait_for(self.delete_topics(&[name], &options)?, &options)?;
        first_error("delete topic", results)
    }
}

/// Turns the first per-topic error into the call's error.
fn first_error(operation: &'static str, results: Vec<TopicResult>) -> Result<()> {
    match results.into_iter().find_map(|result| result.error) {
        Some(error) => Err(Error::Kafka { operation, error }),
        None => Ok(()),
    }
}

fn parse_create_topics(event: &NativeEvent) -> Result<Vec<TopicResult>> {
    // SAFETY: the event is a CreateTopics result event; the array and its
    // results live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_CreateTopics_result(event.as_ptr());
        let mut count = 0usize;
        let topics = ll::rd_kafka_CreateTopics_result_topics(result, &mut count);
        Ok(read_topic_results(topics, count))
    }
}

fn parse_delete_topics(event: &NativeEvent) -> Result<Vec<TopicResult>> {
    // SAFETY: as for parse_create_topics, for a DeleteTopics result.
    unsafe {
        let result = ll::rd_kafka_event_DeleteTopics_result(event.as_ptr());
        let mut count = 0usize;
        let topics = ll::rd_kafka_DeleteTopics_result_topics(result, &mut count);
        Ok(read_topic_results(topics, count))
    }
}

fn parse_create_partitions(event: &NativeEvent) -> Result<Vec<TopicResult>> {
    // SAFETY: as for parse_create_topics, for a CreatePartitions result.
    unsafe {
        let result = ll::rd_kafka_event_CreatePartitions_result(event.as_ptr());
        let mut count = 0usize;
        let topics = ll::rd_kafka_CreatePartitions_result_topics(result, &mut count);
        Ok(read_topic_results(topics, count))
    }
}

/// Copies an array of `rd_kafka_topic_result_t`.
///
/// # Safety
///
/// `topics` must be NULL or point to `count` valid results.
pub(super) unsafe fn read_topic_results(topics: *mut *const ll::rd_kafka_topic_result_t, count: usize) -> Vec<TopicResult> {
    if topics.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `count` valid entries.
    let topics = unsafe { std::slice::from_raw_parts(topics, count) };
    topics
        .iter()
        .map(|&topic| {
            // SAFETY: each entry is a valid result whose strings live as
            // long as the event.
            unsafe {
                let name = CStr::from_ptr(ll::rd_kafka_topic_result_name(topic)).to_string_lossy().into_owned();
                let code = ll::rd_kafka_topic_result_error(topic);
                let error = (code != ll::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
                    let text = ll::rd_kafka_topic_result_error_string(topic);
                    let code = ErrorCode::from_raw(code);
                    match crate::native::optional_c_string(text) {
                        Some(text) => KafkaError::with_message(code, text),
                        None => KafkaError::from_code(code),
                    }
                });
                TopicResult { name, error }
            }
        })
        .collect()
}

pub(super) fn c_string(value: &str, what: &'static str) -> Result<CString> {
    CString::new(value).map_err(|_| Error::InvalidArgument {
        what,
        value: value.to_owned(),
        reason: "it contains a NUL byte",
    })
}

fn invalid(name: &str, errstr: &[c_char]) -> Error {
    Error::Kafka {
        operation: "prepare admin request",
        error: KafkaError::with_message(
            ErrorCode::INVALID_ARGUMENT,
            format!("{name}: {}", c_buffer_to_string(errstr)),
        ),
    }
}

/// An owned `rd_kafka_NewTopic_t`.
struct OwnedNewTopic(NonNull<ll::rd_kafka_NewTopic_t>);

impl Drop for OwnedNewTopic {
    fn drop(&mut self) {
        // SAFETY: self owns the object; librdkafka copied it into the request.
        unsafe { ll::rd_kafka_NewTopic_destroy(self.0.as_ptr()) };
    }
}

/// An owned `rd_kafka_DeleteTopic_t`.
struct OwnedDeleteTopic(NonNull<ll::rd_kafka_DeleteTopic_t>);

impl Drop for OwnedDeleteTopic {
    fn drop(&mut self) {
        // SAFETY: as for OwnedNewTopic.
        unsafe { ll::rd_kafka_DeleteTopic_destroy(self.0.as_ptr()) };
    }
}

/// An owned `rd_kafka_NewPartitions_t`.
struct OwnedNewPartitions(NonNull<ll::rd_kafka_NewPartitions_t>);

impl Drop for OwnedNewPartitions {
    fn drop(&mut self) {
        // SAFETY: as for OwnedNewTopic.
        unsafe { ll::rd_kafka_NewPartitions_destroy(self.0.as_ptr()) };
    }
}
