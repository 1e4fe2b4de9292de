//! Errors of this crate.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka_ll as ll;

/// A result whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A librdkafka or Kafka protocol error code (`rd_kafka_resp_err_t`).
///
/// It wraps the raw integer, so codes that librdkafka adds after this crate
/// was written are kept as they are. Negative codes are librdkafka's own
/// (their names start with `_`), positive ones come from the broker.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(i32);

impl ErrorCode {
    /// The local queue of messages to send is full (`_QUEUE_FULL`).
    pub const QUEUE_FULL: Self = Self(ll::RD_KAFKA_RESP_ERR__QUEUE_FULL);
    /// A message exceeds `message.max.bytes` (`MSG_SIZE_TOO_LARGE`).
    pub const MESSAGE_SIZE_TOO_LARGE: Self = Self(ll::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    /// The message was not delivered within `message.timeout.ms` (`_MSG_TIMED_OUT`).
    pub const MESSAGE_TIMED_OUT: Self = Self(ll::RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    /// The message was purged from the local queue (`_PURGE_QUEUE`).
    pub const PURGE_QUEUE: Self = Self(ll::RD_KAFKA_RESP_ERR__PURGE_QUEUE);
    /// The message was purged while in flight (`_PURGE_INFLIGHT`).
    pub const PURGE_INFLIGHT: Self = Self(ll::RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
    /// There were no offsets to commit (`_NO_OFFSET`).
    pub const NO_OFFSET: Self = Self(ll::RD_KAFKA_RESP_ERR__NO_OFFSET);
    /// The end of a partition was reached (`_PARTITION_EOF`).
    pub const PARTITION_EOF: Self = Self(ll::RD_KAFKA_RESP_ERR__PARTITION_EOF);
    /// The topic is not known to the cluster (`UNKNOWN_TOPIC_OR_PART`).
    pub const UNKNOWN_TOPIC_OR_PARTITION: Self = Self(ll::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    /// The partition is not known to the cluster (`_UNKNOWN_PARTITION`).
    pub const UNKNOWN_PARTITION: Self = Self(ll::RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION);
    /// The topic already exists (`TOPIC_ALREADY_EXISTS`).
    pub const TOPIC_ALREADY_EXISTS: Self = Self(ll::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
    /// The client hit a fatal error and cannot go on (`_FATAL`).
    pub const FATAL: Self = Self(ll::RD_KAFKA_RESP_ERR__FATAL);
    /// An argument passed to librdkafka was invalid (`_INVALID_ARG`).
    pub const INVALID_ARGUMENT: Self = Self(ll::RD_KAFKA_RESP_ERR__INVALID_ARG);
    /// A local operation timed out (`_TIMED_OUT`).
    pub const TIMED_OUT: Self = Self(ll::RD_KAFKA_RESP_ERR__TIMED_OUT);
    /// SASL authentication with a broker failed, for example because of a
    /// wrong password (`_AUTHENTICATION`).
    pub const AUTHENTICATION: Self = Self(ll::RD_KAFKA_RESP_ERR__AUTHENTICATION);
    /// A TLS error, such as a broker certificate that the configured CA
    /// does not verify (`_SSL`).
    pub const SSL: Self = Self(ll::RD_KAFKA_RESP_ERR__SSL);

    /// Wraps a raw `rd_kafka_resp_err_t` value.
    pub const fn from_raw(code: i32) -> Self {
        Self(code)
    }

    /// Returns the raw `rd_kafka_resp_err_t` value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// Returns the code's librdkafka name without the `RD_KAFKA_RESP_ERR_`
    /// prefix, such as `_QUEUE_FULL` or `UNKNOWN_TOPIC_OR_PART`, or
    /// `ERR_<code>?` for a code this librdkafka does not know.
    pub fn name(self) -> Cow<'static, str> {
        match known_codes().get(&self.0) {
            Some(&(name, _)) => Cow::Borrowed(name),
            None => Cow::Owned(format!("ERR_{}?", self.0)),
        }
    }

    /// Returns librdkafka's human-readable description of the code.
    pub fn description(self) -> Cow<'static, str> {
        match known_codes().get(&self.0) {
            Some(&(_, description)) => Cow::Borrowed(description),
            None => Cow::Owned(format!("Unknown error code {}", self.0)),
        }
    }

    /// Returns whether this is the absence of an error (`NO_ERROR`).
    pub const fn is_ok(self) -> bool {
        self.0 == ll::RD_KAFKA_RESP_ERR_NO_ERROR
    }
}

/// librdkafka's table of error codes: name and description by code.
///
/// `rd_kafka_err2name` and `rd_kafka_err2str` cannot be used instead,
/// because for codes missing from the table they format into one
/// thread-local buffer, which the next call overwrites (librdkafka 2.12.1).
fn known_codes() -> &'static HashMap<i32, (&'static str, &'static str)> {
    static CODES: OnceLock<HashMap<i32, (&'static str, &'static str)>> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut table: *const ll::rd_kafka_err_desc = std::ptr::null();
        let mut count = 0usize;
        // SAFETY: the out-pointers are valid; librdkafka returns its static
        // table, which lives as long as the process.
        unsafe { ll::rd_kafka_get_err_descs(&mut table, &mut count) };
        if table.is_null() {
            return HashMap::new();
        }

        // SAFETY: the table has `count` entries and is never freed.
        let entries = unsafe { std::slice::from_raw_parts(table, count) };
        entries
            .iter()
            .filter(|entry| !entry.name.is_null())
            .map(|entry| {
                // SAFETY: the strings of the static table are NUL-terminated
                // and never freed; a NULL description is read as empty.
                let (name, description) = unsafe {
                    let name = CStr::from_ptr(entry.name).to_str().unwrap_or("?");
                    let description = if entry.desc.is_null() {
                        ""
                    } else {
                        CStr::from_ptr(entry.desc).to_str().unwrap_or("?")
                    };
                    (name, description)
                };
                (entry.code, (name, description))
            })
            .collect()
    })
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An error reported by librdkafka or the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    /// The error code.
    pub code: ErrorCode,
    /// The message: librdkafka's text for this occurrence where it gives
    /// one, else the description of the code.
    pub message: String,
    /// Whether the client is unusable after this error.
    pub fatal: bool,
    /// Whether the same operation may succeed if retried.
    pub retriable: bool,
    /// Whether the current transaction must be aborted.
    pub transaction_requires_abort: bool,
}

impl KafkaError {
    /// Creates an error with the code's own description as its message.
    pub fn from_code(code: ErrorCode) -> Self {
        Self {
            code,
            message: code.description().into_owned(),
            fatal: code.raw() == ll::RD_KAFKA_RESP_ERR__FATAL,
            retriable: false,
            transaction_requires_abort: false,
        }
    }

    /// Creates an error with its own message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::from_code(code)
        }
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)?;
        if self.fatal {
            f.write_str(" [fatal]")?;
        }
        Ok(())
    }
}

impl std::error::Error for KafkaError {}

/// The errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration property was rejected.
    #[error("invalid configuration property {key}={value}: {reason}")]
    Config {
        /// The property name.
        key: String,
        /// The value, or `[hidden]` for secrets such as `sasl.password`.
        value: String,
        /// The reason for the rejection, in librdkafka's words where it gave some.
        reason: String,
    },

    /// librdkafka failed to create a client from a configuration.
    #[error("failed to create the Kafka {kind}: {reason}")]
    ClientCreation {
        /// `producer`, `consumer`, `admin client` or `mock cluster`.
        kind: &'static str,
        /// librdkafka's message.
        reason: String,
    },

    /// An argument cannot be passed to librdkafka.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        /// The kind of argument, such as `topic name`.
        what: &'static str,
        /// The argument, lossily converted to text.
        value: String,
        /// The reason it is invalid.
        reason: &'static str,
    },

    /// librdkafka or the broker reported an error.
    #[error("{operation} failed: {error}")]
    Kafka {
        /// The operation the caller was doing, such as `send` or `commit`.
        operation: &'static str,
        /// The error.
        #[source]
        error: KafkaError,
    },

    /// A serializer failed or panicked, so nothing was sent.
    #[error("failed to serialize the {part}: {reason}")]
    Serialization {
        /// `key` or `value`.
        part: &'static str,
        /// The serializer's error, or its panic message.
        reason: String,
    },

    /// A consumed message carried an error instead of data, such as the end
    /// of a partition ([`ErrorCode::PARTITION_EOF`]).
    #[error("consuming {topic} [{partition}] at offset {offset} failed: {error}")]
    Consume {
        /// The topic, or empty for client-wide errors.
        topic: String,
        /// The partition, or -1 for client-wide errors.
        partition: i32,
        /// The offset the error is about, or a negative value.
        offset: i64,
        /// The error.
        error: KafkaError,
    },

    /// An operation failed for some partitions.
    #[error("{operation} failed for {} partition(s), first {}", failed.len(), describe_first(failed))]
    Partitions {
        /// The operation, such as `commit` or `seek`.
        operation: &'static str,
        /// Each failed partition, with its error. Never empty.
        failed: Vec<crate::PartitionError>,
    },

    /// An operation did not finish within its timeout.
    #[error("timed out after {timeout:?} waiting for {operation}")]
    TimedOut {
        /// The operation that was waited for.
        operation: &'static str,
        /// The timeout.
        timeout: Duration,
    },

    /// A call on the client's own event thread (from a waker or handler)
    /// would wait for events that only that thread can deliver.
    #[error("{operation} cannot wait on the client's event thread, which delivers what it waits for; call it from another thread")]
    OnEventThread {
        /// The call, such as `flush`.
        operation: &'static str,
    },

    /// The client was closed before the operation finished.
    #[error("{operation} did not finish: the client was closed")]
    Closed {
        /// The operation that was interrupted.
        operation: &'static str,
    },
}

impl Error {
    /// Returns the librdkafka error code, for errors that have one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Kafka { error, .. } | Error::Consume { error, .. } => Some(error.code),
            Error::Partitions { failed, .. } => failed.first().map(|entry| entry.error.code),
            _ => None,
        }
    }

    /// Returns whether the client that returned this error is unusable.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Kafka { error, .. } if error.fatal)
    }

    pub(crate) fn kafka(operation: &'static str, code: i32) -> Self {
        Error::Kafka {
            operation,
            error: KafkaError::from_code(ErrorCode(code)),
        }
    }
}

fn describe_first(failed: &[crate::PartitionError]) -> String {
    failed
        .first()
        .map(|entry| format!("{} [{}]: {}", entry.topic, entry.partition, entry.error))
        .unwrap_or_default()
}

/// Turns a `rd_kafka_resp_err_t` result of `operation` into a `Result`.
pub(crate) fn check_code(code: ll::rd_kafka_resp_err_t, operation: &'static str) -> Result<()> {
    if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(Error::kafka(operation, code))
    }
}

/// Turns a `rd_kafka_error_t *` result of `operation` (NULL for success)
/// into a `Result`, destroying the error object.
///
/// # Safety
///
/// `error` must be NULL or a valid error object that the caller owns and
/// does not use afterwards.
pub(crate) unsafe fn check_error(error: *mut ll::rd_kafka_error_t, operation: &'static str) -> Result<()> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: the caller passes an owned, valid error object.
    let error = unsafe { take_rd_kafka_error(error) };
    Err(Error::Kafka { operation, error })
}

/// Converts an owned `rd_kafka_error_t` into a [`KafkaError`] and destroys it.
///
/// # Safety
///
/// `error` must be a valid `rd_kafka_error_t` that the caller owns; it is
/// destroyed here and must not be used afterwards.
pub(crate) unsafe fn take_rd_kafka_error(error: *mut ll::rd_kafka_error_t) -> KafkaError {
    // SAFETY: the caller passes a valid, owned error object; the string it
    // returns lives until rd_kafka_error_destroy below.
    let result = unsafe {
        KafkaError {
            code: ErrorCode(ll::rd_kafka_error_code(error)),
            message: CStr::from_ptr(ll::rd_kafka_error_string(error))
                .to_string_lossy()
                .into_owned(),
            fatal: ll::rd_kafka_error_is_fatal(error) != 0,
            retriable: ll::rd_kafka_error_is_retriable(error) != 0,
            transaction_requires_abort: ll::rd_kafka_error_txn_requires_abort(error) != 0,
        }
    };

    // SAFETY: the caller owns the error and does not use it again.
    unsafe { ll::rd_kafka_error_destroy(error) };
    result
}

/// Converts a duration into librdkafka's millisecond timeout, saturating at
/// `i32::MAX` so that a huge duration never wraps into a negative value,
/// which librdkafka reads as "wait forever".
pub(crate) fn timeout_ms(timeout: Duration) -> i32 {
    timeout.as_millis().min(i32::MAX as u128) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "calls librdkafka, which Miri cannot run")]
    fn error_code_names_come_from_librdkafka() {
        assert_eq!(ErrorCode::QUEUE_FULL.name(), "_QUEUE_FULL");
        assert_eq!(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.name(), "UNKNOWN_TOPIC_OR_PART");
        assert_eq!(ErrorCode::from_raw(0).name(), "NO_ERROR");
    }

    #[test]
    #[cfg_attr(miri, ignore = "calls librdkafka, which Miri cannot run")]
    fn unknown_error_code_keeps_raw_value() {
        let code = ErrorCode::from_raw(-12345);

        assert_eq!(code.raw(), -12345);
        assert!(!code.name().is_empty());
        assert!(!code.is_ok());
    }

    #[test]
    fn timeout_ms_saturates_instead_of_wrapping() {
        assert_eq!(timeout_ms(Duration::ZERO), 0);
        assert_eq!(timeout_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(timeout_ms(Duration::MAX), i32::MAX);
    }
}
