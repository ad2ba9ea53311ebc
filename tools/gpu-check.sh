#!/usr/bin/env bash
# The device checks, as one script for a machine with an NVIDIA GPU (run
# through the device tool, at most 5 minutes): builds with CUDA required,
# runs the GPU parity tests, times the kernels at T = 4096, 16384 and 65536,
# runs `moesim gate` end to end on both backends and compares their routing,
# and times a PyTorch reference of the same gate when torch is importable.
#
# With PREBUILT=DIR it builds nothing and runs DIR/moesim, DIR/test_gate_cuda
# and DIR/bench_gate_cuda with DIR/lib on the library path: for a device
# machine with no network and no GLib / libyaml / CUnit headers, build here
# (meson setup B -Dcuda=enabled; ninja -C B), copy those three programs and
# the shared libraries `ldd` names (not libc, libm, libstdc++, libgcc_s) into
# DIR, and carry DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | head -2
if [ -n "${PREBUILT:-}" ]; then
  BIN=$PREBUILT
  export LD_LIBRARY_PATH="$PREBUILT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "== prebuilt programs in $BIN"
  ldd "$BIN/moesim" | grep -E "not found" && exit 1
else
  echo "== build (-Dcuda=enabled)"
  if ! command -v meson >/dev/null || ! pkg-config --exists glib-2.0 yaml-0.1 cunit zlib; then
    tools/setup.sh build-gpu -Dcuda=enabled >/dev/null || exit 1
  else
    [ -f build-gpu/build.ninja ] || meson setup build-gpu -Dcuda=enabled >/dev/null || exit 1
  fi
  ninja -C build-gpu >/dev/null || { ninja -C build-gpu | tail -30; exit 1; }
  BIN=build-gpu/bin
  mkdir -p "$BIN"
  cp build-gpu/src/moesim build-gpu/tests/test_gate_cuda build-gpu/tests/bench_gate_cuda "$BIN/"
fi
# cuBLAS is opened at run time (libcublas.so.N of the toolkit moesim was built with)
if ! ldconfig -p | grep -q "libcublas\.so\.[0-9]"; then
  lib=$(find /usr/local/cuda/ /usr/local/cuda/targets/ /opt /usr/lib -name "libcublas.so.[0-9]*" 2>/dev/null | head -1)
  [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "cuBLAS: ${lib:-not found}"
fi
echo "== GPU parity tests"
"$BIN/test_gate_cuda" 2>&1 | grep -v "^ *$"
echo "exit status ${PIPESTATUS[0]}"
echo "== kernel timing"
"$BIN/bench_gate_cuda"
echo "== moesim gate end to end: 65,536 synthetic tokens x 4 layers, CUDA against CPU"
tmp=$(mktemp -d)
for b in ${BACKENDS:-cuda cpu}; do
  /usr/bin/time -f "  $b: %e s wall, %U s user" "$BIN/moesim" gate --preset deepseek-v3 --tokens 65536 \
    --layers 4 --backend $b -o "$tmp/$b.mrt" 2>&1 | grep -v "^$"
  "$BIN/moesim" trace export "$tmp/$b.mrt" --experts "$tmp/$b.npy" --weights "$tmp/$b-w.npy" || exit 1
done
python3 - "$tmp" <<'PY' || echo "  (no comparison: numpy is missing or a backend failed above)"
import sys, numpy as np
d = sys.argv[1]
c, g = np.load(d + "/cpu.npy"), np.load(d + "/cuda.npy")
cw, gw = np.load(d + "/cpu-w.npy"), np.load(d + "/cuda-w.npy")
same = (np.sort(c, axis=-1) == np.sort(g, axis=-1)).all(axis=-1)
print(f"  ids {c.shape}: same expert set for {same.mean() * 100:.3f} % of (token, layer); "
      f"synthetic hidden states are f32, rounded to bf16 on the GPU only")
m = same[..., None] & np.ones_like(cw, dtype=bool)
rel = np.abs(np.sort(cw, -1) - np.sort(gw, -1)) / np.maximum(np.abs(np.sort(cw, -1)), 1e-12)
print(f"  weights where the sets agree: max relative difference {rel[m].max():.2e}, median {np.median(rel[m]):.2e}")
PY
rm -rf "$tmp"
echo "== PyTorch reference (matmul, sigmoid, bias, group top-4 of 8, top-8), bf16"
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
python3 - <<'PY'
import torch
H, E, K, NG, KG = 7168, 256, 8, 8, 4
w = (torch.rand(E, H, device="cuda") - 0.5).to(torch.bfloat16) * 0.25
b = torch.zeros(E, device="cuda")
for T in (4096, 16384, 65536):
    x = (torch.rand(T, H, device="cuda") - 0.5).to(torch.bfloat16) * 0.25
    def gate():
        s = torch.sigmoid((x @ w.t()).float())
        sb = s + b
        g = sb.view(T, NG, -1).topk(2, dim=-1).values.sum(-1)
        keep = g.topk(KG, dim=-1).indices
        mask = torch.zeros(T, NG, device="cuda", dtype=torch.bool).scatter_(1, keep, True)
        sb = sb.masked_fill(~mask.repeat_interleave(E // NG, dim=1), float("-inf"))
        idx = sb.topk(K, dim=-1).indices
        wt = s.gather(1, idx)
        return idx, wt / wt.sum(-1, keepdim=True) * 2.5
    for _ in range(3):
        gate()
    torch.cuda.synchronize()
    a, z = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(20):
        gate()
    z.record()
    torch.cuda.synchronize()
    t_all = a.elapsed_time(z) / 20 * 1e3
    a.record()
    for _ in range(20):
        x @ w.t()
    z.record()
    torch.cuda.synchronize()
    t_mm = a.elapsed_time(z) / 20 * 1e3
    print(f"  T {T:6d}: {t_all:9.1f} us per call (PyTorch); its matmul alone {t_mm:8.1f} us "
          f"= {2 * T * E * H / t_mm / 1e6:5.0f} TFLOP/s")
PY
else
  echo "  torch with CUDA is not importable on this machine: no PyTorch reference"
fi
