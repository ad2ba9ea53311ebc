/* The moesim command as a user meets it: exit status, messages, outputs
 * written whole or not at all, byte-identical reruns. */
#include "test_common.h"

#include <glib/gstdio.h>

static char *tmpdir;

static int
run (const char *args, char **out, char **err)
{
  g_autofree char *cmd = g_strdup_printf ("%s %s", MOESIM_EXE, args);
  int status = 0;
  g_autoptr (GError) e = NULL;
  char *o = NULL, *r = NULL;
  if (!g_spawn_command_line_sync (cmd, &o, &r, &status, &e))
    {
      g_printerr ("spawn failed: %s\n", e->message);
      return -1;
    }
  if (out)
    *out = o;
  else
    g_free (o);
  if (err)
    *err = r;
  else
    g_free (r);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
test_run_writes_summary (void)
{
  g_autofree char *dir = g_build_filename (tmpdir, "ok", NULL);
  g_autofree char *args = g_strdup_printf ("run %s/sim/tiny.yaml -o %s", MOESIM_SOURCE_ROOT, dir);
  g_autofree char *out = NULL;
  CU_ASSERT_EQUAL (run (args, &out, NULL), 0);
  CU_ASSERT (out && strstr (out, "bottleneck:") && strstr (out, "summary.json"));
  g_autofree char *json_path = g_build_filename (dir, "summary.json", NULL);
  g_autofree char *json = NULL;
  CU_ASSERT (g_file_get_contents (json_path, &json, NULL, NULL));
  CU_ASSERT (json && strstr (json, "\"total_time_us\"") && strstr (json, "\"layers\"")
             && strstr (json, "\"gpus\"") && g_str_has_suffix (json, "}\n"));
  /* rerun: byte-identical */
  g_autofree char *dir2 = g_build_filename (tmpdir, "ok2", NULL);
  g_autofree char *args2 = g_strdup_printf ("run %s/sim/tiny.yaml -q -o %s", MOESIM_SOURCE_ROOT, dir2);
  CU_ASSERT_EQUAL (run (args2, NULL, NULL), 0);
  g_autofree char *json2_path = g_build_filename (dir2, "summary.json", NULL);
  g_autofree char *json2 = NULL;
  CU_ASSERT (g_file_get_contents (json2_path, &json2, NULL, NULL));
  CU_ASSERT (json && json2 && strcmp (json, json2) == 0);
}

static void
test_bad_input_exits_2_without_outputs (void)
{
  g_autofree char *dir = g_build_filename (tmpdir, "never", NULL);
  const char *cases[][2] = {
    { "--set parallel.ep=7", "parallel.ep" },
    { "--set nic.gbps=-1", "nic.gbps" },
    { "--set no.such.key=1", "unknown key" },
    { "--set model.experts=abc", "expected an integer" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *args = g_strdup_printf ("run %s/sim/tiny.yaml %s -o %s", MOESIM_SOURCE_ROOT,
                                               cases[i][0], dir);
      g_autofree char *err = NULL;
      CU_ASSERT_EQUAL (run (args, NULL, &err), 2);
      CU_ASSERT (err && strstr (err, "moesim: error:") && strstr (err, cases[i][1]));
      CU_ASSERT (!g_file_test (dir, G_FILE_TEST_EXISTS));
    }
  g_autofree char *missing = g_strdup_printf ("run %s/nope.yaml", tmpdir);
  g_autofree char *err = NULL;
  CU_ASSERT_EQUAL (run (missing, NULL, &err), 2);
  CU_ASSERT (err && strstr (err, "nope.yaml") && strstr (err, "cannot read"));
  CU_ASSERT_EQUAL (run ("frobnicate", NULL, NULL), 2);
  CU_ASSERT_EQUAL (run ("run", NULL, NULL), 2);
}

static void
test_estimate_and_topo_show (void)
{
  g_autofree char *args = g_strdup_printf (
      "estimate %s/sim/deepseek-v3-ep256.yaml --set model.dispatch_dtype=bf16", MOESIM_SOURCE_ROOT);
  g_autofree char *out = NULL;
  CU_ASSERT_EQUAL (run (args, &out, NULL), 0);
  CU_ASSERT (out && strstr (out, "32640") && strstr (out, "467.9 MB") && strstr (out, "54.28 GB"));
  g_autofree char *targs = g_strdup_printf ("topo show %s/topologies/h800-deepseek.yaml", MOESIM_SOURCE_ROOT);
  g_autofree char *tout = NULL;
  CU_ASSERT_EQUAL (run (targs, &tout, NULL), 0);
  CU_ASSERT (tout && strstr (tout, "intra-node") && strstr (tout, "inter-node")
             && strstr (tout, "node1.nic0.in") && strstr (tout, "other rail"));
  g_autofree char *kout = NULL;
  CU_ASSERT_EQUAL (run ("keys", &kout, NULL), 0);
  CU_ASSERT (kout && strstr (kout, "parallel.ep") && strstr (kout, "fabric.kind"));
}

int
main (void)
{
  tmpdir = g_dir_make_tmp ("moesim-cli-XXXXXX", NULL);
  static const TestCase tests[] = {
    TEST (test_run_writes_summary),
    TEST (test_bad_input_exits_2_without_outputs),
    TEST (test_estimate_and_topo_show),
  };
  int rc = test_main ("cli", tests, G_N_ELEMENTS (tests));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    rc = 1;
  g_free (tmpdir);
  return rc;
}
