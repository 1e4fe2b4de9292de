//! librdkafka's built-in mock Kafka cluster, for examples and tests.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka_ll as ll;

use crate::config::Config;
use crate::error::{check_code, Error, Result};
use crate::native::NativeClient;

/// The maximum number of partitions [`MockCluster::create_topic`] accepts
/// for one topic.
/// librdkafka allocates every mock partition up front and aborts the
/// process when that fails, so counts are kept to a size that fits.
pub const MAX_MOCK_PARTITIONS: i32 = 100_000;

/// A mock Kafka cluster running inside this process, on loopback ports.
///
/// It speaks the Kafka protocol, so any client (of this crate or another)
/// can connect to [`bootstrap_servers`](Self::bootstrap_servers). It keeps
/// at most 100,000 messages or 5 MiB per partition and drops older ones
/// (measured with librdkafka 2.12.1), and its consumer groups wait 3 s
/// before their first rebalance unless
/// [`set_group_initial_rebalance_delay`](Self::set_group_initial_rebalance_delay)
/// lowers it.
///
/// ```
/// use rdkafka_hl::MockCluster;
///
/// let cluster = MockCluster::new(3)?;
/// cluster.create_topic("orders", 6, 1)?;
/// assert!(cluster.bootstrap_servers().starts_with("127.0.0.1:"));
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct MockCluster {
    cluster: NonNull<ll::rd_kafka_mock_cluster_t>,
    brokers: i32,
    // The client that owns the cluster's thread; destroyed after it.
    _owner: NativeClient,
}

// SAFETY: the mock cluster's functions post requests to its own thread and
// may be called from any thread.
unsafe impl Send for MockCluster {}
// SAFETY: as above.
unsafe impl Sync for MockCluster {}

impl MockCluster {
    /// Starts a cluster of `brokers` brokers.
    pub fn new(brokers: usize) -> Result<Self> {
        let count = i32::try_from(brokers).ok().filter(|&count| count > 0).ok_or(
            Error::InvalidArgument {
                what: "broker count",
                value: brokers.to_string(),
                reason: "it must be between 1 and i32::MAX",
            },
        )?;

        // The owning client never connects, so its notice that it has no
        // `bootstrap.servers` is noise; errors are still logged.
        let config = Config::new().set("log_level", "3")?;
        let owner = NativeClient::new(ll::RD_KAFKA_PRODUCER, config.into_native())
            .map_err(|reason| Error::ClientCreation { kind: "producer", reason })?;

        // SAFETY: the owner handle is valid and outlives the cluster.
        let raw = unsafe { ll::rd_kafka_mock_cluster_new(owner.as_ptr(), count) };
        let cluster = NonNull::new(raw).ok_or(Error::ClientCreation {
            kind: "mock cluster",
            reason: "rd_kafka_mock_cluster_new failed (see the librdkafka log)".to_owned(),
        })?;

        Ok(Self {
            cluster,
            brokers: count,
            _owner: owner,
        })
    }

    /// Returns the `bootstrap.servers` value for clients of this cluster.
    pub fn bootstrap_servers(&self) -> String {
        // SAFETY: the cluster is valid; the string lives as long as it.
        let servers = unsafe { CStr::from_ptr(ll::rd_kafka_mock_cluster_bootstraps(self.cluster.as_ptr())) };
        servers.to_string_lossy().into_owned()
    }

    /// Creates a topic with `partitions` partitions (1 to
    /// [`MAX_MOCK_PARTITIONS`]), each with `replication_factor` replicas (1
    /// to the number of brokers).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty name, a name with a NUL byte,
    /// or a count out of range, which librdkafka would not reject but fail
    /// on, some by aborting the process.
    pub fn create_topic(&self, name: &str, partitions: i32, replication_factor: i32) -> Result<()> {
        let invalid = |what, value: String, reason| Error::InvalidArgument { what, value, reason };
        if name.is_empty() {
            return Err(invalid("topic name", String::new(), "it is empty"));
        }
        if !(1..=MAX_MOCK_PARTITIONS).contains(&partitions) {
            return Err(invalid("partition count", partitions.to_string(), "it must be between 1 and 100,000"));
        }
        if !(1..=self.brokers).contains(&replication_factor) {
            return Err(invalid(
                "replication factor",
                replication_factor.to_string(),
                "it must be between 1 and the number of mock brokers",
            ));
        }
        let c_name = CString::new(name).map_err(|_| invalid("topic name", name.to_owned(), "it contains a NUL byte"))?;
        // SAFETY: the cluster is valid; the name is NUL-terminated.
        let code = unsafe {
            ll::rd_kafka_mock_topic_create(self.cluster.as_ptr(), c_name.as_ptr(), partitions, replication_factor)
        };
        check_code(code, "create mock topic")
    }

    /// Takes broker `broker_id` (numbered from 1) down: it closes its
    /// connections and refuses new ones until [`set_broker_up`](Self::set_broker_up).
    pub fn set_broker_down(&self, broker_id: i32) -> Result<()> {
        // SAFETY: the cluster is valid.
        let code = unsafe { ll::rd_kafka_mock_broker_set_down(self.cluster.as_ptr(), broker_id) };
        check_code(code, "set mock broker down")
    }

    /// Brings broker `broker_id` back up.
    pub fn set_broker_up(&self, broker_id: i32) -> Result<()> {
        // SAFETY: the cluster is valid.
        let code = unsafe { ll::rd_kafka_mock_broker_set_up(self.cluster.as_ptr(), broker_id) };
        check_code(code, "set mock broker up")
    }

    /// Returns the raw `rd_kafka_mock_cluster_t`, for the fault injection
    /// functions of `rdkafka-ll` (`rd_kafka_mock_*`) that this type does
    /// not wrap. It stays valid while `self` lives.
    pub fn as_ptr(&self) -> *mut ll::rd_kafka_mock_cluster_t {
        self.cluster.as_ptr()
    }

    /// Sets how long new consumer groups wait before their first rebalance
    /// (3 s by default).
    pub fn set_group_initial_rebalance_delay(&self, delay: Duration) {
        let milliseconds = crate::error::timeout_ms(delay);
        // SAFETY: the cluster is valid.
        unsafe { ll::rd_kafka_mock_group_initial_rebalance_delay_ms(self.cluster.as_ptr(), milliseconds) };
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // SAFETY: self owns the cluster, whose owner client is still alive.
        unsafe { ll::rd_kafka_mock_cluster_destroy(self.cluster.as_ptr()) };
    }
}

impl std::fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCluster")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}
