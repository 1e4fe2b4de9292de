//! Checks that the linked librdkafka is the one the bindings describe.

use std::ffi::CStr;

use rdkafka_ll::{rd_kafka_version, rd_kafka_version_str, RD_KAFKA_VERSION};

#[test]
fn linked_version_matches_headers() {
    // SAFETY: rd_kafka_version has no preconditions.
    let linked = unsafe { rd_kafka_version() };

    assert_eq!(
        linked, RD_KAFKA_VERSION,
        "linked librdkafka is {linked:#010x}, bindings were generated from headers of {RD_KAFKA_VERSION:#010x}"
    );
}

#[test]
fn linked_version_string_is_2_12_1() {
    // SAFETY: rd_kafka_version_str returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(rd_kafka_version_str()) };

    assert_eq!(version.to_str(), Ok("2.12.1"));
}
