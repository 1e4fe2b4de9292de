//! Topic handles of a producer, created once per topic name.

use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;

use parking_lot::RwLock;
use rdkafka_ll as ll;

use crate::deliveries::DeliveryTable;
use crate::error::{Error, Result};
use crate::native::NativeClient;

/// An owned `rd_kafka_topic_t` reference.
struct TopicHandle(NonNull<ll::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles are reference-counted and may be used
// by any thread of the client that created them.
unsafe impl Send for TopicHandle {}
// SAFETY: as above.
unsafe impl Sync for TopicHandle {}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: self owns this reference; the client outlives the cache,
        // because the cache's owner keeps an Arc of it.
        unsafe { ll::rd_kafka_topic_destroy(self.0.as_ptr()) };
    }
}

/// Topic handles by name, with each topic's index in the delivery table.
///
/// Sending with a handle (`RD_KAFKA_VTYPE_RKT`) spares librdkafka a look-up
/// of the name, and this crate a C string, on every send.
pub(crate) struct TopicCache {
    topics: RwLock<HashMap<Box<str>, (TopicHandle, u32)>>,
}

impl TopicCache {
    pub(crate) fn new() -> Self {
        Self {
            topics: RwLock::new(HashMap::new()),
        }
    }

    /// Returns the handle and delivery-table index of `name`, creating the
    /// handle on first use.
    pub(crate) fn get(
        &self,
        client: &NativeClient,
        deliveries: &DeliveryTable,
        name: &str,
    ) -> Result<(*mut ll::rd_kafka_topic_t, u32)> {
        if let Some((handle, index)) = self.topics.read().get(name) {
            return Ok((handle.0.as_ptr(), *index));
        }

        let invalid = |reason| Error::InvalidArgument {
            what: "topic name",
            value: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        let c_name = CString::new(name).map_err(|_| invalid("it contains a NUL byte"))?;

        let mut topics = self.topics.write();
        if let Some((handle, index)) = topics.get(name) {
            return Ok((handle.0.as_ptr(), *index));
        }
        // SAFETY: the client is valid; the name is NUL-terminated. A NULL
        // conf takes the client's default topic configuration.
        let raw = unsafe { ll::rd_kafka_topic_new(client.as_ptr(), c_name.as_ptr(), std::ptr::null_mut()) };
        let handle = NonNull::new(raw).map(TopicHandle).ok_or_else(|| invalid("librdkafka rejected it"))?;
        let index = deliveries.topic_index(name);
        let pointer = handle.0.as_ptr();
        topics.insert(name.into(), (handle, index));
        Ok((pointer, index))
    }
}
