/* Trace import and export in the NumPy layout that inference engines return
 * for routed experts: experts [tokens, layers, top_k] integers with -1 for a
 * missing record, optional weights [tokens, layers, top_k] float32, optional
 * tokens.csv with one `req,step,phase,tok` row per token. A round trip
 * (import, export) gives back the same ids, weights and rows. */
#pragma once

#include "trace.h"

typedef struct {
  const char *experts_npy; /* required */
  const char *weights_npy; /* may be NULL */
  const char *tokens_csv;  /* may be NULL */
  guint experts;           /* 0: one more than the largest id */
} TraceImport;

/* Writes `out`; errors name the input file (and line for the CSV). */
gboolean trace_import (const TraceImport *in, const char *out, GError **error);

/* Writes the arrays of a trace; `weights_npy` and `tokens_csv` may be NULL. */
gboolean trace_export (const Trace *t, const char *experts_npy, const char *weights_npy,
                       const char *tokens_csv, GError **error);
