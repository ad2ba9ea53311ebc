#include "balance.h"

#include <string.h>

struct RouteClasses {
  guint ep, gpn;
  guint8 *pair_class;                 /* [a * ep + b] */
  guint64 pair_n[ROUTE_CLASSES];      /* GPU pairs of each class */
  guint64 node_n[ROUTE_CLASSES];      /* (GPU, other node) pairs whose rail-peer route is of each class */
};

RouteClasses *
route_classes_new (const Cluster *c, guint gpn, gboolean rdma)
{
  RouteClasses *rc = g_new0 (RouteClasses, 1);
  guint ep = cluster_n_gpus (c);
  rc->ep = ep;
  rc->gpn = gpn;
  rc->pair_class = g_new (guint8, (gsize) ep * ep);
  for (guint a = 0; a < ep; a++)
    for (guint b = 0; b < ep; b++)
      {
        guint8 k = 0;
        if (a != b)
          {
            ClusterPath p;
            cluster_route (c, a, b, rdma, &p);
            k = (guint8) (1 + (p.uses_nvlink ? 1 : 0) + (p.uses_ib ? 2 : 0) + (p.uses_fabric ? 4 : 0)
                          + (a / gpn == b / gpn ? 8 : 0) + (a % gpn == b % gpn ? 16 : 0));
          }
        rc->pair_class[(gsize) a * ep + b] = k;
        rc->pair_n[k]++;
        if (b % gpn == a % gpn && b / gpn != a / gpn)
          rc->node_n[k]++;
      }
  return rc;
}

void
route_classes_free (RouteClasses *rc)
{
  if (rc == NULL)
    return;
  g_free (rc->pair_class);
  g_free (rc);
}

/* The route class of the IB copy from GPU a to node n (0 for its own). */
static guint
node_class (const RouteClasses *rc, guint a, guint n)
{
  return n == a / rc->gpn ? 0 : rc->pair_class[(gsize) a * rc->ep + n * rc->gpn + a % rc->gpn];
}

void
balance_record (const RouteClasses *rc, const RoutingLayer *r, BalanceTotals *bt)
{
  guint ep = rc->ep, nodes = ep / rc->gpn;
  memset (bt, 0, sizeof *bt);
  for (guint e = 0; e < r->experts; e++)
    bt->selections += r->expert_rows[e];
  for (guint a = 0; a < ep; a++)
    {
      for (guint b = 0; b < ep; b++)
        {
          guint k = rc->pair_class[(gsize) a * ep + b];
          bt->pair_tokens[k] += r->pair_tokens[(gsize) a * ep + b];
          bt->pair_selections[k] += r->pair_selections[(gsize) a * ep + b];
        }
      for (guint n = 0; n < nodes; n++)
        bt->node_tokens[node_class (rc, a, n)] += r->node_tokens[(gsize) a * nodes + n];
    }
}

/* Share i of `total` split over n slots as evenly as integers allow. */
static guint32
even_share (guint64 total, guint64 n, guint64 i)
{
  return (guint32) ((total * (i + 1)) / n - (total * i) / n);
}

void
balance_layer (const RouteClasses *rc, const BalanceTotals *bt, RoutingLayer *r)
{
  guint ep = rc->ep, nodes = ep / rc->gpn, E = r->experts;
  g_return_if_fail (r->gpus_per_node == rc->gpn);
  for (guint e = 0; e < E; e++)
    r->expert_rows[e] = even_share (bt->selections, E, e);
  guint64 i_pair[ROUTE_CLASSES] = { 0 };
  for (guint a = 0; a < ep; a++)
    for (guint b = 0; b < ep; b++)
      {
        guint k = rc->pair_class[(gsize) a * ep + b];
        guint64 i = i_pair[k]++;
        r->pair_tokens[(gsize) a * ep + b] = even_share (bt->pair_tokens[k], rc->pair_n[k], i);
        r->pair_selections[(gsize) a * ep + b] = even_share (bt->pair_selections[k], rc->pair_n[k], i);
      }
  guint64 i_node[ROUTE_CLASSES] = { 0 };
  for (guint a = 0; a < ep; a++)
    for (guint n = 0; n < nodes; n++)
      {
        guint k = node_class (rc, a, n);
        /* own node: the tokens that stay, one entry per GPU */
        guint64 count = k == 0 ? ep : rc->node_n[k];
        r->node_tokens[(gsize) a * nodes + n] = even_share (bt->node_tokens[k], count, i_node[k]++);
      }
  memset (r->fanout, 0, (nodes + 1) * sizeof (guint32));
}

void
balance_feed_init (BalanceFeed *f, guint steps)
{
  f->totals = g_new0 (BalanceTotals, steps);
  f->ready = 0;
  g_mutex_init (&f->lock);
  g_cond_init (&f->cond);
}

void
balance_feed_clear (BalanceFeed *f)
{
  g_mutex_clear (&f->lock);
  g_cond_clear (&f->cond);
  g_clear_pointer (&f->totals, g_free);
}

void
balance_feed_publish (BalanceFeed *f, guint ready)
{
  g_mutex_lock (&f->lock);
  f->ready = ready;
  g_cond_broadcast (&f->cond);
  g_mutex_unlock (&f->lock);
}

const BalanceTotals *
balance_feed_wait (BalanceFeed *f, guint step)
{
  g_mutex_lock (&f->lock);
  while (f->ready <= step)
    g_cond_wait (&f->cond, &f->lock);
  g_mutex_unlock (&f->lock);
  return &f->totals[step];
}
