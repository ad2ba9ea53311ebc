#!/usr/bin/env bash
# First command of README: installs, builds, and runs the default scenario
# (DeepSeek-V3, 58 MoE layers, EP64 on eight H800 nodes).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(tools/setup.sh build)
tools/build.sh "$build" >/dev/null
"$build/src/moesim" run sim/deepseek-v3-ep64.yaml "$@"
