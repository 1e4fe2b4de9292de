//! Owners of librdkafka's handles. Each type here owns one C object and
//! destroys it in `Drop`; nothing outside this module frees them.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;

use rdkafka_ll as ll;

/// An owned `rd_kafka_conf_t`.
pub(crate) struct NativeConf(NonNull<ll::rd_kafka_conf_t>);

// SAFETY: a conf object is plain data owned by this value. librdkafka does
// not share it with other threads until rd_kafka_new takes it, and `&self`
// methods only read it.
unsafe impl Send for NativeConf {}
// SAFETY: as above; mutation goes through `&mut self`.
unsafe impl Sync for NativeConf {}

impl NativeConf {
    pub(crate) fn new() -> Self {
        // SAFETY: rd_kafka_conf_new has no preconditions.
        let raw = unsafe { ll::rd_kafka_conf_new() };
        Self(NonNull::new(raw).expect("rd_kafka_conf_new returned NULL"))
    }

    pub(crate) fn as_ptr(&self) -> *mut ll::rd_kafka_conf_t {
        self.0.as_ptr()
    }

    /// Gives up ownership, for a C call that takes it on success.
    pub(crate) fn into_raw(self) -> *mut ll::rd_kafka_conf_t {
        let raw = self.0.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// Takes ownership of a conf handed back by a failed C call.
    ///
    /// # Safety
    ///
    /// `raw` must be a valid conf that nothing else owns.
    pub(crate) unsafe fn from_raw(raw: *mut ll::rd_kafka_conf_t) -> Self {
        Self(NonNull::new(raw).expect("conf pointer is NULL"))
    }
}

impl Clone for NativeConf {
    fn clone(&self) -> Self {
        // SAFETY: self owns a valid conf; rd_kafka_conf_dup copies it.
        let raw = unsafe { ll::rd_kafka_conf_dup(self.as_ptr()) };
        Self(NonNull::new(raw).expect("rd_kafka_conf_dup returned NULL"))
    }
}

impl Drop for NativeConf {
    fn drop(&mut self) {
        // SAFETY: self owns the conf, and no C call has taken it (into_raw
        // leaks self with mem::forget).
        unsafe { ll::rd_kafka_conf_destroy(self.as_ptr()) };
    }
}

/// An owned `rd_kafka_t` client handle.
pub(crate) struct NativeClient {
    raw: NonNull<ll::rd_kafka_t>,
    /// Flags for `rd_kafka_destroy_flags`.
    destroy_flags: AtomicI32,
    /// Whether `Drop` hands destruction to a new thread instead of waiting.
    destroy_in_background: AtomicBool,
    /// Values that librdkafka's threads may use through a callback opaque
    /// until the client is destroyed; dropped after `rd_kafka_destroy`.
    keep_alive: Mutex<Vec<Box<dyn Any + Send + Sync>>>,
}

// SAFETY: librdkafka's client handle is thread-safe: all rd_kafka_* calls
// on one rd_kafka_t may be made from any thread concurrently (librdkafka's
// INTRODUCTION.md, "Threads and callbacks").
unsafe impl Send for NativeClient {}
// SAFETY: as above.
unsafe impl Sync for NativeClient {}

impl NativeClient {
    /// Creates a client from `conf`. On failure librdkafka hands the conf
    /// back, and it is destroyed here.
    pub(crate) fn new(
        kind: ll::rd_kafka_type_t,
        conf: NativeConf,
    ) -> Result<Self, String> {
        let mut errstr = [0 as c_char; 512];
        let conf = conf.into_raw();

        // SAFETY: conf is a valid conf we own, and errstr is a writable
        // buffer of the given size.
        let raw = unsafe { ll::rd_kafka_new(kind, conf, errstr.as_mut_ptr(), errstr.len()) };

        match NonNull::new(raw) {
            Some(raw) => Ok(Self {
                raw,
                destroy_flags: AtomicI32::new(0),
                destroy_in_background: AtomicBool::new(false),
                keep_alive: Mutex::new(Vec::new()),
            }),
            None => {
                // SAFETY: rd_kafka_new failed, so it did not take the conf.
                drop(unsafe { NativeConf::from_raw(conf) });
                Err(c_buffer_to_string(&errstr))
            }
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut ll::rd_kafka_t {
        self.raw.as_ptr()
    }

    /// Keeps `value` alive until after the client is destroyed, for data
    /// that a callback registered with librdkafka points to.
    pub(crate) fn keep_alive(&self, value: Box<dyn Any + Send + Sync>) {
        self.keep_alive.lock().push(value);
    }

    /// Makes destruction skip the consumer close and run on a thread of
    /// its own, for a consumer that did not finish closing in time.
    /// librdkafka 2.12.1 still waits in `rd_kafka_destroy` for commits to
    /// an unreachable coordinator, up to `session.timeout.ms`.
    pub(crate) fn destroy_without_waiting(&self) {
        self.destroy_flags
            .fetch_or(ll::RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE, Ordering::Relaxed);
        self.destroy_in_background.store(true, Ordering::Relaxed);
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        let handle = DestroyHandle {
            raw: self.raw,
            flags: self.destroy_flags.load(Ordering::Relaxed),
            keep_alive: std::mem::take(&mut *self.keep_alive.lock()),
        };
        if !self.destroy_in_background.load(Ordering::Relaxed) {
            handle.destroy();
            return;
        }

        let spawned = thread::Builder::new()
            .name("rdkafka-destroy".to_owned())
            .spawn(move || handle.destroy());
        if let Err(error) = spawned {
            log::error!("failed to start a thread to destroy a Kafka client ({error}); leaking it");
        }
    }
}

/// A client handle on its way to `rd_kafka_destroy_flags`.
struct DestroyHandle {
    raw: NonNull<ll::rd_kafka_t>,
    flags: i32,
    keep_alive: Vec<Box<dyn Any + Send + Sync>>,
}

// SAFETY: the handle is moved to exactly one thread, which destroys it, and
// librdkafka allows destroying a client from any thread.
unsafe impl Send for DestroyHandle {}

impl DestroyHandle {
    fn destroy(self) {
        // SAFETY: this is the only owner of the handle. Every queue of the
        // client keeps an Arc of its NativeClient, so none is left, and
        // events and messages borrow a queue or the client that owns them.
        unsafe { ll::rd_kafka_destroy_flags(self.raw.as_ptr(), self.flags) };

        // librdkafka's threads are gone, so no callback can use these now.
        drop(self.keep_alive);
    }
}

/// An owned `rd_kafka_queue_t` reference. It keeps its client alive, so the
/// client is destroyed only after every queue of it, whichever thread
/// drops the last reference.
pub(crate) struct NativeQueue {
    raw: NonNull<ll::rd_kafka_queue_t>,
    _client: Arc<NativeClient>,
}

// SAFETY: librdkafka's queues are protected by their own lock and may be
// polled, forwarded and yielded from any thread.
unsafe impl Send for NativeQueue {}
// SAFETY: as above.
unsafe impl Sync for NativeQueue {}

impl NativeQueue {
    /// Creates a new queue on `client`.
    pub(crate) fn new(client: &Arc<NativeClient>) -> Self {
        // SAFETY: the client handle is valid.
        let raw = unsafe { ll::rd_kafka_queue_new(client.as_ptr()) };
        Self {
            raw: NonNull::new(raw).expect("rd_kafka_queue_new returned NULL"),
            _client: Arc::clone(client),
        }
    }

    /// Takes a reference to the consumer queue, where messages arrive.
    /// Returns `None` for a consumer without `group.id`, which has none.
    pub(crate) fn consumer(client: &Arc<NativeClient>) -> Option<Self> {
        // SAFETY: the client handle is valid.
        let raw = unsafe { ll::rd_kafka_queue_get_consumer(client.as_ptr()) };
        Some(Self {
            raw: NonNull::new(raw)?,
            _client: Arc::clone(client),
        })
    }

    /// Takes a reference to the client's main queue.
    pub(crate) fn main(client: &Arc<NativeClient>) -> Self {
        // SAFETY: the client handle is valid.
        let raw = unsafe { ll::rd_kafka_queue_get_main(client.as_ptr()) };
        Self {
            raw: NonNull::new(raw).expect("rd_kafka_queue_get_main returned NULL"),
            _client: Arc::clone(client),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut ll::rd_kafka_queue_t {
        self.raw.as_ptr()
    }

    /// Waits up to `timeout_ms` for the next event.
    pub(crate) fn poll(&self, timeout_ms: i32) -> Option<NativeEvent> {
        // SAFETY: the queue is valid; the event returned is ours to destroy.
        let raw = unsafe { ll::rd_kafka_queue_poll(self.as_ptr(), timeout_ms) };
        NonNull::new(raw).map(NativeEvent)
    }

    /// Wakes a thread blocked in [`NativeQueue::poll`].
    pub(crate) fn wake(&self) {
        // SAFETY: the queue is valid.
        unsafe { ll::rd_kafka_queue_yield(self.as_ptr()) };
    }
}

impl Drop for NativeQueue {
    fn drop(&mut self) {
        // SAFETY: self owns this reference to the queue, and its client is
        // still alive because self holds an Arc of it.
        unsafe { ll::rd_kafka_queue_destroy(self.as_ptr()) };
    }
}

/// An owned `rd_kafka_event_t`.
pub(crate) struct NativeEvent(NonNull<ll::rd_kafka_event_t>);

// SAFETY: an event is owned by the caller that polled it and used by one thread at
// a time.
unsafe impl Send for NativeEvent {}

impl NativeEvent {
    pub(crate) fn as_ptr(&self) -> *mut ll::rd_kafka_event_t {
        self.0.as_ptr()
    }

    pub(crate) fn event_type(&self) -> i32 {
        // SAFETY: the event is valid.
        unsafe { ll::rd_kafka_event_type(self.as_ptr()) }
    }

    pub(crate) fn error_code(&self) -> i32 {
        // SAFETY: the event is valid.
        unsafe { ll::rd_kafka_event_error(self.as_ptr()) }
    }

    pub(crate) fn error_string(&self) -> String {
        // SAFETY: the event is valid; the string lives as long as the event.
        let text = unsafe { ll::rd_kafka_event_error_string(self.as_ptr()) };
        // SAFETY: a non-NULL result is NUL-terminated and outlives this call.
        unsafe { optional_c_string(text) }.unwrap_or_default()
    }

    pub(crate) fn opaque(&self) -> usize {
        // SAFETY: the event is valid.
        unsafe { ll::rd_kafka_event_opaque(self.as_ptr()) as usize }
    }
}

impl Drop for NativeEvent {
    fn drop(&mut self) {
        // SAFETY: self owns the event; messages borrowed from it are not
        // kept past the event's lifetime.
        unsafe { ll::rd_kafka_event_destroy(self.as_ptr()) };
    }
}

/// Copies a C string that may be NULL.
///
/// # Safety
///
/// A non-NULL `text` must point to a NUL-terminated string valid for this call.
pub(crate) unsafe fn optional_c_string(text: *const c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    Some(unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned())
}

/// Reads the NUL-terminated message that librdkafka wrote into `buffer`.
pub(crate) fn c_buffer_to_string(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
