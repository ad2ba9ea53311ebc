#!/usr/bin/env bash
# The device checks, as one script for a machine with an NVIDIA GPU (run
# through the device tool, at most 5 minutes): builds with CUDA required,
# runs the GPU parity tests, times the kernels at T = 4096, 16384 and 65536,
# and times a PyTorch reference of the same gate when torch is importable.
set -uo pipefail
cd "$(dirname "$0")/.."
echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
echo "== build (-Dcuda=enabled)"
if ! command -v meson >/dev/null || ! pkg-config --exists glib-2.0 yaml-0.1 cunit zlib; then
  tools/setup.sh build-gpu -Dcuda=enabled >/dev/null || exit 1
else
  [ -f build-gpu/build.ninja ] || meson setup build-gpu -Dcuda=enabled >/dev/null || exit 1
fi
ninja -C build-gpu >/dev/null || { ninja -C build-gpu | tail -30; exit 1; }
echo "== GPU parity tests"
meson test -C build-gpu gate-cuda gate --print-errorlogs 2>&1 | tail -15
./build-gpu/tests/test_gate_cuda 2>&1 | grep -E "near-ties|Test:|asserts|skipped" | head -12
echo "== kernel timing"
./build-gpu/tests/bench_gate_cuda
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
    print(f"  T {T:6d}: {a.elapsed_time(z) / 20 * 1e3:9.1f} us per call (PyTorch)")
PY
else
  echo "  torch with CUDA is not importable on this machine: no PyTorch reference"
fi
