#include "gpumodel.h"

#include <math.h>

static ComputeCost
ffn_cost (const TopoSpec *t, const ScenarioSpec *s, double I, const guint32 *rows, guint n, guint64 dense_rows,
          guint n_dense)
{
  double H = (double) s->model.hidden;
  Dtype dt = (Dtype) s->model.expert_dtype;
  double tile = (double) t->gpu.gemm_tile_m;
  double compute = 0.0, flops = 0.0, bytes = 0.0;
  guint count = rows ? n : n_dense;
  for (guint i = 0; i < count; i++)
    {
      double r = rows ? (double) rows[i] : (double) dense_rows;
      if (r <= 0.0)
        continue;
      double padded = ceil (r / tile) * tile;
      double tflops = topology_gemm_tflops (t, dt, padded);
      compute += 6.0 * padded * H * I / (tflops * 1e12);
      flops += 6.0 * r * H * I;
      /* weights once; activations in (dtype) and out (bf16) of both GEMMs */
      bytes += 3.0 * H * I * dtype_bytes (dt) + r * (H + 2.0 * I) * dtype_bytes (dt)
               + r * (2.0 * I + H) * 2.0;
    }
  ComputeCost c = { 0 };
  if (flops == 0.0)
    return c;
  double mem = bytes / (t->gpu.hbm_gbps * 1e9);
  c.seconds = fmax (compute, mem) + 2.0 * t->gpu.launch_us * 1e-6;
  c.flops = flops;
  c.hbm_bytes = bytes;
  return c;
}

ComputeCost
gpumodel_grouped_ffn (const TopoSpec *t, const ScenarioSpec *s, const guint32 *rows, guint n)
{
  return ffn_cost (t, s, (double) s->model.moe_intermediate, rows, n, 0, 0);
}

ComputeCost
gpumodel_shared_ffn (const TopoSpec *t, const ScenarioSpec *s, guint64 rows)
{
  return ffn_cost (t, s, (double) s->model.moe_intermediate, NULL, 0, rows, (guint) s->model.shared_experts);
}

ComputeCost
gpumodel_block (const TopoSpec *t, const ScenarioSpec *s, guint64 tokens)
{
  ComputeCost c = { 0 };
  c.flops = s->block.flops_per_token * (double) tokens;
  c.hbm_bytes = s->block.bytes_per_token * (double) tokens;
  double roof = fmax (c.flops / (t->gpu.peak_tflops[DTYPE_BF16] * 1e12), c.hbm_bytes / (t->gpu.hbm_gbps * 1e9));
  c.seconds = s->block.time_us * 1e-6 + roof;
  return c;
}

ComputeCost
gpumodel_dense_ffn (const TopoSpec *t, const ScenarioSpec *s, guint64 rows)
{
  return ffn_cost (t, s, (double) s->model.dense_intermediate, NULL, 0, rows, 1);
}

double
gpumodel_memory_kernel (const TopoSpec *t, double bytes)
{
  return bytes / (t->gpu.hbm_gbps * 1e9) + t->gpu.launch_us * 1e-6;
}

double
gpumodel_router (const TopoSpec *t, const ScenarioSpec *s, guint64 tokens)
{
  double H = (double) s->model.hidden, E = (double) s->model.experts, n = (double) tokens;
  if (n == 0)
    return 0.0;
  /* logits in BF16: 2 n H E FLOPs at the table's throughput for n rows, or
   * the weights and tokens through HBM */
  double compute = 2.0 * n * H * E / (topology_gemm_tflops (t, DTYPE_BF16, n) * 1e12);
  double mem = (H * E + n * H + n * E) * 2.0 / (t->gpu.hbm_gbps * 1e9);
  return fmax (compute, mem) + t->gpu.launch_us * 1e-6;
}

double
gpumodel_activation (const TopoSpec *t, const ScenarioSpec *s, double rows, double I)
{
  (void) s;
  /* SwiGLU: read the gate and up outputs (2 I), write I, in BF16 */
  return rows > 0 ? gpumodel_memory_kernel (t, rows * 3.0 * I * 2.0) : 0.0;
}
