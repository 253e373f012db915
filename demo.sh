#!/usr/bin/env bash
# Quick start: the real cosign (3.x, from Debian, fetched as the tests fetch it) with this
# plugin against the built-in KMS emulator. Creates a key, signs a file, and verifies it twice:
# through KMS and offline with the exported public key. No cloud account needed.
set -euo pipefail
cd "$(dirname "$0")"
tests/tools/setup.sh
cargo build --locked -q -p sigstore-kms-alibabakms -p alibabakms-emulator
target="${CARGO_TARGET_DIR:-target}"
cosign_bin="$(cd "$target/tools/bin" && pwd)/cosign-3"
cosign() { "$cosign_bin" "$@"; }

work="$(mktemp -d)"
emulator_pid=
cleanup() {
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The emulator prints `endpoint=HOST:PORT` once it accepts connections.
mkfifo "$work/ready"
"$target/debug/kms-emulator" --quiet --ca-out "$work/ca.pem" >"$work/ready" 2>/dev/null &
emulator_pid=$!
read -r line <"$work/ready"
endpoint="${line#endpoint=}"

# cosign finds the plugin as `sigstore-kms-alibabakms` on PATH.
mkdir "$work/bin" "$work/home"
ln -s "$(pwd)/$target/debug/sigstore-kms-alibabakms" "$work/bin/"
export PATH="$work/bin:$PATH" HOME="$work/home" TUF_ROOT="$work/home/tuf"
# The emulator's AccessKey, its CA, and its address allowed besides *.aliyuncs.com.
export ALIBABA_CLOUD_ACCESS_KEY_ID=refkms-ak ALIBABA_CLOUD_ACCESS_KEY_SECRET=refkms-secret
export SSL_CERT_FILE="$work/ca.pem" SIGSTORE_ALIBABAKMS_ALLOWED_HOSTS="$endpoint"
export ALIBABA_CLOUD_ECS_METADATA_DISABLED=true

KEY="alibabakms://$endpoint//alias/cosign-demo"
cd "$work"
echo "release artifact" >release.tar.gz
show() {
  echo "\$ $*"
  "$@" 2>&1 | grep -v -e '^WARNING' -e 'has been deprecated'
}
show cosign generate-key-pair --kms "$KEY"
cat cosign.pub
# A private flow: no public signing config, nothing uploaded to Rekor or a TSA.
show cosign sign-blob --key "$KEY" --use-signing-config=false --tlog-upload=false \
  --bundle release.sigstore.json --yes release.tar.gz
echo "signature: $(sed -n 's/.*"signature": *"\([^"]*\)".*/\1/p' release.sigstore.json | head -n 1)"
show cosign verify-blob --key "$KEY" --bundle release.sigstore.json --insecure-ignore-tlog \
  release.tar.gz
show cosign verify-blob --key cosign.pub --bundle release.sigstore.json --insecure-ignore-tlog \
  release.tar.gz
