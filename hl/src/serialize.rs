//! Serializers that turn typed keys and values into message bytes.

use std::error::Error as StdError;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::deliveries::DeliveryFuture;
use crate::producer::Producer;
use crate::record::Record;

/// The error a serializer returns.
pub type SerializeError = Box<dyn StdError + Send + Sync>;

/// Turns a value of type `T` into the bytes of a message key or value.
///
/// Implemented by [`BytesSerializer`], [`StringSerializer`], and by every
/// closure `Fn(&T) -> Result<Vec<u8>, E>`.
pub trait Serializer<T: ?Sized> {
    /// Serializes `value`.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerializeError>;
}

/// Passes bytes through unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerializer;

impl Serializer<[u8]> for BytesSerializer {
    fn serialize(&self, value: &[u8]) -> Result<Vec<u8>, SerializeError> {
        Ok(value.to_vec())
    }
}

impl Serializer<Vec<u8>> for BytesSerializer {
    fn serialize(&self, value: &Vec<u8>) -> Result<Vec<u8>, SerializeError> {
        Ok(value.clone())
    }
}

/// Encodes strings as UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerializer;

impl Serializer<str> for StringSerializer {
    fn serialize(&self, value: &str) -> Result<Vec<u8>, SerializeError> {
        Ok(value.as_bytes().to_vec())
    }
}

impl Serializer<String> for StringSerializer {
    fn serialize(&self, value: &String) -> Result<Vec<u8>, SerializeError> {
        Ok(value.as_bytes().to_vec())
    }
}

impl<T, F, E> Serializer<T> for F
where
    T: ?Sized,
    F: Fn(&T) -> Result<Vec<u8>, E>,
    E: Into<SerializeError>,
{
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerializeError> {
        self(value).map_err(Into::into)
    }
}

/// A producer that serializes typed keys and values before sending.
///
/// The serialized bytes are sent without a further copy. A serializer that
/// fails or panics makes the send return [`Error::Serialization`]; nothing
/// is sent and the producer keeps working.
///
/// ```
/// use rdkafka_hl::{Config, MockCluster, Producer, SerializingProducer, StringSerializer};
///
/// let cluster = MockCluster::new(1)?;
/// let producer = Producer::new(Config::new().set("bootstrap.servers", &cluster.bootstrap_servers())?)?;
/// let to_be_bytes = |count: &u32| Ok::<_, std::convert::Infallible>(count.to_be_bytes().to_vec());
/// let counts = SerializingProducer::new(producer, StringSerializer, to_be_bytes);
///
/// let delivery = counts.send("counts", Some("apples"), Some(&7u32))?.wait()?;
/// assert_eq!(delivery.offset, 0);
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
#[derive(Debug)]
pub struct SerializingProducer<KS, VS> {
    producer: Producer,
    keys: KS,
    values: VS,
}

impl<KS, VS> SerializingProducer<KS, VS> {
    /// Wraps `producer` with a key and a value serializer.
    pub fn new(producer: Producer, keys: KS, values: VS) -> Self {
        Self { producer, keys, values }
    }

    /// Serializes and sends a message with a null or typed key and value.
    pub fn send<K, V>(&self, topic: &str, key: Option<&K>, value: Option<&V>) -> Result<DeliveryFuture>
    where
        K: ?Sized,
        V: ?Sized,
        KS: Serializer<K>,
        VS: Serializer<V>,
    {
        self.send_record(Record::to(topic), key, value)
    }

    /// Serializes the key and value into `record`, which supplies the
    /// topic and any partition, headers and timestamp, and sends it.
    pub fn send_record<K, V>(&self, record: Record<'_>, key: Option<&K>, value: Option<&V>) -> Result<DeliveryFuture>
    where
        K: ?Sized,
        V: ?Sized,
        KS: Serializer<K>,
        VS: Serializer<V>,
    {
        let mut record = record;
        if let Some(key) = key {
            record = record.key(run_serializer(&self.keys, key, "key")?);
        }
        if let Some(value) = value {
            record = record.value(run_serializer(&self.values, value, "value")?);
        }
        Ok(self.producer.send(record)?)
    }

    /// Returns the producer, for flushing and other calls.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Unwraps the producer.
    pub fn into_producer(self) -> Producer {
        self.producer
    }
}

fn run_serializer<T: ?Sized>(serializer: &impl Serializer<T>, value: &T, part: &'static str) -> Result<Vec<u8>> {
    match catch_unwind(AssertUnwindSafe(|| serializer.serialize(value))) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => Err(Error::Serialization {
            part,
            reason: error.to_string(),
        }),
        Err(panic) => Err(Error::Serialization {
            part,
            reason: format!("the serializer panicked: {}", panic_message(&*panic)),
        }),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "a non-text panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_serializers_copy_bytes() {
        assert_eq!(BytesSerializer.serialize(&b"ab"[..]).unwrap(), b"ab".to_vec());
        assert_eq!(StringSerializer.serialize("é").unwrap(), "é".as_bytes().to_vec());
    }

    #[test]
    fn closure_error_becomes_serialization_error() {
        let failing = |_: &u8| Err::<Vec<u8>, _>("value out of range");

        let error = run_serializer(&failing, &3, "value").unwrap_err();

        assert_eq!(error.to_string(), "failed to serialize the value: value out of range");
    }

    #[test]
    fn panicking_serializer_is_caught() {
        let panicking = |_: &u8| -> Result<Vec<u8>, SerializeError> { panic!("boom") };

        let error = run_serializer(&panicking, &3, "key").unwrap_err();

        assert_eq!(error.to_string(), "failed to serialize the key: the serializer panicked: boom");
    }
}
