//! Cluster metadata: brokers, topics, partitions and their replicas.

use std::ffi::CStr;
use std::ptr;
use std::time::Duration;

use rdkafka_ll as ll;

use super::topics::c_string;
use super::AdminClient;
use crate::error::{timeout_ms, Error, ErrorCode, KafkaError, Result};

/// The cluster as its metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// The cluster id, if the brokers report one.
    pub cluster_id: Option<String>,
    /// The id of the controller broker, if known.
    pub controller_id: Option<i32>,
    /// The brokers.
    pub brokers: Vec<BrokerMetadata>,
    /// The topics asked for, or all of them.
    pub topics: Vec<TopicMetadata>,
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The broker id.
    pub id: i32,
    /// The host name it advertises.
    pub host: String,
    /// The port it advertises.
    pub port: u16,
}

/// A topic of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The error for this topic, such as
    /// [`ErrorCode::UNKNOWN_TOPIC_OR_PARTITION`], or `None`.
    pub error: Option<KafkaError>,
    /// The partitions, by id.
    pub partitions: Vec<PartitionMetadata>,
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The partition id.
    pub id: i32,
    /// The broker id of the leader, or -1 when there is none.
    pub leader: i32,
    /// The broker ids of the replicas.
    pub replicas: Vec<i32>,
    /// The broker ids of the in-sync replicas.
    pub in_sync_replicas: Vec<i32>,
    /// The error for this partition, such as a missing leader, or `None`.
    pub error: Option<KafkaError>,
}

impl AdminClient {
    /// Fetches the cluster's metadata: for `topic` only, or for every topic
    /// when it is `None`. Blocks up to `timeout`, because librdkafka offers
    /// this request only as a blocking call.
    pub fn metadata(&self, topic: Option<&str>, timeout: Duration) -> Result<ClusterMetadata> {
        let topic_handle = match topic {
            Some(name) => {
                let c_name = c_string(name, "topic name")?;
                // SAFETY: the client is valid; the name is NUL-terminated.
                let raw = unsafe { ll::rd_kafka_topic_new(self.client_ptr(), c_name.as_ptr(), ptr::null_mut()) };
                if raw.is_null() {
                    return Err(Error::InvalidArgument { what: "topic name", value: name.to_owned(), reason: "librdkafka rejected it" });
                }
                Some(TopicHandle(raw))
            }
            None => None,
        };
        let only = topic_handle.as_ref().map_or(ptr::null_mut(), |handle| handle.0);

        let mut raw: *const ll::rd_kafka_metadata = ptr::null();
        // SAFETY: the client and topic handle are valid; the metadata
        // returned is ours to destroy.
        let code = unsafe {
            ll::rd_kafka_metadata(self.client_ptr(), i32::from(only.is_null()), only, &mut raw, timeout_ms(timeout))
        };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(Error::kafka("metadata", code));
        }
        // SAFETY: the call succeeded, so raw is valid until destroyed below.
        let mut metadata = unsafe { read_metadata(&*raw) };
        // SAFETY: we own the metadata and do not use it again.
        unsafe { ll::rd_kafka_metadata_destroy(raw) };

        // The cluster and controller ids come from the metadata just
        // fetched, so these calls do not wait.
        // SAFETY: the client is valid; the id string is ours to free.
        unsafe {
            let id = ll::rd_kafka_clusterid(self.client_ptr(), 0);
            if !id.is_null() {
                metadata.cluster_id = Some(CStr::from_ptr(id).to_string_lossy().into_owned());
                ll::rd_kafka_mem_free(self.client_ptr(), id.cast());
            }
            let controller = ll::rd_kafka_controllerid(self.client_ptr(), 0);
            metadata.controller_id = (controller >= 0).then_some(controller);
        }
        Ok(metadata)
    }
}

/// An owned `rd_kafka_topic_t`.
struct TopicHandle(*mut ll::rd_kafka_topic_t);

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: self owns this reference to the topic.
        unsafe { ll::rd_kafka_topic_destroy(self.0) };
    }
}

/// Copies librdkafka's metadata.
///
/// # Safety
///
/// `raw` must be valid metadata returned by `rd_kafka_metadata`.
unsafe fn read_metadata(raw: &ll::rd_kafka_metadata) -> ClusterMetadata {
    // SAFETY: the arrays have the lengths librdkafka stored next to them,
    // and every string is NUL-terminated; all live as long as `raw`.
    unsafe {
        let brokers = array(raw.brokers, raw.broker_cnt)
            .iter()
            .map(|broker| BrokerMetadata {
                id: broker.id,
                host: CStr::from_ptr(broker.host).to_string_lossy().into_owned(),
                port: u16::try_from(broker.port).unwrap_or(0),
            })
            .collect();
        let topics = array(raw.topics, raw.topic_cnt)
            .iter()
            .map(|topic| TopicMetadata {
                name: CStr::from_ptr(topic.topic).to_string_lossy().into_owned(),
                error: error_of(topic.err),
                partitions: array(topic.partitions, topic.partition_cnt)
                    .iter()
                    .map(|partition| PartitionMetadata {
                        id: partition.id,
                        leader: partition.leader,
                        replicas: array(partition.replicas, partition.replica_cnt).to_vec(),
                        in_sync_replicas: array(partition.isrs, partition.isr_cnt).to_vec(),
                        error: error_of(partition.err),
                    })
                    .collect(),
            })
            .collect();
        ClusterMetadata {
            cluster_id: None,
            controller_id: None,
            brokers,
            topics,
        }
    }
}

/// Borrows a C array as a slice, empty for NULL or a count below 1.
///
/// # Safety
///
/// A non-NULL `data` must point to `count` valid elements for `'a`.
unsafe fn array<'a, T>(data: *mut T, count: i32) -> &'a [T] {
    match usize::try_from(count) {
        Ok(count) if count > 0 && !data.is_null() => {
            // SAFETY: the caller guarantees `count` valid elements.
            unsafe { std::slice::from_raw_parts(data, count) }
        }
        _ => &[],
    }
}

fn error_of(code: ll::rd_kafka_resp_err_t) -> Option<KafkaError> {
    (code != ll::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| KafkaError::from_code(ErrorCode::from_raw(code)))
}
