/* Simulated time.
 *
 * The clock is an integer count of picoseconds (SimTime). Doubles are for
 * rates only; a duration computed in floating point enters the clock through
 * sim_time_from_seconds(), the one place that rounds, and it rounds up so that
 * a transfer or a kernel never finishes before its true end. int64 picoseconds
 * cover about 106 days of simulated time, far beyond any run.
 */
#pragma once

#include <glib.h>
#include <math.h>
#include <stdint.h>

typedef int64_t SimTime;

#define SIM_TIME_MAX INT64_MAX
#define SIM_PS_PER_US INT64_C(1000000)
#define SIM_PS_PER_S INT64_C(1000000000000)

/* Converts a non-negative duration to ticks, rounding up. A tiny relative
 * slack absorbs the representation error of values that are exact in decimal
 * (1e-6 s must be 1000000 ps, not 1000001). sim_time_ceil_ps is the unchecked
 * form for hot loops that already hold picoseconds in range. */
static inline SimTime
sim_time_ceil_ps (double ps)
{
  SimTime down = (SimTime) ps; /* truncation = floor for ps >= 0 */
  if (ps - (double) down <= 1e-9 * (ps > 1.0 ? ps : 1.0))
    return down;
  return down + 1;
}

static inline SimTime
sim_time_from_seconds (double seconds)
{
  g_assert (seconds >= 0.0 && seconds < 9.2e6);
  return sim_time_ceil_ps (seconds * 1e12);
}

static inline double
sim_time_to_us (SimTime t)
{
  return (double) t / 1e6;
}

static inline double
sim_time_to_seconds (SimTime t)
{
  return (double) t / 1e12;
}
