/* Load statistics of a routing trace, per layer: for each expert the number
 * of (token, rank) slots assigned to it; mean = slots / experts; max/mean
 * (1.0 = balanced), coefficient of variation (population), Gini coefficient,
 * the hottest experts. With a placement (ep GPUs, experts contiguous, g GPUs
 * per node) also the per-GPU load max/mean and, per token, how many nodes
 * its experts span. A phase filter ('P' prefill, 'D' decode) keeps only the
 * tokens of that phase (needs the trace's batch structure). */
#pragma once

#include "trace.h"

#define TRACE_STATS_TOP 3

typedef struct {
  guint layer;
  guint64 tokens;      /* tokens with at least one routed slot */
  guint64 assignments; /* routed slots */
  guint64 max_load, min_load;
  double mean_load, max_over_mean, cv, gini;
  guint top_expert[TRACE_STATS_TOP];
  guint64 top_count[TRACE_STATS_TOP];
  /* with a placement */
  double gpu_max_over_mean;
  guint64 *fanout; /* [nodes + 1]: tokens whose experts span n nodes */
} TraceLayerStats;

typedef struct {
  TraceLayerStats *layers;
  guint n_layers;
  guint ep, gpus_per_node, nodes; /* 0 without a placement */
  char phase;
} TraceStats;

/* `phase` 0 for all tokens; `ep` 0 for no placement. */
TraceStats *trace_stats_compute (const Trace *t, char phase, guint ep, guint gpus_per_node,
                                 GError **error);
void trace_stats_free (TraceStats *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TraceStats, trace_stats_free)

void trace_stats_text (const Trace *t, const TraceStats *s, GString *out);
char *trace_stats_json (const Trace *t, const TraceStats *s);
