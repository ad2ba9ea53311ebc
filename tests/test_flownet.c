/* Max-min fair solver against hand-computed allocations. */
#include "flownet.h"
#include "flownet_private.h" /* the block scan of a batch */
#include "test_common.h"

static void
test_two_flows_share_a_link (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l = flownet_add_link (fn, 100.0);
  guint a = flownet_flow_add (fn, 0, 1000.0, &l, 1, 0.0, 1);
  guint b = flownet_flow_add (fn, 0, 1000.0, &l, 1, 0.0, 2);
  flownet_solve (fn, 0);
  ASSERT_REL (flownet_flow_rate (fn, a), 50.0, 1e-12);
  ASSERT_REL (flownet_flow_rate (fn, b), 50.0, 1e-12);
  /* both end after 1000 B at 50 B/s = 20 s */
  CU_ASSERT_EQUAL (flownet_next_end (fn), 20 * SIM_PS_PER_S);
}

/* A continuation: flow a (1000 B) and b (3000 B) share a link of 100 B/s
 * at 50 each; a gets 500 B more. At 20 s a is reported ended (continued)
 * and stays: same rate, no solve needed, its end 10 s later; the link's
 * bytes count all 4500. */
static void
test_continuation_keeps_the_flow (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l = flownet_add_link (fn, 100.0);
  guint a = flownet_flow_add (fn, 0, 1000.0, &l, 1, 0.0, 1);
  flownet_flow_add (fn, 0, 3000.0, &l, 1, 0.0, 2);
  flownet_solve (fn, 0);
  flownet_flow_set_next (fn, a, 500.0, 7);
  CU_ASSERT_EQUAL (flownet_next_end (fn), 20 * SIM_PS_PER_S);
  guint n;
  const FlowEnd *done = flownet_take_batch (fn, 20 * SIM_PS_PER_S, 0.0, &n);
  CU_ASSERT_EQUAL_FATAL (n, 1);
  CU_ASSERT_EQUAL (done[0].tag, 1);
  CU_ASSERT (done[0].continued);
  CU_ASSERT_EQUAL (done[0].end, 20 * SIM_PS_PER_S);
  CU_ASSERT_FALSE (flownet_needs_solve (fn));
  CU_ASSERT_EQUAL (flownet_n_active (fn), 2);
  ASSERT_REL (flownet_flow_rate (fn, a), 50.0, 1e-12);
  ASSERT_REL (flownet_flow_remaining (fn, a, 24 * SIM_PS_PER_S), 300.0, 1e-9);
  CU_ASSERT_EQUAL (flownet_next_end (fn), 30 * SIM_PS_PER_S);
  ASSERT_REL (flownet_link_bytes (fn, l), 4500.0, 1e-12);
  /* the continuation ends for good, under its own tag */
  done = flownet_take_batch (fn, 30 * SIM_PS_PER_S, 0.0, &n);
  CU_ASSERT_EQUAL_FATAL (n, 1);
  CU_ASSERT_EQUAL (done[0].tag, 7);
  CU_ASSERT_FALSE (done[0].continued);
  CU_ASSERT (flownet_needs_solve (fn));
  CU_ASSERT_EQUAL (flownet_n_active (fn), 1);
}

static void
test_classic_max_min (void)
{
  /* L1 = 10, L2 = 4; f1 over L1 and L2, f2 over L1, f3 over L2. L2 is the
   * bottleneck at 4/2 = 2 for f1 and f3; f2 takes what is left of L1: 8. */
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l1 = flownet_add_link (fn, 10.0), l2 = flownet_add_link (fn, 4.0);
  guint p12[] = { l1, l2 };
  guint f1 = flownet_flow_add (fn, 0, 1e6, p12, 2, 0.0, 1);
  guint f2 = flownet_flow_add (fn, 0, 1e6, &l1, 1, 0.0, 2);
  guint f3 = flownet_flow_add (fn, 0, 1e6, &l2, 1, 0.0, 3);
  flownet_solve (fn, 0);
  ASSERT_REL (flownet_flow_rate (fn, f1), 2.0, 1e-12);
  ASSERT_REL (flownet_flow_rate (fn, f2), 8.0, 1e-12);
  ASSERT_REL (flownet_flow_rate (fn, f3), 2.0, 1e-12);
}

static void
test_rate_cap_leaves_bandwidth_to_others (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l = flownet_add_link (fn, 90.0);
  guint a = flownet_flow_add (fn, 0, 1e6, &l, 1, 10.0, 1);
  guint b = flownet_flow_add (fn, 0, 1e6, &l, 1, 0.0, 2);
  guint c = flownet_flow_add (fn, 0, 1e6, &l, 1, 0.0, 3);
  flownet_solve (fn, 0);
  ASSERT_REL (flownet_flow_rate (fn, a), 10.0, 1e-12);
  ASSERT_REL (flownet_flow_rate (fn, b), 40.0, 1e-12);
  ASSERT_REL (flownet_flow_rate (fn, c), 40.0, 1e-12);
}

static void
test_only_touched_component_is_resolved (void)
{
  /* two disjoint links: a change on one must not re-solve the other */
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l1 = flownet_add_link (fn, 10.0), l2 = flownet_add_link (fn, 10.0);
  flownet_flow_add (fn, 0, 100.0, &l1, 1, 0.0, 1);
  flownet_flow_add (fn, 0, 100.0, &l2, 1, 0.0, 2);
  flownet_solve (fn, 0);
  guint64 work0 = flownet_solve_work (fn);
  flownet_flow_add (fn, 0, 100.0, &l1, 1, 0.0, 3);
  flownet_solve (fn, 0);
  /* visits only l1's two flows (component search + filling) */
  CU_ASSERT (flownet_solve_work (fn) - work0 <= 4);
}

static void
test_finish_frees_bandwidth_at_exact_tick (void)
{
  /* 1 GB/s link; flows of 1 MB and 3 MB share it at 0.5 GB/s. The small one
   * ends at 2 ms; the big one has 2 MB left at the full 1 GB/s: 4 ms. */
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l = flownet_add_link (fn, 1e9);
  flownet_flow_add (fn, 0, 1e6, &l, 1, 0.0, 1);
  flownet_flow_add (fn, 0, 3e6, &l, 1, 0.0, 2);
  flownet_solve (fn, 0);
  SimTime t1 = flownet_next_end (fn);
  CU_ASSERT_EQUAL (t1, 2 * SIM_PS_PER_S / 1000);
  guint n;
  const FlowEnd *done = flownet_take_batch (fn, t1, 0.0, &n);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (done[0].tag, 1);
  CU_ASSERT_EQUAL (done[0].end, t1);
  flownet_solve (fn, t1);
  CU_ASSERT_EQUAL (flownet_next_end (fn), 4 * SIM_PS_PER_S / 1000);
  done = flownet_take_batch (fn, 4 * SIM_PS_PER_S / 1000, 0.0, &n);
  CU_ASSERT_EQUAL (n, 1);
  CU_ASSERT_EQUAL (done[0].tag, 2);
  CU_ASSERT_EQUAL (flownet_n_active (fn), 0);
}

static void
test_tolerance_batches_near_ends_with_their_own_times (void)
{
  /* ends at 10 s and 10.05 s (ages 10 s): eps 0.01 allows 0.1 s of slack */
  g_autoptr (FlowNet) fn = flownet_new ();
  guint l1 = flownet_add_link (fn, 100.0), l2 = flownet_add_link (fn, 100.0);
  flownet_flow_add (fn, 0, 1000.0, &l1, 1, 0.0, 1);
  flownet_flow_add (fn, 0, 1005.0, &l2, 1, 0.0, 2);
  flownet_solve (fn, 0);
  SimTime t1 = flownet_next_end (fn);
  CU_ASSERT_EQUAL (t1, 10 * SIM_PS_PER_S);
  guint n;
  const FlowEnd *done = flownet_take_batch (fn, t1, 0.01, &n);
  CU_ASSERT_EQUAL (n, 2);
  SimTime e1 = done[0].tag == 1 ? done[0].end : done[1].end;
  SimTime e2 = done[0].tag == 2 ? done[0].end : done[1].end;
  CU_ASSERT_EQUAL (e1, 10 * SIM_PS_PER_S);
  CU_ASSERT_EQUAL (e2, 10 * SIM_PS_PER_S + SIM_PS_PER_S / 20);
}

static void
test_many_flows_conserve_capacity (void)
{
  /* random paths on 16 links: every link's rates sum to at most its
   * capacity, and every flow is bottlenecked somewhere (max-min) */
  g_autoptr (FlowNet) fn = flownet_new ();
  guint nl = 16;
  for (guint i = 0; i < nl; i++)
    flownet_add_link (fn, 10.0 + i);
  GRand *r = g_rand_new_with_seed (42);
  guint nf = 200;
  guint paths[200][3];
  guint ids[200];
  for (guint f = 0; f < nf; f++)
    {
      guint a = (guint) g_rand_int_range (r, 0, (gint) nl);
      guint b = (a + 1 + (guint) g_rand_int_range (r, 0, (gint) nl - 1)) % nl;
      paths[f][0] = a;
      paths[f][1] = b;
      ids[f] = flownet_flow_add (fn, 0, 100.0, paths[f], 2, 0.0, f);
    }
  g_rand_free (r);
  flownet_solve (fn, 0);
  double load[16] = { 0 };
  for (guint f = 0; f < nf; f++)
    for (guint h = 0; h < 2; h++)
      load[paths[f][h]] += flownet_flow_rate (fn, ids[f]);
  for (guint i = 0; i < nl; i++)
    CU_ASSERT (load[i] <= (10.0 + i) * (1 + 1e-9));
  for (guint f = 0; f < nf; f++)
    {
      /* bottleneck: a saturated link on its path where it is among the fastest */
      gboolean ok = FALSE;
      for (guint h = 0; h < 2; h++)
        {
          guint li = paths[f][h];
          if (load[li] < (10.0 + li) * (1 - 1e-9))
            continue;
          gboolean fastest = TRUE;
          for (guint g = 0; g < nf; g++)
            if ((paths[g][0] == li || paths[g][1] == li)
                && flownet_flow_rate (fn, ids[g]) > flownet_flow_rate (fn, ids[f]) * (1 + 1e-9))
              fastest = FALSE;
          ok |= fastest;
        }
      CU_ASSERT (ok);
    }
}

/* The max-min certificate over every active flow: no link above capacity,
 * and each flow at its cap or with a bottleneck (a saturated link on its
 * path where no flow is faster). It holds for one allocation only. */
typedef struct {
  guint id, n;
  guint path[4];
  double cap;
  gboolean live;
} TFlow;

static gboolean
certificate_holds (const FlowNet *fn, const TFlow *fl, guint nf, const double *caps, guint nl)
{
  g_autofree double *load = g_new0 (double, nl);
  g_autofree double *fastest = g_new0 (double, nl);
  for (guint f = 0; f < nf; f++)
    if (fl[f].live)
      for (guint h = 0; h < fl[f].n; h++)
        {
          double r = flownet_flow_rate (fn, fl[f].id);
          load[fl[f].path[h]] += r;
          fastest[fl[f].path[h]] = MAX (fastest[fl[f].path[h]], r);
        }
  for (guint l = 0; l < nl; l++)
    if (load[l] > caps[l] * (1 + 1e-9))
      return FALSE;
  for (guint f = 0; f < nf; f++)
    {
      if (!fl[f].live)
        continue;
      double r = flownet_flow_rate (fn, fl[f].id);
      gboolean ok = fl[f].cap > 0 && fabs (r - fl[f].cap) <= 1e-12 * fl[f].cap;
      for (guint h = 0; h < fl[f].n && !ok; h++)
        {
          guint l = fl[f].path[h];
          ok = load[l] >= caps[l] * (1 - 1e-7) && fastest[l] <= r * (1 + 1e-7);
        }
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

/* The path from GPU a to GPU b of a multi-plane cluster of nodes of gpn
 * GPUs: links [0, gpus) NVLink out, [gpus, 2 gpus) NVLink in, then NIC out
 * and NIC in; traffic to another rail goes over NVLink to the GPU of the
 * destination's rail first. */
static void
multi_plane_path (TFlow *t, guint a, guint b, guint gpus, guint gpn)
{
  guint relay = a / gpn * gpn + b % gpn;
  if (a / gpn == b / gpn)
    t->n = 2, t->path[0] = a, t->path[1] = gpus + b;
  else if (relay == a)
    t->n = 2, t->path[0] = 2 * gpus + a, t->path[1] = 3 * gpus + b;
  else
    t->n = 4, t->path[0] = a, t->path[1] = gpus + relay, t->path[2] = 2 * gpus + relay, t->path[3] = 3 * gpus + b;
}

/* Takes the batch of flows that end next (exactly, no tolerance) and marks
 * them gone; FALSE, with nothing taken, when no flow has an end. */
static gboolean
take_next_ends (FlowNet *fn, TFlow *fl, SimTime *now)
{
  SimTime next = flownet_next_end (fn);
  if (next == SIM_TIME_MAX)
    return FALSE;
  *now = next;
  guint n;
  const FlowEnd *done = flownet_take_batch (fn, next, 0.0, &n);
  for (guint i = 0; i < n; i++)
    fl[done[i].tag].live = FALSE;
  return TRUE;
}

/* Solves, checks that the rates are the max-min allocation, and takes the
 * next batch of ends; FALSE when no flow is left to end. */
static gboolean
solve_certify_take (FlowNet *fn, TFlow *fl, guint nf, const double *caps, guint nl, SimTime *now)
{
  flownet_solve (fn, *now);
  CU_ASSERT (certificate_holds (fn, fl, nf, caps, nl));
  return take_next_ends (fn, fl, now);
}

/* Flows start and end at random on a small cluster (4 nodes of 4 GPUs,
 * NVLink out/in per GPU, one NIC out/in per GPU, other-rail traffic over
 * NVLink first, as in the multi-plane topologies) and on random paths: after
 * every solve, partial, whole or restarted from an earlier one's record, the
 * rates are the max-min allocation. With some flows capped (restarts only
 * while none is active) and none (most solves after ends restart). A third
 * shape keeps flows on 4 islands of 6 links (a round's flows start on one
 * of them), but for a few short ones that bridge two: the network splits
 * into parts and joins again, so solves of the part a change touched
 * alternate with whole ones and restarts. */
static void
test_rates_stay_max_min_through_changes (void)
{
  for (guint variant = 0; variant < 6; variant++)
    {
      guint shape = variant % 3;
      gboolean capped = variant < 3;
      g_autoptr (FlowNet) fn = flownet_new ();
      guint gpus = 16, gpn = 4, nl = shape == 0 ? 4 * gpus : 24;
      g_autofree double *caps = g_new (double, nl);
      for (guint l = 0; l < nl; l++)
        {
          caps[l] = shape == 0 ? (l < 2 * gpus ? 160.0 : 50.0) : 10.0 + l;
          flownet_add_link (fn, caps[l]);
        }
      GRand *r = g_rand_new_with_seed (7 + variant);
      guint cap_fl = 4000, nf = 0, checks = 0;
      g_autofree TFlow *fl = g_new0 (TFlow, cap_fl);
      SimTime now = 0;
      for (guint round = 0; round < 400 && nf + 40 < cap_fl; round++)
        {
          guint adds = (guint) g_rand_int_range (r, 0, round < 20 ? 40 : 8);
          for (guint k = 0; k < adds; k++)
            {
              TFlow *t = &fl[nf];
              if (shape == 0)
                {
                  guint a = (guint) g_rand_int_range (r, 0, (gint) gpus);
                  guint b = (a + 1 + (guint) g_rand_int_range (r, 0, (gint) gpus - 1)) % gpus;
                  multi_plane_path (t, a, b, gpus, gpn);
                }
              else if (shape == 2)
                {
                  guint isl = round % 4; /* a round's flows start on one island */
                  t->n = (guint) g_rand_int_range (r, 1, 4);
                  for (guint h = 0; h < t->n; h++)
                    {
                      gboolean dup;
                      do
                        {
                          t->path[h] = isl * 6 + (guint) g_rand_int_range (r, 0, 6);
                          dup = FALSE;
                          for (guint q = 0; q < h; q++)
                            dup |= t->path[q] == t->path[h];
                        }
                      while (dup);
                    }
                  if (g_rand_double (r) < 0.02) /* a short bridge to the next island */
                    t->path[t->n++] = (isl + 1) % 4 * 6 + (guint) g_rand_int_range (r, 0, 6);
                }
              else
                {
                  t->n = (guint) g_rand_int_range (r, 1, 5);
                  for (guint h = 0; h < t->n; h++)
                    {
                      gboolean dup;
                      do
                        {
                          t->path[h] = (guint) g_rand_int_range (r, 0, (gint) nl);
                          dup = FALSE;
                          for (guint q = 0; q < h; q++)
                            dup |= t->path[q] == t->path[h];
                        }
                      while (dup);
                    }
                }
              t->cap = capped && g_rand_double (r) < 0.1 ? g_rand_double_range (r, 0.5, 20.0) : 0.0;
              t->live = TRUE;
              double bytes = g_rand_double_range (r, 10.0, 1000.0);
              if (shape == 2 && t->n > 1 && t->path[t->n - 1] / 6 != t->path[0] / 6)
                bytes /= 50.0;
              t->id = flownet_flow_add (fn, now, bytes, t->path, t->n, t->cap, nf);
              nf++;
            }
          flownet_solve (fn, now);
          CU_ASSERT (certificate_holds (fn, fl, nf, caps, nl));
          checks++;
          if (!take_next_ends (fn, fl, &now))
            continue;
          flownet_solve (fn, now);
          CU_ASSERT (certificate_holds (fn, fl, nf, caps, nl));
          checks++;
        }
      g_rand_free (r);
      CU_ASSERT (checks >= 400);
      if (!capped) /* with caps, restarts happen only while none is active */
        CU_ASSERT (flownet_solve_restarts (fn) >= 100);
      if (!capped && shape == 2) /* and solves of one part (or whole ones
                                  * from scratch after those) between them */
        CU_ASSERT (flownet_solve_count (fn) - flownet_solve_restarts (fn) >= 50);
    }
}

/* An all-to-all of 16 GPUs through one switch (one link out and one in per
 * GPU), flows of distinct sizes ending one by one: the network stays one
 * component, so after the first solve every solve restarts from the last
 * one's record, the first included (its component search reached every
 * flow) and the later searches too; every allocation stays max-min. */
static void
test_whole_network_solves_restart (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  guint gpus = 16, nl = 2 * gpus, nf = 0;
  double caps[32];
  for (guint l = 0; l < nl; l++)
    {
      caps[l] = 100.0 + l;
      flownet_add_link (fn, caps[l]);
    }
  TFlow fl[256];
  for (guint a = 0; a < gpus; a++)
    for (guint b = 0; b < gpus; b++)
      if (a != b)
        {
          TFlow *t = &fl[nf];
          *t = (TFlow) { 0, 2, { a, gpus + b }, 0.0, TRUE };
          t->id = flownet_flow_add (fn, 0, 1000.0 + 7.0 * nf, t->path, 2, 0.0, nf);
          nf++;
        }
  SimTime now = 0;
  guint solves = 0;
  do
    solves++;
  while (solve_certify_take (fn, fl, nf, caps, nl, &now));
  CU_ASSERT (flownet_n_active (fn) == 0);
  CU_ASSERT (solves > 128); /* past searches 64 solves apart, and on halvings */
  CU_ASSERT_EQUAL (flownet_solve_restarts (fn), solves - 1);
}

/* All-to-alls whose links of a class all have one capacity and as many
 * flows, so they tie (16 GPUs through one switch; and 4 nodes of 4 GPUs
 * with NVLink out/in and a NIC out/in each, other-rail traffic over NVLink
 * first). A destination's flows are of one size, so they end together and
 * the links keep tying; now and then a few flows of their own start. The
 * restarts after ends alone skip the tie (its flows keep their rates but
 * for those whose tie links all lost an ended flow); after every solve the
 * rates are the max-min allocation. */
static void
test_tie_skips_keep_max_min (void)
{
  for (guint shape = 0; shape < 2; shape++)
    {
      g_autoptr (FlowNet) fn = flownet_new ();
      guint gpus = 32, gpn = 4, nl = shape == 0 ? 2 * gpus : 4 * gpus;
      double caps[128];
      for (guint l = 0; l < nl; l++)
        {
          caps[l] = shape == 0 ? 100.0 : (l < 2 * gpus ? 160.0 : 50.0);
          flownet_add_link (fn, caps[l]);
        }
      GRand *r = g_rand_new_with_seed (11 + shape);
      guint cap_fl = 1200, nf = 0;
      g_autofree TFlow *fl = g_new0 (TFlow, cap_fl);
      SimTime now = 0;
      for (guint a = 0; a < gpus; a++)
        for (guint b = 0; b < gpus; b++)
          {
            if (a == b)
              continue;
            TFlow *t = &fl[nf];
            if (shape == 0)
              t->n = 2, t->path[0] = a, t->path[1] = gpus + b;
            else
              multi_plane_path (t, a, b, gpus, gpn);
            t->live = TRUE;
            t->id = flownet_flow_add (fn, now, 500.0 + 60.0 * b, t->path, t->n, 0.0, nf);
            nf++;
          }
      guint solves = 0;
      for (;;)
        {
          solves++;
          if (!solve_certify_take (fn, fl, nf, caps, nl, &now))
            break;
          if (solves % 4 == 0 && nf + 2 <= cap_fl)
            for (guint k = 0; k < 2; k++)
              {
                /* a restart with started flows solves the tie again */
                TFlow *t = &fl[nf];
                guint a = (guint) g_rand_int_range (r, 0, (gint) gpus);
                guint b = (a + 1 + (guint) g_rand_int_range (r, 0, (gint) gpus - 1)) % gpus;
                *t = (TFlow) { 0, 2, { a, gpus + b }, 0.0, TRUE };
                t->id = flownet_flow_add (fn, now, g_rand_double_range (r, 5.0, 50.0), t->path, 2, 0.0, nf);
                nf++;
              }
        }
      g_rand_free (r);
      CU_ASSERT (flownet_n_active (fn) == 0);
      CU_ASSERT (solves > 60);
      CU_ASSERT (flownet_solve_tie_skips (fn) >= 10 && flownet_solve_tie_skips (fn) >= solves / 8);
    }
}

/* Bundles against plain flows: the same flows, added once as flows of
 * their own over their whole paths and once as bundles (a private prefix
 * and a core shared by every GPU of a node sending to one GPU elsewhere),
 * run to their ends in exact mode while more arrive: every flow ends at
 * the same time in both, up to rounding. The multi-plane cluster of the
 * test above; with NVLink slower than the NICs in half the variants, so
 * private links bind and bundles split (and, in the other half, in the
 * tails). */
static void
run_to (FlowNet *fn, SimTime until, SimTime *now, SimTime *ends)
{
  for (;;)
    {
      SimTime next = flownet_next_end (fn);
      if (next == SIM_TIME_MAX || next > until)
        break;
      *now = next;
      guint n;
      const FlowEnd *done = flownet_take_batch (fn, next, 0.0, &n);
      for (guint i = 0; i < n; i++)
        ends[done[i].tag] = done[i].end;
      flownet_solve (fn, next);
    }
}

static void
add_both (FlowNet *plain, FlowNet *bund, SimTime at, guint a, guint b, double bytes, guint gpus, guint gpn, guint tag)
{
  guint relay = a / gpn * gpn + b % gpn;
  guint path[4], n = 0, n_priv = 0;
  if (a / gpn == b / gpn)
    path[n++] = a, path[n++] = gpus + b;
  else
    {
      if (relay != a)
        path[n++] = a, path[n++] = gpus + relay, n_priv = 2;
      path[n++] = 2 * gpus + relay;
      path[n++] = 3 * gpus + b;
    }
  flownet_flow_add (plain, at, bytes, path, n, 0.0, tag);
  if (a / gpn == b / gpn)
    flownet_flow_add (bund, at, bytes, path, n, 0.0, tag);
  else
    flownet_flow_add_shared (bund, at, bytes, path, n_priv, flownet_core (bund, path + n_priv, 2), tag);
}

static void
test_bundles_match_plain_flows (void)
{
  for (guint variant = 0; variant < 6; variant++)
    {
      guint gpus = variant >= 4 ? 32 : 16, gpn = variant >= 4 ? 8 : 4, nl = 4 * gpus;
      g_autoptr (FlowNet) plain = flownet_new ();
      g_autoptr (FlowNet) bund = flownet_new ();
      for (guint l = 0; l < nl; l++)
        {
          /* variants 4 and 5: NICs faster than NVLink, all-to-alls whose
           * flows from a GPU on the destination's rail (no private link)
           * join their bundles later, after bundles were fixed at a
           * private link all their members then shared */
          double cap = l < 2 * gpus ? (variant % 2 ? 40.0 : 160.0) : 50.0;
          if (variant >= 4)
            cap = l < 2 * gpus ? 139.0 : 190.0;
          flownet_add_link (plain, cap);
          flownet_add_link (bund, cap);
        }
      GRand *r = g_rand_new_with_seed (100 + variant);
      guint cap_fl = 30000, nf = 0;
      g_autofree SimTime *end_p = g_new0 (SimTime, cap_fl);
      g_autofree SimTime *end_b = g_new0 (SimTime, cap_fl);
      SimTime now_p = 0, now_b = 0;
      for (guint round = 0; round < (variant >= 4 ? 22 : 60); round++)
        {
          SimTime at = (SimTime) round * 2000000; /* 2 us apart */
          run_to (plain, at, &now_p, end_p);
          run_to (bund, at, &now_b, end_b);
          if (variant >= 4)
            {
              /* every 10 rounds an all-to-all: first the flows with a
               * private link, a round later those without */
              guint phase = round % 10;
              for (guint a = 0; a < gpus && phase < 2; a++)
                for (guint b = 0; b < gpus; b++)
                  {
                    gboolean direct_rail = a / gpn != b / gpn && a % gpn == b % gpn;
                    if (a == b || direct_rail != (phase == 1) || nf >= cap_fl)
                      continue;
                    add_both (plain, bund, at, a, b, g_rand_double_range (r, 20000.0, 200000.0), gpus, gpn, nf++);
                  }
            }
          guint adds = variant >= 4 ? 0 : (guint) g_rand_int_range (r, 0, variant < 2 ? 60 : 25);
          for (guint k = 0; k < adds && nf < cap_fl; k++, nf++)
            {
              guint a = (guint) g_rand_int_range (r, 0, (gint) gpus);
              guint b = (a + 1 + (guint) g_rand_int_range (r, 0, (gint) gpus - 1)) % gpus;
              add_both (plain, bund, at, a, b, g_rand_double_range (r, 1000.0, 100000.0), gpus, gpn, nf);
            }
          flownet_solve (plain, at);
          flownet_solve (bund, at);
        }
      run_to (plain, SIM_TIME_MAX - 1, &now_p, end_p);
      run_to (bund, SIM_TIME_MAX - 1, &now_b, end_b);
      g_rand_free (r);
      CU_ASSERT (nf > 600);
      CU_ASSERT_EQUAL (flownet_n_active (plain), 0);
      CU_ASSERT_EQUAL (flownet_n_active (bund), 0);
      guint bad = 0;
      for (guint f = 0; f < nf; f++)
        if (end_p[f] == 0 || llabs (end_p[f] - end_b[f]) > 10 + end_p[f] / 1000000000)
          bad++;
      CU_ASSERT_EQUAL (bad, 0);
      if (bad)
        g_printerr ("variant %u: %u of %u flows end elsewhere\n", variant, bad, nf);
    }
}

/* A flow split off its bundle goes back into it once a solve fixes it
 * with the bundle again, and ends as it would have as a flow of its own.
 * Member A (from a GPU off the rail: private links E, its NVLink out, and
 * I, the relay's NVLink in) and member B (from the relay itself) share the
 * core N (the relay's NIC out, 12 GB/s) and D (the receiver's NIC in).
 * Four short flows also cross E (10 GB/s): E's share, 2 GB/s, is the
 * least, so A splits off (B alone in the bundle: 10 GB/s). Once they end
 * (1 MB at 2 GB/s: 0.5 ms), A and B share N at 6 GB/s: one bundle again.
 * When B ends, E binds A alone (10 GB/s): A splits off once more. The
 * ends, against the same flows all added as flows of their own: A sends
 * 1 MB by 0.5 ms, B 5 MB; B's 95 MB at 6 GB/s end at 16.333 ms, by when A
 * has sent 96 MB; its last 4 MB at 10 GB/s end at 16.733 ms. */
static void
test_split_flow_rejoins_its_bundle (void)
{
  g_autoptr (FlowNet) plain = flownet_new ();
  g_autoptr (FlowNet) bund = flownet_new ();
  FlowNet *nets[2] = { plain, bund };
  enum { E, I, N, D, X };
  const double caps[] = { 10e9, 100e9, 12e9, 100e9, 100e9 };
  for (guint k = 0; k < 2; k++)
    for (guint l = 0; l < G_N_ELEMENTS (caps); l++)
      flownet_add_link (nets[k], caps[l]);
  const guint a_path[] = { E, I, N, D }, b_path[] = { N, D }, c_path[] = { E, X };
  flownet_flow_add (plain, 0, 100e6, a_path, 4, 0.0, 0);
  flownet_flow_add (plain, 0, 100e6, b_path, 2, 0.0, 1);
  guint core = flownet_core (bund, b_path, 2);
  flownet_flow_add_shared (bund, 0, 100e6, a_path, 2, core, 0);
  flownet_flow_add_shared (bund, 0, 100e6, NULL, 0, core, 1);
  for (guint k = 0; k < 2; k++)
    for (guint c = 0; c < 4; c++)
      flownet_flow_add (nets[k], 0, 1e6, c_path, 2, 0.0, 2 + c);
  SimTime ends[2][6] = { { 0 } }, now[2] = { 0, 0 };
  for (guint k = 0; k < 2; k++)
    flownet_solve (nets[k], 0);
  CU_ASSERT_EQUAL (flownet_n_active (bund), 6); /* A split off: A, the bundle, four flows */
  for (guint k = 0; k < 2; k++)
    run_to (nets[k], G_GINT64_CONSTANT (1000000000), &now[k], ends[k]); /* 1 ms */
  CU_ASSERT_EQUAL (flownet_n_active (bund), 1); /* A back in the bundle */
  CU_ASSERT_DOUBLE_EQUAL (flownet_flow_rate (plain, 0), 6e9, 1.0);
  for (guint k = 0; k < 2; k++)
    run_to (nets[k], SIM_TIME_MAX - 1, &now[k], ends[k]);
  CU_ASSERT_EQUAL (flownet_n_active (bund), 0);
  const double want_us[] = { 16733.333333, 16333.333333, 500, 500, 500, 500 };
  for (guint f = 0; f < 6; f++)
    {
      CU_ASSERT (llabs (ends[0][f] - ends[1][f]) <= 10);
      CU_ASSERT_DOUBLE_EQUAL (ends[1][f] / 1e6, want_us[f], 1e-3);
    }
}

/* A bundle holds at most BUNDLE_MEMBERS members (its per-link counts are
 * 16 bits): flows past that on its core go as flows of their own, and max-min
 * treats them all alike. 70,000 equal flows on two links: every one ends at
 * 70,000 x 1000 B / 1 GB/s = 70 ms. */
static void
test_full_bundle_spills_into_plain_flows (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  guint core_links[2] = { flownet_add_link (fn, 1e9), flownet_add_link (fn, 2e9) };
  guint core = flownet_core (fn, core_links, 2);
  const guint n = 70000;
  for (guint i = 0; i < n; i++)
    flownet_flow_add_shared (fn, 0, 1000.0, NULL, 0, core, i);
  CU_ASSERT_EQUAL (flownet_n_active (fn), 1 + (n - 65535)); /* one full bundle, the rest plain */
  flownet_solve (fn, 0);
  g_autofree SimTime *ends = g_new0 (SimTime, n);
  SimTime now = 0;
  run_to (fn, SIM_TIME_MAX - 1, &now, ends);
  CU_ASSERT_EQUAL (flownet_n_active (fn), 0);
  guint bad = 0;
  for (guint i = 0; i < n; i++)
    bad += llabs (ends[i] - G_GINT64_CONSTANT (70000000000)) > 80; /* 10 ps + 1e-9 */
  CU_ASSERT_EQUAL (bad, 0);
}

/* The checks the engine makes once per route (flownet_path_ok,
 * flownet_shared_ok) reject what flownet_flow_add and
 * flownet_flow_add_shared would, and pass a path they take. */
static void
test_path_checks (void)
{
  g_autoptr (FlowNet) fn = flownet_new ();
  for (guint i = 0; i < 12; i++)
    flownet_add_link (fn, 100.0);
  const guint ok[] = { 0, 1, 2 }, rep[] = { 0, 1, 0 }, out[] = { 0, 12 };
  const guint long_path[FLOWNET_MAX_HOPS + 1] = { 0, 1, 2, 3, 4, 5, 6, 7, 8 };
  CU_ASSERT (flownet_path_ok (fn, ok, 3));
  CU_ASSERT_FALSE (flownet_path_ok (fn, ok, 0));
  CU_ASSERT_FALSE (flownet_path_ok (fn, rep, 3));
  CU_ASSERT_FALSE (flownet_path_ok (fn, out, 2));
  CU_ASSERT (flownet_path_ok (fn, long_path, FLOWNET_MAX_HOPS));
  CU_ASSERT_FALSE (flownet_path_ok (fn, long_path, FLOWNET_MAX_HOPS + 1));
  const guint core_links[] = { 10, 11 };
  guint core = flownet_core (fn, core_links, 2);
  const guint priv[] = { 3, 4 }, priv_rep[] = { 3, 3 }, priv_core[] = { 3, 11 }, priv_out[] = { 12 };
  CU_ASSERT (flownet_shared_ok (fn, priv, 2, core));
  CU_ASSERT (flownet_shared_ok (fn, NULL, 0, core));
  CU_ASSERT_FALSE (flownet_shared_ok (fn, priv, 2, core + 1));
  CU_ASSERT_FALSE (flownet_shared_ok (fn, priv_rep, 2, core));
  CU_ASSERT_FALSE (flownet_shared_ok (fn, priv_core, 2, core));
  CU_ASSERT_FALSE (flownet_shared_ok (fn, priv_out, 1, core));
  CU_ASSERT (flownet_shared_ok (fn, long_path + 2, FLOWNET_MAX_HOPS - 2, core));
  CU_ASSERT_FALSE (flownet_shared_ok (fn, long_path + 1, FLOWNET_MAX_HOPS - 1, core));
  /* an unchecked add of a checked path is the checked add */
  g_autoptr (FlowNet) a = flownet_new (), b = flownet_new ();
  for (guint i = 0; i < 3; i++)
    {
      flownet_add_link (a, 100.0 * (i + 1));
      flownet_add_link (b, 100.0 * (i + 1));
    }
  guint fa = flownet_flow_add (a, 0, 500.0, ok, 3, 0.0, 1);
  guint fb = flownet_flow_add_path (b, 0, 500.0, ok, 3, 0.0, 1);
  flownet_flow_add (a, 0, 700.0, ok + 1, 2, 0.0, 2);
  flownet_flow_add_path (b, 0, 700.0, ok + 1, 2, 0.0, 2);
  flownet_solve (a, 0);
  flownet_solve (b, 0);
  CU_ASSERT_EQUAL (flownet_flow_rate (a, fa), flownet_flow_rate (b, fb));
  CU_ASSERT_EQUAL (flownet_next_end (a), flownet_next_end (b));
}

/* The scan of a block in a batch of ends that this machine picks (AVX2
 * where it has it) gives what the portable one gives: candidates, and the
 * least end and start of the others, free slots (both SIM_TIME_MAX)
 * among them, deadlines below, among and above the ends. */
static void
test_block_scan_matches_portable (void)
{
  FlowScan scan = flownet_pick_scan ();
  GRand *r = g_rand_new_with_seed (5);
  SimTime end[BLOCK], start[BLOCK];
  for (guint round = 0; round < 2000; round++)
    {
      for (guint k = 0; k < BLOCK; k++)
        {
          gboolean free_slot = g_rand_int_range (r, 0, 4) == 0;
          end[k] = free_slot ? SIM_TIME_MAX : g_rand_int_range (r, 0, 1000);
          start[k] = free_slot ? SIM_TIME_MAX : g_rand_int_range (r, 0, 1000);
        }
      SimTime lim = g_rand_int_range (r, -10, 1010);
      SimTime e1, s1, e2, s2;
      guint64 c1 = scan (end, start, lim, &e1, &s1);
      guint64 c2 = flownet_scan_portable (end, start, BLOCK, lim, &e2, &s2);
      CU_ASSERT_EQUAL (c1, c2);
      CU_ASSERT_EQUAL (e1, e2);
      CU_ASSERT_EQUAL (s1, s2);
    }
  g_rand_free (r);
  /* by hand: slots 1 and 3 at or before 10, the others past it */
  SimTime e, st;
  const SimTime he[4] = { 20, 10, 30, 5 }, hs[4] = { 7, 1, 3, 2 };
  CU_ASSERT_EQUAL (flownet_scan_portable (he, hs, 4, 10, &e, &st), 0xa);
  CU_ASSERT_EQUAL (e, 20);
  CU_ASSERT_EQUAL (st, 3);
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_two_flows_share_a_link),
    TEST (test_classic_max_min),
    TEST (test_continuation_keeps_the_flow),
    TEST (test_rate_cap_leaves_bandwidth_to_others),
    TEST (test_only_touched_component_is_resolved),
    TEST (test_finish_frees_bandwidth_at_exact_tick),
    TEST (test_tolerance_batches_near_ends_with_their_own_times),
    TEST (test_many_flows_conserve_capacity),
    TEST (test_rates_stay_max_min_through_changes),
    TEST (test_whole_network_solves_restart),
    TEST (test_tie_skips_keep_max_min),
    TEST (test_bundles_match_plain_flows),
    TEST (test_split_flow_rejoins_its_bundle),
    TEST (test_full_bundle_spills_into_plain_flows),
    TEST (test_path_checks),
    TEST (test_block_scan_matches_portable),
  };
  return test_main ("flownet", tests, G_N_ELEMENTS (tests));
}
