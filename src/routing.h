/* Routing: which experts each token of each GPU selects, per MoE layer and
 * micro-batch, reduced to what the workload needs: tokens sent from GPU s to
 * GPU d (a token counts once per destination GPU however many of its experts
 * live there) and rows per expert.
 *
 * Synthetic uniform model: each token picks topk_group of the n_group
 * expert groups uniformly at random, then top_k distinct experts uniformly
 * among the experts of those groups (with n_group = topk_group = 1, top_k
 * distinct experts out of all). A layer placement (placement.h) maps each
 * selection to a slot (expert replica) and so a GPU; without one (NULL)
 * expert e is slot e, on GPU e / (experts / ep). Counts per expert are per
 * slot. Streams are seeded per (seed, layer, micro-batch, GPU), so the
 * routing is identical whatever order GPUs are generated in.
 */
#pragma once

#include "placement.h"
#include "scenario.h"

typedef struct {
  guint ep;
  guint experts;
  guint32 *pair_tokens; /* [src * ep + dst], dst == src counts local tokens */
  guint32 *expert_rows; /* [expert]: (token, expert) selections */
  guint gpus_per_node;  /* 0 unless node counts were asked for */
  guint32 *node_tokens; /* [src * nodes + node]: tokens of src with an expert on node */
  guint32 *fanout;      /* [nodes + 1]: tokens whose experts span n nodes (0: routed nowhere) */
  guint32 *pair_selections; /* [src * ep + dst]: (token, expert) selections, no dedup */
} RoutingLayer;

RoutingLayer *routing_layer_new (guint ep, guint experts);
/* Also count, per source GPU and node, the tokens that need that node (a
 * token counts once per node however many of its experts live there), and
 * the tokens by how many nodes their experts span. */
void routing_layer_count_nodes (RoutingLayer *r, guint gpus_per_node);
void routing_layer_free (RoutingLayer *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RoutingLayer, routing_layer_free)

/* Fills `out` for (layer, micro-batch) with `tokens` tokens per GPU. */
void routing_synthetic (const ScenarioSpec *s, const LayerPlacement *pl, guint layer, guint mb, guint tokens,
                        RoutingLayer *out);

/* The same from a trace of T tokens: GPU g, micro-batch m takes `tokens`
 * consecutive trace tokens from (floor(g T / ep) + m x tokens) mod T,
 * wrapping: disjoint windows when the trace is long enough, evenly spread
 * overlapping ones when not (so GPUs never all see the same tokens); MoE
 * layer l replays trace layer l mod L; missing records route nowhere. The
 * trace's experts must equal the scenario's (scenario_load checks). */
void routing_from_trace (const ScenarioSpec *s, const Trace *t, const LayerPlacement *pl, guint layer,
                         guint mb, guint tokens, RoutingLayer *out);

/* Logical expert loads of MoE layer `layer` [experts]: selections of every
 * micro-batch and GPU of the scenario (from its trace or synthetic
 * routing); or of every token of trace layer layer mod its layers. */
void routing_layer_loads (const ScenarioSpec *s, const Trace *trace, guint layer, double *load);
void routing_trace_loads (const Trace *t, guint layer, guint experts, double *load);

/* A stream of routing layers for steps 0..n_steps-1 (step i is micro-batch
 * i mod microbatches of MoE layer step_layer[i / microbatches], or of layer
 * i / microbatches when step_layer is NULL), from the trace when given, else
 * synthetic, generated ahead by worker threads into a ring of `window` slots
 * while the caller simulates. Every step's content depends only on the seed,
 * the layer and the micro-batch, never on threads or timing. */
typedef struct RoutingStream RoutingStream;
RoutingStream *routing_stream_new (const ScenarioSpec *s, const Trace *trace,
                                   LayerPlacement *const *placement /* per MoE layer, or NULL */,
                                   guint n_steps, const guint *step_layer, guint tokens, guint threads,
                                   guint window,
                                   guint count_nodes_of /* gpus per node, 0 = no node counts */);
/* Returns step `step` once it is ready; steps must be asked for in order,
 * and the previous step's layer is recycled by this call. While the step
 * is not ready the caller generates queued steps no worker has started
 * (this one or later ones), and blocks only when there are none. */
const RoutingLayer *routing_stream_get (RoutingStream *rs, guint step);
/* The layer routing_stream_get just returned for `step`, now the caller's
 * (to free with routing_layer_free): its slot gets a new layer, which the
 * generating thread first writes, instead of a copy made by the caller. */
RoutingLayer *routing_stream_take (RoutingStream *rs, guint step);
void routing_stream_free (RoutingStream *rs);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RoutingStream, routing_stream_free)
