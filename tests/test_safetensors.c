/* safetensors input: a file written here by hand (header JSON + data), read
 * back in every dtype, and each kind of damage reported. */
#include "safetensors.h"
#include "test_common.h"

static char *tmpdir;

/* Writes header + data; returns the path. */
static char *
write_st (const char *name, const char *header, const void *data, gsize len)
{
  char *p = g_build_filename (tmpdir, name, NULL);
  GString *s = g_string_new (NULL);
  guint64 n = strlen (header);
  for (int i = 0; i < 8; i++)
    g_string_append_c (s, (char) ((n >> (8 * i)) & 0xff));
  g_string_append (s, header);
  g_string_append_len (s, data, (gssize) len);
  g_file_set_contents (p, s->str, (gssize) s->len, NULL);
  g_string_free (s, TRUE);
  return p;
}

static void
test_reads_f32_bf16_f16 (void)
{
  /* gate [2, 3] f32, bias [2] bf16, other [2] f16 */
  guint8 data[24 + 4 + 4];
  float g[6] = { 1, -2, 3.5f, 0.25f, -0.5f, 8 };
  memcpy (data, g, 24);
  guint16 bf[2] = { 0x3fc0, 0xbf80 }; /* 1.5, -1.0 */
  memcpy (data + 24, bf, 4);
  guint16 hf[2] = { 0x3c00, 0xc000 }; /* 1.0, -2.0 */
  memcpy (data + 28, hf, 4);
  g_autofree char *p = write_st ("ok.safetensors",
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"model.layers.0.mlp.gate.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
      "\"model.layers.0.mlp.gate.e_score_correction_bias\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[24,28]},"
      "\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[28,32]}}",
      data, sizeof data);
  g_autoptr (GError) err = NULL;
  g_autoptr (SafeTensors) st = safetensors_open (p, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (st);
  gsize shape[8];
  guint nd;
  g_autofree float *w = safetensors_read_f32 (st, "model.layers.0.mlp.gate.weight", shape, &nd, &err);
  CU_ASSERT_FATAL (w != NULL);
  CU_ASSERT (nd == 2 && shape[0] == 2 && shape[1] == 3);
  CU_ASSERT (memcmp (w, g, 24) == 0);
  g_autofree float *b = safetensors_read_f32 (st, "model.layers.0.mlp.gate.e_score_correction_bias", shape, &nd, &err);
  CU_ASSERT (b && b[0] == 1.5f && b[1] == -1.0f);
  g_autofree float *h = safetensors_read_f32 (st, "x", shape, &nd, &err);
  CU_ASSERT (h && h[0] == 1.0f && h[1] == -2.0f);
  /* a name that is not there: the message suggests gate tensors */
  g_autofree float *none = safetensors_read_f32 (st, "model.layers.1.mlp.gate.weight", shape, &nd, &err);
  CU_ASSERT (none == NULL && err && strstr (err->message, "no tensor named 'model.layers.1.mlp.gate.weight'")
             && strstr (err->message, "model.layers.0.mlp.gate.weight"));
}

static void
test_damage_is_reported (void)
{
  guint8 data[8] = { 0 };
  g_autoptr (GError) err = NULL;
  gsize shape[8];
  guint nd;
  /* offsets past the end of the data */
  g_autofree char *p1 = write_st ("past.safetensors",
      "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, sizeof data);
  g_autoptr (SafeTensors) s1 = safetensors_open (p1, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (s1);
  g_autofree float *w = safetensors_read_f32 (s1, "w", shape, &nd, &err);
  CU_ASSERT (w == NULL && err && strstr (err->message, "data_offsets [0, 16] past the end"));
  g_clear_error (&err);
  /* header length beyond the file */
  g_autofree char *p2 = g_build_filename (tmpdir, "short.safetensors", NULL);
  g_file_set_contents (p2, "\xff\xff\x00\x00\x00\x00\x00\x00{}", 10, NULL);
  g_autoptr (SafeTensors) s2 = safetensors_open (p2, &err);
  CU_ASSERT (s2 == NULL && err && strstr (err->message, "not a safetensors file"));
  g_clear_error (&err);
  /* broken JSON */
  g_autofree char *p3 = write_st ("json.safetensors", "{\"w\": [", data, 0);
  g_autoptr (SafeTensors) s3 = safetensors_open (p3, &err);
  CU_ASSERT (s3 == NULL && err && strstr (err->message, "malformed safetensors header"));
  g_clear_error (&err);
  /* a dtype moesim does not read */
  g_autofree char *p4 = write_st ("i64.safetensors",
      "{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data, sizeof data);
  g_autoptr (SafeTensors) s4 = safetensors_open (p4, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (s4);
  g_autofree float *w4 = safetensors_read_f32 (s4, "w", shape, &nd, &err);
  CU_ASSERT (w4 == NULL && err && strstr (err->message, "dtype I64"));
}

static void
test_gate_reads_safetensors (void)
{
  /* an 8-expert top-2 gate at hidden 16 over two model layers, through the CLI */
  const guint E = 8, H = 16;
  GString *data = g_string_new (NULL);
  GString *hdr = g_string_new ("{");
  for (guint l = 0; l < 2; l++)
    {
      for (guint i = 0; i < E * H; i++)
        {
          float v = (float) ((int) ((i * 7 + l * 3) % 11) - 5) / 8.0f;
          g_string_append_len (data, (char *) &v, 4);
        }
      g_string_append_printf (hdr, "%s\"model.layers.%u.block_sparse_moe.gate.weight\":"
                                   "{\"dtype\":\"F32\",\"shape\":[%u,%u],\"data_offsets\":[%u,%u]}",
                              l ? "," : "", l + 1, E, H, l * E * H * 4, (l + 1) * E * H * 4);
    }
  g_string_append_c (hdr, '}');
  g_autofree char *p = write_st ("model.safetensors", hdr->str, data->str, data->len);
  g_autofree char *out = g_build_filename (tmpdir, "g.mrt", NULL);
  g_autofree char *cmd = g_strdup_printf (
      "%s gate --preset mixtral --hidden-size %u --tokens 64 --layers 2 --weights %s "
      "--tensor model.layers.{layer}.block_sparse_moe.gate.weight --layer-offset 1 --backend cpu -o %s",
      MOESIM_EXE, H, p, out);
  int status = 0;
  g_autofree char *err = NULL;
  CU_ASSERT (g_spawn_command_line_sync (cmd, NULL, &err, &status, NULL));
  CU_ASSERT (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  CU_ASSERT (g_file_test (out, G_FILE_TEST_EXISTS));
  /* a missing layer (offset 2 asks for model layer 3): exit 2, no output */
  g_autofree char *out2 = g_build_filename (tmpdir, "g2.mrt", NULL);
  g_autofree char *cmd2 = g_strdup_printf (
      "%s gate --preset mixtral --hidden-size %u --tokens 64 --layers 2 --weights %s "
      "--tensor model.layers.{layer}.block_sparse_moe.gate.weight --layer-offset 2 -o %s",
      MOESIM_EXE, H, p, out2);
  g_autofree char *err2 = NULL;
  CU_ASSERT (g_spawn_command_line_sync (cmd2, NULL, &err2, &status, NULL));
  CU_ASSERT (WIFEXITED (status) && WEXITSTATUS (status) == 2);
  CU_ASSERT (err2 && strstr (err2, "model.layers.3.block_sparse_moe.gate.weight"));
  CU_ASSERT_FALSE (g_file_test (out2, G_FILE_TEST_EXISTS));
  g_string_free (data, TRUE);
  g_string_free (hdr, TRUE);
}

int
main (void)
{
  tmpdir = g_dir_make_tmp ("moesim-st-XXXXXX", NULL);
  static const TestCase tests[] = {
    TEST (test_reads_f32_bf16_f16),
    TEST (test_damage_is_reported),
    TEST (test_gate_reads_safetensors),
  };
  int rc = test_main ("safetensors", tests, G_N_ELEMENTS (tests));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    rc = 1;
  g_free (tmpdir);
  return rc;
}
