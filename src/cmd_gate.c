/* `moesim gate`: run the gate over hidden states (from .npy or synthetic)
 * and write a routing trace. */
#include "cmd.h"
#include "gate_backend.h"
#include "moesim-config.h"
#include "npy.h"
#include "safetensors.h"
#include "trace.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *usage
    = "Usage:\n"
      "  moesim gate --preset NAME [--hidden X.npy] [--weights W.npy] [--bias B.npy]\n"
      "              [--layers N] [--tokens T] [--seed S] [--topics N] [--zipf Z]\n"
      "              [--strength S] [--doc-tokens N] [--node-limit M --experts-per-node N]\n"
      "              [--experts E] [--top-k K] [--hidden-size H] [--n-group N]\n"
      "              [--topk-group N] [--scoring softmax|sigmoid]\n"
      "              [--no-weights] [--backend auto|cpu|cuda] [--threads N] -o OUT\n"
      "Presets: deepseek-v3, mixtral, qwen-moe. Without --hidden, hidden states are\n"
      "synthetic (topic clusters, see README); without --weights, gate weights are\n"
      "random N(0, 1/H) per layer. X.npy is [tokens, hidden] float32/float16, or\n"
      "bf16 stored as uint16; W.npy is [experts, hidden] or [layers, experts, hidden];\n"
      "B.npy is [experts] or [layers, experts]. A .safetensors --weights file is read\n"
      "per layer by tensor name (--tensor, --bias-tensor, --layer-offset).\n";

/* Loads a float matrix, bf16 (uint16) widened; `rows` x `cols` expected
 * (rows 0 = any). */
static float *
load_floats (const char *path, guint ndim_a, guint ndim_b, gsize *dims, GError **error)
{
  g_autoptr (NpyArray) a = npy_load (path, error);
  if (a == NULL)
    return NULL;
  if (a->ndim != ndim_a && a->ndim != ndim_b)
    {
      g_set_error (error, MOESIM_NPY_ERROR, NPY_ERROR_SHAPE, "%s: %u dimensions, expected %u or %u",
                   path, a->ndim, ndim_a, ndim_b);
      return NULL;
    }
  if (npy_dtype_is_int (a->dtype) && a->dtype != NPY_U2)
    {
      g_set_error (error, MOESIM_NPY_ERROR, NPY_ERROR_DTYPE,
                   "%s: dtype %s: expected float32, float16, or bf16 stored as uint16", path,
                   npy_dtype_descr (a->dtype));
      return NULL;
    }
  if (a->count == 0)
    {
      g_set_error (error, MOESIM_NPY_ERROR, NPY_ERROR_SHAPE, "%s: the array is empty", path);
      return NULL;
    }
  float *out = g_new (float, a->count);
  for (gsize i = 0; i < a->count; i++)
    {
      if (a->dtype == NPY_U2)
        {
          guint32 bits = (guint32) npy_get_int (a, i) << 16;
          memcpy (&out[i], &bits, 4);
        }
      else
        out[i] = (float) npy_get_double (a, i);
    }
  for (guint i = 0; i < a->ndim; i++)
    dims[i] = a->shape[i];
  dims[a->ndim] = 0;
  return out;
}

/* Reads tensor `pattern` ({layer} replaced by `layer`) into out: [rows, cols]
 * when cols > 0, else [rows]. */
static gboolean
load_layer_tensor (const SafeTensors *st, const char *pattern, int layer, guint rows, guint cols,
                   float *out, GError **error)
{
  g_autofree char *num = g_strdup_printf ("%d", layer);
  g_auto (GStrv) parts = g_strsplit (pattern, "{layer}", -1);
  g_autofree char *name = g_strjoinv (num, parts);
  gsize shape[8];
  guint ndim;
  g_autofree float *t = safetensors_read_f32 (st, name, shape, &ndim, error);
  if (t == NULL)
    return FALSE;
  gboolean ok = cols ? (ndim == 2 && shape[0] == rows && shape[1] == cols) : (ndim == 1 && shape[0] == rows);
  if (!ok)
    {
      g_set_error (error, MOESIM_SAFETENSORS_ERROR, ST_ERROR_FORMAT,
                   "tensor '%s': wrong shape, expected [%u%s%.0u]", name, rows, cols ? ", " : "", cols);
      return FALSE;
    }
  memcpy (out, t, sizeof (float) * rows * (cols ? cols : 1));
  return TRUE;
}

typedef struct {
  char *preset, *hidden, *weights, *bias, *out, *backend, *scoring;
  gint layers, tokens, threads, node_limit, experts_per_node, topics, doc_tokens;
  gint experts, top_k, hidden_size, n_group, topk_group, layer_offset;
  gboolean no_weights;
  char *tensor, *bias_tensor;
  gint64 seed;
  double zipf, strength;
} GateArgs;

static gboolean
usage_error (GError **error, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static gboolean
usage_error (GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, MOESIM_NPY_ERROR, NPY_ERROR_SHAPE, msg);
  return FALSE;
}

static gboolean
run_gate (const GateArgs *a, GError **error)
{
  const GateConfig *base = gate_preset (a->preset);
  if (base == NULL)
    return usage_error (error, "--preset %s: expected one of: %s", a->preset, gate_preset_names ());
  if (a->layers < 1 || a->tokens < 1 || a->topics < 1 || a->doc_tokens < 1 || a->zipf < 0
      || a->threads < 0 || a->node_limit < 0 || (a->node_limit > 0 && a->experts_per_node < 1))
    return usage_error (error, "--layers, --tokens, --topics and --doc-tokens must be >= 1, "
                               "--zipf >= 0, and --node-limit needs --experts-per-node");
  GateConfig g = *base;
  if (a->experts > 0)
    g.experts = (guint) a->experts;
  if (a->top_k > 0)
    g.top_k = (guint) a->top_k;
  if (a->hidden_size > 0)
    g.hidden = (guint) a->hidden_size;
  if (a->n_group > 0)
    g.n_group = (guint) a->n_group;
  if (a->topk_group > 0)
    g.topk_group = (guint) a->topk_group;
  if (a->scoring)
    {
      if (strcmp (a->scoring, "softmax") == 0)
        g.scoring = GATE_SOFTMAX;
      else if (strcmp (a->scoring, "sigmoid") == 0)
        g.scoring = GATE_SIGMOID;
      else
        return usage_error (error, "--scoring %s: expected softmax or sigmoid", a->scoring);
    }
  if (g.experts > 4096 || g.top_k > g.experts || g.n_group == 0 || g.n_group > 1024
      || g.experts % g.n_group != 0 || g.topk_group > g.n_group
      || g.top_k > g.topk_group * (g.experts / g.n_group))
    return usage_error (error, "inconsistent gate: %u experts (at most 4096), top-%u, %u groups "
                               "(at most 1024) of which %u may be used", g.experts, g.top_k,
                        g.n_group, g.topk_group);
  g.node_limit = (guint) a->node_limit;
  g.experts_per_node = (guint) a->experts_per_node;
  if (a->node_limit && (g.experts % (guint) a->experts_per_node != 0
                        || g.experts / (guint) a->experts_per_node > 1024))
    return usage_error (error, "--experts-per-node %d must divide the %u experts into at most "
                               "1024 nodes", a->experts_per_node, g.experts);
  GateSynth syn = { (guint64) a->seed, (guint) a->topics, a->zipf, a->strength, (guint) a->doc_tokens };
  g_autofree char *note = NULL, *why = NULL;
  const GateBackend *backend = gate_backend_choose (a->backend, &g, &note, &why);
  if (backend == NULL)
    return usage_error (error, "%s", why);
  if (note)
    g_printerr ("moesim: note: %s\n", note);


  gsize dims[NPY_MAX_DIMS + 1];
  guint64 T = (guint64) a->tokens;
  g_autofree float *hidden = NULL, *weight = NULL, *bias = NULL;
  if (a->hidden)
    {
      hidden = load_floats (a->hidden, 2, 2, dims, error);
      if (hidden == NULL)
        return FALSE;
      if (dims[1] != g.hidden)
        return usage_error (error, "%s: hidden size %zu, the %s gate expects %u", a->hidden, dims[1],
                            g.name, g.hidden);
      T = dims[0];
    }
  else
    {
      hidden = g_new (float, T * g.hidden);
      gate_synth_hidden (&syn, g.hidden, T, hidden, (guint) a->threads);
    }
  gboolean per_layer_w = FALSE, per_layer_b = FALSE;
  g_autoptr (SafeTensors) st = NULL;
  if (a->weights && g_str_has_suffix (a->weights, ".safetensors"))
    {
      st = safetensors_open (a->weights, error);
      if (st == NULL)
        return FALSE;
    }
  else if (a->tensor || a->bias_tensor)
    return usage_error (error, "--tensor and --bias-tensor read a .safetensors --weights file");
  if (a->weights && !st)
    {
      weight = load_floats (a->weights, 2, 3, dims, error);
      if (weight == NULL)
        return FALSE;
      per_layer_w = dims[2] != 0;
      gsize e = per_layer_w ? dims[1] : dims[0], h = per_layer_w ? dims[2] : dims[1];
      if (e != g.experts || h != g.hidden || (per_layer_w && dims[0] != (gsize) a->layers))
        return usage_error (error, "%s: wrong shape: expected [experts %u, hidden %u] or "
                                   "[layers %d, experts, hidden]", a->weights, g.experts, g.hidden,
                            a->layers);
    }
  if (a->bias)
    {
      bias = load_floats (a->bias, 1, 2, dims, error);
      if (bias == NULL)
        return FALSE;
      per_layer_b = dims[1] != 0;
      if ((per_layer_b ? dims[1] : dims[0]) != g.experts || (per_layer_b && dims[0] != (gsize) a->layers))
        return usage_error (error, "%s: wrong shape: expected [experts %u] or [layers %d, experts]",
                            a->bias, g.experts, a->layers);
    }
  TraceShape shape = { g.experts, g.top_k, (guint) a->layers, T, !a->no_weights, FALSE };
  TraceWriter *w = trace_writer_new (a->out, &shape, error);
  if (w == NULL)
    return FALSE;
  trace_writer_meta (w, "producer", "moesim gate " MOESIM_VERSION);
  trace_writer_meta (w, "gate.preset", g.name);
  trace_writer_meta (w, "gate.backend", backend->name);
  trace_writer_meta (w, "gate.scoring", g.scoring == GATE_SIGMOID ? "sigmoid" : "softmax");
  g_autofree char *grp = g_strdup_printf ("%u/%u (%s)", g.n_group, g.topk_group,
                                          g.group_score == GATE_GROUP_MAX ? "group max" : "sum of top-2");
  trace_writer_meta (w, "gate.groups", grp);
  g_autofree char *nl = g_strdup_printf ("%u (experts per node %u)", g.node_limit, g.experts_per_node);
  trace_writer_meta (w, "gate.node_limit", nl);
  g_autofree char *norm = g_strdup_printf ("%s, x%g", g.normalize ? "normalised" : "not normalised",
                                           g.scaling);
  trace_writer_meta (w, "gate.weights", norm);
  g_autofree char *hs = a->hidden ? g_path_get_basename (a->hidden)
                                  : g_strdup_printf ("synthetic seed=%" G_GINT64_FORMAT
                                                     " topics=%u zipf=%g strength=%g doc_tokens=%u",
                                                     a->seed, syn.topics, syn.zipf, syn.strength,
                                                     syn.doc_tokens);
  trace_writer_meta (w, "input.hidden", hs);
  g_autofree char *wbase = a->weights ? g_path_get_basename (a->weights) : NULL;
  g_autofree char *ws = a->weights ? g_strdup_printf ("%s%s%s", wbase, st ? " " : "",
                                                     st ? (a->tensor ? a->tensor : "model.layers.{layer}.mlp.gate.weight") : "")
                                   : g_strdup_printf ("synthetic N(0, 1/H) seed=%" G_GINT64_FORMAT, a->seed);
  trace_writer_meta (w, "input.weights", ws);
  if (a->bias)
    {
      g_autofree char *bs = g_path_get_basename (a->bias);
      trace_writer_meta (w, "input.bias", bs);
    }
  g_autofree gint32 *ids = g_new (gint32, T * g.top_k);
  g_autofree float *wts = g_new (float, T * g.top_k);
  g_autofree float *layer_w = weight ? NULL : g_new (float, (gsize) g.experts * g.hidden);
  g_autofree float *st_bias = NULL;
  gboolean tty = isatty (2);
  gint64 t0 = g_get_monotonic_time ();
  for (gint l = 0; l < a->layers; l++)
    {
      const float *wl = weight ? weight + (per_layer_w ? (gsize) l * g.experts * g.hidden : 0) : layer_w;
      const float *bl = bias ? bias + (per_layer_b ? (gsize) l * g.experts : 0) : NULL;
      if (st)
        {
          /* model layer l + offset's tensors, named by the patterns */
          if (!load_layer_tensor (st, a->tensor ? a->tensor : "model.layers.{layer}.mlp.gate.weight",
                                  l + a->layer_offset, g.experts, g.hidden, layer_w, error))
            {
              trace_writer_abort (w);
              return FALSE;
            }
          if (a->bias_tensor)
            {
              g_free (st_bias);
              st_bias = g_new (float, g.experts);
              if (!load_layer_tensor (st, a->bias_tensor, l + a->layer_offset, g.experts, 0, st_bias, error))
                {
                  trace_writer_abort (w);
                  return FALSE;
                }
              bl = st_bias;
            }
        }
      else if (!weight)
        gate_synth_weight (&syn, (guint) l, g.experts, g.hidden, layer_w);
      if (backend == gate_backend_cpu ())
        gate_route (&g, hidden, T, wl, bl, ids, wts, (guint) a->threads);
      else
        {
          g_autofree char *fail = NULL;
          if (!backend->route (&g, hidden, T, wl, bl, ids, wts, &fail))
            {
              trace_writer_abort (w);
              return usage_error (error, "%s", fail);
            }
        }
      if (!trace_writer_layer (w, ids, a->no_weights ? NULL : wts, error))
        {
          trace_writer_abort (w);
          return FALSE;
        }
      if (tty)
        {
          double el = (g_get_monotonic_time () - t0) / 1e6;
          g_printerr ("\r  layer %d/%d  %.0f tokens/s  ETA %.0f s   ", l + 1, a->layers,
                      (double) T * (l + 1) / el, el / (l + 1) * (a->layers - l - 1));
        }
    }
  if (tty)
    g_printerr ("\n");
  double el = (g_get_monotonic_time () - t0) / 1e6;
  if (!trace_writer_finish (w, error))
    return FALSE;
  g_print ("wrote %s: %s gate, %d layers x %" G_GUINT64_FORMAT " tokens in %.2f s: %.0f tokens/s, "
           "%.1f GFLOP/s in the logits GEMM (%s)\n",
           a->out, g.name, a->layers, T, el, (double) T * a->layers / el,
           2.0 * (double) T * g.experts * g.hidden * a->layers / el / 1e9, backend->name);
  return TRUE;
}

int
cmd_gate (int argc, char **argv)
{
  GateArgs a = { 0 };
  a.layers = 1;
  a.tokens = 4096;
  a.seed = 1;
  a.topics = (gint) gate_synth_default.topics;
  a.doc_tokens = (gint) gate_synth_default.doc_tokens;
  a.zipf = gate_synth_default.zipf;
  a.strength = gate_synth_default.strength;
  GOptionEntry entries[] = {
    { "preset", 0, 0, G_OPTION_ARG_STRING, &a.preset, "Gate preset", "NAME" },
    { "hidden", 0, 0, G_OPTION_ARG_FILENAME, &a.hidden, "Hidden states [tokens, hidden]", "X.npy" },
    { "weights", 0, 0, G_OPTION_ARG_FILENAME, &a.weights, "Gate weights", "W.npy" },
    { "bias", 0, 0, G_OPTION_ARG_FILENAME, &a.bias, "Selection bias", "B.npy" },
    { "layers", 0, 0, G_OPTION_ARG_INT, &a.layers, "MoE layers (default 1)", "N" },
    { "tokens", 0, 0, G_OPTION_ARG_INT, &a.tokens, "Synthetic tokens (default 4096)", "T" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &a.seed, "Seed of synthetic inputs (default 1)", "S" },
    { "topics", 0, 0, G_OPTION_ARG_INT, &a.topics, "Synthetic topic clusters (default 16)", "N" },
    { "zipf", 0, 0, G_OPTION_ARG_DOUBLE, &a.zipf, "Topic popularity exponent (default 1)", "Z" },
    { "strength", 0, 0, G_OPTION_ARG_DOUBLE, &a.strength, "Topic centre weight (default 0.3)", "S" },
    { "doc-tokens", 0, 0, G_OPTION_ARG_INT, &a.doc_tokens, "Tokens per document (default 64)", "N" },
    { "node-limit", 0, 0, G_OPTION_ARG_INT, &a.node_limit, "At most M nodes per token", "M" },
    { "experts-per-node", 0, 0, G_OPTION_ARG_INT, &a.experts_per_node, "Experts per node for --node-limit", "N" },
    { "experts", 0, 0, G_OPTION_ARG_INT, &a.experts, "Override the preset's routed experts", "E" },
    { "top-k", 0, 0, G_OPTION_ARG_INT, &a.top_k, "Override the preset's top-k", "K" },
    { "hidden-size", 0, 0, G_OPTION_ARG_INT, &a.hidden_size, "Override the preset's hidden size", "H" },
    { "n-group", 0, 0, G_OPTION_ARG_INT, &a.n_group, "Override the preset's expert groups", "N" },
    { "topk-group", 0, 0, G_OPTION_ARG_INT, &a.topk_group, "Override the groups a token may use", "N" },
    { "scoring", 0, 0, G_OPTION_ARG_STRING, &a.scoring, "Override the scoring: softmax or sigmoid", "S" },
    { "tensor", 0, 0, G_OPTION_ARG_STRING, &a.tensor,
      "Gate weight tensor in a .safetensors --weights ({layer} = layer number; default model.layers.{layer}.mlp.gate.weight)", "NAME" },
    { "bias-tensor", 0, 0, G_OPTION_ARG_STRING, &a.bias_tensor,
      "Selection bias tensor in it, e.g. model.layers.{layer}.mlp.gate.e_score_correction_bias", "NAME" },
    { "layer-offset", 0, 0, G_OPTION_ARG_INT, &a.layer_offset, "Trace layer l reads model layer l + N (DeepSeek-V3: 3)", "N" },
    { "no-weights", 0, 0, G_OPTION_ARG_NONE, &a.no_weights, "Write expert ids only (smaller traces)", NULL },
    { "backend", 0, 0, G_OPTION_ARG_STRING, &a.backend, "auto (default), cpu or cuda", "B" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &a.threads, "CPU threads (default: all cores)", "N" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &a.out, "Trace to write", "OUT" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, usage);
  g_autoptr (GError) error = NULL;
  int rc = 0;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      g_printerr ("moesim: error: %s\n\n%s", error->message, usage);
      rc = EXIT_BAD_INPUT;
    }
  else if (argc != 1 || a.preset == NULL || a.out == NULL)
    {
      g_printerr ("moesim: error: %s\n\n%s",
                  argc != 1 ? "unexpected argument" : a.preset == NULL ? "missing --preset" : "missing -o OUT",
                  usage);
      rc = EXIT_BAD_INPUT;
    }
  else if (!run_gate (&a, &error))
    rc = cmd_fail (g_steal_pointer (&error));
  g_free (a.preset);
  g_free (a.hidden);
  g_free (a.weights);
  g_free (a.bias);
  g_free (a.out);
  g_free (a.backend);
  g_free (a.scoring);
  g_free (a.tensor);
  g_free (a.bias_tensor);
  return rc;
}
