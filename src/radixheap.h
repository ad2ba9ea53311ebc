/* A radix heap of (key, id) with non-negative double keys that never fall
 * below the last key popped, as in the flow solver's progressive filling
 * (shares only grow). A positive double's bits, read as an integer, order
 * like the double; an entry sits in the bucket of the highest bit in which
 * its key differs from the last popped one (bucket 0: equal). Popping takes
 * from bucket 0, or first empties the lowest other bucket into lower ones
 * around its least key: each entry moves down at most 64 times in all, and
 * in practice a few, against the log2(n) matches a tree pays on every pop.
 * Entries with equal keys pop last in, first out: an order fixed by the
 * pushes, so the same pushes give the same pops. The buckets keep their
 * room between uses. */
#pragma once

#include <glib.h>
#include <string.h>

typedef struct {
  guint64 key; /* the double's bits */
  guint id;
} RadixEntry;

typedef struct {
  RadixEntry *e[65];
  guint n[65], cap[65];
  guint64 mask; /* bit b - 1: bucket b (1..64) not empty */
  guint64 last;
  guint size;
} RadixHeap;

static inline guint64
radix_heap_bits (double key)
{
  guint64 b;
  memcpy (&b, &key, sizeof b);
  return b;
}

static inline double
radix_heap_key (guint64 bits)
{
  double k;
  memcpy (&k, &bits, sizeof k);
  return k;
}

/* Empties the heap; the next keys may start anywhere at or above `floor`. */
static inline void
radix_heap_reset (RadixHeap *h, double floor)
{
  for (guint b = 0; b < 65; b++)
    h->n[b] = 0;
  h->mask = 0;
  h->size = 0;
  h->last = radix_heap_bits (floor);
}

static inline void
radix_heap_put (RadixHeap *h, guint b, guint64 key, guint id)
{
  if (h->n[b] == h->cap[b])
    {
      h->cap[b] = MAX (16u, 2 * h->cap[b]);
      h->e[b] = g_renew (RadixEntry, h->e[b], h->cap[b]);
    }
  h->e[b][h->n[b]++] = (RadixEntry) { key, id };
  if (b > 0)
    h->mask |= G_GUINT64_CONSTANT (1) << (b - 1);
}

static inline guint
radix_heap_bucket (const RadixHeap *h, guint64 key)
{
  guint64 x = key ^ h->last;
  return x == 0 ? 0 : 64 - (guint) __builtin_clzll (x);
}

/* Adds `id` with `key` (not below the last key popped, not NaN). */
static inline void
radix_heap_push (RadixHeap *h, double key, guint id)
{
  guint64 k = radix_heap_bits (key);
  g_assert (k >= h->last);
  radix_heap_put (h, radix_heap_bucket (h, k), k, id);
  h->size++;
}

/* Takes an entry with the least key into *key and *id; FALSE when empty. */
static inline gboolean
radix_heap_pop (RadixHeap *h, double *key, guint *id)
{
  if (h->size == 0)
    return FALSE;
  if (h->n[0] == 0)
    {
      guint b = (guint) __builtin_ctzll (h->mask) + 1;
      RadixEntry *e = h->e[b];
      guint n = h->n[b];
      guint64 least = e[0].key;
      for (guint i = 1; i < n; i++)
        least = MIN (least, e[i].key);
      h->last = least;
      h->n[b] = 0;
      h->mask &= ~(G_GUINT64_CONSTANT (1) << (b - 1));
      for (guint i = 0; i < n; i++)
        radix_heap_put (h, radix_heap_bucket (h, e[i].key), e[i].key, e[i].id);
    }
  RadixEntry x = h->e[0][--h->n[0]];
  h->size--;
  *key = radix_heap_key (x.key);
  *id = x.id;
  return TRUE;
}

static inline void
radix_heap_clear (RadixHeap *h)
{
  for (guint b = 0; b < 65; b++)
    g_clear_pointer (&h->e[b], g_free);
  memset (h, 0, sizeof *h);
}
