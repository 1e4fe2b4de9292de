//! The synchronisation primitives of the pairing core. A normal build uses
//! `parking_lot`'s and the standard library's. The unit tests built with
//! `--cfg loom` use `loom`'s, so that `loom` can explore every interleaving
//! of the code that pairs librdkafka's events with their futures (see
//! `model_check`).
//!
//! Both builds offer the `parking_lot` interface: [`Mutex::lock`] returns
//! the guard directly, because a thread that panics while holding a lock
//! poisons nothing, and [`Condvar`] waits on a `&mut` guard.
//!
//! `Arc` is the standard one in both builds: it appears in modules that
//! call librdkafka, which are not built against the shim. So `loom` does not see reference counts: the models check that an
//! `Arc`'s value is freed once every thread is done with it, but not the
//! memory ordering of its last drop.

// Both builds offer the same set, so that a module can start using any of
// it without touching this file. Not every item is used yet.
#[cfg(not(all(test, loom)))]
#[allow(unused_imports)]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, WaitTimeoutResult};
#[cfg(not(all(test, loom)))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(all(test, loom))]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(all(test, loom))]
#[allow(unused_imports)]
pub(crate) use loom_shim::{set_timed_waits_expire, Condvar, Mutex, MutexGuard, WaitTimeoutResult};

pub(crate) use std::sync::Arc;

#[cfg(all(test, loom))]
#[allow(dead_code)]
mod loom_shim {
    use std::cell::Cell;
    use std::ops::{Deref, DerefMut};
    use std::sync::PoisonError;
    use std::time::{Duration, Instant};

    std::thread_local! {
        static TIMED_WAITS_EXPIRE: Cell<bool> = const { Cell::new(false) };
    }

    /// Chooses how a timed wait behaves in the models that run on this
    /// thread. `loom` runs all threads of a model on the thread that calls
    /// `loom::model`, so the choice applies to all of them.
    ///
    /// `loom` has no clock, so neither choice is the real behaviour. With
    /// `false`, the default, a timed wait blocks until it is notified, like
    /// an untimed one: a lost notification shows up as a deadlock. With
    /// `true`, every timed wait releases the lock, lets the other threads
    /// run, and reports a timeout: this covers the timeout paths, but not a
    /// wait that is notified a few times before its deadline passes.
    pub(crate) fn set_timed_waits_expire(expire: bool) {
        TIMED_WAITS_EXPIRE.with(|cell| cell.set(expire));
    }

    fn timed_waits_expire() -> bool {
        TIMED_WAITS_EXPIRE.with(Cell::get)
    }

    /// `loom`'s mutex with the `parking_lot` interface.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of a [`Mutex`]. `inner` is `None` only inside a wait.
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a Mutex<T>,
        inner: Option<loom::sync::MutexGuard<'a, T>>,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: self,
                inner: Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)),
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.inner.as_deref().expect("the guard is held outside a wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.inner.as_deref_mut().expect("the guard is held outside a wait")
        }
    }

    /// Whether a timed wait returned because its deadline passed.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(self) -> bool {
            self.0
        }
    }

    /// `loom`'s condition variable with the `parking_lot` interface.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.inner.take().expect("the guard is held outside a wait");
            guard.inner = Some(self.0.wait(inner).unwrap_or_else(PoisonError::into_inner));
        }

        /// Waits for a notification, or reports a timeout, as chosen by
        /// [`set_timed_waits_expire`]. The deadline is ignored.
        pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, _deadline: Instant) -> WaitTimeoutResult {
            if !timed_waits_expire() {
                self.wait(guard);
                return WaitTimeoutResult(false);
            }

            // Release the lock so that other threads can run, as they can
            // while a real wait sleeps.
            drop(guard.inner.take());
            loom::thread::yield_now();
            guard.inner = Some(guard.mutex.0.lock().unwrap_or_else(PoisonError::into_inner));
            WaitTimeoutResult(true)
        }

        /// Waits as [`Condvar::wait_until`] does. The timeout is ignored.
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, _timeout: Duration) -> WaitTimeoutResult {
            self.wait_until(guard, Instant::now())
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
