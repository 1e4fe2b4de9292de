//! The background thread that drains a client's librdkafka event queue.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use rdkafka_ll as ll;

use crate::native::{NativeEvent, NativeQueue};

/// How long one poll of the queue blocks, in milliseconds. Shutdown wakes
/// the thread at once through `rd_kafka_queue_yield`, so this only bounds
/// how long a missed wake-up could delay it.
const POLL_INTERVAL_MS: i32 = 1000;

/// How many queued events the thread still serves once asked to stop.
const MAX_EVENTS_AFTER_STOP: usize = 10_000;

/// How long one poll of an assisted queue blocks, in milliseconds: the
/// bound on how late a deferred event is handled if another thread's
/// poll cleared the wake-up meant for this one.
const ASSISTED_POLL_INTERVAL_MS: i32 = 100;

/// How long the thread leaves its queue to other threads after they
/// served it (see [`Assist`]).
const ASSIST_BACKOFF: Duration = Duration::from_millis(1);

/// Lets threads other than the event thread serve its queue.
///
/// The producer's senders take delivery reports off the queue themselves
/// every few hundred sends, so that librdkafka's messages are freed by
/// the thread that allocated them, as with `rd_kafka_poll`. Freeing them
/// on the event thread made glibc's allocator lock one of the hottest in
/// the process (a profile of 1,000,000 sends on the mock cluster).
///
/// While other threads serve the queue, the event thread sleeps in steps
/// of [`ASSIST_BACKOFF`] instead of polling, so that it does not take
/// their events, and it polls again after a step without a round. Events
/// other than delivery reports reach it through [`Assist::defer`].
#[derive(Default)]
pub(crate) struct Assist {
    /// Counts the rounds served by other threads.
    rounds: AtomicU64,
    /// Events taken by other threads for the event thread to handle.
    deferred: parking_lot::Mutex<Vec<NativeEvent>>,
}

impl Assist {
    /// Records that another thread serves the queue now.
    pub(crate) fn record_round(&self) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// Passes an event to the event thread. The caller wakes the thread
    /// once it stops polling the queue itself.
    pub(crate) fn defer(&self, event: NativeEvent) {
        self.deferred.lock().push(event);
    }

    fn take_deferred(&self) -> Vec<NativeEvent> {
        std::mem::take(&mut *self.deferred.lock())
    }
}

/// The source of [`EventThread`] keys; 0 means "no event thread".
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The key of the event thread running on this thread, or 0. Reading
    /// it is far cheaper than `thread::current()`, which matters on the
    /// producer's per-message paths.
    static CURRENT_KEY: Cell<u64> = const { Cell::new(0) };
}

/// Returns the key of the event thread the caller runs on, or 0.
#[inline]
pub(crate) fn current_key() -> u64 {
    CURRENT_KEY.with(Cell::get)
}

/// A thread that polls one queue and passes each event to a handler.
pub(crate) struct EventThread {
    queue: Arc<NativeQueue>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    /// Never 0; see [`current_key`].
    key: u64,
}

impl EventThread {
    /// Starts the thread. `handler` runs on it for every event; a panic in
    /// it is caught and logged, and the thread goes on with the next event.
    pub(crate) fn spawn(
        name: &str,
        queue: Arc<NativeQueue>,
        handler: impl FnMut(NativeEvent) + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::spawn_assisted(name, queue, None, handler)
    }

    /// Starts the thread like [`EventThread::spawn`], for a queue that
    /// other threads may serve too (see [`Assist`]).
    pub(crate) fn spawn_assisted(
        name: &str,
        queue: Arc<NativeQueue>,
        assist: Option<Arc<Assist>>,
        mut handler: impl FnMut(NativeEvent) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stopping = Arc::new(AtomicBool::new(false));
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let thread = {
            let queue = Arc::clone(&queue);
            let stopping = Arc::clone(&stopping);
            thread::Builder::new().name(name.to_owned()).spawn(move || {
                CURRENT_KEY.with(|current| current.set(key));
                let mut handle = |event| {
                    if catch_unwind(AssertUnwindSafe(|| handler(event))).is_err() {
                        log::error!("a panic in the Kafka event handler was caught; the event was dropped");
                    }
                };
                let mut rounds_seen = 0;
                while !stopping.load(Ordering::Acquire) {
                    if let Some(assist) = &assist {
                        assist.take_deferred().into_iter().for_each(&mut handle);
                        let rounds = assist.rounds.load(Ordering::Relaxed);
                        if rounds != rounds_seen {
                            rounds_seen = rounds;
                            thread::sleep(ASSIST_BACKOFF);
                            continue;
                        }
                    }
                    let interval = if assist.is_some() { ASSISTED_POLL_INTERVAL_MS } else { POLL_INTERVAL_MS };
                    if let Some(event) = queue.poll(interval) {
                        handle(event);
                    }
                }

                // Serve what is already queued (late reports, the last log
                // lines), bounded in case events keep arriving.
                if let Some(assist) = &assist {
                    assist.take_deferred().into_iter().for_each(&mut handle);
                }
                for _ in 0..MAX_EVENTS_AFTER_STOP {
                    let Some(event) = queue.poll(0) else { break };
                    handle(event);
                }
            })?
        };

        Ok(Self {
            queue,
            stopping,
            thread_id: thread.thread().id(),
            thread: Some(thread),
            key,
        })
    }

    /// Returns the thread's id.
    pub(crate) fn thread_id(&self) -> ThreadId {
        self.thread_id
    }

    /// Returns whether the caller runs on this event thread, as a waker or
    /// error handler does.
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        current_key() == self.key
    }

    /// Returns the thread's key, which [`current_key`] returns on it.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Stops the thread and waits for it to finish its current event.
    ///
    /// Called on the event thread itself (a client dropped from a waker),
    /// it only sets the stop flag, because joining would wait forever.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.queue.wake();

        let Some(thread) = self.thread.take() else {
            return;
        };
        if self.is_current() {
            return;
        }
        if thread.join().is_err() {
            log::error!("the Kafka event thread panicked");
        }
    }
}

impl Drop for EventThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Handles the events every client receives: logs and errors. Returns the
/// event back when it is of another type.
pub(crate) fn handle_common_event(event: NativeEvent) -> Option<NativeEvent> {
    match event.event_type() {
        ll::RD_KAFKA_EVENT_LOG => {
            forward_log(&event);
            None
        }
        ll::RD_KAFKA_EVENT_ERROR => {
            log_error_event(&event);
            None
        }
        _ => Some(event),
    }
}

/// Passes a librdkafka log line to the `log` crate, target `librdkafka`.
fn forward_log(event: &NativeEvent) {
    let mut facility: *const c_char = ptr::null();
    let mut text: *const c_char = ptr::null();
    let mut level: c_int = 0;

    // SAFETY: the event is a valid LOG event; the out-pointers are valid.
    let result = unsafe { ll::rd_kafka_event_log(event.as_ptr(), &mut facility, &mut text, &mut level) };
    if result != 0 || text.is_null() {
        return;
    }

    // SAFETY: on success both strings are NUL-terminated and live as long
    // as the event.
    let (facility, text) = unsafe {
        (
            CStr::from_ptr(facility).to_string_lossy(),
            CStr::from_ptr(text).to_string_lossy(),
        )
    };
    // librdkafka uses syslog levels: 0 to 3 are errors, 4 a warning,
    // 5 and 6 notices and information, 7 debug.
    let level = match level {
        0..=3 => log::Level::Error,
        4 => log::Level::Warn,
        5 | 6 => log::Level::Info,
        _ => log::Level::Debug,
    };
    let line = format!("{facility}: {text}");
    if let Some(repeats) = REPEATS.with(|repeats| repeats.borrow_mut().note(&line)) {
        if repeats > 0 {
            log::log!(target: "librdkafka", level, "(the previous line repeated {repeats} more times)");
        }
        log::log!(target: "librdkafka", level, "{line}");
    }
}

/// How long an identical log line is counted instead of logged again.
const REPEAT_WINDOW: Duration = Duration::from_secs(10);

thread_local! {
    /// Repeats of the last log line of this event thread. librdkafka logs
    /// some conditions, such as all brokers being down, many times a second.
    static REPEATS: RefCell<RepeatCounter> = const { RefCell::new(RepeatCounter { last: None, repeats: 0 }) };
}

struct RepeatCounter {
    last: Option<(String, Instant)>,
    repeats: u64,
}

impl RepeatCounter {
    /// Returns `None` when `line` repeats the last line within the window,
    /// else the number of repeats of the previous line not yet reported.
    fn note(&mut self, line: &str) -> Option<u64> {
        if let Some((last, since)) = &self.last {
            if last == line && since.elapsed() < REPEAT_WINDOW {
                self.repeats += 1;
                return None;
            }
        }
        self.last = Some((line.to_owned(), Instant::now()));
        Some(std::mem::take(&mut self.repeats))
    }
}

fn log_error_event(event: &NativeEvent) {
    let code = crate::ErrorCode::from_raw(event.error_code());
    // SAFETY: the event is a valid ERROR event.
    let fatal = unsafe { ll::rd_kafka_event_error_is_fatal(event.as_ptr()) } != 0;

    if fatal {
        log::error!(target: "librdkafka", "fatal client error {code}: {}", event.error_string());
    } else {
        log::warn!(target: "librdkafka", "client error {code}: {}", event.error_string());
    }
}
