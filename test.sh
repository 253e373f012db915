#!/usr/bin/env bash
# Every test: guest logic natively, the emulator, the host, the end-to-end suite that drives
# the real plugin binary against the emulator, and the real cosign (2.x and 3.x) with a real
# OCI registry on loopback, and the aarch64 build under qemu-user. Installs what it needs first
# (tests/tools/setup.sh, tests/tools/cross.sh).
set -euo pipefail
cd "$(dirname "$0")"
tests/tools/setup.sh
args=("$@")
# The aarch64 binary (a cross build) and its tests under qemu-user. For everyday work they may
# be left out with ALIBABAKMS_SKIP_CROSS=1; CI never does.
if [ "${ALIBABAKMS_SKIP_CROSS:-}" = 1 ]; then
  echo "test.sh: ALIBABAKMS_SKIP_CROSS=1: the aarch64 tests (every test named *aarch64*) are left out" >&2
  if printf '%s\n' "${args[@]}" | grep -qx -- --; then args+=(--skip aarch64); else args+=(-- --skip aarch64); fi
else
  tests/tools/cross.sh
fi
exec cargo test --workspace --locked --no-fail-fast "${args[@]}"
