/* Expert placement: which GPU hosts which expert, with redundant replicas.
 *
 * A layer has E logical experts and P >= E physical slots, P / ep per GPU
 * (GPU g holds slots g P/ep .. (g+1) P/ep - 1). `contiguous` puts expert e
 * in slot e; `round_robin` puts expert e on GPU e mod ep; `eplb` is
 * DeepSeek's expert-parallel load balancer (shared/reference/deepseek-v3.md,
 * deepseek-ai/EPLB eplb.py): hierarchical when the expert groups divide
 * among the nodes (pack groups onto nodes, replicate the hottest experts
 * inside each node, pack replicas onto its GPUs), global otherwise (one
 * group, one node), each per layer from that layer's expert loads.
 *
 * A token that selects an expert uses one of its replicas: one on the
 * token's own node when there is any, round-robin among those per (source
 * GPU, expert); otherwise round-robin among all replicas (see
 * placement_candidates).
 */
#pragma once

#include <glib.h>

typedef struct {
  guint experts, physical, ep, gpus_per_node;
  guint *phys_to_log; /* [physical] */
  guint *replicas;    /* [experts]: replica count */
  guint *log_offset;  /* [experts + 1]: log_slots[log_offset[e] ..] are e's slots, ascending */
  guint *log_slots;   /* [physical] */
} LayerPlacement;

typedef enum { PLACEMENT_CONTIGUOUS, PLACEMENT_ROUND_ROBIN, PLACEMENT_EPLB } PlacementKind;
extern const char *const placement_names[];
typedef enum { EPLB_AUTO, EPLB_HIERARCHICAL, EPLB_GLOBAL } EplbPolicy;
extern const char *const eplb_policy_names[];

LayerPlacement *placement_contiguous (guint experts, guint ep, guint gpus_per_node);
LayerPlacement *placement_round_robin (guint experts, guint ep, guint gpus_per_node);
/* EPLB over `load` [experts] with `redundant` extra slots (experts +
 * redundant divisible by ep), `groups` expert groups (1 = none). The
 * hierarchical policy needs the groups to divide among the nodes (NULL
 * otherwise); auto uses it when they do. */
LayerPlacement *placement_eplb (const double *load, guint experts, guint redundant, guint groups, guint ep,
                                guint gpus_per_node, EplbPolicy policy);
void layer_placement_free (LayerPlacement *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LayerPlacement, layer_placement_free)

/* The GPU of a slot. */
static inline guint
placement_gpu (const LayerPlacement *p, guint slot)
{
  return slot / (p->physical / p->ep);
}

/* For GPU `src`: the slots a token of src may use for each expert
 * (`cand_offset` [experts + 1] into `cand` [<= physical]): the expert's
 * replicas on src's node when there are any, else all its replicas. */
void placement_candidates (const LayerPlacement *p, guint src, guint *cand_offset, guint *cand);

/* Each slot's share of its expert's load (load / replicas) summed per GPU:
 * the GPU loads EPLB balances; max over GPUs. */
double placement_max_gpu_load (const LayerPlacement *p, const double *load);

/* TRUE when every slot holds a valid expert, every expert has at least one
 * slot, and the slot lists agree with phys_to_log. */
gboolean placement_valid (const LayerPlacement *p);
