/* Gate backends: the CPU reference (src/gate.c) and, when moesim is built
 * with CUDA, the kernel in kernels/gate_cuda.cu. Both fill this table; which
 * CUDA file is compiled (the kernel or src/gate_nocuda.c) decides whether
 * the CUDA entry exists. The choice between them is made at run time. */
#pragma once

#include "gate.h"
#include "moesim-config.h"

G_BEGIN_DECLS

typedef struct {
  const char *name;
  /* TRUE when usable now; otherwise *why says why (caller frees). */
  gboolean (*available) (char **why);
  /* TRUE when it handles this gate's sizes; otherwise *why says why. */
  gboolean (*supports) (const GateConfig *g, char **why);
  /* Same contract as gate_route; FALSE with *why on a device error. */
  gboolean (*route) (const GateConfig *g, const float *hidden, guint64 tokens, const float *weight,
                     const float *bias, gint32 *ids, float *weights, char **why);
} GateBackend;

const GateBackend *gate_backend_cpu (void);
/* NULL when moesim was built without CUDA. */
const GateBackend *gate_backend_cuda (void);

/* "auto" (CUDA when built, a device is present and it supports `g`; else
 * CPU, with *note saying why), "cpu" or "cuda". NULL with *why when the
 * choice is impossible. */
const GateBackend *gate_backend_choose (const char *name, const GateConfig *g, char **note,
                                        char **why);

#if HAVE_CUDA
/* Built with CUDA only (kernels/gate_cuda.cu): device-side timing of the
 * gate on T tokens of bf16 inputs, and the device name. */
typedef struct {
  double total_us, gemm_us, select_us; /* per call */
} GateCudaTimes;
gboolean gate_cuda_bench (const GateConfig *g, long tokens, int reps, GateCudaTimes *times, char **why);
char *gate_cuda_device_name (void);
#endif

G_END_DECLS
