/* report.html escapes user text; trace.json: well-formed JSON in Chrome trace event format, every process
 * and thread that carries events named, every event with a non-negative
 * duration, and the events of each thread in time order without overlap. */
#include "moe.h"
#include "report.h"
#include "test_common.h"

#include <json-glib/json-glib.h>

static void
check_trace (const char *scenario, const char *const *sets)
{
  g_autofree char *p = g_build_filename (MOESIM_SOURCE_ROOT, "sim", scenario, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = scenario_load (p, sets, &err);
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
  guint spans = 0;
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
      CU_ASSERT_STRING_EQUAL (ph, "X");
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
  CU_ASSERT_EQUAL (spans, r->n_gpus * r->n_layers * 3);
}

static void
test_trace_json_is_valid (void)
{
  check_trace ("tiny.yaml", NULL);
  const char *sets[] = { "model.moe_layers=3", "parallel.microbatches=2", "dispatch=hierarchical", NULL };
  check_trace ("deepseek-v3-ep64.yaml", sets);
}

/* report.html: text from the user's files reaches the page escaped. */
static void
test_html_escapes_names (void)
{
  g_autofree char *p = g_build_filename (MOESIM_SOURCE_ROOT, "sim", "tiny.yaml", NULL);
  const char *sets[] = { "name=a<b>&\"c'd", NULL };
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = scenario_load (p, sets, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  g_autoptr (RunResult) r = moe_run (sc, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  g_autofree char *html = report_html (sc, r);
  CU_ASSERT (strstr (html, "a<b>") == NULL);
  CU_ASSERT (strstr (html, "<title>moesim: a&lt;b&gt;&amp;&quot;c&apos;d</title>") != NULL);
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_trace_json_is_valid),
    TEST (test_html_escapes_names),
  };
  return test_main ("report", tests, G_N_ELEMENTS (tests));
}
