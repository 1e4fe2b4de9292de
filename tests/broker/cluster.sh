# shellcheck shell=bash
# The cluster mode of kafka.sh: N nodes on 127.0.0.1, each a KRaft broker and
# controller in one JVM, with a static quorum of all N controllers. kafka.sh
# sources this file and defines the helpers and variables it uses.
#
# Node ID keeps its files in $STATE_DIR/node-ID: server.properties,
# log4j2.properties, kraft-logs/ (the data), kafka.pid, broker.log and
# address (127.0.0.1:PORT). A node keeps its ports and data across
# stop-node and start-node, so clients can reconnect to the same addresses.

# Per node ID, for the nodes being started: the PID of the launcher, and the
# size of the node's log before the launch, so that only the new part of the
# log is searched for a port conflict.
declare -A LAUNCHERS=()
declare -A LOG_OFFSETS=()
# Set by wait_for_nodes when a node exited because its port was taken.
NODES_PORT_TAKEN=0

# Prints the node count of the last start in the state directory: 1 when it
# contains a single broker or nothing.
recorded_node_count() {
  local count=1
  if [[ -s "$NODES_FILE" ]]; then
    count=$(cat "$NODES_FILE")
  fi
  if ! [[ "$count" =~ ^[0-9]+$ ]]; then
    die "invalid node count '$count' in $NODES_FILE. Run '$SCRIPT_NAME stop', delete that file and start again."
  fi
  echo "$count"
}

# Exits unless the node count is 1 or from MIN_CLUSTER_NODES to MAX_CLUSTER_NODES.
check_node_count() {
  local count="$1"
  if ! [[ "$count" =~ ^[0-9]+$ ]] \
    || { ((count != 1)) && ((count < MIN_CLUSTER_NODES || count > MAX_CLUSTER_NODES)); }; then
    die "invalid node count '$count': expected 1 (a single broker) or $MIN_CLUSTER_NODES to $MAX_CLUSTER_NODES (a cluster)."
  fi
}

node_dir() {
  echo "$STATE_DIR/node-$1"
}

node_properties() {
  echo "$(node_dir "$1")/server.properties"
}

node_pid_file() {
  echo "$(node_dir "$1")/kafka.pid"
}

node_log() {
  echo "$(node_dir "$1")/broker.log"
}

node_address() {
  local file
  file="$(node_dir "$1")/address"
  [[ -s "$file" ]] || die "node $1 has no address file at $file. Run '$SCRIPT_NAME start --nodes N' first."
  cat "$file"
}

node_pid() {
  kafka_pid "$(node_pid_file "$1")" "$(node_properties "$1")"
}

# Succeeds when node ID runs and its listener accepts connections.
node_is_serving() {
  node_pid "$1" >/dev/null || return 1
  port_answers "$(node_address "$1")"
}

# Prints the node IDs of the cluster, one per line.
cluster_ids() {
  seq 1 "$NODE_COUNT"
}

# Prints the bootstrap address of the cluster: every node's address, comma-separated.
cluster_bootstrap() {
  local id addresses=()
  for id in $(cluster_ids); do
    addresses+=("$(node_address "$id")")
  done
  local IFS=,
  echo "${addresses[*]}"
}

stop_all_nodes() {
  local -a ids
  mapfile -t ids < <(cluster_ids)
  stop_nodes "$1" "${ids[@]}"
}

cluster_is_serving() {
  local id
  for id in $(cluster_ids); do
    node_is_serving "$id" || return 1
  done
}

require_cluster() {
  if ((NODE_COUNT == 1)); then
    die "'$1' needs a cluster, but $STATE_DIR contains no cluster. Run '$SCRIPT_NAME start --nodes N' first, or set KAFKA_STATE_DIR to the cluster's state directory."
  fi
}

# Prints the node IDs that ARGUMENT names: one ID from 1 to the node count,
# or every ID for "all".
parse_node_ids() {
  local argument="$1"
  if [[ "$argument" == all ]]; then
    cluster_ids
    return 0
  fi
  if ! [[ "$argument" =~ ^[0-9]+$ ]] || ((argument < 1 || argument > NODE_COUNT)); then
    die "invalid node '$argument': expected a node ID from 1 to $NODE_COUNT, or 'all'."
  fi
  echo "$argument"
}

show_node_log_tail() {
  local log_file
  log_file=$(node_log "$1")
  if [[ -f "$log_file" ]]; then
    echo "---- last 50 lines of $log_file ----" >&2
    tail -n 50 "$log_file" >&2
    echo "---- end of $log_file ----" >&2
  fi
}

write_node_config() {
  local id="$1" broker_port="$2" controller_port="$3" voters="$4" dir
  dir=$(node_dir "$id")

  cat >"$(node_properties "$id")" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$broker_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$broker_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/kraft-logs

num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# Every partition survives the loss of one node without losing an
# acknowledged write: acks=all needs 2 in-sync replicas of 3, and a replica
# outside the in-sync set never becomes leader.
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2

# The default of 50 partitions for each internal topic means 150 replicas per
# topic for three nodes to create and to load after every restart.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
EOF

  write_broker_log4j_config "$dir/log4j2.properties"
}

# Starts node ID's JVM in the background on its existing configuration and
# data, appending to its log.
launch_node() {
  local id="$1" dir log_file
  dir=$(node_dir "$id")
  log_file=$(node_log "$id")
  rm -f "$(node_pid_file "$id")"

  LOG_OFFSETS[$id]=$(stat -c %s "$log_file" 2>/dev/null || echo 0)
  log "starting node $id on $(node_address "$id") (log $log_file)"
  launch_kafka "$(node_pid_file "$id")" "$log_file" "$(node_properties "$id")" \
    "$dir/log4j2.properties" "$NODE_HEAP_OPTS"
  LAUNCHERS[$id]=$LAUNCHER_PID
}

# Waits until each node in IDS serves metadata that lists that node, up to
# START_TIMEOUT seconds. Sets NODES_PORT_TAKEN=1 and returns when a node
# exited because another process had taken one of its ports. Exits the
# script on every other failure, after stopping the nodes that are not ready.
wait_for_nodes() {
  local -a waiting=("$@")
  local deadline=$((SECONDS + START_TIMEOUT)) id pid_file address remaining probe_timeout
  NODES_PORT_TAKEN=0

  log "waiting up to ${START_TIMEOUT} s for node(s) ${waiting[*]} to serve metadata"
  while ((${#waiting[@]} > 0)); do
    local -a still_waiting=()
    for id in "${waiting[@]}"; do
      pid_file=$(node_pid_file "$id")
      # The launcher exits early only if it failed before writing the pid file.
      if [[ ! -s "$pid_file" ]] && ! kill -0 "${LAUNCHERS[$id]}" 2>/dev/null; then
        show_node_log_tail "$id"
        stop_nodes TERM "${waiting[@]}"
        die "launching node $id failed before it wrote $pid_file (log above)."
      fi
      if [[ -s "$pid_file" ]] && ! node_pid "$id" >/dev/null; then
        rm -f "$pid_file"
        if tail -c +"$((LOG_OFFSETS[$id] + 1))" "$(node_log "$id")" | grep -qF "Address already in use"; then
          log "node $id exited because a port of $(node_address "$id") or its controller port was taken"
          stop_nodes TERM "${waiting[@]}"
          NODES_PORT_TAKEN=1
          return 0
        fi
        show_node_log_tail "$id"
        stop_nodes TERM "${waiting[@]}"
        die "node $id exited during startup (log above, full log in $(node_log "$id"))."
      fi

      # Each probe gets at most 30 s and at least 5 s, so the wait ends at
      # most 5 s per node after the deadline.
      remaining=$((deadline - SECONDS))
      probe_timeout=$((remaining < 30 ? remaining : 30))
      probe_timeout=$((probe_timeout < 5 ? 5 : probe_timeout))
      address=$(node_address "$id")
      if port_answers "$address" && metadata_lists "$address" "$probe_timeout" "$address (id: $id "; then
        log "node $id serves metadata on $address (pid $(node_pid "$id"))"
      else
        still_waiting+=("$id")
      fi
    done
    waiting=("${still_waiting[@]}")

    if ((${#waiting[@]} > 0)); then
      if ((SECONDS >= deadline)); then
        for id in "${waiting[@]}"; do
          show_node_log_tail "$id"
        done
        stop_nodes TERM "${waiting[@]}"
        die "timed out after ${START_TIMEOUT} s waiting for node(s) ${waiting[*]} to return metadata that lists them (BrokerApiVersionsCommand). Those nodes were stopped. Logs: $STATE_DIR/node-ID/broker.log. Set KAFKA_START_TIMEOUT to wait longer."
      fi
      sleep 1
    fi
  done
}

# Sends SIGNAL (TERM or KILL) to every running node in IDS at once, waits up
# to STOP_TIMEOUT seconds for them to exit, then sends SIGKILL to the rest.
# Removes their pid files.
stop_nodes() {
  local signal="$1" id pid
  shift
  local -A pids=()
  local -a stopping=()
  for id in "$@"; do
    if pid=$(node_pid "$id"); then
      log "stopping node $id (pid $pid, SIG$signal)"
      kill "-$signal" "$pid" 2>/dev/null || true
      pids[$id]=$pid
      stopping+=("$id")
    fi
  done

  local waited=0 running
  while true; do
    running=()
    for id in "${stopping[@]}"; do
      if kill -0 "${pids[$id]}" 2>/dev/null; then
        running+=("$id")
      fi
    done
    ((${#running[@]} > 0)) || break

    if ((waited == STOP_TIMEOUT * 10)); then
      for id in "${running[@]}"; do
        log "node $id (pid ${pids[$id]}) still running after ${STOP_TIMEOUT} s, sending SIGKILL"
        kill -KILL "${pids[$id]}" 2>/dev/null || true
      done
    fi
    if ((waited >= (STOP_TIMEOUT + 10) * 10)); then
      die "node(s) ${running[*]} still running 10 s after SIGKILL."
    fi
    sleep 0.1
    waited=$((waited + 1))
  done

  for id in "$@"; do
    rm -f "$(node_pid_file "$id")"
  done
  if ((${#stopping[@]} > 0)); then
    log "node(s) ${stopping[*]} stopped"
  fi
}

# Starts a cluster of COUNT nodes, or reuses the one that runs in the state
# directory, and prints its bootstrap address. The caller holds the lock.
start_cluster() {
  local count="$1"
  if ((NODE_COUNT == count)) && cluster_is_serving; then
    log "cluster of $count nodes already running"
    cluster_bootstrap
    return 0
  fi

  if broker_pid >/dev/null; then
    log "replacing the single broker in $STATE_DIR with a cluster of $count nodes"
  fi
  stop_broker
  rm -rf "$DATA_DIR"
  if ((NODE_COUNT > 1)); then
    log "stopping the cluster in $STATE_DIR, because not all of its nodes run, and starting a fresh one"
    stop_all_nodes TERM
  fi

  fetch
  require_java
  command -v python3 >/dev/null 2>&1 || die "'python3' not found on PATH. It is needed to pick free ports. Install python3 and retry."
  write_tools_config

  local attempt max_attempts=3
  for ((attempt = 1; attempt <= max_attempts; attempt++)); do
    CLUSTER_STARTED=0
    start_fresh_cluster "$count"
    if ((CLUSTER_STARTED)); then
      return 0
    fi
    log "a picked port was taken before a node bound it, retrying with new ports (attempt $attempt of $max_attempts failed)"
  done
  die "the cluster failed to bind its ports in $max_attempts attempts (logs in $STATE_DIR/node-ID/broker.log)."
}

# Deletes the data of every node directory in the state directory, and keeps
# each node's last log as broker.log.previous.
clear_node_dirs() {
  local dir
  for dir in "$STATE_DIR"/node-*; do
    [[ -d "$dir" ]] || continue
    if [[ -f "$dir/broker.log" ]]; then
      mv -f "$dir/broker.log" "$dir/broker.log.previous"
    fi
    find "$dir" -mindepth 1 -maxdepth 1 ! -name broker.log.previous -exec rm -rf {} +
  done
}

# Starts COUNT nodes on fresh storage and new ports, waits until each serves
# metadata and prints the bootstrap address. Sets CLUSTER_STARTED=1 on
# success. Returns with CLUSTER_STARTED=0 when a node exited because a port
# was taken, and exits the script on every other failure.
start_fresh_cluster() {
  local count="$1" id
  rm -f "$NODES_FILE" "$BOOTSTRAP_FILE" "$ENV_FILE"
  clear_node_dirs

  local -a ports
  mapfile -t ports < <(pick_free_ports $((2 * count)))
  ((${#ports[@]} == 2 * count)) || die "picking $((2 * count)) free ports with python3 failed."

  # Node ID gets broker port ports[ID-1] and controller port ports[count+ID-1].
  local voters=""
  for ((id = 1; id <= count; id++)); do
    voters+="${voters:+,}$id@127.0.0.1:${ports[count + id - 1]}"
  done
  for ((id = 1; id <= count; id++)); do
    mkdir -p "$(node_dir "$id")"
    write_node_config "$id" "${ports[id - 1]}" "${ports[count + id - 1]}" "$voters"
    echo "127.0.0.1:${ports[id - 1]}" >"$(node_dir "$id")/address"
  done
  echo "$count" >"$NODES_FILE"
  NODE_COUNT=$count

  local cluster_id
  cluster_id=$(run_java_class kafka.tools.StorageTool random-uuid 2>>"$(node_log 1)") \
    || { show_node_log_tail 1; die "generating a cluster id with 'kafka.tools.StorageTool random-uuid' failed (log above)."; }

  # Every node formats its storage with the same cluster id. The quorum is
  # static (controller.quorum.voters), so the format takes no
  # --standalone or --initial-controllers.
  local -A formatters=()
  for ((id = 1; id <= count; id++)); do
    run_java_class kafka.tools.StorageTool format --config "$(node_properties "$id")" \
      --cluster-id "$cluster_id" >>"$(node_log "$id")" 2>&1 &
    formatters[$id]=$!
  done
  for ((id = 1; id <= count; id++)); do
    if ! wait "${formatters[$id]}"; then
      show_node_log_tail "$id"
      die "formatting the KRaft storage of node $id in $(node_dir "$id")/kraft-logs failed (log above)."
    fi
  done

  log "starting a cluster of $count nodes (cluster id $cluster_id)"
  for ((id = 1; id <= count; id++)); do
    launch_node "$id"
  done
  local -a ids
  mapfile -t ids < <(cluster_ids)
  wait_for_nodes "${ids[@]}"
  if ((NODES_PORT_TAKEN)); then
    stop_all_nodes KILL
    return 0
  fi

  local bootstrap
  bootstrap=$(cluster_bootstrap)
  echo "$bootstrap" >"$BOOTSTRAP_FILE"
  {
    echo "export KAFKA_CLUSTER_BOOTSTRAP_SERVERS=$bootstrap"
    echo "export KAFKA_CLUSTER_STATE_DIR=$STATE_DIR"
  } >"$ENV_FILE"
  log "cluster of $count nodes ready on $bootstrap (about ${SECONDS} s after this command started)"
  echo "$bootstrap"
  CLUSTER_STARTED=1
}

# The start-node command: starts each stopped node that ARGUMENT names, on its
# data and ports, and waits until each serves metadata.
start_node_command() {
  [[ $# -eq 1 ]] || die "invalid arguments for 'start-node': '$*'. Expected a node ID or 'all'."
  require_cluster start-node
  take_lock

  local id
  local -a ids to_start=()
  mapfile -t ids < <(parse_node_ids "$1")
  ((${#ids[@]} > 0)) || exit 1
  for id in "${ids[@]}"; do
    if node_is_serving "$id"; then
      log "node $id already running (pid $(node_pid "$id"))"
      continue
    fi
    if node_pid "$id" >/dev/null; then
      log "node $id (pid $(node_pid "$id")) runs but its listener does not answer, restarting it"
      stop_nodes TERM "$id"
    fi
    to_start+=("$id")
  done
  ((${#to_start[@]} > 0)) || return 0

  fetch
  require_java
  write_tools_config
  for id in "${to_start[@]}"; do
    echo "---- $SCRIPT_NAME start-node $id at $(date -u +%Y-%m-%dT%H:%M:%SZ) ----" >>"$(node_log "$id")"
    launch_node "$id"
  done
  wait_for_nodes "${to_start[@]}"
  if ((NODES_PORT_TAKEN)); then
    die "a node could not bind its ports, because another process took one while the node was stopped (log in $STATE_DIR/node-ID/broker.log). Run '$SCRIPT_NAME stop' and '$SCRIPT_NAME start' for a cluster on new ports."
  fi
  log "node(s) ${to_start[*]} running"
}

# The stop-node command: stops the nodes that ID|all names, with SIGTERM or,
# with --kill, SIGKILL.
stop_node_command() {
  local signal=TERM argument=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --kill) signal=KILL ;;
      *)
        [[ -z "$argument" ]] || die "invalid arguments for 'stop-node': expected one node ID or 'all', and optionally --kill."
        argument="$1"
        ;;
    esac
    shift
  done
  [[ -n "$argument" ]] || die "'stop-node' needs a node ID or 'all', for example 'stop-node 2 --kill'."
  require_cluster stop-node
  take_lock

  local -a ids
  mapfile -t ids < <(parse_node_ids "$argument")
  ((${#ids[@]} > 0)) || exit 1
  local id stopped=0
  for id in "${ids[@]}"; do
    if node_pid "$id" >/dev/null; then
      stopped=1
    else
      log "node $id is not running"
    fi
  done
  if ((stopped)); then
    stop_nodes "$signal" "${ids[@]}"
  fi
}

stop_cluster() {
  take_lock
  stop_all_nodes TERM
  rm -f "$BOOTSTRAP_FILE" "$ENV_FILE"
}

cluster_status() {
  local id pid address serving=0
  for id in $(cluster_ids); do
    address=$(node_address "$id")
    if ! pid=$(node_pid "$id"); then
      echo "node $id: not running ($address)"
    elif port_answers "$address"; then
      echo "node $id: running: pid $pid, $address"
      serving=$((serving + 1))
    else
      echo "node $id: not running: process $pid exists, but $address does not accept connections (still starting, or hung)"
    fi
  done
  echo "$serving of $NODE_COUNT nodes running, bootstrap $(cluster_bootstrap)"
  ((serving == NODE_COUNT))
}

cluster_address() {
  local id
  for id in $(cluster_ids); do
    if node_is_serving "$id"; then
      cluster_bootstrap
      return 0
    fi
  done
  log "no cluster node running"
  return 1
}

cluster_nodes() {
  [[ $# -eq 0 ]] || die "'nodes' takes no arguments, got '$*'."
  require_cluster nodes
  local id state
  for id in $(cluster_ids); do
    state=stopped
    if node_is_serving "$id"; then
      state=running
    fi
    echo "$id $(node_address "$id") $state"
  done
}

cluster_show_log() {
  local node="" lines=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --node)
        [[ $# -ge 2 ]] || die "'log --node' needs a node ID."
        node="$2"
        shift
        ;;
      --tail)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "'log --tail' needs a line count."
        lines="$2"
        shift
        ;;
      *) die "invalid arguments for 'log': '$*'. Expected '--node ID' and '--tail N', both optional." ;;
    esac
    shift
  done

  local -a ids
  if [[ -n "$node" ]]; then
    mapfile -t ids < <(parse_node_ids "$node")
    ((${#ids[@]} > 0)) || exit 1
  else
    mapfile -t ids < <(cluster_ids)
  fi

  local id log_file
  for id in "${ids[@]}"; do
    log_file=$(node_log "$id")
    if [[ -z "$lines" ]]; then
      echo "$log_file"
    elif [[ -f "$log_file" ]]; then
      echo "---- last $lines lines of $log_file (node $id) ----"
      tail -n "$lines" "$log_file"
      echo "---- end of $log_file ----"
    else
      echo "no log yet for node $id at $log_file"
    fi
  done
}
