//! Messages read by a consumer, and the parts they share with deliveries.

use std::ffi::{c_char, c_void, CStr};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rdkafka_ll as ll;

/// A message timestamp, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timestamp {
    /// The message has no timestamp.
    NotAvailable,
    /// The time the producer created the message.
    CreateTime(i64),
    /// The time the broker appended the message to the log.
    LogAppendTime(i64),
}

impl Timestamp {
    /// Reads the timestamp of a librdkafka message.
    ///
    /// # Safety
    ///
    /// `message` must point to a valid `rd_kafka_message_t`.
    pub(crate) unsafe fn of(message: *const ll::rd_kafka_message_t) -> Self {
        let mut kind: ll::rd_kafka_timestamp_type_t = ll::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the caller guarantees a valid message.
        let milliseconds = unsafe { ll::rd_kafka_message_timestamp(message, &mut kind) };
        match kind {
            ll::RD_KAFKA_TIMESTAMP_CREATE_TIME => Timestamp::CreateTime(milliseconds),
            ll::RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME => Timestamp::LogAppendTime(milliseconds),
            _ => Timestamp::NotAvailable,
        }
    }

    /// Returns the milliseconds, if there is a timestamp.
    pub fn milliseconds(self) -> Option<i64> {
        match self {
            Timestamp::NotAvailable => None,
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
        }
    }
}

/// A message header: a name and a value that may be null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header name.
    pub name: String,
    /// The value; `None` is a null value, distinct from an empty one.
    pub value: Option<Vec<u8>>,
}

/// A message read by a [`Consumer`](crate::Consumer), borrowed from it
/// until dropped. [`Message::detach`] copies it into an [`OwnedMessage`].
pub struct Message<'c> {
    raw: NonNull<ll::rd_kafka_message_t>,
    _consumer: PhantomData<&'c ()>,
}

// SAFETY: the message is owned by this value alone, and librdkafka's
// message objects may be read and destroyed from any thread.
unsafe impl Send for Message<'_> {}
// Message is not Sync: `headers(&self)` makes librdkafka parse the headers
// into the message on first use, without a lock.

impl Message<'_> {
    /// Takes ownership of a message polled from librdkafka.
    ///
    /// # Safety
    ///
    /// `raw` must be a message that the caller owns, with no error set, and
    /// the client it came from must outlive the returned value.
    pub(crate) unsafe fn from_raw(raw: NonNull<ll::rd_kafka_message_t>) -> Self {
        Self {
            raw,
            _consumer: PhantomData,
        }
    }

    fn fields(&self) -> &ll::rd_kafka_message_t {
        // SAFETY: the message is valid while self lives.
        unsafe { self.raw.as_ref() }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        // SAFETY: a consumed message always has a topic, whose name lives
        // as long as the message holds its reference.
        let name = unsafe { CStr::from_ptr(ll::rd_kafka_topic_name(self.fields().rkt)) };
        name.to_str().unwrap_or("")
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.fields().partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.fields().offset
    }

    /// Returns the key, or `None` when it is null.
    pub fn key(&self) -> Option<&[u8]> {
        let fields = self.fields();
        // SAFETY: the key is valid for key_len bytes while the message lives.
        unsafe { optional_bytes(fields.key, fields.key_len) }
    }

    /// Returns the value (payload), or `None` when it is null.
    pub fn value(&self) -> Option<&[u8]> {
        let fields = self.fields();
        // SAFETY: the payload is valid for len bytes while the message lives.
        unsafe { optional_bytes(fields.payload, fields.len) }
    }

    /// Returns the leader epoch of the partition when the message was
    /// written, if the broker reported one.
    pub fn leader_epoch(&self) -> Option<i32> {
        // SAFETY: the message is valid.
        let epoch = unsafe { ll::rd_kafka_message_leader_epoch(self.raw.as_ptr()) };
        (epoch >= 0).then_some(epoch)
    }

    /// The timestamp.
    pub fn timestamp(&self) -> Timestamp {
        // SAFETY: the message is valid.
        unsafe { Timestamp::of(self.raw.as_ptr()) }
    }

    /// Returns the headers, in order, with repeated names and null values kept.
    pub fn headers(&self) -> Vec<Header> {
        let mut list: *mut ll::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: the message is valid; the list it returns is owned by it.
        let code = unsafe { ll::rd_kafka_message_headers(self.raw.as_ptr(), &mut list) };
        if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Vec::new();
        }

        let mut headers = Vec::new();
        for index in 0.. {
            let mut name: *const c_char = ptr::null();
            let mut value: *const c_void = ptr::null();
            let mut size = 0usize;
            // SAFETY: the list is valid while the message lives; the out
            // pointers are valid.
            let code = unsafe { ll::rd_kafka_header_get_all(list, index, &mut name, &mut value, &mut size) };
            if code != ll::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: librdkafka returns a NUL-terminated name and a value
            // valid for `size` bytes, both owned by the list.
            let (name, value) = unsafe { (CStr::from_ptr(name), optional_bytes(value, size)) };
            headers.push(Header {
                name: name.to_string_lossy().into_owned(),
                value: value.map(<[u8]>::to_vec),
            });
        }
        headers
    }

    /// Copies the message so that it outlives the consumer's borrow.
    pub fn detach(&self) -> OwnedMessage {
        OwnedMessage {
            topic: self.topic().to_owned(),
            partition: self.partition(),
            offset: self.offset(),
            key: self.key().map(<[u8]>::to_vec),
            value: self.value().map(<[u8]>::to_vec),
            headers: self.headers(),
            timestamp: self.timestamp(),
            leader_epoch: self.leader_epoch(),
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        // SAFETY: self owns the message.
        unsafe { ll::rd_kafka_message_destroy(self.raw.as_ptr()) };
    }
}

/// A consumed message copied out of librdkafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Returns the key, or `None` when it is null.
    pub key: Option<Vec<u8>>,
    /// The value; `None` when null.
    pub value: Option<Vec<u8>>,
    /// The headers, in order.
    pub headers: Vec<Header>,
    /// The timestamp.
    pub timestamp: Timestamp,
    /// The leader epoch, if the broker reported one.
    pub leader_epoch: Option<i32>,
}

/// Borrows `len` bytes at `data`, or `None` for a NULL pointer.
///
/// # Safety
///
/// A non-NULL `data` must be valid for `len` bytes for the lifetime `'a`.
unsafe fn optional_bytes<'a>(data: *const c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees data is valid for len bytes.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}
