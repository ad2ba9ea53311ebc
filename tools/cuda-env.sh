# Sourced by tools/setup.sh and tools/build.sh: CUDA is optional, and nvcc
# is used where the toolkit is installed even if it is not on PATH (the
# project's machines have it in /usr/local/cuda). Meson records nvcc by
# name, so the builds need it on PATH as much as the configure step.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi
