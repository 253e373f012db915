#!/usr/bin/env bash
# Every test: guest logic natively, the emulator, the host, the end-to-end suite that drives
# the real plugin binary against the emulator, and the real cosign (2.x and 3.x) with a real
# OCI registry on loopback. Installs what it needs first (tests/tools/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"
tests/tools/setup.sh
exec cargo test --workspace --locked --no-fail-fast "$@"
