#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, doctests, the mock-cluster
# tests, the real-broker tests and the failover tests, then the SASL_SSL
# tests in a build with the ssl feature, plus the bindings drift check.
#
# Without KAFKA_BOOTSTRAP_SERVERS in the environment, it starts the test
# broker with its SASL_SSL listener (tests/broker/kafka.sh start --sasl-ssl)
# and stops it at the end, or reuses one the script already runs. With the
# variable, it uses that cluster, and the SASL_SSL tests read the listener
# from the variables that `kafka.sh env` prints. Likewise, without
# KAFKA_CLUSTER_BOOTSTRAP_SERVERS it starts the three-node test cluster in
# target/kafka-cluster for the failover tests, or reuses it. Extra
# arguments go to the first `cargo test`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
broker=tests/broker/kafka.sh
cluster_state_dir="$repo/target/kafka-cluster"
started_broker=false
started_cluster=false

cluster() {
    KAFKA_STATE_DIR="$cluster_state_dir" "$broker" "$@"
}

finish() {
    local status=$?
    if [ "$status" -ne 0 ] && [ "$started_broker" = true ]; then
        echo "--- last 200 lines of the broker log ($("$broker" log)) ---" >&2
        "$broker" log --tail 200 >&2 || true
    fi
    if [ "$status" -ne 0 ] && [ "$started_cluster" = true ]; then
        echo "--- last 200 lines of each cluster node's log ---" >&2
        cluster log --tail 200 >&2 || true
    fi
    if [ "$started_broker" = true ]; then
        "$broker" stop >&2 || true
    fi
    if [ "$started_cluster" = true ]; then
        cluster stop >&2 || true
    fi
    exit "$status"
}
trap finish EXIT

# The cluster starts in the background while the single broker starts, and
# its bootstrap address is read from its state directory afterwards.
cluster_start_pid=""
if [ -z "${KAFKA_CLUSTER_BOOTSTRAP_SERVERS:-}" ]; then
    # A cluster that already runs from the script is reused and left running.
    if ! cluster status >/dev/null 2>&1; then
        echo "starting the test cluster (KAFKA_STATE_DIR=$cluster_state_dir $broker start --nodes 3)" >&2
        started_cluster=true
    fi
    cluster start --nodes 3 >/dev/null &
    cluster_start_pid=$!
fi

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    # A broker that already runs from the script is reused and left running.
    if ! "$broker" status >/dev/null 2>&1; then
        echo "starting the test broker ($broker start --sasl-ssl)" >&2
        started_broker=true
    fi
    "$broker" start --sasl-ssl >/dev/null
    # Exports KAFKA_BOOTSTRAP_SERVERS and the SASL_SSL variables. The
    # assignment makes a failed `env` stop the script, which `eval` alone
    # would not.
    broker_env=$("$broker" env)
    eval "$broker_env"
fi
echo "real-broker tests use KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS" >&2

if [ -n "$cluster_start_pid" ]; then
    wait "$cluster_start_pid"
    KAFKA_CLUSTER_BOOTSTRAP_SERVERS=$(cat "$cluster_state_dir/bootstrap")
    KAFKA_CLUSTER_STATE_DIR=$cluster_state_dir
    export KAFKA_CLUSTER_BOOTSTRAP_SERVERS KAFKA_CLUSTER_STATE_DIR
fi
echo "failover tests use KAFKA_CLUSTER_BOOTSTRAP_SERVERS=$KAFKA_CLUSTER_BOOTSTRAP_SERVERS" >&2

cargo test --workspace "$@"

# The SASL_SSL tests need librdkafka built with OpenSSL (the ssl feature),
# which needs OpenSSL's headers. CI installs them; elsewhere the tests are
# skipped with a notice when pkg-config does not find them.
if [ -n "${CI:-}" ] || pkg-config --exists openssl 2>/dev/null; then
    cargo test -p rdkafka-e2e --features ssl --test security
else
    echo "notice: OpenSSL headers not found; skipped the SASL_SSL tests (apt-get install libssl-dev pkg-config)" >&2
fi

# The drift check regenerates the bindings with bindgen, which needs
# libclang. CI installs it; elsewhere the check is skipped with a notice.
if [ -n "${CI:-}" ] || ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
    cargo test -p rdkafka-ll --features bindgen --lib drift
else
    echo "notice: libclang not found; skipped the bindings drift check (apt-get install libclang-dev)" >&2
fi
