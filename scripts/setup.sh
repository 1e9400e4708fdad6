#!/usr/bin/env bash
# Installs the Debian (bookworm) packages pinlab needs to build and test, and
# only those that are missing: on a machine that has them all, it changes
# nothing and needs no network. Run as root (or as a user with sudo).
#
# usage: scripts/setup.sh
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ gcc pkg-config
  clang-14 libclang-rt-14-dev   # the clang preset; clang's sanitizer runtimes
  # libraries (headers and CMake packages)
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev libcli11-dev
  libfmt-dev nlohmann-json3-dev liburing-dev
  chromium                      # pinlab explain --html is rendered headless in a test
  xfsprogs btrfs-progs          # pinlab conform makes xfs/btrfs loop file systems (root)
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup: dpkg-query not found: this script is for Debian bookworm (or a derivative)" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} required packages are installed"
  exit 0
fi

echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
as_root=(env DEBIAN_FRONTEND=noninteractive)
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo "${as_root[@]}")
  else
    echo "setup: not root and no sudo: install these as root: ${missing[*]}" >&2
    exit 1
  fi
fi
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup: done"
