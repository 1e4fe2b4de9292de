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
//! [`on_error`](ProducerBuilder::on_error) handler.

mod admin;
mod completion;
mod config;
mod consumer;
mod deliveries;
mod error;
mod event;
mod future;
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
mod serialize;
mod sync;
mod table_registry;
mod topic_cache;
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
