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
/* Appends the human summary. */
void report_summary_text (const Scenario *sc, const RunResult *r, GString *out);
/* Writes summary.json, layers.csv, gpus.csv and trace.json into `dir`
 * (created if needed). */
gboolean report_write (const Scenario *sc, const RunResult *r, const char *dir, GError **error);
/* Appends `moesim estimate`'s text. */
void report_estimate_text (const Scenario *sc, const Estimate *e, GString *out);
