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
/* trace.json in Chrome trace event format (opens in Perfetto). */
char *report_trace_json (const Scenario *sc, const RunResult *r);
/* report.html: self-contained (inline SVG, no script, no network). */
char *report_html (const Scenario *sc, const RunResult *r);

/* SVG pieces shared by report.html and sweep.html: a "nice" axis maximum
 * (1, 2 or 5 times a power of ten, at least v) and its tick step; the two
 * axes at (x0, y0) of w x h pixels with y ticks and both labels. */
double html_nice_max (double v, double *step);
void html_axes (GString *o, int x0, int y0, int w, int h, double ymax, double step, const char *ylabel,
                const char *xlabel);
/* Appends the human summary. */
void report_summary_text (const Scenario *sc, const RunResult *r, GString *out);
/* Writes summary.json, layers.csv, gpus.csv and trace.json into `dir`
 * (created if needed). */
gboolean report_write (const Scenario *sc, const RunResult *r, const char *dir, GError **error);
/* Appends `moesim estimate`'s text. */
void report_estimate_text (const Scenario *sc, const Estimate *e, GString *out);
