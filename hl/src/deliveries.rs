//! The producer's table of sends awaiting their delivery reports, and the
//! futures that read it.
//!
//! This is the producer's side of the paired queue, specialised for volume.
//! A send costs one slot of 16 bytes and an 8-byte future, with no
//! allocation of its own unless it has owned payloads. A send without
//! owned payloads takes its slot from a block that its thread claimed
//! under the lock, up to 16 slots at a time, so most sends take no lock.
//! A whole delivery-report event is applied under one lock. The
//! invariants:
//!
//! 1. A slot is taken ([`DeliveryTable::register`]) before
//!    `rd_kafka_produceva` can report the send. A thread writes the slots
//!    of its block without the lock. Nothing else writes them before the
//!    send's id reaches librdkafka, which reports only after that.
//! 2. The lock is held only inside this module's methods, which call
//!    neither librdkafka nor user code: wakers are woken and payloads
//!    dropped after the lock is released.
//! 3. Reports find their slot by the id in the message opaque, which packs
//!    the slot's index, a generation that changes each time the slot is
//!    reused, and the table's number (`table_registry`), never by
//!    position.
//! 4. Every slot is resolved exactly once: by its report, or by
//!    [`DeliveryTable::close`]. A slot is freed once both its report has
//!    arrived and its future is done with it. A slot is reused only with
//!    its whole block, so memory is bounded by the sends in flight plus
//!    the results not yet read, times at most the 16 slots of a block. A
//!    test that reads results in random order makes 2.6 times as many.
//!
//! Reading a delivered result takes no lock either: the future reads its
//! slot and frees it with one compare-exchange (see [`SlotCell`]), or on
//! Linux with a plain store (see `close_race`). Futures hold no reference
//! count: the table holds a strong reference to itself until it closes,
//! and after that while a future owns a slot. Atomic read-modify-write
//! operations were a main cost per message in profiles on a virtual
//! machine (about 10 ns each). With a lock for each and an `Arc<str>`
//! topic, a send and the read of its result took six of them. On Linux
//! they take none now, elsewhere one.

// A delivery result is moved once, from the table to its future; boxing
// the error would cost an allocation per failed delivery instead.
#![allow(clippy::result_large_err)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, KafkaError};
use crate::message::Timestamp;
use crate::payload::OwnedPayload;
use crate::segments::Segments;
use crate::sync::{Arc, AtomicBool, AtomicI64, AtomicU64, Condvar, Mutex, Ordering};
use crate::table_registry;

mod blocks;
mod close_race;
mod future;
mod slot;

use blocks::{LockedBlock, SharedBlock};
pub use future::DeliveryFuture;
use slot::{
    delivered, delivered_large, delivery_of, failed, is_resolved, Slot, SlotCell, DELIVERED, DELIVERED_KEPT, DELIVERED_LARGE, FAILED, NO_STAMP_BASE, ORPHANED,
    STATE_MASK, WAITING,
};

/// The place a message was stored: the result of a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic. Topic names are kept for the life of the process, one
    /// copy per distinct name, so a delivery can borrow its topic's name.
    pub topic: &'static str,
    /// The partition the message was written to.
    pub partition: i32,
    /// The message's offset in that partition, or
    /// [`OFFSET_INVALID`](crate::OFFSET_INVALID) when the message is
    /// stored at an unknown offset.
    ///
    /// The unknown offset happens with `enable.idempotence=true`: when the
    /// broker responds to a retried batch with `DUPLICATE_SEQUENCE_NUMBER`,
    /// librdkafka 2.12.1 counts its messages as delivered without an
    /// offset. The failover tests saw it in one run of eight, across a
    /// broker restart.
    pub offset: i64,
    /// The message timestamp, which may be [`Timestamp::NotAvailable`]
    /// when the offset is unknown.
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

/// The outcome of one report, as read from librdkafka.
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

/// The highest slot index: ids store the index + 1 in 32 bits.
const MAX_INDEX: u32 = u32::MAX - 1;

/// A small slab for the values few slots have.
struct SideTable<T> {
    values: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> SideTable<T> {
    const fn new() -> Self {
        Self { values: Vec::new(), free: Vec::new() }
    }

    /// Stores `value` and returns its reference: index + 1, never 0. Each
    /// value belongs to a slot, so there are fewer than 2^32 - 1 of them.
    fn insert(&mut self, value: T) -> u32 {
        let index = match self.free.pop() {
            Some(index) => {
                self.values[index as usize] = Some(value);
                index as usize
            }
            None => {
                self.values.push(Some(value));
                self.values.len() - 1
            }
        };
        debug_assert!(index < u32::MAX as usize, "more side-table values than slots");
        index as u32 + 1
    }

    fn get(&self, reference: u32) -> Option<&T> {
        let index = (reference as usize).checked_sub(1)?;
        self.values.get(index)?.as_ref()
    }

    fn replace(&mut self, reference: u32, value: T) -> Option<T> {
        let index = (reference as usize).checked_sub(1)?;
        self.values.get_mut(index)?.replace(value)
    }

    /// Takes the value out; 0 is no value.
    fn take(&mut self, reference: u32) -> Option<T> {
        let index = (reference as usize).checked_sub(1)?;
        let value = self.values.get_mut(index)?.take()?;
        self.free.push(index as u32);
        Some(value)
    }
}

/// The source of [`DeliveryTable::id`]s, which are never reused, unlike
/// table numbers.
static NEXT_TABLE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The part of the table under its lock.
struct Table {
    /// Slots made so far, a multiple of [`BLOCK_LEN`](blocks::BLOCK_LEN): every index below
    /// it is allocated in [`DeliveryTable::slots`].
    len: u32,
    /// The first slot of the block that a claim checks first for reuse.
    cursor: u32,
    /// Claims that will still make a new block without checking for a free
    /// one, and how many the last run of misses was given.
    unchecked_claims: u32,
    missed_checks: u32,
    /// Stamped into the ids of each new block's sends, so that a report
    /// can never resolve a later send in the same slot.
    next_generation: u16,
    wakers: SideTable<Waker>,
    payloads: SideTable<Box<Payloads>>,
    /// Results of delivered sends too large for their slot.
    large: SideTable<Outcome>,
    /// Sends without a report, less those registered in `blocks`: the
    /// reports of those are subtracted here before their sends are added,
    /// so this may be negative. See [`DeliveryTable::unreported_locked`].
    unreported: i64,
    /// The blocks of sending threads whose sends are not yet counted in
    /// `unreported`.
    blocks: Vec<Arc<SharedBlock>>,
    /// The block that sends with owned payloads take their slots from,
    /// under the lock.
    locked_block: Option<LockedBlock>,
    /// The unused rest of blocks that their threads gave up (first slot,
    /// length): unused slots that the next claims hand out first.
    rests: Vec<(u32, u32)>,
    closed: bool,
    /// Once closed: the slots that a future (or a sender about to make
    /// one) still owns, counted by the close.
    future_slots: usize,
    /// The table's own strong reference, so that futures need no
    /// reference count of their own: taken by the first send, and given
    /// up by the close when no future owns a slot, else by the last of
    /// them.
    self_reference: Option<Arc<DeliveryTable>>,
}

/// The table's reference to itself, given up by the last future: to be
/// dropped once nothing borrows the table any more, because that may free
/// it.
type LastReference = Option<Arc<DeliveryTable>>;

impl Table {
    /// Records that a future is done with its slot, which only counts
    /// once the table is closed.
    fn disown(&mut self) -> LastReference {
        if !self.closed {
            return None;
        }
        self.future_slots -= 1;
        if self.future_slots == 0 {
            self.self_reference.take()
        } else {
            None
        }
    }
}

/// The table of a producer's sends.
///
/// The table frees itself only once it is closed: the producer always
/// closes it when it shuts down.
pub(crate) struct DeliveryTable {
    /// The table's number in `table_registry`, in the top 16 bits of every
    /// id it gives out.
    number: u16,
    /// A number no other table in the process ever has, which names the
    /// table in threads' [`BLOCKS`](blocks::BLOCKS).
    id: u64,
    /// `Table::closed`, for sends that do not take the lock. It only turns
    /// away sends made after the close. The producer closes its table only
    /// when no send can run any more, because its close takes `&mut self`.
    closed: AtomicBool,
    /// The slots, which never move, so that futures can read their own
    /// without the lock.
    slots: Segments<SlotCell>,
    table: Mutex<Table>,
    /// Incremented, under the table's lock, by every applied report event,
    /// so that `send_wait` can read it on every send without the lock.
    progress: AtomicU64,
    /// Notified when reports are applied or the table closes.
    changed: Condvar,
    /// Whether futures free their delivered slots with a plain store
    /// rather than a compare-exchange, because the close runs a barrier on
    /// every thread (see `close_race`).
    unfenced_reads: bool,
    /// The first timestamp of a delivered send, from which delivered slots
    /// count theirs, or [`NO_STAMP_BASE`]. Written once, under the lock,
    /// before the first slot that needs it.
    stamp_base: AtomicI64,
    /// The key of the producer's event thread ([`crate::event::current_key`]),
    /// which applies the reports, so where a blocking wait would never
    /// end; 0 until set.
    event_thread: AtomicU64,
}

/// Splits an id into the slot index and the generation. An id of 0 gives
/// an index past every slot.
#[inline]
fn split_id(id: u64) -> (u32, u32) {
    ((id as u32).wrapping_sub(1), ((id >> 32) & 0xffff) as u32)
}

/// Asks the processor to bring `value` into the cache, without waiting.
#[inline]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch reads nothing the program sees and cannot
        // fault, and every x86-64 processor has SSE.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Returns the number of the table that gave out `id`.
#[inline]
fn table_number(id: u64) -> u16 {
    (id >> 48) as u16
}

impl DeliveryTable {
    /// Creates a table, or returns `None` when [`table_registry::CAPACITY`]
    /// tables exist already.
    pub(crate) fn try_new() -> Option<Arc<Self>> {
        let number = table_registry::claim()?;
        let table = Arc::new(Self {
            number,
            id: NEXT_TABLE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            closed: AtomicBool::new(false),
            #[cfg(not(all(test, loom)))]
            slots: Segments::zeroed(),
            #[cfg(all(test, loom))]
            slots: Segments::new(SlotCell::free),
            table: Mutex::new(Table {
                len: 0,
                cursor: 0,
                unchecked_claims: 0,
                missed_checks: 0,
                next_generation: 0,
                wakers: SideTable::new(),
                payloads: SideTable::new(),
                large: SideTable::new(),
                unreported: 0,
                blocks: Vec::new(),
                locked_block: None,
                rests: Vec::new(),
                closed: false,
                future_slots: 0,
                self_reference: None,
            }),
            progress: AtomicU64::new(0),
            changed: Condvar::new(),
            unfenced_reads: close_race::enabled(),
            stamp_base: AtomicI64::new(NO_STAMP_BASE),
            event_thread: AtomicU64::new(0),
        });
        table_registry::publish(number, Arc::as_ptr(&table));
        Some(table)
    }

    /// Creates a table for a test.
    #[cfg(test)]
    pub(crate) fn new() -> Arc<Self> {
        Self::try_new().expect("the delivery table registry is full")
    }

    /// Returns slot `index`, which must be below `Table::len`.
    #[inline]
    fn cell(&self, index: u32) -> &SlotCell {
        self.slots.get_or_allocate(index)
    }

    /// Finds the slot that awaits the report with `id`, and returns it with
    /// a copy of its contents.
    fn awaiting(&self, table: &Table, id: u64) -> Option<(&SlotCell, Slot)> {
        let (index, generation) = split_id(id);
        if index >= table.len {
            return None;
        }
        let cell = self.cell(index);
        let slot = cell.load();
        slot.awaits(generation).then_some((cell, slot))
    }

    /// Finds the slot of a live future, with its state: waiting or with its
    /// result. The future owns the slot, which nothing else frees meanwhile.
    fn owned(&self, table: &Table, id: u64) -> Option<(u32, u32)> {
        let (index, _) = split_id(id);
        (index < table.len).then(|| (index, self.cell(index).state()))
    }

    /// Gives a slot back after `rd_kafka_produceva` failed, returning the
    /// payloads it held.
    ///
    /// When the producer's close ran since `register`, it resolved the send
    /// and retained its payloads, so none come back. The slot is freed in
    /// either case.
    pub(crate) fn unregister(&self, id: u64) -> Option<Box<Payloads>> {
        let mut table = self.table.lock();
        let (index, payloads, waker) = match self.owned(&table, id) {
            Some((index, WAITING)) if self.awaiting(&table, id).is_some() => {
                let slot = self.cell(index).load();
                let payloads = table.payloads.take(slot.payloads());
                let waker = table.wakers.take(slot.waker());
                table.unreported -= 1;
                (index, payloads, waker)
            }
            // Resolved by the close: no future saw it, so the sender still
            // owns the slot.
            Some((index, FAILED)) => (index, None, None),
            _ => return None,
        };
        self.cell(index).free_under_lock();
        let last = table.disown();
        let idle = self.unreported_locked(&table) == 0;
        drop(table);

        // No future saw this send, so there is no waker; dropped here in
        // any case, with no lock held. The caller holds a reference to the
        // table, so dropping `last` does not free it.
        drop(waker);
        drop(last);
        if idle {
            self.changed.notify_all();
        }
        payloads
    }

    /// Records the key of the thread that applies the reports.
    pub(crate) fn set_event_thread(&self, key: u64) {
        self.event_thread.store(key, Ordering::Relaxed);
    }

    fn on_event_thread(&self) -> bool {
        let key = self.event_thread.load(Ordering::Relaxed);
        key != 0 && key == crate::event::current_key()
    }

    /// Returns the base for delivered slots' timestamps, taking `timestamp`
    /// as the base when there is none yet. Only under the lock.
    #[inline]
    fn stamp_base(&self, timestamp: Timestamp) -> i64 {
        let base = self.stamp_base.load(Ordering::Relaxed);
        match timestamp.milliseconds() {
            // A timestamp equal to the mark of no base cannot be the base.
            Some(milliseconds) if base == NO_STAMP_BASE && milliseconds != NO_STAMP_BASE => {
                // Stored before the slot's word, which is stored with
                // `Release`, so a future that reads the slot reads this too.
                self.stamp_base.store(milliseconds, Ordering::Relaxed);
                milliseconds
            }
            _ => base,
        }
    }

    /// Applies the reports of one event: each `(id, outcome)` resolves its
    /// slot. Returns the wakers to wake and the payloads to drop, both to
    /// be handled after this returns, with no lock held.
    pub(crate) fn apply(&self, reports: &[(u64, Outcome)]) -> Applied {
        // The slots were written thousands of sends ago and have mostly
        // left the cache: ask for all of them at once rather than wait for
        // each in turn.
        for &(id, _) in reports {
            if let Some(cell) = self.slots.get(split_id(id).0) {
                prefetch(cell);
            }
        }

        let mut applied = Applied::default();
        let mut table = self.table.lock();

        for &(id, outcome) in reports {
            let Some((cell, slot)) = self.awaiting(&table, id) else {
                applied.unknown += 1;
                continue;
            };
            if slot.state() == ORPHANED {
                applied.payloads.extend(table.payloads.take(slot.payloads()).map(|payloads| *payloads));
                cell.free_under_lock();
            } else {
                applied.wakers.extend(table.wakers.take(slot.waker()));
                let resolved = if outcome.code == 0 {
                    applied.payloads.extend(table.payloads.take(slot.payloads()).map(|payloads| *payloads));
                    match delivered(slot.word, outcome, self.stamp_base(outcome.timestamp)) {
                        Some(resolved) => resolved,
                        None => delivered_large(slot.word, table.large.insert(outcome)),
                    }
                } else {
                    failed(slot.word, outcome.code, slot.payloads())
                };
                cell.store(resolved);
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
    ///
    /// It also counts the slots that futures still own, which keep the
    /// table alive from now on. When there are none, the table lets go of
    /// its own reference, so the caller's last one frees it.
    pub(crate) fn close(&self) -> Applied {
        let mut applied = Applied::default();
        let mut table = self.table.lock();
        if table.closed {
            return applied;
        }

        // Futures may take delivered results without a read-modify-write
        // as this scans: then the close lists the slots it counts, after a
        // barrier that it runs with the lock released (see `close_race`).
        let mut close = None;
        if self.unfenced_reads && (0..table.len).any(|index| self.cell(index).state() == DELIVERED) {
            drop(table);
            close = Some(close_race::Close::begin());
            table = self.table.lock();
            if table.closed {
                return applied;
            }
        }
        table.closed = true;
        self.closed.store(true, Ordering::Relaxed);

        let mut owned = 0;
        for index in 0..table.len {
            let cell = self.cell(index);
            let slot = cell.load();
            match slot.state() {
                WAITING => {
                    applied.wakers.extend(table.wakers.take(slot.waker()));
                    applied.retained.extend(table.payloads.take(slot.payloads()).map(|payloads| *payloads));
                    cell.store(failed(slot.word, CLOSED, 0));
                    owned += 1;
                }
                ORPHANED => {
                    applied.retained.extend(table.payloads.take(slot.payloads()).map(|payloads| *payloads));
                    cell.free_under_lock();
                }
                // The future may be taking it right now without the lock.
                DELIVERED => {
                    let kept = (slot.word & !STATE_MASK) | DELIVERED_KEPT;
                    if cell.word.compare_exchange(slot.word, kept, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        owned += 1;
                        if let Some(close) = &mut close {
                            close.keep((self.id, index));
                        }
                    }
                }
                FAILED | DELIVERED_LARGE => owned += 1,
                _ => {}
            }
        }
        let fence_failed = close.as_ref().is_some_and(|close| !close.fenced());
        drop(close);
        table.unreported = 0;
        table.blocks.clear();
        table.future_slots = owned;
        let last = if owned == 0 { table.self_reference.take() } else { None };
        drop(table);

        // The caller borrows the table through a reference of its own, so
        // this does not free it.
        drop(last);
        self.changed.notify_all();
        if fence_failed {
            log::warn!(
                "membarrier failed when the delivery table {} closed: the table may stay in memory until the process exits",
                self.id
            );
        }
        applied
    }

    /// Returns the number of sends without a report.
    pub(crate) fn unreported(&self) -> usize {
        let table = self.table.lock();
        usize::try_from(self.unreported_locked(&table)).unwrap_or(0)
    }

    /// Waits until every send has its report, up to `timeout`. Returns
    /// whether that happened.
    pub(crate) fn wait_until_reported(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut table = self.table.lock();
        while self.unreported_locked(&table) > 0 {
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut table, deadline).timed_out() {
                        return self.unreported_locked(&table) == 0;
                    }
                }
                None => self.changed.wait(&mut table),
            }
        }
        true
    }

    /// Returns the progress count, for [`DeliveryTable::wait_for_progress`].
    #[inline]
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
    fn poll_slot(&self, id: u64, waker: &Waker) -> (Poll<Result<Delivery, DeliveryError>>, LastReference) {
        let mut table = self.table.lock();
        let replaced = match self.owned(&table, id) {
            Some((index, WAITING)) => {
                let cell = self.cell(index);
                let slot = cell.load();
                let stored = slot.waker();
                match table.wakers.get(stored) {
                    Some(current) if current.will_wake(waker) => None,
                    Some(_) => table.wakers.replace(stored, waker.clone()),
                    None => {
                        // The report is applied under the lock, so the
                        // slot stays waiting while this writes the waker.
                        let slot = slot.with_waker(table.wakers.insert(waker.clone()));
                        cell.large.store(slot.large, Ordering::Relaxed);
                        None
                    }
                }
            }
            Some((index, state)) if is_resolved(state) => {
                let (result, last) = self.take_ready(&mut table, index);
                return (Poll::Ready(result), last);
            }
            _ => return (Poll::Ready(Err(Error::Closed { operation: "delivery" }.into())), None),
        };
        drop(table);

        // A waker's drop is user code: never under the lock.
        drop(replaced);
        (Poll::Pending, None)
    }

    /// Blocks until the result of slot `id` arrives and takes it, or
    /// returns `None` when `timeout` passes first.
    fn wait_slot(&self, id: u64, timeout: Option<Duration>) -> (Option<Result<Delivery, DeliveryError>>, LastReference) {
        let mut table = self.table.lock();
        // The clock is read only when the result is not there yet.
        let mut deadline = None;
        loop {
            match self.owned(&table, id) {
                Some((index, state)) if is_resolved(state) => {
                    let (result, last) = self.take_ready(&mut table, index);
                    return (Some(result), last);
                }
                Some((_, WAITING)) => {}
                // A live future's slot is always waiting or resolved.
                _ => return (Some(Err(Error::Closed { operation: "delivery" }.into())), None),
            }
            let Some(timeout) = timeout else {
                self.changed.wait(&mut table);
                continue;
            };
            match *deadline.get_or_insert_with(|| Instant::now().checked_add(timeout)) {
                Some(deadline) => {
                    if self.changed.wait_until(&mut table, deadline).timed_out() {
                        return match self.owned(&table, id) {
                            Some((index, state)) if is_resolved(state) => {
                                let (result, last) = self.take_ready(&mut table, index);
                                (Some(result), last)
                            }
                            _ => (None, None),
                        };
                    }
                }
                None => self.changed.wait(&mut table),
            }
        }
    }

    /// Settles a read of slot `index` that may have raced a close of the
    /// table with `number` and `table_id` (see `close_race`). When the
    /// close listed the slot, gives its count back, unless the slot is
    /// `DELIVERED_KEPT`, whose future gives it back itself. That count may
    /// be another read's of the same slot, which then finds the slot off
    /// the list. The table may be freed already, so it is reached only
    /// through a listed slot.
    fn settle_raced_read(number: u16, table_id: u64, index: u32) {
        let serial = close_race::serial();
        let key = (table_id, index);
        let Some(table) = close_race::table_if_kept(key, || table_registry::get(number)) else {
            return;
        };

        let mut locked = table.table.lock();
        // `DELIVERED_KEPT`: the close counted a later send in this slot,
        // whose future has not read it and gives the count back itself.
        let counted = table.cell(index).state() != DELIVERED_KEPT && close_race::forget(key);
        let last = if counted { locked.disown() } else { None };
        drop(locked);
        drop(serial);

        // Either may free the table, with no lock held.
        drop(last);
        drop(table);
    }

    /// Takes a slot that the close counted off `close_race`'s list, once
    /// its future is done with it. Under the lock.
    fn forget_kept(&self, index: u32) {
        if self.unfenced_reads {
            close_race::forget((self.id, index));
        }
    }

    /// Takes the result out of a resolved slot and frees the slot. Nothing
    /// is dropped here but the slot's bookkeeping: a delivered send's
    /// payloads were dropped when its report was applied, and a failed
    /// one's move into the error.
    fn take_ready(&self, table: &mut Table, index: u32) -> (Result<Delivery, DeliveryError>, LastReference) {
        let cell = self.cell(index);
        let slot = cell.load();
        let result = if slot.state() == FAILED {
            let code = slot.code();
            let error = if code == CLOSED {
                Error::Closed { operation: "delivery" }
            } else {
                Error::Kafka {
                    operation: "delivery",
                    error: KafkaError::from_code(ErrorCode::from_raw(code)),
                }
            };
            let (key, value) = table.payloads.take(slot.payloads()).map_or((None, None), |payloads| *payloads);
            Err(DeliveryError { error, key, value })
        } else if slot.state() == DELIVERED_LARGE {
            let outcome = table.large.take(slot.large_result());
            // A large result's reference is written with its slot.
            let outcome = outcome.expect("a large delivery result without its side-table entry");
            Ok(Delivery {
                topic: crate::topic_names::name(slot.topic()),
                partition: outcome.partition,
                offset: outcome.offset,
                timestamp: outcome.timestamp,
            })
        } else {
            if slot.state() == DELIVERED_KEPT {
                self.forget_kept(index);
            }
            Ok(delivery_of(slot, self.stamp_base.load(Ordering::Relaxed)))
        };
        cell.free_under_lock();
        (result, table.disown())
    }

    /// Lets go of slot `id` for a future that is dropped. Returns what to
    /// drop with no lock held.
    fn release(&self, id: u64) -> Released {
        let mut table = self.table.lock();
        match self.owned(&table, id) {
            Some((index, WAITING)) => {
                let cell = self.cell(index);
                let mut slot = cell.load();
                let waker = table.wakers.take(slot.waker());
                slot = slot.with_waker(0);
                slot.word = (slot.word & !STATE_MASK) | ORPHANED;
                cell.store(slot);
                Released { waker, payloads: None, last: None }
            }
            Some((index, state @ (DELIVERED | DELIVERED_KEPT))) => {
                if state == DELIVERED_KEPT {
                    self.forget_kept(index);
                }
                self.cell(index).free_under_lock();
                Released { waker: None, payloads: None, last: table.disown() }
            }
            Some((index, DELIVERED_LARGE)) => {
                let reference = self.cell(index).load().large_result();
                table.large.take(reference);
                self.cell(index).free_under_lock();
                Released { waker: None, payloads: None, last: table.disown() }
            }
            Some((index, FAILED)) => {
                let stored = self.cell(index).load().payloads();
                let payloads = table.payloads.take(stored);
                self.cell(index).free_under_lock();
                Released { waker: None, payloads, last: table.disown() }
            }
            _ => Released::default(),
        }
    }
}

/// The waker, payloads and table reference of a dropped future, to drop
/// after the lock.
#[derive(Default)]
#[expect(dead_code, reason = "the fields are only held until they are dropped")]
struct Released {
    waker: Option<Waker>,
    payloads: Option<Box<Payloads>>,
    last: LastReference,
}

impl Drop for DeliveryTable {
    fn drop(&mut self) {
        table_registry::release(self.number);
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Context;

    use super::blocks::BLOCK_LEN;
    use super::*;
    use crate::topic_names;

    /// A send's time: 2025-12-05T00:00:00Z.
    const SENT_AT: i64 = 1_764_892_800_000;

    /// The bound on a wait for a result that is delivered already.
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn delivered(offset: i64) -> Outcome {
        Outcome {
            code: 0,
            partition: 2,
            offset,
            timestamp: Timestamp::CreateTime(SENT_AT),
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
        assert_eq!(std::mem::size_of::<SlotCell>(), 16);
        assert_eq!(std::mem::size_of::<DeliveryFuture>(), 8);
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
        drop(DeliveryFuture::new(&table, panicking));
        let mut future = DeliveryFuture::new(&table, watched);
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
        let topic = topic_names::index("orders").unwrap();
        let ids: Vec<u64> = (0..3).map(|_| table.register(topic, None).unwrap()).collect();
        let futures: Vec<DeliveryFuture> = ids.iter().map(|&id| DeliveryFuture::new(&table, id)).collect();

        table.apply(&[(ids[2], delivered(30)), (ids[0], delivered(10)), (ids[1], delivered(20))]).finish();

        assert_eq!(table.unreported(), 0);
        let offsets: Vec<i64> = futures.into_iter().map(|future| future.wait().unwrap().offset).collect();
        assert_eq!(offsets, vec![10, 20, 30]);
    }

    #[test]
    fn delivery_carries_topic_and_fields() {
        let table = DeliveryTable::new();
        let topic = topic_names::index("orders").unwrap();
        let id = table.register(topic, None).unwrap();
        let future = DeliveryFuture::new(&table, id);

        table.apply(&[(id, delivered(5))]).finish();
        let delivery = future.wait_timeout(Duration::ZERO).unwrap();

        assert_eq!(delivery.topic, "orders");
        assert_eq!(delivery.partition, 2);
        assert_eq!(delivery.offset, 5);
        assert_eq!(delivery.timestamp, Timestamp::CreateTime(SENT_AT));
    }

    #[test]
    fn failure_hands_owned_value_back() {
        let table = DeliveryTable::new();
        let id = table.register(0, owned(b"payload")).unwrap();
        let future = DeliveryFuture::new(&table, id);

        table.apply(&[(id, failed(ErrorCode::MESSAGE_TIMED_OUT.raw()))]).finish();
        let error = future.wait().unwrap_err();

        assert_eq!(error.code(), Some(ErrorCode::MESSAGE_TIMED_OUT));
        assert_eq!(error.value.map(OwnedPayload::into_vec), Some(b"payload".to_vec()));
    }

    #[test]
    fn close_resolves_unreported_and_retains_payloads() {
        let table = DeliveryTable::new();
        let id = table.register(0, owned(b"kept")).unwrap();
        let future = DeliveryFuture::new(&table, id);

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
        drop(DeliveryFuture::new(&table, first));

        assert_eq!(table.unreported(), 1, "an orphaned send still awaits its report");
        table.apply(&[(first, delivered(0))]).finish();
        assert_eq!(table.unreported(), 0);

        let second = table.register(0, None).unwrap();
        assert_ne!(first, second, "a reused slot must get a new generation");
        let applied = table.apply(&[(first, delivered(1))]);
        assert_eq!(applied.unknown, 1, "a stale id must not resolve the new send");
        applied.finish();
        assert_eq!(table.unreported(), 1);
        assert!(table.unregister(second).is_none(), "the second send had no payloads");
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
        let future = DeliveryFuture::new(&table, id);

        let error = future.wait_timeout(Duration::from_millis(10)).unwrap_err();

        assert!(matches!(error.error, Error::TimedOut { .. }), "{error:?}");
        assert!(!table.wait_until_reported(Duration::from_millis(10)));
    }

    #[test]
    fn blocked_waiter_wakes_on_report() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(&table, id);
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

    #[test]
    fn futures_keep_table_alive() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(&table, id);
        table.apply(&[(id, delivered(3))]).finish();
        let weak = Arc::downgrade(&table);
        table.close().finish();
        drop(table);

        assert!(weak.upgrade().is_some(), "the table was freed under a live future");
        assert_eq!(future.wait().unwrap().offset, 3);
        assert!(weak.upgrade().is_none(), "the last future did not free the table");
    }

    #[test]
    fn dropped_future_frees_table() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(&table, id);
        let weak = Arc::downgrade(&table);

        table.close().finish();
        drop(table);
        drop(future);

        assert!(weak.upgrade().is_none(), "a dropped future kept the table alive");
    }

    #[test]
    fn close_without_futures_frees_table() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(&table, id);
        table.apply(&[(id, delivered(4))]).finish();
        assert_eq!(future.wait().unwrap().offset, 4);
        let weak = Arc::downgrade(&table);

        table.close().finish();
        drop(table);

        assert!(weak.upgrade().is_none(), "a closed table with no futures was not freed");
    }

    #[test]
    fn table_lives_until_closed() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let future = DeliveryFuture::new(&table, id);
        table.apply(&[(id, delivered(5))]).finish();
        assert_eq!(future.wait().unwrap().offset, 5);
        let weak = Arc::downgrade(&table);

        drop(table);
        let table = weak.upgrade().expect("the table was freed before its close");
        table.close().finish();
        drop(table);

        assert!(weak.upgrade().is_none(), "the close did not let go of the table");
    }

    #[test]
    fn read_slots_are_reused() {
        let table = DeliveryTable::new();
        for round in 0..100 {
            let id = table.register(0, None).unwrap();
            let future = DeliveryFuture::new(&table, id);
            table.apply(&[(id, delivered(round))]).finish();
            assert_eq!(future.wait().unwrap().offset, round, "offset in round {round}");
        }

        assert_eq!(table.table.lock().len, BLOCK_LEN, "slots made for 100 sends read one by one");
    }

    #[test]
    fn out_of_order_reads_free_slots() {
        let table = DeliveryTable::new();
        // Nine sends in ten are read 20 sends later, the tenth 200 later.
        let (mut soon, mut late) = (std::collections::VecDeque::new(), std::collections::VecDeque::new());
        let rounds = if cfg!(miri) { 1_000 } else { 10_000 };
        for round in 0..rounds {
            let id = table.register(0, None).unwrap();
            table.apply(&[(id, delivered(round))]).finish();
            let queue = if round % 10 == 0 { &mut late } else { &mut soon };
            queue.push_back((round, DeliveryFuture::new(&table, id)));

            for queue in [&mut soon, &mut late] {
                if queue.len() > 20 {
                    let (sent, future) = queue.pop_front().unwrap();
                    assert_eq!(future.wait().unwrap().offset, sent, "offset of the send of round {sent}");
                }
            }
        }

        // Each unread result keeps at most its block from reuse.
        let len = table.table.lock().len;
        let unread = (soon.len() + late.len()) as u32;
        assert!(len <= (unread + 2) * BLOCK_LEN, "{len} slots made for {unread} unread results");
    }

    #[test]
    fn held_block_not_reused() {
        let table = DeliveryTable::new();
        // This thread's block has two sends, both read: their slots are
        // free, and so are the 14 it has not used yet.
        for offset in 0..2 {
            let id = table.register(0, None).unwrap();
            table.apply(&[(id, delivered(offset))]).finish();
            assert_eq!(DeliveryFuture::new(&table, id).wait().unwrap().offset, offset);
        }

        // A claim from another thread checks that block and must pass it.
        let other = std::thread::scope(|scope| scope.spawn(|| table.register(0, None).unwrap()).join().unwrap());
        let (index, _) = split_id(other);
        assert!(index >= BLOCK_LEN, "another thread got slot {index}, in a block this thread holds");
        let (next, _) = split_id(table.register(0, None).unwrap());
        assert_eq!(next, 2, "this thread's next send");
    }

    #[test]
    fn register_from_thread_local_destructor() {
        struct SendOnDrop(Arc<DeliveryTable>, std::sync::mpsc::Sender<u64>);
        impl Drop for SendOnDrop {
            fn drop(&mut self) {
                let id = self.0.register(0, None).expect("a send from a thread-local destructor");
                self.1.send(id).unwrap();
            }
        }
        std::thread_local! {
            static LATE: RefCell<Option<SendOnDrop>> = const { RefCell::new(None) };
        }

        let table = DeliveryTable::new();
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = {
            let table = Arc::clone(&table);
            // `LATE` is set before this thread's blocks exist, so its
            // destructor may run after theirs.
            std::thread::spawn(move || {
                LATE.with(|late| *late.borrow_mut() = Some(SendOnDrop(Arc::clone(&table), sender.clone())));
                sender.send(table.register(0, None).unwrap()).unwrap();
            })
        };
        thread.join().unwrap();

        let ids: Vec<u64> = receiver.iter().collect();
        assert_eq!(ids.len(), 2, "sends registered by the thread and by its destructor");
        assert_eq!(table.unreported(), 2);
        let reports: Vec<(u64, Outcome)> = ids.iter().zip(1..).map(|(&id, offset)| (id, delivered(offset))).collect();
        table.apply(&reports).finish();
        let offsets: Vec<i64> = ids.iter().map(|&id| DeliveryFuture::new(&table, id).wait().unwrap().offset).collect();
        assert_eq!(offsets, vec![1, 2]);
        assert_eq!(table.unreported(), 0);
    }

    #[test]
    fn sends_through_many_tables_use_rests() {
        // One thread sends through more tables in turn than it keeps
        // blocks for, so each send finds its block given up.
        let tables: Vec<Arc<DeliveryTable>> = (0..5).map(|_| DeliveryTable::new()).collect();
        let mut ids = vec![Vec::new(); tables.len()];
        let sends = if cfg!(miri) { 100 } else { 1000 };
        for _ in 0..sends {
            for (table, ids) in tables.iter().zip(&mut ids) {
                ids.push(table.register(0, None).unwrap());
            }
        }

        for (table, ids) in tables.iter().zip(&ids) {
            let len = table.table.lock().len;
            assert!(len <= sends + 2 * BLOCK_LEN, "{len} slots made for {sends} unread sends");
            assert_eq!(table.unreported(), sends as usize);

            let reports: Vec<(u64, Outcome)> = ids.iter().zip(0..).map(|(&id, offset)| (id, delivered(offset))).collect();
            let applied = table.apply(&reports);
            assert_eq!(applied.unknown, 0, "reports that matched no send");
            applied.finish();
            let offsets: Vec<i64> = ids.iter().map(|&id| DeliveryFuture::new(table, id).wait().unwrap().offset).collect();
            assert_eq!(offsets, (0..i64::from(sends)).collect::<Vec<i64>>());
            assert_eq!(table.unreported(), 0);
        }
    }

    /// Results at the edges of what a slot stores with its table's first
    /// timestamp at [`SENT_AT`], and past them.
    fn edge_results() -> Vec<Outcome> {
        let span = 1 << 39;
        let outcome = |partition, offset, timestamp| Outcome {
            code: 0,
            partition,
            offset,
            timestamp,
        };
        vec![
            outcome(0, 0, Timestamp::NotAvailable),
            outcome(65_535, (1 << 40) - 2, Timestamp::LogAppendTime(SENT_AT + span - 1)),
            outcome(7, crate::OFFSET_INVALID, Timestamp::CreateTime(SENT_AT - span)),
            outcome(65_536, 3, Timestamp::CreateTime(SENT_AT)),
            outcome(-1, 3, Timestamp::CreateTime(SENT_AT)),
            outcome(1, (1 << 40) - 1, Timestamp::CreateTime(SENT_AT)),
            outcome(1, -1, Timestamp::CreateTime(SENT_AT)),
            outcome(1, i64::MAX, Timestamp::CreateTime(SENT_AT)),
            outcome(1, 3, Timestamp::CreateTime(SENT_AT - span - 1)),
            outcome(1, 3, Timestamp::LogAppendTime(SENT_AT + span)),
            outcome(1, 3, Timestamp::CreateTime(i64::MIN)),
        ]
    }

    #[test]
    fn results_fit_slot_range() {
        let fits: Vec<bool> = edge_results().into_iter().map(|outcome| slot::delivered(0, outcome, SENT_AT).is_some()).collect();

        let mut expected = vec![true; 3];
        expected.resize(11, false);
        assert_eq!(fits, expected, "which results fit in 16 bytes");
    }

    #[test]
    fn large_results_read_back() {
        let table = DeliveryTable::new();
        let topic = topic_names::index("edges").unwrap();
        let first = table.register(topic, None).unwrap();
        table.apply(&[(first, delivered(0))]).finish();
        assert_eq!(DeliveryFuture::new(&table, first).wait().unwrap().timestamp, Timestamp::CreateTime(SENT_AT));
        let outcomes = edge_results();
        let ids: Vec<u64> = outcomes.iter().map(|_| table.register(topic, None).unwrap()).collect();
        let reports: Vec<(u64, Outcome)> = ids.iter().copied().zip(outcomes.iter().copied()).collect();

        table.apply(&reports).finish();
        assert_eq!(table.table.lock().large.values.len(), 8, "results kept in the side table");
        let mut futures: Vec<DeliveryFuture> = ids.iter().map(|&id| DeliveryFuture::new(&table, id)).collect();
        assert!(futures.iter().all(DeliveryFuture::is_ready), "a resolved send is not ready");
        // Dropped unread, a large result leaves the side table too.
        drop(futures.pop());

        for (future, outcome) in futures.into_iter().zip(&outcomes) {
            let delivery = future.wait().unwrap();
            let read = (delivery.topic, delivery.partition, delivery.offset, delivery.timestamp);
            assert_eq!(read, ("edges", outcome.partition, outcome.offset, outcome.timestamp));
        }
        let table = table.table.lock();
        assert_eq!(table.large.free.len(), table.large.values.len(), "side-table entries left behind");
    }

    #[test]
    fn result_without_timestamp() {
        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let outcome = Outcome {
            timestamp: Timestamp::NotAvailable,
            ..delivered(9)
        };

        table.apply(&[(id, outcome)]).finish();
        let delivery = DeliveryFuture::new(&table, id).wait().unwrap();
        assert_eq!((delivery.offset, delivery.timestamp), (9, Timestamp::NotAvailable));
    }

    #[test]
    fn close_counts_large_results() {
        let table = DeliveryTable::new();
        let ids: Vec<u64> = (0..2).map(|_| table.register(0, None).unwrap()).collect();
        let mut large = delivered(4);
        large.partition = 100_000;
        table.apply(&[(ids[0], large), (ids[1], delivered(5))]).finish();

        table.close().finish();
        assert_eq!(table.table.lock().future_slots, 2, "unread results counted by the close");

        let offsets: Vec<i64> = ids.iter().map(|&id| DeliveryFuture::new(&table, id).wait().unwrap().offset).collect();
        assert_eq!(offsets, [4, 5]);
        assert_eq!(table.table.lock().future_slots, 0);
    }

    #[test]
    #[cfg(not(loom))]
    fn zeroed_slot_is_free() {
        let segments: Segments<SlotCell> = Segments::zeroed();
        let (zeroed, free) = (segments.get_or_allocate(5).load(), SlotCell::free().load());

        assert_eq!((zeroed.large, zeroed.small, zeroed.word), (free.large, free.small, free.word));
        assert_eq!(zeroed.state(), slot::FREE);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads back 300,000 results, too slow under Miri")]
    fn unordered_reads_keep_table_bounded() {
        // Each result is read between 100 and 30,100 sends after its send,
        // in a pseudo-random order.
        let table = DeliveryTable::new();
        let mut random: u64 = 1;
        let mut due = std::collections::BinaryHeap::new();
        let mut max_unread = 0;
        for sent in 0..300_000u64 {
            let id = table.register(0, None).unwrap();
            table.apply(&[(id, delivered(sent as i64))]).finish();
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            due.push(std::cmp::Reverse((sent + 100 + random % 30_000, id)));
            while let Some(&std::cmp::Reverse((when, id))) = due.peek() {
                if when > sent {
                    break;
                }
                due.pop();
                assert!(DeliveryFuture::new(&table, id).wait().is_ok(), "the result of a send before {sent}");
            }
            max_unread = max_unread.max(due.len());
        }

        let len = table.table.lock().len as usize;
        assert!(len <= 3 * max_unread, "{len} slots made for at most {max_unread} unread results");
    }

    #[test]
    fn read_races_close() {
        // Run under Miri too: the last access of a read without the lock
        // may be followed at once by the table's free.
        for _ in 0..if cfg!(miri) { 20 } else { 200 } {
            let table = DeliveryTable::new();
            let id = table.register(0, None).unwrap();
            let future = DeliveryFuture::new(&table, id);
            table.apply(&[(id, delivered(6))]).finish();
            let weak = Arc::downgrade(&table);

            let reader = std::thread::spawn(move || future.wait().map(|delivery| delivery.offset).ok());
            table.close().finish();
            drop(table);

            assert_eq!(reader.join().unwrap(), Some(6), "offset read while the table closed");
            assert!(weak.upgrade().is_none(), "the table outlived its close and its only future");
        }
    }

    #[test]
    fn racing_reads_free_table() {
        let sends = if cfg!(miri) { 64 } else { 2048 };
        for round in 0..if cfg!(miri) { 5 } else { 40 } {
            let table = DeliveryTable::new();
            let ids: Vec<u64> = (0..sends).map(|_| table.register(0, None).unwrap()).collect();
            let reports: Vec<(u64, Outcome)> = ids.iter().zip(0..).map(|(&id, offset)| (id, delivered(offset))).collect();
            table.apply(&reports).finish();
            let weak = Arc::downgrade(&table);

            // Two threads read half the futures each, starting with the close.
            let start = Arc::new(std::sync::Barrier::new(3));
            let readers: Vec<_> = ids
                .chunks(sends as usize / 2)
                .map(|half| {
                    let futures: Vec<DeliveryFuture> = half.iter().map(|&id| DeliveryFuture::new(&table, id)).collect();
                    let start = Arc::clone(&start);
                    std::thread::spawn(move || {
                        start.wait();
                        futures.into_iter().map(|future| future.wait_timeout(TIMEOUT).unwrap().offset).collect::<Vec<i64>>()
                    })
                })
                .collect();
            start.wait();
            table.close().finish();
            drop(table);

            let offsets: Vec<i64> = readers.into_iter().flat_map(|reader| reader.join().unwrap()).collect();
            assert_eq!(offsets, (0..sends).collect::<Vec<i64>>(), "offsets read in round {round}");
            assert!(weak.upgrade().is_none(), "round {round}: the table outlived its close and its futures");
        }
    }

    /// Registers a send and applies its delivery at `offset`. Returns its id.
    fn send_delivered(table: &Arc<DeliveryTable>, offset: i64) -> u64 {
        let id = table.register(0, None).unwrap();
        table.apply(&[(id, delivered(offset))]).finish();
        id
    }

    #[test]
    fn counted_read_returns_count() {
        let table = DeliveryTable::new();
        if !table.unfenced_reads {
            return;
        }
        let id = send_delivered(&table, 5);
        let weak = Arc::downgrade(&table);
        let (index, _) = split_id(id);
        let key = (table.id, index);

        table.close().finish();
        assert_eq!(table.table.lock().future_slots, 1, "the close counted the unread result");
        assert!(close_race::is_kept(key), "the close did not list the slot it counted");
        // A read that took the result as the close counted it: its store
        // overwrote the close's mark, and its epoch loads differed, so it
        // settles.
        table.cell(index).word.store(slot::FREE, Ordering::Release);
        let future = DeliveryFuture::new(&table, id);
        future.settle_close_race(table.id);
        std::mem::forget(future);

        assert!(!close_race::is_kept(key), "the slot is still listed");
        assert_eq!(table.table.lock().future_slots, 0, "the count was not given back");
        drop(table);
        assert!(weak.upgrade().is_none(), "the table outlived its close and its only future");
    }

    /// Reads slot `id` as `take_delivered_unfenced` does, up to its store:
    /// where a reading thread may be held up. Returns the epoch's first
    /// load.
    fn read_up_to_store(table: &DeliveryTable, id: u64) -> u64 {
        let before = close_race::epoch();
        let cell = table.cell(split_id(id).0);
        assert_eq!(cell.state(), slot::DELIVERED, "the slot to read is not delivered");
        cell.word.store(slot::FREE, Ordering::Release);
        before
    }

    /// Ends such a read once its thread runs again, for a future of the
    /// table with `table_id`, which may be gone: the second epoch load, and
    /// the settle when the loads differ or the first was odd.
    fn finish_read(any_table: &Arc<DeliveryTable>, table_id: u64, id: u64, before: u64) {
        let after = close_race::epoch();
        if before % 2 == 1 || before != after {
            let (index, _) = split_id(id);
            DeliveryTable::settle_raced_read(any_table.number, table_id, index);
        }
    }

    #[test]
    fn held_up_read_leaves_reused_slot_count() {
        let table = DeliveryTable::new();
        if !table.unfenced_reads {
            return;
        }
        // A block of sends, all delivered, all read but the first, whose
        // read is held up after its store.
        let ids: Vec<u64> = (0..BLOCK_LEN).map(|_| table.register(0, None).unwrap()).collect();
        let reports: Vec<(u64, Outcome)> = ids.iter().zip(0..).map(|(&id, offset)| (id, delivered(offset))).collect();
        table.apply(&reports).finish();
        for &id in &ids[1..] {
            DeliveryFuture::new(&table, id).wait().unwrap();
        }
        let before = read_up_to_store(&table, ids[0]);

        // The block is free, so the next send takes the first slot again,
        // and the close counts that send's unread result.
        let later = table.register(0, None).unwrap();
        assert_eq!(split_id(later).0, split_id(ids[0]).0, "the first slot was not reused");
        table.apply(&[(later, delivered(99))]).finish();
        table.close().finish();
        assert_eq!(table.table.lock().future_slots, 1);

        finish_read(&table, table.id, ids[0], before);
        assert_eq!(table.table.lock().future_slots, 1, "a held-up read gave back the count of a later send");
        assert_eq!(DeliveryFuture::new(&table, later).wait().unwrap().offset, 99);
        assert_eq!(table.table.lock().future_slots, 0);
    }

    #[test]
    fn held_up_read_ignores_next_table() {
        let first = DeliveryTable::new();
        if !first.unfenced_reads {
            return;
        }
        let id = send_delivered(&first, 1);
        let before = read_up_to_store(&first, id);
        // The producer closes and drops the table, which the read no longer
        // keeps alive.
        let first_id = first.id;
        first.close().finish();
        let weak = Arc::downgrade(&first);
        drop(first);
        assert!(weak.upgrade().is_none(), "the table outlived its close");

        // A new table, which may get the same number, closes with an unread
        // result in the same slot.
        let second = DeliveryTable::new();
        let other = second.register(0, None).unwrap();
        assert_eq!(split_id(other).0, split_id(id).0);
        second.apply(&[(other, delivered(2))]).finish();
        second.close().finish();

        finish_read(&second, first_id, id, before);
        assert_eq!(second.table.lock().future_slots, 1, "a read of a freed table gave back another table's count");
    }

    #[test]
    fn min_timestamp_is_not_base() {
        let table = DeliveryTable::new();
        let ids: Vec<u64> = (0..2).map(|_| table.register(0, None).unwrap()).collect();
        let earliest = Outcome {
            timestamp: Timestamp::CreateTime(i64::MIN),
            ..delivered(1)
        };
        table.apply(&[(ids[0], earliest)]).finish();
        table.apply(&[(ids[1], delivered(2))]).finish();

        let read: Vec<Timestamp> = ids.iter().map(|&id| DeliveryFuture::new(&table, id).wait().unwrap().timestamp).collect();
        assert_eq!(read, [Timestamp::CreateTime(i64::MIN), Timestamp::CreateTime(SENT_AT)]);
    }

    #[test]
    fn locked_read_unlists_slot() {
        let table = DeliveryTable::new();
        let ids: Vec<u64> = (0..2).map(|_| table.register(0, None).unwrap()).collect();
        table.apply(&[(ids[0], delivered(1)), (ids[1], delivered(2))]).finish();
        let keys: Vec<close_race::Key> = ids.iter().map(|&id| (table.id, split_id(id).0)).collect();

        table.close().finish();
        assert_eq!(DeliveryFuture::new(&table, ids[0]).wait().unwrap().offset, 1);
        drop(DeliveryFuture::new(&table, ids[1]));

        assert!(!close_race::is_kept(keys[0]), "a read slot is still listed");
        assert!(!close_race::is_kept(keys[1]), "a dropped slot is still listed");
        assert_eq!(table.table.lock().future_slots, 0);
    }

    #[test]
    fn poll_replaces_waker_and_wakes_latest() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct Counter(AtomicUsize);
        impl Wake for Counter {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        let table = DeliveryTable::new();
        let id = table.register(0, None).unwrap();
        let mut future = DeliveryFuture::new(&table, id);
        let first = Arc::new(Counter(AtomicUsize::new(0)));
        let second = Arc::new(Counter(AtomicUsize::new(0)));
        let first_waker = Waker::from(Arc::clone(&first));
        let second_waker = Waker::from(Arc::clone(&second));

        assert!(Pin::new(&mut future).poll(&mut Context::from_waker(&first_waker)).is_pending());
        assert!(Pin::new(&mut future).poll(&mut Context::from_waker(&second_waker)).is_pending());
        assert_eq!(Arc::strong_count(&first), 2, "the replaced waker was not dropped");
        table.apply(&[(id, delivered(9))]).finish();

        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the replaced waker was woken");
        assert_eq!(second.0.load(Ordering::SeqCst), 1, "the latest waker was not woken");
        let Poll::Ready(result) = Pin::new(&mut future).poll(&mut Context::from_waker(&second_waker)) else {
            panic!("the future is still pending after its report");
        };
        assert_eq!(result.unwrap().offset, 9);
    }

    #[test]
    fn unregister_after_close_frees_table() {
        let table = DeliveryTable::new();
        let id = table.register(0, owned(b"late")).unwrap();
        let retained = table.close().finish();
        let weak = Arc::downgrade(&table);

        let payloads = table.unregister(id);
        drop(table);

        assert!(payloads.is_none(), "a payload the close retained was handed back");
        assert_eq!(retained.len(), 1, "the close did not retain the payload");
        assert!(weak.upgrade().is_none(), "the table leaked after the send was unregistered");
    }
}
