/* moesim command line: run, estimate, topo show, keys.
 *
 * Exit status: 0 success, 2 bad input or usage (with a message naming the
 * file and line:column, or the option), 1 an internal error. */
#include "cluster.h"
#include "cmd.h"
#include "estimate.h"
#include "memory.h"
#include "moe.h"
#include "moesim-config.h"
#include "report.h"
#include "scenario.h"

#include <locale.h>
#include <math.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

int
cmd_fail (GError *error)
{
  g_printerr ("moesim: error: %s\n", error->message);
  g_error_free (error);
  return EXIT_BAD_INPUT;
}

#define fail cmd_fail

static int
usage_error (GOptionContext *ctx, const char *msg)
{
  g_autofree char *help = g_option_context_get_help (ctx, TRUE, NULL);
  g_printerr ("moesim: error: %s\n\n%s", msg, help);
  return EXIT_BAD_INPUT;
}

static const char *top_help
    = "moesim " MOESIM_VERSION " - discrete-event simulator of MoE expert parallelism\n\n"
      "Usage:\n"
      "  moesim run SCENARIO [--set KEY=VALUE]... [-o DIR] [--quiet]\n"
      "  moesim estimate SCENARIO [--set KEY=VALUE]...\n"
      "  moesim topo show TOPOLOGY [--set KEY=VALUE]... [--nodes N]\n"
      "  moesim trace info|check|stats|import|export ...   routing traces\n"
      "  moesim gate --preset NAME [...] -o OUT   run the gate, write a trace\n"
      "  moesim compare A B     two runs' summaries side by side (files or folders)\n"
      "  moesim sweep SWEEP [-j N] [-o DIR] [--shard I/N | --merge]   what-if sweeps\n"
      "  moesim keys            list every scenario and topology key\n"
      "  moesim --version\n\n"
      "SCENARIO is a sim/*.yaml file; TOPOLOGY a topologies/*.yaml file.\n"
      "KEY is a dotted path of the scenario (model.experts) or of its topology\n"
      "(nic.gbps); VALUE is validated like the file.\n";

typedef struct {
  char **sets;
  char *out_dir;
  gboolean quiet;
  gboolean oversubscribe;
  gint nodes;
} Opts;

static GOptionContext *
make_context (const char *params, Opts *o, gboolean with_run_opts, gboolean with_nodes)
{
  GOptionEntry common[] = {
    { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &o->sets, "Override a key (repeatable)",
      "KEY=VALUE" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  GOptionEntry run[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o->out_dir,
      "Output folder (default: output.dir or out/<name>)", "DIR" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "Print only where the outputs went", NULL },
    { "allow-oversubscribe", 0, 0, G_OPTION_ARG_NONE, &o->oversubscribe,
      "Run even when a GPU needs more memory than its HBM (a warning instead of an error)", NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  GOptionEntry nodes[] = {
    { "nodes", 'n', 0, G_OPTION_ARG_INT, &o->nodes, "Nodes to instantiate (default 2)", "N" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  GOptionContext *ctx = g_option_context_new (params);
  g_option_context_add_main_entries (ctx, common, NULL);
  if (with_run_opts)
    g_option_context_add_main_entries (ctx, run, NULL);
  if (with_nodes)
    g_option_context_add_main_entries (ctx, nodes, NULL);
  return ctx;
}

/* What `moesim run` watches while the pass runs: its progress, and the
 * steps final, which trace.json is written from. */
typedef struct {
  gint64 t0;
  TraceStream *trace;
} Progress;

/* A progress line on stderr (only when it is a terminal). */
static void
show_progress (void *user, guint done, guint total)
{
  Progress *p = user;
  double el = (g_get_monotonic_time () - p->t0) / 1e6;
  g_printerr ("\r  step %u/%u  %.1f steps/s  ETA %.0f s   ", done, total, done / MAX (el, 1e-6),
              el / done * (total - done));
  if (done == total)
    g_printerr ("\r%60s\r", "");
}

static void
steps_final (void *user, const RunResult *r, guint n_final)
{
  Progress *p = user;
  report_trace_stream_steps (p->trace, r, n_final);
}

/* The user and system CPU time a getrusage() record counts, in seconds. */
static double
rusage_seconds (const struct rusage *ru)
{
  return (double) ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 + (double) ru->ru_stime.tv_sec
         + ru->ru_stime.tv_usec / 1e6;
}

static int
cmd_run (int argc, char **argv, gboolean estimate_only)
{
  Opts o = { 0 };
  g_autoptr (GOptionContext) ctx
      = make_context ("SCENARIO", &o, !estimate_only, FALSE);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage_error (ctx, error->message);
  if (argc != 2)
    return usage_error (ctx, argc < 2 ? "missing SCENARIO file" : "too many arguments");
  if (o.oversubscribe)
    {
      guint n = o.sets ? g_strv_length (o.sets) : 0;
      o.sets = g_renew (char *, o.sets, n + 2);
      o.sets[n] = g_strdup ("sim.allow_oversubscribe=true");
      o.sets[n + 1] = NULL;
    }
  g_autoptr (Scenario) sc = scenario_load (argv[1], (const char *const *) o.sets, &error);
  g_strfreev (o.sets);
  if (sc == NULL)
    {
      g_free (o.out_dir);
      return fail (g_steal_pointer (&error));
    }
  /* (estimate's closed form needs no routing: the in-process gate runs for
   * a simulation only) */
  if (!estimate_only && !scenario_make_routing (sc, &error))
    {
      g_free (o.out_dir);
      return fail (g_steal_pointer (&error));
    }
  for (const char *const *n = scenario_notes (sc); *n; n++)
    g_printerr ("moesim: note: %s\n", *n);
  g_autoptr (GString) text = g_string_new (NULL);
  if (estimate_only)
    {
      Estimate e;
      estimate_compute (scenario_spec (sc), topology_spec (scenario_topology (sc)), &e);
      report_estimate_text (sc, &e, text);
      fputs (text->str, stdout);
      return 0;
    }
  /* trace.json is written while the pass runs (an output folder that
   * cannot be written to is reported before the run) */
  g_autofree char *dir = o.out_dir ? o.out_dir : scenario_output_dir (sc);
  g_autoptr (RunResult) r = NULL; /* freed after the stream, which reads it */
  g_autoptr (TraceStream) trace = report_trace_stream_new (sc, dir, &error);
  if (trace == NULL)
    return fail (g_steal_pointer (&error));
  Progress prog = { g_get_monotonic_time (), trace };
  gboolean tty = isatty (2) && !o.quiet;
  MoeWatch watch = { tty ? show_progress : NULL, steps_final, &prog };
  r = moe_run_watched (sc, &watch, &error);
  if (r == NULL)
    return fail (g_steal_pointer (&error));
  g_autofree char *warning = NULL;
  if (!memory_check (sc, r, &warning, &error))
    return fail (g_steal_pointer (&error));
  if (warning)
    g_printerr ("moesim: warning: %s\n", warning);
  if (!report_write (sc, r, dir, trace, &error))
    return fail (g_steal_pointer (&error));
  if (!o.quiet)
    report_summary_text (sc, r, text);
  g_string_append_printf (text, "%s  outputs: %s/summary.json, layers.csv, gpus.csv, trace.json (Perfetto), report.html\n",
                          o.quiet ? "" : "\n", dir);
  if (!o.quiet)
    {
      struct rusage ru;
      getrusage (RUSAGE_SELF, &ru);
      /* the CPU time of every thread so far (routing, the counterfactual and
       * trace.json run beside the simulation): on a busy machine the wall
       * time moves more than it */
      double cpu_s = rusage_seconds (&ru);
      /* and this thread's alone: the simulation's, which sets the pace
       * where a core is free for the others (tools/ab.sh compares builds
       * by it) */
      double main_s = NAN;
#ifdef RUSAGE_THREAD
      struct rusage rt;
      if (getrusage (RUSAGE_THREAD, &rt) == 0)
        main_s = rusage_seconds (&rt);
#endif
      g_string_append_printf (text, "  simulated in %.3f s wall (process CPU %.2f s, main thread %.2f s), peak RSS %.0f MB (%" G_GUINT64_FORMAT
                                    " flows, %" G_GUINT64_FORMAT " events, %" G_GUINT64_FORMAT
                                    " solver runs)\n",
                              r->wall_s, cpu_s, main_s, ru.ru_maxrss / 1024.0, r->flows, r->events, r->solves);
    }
  fputs (text->str, stdout);
  return 0;
}

static void
print_path (const Cluster *c, guint src, guint dst, const char *what)
{
  ClusterPath p;
  cluster_path (c, src, dst, &p);
  g_print ("  %-22s gpu%u -> gpu%u: %u hops, latency %.2f us\n", what, src, dst, p.n_hops,
           sim_time_to_us (p.latency));
  for (guint h = 0; h < p.n_hops; h++)
    {
      g_autofree char *name = cluster_link_name (c, p.links[h]);
      g_print ("      %-24s %8.1f GB/s  (%s)\n", name,
               cluster_link_capacity (c, p.links[h]) / 1e9,
               link_class_names[cluster_link_class (c, p.links[h])]);
    }
}

static int
cmd_topo (int argc, char **argv)
{
  Opts o = { 0 };
  g_autoptr (GOptionContext) ctx = make_context ("show TOPOLOGY", &o, FALSE, TRUE);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage_error (ctx, error->message);
  if (argc != 3 || strcmp (argv[1], "show") != 0)
    return usage_error (ctx, "expected: moesim topo show TOPOLOGY");
  g_autoptr (Topology) topo = topology_parse (argv[2], &error);
  if (topo == NULL)
    {
      g_strfreev (o.sets);
      return fail (g_steal_pointer (&error));
    }
  for (guint i = 0; o.sets && o.sets[i]; i++)
    {
      const char *eq = strchr (o.sets[i], '=');
      g_autofree char *key = eq ? g_strndup (o.sets[i], (gsize) (eq - o.sets[i])) : NULL;
      if (key == NULL || !topology_set (topo, key, eq + 1, &error))
        {
          if (error == NULL)
            g_set_error (&error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                         "--set %s: expected KEY=VALUE", o.sets[i]);
          g_strfreev (o.sets);
          return fail (g_steal_pointer (&error));
        }
    }
  g_strfreev (o.sets);
  if (!topology_validate (topo, &error))
    return fail (g_steal_pointer (&error));
  const TopoSpec *t = topology_spec (topo);
  if (o.nodes < 0 || o.nodes > 65536 || (gint64) o.nodes * topology_spec (topo)->node.gpus > (1 << 24))
    {
      g_printerr ("moesim: error: --nodes %d: expected 1..65536 nodes (at most 16M GPUs)\n", o.nodes);
      return EXIT_BAD_INPUT;
    }
  guint nodes = o.nodes > 0 ? (guint) o.nodes : 2;
  g_autoptr (Cluster) c
      = cluster_new (t, nodes * (guint) t->node.gpus, CROSS_RAIL_AUTO, "--nodes", &error);
  if (c == NULL)
    return fail (g_steal_pointer (&error));
  static const char *const fabric[] = { "single switch", "two-level fat tree",
                                        "rail-optimized (planes share a spine)",
                                        "multi-plane (isolated planes)" };
  g_print ("topology %s (%s)\n", t->name, topology_path (topo));
  g_print ("  GPU %s: %" G_GINT64_FORMAT " SMs, %.0f TFLOPS fp8 / %.0f bf16 dense, %.0f GB HBM at "
           "%.0f GB/s, launch %.1f us, GEMM tile M %" G_GINT64_FORMAT "\n",
           t->gpu.name, t->gpu.sms, t->gpu.peak_tflops[DTYPE_FP8], t->gpu.peak_tflops[DTYPE_BF16],
           t->gpu.hbm_gb, t->gpu.hbm_gbps, t->gpu.launch_us, t->gpu.gemm_tile_m);
  g_print ("  nodes: %" G_GINT64_FORMAT " GPUs each, %" G_GINT64_FORMAT
           " NICs each; fabric %s; shown with %u nodes (%u GPUs, %u links)\n",
           t->node.gpus, t->nic.per_node, fabric[t->fabric.kind], nodes, cluster_n_gpus (c),
           cluster_n_links (c));
  g_print ("  link classes (per direction, model rate = line rate x efficiency):\n");
  g_print ("    nvlink  %8.1f GB/s x %.3f = %8.1f GB/s, latency %.2f us (per GPU, non-blocking NVSwitch)\n",
           t->nvlink.gbps, t->nvlink.efficiency, t->nvlink.gbps * t->nvlink.efficiency,
           t->nvlink.latency_us);
  g_print ("    ib      %8.1f GB/s x %.3f = %8.1f GB/s, latency %.2f us (per NIC)\n", t->nic.gbps,
           t->nic.efficiency, t->nic.gbps * t->nic.efficiency, t->nic.latency_us);
  if (t->fabric.kind != FABRIC_SINGLE_SWITCH)
    g_print ("    fabric  leaf radix %" G_GINT64_FORMAT ", oversubscription %.2g:1, +%.2f us per "
             "extra switch hop\n",
             t->fabric.leaf_radix, t->fabric.oversubscription, t->fabric.hop_latency_us);
  g_print ("  sample paths:\n");
  guint gpn = (guint) t->node.gpus;
  if (gpn > 1)
    print_path (c, 0, 1, "intra-node");
  if (nodes > 1)
    print_path (c, 0, gpn, "inter-node");
  if (nodes > 1 && t->nic.per_node > 1 && gpn > 1)
    print_path (c, 0, gpn + gpn - 1, "inter-node, other rail");
  return 0;
}

static int
cmd_keys (void)
{
  g_autoptr (GString) s = g_string_new ("Scenario keys (sim/*.yaml):\n");
  scenario_describe_schema (s);
  g_string_append (s, "\nTopology keys (topologies/*.yaml):\n");
  topology_describe_schema (s);
  fputs (s->str, stdout);
  return 0;
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  setlocale (LC_NUMERIC, "C"); /* numbers in every output file use a decimal point */
  if (argc < 2 || strcmp (argv[1], "help") == 0 || strcmp (argv[1], "--help") == 0
      || strcmp (argv[1], "-h") == 0)
    {
      fputs (top_help, argc < 2 ? stderr : stdout);
      return argc < 2 ? EXIT_BAD_INPUT : 0;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      g_print ("moesim %s\n", MOESIM_VERSION);
      return 0;
    }
  const char *cmd = argv[1];
  if (strcmp (cmd, "run") == 0)
    return cmd_run (argc - 1, argv + 1, FALSE);
  if (strcmp (cmd, "estimate") == 0)
    return cmd_run (argc - 1, argv + 1, TRUE);
  if (strcmp (cmd, "topo") == 0)
    return cmd_topo (argc - 1, argv + 1);
  if (strcmp (cmd, "keys") == 0)
    return cmd_keys ();
  if (strcmp (cmd, "trace") == 0)
    return cmd_trace (argc - 1, argv + 1);
  if (strcmp (cmd, "gate") == 0)
    return cmd_gate (argc - 1, argv + 1);
  if (strcmp (cmd, "compare") == 0)
    return cmd_compare (argc - 1, argv + 1);
  if (strcmp (cmd, "sweep") == 0)
    return cmd_sweep (argc - 1, argv + 1);
  g_printerr ("moesim: error: unknown command '%s'\n\n%s", cmd, top_help);
  return EXIT_BAD_INPUT;
}
