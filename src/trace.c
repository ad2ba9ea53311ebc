/* Trace file reader and writer. See traces/FORMAT.md for the layout; the
 * constants below are that document's. CRC-32 is zlib's (the IEEE
 * polynomial, as in gzip and PNG). */
#include "trace.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <zlib.h>

G_DEFINE_QUARK (moesim-trace-error-quark, moesim_trace_error)

#define MAGIC "MOESIMTR"
#define VERSION 1
#define HEADER_BYTES 128
#define ALIGN 64
#define FLAG_WEIGHTS 1u
#define FLAG_BATCH 2u

enum { BLOCK_IDS = 1, BLOCK_WEIGHTS, BLOCK_REQ, BLOCK_STEP, BLOCK_POS, BLOCK_PHASE };

typedef struct {
  guint64 offset, bytes;
  guint32 crc, kind;
} Block; /* 24 bytes on disk */

struct Trace {
  char *path;
  GMappedFile *map;
  const guint8 *base;
  guint64 len;
  TraceShape shape;
  guint id_bytes;
  Block *blocks;
  guint n_blocks;
  char **keys, **values;
};

static inline guint32
rd32 (const guint8 *p)
{
  return (guint32) p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

static inline guint64
rd64 (const guint8 *p)
{
  return (guint64) rd32 (p) | ((guint64) rd32 (p + 4) << 32);
}

static inline void
wr32 (guint8 *p, guint32 v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (guint8) (v >> (8 * i));
}

static inline void
wr64 (guint8 *p, guint64 v)
{
  wr32 (p, (guint32) v);
  wr32 (p + 4, (guint32) (v >> 32));
}

static gboolean
fail (GError **error, TraceError code, const char *path, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
fail (GError **error, TraceError code, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, MOESIM_TRACE_ERROR, code, "%s: %s", path, msg);
  return FALSE;
}

static guint64
blocks_expected (const TraceShape *s)
{
  return (guint64) s->layers * (s->weights ? 2 : 1) + (s->batch ? 4 : 0);
}

static guint
ids_width (guint experts)
{
  return experts <= 255 ? 1 : 2;
}

void
trace_free (Trace *t)
{
  if (t == NULL)
    return;
  if (t->map)
    g_mapped_file_unref (t->map);
  g_free (t->blocks);
  g_strfreev (t->keys);
  g_strfreev (t->values);
  g_free (t->path);
  g_free (t);
}

Trace *
trace_open (const char *path, GError **error)
{
  g_autoptr (Trace) t = g_new0 (Trace, 1);
  t->path = g_strdup (path);
  g_autoptr (GError) local = NULL;
  t->map = g_mapped_file_new (path, FALSE, &local);
  if (t->map == NULL)
    {
      fail (error, TRACE_ERROR_IO, path, "cannot read: %s", local->message);
      return NULL;
    }
  t->base = (const guint8 *) g_mapped_file_get_contents (t->map);
  t->len = g_mapped_file_get_length (t->map);
  const guint8 *h = t->base;
  if (t->len < HEADER_BYTES || memcmp (h, MAGIC, 8) != 0)
    {
      fail (error, TRACE_ERROR_FORMAT, path, "not a moesim trace (no %s magic at offset 0)", MAGIC);
      return NULL;
    }
  if (rd32 (h + 8) != VERSION)
    {
      fail (error, TRACE_ERROR_FORMAT, path, "trace format version %u, this moesim reads %u",
            rd32 (h + 8), VERSION);
      return NULL;
    }
  TraceShape *s = &t->shape;
  s->experts = rd32 (h + 16);
  s->top_k = rd32 (h + 20);
  s->layers = rd32 (h + 24);
  t->id_bytes = rd32 (h + 28);
  s->tokens = rd64 (h + 32);
  guint32 flags = rd32 (h + 40);
  s->weights = (flags & FLAG_WEIGHTS) != 0;
  s->batch = (flags & FLAG_BATCH) != 0;
  t->n_blocks = rd32 (h + 44);
  guint64 meta_off = rd64 (h + 48), meta_bytes = rd64 (h + 56);
  guint64 table_off = rd64 (h + 64), file_bytes = rd64 (h + 72);
  if (file_bytes != t->len)
    {
      fail (error, TRACE_ERROR_FORMAT, path, "truncated or padded: the header says %" G_GUINT64_FORMAT
            " bytes, the file has %" G_GUINT64_FORMAT, file_bytes, t->len);
      return NULL;
    }
  /* block sizes are products of header fields: every token takes at least
   * a byte of the file and every layer a table entry, which bounds them far
   * below overflow before anything is multiplied */
  if (s->experts == 0 || s->experts > 65535 || s->top_k == 0 || s->top_k > s->experts
      || t->id_bytes != ids_width (s->experts) || t->n_blocks != blocks_expected (s)
      || s->tokens > t->len || s->layers > t->len / 24
      || meta_off > t->len || meta_bytes > t->len - meta_off || table_off > t->len
      || (guint64) t->n_blocks * 24 > t->len - table_off)
    {
      fail (error, TRACE_ERROR_FORMAT, path, "damaged header (experts %u, top_k %u, layers %u, "
            "%u blocks)", s->experts, s->top_k, s->layers, t->n_blocks);
      return NULL;
    }
  guint32 crc = (guint32) crc32 (0L, h + 16, HEADER_BYTES - 16);
  crc = (guint32) crc32 (crc, t->base + meta_off, (uInt) meta_bytes);
  crc = (guint32) crc32 (crc, t->base + table_off, (uInt) (t->n_blocks * 24));
  if (crc != rd32 (h + 12))
    {
      fail (error, TRACE_ERROR_CHECKSUM, path, "header checksum mismatch (file damaged)");
      return NULL;
    }
  t->blocks = g_new (Block, t->n_blocks);
  guint64 per_token = s->top_k;
  for (guint i = 0; i < t->n_blocks; i++)
    {
      const guint8 *e = t->base + table_off + 24 * (guint64) i;
      Block *b = &t->blocks[i];
      b->offset = rd64 (e);
      b->bytes = rd64 (e + 8);
      b->crc = rd32 (e + 16);
      b->kind = rd32 (e + 20);
      guint64 want = 0;
      guint stride = s->weights ? 2 : 1;
      guint kind_want;
      if (i < s->layers * stride)
        {
          kind_want = (i % stride == 0) ? BLOCK_IDS : BLOCK_WEIGHTS;
          want = s->tokens * per_token * (kind_want == BLOCK_IDS ? t->id_bytes : 4);
        }
      else
        {
          kind_want = BLOCK_REQ + (i - s->layers * stride);
          want = s->tokens * (kind_want == BLOCK_PHASE ? 1 : 4);
        }
      if (b->kind != kind_want || b->bytes != want || b->offset % ALIGN != 0
          || b->offset > t->len || b->bytes > t->len - b->offset)
        {
          fail (error, TRACE_ERROR_FORMAT, path, "damaged block table (entry %u)", i);
          return NULL;
        }
    }
  /* metadata: key=value lines */
  g_autofree char *meta = g_strndup ((const char *) t->base + meta_off, meta_bytes);
  g_auto (GStrv) lines = g_strsplit (meta, "\n", -1);
  GPtrArray *keys = g_ptr_array_new (), *values = g_ptr_array_new ();
  for (guint i = 0; lines[i]; i++)
    {
      if (lines[i][0] == '\0')
        continue;
      char *eq = strchr (lines[i], '=');
      g_ptr_array_add (keys, eq ? g_strndup (lines[i], (gsize) (eq - lines[i])) : g_strdup (lines[i]));
      g_ptr_array_add (values, g_strdup (eq ? eq + 1 : ""));
    }
  g_ptr_array_add (keys, NULL);
  g_ptr_array_add (values, NULL);
  t->keys = (char **) g_ptr_array_free (keys, FALSE);
  t->values = (char **) g_ptr_array_free (values, FALSE);
  return g_steal_pointer (&t);
}

gboolean
trace_check (const Trace *t, GError **error)
{
  static const char *const kinds[] = { "", "ids", "weights", "req", "step", "pos", "phase" };
  for (guint i = 0; i < t->n_blocks; i++)
    {
      const Block *b = &t->blocks[i];
      guint32 crc = (guint32) crc32 (0L, Z_NULL, 0);
      guint64 done = 0;
      while (done < b->bytes) /* zlib takes 32-bit lengths */
        {
          guint64 n = MIN (b->bytes - done, (guint64) 1 << 30);
          crc = (guint32) crc32 (crc, t->base + b->offset + done, (uInt) n);
          done += n;
        }
      if (crc != b->crc)
        {
          guint stride = t->shape.weights ? 2 : 1;
          if (i < t->shape.layers * stride)
            return fail (error, TRACE_ERROR_CHECKSUM, t->path,
                         "checksum mismatch in the %s block of layer %u (file damaged)",
                         kinds[b->kind], i / stride);
          return fail (error, TRACE_ERROR_CHECKSUM, t->path,
                       "checksum mismatch in the batch %s block (file damaged)", kinds[b->kind]);
        }
    }
  const TraceShape *s = &t->shape;
  const guint8 *ph = trace_batch_phase (t);
  for (guint64 tok = 0; ph && tok < s->tokens; tok++)
    if (ph[tok] != 'P' && ph[tok] != 'D')
      return fail (error, TRACE_ERROR_RANGE, t->path, "token %" G_GUINT64_FORMAT
                   ": phase byte 0x%02x, expected 'P' or 'D'", tok, ph[tok]);
  for (guint l = 0; l < s->layers; l++)
    for (guint64 tok = 0; tok < s->tokens; tok++)
      for (guint k = 0; k < s->top_k; k++)
        {
          gint id = trace_id (t, l, tok, k);
          if (id == TRACE_MISSING)
            continue;
          if ((guint) id >= s->experts)
            return fail (error, TRACE_ERROR_RANGE, t->path,
                         "layer %u token %" G_GUINT64_FORMAT " rank %u: expert id %d, expected 0..%u",
                         l, tok, k, id, s->experts - 1);
          for (guint j = 0; j < k; j++)
            if (trace_id (t, l, tok, j) == id)
              return fail (error, TRACE_ERROR_RANGE, t->path,
                           "layer %u token %" G_GUINT64_FORMAT ": expert %d chosen twice", l, tok, id);
        }
  return TRUE;
}

const TraceShape *
trace_shape (const Trace *t)
{
  return &t->shape;
}

const char *
trace_path (const Trace *t)
{
  return t->path;
}

guint64
trace_file_bytes (const Trace *t)
{
  return t->len;
}

const char *
trace_meta (const Trace *t, const char *key)
{
  for (guint i = 0; t->keys[i]; i++)
    if (strcmp (t->keys[i], key) == 0)
      return t->values[i];
  return NULL;
}

const char *const *
trace_meta_keys (const Trace *t)
{
  return (const char *const *) t->keys;
}

guint
trace_id_bytes (const Trace *t)
{
  return t->id_bytes;
}

const void *
trace_layer_ids (const Trace *t, guint layer)
{
  g_return_val_if_fail (layer < t->shape.layers, NULL);
  return t->base + t->blocks[layer * (t->shape.weights ? 2 : 1)].offset;
}

const float *
trace_layer_weights (const Trace *t, guint layer)
{
  g_return_val_if_fail (layer < t->shape.layers, NULL);
  if (!t->shape.weights)
    return NULL;
  return (const float *) (t->base + t->blocks[layer * 2 + 1].offset);
}

gint
trace_id (const Trace *t, guint layer, guint64 token, guint rank)
{
  const guint8 *ids = trace_layer_ids (t, layer);
  guint64 i = token * t->shape.top_k + rank;
  if (t->id_bytes == 1)
    return ids[i] == 0xff ? TRACE_MISSING : ids[i];
  guint v = (guint) ids[2 * i] | ((guint) ids[2 * i + 1] << 8);
  return v == 0xffff ? TRACE_MISSING : (gint) v;
}

static const void *
batch_block (const Trace *t, guint which)
{
  if (!t->shape.batch)
    return NULL;
  return t->base + t->blocks[t->shape.layers * (t->shape.weights ? 2 : 1) + which].offset;
}

const guint32 *
trace_batch_req (const Trace *t)
{
  return batch_block (t, 0);
}

const guint32 *
trace_batch_step (const Trace *t)
{
  return batch_block (t, 1);
}

const guint32 *
trace_batch_pos (const Trace *t)
{
  return batch_block (t, 2);
}

const guint8 *
trace_batch_phase (const Trace *t)
{
  return batch_block (t, 3);
}

/* ---- writer ---- */

struct TraceWriter {
  char *path, *tmp;
  FILE *f;
  TraceShape shape;
  guint id_bytes;
  GString *meta;
  GArray *blocks; /* Block */
  guint layers_done;
  gboolean batch_done;
  guint64 offset;
};

static gboolean
w_write (TraceWriter *w, const void *data, gsize bytes, GError **error)
{
  if (bytes && fwrite (data, 1, bytes, w->f) != bytes)
    {
      int e = errno;
      return fail (error, TRACE_ERROR_IO, w->path, "cannot write: %s", g_strerror (e));
    }
  w->offset += bytes;
  return TRUE;
}

static gboolean
w_align (TraceWriter *w, GError **error)
{
  static const guint8 zeros[ALIGN] = { 0 };
  gsize pad = (ALIGN - w->offset % ALIGN) % ALIGN;
  return w_write (w, zeros, pad, error);
}

static gboolean
w_block (TraceWriter *w, guint kind, const void *data, gsize bytes, GError **error)
{
  if (!w_align (w, error))
    return FALSE;
  Block b = { w->offset, bytes, 0, kind };
  b.crc = (guint32) crc32 (0L, Z_NULL, 0);
  gsize done = 0;
  while (done < bytes)
    {
      gsize n = MIN (bytes - done, (gsize) 1 << 30);
      b.crc = (guint32) crc32 (b.crc, (const Bytef *) data + done, (uInt) n);
      done += n;
    }
  g_array_append_val (w->blocks, b);
  return w_write (w, data, bytes, error);
}

TraceWriter *
trace_writer_new (const char *path, const TraceShape *shape, GError **error)
{
  if (shape->experts < 1 || shape->experts > 65535 || shape->top_k < 1 || shape->top_k > shape->experts)
    {
      fail (error, TRACE_ERROR_INPUT, path, "a trace holds 1..65535 experts and top-k <= experts, "
            "not %u experts with top-%u", shape->experts, shape->top_k);
      return NULL;
    }
  TraceWriter *w = g_new0 (TraceWriter, 1);
  w->path = g_strdup (path);
  w->tmp = g_strdup_printf ("%s.tmp-XXXXXX", path);
  int fd = g_mkstemp (w->tmp);
  if (fd < 0)
    {
      int e = errno;
      fail (error, TRACE_ERROR_IO, path, "cannot write: %s", g_strerror (e));
      g_free (w->tmp);
      w->tmp = NULL;
      trace_writer_abort (w);
      return NULL;
    }
  fchmod (fd, 0644); /* mkstemp makes 0600; outputs are ordinary files */
  w->f = fdopen (fd, "wb");
  w->shape = *shape;
  w->id_bytes = ids_width (shape->experts);
  w->meta = g_string_new (NULL);
  w->blocks = g_array_new (FALSE, FALSE, sizeof (Block));
  guint8 zero[HEADER_BYTES] = { 0 };
  if (!w_write (w, zero, HEADER_BYTES, error))
    {
      trace_writer_abort (w);
      return NULL;
    }
  return w;
}

void
trace_writer_meta (TraceWriter *w, const char *key, const char *value)
{
  g_return_if_fail (strchr (key, '=') == NULL && strchr (key, '\n') == NULL);
  g_autofree char *v = g_strdup (value);
  g_strdelimit (v, "\n", ' ');
  g_string_append_printf (w->meta, "%s=%s\n", key, v);
}

gboolean
trace_writer_layer (TraceWriter *w, const gint32 *ids, const float *weights, GError **error)
{
  g_return_val_if_fail (w->layers_done < w->shape.layers, FALSE);
  g_return_val_if_fail ((weights != NULL) == w->shape.weights, FALSE);
  gsize n = (gsize) w->shape.tokens * w->shape.top_k;
  g_autofree guint8 *buf = g_malloc (n * w->id_bytes);
  for (gsize i = 0; i < n; i++)
    {
      guint v = ids[i] < 0 ? (w->id_bytes == 1 ? 0xffu : 0xffffu) : (guint) ids[i];
      g_return_val_if_fail (ids[i] < 0 || (guint) ids[i] < w->shape.experts, FALSE);
      if (w->id_bytes == 1)
        buf[i] = (guint8) v;
      else
        {
          buf[2 * i] = (guint8) v;
          buf[2 * i + 1] = (guint8) (v >> 8);
        }
    }
  if (!w_block (w, BLOCK_IDS, buf, n * w->id_bytes, error))
    return FALSE;
  if (weights)
    {
      /* little-endian f32 on disk; the hosts moesim builds for are little-endian */
      G_STATIC_ASSERT (G_BYTE_ORDER == G_LITTLE_ENDIAN);
      if (!w_block (w, BLOCK_WEIGHTS, weights, n * sizeof (float), error))
        return FALSE;
    }
  w->layers_done++;
  return TRUE;
}

gboolean
trace_writer_batch (TraceWriter *w, const guint32 *req, const guint32 *step, const guint32 *pos,
                    const guint8 *phase, GError **error)
{
  g_return_val_if_fail (w->shape.batch && !w->batch_done, FALSE);
  g_return_val_if_fail (w->layers_done == w->shape.layers, FALSE);
  gsize n = (gsize) w->shape.tokens;
  w->batch_done = TRUE;
  return w_block (w, BLOCK_REQ, req, n * 4, error) && w_block (w, BLOCK_STEP, step, n * 4, error)
         && w_block (w, BLOCK_POS, pos, n * 4, error) && w_block (w, BLOCK_PHASE, phase, n, error);
}

gboolean
trace_writer_finish (TraceWriter *w, GError **error)
{
  if (w->layers_done != w->shape.layers || (w->shape.batch && !w->batch_done))
    {
      fail (error, TRACE_ERROR_INPUT, w->path, "incomplete trace: %u of %u layers written",
            w->layers_done, w->shape.layers);
      trace_writer_abort (w);
      return FALSE;
    }
  if (!w_align (w, error))
    {
      trace_writer_abort (w);
      return FALSE;
    }
  guint64 meta_off = w->offset;
  if (!w_write (w, w->meta->str, w->meta->len, error) || !w_align (w, error))
    {
      trace_writer_abort (w);
      return FALSE;
    }
  guint64 table_off = w->offset;
  g_autofree guint8 *table = g_malloc0 (24 * (gsize) w->blocks->len + 1);
  for (guint i = 0; i < w->blocks->len; i++)
    {
      const Block *b = &g_array_index (w->blocks, Block, i);
      wr64 (table + 24 * i, b->offset);
      wr64 (table + 24 * i + 8, b->bytes);
      wr32 (table + 24 * i + 16, b->crc);
      wr32 (table + 24 * i + 20, b->kind);
    }
  if (!w_write (w, table, 24 * (gsize) w->blocks->len, error))
    {
      trace_writer_abort (w);
      return FALSE;
    }
  guint8 h[HEADER_BYTES] = { 0 };
  memcpy (h, MAGIC, 8);
  wr32 (h + 8, VERSION);
  wr32 (h + 16, w->shape.experts);
  wr32 (h + 20, w->shape.top_k);
  wr32 (h + 24, w->shape.layers);
  wr32 (h + 28, w->id_bytes);
  wr64 (h + 32, w->shape.tokens);
  wr32 (h + 40, (w->shape.weights ? FLAG_WEIGHTS : 0) | (w->shape.batch ? FLAG_BATCH : 0));
  wr32 (h + 44, w->blocks->len);
  wr64 (h + 48, meta_off);
  wr64 (h + 56, w->meta->len);
  wr64 (h + 64, table_off);
  wr64 (h + 72, w->offset);
  guint32 crc = (guint32) crc32 (0L, h + 16, HEADER_BYTES - 16);
  crc = (guint32) crc32 (crc, (const Bytef *) w->meta->str, (uInt) w->meta->len);
  crc = (guint32) crc32 (crc, table, (uInt) (24 * w->blocks->len));
  wr32 (h + 12, crc);
  gboolean ok = fseek (w->f, 0, SEEK_SET) == 0 && fwrite (h, 1, HEADER_BYTES, w->f) == HEADER_BYTES;
  int e = errno;
  ok = (fclose (w->f) == 0) && ok;
  w->f = NULL;
  if (!ok || g_rename (w->tmp, w->path) != 0)
    {
      if (ok)
        e = errno;
      fail (error, TRACE_ERROR_IO, w->path, "cannot write: %s", g_strerror (e));
      trace_writer_abort (w);
      return FALSE;
    }
  g_free (w->tmp);
  w->tmp = NULL;
  trace_writer_abort (w); /* frees what is left */
  return TRUE;
}

void
trace_writer_abort (TraceWriter *w)
{
  if (w == NULL)
    return;
  if (w->f)
    fclose (w->f);
  if (w->tmp)
    g_unlink (w->tmp);
  g_free (w->tmp);
  g_free (w->path);
  if (w->meta)
    g_string_free (w->meta, TRUE);
  if (w->blocks)
    g_array_free (w->blocks, TRUE);
  g_free (w);
}
