/* Routing traces: the file format (round trip, damage detection), .npy
 * input errors, and load statistics of real third-party captures against the
 * figures published with them (stats.txt of each capture in
 * ../shared/data/routing). */
#include "npy.h"
#include "moe.h"
#include "routing.h"
#include "test_common.h"
#include "traceio.h"
#include "tracestats.h"

#include <glib/gstdio.h>
#include <math.h>

static char *tmpdir;
static char *data_dir; /* ../shared/data/routing, NULL when absent */

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* ---- format ---- */

static void
write_small (const char *path, gboolean weights, gboolean batch)
{
  TraceShape s = { 300, 3, 2, 4, weights, batch }; /* 300 experts: 2-byte ids */
  g_autoptr (GError) err = NULL;
  TraceWriter *w = trace_writer_new (path, &s, &err);
  g_assert_no_error (err);
  trace_writer_meta (w, "producer", "test");
  gint32 ids[2][12] = { { 0, 1, 2, 299, 5, 7, -1, -1, -1, 10, 11, 12 },
                        { 3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2, 3 } };
  float wts[12] = { 0.5f, 0.25f, 0.25f, 1, 0, 0, 0, 0, 0, 0.1f, 0.2f, 0.7f };
  for (guint l = 0; l < 2; l++)
    CU_ASSERT (trace_writer_layer (w, ids[l], weights ? wts : NULL, &err));
  if (batch)
    {
      guint32 req[4] = { 0, 0, 1, 1 }, step[4] = { 0, 1, 0, 0 }, pos[4] = { 0, 0, 0, 1 };
      guint8 ph[4] = { 'P', 'D', 'P', 'P' };
      CU_ASSERT (trace_writer_batch (w, req, step, pos, ph, &err));
    }
  CU_ASSERT (trace_writer_finish (w, &err));
  g_assert_no_error (err);
}

static void
test_write_read_round_trip (void)
{
  g_autofree char *p = tmp_path ("small.mrt");
  write_small (p, TRUE, TRUE);
  g_autoptr (GError) err = NULL;
  g_autoptr (Trace) t = trace_open (p, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  CU_ASSERT (trace_check (t, &err));
  const TraceShape *s = trace_shape (t);
  CU_ASSERT_EQUAL (s->experts, 300);
  CU_ASSERT_EQUAL (trace_id_bytes (t), 2);
  CU_ASSERT_EQUAL (trace_id (t, 0, 1, 0), 299);
  CU_ASSERT_EQUAL (trace_id (t, 0, 2, 1), TRACE_MISSING);
  CU_ASSERT_EQUAL (trace_id (t, 1, 3, 2), 3);
  CU_ASSERT_DOUBLE_EQUAL (trace_layer_weights (t, 0)[11], 0.7f, 0);
  CU_ASSERT_EQUAL (trace_batch_phase (t)[1], 'D');
  CU_ASSERT_STRING_EQUAL (trace_meta (t, "producer"), "test");
  /* the file is 64-byte aligned blocks: ids of layer 1 start on a boundary */
  CU_ASSERT_EQUAL (((guintptr) trace_layer_ids (t, 1)) % 64, 0);
}

static void
test_damage_is_detected (void)
{
  g_autofree char *p = tmp_path ("dmg.mrt");
  write_small (p, TRUE, FALSE);
  g_autofree guint8 *bytes = NULL;
  gsize len;
  g_file_get_contents (p, (char **) &bytes, &len, NULL);
  /* flip a byte of layer 0's ids (first block, at offset 128) */
  g_autofree guint8 *copy = g_memdup2 (bytes, len);
  copy[128 + 3] ^= 0x40;
  g_autofree char *q = tmp_path ("dmg2.mrt");
  g_file_set_contents (q, (char *) copy, (gssize) len, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (Trace) t = trace_open (q, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  CU_ASSERT_FALSE (trace_check (t, &err));
  CU_ASSERT (err && err->code == TRACE_ERROR_CHECKSUM && strstr (err->message, "layer 0"));
  /* truncated */
  g_file_set_contents (q, (char *) bytes, (gssize) len - 10, NULL);
  g_clear_error (&err);
  g_autoptr (Trace) t2 = trace_open (q, &err);
  CU_ASSERT_PTR_NULL (t2);
  CU_ASSERT (err && strstr (err->message, "truncated"));
  /* header damage */
  memcpy (copy, bytes, len);
  copy[16] ^= 1; /* experts */
  g_file_set_contents (q, (char *) copy, (gssize) len, NULL);
  g_clear_error (&err);
  g_autoptr (Trace) t3 = trace_open (q, &err);
  CU_ASSERT_PTR_NULL (t3);
  CU_ASSERT (err != NULL);
  /* not a trace */
  g_file_set_contents (q, "hello", 5, NULL);
  g_clear_error (&err);
  g_autoptr (Trace) t4 = trace_open (q, &err);
  CU_ASSERT (t4 == NULL && err && strstr (err->message, "not a moesim trace"));
}

/* ---- .npy input ---- */

static char *
write_raw (const char *name, const char *header, gsize data_bytes)
{
  char *p = tmp_path (name);
  GString *s = g_string_new_len ("\x93NUMPY\x01\x00", 8);
  guint16 hl = (guint16) strlen (header);
  g_string_append_len (s, (char *) &hl, 2);
  g_string_append (s, header);
  for (gsize i = 0; i < data_bytes; i++)
    g_string_append_c (s, 0);
  g_file_set_contents (p, s->str, (gssize) s->len, NULL);
  g_string_free (s, TRUE);
  return p;
}

static void
expect_import_error (const char *experts, const char *weights, guint num, const char *needle)
{
  g_autofree char *out = tmp_path ("bad.mrt");
  TraceImport in = { experts, weights, NULL, num };
  g_autoptr (GError) err = NULL;
  CU_ASSERT_FALSE (trace_import (&in, out, &err));
  CU_ASSERT (err && strstr (err->message, needle));
  if (err && !strstr (err->message, needle))
    g_printerr ("\n  '%s' lacks '%s'\n", err->message, needle);
  CU_ASSERT_FALSE (g_file_test (out, G_FILE_TEST_EXISTS)); /* nothing half-written */
}

static void
test_npy_errors (void)
{
  g_autofree char *big = write_raw ("big.npy", "{'descr': '>i2', 'fortran_order': False, 'shape': (2, 1, 2), }\n", 8);
  g_autofree char *f16 = write_raw ("c.npy", "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 1, 2), }\n", 32);
  g_autofree char *two = write_raw ("two.npy", "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 2), }\n", 8);
  g_autofree char *trunc = write_raw ("trunc.npy", "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 1, 2), }\n", 5);
  g_autofree char *junk = write_raw ("junk.npy", "{'descr': '<i2', 'fortran_order': False, 'shape': (2, x), }\n", 8);
  g_autofree char *fort = write_raw ("fort.npy", "{'descr': '<i2', 'fortran_order': True, 'shape': (2, 1, 2), }\n", 8);
  expect_import_error (big, NULL, 0, "unsupported dtype '>i2'");
  expect_import_error (f16, NULL, 0, "unsupported dtype '<c8'");
  expect_import_error (two, NULL, 0, "wrong shape (2, 2)");
  expect_import_error (trunc, NULL, 0, "truncated data");
  expect_import_error (junk, NULL, 0, "malformed .npy header");
  expect_import_error (fort, NULL, 0, "Fortran-order");
  g_autofree char *missing = tmp_path ("nope.npy");
  expect_import_error (missing, NULL, 0, "cannot read");
  g_autofree char *notnpy = tmp_path ("text.npy");
  g_file_set_contents (notnpy, "hello world", -1, NULL);
  expect_import_error (notnpy, NULL, 0, "not a .npy file");
  /* ids out of range: experts array of zeros except one 9 with 4 experts */
  gint16 ids[4] = { 0, 1, 9, -1 };
  gsize shape[3] = { 2, 1, 2 };
  g_autofree char *range = tmp_path ("range.npy");
  g_assert_true (npy_save (range, NPY_I2, 3, shape, ids, NULL));
  expect_import_error (range, NULL, 4, "[1, 0, 0] = 9");
  gint16 neg[4] = { 0, 1, -2, 1 };
  g_autofree char *negp = tmp_path ("neg.npy");
  g_assert_true (npy_save (negp, NPY_I2, 3, shape, neg, NULL));
  expect_import_error (negp, NULL, 0, "= -2");
  /* a token that picks the same expert twice */
  gint16 twice[4] = { 0, 1, 3, 3 };
  g_autofree char *twicep = tmp_path ("twice.npy");
  g_assert_true (npy_save (twicep, NPY_I2, 3, shape, twice, NULL));
  expect_import_error (twicep, NULL, 4, "[1, 0, 1] = 3: expert already chosen at [1, 0, 0]");
  /* weights whose shape differs from the ids (which are good) */
  gint16 good[4] = { 0, 1, 1, 0 };
  g_autofree char *okp = tmp_path ("good.npy");
  g_assert_true (npy_save (okp, NPY_I2, 3, shape, good, NULL));
  float w[2] = { 1, 2 };
  gsize wshape[3] = { 1, 1, 2 };
  g_autofree char *wp = tmp_path ("w.npy");
  g_assert_true (npy_save (wp, NPY_F4, 3, wshape, w, NULL));
  expect_import_error (okp, wp, 4, "does not match");
  /* a weight that is not a number */
  float wn[4] = { 0.5f, 0.5f, 0.25f, NAN };
  g_autofree char *wnp = tmp_path ("wn.npy");
  g_assert_true (npy_save (wnp, NPY_F4, 3, shape, wn, NULL));
  expect_import_error (okp, wnp, 4, "[1, 0, 1] = nan: expected a finite gate weight");
}

/* ---- real captures ---- */

typedef struct {
  guint64 tokens, assignments, max_load, min_load;
  double max_over_mean, cv;
} RefRow;

/* Rows of the section of stats.txt whose title starts with `title`. */
static GArray *
read_reference (const char *stats_txt, const char *title)
{
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (stats_txt, &text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  GArray *rows = g_array_new (FALSE, TRUE, sizeof (RefRow));
  gboolean in = FALSE;
  for (guint i = 0; lines[i]; i++)
    {
      if (g_str_has_prefix (lines[i], "=="))
        {
          in = g_str_has_prefix (lines[i] + 3, title);
          continue;
        }
      RefRow r;
      guint layer;
      double mean;
      if (in && sscanf (lines[i], "%u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                        " %lf %lf %" G_GUINT64_FORMAT " %lf",
                        &layer, &r.tokens, &r.assignments, &r.max_load, &mean, &r.max_over_mean,
                        &r.min_load, &r.cv) == 8)
        g_array_append_val (rows, r);
    }
  return rows;
}

static void
compare_with_reference (const char *dir, const char *stem, const char *section, char phase)
{
  if (data_dir == NULL)
    return;
  g_autofree char *ex = g_strdup_printf ("%s/%s/%s.experts.npy", data_dir, dir, stem);
  g_autofree char *wt = g_strdup_printf ("%s/%s/%s.weights.npy", data_dir, dir, stem);
  g_autofree char *tk = g_strdup_printf ("%s/%s/%s.tokens.csv", data_dir, dir, stem);
  g_autofree char *st = g_strdup_printf ("%s/%s/stats.txt", data_dir, dir);
  g_autofree char *out = tmp_path ("real.mrt");
  TraceImport in = { ex, wt, tk, 0 };
  g_autoptr (GError) err = NULL;
  CU_ASSERT_FATAL (trace_import (&in, out, &err));
  g_autoptr (Trace) t = trace_open (out, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  CU_ASSERT (trace_check (t, &err));
  g_autoptr (TraceStats) s = trace_stats_compute (t, phase, 0, 0, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (s);
  g_autoptr (GArray) ref = read_reference (st, section);
  CU_ASSERT_EQUAL_FATAL (ref->len, s->n_layers);
  for (guint l = 0; l < s->n_layers; l++)
    {
      const RefRow *r = &g_array_index (ref, RefRow, l);
      const TraceLayerStats *ls = &s->layers[l];
      CU_ASSERT_EQUAL (ls->tokens, r->tokens);
      CU_ASSERT_EQUAL (ls->assignments, r->assignments);
      CU_ASSERT_EQUAL (ls->max_load, r->max_load);
      CU_ASSERT_EQUAL (ls->min_load, r->min_load);
      CU_ASSERT (fabs (ls->max_over_mean - r->max_over_mean) <= 0.0005 + 1e-9);
      CU_ASSERT (fabs (ls->cv - r->cv) <= 0.0005 + 1e-9);
    }
  /* and the export gives the same arrays back */
  g_autofree char *ex2 = tmp_path ("e2.npy"), *wt2 = tmp_path ("w2.npy"), *tk2 = tmp_path ("t2.csv");
  CU_ASSERT (trace_export (t, ex2, wt2, tk2, &err));
  g_autoptr (NpyArray) a = npy_load (ex, NULL), b = npy_load (ex2, NULL);
  CU_ASSERT_FATAL (a && b && a->count == b->count);
  gboolean same = TRUE;
  for (gsize i = 0; i < a->count; i++)
    same &= npy_get_int (a, i) == npy_get_int (b, i);
  CU_ASSERT (same);
  g_autoptr (NpyArray) wa = npy_load (wt, NULL), wb = npy_load (wt2, NULL);
  CU_ASSERT (wa && wb && wa->dtype == NPY_F4 && wb->dtype == NPY_F4 && wa->count == wb->count
             && memcmp (wa->data, wb->data, wa->count * 4) == 0);
  g_autofree char *c1 = NULL, *c2 = NULL;
  g_file_get_contents (tk, &c1, NULL, NULL);
  g_file_get_contents (tk2, &c2, NULL, NULL);
  CU_ASSERT (c1 && c2 && strcmp (c1, c2) == 0);
}

static void
test_flame_moe_prefill_matches_published_stats (void)
{
  compare_with_reference ("flame-moe-290m-prefill", "prefill_2048tok", "prefill_2048tok", 0);
}

static void
test_mixtral_vllm_capture_matches_published_stats (void)
{
  /* decode of 4 requests, with missing (-1) records */
  compare_with_reference ("mixtral-8x7b-instruct-fp8-vllm", "decode_4req", "decode_4req", 0);
  /* one request: the prefill pass and the decode steps, split by phase */
  compare_with_reference ("mixtral-8x7b-instruct-fp8-vllm", "humaneval0_prefill_decode",
                          "humaneval0_prefill_decode: prefill", 'P');
  compare_with_reference ("mixtral-8x7b-instruct-fp8-vllm", "humaneval0_prefill_decode",
                          "humaneval0_prefill_decode: decode", 'D');
}

/* Replays FLAME-MoE's real prefill routing (64 experts, top-6, 2048 tokens,
 * 8 layers) on EP32 over 4 H800 nodes, 64 tokens per GPU, so every trace
 * token is used exactly once: the run's per-layer expert load statistics
 * must equal the published ones, its node fan-out the trace statistics'
 * (another code path), and the balanced counterfactual must keep the wire
 * bytes per link class and never be slower, per layer or for the pass. */
static void
test_real_capture_imbalance (void)
{
  if (data_dir == NULL)
    return;
  g_autofree char *ex = g_strdup_printf ("%s/flame-moe-290m-prefill/prefill_2048tok.experts.npy", data_dir);
  g_autofree char *st = g_strdup_printf ("%s/flame-moe-290m-prefill/stats.txt", data_dir);
  g_autofree char *mrt = tmp_path ("flame.mrt");
  TraceImport in = { ex, NULL, NULL, 0 };
  g_autoptr (GError) err = NULL;
  CU_ASSERT_FATAL (trace_import (&in, mrt, &err));
  g_autoptr (GArray) ref = read_reference (st, "prefill_2048tok");
  CU_ASSERT_EQUAL_FATAL (ref->len, 8);
  g_autoptr (Trace) t = trace_open (mrt, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  g_autoptr (TraceStats) ts = trace_stats_compute (t, 0, 32, 8, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (ts);
  for (guint d = 0; d < 3; d++)
    {
      static const char *const algos[] = { "direct", "hierarchical", "low_latency" };
      g_autofree char *path = tmp_path ("flame.yaml");
      g_autofree char *text = g_strdup_printf (
          "name: flame\ntopology: %s/topologies/h800-deepseek.yaml\n"
          "model: {hidden: 2048, moe_intermediate: 1408, experts: 64, top_k: 6, moe_layers: 8}\n"
          "parallel: {ep: 32, tokens_per_gpu: 64}\ndispatch: %s\nrouting: {trace: %s}\n",
          MOESIM_SOURCE_ROOT, algos[d], mrt);
      g_file_set_contents (path, text, -1, NULL);
      g_autoptr (Scenario) sc = scenario_load (path, NULL, &err);
      CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
      CU_ASSERT_DOUBLE_EQUAL (scenario_trace_reuse (sc), 1.0, 0);
      g_autoptr (RunResult) r = moe_run (sc, &err);
      CU_ASSERT_PTR_NOT_NULL_FATAL (r);
      CU_ASSERT_FATAL (r->counterfactual && r->n_layers == 8 && r->nodes == 4);
      for (guint l = 0; l < 8; l++)
        {
          const LayerResult *lr = &r->layers[l];
          const RefRow *rr = &g_array_index (ref, RefRow, l);
          CU_ASSERT (fabs (lr->expert_load.max_over_mean - rr->max_over_mean) <= 0.0005 + 1e-9);
          CU_ASSERT (fabs (lr->expert_load.cv - rr->cv) <= 0.0005 + 1e-9);
          CU_ASSERT_DOUBLE_EQUAL (lr->expert_load.max, (double) rr->max_load, 0);
          CU_ASSERT_DOUBLE_EQUAL (lr->expert_load.gini, ts->layers[l].gini, 1e-12);
          for (guint n = 0; n <= 4; n++)
            CU_ASSERT_EQUAL (r->fanout[l * 5 + n], ts->layers[l].fanout[n]);
          CU_ASSERT (lr->balanced_us > 0 && lr->balanced_us <= lr->end_us - lr->start_us);
          /* 2048 tokens on 32 GPUs: every GPU received something */
          CU_ASSERT (lr->gpu_tokens.max_over_mean >= 1.0 && lr->gpu_tokens.min > 0);
        }
      CU_ASSERT (r->balanced_total_us < r->total_us);
      for (guint c = 0; c < LCLASS_N; c++)
        CU_ASSERT (fabs (r->balanced_class_bytes[c] - r->class_bytes[c]) <= 1e-9 * r->class_bytes[c]);
    }
}

static void
test_placement_stats (void)
{
  g_autofree char *p = tmp_path ("small2.mrt");
  write_small (p, FALSE, TRUE);
  g_autoptr (Trace) t = trace_open (p, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t);
  /* 300 experts on 3 GPUs of 1 per node: experts 0..99 on node 0, ... */
  g_autoptr (TraceStats) s = trace_stats_compute (t, 0, 3, 1, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (s);
  /* layer 0 tokens: {0,1,2}: 1 node; {299,5,7}: 2 nodes; all missing: none; {10,11,12}: 1 */
  CU_ASSERT_EQUAL (s->layers[0].fanout[1], 2);
  CU_ASSERT_EQUAL (s->layers[0].fanout[2], 1);
  CU_ASSERT_EQUAL (s->layers[0].tokens, 3);
  g_autoptr (TraceStats) sp = trace_stats_compute (t, 'D', 0, 0, NULL);
  CU_ASSERT_EQUAL (sp->layers[0].tokens, 1);
  g_autofree char *js = trace_stats_json (t, s);
  CU_ASSERT (strstr (js, "\"max_over_mean\"") && strstr (js, "\"gini\"") && strstr (js, "\"node_fanout\""));
}

/* A trace of E experts, top-2, where token t of layer l picks experts
 * (t + l) mod E and (t + l + 1) mod E; written at `path`. */
static void
write_pattern (const char *path, guint E, guint layers, guint tokens)
{
  TraceShape s = { E, 2, layers, tokens, FALSE, FALSE };
  TraceWriter *w = trace_writer_new (path, &s, NULL);
  g_autofree gint32 *ids = g_new (gint32, tokens * 2);
  for (guint l = 0; l < layers; l++)
    {
      for (guint t = 0; t < tokens; t++)
        {
          ids[2 * t] = (gint32) ((t + l) % E);
          ids[2 * t + 1] = (gint32) ((t + l + 1) % E);
        }
      g_assert_true (trace_writer_layer (w, ids, NULL, NULL));
    }
  g_assert_true (trace_writer_finish (w, NULL));
}

static Scenario *
replay_scenario (const char *trace, const char *extra, GError **error)
{
  g_autofree char *path = tmp_path ("replay.yaml");
  g_autofree char *text = g_strdup_printf (
      "name: replay\ntopology: %s/topologies/tiny-2node.yaml\n"
      "model: {hidden: 256, moe_intermediate: 256, experts: 16, top_k: 2, moe_layers: 3}\n"
      "parallel: {ep: 8, tokens_per_gpu: 32}\nrouting: {trace: %s}\n%s",
      MOESIM_SOURCE_ROOT, trace, extra ? extra : "");
  g_file_set_contents (path, text, -1, NULL);
  return scenario_load (path, NULL, error);
}

static void
test_replay_windows_and_counts (void)
{
  g_autofree char *p = tmp_path ("pattern.mrt");
  write_pattern (p, 16, 2, 64); /* 64 tokens, the scenario needs 8 x 32 = 256: reuse 4 */
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = replay_scenario (p, NULL, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  CU_ASSERT_DOUBLE_EQUAL (scenario_trace_reuse (sc), 4.0, 1e-12);
  const char *const *notes = scenario_notes (sc);
  CU_ASSERT (notes[0] && strstr (notes[0], "used 4.00 times"));
  CU_ASSERT (notes[0] && strstr (notes[0], "g T / ep"));
  CU_ASSERT (notes[1] && strstr (notes[1], "l mod 2"));
  g_autoptr (RoutingLayer) r = routing_layer_new (8, 16);
  /* layer 2 replays trace layer 0; GPU 1 takes tokens 8..39 (starts 64 x 1 / 8) */
  routing_from_trace (scenario_spec (sc), scenario_trace (sc), NULL, 2, 0, 32, r);
  /* token t picks experts t mod 16 and t+1 mod 16: GPUs (t/2) mod 8 and
   * ((t+1)/2) mod 8; each of GPU 1's 32 tokens reaches 1 or 2 GPUs */
  guint64 out = 0;
  for (guint d = 0; d < 8; d++)
    out += r->pair_tokens[1 * 8 + d];
  CU_ASSERT_EQUAL (out, 32 + 16); /* odd t: two GPUs; even t: one */
  guint64 rows = 0;
  for (guint e = 0; e < 16; e++)
    {
      rows += r->expert_rows[e];
      CU_ASSERT_EQUAL (r->expert_rows[e], 32); /* 256 tokens x 2 / 16, by symmetry */
    }
  CU_ASSERT_EQUAL (rows, 8 * 32 * 2);
  /* and a run replays it deterministically */
  g_autoptr (RunResult) a = moe_run (sc, &err);
  g_autoptr (RunResult) b = moe_run (sc, &err);
  CU_ASSERT_FATAL (a && b);
  CU_ASSERT_DOUBLE_EQUAL (a->total_us, b->total_us, 0);
  CU_ASSERT (a->total_us > 0);
  /* this routing is balanced already (every expert 32 rows, every GPU pair
   * the same copies): the counterfactual changes nothing and costs nothing */
  CU_ASSERT_FATAL (a->counterfactual);
  CU_ASSERT_DOUBLE_EQUAL (a->balanced_total_us, a->total_us, 0);
  for (guint i = 0; i < a->n_layers; i++)
    {
      CU_ASSERT_DOUBLE_EQUAL (a->layers[i].balanced_us, a->layers[i].end_us - a->layers[i].start_us, 0);
      CU_ASSERT_DOUBLE_EQUAL (a->layers[i].expert_load.max_over_mean, 1.0, 0);
      CU_ASSERT_DOUBLE_EQUAL (a->layers[i].expert_load.gini, 0.0, 0);
    }
}

static void
test_replay_rejects_mismatches (void)
{
  g_autofree char *p = tmp_path ("pattern32.mrt");
  write_pattern (p, 32, 1, 16);
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = replay_scenario (p, NULL, &err);
  CU_ASSERT_PTR_NULL (sc);
  CU_ASSERT (err && strstr (err->message, "replay.yaml:5:18") && strstr (err->message, "32 experts")
             && strstr (err->message, "model.experts is 16"));
  g_clear_error (&err);
  g_autoptr (Scenario) sc2 = replay_scenario ("nowhere.mrt", NULL, &err);
  CU_ASSERT (sc2 == NULL && err && strstr (err->message, "nowhere.mrt") && strstr (err->message, "cannot read"));
}

static void
test_in_process_gate_routing (void)
{
  g_autofree char *path = tmp_path ("gate.yaml");
  g_autofree char *text = g_strdup_printf (
      "name: gated\ntopology: %s/topologies/tiny-2node.yaml\n"
      "model: {hidden: 64, moe_intermediate: 64, experts: 16, top_k: 2, moe_layers: 2}\n"
      "parallel: {ep: 8, tokens_per_gpu: 32}\nrouting: {gate: {preset: mixtral, tokens: 128, seed: 5}}\n",
      MOESIM_SOURCE_ROOT);
  g_file_set_contents (path, text, -1, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) a = scenario_load (path, NULL, &err);
  g_autoptr (Scenario) b = scenario_load (path, NULL, &err);
  CU_ASSERT_FATAL (a && b);
  /* loading leaves the gate to what simulates (estimate needs no routing) */
  CU_ASSERT (!scenario_routing_made (a) && scenario_trace (a) == NULL && scenario_notes (a)[0] == NULL);
  CU_ASSERT_FATAL (scenario_make_routing (a, &err) && scenario_make_routing (a, &err));
  CU_ASSERT (scenario_routing_made (a) && scenario_trace_from_gate (a));
  CU_ASSERT (strstr (scenario_notes (a)[0], "in-process mixtral gate, 128 synthetic tokens x 2 layers") != NULL);
  const Trace *made = scenario_trace (a);
  g_autoptr (RunResult) ra = moe_run (a, &err);
  CU_ASSERT (scenario_trace (a) == made); /* once */
  g_autoptr (RunResult) rb = moe_run (b, &err);
  CU_ASSERT_FATAL (ra && rb);
  CU_ASSERT_DOUBLE_EQUAL (ra->total_us, rb->total_us, 0); /* same gate, same seed */
  /* unknown preset, and trace + gate together */
  const char *bad[] = { "routing.gate.preset=switch", NULL };
  g_autoptr (Scenario) c = scenario_load (path, bad, &err);
  CU_ASSERT (c == NULL && err && strstr (err->message, "unknown preset 'switch'"));
  g_clear_error (&err);
  const char *both[] = { "routing.trace=x.mrt", NULL };
  g_autoptr (Scenario) d = scenario_load (path, both, &err);
  CU_ASSERT (d == NULL && err && strstr (err->message, "alternatives"));
}

int
main (void)
{
  tmpdir = g_dir_make_tmp ("moesim-trace-XXXXXX", NULL);
  char *d = g_build_filename (MOESIM_SOURCE_ROOT, "..", "shared", "data", "routing", NULL);
  if (g_file_test (d, G_FILE_TEST_IS_DIR))
    data_dir = d;
  else
    {
      g_printerr ("test_trace: %s not found: real-capture checks skipped\n", d);
      g_free (d);
    }
  static const TestCase tests[] = {
    TEST (test_write_read_round_trip),
    TEST (test_damage_is_detected),
    TEST (test_npy_errors),
    TEST (test_flame_moe_prefill_matches_published_stats),
    TEST (test_mixtral_vllm_capture_matches_published_stats),
    TEST (test_placement_stats),
    TEST (test_real_capture_imbalance),
    TEST (test_replay_windows_and_counts),
    TEST (test_replay_rejects_mismatches),
    TEST (test_in_process_gate_routing),
  };
  int rc = test_main ("trace", tests, G_N_ELEMENTS (tests));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    rc = 1;
  g_free (tmpdir);
  g_free (data_dir);
  return rc;
}
