/* Max-min fair fluid network.
 *
 * The allocation is found by progressive filling. Every link l in the
 * component being solved starts with its capacity C_l and the count n_l of
 * flows on it whose rate is not yet fixed; its fair share is C_l / n_l. The
 * link with the smallest share is a bottleneck: its unfixed flows get that
 * share, which is subtracted from every link on their paths. A rate cap acts
 * as a private link of one flow. Fixing flows at the smallest share never
 * lowers another link's share (if r <= C/n then (C - r)/(n - 1) >= C/n), so
 * the least share is found by a radix heap (keys never fall below the last
 * popped) whose keys are lazy: a link whose share has grown is pushed again
 * with it before it is taken. Links whose shares tie fix their flows at that
 * share in whichever order they come. Each (flow, link) incidence is visited
 * once, so a solve costs O(F h + L) (the heap's moves are bounded by the
 * bits of a key) for F flows of h hops on L links; it stops once every flow
 * is fixed, since links not taken by then have no say.
 *
 * Only the connected component of links and flows reachable from a link whose
 * flow set changed is re-solved; rates elsewhere cannot change. When the
 * searched component keeps covering most flows (an all-to-all), the search is
 * skipped for a while (64 to 1024 solves, see flownet_solve) and every flow is
 * solved: a union of components solved at once has the same rates. Such a
 * whole solve is then restarted from its record rather than redone (see
 * flownet_solve), also after a search that reached every flow: a search
 * marks links and flows with a mark of its own, apart from the epoch of
 * the record's stamps.
 *
 * Memory layout, because a large all-to-all is memory bound: what a solve
 * touches when it fixes a flow (rate, bytes, times, path) is one 64-byte line
 * (FlowHot); whether it is fixed in this solve, which is all that the visits
 * from the flow's other links read, is an 8-byte stamp (with the level that
 * fixed it) in a dense array; a link's flow list holds only flow ids (4 bytes
 * an entry, streamed; which hop of each flow the link is sits in a byte
 * array beside it, read by removals only); the rest lives in FlowCold. The
 * restart record is in flownet_restart.c. Per-link solve state is in
 * dense arrays. Flow slots are recycled lowest first (FreeIds), and every
 * scratch array lives in the FlowNet, so a steady run does not allocate.
 */
#include "flownet_private.h"

#include <stdlib.h>
#include <string.h>

/* a taken link's list is gone through in chunks of this many entries, or
 * entry by entry when it is longer than SCAN_LONG */
#define SCAN_CHUNK 16
#define SCAN_LONG 256

FlowNet *
flownet_new (void)
{
  FlowNet *fn = g_new0 (FlowNet, 1);
  fn->scan = flownet_pick_scan ();
  fn->added_first = SIM_TIME_MAX;
  fn->added_min_est = G_MAXDOUBLE;
  fn->epoch = 1;
  fn->mark = 1;
  fn->rm_min = fn->join_min = G_MAXUINT;
  return fn;
}

void
flownet_free (FlowNet *fn)
{
  if (fn == NULL)
    return;
  for (guint i = 0; i < fn->n_links; i++)
    {
      g_free (fn->links[i].flows);
      g_free (fn->links[i].hop);
    }
  g_free (fn->links);
  g_free (fn->rem);
  g_free (fn->load);
  g_free (fn->n_free);
  util_free_aligned (fn->hot, fn->cap_slots, sizeof (FlowHot));
  g_free (fn->cold);
  g_free (fn->seen);
  g_free (fn->fixed);
  g_free (fn->end);
  g_free (fn->split_core);
  g_free (fn->split_off);
  g_free (fn->ck_rem);
  g_free (fn->ck_free);
  g_free (fn->ck_unfixed);
  g_free (fn->rec_pos);
  g_free (fn->d_cnt);
  g_free (fn->lvl_share);
  g_free (fn->ck_thr);
  g_free (fn->lvl_link);
  g_free (fn->fix_ids);
  g_free (fn->lvl_fix);
  g_free (fn->ck_level);
  g_free (fn->lvl_tie);
  g_free (fn->lvl_skip);
  g_free (fn->taken);
  g_free (fn->tie_ends);
  g_free (fn->tie_links);
  g_free (fn->tie_freed);
  g_free (fn->tie_rate);
  g_free (fn->tie_cnt);
  g_free (fn->blk_end);
  g_free (fn->blk_start);
  g_free (fn->blk_loose);
  g_free (fn->loose);
  g_free (fn->start);
  free_ids_clear (&fn->free_slots);
  g_free (fn->capped);
  g_free (fn->dirty_links);
  g_free (fn->comp_links);
  g_free (fn->search_links);
  g_free (fn->comp_capped);
  radix_heap_clear (&fn->heap);
  g_free (fn->done);
  g_free (fn->hb_key);
  g_free (fn->hb_id);
  g_free (fn->due);
  flownet_bundles_clear (fn);
  g_free (fn);
}

guint
flownet_add_link (FlowNet *fn, double capacity)
{
  g_return_val_if_fail (capacity > 0.0 && isfinite (capacity), G_MAXUINT);
  guint cap = fn->cap_links;
  GROW (fn->links, fn->cap_links, fn->n_links + 1);
  if (fn->cap_links != cap) /* only then: a sanitizer's realloc always copies */
    {
      fn->rem = g_realloc_n (fn->rem, fn->cap_links, sizeof (double));
      fn->n_free = g_realloc_n (fn->n_free, fn->cap_links, sizeof (guint));
      fn->load = g_realloc_n (fn->load, fn->cap_links, sizeof (double));
      fn->rec_pos = g_realloc_n (fn->rec_pos, fn->cap_links, sizeof (guint));
      fn->d_cnt = g_realloc_n (fn->d_cnt, fn->cap_links, sizeof (gint));
      fn->taken = g_realloc_n (fn->taken, fn->cap_links, sizeof (Stamp));
      fn->tie_rate = g_realloc_n (fn->tie_rate, fn->cap_links, sizeof (double));
      fn->tie_cnt = g_realloc_n (fn->tie_cnt, fn->cap_links, sizeof (guint));
    }
  fn->taken[fn->n_links] = (Stamp) { 0, 0 };
  fn->load[fn->n_links] = 0.0;
  fn->d_cnt[fn->n_links] = 0;
  fn->rec_pos[fn->n_links] = G_MAXUINT;
  fn->rec_valid = FALSE; /* the record's link list is the old one */
  Link *l = &fn->links[fn->n_links];
  memset (l, 0, sizeof *l);
  l->capacity = capacity;
  return fn->n_links++;
}

guint
flownet_n_links (const FlowNet *fn)
{
  return fn->n_links;
}

double
flownet_link_capacity (const FlowNet *fn, guint link)
{
  g_return_val_if_fail (link < fn->n_links, 0.0);
  return fn->links[link].capacity;
}

double
flownet_link_bytes (const FlowNet *fn, guint link)
{
  g_return_val_if_fail (link < fn->n_links, 0.0);
  return fn->links[link].bytes;
}

double
flownet_link_load (const FlowNet *fn, guint link)
{
  g_return_val_if_fail (link < fn->n_links, 0.0);
  return MAX (fn->load[link], 0.0);
}

const double *
flownet_link_loads (const FlowNet *fn)
{
  return fn->load;
}

guint
flownet_slot_alloc (FlowNet *fn)
{
  guint id;
  if (free_ids_take (&fn->free_slots, &id))
    return id;
  if (fn->n_slots == fn->cap_slots)
    {
      guint old = fn->cap_slots;
      fn->hot = util_grow_aligned (fn->hot, &fn->cap_slots, fn->n_slots, sizeof (FlowHot), 256);
      guint nc = fn->cap_slots;
      fn->cold = g_realloc_n (fn->cold, nc, sizeof (FlowCold));
      fn->seen = g_realloc_n (fn->seen, nc, sizeof (guint));
      fn->fixed = g_realloc_n (fn->fixed, nc, sizeof (Stamp));
      fn->end = g_realloc_n (fn->end, nc, sizeof (SimTime));
      guint nb = nc / BLOCK; /* nc is a multiple of 256 */
      fn->blk_end = g_realloc_n (fn->blk_end, nb, sizeof (SimTime));
      fn->blk_start = g_realloc_n (fn->blk_start, nb, sizeof (SimTime));
      fn->blk_loose = g_realloc_n (fn->blk_loose, nb, 1);
      for (guint b = old / BLOCK; b < nb; b++)
        {
          fn->blk_end[b] = fn->blk_start[b] = SIM_TIME_MAX;
          fn->blk_loose[b] = 0;
        }
      fn->start = g_realloc_n (fn->start, nc, sizeof (SimTime));
      fn->split_core = g_realloc_n (fn->split_core, nc, sizeof (guint));
    }
  fn->fixed[fn->n_slots] = (Stamp) { 0, 0 };
  fn->seen[fn->n_slots] = 0;
  fn->end[fn->n_slots] = SIM_TIME_MAX;
  fn->hot[fn->n_slots].bundle = 0;
  return fn->n_slots++;
}

/* A slot for a new entry started at `start`, its records cleared, not
 * fixed (below no restart level), no end yet; brought up to date `now`. */
guint
flownet_slot_start (FlowNet *fn, SimTime now, SimTime start)
{
  guint id = flownet_slot_alloc (fn);
  memset (&fn->hot[id], 0, sizeof (FlowHot));
  memset (&fn->cold[id], 0, sizeof (FlowCold));
  fn->hot[id].t_update = now;
  fn->end[id] = SIM_TIME_MAX;
  fn->start[id] = start;
  fn->fixed[id] = (Stamp) { 0, G_MAXUINT };
  fn->split_core[id] = G_MAXUINT;
  fn->blk_start[id / BLOCK] = MIN (fn->blk_start[id / BLOCK], start);
  return id;
}

gboolean
flownet_path_ok (const FlowNet *fn, const guint *path, guint n_hops)
{
  if (n_hops < 1 || n_hops > FLOWNET_MAX_HOPS)
    return FALSE;
  for (guint h = 0; h < n_hops; h++)
    {
      if (path[h] >= fn->n_links)
        return FALSE;
      for (guint k = 0; k < h; k++)
        if (path[k] == path[h])
          return FALSE; /* a path visits a link once */
    }
  return TRUE;
}

guint
flownet_flow_add (FlowNet *fn, SimTime now, double bytes, const guint *path, guint n_hops,
                  double rate_cap, guint64 tag)
{
  g_return_val_if_fail (bytes > 0.0 && isfinite (bytes), G_MAXUINT);
  g_return_val_if_fail (flownet_path_ok (fn, path, n_hops), G_MAXUINT);
  return flownet_flow_add_path (fn, now, bytes, path, n_hops, rate_cap, tag);
}

guint
flownet_flow_add_path (FlowNet *fn, SimTime now, double bytes, const guint *path, guint n_hops, double rate_cap,
                       guint64 tag)
{
  guint id = flownet_slot_start (fn, now, now);
  FlowHot *f = &fn->hot[id];
  FlowCold *c = &fn->cold[id];
  f->remaining = bytes;
  f->n_hops = (guint8) n_hops;
  memcpy (f->path, path, n_hops * sizeof (guint));
  c->cap = rate_cap > 0.0 ? rate_cap : 0.0;
  c->tag = tag;
  /* a rough duration: its bytes at an equal share of its most loaded link
   * (only while it could still be the shortest since the last solve: past
   * that, the rest of its links would change nothing) */
  double est = 0.0;
  for (guint h = 0; h < n_hops; h++)
    {
      Link *l = &fn->links[path[h]];
      list_append (fn, path[h], id, (guint8) h);
      l->bytes += bytes;
      link_joined (fn, path[h]);
      if (est < fn->added_min_est)
        est = MAX (est, bytes * l->weight / l->capacity);
    }
  fn->add_n++;
  fn->n_active++;
  fn->n_weight++;
  if (c->cap > 0.0)
    {
      GROW (fn->capped, fn->cap_capped, fn->n_capped + 1);
      fn->capped[fn->n_capped++] = id;
    }
  if (now < fn->added_first)
    fn->added_first = now;
  fn->added_min_est = MIN (fn->added_min_est, est);
  return id;
}

void
flownet_flow_set_next (FlowNet *fn, guint flow, double bytes, guint64 tag)
{
  g_return_if_fail (flow < fn->n_slots && fn->start[flow] != SIM_TIME_MAX && !flownet_is_bundle (fn, flow));
  g_return_if_fail (bytes > 0.0 && isfinite (bytes));
  g_return_if_fail (fn->cold[flow].next_bytes == 0.0);
  fn->cold[flow].next_bytes = bytes;
  fn->cold[flow].next_tag = tag;
}

gboolean
flownet_needs_solve (const FlowNet *fn)
{
  return fn->needs_solve;
}

/* The least link share: a radix heap of the component's links with a flow
 * left to fix (after a restart, those taken before it have none), keyed by
 * share. Its keys are lazy: shares only grow, and a link whose share has
 * grown since it was pushed is pushed again with it before it is taken;
 * one left with no flow to fix is dropped when it comes up. */
static void
heap_build (FlowNet *fn, guint nl)
{
  RadixHeap *h = &fn->heap;
  if (nl > fn->cap_hb)
    {
      fn->cap_hb = MAX (nl, 2 * fn->cap_hb);
      fn->hb_key = g_renew (double, fn->hb_key, fn->cap_hb);
      fn->hb_id = g_renew (guint, fn->hb_id, fn->cap_hb);
    }
  guint n = 0;
  double least = G_MAXDOUBLE;
  for (guint i = 0; i < nl; i++)
    {
      guint li = fn->comp_links[i];
      if (fn->n_free[li] > 0)
        {
          double share = fn->rem[li] / fn->n_free[li];
          least = MIN (least, share);
          fn->hb_key[n] = share;
          fn->hb_id[n++] = li;
        }
    }
  /* the floor at the least share: the first pop takes it without first
   * spreading every link out of one bucket */
  radix_heap_reset (h, n > 0 ? least : 0.0);
  for (guint i = 0; i < n; i++)
    radix_heap_push (h, fn->hb_key[i], fn->hb_id[i]);
}

/* Recomputes a block's earliest end and earliest start (a free slot has
 * neither: both SIM_TIME_MAX). */
static void
block_tighten (FlowNet *fn, guint b)
{
  SimTime e = SIM_TIME_MAX, st = SIM_TIME_MAX;
  guint hi = MIN ((b + 1) * BLOCK, fn->n_slots);
  for (guint i = b * BLOCK; i < hi; i++)
    {
      e = MIN (e, fn->end[i]);
      st = MIN (st, fn->start[i]);
    }
  fn->blk_end[b] = e;
  fn->blk_start[b] = st;
  fn->blk_loose[b] = 0;
}

/* Makes every block's earliest end exact again. */
static void
tighten_loose (FlowNet *fn)
{
  for (guint i = 0; i < fn->n_loose; i++)
    block_tighten (fn, fn->loose[i]);
  fn->n_loose = 0;
}

/* A new epoch: no flow counts as fixed. */
void
flownet_new_epoch (FlowNet *fn)
{
  fn->n_fix = 0; /* (so its list of fixes starts empty) */
  if (++fn->epoch == 0) /* wrapped: clear stale stamps */
    {
      for (guint i = 0; i < fn->n_slots; i++)
        fn->fixed[i].epoch = 0;
      for (guint i = 0; i < fn->n_links; i++)
        fn->taken[i].epoch = 0;
      fn->epoch = 1;
    }
}

/* A new component search: no link or flow counts as reached. */
void
flownet_new_mark (FlowNet *fn)
{
  if (++fn->mark == 0) /* wrapped: clear stale marks */
    {
      for (guint i = 0; i < fn->n_links; i++)
        fn->links[i].mark = 0;
      for (guint i = 0; i < fn->n_slots; i++)
        fn->seen[i] = 0;
      fn->mark = 1;
    }
}

/* Fixes a flow's rate for this solve at time `now`; when the rate changed,
 * brings its bytes up to date at the old rate and projects its new end. A
 * flow whose rate did not change keeps its bytes and end untouched. */
static inline __attribute__ ((always_inline)) void
fix_flow (FlowNet *fn, guint id, guint n_hops, const guint *path, guint taken, double rate,
          SimTime now)
{
  FlowHot *f = &fn->hot[id];
  stamp_fixed (fn, id);
  fn->work += n_hops;
  fn->unfixed--;
  double old = f->rate;
  /* (the arrays held here: through fn, the compiler fetched them again
   * after every store) */
  double *rem = fn->rem, *load = fn->load;
  guint *n_free = fn->n_free;
  if (rate == old)
    {
      /* most flows keep their rate: their record is not touched */
      for (guint h = 0; h < n_hops; h++)
        {
          guint li = path[h];
          if (li == taken)
            continue;
          double r = rem[li] - rate;
          rem[li] = r > 0.0 ? r : 0.0;
          n_free[li]--;
        }
      return;
    }
  /* (the loads move in the same pass) */
  for (guint h = 0; h < n_hops; h++)
    {
      guint li = path[h];
      load[li] += rate - old;
      if (li == taken)
        continue;
      double r = rem[li] - rate;
      rem[li] = r > 0.0 ? r : 0.0;
      n_free[li]--;
    }
  f->remaining -= old * sim_time_to_seconds (now - f->t_update);
  f->t_update = now;
  f->rate = rate;
  set_end (fn, id, flownet_project (f->remaining, rate, now));
}

/* fix_flow for a bundle: its members together, each at `rate`; those that
 * joined since its last fix (pending, at rate 0 until now) take their
 * places on its clock first. */
static inline void
fix_bundle (FlowNet *fn, guint id, guint taken, double rate, SimTime now)
{
  FlowHot *f = &fn->hot[id];
  Bundle *b = &fn->bundles[f->path[0]];
  stamp_fixed (fn, id);
  double old = f->rate;
  double *rem = fn->rem, *load = fn->load;
  guint *n_free = fn->n_free;
  guint n_hops = b->n_hops;
  /* without members waiting, the loads move in the same pass (with some,
   * they take those in at the old rate first) */
  if (rate != old && b->n_pend == 0)
    for (guint h = 0; h < n_hops; h++)
      {
        guint li = b->link[h], w = b->wt[h];
        load[li] += w * (rate - old);
        if (li == taken)
          continue;
        double r = rem[li] - w * rate;
        rem[li] = r > 0.0 ? r : 0.0;
        n_free[li] -= w;
      }
  else
    for (guint h = 0; h < n_hops; h++)
      {
        guint li = b->link[h], w = b->wt[h];
        if (li == taken)
          continue;
        double r = rem[li] - w * rate;
        rem[li] = r > 0.0 ? r : 0.0;
        n_free[li] -= w;
      }
  fn->work += b->n_hops;
  fn->unfixed -= b->n_m + b->n_pend;
  if (b->n_pend > 0)
    {
      flownet_bundle_admit (fn, b, now);
      for (guint h = 0; h < b->n_hops; h++)
        fn->load[b->link[h]] += b->wt[h] * (rate - old);
    }
  else if (rate == old)
    return;
  f->remaining -= old * sim_time_to_seconds (now - f->t_update);
  f->t_update = now;
  f->rate = rate;
  set_end (fn, id, flownet_project (f->remaining, rate, now));
}

static inline void
fix_capped (FlowNet *fn, guint id, SimTime now)
{
  const FlowHot *f = &fn->hot[id];
  fix_flow (fn, id, f->n_hops, f->path, G_MAXUINT, fn->cold[id].cap, now);
}

/* A bundle found unfixed on the taken link: fixed, all its members at the
 * link's share, when every member is on the link; else split into its
 * flows (TRUE: the caller goes through the link's list again). */

static gboolean
take_bundle (FlowNet *fn, guint id, guint8 hop, guint li, double share, SimTime now)
{
  const Bundle *b = &fn->bundles[fn->hot[id].path[0]];
  if (b->wt[hop & ~HOP_BUNDLE] < b->n_m + b->n_pend)
    {
      fn->tie_split = TRUE; /* (read while recording: the open tie had one) */
      flownet_bundle_split (fn, id, li, now);
      return TRUE;
    }
  fix_bundle (fn, id, li, share, now);
  return FALSE;
}

/* Fixes unfixed entry `id`, listed on the taken link li with hop byte
 * `hop`, at `share`; counts its members off *left, or sets *again when a
 * bundle split there instead. */
static inline __attribute__ ((always_inline)) void
fix_listed (FlowNet *fn, guint id, guint8 hop, guint li, double share, SimTime now, guint *left,
            gboolean *again)
{
  const FlowHot *f = &fn->hot[id];
  if (G_LIKELY (!f->bundle))
    {
      fix_flow (fn, id, f->n_hops, f->path, li, share, now);
      (*left)--;
      return;
    }
  const Bundle *b = &fn->bundles[f->path[0]];
  guint w = b->n_m + b->n_pend;
  *again = take_bundle (fn, id, hop, li, share, now);
  if (!*again)
    *left -= w;
}

static int
cmp_cap (const void *a, const void *b, void *user)
{
  const FlowCold *cold = user;
  double ca = cold[*(const guint *) a].cap, cb = cold[*(const guint *) b].cap;
  if (ca != cb)
    return ca < cb ? -1 : 1;
  return *(const guint *) a < *(const guint *) b ? -1 : 1;
}

static void
add_search_link (FlowNet *fn, guint li, guint *nl)
{
  fn->links[li].mark = fn->mark;
  GROW (fn->search_links, fn->cap_search_links, *nl + 1);
  fn->search_links[(*nl)++] = li;
}

/* Searches the component reachable from the dirty links (breadth first
 * over link -> flows -> links) into search_links, marking links and flows
 * with a new mark. Returns the number of flows in it. It stops as soon as
 * it has reached every flow: the component is then the whole network,
 * which is solved from the list of links carrying flows, not from the
 * search's (left incomplete). */
static guint
search_component (FlowNet *fn, guint *n_links, guint *weight)
{
  flownet_new_mark (fn);
  guint nl = 0, nf = 0, nw = 0, mk = fn->mark;
  for (guint i = 0; i < fn->n_dirty; i++)
    if (fn->links[fn->dirty_links[i]].mark != mk)
      add_search_link (fn, fn->dirty_links[i], &nl);
  for (guint q = 0; q < nl && nf < fn->n_active; q++)
    {
      const Link *l = &fn->links[fn->search_links[q]];
      for (guint j = 0; j < l->n_flows; j++)
        {
          guint id = l->flows[j];
          if (fn->seen[id] == mk)
            continue;
          fn->seen[id] = mk;
          const FlowHot *f = &fn->hot[id];
          nf++;
          if (f->bundle)
            {
              const Bundle *b = &fn->bundles[f->path[0]];
              nw += b->n_m + b->n_pend;
              for (guint h = 0; h < b->n_hops; h++)
                if (fn->links[b->link[h]].mark != mk)
                  add_search_link (fn, b->link[h], &nl);
              continue;
            }
          nw++;
          for (guint h = 0; h < f->n_hops; h++)
            if (fn->links[f->path[h]].mark != mk)
              add_search_link (fn, f->path[h], &nl);
        }
      fn->work += l->n_flows;
    }
  *n_links = nl;
  *weight = nw;
  return nf;
}

/* The whole network as one component: every link that carries a flow. */
static guint
gather_all (FlowNet *fn, guint *n_links)
{
  flownet_new_mark (fn);
  guint nl = 0;
  for (guint li = 0; li < fn->n_links; li++)
    if (fn->links[li].n_flows > 0)
      {
        GROW (fn->comp_links, fn->cap_comp_links, nl + 1);
        fn->comp_links[nl++] = li;
      }
  for (guint i = 0; i < fn->n_capped; i++)
    fn->seen[fn->capped[i]] = fn->mark;
  *n_links = nl;
  return fn->n_weight;
}

/* Solves the max-min allocation by progressive filling.
 *
 * Restarts. When the last solve covered every flow, the next solve
 * restarts from the record of that one rather than from scratch, as long
 * as the flows started since run over links of the record.
 * Removing flows fixed at level k or later (the k-th bottleneck fixed them)
 * changes nothing before level k: a removed flow was unfixed on all its
 * links until then, and dropping it only raises the shares of those links,
 * so they become bottlenecks no earlier; every other link's share is as it
 * was. A started flow lowers the shares of its links: nothing changes before
 * the first level at which one of them could be the least (see
 * restart_checkpoint). Links are taken least share first, and links whose
 * shares tie give the same rates in either order, so a solve from a
 * checkpoint before both (rem and free counts of every link, with the
 * started flows and without the ended ones) repeats the rest as a solve
 * from scratch would, up to rounding. Flows fixed at high shares (fast
 * ones, which end first) sit at late levels: an all-to-all's intra-node flows ending cost the NVLink
 * levels only. After ends alone, a restart may also skip the tie (links
 * of one share, such as every NIC of an all-to-all) the lowest of them was
 * fixed in, from the checkpoint at its end (flownet_restart.c). Capped
 * flows turn restarts off (the caps interleave with levels). */
void
flownet_solve (FlowNet *fn, SimTime now)
{
  if (!fn->needs_solve)
    return;
  fn->solves++;
  /* the component touched, searched for unless changes keep touching most
   * flows; even then a search comes now and then, so that a network that
   * stopped being one big component goes back to solving its parts: 64
   * solves after the last one, twice as many after each search that found
   * one component still (up to 1024), and at once when half the flows of
   * the last search are gone (a draining network is where parts appear) */
  gboolean search = !fn->wide || fn->solves >= fn->search_next || fn->n_active < fn->search_active / 2;
  gboolean whole = TRUE;
  guint snl = 0, snf = 0, snw = 0;
  if (search)
    {
      snf = search_component (fn, &snl, &snw);
      fn->wide = snf > fn->n_active / 2;
      /* a search that reached every flow leaves a restart as good as before */
      whole = snf == fn->n_active;
      fn->search_gap = whole && fn->search_gap > 0 ? MIN (2 * fn->search_gap, 1024u) : 64;
      fn->search_next = fn->solves + fn->search_gap;
      fn->search_active = fn->n_active;
    }
  gboolean restart = fn->rec_valid && fn->n_capped == 0 && fn->rec_levels > 0 && whole
                     && (fn->rm_n > 0 || fn->add_n > 0) && (fn->rm_n == 0 || fn->rm_min < fn->rec_levels);
  fn->needs_solve = FALSE;
  fn->removed = FALSE;
  fn->added_first = SIM_TIME_MAX;
  fn->added_min_est = G_MAXDOUBLE;
  guint nl, nf = 0, level = 0;
  gboolean record;
  if (restart)
    {
      /* it keeps the record's epoch, or starts a new one (see there) */
      nl = fn->rec_nl;
      level = flownet_restart_from_record (fn);
      fn->restarts++;
      record = TRUE;
    }
  else
    {
      flownet_new_epoch (fn);
      if (whole)
        {
          nf = gather_all (fn, &nl);
          record = fn->n_capped == 0;
        }
      else
        {
          /* the component searched, alone: its links become the solve's */
          guint *t = fn->comp_links;
          fn->comp_links = fn->search_links;
          fn->search_links = t;
          guint c = fn->cap_comp_links;
          fn->cap_comp_links = fn->cap_search_links;
          fn->cap_search_links = c;
          nl = snl;
          nf = snw;
          record = FALSE;
        }
    }
  for (guint i = 0; i < fn->n_dirty; i++)
    {
      fn->links[fn->dirty_links[i]].dirty = 0;
      fn->d_cnt[fn->dirty_links[i]] = 0;
    }
  fn->n_dirty = 0;
  guint ep = fn->epoch;
  fn->rm_min = fn->join_min = G_MAXUINT;
  fn->rm_n = fn->add_n = 0;
  fn->rec_valid = FALSE;
  fn->n_tie_ends = 0;
  if (record && !restart)
    {
      fn->ck_every = MAX (16u, nl / 32);
      fn->ck_stride = fn->n_links;
      fn->n_ck = 0;
      for (guint i = 0; i < nl; i++)
        fn->rec_pos[fn->comp_links[i]] = i;
    }
  if (record)
    flownet_record_open (fn, level);

  guint n_capped = 0;
  for (guint i = 0; i < fn->n_capped; i++)
    if (fn->seen[fn->capped[i]] == fn->mark)
      {
        GROW (fn->comp_capped, fn->cap_comp_capped, n_capped + 1);
        fn->comp_capped[n_capped++] = fn->capped[i];
      }
  if (n_capped > 1)
    g_qsort_with_data (fn->comp_capped, (gint) n_capped, sizeof (guint), cmp_cap, fn->cold);

  if (!restart)
    {
      for (guint i = 0; i < nl; i++)
        {
          guint li = fn->comp_links[i];
          fn->rem[li] = fn->links[li].capacity;
          fn->n_free[li] = fn->links[li].weight;
        }
      fn->unfixed = nf;
    }
  RadixHeap *heap = &fn->heap;
  heap_build (fn, nl);

  /* once every flow of the component is fixed, the links left in the heap
   * have nothing to give */
  guint next_cap = 0;
  while (fn->unfixed > 0)
    {
      double key;
      guint li;
      if (!radix_heap_pop (heap, &key, &li))
        break;
      if (fn->n_free[li] == 0)
        continue; /* its flows were all fixed at other links */
      double share = fn->rem[li] / fn->n_free[li];
      if (share > key)
        {
          /* stale key (shares only grow): pushed again with its share */
          radix_heap_push (heap, share, li);
          continue;
        }
      /* a capped flow slower than this share is fixed first, at its cap;
       * the link then takes its turn again with its new share (not below
       * the key it came up with, should rounding say so) */
      gboolean capped_any = FALSE;
      for (; next_cap < n_capped; next_cap++)
        {
          guint c = fn->comp_capped[next_cap];
          if (fn->fixed[c].epoch == ep)
            continue;
          if (fn->cold[c].cap >= share)
            break;
          fix_capped (fn, c, now);
          capped_any = TRUE;
        }
      if (capped_any)
        {
          if (fn->n_free[li] > 0)
            radix_heap_push (heap, MAX (key, fn->rem[li] / fn->n_free[li]), li);
          continue;
        }
      if (record)
        flownet_record_level (fn, level, li, share);
      fn->level = level++;
      /* the taken link's own state is not updated flow by flow (a serial
       * chain through memory): all its unfixed flows are fixed now, which
       * leaves it nothing; nothing reads a taken link's state again, since
       * a restart never resumes after the level that took a link that
       * gained flows (restart_checkpoint) */
      guint left = fn->n_free[li];
      fn->n_free[li] = 0;
      fn->rem[li] = 0.0;
      /* a bundle for which this is a private link (not every member on
       * it) splits into its flows, and the list is gone through again
       * from where the bundle was: a split changes nothing before it (the
       * bundle leaves the list, its last entry taking its place, and the
       * flows it splits into come at the end) */
      gboolean again = TRUE;
      guint from = 0;
      while (again)
        {
          again = FALSE;
          const guint *le = fn->links[li].flows;
          const guint8 *hb = fn->links[li].hop;
          guint n = fn->links[li].n_flows;
          if (n > SCAN_LONG)
            {
              /* a long list, flow by flow: its flows sit at scattered slots,
               * so their stamps are fetched far ahead, and the records of
               * those a solve will fix (most of a flow's visits find it
               * fixed already and read only the stamp) */
              for (guint j = from; j < n && left > 0 && !again; j++)
                {
                  if (j + 32 < n)
                    __builtin_prefetch (&fn->fixed[le[j + 32]]);
                  if (j + 16 < n && fn->fixed[le[j + 16]].epoch != ep)
                    {
                      __builtin_prefetch (&fn->hot[le[j + 16]]);
                      __builtin_prefetch (&fn->end[le[j + 16]]);
                    }
                  if (fn->fixed[le[j]].epoch != ep)
                    {
                      fix_listed (fn, le[j], hb[j], li, share, now, &left, &again);
                      from = j;
                    }
                }
              continue;
            }
          /* else in chunks: a chunk's unfixed flows first (branch-free:
           * whether a listed flow is fixed yet is a coin toss), their
           * records fetched together, then fixed in list order; the scan
           * ends once the link's unfixed flows are all found */
          for (guint j0 = from; j0 < n && left > 0 && !again; j0 += SCAN_CHUNK)
            {
              guint j1 = MIN (j0 + SCAN_CHUNK, n), todo[SCAN_CHUNK], at[SCAN_CHUNK], m = 0;
              for (guint j = j0; j < j1; j++)
                {
                  todo[m] = le[j];
                  at[m] = j;
                  m += fn->fixed[le[j]].epoch != ep;
                }
              for (guint k = 0; k < m; k++)
                {
                  __builtin_prefetch (&fn->hot[todo[k]]);
                  __builtin_prefetch (&fn->end[todo[k]]);
                }
              for (guint k = 0; k < m && !again; k++)
                {
                  fix_listed (fn, todo[k], hb[at[k]], li, share, now, &left, &again);
                  from = at[k];
                }
            }
        }
    }
  /* capped flows whose links never became a bottleneck run at their cap */
  for (; next_cap < n_capped; next_cap++)
    if (fn->fixed[fn->comp_capped[next_cap]].epoch != ep)
      fix_capped (fn, fn->comp_capped[next_cap], now);
  if (record)
    {
      flownet_record_close (fn, level);
      fn->rec_valid = TRUE;
      fn->rec_nl = nl;
      fn->rec_levels = level;
    }
  if (fn->n_split_off > 0)
    flownet_bundle_merge (fn, now);
  tighten_loose (fn);
}

guint
flownet_n_active (const FlowNet *fn)
{
  return fn->n_active;
}

double
flownet_flow_rate (const FlowNet *fn, guint flow)
{
  g_return_val_if_fail (flow < fn->n_slots, 0.0);
  return fn->hot[flow].rate;
}

double
flownet_flow_remaining (const FlowNet *fn, guint flow, SimTime now)
{
  g_return_val_if_fail (flow < fn->n_slots, 0.0);
  const FlowHot *f = &fn->hot[flow];
  return f->remaining - f->rate * sim_time_to_seconds (now - f->t_update);
}

guint64
flownet_solve_restarts (const FlowNet *fn)
{
  return fn->restarts;
}

guint64
flownet_solve_tie_skips (const FlowNet *fn)
{
  return fn->tie_skips;
}

guint64
flownet_solve_count (const FlowNet *fn)
{
  return fn->solves;
}

guint64
flownet_solve_work (const FlowNet *fn)
{
  return fn->work;
}
