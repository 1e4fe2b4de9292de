//! Reads of delivered results that race the producer's close, without a
//! read-modify-write per read.
//!
//! A future frees its delivered slot with a plain store, and the close
//! counts the delivered slots that no future took yet ([`DELIVERED`] to
//! [`DELIVERED_KEPT`], with a compare-exchange). A read and the close can
//! both take the same slot: the read loads `DELIVERED`, the close turns it
//! into `DELIVERED_KEPT`, and the read's store overwrites that. The table
//! would then wait for a future that is done already.
//!
//! So a close that finds delivered slots lists each slot it counts, in a
//! process-wide set, between two steps of an epoch (odd while a close
//! scans its slots). Before it scans, it runs a memory barrier on every
//! thread ([`membarrier`]). A read loads the epoch before it loads the slot
//! and again after its store. When the first load is odd or the two
//! differ, the read may have raced a close, so it looks its slot up in
//! the set (`DeliveryTable::settle_raced_read`). If the close listed it,
//! the read gives the table's count back.
//!
//! Why a read that the close counted always looks: the close did not see
//! the read's store when it scanned. So that store was not done before the
//! barrier ran on the reading thread, and the epoch load after it reads
//! the new epoch. If the first load read it too, it is odd. A read whose
//! first load reads the epoch of a finished close loads a slot that close
//! already turned into `DELIVERED_KEPT`, and takes the locked path. A close that
//! finds no delivered slot skips all this: no read can race it.
//!
//! A read touches the table only up to its store: a close that did not
//! count its slot may free the table right after it. The epoch and the
//! set are static for that reason, and a slot is listed by its table's
//! [`id`](super::DeliveryTable::id), which no other table ever has, and its
//! index. A read that is held up after its store may look its slot up
//! only after a later send took that slot and a close listed it. So the
//! look-up keeps the listed table alive with a strong reference of its
//! own ([`table_if_kept`]). Under the table's lock, it gives the count
//! back only if the slot is not `DELIVERED_KEPT`. That state means that
//! the later send's future has not read its result, and will give the
//! count back itself.
//!
//! Without `membarrier` ([`membarrier::available`]) reads keep the
//! compare-exchange ([`SlotCell::take_delivered`]) and none of this runs.
//! Miri and the `loom` models check that path.
//!
//! NOTE: neither Miri nor `loom` can run `membarrier`, so the protocol
//! above is checked only by unit tests that stop a read at its store,
//! stress tests and review.
//!
//! Locks, in the order they nest: [`SERIAL`], then a table's lock, then
//! [`KEPT_SLOTS`]. A read that settles waits for a close that is still scanning,
//! barrier included.
//!
//! [`DELIVERED`]: super::slot::DELIVERED
//! [`DELIVERED_KEPT`]: super::slot::DELIVERED_KEPT
//! [`SlotCell::take_delivered`]: super::slot::SlotCell::take_delivered

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::DeliveryTable;
use crate::membarrier;

/// A slot as the closes list it: its table's id and its index.
pub(super) type Key = (u64, u32);

/// Counts the closes' steps: odd while a close scans its slots.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Held by a close that lists slots, from its barrier until its slots are
/// listed, and by a read that settles, which waits for it ([`serial`]).
static SERIAL: Mutex<()> = Mutex::new(());

/// The slots that closes counted and whose futures are not done with them
/// yet. The table of a listed slot is alive: each slot listed carries one
/// count, and the future or settling read that gives it back first takes
/// the slot off the list, under this lock.
static KEPT_SLOTS: Mutex<BTreeSet<Key>> = Mutex::new(BTreeSet::new());

/// Returns whether futures read without a read-modify-write, which needs
/// a memory barrier on every thread at a close that finds delivered slots.
pub(super) fn enabled() -> bool {
    membarrier::available()
}

/// Returns the epoch, for a read: odd while a close scans.
#[inline]
pub(super) fn epoch() -> u64 {
    // `Acquire`: a read that loads the epoch of a finished close also
    // loads the slots that close kept.
    EPOCH.load(Ordering::Acquire)
}

/// A close that lists the slots it counts. Dropping it lists them and
/// ends its step of the epoch.
pub(super) struct Close {
    _serial: MutexGuard<'static, ()>,
    counted: Vec<Key>,
    fenced: bool,
}

impl Close {
    /// Starts a close: waits for other closes, makes the epoch odd and
    /// runs the barrier on every thread. Call it with no table's lock held.
    ///
    /// A failed barrier ([`Close::fenced`]) cannot harm memory: a counted
    /// read that then misses its check does not give its count back, so
    /// the table may never be freed.
    pub(super) fn begin() -> Self {
        let serial = SERIAL.lock();
        EPOCH.fetch_add(1, Ordering::SeqCst);
        let fenced = membarrier::fence_all_threads();
        Self {
            _serial: serial,
            counted: Vec::new(),
            fenced,
        }
    }

    /// Returns whether the barrier ran. The caller logs a failure once no
    /// lock is held, since a logger is user code.
    pub(super) fn fenced(&self) -> bool {
        self.fenced
    }

    /// Lists slot `key`, which the close counts, when the close ends.
    pub(super) fn keep(&mut self, key: Key) {
        self.counted.push(key);
    }
}

impl Drop for Close {
    fn drop(&mut self) {
        KEPT_SLOTS.lock().extend(self.counted.drain(..));
        // After the slots are listed, and before `SERIAL` is released.
        EPOCH.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits for a close that is still scanning, and keeps others from
/// starting: for a read that settles. Call it with no table's lock held.
pub(super) fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock()
}

/// Returns the table of slot `key`, with a strong reference of its own,
/// if a close listed the slot. `table` returns the registry's pointer for
/// the table, which points to it while the table lives.
pub(super) fn table_if_kept(key: Key, table: impl FnOnce() -> *const DeliveryTable) -> Option<Arc<DeliveryTable>> {
    let listed = KEPT_SLOTS.lock();
    if !listed.contains(&key) {
        return None;
    }
    let table = table();
    // SAFETY: the slot is listed and this lock is held, so the table is
    // alive (see `KEPT_SLOTS`). The registry's pointer is that of the
    // table's `Arc` (`Arc::as_ptr`), so it can take one more reference.
    unsafe {
        Arc::increment_strong_count(table);
        Some(Arc::from_raw(table))
    }
}

/// Takes slot `key` off the list: once its future read it or dropped it
/// unread, or a read that settled gave its count back. Returns whether it
/// was listed. Called under the table's lock.
pub(super) fn forget(key: Key) -> bool {
    KEPT_SLOTS.lock().remove(&key)
}

/// Returns whether slot `key` is on the list.
#[cfg(test)]
pub(super) fn is_kept(key: Key) -> bool {
    KEPT_SLOTS.lock().contains(&key)
}
