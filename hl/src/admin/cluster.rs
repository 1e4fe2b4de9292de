//! Describing the cluster: its id, controller and brokers.

use rdkafka_ll as ll;

use super::results::{copy_string, result_array};
use super::{AdminClient, AdminOptions};
use crate::error::Result;
use crate::future::KafkaFuture;
use crate::native::{optional_c_string, NativeEvent};

/// A broker of the cluster, as admin results describe it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The broker id.
    pub id: i32,
    /// The host name it advertises.
    pub host: String,
    /// The port it advertises.
    pub port: u16,
    /// The rack it is in, if `broker.rack` is set.
    pub rack: Option<String>,
}

impl Node {
    /// Copies a node, `None` for NULL.
    ///
    /// # Safety
    ///
    /// A non-NULL `node` must be valid for the duration of the call.
    pub(super) unsafe fn copy(node: *const ll::rd_kafka_Node_t) -> Option<Self> {
        if node.is_null() {
            return None;
        }
        // SAFETY: the node is valid, and its strings live as long as it.
        unsafe {
            Some(Self {
                id: ll::rd_kafka_Node_id(node),
                host: copy_string(ll::rd_kafka_Node_host(node)),
                port: ll::rd_kafka_Node_port(node),
                rack: optional_c_string(ll::rd_kafka_Node_rack(node)),
            })
        }
    }
}

/// The cluster as a DescribeCluster request returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The broker that the responding broker reports as the controller,
    /// if any.
    pub controller: Option<Node>,
    /// The brokers.
    pub nodes: Vec<Node>,
}

impl AdminClient {
    /// Describes the cluster: its id, controller and brokers.
    ///
    /// ```no_run
    /// use rdkafka_hl::{AdminClient, AdminOptions, Config};
    ///
    /// let admin = AdminClient::new(Config::new().set("bootstrap.servers", "127.0.0.1:9092")?)?;
    /// let cluster = admin.describe_cluster(&AdminOptions::new())?.wait()?;
    /// for node in &cluster.nodes {
    ///     println!("broker {} at {}:{}", node.id, node.host, node.port);
    /// }
    /// # Ok::<(), rdkafka_hl::Error>(())
    /// ```
    pub fn describe_cluster(&self, options: &AdminOptions) -> Result<KafkaFuture<ClusterDescription>> {
        self.request(
            "describe cluster",
            ll::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
            options,
            parse_describe_cluster,
            |options, queue| {
                // SAFETY: the client, options and queue are valid.
                unsafe { ll::rd_kafka_DescribeCluster(self.client_ptr(), options, queue) }
            },
        )
    }
}

fn parse_describe_cluster(event: &NativeEvent) -> Result<ClusterDescription> {
    // SAFETY: the event is a DescribeCluster result, and the nodes and the
    // cluster id live as long as the event.
    unsafe {
        let result = ll::rd_kafka_event_DescribeCluster_result(event.as_ptr());
        let mut count = 0usize;
        let nodes = ll::rd_kafka_DescribeCluster_result_nodes(result, &mut count);
        Ok(ClusterDescription {
            cluster_id: optional_c_string(ll::rd_kafka_DescribeCluster_result_cluster_id(result)),
            controller: Node::copy(ll::rd_kafka_DescribeCluster_result_controller(result)),
            nodes: result_array(nodes, count).iter().filter_map(|&node| Node::copy(node)).collect(),
        })
    }
}
