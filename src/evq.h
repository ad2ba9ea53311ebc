/* Event queue: a binary min-heap of small event values.
 *
 * Events are ordered by (time, seq) where seq is the order of scheduling, so
 * events that fall on the same tick run in the order they were scheduled and a
 * run is reproducible bit for bit. Scheduling into the past is a caller bug
 * and asserts. Cancellation is by generation: the owner of an event stores a
 * generation number in it and ignores the event when it pops with a stale one.
 */
#pragma once

#include "simtime.h"

typedef struct {
  SimTime time;
  uint64_t seq;
  uint32_t kind; /* index into the owner's handler table */
  uint32_t gen;  /* owner's generation, for cancellation */
  uint64_t id;   /* owner's object id */
} SimEvent;

typedef struct SimQueue SimQueue;

SimQueue *sim_queue_new (void);
void sim_queue_free (SimQueue *q);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SimQueue, sim_queue_free)

/* Schedules an event at `time` (>= the time of the last popped event). */
void sim_queue_push (SimQueue *q, SimTime time, uint32_t kind, uint32_t gen, uint64_t id);
/* Takes n consecutive seqs for events scheduled later with
 * sim_queue_push_seq (in the order they would have been pushed now);
 * returns the first. */
uint64_t sim_queue_reserve (SimQueue *q, gsize n);
/* Schedules an event with a seq taken by sim_queue_reserve: it pops where
 * it would have had it been pushed then. (time, seq) must come after the
 * last popped event (seq at least sim_queue_seq_floor at the same time). */
void sim_queue_push_seq (SimQueue *q, SimTime time, uint64_t seq, uint32_t kind, uint32_t gen, uint64_t id);
/* The same for n events at once, in increasing order of seq (kind not
 * G_MAXUINT32): they pop exactly as if pushed one by one, but hold one
 * heap entry between them (for batches of completions). */
void sim_queue_push_batch_seq (SimQueue *q, const SimEvent *evs, gsize n);
/* Pops the earliest event into *ev; FALSE when empty. */
gboolean sim_queue_pop (SimQueue *q, SimEvent *ev);
/* Time of the earliest event, SIM_TIME_MAX when empty. */
SimTime sim_queue_peek_time (const SimQueue *q);
/* Owner's id of the earliest event (to fetch its object ahead); the queue
 * must not be empty. */
uint64_t sim_queue_peek_id (const SimQueue *q);
/* A hint for fetching ahead: when the earliest event is in a batch, the
 * owner's id of the k-th event after it in that batch (which pops later,
 * though other events may come between); G_MAXUINT64 otherwise. */
uint64_t sim_queue_peek_id_ahead (const SimQueue *q, gsize k);
gsize sim_queue_length (const SimQueue *q);
/* Time of the last popped event (the queue's notion of now). */
SimTime sim_queue_now (const SimQueue *q);
/* One past the seq of the last popped event (0 before the first pop): an
 * event at the current time with a lower seq would have popped already. */
uint64_t sim_queue_seq_floor (const SimQueue *q);
