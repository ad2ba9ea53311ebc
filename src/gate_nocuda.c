/* Compiled instead of kernels/gate_cuda.cu when moesim is built without
 * CUDA: the backend table then has no CUDA entry. */
#include "gate_backend.h"

const GateBackend *
gate_backend_cuda (void)
{
  return NULL;
}
