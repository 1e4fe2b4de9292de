//! A one-shot slot that the event thread fills and a caller waits on,
//! blocking or as a `Future`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{Arc, Condvar, Mutex};

pub(crate) struct Completion<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

enum State<T> {
    Waiting(Option<Waker>),
    Ready(T),
    Taken,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Waiting(None)),
            ready: Condvar::new(),
        })
    }

    /// Stores the result and wakes the waiter. The lock is released before
    /// waking, so a waker that runs code of its own cannot deadlock on it.
    /// Returns `false`, dropping `value`, when a result was already stored.
    pub(crate) fn resolve(self: &Arc<Self>, value: T) -> bool {
        match self.fill(value) {
            Some(wakeup) => {
                wakeup.wake();
                true
            }
            None => false,
        }
    }

    /// Stores the result without waking the waiter yet; the returned
    /// [`Wakeup`] does that. Returns `None`, dropping `value`, when a
    /// result was already stored.
    pub(crate) fn fill(self: &Arc<Self>, value: T) -> Option<Wakeup<T>> {
        let mut state = self.state.lock();
        match &mut *state {
            State::Waiting(waker) => {
                let waker = waker.take();
                *state = State::Ready(value);
                Some(Wakeup {
                    completion: Arc::clone(self),
                    waker,
                })
            }
            State::Ready(_) | State::Taken => None,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(*self.state.lock(), State::Ready(_))
    }

    /// Waits until the result is stored and takes it, or returns `None`
    /// after `timeout` (`None` waits without a limit).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Option<T> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let mut state = self.state.lock();
        loop {
            if let State::Ready(_) = *state {
                return take_ready(&mut state);
            }
            match deadline {
                Some(deadline) => {
                    if self.ready.wait_until(&mut state, deadline).timed_out() {
                        return take_ready(&mut state);
                    }
                }
                None => self.ready.wait(&mut state),
            }
        }
    }

    pub(crate) fn poll_result(&self, context: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.lock();
        match &mut *state {
            State::Waiting(waker) => {
                let current = context.waker();
                if !waker.as_ref().is_some_and(|stored| stored.will_wake(current)) {
                    *waker = Some(current.clone());
                }
                Poll::Pending
            }
            State::Ready(_) => Poll::Ready(take_ready(&mut state).expect("state is ready")),
            State::Taken => panic!("a Kafka completion future was polled after it returned Ready"),
        }
    }
}

/// The wake-up of a filled completion, for when no lock is held.
pub(crate) struct Wakeup<T> {
    completion: Arc<Completion<T>>,
    waker: Option<Waker>,
}

impl<T> Wakeup<T> {
    /// Wakes the blocking waiter and the future's waker.
    pub(crate) fn wake(self) {
        self.completion.ready.notify_all();
        if let Some(waker) = self.waker {
            // A waker is user code; its panic must not stop the event
            // thread from waking the other completions of an event.
            if catch_unwind(AssertUnwindSafe(|| waker.wake())).is_err() {
                log::error!("a waker panicked when its Kafka operation completed");
            }
        }
    }
}

fn take_ready<T>(state: &mut State<T>) -> Option<T> {
    match std::mem::replace(state, State::Taken) {
        State::Ready(value) => Some(value),
        other => {
            *state = other;
            None
        }
    }
}

/// A future over a shared completion, for the public handle types.
pub(crate) struct CompletionFuture<'a, T>(pub(crate) &'a Completion<T>);

impl<T> Future for CompletionFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        self.0.poll_result(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn resolve_before_wait_returns_value() {
        let completion = Completion::new();

        assert!(completion.resolve(7));
        assert!(completion.is_ready());
        assert_eq!(completion.wait(Some(Duration::ZERO)), Some(7));
    }

    #[test]
    fn second_resolve_is_ignored() {
        let completion = Completion::new();

        assert!(completion.resolve(1));
        assert!(!completion.resolve(2));
        assert_eq!(completion.wait(None), Some(1));
    }

    #[test]
    fn wait_times_out_without_result() {
        let completion: Arc<Completion<u8>> = Completion::new();

        assert_eq!(completion.wait(Some(Duration::from_millis(10))), None);
        assert!(!completion.is_ready());
    }

    #[test]
    fn wait_wakes_on_resolve_from_other_thread() {
        let completion = Completion::new();
        let resolver = {
            let completion = Arc::clone(&completion);
            thread::spawn(move || completion.resolve("done"))
        };

        assert_eq!(completion.wait(Some(Duration::from_secs(10))), Some("done"));
        assert!(resolver.join().unwrap());
    }

    #[test]
    fn future_is_woken_by_resolve() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;

        struct CountingWaker(AtomicUsize);
        impl Wake for CountingWaker {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        let completion = Completion::new();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut context = Context::from_waker(&waker);

        assert!(completion.poll_result(&mut context).is_pending());
        completion.resolve(5);

        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(completion.poll_result(&mut context), Poll::Ready(5));
    }
}
