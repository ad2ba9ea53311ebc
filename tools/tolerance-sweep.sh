#!/usr/bin/env bash
# Accuracy and cost of the flow solver's batching tolerance (sim.tolerance)
# on a scenario: simulated time against the exact solver, solver runs, wall.
#   tools/tolerance-sweep.sh [SCENARIO] [--set KEY=VALUE]...
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-sim/deepseek-v3-ep64-forward.yaml}
shift || true
[ $# -gt 0 ] || set -- --set model.moe_layers=6
moesim=build/src/moesim
[ -x "$moesim" ] || { echo "build first: tools/test.sh" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
exact=""
printf '%-10s %14s %10s %8s %9s\n' tolerance total_us vs_exact solves wall_s
for tol in 0 0.01 0.02 0.05 0.1; do
  "$moesim" run "$scenario" "$@" --set sim.tolerance=$tol -o "$out" > "$out/stdout"
  total=$(sed -n 's/^  "total_time_us": \([0-9.e+-]*\),$/\1/p' "$out/summary.json")
  solves=$(sed -n 's/^ *"solves": \([0-9]*\)$/\1/p' "$out/summary.json")
  wall=$(sed -n 's/.*simulated in \([0-9.]*\) s wall.*/\1/p' "$out/stdout")
  [ -n "$exact" ] || exact=$total
  awk -v t="$tol" -v x="$total" -v e="$exact" -v s="$solves" -v w="$wall" \
    'BEGIN { printf "%-10s %14s %+9.3f%% %8s %9s\n", t, x, (x - e) / e * 100, s, w }'
done
