/* The flow network's state, shared by its two files: flownet.c (links,
 * flows, the solve, ends) and flownet_restart.c (the record of the last
 * whole solve that restarts start from). Private to them. */
#pragma once

#include "flownet.h"
#include "radixheap.h"
#include "util.h"

typedef struct {
  double remaining; /* bytes left as of t_update */
  SimTime t_update; /* when remaining was last brought up to date */
  double rate;      /* bytes/s */
  guint path[FLOWNET_MAX_HOPS];
  guint8 n_hops;
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

typedef struct {
  double capacity;
  double bytes;
  guint *flows; /* ids of the flows on the link (a solve reads their paths
                 * from the hot records it touches anyway) */
  guint8 *hop;  /* [i]: which hop of flows[i]'s path this link is (read by
                 * removals only, so the solve's lists stay 4 bytes a flow) */
  guint n_flows;
  guint cap_flows;
  guint mark; /* == fn->mark: reached by the current component search */
  guint8 dirty;
} Link;

struct FlowNet {
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
  guint n_active;
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
  guint ck_every;
  double *ck_rem;    /* [checkpoint][link] */
  guint *ck_free;
  guint *ck_unfixed; /* [checkpoint] */
  double *lvl_share; /* [level]: the greatest share fixed from its checkpoint up to it */
  guint cap_lvl_share;
  guint *lvl_link;   /* [level]: the link it took */
  guint cap_lvl_link;
  gsize cap_ck;
  guint cap_ck_unfixed;
  guint *rec_pos;    /* per link: its position in comp_links */
  /* flows that ended since the record: their lowest level and how many;
   * flows started since; per link, started less ended */
  guint rm_min, rm_n, add_n;
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

  guint64 solves;
  guint64 work;
};

#define GROW UTIL_GROW
#define BLOCK 64

void flownet_new_epoch (FlowNet *fn);

/* flownet_restart.c */
void flownet_record_add_link (FlowNet *fn, guint li);
void flownet_checkpoint_save (FlowNet *fn, guint q);
guint flownet_restart_from_record (FlowNet *fn);
