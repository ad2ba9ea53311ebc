/* Benchmark: uniform all-to-all through the flow solver, at the scales the
 * issue names. Prints wall time, flows, events, events/s, solver runs and
 * the simulated time against the max-min closed form. Not a test: it asserts
 * nothing, it measures (meson test --benchmark). */
#include "cluster.h"
#include "engine.h"

#include <stdio.h>
#include <sys/resource.h>

typedef struct {
  const char *name;
  guint gpus;
  FabricKind fabric;
  double tolerance;
  double target_s; /* 0: no target */
  double spread;   /* flow sizes uniform in bytes * [1 - spread, 1 + spread] */
} Case;

static TopoSpec
spec_for (FabricKind fabric)
{
  TopoSpec t = { 0 };
  t.node.gpus = 8;
  t.nvlink.gbps = 160;
  t.nvlink.efficiency = 1;
  t.nvlink.latency_us = 3;
  t.nic.per_node = 8;
  t.nic.gbps = 50;
  t.nic.efficiency = 1;
  t.nic.latency_us = 3;
  t.fabric.kind = fabric;
  t.fabric.leaf_radix = 64;
  t.fabric.oversubscription = 1;
  t.fabric.hop_latency_us = 0.5;
  return t;
}

static void
run_case (const Case *c)
{
  const double bytes = 1e6; /* per (source, destination) pair */
  TopoSpec spec = spec_for (c->fabric);
  g_autoptr (GError) err = NULL;
  g_autoptr (Cluster) cl = cluster_new (&spec, c->gpus, CROSS_RAIL_AUTO, "bench", &err);
  g_assert_no_error (err);
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (Engine) e = engine_new (NULL, NULL, c->tolerance);
  for (guint l = 0; l < cluster_n_links (cl); l++)
    engine_add_link (e, cluster_link_capacity (cl, l));
  guint64 flows = 0;
  SimTime max_lat = 0;
  GRand *rnd = g_rand_new_with_seed (1);
  for (guint s = 0; s < c->gpus; s++)
    for (guint d = 0; d < c->gpus; d++)
      if (s != d)
        {
          ClusterPath p;
          cluster_path (cl, s, d, &p);
          double b = c->spread > 0 ? bytes * g_rand_double_range (rnd, 1 - c->spread, 1 + c->spread)
                                   : bytes;
          engine_flow (e, b, p.links, p.n_hops, p.latency, 0.0, 0);
          max_lat = MAX (max_lat, p.latency);
          flows++;
        }
  g_rand_free (rnd);
  engine_commit (e);
  SimTime end = engine_run (e);
  double wall = (double) (g_get_monotonic_time () - t0) / 1e6;
  /* closed form: the busier of the NVLink port (7 flows) and the NIC port
   * (gpus - 8 flows), each flow at an equal share; plus the longest latency
   * (fat-tree leaves are non-blocking, so they never bind) */
  double t_nvl = 7.0 * bytes / (spec.nvlink.gbps * 1e9);
  double t_nic = (double) (c->gpus - 8) * bytes / (spec.nic.gbps * 1e9);
  double expect_us = MAX (t_nvl, t_nic) * 1e6 + sim_time_to_us (max_lat);
  double got_us = sim_time_to_us (end);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  const FlowNet *net = engine_flownet (e);
  printf ("%-30s %5u GPUs %8" G_GUINT64_FORMAT " flows tol %-5g wall %7.3f s %8" G_GUINT64_FORMAT
          " events (%.2e/s) %6" G_GUINT64_FORMAT " solves  sim %.1f us",
          c->name, c->gpus, flows, c->tolerance, wall, engine_events (e),
          (double) engine_events (e) / MAX (wall, 1e-9), flownet_solve_count (net), got_us);
  if (c->spread == 0)
    printf (" vs closed form %.1f us (%+.4f %%)", expect_us, 100.0 * (got_us - expect_us) / expect_us);
  printf ("  peak RSS %ld MB%s\n", ru.ru_maxrss / 1024,
          c->target_s > 0 ? (wall <= c->target_s ? "  [target <= 0.2 s met]" : "  [TARGET MISSED]") : "");
  fflush (stdout);
}

int
main (void)
{
  const Case cases[] = {
    { "uniform, single switch", 256, FABRIC_SINGLE_SWITCH, 0.0, 0.2, 0 },
    { "uniform, fat tree", 64, FABRIC_FAT_TREE, 0.0, 0, 0 },
    { "uniform, fat tree", 256, FABRIC_FAT_TREE, 0.0, 0, 0 },
    { "uniform, fat tree", 1024, FABRIC_FAT_TREE, 0.0, 0, 0 },
    /* sizes +-50 %: flows end at many different times */
    { "sizes +-50 %, fat tree", 64, FABRIC_FAT_TREE, 0.0, 0, 0.5 },
    { "sizes +-50 %, fat tree", 64, FABRIC_FAT_TREE, 0.02, 0, 0.5 },
    { "sizes +-50 %, fat tree", 256, FABRIC_FAT_TREE, 0.02, 0, 0.5 },
    { "sizes +-50 %, fat tree", 1024, FABRIC_FAT_TREE, 0.02, 0, 0.5 },
  };
  printf ("moesim solver benchmark: all-to-all, 1 MB per GPU pair (or +-50 %%), 8 GPUs per\n"
          "node, NVLink 160 GB/s, NIC 50 GB/s (one per GPU), fat tree of 64-port leaves\n");
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    run_case (&cases[i]);
  return 0;
}
