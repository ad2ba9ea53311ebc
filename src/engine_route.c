/* Routes: where flows go (path, latency, rate cap). Flows sent the same
 * way share one record: named routes (engine_route) are interned in an
 * open-addressing table keyed by their contents; shared ones
 * (engine_route_shared) name a core of the flow network, whose flows run
 * bundled; anonymous ones (engine_flow's) serve one flow and the chunks
 * that follow it, and are recycled when the last of those is done. */
#include "engine_private.h"

#include <string.h>

static guint
route_hash (const guint *path, guint n_hops, SimTime latency, double cap)
{
  guint64 h = 0x9e3779b97f4a7c15ull ^ n_hops;
  for (guint i = 0; i < n_hops; i++)
    h = (h ^ path[i]) * 0x100000001b3ull;
  guint64 c;
  memcpy (&c, &cap, sizeof c);
  h = (h ^ (guint64) latency) * 0x9e3779b97f4a7c15ull;
  h = (h ^ c) * 0x9e3779b97f4a7c15ull;
  return (guint) (h >> 32);
}

static guint
route_new (Engine *e, const guint *path, guint n_hops, SimTime latency, double cap, gboolean anon)
{
  guint r;
  if (!anon || !free_ids_take (&e->free_routes, &r))
    {
      guint cap = e->cap_routes;
      GROW (e->routes, e->cap_routes, e->n_routes + 1);
      if (e->cap_routes != cap) /* only then: a sanitizer's realloc always copies */
        e->route_bits = g_realloc (e->route_bits, e->cap_routes);
      r = e->n_routes++;
    }
  Route *rt = &e->routes[r];
  memset (rt, 0, sizeof *rt);
  if (n_hops > 0)
    memcpy (rt->path, path, n_hops * sizeof (guint));
  rt->n_hops = (guint8) n_hops;
  rt->refs = 0; /* anonymous: its flows count themselves in */
  e->route_bits[r] = (guint8) ((n_hops > 0 ? ROUTE_HOPS : 0) | (anon ? ROUTE_ANON : 0));
  rt->latency = latency;
  rt->cap = cap;
  return r;
}

/* The id of the named route (path, latency, cap), added when new. */
guint
engine_route_intern (Engine *e, const guint *path, guint n_hops, SimTime latency, double cap)
{
  if (2 * (e->n_named + 1) > e->route_mask + 1)
    {
      guint size = e->route_mask ? 2 * (e->route_mask + 1) : 1024;
      g_free (e->route_slot);
      e->route_slot = g_new0 (guint, size);
      e->route_mask = size - 1;
      for (guint r = 0; r < e->n_routes; r++)
        {
          const Route *rt = &e->routes[r];
          if (e->route_bits[r] & (ROUTE_ANON | ROUTE_SHARED))
            continue; /* not looked up */
          guint i = route_hash (rt->path, rt->n_hops, rt->latency, rt->cap) & e->route_mask;
          while (e->route_slot[i] != 0)
            i = (i + 1) & e->route_mask;
          e->route_slot[i] = r + 1;
        }
    }
  guint i = route_hash (path, n_hops, latency, cap) & e->route_mask;
  for (; e->route_slot[i] != 0; i = (i + 1) & e->route_mask)
    {
      const Route *rt = &e->routes[e->route_slot[i] - 1];
      if (rt->n_hops == n_hops && rt->latency == latency && rt->cap == cap
          && memcmp (rt->path, path, n_hops * sizeof (guint)) == 0)
        return e->route_slot[i] - 1;
    }
  guint r = route_new (e, path, n_hops, latency, cap, FALSE);
  e->route_slot[i] = r + 1;
  e->n_named++;
  return r;
}

/* A route for one flow (and the chunks that follow it), without a lookup:
 * engine_flow's callers rarely send twice the same way. */
guint
engine_route_anon (Engine *e, const guint *path, guint n_hops, SimTime latency, double cap)
{
  return route_new (e, path, n_hops, latency, cap, TRUE);
}

/* One more flow is done with anonymous route r. */
void
engine_route_release (Engine *e, guint r)
{
  Route *rt = &e->routes[r];
  g_assert (e->route_bits[r] & ROUTE_ANON);
  if (--rt->refs == 0)
    free_ids_put (&e->free_routes, r);
}

guint
engine_route (Engine *e, const guint *path, guint n_hops, SimTime latency, double rate_cap)
{
  g_return_val_if_fail (flownet_path_ok (e->net, path, n_hops), G_MAXUINT);
  g_return_val_if_fail (latency >= 0, G_MAXUINT);
  return engine_route_intern (e, path, n_hops, latency, rate_cap > 0.0 ? rate_cap : 0.0);
}

guint
engine_route_shared (Engine *e, const guint *path, guint n_hops, guint n_private, SimTime latency)
{
  g_return_val_if_fail (n_hops >= 1 && n_hops <= FLOWNET_MAX_HOPS && n_private < n_hops, G_MAXUINT);
  g_return_val_if_fail (latency >= 0, G_MAXUINT);
  guint core = flownet_core (e->net, path + n_private, n_hops - n_private);
  g_return_val_if_fail (core != G_MAXUINT, G_MAXUINT);
  g_return_val_if_fail (flownet_shared_ok (e->net, path, n_private, core), G_MAXUINT);
  guint r = route_new (e, path, n_hops, latency, 0.0, FALSE);
  e->routes[r].core = core;
  e->routes[r].n_private = (guint8) n_private;
  e->route_bits[r] |= ROUTE_SHARED;
  return r;
}

