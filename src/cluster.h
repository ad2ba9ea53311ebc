/* Cluster: the links and routes of a topology instantiated for N GPUs.
 *
 * Links, in id order: per GPU an NVLink egress and ingress port into the
 * node's non-blocking NVSwitch; per NIC an egress and ingress port; per leaf
 * switch (fat tree, rail-optimized, multi-plane) one aggregate uplink to the
 * spine and one aggregate downlink from it. Capacities are gbps * efficiency
 * in bytes/s.
 *
 * Routes: same node -> NVLink out, NVLink in. Other node -> NIC out,
 * (leaf up, leaf down when the NICs sit on different leaves), NIC in. GPU g
 * uses NIC g / (gpus per NIC) of its node; on rail-optimized and multi-plane
 * fabrics NIC i of every node is on plane i. Traffic between planes either
 * goes through the spine (rail-optimized with cross_rail = spine) or is first
 * forwarded over NVLink to the GPU of the source node whose NIC is on the
 * destination's plane (cross_rail = nvlink; the only way on multi-plane
 * fabrics, whose planes share no switch).
 */
#pragma once

#include "flownet.h"
#include "simtime.h"
#include "topo.h"

typedef enum { CROSS_RAIL_AUTO, CROSS_RAIL_SPINE, CROSS_RAIL_NVLINK } CrossRail;
extern const char *const cross_rail_names[];

typedef enum { LINK_NVLINK_OUT, LINK_NVLINK_IN, LINK_NIC_OUT, LINK_NIC_IN, LINK_LEAF_UP,
               LINK_LEAF_DOWN } LinkKind;

/* Link classes as reported: nvlink, ib (NIC ports), fabric (leaf-spine uplinks). */
typedef enum { LCLASS_NVLINK, LCLASS_NIC, LCLASS_FABRIC, LCLASS_N } LinkClass;
extern const char *const link_class_names[];

typedef struct {
  guint n_hops;
  guint links[FLOWNET_MAX_HOPS];
  SimTime latency;
  gboolean uses_nvlink, uses_ib, uses_fabric;
  /* between nodes, where other GPUs of the source node reach the same
   * destination over the same NIC (forwarded to it over NVLink first, or
   * sharing it): the links from n_private on are shared by their routes */
  gboolean shared_core;
  guint n_private;
} ClusterPath;

typedef struct Cluster Cluster;

/* Fails (MOESIM_CONFIG_ERROR) when n_gpus is not a multiple of the node size
 * or cross_rail is impossible on the fabric; `where` names the field. */
Cluster *cluster_new (const TopoSpec *spec, guint n_gpus, CrossRail cross_rail, const char *where,
                      GError **error);
void cluster_free (Cluster *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Cluster, cluster_free)

guint cluster_n_gpus (const Cluster *c);
guint cluster_n_nodes (const Cluster *c);
guint cluster_node_of (const Cluster *c, guint gpu);
guint cluster_n_links (const Cluster *c);
double cluster_link_capacity (const Cluster *c, guint link);
LinkKind cluster_link_kind (const Cluster *c, guint link);
LinkClass cluster_link_class (const Cluster *c, guint link);
/* The node whose GPU or NIC port the link is; G_MAXUINT for fabric links. */
guint cluster_link_node (const Cluster *c, guint link);
/* Human name, e.g. "gpu3.nvlink.out", "node1.nic0.in", "plane2.leaf0.up". */
char *cluster_link_name (const Cluster *c, guint link);
/* Route from GPU src to GPU dst (src != dst). */
void cluster_path (const Cluster *c, guint src, guint dst, ClusterPath *out);
/* The same, or with `rdma` through the NICs even inside a node (pure RDMA:
 * NVLink unused; a GPU pair sharing a NIC loops back through it). */
void cluster_route (const Cluster *c, guint src, guint dst, gboolean rdma, ClusterPath *out);
