/* Small containers shared by the engine and the solver: amortised array
 * growth and a FIFO of ids (a ring that doubles when full). Both grow to a
 * run's peak and are then reused without allocating. */
#pragma once

#include <glib.h>

/* Ensures `arr` (with capacity `capv`) holds at least `need` elements. */
#define UTIL_GROW(arr, capv, need)                                                                 \
  do                                                                                               \
    {                                                                                              \
      if ((need) > (capv))                                                                         \
        {                                                                                          \
          guint nc_ = (capv) ? (capv) : 16;                                                        \
          while (nc_ < (need))                                                                     \
            nc_ *= 2;                                                                              \
          (arr) = g_realloc_n ((arr), nc_, sizeof *(arr));                                         \
          (capv) = nc_;                                                                            \
        }                                                                                          \
    }                                                                                              \
  while (0)

typedef struct {
  guint *items;
  guint head, len, cap;
} IdFifo;

static inline void
id_fifo_push (IdFifo *q, guint id)
{
  if (q->len == q->cap)
    {
      guint nc = q->cap ? 2 * q->cap : 16;
      guint *n = g_new (guint, nc);
      for (guint i = 0; i < q->len; i++)
        n[i] = q->items[(q->head + i) % q->cap];
      g_free (q->items);
      q->items = n;
      q->head = 0;
      q->cap = nc;
    }
  q->items[(q->head + q->len) % q->cap] = id;
  q->len++;
}

static inline guint
id_fifo_pop (IdFifo *q)
{
  g_assert (q->len > 0);
  guint id = q->items[q->head];
  q->head = (q->head + 1) % q->cap;
  q->len--;
  return id;
}

static inline void
id_fifo_clear (IdFifo *q)
{
  g_clear_pointer (&q->items, g_free);
  q->head = q->len = q->cap = 0;
}
