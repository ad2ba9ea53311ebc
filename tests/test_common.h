/* Shared CUnit runner glue: each test executable lists its tests in a table
 * and calls test_main(). The failure count is read before the registry is
 * cleaned up (after cleanup it reads 0 and a failing suite would pass). */
#pragma once

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <glib.h>
#include <math.h>
#include <string.h>

typedef struct {
  const char *name;
  void (*fn) (void);
} TestCase;

#define TEST(f) { #f, f }

static inline int
test_main (const char *suite_name, const TestCase *tests, gsize n)
{
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite suite = CU_add_suite (suite_name, NULL, NULL);
  for (gsize i = 0; i < n; i++)
    CU_add_test (suite, tests[i].name, tests[i].fn);
  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  unsigned failures = CU_get_number_of_failures ();
  unsigned run = CU_get_number_of_tests_run ();
  CU_cleanup_registry ();
  if (run == 0)
    return 1;
  return failures == 0 ? 0 : 1;
}

/* Source tree paths (set by meson). */
#ifndef MOESIM_SOURCE_ROOT
#define MOESIM_SOURCE_ROOT "."
#endif

#define ASSERT_REL(actual, expected, rel)                                                          \
  CU_ASSERT (fabs ((double) (actual) - (double) (expected))                                        \
             <= (rel) * fabs ((double) (expected)) + 1e-12)
