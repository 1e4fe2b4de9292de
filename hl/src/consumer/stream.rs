//! Reading messages as an iterator or asynchronously.
//!
//! librdkafka signals only when the consumer queue goes from empty to
//! non-empty, from one of its own threads, and other events (statistics,
//! errors) use up that signal as well. So [`Recv`] registers its waker and
//! then polls once more before it returns `Pending`: a message queued
//! between the first poll and the registration is found by the second, and
//! one queued after the registration fires the signal. The signal only
//! flags a thread of the consumer's own, which wakes the wakers, so no user
//! code runs on librdkafka's threads.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rdkafka_ll as ll;

use super::rebalance::PollGuard;
use super::Consumer;
use crate::error::Result;
use crate::message::Message;
use crate::native::{NativeClient, NativeQueue};

/// How long one blocking poll of [`Messages`] lasts before it checks again.
const ITERATOR_POLL: Duration = Duration::from_millis(500);

impl Consumer {
    /// Returns a future of the next message, for any executor.
    ///
    /// Dropping the future before it completes loses no message. Several
    /// tasks may wait at once; each message goes to one of them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use rdkafka_hl::{Config, Consumer, MockCluster, Producer, Record};
    /// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
    /// #     use std::sync::Arc;
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl Wake for Unpark { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    /// #     let mut future = std::pin::pin!(future);
    /// #     loop {
    /// #         if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
    /// #             return output;
    /// #         }
    /// #         std::thread::park_timeout(Duration::from_millis(100));
    /// #     }
    /// # }
    /// # let cluster = MockCluster::new(1)?;
    /// # cluster.set_group_initial_rebalance_delay(Duration::ZERO);
    /// # let servers = cluster.bootstrap_servers();
    /// # let producer = Producer::new(Config::new().set("bootstrap.servers", &servers)?)?;
    /// # producer.send(Record::to("events").value("first"))?.wait()?;
    /// let consumer = Consumer::new(
    ///     Config::new()
    ///         .set("bootstrap.servers", &servers)?
    ///         .set("group.id", "async-readers")?
    ///         .set("auto.offset.reset", "earliest")?,
    /// )?;
    /// consumer.subscribe(&["events"])?;
    ///
    /// let message = block_on(consumer.recv())?;
    /// assert_eq!(message.value(), Some(&b"first"[..]));
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn recv(&self) -> Recv<'_> {
        Recv { consumer: self }
    }

    /// Returns a blocking iterator over messages. It never ends; each item
    /// is a message or an error, as [`poll`](Self::poll) returns them.
    pub fn messages(&self) -> Messages<'_> {
        Messages { consumer: self }
    }

    /// Polls without waiting.
    fn poll_now(&self) -> Option<Result<Message<'_>>> {
        let raw = {
            let _polling = PollGuard::enter(self);
            // SAFETY: the client is valid; the message returned is ours.
            unsafe { ll::rd_kafka_consumer_poll(self.client.as_ptr(), 0) }
        };
        NonNull::new(raw).map(|raw| self.take_message(raw))
    }
}

/// The future of [`Consumer::recv`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Recv<'c> {
    consumer: &'c Consumer,
}

impl<'c> Future for Recv<'c> {
    type Output = Result<Message<'c>>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let consumer = self.consumer;
        if let Some(result) = consumer.poll_now() {
            return Poll::Ready(result);
        }

        consumer.wakers.register(context.waker());
        match consumer.poll_now() {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

/// The iterator of [`Consumer::messages`].
#[derive(Debug)]
pub struct Messages<'c> {
    consumer: &'c Consumer,
}

impl<'c> Iterator for Messages<'c> {
    type Item = Result<Message<'c>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(result) = self.consumer.poll(ITERATOR_POLL) {
                return Some(result);
            }
        }
    }
}

/// Wakers of pending [`Recv`] futures, and the thread that wakes them when
/// librdkafka signals the consumer queue.
pub(super) struct WakerHub {
    shared: Arc<HubState>,
    thread: Option<JoinHandle<()>>,
}

struct HubState {
    inner: Mutex<HubInner>,
    signal: Condvar,
}

#[derive(Default)]
struct HubInner {
    wakers: Vec<Waker>,
    signaled: bool,
    stopping: bool,
}

impl WakerHub {
    /// Starts the waking thread and points the consumer queue's signal at it.
    pub(super) fn start(client: &Arc<NativeClient>, messages: &NativeQueue) -> std::io::Result<Self> {
        let shared = Arc::new(HubState {
            inner: Mutex::new(HubInner::default()),
            signal: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("rdkafka-wakers".to_owned())
                .spawn(move || shared.run())?
        };

        // librdkafka may call the signal until the client is destroyed, so
        // the client keeps the state alive until then.
        let opaque = Arc::as_ptr(&shared) as *mut c_void;
        client.keep_alive(Box::new(Arc::clone(&shared)));
        // SAFETY: the queue is valid; the opaque stays valid until the
        // client is destroyed, see above.
        unsafe { ll::rd_kafka_queue_cb_event_enable(messages.as_ptr(), Some(queue_signal), opaque) };

        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn register(&self, waker: &Waker) {
        let mut inner = self.shared.inner.lock();
        if !inner.wakers.iter().any(|stored| stored.will_wake(waker)) {
            inner.wakers.push(waker.clone());
        }
    }

    /// Detaches the signal and stops the thread, waking every waiter so
    /// that their next poll finds the consumer closed.
    pub(super) fn stop(&mut self, messages: &NativeQueue) {
        // SAFETY: the queue is valid; a NULL callback disables the signal.
        unsafe { ll::rd_kafka_queue_cb_event_enable(messages.as_ptr(), None, std::ptr::null_mut()) };

        {
            let mut inner = self.shared.inner.lock();
            inner.stopping = true;
            inner.signaled = true;
        }
        self.shared.signal.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the consumer's waker thread panicked");
            }
        }
    }
}

impl HubState {
    fn run(&self) {
        loop {
            let (wakers, stopping) = {
                let mut inner = self.inner.lock();
                while !inner.signaled {
                    self.signal.wait(&mut inner);
                }
                inner.signaled = false;
                (std::mem::take(&mut inner.wakers), inner.stopping)
            };

            // Wakers are user code: they run with no lock held.
            for waker in wakers {
                if catch_unwind(AssertUnwindSafe(|| waker.wake())).is_err() {
                    log::error!("a waker panicked while the consumer woke it");
                }
            }
            if stopping {
                return;
            }
        }
    }

    fn signal(&self) {
        self.inner.lock().signaled = true;
        self.signal.notify_one();
    }
}

/// Called by librdkafka, from one of its threads and with the queue locked,
/// when the consumer queue becomes non-empty. It only flags the waker
/// thread, and no panic leaves it.
unsafe extern "C" fn queue_signal(_client: *mut ll::rd_kafka_t, opaque: *mut c_void) {
    let outcome = catch_unwind(|| {
        // SAFETY: the opaque is the HubState that the client keeps alive
        // until it is destroyed, which is after the last signal.
        let state = unsafe { &*(opaque as *const HubState) };
        state.signal();
    });
    if outcome.is_err() {
        log::error!("a panic in the consumer queue signal was caught");
    }
}
