//! Topic names, kept once per process for its whole life.
//!
//! A [`Delivery`](crate::Delivery) names its topic with a `&'static str`,
//! which a million results can share and copy without a reference count.
//! The delivery table stores a name's index, and readers turn the index
//! back into the name without a lock. Each distinct name sent to costs its
//! length plus under 100 bytes, never freed. That is small next to the
//! topic object that librdkafka keeps per name in each client.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::segments::Segments;

/// How many distinct topic names a process can send to: the delivery
/// table packs an index into 27 bits.
pub(crate) const MAX_TOPICS: u32 = 1 << 27;

/// The index of each name, under the lock that adds names.
static INDEXES: Mutex<Option<HashMap<&'static str, u32>>> = Mutex::new(None);

/// The names by index, readable without the lock.
static NAMES: Segments<OnceLock<&'static str>> = Segments::new(OnceLock::new);

/// Returns the index of `name`, storing the name the first time, or `None`
/// when [`MAX_TOPICS`] names are stored already.
pub(crate) fn index(name: &str) -> Option<u32> {
    let mut indexes = INDEXES.lock().unwrap_or_else(PoisonError::into_inner);
    let indexes = indexes.get_or_insert_with(HashMap::new);
    if let Some(&index) = indexes.get(name) {
        return Some(index);
    }

    let index = u32::try_from(indexes.len()).ok().filter(|&index| index < MAX_TOPICS)?;
    let name: &'static str = Box::leak(name.into());
    NAMES.get_or_allocate(index).get_or_init(|| name);
    indexes.insert(name, index);
    Some(index)
}

/// Returns the name stored with `index`, or `""` for an index that
/// [`index`] never returned.
#[inline]
pub(crate) fn name(index: u32) -> &'static str {
    NAMES.get(index).and_then(OnceLock::get).copied().unwrap_or("")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let orders = index("names-round-trip-orders").expect("an index for the first name");
        let payments = index("names-round-trip-payments").expect("an index for the second name");

        assert_ne!(orders, payments, "two names share an index");
        assert_eq!(index("names-round-trip-orders"), Some(orders), "index of a name stored before");
        assert_eq!(name(orders), "names-round-trip-orders");
        assert_eq!(name(payments), "names-round-trip-payments");
        assert_eq!(name(MAX_TOPICS), "", "name of an index never returned");
    }
}
