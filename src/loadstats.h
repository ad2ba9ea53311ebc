/* Summary statistics of a load vector (rows per expert, tokens per GPU):
 * the measures routing-imbalance studies quote. */
#pragma once

#include <glib.h>

typedef struct {
  double min, max, mean;
  double max_over_mean; /* 1.0 = balanced; 0 when everything is zero */
  double cv;            /* coefficient of variation, population standard deviation / mean */
  double gini;          /* Gini coefficient: 0 = equal, (n - 1) / n = all load on one */
} LoadStats;

/* Statistics of v[0..n-1] (n > 0); v is left unchanged. */
void load_stats (const double *v, guint n, LoadStats *out);
