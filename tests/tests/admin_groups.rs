//! Admin requests on consumer groups and their committed offsets, against
//! a real broker with live consumers. Each test skips with a notice when
//! `KAFKA_BOOTSTRAP_SERVERS` is unset.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka_e2e::{real_broker, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    AdminClient, AdminOptions, ConfigResource, Consumer, ConsumerGroupDescription, ConsumerGroupState,
    ConsumerGroupType, ErrorCode, GroupOffsets, KafkaError, KafkaFuture, Producer, Record, TopicPartition,
    TopicPartitionOffset, OFFSET_INVALID,
};
use rdkafka_ll as ll;

/// How long a test waits for an admin future: the request timeout of
/// [`options`] plus time for librdkafka to report its own timeout.
const RESULT_WAIT: Duration = Duration::from_secs(40);

/// How long [`wait_settled`] retries: room for one request that times out
/// and a second one.
const SETTLE_WAIT: Duration = Duration::from_secs(75);

/// How long one `Consumer::poll` blocks, kept short so that deadlines are
/// checked often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How often a test repeats an admin request while waiting for a change.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Records per partition of the test topic.
const RECORDS_PER_PARTITION: i64 = 6;

const GROUP_ID_NOT_FOUND: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND);
const NON_EMPTY_GROUP: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP);
const UNKNOWN_MEMBER_ID: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID);
const GROUP_SUBSCRIBED_TO_TOPIC: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR_GROUP_SUBSCRIBED_TO_TOPIC);

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(WAIT_TIMEOUT)
}

/// Waits for an admin request's result, failing the test with
/// `description` when the request could not start, failed as a whole or timed out.
#[track_caller]
fn wait<T>(request: rdkafka_hl::Result<KafkaFuture<T>>, description: &str) -> T {
    let future = match request {
        Ok(future) => future,
        Err(error) => panic!("failed to start {description}: {error}"),
    };
    match future.wait_timeout(RESULT_WAIT) {
        Ok(result) => result,
        Err(error) => panic!("{description} failed: {error}"),
    }
}

/// Codes a fresh broker returns while it creates its internal topics or
/// spreads the metadata of a new topic; the same request succeeds later.
/// `_TIMED_OUT` is among them: on a loaded machine, the first group
/// request to a fresh broker once waited out its whole timeout although
/// the coordinator was ready after about 2 s.
const TRANSIENT: [i32; 5] = [
    ll::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
    ll::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
    ll::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
    ll::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    ll::RD_KAFKA_RESP_ERR__TIMED_OUT,
];

/// Runs `request` until none of the codes `codes_of` returns is transient,
/// for at most [`SETTLE_WAIT`].
fn wait_settled<T>(
    description: &str,
    mut request: impl FnMut() -> rdkafka_hl::Result<KafkaFuture<T>>,
    codes_of: impl Fn(&T) -> Vec<Option<ErrorCode>>,
) -> T {
    let deadline = Deadline::after(SETTLE_WAIT, format!("{description} to stop failing with transient errors"));
    loop {
        let result = wait(request(), description);
        let transient = codes_of(&result)
            .into_iter()
            .flatten()
            .any(|code| TRANSIENT.contains(&code.raw()));
        if !transient {
            return result;
        }
        if deadline.is_expired() {
            deadline.fail(format!("last codes {:?}", codes_of(&result)));
        }
        std::thread::sleep(RETRY_INTERVAL);
    }
}

fn code_of(error: &Option<KafkaError>) -> Option<ErrorCode> {
    error.as_ref().map(|error| error.code)
}

fn new_consumer(target: &Target, group: &str, client_id: &str) -> Consumer {
    let config = target
        .group_config(group)
        .set("client.id", client_id)
        .and_then(|config| config.set("auto.offset.reset", "earliest"))
        .and_then(|config| config.set("enable.auto.commit", "false"))
        .unwrap_or_else(|error| panic!("invalid consumer configuration: {error}"));
    Consumer::new(config).unwrap_or_else(|error| panic!("failed to create consumer {client_id} in {group}: {error}"))
}

/// Polls `consumer` until it has read `count` messages, and returns the
/// offsets it read per partition.
fn read_messages(consumer: &Consumer, count: usize, consumer_name: &str) -> BTreeMap<i32, Vec<i64>> {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("{count} messages for consumer {consumer_name}"));
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut read = 0;
    while read < count {
        deadline.check(|| format!("read {read}, offsets per partition {offsets:?}"));
        if let Some(result) = consumer.poll(POLL_TIMEOUT) {
            let message = result.unwrap_or_else(|error| panic!("poll of consumer {consumer_name} failed: {error}"));
            offsets.entry(message.partition()).or_default().push(message.offset());
            read += 1;
        }
    }
    offsets
}

fn describe_group(admin: &AdminClient, group: &str) -> ConsumerGroupDescription {
    let mut groups = wait(admin.describe_consumer_groups(&[group], &options()), "describe consumer groups");
    assert_eq!(groups.len(), 1, "number of described groups");
    let description = groups.remove(0);
    assert_eq!(description.group_id, group, "id of the described group");
    description
}

/// Describes `group` until it is in `state`.
fn wait_for_state(admin: &AdminClient, group: &str, state: ConsumerGroupState) -> ConsumerGroupDescription {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("group {group} to be {state:?}"));
    loop {
        let description = describe_group(admin, group);
        if description.state == state {
            return description;
        }
        deadline.check(|| format!("its state is {:?}", description.state));
        std::thread::sleep(RETRY_INTERVAL);
    }
}

/// Returns (partition, offset, error code) for each partition of a group
/// result, sorted by partition, after checking its group and topic.
fn partition_outcome(offsets: &GroupOffsets, group: &str, topic: &str) -> Vec<(i32, i64, Option<ErrorCode>)> {
    assert_eq!(offsets.group, group, "group of the offsets result");
    let mut outcome: Vec<_> = offsets
        .partitions
        .iter()
        .map(|entry| {
            assert_eq!(entry.topic, topic, "topic of partition {}", entry.partition);
            (entry.partition, entry.offset, code_of(&entry.error))
        })
        .collect();
    outcome.sort_by_key(|entry| entry.0);
    outcome
}

/// Returns (partition, error code) for each partition, sorted.
fn partition_errors(offsets: &GroupOffsets) -> Vec<(i32, Option<ErrorCode>)> {
    let mut outcome: Vec<_> = offsets.partitions.iter().map(|entry| (entry.partition, code_of(&entry.error))).collect();
    outcome.sort_by_key(|entry| entry.0);
    outcome
}

#[test]
fn group_lifecycle() {
    let Some(servers) = real_broker() else { return };
    let target = Target::RealBroker(servers.clone());
    let admin =
        AdminClient::new(target.config()).unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
    let topic = target.create_topic("admin-group", 2);
    let group = unique_name("admin-group");
    let partitions = [TopicPartition::new(&topic, 0), TopicPartition::new(&topic, 1)];

    let producer =
        Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    for partition in [0, 1] {
        for index in 0..RECORDS_PER_PARTITION {
            let value = format!("{partition}-{index}");
            producer
                .send(Record::to(&topic).partition(partition).value(&value))
                .unwrap_or_else(|error| panic!("send of record {value} failed: {error}"))
                .wait_timeout(WAIT_TIMEOUT)
                .unwrap_or_else(|error| panic!("delivery of record {value} failed: {error}"));
        }
    }

    // A live member reads everything and commits offsets 3 and 5.
    let first = new_consumer(&target, &group, "admin-groups-first");
    first.subscribe(&[&topic]).unwrap_or_else(|error| panic!("subscribe to {topic} failed: {error}"));
    let read = read_messages(&first, 2 * RECORDS_PER_PARTITION as usize, "first");
    assert_eq!(read.keys().copied().collect::<Vec<_>>(), vec![0, 1], "partitions the first consumer read");
    let committed = [TopicPartitionOffset::new(&topic, 0, 3), TopicPartitionOffset::new(&topic, 1, 5)];
    first
        .commit_offsets(&committed)
        .unwrap_or_else(|error| panic!("commit failed to start: {error}"))
        .wait_timeout(WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("commit of offsets 3 and 5 failed: {error}"));
    let member_id = first.member_id().expect("the first consumer joined the group");

    // List and describe the live group.
    let listings = wait(admin.list_consumer_groups(&options()), "list consumer groups");
    assert_eq!(listings.errors, Vec::<KafkaError>::new(), "per-broker errors of the listing");
    let listing = listings.groups.iter().find(|listing| listing.group_id == group);
    let listing = listing.unwrap_or_else(|| panic!("group {group} is not listed: {listings:?}"));
    assert_eq!(listing.state, ConsumerGroupState::Stable, "listed state of the live group");
    assert_eq!(listing.group_type, ConsumerGroupType::Classic, "listed type of the live group");
    assert!(!listing.is_simple, "the live group is listed as a simple group");

    let cluster = wait(admin.describe_cluster(&options()), "describe cluster");
    let broker = cluster.nodes.first().cloned().expect("the cluster has a broker");
    let description = describe_group(&admin, &group);
    assert_eq!(description.error, None, "error of the live group's description");
    assert_eq!(description.state, ConsumerGroupState::Stable, "described state of the live group");
    assert_eq!(description.group_type, ConsumerGroupType::Classic, "described type of the live group");
    assert_eq!(description.protocol_type(), "consumer", "protocol type of the live group");
    assert_eq!(description.partition_assignor, "range", "assignor of librdkafka's default assignment strategy");
    assert_eq!(description.coordinator.as_ref(), Some(&broker), "coordinator of the group");
    assert_eq!(description.members.len(), 1, "members of the live group: {:?}", description.members);
    let member = &description.members[0];
    assert_eq!(member.member_id, member_id, "member id in the description");
    assert_eq!(member.client_id, "admin-groups-first", "client id of the member");
    assert!(member.host.contains("127.0.0.1"), "host of the member: {}", member.host);
    assert_eq!(member.group_instance_id, None, "group instance id of a dynamic member");
    let mut assignment = member.assignment.clone();
    assignment.sort();
    assert_eq!(assignment, partitions.to_vec(), "partitions assigned to the member");

    // The broker keeps group configurations for every group id.
    let group_config =
        wait(admin.describe_configs(&[ConfigResource::Group(group.clone())], &options()), "describe group configs");
    assert_eq!(group_config[0].error, None, "error of the group config description");
    let session_timeout = group_config[0].entry("consumer.session.timeout.ms");
    assert!(
        session_timeout.is_some_and(|entry| entry.value.is_some()),
        "group session timeout entry: {session_timeout:?}"
    );

    // Its committed offsets, all and one.
    let listed = wait(admin.list_consumer_group_offsets(&group, None, &options()), "list all group offsets");
    assert_eq!(partition_outcome(&listed, &group, &topic), vec![(0, 3, None), (1, 5, None)], "committed offsets");
    let only_second = [TopicPartition::new(&topic, 1)];
    let listed =
        wait(admin.list_consumer_group_offsets(&group, Some(&only_second), &options()), "list one group offset");
    assert_eq!(partition_outcome(&listed, &group, &topic), vec![(1, 5, None)], "committed offset of partition 1");

    // A live group rejects offset changes and deletion.
    let alter = [TopicPartitionOffset::new(&topic, 0, 1)];
    let altered =
        wait(admin.alter_consumer_group_offsets(&group, &alter, &options()), "alter offsets of the live group");
    assert_eq!(partition_errors(&altered), vec![(0, Some(UNKNOWN_MEMBER_ID))], "alter errors in the live group");
    let removed =
        wait(admin.delete_consumer_group_offsets(&group, &only_second, &options()), "delete offsets of the live group");
    assert_eq!(
        partition_errors(&removed),
        vec![(1, Some(GROUP_SUBSCRIBED_TO_TOPIC))],
        "delete errors in the live group"
    );
    let deleted = wait(admin.delete_groups(&[&group], &options()), "delete the live group");
    let outcome: Vec<_> = deleted.iter().map(|result| (result.group.as_str(), code_of(&result.error))).collect();
    assert_eq!(outcome, vec![(group.as_str(), Some(NON_EMPTY_GROUP))], "outcome of deleting the live group");

    // Without members, the offsets can be changed.
    first.close(WAIT_TIMEOUT).unwrap_or_else(|error| panic!("close of the first consumer failed: {error}"));
    let empty = wait_for_state(&admin, &group, ConsumerGroupState::Empty);
    assert!(empty.members.is_empty(), "members of the empty group: {:?}", empty.members);
    assert_eq!(empty.partition_assignor, "", "assignor of the empty group");
    let alter = [TopicPartitionOffset::new(&topic, 0, 1), TopicPartitionOffset::new(&topic, 1, 4)];
    let altered = wait(admin.alter_consumer_group_offsets(&group, &alter, &options()), "alter offsets");
    assert_eq!(partition_outcome(&altered, &group, &topic), vec![(0, 1, None), (1, 4, None)], "altered offsets");
    let listed = wait(admin.list_consumer_group_offsets(&group, None, &options()), "list altered offsets");
    assert_eq!(partition_outcome(&listed, &group, &topic), vec![(0, 1, None), (1, 4, None)], "offsets after alter");

    // A new member starts at the altered offsets: 5 records of partition 0
    // from offset 1 and 2 of partition 1 from offset 4.
    let second = new_consumer(&target, &group, "admin-groups-second");
    second.subscribe(&[&topic]).unwrap_or_else(|error| panic!("subscribe of the second consumer failed: {error}"));
    let read = read_messages(&second, 7, "second");
    let expected: BTreeMap<i32, Vec<i64>> = BTreeMap::from([(0, (1..6).collect()), (1, vec![4, 5])]);
    assert_eq!(read, expected, "offsets the second consumer read per partition");
    second.close(WAIT_TIMEOUT).unwrap_or_else(|error| panic!("close of the second consumer failed: {error}"));
    wait_for_state(&admin, &group, ConsumerGroupState::Empty);

    // Delete one partition's offset, then the group.
    let removed = wait(admin.delete_consumer_group_offsets(&group, &only_second, &options()), "delete one offset");
    assert_eq!(
        partition_outcome(&removed, &group, &topic),
        vec![(1, OFFSET_INVALID, None)],
        "result of deleting the offset of partition 1"
    );
    let listed = wait(admin.list_consumer_group_offsets(&group, Some(&partitions), &options()), "list offsets");
    assert_eq!(
        partition_outcome(&listed, &group, &topic),
        vec![(0, 1, None), (1, OFFSET_INVALID, None)],
        "offsets after deleting partition 1's"
    );

    let deleted = wait(admin.delete_groups(&[&group], &options()), "delete the group");
    let outcome: Vec<_> = deleted.iter().map(|result| (result.group.as_str(), code_of(&result.error))).collect();
    assert_eq!(outcome, vec![(group.as_str(), None)], "outcome of deleting the empty group");
    let listings = wait(admin.list_consumer_groups(&options()), "list consumer groups after deletion");
    assert!(listings.groups.iter().all(|listing| listing.group_id != group), "deleted group {group} is still listed");
    assert_eq!(describe_group(&admin, &group).state, ConsumerGroupState::Dead, "state of the deleted group");

    let removed = wait(admin.delete_topics(&[&topic], &options()), "delete topics");
    assert_eq!(removed[0].error, None, "error of the clean-up");
}

#[test]
fn missing_group_errors() {
    let Some(servers) = real_broker() else { return };
    let target = Target::RealBroker(servers);
    let admin =
        AdminClient::new(target.config()).unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
    let missing = unique_name("admin-missing-group");

    let deleted = wait_settled(
        "delete a missing group",
        || admin.delete_groups(&[&missing], &options()),
        |results| results.iter().map(|result| code_of(&result.error)).collect(),
    );
    let outcome: Vec<_> = deleted.iter().map(|result| (result.group.as_str(), code_of(&result.error))).collect();
    assert_eq!(outcome, vec![(missing.as_str(), Some(GROUP_ID_NOT_FOUND))], "outcome of deleting a missing group");

    let description = describe_group(&admin, &missing);
    assert_eq!(description.error, None, "error of describing a missing group");
    assert_eq!(description.state, ConsumerGroupState::Dead, "state of a missing group");
    assert!(description.members.is_empty(), "members of a missing group: {:?}", description.members);

    let offsets =
        wait(admin.list_consumer_group_offsets(&missing, None, &options()), "list offsets of a missing group");
    assert!(offsets.partitions.is_empty(), "offsets of a missing group: {:?}", offsets.partitions);

    let partition = [TopicPartition::new(unique_name("admin-missing-topic"), 0)];
    let removed = admin
        .delete_consumer_group_offsets(&missing, &partition, &options())
        .unwrap_or_else(|error| panic!("failed to start delete offsets of a missing group: {error}"))
        .wait_timeout(RESULT_WAIT);
    match removed {
        Err(error) => assert_eq!(error.code(), Some(GROUP_ID_NOT_FOUND), "error of deleting a missing group's offsets"),
        Ok(offsets) => panic!("deleting offsets of missing group {missing} succeeded: {offsets:?}"),
    }

    // Empty group ids are rejected before anything is sent.
    let error = admin.describe_consumer_groups(&[""], &options()).expect_err("describe of an empty group id was sent");
    assert!(error.to_string().contains("group id"), "error for an empty group id: {error}");
}

#[test]
fn simple_group_from_offsets() {
    let Some(servers) = real_broker() else { return };
    let target = Target::RealBroker(servers);
    let admin =
        AdminClient::new(target.config()).unwrap_or_else(|error| panic!("failed to create an admin client: {error}"));
    let topic = target.create_topic("admin-simple-group", 1);
    let group = unique_name("admin-simple-group");

    // Committing offsets for a new group id creates a group without members.
    let offsets = [TopicPartitionOffset::new(&topic, 0, 2)];
    let altered = wait_settled(
        "alter offsets of a new group",
        || admin.alter_consumer_group_offsets(&group, &offsets, &options()),
        |altered| partition_errors(altered).into_iter().map(|(_, code)| code).collect(),
    );
    assert_eq!(partition_outcome(&altered, &group, &topic), vec![(0, 2, None)], "offsets committed for the new group");

    let listings = wait(admin.list_consumer_groups(&options()), "list consumer groups");
    let listing = listings.groups.iter().find(|listing| listing.group_id == group);
    let listing = listing.unwrap_or_else(|| panic!("group {group} is not listed: {listings:?}"));
    assert!(listing.is_simple, "the group that only has offsets is not listed as simple");
    assert_eq!(listing.state, ConsumerGroupState::Empty, "listed state of the simple group");

    let description = describe_group(&admin, &group);
    assert_eq!(description.error, None, "error of the simple group's description");
    assert!(description.is_simple, "the group that only has offsets is not described as simple");
    assert_eq!(description.protocol_type(), "", "protocol type of the simple group");
    assert_eq!(description.state, ConsumerGroupState::Empty, "described state of the simple group");

    let deleted = wait(admin.delete_groups(&[&group], &options()), "delete the simple group");
    assert_eq!(code_of(&deleted[0].error), None, "error of deleting the simple group");
    let removed = wait(admin.delete_topics(&[&topic], &options()), "delete topics");
    assert_eq!(removed[0].error, None, "error of the clean-up");
}
