/* Benchmark: trace ingest. Expert ids read from a memory-mapped trace and
 * aggregated into per-(source GPU, destination GPU) token counts and rows
 * per expert, as a scenario replay does; GB/s of ids on one core. */
#include "routing.h"
#include "trace.h"

#include <glib/gstdio.h>
#include <stdio.h>

int
main (void)
{
  const guint E = 256, K = 8, L = 4, EP = 64;
  const guint64 T = 1 << 18; /* 262,144 tokens x 8 = 2 MiB of ids per layer */
  g_autofree char *dir = g_dir_make_tmp ("moesim-bench-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "bench.mrt", NULL);
  TraceShape shape = { E, K, L, T, FALSE, FALSE };
  TraceWriter *w = trace_writer_new (path, &shape, NULL);
  g_autofree gint32 *ids = g_new (gint32, T * K);
  GRand *r = g_rand_new_with_seed (5);
  for (guint l = 0; l < L; l++)
    {
      for (guint64 t = 0; t < T; t++)
        for (guint k = 0; k < K; k++)
          ids[t * K + k] = (gint32) ((g_rand_int_range (r, 0, 32) + 32 * k) % E); /* distinct per token */
      trace_writer_layer (w, ids, NULL, NULL);
    }
  g_rand_free (r);
  g_assert_true (trace_writer_finish (w, NULL));
  g_autoptr (Trace) t = trace_open (path, NULL);
  ScenarioSpec spec = { 0 };
  spec.parallel.ep = EP;
  spec.parallel.tokens_per_gpu = (gint64) (T / EP);
  spec.parallel.microbatches = 1;
  spec.model.experts = E;
  g_autoptr (RoutingLayer) rl = routing_layer_new (EP, E);
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++)
    {
      gint64 t0 = g_get_monotonic_time ();
      for (guint l = 0; l < L; l++)
        routing_from_trace (&spec, t, NULL, l, 0, (guint) (T / EP), rl);
      best = MIN (best, (g_get_monotonic_time () - t0) / 1e6);
    }
  double bytes = (double) T * K * L * trace_id_bytes (t);
  printf ("moesim trace ingest benchmark: %u layers x %" G_GUINT64_FORMAT " tokens x top-%u, %u experts "
          "on EP%u, one core\n  %.1f MB of ids in %.1f ms: %.2f GB/s (target >= 1 GB/s)%s\n",
          L, T, K, E, EP, bytes / 1e6, best * 1e3, bytes / best / 1e9,
          bytes / best / 1e9 >= 1.0 ? "  [target met]" : "  [TARGET MISSED]");
  g_unlink (path);
  g_rmdir (dir);
  return 0;
}
