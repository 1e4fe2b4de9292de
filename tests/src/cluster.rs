//! The three-node test cluster that the failover tests stop and restart
//! nodes of.
//!
//! `tests/run.sh` starts it with `tests/broker/kafka.sh start --nodes 3` in
//! the state directory `target/kafka-cluster`, and exports the two variables
//! the tests read. By hand:
//!
//! ```sh
//! KAFKA_STATE_DIR=target/kafka-cluster tests/broker/kafka.sh start --nodes 3
//! . target/kafka-cluster/env
//! cargo test -p rdkafka-e2e --test failover
//! KAFKA_STATE_DIR=target/kafka-cluster tests/broker/kafka.sh stop
//! ```
//!
//! Without the variables the failover tests print a notice and pass without
//! running, unless `CI` is set, in which case they fail, as the other
//! real-broker tests do.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{required_env, Target};

/// The environment variable that contains the cluster's bootstrap servers.
pub const CLUSTER_BOOTSTRAP_SERVERS_VAR: &str = "KAFKA_CLUSTER_BOOTSTRAP_SERVERS";

/// The environment variable that contains the cluster's state directory,
/// which `kafka.sh` needs to stop and start its nodes.
pub const CLUSTER_STATE_DIR_VAR: &str = "KAFKA_CLUSTER_STATE_DIR";

/// How to start the cluster, for the messages of missing variables.
const HOW_TO_START: &str = "Run `tests/run.sh`, or start the cluster with \
     `KAFKA_STATE_DIR=target/kafka-cluster tests/broker/kafka.sh start --nodes 3` \
     and source target/kafka-cluster/env.";

/// The bound on one `kafka.sh` call. The script bounds its own waits
/// (90 s to start by default, 40 s to stop), so this only catches a hung
/// script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// How a node is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: a controlled shutdown, which moves leadership away first.
    Graceful,
    /// SIGKILL: the process dies at once, as in a crash.
    Kill,
}

/// The test cluster: its bootstrap servers, and the script and state
/// directory that stop and start its nodes. Node ids are Kafka broker ids,
/// 1 to 3.
#[derive(Debug, Clone)]
pub struct Cluster {
    bootstrap_servers: String,
    state_dir: PathBuf,
    script: PathBuf,
}

impl Cluster {
    /// Returns the cluster from `KAFKA_CLUSTER_BOOTSTRAP_SERVERS` and
    /// `KAFKA_CLUSTER_STATE_DIR`, or `None` when the test is to be skipped
    /// (see [`crate::real_broker`] for when it skips and when it panics).
    #[track_caller]
    pub fn from_env() -> Option<Self> {
        let bootstrap_servers = required_env(CLUSTER_BOOTSTRAP_SERVERS_VAR, "the three-node test cluster", HOW_TO_START)?;
        let state_dir = required_env(CLUSTER_STATE_DIR_VAR, "the three-node test cluster", HOW_TO_START)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("broker").join("kafka.sh");
        Some(Self {
            bootstrap_servers,
            state_dir: PathBuf::from(state_dir),
            script,
        })
    }

    /// Returns the comma-separated bootstrap servers of all nodes.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Returns a target for clients of the whole cluster.
    pub fn target(&self) -> Target {
        Target::RealBroker(self.bootstrap_servers.clone())
    }

    /// Returns the address (`127.0.0.1:PORT`) of node `id`, which stays the
    /// same across restarts.
    #[track_caller]
    pub fn node_address(&self, id: i32) -> String {
        let output = self.run(&["nodes"]);
        let prefix = format!("{id} ");
        let line = output
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("`kafka.sh nodes` lists no node {id}; its output:\n{output}"));
        let address = line.split_whitespace().nth(1);
        address
            .unwrap_or_else(|| panic!("`kafka.sh nodes` printed a line without an address: {line:?}"))
            .to_owned()
    }

    /// Stops node `id` and waits until its process has exited.
    #[track_caller]
    pub fn stop_node(&self, id: i32, mode: Stop) {
        self.stop(&id.to_string(), mode);
    }

    /// Stops every node at once and waits until all have exited.
    #[track_caller]
    pub fn stop_all(&self, mode: Stop) {
        self.stop("all", mode);
    }

    /// Starts node `id` if it is stopped, on its data and ports, and waits
    /// until it serves metadata that lists it.
    #[track_caller]
    pub fn start_node(&self, id: i32) {
        self.run(&["start-node", &id.to_string()]);
    }

    /// Starts every stopped node and waits until each serves metadata. Does
    /// nothing when all nodes run.
    #[track_caller]
    pub fn start_all(&self) {
        self.run(&["start-node", "all"]);
    }

    #[track_caller]
    fn stop(&self, nodes: &str, mode: Stop) {
        let mut arguments = vec!["stop-node", nodes];
        if mode == Stop::Kill {
            arguments.push("--kill");
        }
        self.run(&arguments);
    }

    /// Runs `kafka.sh` with `arguments` on the cluster's state directory and
    /// returns its stdout. Panics with its output when it fails or runs
    /// longer than [`SCRIPT_TIMEOUT`].
    #[track_caller]
    fn run(&self, arguments: &[&str]) -> String {
        let command_line = format!("kafka.sh {}", arguments.join(" "));
        let mut child = Command::new(&self.script)
            .args(arguments)
            .env("KAFKA_STATE_DIR", &self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("failed to run {}: {error}", self.script.display()));

        // The pipes are drained on their own threads, so that a chatty
        // script cannot block on a full pipe while this waits for it.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < SCRIPT_TIMEOUT => thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    // The script is ours and hung, so it is killed; a failed
                    // kill leaves nothing better to do than to report.
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "timed out after {SCRIPT_TIMEOUT:?} waiting for `{command_line}`; its stderr:\n{}",
                        join(stderr)
                    );
                }
                Err(error) => panic!("waiting for `{command_line}` failed: {error}"),
            }
        };

        let stdout = join(stdout);
        let stderr = join(stderr);
        if !status.success() {
            panic!("`{command_line}` failed with {status}; its stderr:\n{stderr}\nits stdout:\n{stdout}");
        }
        stdout
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the text early; the exit status still decides.
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

fn join(reader: thread::JoinHandle<String>) -> String {
    reader.join().unwrap_or_else(|_| "(the pipe reader panicked)".to_owned())
}
