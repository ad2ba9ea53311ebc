/* Closed-form traffic and lower bounds, without simulation.
 *
 * Under uniform routing without group limits, a token's k experts are a
 * uniform k-subset of E experts, m = E / ep per GPU. The expected number of
 * distinct GPUs it reaches is D = ep (1 - C(E - m, k) / C(E, k)), and by
 * symmetry a fraction (ep - 1) / ep of them are remote, so a GPU sends
 * B D (ep - 1) / ep token copies per all-to-all, (gpn - 1) / (ep - 1) of them
 * inside its node. Combine mirrors dispatch. Lower bounds divide the bytes a
 * link must carry by its capacity: NVLink port, NIC port (shared by the GPUs
 * of a NIC), leaf uplink (with oversubscription); the bound of a phase is
 * the largest plus the path latency.
 */
#pragma once

#include "scenario.h"

typedef struct {
  double distinct_gpus_per_token;
  double copies_per_gpu;          /* remote token copies sent per GPU per all-to-all */
  double copies_nvlink, copies_ib;
  double dispatch_bytes_per_gpu;  /* out (= in) per GPU */
  double combine_bytes_per_gpu;
  double forward_bytes_per_gpu;   /* all MoE layers, dispatch + combine */
  double backward_bytes_per_gpu;  /* the reverse all-to-alls of backward, in model.grad_dtype */
  double dispatch_bound_us, combine_bound_us;
  double forward_bound_us;        /* communication only, all layers */
  const char *dispatch_bottleneck, *combine_bottleneck;
  double expert_us;               /* expert compute at the mean load */
} Estimate;

void estimate_compute (const ScenarioSpec *s, const TopoSpec *t, Estimate *out);
