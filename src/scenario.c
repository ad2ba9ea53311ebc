/* Scenario schema and the cross-field checks between scenario and topology. */
#include "scenario.h"

#include "gate.h"

#include <glib/gstdio.h>
#include <unistd.h>

#include <string.h>

const char *const dispatch_names[] = { "direct", "hierarchical", "low_latency", NULL };
const char *const pass_names[] = { "forward", "backward", "train_step", "prefill", "decode", NULL };
const char *const overlap_names[] = { "none", "shared_expert", "two_microbatch", NULL };
static const char *const synth_names[] = { "uniform", NULL };

struct Scenario {
  ScenarioSpec spec;
  CfgDoc doc;
  Topology *topo;
  Trace *trace;
  Trace *eplb_trace;
  gboolean from_gate;
  GPtrArray *notes;
  double reuse;
  char *path;
};

gboolean
index_set_has (const IndexSet *set, guint i)
{
  if (set->n == 0)
    return TRUE;
  for (guint r = 0; r < set->n; r++)
    if (i >= set->lo[r] && i <= set->hi[r])
      return TRUE;
  return FALSE;
}

static int
cmp_range (gconstpointer a, gconstpointer b)
{
  const guint *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* "all", or comma-separated indices and inclusive ranges "a-b". */
static gboolean
parse_index_set (const CfgField *f, const YNode *n, void *member, const char *where, GError **error)
{
  IndexSet *set = member;
  if (n->kind != YNODE_SCALAR)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s: %s: expected \"all\" or indices and ranges like \"0-3,57\", got %s", where, f->key,
                   ynode_kind_name (n->kind));
      return FALSE;
    }
  if (n->value[0] == '\0')
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s: %s is empty: expected \"all\" or indices and ranges like \"0-3,57\"", where, f->key);
      return FALSE;
    }
  GArray *r = g_array_new (FALSE, FALSE, 2 * sizeof (guint));
  if (strcmp (n->value, "all") != 0)
    {
      g_auto (GStrv) parts = g_strsplit (n->value, ",", -1);
      for (char **p = parts; *p; p++)
        {
          char *t = g_strstrip (*p), *end;
          guint64 a = g_ascii_strtoull (t, &end, 10), b = a;
          gboolean ok = end != t && g_ascii_isdigit (*t);
          if (ok && *end == '-')
            {
              char *t2 = end + 1;
              b = g_ascii_strtoull (t2, &end, 10);
              ok = end != t2 && g_ascii_isdigit (*t2);
            }
          if (!ok || *end || a > b || b >= G_MAXUINT)
            {
              g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                           "%s: %s = \"%s\": expected \"all\" or indices and ranges like \"0-3,57\" (bad part \"%s\")",
                           where, f->key, n->value, t);
              g_array_free (r, TRUE);
              return FALSE;
            }
          guint v[2] = { (guint) a, (guint) b };
          g_array_append_val (r, v);
        }
      g_array_sort (r, cmp_range);
    }
  g_free (set->lo);
  g_free (set->hi);
  set->n = r->len;
  set->lo = g_new (guint, r->len);
  set->hi = g_new (guint, r->len);
  for (guint i = 0; i < r->len; i++)
    {
      set->lo[i] = ((guint *) (void *) r->data)[2 * i];
      set->hi[i] = ((guint *) (void *) r->data)[2 * i + 1];
    }
  g_array_free (r, TRUE);
  return TRUE;
}

static void
free_index_set (void *member)
{
  IndexSet *set = member;
  g_free (set->lo);
  g_free (set->hi);
  set->lo = set->hi = NULL;
  set->n = 0;
}

#define F(k, T, m, lo, hi, d, h) { k, T, G_STRUCT_OFFSET (ScenarioSpec, m), lo, hi, NULL, d, h, NULL, NULL }
#define E(k, m, names, d, h) { k, CFG_ENUM, G_STRUCT_OFFSET (ScenarioSpec, m), 0, 0, names, d, h, NULL, NULL }
static const CfgField scenario_fields[] = {
  F ("name", CFG_STRING, name, 0, 0, NULL, "scenario name (names the default output folder)"),
  F ("topology", CFG_STRING, topology, 0, 0, NULL, "topology file, relative to this file"),
  F ("model.hidden", CFG_INT, model.hidden, 1, 1 << 20, NULL, "hidden size"),
  F ("model.moe_intermediate", CFG_INT, model.moe_intermediate, 1, 1 << 20, NULL,
     "routed expert FFN intermediate size"),
  F ("model.experts", CFG_INT, model.experts, 1, 65535, NULL, "routed experts per MoE layer"),
  F ("model.top_k", CFG_INT, model.top_k, 1, 64, NULL, "experts per token"),
  F ("model.n_group", CFG_INT, model.n_group, 1, 65535, "1", "expert groups for group-limited routing"),
  F ("model.topk_group", CFG_INT, model.topk_group, 1, 64, "1", "groups a token may use"),
  F ("model.shared_experts", CFG_INT, model.shared_experts, 0, 64, "0",
     "shared experts (run on each GPU's own tokens)"),
  F ("model.moe_layers", CFG_INT, model.moe_layers, 1, 100000, NULL, "MoE layers in the pass"),
  F ("model.dense_layers", CFG_INT, model.dense_layers, 0, 100000, "0",
     "dense FFN layers before the MoE layers (DeepSeek-V3: the first 3), compute only"),
  F ("model.dense_intermediate", CFG_INT, model.dense_intermediate, 0, 1 << 22, "0",
     "dense FFN intermediate size (DeepSeek-V3: 18432)"),
  E ("model.dispatch_dtype", model.dispatch_dtype, dtype_names, "fp8", "dispatch payload dtype"),
  E ("model.combine_dtype", model.combine_dtype, dtype_names, "bf16", "combine payload dtype"),
  E ("model.expert_dtype", model.expert_dtype, dtype_names, "fp8", "expert GEMM dtype"),
  E ("model.grad_dtype", model.grad_dtype, dtype_names, "bf16", "dtype of the backward pass's transfers"),
  F ("parallel.ep", CFG_INT, parallel.ep, 1, 1 << 20, NULL, "expert-parallel GPUs"),
  F ("parallel.tokens_per_gpu", CFG_INT, parallel.tokens_per_gpu, 1, 1 << 24, NULL,
     "tokens each GPU holds per layer"),
  F ("parallel.microbatches", CFG_INT, parallel.microbatches, 1, 1024, "1",
     "micro-batches per layer, run one after the other"),
  E ("dispatch", dispatch, dispatch_names, "direct", "dispatch / combine algorithm"),
  F ("dispatch_chunks", CFG_INT, dispatch_chunks, 1, 64, "4",
     "hierarchical: chunks the IB and NVLink stages pipeline in"),
  E ("pass", pass, pass_names, "forward",
     "forward, backward, train_step (forward then backward), prefill or decode (inference forward passes)"),
  E ("overlap", overlap, overlap_names, "none",
     "none; shared_expert (the shared expert runs during dispatch); two_microbatch (micro-batches "
     "in flight together: one's communication overlaps another's compute)"),
  F ("comm_sms", CFG_INT, comm_sms, 0, 4096, "0",
     "SMs the dispatch / combine kernels hold (caps each GPU's sends and receives at comm_sms x "
     "gpu.comm_gbps_per_sm; compute running alongside loses them); 0 = not modelled"),
  F ("low_latency.receive_hook", CFG_BOOL, low_latency.receive_hook, 0, 0, "false",
     "low_latency: transfers in flight hold no SMs (DeepEP's receive hook)"),
  F ("low_latency.nvlink", CFG_BOOL, low_latency.nvlink, 0, 0, "true",
     "low_latency: send to GPUs of the own node over NVLink (false: pure RDMA through the NICs)"),
  E ("placement", placement, placement_names, "contiguous",
     "expert placement: contiguous (expert e on GPU e / (experts / ep)), round_robin (on GPU e mod ep), "
     "eplb (DeepSeek's load balancer, per layer, with eplb.redundant replicas)"),
  F ("eplb.redundant", CFG_INT, eplb.redundant, 0, 1 << 20, "0",
     "eplb: redundant expert slots (experts + redundant must be divisible by parallel.ep)"),
  E ("eplb.policy", eplb.policy, eplb_policy_names, "auto",
     "eplb: hierarchical (groups onto nodes first), global, or auto (hierarchical when model.n_group "
     "divides among the nodes)"),
  F ("eplb.load", CFG_STRING, eplb.load, 0, 0, "\"\"",
     "eplb: balance for the loads of this trace (relative to the scenario); empty = the routing itself"),
  F ("block.time_us", CFG_DOUBLE, block.time_us, 0, 1e9, "0",
     "attention / dense block before each MoE layer, per step and GPU, us"),
  F ("block.flops_per_token", CFG_DOUBLE, block.flops_per_token, 0, 1e15, "0",
     "or its cost per token: FLOPs (at the GPU's dense BF16 peak) ..."),
  F ("block.bytes_per_token", CFG_DOUBLE, block.bytes_per_token, 0, 1e15, "0",
     "... and HBM bytes (the slower of the two counts)"),
  E ("routing.synthetic.kind", routing.synthetic.kind, synth_names, "uniform",
     "synthetic routing model"),
  F ("routing.synthetic.seed", CFG_INT, routing.synthetic.seed, 0, (double) G_MAXUINT32, "1",
     "seed of the synthetic routing"),
  F ("routing.trace", CFG_STRING, routing.trace, 0, 0, "\"\"",
     "replay this routing trace (relative to the scenario) instead of synthetic routing"),
  F ("routing.gate.preset", CFG_STRING, routing.gate.preset, 0, 0, "\"\"",
     "run this gate preset in process on synthetic hidden states (deepseek-v3, mixtral, qwen-moe)"),
  F ("routing.gate.tokens", CFG_INT, routing.gate.tokens, 1, 1 << 20, "1024",
     "tokens the in-process gate routes per layer (replayed like a trace)"),
  F ("routing.gate.seed", CFG_INT, routing.gate.seed, 0, (double) G_MAXUINT32, "1",
     "seed of the synthetic hidden states and gate weights"),
  F ("routing.gate.topics", CFG_INT, routing.gate.topics, 1, 65536, "16", "synthetic topic clusters"),
  F ("routing.gate.doc_tokens", CFG_INT, routing.gate.doc_tokens, 1, 1 << 20, "64",
     "tokens per synthetic document"),
  F ("routing.gate.zipf", CFG_DOUBLE, routing.gate.zipf, 0, 10, "1", "topic popularity exponent"),
  F ("routing.gate.strength", CFG_DOUBLE, routing.gate.strength, 0, 100, "0.3",
     "topic centre weight against per-token noise"),
  E ("cross_rail", cross_rail, cross_rail_names, "auto",
     "traffic between rails: spine, nvlink (forward inside the node first), auto"),
  F ("output.dir", CFG_STRING, output.dir, 0, 0, "\"\"", "output folder (default out/<name>)"),
  { "output.trace_layers", CFG_CUSTOM, G_STRUCT_OFFSET (ScenarioSpec, output.trace_layers), 0, 0, NULL, "all",
    "MoE layers trace.json keeps: all, or indices and ranges like \"0-3,57\"", parse_index_set, free_index_set },
  { "output.trace_gpus", CFG_CUSTOM, G_STRUCT_OFFSET (ScenarioSpec, output.trace_gpus), 0, 0, NULL, "all",
    "GPUs trace.json keeps: all, or indices and ranges like \"0-7\"", parse_index_set, free_index_set },
  F ("output.report_layer", CFG_INT, output.report_layer, -1, 100000, "-1",
     "MoE layer report.html shows in its single-layer Gantt (micro-batch 0); -1 = the slowest step"),
  F ("sim.tolerance", CFG_DOUBLE, sim.tolerance, 0, 0.5, "0.02",
     "flow solver batching tolerance (0 = exact max-min event by event)"),
  F ("sim.max_memory_gb", CFG_DOUBLE, sim.max_memory_gb, 0.001, 1e6, "16",
     "refuse scenarios whose simulation needs more host memory than this"),
  F ("sim.allow_oversubscribe", CFG_BOOL, sim.allow_oversubscribe, 0, 0, "false",
     "run (with a warning) when a GPU needs more memory than its HBM (--allow-oversubscribe)"),
  F ("sim.counterfactual", CFG_BOOL, sim.counterfactual, 0, 0, "true",
     "also simulate each layer with its selections spread evenly, to price the imbalance"),
  F ("sim.bundle_flows", CFG_BOOL, sim.bundle_flows, 0, 0, "true",
     "solve the flows of direct and low_latency dispatch that share their NIC hops as one "
     "(same rates; false: each on its own)"),
};
#undef F
#undef E

void
scenario_describe_schema (GString *out)
{
  cfg_describe (scenario_fields, G_N_ELEMENTS (scenario_fields), out);
}

void
scenario_free (Scenario *s)
{
  if (s == NULL)
    return;
  cfg_clear (&s->doc);
  topology_free (s->topo);
  trace_free (s->trace);
  trace_free (s->eplb_trace);
  if (s->notes)
    g_ptr_array_unref (s->notes);
  g_free (s->path);
  g_free (s);
}

double
scenario_token_bytes (const ScenarioSpec *s, Dtype dtype)
{
  double h = (double) s->model.hidden;
  if (dtype == DTYPE_FP8)
    return h + ceil (h / 128.0) * 4.0;
  return 2.0 * h;
}

guint
moe_pass_steps (const ScenarioSpec *s)
{
  guint passes = s->pass == PASS_TRAIN_STEP ? 2 : 1;
  return passes * (guint) s->model.moe_layers * (guint) s->parallel.microbatches;
}

/* Flows per step: direct and low_latency one per GPU pair each way;
 * hierarchical per chunk one IB copy per (GPU, other node) and one NVLink
 * forward per (rail peer, GPU of its node), plus the own node's pairs. */
static double
flows_per_step (const ScenarioSpec *s, gint64 gpus_per_node)
{
  double ep = (double) s->parallel.ep, gpn = (double) MIN (gpus_per_node, s->parallel.ep);
  if (s->dispatch != DISPATCH_HIERARCHICAL)
    return 2.0 * ep * (ep - 1.0);
  double nodes = ep / gpn, K = (double) s->dispatch_chunks;
  return 2.0 * (ep * (nodes - 1.0) * K + ep * (gpn - 1.0) * K + ep * (gpn - 1.0));
}

double
scenario_sim_memory_bytes (const ScenarioSpec *s, gint64 gpus_per_node)
{
  /* Two steps of tasks are alive at once (the builder keeps one step
   * ahead; with two_microbatch, micro-batches + 1). Per step: its flows
   * (flows_per_step), each a task (~112 B), a solver flow slot and
   * its link-list entries (~240 B) and two dependency edges (24 B); the
   * routing window holds 2 x cores + 1 layers of 2 ep^2 pair counts, and a
   * train_step keeps every forward step's for its backward step; per step
   * and GPU 48 B of timing, per step ~1 KiB of results and summary text;
   * the balanced counterfactual runs a second engine; an in-process gate
   * holds its hidden states and weights. */
  double ep = (double) s->parallel.ep, M = (double) s->parallel.microbatches;
  double steps = (double) moe_pass_steps (s);
  double per_step = flows_per_step (s, gpus_per_node) * (112.0 + 240.0 + 24.0) + ep * 1024.0;
  double alive = s->overlap == OVERLAP_TWO_MICROBATCH ? M + 1.0 : 2.0;
  double layer = (2.0 * ep * ep + (double) s->model.experts) * 4.0;
  double window = (2.0 * g_get_num_processors () + 1.0) * layer;
  double stash = s->pass == PASS_TRAIN_STEP ? (double) s->model.moe_layers * M * layer : 0.0;
  double engines = s->sim.counterfactual ? 2.0 : 1.0;
  double gate = s->routing.gate.preset && s->routing.gate.preset[0]
                    ? ((double) s->routing.gate.tokens + (double) s->model.experts)
                          * (double) s->model.hidden * 4.0
                    : 0.0;
  return engines * (alive * per_step + steps * (ep * 48.0 + 1024.0)) + window + stash + gate + 16e6;
}

static gboolean
fail_at (GError **error, const char *where, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
fail_at (GError **error, const char *where, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE, "%s: %s", where, msg);
  return FALSE;
}

/* A note for the user (scenario_notes), before the array's NULL end. */
static void
add_note (Scenario *sc, char *note)
{
  g_ptr_array_insert (sc->notes, (gint) sc->notes->len - 1, note);
}

/* routing.gate at load: a preset the gate has, at a shape it takes. */
static gboolean
check_gate (Scenario *sc, GError **error)
{
  const ScenarioSpec *s = &sc->spec;
  const char *where = cfg_origin (&sc->doc, "routing.gate.preset");
  if (gate_preset (s->routing.gate.preset) == NULL)
    return fail_at (error, where, "routing.gate.preset: unknown preset '%s', expected one of: %s",
                    s->routing.gate.preset, gate_preset_names ());
  if (s->model.experts > 4096 || s->model.n_group > 1024)
    return fail_at (error, where, "the in-process gate takes at most 4096 experts in at most 1024 groups");
  return TRUE;
}

/* routing.gate: routes routing.gate.tokens synthetic tokens through the
 * preset's gate rules at the model's shape (experts, top-k, groups, hidden)
 * for every MoE layer, into a private temporary trace that is then replayed
 * exactly like a trace file. */
static gboolean
run_gate (Scenario *sc, GError **error)
{
  ScenarioSpec *s = &sc->spec;
  const char *where = cfg_origin (&sc->doc, "routing.gate.preset");
  GateConfig g = *gate_preset (s->routing.gate.preset);
  g.hidden = (guint) s->model.hidden;
  g.experts = (guint) s->model.experts;
  g.top_k = (guint) s->model.top_k;
  g.n_group = (guint) s->model.n_group;
  g.topk_group = (guint) s->model.topk_group;
  GateSynth syn = { (guint64) s->routing.gate.seed, (guint) s->routing.gate.topics, s->routing.gate.zipf,
                    s->routing.gate.strength, (guint) s->routing.gate.doc_tokens };
  guint64 T = (guint64) s->routing.gate.tokens;
  guint L = (guint) s->model.moe_layers;
  gint64 t0 = g_get_monotonic_time ();
  g_autofree float *hidden = g_new (float, T * g.hidden);
  g_autofree float *weight = g_new (float, (gsize) g.experts * g.hidden);
  g_autofree gint32 *ids = g_new (gint32, T * g.top_k);
  g_autofree float *wts = g_new (float, T * g.top_k);
  gate_synth_hidden (&syn, g.hidden, T, hidden, 0);
  g_autofree char *path = g_build_filename (g_get_tmp_dir (), "moesim-gate-XXXXXX.mrt", NULL);
  int fd = g_mkstemp (path);
  if (fd < 0)
    return fail_at (error, where, "cannot create a temporary trace in %s", g_get_tmp_dir ());
  close (fd);
  TraceShape shape = { g.experts, g.top_k, L, T, FALSE, FALSE };
  TraceWriter *w = trace_writer_new (path, &shape, error);
  if (w == NULL)
    {
      g_unlink (path);
      return FALSE;
    }
  trace_writer_meta (w, "producer", "moesim routing.gate");
  trace_writer_meta (w, "gate.preset", g.name);
  for (guint l = 0; l < L; l++)
    {
      gate_synth_weight (&syn, l, g.experts, g.hidden, weight);
      gate_route (&g, hidden, T, weight, NULL, ids, wts, 0);
      if (!trace_writer_layer (w, ids, NULL, error))
        {
          trace_writer_abort (w);
          g_unlink (path);
          return FALSE;
        }
    }
  if (!trace_writer_finish (w, error))
    {
      g_unlink (path);
      return FALSE;
    }
  /* load_trace maps it; unlinking now leaves it readable until unmapped */
  g_free (s->routing.trace);
  s->routing.trace = g_strdup (path);
  sc->from_gate = TRUE;
  add_note (sc, g_strdup_printf (
      "routing: in-process %s gate, %" G_GUINT64_FORMAT " synthetic tokens x %u layers (seed %"
      G_GINT64_FORMAT ") in %.1f s", g.name, T, L, s->routing.gate.seed,
      (g_get_monotonic_time () - t0) / 1e6));
  return TRUE;
}

/* Opens and checks the trace, and decides how it covers the scenario: GPU g,
 * micro-batch m takes consecutive trace tokens from (floor(g T / ep) +
 * m B / mb) mod T, wrapping; MoE layer l replays trace layer l mod L. */
static gboolean
load_trace (Scenario *sc, GError **error)
{
  ScenarioSpec *s = &sc->spec;
  const char *where = cfg_origin (&sc->doc, "routing.trace");
  g_autofree char *dir = g_path_get_dirname (sc->path);
  g_autofree char *path = g_path_is_absolute (s->routing.trace)
                              ? g_strdup (s->routing.trace)
                              : g_build_filename (dir, s->routing.trace, NULL);
  g_autoptr (GError) terr = NULL;
  sc->trace = trace_open (path, &terr);
  if (sc->from_gate)
    g_unlink (path);
  if (sc->trace == NULL || !trace_check (sc->trace, &terr))
    return fail_at (error, where, "routing.trace: %s", terr->message);
  const TraceShape *t = trace_shape (sc->trace);
  if ((gint64) t->experts != s->model.experts)
    return fail_at (error, where, "the trace %s has %u experts, the scenario's model.experts is %"
                    G_GINT64_FORMAT, path, t->experts, s->model.experts);
  if ((gint64) t->top_k != s->model.top_k)
    return fail_at (error, where, "the trace %s has top-%u routing, the scenario's model.top_k is %"
                    G_GINT64_FORMAT, path, t->top_k, s->model.top_k);
  if (t->tokens == 0 || t->layers == 0)
    return fail_at (error, where, "the trace %s is empty", path);
  double need = (double) s->parallel.ep * (double) s->parallel.tokens_per_gpu;
  sc->reuse = need / (double) t->tokens;
  if (need > (double) t->tokens)
    add_note (sc, g_strdup_printf (
        "routing: the trace has %" G_GUINT64_FORMAT " tokens per layer, the scenario needs %.0f "
        "(ep %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT " tokens per GPU): each trace token is used "
        "%.2f times (GPU g starts at trace token g T / ep and wraps)",
        t->tokens, need, s->parallel.ep, s->parallel.tokens_per_gpu, sc->reuse));
  if (s->model.moe_layers > (gint64) t->layers)
    add_note (sc, g_strdup_printf (
        "routing: the trace has %u MoE layers, the scenario %" G_GINT64_FORMAT
        ": layer l replays trace layer l mod %u", t->layers, s->model.moe_layers, t->layers));
  return TRUE;
}

static gboolean
validate (Scenario *sc, GError **error)
{
  ScenarioSpec *s = &sc->spec;
  const TopoSpec *t = topology_spec (sc->topo);
  if (!topology_validate (sc->topo, error))
    return FALSE;
  struct {
    const IndexSet *set;
    const char *key;
    gint64 n;
    const char *what;
  } sets[] = { { &s->output.trace_layers, "output.trace_layers", s->model.moe_layers, "model.moe_layers" },
               { &s->output.trace_gpus, "output.trace_gpus", s->parallel.ep, "parallel.ep" } };
  for (guint i = 0; i < G_N_ELEMENTS (sets); i++)
    for (guint r = 0; r < sets[i].set->n; r++)
      if (sets[i].set->hi[r] >= (guint64) sets[i].n)
        return fail_at (error, cfg_origin (&sc->doc, sets[i].key),
                        "%s names index %u, but there are only %" G_GINT64_FORMAT " (%s; indices from 0)",
                        sets[i].key, sets[i].set->hi[r], sets[i].n, sets[i].what);
  if (s->model.dense_layers > 0 && s->model.dense_intermediate <= 0)
    return fail_at (error, cfg_origin (&sc->doc, "model.dense_layers"),
                    "model.dense_layers = %" G_GINT64_FORMAT " needs model.dense_intermediate (the dense FFN size)",
                    s->model.dense_layers);
  if (s->comm_sms >= t->gpu.sms)
    return fail_at (error, cfg_origin (&sc->doc, "comm_sms"),
                    "comm_sms = %" G_GINT64_FORMAT " leaves no SM for compute (gpu.sms = %" G_GINT64_FORMAT
                    " in %s)", s->comm_sms, t->gpu.sms, topology_path (sc->topo));
  if (s->comm_sms > 0 && t->gpu.comm_gbps_per_sm <= 0)
    return fail_at (error, cfg_origin (&sc->doc, "comm_sms"),
                    "comm_sms = %" G_GINT64_FORMAT " needs gpu.comm_gbps_per_sm (what one SM drives) in %s",
                    s->comm_sms, topology_path (sc->topo));
  if (s->overlap == OVERLAP_TWO_MICROBATCH && s->parallel.microbatches < 2)
    return fail_at (error, cfg_origin (&sc->doc, "overlap"),
                    "overlap: two_microbatch needs parallel.microbatches >= 2 (it is %" G_GINT64_FORMAT ")",
                    s->parallel.microbatches);
  if (s->output.report_layer >= s->model.moe_layers)
    return fail_at (error, cfg_origin (&sc->doc, "output.report_layer"),
                    "output.report_layer = %" G_GINT64_FORMAT ", but there are only %" G_GINT64_FORMAT
                    " MoE layers (model.moe_layers; layers from 0, -1 = the slowest)",
                    s->output.report_layer, s->model.moe_layers);
  if (s->placement == PLACEMENT_EPLB && s->eplb.policy == EPLB_HIERARCHICAL
      && (s->model.n_group < 2 || s->model.n_group % (s->parallel.ep / t->node.gpus) != 0))
    return fail_at (error, cfg_origin (&sc->doc, "eplb.policy"),
                    "eplb.policy = hierarchical packs the expert groups onto nodes: model.n_group = %"
                    G_GINT64_FORMAT " must be a multiple of the %" G_GINT64_FORMAT
                    " nodes (parallel.ep / node.gpus); use global or auto",
                    s->model.n_group, s->parallel.ep / t->node.gpus);
  if (s->eplb.redundant > 0 && s->placement != PLACEMENT_EPLB)
    return fail_at (error, cfg_origin (&sc->doc, "eplb.redundant"),
                    "eplb.redundant = %" G_GINT64_FORMAT " needs placement: eplb (it is %s)",
                    s->eplb.redundant, placement_names[s->placement]);
  if ((s->model.experts + s->eplb.redundant) % s->parallel.ep != 0)
    return fail_at (error, cfg_origin (&sc->doc, "parallel.ep"),
                    "model.experts = %" G_GINT64_FORMAT " + eplb.redundant = %" G_GINT64_FORMAT
                    " is not divisible by parallel.ep = %" G_GINT64_FORMAT
                    " (each GPU must host the same number of expert slots)",
                    s->model.experts, s->eplb.redundant, s->parallel.ep);
  if (s->parallel.ep % t->node.gpus != 0)
    return fail_at (error, cfg_origin (&sc->doc, "parallel.ep"),
                    "parallel.ep = %" G_GINT64_FORMAT
                    " is not a multiple of node.gpus = %" G_GINT64_FORMAT " in %s",
                    s->parallel.ep, t->node.gpus, topology_path (sc->topo));
  if (s->model.experts % s->model.n_group != 0)
    return fail_at (error, cfg_origin (&sc->doc, "model.n_group"),
                    "model.n_group = %" G_GINT64_FORMAT " does not divide model.experts = %"
                    G_GINT64_FORMAT, s->model.n_group, s->model.experts);
  if (s->model.topk_group > s->model.n_group)
    return fail_at (error, cfg_origin (&sc->doc, "model.topk_group"),
                    "model.topk_group = %" G_GINT64_FORMAT " exceeds model.n_group = %"
                    G_GINT64_FORMAT, s->model.topk_group, s->model.n_group);
  gint64 reachable = s->model.topk_group * (s->model.experts / s->model.n_group);
  if (s->model.top_k > reachable)
    return fail_at (error, cfg_origin (&sc->doc, "model.top_k"),
                    "model.top_k = %" G_GINT64_FORMAT " exceeds the %" G_GINT64_FORMAT
                    " experts in topk_group groups", s->model.top_k, reachable);
  if (s->parallel.tokens_per_gpu % s->parallel.microbatches != 0)
    return fail_at (error, cfg_origin (&sc->doc, "parallel.microbatches"),
                    "parallel.microbatches = %" G_GINT64_FORMAT
                    " does not divide parallel.tokens_per_gpu = %" G_GINT64_FORMAT,
                    s->parallel.microbatches, s->parallel.tokens_per_gpu);
  if (s->cross_rail == CROSS_RAIL_SPINE && t->fabric.kind == FABRIC_MULTI_PLANE && t->nic.per_node > 1)
    return fail_at (error, cfg_origin (&sc->doc, "cross_rail"),
                    "cross_rail = spine is impossible on the multi_plane fabric of %s (its planes "
                    "share no switch); use nvlink or auto", topology_path (sc->topo));
  double need = scenario_sim_memory_bytes (s, t->node.gpus);
  if (need > s->sim.max_memory_gb * 1e9)
    return fail_at (error, cfg_origin (&sc->doc, "parallel.ep"),
                    "this scenario needs about %.1f GB of host memory to simulate (ep = %"
                    G_GINT64_FORMAT ": %.3g flows per step, %" G_GINT64_FORMAT " steps), more "
                    "than sim.max_memory_gb = %g; lower parallel.ep, model.moe_layers or "
                    "parallel.microbatches, or raise sim.max_memory_gb",
                    need / 1e9, s->parallel.ep, flows_per_step (s, t->node.gpus),
                    (gint64) moe_pass_steps (s), s->sim.max_memory_gb);
  /* the clock is int64 picoseconds (106 days): refuse scenarios whose
   * slowest link or GPU would take longer than ~11 days */
  double token = MAX (scenario_token_bytes (s, (Dtype) s->model.dispatch_dtype),
                      scenario_token_bytes (s, (Dtype) s->model.combine_dtype));
  double slowest = MIN (t->nvlink.gbps * t->nvlink.efficiency,
                        t->nic.gbps * t->nic.efficiency / (double) (t->node.gpus / t->nic.per_node)) * 1e9;
  double steps = (double) s->model.moe_layers * (double) s->parallel.microbatches;
  double comm = 2.0 * steps * (double) s->parallel.ep * (double) s->parallel.tokens_per_gpu
                * (double) s->model.top_k * token / slowest;
  double min_tflops = topology_gemm_tflops (t, (Dtype) s->model.expert_dtype, 1.0);
  double comp = steps * 6.0 * (double) s->parallel.ep * (double) s->parallel.tokens_per_gpu
                * (double) s->model.top_k * (double) s->model.hidden * (double) s->model.moe_intermediate
                / (min_tflops * 1e12);
  if (comm + comp > 1e6)
    return fail_at (error, cfg_origin (&sc->doc, "parallel.tokens_per_gpu"),
                    "the pass could take up to %.3g s of simulated time (links of %.3g B/s, GEMMs "
                    "down to %.3g TFLOPS), beyond the 1e6 s moesim's clock allows; check the "
                    "topology's bandwidths and GEMM table", comm + comp, slowest, min_tflops);
  if (s->routing.trace[0] && s->routing.gate.preset[0])
    return fail_at (error, cfg_origin (&sc->doc, "routing.gate.preset"),
                    "routing.trace and routing.gate are alternatives: set one");
  /* the gate itself runs when the routing is needed (scenario_make_routing) */
  if (s->routing.gate.preset[0] && !check_gate (sc, error))
    return FALSE;
  if (s->routing.trace[0] && !load_trace (sc, error))
    return FALSE;
  if (s->eplb.load[0])
    {
      const char *where = cfg_origin (&sc->doc, "eplb.load");
      if (s->placement != PLACEMENT_EPLB)
        return fail_at (error, where, "eplb.load needs placement: eplb (it is %s)", placement_names[s->placement]);
      g_autofree char *dir = g_path_get_dirname (sc->path);
      g_autofree char *path = g_path_is_absolute (s->eplb.load) ? g_strdup (s->eplb.load)
                                                                : g_build_filename (dir, s->eplb.load, NULL);
      g_autoptr (GError) terr = NULL;
      sc->eplb_trace = trace_open (path, &terr);
      if (sc->eplb_trace == NULL || !trace_check (sc->eplb_trace, &terr))
        return fail_at (error, where, "eplb.load: %s", terr->message);
      if ((gint64) trace_shape (sc->eplb_trace)->experts != s->model.experts)
        return fail_at (error, where, "eplb.load: the trace %s has %u experts, the scenario's model.experts is %"
                        G_GINT64_FORMAT, path, trace_shape (sc->eplb_trace)->experts, s->model.experts);
    }
  return TRUE;
}

const Trace *
scenario_eplb_trace (const Scenario *s)
{
  return s->eplb_trace;
}

Scenario *
scenario_load (const char *path, const char *const *sets, GError **error)
{
  g_autoptr (YNode) root = ynode_parse_file (path, error);
  if (root == NULL)
    return NULL;
  g_autoptr (Scenario) sc = g_new0 (Scenario, 1);
  sc->path = g_strdup (path);
  sc->notes = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (sc->notes, NULL); /* kept last: scenario_notes hands out the array */
  cfg_init (&sc->doc, scenario_fields, G_N_ELEMENTS (scenario_fields), &sc->spec, sc->path);
  if (!cfg_apply_tree (&sc->doc, root, NULL, error))
    return NULL;

  /* split overrides: scenario keys now, topology keys once it is loaded */
  g_autoptr (GPtrArray) topo_sets = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; sets && sets[i]; i++)
    {
      const char *eq = strchr (sets[i], '=');
      if (eq == NULL || eq == sets[i])
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                       "--set %s: expected KEY=VALUE, e.g. --set parallel.ep=256", sets[i]);
          return NULL;
        }
      g_autofree char *key = g_strndup (sets[i], (gsize) (eq - sets[i]));
      if (cfg_find (&sc->doc, key) != NULL)
        {
          if (!cfg_set (&sc->doc, key, eq + 1, error))
            return NULL;
        }
      else
        g_ptr_array_add (topo_sets, g_strdup (sets[i]));
    }
  if (!cfg_check_required (&sc->doc, error))
    return NULL;

  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *tpath = g_path_is_absolute (sc->spec.topology)
                               ? g_strdup (sc->spec.topology)
                               : g_build_filename (dir, sc->spec.topology, NULL);
  g_autoptr (GError) terr = NULL;
  sc->topo = topology_parse (tpath, &terr); /* validated after the overrides */
  if (sc->topo == NULL)
    {
      if (g_error_matches (terr, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_IO))
        g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_IO,
                     "%s: topology '%s': %s", cfg_origin (&sc->doc, "topology"),
                     sc->spec.topology, terr->message);
      else
        g_propagate_error (error, g_steal_pointer (&terr));
      return NULL;
    }
  for (guint i = 0; i < topo_sets->len; i++)
    {
      const char *kv = g_ptr_array_index (topo_sets, i);
      const char *eq = strchr (kv, '=');
      g_autofree char *key = g_strndup (kv, (gsize) (eq - kv));
      if (!topology_owns_key (sc->topo, key))
        {
          /* unknown to both schemas: report it with the scenario's keys,
           * then where the topology's are */
          g_autoptr (GError) serr = NULL;
          cfg_set (&sc->doc, key, eq + 1, &serr);
          g_assert (serr != NULL);
          g_set_error (error, serr->domain, serr->code,
                       "%s (and the topology's keys are under gpu, node, nvlink, nic, fabric)",
                       serr->message);
          return NULL;
        }
      if (!topology_set (sc->topo, key, eq + 1, error))
        return NULL;
    }
  if (!validate (sc, error))
    return NULL;
  return g_steal_pointer (&sc);
}

const ScenarioSpec *
scenario_spec (const Scenario *s)
{
  return &s->spec;
}

const Topology *
scenario_topology (const Scenario *s)
{
  return s->topo;
}

gboolean
scenario_make_routing (Scenario *sc, GError **error)
{
  return scenario_routing_made (sc) || (run_gate (sc, error) && load_trace (sc, error));
}

gboolean
scenario_routing_made (const Scenario *s)
{
  return s->spec.routing.gate.preset[0] == '\0' || s->trace != NULL;
}

const Trace *
scenario_trace (const Scenario *s)
{
  return s->trace;
}

const char *const *
scenario_notes (const Scenario *s)
{
  return (const char *const *) s->notes->pdata;
}

gboolean
scenario_trace_from_gate (const Scenario *s)
{
  return s->from_gate;
}

double
scenario_trace_reuse (const Scenario *s)
{
  return s->trace ? s->reuse : 0.0;
}

const char *
scenario_path (const Scenario *s)
{
  return s->path;
}

char *
scenario_output_dir (const Scenario *s)
{
  if (s->spec.output.dir && s->spec.output.dir[0])
    return g_strdup (s->spec.output.dir);
  return g_build_filename ("out", s->spec.name, NULL);
}
