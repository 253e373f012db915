#!/usr/bin/env bash
# Quick start: build the plugin, start the built-in KMS emulator, create a key through the
# plugin, sign a file, verify it. No cloud account needed.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --locked -q -p sigstore-kms-alibabakms -p alibabakms-emulator
exec target/debug/kms-demo target/debug/sigstore-kms-alibabakms
