#!/usr/bin/env bash
# Release files for this machine's target: an archive with the binary, the portable component
# (alibabakms-guest.wasm, for any WASI 0.2 host), LICENSE and README.md; CycloneDX SBOMs of the
# binary's and the component's crates (cargo-cyclonedx, pinned, into target/tools); SHA256SUMS over
# both. The same commit gives the same bytes: file times are the commit's (SOURCE_DATE_EPOCH),
# the archive is normalised (names sorted, owner 0, gzip without name or time), and the SBOM
# carries the commit's time and no random serial number (CycloneDX makes it optional).
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
triple=$(rustc -vV | sed -n 's/^host: //p')
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
name="sigstore-kms-alibabakms-$version-$triple"

cargo build --locked --release -q -p sigstore-kms-alibabakms
bin="$target_dir/release/sigstore-kms-alibabakms"

cdx=target/tools/bin/cargo-cyclonedx
if ! "$cdx" cyclonedx --version 2>/dev/null | grep -q " $cyclonedx_version\$"; then
  echo "release: installing cargo-cyclonedx $cyclonedx_version into target/tools" >&2
  cargo install --locked --quiet --root target/tools --version "$cyclonedx_version" cargo-cyclonedx
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name" "$out"
cp "$bin" "$stage/$name/sigstore-kms-alibabakms"
"$bin" --write-wasm "$stage/$name/alibabakms-guest.wasm"
cp LICENSE README.md "$stage/$name/"
chmod 0755 "$stage/$name" "$stage/$name/sigstore-kms-alibabakms"
chmod 0644 "$stage/$name/alibabakms-guest.wasm" "$stage/$name/LICENSE" "$stage/$name/README.md"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --format=gnu -C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"

# The binary's crates (for this target), and the component's (for wasm32-wasip2: build.rs
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
' "$stage/sbom.json" "$3" "$SOURCE_DATE_EPOCH" "$PWD"
}
sbom host "$triple" "$out/$name.cdx.json"
sbom guest wasm32-wasip2 "$out/$name.component.cdx.json"

(cd "$out" && sha256sum -- "$name.tar.gz" "$name.cdx.json" "$name.component.cdx.json" >SHA256SUMS)
echo "release: in $out: $name.tar.gz, $name.cdx.json (binary), $name.component.cdx.json" \
  "(component), SHA256SUMS" >&2
