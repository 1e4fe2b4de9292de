//! Numbers for the producers' delivery tables, so that a delivery future
//! can name its table inside its 8-byte id instead of holding a pointer.
//!
//! A number is claimed when a table is created and given back when it is
//! dropped. At most [`CAPACITY`] tables exist at once; one per producer.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use crate::deliveries::DeliveryTable;

/// How many delivery tables, so producers, can exist at once: the number
/// takes the top 16 bits of a delivery id.
pub(crate) const CAPACITY: usize = 1 << 16;

/// The table of each number, or NULL. The array is zeroed static memory,
/// so untouched entries cost no resident memory.
static TABLES: [AtomicPtr<DeliveryTable>; CAPACITY] = [const { AtomicPtr::new(ptr::null_mut()) }; CAPACITY];

/// The numbers to give out: `free` lists given-back ones, and numbers
/// from `next` on were never used.
struct Numbers {
    next: usize,
    free: Vec<u16>,
}

static NUMBERS: Mutex<Numbers> = Mutex::new(Numbers { next: 0, free: Vec::new() });

fn numbers() -> std::sync::MutexGuard<'static, Numbers> {
    // No critical section below calls anything that panics but a Vec push
    // out of memory, so a poisoned lock still guards consistent numbers.
    NUMBERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Claims a free number, or returns `None` when all are taken.
pub(crate) fn claim() -> Option<u16> {
    let mut numbers = numbers();
    if let Some(number) = numbers.free.pop() {
        return Some(number);
    }
    if numbers.next == CAPACITY {
        return None;
    }
    numbers.next += 1;
    Some((numbers.next - 1) as u16)
}

/// Records where the table with `number` lives.
pub(crate) fn publish(number: u16, table: *const DeliveryTable) {
    TABLES[usize::from(number)].store(table.cast_mut(), Ordering::Release);
}

/// Returns the table with `number`, or NULL.
#[inline]
pub(crate) fn get(number: u16) -> *const DeliveryTable {
    TABLES[usize::from(number)].load(Ordering::Acquire)
}

/// Gives `number` back, once its table is being dropped.
pub(crate) fn release(number: u16) {
    TABLES[usize::from(number)].store(ptr::null_mut(), Ordering::Release);
    numbers().free.push(number);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_table_is_found() {
        let number = claim().expect("a free number");
        // Never dereferenced: the registry only stores the address.
        let table = std::ptr::NonNull::<DeliveryTable>::dangling().as_ptr().cast_const();

        publish(number, table);
        let found = get(number);
        release(number);

        assert_eq!(found, table);
    }
}
