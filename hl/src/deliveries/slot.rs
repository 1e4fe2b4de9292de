//! A send's slot in the delivery table: its states and the atomics that
//! let a future take a delivered result without the table's lock.

use std::sync::atomic::compiler_fence;

use super::{close_race, Delivery, Outcome};
use crate::message::Timestamp;
#[cfg(not(all(test, loom)))]
use crate::segments::Zeroable;
use crate::sync::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use crate::topic_names;
use crate::OFFSET_INVALID;

// Slot states, in the lowest 3 bits of `Slot::word`.
pub(super) const FREE: u32 = 0;
/// The report has not arrived; the future may have stored a waker.
pub(super) const WAITING: u32 = 1;
/// The report has not arrived, and the future is gone.
pub(super) const ORPHANED: u32 = 2;
/// Delivered, by its report; the future has not read it.
pub(super) const DELIVERED: u32 = 3;
/// Failed, by its report or by the producer's close; not read yet.
pub(super) const FAILED: u32 = 4;
/// Delivered and not read when the producer closed. Its future reads it
/// under the lock, to count the futures that keep the table alive.
pub(super) const DELIVERED_KEPT: u32 = 5;
/// The last slot of a claimed block, not used yet (see
/// `DeliveryTable::block_is_free`).
pub(super) const RESERVED: u32 = 6;
/// Delivered, with a result that does not fit in the slot (see
/// [`delivered`]). The result waits in the table's side table, and the
/// future reads it under the lock.
pub(super) const DELIVERED_LARGE: u32 = 7;
pub(super) const STATE_MASK: u32 = 0b111;

// Timestamp kinds, in bits 3 and 4 of `Slot::word`.
pub(super) const STAMP_SHIFT: u32 = 3;
pub(super) const STAMP_NONE: u32 = 0;
pub(super) const STAMP_CREATE: u32 = 1;
pub(super) const STAMP_LOG_APPEND: u32 = 2;

/// The topic index ([`topic_names`]) takes the upper 27 bits of
/// `Slot::word`.
pub(super) const TOPIC_SHIFT: u32 = 5;
const _: () = assert!(topic_names::MAX_TOPICS == 1 << (32 - TOPIC_SHIFT));

/// Returns whether a slot in `state` contains its send's result.
pub(super) fn is_resolved(state: u32) -> bool {
    matches!(state, DELIVERED | DELIVERED_KEPT | DELIVERED_LARGE | FAILED)
}

/// Timestamps in a delivered slot are milliseconds from the table's first
/// timestamp (`DeliveryTable::stamp_base`), within 2^39 either way (17
/// years), stored + 2^39 in 40 bits.
const STAMP_BITS: u32 = 40;
const STAMP_BIAS: i64 = 1 << (STAMP_BITS - 1);
/// `DeliveryTable::stamp_base` before the first timestamp. A first
/// timestamp of `i64::MIN` leaves it so.
pub(super) const NO_STAMP_BASE: i64 = i64::MIN;
/// Offsets in a delivered slot are stored + 1, in 40 bits, with 0 for
/// [`OFFSET_INVALID`].
const OFFSET_BITS: u32 = 40;
/// Partitions in a delivered slot take 16 bits.
const PARTITION_BITS: u32 = 16;
const _: () = assert!(PARTITION_BITS + OFFSET_BITS + STAMP_BITS == 96);

/// The mask of the waker's reference in the `large` field of a `WAITING`
/// slot. The payloads' reference takes the upper 32 bits.
const WAKER_MASK: u64 = 0xffff_ffff;

/// One send, in 16 bytes, because a million of them may wait to be read.
/// What its fields hold depends on the state:
///
/// | state | `small` | `large` |
/// |---|---|---|
/// | `FREE`, `RESERVED` | | |
/// | `WAITING`, `ORPHANED` | generation | waker reference, payloads reference above bit 32 |
/// | `DELIVERED`, `DELIVERED_KEPT` | the result's upper bits | the result's lower bits (see [`delivered`]) |
/// | `DELIVERED_LARGE` | | the result's reference |
/// | `FAILED` | error code | payloads reference above bit 32 |
///
/// References point into the table's side tables, and 0 means none. Wakers,
/// owned payloads and large results live there, since most sends have
/// none. The table stores slots as [`SlotCell`]s; this is a copy.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    pub(super) large: u64,
    pub(super) small: u32,
    /// State, timestamp kind and topic index.
    pub(super) word: u32,
}

impl Slot {
    pub(super) fn state(&self) -> u32 {
        self.word & STATE_MASK
    }

    pub(super) fn topic(&self) -> u32 {
        self.word >> TOPIC_SHIFT
    }

    /// Returns whether the slot awaits the report of the send with `generation`.
    pub(super) fn awaits(&self, generation: u32) -> bool {
        matches!(self.state(), WAITING | ORPHANED) && self.small == generation
    }

    /// Returns the waker's reference of a `WAITING` slot.
    pub(super) fn waker(&self) -> u32 {
        (self.large & WAKER_MASK) as u32
    }

    /// Returns a copy of a `WAITING` slot with the waker's reference `waker`.
    pub(super) fn with_waker(self, waker: u32) -> Self {
        Self {
            large: (self.large & !WAKER_MASK) | u64::from(waker),
            ..self
        }
    }

    /// Returns the payloads' reference of a `WAITING`, `ORPHANED` or `FAILED` slot.
    pub(super) fn payloads(&self) -> u32 {
        (self.large >> 32) as u32
    }

    /// Returns the error code of a `FAILED` slot.
    pub(super) fn code(&self) -> i32 {
        self.small as i32
    }

    /// Returns the result's reference of a `DELIVERED_LARGE` slot.
    pub(super) fn large_result(&self) -> u32 {
        self.large as u32
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
/// With a close that runs a barrier on every thread, the read uses a plain
/// store, and [`close_race`] settles a read that the close counted too.
pub(super) struct SlotCell {
    pub(super) large: AtomicU64,
    pub(super) small: AtomicU32,
    pub(super) word: AtomicU32,
}

// SAFETY: a slot's fields are atomics of integers, which all zeros make
// valid, and a slot of zeros is `FREE`. `loom`'s atomics are not plain
// integers, so the models make their slots with `SlotCell::free`.
#[cfg(not(all(test, loom)))]
unsafe impl Zeroable for SlotCell {}

impl SlotCell {
    /// Makes a free slot: what a zeroed slot is, for the models and tests.
    #[cfg(test)]
    pub(super) fn free() -> Self {
        Self {
            large: AtomicU64::new(0),
            small: AtomicU32::new(0),
            word: AtomicU32::new(FREE),
        }
    }

    pub(super) fn state(&self) -> u32 {
        self.word.load(Ordering::Acquire) & STATE_MASK
    }

    /// Reads the slot: under the table's lock, or by its future once its
    /// state is `DELIVERED`.
    pub(super) fn load(&self) -> Slot {
        let word = self.word.load(Ordering::Acquire);
        Slot {
            large: self.large.load(Ordering::Relaxed),
            small: self.small.load(Ordering::Relaxed),
            word,
        }
    }

    /// Writes the slot, the word last. Only under the table's lock, or by
    /// the thread whose block contains the slot, before its send is made.
    #[inline]
    pub(super) fn store(&self, slot: Slot) {
        self.large.store(slot.large, Ordering::Relaxed);
        self.small.store(slot.small, Ordering::Relaxed);
        self.word.store(slot.word, Ordering::Release);
    }

    /// Frees the slot. Only under the table's lock.
    pub(super) fn free_under_lock(&self) {
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
    pub(super) fn take_delivered(&self, stamp_base: &AtomicI64) -> Option<Delivery> {
        let (slot, stamp_base) = self.load_delivered(stamp_base)?;
        // `Release`: the reads above happen before a later send reuses the
        // slot, or the close frees the table.
        self.word.compare_exchange(slot.word, FREE, Ordering::Release, Ordering::Relaxed).ok()?;
        Some(delivery_of(slot, stamp_base))
    }

    /// Takes the result of a delivered slot and frees it with a plain
    /// store, as [`SlotCell::take_delivered`] does with its
    /// compare-exchange, for tables whose close runs a barrier on every
    /// thread (see [`close_race`]). Returns the delivery and whether a
    /// close may have counted the slot meanwhile: then the caller calls
    /// `DeliveryTable::settle_raced_read`.
    #[inline]
    pub(super) fn take_delivered_unfenced(&self, stamp_base: &AtomicI64) -> Option<(Delivery, bool)> {
        let before = close_race::epoch();
        let (slot, stamp_base) = self.load_delivered(stamp_base)?;

        // `Release`: the reads above happen before a later send reuses the
        // slot, or the close frees the table.
        self.word.store(FREE, Ordering::Release);
        // The compiler keeps the epoch's load after the store. A close's
        // barrier on this thread keeps the processor from reordering them.
        compiler_fence(Ordering::SeqCst);
        let after = close_race::epoch();
        Some((delivery_of(slot, stamp_base), before % 2 == 1 || before != after))
    }

    /// Reads a `DELIVERED` slot, for its future, with the table's
    /// `stamp_base`, which the report stored before it stored the slot.
    /// Returns `None` in any other state.
    #[inline]
    fn load_delivered(&self, stamp_base: &AtomicI64) -> Option<(Slot, i64)> {
        let word = self.word.load(Ordering::Acquire);
        if word & STATE_MASK != DELIVERED {
            return None;
        }
        let slot = Slot {
            large: self.large.load(Ordering::Relaxed),
            small: self.small.load(Ordering::Relaxed),
            word,
        };
        Some((slot, stamp_base.load(Ordering::Relaxed)))
    }

    /// Frees a delivered slot whose future is dropped unread, as
    /// [`SlotCell::take_delivered`] does. Returns whether it did.
    pub(super) fn drop_delivered(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & STATE_MASK == DELIVERED && self.word.compare_exchange(word, FREE, Ordering::Release, Ordering::Relaxed).is_ok()
    }
}

/// Builds the slot of a new send, awaiting its report.
pub(super) fn waiting(topic: u32, generation: u16, payloads: u32) -> Slot {
    Slot {
        large: u64::from(payloads) << 32,
        small: u32::from(generation),
        word: WAITING | (topic << TOPIC_SHIFT),
    }
}

/// Builds the resolved slot of a delivered send, out of the word of its
/// waiting slot and the table's `stamp_base`. Returns `None` when the
/// result does not fit: a partition above 65,535, an offset from 2^40 - 1
/// on (or negative but for [`OFFSET_INVALID`]), a timestamp outside
/// `stamp_base - 2^39` to `stamp_base + 2^39 - 1` milliseconds, or any
/// timestamp before the table has a base. Such results go to a side table
/// ([`delivered_large`]).
///
/// The result takes 96 bits: the partition in the lowest 16, then the
/// offset + 1, then the timestamp (see [`STAMP_BITS`]).
#[inline]
pub(super) fn delivered(word: u32, outcome: Outcome, stamp_base: i64) -> Option<Slot> {
    let stamp_of = |milliseconds: i64| {
        if stamp_base == NO_STAMP_BASE {
            return None;
        }
        let stamp = milliseconds.checked_sub(stamp_base)?.checked_add(STAMP_BIAS)?;
        (0..1 << STAMP_BITS).contains(&stamp).then_some(stamp)
    };
    let (kind, stamp) = match outcome.timestamp {
        Timestamp::NotAvailable => (STAMP_NONE, 0),
        Timestamp::CreateTime(milliseconds) => (STAMP_CREATE, stamp_of(milliseconds)?),
        Timestamp::LogAppendTime(milliseconds) => (STAMP_LOG_APPEND, stamp_of(milliseconds)?),
    };
    let offset = match outcome.offset {
        OFFSET_INVALID => 0,
        offset if (0..(1 << OFFSET_BITS) - 1).contains(&offset) => offset + 1,
        _ => return None,
    };
    let partition = u16::try_from(outcome.partition).ok()?;

    let packed = u128::from(partition) | (offset as u128) << PARTITION_BITS | (stamp as u128) << (PARTITION_BITS + OFFSET_BITS);
    let topic = word >> TOPIC_SHIFT;
    Some(Slot {
        large: packed as u64,
        small: (packed >> 64) as u32,
        word: DELIVERED | (kind << STAMP_SHIFT) | (topic << TOPIC_SHIFT),
    })
}

/// Builds the resolved slot of a delivered send whose result is in the
/// side table, at `reference`.
pub(super) fn delivered_large(word: u32, reference: u32) -> Slot {
    Slot {
        large: u64::from(reference),
        small: 0,
        word: DELIVERED_LARGE | (word & !STATE_MASK),
    }
}

/// Builds the resolved slot of a failed send, out of the word of its
/// waiting slot.
pub(super) fn failed(word: u32, code: i32, payloads: u32) -> Slot {
    Slot {
        large: u64::from(payloads) << 32,
        small: code as u32,
        word: FAILED | (word >> TOPIC_SHIFT << TOPIC_SHIFT),
    }
}

/// Reads the delivery out of a `DELIVERED` or `DELIVERED_KEPT` slot, with
/// the table's `stamp_base`.
#[inline]
pub(super) fn delivery_of(slot: Slot, stamp_base: i64) -> Delivery {
    let packed = u128::from(slot.large) | u128::from(slot.small) << 64;
    let partition = (packed & ((1 << PARTITION_BITS) - 1)) as i32;
    let offset = ((packed >> PARTITION_BITS) & ((1 << OFFSET_BITS) - 1)) as i64;
    // Only a slot with a timestamp has a base to count from.
    let stamp = || (packed >> (PARTITION_BITS + OFFSET_BITS)) as i64 - STAMP_BIAS + stamp_base;
    let timestamp = match (slot.word >> STAMP_SHIFT) & 0b11 {
        STAMP_CREATE => Timestamp::CreateTime(stamp()),
        STAMP_LOG_APPEND => Timestamp::LogAppendTime(stamp()),
        _ => Timestamp::NotAvailable,
    };
    Delivery {
        topic: topic_names::name(slot.topic()),
        partition,
        offset: if offset == 0 { OFFSET_INVALID } else { offset - 1 },
        timestamp,
    }
}
