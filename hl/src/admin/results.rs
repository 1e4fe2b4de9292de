//! Per-partition results shared by several admin requests, and copies of
//! the objects that librdkafka's result events contain.

use std::ffi::c_char;

use rdkafka_ll as ll;

use crate::error::{Error, ErrorCode, KafkaError, Result};
use crate::native::optional_c_string;
use crate::partitions::read_partition_list;

/// The outcome of a request for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the request reports: the committed offset when listing a
    /// group's offsets, the offset written when altering them, and the new
    /// low watermark after deleting records. Deleting a group's offsets
    /// reports [`OFFSET_INVALID`](crate::OFFSET_INVALID) here.
    pub offset: i64,
    /// The error for this partition, or `None` on success.
    pub error: Option<KafkaError>,
}

/// Borrows an array of result pointers that librdkafka returned with its
/// length, empty for NULL.
///
/// # Safety
///
/// A non-NULL `items` must point to `count` pointers that stay valid for `'a`.
pub(super) unsafe fn result_array<'a, T>(items: *mut *const T, count: usize) -> &'a [*const T] {
    if items.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees `count` valid pointers.
    unsafe { std::slice::from_raw_parts(items, count) }
}

/// Copies a string field of a result object, empty for NULL.
///
/// # Safety
///
/// A non-NULL `text` must point to a NUL-terminated string valid for this call.
pub(super) unsafe fn copy_string(text: *const c_char) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { optional_c_string(text) }.unwrap_or_default()
}

/// Copies an `rd_kafka_error_t` that a result object owns, `None` for NULL.
///
/// # Safety
///
/// A non-NULL `error` must be a valid error object for this call.
pub(super) unsafe fn copy_error(error: *const ll::rd_kafka_error_t) -> Option<KafkaError> {
    if error.is_null() {
        return None;
    }
    // SAFETY: the error is valid, and its string lives as long as the error.
    unsafe {
        Some(KafkaError {
            code: ErrorCode::from_raw(ll::rd_kafka_error_code(error)),
            message: copy_string(ll::rd_kafka_error_string(error)),
            fatal: ll::rd_kafka_error_is_fatal(error) != 0,
            retriable: ll::rd_kafka_error_is_retriable(error) != 0,
            transaction_requires_abort: ll::rd_kafka_error_txn_requires_abort(error) != 0,
        })
    }
}

/// Builds the error of a result that reports a code and an optional
/// message, `None` for `NO_ERROR`.
///
/// # Safety
///
/// A non-NULL `text` must point to a NUL-terminated string valid for this call.
pub(super) unsafe fn error_from_code(code: ll::rd_kafka_resp_err_t, text: *const c_char) -> Option<KafkaError> {
    if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    let code = ErrorCode::from_raw(code);
    // SAFETY: guaranteed by the caller.
    let error = match unsafe { optional_c_string(text) } {
        Some(text) if !text.is_empty() => KafkaError::with_message(code, text),
        _ => KafkaError::from_code(code),
    };
    Some(error)
}

/// Copies a partition list of a result, with each partition's error.
///
/// # Safety
///
/// `list` must be NULL or a valid list for the duration of the call.
pub(super) unsafe fn copy_partition_results(list: *const ll::rd_kafka_topic_partition_list_t) -> Vec<PartitionResult> {
    // SAFETY: guaranteed by the caller.
    let entries = unsafe { read_partition_list(list) };
    entries
        .into_iter()
        .map(|(entry, error)| PartitionResult {
            topic: entry.topic,
            partition: entry.partition,
            offset: entry.offset,
            error,
        })
        .collect()
}

/// Builds the error for a result event that lacks the item librdkafka
/// always adds on success.
pub(super) fn missing_result(operation: &'static str, item: &str) -> Error {
    Error::Kafka {
        operation,
        error: KafkaError::with_message(
            ErrorCode::from_raw(ll::RD_KAFKA_RESP_ERR__FAIL),
            format!("the result event contains no {item}"),
        ),
    }
}

/// Converts a raw librdkafka enum value for an `Unknown(i32)` variant.
pub(super) fn unknown_value(raw: u32) -> i32 {
    i32::try_from(raw).unwrap_or(i32::MAX)
}

/// Converts an `Unknown(i32)` variant back to its raw value. A negative
/// value becomes `u32::MAX`, which librdkafka rejects as out of range.
pub(super) fn raw_value(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Checks the result of an admin object setter that returns an owned
/// `rd_kafka_error_t`, NULL on success.
///
/// # Safety
///
/// A non-NULL `error` must be an error object that the caller owns. It is
/// destroyed here.
pub(super) unsafe fn check_owned_error(operation: &'static str, error: *mut ll::rd_kafka_error_t) -> Result<()> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: the caller passes an owned error, which is not used again.
    let error = unsafe { crate::error::take_rd_kafka_error(error) };
    Err(Error::Kafka { operation, error })
}

/// Builds the error for an empty name of kind `argument`, such as `group id`.
pub(super) fn empty_name(argument: &'static str) -> Error {
    Error::InvalidArgument { what: argument, value: String::new(), reason: "it is empty" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip() {
        assert_eq!(raw_value(unknown_value(7)), 7);
        assert_eq!(unknown_value(u32::MAX), i32::MAX);
        assert_eq!(raw_value(-1), u32::MAX, "a negative value must become out of range");
    }
}
