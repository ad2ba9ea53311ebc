/* Discrete-event engine: tasks with dependencies over compute resources and a
 * fluid network.
 *
 * The engine knows nothing about MoE. It runs three kinds of task:
 *   - nop: a join point, done the instant it becomes ready;
 *   - compute: a duration on a GPU resource, which runs its ready compute
 *     tasks one at a time in the order they became ready, stretched by the
 *     share of SMs the resource has (duration / sm_share);
 *   - flow: bytes over a path of directed links in the max-min fair network
 *     (flownet.h), done when drained plus its path latency; a flow can
 *     follow another on the same path, as the next chunk of a pipeline
 *     (engine_flow_after), and flows sent the same way many times can share
 *     a route (engine_route).
 * A task becomes ready when it is committed and all its predecessors are
 * done. Owners tag tasks with an opaque 64-bit value and learn of starts and
 * ends through hooks; task handles carry a generation, so a handle to a task
 * that is done (and whose slot was reused) is recognised as done.
 *
 * Determinism: events are ordered by (time, seq); within a tick, ready tasks
 * start in the order they became ready; the flow solver iterates in id order.
 */
#pragma once

#include "flownet.h"

typedef guint64 EngineTask;
#define ENGINE_TASK_NONE G_MAXUINT64

typedef struct Engine Engine;

typedef struct {
  /* called when a task starts (compute: when it gets the GPU) */
  void (*task_started) (void *user, guint64 tag, SimTime now);
  /* called when a task is done */
  void (*task_done) (void *user, guint64 tag, SimTime start, SimTime end);
  /* optional: called at `now` after flow rates changed (a solve, or flows
   * leaving the network); flownet_link_load() then gives the new loads */
  void (*rates_changed) (void *user, SimTime now);
  /* optional: called for a flow instead of task_done, as soon as its last
   * byte is sent, with the time it arrives (`end`: its latency later). It
   * may only take note (make no task, read no clock). With it, a flow
   * followed by one join or compute task, or by none, needs no event of
   * its own: tasks still become ready and start in the same order. Such
   * a flow is gone once its last byte is sent: a task made to depend on it
   * after that does not wait for its arrival (add successors up front). */
  void (*flow_arrived) (void *user, guint64 tag, SimTime start, SimTime end);
} EngineHooks;

/* `tolerance` (>= 0) trades exactness for solver runs. 0 re-solves rates at
 * every tick where a flow starts or ends. With eps > 0, the flows whose
 * projected end lies within eps of their age after the next end finish
 * together: each at its own projected end, with one re-solve for all of them
 * at the rate-weighted mean of those ends (see flownet_take_batch). */
Engine *engine_new (const EngineHooks *hooks, void *user, double tolerance);
void engine_free (Engine *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Engine, engine_free)

guint engine_add_link (Engine *e, double capacity_bytes_per_s);
guint engine_add_gpu (Engine *e);
void engine_gpu_set_sm_share (Engine *e, guint gpu, double share);

EngineTask engine_nop (Engine *e, guint64 tag);
EngineTask engine_compute (Engine *e, guint gpu, SimTime duration, guint64 tag);
/* The same with a priority: among the ready compute tasks of a GPU the
 * lowest priority runs first, ties in order of readiness (engine_compute:
 * priority 0, so plain readiness order). */
EngineTask engine_compute_prio (Engine *e, guint gpu, SimTime duration, guint prio, guint64 tag);
EngineTask engine_flow (Engine *e, double bytes, const guint *path, guint n_hops, SimTime latency,
                        double rate_cap, guint64 tag);
/* The same in two steps, for owners that send many flows the same way: a
 * route (path of 1..MAX_HOPS links, latency, rate cap; the same arguments
 * give the same id), then flows on it. */
guint engine_route (Engine *e, const guint *path, guint n_hops, SimTime latency, double rate_cap);
/* A route whose last n_hops - n_private links (its core) other routes may
 * share, with private links of their own before it (such as the NVLink hops
 * to the GPU whose NIC a flow leaves by): flows on routes with the same core
 * run as one bundle in the network (flownet_flow_add_shared), solved as one
 * while they have one rate. No rate cap; a flow on it that has a follower
 * when it starts runs as a flow of its own. A new route at every call. */
guint engine_route_shared (Engine *e, const guint *path, guint n_hops, guint n_private, SimTime latency);
EngineTask engine_flow_on (Engine *e, guint route, double bytes, guint64 tag);
/* A flow that follows flow `prev` (created and not yet committed) over the
 * same path, with prev's rate cap: a pipeline's next chunk. It starts once
 * prev's last byte is sent (not once it arrives) and every task it depends
 * on is done. When those are all done before prev's last byte, it takes
 * over prev's place in the network without a gap or a re-solve, starting at
 * prev's projected end (which, with a tolerance, can be ahead of the clock
 * of the batch that reports it). A flow has at most one follower. */
EngineTask engine_flow_after (Engine *e, EngineTask prev, double bytes, SimTime latency, guint64 tag);
/* A fan-out: n flows, flow i of bytes[i] (> 0) on named or shared route
 * routes[i], tagged tags[i], whose arrival releases task succ[i] (a
 * compute or nop task, created and not committed, which counts it as a
 * predecessor). They start together once the fan-out's own predecessors
 * are done, in the reverse of their order here: the order in which flows
 * made one by one as successors of one task would start. The owner hears
 * of each start (task_started) and arrival (flow_arrived, which it must
 * set) with the flow's tag. A fan-out has no successors of its own, and
 * costs one task slot for all its flows (no edges, no ready-queue entry
 * per flow). */
EngineTask engine_fanout (Engine *e, guint n, const guint *routes, const double *bytes, const guint64 *tags,
                          const EngineTask *succ);
/* `after` waits for `before`; a no-op when `before` is already done. */
void engine_depend (Engine *e, EngineTask before, EngineTask after);
/* Tasks created since the last commit may start once their dependencies are
 * done; call after adding all their dependencies. */
void engine_commit (Engine *e);

/* Runs until no event is left; returns when the last task finished. Hooks
 * may create and commit tasks while it runs. */
SimTime engine_run (Engine *e);

SimTime engine_now (const Engine *e);
const FlowNet *engine_flownet (const Engine *e);
guint64 engine_events (const Engine *e);
/* Tasks created but not done (a non-zero value after run is a dependency
 * cycle or an uncommitted task). */
guint engine_tasks_pending (const Engine *e);
