#include "json.h"

#include <math.h>

void
json_init (JsonWriter *w, GString *out)
{
  w->out = out;
  w->depth = 0;
  w->first[0] = TRUE;
}

void
json_append_escaped (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const unsigned char *p = (const unsigned char *) s; *p; p++)
    {
      switch (*p)
        {
        case '"':
          g_string_append (out, "\\\"");
          break;
        case '\\':
          g_string_append (out, "\\\\");
          break;
        case '\n':
          g_string_append (out, "\\n");
          break;
        case '\t':
          g_string_append (out, "\\t");
          break;
        case '\r':
          g_string_append (out, "\\r");
          break;
        default:
          if (*p < 0x20)
            g_string_append_printf (out, "\\u%04x", *p);
          else
            g_string_append_c (out, (char) *p);
        }
    }
  g_string_append_c (out, '"');
}

static void
prefix (JsonWriter *w, const char *key)
{
  if (w->depth > 0)
    {
      if (!w->first[w->depth])
        g_string_append_c (w->out, ',');
      g_string_append_c (w->out, '\n');
      for (int i = 0; i < w->depth; i++)
        g_string_append (w->out, "  ");
    }
  w->first[w->depth] = FALSE;
  if (key)
    {
      json_append_escaped (w->out, key);
      g_string_append (w->out, ": ");
    }
}

static void
open_scope (JsonWriter *w, const char *key, char c)
{
  prefix (w, key);
  g_string_append_c (w->out, c);
  g_assert (w->depth + 1 < (int) G_N_ELEMENTS (w->first));
  w->first[++w->depth] = TRUE;
}

static void
close_scope (JsonWriter *w, char c)
{
  gboolean empty = w->first[w->depth];
  w->depth--;
  if (!empty)
    {
      g_string_append_c (w->out, '\n');
      for (int i = 0; i < w->depth; i++)
        g_string_append (w->out, "  ");
    }
  g_string_append_c (w->out, c);
  if (w->depth == 0)
    g_string_append_c (w->out, '\n');
}

void
json_begin_object (JsonWriter *w, const char *key)
{
  open_scope (w, key, '{');
}

void
json_end_object (JsonWriter *w)
{
  close_scope (w, '}');
}

void
json_begin_array (JsonWriter *w, const char *key)
{
  open_scope (w, key, '[');
}

void
json_end_array (JsonWriter *w)
{
  close_scope (w, ']');
}

void
json_double (JsonWriter *w, const char *key, double v)
{
  prefix (w, key);
  if (!isfinite (v))
    {
      g_string_append (w->out, "null");
      return;
    }
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append (w->out, g_ascii_formatd (buf, sizeof buf, "%.10g", v));
}

void
json_int (JsonWriter *w, const char *key, gint64 v)
{
  prefix (w, key);
  g_string_append_printf (w->out, "%" G_GINT64_FORMAT, v);
}

void
json_string (JsonWriter *w, const char *key, const char *v)
{
  prefix (w, key);
  json_append_escaped (w->out, v ? v : "");
}

void
json_bool (JsonWriter *w, const char *key, gboolean v)
{
  prefix (w, key);
  g_string_append (w->out, v ? "true" : "false");
}
