/* The flow network's state, shared by its two files: flownet.c (links,
 * flows, the solve, ends) and flownet_restart.c (the record of the last
 * whole solve that restarts start from). Private to them. */
#pragma once

#include "flownet.h"
#include "radixheap.h"
#include "util.h"

typedef struct {
  double remaining; /* bytes left as of t_update (a bundle: each member's
                     * bytes until its first member has sent all) */
  SimTime t_update; /* when remaining was last brought up to date */
  double rate;      /* bytes/s (a bundle: of each member) */
  guint path[FLOWNET_MAX_HOPS]; /* a bundle: path[0] is its index */
  guint8 n_hops;                /* a bundle: 0 */
  guint8 bundle;
} FlowHot;
G_STATIC_ASSERT (sizeof (FlowHot) <= 64);

/* A flow's marks in a solve: fixed in the solve of this epoch, at this
 * level (kept together: a visit reads the one, a fix writes both) */
typedef struct {
  guint epoch;
  guint level;
} Stamp;

typedef struct {
  double cap; /* rate cap, 0 when none */
  guint64 tag;
  guint pos[FLOWNET_MAX_HOPS]; /* index of this flow in each link's list */
  double next_bytes; /* its continuation, 0 when none (flownet_flow_set_next) */
  guint64 next_tag;
} FlowCold;

/* A link list entry's hop byte: which hop of the entry's path the link is;
 * with HOP_BUNDLE set, of a bundle's hop table (flownet_bundle.c) */
#define HOP_BUNDLE 0x80

/* A member of a bundle: one flow, at the bundle's rate while it is one.
 * Half a cache line: its links apart from the core are kept as hops of
 * the bundle's table (renumbered when a hop is dropped). */
typedef struct {
  double fin;    /* the bundle's clock (bytes each member sent) when it is done */
  guint64 tag;
  guint seq;     /* joining order: members done together end in it */
  guint8 n_priv;
  guint8 hop[FLOWNET_MAX_HOPS]; /* its private links' hops, in path order */
} Member;
G_STATIC_ASSERT (sizeof (Member) == 32);

/* Flows that share a core (the rest of their paths after a private
 * prefix), kept as one entry of the network with a weight per link: while
 * no link of a private prefix is the bottleneck, max-min gives them one
 * rate, so the solve fixes them together and one clock tracks their bytes.
 * A private link taken first splits the bundle into its flows. */
#define BUNDLE_HOPS 16
/* members a bundle holds at most (its per-link counts are 16 bits) */
#define BUNDLE_MEMBERS G_MAXUINT16
/* Four cache lines, what a solve reads in the first two (the array is
 * cache-line aligned: util_grow_aligned). */
typedef struct {
  /* what a solve reads, first */
  guint16 n_hops;
  guint16 n_core; /* hops [0, n_core) are the core's links, every member on them */
  guint n_m;      /* members in the heap */
  guint n_pend;
  guint slot;     /* its entry in the flow arrays */
  guint link[BUNDLE_HOPS];   /* per hop: the link, */
  guint16 wt[BUNDLE_HOPS];   /* the members on it, */
  guint core;    /* its core (flownet_core) */
  guint seq;
  guint cap_m, cap_pend;
  guint pos[BUNDLE_HOPS];  /* the bundle's place in its list */
  Member *m;     /* a binary min-heap on (fin, seq) */
  /* members that joined since its last fix: sending nothing until then,
   * as a new flow does (fin holds their bytes) */
  Member *pend;
  guint64 priv_mask; /* bit l % 64 set for each private link l it has had a
                      * hop of since it was made (a clear bit: no hop) */
  guint8 pad_[40];
} Bundle;
G_STATIC_ASSERT (sizeof (Bundle) == 256);

/* A flow (or bundle member) that ended, fixed in a tie of the record that
 * a restart may skip (flownet_restart.c) */
typedef struct {
  guint level;
  guint n;
  double rate;
  guint link[FLOWNET_MAX_HOPS];
} TieEnd;

typedef struct {
  double capacity;
  double bytes;
  guint *flows; /* ids of the flows on the link (a solve reads their paths
                 * from the hot records it touches anyway) */
  guint8 *hop;  /* [i]: which hop of flows[i]'s path this link is (read by
                 * removals only, so the solve's lists stay 4 bytes a flow) */
  guint n_flows;
  guint cap_flows;
  guint weight; /* flows on it (a bundle counts its members on it) */
  guint mark; /* == fn->mark: reached by the current component search */
  guint8 dirty;
} Link;

/* A whole block's scan in a batch of ends (flownet_ends.c) */
typedef guint64 (*FlowScan) (const SimTime *end, const SimTime *start, SimTime lim, SimTime *e, SimTime *st);

struct FlowNet {
  FlowScan scan;
  Link *links;
  guint n_links, cap_links;
  /* hot per-link solve state */
  double *rem;   /* capacity left during a solve */
  guint *n_free; /* unfixed flows during a solve */
  double *load;  /* bytes/s the link carries now: sum of its flows' rates */

  FlowHot *hot;
  FlowCold *cold;
  /* dense per-slot arrays, scanned in slot order (sequential memory) */
  SimTime *end;   /* projected end at the current rate; SIM_TIME_MAX at rate 0 or free */
  SimTime *start; /* when the flow started */
  guint *seen;    /* == fn->mark: reached by the current component search */
  Stamp *fixed;   /* .epoch == fn->epoch: rate fixed in this solve (8 bytes
                   * a flow: a link's later visits of a flow read only this) */
  guint n_slots, cap_slots;
  /* per block of BLOCK slots: the earliest end in it (exact but for the
   * blocks listed in `loose`, where it may be lower), and a lower bound of
   * the starts of its active flows: the end scans skip blocks by these */
  SimTime *blk_end;
  SimTime *blk_start;
  guint8 *blk_loose;
  guint *loose;
  guint n_loose, cap_loose;
  /* taken lowest first: flows started together get neighbouring slots, so
   * a link's flow list walks memory mostly forward */
  FreeIds free_slots;
  guint n_active;  /* entries: flows and bundles */
  guint n_weight;  /* flows, members of bundles included */
  /* bundles (flownet_bundle.c): the cores, each a run of links, and the
   * bundle on each (G_MAXUINT when none) */
  Bundle *bundles;
  guint n_bundles, cap_bundles;
  FreeIds free_bundles;
  GHashTable *core_ids;
  guint *core_off;     /* [core]: where its links start in core_links */
  guint *core_links;
  guint *core_bundle;  /* [core]: its bundle */
  guint n_cores, cap_core_off, cap_core_bundle, n_core_links, cap_core_links;
  Member *split_go;          /* scratch of a split: the members that go, */
  gboolean *split_started;   /* and whether each had started, */
  guint *split_links;        /* and their private links (FLOWNET_MAX_HOPS each) */
  guint cap_split_go, cap_split_started, cap_split_links;
  /* per slot: the core of a flow split off a bundle there (G_MAXUINT for
   * any other), and those flows, which a solve may merge back (repeats and
   * flows gone since allowed: their core says) */
  guint *split_core;
  guint *split_off;
  guint n_split_off, cap_split_off;
  guint *capped; /* active flows with a rate cap */
  guint n_capped, cap_capped;

  guint epoch;
  guint mark;    /* of the last component search (kept apart from the
                  * epoch, so that a search leaves a record's stamps be) */
  guint level;   /* bottlenecks fixed so far in this solve */
  guint unfixed; /* flows of the component not fixed yet in this solve */
  gboolean needs_solve;
  gboolean removed;     /* flows ended since the last solve */
  gboolean wide;        /* the last searched component held most flows */
  guint search_gap;     /* solves between searches while wide: 64 doubled
                         * by each search that reaches every flow, to 1024 */
  guint64 search_next;  /* the solve that searches next while wide */
  guint search_active;  /* flows active at the last search */
  SimTime added_first;  /* first start since the last solve, SIM_TIME_MAX if none */
  double added_min_est; /* shortest rough duration of those, s */
  guint *dirty_links;
  guint n_dirty, cap_dirty;

  /* the record of the last whole solve, for restarts (see flownet_solve):
   * each flow's level (the how-many-th bottleneck fixed it), and every
   * ck_every levels a checkpoint of the links' solve state */
  gboolean rec_valid;
  guint rec_nl;      /* links of the record: comp_links[0 .. rec_nl) */
  guint ck_stride;   /* checkpoint k of link li: [k * ck_stride + li] (every
                      * link: n_links when the record was made) */
  guint rec_levels;  /* levels the record holds */
  guint ck_every;    /* levels between checkpoints at most */
  guint n_ck;        /* checkpoints, at increasing levels */
  guint *ck_level;   /* [checkpoint]: the level it was saved before */
  guint cap_ck_level;
  double *ck_rem;    /* [checkpoint][link] */
  guint *ck_free;
  guint *ck_unfixed; /* [checkpoint] */
  double *ck_thr;    /* scratch of a restart: per checkpoint, the share below which a link comes first */
  guint cap_ck_thr;
  double *lvl_share; /* [level]: the greatest share fixed from its checkpoint up to it */
  guint cap_lvl_share;
  guint *lvl_link;   /* [level]: the link it took */
  guint cap_lvl_link;
  /* the entries fixed, in the order they were (a flow's id, or a bundle's,
   * once a fix; those of the record's levels from lvl_fix[level] on, so a
   * restart unmarks them without going through the taken links' lists) */
  guint *fix_ids;
  guint n_fix, cap_fix_ids;
  guint *lvl_fix;    /* [level]: where its fixes start in fix_ids */
  guint cap_lvl_fix;
  /* ties (see flownet_restart.c): per level, the first level of its tie
   * (the run of levels at one share it belongs to), and whether that tie
   * can be skipped (long enough, no split in it, a checkpoint at its end) */
  guint *lvl_tie;
  guint8 *lvl_skip;
  guint cap_lvl_tie, cap_lvl_skip;
  guint tie_first;   /* during a recording solve: the open tie's first level, */
  double tie_share;  /* and its share */
  gboolean tie_split; /* a bundle split in the open tie */
  gboolean ck_due;   /* the recording solve has not saved its first checkpoint */
  Stamp *taken;      /* per link: the level that took it, in the epoch */
  /* the ends since the record of flows fixed in a tie that can be skipped
   * (their level, rate and links) */
  TieEnd *tie_ends;
  guint n_tie_ends, cap_tie_ends;
  guint *tie_links;  /* scratch of a skip: the links those ends left, */
  guint *tie_freed;  /* and the entries it unfixes */
  guint cap_tie_links, cap_tie_freed;
  double *tie_rate;  /* per link (scratch of a skip): the rates those ends took */
  guint *tie_cnt;    /* and how many */
  guint64 tie_skips;
  gsize cap_ck;
  guint cap_ck_unfixed;
  guint *rec_pos;    /* per link: its position in comp_links */
  /* flows that ended since the record: their lowest level and how many;
   * flows started since; per link, started less ended */
  guint rm_min, rm_n, add_n;
  guint join_min; /* lowest level of a bundle that gained a member since */
  gint *d_cnt;
  guint64 restarts;

  /* scratch, reused */
  guint *comp_links, *comp_capped;
  guint cap_comp_links, cap_comp_capped;
  guint *search_links; /* the links a component search reached */
  guint cap_search_links;
  RadixHeap heap; /* the component's link shares, ids = link ids */
  double *hb_key; /* scratch of heap_build: the shares and their links */
  guint *hb_id;
  guint cap_hb;
  FlowEnd *done;
  guint cap_done;
  guint *due; /* scratch of a batch: the entries due */
  guint cap_due;

  guint64 solves;
  guint64 work;
};

#define GROW UTIL_GROW
#define BLOCK 64

void flownet_new_epoch (FlowNet *fn);
void flownet_new_mark (FlowNet *fn);
guint flownet_slot_alloc (FlowNet *fn);
guint flownet_slot_start (FlowNet *fn, SimTime now, SimTime start);

/* flownet_ends.c */
FlowScan flownet_pick_scan (void);
guint64 flownet_scan_portable (const SimTime *end, const SimTime *start, guint n, SimTime lim, SimTime *e, SimTime *st);

/* flownet_bundle.c */
void flownet_bundles_clear (FlowNet *fn);
void flownet_bundle_split (FlowNet *fn, guint id, guint li, SimTime now);
guint flownet_bundle_take (FlowNet *fn, guint id, SimTime now, double tolerance, guint n);
void flownet_bundle_admit (FlowNet *fn, Bundle *b, SimTime now);
void flownet_bundle_merge (FlowNet *fn, SimTime now);

/* When `remaining` bytes at `rate` (> 0) from `now` are sent. */
static inline SimTime
flownet_project (double remaining, double rate, SimTime now)
{
  SimTime end = now;
  if (remaining > rate * 1e-12 + 1e-9) /* else drained but for rounding */
    {
      /* scenarios are bounded to ~1e6 s (scenario.c); clamp anyway so a
       * pathological rate can never wrap the clock */
      double ps = MIN (remaining / rate * 1e12, 4e18);
      end = now + sim_time_ceil_ps (ps);
    }
  return end;
}
static inline gboolean
flownet_is_bundle (const FlowNet *fn, guint id)
{
  return fn->hot[id].bundle != 0;
}

/* flownet_restart.c */
void flownet_record_add_link (FlowNet *fn, guint li);
void flownet_checkpoint_save (FlowNet *fn, guint level);
guint flownet_restart_from_record (FlowNet *fn);
void flownet_record_open (FlowNet *fn, guint level);
void flownet_record_level (FlowNet *fn, guint level, guint li, double share);
void flownet_record_close (FlowNet *fn, guint levels);

/* ends kept for a tie skip at most: past them (a whole phase ending at
 * once) the skip would touch most links anyway, and is not tried */
#define TIE_ENDS_MAX 4096

/* An entry fixed at `level` of the record ended: a skippable tie's keeps
 * what a skip needs to know of it (its rate and links). */
static inline void
flownet_record_end (FlowNet *fn, guint level, double rate, const guint *links, guint n)
{
  fn->rm_min = MIN (fn->rm_min, level);
  fn->rm_n++;
  if (level < fn->rec_levels && fn->lvl_skip[level] && fn->n_tie_ends <= TIE_ENDS_MAX)
    {
      if (fn->n_tie_ends == fn->cap_tie_ends)
        GROW (fn->tie_ends, fn->cap_tie_ends, fn->n_tie_ends + 1);
      TieEnd *te = &fn->tie_ends[fn->n_tie_ends++];
      te->level = level;
      te->n = n;
      te->rate = rate;
      memcpy (te->link, links, n * sizeof (guint));
    }
}

/* Shared by the flow network's files */

/* Entry `id` is fixed at the current level: its stamp, and its place in
 * the order of fixes (for restarts: flownet_restart.c). */
static inline void
stamp_fixed (FlowNet *fn, guint id)
{
  fn->fixed[id] = (Stamp) { fn->epoch, fn->level };
  GROW (fn->fix_ids, fn->cap_fix_ids, fn->n_fix + 1);
  fn->fix_ids[fn->n_fix++] = id;
}

static inline void
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

/* Sets a flow's projected end, keeping its block's earliest end exact, or
 * listing the block as loose when its earliest end moved later. */
static inline void
set_end (FlowNet *fn, guint id, SimTime end)
{
  guint b = id / BLOCK;
  SimTime old = fn->end[id];
  fn->end[id] = end;
  if (end < fn->blk_end[b])
    fn->blk_end[b] = end;
  else if (old == fn->blk_end[b] && end > old && !fn->blk_loose[b])
    {
      fn->blk_loose[b] = 1;
      GROW (fn->loose, fn->cap_loose, fn->n_loose + 1);
      fn->loose[fn->n_loose++] = b;
    }
}

/* Where entry `id` sits in the list of the link that is its hop `hop`. */
static inline void
set_pos (FlowNet *fn, guint id, guint8 hop, guint pos)
{
  if (hop & HOP_BUNDLE)
    fn->bundles[fn->hot[id].path[0]].pos[hop & ~HOP_BUNDLE] = pos;
  else
    fn->cold[id].pos[hop] = pos;
}

static inline void
list_append (FlowNet *fn, guint li, guint id, guint8 hop)
{
  Link *l = &fn->links[li];
  if (l->n_flows == l->cap_flows)
    {
      GROW (l->flows, l->cap_flows, l->n_flows + 1);
      l->hop = g_realloc (l->hop, l->cap_flows);
    }
  l->flows[l->n_flows] = id;
  l->hop[l->n_flows] = hop;
  set_pos (fn, id, hop, l->n_flows++);
}

/* Removes the entry at position p of a link's list: the last one takes
 * its place (its path is not read: its hop byte says where it keeps p). */
static inline void
list_remove (FlowNet *fn, guint li, guint p)
{
  Link *l = &fn->links[li];
  guint last = l->flows[--l->n_flows];
  if (p != l->n_flows)
    {
      guint8 k = l->hop[l->n_flows];
      l->flows[p] = last;
      l->hop[p] = k;
      set_pos (fn, last, k, p);
    }
}

/* A flow (or a bundle's member) joined link li. */
static inline void
link_joined (FlowNet *fn, guint li)
{
  fn->links[li].weight++;
  mark_dirty (fn, li);
  if (fn->rec_valid)
    {
      /* a restart needs every link in the record */
      guint p = fn->rec_pos[li];
      if (!(p < fn->rec_nl && fn->comp_links[p] == li))
        flownet_record_add_link (fn, li);
      fn->d_cnt[li]++;
    }
}

/* A flow that ran at `rate` left link li. */
static inline void
link_left (FlowNet *fn, guint li, double rate)
{
  Link *l = &fn->links[li];
  /* an empty link carries exactly nothing (no rounding left over) */
  fn->load[li] = l->weight > 1 ? fn->load[li] - rate : 0.0;
  l->weight--;
  mark_dirty (fn, li);
  if (fn->rec_valid)
    fn->d_cnt[li]--;
}

