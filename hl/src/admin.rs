//! Cluster administration.

use std::ffi::{c_char, CString};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka_ll as ll;

use crate::config::Config;
use crate::error::{timeout_ms, Error, ErrorCode, KafkaError, Result};
use crate::native::{c_buffer_to_string, optional_c_string, NativeClient, NativeQueue};

/// How much longer than the request timeout a call waits for librdkafka
/// to report the request's result or expiry.
const RESULT_GRACE: Duration = Duration::from_secs(1);

/// A client for administrative operations on a cluster.
///
/// NOTE: only topic creation is here so far. Each call waits for its
/// result on a queue of its own.
///
/// librdkafka's mock cluster does not implement the admin requests, so
/// this example needs a real broker:
///
/// ```no_run
/// use std::time::Duration;
/// use rdkafka_hl::{AdminClient, Config};
///
/// let config = Config::new().set("bootstrap.servers", "127.0.0.1:9092")?;
/// let admin = AdminClient::new(config)?;
/// admin.create_topic("audit", 4, 1, Duration::from_secs(10))?;
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
pub struct AdminClient {
    client: Arc<NativeClient>,
}

impl AdminClient {
    /// Creates an admin client.
    pub fn new(config: Config) -> Result<Self> {
        let client = NativeClient::new(ll::RD_KAFKA_PRODUCER, config.into_native())
            .map(Arc::new)
            .map_err(|reason| Error::ClientCreation { kind: "admin client", reason })?;
        Ok(Self { client })
    }

    /// Creates a topic and waits up to `timeout` for the cluster to confirm.
    ///
    /// librdkafka enforces `timeout` on the request and reports its expiry
    /// as an error of its own. This call waits one second longer for that
    /// report, then gives up with [`Error::TimedOut`].
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] with the broker's code for that topic, such as
    /// [`ErrorCode::TOPIC_ALREADY_EXISTS`]; [`Error::TimedOut`] when no
    /// result arrived in time.
    pub fn create_topic(&self, name: &str, partitions: i32, replication_factor: i32, timeout: Duration) -> Result<()> {
        self.create_topic_with_configs(name, partitions, replication_factor, &[], timeout)
    }

    /// Creates a topic with topic-level configuration entries, such as
    /// `("max.message.bytes", "1000")`, and waits up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`create_topic`](Self::create_topic); [`Error::InvalidArgument`]
    /// for an entry with a NUL byte.
    pub fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<()> {
        let c_name = CString::new(name).map_err(|_| Error::InvalidArgument {
            what: "topic name",
            value: name.to_owned(),
            reason: "it contains a NUL byte",
        })?;
        let mut errstr = [0 as c_char; 512];

        // SAFETY: the name is NUL-terminated; errstr is writable.
        let raw = unsafe {
            ll::rd_kafka_NewTopic_new(c_name.as_ptr(), partitions, replication_factor, errstr.as_mut_ptr(), errstr.len())
        };
        let new_topic = NewTopic(NonNull::new(raw).ok_or_else(|| Error::InvalidArgument {
            what: "new topic",
            value: name.to_owned(),
            reason: "librdkafka rejected its partition count or replication factor",
        })?);
        for (key, value) in configs {
            new_topic.set_config(key, value)?;
        }
        let options = AdminOptions::new(&self.client, ll::RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout)?;

        let queue = NativeQueue::new(&self.client);
        let mut topics = [new_topic.0.as_ptr()];
        // SAFETY: all handles are valid; librdkafka copies the request.
        unsafe {
            ll::rd_kafka_CreateTopics(self.client.as_ptr(), topics.as_mut_ptr(), 1, options.0.as_ptr(), queue.as_ptr())
        };

        let event = queue.poll(timeout_ms(timeout.saturating_add(RESULT_GRACE))).ok_or(Error::TimedOut {
            operation: "topic creation",
            timeout,
        })?;
        let code = event.error_code();
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            let error = KafkaError::with_message(ErrorCode::from_raw(code), event.error_string());
            return Err(Error::Kafka { operation: "create topic", error });
        }

        // SAFETY: the event is a CreateTopics result event, alive until the
        // end of this function; the result array and strings are owned by it.
        let error = unsafe {
            let result = ll::rd_kafka_event_CreateTopics_result(event.as_ptr());
            let mut count = 0usize;
            let results = ll::rd_kafka_CreateTopics_result_topics(result, &mut count);
            let first = if count > 0 { *results } else { std::ptr::null() };
            if first.is_null() {
                None
            } else {
                let code = ll::rd_kafka_topic_result_error(first);
                let message = optional_c_string(ll::rd_kafka_topic_result_error_string(first));
                (code != ll::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| {
                    let code = ErrorCode::from_raw(code);
                    KafkaError::with_message(code, message.unwrap_or_else(|| code.description().into_owned()))
                })
            }
        };
        match error {
            Some(error) => Err(Error::Kafka { operation: "create topic", error }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").finish_non_exhaustive()
    }
}

/// An owned `rd_kafka_NewTopic_t`.
struct NewTopic(NonNull<ll::rd_kafka_NewTopic_t>);

impl NewTopic {
    fn set_config(&self, key: &str, value: &str) -> Result<()> {
        let invalid = || Error::InvalidArgument {
            what: "topic config entry",
            value: format!("{key}={value}"),
            reason: "it contains a NUL byte",
        };
        let c_key = CString::new(key).map_err(|_| invalid())?;
        let c_value = CString::new(value).map_err(|_| invalid())?;

        // SAFETY: the object is owned by self; librdkafka copies the strings.
        let code = unsafe { ll::rd_kafka_NewTopic_set_config(self.0.as_ptr(), c_key.as_ptr(), c_value.as_ptr()) };
        if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(Error::kafka("set topic config", code))
        }
    }
}

impl Drop for NewTopic {
    fn drop(&mut self) {
        // SAFETY: self owns the object.
        unsafe { ll::rd_kafka_NewTopic_destroy(self.0.as_ptr()) };
    }
}

/// An owned `rd_kafka_AdminOptions_t`.
struct AdminOptions(NonNull<ll::rd_kafka_AdminOptions_t>);

impl AdminOptions {
    fn new(client: &NativeClient, operation: ll::rd_kafka_admin_op_t, timeout: Duration) -> Result<Self> {
        // SAFETY: the client is valid.
        let raw = unsafe { ll::rd_kafka_AdminOptions_new(client.as_ptr(), operation) };
        let options = Self(NonNull::new(raw).expect("rd_kafka_AdminOptions_new returned NULL"));
        let mut errstr = [0 as c_char; 512];
        let milliseconds = timeout_ms(timeout);

        // SAFETY: the options are valid; errstr is writable.
        let code = unsafe {
            ll::rd_kafka_AdminOptions_set_request_timeout(options.0.as_ptr(), milliseconds, errstr.as_mut_ptr(), errstr.len())
        };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(Error::InvalidArgument {
                what: "admin request timeout",
                value: format!("{timeout:?}"),
                reason: "librdkafka rejected it",
            })
            .inspect_err(|_| log::debug!("{}", c_buffer_to_string(&errstr)));
        }

        // The broker waits this long for the operation itself to finish.
        // SAFETY: as above.
        let code = unsafe {
            ll::rd_kafka_AdminOptions_set_operation_timeout(options.0.as_ptr(), milliseconds, errstr.as_mut_ptr(), errstr.len())
        };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            log::debug!("operation timeout not set: {}", c_buffer_to_string(&errstr));
        }
        Ok(options)
    }
}

impl Drop for AdminOptions {
    fn drop(&mut self) {
        // SAFETY: self owns the object.
        unsafe { ll::rd_kafka_AdminOptions_destroy(self.0.as_ptr()) };
    }
}
