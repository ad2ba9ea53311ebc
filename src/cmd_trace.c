/* `moesim trace`: info, check, stats, import, export. */
#include "cmd.h"
#include "topo.h"
#include "traceio.h"
#include "tracestats.h"

#include <stdio.h>
#include <string.h>

static const char *usage
    = "Usage:\n"
      "  moesim trace info FILE\n"
      "  moesim trace check FILE\n"
      "  moesim trace stats FILE [--json] [--phase P|D] [--topology TOPO --ep N]\n"
      "  moesim trace import --experts E.npy [--weights W.npy] [--tokens T.csv] [--num-experts N] -o OUT\n"
      "  moesim trace export FILE --experts E.npy [--weights W.npy] [--tokens T.csv]\n";

typedef struct {
  char *experts, *weights, *tokens, *out, *topology, *phase;
  gboolean json;
  gint ep, num_experts;
} TraceOpts;

static void
opts_clear (TraceOpts *o)
{
  g_free (o->experts);
  g_free (o->weights);
  g_free (o->tokens);
  g_free (o->out);
  g_free (o->topology);
  g_free (o->phase);
}

static int
info (const Trace *t)
{
  const TraceShape *s = trace_shape (t);
  g_print ("trace %s (%" G_GUINT64_FORMAT " bytes)\n", trace_path (t), trace_file_bytes (t));
  g_print ("  experts %u, top-%u, %u MoE layers, %" G_GUINT64_FORMAT " tokens, ids %u byte(s), "
           "weights %s, batch structure %s\n",
           s->experts, s->top_k, s->layers, s->tokens, trace_id_bytes (t), s->weights ? "yes" : "no",
           s->batch ? "yes" : "no");
  if (s->batch)
    {
      const guint32 *req = trace_batch_req (t), *step = trace_batch_step (t);
      const guint8 *ph = trace_batch_phase (t);
      g_autoptr (GHashTable) passes = g_hash_table_new (g_int64_hash, g_int64_equal);
      g_autoptr (GHashTable) reqs = g_hash_table_new (g_direct_hash, g_direct_equal);
      guint64 prefill = 0;
      g_autofree gint64 *keys = g_new (gint64, s->tokens);
      for (guint64 i = 0; i < s->tokens; i++)
        {
          keys[i] = ((gint64) req[i] << 32) | step[i];
          g_hash_table_add (passes, &keys[i]);
          g_hash_table_add (reqs, GUINT_TO_POINTER (req[i] + 1));
          prefill += ph[i] == 'P';
        }
      g_print ("  %u requests, %u forward passes, %" G_GUINT64_FORMAT " prefill and %" G_GUINT64_FORMAT
               " decode tokens\n",
               g_hash_table_size (reqs), g_hash_table_size (passes), prefill, s->tokens - prefill);
    }
  for (const char *const *k = trace_meta_keys (t); *k; k++)
    g_print ("  %s = %s\n", *k, trace_meta (t, *k));
  return 0;
}

int
cmd_trace (int argc, char **argv)
{
  TraceOpts o = { 0 };
  GOptionEntry entries[] = {
    { "experts", 0, 0, G_OPTION_ARG_FILENAME, &o.experts, "Expert ids .npy [tokens, layers, top_k]", "E.npy" },
    { "weights", 0, 0, G_OPTION_ARG_FILENAME, &o.weights, "Gate weights .npy (float32)", "W.npy" },
    { "tokens", 0, 0, G_OPTION_ARG_FILENAME, &o.tokens, "Batch structure req,step,phase,tok", "T.csv" },
    { "num-experts", 0, 0, G_OPTION_ARG_INT, &o.num_experts, "Routed experts (default: largest id + 1)", "N" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o.out, "Trace to write", "OUT" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &o.json, "Print stats as JSON", NULL },
    { "phase", 0, 0, G_OPTION_ARG_STRING, &o.phase, "Only tokens of this phase", "P|D" },
    { "topology", 0, 0, G_OPTION_ARG_FILENAME, &o.topology, "Topology for per-GPU stats", "TOPO" },
    { "ep", 0, 0, G_OPTION_ARG_INT, &o.ep, "GPUs the experts are placed on", "N" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("info|check|stats|import|export [FILE]");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, usage);
  g_autoptr (GError) error = NULL;
  int rc = 0;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("moesim: error: %s\n\n%s", error->message, usage);
      opts_clear (&o);
      return EXIT_BAD_INPUT;
    }
  const char *verb = argc > 1 ? argv[1] : "";
  if (strcmp (verb, "import") == 0)
    {
      if (argc != 2 || o.experts == NULL || o.out == NULL || o.num_experts < 0)
        {
          g_printerr ("moesim: error: trace import needs --experts E.npy and -o OUT\n\n%s", usage);
          opts_clear (&o);
          return EXIT_BAD_INPUT;
        }
      TraceImport in = { o.experts, o.weights, o.tokens, (guint) o.num_experts };
      if (!trace_import (&in, o.out, &error))
        rc = cmd_fail (g_steal_pointer (&error));
      else
        g_print ("wrote %s\n", o.out);
      opts_clear (&o);
      return rc;
    }
  if (argc != 3 || !(strcmp (verb, "info") == 0 || strcmp (verb, "check") == 0
                     || strcmp (verb, "stats") == 0 || strcmp (verb, "export") == 0))
    {
      g_printerr ("moesim: error: expected a trace command and one FILE\n\n%s", usage);
      opts_clear (&o);
      return EXIT_BAD_INPUT;
    }
  g_autoptr (Trace) t = trace_open (argv[2], &error);
  if (t == NULL)
    {
      opts_clear (&o);
      return cmd_fail (g_steal_pointer (&error));
    }
  if (strcmp (verb, "info") == 0)
    rc = info (t);
  else if (strcmp (verb, "check") == 0)
    {
      if (!trace_check (t, &error))
        rc = cmd_fail (g_steal_pointer (&error));
      else
        g_print ("%s: ok (%u layers, %" G_GUINT64_FORMAT " tokens, checksums and ids valid)\n",
                 argv[2], trace_shape (t)->layers, trace_shape (t)->tokens);
    }
  else if (strcmp (verb, "stats") == 0)
    {
      char phase = 0;
      guint gpn = 0;
      if (o.phase)
        {
          if (strcmp (o.phase, "P") != 0 && strcmp (o.phase, "D") != 0)
            {
              g_printerr ("moesim: error: --phase %s: expected P or D\n", o.phase);
              opts_clear (&o);
              return EXIT_BAD_INPUT;
            }
          phase = o.phase[0];
        }
      if ((o.topology != NULL) != (o.ep > 0))
        {
          g_printerr ("moesim: error: --topology and --ep go together\n");
          opts_clear (&o);
          return EXIT_BAD_INPUT;
        }
      if (o.topology)
        {
          g_autoptr (Topology) topo = topology_load (o.topology, &error);
          if (topo == NULL)
            {
              opts_clear (&o);
              return cmd_fail (g_steal_pointer (&error));
            }
          gpn = (guint) topology_spec (topo)->node.gpus;
        }
      g_autoptr (TraceStats) st = trace_stats_compute (t, phase, (guint) MAX (o.ep, 0), gpn, &error);
      if (st == NULL)
        rc = cmd_fail (g_steal_pointer (&error));
      else if (o.json)
        {
          g_autofree char *js = trace_stats_json (t, st);
          fputs (js, stdout);
        }
      else
        {
          g_autoptr (GString) txt = g_string_new (NULL);
          trace_stats_text (t, st, txt);
          fputs (txt->str, stdout);
        }
    }
  else /* export */
    {
      if (o.experts == NULL)
        {
          g_printerr ("moesim: error: trace export needs --experts E.npy\n\n%s", usage);
          rc = EXIT_BAD_INPUT;
        }
      else if (!trace_export (t, o.experts, o.weights, o.tokens, &error))
        rc = cmd_fail (g_steal_pointer (&error));
      else
        g_print ("wrote %s%s%s%s%s\n", o.experts, o.weights ? ", " : "", o.weights ? o.weights : "",
                 o.tokens ? ", " : "", o.tokens ? o.tokens : "");
    }
  opts_clear (&o);
  return rc;
}
