/* Routes and link capacities of each fabric kind, against hand-drawn
 * topologies. */
#include "cluster.h"
#include "test_common.h"

static TopoSpec
spec (FabricKind kind, guint gpn, guint nics, guint radix, double over)
{
  TopoSpec t = { 0 };
  t.node.gpus = gpn;
  t.nvlink.gbps = 100;
  t.nvlink.efficiency = 0.5;
  t.nvlink.latency_us = 1;
  t.nic.per_node = nics;
  t.nic.gbps = 10;
  t.nic.efficiency = 1;
  t.nic.latency_us = 2;
  t.fabric.kind = kind;
  t.fabric.leaf_radix = radix;
  t.fabric.oversubscription = over;
  t.fabric.hop_latency_us = 0.5;
  return t;
}

static char *
route (const Cluster *c, guint s, guint d, SimTime *lat)
{
  ClusterPath p;
  cluster_path (c, s, d, &p);
  GString *str = g_string_new (NULL);
  for (guint h = 0; h < p.n_hops; h++)
    {
      g_autofree char *n = cluster_link_name (c, p.links[h]);
      g_string_append_printf (str, "%s%s", h ? " " : "", n);
    }
  if (lat)
    *lat = p.latency;
  return g_string_free (str, FALSE);
}

static void
test_single_switch_routes (void)
{
  /* 2 nodes x 4 GPUs, 2 NICs per node (GPUs 0,1 on NIC 0; 2,3 on NIC 1) */
  TopoSpec t = spec (FABRIC_SINGLE_SWITCH, 4, 2, 64, 1);
  g_autoptr (Cluster) c = cluster_new (&t, 8, CROSS_RAIL_AUTO, "test", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  SimTime lat;
  g_autofree char *a = route (c, 0, 1, &lat);
  CU_ASSERT_STRING_EQUAL (a, "gpu0.nvlink.out gpu1.nvlink.in");
  CU_ASSERT_EQUAL (lat, SIM_PS_PER_US);
  g_autofree char *b = route (c, 1, 6, &lat);
  CU_ASSERT_STRING_EQUAL (b, "node0.nic0.out node1.nic1.in");
  CU_ASSERT_EQUAL (lat, 2 * SIM_PS_PER_US);
  /* capacities: gbps x efficiency */
  ClusterPath p;
  cluster_path (c, 0, 1, &p);
  ASSERT_REL (cluster_link_capacity (c, p.links[0]), 50e9, 1e-12);
  cluster_path (c, 1, 6, &p);
  ASSERT_REL (cluster_link_capacity (c, p.links[0]), 10e9, 1e-12);
  CU_ASSERT_EQUAL (cluster_link_class (c, p.links[0]), LCLASS_NIC);
  CU_ASSERT (p.uses_ib && !p.uses_nvlink && !p.uses_fabric);
}

static void
test_fat_tree_crosses_leaves_with_oversubscription (void)
{
  /* 4 nodes x 1 GPU x 1 NIC; 4-port leaves at 3:1 -> 3 NICs down, 1 port up */
  TopoSpec t = spec (FABRIC_FAT_TREE, 1, 1, 4, 3);
  g_autoptr (Cluster) c = cluster_new (&t, 4, CROSS_RAIL_AUTO, "test", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  SimTime lat;
  g_autofree char *same = route (c, 0, 2, &lat);
  CU_ASSERT_STRING_EQUAL (same, "node0.nic0.out node2.nic0.in");
  CU_ASSERT_EQUAL (lat, 2 * SIM_PS_PER_US);
  g_autofree char *cross = route (c, 0, 3, &lat);
  CU_ASSERT_STRING_EQUAL (cross, "node0.nic0.out leaf0.up leaf1.down node3.nic0.in");
  CU_ASSERT_EQUAL (lat, 3 * SIM_PS_PER_US); /* 2 + two extra switch hops of 0.5 */
  ClusterPath p;
  cluster_path (c, 0, 3, &p);
  ASSERT_REL (cluster_link_capacity (c, p.links[1]), 10e9, 1e-12); /* one uplink port */
  CU_ASSERT (p.uses_fabric);
}

static void
test_rail_optimized_spine_and_multi_plane_forwarding (void)
{
  /* 2 nodes x 2 GPUs, one NIC each: rails 0 and 1 */
  TopoSpec rail = spec (FABRIC_RAIL_OPTIMIZED, 2, 2, 64, 1);
  g_autoptr (Cluster) r = cluster_new (&rail, 4, CROSS_RAIL_AUTO, "test", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  g_autofree char *same_rail = route (r, 0, 2, NULL);
  CU_ASSERT_STRING_EQUAL (same_rail, "node0.nic0.out node1.nic0.in");
  g_autofree char *spine = route (r, 0, 3, NULL);
  CU_ASSERT_STRING_EQUAL (spine, "node0.nic0.out plane0.leaf0.up plane1.leaf0.down node1.nic1.in");

  TopoSpec mp = spec (FABRIC_MULTI_PLANE, 2, 2, 64, 1);
  g_autoptr (Cluster) m = cluster_new (&mp, 4, CROSS_RAIL_AUTO, "test", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  SimTime lat;
  g_autofree char *fwd = route (m, 0, 3, &lat);
  CU_ASSERT_STRING_EQUAL (fwd, "gpu0.nvlink.out gpu1.nvlink.in node0.nic1.out node1.nic1.in");
  CU_ASSERT_EQUAL (lat, 3 * SIM_PS_PER_US); /* NVLink 1 + NIC 2 */
  /* rail-optimized fabrics forward too when asked */
  g_autoptr (Cluster) r2 = cluster_new (&rail, 4, CROSS_RAIL_NVLINK, "test", NULL);
  g_autofree char *fwd2 = route (r2, 0, 3, NULL);
  CU_ASSERT_STRING_EQUAL (fwd2, "gpu0.nvlink.out gpu1.nvlink.in node0.nic1.out node1.nic1.in");
  /* and spine is impossible between isolated planes */
  g_autoptr (GError) err = NULL;
  g_autoptr (Cluster) bad = cluster_new (&mp, 4, CROSS_RAIL_SPINE, "cross_rail", &err);
  CU_ASSERT_PTR_NULL (bad);
  CU_ASSERT (err && strstr (err->message, "cross_rail"));
}

static void
test_gpus_must_fill_nodes (void)
{
  TopoSpec t = spec (FABRIC_SINGLE_SWITCH, 8, 8, 64, 1);
  g_autoptr (GError) err = NULL;
  g_autoptr (Cluster) c = cluster_new (&t, 12, CROSS_RAIL_AUTO, "parallel.ep", &err);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT (err && strstr (err->message, "parallel.ep") && strstr (err->message, "12"));
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_single_switch_routes),
    TEST (test_fat_tree_crosses_leaves_with_oversubscription),
    TEST (test_rail_optimized_spine_and_multi_plane_forwarding),
    TEST (test_gpus_must_fill_nodes),
  };
  return test_main ("cluster", tests, G_N_ELEMENTS (tests));
}
