/* Fluid flow network with max-min fair bandwidth sharing.
 *
 * Links are directed capacities in bytes per second. A flow drains a number of
 * bytes over a path of links, optionally capped at a rate. At every instant
 * the rates are the max-min fair allocation (progressive filling): no link
 * carries more than its capacity, and no flow can go faster without slowing a
 * flow that is no faster than it. Rates change only when flows start or end,
 * and only the component of flows and links reachable from a changed link is
 * re-solved, from the record of the last solve where that is exact
 * (restarts, see flownet.c). Between changes each flow drains linearly, so
 * the next completion is the only event worth scheduling.
 *
 * Each flow's bytes are brought up to date lazily, when a solve touches it.
 * The module knows nothing of time beyond SimTime arithmetic and nothing of
 * what the flows mean: a flow carries an opaque 64-bit tag for its owner.
 */
#pragma once

#include "simtime.h"

#define FLOWNET_MAX_HOPS 8

typedef struct FlowNet FlowNet;

FlowNet *flownet_new (void);
void flownet_free (FlowNet *fn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (FlowNet, flownet_free)

/* Adds a directed link of `capacity` bytes/s (> 0); returns its id (0, 1, ...). */
guint flownet_add_link (FlowNet *fn, double capacity);
guint flownet_n_links (const FlowNet *fn);
double flownet_link_capacity (const FlowNet *fn, guint link);
/* Bytes that flows started so far put on the link (their full size each). */
double flownet_link_bytes (const FlowNet *fn, guint link);
/* Bytes/s the link carries at the current rates (sum of its flows' rates;
 * kept up to date as rates change and flows leave). */
double flownet_link_load (const FlowNet *fn, guint link);
/* All links' loads at once, indexed by link id, for callers that sum them
 * after every change; rounding can leave a load a hair below zero (which
 * flownet_link_load clamps). Valid until the next link is added. */
const double *flownet_link_loads (const FlowNet *fn);

/* Starts a flow of `bytes` (> 0) at time `now` over `path` (1..MAX_HOPS
 * distinct links). `rate_cap` <= 0 means uncapped. The flow has rate 0 until
 * the next flownet_solve(). Returns a flow id that stays valid until the
 * flow is collected. */
guint flownet_flow_add (FlowNet *fn, SimTime now, double bytes, const guint *path, guint n_hops,
                        double rate_cap, guint64 tag);
/* Whether `path` is one a flow may take (1..MAX_HOPS distinct links). */
gboolean flownet_path_ok (const FlowNet *fn, const guint *path, guint n_hops);
/* flownet_flow_add without the check of the path, for a caller that made
 * it once for the flows that go that way (the engine's routes). */
guint flownet_flow_add_path (FlowNet *fn, SimTime now, double bytes, const guint *path, guint n_hops,
                             double rate_cap, guint64 tag);

/* TRUE when flows started or ended since the last solve. */
/* Flows that share the last links of their paths (a core) and differ in
 * the links before it (their private prefixes) can be added as one
 * bundle (flownet_bundle.c): the solver then visits and fixes them as one
 * entry while they have one rate, which max-min gives them unless a
 * private link is their bottleneck (the bundle then splits into plain
 * flows). Their ends come out of flownet_take_batch one by one with
 * their tags, as for flows of their own; they have no flow id, and no
 * continuation (`priv` may be NULL when n_priv is 0). flownet_core
 * returns the id of a core (1..MAX_HOPS distinct links), the same id for
 * the same links. */
guint flownet_core (FlowNet *fn, const guint *links, guint n);
void flownet_flow_add_shared (FlowNet *fn, SimTime now, double bytes, const guint *priv, guint n_priv, guint core,
                              guint64 tag);
/* Whether a member may take private links `priv` to `core` (distinct
 * links, none of the core's, MAX_HOPS in all), and flownet_flow_add_shared
 * without that check (made once per route by the engine). */
gboolean flownet_shared_ok (const FlowNet *fn, const guint *priv, guint n_priv, guint core);
void flownet_member_add (FlowNet *fn, SimTime now, double bytes, const guint *priv, guint n_priv, guint core,
                         guint64 tag);

gboolean flownet_needs_solve (const FlowNet *fn);

/* Recomputes max-min fair rates at time `now` for the components touched
 * since the last solve, and the projected end of each of their flows. A flow
 * keeps its rate and projected end until a solve touches it again, so
 * between solves nothing needs advancing. */
void flownet_solve (FlowNet *fn, SimTime now);

/* Earliest projected end of an active flow at current rates (exact, rounded
 * up to a tick), SIM_TIME_MAX when no flow moves. */
SimTime flownet_next_end (const FlowNet *fn);

typedef struct {
  guint64 tag;
  SimTime end; /* when its last byte drained, >= now */
  double rate; /* its rate until then */
  gboolean continued; /* its continuation took over (flownet_flow_set_next) */
} FlowEnd;

/* Gives an active flow a continuation: once its bytes are drained it goes on
 * at once, over the same links at the same rate, with `bytes` (> 0) more
 * under `tag`, starting at its projected end. The network keeps the same
 * flows on the same links, so the rates stay max-min fair without a
 * re-solve. flownet_take_batch reports the flow as ended (continued) and
 * keeps it; a flow has at most one continuation pending. */
void flownet_flow_set_next (FlowNet *fn, guint flow, double bytes, guint64 tag);

/* Removes the flows that end by `now`, and with tolerance eps > 0 also those
 * whose projected end lies within eps times their age after `now`, and returns
 * them with their own projected ends (array owned by fn, valid until the next
 * call). Rates of the other flows are left as they are: the caller decides
 * when to re-solve (after the latest returned end, so that the returned ends
 * stay exact and only the reuse of the bandwidth they free is postponed).
 * A flow with a continuation is returned too, marked continued, and stays:
 * its continuation runs on from the returned end. */
const FlowEnd *flownet_take_batch (FlowNet *fn, SimTime now, double tolerance, guint *n_done);

guint flownet_n_active (const FlowNet *fn);
double flownet_flow_rate (const FlowNet *fn, guint flow);
double flownet_flow_remaining (const FlowNet *fn, guint flow, SimTime now);
/* When the pending solve is for started flows only (none ended): the first
 * start since the last solve plus `tolerance` times the shortest rough
 * duration of the started flows (bytes at an equal share of their tightest
 * link). 0 otherwise. */
SimTime flownet_added_due (const FlowNet *fn, double tolerance);
/* Counters for benchmarks: solves run and flow-visits they made. */
/* Solves that restarted from the record of an earlier one (flownet.c). */
guint64 flownet_solve_restarts (const FlowNet *fn);
/* Of those, how many skipped a tie of the record (flownet_restart.c). */
guint64 flownet_solve_tie_skips (const FlowNet *fn);
guint64 flownet_solve_count (const FlowNet *fn);
guint64 flownet_solve_work (const FlowNet *fn);
