/* The balanced counterfactual's routing: what a step keeps of its actual
 * routing (BalanceTotals: its selections, and its token copies per route
 * class of GPU pairs), and the step rebuilt from them with every expert
 * slot getting the same rows and every pair of a route class the same
 * copies (to within one). Routes of one class cross the same kinds of links
 * (and hierarchical dispatch forwards the same way), so the balanced step
 * moves the same bytes over every link class and keeps its locality (what
 * node-limited routing buys): only the imbalance is gone.
 *
 * Route class of GPUs a, b: 0 when a == b, else 1 + the link classes the
 * route crosses (NVLink 1, IB 2, leaf-spine 4) + 8 when on one node + 16
 * when they have the same local index (rail).
 */
#pragma once

#include "cluster.h"
#include "routing.h"

#define ROUTE_CLASSES 33

typedef struct {
  guint64 selections;
  /* by destination GPU deduplicated, by selection, and by destination node
   * (the route class of the copy to the rail peer there; 0: own node) */
  guint64 pair_tokens[ROUTE_CLASSES], pair_selections[ROUTE_CLASSES], node_tokens[ROUTE_CLASSES];
} BalanceTotals;

typedef struct RouteClasses RouteClasses;

/* The classes of every GPU pair of the cluster (through the NICs even
 * inside a node when `rdma`). */
RouteClasses *route_classes_new (const Cluster *c, guint gpus_per_node, gboolean rdma);
void route_classes_free (RouteClasses *rc);

void balance_record (const RouteClasses *rc, const RoutingLayer *r, BalanceTotals *out);
/* Fills `out` (with node counts) from the totals. */
void balance_layer (const RouteClasses *rc, const BalanceTotals *bt, RoutingLayer *out);

/* The steps' totals, handed from the actual run to the counterfactual,
 * which runs alongside in its own thread and waits for each step. */
typedef struct {
  BalanceTotals *totals;
  guint ready;
  GMutex lock;
  GCond cond;
} BalanceFeed;

void balance_feed_init (BalanceFeed *f, guint steps);
void balance_feed_clear (BalanceFeed *f);
/* Steps 0..ready-1 are recorded. */
void balance_feed_publish (BalanceFeed *f, guint ready);
/* Blocks until the step is recorded. */
const BalanceTotals *balance_feed_wait (BalanceFeed *f, guint step);
