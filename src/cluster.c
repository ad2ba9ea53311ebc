/* Link layout and routing. Everything is computed arithmetically from GPU
 * indices, so a path costs O(hops) and the cluster stores only capacities. */
#include "cluster.h"

#include <math.h>

const char *const cross_rail_names[] = { "auto", "spine", "nvlink", NULL };
const char *const link_class_names[] = { "nvlink", "ib", "fabric", NULL };

struct Cluster {
  TopoSpec spec; /* shallow copy: scalars only are used */
  guint n_gpus, n_nodes, gpn, nics_per_node, gpus_per_nic;
  gboolean planes;       /* rail-optimized or multi-plane */
  gboolean leaves;       /* has leaf switches */
  CrossRail cross_rail;  /* resolved: SPINE or NVLINK */
  guint leaf_down;       /* NIC ports per leaf */
  guint leaves_per_plane;
  guint n_leaves;
  guint base_nic, base_leaf, n_links;
  double cap_nvlink, cap_nic, cap_up;
  SimTime lat_nvlink, lat_nic, lat_hop;
};

Cluster *
cluster_new (const TopoSpec *spec, guint n_gpus, CrossRail cross_rail, const char *where,
             GError **error)
{
  guint gpn = (guint) spec->node.gpus;
  if (n_gpus == 0 || n_gpus % gpn != 0)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                   "%s: %u GPUs is not a multiple of node.gpus = %u of the topology", where,
                   n_gpus, gpn);
      return NULL;
    }
  Cluster *c = g_new0 (Cluster, 1);
  c->spec = *spec;
  c->n_gpus = n_gpus;
  c->gpn = gpn;
  c->n_nodes = n_gpus / gpn;
  c->nics_per_node = (guint) spec->nic.per_node;
  c->gpus_per_nic = gpn / c->nics_per_node;
  FabricKind fk = (FabricKind) spec->fabric.kind;
  c->planes = fk == FABRIC_RAIL_OPTIMIZED || fk == FABRIC_MULTI_PLANE;
  c->leaves = fk != FABRIC_SINGLE_SWITCH;
  if (cross_rail == CROSS_RAIL_AUTO)
    cross_rail = fk == FABRIC_MULTI_PLANE ? CROSS_RAIL_NVLINK : CROSS_RAIL_SPINE;
  if (cross_rail == CROSS_RAIL_SPINE && fk == FABRIC_MULTI_PLANE && c->nics_per_node > 1)
    {
      g_set_error (error, MOESIM_CONFIG_ERROR, MOESIM_CONFIG_ERROR_RANGE,
                   "%s: cross_rail 'spine' is impossible on a multi_plane fabric (its planes "
                   "share no switch); use 'nvlink' or 'auto'",
                   where);
      g_free (c);
      return NULL;
    }
  c->cross_rail = cross_rail;
  if (c->leaves)
    {
      double o = spec->fabric.oversubscription;
      guint radix = (guint) spec->fabric.leaf_radix;
      c->leaf_down = (guint) floor (radix * o / (1.0 + o));
      guint up_ports = radix - c->leaf_down;
      guint endpoints = c->planes ? c->n_nodes : c->n_nodes * c->nics_per_node;
      c->leaves_per_plane = (endpoints + c->leaf_down - 1) / c->leaf_down;
      c->n_leaves = c->leaves_per_plane * (c->planes ? c->nics_per_node : 1);
      c->cap_up = up_ports * spec->nic.gbps * 1e9 * spec->nic.efficiency;
    }
  c->base_nic = 2 * n_gpus;
  c->base_leaf = c->base_nic + 2 * c->n_nodes * c->nics_per_node;
  c->n_links = c->base_leaf + 2 * c->n_leaves;
  c->cap_nvlink = spec->nvlink.gbps * 1e9 * spec->nvlink.efficiency;
  c->cap_nic = spec->nic.gbps * 1e9 * spec->nic.efficiency;
  c->lat_nvlink = sim_time_from_seconds (spec->nvlink.latency_us * 1e-6);
  c->lat_nic = sim_time_from_seconds (spec->nic.latency_us * 1e-6);
  c->lat_hop = sim_time_from_seconds (spec->fabric.hop_latency_us * 1e-6);
  return c;
}

void
cluster_free (Cluster *c)
{
  g_free (c);
}

guint
cluster_n_gpus (const Cluster *c)
{
  return c->n_gpus;
}

guint
cluster_n_nodes (const Cluster *c)
{
  return c->n_nodes;
}

guint
cluster_node_of (const Cluster *c, guint gpu)
{
  return gpu / c->gpn;
}

guint
cluster_n_links (const Cluster *c)
{
  return c->n_links;
}

LinkKind
cluster_link_kind (const Cluster *c, guint l)
{
  if (l < c->base_nic)
    return (l & 1) ? LINK_NVLINK_IN : LINK_NVLINK_OUT;
  if (l < c->base_leaf)
    return ((l - c->base_nic) & 1) ? LINK_NIC_IN : LINK_NIC_OUT;
  return ((l - c->base_leaf) & 1) ? LINK_LEAF_DOWN : LINK_LEAF_UP;
}

LinkClass
cluster_link_class (const Cluster *c, guint l)
{
  if (l < c->base_nic)
    return LCLASS_NVLINK;
  return l < c->base_leaf ? LCLASS_NIC : LCLASS_FABRIC;
}

double
cluster_link_capacity (const Cluster *c, guint l)
{
  switch (cluster_link_class (c, l))
    {
    case LCLASS_NVLINK:
      return c->cap_nvlink;
    case LCLASS_NIC:
      return c->cap_nic;
    default:
      return c->cap_up;
    }
}

guint
cluster_link_node (const Cluster *c, guint l)
{
  g_return_val_if_fail (l < cluster_n_links (c), G_MAXUINT);
  if (l < c->base_nic)
    return cluster_node_of (c, l / 2);
  if (l < c->base_leaf)
    return (l - c->base_nic) / 2 / c->nics_per_node;
  return G_MAXUINT;
}

char *
cluster_link_name (const Cluster *c, guint l)
{
  LinkKind k = cluster_link_kind (c, l);
  const char *dir = (k == LINK_NVLINK_OUT || k == LINK_NIC_OUT || k == LINK_LEAF_UP) ? "out" : "in";
  if (l < c->base_nic)
    return g_strdup_printf ("gpu%u.nvlink.%s", l / 2, dir);
  if (l < c->base_leaf)
    {
      guint nic = (l - c->base_nic) / 2;
      return g_strdup_printf ("node%u.nic%u.%s", nic / c->nics_per_node, nic % c->nics_per_node,
                              dir);
    }
  guint leaf = (l - c->base_leaf) / 2;
  if (c->planes)
    return g_strdup_printf ("plane%u.leaf%u.%s", leaf / c->leaves_per_plane,
                            leaf % c->leaves_per_plane, k == LINK_LEAF_UP ? "up" : "down");
  return g_strdup_printf ("leaf%u.%s", leaf, k == LINK_LEAF_UP ? "up" : "down");
}

/* Global NIC index of local NIC `local` on `node`. */
static inline guint
nic_index (const Cluster *c, guint node, guint local)
{
  return node * c->nics_per_node + local;
}

static inline guint
leaf_of (const Cluster *c, guint node, guint local)
{
  if (c->planes)
    return local * c->leaves_per_plane + node / c->leaf_down;
  return nic_index (c, node, local) / c->leaf_down;
}

/* Appends NIC-to-NIC hops from (src node, local nic) to (dst node, nic). */
static void
ib_hops (const Cluster *c, guint sn, guint sl, guint dn, guint dl, ClusterPath *p)
{
  p->links[p->n_hops++] = c->base_nic + 2 * nic_index (c, sn, sl);
  p->latency += c->lat_nic;
  if (c->leaves)
    {
      guint a = leaf_of (c, sn, sl), b = leaf_of (c, dn, dl);
      if (a != b)
        {
          p->links[p->n_hops++] = c->base_leaf + 2 * a;
          p->links[p->n_hops++] = c->base_leaf + 2 * b + 1;
          p->latency += 2 * c->lat_hop;
          p->uses_fabric = TRUE;
        }
    }
  p->links[p->n_hops++] = c->base_nic + 2 * nic_index (c, dn, dl) + 1;
  p->uses_ib = TRUE;
}

void
cluster_route (const Cluster *c, guint src, guint dst, gboolean rdma, ClusterPath *p)
{
  g_return_if_fail (src < c->n_gpus && dst < c->n_gpus && src != dst);
  p->n_hops = 0;
  p->latency = 0;
  p->uses_nvlink = p->uses_ib = p->uses_fabric = FALSE;
  p->n_private = 0;
  guint sn = src / c->gpn, dn = dst / c->gpn;
  p->shared_core = sn != dn && (c->gpus_per_nic > 1 || (c->planes && c->cross_rail == CROSS_RAIL_NVLINK && !rdma));
  if (sn == dn && !rdma)
    {
      p->links[p->n_hops++] = 2 * src;
      p->links[p->n_hops++] = 2 * dst + 1;
      p->latency = c->lat_nvlink;
      p->uses_nvlink = TRUE;
      return;
    }
  guint sl = (src % c->gpn) / c->gpus_per_nic, dl = (dst % c->gpn) / c->gpus_per_nic;
  if (c->planes && sl != dl && c->cross_rail == CROSS_RAIL_NVLINK && !rdma)
    {
      /* forward over NVLink to the first GPU of this node on the destination's rail */
      guint fwd = sn * c->gpn + dl * c->gpus_per_nic;
      p->links[p->n_hops++] = 2 * src;
      p->links[p->n_hops++] = 2 * fwd + 1;
      p->latency = c->lat_nvlink;
      p->uses_nvlink = TRUE;
      p->n_private = 2;
      ib_hops (c, sn, dl, dn, dl, p);
      return;
    }
  if (c->planes && sl != dl)
    {
      /* through the spine between planes: always leaves the leaf */
      p->links[p->n_hops++] = c->base_nic + 2 * nic_index (c, sn, sl);
      p->links[p->n_hops++] = c->base_leaf + 2 * leaf_of (c, sn, sl);
      p->links[p->n_hops++] = c->base_leaf + 2 * leaf_of (c, dn, dl) + 1;
      p->links[p->n_hops++] = c->base_nic + 2 * nic_index (c, dn, dl) + 1;
      p->latency = c->lat_nic + 2 * c->lat_hop;
      p->uses_ib = p->uses_fabric = TRUE;
      return;
    }
  ib_hops (c, sn, sl, dn, dl, p);
}

void
cluster_path (const Cluster *c, guint src, guint dst, ClusterPath *p)
{
  cluster_route (c, src, dst, FALSE, p);
}
