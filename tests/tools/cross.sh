#!/usr/bin/env bash
# The binary for aarch64 Linux, built on this x86-64 machine, and a way to run it here:
# rustup's aarch64-unknown-linux-gnu target; Debian's cross gcc as its linker and C compiler
# (ring builds C and assembly); Debian's qemu-user-static to run it. The Debian packages come
# from this machine's own suite (the cross gcc must run on its glibc), fetched with
# `apt-get download` into the build directory and unpacked with `dpkg-deb -x`: nothing is
# installed into the system, and the machine's apt configuration is never touched.
#
#   tests/tools/cross.sh [CARGO ARGS...]
#
# Builds ${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/sigstore-kms-alibabakms
# (build.rs precompiles the component for aarch64) and leaves, in the tools directory's bin,
# `run-aarch64 PROGRAM ARGS...`, which runs an aarch64 program under qemu with the cross
# glibc as its root. A second run with everything in place costs a `cargo build` that has
# nothing to do.
set -euo pipefail
cd "$(dirname "$0")/../.."

triple=aarch64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir/tools/bin"
tools="$(cd "$target_dir/tools" && pwd)"
root="$tools/cross/root"

fail() {
  echo "tests/tools/cross.sh: $*" >&2
  exit 1
}

if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$triple" ]; then
  echo "cross: adding the $triple target" >&2
  rustup target add "$triple" >&2 || fail "could not add the target: run 'rustup target add $triple'"
fi

# The packages, by name: the cross gcc, its binutils and the aarch64 glibc it links against;
# qemu's static user-mode emulators. The host libraries they use (libisl, libmpc, libbfd's
# own dependencies…) are the ones the machine's native gcc and binutils already need.
packages=(
  binutils-aarch64-linux-gnu cpp-12-aarch64-linux-gnu gcc-12-aarch64-linux-gnu
  gcc-12-aarch64-linux-gnu-base gcc-12-cross-base libgcc-12-dev-arm64-cross
  libgcc-s1-arm64-cross libc6-arm64-cross libc6-dev-arm64-cross linux-libc-dev-arm64-cross
  qemu-user-static
)
if [ ! -x "$root/usr/bin/aarch64-linux-gnu-gcc-12" ] || [ ! -x "$root/usr/bin/qemu-aarch64-static" ] ||
  [ "$(cat "$tools/cross/packages" 2>/dev/null)" != "${packages[*]}" ]; then
  # shellcheck disable=SC1091
  suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ "$suite" = bookworm ] && [ -r "$keyring" ] ||
    fail "the aarch64 build fetches gcc-12-aarch64-linux-gnu and qemu-user-static from Debian 12" \
      "(bookworm), the suite this machine's gcc must match; this machine is '${suite:-not Debian}'." \
      "Install your distribution's aarch64 cross gcc and qemu-user instead, or run the tests" \
      "without the aarch64 build: ALIBABAKMS_SKIP_CROSS=1 ./test.sh"
  apt="$tools/cross/apt"
  rm -rf "$tools/cross" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  : >"$apt/status"
  echo "deb [arch=amd64 signed-by=$keyring] http://deb.debian.org/debian $suite main" >"$apt/sources.list"
  opts=(
    -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Parts=/dev/null -o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists"
    -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
    -o Acquire::Languages=none -o Acquire::Retries=3
  )
  [ "$(id -u)" = 0 ] && opts+=(-o APT::Sandbox::User=root)
  echo "cross: fetching the aarch64 cross gcc and qemu-user-static from Debian $suite" >&2
  apt-get "${opts[@]}" -qq update >&2
  (cd "$apt/debs" && apt-get "${opts[@]}" -qq download "${packages[@]}" >&2)
  for deb in "$apt/debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf "$apt"
  echo "${packages[*]}" >"$tools/cross/packages"
fi

# The unpacked binutils find their own libbfd and libopcodes only through LD_LIBRARY_PATH,
# and the unpacked gcc finds the cross glibc only with the unpacked tree as its sysroot.
cat >"$tools/cross/aarch64-linux-gnu-gcc" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" exec "$root/usr/bin/aarch64-linux-gnu-gcc-12" --sysroot="$root" "\$@"
EOF
cat >"$tools/cross/aarch64-linux-gnu-ar" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" exec "$root/usr/bin/aarch64-linux-gnu-ar" "\$@"
EOF
cat >"$tools/bin/run-aarch64" <<EOF
#!/bin/sh
# Runs an aarch64 Linux program under qemu-user, its dynamic loader and libc from the cross glibc.
exec "$root/usr/bin/qemu-aarch64-static" -L "$root/usr/aarch64-linux-gnu" "\$@"
EOF
chmod 0755 "$tools/cross/aarch64-linux-gnu-gcc" "$tools/cross/aarch64-linux-gnu-ar" "$tools/bin/run-aarch64"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$tools/cross/aarch64-linux-gnu-gcc"
export CC_aarch64_unknown_linux_gnu="$tools/cross/aarch64-linux-gnu-gcc"
export AR_aarch64_unknown_linux_gnu="$tools/cross/aarch64-linux-gnu-ar"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$tools/bin/run-aarch64"
echo "cross: building sigstore-kms-alibabakms for $triple" >&2
cargo build --locked --release --target "$triple" -p sigstore-kms-alibabakms "$@"
