//! The producer's table of sends awaiting their delivery reports, and the
//! futures that read it.
//!
//! This is the producer's side of the paired queue, specialised for volume.
//! A send costs one slot of 48 bytes in a slab and a 16-byte future, with
//! no allocation of its own unless it has owned payloads. A whole
//! delivery-report event is applied under one lock. The invariants:
//!
//! 1. A slot is taken ([`DeliveryTable::register`]) before
//!    `rd_kafka_produceva` can report the send.
//! 2. The lock is held only inside this module's methods, which call
//!    neither librdkafka nor user code: wakers are woken and payloads
//!    dropped after the lock is released.
//! 3. Reports find their slot by the id in the message opaque, which packs
//!    the slot's index and a generation that changes each time the slot is
//!    reused, never by position.
//! 4. Every slot is resolved exactly once: by its report, or by
//!    [`DeliveryTable::close`]. A slot is freed once both its report has
//!    arrived and its future is done with it, so memory is bounded by the
//!    sends in flight plus the results not yet read.

// A delivery result is moved once, from the table to its future; boxing
// the error would cost an allocation per failed delivery instead.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::OnceLock;
use std::thread::ThreadId;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, KafkaError};
use crate::message::Timestamp;
use crate::payload::OwnedPayload;
use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering};

/// The place a message was stored: the result of a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition the message was written to.
    pub partition: i32,
    /// The message's offset in that partition.
    pub offset: i64,
    /// The message timestamp.
    pub timestamp: Timestamp,
}

/// A failed delivery: the error, and the key and value of the message when
/// they were owned [`Payload`](crate::Payload)s, handed back for a retry.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DeliveryError {
    /// The cause.
    pub error: Error,
    /// The owned key of the message, if it had one.
    pub key: Option<OwnedPayload>,
    /// The owned value of the message, if it had one.
    pub value: Option<OwnedPayload>,
}

impl DeliveryError {
    /// Returns the librdkafka error code, for errors that have one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.error.code()
    }
}

impl From<Error> for DeliveryError {
    fn from(error: Error) -> Self {
        Self {
            error,
            key: None,
            value: None,
        }
    }
}

impl From<DeliveryError> for Error {
    fn from(error: DeliveryError) -> Self {
        error.error
    }
}

/// The outcome of one report, kept small because a million of them may
/// wait to be read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// `RD_KAFKA_RESP_ERR_NO_ERROR`, an error code, or [`CLOSED`].
    pub(crate) code: i32,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Timestamp,
}

/// The outcome code of a send that the producer's close resolved.
const CLOSED: i32 = i32::MIN;

/// The owned key and value of a send, kept until its report.
pub(crate) type Payloads = (Option<OwnedPayload>, Option<OwnedPayload>);

enum State {
    Free,
    /// The report has not arrived; the future may have stored a waker.
    Waiting(Option<Waker>),
    /// The report has not arrived, and the future is gone.
    Orphaned,
    /// The report arrived; the future has not read it.
    Ready(Outcome),
}

struct Slot {
    generation: u32,
    /// Index of the topic name in `Table::topics`.
    topic: u32,
    state: State,
    /// Owned payloads, only for sends that had any.
    payloads: Option<Box<Payloads>>,
}

struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots in `Waiting` or `Orphaned`: sends without a report.
    unreported: usize,
    closed: bool,
    /// Topic names by index, for [`Delivery::topic`].
    topics: Vec<Arc<str>>,
}

/// The table of a producer's sends.
pub(crate) struct DeliveryTable {
    table: Mutex<Table>,
    /// Incremented, under the table's lock, by every applied report event,
    /// so that `send_wait` can read it on every send without the lock.
    progress: AtomicU64,
    /// Notified when reports are applied or the table closes.
    changed: Condvar,
    /// The producer's event thread, which applies the reports, so where a
    /// blocking wait would never end.
    event_thread: OnceLock<ThreadId>,
}

fn split_id(id: u64) -> (usize, u32) {
    ((id & 0xffff_ffff) as usize - 1, (id >> 32) as u32)
}

impl DeliveryTable {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table {
                slots: Vec::new(),
                free: Vec::new(),
                unreported: 0,
                closed: false,
                topics: Vec::new(),
            }),
            progress: AtomicU64::new(0),
            changed: Condvar::new(),
            event_thread: OnceLock::new(),
        })
    }

    /// Takes a slot for a send to the topic with index `topic` and returns
    /// its id, which is never 0 (a NULL opaque). Hands the payloads back
    /// when the table is closed.
    pub(crate) fn register(&self, topic: u32, payloads: Option<Box<Payloads>>) -> Result<u64, Option<Box<Payloads>>> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(payloads);
        }

        let index = match table.free.pop() {
            Some(index) => index as usize,
            None => {
                table.slots.push(Slot { generation: 0, topic: 0, state: State::Free, payloads: None });
                table.slots.len() - 1
            }
        };
        let slot = &mut table.slots[index];
        slot.generation = slot.generation.wrapping_add(1);
        slot.topic = topic;
        slot.state = State::Waiting(None);
        slot.payloads = payloads;
        let id = (u64::from(slot.generation) << 32) | (index as u64 + 1);
        table.unreported += 1;
        Ok(id)
    }

    /// Gives a slot back after `rd_kafka_produceva` failed, returning the
    /// payloads it held.
    pub(crate) fn unregister(&self, id: u64) -> Option<Box<Payloads>> {
        let mut table = self.table.lock();
        let (index, generation) = split_id(id);
        let slot = table.slots.get_mut(index).filter(|slot| slot.generation == generation)?;
        if !matches!(slot.state, State::Waiting(_)) {
            return None;
        }
        slot.state = State::Free;
        let payloads = slot.payloads.take();
        table.free.push(index as u32);
        table.unreported -= 1;
        if table.unreported == 0 {
            self.changed.notify_all();
        }
        payloads
    }

    /// Records the thread that applies the reports.
    pub(crate) fn set_event_thread(&self, thread: ThreadId) {
        let _ = self.event_thread.set(thread);
    }

    fn on_event_thread(&self) -> bool {
        self.event_thread.get() == Some(&std::thread::current().id())
    }

    /// Returns the index of a topic name, adding it the first time.
    pub(crate) fn topic_index(&self, name: &str) -> u32 {
        let mut table = self.table.lock();
        if let Some(index) = table.topics.iter().position(|topic| &**topic == name) {
            return index as u32;
        }
        table.topics.push(Arc::from(name));
        (table.topics.len() - 1) as u32
    }

    /// Applies the reports of one event: each `(id, outcome)` resolves its
    /// slot. Returns the wakers to wake and the payloads to drop, both to
    /// be handled after this returns, with no lock held.
    pub(crate) fn apply(&self, reports: &[(u64, Outcome)]) -> Applied {
        let mut applied = Applied::default();
        let mut table = self.table.lock();

        for &(id, outcome) in reports {
            let (index, generation) = split_id(id);
            let Some(slot) = table.slots.get_mut(index).filter(|slot| slot.generation == generation) else {
                applied.unknown += 1;
                continue;
            };
            match std::mem::replace(&mut slot.state, State::Free) {
                State::Waiting(waker) => {
                    slot.state = State::Ready(outcome);
                    if outcome.code == 0 {
                        applied.payloads.extend(slot.payloads.take().map(|payloads| *payloads));
                    }
                    applied.wakers.extend(waker);
                }
                State::Orphaned => {
                    applied.payloads.extend(slot.payloads.take().map(|payloads| *payloads));
                    table.free.push(index as u32);
                }
                other @ (State::Free | State::Ready(_)) => {
                    slot.state = other;
                    applied.unknown += 1;
                    continue;
                }
            }
            table.unreported -= 1;
        }

        self.progress.fetch_add(1, Ordering::Release);
        drop(table);
        self.changed.notify_all();
        applied
    }

    /// Resolves every send still without a report as closed, and refuses
    /// new ones. Returns what [`DeliveryTable::apply`] returns, with the
    /// owned payloads of those sends in [`Applied::retained`]: librdkafka
    /// may still point at them, so they are not handed back.
    pub(crate) fn close(&self) -> Applied {
        let mut applied = Applied::default();
        let mut table = self.table.lock();
        table.closed = true;

        let Table { slots, free, unreported, .. } = &mut *table;
        for (index, slot) in slots.iter_mut().enumerate() {
            match std::mem::replace(&mut slot.state, State::Free) {
                State::Waiting(waker) => {
                    slot.state = State::Ready(Outcome {
                        code: CLOSED,
                        partition: -1,
                        offset: -1,
                        timestamp: Timestamp::NotAvailable,
                    });
                    applied.retained.extend(slot.payloads.take().map(|payloads| *payloads));
                    applied.wakers.extend(waker);
                }
                State::Orphaned => {
                    applied.retained.extend(slot.payloads.take().map(|payloads| *payloads));
                    free.push(index as u32);
                }
                other => slot.state = other,
            }
        }
        *unreported = 0;
        drop(table);
        self.changed.notify_all();
        applied
    }

    /// Returns the number of sends without a report.
    pub(crate) fn unreported(&self) -> usize {
        self.table.lock().unreported
    }

    /// Waits until every send has its report, up to `timeout`. Returns
    /// whether that happened.
    pub(crate) fn wait_until_reported(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut table = self.table.lock();
        while table.unreported > 0 {
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut table, deadline).timed_out() {
                        return table.unreported == 0;
                    }
                }
                None => self.changed.wait(&mut table),
            }
        }
        true
    }

    /// Returns the progress count, for [`DeliveryTable::wait_for_progress`].
    pub(crate) fn progress(&self) -> u64 {
        self.progress.load(Ordering::Acquire)
    }

    /// Waits until a report event was applied after `seen` was read, the
    /// table closed, or `deadline` passed. The lock is released while
    /// waiting.
    pub(crate) fn wait_for_progress(&self, seen: u64, deadline: Instant) {
        let mut table = self.table.lock();
        while self.progress.load(Ordering::Acquire) == seen && !table.closed {
            if self.changed.wait_until(&mut table, deadline).timed_out() {
                break;
            }
        }
    }

    /// Takes the result of slot `id` if it arrived, else stores `waker`.
    fn poll_slot(&self, id: u64, waker: &Waker) -> Option<Result<Delivery, DeliveryError>> {
        let mut table = self.table.lock();
        let (index, generation) = split_id(id);
        let slot = table.slots.get_mut(index).filter(|slot| slot.generation == generation)?;
        match &mut slot.state {
            State::Waiting(stored) => {
                if !stored.as_ref().is_some_and(|stored| stored.will_wake(waker)) {
                    *stored = Some(waker.clone());
                }
                None
            }
            State::Ready(_) => Some(take_ready(&mut table, index)),
            State::Free | State::Orphaned => Some(Err(Error::Closed { operation: "delivery" }.into())),
        }
    }

    /// Blocks until the result of slot `id` arrives and takes it, or
    /// returns `None` when `deadline` passes first.
    fn wait_slot(&self, id: u64, deadline: Option<Instant>) -> Option<Result<Delivery, DeliveryError>> {
        let (index, generation) = split_id(id);
        let mut table = self.table.lock();
        loop {
            let state = table
                .slots
                .get(index)
                .filter(|slot| slot.generation == generation)
                .map(|slot| &slot.state);
            match state {
                Some(State::Ready(_)) => return Some(take_ready(&mut table, index)),
                Some(State::Waiting(_)) => {}
                // A live future's slot is always Waiting or Ready.
                _ => return Some(Err(Error::Closed { operation: "delivery" }.into())),
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut table, deadline).timed_out() {
                        let ready = matches!(table.slots[index].state, State::Ready(_));
                        return ready.then(|| take_ready(&mut table, index));
                    }
                }
                None => self.changed.wait(&mut table),
            }
        }
    }

    fn is_ready(&self, id: u64) -> bool {
        let table = self.table.lock();
        let (index, generation) = split_id(id);
        table
            .slots
            .get(index)
            .is_some_and(|slot| slot.generation == generation && matches!(slot.state, State::Ready(_)))
    }

    /// Lets go of slot `id` for a future that is dropped. Returns payloads
    /// to drop with no lock held.
    fn release(&self, id: u64) -> Option<Box<Payloads>> {
        let mut table = self.table.lock();
        let (index, generation) = split_id(id);
        let slot = table.slots.get_mut(index).filter(|slot| slot.generation == generation)?;
        match slot.state {
            State::Waiting(_) => {
                slot.state = State::Orphaned;
                None
            }
            State::Ready(_) => {
                slot.state = State::Free;
                let payloads = slot.payloads.take();
                table.free.push(index as u32);
                payloads
            }
            State::Free | State::Orphaned => None,
        }
    }
}

/// Work left over from [`DeliveryTable::apply`] for after the lock.
#[derive(Default)]
pub(crate) struct Applied {
    wakers: Vec<Waker>,
    payloads: Vec<Payloads>,
    /// Reports whose id matched no waiting slot.
    pub(crate) unknown: usize,
    /// Payloads of sends closed without a report, which librdkafka may
    /// still point at: to be kept until the client is destroyed.
    pub(crate) retained: Vec<Payloads>,
}

impl Applied {
    /// Wakes the futures, then drops the payloads of delivered sends.
    /// Returns the payloads to retain (see [`Applied::retained`]).
    ///
    /// Wakers and payload `Drop` implementations are user code, so each
    /// runs on its own under `catch_unwind`: one that panics must not keep
    /// the others from running.
    pub(crate) fn finish(self) -> Vec<Payloads> {
        for waker in self.wakers {
            if catch_unwind(AssertUnwindSafe(|| waker.wake())).is_err() {
                log::error!("a waker panicked when its delivery completed");
            }
        }
        for payloads in self.payloads {
            if catch_unwind(AssertUnwindSafe(|| drop(payloads))).is_err() {
                log::error!("dropping the payload of a delivered message panicked");
            }
        }
        self.retained
    }
}

/// Takes the result out of a `Ready` slot and frees the slot. Nothing is
/// dropped here but the slot's bookkeeping: a delivered send's payloads
/// were dropped when its report was applied, and a failed one's move into
/// the error.
fn take_ready(table: &mut Table, index: usize) -> Result<Delivery, DeliveryError> {
    let slot = &mut table.slots[index];
    let State::Ready(outcome) = std::mem::replace(&mut slot.state, State::Free) else {
        unreachable!("take_ready on a slot that is not Ready");
    };
    let payloads = slot.payloads.take();
    let topic = table.topics.get(slot.topic as usize).cloned();
    table.free.push(index as u32);
    into_result(outcome, topic, payloads)
}

fn into_result(outcome: Outcome, topic: Option<Arc<str>>, payloads: Option<Box<Payloads>>) -> Result<Delivery, DeliveryError> {
    if outcome.code == 0 {
        return Ok(Delivery {
            topic: topic.unwrap_or_else(|| Arc::from("")),
            partition: outcome.partition,
            offset: outcome.offset,
            timestamp: outcome.timestamp,
        });
    }

    let error = if outcome.code == CLOSED {
        Error::Closed { operation: "delivery" }
    } else {
        Error::Kafka {
            operation: "delivery",
            error: KafkaError::from_code(ErrorCode::from_raw(outcome.code)),
        }
    };
    let (key, value) = payloads.map_or((None, None), |payloads| *payloads);
    Err(DeliveryError { error, key, value })
}

/// The pending result of [`Producer::send`](crate::Producer::send).
///
/// The producer's event thread resolves it exactly once: with the delivery,
/// with a [`DeliveryError`] when the message failed or was purged, or with
/// [`Error::Closed`] when the producer was dropped first. It never stays
/// pending forever. Wait on it with [`wait`](Self::wait) or
/// [`wait_timeout`](Self::wait_timeout), check it with
/// [`is_ready`](Self::is_ready), or `.await` it on any executor.
///
/// Dropping it does not cancel the send.
#[must_use = "dropping the future ignores whether the message was delivered"]
pub struct DeliveryFuture {
    table: Arc<DeliveryTable>,
    /// The slot's id, or [`TAKEN`] once the result was taken.
    id: u64,
}

/// The id of a future whose result was taken; no slot has id 0.
const TAKEN: u64 = 0;

impl DeliveryFuture {
    pub(crate) fn new(table: Arc<DeliveryTable>, id: u64) -> Self {
        Self { table, id }
    }

    /// Blocks until the delivery report arrives.
    ///
    /// On the producer's own event thread (in a waker), where the report
    /// can never arrive while this waits, it returns
    /// [`Error::OnEventThread`] unless the report is already there.
    pub fn wait(mut self) -> Result<Delivery, DeliveryError> {
        if self.table.on_event_thread() && !self.table.is_ready(self.id) {
            return Err(Error::OnEventThread { operation: "wait for a delivery" }.into());
        }
        let id = std::mem::replace(&mut self.id, TAKEN);
        self.table
            .wait_slot(id, None)
            .unwrap_or_else(|| Err(Error::Closed { operation: "delivery" }.into()))
    }

    /// Blocks until the delivery report arrives, or returns
    /// [`Error::TimedOut`] after `timeout`. The message may still be
    /// delivered after a timeout.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Delivery, DeliveryError> {
        let deadline = Instant::now().checked_add(timeout);
        match self.table.wait_slot(self.id, deadline) {
            Some(result) => {
                self.id = TAKEN;
                result
            }
            None => Err(Error::TimedOut { operation: "delivery report", timeout }.into()),
        }
    }

    /// Returns whether the result has arrived, without blocking.
    pub fn is_ready(&self) -> bool {
        self.id != TAKEN && self.table.is_ready(self.id)
    }
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(self.id != TAKEN, "a DeliveryFuture was polled after it returned Ready");
        match self.table.poll_slot(self.id, context.waker()) {
            Some(result) => {
                self.id = TAKEN;
                Poll::Ready(result)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for DeliveryFuture {
    fn drop(&mut self) {
        if self.id != TAKEN {
            drop(self.table.release(self.id));
        }
    }
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("id", &self.id)
            .field("ready", &self.is_ready())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(offset: i64) -> Outcome {
        Outcome {
            code: 0,
            partition: 2,
            offset,
            timestamp: Timestamp::CreateTime(7),
        }
    }

    fn failed(code: i32) -> Outcome {
        Outcome {
            code,
            partition: -1,
            offset: -1,
            timestamp: Timestamp::NotAvailable,
        }
    }

    fn owned(value: &[u8]) -> Option<Box<Payloads>> {
        Some(Box::new((None, Some(OwnedPayload::Vec(value.to_vec())))))
    }

    #[test]
    fn slot_and_future_sizes() {
        // The module documentation and BENCHMARKS.md state these sizes.
        assert_eq!(std::mem::size_of::<Slot>(), 48);
        assert_eq!(std::mem::size_of::<DeliveryFuture>(), 16);
    }

    #[test]
    fn panicking_payload_drop_still_wakes_others() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct PanicOnDrop;
        impl AsRef<[u8]> for PanicOnDrop {
            fn as_ref(&self) -> &[u8] {
                b"boom"
            }
        }
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("payload drop panics");
            }
        }
        struct CountingWaker(AtomicUsize);
        impl Wake for CountingWaker {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        let table = DeliveryTable::new();
        let panicking = table
            .register(0, Some(Box::new((None, Some(OwnedPayload::Custom(Arc::new(PanicOnDrop)))))))
            .unwrap();
        let watched = table.register(0, None).unwrap();
        drop(DeliveryFuture::new(Arc::clone(&table), panicking));
        let mut future = DeliveryFuture::new(Arc::clone(&table), watched);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        assert!(Pin::new(&mut future).poll(&mut Context::from_waker(&waker)).is_pending());

        table.apply(&[(panicking, delivered(0)), (watched, delivered(1))]).finish();

        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the other future was not woken");
        assert_eq!(future.wait().unwrap().offset, 1);
    }

    #[test]
    fn reports_resolve_by_id_in_any_order() {
        let table = DeliveryTable::new();
        let topic = table.topic_index("orders");
        let ids: Vec<u64> = (0..3).map(|_| table.register(topic, None).unwrap()).collect();
        let futures: Vec<DeliveryFuture> = ids.iter().map(|&id| DeliveryFuture::new(Arc::clone(&table), id)).collect();

        table.apply(&[(ids[2], delivered(30)), (ids[0], delivered(10)), (ids[1], delivered(20))]).finish();

        assert_eq!(table.unreported(), 0);
        let offsets: Vec<i64> = futures.into_iter().map(|future| future.wait().unwrap().offset).collect();
        assert_eq!(offsets, vec![10, 20, 30]);
    }

    #[test]
    fn delivery_carries_topic_and_fields() {
        let table = DeliveryTable::new();
        let topic = table.topic_index("orders");
        let id = table.register(topic, None).unwrap();
        let future = DeliveryFuture::new(Arc::clone(&table), id);

        table.apply(&[(id, delivered(5))]).finish();
        let delivery = future.wait_timeout(Duration::ZERO).unwrap();

        assert_eq!(&*delivery.topic, "orders");
        assert_eq!(delivery.partition, 2);
        assert_eq!(delivery.offset, 5);
        assert_eq!(delivery.timestamp, Timestamp::CreateTime(7));
    }

    #[test]
    fn failure_hands_owned_value_back() {
        let table = DeliveryTable::new();
        let id = table.register(0, owned(b"payload")).unwrap();
        let future = DeliveryFuture::new(Arc::clone(&table), id);

        table.apply(&[(id, failed(ErrorCode::MESSAGE_TIMED_OUT.raw()))]).finish();
        let error = future.wait().unwrap_err();

        assert_eq!(error.code(), Some(ErrorCode::MESSAGE_TIMED_OUT));
        assert_eq!(error.value.map(OwnedPayload::into_vec), Some(b"payload".to_vec()));
    }

    #[test]
    fn close_resolves_unreported_and_retains_payloads() {
        let table = DeliveryTable::new();
        let id = table.register(0, owned(b"kept")).unwrap();
        let future = DeliveryFuture::new(Arc::clone(&table), id);

        let retained = table.close().finish();

        assert_eq!(table.unreported(), 0);
        assert!(table.register(0, None).is_err());
        let error = future.wait().unwrap_err();
        assert!(matches!(error.error, Error::Closed { .. }), "{error:?}");
        assert_eq!(error.value, None, "a payload librdkafka may still point at was handed back");
        assert_eq!(retained.len(), 1);
    }

    #[test]
    fn dropped_future_frees_slot_after_report() {
        let table = DeliveryTable::new();
        let first = table.register(0, None).unwrap();
        drop(DeliveryFuture::new(Arc::clone(&table), first));

        assert_eq!(table.unreported(), 1, "an orphaned send still awaits its report");
        table.apply(&[(first, delivered(0))]).finish();
        assert_eq!(table.unreported(), 0);

        let second = table.register(0, None).unwrap();
        assert_ne!(first, second, "a reused slot must get a new generation");
        let applied = table.apply(&[(first, delivered(1))]);
        assert_eq!(applied.unknown, 1, "a stale id must not resolve the new send");
        applied.finish();
        assert_eq!(table.unreported(), 1);
    }

    #[test]
    fn unregister_returns_payloads() {
        let table = DeliveryTable::new();
        let id = table.register(0, owned(b"back")).unwrap();

        let payloads = table.unregister(id).expect("payloads of the failed send");

        assert_eq!(payloads.1.map(OwnedPayload::into_vec), Some(b"back".to_vec()));
        assert_eq!(table.unreported(), 0);
        assert!(table.unregister(id).is_none());
    }

    #[test]
    fn wait_timeout_expires_without_report() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(Arc::clone(&table), id);

        let error = future.wait_timeout(Duration::from_millis(10)).unwrap_err();

        assert!(matches!(error.error, Error::TimedOut { .. }), "{error:?}");
        assert!(!table.wait_until_reported(Duration::from_millis(10)));
    }

    #[test]
    fn blocked_waiter_wakes_on_report() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(Arc::clone(&table), id);
        let reporter = {
            let table = Arc::clone(&table);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                table.apply(&[(id, delivered(42))]).finish();
            })
        };

        let delivery = future.wait_timeout(Duration::from_secs(10)).expect("timed out waiting for the report");

        assert_eq!(delivery.offset, 42);
        reporter.join().unwrap();
    }
}
