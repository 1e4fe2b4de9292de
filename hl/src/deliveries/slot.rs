//! A send's slot in the delivery table: its states and the atomics that
//! let a future take a delivered result without the table's lock.

use super::{Delivery, Outcome};
use crate::message::Timestamp;
#[cfg(not(all(test, loom)))]
use crate::segments::Zeroable;
use crate::sync::{AtomicI32, AtomicI64, AtomicU32, Ordering};
use crate::topic_names;

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
/// In a thread's block, not used yet.
pub(super) const RESERVED: u32 = 6;
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
pub(super) struct Slot {
    pub(super) first: i64,
    pub(super) second: i64,
    pub(super) partition: i32,
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
pub(super) struct SlotCell {
    pub(super) first: AtomicI64,
    pub(super) second: AtomicI64,
    pub(super) partition: AtomicI32,
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
            first: AtomicI64::new(0),
            second: AtomicI64::new(0),
            partition: AtomicI32::new(0),
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
            first: self.first.load(Ordering::Relaxed),
            second: self.second.load(Ordering::Relaxed),
            partition: self.partition.load(Ordering::Relaxed),
            word,
        }
    }

    /// Writes the slot, the word last. Only under the table's lock.
    #[inline]
    pub(super) fn store(&self, slot: Slot) {
        self.first.store(slot.first, Ordering::Relaxed);
        self.second.store(slot.second, Ordering::Relaxed);
        self.partition.store(slot.partition, Ordering::Relaxed);
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
    pub(super) fn take_delivered(&self) -> Option<Delivery> {
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
    pub(super) fn drop_delivered(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & STATE_MASK == DELIVERED && self.word.compare_exchange(word, FREE, Ordering::Release, Ordering::Relaxed).is_ok()
    }
}

/// Builds the slot of a new send, awaiting its report.
pub(super) fn waiting(topic: u32, generation: u16, payloads: i64) -> Slot {
    Slot {
        first: 0,
        second: payloads,
        partition: i32::from(generation),
        word: WAITING | (topic << TOPIC_SHIFT),
    }
}

/// Builds the resolved slot of a delivered send.
pub(super) fn delivered(word: u32, outcome: Outcome) -> Slot {
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
pub(super) fn failed(slot: Slot, code: i32) -> Slot {
    Slot {
        first: i64::from(code),
        second: slot.second,
        partition: -1,
        word: FAILED | (slot.topic() << TOPIC_SHIFT),
    }
}

/// Reads the delivery out of a `DELIVERED` or `DELIVERED_KEPT` slot.
#[inline]
pub(super) fn delivery_of(slot: Slot) -> Delivery {
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
