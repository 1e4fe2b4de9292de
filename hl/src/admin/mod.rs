//! Cluster administration.
//!
//! Every admin request runs through the same pairing as a producer's
//! deliveries: the request is registered in a [`Pending`] table under an
//! id, the id travels as the request's opaque, and the client's event
//! thread takes the registration back out when the result event arrives,
//! parses the event and resolves the request's [`KafkaFuture`]. A request
//! that gets no result (the client is dropped first) resolves with
//! [`Error::Closed`].

mod acls;
mod cluster;
mod configs;
mod group_offsets;
mod groups;
mod metadata;
mod records;
mod results;
mod topics;

use std::ffi::c_char;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka_ll as ll;

use crate::completion::Completion;
use crate::config::Config;
use crate::error::{timeout_ms, Error, ErrorCode, KafkaError, Result};
use crate::event::{handle_common_event, EventThread};
use crate::future::{KafkaFuture, Slot};
use crate::native::{c_buffer_to_string, NativeClient, NativeEvent, NativeQueue};
use crate::pending::Pending;

pub use acls::{
    AclBinding, AclBindingFilter, AclCreationResult, AclDeletionResult, AclOperation, AclPermissionType, DeletedAcl,
    ResourcePatternType, ResourceType,
};
pub use cluster::{ClusterDescription, Node};
pub use configs::{AlterConfigOp, ConfigEntry, ConfigResource, ConfigResourceResult, ConfigSource, ResourceConfig};
pub use group_offsets::GroupOffsets;
pub use groups::{
    ConsumerGroupDescription, ConsumerGroupListing, ConsumerGroupListings, ConsumerGroupState, ConsumerGroupType,
    GroupResult, MemberDescription,
};
pub use metadata::{BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata};
pub use records::{IsolationLevel, ListedOffset, OffsetSpec};
pub use results::PartitionResult;
pub use topics::{NewPartitions, NewTopic, TopicResult};

/// How much longer than the request timeout a blocking convenience call
/// waits for librdkafka to report the request's result or expiry.
const RESULT_GRACE: Duration = Duration::from_secs(1);

/// Parses a result event into the request's typed result.
type Resolver = Box<dyn FnOnce(Result<NativeEvent>) + Send>;

/// Options of an admin request.
///
/// ```
/// use std::time::Duration;
/// use rdkafka_hl::AdminOptions;
///
/// let options = AdminOptions::new()
///     .request_timeout(Duration::from_secs(5))
///     .validate_only(true);
/// assert_eq!(options.timeout(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct AdminOptions {
    request_timeout: Duration,
    operation_timeout: Option<Duration>,
    validate_only: bool,
}

impl AdminOptions {
    /// Options with a 30 s request timeout, the operation timeout equal to
    /// it, and validation off.
    pub fn new() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            operation_timeout: None,
            validate_only: false,
        }
    }

    /// Sets how long the whole request may take, including retries.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long the broker waits for the operation to finish (topics
    /// to be created on all replicas, say) before it responds. Defaults to
    /// the request timeout.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Makes the broker only validate the request (topic and partition
    /// creation, config changes).
    pub fn validate_only(mut self, validate_only: bool) -> Self {
        self.validate_only = validate_only;
        self
    }

    /// Returns the request timeout.
    pub fn timeout(&self) -> Duration {
        self.request_timeout
    }
}

impl Default for AdminOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A client for administrative operations on a cluster.
///
/// Each operation returns a [`KafkaFuture`] of its typed result, bounded by
/// the request timeout of its [`AdminOptions`]; results that list items
/// (topics, groups) carry an error per item. librdkafka's mock cluster
/// implements only the offset requests (list offsets, and listing and
/// altering group offsets), not topic creation, so this example needs a
/// real broker:
///
/// ```no_run
/// use std::time::Duration;
/// use rdkafka_hl::{AdminClient, AdminOptions, Config, NewTopic};
///
/// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
/// let results = admin
///     .create_topics(&[NewTopic::new("audit", 4, 1).config("retention.ms", "60000")], &AdminOptions::new())?
///     .wait()?;
/// assert!(results[0].error.is_none());
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct AdminClient {
    events: EventThread,
    pending: Arc<Pending<Resolver>>,
    queue: Arc<NativeQueue>,
    client: Arc<NativeClient>,
}

impl AdminClient {
    /// Creates an admin client.
    pub fn new(mut config: Config) -> Result<Self> {
        config.set_in_place("log.queue", "true")?;
        // The client is a producer inside, which would otherwise ask brokers
        // with auto.create.topics.enable to create a topic it looks up.
        config.set_in_place("allow.auto.create.topics", "false")?;
        let client = NativeClient::new(ll::RD_KAFKA_PRODUCER, config.into_native())
            .map(Arc::new)
            .map_err(|reason| Error::ClientCreation { kind: "admin client", reason })?;
        let queue = Arc::new(NativeQueue::new(&client));
        // SAFETY: both handles are valid; log.queue is enabled above.
        unsafe { ll::rd_kafka_set_log_queue(client.as_ptr(), queue.as_ptr()) };

        let pending = Arc::new(Pending::new());
        let handler_pending = Arc::clone(&pending);
        let events = EventThread::spawn("rdkafka-admin", Arc::clone(&queue), move |event| {
            if let Some(event) = handle_common_event(event) {
                resolve_request(&handler_pending, event);
            }
        })
        .map_err(|error| Error::ClientCreation {
            kind: "admin client",
            reason: format!("failed to start the event thread: {error}"),
        })?;

        Ok(Self {
            events,
            pending,
            queue,
            client,
        })
    }

    /// Registers a request, then starts it with `start(options, queue)`.
    /// `parse` turns its result event into `T`, after the event's own
    /// error was checked.
    fn request<T: Send + 'static>(
        &self,
        operation: &'static str,
        api: ll::rd_kafka_admin_op_t,
        options: &AdminOptions,
        parse: fn(&NativeEvent) -> Result<T>,
        start: impl FnOnce(*const ll::rd_kafka_AdminOptions_t, *mut ll::rd_kafka_queue_t),
    ) -> Result<KafkaFuture<T>> {
        let slot: Slot<T> = Completion::new();
        let resolver: Resolver = {
            let slot = Arc::clone(&slot);
            Box::new(move |event: Result<NativeEvent>| {
                let result = event.and_then(|event| {
                    check_event(&event, operation)?;
                    parse(&event)
                });
                slot.resolve(result);
            })
        };

        // Invariant 1 of the pending table: register before the request
        // can produce its result.
        let id = self
            .pending
            .register(resolver)
            .map_err(|_| Error::Closed { operation })?;
        let native = match NativeAdminOptions::new(&self.client, api, options, id) {
            Ok(native) => native,
            Err(error) => {
                self.pending.take(id);
                return Err(error);
            }
        };

        start(native.0.as_ptr(), self.queue.as_ptr());
        Ok(KafkaFuture::new(slot, operation, self.events.thread_id()))
    }

    pub(crate) fn client_ptr(&self) -> *mut ll::rd_kafka_t {
        self.client.as_ptr()
    }
}

impl Drop for AdminClient {
    /// Stops the event thread and resolves every request still waiting
    /// with [`Error::Closed`].
    fn drop(&mut self) {
        self.events.stop();
        for resolver in self.pending.close() {
            resolver(Err(Error::Closed { operation: "admin request" }));
        }
    }
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("pending_requests", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn resolve_request(pending: &Pending<Resolver>, event: NativeEvent) {
    // Invariant 3: the request is found by the id in the event's opaque.
    let id = event.opaque() as u64;
    match pending.take(id) {
        Some(resolver) => resolver(Ok(event)),
        None => log::error!("admin result (event type {}) for unknown request id {id}", event.event_type()),
    }
}

/// Fails with the event's own error, which covers the whole request.
fn check_event(event: &NativeEvent, operation: &'static str) -> Result<()> {
    let code = event.error_code();
    if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    let code = ErrorCode::from_raw(code);
    let error = KafkaError::with_message(code, event.error_string());
    if code == ErrorCode::TIMED_OUT {
        log::debug!("admin request {operation} timed out: {error}");
    }
    Err(Error::Kafka { operation, error })
}

/// An owned `rd_kafka_AdminOptions_t`.
struct NativeAdminOptions(NonNull<ll::rd_kafka_AdminOptions_t>);

impl NativeAdminOptions {
    fn new(client: &NativeClient, api: ll::rd_kafka_admin_op_t, options: &AdminOptions, id: u64) -> Result<Self> {
        // SAFETY: the client is valid.
        let raw = unsafe { ll::rd_kafka_AdminOptions_new(client.as_ptr(), api) };
        let native = Self(NonNull::new(raw).expect("rd_kafka_AdminOptions_new returned NULL"));
        let request_ms = timeout_ms(options.request_timeout);
        let operation_ms = timeout_ms(options.operation_timeout.unwrap_or(options.request_timeout));

        // SAFETY: the options object is valid and owned by `native`.
        unsafe { ll::rd_kafka_AdminOptions_set_opaque(native.0.as_ptr(), id as *mut _) };
        native.apply("request timeout", |options, errstr, size| {
            // SAFETY: valid options and error buffer, see `apply`.
            unsafe { ll::rd_kafka_AdminOptions_set_request_timeout(options, request_ms, errstr, size) }
        })?;
        // Not every request has an operation timeout or a validate-only
        // flag; librdkafka rejects them there, which is not an error here.
        let _ = native.apply("operation timeout", |options, errstr, size| {
            // SAFETY: valid options and error buffer, see `apply`.
            unsafe { ll::rd_kafka_AdminOptions_set_operation_timeout(options, operation_ms, errstr, size) }
        });
        if options.validate_only {
            native.apply("validate only", |options, errstr, size| {
                // SAFETY: valid options and error buffer, see `apply`.
                unsafe { ll::rd_kafka_AdminOptions_set_validate_only(options, 1, errstr, size) }
            })?;
        }
        Ok(native)
    }

    /// Runs a setter with the options and an error buffer.
    fn apply(
        &self,
        what: &'static str,
        setter: impl FnOnce(*mut ll::rd_kafka_AdminOptions_t, *mut c_char, usize) -> ll::rd_kafka_resp_err_t,
    ) -> Result<()> {
        let mut errstr = [0 as c_char; 512];
        let code = setter(self.0.as_ptr(), errstr.as_mut_ptr(), errstr.len());
        if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Ok(());
        }
        Err(Error::Kafka {
            operation: what,
            error: KafkaError::with_message(ErrorCode::from_raw(code), c_buffer_to_string(&errstr)),
        })
    }
}

impl Drop for NativeAdminOptions {
    fn drop(&mut self) {
        // SAFETY: self owns the object; librdkafka copied it into the
        // request.
        unsafe { ll::rd_kafka_AdminOptions_destroy(self.0.as_ptr()) };
    }
}

/// Waits for `future` a little longer than the request timeout, so that
/// librdkafka's own timeout error arrives first.
fn wait_for<T>(future: KafkaFuture<T>, options: &AdminOptions) -> Result<T> {
    future.wait_timeout(options.request_timeout.saturating_add(RESULT_GRACE))
}
