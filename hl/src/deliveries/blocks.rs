//! Blocks of slots that sending threads register their sends into without
//! the delivery table's lock.

use std::cell::RefCell;

use super::slot::{waiting, FREE, RESERVED};
use super::{DeliveryTable, Payloads, Table, MAX_INDEX};
use crate::sync::{Arc, AtomicBool, AtomicU32, Ordering};
use crate::topic_names;

/// How many slots a block has: a thread takes a block of free slots under
/// the table's lock, then registers that many sends without it. A slot is
/// reused only with its whole block of this length, so an unread future
/// keeps at most this many slots from reuse. The unused rest of a block
/// that its thread gives up becomes a shorter block for the next claim.
/// The models of `model_check` use short blocks, to keep the
/// interleavings few.
#[cfg(not(all(test, loom)))]
pub(super) const BLOCK_LEN: u32 = 16;
#[cfg(all(test, loom))]
pub(super) const BLOCK_LEN: u32 = 2;

/// How many blocks after the cursor a claim checks for a free one before
/// it makes a new one. More checks find more of the blocks freed out of
/// order, at the price of more reads while most blocks are in use.
pub(super) const FREE_BLOCK_CHECKS: u32 = 4;

/// The maximum number of claims in a row that make a new block without
/// checking for a free one (see `claim_free_block`). Each may make a block
/// where a freed one was available, so this bounds the blocks made too
/// many after a run of misses. The cursor moves on meanwhile, so later
/// checks reach the freed blocks.
pub(super) const MAX_CLAIMS_UNCHECKED: u32 = 64;

/// How many producers' blocks a thread keeps at once. A thread that sends
/// through more producers in turn gives up the oldest block, and claims a
/// new one, under the lock, when it comes back to that producer.
pub(super) const BLOCKS_PER_THREAD: usize = 4;

/// A block of slots that one thread registers sends into without the
/// table's lock: the part the table lists.
pub(super) struct SharedBlock {
    /// The block's first slot.
    start: u32,
    /// The number of slots, [`BLOCK_LEN`] or fewer for the rest of a block.
    len: u32,
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

impl LocalBlock {
    /// Turns this used-up block into the thread's next one, `shared`, in
    /// the same allocation, which saves an allocation and a free per
    /// claim. Returns both, unchanged, while the table still lists this
    /// block.
    fn renew(mut self, shared: SharedBlock, generation: u16) -> Result<Self, (Self, SharedBlock)> {
        match Arc::get_mut(&mut self.shared) {
            Some(place) => {
                *place = shared;
                self.generation = generation;
                self.used = 0;
                Ok(self)
            }
            None => Err((self, shared)),
        }
    }
}

impl Drop for LocalBlock {
    fn drop(&mut self) {
        // The thread ends, or gives the block up: the table counts its
        // sends and hands its unused slots to a later claim.
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

/// The block that sends with owned payloads use, under the table's lock.
pub(super) struct LockedBlock {
    start: u32,
    len: u32,
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

impl DeliveryTable {
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
            Some(position) if blocks[position].used < blocks[position].shared.len => position,
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
        let (start, len, generation) = self.claim_block(&mut table)?;
        let shared = SharedBlock {
            start,
            len,
            used: AtomicU32::new(0),
            abandoned: AtomicBool::new(false),
        };
        let new_block = |shared| LocalBlock {
            table: self.id,
            generation,
            used: 0,
            shared: Arc::new(shared),
        };
        let (block, unused) = match used_up {
            Some(used_up) => match used_up.renew(shared, generation) {
                Ok(block) => (block, None),
                Err((used_up, shared)) => (new_block(shared), Some(used_up)),
            },
            None => (new_block(shared), None),
        };
        table.blocks.push(Arc::clone(&block.shared));
        drop(table);

        // Dropped with no lock held: its drop only marks it abandoned,
        // which no longer matters once the table counted it.
        drop(unused);
        Some(block)
    }

    /// Registers a send under the lock, in the table's own block.
    #[inline(never)]
    fn register_locked(self: &Arc<Self>, topic: u32, payloads: Option<Box<Payloads>>) -> Result<u64, Option<Box<Payloads>>> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(payloads);
        }
        let (start, len, used, generation) = match &table.locked_block {
            Some(block) if block.used < block.len => (block.start, block.len, block.used, block.generation),
            _ => {
                let Some((start, len, generation)) = self.claim_block(&mut table) else {
                    return Err(payloads);
                };
                (start, len, 0, generation)
            }
        };
        table.locked_block = Some(LockedBlock {
            start,
            len,
            used: used + 1,
            generation,
        });

        let index = start + used;
        let payloads = payloads.map_or(0, |payloads| table.payloads.insert(payloads));
        self.cell(index).store(waiting(topic, generation, payloads));
        table.unreported += 1;
        Ok(self.slot_id(generation, index))
    }

    /// Claims a block of slots and returns its first slot, its
    /// length and its generation: the unused rest of an abandoned block,
    /// else a block of free slots among the next few from the cursor, else
    /// a new one. Returns `None` when every slot index is in use.
    ///
    /// Also counts the sends of blocks that their threads abandoned.
    fn claim_block(self: &Arc<Self>, table: &mut Table) -> Option<(u32, u32, u16)> {
        self.settle_abandoned(table);
        let (start, len) = match table.rests.pop() {
            Some(rest) => rest,
            None => (self.claim_free_block(table)?, BLOCK_LEN),
        };

        let generation = table.next_generation;
        table.next_generation = generation.wrapping_add(1);
        if table.self_reference.is_none() {
            table.self_reference = Some(Arc::clone(self));
        }
        Some((start, len, generation))
    }

    /// Finds a block of free slots, marks its last one reserved and returns the
    /// first one. Checks the next few blocks from the cursor, else makes a
    /// new one. Returns `None` when every slot index is in use.
    ///
    /// After checks that found nothing, the next few claims make new blocks
    /// without checking, twice as many after each such miss, up to
    /// [`MAX_CLAIMS_UNCHECKED`]. While most blocks are in use, the checks
    /// read slots long out of the cache (a quarter of a microsecond per
    /// claim in a profile of 1,000,000 unread sends).
    fn claim_free_block(&self, table: &mut Table) -> Option<u32> {
        let mut found = None;
        let checks = FREE_BLOCK_CHECKS.min(table.len / BLOCK_LEN);
        if table.unchecked_claims > 0 {
            // The cursor still moves as far as the checks would have taken
            // it, so that it keeps passing the blocks claimed last and
            // comes back round to those freed since.
            table.unchecked_claims -= 1;
            table.cursor = (table.cursor + checks * BLOCK_LEN) % table.len.max(1);
        } else if checks > 0 {
            for _ in 0..checks {
                let start = table.cursor;
                table.cursor = if start + BLOCK_LEN >= table.len { 0 } else { start + BLOCK_LEN };
                if self.block_is_free(start) {
                    found = Some(start);
                    break;
                }
            }
            table.missed_checks = match found {
                Some(_) => 0,
                None => (table.missed_checks * 2).clamp(1, MAX_CLAIMS_UNCHECKED),
            };
            table.unchecked_claims = table.missed_checks;
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

        self.cell(start + BLOCK_LEN - 1).word.store(RESERVED, Ordering::Relaxed);
        Some(start)
    }

    /// Returns whether every slot of the block at `start` is free. Under
    /// the lock.
    ///
    /// A claim marks only the block's last slot [`RESERVED`]. The slots of
    /// a block and of its rests are written in order. So while the last
    /// slot is not free, a thread still fills part of the block, or a
    /// future owns the block's last send. That slot is read first, with
    /// `Acquire`: once it is free, the writes to the slots before it are
    /// seen too, and a slot before it that still reads as free is free.
    fn block_is_free(&self, start: u32) -> bool {
        let last = start + BLOCK_LEN - 1;
        self.cell(last).state() == FREE && (start..last).all(|index| self.cell(index).state() == FREE)
    }

    /// Counts the sends of abandoned blocks in `unreported`, keeps the rest
    /// of their slots, unused, for later claims (`Table::rests`)
    /// and removes the blocks from `Table::blocks`.
    fn settle_abandoned(&self, table: &mut Table) {
        let mut settled = 0;
        let mut rests = Vec::new();
        table.blocks.retain(|shared| {
            // `Acquire`: the thread's writes to the block come before its
            // abandonment.
            if !shared.abandoned.load(Ordering::Acquire) {
                return true;
            }
            let used = shared.used.load(Ordering::Relaxed);
            if used < shared.len {
                rests.push((shared.start + used, shared.len - used));
            }
            settled += i64::from(used);
            false
        });
        table.unreported += settled;
        table.rests.append(&mut rests);
    }

    /// Returns the number of sends without a report: those counted in the
    /// table, plus those in blocks that threads are still filling.
    pub(super) fn unreported_locked(&self, table: &Table) -> i64 {
        let in_blocks: i64 = table.blocks.iter().map(|shared| i64::from(shared.used.load(Ordering::Acquire))).sum();
        table.unreported + in_blocks
    }

    /// Makes the id of slot `index` in a block with `generation`.
    #[inline]
    fn slot_id(&self, generation: u16, index: u32) -> u64 {
        (u64::from(self.number) << 48) | (u64::from(generation) << 32) | (u64::from(index) + 1)
    }
}
