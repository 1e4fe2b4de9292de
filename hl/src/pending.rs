//! The table of pending completions that pairs librdkafka's events with the
//! Rust side.
//!
//! Every operation whose result librdkafka reports later (a commit, an
//! admin request) is registered here before the C call that starts it, and
//! gets an id. The producer's deliveries use a table of their own, built
//! for volume, with the same invariants (`deliveries` module). The id travels through librdkafka as the message or request
//! opaque, and the event thread takes the completion back out by that id.
//! This is where the pairing invariants are enforced:
//!
//! 1. A completion is registered before librdkafka can emit its event:
//!    callers call [`Pending::register`] first, then the C function with
//!    the id, and [`Pending::take`] the id back if the C call fails.
//! 2. The lock is only held inside the methods below, which call neither
//!    librdkafka nor user code. Callers resolve and wake completions after
//!    the method returns.
//! 3. Completions are found by id, never by position, because librdkafka
//!    reports deliveries per partition and not in send order.
//! 4. Every completion leaves the table exactly once: through `take` when
//!    its event arrives, or through [`Pending::close`] when the client shuts
//!    down, after which `register` fails.
//!
//! Ids are consecutive, so the table is a `VecDeque` indexed by
//! `id - first_id`: registering and taking are O(1), and slots already
//! taken at the front are dropped as the front advances.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, Mutex};

/// Pending completions of type `T`, keyed by id.
pub(crate) struct Pending<T> {
    table: Mutex<Table<T>>,
    emptied: Condvar,
}

struct Table<T> {
    /// The id of `slots[0]`.
    first_id: u64,
    slots: VecDeque<Option<T>>,
    /// How many slots hold a completion.
    count: usize,
    closed: bool,
}

impl<T> Pending<T> {
    pub(crate) fn new() -> Self {
        Self {
            table: Mutex::new(Table {
                // Id 0 would travel as a NULL opaque, which librdkafka also
                // uses for "no opaque", so ids start at 1.
                first_id: 1,
                slots: VecDeque::new(),
                count: 0,
                closed: false,
            }),
            emptied: Condvar::new(),
        }
    }

    /// Adds a completion and returns its id, or hands the completion back
    /// when the table is closed.
    pub(crate) fn register(&self, completion: T) -> Result<u64, T> {
        let mut table = self.table.lock();
        if table.closed {
            return Err(completion);
        }

        let id = table.first_id + table.slots.len() as u64;
        table.slots.push_back(Some(completion));
        table.count += 1;
        Ok(id)
    }

    /// Removes and returns the completion with `id`, if it is still here.
    pub(crate) fn take(&self, id: u64) -> Option<T> {
        let mut table = self.table.lock();
        let completion = table.remove(id)?;
        if table.is_idle() {
            self.emptied.notify_all();
        }
        Some(completion)
    }

    /// Returns the number of completions still pending.
    pub(crate) fn len(&self) -> usize {
        self.table.lock().count
    }

    /// Waits until no completion is pending. Returns whether that happened
    /// before `timeout`.
    pub(crate) fn wait_until_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut table = self.table.lock();
        while !table.is_idle() {
            match deadline {
                Some(deadline) => {
                    if self.emptied.wait_until(&mut table, deadline).timed_out() {
                        return table.is_idle();
                    }
                }
                None => self.emptied.wait(&mut table),
            }
        }
        true
    }

    /// Closes the table and returns every completion still in it, in id
    /// order. Later `register` calls fail.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut table = self.table.lock();
        table.closed = true;

        let drained: Vec<T> = table.slots.drain(..).flatten().collect();
        table.first_id += drained.len() as u64;
        table.count = 0;
        self.emptied.notify_all();
        drained
    }
}

impl<T> Table<T> {
    fn remove(&mut self, id: u64) -> Option<T> {
        let index = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        let completion = self.slots.get_mut(index)?.take()?;

        self.count -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.first_id += 1;
        }
        Some(completion)
    }

    fn is_idle(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn take_finds_completion_by_id_in_any_order() {
        let pending = Pending::new();
        let ids: Vec<u64> = (0..5).map(|n| pending.register(n).unwrap()).collect();

        assert_eq!(pending.take(ids[3]), Some(3));
        assert_eq!(pending.take(ids[0]), Some(0));
        assert_eq!(pending.take(ids[4]), Some(4));
        assert_eq!(pending.len(), 2);
        assert_eq!(pending.take(ids[1]), Some(1));
        assert_eq!(pending.take(ids[2]), Some(2));
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn take_twice_returns_none() {
        let pending = Pending::new();
        let id = pending.register("a").unwrap();

        assert_eq!(pending.take(id), Some("a"));
        assert_eq!(pending.take(id), None);
        assert_eq!(pending.take(0), None);
        assert_eq!(pending.take(u64::MAX), None);
    }

    #[test]
    fn ids_stay_unique_after_front_advances() {
        let pending = Pending::new();
        let first = pending.register('a').unwrap();
        assert_eq!(pending.take(first), Some('a'));

        let second = pending.register('b').unwrap();

        assert_ne!(first, second);
        assert_eq!(pending.take(first), None);
        assert_eq!(pending.take(second), Some('b'));
    }

    #[test]
    fn close_returns_rest_and_rejects_new() {
        let pending = Pending::new();
        let a = pending.register(1).unwrap();
        pending.register(2).unwrap();
        pending.register(3).unwrap();
        pending.take(a);

        assert_eq!(pending.close(), vec![2, 3]);
        assert_eq!(pending.register(4), Err(4));
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn wait_until_empty_wakes_on_last_take() {
        let pending = Arc::new(Pending::new());
        let ids: Vec<u64> = (0..100).map(|n| pending.register(n).unwrap()).collect();

        let taker = {
            let pending = Arc::clone(&pending);
            thread::spawn(move || {
                for id in ids.into_iter().rev() {
                    assert!(pending.take(id).is_some());
                }
            })
        };

        assert!(
            pending.wait_until_empty(Duration::from_secs(10)),
            "timed out waiting for the table to empty"
        );
        taker.join().unwrap();
    }

    #[test]
    fn wait_until_empty_times_out_while_pending() {
        let pending = Pending::new();
        pending.register(()).unwrap();

        assert!(!pending.wait_until_empty(Duration::from_millis(20)));
    }

    #[test]
    fn concurrent_register_and_take_resolve_each_once() {
        // Miri interprets the test far slower than native code runs, so
        // it registers fewer completions.
        let per_thread: u64 = if cfg!(miri) { 25 } else { 10_000 };
        let pending = Arc::new(Pending::new());
        let (sender, receiver) = std::sync::mpsc::channel();

        let registrars: Vec<_> = (0..4)
            .map(|thread_index| {
                let pending = Arc::clone(&pending);
                let sender = sender.clone();
                thread::spawn(move || {
                    for n in 0..per_thread {
                        let id = pending.register(thread_index * 1_000_000 + n).unwrap();
                        sender.send(id).unwrap();
                    }
                })
            })
            .collect();
        drop(sender);

        let mut seen = std::collections::HashSet::new();
        for id in receiver {
            let value = pending.take(id).expect("a registered id was not found");
            assert!(seen.insert(value), "value {value} resolved twice");
        }
        for registrar in registrars {
            registrar.join().unwrap();
        }

        assert_eq!(seen.len() as u64, 4 * per_thread);
        assert_eq!(pending.len(), 0);
    }
}
