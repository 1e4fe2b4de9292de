#!/usr/bin/env bash
# Regenerates ll/src/bindings.rs with bindgen from the headers of the
# bundled librdkafka. Needs libclang (Debian: apt-get install libclang-dev).
set -euo pipefail
crate_dir=$(cd "$(dirname "$0")" && pwd)
RDKAFKA_LL_WRITE_BINDINGS="$crate_dir/src/bindings.rs" \
    cargo build --manifest-path "$crate_dir/Cargo.toml" --features bindgen
echo "wrote $crate_dir/src/bindings.rs"
