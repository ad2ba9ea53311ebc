/* The record of the last whole solve, and restarts from it (see
 * flownet_solve in flownet.c for why a restart gives the rates a solve from
 * scratch gives): each flow's level, each level's link and share, and
 * checkpoints of the remaining capacity and unfixed count of every link (by
 * link id; a restart reads only those of the record's links): at the first
 * level, at most ck_every levels apart, and at the end of every long tie.
 *
 * Ties. Links whose shares tie are taken one after another, in no order
 * that matters: each fixes its unfixed flows at the tie's share, which
 * leaves the share of every other link of the tie as it was. In an
 * all-to-all every NIC ties at the lowest share: one tie holds most flows,
 * and a flow that ended was fixed somewhere in it, so a restart from the
 * checkpoint before it fixed most flows again at the rates they had. A
 * restart after ends alone may skip such a tie instead (tie_skip): it
 * starts from the checkpoint at the tie's end, with what the ends change
 * there. Without the ended flows, the tie's other links still tie at its
 * share and may go first, in the record's order; so a flow fixed in the
 * tie keeps its rate when a link of the tie that no ended flow was on took
 * it, or could take it first; a flow whose links in the tie all lost an
 * ended flow is unfixed again, with the share it took given back to its
 * links; the links the ended flows left are brought to their state at the
 * tie's end (what their fixed flows take, how many are unfixed). The tie's
 * links are then the taken ones bar those. A tie in which a bundle split,
 * or one whose flow would now meet the private link of a bundle first, is
 * not skipped. */
#include "flownet_private.h"

/* relative difference below which two shares are taken as equal: rounding
 * alone separates them (a few units in the last place of a double) */
#define TIE_REL 1e-12
/* levels a tie needs to get a checkpoint at its end (and be skipped) */
#define TIE_MIN 8

/* A link that carried no flow when the record was made joins it: it had its
 * whole capacity and no flow to fix at every level of it. */
void
flownet_record_add_link (FlowNet *fn, guint li)
{
  guint pos = fn->rec_nl++;
  g_assert (pos < fn->ck_stride);
  GROW (fn->comp_links, fn->cap_comp_links, fn->rec_nl);
  fn->comp_links[pos] = li;
  fn->rec_pos[li] = pos;
  for (guint k = 0; k < fn->n_ck; k++)
    {
      fn->ck_rem[(gsize) k * fn->ck_stride + li] = fn->links[li].capacity;
      fn->ck_free[(gsize) k * fn->ck_stride + li] = 0;
    }
}

/* Saves the solve state of the links as the next checkpoint, before
 * `level`: of every link, by link id (two copies of whole arrays; the
 * links outside the record go along, and a restart brings them back,
 * unread: no solve from the record touches them). */
void
flownet_checkpoint_save (FlowNet *fn, guint level)
{
  guint q = fn->n_ck++;
  gsize need = (gsize) (q + 1) * fn->ck_stride;
  if (need > fn->cap_ck)
    {
      gsize nc = MAX (need, 2 * fn->cap_ck);
      fn->ck_rem = g_realloc_n (fn->ck_rem, nc, sizeof (double));
      fn->ck_free = g_realloc_n (fn->ck_free, nc, sizeof (guint));
      fn->cap_ck = nc;
    }
  GROW (fn->ck_unfixed, fn->cap_ck_unfixed, q + 1);
  GROW (fn->ck_level, fn->cap_ck_level, q + 1);
  memcpy (fn->ck_rem + (gsize) q * fn->ck_stride, fn->rem, fn->ck_stride * sizeof (double));
  memcpy (fn->ck_free + (gsize) q * fn->ck_stride, fn->n_free, fn->ck_stride * sizeof (guint));
  fn->ck_unfixed[q] = fn->unfixed;
  fn->ck_level[q] = level;
}

/* A recording solve starts at `level`: a checkpoint is due there, and the
 * tie of the level before, if any, is open again (its end may move). */
void
flownet_record_open (FlowNet *fn, guint level)
{
  fn->ck_due = TRUE;
  fn->tie_first = level;
  fn->tie_share = -1.0;
  fn->tie_split = FALSE;
  if (level > 0)
    {
      guint a = fn->lvl_tie[level - 1];
      fn->tie_first = a;
      fn->tie_share = fn->lvl_share[a];
      /* (a tie that could not be skipped may have had a split) */
      fn->tie_split = !fn->lvl_skip[level - 1];
      memset (fn->lvl_skip + a, 0, level - a);
    }
}

/* The open tie ends before `end`: TRUE when it can be skipped (so wants a
 * checkpoint there). */
static gboolean
tie_close (FlowNet *fn, guint end)
{
  if (end - fn->tie_first < TIE_MIN || fn->tie_split)
    return FALSE;
  memset (fn->lvl_skip + fn->tie_first, 1, end - fn->tie_first);
  return TRUE;
}

/* Level `level` takes link li at `share`. */
void
flownet_record_level (FlowNet *fn, guint level, guint li, double share)
{
  gboolean due = fn->ck_due;
  fn->ck_due = FALSE;
  if (fn->tie_share < 0.0)
    fn->tie_share = share;
  else if (share > fn->tie_share * (1.0 + TIE_REL))
    {
      due |= tie_close (fn, level);
      fn->tie_first = level;
      fn->tie_share = share;
      fn->tie_split = FALSE;
    }
  /* (a solve's first level is past its checkpoints, but for the one a
   * restart went on from: it holds the state of this level already) */
  guint last = fn->n_ck > 0 ? fn->ck_level[fn->n_ck - 1] : 0;
  g_assert (fn->n_ck == 0 || last <= level);
  gboolean ck = fn->n_ck == 0 || due || level - last >= fn->ck_every;
  if (ck && (fn->n_ck == 0 || last < level))
    flownet_checkpoint_save (fn, level);
  GROW (fn->lvl_share, fn->cap_lvl_share, level + 1);
  GROW (fn->lvl_link, fn->cap_lvl_link, level + 1);
  GROW (fn->lvl_fix, fn->cap_lvl_fix, level + 1);
  GROW (fn->lvl_tie, fn->cap_lvl_tie, level + 1);
  GROW (fn->lvl_skip, fn->cap_lvl_skip, level + 1);
  fn->lvl_link[level] = li;
  fn->lvl_fix[level] = fn->n_fix;
  /* shares come in order but for rounding: keep the greatest of the
   * checkpoint's levels so far */
  fn->lvl_share[level] = ck ? share : MAX (share, fn->lvl_share[level - 1]);
  fn->lvl_tie[level] = fn->tie_first;
  fn->lvl_skip[level] = 0;
  fn->taken[li] = (Stamp) { fn->epoch, level };
}

/* The recording solve took `levels` levels: its last tie ends. */
void
flownet_record_close (FlowNet *fn, guint levels)
{
  gboolean due = fn->ck_due; /* it took none: its start stays a checkpoint */
  if (levels > fn->tie_first)
    due |= tie_close (fn, levels);
  if (due && (fn->n_ck == 0 || fn->ck_level[fn->n_ck - 1] < levels))
    flownet_checkpoint_save (fn, levels);
  fn->ck_due = FALSE;
}

/* The checkpoint a restart starts from: the last one at or before the
 * lowest level an ended flow was fixed at, and before the first level a
 * link with more flows than in the record could become a bottleneck. Such
 * a link's share, with its started flows added, only grows until the first
 * level that differs; so when at a checkpoint it is not below the share of
 * any level up to the next checkpoint, nothing differs in between but the
 * order in which links of equal shares are taken, which leaves the same
 * allocation. Shares summed in another order differ in the last bits:
 * within TIE_REL of each other they tie. */
static guint
restart_checkpoint (FlowNet *fn)
{
  guint need = MIN (fn->rm_n > 0 ? fn->rm_min : G_MAXUINT, fn->join_min);
  guint q = 0;
  while (q + 1 < fn->n_ck && fn->ck_level[q + 1] <= need)
    q++;
  /* per checkpoint k, the share below which a link comes before k + 1 */
  GROW (fn->ck_thr, fn->cap_ck_thr, q);
  for (guint k = 0; k < q; k++)
    fn->ck_thr[k] = fn->lvl_share[fn->ck_level[k + 1] - 1] * (1.0 - TIE_REL);
  for (guint i = 0; i < fn->n_dirty && q > 0; i++)
    {
      guint li = fn->dirty_links[i];
      gint d = fn->d_cnt[li];
      if (d <= 0)
        continue;
      const double *rem = fn->ck_rem + li;
      const guint *nfree = fn->ck_free + li;
      gsize stride = fn->ck_stride;
      for (guint k = 0; k < q; k++)
        if (rem[k * stride] / (nfree[k * stride] + (guint) d) < fn->ck_thr[k])
          {
            q = k;
            break;
          }
    }
  return q;
}

/* Flows and bundles fixed at `level` or later count as not fixed (those
 * the record's fixes from that level on name: a flow that ended since
 * may have left its slot to a flow whose stamp says it is not fixed, or
 * to none), and those levels' links as not taken. */
static void
unmark_from (FlowNet *fn, guint level)
{
  if (level >= fn->rec_levels)
    return;
  guint ep = fn->epoch;
  for (guint i = fn->lvl_fix[level]; i < fn->n_fix; i++)
    {
      Stamp *st = &fn->fixed[fn->fix_ids[i]];
      if (st->epoch == ep && st->level >= level)
        st->epoch = 0;
    }
  fn->n_fix = fn->lvl_fix[level];
  for (guint j = level; j < fn->rec_levels; j++)
    {
      Stamp *t = &fn->taken[fn->lvl_link[j]];
      if (t->epoch == ep && t->level >= level)
        t->epoch = 0;
    }
}

/* Brings checkpoints 0..q up to date: the flows started and ended since
 * the record were all unfixed there. */
static void
checkpoints_update (FlowNet *fn, guint q)
{
  for (guint k = 0; k <= q; k++)
    {
      guint *nfree = fn->ck_free + (gsize) k * fn->ck_stride;
      for (guint i = 0; i < fn->n_dirty; i++)
        {
          guint li = fn->dirty_links[i];
          nfree[li] += (guint) fn->d_cnt[li];
        }
      fn->ck_unfixed[k] += fn->add_n - fn->rm_n;
    }
}

/* The solve state of checkpoint q becomes the links' (and the unfixed
 * count). */
static void
checkpoint_load (FlowNet *fn, guint q)
{
  memcpy (fn->rem, fn->ck_rem + (gsize) q * fn->ck_stride, fn->ck_stride * sizeof (double));
  memcpy (fn->n_free, fn->ck_free + (gsize) q * fn->ck_stride, fn->ck_stride * sizeof (guint));
  fn->unfixed = fn->ck_unfixed[q];
}

/* Entry e's links, with its count on each and whether all of it is on it. */
static guint
entry_links (const FlowNet *fn, guint e, guint *links, guint *wt)
{
  const FlowHot *f = &fn->hot[e];
  if (!f->bundle)
    {
      for (guint h = 0; h < f->n_hops; h++)
        links[h] = f->path[h], wt[h] = 1;
      return f->n_hops;
    }
  const Bundle *b = &fn->bundles[f->path[0]];
  for (guint h = 0; h < b->n_hops; h++)
    links[h] = b->link[h], wt[h] = b->wt[h];
  return b->n_hops;
}

static inline guint
entry_weight (const FlowNet *fn, guint e)
{
  const FlowHot *f = &fn->hot[e];
  if (!f->bundle)
    return 1;
  const Bundle *b = &fn->bundles[f->path[0]];
  return b->n_m + b->n_pend;
}

/* Whether link li, left by an ended flow of the tie [a, b) (marked), was
 * taken in it. */
static inline gboolean
tie_taken (const FlowNet *fn, guint li, guint a, guint b)
{
  Stamp t = fn->taken[li];
  return t.epoch == fn->epoch && t.level >= a && t.level < b;
}

/* The restart after ends alone that skips the tie of the lowest of them
 * (see the top of the file): TRUE, with the level it starts from, when it
 * can. */
static gboolean
tie_skip (FlowNet *fn, guint *level_out)
{
  if (fn->rm_n == 0 || fn->add_n > 0 || fn->join_min != G_MAXUINT || fn->n_tie_ends == 0
      || fn->n_tie_ends > TIE_ENDS_MAX)
    return FALSE;
  guint k = fn->rm_min;
  if (k >= fn->rec_levels || !fn->lvl_skip[k])
    return FALSE;
  guint a = fn->lvl_tie[k], b = k + 1;
  while (b < fn->rec_levels && fn->lvl_tie[b] == a)
    b++;
  guint qa = 0, qb = G_MAXUINT;
  for (guint q = 0; q < fn->n_ck; q++)
    {
      if (fn->ck_level[q] <= a)
        qa = q;
      if (fn->ck_level[q] == b)
        qb = q;
    }
  if (qb == G_MAXUINT)
    return FALSE;
  guint ep = fn->epoch;

  /* the links the tie's ended flows left (marked), the rates they took
   * there and how many they were */
  flownet_new_mark (fn);
  guint mk = fn->mark, n_a = 0, n_lo = 0;
  for (guint i = 0; i < fn->n_tie_ends; i++)
    {
      const TieEnd *te = &fn->tie_ends[i];
      if (te->level >= b)
        continue;
      n_lo++;
      for (guint h = 0; h < te->n; h++)
        {
          guint li = te->link[h];
          if (fn->links[li].mark != mk)
            {
              fn->links[li].mark = mk;
              fn->tie_rate[li] = 0.0;
              fn->tie_cnt[li] = 0;
              GROW (fn->tie_links, fn->cap_tie_links, n_a + 1);
              fn->tie_links[n_a++] = li;
            }
          fn->tie_rate[li] += te->rate;
          fn->tie_cnt[li]++;
        }
    }

  /* the entries those links took in the tie: each keeps its rate when a
   * link of the tie they did not leave was on all of it, and the first of
   * those it met; unfixed when none is */
  guint n_freed = 0;
  guint links[BUNDLE_HOPS], wt[BUNDLE_HOPS];
  for (guint i = 0; i < n_a; i++)
    {
      guint li = fn->tie_links[i];
      if (!tie_taken (fn, li, a, b))
        continue;
      const Link *l = &fn->links[li];
      for (guint j = 0; j < l->n_flows; j++)
        {
          guint e = l->flows[j];
          Stamp st = fn->fixed[e];
          if (st.epoch != ep || st.level < a || st.level >= b || fn->seen[e] == mk)
            continue;
          fn->seen[e] = mk;
          guint n = entry_links (fn, e, links, wt), all = entry_weight (fn, e);
          guint first = G_MAXUINT;
          gboolean whole = FALSE;
          for (guint h = 0; h < n; h++)
            if (fn->links[links[h]].mark != mk && tie_taken (fn, links[h], a, b)
                && fn->taken[links[h]].level < first)
              {
                first = fn->taken[links[h]].level;
                whole = wt[h] == all;
              }
          if (first == G_MAXUINT)
            {
              GROW (fn->tie_freed, fn->cap_tie_freed, n_freed + 1);
              fn->tie_freed[n_freed++] = e;
            }
          else if (!whole)
            return FALSE; /* a bundle would split there */
        }
    }

  /* the state at the tie's end */
  checkpoints_update (fn, qa);
  checkpoint_load (fn, qb);
  /* ended flows fixed after the tie were unfixed at its end */
  fn->unfixed -= fn->rm_n - n_lo;
  for (guint i = 0; i < fn->n_dirty; i++)
    {
      guint li = fn->dirty_links[i];
      if (fn->links[li].mark != mk)
        fn->n_free[li] += (guint) fn->d_cnt[li];
    }
  for (guint i = 0; i < n_a; i++)
    {
      guint li = fn->tie_links[i];
      if (tie_taken (fn, li, a, b))
        continue;
      /* the tie's ended flows were fixed there (not in d_cnt's count) */
      fn->rem[li] += fn->tie_rate[li];
      fn->n_free[li] += (guint) (fn->d_cnt[li] + (gint) fn->tie_cnt[li]);
    }
  for (guint i = 0; i < n_freed; i++)
    {
      guint e = fn->tie_freed[i];
      fn->fixed[e].epoch = 0;
      fn->unfixed += entry_weight (fn, e);
      double rate = fn->hot[e].rate;
      guint n = entry_links (fn, e, links, wt);
      for (guint h = 0; h < n; h++)
        if (!(fn->links[links[h]].mark == mk && tie_taken (fn, links[h], a, b)))
          {
            fn->rem[links[h]] += rate * wt[h];
            fn->n_free[links[h]] += wt[h];
          }
    }
  /* the links left that the tie took: what their fixed entries take */
  for (guint i = 0; i < n_a; i++)
    {
      guint li = fn->tie_links[i];
      if (!tie_taken (fn, li, a, b))
        continue;
      const Link *l = &fn->links[li];
      double rem = l->capacity;
      guint nfree = 0;
      for (guint j = 0; j < l->n_flows; j++)
        {
          guint e = l->flows[j];
          guint w = (l->hop[j] & HOP_BUNDLE) ? fn->bundles[fn->hot[e].path[0]].wt[l->hop[j] & ~HOP_BUNDLE] : 1;
          Stamp st = fn->fixed[e];
          if (st.epoch == ep && st.level < b)
            rem -= fn->hot[e].rate * w;
          else
            nfree += w;
        }
      fn->rem[li] = rem > 0.0 ? rem : 0.0;
      fn->n_free[li] = nfree;
    }
  for (guint i = 0; i < n_a; i++)
    if (tie_taken (fn, fn->tie_links[i], a, b))
      fn->taken[fn->tie_links[i]].epoch = 0;
  fn->n_ck = qa + 1; /* the solve saves this state as the next */
  unmark_from (fn, b);
  *level_out = b;
  return TRUE;
}

/* Restart: the state before checkpoint q of the record, with the flows
 * started since and without those ended (all of them unfixed there), or
 * past a tie (tie_skip). Earlier checkpoints are brought up to date too, so
 * the record stays the record of the flows now active. Flows fixed below
 * the checkpoint's level stay fixed, the others count as not fixed.
 * Returns the level.
 *
 * Every flow of the record carries its epoch (restarts keep it; a started
 * flow carries none). A restart from the first level starts a new epoch;
 * one from level L unmarks the flows fixed at L or later. */
guint
flownet_restart_from_record (FlowNet *fn)
{
  guint level;
  if (tie_skip (fn, &level))
    {
      fn->tie_skips++;
      return level;
    }
  guint q = restart_checkpoint (fn);
  checkpoints_update (fn, q);
  checkpoint_load (fn, q);
  level = fn->ck_level[q];
  fn->n_ck = q + 1; /* kept: the state the solve goes on from */
  if (level == 0)
    {
      flownet_new_epoch (fn);
      return 0;
    }
  unmark_from (fn, level);
  return level;
}
