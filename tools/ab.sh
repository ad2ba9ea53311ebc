#!/bin/bash
# Compares two moesim builds on one scenario by the main thread's CPU time
# (the simulation's: on a machine with a core free for the other threads,
# the run's wall time follows it), in runs ordered A B, B A, A B, ... so
# that neither build always runs first (on a shared machine the second run
# of a pair was ~10 % faster whichever build it was). Prints each pair and
# then the median of the B/A ratios, with a rough 95 % interval (the
# ratios' middle ranks): on a noisy machine single pairs move by +-20 %,
# so tens of pairs are needed to see a few per cent.
#
#   tools/ab.sh [-n PAIRS] BIN_A BIN_B SCENARIO [moesim run options...]
#   tools/ab.sh -n 24 /tmp/moesim.old build/src/moesim sim/deepseek-v3-ep256.yaml \
#       --set model.moe_layers=16 --set sim.counterfactual=false
#
# Each run writes to a temporary directory, removed at the end. Exit status
# 2 on bad arguments or when a run fails.
set -euo pipefail

pairs=16
if [ "${1:-}" = "-n" ]; then
  pairs=${2:-}
  shift 2 || true
fi
if [ $# -lt 3 ] || ! [[ "$pairs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: tools/ab.sh [-n PAIRS] BIN_A BIN_B SCENARIO [moesim run options...]" >&2
  exit 2
fi
a=$1 b=$2
shift 2
for bin in "$a" "$b"; do
  if [ ! -x "$bin" ]; then
    echo "tools/ab.sh: $bin: not an executable" >&2
    exit 2
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one run: prints the main thread's CPU seconds
one() {
  local bin=$1 out
  shift
  if ! out=$("$bin" run "$@" -o "$tmp/out" 2>"$tmp/stderr"); then
    echo "tools/ab.sh: $bin run $* failed:" >&2
    cat "$tmp/stderr" >&2
    exit 2
  fi
  local t
  t=$(sed -n 's/.*simulated in .*main thread \([0-9.]*\) s).*/\1/p' <<<"$out")
  if [ -z "$t" ]; then
    echo "tools/ab.sh: $bin printed no main thread time (a build before it was reported?)" >&2
    exit 2
  fi
  echo "$t"
}

for ((i = 1; i <= pairs; i++)); do
  if ((i % 2)); then
    ta=$(one "$a" "$@")
    tb=$(one "$b" "$@")
  else
    tb=$(one "$b" "$@")
    ta=$(one "$a" "$@")
  fi
  echo "$ta $tb" >>"$tmp/pairs"
  awk -v i="$i" '{ printf "pair %2d  A %.2f s  B %.2f s  B/A %.3f\n", i, $1, $2, $2 / $1 }' <<<"$ta $tb"
done
awk -v A="$a" -v B="$b" '
  { r[NR] = $2 / $1 }
  END {
    n = NR
    for (i = 2; i <= n; i++) # insertion sort: n is small
      for (j = i; j > 1 && r[j - 1] > r[j]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
    med = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
    # ranks of a distribution-free 95 % interval for the median
    k = int(n / 2 - 0.98 * sqrt(n)); if (k < 1) k = 1
    printf "A = %s\nB = %s\nmedian B/A over %d pairs: %.3f (about 95 %%: %.3f-%.3f)\n", A, B, n, med, r[k], r[n + 1 - k]
  }' "$tmp/pairs"
