/* Benchmark: synthetic routing. The EP256 forward's routing (58 layers of
 * 256 GPUs x 4096 tokens, top-8 of 256 experts in 4 of 8 groups, with node
 * counts), or another scenario's (`bench_routing SCENARIO`), generated on
 * one core as the run's routing thread does; best of three, in tokens per
 * second. */
#include "routing.h"
#include "scenario.h"

#include <stdio.h>

int
main (int argc, char **argv)
{
  g_autoptr (GError) err = NULL;
  const char *path = argc > 1 ? argv[1] : MOESIM_SOURCE_ROOT "/sim/deepseek-v3-ep256.yaml";
  g_autoptr (Scenario) sc = scenario_load (path, NULL, &err);
  if (sc == NULL)
    {
      fprintf (stderr, "bench_routing: %s\n", err->message);
      return 1;
    }
  const ScenarioSpec *s = scenario_spec (sc);
  guint ep = (guint) s->parallel.ep, E = (guint) s->model.experts, L = (guint) s->model.moe_layers;
  guint gpn = (guint) topology_spec (scenario_topology (sc))->node.gpus;
  guint tokens = (guint) (s->parallel.tokens_per_gpu / s->parallel.microbatches);
  g_autoptr (RoutingLayer) r = routing_layer_new (ep, E);
  routing_layer_count_nodes (r, gpn);
  double best = 1e9;
  for (int rep = 0; rep < 3; rep++)
    {
      gint64 t0 = g_get_monotonic_time ();
      for (guint l = 0; l < L; l++)
        routing_synthetic (s, NULL, l, 0, tokens, r);
      best = MIN (best, (g_get_monotonic_time () - t0) / 1e6);
    }
  double n = (double) L * ep * tokens;
  printf ("moesim synthetic routing benchmark: %u layers x %u GPUs x %u tokens, top-%d of %u experts, one core\n"
          "  %.0f M tokens in %.3f s: %.1f M tokens/s, %.1f ns per token\n",
          L, ep, tokens, (int) s->model.top_k, E, n / 1e6, best, n / best / 1e6, best / n * 1e9);
  return 0;
}
