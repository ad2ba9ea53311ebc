/* Scenario and topology files: every bad input is an error that names the
 * file and line:column (or the --set), the bad value and what was expected. */
#include "routing.h"
#include "scenario.h"
#include "test_common.h"

#include <glib/gstdio.h>

static char *tmpdir;

static char *
write_scenario (const char *name, const char *body)
{
  char *path = g_build_filename (tmpdir, name, NULL);
  g_autofree char *text = g_strdup_printf (body, MOESIM_SOURCE_ROOT "/topologies/tiny-2node.yaml");
  g_file_set_contents (path, text, -1, NULL);
  return path;
}

#define GOOD                                                                                       \
  "name: t\n"                                                                                      \
  "topology: %s\n"                                                                                 \
  "model: {hidden: 1024, moe_intermediate: 512, experts: 16, top_k: 4, moe_layers: 2}\n"          \
  "parallel: {ep: 8, tokens_per_gpu: 256}\n"

/* Loads `body`, expects failure whose message contains every needle. */
static void
expect_error (const char *body, const char *const *sets, const char *const *needles)
{
  g_autofree char *path = write_scenario ("s.yaml", body);
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = scenario_load (path, sets, &err);
  CU_ASSERT_PTR_NULL (sc);
  CU_ASSERT_PTR_NOT_NULL (err);
  if (err == NULL)
    return;
  CU_ASSERT (err->domain == MOESIM_CONFIG_ERROR);
  for (guint i = 0; needles[i]; i++)
    {
      gboolean found = strstr (err->message, needles[i]) != NULL;
      if (!found)
        g_printerr ("\n  message '%s' lacks '%s'\n", err->message, needles[i]);
      CU_ASSERT (found);
    }
}

#define NEEDLES(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void
test_good_scenario_loads (void)
{
  g_autofree char *path = write_scenario ("good.yaml", GOOD);
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = scenario_load (path, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL (sc);
  if (sc == NULL)
    return;
  const ScenarioSpec *s = scenario_spec (sc);
  CU_ASSERT_EQUAL (s->model.hidden, 1024);
  CU_ASSERT_EQUAL (s->parallel.ep, 8);
  CU_ASSERT_EQUAL (s->parallel.microbatches, 1); /* default */
  CU_ASSERT_EQUAL (s->model.dispatch_dtype, DTYPE_FP8);
  CU_ASSERT_EQUAL (topology_spec (scenario_topology (sc))->node.gpus, 4);
}

static void
test_shipped_files_load (void)
{
  /* every scenario in sim/ (the sweep-*.yaml files are sweeps, checked in test_cli) */
  g_autofree char *sim = g_build_filename (MOESIM_SOURCE_ROOT, "sim", NULL);
  g_autoptr (GDir) dir = g_dir_open (sim, 0, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (dir);
  guint loaded = 0;
  for (const char *name; (name = g_dir_read_name (dir));)
    {
      if (!g_str_has_suffix (name, ".yaml") || g_str_has_prefix (name, "sweep-"))
        continue;
      g_autofree char *p = g_build_filename (sim, name, NULL);
      g_autoptr (GError) err = NULL;
      g_autoptr (Scenario) sc = scenario_load (p, NULL, &err);
      if (err)
        g_printerr ("\n  %s\n", err->message);
      CU_ASSERT_PTR_NOT_NULL (sc);
      loaded++;
    }
  CU_ASSERT (loaded >= 5);
  const char *topo[] = { "h800-deepseek.yaml", "h100-hgx-8x400g.yaml", "h200-hgx-8x400g.yaml",
                         "b200-hgx-8x400g.yaml", "gb200-nvl72.yaml", "tiny-2node.yaml" };
  for (guint i = 0; i < G_N_ELEMENTS (topo); i++)
    {
      g_autofree char *p = g_build_filename (MOESIM_SOURCE_ROOT, "topologies", topo[i], NULL);
      g_autoptr (GError) err = NULL;
      g_autoptr (Topology) t = topology_load (p, &err);
      if (err)
        g_printerr ("\n  %s\n", err->message);
      CU_ASSERT_PTR_NOT_NULL (t);
    }
}

static void
test_set_overrides_scenario_and_topology (void)
{
  g_autofree char *path = write_scenario ("good.yaml", GOOD);
  const char *sets[] = { "parallel.ep=16", "model.dispatch_dtype=bf16", "nic.gbps=100", NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = scenario_load (path, sets, &err);
  CU_ASSERT_PTR_NOT_NULL (sc);
  if (sc == NULL)
    return;
  CU_ASSERT_EQUAL (scenario_spec (sc)->parallel.ep, 16);
  CU_ASSERT_EQUAL (scenario_spec (sc)->model.dispatch_dtype, DTYPE_BF16);
  ASSERT_REL (topology_spec (scenario_topology (sc))->nic.gbps, 100.0, 0);
}

static void
test_yaml_syntax_error (void)
{
  expect_error ("name: t\nmodel: {hidden: 1024\n", NULL, NEEDLES ("s.yaml:", "syntax"));
}

static void
test_unknown_key (void)
{
  expect_error (GOOD "modle: {}\n", NULL, NEEDLES ("s.yaml:5:1", "unknown key 'modle'"));
  expect_error (GOOD "parallel2: 1\n", NULL, NEEDLES ("s.yaml:5:1", "parallel2"));
}

static void
test_unknown_nested_key (void)
{
  expect_error ("name: t\ntopology: %s\nmodel: {hiden: 3}\n", NULL,
                NEEDLES ("s.yaml:3:9", "unknown key 'hiden' in 'model'", "hidden"));
}

static void
test_wrong_type (void)
{
  expect_error ("name: t\ntopology: %s\nmodel: {hidden: lots}\n", NULL,
                NEEDLES ("s.yaml:3:17", "model.hidden", "expected an integer", "lots"));
  expect_error ("name: t\ntopology: %s\nparallel: [1, 2]\n", NULL,
                NEEDLES ("s.yaml:3:11", "expected a mapping under 'parallel'", "sequence"));
  /* a name field given a list names the names it takes */
  expect_error (GOOD "dispatch: [direct]\n", NULL,
                NEEDLES ("s.yaml:5:11", "dispatch: expected one of: direct, hierarchical, low_latency, got a sequence"));
}

static void
test_out_of_range (void)
{
  expect_error (GOOD "model: {top_k: 0}\n", NULL, NEEDLES ("duplicate key 'model'"));
  expect_error ("name: t\ntopology: %s\n"
                "model: {hidden: 1024, moe_intermediate: 512, experts: 16, top_k: 0, moe_layers: 2}\n"
                "parallel: {ep: 8, tokens_per_gpu: 256}\n",
                NULL, NEEDLES ("s.yaml:3:66", "model.top_k", "out of range", "expected 1 to 64"));
}

static void
test_zero_or_negative_bandwidth (void)
{
  expect_error (GOOD, NEEDLES ("nic.gbps=0"), NEEDLES ("--set nic.gbps=0", "out of range"));
  expect_error (GOOD, NEEDLES ("nvlink.gbps=-5"), NEEDLES ("nvlink.gbps", "-5", "out of range"));
  /* and in a topology file, with its line */
  g_autofree char *tpath = g_build_filename (tmpdir, "bad-topo.yaml", NULL);
  g_autofree char *orig = NULL;
  g_file_get_contents (MOESIM_SOURCE_ROOT "/topologies/tiny-2node.yaml", &orig, NULL, NULL);
  g_autoptr (GString) t = g_string_new (orig);
  g_string_replace (t, "gbps: 25 ", "gbps: 0  ", 1);
  g_file_set_contents (tpath, t->str, -1, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (Topology) topo = topology_load (tpath, &err);
  CU_ASSERT_PTR_NULL (topo);
  CU_ASSERT (err && strstr (err->message, "bad-topo.yaml:") && strstr (err->message, "nic.gbps")
             && strstr (err->message, "out of range"));
}

static void
test_ep_not_multiple_of_node (void)
{
  expect_error ("name: t\ntopology: %s\n"
                "model: {hidden: 64, moe_intermediate: 64, experts: 12, top_k: 2, moe_layers: 1}\n"
                "parallel: {ep: 6, tokens_per_gpu: 16}\n",
                NULL, NEEDLES ("s.yaml:4:16", "parallel.ep = 6", "node.gpus = 4"));
}

static void
test_experts_not_divisible_by_ep (void)
{
  expect_error ("name: t\ntopology: %s\n"
                "model: {hidden: 64, moe_intermediate: 64, experts: 20, top_k: 2, moe_layers: 1}\n"
                "parallel: {ep: 8, tokens_per_gpu: 16}\n",
                NULL, NEEDLES ("model.experts = 20", "not divisible by parallel.ep = 8"));
}

static void
test_missing_topology_file (void)
{
  expect_error ("name: t\ntopology: nowhere.yaml\n"
                "model: {hidden: 64, moe_intermediate: 64, experts: 8, top_k: 2, moe_layers: 1}\n"
                "parallel: {ep: 8, tokens_per_gpu: 16}\n",
                NULL, NEEDLES ("s.yaml:2:11", "nowhere.yaml", "cannot read"));
}

static void
test_missing_required_key (void)
{
  expect_error ("name: t\ntopology: %s\nmodel: {hidden: 64}\n", NULL,
                NEEDLES ("missing required key 'model.moe_intermediate'"));
}

static void
test_set_unknown_path_or_bad_value (void)
{
  expect_error (GOOD, NEEDLES ("parallel.epp=4"),
                NEEDLES ("--set parallel.epp=4", "unknown key", "under 'parallel'", "ep"));
  expect_error (GOOD, NEEDLES ("nic.speed=4"), NEEDLES ("nic.speed", "unknown key"));
  /* a key neither schema has: the scenario's keys, then where the
   * topology's are, after the --set that names it */
  expect_error (GOOD, NEEDLES ("colour=red"),
                NEEDLES ("unknown key 'colour'", "the keys at the top are: name, topology",
                         "topology's keys are under gpu, node, nvlink, nic, fabric"));
  {
    g_autofree char *path = write_scenario ("s.yaml", GOOD);
    g_autoptr (GError) err = NULL;
    g_autoptr (Scenario) sc = scenario_load (path, NEEDLES ("colour=red"), &err);
    CU_ASSERT_PTR_NULL (sc);
    CU_ASSERT (err != NULL && g_str_has_prefix (err->message, "--set colour=red: "));
  }
  /* an integer's bounds whole, not as %g would round them (1.67772e+07) */
  expect_error (GOOD, NEEDLES ("parallel.tokens_per_gpu=0"),
                NEEDLES ("--set parallel.tokens_per_gpu=0", "value 0 is out of range",
                         "expected 1 to 16777216"));
  expect_error (GOOD, NEEDLES ("parallel.ep=eight"),
                NEEDLES ("--set parallel.ep=eight", "expected an integer", "eight"));
  expect_error (GOOD, NEEDLES ("dispatch=teleport"),
                NEEDLES ("dispatch", "teleport", "expected one of: direct"));
  expect_error (GOOD, NEEDLES ("parallel.ep"), NEEDLES ("expected KEY=VALUE"));
}

static void
test_too_large_for_memory (void)
{
  expect_error ("name: t\ntopology: %s\n"
                "model: {hidden: 64, moe_intermediate: 64, experts: 32768, top_k: 2, moe_layers: 1}\n"
                "parallel: {ep: 32768, tokens_per_gpu: 16}\n",
                NULL, NEEDLES ("needs about", "GB of host memory", "sim.max_memory_gb"));
}

static void
test_multi_plane_rejects_spine (void)
{
  g_autofree char *path = g_build_filename (MOESIM_SOURCE_ROOT, "sim", "deepseek-v3-ep64-forward.yaml", NULL);
  g_autoptr (GError) err = NULL;
  const char *sets[] = { "cross_rail=spine", NULL };
  g_autoptr (Scenario) sc = scenario_load (path, sets, &err);
  CU_ASSERT_PTR_NULL (sc);
  CU_ASSERT (err && strstr (err->message, "multi_plane"));
}

static void
test_yaml_tags_and_bad_bytes (void)
{
  expect_error ("name: t\ntopology: %s\nmodel: {hidden: !!str 1024}\n", NULL,
                NEEDLES ("s.yaml:3:17", "tags are not supported"));
  expect_error ("name: t\n\n\ntopology: \xff\n", NULL, NEEDLES ("s.yaml:4:11", "UTF-8"));
}

static void
test_overrides_complete_a_topology_before_checks (void)
{
  /* a topology whose NICs do not divide the GPUs, repaired by --set */
  g_autofree char *orig = NULL;
  g_file_get_contents (MOESIM_SOURCE_ROOT "/topologies/tiny-2node.yaml", &orig, NULL, NULL);
  g_autoptr (GString) t = g_string_new (orig);
  g_string_replace (t, "per_node: 2 ", "per_node: 3 ", 1);
  g_autofree char *tpath = g_build_filename (tmpdir, "three-nics.yaml", NULL);
  g_file_set_contents (tpath, t->str, -1, NULL);
  g_autofree char *body = g_strdup_printf ("name: t\ntopology: %s\n"
      "model: {hidden: 64, moe_intermediate: 64, experts: 8, top_k: 2, moe_layers: 1}\n"
      "parallel: {ep: 8, tokens_per_gpu: 16}\n", tpath);
  g_autofree char *path = g_build_filename (tmpdir, "repair.yaml", NULL);
  g_file_set_contents (path, body, -1, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) bad = scenario_load (path, NULL, &err);
  CU_ASSERT (bad == NULL && err && strstr (err->message, "nic.per_node = 3"));
  g_clear_error (&err);
  const char *fix[] = { "nic.per_node=2", NULL };
  g_autoptr (Scenario) good = scenario_load (path, fix, &err);
  CU_ASSERT_PTR_NOT_NULL (good);
}

static void
test_clock_and_memory_bounds (void)
{
  expect_error (GOOD, NEEDLES ("nic.gbps=1e-6", "nic.efficiency=0.001", "parallel.tokens_per_gpu=65536"),
                NEEDLES ("simulated time", "clock"));
  expect_error (GOOD, NEEDLES ("model.moe_layers=100000", "parallel.microbatches=256"),
                NEEDLES ("GB of host memory", "steps"));
}

static void
test_many_groups_route (void)
{
  /* 32 groups (once an out-of-range shift in the group table): routes fine */
  g_autofree char *path = write_scenario ("g32.yaml",
      "name: t\ntopology: %s\n"
      "model: {hidden: 64, moe_intermediate: 64, experts: 256, top_k: 8, n_group: 32, topk_group: 2, moe_layers: 1}\n"
      "parallel: {ep: 8, tokens_per_gpu: 64}\n");
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = scenario_load (path, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  g_autoptr (RoutingLayer) r = routing_layer_new (8, 256);
  routing_synthetic (scenario_spec (sc), NULL, 0, 0, 64, r);
  guint64 rows = 0;
  for (guint e = 0; e < 256; e++)
    rows += r->expert_rows[e];
  CU_ASSERT_EQUAL (rows, 8 * 64 * 8);
}

int
main (void)
{
  tmpdir = g_dir_make_tmp ("moesim-test-XXXXXX", NULL);
  static const TestCase tests[] = {
    TEST (test_good_scenario_loads),
    TEST (test_shipped_files_load),
    TEST (test_set_overrides_scenario_and_topology),
    TEST (test_yaml_syntax_error),
    TEST (test_unknown_key),
    TEST (test_unknown_nested_key),
    TEST (test_wrong_type),
    TEST (test_out_of_range),
    TEST (test_zero_or_negative_bandwidth),
    TEST (test_ep_not_multiple_of_node),
    TEST (test_experts_not_divisible_by_ep),
    TEST (test_missing_topology_file),
    TEST (test_missing_required_key),
    TEST (test_set_unknown_path_or_bad_value),
    TEST (test_too_large_for_memory),
    TEST (test_multi_plane_rejects_spine),
    TEST (test_yaml_tags_and_bad_bytes),
    TEST (test_overrides_complete_a_topology_before_checks),
    TEST (test_clock_and_memory_bounds),
    TEST (test_many_groups_route),
  };
  int rc = test_main ("config", tests, G_N_ELEMENTS (tests));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    rc = 1;
  g_free (tmpdir);
  return rc;
}
