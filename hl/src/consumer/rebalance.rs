//! Rebalances: the default assignment, and the user's listener.

use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use parking_lot::Mutex;
use rdkafka_ll as ll;

use super::Consumer;
use crate::error::{take_rd_kafka_error, ErrorCode};
use crate::native::{NativeConf, NativeEvent};
use crate::partitions::{read_partition_list, TopicPartitionOffset};

/// Code that runs when the group assigns partitions to this consumer or
/// takes them away, on the thread that polls.
///
/// Both methods run before librdkafka applies the change, inside
/// [`Consumer::poll`] or [`Consumer::recv`], and may call the consumer:
/// commit or store offsets on revocation, look up committed offsets on
/// assignment. They must not assign or unassign partitions themselves; the
/// consumer does that after they return. A panic in them is caught and
/// logged, and the assignment goes ahead.
///
/// ```
/// use rdkafka_hl::{Consumer, RebalanceListener, TopicPartitionOffset};
///
/// /// Starts every assigned partition from its beginning.
/// struct FromBeginning;
///
/// impl RebalanceListener for FromBeginning {
///     fn on_assign(&mut self, _consumer: &Consumer, partitions: &mut [TopicPartitionOffset]) {
///         for partition in partitions {
///             partition.offset = rdkafka_hl::OFFSET_BEGINNING;
///         }
///     }
/// }
/// ```
pub trait RebalanceListener: Send {
    /// Runs before `partitions` are assigned. Set an entry's offset to
    /// choose where consumption starts; the entries start at
    /// [`OFFSET_INVALID`](crate::OFFSET_INVALID), which means the committed
    /// offset or else `auto.offset.reset`.
    fn on_assign(&mut self, consumer: &Consumer, partitions: &mut [TopicPartitionOffset]) {
        let _ = (consumer, partitions);
    }

    /// Runs before `partitions` are revoked. `lost` is true when the group
    /// already gave them to another member (after a session timeout), so
    /// commits for them will fail.
    fn on_revoke(&mut self, consumer: &Consumer, partitions: &[TopicPartitionOffset], lost: bool) {
        let _ = (consumer, partitions, lost);
    }
}

/// The consumer's listener, taken out while it runs so that no lock is
/// held across user code.
pub(super) struct RebalanceSlot(Mutex<Option<Box<dyn RebalanceListener>>>);

impl RebalanceSlot {
    pub(super) fn new(listener: Option<Box<dyn RebalanceListener>>) -> Self {
        Self(Mutex::new(listener))
    }

    /// Runs `call` with the listener, if there is one and it is not already
    /// running (a nested poll from inside the listener skips it).
    fn with(&self, call: impl FnOnce(&mut dyn RebalanceListener)) {
        let Some(mut listener) = self.0.lock().take() else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| call(listener.as_mut()))).is_err() {
            log::error!("the rebalance listener panicked; the rebalance goes ahead");
        }
        *self.0.lock() = Some(listener);
    }
}

thread_local! {
    /// The consumer whose poll runs on this thread, for the rebalance
    /// callback, which librdkafka calls from inside that poll.
    static POLLING: Cell<*const Consumer> = const { Cell::new(ptr::null()) };
}

/// Marks `consumer` as polling on this thread until dropped.
pub(super) struct PollGuard {
    previous: *const Consumer,
}

impl PollGuard {
    pub(super) fn enter(consumer: &Consumer) -> Self {
        let previous = POLLING.with(|polling| polling.replace(consumer));
        Self { previous }
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        POLLING.with(|polling| polling.set(self.previous));
    }
}

/// Makes librdkafka call [`rebalance_callback`] for every rebalance.
pub(super) fn install(conf: &NativeConf) {
    // SAFETY: the conf is valid; the callback is a plain function.
    unsafe { ll::rd_kafka_conf_set_rebalance_cb(conf.as_ptr(), Some(rebalance_callback)) };
}

/// librdkafka's rebalance callback. It runs on the thread that polls, and
/// no panic leaves it.
unsafe extern "C" fn rebalance_callback(
    client: *mut ll::rd_kafka_t,
    code: ll::rd_kafka_resp_err_t,
    partitions: *mut ll::rd_kafka_topic_partition_list_t,
    _opaque: *mut c_void,
) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let consumer = POLLING.with(Cell::get);
        // SAFETY: a non-NULL pointer was set by a PollGuard that is alive
        // on this thread's stack, around the poll that runs this callback,
        // so the consumer outlives this call. It is used only when it owns
        // `client`.
        let consumer = unsafe { consumer.as_ref() }.filter(|consumer| consumer.client_ptr() == client);
        apply(client, consumer, code, partitions);
    }));
    if outcome.is_err() {
        log::error!("a panic in the rebalance callback was caught");
    }
}

/// Serves a rebalance event that closing the consumer causes.
pub(super) fn serve_close_event(consumer: &Consumer, event: &NativeEvent) {
    if event.event_type() != ll::RD_KAFKA_EVENT_REBALANCE {
        return;
    }
    // SAFETY: the event is a valid REBALANCE event; its list lives as long
    // as the event.
    let partitions = unsafe { ll::rd_kafka_event_topic_partition_list(event.as_ptr()) };
    apply(consumer.client_ptr(), Some(consumer), event.error_code(), partitions);
}

/// Runs the listener, then assigns or revokes `partitions` the way the
/// group's protocol requires.
fn apply(
    client: *mut ll::rd_kafka_t,
    consumer: Option<&Consumer>,
    code: ll::rd_kafka_resp_err_t,
    partitions: *mut ll::rd_kafka_topic_partition_list_t,
) {
    // SAFETY: the client is valid during its own callback; the protocol
    // name is a static string.
    let protocol = unsafe { CStr::from_ptr(ll::rd_kafka_rebalance_protocol(client)) };
    let cooperative = protocol.to_bytes() == b"COOPERATIVE";

    match code {
        ll::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
            if let Some(consumer) = consumer {
                // SAFETY: librdkafka's list is valid for this call.
                let mut entries = unsafe { read_offsets(partitions) };
                consumer.listener.with(|listener| listener.on_assign(consumer, &mut entries));
                // SAFETY: as above; the entries were read from this list in order.
                unsafe { write_offsets(partitions, &entries) };
            }
            // SAFETY: the client and list are valid for the call.
            let result = unsafe {
                if cooperative {
                    error_result(ll::rd_kafka_incremental_assign(client, partitions))
                } else {
                    code_result(ll::rd_kafka_assign(client, partitions))
                }
            };
            log_failure("assign", result);
        }
        ll::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
            if let Some(consumer) = consumer {
                // SAFETY: the client is valid.
                let lost = unsafe { ll::rd_kafka_assignment_lost(client) } != 0;
                // SAFETY: librdkafka's list is valid for this call.
                let entries = unsafe { read_offsets(partitions) };
                consumer.listener.with(|listener| listener.on_revoke(consumer, &entries, lost));
            }
            unassign(client, cooperative, partitions);
        }
        other => {
            log::error!("rebalance failed: {}; dropping the assignment", ErrorCode::from_raw(other));
            unassign(client, cooperative, partitions);
        }
    }
}

fn unassign(client: *mut ll::rd_kafka_t, cooperative: bool, partitions: *mut ll::rd_kafka_topic_partition_list_t) {
    // SAFETY: the client and list are valid for the call.
    let result = unsafe {
        if cooperative {
            error_result(ll::rd_kafka_incremental_unassign(client, partitions))
        } else {
            code_result(ll::rd_kafka_assign(client, ptr::null()))
        }
    };
    log_failure("unassign", result);
}

/// # Safety
///
/// `list` must be valid for the call.
unsafe fn read_offsets(list: *const ll::rd_kafka_topic_partition_list_t) -> Vec<TopicPartitionOffset> {
    // SAFETY: the caller guarantees a valid list.
    unsafe { read_partition_list(list) }
        .into_iter()
        .map(|(entry, _)| entry)
        .collect()
}

/// Copies the offsets of `entries` into the list they were read from.
///
/// # Safety
///
/// `list` must be valid and have at least `entries.len()` elements.
unsafe fn write_offsets(list: *mut ll::rd_kafka_topic_partition_list_t, entries: &[TopicPartitionOffset]) {
    // SAFETY: the caller guarantees a valid list with that many elements.
    let elements = unsafe { std::slice::from_raw_parts_mut((*list).elems, entries.len()) };
    for (element, entry) in elements.iter_mut().zip(entries) {
        element.offset = entry.offset;
    }
}

fn code_result(code: ll::rd_kafka_resp_err_t) -> Result<(), String> {
    if code == ll::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(ErrorCode::from_raw(code).to_string())
    }
}

fn error_result(error: *mut ll::rd_kafka_error_t) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL error is ours to destroy.
    Err(unsafe { take_rd_kafka_error(error) }.to_string())
}

fn log_failure(step: &str, result: Result<(), String>) {
    if let Err(error) = result {
        log::error!("rebalance {step} failed: {error}");
    }
}
