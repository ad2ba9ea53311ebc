#!/usr/bin/env bash
# Builds a meson build folder that tools/setup.sh configured.
#   tools/build.sh BUILD_DIR         plain: ninja
#   tools/build.sh --pgo BUILD_DIR   profile-guided (GCC): moesim built with
#       counters, the training runs of tools/pgo-train.sh, then everything
#       rebuilt with that profile. The profile is made again whenever a file
#       it depends on (src/, kernels/, the meson files, the training script)
#       is newer than it, so a build never uses a profile of other code;
#       the folder stays profile-guided (rebuild it with this script: a
#       plain ninja there after a change to the sources stops at GCC's
#       coverage-mismatch error).
#       Outputs are the same as a plain build's, byte for byte (.ci/run
#       checks it); the simulator takes about 5 % less CPU time
#       (README, Performance).
set -euo pipefail
cd "$(dirname "$0")/.."
pgo=0
if [ "${1:-}" = --pgo ]; then
  pgo=1
  shift
fi
build=${1:?usage: tools/build.sh [--pgo] BUILD_DIR}
# shellcheck source=tools/cuda-env.sh
. tools/cuda-env.sh
# a folder built with --pgo (meson's b_pgo, whose flags its build.ninja
# carries) stays profile-guided: a plain ninja there, after a change to the
# sources, would meet a profile of other code
grep -q -e '-fprofile-use' -e '-fprofile-generate' "$build/build.ninja" && pgo=1
if [ $pgo = 0 ]; then
  ninja -C "$build"
  exit 0
fi

stamp="$build/pgo-profile.stamp"
if [ -f "$stamp" ] && [ -z "$(find src kernels meson.build meson_options.txt tests/meson.build \
                                 tools/pgo-train.sh -newer "$stamp" -print -quit)" ]; then
  ninja -C "$build"
  exit 0
fi
rm -f "$stamp"
echo "moesim: profile-guided build of $build: instrumented build, training runs, optimised build" >&2
meson configure "$build" -Db_pgo=generate >/dev/null
find "$build" -name '*.gcda' -delete
ninja -C "$build" src/moesim
tools/pgo-train.sh "$build/src/moesim"
meson configure "$build" -Db_pgo=use >/dev/null
ninja -C "$build"
touch "$stamp"
