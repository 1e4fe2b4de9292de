//! Looking up partition offsets and deleting records.

use std::ptr::NonNull;

use rdkafka_ll as ll;

use super::results::{
    check_owned_error, copy_partition_results, copy_string, missing_result, result_array, PartitionResult,
};
use super::{AdminClient, AdminOptions};
use crate::error::{Error, ErrorCode, KafkaError, Result};
use crate::future::KafkaFuture;
use crate::native::NativeEvent;
use crate::partitions::{NativePartitionList, TopicPartition, TopicPartitionOffset};

/// The offset a [`list_offsets`](AdminClient::list_offsets) request looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The first offset still stored (the low watermark).
    Earliest,
    /// The offset after the last message (the high watermark, or the last
    /// stable offset under [`IsolationLevel::ReadCommitted`]).
    Latest,
    /// The first offset whose timestamp is at or after this time, in
    /// milliseconds since the Unix epoch.
    Timestamp(i64),
    /// The offset of the message with the largest timestamp.
    MaxTimestamp,
}

impl OffsetSpec {
    fn to_raw(self) -> Result<i64> {
        match self {
            Self::Earliest => Ok(i64::from(ll::RD_KAFKA_OFFSET_SPEC_EARLIEST)),
            Self::Latest => Ok(i64::from(ll::RD_KAFKA_OFFSET_SPEC_LATEST)),
            Self::MaxTimestamp => Ok(i64::from(ll::RD_KAFKA_OFFSET_SPEC_MAX_TIMESTAMP)),
            Self::Timestamp(ms) if ms >= 0 => Ok(ms),
            Self::Timestamp(ms) => Err(Error::InvalidArgument {
                what: "offset spec timestamp",
                value: ms.to_string(),
                reason: "it is negative",
            }),
        }
    }
}

/// The visibility of transactional messages to a
/// [`list_offsets_with_isolation_level`](AdminClient::list_offsets_with_isolation_level)
/// request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// Every message, including those of open and aborted transactions.
    #[default]
    ReadUncommitted,
    /// Only messages of committed transactions and outside transactions.
    ReadCommitted,
}

/// The offset of one partition that a [`list_offsets`](AdminClient::list_offsets)
/// request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset, or -1 when no message matches a
    /// [`OffsetSpec::Timestamp`].
    pub offset: i64,
    /// The timestamp of the message at `offset` in milliseconds since the
    /// Unix epoch, if the broker returned one.
    pub timestamp: Option<i64>,
    /// The leader epoch of the message at `offset`, if the broker returned
    /// one.
    pub leader_epoch: Option<i32>,
    /// The error for this partition, such as
    /// [`ErrorCode::UNKNOWN_TOPIC_OR_PARTITION`], or `None` on success.
    pub error: Option<KafkaError>,
}

impl AdminClient {
    /// Looks up offsets of partitions, counting every message
    /// ([`IsolationLevel::ReadUncommitted`]). The future resolves to one
    /// [`ListedOffset`] per partition. A partition may appear only once.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, Config, OffsetSpec, TopicPartition};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let request = [(TopicPartition::new("audit", 0), OffsetSpec::Earliest)];
    /// let offsets = admin.list_offsets(&request, &AdminOptions::new())?.wait()?;
    /// println!("low watermark: {}", offsets[0].offset);
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn list_offsets(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<ListedOffset>>> {
        self.list_offsets_with_isolation_level(partitions, IsolationLevel::ReadUncommitted, options)
    }

    /// Looks up offsets of partitions as [`list_offsets`](Self::list_offsets)
    /// does, counting the messages that `isolation_level` makes visible.
    pub fn list_offsets_with_isolation_level(
        &self,
        partitions: &[(TopicPartition, OffsetSpec)],
        isolation_level: IsolationLevel,
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<ListedOffset>>> {
        let specs = partitions
            .iter()
            .map(|(partition, spec)| {
                Ok(TopicPartitionOffset::new(partition.topic.clone(), partition.partition, spec.to_raw()?))
            })
            .collect::<Result<Vec<_>>>()?;
        let list = NativePartitionList::from_offsets(&specs)?;
        let raw_level = match isolation_level {
            IsolationLevel::ReadUncommitted => ll::RD_KAFKA_ISOLATION_LEVEL_READ_UNCOMMITTED,
            IsolationLevel::ReadCommitted => ll::RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED,
        };

        self.request(
            "list offsets",
            ll::RD_KAFKA_ADMIN_OP_LISTOFFSETS,
            options,
            parse_list_offsets,
            |options, queue| {
                // SAFETY: `request` created the options object for this call
                // alone, from a mutable allocation, and does not touch it until
                // it destroys it after this closure returns.
                let error = unsafe { ll::rd_kafka_AdminOptions_set_isolation_level(options.cast_mut(), raw_level) };
                // librdkafka 2.12.1 fails this setter only for options of an API
                // without an isolation level or for a level outside 0..=1, so it
                // cannot fail here. Should it fail, the error is logged and the
                // request runs with the default level.
                // SAFETY: the error, if any, is ours and not used again.
                if let Err(error) = unsafe { check_owned_error("set isolation level", error) } {
                    log::error!("list offsets runs with the default isolation level: {error}");
                }
                // SAFETY: the client, list, options and queue are valid, and
                // librdkafka copies the list.
                unsafe { ll::rd_kafka_ListOffsets(self.client_ptr(), list.as_ptr(), options, queue) }
            },
        )
    }

    /// Deletes the records of each partition below its offset, which
    /// becomes the partition's new low watermark. [`OFFSET_END`](crate::OFFSET_END)
    /// deletes every record. The future resolves to one [`PartitionResult`]
    /// per partition, whose offset is the low watermark after the deletion.
    /// A partition may appear only once.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, Config, TopicPartitionOffset};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let results = admin
    ///     .delete_records(&[TopicPartitionOffset::new("audit", 0, 100)], &AdminOptions::new())?
    ///     .wait()?;
    /// assert_eq!(results[0].offset, 100);
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn delete_records(
        &self,
        offsets: &[TopicPartitionOffset],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<PartitionResult>>> {
        let list = NativePartitionList::from_offsets(offsets)?;
        // SAFETY: the list is valid, and librdkafka copies it.
        let raw = unsafe { ll::rd_kafka_DeleteRecords_new(list.as_ptr()) };
        let native = OwnedDeleteRecords(NonNull::new(raw).expect("rd_kafka_DeleteRecords_new returned NULL"));
        let mut pointers = [native.0.as_ptr()];

        self.request(
            "delete records",
            ll::RD_KAFKA_ADMIN_OP_DELETERECORDS,
            options,
            parse_delete_records,
            |options, queue| {
                // SAFETY: the client, request object, options and queue are
                // valid, and librdkafka copies the request, which must be exactly
                // one object holding every partition.
                unsafe { ll::rd_kafka_DeleteRecords(self.client_ptr(), pointers.as_mut_ptr(), 1, options, queue) }
            },
        )
    }
}

fn parse_list_offsets(event: &NativeEvent) -> Result<Vec<ListedOffset>> {
    // SAFETY: the event is a ListOffsets result, and the infos and their
    // partitions live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_ListOffsets_result(event.as_ptr());
        let mut count = 0usize;
        let infos = ll::rd_kafka_ListOffsets_result_infos(result, &mut count);
        result_array(infos, count)
            .iter()
            .map(|&info| {
                let partition = ll::rd_kafka_ListOffsetsResultInfo_topic_partition(info);
                if partition.is_null() {
                    return Err(missing_result("list offsets", "partition"));
                }
                let timestamp = ll::rd_kafka_ListOffsetsResultInfo_timestamp(info);
                let leader_epoch = ll::rd_kafka_topic_partition_get_leader_epoch(partition);
                let element = &*partition;
                Ok(ListedOffset {
                    topic: copy_string(element.topic),
                    partition: element.partition,
                    offset: element.offset,
                    timestamp: (timestamp >= 0).then_some(timestamp),
                    leader_epoch: (leader_epoch >= 0).then_some(leader_epoch),
                    error: (element.err != ll::RD_KAFKA_RESP_ERR_NO_ERROR)
                        .then(|| KafkaError::from_code(ErrorCode::from_raw(element.err))),
                })
            })
            .collect()
    }
}

fn parse_delete_records(event: &NativeEvent) -> Result<Vec<PartitionResult>> {
    // SAFETY: the event is a DeleteRecords result, and the list lives as long
    // as the event.
    unsafe {
        let result = ll::rd_kafka_event_DeleteRecords_result(event.as_ptr());
        Ok(copy_partition_results(ll::rd_kafka_DeleteRecords_result_offsets(result)))
    }
}

/// An owned `rd_kafka_DeleteRecords_t`.
struct OwnedDeleteRecords(NonNull<ll::rd_kafka_DeleteRecords_t>);

impl Drop for OwnedDeleteRecords {
    fn drop(&mut self) {
        // SAFETY: self owns the object, and librdkafka copied it into the request.
        unsafe { ll::rd_kafka_DeleteRecords_destroy(self.0.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_spec_raw_values() {
        assert_eq!(OffsetSpec::Earliest.to_raw().ok(), Some(-2));
        assert_eq!(OffsetSpec::Latest.to_raw().ok(), Some(-1));
        assert_eq!(OffsetSpec::MaxTimestamp.to_raw().ok(), Some(-3));
        assert_eq!(OffsetSpec::Timestamp(0).to_raw().ok(), Some(0));
        let error = OffsetSpec::Timestamp(-1).to_raw().expect_err("a negative timestamp was accepted");
        assert!(error.to_string().contains("negative"), "error for a negative timestamp: {error}");
    }
}
