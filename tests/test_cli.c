/* The moesim command as a user meets it: exit status, messages, outputs
 * written whole or not at all, byte-identical reruns; trace.json written
 * while the pass runs is the one made whole afterwards. */
#include "moe.h"
#include "report.h"
#include "test_sim.h"

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
  /* the tables: tiny.yaml has 4 layers x 4 phases (prep, dispatch, expert,
   * combine) and 8 GPUs x 4 layers */
  g_autofree char *lcsv_path = g_build_filename (dir, "layers.csv", NULL);
  g_autofree char *gcsv_path = g_build_filename (dir, "gpus.csv", NULL);
  g_autofree char *lcsv = NULL, *gcsv = NULL;
  CU_ASSERT (g_file_get_contents (lcsv_path, &lcsv, NULL, NULL));
  CU_ASSERT (g_file_get_contents (gcsv_path, &gcsv, NULL, NULL));
  g_auto (GStrv) lrows = g_strsplit (lcsv ? lcsv : "", "\n", -1);
  g_auto (GStrv) grows = g_strsplit (gcsv ? gcsv : "", "\n", -1);
  CU_ASSERT_EQUAL (g_strv_length (lrows), 1 + 16 + 1); /* header, rows, trailing empty */
  CU_ASSERT_EQUAL (g_strv_length (grows), 1 + 32 + 1);
  CU_ASSERT (lcsv && g_str_has_prefix (lcsv, "layer,microbatch,pass,phase,time_us"));
  CU_ASSERT (gcsv && g_str_has_prefix (gcsv, "gpu,node,layer,microbatch,tokens_in"));
  /* compare with itself: every ratio is 1 */
  g_autofree char *cmp = g_strdup_printf ("compare %s %s", dir, json_path);
  g_autofree char *cout = NULL;
  CU_ASSERT_EQUAL (run (cmp, &cout, NULL), 0);
  const char *fp = cout ? strstr (cout, "pass time (us)") : NULL;
  const char *eol = fp ? strchr (fp, '\n') : NULL;
  CU_ASSERT (fp && eol && eol - fp > 6 && strncmp (eol - 6, "1.0000", 6) == 0);
  g_autofree char *bad = g_strdup_printf ("compare %s %s/layers.csv", dir, dir);
  CU_ASSERT_EQUAL (run (bad, NULL, NULL), 2);
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
    { "--set output.trace_gpus=0-8", "output.trace_gpus names index 8, but there are only 8" },
    { "--set output.trace_layers=1-x", "bad part \"1-x\"" },
    { "--set output.trace_layers=", "output.trace_layers is empty: expected \"all\"" },
    { "--set parallel.ep=", "parallel.ep: expected an integer, got the string ''" },
    { "--set output.report_layer=4", "output.report_layer = 4, but there are only 4 MoE layers" },
    { "--set sim.counterfactual=maybe", "sim.counterfactual: expected true or false, got 'maybe'" },
    { "--set placement=eplb --set eplb.load=nope.mrt", "eplb.load: " },
    { "--set eplb.load=x.mrt", "eplb.load needs placement: eplb (it is contiguous)" },
    { "--set overlap=two_microbatch", "overlap: two_microbatch needs parallel.microbatches >= 2 (it is 1)" },
    { "--set model.dense_layers=2", "model.dense_layers = 2 needs model.dense_intermediate" },
    { "--set placement=eplb --set eplb.policy=hierarchical",
      "eplb.policy = hierarchical packs the expert groups onto nodes: model.n_group = 1 must be a multiple of the 2 nodes" },
    /* 2 experts x 4 layers x 3 x 1024 x 512 B of FP8 weights = 12.6 MB */
    { "--set gpu.hbm_gb=0.01", "of its 0.01 GB of HBM (gpu.hbm_gb), 0.0129 GB over: routed_experts 0.0126 GB" },
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
  /* the same with --allow-oversubscribe: a warning, and the outputs */
  g_autofree char *over = g_strdup_printf ("run %s/sim/tiny.yaml --set gpu.hbm_gb=0.01 --allow-oversubscribe -q -o %s",
                                           MOESIM_SOURCE_ROOT, dir);
  g_autofree char *werr = NULL;
  CU_ASSERT_EQUAL (run (over, NULL, &werr), 0);
  CU_ASSERT (werr && strstr (werr, "moesim: warning: GPU 5 needs") && strstr (werr, "sim.allow_oversubscribe"));
  g_autofree char *over_json = g_build_filename (dir, "summary.json", NULL);
  CU_ASSERT (g_file_test (over_json, G_FILE_TEST_EXISTS));
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
  /* the closed form runs no gate: a scenario with routing.gate estimates
   * without the gate's note (its 58 layers would take seconds) */
  g_autofree char *gargs = g_strdup_printf ("estimate %s/sim/deepseek-v3-prefill-ep32.yaml", MOESIM_SOURCE_ROOT);
  g_autofree char *gout = NULL, *gerr = NULL;
  CU_ASSERT_EQUAL (run (gargs, &gout, &gerr), 0);
  CU_ASSERT (gout && strstr (gout, "closed form") && gerr && !strstr (gerr, "gate"));
  g_autofree char *targs = g_strdup_printf ("topo show %s/topologies/h800-deepseek.yaml", MOESIM_SOURCE_ROOT);
  g_autofree char *tout = NULL;
  CU_ASSERT_EQUAL (run (targs, &tout, NULL), 0);
  CU_ASSERT (tout && strstr (tout, "intra-node") && strstr (tout, "inter-node")
             && strstr (tout, "node1.nic0.in") && strstr (tout, "other rail"));
  g_autofree char *kout = NULL;
  CU_ASSERT_EQUAL (run ("keys", &kout, NULL), 0);
  CU_ASSERT (kout && strstr (kout, "parallel.ep") && strstr (kout, "fabric.kind"));
}

static void
test_trace_commands (void)
{
  /* a bad .npy: exit 2, a message naming it, no trace written */
  g_autofree char *bad = g_build_filename (tmpdir, "bad.npy", NULL);
  static const char bad_npy[] = "\x93NUMPY\x01\x00\x10\x00{'descr': '<i2'}";
  g_file_set_contents (bad, bad_npy, sizeof bad_npy - 1, NULL);
  g_autofree char *out = g_build_filename (tmpdir, "t.mrt", NULL);
  g_autofree char *args = g_strdup_printf ("trace import --experts %s -o %s", bad, out);
  g_autofree char *err = NULL;
  CU_ASSERT_EQUAL (run (args, NULL, &err), 2);
  CU_ASSERT (err && strstr (err, "bad.npy") && strstr (err, "malformed .npy header"));
  CU_ASSERT_FALSE (g_file_test (out, G_FILE_TEST_EXISTS));
  /* a good one: import, check, stats --json, export */
  gint16 ids[8] = { 0, 1, 2, 3, 1, 2, -1, -1 };
  g_autofree char *good = g_build_filename (tmpdir, "good.npy", NULL);
  GString *npy = g_string_new_len ("\x93NUMPY\x01\x00", 8);
  const char *dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 2, 2), }";
  GString *h = g_string_new (dict);
  while ((10 + h->len + 1) % 64)
    g_string_append_c (h, ' ');
  g_string_append_c (h, '\n');
  guint16 hl = (guint16) h->len;
  g_string_append_len (npy, (char *) &hl, 2);
  g_string_append_len (npy, h->str, (gssize) h->len);
  g_string_append_len (npy, (char *) ids, sizeof ids);
  g_file_set_contents (good, npy->str, (gssize) npy->len, NULL);
  g_string_free (npy, TRUE);
  g_string_free (h, TRUE);
  g_autofree char *imp = g_strdup_printf ("trace import --experts %s -o %s", good, out);
  CU_ASSERT_EQUAL (run (imp, NULL, NULL), 0);
  g_autofree char *chk = g_strdup_printf ("trace check %s", out);
  CU_ASSERT_EQUAL (run (chk, NULL, NULL), 0);
  g_autofree char *sts = g_strdup_printf ("trace stats %s --json", out);
  g_autofree char *js = NULL;
  CU_ASSERT_EQUAL (run (sts, &js, NULL), 0);
  CU_ASSERT (js && strstr (js, "\"layers\": [") && strstr (js, "\"max_over_mean\""));
  g_autofree char *back = g_build_filename (tmpdir, "back.npy", NULL);
  g_autofree char *exp = g_strdup_printf ("trace export %s --experts %s", out, back);
  CU_ASSERT_EQUAL (run (exp, NULL, NULL), 0);
  g_autofree char *b1 = NULL, *b2 = NULL;
  gsize l1 = 0, l2 = 0;
  g_file_get_contents (good, &b1, &l1, NULL);
  g_file_get_contents (back, &b2, &l2, NULL);
  CU_ASSERT (l1 == l2 && b1 && b2 && memcmp (b1, b2, l1) == 0); /* byte for byte */
  g_autofree char *noweights = g_strdup_printf ("trace export %s --experts %s --weights %s/w.npy",
                                                out, back, tmpdir);
  g_autofree char *err2 = NULL;
  CU_ASSERT_EQUAL (run (noweights, NULL, &err2), 2);
  CU_ASSERT (err2 && strstr (err2, "no gate weights"));
}

static char *
write_sweep (const char *name, const char *body)
{
  g_autofree char *file = g_strdup_printf ("%s.yaml", name);
  char *path = g_build_filename (tmpdir, file, NULL);
  g_autofree char *text = g_strdup_printf ("name: %s\nscenario: %s/sim/tiny.yaml\n%s", name, MOESIM_SOURCE_ROOT, body);
  g_file_set_contents (path, text, -1, NULL);
  return path;
}

static char *
read_file (const char *dir, const char *name)
{
  g_autofree char *p = g_build_filename (dir, name, NULL);
  char *text = NULL;
  g_file_get_contents (p, &text, NULL, NULL);
  return text;
}

/* Same sweep.csv whatever -j is; a rerun reuses every point; a point whose
 * folder is removed is run again; shards merged give the same file; a
 * failing point is reported in its row and the others finish. */
static void
test_sweep_threads_resume_shards (void)
{
  g_autofree char *sw = write_sweep ("sw", "axes:\n  nic.gbps: [12.5, 25]\n  parallel.ep: [8, 7, 4]\n");
  g_autofree char *d1 = g_build_filename (tmpdir, "sw1", NULL);
  g_autofree char *d2 = g_build_filename (tmpdir, "sw2", NULL);
  g_autofree char *d3 = g_build_filename (tmpdir, "sw3", NULL);
  g_autofree char *a1 = g_strdup_printf ("sweep %s -o %s -j 1", sw, d1);
  g_autofree char *a2 = g_strdup_printf ("sweep %s -o %s -j 4", sw, d2);
  g_autofree char *err = NULL, *out = NULL;
  /* ep 7 does not divide 16 experts: those two points fail, exit 2 */
  CU_ASSERT_EQUAL (run (a1, NULL, &err), 2);
  CU_ASSERT (err && strstr (err, "2 of 6 points failed") && strstr (err, "not divisible"));
  CU_ASSERT_EQUAL (run (a2, NULL, NULL), 2);
  g_autofree char *c1 = read_file (d1, "sweep.csv"), *c2 = read_file (d2, "sweep.csv");
  CU_ASSERT_FATAL (c1 != NULL && c2 != NULL);
  CU_ASSERT_STRING_EQUAL (c1, c2);
  g_auto (GStrv) lines = g_strsplit (c1, "\n", -1);
  CU_ASSERT_EQUAL_FATAL (g_strv_length (lines), 8); /* header, 6 points, "" */
  CU_ASSERT (g_str_has_prefix (lines[0], "point,nic.gbps,parallel.ep,status,total_us,"));
  CU_ASSERT (g_str_has_prefix (lines[1], "0,12.5,8,ok,"));
  CU_ASSERT (g_str_has_prefix (lines[2], "1,12.5,7,failed,") && strstr (lines[2], "not divisible"));
  CU_ASSERT (g_str_has_prefix (lines[6], "5,25,4,ok,"));
  /* each point is an ordinary run */
  g_autofree char *p0 = g_build_filename (d1, "points", "0000", "summary.json", NULL);
  CU_ASSERT (g_file_test (p0, G_FILE_TEST_EXISTS));
  /* twice the NIC bandwidth: the two-node EP8 point gets faster */
  CU_ASSERT (g_ascii_strtod (lines[4] + strlen ("3,25,8,ok,"), NULL)
             < g_ascii_strtod (lines[1] + strlen ("0,12.5,8,ok,"), NULL));
  /* resume: the 4 good points are reused, the failed ones tried again */
  g_free (err);
  err = NULL;
  CU_ASSERT_EQUAL (run (a1, &out, &err), 2);
  CU_ASSERT (out && strstr (out, "(2 run, 4 reused, 2 failed"));
  g_autofree char *p5 = g_build_filename (d1, "points", "0005", NULL);
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", p5);
  CU_ASSERT_EQUAL (system (rm), 0);
  g_free (out);
  out = NULL;
  CU_ASSERT_EQUAL (run (a1, &out, NULL), 2);
  CU_ASSERT (out && strstr (out, "(3 run, 3 reused, 2 failed"));
  g_autofree char *c1b = read_file (d1, "sweep.csv");
  CU_ASSERT_STRING_EQUAL (c1b, c1);
  /* another definition (a fixed override added) reuses nothing */
  g_autofree char *sw2 = write_sweep ("sw", "set: [\"parallel.tokens_per_gpu=256\"]\n"
                                            "axes:\n  nic.gbps: [12.5, 25]\n  parallel.ep: [8, 7, 4]\n");
  g_free (out);
  out = NULL;
  CU_ASSERT_EQUAL (run (a1, &out, NULL), 2);
  CU_ASSERT (out && strstr (out, "(6 run, 0 reused, 2 failed"));
  /* shards with failing points still merge, the failures in sweep.csv */
  g_autofree char *d4 = g_build_filename (tmpdir, "sw4", NULL);
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *sa = g_strdup_printf ("sweep %s -o %s --shard %u/2 -q", sw2, d4, i);
      CU_ASSERT_EQUAL (run (sa, NULL, NULL), 2);
    }
  g_autofree char *ma = g_strdup_printf ("sweep %s -o %s --merge -q", sw2, d4);
  g_free (err);
  err = NULL;
  CU_ASSERT_EQUAL (run (ma, NULL, &err), 2);
  CU_ASSERT (err && strstr (err, "2 of 6 points failed"));
  g_autofree char *c4 = read_file (d4, "sweep.csv"), *c1c = read_file (d1, "sweep.csv");
  CU_ASSERT (c4 && c1c && strcmp (c4, c1c) == 0);
  /* shards, then merge: merging before every shard ran is an error */
  g_autofree char *good = write_sweep ("good", "combine: zip\naxes:\n  nic.gbps: [12.5, 25, 50]\n"
                                               "  parallel.tokens_per_gpu: [256, 512, 1024]\n");
  g_autofree char *s0 = g_strdup_printf ("sweep %s -o %s --shard 0/2 -q", good, d3);
  g_autofree char *s1 = g_strdup_printf ("sweep %s -o %s --shard 1/2 -q", good, d3);
  g_autofree char *mg = g_strdup_printf ("sweep %s -o %s --merge -q", good, d3);
  g_autofree char *whole = g_strdup_printf ("sweep %s -o %s/whole -q", good, d3);
  CU_ASSERT_EQUAL (run (s0, NULL, NULL), 0);
  g_free (err);
  err = NULL;
  CU_ASSERT_EQUAL (run (mg, NULL, &err), 2);
  CU_ASSERT (err && strstr (err, "point 1 is not done"));
  CU_ASSERT_EQUAL (run (s1, NULL, NULL), 0);
  CU_ASSERT_EQUAL (run (mg, NULL, NULL), 0);
  CU_ASSERT_EQUAL (run (whole, NULL, NULL), 0);
  g_autofree char *wdir = g_build_filename (d3, "whole", NULL);
  g_autofree char *m1 = read_file (d3, "sweep.csv"), *m2 = read_file (wdir, "sweep.csv");
  CU_ASSERT (m1 && m2 && strcmp (m1, m2) == 0);
  g_autofree char *html = read_file (wdir, "sweep.html");
  CU_ASSERT (html && strstr (html, "id='axis-0'") && strstr (html, "id='axis-1'") && strstr (html, "id='points'"));
}

/* Errors in the sweep file stop everything before a point runs. */
static void
test_sweep_bad_input (void)
{
  const char *cases[][2] = {
    { "axes:\n  nic.gbpz: [1, 2]\n", "sw-bad0.yaml:4:3: axis 'nic.gbpz'" },
    { "axes:\n  nic.gbps: []\n", "sw-bad1.yaml:4:13: axis 'nic.gbps': expected a non-empty list" },
    { "axes:\n  nic.gbps: 5\n", "expected a non-empty list" },
    { "axes: {}\n", "at least one axis" },
    { "combine: zip\naxes:\n  nic.gbps: [1, 2]\n  parallel.ep: [8]\n", "zipped axes need equal lengths" },
    { "combine: sideways\naxes:\n  nic.gbps: [1]\n", "expected product or zip" },
    { "colour: red\naxes:\n  nic.gbps: [1]\n", "sw-bad6.yaml:3:1: unknown key 'colour'" },
    { "axes:\n  nic.gbps: [-1, 2]\n", "nic.gbps" },
    { "set: [\"a=b\"]\naxes:\n  nic.gbps: [1]\n", "sw-bad8.yaml:3:6: " },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("sw-bad%u", i);
      g_autofree char *sw = write_sweep (name, cases[i][0]);
      g_autofree char *dir = g_build_filename (tmpdir, "never-sweep", NULL);
      g_autofree char *args = g_strdup_printf ("sweep %s -o %s", sw, dir);
      g_autofree char *err = NULL;
      CU_ASSERT_EQUAL (run (args, NULL, &err), 2);
      if (!err || !strstr (err, cases[i][1]))
        g_printerr ("\n  case %u: expected '%s' in: %s", i, cases[i][1], err ? err : "(nothing)");
      CU_ASSERT (err && strstr (err, cases[i][1]));
      CU_ASSERT (!g_file_test (dir, G_FILE_TEST_EXISTS));
    }
  CU_ASSERT_EQUAL (run ("sweep", NULL, NULL), 2);
  g_autofree char *sw = write_sweep ("sw-shard", "axes:\n  nic.gbps: [1]\n");
  const char *shards[] = { "2/2", "1/-1", "0/0", "1", "a/2" };
  for (guint i = 0; i < G_N_ELEMENTS (shards); i++)
    {
      g_autofree char *args = g_strdup_printf ("sweep %s --shard %s", sw, shards[i]);
      CU_ASSERT_EQUAL (run (args, NULL, NULL), 2);
    }
}

/* The shipped IB sweep: more IB bandwidth never makes a pass slower, and
 * with IB scarce the hierarchical dispatch (fewer IB bytes) wins. */
static void
test_shipped_ib_sweep_is_monotone (void)
{
  g_autofree char *dir = g_build_filename (tmpdir, "ib-sweep", NULL);
  g_autofree char *args = g_strdup_printf ("sweep %s/sim/sweep-ib-bandwidth.yaml -o %s -q", MOESIM_SOURCE_ROOT, dir);
  CU_ASSERT_EQUAL_FATAL (run (args, NULL, NULL), 0);
  g_autofree char *csv = read_file (dir, "sweep.csv");
  CU_ASSERT_FATAL (csv != NULL);
  g_auto (GStrv) lines = g_strsplit (csv, "\n", -1);
  CU_ASSERT_EQUAL_FATAL (g_strv_length (lines), 12);
  double t[10];
  for (guint i = 0; i < 10; i++)
    {
      g_auto (GStrv) f = g_strsplit (lines[i + 1], ",", -1);
      CU_ASSERT_STRING_EQUAL_FATAL (f[3], "ok");
      t[i] = g_ascii_strtod (f[4], NULL);
    }
  for (guint i = 2; i < 10; i++)
    CU_ASSERT (t[i] <= t[i - 2] * (1 + 1e-9)); /* same dispatch, next bandwidth */
  CU_ASSERT (t[1] < t[0]);                      /* 25 GB/s: hierarchical faster */
}

/* Column `col` of every row of a shipped sweep's sweep.csv, all ok. */
static double *
sweep_column (const char *name, guint col, guint n)
{
  g_autofree char *dir = g_build_filename (tmpdir, name, NULL);
  g_autofree char *args = g_strdup_printf ("sweep %s/sim/%s.yaml -o %s -q", MOESIM_SOURCE_ROOT, name, dir);
  CU_ASSERT_EQUAL (run (args, NULL, NULL), 0);
  g_autofree char *csv = read_file (dir, "sweep.csv");
  g_auto (GStrv) lines = g_strsplit (csv ? csv : "", "\n", -1);
  double *v = g_new0 (double, n);
  CU_ASSERT_EQUAL (g_strv_length (lines), n + 2);
  for (guint i = 0; i < n && i + 1 < g_strv_length (lines); i++)
    {
      g_auto (GStrv) f = g_strsplit (lines[i + 1], ",", -1);
      CU_ASSERT (g_strv_length (f) > col && strstr (lines[i + 1], ",ok,") != NULL);
      if (g_strv_length (f) > col)
        v[i] = g_ascii_strtod (f[col], NULL);
    }
  return v;
}

/* Larger NVLink domains never slow the direct dispatch down and leave less
 * for IB (none at 64 GPUs per node); more EP puts more bytes on IB. */
static void
test_shipped_domain_and_ep_sweeps (void)
{
  /* nvlink-domain: point, node.gpus, nic.per_node, dispatch, status, total_us, ... ib_bytes (10) */
  g_autofree double *t = sweep_column ("sweep-nvlink-domain", 5, 8);
  g_autofree double *ib = sweep_column ("sweep-nvlink-domain", 10, 8);
  for (guint i = 2; i < 8; i++)
    {
      CU_ASSERT (t[i] <= t[i - 2] * (1 + 1e-9));
      CU_ASSERT (ib[i] < ib[i - 2]);
    }
  CU_ASSERT_EQUAL (ib[6], 0.0);
  CU_ASSERT_EQUAL (t[6], t[7]); /* one node: nothing to route hierarchically */
  /* ep-experts: point, ep, experts, status, total_us, ..., ib_bytes (9) */
  g_autofree double *eib = sweep_column ("sweep-ep-experts", 9, 18);
  for (guint e = 0; e < 3; e++)
    {
      CU_ASSERT_EQUAL (eib[e], 0.0); /* EP8: one node */
      for (guint k = 1; k < 6; k++)
        CU_ASSERT (eib[k * 3 + e] > eib[(k - 1) * 3 + e]);
    }
}

/* `moesim run` writes trace.json step by step while the pass runs: byte
 * for byte what report_trace_json makes from the finished run, with steps
 * that end out of order (two micro-batches in flight, forward and
 * backward), and with only some layers and GPUs kept. An output folder
 * that cannot be written to fails before the run, leaving nothing. */
static void
test_streamed_trace_is_whole_trace (void)
{
  const char *cases[][4] = {
    { "tiny.yaml", NULL },
    { "tiny.yaml", "pass=train_step", "parallel.microbatches=2", "overlap=two_microbatch" },
    { "deepseek-v3-ep64.yaml", "model.moe_layers=3", "output.trace_layers=1", "output.trace_gpus=8-15" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *dir = g_strdup_printf ("%s/stream%u", tmpdir, i);
      GString *args = g_string_new (NULL);
      g_string_printf (args, "run %s/sim/%s -q -o %s", MOESIM_SOURCE_ROOT, cases[i][0], dir);
      for (guint k = 1; k < 4 && cases[i][k]; k++)
        g_string_append_printf (args, " --set %s", cases[i][k]);
      CU_ASSERT_EQUAL (run (args->str, NULL, NULL), 0);
      g_string_free (args, TRUE);
      g_autofree char *path = g_build_filename (dir, "trace.json", NULL);
      g_autofree char *streamed = NULL;
      CU_ASSERT (g_file_get_contents (path, &streamed, NULL, NULL));
      const char *sets[4] = { NULL };
      for (guint k = 1; k < 4 && cases[i][k]; k++)
        sets[k - 1] = cases[i][k];
      g_autoptr (Scenario) sc = test_load_sim (cases[i][0], sets);
      CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
      g_autoptr (GError) err = NULL;
      g_autoptr (RunResult) r = moe_run (sc, &err);
      CU_ASSERT_PTR_NOT_NULL_FATAL (r);
      g_autofree char *whole = report_trace_json (sc, r);
      CU_ASSERT (streamed && strlen (streamed) > 1000 && strcmp (streamed, whole) == 0);
      /* no temporary file left beside it */
      g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
      guint files = 0;
      for (const char *n = d ? g_dir_read_name (d) : NULL; n; n = g_dir_read_name (d))
        files++;
      CU_ASSERT_EQUAL (files, 5);
    }
  /* a file where the output folder should be */
  g_autofree char *file = g_build_filename (tmpdir, "a-file", NULL);
  CU_ASSERT (g_file_set_contents (file, "x", 1, NULL));
  g_autofree char *args = g_strdup_printf ("run %s/sim/tiny.yaml -q -o %s/sub", MOESIM_SOURCE_ROOT, file);
  g_autofree char *err = NULL;
  CU_ASSERT_EQUAL (run (args, NULL, &err), 2);
  CU_ASSERT (err && strstr (err, "cannot create output folder") && strstr (err, "a-file/sub"));
}

/* A folder `name` in the tests' temporary folder with sim/ and
 * topologies/ side by side, as the tiny scenario's topology path expects:
 * where an edited scenario, topology and the runs' outputs go. */
static void
edit_folder (const char *name, char **scen, char **topo, char **out)
{
  g_autofree char *sim_dir = g_build_filename (tmpdir, name, "sim", NULL);
  g_autofree char *topo_dir = g_build_filename (tmpdir, name, "topologies", NULL);
  g_assert (g_mkdir_with_parents (sim_dir, 0755) == 0 && g_mkdir_with_parents (topo_dir, 0755) == 0);
  *scen = g_build_filename (sim_dir, "s.yaml", NULL);
  *topo = g_build_filename (topo_dir, "tiny-2node.yaml", NULL);
  *out = g_build_filename (tmpdir, name, "out", NULL);
}

/* Runs `estimate` (and `run`, when estimate takes it) on the tiny
 * scenario and topology as written to `scen` and `topo`: TRUE when both
 * end in 0, FALSE when one ends in 2 with an error naming one of the two
 * files and no outputs; fails the test on anything else. */
static gboolean
edited_pair_runs (const char *scen, const char *out)
{
  g_autofree char *est = g_strdup_printf ("estimate %s", scen);
  g_autofree char *run_args = g_strdup_printf ("run %s -q -o %s --set model.moe_layers=1 --set parallel.tokens_per_gpu=64",
                                               scen, out);
  const char *args[] = { est, run_args };
  gboolean ok = TRUE;
  for (guint a = 0; a < 2 && ok; a++)
    {
      g_autofree char *err = NULL;
      int rc = run (args[a], NULL, &err);
      CU_ASSERT (rc == 0 || rc == 2);
      if (rc == 2)
        {
          CU_ASSERT (err && g_str_has_prefix (err, "moesim: error: ")
                     && (strstr (err, "s.yaml") || strstr (err, "tiny-2node.yaml")));
          CU_ASSERT (!g_file_test (out, G_FILE_TEST_EXISTS));
        }
      else if (rc != 0)
        g_printerr ("%s: exit %d\n%s\n", args[a], rc, err ? err : "");
      ok = rc == 0;
    }
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", out);
  g_assert (system (rm) == 0);
  return ok;
}

/* One edit of a text file's lines (a fixed seed picks them): a value
 * replaced by something odd, a line dropped, repeated or re-indented, a
 * byte changed, a number made extreme. */
static void
mutate_lines (GPtrArray *lines, GRand *r)
{
  static const char *odd[] = { "", "0", "-1", "1e400", "nan", "-inf", "99999999999999999999", "4294967296", "[",
                               "]", "{", "}", "&a x", "*a", "!!binary x", "\t", "null", "~", "true", "0x10", "-0",
                               "1e-300", "'", "\"", "{a: 1}", "[1, 2]", "? x", "|", ">" };
  static const char *nums[] = { "0", "1", "3", "-5", "1000000", "4294967297", "0.5", "1e9" };
  guint i = (guint) g_rand_int_range (r, 0, (gint32) lines->len);
  char *line = lines->pdata[i];
  char *with = NULL;
  switch (g_rand_int_range (r, 0, 6))
    {
    case 0:
      {
        const char *colon = strchr (line, ':');
        if (colon)
          with = g_strdup_printf ("%.*s: %s", (int) (colon - line), line,
                                  odd[g_rand_int_range (r, 0, G_N_ELEMENTS (odd))]);
        break;
      }
    case 1:
      if (lines->len > 1)
        g_ptr_array_remove_index (lines, i); /* (frees it) */
      return;
    case 2:
      g_ptr_array_insert (lines, (gint) i, g_strdup (line));
      return;
    case 3:
      with = g_strdup_printf ("%*s%s", g_rand_int_range (r, 0, 7), "", line + strspn (line, " "));
      break;
    case 4:
      if (*line)
        {
          with = g_strdup (line);
          with[g_rand_int_range (r, 0, (gint32) strlen (line))] = (char) g_rand_int_range (r, 1, 256);
        }
      break;
    default:
      {
        const char *d = strpbrk (line, "0123456789");
        if (d)
          with = g_strdup_printf ("%.*s%s%s", (int) (d - line), line, nums[g_rand_int_range (r, 0, G_N_ELEMENTS (nums))],
                                  d + strspn (d, "0123456789"));
        break;
      }
    }
  if (with)
    {
      g_free (lines->pdata[i]);
      lines->pdata[i] = with;
    }
}

static GPtrArray *
read_lines (const char *path)
{
  g_autofree char *text = NULL;
  g_assert (g_file_get_contents (path, &text, NULL, NULL));
  g_auto (GStrv) v = g_strsplit (text, "\n", -1);
  GPtrArray *a = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; v[i]; i++)
    g_ptr_array_add (a, g_strdup (v[i]));
  return a;
}

static void
write_lines (const char *path, GPtrArray *lines)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < lines->len; i++)
    g_string_append_printf (s, i ? "\n%s" : "%s", (char *) lines->pdata[i]);
  g_assert (g_file_set_contents (path, s->str, (gssize) s->len, NULL));
  g_string_free (s, TRUE);
}

/* Scenario and topology files edited at random (a fixed seed, so the
 * cases are the same every run) and routing traces with bytes changed or
 * cut short: moesim ends every one with 0, or with 2 and an error that
 * names the file it read, and a failed run writes no outputs. In the
 * sanitizer build that .ci/run tests, a memory error ends the run
 * otherwise and fails this. */
static void
test_edited_inputs_end_in_0_or_2 (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (20261130);
  g_autofree char *scen = NULL, *topo = NULL, *out = NULL;
  edit_folder ("fz", &scen, &topo, &out);
  g_autofree char *scen0 = g_build_filename (MOESIM_SOURCE_ROOT, "sim", "tiny.yaml", NULL);
  g_autofree char *topo0 = g_build_filename (MOESIM_SOURCE_ROOT, "topologies", "tiny-2node.yaml", NULL);
  guint ran = 0;
  for (guint c = 0; c < 60; c++)
    {
      g_autoptr (GPtrArray) s = read_lines (scen0), t = read_lines (topo0);
      GPtrArray *edit = c % 2 ? s : t;
      for (gint k = g_rand_int_range (r, 1, 4); k > 0; k--)
        mutate_lines (edit, r);
      write_lines (scen, s);
      write_lines (topo, t);
      ran += edited_pair_runs (scen, out);
    }
  /* both ends were reached */
  CU_ASSERT (ran > 5 && ran < 55);

  /* traces: bytes changed in the header and the first records, or cut */
  g_autofree char *mrt0 = g_build_filename (MOESIM_SOURCE_ROOT, "traces", "deepseek-v3-synth-2k-node2.mrt", NULL);
  g_autofree char *orig = NULL;
  gsize len = 0;
  g_assert (g_file_get_contents (mrt0, &orig, &len, NULL));
  g_autofree char *mrt = g_build_filename (tmpdir, "fz", "t.mrt", NULL);
  guint t_ok = 0, t_failed = 0;
  for (guint c = 0; c < 40; c++)
    {
      gsize n = len;
      g_autofree char *b = g_memdup2 (orig, len);
      for (gint k = g_rand_int_range (r, 1, 4); k > 0; k--)
        if (g_rand_int_range (r, 0, 4) == 0)
          n = (gsize) g_rand_int_range (r, 0, (gint32) n + 1);
        else if (n > 0)
          b[g_rand_int_range (r, 0, (gint32) MIN (n, 4096))] = (char) g_rand_int_range (r, 0, 256);
      g_assert (g_file_set_contents (mrt, b, (gssize) n, NULL));
      for (guint a = 0; a < 2; a++)
        {
          g_autofree char *args = g_strdup_printf ("trace %s %s", a ? "check" : "info", mrt);
          g_autofree char *err = NULL;
          int rc = run (args, NULL, &err);
          CU_ASSERT (rc == 0 || rc == 2);
          if (rc == 0)
            t_ok++;
          else if (rc == 2)
            {
              CU_ASSERT (err && strstr (err, "t.mrt"));
              t_failed++;
            }
          else
            g_printerr ("trace case %u, %s: exit %d\n%s\n", c, a ? "check" : "info", rc, err ? err : "");
        }
    }
  CU_ASSERT (t_failed > 5);
  g_printerr ("%u of 60 edited pairs ran; traces: %u runs ended 0, %u ended 2\n", ran, t_ok, t_failed);
}

/* Every value of the tiny scenario and of its topology made odd in turn
 * (each `key: value` given an empty, non-numeric, negative, zero,
 * infinite, list or mapping value; each number anywhere, the GEMM table's
 * too, made -1 or 0): each edit ends in 0, or in 2 with an error that
 * names the file and no outputs (edited_pair_runs). */
static void
test_every_value_made_odd (void)
{
  static const char *odd[] = { "", "x", "-1", "0", "1e400", "[1]", "{a: 1}" };
  static const char *num[] = { "-1", "0" };
  g_autofree char *scen = NULL, *topo = NULL, *out = NULL;
  edit_folder ("odd", &scen, &topo, &out);
  g_autofree char *scen0 = g_build_filename (MOESIM_SOURCE_ROOT, "sim", "tiny.yaml", NULL);
  g_autofree char *topo0 = g_build_filename (MOESIM_SOURCE_ROOT, "topologies", "tiny-2node.yaml", NULL);
  g_autofree char *scen_text = NULL, *topo_text = NULL;
  g_assert (g_file_get_contents (scen0, &scen_text, NULL, NULL) && g_file_get_contents (topo0, &topo_text, NULL, NULL));
  /* a value: after "key: ", up to a comma, brace, bracket or the line's
   * end (matched in a copy with the comments blanked out) */
  g_autoptr (GRegex) value = g_regex_new ("(?m)[A-Za-z_][A-Za-z0-9_]*: *([^,{}\\[\\]\n ][^,{}\\[\\]\n]*?) *(?=[,}\n]|$)",
                                          0, 0, NULL);
  guint edits = 0, ran = 0;
  for (guint f = 0; f < 2; f++)
    {
      const char *text = f ? topo_text : scen_text;
      g_autofree char *bare = g_strdup (text);
      for (char *h = strchr (bare, '#'); h; h = strchr (h, '#'))
        while (*h && *h != '\n')
          *h++ = ' ';
      for (guint kind = 0; kind < 2; kind++)
        {
          /* the spans to replace: every value, or every run of digits not
           * inside a word */
          GArray *spans = g_array_new (FALSE, FALSE, sizeof (gint) * 2);
          g_autoptr (GMatchInfo) mi = NULL;
          if (kind == 0)
            for (g_regex_match (value, bare, 0, &mi); g_match_info_matches (mi); g_match_info_next (mi, NULL))
              {
                gint se[2];
                g_match_info_fetch_pos (mi, 1, &se[0], &se[1]);
                g_array_append_val (spans, se);
              }
          else
            for (const char *q = bare; *q; q++)
              if (g_ascii_isdigit (*q) && (q == bare || !g_ascii_isalnum (q[-1])))
                {
                  gint se[2] = { (gint) (q - bare), (gint) (q - bare) };
                  while (g_ascii_isdigit (bare[se[1]]))
                    se[1]++;
                  g_array_append_val (spans, se);
                  q = bare + se[1] - 1;
                }
          for (guint i = 0; i < spans->len; i++)
            {
              const gint *se = &g_array_index (spans, gint, 2 * i);
              const char **with = kind == 0 ? odd : num;
              guint n_with = kind == 0 ? G_N_ELEMENTS (odd) : G_N_ELEMENTS (num);
              for (guint w = 0; w < n_with; w++)
                {
                  g_autofree char *edited = g_strdup_printf ("%.*s%s%s", se[0], text, with[w], text + se[1]);
                  g_assert (g_file_set_contents (scen, f ? scen_text : edited, -1, NULL));
                  g_assert (g_file_set_contents (topo, f ? edited : topo_text, -1, NULL));
                  ran += edited_pair_runs (scen, out);
                  edits++;
                }
            }
          g_array_free (spans, TRUE);
        }
    }
  /* (every key of both files, and their numbers) */
  CU_ASSERT (edits > 300 && ran > 10);
  g_printerr ("%u edits, %u ran\n", edits, ran);
}

int
main (void)
{
  tmpdir = g_dir_make_tmp ("moesim-cli-XXXXXX", NULL);
  static const TestCase tests[] = {
    TEST (test_run_writes_summary),
    TEST (test_streamed_trace_is_whole_trace),
    TEST (test_bad_input_exits_2_without_outputs),
    TEST (test_estimate_and_topo_show),
    TEST (test_trace_commands),
    TEST (test_edited_inputs_end_in_0_or_2),
    TEST (test_every_value_made_odd),
    TEST (test_sweep_threads_resume_shards),
    TEST (test_sweep_bad_input),
    TEST (test_shipped_ib_sweep_is_monotone),
    TEST (test_shipped_domain_and_ep_sweeps),
  };
  int rc = test_main ("cli", tests, G_N_ELEMENTS (tests));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    rc = 1;
  g_free (tmpdir);
  return rc;
}
