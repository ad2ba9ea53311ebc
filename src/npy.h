/* NumPy .npy files (format versions 1.0, 2.0 and 3.0): the array a PyTorch
 * user gets from np.save(tensor.cpu().numpy()). Little-endian, C order, the
 * integer and float dtypes moesim needs. Arrays are memory-mapped, never
 * copied; writing goes to a temporary name that is renamed when complete.
 */
#pragma once

#include <glib.h>

#define MOESIM_NPY_ERROR (moesim_npy_error_quark ())
GQuark moesim_npy_error_quark (void);

typedef enum {
  NPY_ERROR_IO,     /* missing or unreadable file */
  NPY_ERROR_FORMAT, /* malformed or truncated */
  NPY_ERROR_DTYPE,  /* a dtype or layout moesim does not read */
  NPY_ERROR_SHAPE,  /* a shape the caller did not expect */
} NpyError;

typedef enum { NPY_I1, NPY_I2, NPY_I4, NPY_I8, NPY_U1, NPY_U2, NPY_U4, NPY_U8, NPY_F2, NPY_F4,
               NPY_F8, NPY_N_DTYPES } NpyDtype;

#define NPY_MAX_DIMS 8

typedef struct {
  NpyDtype dtype;
  guint ndim;
  gsize shape[NPY_MAX_DIMS];
  gsize count;        /* product of the shape */
  const guint8 *data; /* count elements of npy_dtype_size (dtype) bytes */
  char *path;
  GMappedFile *map;
} NpyArray;

/* Maps `path` and validates its header and size. */
NpyArray *npy_load (const char *path, GError **error);
void npy_free (NpyArray *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (NpyArray, npy_free)

gsize npy_dtype_size (NpyDtype d);
const char *npy_dtype_descr (NpyDtype d); /* "<i2", ... */
gboolean npy_dtype_is_int (NpyDtype d);

/* Element i as an integer (integer dtypes) or a double (any dtype). */
gint64 npy_get_int (const NpyArray *a, gsize i);
double npy_get_double (const NpyArray *a, gsize i);

/* Fails with NPY_ERROR_SHAPE unless the array has `ndim` dimensions. */
gboolean npy_expect_ndim (const NpyArray *a, guint ndim, const char *what, GError **error);

/* Writes an array (format 1.0). */
gboolean npy_save (const char *path, NpyDtype dtype, guint ndim, const gsize *shape,
                   const void *data, GError **error);
