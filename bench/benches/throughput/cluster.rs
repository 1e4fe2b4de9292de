//! The cluster a measurement runs on: a mock cluster of the child's own,
//! or a topic on a real one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka_hl::{AdminClient, Config, MockCluster};

use crate::Options;

/// A topic ready for a measurement, and the cluster that contains it.
pub struct Target {
    pub servers: String,
    pub topic: String,
    pub partitions: i32,
    _mock: Option<MockCluster>,
}

impl Target {
    pub fn new(options: &Options, partitions: i32) -> Result<Self, String> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let topic = format!("bench-{}-{nanos}", std::process::id());

        match &options.brokers {
            Some(servers) => {
                let config = Config::new().set("bootstrap.servers", servers).map_err(|error| error.to_string())?;
                let admin = AdminClient::new(config).map_err(|error| error.to_string())?;
                admin
                    .create_topic(&topic, partitions, 1, Duration::from_secs(30))
                    .map_err(|error| format!("failed to create topic {topic}: {error}"))?;
                Ok(Self { servers: servers.clone(), topic, partitions, _mock: None })
            }
            None => {
                let cluster = MockCluster::new(3).map_err(|error| error.to_string())?;
                cluster
                    .create_topic(&topic, partitions, 1)
                    .map_err(|error| format!("failed to create topic {topic}: {error}"))?;
                Ok(Self { servers: cluster.bootstrap_servers(), topic, partitions, _mock: Some(cluster) })
            }
        }
    }

    /// Returns the properties every producer of every variant gets.
    pub fn producer_properties(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.servers.clone()),
            ("acks", "all".to_owned()),
            ("linger.ms", "5".to_owned()),
            ("queue.buffering.max.messages", "1000000".to_owned()),
        ]
    }

    /// Returns the properties every consumer of every variant gets.
    pub fn consumer_properties(&self, group: &str) -> Vec<(&'static str, String)> {
        vec![
            ("bootstrap.servers", self.servers.clone()),
            ("group.id", group.to_owned()),
            ("auto.offset.reset", "earliest".to_owned()),
            ("enable.auto.commit", "false".to_owned()),
            // With the default of 1 s, a full local queue pauses fetching
            // for a second and caps every client alike.
            ("fetch.queue.backoff.ms", "10".to_owned()),
        ]
    }
}
