//! Model checks of the pairing core under `loom`, which runs each model in
//! every interleaving of its threads up to a bound on preemptions
//! (`LOOM_MAX_PREEMPTIONS`, 3 unless set) and reports a deadlock as a
//! failure. Run them with `tests/model-check.sh`.
//!
//! Each model pairs sends (or commits) with an event thread through an
//! [`EventQueue`], which replaces librdkafka's queue. A send pushes its id
//! after registering it, as `rd_kafka_produceva` does, and the event thread
//! pops ids and applies their results. No librdkafka client is created, but a
//! failed delivery's error still reads librdkafka's static table of error
//! names.
//!
//! Both the [`Pending`] table (with [`Completion`] and [`KafkaFuture`])
//! and the [`DeliveryTable`] (with [`DeliveryFuture`]) are checked for
//! four races. A sender registers while the event thread drains, a result
//! races the drop of its future, shutdown races a send, and two senders
//! run at once.
//! The delivery table is also checked for a failed produce racing
//! shutdown, a sender waiting for progress while the queue is full, a
//! sending thread applying reports beside the event thread, and futures
//! that outlive every other handle on the table.
//!
//! Each model checks that nothing deadlocks and that every completion is
//! resolved exactly once, with the result sent for its own id. A send that
//! registers after shutdown, or that shutdown resolves, must get `Closed`.
//! Every owned payload must be dropped exactly once, and never while
//! librdkafka may still read it, and the delivery table must be freed once
//! its last handle and future are gone.
//!
//! Not covered: `loom` has no clock, so a timed wait either blocks until it
//! is notified or times out at once (see `sync::set_timed_waits_expire`),
//! and a wait notified a few times before its deadline is not modelled.
//! Waits on the event thread (`Error::OnEventThread`) are not modelled,
//! because `loom` runs all its threads on one OS thread. Nor are interleavings
//! beyond the preemption bound, or models with more than two senders.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use crate::completion::Completion;
use crate::deliveries::{DeliveryFuture, DeliveryTable, Outcome, Payloads};
use crate::error::{Error, ErrorCode};
use crate::future::{KafkaFuture, Slot};
use crate::message::Timestamp;
use crate::payload::OwnedPayload;
use crate::pending::Pending;
use crate::sync::{set_timed_waits_expire, Arc, AtomicBool, AtomicUsize, Condvar, Mutex, Ordering};

/// The preemption bound when `LOOM_MAX_PREEMPTIONS` is not set.
const DEFAULT_PREEMPTIONS: usize = 3;

/// A timeout for the timed waits, which `loom` does not measure.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `model` in every interleaving, with timed waits that block until
/// they are notified.
fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    set_timed_waits_expire(false);
    builder.check(model);
}

/// Runs `model` as [`check`] does, but with timed waits that time out.
fn check_with_expiring_waits(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    set_timed_waits_expire(true);
    builder.check(model);
    set_timed_waits_expire(false);
}

/// The id of a thread that is not running, for futures whose event thread
/// never waits on them. `loom` runs all its threads on the calling OS
/// thread, so that thread's id would make every wait look like one on the
/// event thread.
fn foreign_thread() -> ThreadId {
    std::thread::spawn(|| ()).thread().id()
}

/// A stand-in for librdkafka's event queue: ids pushed by senders, popped
/// by the event thread until the queue is stopped.
struct EventQueue<T> {
    state: Mutex<QueueState<T>>,
    changed: Condvar,
}

struct QueueState<T> {
    items: VecDeque<T>,
    stopped: bool,
}

impl<T> EventQueue<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState { items: VecDeque::new(), stopped: false }),
            changed: Condvar::new(),
        })
    }

    fn push(&self, item: T) {
        self.state.lock().items.push_back(item);
        self.changed.notify_all();
    }

    /// Blocks until an item arrives and returns it, or returns `None` once
    /// the queue is stopped. Items left at the stop are never popped, as
    /// events are lost when a client's event thread stops.
    fn pop(&self) -> Option<T> {
        let mut state = self.state.lock();
        loop {
            if state.stopped {
                return None;
            }
            if let Some(item) = state.items.pop_front() {
                return Some(item);
            }
            self.changed.wait(&mut state);
        }
    }

    fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// A waker that counts its wake-ups and unparks the thread that polls.
struct CountingWaker {
    wakes: AtomicUsize,
    thread: loom::thread::Thread,
}

impl Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `future` on this `loom` thread until it is ready. Returns its
/// output and how often its waker was woken.
fn block_on<F: Future>(future: F) -> (F::Output, usize) {
    let counter = std::sync::Arc::new(CountingWaker {
        wakes: AtomicUsize::new(0),
        thread: loom::thread::current(),
    });
    let waker = Waker::from(std::sync::Arc::clone(&counter));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return (output, counter.wakes.load(Ordering::SeqCst));
        }
        loom::thread::park();
    }
}

/// Polls `future` once with a counting waker and returns whether it was
/// ready, and the waker's counter.
fn poll_once<F: Future + Unpin>(future: &mut F) -> (bool, std::sync::Arc<CountingWaker>) {
    let counter = std::sync::Arc::new(CountingWaker {
        wakes: AtomicUsize::new(0),
        thread: loom::thread::current(),
    });
    let waker = Waker::from(std::sync::Arc::clone(&counter));
    let ready = std::pin::Pin::new(future).poll(&mut Context::from_waker(&waker)).is_ready();
    (ready, counter)
}

fn assert_closed<T: std::fmt::Debug>(result: &Result<T, Error>) {
    assert!(matches!(result, Err(Error::Closed { .. })), "expected Closed, got {result:?}");
}

// ---------------------------------------------------------------------------
// The pending table, with completions and `KafkaFuture`s, as the consumer's
// commits and the admin client's requests use them.

/// A commit's completion, resolved with the id it was registered under.
type IdSlot = Slot<u64>;

/// Registers a completion like `Consumer::commit_list`: returns its id and
/// future, or `None` when the table is closed.
fn register_commit(pending: &Pending<IdSlot>, event_thread: ThreadId) -> Option<(u64, KafkaFuture<u64>)> {
    let slot: IdSlot = Completion::new();
    let id = pending.register(Arc::clone(&slot)).ok()?;
    Some((id, KafkaFuture::new(slot, "commit", event_thread)))
}

/// Takes the completion of `id` and resolves it with `id`, like the
/// consumer's event thread. Returns whether the completion was still there.
fn resolve_commit(pending: &Pending<IdSlot>, id: u64, resolved: &AtomicUsize) -> bool {
    let Some(slot) = pending.take(id) else {
        return false;
    };
    assert!(slot.resolve(Ok(id)), "completion {id} was resolved twice");
    resolved.fetch_add(1, Ordering::SeqCst);
    true
}

#[test]
fn pending_register_while_event_thread_drains() {
    let event_thread = foreign_thread();
    check(move || {
        let pending = Arc::new(Pending::<IdSlot>::new());
        let queue = EventQueue::new();
        let resolved = Arc::new(AtomicUsize::new(0));

        let (first, first_future) = register_commit(&pending, event_thread).unwrap();
        queue.push(first);

        let events = {
            let (pending, queue, resolved) = (Arc::clone(&pending), Arc::clone(&queue), Arc::clone(&resolved));
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let id = queue.pop().unwrap();
                    assert!(resolve_commit(&pending, id, &resolved), "completion {id} was lost");
                    assert!(!resolve_commit(&pending, id, &resolved), "a repeated event resolved {id} again");
                }
            })
        };
        let sender = {
            let (pending, queue) = (Arc::clone(&pending), Arc::clone(&queue));
            loom::thread::spawn(move || {
                let (id, future) = register_commit(&pending, event_thread).unwrap();
                queue.push(id);
                assert_eq!(future.wait().unwrap(), id, "a future got another id's result");
                id
            })
        };

        assert_eq!(first_future.wait().unwrap(), first, "a future got another id's result");
        let second = sender.join().unwrap();
        events.join().unwrap();

        assert_ne!(first, second, "two pending completions got the same id");
        assert_eq!(resolved.load(Ordering::SeqCst), 2);
        assert_eq!(pending.len(), 0);
    });
}

/// A result that counts its drops.
struct Counted(std::sync::Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn pending_resolve_races_future_drop() {
    let event_thread = foreign_thread();
    check(move || {
        let pending = Arc::new(Pending::<Slot<Counted>>::new());
        let drops = std::sync::Arc::new(AtomicUsize::new(0));

        let slot: Slot<Counted> = Completion::new();
        let Ok(id) = pending.register(Arc::clone(&slot)) else {
            panic!("an open table rejected a completion");
        };
        let mut future = KafkaFuture::new(slot, "commit", event_thread);

        let events = {
            let (pending, drops) = (Arc::clone(&pending), std::sync::Arc::clone(&drops));
            loom::thread::spawn(move || {
                let slot = pending.take(id).expect("the completion was lost");
                assert!(slot.resolve(Ok(Counted(drops))), "the completion was resolved twice");
            })
        };
        let owner = loom::thread::spawn(move || {
            let (ready, waker) = poll_once(&mut future);
            drop(future);
            (ready, waker)
        });

        let (ready, waker) = owner.join().unwrap();
        events.join().unwrap();

        let wakes = waker.wakes.load(Ordering::SeqCst);
        assert!(wakes <= 1, "the waker was woken {wakes} times");
        assert!(!ready || wakes == 0, "a future that was ready at once was woken");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the result was not dropped exactly once");
        assert_eq!(pending.len(), 0);
    });
}

/// Shutdown racing a commit, as `Consumer::shut_down` does it: wait for
/// pending results (with a timeout that may expire), stop the event
/// thread, then resolve what is left as closed.
fn pending_shutdown_model(event_thread: ThreadId, timeout: Duration) {
    let pending = Arc::new(Pending::<IdSlot>::new());
    let queue = EventQueue::new();
    let resolved = Arc::new(AtomicUsize::new(0));

    let events = {
        let (pending, queue, resolved) = (Arc::clone(&pending), Arc::clone(&queue), Arc::clone(&resolved));
        loom::thread::spawn(move || {
            while let Some(id) = queue.pop() {
                resolve_commit(&pending, id, &resolved);
            }
        })
    };
    let sender = {
        let (pending, queue) = (Arc::clone(&pending), Arc::clone(&queue));
        loom::thread::spawn(move || {
            let (id, future) = register_commit(&pending, event_thread)?;
            queue.push(id);
            Some((id, future.wait()))
        })
    };
    let closer = {
        let (pending, queue, resolved) = (Arc::clone(&pending), Arc::clone(&queue), Arc::clone(&resolved));
        loom::thread::spawn(move || {
            pending.wait_until_empty(timeout);
            queue.stop();
            events.join().unwrap();
            for slot in pending.close() {
                assert!(slot.resolve(Err(Error::Closed { operation: "commit" })), "a completion was resolved twice");
                resolved.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let sent = sender.join().unwrap();
    closer.join().unwrap();

    match sent {
        // The table closed before the commit registered: it was never sent.
        None => assert_eq!(resolved.load(Ordering::SeqCst), 0),
        Some((id, result)) => {
            assert_eq!(resolved.load(Ordering::SeqCst), 1, "the commit was not resolved exactly once");
            match result {
                Ok(resolved_id) => assert_eq!(resolved_id, id, "a future got another id's result"),
                closed => assert_closed(&closed),
            }
        }
    }
    assert_eq!(pending.len(), 0);
    assert!(register_commit(&pending, event_thread).is_none(), "a closed table accepted a commit");
}

#[test]
fn pending_shutdown_races_send() {
    let event_thread = foreign_thread();
    // Duration::MAX has no deadline, so the wait is untimed.
    check(move || pending_shutdown_model(event_thread, Duration::MAX));
}

#[test]
fn pending_shutdown_times_out_racing_send() {
    let event_thread = foreign_thread();
    check_with_expiring_waits(move || pending_shutdown_model(event_thread, TIMEOUT));
}

#[test]
fn pending_several_senders() {
    let event_thread = foreign_thread();
    check(move || {
        let pending = Arc::new(Pending::<IdSlot>::new());
        let queue = EventQueue::new();
        let resolved = Arc::new(AtomicUsize::new(0));

        let events = {
            let (pending, queue, resolved) = (Arc::clone(&pending), Arc::clone(&queue), Arc::clone(&resolved));
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let id = queue.pop().unwrap();
                    assert!(resolve_commit(&pending, id, &resolved), "completion {id} was lost");
                }
            })
        };
        let blocking = {
            let (pending, queue) = (Arc::clone(&pending), Arc::clone(&queue));
            loom::thread::spawn(move || {
                let (id, future) = register_commit(&pending, event_thread).unwrap();
                queue.push(id);
                assert_eq!(future.wait().unwrap(), id, "a future got another id's result");
                id
            })
        };
        let awaiting = {
            let (pending, queue) = (Arc::clone(&pending), Arc::clone(&queue));
            loom::thread::spawn(move || {
                let (id, future) = register_commit(&pending, event_thread).unwrap();
                queue.push(id);
                let (result, wakes) = block_on(future);
                assert_eq!(result.unwrap(), id, "a future got another id's result");
                assert!(wakes <= 1, "the waker was woken {wakes} times");
                id
            })
        };

        let first = blocking.join().unwrap();
        let second = awaiting.join().unwrap();
        events.join().unwrap();

        assert_ne!(first, second, "two pending completions got the same id");
        assert_eq!(resolved.load(Ordering::SeqCst), 2);
        assert_eq!(pending.len(), 0);
    });
}

#[test]
fn kafka_future_wait_timeout_races_resolve() {
    let event_thread = foreign_thread();
    check_with_expiring_waits(move || {
        let pending = Arc::new(Pending::<IdSlot>::new());
        let resolved = Arc::new(AtomicUsize::new(0));
        let (id, future) = register_commit(&pending, event_thread).unwrap();

        let events = {
            let (pending, resolved) = (Arc::clone(&pending), Arc::clone(&resolved));
            loom::thread::spawn(move || assert!(resolve_commit(&pending, id, &resolved), "the completion was lost"))
        };

        match future.wait_timeout(TIMEOUT) {
            Ok(resolved_id) => assert_eq!(resolved_id, id, "a future got another id's result"),
            Err(error) => assert!(matches!(error, Error::TimedOut { .. }), "{error:?}"),
        }
        events.join().unwrap();

        assert_eq!(resolved.load(Ordering::SeqCst), 1);
        assert_eq!(pending.len(), 0);
    });
}

// ---------------------------------------------------------------------------
// The producer's delivery table and `DeliveryFuture`s.

/// The model's record of one send's owned payload.
struct SendRecord {
    /// Whether librdkafka may still read the payload: from a successful
    /// produce until its report, or until the client is destroyed when
    /// shutdown resolved it.
    in_flight: AtomicBool,
    drops: AtomicUsize,
    /// Drops that happened while `in_flight` was set.
    early_drops: AtomicUsize,
}

impl SendRecord {
    fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            in_flight: AtomicBool::new(false),
            drops: AtomicUsize::new(0),
            early_drops: AtomicUsize::new(0),
        })
    }

    fn assert_dropped_once(&self, index: u8) {
        assert_eq!(self.drops.load(Ordering::SeqCst), 1, "the payload of send {index} was not dropped exactly once");
        assert_eq!(
            self.early_drops.load(Ordering::SeqCst),
            0,
            "the payload of send {index} was dropped while librdkafka could still read it"
        );
    }
}

/// An owned payload whose bytes are the index of its send. Its drop is
/// recorded, not asserted, because the table drops payloads under
/// `catch_unwind`.
struct TrackedPayload {
    index: u8,
    record: std::sync::Arc<SendRecord>,
}

impl AsRef<[u8]> for TrackedPayload {
    fn as_ref(&self) -> &[u8] {
        std::slice::from_ref(&self.index)
    }
}

impl Drop for TrackedPayload {
    fn drop(&mut self) {
        if self.record.in_flight.load(Ordering::SeqCst) {
            self.record.early_drops.fetch_add(1, Ordering::SeqCst);
        }
        self.record.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn tracked_payload(index: u8, record: &std::sync::Arc<SendRecord>) -> Option<Box<Payloads>> {
    let value = OwnedPayload::Custom(std::sync::Arc::new(TrackedPayload {
        index,
        record: std::sync::Arc::clone(record),
    }));
    Some(Box::new((None, Some(value))))
}

/// Returns the outcome of a successful delivery of send `index`, at offset
/// `index`.
fn delivered(index: u8) -> Outcome {
    Outcome {
        code: 0,
        partition: 0,
        offset: i64::from(index),
        timestamp: Timestamp::NotAvailable,
    }
}

fn failed() -> Outcome {
    Outcome {
        code: ErrorCode::MESSAGE_TIMED_OUT.raw(),
        partition: -1,
        offset: -1,
        timestamp: Timestamp::NotAvailable,
    }
}

/// An event in the stand-in queue: a send's id and index.
type Report = (u64, u8);

/// Sends send `index` like `Producer::send` with a produce call that
/// succeeds: registers it with its payload, pushes its id to the queue and
/// returns its future. Returns `None` after checking that a closed table
/// handed the payload back.
fn send_tracked(
    table: &Arc<DeliveryTable>,
    queue: &EventQueue<Report>,
    index: u8,
    record: &std::sync::Arc<SendRecord>,
) -> Option<DeliveryFuture> {
    let id = match table.register(0, tracked_payload(index, record)) {
        Ok(id) => id,
        Err(payloads) => {
            assert!(payloads.is_some(), "a closed table kept the payload of send {index}");
            return None;
        }
    };
    record.in_flight.store(true, Ordering::SeqCst);
    queue.push((id, index));
    Some(DeliveryFuture::new(table, id))
}

/// Applies the report of one send like the producer's event thread:
/// librdkafka lets go of the payload when the event is destroyed, then the
/// report is applied. Returns the number of reports that matched no send.
fn apply(table: &DeliveryTable, report: Report, outcome: Outcome, records: &[std::sync::Arc<SendRecord>]) -> usize {
    let (id, index) = report;
    records[usize::from(index)].in_flight.store(false, Ordering::SeqCst);
    let applied = table.apply(&[(id, outcome)]);
    let unknown = applied.unknown;
    let retained = applied.finish();
    assert!(retained.is_empty(), "a report retained payloads");
    unknown
}

fn assert_delivered(result: Result<crate::Delivery, crate::DeliveryError>, index: u8) {
    match result {
        Ok(delivery) => assert_eq!(delivery.offset, i64::from(index), "send {index} got another send's report"),
        Err(error) => panic!("send {index} failed: {error:?}"),
    }
}

/// Closes `table`, as the producer does when it shuts down, drops the
/// model's last handle on it and checks that the table is freed. After its
/// close it keeps a reference to itself only while a future owns a slot.
fn assert_table_freed(table: Arc<DeliveryTable>) {
    let weak = Arc::downgrade(&table);
    assert!(table.close().finish().is_empty(), "a close with every send reported retained payloads");
    drop(table);
    assert!(weak.upgrade().is_none(), "the delivery table outlived its handles and futures");
}

#[test]
fn delivery_register_while_event_thread_drains() {
    check(|| {
        let table = DeliveryTable::new();
        let queue = EventQueue::new();
        let records = [SendRecord::new(), SendRecord::new()];

        let first = send_tracked(&table, &queue, 0, &records[0]).unwrap();

        let events = {
            let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let report = queue.pop().unwrap();
                    assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "a report was lost");
                    // A repeated report may find the slot reused by the
                    // other send, and must not resolve it.
                    assert_eq!(apply(&table, report, delivered(9), &records), 1, "a repeated report resolved a send");
                }
            })
        };
        let sender = {
            let (table, queue, record) = (Arc::clone(&table), Arc::clone(&queue), std::sync::Arc::clone(&records[1]));
            loom::thread::spawn(move || assert_delivered(send_tracked(&table, &queue, 1, &record).unwrap().wait(), 1))
        };

        assert_delivered(first.wait(), 0);
        sender.join().unwrap();
        events.join().unwrap();

        assert_eq!(table.unreported(), 0);
        records[0].assert_dropped_once(0);
        records[1].assert_dropped_once(1);
        assert_table_freed(table);
    });
}

fn delivery_drop_model(outcome: Outcome) {
    let table = DeliveryTable::new();
    let queue = EventQueue::new();
    let records = [SendRecord::new()];
    let mut future = send_tracked(&table, &queue, 0, &records[0]).unwrap();

    let events = {
        let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
        loom::thread::spawn(move || {
            let report = queue.pop().unwrap();
            assert_eq!(apply(&table, report, outcome, &records), 0, "the report was lost");
        })
    };
    let owner = loom::thread::spawn(move || {
        let (ready, waker) = poll_once(&mut future);
        drop(future);
        (ready, waker)
    });

    let (ready, waker) = owner.join().unwrap();
    events.join().unwrap();

    let wakes = waker.wakes.load(Ordering::SeqCst);
    assert!(wakes <= 1, "the waker was woken {wakes} times");
    assert!(!ready || wakes == 0, "a future that was ready at once was woken");
    assert_eq!(table.unreported(), 0);
    records[0].assert_dropped_once(0);
    assert_table_freed(table);
}

#[test]
fn delivery_report_races_future_drop() {
    check(|| delivery_drop_model(delivered(0)));
}

#[test]
fn delivery_failure_races_future_drop() {
    check(|| delivery_drop_model(failed()));
}

/// The outcome of the send in [`delivery_shutdown_model`].
enum Sent {
    /// The table was closed before the send registered.
    Rejected,
    /// The produce call failed, and the send took back what the table
    /// returned.
    Unregistered(Option<Box<Payloads>>),
    /// The send's future resolved with this.
    Resolved(Result<crate::Delivery, crate::DeliveryError>),
}

/// Shutdown racing a send, as `Producer::shut_down` does it: wait for the
/// reports (with a timeout that may expire), stop the event thread, close
/// the table, and keep the payloads it retains until the client is
/// destroyed. With `produce_fails`, the send's produce call fails and the
/// send gives its slot back with `unregister`.
///
/// When the close runs between a failed send's `register` and
/// `unregister`, the close has already retained the payload, so the send
/// gets none back. The payload is still dropped exactly once, and the slot
/// is freed.
fn delivery_shutdown_model(timeout: Duration, produce_fails: bool) {
    let table = DeliveryTable::new();
    let queue = EventQueue::new();
    let records = [SendRecord::new()];

    let events = {
        let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
        loom::thread::spawn(move || {
            while let Some(report) = queue.pop() {
                assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "a report was lost");
            }
        })
    };
    let sender = {
        let (table, queue, record) = (Arc::clone(&table), Arc::clone(&queue), std::sync::Arc::clone(&records[0]));
        loom::thread::spawn(move || {
            if !produce_fails {
                return match send_tracked(&table, &queue, 0, &record) {
                    Some(future) => Sent::Resolved(future.wait()),
                    None => Sent::Rejected,
                };
            }
            match table.register(0, tracked_payload(0, &record)) {
                Ok(id) => Sent::Unregistered(table.unregister(id)),
                Err(payloads) => {
                    assert!(payloads.is_some(), "a closed table kept the payload of a send");
                    Sent::Rejected
                }
            }
        })
    };
    let closer = {
        let (table, queue) = (Arc::clone(&table), Arc::clone(&queue));
        loom::thread::spawn(move || {
            table.wait_until_reported(timeout);
            queue.stop();
            events.join().unwrap();
            table.close().finish()
        })
    };

    let sent = sender.join().unwrap();
    let retained = closer.join().unwrap();
    match sent {
        Sent::Rejected => assert!(retained.is_empty()),
        Sent::Unregistered(Some(payloads)) => {
            assert_eq!(payloads.1.as_ref().map(OwnedPayload::as_bytes), Some(&[0][..]));
            assert!(retained.is_empty(), "the payload of a failed send was retained");
        }
        Sent::Unregistered(None) => {
            assert_eq!(retained.len(), 1, "the payload of a failed send was lost");
        }
        Sent::Resolved(Ok(delivery)) => {
            assert_eq!(delivery.offset, 0, "the send got another send's report");
            assert!(retained.is_empty(), "the payload of a delivered send was retained");
        }
        Sent::Resolved(Err(error)) => {
            assert!(matches!(error.error, Error::Closed { .. }), "{error:?}");
            assert!(error.value.is_none(), "shutdown handed back a payload librdkafka may still read");
            assert_eq!(retained.len(), 1, "shutdown did not retain the payload of an unreported send");
        }
    }
    // The client is destroyed: librdkafka lets go of retained payloads.
    records[0].in_flight.store(false, Ordering::SeqCst);
    drop(retained);

    assert_eq!(table.unreported(), 0);
    assert!(table.register(0, None).is_err(), "a closed table accepted a send");
    records[0].assert_dropped_once(0);
    assert_table_freed(table);
}

#[test]
fn delivery_shutdown_races_send() {
    // Duration::MAX has no deadline, so the wait is untimed.
    check(|| delivery_shutdown_model(Duration::MAX, false));
}

#[test]
fn delivery_shutdown_races_failed_produce() {
    check(|| delivery_shutdown_model(Duration::MAX, true));
}

#[test]
fn delivery_shutdown_times_out_racing_send() {
    check_with_expiring_waits(|| delivery_shutdown_model(TIMEOUT, false));
}

#[test]
fn delivery_several_senders() {
    check(|| {
        let table = DeliveryTable::new();
        let queue = EventQueue::new();
        let records = [SendRecord::new(), SendRecord::new()];

        let events = {
            let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let report = queue.pop().unwrap();
                    assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "a report was lost");
                }
            })
        };
        let blocking = {
            let (table, queue, record) = (Arc::clone(&table), Arc::clone(&queue), std::sync::Arc::clone(&records[0]));
            loom::thread::spawn(move || assert_delivered(send_tracked(&table, &queue, 0, &record).unwrap().wait(), 0))
        };
        let awaiting = {
            let (table, queue, record) = (Arc::clone(&table), Arc::clone(&queue), std::sync::Arc::clone(&records[1]));
            loom::thread::spawn(move || {
                let (result, wakes) = block_on(send_tracked(&table, &queue, 1, &record).unwrap());
                assert_delivered(result, 1);
                assert!(wakes <= 1, "the waker was woken {wakes} times");
            })
        };

        blocking.join().unwrap();
        awaiting.join().unwrap();
        events.join().unwrap();

        assert_eq!(table.unreported(), 0);
        records[0].assert_dropped_once(0);
        records[1].assert_dropped_once(1);
        assert_table_freed(table);
    });
}

/// A sending thread serving delivery reports beside the event thread, as
/// `Producer::send` does every few hundred sends: either may apply either
/// report, and run the other send's waker and payload drop.
#[test]
fn delivery_sender_serves_reports() {
    check(|| {
        let table = DeliveryTable::new();
        let queue = EventQueue::new();
        let records = [SendRecord::new(), SendRecord::new()];

        let first = send_tracked(&table, &queue, 0, &records[0]).unwrap();

        let events = {
            let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
            loom::thread::spawn(move || {
                let report = queue.pop().unwrap();
                assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "a report was lost");
            })
        };
        let sender = {
            let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
            loom::thread::spawn(move || {
                let (result, wakes) = block_on(async {
                    let future = send_tracked(&table, &queue, 1, &records[1]).unwrap();
                    let report = queue.pop().unwrap();
                    assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "a report was lost");
                    future.await
                });
                assert_delivered(result, 1);
                assert!(wakes <= 1, "the waker was woken {wakes} times");
            })
        };

        assert_delivered(first.wait(), 0);
        sender.join().unwrap();
        events.join().unwrap();

        assert_eq!(table.unreported(), 0);
        records[0].assert_dropped_once(0);
        records[1].assert_dropped_once(1);
        assert_table_freed(table);
    });
}

/// Sends without owned payloads, which take slots from their thread's
/// block without the lock: two threads send and wait while the event
/// thread applies the reports. The threads then end, which abandons their
/// blocks, and a send from the main thread, which claims a block and so
/// counts the abandoned ones, is flushed.
#[test]
fn delivery_thread_blocks() {
    check(|| {
        let table = DeliveryTable::new();
        let queue = EventQueue::new();

        let events = {
            let (table, queue) = (Arc::clone(&table), Arc::clone(&queue));
            loom::thread::spawn(move || {
                for _ in 0..3 {
                    let (id, index) = queue.pop().unwrap();
                    let applied = table.apply(&[(id, delivered(index))]);
                    assert_eq!(applied.unknown, 0, "the report of send {index} matched no send");
                    assert!(applied.finish().is_empty(), "a report retained payloads");
                }
            })
        };
        let senders: Vec<_> = (0..2)
            .map(|index| {
                let (table, queue) = (Arc::clone(&table), Arc::clone(&queue));
                loom::thread::spawn(move || {
                    let id = table.register(0, None).unwrap();
                    queue.push((id, index));
                    assert_delivered(DeliveryFuture::new(&table, id).wait(), index);
                })
            })
            .collect();
        for sender in senders {
            sender.join().unwrap();
        }

        let id = table.register(0, None).unwrap();
        assert_eq!(table.unreported(), 1, "sends without a report, after two reported ones and a new one");
        queue.push((id, 2));
        assert!(table.wait_until_reported(TIMEOUT), "the flush ended before the last report");
        assert_eq!(table.unreported(), 0);
        assert_delivered(DeliveryFuture::new(&table, id).wait(), 2);

        events.join().unwrap();
        assert_table_freed(table);
    });
}

/// Futures that outlive the producer: the event thread has the last
/// handle on the table and closes and drops it after applying the
/// reports, while one future is read and the other dropped on other
/// threads, both possibly without the lock. The table must stay alive
/// until the last future is done with it, then be freed.
#[test]
fn delivery_futures_outlive_producer() {
    check(|| {
        let table = DeliveryTable::new();
        let queue = EventQueue::new();
        let records = [SendRecord::new(), SendRecord::new()];
        let read = send_tracked(&table, &queue, 0, &records[0]).unwrap();
        let dropped = send_tracked(&table, &queue, 1, &records[1]).unwrap();
        let weak = Arc::downgrade(&table);

        let events = {
            let (queue, records) = (Arc::clone(&queue), records.clone());
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    let report = queue.pop().unwrap();
                    assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "a report was lost");
                }
                // The producer shuts down: it closes the table, which may
                // race the read of a delivered result, then lets go of it.
                assert!(table.close().finish().is_empty(), "a close after every report retained payloads");
                drop(table);
            })
        };
        let reader = loom::thread::spawn(move || assert_delivered(read.wait(), 0));
        drop(dropped);

        reader.join().unwrap();
        events.join().unwrap();

        records[0].assert_dropped_once(0);
        records[1].assert_dropped_once(1);
        assert!(weak.upgrade().is_none(), "the delivery table outlived its handles and futures");
    });
}

/// Checks that a sender waiting for room in a full queue, as
/// `Producer::send_wait` does, wakes when a report arrives or, with
/// `close`, when the table closes.
fn delivery_wait_for_progress_model(close: bool) {
    let table = DeliveryTable::new();
    let queue = EventQueue::new();
    let records = [SendRecord::new()];
    let future = send_tracked(&table, &queue, 0, &records[0]).unwrap();
    // Read while the send is in flight, as `send_wait` reads it before the
    // send that finds the queue full: a report is still to come.
    let seen = table.progress();

    let waiter = {
        let table = Arc::clone(&table);
        loom::thread::spawn(move || table.wait_for_progress(seen, std::time::Instant::now() + TIMEOUT))
    };
    let events = {
        let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
        loom::thread::spawn(move || {
            let report = queue.pop().unwrap();
            apply(&table, report, delivered(report.1), &records);
        })
    };
    let closer = close.then(|| {
        let table = Arc::clone(&table);
        loom::thread::spawn(move || table.close().finish())
    });

    waiter.join().unwrap();
    events.join().unwrap();
    let retained = closer.map(|closer| closer.join().unwrap()).unwrap_or_default();

    match future.wait() {
        Ok(delivery) => {
            assert_eq!(delivery.offset, 0, "the send got another send's report");
            assert!(retained.is_empty(), "the payload of a delivered send was retained");
        }
        Err(error) => {
            assert!(close, "the send failed without a close: {error:?}");
            assert!(matches!(error.error, Error::Closed { .. }), "{error:?}");
            assert_eq!(retained.len(), 1, "shutdown did not retain the payload of an unreported send");
        }
    }
    records[0].in_flight.store(false, Ordering::SeqCst);
    drop(retained);
    assert_eq!(table.unreported(), 0);
    records[0].assert_dropped_once(0);
    assert_table_freed(table);
}

#[test]
fn delivery_wait_for_progress_wakes_on_report() {
    check(|| delivery_wait_for_progress_model(false));
}

#[test]
fn delivery_wait_for_progress_wakes_on_close() {
    check(|| delivery_wait_for_progress_model(true));
}

#[test]
fn delivery_wait_timeout_races_report() {
    check_with_expiring_waits(|| {
        let table = DeliveryTable::new();
        let queue = EventQueue::new();
        let records = [SendRecord::new()];
        let future = send_tracked(&table, &queue, 0, &records[0]).unwrap();

        let events = {
            let (table, queue, records) = (Arc::clone(&table), Arc::clone(&queue), records.clone());
            loom::thread::spawn(move || {
                let report = queue.pop().unwrap();
                assert_eq!(apply(&table, report, delivered(report.1), &records), 0, "the report was lost");
            })
        };

        match future.wait_timeout(TIMEOUT) {
            Ok(delivery) => assert_eq!(delivery.offset, 0, "the send got another send's report"),
            Err(error) => assert!(matches!(error.error, Error::TimedOut { .. }), "{error:?}"),
        }
        events.join().unwrap();

        assert_eq!(table.unreported(), 0);
        records[0].assert_dropped_once(0);
        assert_table_freed(table);
    });
}
