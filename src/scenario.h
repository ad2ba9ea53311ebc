/* Scenario files (the sim folder): the model, the parallelism, the dispatch
 * algorithm, the routing source, the topology file and the outputs, parsed
 * once into a typed Scenario and validated together with its topology.
 * `--set key=value` overrides reach either schema: keys under gpu, node,
 * nvlink, nic and fabric go to the topology, all others to the scenario.
 */
#pragma once

#include "cluster.h"
#include "placement.h"
#include "topo.h"
#include "trace.h"

typedef enum { DISPATCH_DIRECT, DISPATCH_HIERARCHICAL, DISPATCH_LOW_LATENCY } DispatchAlgo;
extern const char *const dispatch_names[];
typedef enum { PASS_FORWARD, PASS_BACKWARD, PASS_TRAIN_STEP, PASS_PREFILL, PASS_DECODE } PassKind;
extern const char *const pass_names[];
typedef enum { OVERLAP_NONE, OVERLAP_SHARED_EXPERT, OVERLAP_TWO_MICROBATCH } OverlapKind;
extern const char *const overlap_names[];
typedef enum { SYNTH_UNIFORM } SynthKind;

/* A set of indices written as "all" or as ranges "0-3,8,57"; n = 0 means
 * all. Ranges are kept sorted and disjoint. */
typedef struct {
  guint n;
  guint *lo, *hi; /* inclusive */
} IndexSet;

gboolean index_set_has (const IndexSet *set, guint i);

typedef struct {
  char *name;
  char *topology; /* as written; resolved path in topology_path() */
  struct {
    gint64 hidden, moe_intermediate, experts, top_k, n_group, topk_group, shared_experts,
        moe_layers, dense_layers, dense_intermediate;
    int dispatch_dtype, combine_dtype, expert_dtype; /* Dtype */
    int grad_dtype; /* Dtype of the backward pass's transfers */
  } model;
  struct {
    gint64 ep, tokens_per_gpu, microbatches;
  } parallel;
  int dispatch; /* DispatchAlgo */
  gint64 dispatch_chunks; /* hierarchical: IB and NVLink stages pipeline in this many chunks */
  int pass;               /* PassKind */
  int overlap;            /* OverlapKind */
  gint64 comm_sms;        /* SMs the communication kernels hold; 0 = not modelled */
  struct {
    gboolean receive_hook; /* transfers in flight hold no SMs */
    gboolean nvlink;       /* FALSE: pure RDMA, NVLink unused */
  } low_latency;
  int placement;          /* PlacementKind */
  struct {
    gint64 redundant;      /* extra expert slots (replicas) */
    int policy;            /* EplbPolicy */
    char *load;            /* "" = the routing itself; else a trace, relative to the scenario */
  } eplb;
  struct {
    double time_us;        /* attention / dense block per step, given */
    double flops_per_token, bytes_per_token; /* or its roofline */
  } block;
  struct {
    struct {
      int kind; /* SynthKind */
      gint64 seed;
    } synthetic;
    char *trace; /* "" = synthetic; else a trace file, relative to the scenario */
    struct {
      char *preset; /* "" = off; else run this gate in process */
      gint64 tokens, seed, topics, doc_tokens;
      double zipf, strength;
    } gate;
  } routing;
  int cross_rail; /* CrossRail */
  struct {
    char *dir;
    IndexSet trace_layers, trace_gpus; /* what trace.json keeps */
    gint64 report_layer;               /* report.html's layer Gantt; -1 = the slowest */
  } output;
  struct {
    double tolerance;
    double max_memory_gb;
    gboolean counterfactual;
    gboolean allow_oversubscribe;
    gboolean bundle_flows;
  } sim;
} ScenarioSpec;

typedef struct Scenario Scenario;

/* Loads a scenario, applies `sets` ("key=value" strings, may be NULL), loads
 * its topology and validates both. Errors are MOESIM_CONFIG_ERROR with the
 * file and line:column or the --set that caused them. */
Scenario *scenario_load (const char *path, const char *const *sets, GError **error);
void scenario_free (Scenario *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Scenario, scenario_free)

const ScenarioSpec *scenario_spec (const Scenario *s);
const Topology *scenario_topology (const Scenario *s);
/* Makes the routing the scenario replays where loading left it to be made:
 * runs the in-process gate of routing.gate into a private trace, once
 * (about 0.1 s per layer per 1024 tokens at DeepSeek-V3's shape: spent by
 * what simulates, not by estimate or a sweep's checks of its scenario).
 * Nothing to do for synthetic routing or a trace file. moe_run calls it. */
gboolean scenario_make_routing (Scenario *sc, GError **error);
/* FALSE while routing.gate has not run (scenario_make_routing). */
gboolean scenario_routing_made (const Scenario *s);
/* The routing trace the scenario replays (a routing.gate's once made), or
 * NULL for synthetic routing. */
const Trace *scenario_trace (const Scenario *s);
/* The trace whose loads EPLB balances for (eplb.load), or NULL. */
const Trace *scenario_eplb_trace (const Scenario *s);
/* Notes for the user about how the inputs were fitted (e.g. trace tokens
 * reused); NULL-terminated, owned by the scenario. */
const char *const *scenario_notes (const Scenario *s);
/* How many times each trace token is used per layer (1 = each once). */
double scenario_trace_reuse (const Scenario *s);
/* TRUE when the trace was made in process by routing.gate. */
gboolean scenario_trace_from_gate (const Scenario *s);
const char *scenario_path (const Scenario *s);
/* Output folder: output.dir, or out/<name> when empty. Caller frees. */
char *scenario_output_dir (const Scenario *s);

/* Payload bytes of one token copy in a dtype at this hidden size: FP8 carries
 * one FP32 scale per 128 channels (7392 B at 7168), BF16 two bytes each. */
double scenario_token_bytes (const ScenarioSpec *s, Dtype dtype);

/* Host memory the simulator needs for this scenario, in bytes (estimate). */
double scenario_sim_memory_bytes (const ScenarioSpec *s, gint64 gpus_per_node);
/* Steps of the scenario's pass: MoE layers x micro-batches, twice for a
 * train_step (forward, then backward in reverse layer order). */
guint moe_pass_steps (const ScenarioSpec *s);

void scenario_describe_schema (GString *out);
