#!/usr/bin/env bash
# Accuracy and cost of the flow solver's batching tolerance (sim.tolerance)
# on a scenario: the pass total against the exact solver (eps 0), and the
# per-layer dispatch and combine times (layers.csv time_us, each the latest
# GPU's) against exact: mean and worst relative error; solver runs, wall.
#   tools/tolerance-sweep.sh [SCENARIO] [--set KEY=VALUE]...
#   TOLERANCES="0.02 0.001" tools/tolerance-sweep.sh ...   (exact always runs first)
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
printf '%-10s %14s %10s %11s %11s %8s %9s\n' tolerance total_us vs_exact phase_mean phase_worst solves wall_s
for tol in 0 ${TOLERANCES:-0.01 0.02 0.05 0.1}; do
  "$moesim" run "$scenario" "$@" --set sim.tolerance=$tol -o "$out" > "$out/stdout"
  total=$(sed -n 's/^  "total_time_us": \([0-9.e+-]*\),$/\1/p' "$out/summary.json")
  solves=$(sed -n 's/^ *"solves": \([0-9]*\)$/\1/p' "$out/summary.json")
  wall=$(sed -n 's/.*simulated in \([0-9.]*\) s wall.*/\1/p' "$out/stdout")
  if [ -z "$exact" ]; then
    exact=$total
    cp "$out/layers.csv" "$out/exact-layers.csv"
  fi
  # per-phase: dispatch and combine rows, matched by layer, micro-batch, pass
  phases=$(awk -F, 'function abs(x) { return x < 0 ? -x : x }
    { k = $1 FS $2 FS $3 FS $4 }
    NR == FNR { if ($4 == "dispatch" || $4 == "combine") ex[k] = $5; next }
    FNR > 1 && k in ex && ex[k] > 0 {
      d = ($5 - ex[k]) / ex[k] * 100
      s += abs(d); n++
      if (n == 1 || abs(d) > abs(w)) w = d }
    END { if (n) printf "%.3f%% %+.3f%%", s / n, w; else printf "- -" }' \
    "$out/exact-layers.csv" "$out/layers.csv")
  read -r pmean pworst <<< "$phases"
  awk -v t="$tol" -v x="$total" -v e="$exact" -v pm="$pmean" -v pw="$pworst" -v s="$solves" -v w="$wall" \
    'BEGIN { printf "%-10s %14s %+9.3f%% %11s %11s %8s %9s\n", t, x, (x - e) / e * 100, pm, pw, s, w }'
done
