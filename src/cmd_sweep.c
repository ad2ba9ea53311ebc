/* `moesim sweep SWEEP.yaml [-j N] [-o DIR] [--shard I/N | --merge] [--force] [--quiet]` */
#include "cmd.h"
#include "sweep.h"

#include <stdio.h>
#include <string.h>

#ifdef MOESIM_MPI
#include <mpi.h>

/* Under mpirun: rank r runs the points with index % ranks == r (each with
 * its -j threads); rank 0 receives every row, in point order, and writes
 * sweep.csv and sweep.html, identical to a single-process sweep. Returns
 * the exit status of this rank. */
static int
sweep_mpi (const Sweep *s, const char *dir, SweepOptions *opt, int rank, int ranks)
{
  opt->shard = (guint) rank;
  opt->shards = (guint) ranks;
  opt->quiet |= rank != 0;
  SweepStats st;
  g_autoptr (GError) error = NULL;
  char **rows = sweep_run_points (s, dir, opt, &st, &error);
  if (rows == NULL)
    rows = g_new0 (char *, s->n_points + 1);
  /* a rank may find other ranks' points done on its file system: it keeps
   * only its own, so that each point is counted and sent once */
  guint run = st.run, reused = 0;
  for (guint p = 0; p < s->n_points; p++)
    if (p % (guint) ranks != (guint) rank)
      g_clear_pointer (&rows[p], g_free);
    else if (rows[p])
      reused++;
  reused -= run;
  /* one tag for all: messages between two ranks arrive in the order sent,
   * and rank 0 receives in point order, the order each rank sends in */
  for (guint p = 0; p < s->n_points; p++)
    {
      int owner = (int) (p % (guint) ranks);
      if (owner == 0)
        continue;
      if (rank == owner)
        {
          int len = rows[p] ? (int) strlen (rows[p]) : 0;
          MPI_Send (&len, 1, MPI_INT, 0, 0, MPI_COMM_WORLD);
          if (len > 0)
            MPI_Send (rows[p], len, MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
      else if (rank == 0)
        {
          int len = 0;
          MPI_Recv (&len, 1, MPI_INT, owner, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
          if (len > 0)
            {
              rows[p] = g_malloc (len + 1);
              MPI_Recv (rows[p], len, MPI_CHAR, owner, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
              rows[p][len] = '\0';
            }
        }
    }
  guint counts[2] = { run, reused }, total[2] = { 0, 0 };
  MPI_Reduce (counts, total, 2, MPI_UNSIGNED, MPI_SUM, 0, MPI_COMM_WORLD);
  int status = 0;
  if (rank == 0)
    {
      gboolean complete = TRUE;
      for (guint p = 0; p < s->n_points; p++)
        complete &= rows[p] != NULL;
      gboolean ok = complete && sweep_write (s, dir, rows, &st, &error);
      if (!complete && error == NULL)
        g_set_error (&error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: a rank returned no row for some points",
                     s->path);
      if (!opt->quiet)
        g_print ("sweep %s: %u points over %d ranks (%u run, %u reused, %u failed)\n", s->name, s->n_points, ranks,
                 total[0], total[1], st.failed);
      if (ok)
        g_print ("  outputs: %s/sweep.csv, sweep.html, points/NNNN/ (on each rank's file system)\n", dir);
      else
        status = cmd_fail (g_steal_pointer (&error));
    }
  sweep_rows_free (s, rows);
  return status;
}
#endif

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
      guint64 i = 0, n = 0;
      g_auto (GStrv) parts = g_strsplit (shard_opt, "/", -1);
      if (g_strv_length (parts) != 2 || !g_ascii_string_to_unsigned (parts[0], 10, 0, G_MAXINT, &i, NULL)
          || !g_ascii_string_to_unsigned (parts[1], 10, 1, G_MAXINT, &n, NULL) || i >= n)
        usage = "--shard: expected I/N with 0 <= I < N";
      else if (merge)
        usage = "--shard and --merge exclude each other";
      opt.shard = (guint) i;
      opt.shards = (guint) MAX (n, 1u);
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
#ifdef MOESIM_MPI
  /* launched by mpirun (or any MPI launcher): spread the points over ranks */
  if (g_getenv ("OMPI_COMM_WORLD_SIZE") || g_getenv ("PMI_SIZE") || g_getenv ("PMIX_RANK"))
    {
      if (opt.shards > 1 || opt.merge)
        {
          g_printerr ("moesim: error: --shard and --merge are not used under MPI (the ranks are the shards)\n");
          return EXIT_BAD_INPUT;
        }
      MPI_Init (NULL, NULL);
      int rank = 0, ranks = 1;
      MPI_Comm_rank (MPI_COMM_WORLD, &rank);
      MPI_Comm_size (MPI_COMM_WORLD, &ranks);
      int status = sweep_mpi (s, dir, &opt, rank, ranks);
      MPI_Finalize ();
      return status;
    }
#endif
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
