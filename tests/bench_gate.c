/* Benchmark: the CPU gate at DeepSeek-V3's shape (H 7168, E 256, top-8 with
 * groups): logits GEMM GFLOP/s and tokens/s of the whole gate, against a
 * BLAS sgemm of the same size when one was found at build time. */
#include "gate.h"

#include <stdio.h>
#if HAVE_BLAS
#include <cblas.h>
#endif

static double
now (void)
{
  return g_get_monotonic_time () / 1e6;
}

int
main (void)
{
  const GateConfig *g = gate_preset ("deepseek-v3");
  const guint64 T = 4096;
  float *x = g_new (float, T * g->hidden);
  float *w = g_new (float, (gsize) g->experts * g->hidden);
  GateSynth syn = gate_synth_default;
  gate_synth_hidden (&syn, g->hidden, T, x, 0);
  gate_synth_weight (&syn, 0, g->experts, g->hidden, w);
  float *logits = g_new (float, T * g->experts);
  gint32 *ids = g_new (gint32, T * g->top_k);
  float *wts = g_new (float, T * g->top_k);
  double flops = 2.0 * T * g->experts * g->hidden;
  printf ("moesim CPU gate benchmark: T %" G_GUINT64_FORMAT ", H %u, E %u, top-%u, groups %u/%u, %u cores\n",
          T, g->hidden, g->experts, g->top_k, g->n_group, g->topk_group, g_get_num_processors ());
  /* the GEMM and BLAS's sgemm in alternation, after a call of each to
   * warm up: on a shared machine a slow spell then hits both, not one */
  gate_logits (x, T, w, g->experts, g->hidden, logits, 0, GATE_IMPL_AUTO);
#if HAVE_BLAS
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) T, (int) g->experts, (int) g->hidden, 1.0f, x,
               (int) g->hidden, w, (int) g->hidden, 0.0f, logits, (int) g->experts);
  double blas = 1e9;
#endif
  double best = 1e9;
  for (int r = 0; r < 5; r++)
    {
      double t0 = now ();
      gate_logits (x, T, w, g->experts, g->hidden, logits, 0, GATE_IMPL_AUTO);
      best = MIN (best, now () - t0);
#if HAVE_BLAS
      t0 = now ();
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) T, (int) g->experts, (int) g->hidden,
                   1.0f, x, (int) g->hidden, w, (int) g->hidden, 0.0f, logits, (int) g->experts);
      blas = MIN (blas, now () - t0);
#endif
    }
  printf ("  logits GEMM (moesim, fastest kernel):  %7.1f ms  %6.1f GFLOP/s\n", best * 1e3, flops / best / 1e9);
  double t0 = now ();
  gate_logits (x, 256, w, g->experts, g->hidden, logits, 0, GATE_IMPL_PORTABLE);
  double port = (now () - t0) * T / 256;
  printf ("  logits GEMM (moesim, portable C):     %7.1f ms  %6.1f GFLOP/s (extrapolated from 256 tokens)\n",
          port * 1e3, flops / port / 1e9);
  double route = 1e9;
  for (int r = 0; r < 3; r++)
    {
      t0 = now ();
      gate_route (g, x, T, w, NULL, ids, wts, 0);
      route = MIN (route, now () - t0);
    }
  printf ("  whole gate (GEMM + selection):        %7.1f ms  %8.0f tokens/s\n", route * 1e3, T / route);
#if HAVE_BLAS
  printf ("  BLAS sgemm, same size (reference):    %7.1f ms  %6.1f GFLOP/s\n", blas * 1e3, flops / blas / 1e9);
  printf ("  moesim GEMM / BLAS time: %.2fx (target <= 2x; best of 5 each, in alternation)%s\n", best / blas,
          best / blas <= 2.0 ? "  [target met]" : "  [TARGET MISSED]");
#else
  printf ("  (no BLAS found at build time: no reference sgemm)\n");
#endif
  g_free (x);
  g_free (w);
  g_free (logits);
  g_free (ids);
  g_free (wts);
  return 0;
}
