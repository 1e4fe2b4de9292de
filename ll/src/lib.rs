//! The raw librdkafka API, mirrored one to one.
//!
//! Every function, type and constant of librdkafka's public headers,
//! [`rdkafka.h`] and [`rdkafka_mock.h`], is here under its C name. bindgen
//! generated them from the headers of the librdkafka that is linked:
//! version 2.12.1, built from source and linked statically by the
//! `rdkafka-sys` crate. The documentation of each item is the comment of
//! the C header. For a safe API, use the `rdkafka-hl` crate.
//!
//! # Differences from the C headers
//!
//! - C enums are integer type aliases plus one constant per value, with the
//!   C names (`rd_kafka_resp_err_t`, `RD_KAFKA_RESP_ERR_NO_ERROR`). librdkafka
//!   and brokers add codes over time, and a Rust `enum` holding a value it
//!   does not list would be undefined behaviour.
//! - `#define` constants have the C type of the parameter they are passed
//!   as: offsets are `i64`, message, purge and destroy flags and event types
//!   are `c_int`.
//! - The function-like macros that bindgen cannot translate are in this
//!   crate as constants or `const fn`s (`RD_KAFKA_PARTITION_UA`,
//!   [`RD_KAFKA_OFFSET_TAIL`], the renamed error codes). The
//!   `RD_KAFKA_V_*()` macros of `rd_kafka_producev` expand in C to a
//!   `rd_kafka_vtype_t` followed by its arguments, so in Rust pass that
//!   pair directly, as the example below does.
//! - `FILE`, `sockaddr`, `addrinfo` and `mode_t` are the `libc` crate's types.
//!
//! # Example
//!
//! Produce one message to librdkafka's built-in mock cluster and read its
//! delivery report from an event queue:
//!
//! ```
//! use rdkafka_ll::*;
//! use std::ffi::{c_char, c_void, CStr};
//! use std::ptr;
//!
//! let mut errstr = [0 as c_char; 512];
//!
//! // SAFETY: every pointer passed below is valid for the call, the
//! // strings are NUL-terminated, and each handle is destroyed once.
//! unsafe {
//!     let conf = rd_kafka_conf_new();
//!     rd_kafka_conf_set(conf, c"test.mock.num.brokers".as_ptr(), c"1".as_ptr(),
//!                       errstr.as_mut_ptr(), errstr.len());
//!     rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR);
//!     let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr.as_mut_ptr(), errstr.len());
//!     assert!(!rk.is_null(), "{:?}", CStr::from_ptr(errstr.as_ptr()));
//!
//!     let value = b"hello";
//!     let err = rd_kafka_producev(
//!         rk,
//!         RD_KAFKA_VTYPE_TOPIC, c"greetings".as_ptr(),
//!         RD_KAFKA_VTYPE_VALUE, value.as_ptr() as *mut c_void, value.len(),
//!         RD_KAFKA_VTYPE_MSGFLAGS, RD_KAFKA_MSG_F_COPY,
//!         RD_KAFKA_VTYPE_END,
//!     );
//!     assert_eq!(err, RD_KAFKA_RESP_ERR_NO_ERROR);
//!
//!     let queue = rd_kafka_queue_get_main(rk);
//!     let event = rd_kafka_queue_poll(queue, 10_000);
//!     assert_eq!(rd_kafka_event_type(event), RD_KAFKA_EVENT_DR);
//!     let message = rd_kafka_event_message_next(event);
//!     assert_eq!((*message).err, RD_KAFKA_RESP_ERR_NO_ERROR);
//!     assert_eq!((*message).offset, 0);
//!
//!     rd_kafka_event_destroy(event);
//!     rd_kafka_queue_destroy(queue);
//!     rd_kafka_destroy(rk);
//! }
//! ```
//!
//! # Features
//!
//! The build features of `rdkafka-sys` pass through under the same names:
//! `libz` (default), `ssl`, `ssl-vendored`, `gssapi`, `zstd`, `curl`,
//! `dynamic-linking` (link a system librdkafka found by pkg-config, which
//! must be at least the version the bindings were generated from) and
//! `cmake-build`. The feature `bindgen` regenerates the bindings at build
//! time from the linked headers and needs libclang.
//!
//! The committed bindings were generated on x86_64 Linux. Build with the
//! `bindgen` feature on a target whose C type sizes differ.
//!
//! [`rdkafka.h`]: https://docs.confluent.io/platform/current/clients/librdkafka/html/rdkafka_8h.html
//! [`rdkafka_mock.h`]: https://github.com/confluentinc/librdkafka/blob/v2.12.1/src/rdkafka_mock.h

#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]

// Linking: rdkafka-sys builds librdkafka and emits the link directives.
// Its own declarations are not used.
use rdkafka_sys as _;

#[cfg(not(rdkafka_ll_generated))]
#[allow(missing_docs, clippy::all, clippy::undocumented_unsafe_blocks, rustdoc::all)]
#[path = "bindings.rs"]
mod bindings;

#[cfg(rdkafka_ll_generated)]
#[allow(missing_docs, clippy::all, clippy::undocumented_unsafe_blocks, rustdoc::all)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

mod macros;

pub use bindings::*;
pub use macros::*;

#[cfg(all(test, rdkafka_ll_generated))]
mod drift {
    /// Fails when the committed bindings differ from what bindgen generates
    /// now from the linked headers. Regenerate with `ll/update-bindings.sh`.
    #[test]
    fn committed_bindings_match_bindgen() {
        let committed = include_str!("bindings.rs");
        let generated = include_str!(concat!(env!("OUT_DIR"), "/bindings.rs"));

        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(old, new)| old != new);

        assert!(
            committed == generated,
            "ll/src/bindings.rs differs from fresh bindgen output (first differing line: {:?}, \
             committed {} lines, generated {} lines); run ll/update-bindings.sh",
            first_difference.map(|index| index + 1),
            committed.lines().count(),
            generated.lines().count(),
        );
    }
}
