#!/usr/bin/env bash
# Release files, for each target this machine builds: x86_64 Linux natively and, from x86-64,
# aarch64 Linux (tests/tools/cross.sh: Debian's cross gcc). Per target an archive with the
# binary, the portable component (alibabakms-guest.wasm, for any WASI 0.2 host, the same bytes
# in every archive), LICENSE and README.md, and a CycloneDX SBOM of the binary's crates; one
# SBOM of the component's crates; SHA256SUMS over all of them. cargo-cyclonedx is pinned and
# installed into target/tools. The same commit gives the same bytes: file times are the
# commit's (SOURCE_DATE_EPOCH), the archives are normalised (names sorted, owner 0, gzip
# without name or time), and the SBOMs carry the commit's time and no random serial number
# (CycloneDX makes it optional).
#
#   ./release.sh [OUT_DIR]          default: target/release-files
#
# Check a download with `sha256sum -c SHA256SUMS` (README, "Release files").
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-target/release-files}"
target_dir="${CARGO_TARGET_DIR:-target}"
cyclonedx_version=0.5.9

tests/tools/setup.sh
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
native=$(rustc -vV | sed -n 's/^host: //p')
targets=("$native")
[ "$native" = x86_64-unknown-linux-gnu ] && targets+=(aarch64-unknown-linux-gnu)
# The commit's time, for the archives and SBOMs only: not exported, since the cc crate
# rebuilds C (ring, wasmtime) when SOURCE_DATE_EPOCH changes, and the tests' builds then
# could not reuse these.
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"

cdx=target/tools/bin/cargo-cyclonedx
if ! "$cdx" cyclonedx --version 2>/dev/null | grep -q " $cyclonedx_version\$"; then
  echo "release: installing cargo-cyclonedx $cyclonedx_version into target/tools" >&2
  cargo install --locked --quiet --root target/tools --version "$cyclonedx_version" cargo-cyclonedx
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"

# The archive of one target: its binary, and the component as that binary carries it
# (written by the binary itself, under qemu for aarch64).
archive() { # TRIPLE
  local name="sigstore-kms-alibabakms-$version-$1" bin run=()
  if [ "$1" = "$native" ]; then
    cargo build --locked --release -q -p sigstore-kms-alibabakms
    bin="$target_dir/release/sigstore-kms-alibabakms"
  else
    tests/tools/cross.sh -q
    bin="$target_dir/$1/release/sigstore-kms-alibabakms"
    run=("$target_dir/tools/bin/run-aarch64")
  fi
  mkdir -p "$stage/$name"
  cp "$bin" "$stage/$name/sigstore-kms-alibabakms"
  "${run[@]}" "$bin" --write-wasm "$stage/$name/alibabakms-guest.wasm"
  cp LICENSE README.md "$stage/$name/"
  chmod 0755 "$stage/$name" "$stage/$name/sigstore-kms-alibabakms"
  chmod 0644 "$stage/$name/alibabakms-guest.wasm" "$stage/$name/LICENSE" "$stage/$name/README.md"
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
  # One component for every target: each archive must carry the same bytes.
  if [ -f "$stage/component.wasm" ]; then
    cmp "$stage/component.wasm" "$stage/$name/alibabakms-guest.wasm" ||
      { echo "release: the $1 binary carries another component than the ${targets[0]} one" >&2; exit 1; }
  else
    cp "$stage/$name/alibabakms-guest.wasm" "$stage/component.wasm"
  fi
}

# The binary's crates (for one target), and the component's (for wasm32-wasip2: build.rs
# builds it apart and the binary carries it). cargo-cyclonedx writes beside the manifest; the
# file is moved out at once and normalised.
sbom() { # PACKAGE_DIR TARGET OUT
  "$cdx" cyclonedx --manifest-path "$1/Cargo.toml" --format json --spec-version 1.5 \
    --target "$2" --override-filename sbom-release -q
  mv "$1/sbom-release.json" "$stage/sbom.json"
  # It writes one beside every member of the workspace; only this package's is kept.
  git ls-files -z -- '*Cargo.toml' | xargs -0 -n1 dirname | while read -r dir; do
    rm -f "$dir/sbom-release.json"
  done
  python3 -c '
import datetime, json, sys
src, dst, epoch, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# Path dependencies are named by where the checkout is; any checkout gives the same file.
bom = json.loads(open(src).read().replace("file://" + root, "file:///sigstore-kms-alibabakms"))
bom.pop("serialNumber", None)
bom.setdefault("metadata", {})["timestamp"] = datetime.datetime.fromtimestamp(
    epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
with open(dst, "w") as f:
    json.dump(bom, f, indent=2, sort_keys=True)
    f.write("\n")
' "$stage/sbom.json" "$3" "$epoch" "$PWD"
}
files=()
for triple in "${targets[@]}"; do
  archive "$triple"
  sbom host "$triple" "$out/sigstore-kms-alibabakms-$version-$triple.cdx.json"
  files+=("sigstore-kms-alibabakms-$version-$triple.tar.gz" "sigstore-kms-alibabakms-$version-$triple.cdx.json")
done
sbom guest wasm32-wasip2 "$out/sigstore-kms-alibabakms-$version.component.cdx.json"
files+=("sigstore-kms-alibabakms-$version.component.cdx.json")

(cd "$out" && sha256sum -- "${files[@]}" >SHA256SUMS)
echo "release: in $out: ${files[*]} and SHA256SUMS" >&2
