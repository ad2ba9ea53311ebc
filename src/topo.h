/* Topology files: the hardware of a cluster, parsed once into TopoSpec.
 *
 * Sections: gpu (SMs, dense peaks, HBM, launch overhead, achieved grouped-GEMM
 * throughput vs rows per expert), node (GPUs per node), nvlink (per-GPU
 * per-direction bandwidth into a non-blocking NVSwitch), nic (NICs per node,
 * per-NIC bandwidth) and fabric (single switch, two-level fat tree, or
 * rail-optimized / multi-plane). Bandwidths are GB/s = 1e9 B/s per direction;
 * each link class has a protocol efficiency (achieved / line rate) and the
 * model uses gbps * efficiency. Latencies are microseconds.
 */
#pragma once

#include "cfg.h"

typedef enum {
  FABRIC_SINGLE_SWITCH,
  FABRIC_FAT_TREE,
  FABRIC_RAIL_OPTIMIZED,
  FABRIC_MULTI_PLANE,
} FabricKind;

typedef enum { DTYPE_FP8, DTYPE_BF16, DTYPE_N } Dtype;
extern const char *const dtype_names[];
/* Bytes per element of a dtype (FP8 1, BF16 2; scales not included). */
double dtype_bytes (Dtype d);

typedef struct {
  double rows;   /* rows per expert (GEMM M) */
  double tflops; /* achieved, in the table's dtype */
} GemmPoint;

typedef struct {
  GemmPoint *points;
  guint n;
} GemmTable;

typedef struct {
  char *name;
  struct {
    char *name;
    gint64 sms;
    double peak_tflops[DTYPE_N];
    double hbm_gb;
    double hbm_gbps;
    double launch_us;
    double comm_gbps_per_sm; /* what one SM of a communication kernel drives, GB/s; 0 = not given */
    gint64 gemm_tile_m;
    int gemm_dtype; /* Dtype the table was measured in */
    GemmTable gemm;
  } gpu;
  struct {
    gint64 gpus;
  } node;
  struct {
    double gbps, latency_us, efficiency;
  } nvlink;
  struct {
    gint64 per_node;
    double gbps, latency_us, efficiency;
  } nic;
  struct {
    int kind; /* FabricKind */
    gint64 leaf_radix;
    double oversubscription;
    double hop_latency_us;
  } fabric;
} TopoSpec;

typedef struct Topology Topology;

/* Loads and validates a topology file. Returns NULL with MOESIM_CONFIG_ERROR. */
Topology *topology_load (const char *path, GError **error);
/* Parses a topology file without the whole-file checks (required keys,
 * cross-field rules), so that --set overrides can complete it first; call
 * topology_validate after them. */
Topology *topology_parse (const char *path, GError **error);
void topology_free (Topology *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Topology, topology_free)

const TopoSpec *topology_spec (const Topology *t);
const char *topology_path (const Topology *t);
/* TRUE when `key` belongs to the topology schema (gpu.*, node.*, ...). */
gboolean topology_owns_key (const Topology *t, const char *key);
/* Applies a --set override and re-validates. */
gboolean topology_set (Topology *t, const char *key, const char *value, GError **error);
/* Re-checks cross-field rules (after overrides). */
gboolean topology_validate (Topology *t, GError **error);

/* Achieved TFLOPS in `dtype` of a grouped GEMM with `rows` rows per expert:
 * interpolated in log(rows) between table points, proportional to rows
 * below the first point, flat above the last; scaled by the ratio of peaks
 * when `dtype` differs from the table's. */
double topology_gemm_tflops (const TopoSpec *s, Dtype dtype, double rows);

void topology_describe_schema (GString *out);
