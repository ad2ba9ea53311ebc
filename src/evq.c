/* Binary heap keyed by (time, seq). The heap array grows by doubling and is
 * never shrunk, so steady-state scheduling does not allocate.
 *
 * A batch (sim_queue_push_batch_seq) is kept as a run: its events sorted
 * by (time, seq) in an array of their own, with one heap entry (kind RUN,
 * id the run) keyed by the run's next event. Pops come out in the same order
 * as if the events had been pushed one by one, while the heap holds one
 * entry per batch rather than thousands. */
#include "evq.h"

#include <stdlib.h>
#include <string.h>

#define RUN G_MAXUINT32

typedef struct {
  SimEvent *ev;
  gsize len, pos, cap;
  guint next_free;
} Run;

struct SimQueue {
  guint64 *keys, *keys2; /* scratch for sorting a batch */
  gsize cap_keys;
  SimEvent *heap;
  gsize len;
  gsize cap;
  gsize count; /* events queued, runs' included */
  uint64_t next_seq;
  SimTime now;
  uint64_t seq_floor; /* one past the last popped event's seq */
  Run *runs;
  guint n_runs, cap_runs, free_run; /* free runs: a list through next_free */
};

SimQueue *
sim_queue_new (void)
{
  SimQueue *q = g_new0 (SimQueue, 1);
  q->free_run = G_MAXUINT;
  q->cap = 256;
  q->heap = g_new (SimEvent, q->cap);
  return q;
}

void
sim_queue_free (SimQueue *q)
{
  if (q == NULL)
    return;
  g_free (q->heap);
  for (guint i = 0; i < q->n_runs; i++)
    g_free (q->runs[i].ev);
  g_free (q->runs);
  g_free (q->keys);
  g_free (q->keys2);
  g_free (q);
}

static inline gboolean
ev_before (const SimEvent *a, const SimEvent *b)
{
  return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void
heap_insert (SimQueue *q, SimEvent ev)
{
  if (q->len == q->cap)
    {
      q->cap *= 2;
      q->heap = g_renew (SimEvent, q->heap, q->cap);
    }
  gsize i = q->len++;
  while (i > 0)
    {
      gsize parent = (i - 1) / 2;
      if (!ev_before (&ev, &q->heap[parent]))
        break;
      q->heap[i] = q->heap[parent];
      i = parent;
    }
  q->heap[i] = ev;
}

void
sim_queue_push (SimQueue *q, SimTime time, uint32_t kind, uint32_t gen, uint64_t id)
{
  g_assert (time >= q->now);
  g_assert (kind != RUN);
  heap_insert (q, (SimEvent) { time, q->next_seq++, kind, gen, id });
  q->count++;
}

uint64_t
sim_queue_reserve (SimQueue *q, gsize n)
{
  uint64_t first = q->next_seq;
  q->next_seq += n;
  return first;
}

void
sim_queue_push_seq (SimQueue *q, SimTime time, uint64_t seq, uint32_t kind, uint32_t gen, uint64_t id)
{
  g_assert (time > q->now || (time == q->now && seq >= q->seq_floor));
  g_assert (seq < q->next_seq);
  g_assert (kind != RUN);
  heap_insert (q, (SimEvent) { time, seq, kind, gen, id });
  q->count++;
}

static int
cmp_event (const void *a, const void *b)
{
  const SimEvent *x = a, *y = b;
  if (x->time != y->time)
    return x->time < y->time ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A free run with room for n events. */
static guint
run_take (SimQueue *q, gsize n)
{
  guint ri;
  if (q->free_run != G_MAXUINT)
    {
      ri = q->free_run;
      q->free_run = q->runs[ri].next_free;
    }
  else
    {
      if (q->n_runs == q->cap_runs)
        {
          q->cap_runs = q->cap_runs ? 2 * q->cap_runs : 16;
          q->runs = g_renew (Run, q->runs, q->cap_runs);
        }
      ri = q->n_runs++;
      q->runs[ri] = (Run) { NULL, 0, 0, 0, G_MAXUINT };
    }
  Run *r = &q->runs[ri];
  if (n > r->cap)
    {
      r->cap = MAX (n, 2 * r->cap);
      r->ev = g_renew (SimEvent, r->ev, r->cap);
    }
  return ri;
}

/* Fills run r with evs[0 .. n) sorted by (time, array order), stable:
 * by (time, seq) when the array is in order of seq. */
static void
run_sort (SimQueue *q, Run *r, const SimEvent *evs, gsize n)
{
  gboolean sorted = TRUE;
  SimTime lo = evs[0].time, hi = evs[0].time;
  for (gsize i = 0; i < n; i++)
    {
      sorted = sorted && (i == 0 || evs[i].time >= evs[i - 1].time);
      lo = MIN (lo, evs[i].time);
      hi = MAX (hi, evs[i].time);
    }
  if (sorted)
    memcpy (r->ev, evs, n * sizeof *evs);
  else if (hi - lo < ((SimTime) 1 << 32) && n < ((gsize) 1 << 32))
    {
      /* by (time, array order): a radix sort of (time - lo) << 32 | i on
       * its high half, stable */
      if (n > q->cap_keys)
        {
          q->cap_keys = MAX (n, 2 * q->cap_keys);
          q->keys = g_renew (guint64, q->keys, q->cap_keys);
          q->keys2 = g_renew (guint64, q->keys2, q->cap_keys);
        }
      guint64 *a = q->keys, *b = q->keys2;
      for (gsize i = 0; i < n; i++)
        a[i] = ((guint64) (evs[i].time - lo) << 32) | i;
      if (n <= 64) /* few: insertion sort on the whole key */
        for (gsize i = 1; i < n; i++)
          {
            guint64 k = a[i];
            gsize j = i;
            for (; j > 0 && a[j - 1] > k; j--)
              a[j] = a[j - 1];
            a[j] = k;
          }
      /* digits of 8 bits for a few thousand events (the counts stay
       * small against them), of 11 for more; none above the span */
      guint bits = n < 4096 ? 8 : 11, radix = 1u << bits;
      gsize count[2048];
      for (guint shift = 32; shift < 64 && n > 64 && ((guint64) (hi - lo) >> (shift - 32)) != 0; shift += bits)
        {
          memset (count, 0, radix * sizeof count[0]);
          for (gsize i = 0; i < n; i++)
            count[(a[i] >> shift) & (radix - 1)]++;
          gsize sum = 0;
          for (guint d = 0; d < radix; d++)
            {
              gsize c = count[d];
              count[d] = sum;
              sum += c;
            }
          for (gsize i = 0; i < n; i++)
            b[count[(a[i] >> shift) & (radix - 1)]++] = a[i];
          guint64 *t = a;
          a = b;
          b = t;
        }
      for (gsize i = 0; i < n; i++)
        r->ev[i] = evs[a[i] & 0xffffffffu];
    }
  else
    {
      memcpy (r->ev, evs, n * sizeof *evs);
      qsort (r->ev, n, sizeof *r->ev, cmp_event);
    }
}

/* Run ri, its n events sorted, takes its place in the heap. */
static void
run_insert (SimQueue *q, guint ri, gsize n)
{
  Run *r = &q->runs[ri];
  r->len = n;
  r->pos = 0;
  heap_insert (q, (SimEvent) { r->ev[0].time, r->ev[0].seq, RUN, 0, ri });
  q->count += n;
}

void
sim_queue_push_batch_seq (SimQueue *q, const SimEvent *evs, gsize n)
{
  if (n == 0)
    return;
  for (gsize i = 0; i < n; i++)
    {
      g_assert (evs[i].time > q->now || (evs[i].time == q->now && evs[i].seq >= q->seq_floor));
      g_assert (evs[i].seq < q->next_seq && evs[i].kind != RUN);
      g_assert (i == 0 || evs[i].seq > evs[i - 1].seq);
    }
  guint ri = run_take (q, n);
  run_sort (q, &q->runs[ri], evs, n);
  run_insert (q, ri, n);
}

/* Restores the heap below the top after heap[0] grew (or was replaced). */
static void
sift_down_top (SimQueue *q, SimEvent last)
{
  gsize i = 0;
  for (;;)
    {
      gsize l = 2 * i + 1;
      if (l >= q->len)
        break;
      gsize c = (l + 1 < q->len && ev_before (&q->heap[l + 1], &q->heap[l])) ? l + 1 : l;
      if (!ev_before (&q->heap[c], &last))
        break;
      q->heap[i] = q->heap[c];
      i = c;
    }
  if (q->len > 0)
    q->heap[i] = last;
}

gboolean
sim_queue_pop (SimQueue *q, SimEvent *out)
{
  if (q->len == 0)
    return FALSE;
  SimEvent top = q->heap[0];
  if (top.kind == RUN)
    {
      Run *r = &q->runs[top.id];
      *out = r->ev[r->pos++];
      if (r->pos < r->len)
        {
          /* the run's next event takes its place: sift it down */
          top.time = r->ev[r->pos].time;
          top.seq = r->ev[r->pos].seq;
          q->heap[0] = top;
          sift_down_top (q, top);
        }
      else
        {
          r->next_free = q->free_run;
          q->free_run = (guint) top.id;
          sift_down_top (q, q->heap[--q->len]);
        }
    }
  else
    {
      *out = top;
      sift_down_top (q, q->heap[--q->len]);
    }
  q->now = out->time;
  q->seq_floor = out->seq + 1;
  q->count--;
  return TRUE;
}

SimTime
sim_queue_peek_time (const SimQueue *q)
{
  return q->len ? q->heap[0].time : SIM_TIME_MAX;
}

uint64_t
sim_queue_peek_id (const SimQueue *q)
{
  g_assert (q->len > 0);
  const SimEvent *top = &q->heap[0];
  return top->kind == RUN ? q->runs[top->id].ev[q->runs[top->id].pos].id : top->id;
}

uint64_t
sim_queue_peek_id_ahead (const SimQueue *q, gsize k)
{
  if (q->len == 0 || q->heap[0].kind != RUN)
    return G_MAXUINT64;
  const Run *r = &q->runs[q->heap[0].id];
  return r->pos + k < r->len ? r->ev[r->pos + k].id : G_MAXUINT64;
}

gsize
sim_queue_length (const SimQueue *q)
{
  return q->count;
}

SimTime
sim_queue_now (const SimQueue *q)
{
  return q->now;
}

uint64_t
sim_queue_seq_floor (const SimQueue *q)
{
  return q->seq_floor;
}
