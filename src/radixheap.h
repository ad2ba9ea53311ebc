/* A radix heap of (key, id) with non-negative double keys that never fall
 * below the last key popped, as in the flow solver's progressive filling
 * (shares only grow). A positive double's bits, read as an integer, order
 * like the double. Digits are a byte wide: an entry sits in the bucket of
 * the highest digit in which its key differs from the last popped one and
 * of its key's value in that digit (bucket 0: equal), so the buckets, in
 * index order, hold ever greater keys. Popping takes from bucket 0, or
 * first empties the lowest other bucket into lower ones around its least
 * key: each entry moves down at most 8 times in all. The solver's shares
 * sit close together and differ in their low digits, so its entries still
 * move 4.6 times each on average (7.6 times with one-bit digits, as this
 * heap had before, in the EP256 training step). Entries with equal keys
 * sit in one bucket, in the order they came: they pop last in, first out,
 * an order fixed by the pushes, so the same pushes give the same pops. The
 * buckets keep their room between uses. */
#pragma once

#include <glib.h>
#include <string.h>

#define RADIX_DIGIT_BITS 8
#define RADIX_DIGITS (64 / RADIX_DIGIT_BITS)
#define RADIX_VALUES (1u << RADIX_DIGIT_BITS)
/* bucket 0, then one per (digit, value) */
#define RADIX_BUCKETS (1 + RADIX_DIGITS * RADIX_VALUES)
#define RADIX_MASK_WORDS ((RADIX_BUCKETS - 1 + 63) / 64)

typedef struct {
  guint64 key; /* the double's bits */
  guint id;
} RadixEntry;

typedef struct {
  RadixEntry *e[RADIX_BUCKETS];
  guint n[RADIX_BUCKETS], cap[RADIX_BUCKETS];
  guint64 mask[RADIX_MASK_WORDS]; /* bit b - 1: bucket b (1..) not empty */
  guint64 words; /* bit w: mask[w] not 0 */
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
  h->n[0] = 0;
  for (guint64 ws = h->words; ws != 0; ws &= ws - 1)
    {
      guint w = (guint) __builtin_ctzll (ws);
      for (guint64 m = h->mask[w]; m != 0; m &= m - 1)
        h->n[1 + 64 * w + (guint) __builtin_ctzll (m)] = 0;
      h->mask[w] = 0;
    }
  h->words = 0;
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
    {
      h->mask[(b - 1) / 64] |= G_GUINT64_CONSTANT (1) << ((b - 1) % 64);
      h->words |= G_GUINT64_CONSTANT (1) << ((b - 1) / 64);
    }
}

/* The bucket of `key` (not below last): 0 when equal, else 1 + the number
 * of digit values x the highest digit in which they differ + the key's
 * value there. */
static inline guint
radix_heap_bucket (const RadixHeap *h, guint64 key)
{
  guint64 x = key ^ h->last;
  if (x == 0)
    return 0;
  guint d = (63 - (guint) __builtin_clzll (x)) / RADIX_DIGIT_BITS;
  return 1 + d * RADIX_VALUES + (guint) ((key >> (d * RADIX_DIGIT_BITS)) & (RADIX_VALUES - 1));
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
      guint w = (guint) __builtin_ctzll (h->words);
      guint b = 1 + 64 * w + (guint) __builtin_ctzll (h->mask[w]);
      RadixEntry *e = h->e[b];
      guint n = h->n[b];
      guint64 least = e[0].key;
      for (guint i = 1; i < n; i++)
        least = MIN (least, e[i].key);
      h->last = least;
      h->n[b] = 0;
      h->mask[w] &= h->mask[w] - 1;
      if (h->mask[w] == 0)
        h->words &= ~(G_GUINT64_CONSTANT (1) << w);
      /* (into lower buckets only: never into b itself) */
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
  for (guint b = 0; b < RADIX_BUCKETS; b++)
    g_clear_pointer (&h->e[b], g_free);
  memset (h, 0, sizeof *h);
}
