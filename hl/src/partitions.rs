//! Topic partitions with offsets, and librdkafka's list of them.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use rdkafka_ll as ll;

use crate::error::{Error, ErrorCode, KafkaError, Result};

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
    // SAFETY: the caller guarantees a valid list; `elems` has `cnt` entries.
    let elements = unsafe {
        let list = &*list;
        std::slice::from_raw_parts(list.elems, usize::try_from(list.cnt).unwrap_or(0))
    };

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
    fn topic_with_nul_is_rejected() {
        let error = NativePartitionList::from_topics(&["a\0b"]).err().unwrap();

        assert!(error.to_string().contains("NUL"), "{error}");
    }
}
