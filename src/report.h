/* Run outputs: the human summary on stdout and DIR/summary.json (schema
 * "moesim.summary/1", documented in README). Files are written whole to a
 * temporary name and renamed, so a failed run leaves no partial output. */
#pragma once

#include "estimate.h"
#include "moe.h"

#define MOESIM_SUMMARY_SCHEMA "moesim.summary/1"

/* Builds summary.json's text (deterministic: no wall-clock figures). */
char *report_summary_json (const Scenario *sc, const RunResult *r);
/* layers.csv: one row per layer, micro-batch and phase; gpus.csv: one row
 * per GPU and step (schemas in README). */
char *report_layers_csv (const RunResult *r);
char *report_gpus_csv (const RunResult *r);
/* trace.json in Chrome trace event format (opens in Perfetto), made whole
 * (report_trace.c). */
char *report_trace_json (const Scenario *sc, const RunResult *r);

/* trace.json made while the pass runs: the same bytes, written step by
 * step by a thread of its own as the run makes steps final, into a
 * temporary file in `dir` (created if needed; an error here comes before
 * the run). report_trace_stream_steps is a MoeStepsFinal for the run's
 * watch (the stream as its user); report_write ends the stream with the
 * final results and renames the file over trace.json when every output
 * was written. Freed without that (a failed run, a failed check), it
 * leaves nothing behind: no temporary file, and no folder it made. */
typedef struct TraceStream TraceStream;
TraceStream *report_trace_stream_new (const Scenario *sc, const char *dir, GError **error);
void report_trace_stream_steps (void *user, const RunResult *r, guint n_final);
/* (for report_write) the run's final results: the thread writes the rest;
 * then waits for it and keeps the file (renamed) or, without `keep`,
 * leaves it to report_trace_stream_free */
void report_trace_stream_end (TraceStream *ts, const RunResult *r);
gboolean report_trace_stream_finish (TraceStream *ts, gboolean keep, GError **error);
void report_trace_stream_free (TraceStream *ts);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TraceStream, report_trace_stream_free)
/* report.html: self-contained (inline SVG, no script, no network). */
char *report_html (const Scenario *sc, const RunResult *r);

/* SVG pieces shared by report.html and sweep.html: a "nice" axis maximum
 * (1, 2 or 5 times a power of ten, at least v) and its tick step; the two
 * axes at (x0, y0) of w x h pixels with y ticks and both labels. */
double html_nice_max (double v, double *step);
void html_axes (GString *o, int x0, int y0, int w, int h, double ymax, double step, const char *ylabel,
                const char *xlabel);
/* The pass's imbalance in a few figures: means over steps and the worst
 * step of each measure, the node fan-out histogram summed over steps, and
 * what the balanced counterfactual says imbalance costs. */
typedef struct {
  double expert_mom, expert_mom_worst, expert_cv, expert_gini;
  double gpu_tokens_mom, gpu_tokens_mom_worst;
  double expert_time_mom, expert_time_mom_worst; /* expert phase max / mean over GPUs */
  double fanout_mean;                             /* nodes per routed token */
  guint64 *fanout;                                /* [nodes + 1], caller frees */
  gboolean counterfactual;
  double balanced_us, cost_us, cost_share; /* pass: actual - balanced, / actual */
  guint worst_cost_step;                   /* the step imbalance costs most */
  double worst_cost_us, worst_cost_share;
} ImbalanceSummary;
void report_imbalance (const RunResult *r, ImbalanceSummary *out);
/* What the text summary and report.html say beside the imbalance cost when
 * the solver tolerance makes it rough (NULL when it does not): the cost is
 * a difference of two pass times, each off by a few tenths of a percent at
 * the default tolerance, and not by the same amount. Free with g_free. */
char *report_cost_caveat (double tolerance);

/* Where a GPU's time goes, per GPU (mean over GPUs), over the pass: in the
 * MoE layers GEMMs (routed and shared experts, router), other compute
 * (permute, activation, unpermute, launches) and communication (the
 * dispatch and combine phases, waiting included); in the dense FFN layers
 * GEMMs and the rest. gemm_share = GEMM / all of it, per kind. */
typedef struct {
  double moe_gemm_us, moe_other_us, moe_comm_us, moe_gemm_share;
  double dense_gemm_us, dense_other_us, dense_gemm_share;
} Breakdown;
void report_breakdown (const RunResult *r, Breakdown *out);
/* Per step: the expert phase's max / mean over GPUs; the mean node fan-out
 * of its routed tokens. */
double report_expert_time_mom (const LayerResult *l);
double report_fanout_mean (const RunResult *r, guint step);

/* Appends the human summary. */
void report_summary_text (const Scenario *sc, const RunResult *r, GString *out);
/* Writes summary.json, layers.csv, gpus.csv, report.html and trace.json
 * into `dir` (created if needed); trace.json from `ts` when not NULL (see
 * above), else made now. */
gboolean report_write (const Scenario *sc, const RunResult *r, const char *dir, TraceStream *ts, GError **error);
/* Appends `moesim estimate`'s text. */
void report_estimate_text (const Scenario *sc, const Estimate *e, GString *out);
