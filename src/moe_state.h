/* The state of one simulation of a pass, shared by moe.c (steps, hooks,
 * results) and moe_flows.c (the flows of a step's dispatch and combine).
 * Private to them. */
#pragma once

#include "moe_private.h"

#include "balance.h"
#include "engine.h"
#include "routing.h"

/* Task tags: a 4-bit kind, then the step and the GPU; dispatch flows (when
 * steps and GPUs fit 20 bits) carry the step, source and destination, so
 * the run knows which transfer into a GPU arrived last. */
enum { TAG_FLOW, TAG_START, TAG_EXPERT, TAG_DONE, TAG_DFLOW, TAG_PREP, TAG_SHARED };
#define TAG(kind, step, gpu) (((guint64) (kind) << 60) | ((guint64) (step) << 24) | (gpu))
#define TAG_KIND(t) ((guint) ((t) >> 60))
#define TAG_STEP(t) ((guint) (((t) >> 24) & 0xffffffffu))
#define TAG_GPU(t) ((guint) ((t) & 0xffffffu))
#define DTAG_BITS 20
#define DTAG(step, src, dst)                                                                       \
  (((guint64) TAG_DFLOW << 60) | ((guint64) (step) << 40) | ((guint64) (src) << 20) | (dst))
#define DTAG_STEP(t) ((guint) (((t) >> 40) & 0xfffffu))
#define DTAG_SRC(t) ((guint) (((t) >> 20) & 0xfffffu))
#define DTAG_DST(t) ((guint) ((t) & 0xfffffu))

typedef struct {
  SimTime start, send, expert_start, expert_end, done; /* send: the compute before dispatch done */
} GpuTimes;

/* One step of the pass: a micro-batch of an MoE layer, forward or
 * backward; `mirror` is the forward step whose routing a train_step's
 * backward step reuses (G_MAXUINT otherwise). */
typedef struct {
  guint layer, mb, mirror;
  gboolean backward;
} StepInfo;

/* The engine route from one GPU to another, and the link classes it uses
 * (bits: NVLink, IB, fabric); route G_MAXUINT until a flow goes that way. */
typedef struct {
  guint route;
  guint8 uses;
  SimTime latency;
} PairRoute;

typedef struct {
  const ScenarioSpec *s;
  const TopoSpec *t;
  Cluster *cluster;
  PairRoute *pair_route; /* [a * ep + b]; NULL at very large EP */
  Engine *engine;
  RoutingStream *routing;
  guint ep, n_steps, built;
  guint reported; /* steps started on some GPU (progress) */
  guint tokens_per_mb;
  StepInfo *steps;
  /* micro-batches in flight: each GPU runs one communication kernel at a
   * time, in the order dispatch of every micro-batch of a layer, then their
   * combines (two-batch overlap). A step's flows sent by GPU g in phase p
   * (0 dispatch, 1 combine) wait for gate[p][g] and end into join[p][g];
   * the group of a layer's micro-batches chains gates after joins. */
  EngineTask *comm_prev;  /* [ep]: join of the GPU's last communication phase */
  EngineTask *gates;      /* [chains][2][ep] of the group being built */
  EngineTask *joins;      /* the same */
  EngineTask *gate[2], *join[2]; /* the current step's rows, NULL when not ordered */
  guint chains;          /* independent step chains: micro-batches in flight */
  EngineTask *prev_done; /* [chain * ep + gpu]: done task of the chain's last built step */
  RoutingLayer **stash;  /* train_step: forward steps' routing, for their backward steps */
  /* this step's payloads per token copy */
  double db, cb;
  /* compute slow-down while communication kernels hold comm_sms SMs */
  double overlap_slowdown;
  guint comm_link0;      /* engine links of the GPUs' communication kernels: out 2g, in 2g + 1 */
  gboolean comm_links;
  gboolean rdma;         /* low_latency without NVLink */
  gboolean bundle;       /* flows between nodes sharing a core run bundled
                          * (direct and low_latency: no chunk chains) */
  GpuTimes *times;       /* [step * ep + gpu] */
  /* [step * ep + gpu]: the source of the dispatch transfer into the GPU
   * that ended last, and when; NULL when tags cannot hold them */
  guint32 *fed_by;
  SimTime *fed_at;
  RunResult *res;
  double dispatch_token_bytes, combine_token_bytes, grad_token_bytes;
  double ll_dispatch_token_bytes; /* low_latency: FP8 payload + 16 B of metadata */
  MoeWatch watch;
  guint *done_count; /* [step]: GPUs done with it */
  guint n_final;     /* steps [0, n_final) have their results */
  double *rows_scratch, *tokens_scratch; /* per expert slot, per GPU */
  /* the balanced counterfactual: the actual run records each step's totals
   * into `feed` (when not NULL); the counterfactual run (`balanced` not
   * NULL) makes each step's routing from them */
  BalanceFeed *feed;
  RoutingLayer *balanced;
  RouteClasses *classes;
  guint64 flows;
  /* the links in runs of consecutive ids of one utilisation group (a
   * group's links are mostly one run: a node's links of a class) */
  guint *run_start;   /* n_runs + 1 */
  guint *run_group;   /* n_runs */
  guint n_runs;
  double *group_load; /* scratch, per group */
  GArray *util_time;  /* double us */
  GArray *util;       /* float, n_util_groups per sample */
} Moe;

/* moe_flows.c: a step's dispatch and combine flows (and their accounting)
 * between its tasks: `send` (a GPU's tokens permuted, dispatch starts),
 * `expert` (its experts, after which the combine starts) and `post` (the
 * unpermute, which waits for the combine) */
void moe_build_direct (Moe *m, LayerResult *lr, guint step, const guint32 *copies, const EngineTask *send,
                       const EngineTask *expert, const EngineTask *post);
void moe_build_hierarchical (Moe *m, LayerResult *lr, guint step, const RoutingLayer *r, const EngineTask *send,
                             const EngineTask *expert, const EngineTask *post);
