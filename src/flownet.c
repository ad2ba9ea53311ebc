/* Max-min fair fluid network.
 *
 * The allocation is found by progressive filling. Every link l in the
 * component being solved starts with its capacity C_l and the count n_l of
 * flows on it whose rate is not yet fixed; its fair share is C_l / n_l. The
 * link with the smallest share is a bottleneck: its unfixed flows get that
 * share, which is subtracted from every link on their paths. A rate cap acts
 * as a private link of one flow. Fixing flows at the smallest share never
 * lowers another link's share (if r <= C/n then (C - r)/(n - 1) >= C/n), so
 * the link heap is lazy: a popped entry whose share has grown is pushed back
 * with its new key. Each (flow, link) incidence is visited once, so a solve
 * costs O(F h + L log L) for F flows of h hops on L links.
 *
 * Only the connected component of links and flows reachable from a link whose
 * flow set changed is re-solved; rates elsewhere cannot change. Per-link flow
 * lists give that reachability and the flows of a bottleneck without a scan.
 * Flow slots are recycled through a free list, and every scratch array lives
 * in the FlowNet, so a steady run does not allocate.
 */
#include "flownet.h"

#include <string.h>

typedef struct {
  /* hot in a solve: first cache line */
  guint epoch;  /* == fn->epoch: in the component being solved */
  guint8 n_hops;
  guint8 fixed; /* rate fixed in this solve */
  double rate;  /* bytes/s */
  guint path[FLOWNET_MAX_HOPS];
  /* the rest */
  double old_rate;  /* rate before the current solve */
  double remaining; /* bytes left as of t_update */
  double cap;       /* rate cap, 0 when none */
  SimTime t_update; /* when remaining was last brought up to date */
  SimTime end;      /* projected end at the current rate, SIM_TIME_MAX at rate 0 */
  SimTime start;
  guint64 tag;
  guint pos[FLOWNET_MAX_HOPS]; /* index of this flow in each link's list */
  guint active_pos;            /* index in fn->active, G_MAXUINT when free */
} Flow;

typedef struct {
  double capacity;
  double bytes;
  guint *flows;
  guint n_flows;
  guint cap_flows;
  guint epoch; /* == fn->epoch: in the component being solved */
  guint8 dirty;
} Link;

typedef struct {
  double share;
  guint link;
} HeapEntry;

struct FlowNet {
  Link *links;
  guint n_links, cap_links;
  /* hot per-link solve state, kept apart for cache locality */
  double *rem;   /* capacity left during a solve */
  guint *n_free; /* unfixed flows during a solve */
  guint epoch;

  Flow *flows;
  guint n_flow_slots, cap_flow_slots;
  guint *free_slots;
  guint n_free_slots;

  guint *active; /* ids of active flows */
  guint n_active, cap_active;
  guint cap_free_slots;
  gboolean removed;       /* flows ended since the last solve */
  gboolean wide;          /* the last searched component held most flows */
  SimTime added_first;    /* first start since the last solve, SIM_TIME_MAX if none */
  double added_min_est;   /* shortest fair-share duration estimate of those, s */

  gboolean needs_solve;
  guint *dirty_links;
  guint n_dirty, cap_dirty;

  /* scratch for solve, reused */
  guint *comp_links, *comp_flows, *capped;
  guint cap_comp_links, cap_comp_flows, cap_capped;
  HeapEntry *heap;
  guint cap_heap;
  FlowEnd *done;
  guint cap_done;

  guint64 solves;
  guint64 work;
};

#define GROW(arr, capv, need)                                                                      \
  do                                                                                               \
    {                                                                                              \
      if ((need) > (capv))                                                                         \
        {                                                                                          \
          guint nc_ = (capv) ? (capv) : 16;                                                        \
          while (nc_ < (need))                                                                     \
            nc_ *= 2;                                                                              \
          (arr) = g_realloc_n ((arr), nc_, sizeof *(arr));                                         \
          (capv) = nc_;                                                                            \
        }                                                                                          \
    }                                                                                              \
  while (0)

FlowNet *
flownet_new (void)
{
  FlowNet *fn = g_new0 (FlowNet, 1);
  fn->added_first = SIM_TIME_MAX;
  fn->added_min_est = G_MAXDOUBLE;
  return fn;
}

void
flownet_free (FlowNet *fn)
{
  if (fn == NULL)
    return;
  for (guint i = 0; i < fn->n_links; i++)
    g_free (fn->links[i].flows);
  g_free (fn->links);
  g_free (fn->rem);
  g_free (fn->n_free);
  g_free (fn->flows);
  g_free (fn->free_slots);
  g_free (fn->active);
  g_free (fn->dirty_links);
  g_free (fn->comp_links);
  g_free (fn->comp_flows);
  g_free (fn->capped);
  g_free (fn->heap);
  g_free (fn->done);
  g_free (fn);
}

guint
flownet_add_link (FlowNet *fn, double capacity)
{
  g_return_val_if_fail (capacity > 0.0 && isfinite (capacity), G_MAXUINT);
  GROW (fn->links, fn->cap_links, fn->n_links + 1);
  fn->rem = g_realloc_n (fn->rem, fn->cap_links, sizeof (double));
  fn->n_free = g_realloc_n (fn->n_free, fn->cap_links, sizeof (guint));
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

static void
mark_dirty (FlowNet *fn, guint link)
{
  Link *l = &fn->links[link];
  fn->needs_solve = TRUE;
  if (l->dirty)
    return;
  l->dirty = 1;
  GROW (fn->dirty_links, fn->cap_dirty, fn->n_dirty + 1);
  fn->dirty_links[fn->n_dirty++] = link;
}

guint
flownet_flow_add (FlowNet *fn, SimTime now, double bytes, const guint *path, guint n_hops,
                  double rate_cap, guint64 tag)
{
  g_return_val_if_fail (bytes > 0.0 && isfinite (bytes), G_MAXUINT);
  g_return_val_if_fail (n_hops >= 1 && n_hops <= FLOWNET_MAX_HOPS, G_MAXUINT);

  guint id;
  if (fn->n_free_slots > 0)
    id = fn->free_slots[--fn->n_free_slots];
  else
    {
      GROW (fn->flows, fn->cap_flow_slots, fn->n_flow_slots + 1);
      id = fn->n_flow_slots++;
    }
  Flow *f = &fn->flows[id];
  memset (f, 0, sizeof *f);
  f->remaining = bytes;
  f->cap = rate_cap > 0.0 ? rate_cap : 0.0;
  f->start = now;
  f->t_update = now;
  f->end = SIM_TIME_MAX;
  f->tag = tag;
  f->n_hops = (guint8) n_hops;
  for (guint h = 0; h < n_hops; h++)
    {
      guint li = path[h];
      g_return_val_if_fail (li < fn->n_links, G_MAXUINT);
      for (guint k = 0; k < h; k++)
        g_assert (path[k] != li); /* a path visits a link once */
      Link *l = &fn->links[li];
      GROW (l->flows, l->cap_flows, l->n_flows + 1);
      f->path[h] = li;
      f->pos[h] = l->n_flows;
      l->flows[l->n_flows++] = id;
      l->bytes += bytes;
      mark_dirty (fn, li);
    }
  GROW (fn->active, fn->cap_active, fn->n_active + 1);
  f->active_pos = fn->n_active;
  fn->active[fn->n_active++] = id;
  /* a rough duration: its bytes at an equal share of its tightest link */
  double est = G_MAXDOUBLE;
  for (guint h = 0; h < n_hops; h++)
    {
      const Link *l = &fn->links[path[h]];
      est = MIN (est, bytes * l->n_flows / l->capacity);
    }
  if (now < fn->added_first)
    fn->added_first = now;
  fn->added_min_est = MIN (fn->added_min_est, est);
  return id;
}

static void
flow_remove (FlowNet *fn, guint id)
{
  Flow *f = &fn->flows[id];
  for (guint h = 0; h < f->n_hops; h++)
    {
      Link *l = &fn->links[f->path[h]];
      guint p = f->pos[h];
      guint moved = l->flows[--l->n_flows];
      if (moved != id)
        {
          l->flows[p] = moved;
          Flow *g = &fn->flows[moved];
          for (guint k = 0; k < g->n_hops; k++)
            if (g->path[k] == f->path[h])
              {
                g->pos[k] = p;
                break;
              }
        }
      mark_dirty (fn, f->path[h]);
    }
  guint ap = f->active_pos;
  guint last = fn->active[--fn->n_active];
  fn->active[ap] = last;
  fn->flows[last].active_pos = ap;
  f->active_pos = G_MAXUINT;
  fn->removed = TRUE;
  GROW (fn->free_slots, fn->cap_free_slots, fn->n_free_slots + 1);
  fn->free_slots[fn->n_free_slots++] = id;
}

gboolean
flownet_needs_solve (const FlowNet *fn)
{
  return fn->needs_solve;
}

/* ---- lazy min-heap of link shares, ties broken by link id so the order
 * never depends on the heap's history ---- */

static inline gboolean
entry_before (const HeapEntry *a, const HeapEntry *b)
{
  return a->share < b->share || (a->share == b->share && a->link < b->link);
}

static void
heap_push (FlowNet *fn, guint *n, double share, guint link)
{
  GROW (fn->heap, fn->cap_heap, *n + 1);
  HeapEntry e = { share, link };
  guint i = (*n)++;
  while (i > 0)
    {
      guint p = (i - 1) / 2;
      if (!entry_before (&e, &fn->heap[p]))
        break;
      fn->heap[i] = fn->heap[p];
      i = p;
    }
  fn->heap[i] = e;
}

static HeapEntry
heap_pop (FlowNet *fn, guint *n)
{
  HeapEntry top = fn->heap[0];
  HeapEntry last = fn->heap[--(*n)];
  guint i = 0;
  for (;;)
    {
      guint l = 2 * i + 1;
      if (l >= *n)
        break;
      guint c = (l + 1 < *n && entry_before (&fn->heap[l + 1], &fn->heap[l])) ? l + 1 : l;
      if (!entry_before (&fn->heap[c], &last))
        break;
      fn->heap[i] = fn->heap[c];
      i = c;
    }
  if (*n > 0)
    fn->heap[i] = last;
  return top;
}

static inline void
fix_flow (FlowNet *fn, Flow *f, double rate)
{
  f->rate = rate;
  f->fixed = 1;
  for (guint h = 0; h < f->n_hops; h++)
    {
      guint li = f->path[h];
      double r = fn->rem[li] - rate;
      fn->rem[li] = r > 0.0 ? r : 0.0;
      fn->n_free[li]--;
    }
  fn->work += f->n_hops;
}

static int
cmp_cap (const void *a, const void *b, void *user)
{
  const Flow *flows = user;
  double ca = flows[*(const guint *) a].cap, cb = flows[*(const guint *) b].cap;
  if (ca != cb)
    return ca < cb ? -1 : 1;
  return *(const guint *) a < *(const guint *) b ? -1 : 1;
}

/* Gathers the component reachable from the dirty links into comp_links and
 * comp_flows (breadth first over link -> flows -> links), marking members
 * with the current epoch. */
static void
gather_component (FlowNet *fn, guint *n_links, guint *n_flows)
{
  guint nl = 0, nf = 0, ep = fn->epoch;
  for (guint i = 0; i < fn->n_dirty; i++)
    {
      guint li = fn->dirty_links[i];
      fn->links[li].dirty = 0;
      if (fn->links[li].epoch == ep)
        continue;
      fn->links[li].epoch = ep;
      GROW (fn->comp_links, fn->cap_comp_links, nl + 1);
      fn->comp_links[nl++] = li;
    }
  fn->n_dirty = 0;
  for (guint q = 0; q < nl; q++)
    {
      const Link *l = &fn->links[fn->comp_links[q]];
      for (guint j = 0; j < l->n_flows; j++)
        {
          guint fi = l->flows[j];
          Flow *f = &fn->flows[fi];
          if (f->epoch == ep)
            continue;
          f->epoch = ep;
          GROW (fn->comp_flows, fn->cap_comp_flows, nf + 1);
          fn->comp_flows[nf++] = fi;
          for (guint h = 0; h < f->n_hops; h++)
            {
              Link *m = &fn->links[f->path[h]];
              if (m->epoch == ep)
                continue;
              m->epoch = ep;
              GROW (fn->comp_links, fn->cap_comp_links, nl + 1);
              fn->comp_links[nl++] = f->path[h];
            }
        }
      fn->work += l->n_flows;
    }
  *n_links = nl;
  *n_flows = nf;
}

/* The whole network as one component: every active flow, every link that
 * carries one. */
static void
gather_all (FlowNet *fn, guint *n_links, guint *n_flows)
{
  guint nl = 0, ep = fn->epoch;
  for (guint i = 0; i < fn->n_dirty; i++)
    fn->links[fn->dirty_links[i]].dirty = 0;
  fn->n_dirty = 0;
  GROW (fn->comp_links, fn->cap_comp_links, fn->n_links);
  for (guint li = 0; li < fn->n_links; li++)
    if (fn->links[li].n_flows > 0)
      {
        fn->links[li].epoch = ep;
        fn->comp_links[nl++] = li;
      }
  GROW (fn->comp_flows, fn->cap_comp_flows, fn->n_active);
  for (guint i = 0; i < fn->n_active; i++)
    {
      fn->comp_flows[i] = fn->active[i];
      fn->flows[fn->active[i]].epoch = ep;
    }
  *n_links = nl;
  *n_flows = fn->n_active;
}

void
flownet_solve (FlowNet *fn, SimTime now)
{
  if (!fn->needs_solve)
    return;
  fn->needs_solve = FALSE;
  fn->removed = FALSE;
  fn->added_first = SIM_TIME_MAX;
  fn->added_min_est = G_MAXDOUBLE;
  fn->solves++;
  if (++fn->epoch == 0) /* wrapped: clear stale marks */
    {
      for (guint i = 0; i < fn->n_links; i++)
        fn->links[i].epoch = 0;
      for (guint i = 0; i < fn->n_flow_slots; i++)
        fn->flows[i].epoch = 0;
      fn->epoch = 1;
    }

  guint nl, nf;
  if (fn->wide && fn->solves % 16 != 0)
    gather_all (fn, &nl, &nf);
  else
    {
      gather_component (fn, &nl, &nf);
      /* when changes keep touching nearly everything, skip the search for a
       * while: solving a union of components at once gives the same rates */
      fn->wide = nf >= fn->n_active / 2 + 1;
    }

  guint n_capped = 0;
  for (guint i = 0; i < nf; i++)
    {
      Flow *f = &fn->flows[fn->comp_flows[i]];
      g_assert (now >= f->t_update);
      f->old_rate = f->rate;
      f->fixed = 0;
      f->rate = 0.0;
      if (f->cap > 0.0)
        {
          GROW (fn->capped, fn->cap_capped, n_capped + 1);
          fn->capped[n_capped++] = fn->comp_flows[i];
        }
    }
  if (n_capped > 1)
    g_qsort_with_data (fn->capped, (gint) n_capped, sizeof (guint), cmp_cap, fn->flows);

  guint hn = 0;
  for (guint i = 0; i < nl; i++)
    {
      guint li = fn->comp_links[i];
      fn->rem[li] = fn->links[li].capacity;
      fn->n_free[li] = fn->links[li].n_flows;
      if (fn->n_free[li] > 0)
        heap_push (fn, &hn, fn->rem[li] / fn->n_free[li], li);
    }

  guint next_cap = 0;
  while (hn > 0)
    {
      HeapEntry e = heap_pop (fn, &hn);
      guint li = e.link;
      if (fn->n_free[li] == 0)
        continue;
      double share = fn->rem[li] / fn->n_free[li];
      if (share > e.share)
        {
          heap_push (fn, &hn, share, li); /* stale key: shares only grow */
          continue;
        }
      /* a capped flow slower than this share is fixed first at its cap */
      gboolean capped_any = FALSE;
      while (next_cap < n_capped)
        {
          Flow *c = &fn->flows[fn->capped[next_cap]];
          if (!c->fixed && c->cap >= share)
            break;
          if (!c->fixed)
            {
              fix_flow (fn, c, c->cap);
              capped_any = TRUE;
            }
          next_cap++;
        }
      if (capped_any)
        {
          if (fn->n_free[li] > 0)
            heap_push (fn, &hn, fn->rem[li] / fn->n_free[li], li);
          continue;
        }
      const Link *l = &fn->links[li];
      for (guint j = 0; j < l->n_flows && fn->n_free[li] > 0; j++)
        {
          Flow *f = &fn->flows[l->flows[j]];
          if (!f->fixed)
            fix_flow (fn, f, share);
        }
    }
  /* capped flows on links that never became a bottleneck run at their cap */
  for (; next_cap < n_capped; next_cap++)
    {
      Flow *c = &fn->flows[fn->capped[next_cap]];
      if (!c->fixed)
        fix_flow (fn, c, c->cap);
    }

  for (guint i = 0; i < nf; i++)
    {
      Flow *f = &fn->flows[fn->comp_flows[i]];
      if (f->rate == f->old_rate)
        continue; /* same rate: its bytes and projected end still hold */
      f->remaining -= f->old_rate * sim_time_to_seconds (now - f->t_update);
      f->t_update = now;
      if (f->rate <= 0.0)
        f->end = SIM_TIME_MAX;
      else if (f->remaining <= f->rate * 1e-12 + 1e-9) /* drained but for rounding */
        f->end = now;
      else
        f->end = now + sim_time_ceil_ps (f->remaining / f->rate * 1e12);
    }
}

SimTime
flownet_next_end (const FlowNet *fn)
{
  SimTime first = SIM_TIME_MAX;
  for (guint i = 0; i < fn->n_active; i++)
    {
      SimTime end = fn->flows[fn->active[i]].end;
      if (end < first)
        first = end;
    }
  return first;
}

const FlowEnd *
flownet_take_batch (FlowNet *fn, SimTime now, double tolerance, guint *n_done)
{
  guint n = 0;
  for (guint i = 0; i < fn->n_active;)
    {
      guint id = fn->active[i];
      Flow *f = &fn->flows[id];
      if (f->end != SIM_TIME_MAX
          && f->end <= now + (SimTime) (tolerance * (double) (now - f->start)))
        {
          g_assert (f->end >= now);
          GROW (fn->done, fn->cap_done, n + 1);
          fn->done[n].tag = f->tag;
          fn->done[n].end = f->end;
          fn->done[n].rate = f->rate;
          n++;
          flow_remove (fn, id); /* moves the last active flow into slot i */
          continue;
        }
      i++;
    }
  *n_done = n;
  return fn->done;
}

guint
flownet_n_active (const FlowNet *fn)
{
  return fn->n_active;
}

double
flownet_flow_rate (const FlowNet *fn, guint flow)
{
  g_return_val_if_fail (flow < fn->n_flow_slots, 0.0);
  return fn->flows[flow].rate;
}

double
flownet_flow_remaining (const FlowNet *fn, guint flow, SimTime now)
{
  g_return_val_if_fail (flow < fn->n_flow_slots, 0.0);
  const Flow *f = &fn->flows[flow];
  return f->remaining - f->rate * sim_time_to_seconds (now - f->t_update);
}

SimTime
flownet_added_due (const FlowNet *fn, double tolerance)
{
  if (!fn->needs_solve || fn->removed || fn->added_first == SIM_TIME_MAX)
    return 0;
  return fn->added_first + sim_time_from_seconds (tolerance * fn->added_min_est);
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
