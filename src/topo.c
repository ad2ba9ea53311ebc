/* Topology schema and checks. The field table below is the one definition of
 * the file format; README's "Writing a topology" lists the same keys. */
#include "topo.h"

#include <math.h>
#include <string.h>

const char *const dtype_names[] = { "fp8", "bf16", NULL };

double
dtype_bytes (Dtype d)
{
  return d == DTYPE_FP8 ? 1.0 : 2.0;
}
static const char *const fabric_names[]
    = { "single_switch", "fat_tree", "rail_optimized", "multi_plane", NULL };

struct Topology {
  TopoSpec spec;
  CfgDoc doc;
  char *path;
};

static gboolean
parse_gemm (const CfgField *f, const YNode *n, void *member, const char *where, GError **error)
{
  GemmTable *t = member;
  if (n->kind != YNODE_SEQ || n->items->len == 0)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                   "%s: %s: expected a non-empty list of [rows, tflops] pairs", where, f->key);
      return FALSE;
    }
  GemmPoint *pts = g_new0 (GemmPoint, n->items->len);
  for (guint i = 0; i < n->items->len; i++)
    {
      const YNode *p = g_ptr_array_index (n->items, i);
      if (p->kind != YNODE_SEQ || p->items->len != 2)
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_TYPE,
                       "%s: %s[%u]: expected a pair [rows, tflops]", where, f->key, i);
          g_free (pts);
          return FALSE;
        }
      if (!cfg_scalar_double (g_ptr_array_index (p->items, 0), &pts[i].rows, where, f->key, error)
          || !cfg_scalar_double (g_ptr_array_index (p->items, 1), &pts[i].tflops, where, f->key,
                                 error))
        {
          g_free (pts);
          return FALSE;
        }
      if (pts[i].rows < 1 || pts[i].tflops <= 0 || (i > 0 && pts[i].rows <= pts[i - 1].rows))
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                       "%s: %s[%u] = [%g, %g]: rows must be >= 1 and increasing, tflops > 0",
                       where, f->key, i, pts[i].rows, pts[i].tflops);
          g_free (pts);
          return FALSE;
        }
    }
  g_free (t->points);
  t->points = pts;
  t->n = n->items->len;
  return TRUE;
}

static void
free_gemm (void *member)
{
  GemmTable *t = member;
  g_clear_pointer (&t->points, g_free);
  t->n = 0;
}

#define F(k, T, m, lo, hi, d, h) { k, T, G_STRUCT_OFFSET (TopoSpec, m), lo, hi, NULL, d, h, NULL, NULL }
#define E(k, m, names, d, h) { k, CFG_ENUM, G_STRUCT_OFFSET (TopoSpec, m), 0, 0, names, d, h, NULL, NULL }
static const CfgField topo_fields[] = {
  F ("name", CFG_STRING, name, 0, 0, NULL, "topology name"),
  F ("gpu.name", CFG_STRING, gpu.name, 0, 0, "GPU", "GPU model name"),
  F ("gpu.sms", CFG_INT, gpu.sms, 1, 4096, NULL, "streaming multiprocessors per GPU"),
  F ("gpu.peak_tflops.fp8", CFG_DOUBLE, gpu.peak_tflops[DTYPE_FP8], 1e-3, 1e6, NULL,
     "dense FP8 peak, TFLOPS"),
  F ("gpu.peak_tflops.bf16", CFG_DOUBLE, gpu.peak_tflops[DTYPE_BF16], 1e-3, 1e6, NULL,
     "dense BF16 peak, TFLOPS"),
  F ("gpu.hbm_gb", CFG_DOUBLE, gpu.hbm_gb, 1e-3, 1e6, NULL, "HBM capacity, GB"),
  F ("gpu.hbm_gbps", CFG_DOUBLE, gpu.hbm_gbps, 1e-3, 1e7, NULL, "achieved HBM bandwidth, GB/s"),
  F ("gpu.launch_us", CFG_DOUBLE, gpu.launch_us, 0, 1e6, "0", "kernel launch overhead, us"),
  F ("gpu.comm_gbps_per_sm", CFG_DOUBLE, gpu.comm_gbps_per_sm, 0, 1e5, "0",
     "GB/s one SM of a communication kernel drives (caps transfers at comm_sms x this); 0 = not given"),
  F ("gpu.gemm_tile_m", CFG_INT, gpu.gemm_tile_m, 1, 4096, "64",
     "grouped GEMM M tile: rows per expert are padded up to a multiple of it"),
  E ("gpu.gemm_dtype", gpu.gemm_dtype, dtype_names, "fp8", "dtype the GEMM table was measured in"),
  { "gpu.gemm", CFG_CUSTOM, G_STRUCT_OFFSET (TopoSpec, gpu.gemm), 0, 0, NULL, NULL,
    "achieved grouped-GEMM TFLOPS vs rows per expert: [[rows, tflops], ...]", parse_gemm,
    free_gemm },
  F ("node.gpus", CFG_INT, node.gpus, 1, 1024, NULL, "GPUs per node (NVLink domain)"),
  F ("nvlink.gbps", CFG_DOUBLE, nvlink.gbps, 1e-6, 1e6, NULL,
     "per-GPU NVLink bandwidth, GB/s per direction"),
  F ("nvlink.latency_us", CFG_DOUBLE, nvlink.latency_us, 0, 1e6, "0", "NVLink transfer latency, us"),
  F ("nvlink.efficiency", CFG_DOUBLE, nvlink.efficiency, 1e-3, 1, "1", "achieved / line rate"),
  F ("nic.per_node", CFG_INT, nic.per_node, 1, 1024, NULL, "NICs per node"),
  F ("nic.gbps", CFG_DOUBLE, nic.gbps, 1e-6, 1e6, NULL, "per-NIC bandwidth, GB/s per direction"),
  F ("nic.latency_us", CFG_DOUBLE, nic.latency_us, 0, 1e6, "0",
     "NIC-to-NIC latency through one switch, us"),
  F ("nic.efficiency", CFG_DOUBLE, nic.efficiency, 1e-3, 1, "1", "achieved / line rate"),
  E ("fabric.kind", fabric.kind, fabric_names, "single_switch", "scale-out fabric"),
  F ("fabric.leaf_radix", CFG_INT, fabric.leaf_radix, 2, 65536, "64", "ports per leaf switch"),
  F ("fabric.oversubscription", CFG_DOUBLE, fabric.oversubscription, 1, 64, "1",
     "leaf downlink : uplink bandwidth ratio (1 = non-blocking)"),
  F ("fabric.hop_latency_us", CFG_DOUBLE, fabric.hop_latency_us, 0, 1e6, "0",
     "latency added per extra switch hop (leaf -> spine -> leaf adds two)"),
};
#undef F
#undef E

void
topology_describe_schema (GString *out)
{
  cfg_describe (topo_fields, G_N_ELEMENTS (topo_fields), out);
}

void
topology_free (Topology *t)
{
  if (t == NULL)
    return;
  cfg_clear (&t->doc);
  g_free (t->path);
  g_free (t);
}

gboolean
topology_validate (Topology *t, GError **error)
{
  TopoSpec *s = &t->spec;
  if (!cfg_check_required (&t->doc, error))
    return FALSE;
  if (s->gpu.gemm.n == 0)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_MISSING,
                   "%s: missing required key 'gpu.gemm' (achieved grouped-GEMM TFLOPS vs rows)",
                   t->path);
      return FALSE;
    }
  if (s->node.gpus % s->nic.per_node != 0)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                   "%s: nic.per_node = %" G_GINT64_FORMAT
                   " must divide node.gpus = %" G_GINT64_FORMAT " (each NIC serves whole GPUs)",
                   cfg_origin (&t->doc, "nic.per_node"), s->nic.per_node, s->node.gpus);
      return FALSE;
    }
  for (guint i = 0; i < s->gpu.gemm.n; i++)
    {
      double peak = s->gpu.peak_tflops[s->gpu.gemm_dtype];
      if (s->gpu.gemm.points[i].tflops > peak)
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                       "%s: gpu.gemm[%u] = %g TFLOPS exceeds the %s peak gpu.peak_tflops.%s = %g",
                       cfg_origin (&t->doc, "gpu.gemm"), i, s->gpu.gemm.points[i].tflops,
                       dtype_names[s->gpu.gemm_dtype], dtype_names[s->gpu.gemm_dtype], peak);
          return FALSE;
        }
    }
  if (s->fabric.kind != FABRIC_SINGLE_SWITCH)
    {
      double o = s->fabric.oversubscription;
      gint64 down = (gint64) floor ((double) s->fabric.leaf_radix * o / (1.0 + o));
      if (down < 1 || down >= s->fabric.leaf_radix)
        {
          g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                       "%s: fabric.leaf_radix = %" G_GINT64_FORMAT
                       " with oversubscription %g leaves no room for both down- and uplinks",
                       cfg_origin (&t->doc, "fabric.leaf_radix"), s->fabric.leaf_radix, o);
          return FALSE;
        }
    }
  return TRUE;
}

Topology *
topology_parse (const char *path, GError **error)
{
  g_autoptr (YNode) root = ynode_parse_file (path, error);
  if (root == NULL)
    return NULL;
  g_autoptr (Topology) t = g_new0 (Topology, 1);
  t->path = g_strdup (path);
  cfg_init (&t->doc, topo_fields, G_N_ELEMENTS (topo_fields), &t->spec, t->path);
  if (!cfg_apply_tree (&t->doc, root, NULL, error))
    return NULL;
  return g_steal_pointer (&t);
}

Topology *
topology_load (const char *path, GError **error)
{
  g_autoptr (Topology) t = topology_parse (path, error);
  if (t == NULL || !topology_validate (t, error))
    return NULL;
  return g_steal_pointer (&t);
}

const TopoSpec *
topology_spec (const Topology *t)
{
  return &t->spec;
}

const char *
topology_path (const Topology *t)
{
  return t->path;
}

gboolean
topology_owns_key (const Topology *t, const char *key)
{
  const char *dot = strchr (key, '.');
  g_autofree char *head = dot ? g_strndup (key, (gsize) (dot - key)) : g_strdup (key);
  return strcmp (head, "name") != 0 && cfg_has_prefix (&t->doc, head);
}

gboolean
topology_set (Topology *t, const char *key, const char *value, GError **error)
{
  return cfg_set (&t->doc, key, value, error);
}

double
topology_gemm_tflops (const TopoSpec *s, Dtype dtype, double rows)
{
  const GemmTable *g = &s->gpu.gemm;
  double scale = s->gpu.peak_tflops[dtype] / s->gpu.peak_tflops[s->gpu.gemm_dtype];
  if (rows <= 0.0)
    return 0.0;
  const GemmPoint *p = g->points;
  if (rows <= p[0].rows)
    return scale * p[0].tflops * rows / p[0].rows;
  for (guint i = 1; i < g->n; i++)
    if (rows <= p[i].rows)
      {
        double u = log (rows / p[i - 1].rows) / log (p[i].rows / p[i - 1].rows);
        return scale * (p[i - 1].tflops + u * (p[i].tflops - p[i - 1].tflops));
      }
  return scale * p[g->n - 1].tflops;
}
