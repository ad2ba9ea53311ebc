/* Engine main loop.
 *
 * Each tick: pop every event at the current time, run its handler, start the
 * tasks that became ready (a FIFO, so order is the order of readiness; a
 * compute task joins its GPU's queue, ordered by priority then readiness,
 * and idle GPUs start their first task once every task ready at the instant
 * is queued), then re-solve the network once if flows started or ended. Only the next batch of
 * flow completions is ever scheduled; a re-solve bumps the batch generation so
 * the superseded completion event is dropped when it pops.
 *
 * Task slots (one cache line each), blocks of dependency edges, the private
 * routes of engine_flow and the ready FIFO are recycled arrays: a run
 * allocates while it grows to its peak working set, then not at all (named
 * routes, engine_route's, stay for the run). A flow that follows another
 * (engine_flow_after) takes its place in the network when it is handed
 * over before that one's last byte, without a re-solve.
 *
 * A flow is done when it arrives, its latency after its last byte is sent.
 * When the owner takes note of flows through the flow_arrived hook, a flow
 * followed by one join or compute task (a dispatch flow into its
 * receiver's experts) is done as its last byte is sent, with no event of
 * its own: the event queue reserves the seq its arrival would have had,
 * and the successor carries the latest such (time, seq) as the event it
 * becomes ready at (flow_arrived), so every task starts when and in the
 * order it would have, with one event per join rather than per flow.
 */
#include "engine_private.h"

#include <stdlib.h>
#include <string.h>

static gboolean
ready_less (const Ready *a, const Ready *b)
{
  return a->prio != b->prio ? a->prio < b->prio : a->seq < b->seq;
}

static void
gpu_push (Gpu *g, guint prio, guint id)
{
  UTIL_GROW (g->heap, g->cap, g->len + 1);
  Ready r = { prio, g->seq++, id };
  guint i = g->len++;
  while (i > 0 && ready_less (&r, &g->heap[(i - 1) / 2]))
    {
      g->heap[i] = g->heap[(i - 1) / 2];
      i = (i - 1) / 2;
    }
  g->heap[i] = r;
}

static guint
gpu_pop (Gpu *g)
{
  guint id = g->heap[0].id;
  Ready last = g->heap[--g->len];
  guint i = 0;
  for (;;)
    {
      guint c = 2 * i + 1;
      if (c >= g->len)
        break;
      if (c + 1 < g->len && ready_less (&g->heap[c + 1], &g->heap[c]))
        c++;
      if (!ready_less (&g->heap[c], &last))
        break;
      g->heap[i] = g->heap[c];
      i = c;
    }
  if (g->len > 0)
    g->heap[i] = last;
  return id;
}


static inline EngineTask
handle_of (guint idx, guint gen)
{
  return ((guint64) gen << 32) | idx;
}

Engine *
engine_new (const EngineHooks *hooks, void *user, double tolerance)
{
  g_return_val_if_fail (tolerance >= 0.0, NULL);
  Engine *e = g_new0 (Engine, 1);
  if (hooks)
    e->hooks = *hooks;
  e->user = user;
  e->tolerance = tolerance;
  e->q = sim_queue_new ();
  e->net = flownet_new ();
  e->solve_event_time = SIM_TIME_MAX;
  return e;
}

void
engine_free (Engine *e)
{
  if (e == NULL)
    return;
  for (guint i = 0; i < e->n_tasks; i++)
    if (e->tasks[i].kind == TASK_FANOUT && e->tasks[i].state != ST_FREE)
      g_free (e->tasks[i].fan);
  for (guint i = 0; i < e->n_gpus; i++)
    g_free (e->gpus[i].heap);
  g_free (e->gpus);
  util_free_aligned (e->tasks, e->cap_tasks, sizeof (Task));
  free_ids_clear (&e->free_tasks);
  util_free_aligned (e->edges, e->cap_edges, sizeof (EdgeBlock));
  g_free (e->routes);
  g_free (e->route_bits);
  free_ids_clear (&e->free_routes);
  g_free (e->route_slot);
  free_ids_clear (&e->free_edges);
  g_free (e->uncommitted);
  g_free (e->batch);
  g_free (e->batch_by_seq);
  id_fifo_clear (&e->ready);
  g_free (e->touched);
  sim_queue_free (e->q);
  flownet_free (e->net);
  g_free (e);
}

guint
engine_add_link (Engine *e, double capacity)
{
  return flownet_add_link (e->net, capacity);
}

guint
engine_add_gpu (Engine *e)
{
  GROW (e->gpus, e->cap_gpus, e->n_gpus + 1);
  Gpu *g = &e->gpus[e->n_gpus];
  memset (g, 0, sizeof *g);
  g->sm_share = 1.0;
  return e->n_gpus++;
}

void
engine_gpu_set_sm_share (Engine *e, guint gpu, double share)
{
  g_return_if_fail (gpu < e->n_gpus);
  g_return_if_fail (share > 0.0 && share <= 1.0);
  e->gpus[gpu].sm_share = share;
}

static guint
task_alloc (Engine *e, guint8 kind, guint64 tag)
{
  guint id;
  if (!free_ids_take (&e->free_tasks, &id))
    {
      if (e->n_tasks == e->cap_tasks) /* a record a cache line */
        e->tasks = util_grow_aligned (e->tasks, &e->cap_tasks, e->n_tasks, sizeof (Task), 1024);
      id = e->n_tasks++;
      e->tasks[id].gen = 0;
    }
  Task *t = &e->tasks[id];
  guint gen = t->gen;
  memset (t, 0, sizeof *t);
  t->gen = gen;
  t->kind = kind;
  t->state = ST_NEW;
  t->succ_head = NIL;
  t->tag = tag;
  GROW (e->uncommitted, e->cap_uncommitted, e->n_uncommitted + 1);
  e->uncommitted[e->n_uncommitted++] = id;
  e->live++;
  return id;
}

EngineTask
engine_nop (Engine *e, guint64 tag)
{
  guint id = task_alloc (e, TASK_NOP, tag);
  return handle_of (id, e->tasks[id].gen);
}

EngineTask
engine_compute (Engine *e, guint gpu, SimTime duration, guint64 tag)
{
  return engine_compute_prio (e, gpu, duration, 0, tag);
}

EngineTask
engine_compute_prio (Engine *e, guint gpu, SimTime duration, guint prio, guint64 tag)
{
  g_return_val_if_fail (gpu < e->n_gpus, ENGINE_TASK_NONE);
  g_return_val_if_fail (duration >= 0, ENGINE_TASK_NONE);
  guint id = task_alloc (e, TASK_COMPUTE, tag);
  e->tasks[id].gpu = gpu;
  e->tasks[id].duration = duration;
  e->tasks[id].prio = prio;
  return handle_of (id, e->tasks[id].gen);
}

EngineTask
engine_flow (Engine *e, double bytes, const guint *path, guint n_hops, SimTime latency,
             double rate_cap, guint64 tag)
{
  g_return_val_if_fail (bytes >= 0.0 && isfinite (bytes), ENGINE_TASK_NONE);
  g_return_val_if_fail (n_hops <= FLOWNET_MAX_HOPS, ENGINE_TASK_NONE);
  g_return_val_if_fail (bytes == 0.0 || n_hops >= 1, ENGINE_TASK_NONE);
  g_return_val_if_fail (n_hops == 0 || flownet_path_ok (e->net, path, n_hops), ENGINE_TASK_NONE);
  g_return_val_if_fail (latency >= 0, ENGINE_TASK_NONE);
  return engine_flow_on (e, engine_route_anon (e, path, n_hops, latency, rate_cap > 0.0 ? rate_cap : 0.0), bytes, tag);
}

EngineTask
engine_flow_on (Engine *e, guint route, double bytes, guint64 tag)
{
  g_return_val_if_fail (route < e->n_routes, ENGINE_TASK_NONE);
  g_return_val_if_fail (bytes >= 0.0 && isfinite (bytes), ENGINE_TASK_NONE);
  g_return_val_if_fail (bytes == 0.0 || (e->route_bits[route] & ROUTE_HOPS), ENGINE_TASK_NONE);
  guint id = task_alloc (e, TASK_FLOW, tag);
  Task *t = &e->tasks[id];
  t->bytes = bytes;
  t->route = route;
  t->next = NIL;
  t->anon_route = (e->route_bits[route] & ROUTE_ANON) != 0;
  if (t->anon_route)
    e->routes[route].refs++;
  return handle_of (id, t->gen);
}

static inline Task *task_from_handle (Engine *e, EngineTask h);
static void try_hand_over (Engine *e, Task *t);

EngineTask
engine_flow_after (Engine *e, EngineTask prev, double bytes, SimTime latency, guint64 tag)
{
  g_return_val_if_fail (bytes >= 0.0 && isfinite (bytes), ENGINE_TASK_NONE);
  g_return_val_if_fail (latency >= 0, ENGINE_TASK_NONE);
  Task *p = task_from_handle (e, prev);
  g_return_val_if_fail (p != NULL && p->kind == TASK_FLOW && p->state == ST_NEW && p->next == NIL,
                        ENGINE_TASK_NONE);
  g_return_val_if_fail (bytes == 0.0 || e->routes[p->route].n_hops >= 1, ENGINE_TASK_NONE);
  guint pi = (guint) (prev & 0xffffffffu);
  guint route = p->route;
  if (e->routes[route].latency != latency)
    {
      Route copy = e->routes[route]; /* the routes may move as one is added */
      route = (e->route_bits[route] & ROUTE_ANON) ? engine_route_anon (e, copy.path, copy.n_hops, latency, copy.cap)
                                                  : engine_route_intern (e, copy.path, copy.n_hops, latency, copy.cap);
    }
  gboolean anon = (e->route_bits[route] & ROUTE_ANON) != 0;
  if (anon)
    e->routes[route].refs++;
  guint id = task_alloc (e, TASK_FLOW, tag);
  Task *t = &e->tasks[id];
  p = &e->tasks[pi];
  t->bytes = bytes;
  t->route = route;
  t->anon_route = anon;
  t->follows = 1;
  t->pending = 1;
  t->next = NIL;
  p->next = id;
  return handle_of (id, t->gen);
}

EngineTask
engine_fanout (Engine *e, guint n, const guint *routes, const double *bytes, const guint64 *tags,
               const EngineTask *succ)
{
  g_return_val_if_fail (n > 0 && n <= G_MAXINT32, ENGINE_TASK_NONE);
  g_return_val_if_fail (e->hooks.flow_arrived != NULL, ENGINE_TASK_NONE);
  for (guint i = 0; i < n; i++)
    {
      g_return_val_if_fail (routes[i] < e->n_routes, ENGINE_TASK_NONE);
      g_return_val_if_fail ((e->route_bits[routes[i]] & (ROUTE_HOPS | ROUTE_ANON)) == ROUTE_HOPS, ENGINE_TASK_NONE);
      g_return_val_if_fail (bytes[i] > 0.0 && isfinite (bytes[i]), ENGINE_TASK_NONE);
      const Task *s = task_from_handle (e, succ[i]);
      g_return_val_if_fail (s != NULL && s->state == ST_NEW && (s->kind == TASK_NOP || s->kind == TASK_COMPUTE),
                            ENGINE_TASK_NONE);
    }
  FanFlow *fan = g_new (FanFlow, n);
  for (guint i = 0; i < n; i++)
    {
      fan[i] = (FanFlow) { .bytes = bytes[i], .tag = tags[i], .route = routes[i], .succ = (Succ) (succ[i] & 0xffffffffu) };
      e->tasks[fan[i].succ].pending++;
    }
  guint id = task_alloc (e, TASK_FANOUT, 0);
  Task *t = &e->tasks[id];
  t->fan = fan;
  t->n_fan = t->fan_left = n;
  return handle_of (id, t->gen);
}

static inline Task *
task_from_handle (Engine *e, EngineTask h)
{
  guint idx = (guint) (h & 0xffffffffu);
  guint gen = (guint) (h >> 32);
  if (idx >= e->n_tasks)
    return NULL;
  Task *t = &e->tasks[idx];
  if (t->gen != gen || t->state == ST_FREE)
    return NULL;
  return t;
}

static guint
edge_block_alloc (Engine *e)
{
  guint bi;
  if (free_ids_take (&e->free_edges, &bi))
    return bi;
  if (e->n_edges == e->cap_edges)
    e->edges = util_grow_aligned (e->edges, &e->cap_edges, e->n_edges, sizeof (EdgeBlock), 64);
  return e->n_edges++;
}

void
engine_depend (Engine *e, EngineTask before, EngineTask after)
{
  Task *a = task_from_handle (e, after);
  g_return_if_fail (a != NULL && a->state == ST_NEW);
  Task *b = task_from_handle (e, before);
  if (b == NULL)
    return; /* already done */
  g_return_if_fail (b->kind != TASK_FANOUT); /* its flows release their own */
  a->pending++;
  if (b->n_succ < SUCC_INLINE)
    {
      b->succ[b->n_succ++] = (guint) (after & 0xffffffffu);
      return;
    }
  Succ sc = (guint) (after & 0xffffffffu);
  if (b->succ_head != NIL && e->edges[b->succ_head].n < EDGE_BLOCK)
    {
      EdgeBlock *blk = &e->edges[b->succ_head];
      blk->succ[blk->n++] = sc;
      return;
    }
  guint bi = edge_block_alloc (e);
  e->edges[bi] = (EdgeBlock) { 1, b->succ_head, { sc } };
  b->succ_head = bi;
}

static void make_ready (Engine *e, Task *t, guint id);

void
engine_commit (Engine *e)
{
  for (guint i = 0; i < e->n_uncommitted; i++)
    {
      Task *t = &e->tasks[e->uncommitted[i]];
      t->state = ST_WAIT;
      if (t->pending == 0)
        make_ready (e, t, e->uncommitted[i]);
    }
  e->n_uncommitted = 0;
}

/* A follower handed to the network took over from flow `t` at `end`. */
static void prev_sending (Engine *e, Task *f, guint net);

static void
follower_took_over (Engine *e, Task *t, guint net, SimTime end)
{
  Task *f = &e->tasks[t->next];
  g_assert (f->handed && f->pending == 1 && f->state == ST_WAIT);
  guint id = t->next;
  f->follows = 0;
  f->pending = 0;
  f->state = ST_RUN;
  f->start = end;
  f->net = net;
  if (e->hooks.task_started)
    e->hooks.task_started (e->user, f->tag, end);
  f = &e->tasks[id]; /* hooks may create tasks and move the array */
  if (f->next != NIL)
    prev_sending (e, &e->tasks[f->next], net);
}

static void gpu_try_start (Engine *e, guint gpu);

static void
gpu_touch (Engine *e, guint gpu)
{
  if (e->gpus[gpu].touched)
    return;
  e->gpus[gpu].touched = TRUE;
  GROW (e->touched, e->cap_touched, e->n_touched + 1);
  e->touched[e->n_touched++] = gpu;
}

/* A flow that now waits only for the last byte of the flow it follows,
 * which is in the network: hand it over as that flow's continuation. */
static void
try_hand_over (Engine *e, Task *t)
{
  if (!t->follows || !t->prev_sending || t->handed || t->pending != 1 || t->state != ST_WAIT || t->bytes == 0.0)
    return;
  g_assert (t->net != NIL);
  flownet_flow_set_next (e->net, t->net, t->bytes, (guint64) (t - e->tasks));
  t->handed = 1;
}

/* The flow follower f follows started sending, as flow `net` of the
 * network. */
static void
prev_sending (Engine *e, Task *f, guint net)
{
  f->prev_sending = 1;
  f->net = net;
  try_hand_over (e, f);
}

/* Task t (compute or nop, its predecessors all done) is ready now, or,
 * when a flow it waited for arrives later (its start holds when, see
 * flow_arrived), at that event. */
static void
make_ready (Engine *e, Task *t, guint id)
{
  SimTime now = sim_queue_now (e->q);
  if (t->kind != TASK_FLOW && t->ready_seq > 0
      && (t->start > now || (t->start == now && t->ready_seq > sim_queue_seq_floor (e->q))))
    sim_queue_push_seq (e->q, t->start, t->ready_seq - 1, EV_READY, t->gen, id);
  else
    id_fifo_push (&e->ready, id);
}

/* One predecessor of task `id` finished. */
static inline void
succ_release (Engine *e, guint id)
{
  Task *s = &e->tasks[id];
  g_assert (s->state != ST_FREE && s->pending > 0);
  if (--s->pending == 0 && s->state == ST_WAIT)
    make_ready (e, s, id);
  else if (s->pending == 1 && s->follows)
    try_hand_over (e, s);
}

/* The last byte of flow `t` left: its follower, if any, may start. */
static void
release_follower (Engine *e, Task *t)
{
  if (t->next == NIL)
    return;
  Task *f = &e->tasks[t->next];
  f->follows = 0; /* its pending count now holds only its other predecessors */
  succ_release (e, t->next);
}

/* Task `id` is done: its slot goes back, its handles see it done. */
static inline void
task_free (Engine *e, Task *t, guint id)
{
  t->state = ST_FREE;
  t->gen++;
  free_ids_put (&e->free_tasks, id);
  e->live--;
}

static void
task_finish (Engine *e, guint id)
{
  Task *t = &e->tasks[id];
  SimTime now = sim_queue_now (e->q);
  e->last_done = MAX (e->last_done, now); /* a flow may have arrived later (flow_arrived) */
  if (e->hooks.task_done && !(t->kind == TASK_FLOW && e->hooks.flow_arrived))
    e->hooks.task_done (e->user, t->tag, t->start, now);
  t = &e->tasks[id]; /* hooks may create tasks and move the array */
  /* successors become ready in the reverse of the order they were added:
   * the blocks (newest first, each from its last), then the inline ones */
  for (guint bi = t->succ_head; bi != NIL;)
    {
      const EdgeBlock *blk = &e->edges[bi];
      guint next = blk->next;
      if (next != NIL)
        __builtin_prefetch (&e->edges[next]);
      for (guint k = 0; k < blk->n; k++)
        __builtin_prefetch (&e->tasks[blk->succ[k]]);
      for (guint k = blk->n; k-- > 0;)
        succ_release (e, blk->succ[k]);
      free_ids_put (&e->free_edges, bi);
      bi = next;
    }
  for (guint i = t->n_succ; i-- > 0;)
    succ_release (e, t->succ[i]);
  guint8 kind = t->kind;
  guint gpu = kind == TASK_COMPUTE ? t->gpu : 0;
  if (kind == TASK_FLOW && t->anon_route)
    engine_route_release (e, t->route);
  task_free (e, t, id);
  if (kind == TASK_COMPUTE)
    {
      e->gpus[gpu].busy = FALSE;
      gpu_touch (e, gpu);
    }
}

static void
gpu_try_start (Engine *e, guint gpu)
{
  Gpu *g = &e->gpus[gpu];
  if (g->busy || g->len == 0)
    return;
  guint id = gpu_pop (g);
  g->busy = TRUE;
  Task *t = &e->tasks[id];
  SimTime now = sim_queue_now (e->q);
  t->start = now;
  t->state = ST_RUN;
  SimTime d = t->duration;
  if (g->sm_share < 1.0)
    d = sim_time_from_seconds (sim_time_to_seconds (d) / g->sm_share);
  if (e->hooks.task_started)
    e->hooks.task_started (e->user, t->tag, now);
  sim_queue_push (e->q, now + d, EV_TASK_DONE, e->tasks[id].gen, id);
}

static void
task_start (Engine *e, guint id)
{
  Task *t = &e->tasks[id];
  SimTime now = sim_queue_now (e->q);
  switch (t->kind)
    {
    case TASK_NOP:
      t->start = now;
      t->state = ST_RUN;
      if (e->hooks.task_started)
        e->hooks.task_started (e->user, t->tag, now);
      task_finish (e, id);
      break;
    case TASK_COMPUTE:
      gpu_push (&e->gpus[t->gpu], t->prio, id);
      gpu_touch (e, t->gpu);
      break;
    case TASK_FLOW:
      t->start = now;
      t->state = ST_RUN;
      if (e->hooks.task_started)
        e->hooks.task_started (e->user, t->tag, now);
      t = &e->tasks[id];
      if (t->bytes > 0.0)
        {
          const Route *rt = &e->routes[t->route];
          if ((e->route_bits[t->route] & ROUTE_SHARED) && t->next == NIL)
            {
              flownet_member_add (e->net, now, t->bytes, rt->path, rt->n_private, rt->core, id);
              t->net = NIL;
            }
          else
            {
              t->net = flownet_flow_add_path (e->net, now, t->bytes, rt->path, rt->n_hops, rt->cap, id);
              if (t->next != NIL)
                prev_sending (e, &e->tasks[t->next], t->net);
            }
        }
      else
        {
          SimTime at = now + e->routes[t->route].latency;
          if (e->hooks.flow_arrived)
            e->hooks.flow_arrived (e->user, t->tag, now, at);
          sim_queue_push (e->q, at, EV_TASK_DONE, t->gen, id);
          release_follower (e, t); /* nothing to send */
        }
      break;
    case TASK_FANOUT:
      {
        t->start = now;
        t->state = ST_RUN;
        FanFlow *fan = t->fan; /* (hooks may move the tasks, not it) */
        for (guint k = t->n_fan; k-- > 0;)
          {
            if (k >= 4) /* the routes ahead (the flows are read in order) */
              __builtin_prefetch (&e->routes[fan[k - 4].route]);
            if (e->hooks.task_started)
              e->hooks.task_started (e->user, fan[k].tag, now);
            const Route *rt = &e->routes[fan[k].route];
            guint64 tag = FAN_TAG | ((guint64) k << 32) | id;
            if (e->route_bits[fan[k].route] & ROUTE_SHARED)
              flownet_member_add (e->net, now, fan[k].bytes, rt->path, rt->n_private, rt->core, tag);
            else
              flownet_flow_add_path (e->net, now, fan[k].bytes, rt->path, rt->n_hops, rt->cap, tag);
            fan[k].lat = rt->latency;
          }
      }
      break;
    default:
      g_assert_not_reached ();
    }
}

static void
drain_ready (Engine *e)
{
  while (e->ready.len > 0 || e->n_touched > 0)
    {
      while (e->ready.len > 0)
        {
          /* a fan-out's tasks start one after another: fetch them ahead,
           * and the routes of flows whose tasks came in by now */
          if (e->ready.len > 8)
            __builtin_prefetch (&e->tasks[id_fifo_peek (&e->ready, 8)]);
          if (e->ready.len > 4)
            {
              const Task *a = &e->tasks[id_fifo_peek (&e->ready, 4)];
              if (a->kind == TASK_FLOW)
                {
                  __builtin_prefetch (&e->routes[a->route]);
                  if (a->next != NIL)
                    __builtin_prefetch (&e->tasks[a->next]);
                }
            }
          task_start (e, id_fifo_pop (&e->ready));
        }
      /* in the order they were touched; starting runs hooks, which may add
       * ready tasks (never touch GPUs): loop until settled */
      for (guint i = 0; i < e->n_touched; i++)
        {
          guint gpu = e->touched[i];
          e->gpus[gpu].touched = FALSE;
          gpu_try_start (e, gpu);
        }
      e->n_touched = 0;
    }
}

/* Adds an event to the batch queued at the end of on_flow_batch. */
static inline void
batch_add (Engine *e, SimTime time, guint64 seq, guint32 kind, guint32 gen, guint id)
{
  GROW (e->batch, e->cap_batch, e->n_batch + 1);
  e->batch[e->n_batch++] = (SimEvent) { time, seq, kind, gen, id };
}

/* Queues the batch's events, in order of seq: of the n flows that ended
 * (seqs seq0 + i), and of tasks that became ready at the arrival of one
 * of them or of a flow before (older seqs, ordered apart: few). Each seq
 * is one event's (a flow passes its key on to its one successor at most). */
static void
batch_queue (Engine *e, guint64 seq0, guint n)
{
  guint nb = e->n_batch;
  gboolean sorted = TRUE;
  for (guint i = 1; i < nb && sorted; i++)
    sorted = e->batch[i - 1].seq < e->batch[i].seq;
  if (!sorted)
    {
      GROW (e->batch_by_seq, e->cap_batch_by_seq, n + nb);
      SimEvent *by = e->batch_by_seq, *slot = by + nb; /* [n]: by seq - seq0 */
      for (guint i = 0; i < n; i++)
        slot[i].kind = G_MAXUINT32;
      guint n_old = 0;
      for (guint i = 0; i < nb; i++)
        {
          const SimEvent *ev = &e->batch[i];
          if (ev->seq >= seq0)
            slot[ev->seq - seq0] = *ev;
          else
            {
              guint k = n_old++;
              for (; k > 0 && by[k - 1].seq > ev->seq; k--)
                by[k] = by[k - 1];
              by[k] = *ev;
            }
        }
      guint m = n_old;
      for (guint i = 0; i < n; i++)
        if (slot[i].kind != G_MAXUINT32)
          by[m++] = slot[i];
      g_assert (m == nb);
      memcpy (e->batch, by, nb * sizeof *by);
    }
  sim_queue_push_batch_seq (e->q, e->batch, nb);
}

/* A flow that arrives `at`, at the event (at, seq), was the predecessor of
 * compute or nop task `sid` (see flow_arrived). */
static inline void
arrival_release (Engine *e, guint sid, SimTime at, guint64 seq)
{
  Task *s = &e->tasks[sid];
  g_assert (s->state != ST_FREE && s->pending > 0);
  if (at > s->start || (at == s->start && seq + 1 > s->ready_seq))
    {
      s->start = at;
      s->ready_seq = seq + 1;
    }
  if (--s->pending == 0 && s->state == ST_WAIT)
    batch_add (e, s->start, s->ready_seq - 1, EV_READY, s->gen, sid);
}

/* Flow `id` sent its last byte; it arrives `at` (its end plus latency),
 * at the event (at, seq) its end would have been scheduled as. When the
 * owner hears of flows from the flow_arrived hook (or not at all), a flow
 * with one successor that is not a flow (a join, the receiver's compute:
 * the common case), or none, is done now, at no event of its own: its
 * successor takes (at, seq) as the key of the event it becomes ready at
 * when that is its latest predecessor, which is where the flow's event
 * would have made it ready, so nothing runs in another order. Other flows
 * get their event. */
static void
flow_arrived (Engine *e, guint id, SimTime at, guint64 seq)
{
  Task *t = &e->tasks[id];
  if (e->hooks.flow_arrived)
    e->hooks.flow_arrived (e->user, t->tag, t->start, at);
  if ((e->hooks.task_done && !e->hooks.flow_arrived) || t->succ_head != NIL || t->n_succ > 1
      || (t->n_succ == 1 && e->tasks[t->succ[0]].kind == TASK_FLOW))
    {
      batch_add (e, at, seq, EV_TASK_DONE, t->gen, id);
      return;
    }
  e->last_done = MAX (e->last_done, at);
  if (t->n_succ == 1)
    arrival_release (e, t->succ[0], at, seq);
  if (t->anon_route)
    engine_route_release (e, t->route);
  task_free (e, t, id);
}

/* Flow k of fan-out `id` arrives `at`, at the event (at, seq): done as a
 * flow of its own with one compute or nop successor is (flow_arrived),
 * and the fan-out with its last flow. */
static void
fan_arrived (Engine *e, guint id, guint k, SimTime at, guint64 seq)
{
  e->hooks.flow_arrived (e->user, e->tasks[id].fan[k].tag, e->tasks[id].start, at);
  Task *t = &e->tasks[id];
  e->last_done = MAX (e->last_done, at);
  arrival_release (e, t->fan[k].succ, at, seq);
  if (--t->fan_left > 0)
    return;
  g_clear_pointer (&t->fan, g_free);
  task_free (e, t, id);
}

/* ---- event handlers (indexed by EV_*) ---- */

static void
on_flow_batch (Engine *e, const SimEvent *ev)
{
  if (ev->gen != e->batch_gen)
    return; /* superseded by a later solve */
  e->batch_consumed = TRUE;
  guint n;
  const FlowEnd *done = flownet_take_batch (e->net, ev->time, e->tolerance, &n);
  /* loads change only where a flow left (a continued one keeps its rate) */
  gboolean left = FALSE;
  for (guint i = 0; i < n && !left; i++)
    left = !done[i].continued;
  if (left && e->hooks.rates_changed)
    e->hooks.rates_changed (e->user, ev->time);
  double wsum = 0.0, w = 0.0;
  /* the seqs their ends would have been scheduled with, in this order */
  guint64 seq0 = sim_queue_reserve (e->q, n);
  e->n_batch = 0;
  for (guint i = 0; i < n; i++)
    {
      /* the tasks ahead, and the routes (their latency) and successors of
       * those fetched four ends ago; of a chunk that hands over, the chunk
       * that takes over, and two ends ahead the one after that, which then
       * follows the new sender */
      if (i + 8 < n)
        __builtin_prefetch (&e->tasks[(guint) done[i + 8].tag]);
      if (i + 4 < n)
        {
          const Task *a = &e->tasks[(guint) done[i + 4].tag];
          if (done[i + 4].tag & FAN_TAG)
            __builtin_prefetch (&a->fan[(guint) (done[i + 4].tag >> 32) & G_MAXINT32]);
          else
            {
              __builtin_prefetch (&e->routes[a->route]);
              if (a->n_succ > 0)
                __builtin_prefetch (&e->tasks[a->succ[0]]);
              if (done[i + 4].continued)
                __builtin_prefetch (&e->tasks[a->next]);
            }
        }
      if (i + 2 < n && done[i + 2].continued)
        {
          guint nx = e->tasks[e->tasks[(guint) done[i + 2].tag].next].next;
          if (nx != NIL)
            __builtin_prefetch (&e->tasks[nx]);
        }
      guint id = (guint) done[i].tag;
      Task *t = &e->tasks[id];
      if (done[i].tag & FAN_TAG)
        {
          guint k = (guint) (done[i].tag >> 32) & G_MAXINT32;
          wsum += done[i].rate * (double) (done[i].end - ev->time);
          w += done[i].rate;
          fan_arrived (e, id, k, done[i].end + t->fan[k].lat, seq0 + i);
          continue;
        }
      SimTime at = done[i].end + e->routes[t->route].latency;
      if (done[i].continued)
        follower_took_over (e, t, t->net, done[i].end); /* frees no bandwidth */
      else
        {
          release_follower (e, t);
          wsum += done[i].rate * (double) (done[i].end - ev->time);
          w += done[i].rate;
        }
      flow_arrived (e, id, at, seq0 + i);
    }
  batch_queue (e, seq0, n);
  if (w > 0.0)
    {
      SimTime mid = ev->time + (SimTime) (wsum / w);
      if (mid > e->hold_until)
        e->hold_until = mid;
    }
}

static void
on_solve (Engine *e, const SimEvent *ev)
{
  if (ev->time != e->solve_event_time)
    return; /* superseded by an earlier one */
  e->solve_event_time = SIM_TIME_MAX;
}

static void
on_task_done (Engine *e, const SimEvent *ev)
{
  guint id = (guint) ev->id;
  g_assert (e->tasks[id].gen == ev->gen && e->tasks[id].state == ST_RUN);
  task_finish (e, id);
}

/* A task whose last predecessor was a flow that arrived now. */
static void
on_ready (Engine *e, const SimEvent *ev)
{
  guint id = (guint) ev->id;
  g_assert (e->tasks[id].gen == ev->gen && e->tasks[id].state == ST_WAIT && e->tasks[id].pending == 0);
  id_fifo_push (&e->ready, id);
}

typedef void (*EventHandler) (Engine *e, const SimEvent *ev);
static const EventHandler handlers[EV_N] = {
  [EV_FLOW_BATCH] = on_flow_batch,
  [EV_SOLVE] = on_solve,
  [EV_TASK_DONE] = on_task_done,
  [EV_READY] = on_ready,
};

static void
schedule_batch (Engine *e, SimTime now)
{
  e->batch_gen++;
  e->batch_consumed = FALSE;
  SimTime t = flownet_next_end (e->net);
  g_assert (t >= now);
  if (t != SIM_TIME_MAX)
    sim_queue_push (e->q, t, EV_FLOW_BATCH, e->batch_gen, 0);
}

/* Re-solves now, or at the end of a hold: a batch taken with tolerance holds
 * re-solves until the rate-weighted mean of its flows' ends (see
 * on_flow_batch), so the bandwidth they free is given to the others neither
 * early nor late on average. */
static void
maybe_solve (Engine *e, SimTime now)
{
  if (flownet_needs_solve (e->net))
    {
      SimTime due = e->hold_until;
      if (e->tolerance > 0.0)
        {
          SimTime added = flownet_added_due (e->net, e->tolerance); /* (once: MAX repeats its arguments) */
          due = MAX (due, added);
        }
      if (due <= now)
        {
          flownet_solve (e->net, now);
          if (e->hooks.rates_changed)
            e->hooks.rates_changed (e->user, now);
          schedule_batch (e, now);
          return;
        }
      if (due < e->solve_event_time)
        {
          e->solve_event_time = due;
          sim_queue_push (e->q, due, EV_SOLVE, 0, 0);
        }
    }
  if (e->batch_consumed)
    schedule_batch (e, now);
}

/* Fetches the task of the next event while this one runs: most events are
 * task ends, whose tasks sit anywhere in the task array. */
static inline void
prefetch_next (const Engine *e)
{
  if (sim_queue_length (e->q) > 0)
    {
      guint64 id = sim_queue_peek_id (e->q);
      if (id < e->n_tasks)
        __builtin_prefetch (&e->tasks[id]);
      /* and further on in a batch of ends, whose tasks a solve since has
       * mostly pushed out of cache; then the successors of one fetched so
       * three events ago */
      id = sim_queue_peek_id_ahead (e->q, 6);
      if (id < e->n_tasks)
        __builtin_prefetch (&e->tasks[id]);
      id = sim_queue_peek_id_ahead (e->q, 3);
      if (id < e->n_tasks)
        {
          const Task *t = &e->tasks[id];
          if (t->succ_head != NIL)
            __builtin_prefetch (&e->edges[t->succ_head]);
          for (guint i = 0; i < t->n_succ; i++)
            __builtin_prefetch (&e->tasks[t->succ[i]]);
          if (t->kind == TASK_FLOW && t->next != NIL)
            __builtin_prefetch (&e->tasks[t->next]);
        }
    }
}

SimTime
engine_run (Engine *e)
{
  drain_ready (e);
  maybe_solve (e, sim_queue_now (e->q));
  SimEvent ev;
  while (sim_queue_pop (e->q, &ev))
    {
      e->events++;
      prefetch_next (e);
      handlers[ev.kind](e, &ev);
      drain_ready (e);
      /* the tick's other events, each followed by the tasks it made ready */
      while (sim_queue_peek_time (e->q) == ev.time)
        {
          sim_queue_pop (e->q, &ev);
          e->events++;
          prefetch_next (e);
          handlers[ev.kind](e, &ev);
          drain_ready (e);
        }
      maybe_solve (e, ev.time);
    }
  /* superseded events may pop after the last task; they are not work */
  return e->last_done;
}

SimTime
engine_now (const Engine *e)
{
  return sim_queue_now (e->q);
}

const FlowNet *
engine_flownet (const Engine *e)
{
  return e->net;
}

guint64
engine_events (const Engine *e)
{
  return e->events;
}

guint
engine_tasks_pending (const Engine *e)
{
  return e->live;
}
