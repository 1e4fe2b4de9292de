//! Client configuration.

use std::ffi::{c_char, CString};
use std::fmt;

use rdkafka_ll as ll;

use crate::error::{Error, Result};
use crate::native::{c_buffer_to_string, NativeConf};

/// Configuration of a client: librdkafka's properties as key/value pairs.
///
/// Each property is checked by librdkafka when it is set, so an unknown
/// key or an invalid value fails at [`Config::set`], naming both. Values of
/// secret properties (passwords, secrets, private keys) never appear in
/// errors or in `Debug` output.
///
/// See librdkafka's `CONFIGURATION.md` for the properties.
///
/// ```
/// use rdkafka_hl::Config;
///
/// let config = Config::new()
///     .set("bootstrap.servers", "127.0.0.1:9092")?
///     .set("linger.ms", "5")?;
/// assert_eq!(config.get("linger.ms").as_deref(), Some("5"));
///
/// let error = Config::new().set("linger.ms", "soon").unwrap_err();
/// assert!(error.to_string().contains("linger.ms=soon"));
/// # Ok::<(), rdkafka_hl::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    native: NativeConf,
    entries: Vec<(String, String)>,
}

impl Config {
    /// Creates a configuration with librdkafka's defaults.
    pub fn new() -> Self {
        Self {
            native: NativeConf::new(),
            entries: Vec::new(),
        }
    }

    /// Creates a configuration from key/value pairs, stopping at the first
    /// rejected pair.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        pairs
            .into_iter()
            .try_fold(Self::new(), |config, (key, value)| {
                config.set(key.as_ref(), value.as_ref())
            })
    }

    /// Sets a property, returning the configuration for chaining.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when librdkafka does not know the key or rejects
    /// the value, or when either contains a NUL byte.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        self.set_in_place(key, value)?;
        Ok(self)
    }

    pub(crate) fn set_in_place(&mut self, key: &str, value: &str) -> Result<()> {
        let reject = |reason: String| Error::Config {
            key: key.to_owned(),
            value: display_value(key, value).to_owned(),
            reason,
        };
        let c_key = CString::new(key).map_err(|_| reject("the key contains a NUL byte".into()))?;
        let c_value =
            CString::new(value).map_err(|_| reject("the value contains a NUL byte".into()))?;
        let mut errstr = [0 as c_char; 512];

        // SAFETY: the conf is valid and owned by self; the strings are
        // NUL-terminated; errstr is writable for its length.
        let result = unsafe {
            ll::rd_kafka_conf_set(
                self.native.as_ptr(),
                c_key.as_ptr(),
                c_value.as_ptr(),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if result == ll::RD_KAFKA_CONF_UNKNOWN {
            // The value of an unknown key explains nothing and may be a
            // secret under a misspelt name, so it is never shown.
            return Err(Error::Config {
                key: key.to_owned(),
                value: "[hidden]".to_owned(),
                reason: c_buffer_to_string(&errstr),
            });
        }
        if result != ll::RD_KAFKA_CONF_OK {
            return Err(reject(c_buffer_to_string(&errstr)));
        }

        self.entries.retain(|(existing, _)| existing != key);
        self.entries.push((key.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Reads a property's current value, including librdkafka's defaults.
    /// Returns `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<String> {
        let c_key = CString::new(key).ok()?;
        let mut size = 0usize;

        // SAFETY: with a NULL destination, librdkafka only writes the size.
        let result = unsafe {
            ll::rd_kafka_conf_get(self.native.as_ptr(), c_key.as_ptr(), std::ptr::null_mut(), &mut size)
        };
        if result != ll::RD_KAFKA_CONF_OK {
            return None;
        }

        let mut buffer = vec![0 as c_char; size.max(1)];
        // SAFETY: buffer has room for `size` bytes, as librdkafka requested.
        let result = unsafe {
            ll::rd_kafka_conf_get(self.native.as_ptr(), c_key.as_ptr(), buffer.as_mut_ptr(), &mut size)
        };
        (result == ll::RD_KAFKA_CONF_OK).then(|| c_buffer_to_string(&buffer))
    }

    /// Lists the properties set on this configuration, in the order they
    /// were last set, with secret values replaced by `[hidden]`.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), display_value(key, value)))
    }

    pub(crate) fn into_native(self) -> NativeConf {
        self.native
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

/// The properties that librdkafka 2.12.1 marks sensitive (`_RK_SENSITIVE`
/// in rdkafka_conf.c), and the alias of one of them.
const SENSITIVE: [&str; 14] = [
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

/// Whether a property's value is a secret that must not be shown: one that
/// librdkafka marks sensitive, or any whose name suggests a secret, so that
/// a misspelt or newer secret property is hidden too.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.contains(&key.as_str())
        || ["password", "secret", "private.key", "passphrase", "token", "credential"]
            .iter()
            .any(|word| key.contains(word))
}

fn display_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        "[hidden]"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_then_get_returns_value() {
        let config = Config::new().set("client.id", "tester").unwrap();

        assert_eq!(config.get("client.id").as_deref(), Some("tester"));
    }

    #[test]
    fn unknown_key_error_names_key() {
        let error = Config::new().set("no.such.property", "1").unwrap_err();
        let text = error.to_string();

        assert!(text.contains("no.such.property=[hidden]"), "{text}");
        assert!(text.contains("No such configuration property"), "{text}");
    }

    #[test]
    fn sensitive_properties_are_hidden() {
        let misspelt = Config::new().set("sasl.pasword", "hunter2").unwrap_err();
        let config = Config::new().set("sasl.username", "alice").unwrap();

        assert!(!misspelt.to_string().contains("hunter2"), "{misspelt}");
        assert!(!format!("{config:?}").contains("alice"), "{config:?}");
        for key in SENSITIVE {
            assert!(is_secret(key), "{key} is not treated as secret");
        }
        assert!(is_secret("SASL.PASSWORD"));
        assert!(!is_secret("linger.ms"));
    }

    #[test]
    fn invalid_value_error_names_value() {
        let error = Config::new().set("acks", "some").unwrap_err();

        assert!(error.to_string().contains("acks=some"), "{error}");
    }

    #[test]
    fn nul_byte_is_rejected() {
        let error = Config::new().set("client.id", "a\0b").unwrap_err();

        assert!(error.to_string().contains("NUL"), "{error}");
    }

    #[test]
    fn secret_value_is_hidden() {
        let error = Config::new().set("sasl.password\0", "hunter2").unwrap_err();
        let config = Config::new().set("sasl.password", "hunter2").unwrap();

        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        assert!(format!("{config:?}").contains("[hidden]"), "{config:?}");
    }

    #[test]
    fn from_pairs_stops_at_first_bad_pair() {
        let error = Config::from_pairs([("client.id", "a"), ("linger.ms", "-5")]).unwrap_err();

        assert!(error.to_string().contains("linger.ms=-5"), "{error}");
    }
}
