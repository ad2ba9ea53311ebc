#include "estimate.h"

#include "gpumodel.h"

#include <math.h>

static double
phase_bound (const ScenarioSpec *s, const TopoSpec *t, const Estimate *e, double token_bytes,
             const char **bottleneck)
{
  double ep = (double) s->parallel.ep, gpn = (double) t->node.gpus;
  double nodes = ep / gpn;
  double nics = (double) t->nic.per_node;
  double nvl = e->copies_nvlink * token_bytes;
  double ib = e->copies_ib * token_bytes;
  gboolean planes = t->fabric.kind == FABRIC_RAIL_OPTIMIZED || t->fabric.kind == FABRIC_MULTI_PLANE;
  gboolean fwd = planes && nics > 1
                 && (s->cross_rail == CROSS_RAIL_NVLINK
                     || (s->cross_rail == CROSS_RAIL_AUTO && t->fabric.kind == FABRIC_MULTI_PLANE));
  if (fwd) /* cross-rail copies first cross NVLink to the rail's GPU */
    nvl += ib * (nics - 1.0) / nics;
  double cap_nvl = t->nvlink.gbps * 1e9 * t->nvlink.efficiency;
  double cap_nic = t->nic.gbps * 1e9 * t->nic.efficiency;
  double gpus_per_nic = gpn / nics;
  double t_nvl = nvl / cap_nvl;
  double t_nic = ib * gpus_per_nic / cap_nic;
  double t_leaf = 0.0;
  double lat = nvl > 0 ? t->nvlink.latency_us : 0.0;
  if (ib > 0)
    lat = MAX (lat, (fwd ? t->nvlink.latency_us : 0.0) + t->nic.latency_us);
  if (t->fabric.kind != FABRIC_SINGLE_SWITCH && nodes > 1)
    {
      double o = t->fabric.oversubscription;
      double down = floor ((double) t->fabric.leaf_radix * o / (1.0 + o));
      double nodes_per_leaf = planes ? down : floor (down / nics);
      nodes_per_leaf = MAX (1.0, MIN (nodes_per_leaf, nodes));
      double off = (nodes - nodes_per_leaf) / (nodes - 1.0);
      double up = ((double) t->fabric.leaf_radix - down) * cap_nic;
      double nic_ports_per_leaf = planes ? nodes_per_leaf : nodes_per_leaf * nics;
      t_leaf = nic_ports_per_leaf * (ib * gpus_per_nic) * off / up;
      if (off > 0)
        lat += 2.0 * t->fabric.hop_latency_us;
    }
  double worst = MAX (t_nvl, MAX (t_nic, t_leaf));
  *bottleneck = worst == 0.0 ? "none" : worst == t_nvl ? "nvlink" : worst == t_nic ? "nic" : "fabric";
  return worst * 1e6 + lat;
}

void
estimate_compute (const ScenarioSpec *s, const TopoSpec *t, Estimate *out)
{
  double E = (double) s->model.experts, k = (double) s->model.top_k, ep = (double) s->parallel.ep;
  double m = E / ep, B = (double) s->parallel.tokens_per_gpu, gpn = (double) t->node.gpus;
  double miss = 1.0; /* C(E - m, k) / C(E, k) */
  for (double i = 0; i < k; i++)
    miss *= (E - m - i) > 0 ? (E - m - i) / (E - i) : 0.0;
  out->distinct_gpus_per_token = ep * (1.0 - miss);
  out->copies_per_gpu = ep > 1 ? B * out->distinct_gpus_per_token * (ep - 1.0) / ep : 0.0;
  out->copies_nvlink = ep > 1 ? out->copies_per_gpu * (gpn - 1.0) / (ep - 1.0) : 0.0;
  out->copies_ib = out->copies_per_gpu - out->copies_nvlink;
  double db = scenario_token_bytes (s, (Dtype) s->model.dispatch_dtype);
  double cb = scenario_token_bytes (s, (Dtype) s->model.combine_dtype);
  out->dispatch_bytes_per_gpu = out->copies_per_gpu * db;
  out->combine_bytes_per_gpu = out->copies_per_gpu * cb;
  double L = (double) s->model.moe_layers;
  out->forward_bytes_per_gpu = L * (out->dispatch_bytes_per_gpu + out->combine_bytes_per_gpu);
  /* backward: the same all-to-alls reversed, both in the gradient dtype */
  out->backward_bytes_per_gpu = L * 2.0 * out->copies_per_gpu * scenario_token_bytes (s, (Dtype) s->model.grad_dtype);
  out->dispatch_bound_us = phase_bound (s, t, out, db, &out->dispatch_bottleneck);
  out->combine_bound_us = phase_bound (s, t, out, cb, &out->combine_bottleneck);
  out->forward_bound_us = L * (out->dispatch_bound_us + out->combine_bound_us);

  /* expert compute at the mean load: every expert gets ep B k / E = B k / m rows */
  guint per_gpu = (guint) m;
  g_autofree guint32 *rows = g_new (guint32, per_gpu);
  double mean_rows = B * k / m; /* ep GPUs x B tokens x k selections / E experts */
  for (guint i = 0; i < per_gpu; i++)
    rows[i] = (guint32) llround (mean_rows);
  ComputeCost r = gpumodel_grouped_ffn (t, s, rows, per_gpu);
  ComputeCost sh = gpumodel_shared_ffn (t, s, (guint64) B);
  out->expert_us = (r.seconds + sh.seconds) * 1e6;
}
