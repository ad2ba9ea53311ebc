/* Routing traces: moesim's native binary file of, per MoE layer and token,
 * the top-k expert ids and (optionally) their gate weights, with the batch
 * structure (which tokens were one forward pass) and self-describing
 * metadata. Layout in traces/FORMAT.md: a fixed little-endian header, a
 * key=value metadata block, a table of 64-byte-aligned blocks each with its
 * CRC-32. Files are memory-mapped and read in place; writers build the file
 * under a temporary name and rename it when complete.
 */
#pragma once

#include <glib.h>

#define MOESIM_TRACE_ERROR (moesim_trace_error_quark ())
GQuark moesim_trace_error_quark (void);

typedef enum {
  TRACE_ERROR_IO,
  TRACE_ERROR_FORMAT,   /* not a trace, or a damaged header/table */
  TRACE_ERROR_CHECKSUM, /* a block does not match its CRC */
  TRACE_ERROR_RANGE,    /* an id out of range, a repeated id in a token */
  TRACE_ERROR_INPUT,    /* bad input to an import */
} TraceError;

#define TRACE_MISSING (-1)

typedef struct {
  guint experts;
  guint top_k;
  guint layers;
  guint64 tokens;
  gboolean weights;
  gboolean batch; /* per-token request, step, phase, position */
} TraceShape;

typedef struct Trace Trace;

/* Maps a trace and validates its header, metadata and table (not the blocks:
 * see trace_check). */
Trace *trace_open (const char *path, GError **error);
void trace_free (Trace *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Trace, trace_free)

/* Verifies every block's CRC and that each id is missing or in [0, experts)
 * and not repeated within a token. */
gboolean trace_check (const Trace *t, GError **error);

const TraceShape *trace_shape (const Trace *t);
const char *trace_path (const Trace *t);
guint64 trace_file_bytes (const Trace *t);
/* Metadata value for `key`, NULL when absent. */
const char *trace_meta (const Trace *t, const char *key);
/* All metadata keys in file order (NULL-terminated, owned by t). */
const char *const *trace_meta_keys (const Trace *t);

/* Expert id of (layer, token, rank), or TRACE_MISSING. */
gint trace_id (const Trace *t, guint layer, guint64 token, guint rank);
/* Ids of a layer, tokens x top_k, 1 or 2 bytes each (trace_id_bytes);
 * missing = all ones. */
const void *trace_layer_ids (const Trace *t, guint layer);
guint trace_id_bytes (const Trace *t);
/* Gate weights of a layer (tokens x top_k little-endian f32) or NULL. */
const float *trace_layer_weights (const Trace *t, guint layer);
/* Batch structure (NULL without): request, step (0 = prefill), position,
 * and phase ('P' or 'D'), one each per token. */
const guint32 *trace_batch_req (const Trace *t);
const guint32 *trace_batch_step (const Trace *t);
const guint32 *trace_batch_pos (const Trace *t);
const guint8 *trace_batch_phase (const Trace *t);

/* ---- writing ---- */

typedef struct TraceWriter TraceWriter;

/* Starts a trace at `path` (written as PATH.tmp-XXXXXX until finished). */
TraceWriter *trace_writer_new (const char *path, const TraceShape *shape, GError **error);
void trace_writer_meta (TraceWriter *w, const char *key, const char *value);
/* Layers in order: `ids` are tokens x top_k values, TRACE_MISSING or an
 * expert; `weights` tokens x top_k or NULL (only when the shape has them). */
gboolean trace_writer_layer (TraceWriter *w, const gint32 *ids, const float *weights,
                             GError **error);
gboolean trace_writer_batch (TraceWriter *w, const guint32 *req, const guint32 *step,
                             const guint32 *pos, const guint8 *phase, GError **error);
/* Writes table and header and renames into place; frees w in any case. */
gboolean trace_writer_finish (TraceWriter *w, GError **error);
/* Drops the temporary file. */
void trace_writer_abort (TraceWriter *w);
