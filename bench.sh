#!/usr/bin/env bash
# The performance benchmark: builds the release plugin, the benchmark and the software-only
# SHA-256 baseline, fetches the real cosign (as the tests do), then prints the tables.
# Arguments go to the benchmark (e.g. ./bench.sh --runs 30 --big-mib 256). Not part of
# ./test.sh: timing is not a test.
set -euo pipefail
cd "$(dirname "$0")"
tests/tools/setup.sh
target="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release -q -p sigstore-kms-alibabakms -p alibabakms-bench
cargo build --locked --release -q --manifest-path tests/bench/sha256-soft/Cargo.toml \
    --target-dir "$target/sha256-soft"
exec "$target/release/bench" --bin "$target/release/sigstore-kms-alibabakms" \
    --soft-sha "$target/sha256-soft/release/sha256-soft" "$@"
