/* Event queue: (time, seq) order, equal-time events in schedule order; and
 * the small containers of the engine and the solver: the free-id set they
 * recycle slots with, the radix heap that finds the least link share. */
#include "evq.h"
#include "radixheap.h"
#include "test_common.h"
#include "util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

/* n events queued as a batch, with seqs taken now in array order: as if
 * pushed one by one */
static void
push_batch (SimQueue *q, SimEvent *evs, gsize n)
{
  guint64 first = sim_queue_reserve (q, n);
  for (gsize i = 0; i < n; i++)
    evs[i].seq = first + i;
  sim_queue_push_batch_seq (q, evs, n);
}

/* Pops what is left of two queues that must pop alike, then checks that
 * they did, all along (`bad` events differed of `popped`). */
static void
drain_both (SimQueue *a, SimQueue *b, guint bad, guint popped)
{
  SimEvent x, y;
  while (sim_queue_pop (a, &x))
    {
      CU_ASSERT_FATAL (sim_queue_pop (b, &y));
      bad += x.time != y.time || x.id != y.id || x.seq != y.seq;
      popped++;
    }
  CU_ASSERT_FALSE (sim_queue_pop (b, &y));
  CU_ASSERT_EQUAL (bad, 0);
  CU_ASSERT (popped > 50000);
}

static void
test_orders_by_time (void)
{
  g_autoptr (SimQueue) q = sim_queue_new ();
  SimTime times[] = { 50, 10, 40, 20, 30 };
  for (guint i = 0; i < G_N_ELEMENTS (times); i++)
    sim_queue_push (q, times[i], 0, 0, i);
  SimEvent ev;
  SimTime last = -1;
  guint n = 0;
  while (sim_queue_pop (q, &ev))
    {
      CU_ASSERT (ev.time > last);
      last = ev.time;
      n++;
    }
  CU_ASSERT_EQUAL (n, 5);
}

static void
test_equal_time_in_schedule_order (void)
{
  g_autoptr (SimQueue) q = sim_queue_new ();
  /* many equal-time events interleaved with others: heap order must not leak */
  for (guint i = 0; i < 1000; i++)
    sim_queue_push (q, (i % 3) * 100, 0, 0, i);
  SimEvent ev;
  guint64 prev_id[3] = { 0, 0, 0 };
  gboolean first[3] = { TRUE, TRUE, TRUE };
  while (sim_queue_pop (q, &ev))
    {
      guint slot = (guint) (ev.time / 100);
      if (!first[slot])
        CU_ASSERT (ev.id > prev_id[slot]);
      first[slot] = FALSE;
      prev_id[slot] = ev.id;
    }
}

/* Batches pop exactly as the same events pushed one by one would: random
 * batches (sorted, unsorted, small, large, with equal times and a spread
 * beyond 2^32 ps) interleaved with single events and pops. */
/* The look-ahead hint names the k-th event after the earliest within its
 * batch: with nothing else queued, the one that pops k events later. */
static void
test_peek_ahead_names_later_batch_events (void)
{
  g_autoptr (SimQueue) q = sim_queue_new ();
  CU_ASSERT_EQUAL (sim_queue_peek_id_ahead (q, 0), G_MAXUINT64);
  sim_queue_push (q, 5, 1, 0, 77);
  CU_ASSERT_EQUAL (sim_queue_peek_id_ahead (q, 0), G_MAXUINT64); /* not in a batch */
  SimEvent x;
  sim_queue_pop (q, &x);
  SimEvent batch[10];
  for (guint i = 0; i < 10; i++)
    batch[i] = (SimEvent) { 100 + (SimTime) (i * 7 % 10), 0, 1, 0, 1000 + i };
  push_batch (q, batch, 10);
  guint64 ahead[10];
  for (guint k = 0; k < 10; k++)
    ahead[k] = sim_queue_peek_id_ahead (q, k);
  CU_ASSERT_EQUAL (sim_queue_peek_id_ahead (q, 10), G_MAXUINT64);
  CU_ASSERT_EQUAL (ahead[0], sim_queue_peek_id (q));
  for (guint i = 0; i < 10; i++)
    {
      CU_ASSERT_EQUAL (sim_queue_peek_id_ahead (q, 10 - i), G_MAXUINT64);
      CU_ASSERT_FATAL (sim_queue_pop (q, &x));
      CU_ASSERT_EQUAL (x.id, ahead[i]);
    }
}

static void
test_batches_pop_as_singles (void)
{
  g_autoptr (SimQueue) a = sim_queue_new ();
  g_autoptr (SimQueue) b = sim_queue_new ();
  GRand *r = g_rand_new_with_seed (9);
  static SimEvent batch[6000];
  guint64 id = 0;
  guint popped = 0, bad = 0;
  for (guint round = 0; round < 300; round++)
    {
      SimTime now = sim_queue_now (a);
      /* small batches, large ones (sorted with other digit sizes) */
      guint n = (guint) g_rand_int_range (r, 0, round % 10 == 0 ? 3000 : round % 10 == 3 ? 6000 : 80);
      gint64 spread = round % 7 == 0 ? ((gint64) 1 << 34) : g_rand_int_range (r, 1, 1000000);
      for (guint i = 0; i < n; i++)
        {
          SimTime t = now + (round % 5 == 0 ? (SimTime) i * 3 : (SimTime) g_rand_double_range (r, 0, (double) spread));
          if (g_rand_int_range (r, 0, 4) == 0 && i > 0)
            t = batch[i - 1].time; /* equal times keep their order */
          batch[i] = (SimEvent) { t, 0, 1, 0, id };
          sim_queue_push (a, t, 1, 0, id++);
        }
      push_batch (b, batch, n);
      for (guint k = 0; k < 5; k++) /* a single event between batches */
        {
          SimTime t = now + g_rand_int_range (r, 0, 500000);
          sim_queue_push (a, t, 2, 0, id);
          sim_queue_push (b, t, 2, 0, id++);
        }
      CU_ASSERT_EQUAL (sim_queue_length (a), sim_queue_length (b));
      guint pops = (guint) g_rand_int_range (r, 0, 200);
      for (guint k = 0; k < pops && sim_queue_length (a) > 0; k++)
        {
          SimEvent x, y;
          CU_ASSERT_EQUAL (sim_queue_peek_time (a), sim_queue_peek_time (b));
          CU_ASSERT_EQUAL (sim_queue_peek_id (a), sim_queue_peek_id (b));
          sim_queue_pop (a, &x);
          sim_queue_pop (b, &y);
          bad += x.time != y.time || x.id != y.id || x.kind != y.kind || x.seq != y.seq;
          popped++;
        }
    }
  drain_both (a, b, bad, popped);
  g_rand_free (r);
}

static void
test_scheduling_into_past_asserts (void)
{
  /* a child process schedules into the past and must die on the assertion */
  pid_t pid = fork ();
  if (pid == 0)
    {
      g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL);
      SimQueue *q = sim_queue_new ();
      sim_queue_push (q, 7, 0, 0, 0);
      SimEvent ev;
      sim_queue_pop (q, &ev);
      int devnull = open ("/dev/null", O_WRONLY);
      dup2 (devnull, 2); /* keep the expected assertion message out of the log */
      sim_queue_push (q, 6, 0, 0, 0);
      _exit (0);
    }
  int status = 0;
  waitpid (pid, &status, 0);
  CU_ASSERT (WIFSIGNALED (status));
}

static void
test_time_conversion_rounds_up (void)
{
  CU_ASSERT_EQUAL (sim_time_from_seconds (1e-6), 1000000);
  CU_ASSERT_EQUAL (sim_time_from_seconds (0.0), 0);
  CU_ASSERT_EQUAL (sim_time_from_seconds (1.5e-12), 2);
  CU_ASSERT_EQUAL (sim_time_from_seconds (1.0 / 3.0 * 1e-9), 334);
  CU_ASSERT_EQUAL (sim_time_from_seconds (2.0), 2 * SIM_PS_PER_S);
}

/* Free ids come back lowest first, whatever order they were freed in,
 * across summary words (ids far apart), against a plain array of flags. */
static void
test_free_ids_lowest_first (void)
{
  FreeIds f = { 0 };
  guint n = 300000;
  g_autofree gboolean *is_free = g_new0 (gboolean, n);
  GRand *r = g_rand_new_with_seed (3);
  guint taken;
  CU_ASSERT_FALSE (free_ids_take (&f, &taken));
  for (guint round = 0; round < 2000; round++)
    {
      guint puts = (guint) g_rand_int_range (r, 0, 40);
      for (guint k = 0; k < puts; k++)
        {
          /* mostly near the low end, sometimes far up */
          guint id = g_rand_double (r) < 0.9 ? (guint) g_rand_int_range (r, 0, 5000)
                                              : (guint) g_rand_int_range (r, 0, (gint) n);
          if (!is_free[id])
            {
              is_free[id] = TRUE;
              free_ids_put (&f, id);
            }
        }
      guint takes = (guint) g_rand_int_range (r, 0, 40);
      for (guint k = 0; k < takes; k++)
        {
          guint want = 0;
          while (want < n && !is_free[want])
            want++;
          gboolean got = free_ids_take (&f, &taken);
          CU_ASSERT_EQUAL (got, want < n);
          if (!got)
            break;
          CU_ASSERT_EQUAL (taken, want);
          is_free[want] = FALSE;
        }
    }
  g_rand_free (r);
  free_ids_clear (&f);
}

/* An array grown by util_grow_aligned stays 64-byte aligned and keeps
 * its records through every doubling (from `first`, up to where mremap
 * moves it), and frees cleanly. */
static void
test_grow_aligned_keeps_records (void)
{
  guint64 *a = NULL;
  guint cap = 0, n = 0;
  for (guint i = 0; i < 3000000; i++)
    {
      if (n == cap)
        {
          a = util_grow_aligned (a, &cap, n, sizeof *a, 100);
          CU_ASSERT_EQUAL ((guintptr) a % 64, 0);
          CU_ASSERT (cap >= n + 1);
          guint bad = 0;
          for (guint k = 0; k < n; k++)
            bad += a[k] != (guint64) k * 2654435761u;
          CU_ASSERT_EQUAL (bad, 0);
        }
      a[n] = (guint64) n * 2654435761u;
      n++;
    }
  CU_ASSERT_EQUAL (cap, 100u << 15); /* 100, 200, ... doublings */
  util_free_aligned (a, cap, sizeof *a);
  util_free_aligned (NULL, 0, sizeof *a); /* nothing to free */
}

/* The radix heap pops the least key, against a multiset kept beside it, as
 * entries are pushed (never below the last key popped, as the solver's
 * shares: many ties, or any scale) and popped in turn; equal keys pop last
 * in, first out; a reset empties it for reuse. */
static void
test_radix_heap_pops_the_least (void)
{
  RadixHeap h = { 0 };
  GRand *r = g_rand_new_with_seed (11);
  for (guint round = 0; round < 200; round++)
    {
      double lo = round % 2 ? 0.0 : g_rand_double_range (r, 0.0, 5.0);
      radix_heap_reset (&h, lo);
      GArray *keys = g_array_new (FALSE, FALSE, sizeof (double));
      GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint));
      double last = lo;
      guint next_id = 0;
      for (guint step = 0; step < 600; step++)
        {
          if (keys->len == 0 || g_rand_double (r) < 0.55)
            {
              /* any scale; a few values (ties); or keys a few units in the
               * last places apart (shares of links that fixed nearly the
               * same flows: they differ in their low digits only) */
              double k = round % 3 == 0   ? last * g_rand_double_range (r, 1.0, 1e3) + g_rand_double (r)
                         : round % 3 == 1 ? floor (last) + (double) g_rand_int_range (r, 0, 4)
                                          : (lo + 1.0) * (1.0 + 1e-13 * g_rand_int_range (r, 0, 64)) + last * 1e-15;
              k = MAX (k, last);
              radix_heap_push (&h, k, next_id);
              g_array_append_val (keys, k);
              g_array_append_val (ids, next_id);
              next_id++;
              continue;
            }
          double least = g_array_index (keys, double, 0);
          for (guint i = 1; i < keys->len; i++)
            least = MIN (least, g_array_index (keys, double, i));
          double k = -1.0;
          guint id = G_MAXUINT, at = G_MAXUINT;
          CU_ASSERT_FATAL (radix_heap_pop (&h, &k, &id));
          CU_ASSERT_EQUAL (k, least);
          for (guint i = 0; i < ids->len; i++)
            if (g_array_index (ids, guint, i) == id)
              at = i;
          CU_ASSERT_FATAL (at != G_MAXUINT);
          CU_ASSERT_EQUAL (g_array_index (keys, double, at), k);
          /* of the entries with the least key, the last pushed (ids grow
           * with every push) */
          for (guint i = 0; i < ids->len; i++)
            if (g_array_index (keys, double, i) == k)
              CU_ASSERT (g_array_index (ids, guint, i) <= id);
          g_array_remove_index (keys, at);
          g_array_remove_index (ids, at);
          last = k;
        }
      CU_ASSERT_EQUAL (h.size, keys->len);
      g_array_free (keys, TRUE);
      g_array_free (ids, TRUE);
    }
  double k = 0.0;
  guint id = G_MAXUINT;
  radix_heap_reset (&h, 0.0);
  CU_ASSERT_FALSE (radix_heap_pop (&h, &k, &id));
  radix_heap_push (&h, 7.0, 9);
  for (guint i = 0; i < 3; i++)
    radix_heap_push (&h, 2.5, i);
  for (guint i = 3; i-- > 0;)
    {
      CU_ASSERT (radix_heap_pop (&h, &k, &id));
      CU_ASSERT_EQUAL (id, i); /* ties: last in, first out */
    }
  CU_ASSERT (radix_heap_pop (&h, &k, &id) && id == 9 && k == 7.0);
  g_rand_free (r);
  radix_heap_clear (&h);
}

/* Events whose seqs are reserved when they would have been pushed, and
 * pushed later (before they are due), one by one or as a batch in seq
 * order, pop exactly as if pushed then: against a queue where they were. */
static void
test_reserved_seqs_pop_in_place (void)
{
  g_autoptr (SimQueue) a = sim_queue_new ();
  g_autoptr (SimQueue) b = sim_queue_new ();
  GRand *r = g_rand_new_with_seed (13);
  static SimEvent late[400];
  guint64 id = 0;
  guint popped = 0, bad = 0;
  for (guint round = 0; round < 400; round++)
    {
      SimTime now = sim_queue_now (a);
      /* some pushed at once to both, the others reserved in b */
      guint n = (guint) g_rand_int_range (r, 0, 400), n_late = 0;
      guint64 seq = sim_queue_reserve (b, 0);
      for (guint i = 0; i < n; i++)
        {
          /* times from a few values: many ties */
          SimTime t = now + g_rand_int_range (r, 0, 8) * 1000;
          sim_queue_push (a, t, 1, 0, id);
          if (g_rand_int_range (r, 0, 3) == 0)
            sim_queue_push (b, t, 1, 0, id);
          else
            late[n_late++] = (SimEvent) { t, sim_queue_reserve (b, 1), 1, 0, id };
          id++;
        }
      CU_ASSERT (n_late == 0 || late[0].seq >= seq);
      if (round % 2)
        sim_queue_push_batch_seq (b, late, n_late);
      else
        for (guint i = n_late; i-- > 0;) /* one by one, in any order */
          sim_queue_push_seq (b, late[i].time, late[i].seq, late[i].kind, late[i].gen, late[i].id);
      CU_ASSERT_EQUAL (sim_queue_length (a), sim_queue_length (b));
      guint pops = (guint) g_rand_int_range (r, 0, 400);
      for (guint k = 0; k < pops && sim_queue_length (a) > 0; k++)
        {
          SimEvent x, y;
          sim_queue_pop (a, &x);
          sim_queue_pop (b, &y);
          bad += x.time != y.time || x.id != y.id || x.seq != y.seq;
          CU_ASSERT_EQUAL (sim_queue_seq_floor (b), y.seq + 1);
          popped++;
        }
    }
  drain_both (a, b, bad, popped);
  g_rand_free (r);
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_orders_by_time),
    TEST (test_equal_time_in_schedule_order),
    TEST (test_batches_pop_as_singles),
    TEST (test_reserved_seqs_pop_in_place),
    TEST (test_peek_ahead_names_later_batch_events),
    TEST (test_scheduling_into_past_asserts),
    TEST (test_time_conversion_rounds_up),
    TEST (test_free_ids_lowest_first),
    TEST (test_grow_aligned_keeps_records),
    TEST (test_radix_heap_pops_the_least),
  };
  return test_main ("evq", tests, G_N_ELEMENTS (tests));
}
