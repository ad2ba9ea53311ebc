/* A step's dispatch and combine flows between its tasks, the routes they
 * take (made the first time a pair of GPUs is used) and their bytes by
 * link class and GPU: direct and low-latency dispatch (as fan-outs of the
 * engine where no phase gates come between), and DeepEP's hierarchical
 * (normal) kernels. */
#include "moe_state.h"

#include "cluster.h"

/* The engine route from a to b (and the link classes it uses), made the
 * first time a flow goes that way (in `local`, with its links, when there
 * is no table: very large EP, where each flow gets a route of its own). */
static inline __attribute__ ((always_inline)) PairRoute *
route_of (Moe *m, guint a, guint b, PairRoute *local, guint *links, guint *n)
{
  PairRoute *pr = m->pair_route ? &m->pair_route[(gsize) a * m->ep + b] : local;
  *n = 0;
  if (pr->route == G_MAXUINT)
    {
      ClusterPath p;
      cluster_route (m->cluster, a, b, m->rdma, &p);
      if (m->comm_links)
        links[(*n)++] = m->comm_link0 + 2 * a; /* the sender's communication SMs */
      for (guint h = 0; h < p.n_hops; h++)
        links[(*n)++] = p.links[h];
      if (m->comm_links)
        links[(*n)++] = m->comm_link0 + 2 * b + 1; /* the receiver's */
      if (m->pair_route)
        pr->route = m->bundle && p.shared_core
                      ? engine_route_shared (m->engine, links, *n, (m->comm_links ? 1u : 0u) + p.n_private, p.latency)
                      : engine_route (m->engine, links, *n, p.latency, 0.0);
      pr->latency = p.latency;
      pr->uses = (guint8) ((p.uses_nvlink ? 1 : 0) | (p.uses_ib ? 2 : 0) | (p.uses_fabric ? 4 : 0));
    }
  return pr;
}

/* Accounts for a flow of `bytes` from GPU a to GPU b over classes `uses`. */
static inline __attribute__ ((always_inline)) void
account_flow (Moe *m, LayerResult *lr, guint step, guint a, guint b, double bytes, gboolean dispatch, guint8 uses)
{
  m->flows++;
  lr->flows++;
  if (dispatch)
    lr->dispatch_bytes += bytes;
  else
    lr->combine_bytes += bytes;
  double *pb = lr->phase_bytes[dispatch ? 0 : 1];
  if (uses & 1)
    lr->bytes[LCLASS_NVLINK] += bytes, pb[LCLASS_NVLINK] += bytes;
  if (uses & 2)
    lr->bytes[LCLASS_NIC] += bytes, pb[LCLASS_NIC] += bytes;
  if (uses & 4)
    lr->bytes[LCLASS_FABRIC] += bytes, pb[LCLASS_FABRIC] += bytes;
  m->res->gpus[a].bytes_out += bytes;
  m->res->gpus[b].bytes_in += bytes;
  m->res->gpu_steps[(gsize) step * m->ep + a].bytes_out += bytes;
  m->res->gpu_steps[(gsize) step * m->ep + b].bytes_in += bytes;
}

/* Adds a flow of `bytes` from GPU a to GPU b (a != b) and accounts for it:
 * wire bytes by the classes its route uses, payload out of a and into b.
 * With `after` (a flow from a to b, else ENGINE_TASK_NONE) it is the next
 * chunk of a pipeline: it starts once the last byte of `after` is sent.
 * `last`: no chunk follows it (always, for a flow of its own).
 *
 * With micro-batches in flight a's phase gate comes before the flow and
 * its join after it. A pipeline needs them at its ends only: a chunk starts
 * after the one before it, and its last byte leaves (the same route, the
 * same latency) no later than the next chunk's; so the gate goes before
 * the first chunk and the last chunk before the join. Fewer edges, the same
 * times. */
static EngineTask
add_flow (Moe *m, LayerResult *lr, guint step, guint a, guint b, double bytes, gboolean dispatch,
          EngineTask after, gboolean last)
{
  PairRoute local = { G_MAXUINT, 0, 0 };
  guint links[FLOWNET_MAX_HOPS], n;
  PairRoute *pr = route_of (m, a, b, &local, links, &n);
  guint64 tag = dispatch && m->fed_by ? DTAG (step, a, b) : TAG (TAG_FLOW, step, a);
  EngineTask f = after != ENGINE_TASK_NONE ? engine_flow_after (m->engine, after, bytes, pr->latency, tag)
                 : m->pair_route           ? engine_flow_on (m->engine, pr->route, bytes, tag)
                                           : engine_flow (m->engine, bytes, links, n, pr->latency, 0.0, tag);
  if (m->gate[0] && after == ENGINE_TASK_NONE)
    engine_depend (m->engine, m->gate[dispatch ? 0 : 1][a], f);
  if (m->gate[0] && last)
    engine_depend (m->engine, f, m->join[dispatch ? 0 : 1][a]);
  account_flow (m, lr, step, a, b, bytes, dispatch, pr->uses);
  return f;
}

/* Flow f, sent by GPU g, waits for `ready`: g's step start (a dispatch) or
 * its experts (a combine). With micro-batches in flight g's phase gate,
 * which f waits for, waits for it already: no edge. */
static inline void
after_sender (Moe *m, EngineTask ready, EngineTask f)
{
  if (m->gate[0] == NULL)
    engine_depend (m->engine, ready, f);
}

/* DeepEP-style hierarchical dispatch and combine (the `normal` kernels).
 * Dispatch: GPU s sends one IB copy per (token, destination node) to the GPU
 * of that node with its own local index (its rail peer), in K chunks one
 * after the other; the peer forwards each chunk over NVLink to the GPUs of
 * its node that host the tokens' experts, one flow per (peer, destination,
 * chunk) carrying that chunk of every remote source on its rail, once the
 * chunk has arrived from all of them; tokens for the own node go over NVLink
 * directly. Combine is the reverse: GPUs send their results for a remote
 * source to its rail peer on their node over NVLink, where the partial sums
 * of a token are reduced, then one IB copy per (token, node) goes back, chunk
 * after chunk, each chunk once its NVLink parts are in. */
void
moe_build_hierarchical (Moe *m, LayerResult *lr, guint step, const RoutingLayer *r, const EngineTask *start,
                    const EngineTask *expert, const EngineTask *unpermute)
{
  guint ep = m->ep, gpn = r->gpus_per_node, nodes = ep / gpn;
  guint K = (guint) m->s->dispatch_chunks;
  double db = m->db, cb = m->cb;
  /* per rail peer and chunk, one barrier: the chunk in from every remote
   * source on the peer's rail (a forwarding flow waits on it instead of
   * on nodes - 1 flows); made first, so that each IB chunk is wired to it
   * as it is made, while its task is still in cache */
  g_autofree EngineTask *arrived = g_new (EngineTask, (gsize) ep * K);
  for (gsize i = 0; i < (gsize) ep * K; i++)
    arrived[i] = engine_nop (m->engine, TAG (TAG_FLOW, step, (guint) (i / K)));
  g_autofree EngineTask *chunk = g_new (EngineTask, K);
  for (guint s = 0; s < ep; s++)
    {
      guint ns = s / gpn, ls = s % gpn;
      for (guint j = 0; j < gpn; j++) /* own node: NVLink, both ways */
        {
          guint d = ns * gpn + j;
          guint32 n = r->pair_tokens[(gsize) s * ep + d];
          if (d == s || n == 0)
            continue;
          EngineTask f = add_flow (m, lr, step, s, d, n * db, TRUE, ENGINE_TASK_NONE, TRUE);
          after_sender (m, start[s], f);
          engine_depend (m->engine, f, expert[d]);
          EngineTask c = add_flow (m, lr, step, d, s, n * cb, FALSE, ENGINE_TASK_NONE, TRUE);
          after_sender (m, expert[d], c);
          engine_depend (m->engine, c, unpermute[s]);
        }
      for (guint nd = 0; nd < nodes; nd++)
        {
          guint32 n = r->node_tokens[(gsize) s * nodes + nd];
          if (nd == ns || n == 0)
            continue;
          guint peer = nd * gpn + ls;
          EngineTask prev = ENGINE_TASK_NONE;
          for (guint c = 0; c < K; c++)
            {
              /* the chunks stream back to back (each starts once the last
               * byte of the one before is sent) */
              EngineTask f = add_flow (m, lr, step, s, peer, n * db / K, TRUE, prev, c + 1 == K);
              if (c == 0)
                after_sender (m, start[s], f);
              chunk[c] = f;
              prev = f;
            }
          engine_depend (m->engine, prev, expert[peer]); /* the peer's own experts */
          for (guint c = 0; c < K; c++)
            engine_depend (m->engine, chunk[c], arrived[(gsize) peer * K + c]);
        }
    }
  /* NVLink forwarding and the combine's way back, per node, rail peer and chunk */
  g_autofree EngineTask *back = g_new (EngineTask, K);
  for (guint nd = 0; nd < nodes; nd++)
    for (guint lp = 0; lp < gpn; lp++)
      {
        guint peer = nd * gpn + lp;
        for (guint c = 0; c < K; c++)
          back[c] = engine_nop (m->engine, TAG (TAG_FLOW, step, peer)); /* NVLink parts in */
        for (guint c = 0; c < K; c++)
          engine_depend (m->engine, expert[peer], back[c]);
        for (guint j = 0; j < gpn; j++)
          {
            guint d = nd * gpn + j;
            if (d == peer)
              continue;
            /* tokens for d from every remote source on rail lp */
            double n = 0;
            for (guint ns = 0; ns < nodes; ns++)
              if (ns != nd)
                n += r->pair_tokens[(gsize) (ns * gpn + lp) * ep + d];
            if (n == 0)
              continue;
            /* each way, chunk after chunk: forwarding as the chunks come
             * in, results as the expert phase gives them */
            EngineTask prev_f = ENGINE_TASK_NONE, prev_c = ENGINE_TASK_NONE;
            for (guint c = 0; c < K; c++)
              {
                EngineTask f = add_flow (m, lr, step, peer, d, n * db / K, TRUE, prev_f, c + 1 == K);
                engine_depend (m->engine, arrived[(gsize) peer * K + c], f);
                engine_depend (m->engine, f, expert[d]);
                EngineTask cf = add_flow (m, lr, step, d, peer, n * cb / K, FALSE, prev_c, c + 1 == K);
                if (c == 0)
                  after_sender (m, expert[d], cf);
                engine_depend (m->engine, cf, back[c]);
                prev_f = f;
                prev_c = cf;
              }
          }
        /* reduced results back over IB to every remote source on rail lp */
        for (guint ns = 0; ns < nodes; ns++)
          {
            guint s = ns * gpn + lp;
            guint32 n = ns == nd ? 0 : r->node_tokens[(gsize) s * nodes + nd];
            if (n == 0)
              continue;
            EngineTask prev = ENGINE_TASK_NONE;
            for (guint c = 0; c < K; c++)
              {
                EngineTask f = add_flow (m, lr, step, peer, s, n * cb / K, FALSE, prev, c + 1 == K);
                engine_depend (m->engine, back[c], f);
                prev = f;
              }
            engine_depend (m->engine, prev, unpermute[s]);
          }
      }
}

/* Direct dispatch (and low-latency) without phase gates: a GPU's flows of
 * a phase go as one fan-out (engine_fanout), the dispatch after its send,
 * the combine after its experts. Routes are made and flows accounted in
 * the order add_flow would, and a fan-out starts its flows in the order
 * the flows made one by one would start. */
static void
build_direct_fans (Moe *m, LayerResult *lr, guint step, const guint32 *copies, const EngineTask *send,
                   const EngineTask *expert, const EngineTask *post)
{
  guint ep = m->ep, links[FLOWNET_MAX_HOPS], nl;
  g_autofree guint *routes = g_new (guint, ep);
  g_autofree double *bytes = g_new (double, ep);
  g_autofree guint64 *tags = g_new (guint64, ep);
  g_autofree EngineTask *succ = g_new (EngineTask, ep);
  for (guint src = 0; src < ep; src++)
    {
      guint k = 0;
      for (guint dst = 0; dst < ep; dst++)
        {
          guint32 n = copies[(gsize) src * ep + dst];
          if (src == dst || n == 0)
            continue;
          const PairRoute *pr = route_of (m, src, dst, NULL, links, &nl);
          routes[k] = pr->route;
          bytes[k] = n * m->db;
          tags[k] = m->fed_by ? DTAG (step, src, dst) : TAG (TAG_FLOW, step, src);
          succ[k++] = expert[dst];
          account_flow (m, lr, step, src, dst, n * m->db, TRUE, pr->uses);
          pr = route_of (m, dst, src, NULL, links, &nl);
          account_flow (m, lr, step, dst, src, n * m->cb, FALSE, pr->uses);
        }
      if (k > 0)
        engine_depend (m->engine, send[src], engine_fanout (m->engine, k, routes, bytes, tags, succ));
    }
  /* combine: GPU d sends the results of each source's tokens back */
  for (guint d = 0; d < ep; d++)
    {
      guint k = 0;
      for (guint src = 0; src < ep; src++)
        {
          guint32 n = copies[(gsize) src * ep + d];
          if (src == d || n == 0)
            continue;
          routes[k] = m->pair_route[(gsize) d * ep + src].route;
          bytes[k] = n * m->cb;
          tags[k] = TAG (TAG_FLOW, step, d);
          succ[k++] = post[src];
        }
      if (k > 0)
        engine_depend (m->engine, expert[d], engine_fanout (m->engine, k, routes, bytes, tags, succ));
    }
}

/* Direct dispatch (one copy per (token, GPU)) or low-latency (one per
 * (token, expert)): each flow's sender waits for its `send` (dispatch) or
 * `expert` (combine) task, its receiver's `expert` or `post` task for it. */
void
moe_build_direct (Moe *m, LayerResult *lr, guint step, const guint32 *copies, const EngineTask *send,
                  const EngineTask *expert, const EngineTask *post)
{
  if (m->gate[0] == NULL && m->pair_route != NULL)
    {
      build_direct_fans (m, lr, step, copies, send, expert, post);
      return;
    }
  guint ep = m->ep;
  for (guint src = 0; src < ep; src++)
    for (guint dst = 0; dst < ep; dst++)
      {
        guint32 n = copies[(gsize) src * ep + dst];
        if (src == dst || n == 0)
          continue;
        EngineTask f = add_flow (m, lr, step, src, dst, n * m->db, TRUE, ENGINE_TASK_NONE, TRUE);
        after_sender (m, send[src], f);
        engine_depend (m->engine, f, expert[dst]);
        /* combine: dst sends the results of src's tokens back */
        EngineTask c = add_flow (m, lr, step, dst, src, n * m->cb, FALSE, ENGINE_TASK_NONE, TRUE);
        after_sender (m, expert[dst], c);
        engine_depend (m->engine, c, post[src]);
      }
}
