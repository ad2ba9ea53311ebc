/* Field-table driven config binding. Keys are matched exactly against the
 * table; a mapping in the tree is descended only when some field lives under
 * its path, unless a CUSTOM field takes the whole subtree. */
#include "cfg.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *
where_of (const char *file, const YNode *n)
{
  return g_strdup_printf ("%s:%u:%u", file, n->line, n->col);
}

static const char *
type_name (const CfgField *f)
{
  switch (f->type)
    {
    case CFG_INT:
      return "an integer";
    case CFG_DOUBLE:
      return "a number";
    case CFG_STRING:
      return "a string";
    case CFG_BOOL:
      return "true or false";
    default:
      return "a value";
    }
}

/* A number must be a plain (unquoted) scalar. */
static gboolean
check_plain_scalar (const YNode *n, const char *what, const char *where, const char *key,
                    GError **error)
{
  if (n->kind == YNODE_SCALAR && !n->quoted)
    return TRUE;
  if (n->kind == YNODE_SCALAR)
    g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                 "%s: %s: expected %s, got the string '%s'", where, key, what, n->value);
  else
    g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE, "%s: %s: expected %s, got %s",
                 where, key, what, ynode_kind_name (n->kind));
  return FALSE;
}

gboolean
cfg_scalar_double (const YNode *n, double *out, const char *where, const char *key, GError **error)
{
  if (!check_plain_scalar (n, "a number", where, key, error))
    return FALSE;
  char *end = NULL;
  errno = 0;
  double v = g_ascii_strtod (n->value, &end);
  if (n->value[0] == '\0' || *end != '\0' || errno != 0 || !isfinite (v))
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s: %s: expected a number, got '%s'", where, key, n->value);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

gboolean
cfg_scalar_int (const YNode *n, gint64 *out, const char *where, const char *key, GError **error)
{
  if (!check_plain_scalar (n, "an integer", where, key, error))
    return FALSE;
  char *end = NULL;
  errno = 0;
  gint64 v = g_ascii_strtoll (n->value, &end, 10);
  if (n->value[0] == '\0' || *end != '\0' || errno != 0)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s: %s: expected an integer, got '%s'", where, key, n->value);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

/* "MIN to MAX" of a numeric field (an integer's bounds whole: 1048576,
 * not %g's 1.04858e+06) */
static char *
range_text (const CfgField *f, const char *sep)
{
  if (f->type == CFG_INT)
    return g_strdup_printf ("%" G_GINT64_FORMAT "%s%" G_GINT64_FORMAT, (gint64) f->min, sep,
                            (gint64) f->max);
  return g_strdup_printf ("%g%s%g", f->min, sep, f->max);
}

static gboolean
check_range (const CfgField *f, double v, const char *text, const char *where, GError **error)
{
  if (v < f->min || v > f->max)
    {
      g_autofree char *range = range_text (f, " to ");
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                   "%s: %s: value %s is out of range, expected %s", where, f->key, text, range);
      return FALSE;
    }
  return TRUE;
}

static gboolean
set_field (const CfgDoc *doc, const CfgField *f, const YNode *n, const char *where, GError **error)
{
  void *member = (char *) doc->target + f->offset;
  if (f->type == CFG_CUSTOM)
    return f->parse (f, n, member, where, error);
  if (n->kind != YNODE_SCALAR)
    {
      g_autofree char *all = f->type == CFG_ENUM ? g_strjoinv (", ", (char **) f->names) : NULL;
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE, "%s: %s: expected %s%s, got %s", where,
                   f->key, all ? "one of: " : type_name (f), all ? all : "", ynode_kind_name (n->kind));
      return FALSE;
    }
  switch (f->type)
    {
    case CFG_INT:
      {
        gint64 v;
        if (!cfg_scalar_int (n, &v, where, f->key, error)
            || !check_range (f, (double) v, n->value, where, error))
          return FALSE;
        *(gint64 *) member = v;
        return TRUE;
      }
    case CFG_DOUBLE:
      {
        double v;
        if (!cfg_scalar_double (n, &v, where, f->key, error)
            || !check_range (f, v, n->value, where, error))
          return FALSE;
        *(double *) member = v;
        return TRUE;
      }
    case CFG_STRING:
      g_free (*(char **) member);
      *(char **) member = g_strdup (n->value);
      return TRUE;
    case CFG_BOOL:
      if (!n->quoted && (strcmp (n->value, "true") == 0 || strcmp (n->value, "false") == 0))
        {
          *(gboolean *) member = n->value[0] == 't';
          return TRUE;
        }
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s: %s: expected true or false, got '%s'", where, f->key, n->value);
      return FALSE;
    case CFG_ENUM:
      for (int i = 0; f->names[i]; i++)
        if (strcmp (f->names[i], n->value) == 0)
          {
            *(int *) member = i;
            return TRUE;
          }
      {
        g_autofree char *all = g_strjoinv (", ", (char **) f->names);
        g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                     "%s: %s: unknown value '%s', expected one of: %s", where, f->key, n->value, all);
      }
      return FALSE;
    default:
      g_assert_not_reached ();
    }
}

void
cfg_init (CfgDoc *doc, const CfgField *fields, guint n_fields, void *target, const char *file)
{
  doc->fields = fields;
  doc->n_fields = n_fields;
  doc->target = target;
  doc->file = file;
  doc->origin = g_new0 (char *, n_fields);
  for (guint i = 0; i < n_fields; i++)
    {
      const CfgField *f = &fields[i];
      if (f->def == NULL)
        continue;
      g_autoptr (GError) err = NULL;
      g_autoptr (YNode) n = ynode_parse_string (f->def, -1, "(default)", &err);
      if (n == NULL || !set_field (doc, f, n, "(default)", &err))
        g_error ("bad default for %s: %s", f->key, err ? err->message : "?"); /* table bug */
    }
}

void
cfg_clear (CfgDoc *doc)
{
  if (doc->origin == NULL)
    return;
  for (guint i = 0; i < doc->n_fields; i++)
    {
      const CfgField *f = &doc->fields[i];
      void *member = (char *) doc->target + f->offset;
      if (f->type == CFG_STRING)
        g_clear_pointer ((char **) member, g_free);
      else if (f->type == CFG_CUSTOM && f->free)
        f->free (member);
      g_free (doc->origin[i]);
    }
  g_clear_pointer (&doc->origin, g_free);
}

const CfgField *
cfg_find (const CfgDoc *doc, const char *key)
{
  for (guint i = 0; i < doc->n_fields; i++)
    if (strcmp (doc->fields[i].key, key) == 0)
      return &doc->fields[i];
  return NULL;
}

gboolean
cfg_has_prefix (const CfgDoc *doc, const char *prefix)
{
  gsize n = strlen (prefix);
  for (guint i = 0; i < doc->n_fields; i++)
    {
      const char *k = doc->fields[i].key;
      if (strncmp (k, prefix, n) == 0 && (k[n] == '.' || k[n] == '\0'))
        return TRUE;
    }
  return FALSE;
}

static char *
children_of (const CfgDoc *doc, const char *prefix)
{
  GString *s = g_string_new (NULL);
  gsize n = prefix ? strlen (prefix) : 0;
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < doc->n_fields; i++)
    {
      const char *k = doc->fields[i].key;
      if (n && (strncmp (k, prefix, n) != 0 || k[n] != '.'))
        continue;
      const char *rest = n ? k + n + 1 : k;
      const char *dot = strchr (rest, '.');
      char *child = dot ? g_strndup (rest, (gsize) (dot - rest)) : g_strdup (rest);
      if (g_hash_table_contains (seen, child))
        {
          g_free (child);
          continue;
        }
      if (s->len)
        g_string_append (s, ", ");
      g_string_append (s, child);
      g_hash_table_add (seen, child);
    }
  return g_string_free (s, FALSE);
}

static gboolean
apply_map (CfgDoc *doc, const YNode *map, const char *prefix, GError **error)
{
  for (guint i = 0; i < map->keys->len; i++)
    {
      const YNode *k = g_ptr_array_index (map->keys, i);
      const YNode *v = g_ptr_array_index (map->items, i);
      g_autofree char *key = prefix ? g_strdup_printf ("%s.%s", prefix, k->value) : g_strdup (k->value);
      g_autofree char *where = where_of (doc->file, v);
      const CfgField *f = cfg_find (doc, key);
      if (f != NULL)
        {
          if (!set_field (doc, f, v, where, error))
            return FALSE;
          guint idx = (guint) (f - doc->fields);
          g_free (doc->origin[idx]);
          doc->origin[idx] = g_steal_pointer (&where);
          continue;
        }
      if (cfg_has_prefix (doc, key))
        {
          if (v->kind != YNODE_MAP)
            {
              g_autofree char *known = children_of (doc, key);
              g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                           "%s: expected a mapping under '%s' (keys: %s), got %s", where, key,
                           known, ynode_kind_name (v->kind));
              return FALSE;
            }
          if (!apply_map (doc, v, key, error))
            return FALSE;
          continue;
        }
      g_autofree char *kw = where_of (doc->file, k);
      g_autofree char *known = children_of (doc, prefix);
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_UNKNOWN,
                   "%s: unknown key '%s'%s%s%s, expected one of: %s", kw, k->value,
                   prefix ? " in '" : "", prefix ? prefix : "", prefix ? "'" : "", known);
      return FALSE;
    }
  return TRUE;
}

gboolean
cfg_apply_tree (CfgDoc *doc, const YNode *root, const char *const *skip, GError **error)
{
  if (root->kind != YNODE_MAP)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s:%u:%u: expected a mapping at the top of the file, got %s", doc->file,
                   root->line, root->col, ynode_kind_name (root->kind));
      return FALSE;
    }
  if (skip == NULL)
    return apply_map (doc, root, NULL, error);
  /* apply a copy of the root that leaves out the skipped keys */
  YNode view = *root;
  view.keys = g_ptr_array_new ();
  view.items = g_ptr_array_new ();
  for (guint i = 0; i < root->keys->len; i++)
    {
      const YNode *k = g_ptr_array_index (root->keys, i);
      if (g_strv_contains (skip, k->value))
        continue;
      g_ptr_array_add (view.keys, g_ptr_array_index (root->keys, i));
      g_ptr_array_add (view.items, g_ptr_array_index (root->items, i));
    }
  gboolean ok = apply_map (doc, &view, NULL, error);
  g_ptr_array_unref (view.keys);
  g_ptr_array_unref (view.items);
  return ok;
}

gboolean
cfg_set (CfgDoc *doc, const char *key, const char *value, GError **error)
{
  const CfgField *f = cfg_find (doc, key);
  if (f == NULL)
    {
      g_autofree char *parent = NULL;
      const char *dot = strrchr (key, '.');
      if (dot)
        parent = g_strndup (key, (gsize) (dot - key));
      gboolean under = parent != NULL && cfg_has_prefix (doc, parent);
      g_autofree char *known = children_of (doc, under ? parent : NULL);
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_UNKNOWN,
                   "--set %s=%s: unknown key '%s'; the keys %s%s%s are: %s", key, value, key,
                   under ? "under '" : "at the top", under ? parent : "", under ? "'" : "", known);
      return FALSE;
    }
  g_autofree char *where = g_strdup_printf ("--set %s=%s", key, value);
  g_autoptr (GError) perr = NULL;
  /* an empty value is the empty string (YAML would read an empty document) */
  g_autoptr (YNode) n = ynode_parse_string (value[0] ? value : "\"\"", -1, where, &perr);
  if (n == NULL)
    {
      g_propagate_error (error, g_steal_pointer (&perr));
      return FALSE;
    }
  if (!set_field (doc, f, n, where, error))
    return FALSE;
  guint idx = (guint) (f - doc->fields);
  g_free (doc->origin[idx]);
  doc->origin[idx] = g_strdup_printf ("--set %s", key);
  return TRUE;
}

const char *
cfg_origin (CfgDoc *doc, const char *key)
{
  const CfgField *f = cfg_find (doc, key);
  g_return_val_if_fail (f != NULL, "?");
  guint idx = (guint) (f - doc->fields);
  if (doc->origin[idx] == NULL)
    doc->origin[idx] = g_strdup_printf ("%s (default of %s)", doc->file, key);
  return doc->origin[idx];
}

gboolean
cfg_check_required (const CfgDoc *doc, GError **error)
{
  for (guint i = 0; i < doc->n_fields; i++)
    if (doc->fields[i].def == NULL && doc->origin[i] == NULL)
      {
        g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_MISSING,
                     "%s: missing required key '%s' (%s)", doc->file, doc->fields[i].key,
                     doc->fields[i].help);
        return FALSE;
      }
  return TRUE;
}

void
cfg_describe (const CfgField *fields, guint n_fields, GString *out)
{
  for (guint i = 0; i < n_fields; i++)
    {
      const CfgField *f = &fields[i];
      g_string_append_printf (out, "  %-32s %s", f->key, f->help);
      if (f->type == CFG_ENUM)
        {
          g_autofree char *all = g_strjoinv ("|", (char **) f->names);
          g_string_append_printf (out, " [%s]", all);
        }
      else if (f->type == CFG_INT || f->type == CFG_DOUBLE)
        {
          g_autofree char *range = range_text (f, "..");
          g_string_append_printf (out, " [%s]", range);
        }
      g_string_append_printf (out, " (default: %s)\n", f->def ? f->def : "required");
    }
}
