//! Topic handles of a producer, created once per topic name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;
use rdkafka_ll as ll;

use crate::error::{Error, Result};
use crate::native::NativeClient;
use crate::topic_names;

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

/// The source of [`TopicCache`] ids. Ids are never reused, so an entry of
/// [`LAST_TOPIC`] can only match the cache that made it.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The topic this thread looked up last, and in which cache: most
    /// threads send to one topic, which then costs neither a lock nor a
    /// hash.
    static LAST_TOPIC: RefCell<Option<LastTopic>> = const { RefCell::new(None) };
}

struct LastTopic {
    cache: u64,
    name: Box<str>,
    handle: *mut ll::rd_kafka_topic_t,
    index: u32,
}

/// Topic handles by name, with each topic's index in `topic_names`.
///
/// Sending with a handle (`RD_KAFKA_VTYPE_RKT`) spares librdkafka a look-up
/// of the name, and this crate a C string, on every send.
pub(crate) struct TopicCache {
    /// Never 0.
    id: u64,
    topics: RwLock<Topics>,
    /// Index in `Topics::entries` of the topic last looked up by any
    /// thread, checked before hashing.
    last: AtomicUsize,
}

#[derive(Default)]
struct Topics {
    /// Never shrinks, so indexes stay valid.
    entries: Vec<(Box<str>, TopicHandle, u32)>,
    by_name: HashMap<Box<str>, usize>,
}

impl TopicCache {
    pub(crate) fn new() -> Self {
        Self {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            topics: RwLock::new(Topics::default()),
            last: AtomicUsize::new(0),
        }
    }

    /// Returns the handle and topic index (`topic_names`) of `name`,
    /// creating the handle on first use.
    #[inline]
    pub(crate) fn get(&self, client: &NativeClient, name: &str) -> Result<(*mut ll::rd_kafka_topic_t, u32)> {
        // The handle stays valid while this cache lives, and the id
        // matches only this cache.
        let cached = LAST_TOPIC
            .try_with(|last| match &*last.borrow() {
                Some(last) if last.cache == self.id && *last.name == *name => Some((last.handle, last.index)),
                _ => None,
            })
            .ok()
            .flatten();
        match cached {
            Some(found) => Ok(found),
            None => self.get_and_remember(client, name),
        }
    }

    /// Looks `name` up in the shared map, or creates its handle, and makes
    /// it this thread's last topic.
    #[inline(never)]
    fn get_and_remember(&self, client: &NativeClient, name: &str) -> Result<(*mut ll::rd_kafka_topic_t, u32)> {
        let found = self.get_shared(client, name)?;
        // A send from a thread-local destructor may find the cache gone.
        let _ = LAST_TOPIC.try_with(|last| {
            *last.borrow_mut() = Some(LastTopic {
                cache: self.id,
                name: name.into(),
                handle: found.0,
                index: found.1,
            });
        });
        Ok(found)
    }

    /// Looks `name` up in the shared map, or creates its handle.
    fn get_shared(
        &self,
        client: &NativeClient,
        name: &str,
    ) -> Result<(*mut ll::rd_kafka_topic_t, u32)> {
        {
            let topics = self.topics.read();
            let last = self.last.load(Ordering::Relaxed);
            if let Some((last_name, handle, index)) = topics.entries.get(last) {
                if **last_name == *name {
                    return Ok((handle.0.as_ptr(), *index));
                }
            }
            if let Some(&position) = topics.by_name.get(name) {
                self.last.store(position, Ordering::Relaxed);
                let (_, handle, index) = &topics.entries[position];
                return Ok((handle.0.as_ptr(), *index));
            }
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
        if let Some(&position) = topics.by_name.get(name) {
            let (_, handle, index) = &topics.entries[position];
            return Ok((handle.0.as_ptr(), *index));
        }
        // SAFETY: the client is valid; the name is NUL-terminated. A NULL
        // conf takes the client's default topic configuration.
        let raw = unsafe { ll::rd_kafka_topic_new(client.as_ptr(), c_name.as_ptr(), std::ptr::null_mut()) };
        let handle = NonNull::new(raw).map(TopicHandle).ok_or_else(|| invalid("librdkafka rejected it"))?;
        let index =
            topic_names::index(name).ok_or_else(|| invalid("this process already sent to 2^27 other topics, the maximum"))?;
        let pointer = handle.0.as_ptr();
        let position = topics.entries.len();
        topics.entries.push((name.into(), handle, index));
        topics.by_name.insert(name.into(), position);
        self.last.store(position, Ordering::Relaxed);
        Ok((pointer, index))
    }
}
