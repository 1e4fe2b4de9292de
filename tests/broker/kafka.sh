#!/usr/bin/env bash
# Runs a single-node Apache Kafka broker, or a cluster of several nodes (KRaft,
# each node a combined broker and controller), on 127.0.0.1 for the rdkafka-rs
# integration tests.
#
# The broker jars come from Maven Central through tests/broker/pom.xml, and the
# broker runs on the machine's `java` (Kafka 4.x brokers need Java 17 or newer).
# Run with no arguments for the list of subcommands.
set -euo pipefail

SCRIPT_NAME=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
POM="$SCRIPT_DIR/pom.xml"

STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/target/kafka-broker}"
# Kafka resolves log.dirs against its own working directory, so keep every path absolute.
case "$STATE_DIR" in
  /*) ;;
  *) STATE_DIR="$PWD/$STATE_DIR" ;;
esac

START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
# With this heap, each cluster node used 370 to 420 MB of resident memory
# after the failover tests (Kafka 4.1.1, Java 17).
NODE_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx384m -Xms128m}"
MIN_JAVA_MAJOR=17
# Cluster topics get replication factor 3 and min.insync.replicas=2, which
# needs at least 3 nodes. The upper bound only keeps typos from starting
# dozens of JVMs.
MIN_CLUSTER_NODES=3
MAX_CLUSTER_NODES=9

if ! [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]]; then
  echo "$(basename "$0"): error: invalid KAFKA_START_TIMEOUT '$START_TIMEOUT': expected a whole number of seconds." >&2
  exit 1
fi

CLASSPATH_FILE="$STATE_DIR/classpath.txt"
CLASSPATH_POM_HASH_FILE="$STATE_DIR/classpath.pom.sha256"
MAVEN_LOG="$STATE_DIR/maven.log"
PID_FILE="$STATE_DIR/kafka.pid"
BOOTSTRAP_FILE="$STATE_DIR/bootstrap"
ENV_FILE="$STATE_DIR/env"
LOG_FILE="$STATE_DIR/broker.log"
LOCK_FILE="$STATE_DIR/lock"
TOOLS_LOG4J_CONFIG="$STATE_DIR/tools-log4j2.properties"
TOOLS_CLIENT_CONFIG="$STATE_DIR/tools-client.properties"
DATA_DIR="$STATE_DIR/data"
SERVER_PROPERTIES="$DATA_DIR/server.properties"
BROKER_LOG4J_CONFIG="$DATA_DIR/log4j2.properties"
# The node count of the last start: absent for a single broker.
NODES_FILE="$STATE_DIR/nodes"

# Set by `start --sasl-ssl`.
WANT_SASL_SSL=0

APT_UPDATED=0
LOCK_HELD=0

usage() {
  cat <<EOF
Usage: $SCRIPT_NAME COMMAND [ARG...]

Runs Apache Kafka on 127.0.0.1 for tests: a single broker, or with
'start --nodes N' a cluster of N nodes. Every node runs in KRaft mode, with
broker and controller in one process.

Commands:
  fetch               Resolve the Kafka jars with Maven and cache the classpath.
  start [--nodes N] [--sasl-ssl]
                      Start the broker, or a cluster of N nodes ($MIN_CLUSTER_NODES to $MAX_CLUSTER_NODES),
                      or reuse the one already running in the state
                      directory, and print the bootstrap address
                      (127.0.0.1:PORT, a comma-separated list for a cluster)
                      as the last line on stdout. N defaults to the node
                      count of the last start in the state directory, else 1.
                      With --sasl-ssl (single broker only) the broker also
                      gets a SASL_SSL listener with SCRAM-SHA-512 (see
                      below); a running broker without one is restarted.
  stop                Stop the broker or every cluster node (SIGTERM, then
                      SIGKILL after ${STOP_TIMEOUT} s).
  status              Print whether the broker, or each cluster node, runs.
                      Exit status 0 if all run, 1 if not.
  address             Print the bootstrap address. Exit status 1 if no broker runs.
  env                 Print the env file, for eval in a shell. Exit status 1
                      if no broker or cluster runs.
  log [--node ID] [--tail N]
                      Print the broker log path, or its last N lines. For a
                      cluster: every node's log, or only node ID's.
  run-class CLASS [ARG...]
                      Run a Java main class from the broker classpath, for
                      example org.apache.kafka.tools.TopicCommand.

Cluster commands, after 'start --nodes N' (node IDs are 1 to N):
  nodes               Print one line per node: its ID, its address
                      (127.0.0.1:PORT) and 'running' or 'stopped'.
  stop-node ID|all [--kill]
                      Stop one node, or all nodes at once, keeping their data
                      and ports: SIGTERM (a controlled shutdown), then SIGKILL
                      after ${STOP_TIMEOUT} s. With --kill, SIGKILL at once.
  start-node ID|all   Start a stopped node, or every stopped node, on its data
                      and ports, and wait until each serves metadata that lists
                      it.

A cluster is set up for failover tests: default.replication.factor=3,
min.insync.replicas=2, and the internal topics have replication factor 3
and min.insync.replicas=2.

Environment:
  KAFKA_STATE_DIR       State directory (default: <repo>/target/kafka-broker).
                        Broker data under it is deleted on every fresh start.
                        A single broker and a cluster need separate state
                        directories to run at the same time.
  KAFKA_START_TIMEOUT   Seconds to wait for the broker, or the nodes being
                        started, to serve metadata (default: 90).
  KAFKA_HEAP_OPTS       Heap options of each broker JVM (default: -Xmx512m
                        -Xms256m for a single broker, -Xmx384m -Xms128m for
                        each cluster node).

Files in the state directory after start:
  bootstrap   the bootstrap address
  env         for sourcing in a shell: 'export KAFKA_BOOTSTRAP_SERVERS=...'
              for a single broker, with --sasl-ssl also the variables
              below; for a cluster, exports of
              KAFKA_CLUSTER_BOOTSTRAP_SERVERS and KAFKA_CLUSTER_STATE_DIR
  broker.log  broker output and Kafka's log4j2 log (node-ID/broker.log for
              cluster node ID)

With --sasl-ssl, every fresh start generates a throwaway CA, a broker
certificate for 127.0.0.1 and localhost signed by it, a second CA that
signed nothing, and a random SCRAM-SHA-512 password, all in sasl-ssl/
under the state directory. The env file then also exports:
  KAFKA_SASL_SSL_BOOTSTRAP_SERVERS       the SASL_SSL listener (127.0.0.1:PORT)
  KAFKA_SASL_SSL_CA_LOCATION             PEM file of the CA that signed the broker certificate
  KAFKA_SASL_SSL_UNTRUSTED_CA_LOCATION   PEM file of the unrelated CA
  KAFKA_SASL_MECHANISM                   SCRAM-SHA-512
  KAFKA_SASL_USERNAME                    the user name
  KAFKA_SASL_PASSWORD_FILE               file whose only line is the password
sasl-ssl/client.properties configures Kafka's own tools for the listener.
EOF
}

log() {
  echo "$SCRIPT_NAME: $*" >&2
}

die() {
  echo "$SCRIPT_NAME: error: $*" >&2
  exit 1
}

# --- Tool checks ------------------------------------------------------------

# Installs Debian packages when running as root with apt-get, and otherwise
# exits with a message that names the missing tool and the package to install.
install_packages() {
  local tool="$1"
  shift

  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "'$tool' not found on PATH. Install it (Debian/Ubuntu: apt-get install $*) and retry."
  fi

  log "'$tool' not found on PATH, installing Debian packages: $*"
  if [[ $APT_UPDATED -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
  command -v "$tool" >/dev/null 2>&1 \
    || die "'$tool' still not found on PATH after installing: $*"
}

# Prints the Java feature release number (8 for "1.8", 17 for "17").
java_major_version() {
  local spec
  spec=$(java -XshowSettings:properties -version 2>&1 \
    | sed -n 's/^ *java\.specification\.version = *//p')
  if [[ "$spec" == 1.* ]]; then
    spec=${spec#1.}
  fi
  echo "${spec%%.*}"
}

require_java() {
  if ! command -v java >/dev/null 2>&1; then
    install_packages java default-jre-headless
  fi

  local major
  major=$(java_major_version)
  if ! [[ "$major" =~ ^[0-9]+$ ]]; then
    die "could not read the Java version from '$(command -v java) -XshowSettings:properties -version'."
  fi
  if ((major < MIN_JAVA_MAJOR)); then
    die "Java $major found at $(command -v java), but Kafka 4 brokers need Java $MIN_JAVA_MAJOR or newer. Install Java $MIN_JAVA_MAJOR or newer (for example Debian's openjdk-17-jre-headless or openjdk-21-jre-headless) and put its bin directory first on PATH."
  fi
}

require_maven() {
  require_java
  if ! command -v mvn >/dev/null 2>&1; then
    install_packages mvn maven
  fi
}

# --- Classpath --------------------------------------------------------------

pom_hash() {
  sha256sum "$POM" | cut -d' ' -f1
}

# Succeeds when the cached classpath was built from the current pom.xml and
# every jar it names is still in the local Maven repository.
classpath_is_current() {
  [[ -s "$CLASSPATH_FILE" && -f "$CLASSPATH_POM_HASH_FILE" ]] || return 1
  [[ "$(cat "$CLASSPATH_POM_HASH_FILE")" == "$(pom_hash)" ]] || return 1

  local jar
  local -a jars
  IFS=: read -r -a jars <"$CLASSPATH_FILE"
  for jar in "${jars[@]}"; do
    [[ -f "$jar" ]] || return 1
  done
}

fetch() {
  mkdir -p "$STATE_DIR"
  if classpath_is_current; then
    return 0
  fi

  require_maven
  log "resolving Kafka jars with Maven ($POM)"
  # Maven output goes to a file because Debian 12's Maven 3.8.7 prints ANSI
  # escape codes even with -q -B. The file is shown only when Maven fails.
  if ! mvn -q -B -f "$POM" dependency:build-classpath \
    -Dmdep.outputFile="$CLASSPATH_FILE.tmp" >"$MAVEN_LOG" 2>&1; then
    cat "$MAVEN_LOG" >&2
    die "Maven failed to resolve the dependencies in $POM (output above, also in $MAVEN_LOG). Maven Central must be reachable for the first fetch."
  fi

  mv "$CLASSPATH_FILE.tmp" "$CLASSPATH_FILE"
  pom_hash >"$CLASSPATH_POM_HASH_FILE"
  log "classpath cached in $CLASSPATH_FILE"
}

# Writes the log4j2 and client configuration used by the command-line tools,
# which log warnings and errors to stderr only.
write_tools_config() {
  cat >"$TOOLS_LOG4J_CONFIG" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
  # The short client timeouts make one readiness probe fail fast while the
  # broker is still starting.
  cat >"$TOOLS_CLIENT_CONFIG" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# Sets TOOL_JAVA to the java command, without the main class, for short-lived
# Kafka tools. It uses a small heap and the tools' log4j2 config.
set_tool_java() {
  [[ -f "$TOOLS_LOG4J_CONFIG" ]] || write_tools_config
  # TieredStopAtLevel=1 and SerialGC cut a BrokerApiVersionsCommand run from
  # about 0.65 s to 0.53 s (Java 17, 2 cores).
  TOOL_JAVA=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Dlog4j2.configurationFile="$TOOLS_LOG4J_CONFIG"
    -cp "$(cat "$CLASSPATH_FILE")")
}

run_java_class() {
  set_tool_java
  "${TOOL_JAVA[@]}" "$@"
}

# --- Broker process ---------------------------------------------------------

# Prints the PID in the pid file $1 when that process is a broker that this
# script started with the server.properties file $2 (the PID may have been
# reused by another program after a crash).
kafka_pid() {
  local pid_file="$1" properties="$2"
  [[ -f "$pid_file" ]] || return 1

  local pid
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $properties" || return 1
  echo "$pid"
}

broker_pid() {
  kafka_pid "$PID_FILE" "$SERVER_PROPERTIES"
}

bootstrap_address() {
  [[ -s "$BOOTSTRAP_FILE" ]] || return 1
  cat "$BOOTSTRAP_FILE"
}

# Succeeds when a TCP connection to HOST:PORT opens within 2 seconds.
port_answers() {
  local host="${1%:*}" port="${1##*:}"
  timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

# Succeeds when a broker started by this script runs and its listener accepts
# connections.
broker_is_serving() {
  local address
  broker_pid >/dev/null || return 1
  address=$(bootstrap_address) || return 1
  port_answers "$address"
}

# Prints COUNT (default 2) distinct free TCP ports on 127.0.0.1, one per line.
# The ports are released before Kafka binds them, so another process may take
# one in between. Kafka then exits with "Address already in use", and start
# retries with new ports.
pick_free_ports() {
  python3 - "${1:-2}" <<'EOF'
import socket
import sys

sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
for s in sockets:
    print(s.getsockname()[1])
    s.close()
EOF
}

write_broker_config() {
  local broker_port="$1" controller_port="$2"

  # `kafka-storage format --standalone` (Kafka 4.1.1) rejects
  # controller.quorum.voters, so the quorum is given as
  # controller.quorum.bootstrap.servers.
  cat >"$SERVER_PROPERTIES" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$broker_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA_DIR/kraft-logs

num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# With one broker, every internal topic must have replication factor 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF

  write_broker_log4j_config "$BROKER_LOG4J_CONFIG"
}

# Writes the log4j2 configuration of a broker JVM to FILE.
write_broker_log4j_config() {
  # The broker logs to stdout, which start redirects to broker.log. This keeps
  # one writer for the file, so JVM warnings and log lines stay in order.
  # shutdownHook = disable keeps log4j2 from stopping its loggers in its own
  # JVM shutdown hook while Kafka's shutdown hook still logs. Without it the
  # last shutdown lines are lost.
  cat >"$1" <<'EOF'
status = warn
shutdownHook = disable
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
EOF
}

# Succeeds when the broker at ADDRESS returns metadata that lists broker 1.
# BrokerApiVersionsCommand first sends a Metadata request through the Admin
# client, then prints "ADDRESS (id: 1 rack: ...) -> (...)" for each broker that
# the metadata lists. An open port alone is not enough, because the broker
# enables request processing only after the controller has unfenced it
# ("Enabling request processing" in broker.log).
broker_serves_metadata() {
  metadata_lists "$1" "$2" "$1 (id: 1 "
}

# Succeeds when BrokerApiVersionsCommand, bootstrapped from BOOTSTRAP and
# stopped after PROBE_TIMEOUT seconds, prints every ENTRY, such as
# "127.0.0.1:PORT (id: 2 ". The metadata lists only brokers that the
# controller has unfenced.
metadata_lists() {
  local bootstrap="$1" probe_timeout="$2" output entry
  shift 2
  set_tool_java
  output=$(timeout "$probe_timeout" "${TOOL_JAVA[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$bootstrap" --command-config "$TOOLS_CLIENT_CONFIG" 2>&1) || return 1
  for entry in "$@"; do
    grep -qF "$entry" <<<"$output" || return 1
  done
}

# Prints the last 50 lines of the broker log to stderr.
show_log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    echo "---- last 50 lines of $LOG_FILE ----" >&2
    tail -n 50 "$LOG_FILE" >&2
    echo "---- end of $LOG_FILE ----" >&2
  fi
}

# --- SASL_SSL listener (start --sasl-ssl) -------------------------------------

SASL_SSL_DIR="$STATE_DIR/sasl-ssl"
SASL_SSL_ENV_FILE="$SASL_SSL_DIR/env"
SASL_SSL_TOOLS_CONFIG="$SASL_SSL_DIR/client.properties"
SASL_USERNAME=rdkafka-test
# Validity of the throwaway certificates, in days. Every fresh start makes
# new ones, so this only has to outlast one broker run.
CERT_DAYS=30

# Succeeds when the broker was started with --sasl-ssl.
sasl_ssl_is_configured() {
  grep -qF KAFKA_SASL_SSL_BOOTSTRAP_SERVERS "$ENV_FILE" 2>/dev/null
}

# Writes NAME.key and a self-signed CA certificate NAME.pem with common
# name CN to the current directory.
new_ca() {
  local name="$1" cn="$2"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name.key" -out "$name.pem" -days "$CERT_DAYS" -subj "/CN=$cn"
}

# Writes to SASL_SSL_DIR a random SCRAM password and keystore password, a
# CA, a broker certificate for 127.0.0.1 and localhost signed by it in a
# PKCS#12 keystore, and a second CA that signed nothing. The files are
# readable by their owner only, and the private keys outside the keystore
# are deleted.
generate_sasl_ssl_material() {
  command -v openssl >/dev/null 2>&1 || install_packages openssl openssl
  rm -rf "$SASL_SSL_DIR"
  mkdir -m 700 "$SASL_SSL_DIR"

  if ! (
    set -e
    umask 077
    cd "$SASL_SSL_DIR"
    # Hex keeps the passwords free of the characters that the --add-scram
    # syntax and JAAS quoting treat specially.
    openssl rand -hex 24 >password
    openssl rand -hex 24 >keystore-password
    new_ca ca "rdkafka-rs test CA"
    new_ca untrusted-ca "rdkafka-rs untrusted test CA"

    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout broker.key -out broker.csr -subj "/CN=localhost"
    printf '%s\n' \
      'basicConstraints = critical, CA:FALSE' \
      'keyUsage = critical, digitalSignature' \
      'extendedKeyUsage = serverAuth' \
      'subjectAltName = IP:127.0.0.1, DNS:localhost' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key \
      -set_serial "0x$(openssl rand -hex 16)" -days "$CERT_DAYS" -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -name broker -in broker.pem -inkey broker.key -certfile ca.pem \
      -out broker.p12 -passout file:keystore-password
    rm -f ca.key untrusted-ca.key broker.key broker.csr broker.ext
  ) >>"$LOG_FILE" 2>&1; then
    show_log_tail
    die "generating the TLS material in $SASL_SSL_DIR with openssl failed (log above)."
  fi
}

# Adds a SASL_SSL listener on PORT to server.properties: TLS with the
# generated keystore, and SCRAM-SHA-512 as the only SASL mechanism.
write_sasl_ssl_config() {
  local port="$1" keystore_password
  keystore_password=$(cat "$SASL_SSL_DIR/keystore-password")

  sed -i -e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$port|" \
    -e "s|^advertised\.listeners=.*|&,SASL_SSL://127.0.0.1:$port|" \
    -e "s|^listener\.security\.protocol\.map=.*|&,SASL_SSL:SASL_SSL|" "$SERVER_PROPERTIES"
  [[ $(grep -c 'SASL_SSL' "$SERVER_PROPERTIES") -eq 3 ]] \
    || die "adding the SASL_SSL listener to $SERVER_PROPERTIES failed: its listener lines have an unexpected form."

  # The file is about to contain the keystore password.
  chmod 600 "$SERVER_PROPERTIES"
  cat >>"$SERVER_PROPERTIES" <<EOF

# SASL_SSL listener: TLS with a throwaway certificate, SCRAM-SHA-512 only.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$SASL_SSL_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$keystore_password
EOF
}

# Writes the configuration of Kafka's tools for the SASL_SSL listener at
# ADDRESS, and the variables that start appends to the env file.
write_sasl_ssl_client_files() {
  local address="$1" password
  password=$(cat "$SASL_SSL_DIR/password")

  (
    umask 077
    cat >"$SASL_SSL_TOOLS_CONFIG" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SASL_USERNAME" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$SASL_SSL_DIR/ca.pem
EOF
    cat "$TOOLS_CLIENT_CONFIG" >>"$SASL_SSL_TOOLS_CONFIG"
  )

  {
    echo "export KAFKA_SASL_SSL_BOOTSTRAP_SERVERS=$address"
    printf 'export KAFKA_SASL_SSL_CA_LOCATION=%q\n' "$SASL_SSL_DIR/ca.pem"
    printf 'export KAFKA_SASL_SSL_UNTRUSTED_CA_LOCATION=%q\n' "$SASL_SSL_DIR/untrusted-ca.pem"
    echo "export KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
    echo "export KAFKA_SASL_USERNAME=$SASL_USERNAME"
    printf 'export KAFKA_SASL_PASSWORD_FILE=%q\n' "$SASL_SSL_DIR/password"
  } >"$SASL_SSL_ENV_FILE"
}

# Prepares a SASL_SSL listener on PORT for the broker that start_fresh_broker
# is about to format and start: the TLS material, the listener's config, the
# client files, and the SCRAM credential, which `StorageTool format` writes
# into the new metadata log (through FORMAT_ARGS). Sets SASL_SSL_ADDRESS.
setup_sasl_ssl() {
  local port="$1" password
  SASL_SSL_ADDRESS="127.0.0.1:$port"
  generate_sasl_ssl_material
  write_sasl_ssl_config "$port"
  write_sasl_ssl_client_files "$SASL_SSL_ADDRESS"

  # NOTE: the password is on the command line of the short-lived format
  # tool, where other local users can read it. It is a throwaway test
  # password, so this is accepted.
  password=$(cat "$SASL_SSL_DIR/password")
  FORMAT_ARGS+=(--add-scram "SCRAM-SHA-512=[name=$SASL_USERNAME,password=$password]")
}

# Waits until the SASL_SSL listener returns metadata to a client that
# authenticates with the generated credential and trusts the generated CA.
# Gives up at DEADLINE (a value of $SECONDS), then stops the broker and exits.
wait_for_sasl_ssl() {
  local deadline="$1" output=""
  set_tool_java
  log "waiting for the SASL_SSL listener on $SASL_SSL_ADDRESS to return metadata to SCRAM user $SASL_USERNAME"
  while true; do
    if output=$(timeout 30 "${TOOL_JAVA[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "$SASL_SSL_ADDRESS" --command-config "$SASL_SSL_TOOLS_CONFIG" 2>&1) \
      && grep -qF "$SASL_SSL_ADDRESS (id: 1 " <<<"$output"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      echo "$output" >&2
      show_log_tail
      stop_broker
      die "timed out waiting for the SASL_SSL listener at $SASL_SSL_ADDRESS to return metadata to SCRAM user $SASL_USERNAME (last probe output and broker log above). The broker was stopped."
    fi
    sleep 1
  done
}

# Sends SIGTERM to the broker, waits up to STOP_TIMEOUT seconds for it to
# exit, then sends SIGKILL. Removes the pid, bootstrap and env files.
stop_broker() {
  local pid
  if pid=$(broker_pid); then
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true

    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
      sleep 0.1
      waited=$((waited + 1))
    done

    if kill -0 "$pid" 2>/dev/null; then
      log "broker (pid $pid) still running after ${STOP_TIMEOUT} s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      waited=0
      while kill -0 "$pid" 2>/dev/null; do
        ((waited < 100)) || die "broker (pid $pid) still running 10 s after SIGKILL."
        sleep 0.1
        waited=$((waited + 1))
      done
    fi
    log "broker stopped"
  fi
  rm -f "$PID_FILE" "$BOOTSTRAP_FILE" "$ENV_FILE"
  rm -rf "$SASL_SSL_DIR"
}

# Holds an exclusive lock on the state directory for the rest of the script,
# so that two concurrent `start` or `stop` calls do not race.
take_lock() {
  ((LOCK_HELD == 0)) || return 0
  LOCK_HELD=1
  mkdir -p "$STATE_DIR"
  exec 9>"$LOCK_FILE"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
}

start() {
  take_lock

  if broker_is_serving && { ((!WANT_SASL_SSL)) || sasl_ssl_is_configured; }; then
    log "broker already running (pid $(broker_pid))"
    bootstrap_address
    return 0
  fi
  if broker_is_serving; then
    log "broker (pid $(broker_pid)) runs without a SASL_SSL listener, restarting it with one"
  elif broker_pid >/dev/null; then
    log "broker process (pid $(broker_pid)) runs but its listener does not answer, restarting it"
  fi
  stop_broker

  fetch
  require_java
  command -v python3 >/dev/null 2>&1 || die "'python3' not found on PATH. It is needed to pick free ports. Install python3 and retry."
  write_tools_config

  local attempt max_attempts=3
  for ((attempt = 1; attempt <= max_attempts; attempt++)); do
    BROKER_STARTED=0
    start_fresh_broker
    if ((BROKER_STARTED)); then
      return 0
    fi
    log "a picked port was taken before the broker bound it, retrying with new ports (attempt $attempt of $max_attempts failed)"
  done
  die "the broker failed to bind its ports in $max_attempts attempts (last log in $LOG_FILE)."
}

# Starts a broker JVM in the background and sets LAUNCHER_PID to the PID of
# its launcher. Arguments: the pid file, the log file, server.properties, the
# log4j2 configuration and the heap options.
launch_kafka() {
  local pid_file="$1" log_file="$2" properties="$3" log4j_config="$4" heap_opts="$5"

  # setsid puts the broker in its own session so that Ctrl-C in the calling
  # terminal does not reach it. With --wait, setsid lives as long as the
  # broker even when it has to fork, which the callers' launcher checks rely
  # on. The inner bash writes its own PID and then execs java, so the pid
  # file contains the JVM's PID. 9>&- keeps the broker from inheriting the
  # state lock.
  local -a java_opts
  read -r -a java_opts <<<"$heap_opts"
  local -a detach=()
  if command -v setsid >/dev/null 2>&1; then
    detach=(setsid --wait)
  fi
  # shellcheck disable=SC2016 # $$ and $@ must expand in the inner bash.
  "${detach[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pid_file" \
    java "${java_opts[@]}" -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$log4j_config" \
    -cp "$(cat "$CLASSPATH_FILE")" kafka.Kafka "$properties" \
    </dev/null >>"$log_file" 2>&1 9>&- &
  LAUNCHER_PID=$!
}

# Starts a broker on fresh storage and new ports, waits until it serves
# metadata and prints its address. Sets BROKER_STARTED=1 on success. Returns
# with BROKER_STARTED=0 when the broker exited because a port was taken, and
# exits the script on every other failure. The caller retries with new ports.
start_fresh_broker() {
  # Every fresh start formats new storage, so no topic or offset survives.
  rm -rf "$DATA_DIR"
  mkdir -p "$DATA_DIR"
  if [[ -f "$LOG_FILE" ]]; then
    mv -f "$LOG_FILE" "$LOG_FILE.previous"
  fi

  local ports broker_port controller_port address
  ports=$(pick_free_ports 3)
  broker_port=$(sed -n 1p <<<"$ports")
  controller_port=$(sed -n 2p <<<"$ports")
  address="127.0.0.1:$broker_port"
  write_broker_config "$broker_port" "$controller_port"

  # Extra arguments of `StorageTool format`.
  FORMAT_ARGS=()
  if ((WANT_SASL_SSL)); then
    setup_sasl_ssl "$(sed -n 3p <<<"$ports")"
  fi

  local cluster_id
  cluster_id=$(run_java_class kafka.tools.StorageTool random-uuid 2>>"$LOG_FILE") \
    || { show_log_tail; die "generating a cluster id with 'kafka.tools.StorageTool random-uuid' failed (log above)."; }
  # --standalone writes a bootstrap checkpoint that makes this node the only
  # voter of a dynamic KRaft quorum.
  if ! run_java_class kafka.tools.StorageTool format --config "$SERVER_PROPERTIES" \
    --cluster-id "$cluster_id" --standalone "${FORMAT_ARGS[@]}" >>"$LOG_FILE" 2>&1; then
    show_log_tail
    die "formatting the KRaft storage in $DATA_DIR/kraft-logs failed (log above)."
  fi

  log "starting broker on $address (cluster id $cluster_id, log $LOG_FILE)"
  launch_kafka "$PID_FILE" "$LOG_FILE" "$SERVER_PROPERTIES" "$BROKER_LOG4J_CONFIG" "$HEAP_OPTS"
  local launcher_pid=$LAUNCHER_PID

  log "waiting up to ${START_TIMEOUT} s for the broker to serve metadata on $address"
  local deadline=$((SECONDS + START_TIMEOUT)) remaining probe_timeout
  while true; do
    # The launcher exits early only if it failed before writing the pid file.
    if [[ ! -s "$PID_FILE" ]] && ! kill -0 "$launcher_pid" 2>/dev/null; then
      show_log_tail
      die "launching the broker failed before it wrote $PID_FILE (log above)."
    fi
    if [[ -s "$PID_FILE" ]] && ! broker_pid >/dev/null; then
      rm -f "$PID_FILE"
      # Another process took a port from pick_free_ports before Kafka bound it,
      # so the caller retries with new ports.
      if grep -qF "Address already in use" "$LOG_FILE"; then
        return 0
      fi
      show_log_tail
      die "the broker process exited during startup (log above, full log in $LOG_FILE)."
    fi
    # Each probe gets at most 30 s and at least 5 s, so the wait ends at most
    # 5 s after the deadline.
    remaining=$((deadline - SECONDS))
    probe_timeout=$((remaining < 30 ? remaining : 30))
    probe_timeout=$((probe_timeout < 5 ? 5 : probe_timeout))
    if port_answers "$address" && broker_serves_metadata "$address" "$probe_timeout"; then
      break
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail
      stop_broker
      die "timed out after ${START_TIMEOUT} s waiting for the broker at $address to return metadata listing broker 1 (BrokerApiVersionsCommand). The broker was stopped. Full log: $LOG_FILE. Set KAFKA_START_TIMEOUT to wait longer."
    fi
    sleep 1
  done

  if ((WANT_SASL_SSL)); then
    wait_for_sasl_ssl "$deadline"
  fi

  echo "$address" >"$BOOTSTRAP_FILE"
  echo "export KAFKA_BOOTSTRAP_SERVERS=$address" >"$ENV_FILE"
  if ((WANT_SASL_SSL)); then
    cat "$SASL_SSL_ENV_FILE" >>"$ENV_FILE"
  fi
  log "broker ready on $address (pid $(broker_pid), about ${SECONDS} s after this command started)"
  echo "$address"
  BROKER_STARTED=1
}

# The start command: parses --nodes N and starts a single broker or a cluster.
start_command() {
  local count=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --nodes)
        [[ $# -ge 2 ]] || die "'start --nodes' needs a node count."
        count="$2"
        shift
        ;;
      --nodes=*) count="${1#--nodes=}" ;;
      --sasl-ssl) WANT_SASL_SSL=1 ;;
      *) die "invalid argument for 'start': '$1'. Expected nothing, '--nodes N' or '--sasl-ssl'." ;;
    esac
    shift
  done
  count="${count:-$NODE_COUNT}"
  check_node_count "$count"
  if ((count > 1 && WANT_SASL_SSL)); then
    die "'start --sasl-ssl' works with a single broker only, not with --nodes $count."
  fi

  take_lock
  if ((count > 1)); then
    start_cluster "$count"
    return 0
  fi
  if ((NODE_COUNT > 1)); then
    log "replacing the cluster of $NODE_COUNT nodes in $STATE_DIR with a single broker"
    stop_all_nodes TERM
    rm -rf "$STATE_DIR"/node-*
    rm -f "$NODES_FILE"
    NODE_COUNT=1
  fi
  start
}

stop() {
  take_lock
  if ! broker_pid >/dev/null; then
    log "no broker running"
  fi
  stop_broker
}

status() {
  local pid address
  if ! pid=$(broker_pid); then
    echo "not running"
    return 1
  fi

  address=$(bootstrap_address || echo "unknown address")
  if broker_is_serving; then
    echo "running: pid $pid, bootstrap $address"
    return 0
  fi
  echo "not running: broker process $pid exists, but $address does not accept connections (still starting, or hung)"
  return 1
}

address() {
  if broker_is_serving; then
    bootstrap_address
    return 0
  fi
  log "no broker running"
  return 1
}

show_env() {
  if broker_is_serving && [[ -s "$ENV_FILE" ]]; then
    cat "$ENV_FILE"
    return 0
  fi
  log "no broker running"
  return 1
}

show_log() {
  if [[ $# -eq 0 ]]; then
    echo "$LOG_FILE"
    return 0
  fi

  if [[ $# -ne 2 || "$1" != "--tail" || ! "$2" =~ ^[0-9]+$ ]]; then
    die "invalid arguments for 'log': '$*'. Expected no arguments or '--tail N' with N a line count."
  fi
  [[ -f "$LOG_FILE" ]] || die "no broker log yet at $LOG_FILE. Run '$SCRIPT_NAME start' first."
  tail -n "$2" "$LOG_FILE"
}

# shellcheck source-path=SCRIPTDIR source=cluster.sh
. "$SCRIPT_DIR/cluster.sh"

main() {
  local command="${1:-}"
  if [[ $# -gt 0 ]]; then
    shift
  fi
  NODE_COUNT=$(recorded_node_count)

  case "$command" in
    fetch)
      fetch
      log "classpath: $CLASSPATH_FILE"
      ;;
    start)
      start_command "$@"
      ;;
    stop)
      if ((NODE_COUNT > 1)); then
        stop_cluster
      else
        stop
      fi
      ;;
    status)
      if ((NODE_COUNT > 1)); then
        cluster_status
      else
        status
      fi
      ;;
    address)
      if ((NODE_COUNT > 1)); then
        cluster_address
      else
        address
      fi
      ;;
    env)
      if ((NODE_COUNT > 1)); then
        if ! cluster_status >/dev/null || [[ ! -s "$ENV_FILE" ]]; then
          log "no cluster running"
          exit 1
        fi
        cat "$ENV_FILE"
      else
        show_env
      fi
      ;;
    log)
      if ((NODE_COUNT > 1)); then
        cluster_show_log "$@"
      else
        show_log "$@"
      fi
      ;;
    nodes)
      cluster_nodes "$@"
      ;;
    start-node)
      start_node_command "$@"
      ;;
    stop-node)
      stop_node_command "$@"
      ;;
    run-class)
      [[ $# -ge 1 ]] || die "'run-class' needs a Java class name, for example org.apache.kafka.tools.TopicCommand."
      fetch
      require_java
      run_java_class "$@"
      ;;
    -h | --help | help)
      usage
      ;;
    "")
      usage >&2
      exit 1
      ;;
    *)
      usage >&2
      die "unknown command '$command'."
      ;;
  esac
}

main "$@"
