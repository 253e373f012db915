#!/usr/bin/env bash
# What ./test.sh and ./demo.sh need before they build, checked in a second and installed where
# it can be: the wasm32-wasip2 target of the pinned toolchain, OpenSSL's command line (the
# tests' independent verifier), and the real cosign 2.x and 3.x plus docker-registry
# (tests/tools/fetch.sh), and jco with preview2-shim from the npm registry (the component's
# second runtime, host/node). Anything it cannot install is named with the one command to run.
#
#   tests/tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "setup: $*" >&2
  exit 1
}

command -v cargo >/dev/null ||
  fail "cargo is not installed: install Rust with rustup (https://rustup.rs), then run this again"
# The toolchain of rust-toolchain.toml, with the component's target. rustup installs a
# missing toolchain with its targets, but not a target missing from an installed toolchain.
if ! rustc --print sysroot >/dev/null 2>&1; then
  fail "the toolchain in rust-toolchain.toml is not usable: run 'rustup toolchain install'"
fi
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; then
  command -v rustup >/dev/null ||
    fail "the wasm32-wasip2 target is missing and rustup is not here to add it: install it for $(rustc --version)"
  echo "setup: adding the wasm32-wasip2 target (the component is built for it)" >&2
  rustup target add wasm32-wasip2 >&2 ||
    fail "could not add the target: run 'rustup target add wasm32-wasip2'"
fi
if ! command -v openssl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing openssl (the tests' independent verifier)" >&2
    (apt-get update -qq && apt-get install -y -qq openssl) >/dev/null
  else
    fail "openssl is not installed: run 'sudo apt-get install openssl'"
  fi
fi

# The component's second runtime: Node.js with jco and preview2-shim, as host/node's lock pins
# them, installed into target/tools/node (tests/e2e/node.rs runs host/node/run.mjs with them).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  fail "Node.js and npm are not installed (the component's second runtime): run 'sudo apt-get install nodejs npm'"
fi
node_dir=target/tools/node
if ! cmp -s host/node/package-lock.json "$node_dir/.installed-lock"; then
  echo "setup: installing jco and preview2-shim (host/node/package-lock.json) into $node_dir" >&2
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp host/node/package.json host/node/package-lock.json "$node_dir/"
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >&2 ||
    fail "npm ci failed in $node_dir (it needs the npm registry)"
  cp host/node/package-lock.json "$node_dir/.installed-lock"
fi

# The real cosign (both lines) and a real registry. COSIGN=/path (checked here) takes the
# place of the fetched cosign of its own line; the other line still runs with Debian's.
if [ -n "${COSIGN:-}" ] && [ ! -x "$COSIGN" ]; then
  fail "COSIGN=$COSIGN is not an executable file"
fi
tests/tools/fetch.sh
