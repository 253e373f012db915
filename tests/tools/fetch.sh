#!/usr/bin/env bash
# Fetches the real tools the end-to-end suite drives, from Debian's archive, into the build
# directory: cosign of the 2.x line (trixie) and of the 3.x line (sid), and docker-registry
# (a real OCI distribution registry). The machine's own apt configuration is never touched:
# apt gets a private sources list, state and cache under the tools directory, so this works
# for a developer who is not root. A second run with the tools in place costs nothing.
#
#   tests/tools/fetch.sh [DIR]      (default: ${CARGO_TARGET_DIR:-target}/tools)
#
# Afterwards DIR/bin holds cosign-2, cosign-3 and docker-registry, and DIR/versions says which
# Debian versions they are.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The versions the tests use. When Debian has moved a suite on, the newest version of the
# same upstream line is taken instead, with a warning; a line that is gone is an error.
PINS=(
  "cosign-2 cosign 2.5.0-2+b5 trixie 2.5."
  "cosign-3 cosign 3.1.1-2 sid 3.1."
  "docker-registry docker-registry 2.8.3+ds1-2+b8 trixie 2.8."
)

dir="${1:-${CARGO_TARGET_DIR:-target}/tools}"
mkdir -p "$dir/bin"
dir="$(cd "$dir" && pwd)"

wanted() { printf '%s\n' "${PINS[@]}"; }
if [ -f "$dir/pins" ] && [ "$(cat "$dir/pins")" = "$(wanted)" ] &&
  [ -x "$dir/bin/cosign-2" ] && [ -x "$dir/bin/cosign-3" ] && [ -x "$dir/bin/docker-registry" ]; then
  exit 0
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || {
  echo "tests/tools/fetch.sh: $keyring is missing: this fetches from Debian's archive and needs" \
    "Debian's keyring (package debian-archive-keyring). Or point the suite at your own tools:" \
    "COSIGN=/path/to/cosign DOCKER_REGISTRY=/path/to/docker-registry ./test.sh" >&2
  exit 1
}

apt="$dir/apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
: >"$apt/status"
arch="$(dpkg --print-architecture)"
cat >"$apt/sources.list" <<EOF
deb [arch=$arch signed-by=$keyring] http://deb.debian.org/debian trixie main
deb [arch=$arch signed-by=$keyring] http://deb.debian.org/debian sid main
EOF
opts=(
  -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Etc::Parts=/dev/null -o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists"
  -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
  -o Acquire::Languages=none -o Acquire::Retries=3
)
# As root apt downloads as _apt, which cannot write into a build directory.
[ "$(id -u)" = 0 ] && opts+=(-o APT::Sandbox::User=root)

echo "fetching cosign 2.x, cosign 3.x and docker-registry from Debian's archive into $dir" >&2
apt-get "${opts[@]}" -qq update >&2

: >"$dir/versions"
for pin in "${PINS[@]}"; do
  read -r name package version suite line <<<"$pin"
  available="$(apt-cache "${opts[@]}" madison "$package" | awk -F'|' '{gsub(/ /,"",$2); print $2}')"
  if ! grep -qxF "$version" <<<"$available"; then
    newest="$(grep -E "^([0-9]+:)?${line//./\\.}" <<<"$available" | sort -V | tail -n 1 || true)"
    [ -n "$newest" ] || {
      echo "tests/tools/fetch.sh: Debian no longer has $package $line* (it has: $(echo $available))." \
        "Update PINS in this script, or set COSIGN=/path/to/cosign." >&2
      exit 1
    }
    echo "warning: $package $version is gone from Debian; using $newest of the same line" >&2
    version="$newest"
  fi
  (cd "$apt/debs" && apt-get "${opts[@]}" -qq download "$package=$version" >&2)
  deb="$(ls "$apt/debs/${package}_${version#*:}"_*.deb)"
  rm -rf "$apt/x" && dpkg-deb -x "$deb" "$apt/x"
  mv "$apt/x/usr/bin/$package" "$dir/bin/$name"
  rm -rf "$apt/x" "$deb"
  echo "$name $package $version ($suite)" >>"$dir/versions"
done
rm -rf "$apt/lists" "$apt/cache"
wanted >"$dir/pins"
cat "$dir/versions" >&2
