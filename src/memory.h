/* GPU memory accounting of a run, per GPU, against the topology's HBM:
 *
 *   routed experts  its slots (local experts and redundant replicas) of every
 *                   MoE layer: 3 H I weights each, in model.expert_dtype;
 *   shared experts  model.shared_experts per MoE layer, the same size;
 *   dense layers    model.dense_layers dense FFNs, 3 H I_dense, same dtype;
 *   router          H x experts per MoE layer, BF16;
 *   buffers         dispatch and combine payload in and out of the GPU in its
 *                   worst step (what DeepEP-style buffers must hold);
 *   activations     train_step only: what the forward pass keeps for
 *                   backward, per MoE step the GPU's expert inputs (its rows
 *                   at the dispatch payload size) and SwiGLU inputs (2 I,
 *                   BF16 per row), the layer input (H, BF16 per token) and
 *                   the shared experts' 2 I per token; per dense layer
 *                   H + 2 I_dense per token (BF16).
 *
 * Not counted: attention and embedding weights, gradients and optimizer
 * states (a model with pipeline or ZeRO sharding would divide those), and
 * framework overhead.
 */
#pragma once

#include "moe.h"

typedef enum { MEM_ROUTED, MEM_SHARED, MEM_DENSE, MEM_ROUTER, MEM_BUFFERS, MEM_ACTIVATIONS, MEM_N } MemoryPart;
extern const char *const memory_part_names[];

typedef struct {
  double capacity;     /* bytes, gpu.hbm_gb */
  double *gpu_total;   /* [n_gpus] bytes */
  guint n_gpus;
  guint worst;         /* the GPU that needs the most */
  double worst_part[MEM_N];
} MemoryReport;

MemoryReport *memory_account (const Scenario *sc, const RunResult *r);
/* FALSE (MOESIM_CONFIG_ERROR) when a GPU needs more than its HBM, saying
 * which, by how much and for what, unless sim.allow_oversubscribe: then
 * TRUE with the same text in *warning (caller frees; NULL when it fits). */
gboolean memory_check (const Scenario *sc, const RunResult *r, char **warning, GError **error);
void memory_report_free (MemoryReport *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MemoryReport, memory_report_free)
