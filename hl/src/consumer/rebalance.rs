//! Rebalances: the default assignment, and the user's listener.

use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka_ll as ll;

use super::Consumer;
use crate::error::{check_code, check_error, ErrorCode};
use crate::native::{NativeConf, NativeEvent};
use crate::partitions::{read_partition_list, NativePartitionList, TopicPartitionOffset};

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

/// Returns the consumer of `client` whose poll runs on this thread, if
/// any, for the callbacks that librdkafka calls from inside that poll.
///
/// # Safety
///
/// The caller must be such a callback and must not keep the reference
/// beyond its own return.
pub(super) unsafe fn polling_consumer<'a>(client: *mut ll::rd_kafka_t) -> Option<&'a Consumer> {
    let consumer = POLLING.with(Cell::get);
    // SAFETY: a non-NULL pointer was set by a PollGuard that is alive on
    // this thread's stack, around the poll that runs the calling callback,
    // so the consumer outlives that call. It is used only when it owns
    // `client`.
    unsafe { consumer.as_ref() }.filter(|consumer| consumer.client_ptr() == client)
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
        // SAFETY: librdkafka runs this callback inside a poll of `client`,
        // and the reference is not kept beyond it.
        let consumer = unsafe { polling_consumer(client) };
        apply(client, consumer, code, partitions);
    }));
    if outcome.is_err() {
        log::error!("a panic in the rebalance callback was caught");
    }
}

/// The maximum time closing waits for one assignment change. The change is a
/// local request to librdkafka's group thread that normally returns within
/// milliseconds; one that takes longer is the lost reply described below.
const CLOSE_ASSIGN_WAIT: Duration = Duration::from_secs(2);

/// Serves a rebalance event that closing the consumer causes.
///
/// The assignment change runs on a thread of its own, waited for until
/// `deadline`: once the group has terminated, librdkafka 2.12.1's group
/// thread destroys an assignment request without replying
/// (`rd_kafka_cgrp_op_serve` in rdkafka_cgrp.c), and `rd_kafka_assign`
/// would wait for that reply forever. A thread stuck that way is left
/// behind, with a log line.
pub(super) fn serve_close_event(consumer: &Consumer, event: &NativeEvent, deadline: Option<Instant>) {
    if event.event_type() != ll::RD_KAFKA_EVENT_REBALANCE {
        return;
    }
    // SAFETY: the event is a valid REBALANCE event; its list lives as long
    // as the event.
    let partitions = unsafe { ll::rd_kafka_event_topic_partition_list(event.as_ptr()) };
    let code = event.error_code();
    run_listener(consumer.client_ptr(), consumer, code, partitions);

    // SAFETY: the client is valid. A terminated group takes no more
    // assignment changes.
    if unsafe { ll::rd_kafka_consumer_closed(consumer.client_ptr()) } != 0 {
        return;
    }

    // SAFETY: the list is valid; the copy is ours.
    let Some(owned) = (unsafe { NativePartitionList::from_raw(ll::rd_kafka_topic_partition_list_copy(partitions)) })
    else {
        return;
    };
    let client = Arc::clone(&consumer.client);
    let (done, finished) = mpsc::channel();
    let spawned = thread::Builder::new().name("rdkafka-close-assign".to_owned()).spawn(move || {
        change_assignment(client.as_ptr(), code, owned.as_ptr());
        let _ = done.send(());
    });
    if let Err(error) = spawned {
        log::error!("failed to start a thread for the closing rebalance: {error}");
        return;
    }

    let wait = deadline.map_or(CLOSE_ASSIGN_WAIT, |deadline| {
        deadline.saturating_duration_since(Instant::now()).min(CLOSE_ASSIGN_WAIT)
    });
    if finished.recv_timeout(wait).is_err() {
        log::error!("the assignment change of the closing rebalance did not return within {wait:?}; leaving it behind");
    }
}

/// Runs the listener, then assigns or revokes `partitions` the way the
/// group's protocol requires.
fn apply(
    client: *mut ll::rd_kafka_t,
    consumer: Option<&Consumer>,
    code: ll::rd_kafka_resp_err_t,
    partitions: *mut ll::rd_kafka_topic_partition_list_t,
) {
    if let Some(consumer) = consumer {
        run_listener(client, consumer, code, partitions);
    }
    change_assignment(client, code, partitions);
}

/// Runs the listener for a rebalance; on assignment, copies the offsets it
/// chose into `partitions`.
fn run_listener(
    client: *mut ll::rd_kafka_t,
    consumer: &Consumer,
    code: ll::rd_kafka_resp_err_t,
    partitions: *mut ll::rd_kafka_topic_partition_list_t,
) {
    match code {
        ll::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
            // SAFETY: librdkafka's list is valid for this call.
            let mut entries = unsafe { read_offsets(partitions) };
            consumer.listener.with(|listener| listener.on_assign(consumer, &mut entries));
            // SAFETY: as above; the entries were read from this list in order.
            unsafe { write_offsets(partitions, &entries) };
        }
        ll::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
            // SAFETY: the client is valid.
            let lost = unsafe { ll::rd_kafka_assignment_lost(client) } != 0;
            // SAFETY: librdkafka's list is valid for this call.
            let entries = unsafe { read_offsets(partitions) };
            consumer.listener.with(|listener| listener.on_revoke(consumer, &entries, lost));
        }
        _ => {}
    }
}

/// Assigns or revokes `partitions` as the rebalance `code` requires, with
/// the calls of the group's protocol.
fn change_assignment(client: *mut ll::rd_kafka_t, code: ll::rd_kafka_resp_err_t, partitions: *mut ll::rd_kafka_topic_partition_list_t) {
    let cooperative = protocol_name(client) == Some(b"COOPERATIVE".as_slice());

    match code {
        ll::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
            // SAFETY: the client and list are valid for the call; the
            // error, if any, is ours and not used again.
            let result = unsafe {
                if cooperative {
                    check_error(ll::rd_kafka_incremental_assign(client, partitions), "incremental assign")
                } else {
                    check_code(ll::rd_kafka_assign(client, partitions), "assign")
                }
            };
            log_failure(result);
        }
        ll::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => unassign(client, cooperative, partitions),
        other => {
            log::error!("rebalance failed: {}; dropping the assignment", ErrorCode::from_raw(other));
            unassign(client, cooperative, partitions);
        }
    }
}

/// Returns the name of the group's rebalance protocol, or `None` for a
/// consumer without a group (librdkafka returns NULL then, for example once
/// the group has terminated).
pub(super) fn protocol_name(client: *mut ll::rd_kafka_t) -> Option<&'static [u8]> {
    // SAFETY: the client is valid.
    let name = unsafe { ll::rd_kafka_rebalance_protocol(client) };
    if name.is_null() {
        return None;
    }
    // SAFETY: a non-NULL name is a static NUL-terminated string.
    Some(unsafe { CStr::from_ptr(name) }.to_bytes())
}

fn unassign(client: *mut ll::rd_kafka_t, cooperative: bool, partitions: *mut ll::rd_kafka_topic_partition_list_t) {
    // SAFETY: the client and list are valid for the call; the error, if
    // any, is ours and not used again.
    let result = unsafe {
        if cooperative {
            check_error(ll::rd_kafka_incremental_unassign(client, partitions), "incremental unassign")
        } else {
            check_code(ll::rd_kafka_assign(client, ptr::null()), "unassign")
        }
    };
    log_failure(result);
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
    // An empty list may have a NULL `elems`, which no slice may point to.
    if entries.is_empty() {
        return;
    }
    // SAFETY: the caller guarantees a valid list with that many elements.
    let elements = unsafe { std::slice::from_raw_parts_mut((*list).elems, entries.len()) };
    for (element, entry) in elements.iter_mut().zip(entries) {
        element.offset = entry.offset;
    }
}

fn log_failure(result: crate::Result<()>) {
    if let Err(error) = result {
        log::error!("rebalance failed: {error}");
    }
}
