#include "safetensors.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

G_DEFINE_QUARK (moesim-safetensors-error-quark, moesim_safetensors_error)

struct SafeTensors {
  char *path;
  GMappedFile *map;
  const guint8 *data; /* start of the data region */
  guint64 data_len;
  JsonParser *parser;
  JsonObject *header;
};

void
safetensors_free (SafeTensors *st)
{
  if (st == NULL)
    return;
  if (st->parser)
    g_object_unref (st->parser);
  if (st->map)
    g_mapped_file_unref (st->map);
  g_free (st->path);
  g_free (st);
}

SafeTensors *
safetensors_open (const char *path, GError **error)
{
  g_autoptr (SafeTensors) st = g_new0 (SafeTensors, 1);
  st->path = g_strdup (path);
  g_autoptr (GError) local = NULL;
  st->map = g_mapped_file_new (path, FALSE, &local);
  if (st->map == NULL)
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_IO, "%s: cannot read: %s", path,
                   local->message);
      return NULL;
    }
  const guint8 *p = (const guint8 *) g_mapped_file_get_contents (st->map);
  guint64 len = g_mapped_file_get_length (st->map);
  guint64 n = 0;
  if (len >= 8)
    for (int i = 7; i >= 0; i--)
      n = (n << 8) | p[i];
  if (len < 8 || n > len - 8 || n == 0)
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_FORMAT,
                   "%s: not a safetensors file: header length %" G_GUINT64_FORMAT
                   " does not fit in %" G_GUINT64_FORMAT " bytes", path, n, len);
      return NULL;
    }
  st->parser = json_parser_new ();
  if (!json_parser_load_from_data (st->parser, (const char *) p + 8, (gssize) n, &local))
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_FORMAT,
                   "%s: malformed safetensors header: %s", path, local->message);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (st->parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_FORMAT,
                   "%s: malformed safetensors header: not a JSON object", path);
      return NULL;
    }
  st->header = json_node_get_object (root);
  st->data = p + 8 + n;
  st->data_len = len - 8 - n;
  return g_steal_pointer (&st);
}

static float
half_to_float (guint16 h)
{
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  float s = (h & 0x8000) ? -1.0f : 1.0f;
  if (e == 0)
    return s * ldexpf ((float) m, -24);
  if (e == 31)
    return m ? NAN : s * INFINITY;
  return s * ldexpf ((float) (m + 1024), e - 25);
}

float *
safetensors_read_f32 (const SafeTensors *st, const char *name, gsize *shape, guint *ndim,
                      GError **error)
{
  if (!json_object_has_member (st->header, name))
    {
      /* hint: a few names that look like gate tensors */
      GString *hint = g_string_new (NULL);
      g_autoptr (GList) names = json_object_get_members (st->header);
      guint shown = 0;
      for (GList *l = names; l && shown < 4; l = l->next)
        if (strstr (l->data, "gate") && strcmp (l->data, "__metadata__") != 0)
          {
            g_string_append_printf (hint, "%s%s", shown ? ", " : "; tensors with 'gate' include: ",
                                    (char *) l->data);
            shown++;
          }
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_MISSING, "%s: no tensor named '%s'%s",
                   st->path, name, hint->str);
      g_string_free (hint, TRUE);
      return NULL;
    }
  /* every node is type-checked before use: a damaged header is an error */
  JsonNode *tn = json_object_get_member (st->header, name);
  JsonObject *t = JSON_NODE_HOLDS_OBJECT (tn) ? json_node_get_object (tn) : NULL;
  JsonNode *dn = t ? json_object_get_member (t, "dtype") : NULL;
  JsonNode *sn = t ? json_object_get_member (t, "shape") : NULL;
  JsonNode *on = t ? json_object_get_member (t, "data_offsets") : NULL;
  const char *dtype = dn && JSON_NODE_HOLDS_VALUE (dn) && json_node_get_value_type (dn) == G_TYPE_STRING
                          ? json_node_get_string (dn) : NULL;
  JsonArray *sh = sn && JSON_NODE_HOLDS_ARRAY (sn) ? json_node_get_array (sn) : NULL;
  JsonArray *off = on && JSON_NODE_HOLDS_ARRAY (on) ? json_node_get_array (on) : NULL;
  gboolean ints = sh && off;
  for (guint i = 0; ints && i < json_array_get_length (sh); i++)
    {
      JsonNode *x = json_array_get_element (sh, i);
      ints = JSON_NODE_HOLDS_VALUE (x) && json_node_get_value_type (x) == G_TYPE_INT64;
    }
  for (guint i = 0; ints && i < json_array_get_length (off); i++)
    {
      JsonNode *x = json_array_get_element (off, i);
      ints = JSON_NODE_HOLDS_VALUE (x) && json_node_get_value_type (x) == G_TYPE_INT64;
    }
  if (dtype == NULL || !ints || json_array_get_length (off) != 2 || json_array_get_length (sh) > 8)
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_FORMAT,
                   "%s: tensor '%s': header entry lacks dtype, shape or data_offsets", st->path, name);
      return NULL;
    }
  gsize esize = strcmp (dtype, "F32") == 0 ? 4 : (strcmp (dtype, "F16") == 0 || strcmp (dtype, "BF16") == 0) ? 2 : 0;
  if (esize == 0)
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_DTYPE,
                   "%s: tensor '%s': dtype %s, expected F32, F16 or BF16", st->path, name, dtype);
      return NULL;
    }
  gsize count = 1, bytes = 0;
  gboolean fits = TRUE;
  *ndim = json_array_get_length (sh);
  for (guint i = 0; i < *ndim; i++)
    {
      gint64 d = json_array_get_int_element (sh, i);
      fits &= d >= 0;
      shape[i] = d < 0 ? 0 : (gsize) d;
      fits &= g_size_checked_mul (&count, count, shape[i]);
    }
  fits &= g_size_checked_mul (&bytes, count, esize);
  gint64 b = json_array_get_int_element (off, 0), e = json_array_get_int_element (off, 1);
  if (!fits || b < 0 || e < b || (guint64) e > st->data_len || (guint64) (e - b) != bytes)
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_FORMAT,
                   "%s: tensor '%s': data_offsets [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                   "] past the end of the %" G_GUINT64_FORMAT " data bytes or not %zu x %zu bytes",
                   st->path, name, b, e, st->data_len, count, esize);
      return NULL;
    }
  const guint8 *src = st->data + b;
  float *out = g_new (float, MAX (count, 1));
  for (gsize i = 0; i < count; i++)
    {
      if (esize == 4)
        {
          guint32 v = (guint32) src[4 * i] | ((guint32) src[4 * i + 1] << 8)
                      | ((guint32) src[4 * i + 2] << 16) | ((guint32) src[4 * i + 3] << 24);
          memcpy (&out[i], &v, 4);
        }
      else
        {
          guint16 v = (guint16) (src[2 * i] | (src[2 * i + 1] << 8));
          if (dtype[0] == 'B')
            {
              guint32 w = (guint32) v << 16;
              memcpy (&out[i], &w, 4);
            }
          else
            out[i] = half_to_float (v);
        }
    }
  return out;
}
