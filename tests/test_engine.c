/* Engine: dependencies, GPU resources, flows, against hand-computed times and
 * against a brute-force fluid reference written independently here. */
#include "engine.h"
#include "test_common.h"

typedef struct {
  SimTime start[4096];
  SimTime end[4096];
  guint order[4096];
  guint n_done;
} Log;

static void
log_done (void *user, guint64 tag, SimTime start, SimTime end)
{
  Log *l = user;
  l->start[tag] = start;
  l->end[tag] = end;
  l->order[l->n_done++] = (guint) tag;
}

static const EngineHooks log_hooks = { NULL, log_done, NULL, NULL };

static void
test_dependencies_and_gpu_fifo (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint g = engine_add_gpu (e);
  EngineTask a = engine_compute (e, g, 100, 0);
  EngineTask b = engine_compute (e, g, 50, 1); /* queued behind a on the GPU */
  EngineTask c = engine_nop (e, 2);
  engine_depend (e, a, c);
  engine_depend (e, b, c);
  EngineTask d = engine_compute (e, g, 10, 3);
  engine_depend (e, c, d);
  engine_commit (e);
  SimTime end = engine_run (e);
  CU_ASSERT_EQUAL (log.end[0], 100);
  CU_ASSERT_EQUAL (log.start[1], 100);
  CU_ASSERT_EQUAL (log.end[1], 150);
  CU_ASSERT_EQUAL (log.end[2], 150);
  CU_ASSERT_EQUAL (log.end[3], 160);
  CU_ASSERT_EQUAL (end, 160);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
}

static void
test_sm_share_stretches_compute (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint g = engine_add_gpu (e);
  engine_gpu_set_sm_share (e, g, 112.0 / 132.0);
  engine_compute (e, g, 112 * SIM_PS_PER_US, 0);
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL (log.end[0], 132 * SIM_PS_PER_US);
}

/* Among compute tasks of a GPU that become ready at the same instant the
 * lowest priority runs first, whatever the order they were created or
 * released in; equal priorities keep the order of readiness. */
static void
test_gpu_priorities (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint g = engine_add_gpu (e);
  EngineTask first = engine_compute_prio (e, g, 100, 9, 0); /* alone at t = 0: runs */
  EngineTask gate = engine_nop (e, 99);
  engine_depend (e, first, gate);
  EngineTask t[4];
  guint prio[4] = { 7, 3, 3, 1 };
  for (guint i = 0; i < 4; i++)
    {
      t[i] = engine_compute_prio (e, g, 10, prio[i], i + 1);
      engine_depend (e, gate, t[i]);
    }
  engine_commit (e);
  engine_run (e);
  /* done order: the first task, the gate, then priorities 1, 3, 3, 7; the
   * two of priority 3 in the order they became ready (a task releases its
   * successors newest first) */
  guint want[] = { 0, 99, 4, 3, 2, 1 };
  CU_ASSERT_EQUAL_FATAL (log.n_done, 6);
  for (guint i = 0; i < 6; i++)
    {
      if (log.order[i] != want[i])
        g_printerr ("\n  done #%u: %u (want %u)", i, log.order[i], want[i]);
      CU_ASSERT_EQUAL (log.order[i], want[i]);
    }
  CU_ASSERT_EQUAL (log.end[4], 110);
  CU_ASSERT_EQUAL (log.end[1], 140);
  CU_ASSERT_EQUAL (log.end[2], 130);
}

/* A task with many successors (kept partly in the task, partly in an array)
 * releases every one, newest first, and a successor with other predecessors
 * waits for the last of them. */
static void
test_fan_out_releases_all_newest_first (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint g = engine_add_gpu (e);
  EngineTask root = engine_compute (e, g, 100, 0);
  EngineTask late = engine_compute (e, g, 50, 1); /* runs after root */
  EngineTask fan[40];
  for (guint i = 0; i < 40; i++)
    {
      fan[i] = engine_nop (e, 2 + i);
      engine_depend (e, root, fan[i]);
      if (i % 7 == 3)
        engine_depend (e, late, fan[i]);
    }
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL_FATAL (log.n_done, 42);
  CU_ASSERT_EQUAL (log.order[0], 0);
  /* at 100: the fan's tasks without a second predecessor, newest first */
  guint k = 1;
  for (guint i = 40; i-- > 0;)
    if (i % 7 != 3)
      {
        CU_ASSERT_EQUAL (log.order[k], 2 + i);
        CU_ASSERT_EQUAL (log.end[2 + i], 100);
        k++;
      }
  CU_ASSERT_EQUAL (log.order[k], 1);
  k++;
  for (guint i = 40; i-- > 0;)
    if (i % 7 == 3)
      {
        CU_ASSERT_EQUAL (log.order[k], 2 + i);
        CU_ASSERT_EQUAL (log.end[2 + i], 150);
        k++;
      }
  CU_ASSERT_EQUAL (k, 42);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
}

static void
test_equal_time_tasks_finish_in_schedule_order (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  for (guint i = 0; i < 8; i++)
    engine_add_gpu (e);
  for (guint i = 0; i < 8; i++)
    engine_compute (e, i, 1000, i);
  engine_commit (e);
  engine_run (e);
  for (guint i = 0; i < 8; i++)
    CU_ASSERT_EQUAL (log.order[i], i);
}

static void
test_flow_latency_and_rate (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint l = engine_add_link (e, 1e9);
  /* 1 MB at 1 GB/s = 1 ms, plus 2 us latency */
  engine_flow (e, 1e6, &l, 1, 2 * SIM_PS_PER_US, 0.0, 0);
  /* a zero-byte flow takes only its latency */
  engine_flow (e, 0.0, NULL, 0, 5 * SIM_PS_PER_US, 0.0, 1);
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL (log.end[0], 1000 * SIM_PS_PER_US + 2 * SIM_PS_PER_US);
  CU_ASSERT_EQUAL (log.end[1], 5 * SIM_PS_PER_US);
}

/* Routes: the same path, latency and cap give the same id, anything else
 * another; a flow on a route is the flow engine_flow would make. */
static void
test_routes_are_shared (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint l[3];
  for (guint i = 0; i < 3; i++)
    l[i] = engine_add_link (e, 1e9);
  guint ab[] = { l[0], l[1] }, ba[] = { l[1], l[0] }, a[] = { l[0] };
  guint r1 = engine_route (e, ab, 2, 2 * SIM_PS_PER_US, 0.0);
  CU_ASSERT_EQUAL (engine_route (e, ab, 2, 2 * SIM_PS_PER_US, 0.0), r1);
  CU_ASSERT_EQUAL (engine_route (e, ab, 2, 2 * SIM_PS_PER_US, -1.0), r1); /* <= 0: no cap */
  guint others[] = { engine_route (e, ba, 2, 2 * SIM_PS_PER_US, 0.0), engine_route (e, a, 1, 2 * SIM_PS_PER_US, 0.0),
                     engine_route (e, ab, 2, 3 * SIM_PS_PER_US, 0.0), engine_route (e, ab, 2, 2 * SIM_PS_PER_US, 5e8) };
  for (guint i = 0; i < G_N_ELEMENTS (others); i++)
    {
      CU_ASSERT_NOT_EQUAL (others[i], r1);
      for (guint j = 0; j < i; j++)
        CU_ASSERT_NOT_EQUAL (others[i], others[j]);
    }
  /* 1 MB on the route and 1 MB by path over link 2 alone: both 1 ms + 2 us;
   * the capped route: 2 ms + 2 us */
  engine_flow_on (e, r1, 1e6, 0);
  engine_flow (e, 1e6, &l[2], 1, 2 * SIM_PS_PER_US, 0.0, 1);
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL (log.end[0], 1000 * SIM_PS_PER_US + 2 * SIM_PS_PER_US);
  CU_ASSERT_EQUAL (log.end[1], log.end[0]);
  g_autoptr (Engine) e2 = engine_new (&log_hooks, &log, 0.0);
  guint m = engine_add_link (e2, 1e9);
  engine_flow_on (e2, engine_route (e2, &m, 1, 2 * SIM_PS_PER_US, 5e8), 1e6, 2);
  engine_commit (e2);
  engine_run (e2);
  CU_ASSERT_EQUAL (log.end[2], 2000 * SIM_PS_PER_US + 2 * SIM_PS_PER_US);
}

/* Flows started from the done hook, one after another over alternating
 * paths (their route slots are recycled as each ends): 1000 of 1 MB at
 * 1 GB/s plus 1 us latency each end at k x 1.001 ms. */
typedef struct {
  Engine *e;
  guint links[2];
  guint started;
  SimTime last;
} Relay;

static void
relay_done (void *user, guint64 tag, SimTime start, SimTime end)
{
  Relay *r = user;
  (void) tag;
  (void) start;
  r->last = end;
  if (r->started < 1000)
    {
      engine_flow (r->e, 1e6, &r->links[r->started % 2], 1, SIM_PS_PER_US, 0.0, r->started);
      r->started++;
      engine_commit (r->e);
    }
}

static void
test_flows_started_by_hooks (void)
{
  Relay r = { 0 };
  const EngineHooks hooks = { NULL, relay_done, NULL, NULL };
  g_autoptr (Engine) e = engine_new (&hooks, &r, 0.0);
  r.e = e;
  r.links[0] = engine_add_link (e, 1e9);
  r.links[1] = engine_add_link (e, 1e9);
  engine_flow (e, 1e6, &r.links[0], 1, SIM_PS_PER_US, 0.0, 0);
  r.started = 1;
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL (r.started, 1000);
  CU_ASSERT_EQUAL (r.last, 1000 * 1001 * SIM_PS_PER_US);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
}

/* Uniform all-to-all of N GPUs, one egress and one ingress port each into a
 * non-blocking switch: every flow gets bw / (N-1), so all end at
 * (N-1) * bytes / bw = (N-1)/N * (total bytes out) / bw, plus latency. */
static void
test_uniform_all_to_all_closed_form (void)
{
  const guint N = 32;
  const double bw = 50e9, bytes = 1e6;
  const SimTime lat = 3 * SIM_PS_PER_US;
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  for (guint i = 0; i < 2 * N; i++)
    engine_add_link (e, bw);
  guint tag = 0;
  for (guint s = 0; s < N; s++)
    for (guint d = 0; d < N; d++)
      if (s != d)
        {
          guint path[] = { 2 * s, 2 * d + 1 };
          engine_flow (e, bytes, path, 2, lat, 0.0, tag++);
        }
  engine_commit (e);
  SimTime end = engine_run (e);
  double total_out = bytes * N; /* a GPU's bytes if it also sent to itself */
  double expect_s = (N - 1.0) / N * total_out / bw;
  SimTime expect = sim_time_from_seconds (expect_s) + lat;
  CU_ASSERT (llabs (end - expect) <= 1);
}

/* ---- brute-force reference: recompute max-min from scratch at every event ---- */

typedef struct {
  double start, bytes, rem, rate, end;
  guint path[2];
  gboolean started, done;
  gint after; /* starts once this flow's bytes are drained too; -1 none */
} RefFlow;

static void
ref_rates (RefFlow *f, guint nf, const double *cap, guint nl)
{
  double rem[64];
  guint cnt[64];
  gboolean fixed[512];
  for (guint l = 0; l < nl; l++)
    rem[l] = cap[l], cnt[l] = 0;
  for (guint i = 0; i < nf; i++)
    {
      fixed[i] = !(f[i].started && !f[i].done);
      if (!fixed[i])
        for (guint h = 0; h < 2; h++)
          cnt[f[i].path[h]]++;
    }
  for (;;)
    {
      double best = G_MAXDOUBLE;
      gint bl = -1;
      for (guint l = 0; l < nl; l++)
        if (cnt[l] > 0 && rem[l] / cnt[l] < best)
          best = rem[l] / cnt[l], bl = (gint) l;
      if (bl < 0)
        break;
      for (guint i = 0; i < nf; i++)
        if (!fixed[i] && (f[i].path[0] == (guint) bl || f[i].path[1] == (guint) bl))
          {
            fixed[i] = TRUE;
            f[i].rate = best;
            for (guint h = 0; h < 2; h++)
              rem[f[i].path[h]] -= best, cnt[f[i].path[h]]--;
          }
    }
}

static void
ref_simulate (RefFlow *f, guint nf, const double *cap, guint nl)
{
  double now = 0;
  for (;;)
    {
      ref_rates (f, nf, cap, nl);
      double next = G_MAXDOUBLE;
      for (guint i = 0; i < nf; i++)
        {
          if (!f[i].started)
            {
              if (f[i].after < 0 || f[f[i].after].done)
                next = MIN (next, MAX (f[i].start, now));
            }
          else if (!f[i].done)
            next = MIN (next, now + f[i].rem / f[i].rate);
        }
      if (next == G_MAXDOUBLE)
        return;
      for (guint i = 0; i < nf; i++)
        if (f[i].started && !f[i].done)
          f[i].rem -= f[i].rate * (next - now);
      now = next;
      for (guint i = 0; i < nf; i++)
        {
          if (f[i].started && !f[i].done && f[i].rem <= 1e-6 * f[i].bytes)
            f[i].done = TRUE, f[i].end = now;
          /* a flow follows one of a lower index, done by now in this pass */
          if (!f[i].started && f[i].start <= now && (f[i].after < 0 || f[f[i].after].done))
            f[i].started = TRUE, f[i].rem = f[i].bytes;
        }
    }
}

static void
test_matches_brute_force_reference (void)
{
  /* 8 GPUs, random sizes and start times: every flow's end agrees with a
   * from-scratch max-min re-solve at every event */
  const guint N = 8;
  double cap[16];
  for (guint i = 0; i < 2 * N; i++)
    cap[i] = (i % 3 == 0) ? 40e9 : 50e9;
  RefFlow ref[64];
  guint nf = 0;
  GRand *r = g_rand_new_with_seed (7);
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  for (guint i = 0; i < 2 * N; i++)
    engine_add_link (e, cap[i]);
  for (guint s = 0; s < N; s++)
    for (guint d = 0; d < N; d++)
      if (s != d && nf < 64)
        {
          RefFlow *f = &ref[nf];
          memset (f, 0, sizeof *f);
          f->after = -1;
          f->bytes = g_rand_double_range (r, 0.2e6, 2e6);
          f->start = (double) g_rand_int_range (r, 0, 40) * 1e-6; /* whole microseconds */
          f->path[0] = 2 * s;
          f->path[1] = 2 * d + 1;
          /* start each flow after a compute task of its start time */
          guint gpu = engine_add_gpu (e);
          EngineTask wait = engine_compute (e, gpu, sim_time_from_seconds (f->start), 1000 + nf);
          EngineTask fl = engine_flow (e, f->bytes, f->path, 2, 0, 0.0, nf);
          engine_depend (e, wait, fl);
          nf++;
        }
  g_rand_free (r);
  engine_commit (e);
  engine_run (e);
  ref_simulate (ref, nf, cap, 2 * N);
  for (guint i = 0; i < nf; i++)
    ASSERT_REL (sim_time_to_seconds (log.end[i]), ref[i].end, 1e-6);
}

/* Chunks that follow one another (engine_flow_after) on random paths, some
 * also waiting for a compute task that ends before, some after the chunk
 * before them is sent: every flow's end agrees with the brute-force
 * reference, where a follower starts once the bytes of the one before are
 * drained and its other wait is over (not once they arrive: the latency
 * only delays arrival). Exact, and with eps = 0.02 the last end within
 * 0.5 % (single ends within 5 %). */
static void
run_chains (double tolerance, guint64 *solves)
{
  const guint N = 6;
  const SimTime lat = 3 * SIM_PS_PER_US;
  double cap[12];
  for (guint i = 0; i < 2 * N; i++)
    cap[i] = (i % 3 == 0) ? 40e9 : 50e9;
  RefFlow ref[64];
  guint nf = 0;
  GRand *r = g_rand_new_with_seed (5);
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, tolerance);
  for (guint i = 0; i < 2 * N; i++)
    engine_add_link (e, cap[i]);
  for (guint s = 0; s < N; s++)
    for (guint d = 0; d < N; d++)
      if (s != d)
        {
          guint chunks = (guint) g_rand_int_range (r, 1, 4);
          EngineTask prev = ENGINE_TASK_NONE;
          for (guint c = 0; c < chunks && nf < 64; c++)
            {
              RefFlow *f = &ref[nf];
              memset (f, 0, sizeof *f);
              f->bytes = g_rand_double_range (r, 0.2e6, 2e6);
              /* whole microseconds up to 160: mostly before, sometimes
               * after the chunk before is sent (chunks take 20-400 us) */
              f->start = (double) g_rand_int_range (r, 0, 160) * 1e-6;
              f->path[0] = 2 * s;
              f->path[1] = 2 * d + 1;
              f->after = c > 0 ? (gint) nf - 1 : -1;
              guint gpu = engine_add_gpu (e);
              EngineTask wait = engine_compute (e, gpu, sim_time_from_seconds (f->start), 1000 + nf);
              EngineTask fl = c == 0 ? engine_flow (e, f->bytes, f->path, 2, lat, 0.0, nf)
                                     : engine_flow_after (e, prev, f->bytes, lat, nf);
              engine_depend (e, wait, fl);
              prev = fl;
              nf++;
            }
        }
  g_rand_free (r);
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
  ref_simulate (ref, nf, cap, 2 * N);
  /* batching moves single ends by up to a few eps; the last stays close */
  double last = 0.0, ref_last = 0.0;
  for (guint i = 0; i < nf; i++)
    {
      ASSERT_REL (sim_time_to_seconds (log.end[i] - lat), ref[i].end, tolerance > 0 ? 0.05 : 1e-6);
      last = MAX (last, sim_time_to_seconds (log.end[i] - lat));
      ref_last = MAX (ref_last, ref[i].end);
    }
  ASSERT_REL (last, ref_last, tolerance > 0 ? 0.005 : 1e-6);
  *solves = flownet_solve_count (engine_flownet (e));
}

static void
test_chains_match_brute_force_reference (void)
{
  guint64 exact, batched;
  run_chains (0.0, &exact);
  run_chains (0.02, &batched);
  CU_ASSERT (batched < exact);
}

/* Three chunks back to back on one link of 1 GB/s, alone: they run as one
 * 6 MB transfer with a single solve; each arrives its latency after its
 * last byte is sent, and the chunk after starts at that byte, not at the
 * arrival. A follower held up by another task starts when that is done. */
static void
test_chunks_follow_without_gap (void)
{
  Log log = { 0 };
  g_autoptr (Engine) e = engine_new (&log_hooks, &log, 0.0);
  guint l = engine_add_link (e, 1e9);
  guint g = engine_add_gpu (e);
  const SimTime us = SIM_PS_PER_US, lat = 5 * us;
  EngineTask a = engine_flow (e, 1e6, &l, 1, lat, 0.0, 0);
  EngineTask b = engine_flow_after (e, a, 2e6, lat, 1);
  engine_flow_after (e, b, 3e6, lat, 2);
  /* a second chain whose second chunk also waits for 5 ms of compute */
  guint l2 = engine_add_link (e, 1e9);
  EngineTask x = engine_flow (e, 1e6, &l2, 1, lat, 0.0, 3);
  EngineTask y = engine_flow_after (e, x, 1e6, lat, 4);
  EngineTask hold = engine_compute (e, g, 5000 * us, 5);
  engine_depend (e, hold, y);
  /* a zero-byte chunk sends nothing: its follower starts with it */
  guint l3 = engine_add_link (e, 1e9);
  EngineTask z = engine_flow (e, 0.0, &l3, 1, lat, 0.0, 6);
  engine_flow_after (e, z, 1e6, lat, 7);
  engine_commit (e);
  engine_run (e);
  CU_ASSERT_EQUAL (log.start[1], 1000 * us);
  CU_ASSERT_EQUAL (log.end[0], 1000 * us + lat);
  CU_ASSERT_EQUAL (log.end[1], 3000 * us + lat);
  CU_ASSERT_EQUAL (log.end[2], 6000 * us + lat);
  CU_ASSERT_EQUAL (log.start[4], 5000 * us);
  CU_ASSERT_EQUAL (log.end[4], 6000 * us + lat);
  CU_ASSERT_EQUAL (log.start[7], 0);
  CU_ASSERT_EQUAL (log.end[7], 1000 * us + lat);
  /* solves: the start of every chain, the end of x and of the chunk after
   * z, the start and end of y: none for b and c */
  CU_ASSERT_EQUAL (flownet_solve_count (engine_flownet (e)), 4);
}

static void
test_tolerance_stays_close_to_exact (void)
{
  /* the same random all-to-all solved exactly and with eps = 0.02 */
  SimTime ends[2];
  guint64 solves[2];
  for (guint run = 0; run < 2; run++)
    {
      const guint N = 32;
      GRand *r = g_rand_new_with_seed (11);
      g_autoptr (Engine) e = engine_new (NULL, NULL, run == 0 ? 0.0 : 0.02);
      for (guint i = 0; i < 2 * N; i++)
        engine_add_link (e, 50e9);
      for (guint s = 0; s < N; s++)
        for (guint d = 0; d < N; d++)
          if (s != d)
            {
              guint path[] = { 2 * s, 2 * d + 1 };
              engine_flow (e, g_rand_double_range (r, 0.5e6, 1.5e6), path, 2, 0, 0.0, 0);
            }
      g_rand_free (r);
      engine_commit (e);
      ends[run] = engine_run (e);
      solves[run] = flownet_solve_count (engine_flownet (e));
    }
  ASSERT_REL (ends[1], ends[0], 0.005);
  CU_ASSERT (solves[1] * 4 < solves[0]);
}

/* Link loads at the max-min rates: flows A (links 0, 1) and B (link 1) share
 * link 1 of 100 B/s, with link 0 of 30 B/s capping A: A 30, B 70. */
static void
test_link_load_follows_rates (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  flownet_add_link (fn, 30.0);
  flownet_add_link (fn, 100.0);
  const guint pa[] = { 0, 1 }, pb[] = { 1 };
  guint a = flownet_flow_add (fn, 0, 30.0, pa, 2, 0.0, 1);
  flownet_flow_add (fn, 0, 700.0, pb, 1, 0.0, 2);
  CU_ASSERT_DOUBLE_EQUAL (flownet_link_load (fn, 1), 0.0, 1e-12); /* not solved yet */
  flownet_solve (fn, 0);
  CU_ASSERT_DOUBLE_EQUAL (flownet_flow_rate (fn, a), 30.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL (flownet_link_load (fn, 0), 30.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL (flownet_link_load (fn, 1), 100.0, 1e-9);
  /* A drains its 30 B at 30 B/s: gone after 1 s; B then takes all of link 1 */
  SimTime t = flownet_next_end (fn);
  CU_ASSERT_EQUAL (t, sim_time_from_seconds (1.0));
  guint n;
  const FlowEnd *done = flownet_take_batch (fn, t, 0.0, &n);
  CU_ASSERT_EQUAL_FATAL (n, 1);
  CU_ASSERT_EQUAL (done[0].tag, 1);
  CU_ASSERT_EQUAL (flownet_link_load (fn, 0), 0.0); /* empty: exactly zero */
  CU_ASSERT_DOUBLE_EQUAL (flownet_link_load (fn, 1), 70.0, 1e-9);
  flownet_solve (fn, t);
  CU_ASSERT_DOUBLE_EQUAL (flownet_link_load (fn, 1), 100.0, 1e-9);
  done = flownet_take_batch (fn, flownet_next_end (fn), 0.0, &n);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (flownet_link_load (fn, 1), 0.0);
}

/* The flow_arrived hook lets flows followed by a join or compute task end
 * without an event of their own: the same graph runs the same with it and
 * without it (every task starts at the same time, in the same order, every
 * flow arrives at the same time), with fewer events. Random steps of GPUs
 * sending to each other over routes of unequal latencies (ties included):
 * flows into a join, into a compute task directly, into two tasks, into
 * four (more than a task holds inline), into two tasks that it alone
 * makes ready (ready together: an event of its own), chains of chunks,
 * zero-byte flows; exact and with a tolerance. */
typedef struct {
  SimTime start[4096], end[4096];
  guint order[8192];
  guint n_started;
} RunLog;

static void
runlog_started (void *user, guint64 tag, SimTime now)
{
  RunLog *l = user;
  l->start[tag] = now;
  l->order[l->n_started++] = (guint) tag;
}

static void
runlog_done (void *user, guint64 tag, SimTime start, SimTime end)
{
  RunLog *l = user;
  (void) start;
  l->end[tag] = end;
}

/* Six GPUs, each with a 40 GB/s link out and one in, and a route between
 * every two of them (latencies of 0, 1 or 2 us: with equal links, sizes
 * and compute times from few values, many arrivals tie); with `shared`,
 * every other route a shared one (its flows bundled). */
static void
random_net (Engine *e, GRand *r, gboolean shared, guint *gpus, guint routes[6][6])
{
  const guint G = 6;
  guint links[12];
  for (guint i = 0; i < 2 * G; i++)
    links[i] = engine_add_link (e, 40e9);
  for (guint g = 0; g < G; g++)
    gpus[g] = engine_add_gpu (e);
  for (guint s = 0; s < G; s++)
    for (guint d = 0; d < G; d++)
      if (s != d)
        {
          guint path[2] = { links[2 * s], links[2 * d + 1] };
          SimTime lat = g_rand_int_range (r, 0, 3) * SIM_PS_PER_US;
          routes[s][d] = shared && (s + d) % 2 == 0 ? engine_route_shared (e, path, 2, 1, lat)
                                                    : engine_route (e, path, 2, lat, 0.0);
        }
}

static guint64
run_random_steps (guint seed, gboolean arrived_hook, double tolerance, RunLog *log)
{
  const guint G = 6, STEPS = 4;
  EngineHooks hooks = { runlog_started, runlog_done, NULL, arrived_hook ? runlog_done : NULL };
  g_autoptr (Engine) e = engine_new (&hooks, log, tolerance);
  GRand *r = g_rand_new_with_seed (seed);
  guint gpus[6], routes[6][6];
  random_net (e, r, FALSE, gpus, routes);
  guint64 tag = 0;
  EngineTask prev_done[6];
  for (guint g = 0; g < G; g++)
    prev_done[g] = ENGINE_TASK_NONE;
  for (guint st = 0; st < STEPS; st++)
    {
      EngineTask comp[6], join[6], after[6];
      for (guint g = 0; g < G; g++)
        {
          comp[g] = engine_compute_prio (e, gpus[g], g_rand_int_range (r, 1, 3) * SIM_PS_PER_US,
                                         g_rand_int_range (r, 0, 2), tag++);
          if (prev_done[g] != ENGINE_TASK_NONE)
            engine_depend (e, prev_done[g], comp[g]);
          join[g] = engine_nop (e, tag++);
          after[g] = engine_compute_prio (e, gpus[g], g_rand_int_range (r, 1, 3) * SIM_PS_PER_US, 0, tag++);
        }
      for (guint s = 0; s < G; s++)
        for (guint d = 0; d < G; d++)
          {
            if (s == d)
              continue;
            guint kind = (guint) g_rand_int_range (r, 0, 7);
            double bytes = kind == 4 ? 0.0 : (double) g_rand_int_range (r, 1, 3) * 200e3;
            EngineTask f = engine_flow_on (e, routes[s][d], bytes, tag++);
            engine_depend (e, comp[s], f);
            if (kind == 1) /* straight into the receiver's compute */
              engine_depend (e, f, after[d]);
            else if (kind == 2) /* into two tasks */
              {
                engine_depend (e, f, join[d]);
                engine_depend (e, f, after[d]);
              }
            else if (kind == 3) /* a chain of chunks into the join */
              {
                EngineTask c = f;
                for (guint k = 0; k < 2; k++)
                  c = engine_flow_after (e, c, (double) g_rand_int_range (r, 1, 3) * 200e3,
                                         g_rand_int_range (r, 0, 3) * SIM_PS_PER_US, tag++);
                engine_depend (e, f, join[d]);
                engine_depend (e, c, join[d]);
              }
            else if (kind == 5) /* into four tasks: the join, the compute, two nops into them */
              {
                EngineTask n1 = engine_nop (e, tag++), n2 = engine_nop (e, tag++);
                engine_depend (e, comp[d], n1);
                engine_depend (e, comp[s], n2);
                engine_depend (e, f, join[d]);
                engine_depend (e, f, n1);
                engine_depend (e, f, after[d]);
                engine_depend (e, f, n2);
                engine_depend (e, n1, join[d]);
                engine_depend (e, n2, after[d]);
              }
            else if (kind == 6) /* into two tasks that wait for it alone */
              {
                EngineTask n1 = engine_nop (e, tag++);
                EngineTask c1 = engine_compute_prio (e, gpus[d], SIM_PS_PER_US, 1, tag++);
                engine_depend (e, f, n1);
                engine_depend (e, f, c1);
                engine_depend (e, n1, join[d]);
                engine_depend (e, c1, after[d]);
              }
            else
              engine_depend (e, f, join[d]);
          }
      for (guint g = 0; g < G; g++)
        {
          engine_depend (e, join[g], after[g]);
          prev_done[g] = after[g];
        }
      engine_commit (e);
    }
  g_assert (tag <= 4096);
  g_rand_free (r);
  engine_run (e);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
  CU_ASSERT_EQUAL (log->n_started, tag);
  return engine_events (e);
}

/* Two runs started the same tasks in the same order at the same times, and
 * their flows arrived at the same times. */
static void
assert_same_runs (const RunLog *a, const RunLog *b)
{
  CU_ASSERT_EQUAL (a->n_started, b->n_started);
  CU_ASSERT_EQUAL (memcmp (a->order, b->order, a->n_started * sizeof a->order[0]), 0);
  CU_ASSERT_EQUAL (memcmp (a->start, b->start, sizeof a->start), 0);
  CU_ASSERT_EQUAL (memcmp (a->end, b->end, sizeof a->end), 0);
}

static void
test_flow_arrived_runs_the_same (void)
{
  for (guint k = 0; k < 40; k++)
    {
      double tol = k % 2 ? 0.02 : 0.0;
      static RunLog a, b;
      memset (&a, 0, sizeof a);
      memset (&b, 0, sizeof b);
      guint64 ev_a = run_random_steps (k / 2, FALSE, tol, &a);
      guint64 ev_b = run_random_steps (k / 2, TRUE, tol, &b);
      CU_ASSERT (ev_b < ev_a);
      assert_same_runs (&a, &b);
    }
}

/* Where arrivals tie, tasks become ready in the order of the events the
 * flows' ends would have been (with or without the flow_arrived hook):
 * 1. flows A, C, B (in that order, 1 MB on links of their own, ending
 *    together at 1 ms) into joins X (A, B) and Y (C): with no latency Y
 *    is ready first (C's end comes before B's); with 5 us on A and C
 *    only, X is (A's arrival, before C's, is X's last);
 * 2. flow F ends at 1 ms into join Z, which also waits for compute P;
 *    compute Q, ending with P, is all join W waits for: the end of F is
 *    reported (its batch) before P's and Q's ends, but it would arrive
 *    after them, so W is ready before Z;
 * 3. flows F (5 us of latency) and G (none) end together at 1 ms, each into
 *    joins A and B (added in that order): G arrives first, F last, so A and
 *    B become ready at F's arrival in the order F's event would release
 *    its successors, the last added first: B, then A. */
static guint
order_of (const RunLog *l, guint64 tag)
{
  for (guint i = 0; i < l->n_started; i++)
    if (l->order[i] == tag)
      return i;
  return G_MAXUINT;
}

/* An exact engine that logs starts and ends; with `hook` it hears of flows
 * from the flow_arrived hook (so that flows end without events of their
 * own where they can). */
static Engine *
logging_engine (RunLog *log, gboolean hook)
{
  EngineHooks hooks = { runlog_started, runlog_done, NULL, hook ? runlog_done : NULL };
  return engine_new (&hooks, log, 0.0);
}

static void
test_arrivals_keep_event_order (void)
{
  const SimTime us = SIM_PS_PER_US;
  for (guint hook = 0; hook < 2; hook++)
    for (guint lat = 0; lat < 2; lat++)
      {
        RunLog log = { 0 };
        g_autoptr (Engine) e = logging_engine (&log, hook);
        guint l[3];
        for (guint i = 0; i < 3; i++)
          l[i] = engine_add_link (e, 1e9);
        EngineTask a = engine_flow (e, 1e6, &l[0], 1, lat ? 5 * us : 0, 0.0, 0);
        EngineTask c = engine_flow (e, 1e6, &l[1], 1, lat ? 5 * us : 0, 0.0, 1);
        EngineTask b = engine_flow (e, 1e6, &l[2], 1, 0, 0.0, 2);
        EngineTask x = engine_nop (e, 3), y = engine_nop (e, 4);
        engine_depend (e, a, x);
        engine_depend (e, b, x);
        engine_depend (e, c, y);
        engine_commit (e);
        engine_run (e);
        CU_ASSERT_EQUAL (log.start[3], 1000 * us + (lat ? 5 * us : 0));
        CU_ASSERT_EQUAL (log.start[4], log.start[3]);
        guint first = lat ? 3 : 4, second = lat ? 4 : 3;
        CU_ASSERT (order_of (&log, first) < order_of (&log, second));
      }
  for (guint hook = 0; hook < 2; hook++)
    {
      RunLog log = { 0 };
      g_autoptr (Engine) e = logging_engine (&log, hook);
      guint l = engine_add_link (e, 1e9);
      guint g0 = engine_add_gpu (e), g1 = engine_add_gpu (e);
      EngineTask f = engine_flow (e, 1e6, &l, 1, 0, 0.0, 0);
      /* P and Q start 1 us in, after the flow's end was scheduled */
      EngineTask p0 = engine_compute (e, g0, us, 1), q0 = engine_compute (e, g1, us, 2);
      EngineTask p = engine_compute (e, g0, 999 * us, 3), q = engine_compute (e, g1, 999 * us, 4);
      engine_depend (e, p0, p);
      engine_depend (e, q0, q);
      EngineTask z = engine_nop (e, 5), w = engine_nop (e, 6);
      engine_depend (e, f, z);
      engine_depend (e, p, z);
      engine_depend (e, q, w);
      engine_commit (e);
      engine_run (e);
      CU_ASSERT_EQUAL (log.start[5], 1000 * us);
      CU_ASSERT_EQUAL (log.start[6], 1000 * us);
      CU_ASSERT (order_of (&log, 6) < order_of (&log, 5));
    }
  for (guint hook = 0; hook < 2; hook++)
    {
      RunLog log = { 0 };
      g_autoptr (Engine) e = logging_engine (&log, hook);
      guint l[2] = { engine_add_link (e, 1e9), engine_add_link (e, 1e9) };
      EngineTask f = engine_flow (e, 1e6, &l[0], 1, 5 * us, 0.0, 0);
      EngineTask g = engine_flow (e, 1e6, &l[1], 1, 0, 0.0, 1);
      EngineTask a = engine_nop (e, 2), b = engine_nop (e, 3);
      engine_depend (e, f, a);
      engine_depend (e, f, b);
      engine_depend (e, g, a);
      engine_depend (e, g, b);
      engine_commit (e);
      engine_run (e);
      CU_ASSERT_EQUAL (log.start[2], 1005 * us);
      CU_ASSERT_EQUAL (log.start[3], 1005 * us);
      CU_ASSERT (order_of (&log, 3) < order_of (&log, 2));
    }
}

/* A fan-out (engine_fanout) runs as its flows made one by one would, as
 * successors of the task it waits for: every task and flow starts at the
 * same time and in the same order, every flow arrives at the same time.
 * Random steps of GPUs each sending to all others (shared and plain
 * routes, unequal latencies and sizes, receivers' joins or compute tasks
 * as successors), exact and with a tolerance. */
static guint64
run_fan_steps (guint seed, gboolean fanout, double tolerance, RunLog *log, guint *tasks_peak)
{
  const guint G = 6, STEPS = 4;
  EngineHooks hooks = { runlog_started, NULL, NULL, runlog_done };
  g_autoptr (Engine) e = engine_new (&hooks, log, tolerance);
  GRand *r = g_rand_new_with_seed (seed);
  guint gpus[6], routes[6][6];
  random_net (e, r, TRUE, gpus, routes);
  guint64 tag = 0;
  EngineTask prev_done[6];
  for (guint g = 0; g < G; g++)
    prev_done[g] = ENGINE_TASK_NONE;
  *tasks_peak = 0;
  for (guint st = 0; st < STEPS; st++)
    {
      EngineTask comp[6], join[6], after[6];
      for (guint g = 0; g < G; g++)
        {
          comp[g] = engine_compute_prio (e, gpus[g], g_rand_int_range (r, 1, 3) * SIM_PS_PER_US, 0, tag++);
          if (prev_done[g] != ENGINE_TASK_NONE)
            engine_depend (e, prev_done[g], comp[g]);
          join[g] = engine_nop (e, tag++);
          after[g] = engine_compute_prio (e, gpus[g], g_rand_int_range (r, 1, 3) * SIM_PS_PER_US, 0, tag++);
        }
      for (guint s = 0; s < G; s++)
        {
          guint fr[6], n = 0;
          double fb[6];
          guint64 ft[6];
          EngineTask fs[6];
          for (guint d = 0; d < G; d++)
            {
              if (s == d)
                continue;
              fr[n] = routes[s][d];
              fb[n] = (double) g_rand_int_range (r, 1, 4) * 200e3;
              ft[n] = tag++;
              fs[n++] = g_rand_boolean (r) ? join[d] : after[d];
            }
          if (fanout)
            engine_depend (e, comp[s], engine_fanout (e, n, fr, fb, ft, fs));
          else
            for (guint k = 0; k < n; k++)
              {
                EngineTask f = engine_flow_on (e, fr[k], fb[k], ft[k]);
                engine_depend (e, comp[s], f);
                engine_depend (e, f, fs[k]);
              }
        }
      for (guint g = 0; g < G; g++)
        {
          engine_depend (e, join[g], after[g]);
          prev_done[g] = after[g];
        }
      engine_commit (e);
      *tasks_peak = MAX (*tasks_peak, engine_tasks_pending (e));
    }
  g_rand_free (r);
  engine_run (e);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
  CU_ASSERT_EQUAL (log->n_started, tag);
  return engine_events (e);
}

static void
test_fanout_runs_as_its_flows (void)
{
  for (guint k = 0; k < 40; k++)
    {
      double tol = k % 2 ? 0.02 : 0.0;
      static RunLog a, b;
      memset (&a, 0, sizeof a);
      memset (&b, 0, sizeof b);
      guint peak_a, peak_b;
      guint64 ev_a = run_fan_steps (k / 2, FALSE, tol, &a, &peak_a);
      guint64 ev_b = run_fan_steps (k / 2, TRUE, tol, &b, &peak_b);
      CU_ASSERT_EQUAL (ev_a, ev_b);
      CU_ASSERT (peak_b < peak_a); /* one task for a GPU's flows of a step */
      assert_same_runs (&a, &b);
    }
}

/* Hand-computed: two flows of a fan-out share the sender's 40 GB/s link,
 * 400 KB and 200 KB, latency 1 us. Both run at 20 GB/s until the smaller
 * is sent (10 us), then the larger at 40 GB/s for its last 200 KB (5 us):
 * they arrive at 11 and 16 us, and each releases its own receiver. */
static void
test_fanout_hand_computed (void)
{
  static RunLog l;
  memset (&l, 0, sizeof l);
  EngineHooks hooks = { runlog_started, NULL, NULL, runlog_done };
  g_autoptr (Engine) e = engine_new (&hooks, &l, 0.0);
  guint out = engine_add_link (e, 40e9), in1 = engine_add_link (e, 100e9), in2 = engine_add_link (e, 100e9);
  guint p1[2] = { out, in1 }, p2[2] = { out, in2 };
  guint routes[2] = { engine_route (e, p1, 2, SIM_PS_PER_US, 0.0), engine_route (e, p2, 2, SIM_PS_PER_US, 0.0) };
  EngineTask start = engine_nop (e, 0);
  EngineTask succ[2] = { engine_nop (e, 1), engine_nop (e, 2) };
  double bytes[2] = { 400e3, 200e3 };
  guint64 tags[2] = { 3, 4 };
  EngineTask fan = engine_fanout (e, 2, routes, bytes, tags, succ);
  engine_depend (e, start, fan);
  engine_commit (e);
  CU_ASSERT_EQUAL (engine_run (e), 16 * SIM_PS_PER_US);
  CU_ASSERT_EQUAL (l.end[3], 16 * SIM_PS_PER_US);
  CU_ASSERT_EQUAL (l.end[4], 11 * SIM_PS_PER_US);
  CU_ASSERT_EQUAL (l.start[2], 11 * SIM_PS_PER_US); /* each receiver at its own flow's arrival */
  CU_ASSERT_EQUAL (l.start[1], 16 * SIM_PS_PER_US);
  /* the flows start in the reverse of their order (as successors made one
   * by one would), after the task they wait for */
  CU_ASSERT_EQUAL (l.n_started, 5);
  CU_ASSERT_EQUAL (l.order[0], 0);
  CU_ASSERT_EQUAL (l.order[1], 4);
  CU_ASSERT_EQUAL (l.order[2], 3);
  CU_ASSERT_EQUAL (engine_tasks_pending (e), 0);
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_dependencies_and_gpu_fifo),
    TEST (test_sm_share_stretches_compute),
    TEST (test_gpu_priorities),
    TEST (test_equal_time_tasks_finish_in_schedule_order),
    TEST (test_fan_out_releases_all_newest_first),
    TEST (test_flow_latency_and_rate),
    TEST (test_routes_are_shared),
    TEST (test_flows_started_by_hooks),
    TEST (test_uniform_all_to_all_closed_form),
    TEST (test_matches_brute_force_reference),
    TEST (test_chains_match_brute_force_reference),
    TEST (test_chunks_follow_without_gap),
    TEST (test_tolerance_stays_close_to_exact),
    TEST (test_link_load_follows_rates),
    TEST (test_flow_arrived_runs_the_same),
    TEST (test_arrivals_keep_event_order),
    TEST (test_fanout_runs_as_its_flows),
    TEST (test_fanout_hand_computed),
  };
  return test_main ("engine", tests, G_N_ELEMENTS (tests));
}
