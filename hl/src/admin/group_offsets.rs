//! Listing, altering and deleting the committed offsets of a consumer group.

use std::ptr::{self, NonNull};

use rdkafka_ll as ll;

use super::groups::group_names;
use super::results::{copy_error, copy_partition_results, copy_string, missing_result, result_array, PartitionResult};
use super::{AdminClient, AdminOptions};
use crate::error::{Error, Result};
use crate::future::KafkaFuture;
use crate::native::NativeEvent;
use crate::partitions::{NativePartitionList, TopicPartition, TopicPartitionOffset};

/// The committed offsets of one consumer group, as a request on them
/// returns them. An error for the whole group, such as `GROUP_ID_NOT_FOUND`
/// when deleting offsets, fails the request with [`Error::Kafka`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    /// The group id.
    pub group: String,
    /// One result per partition, each with its own error. For a listing,
    /// the offset is the committed one, or
    /// [`OFFSET_INVALID`](crate::OFFSET_INVALID) when the group committed
    /// none for the partition.
    pub partitions: Vec<PartitionResult>,
}

impl AdminClient {
    /// Lists the offsets that `group` committed: for `partitions`, or for
    /// every partition it committed to when `None`.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, Config, TopicPartition};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let partitions = [TopicPartition::new("audit", 0)];
    /// let offsets = admin
    ///     .list_consumer_group_offsets("auditors", Some(&partitions), &AdminOptions::new())?
    ///     .wait()?;
    /// println!("committed: {}", offsets.partitions[0].offset);
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn list_consumer_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
        options: &AdminOptions,
    ) -> Result<KafkaFuture<GroupOffsets>> {
        let name = single_group_name(group)?;
        let list = partitions.map(NativePartitionList::from_partitions).transpose()?;
        let list_ptr = list.as_ref().map_or(ptr::null(), |list| list.as_ptr().cast_const());
        // SAFETY: the name is NUL-terminated, and the list is NULL or valid.
        // librdkafka copies both.
        let raw = unsafe { ll::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), list_ptr) };
        let native = OwnedListOffsets(NonNull::new(raw).expect("rd_kafka_ListConsumerGroupOffsets_new returned NULL"));
        let mut pointers = [native.0.as_ptr()];

        self.request(
            "list consumer group offsets",
            ll::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            options,
            parse_list_offsets,
            |options, queue| {
                // SAFETY: the client, request object, options and queue are
                // valid, and librdkafka copies the request, which must hold
                // exactly one group.
                unsafe {
                    ll::rd_kafka_ListConsumerGroupOffsets(self.client_ptr(), pointers.as_mut_ptr(), 1, options, queue)
                }
            },
        )
    }

    /// Sets the committed offsets of `group`. The broker rejects this with
    /// `UNKNOWN_MEMBER_ID` on each partition while the group has active
    /// members, so stop its consumers first.
    pub fn alter_consumer_group_offsets(
        &self,
        group: &str,
        offsets: &[TopicPartitionOffset],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<GroupOffsets>> {
        let name = single_group_name(group)?;
        let list = NativePartitionList::from_offsets(offsets)?;
        // SAFETY: the name is NUL-terminated and the list valid, and librdkafka
        // copies both.
        let raw = unsafe { ll::rd_kafka_AlterConsumerGroupOffsets_new(name.as_ptr(), list.as_ptr()) };
        let native =
            OwnedAlterOffsets(NonNull::new(raw).expect("rd_kafka_AlterConsumerGroupOffsets_new returned NULL"));
        let mut pointers = [native.0.as_ptr()];

        self.request(
            "alter consumer group offsets",
            ll::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
            options,
            parse_alter_offsets,
            |options, queue| {
                // SAFETY: as for list_consumer_group_offsets.
                unsafe {
                    ll::rd_kafka_AlterConsumerGroupOffsets(self.client_ptr(), pointers.as_mut_ptr(), 1, options, queue)
                }
            },
        )
    }

    /// Deletes the committed offsets of `group` for `partitions`. A
    /// partition of a topic the group is subscribed to fails with
    /// `GROUP_SUBSCRIBED_TO_TOPIC`.
    pub fn delete_consumer_group_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<GroupOffsets>> {
        let name = single_group_name(group)?;
        let list = NativePartitionList::from_partitions(partitions)?;
        // SAFETY: as for alter_consumer_group_offsets.
        let raw = unsafe { ll::rd_kafka_DeleteConsumerGroupOffsets_new(name.as_ptr(), list.as_ptr()) };
        let native =
            OwnedDeleteOffsets(NonNull::new(raw).expect("rd_kafka_DeleteConsumerGroupOffsets_new returned NULL"));
        let mut pointers = [native.0.as_ptr()];

        self.request(
            "delete consumer group offsets",
            ll::RD_KAFKA_ADMIN_OP_DELETECONSUMERGROUPOFFSETS,
            options,
            parse_delete_offsets,
            |options, queue| {
                // SAFETY: as for list_consumer_group_offsets.
                unsafe {
                    ll::rd_kafka_DeleteConsumerGroupOffsets(self.client_ptr(), pointers.as_mut_ptr(), 1, options, queue)
                }
            },
        )
    }
}

fn single_group_name(group: &str) -> Result<std::ffi::CString> {
    let mut names = group_names(&[group])?;
    Ok(names.remove(0))
}

fn parse_list_offsets(event: &NativeEvent) -> Result<GroupOffsets> {
    // SAFETY: the event is a ListConsumerGroupOffsets result, and its group
    // results live as long as the event.
    let groups = unsafe {
        let result = ll::rd_kafka_event_ListConsumerGroupOffsets_result(event.as_ptr());
        let mut count = 0usize;
        let groups = ll::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
        result_array(groups, count)
    };
    // SAFETY: the group results are valid for the event's lifetime.
    unsafe { first_group_offsets("list consumer group offsets", groups) }
}

fn parse_alter_offsets(event: &NativeEvent) -> Result<GroupOffsets> {
    // SAFETY: as for parse_list_offsets, for an AlterConsumerGroupOffsets result.
    let groups = unsafe {
        let result = ll::rd_kafka_event_AlterConsumerGroupOffsets_result(event.as_ptr());
        let mut count = 0usize;
        let groups = ll::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count);
        result_array(groups, count)
    };
    // SAFETY: the group results are valid for the event's lifetime.
    unsafe { first_group_offsets("alter consumer group offsets", groups) }
}

fn parse_delete_offsets(event: &NativeEvent) -> Result<GroupOffsets> {
    // SAFETY: as for parse_list_offsets, for a DeleteConsumerGroupOffsets result.
    let groups = unsafe {
        let result = ll::rd_kafka_event_DeleteConsumerGroupOffsets_result(event.as_ptr());
        let mut count = 0usize;
        let groups = ll::rd_kafka_DeleteConsumerGroupOffsets_result_groups(result, &mut count);
        result_array(groups, count)
    };
    // SAFETY: the group results are valid for the event's lifetime.
    unsafe { first_group_offsets("delete consumer group offsets", groups) }
}

/// Copies the only group result of a request on one group.
///
/// # Safety
///
/// Every pointer in `groups` must be a valid group result.
unsafe fn first_group_offsets(
    operation: &'static str,
    groups: &[*const ll::rd_kafka_group_result_t],
) -> Result<GroupOffsets> {
    let Some(&group) = groups.first() else {
        return Err(missing_result(operation, "group result"));
    };
    // librdkafka 2.12.1 reports group errors of these requests as the
    // event's error, which `request` already turned into the result, so
    // this covers later versions that report them here.
    // SAFETY: the group result is valid, and its name, error and partitions
    // live as long as it.
    unsafe {
        if let Some(error) = copy_error(ll::rd_kafka_group_result_error(group)) {
            return Err(Error::Kafka { operation, error });
        }
        Ok(GroupOffsets {
            group: copy_string(ll::rd_kafka_group_result_name(group)),
            partitions: copy_partition_results(ll::rd_kafka_group_result_partitions(group)),
        })
    }
}

/// An owned `rd_kafka_ListConsumerGroupOffsets_t`.
struct OwnedListOffsets(NonNull<ll::rd_kafka_ListConsumerGroupOffsets_t>);

impl Drop for OwnedListOffsets {
    fn drop(&mut self) {
        // SAFETY: self owns the object, and librdkafka copied it into the request.
        unsafe { ll::rd_kafka_ListConsumerGroupOffsets_destroy(self.0.as_ptr()) };
    }
}

/// An owned `rd_kafka_AlterConsumerGroupOffsets_t`.
struct OwnedAlterOffsets(NonNull<ll::rd_kafka_AlterConsumerGroupOffsets_t>);

impl Drop for OwnedAlterOffsets {
    fn drop(&mut self) {
        // SAFETY: as for OwnedListOffsets.
        unsafe { ll::rd_kafka_AlterConsumerGroupOffsets_destroy(self.0.as_ptr()) };
    }
}

/// An owned `rd_kafka_DeleteConsumerGroupOffsets_t`.
struct OwnedDeleteOffsets(NonNull<ll::rd_kafka_DeleteConsumerGroupOffsets_t>);

impl Drop for OwnedDeleteOffsets {
    fn drop(&mut self) {
        // SAFETY: as for OwnedListOffsets.
        unsafe { ll::rd_kafka_DeleteConsumerGroupOffsets_destroy(self.0.as_ptr()) };
    }
}
