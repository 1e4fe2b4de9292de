//! Subscriptions, assignments and pausing.

use std::ptr::{self, NonNull};

use rdkafka_ll as ll;

use super::Consumer;
use crate::error::{check_code, check_error, Error, Result};
use crate::partitions::{all_or_errors, NativePartitionList, TopicPartition, TopicPartitionOffset};

/// The rebalance protocol of the consumer's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// No protocol yet: the consumer has not joined a group.
    None,
    /// Every rebalance revokes all partitions, then assigns anew.
    Eager,
    /// Rebalances move only the partitions that change owner
    /// (`partition.assignment.strategy=cooperative-sticky`).
    Cooperative,
}

/// The group metadata of a consumer, for sending its offsets in a
/// producer's transaction. An owned `rd_kafka_consumer_group_metadata_t`.
#[derive(Debug)]
pub struct ConsumerGroupMetadata(NonNull<ll::rd_kafka_consumer_group_metadata_t>);

// SAFETY: the metadata is an immutable value that this type owns alone.
unsafe impl Send for ConsumerGroupMetadata {}
// SAFETY: as above; `&self` gives only read access.
unsafe impl Sync for ConsumerGroupMetadata {}

impl ConsumerGroupMetadata {
    /// Returns the raw pointer, for `rdkafka-ll` calls such as
    /// `rd_kafka_send_offsets_to_transaction`. It stays valid while `self`
    /// lives.
    pub fn as_ptr(&self) -> *const ll::rd_kafka_consumer_group_metadata_t {
        self.0.as_ptr()
    }
}

impl Drop for ConsumerGroupMetadata {
    fn drop(&mut self) {
        // SAFETY: self owns the metadata.
        unsafe { ll::rd_kafka_consumer_group_metadata_destroy(self.0.as_ptr()) };
    }
}

impl Consumer {
    /// Subscribes to topics, replacing the current subscription. Names
    /// starting with `^` are regular expressions.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty list or an empty name;
    /// [`Error::Kafka`] naming the topics when librdkafka rejects them (an
    /// invalid regular expression, say) or when `group.id` is not set.
    pub fn subscribe(&self, topics: &[&str]) -> Result<()> {
        let invalid = |value: String, reason| Error::InvalidArgument { what: "subscription", value, reason };
        if topics.is_empty() {
            return Err(invalid(String::new(), "it names no topic"));
        }
        if topics.iter().any(|topic| topic.is_empty()) {
            return Err(invalid(format!("{topics:?}"), "it contains an empty topic name"));
        }
        let list = NativePartitionList::from_topics(topics)?;
        // SAFETY: the client and the list are valid; librdkafka copies it.
        let code = unsafe { ll::rd_kafka_subscribe(self.client.as_ptr(), list.as_ptr()) };
        if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Ok(());
        }
        let code = crate::ErrorCode::from_raw(code);
        let hint = if code.raw() == ll::RD_KAFKA_RESP_ERR__UNKNOWN_GROUP { "; set group.id to subscribe" } else { "" };
        let message = format!("{} for topics {topics:?}{hint}", code.description());
        Err(Error::Kafka { operation: "subscribe", error: crate::KafkaError::with_message(code, message) })
    }

    /// Drops the subscription and, with it, the assignment.
    pub fn unsubscribe(&self) -> Result<()> {
        // SAFETY: the client is valid.
        let code = unsafe { ll::rd_kafka_unsubscribe(self.client.as_ptr()) };
        check_code(code, "unsubscribe")
    }

    /// Returns the subscribed topic names and patterns.
    pub fn subscription(&self) -> Result<Vec<String>> {
        let mut raw = ptr::null_mut();
        // SAFETY: the client is valid; the list returned is ours.
        let code = unsafe { ll::rd_kafka_subscription(self.client.as_ptr(), &mut raw) };
        check_code(code, "subscription")?;
        let topics = owned_list(raw)
            .map(|list| list.read().0.into_iter().map(|entry| entry.topic).collect())
            .unwrap_or_default();
        Ok(topics)
    }

    /// Replaces the assignment with `partitions`, each starting at its
    /// offset ([`OFFSET_INVALID`](crate::OFFSET_INVALID) for the committed
    /// offset). For consumers outside a group, or inside a
    /// [`RebalanceListener`](crate::RebalanceListener) of the eager protocol.
    pub fn assign(&self, partitions: &[TopicPartitionOffset]) -> Result<()> {
        let list = NativePartitionList::from_offsets(partitions)?;
        // SAFETY: the client and the list are valid.
        let code = unsafe { ll::rd_kafka_assign(self.client.as_ptr(), list.as_ptr()) };
        check_code(code, "assign")
    }

    /// Removes the whole assignment.
    pub fn unassign(&self) -> Result<()> {
        // SAFETY: the client is valid; NULL clears the assignment.
        let code = unsafe { ll::rd_kafka_assign(self.client.as_ptr(), ptr::null()) };
        check_code(code, "unassign")
    }

    /// Adds `partitions` to the assignment (cooperative protocol).
    pub fn incremental_assign(&self, partitions: &[TopicPartitionOffset]) -> Result<()> {
        let list = NativePartitionList::from_offsets(partitions)?;
        // SAFETY: the client and the list are valid.
        let error = unsafe { ll::rd_kafka_incremental_assign(self.client.as_ptr(), list.as_ptr()) };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "incremental assign") }
    }

    /// Removes `partitions` from the assignment (cooperative protocol).
    pub fn incremental_unassign(&self, partitions: &[TopicPartition]) -> Result<()> {
        let list = NativePartitionList::from_partitions(partitions)?;
        // SAFETY: the client and the list are valid.
        let error = unsafe { ll::rd_kafka_incremental_unassign(self.client.as_ptr(), list.as_ptr()) };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_error(error, "incremental unassign") }
    }

    /// Returns the partitions currently assigned to this consumer.
    pub fn assignment(&self) -> Result<Vec<TopicPartition>> {
        let mut raw = ptr::null_mut();
        // SAFETY: the client is valid; the list returned is ours.
        let code = unsafe { ll::rd_kafka_assignment(self.client.as_ptr(), &mut raw) };
        check_code(code, "assignment")?;
        let partitions = owned_list(raw)
            .map(|list| {
                list.read()
                    .0
                    .into_iter()
                    .map(|entry| TopicPartition::new(entry.topic, entry.partition))
                    .collect()
            })
            .unwrap_or_default();
        Ok(partitions)
    }

    /// Returns whether the group took the current assignment away without
    /// a regular revocation (after a session timeout, say).
    pub fn assignment_lost(&self) -> bool {
        // SAFETY: the client is valid.
        unsafe { ll::rd_kafka_assignment_lost(self.client.as_ptr()) != 0 }
    }

    /// Returns the rebalance protocol of the group.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        match super::rebalance::protocol_name(self.client.as_ptr()) {
            Some(b"EAGER") => RebalanceProtocol::Eager,
            Some(b"COOPERATIVE") => RebalanceProtocol::Cooperative,
            _ => RebalanceProtocol::None,
        }
    }

    /// Stops fetching from `partitions` until [`resume`](Self::resume).
    /// The pause stays in effect across rebalances of other partitions.
    pub fn pause(&self, partitions: &[TopicPartition]) -> Result<()> {
        let list = NativePartitionList::from_partitions(partitions)?;
        // SAFETY: the client and list are valid; librdkafka sets each
        // element's error.
        let code = unsafe { ll::rd_kafka_pause_partitions(self.client.as_ptr(), list.as_ptr()) };
        check_code(code, "pause")?;
        all_or_errors("pause", list.read()).map(drop)
    }

    /// Resumes fetching from `partitions`.
    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<()> {
        let list = NativePartitionList::from_partitions(partitions)?;
        // SAFETY: as for pause.
        let code = unsafe { ll::rd_kafka_resume_partitions(self.client.as_ptr(), list.as_ptr()) };
        check_code(code, "resume")?;
        all_or_errors("resume", list.read()).map(drop)
    }

    /// Returns the consumer's group metadata, for a transactional producer.
    pub fn group_metadata(&self) -> Result<ConsumerGroupMetadata> {
        // SAFETY: the client is valid; the metadata returned is ours.
        let raw = unsafe { ll::rd_kafka_consumer_group_metadata(self.client.as_ptr()) };
        NonNull::new(raw).map(ConsumerGroupMetadata).ok_or(Error::InvalidArgument {
            what: "consumer",
            value: String::new(),
            reason: "it has no group (set group.id)",
        })
    }
}

fn owned_list(raw: *mut ll::rd_kafka_topic_partition_list_t) -> Option<NativePartitionList> {
    // SAFETY: librdkafka allocated the list for the caller, who owns it.
    unsafe { NativePartitionList::from_raw(raw) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn protocol_before_joining_is_none() {
        // librdkafka returns a NULL protocol name before the consumer joins
        // its group, which must not be read as a string.
        let config = Config::new().set("bootstrap.servers", "127.0.0.1:1").unwrap();
        let consumer = Consumer::new(config.set("group.id", "never-joins").unwrap()).unwrap();

        assert_eq!(consumer.rebalance_protocol(), RebalanceProtocol::None);
        assert_eq!(consumer.assignment().unwrap(), Vec::new());
    }

    #[test]
    fn consumer_without_group_is_rejected() {
        let config = Config::new().set("bootstrap.servers", "127.0.0.1:1").unwrap();

        let error = Consumer::new(config).unwrap_err();

        assert!(error.to_string().contains("group.id"), "{error}");
    }
}
