#!/usr/bin/env bash
# The training runs of a profile-guided build (tools/build.sh --pgo): what
# moesim is used for, each cut to a few layers so that the counted runs take
# seconds. The default scenario (hierarchical training step) at EP64 and
# EP256, a direct forward at EP256, low-latency decode, a trace replay, EPLB
# prefill with the in-process gate, and Mixtral on one node.
#   tools/pgo-train.sh MOESIM
set -euo pipefail
cd "$(dirname "$0")/.."
moesim=${1:?usage: tools/pgo-train.sh MOESIM}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run () {
  local name=$1
  shift
  "$moesim" run "$@" -o "$out/$name" --quiet >/dev/null
}
run train-ep64 sim/deepseek-v3-ep64.yaml --set model.moe_layers=8
run train-ep256 sim/deepseek-v3-ep64.yaml --set parallel.ep=256 --set model.moe_layers=4
run forward-ep256 sim/deepseek-v3-ep256.yaml --set model.moe_layers=4
run decode sim/deepseek-v3-decode-ep144.yaml --set model.moe_layers=8
run trace sim/deepseek-v3-ep64-trace.yaml --set model.moe_layers=4
run prefill sim/deepseek-v3-prefill-ep32.yaml --set model.moe_layers=4
run mixtral sim/mixtral-8x7b-ep8.yaml
