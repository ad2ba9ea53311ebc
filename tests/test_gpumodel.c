/* Expert compute model against hand arithmetic on the H800 topology. */
#include "gpumodel.h"
#include "test_sim.h"

static void
test_gemm_table_interpolation (void)
{
  g_autoptr (Scenario) sc = test_load_sim ("deepseek-v3-ep64-forward.yaml", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  /* table: [[64, 271], [128, 499], [256, 874], [512, 978], [1024, 1079], [4096, 1220]] */
  ASSERT_REL (topology_gemm_tflops (t, DTYPE_FP8, 128), 499, 1e-12);
  ASSERT_REL (topology_gemm_tflops (t, DTYPE_FP8, 32), 271.0 / 2, 1e-12);   /* proportional below */
  ASSERT_REL (topology_gemm_tflops (t, DTYPE_FP8, 8192), 1220, 1e-12);      /* flat above */
  ASSERT_REL (topology_gemm_tflops (t, DTYPE_FP8, 2048), (1079 + 1220) / 2.0, 1e-12); /* log midpoint */
  ASSERT_REL (topology_gemm_tflops (t, DTYPE_BF16, 128), 499.0 * 989 / 1979, 1e-12);
}

static void
test_grouped_ffn_is_compute_bound_at_deepseek_load (void)
{
  /* EP64: 4 experts per GPU, 8192 rows each (4096 tokens x 8 / 4) */
  g_autoptr (Scenario) sc = test_load_sim ("deepseek-v3-ep64-forward.yaml", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  guint32 rows[4] = { 8192, 8192, 8192, 8192 };
  ComputeCost c = gpumodel_grouped_ffn (t, scenario_spec (sc), rows, 4);
  double flops = 4 * 6.0 * 8192 * 7168 * 2048;
  ASSERT_REL (c.flops, flops, 1e-12);
  ASSERT_REL (c.seconds, flops / 1220e12 + 2 * 4e-6, 1e-9);
}

static void
test_rows_pad_to_the_tile (void)
{
  g_autoptr (Scenario) sc = test_load_sim ("deepseek-v3-ep64-forward.yaml", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  /* 65 rows run as 128 at the 128-row throughput; memory-bound then? check both */
  guint32 rows[1] = { 65 };
  ComputeCost c = gpumodel_grouped_ffn (t, scenario_spec (sc), rows, 1);
  double compute = 6.0 * 128 * 7168 * 2048 / 499e12;
  double mem = c.hbm_bytes / 3000e9;
  ASSERT_REL (c.seconds, MAX (compute, mem) + 8e-6, 1e-9);
  ASSERT_REL (c.flops, 6.0 * 65 * 7168 * 2048, 1e-12);
  /* an expert with no rows costs nothing, not even a launch */
  guint32 none[2] = { 0, 0 };
  CU_ASSERT_EQUAL (gpumodel_grouped_ffn (t, scenario_spec (sc), none, 2).seconds, 0.0);
}

int
main (void)
{
  static const TestCase tests[] = {
    TEST (test_gemm_table_interpolation),
    TEST (test_grouped_ffn_is_compute_bound_at_deepseek_load),
    TEST (test_rows_pad_to_the_tile),
  };
  return test_main ("gpumodel", tests, G_N_ELEMENTS (tests));
}
