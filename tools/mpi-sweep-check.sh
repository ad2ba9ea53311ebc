#!/usr/bin/env bash
# A small sweep run twice with one MPI-enabled moesim: on threads (-j 2) and
# spread over 2 MPI ranks on localhost; sweep.csv and sweep.html must be
# byte-identical.
#   tools/mpi-sweep-check.sh [MOESIM] [SWEEP.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
moesim=${1:-build-mpi/src/moesim}
sweep=${2:-sim/sweep-dispatch-tokens.yaml}
command -v mpirun >/dev/null || { echo "mpi-sweep-check: mpirun not found (apt-get install openmpi-bin)" >&2; exit 77; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# OpenMPI refuses root unless told; CI runs as root in a throwaway machine
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$moesim" sweep "$sweep" -o "$out/threads" -j 2 --quiet
mpirun --oversubscribe -n 2 "$moesim" sweep "$sweep" -o "$out/mpi" -j 1 --quiet
cmp "$out/threads/sweep.csv" "$out/mpi/sweep.csv"
cmp "$out/threads/sweep.html" "$out/mpi/sweep.html"
# again over the finished points: every rank reuses its own, nothing reruns
rm "$out/mpi/sweep.csv"
again=$(mpirun --oversubscribe -n 2 "$moesim" sweep "$sweep" -o "$out/mpi" -j 1)
echo "$again" | grep -q "(0 run, $(($(wc -l < "$out/threads/sweep.csv") - 1)) reused, 0 failed)" \
  || { echo "mpi-sweep-check: rerun did not reuse every point: $again" >&2; exit 1; }
cmp "$out/threads/sweep.csv" "$out/mpi/sweep.csv"
echo "mpi-sweep-check: $(($(wc -l < "$out/mpi/sweep.csv") - 1)) points, threads and 2 MPI ranks give identical sweep.csv and sweep.html"
