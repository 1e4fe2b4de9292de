//! Creating, describing and deleting access control lists (ACLs).
//!
//! Each call needs a broker with an authorizer (`authorizer.class.name`).
//! A broker without one fails every item with `SECURITY_DISABLED`, except
//! that librdkafka 2.12.1 drops that error of a DescribeAcls response, so
//! [`AdminClient::describe_acls`] then returns no bindings and no error.

use std::ffi::{c_char, CString};
use std::ptr::{self, NonNull};

use rdkafka_ll as ll;

use super::results::{copy_error, copy_string, raw_value, result_array, unknown_value};
use super::topics::c_string;
use super::{AdminClient, AdminOptions};
use crate::error::{Error, ErrorCode, KafkaError, Result};
use crate::future::KafkaFuture;
use crate::native::{c_buffer_to_string, NativeEvent};

/// The type of resource an ACL applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// Any type, in filters only.
    Any,
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster, which Kafka calls the `CLUSTER` resource and librdkafka
    /// `BROKER`. Its name is `kafka-cluster`.
    Broker,
    /// A transactional id.
    TransactionalId,
    /// A type librdkafka does not know (`UNKNOWN` is 0), by its raw
    /// `rd_kafka_ResourceType_t` value. librdkafka rejects it in requests.
    Unknown(i32),
}

impl ResourceType {
    fn to_raw(self) -> ll::rd_kafka_ResourceType_t {
        match self {
            Self::Any => ll::RD_KAFKA_RESOURCE_ANY,
            Self::Topic => ll::RD_KAFKA_RESOURCE_TOPIC,
            Self::Group => ll::RD_KAFKA_RESOURCE_GROUP,
            Self::Broker => ll::RD_KAFKA_RESOURCE_BROKER,
            Self::TransactionalId => ll::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
            Self::Unknown(raw) => raw_value(raw),
        }
    }

    fn from_raw(raw: ll::rd_kafka_ResourceType_t) -> Self {
        match raw {
            ll::RD_KAFKA_RESOURCE_ANY => Self::Any,
            ll::RD_KAFKA_RESOURCE_TOPIC => Self::Topic,
            ll::RD_KAFKA_RESOURCE_GROUP => Self::Group,
            ll::RD_KAFKA_RESOURCE_BROKER => Self::Broker,
            ll::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => Self::TransactionalId,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// The rule by which an ACL's resource name matches resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourcePatternType {
    /// Any pattern type, in filters only.
    Any,
    /// In filters only: every binding that applies to the filter's name,
    /// whether literal, prefixed or the `*` wildcard.
    Match,
    /// The name matches itself only, or every resource when it is `*`.
    Literal,
    /// The name matches every resource name that starts with it.
    Prefixed,
    /// A pattern type librdkafka does not know (`UNKNOWN` is 0), by its raw
    /// `rd_kafka_ResourcePatternType_t` value. librdkafka rejects it in
    /// requests.
    Unknown(i32),
}

impl ResourcePatternType {
    fn to_raw(self) -> ll::rd_kafka_ResourcePatternType_t {
        match self {
            Self::Any => ll::RD_KAFKA_RESOURCE_PATTERN_ANY,
            Self::Match => ll::RD_KAFKA_RESOURCE_PATTERN_MATCH,
            Self::Literal => ll::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            Self::Prefixed => ll::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
            Self::Unknown(raw) => raw_value(raw),
        }
    }

    fn from_raw(raw: ll::rd_kafka_ResourcePatternType_t) -> Self {
        match raw {
            ll::RD_KAFKA_RESOURCE_PATTERN_ANY => Self::Any,
            ll::RD_KAFKA_RESOURCE_PATTERN_MATCH => Self::Match,
            ll::RD_KAFKA_RESOURCE_PATTERN_LITERAL => Self::Literal,
            ll::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => Self::Prefixed,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// The operation an ACL allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclOperation {
    /// Any operation, in filters only.
    Any,
    /// Every operation.
    All,
    /// Reading, such as fetching from a topic.
    Read,
    /// Writing, such as producing to a topic.
    Write,
    /// Creating, such as creating a topic.
    Create,
    /// Deleting, such as deleting a topic or records.
    Delete,
    /// Altering, such as adding partitions.
    Alter,
    /// Describing, such as fetching metadata or offsets.
    Describe,
    /// Broker-to-broker operations on the cluster.
    ClusterAction,
    /// Describing configurations.
    DescribeConfigs,
    /// Altering configurations.
    AlterConfigs,
    /// Producing idempotently.
    IdempotentWrite,
    /// An operation librdkafka does not know (`UNKNOWN` is 0), by its raw
    /// `rd_kafka_AclOperation_t` value. librdkafka rejects it in requests.
    Unknown(i32),
}

impl AclOperation {
    fn to_raw(self) -> ll::rd_kafka_AclOperation_t {
        match self {
            Self::Any => ll::RD_KAFKA_ACL_OPERATION_ANY,
            Self::All => ll::RD_KAFKA_ACL_OPERATION_ALL,
            Self::Read => ll::RD_KAFKA_ACL_OPERATION_READ,
            Self::Write => ll::RD_KAFKA_ACL_OPERATION_WRITE,
            Self::Create => ll::RD_KAFKA_ACL_OPERATION_CREATE,
            Self::Delete => ll::RD_KAFKA_ACL_OPERATION_DELETE,
            Self::Alter => ll::RD_KAFKA_ACL_OPERATION_ALTER,
            Self::Describe => ll::RD_KAFKA_ACL_OPERATION_DESCRIBE,
            Self::ClusterAction => ll::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION,
            Self::DescribeConfigs => ll::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
            Self::AlterConfigs => ll::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
            Self::IdempotentWrite => ll::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
            Self::Unknown(raw) => raw_value(raw),
        }
    }

    fn from_raw(raw: ll::rd_kafka_AclOperation_t) -> Self {
        match raw {
            ll::RD_KAFKA_ACL_OPERATION_ANY => Self::Any,
            ll::RD_KAFKA_ACL_OPERATION_ALL => Self::All,
            ll::RD_KAFKA_ACL_OPERATION_READ => Self::Read,
            ll::RD_KAFKA_ACL_OPERATION_WRITE => Self::Write,
            ll::RD_KAFKA_ACL_OPERATION_CREATE => Self::Create,
            ll::RD_KAFKA_ACL_OPERATION_DELETE => Self::Delete,
            ll::RD_KAFKA_ACL_OPERATION_ALTER => Self::Alter,
            ll::RD_KAFKA_ACL_OPERATION_DESCRIBE => Self::Describe,
            ll::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION => Self::ClusterAction,
            ll::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS => Self::DescribeConfigs,
            ll::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS => Self::AlterConfigs,
            ll::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE => Self::IdempotentWrite,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// Whether an ACL allows or denies its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclPermissionType {
    /// Either, in filters only.
    Any,
    /// Denies the operation, which wins over any allow.
    Deny,
    /// Allows the operation.
    Allow,
    /// A permission type librdkafka does not know (`UNKNOWN` is 0), by its
    /// raw `rd_kafka_AclPermissionType_t` value. librdkafka rejects it in
    /// requests.
    Unknown(i32),
}

impl AclPermissionType {
    fn to_raw(self) -> ll::rd_kafka_AclPermissionType_t {
        match self {
            Self::Any => ll::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            Self::Deny => ll::RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
            Self::Allow => ll::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
            Self::Unknown(raw) => raw_value(raw),
        }
    }

    fn from_raw(raw: ll::rd_kafka_AclPermissionType_t) -> Self {
        match raw {
            ll::RD_KAFKA_ACL_PERMISSION_TYPE_ANY => Self::Any,
            ll::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => Self::Deny,
            ll::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => Self::Allow,
            other => Self::Unknown(unknown_value(other)),
        }
    }
}

/// An ACL: who may or may not run an operation on which resources.
///
/// librdkafka rejects the filter-only values (`Any`, `Match`) and `Unknown`
/// values in a binding, so a request with one fails before anything is sent.
///
/// ```
/// use rdkafka_hl::{AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType};
///
/// let binding = AclBinding {
///     resource_type: ResourceType::Topic,
///     name: "audit-".to_owned(),
///     pattern_type: ResourcePatternType::Prefixed,
///     principal: "User:auditor".to_owned(),
///     host: "*".to_owned(),
///     operation: AclOperation::Read,
///     permission_type: AclPermissionType::Allow,
/// };
/// # let _ = binding;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclBinding {
    /// The type of resource.
    pub resource_type: ResourceType,
    /// The resource name, or `*` for every resource of the type.
    pub name: String,
    /// The rule by which `name` matches resource names.
    pub pattern_type: ResourcePatternType,
    /// The principal, such as `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// The host the principal connects from, or `*` for any host.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Whether the operation is allowed or denied.
    pub permission_type: AclPermissionType,
}

impl AclBinding {
    fn to_native(&self) -> Result<OwnedAclBinding> {
        let name = c_string(&self.name, "ACL resource name")?;
        let principal = c_string(&self.principal, "ACL principal")?;
        let host = c_string(&self.host, "ACL host")?;
        let mut errstr = [0 as c_char; 512];
        // SAFETY: the strings are NUL-terminated and copied, and errstr is
        // writable. librdkafka returns NULL for invalid values.
        let raw = unsafe {
            ll::rd_kafka_AclBinding_new(
                self.resource_type.to_raw(),
                name.as_ptr(),
                self.pattern_type.to_raw(),
                principal.as_ptr(),
                host.as_ptr(),
                self.operation.to_raw(),
                self.permission_type.to_raw(),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        NonNull::new(raw).map(OwnedAclBinding).ok_or_else(|| invalid_acl("ACL binding", &errstr))
    }

    /// # Safety
    ///
    /// `acl` must be a valid binding for the duration of the call.
    unsafe fn copy(acl: *const ll::rd_kafka_AclBinding_t) -> Self {
        // SAFETY: the binding is valid, and its strings live as long as it.
        unsafe {
            Self {
                resource_type: ResourceType::from_raw(ll::rd_kafka_AclBinding_restype(acl)),
                name: copy_string(ll::rd_kafka_AclBinding_name(acl)),
                pattern_type: ResourcePatternType::from_raw(ll::rd_kafka_AclBinding_resource_pattern_type(acl)),
                principal: copy_string(ll::rd_kafka_AclBinding_principal(acl)),
                host: copy_string(ll::rd_kafka_AclBinding_host(acl)),
                operation: AclOperation::from_raw(ll::rd_kafka_AclBinding_operation(acl)),
                permission_type: AclPermissionType::from_raw(ll::rd_kafka_AclBinding_permission_type(acl)),
            }
        }
    }
}

/// A filter that selects ACLs to describe or delete. `None` and the `Any`
/// values match every binding.
///
/// ```
/// use rdkafka_hl::{AclBindingFilter, ResourceType};
///
/// let every_topic_acl = AclBindingFilter { resource_type: ResourceType::Topic, ..AclBindingFilter::any() };
/// # let _ = every_topic_acl;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclBindingFilter {
    /// The type of resource.
    pub resource_type: ResourceType,
    /// The resource name.
    pub name: Option<String>,
    /// The pattern type of the bindings to select.
    /// [`ResourcePatternType::Match`] selects every binding that applies to a
    /// resource called `name`.
    pub pattern_type: ResourcePatternType,
    /// The principal.
    pub principal: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The operation.
    pub operation: AclOperation,
    /// The permission type.
    pub permission_type: AclPermissionType,
}

impl AclBindingFilter {
    /// Creates a filter that matches every ACL.
    pub fn any() -> Self {
        Self {
            resource_type: ResourceType::Any,
            name: None,
            pattern_type: ResourcePatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission_type: AclPermissionType::Any,
        }
    }

    fn to_native(&self) -> Result<OwnedAclBinding> {
        let optional =
            |value: &Option<String>, argument| value.as_deref().map(|value| c_string(value, argument)).transpose();
        let name = optional(&self.name, "ACL resource name")?;
        let principal = optional(&self.principal, "ACL principal")?;
        let host = optional(&self.host, "ACL host")?;
        let pointer = |value: &Option<CString>| value.as_ref().map_or(ptr::null(), |value| value.as_ptr());
        let mut errstr = [0 as c_char; 512];
        // SAFETY: the strings are NULL or NUL-terminated and get copied, and
        // errstr is writable. librdkafka returns NULL for invalid values.
        let raw = unsafe {
            ll::rd_kafka_AclBindingFilter_new(
                self.resource_type.to_raw(),
                pointer(&name),
                self.pattern_type.to_raw(),
                pointer(&principal),
                pointer(&host),
                self.operation.to_raw(),
                self.permission_type.to_raw(),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        NonNull::new(raw).map(OwnedAclBinding).ok_or_else(|| invalid_acl("ACL binding filter", &errstr))
    }
}

/// The outcome of creating one ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclCreationResult {
    /// The error for this binding, such as `SECURITY_DISABLED`, or `None`
    /// on success.
    pub error: Option<KafkaError>,
}

/// The outcome of deleting the ACLs that one filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclDeletionResult {
    /// The error for this filter, such as `SECURITY_DISABLED`, or `None`
    /// on success.
    pub error: Option<KafkaError>,
    /// The bindings the filter matched, each with its own error.
    pub deleted: Vec<DeletedAcl>,
}

/// A binding that a delete filter matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAcl {
    /// The binding.
    pub binding: AclBinding,
    /// The error that kept it from being deleted, or `None` when it was
    /// deleted.
    pub error: Option<KafkaError>,
}

impl AdminClient {
    /// Creates ACLs. The future resolves to one [`AclCreationResult`] per
    /// binding, in the order of `bindings`.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AclBinding, AclOperation, AclPermissionType, AdminClient, AdminOptions, Config};
    /// use rdkafka_hl::{ResourcePatternType, ResourceType};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let binding = AclBinding {
    ///     resource_type: ResourceType::Topic,
    ///     name: "audit".to_owned(),
    ///     pattern_type: ResourcePatternType::Literal,
    ///     principal: "User:auditor".to_owned(),
    ///     host: "*".to_owned(),
    ///     operation: AclOperation::Read,
    ///     permission_type: AclPermissionType::Allow,
    /// };
    /// let results = admin.create_acls(&[binding], &AdminOptions::new())?.wait()?;
    /// assert!(results[0].error.is_none());
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn create_acls(
        &self,
        bindings: &[AclBinding],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<AclCreationResult>>> {
        let natives = bindings.iter().map(AclBinding::to_native).collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|binding| binding.0.as_ptr()).collect();

        self.request("create ACLs", ll::RD_KAFKA_ADMIN_OP_CREATEACLS, options, parse_create_acls, |options, queue| {
            // SAFETY: the client, bindings, options and queue are valid, and
            // librdkafka copies the bindings.
            unsafe { ll::rd_kafka_CreateAcls(self.client_ptr(), pointers.as_mut_ptr(), pointers.len(), options, queue) }
        })
    }

    /// Describes the ACLs that `filter` matches.
    ///
    /// NOTE: librdkafka 2.12.1 drops the error of a DescribeAcls response,
    /// so a broker that cannot describe ACLs (no authorizer, or no
    /// permission) yields an empty list, not an error.
    pub fn describe_acls(
        &self,
        filter: &AclBindingFilter,
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<AclBinding>>> {
        let native = filter.to_native()?;

        self.request(
            "describe ACLs",
            ll::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
            options,
            parse_describe_acls,
            |options, queue| {
                // SAFETY: the client, filter, options and queue are valid, and
                // librdkafka copies the filter.
                unsafe { ll::rd_kafka_DescribeAcls(self.client_ptr(), native.0.as_ptr(), options, queue) }
            },
        )
    }

    /// Deletes the ACLs that each filter matches. The future resolves to one
    /// [`AclDeletionResult`] per filter, in the order of `filters`.
    pub fn delete_acls(
        &self,
        filters: &[AclBindingFilter],
        options: &AdminOptions,
    ) -> Result<KafkaFuture<Vec<AclDeletionResult>>> {
        let natives = filters.iter().map(AclBindingFilter::to_native).collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = natives.iter().map(|filter| filter.0.as_ptr()).collect();

        self.request("delete ACLs", ll::RD_KAFKA_ADMIN_OP_DELETEACLS, options, parse_delete_acls, |options, queue| {
            // SAFETY: as for create_acls, for filters.
            unsafe { ll::rd_kafka_DeleteAcls(self.client_ptr(), pointers.as_mut_ptr(), pointers.len(), options, queue) }
        })
    }
}

fn parse_create_acls(event: &NativeEvent) -> Result<Vec<AclCreationResult>> {
    // SAFETY: the event is a CreateAcls result, and the ACL results and their
    // errors live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_CreateAcls_result(event.as_ptr());
        let mut count = 0usize;
        let results = ll::rd_kafka_CreateAcls_result_acls(result, &mut count);
        Ok(result_array(results, count)
            .iter()
            .map(|&acl_result| AclCreationResult { error: copy_error(ll::rd_kafka_acl_result_error(acl_result)) })
            .collect())
    }
}

fn parse_describe_acls(event: &NativeEvent) -> Result<Vec<AclBinding>> {
    // SAFETY: the event is a DescribeAcls result, and the bindings live as long
    // as the event.
    unsafe {
        let result = ll::rd_kafka_event_DescribeAcls_result(event.as_ptr());
        let mut count = 0usize;
        let bindings = ll::rd_kafka_DescribeAcls_result_acls(result, &mut count);
        Ok(result_array(bindings, count).iter().map(|&binding| AclBinding::copy(binding)).collect())
    }
}

fn parse_delete_acls(event: &NativeEvent) -> Result<Vec<AclDeletionResult>> {
    // SAFETY: the event is a DeleteAcls result, and the responses, their errors
    // and matching bindings live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_DeleteAcls_result(event.as_ptr());
        let mut count = 0usize;
        let responses = ll::rd_kafka_DeleteAcls_result_responses(result, &mut count);
        Ok(result_array(responses, count)
            .iter()
            .map(|&response| {
                let mut matching_count = 0usize;
                let matching = ll::rd_kafka_DeleteAcls_result_response_matching_acls(response, &mut matching_count);
                AclDeletionResult {
                    error: copy_error(ll::rd_kafka_DeleteAcls_result_response_error(response)),
                    deleted: result_array(matching, matching_count)
                        .iter()
                        .map(|&binding| DeletedAcl {
                            binding: AclBinding::copy(binding),
                            error: copy_error(ll::rd_kafka_AclBinding_error(binding)),
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

fn invalid_acl(kind: &str, errstr: &[c_char]) -> Error {
    Error::Kafka {
        operation: "prepare ACL request",
        error: KafkaError::with_message(
            ErrorCode::INVALID_ARGUMENT,
            format!("invalid {kind}: {}", c_buffer_to_string(errstr)),
        ),
    }
}

/// An owned `rd_kafka_AclBinding_t`, which is also the type of a filter.
struct OwnedAclBinding(NonNull<ll::rd_kafka_AclBinding_t>);

impl Drop for OwnedAclBinding {
    fn drop(&mut self) {
        // SAFETY: self owns the object, and librdkafka copied it into the request.
        unsafe { ll::rd_kafka_AclBinding_destroy(self.0.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_raw_values() {
        for raw in 0..ll::RD_KAFKA_RESOURCE__CNT + 2 {
            assert_eq!(ResourceType::from_raw(raw).to_raw(), raw, "resource type {raw}");
        }
        for raw in 0..ll::RD_KAFKA_RESOURCE_PATTERN_TYPE__CNT + 2 {
            assert_eq!(ResourcePatternType::from_raw(raw).to_raw(), raw, "pattern type {raw}");
        }
        for raw in 0..ll::RD_KAFKA_ACL_OPERATION__CNT + 2 {
            assert_eq!(AclOperation::from_raw(raw).to_raw(), raw, "operation {raw}");
        }
        for raw in 0..ll::RD_KAFKA_ACL_PERMISSION_TYPE__CNT + 2 {
            assert_eq!(AclPermissionType::from_raw(raw).to_raw(), raw, "permission type {raw}");
        }
        assert_eq!(ResourceType::from_raw(0), ResourceType::Unknown(0), "librdkafka's UNKNOWN resource type");
    }

    #[test]
    fn binding_with_filter_value_rejected() {
        let binding = AclBinding {
            resource_type: ResourceType::Topic,
            name: "audit".to_owned(),
            pattern_type: ResourcePatternType::Match,
            principal: "User:auditor".to_owned(),
            host: "*".to_owned(),
            operation: AclOperation::Read,
            permission_type: AclPermissionType::Allow,
        };

        let error = binding.to_native().err().expect("a binding with pattern type Match was accepted");

        assert_eq!(error.code(), Some(ErrorCode::INVALID_ARGUMENT), "code of the rejected binding: {error}");
        assert!(error.to_string().contains("pattern type"), "message of the rejected binding: {error}");
    }

    #[test]
    fn filter_any_accepted() {
        assert!(AclBindingFilter::any().to_native().is_ok(), "librdkafka rejected the match-all filter");
    }
}
