/* Binary heap keyed by (time, seq). The heap array grows by doubling and is
 * never shrunk, so steady-state scheduling does not allocate. */
#include "evq.h"

struct SimQueue {
  SimEvent *heap;
  gsize len;
  gsize cap;
  uint64_t next_seq;
  SimTime now;
};

SimQueue *
sim_queue_new (void)
{
  SimQueue *q = g_new0 (SimQueue, 1);
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
  g_free (q);
}

static inline gboolean
ev_before (const SimEvent *a, const SimEvent *b)
{
  return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

void
sim_queue_push (SimQueue *q, SimTime time, uint32_t kind, uint32_t gen, uint64_t id)
{
  g_assert (time >= q->now);
  if (q->len == q->cap)
    {
      q->cap *= 2;
      q->heap = g_renew (SimEvent, q->heap, q->cap);
    }
  SimEvent ev = { time, q->next_seq++, kind, gen, id };
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

gboolean
sim_queue_pop (SimQueue *q, SimEvent *out)
{
  if (q->len == 0)
    return FALSE;
  *out = q->heap[0];
  q->now = out->time;
  SimEvent last = q->heap[--q->len];
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
  return q->heap[0].id;
}

gsize
sim_queue_length (const SimQueue *q)
{
  return q->len;
}

SimTime
sim_queue_now (const SimQueue *q)
{
  return q->now;
}
