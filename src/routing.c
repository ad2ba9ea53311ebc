/* Synthetic routing generator. The per-token work is a handful of bounded
 * random draws with rejection of duplicates through a bit mask (up to 256
 * candidates) or a stamp array (no clearing between tokens), so a layer
 * costs O(tokens * top_k); and the stream that generates steps ahead of
 * the run that reads them. */
#include "routing.h"

#include "rng.h"
#include "util.h"

#include <math.h>

#include <string.h>

RoutingLayer *
routing_layer_new (guint ep, guint experts)
{
  RoutingLayer *r = g_new0 (RoutingLayer, 1);
  r->ep = ep;
  r->experts = experts;
  r->pair_tokens = g_new0 (guint32, (gsize) ep * ep);
  r->pair_selections = g_new0 (guint32, (gsize) ep * ep);
  r->expert_rows = g_new0 (guint32, experts);
  return r;
}

void
routing_layer_count_nodes (RoutingLayer *r, guint gpus_per_node)
{
  g_return_if_fail (gpus_per_node > 0 && r->ep % gpus_per_node == 0);
  r->gpus_per_node = gpus_per_node;
  g_free (r->node_tokens);
  r->node_tokens = g_new0 (guint32, (gsize) r->ep * (r->ep / gpus_per_node));
  g_free (r->fanout);
  r->fanout = g_new0 (guint32, r->ep / gpus_per_node + 1);
}

void
routing_layer_free (RoutingLayer *r)
{
  if (r == NULL)
    return;
  g_free (r->node_tokens);
  g_free (r->fanout);
  g_free (r->pair_tokens);
  g_free (r->pair_selections);
  g_free (r->expert_rows);
  g_free (r);
}

/* Zeroes a layer's counts; returns its node count (0 without node counts). */
static guint
layer_reset (RoutingLayer *out)
{
  guint ep = out->ep, nodes = out->gpus_per_node ? ep / out->gpus_per_node : 0;
  memset (out->pair_tokens, 0, (gsize) ep * ep * sizeof (guint32));
  memset (out->pair_selections, 0, (gsize) ep * ep * sizeof (guint32));
  memset (out->expert_rows, 0, out->experts * sizeof (guint32));
  if (nodes)
    {
      memset (out->node_tokens, 0, (gsize) ep * nodes * sizeof (guint32));
      memset (out->fanout, 0, (nodes + 1) * sizeof (guint32));
    }
  return nodes;
}

/* All topk_group-subsets of n_group groups, when there are few enough to
 * draw one with a single bounded draw; NULL otherwise. */
static guint8 *
group_subsets (guint ng, guint kg, guint *n_out)
{
  double count = 1.0;
  for (guint i = 0; i < kg; i++)
    count = count * (ng - i) / (i + 1);
  if (ng > 16 || count > 65536.0) /* 2^ng masks are walked below */
    return NULL;
  guint n = 0;
  guint8 *tab = g_new (guint8, (gsize) llround (count) * kg);
  for (guint32 mask = 0; mask < (1u << ng); mask++)
    if ((guint) __builtin_popcount (mask) == kg)
      {
        guint j = 0;
        for (guint g = 0; g < ng; g++)
          if (mask & (1u << g))
            tab[(gsize) n * kg + j++] = (guint8) g;
        n++;
      }
  g_assert (n > 0);
  *n_out = n;
  return tab;
}

/* A token's nodes: with at most 64 nodes a bit mask, each node counted
 * branch-free as its bit is first set; with more, stamps counted as they
 * come. Uses the loop's nmask, span, nstamp, stamp, nrow and nodes. */
#define NODE_SELECT(n)                                                                             \
  do                                                                                               \
    {                                                                                              \
      guint n_ = (n);                                                                              \
      if (nodes <= 64)                                                                             \
        {                                                                                          \
          guint fresh_ = (guint) (~nmask >> n_) & 1u;                                              \
          nrow[n_] += fresh_;                                                                      \
          span += fresh_;                                                                          \
          nmask |= (guint64) 1 << n_;                                                              \
        }                                                                                          \
      else                                                                                         \
        {                                                                                          \
          guint fresh_ = nstamp[n_] != stamp;                                                      \
          nrow[n_] += fresh_;                                                                      \
          span += fresh_;                                                                          \
          nstamp[n_] = stamp;                                                                      \
        }                                                                                          \
    }                                                                                              \
  while (0)

/* Where the selections of a source GPU go: per slot its GPU and node; per
 * expert the slots a token of this source uses (placement_candidates),
 * taken round-robin; without a placement the slot is the expert. */
typedef struct {
  guint32 *gpu_of, *node_of; /* [slots] */
  guint *cand_offset, *cand, *ctr;
  const LayerPlacement *pl;
} SlotMap;

static void
slotmap_init (SlotMap *m, const LayerPlacement *pl, guint slots, guint ep, guint gpn)
{
  memset (m, 0, sizeof *m);
  m->pl = pl;
  m->gpu_of = g_new (guint32, slots);
  m->node_of = g_new (guint32, slots);
  for (guint p = 0; p < slots; p++)
    {
      /* = p / (slots / ep) when ep divides slots; always a valid GPU */
      m->gpu_of[p] = (guint32) ((guint64) p * ep / slots);
      m->node_of[p] = gpn ? m->gpu_of[p] / gpn : 0;
    }
  if (pl)
    {
      m->cand_offset = g_new (guint, pl->experts + 1);
      m->cand = g_new (guint, pl->physical);
      m->ctr = g_new (guint, pl->experts);
    }
}

static void
slotmap_source (SlotMap *m, guint src)
{
  if (m->pl == NULL)
    return;
  placement_candidates (m->pl, src, m->cand_offset, m->cand);
  memset (m->ctr, 0, m->pl->experts * sizeof (guint));
}

static inline guint
slotmap_pick (SlotMap *m, guint e)
{
  if (m->pl == NULL)
    return e;
  guint k0 = m->cand_offset[e], n = m->cand_offset[e + 1] - k0;
  if (n == 1)
    return m->cand[k0];
  guint c = m->ctr[e];
  m->ctr[e] = c + 1 == n ? 0 : c + 1;
  return m->cand[k0 + c];
}

static void
slotmap_clear (SlotMap *m)
{
  g_free (m->gpu_of);
  g_free (m->node_of);
  g_free (m->cand_offset);
  g_free (m->cand);
  g_free (m->ctr);
}

/* One source GPU's tokens in the common case, kept apart so that its loop
 * fits the registers: no placement (a candidate's expert is its slot), at
 * most 256 candidates (duplicates caught in a bit mask), at most 64 nodes
 * (or none counted), and the experts of each group subset in a table
 * (`sub_experts`, NULL without a group limit: the candidate is the
 * expert). It draws exactly what the general loop below draws, and counts
 * the same. */
static void
synthetic_source_fast (Rng *rng, guint tokens, guint k, guint n_subsets, guint cand, guint cand_bits,
                       const guint32 *restrict sub_experts, const guint32 *restrict gpu_of,
                       const guint32 *restrict node_of, guint32 *restrict expert_rows,
                       guint32 *restrict row /* NULL: one expert per GPU, row = srow */,
                       guint32 *restrict srow, guint32 *restrict dstamp, guint32 *restrict nrow /* NULL: no nodes */,
                       guint32 *restrict fanout, guint32 *stamp_io)
{
  Rng r = *rng;
  guint32 stamp = *stamp_io;
  for (guint t = 0; t < tokens; t++)
    {
      const guint32 *ce = sub_experts ? sub_experts + (gsize) rng_below (&r, n_subsets) * cand : NULL;
      guint64 seen[4] = { 0, 0, 0, 0 };
      guint64 nmask = 0;
      guint span = 0;
      stamp++;
      for (guint j = 0; j < k;)
        {
          guint c = rng_below_bits (&r, cand, cand_bits);
          guint64 bit = (guint64) 1 << (c & 63);
          if (seen[c >> 6] & bit)
            continue;
          seen[c >> 6] |= bit;
          guint e = ce ? ce[c] : c;
          expert_rows[e]++;
          guint d = gpu_of[e];
          if (row)
            {
              row[d] += dstamp[d] != stamp; /* branch-free: unpredictable */
              dstamp[d] = stamp;
            }
          srow[d]++;
          if (nrow)
            {
              guint n = node_of[e];
              guint fresh = (guint) (~nmask >> n) & 1u;
              nrow[n] += fresh;
              span += fresh;
              nmask |= (guint64) 1 << n;
            }
          j++;
        }
      if (nrow)
        fanout[span]++; /* the nodes it reached */
    }
  *stamp_io = stamp;
}

/* On x86-64, a loop that counts bits is built twice, with the popcnt
 * instruction and without (the baseline has none: a call per count), and
 * the loader picks the one the CPU runs. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define POPCNT_CLONES __attribute__ ((target_clones ("popcnt", "default")))
#endif
#endif
#ifndef POPCNT_CLONES
#define POPCNT_CLONES
#endif

/* The commonest shape of that case (the EP256 runs'): one expert per GPU
 * (expert e on GPU e), a group limit, and powers of two GPUs per node and
 * candidates (2^cand_bits). The same draws and counts as
 * synthetic_source_fast, with fewer values live in the loop: no expert
 * rows (the caller sums them from the GPU counts), a node is a shift, a
 * token's node count is its mask's, and a candidate is cand_bits bits of
 * the stream (what rng_below takes for that bound, without testing the
 * bound at every draw). 1.1x the tokens per second of that loop
 * (`bench_routing`), 1.07x more with popcnt, and 1.14x more for the bits
 * (15 % fewer instructions); its draw is written out as there, since a
 * helper shared by the two lost the gain. */
POPCNT_CLONES static void
synthetic_source_one_per_gpu (Rng *rng, guint tokens, guint k, guint n_subsets, guint cand_bits,
                              const guint32 *restrict sub_experts, guint node_shift, guint32 *restrict srow,
                              guint32 *restrict nrow, guint32 *restrict fanout)
{
  Rng r = *rng;
  guint cand = 1u << cand_bits;
  for (guint t = 0; t < tokens; t++)
    {
      const guint32 *ce = sub_experts + (gsize) rng_below (&r, n_subsets) * cand;
      guint64 seen[4] = { 0, 0, 0, 0 };
      guint64 nmask = 0;
      for (guint j = 0; j < k;)
        {
          guint c = rng_bits (&r, cand_bits); /* = rng_below (&r, 2^cand_bits) */
          guint64 bit = (guint64) 1 << (c & 63);
          if (seen[c >> 6] & bit)
            continue;
          seen[c >> 6] |= bit;
          guint e = ce[c];
          srow[e]++;
          guint n = e >> node_shift;
          nrow[n] += (guint) (~nmask >> n) & 1u;
          nmask |= (guint64) 1 << n;
          j++;
        }
      fanout[__builtin_popcountll (nmask)]++; /* the nodes it reached */
    }
  *rng = r;
}

void
routing_synthetic (const ScenarioSpec *s, const LayerPlacement *pl, guint layer, guint mb, guint tokens,
                   RoutingLayer *out)
{
  guint ep = out->ep, E = pl ? pl->experts : out->experts;
  guint k = (guint) s->model.top_k;
  guint ng = (guint) s->model.n_group, kg = (guint) s->model.topk_group;
  guint group_size = E / ng;
  gboolean limited = kg < ng;
  guint cand = limited ? kg * group_size : E;

  guint gpn = out->gpus_per_node, nodes = layer_reset (out);
  g_autofree guint32 *nstamp = g_new0 (guint32, MAX (nodes, 1u));
  g_autofree guint32 *estamp = g_new0 (guint32, E);
  g_autofree guint32 *gstamp = g_new0 (guint32, ng);
  g_autofree guint32 *dstamp = g_new0 (guint32, ep);
  guint n_subsets = 0;
  g_autofree guint8 *subsets = limited ? group_subsets (ng, kg, &n_subsets) : NULL;
  guint groups_buf[64];
  const guint8 *subset = NULL;
  /* lookup tables instead of divisions in the per-selection loop */
  SlotMap sm;
  slotmap_init (&sm, pl, out->experts, ep, gpn);
  g_autofree guint32 *cand_slot = g_new (guint32, cand);
  g_autofree guint32 *cand_off = g_new (guint32, cand);
  for (guint c = 0; c < cand; c++)
    {
      cand_slot[c] = c / group_size;
      cand_off[c] = c % group_size;
    }
  /* per group subset, the expert of each candidate: one load per draw */
  g_autofree guint32 *sub_experts = NULL;
  if (subsets && (guint64) n_subsets * cand <= (1u << 20))
    {
      sub_experts = g_new (guint32, (gsize) n_subsets * cand);
      for (guint i = 0; i < n_subsets; i++)
        for (guint c = 0; c < cand; c++)
          sub_experts[(gsize) i * cand + c] = subsets[(gsize) i * kg + cand_slot[c]] * group_size + cand_off[c];
    }
  /* candidates map one to one onto a token's experts, so duplicates are
   * caught on the candidate: in a bit mask when there are at most 256 */
  gboolean small = cand <= 256;
  /* one expert per GPU and no replicas: a token's experts are distinct, so
   * are its GPUs, and every selection is a token copy of its own */
  gboolean one_per_gpu = pl == NULL && E == ep;
  guint32 stamp = 0;
  /* (worked out once for the loops: their draws are below cand) */
  guint cand_bits = rng_bound_bits (cand);
  gboolean fast = pl == NULL && small && nodes <= 64 && (!limited || sub_experts);

  for (guint src = 0; src < ep; src++)
    {
      Rng rng;
      rng_seed (&rng, (guint64) s->routing.synthetic.seed, ((guint64) layer << 32) | mb, src);
      guint32 *row = out->pair_tokens + (gsize) src * ep;
      guint32 *srow = out->pair_selections + (gsize) src * ep;
      guint32 *nrow = gpn ? out->node_tokens + (gsize) src * nodes : NULL;
      slotmap_source (&sm, src);
      if (fast && one_per_gpu && limited && nrow && (gpn & (gpn - 1)) == 0 && cand_bits < 32)
        {
          synthetic_source_one_per_gpu (&rng, tokens, k, n_subsets, cand_bits, sub_experts, (guint) __builtin_ctz (gpn),
                                        srow, nrow, out->fanout);
          memcpy (row, srow, ep * sizeof *row);
          for (guint e = 0; e < ep; e++)
            out->expert_rows[e] += srow[e];
          continue;
        }
      if (fast)
        {
          synthetic_source_fast (&rng, tokens, k, n_subsets, cand, cand_bits, limited ? sub_experts : NULL, sm.gpu_of,
                                 sm.node_of, out->expert_rows, one_per_gpu ? NULL : row, srow, dstamp, nrow,
                                 out->fanout, &stamp);
          if (one_per_gpu)
            memcpy (row, srow, ep * sizeof *row);
          continue;
        }
      for (guint t = 0; t < tokens; t++)
        {
          stamp++;
          guint span = 0;
          guint64 nmask = 0;
          const guint32 *ce = NULL;
          guint64 seen[4] = { 0, 0, 0, 0 };
          if (limited && subsets)
            {
              guint si = rng_below (&rng, n_subsets);
              subset = subsets + (gsize) si * kg;
              if (sub_experts)
                ce = sub_experts + (gsize) si * cand;
            }
          else if (limited)
            for (guint j = 0; j < kg;)
              {
                guint g = rng_below (&rng, ng);
                if (gstamp[g] == stamp)
                  continue;
                gstamp[g] = stamp;
                groups_buf[j++] = g;
              }
          for (guint j = 0; j < k;)
            {
              guint c = rng_below (&rng, cand);
              if (small)
                {
                  guint64 bit = (guint64) 1 << (c & 63);
                  if (seen[c >> 6] & bit)
                    continue;
                  seen[c >> 6] |= bit;
                }
              guint e = c;
              if (ce)
                e = ce[c];
              else if (limited)
                {
                  guint g = subset ? subset[cand_slot[c]] : groups_buf[cand_slot[c]];
                  e = g * group_size + cand_off[c];
                }
              if (!small)
                {
                  if (estamp[e] == stamp)
                    continue;
                  estamp[e] = stamp;
                }
              guint p = slotmap_pick (&sm, e);
              out->expert_rows[p]++;
              guint d = sm.gpu_of[p];
              if (!one_per_gpu)
                {
                  row[d] += dstamp[d] != stamp; /* branch-free: unpredictable */
                  dstamp[d] = stamp;
                }
              srow[d]++;
              if (nrow)
                NODE_SELECT (sm.node_of[p]);
              j++;
            }
          if (nrow)
            out->fanout[span]++; /* the nodes it reached */
        }
      if (one_per_gpu)
        memcpy (row, srow, ep * sizeof *row);
    }
  slotmap_clear (&sm);
}

/* Sums the selections of `tokens` consecutive trace tokens (wrapping) of one
 * layer into GPU src's row. Reads the id block in place; ID is guint8 or
 * guint16 and MISSING all ones. */
#define TRACE_ROW_LOOP(ID, MISSING)                                                                \
  do                                                                                               \
    {                                                                                              \
      const ID *ids = (const ID *) trace_layer_ids (t, tl);                                        \
      for (guint i = 0; i < tokens; i++, tok = tok + 1 == T ? 0 : tok + 1)                         \
        {                                                                                          \
          const ID *r = ids + tok * K;                                                             \
          guint span = 0;                                                                          \
          guint64 nmask = 0;                                                                       \
          stamp++;                                                                                 \
          for (guint k = 0; k < K; k++)                                                            \
            {                                                                                      \
              guint e = r[k];                                                                      \
              if (e == (MISSING))                                                                  \
                continue;                                                                          \
              guint p = slotmap_pick (&sm, e);                                                     \
              out->expert_rows[p]++;                                                               \
              guint d = sm.gpu_of[p];                                                              \
              row[d] += dstamp[d] != stamp;                                                        \
              dstamp[d] = stamp;                                                                   \
              srow[d]++;                                                                           \
              if (nrow)                                                                            \
                NODE_SELECT (sm.node_of[p]);                                                       \
            }                                                                                      \
          if (nrow)                                                                                \
            out->fanout[span]++;                                                                   \
        }                                                                                          \
    }                                                                                              \
  while (0)

void
routing_from_trace (const ScenarioSpec *s, const Trace *t, const LayerPlacement *pl, guint layer, guint mb,
                    guint tokens, RoutingLayer *out)
{
  const TraceShape *sh = trace_shape (t);
  guint ep = out->ep, E = pl ? pl->experts : out->experts, K = sh->top_k;
  guint tl = layer % sh->layers;
  guint64 T = sh->tokens;
  (void) s;
  g_return_if_fail (sh->experts == E);
  guint gpn = out->gpus_per_node, nodes = layer_reset (out);
  g_autofree guint32 *nstamp = g_new0 (guint32, MAX (nodes, 1u));
  g_autofree guint32 *dstamp = g_new0 (guint32, ep);
  SlotMap sm;
  slotmap_init (&sm, pl, out->experts, ep, gpn);
  guint32 stamp = 0;
  for (guint src = 0; src < ep; src++)
    {
      guint32 *row = out->pair_tokens + (gsize) src * ep;
      guint32 *srow = out->pair_selections + (gsize) src * ep;
      guint32 *nrow = gpn ? out->node_tokens + (gsize) src * nodes : NULL;
      guint64 tok = (src * T / ep + (guint64) mb * tokens) % T;
      slotmap_source (&sm, src);
      if (trace_id_bytes (t) == 1)
        TRACE_ROW_LOOP (guint8, 0xffu);
      else
        TRACE_ROW_LOOP (guint16, 0xffffu);
    }
  slotmap_clear (&sm);
}

void
routing_layer_loads (const ScenarioSpec *s, const Trace *trace, guint layer, double *load)
{
  guint E = (guint) s->model.experts, M = (guint) s->parallel.microbatches;
  guint tokens = (guint) (s->parallel.tokens_per_gpu / M);
  g_autoptr (RoutingLayer) scratch = routing_layer_new ((guint) s->parallel.ep, E);
  memset (load, 0, E * sizeof (double));
  for (guint mb = 0; mb < M; mb++)
    {
      if (trace)
        routing_from_trace (s, trace, NULL, layer, mb, tokens, scratch);
      else
        routing_synthetic (s, NULL, layer, mb, tokens, scratch);
      for (guint e = 0; e < E; e++)
        load[e] += scratch->expert_rows[e];
    }
}

void
routing_trace_loads (const Trace *t, guint layer, guint experts, double *load)
{
  const TraceShape *sh = trace_shape (t);
  guint tl = layer % sh->layers;
  memset (load, 0, experts * sizeof (double));
  for (guint64 tok = 0; tok < sh->tokens; tok++)
    for (guint k = 0; k < sh->top_k; k++)
      {
        gint id = trace_id (t, tl, tok, k);
        if (id != TRACE_MISSING && (guint) id < experts)
          load[id] += 1.0;
      }
}

/* ---- generation ahead of use ---- */

/* A slot of the ring holds one step: queued, being generated (by a worker,
 * or by the run while it waits), then ready. */
enum { SLOT_QUEUED, SLOT_BUSY, SLOT_READY };

typedef struct {
  RoutingLayer *layer;
  guint step;
  guint state;
} Slot;

struct RoutingStream {
  const ScenarioSpec *spec;
  const Trace *trace;
  guint n_steps, tokens, window, mbs;
  guint *step_layer; /* per layer position: the MoE layer */
  LayerPlacement *const *placement; /* per MoE layer; NULL: contiguous */
  Slot *slots;
  GThreadPool *pool;
  GMutex lock; /* guards the slots' step and state */
  GCond cond;
  guint next_to_queue;
};

/* Generates the slot's step unless someone took it already (FALSE then).
 * Called with the lock held, which it lets go of while it works. */
static gboolean
take_and_generate (RoutingStream *rs, Slot *slot)
{
  if (slot->state != SLOT_QUEUED)
    return FALSE;
  slot->state = SLOT_BUSY;
  guint step = slot->step;
  g_mutex_unlock (&rs->lock);
  guint layer = rs->step_layer[step / rs->mbs];
  const LayerPlacement *pl = rs->placement ? rs->placement[layer] : NULL;
  if (rs->trace)
    routing_from_trace (rs->spec, rs->trace, pl, layer, step % rs->mbs, rs->tokens, slot->layer);
  else
    routing_synthetic (rs->spec, pl, layer, step % rs->mbs, rs->tokens, slot->layer);
  g_mutex_lock (&rs->lock);
  slot->state = SLOT_READY;
  g_cond_broadcast (&rs->cond);
  return TRUE;
}

/* A worker's job: the slot it was queued for, if the run did not take it
 * while waiting (a slot queued again since holds a later step, which is
 * as good). */
static void
generate (gpointer data, gpointer user)
{
  RoutingStream *rs = user;
  util_thread_background (UTIL_NICE_AHEAD); /* generated ahead of the run that reads it */
  g_mutex_lock (&rs->lock);
  take_and_generate (rs, &rs->slots[GPOINTER_TO_UINT (data) - 1]);
  g_mutex_unlock (&rs->lock);
}

static void
queue_next (RoutingStream *rs)
{
  guint step = rs->next_to_queue++;
  Slot *slot = &rs->slots[step % rs->window];
  g_mutex_lock (&rs->lock);
  slot->step = step;
  slot->state = SLOT_QUEUED;
  if (rs->pool == NULL)
    take_and_generate (rs, slot);
  g_mutex_unlock (&rs->lock);
  if (rs->pool)
    g_thread_pool_push (rs->pool, GUINT_TO_POINTER (step % rs->window + 1), NULL);
}

/* A slot's layer: ep GPUs, `experts` slots, node counts when count_nodes_of
 * (GPUs per node) is not 0. */
static RoutingLayer *
slot_layer_new (guint ep, guint experts, guint count_nodes_of)
{
  RoutingLayer *r = routing_layer_new (ep, experts);
  if (count_nodes_of)
    routing_layer_count_nodes (r, count_nodes_of);
  return r;
}

RoutingStream *
routing_stream_new (const ScenarioSpec *s, const Trace *trace, LayerPlacement *const *placement, guint n_steps,
                    const guint *step_layer, guint tokens, guint threads, guint window, guint count_nodes_of)
{
  RoutingStream *rs = g_new0 (RoutingStream, 1);
  rs->placement = placement;
  rs->spec = s;
  rs->trace = trace;
  rs->n_steps = n_steps;
  rs->tokens = tokens;
  rs->mbs = (guint) s->parallel.microbatches;
  guint positions = (n_steps + rs->mbs - 1) / rs->mbs;
  rs->step_layer = g_new (guint, MAX (positions, 1u));
  for (guint i = 0; i < positions; i++)
    rs->step_layer[i] = step_layer ? step_layer[i] : i;
  rs->window = MAX (1u, MIN (window, n_steps));
  rs->slots = g_new0 (Slot, rs->window);
  for (guint i = 0; i < rs->window; i++)
    rs->slots[i].layer = slot_layer_new ((guint) s->parallel.ep,
                                         placement ? placement[0]->physical : (guint) s->model.experts, count_nodes_of);
  g_mutex_init (&rs->lock);
  g_cond_init (&rs->cond);
  if (threads > 0 && n_steps > 1)
    rs->pool = g_thread_pool_new (generate, rs, (gint) threads, FALSE, NULL);
  while (rs->next_to_queue < rs->window)
    queue_next (rs);
  return rs;
}

const RoutingLayer *
routing_stream_get (RoutingStream *rs, guint step)
{
  g_return_val_if_fail (step < rs->n_steps, NULL);
  /* the slot of the previous step is free again: start the step it will hold */
  if (step > 0 && rs->next_to_queue < rs->n_steps && rs->next_to_queue < step - 1 + rs->window + 1)
    queue_next (rs);
  Slot *slot = &rs->slots[step % rs->window];
  g_mutex_lock (&rs->lock);
  while (!(slot->state == SLOT_READY && slot->step == step))
    {
      /* rather than wait, generate a step no worker has taken yet: this
       * one, or the first queued after it (where routing is slower than
       * the run, the run's core then works on it too) */
      gboolean helped = FALSE;
      for (guint i = 0; i < rs->window && !helped; i++)
        helped = take_and_generate (rs, &rs->slots[(step + i) % rs->window]);
      if (!helped)
        g_cond_wait (&rs->cond, &rs->lock);
    }
  g_mutex_unlock (&rs->lock);
  return slot->layer;
}

RoutingLayer *
routing_stream_take (RoutingStream *rs, guint step)
{
  Slot *slot = &rs->slots[step % rs->window];
  RoutingLayer *fresh = slot_layer_new (slot->layer->ep, slot->layer->experts, slot->layer->gpus_per_node);
  g_mutex_lock (&rs->lock);
  /* ready, and not queued again before the next routing_stream_get */
  g_assert (slot->state == SLOT_READY && slot->step == step);
  RoutingLayer *taken = slot->layer;
  slot->layer = fresh;
  g_mutex_unlock (&rs->lock);
  return taken;
}

void
routing_stream_free (RoutingStream *rs)
{
  if (rs == NULL)
    return;
  if (rs->pool)
    g_thread_pool_free (rs->pool, FALSE, TRUE); /* waits for queued steps */
  for (guint i = 0; i < rs->window; i++)
    routing_layer_free (rs->slots[i].layer);
  g_free (rs->slots);
  g_free (rs->step_layer);
  g_mutex_clear (&rs->lock);
  g_cond_clear (&rs->cond);
  g_free (rs);
}
