/* The engine's state, shared by its two files: engine.c (tasks, the event
 * loop) and engine_route.c (routes). Private to them. */
#pragma once

#include "engine.h"
#include "evq.h"
#include "util.h"

enum { TASK_NOP, TASK_COMPUTE, TASK_FLOW, TASK_FANOUT };
enum { ST_FREE, ST_NEW, ST_WAIT, ST_RUN };
enum { EV_FLOW_BATCH, EV_SOLVE, EV_TASK_DONE, EV_READY, EV_N };
#define NIL G_MAXUINT

/* a task's first SUCC_INLINE successors live in the task itself (most
 * tasks have one or two: a flow its receiver, a chunk the next chunk), the
 * rest in a list of blocks of up to EDGE_BLOCK (a block a cache line: a
 * fan-out is read a line per fourteen successors, all fetched ahead) */
#define SUCC_INLINE 2
#define EDGE_BLOCK 14

enum { ROUTE_HOPS = 1, ROUTE_ANON = 2, ROUTE_SHARED = 4 };

/* A successor is a task id: it cannot be done, nor its slot reused, while
 * it waits for the task that lists it, so no generation is needed. */
typedef guint Succ;

/* A flow of a fan-out (engine_fanout): its network entry's tag is the
 * fan-out's task id with FAN_TAG and its index above */
typedef struct {
  union {
    double bytes; /* until it starts, */
    SimTime lat;  /* then its route's latency (read as it arrives, with
                   * the rest of the entry: no load of the route's) */
  };
  guint64 tag;
  guint route;
  Succ succ;
} FanFlow;
#define FAN_TAG (G_GUINT64_CONSTANT (1) << 63)

/* Where a flow goes: its path, its latency and its rate cap. Flows that go
 * the same way (a pair of GPUs, step after step) share one. */
typedef struct {
  guint path[FLOWNET_MAX_HOPS];
  guint8 n_hops;
  guint8 n_private; /* shared (ROUTE_SHARED): the links before its core */
  union
  {
    guint refs; /* anonymous (ROUTE_ANON): flows on it not done */
    guint core; /* shared: its core in the network (flownet_core) */
  };
  SimTime latency;
  double cap;
} Route;
G_STATIC_ASSERT (sizeof (Route) == 56);

/* One cache line: a run keeps hundreds of thousands of tasks, touched at
 * random as they are released and finish. */
typedef struct {
  guint8 kind, state, n_succ; /* n_succ: inline successors used */
  /* flow: follows another (its pending count holds one for that flow's
   * last byte); handed to the network as that flow's continuation; on an
   * anonymous route (kept here so that a flow on a shared route never
   * touches the route again once started); the flow it follows is in the
   * network (a follower is touched when that one starts, and takes note of
   * its flow there in `net`: releases of its other predecessors then need
   * not fetch that flow) */
  guint8 follows : 1, handed : 1, anon_route : 1, prev_sending : 1;
  guint gen;
  guint pending;
  guint succ_head;
  Succ succ[SUCC_INLINE];
  guint64 tag;
  /* when it started; before, for a compute or nop task, with ready_seq
   * (its seq + 1) the event it becomes ready at: the latest arrival of a
   * flow it waits for (see flow_arrived); ready_seq 0 while none */
  SimTime start;
  union
  {
    struct
    {
      SimTime duration; /* at full SMs */
      guint gpu;
      guint prio; /* lower runs first among ready tasks of its GPU */
      guint64 ready_seq;
    };
    struct
    {
      double bytes;
      guint route;
      guint net; /* its flow in the network while it runs (a follower
                  * waiting: that of the flow it follows, once sending) */
      /* the flow that follows it (NIL when none; it cannot be done
       * while this one waits on it) */
      guint next;
    };
    struct
    {
      FanFlow *fan; /* a fan-out's flows, */
      guint n_fan;
      guint fan_left; /* of which not arrived */
    };
  };
} Task;
G_STATIC_ASSERT (sizeof (Task) == 64);

typedef struct {
  guint n;    /* successors held */
  guint next; /* the block of the successors added before, NIL when none */
  Succ succ[EDGE_BLOCK];
} EdgeBlock;
G_STATIC_ASSERT (sizeof (EdgeBlock) == 64);

/* A ready compute task in its GPU's queue: by priority, then readiness. */
typedef struct {
  guint prio, seq, id;
} Ready;

typedef struct {
  double sm_share;
  gboolean busy;
  gboolean touched; /* in the engine's list of GPUs to try starting */
  Ready *heap;      /* ready compute tasks, a binary min-heap */
  guint len, cap, seq;
} Gpu;

struct Engine {
  EngineHooks hooks;
  void *user;
  double tolerance;
  SimQueue *q;
  FlowNet *net;

  Task *tasks; /* 64-byte aligned (util_grow_aligned) */
  guint n_tasks, cap_tasks;
  Route *routes;
  guint n_routes, cap_routes;
  guint8 *route_bits; /* per route: ROUTE_HOPS (it has hops) | ROUTE_ANON
                       * (made by engine_flow for its flow and followers: not
                       * shared by lookup, freed with its last flow); a byte
                       * each, so that making a flow on a known route does
                       * not read the route */
  guint *route_slot; /* open addressing: route id + 1, 0 empty (named routes) */
  guint route_mask, n_named;
  FreeIds free_routes; /* anonymous routes' slots, lowest first */
  FreeIds free_tasks; /* lowest first: a step's tasks sit together */
  guint live;

  EdgeBlock *edges; /* 64-byte aligned */
  guint n_edges, cap_edges;
  FreeIds free_edges; /* lowest first */

  guint *uncommitted;
  guint n_uncommitted, cap_uncommitted;

  IdFifo ready; /* tasks ready to start, in order of readiness */
  /* GPUs whose queue changed or which went idle: started once every task
   * ready at this instant is queued, so priorities decide among them */
  guint *touched;
  guint n_touched, cap_touched;

  Gpu *gpus;
  guint n_gpus, cap_gpus;

  guint batch_gen;
  SimEvent *batch; /* a batch's events (flow_arrived), queued together */
  guint n_batch, cap_batch;
  SimEvent *batch_by_seq; /* scratch of batch_queue */
  guint cap_batch_by_seq;
  SimTime solve_event_time; /* pending EV_SOLVE, SIM_TIME_MAX when none */
  SimTime hold_until;       /* no re-solve before this (see maybe_solve) */
  gboolean batch_consumed;
  guint64 events;
  SimTime last_done; /* when the last task finished */
};

#define GROW UTIL_GROW

/* engine_route.c */
guint engine_route_intern (Engine *e, const guint *path, guint n_hops, SimTime latency, double cap);
guint engine_route_anon (Engine *e, const guint *path, guint n_hops, SimTime latency, double cap);
void engine_route_release (Engine *e, guint r);
