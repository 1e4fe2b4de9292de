#!/usr/bin/env bash
# Model-checks the pairing core (hl/src/model_check.rs) with loom: builds
# rdkafka-hl's unit tests with `--cfg loom`, in release mode with overflow
# checks and debug assertions on, in target/loom, and runs the models.
# LOOM_MAX_PREEMPTIONS bounds the preemptions per interleaving (default 3);
# extra arguments go to the test harness.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

export RUSTFLAGS="--cfg loom"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"

cargo test -p rdkafka-hl --lib --release --target-dir target/loom -- model_check:: "$@"
