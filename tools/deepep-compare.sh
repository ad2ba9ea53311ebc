#!/bin/sh
# The DeepEP benchmark replicas in sim/ (deepep-normal-ep*, deepep-ll-ep*)
# next to DeepEP's published V1 figures, as one Markdown table.
#
#   tools/deepep-compare.sh [BUILD_DIR]             (default: build)
#   tools/deepep-compare.sh --check FILE [BUILD_DIR]
#
# --check: exit 1 unless FILE (README.md) holds the table as printed.
#
# Published figures: deepseek-ai/DeepEP, docs/legacy.md ("DeepEP V1",
# Performance), H800 with one CX7 400 Gb/s NIC per GPU. Only the
# intranode EP8 pair (153 / 158 GB/s) calibrates the model
# (shared/reference/deepseek-v3.md, topologies/h800-deepseek.yaml); the
# rest are kept to validate it and are not tuned to. Bandwidths are
# logical, counted the way DeepEP counts them; times are the slowest GPU's
# dispatch or combine; "GB/s (us)" in each cell. The low-latency replicas
# send everything over RDMA, as the published table's title says; its EP8
# and EP16 figures exceed one 50 GB/s NIC, so those runs must have used
# NVLink inside a node too, hence the column run with low_latency.nvlink.
set -eu

# FILE and BUILD_DIR as given (relative to the current folder); the
# scenarios from the repository root
absolute () {
  case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac
}
check=
if [ "${1:-}" = --check ]; then
  check=$(absolute "${2:?usage: tools/deepep-compare.sh --check FILE [BUILD_DIR]}")
  shift 2
fi
build=$(absolute "${1:-build}")
cd "$(dirname "$0")/.."
moesim=$build/src/moesim
if [ ! -x "$moesim" ]; then
  echo "deepep-compare: $moesim not found (build first: tools/build.sh)" >&2
  exit 2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# name, then published dispatch GB/s, combine GB/s, dispatch us, combine us
# (- where DeepEP gives no time)
published='deepep-normal-ep8 153 158 - -
deepep-normal-ep16 43 43 - -
deepep-normal-ep32 58 57 - -
deepep-normal-ep64 51 50 - -
deepep-ll-ep8 98 127 77 114
deepep-ll-ep16 63 74 118 195
deepep-ll-ep32 48 53 155 273
deepep-ll-ep64 43 46 173 314
deepep-ll-ep128 39 39 192 369
deepep-ll-ep256 39 40 194 360'

# figures: "GB/s (us)" of one run's dispatch or combine; $1 the log
figures () {
  # "logical bandwidth (as DeepEP counts it): dispatch X GB/s, combine Y GB/s per GPU"
  bw=$(sed -n 's/.*as DeepEP counts it): dispatch \([0-9.]*\) GB\/s, combine \([0-9.]*\) GB\/s.*/\1 \2/p' "$1")
  # "  total   D / d   E / e   C / c" (max / mean of dispatch, expert, combine)
  tm=$(awk '$1 == "total" { printf "%.0f %.0f", $2, $8 }' "$1")
  # shellcheck disable=SC2086 # the words are the figures
  set -- $bw $tm
  [ $# -eq 4 ] || return 1
  echo "$1 ($3 us)|$2 ($4 us)"
}

# run NAME TAG [--set K=V]: the figures of sim/NAME.yaml
run () {
  name=$1 tag=$2
  shift 2
  log=$out/$name-$tag.txt
  if ! "$moesim" run "sim/$name.yaml" --set sim.counterfactual=false "$@" -o "$out/$name-$tag" > "$log" \
     || ! figures "$log"; then
    echo "deepep-compare: no figures from moesim run sim/$name.yaml $*; its output ended:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}

pub () {
  if [ "$2" = - ]; then echo "$1"; else echo "$1 ($2 us)"; fi
}

table () {
  echo "| scenario | dispatch: DeepEP | moesim | moesim, NVLink inside a node | combine: DeepEP | moesim | moesim, NVLink inside a node |"
  echo "|---|---|---|---|---|---|---|"
  echo "$published" | while read -r name pd pc td tc; do
    a=$(run "$name" plain) || exit 2
    case $name in
      deepep-ll-*) b=$(run "$name" nvlink --set low_latency.nvlink=true) || exit 2 ;;
      *) b='-|-' ;;
    esac
    echo "| \`$name\` | $(pub "$pd" "$td") | ${a%|*} | ${b%|*} | $(pub "$pc" "$tc") | ${a#*|} | ${b#*|} |"
  done
}

if [ -z "$check" ]; then
  table
  exit
fi
table > "$out/table.md"
# the table in FILE: from its header line to the first line not a row
awk '/^\| scenario \| dispatch: DeepEP/ { on = 1 } on && !/^\|/ { exit } on' "$check" > "$out/file.md"
if ! cmp -s "$out/table.md" "$out/file.md"; then
  echo "deepep-compare: the table in $check is not what the replicas give now:" >&2
  diff "$out/file.md" "$out/table.md" >&2 || true
  exit 1
fi
echo "deepep-compare: the table in $check is up to date"
