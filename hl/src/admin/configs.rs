//! Describing and incrementally altering the configuration of topics,
//! brokers and groups.

use std::ffi::CString;
use std::ptr::{self, NonNull};

use rdkafka_ll as ll;

use super::results::{
    check_owned_error, copy_string, empty_name, error_from_code, raw_value, result_array, unknown_value,
};
use super::topics::c_string;
use super::{AdminClient, AdminOptions};
use crate::error::{KafkaError, Result};
use crate::future::KafkaFuture;
use crate::native::NativeEvent;

/// A cluster resource that has configuration entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by id.
    Broker(i32),
    /// A consumer group, by id. Only brokers with group configurations
    /// (KIP-848) know this resource type.
    Group(String),
    /// A resource that librdkafka reported with a type this crate does not
    /// know, or a broker whose name is not an id.
    Unknown {
        /// librdkafka's `rd_kafka_ResourceType_t` value.
        resource_type: i32,
        /// The resource name.
        name: String,
    },
}

impl ConfigResource {
    /// Creates a topic resource.
    pub fn topic(name: impl Into<String>) -> Self {
        Self::Topic(name.into())
    }

    fn raw_type_and_name(&self) -> (ll::rd_kafka_ResourceType_t, String) {
        match self {
            Self::Topic(name) => (ll::RD_KAFKA_RESOURCE_TOPIC, name.clone()),
            Self::Broker(id) => (ll::RD_KAFKA_RESOURCE_BROKER, id.to_string()),
            Self::Group(name) => (ll::RD_KAFKA_RESOURCE_GROUP, name.clone()),
            Self::Unknown { resource_type, name } => (raw_value(*resource_type), name.clone()),
        }
    }

    fn from_raw(resource_type: ll::rd_kafka_ResourceType_t, name: String) -> Self {
        match resource_type {
            ll::RD_KAFKA_RESOURCE_TOPIC => Self::Topic(name),
            ll::RD_KAFKA_RESOURCE_GROUP => Self::Group(name),
            ll::RD_KAFKA_RESOURCE_BROKER => match name.parse() {
                Ok(id) => Self::Broker(id),
                Err(_) => Self::Unknown { resource_type: unknown_value(resource_type), name },
            },
            other => Self::Unknown { resource_type: unknown_value(other), name },
        }
    }

    /// Builds the native resource, without configuration entries.
    fn to_native(&self) -> Result<OwnedConfigResource> {
        let (resource_type, name) = self.raw_type_and_name();
        if name.is_empty() {
            return Err(empty_name("config resource name"));
        }
        let c_name = c_string(&name, "config resource name")?;
        // SAFETY: the name is NUL-terminated and copied, and librdkafka returns
        // NULL only for an empty name, which is rejected above.
        let raw = unsafe { ll::rd_kafka_ConfigResource_new(resource_type, c_name.as_ptr()) };
        Ok(OwnedConfigResource(NonNull::new(raw).expect("rd_kafka_ConfigResource_new returned NULL")))
    }
}

/// The origin of a configuration entry's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// Set for this topic.
    DynamicTopicConfig,
    /// Set at run time for this broker.
    DynamicBrokerConfig,
    /// Set at run time as the default of every broker.
    DynamicDefaultBrokerConfig,
    /// Set in the broker's properties file at startup.
    StaticBrokerConfig,
    /// The built-in default.
    DefaultConfig,
    /// Set for this group.
    GroupConfig,
    /// A source librdkafka does not know (`UNKNOWN_CONFIG` is 0), by its
    /// raw `rd_kafka_ConfigSource_t` value.
    Unknown(i32),
}

impl ConfigSource {
    fn from_raw(raw: ll::rd_kafka_ConfigSource_t) -> Self {
        match raw {
            ll::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG => Self::DynamicTopicConfig,
            ll::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG => Self::DynamicBrokerConfig,
            ll::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG => Self::DynamicDefaultBrokerConfig,
            ll::RD_KAFKA_CONFIG_SOURCE_STATIC_BROKER_CONFIG => Self::StaticBrokerConfig,
            ll::RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG => Self::DefaultConfig,
            ll::RD_KAFKA_CONFIG_SOURCE_GROUP_CONFIG => Self::GroupConfig,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// A configuration entry of a resource, as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The name, such as `retention.ms`.
    pub name: String,
    /// The value, or `None` when it is sensitive or not set.
    pub value: Option<String>,
    /// The origin of the value.
    pub source: ConfigSource,
    /// Whether the broker rejects changes to this entry.
    pub is_read_only: bool,
    /// Whether the value is the default.
    pub is_default: bool,
    /// Whether the value is secret, such as a password, in which case
    /// `value` is always `None`.
    pub is_sensitive: bool,
}

/// The configuration of one resource, or the error that kept the broker
/// from describing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceConfig {
    /// The resource.
    pub resource: ConfigResource,
    /// Its entries, empty when `error` is set.
    pub entries: Vec<ConfigEntry>,
    /// The error for this resource, such as
    /// [`ErrorCode::UNKNOWN_TOPIC_OR_PARTITION`](crate::ErrorCode::UNKNOWN_TOPIC_OR_PARTITION),
    /// or `None` on success.
    pub error: Option<KafkaError>,
}

impl ResourceConfig {
    /// Returns the entry named `name`, if the broker returned one.
    pub fn entry(&self, name: &str) -> Option<&ConfigEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }
}

/// One change of an incremental configuration update.
///
/// `Append` and `Subtract` apply to list-valued entries only, such as
/// `cleanup.policy`, and take a comma-separated list of items.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AlterConfigOp {
    /// Sets the entry to a value.
    Set {
        /// The entry name.
        name: String,
        /// The new value.
        value: String,
    },
    /// Removes the entry, so the resource falls back to the default.
    Delete {
        /// The entry name.
        name: String,
    },
    /// Adds items to a list-valued entry.
    Append {
        /// The entry name.
        name: String,
        /// The items to add.
        value: String,
    },
    /// Removes items from a list-valued entry.
    Subtract {
        /// The entry name.
        name: String,
        /// The items to remove.
        value: String,
    },
}

impl AlterConfigOp {
    /// Creates a [`Set`](Self::Set) of `name` to `value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Set { name: name.into(), value: value.into() }
    }

    /// Creates a [`Delete`](Self::Delete) of `name`.
    pub fn delete(name: impl Into<String>) -> Self {
        Self::Delete { name: name.into() }
    }

    /// Creates an [`Append`](Self::Append) of `value` to `name`.
    pub fn append(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Append { name: name.into(), value: value.into() }
    }

    /// Creates a [`Subtract`](Self::Subtract) of `value` from `name`.
    pub fn subtract(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Subtract { name: name.into(), value: value.into() }
    }

    fn parts(&self) -> (&str, ll::rd_kafka_AlterConfigOpType_t, Option<&str>) {
        match self {
            Self::Set { name, value } => (name, ll::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, Some(value)),
            Self::Delete { name } => (name, ll::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE, None),
            Self::Append { name, value } => (name, ll::RD_KAFKA_ALTER_CONFIG_OP_TYPE_APPEND, Some(value)),
            Self::Subtract { name, value } => (name, ll::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SUBTRACT, Some(value)),
        }
    }
}

/// The outcome of a configuration update for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResourceResult {
    /// The resource.
    pub resource: ConfigResource,
    /// The error for this resource, such as `INVALID_CONFIG`, or `None` on
    /// success.
    pub error: Option<KafkaError>,
}

impl AdminClient {
    /// Describes the configuration of resources. The future resolves to one
    /// [`ResourceConfig`] per resource, with every entry the broker reports,
    /// defaults included.
    ///
    /// librdkafka allows at most one [`ConfigResource::Broker`] per call,
    /// because that request goes to the broker itself.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, Config, ConfigResource};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let configs = admin
    ///     .describe_configs(&[ConfigResource::topic("audit")], &AdminOptions::new())?
    ///     .wait()?;
    /// let retention = configs[0].entry("retention.ms").and_then(|entry| entry.value.clone());
    /// # let _ = retention;
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn describe_configs(
        &self,
        resources: &[ConfigResource],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<ResourceConfig>>> {
        let natives = resources.iter().map(ConfigResource::to_native).collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|resource| resource.0.as_ptr()).collect();

        self.request(
            "describe configs",
            ll::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
            options,
            parse_describe_configs,
            |options, queue| {
                // SAFETY: the client, resources, options and queue are valid, and
                // librdkafka copies the resources into the request.
                unsafe {
                    ll::rd_kafka_DescribeConfigs(
                        self.client_ptr(),
                        pointers.as_mut_ptr(),
                        pointers.len(),
                        options,
                        queue,
                    )
                }
            },
        )
    }

    /// Applies changes to the configuration of resources, leaving every
    /// entry not named untouched. The future resolves to one
    /// [`ConfigResourceResult`] per resource. The changes of one resource
    /// apply together or not at all, but one resource may fail while others
    /// succeed. [`AdminOptions::validate_only`] only checks the changes.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, AlterConfigOp, Config, ConfigResource};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let changes = vec![AlterConfigOp::set("retention.ms", "3600000"), AlterConfigOp::delete("segment.ms")];
    /// let results = admin
    ///     .incremental_alter_configs(&[(ConfigResource::topic("audit"), changes)], &AdminOptions::new())?
    ///     .wait()?;
    /// assert!(results[0].error.is_none());
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn incremental_alter_configs(
        &self,
        changes: &[(ConfigResource, Vec<AlterConfigOp>)],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<ConfigResourceResult>>> {
        let natives = changes
            .iter()
            .map(|(resource, operations)| {
                let native = resource.to_native()?;
                for operation in operations {
                    native.add_incremental(operation)?;
                }
                Ok(native)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|resource| resource.0.as_ptr()).collect();

        self.request(
            "alter configs",
            ll::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            options,
            parse_incremental_alter_configs,
            |options, queue| {
                // SAFETY: as for describe_configs.
                unsafe {
                    ll::rd_kafka_IncrementalAlterConfigs(
                        self.client_ptr(),
                        pointers.as_mut_ptr(),
                        pointers.len(),
                        options,
                        queue,
                    )
                }
            },
        )
    }
}

fn parse_describe_configs(event: &NativeEvent) -> Result<Vec<ResourceConfig>> {
    // SAFETY: the event is a DescribeConfigs result, and the resources and
    // their entries live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_DescribeConfigs_result(event.as_ptr());
        let mut count = 0usize;
        let resources = ll::rd_kafka_DescribeConfigs_result_resources(result, &mut count);
        Ok(result_array(resources, count)
            .iter()
            .map(|&resource| ResourceConfig {
                resource: read_resource(resource),
                entries: read_entries(resource),
                error: read_resource_error(resource),
            })
            .collect())
    }
}

fn parse_incremental_alter_configs(event: &NativeEvent) -> Result<Vec<ConfigResourceResult>> {
    // SAFETY: the event is an IncrementalAlterConfigs result, and the
    // resources live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_IncrementalAlterConfigs_result(event.as_ptr());
        let mut count = 0usize;
        let resources = ll::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        Ok(result_array(resources, count)
            .iter()
            .map(|&resource| ConfigResourceResult {
                resource: read_resource(resource),
                error: read_resource_error(resource),
            })
            .collect())
    }
}

/// # Safety
///
/// `resource` must be a valid resource of a result event.
unsafe fn read_resource(resource: *const ll::rd_kafka_ConfigResource_t) -> ConfigResource {
    // SAFETY: the resource is valid, and its name lives as long as it.
    let (resource_type, name) = unsafe {
        (ll::rd_kafka_ConfigResource_type(resource), copy_string(ll::rd_kafka_ConfigResource_name(resource)))
    };
    ConfigResource::from_raw(resource_type, name)
}

/// # Safety
///
/// `resource` must be a valid resource of a result event.
unsafe fn read_resource_error(resource: *const ll::rd_kafka_ConfigResource_t) -> Option<KafkaError> {
    // SAFETY: the resource is valid, and its error string lives as long as it.
    unsafe {
        error_from_code(ll::rd_kafka_ConfigResource_error(resource), ll::rd_kafka_ConfigResource_error_string(resource))
    }
}

/// # Safety
///
/// `resource` must be a valid resource of a DescribeConfigs result.
unsafe fn read_entries(resource: *const ll::rd_kafka_ConfigResource_t) -> Vec<ConfigEntry> {
    let mut count = 0usize;
    // SAFETY: the resource is valid, and the entries live as long as it.
    let entries = unsafe { result_array(ll::rd_kafka_ConfigResource_configs(resource, &mut count), count) };
    entries
        .iter()
        .map(|&entry| {
            // SAFETY: each entry is valid and its strings live as long as
            // the event. The flags are 0 or 1 on a DescribeConfigs result.
            unsafe {
                ConfigEntry {
                    name: copy_string(ll::rd_kafka_ConfigEntry_name(entry)),
                    value: crate::native::optional_c_string(ll::rd_kafka_ConfigEntry_value(entry)),
                    source: ConfigSource::from_raw(ll::rd_kafka_ConfigEntry_source(entry)),
                    is_read_only: ll::rd_kafka_ConfigEntry_is_read_only(entry) == 1,
                    is_default: ll::rd_kafka_ConfigEntry_is_default(entry) == 1,
                    is_sensitive: ll::rd_kafka_ConfigEntry_is_sensitive(entry) == 1,
                }
            }
        })
        .collect()
}

/// An owned `rd_kafka_ConfigResource_t`.
struct OwnedConfigResource(NonNull<ll::rd_kafka_ConfigResource_t>);

impl OwnedConfigResource {
    fn add_incremental(&self, operation: &AlterConfigOp) -> Result<()> {
        let (name, op_type, value) = operation.parts();
        if name.is_empty() {
            return Err(empty_name("config name"));
        }
        let c_name = c_string(name, "config name")?;
        let c_value: Option<CString> = value.map(|value| c_string(value, "config value")).transpose()?;
        let value_ptr = c_value.as_ref().map_or(ptr::null(), |value| value.as_ptr());
        // SAFETY: the resource is owned by self, and librdkafka copies the name
        // and value, and passes the error it returns to us.
        let error = unsafe {
            ll::rd_kafka_ConfigResource_add_incremental_config(self.0.as_ptr(), c_name.as_ptr(), op_type, value_ptr)
        };
        // SAFETY: the error, if any, is ours and not used again.
        unsafe { check_owned_error("add config change", error) }
    }
}

impl Drop for OwnedConfigResource {
    fn drop(&mut self) {
        // SAFETY: self owns the object, and librdkafka copied it into the request.
        unsafe { ll::rd_kafka_ConfigResource_destroy(self.0.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_resource_parses_id() {
        assert_eq!(ConfigResource::from_raw(ll::RD_KAFKA_RESOURCE_BROKER, "7".to_owned()), ConfigResource::Broker(7));
        assert_eq!(
            ConfigResource::from_raw(ll::RD_KAFKA_RESOURCE_BROKER, "seven".to_owned()),
            ConfigResource::Unknown { resource_type: 4, name: "seven".to_owned() },
        );
        assert_eq!(ConfigResource::Broker(7).raw_type_and_name(), (ll::RD_KAFKA_RESOURCE_BROKER, "7".to_owned()));
    }

    #[test]
    fn empty_names_rejected() {
        let error = ConfigResource::Group(String::new()).to_native().err().expect("an empty group name was accepted");
        assert!(error.to_string().contains("config resource name"), "error for an empty resource name: {error}");

        let resource = ConfigResource::topic("audit").to_native().expect("a topic resource was rejected");
        let error =
            resource.add_incremental(&AlterConfigOp::delete("")).expect_err("an empty config name was accepted");
        assert!(error.to_string().contains("config name"), "error for an empty config name: {error}");
        assert!(resource.add_incremental(&AlterConfigOp::append("cleanup.policy", "compact")).is_ok());
    }
}
