//! Client errors that librdkafka reports outside any message, such as a
//! failed authentication, passed to the consumer's error handler.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::Mutex;
use rdkafka_ll as ll;

use super::rebalance::polling_consumer;
use crate::error::{ErrorCode, KafkaError};
use crate::native::NativeConf;

/// A handler set with [`ConsumerBuilder::on_error`](super::ConsumerBuilder::on_error).
pub(super) type ErrorHandler = Box<dyn FnMut(&KafkaError) + Send>;

/// The consumer's error handler, taken out while it runs so that no lock
/// is held across user code.
pub(super) struct ErrorSlot(Mutex<Option<ErrorHandler>>);

impl ErrorSlot {
    pub(super) fn new(handler: Option<ErrorHandler>) -> Self {
        Self(Mutex::new(handler))
    }

    /// Passes `error` to the handler. While the handler already runs (on
    /// another polling thread, or around a poll made from inside it), the
    /// error is logged instead.
    fn handle(&self, error: &KafkaError) {
        let Some(mut handler) = self.0.lock().take() else {
            log_error(error);
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| handler(error))).is_err() {
            log::error!("the consumer's error handler panicked on error {error}");
        }
        *self.0.lock() = Some(handler);
    }
}

/// Makes librdkafka call [`error_callback`] for client errors, instead of
/// logging them.
pub(super) fn install(conf: &NativeConf) {
    // SAFETY: the conf is valid; the callback is a plain function.
    unsafe { ll::rd_kafka_conf_set_error_cb(conf.as_ptr(), Some(error_callback)) };
}

/// librdkafka's error callback. librdkafka calls it while it serves the
/// queue that client errors go to, which for this consumer is the consumer
/// queue, so normally inside a poll on the polling thread. A call outside
/// any poll finds no consumer and logs the error. No panic leaves it.
unsafe extern "C" fn error_callback(client: *mut ll::rd_kafka_t, code: c_int, reason: *const c_char, _opaque: *mut c_void) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let code = ErrorCode::from_raw(code);
        let error = if reason.is_null() {
            KafkaError::from_code(code)
        } else {
            // SAFETY: a non-NULL reason is a NUL-terminated string that
            // lives for this call.
            let reason = unsafe { CStr::from_ptr(reason) }.to_string_lossy();
            KafkaError::with_message(code, reason)
        };

        // SAFETY: librdkafka runs this callback inside a poll of `client`
        // or outside any poll, where no consumer is found, and the
        // reference is not kept beyond it.
        match unsafe { polling_consumer(client) } {
            Some(consumer) => consumer.errors.handle(&error),
            None => log_error(&error),
        }
    }));
    if outcome.is_err() {
        log::error!("a panic in the error callback was caught");
    }
}

fn log_error(error: &KafkaError) {
    if error.fatal {
        log::error!(target: "librdkafka", "fatal client error {}: {}", error.code, error.message);
    } else {
        log::warn!(target: "librdkafka", "client error {}: {}", error.code, error.message);
    }
}
