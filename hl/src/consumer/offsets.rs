//! Commits, stored offsets, positions, seeks and offset look-ups.

use std::ffi::CString;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use rdkafka_ll as ll;

use super::{CommitSlot, Consumer};
use crate::completion::Completion;
use crate::error::{check_code, take_rd_kafka_error, timeout_ms, Error, Result};
use crate::future::CommitFuture;
use crate::message::Message;
use crate::partitions::{all_or_errors, NativePartitionList, TopicPartition, TopicPartitionOffset};
use crate::{OFFSET_BEGINNING, OFFSET_END};

impl Consumer {
    /// Commits the given offsets (the offset of the next message to read
    /// in each partition) in the background.
    ///
    /// The future resolves to the committed offsets, or to
    /// [`Error::Partitions`] naming each partition that failed.
    pub fn commit_offsets(&self, offsets: &[TopicPartitionOffset]) -> Result<CommitFuture> {
        let list = NativePartitionList::from_offsets(offsets)?;
        self.commit_list(list.as_ptr())
    }

    /// Commits the position after `message` in its partition.
    pub fn commit_message(&self, message: &Message<'_>) -> Result<CommitFuture> {
        let next = TopicPartitionOffset::new(message.topic(), message.partition(), message.offset() + 1);
        self.commit_offsets(std::slice::from_ref(&next))
    }

    /// Commits the current position of every assigned partition. Resolves
    /// with [`ErrorCode::NO_OFFSET`](crate::ErrorCode::NO_OFFSET) when
    /// nothing was consumed since the last commit.
    pub fn commit_consumed(&self) -> Result<CommitFuture> {
        self.commit_list(ptr::null())
    }

    fn commit_list(&self, list: *const ll::rd_kafka_topic_partition_list_t) -> Result<CommitFuture> {
        // Invariant 1 of the pending table: register first.
        let slot: CommitSlot = Completion::new();
        let id = self
            .commits
            .register(Arc::clone(&slot))
            .map_err(|_| Error::Closed { operation: "commit" })?;

        // SAFETY: the client, queue and list (or NULL) are valid; the result
        // is posted to our queue as an OFFSET_COMMIT event carrying `id`.
        let code = unsafe {
            ll::rd_kafka_commit_queue(self.client.as_ptr(), list, self.queue.as_ptr(), None, id as *mut _)
        };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            self.commits.take(id);
            return Err(Error::kafka("commit", code));
        }
        Ok(CommitFuture::new(slot, "commit", self.events.thread_id()))
    }

    /// Stores offsets for the next automatic or
    /// [`commit_consumed`](Self::commit_consumed) commit. Requires
    /// `enable.auto.offset.store=false`.
    pub fn store_offsets(&self, offsets: &[TopicPartitionOffset]) -> Result<()> {
        let list = NativePartitionList::from_offsets(offsets)?;
        // SAFETY: the client and list are valid; librdkafka sets each
        // element's error.
        let code = unsafe { ll::rd_kafka_offsets_store(self.client.as_ptr(), list.as_ptr()) };
        let checked = check_code(code, "store offsets");
        all_or_errors("store offsets", list.read())?;
        checked
    }

    /// Stores the position after `message`, as [`store_offsets`](Self::store_offsets) does.
    pub fn store_message(&self, message: &Message<'_>) -> Result<()> {
        let next = TopicPartitionOffset::new(message.topic(), message.partition(), message.offset() + 1);
        self.store_offsets(std::slice::from_ref(&next))
    }

    /// Asks the group coordinator for the committed offsets of
    /// `partitions`, waiting up to `timeout`. A partition with no committed
    /// offset has [`OFFSET_INVALID`](crate::OFFSET_INVALID).
    pub fn committed(&self, partitions: &[TopicPartition], timeout: Duration) -> Result<Vec<TopicPartitionOffset>> {
        let list = NativePartitionList::from_partitions(partitions)?;
        // SAFETY: the client and list are valid; librdkafka fills the list.
        let code = unsafe { ll::rd_kafka_committed(self.client.as_ptr(), list.as_ptr(), timeout_ms(timeout)) };
        check_code(code, "committed")?;
        all_or_errors("committed", list.read())
    }

    /// Returns the position (the offset of the next message) of each of
    /// `partitions`, as consumed on this client;
    /// [`OFFSET_INVALID`](crate::OFFSET_INVALID) before any message.
    pub fn position(&self, partitions: &[TopicPartition]) -> Result<Vec<TopicPartitionOffset>> {
        let list = NativePartitionList::from_partitions(partitions)?;
        // SAFETY: the client and list are valid; librdkafka fills the list.
        let code = unsafe { ll::rd_kafka_position(self.client.as_ptr(), list.as_ptr()) };
        check_code(code, "position")?;
        all_or_errors("position", list.read())
    }

    /// Moves the fetch position of assigned partitions to the given offsets
    /// (or [`OFFSET_BEGINNING`], [`OFFSET_END`]), waiting up to `timeout`.
    /// Messages already fetched from before the seek are discarded.
    pub fn seek(&self, offsets: &[TopicPartitionOffset], timeout: Duration) -> Result<()> {
        let list = NativePartitionList::from_offsets(offsets)?;
        // SAFETY: the client and list are valid; librdkafka sets each
        // element's error.
        let error = unsafe { ll::rd_kafka_seek_partitions(self.client.as_ptr(), list.as_ptr(), timeout_ms(timeout)) };
        if !error.is_null() {
            // SAFETY: a non-NULL error is ours to destroy.
            let error = unsafe { take_rd_kafka_error(error) };
            return Err(Error::Kafka { operation: "seek", error });
        }
        all_or_errors("seek", list.read()).map(drop)
    }

    /// Seeks `partitions` to their first message.
    pub fn seek_to_beginning(&self, partitions: &[TopicPartition], timeout: Duration) -> Result<()> {
        self.seek(&at_offset(partitions, OFFSET_BEGINNING), timeout)
    }

    /// Seeks `partitions` past their last message.
    pub fn seek_to_end(&self, partitions: &[TopicPartition], timeout: Duration) -> Result<()> {
        self.seek(&at_offset(partitions, OFFSET_END), timeout)
    }

    /// Asks the partition's leader for its low and high watermarks: the
    /// first offset still in the log and the offset the next message will
    /// get. Waits up to `timeout`.
    pub fn query_watermark_offsets(&self, topic: &str, partition: i32, timeout: Duration) -> Result<(i64, i64)> {
        let c_topic = CString::new(topic).map_err(|_| Error::InvalidArgument {
            what: "topic name",
            value: topic.to_owned(),
            reason: "it contains a NUL byte",
        })?;
        let (mut low, mut high) = (0i64, 0i64);
        // SAFETY: the client is valid; the topic is NUL-terminated; the
        // out-pointers are valid.
        let code = unsafe {
            ll::rd_kafka_query_watermark_offsets(
                self.client.as_ptr(),
                c_topic.as_ptr(),
                partition,
                &mut low,
                &mut high,
                timeout_ms(timeout),
            )
        };
        check_code(code, "query watermark offsets")?;
        Ok((low, high))
    }

    /// Looks up, for each entry, the earliest offset whose timestamp is at
    /// or after the entry's `offset` field, read as milliseconds since the
    /// Unix epoch. A partition with no such message gets [`OFFSET_END`].
    /// Waits up to `timeout`.
    pub fn offsets_for_times(
        &self,
        timestamps: &[TopicPartitionOffset],
        timeout: Duration,
    ) -> Result<Vec<TopicPartitionOffset>> {
        let list = NativePartitionList::from_offsets(timestamps)?;
        // SAFETY: the client and list are valid; librdkafka fills the list.
        let code =
            unsafe { ll::rd_kafka_offsets_for_times(self.client.as_ptr(), list.as_ptr(), timeout_ms(timeout)) };
        check_code(code, "offsets for times")?;
        all_or_errors("offsets for times", list.read())
    }
}

fn at_offset(partitions: &[TopicPartition], offset: i64) -> Vec<TopicPartitionOffset> {
    partitions
        .iter()
        .map(|entry| TopicPartitionOffset::new(entry.topic.clone(), entry.partition, offset))
        .collect()
}
