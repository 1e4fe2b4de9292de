//! Listing, describing and deleting consumer groups.

use std::ffi::CString;
use std::ptr::NonNull;

use rdkafka_ll as ll;

use super::cluster::Node;
use super::results::{copy_error, copy_string, empty_name, result_array, unknown_value};
use super::topics::c_string;
use super::{AdminClient, AdminOptions};
use crate::error::{KafkaError, Result};
use crate::future::KafkaFuture;
use crate::native::{optional_c_string, NativeEvent};
use crate::partitions::{read_partition_list, TopicPartition};

/// The state of a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerGroupState {
    /// Members are joining for a rebalance.
    PreparingRebalance,
    /// The members wait for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// The group has no members and no offsets, and is being removed.
    Dead,
    /// The group has no members but still has committed offsets.
    Empty,
    /// A state librdkafka does not know (`UNKNOWN` is 0), by its raw
    /// `rd_kafka_consumer_group_state_t` value.
    Unknown(i32),
}

impl ConsumerGroupState {
    fn from_raw(raw: ll::rd_kafka_consumer_group_state_t) -> Self {
        match raw {
            ll::RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE => Self::PreparingRebalance,
            ll::RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE => Self::CompletingRebalance,
            ll::RD_KAFKA_CONSUMER_GROUP_STATE_STABLE => Self::Stable,
            ll::RD_KAFKA_CONSUMER_GROUP_STATE_DEAD => Self::Dead,
            ll::RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY => Self::Empty,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// The rebalance protocol a consumer group runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerGroupType {
    /// The broker-driven protocol of KIP-848 (`group.protocol=consumer`).
    Consumer,
    /// The classic protocol, where the group leader assigns partitions.
    Classic,
    /// A type librdkafka does not know (`UNKNOWN` is 0, also reported by
    /// brokers too old to send the type), by its raw
    /// `rd_kafka_consumer_group_type_t` value.
    Unknown(i32),
}

impl ConsumerGroupType {
    fn from_raw(raw: ll::rd_kafka_consumer_group_type_t) -> Self {
        match raw {
            ll::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => Self::Consumer,
            ll::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => Self::Classic,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// A consumer group in the list of a [`list_consumer_groups`](AdminClient::list_consumer_groups) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupListing {
    /// The group id.
    pub group_id: String,
    /// The state, [`ConsumerGroupState::Unknown`] on brokers too old to
    /// report it.
    pub state: ConsumerGroupState,
    /// The rebalance protocol.
    pub group_type: ConsumerGroupType,
    /// Whether the group is a simple group: one whose consumers only commit
    /// offsets and never join it (its protocol type is empty).
    pub is_simple: bool,
}

/// The result of a [`list_consumer_groups`](AdminClient::list_consumer_groups) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupListings {
    /// The groups of every broker that responded.
    pub groups: Vec<ConsumerGroupListing>,
    /// One error per broker that failed to list its groups. When it is not
    /// empty, `groups` may lack some groups.
    pub errors: Vec<KafkaError>,
}

/// A consumer group as a [`describe_consumer_groups`](AdminClient::describe_consumer_groups) request returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    /// The group id.
    pub group_id: String,
    /// The error for this group, or `None` on success. librdkafka reports
    /// `_INVALID_ARG` for a group whose protocol type is neither `consumer`
    /// nor empty, such as a Kafka Connect group.
    pub error: Option<KafkaError>,
    /// The state.
    pub state: ConsumerGroupState,
    /// The rebalance protocol.
    pub group_type: ConsumerGroupType,
    /// Whether the group is a simple group (its protocol type is empty).
    pub is_simple: bool,
    /// The partition assignor the group uses, such as `range`, or empty
    /// while the group has no members.
    pub partition_assignor: String,
    /// The broker that coordinates the group, if known.
    pub coordinator: Option<Node>,
    /// The members.
    pub members: Vec<MemberDescription>,
}

impl ConsumerGroupDescription {
    /// Returns the group's protocol type: `consumer`, or empty for a simple
    /// group. librdkafka 2.12.1 does not pass the broker's string on, but
    /// describes only groups of these two protocol types and fails the
    /// others, so the type follows from [`is_simple`](Self::is_simple).
    pub fn protocol_type(&self) -> &'static str {
        if self.is_simple {
            ""
        } else {
            "consumer"
        }
    }
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if it has one.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The host the member connects from, as the broker reports it.
    pub host: String,
    /// The partitions assigned to the member.
    pub assignment: Vec<TopicPartition>,
}

/// The outcome of a request for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResult {
    /// The group id.
    pub group: String,
    /// The error for this group, such as `NON_EMPTY_GROUP` or
    /// `GROUP_ID_NOT_FOUND`, or `None` on success.
    pub error: Option<KafkaError>,
}

impl AdminClient {
    /// Lists the consumer groups of every broker. Groups whose protocol
    /// type is neither `consumer` nor empty (such as Kafka Connect groups)
    /// are left out, as librdkafka does.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, Config};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let listings = admin.list_consumer_groups(&AdminOptions::new())?.wait()?;
    /// for group in &listings.groups {
    ///     println!("{} is {:?}", group.group_id, group.state);
    /// }
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn list_consumer_groups(&self, options: &AdminOptions) -> Result<KafkaFuture<ConsumerGroupListings>> {
        self.request(
            "list consumer groups",
            ll::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
            options,
            parse_list_consumer_groups,
            |options, queue| {
                // SAFETY: the client, options and queue are valid.
                unsafe { ll::rd_kafka_ListConsumerGroups(self.client_ptr(), options, queue) }
            },
        )
    }

    /// Describes consumer groups. The future resolves to one
    /// [`ConsumerGroupDescription`] per group. A group that does not exist
    /// comes back in state [`ConsumerGroupState::Dead`] without an error.
    pub fn describe_consumer_groups(
        &self,
        groups: &[&str],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<ConsumerGroupDescription>>> {
        let names = group_names(groups)?;
        let mut pointers: Vec<_> = names.iter().map(|name| name.as_ptr()).collect();

        self.request(
            "describe consumer groups",
            ll::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            options,
            parse_describe_consumer_groups,
            |options, queue| {
                // SAFETY: the client, options and queue are valid, and the names
                // are NUL-terminated and librdkafka copies them.
                unsafe {
                    ll::rd_kafka_DescribeConsumerGroups(
                        self.client_ptr(),
                        pointers.as_mut_ptr(),
                        pointers.len(),
                        options,
                        queue,
                    )
                }
            },
        )
    }

    /// Deletes consumer groups with their committed offsets. The future
    /// resolves to one [`GroupResult`] per group. A group with active
    /// members fails with `NON_EMPTY_GROUP`.
    pub fn delete_groups(&self, groups: &[&str], options: &AdminOptions) -> Result<KafkaFuture<Vec<GroupResult>>> {
        let natives = group_names(groups)?
            .iter()
            .map(|name| {
                // SAFETY: the name is NUL-terminated and copied.
                let raw = unsafe { ll::rd_kafka_DeleteGroup_new(name.as_ptr()) };
                OwnedDeleteGroup(NonNull::new(raw).expect("rd_kafka_DeleteGroup_new returned NULL"))
            })
            .collect::<Vec<_>>();
        let mut pointers: Vec<_> = natives.iter().map(|group| group.0.as_ptr()).collect();

        self.request(
            "delete groups",
            ll::RD_KAFKA_ADMIN_OP_DELETEGROUPS,
            options,
            parse_delete_groups,
            |options, queue| {
                // SAFETY: the client, groups, options and queue are valid, and
                // librdkafka copies the request.
                unsafe {
                    ll::rd_kafka_DeleteGroups(self.client_ptr(), pointers.as_mut_ptr(), pointers.len(), options, queue)
                }
            },
        )
    }
}

/// Converts group ids, rejecting empty ones.
pub(super) fn group_names(groups: &[&str]) -> Result<Vec<CString>> {
    groups
        .iter()
        .map(|group| {
            if group.is_empty() {
                return Err(empty_name("group id"));
            }
            c_string(group, "group id")
        })
        .collect()
}

fn parse_list_consumer_groups(event: &NativeEvent) -> Result<ConsumerGroupListings> {
    // SAFETY: the event is a ListConsumerGroups result, and the listings and
    // errors live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_ListConsumerGroups_result(event.as_ptr());
        let (mut valid_count, mut error_count) = (0usize, 0usize);
        let valid = ll::rd_kafka_ListConsumerGroups_result_valid(result, &mut valid_count);
        let errors = ll::rd_kafka_ListConsumerGroups_result_errors(result, &mut error_count);

        let groups = result_array(valid, valid_count)
            .iter()
            .map(|&group| ConsumerGroupListing {
                group_id: copy_string(ll::rd_kafka_ConsumerGroupListing_group_id(group)),
                state: ConsumerGroupState::from_raw(ll::rd_kafka_ConsumerGroupListing_state(group)),
                group_type: ConsumerGroupType::from_raw(ll::rd_kafka_ConsumerGroupListing_type(group)),
                is_simple: ll::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(group) != 0,
            })
            .collect();
        let errors = result_array(errors, error_count).iter().filter_map(|&error| copy_error(error)).collect();
        Ok(ConsumerGroupListings { groups, errors })
    }
}

fn parse_describe_consumer_groups(event: &NativeEvent) -> Result<Vec<ConsumerGroupDescription>> {
    // SAFETY: the event is a DescribeConsumerGroups result, and the
    // descriptions live as long as the event.
    let groups = unsafe {
        let result = ll::rd_kafka_event_DescribeConsumerGroups_result(event.as_ptr());
        let mut count = 0usize;
        let groups = ll::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
        result_array(groups, count)
    };
    // SAFETY: each description is valid for the event's lifetime.
    Ok(groups.iter().map(|&group| unsafe { read_group_description(group) }).collect())
}

/// # Safety
///
/// `group` must be a valid description of a result event.
unsafe fn read_group_description(group: *const ll::rd_kafka_ConsumerGroupDescription_t) -> ConsumerGroupDescription {
    // SAFETY: the description is valid, and its strings, error, coordinator and
    // members live as long as it, and indexes below the member count are
    // in range.
    unsafe {
        let member_count = ll::rd_kafka_ConsumerGroupDescription_member_count(group);
        let members = (0..member_count)
            .map(|index| ll::rd_kafka_ConsumerGroupDescription_member(group, index))
            .filter(|member| !member.is_null())
            .map(|member| read_member(member))
            .collect();
        ConsumerGroupDescription {
            group_id: copy_string(ll::rd_kafka_ConsumerGroupDescription_group_id(group)),
            error: copy_error(ll::rd_kafka_ConsumerGroupDescription_error(group)),
            state: ConsumerGroupState::from_raw(ll::rd_kafka_ConsumerGroupDescription_state(group)),
            group_type: ConsumerGroupType::from_raw(ll::rd_kafka_ConsumerGroupDescription_type(group)),
            is_simple: ll::rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(group) != 0,
            partition_assignor: copy_string(ll::rd_kafka_ConsumerGroupDescription_partition_assignor(group)),
            coordinator: Node::copy(ll::rd_kafka_ConsumerGroupDescription_coordinator(group)),
            members,
        }
    }
}

/// # Safety
///
/// `member` must be a valid member of a group description.
unsafe fn read_member(member: *const ll::rd_kafka_MemberDescription_t) -> MemberDescription {
    // SAFETY: the member is valid, and its strings and assignment live as long
    // as it.
    unsafe {
        let assignment = ll::rd_kafka_MemberDescription_assignment(member);
        let partitions =
            if assignment.is_null() { std::ptr::null() } else { ll::rd_kafka_MemberAssignment_partitions(assignment) };
        MemberDescription {
            member_id: copy_string(ll::rd_kafka_MemberDescription_consumer_id(member)),
            group_instance_id: optional_c_string(ll::rd_kafka_MemberDescription_group_instance_id(member)),
            client_id: copy_string(ll::rd_kafka_MemberDescription_client_id(member)),
            host: copy_string(ll::rd_kafka_MemberDescription_host(member)),
            assignment: read_partition_list(partitions)
                .into_iter()
                .map(|(entry, _)| TopicPartition::new(entry.topic, entry.partition))
                .collect(),
        }
    }
}

fn parse_delete_groups(event: &NativeEvent) -> Result<Vec<GroupResult>> {
    // SAFETY: the event is a DeleteGroups result, and the group results live
    // as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_DeleteGroups_result(event.as_ptr());
        let mut count = 0usize;
        let groups = ll::rd_kafka_DeleteGroups_result_groups(result, &mut count);
        Ok(result_array(groups, count)
            .iter()
            .map(|&group| GroupResult {
                group: copy_string(ll::rd_kafka_group_result_name(group)),
                error: copy_error(ll::rd_kafka_group_result_error(group)),
            })
            .collect())
    }
}

/// An owned `rd_kafka_DeleteGroup_t`.
struct OwnedDeleteGroup(NonNull<ll::rd_kafka_DeleteGroup_t>);

impl Drop for OwnedDeleteGroup {
    fn drop(&mut self) {
        // SAFETY: self owns the object, and librdkafka copied it into the request.
        unsafe { ll::rd_kafka_DeleteGroup_destroy(self.0.as_ptr()) };
    }
}
