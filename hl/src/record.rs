//! Records to send.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use rdkafka_ll as ll;

use crate::error::{Error, Result};
use crate::payload::{OwnedPayload, Payload};

/// A message to send: topic, optional partition, key, value, headers and
/// timestamp.
///
/// A key or value that is never set is null, which Kafka keeps distinct
/// from an empty one. Keys and values are [`Payload`]s: borrowed bytes are
/// copied by librdkafka, owned ones (`Vec<u8>`, `String`, `Box<[u8]>`,
/// `Arc<[u8]>`) are sent without a copy. Header names and values are always
/// copied.
///
/// ```
/// use rdkafka_hl::Record;
///
/// let body = br#"{"clicked":true}"#.to_vec();
/// let record = Record::to("events")
///     .key("user-42")
///     .value(body)
///     .header("source", "web")
///     .partition(3);
/// assert_eq!(record.topic(), "events");
/// assert_eq!(record.value_bytes(), Some(&br#"{"clicked":true}"#[..]));
/// ```
#[derive(Debug, Clone)]
pub struct Record<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: Option<Payload<'a>>,
    value: Option<Payload<'a>>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// Starts a record for `topic`, with null key and value.
    pub fn to(topic: &'a str) -> Self {
        Self {
            topic,
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sends to this partition instead of letting the partitioner choose.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Payload<'a>>) -> Self {
        // The old key is dropped only when there is one. Assigning would
        // call the drop of the `None` it replaces, which kept the compiler
        // from building records in place.
        if let Some(old) = self.key.replace(key.into()) {
            drop(old);
        }
        self
    }

    /// Sets the value (the message body).
    pub fn value(mut self, value: impl Into<Payload<'a>>) -> Self {
        // As in `key`.
        if let Some(old) = self.value.replace(value.into()) {
            drop(old);
        }
        self
    }

    /// Appends a header. Names may repeat, and headers keep their order.
    pub fn header(mut self, name: &'a str, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.headers.push((name, Some(value.as_ref())));
        self
    }

    /// Appends a header with a null value.
    pub fn null_header(mut self, name: &'a str) -> Self {
        self.headers.push((name, None));
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch. Without
    /// it, librdkafka uses the time of sending.
    pub fn timestamp(mut self, milliseconds: i64) -> Self {
        self.timestamp = Some(milliseconds);
        self
    }

    /// Returns the topic.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// Returns the partition, if one was chosen.
    pub fn partition_number(&self) -> Option<i32> {
        self.partition
    }

    /// Returns the key's bytes, or `None` for a null key.
    pub fn key_bytes(&self) -> Option<&[u8]> {
        self.key.as_ref().map(Payload::as_bytes)
    }

    /// Returns the value's bytes, or `None` for a null value.
    pub fn value_bytes(&self) -> Option<&[u8]> {
        self.value.as_ref().map(Payload::as_bytes)
    }

    /// Takes the owned key and value out of the record, leaving borrowed
    /// ones (the caller still has those).
    pub(crate) fn take_owned(&mut self) -> (Option<OwnedPayload>, Option<OwnedPayload>) {
        (take_owned(&mut self.key), take_owned(&mut self.value))
    }

    /// Puts back what [`Record::take_owned`] took.
    pub(crate) fn restore_owned(&mut self, key: Option<OwnedPayload>, value: Option<OwnedPayload>) {
        if let Some(key) = key {
            self.key = Some(Payload::Owned(key));
        }
        if let Some(value) = value {
            self.value = Some(Payload::Owned(value));
        }
    }

    /// Appends the arguments of `rd_kafka_produceva` for this record, except
    /// the topic and opaque, to `args`. The pointers borrow from `self` and
    /// `headers`. It fills the caller's `args` rather than returning them,
    /// because returning the 584-byte array compiled to a `memcpy` per send
    /// that took 7% of the sending thread in a profile.
    #[inline]
    pub(crate) fn push_produce_args(&self, headers: Option<&NativeHeaders>, args: &mut ProduceArgs) {
        if let Some(partition) = self.partition {
            args.push(vu(ll::RD_KAFKA_VTYPE_PARTITION, ll::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition }));
        }
        if let Some(key) = &self.key {
            args.push(memory_arg(ll::RD_KAFKA_VTYPE_KEY, key.as_bytes()));
        }
        if let Some(value) = &self.value {
            args.push(memory_arg(ll::RD_KAFKA_VTYPE_VALUE, value.as_bytes()));
        }
        if let Some(headers) = headers {
            let raw = headers.as_ptr();
            args.push(vu(ll::RD_KAFKA_VTYPE_HEADERS, ll::rd_kafka_vu_s__bindgen_ty_1 { headers: raw }));
        }
        if let Some(timestamp) = self.timestamp {
            args.push(vu(ll::RD_KAFKA_VTYPE_TIMESTAMP, ll::rd_kafka_vu_s__bindgen_ty_1 { i64_: timestamp }));
        }
        // An owned value is kept alive by the producer until its report, so
        // librdkafka may point at it; a borrowed one must be copied.
        let copy_value = !self.value.as_ref().is_some_and(Payload::is_owned);
        let flags = if copy_value { ll::RD_KAFKA_MSG_F_COPY } else { 0 };
        args.push(vu(ll::RD_KAFKA_VTYPE_MSGFLAGS, ll::rd_kafka_vu_s__bindgen_ty_1 { i: flags }));
    }

    /// Builds librdkafka's header list, if the record has headers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a header name with a NUL byte, which
    /// consumers would read as a shorter name.
    #[inline]
    pub(crate) fn native_headers(&self) -> Result<Option<NativeHeaders>> {
        if self.headers.is_empty() {
            return Ok(None);
        }
        self.build_native_headers().map(Some)
    }

    fn build_native_headers(&self) -> Result<NativeHeaders> {
        if let Some((name, _)) = self.headers.iter().find(|(name, _)| name.contains('\0')) {
            return Err(Error::InvalidArgument {
                what: "header name",
                value: (*name).to_owned(),
                reason: "it contains a NUL byte",
            });
        }
        let headers = NativeHeaders::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            headers.add(name, *value);
        }
        Ok(headers)
    }
}

fn take_owned(payload: &mut Option<Payload<'_>>) -> Option<OwnedPayload> {
    // Checked first, so that a borrowed payload is not moved out and back.
    if !matches!(payload, Some(Payload::Owned(_))) {
        return None;
    }
    match payload.take() {
        Some(Payload::Owned(owned)) => Some(owned),
        _ => None,
    }
}

/// The arguments of one `rd_kafka_produceva` call, on the stack. The array
/// is left uninitialised past `len`: zeroing its 576 bytes on every send
/// showed in profiles.
pub(crate) struct ProduceArgs {
    items: [MaybeUninit<ll::rd_kafka_vu_t>; 8],
    len: usize,
}

impl ProduceArgs {
    #[inline]
    pub(crate) fn new() -> Self {
        Self {
            items: [const { MaybeUninit::uninit() }; 8],
            len: 0,
        }
    }

    /// Appends an argument. A record has at most 8 (partition, key, value,
    /// headers, timestamp, flags, topic, opaque).
    #[inline]
    pub(crate) fn push(&mut self, arg: ll::rd_kafka_vu_t) {
        self.items[self.len].write(arg);
        self.len += 1;
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[ll::rd_kafka_vu_t] {
        let initialised = &self.items[..self.len];
        // SAFETY: `push` initialised the first `len` items, and
        // `MaybeUninit<T>` has the layout of `T`.
        unsafe { &*(initialised as *const [MaybeUninit<ll::rd_kafka_vu_t>] as *const [ll::rd_kafka_vu_t]) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[inline]
pub(crate) fn vu(vtype: ll::rd_kafka_vtype_t, u: ll::rd_kafka_vu_s__bindgen_ty_1) -> ll::rd_kafka_vu_t {
    ll::rd_kafka_vu_t { vtype, u }
}

#[inline]
fn memory_arg(vtype: ll::rd_kafka_vtype_t, bytes: &[u8]) -> ll::rd_kafka_vu_t {
    let mem = ll::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
        // A non-NULL pointer, even with length 0, is what tells librdkafka
        // that the field is empty rather than null. Empty slices have a
        // dangling but non-NULL pointer, which librdkafka never reads.
        ptr: bytes.as_ptr() as *mut _,
        size: bytes.len(),
    };
    vu(vtype, ll::rd_kafka_vu_s__bindgen_ty_1 { mem })
}

/// An owned `rd_kafka_headers_t`, until a successful send hands it to
/// librdkafka.
pub(crate) struct NativeHeaders(NonNull<ll::rd_kafka_headers_t>);

impl NativeHeaders {
    fn with_capacity(count: usize) -> Self {
        // SAFETY: rd_kafka_headers_new only allocates.
        let raw = unsafe { ll::rd_kafka_headers_new(count) };
        Self(NonNull::new(raw).expect("rd_kafka_headers_new returned NULL"))
    }

    fn add(&self, name: &str, value: Option<&[u8]>) {
        let (value_ptr, value_len) = match value {
            Some(bytes) => (bytes.as_ptr().cast(), bytes.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: the list is owned by self; name and value are valid for
        // their lengths and librdkafka copies them.
        let code = unsafe {
            ll::rd_kafka_header_add(self.0.as_ptr(), name.as_ptr().cast(), name.len() as isize, value_ptr, value_len)
        };
        debug_assert_eq!(code, ll::RD_KAFKA_RESP_ERR_NO_ERROR, "rd_kafka_header_add failed");
    }

    pub(crate) fn as_ptr(&self) -> *mut ll::rd_kafka_headers_t {
        self.0.as_ptr()
    }

    /// Marks the list as taken by librdkafka, which frees it.
    pub(crate) fn release(self) {
        std::mem::forget(self);
    }
}

impl Drop for NativeHeaders {
    fn drop(&mut self) {
        // SAFETY: self still owns the list because release() was not called.
        unsafe { ll::rd_kafka_headers_destroy(self.0.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_owned_leaves_borrowed_parts() {
        let mut record = Record::to("t").key("borrowed").value(vec![1, 2]);

        let (key, value) = record.take_owned();

        assert_eq!(key, None);
        assert_eq!(value.map(OwnedPayload::into_vec), Some(vec![1, 2]));
        assert_eq!(record.key_bytes(), Some(&b"borrowed"[..]));
        assert_eq!(record.value_bytes(), None);
    }

    #[test]
    fn produce_args_keep_null_and_empty_apart() {
        let null_key = Record::to("t").value(b"v");
        let empty_key = Record::to("t").key(b"").value(b"v");

        let (mut null_args, mut empty_args) = (ProduceArgs::new(), ProduceArgs::new());
        null_key.push_produce_args(None, &mut null_args);
        empty_key.push_produce_args(None, &mut empty_args);

        assert_eq!(null_args.len(), 2);
        assert_eq!(empty_args.len(), 3);
    }
}
