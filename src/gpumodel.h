/* GPU compute model for expert FFNs.
 *
 * An expert FFN on n rows costs 6 n H I FLOPs (gate and up projections, then
 * down) and reads its 3 H I weights. A grouped GEMM over a GPU's local
 * experts pads each expert's rows up to the GEMM's M tile, runs each expert at
 * the achieved throughput the topology's table gives for that many rows, and
 * cannot beat HBM: time = max(sum of FLOPs / achieved, bytes / HBM bandwidth)
 * + two kernel launches (gate/up and down). SMs held by communication
 * kernels stretch the time by 1 / sm_share in the engine, not here.
 */
#pragma once

#include "scenario.h"

typedef struct {
  double seconds;   /* total, launches included */
  double flops;     /* useful FLOPs (unpadded rows) */
  double hbm_bytes; /* weights + activations read and written */
} ComputeCost;

/* Routed experts: `rows[i]` rows for each of `n` local experts. */
ComputeCost gpumodel_grouped_ffn (const TopoSpec *t, const ScenarioSpec *s, const guint32 *rows,
                                  guint n);
/* Shared experts on `rows` of the GPU's own tokens (one dense FFN each). */
ComputeCost gpumodel_shared_ffn (const TopoSpec *t, const ScenarioSpec *s, guint64 rows);
/* A dense FFN layer (model.dense_intermediate) on `rows` tokens: its GEMMs. */
ComputeCost gpumodel_dense_ffn (const TopoSpec *t, const ScenarioSpec *s, guint64 rows);
/* Non-GEMM work, memory-bound: a kernel moving `bytes` through HBM plus
 * its launch; the SwiGLU activation between an FFN's GEMMs on `rows` rows
 * of intermediate size I (reads 2 I, writes I, BF16). */
double gpumodel_memory_kernel (const TopoSpec *t, double bytes);
double gpumodel_activation (const TopoSpec *t, const ScenarioSpec *s, double rows, double I);
/* The router's logits GEMM for `tokens` tokens (BF16, 2 H E FLOPs each). */
double gpumodel_router (const TopoSpec *t, const ScenarioSpec *s, guint64 tokens);

/* The attention / dense block before each MoE layer for `tokens` tokens:
 * block.time_us plus the roofline of block.flops_per_token (at the dense
 * BF16 peak) and block.bytes_per_token (at HBM bandwidth). */
ComputeCost gpumodel_block (const TopoSpec *t, const ScenarioSpec *s, guint64 tokens);
