/* A minimal streaming JSON writer over a GString: objects, arrays, numbers,
 * strings (escaped), with two-space indentation. Numbers are printed with
 * g_ascii_formatd so output never depends on the locale, and with a fixed
 * precision so identical runs give identical bytes. */
#pragma once

#include <glib.h>

typedef struct {
  GString *out;
  int depth;
  gboolean first[64];
} JsonWriter;

void json_init (JsonWriter *w, GString *out);
/* `key` is NULL inside arrays and at the top. */
void json_begin_object (JsonWriter *w, const char *key);
void json_end_object (JsonWriter *w);
void json_begin_array (JsonWriter *w, const char *key);
void json_end_array (JsonWriter *w);
void json_double (JsonWriter *w, const char *key, double v);
void json_int (JsonWriter *w, const char *key, gint64 v);
void json_string (JsonWriter *w, const char *key, const char *v);
void json_bool (JsonWriter *w, const char *key, gboolean v);
/* Appends `s` as a JSON string literal (quotes included). */
void json_append_escaped (GString *out, const char *s);
