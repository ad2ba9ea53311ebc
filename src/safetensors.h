/* safetensors files (a model's weights, e.g. `model.layers.3.mlp.gate.weight`
 * and `...e_score_correction_bias`): an 8-byte little-endian header length,
 * a JSON header mapping tensor names to dtype, shape and data offsets, then
 * the data. Memory-mapped; tensors are read in place. Errors name the file,
 * the tensor and what is wrong (offsets past the end, a name that is not
 * there, an unsupported dtype). */
#pragma once

#include <glib.h>

#define MOESIM_SAFETENSORS_ERROR (moesim_safetensors_error_quark ())
GQuark moesim_safetensors_error_quark (void);

typedef enum { ST_ERROR_IO, ST_ERROR_FORMAT, ST_ERROR_MISSING, ST_ERROR_DTYPE } SafeTensorsError;

typedef struct SafeTensors SafeTensors;

SafeTensors *safetensors_open (const char *path, GError **error);
void safetensors_free (SafeTensors *st);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SafeTensors, safetensors_free)

/* Copies tensor `name` (F32, F16 or BF16) into a new float array; *shape
 * (up to 8 dims) and *ndim receive its shape. */
float *safetensors_read_f32 (const SafeTensors *st, const char *name, gsize *shape, guint *ndim,
                             GError **error);
