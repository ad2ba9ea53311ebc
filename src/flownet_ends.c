/* The flow network's ends: the next end, batches of ends (flows that
 * drain, continue or, in a bundle, end one member after another), and
 * the removal of a flow. */
#include "flownet_private.h"

static void
flow_remove (FlowNet *fn, guint id)
{
  FlowHot *f = &fn->hot[id];
  FlowCold *c = &fn->cold[id];
  if (fn->rec_valid)
    flownet_record_end (fn, fn->fixed[id].level, f->rate, f->path, f->n_hops);
  for (guint h = 0; h < f->n_hops; h++)
    {
      list_remove (fn, f->path[h], c->pos[h]);
      link_left (fn, f->path[h], f->rate);
    }
  fn->n_active--;
  fn->n_weight--;
  /* free slots are never taken by a scan; a block's earliest end, if it
   * was this flow's, is recomputed by the scan that removed it */
  fn->end[id] = fn->start[id] = SIM_TIME_MAX;
  fn->split_core[id] = G_MAXUINT;
  if (c->cap > 0.0)
    for (guint i = 0; i < fn->n_capped; i++)
      if (fn->capped[i] == id)
        {
          fn->capped[i] = fn->capped[--fn->n_capped];
          break;
        }
  fn->removed = TRUE;
  free_ids_put (&fn->free_slots, id);
}

/* The continuation of a flow whose bytes drain at `end` takes its place:
 * same slot, links and rate, so nothing needs re-solving. */
static void
flow_continue (FlowNet *fn, guint id, SimTime end)
{
  FlowHot *f = &fn->hot[id];
  FlowCold *c = &fn->cold[id];
  double bytes = c->next_bytes;
  for (guint h = 0; h < f->n_hops; h++)
    fn->links[f->path[h]].bytes += bytes;
  c->tag = c->next_tag;
  c->next_bytes = 0.0;
  f->remaining = bytes;
  f->t_update = end;
  /* to the network it is the same flow: its start (and so its age, which
   * the tolerance scales with) stays that of the first chunk */
  double ps = MIN (bytes / f->rate * 1e12, 4e18);
  fn->end[id] = end + sim_time_ceil_ps (ps);
}

SimTime
flownet_next_end (const FlowNet *fn)
{
  g_assert (fn->n_loose == 0);
  SimTime first = SIM_TIME_MAX;
  for (guint b = 0; b < (fn->n_slots + BLOCK - 1) / BLOCK; b++)
    first = MIN (first, fn->blk_end[b]);
  return first;
}

/* The scan of a block of a batch: over end[0 .. n) and start[], a bit per
 * slot whose end is at or before `lim` (a candidate), and into *e and *st
 * the least end and start of the others. */
guint64
flownet_scan_portable (const SimTime *end, const SimTime *start, guint n, SimTime lim, SimTime *e, SimTime *st)
{
  guint64 cand = 0;
  SimTime me = SIM_TIME_MAX, ms = SIM_TIME_MAX;
  for (guint k = 0; k < n; k++)
    if (end[k] > lim)
      {
        me = MIN (me, end[k]);
        ms = MIN (ms, start[k]);
      }
    else
      cand |= G_GUINT64_CONSTANT (1) << k;
  *e = me;
  *st = ms;
  return cand;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* flownet_scan_portable of a whole block, four slots at a time */
__attribute__ ((target ("avx2"))) static guint64
scan_avx2 (const SimTime *end, const SimTime *start, SimTime lim, SimTime *e, SimTime *st)
{
  G_STATIC_ASSERT (BLOCK % 4 == 0 && BLOCK <= 64);
  const __m256i l = _mm256_set1_epi64x (lim), max = _mm256_set1_epi64x (SIM_TIME_MAX);
  __m256i me = max, ms = max;
  guint64 cand = 0;
  for (guint k = 0; k < BLOCK; k += 4)
    {
      __m256i x = _mm256_loadu_si256 ((const __m256i *) (end + k));
      __m256i y = _mm256_loadu_si256 ((const __m256i *) (start + k));
      __m256i past = _mm256_cmpgt_epi64 (x, l); /* not candidates */
      cand |= (guint64) (~_mm256_movemask_pd (_mm256_castsi256_pd (past)) & 0xf) << k;
      x = _mm256_blendv_epi8 (max, x, past);
      y = _mm256_blendv_epi8 (max, y, past);
      me = _mm256_blendv_epi8 (me, x, _mm256_cmpgt_epi64 (me, x));
      ms = _mm256_blendv_epi8 (ms, y, _mm256_cmpgt_epi64 (ms, y));
    }
  SimTime a[4], c[4];
  _mm256_storeu_si256 ((__m256i *) a, me);
  _mm256_storeu_si256 ((__m256i *) c, ms);
  *e = MIN (MIN (a[0], a[1]), MIN (a[2], a[3]));
  *st = MIN (MIN (c[0], c[1]), MIN (c[2], c[3]));
  return cand;
}
#endif

static guint64
scan_block (const SimTime *end, const SimTime *start, SimTime lim, SimTime *e, SimTime *st)
{
  return flownet_scan_portable (end, start, BLOCK, lim, e, st);
}

/* The scan of whole blocks this machine runs best. */
FlowScan
flownet_pick_scan (void)
{
#if defined(__x86_64__)
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx2"))
    return scan_avx2;
#endif
  return scan_block;
}

const FlowEnd *
flownet_take_batch (FlowNet *fn, SimTime now, double tolerance, guint *n_done)
{
  g_assert (fn->n_loose == 0);
  /* first the due flows, from the dense end and start arrays, in slot
   * order; then their records, fetched ahead: ended flows sit at scattered
   * slots and their records are mostly out of cache by now. A block with
   * due flows gets its earliest end and start back from the same scan (of
   * the flows that stay) and the new ends of those that continue. */
  guint n = 0;
  for (guint b = 0; b < (fn->n_slots + BLOCK - 1) / BLOCK; b++)
    {
      /* no flow of the block can be due: its earliest end is past the
       * latest deadline any of its flows could have */
      SimTime be = fn->blk_end[b];
      SimTime latest = now + (SimTime) (tolerance * (double) (now - fn->blk_start[b]));
      if (be == SIM_TIME_MAX || (be > now && be > latest))
        continue;
      guint lo = b * BLOCK, hi = MIN ((b + 1) * BLOCK, fn->n_slots);
      SimTime e = SIM_TIME_MAX, st = SIM_TIME_MAX;
      /* past the block's latest deadline (free slots too), no flow is
       * due: the exact test only for the others, the candidates (latest
       * is at least now) */
      guint64 cand = hi - lo == BLOCK ? fn->scan (fn->end + lo, fn->start + lo, latest, &e, &st)
                                      : flownet_scan_portable (fn->end + lo, fn->start + lo, hi - lo, latest, &e, &st);
      for (; cand != 0; cand &= cand - 1)
        {
          guint id = lo + (guint) __builtin_ctzll (cand);
          SimTime end = fn->end[id];
          if (end > now && end > now + (SimTime) (tolerance * (double) (now - fn->start[id])))
            {
              e = MIN (e, end);
              st = MIN (st, fn->start[id]);
              continue;
            }
          g_assert (end >= now);
          GROW (fn->due, fn->cap_due, n + 1);
          fn->due[n++] = id;
          __builtin_prefetch (&fn->hot[id]);
          __builtin_prefetch (&fn->cold[id]);
        }
      fn->blk_end[b] = e;
      fn->blk_start[b] = st;
    }
  guint nd = 0;
  for (guint i = 0; i < n; i++)
    {
      /* a bundle's record, then its members, fetched ahead */
      if (i + 8 < n && fn->hot[fn->due[i + 8]].bundle)
        __builtin_prefetch (&fn->bundles[fn->hot[fn->due[i + 8]].path[0]]);
      if (i + 4 < n && fn->hot[fn->due[i + 4]].bundle)
        __builtin_prefetch (fn->bundles[fn->hot[fn->due[i + 4]].path[0]].m);
      guint id = fn->due[i];
      guint b = id / BLOCK;
      if (fn->hot[id].bundle)
        {
          /* its members due, one after another on its clock */
          nd = flownet_bundle_take (fn, id, now, tolerance, nd);
          fn->blk_end[b] = MIN (fn->blk_end[b], fn->end[id]);
          fn->blk_start[b] = MIN (fn->blk_start[b], fn->start[id]);
          continue;
        }
      GROW (fn->done, fn->cap_done, nd + 1);
      FlowEnd *d = &fn->done[nd++];
      FlowCold *c = &fn->cold[id];
      *d = (FlowEnd) { c->tag, fn->end[id], fn->hot[id].rate, c->next_bytes > 0.0 };
      if (d->continued)
        {
          flow_continue (fn, id, d->end);
          fn->blk_end[b] = MIN (fn->blk_end[b], fn->end[id]);
          fn->blk_start[b] = MIN (fn->blk_start[b], fn->start[id]);
        }
      else
        flow_remove (fn, id);
    }
  *n_done = nd;
  return fn->done;
}

SimTime
flownet_added_due (const FlowNet *fn, double tolerance)
{
  if (!fn->needs_solve || fn->removed || fn->added_first == SIM_TIME_MAX)
    return 0;
  return fn->added_first + sim_time_from_seconds (tolerance * fn->added_min_est);
}

