/* `moesim sweep SWEEP.yaml [-j N] [-o DIR] [--shard I/N | --merge] [--force] [--quiet]` */
#include "cmd.h"
#include "sweep.h"

#include <stdio.h>

int
cmd_sweep (int argc, char **argv)
{
  gint jobs = 0;
  char *out_dir = NULL, *shard = NULL;
  gboolean merge = FALSE, quiet = FALSE, force = FALSE;
  GOptionEntry entries[] = {
    { "jobs", 'j', 0, G_OPTION_ARG_INT, &jobs, "Points run at once (default: one per core)", "N" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &out_dir, "Output folder (default out/sweeps/<name>)", "DIR" },
    { "shard", 0, 0, G_OPTION_ARG_STRING, &shard,
      "Run only the points with index % N == I (Slurm array jobs); no sweep.csv", "I/N" },
    { "merge", 0, 0, G_OPTION_ARG_NONE, &merge, "Run nothing: gather the shards' points into sweep.csv", NULL },
    { "force", 'f', 0, G_OPTION_ARG_NONE, &force, "Run every point again (no resume)", NULL },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress line", NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("SWEEP.yaml");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *dir_opt = NULL, *shard_opt = NULL;
  gboolean parsed = g_option_context_parse (ctx, &argc, &argv, &error);
  dir_opt = out_dir;
  shard_opt = shard;
  const char *usage = NULL;
  SweepOptions opt = { .jobs = 0, .shard = 0, .shards = 1, .merge = merge, .force = force, .quiet = quiet };
  if (!parsed)
    usage = error->message;
  else if (argc != 2)
    usage = argc < 2 ? "missing SWEEP file" : "too many arguments";
  else if (jobs < 0 || jobs > 4096)
    usage = "--jobs: expected 1..4096";
  else if (shard_opt)
    {
      unsigned i = 0, n = 0;
      char tail;
      if (sscanf (shard_opt, "%u/%u%c", &i, &n, &tail) != 2 || n == 0 || i >= n)
        usage = "--shard: expected I/N with 0 <= I < N";
      else if (merge)
        usage = "--shard and --merge exclude each other";
      opt.shard = i;
      opt.shards = MAX (n, 1u);
    }
  if (!usage && merge && force)
    usage = "--merge and --force exclude each other";
  if (usage)
    {
      g_autofree char *help = g_option_context_get_help (ctx, TRUE, NULL);
      g_printerr ("moesim: error: %s\n\n%s", usage, help);
      return EXIT_BAD_INPUT;
    }
  opt.jobs = (guint) jobs;
  g_autoptr (Sweep) s = sweep_load (argv[1], &error);
  if (s == NULL)
    return cmd_fail (g_steal_pointer (&error));
  g_autofree char *dir = dir_opt ? g_strdup (dir_opt) : g_build_filename ("out", "sweeps", s->name, NULL);
  SweepStats st;
  gboolean ok = sweep_run (s, dir, &opt, &st, &error);
  if (!quiet)
    g_print ("sweep %s: %u points (%u run, %u reused, %u failed, %u left to other shards)\n", s->name,
             s->n_points, st.run, st.reused, st.failed, st.skipped);
  if (!ok)
    return cmd_fail (g_steal_pointer (&error));
  if (opt.shards > 1)
    g_print ("  shard %u/%u done; when every shard is: moesim sweep %s -o %s --merge\n", opt.shard, opt.shards,
             argv[1], dir);
  else
    g_print ("  outputs: %s/sweep.csv, sweep.html, points/NNNN/\n", dir);
  return 0;
}
