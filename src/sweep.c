/* Sweeps: parsing, points, the thread pool, sweep.csv and sweep.html. */
#include "sweep.h"

#include "memory.h"
#include "moe.h"
#include "report.h"
#include "scenario.h"
#include "yamltree.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const metric_names[] = {
  "total_us", "dispatch_us", "expert_us", "combine_us", "nvlink_bytes", "ib_bytes", "fabric_bytes",
  "bottleneck_util", "expert_max_over_mean", "imbalance_cost_us", "gemm_share", "memory_gb",
};
enum { N_METRICS = G_N_ELEMENTS (metric_names) };

void
sweep_free (Sweep *s)
{
  if (s == NULL)
    return;
  for (guint a = 0; a < s->n_axes; a++)
    {
      g_free (s->axes[a].key);
      g_strfreev (s->axes[a].values);
    }
  g_free (s->axes);
  g_strfreev (s->sets);
  g_free (s->path);
  g_free (s->name);
  g_free (s->scenario);
  g_free (s->fingerprint);
  g_free (s);
}

static gboolean
bad (GError **error, const char *file, const YNode *n, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
bad (GError **error, const char *file, const YNode *n, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE, "%s:%u:%u: %s", file, n->line, n->col,
               msg);
  return FALSE;
}

static const char *
scalar (const YNode *n)
{
  return n && n->kind == YNODE_SCALAR ? n->value : NULL;
}

static char *csv_header (const Sweep *s);

/* Point `point`'s overrides: the fixed ones, then one per axis. */
static char **
point_sets (const Sweep *s, guint point)
{
  GPtrArray *a = g_ptr_array_new ();
  for (char **p = s->sets; *p; p++)
    g_ptr_array_add (a, g_strdup (*p));
  for (guint x = 0; x < s->n_axes; x++)
    g_ptr_array_add (a, g_strdup_printf ("%s=%s", s->axes[x].key, sweep_value (s, point, x)));
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

const char *
sweep_value (const Sweep *s, guint point, guint axis)
{
  if (s->combine == SWEEP_ZIP)
    return s->axes[axis].values[point];
  guint stride = 1;
  for (guint x = axis + 1; x < s->n_axes; x++)
    stride *= s->axes[x].n_values;
  return s->axes[axis].values[(point / stride) % s->axes[axis].n_values];
}

Sweep *
sweep_load (const char *path, GError **error)
{
  g_autoptr (YNode) root = ynode_parse_file (path, error);
  if (root == NULL)
    return NULL;
  if (root->kind != YNODE_MAP)
    {
      bad (error, path, root, "expected a mapping at the top of the sweep file, got %s",
           ynode_kind_name (root->kind));
      return NULL;
    }
  g_autoptr (Sweep) s = g_new0 (Sweep, 1);
  s->path = g_strdup (path);
  static const char *const known[] = { "name", "scenario", "combine", "set", "axes" };
  for (guint i = 0; i < root->keys->len; i++)
    {
      const YNode *k = g_ptr_array_index (root->keys, i);
      gboolean ok = FALSE;
      for (guint j = 0; j < G_N_ELEMENTS (known); j++)
        ok |= strcmp (k->value, known[j]) == 0;
      if (!ok)
        {
          bad (error, path, k, "unknown key '%s' (expected name, scenario, combine, set, axes)", k->value);
          return NULL;
        }
    }
  const YNode *name = ynode_get (root, "name"), *scen = ynode_get (root, "scenario");
  const YNode *comb = ynode_get (root, "combine"), *sets = ynode_get (root, "set");
  const YNode *axes = ynode_get (root, "axes");
  if (!scalar (name) || !scalar (scen) || !axes)
    {
      bad (error, path, root, "a sweep needs 'name' and 'scenario' (strings) and 'axes' (a mapping)");
      return NULL;
    }
  for (const char *c = name->value; *c; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_' && *c != '.')
      {
        bad (error, path, name, "name '%s' may hold only letters, digits, '-', '_' and '.'", name->value);
        return NULL;
      }
  s->name = g_strdup (name->value);
  g_autofree char *base = g_path_get_dirname (path);
  s->scenario = g_path_is_absolute (scen->value) ? g_strdup (scen->value)
                                                 : g_build_filename (base, scen->value, NULL);
  if (comb)
    {
      if (g_strcmp0 (scalar (comb), "product") == 0)
        s->combine = SWEEP_PRODUCT;
      else if (g_strcmp0 (scalar (comb), "zip") == 0)
        s->combine = SWEEP_ZIP;
      else
        {
          bad (error, path, comb, "combine '%s': expected product or zip", scalar (comb) ? comb->value : "?");
          return NULL;
        }
    }
  GPtrArray *fixed = g_ptr_array_new ();
  if (sets && sets->kind != YNODE_SEQ)
    {
      g_ptr_array_free (fixed, TRUE);
      bad (error, path, sets, "set: expected a list of KEY=VALUE strings");
      return NULL;
    }
  for (guint i = 0; sets && i < sets->items->len; i++)
    {
      const YNode *it = g_ptr_array_index (sets->items, i);
      if (!scalar (it) || !strchr (it->value, '='))
        {
          g_ptr_array_free (fixed, TRUE);
          bad (error, path, it, "set: expected KEY=VALUE, got %s", scalar (it) ? it->value : ynode_kind_name (it->kind));
          return NULL;
        }
      g_ptr_array_add (fixed, g_strdup (it->value));
    }
  g_ptr_array_add (fixed, NULL);
  s->sets = (char **) g_ptr_array_free (fixed, FALSE);
  if (axes->kind != YNODE_MAP || axes->keys->len == 0)
    {
      bad (error, path, axes, "axes: expected a mapping of --set paths to lists of values, with at least one axis");
      return NULL;
    }
  s->n_axes = axes->keys->len;
  s->axes = g_new0 (SweepAxis, s->n_axes);
  s->n_points = s->combine == SWEEP_PRODUCT ? 1 : 0;
  for (guint a = 0; a < s->n_axes; a++)
    {
      const YNode *k = g_ptr_array_index (axes->keys, a), *v = g_ptr_array_index (axes->items, a);
      SweepAxis *ax = &s->axes[a];
      ax->key = g_strdup (k->value);
      if (v->kind != YNODE_SEQ || v->items->len == 0)
        {
          bad (error, path, v, "axis '%s': expected a non-empty list of values", k->value);
          return NULL;
        }
      ax->n_values = v->items->len;
      ax->values = g_new0 (char *, ax->n_values + 1);
      for (guint i = 0; i < ax->n_values; i++)
        {
          const YNode *it = g_ptr_array_index (v->items, i);
          if (!scalar (it))
            {
              bad (error, path, it, "axis '%s': values must be scalars, got %s", k->value,
                   ynode_kind_name (it->kind));
              return NULL;
            }
          ax->values[i] = g_strdup (it->value);
        }
      if (s->combine == SWEEP_ZIP && a > 0 && ax->n_values != s->axes[0].n_values)
        {
          bad (error, path, v, "axis '%s' has %u values but '%s' has %u: zipped axes need equal lengths",
               k->value, ax->n_values, s->axes[0].key, s->axes[0].n_values);
          return NULL;
        }
      if (s->combine == SWEEP_PRODUCT)
        {
          if ((guint64) s->n_points * ax->n_values > 100000)
            {
              bad (error, path, v, "the sweep would have more than 100000 points");
              return NULL;
            }
          s->n_points *= ax->n_values;
        }
      else
        s->n_points = ax->n_values;
    }
  /* the base scenario with the fixed overrides, then every axis path with
   * its first value, must load: checked before anything runs */
  g_autoptr (GError) base_err = NULL;
  g_autoptr (Scenario) base_sc = scenario_load (s->scenario, (const char *const *) s->sets, &base_err);
  if (base_sc == NULL)
    {
      bad (error, path, sets ? sets : scen, "%s", base_err->message);
      return NULL;
    }
  GChecksum *ck = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree char *hdr = csv_header (s);
  g_checksum_update (ck, (const guchar *) hdr, -1);
  g_checksum_update (ck, (const guchar *) (s->combine == SWEEP_ZIP ? "zip\n" : "product\n"), -1);
  for (char **p = s->sets; *p; p++)
    {
      g_checksum_update (ck, (const guchar *) *p, -1);
      g_checksum_update (ck, (const guchar *) "\n", 1);
    }
  const char *files[] = { s->scenario, topology_path (scenario_topology (base_sc)) };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *text = NULL;
      gsize len = 0;
      if (g_file_get_contents (files[i], &text, &len, NULL))
        g_checksum_update (ck, (const guchar *) text, (gssize) len);
    }
  s->fingerprint = g_strdup (g_checksum_get_string (ck));
  g_checksum_free (ck);
  for (guint a = 0; a < s->n_axes; a++)
    {
      GPtrArray *one = g_ptr_array_new_with_free_func (g_free);
      for (char **p = s->sets; *p; p++)
        g_ptr_array_add (one, g_strdup (*p));
      g_ptr_array_add (one, g_strdup_printf ("%s=%s", s->axes[a].key, s->axes[a].values[0]));
      g_ptr_array_add (one, NULL);
      g_autoptr (GError) local = NULL;
      g_autoptr (Scenario) sc = scenario_load (s->scenario, (const char *const *) one->pdata, &local);
      g_ptr_array_free (one, TRUE);
      if (sc == NULL)
        {
          const YNode *k = g_ptr_array_index (axes->keys, a);
          bad (error, path, k, "axis '%s': %s", k->value, local->message);
          return NULL;
        }
    }
  return g_steal_pointer (&s);
}

/* CSV field, quoted when it holds a comma, quote or line break. */
static void
csv_field (GString *o, const char *v)
{
  if (strpbrk (v, ",\"\n\r") == NULL)
    {
      g_string_append (o, v);
      return;
    }
  g_string_append_c (o, '"');
  for (; *v; v++)
    {
      if (*v == '"')
        g_string_append_c (o, '"');
      g_string_append_c (o, *v);
    }
  g_string_append_c (o, '"');
}

static char *
csv_header (const Sweep *s)
{
  GString *o = g_string_new ("point");
  for (guint a = 0; a < s->n_axes; a++)
    {
      g_string_append_c (o, ',');
      csv_field (o, s->axes[a].key);
    }
  g_string_append (o, ",status");
  for (guint m = 0; m < N_METRICS; m++)
    g_string_append_printf (o, ",%s", metric_names[m]);
  g_string_append (o, ",bottleneck_link,error\n");
  return g_string_free (o, FALSE);
}

/* "point,axis values," - the part of a row that identifies it */
static char *
row_key (const Sweep *s, guint point)
{
  GString *o = g_string_new (NULL);
  g_string_append_printf (o, "%u", point);
  for (guint a = 0; a < s->n_axes; a++)
    {
      g_string_append_c (o, ',');
      csv_field (o, sweep_value (s, point, a));
    }
  g_string_append_c (o, ',');
  return g_string_free (o, FALSE);
}

static void
metrics_of (const Scenario *sc, const RunResult *r, double *m)
{
  memset (m, 0, N_METRICS * sizeof *m);
  m[0] = r->total_us;
  for (guint i = 0; i < r->n_layers; i++)
    {
      m[1] += r->layers[i].dispatch.max_us;
      m[2] += r->layers[i].expert.max_us;
      m[3] += r->layers[i].combine.max_us;
      m[8] += r->layers[i].expert_load.max_over_mean / r->n_layers;
    }
  for (guint c = 0; c < 3; c++)
    m[4 + c] = r->class_bytes[c];
  m[7] = r->bottleneck_util;
  m[9] = r->counterfactual ? r->total_us - r->balanced_total_us : NAN;
  Breakdown b;
  report_breakdown (r, &b);
  m[10] = b.moe_gemm_share;
  g_autoptr (MemoryReport) mem = memory_account (sc, r);
  m[11] = mem->gpu_total[mem->worst] / 1e9;
}

typedef struct {
  const Sweep *s;
  const char *dir;
  char **rows;     /* per point: its CSV row, NULL while not done */
  GMutex lock;
  guint done, total;
  gint64 t0;
  gboolean tty;
} Job;

static char *
point_dir (const char *dir, guint point)
{
  g_autofree char *id = g_strdup_printf ("%04u", point);
  return g_build_filename (dir, "points", id, NULL);
}

/* The row a point left in its folder (point.csv: "# sweep <fingerprint>",
 * then the row), when it is for the same sweep definition, point and
 * values; a failed row only when `failed_too` (merging shards). */
static char *
reuse_row (const Sweep *s, const char *dir, guint point, gboolean failed_too)
{
  g_autofree char *pd = point_dir (dir, point);
  g_autofree char *file = g_build_filename (pd, "point.csv", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (file, &text, NULL, NULL))
    return NULL;
  g_autofree char *head = g_strdup_printf ("# sweep %s\n", s->fingerprint);
  if (!g_str_has_prefix (text, head))
    return NULL;
  const char *row = text + strlen (head);
  g_autofree char *key = row_key (s, point);
  if (!g_str_has_prefix (row, key) || !g_str_has_suffix (row, "\n"))
    return NULL;
  const char *status = row + strlen (key);
  if (!g_str_has_prefix (status, "ok,") && !(failed_too && g_str_has_prefix (status, "failed,")))
    return NULL;
  return g_strdup (row);
}

static void
save_row (const Sweep *s, const char *pd, const char *row, GError **error)
{
  g_autofree char *file = g_build_filename (pd, "point.csv", NULL);
  g_autofree char *text = g_strdup_printf ("# sweep %s\n%s", s->fingerprint, row);
  if (g_mkdir_with_parents (pd, 0755) != 0)
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "%s: %s", pd, g_strerror (errno));
  else
    g_file_set_contents (file, text, -1, error);
}

static void
run_point (gpointer data, gpointer user)
{
  Job *j = user;
  guint p = GPOINTER_TO_UINT (data) - 1;
  const Sweep *s = j->s;
  g_auto (GStrv) sets = point_sets (s, p);
  g_autoptr (GError) err = NULL;
  g_autofree char *key = row_key (s, p);
  GString *row = g_string_new (key);
  g_autoptr (Scenario) sc = scenario_load (s->scenario, (const char *const *) sets, &err);
  g_autoptr (RunResult) r = sc ? moe_run (sc, &err) : NULL;
  g_autofree char *pd = point_dir (j->dir, p);
  if (r && g_mkdir_with_parents (pd, 0755) != 0)
    g_set_error (&err, G_FILE_ERROR, g_file_error_from_errno (errno), "%s: %s", pd, g_strerror (errno));
  g_autofree char *warning = NULL;
  if (r && !err && memory_check (sc, r, &warning, &err) && report_write (sc, r, pd, NULL, &err))
    {
      double m[N_METRICS];
      metrics_of (sc, r, m);
      g_string_append (row, "ok");
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      for (guint i = 0; i < N_METRICS; i++)
        g_string_append_printf (row, ",%s", g_ascii_formatd (buf, sizeof buf, i < 7 || i == 9 || i == 11 ? "%.3f" : "%.6f", m[i]));
      g_string_append_c (row, ',');
      csv_field (row, r->bottleneck_link);
      g_string_append (row, ",\n");
      /* written last, whole: its presence means the point is done */
      save_row (s, pd, row->str, &err);
    }
  if (err)
    {
      g_string_truncate (row, strlen (key));
      g_string_append (row, "failed");
      for (guint i = 0; i <= N_METRICS; i++)
        g_string_append_c (row, ',');
      g_string_append_c (row, ',');
      csv_field (row, err->message);
      g_string_append_c (row, '\n');
      /* recorded too, so that merging shards reports it; a rerun retries it */
      save_row (s, pd, row->str, NULL);
    }
  g_mutex_lock (&j->lock);
  j->rows[p] = g_string_free (row, FALSE);
  j->done++;
  if (j->tty)
    {
      double el = (g_get_monotonic_time () - j->t0) / 1e6;
      g_printerr ("\r  point %u/%u  %.2f points/s  ETA %.0f s   ", j->done, j->total, j->done / MAX (el, 1e-6),
                  el / j->done * (j->total - j->done));
      if (j->done == j->total)
        g_printerr ("\r%60s\r", "");
    }
  g_mutex_unlock (&j->lock);
}

/* The axis values as numbers when every one is a number. */
static gboolean
numeric_axis (const SweepAxis *ax, double *x)
{
  for (guint i = 0; i < ax->n_values; i++)
    {
      char *end;
      x[i] = g_ascii_strtod (ax->values[i], &end);
      if (end == ax->values[i] || *end || !isfinite (x[i]))
        return FALSE;
    }
  return TRUE;
}

/* Where value i of an axis sits across a chart, 0..1: to scale for a
 * numeric axis, evenly spaced otherwise. */
static double
axis_pos (const SweepAxis *ax, const double *xv, gboolean num, double xmin, double xmax, guint i)
{
  if (num)
    return xmax > xmin ? (xv[i] - xmin) / (xmax - xmin) : 0.5;
  return ax->n_values > 1 ? (double) i / (ax->n_values - 1) : 0.5;
}

/* sweep.html: per axis, the time metrics of every point against the axis
 * value (other axes vary among the points at one value); then the table. */
static char *
sweep_html (const Sweep *s, char **rows, const double *met, const gboolean *ok)
{
  static const char *const color[] = { "#333333", "#4e79a7", "#f28e2b", "#59a14f" };
  g_autofree char *title = g_markup_escape_text (s->name, -1);
  GString *o = g_string_new (NULL);
  g_string_append_printf (o, "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>moesim sweep: %s"
                             "</title><style>body{font-family:sans-serif;margin:24px;color:#222}"
                             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
                             "padding:2px 6px;text-align:right}th{background:#f2f2f2}</style></head><body>\n"
                             "<h1>moesim sweep: %s</h1>\n<p>%u points over %u axes (%s)</p>\n",
                          title, title, s->n_points, s->n_axes, s->combine == SWEEP_ZIP ? "zipped" : "product");
  for (guint a = 0; a < s->n_axes; a++)
    {
      const SweepAxis *ax = &s->axes[a];
      g_autofree double *xv = g_new (double, ax->n_values);
      gboolean num = numeric_axis (ax, xv);
      double xmin = 0, xmax = ax->n_values - 1;
      if (num)
        {
          xmin = xmax = xv[0];
          for (guint i = 1; i < ax->n_values; i++)
            {
              xmin = MIN (xmin, xv[i]);
              xmax = MAX (xmax, xv[i]);
            }
        }
      double ymax = 0, step;
      for (guint p = 0; p < s->n_points; p++)
        if (ok[p])
          ymax = MAX (ymax, met[p * N_METRICS]);
      ymax = html_nice_max (ymax, &step);
      int W = 700, H = 260, x0 = 80, y0 = 290;
      g_autofree char *key = g_markup_escape_text (ax->key, -1);
      g_string_append_printf (o, "<h2>against %s</h2>\n<svg id='axis-%u' class='axis-chart' width='%d' height='%d' "
                                 "role='img'>", key, a, W + 120, H + 90);
      html_axes (o, x0, y0, W, H, ymax, step, "time (us, sums of layer max)", key);
      for (guint i = 0; i < ax->n_values; i++)
        {
          g_autofree char *v = g_markup_escape_text (ax->values[i], -1);
          g_string_append_printf (o, "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%s</text>",
                                  x0 + 20 + axis_pos (ax, xv, num, xmin, xmax, i) * (W - 40), y0 + 16, v);
        }
      for (guint p = 0; p < s->n_points; p++)
        {
          if (!ok[p])
            continue;
          guint vi = 0;
          while (strcmp (ax->values[vi], sweep_value (s, p, a)) != 0)
            vi++;
          double fx = axis_pos (ax, xv, num, xmin, xmax, vi);
          for (guint m = 0; m < 4; m++)
            {
              double y = met[p * N_METRICS + m];
              g_string_append_printf (o, "<circle cx='%.1f' cy='%.1f' r='3.5' fill='%s'><title>point %u %s %.1f"
                                         "</title></circle>",
                                      x0 + 20 + fx * (W - 40), y0 - y / ymax * H, color[m], p, metric_names[m], y);
            }
        }
      for (guint m = 0; m < 4; m++)
        g_string_append_printf (o, "<circle cx='%d' cy='14' r='5' fill='%s'/><text x='%d' y='18' "
                                   "font-size='12'>%s</text>", x0 + 10 + m * 130, color[m], x0 + 20 + m * 130,
                                metric_names[m]);
      g_string_append (o, "</svg>\n");
    }
  g_string_append (o, "<h2>Points</h2>\n<table id='points'>");
  for (guint p = 0; p <= s->n_points; p++)
    {
      /* the header, then the rows of sweep.csv, as cells */
      g_autofree char *hdr = p == 0 ? csv_header (s) : NULL;
      const char *line = p == 0 ? hdr : rows[p - 1];
      g_string_append (o, "<tr>");
      GString *cell = g_string_new (NULL);
      gboolean q = FALSE;
      for (const char *c = line; *c && (*c != '\n' || q); c++)
        {
          if (*c == '"')
            {
              if (q && c[1] == '"')
                g_string_append_c (cell, *c++);
              else
                q = !q;
              continue;
            }
          if (*c == ',' && !q)
            {
              g_autofree char *e = g_markup_escape_text (cell->str, -1);
              g_string_append_printf (o, p == 0 ? "<th>%s</th>" : "<td>%s</td>", e);
              g_string_truncate (cell, 0);
              continue;
            }
          g_string_append_c (cell, *c);
        }
      g_autofree char *e = g_markup_escape_text (cell->str, -1);
      g_string_append_printf (o, p == 0 ? "<th>%s</th></tr>\n" : "<td>%s</td></tr>\n", e);
      g_string_free (cell, TRUE);
    }
  g_string_append (o, "</table></body></html>\n");
  return g_string_free (o, FALSE);
}

/* The error field of a failed point's row, unquoted. */
static char *
row_error (const Sweep *s, guint point, const char *row)
{
  g_autofree char *key = row_key (s, point);
  const char *c = row + strlen (key);
  for (guint commas = 0; *c && commas < N_METRICS + 2; c++)
    commas += *c == ',';
  GString *e = g_string_new (NULL);
  gboolean q = *c == '"';
  for (c += q; *c && *c != '\n'; c++)
    {
      if (q && *c == '"')
        {
          if (c[1] != '"')
            break;
          c++;
        }
      g_string_append_c (e, *c);
    }
  return g_string_free (e, FALSE);
}

char **
sweep_run_points (const Sweep *s, const char *dir, const SweepOptions *opt, SweepStats *stats, GError **error)
{
  memset (stats, 0, sizeof *stats);
  guint shards = MAX (opt->shards, 1u);
  Job j = { .s = s, .dir = dir };
  j.rows = g_new0 (char *, s->n_points + 1);
  g_mutex_init (&j.lock);
  GArray *todo = g_array_new (FALSE, FALSE, sizeof (guint));
  for (guint p = 0; p < s->n_points; p++)
    {
      j.rows[p] = opt->force ? NULL : reuse_row (s, dir, p, opt->merge);
      if (j.rows[p])
        stats->reused++;
      else if (opt->merge)
        {
          g_autofree char *pd = point_dir (dir, p);
          g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                       "%s: point %u is not done (%s/point.csv missing or for other values); run its shard first",
                       s->path, p, pd);
          g_array_free (todo, TRUE);
          sweep_rows_free (s, j.rows);
          g_mutex_clear (&j.lock);
          return NULL;
        }
      else if (p % shards != opt->shard)
        stats->skipped++;
      else
        g_array_append_val (todo, p);
    }
  if (todo->len > 0)
    {
      guint jobs = opt->jobs ? opt->jobs : g_get_num_processors ();
      j.total = todo->len;
      j.t0 = g_get_monotonic_time ();
      j.tty = !opt->quiet && isatty (2);
      GThreadPool *pool = g_thread_pool_new (run_point, &j, (gint) MIN (jobs, todo->len), TRUE, NULL);
      for (guint i = 0; i < todo->len; i++)
        g_thread_pool_push (pool, GUINT_TO_POINTER (g_array_index (todo, guint, i) + 1), NULL);
      g_thread_pool_free (pool, FALSE, TRUE);
      stats->run = todo->len;
    }
  g_array_free (todo, TRUE);
  g_mutex_clear (&j.lock);
  return j.rows;
}

void
sweep_rows_free (const Sweep *s, char **rows)
{
  if (rows == NULL)
    return;
  for (guint p = 0; p < s->n_points; p++)
    g_free (rows[p]);
  g_free (rows);
}

/* "ok" or "failed": the status field of a row */
static gboolean
row_ok (const Sweep *s, guint point, const char *row)
{
  g_autofree char *key = row_key (s, point);
  return g_str_has_prefix (row + strlen (key), "ok,");
}

gboolean
sweep_write (const Sweep *s, const char *dir, char **rows, SweepStats *stats, GError **error)
{
  g_autofree char *hdr = csv_header (s);
  GString *csv = g_string_new (hdr);
  g_autofree double *met = g_new0 (double, (gsize) s->n_points * N_METRICS);
  g_autofree gboolean *pok = g_new0 (gboolean, s->n_points);
  g_autofree char *first_err = NULL;
  stats->failed = 0;
  for (guint p = 0; p < s->n_points; p++)
    {
      g_return_val_if_fail (rows[p] != NULL, FALSE);
      g_string_append (csv, rows[p]);
      g_autofree char *key = row_key (s, p);
      pok[p] = row_ok (s, p, rows[p]);
      if (pok[p])
        {
          const char *c = rows[p] + strlen (key) + 3;
          for (guint m = 0; m < N_METRICS; m++)
            {
              char *end;
              met[p * N_METRICS + m] = g_ascii_strtod (c, &end);
              c = *end == ',' ? end + 1 : end;
            }
        }
      else
        {
          stats->failed++;
          if (first_err == NULL)
            {
              g_autofree char *e = row_error (s, p, rows[p]);
              first_err = g_strdup_printf ("point %u: %s", p, e);
            }
        }
    }
  g_autofree char *html = sweep_html (s, rows, met, pok);
  g_autofree char *cpath = g_build_filename (dir, "sweep.csv", NULL);
  g_autofree char *hpath = g_build_filename (dir, "sweep.html", NULL);
  gboolean ok;
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "%s: %s", dir, g_strerror (errno));
      ok = FALSE;
    }
  else
    ok = g_file_set_contents (cpath, csv->str, -1, error) && g_file_set_contents (hpath, html, -1, error);
  g_string_free (csv, TRUE);
  if (ok && stats->failed > 0)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE, "%s: %u of %u points failed, see %s; first: %s",
                   s->path, stats->failed, s->n_points, cpath, first_err);
      ok = FALSE;
    }
  return ok;
}

gboolean
sweep_run (const Sweep *s, const char *dir, const SweepOptions *opt, SweepStats *stats, GError **error)
{
  char **rows = sweep_run_points (s, dir, opt, stats, error);
  if (rows == NULL)
    return FALSE;
  gboolean ok = TRUE;
  if (MAX (opt->shards, 1u) == 1)
    ok = sweep_write (s, dir, rows, stats, error);
  else
    for (guint p = 0; p < s->n_points && ok; p++)
      if (rows[p] && !row_ok (s, p, rows[p]))
        {
          g_autofree char *e = row_error (s, p, rows[p]);
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE, "%s: point %u failed: %s", s->path, p, e);
          ok = FALSE;
        }
  sweep_rows_free (s, rows);
  return ok;
}
