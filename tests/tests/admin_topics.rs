//! Admin requests on topics, their configurations, partitions and records,
//! and on the cluster and its ACLs, against a real broker. Each real-broker
//! test skips with a notice when `KAFKA_BOOTSTRAP_SERVERS` is unset.
//!
//! The slow-request test runs on the mock cluster instead. The test broker
//! (Kafka 4.1.1 in KRaft mode) responds to admin requests at once, even to
//! CreateTopics with 6000 partitions, so the 2.5 s delay comes from the
//! mock broker's response delay injection.

use std::ffi::c_int;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka_e2e::{real_broker, unique_name, Deadline, Target, WAIT_TIMEOUT};
use rdkafka_hl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, AdminOptions, AlterConfigOp,
    ClusterMetadata, ConfigResource, ConfigSource, Consumer, Error, ErrorCode, IsolationLevel, KafkaError, KafkaFuture,
    NewPartitions, NewTopic, OffsetSpec, Producer, Record, ResourceConfig, ResourcePatternType, ResourceType,
    TopicPartition, TopicPartitionOffset,
};
use rdkafka_ll as ll;

/// How long a test waits for an admin future: the request timeout of
/// [`options`] plus time for librdkafka to report its own timeout.
const RESULT_WAIT: Duration = Duration::from_secs(40);

/// How often a test polls the metadata or offsets while waiting for a
/// change to show.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Kafka's `INVALID_CONFIG` error code.
const INVALID_CONFIG: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR_INVALID_CONFIG);

/// Kafka's `SECURITY_DISABLED` error code, which a broker without an
/// authorizer returns for ACL requests.
const SECURITY_DISABLED: ErrorCode = ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR_SECURITY_DISABLED);

/// The Kafka protocol's API key of ListOffsets requests.
const LIST_OFFSETS_API_KEY: i16 = 2;

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(WAIT_TIMEOUT)
}

fn new_admin(servers: &str) -> AdminClient {
    let config = rdkafka_hl::Config::new()
        .set("bootstrap.servers", servers)
        .unwrap_or_else(|error| panic!("invalid bootstrap.servers {servers:?}: {error}"));
    AdminClient::new(config).unwrap_or_else(|error| panic!("failed to create an admin client: {error}"))
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

/// Returns the code of a per-item error, `None` for success.
fn code_of(error: &Option<KafkaError>) -> Option<ErrorCode> {
    error.as_ref().map(|error| error.code)
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).expect("the system clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("the current time in milliseconds fits in i64")
}

/// Polls the metadata of `topic` until it has `partitions` partitions.
fn wait_for_partition_count(admin: &AdminClient, topic: &str, partitions: usize) -> ClusterMetadata {
    let deadline =
        Deadline::after(WAIT_TIMEOUT, format!("topic {topic} to show {partitions} partitions in the metadata"));
    loop {
        let metadata = admin
            .metadata(Some(topic), WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("metadata request for {topic} failed: {error}"));
        let found = metadata.topics.iter().find(|entry| entry.name == topic);
        let count = found.filter(|entry| entry.error.is_none()).map_or(0, |entry| entry.partitions.len());
        if count == partitions {
            return metadata;
        }
        deadline.check(|| format!("the metadata shows {count} partitions: {found:?}"));
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls the metadata of every topic until `topic` is gone. The request
/// covers all topics, because one for `topic` alone would let the broker
/// (with `auto.create.topics.enable`) create it again.
fn wait_for_topic_gone(admin: &AdminClient, topic: &str) {
    let deadline = Deadline::after(WAIT_TIMEOUT, format!("topic {topic} to leave the metadata"));
    loop {
        let metadata =
            admin.metadata(None, WAIT_TIMEOUT).unwrap_or_else(|error| panic!("metadata request failed: {error}"));
        if metadata.topics.iter().all(|entry| entry.name != topic) {
            return;
        }
        deadline.check(|| "the metadata still lists it".to_owned());
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn describe_one(admin: &AdminClient, resource: ConfigResource) -> ResourceConfig {
    let mut configs = wait(admin.describe_configs(std::slice::from_ref(&resource), &options()), "describe configs");
    assert_eq!(configs.len(), 1, "number of described resources for {resource:?}");
    let config = configs.remove(0);
    assert_eq!(config.resource, resource, "resource of the description");
    assert_eq!(config.error, None, "error of the description of {resource:?}");
    config
}

/// Returns the value and source of an entry that must be in `config`.
#[track_caller]
fn entry_value(config: &ResourceConfig, name: &str) -> (Option<String>, ConfigSource) {
    match config.entry(name) {
        Some(entry) => (entry.value.clone(), entry.source),
        None => panic!("the description of {:?} has no entry {name}", config.resource),
    }
}

fn send_records(producer: &Producer, topic: &str, partition: i32, timestamps: &[i64]) {
    for (index, timestamp) in timestamps.iter().enumerate() {
        // A key keeps the record valid after cleanup.policy gains compact.
        let value = format!("record-{index}");
        let record = Record::to(topic).partition(partition).key(&value).value(&value).timestamp(*timestamp);
        producer
            .send(record)
            .unwrap_or_else(|error| panic!("send of record {index} to {topic} [{partition}] failed: {error}"))
            .wait_timeout(WAIT_TIMEOUT)
            .unwrap_or_else(|error| panic!("delivery of record {index} to {topic} [{partition}] failed: {error}"));
    }
}

/// Looks up one partition's offset and checks that it has no error.
fn list_one(admin: &AdminClient, topic: &str, partition: i32, spec: OffsetSpec) -> rdkafka_hl::ListedOffset {
    let request = [(TopicPartition::new(topic, partition), spec)];
    let mut offsets = wait(admin.list_offsets(&request, &options()), "list offsets");
    assert_eq!(offsets.len(), 1, "number of listed offsets for {spec:?}");
    let listed = offsets.remove(0);
    assert_eq!((listed.topic.as_str(), listed.partition), (topic, partition), "partition of the {spec:?} offset");
    assert_eq!(listed.error, None, "error of the {spec:?} offset");
    listed
}

#[test]
fn topic_lifecycle() {
    let Some(servers) = real_broker() else { return };
    let target = Target::RealBroker(servers.clone());
    let admin = new_admin(&servers);
    let topic = unique_name("admin-topic");

    // Create with configs, and see the topic in the metadata.
    let new_topic = NewTopic::new(&topic, 2, 1).config("retention.ms", "3600000").config("max.message.bytes", "200000");
    let created = wait(admin.create_topics(&[new_topic], &options()), "create topics");
    assert_eq!(created.len(), 1, "number of create results");
    assert_eq!(created[0].name, topic, "topic of the create result");
    assert_eq!(created[0].error, None, "error of the create result");
    let metadata = wait_for_partition_count(&admin, &topic, 2);
    let listed = metadata.topics.iter().find(|entry| entry.name == topic).expect("the topic is in the metadata");
    let ids: Vec<i32> = listed.partitions.iter().map(|partition| partition.id).collect();
    assert_eq!(ids, vec![0, 1], "partition ids after creation");

    // The configs set at creation are dynamic topic configs, and the rest are
    // defaults.
    let config = describe_one(&admin, ConfigResource::Topic(topic.clone()));
    let retention = config.entry("retention.ms").expect("the topic has a retention.ms entry");
    assert_eq!(retention.value.as_deref(), Some("3600000"), "retention.ms after creation");
    assert_eq!(retention.source, ConfigSource::DynamicTopicConfig, "source of retention.ms");
    assert!(!retention.is_default, "retention.ms is reported as a default");
    assert!(!retention.is_read_only, "retention.ms is reported as read-only");
    assert!(!retention.is_sensitive, "retention.ms is reported as sensitive");
    assert_eq!(
        entry_value(&config, "max.message.bytes"),
        (Some("200000".to_owned()), ConfigSource::DynamicTopicConfig),
        "max.message.bytes after creation"
    );
    let cleanup = config.entry("cleanup.policy").expect("the topic has a cleanup.policy entry");
    assert_eq!(cleanup.value.as_deref(), Some("delete"), "default cleanup.policy");
    assert_eq!(cleanup.source, ConfigSource::DefaultConfig, "source of the default cleanup.policy");
    assert!(cleanup.is_default, "the default cleanup.policy is not reported as a default");

    // Alter incrementally: set one entry, delete another, append to a list.
    let changes = vec![
        AlterConfigOp::set("retention.ms", "7200000"),
        AlterConfigOp::delete("max.message.bytes"),
        AlterConfigOp::append("cleanup.policy", "compact"),
    ];
    let altered = wait(
        admin.incremental_alter_configs(&[(ConfigResource::Topic(topic.clone()), changes)], &options()),
        "alter configs",
    );
    assert_eq!(altered.len(), 1, "number of alter results");
    assert_eq!(altered[0].resource, ConfigResource::Topic(topic.clone()), "resource of the alter result");
    assert_eq!(altered[0].error, None, "error of the alter result");

    let config = describe_one(&admin, ConfigResource::Topic(topic.clone()));
    assert_eq!(
        entry_value(&config, "retention.ms"),
        (Some("7200000".to_owned()), ConfigSource::DynamicTopicConfig),
        "retention.ms after the set"
    );
    let max_message_bytes = config.entry("max.message.bytes").expect("the topic has a max.message.bytes entry");
    assert_ne!(
        max_message_bytes.source,
        ConfigSource::DynamicTopicConfig,
        "source of max.message.bytes after the delete"
    );
    assert_ne!(max_message_bytes.value.as_deref(), Some("200000"), "max.message.bytes after the delete");
    assert_eq!(
        entry_value(&config, "cleanup.policy"),
        (Some("delete,compact".to_owned()), ConfigSource::DynamicTopicConfig),
        "cleanup.policy after the append"
    );

    // A validate-only change is checked but not applied.
    let validate = options().validate_only(true);
    let changes = vec![AlterConfigOp::set("retention.ms", "1000")];
    let validated = wait(
        admin.incremental_alter_configs(&[(ConfigResource::Topic(topic.clone()), changes)], &validate),
        "validate configs",
    );
    assert_eq!(validated[0].error, None, "error of the validate-only alter");
    let config = describe_one(&admin, ConfigResource::Topic(topic.clone()));
    assert_eq!(entry_value(&config, "retention.ms").0.as_deref(), Some("7200000"), "retention.ms after validate-only");

    // Add partitions and wait for the metadata to show them.
    let grown = wait(
        admin.create_partitions(&[NewPartitions { topic: topic.clone(), total: 4 }], &options()),
        "create partitions",
    );
    assert_eq!(grown.len(), 1, "number of create-partitions results");
    assert_eq!(grown[0].error, None, "error of the create-partitions result");
    let metadata = wait_for_partition_count(&admin, &topic, 4);
    let listed = metadata.topics.iter().find(|entry| entry.name == topic).expect("the topic is in the metadata");
    let ids: Vec<i32> = listed.partitions.iter().map(|partition| partition.id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3], "partition ids after adding partitions");

    // Produce ten records a second apart, a minute ago, then delete the
    // first four.
    let base = now_ms() - 60_000;
    let timestamps: Vec<i64> = (0..10).map(|index| base + index * 1_000).collect();
    let producer =
        Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    send_records(&producer, &topic, 0, &timestamps);

    let deleted = wait(admin.delete_records(&[TopicPartitionOffset::new(&topic, 0, 4)], &options()), "delete records");
    assert_eq!(deleted.len(), 1, "number of delete-records results");
    assert_eq!((deleted[0].topic.as_str(), deleted[0].partition), (topic.as_str(), 0), "partition of the result");
    assert_eq!(deleted[0].error, None, "error of the delete-records result");
    assert_eq!(deleted[0].offset, 4, "low watermark after deleting below offset 4");

    // The new low watermark, through ListOffsets and through a consumer.
    assert_eq!(list_one(&admin, &topic, 0, OffsetSpec::Earliest).offset, 4, "earliest offset of partition 0");
    assert_eq!(list_one(&admin, &topic, 0, OffsetSpec::Latest).offset, 10, "latest offset of partition 0");
    let both =
        [(TopicPartition::new(&topic, 1), OffsetSpec::Earliest), (TopicPartition::new(&topic, 3), OffsetSpec::Latest)];
    let offsets = wait(admin.list_offsets(&both, &options()), "list offsets of empty partitions");
    let mut found: Vec<(i32, i64, Option<ErrorCode>)> =
        offsets.iter().map(|entry| (entry.partition, entry.offset, code_of(&entry.error))).collect();
    found.sort_by_key(|entry| entry.0);
    assert_eq!(found, vec![(1, 0, None), (3, 0, None)], "offsets of the empty partitions 1 and 3");

    let consumer = Consumer::new(target.group_config(&unique_name("admin-watermarks")))
        .unwrap_or_else(|error| panic!("failed to create a consumer: {error}"));
    let watermarks = consumer
        .query_watermark_offsets(&topic, 0, WAIT_TIMEOUT)
        .unwrap_or_else(|error| panic!("query of the watermarks of {topic} [0] failed: {error}"));
    assert_eq!(watermarks, (4, 10), "low and high watermark of partition 0 after the deletion");

    // Offsets by timestamp skip the deleted records.
    let at_six = list_one(&admin, &topic, 0, OffsetSpec::Timestamp(timestamps[6]));
    assert_eq!(at_six.offset, 6, "offset of the first record at or after timestamp 6");
    assert_eq!(at_six.timestamp, Some(timestamps[6]), "timestamp of the record at offset 6");
    assert!(at_six.leader_epoch.is_some_and(|epoch| epoch >= 0), "leader epoch of offset 6: {:?}", at_six.leader_epoch);
    let before_deleted = list_one(&admin, &topic, 0, OffsetSpec::Timestamp(timestamps[1]));
    assert_eq!(before_deleted.offset, 4, "offset for the timestamp of a deleted record");
    let after_last = list_one(&admin, &topic, 0, OffsetSpec::Timestamp(timestamps[9] + 1));
    assert_eq!(after_last.offset, -1, "offset for a timestamp after the last record");
    let max = list_one(&admin, &topic, 0, OffsetSpec::MaxTimestamp);
    assert_eq!((max.offset, max.timestamp), (9, Some(timestamps[9])), "offset and timestamp of the max timestamp");

    // Delete the topic and wait for it to leave the metadata.
    let removed = wait(admin.delete_topics(&[&topic], &options()), "delete topics");
    assert_eq!(removed.len(), 1, "number of delete results");
    assert_eq!(removed[0].name, topic, "topic of the delete result");
    assert_eq!(removed[0].error, None, "error of the delete result");
    wait_for_topic_gone(&admin, &topic);
}

#[test]
fn create_existing_topic_fails() {
    let Some(servers) = real_broker() else { return };
    let admin = new_admin(&servers);
    let existing = unique_name("admin-existing");
    let fresh = unique_name("admin-fresh");
    wait(admin.create_topics(&[NewTopic::new(&existing, 1, 1)], &options()), "create the first topic");

    let results = wait(
        admin.create_topics(&[NewTopic::new(&existing, 1, 1), NewTopic::new(&fresh, 1, 1)], &options()),
        "create topics again",
    );

    let outcome: Vec<(&str, Option<ErrorCode>)> =
        results.iter().map(|result| (result.name.as_str(), code_of(&result.error))).collect();
    assert_eq!(
        outcome,
        vec![(existing.as_str(), Some(ErrorCode::TOPIC_ALREADY_EXISTS)), (fresh.as_str(), None)],
        "per-topic outcome of creating an existing and a new topic"
    );
    let message = results[0].error.as_ref().map(|error| error.message.clone()).unwrap_or_default();
    assert!(message.contains(&existing), "the error message names the topic: {message}");

    let removed = wait(admin.delete_topics(&[&existing, &fresh], &options()), "delete topics");
    assert!(removed.iter().all(|result| result.error.is_none()), "errors of the clean-up: {removed:?}");
}

#[test]
fn delete_missing_topic_fails() {
    let Some(servers) = real_broker() else { return };
    let admin = new_admin(&servers);
    let existing = unique_name("admin-doomed");
    let missing = unique_name("admin-missing");
    wait(admin.create_topics(&[NewTopic::new(&existing, 1, 1)], &options()), "create topics");

    let results = wait(admin.delete_topics(&[&missing, &existing], &options()), "delete topics");

    let mut outcome: Vec<(&str, Option<ErrorCode>)> =
        results.iter().map(|result| (result.name.as_str(), code_of(&result.error))).collect();
    outcome.sort_by_key(|entry| entry.0);
    let mut expected = vec![(missing.as_str(), Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)), (existing.as_str(), None)];
    expected.sort_by_key(|entry| entry.0);
    assert_eq!(outcome, expected, "per-topic outcome of deleting a missing and an existing topic");
}

#[test]
fn request_timeout_expires() {
    let Some(servers) = real_broker() else { return };
    // A new client has no broker connection yet, so no request can finish
    // within 1 ms.
    let admin = new_admin(&servers);
    let options = AdminOptions::new().request_timeout(Duration::from_millis(1));

    let started = Instant::now();
    let result = admin
        .describe_cluster(&options)
        .unwrap_or_else(|error| panic!("failed to start describe cluster: {error}"))
        .wait_timeout(Duration::from_secs(10));
    let elapsed = started.elapsed();

    match result {
        Err(Error::Kafka { operation, error }) => {
            assert_eq!(error.code, ErrorCode::TIMED_OUT, "error code of the expired request: {error}");
            assert_eq!(operation, "describe cluster", "operation in the error");
        }
        other => panic!("describe cluster with a 1 ms request timeout returned {other:?}, expected _TIMED_OUT"),
    }
    assert!(elapsed < Duration::from_secs(5), "the 1 ms request took {elapsed:?} to time out");
}

#[test]
fn slow_request_within_timeout_mock() {
    let delay = Duration::from_millis(2_500);
    let target = Target::mock();
    let Target::Mock(cluster) = &target else { unreachable!("Target::mock returns a mock cluster") };
    let topic = target.create_topic("admin-slow", 1);
    let producer =
        Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    send_records(&producer, &topic, 0, &[now_ms(), now_ms(), now_ms()]);
    let admin = new_admin(&target.bootstrap_servers());
    let request = [(TopicPartition::new(&topic, 0), OffsetSpec::Latest)];
    let options = AdminOptions::new().request_timeout(Duration::from_secs(10));

    // The first request connects and caches the partition's leader, so the
    // second sends only the ListOffsets request that the broker delays.
    let first = wait(admin.list_offsets(&request, &options), "first list offsets");
    assert_eq!(first[0].offset, 3, "latest offset before the delay");
    let delay_ms = c_int::try_from(delay.as_millis()).expect("the delay fits in a C int");
    // SAFETY: the mock cluster is alive, and the variadic arguments are one
    // (error code, delay in ms) pair of C ints, matching `cnt` = 1.
    unsafe {
        ll::rd_kafka_mock_broker_push_request_error_rtts(
            cluster.as_ptr(),
            1,
            LIST_OFFSETS_API_KEY,
            1,
            ll::RD_KAFKA_RESP_ERR_NO_ERROR as c_int,
            delay_ms,
        )
    };

    let started = Instant::now();
    let offsets = wait(admin.list_offsets(&request, &options), "delayed list offsets");
    let elapsed = started.elapsed();

    assert!(elapsed >= delay, "the delayed request returned after {elapsed:?}, before the {delay:?} delay");
    assert_eq!(offsets.len(), 1, "number of listed offsets");
    assert_eq!(offsets[0].error, None, "error of the delayed request");
    assert_eq!(offsets[0].offset, 3, "latest offset after the delay");
}

#[test]
fn list_offsets_isolation_levels() {
    let Some(servers) = real_broker() else { return };
    let target = Target::RealBroker(servers.clone());
    let admin = new_admin(&servers);
    let topic = target.create_topic("admin-isolation", 1);
    let producer =
        Producer::new(target.config()).unwrap_or_else(|error| panic!("failed to create a producer: {error}"));
    send_records(&producer, &topic, 0, &[now_ms(), now_ms(), now_ms()]);

    // Two records of an open transaction sit above the last stable offset.
    let transactional_id = unique_name("admin-isolation-txn");
    let config = target
        .config()
        .set("transactional.id", &transactional_id)
        .unwrap_or_else(|error| panic!("invalid transactional.id: {error}"));
    let transactional =
        Producer::new(config).unwrap_or_else(|error| panic!("failed to create a transactional producer: {error}"));
    transactional.init_transactions(WAIT_TIMEOUT).unwrap_or_else(|error| panic!("init_transactions failed: {error}"));
    transactional.begin_transaction().unwrap_or_else(|error| panic!("begin_transaction failed: {error}"));
    send_records(&transactional, &topic, 0, &[now_ms(), now_ms()]);

    let latest = [(TopicPartition::new(&topic, 0), OffsetSpec::Latest)];
    let latest_at = |level: IsolationLevel| {
        let offsets = wait(admin.list_offsets_with_isolation_level(&latest, level, &options()), "list offsets");
        assert_eq!(offsets[0].error, None, "error of the {level:?} latest offset");
        offsets[0].offset
    };
    assert_eq!(latest_at(IsolationLevel::ReadUncommitted), 5, "read-uncommitted latest offset in the transaction");
    assert_eq!(latest_at(IsolationLevel::ReadCommitted), 3, "read-committed latest offset in the transaction");

    // The commit marker takes offset 5, and both levels see past it once
    // the coordinator has written it, which happens after the commit call
    // returns.
    transactional.commit_transaction(WAIT_TIMEOUT).unwrap_or_else(|error| panic!("commit_transaction failed: {error}"));
    let deadline = Deadline::after(WAIT_TIMEOUT, "the commit marker to raise both latest offsets to 6");
    loop {
        let offsets = (latest_at(IsolationLevel::ReadUncommitted), latest_at(IsolationLevel::ReadCommitted));
        if offsets == (6, 6) {
            break;
        }
        deadline.check(|| format!("read-uncommitted and read-committed latest offsets are {offsets:?}"));
        std::thread::sleep(POLL_INTERVAL);
    }

    let removed = wait(admin.delete_topics(&[&topic], &options()), "delete topics");
    assert_eq!(removed[0].error, None, "error of the clean-up");
}

#[test]
fn alter_configs_errors_per_resource() {
    let Some(servers) = real_broker() else { return };
    let target = Target::RealBroker(servers.clone());
    let admin = new_admin(&servers);
    let topic = target.create_topic("admin-bad-config", 1);
    let missing = unique_name("admin-missing");

    let changes = [
        (ConfigResource::Topic(topic.clone()), vec![AlterConfigOp::set("retention.ms", "not-a-number")]),
        (ConfigResource::Topic(missing.clone()), vec![AlterConfigOp::set("retention.ms", "1000")]),
    ];
    let results = wait(admin.incremental_alter_configs(&changes, &options()), "alter configs");

    let mut outcome: Vec<(ConfigResource, Option<ErrorCode>)> =
        results.iter().map(|result| (result.resource.clone(), code_of(&result.error))).collect();
    outcome.sort_by_key(|(resource, _)| format!("{resource:?}"));
    let mut expected = vec![
        (ConfigResource::Topic(topic.clone()), Some(INVALID_CONFIG)),
        (ConfigResource::Topic(missing.clone()), Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)),
    ];
    expected.sort_by_key(|(resource, _)| format!("{resource:?}"));
    assert_eq!(outcome, expected, "per-resource outcome of an invalid value and a missing topic");

    let described = wait(
        admin.describe_configs(&[ConfigResource::Topic(missing.clone())], &options()),
        "describe configs of a missing topic",
    );
    assert_eq!(described.len(), 1, "number of described resources");
    assert_eq!(
        code_of(&described[0].error),
        Some(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
        "error for the missing topic"
    );
    assert!(described[0].entries.is_empty(), "entries of the missing topic: {:?}", described[0].entries);

    // Empty names are rejected before anything is sent.
    match admin.describe_configs(&[ConfigResource::Topic(String::new())], &options()) {
        Err(Error::InvalidArgument { what, reason, .. }) => {
            assert_eq!(what, "config resource name", "kind of the rejected argument");
            assert_eq!(reason, "it is empty", "reason for rejecting the empty name");
        }
        other => panic!("describe configs of an empty topic name returned {other:?}, expected InvalidArgument"),
    }

    let removed = wait(admin.delete_topics(&[&topic], &options()), "delete topics");
    assert_eq!(removed[0].error, None, "error of the clean-up");
}

#[test]
fn describe_cluster_and_broker() {
    let Some(servers) = real_broker() else { return };
    let admin = new_admin(&servers);
    let metadata =
        admin.metadata(None, WAIT_TIMEOUT).unwrap_or_else(|error| panic!("metadata request failed: {error}"));

    let cluster = wait(admin.describe_cluster(&options()), "describe cluster");

    assert!(cluster.cluster_id.as_deref().is_some_and(|id| !id.is_empty()), "cluster id: {:?}", cluster.cluster_id);
    assert_eq!(cluster.cluster_id, metadata.cluster_id, "cluster id of DescribeCluster and of the metadata");
    let nodes: Vec<(i32, String, u16)> =
        cluster.nodes.iter().map(|node| (node.id, node.host.clone(), node.port)).collect();
    let brokers: Vec<(i32, String, u16)> =
        metadata.brokers.iter().map(|broker| (broker.id, broker.host.clone(), broker.port)).collect();
    assert_eq!(nodes, brokers, "nodes of DescribeCluster and brokers of the metadata");
    assert_eq!(nodes.len(), 1, "number of brokers of the test cluster");
    assert_eq!(format!("{}:{}", nodes[0].1, nodes[0].2), servers, "address of the only broker");
    assert_eq!(cluster.nodes[0].rack, None, "rack of a broker without broker.rack");
    let controller = cluster.controller.as_ref().map(|node| node.id);
    assert_eq!(controller, Some(nodes[0].0), "controller reported by the only broker");

    // Broker configs: values from the broker's server.properties, and the
    // read-only node id.
    let broker = describe_one(&admin, ConfigResource::Broker(nodes[0].0));
    assert_eq!(
        entry_value(&broker, "num.partitions"),
        (Some("1".to_owned()), ConfigSource::StaticBrokerConfig),
        "num.partitions of the test broker"
    );
    let node_id = broker.entry("node.id").expect("the broker has a node.id entry");
    assert_eq!(node_id.value, Some(nodes[0].0.to_string()), "node.id of the broker");
    assert!(node_id.is_read_only, "node.id is not reported as read-only");
}

#[test]
fn acls_security_disabled() {
    let Some(servers) = real_broker() else { return };
    let admin = new_admin(&servers);
    let topic = unique_name("admin-acl");
    let binding = AclBinding {
        resource_type: ResourceType::Topic,
        name: topic.clone(),
        pattern_type: ResourcePatternType::Literal,
        principal: "User:admin-test".to_owned(),
        host: "*".to_owned(),
        operation: AclOperation::Read,
        permission_type: AclPermissionType::Allow,
    };
    let prefixed =
        AclBinding { pattern_type: ResourcePatternType::Prefixed, operation: AclOperation::Write, ..binding.clone() };

    // The test broker has no authorizer, so each binding fails on its own.
    let created = wait(admin.create_acls(&[binding.clone(), prefixed], &options()), "create ACLs");
    let codes: Vec<Option<ErrorCode>> = created.iter().map(|result| code_of(&result.error)).collect();
    assert_eq!(codes, vec![Some(SECURITY_DISABLED); 2], "per-binding errors of create ACLs: {created:?}");

    let filter =
        AclBindingFilter { resource_type: ResourceType::Topic, name: Some(topic.clone()), ..AclBindingFilter::any() };
    let deleted = wait(admin.delete_acls(&[filter.clone(), AclBindingFilter::any()], &options()), "delete ACLs");
    let codes: Vec<Option<ErrorCode>> = deleted.iter().map(|result| code_of(&result.error)).collect();
    assert_eq!(codes, vec![Some(SECURITY_DISABLED); 2], "per-filter errors of delete ACLs: {deleted:?}");
    assert!(
        deleted.iter().all(|result| result.deleted.is_empty()),
        "bindings deleted without an authorizer: {deleted:?}"
    );

    // librdkafka 2.12.1 drops the SECURITY_DISABLED error of the
    // DescribeAcls response, so the broker's refusal reads as no ACLs.
    let described = wait(admin.describe_acls(&filter, &options()), "describe ACLs");
    assert_eq!(described, Vec::<AclBinding>::new(), "ACLs described without an authorizer");

    // Filter-only values are rejected in bindings before anything is sent.
    let invalid = AclBinding { resource_type: ResourceType::Any, ..binding };
    match admin.create_acls(&[invalid], &options()) {
        Err(error) => {
            assert_eq!(error.code(), Some(ErrorCode::INVALID_ARGUMENT), "code of the rejected binding: {error}");
            assert!(error.to_string().contains("Invalid resource type"), "message of the rejected binding: {error}");
        }
        Ok(future) => panic!("create ACLs accepted a binding with resource type Any: {future:?}"),
    }
}
