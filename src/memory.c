#include "memory.h"

#include "yamltree.h"

#include <string.h>

const char *const memory_part_names[] = { "routed_experts", "shared_experts", "dense_layers", "router",
                                          "buffers", "activations", NULL };

void
memory_report_free (MemoryReport *m)
{
  if (m == NULL)
    return;
  g_free (m->gpu_total);
  g_free (m);
}

MemoryReport *
memory_account (const Scenario *sc, const RunResult *r)
{
  const ScenarioSpec *s = scenario_spec (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  double H = (double) s->model.hidden, I = (double) s->model.moe_intermediate;
  double Id = (double) s->model.dense_intermediate, es = dtype_bytes ((Dtype) s->model.expert_dtype);
  double L = (double) s->model.moe_layers, ffn = 3.0 * H * I * es;
  guint ep = r->n_gpus, slots = r->experts / ep;
  double tokens_mb = (double) (s->parallel.tokens_per_gpu / s->parallel.microbatches);
  double row_in = scenario_token_bytes (s, (Dtype) s->model.dispatch_dtype);
  gboolean train = s->pass == PASS_TRAIN_STEP;

  MemoryReport *m = g_new0 (MemoryReport, 1);
  m->capacity = t->gpu.hbm_gb * 1e9;
  m->n_gpus = ep;
  m->gpu_total = g_new0 (double, ep);
  double fixed[MEM_N] = { 0 };
  fixed[MEM_ROUTED] = L * slots * ffn;
  fixed[MEM_SHARED] = L * (double) s->model.shared_experts * ffn;
  fixed[MEM_DENSE] = (double) s->model.dense_layers * 3.0 * H * Id * es;
  fixed[MEM_ROUTER] = L * H * (double) s->model.experts * 2.0;
  double dense_act = train ? (double) s->model.dense_layers * (double) s->parallel.tokens_per_gpu * (H + 2.0 * Id) * 2.0
                           : 0.0;
  for (guint g = 0; g < ep; g++)
    {
      double part[MEM_N];
      memcpy (part, fixed, sizeof part);
      part[MEM_ACTIVATIONS] = dense_act;
      for (guint st = 0; st < r->n_layers; st++)
        {
          const GpuStepResult *gs = &r->gpu_steps[(gsize) st * ep + g];
          part[MEM_BUFFERS] = MAX (part[MEM_BUFFERS], gs->bytes_in + gs->bytes_out);
          if (!train || r->layers[st].backward)
            continue;
          double rows = 0;
          for (guint e = g * slots; e < (g + 1) * slots; e++)
            rows += r->expert_rows[(gsize) st * r->experts + e];
          part[MEM_ACTIVATIONS] += rows * (row_in + 2.0 * I * 2.0) + tokens_mb * H * 2.0
                                   + (double) s->model.shared_experts * tokens_mb * 2.0 * I * 2.0;
        }
      double total = 0;
      for (guint p = 0; p < MEM_N; p++)
        total += part[p];
      m->gpu_total[g] = total;
      if (g == 0 || total > m->gpu_total[m->worst])
        {
          m->worst = g;
          memcpy (m->worst_part, part, sizeof part);
        }
    }
  return m;
}

gboolean
memory_check (const Scenario *sc, const RunResult *r, char **warning, GError **error)
{
  *warning = NULL;
  g_autoptr (MemoryReport) m = memory_account (sc, r);
  double need = m->gpu_total[m->worst];
  if (need <= m->capacity)
    return TRUE;
  GString *parts = g_string_new (NULL);
  for (guint p = 0; p < MEM_N; p++)
    if (m->worst_part[p] > 0)
      g_string_append_printf (parts, "%s%s %.3g GB", parts->len ? ", " : "", memory_part_names[p],
                              m->worst_part[p] / 1e9);
  g_autofree char *what = g_string_free (parts, FALSE);
  if (scenario_spec (sc)->sim.allow_oversubscribe)
    {
      *warning = g_strdup_printf ("GPU %u needs %.3g GB of its %.3g GB of HBM (%.3g GB over: %s); "
                                  "going on as sim.allow_oversubscribe says",
                                  m->worst, need / 1e9, m->capacity / 1e9, (need - m->capacity) / 1e9, what);
      return TRUE;
    }
  g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
               "%s: GPU %u needs %.3g GB of its %.3g GB of HBM (gpu.hbm_gb), %.3g GB over: %s; use fewer "
               "layers, more GPUs or a smaller dtype, or --allow-oversubscribe to run anyway",
               scenario_path (sc), m->worst, need / 1e9, m->capacity / 1e9, (need - m->capacity) / 1e9, what);
  return FALSE;
}
