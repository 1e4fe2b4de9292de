//! The producer's table of sends awaiting their delivery reports, and the
//! futures that read it.
//!
//! This is the producer's side of the paired queue, specialised for volume.
//! A send costs one slot of 24 bytes and an 8-byte future, with no
//! allocation of its own unless it has owned payloads. A send without
//! owned payloads takes its slot from a block that its thread claimed
//! under the lock, 16 slots at a time, so most sends take no lock. A whole
//! delivery-report event is applied under one lock. The invariants:
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
//!    arrived and its future is done with it, so memory is bounded by the
//!    sends in flight plus the results not yet read.
//!
//! Reading a delivered result takes no lock either: the future reads its
//! slot and frees it with one compare-exchange (see [`SlotCell`]). Futures
//! hold no reference count: the table holds a strong reference to itself
//! until it closes, and after that while a future owns a slot. Atomic
//! read-modify-write operations were a main cost per message in profiles
//! on a virtual machine (about 10 ns each). With a lock for each and an
//! `Arc<str>` topic, a send and the read of its result took six of them.
//! They take one now.

// A delivery result is moved once, from the table to its future; boxing
// the error would cost an allocation per failed delivery instead.
#![allow(clippy::result_large_err)]

use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, KafkaError};
use crate::message::Timestamp;
use crate::payload::OwnedPayload;
use crate::segments::Segments;
use crate::sync::{Arc, AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Condvar, Mutex, Ordering};
use crate::{table_registry, topic_names};

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

/// How many slots a block has: a thread takes a block of free slots under
/// the table's lock, then registers that many sends without it. A slot is
/// reused only with its whole block, so an unread future keeps at most
/// this many slots from reuse. The models of `model_check` use short
/// blocks, to keep the interleavings few.
#[cfg(not(all(test, loom)))]
const BLOCK_LEN: u32 = 16;
#[cfg(all(test, loom))]
const BLOCK_LEN: u32 = 2;

/// How many blocks after the cursor a claim checks for a free one before
/// it makes a new one. More checks find more of the blocks freed out of
/// order, at the price of more reads while most blocks are in use.
const FREE_BLOCK_CHECKS: u32 = 4;

/// How many producers' blocks a thread keeps at once. A thread that sends
/// through more producers in turn gives up the oldest block, and claims a
/// new one when it comes back to that producer.
const BLOCKS_PER_THREAD: usize = 4;

// Slot states, in the lowest 3 bits of `Slot::word`.
const FREE: u32 = 0;
/// The report has not arrived; the future may have stored a waker.
const WAITING: u32 = 1;
/// The report has not arrived, and the future is gone.
const ORPHANED: u32 = 2;
/// Delivered, by its report; the future has not read it.
const DELIVERED: u32 = 3;
/// Failed, by its report or by the producer's close; not read yet.
const FAILED: u32 = 4;
/// Delivered and not read when the producer closed. Its future reads it
/// under the lock, to count the futures that keep the table alive.
const DELIVERED_KEPT: u32 = 5;
/// In a thread's block, not used yet.
const RESERVED: u32 = 6;
const STATE_MASK: u32 = 0b111;

// Timestamp kinds, in bits 3 and 4 of `Slot::word`.
const STAMP_SHIFT: u32 = 3;
const STAMP_NONE: u32 = 0;
const STAMP_CREATE: u32 = 1;
const STAMP_LOG_APPEND: u32 = 2;

/// The topic index ([`topic_names`]) takes the upper 27 bits of
/// `Slot::word`.
const TOPIC_SHIFT: u32 = 5;
const _: () = assert!(topic_names::MAX_TOPICS == 1 << (32 - TOPIC_SHIFT));

/// One send, in 24 bytes, because a million of them may wait to be read.
/// What its fields hold depends on the state:
///
/// | state | `first` | `second` | `partition` |
/// |---|---|---|---|
/// | `FREE`, `RESERVED` | | | |
/// | `WAITING`, `ORPHANED` | waker + 1, or 0 | payloads + 1, or 0 | generation |
/// | `DELIVERED`, `DELIVERED_KEPT` | offset | timestamp | partition |
/// | `FAILED` | error code | payloads + 1, or 0 | |
///
/// Wakers and owned payloads live in side tables, since most sends have
/// neither. The table stores slots as [`SlotCell`]s; this is a copy.
#[derive(Clone, Copy)]
struct Slot {
    first: i64,
    second: i64,
    partition: i32,
    /// State, timestamp kind and topic index.
    word: u32,
}

impl Slot {
    fn state(&self) -> u32 {
        self.word & STATE_MASK
    }

    fn topic(&self) -> u32 {
        self.word >> TOPIC_SHIFT
    }

    /// Returns whether the slot awaits the report of the send with `generation`.
    fn awaits(&self, generation: u32) -> bool {
        matches!(self.state(), WAITING | ORPHANED) && self.partition as u32 == generation
    }
}

/// A slot as the table stores it: atomics, so that the future that owns a
/// delivered slot can take its result and free it without the lock.
///
/// Everything else reads and writes slots under the table's lock. The word
/// is written last and with `Release`, and read with `Acquire`, so a
/// reader that sees a state also sees the fields written with it. The
/// future's lock-free read changes nothing but the word, `DELIVERED` to
/// `FREE`, with a compare-exchange: the close turns `DELIVERED` into
/// `DELIVERED_KEPT` the same way, so exactly one of them takes the slot.
struct SlotCell {
    first: AtomicI64,
    second: AtomicI64,
    partition: AtomicI32,
    word: AtomicU32,
}

impl SlotCell {
    fn free() -> Self {
        Self {
            first: AtomicI64::new(0),
            second: AtomicI64::new(0),
            partition: AtomicI32::new(0),
            word: AtomicU32::new(FREE),
        }
    }

    fn state(&self) -> u32 {
        self.word.load(Ordering::Acquire) & STATE_MASK
    }

    /// Reads the slot: under the table's lock, or by its future once its
    /// state is `DELIVERED`.
    fn load(&self) -> Slot {
        let word = self.word.load(Ordering::Acquire);
        Slot {
            first: self.first.load(Ordering::Relaxed),
            second: self.second.load(Ordering::Relaxed),
            partition: self.partition.load(Ordering::Relaxed),
            word,
        }
    }

    /// Writes the slot, the word last. Only under the table's lock.
    #[inline]
    fn store(&self, slot: Slot) {
        self.first.store(slot.first, Ordering::Relaxed);
        self.second.store(slot.second, Ordering::Relaxed);
        self.partition.store(slot.partition, Ordering::Relaxed);
        self.word.store(slot.word, Ordering::Release);
    }

    /// Frees the slot. Only under the table's lock.
    fn free_under_lock(&self) {
        self.word.store(FREE, Ordering::Release);
    }

    /// Takes the result of a delivered slot and frees it, without the lock.
    /// Only the slot's future calls this. Returns `None` unless the slot is
    /// `DELIVERED`, or when the close changed it meanwhile.
    ///
    /// Freeing is the last access: once it is done, `register` may reuse
    /// the slot, and a closed table that counted no other future may be
    /// freed.
    #[inline]
    fn take_delivered(&self) -> Option<Delivery> {
        let word = self.word.load(Ordering::Acquire);
        if word & STATE_MASK != DELIVERED {
            return None;
        }
        let slot = Slot {
            first: self.first.load(Ordering::Relaxed),
            second: self.second.load(Ordering::Relaxed),
            partition: self.partition.load(Ordering::Relaxed),
            word,
        };
        // `Release`: the reads above happen before a later send reuses the slot.
        self.word.compare_exchange(word, FREE, Ordering::Release, Ordering::Relaxed).ok()?;
        Some(delivery_of(slot))
    }

    /// Frees a delivered slot whose future is dropped unread, as
    /// [`SlotCell::take_delivered`] does. Returns whether it did.
    fn drop_delivered(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & STATE_MASK == DELIVERED && self.word.compare_exchange(word, FREE, Ordering::Release, Ordering::Relaxed).is_ok()
    }
}

/// A small slab for the values few slots have.
struct SideTable<T> {
    values: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> SideTable<T> {
    const fn new() -> Self {
        Self { values: Vec::new(), free: Vec::new() }
    }

    /// Stores `value` and returns its reference: index + 1, never 0.
    fn insert(&mut self, value: T) -> i64 {
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
        index as i64 + 1
    }

    fn get(&self, reference: i64) -> Option<&T> {
        let index = usize::try_from(reference).ok()?.checked_sub(1)?;
        self.values.get(index)?.as_ref()
    }

    fn replace(&mut self, reference: i64, value: T) -> Option<T> {
        let index = usize::try_from(reference).ok()?.checked_sub(1)?;
        self.values.get_mut(index)?.replace(value)
    }

    /// Takes the value out; 0 is no value.
    fn take(&mut self, reference: i64) -> Option<T> {
        let index = usize::try_from(reference).ok()?.checked_sub(1)?;
        let value = self.values.get_mut(index)?.take()?;
        self.free.push(index as u32);
        Some(value)
    }
}

/// A block of slots that one thread registers sends into without the
/// table's lock, as the table sees it.
struct SharedBlock {
    /// The block's first slot.
    start: u32,
    /// Sends registered in the block so far. Only the thread that owns the
    /// block writes it, after writing the send's slot, so it needs no
    /// read-modify-write.
    used: AtomicU32,
    /// Set by the owning thread once it registers nothing more here.
    abandoned: AtomicBool,
}

/// A thread's block of one table (see [`BLOCKS`]).
struct LocalBlock {
    /// [`DeliveryTable::id`] of the table.
    table: u64,
    generation: u16,
    /// Sends registered so far: `shared.used`, without the atomic load.
    used: u32,
    shared: Arc<SharedBlock>,
}

impl Drop for LocalBlock {
    fn drop(&mut self) {
        // The thread ends, or gives the block up: the table counts its
        // sends and frees its unused slots at its next claim.
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

/// The block that sends with owned payloads use, under the table's lock.
struct LockedBlock {
    start: u32,
    used: u32,
    generation: u16,
}

#[cfg(not(all(test, loom)))]
std::thread_local! {
    /// This thread's blocks, at most [`BLOCKS_PER_THREAD`], each of a
    /// different table.
    static BLOCKS: RefCell<Vec<LocalBlock>> = const { RefCell::new(Vec::new()) };
}

// `loom` runs a model's threads on one thread, so they need its own
// thread-local storage, whose macro takes no `const` initialiser.
#[cfg(all(test, loom))]
loom::thread_local! {
    static BLOCKS: RefCell<Vec<LocalBlock>> = RefCell::new(Vec::new());
}

/// The source of [`DeliveryTable::id`]s, which are never reused, unlike
/// table numbers.
static NEXT_TABLE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The part of the table under its lock.
struct Table {
    /// Slots made so far, a multiple of [`BLOCK_LEN`]: every index below
    /// it is allocated in [`DeliveryTable::slots`].
    len: u32,
    /// The first slot of the block that a claim checks first for reuse.
    cursor: u32,
    /// Stamped into the ids of each new block's sends, so that a report
    /// can never resolve a later send in the same slot.
    next_generation: u16,
    wakers: SideTable<Waker>,
    payloads: SideTable<Box<Payloads>>,
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
    /// table in threads' [`BLOCKS`].
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
            slots: Segments::new(SlotCell::free),
            table: Mutex::new(Table {
                len: 0,
                cursor: 0,
                next_generation: 0,
                wakers: SideTable::new(),
                payloads: SideTable::new(),
                unreported: 0,
                blocks: Vec::new(),
                locked_block: None,
                closed: false,
                future_slots: 0,
                self_reference: None,
            }),
            progress: AtomicU64::new(0),
            changed: Condvar::new(),
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

    /// Finds the slot that awaits the report with `id`.
    fn awaiting(&self, table: &Table, id: u64) -> Option<u32> {
        let (index, generation) = split_id(id);
        (index < table.len && self.cell(index).load().awaits(generation)).then_some(index)
    }

    /// Finds the slot of a live future, with its state: waiting or with its
    /// result. The future owns the slot, which nothing else frees meanwhile.
    fn owned(&self, table: &Table, id: u64) -> Option<(u32, u32)> {
        let (index, _) = split_id(id);
        (index < table.len).then(|| (index, self.cell(index).state()))
    }

    /// Takes a slot for a send to the topic with index `topic`
    /// ([`topic_names::index`]) and returns its id, which is never 0 (a
    /// NULL opaque). Hands the payloads back when the table is closed, or
    /// when 2^32 - 1 slots are in use, which memory does not allow.
    ///
    /// A send without owned payloads takes the next slot of the calling
    /// thread's block, with no lock and no atomic read-modify-write,
    /// unless the block is used up. One with owned payloads stores them
    /// under the lock.
    #[inline]
    pub(crate) fn register(self: &Arc<Self>, topic: u32, payloads: Option<Box<Payloads>>) -> Result<u64, Option<Box<Payloads>>> {
        debug_assert!(topic < topic_names::MAX_TOPICS, "topic index {topic} out of range");
        if payloads.is_some() {
            return self.register_locked(topic, payloads);
        }
        let registered = BLOCKS.try_with(|blocks| {
            let mut blocks = blocks.try_borrow_mut().ok()?;
            Some(self.register_in_block(&mut blocks, topic).ok_or(None))
        });
        match registered {
            Ok(Some(registered)) => registered,
            // A send from a thread-local destructor, once this thread's
            // blocks are gone or being dropped.
            _ => self.register_locked(topic, None),
        }
    }

    /// Registers a send in the calling thread's block of this table,
    /// claiming a block first when the thread has none left.
    #[inline]
    fn register_in_block(self: &Arc<Self>, blocks: &mut Vec<LocalBlock>, topic: u32) -> Option<u64> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let position = match blocks.iter().position(|block| block.table == self.id) {
            Some(position) if blocks[position].used < BLOCK_LEN => position,
            found => {
                let used_up = found.map(|position| blocks.swap_remove(position));
                let block = self.claim_thread_block(used_up)?;
                if blocks.len() == BLOCKS_PER_THREAD {
                    blocks.remove(0);
                }
                blocks.push(block);
                blocks.len() - 1
            }
        };

        let block = &mut blocks[position];
        let index = block.shared.start + block.used;
        self.cell(index).store(waiting(topic, block.generation, 0));
        block.used += 1;
        // `Release`: a flush that counts this send sees its slot waiting.
        block.shared.used.store(block.used, Ordering::Release);
        Some(self.slot_id(block.generation, index))
    }

    /// Claims a block for the calling thread, giving back its used-up block
    /// of this table, if any. Returns `None` when the table is closed or
    /// every slot index is in use.
    #[cold]
    fn claim_thread_block(self: &Arc<Self>, used_up: Option<LocalBlock>) -> Option<LocalBlock> {
        let mut table = self.table.lock();
        if let Some(used_up) = &used_up {
            // Its sends move into `unreported`, unless a close forgot the
            // block already.
            let listed = table.blocks.len();
            table.blocks.retain(|shared| !Arc::ptr_eq(shared, &used_up.shared));
            if table.blocks.len() < listed {
                table.unreported += i64::from(used_up.used);
            }
        }
        if table.closed {
            return None;
        }
        let (start, generation) = self.claim_block(&mut table)?;
        let shared = Arc::new(SharedBlock {
            start,
            used: AtomicU32::new(0),
            abandoned: AtomicBool::new(false),
        });
        table.blocks.push(Arc::clone(&shared));
        drop(table);

        // Dropped with no lock held: its drop only marks it abandoned,
        // which no longer matters once the table counted it.
        drop(used_up);
        Some(LocalBlock {
            table: self.id,
            generation,
            used: 0,
            shared,
        })
    }

    /// Registers a send under the lock, in the table's own block.
    #[inline(never)]
    fn register_locked(self: &Arc<Self>, topic: u32, payloads: Option<Box<Payloads>>) -> Result<u64, Option<Box<Payloads>>> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(payloads);
        }
        let (start, used, generation) = match &table.locked_block {
            Some(block) if block.used < BLOCK_LEN => (block.start, block.used, block.generation),
            _ => {
                let Some((start, generation)) = self.claim_block(&mut table) else {
                    return Err(payloads);
                };
                (start, 0, generation)
            }
        };
        table.locked_block = Some(LockedBlock {
            start,
            used: used + 1,
            generation,
        });

        let index = start + used;
        let payloads = payloads.map_or(0, |payloads| table.payloads.insert(payloads));
        self.cell(index).store(waiting(topic, generation, payloads));
        table.unreported += 1;
        Ok(self.slot_id(generation, index))
    }

    /// Finds a block of free slots, marks them reserved and returns the
    /// first one with the block's generation. Checks the next few blocks
    /// from the cursor, else makes a new one. Returns `None` when every
    /// slot index is in use.
    ///
    /// Also counts the sends of blocks that their threads abandoned, and
    /// frees their unused slots.
    fn claim_block(self: &Arc<Self>, table: &mut Table) -> Option<(u32, u16)> {
        self.settle_abandoned(table);

        let mut found = None;
        for _ in 0..FREE_BLOCK_CHECKS.min(table.len / BLOCK_LEN) {
            let start = table.cursor;
            table.cursor = if start + BLOCK_LEN >= table.len { 0 } else { start + BLOCK_LEN };
            if (start..start + BLOCK_LEN).all(|index| self.cell(index).state() == FREE) {
                found = Some(start);
                break;
            }
        }
        let start = match found {
            Some(start) => start,
            None => {
                let start = table.len;
                if start > MAX_INDEX - (BLOCK_LEN - 1) {
                    return None;
                }
                // A block lies within one segment: segments are multiples
                // of `BLOCK_LEN` long and start at multiples of it.
                self.slots.get_or_allocate(start);
                table.len += BLOCK_LEN;
                start
            }
        };

        for index in start..start + BLOCK_LEN {
            self.cell(index).word.store(RESERVED, Ordering::Relaxed);
        }
        let generation = table.next_generation;
        table.next_generation = generation.wrapping_add(1);
        if table.self_reference.is_none() {
            table.self_reference = Some(Arc::clone(self));
        }
        Some((start, generation))
    }

    /// Counts the sends of abandoned blocks in `unreported`, frees their
    /// unused slots and forgets them.
    fn settle_abandoned(&self, table: &mut Table) {
        let mut settled = 0;
        table.blocks.retain(|shared| {
            // `Acquire`: the thread's writes to the block come before its
            // abandonment.
            if !shared.abandoned.load(Ordering::Acquire) {
                return true;
            }
            let used = shared.used.load(Ordering::Relaxed);
            for index in shared.start + used..shared.start + BLOCK_LEN {
                self.cell(index).free_under_lock();
            }
            settled += i64::from(used);
            false
        });
        table.unreported += settled;
    }

    /// Returns the number of sends without a report: those counted in the
    /// table, plus those in blocks that threads are still filling.
    fn unreported_locked(&self, table: &Table) -> i64 {
        let in_blocks: i64 = table.blocks.iter().map(|shared| i64::from(shared.used.load(Ordering::Acquire))).sum();
        table.unreported + in_blocks
    }

    /// Makes the id of slot `index` in a block with `generation`.
    #[inline]
    fn slot_id(&self, generation: u16, index: u32) -> u64 {
        (u64::from(self.number) << 48) | (u64::from(generation) << 32) | (u64::from(index) + 1)
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
                let payloads = table.payloads.take(slot.second);
                let waker = table.wakers.take(slot.first);
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

    /// Applies the reports of one event: each `(id, outcome)` resolves its
    /// slot. Returns the wakers to wake and the payloads to drop, both to
    /// be handled after this returns, with no lock held.
    pub(crate) fn apply(&self, reports: &[(u64, Outcome)]) -> Applied {
        let mut applied = Applied::default();
        let mut table = self.table.lock();

        for &(id, outcome) in reports {
            let Some(index) = self.awaiting(&table, id) else {
                applied.unknown += 1;
                continue;
            };
            let cell = self.cell(index);
            let slot = cell.load();
            if slot.state() == ORPHANED {
                applied.payloads.extend(table.payloads.take(slot.second).map(|payloads| *payloads));
                cell.free_under_lock();
            } else {
                applied.wakers.extend(table.wakers.take(slot.first));
                let resolved = if outcome.code == 0 {
                    applied.payloads.extend(table.payloads.take(slot.second).map(|payloads| *payloads));
                    delivered(slot.word, outcome)
                } else {
                    failed(slot, outcome.code)
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
    /// table alive from now on; when there are none, the table lets go of
    /// its own reference, and the caller's last one frees it.
    pub(crate) fn close(&self) -> Applied {
        let mut applied = Applied::default();
        let mut table = self.table.lock();
        if table.closed {
            return applied;
        }
        table.closed = true;
        self.closed.store(true, Ordering::Relaxed);

        let mut owned = 0;
        for index in 0..table.len {
            let cell = self.cell(index);
            let slot = cell.load();
            match slot.state() {
                WAITING => {
                    applied.wakers.extend(table.wakers.take(slot.first));
                    applied.retained.extend(table.payloads.take(slot.second).map(|payloads| *payloads));
                    cell.store(failed(Slot { second: 0, ..slot }, CLOSED));
                    owned += 1;
                }
                ORPHANED => {
                    applied.retained.extend(table.payloads.take(slot.second).map(|payloads| *payloads));
                    cell.free_under_lock();
                }
                // The future may be taking it right now without the lock.
                DELIVERED => {
                    let kept = (slot.word & !STATE_MASK) | DELIVERED_KEPT;
                    if cell.word.compare_exchange(slot.word, kept, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        owned += 1;
                    }
                }
                FAILED => owned += 1,
                _ => {}
            }
        }
        table.unreported = 0;
        table.blocks.clear();
        table.future_slots = owned;
        let last = if owned == 0 { table.self_reference.take() } else { None };
        drop(table);

        // The caller borrows the table through a reference of its own, so
        // this does not free it.
        drop(last);
        self.changed.notify_all();
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
                let stored = cell.load().first;
                match table.wakers.get(stored) {
                    Some(current) if current.will_wake(waker) => None,
                    Some(_) => table.wakers.replace(stored, waker.clone()),
                    None => {
                        // The report is applied under the lock, so the
                        // slot stays waiting while this writes the waker.
                        cell.first.store(table.wakers.insert(waker.clone()), Ordering::Relaxed);
                        None
                    }
                }
            }
            Some((index, DELIVERED | DELIVERED_KEPT | FAILED)) => {
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
                Some((index, DELIVERED | DELIVERED_KEPT | FAILED)) => {
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
                            Some((index, DELIVERED | DELIVERED_KEPT | FAILED)) => {
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

    /// Takes the result out of a resolved slot and frees the slot. Nothing
    /// is dropped here but the slot's bookkeeping: a delivered send's
    /// payloads were dropped when its report was applied, and a failed
    /// one's move into the error.
    fn take_ready(&self, table: &mut Table, index: u32) -> (Result<Delivery, DeliveryError>, LastReference) {
        let cell = self.cell(index);
        let slot = cell.load();
        let result = if slot.state() == FAILED {
            let code = slot.first as i32;
            let error = if code == CLOSED {
                Error::Closed { operation: "delivery" }
            } else {
                Error::Kafka {
                    operation: "delivery",
                    error: KafkaError::from_code(ErrorCode::from_raw(code)),
                }
            };
            let (key, value) = table.payloads.take(slot.second).map_or((None, None), |payloads| *payloads);
            Err(DeliveryError { error, key, value })
        } else {
            Ok(delivery_of(slot))
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
                let waker = table.wakers.take(std::mem::take(&mut slot.first));
                slot.word = (slot.word & !STATE_MASK) | ORPHANED;
                cell.store(slot);
                Released { waker, payloads: None, last: None }
            }
            Some((index, DELIVERED | DELIVERED_KEPT)) => {
                self.cell(index).free_under_lock();
                Released { waker: None, payloads: None, last: table.disown() }
            }
            Some((index, FAILED)) => {
                let stored = self.cell(index).load().second;
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

/// Builds the slot of a new send, awaiting its report.
fn waiting(topic: u32, generation: u16, payloads: i64) -> Slot {
    Slot {
        first: 0,
        second: payloads,
        partition: i32::from(generation),
        word: WAITING | (topic << TOPIC_SHIFT),
    }
}

/// Builds the resolved slot of a delivered send.
fn delivered(word: u32, outcome: Outcome) -> Slot {
    let (kind, stamp) = match outcome.timestamp {
        Timestamp::NotAvailable => (STAMP_NONE, 0),
        Timestamp::CreateTime(stamp) => (STAMP_CREATE, stamp),
        Timestamp::LogAppendTime(stamp) => (STAMP_LOG_APPEND, stamp),
    };
    let topic = word >> TOPIC_SHIFT;
    Slot {
        first: outcome.offset,
        second: stamp,
        partition: outcome.partition,
        word: DELIVERED | (kind << STAMP_SHIFT) | (topic << TOPIC_SHIFT),
    }
}

/// Builds the resolved slot of a failed send, keeping its payloads reference.
fn failed(slot: Slot, code: i32) -> Slot {
    Slot {
        first: i64::from(code),
        second: slot.second,
        partition: -1,
        word: FAILED | (slot.topic() << TOPIC_SHIFT),
    }
}

/// Reads the delivery out of a `DELIVERED` or `DELIVERED_KEPT` slot.
#[inline]
fn delivery_of(slot: Slot) -> Delivery {
    let stamp = slot.second;
    let timestamp = match (slot.word >> STAMP_SHIFT) & 0b11 {
        STAMP_CREATE => Timestamp::CreateTime(stamp),
        STAMP_LOG_APPEND => Timestamp::LogAppendTime(stamp),
        _ => Timestamp::NotAvailable,
    };
    Delivery {
        topic: topic_names::name(slot.topic()),
        partition: slot.partition,
        offset: slot.first,
        timestamp,
    }
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

/// The pending result of [`Producer::send`](crate::Producer::send).
///
/// The producer resolves it exactly once: with the delivery, with a
/// [`DeliveryError`] when the message failed or was purged, or with
/// [`Error::Closed`] when the producer was dropped first. That happens on
/// the producer's event thread or inside a later
/// [`Producer::send`](crate::Producer::send) on a sending thread, so a
/// waker may be woken on either.
///
/// It stays pending no longer than `message.timeout.ms` plus the time to
/// report. With `message.timeout.ms=0`, which librdkafka reads as no
/// limit, an undelivered message keeps it pending until the producer is
/// dropped.
///
/// Wait on it with [`wait`](Self::wait) or
/// [`wait_timeout`](Self::wait_timeout), check it with
/// [`is_ready`](Self::is_ready), or `.await` it on any executor.
///
/// Dropping it does not cancel the send.
#[must_use = "dropping the future ignores whether the message was delivered"]
pub struct DeliveryFuture {
    /// The slot's id, which also names the table, or [`TAKEN`] once the
    /// result was taken.
    id: u64,
}

/// The id of a future whose result was taken; no slot has id 0.
const TAKEN: u64 = 0;

impl DeliveryFuture {
    /// Makes the future of slot `id`, which `table.register` returned.
    pub(crate) fn new(table: &Arc<DeliveryTable>, id: u64) -> Self {
        debug_assert_eq!(table_number(id), table.number, "an id of another table");
        Self { id }
    }

    /// Returns the table. Only called while `id` is not [`TAKEN`].
    #[inline]
    fn table(&self) -> &DeliveryTable {
        debug_assert!(self.id != TAKEN, "the table of a taken future was used");
        let table = table_registry::get(table_number(self.id));
        // SAFETY: the slot `id` is owned by this future until it takes the
        // result or drops. Until then the table is alive: it holds a
        // strong reference to itself from its first send until it closes,
        // and after the close for as long as a future the close counted
        // owns a slot. A future the close did not count had freed its slot
        // already, the last thing it does with the table. The registry
        // entry, published before the first send and cleared only when the
        // table is dropped, points to it.
        unsafe { &*table }
    }

    /// Returns this future's slot. Only called while `id` is not
    /// [`TAKEN`], when the slot is allocated.
    #[inline]
    fn cell(&self) -> Option<&SlotCell> {
        self.table().slots.get(split_id(self.id).0)
    }

    /// Takes a delivered result without the table's lock, the common case.
    #[inline]
    fn take_delivered(&mut self) -> Option<Delivery> {
        let delivery = self.cell()?.take_delivered()?;
        self.id = TAKEN;
        Some(delivery)
    }

    /// Returns whether waiting would block the producer's event thread: the
    /// caller runs on it and the report has not arrived.
    fn would_block_event_thread(&self) -> bool {
        self.table().on_event_thread() && !self.is_ready()
    }

    /// Blocks until the delivery report arrives.
    ///
    /// On the producer's own event thread (in a waker), it returns
    /// [`Error::OnEventThread`] unless the report is already there:
    /// blocking that thread would hold up every report that no sending
    /// thread happens to serve, possibly this one too.
    #[inline]
    pub fn wait(mut self) -> Result<Delivery, DeliveryError> {
        match self.take_delivered() {
            Some(delivery) => Ok(delivery),
            None => self.wait_under_lock(None),
        }
    }

    /// Blocks until the delivery report arrives, or returns
    /// [`Error::TimedOut`] after `timeout`. The message may still be
    /// delivered after a timeout.
    ///
    /// On the producer's own event thread it returns
    /// [`Error::OnEventThread`] unless the report is already there, as
    /// [`wait`](Self::wait) does.
    #[inline]
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Delivery, DeliveryError> {
        match self.take_delivered() {
            Some(delivery) => Ok(delivery),
            None => self.wait_under_lock(Some(timeout)),
        }
    }

    /// Waits for a result that is not delivered yet, or delivered after
    /// the close, under the table's lock: the rest of
    /// [`wait`](Self::wait) and [`wait_timeout`](Self::wait_timeout).
    #[inline(never)]
    fn wait_under_lock(mut self, timeout: Option<Duration>) -> Result<Delivery, DeliveryError> {
        if self.would_block_event_thread() {
            return Err(Error::OnEventThread { operation: "wait for a delivery" }.into());
        }

        let (result, last) = self.table().wait_slot(self.id, timeout);
        let Some(result) = result else {
            let timeout = timeout.unwrap_or(Duration::MAX);
            return Err(Error::TimedOut { operation: "delivery report", timeout }.into());
        };
        self.id = TAKEN;
        // Dropping the last reference may free the table, which nothing
        // borrows any more.
        drop(last);
        result
    }

    /// Returns whether the result has arrived, without blocking.
    pub fn is_ready(&self) -> bool {
        self.id != TAKEN && self.cell().is_some_and(|cell| matches!(cell.state(), DELIVERED | DELIVERED_KEPT | FAILED))
    }
}

impl Future for DeliveryFuture {
    type Output = Result<Delivery, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(self.id != TAKEN, "a DeliveryFuture was polled after it returned Ready");
        if let Some(delivery) = self.take_delivered() {
            return Poll::Ready(Ok(delivery));
        }

        let (result, last) = self.table().poll_slot(self.id, context.waker());
        if result.is_ready() {
            self.id = TAKEN;
        }
        drop(last);
        result
    }
}

impl Drop for DeliveryFuture {
    #[inline]
    fn drop(&mut self) {
        if self.id != TAKEN {
            self.release();
        }
    }
}

impl DeliveryFuture {
    /// Lets go of the slot of a future dropped before its result was taken.
    #[inline(never)]
    fn release(&mut self) {
        if self.cell().is_some_and(SlotCell::drop_delivered) {
            self.id = TAKEN;
            return;
        }
        let released = self.table().release(self.id);
        self.id = TAKEN;
        if catch_unwind(AssertUnwindSafe(|| drop(released))).is_err() {
            log::error!("dropping a waker or payload of a dropped delivery future panicked");
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
        assert_eq!(std::mem::size_of::<Slot>(), 24);
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
        assert_eq!(delivery.timestamp, Timestamp::CreateTime(7));
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
