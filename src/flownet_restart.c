/* The record of the last whole solve, and restarts from it (see
 * flownet_solve in flownet.c for why a restart gives the rates a solve from
 * scratch gives): each flow's level, and every ck_every levels a checkpoint
 * of the remaining capacity and unfixed count of every link (by link id; a
 * restart reads only those of the record's links). */
#include "flownet_private.h"

/* relative difference below which two shares are taken as equal: rounding
 * alone separates them (a few units in the last place of a double) */
#define TIE_REL 1e-12

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
  guint n_ck = (fn->rec_levels + fn->ck_every - 1) / fn->ck_every;
  for (guint k = 0; k < n_ck; k++)
    {
      fn->ck_rem[(gsize) k * fn->ck_stride + li] = fn->links[li].capacity;
      fn->ck_free[(gsize) k * fn->ck_stride + li] = 0;
    }
}

/* Saves the solve state of the links as checkpoint q: of every link, by
 * link id (two copies of whole arrays; the links outside the record go
 * along, and a restart brings them back, unread: no solve from the record
 * touches them). */
void
flownet_checkpoint_save (FlowNet *fn, guint q)
{
  gsize need = (gsize) (q + 1) * fn->ck_stride;
  if (need > fn->cap_ck)
    {
      gsize nc = MAX (need, 2 * fn->cap_ck);
      fn->ck_rem = g_realloc_n (fn->ck_rem, nc, sizeof (double));
      fn->ck_free = g_realloc_n (fn->ck_free, nc, sizeof (guint));
      fn->cap_ck = nc;
    }
  GROW (fn->ck_unfixed, fn->cap_ck_unfixed, q + 1);
  memcpy (fn->ck_rem + (gsize) q * fn->ck_stride, fn->rem, fn->ck_stride * sizeof (double));
  memcpy (fn->ck_free + (gsize) q * fn->ck_stride, fn->n_free, fn->ck_stride * sizeof (guint));
  fn->ck_unfixed[q] = fn->unfixed;
}

/* The checkpoint a restart starts from: the last one at or before the
 * lowest level an ended flow was fixed at, and before the first level a
 * link with more flows than in the record could become a bottleneck. Such
 * a link's share, with its started flows added, only grows until the first
 * level that differs; so when at a checkpoint it is not below the share of
 * any level up to the next checkpoint, nothing differs in between but the
 * order in which links of equal shares are taken, which leaves the same
 * allocation: links whose shares tie fix their flows at that same share
 * whichever goes first (the flows a tied link loses to another were fixed
 * at its share, which leaves its share as it was). Shares summed in another
 * order differ in the last bits: within TIE_REL of each other they tie. */
static guint
restart_checkpoint (FlowNet *fn)
{
  guint ck = fn->ck_every, n_ck = (fn->rec_levels + ck - 1) / ck;
  guint q = fn->rm_n > 0 ? fn->rm_min / ck : n_ck - 1;
  /* a bundle that gained a member is not the entry the record fixed (its
   * new member may miss the link that fixed it): from its level on */
  q = MIN (q, fn->join_min / ck);
  for (guint i = 0; i < fn->n_dirty && q > 0; i++)
    {
      guint li = fn->dirty_links[i];
      gint d = fn->d_cnt[li];
      if (d <= 0)
        continue;
      for (guint k = 0; k < q; k++)
        {
          double rem = fn->ck_rem[(gsize) k * fn->ck_stride + li];
          guint nfree = fn->ck_free[(gsize) k * fn->ck_stride + li] + (guint) d;
          double last = fn->lvl_share[MIN ((k + 1) * ck, fn->rec_levels) - 1];
          if (rem / nfree < last * (1.0 - TIE_REL))
            {
              q = k;
              break;
            }
        }
    }
  return q;
}

/* Restart: the state before checkpoint q of the record, with the flows
 * started since and without those ended (all of them unfixed there).
 * Earlier checkpoints are brought up to date too, so the record stays the
 * record of the flows now active. Flows fixed below the checkpoint's level
 * stay fixed, the others count as not fixed. Returns the level.
 *
 * Every flow of the record carries its epoch (restarts keep it; a started
 * flow carries none). A restart from the first level starts a new epoch;
 * one from level L unmarks the flows fixed at L or later: those on the
 * links taken at those levels, or, when those lists are longer than the
 * slots, by a scan of the slots. */
guint
flownet_restart_from_record (FlowNet *fn)
{
  guint q = restart_checkpoint (fn);
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
  memcpy (fn->rem, fn->ck_rem + (gsize) q * fn->ck_stride, fn->ck_stride * sizeof (double));
  memcpy (fn->n_free, fn->ck_free + (gsize) q * fn->ck_stride, fn->ck_stride * sizeof (guint));
  fn->unfixed = fn->ck_unfixed[q];
  guint level = q * fn->ck_every;
  if (level == 0)
    {
      flownet_new_epoch (fn);
      return 0;
    }
  guint ep = fn->epoch;
  gsize listed = 0;
  for (guint j = level; j < fn->rec_levels; j++)
    listed += fn->links[fn->lvl_link[j]].n_flows;
  if (listed < fn->n_slots)
    for (guint j = level; j < fn->rec_levels; j++)
      {
        const Link *l = &fn->links[fn->lvl_link[j]];
        for (guint k = 0; k < l->n_flows; k++)
          {
            Stamp *st = &fn->fixed[l->flows[k]];
            if (st->epoch == ep && st->level >= level)
              st->epoch = 0;
          }
      }
  else
    for (guint id = 0; id < fn->n_slots; id++)
      if (fn->fixed[id].epoch == ep && fn->fixed[id].level >= level)
        fn->fixed[id].epoch = 0; /* free slots too: no link lists them */
  return level;
}
