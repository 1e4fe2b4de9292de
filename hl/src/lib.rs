//! A safe, idiomatic Apache Kafka client over librdkafka.
//!
//! Each client pairs a librdkafka event queue with a table of pending
//! completions and drains the queue on a background thread. Sends return a
//! [`DeliveryFuture`], and commits and admin requests a [`KafkaFuture`],
//! which this thread resolves exactly once, when librdkafka reports the
//! result, or when the client closes first. A caller can wait on it with a
//! timeout or await it on any executor.
//!
//! The main types: [`Config`], [`Producer`] (with [`Record`], [`Payload`],
//! serializers and transactions), [`Consumer`] (with [`Message`] and a
//! [`RebalanceListener`]), [`AdminClient`], [`MockCluster`] and [`Error`].
//!
//! # Example
//!
//! A round trip through librdkafka's built-in mock cluster:
//!
//! ```
//! use std::time::Duration;
//! use rdkafka_hl::{Config, Consumer, MockCluster, Producer, Record};
//!
//! let cluster = MockCluster::new(1)?;
//! let servers = cluster.bootstrap_servers();
//!
//! let producer = Producer::new(Config::new().set("bootstrap.servers", &servers)?)?;
//! let delivery = producer
//!     .send(Record::to("greetings").key("id-1").value("hello").header("lang", "en"))?
//!     .wait_timeout(Duration::from_secs(10))?;
//! assert_eq!(delivery.offset, 0);
//!
//! let consumer = Consumer::new(
//!     Config::new()
//!         .set("bootstrap.servers", &servers)?
//!         .set("group.id", "example")?
//!         .set("auto.offset.reset", "earliest")?,
//! )?;
//! consumer.subscribe(&["greetings"])?;
//! let message = loop {
//!     if let Some(message) = consumer.poll(Duration::from_secs(1)) {
//!         break message?;
//!     }
//! };
//! assert_eq!(message.key(), Some(&b"id-1"[..]));
//! assert_eq!(message.headers()[0].value.as_deref(), Some(&b"en"[..]));
//! # Ok::<(), rdkafka_hl::Error>(())
//! ```
//!
//! # Logging
//!
//! librdkafka's log lines go to the [`log`] crate with target `librdkafka`,
//! an identical line repeated within 10 s is counted rather than logged
//! again. Client errors that librdkafka reports outside any operation are
//! logged there too, or passed to the producer's
//! [`on_error`](ProducerBuilder::on_error) or the consumer's
//! [`on_error`](ConsumerBuilder::on_error) handler.
//!
//! # TLS and SASL
//!
//! The `ssl` feature builds librdkafka with TLS (`security.protocol` `SSL`
//! and `SASL_SSL`) and with the SASL mechanisms that need OpenSSL, such as
//! SCRAM-SHA-256 and SCRAM-SHA-512. It links the system's OpenSSL, which
//! pkg-config must find, so the build needs OpenSSL's headers (Debian:
//! `libssl-dev`), and the distribution's OpenSSL updates apply. The
//! `ssl-vendored` feature builds OpenSSL from source instead and links it
//! statically, for machines without those headers, at the cost of a longer
//! build and of OpenSSL fixes that need a rebuild. Neither is on by default,
//! so the default build needs no OpenSSL. Without them, [`Config::set`]
//! rejects `security.protocol=SASL_SSL` with librdkafka's reason "OpenSSL
//! not available at build time".
//!
//! A wrong password or a broker certificate that `ssl.ca.location` does not
//! verify fails the connection, and the client reports it as soon as the
//! attempt fails, not at `message.timeout.ms`. The producer's and the
//! consumer's `on_error` handlers receive it as [`ErrorCode::AUTHENTICATION`]
//! or [`ErrorCode::SSL`], with librdkafka's reason in the message. Values of
//! secret properties such as `sasl.password` are hidden in the `Debug`
//! output and the errors of [`Config`], and librdkafka 2.12.1 redacts them
//! in its configuration dump (`debug=conf`).
//!
//! ```no_run
//! use rdkafka_hl::{Config, Producer};
//!
//! # let password = String::new();
//! let config = Config::from_pairs([
//!     ("bootstrap.servers", "127.0.0.1:9093"),
//!     ("security.protocol", "SASL_SSL"),
//!     ("sasl.mechanism", "SCRAM-SHA-512"),
//!     ("sasl.username", "alice"),
//!     ("sasl.password", password.as_str()),
//!     ("ssl.ca.location", "/etc/kafka/ca.pem"),
//! ])?;
//! let producer = Producer::builder(config)
//!     .on_error(|error| eprintln!("producer error: {error}"))
//!     .build()?;
//! # drop(producer);
//! # Ok::<(), rdkafka_hl::Error>(())
//! ```

mod admin;
mod completion;
mod config;
mod consumer;
mod deliveries;
mod error;
mod event;
mod future;
mod membarrier;
mod message;
mod mock;
#[cfg(all(test, loom))]
mod model_check;
mod native;
mod partitions;
mod payload;
mod pending;
mod producer;
mod record;
mod segments;
mod serialize;
mod sync;
mod table_registry;
mod topic_cache;
mod topic_names;
mod transaction;

pub use admin::{
    AclBinding, AclBindingFilter, AclCreationResult, AclDeletionResult, AclOperation, AclPermissionType, AdminClient,
    AdminOptions, AlterConfigOp, BrokerMetadata, ClusterDescription, ClusterMetadata, ConfigEntry, ConfigResource,
    ConfigResourceResult, ConfigSource, ConsumerGroupDescription, ConsumerGroupListing, ConsumerGroupListings,
    ConsumerGroupState, ConsumerGroupType, DeletedAcl, GroupOffsets, GroupResult, IsolationLevel, ListedOffset,
    MemberDescription, NewPartitions, NewTopic, Node, OffsetSpec, PartitionMetadata, PartitionResult, ResourceConfig,
    ResourcePatternType, ResourceType, TopicMetadata, TopicResult,
};
pub use config::Config;
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerGroupMetadata, Messages, RebalanceListener, RebalanceProtocol, Recv,
    DEFAULT_CONSUMER_CLOSE_TIMEOUT,
};
pub use error::{Error, ErrorCode, KafkaError, Result};
pub use deliveries::{Delivery, DeliveryError, DeliveryFuture};
pub use future::{CommitFuture, KafkaFuture};
pub use message::{Header, Message, OwnedMessage, Timestamp};
pub use mock::{MockCluster, MAX_MOCK_PARTITIONS};
pub use partitions::{
    PartitionError, TopicPartition, TopicPartitionOffset, OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED,
};
pub use payload::{OwnedPayload, Payload};
pub use producer::{Producer, ProducerBuilder, PurgeScope, SendError, DEFAULT_CLOSE_TIMEOUT};
pub use record::Record;
pub use transaction::Recovery;
pub use serialize::{BytesSerializer, SerializingProducer, Serializer, StringSerializer};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn clients_are_send_and_sync() {
        assert_send_sync::<crate::Producer>();
        assert_send_sync::<crate::Consumer>();
        assert_send_sync::<crate::AdminClient>();
        assert_send_sync::<crate::MockCluster>();
        assert_send_sync::<crate::DeliveryFuture>();
        assert_send_sync::<crate::Error>();
    }
}
