//! Message keys and values, borrowed or owned.

use std::sync::Arc;

/// The bytes of a message key or value.
///
/// A borrowed payload is copied by librdkafka when the message is sent. An
/// owned payload is passed to librdkafka without a copy: the producer keeps
/// it alive until the delivery report arrives, then drops it, or hands it
/// back in the [`DeliveryError`](crate::DeliveryError) when the message
/// failed. (librdkafka always copies keys, so only values avoid the copy.)
///
/// `From` conversions exist for byte slices, strings, `Vec<u8>`, `String`,
/// `Box<[u8]>` and `Arc<[u8]>`; [`Payload::shared`] takes any other owned
/// byte container, such as `bytes::Bytes`.
///
/// ```
/// use rdkafka_hl::Payload;
///
/// let borrowed: Payload<'_> = "text".into();
/// let owned: Payload<'static> = vec![1, 2, 3].into();
/// assert!(!borrowed.is_owned());
/// assert!(owned.is_owned());
/// assert_eq!(owned.as_bytes(), &[1, 2, 3]);
/// ```
#[derive(Clone)]
pub enum Payload<'a> {
    /// Bytes borrowed from the caller, copied on send.
    Borrowed(&'a [u8]),
    /// Bytes owned by the payload, sent without a copy.
    Owned(OwnedPayload),
}

/// An owned payload, as handed back when a send fails.
#[derive(Clone)]
pub enum OwnedPayload {
    /// A vector (also what a `String` becomes).
    Vec(Vec<u8>),
    /// A boxed slice.
    Boxed(Box<[u8]>),
    /// A shared slice.
    Shared(Arc<[u8]>),
    /// Any other container of bytes.
    Custom(Arc<dyn AsRef<[u8]> + Send + Sync>),
}

impl<'a> Payload<'a> {
    /// Wraps an owned container of bytes of any type, such as `bytes::Bytes`.
    pub fn shared(bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> Payload<'static> {
        Payload::Owned(OwnedPayload::Custom(Arc::new(bytes)))
    }

    /// Returns the bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Borrowed(bytes) => bytes,
            Payload::Owned(owned) => owned.as_bytes(),
        }
    }

    /// Returns whether the payload owns its bytes (and is sent without a copy).
    pub fn is_owned(&self) -> bool {
        matches!(self, Payload::Owned(_))
    }
}

impl OwnedPayload {
    /// Returns the bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            OwnedPayload::Vec(bytes) => bytes,
            OwnedPayload::Boxed(bytes) => bytes,
            OwnedPayload::Shared(bytes) => bytes,
            OwnedPayload::Custom(bytes) => bytes.as_ref().as_ref(),
        }
    }

    /// Copies the bytes into a vector, or moves them if they already are one.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            OwnedPayload::Vec(bytes) => bytes,
            other => other.as_bytes().to_vec(),
        }
    }
}

impl std::fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_owned() { "Owned" } else { "Borrowed" };
        write!(f, "{kind}({} bytes)", self.as_bytes().len())
    }
}

impl std::fmt::Debug for OwnedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnedPayload({} bytes)", self.as_bytes().len())
    }
}

impl PartialEq for OwnedPayload {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for OwnedPayload {}

impl<'a> From<&'a [u8]> for Payload<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Payload::Borrowed(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Payload<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Payload::Borrowed(bytes)
    }
}

impl<'a> From<&'a str> for Payload<'a> {
    fn from(text: &'a str) -> Self {
        Payload::Borrowed(text.as_bytes())
    }
}

impl<'a> From<&'a Vec<u8>> for Payload<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Payload::Borrowed(bytes)
    }
}

impl<'a> From<&'a String> for Payload<'a> {
    fn from(text: &'a String) -> Self {
        Payload::Borrowed(text.as_bytes())
    }
}

impl From<Vec<u8>> for Payload<'_> {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::Owned(OwnedPayload::Vec(bytes))
    }
}

impl From<String> for Payload<'_> {
    fn from(text: String) -> Self {
        Payload::Owned(OwnedPayload::Vec(text.into_bytes()))
    }
}

impl From<Box<[u8]>> for Payload<'_> {
    fn from(bytes: Box<[u8]>) -> Self {
        Payload::Owned(OwnedPayload::Boxed(bytes))
    }
}

impl From<Arc<[u8]>> for Payload<'_> {
    fn from(bytes: Arc<[u8]>) -> Self {
        Payload::Owned(OwnedPayload::Shared(bytes))
    }
}

impl From<OwnedPayload> for Payload<'_> {
    fn from(owned: OwnedPayload) -> Self {
        Payload::Owned(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_pick_borrowed_or_owned() {
        let text = String::from("abc");

        assert!(!Payload::from(&text).is_owned());
        assert!(!Payload::from("abc").is_owned());
        assert!(!Payload::from(b"abc").is_owned());
        assert!(Payload::from(text.clone()).is_owned());
        assert!(Payload::from(vec![1u8]).is_owned());
        assert!(Payload::from(Box::<[u8]>::from(&b"x"[..])).is_owned());
        assert!(Payload::from(Arc::<[u8]>::from(&b"x"[..])).is_owned());
        assert!(Payload::shared([7u8; 4]).is_owned());
    }

    #[test]
    fn owned_payload_keeps_bytes() {
        let payload = OwnedPayload::Custom(Arc::new(*b"custom"));

        assert_eq!(payload.as_bytes(), b"custom");
        assert_eq!(payload.into_vec(), b"custom".to_vec());
    }
}
