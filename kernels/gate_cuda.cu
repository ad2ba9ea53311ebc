// CUDA gate: the same semantics as the CPU reference in src/gate.c.
//
// 1. Hidden states and gate weights are converted to bf16 on the device (a
//    model's gate runs on bf16 activations; feed bf16-representable inputs
//    and the products are exact, leaving only the accumulation order to
//    differ from the CPU).
// 2. Logits GEMM on tensor cores through cuBLAS (bf16 inputs, f32
//    accumulation and output): logits[T][E] = X[T][H] . W[E][H]^T, asked
//    for as the column-major E x T product W^T X ("TN"). cuBLAS is opened
//    at first use (dlopen), not linked: linked, its libraries cost every
//    moesim process about 0.1 s and 200 MB at start; without it the CUDA
//    backend says it is unavailable and `auto` falls back to the CPU. (A
//    hand-written WMMA kernel, 64 x 64 tiles, did this before: 123 TFLOP/s
//    on an H200 at T = 65536 against cuBLAS's 755.)
// 3. Selection, one warp per token with everything in registers (lane j
//    holds experts j, j + 32, ...): scores (softmax or sigmoid), bias,
//    group- and node-limited masks (block scores staged in shared memory,
//    one lane per block), top-k by warp-wide max/min reductions with ties to
//    the lower expert id, weights normalised and scaled - the CPU's rules
//    step for step.
#include "gate_backend.h"

#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <dlfcn.h>

namespace
{

// Padding: hidden rows to 32 elements (64-byte aligned bf16 rows for
// cuBLAS), logits rows to 64 floats; tokens to 64 in the buffers.
constexpr int PAD_H = 32, PAD_E = 64, PAD_T = 64;
constexpr int MAX_E = 1024, MAX_BLOCKS = 32;

__global__ void
to_bf16 (const float *src, __nv_bfloat16 *dst, long rows, int cols, int ld_dst)
{
  long i = (long) blockIdx.x * blockDim.x + threadIdx.x;
  long n = rows * (long) cols;
  for (; i < n; i += (long) gridDim.x * blockDim.x)
    {
      long r = i / cols, c = i % cols;
      dst[r * ld_dst + c] = __float2bfloat16_rn (src[i]);
    }
}

struct DevGate
{
  int E, K, scoring, use_bias, n_group, topk_group, group_max, node_limit, per_node, normalize;
  float scaling;
};

// A float as an unsigned that orders like it; every float is above 0, which
// stands for "no candidate". -0 is made +0 first, so the two tie as on the CPU.
__device__ __forceinline__ unsigned
ordered (float v)
{
  unsigned u = __float_as_uint (v + 0.0f);
  return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

// The warp's best candidate: the largest key, ties to the lowest idx; -1
// when no lane has one (all keys 0).
__device__ __forceinline__ int
warp_best (unsigned key, int idx)
{
  unsigned top = __reduce_max_sync (0xffffffffu, key);
  if (top == 0)
    return -1;
  return (int) __reduce_min_sync (0xffffffffu, key == top ? (unsigned) idx : 0xffffffffu);
}

// Keeps the `keep` best of n blocks of `size` experts (n <= 32: one lane per
// block), clearing the others' bits in `allowed`. A block's score is its
// best allowed value (by_max) or the sum of its m <= SLOTS best, added from
// the largest down as the CPU does; a block with nothing allowed cannot be
// kept. Lane j's experts are lane + 32 i, staged in the warp's `ws` [E].
template <int PER, int SLOTS>
__device__ void
limit_blocks (const float (&sel)[PER], unsigned &allowed, float *ws, int E, int n, int size, int keep,
              bool by_max, int m)
{
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < PER; j++)
    if (lane + 32 * j < E)
      ws[lane + 32 * j] = ((allowed >> j) & 1u) ? sel[j] : -INFINITY;
  __syncwarp ();
  unsigned key = 0;
  if (lane < n)
    {
      float best[SLOTS]; // descending
#pragma unroll
      for (int q = 0; q < SLOTS; q++)
        best[q] = -INFINITY;
      for (int i = lane * size; i < (lane + 1) * size; i++)
        {
          float x = ws[i];
#pragma unroll
          for (int q = 0; q < SLOTS; q++)
            if (x > best[q])
              {
                float t = best[q];
                best[q] = x;
                x = t;
              }
        }
      if (best[0] > -INFINITY)
        {
          float s = 0.0f;
          if (by_max)
            s = best[0];
          else
#pragma unroll
            for (int q = 0; q < SLOTS; q++)
              if (q < m && best[q] > -INFINITY)
                s += best[q];
          key = ordered (s);
        }
    }
  __syncwarp (); // all reads of ws done before it is written again
  unsigned chosen = 0;
  for (int k = 0; k < keep; k++)
    {
      int b = warp_best (((chosen >> lane) & 1u) ? 0u : key, lane);
      if (b < 0)
        break;
      chosen |= 1u << b;
    }
  // e / size as a multiply-high: exact for e < 1024 and 2 <= size <= 1024
  // (checked for all of them)
  const unsigned magic = size > 1 ? 0xffffffffu / (unsigned) size + 1u : 0u;
#pragma unroll
  for (int j = 0; j < PER; j++)
    {
      const unsigned e = lane + 32 * j;
      int b = size > 1 ? (int) __umulhi (e, magic) : (int) e;
      if (b < n && !((chosen >> b) & 1u))
        allowed &= ~(1u << j);
    }
}

// One warp per token, everything in registers: lane j holds experts
// j, j + 32, ... (PER of them, PER * 32 >= E).
template <int PER>
__global__ void __launch_bounds__ (128)
select_topk (const float *logits, int Ep, long T, DevGate g, const float *bias, int *ids, float *wts)
{
  extern __shared__ float ws_all[];
  const int lane = threadIdx.x % 32;
  const long tok = (long) blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (tok >= T)
    return;
  float *ws = ws_all + (long) (threadIdx.x / 32) * Ep;
  const float *lg = logits + tok * Ep;
  float score[PER], sel[PER];
  unsigned allowed = 0;
  float mx = -INFINITY;
#pragma unroll
  for (int j = 0; j < PER; j++)
    {
      const int e = lane + 32 * j;
      score[j] = e < g.E ? lg[e] : -INFINITY;
      mx = fmaxf (mx, score[j]);
      allowed |= e < g.E ? 1u << j : 0u;
    }
  if (g.scoring)
    {
#pragma unroll
      for (int j = 0; j < PER; j++)
        score[j] = 1.0f / (1.0f + expf (-score[j]));
    }
  else
    {
      for (int off = 16; off > 0; off /= 2)
        mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, off));
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < PER; j++)
        {
          score[j] = (allowed >> j) & 1u ? expf (score[j] - mx) : 0.0f;
          sum += score[j];
        }
      for (int off = 16; off > 0; off /= 2)
        sum += __shfl_xor_sync (0xffffffffu, sum, off);
#pragma unroll
      for (int j = 0; j < PER; j++)
        score[j] /= sum;
    }
#pragma unroll
  for (int j = 0; j < PER; j++)
    sel[j] = (g.use_bias && bias && ((allowed >> j) & 1u)) ? score[j] + bias[lane + 32 * j] : score[j];
  if (g.n_group > 1 && g.topk_group < g.n_group)
    {
      if (g.group_max)
        limit_blocks<PER, 1> (sel, allowed, ws, g.E, g.n_group, g.E / g.n_group, g.topk_group, true, 1);
      else
        limit_blocks<PER, 2> (sel, allowed, ws, g.E, g.n_group, g.E / g.n_group, g.topk_group, false, 2);
    }
  if (g.node_limit > 0 && g.per_node > 0 && g.E / g.per_node > g.node_limit)
    limit_blocks<PER, 8> (sel, allowed, ws, g.E, g.E / g.per_node, g.per_node, g.node_limit, false,
                          (g.K + g.node_limit - 1) / g.node_limit);
  // top-k: lane k keeps the k-th choice; the sum of the chosen scores is
  // added in choice order, as on the CPU
  float wsum = 0.0f, my_w = 0.0f;
  int my_id = -1;
  for (int k = 0; k < g.K; k++)
    {
      float bv = 0.0f;
      int bj = -1;
#pragma unroll
      for (int j = 0; j < PER; j++)
        if (((allowed >> j) & 1u) && (bj < 0 || sel[j] > bv)) // ascending j: ties to the lower id
          {
            bv = sel[j];
            bj = j;
          }
      const int e = warp_best (bj >= 0 ? ordered (bv) : 0u, lane + 32 * bj);
      float s = 0.0f;
      if (e >= 0)
        {
          const int owner = e % 32, j = e / 32;
          float mine = 0.0f;
#pragma unroll
          for (int q = 0; q < PER; q++) // (no dynamic index: keeps score[] in registers)
            mine = q == j ? score[q] : mine;
          s = __shfl_sync (0xffffffffu, mine, owner);
          if (lane == owner)
            allowed &= ~(1u << j);
          wsum += s;
        }
      if (lane == k)
        {
          my_id = e;
          my_w = s;
        }
    }
  if (lane < g.K)
    {
      if (g.normalize && wsum > 0.0f)
        my_w /= wsum;
      ids[tok * g.K + lane] = my_id;
      wts[tok * g.K + lane] = my_w * g.scaling;
    }
}

// Launches the selection for T tokens with the register width E needs.
cudaError_t
launch_select (const DevGate &g, const float *logits, int Ep, long T, const float *bias, int *ids, float *wts)
{
  const int warps = 4;
  const bool staged = (g.n_group > 1 && g.topk_group < g.n_group) || g.node_limit > 0;
  const size_t smem = staged ? (size_t) warps * Ep * sizeof (float) : 0;
  const unsigned blocks = (unsigned) ((T + warps - 1) / warps);
  const int per = (g.E + 31) / 32;
  if (per <= 1)
    select_topk<1><<<blocks, warps * 32, smem>>> (logits, Ep, T, g, bias, ids, wts);
  else if (per <= 2)
    select_topk<2><<<blocks, warps * 32, smem>>> (logits, Ep, T, g, bias, ids, wts);
  else if (per <= 4)
    select_topk<4><<<blocks, warps * 32, smem>>> (logits, Ep, T, g, bias, ids, wts);
  else if (per <= 8)
    select_topk<8><<<blocks, warps * 32, smem>>> (logits, Ep, T, g, bias, ids, wts);
  else if (per <= 16)
    select_topk<16><<<blocks, warps * 32, smem>>> (logits, Ep, T, g, bias, ids, wts);
  else
    select_topk<32><<<blocks, warps * 32, smem>>> (logits, Ep, T, g, bias, ids, wts);
  return cudaGetLastError ();
}

int
round_up (long v, int m)
{
  return (int) ((v + m - 1) / m * m);
}

bool
check (cudaError_t e, char **why, const char *what)
{
  if (e == cudaSuccess)
    return true;
  if (why)
    *why = g_strdup_printf ("CUDA %s: %s", what, cudaGetErrorString (e));
  return false;
}

// The cuBLAS entry points the gate uses, looked up once in the library of
// the toolkit moesim was built with.
#define CUBLAS_SONAME "libcublas.so." G_STRINGIFY (CUBLAS_VER_MAJOR)
struct Blas
{
  decltype (&cublasCreate_v2) create;
  decltype (&cublasDestroy_v2) destroy;
  cublasStatus_t (*gemm) (cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                          const void *, const void *, cudaDataType, int, const void *, cudaDataType,
                          int, const void *, void *, cudaDataType, int, cublasComputeType_t,
                          cublasGemmAlgo_t); // cublasGemmEx (C++ overloads it)
  decltype (&cublasGetStatusString) status_string;
  char *error; // NULL when all were found
};

Blas
blas_load ()
{
  Blas b = {};
  void *lib = dlopen (CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr)
    {
      b.error = g_strdup_printf ("cannot load cuBLAS (%s): %s", CUBLAS_SONAME, dlerror ());
      return b;
    }
  b.create = reinterpret_cast<decltype (b.create)> (dlsym (lib, "cublasCreate_v2"));
  b.destroy = reinterpret_cast<decltype (b.destroy)> (dlsym (lib, "cublasDestroy_v2"));
  b.gemm = reinterpret_cast<decltype (b.gemm)> (dlsym (lib, "cublasGemmEx"));
  b.status_string = reinterpret_cast<decltype (b.status_string)> (dlsym (lib, "cublasGetStatusString"));
  if (!b.create || !b.destroy || !b.gemm || !b.status_string)
    b.error = g_strdup_printf ("%s lacks cublasCreate_v2, cublasDestroy_v2, cublasGemmEx or "
                               "cublasGetStatusString", CUBLAS_SONAME);
  return b;
}

// Loaded on first use and kept for the process (thread-safe initialisation).
const Blas &
blas ()
{
  static const Blas b = blas_load ();
  return b;
}

bool
check_blas (cublasStatus_t st, char **why, const char *what)
{
  if (st == CUBLAS_STATUS_SUCCESS)
    return true;
  if (why)
    *why = g_strdup_printf ("cuBLAS %s: %s", what, blas ().status_string (st));
  return false;
}

// A cuBLAS handle, or NULL with *why.
cublasHandle_t
blas_handle (char **why)
{
  if (blas ().error)
    {
      if (why)
        *why = g_strdup (blas ().error);
      return nullptr;
    }
  cublasHandle_t h = nullptr;
  return check_blas (blas ().create (&h), why, "init") ? h : nullptr;
}

// logits [T][ld_l] (f32) = X [T][ld_x] . W [E][ld_x]^T over the first H
// columns, both bf16: the column-major E x T product W^T X.
bool
logits_gemm (cublasHandle_t h, const __nv_bfloat16 *X, const __nv_bfloat16 *W, float *L, long T, int H,
             int ld_x, int E, int ld_l, char **why)
{
  const float one = 1.0f, zero = 0.0f;
  return check_blas (blas ().gemm (h, CUBLAS_OP_T, CUBLAS_OP_N, E, (int) T, H, &one, W, CUDA_R_16BF, ld_x,
                                   X, CUDA_R_16BF, ld_x, &zero, L, CUDA_R_32F, ld_l, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
                     why, "logits GEMM");
}

gboolean
cuda_available (char **why)
{
  int n = 0;
  cudaError_t e = cudaGetDeviceCount (&n);
  if (e != cudaSuccess || n == 0)
    {
      if (why)
        *why = g_strdup_printf ("no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString (e) : "none found");
      return FALSE;
    }
  if (blas ().error)
    {
      if (why)
        *why = g_strdup (blas ().error);
      return FALSE;
    }
  return TRUE;
}

gboolean
cuda_supports (const GateConfig *g, char **why)
{
  const guint node_top = g->node_limit ? (g->top_k + g->node_limit - 1) / g->node_limit : 0;
  if (g->experts > MAX_E || g->top_k > 32 || g->n_group > MAX_BLOCKS || node_top > 8
      || (g->node_limit && (g->experts_per_node == 0 || g->experts / g->experts_per_node > MAX_BLOCKS)))
    {
      if (why)
        *why = g_strdup_printf ("the CUDA gate takes at most %d experts, top-32, %d groups or nodes and "
                                "a node score of at most the 8 best experts (top_k / node_limit)",
                                MAX_E, MAX_BLOCKS);
      return FALSE;
    }
  return TRUE;
}

gboolean
cuda_route (const GateConfig *g, const float *hidden, guint64 tokens, const float *weight,
            const float *bias, gint32 *ids, float *weights, char **why)
{
  if (!cuda_supports (g, why))
    return FALSE;
  const long T = (long) tokens;
  const int H = (int) g->hidden, E = (int) g->experts;
  const int Hp = round_up (H, PAD_H), Ep = round_up (E, PAD_E);
  const long chunk = 65536; // tokens per pass: bounds device memory
  const int Tc = round_up (MIN (T, chunk), PAD_T);
  __nv_bfloat16 *dX = nullptr, *dW = nullptr;
  float *dXf = nullptr, *dWf = nullptr, *dL = nullptr, *dB = nullptr, *dWts = nullptr;
  int *dIds = nullptr;
  cublasHandle_t handle = blas_handle (why);
  bool ok = handle != nullptr
            && check (cudaMalloc (&dX, sizeof (__nv_bfloat16) * (long) Tc * Hp), why, "malloc")
            && check (cudaMalloc (&dW, sizeof (__nv_bfloat16) * (long) Ep * Hp), why, "malloc")
            && check (cudaMalloc (&dXf, sizeof (float) * (long) MIN (T, chunk) * H), why, "malloc")
            && check (cudaMalloc (&dWf, sizeof (float) * (long) E * H), why, "malloc")
            && check (cudaMalloc (&dL, sizeof (float) * (long) Tc * Ep), why, "malloc")
            && check (cudaMalloc (&dIds, sizeof (int) * (long) Tc * g->top_k), why, "malloc")
            && check (cudaMalloc (&dWts, sizeof (float) * (long) Tc * g->top_k), why, "malloc")
            && (!bias || check (cudaMalloc (&dB, sizeof (float) * E), why, "malloc"));
  if (ok)
    ok = check (cudaMemset (dW, 0, sizeof (__nv_bfloat16) * (long) Ep * Hp), why, "memset")
         && check (cudaMemcpy (dWf, weight, sizeof (float) * (long) E * H, cudaMemcpyHostToDevice), why, "copy")
         && (!bias || check (cudaMemcpy (dB, bias, sizeof (float) * E, cudaMemcpyHostToDevice), why, "copy"));
  if (ok)
    {
      to_bf16<<<1024, 256>>> (dWf, dW, E, H, Hp);
      ok = check (cudaGetLastError (), why, "convert");
    }
  DevGate dg = { E, (int) g->top_k, g->scoring == GATE_SIGMOID, g->use_bias, (int) g->n_group,
                 (int) g->topk_group, g->group_score == GATE_GROUP_MAX, (int) g->node_limit,
                 (int) g->experts_per_node, g->normalize, (float) g->scaling };
  for (long t0 = 0; ok && t0 < T; t0 += chunk)
    {
      long n = MIN (chunk, T - t0);
      int np = round_up (n, PAD_T);
      ok = check (cudaMemset (dX, 0, sizeof (__nv_bfloat16) * (long) np * Hp), why, "memset")
           && check (cudaMemcpy (dXf, hidden + t0 * H, sizeof (float) * n * H, cudaMemcpyHostToDevice), why, "copy");
      if (!ok)
        break;
      to_bf16<<<4096, 256>>> (dXf, dX, n, H, Hp);
      ok = check (cudaGetLastError (), why, "convert") && logits_gemm (handle, dX, dW, dL, n, H, Hp, E, Ep, why);
      if (!ok)
        break;
      ok = check (launch_select (dg, dL, Ep, n, dB, dIds, dWts), why, "selection")
           && check (cudaMemcpy (ids + t0 * g->top_k, dIds, sizeof (int) * n * g->top_k, cudaMemcpyDeviceToHost), why, "copy")
           && check (cudaMemcpy (weights + t0 * g->top_k, dWts, sizeof (float) * n * g->top_k, cudaMemcpyDeviceToHost), why, "copy");
    }
  cudaFree (dX);
  cudaFree (dW);
  cudaFree (dXf);
  cudaFree (dWf);
  cudaFree (dL);
  cudaFree (dIds);
  cudaFree (dWts);
  cudaFree (dB);
  if (handle)
    blas ().destroy (handle);
  return ok;
}

const GateBackend cuda_backend = { "cuda", cuda_available, cuda_supports, cuda_route };

__global__ void
fill_bf16 (__nv_bfloat16 *p, long n, unsigned seed)
{
  long i = (long) blockIdx.x * blockDim.x + threadIdx.x;
  for (; i < n; i += (long) gridDim.x * blockDim.x)
    {
      unsigned h = (unsigned) i * 2654435761u ^ seed;
      h ^= h >> 15;
      h *= 2246822519u;
      h ^= h >> 13;
      p[i] = __float2bfloat16_rn (((h & 0xffff) / 65536.0f - 0.5f) * 0.25f);
    }
}

} // namespace

// Times the device part of the gate on T tokens of device-resident bf16
// inputs, averaged over `reps` calls after one warm-up: the whole gate
// (GEMM + selection), the cuBLAS GEMM alone and the selection alone.
extern "C" gboolean
gate_cuda_bench (const GateConfig *g, long T, int reps, GateCudaTimes *out, char **why)
{
  const int H = (int) g->hidden, E = (int) g->experts;
  const int Hp = round_up (H, PAD_H), Ep = round_up (E, PAD_E), Tp = round_up (T, PAD_T);
  __nv_bfloat16 *dX = nullptr, *dW = nullptr;
  float *dL = nullptr, *dWts = nullptr;
  int *dIds = nullptr;
  cudaEvent_t ev[4] = {};
  cublasHandle_t handle = blas_handle (why);
  bool ok = handle != nullptr
            && check (cudaMalloc (&dX, sizeof (__nv_bfloat16) * (long) Tp * Hp), why, "malloc")
            && check (cudaMalloc (&dW, sizeof (__nv_bfloat16) * (long) Ep * Hp), why, "malloc")
            && check (cudaMalloc (&dL, sizeof (float) * (long) Tp * Ep), why, "malloc")
            && check (cudaMalloc (&dIds, sizeof (int) * T * g->top_k), why, "malloc")
            && check (cudaMalloc (&dWts, sizeof (float) * T * g->top_k), why, "malloc");
  for (int i = 0; ok && i < 4; i++)
    ok = check (cudaEventCreate (&ev[i]), why, "event");
  DevGate dg = { E, (int) g->top_k, g->scoring == GATE_SIGMOID, 0, (int) g->n_group,
                 (int) g->topk_group, g->group_score == GATE_GROUP_MAX, 0, 0, g->normalize,
                 (float) g->scaling };
  if (ok)
    {
      fill_bf16<<<4096, 256>>> (dX, (long) Tp * Hp, 1u);
      fill_bf16<<<1024, 256>>> (dW, (long) Ep * Hp, 2u);
      ok = check (cudaGetLastError (), why, "fill");
    }
  for (int r = -1; ok && r < reps; r++) // the whole gate, one warm-up call
    {
      if (r == 0)
        cudaEventRecord (ev[0]);
      ok = logits_gemm (handle, dX, dW, dL, T, H, Hp, E, Ep, why);
      ok = ok && check (launch_select (dg, dL, Ep, T, nullptr, dIds, dWts), why, "selection");
    }
  cudaEventRecord (ev[1]);
  for (int r = 0; ok && r < reps; r++)
    ok = logits_gemm (handle, dX, dW, dL, T, H, Hp, E, Ep, why);
  cudaEventRecord (ev[2]);
  for (int r = 0; ok && r < reps; r++)
    ok = check (launch_select (dg, dL, Ep, T, nullptr, dIds, dWts), why, "selection");
  cudaEventRecord (ev[3]);
  ok = ok && check (cudaEventSynchronize (ev[3]), why, "run") && check (cudaGetLastError (), why, "launch");
  if (ok)
    {
      double *dst[3] = { &out->total_us, &out->gemm_us, &out->select_us };
      for (int i = 0; i < 3; i++)
        {
          float ms = 0;
          cudaEventElapsedTime (&ms, ev[i], ev[i + 1]);
          *dst[i] = ms * 1e3 / reps;
        }
    }
  for (int i = 0; i < 4; i++)
    if (ev[i])
      cudaEventDestroy (ev[i]);
  if (handle)
    blas ().destroy (handle);
  cudaFree (dX);
  cudaFree (dW);
  cudaFree (dL);
  cudaFree (dIds);
  cudaFree (dWts);
  return ok;
}

// The device's name, for reports.
extern "C" char *
gate_cuda_device_name (void)
{
  cudaDeviceProp p;
  if (cudaGetDeviceProperties (&p, 0) != cudaSuccess)
    return g_strdup ("unknown");
  return g_strdup (p.name);
}

extern "C" const GateBackend *
gate_backend_cuda (void)
{
  return &cuda_backend;
}
