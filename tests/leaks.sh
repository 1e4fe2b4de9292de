#!/usr/bin/env bash
# Runs the client lifecycle example (producer, consumer, admin client and
# mock cluster, created, used and closed several times) under valgrind and
# fails on memory that is definitely or indirectly lost, or on invalid
# memory accesses.
#
# "Possibly lost" and "still reachable" blocks are not failures: they are
# process-lifetime statics, such as the table of librdkafka's error codes
# that rdkafka-hl reads once and the main thread's handle.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if ! command -v valgrind >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
    else
        echo "valgrind is missing; install it (Debian: apt-get install valgrind)" >&2
        exit 1
    fi
fi

cargo build --example lifecycle
valgrind --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=3 \
    --num-callers=30 target/debug/examples/lifecycle "${1:-3}"
