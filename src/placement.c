#include "placement.h"

#include <stdlib.h>
#include <string.h>

const char *const placement_names[] = { "contiguous", "round_robin", "eplb", NULL };
const char *const eplb_policy_names[] = { "auto", "hierarchical", "global", NULL };

/* Fills replicas, log_offset and log_slots from phys_to_log. */
static LayerPlacement *
finish (LayerPlacement *p)
{
  p->replicas = g_new0 (guint, p->experts);
  p->log_offset = g_new0 (guint, p->experts + 1);
  p->log_slots = g_new (guint, p->physical);
  for (guint s = 0; s < p->physical; s++)
    p->replicas[p->phys_to_log[s]]++;
  for (guint e = 0; e < p->experts; e++)
    p->log_offset[e + 1] = p->log_offset[e] + p->replicas[e];
  g_autofree guint *fill = g_memdup2 (p->log_offset, p->experts * sizeof (guint));
  for (guint s = 0; s < p->physical; s++)
    p->log_slots[fill[p->phys_to_log[s]]++] = s;
  return p;
}

static LayerPlacement *
alloc (guint experts, guint physical, guint ep, guint gpn)
{
  LayerPlacement *p = g_new0 (LayerPlacement, 1);
  p->experts = experts;
  p->physical = physical;
  p->ep = ep;
  p->gpus_per_node = gpn;
  p->phys_to_log = g_new (guint, physical);
  return p;
}

LayerPlacement *
placement_contiguous (guint experts, guint ep, guint gpn)
{
  LayerPlacement *p = alloc (experts, experts, ep, gpn);
  for (guint s = 0; s < experts; s++)
    p->phys_to_log[s] = s;
  return finish (p);
}

LayerPlacement *
placement_round_robin (guint experts, guint ep, guint gpn)
{
  LayerPlacement *p = alloc (experts, experts, ep, gpn);
  guint per = experts / ep;
  for (guint g = 0; g < ep; g++)
    for (guint j = 0; j < per; j++)
      p->phys_to_log[g * per + j] = g + j * ep;
  return finish (p);
}

void
layer_placement_free (LayerPlacement *p)
{
  if (p == NULL)
    return;
  g_free (p->phys_to_log);
  g_free (p->replicas);
  g_free (p->log_offset);
  g_free (p->log_slots);
  g_free (p);
}

typedef struct {
  double w;
  guint i;
} Item;

/* heaviest first, ties to the lower index (a stable order) */
static int
cmp_item (const void *a, const void *b)
{
  const Item *x = a, *y = b;
  if (x->w != y->w)
    return x->w > y->w ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* eplb.py balanced_packing: n items into `packs` packs of n / packs items,
 * heaviest first into the lightest pack with room (ties to the lower pack).
 * Writes each item's pack and rank inside it. */
static void
balanced_packing (const double *w, guint n, guint packs, guint *pack, guint *rank)
{
  guint per = n / packs;
  if (per == 1)
    {
      for (guint i = 0; i < n; i++)
        pack[i] = i, rank[i] = 0;
      return;
    }
  g_autofree Item *items = g_new (Item, n);
  for (guint i = 0; i < n; i++)
    items[i] = (Item){ w[i], i };
  qsort (items, n, sizeof (Item), cmp_item);
  g_autofree double *load = g_new0 (double, packs);
  g_autofree guint *count = g_new0 (guint, packs);
  for (guint k = 0; k < n; k++)
    {
      guint best = G_MAXUINT;
      for (guint q = 0; q < packs; q++)
        if (count[q] < per && (best == G_MAXUINT || load[q] < load[best]))
          best = q;
      pack[items[k].i] = best;
      rank[items[k].i] = count[best]++;
      load[best] += items[k].w;
    }
}

/* eplb.py replicate_experts: slots n..m-1 go one at a time to the expert
 * with the highest load per replica (ties to the lower id). */
static void
replicate (const double *w, guint n, guint m, guint *phy2log, guint *count)
{
  for (guint i = 0; i < n; i++)
    phy2log[i] = i, count[i] = 1;
  for (guint i = n; i < m; i++)
    {
      guint best = 0;
      for (guint e = 1; e < n; e++)
        if (w[e] / count[e] > w[best] / count[best])
          best = e;
      phy2log[i] = best;
      count[best]++;
    }
}

/* eplb.py rebalance_experts_hierarchical for one layer. */
static void
rebalance (const double *w, guint E, guint P, guint groups, guint nodes, guint gpus, guint *pphy2log)
{
  guint group_size = E / groups, gpn_groups = groups / nodes, per_gpu = P / gpus;
  guint mlog_per_node = E / nodes, phy_per_node = P / nodes;
  /* 1: groups onto nodes */
  g_autofree double *gw = g_new0 (double, groups);
  for (guint e = 0; e < E; e++)
    gw[e / group_size] += w[e];
  g_autofree guint *gpack = g_new (guint, groups);
  g_autofree guint *grank = g_new (guint, groups);
  balanced_packing (gw, groups, nodes, gpack, grank);
  g_autofree guint *mlog2log = g_new (guint, E);
  for (guint e = 0; e < E; e++)
    {
      guint g = e / group_size;
      guint mlog = (gpack[g] * gpn_groups + grank[g]) * group_size + e % group_size;
      mlog2log[mlog] = e;
    }
  /* 2 and 3, node by node: replicas inside the node, then onto its GPUs */
  g_autofree double *mw = g_new (double, mlog_per_node);
  g_autofree guint *phy2mlog = g_new (guint, phy_per_node);
  g_autofree guint *cnt = g_new (guint, mlog_per_node);
  g_autofree double *pw = g_new (double, phy_per_node);
  g_autofree guint *ppack = g_new (guint, phy_per_node);
  g_autofree guint *prank = g_new (guint, phy_per_node);
  for (guint n = 0; n < nodes; n++)
    {
      for (guint j = 0; j < mlog_per_node; j++)
        mw[j] = w[mlog2log[n * mlog_per_node + j]];
      replicate (mw, mlog_per_node, phy_per_node, phy2mlog, cnt);
      for (guint i = 0; i < phy_per_node; i++)
        pw[i] = mw[phy2mlog[i]] / cnt[phy2mlog[i]];
      balanced_packing (pw, phy_per_node, gpus / nodes, ppack, prank);
      for (guint i = 0; i < phy_per_node; i++)
        {
          guint slot = n * phy_per_node + ppack[i] * per_gpu + prank[i];
          pphy2log[slot] = mlog2log[n * mlog_per_node + phy2mlog[i]];
        }
    }
}

LayerPlacement *
placement_eplb (const double *load, guint experts, guint redundant, guint groups, guint ep, guint gpn,
                EplbPolicy policy)
{
  guint nodes = ep / gpn;
  gboolean can = groups > 1 && groups % nodes == 0 && experts % groups == 0;
  g_return_val_if_fail (policy != EPLB_HIERARCHICAL || can, NULL);
  gboolean hier = can && policy != EPLB_GLOBAL;
  LayerPlacement *p = alloc (experts, experts + redundant, ep, gpn);
  if (hier)
    rebalance (load, experts, p->physical, groups, nodes, ep, p->phys_to_log);
  else
    rebalance (load, experts, p->physical, 1, 1, ep, p->phys_to_log);
  finish (p);
  /* without replicas the greedy packing can, rarely, come out worse than
   * experts in order: keep the better of the two */
  if (redundant == 0)
    {
      g_autoptr (LayerPlacement) c = placement_contiguous (experts, ep, gpn);
      if (placement_max_gpu_load (c, load) < placement_max_gpu_load (p, load))
        {
          layer_placement_free (p);
          return g_steal_pointer (&c);
        }
    }
  return p;
}

void
placement_candidates (const LayerPlacement *p, guint src, guint *cand_offset, guint *cand)
{
  guint node = src / p->gpus_per_node, n = 0;
  for (guint e = 0; e < p->experts; e++)
    {
      cand_offset[e] = n;
      const guint *slots = p->log_slots + p->log_offset[e];
      guint r = p->replicas[e];
      for (guint i = 0; i < r; i++)
        if (placement_gpu (p, slots[i]) / p->gpus_per_node == node)
          cand[n++] = slots[i];
      if (n == cand_offset[e]) /* none on this node: all of them */
        for (guint i = 0; i < r; i++)
          cand[n++] = slots[i];
    }
  cand_offset[p->experts] = n;
}

double
placement_max_gpu_load (const LayerPlacement *p, const double *load)
{
  g_autofree double *gl = g_new0 (double, p->ep);
  for (guint s = 0; s < p->physical; s++)
    {
      guint e = p->phys_to_log[s];
      gl[placement_gpu (p, s)] += load[e] / p->replicas[e];
    }
  double mx = 0;
  for (guint g = 0; g < p->ep; g++)
    mx = MAX (mx, gl[g]);
  return mx;
}

gboolean
placement_valid (const LayerPlacement *p)
{
  if (p->physical % p->ep != 0 || p->physical < p->experts)
    return FALSE;
  guint total = 0;
  for (guint e = 0; e < p->experts; e++)
    {
      if (p->replicas[e] == 0 || p->log_offset[e + 1] - p->log_offset[e] != p->replicas[e])
        return FALSE;
      total += p->replicas[e];
      for (guint i = p->log_offset[e]; i < p->log_offset[e + 1]; i++)
        if (p->log_slots[i] >= p->physical || p->phys_to_log[p->log_slots[i]] != e)
          return FALSE;
    }
  for (guint s = 0; s < p->physical; s++)
    if (p->phys_to_log[s] >= p->experts)
      return FALSE;
  return total == p->physical;
}
