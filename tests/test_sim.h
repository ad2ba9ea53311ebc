/* Test glue for the scenarios in sim/: load one by file name with
 * overrides, printing the error when it does not load. */
#pragma once

#include "scenario.h"
#include "test_common.h"

static inline Scenario *
test_load_sim (const char *file, const char *const *sets)
{
  g_autofree char *p = g_build_filename (MOESIM_SOURCE_ROOT, "sim", file, NULL);
  g_autoptr (GError) err = NULL;
  Scenario *sc = scenario_load (p, sets, &err);
  if (err)
    g_printerr ("\n  %s\n", err->message);
  return sc;
}
