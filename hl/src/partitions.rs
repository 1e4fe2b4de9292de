//! Topic partitions with offsets, and librdkafka's list of them.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use rdkafka_ll as ll;

use crate::error::{Error, ErrorCode, KafkaError, Result};

/// The offset of a partition's first message, for seeks and assignments.
pub const OFFSET_BEGINNING: i64 = ll::RD_KAFKA_OFFSET_BEGINNING;
/// The offset after a partition's last message.
pub const OFFSET_END: i64 = ll::RD_KAFKA_OFFSET_END;
/// The committed offset, for assignments.
pub const OFFSET_STORED: i64 = ll::RD_KAFKA_OFFSET_STORED;
/// No offset: for an assignment, the committed offset or else
/// `auto.offset.reset`; in results, an offset that does not exist.
pub const OFFSET_INVALID: i64 = ll::RD_KAFKA_OFFSET_INVALID;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

impl TopicPartition {
    /// Creates an entry.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// An operation's failure on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the operation was about, where it had one.
    pub offset: i64,
    /// The error.
    pub error: KafkaError,
}

/// A partition of a topic, with an offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset; for commits, the offset of the next message to read.
    pub offset: i64,
}

impl TopicPartitionOffset {
    /// Creates an entry.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

/// An owned `rd_kafka_topic_partition_list_t`.
pub(crate) struct NativePartitionList(NonNull<ll::rd_kafka_topic_partition_list_t>);

// SAFETY: the list is plain data owned by this value alone; librdkafka
// functions that take it only read it or copy it, on any thread.
unsafe impl Send for NativePartitionList {}

impl NativePartitionList {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let capacity = i32::try_from(capacity).unwrap_or(i32::MAX);
        // SAFETY: rd_kafka_topic_partition_list_new only allocates.
        let raw = unsafe { ll::rd_kafka_topic_partition_list_new(capacity) };
        Self(NonNull::new(raw).expect("rd_kafka_topic_partition_list_new returned NULL"))
    }

    /// Builds a list of topics (for subscriptions), with unassigned partitions.
    pub(crate) fn from_topics(topics: &[&str]) -> Result<Self> {
        let list = Self::with_capacity(topics.len());
        for topic in topics {
            list.add(topic, ll::RD_KAFKA_PARTITION_UA)?;
        }
        Ok(list)
    }

    /// Builds a list of partitions, with librdkafka's invalid offset.
    pub(crate) fn from_partitions(partitions: &[TopicPartition]) -> Result<Self> {
        let list = Self::with_capacity(partitions.len());
        for entry in partitions {
            list.add(&entry.topic, entry.partition)?;
        }
        Ok(list)
    }

    /// Takes ownership of a list that librdkafka allocated for the caller.
    ///
    /// # Safety
    ///
    /// `raw` must be a valid list that nothing else owns.
    pub(crate) unsafe fn from_raw(raw: *mut ll::rd_kafka_topic_partition_list_t) -> Option<Self> {
        NonNull::new(raw).map(Self)
    }

    /// Copies the entries out, splitting off those with an error.
    pub(crate) fn read(&self) -> (Vec<TopicPartitionOffset>, Vec<PartitionError>) {
        // SAFETY: the list is owned by self and valid.
        let entries = unsafe { read_partition_list(self.as_ptr()) };
        split_errors(entries)
    }

    /// Builds a list from partitions and offsets.
    pub(crate) fn from_offsets(offsets: &[TopicPartitionOffset]) -> Result<Self> {
        let list = Self::with_capacity(offsets.len());
        for entry in offsets {
            let element = list.add(&entry.topic, entry.partition)?;
            // SAFETY: element points into the list, which is alive.
            unsafe { (*element).offset = entry.offset };
        }
        Ok(list)
    }

    fn add(&self, topic: &str, partition: i32) -> Result<*mut ll::rd_kafka_topic_partition_t> {
        let c_topic = CString::new(topic).map_err(|_| Error::InvalidArgument {
            what: "topic name",
            value: topic.to_owned(),
            reason: "it contains a NUL byte",
        })?;
        // SAFETY: the list is owned by self; librdkafka copies the topic.
        Ok(unsafe { ll::rd_kafka_topic_partition_list_add(self.as_ptr(), c_topic.as_ptr(), partition) })
    }

    pub(crate) fn as_ptr(&self) -> *mut ll::rd_kafka_topic_partition_list_t {
        self.0.as_ptr()
    }
}

impl Drop for NativePartitionList {
    fn drop(&mut self) {
        // SAFETY: self owns the list.
        unsafe { ll::rd_kafka_topic_partition_list_destroy(self.as_ptr()) };
    }
}

/// Copies a list that librdkafka owns, with each entry's error.
///
/// # Safety
///
/// `list` must be NULL or a valid list for the duration of the call.
pub(crate) unsafe fn read_partition_list(
    list: *const ll::rd_kafka_topic_partition_list_t,
) -> Vec<(TopicPartitionOffset, Option<KafkaError>)> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller guarantees a valid list.
    let list = unsafe { &*list };
    // An empty list may have a NULL `elems`, which no slice may point to.
    let count = usize::try_from(list.cnt).unwrap_or(0);
    if count == 0 || list.elems.is_null() {
        return Vec::new();
    }
    // SAFETY: `elems` is non-NULL and has `cnt` entries.
    let elements = unsafe { std::slice::from_raw_parts(list.elems, count) };

    elements
        .iter()
        .map(|element| {
            // SAFETY: each element's topic is a NUL-terminated string owned
            // by the list.
            let topic = unsafe { CStr::from_ptr(element.topic) }.to_string_lossy().into_owned();
            let entry = TopicPartitionOffset::new(topic, element.partition, element.offset);
            let error = (element.err != ll::RD_KAFKA_RESP_ERR_NO_ERROR)
                .then(|| KafkaError::from_code(ErrorCode::from_raw(element.err)));
            (entry, error)
        })
        .collect()
}

/// Splits read entries into successes and per-partition errors.
pub(crate) fn split_errors(
    entries: Vec<(TopicPartitionOffset, Option<KafkaError>)>,
) -> (Vec<TopicPartitionOffset>, Vec<PartitionError>) {
    let mut succeeded = Vec::with_capacity(entries.len());
    let mut failed = Vec::new();
    for (entry, error) in entries {
        match error {
            None => succeeded.push(entry),
            Some(error) => failed.push(PartitionError {
                topic: entry.topic,
                partition: entry.partition,
                offset: entry.offset,
                error,
            }),
        }
    }
    (succeeded, failed)
}

/// Returns the entries, or [`Error::Partitions`] when any partition failed.
pub(crate) fn all_or_errors(
    operation: &'static str,
    (succeeded, failed): (Vec<TopicPartitionOffset>, Vec<PartitionError>),
) -> Result<Vec<TopicPartitionOffset>> {
    if failed.is_empty() {
        Ok(succeeded)
    } else {
        Err(Error::Partitions { operation, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trips_offsets() {
        let offsets = vec![
            TopicPartitionOffset::new("a", 0, 5),
            TopicPartitionOffset::new("b", 3, 42),
        ];
        let list = NativePartitionList::from_offsets(&offsets).unwrap();

        // SAFETY: list is alive for the call.
        let read = unsafe { read_partition_list(list.as_ptr()) };

        let entries: Vec<_> = read.iter().map(|(entry, _)| entry.clone()).collect();
        assert_eq!(entries, offsets);
        assert!(read.iter().all(|(_, error)| error.is_none()));
    }

    #[test]
    fn empty_list_reads_as_empty() {
        let list = NativePartitionList::from_offsets(&[]).unwrap();

        // SAFETY: list is alive for the call.
        let read = unsafe { read_partition_list(list.as_ptr()) };

        assert!(read.is_empty());
    }

    #[test]
    fn topic_with_nul_is_rejected() {
        let error = NativePartitionList::from_topics(&["a\0b"]).err().unwrap();

        assert!(error.to_string().contains("NUL"), "{error}");
    }
}
