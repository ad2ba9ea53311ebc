/* Bundles: flows that share a core, kept as one entry of the network.
 *
 * A flow added with flownet_flow_add_shared runs over a private prefix
 * (links of its own, such as the NVLink hops to the GPU whose NIC it
 * leaves by) and then a core (flownet_core: such as the two NIC ports of
 * a rail). The flows on one core form a bundle: one entry in the flow
 * arrays and in the list of each of its links, with a hop table that says
 * how many of its members cross each link (all of them the core's; each
 * private link its own count). In the progressive filling a bundle is
 * fixed when one of its core links is taken: every member is on it, so
 * every member gets its share, which is what max-min gives each of them
 * as flows of their own (a member is fixed at the first of its links
 * taken, and none of its private links was taken before, or the bundle
 * would have split). Its other links lose the share times their counts.
 * When a private link of an unfixed bundle is taken first, the members
 * do not share one rate: the bundle splits there and then into plain
 * flows (the links' counts, capacities and loads stay as they are, so the
 * fill goes on). A later solve that fixes such a flow by the same link as
 * its bundle (the private link no longer binds it) merges it back
 * (flownet_bundle_merge).
 *
 * Members share the rate, so one clock counts the bytes each sent; a
 * member is done when the clock reaches its `fin`. The bundle's record
 * holds the bytes to its first member's fin as its remaining bytes, and
 * its members are a heap on fin: a batch of ends takes members one after
 * another as a continued flow's chunks. A member that joins between two
 * solves waits, as a new flow does, at rate 0 until the next solve fixes
 * the bundle (which it must: its links are dirty and the bundle's share
 * on its core fell), and takes its place on the clock then.
 *
 * So a solve visits a bundle once where it would visit each member: for
 * the direct all-to-all on a multi-plane cluster, eight flows (the GPUs of
 * one node to one GPU elsewhere) share the two NIC ports of a rail. */
#include "flownet_private.h"

#include <string.h>

static inline gboolean
member_less (const Member *a, const Member *b)
{
  return a->fin < b->fin || (a->fin == b->fin && a->seq < b->seq);
}

static void
heap_push (Bundle *b, const Member *m)
{
  GROW (b->m, b->cap_m, b->n_m + 1);
  guint i = b->n_m++;
  while (i > 0)
    {
      guint p = (i - 1) / 2;
      if (!member_less (m, &b->m[p]))
        break;
      b->m[i] = b->m[p];
      i = p;
    }
  b->m[i] = *m;
}

/* Puts x at position i of the heap (of b->n_m), moving it down. */
static void
sift_down (Bundle *b, guint i, const Member *x)
{
  guint n = b->n_m;
  for (;;)
    {
      guint c = 2 * i + 1;
      if (c >= n)
        break;
      if (c + 1 < n && member_less (&b->m[c + 1], &b->m[c]))
        c++;
      if (!member_less (&b->m[c], x))
        break;
      b->m[i] = b->m[c];
      i = c;
    }
  b->m[i] = *x;
}

static Member
heap_pop (Bundle *b)
{
  Member top = b->m[0];
  Member last = b->m[--b->n_m];
  if (b->n_m > 0)
    sift_down (b, 0, &last);
  return top;
}

guint
flownet_core (FlowNet *fn, const guint *links, guint n)
{
  g_return_val_if_fail (n >= 1 && n <= FLOWNET_MAX_HOPS, G_MAXUINT);
  for (guint h = 0; h < n; h++)
    {
      g_return_val_if_fail (links[h] < fn->n_links, G_MAXUINT);
      for (guint k = 0; k < h; k++)
        g_return_val_if_fail (links[k] != links[h], G_MAXUINT);
    }
  if (fn->core_ids == NULL)
    fn->core_ids = g_hash_table_new_full (g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL);
  GBytes *key = g_bytes_new (links, n * sizeof (guint));
  gpointer v;
  if (g_hash_table_lookup_extended (fn->core_ids, key, NULL, &v))
    {
      g_bytes_unref (key);
      return GPOINTER_TO_UINT (v) - 1;
    }
  guint id = fn->n_cores++;
  g_hash_table_insert (fn->core_ids, key, GUINT_TO_POINTER (id + 1));
  GROW (fn->core_off, fn->cap_core_off, fn->n_cores + 1);
  GROW (fn->core_bundle, fn->cap_core_bundle, fn->n_cores);
  GROW (fn->core_links, fn->cap_core_links, fn->n_core_links + n);
  fn->core_off[id] = fn->n_core_links;
  memcpy (fn->core_links + fn->n_core_links, links, n * sizeof (guint));
  fn->n_core_links += n;
  fn->core_off[id + 1] = fn->n_core_links;
  fn->core_bundle[id] = G_MAXUINT;
  return id;
}

/* A new, empty bundle on core `core`, listed on the core's links. */
static guint
bundle_new (FlowNet *fn, SimTime now, guint core)
{
  guint bi;
  if (!free_ids_take (&fn->free_bundles, &bi))
    {
      if (fn->n_bundles == fn->cap_bundles) /* four cache lines a record */
        fn->bundles = util_grow_aligned (fn->bundles, &fn->cap_bundles, fn->n_bundles, sizeof (Bundle), 64);
      bi = fn->n_bundles++;
      memset (&fn->bundles[bi], 0, sizeof (Bundle));
    }
  guint slot = flownet_slot_start (fn, now, now);
  Bundle *b = &fn->bundles[bi];
  guint off = fn->core_off[core], n = fn->core_off[core + 1] - off;
  b->slot = slot;
  b->core = core;
  b->n_core = b->n_hops = n;
  b->n_m = b->n_pend = b->seq = 0;
  b->priv_mask = 0;
  fn->hot[slot].bundle = 1;
  fn->hot[slot].path[0] = bi;
  for (guint h = 0; h < n; h++)
    {
      b->link[h] = fn->core_links[off + h];
      b->wt[h] = 0;
      list_append (fn, b->link[h], slot, (guint8) (HOP_BUNDLE | h));
    }
  fn->core_bundle[core] = bi;
  fn->n_active++;
  return bi;
}

/* The bundle leaves the network (its members are gone or split off). */
static void
bundle_free (FlowNet *fn, guint bi)
{
  Bundle *b = &fn->bundles[bi];
  for (guint h = 0; h < b->n_hops; h++)
    list_remove (fn, b->link[h], b->pos[h]);
  b->n_hops = 0;
  fn->core_bundle[b->core] = G_MAXUINT;
  guint slot = b->slot;
  fn->hot[slot].bundle = 0;
  fn->end[slot] = fn->start[slot] = SIM_TIME_MAX;
  free_ids_put (&fn->free_slots, slot);
  free_ids_put (&fn->free_bundles, bi);
  fn->n_active--;
}

/* The hop of private link li, or n_hops when the bundle is not on it. */
static guint
hop_of (const Bundle *b, guint li)
{
  if (!(b->priv_mask & (G_GUINT64_CONSTANT (1) << (li % 64))))
    return b->n_hops; /* (a new private link, the common case: no search) */
  guint h = b->n_core;
  while (h < b->n_hops && b->link[h] != li)
    h++;
  return h;
}

/* The hop of private link li, which a member joining the bundle crosses:
 * a new one (and the bundle listed on the link) when it has none yet. */
static guint
hop_take (FlowNet *fn, Bundle *b, guint li)
{
  guint hop = hop_of (b, li);
  if (hop == b->n_hops)
    {
      b->link[hop] = li;
      b->wt[hop] = 0;
      b->n_hops++;
      b->priv_mask |= G_GUINT64_CONSTANT (1) << (li % 64);
      list_append (fn, li, b->slot, (guint8) (HOP_BUNDLE | hop));
    }
  return hop;
}

/* Renumbers hop `from` to `to` in the members of m[0 .. n). */
static void
members_renumber (Member *m, guint n, guint from, guint to)
{
  for (guint i = 0; i < n; i++)
    for (guint k = 0; k < m[i].n_priv; k++)
      if (m[i].hop[k] == from)
        m[i].hop[k] = (guint8) to;
}

/* Drops hop h (no member on it any more): the last hop takes its place,
 * in the link's list and in the members (of the heap and waiting) on it. */
static void
hop_remove (FlowNet *fn, Bundle *b, guint h)
{
  list_remove (fn, b->link[h], b->pos[h]);
  guint last = --b->n_hops;
  if (h != last)
    {
      b->link[h] = b->link[last];
      b->wt[h] = b->wt[last];
      b->pos[h] = b->pos[last];
      fn->links[b->link[h]].hop[b->pos[h]] = (guint8) (HOP_BUNDLE | h);
      members_renumber (b->m, b->n_m, last, h);
      members_renumber (b->pend, b->n_pend, last, h);
    }
}

/* A member's private links (its hops looked up while the table holds them). */
static void
member_links (const Bundle *b, const Member *m, guint *links)
{
  for (guint k = 0; k < m->n_priv; k++)
    links[k] = b->link[m->hop[k]];
}

/* The bundle's clock (bytes each member sent) at `now`, at its rate since
 * it was last brought up to date; 0 while it has no member on it. */
static double
clock_at (const FlowNet *fn, const Bundle *b, SimTime now)
{
  if (b->n_m == 0)
    return 0.0;
  const FlowHot *f = &fn->hot[b->slot];
  return b->m[0].fin - (f->remaining - f->rate * sim_time_to_seconds (now - f->t_update));
}

gboolean
flownet_shared_ok (const FlowNet *fn, const guint *priv, guint n_priv, guint core)
{
  if (core >= fn->n_cores)
    return FALSE;
  guint off = fn->core_off[core], n_core = fn->core_off[core + 1] - off;
  if (n_priv + n_core > FLOWNET_MAX_HOPS)
    return FALSE;
  for (guint h = 0; h < n_priv; h++)
    {
      if (priv[h] >= fn->n_links)
        return FALSE;
      for (guint k = 0; k < h; k++)
        if (priv[k] == priv[h])
          return FALSE;
      for (guint k = 0; k < n_core; k++)
        if (priv[h] == fn->core_links[off + k])
          return FALSE;
    }
  return TRUE;
}

void
flownet_flow_add_shared (FlowNet *fn, SimTime now, double bytes, const guint *priv, guint n_priv, guint core,
                         guint64 tag)
{
  g_return_if_fail (bytes > 0.0 && isfinite (bytes));
  g_return_if_fail (flownet_shared_ok (fn, priv, n_priv, core));
  flownet_member_add (fn, now, bytes, priv, n_priv, core, tag);
}

void
flownet_member_add (FlowNet *fn, SimTime now, double bytes, const guint *priv, guint n_priv, guint core,
                    guint64 tag)
{
  guint off = fn->core_off[core], n_core = fn->core_off[core + 1] - off;
  guint bi = fn->core_bundle[core];
  if (bi != G_MAXUINT
      && (fn->bundles[bi].n_hops + n_priv > BUNDLE_HOPS
          || fn->bundles[bi].n_m + fn->bundles[bi].n_pend >= BUNDLE_MEMBERS))
    {
      /* its hop table may not hold the new links, or it is full: a flow
       * of its own */
      guint path[FLOWNET_MAX_HOPS];
      if (n_priv > 0) /* (priv may be NULL then) */
        memcpy (path, priv, n_priv * sizeof (guint));
      memcpy (path + n_priv, fn->core_links + off, n_core * sizeof (guint));
      flownet_flow_add_path (fn, now, bytes, path, n_priv + n_core, 0.0, tag);
      return;
    }
  if (bi == G_MAXUINT)
    bi = bundle_new (fn, now, core);
  else if (fn->rec_valid)
    fn->join_min = MIN (fn->join_min, fn->fixed[fn->bundles[bi].slot].level);
  Bundle *b = &fn->bundles[bi];
  Member m = { bytes, tag, b->seq++, (guint8) n_priv, { 0 } };
  double est = 0.0;
  for (guint h = 0; h < n_core + n_priv; h++)
    {
      guint hop = h;
      if (h >= n_core)
        {
          hop = hop_take (fn, b, priv[h - n_core]);
          m.hop[h - n_core] = (guint8) hop;
        }
      guint li = b->link[hop];
      b->wt[hop]++;
      Link *l = &fn->links[li];
      l->bytes += bytes;
      link_joined (fn, li);
      if (est < fn->added_min_est) /* (see flownet_flow_add_path) */
        est = MAX (est, bytes * l->weight / l->capacity);
    }
  FlowHot *f = &fn->hot[b->slot];
  if (f->rate == 0.0)
    {
      /* the bundle sends nothing yet (it was not fixed since it started,
       * or only waiting members are left): its clock stands still until
       * the next solve, so the member takes its place on it now */
      double v = clock_at (fn, b, now);
      m.fin = v + bytes;
      heap_push (b, &m);
      f->remaining = b->m[0].fin - v;
      f->t_update = now;
    }
  else
    {
      GROW (b->pend, b->cap_pend, b->n_pend + 1);
      b->pend[b->n_pend++] = m;
    }
  fn->add_n++;
  fn->n_weight++;
  if (now < fn->added_first)
    fn->added_first = now;
  fn->added_min_est = MIN (fn->added_min_est, est);
}

/* The members that joined since the last fix take their places on the
 * clock (before the fix changes the rate): their bytes count from now, and
 * their links' loads take them in at the old rate, which the fix then
 * moves to the new one with the others'. Leaves the record brought up to
 * date at `now`. */
void
flownet_bundle_admit (FlowNet *fn, Bundle *b, SimTime now)
{
  FlowHot *f = &fn->hot[b->slot];
  double v = clock_at (fn, b, now);
  double old = f->rate;
  for (guint i = 0; i < b->n_pend; i++)
    {
      Member m = b->pend[i];
      if (old != 0.0)
        {
          for (guint h = 0; h < b->n_core; h++)
            fn->load[b->link[h]] += old;
          for (guint h = 0; h < m.n_priv; h++)
            fn->load[b->link[m.hop[h]]] += old;
        }
      m.fin = v + m.fin;
      heap_push (b, &m);
    }
  b->n_pend = 0;
  f->remaining = b->m[0].fin - v;
  f->t_update = now;
}

/* The members of bundle `id` due in this batch (the first one is, and
 * after it those whose ends fall within the deadline), as FlowEnds from
 * done[n] on; returns the new count. The bundle leaves once empty. */
guint
flownet_bundle_take (FlowNet *fn, guint id, SimTime now, double tolerance, guint n)
{
  guint bi = fn->hot[id].path[0];
  Bundle *b = &fn->bundles[bi];
  SimTime latest = now + (SimTime) (tolerance * (double) (now - fn->start[id]));
  for (;;)
    {
      FlowHot *f = &fn->hot[id];
      SimTime end = fn->end[id];
      g_assert (end >= now);
      Member m = heap_pop (b);
      GROW (fn->done, fn->cap_done, n + 1);
      fn->done[n++] = (FlowEnd) { m.tag, end, f->rate, FALSE };
      /* it leaves its links */
      for (guint h = 0; h < b->n_core; h++)
        {
          b->wt[h]--;
          link_left (fn, b->link[h], f->rate);
        }
      guint priv[FLOWNET_MAX_HOPS];
      member_links (b, &m, priv);
      /* its hops, highest first: a hop dropped takes the last one's place,
       * which is then none of its lower ones (m is out of the heap: no
       * renumbering reaches it) */
      for (guint k = 1; k < m.n_priv; k++)
        for (guint j = k; j > 0 && m.hop[j - 1] < m.hop[j]; j--)
          {
            guint8 t = m.hop[j];
            m.hop[j] = m.hop[j - 1];
            m.hop[j - 1] = t;
          }
      for (guint k = 0; k < m.n_priv; k++)
        {
          guint h = m.hop[k];
          link_left (fn, b->link[h], f->rate);
          if (--b->wt[h] == 0)
            hop_remove (fn, b, h);
        }
      if (fn->rec_valid)
        {
          guint all[FLOWNET_MAX_HOPS];
          memcpy (all, b->link, b->n_core * sizeof (guint));
          memcpy (all + b->n_core, priv, m.n_priv * sizeof (guint));
          flownet_record_end (fn, fn->fixed[id].level, f->rate, all, b->n_core + m.n_priv);
        }
      fn->n_weight--;
      fn->removed = TRUE;
      if (b->n_m == 0)
        {
          if (b->n_pend == 0)
            bundle_free (fn, bi);
          else
            fn->end[id] = SIM_TIME_MAX; /* the others wait for the next solve */
          break;
        }
      /* the next member's bytes to go, from this end on */
      f->remaining = b->m[0].fin - m.fin;
      f->t_update = end;
      SimTime next = flownet_project (f->remaining, f->rate, end);
      fn->end[id] = next;
      if ((next > now && next > latest))
        break;
    }
  return n;
}

static gboolean
crosses (const Member *m, guint hop)
{
  for (guint k = 0; k < m->n_priv; k++)
    if (m->hop[k] == hop)
      return TRUE;
  return FALSE;
}

/* Moves the members of m[0 .. *n) that cross hop `hop` to go[], marked as
 * started or not; the others stay, in order. */
static void
part_off (Member *m, guint *n, guint hop, gboolean started, Member *go, gboolean *go_started, guint *n_go)
{
  guint keep = 0;
  for (guint i = 0; i < *n; i++)
    if (crosses (&m[i], hop))
      {
        go_started[*n_go] = started;
        go[(*n_go)++] = m[i];
      }
    else
      m[keep++] = m[i];
  *n = keep;
}

/* Splits the members on private link li off bundle `id` (not fixed in
 * this solve) as plain flows, in the order they joined; those that had
 * not started yet start as new flows. The bundle keeps the others, or
 * leaves when none is left. */
void
flownet_bundle_split (FlowNet *fn, guint id, guint li, SimTime now)
{
  guint bi = fn->hot[id].path[0];
  Bundle *b = &fn->bundles[bi];
  double v = clock_at (fn, b, now);
  double rate = fn->hot[id].rate;
  SimTime start = fn->start[id];
  Stamp st = fn->fixed[id];
  guint seen = fn->seen[id];
  /* the members that go, in joining order; the heap and the pending list
   * keep the others */
  guint n_go = 0;
  GROW (fn->split_go, fn->cap_split_go, b->n_m + b->n_pend);
  GROW (fn->split_started, fn->cap_split_started, b->n_m + b->n_pend);
  Member *go = fn->split_go;
  gboolean *started = fn->split_started;
  guint hl = hop_of (b, li);
  g_assert (hl < b->n_hops);
  gboolean first_goes = b->n_m > 0 && crosses (&b->m[0], hl);
  part_off (b->m, &b->n_m, hl, TRUE, go, started, &n_go);
  for (guint i = b->n_m / 2; i-- > 0;) /* heapify what is left */
    {
      Member x = b->m[i];
      sift_down (b, i, &x);
    }
  part_off (b->pend, &b->n_pend, hl, FALSE, go, started, &n_go);
  for (guint i = 1; i < n_go; i++)
    for (guint k = i; k > 0 && go[k - 1].seq > go[k].seq; k--)
      {
        Member t = go[k];
        go[k] = go[k - 1];
        go[k - 1] = t;
        gboolean u = started[k];
        started[k] = started[k - 1];
        started[k - 1] = u;
      }
  /* their private links, while the hop table holds them */
  GROW (fn->split_links, fn->cap_split_links, n_go * FLOWNET_MAX_HOPS);
  guint *go_links = fn->split_links;
  for (guint i = 0; i < n_go; i++)
    member_links (b, &go[i], go_links + (gsize) i * FLOWNET_MAX_HOPS);
  /* their counts leave the bundle's hops (the links keep them: the flows
   * take their places) */
  for (guint h = 0; h < b->n_core; h++)
    b->wt[h] -= n_go;
  for (guint i = 0; i < n_go; i++)
    for (guint k = 0; k < go[i].n_priv; k++)
      {
        guint h = hop_of (b, go_links[(gsize) i * FLOWNET_MAX_HOPS + k]);
        if (--b->wt[h] == 0)
          hop_remove (fn, b, h);
      }
  guint off = fn->core_off[b->core], n_core = b->n_core;
  for (guint i = 0; i < n_go; i++)
    {
      const Member *m = &go[i];
      guint s = flownet_slot_start (fn, now, start);
      FlowHot *f = &fn->hot[s];
      f->n_hops = (guint8) (m->n_priv + n_core);
      memcpy (f->path, go_links + (gsize) i * FLOWNET_MAX_HOPS, m->n_priv * sizeof (guint));
      memcpy (f->path + m->n_priv, fn->core_links + off, n_core * sizeof (guint));
      fn->cold[s].tag = m->tag;
      fn->fixed[s] = st;
      fn->split_core[s] = b->core;
      GROW (fn->split_off, fn->cap_split_off, fn->n_split_off + 1);
      fn->split_off[fn->n_split_off++] = s;
      fn->seen[s] = seen;
      if (!started[i])
        f->remaining = m->fin; /* its bytes: it has not started (no end) */
      else
        {
          f->remaining = m->fin - v;
          f->rate = rate;
          set_end (fn, s, rate > 0.0 ? flownet_project (f->remaining, rate, now) : SIM_TIME_MAX);
        }
      for (guint h = 0; h < f->n_hops; h++)
        list_append (fn, f->path[h], s, (guint8) h);
      fn->n_active++;
    }
  b = &fn->bundles[bi];
  if (b->n_m + b->n_pend == 0)
    {
      set_end (fn, id, SIM_TIME_MAX);
      bundle_free (fn, bi);
    }
  else if (first_goes)
    {
      /* its record follows the clock to its new first member */
      FlowHot *f = &fn->hot[id];
      if (b->n_m == 0)
        set_end (fn, id, SIM_TIME_MAX);
      else
        {
          f->remaining = b->m[0].fin - v;
          f->t_update = now;
          set_end (fn, id, rate > 0.0 ? flownet_project (f->remaining, rate, now) : SIM_TIME_MAX);
        }
    }
}

void
flownet_bundles_clear (FlowNet *fn)
{
  for (guint i = 0; i < fn->n_bundles; i++)
    {
      Bundle *b = &fn->bundles[i];
      g_free (b->m);
      g_free (b->pend);
    }
  util_free_aligned (fn->bundles, fn->cap_bundles, sizeof (Bundle));
  free_ids_clear (&fn->free_bundles);
  if (fn->core_ids)
    g_hash_table_unref (fn->core_ids);
  g_free (fn->core_links);
  g_free (fn->core_off);
  g_free (fn->core_bundle);
  g_free (fn->split_go);
  g_free (fn->split_started);
  g_free (fn->split_links);
}

/* Flow `id`, split off the bundle of its core, goes back into it: fixed
 * by the same link as the bundle, it has the bundle's rate, so as a member
 * it sends what it sends as a flow of its own and every link carries the
 * same flows at the same rates (nothing to re-solve; the record of the
 * solve stays true: the bundle is fixed at the level the flow was). Its
 * bytes left join the bundle's clock; it takes hops for its private links
 * where the bundle has none. FALSE when it cannot: its private links would
 * not fit the bundle's hop table, or the bundle is full (as at a join). */
static gboolean
merge_flow (FlowNet *fn, guint id, Bundle *b, SimTime now)
{
  FlowHot *f = &fn->hot[id];
  guint n_core = b->n_core, n_priv = f->n_hops - n_core;
  guint extra = 0;
  for (guint k = 0; k < n_priv; k++)
    extra += hop_of (b, f->path[k]) == b->n_hops;
  if (b->n_hops + extra > BUNDLE_HOPS || b->n_m + b->n_pend >= BUNDLE_MEMBERS)
    return FALSE;
  double v = clock_at (fn, b, now);
  double left = f->remaining - f->rate * sim_time_to_seconds (now - f->t_update);
  Member m = { v + left, fn->cold[id].tag, b->seq++, (guint8) n_priv, { 0 } };
  for (guint k = 0; k < n_priv; k++)
    {
      guint hop = hop_take (fn, b, f->path[k]);
      b->wt[hop]++;
      m.hop[k] = (guint8) hop;
    }
  for (guint h = 0; h < n_core; h++)
    b->wt[h]++;
  for (guint h = 0; h < f->n_hops; h++)
    list_remove (fn, f->path[h], fn->cold[id].pos[h]);
  heap_push (b, &m);
  if (b->m[0].seq == m.seq)
    {
      /* the bundle's record follows its clock to its new first member */
      FlowHot *bf = &fn->hot[b->slot];
      bf->remaining = m.fin - v;
      bf->t_update = now;
      set_end (fn, b->slot, flownet_project (bf->remaining, bf->rate, now));
    }
  set_end (fn, id, SIM_TIME_MAX);
  fn->start[id] = SIM_TIME_MAX;
  fn->split_core[id] = G_MAXUINT;
  free_ids_put (&fn->free_slots, id);
  fn->n_active--;
  return TRUE;
}

/* After a solve: each flow split off a bundle goes back into the bundle
 * of its core when the solve fixed both at one level (so by one link) and
 * they are of one age (a member's age is its bundle's, and the batching
 * tolerance scales with it: the flow keeps its own); the others stay
 * listed for the solves to come, but for those the bundle cannot take. */
void
flownet_bundle_merge (FlowNet *fn, SimTime now)
{
  guint ep = fn->epoch, kept = 0;
  for (guint i = 0; i < fn->n_split_off; i++)
    {
      guint id = fn->split_off[i], core = fn->split_core[id];
      if (core == G_MAXUINT)
        continue; /* gone, or merged already */
      guint bi = fn->core_bundle[core];
      if (bi != G_MAXUINT)
        {
          Bundle *b = &fn->bundles[bi];
          Stamp sf = fn->fixed[id], sb = fn->fixed[b->slot];
          if (sf.epoch == ep && sb.epoch == ep && sf.level == sb.level && b->n_m > 0
              && fn->hot[id].rate == fn->hot[b->slot].rate && fn->hot[id].rate > 0.0 && fn->end[id] > now
              && fn->start[id] == fn->start[b->slot])
            {
              if (!merge_flow (fn, id, b, now))
                fn->split_core[id] = G_MAXUINT; /* a flow of its own for good */
              continue;
            }
        }
      fn->split_off[kept++] = id;
    }
  fn->n_split_off = kept;
}
