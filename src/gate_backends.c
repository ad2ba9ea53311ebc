/* The CPU entry of the gate backend table, and the run-time choice. */
#include "gate_backend.h"

#include <string.h>

static gboolean
cpu_available (char **why)
{
  (void) why;
  return TRUE;
}

static gboolean
cpu_route (const GateConfig *g, const float *hidden, guint64 tokens, const float *weight,
           const float *bias, gint32 *ids, float *weights, char **why)
{
  (void) why;
  gate_route (g, hidden, tokens, weight, bias, ids, weights, 0);
  return TRUE;
}

static gboolean
cpu_supports (const GateConfig *g, char **why)
{
  (void) g;
  (void) why;
  return TRUE;
}

static const GateBackend cpu_backend = { "cpu", cpu_available, cpu_supports, cpu_route };

const GateBackend *
gate_backend_cpu (void)
{
  return &cpu_backend;
}

const GateBackend *
gate_backend_choose (const char *name, const GateConfig *g, char **note, char **why)
{
  const GateBackend *cuda = gate_backend_cuda ();
  if (name == NULL || strcmp (name, "auto") == 0)
    {
      g_autofree char *reason = NULL;
      if (cuda && cuda->available (&reason) && cuda->supports (g, &reason))
        return cuda;
      if (note)
        *note = g_strdup_printf ("gate backend: cpu (%s)",
                                 cuda ? (reason ? reason : "no CUDA device") : "built without CUDA");
      return &cpu_backend;
    }
  if (strcmp (name, "cpu") == 0)
    return &cpu_backend;
  if (strcmp (name, "cuda") == 0)
    {
      if (cuda == NULL)
        {
          *why = g_strdup ("--backend cuda: this moesim was built without CUDA (meson -Dcuda=enabled "
                           "needs nvcc)");
          return NULL;
        }
      g_autofree char *reason = NULL;
      if (!cuda->available (&reason) || !cuda->supports (g, &reason))
        {
          *why = g_strdup_printf ("--backend cuda: %s", reason ? reason : "no CUDA device");
          return NULL;
        }
      return cuda;
    }
  *why = g_strdup_printf ("--backend %s: expected auto, cpu or cuda", name);
  return NULL;
}
