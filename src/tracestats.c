#include "tracestats.h"

#include "json.h"
#include "loadstats.h"

#include <string.h>

void
trace_stats_free (TraceStats *s)
{
  if (s == NULL)
    return;
  for (guint l = 0; l < s->n_layers; l++)
    g_free (s->layers[l].fanout);
  g_free (s->layers);
  g_free (s);
}

TraceStats *
trace_stats_compute (const Trace *t, char phase, guint ep, guint gpus_per_node, GError **error)
{
  const TraceShape *sh = trace_shape (t);
  const guint8 *ph = trace_batch_phase (t);
  if (phase && ph == NULL)
    {
      g_set_error (error, MOESIM_TRACE_ERROR, TRACE_ERROR_INPUT,
                   "%s: has no batch structure, so no phase to filter on", trace_path (t));
      return NULL;
    }
  if (ep && (sh->experts % ep != 0 || gpus_per_node == 0 || ep % gpus_per_node != 0))
    {
      g_set_error (error, MOESIM_TRACE_ERROR, TRACE_ERROR_INPUT,
                   "%s: %u experts cannot be placed on %u GPUs of %u per node", trace_path (t),
                   sh->experts, ep, gpus_per_node);
      return NULL;
    }
  TraceStats *s = g_new0 (TraceStats, 1);
  s->n_layers = sh->layers;
  s->layers = g_new0 (TraceLayerStats, sh->layers);
  s->ep = ep;
  s->gpus_per_node = gpus_per_node;
  s->nodes = ep ? ep / gpus_per_node : 0;
  s->phase = phase;
  g_autofree guint64 *load = g_new (guint64, sh->experts);
  g_autofree double *loadf = g_new (double, sh->experts);
  g_autofree guint64 *gpu = ep ? g_new (guint64, ep) : NULL;
  g_autofree guint64 *node_stamp = ep ? g_new0 (guint64, s->nodes) : NULL;
  guint64 stamp = 0;
  guint per_gpu = ep ? sh->experts / ep : 0;
  for (guint l = 0; l < sh->layers; l++)
    {
      TraceLayerStats *ls = &s->layers[l];
      ls->layer = l;
      memset (load, 0, sh->experts * sizeof (guint64));
      if (ep)
        ls->fanout = g_new0 (guint64, s->nodes + 1);
      for (guint64 tok = 0; tok < sh->tokens; tok++)
        {
          if (phase && ph[tok] != (guint8) phase)
            continue;
          guint routed = 0, span = 0;
          stamp++;
          for (guint k = 0; k < sh->top_k; k++)
            {
              gint id = trace_id (t, l, tok, k);
              if (id == TRACE_MISSING || (guint) id >= sh->experts)
                continue;
              load[id]++;
              routed++;
              if (ep)
                {
                  guint node = (guint) id / per_gpu / gpus_per_node;
                  if (node_stamp[node] != stamp)
                    {
                      node_stamp[node] = stamp;
                      span++;
                    }
                }
            }
          if (routed)
            {
              ls->tokens++;
              ls->assignments += routed;
              if (ep)
                ls->fanout[span]++;
            }
        }
      for (guint e = 0; e < sh->experts; e++)
        loadf[e] = (double) load[e];
      LoadStats st;
      load_stats (loadf, sh->experts, &st);
      ls->min_load = (guint64) st.min;
      ls->max_load = (guint64) st.max;
      ls->mean_load = st.mean;
      ls->max_over_mean = st.max_over_mean;
      ls->cv = st.cv;
      ls->gini = st.gini;
      /* hottest experts: highest load, ties to the lower id */
      for (guint r = 0; r < TRACE_STATS_TOP && r < sh->experts; r++)
        {
          gint best = -1;
          for (guint e = 0; e < sh->experts; e++)
            {
              gboolean used = FALSE;
              for (guint q = 0; q < r; q++)
                used |= ls->top_expert[q] == e;
              if (!used && (best < 0 || load[e] > load[best]))
                best = (gint) e;
            }
          ls->top_expert[r] = (guint) best;
          ls->top_count[r] = load[best];
        }
      if (ep)
        {
          memset (gpu, 0, ep * sizeof (guint64));
          guint64 gmax = 0;
          for (guint e = 0; e < sh->experts; e++)
            gpu[e / per_gpu] += load[e];
          for (guint g = 0; g < ep; g++)
            gmax = MAX (gmax, gpu[g]);
          double gmean = (double) ls->assignments / ep;
          ls->gpu_max_over_mean = gmean > 0 ? gmax / gmean : 0.0;
        }
    }
  return s;
}

void
trace_stats_text (const Trace *t, const TraceStats *s, GString *out)
{
  const TraceShape *sh = trace_shape (t);
  g_string_append_printf (out, "== %s: %u experts, top-%u, %u layers, %" G_GUINT64_FORMAT " tokens%s%s\n",
                          trace_path (t), sh->experts, sh->top_k, sh->layers, sh->tokens,
                          s->phase ? ", phase " : "", s->phase == 'P' ? "P (prefill)" : s->phase == 'D' ? "D (decode)" : "");
  g_string_append (out, "layer  tokens  assignments  max_load  mean_load  max/mean  min_load  cv      gini    top3(expert:count)");
  if (s->ep)
    g_string_append_printf (out, "  gpu max/mean (EP%u)", s->ep);
  g_string_append_c (out, '\n');
  double mn = G_MAXDOUBLE, mx = 0;
  for (guint l = 0; l < s->n_layers; l++)
    {
      const TraceLayerStats *ls = &s->layers[l];
      g_string_append_printf (out, "%5u  %6" G_GUINT64_FORMAT "  %11" G_GUINT64_FORMAT "  %8" G_GUINT64_FORMAT
                              "  %9.1f  %8.3f  %8" G_GUINT64_FORMAT "  %6.3f  %6.3f  ",
                              ls->layer, ls->tokens, ls->assignments, ls->max_load, ls->mean_load,
                              ls->max_over_mean, ls->min_load, ls->cv, ls->gini);
      for (guint r = 0; r < TRACE_STATS_TOP && r < sh->experts; r++)
        g_string_append_printf (out, "%u:%" G_GUINT64_FORMAT " ", ls->top_expert[r], ls->top_count[r]);
      if (s->ep)
        g_string_append_printf (out, "  %.3f", ls->gpu_max_over_mean);
      g_string_append_c (out, '\n');
      mn = MIN (mn, ls->max_over_mean);
      mx = MAX (mx, ls->max_over_mean);
    }
  g_string_append_printf (out, "max/mean over layers: min %.3f  max %.3f\n", mn, mx);
  if (s->ep)
    {
      g_string_append_printf (out, "tokens by nodes spanned (%u nodes of %u GPUs), all layers:",
                              s->nodes, s->gpus_per_node);
      for (guint n = 1; n <= s->nodes; n++)
        {
          guint64 c = 0;
          for (guint l = 0; l < s->n_layers; l++)
            c += s->layers[l].fanout[n];
          g_string_append_printf (out, " %u:%" G_GUINT64_FORMAT, n, c);
        }
      g_string_append_c (out, '\n');
    }
}

char *
trace_stats_json (const Trace *t, const TraceStats *s)
{
  const TraceShape *sh = trace_shape (t);
  GString *out = g_string_new (NULL);
  JsonWriter w;
  json_init (&w, out);
  json_begin_object (&w, NULL);
  json_string (&w, "schema", "moesim.trace-stats/1");
  json_string (&w, "trace", trace_path (t));
  json_int (&w, "experts", sh->experts);
  json_int (&w, "top_k", sh->top_k);
  json_int (&w, "tokens", (gint64) sh->tokens);
  if (s->phase)
    json_string (&w, "phase", s->phase == 'P' ? "P" : "D");
  if (s->ep)
    {
      json_int (&w, "ep", s->ep);
      json_int (&w, "gpus_per_node", s->gpus_per_node);
    }
  json_begin_array (&w, "layers");
  for (guint l = 0; l < s->n_layers; l++)
    {
      const TraceLayerStats *ls = &s->layers[l];
      json_begin_object (&w, NULL);
      json_int (&w, "layer", ls->layer);
      json_int (&w, "tokens", (gint64) ls->tokens);
      json_int (&w, "assignments", (gint64) ls->assignments);
      json_int (&w, "max_load", (gint64) ls->max_load);
      json_int (&w, "min_load", (gint64) ls->min_load);
      json_double (&w, "mean_load", ls->mean_load);
      json_double (&w, "max_over_mean", ls->max_over_mean);
      json_double (&w, "cv", ls->cv);
      json_double (&w, "gini", ls->gini);
      json_begin_array (&w, "hottest");
      for (guint r = 0; r < TRACE_STATS_TOP && r < sh->experts; r++)
        {
          json_begin_object (&w, NULL);
          json_int (&w, "expert", ls->top_expert[r]);
          json_int (&w, "load", (gint64) ls->top_count[r]);
          json_end_object (&w);
        }
      json_end_array (&w);
      if (s->ep)
        {
          json_double (&w, "gpu_max_over_mean", ls->gpu_max_over_mean);
          json_begin_array (&w, "node_fanout");
          for (guint n = 0; n <= s->nodes; n++)
            {
              json_begin_object (&w, NULL);
              json_int (&w, "nodes", n);
              json_int (&w, "tokens", (gint64) ls->fanout[n]);
              json_end_object (&w);
            }
          json_end_array (&w);
        }
      json_end_object (&w);
    }
  json_end_array (&w);
  json_end_object (&w);
  return g_string_free (out, FALSE);
}
