#include "traceio.h"

#include "npy.h"

#include <errno.h>
#include <math.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

static gboolean
input_error (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
input_error (GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, MOESIM_TRACE_ERROR, TRACE_ERROR_INPUT, msg);
  return FALSE;
}

/* Reads `req,step,phase,tok` rows into the four arrays (n rows expected). */
static gboolean
read_tokens_csv (const char *path, guint64 n, guint32 *req, guint32 *step, guint32 *pos,
                 guint8 *phase, GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr (GError) local = NULL;
  if (!g_file_get_contents (path, &text, NULL, &local))
    return input_error (error, "%s: cannot read: %s", path, local->message);
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  guint64 row = 0;
  for (guint i = 0; lines[i]; i++)
    {
      char *line = g_strstrip (lines[i]);
      if (line[0] == '\0')
        continue;
      if (i == 0)
        {
          if (strcmp (line, "req,step,phase,tok") != 0)
            return input_error (error, "%s:1: expected the header 'req,step,phase,tok', got '%s'",
                                path, line);
          continue;
        }
      g_auto (GStrv) f = g_strsplit (line, ",", -1);
      if (g_strv_length (f) != 4)
        return input_error (error, "%s:%u: expected 4 fields req,step,phase,tok, got '%s'", path,
                            i + 1, line);
      if (row >= n)
        return input_error (error, "%s:%u: more rows than the %" G_GUINT64_FORMAT
                            " tokens of the experts array", path, i + 1, n);
      guint64 v[3];
      const int idx[3] = { 0, 1, 3 };
      for (int k = 0; k < 3; k++)
        {
          char *end = NULL;
          errno = 0;
          v[k] = g_ascii_strtoull (f[idx[k]], &end, 10);
          if (f[idx[k]][0] == '\0' || *end != '\0' || errno != 0 || v[k] > G_MAXUINT32)
            return input_error (error, "%s:%u: field %d: expected a non-negative integer, got '%s'",
                                path, i + 1, idx[k] + 1, f[idx[k]]);
        }
      if (strcmp (f[2], "P") != 0 && strcmp (f[2], "D") != 0)
        return input_error (error, "%s:%u: phase: expected P or D, got '%s'", path, i + 1, f[2]);
      req[row] = (guint32) v[0];
      step[row] = (guint32) v[1];
      pos[row] = (guint32) v[2];
      phase[row] = (guint8) f[2][0];
      row++;
    }
  if (row != n)
    return input_error (error, "%s: %" G_GUINT64_FORMAT " rows, expected one per token (%"
                        G_GUINT64_FORMAT ")", path, row, n);
  return TRUE;
}

gboolean
trace_import (const TraceImport *in, const char *out, GError **error)
{
  g_autoptr (NpyArray) ex = npy_load (in->experts_npy, error);
  if (ex == NULL)
    return FALSE;
  if (!npy_dtype_is_int (ex->dtype))
    return input_error (error, "%s: dtype %s: expected integer expert ids", in->experts_npy,
                        npy_dtype_descr (ex->dtype));
  if (!npy_expect_ndim (ex, 3, "[tokens, layers, top_k]", error))
    return FALSE;
  guint64 T = ex->shape[0];
  guint L = (guint) ex->shape[1], K = (guint) ex->shape[2];
  if (T == 0 || L == 0 || K == 0)
    return input_error (error, "%s: empty array (shape %" G_GUINT64_FORMAT ", %u, %u)",
                        in->experts_npy, T, L, K);
  gint64 max_id = -1;
  for (gsize i = 0; i < ex->count; i++)
    {
      gint64 v = npy_get_int (ex, i);
      if (v < -1 || v > 65534 || (in->experts && v >= (gint64) in->experts))
        {
          gsize t = i / ((gsize) L * K), l = (i / K) % L, k = i % K;
          return input_error (error, "%s: [%zu, %zu, %zu] = %" G_GINT64_FORMAT
                              ": expected -1 (missing) or an expert id 0..%d",
                              in->experts_npy, t, l, k, v,
                              in->experts ? (int) in->experts - 1 : 65534);
        }
      max_id = MAX (max_id, v);
      /* a router picks an expert once per token (trace check rejects a repeat) */
      for (gsize j = i - i % K; v >= 0 && j < i; j++)
        if (npy_get_int (ex, j) == v)
          {
            gsize t = i / ((gsize) L * K), l = (i / K) % L;
            return input_error (error, "%s: [%zu, %zu, %zu] = %" G_GINT64_FORMAT
                                ": expert already chosen at [%zu, %zu, %zu]; a token's top-k ids must differ",
                                in->experts_npy, t, l, (gsize) (i % K), v, t, l, (gsize) (j % K));
          }
    }
  if (in->experts > 65535)
    return input_error (error, "--num-experts %u: a trace holds at most 65535 experts", in->experts);
  guint E = in->experts ? in->experts : (guint) (max_id + 1);
  if (E == 0)
    return input_error (error, "%s: every record is missing (-1)", in->experts_npy);
  if (K > E)
    return input_error (error, "%s: top_k %u exceeds the %u experts", in->experts_npy, K, E);

  g_autoptr (NpyArray) wt = NULL;
  if (in->weights_npy)
    {
      wt = npy_load (in->weights_npy, error);
      if (wt == NULL)
        return FALSE;
      if (npy_dtype_is_int (wt->dtype))
        return input_error (error, "%s: dtype %s: expected float weights", in->weights_npy,
                            npy_dtype_descr (wt->dtype));
      if (wt->ndim != 3 || wt->shape[0] != T || wt->shape[1] != L || wt->shape[2] != K)
        return input_error (error, "%s: shape does not match the experts array (%" G_GUINT64_FORMAT
                            ", %u, %u)", in->weights_npy, T, L, K);
      for (gsize i = 0; i < wt->count; i++)
        if (!isfinite (npy_get_double (wt, i)))
          return input_error (error, "%s: [%zu, %zu, %zu] = %g: expected a finite gate weight",
                              in->weights_npy, i / ((gsize) L * K), (i / K) % L, i % K, npy_get_double (wt, i));
    }
  TraceShape shape = { E, K, L, T, wt != NULL, in->tokens_csv != NULL };
  g_autofree guint32 *req = NULL, *step = NULL, *pos = NULL;
  g_autofree guint8 *phase = NULL;
  if (in->tokens_csv)
    {
      req = g_new (guint32, T);
      step = g_new (guint32, T);
      pos = g_new (guint32, T);
      phase = g_new (guint8, T);
      if (!read_tokens_csv (in->tokens_csv, T, req, step, pos, phase, error))
        return FALSE;
    }
  TraceWriter *w = trace_writer_new (out, &shape, error);
  if (w == NULL)
    return FALSE;
  trace_writer_meta (w, "producer", "moesim trace import");
  g_autofree char *b1 = g_path_get_basename (in->experts_npy);
  trace_writer_meta (w, "source.experts", b1);
  if (in->weights_npy)
    {
      g_autofree char *b2 = g_path_get_basename (in->weights_npy);
      trace_writer_meta (w, "source.weights", b2);
    }
  if (in->tokens_csv)
    {
      g_autofree char *b3 = g_path_get_basename (in->tokens_csv);
      trace_writer_meta (w, "source.tokens", b3);
    }
  g_autofree gint32 *ids = g_new (gint32, T * K);
  g_autofree float *wl = wt ? g_new (float, T * K) : NULL;
  for (guint l = 0; l < L; l++)
    {
      for (guint64 t = 0; t < T; t++)
        for (guint k = 0; k < K; k++)
          {
            gsize src = ((gsize) t * L + l) * K + k;
            ids[t * K + k] = (gint32) npy_get_int (ex, src);
            if (wl)
              wl[t * K + k] = (float) npy_get_double (wt, src);
          }
      if (!trace_writer_layer (w, ids, wl, error))
        {
          trace_writer_abort (w);
          return FALSE;
        }
    }
  if (in->tokens_csv && !trace_writer_batch (w, req, step, pos, phase, error))
    {
      trace_writer_abort (w);
      return FALSE;
    }
  return trace_writer_finish (w, error);
}

gboolean
trace_export (const Trace *t, const char *experts_npy, const char *weights_npy,
              const char *tokens_csv, GError **error)
{
  const TraceShape *s = trace_shape (t);
  if (weights_npy && !s->weights)
    return input_error (error, "%s: has no gate weights to export", trace_path (t));
  if (tokens_csv && !s->batch)
    return input_error (error, "%s: has no batch structure to export", trace_path (t));
  gsize n = (gsize) s->tokens * s->layers * s->top_k;
  gsize shape[3] = { (gsize) s->tokens, s->layers, s->top_k };
  gboolean wide = s->experts > 32767;
  g_autofree void *ids = g_malloc (n * (wide ? 4 : 2));
  g_autofree float *w = weights_npy ? g_new (float, n) : NULL;
  for (guint l = 0; l < s->layers; l++)
    {
      const float *lw = trace_layer_weights (t, l);
      for (guint64 tok = 0; tok < s->tokens; tok++)
        for (guint k = 0; k < s->top_k; k++)
          {
            gsize dst = ((gsize) tok * s->layers + l) * s->top_k + k;
            gint id = trace_id (t, l, tok, k);
            if (wide)
              ((gint32 *) ids)[dst] = id;
            else
              ((gint16 *) ids)[dst] = (gint16) id;
            if (w)
              w[dst] = lw[tok * s->top_k + k];
          }
    }
  if (!npy_save (experts_npy, wide ? NPY_I4 : NPY_I2, 3, shape, ids, error))
    return FALSE;
  if (w && !npy_save (weights_npy, NPY_F4, 3, shape, w, error))
    return FALSE;
  if (tokens_csv)
    {
      GString *csv = g_string_new ("req,step,phase,tok\n");
      const guint32 *req = trace_batch_req (t), *step = trace_batch_step (t), *pos = trace_batch_pos (t);
      const guint8 *ph = trace_batch_phase (t);
      for (guint64 i = 0; i < s->tokens; i++)
        g_string_append_printf (csv, "%u,%u,%c,%u\n", req[i], step[i], ph[i], pos[i]);
      gboolean ok = g_file_set_contents (tokens_csv, csv->str, (gssize) csv->len, error);
      g_string_free (csv, TRUE);
      return ok;
    }
  return TRUE;
}
