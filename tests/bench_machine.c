/* Benchmark: the state of the machine the other benchmarks run on, so that
 * their figures can be read against it. On a shared virtual machine the
 * memory-bound simulations slow down by up to 2x for minutes at a time
 * while compute-bound work does not (README, Performance): this prints,
 * for each CPU it may run on, the time of one step of a random walk over
 * 4 MB (a last-level cache hit when the cache is ours, a memory access
 * when it is not) and over 64 MB (memory), and of one step of a chain of
 * dependent multiply-adds (the core's own speed). Run before and after the
 * simulation benchmarks (tests/meson.build). Not a test: it measures. */
#include <glib.h>
#include <stdio.h>
#ifdef __linux__
#include <sched.h>
#endif

/* ns per step of a walk over the `lines` cache lines of `next`, one line a
 * step, in a random cycle through every line (make_walk: so no prefetcher
 * can guess the next) */
static double
walk_ns (const guint32 *next, gsize lines)
{
  guint32 p = 0;
  for (gsize i = 0; i < lines; i++) /* once round, to warm what fits */
    p = next[(gsize) p * 16];
  gint64 t0 = g_get_monotonic_time ();
  gsize steps = 0;
  while (g_get_monotonic_time () - t0 < 40000)
    {
      for (int r = 0; r < 4096; r++)
        p = next[(gsize) p * 16];
      steps += 4096;
    }
  volatile guint32 keep = p; /* the walk's result is used: it stays */
  (void) keep;
  return (double) (g_get_monotonic_time () - t0) * 1e3 / (double) steps;
}

static guint32 *
make_walk (gsize lines)
{
  guint32 *next = g_malloc ((gsize) lines * 64);
  guint32 *perm = g_new (guint32, lines);
  for (gsize i = 0; i < lines; i++)
    perm[i] = (guint32) i;
  GRand *r = g_rand_new_with_seed (1);
  for (gsize i = lines - 1; i > 0; i--)
    {
      gsize j = (gsize) g_rand_int_range (r, 0, (gint32) (i + 1));
      guint32 t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  for (gsize i = 0; i < lines; i++)
    next[(gsize) perm[i] * 16] = perm[(i + 1) % lines];
  g_rand_free (r);
  g_free (perm);
  return next;
}

/* ns per step of a chain of dependent multiply-adds */
static double
alu_ns (void)
{
  volatile double seed = 1.0;
  double x = seed;
  gint64 t0 = g_get_monotonic_time ();
  gsize steps = 0;
  while (g_get_monotonic_time () - t0 < 20000)
    {
      for (int r = 0; r < 65536; r++)
        x = x * 0.999999 + 1e-7;
      steps += 65536;
    }
  seed = x;
  return (double) (g_get_monotonic_time () - t0) * 1e3 / (double) steps;
}

int
main (void)
{
  const gsize small = (4u << 20) / 64, large = (64u << 20) / 64;
  guint32 *ws = make_walk (small), *wl = make_walk (large);
  printf ("machine state: ns per step of a random walk over 4 MB / 64 MB, and of a chain of multiply-adds\n");
#ifdef __linux__
  cpu_set_t all;
  CPU_ZERO (&all);
  if (sched_getaffinity (0, sizeof all, &all) != 0)
    {
      perror ("bench_machine: sched_getaffinity");
      return 1;
    }
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    {
      if (!CPU_ISSET (cpu, &all))
        continue;
      cpu_set_t one;
      CPU_ZERO (&one);
      CPU_SET (cpu, &one);
      if (sched_setaffinity (0, sizeof one, &one) != 0)
        continue;
      printf ("  cpu %d: %6.1f / %6.1f ns, %.2f ns\n", cpu, walk_ns (ws, small), walk_ns (wl, large), alu_ns ());
    }
  sched_setaffinity (0, sizeof all, &all);
#else
  printf ("  this cpu: %6.1f / %6.1f ns, %.2f ns\n", walk_ns (ws, small), walk_ns (wl, large), alu_ns ());
#endif
  g_free (ws);
  g_free (wl);
  return 0;
}
