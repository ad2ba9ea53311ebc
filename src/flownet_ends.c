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
      guint hi = MIN ((b + 1) * BLOCK, fn->n_slots);
      SimTime e = SIM_TIME_MAX, st = SIM_TIME_MAX;
      for (guint id = b * BLOCK; id < hi; id++)
        {
          /* past the block's latest deadline (free slots too), no flow is
           * due: the exact test only for the others */
          SimTime end = fn->end[id];
          if ((end > now && end > latest)
              || (end > now && end > now + (SimTime) (tolerance * (double) (now - fn->start[id]))))
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

