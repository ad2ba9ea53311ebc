// CUDA gate: the same semantics as the CPU reference in src/gate.c.
//
// 1. Hidden states and gate weights are converted to bf16 on the device (a
//    model's gate runs on bf16 activations; feed bf16-representable inputs
//    and the products are exact, leaving only the accumulation order to
//    differ from the CPU).
// 2. Logits GEMM on tensor cores (WMMA bf16 16x16x16, f32 accumulate): a
//    block of 4 warps computes a 64-token x 64-expert tile, staging 64 x 32
//    slices of both operands in shared memory; each warp owns 32 x 32.
// 3. Selection epilogue, one warp per token: scores (softmax or sigmoid),
//    bias, group- and node-limited masks, top-k by warp-wide argmax with
//    ties to the lower expert id, weights normalised and scaled - the CPU's
//    rules step for step.
//
// Sizes are padded on the device (tokens and experts to 64, hidden to 32)
// with zeros, which add nothing to any dot product; padded experts are never
// selectable.
#include "gate_backend.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstring>

using namespace nvcuda;

namespace
{

constexpr int BM = 64, BN = 64, BK = 32, LDS = BK + 8; // +8: keep WMMA's ld a multiple of 8, break bank conflicts
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

// logits[Tp][Ep] = X[Tp][Hp] . W[Ep][Hp]^T, all padded.
__global__ void
logits_wmma (const __nv_bfloat16 *X, const __nv_bfloat16 *W, float *out, int Hp, int Ep)
{
  __shared__ __align__ (32) __nv_bfloat16 As[BM][LDS];
  __shared__ __align__ (32) __nv_bfloat16 Bs[BN][LDS];
  const int t0 = blockIdx.y * BM, e0 = blockIdx.x * BN;
  const int warp = threadIdx.x / 32, wm = warp / 2, wn = warp % 2; // 2 x 2 warps of 32 x 32
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      wmma::fill_fragment (acc[i][j], 0.0f);
  for (int k0 = 0; k0 < Hp; k0 += BK)
    {
      // 128 threads load 64 x 32 bf16 of each operand: 8 elements (16 B) each, twice
      for (int v = threadIdx.x; v < BM * BK / 8; v += blockDim.x)
        {
          int r = v / (BK / 8), c = (v % (BK / 8)) * 8;
          *reinterpret_cast<uint4 *> (&As[r][c])
              = *reinterpret_cast<const uint4 *> (&X[(long) (t0 + r) * Hp + k0 + c]);
          *reinterpret_cast<uint4 *> (&Bs[r][c])
              = *reinterpret_cast<const uint4 *> (&W[(long) (e0 + r) * Hp + k0 + c]);
        }
      __syncthreads ();
      for (int kk = 0; kk < BK; kk += 16)
        {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[2];
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b[2];
          for (int i = 0; i < 2; i++)
            wmma::load_matrix_sync (a[i], &As[wm * 32 + i * 16][kk], LDS);
          for (int j = 0; j < 2; j++)
            wmma::load_matrix_sync (b[j], &Bs[wn * 32 + j * 16][kk], LDS); // W row-major = W^T col-major
          for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
              wmma::mma_sync (acc[i][j], a[i], b[j], acc[i][j]);
        }
      __syncthreads ();
    }
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      wmma::store_matrix_sync (&out[(long) (t0 + wm * 32 + i * 16) * Ep + e0 + wn * 32 + j * 16],
                               acc[i][j], Ep, wmma::mem_row_major);
}

struct DevGate
{
  int E, K, scoring, use_bias, n_group, topk_group, group_max, node_limit, per_node, normalize;
  float scaling;
};

// Warp-wide argmax over (value, index), ties to the lower index; -1 if none.
__device__ void
warp_argmax (float &v, int &i)
{
  for (int off = 16; off > 0; off /= 2)
    {
      float ov = __shfl_xor_sync (0xffffffffu, v, off);
      int oi = __shfl_xor_sync (0xffffffffu, i, off);
      if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i)))
        {
          v = ov;
          i = oi;
        }
    }
}

// Sum of the m largest allowed values of block b (of `size`), added from the
// largest down, as the CPU does. Run by one lane.
__device__ float
block_top_sum (const float *sel, const unsigned char *allowed, int b, int size, int m)
{
  float taken[64];
  int n = 0;
  for (int r = 0; r < m && r < 64; r++)
    {
      int best = -1;
      for (int i = b * size; i < (b + 1) * size; i++)
        {
          if (!allowed[i])
            continue;
          bool used = false;
          for (int q = 0; q < n; q++)
            used |= (int) taken[q] == i; // indices stored as floats: exact below 2^24
          if (!used && (best < 0 || sel[i] > sel[best]))
            best = i;
        }
      if (best < 0)
        break;
      taken[n++] = (float) best;
    }
  float s = 0.0f;
  for (int q = 0; q < n; q++)
    s += sel[(int) taken[q]];
  return s;
}

__device__ float
block_max (const float *sel, const unsigned char *allowed, int b, int size, bool *any)
{
  int best = -1;
  for (int i = b * size; i < (b + 1) * size; i++)
    if (allowed[i] && (best < 0 || sel[i] > sel[best]))
      best = i;
  *any = best >= 0;
  return best >= 0 ? sel[best] : 0.0f;
}

// Keeps the `keep` best of n blocks (n <= 32: one lane per block).
__device__ void
limit_blocks (float *sel, unsigned char *allowed, int n, int size, int keep, bool by_max, int top)
{
  int lane = threadIdx.x % 32;
  float score = -INFINITY;
  int idx = -1;
  if (lane < n)
    {
      bool any = false;
      if (by_max)
        score = block_max (sel, allowed, lane, size, &any);
      else
        {
          block_max (sel, allowed, lane, size, &any);
          score = block_top_sum (sel, allowed, lane, size, top);
        }
      idx = any ? lane : -1;
    }
  unsigned chosen = 0;
  for (int k = 0; k < keep; k++)
    {
      float v = score;
      int i = ((chosen >> lane) & 1u) ? -1 : idx;
      warp_argmax (v, i);
      if (i < 0)
        break;
      chosen |= 1u << i;
    }
  __syncwarp ();
  for (int e = lane; e < n * size; e += 32)
    if (!((chosen >> (e / size)) & 1u))
      allowed[e] = 0;
  __syncwarp ();
}

__global__ void
select_topk (const float *logits, int Ep, long T, DevGate g, const float *bias, int *ids, float *wts)
{
  extern __shared__ unsigned char smem[];
  const int warps = blockDim.x / 32, w = threadIdx.x / 32, lane = threadIdx.x % 32;
  float *scores = reinterpret_cast<float *> (smem) + (long) w * 2 * g.E;
  float *sel = scores + g.E;
  unsigned char *allowed = smem + (long) warps * 2 * g.E * sizeof (float) + (long) w * g.E;
  long tok = (long) blockIdx.x * warps + w;
  if (tok >= T)
    return;
  const float *lg = logits + tok * Ep;
  float mx = -INFINITY;
  for (int e = lane; e < g.E; e += 32)
    mx = fmaxf (mx, lg[e]);
  for (int off = 16; off > 0; off /= 2)
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, off));
  float sum = 0.0f;
  for (int e = lane; e < g.E; e += 32)
    {
      float s = g.scoring ? 1.0f / (1.0f + expf (-lg[e])) : expf (lg[e] - mx);
      scores[e] = s;
      sum += s;
    }
  for (int off = 16; off > 0; off /= 2)
    sum += __shfl_xor_sync (0xffffffffu, sum, off);
  for (int e = lane; e < g.E; e += 32)
    {
      if (!g.scoring)
        scores[e] /= sum;
      sel[e] = (g.use_bias && bias) ? scores[e] + bias[e] : scores[e];
      allowed[e] = 1;
    }
  __syncwarp ();
  if (g.n_group > 1 && g.topk_group < g.n_group)
    limit_blocks (sel, allowed, g.n_group, g.E / g.n_group, g.topk_group, g.group_max, 2);
  if (g.node_limit > 0 && g.per_node > 0 && g.E / g.per_node > g.node_limit)
    limit_blocks (sel, allowed, g.E / g.per_node, g.per_node, g.node_limit, false,
                  (g.K + g.node_limit - 1) / g.node_limit);
  float wsum = 0.0f;
  float picked[64];
  int picked_id[64];
  for (int k = 0; k < g.K; k++)
    {
      float v = -INFINITY;
      int i = -1;
      for (int e = lane; e < g.E; e += 32)
        if (allowed[e] && (i < 0 || sel[e] > v))
          {
            v = sel[e];
            i = e;
          }
      warp_argmax (v, i);
      picked_id[k] = i;
      picked[k] = i >= 0 ? scores[i] : 0.0f;
      if (i >= 0)
        {
          wsum += scores[i];
          if (lane == 0)
            allowed[i] = 0;
        }
      __syncwarp ();
    }
  if (lane == 0)
    for (int k = 0; k < g.K; k++)
      {
        float wk = picked[k];
        if (g.normalize && wsum > 0.0f)
          wk /= wsum;
        ids[tok * g.K + k] = picked_id[k];
        wts[tok * g.K + k] = wk * g.scaling;
      }
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
  return TRUE;
}

gboolean
cuda_supports (const GateConfig *g, char **why)
{
  if (g->experts > MAX_E || g->top_k > 64 || g->n_group > MAX_BLOCKS
      || (g->node_limit && (g->experts_per_node == 0 || g->experts / g->experts_per_node > MAX_BLOCKS)))
    {
      if (why)
        *why = g_strdup_printf ("the CUDA gate takes at most %d experts, top-64 and %d groups or "
                                "nodes", MAX_E, MAX_BLOCKS);
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
  const int Hp = round_up (H, BK), Ep = round_up (E, BN);
  const long chunk = 65536; // tokens per pass: bounds device memory
  const int Tc = round_up (MIN (T, chunk), BM);
  __nv_bfloat16 *dX = nullptr, *dW = nullptr;
  float *dXf = nullptr, *dWf = nullptr, *dL = nullptr, *dB = nullptr, *dWts = nullptr;
  int *dIds = nullptr;
  bool ok = check (cudaMalloc (&dX, sizeof (__nv_bfloat16) * (long) Tc * Hp), why, "malloc")
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
  const int warps = 4;
  size_t smem = (size_t) warps * (2 * E * sizeof (float) + E);
  for (long t0 = 0; ok && t0 < T; t0 += chunk)
    {
      long n = MIN (chunk, T - t0);
      int np = round_up (n, BM);
      ok = check (cudaMemset (dX, 0, sizeof (__nv_bfloat16) * (long) np * Hp), why, "memset")
           && check (cudaMemcpy (dXf, hidden + t0 * H, sizeof (float) * n * H, cudaMemcpyHostToDevice), why, "copy");
      if (!ok)
        break;
      to_bf16<<<4096, 256>>> (dXf, dX, n, H, Hp);
      dim3 grid (Ep / BN, np / BM);
      logits_wmma<<<grid, 128>>> (dX, dW, dL, Hp, Ep);
      select_topk<<<(unsigned) ((n + warps - 1) / warps), warps * 32, smem>>> (dL, Ep, n, dg, dB, dIds, dWts);
      ok = check (cudaGetLastError (), why, "launch")
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

// Times the device part of the gate (logits GEMM + selection) on T tokens of
// device-resident bf16 inputs: microseconds per call, averaged over `reps`.
extern "C" gboolean
gate_cuda_bench (const GateConfig *g, long T, int reps, double *us_per_call, char **why)
{
  const int H = (int) g->hidden, E = (int) g->experts;
  const int Hp = round_up (H, BK), Ep = round_up (E, BN), Tp = round_up (T, BM);
  __nv_bfloat16 *dX = nullptr, *dW = nullptr;
  float *dL = nullptr, *dWts = nullptr;
  int *dIds = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  bool ok = check (cudaMalloc (&dX, sizeof (__nv_bfloat16) * (long) Tp * Hp), why, "malloc")
            && check (cudaMalloc (&dW, sizeof (__nv_bfloat16) * (long) Ep * Hp), why, "malloc")
            && check (cudaMalloc (&dL, sizeof (float) * (long) Tp * Ep), why, "malloc")
            && check (cudaMalloc (&dIds, sizeof (int) * T * g->top_k), why, "malloc")
            && check (cudaMalloc (&dWts, sizeof (float) * T * g->top_k), why, "malloc")
            && check (cudaEventCreate (&a), why, "event") && check (cudaEventCreate (&b), why, "event");
  DevGate dg = { E, (int) g->top_k, g->scoring == GATE_SIGMOID, 0, (int) g->n_group,
                 (int) g->topk_group, g->group_score == GATE_GROUP_MAX, 0, 0, g->normalize,
                 (float) g->scaling };
  const int warps = 4;
  size_t smem = (size_t) warps * (2 * E * sizeof (float) + E);
  if (ok)
    {
      fill_bf16<<<4096, 256>>> (dX, (long) Tp * Hp, 1u);
      fill_bf16<<<1024, 256>>> (dW, (long) Ep * Hp, 2u);
      dim3 grid (Ep / BN, Tp / BM);
      for (int r = -1; r < reps; r++) // one warm-up call
        {
          if (r == 0)
            cudaEventRecord (a);
          logits_wmma<<<grid, 128>>> (dX, dW, dL, Hp, Ep);
          select_topk<<<(unsigned) ((T + warps - 1) / warps), warps * 32, smem>>> (dL, Ep, T, dg, nullptr, dIds, dWts);
        }
      cudaEventRecord (b);
      ok = check (cudaEventSynchronize (b), why, "run") && check (cudaGetLastError (), why, "launch");
      float ms = 0;
      cudaEventElapsedTime (&ms, a, b);
      *us_per_call = ms * 1e3 / reps;
    }
  if (a)
    cudaEventDestroy (a);
  if (b)
    cudaEventDestroy (b);
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
