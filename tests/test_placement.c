/* Expert placement: contiguous and round-robin maps, and EPLB against the
 * properties DeepSeek's balancer must keep, on real expert loads (OLMoE's
 * per-domain counts in ../shared/data/routing) and on skewed synthetic
 * ones; and a simulated run that places replicas. */
#include "moe.h"
#include "placement.h"
#include "test_sim.h"

static char *data_dir; /* ../shared/data/routing, NULL when absent */

static void
test_simple_placements (void)
{
  g_autoptr (LayerPlacement) c = placement_contiguous (16, 8, 4);
  g_autoptr (LayerPlacement) r = placement_round_robin (16, 8, 4);
  CU_ASSERT (placement_valid (c) && placement_valid (r));
  for (guint e = 0; e < 16; e++)
    {
      CU_ASSERT_EQUAL (placement_gpu (c, c->log_slots[c->log_offset[e]]), e / 2);
      CU_ASSERT_EQUAL (placement_gpu (r, r->log_slots[r->log_offset[e]]), e % 8);
    }
  /* candidates without replicas: the one slot */
  guint off[17], cand[16];
  placement_candidates (r, 5, off, cand);
  for (guint e = 0; e < 16; e++)
    CU_ASSERT (off[e + 1] - off[e] == 1 && r->phys_to_log[cand[off[e]]] == e);
}

/* The properties of one EPLB result for `load`: a valid map, each expert at
 * least once, every GPU full, replicas where the load is, and a max GPU
 * load no higher than the experts in place. */
static void
check_eplb (const double *load, guint E, guint R, guint groups, guint ep, guint gpn, EplbPolicy policy)
{
  g_autoptr (LayerPlacement) p = placement_eplb (load, E, R, groups, ep, gpn, policy);
  CU_ASSERT_FATAL (p != NULL);
  CU_ASSERT (placement_valid (p));
  CU_ASSERT_EQUAL (p->physical, E + R);
  /* against the experts in place (when they divide among the GPUs) */
  if (E % ep == 0)
    {
      g_autoptr (LayerPlacement) c = placement_contiguous (E, ep, gpn);
      double eplb = placement_max_gpu_load (p, load), contiguous = placement_max_gpu_load (c, load);
      if (eplb > contiguous * (1 + 1e-12))
        g_printerr ("\n  E %u R %u groups %u ep %u: eplb %.1f > contiguous %.1f\n", E, R, groups, ep, eplb,
                    contiguous);
      CU_ASSERT (eplb <= contiguous * (1 + 1e-12));
    }
  /* replicas bring the busiest GPU close to the mean: within the heaviest
   * expert's load (a global placement with more slots than GPUs) */
  double total = 0, heaviest = 0;
  for (guint e = 0; e < E; e++)
    {
      total += load[e];
      heaviest = MAX (heaviest, load[e]);
    }
  CU_ASSERT (placement_max_gpu_load (p, load) <= total / ep + heaviest * (1 + 1e-12));
  /* the hottest expert gets at least as many replicas as the coldest */
  guint hot = 0, cold = 0;
  for (guint e = 1; e < E; e++)
    {
      hot = load[e] > load[hot] ? e : hot;
      cold = load[e] < load[cold] ? e : cold;
    }
  CU_ASSERT (p->replicas[hot] >= p->replicas[cold]);
  /* a node-local candidate list never names another node's slot */
  g_autofree guint *off = g_new (guint, E + 1);
  g_autofree guint *cand = g_new (guint, E + R);
  for (guint src = 0; src < ep; src += gpn)
    {
      placement_candidates (p, src, off, cand);
      for (guint e = 0; e < E; e++)
        {
          gboolean local = FALSE;
          for (guint i = p->log_offset[e]; i < p->log_offset[e + 1]; i++)
            local |= placement_gpu (p, p->log_slots[i]) / gpn == src / gpn;
          for (guint k = off[e]; k < off[e + 1]; k++)
            {
              CU_ASSERT (p->phys_to_log[cand[k]] == e);
              if (local)
                CU_ASSERT (placement_gpu (p, cand[k]) / gpn == src / gpn);
            }
        }
    }
}

static void
test_eplb_on_real_loads (void)
{
  if (data_dir == NULL)
    return;
  g_autofree char *csv = g_build_filename (data_dir, "olmoe-mixtral-domain-expert-counts", "expert_counts.csv",
                                           NULL);
  g_autofree char *text = NULL;
  CU_ASSERT_FATAL (g_file_get_contents (csv, &text, NULL, NULL));
  /* OLMoE: 64 experts; one load vector per (domain, layer) */
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  for (guint i = 1; lines[i]; i++)
    {
      g_auto (GStrv) f = g_strsplit (lines[i], ",", -1);
      if (g_strv_length (f) < 6 || !g_str_has_prefix (f[0], "OLMoE"))
        continue;
      g_autofree char *key = g_strdup_printf ("%s/%s", f[1], f[2]);
      double *v = g_hash_table_lookup (seen, key);
      if (v == NULL)
        g_hash_table_insert (seen, g_strdup (key), v = g_new0 (double, 64));
      guint e = (guint) g_ascii_strtoull (f[3], NULL, 10);
      if (e < 64)
        v[e] = g_ascii_strtod (f[4], NULL);
    }
  CU_ASSERT_FATAL (g_hash_table_size (seen) >= 6);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, seen);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      check_eplb (v, 64, 0, 1, 16, 8, EPLB_AUTO);  /* global, no replicas */
      check_eplb (v, 64, 16, 8, 16, 8, EPLB_AUTO); /* hierarchical: 8 groups on 2 nodes */
      check_eplb (v, 64, 32, 1, 32, 8, EPLB_GLOBAL);
      check_eplb (v, 64, 8, 4, 8, 8, EPLB_AUTO);
    }
}

static void
test_eplb_on_skewed_loads (void)
{
  /* Zipf-like loads in shuffled order, many shapes */
  GRand *rand = g_rand_new_with_seed (7);
  for (guint trial = 0; trial < 200; trial++)
    {
      static const guint shapes[][5] = { /* E, R, groups, ep, gpn */
                                         { 256, 0, 8, 64, 8 },  { 256, 32, 8, 32, 8 }, { 256, 64, 8, 64, 8 },
                                         { 64, 0, 1, 8, 8 },    { 288 - 32, 32, 8, 144, 8 },
                                         { 256, 0, 8, 256, 8 }, { 16, 16, 4, 8, 4 } };
      const guint *sh = shapes[trial % G_N_ELEMENTS (shapes)];
      g_autofree double *load = g_new (double, sh[0]);
      for (guint e = 0; e < sh[0]; e++)
        load[e] = 1e5 / (1.0 + e) * (0.5 + g_rand_double (rand));
      for (guint e = sh[0] - 1; e > 0; e--)
        {
          guint j = (guint) g_rand_int_range (rand, 0, (gint32) e + 1);
          double t = load[e];
          load[e] = load[j];
          load[j] = t;
        }
      check_eplb (load, sh[0], sh[1], sh[2], sh[3], sh[4], EPLB_AUTO);
    }
  g_rand_free (rand);
}

/* A run with EPLB: 256 experts + 32 replicas on EP32 (DeepSeek's prefill
 * deployment): every selection lands in exactly one slot, the slots of a
 * GPU are 288 / 32 = 9, and on skewed (in-process gate) routing the busiest
 * GPU's load falls against the same run with experts in place. */
static void
test_eplb_run (void)
{
  const char *base[] = { "parallel.ep=32", "model.moe_layers=2", "routing.gate.preset=deepseek-v3",
                         "routing.gate.tokens=2048", "routing.gate.strength=2", "routing.gate.zipf=1.5",
                         "model.hidden=256", "sim.counterfactual=false", NULL, NULL, NULL };
  double gpu_mom[2];
  for (guint k = 0; k < 2; k++)
    {
      base[8] = k ? "placement=eplb" : "placement=contiguous";
      base[9] = k ? "eplb.redundant=32" : NULL;
      g_autoptr (Scenario) sc = test_load_sim ("deepseek-v3-ep64-forward.yaml", base);
      CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
      g_autoptr (RunResult) r = moe_run (sc, NULL);
      CU_ASSERT_PTR_NOT_NULL_FATAL (r);
      CU_ASSERT_EQUAL (r->experts, k ? 288u : 256u);
      gpu_mom[k] = 0;
      for (guint i = 0; i < r->n_layers; i++)
        {
          guint64 rows = 0;
          for (guint e = 0; e < r->experts; e++)
            rows += r->expert_rows[(gsize) i * r->experts + e];
          CU_ASSERT_EQUAL (rows, 32u * 4096u * 8u); /* every selection, once */
          /* per-GPU rows max / mean */
          double mx = 0, sum = 0;
          for (guint g = 0; g < 32; g++)
            {
              double v = 0;
              for (guint e = g * (r->experts / 32); e < (g + 1) * (r->experts / 32); e++)
                v += r->expert_rows[(gsize) i * r->experts + e];
              mx = MAX (mx, v);
              sum += v;
            }
          gpu_mom[k] += mx / (sum / 32) / r->n_layers;
        }
    }
  g_printerr ("\n  busiest GPU's rows / mean: contiguous %.3f, eplb (+32) %.3f\n", gpu_mom[0], gpu_mom[1]);
  CU_ASSERT (gpu_mom[1] < gpu_mom[0]);
  /* errors: replicas without eplb, slots not divisible */
  g_autofree char *p = g_build_filename (MOESIM_SOURCE_ROOT, "sim", "tiny.yaml", NULL);
  const char *bad1[] = { "eplb.redundant=8", NULL };
  const char *bad2[] = { "placement=eplb", "eplb.redundant=3", NULL };
  g_autoptr (GError) e1 = NULL, e2 = NULL;
  g_autoptr (Scenario) s1 = scenario_load (p, bad1, &e1);
  g_autoptr (Scenario) s2 = scenario_load (p, bad2, &e2);
  CU_ASSERT (s1 == NULL && e1 && strstr (e1->message, "needs placement: eplb"));
  CU_ASSERT (s2 == NULL && e2 && strstr (e2->message, "eplb.redundant = 3 is not divisible by parallel.ep = 8"));
}

int
main (void)
{
  char *d = g_build_filename (MOESIM_SOURCE_ROOT, "..", "shared", "data", "routing", NULL);
  if (g_file_test (d, G_FILE_TEST_IS_DIR))
    data_dir = d;
  else
    {
      g_printerr ("test_placement: %s not found: real-load checks skipped\n", d);
      g_free (d);
    }
  static const TestCase tests[] = {
    TEST (test_simple_placements),
    TEST (test_eplb_on_real_loads),
    TEST (test_eplb_on_skewed_loads),
    TEST (test_eplb_run),
  };
  int rc = test_main ("placement", tests, G_N_ELEMENTS (tests));
  g_free (data_dir);
  return rc;
}
