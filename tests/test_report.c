/* report.html escapes user text; the imbalance cost's caveat follows the
 * solver tolerance; trace.json: well-formed JSON in Chrome trace event format, every process
 * and thread that carries events named, every event with a non-negative
 * duration, the events of each thread in time order without overlap, link
 * counters in range and in time order; the counters integrate to the bytes. */
#include "fmt.h"
#include "moe.h"
#include "report.h"
#include "test_sim.h"

#include <json-glib/json-glib.h>

/* want_spans: 0 = every GPU, step and phase; only_pid >= 0: the one node
 * whose counters are kept (besides the fabric's) */
static void
check_trace (const char *scenario, const char *const *sets, guint want_spans, gint only_pid)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = test_load_sim (scenario, sets);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  g_autoptr (RunResult) r = moe_run (sc, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  g_autofree char *text = report_trace_json (sc, r);
  g_autoptr (JsonParser) parser = json_parser_new ();
  CU_ASSERT_FATAL (json_parser_load_from_data (parser, text, -1, &err));
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));
  JsonArray *ev = json_object_get_array_member (root, "traceEvents");
  CU_ASSERT_PTR_NOT_NULL_FATAL (ev);
  g_autoptr (GHashTable) procs = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GHashTable) threads = g_hash_table_new (g_direct_hash, g_direct_equal);
  g_autoptr (GHashTable) last_end = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  g_autoptr (GHashTable) counter_last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GHashTable) flow_start = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  guint spans = 0, counters = 0, flow_ends = 0;
  gboolean flows_ok = TRUE;
  gboolean counters_ok = TRUE;
  gboolean ordered = TRUE, named = TRUE, nonneg = TRUE;
  for (guint i = 0; i < json_array_get_length (ev); i++)
    {
      JsonObject *e = json_array_get_object_element (ev, i);
      const char *ph = json_object_get_string_member (e, "ph");
      gint64 pid = json_object_get_int_member (e, "pid");
      if (strcmp (ph, "M") == 0)
        {
          const char *name = json_object_get_string_member (e, "name");
          if (strcmp (name, "process_name") == 0)
            g_hash_table_add (procs, GINT_TO_POINTER (pid + 1));
          else if (strcmp (name, "thread_name") == 0)
            g_hash_table_add (threads, GINT_TO_POINTER ((pid << 16) + json_object_get_int_member (e, "tid") + 1));
          continue;
        }
      if (strcmp (ph, "C") == 0)
        {
          /* a counter: its process named, time order per counter, 0..100 % */
          named &= g_hash_table_contains (procs, GINT_TO_POINTER (pid + 1));
          g_autofree char *ckey = g_strdup_printf ("%" G_GINT64_FORMAT "/%s", pid,
                                                   json_object_get_string_member (e, "name"));
          double ts = json_object_get_double_member (e, "ts");
          double v = json_object_get_double_member (json_object_get_object_member (e, "args"), "%");
          counters_ok &= v >= 0 && v <= 100.05;
          counters_ok &= only_pid < 0 || pid == only_pid || pid == (gint64) r->nodes;
          double *prev = g_hash_table_lookup (counter_last, ckey);
          if (prev)
            ordered &= ts > *prev;
          else
            g_hash_table_insert (counter_last, g_steal_pointer (&ckey), prev = g_new (double, 1));
          *prev = ts;
          counters++;
          continue;
        }
      if (strcmp (ph, "s") == 0 || strcmp (ph, "f") == 0)
        {
          /* a flow arrow end: on a named track, one start and one finish
           * per id, the finish not before the start */
          gint64 tid = json_object_get_int_member (e, "tid");
          named &= g_hash_table_contains (threads, GINT_TO_POINTER ((pid << 16) + tid + 1));
          gint64 id = json_object_get_int_member (e, "id");
          double ts = json_object_get_double_member (e, "ts");
          double *seen = g_hash_table_lookup (flow_start, GINT_TO_POINTER (id + 1));
          if (ph[0] == 's')
            {
              flows_ok &= seen == NULL;
              g_hash_table_insert (flow_start, GINT_TO_POINTER (id + 1), g_memdup2 (&ts, sizeof ts));
            }
          else
            {
              flows_ok &= seen != NULL && ts >= *seen && strcmp (json_object_get_string_member (e, "bp"), "e") == 0;
              flow_ends++;
            }
          continue;
        }
      CU_ASSERT_STRING_EQUAL_FATAL (ph, "X");
      gint64 tid = json_object_get_int_member (e, "tid");
      gpointer key = GINT_TO_POINTER ((pid << 16) + tid + 1);
      named &= g_hash_table_contains (procs, GINT_TO_POINTER (pid + 1)) && g_hash_table_contains (threads, key);
      double ts = json_object_get_double_member (e, "ts"), dur = json_object_get_double_member (e, "dur");
      nonneg &= dur >= 0;
      double *prev = g_hash_table_lookup (last_end, key);
      if (prev)
        ordered &= ts >= *prev - 0.002; /* printed to the ns */
      else
        g_hash_table_insert (last_end, key, prev = g_new (double, 1));
      *prev = ts + dur;
      spans++;
    }
  CU_ASSERT (named);
  CU_ASSERT (nonneg);
  CU_ASSERT (ordered);
  /* per GPU and step: prep, dispatch, expert, combine */
  CU_ASSERT_EQUAL (spans, want_spans ? want_spans : r->n_gpus * r->n_layers * 4);
  CU_ASSERT (counters_ok);
  /* bounded: at most one value per time bucket (<= 4096) per track, plus the closing zero */
  CU_ASSERT (counters <= 4097 * g_hash_table_size (counter_last));
  CU_ASSERT (flows_ok);
  CU_ASSERT_EQUAL (flow_ends, g_hash_table_size (flow_start));
  /* with every GPU kept, one arrow per GPU and step that received from
   * another GPU (all of them in these scenarios) */
  if (only_pid < 0)
    CU_ASSERT_EQUAL (flow_ends, r->n_gpus * r->n_layers);
  /* every node kept has an NVLink track at least (all scenarios send within nodes) */
  guint nodes = only_pid >= 0 ? 1 : r->nodes;
  CU_ASSERT (counters >= 2 * nodes && g_hash_table_size (counter_last) >= nodes);
}

static void
test_trace_json_is_valid (void)
{
  check_trace ("tiny.yaml", NULL, 0, -1);
  const char *sets[] = { "model.moe_layers=3", "parallel.microbatches=2", "dispatch=hierarchical", NULL };
  check_trace ("deepseek-v3-ep64-forward.yaml", sets, 0, -1);
  /* only layer 1 (two micro-batches) of the 8 GPUs of node 1 */
  const char *some[] = { "model.moe_layers=3", "parallel.microbatches=2", "output.trace_layers=1",
                         "output.trace_gpus=8-15", NULL };
  check_trace ("deepseek-v3-ep64-forward.yaml", some, 8 * 2 * 4, 1);
  /* the training step, two micro-batches in flight: their phase spans
   * overlap in time, so each micro-batch has tracks of its own */
  const char *two[] = { "model.moe_layers=3", NULL };
  check_trace ("deepseek-v3-ep64.yaml", two, 0, -1);
}

/* report.html: text from the user's files reaches the page escaped. */
static void
test_html_escapes_names (void)
{
  const char *sets[] = { "name=a<b>&\"c'd", NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = test_load_sim ("tiny.yaml", sets);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  g_autoptr (RunResult) r = moe_run (sc, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  g_autofree char *html = report_html (sc, r);
  CU_ASSERT (strstr (html, "a<b>") == NULL);
  CU_ASSERT (strstr (html, "<title>moesim: a&lt;b&gt;&amp;&quot;c&apos;d</title>") != NULL);
}

/* The sampled link loads, integrated over time, give back the bytes the
 * flows put on the links when they started: exactly (float samples aside)
 * with the exact solver. With tolerance eps a batch's flows leave the
 * counters at the batch time, up to eps x their age before their own end,
 * so the integral falls short by about eps (2.1 % measured at 0.02). */
static void
check_util_integral (const char *scenario, const char *tolerance, double rel)
{
  g_autofree char *tol = g_strdup_printf ("sim.tolerance=%s", tolerance);
  const char *sets[] = { "model.moe_layers=3", tol, NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = test_load_sim (scenario, sets);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  g_autoptr (RunResult) r = moe_run (sc, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  guint ng = r->n_util_groups, n = r->n_util_samples;
  CU_ASSERT_FATAL (n >= 2);
  double integral[LCLASS_N] = { 0 };
  for (guint i = 0; i + 1 < n; i++)
    {
      CU_ASSERT (r->util_time_us[i + 1] > r->util_time_us[i]);
      double dt = (r->util_time_us[i + 1] - r->util_time_us[i]) * 1e-6;
      for (guint g = 0; g < ng; g++)
        {
          float u = r->util[(gsize) i * ng + g];
          CU_ASSERT (u >= 0.0f && u <= 1.0f + 1e-5f);
          integral[r->util_group_class[g]] += u * r->util_group_capacity[g] * dt;
        }
    }
  for (guint g = 0; g < ng; g++)
    CU_ASSERT_EQUAL (r->util[(gsize) (n - 1) * ng + g], 0.0f);
  CU_ASSERT (r->util_time_us[n - 1] <= r->total_us);
  for (guint c = 0; c < LCLASS_N; c++)
    {
      double want = r->class_link_bytes[c];
      if (want == 0)
        {
          CU_ASSERT_EQUAL (integral[c], 0.0);
        }
      else if (fabs (integral[c] / want - 1) > rel)
        {
          g_printerr ("\n  %s eps %s class %u: integral %.6e B, link bytes %.6e B\n", scenario, tolerance, c,
                      integral[c], want);
          CU_FAIL ("utilisation integral != link bytes");
        }
    }
}

static void
test_link_utilisation_conserves_bytes (void)
{
  check_util_integral ("tiny.yaml", "0", 1e-4);
  check_util_integral ("deepseek-v3-ep64-forward.yaml", "0", 1e-4);
  check_util_integral ("deepseek-v3-ep64-forward.yaml", "0.02", 0.03);
}

/* fmt_fixed writes what printf's "%.<d>f" writes: random magnitudes and
 * signs, values on and next to half-way points, integers, zeros of both
 * signs, huge, tiny and non-finite values. */
static void
test_fixed_matches_printf (void)
{
  GRand *r = g_rand_new_with_seed (3);
  char want[FMT_FIXED_BUF], got[FMT_FIXED_BUF];
  guint bad = 0;
  for (guint i = 0; i < 400000; i++)
    {
      guint d = i % 7;
      double v;
      switch (i % 5)
        {
        case 0: /* any magnitude */
          v = g_rand_double_range (r, -1.0, 1.0) * pow (10.0, g_rand_int_range (r, -8, 13));
          break;
        case 1: /* half-way in decimal, and its neighbours */
          v = (g_rand_int_range (r, -2000000, 2000000) + 0.5) / pow (10.0, d);
          v = i % 3 == 0 ? v : nextafter (v, i % 3 == 1 ? INFINITY : -INFINITY);
          break;
        case 2: /* microseconds of a run, as trace.json has them */
          v = g_rand_double_range (r, 0.0, 5e6);
          break;
        case 3: /* whole numbers, bytes */
          v = floor (g_rand_double_range (r, 0.0, 1e12));
          break;
        default: /* a few decimals exactly */
          v = g_rand_int_range (r, -100000, 100000) / 1000.0;
          break;
        }
      snprintf (want, sizeof want, "%.*f", (int) d, v);
      fmt_fixed (got, v, d);
      if (strcmp (want, got) != 0 && bad++ < 5)
        g_printerr ("%.17g %%.%uf: printf %s, fmt_fixed %s\n", v, d, want, got);
    }
  g_rand_free (r);
  CU_ASSERT_EQUAL (bad, 0);
  const double edge[] = { 0.0, -0.0, -0.0004, 0.0005, 0.0015, 2.5, -2.5, 1e300, -1e-300, 4e9, 9.5e15, INFINITY, -INFINITY, NAN };
  for (guint i = 0; i < G_N_ELEMENTS (edge); i++)
    for (guint d = 0; d <= 6; d++)
      {
        snprintf (want, sizeof want, "%.*f", (int) d, edge[i]);
        CU_ASSERT_STRING_EQUAL (fmt_fixed (got, edge[i], d), want);
      }
}

/* The imbalance cost comes with a caveat in the text summary (and, from
 * the same helper, report.html) while the solver tolerance makes it rough,
 * and without one at 0.001 and below. */
static void
test_cost_caveat_follows_tolerance (void)
{
  static const struct {
    const char *tolerance;
    gboolean caveat;
  } cases[] = { { "sim.tolerance=0.02", TRUE }, { "sim.tolerance=0.001", FALSE }, { "sim.tolerance=0", FALSE } };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *sets[] = { "model.moe_layers=2", cases[i].tolerance, NULL };
      g_autoptr (GError) err = NULL;
      g_autoptr (Scenario) sc = test_load_sim ("tiny.yaml", sets);
      CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
      g_autoptr (RunResult) r = moe_run (sc, &err);
      CU_ASSERT_PTR_NOT_NULL_FATAL (r);
      g_autoptr (GString) text = g_string_new (NULL);
      report_summary_text (sc, r, text);
      CU_ASSERT_PTR_NOT_NULL (strstr (text->str, "what imbalance costs"));
      CU_ASSERT_EQUAL (strstr (text->str, "a difference of two simulated passes") != NULL, cases[i].caveat);
      g_autofree char *caveat = report_cost_caveat (scenario_spec (sc)->sim.tolerance);
      CU_ASSERT_EQUAL (caveat != NULL, cases[i].caveat);
    }
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_fixed_matches_printf),
    TEST (test_trace_json_is_valid),
    TEST (test_html_escapes_names),
    TEST (test_link_utilisation_conserves_bytes),
    TEST (test_cost_caveat_follows_tolerance),
  };
  return test_main ("report", tests, G_N_ELEMENTS (tests));
}
