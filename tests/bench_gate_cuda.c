/* Benchmark: the CUDA gate (cuBLAS logits GEMM on tensor cores + selection)
 * at DeepSeek-V3's shape, T = 4096, 16384, 65536 tokens of device-resident
 * bf16 hidden states: microseconds per call and the effective bandwidth of
 * the hidden-state reads against the device's HBM peak, and the GEMM and
 * the selection timed alone. Prints a skip line
 * where no device is present. */
#include "gate_backend.h"

#include <stdio.h>
#include <string.h>

int
main (void)
{
  g_autofree char *why = NULL;
  const GateBackend *cuda = gate_backend_cuda ();
  if (cuda == NULL || !cuda->available (&why))
    {
      printf ("CUDA gate benchmark skipped: %s\n", why ? why : "built without CUDA");
      return 0;
    }
  g_autofree char *name = gate_cuda_device_name ();
  /* HBM peaks from shared/reference/hardware.md */
  double peak = strstr (name, "H200") ? 4.8e12 : strstr (name, "H100") || strstr (name, "H800") ? 3.35e12 : 0;
  const GateConfig *g = gate_preset ("deepseek-v3");
  printf ("moesim CUDA gate benchmark on %s (HBM peak %s), H %u, E %u, top-%u, groups %u/%u\n", name,
          peak ? (peak > 4e12 ? "4.8 TB/s" : "3.35 TB/s") : "unknown", g->hidden, g->experts, g->top_k,
          g->n_group, g->topk_group);
  const long sizes[] = { 4096, 16384, 65536 };
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      GateCudaTimes t;
      g_autofree char *err = NULL;
      if (!gate_cuda_bench (g, sizes[i], 20, &t, &err))
        {
          printf ("  T %6ld: failed: %s\n", sizes[i], err);
          return 1;
        }
      double bytes = 2.0 * sizes[i] * g->hidden, flop = 2.0 * sizes[i] * g->experts * g->hidden;
      printf ("  T %6ld: %8.1f us per call  %7.1f GB/s of hidden reads", sizes[i], t.total_us,
              bytes / t.total_us / 1e3);
      if (peak)
        printf (" = %.0f %% of HBM peak (target >= 70 %%)", 100.0 * bytes / (t.total_us * 1e-6) / peak);
      printf ("\n           GEMM (cuBLAS) %7.1f us = %4.0f TFLOP/s; selection %6.1f us = %6.1f GB/s of logits\n",
              t.gemm_us, flop / (t.gemm_us * 1e-6) / 1e12, t.select_us,
              4.0 * sizes[i] * g->experts / t.select_us / 1e3);
    }
  return 0;
}
