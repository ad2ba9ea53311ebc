#include "report.h"

#include "fmt.h"
#include "json.h"
#include "memory.h"
#include "moesim-config.h"

#include <errno.h>
#include <string.h>
#include <glib/gstdio.h>

static const char *const phase_names[] = { "dispatch", "expert", "combine" };

static const PhaseStat *
phase_of (const LayerResult *l, guint i)
{
  return i == 0 ? &l->dispatch : i == 1 ? &l->expert : &l->combine;
}

double
report_expert_time_mom (const LayerResult *l)
{
  return l->expert.mean_us > 0 ? l->expert.max_us / l->expert.mean_us : 0.0;
}

double
report_fanout_mean (const RunResult *r, guint step)
{
  const guint32 *f = r->fanout + (gsize) step * (r->nodes + 1);
  double tokens = 0, spans = 0;
  for (guint n = 1; n <= r->nodes; n++)
    {
      tokens += f[n];
      spans += (double) n * f[n];
    }
  return tokens > 0 ? spans / tokens : 0.0;
}

void
report_imbalance (const RunResult *r, ImbalanceSummary *o)
{
  memset (o, 0, sizeof *o);
  guint n = r->n_layers;
  o->fanout = g_new0 (guint64, r->nodes + 1);
  double tokens = 0, spans = 0;
  for (guint i = 0; i < n; i++)
    {
      const LayerResult *l = &r->layers[i];
      o->expert_mom += l->expert_load.max_over_mean / n;
      o->expert_cv += l->expert_load.cv / n;
      o->expert_gini += l->expert_load.gini / n;
      o->expert_mom_worst = MAX (o->expert_mom_worst, l->expert_load.max_over_mean);
      o->gpu_tokens_mom += l->gpu_tokens.max_over_mean / n;
      o->gpu_tokens_mom_worst = MAX (o->gpu_tokens_mom_worst, l->gpu_tokens.max_over_mean);
      double et = report_expert_time_mom (l);
      o->expert_time_mom += et / n;
      o->expert_time_mom_worst = MAX (o->expert_time_mom_worst, et);
      for (guint k = 0; k <= r->nodes; k++)
        {
          guint32 c = r->fanout[(gsize) i * (r->nodes + 1) + k];
          o->fanout[k] += c;
          if (k > 0)
            tokens += c, spans += (double) k * c;
        }
      double layer_us = l->end_us - l->start_us;
      double cost = layer_us - l->balanced_us;
      if (r->counterfactual && (i == 0 || cost > o->worst_cost_us))
        {
          o->worst_cost_step = i;
          o->worst_cost_us = cost;
          o->worst_cost_share = layer_us > 0 ? cost / layer_us : 0.0;
        }
    }
  o->fanout_mean = tokens > 0 ? spans / tokens : 0.0;
  o->counterfactual = r->counterfactual;
  if (r->counterfactual)
    {
      o->balanced_us = r->balanced_total_us;
      o->cost_us = r->total_us - r->balanced_total_us;
      o->cost_share = r->total_us > 0 ? o->cost_us / r->total_us : 0.0;
    }
}

void
report_breakdown (const RunResult *r, Breakdown *b)
{
  memset (b, 0, sizeof *b);
  for (gsize i = 0; i < (gsize) r->n_layers * r->n_gpus; i++)
    {
      const GpuStepResult *gs = &r->gpu_steps[i];
      b->moe_gemm_us += gs->gemm_us / r->n_gpus;
      b->moe_other_us += gs->other_us / r->n_gpus;
      b->moe_comm_us += (gs->dispatch_us + gs->combine_us) / r->n_gpus;
    }
  double moe = b->moe_gemm_us + b->moe_other_us + b->moe_comm_us;
  b->moe_gemm_share = moe > 0 ? b->moe_gemm_us / moe : 0.0;
  b->dense_gemm_us = r->dense_gemm_us;
  b->dense_other_us = r->dense_other_us;
  double dense = b->dense_gemm_us + b->dense_other_us;
  b->dense_gemm_share = dense > 0 ? b->dense_gemm_us / dense : 0.0;
}

static void
json_load_stats (JsonWriter *w, const char *key, const LoadStats *st)
{
  json_begin_object (w, key);
  json_double (w, "max", st->max);
  json_double (w, "mean", st->mean);
  json_double (w, "max_over_mean", st->max_over_mean);
  json_double (w, "cv", st->cv);
  json_double (w, "gini", st->gini);
  json_end_object (w);
}

char *
report_summary_json (const Scenario *sc, const RunResult *r)
{
  const ScenarioSpec *s = scenario_spec (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  GString *out = g_string_new (NULL);
  JsonWriter w;
  json_init (&w, out);
  json_begin_object (&w, NULL);
  json_string (&w, "schema", MOESIM_SUMMARY_SCHEMA);
  json_string (&w, "moesim_version", MOESIM_VERSION);
  json_begin_object (&w, "scenario");
  json_string (&w, "name", s->name);
  json_string (&w, "file", scenario_path (sc));
  json_string (&w, "topology", topology_path (scenario_topology (sc)));
  json_string (&w, "topology_name", t->name);
  json_int (&w, "ep", s->parallel.ep);
  json_int (&w, "nodes", s->parallel.ep / t->node.gpus);
  json_int (&w, "tokens_per_gpu", s->parallel.tokens_per_gpu);
  json_int (&w, "microbatches", s->parallel.microbatches);
  json_int (&w, "moe_layers", s->model.moe_layers);
  json_int (&w, "experts", s->model.experts);
  json_int (&w, "top_k", s->model.top_k);
  json_string (&w, "pass", pass_names[s->pass]);
  json_string (&w, "overlap", overlap_names[s->overlap]);
  json_int (&w, "comm_sms", s->comm_sms);
  json_string (&w, "dispatch", dispatch_names[s->dispatch]);
  if (s->dispatch == DISPATCH_HIERARCHICAL)
    json_int (&w, "dispatch_chunks", s->dispatch_chunks);
  json_string (&w, "dispatch_dtype", dtype_names[s->model.dispatch_dtype]);
  json_string (&w, "combine_dtype", dtype_names[s->model.combine_dtype]);
  json_begin_object (&w, "routing");
  if (scenario_trace_from_gate (sc))
    {
      json_string (&w, "source", "gate");
      json_string (&w, "preset", s->routing.gate.preset);
      json_int (&w, "tokens", s->routing.gate.tokens);
      json_int (&w, "seed", s->routing.gate.seed);
      json_double (&w, "token_reuse", scenario_trace_reuse (sc));
    }
  else if (scenario_trace (sc))
    {
      json_string (&w, "source", "trace");
      json_string (&w, "file", trace_path (scenario_trace (sc)));
      json_double (&w, "token_reuse", scenario_trace_reuse (sc));
    }
  else
    {
      json_string (&w, "source", "synthetic");
      json_string (&w, "kind", "uniform");
      json_int (&w, "seed", s->routing.synthetic.seed);
    }
  json_end_object (&w);
  json_double (&w, "solver_tolerance", s->sim.tolerance);
  json_end_object (&w);

  json_double (&w, "total_time_us", r->total_us);
  json_begin_object (&w, "phases");
  for (guint p = 0; p < 3; p++)
    {
      double mx = 0, mean = 0;
      for (guint i = 0; i < r->n_layers; i++)
        {
          mx += phase_of (&r->layers[i], p)->max_us;
          mean += phase_of (&r->layers[i], p)->mean_us;
        }
      json_begin_object (&w, phase_names[p]);
      json_double (&w, "time_us", mx);
      json_double (&w, "mean_us", mean);
      if (p != 1 && mx > 0)
        {
          double lb = 0;
          for (guint i = 0; i < r->n_layers; i++)
            lb += p == 0 ? r->layers[i].logical_dispatch_bytes : r->layers[i].logical_combine_bytes;
          json_double (&w, "logical_gbps", lb / (r->n_gpus * mx) / 1e3);
        }
      json_end_object (&w);
    }
  json_end_object (&w);
  json_begin_object (&w, "bytes");
  for (guint c = 0; c < LCLASS_N; c++)
    json_double (&w, link_class_names[c], r->class_bytes[c]);
  json_end_object (&w);
  json_begin_object (&w, "bottleneck");
  json_string (&w, "link", r->bottleneck_link);
  json_string (&w, "class", link_class_names[r->bottleneck_class]);
  json_double (&w, "busy_us", r->bottleneck_busy_us);
  json_double (&w, "utilisation", r->bottleneck_util);
  json_end_object (&w);
  json_begin_object (&w, "link_utilisation");
  for (guint c = 0; c < LCLASS_N; c++)
    json_double (&w, link_class_names[c], r->class_util[c]);
  json_end_object (&w);
  json_double (&w, "comm_window_us", r->comm_window_us);
  {
    g_autoptr (MemoryReport) mem = memory_account (sc, r);
    json_begin_object (&w, "memory");
    json_double (&w, "capacity_gb", mem->capacity / 1e9);
    json_int (&w, "worst_gpu", mem->worst);
    json_double (&w, "worst_gpu_gb", mem->gpu_total[mem->worst] / 1e9);
    json_bool (&w, "fits", mem->gpu_total[mem->worst] <= mem->capacity);
    json_begin_object (&w, "worst_gpu_parts_gb");
    for (guint p = 0; p < MEM_N; p++)
      json_double (&w, memory_part_names[p], mem->worst_part[p] / 1e9);
    json_end_object (&w);
    json_begin_array (&w, "gpu_gb");
    for (guint g = 0; g < mem->n_gpus; g++)
      json_double (&w, NULL, mem->gpu_total[g] / 1e9);
    json_end_array (&w);
    json_end_object (&w);
  }
  {
    Breakdown b;
    report_breakdown (r, &b);
    json_begin_object (&w, "breakdown");
    json_double (&w, "gemm_share", b.moe_gemm_share);
    json_begin_object (&w, "moe");
    json_double (&w, "gemm_us", b.moe_gemm_us);
    json_double (&w, "other_compute_us", b.moe_other_us);
    json_double (&w, "communication_us", b.moe_comm_us);
    json_double (&w, "gemm_share", b.moe_gemm_share);
    json_end_object (&w);
    json_begin_object (&w, "dense");
    json_int (&w, "layers", scenario_spec (sc)->model.dense_layers);
    json_double (&w, "gemm_us", b.dense_gemm_us);
    json_double (&w, "other_compute_us", b.dense_other_us);
    json_double (&w, "gemm_share", b.dense_gemm_share);
    json_end_object (&w);
    json_end_object (&w);
  }
  {
    ImbalanceSummary im;
    report_imbalance (r, &im);
    json_begin_object (&w, "imbalance");
    json_double (&w, "expert_load_max_over_mean", im.expert_mom);
    json_double (&w, "expert_load_max_over_mean_worst", im.expert_mom_worst);
    json_double (&w, "expert_load_cv", im.expert_cv);
    json_double (&w, "expert_load_gini", im.expert_gini);
    json_double (&w, "gpu_tokens_max_over_mean", im.gpu_tokens_mom);
    json_double (&w, "gpu_tokens_max_over_mean_worst", im.gpu_tokens_mom_worst);
    json_double (&w, "expert_time_max_over_mean", im.expert_time_mom);
    json_double (&w, "expert_time_max_over_mean_worst", im.expert_time_mom_worst);
    json_double (&w, "node_fanout_mean", im.fanout_mean);
    json_begin_array (&w, "node_fanout");
    for (guint k = 0; k <= r->nodes; k++)
      json_int (&w, NULL, (gint64) im.fanout[k]);
    json_end_array (&w);
    json_begin_object (&w, "counterfactual");
    json_bool (&w, "ran", im.counterfactual);
    if (im.counterfactual)
      {
        json_double (&w, "balanced_time_us", im.balanced_us);
        json_double (&w, "cost_us", im.cost_us);
        json_double (&w, "cost_share", im.cost_share);
        json_int (&w, "worst_step", im.worst_cost_step);
        json_double (&w, "worst_step_cost_us", im.worst_cost_us);
      }
    json_end_object (&w);
    json_end_object (&w);
    g_free (im.fanout);
  }

  json_begin_array (&w, "layers");
  for (guint i = 0; i < r->n_layers; i++)
    {
      const LayerResult *l = &r->layers[i];
      json_begin_object (&w, NULL);
      json_int (&w, "layer", l->layer);
      json_int (&w, "microbatch", l->microbatch);
      json_string (&w, "pass", moe_step_pass (r, i));
      json_double (&w, "start_us", l->start_us);
      json_double (&w, "end_us", l->end_us);
      json_double (&w, "time_us", l->end_us - l->start_us);
      json_begin_object (&w, "phases");
      json_begin_object (&w, "prep");
      json_double (&w, "time_us", l->prep.max_us);
      json_double (&w, "mean_us", l->prep.mean_us);
      json_end_object (&w);
      for (guint p = 0; p < 3; p++)
        {
          json_begin_object (&w, phase_names[p]);
          json_double (&w, "time_us", phase_of (l, p)->max_us);
          json_double (&w, "mean_us", phase_of (l, p)->mean_us);
          if (p != 1)
            json_double (&w, "logical_gbps", p == 0 ? l->dispatch_logical_gbps : l->combine_logical_gbps);
          json_end_object (&w);
        }
      json_end_object (&w);
      json_begin_object (&w, "bytes");
      for (guint c = 0; c < LCLASS_N; c++)
        json_double (&w, link_class_names[c], l->bytes[c]);
      json_double (&w, "dispatch_payload", l->dispatch_bytes);
      json_double (&w, "combine_payload", l->combine_bytes);
      json_end_object (&w);
      json_int (&w, "flows", l->flows);
      {
        double gemm = 0, other = 0;
        for (guint g = 0; g < r->n_gpus; g++)
          {
            gemm += r->gpu_steps[(gsize) i * r->n_gpus + g].gemm_us / r->n_gpus;
            other += r->gpu_steps[(gsize) i * r->n_gpus + g].other_us / r->n_gpus;
          }
        json_begin_object (&w, "breakdown");
        json_double (&w, "gemm_us", gemm);
        json_double (&w, "other_compute_us", other);
        json_double (&w, "communication_us", l->dispatch.mean_us + l->combine.mean_us);
        json_end_object (&w);
      }
      json_double (&w, "expert_load_max_over_mean", l->expert_load.max_over_mean);
      json_begin_object (&w, "imbalance");
      json_load_stats (&w, "expert_load", &l->expert_load);
      json_load_stats (&w, "gpu_tokens", &l->gpu_tokens);
      json_double (&w, "expert_time_max_over_mean", report_expert_time_mom (l));
      json_double (&w, "node_fanout_mean", report_fanout_mean (r, i));
      json_begin_array (&w, "node_fanout");
      for (guint k = 0; k <= r->nodes; k++)
        json_int (&w, NULL, r->fanout[(gsize) i * (r->nodes + 1) + k]);
      json_end_array (&w);
      if (r->counterfactual)
        {
          json_double (&w, "balanced_time_us", l->balanced_us);
          json_double (&w, "cost_us", l->end_us - l->start_us - l->balanced_us);
        }
      json_end_object (&w);
      json_end_object (&w);
    }
  json_end_array (&w);

  json_begin_array (&w, "gpus");
  for (guint g = 0; g < r->n_gpus; g++)
    {
      const GpuResult *gr = &r->gpus[g];
      json_begin_object (&w, NULL);
      json_int (&w, "gpu", gr->gpu);
      json_int (&w, "node", gr->node);
      json_int (&w, "tokens_in", (gint64) gr->tokens_in);
      json_double (&w, "bytes_out", gr->bytes_out);
      json_double (&w, "bytes_in", gr->bytes_in);
      json_end_object (&w);
    }
  json_end_array (&w);
  json_begin_object (&w, "engine");
  json_int (&w, "events", (gint64) r->events);
  json_int (&w, "flows", (gint64) r->flows);
  json_int (&w, "solves", (gint64) r->solves);
  json_end_object (&w);
  json_end_object (&w);
  return g_string_free (out, FALSE);
}

static void
human_bytes (GString *out, double b)
{
  if (b >= 1e9)
    g_string_append_printf (out, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    g_string_append_printf (out, "%.1f MB", b / 1e6);
  else
    g_string_append_printf (out, "%.1f kB", b / 1e3);
}

char *
report_cost_caveat (double tolerance)
{
  if (tolerance <= 0.001)
    return NULL;
  return g_strdup_printf ("a difference of two simulated passes: at sim.tolerance %g it can be off by tens of "
                          "percent; set sim.tolerance=0.001 to study it",
                          tolerance);
}

void
report_summary_text (const Scenario *sc, const RunResult *r, GString *out)
{
  const ScenarioSpec *s = scenario_spec (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  g_string_append_printf (out,
                          "moesim %s: %s\n  topology %s (%s), EP%" G_GINT64_FORMAT
                          " on %" G_GINT64_FORMAT " nodes, %" G_GINT64_FORMAT
                          " tokens/GPU, %" G_GINT64_FORMAT " MoE layers, dispatch %s (%s / %s)\n\n",
                          MOESIM_VERSION, s->name, t->name, topology_path (scenario_topology (sc)),
                          s->parallel.ep, s->parallel.ep / t->node.gpus, s->parallel.tokens_per_gpu,
                          s->model.moe_layers,
                          dispatch_names[s->dispatch],
                          dtype_names[s->model.dispatch_dtype], dtype_names[s->model.combine_dtype]);
  g_string_append (out, "  layer  mb   dispatch max/mean us   expert max/mean us   combine max/mean us   layer us\n");
  double tot[3][2] = { { 0 } };
  for (guint i = 0; i < r->n_layers; i++)
    {
      const LayerResult *l = &r->layers[i];
      g_string_append_printf (out, "  %5u %3u   %9.1f / %9.1f  %9.1f / %8.1f  %9.1f / %8.1f  %9.1f\n",
                              l->layer, l->microbatch, l->dispatch.max_us, l->dispatch.mean_us,
                              l->expert.max_us, l->expert.mean_us, l->combine.max_us,
                              l->combine.mean_us, l->end_us - l->start_us);
      for (guint p = 0; p < 3; p++)
        {
          tot[p][0] += phase_of (l, p)->max_us;
          tot[p][1] += phase_of (l, p)->mean_us;
        }
    }
  g_string_append_printf (out, "  total       %9.1f / %9.1f  %9.1f / %8.1f  %9.1f / %8.1f\n\n",
                          tot[0][0], tot[0][1], tot[1][0], tot[1][1], tot[2][0], tot[2][1]);
  g_string_append_printf (out, "  %s pass: %.1f us (%.3f ms)\n", pass_names[s->pass], r->total_us, r->total_us / 1e3);
  {
    double ld = 0, lc = 0;
    for (guint i = 0; i < r->n_layers; i++)
      {
        ld += r->layers[i].logical_dispatch_bytes;
        lc += r->layers[i].logical_combine_bytes;
      }
    if (tot[0][0] > 0 && tot[2][0] > 0)
      g_string_append_printf (out, "  logical bandwidth (as DeepEP counts it): dispatch %.1f GB/s, "
                                   "combine %.1f GB/s per GPU\n",
                              ld / (r->n_gpus * tot[0][0]) / 1e3, lc / (r->n_gpus * tot[2][0]) / 1e3);
  }
  g_string_append (out, "  wire bytes:");
  for (guint c = 0; c < LCLASS_N; c++)
    {
      g_string_append_printf (out, " %s ", link_class_names[c]);
      human_bytes (out, r->class_bytes[c]);
      if (c + 1 < LCLASS_N)
        g_string_append_c (out, ',');
    }
  g_string_append_printf (out,
                          "\n  bottleneck: %s link %s, busy %.1f us = %.0f %% of the "
                          "dispatch+combine time (%.1f us)\n",
                          link_class_names[r->bottleneck_class], r->bottleneck_link,
                          r->bottleneck_busy_us, 100.0 * r->bottleneck_util, r->comm_window_us);
  g_string_append (out, "  busiest link utilisation by class:");
  for (guint c = 0; c < LCLASS_N; c++)
    g_string_append_printf (out, " %s %.0f %%%s", link_class_names[c], 100.0 * r->class_util[c],
                            c + 1 < LCLASS_N ? "," : "\n");
  g_autoptr (MemoryReport) mem = memory_account (sc, r);
  g_string_append_printf (out, "  memory: GPU %u needs %.1f of %.1f GB of HBM%s (", mem->worst,
                          mem->gpu_total[mem->worst] / 1e9, mem->capacity / 1e9,
                          mem->gpu_total[mem->worst] > mem->capacity ? ", OVER" : "");
  for (guint p = 0, first = 1; p < MEM_N; p++)
    if (mem->worst_part[p] > 0)
      {
        g_string_append_printf (out, "%s%s %.1f", first ? "" : ", ", memory_part_names[p], mem->worst_part[p] / 1e9);
        first = 0;
      }
  g_string_append (out, ")\n");
  Breakdown b;
  report_breakdown (r, &b);
  g_string_append_printf (out, "  GPU time in MoE layers (mean GPU): GEMM %.1f ms = %.0f %%, other compute %.1f ms, "
                               "communication %.1f ms",
                          b.moe_gemm_us / 1e3, 100.0 * b.moe_gemm_share, b.moe_other_us / 1e3, b.moe_comm_us / 1e3);
  if (b.dense_gemm_us > 0)
    g_string_append_printf (out, "; dense layers: GEMM %.0f %% of %.1f ms", 100.0 * b.dense_gemm_share,
                            (b.dense_gemm_us + b.dense_other_us) / 1e3);
  g_string_append_c (out, '\n');
  ImbalanceSummary im;
  report_imbalance (r, &im);
  g_string_append_printf (out,
                          "  imbalance, mean over layers (worst layer): expert load max/mean %.3f (%.3f), "
                          "CV %.3f, Gini %.3f;\n    tokens received per GPU max/mean %.3f (%.3f); "
                          "expert phase max/mean over GPUs %.3f (%.3f)\n",
                          im.expert_mom, im.expert_mom_worst, im.expert_cv, im.expert_gini,
                          im.gpu_tokens_mom, im.gpu_tokens_mom_worst, im.expert_time_mom,
                          im.expert_time_mom_worst);
  double routed = 0;
  for (guint k = 1; k <= r->nodes; k++)
    routed += (double) im.fanout[k];
  g_string_append_printf (out, "  nodes per token: mean %.2f;", im.fanout_mean);
  for (guint k = 1; k <= r->nodes && routed > 0; k++)
    if (im.fanout[k] > 0)
      g_string_append_printf (out, " %u: %.1f %%", k, 100.0 * (double) im.fanout[k] / routed);
  g_string_append_c (out, '\n');
  if (im.counterfactual)
    {
      const LayerResult *w = &r->layers[im.worst_cost_step];
      g_string_append_printf (out,
                              "  what imbalance costs: %.1f us of %.1f us (%.1f %%) against the same "
                              "selections spread evenly (%.1f us);\n    most in layer %u mb %u: "
                              "%.1f us (%.1f %%)\n",
                              im.cost_us, r->total_us, 100.0 * im.cost_share, im.balanced_us, w->layer,
                              w->microbatch, im.worst_cost_us, 100.0 * im.worst_cost_share);
      if (im.cost_us < 0)
        g_string_append (out, "    (the pass is faster than balanced: GPUs that drift apart overlap one "
                              "layer's combine with the next one's dispatch)\n");
      g_autofree char *caveat = report_cost_caveat (s->sim.tolerance);
      if (caveat)
        g_string_append_printf (out, "    (%s)\n", caveat);
    }
  g_free (im.fanout);
}

typedef struct {
  const Scenario *sc;
  const RunResult *r;
  const char *path;
  gboolean ok;
  GError *error;
} TraceJob;

/* trace.json, made whole and written (to a temporary file renamed over path) */
static gpointer
trace_job (gpointer data)
{
  TraceJob *job = data;
  g_autofree char *out = report_trace_json (job->sc, job->r);
  job->ok = g_file_set_contents (job->path, out, -1, &job->error);
  return NULL;
}

gboolean
report_write (const Scenario *sc, const RunResult *r, const char *dir, TraceStream *ts, GError **error)
{
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e),
                   "cannot create output folder %s: %s", dir, g_strerror (e));
      return FALSE;
    }
  /* trace.json, the largest, is finished (from the stream that wrote its
   * steps while the pass ran) or made whole and written on a second thread
   * meanwhile (both only read the results); g_file_set_contents writes a
   * temporary file and renames it over path */
  g_autofree char *tpath = ts ? NULL : g_build_filename (dir, "trace.json", NULL);
  TraceJob job = { sc, r, tpath, FALSE, NULL };
  GThread *th = NULL;
  if (ts)
    report_trace_stream_end (ts, r);
  else
    th = g_thread_new ("trace.json", trace_job, &job);
  g_autofree char *json = report_summary_json (sc, r);
  g_autofree char *path = g_build_filename (dir, "summary.json", NULL);
  g_autofree char *layers = report_layers_csv (r);
  g_autofree char *lpath = g_build_filename (dir, "layers.csv", NULL);
  g_autofree char *gpus = report_gpus_csv (r);
  g_autofree char *gpath = g_build_filename (dir, "gpus.csv", NULL);
  g_autofree char *html = report_html (sc, r);
  g_autofree char *hpath = g_build_filename (dir, "report.html", NULL);
  gboolean ok = g_file_set_contents (path, json, -1, error) && g_file_set_contents (lpath, layers, -1, error)
                && g_file_set_contents (gpath, gpus, -1, error) && g_file_set_contents (hpath, html, -1, error);
  if (ts)
    /* kept only when the rest was written */
    return report_trace_stream_finish (ts, ok, ok ? error : NULL) && ok;
  g_thread_join (th);
  if (ok && !job.ok)
    {
      g_propagate_error (error, job.error);
      return FALSE;
    }
  g_clear_error (&job.error);
  return ok;
}

static void
csv_num (GString *out, double v)
{
  char buf[FMT_FIXED_BUF];
  g_string_append (out, fmt_fixed (buf, v, 6));
}

/* One row of layers.csv. */
static void
csv_phase_row (GString *out, const RunResult *r, guint step, const char *phase, const PhaseStat *ps,
               double payload, const double *class_bytes)
{
  const LayerResult *l = &r->layers[step];
  g_string_append_printf (out, "%u,%u,%s,%s,", l->layer, l->microbatch, moe_step_pass (r, step), phase);
  const double v[] = { ps->max_us, ps->mean_us, l->start_us, l->end_us };
  for (guint k = 0; k < G_N_ELEMENTS (v); k++)
    {
      csv_num (out, v[k]);
      g_string_append_c (out, ',');
    }
  g_string_append_printf (out, "%.0f", payload);
  for (guint c = 0; c < LCLASS_N; c++)
    g_string_append_printf (out, ",%.0f", class_bytes ? class_bytes[c] : 0.0);
  g_string_append_c (out, '\n');
}

char *
report_layers_csv (const RunResult *r)
{
  GString *out = g_string_new ("layer,microbatch,pass,phase,time_us,mean_us,start_us,end_us,"
                               "payload_bytes,nvlink_bytes,ib_bytes,fabric_bytes\n");
  for (guint i = 0; i < r->n_layers; i++)
    {
      const LayerResult *l = &r->layers[i];
      csv_phase_row (out, r, i, "prep", &l->prep, 0.0, NULL);
      /* bytes belong to the communication phases */
      csv_phase_row (out, r, i, "dispatch", &l->dispatch, l->dispatch_bytes, l->phase_bytes[0]);
      csv_phase_row (out, r, i, "expert", &l->expert, 0.0, NULL);
      csv_phase_row (out, r, i, "combine", &l->combine, l->combine_bytes, l->phase_bytes[1]);
    }
  return g_string_free (out, FALSE);
}

char *
report_gpus_csv (const RunResult *r)
{
  GString *out = g_string_new ("gpu,node,layer,microbatch,tokens_in,bytes_out,bytes_in,"
                               "dispatch_us,expert_us,combine_us\n");
  for (guint i = 0; i < r->n_layers; i++)
    for (guint g = 0; g < r->n_gpus; g++)
      {
        const GpuStepResult *s = &r->gpu_steps[(gsize) i * r->n_gpus + g];
        char bo[FMT_FIXED_BUF], bi[FMT_FIXED_BUF];
        g_string_append_printf (out, "%u,%u,%u,%u,%" G_GUINT64_FORMAT ",%s,%s,", g,
                                r->gpus[g].node, r->layers[i].layer, r->layers[i].microbatch,
                                s->tokens_in, fmt_fixed (bo, s->bytes_out, 0), fmt_fixed (bi, s->bytes_in, 0));
        csv_num (out, s->dispatch_us);
        g_string_append_c (out, ',');
        csv_num (out, s->expert_us);
        g_string_append_c (out, ',');
        csv_num (out, s->combine_us);
        g_string_append_c (out, '\n');
      }
  return g_string_free (out, FALSE);
}

void
report_estimate_text (const Scenario *sc, const Estimate *e, GString *out)
{
  const ScenarioSpec *s = scenario_spec (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  double L = (double) s->model.moe_layers;
  g_string_append_printf (out,
                          "moesim estimate: %s (closed form, uniform routing, no simulation)\n"
                          "  EP%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                          " experts (%" G_GINT64_FORMAT " per GPU), top-%" G_GINT64_FORMAT
                          ", %" G_GINT64_FORMAT " tokens/GPU, hidden %" G_GINT64_FORMAT
                          ", %" G_GINT64_FORMAT " MoE layers, %" G_GINT64_FORMAT " GPUs/node\n\n",
                          s->name, s->parallel.ep, s->model.experts,
                          s->model.experts / s->parallel.ep, s->model.top_k,
                          s->parallel.tokens_per_gpu, s->model.hidden, s->model.moe_layers,
                          t->node.gpus);
  g_string_append_printf (out, "  distinct GPUs per token:            %.4f\n",
                          e->distinct_gpus_per_token);
  g_string_append_printf (out, "  token copies sent per GPU:          %.0f (%.0f over NVLink, %.0f over IB)\n",
                          e->copies_per_gpu, e->copies_nvlink, e->copies_ib);
  g_string_append_printf (out, "  dispatch (%s, %.0f B/token):   %.1f MB out and in per GPU per all-to-all\n",
                          dtype_names[s->model.dispatch_dtype],
                          scenario_token_bytes (s, (Dtype) s->model.dispatch_dtype),
                          e->dispatch_bytes_per_gpu / 1e6);
  g_string_append_printf (out, "  combine  (%s, %.0f B/token):  %.1f MB out and in per GPU per all-to-all\n",
                          dtype_names[s->model.combine_dtype],
                          scenario_token_bytes (s, (Dtype) s->model.combine_dtype),
                          e->combine_bytes_per_gpu / 1e6);
  g_string_append_printf (out, "  per forward pass (%.0f layers x 2):  %.2f GB per GPU\n", L,
                          e->forward_bytes_per_gpu / 1e9);
  g_string_append_printf (out, "  per backward pass (%s gradients):  %.2f GB per GPU\n",
                          dtype_names[s->model.grad_dtype], e->backward_bytes_per_gpu / 1e9);
  g_string_append_printf (out, "  lower bounds: dispatch %.1f us (%s), combine %.1f us (%s), "
                               "forward communication %.3f ms\n",
                          e->dispatch_bound_us, e->dispatch_bottleneck, e->combine_bound_us,
                          e->combine_bottleneck, e->forward_bound_us / 1e3);
  g_string_append_printf (out, "  expert compute at mean load: %.1f us per layer\n", e->expert_us);
}
