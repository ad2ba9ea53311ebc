/* Fixed-point number formatting for the output files.
 *
 * A run writes millions of numbers ("%.3f" microseconds in trace.json,
 * "%.2f" coordinates in report.html), and printf's exact binary-to-decimal
 * conversion was a tenth of a training step's run time. fmt_fixed gives the
 * same characters as printf's "%.<d>f" in the C locale: it rounds v * 10^d
 * to an integer and writes its digits, and hands the number to printf
 * itself whenever that rounding could differ from printf's (a product too
 * large for the margin, or within 1e-6 of a half-way point). */
#pragma once

#include <glib.h>
#include <math.h>
#include <stdio.h>

#define FMT_FIXED_BUF 320 /* the widest: -DBL_MAX with 6 decimals */

/* Writes v as "%.<d>f" (d <= 6) into buf (FMT_FIXED_BUF bytes); returns buf. */
static inline const char *
fmt_fixed (char *buf, double v, guint d)
{
  static const double p10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6 };
  g_assert (d <= 6);
  double s = v * p10[d]; /* exact when d == 0; else within 1 ulp of v 10^d */
  double n = nearbyint (s);
  /* |s| < 4e9: the product's error (under 4.5e-7) is inside the margin */
  gboolean clear = (d == 0 ? fabs (s) < 9e15 : fabs (s) < 4e9) && fabs (s - n) < 0.5 - 1e-6;
  if (!clear)
    {
      snprintf (buf, FMT_FIXED_BUF, "%.*f", (int) d, v);
      return buf;
    }
  char digits[24];
  guint nd = 0;
  guint64 u = (guint64) fabs (n);
  for (guint k = 0; k < d; k++, u /= 10)
    digits[nd++] = (char) ('0' + u % 10);
  do
    {
      digits[nd++] = (char) ('0' + u % 10);
      u /= 10;
    }
  while (u > 0);
  char *p = buf;
  if (signbit (v)) /* printf keeps the sign of what rounds to zero */
    *p++ = '-';
  while (nd > d)
    *p++ = digits[--nd];
  if (d > 0)
    {
      *p++ = '.';
      while (nd > 0)
        *p++ = digits[--nd];
    }
  *p = '\0';
  return buf;
}

/* Appends v as "%.<d>f" would print it. */
static inline void
fmt_append_fixed (GString *o, double v, guint d)
{
  char buf[FMT_FIXED_BUF];
  g_string_append (o, fmt_fixed (buf, v, d));
}

/* Appends v in decimal. */
static inline void
fmt_append_uint (GString *o, guint64 v)
{
  char digits[24];
  guint n = 0;
  do
    {
      digits[n++] = (char) ('0' + v % 10);
      v /= 10;
    }
  while (v > 0);
  for (guint i = 0; i < n / 2; i++)
    {
      char c = digits[i];
      digits[i] = digits[n - 1 - i];
      digits[n - 1 - i] = c;
    }
  g_string_append_len (o, digits, (gssize) n);
}
