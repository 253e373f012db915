#!/usr/bin/env bash
# Every test: guest logic natively, the emulator, the host, and the end-to-end suite that
# drives the real plugin binary against the emulator.
set -euo pipefail
cd "$(dirname "$0")"
exec cargo test --workspace --locked --no-fail-fast "$@"
