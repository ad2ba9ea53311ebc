#!/usr/bin/env bash
# Installs what moesim needs to build and test on Debian 12 (as root, or
# through sudo), then configures a meson build folder.
#   tools/setup.sh [BUILD_DIR] [extra meson options...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true

# libopenblas-dev: only the reference sgemm of the CPU gate benchmark
packages=(gcc g++ meson ninja-build pkg-config libglib2.0-dev libyaml-dev libcunit1-dev zlib1g-dev
          libjson-glib-dev
          libopenblas-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "moesim: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# shellcheck source=tools/cuda-env.sh
. tools/cuda-env.sh

if [ -d "$build" ] && [ -f "$build/build.ninja" ]; then
  [ $# -eq 0 ] || meson configure "$build" "$@" >/dev/null
else
  meson setup "$build" "$@" >/dev/null
fi
echo "$build"
