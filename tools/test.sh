#!/usr/bin/env bash
# Second command of README: installs, builds (warnings are errors) and runs
# the whole test suite.
#   tools/test.sh [BUILD_DIR] [extra meson options...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
build=$(tools/setup.sh "$build" -Dwerror=true "$@")
tools/build.sh "$build"
meson test -C "$build" --print-errorlogs
