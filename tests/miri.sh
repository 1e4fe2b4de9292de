#!/usr/bin/env bash
# Runs rdkafka-hl's unit tests of the code without FFI under Miri, which
# reports undefined behaviour and data races: the pairing core (pending,
# completion, deliveries and their storage), timeout conversion, payloads,
# records and serializers. Miri cannot call librdkafka, so the other
# modules' tests are left out by name. Tests in these modules that call
# librdkafka are marked `#[cfg_attr(miri, ignore)]` or skipped by name
# below. Builds in target/miri.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
# Builds Miri's standard library once per toolchain, in ~/.cache/miri.
cargo +nightly miri setup

# parking_lot_core casts integers to pointers, which Miri warns about
# unless provenance checks are permissive.
export MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-permissive-provenance"

modules=(pending:: completion:: deliveries:: error:: payload:: record:: segments:: serialize:: table_registry:: topic_names::)
# A failed delivery's error reads librdkafka's table of error names.
skipped=(--skip deliveries::tests::failure_hands_owned_value_back)
cargo +nightly miri test -p rdkafka-hl --lib -- "${modules[@]}" "${skipped[@]}" "$@"
