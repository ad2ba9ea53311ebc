/* Small containers shared by the engine and the solver: amortised array
 * growth (also of 64-byte aligned arrays), a FIFO of ids (a ring that
 * doubles when full) and a set of free slot ids taken lowest first. All
 * grow to a run's peak and are then reused without allocating. And the
 * lower CPU priority of helper threads. */
#pragma once

#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Arrays of cache-line records, 64-byte aligned: whole pages of their
 * own (mmap), which a doubling moves without copying (mremap, Linux: the
 * pages are remapped, so the old and the new array never take memory
 * together, as realloc does for large blocks); elsewhere an aligned copy.
 * The bytes an array of `cap` records of `elem` bytes takes: */
static inline gsize
util_aligned_bytes (guint cap, gsize elem)
{
  gsize page = (gsize) sysconf (_SC_PAGESIZE);
  return ((gsize) cap * elem + page - 1) / page * page;
}

/* Doubles such an array (an empty one gets `first` records), keeping its
 * first `used` records (the rest are zero on Linux). Returns the new
 * array (free it with util_free_aligned). */
static inline void *
util_grow_aligned (void *arr, guint *cap, guint used, gsize elem, guint first)
{
  guint nc = *cap ? 2 * *cap : first;
  void *n;
#ifdef __linux__
  (void) used;
  if (arr == NULL)
    n = mmap (NULL, util_aligned_bytes (nc, elem), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  else
    n = mremap (arr, util_aligned_bytes (*cap, elem), util_aligned_bytes (nc, elem), MREMAP_MAYMOVE);
  if (n == MAP_FAILED)
    g_error ("out of memory for %u records of %" G_GSIZE_FORMAT " bytes", nc, elem);
#else
  n = NULL;
  if (posix_memalign (&n, 64, (gsize) nc * elem) != 0)
    g_error ("out of memory for %u records of %" G_GSIZE_FORMAT " bytes", nc, elem);
  if (arr)
    memcpy (n, arr, (gsize) used * elem);
  free (arr);
#endif
  *cap = nc;
  return n;
}

/* Frees an array of util_grow_aligned (`cap` records of `elem` bytes). */
static inline void
util_free_aligned (void *arr, guint cap, gsize elem)
{
  if (arr == NULL)
    return;
#ifdef __linux__
  munmap (arr, util_aligned_bytes (cap, elem));
#else
  (void) cap;
  (void) elem;
  free (arr);
#endif
}

/* Lowers the calling thread's CPU priority (Linux: a nice value per
 * thread) for helpers of a run's main thread, which sets the pace, so that
 * where cores are few it is not the one that waits:
 * UTIL_NICE_AHEAD for work the main thread will wait for (routing made
 * ahead of it), UTIL_NICE_BEHIND for work needed only once it is done (the
 * counterfactual), which then yields to the first. On 2 cores the EP64
 * training step's run waited 0.07-0.17 s for routing with both at 10, 0.02 s
 * with 5 and 19 (wall 1.77-1.87 s against 1.68-1.78 s, 8 runs each). A
 * failure only leaves the priority as it was. */
enum { UTIL_NICE_AHEAD = 5, UTIL_NICE_BEHIND = 19 };

static inline void
util_thread_background (int nice)
{
#ifdef SYS_gettid
  (void) setpriority (PRIO_PROCESS, (id_t) syscall (SYS_gettid), nice);
#else
  (void) nice;
#endif
}

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
        n[i] = q->items[(q->head + i) & (q->cap - 1)];
      g_free (q->items);
      q->items = n;
      q->head = 0;
      q->cap = nc;
    }
  q->items[(q->head + q->len) & (q->cap - 1)] = id; /* cap: a power of two */
  q->len++;
}

static inline guint
id_fifo_pop (IdFifo *q)
{
  g_assert (q->len > 0);
  guint id = q->items[q->head];
  q->head = (q->head + 1) & (q->cap - 1);
  q->len--;
  return id;
}

/* The k-th id in line (k < len), without taking it. */
static inline guint
id_fifo_peek (const IdFifo *q, guint k)
{
  return q->items[(q->head + k) & (q->cap - 1)];
}

static inline void
id_fifo_clear (IdFifo *q)
{
  g_clear_pointer (&q->items, g_free);
  q->head = q->len = q->cap = 0;
}

/* Free slot ids, a bit each, taken lowest first: slots allocated together
 * sit together in memory whatever order earlier ones were freed in (a stack
 * of freed ids would hand them out scattered). A summary bit per word of
 * ids says which words hold a free one, so finding the lowest reads at most
 * one summary word per 4096 ids. */
typedef struct {
  guint64 *bits; /* bit i of word w: id 64 w + i is free */
  guint64 *sum;  /* bit j of word g: word 64 g + j has a free id */
  guint n_words;
  guint hint; /* no free id in a word below this */
  guint n_free;
} FreeIds;

/* Takes the lowest free id into *id; FALSE when none is free. */
static inline gboolean
free_ids_take (FreeIds *f, guint *id)
{
  if (f->n_free == 0)
    return FALSE;
  guint g = f->hint / 64;
  while (f->sum[g] == 0)
    g++;
  guint w = g * 64 + (guint) __builtin_ctzll (f->sum[g]);
  *id = w * 64 + (guint) __builtin_ctzll (f->bits[w]);
  f->bits[w] &= f->bits[w] - 1;
  if (f->bits[w] == 0)
    f->sum[g] &= ~((guint64) 1 << (w % 64));
  f->hint = w;
  f->n_free--;
  return TRUE;
}

static inline void
free_ids_put (FreeIds *f, guint id)
{
  guint w = id / 64;
  if (w >= f->n_words)
    {
      guint nw = f->n_words ? f->n_words : 64;
      while (nw <= w)
        nw *= 2;
      f->bits = g_realloc_n (f->bits, nw, sizeof (guint64));
      memset (f->bits + f->n_words, 0, (nw - f->n_words) * sizeof (guint64));
      f->sum = g_realloc_n (f->sum, nw / 64, sizeof (guint64));
      memset (f->sum + f->n_words / 64, 0, (nw - f->n_words) / 64 * sizeof (guint64));
      f->n_words = nw;
    }
  g_assert (!(f->bits[w] >> (id % 64) & 1));
  f->bits[w] |= (guint64) 1 << (id % 64);
  f->sum[w / 64] |= (guint64) 1 << (w % 64);
  f->hint = MIN (f->hint, w);
  f->n_free++;
}

static inline void
free_ids_clear (FreeIds *f)
{
  g_clear_pointer (&f->bits, g_free);
  g_clear_pointer (&f->sum, g_free);
  f->n_words = f->hint = f->n_free = 0;
}
