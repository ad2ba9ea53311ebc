/* .npy header: magic "\x93NUMPY", major, minor, header length (u16 for 1.x,
 * u32 for 2.x/3.x), then a Python dict literal with 'descr', 'fortran_order'
 * and 'shape', padded with spaces to a multiple of 64 and ended by '\n'. The
 * dict is parsed by hand: only those three keys, in any order. */
#include "npy.h"

#include <errno.h>
#include <math.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>

G_DEFINE_QUARK (moesim-npy-error-quark, moesim_npy_error)

static const char *const descrs[NPY_N_DTYPES]
    = { "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8" };
static const gsize sizes[NPY_N_DTYPES] = { 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8 };

gsize
npy_dtype_size (NpyDtype d)
{
  return sizes[d];
}

const char *
npy_dtype_descr (NpyDtype d)
{
  static const char *const full[NPY_N_DTYPES]
      = { "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8" };
  return full[d];
}

gboolean
npy_dtype_is_int (NpyDtype d)
{
  return d <= NPY_U8;
}

void
npy_free (NpyArray *a)
{
  if (a == NULL)
    return;
  if (a->map)
    g_mapped_file_unref (a->map);
  g_free (a->path);
  g_free (a);
}

static gboolean
bad (GError **error, NpyError code, const char *path, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
bad (GError **error, NpyError code, const char *path, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, MOESIM_NPY_ERROR, code, "%s: %s", path, msg);
  return FALSE;
}

/* Finds 'key': in the dict text and returns a pointer past the colon. */
static const char *
dict_value (const char *dict, const char *key)
{
  g_autofree char *k1 = g_strdup_printf ("'%s'", key);
  g_autofree char *k2 = g_strdup_printf ("\"%s\"", key);
  const char *p = strstr (dict, k1);
  if (p == NULL)
    p = strstr (dict, k2);
  if (p == NULL)
    return NULL;
  p += strlen (k1);
  while (*p == ' ')
    p++;
  if (*p != ':')
    return NULL;
  p++;
  while (*p == ' ')
    p++;
  return p;
}

static gboolean
parse_header (NpyArray *a, const char *dict, GError **error)
{
  const char *d = dict_value (dict, "descr");
  if (d == NULL || (*d != '\'' && *d != '"'))
    return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: no 'descr' string in %s",
                dict);
  char q = *d++;
  const char *e = strchr (d, q);
  if (e == NULL || e - d < 2 || e - d > 8)
    return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: bad 'descr' in %s", dict);
  g_autofree char *descr = g_strndup (d, (gsize) (e - d));
  char order = descr[0];
  const char *code = descr + 1;
  int found = -1;
  for (int i = 0; i < NPY_N_DTYPES; i++)
    if (strcmp (code, descrs[i]) == 0)
      found = i;
  if (found < 0 || order == '>' || (sizes[found] > 1 && order == '|'))
    return bad (error, NPY_ERROR_DTYPE, a->path,
                "unsupported dtype '%s': expected little-endian int8/16/32/64, uint8/16/32/64 "
                "or float16/32/64 (bf16 as '<u2')",
                descr);
  a->dtype = (NpyDtype) found;

  const char *fo = dict_value (dict, "fortran_order");
  if (fo == NULL)
    return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: no 'fortran_order'");
  if (g_str_has_prefix (fo, "True"))
    return bad (error, NPY_ERROR_DTYPE, a->path,
                "Fortran-order arrays are not supported: save with np.ascontiguousarray");
  if (!g_str_has_prefix (fo, "False"))
    return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: bad 'fortran_order'");

  const char *sh = dict_value (dict, "shape");
  if (sh == NULL || *sh != '(')
    return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: no 'shape' tuple");
  sh++;
  a->ndim = 0;
  a->count = 1;
  for (;;)
    {
      while (*sh == ' ' || *sh == ',')
        sh++;
      if (*sh == ')')
        break;
      char *end = NULL;
      errno = 0;
      guint64 v = g_ascii_strtoull (sh, &end, 10);
      if (end == sh || errno != 0 || *sh == '-')
        return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: bad 'shape' near '%.20s'",
                    sh);
      if (a->ndim == NPY_MAX_DIMS)
        return bad (error, NPY_ERROR_SHAPE, a->path, "more than %d dimensions", NPY_MAX_DIMS);
      a->shape[a->ndim++] = (gsize) v;
      if (v != 0 && a->count > G_MAXSIZE / v)
        return bad (error, NPY_ERROR_FORMAT, a->path, "malformed .npy header: shape overflows");
      a->count *= (gsize) v;
      sh = end;
    }
  return TRUE;
}

NpyArray *
npy_load (const char *path, GError **error)
{
  g_autoptr (NpyArray) a = g_new0 (NpyArray, 1);
  a->path = g_strdup (path);
  g_autoptr (GError) local = NULL;
  a->map = g_mapped_file_new (path, FALSE, &local);
  if (a->map == NULL)
    {
      g_set_error (error, MOESIM_NPY_ERROR, NPY_ERROR_IO, "%s: cannot read: %s", path,
                   local->message);
      return NULL;
    }
  const guint8 *p = (const guint8 *) g_mapped_file_get_contents (a->map);
  gsize len = g_mapped_file_get_length (a->map);
  if (len < 10 || memcmp (p, "\x93NUMPY", 6) != 0)
    {
      bad (error, NPY_ERROR_FORMAT, path, "not a .npy file (no \\x93NUMPY magic at offset 0)");
      return NULL;
    }
  guint major = p[6];
  gsize hlen, start;
  if (major == 1)
    {
      hlen = (gsize) p[8] | ((gsize) p[9] << 8);
      start = 10;
    }
  else if (major == 2 || major == 3)
    {
      if (len < 12)
        {
          bad (error, NPY_ERROR_FORMAT, path, "truncated .npy header");
          return NULL;
        }
      hlen = (gsize) p[8] | ((gsize) p[9] << 8) | ((gsize) p[10] << 16) | ((gsize) p[11] << 24);
      start = 12;
    }
  else
    {
      bad (error, NPY_ERROR_FORMAT, path, "unsupported .npy format version %u.%u (expected 1, 2 or 3)",
           major, p[7]);
      return NULL;
    }
  if (start + hlen > len)
    {
      bad (error, NPY_ERROR_FORMAT, path, "truncated .npy header: %zu header bytes announced, %zu in file",
           hlen, len - start);
      return NULL;
    }
  g_autofree char *dict = g_strndup ((const char *) p + start, hlen);
  if (!parse_header (a, dict, error))
    return NULL;
  gsize have = len - start - hlen;
  gsize need = a->count * sizes[a->dtype];
  if (a->count > have / sizes[a->dtype])
    {
      bad (error, NPY_ERROR_FORMAT, path,
           "truncated data: shape needs %zu bytes of %s, the file has %zu after its header", need,
           descrs[a->dtype], have);
      return NULL;
    }
  a->data = p + start + hlen;
  return g_steal_pointer (&a);
}

gint64
npy_get_int (const NpyArray *a, gsize i)
{
  const guint8 *p = a->data + i * sizes[a->dtype];
  switch (a->dtype)
    {
    case NPY_I1:
      return (gint8) p[0];
    case NPY_I2:
      {
        gint16 v;
        memcpy (&v, p, 2);
        return GINT16_FROM_LE (v);
      }
    case NPY_I4:
      {
        gint32 v;
        memcpy (&v, p, 4);
        return GINT32_FROM_LE (v);
      }
    case NPY_I8:
      {
        gint64 v;
        memcpy (&v, p, 8);
        return GINT64_FROM_LE (v);
      }
    case NPY_U1:
      return p[0];
    case NPY_U2:
      {
        guint16 v;
        memcpy (&v, p, 2);
        return GUINT16_FROM_LE (v);
      }
    case NPY_U4:
      {
        guint32 v;
        memcpy (&v, p, 4);
        return GUINT32_FROM_LE (v);
      }
    case NPY_U8:
      {
        guint64 v;
        memcpy (&v, p, 8);
        return (gint64) GUINT64_FROM_LE (v);
      }
    default:
      return (gint64) npy_get_double (a, i);
    }
}

static double
half_to_double (guint16 h)
{
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0)
    return s * ldexp (m, -24);
  if (e == 31)
    return m ? NAN : s * INFINITY;
  return s * ldexp (m + 1024, e - 25);
}

double
npy_get_double (const NpyArray *a, gsize i)
{
  const guint8 *p = a->data + i * sizes[a->dtype];
  switch (a->dtype)
    {
    case NPY_F2:
      {
        guint16 v;
        memcpy (&v, p, 2);
        return half_to_double (GUINT16_FROM_LE (v));
      }
    case NPY_F4:
      {
        guint32 v;
        memcpy (&v, p, 4);
        v = GUINT32_FROM_LE (v);
        float f;
        memcpy (&f, &v, 4);
        return f;
      }
    case NPY_F8:
      {
        guint64 v;
        memcpy (&v, p, 8);
        v = GUINT64_FROM_LE (v);
        double d;
        memcpy (&d, &v, 8);
        return d;
      }
    default:
      return (double) npy_get_int (a, i);
    }
}

gboolean
npy_expect_ndim (const NpyArray *a, guint ndim, const char *what, GError **error)
{
  if (a->ndim == ndim)
    return TRUE;
  GString *s = g_string_new ("(");
  for (guint i = 0; i < a->ndim; i++)
    g_string_append_printf (s, "%s%zu", i ? ", " : "", a->shape[i]);
  g_string_append_c (s, ')');
  g_autofree char *shape = g_string_free (s, FALSE);
  return bad (error, NPY_ERROR_SHAPE, a->path, "wrong shape %s: expected %u dimensions %s", shape,
              ndim, what);
}

gboolean
npy_save (const char *path, NpyDtype dtype, guint ndim, const gsize *shape, const void *data,
          GError **error)
{
  GString *dict = g_string_new (NULL);
  g_string_append_printf (dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                          npy_dtype_descr (dtype));
  gsize count = 1;
  for (guint i = 0; i < ndim; i++)
    {
      g_string_append_printf (dict, "%zu%s", shape[i], ndim == 1 || i + 1 < ndim ? ", " : "");
      count *= shape[i];
    }
  g_string_append (dict, "), }");
  /* pad so that magic + length + dict + '\n' is a multiple of 64 */
  while ((10 + dict->len + 1) % 64 != 0)
    g_string_append_c (dict, ' ');
  g_string_append_c (dict, '\n');
  g_autofree char *tmp = g_strdup_printf ("%s.tmp-XXXXXX", path);
  int fd = g_mkstemp (tmp);
  if (fd < 0)
    {
      g_string_free (dict, TRUE);
      int e = errno;
      g_set_error (error, MOESIM_NPY_ERROR, NPY_ERROR_IO, "%s: cannot write: %s", path,
                   g_strerror (e));
      return FALSE;
    }
  fchmod (fd, 0644); /* mkstemp makes 0600; outputs are ordinary files */
  FILE *f = fdopen (fd, "wb");
  guint8 head[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (guint8) (dict->len & 0xff),
                      (guint8) (dict->len >> 8) };
  gboolean ok = fwrite (head, 1, 10, f) == 10 && fwrite (dict->str, 1, dict->len, f) == dict->len
                && fwrite (data, sizes[dtype], count, f) == count;
  ok = (fclose (f) == 0) && ok;
  g_string_free (dict, TRUE);
  if (!ok || g_rename (tmp, path) != 0)
    {
      int e = errno;
      g_unlink (tmp);
      g_set_error (error, MOESIM_NPY_ERROR, NPY_ERROR_IO, "%s: cannot write: %s", path,
                   g_strerror (e));
      return FALSE;
    }
  return TRUE;
}
