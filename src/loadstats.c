#include "loadstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

void
load_stats (const double *v, guint n, LoadStats *out)
{
  g_return_if_fail (n > 0);
  g_autofree double *sorted = g_memdup2 (v, n * sizeof (double));
  qsort (sorted, n, sizeof (double), cmp_double);
  double sum = 0.0;
  for (guint i = 0; i < n; i++)
    sum += sorted[i];
  double mean = sum / n, var = 0.0, gini_num = 0.0;
  for (guint i = 0; i < n; i++)
    {
      double d = sorted[i] - mean;
      var += d * d;
      /* Gini = sum_i (2 i - n - 1) x_(i) / (n sum x), i from 1, x sorted */
      gini_num += (2.0 * (i + 1) - n - 1.0) * sorted[i];
    }
  out->min = sorted[0];
  out->max = sorted[n - 1];
  out->mean = mean;
  out->max_over_mean = mean > 0 ? out->max / mean : 0.0;
  out->cv = mean > 0 ? sqrt (var / n) / mean : 0.0;
  out->gini = sum > 0 ? gini_num / (n * sum) : 0.0;
}
