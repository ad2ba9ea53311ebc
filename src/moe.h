/* MoE forward pass simulation: the workload builder and its results.
 *
 * Per MoE layer and micro-batch ("step") and per GPU g:
 *   start(g)  - a join point after g finished the previous step;
 *   dispatch  - direct: one flow per (g, d) pair carrying the tokens of g
 *               that select at least one expert on d (deduplicated per
 *               destination GPU), over the cluster's route g -> d;
 *               hierarchical: one IB copy per (token, node) to the rail
 *               peer, then NVLink forwarding, chunked (see moe.c);
 *   expert(g) - a compute task: grouped GEMM over g's local experts plus the
 *               shared experts on g's own tokens; it waits for every
 *               dispatch flow into g;
 *               low_latency: one copy per (token, expert) selection,
 *               straight to the owner GPU, no deduplication;
 *   combine   - the reverse flows, each waiting for its sender's experts
 *               (hierarchical: reduced on the rail peer before the IB copy);
 *   done(g)   - when all of g's tokens came back.
 * Phase times per GPU: dispatch = expert start - start, expert = its
 * duration, combine = done - expert end.
 *
 * Steps are built one ahead of the running one (built when the first GPU
 * starts the previous step), so memory stays at two steps of tasks however
 * many layers a pass has.
 */
#pragma once

#include "cluster.h"
#include "loadstats.h"
#include "scenario.h"

typedef struct {
  double max_us, mean_us;
} PhaseStat;

typedef struct {
  guint layer, microbatch;
  gboolean backward;            /* a backward step (train_step, backward) */
  double start_us, end_us;      /* first GPU start, last GPU done */
  PhaseStat prep;               /* compute before dispatch: the block (attention / dense part,
                                 * when given), the router and the permute */
  PhaseStat dispatch, expert, combine;
  double bytes[LCLASS_N];       /* wire bytes by class, dispatch + combine */
  double phase_bytes[2][LCLASS_N]; /* the same for dispatch [0] and combine [1] */
  double dispatch_bytes, combine_bytes; /* payload sent between GPUs */
  /* bytes as DeepEP's benchmarks count them (see moe.c), and the logical
   * bandwidth they give over the slowest GPU's phase time */
  double logical_dispatch_bytes, logical_combine_bytes;
  double dispatch_logical_gbps, combine_logical_gbps;
  guint flows;
  /* imbalance: rows per expert, tokens received per GPU (own included) */
  LoadStats expert_load, gpu_tokens;
  /* the same step with its selections spread perfectly evenly (see moe.c),
   * last GPU done - first GPU start; 0 without the counterfactual */
  double balanced_us;
} LayerResult;

typedef struct {
  guint gpu, node;
  guint64 tokens_in; /* tokens received for expert compute, own included */
  double bytes_out, bytes_in; /* payload over the network, both phases */
} GpuResult;

/* One GPU in one step (layer x micro-batch). */
typedef struct {
  guint64 tokens_in;
  double bytes_out, bytes_in;
  double prep_us, dispatch_us, expert_us, combine_us;
  /* compute at full SMs: GEMMs (routed and shared experts, router) and the
   * rest (permute, activation, unpermute, their launches) */
  double gemm_us, other_us;
  double start_us; /* when the GPU started the step; phases follow back to back */
  guint32 fed_by;  /* the GPU whose dispatch transfer into this one ended last
                    * (G_MAXUINT32: none, or not tracked) */
} GpuStepResult;

typedef struct {
  int pass;        /* PassKind of the scenario */
  /* per GPU, the dense FFN layers of the pass (forward and backward):
   * GEMMs and the rest (activation, norm), at full SMs */
  double dense_gemm_us, dense_other_us;
  double total_us; /* the whole pass, last GPU done */
  LayerResult *layers;
  guint n_layers; /* steps: moe_layers x microbatches */
  GpuResult *gpus;
  guint n_gpus;
  GpuStepResult *gpu_steps; /* [step * n_gpus + gpu] */
  guint32 *expert_rows;     /* [step * experts + expert]: (token, expert) selections */
  guint experts;
  guint nodes;
  guint32 *fanout;          /* [step * (nodes + 1) + n]: tokens whose experts span n nodes */
  /* the balanced counterfactual ran (sim.counterfactual): its pass time */
  gboolean counterfactual;
  double balanced_total_us;
  double balanced_class_bytes[LCLASS_N]; /* its wire bytes: the actual run's, by construction */
  double class_bytes[LCLASS_N];
  /* bottleneck: the link that needs the most time at full rate */
  char *bottleneck_link;
  LinkClass bottleneck_class;
  double bottleneck_busy_us;    /* its bytes / capacity */
  double bottleneck_util;       /* busy / total communication window */
  double class_util[LCLASS_N];  /* same, for the busiest link of each class */
  double comm_window_us;        /* sum over steps of dispatch + combine max */
  /* Link utilisation over time. Groups: the NVLink ports of node n (group
   * n), the NIC ports of node n (group nodes + n), all leaf-spine links (group
   * 2 nodes; capacity 0 when the fabric has none). A sample is taken each
   * time rates change; util[i * n_util_groups + g] is the load of group g
   * from util_time_us[i] to the next sample, as a fraction of its capacity
   * (both directions counted). The last sample is all zero. */
  guint n_util_groups;
  LinkClass *util_group_class;
  double *util_group_capacity; /* bytes/s */
  guint n_util_samples;
  double *util_time_us;
  float *util;
  /* bytes counted on the links as flows started, per class, every hop of
   * every flow (the integral of the sampled loads over time) */
  double class_link_bytes[LCLASS_N];
  /* engine figures */
  guint64 events, flows, solves;
  double wall_s;
} RunResult;

/* What a step is, as reports name it: "backward" for backward steps, else
 * "forward", "prefill" or "decode" after the scenario's pass. */
const char *moe_step_pass (const RunResult *r, guint step);

/* Runs the scenario's pass, making its routing first where loading left
 * that to be done (scenario_make_routing: the in-process gate). Returns
 * NULL only for internal errors and a gate's trace that cannot be written. */
RunResult *moe_run (Scenario *sc, GError **error);

/* What a caller can watch while the pass runs, on the simulating thread:
 * `progress` each time a step (layer x micro-batch) starts on its first
 * GPU, with the steps started and the total; `steps_final` each time the
 * results of the steps [0, n_final) became final (their layers[],
 * gpu_steps[], expert_rows[] and fanout[] entries no longer change; the
 * counterfactual's balanced_us comes at the end; the rest of `r` is the
 * run's so far), or with `r` NULL when the run failed after all (its
 * results are freed once this returns). Either may be NULL. */
typedef void (*MoeProgress) (void *user, guint steps_started, guint steps);
typedef void (*MoeStepsFinal) (void *user, const RunResult *r, guint n_final);
typedef struct {
  MoeProgress progress;
  MoeStepsFinal steps_final;
  void *user;
} MoeWatch;
RunResult *moe_run_watched (Scenario *sc, const MoeWatch *watch, GError **error);
void run_result_free (RunResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RunResult, run_result_free)
