/* `moesim compare A B`: two runs' summary.json side by side, with the
 * difference and the ratio B / A of every figure. A and B are summary.json
 * files or the folders that hold them. */
#include "cmd.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

typedef struct {
  const char *label;
  const char *path[4]; /* members from the root, NULL-terminated */
  const char *unit;
} Row;

static const Row rows[] = {
  { "pass time", { "total_time_us", NULL }, "us" },
  { "dispatch (sum of layer max)", { "phases", "dispatch", "time_us", NULL }, "us" },
  { "dispatch (sum of layer mean)", { "phases", "dispatch", "mean_us", NULL }, "us" },
  { "dispatch logical bandwidth", { "phases", "dispatch", "logical_gbps", NULL }, "GB/s" },
  { "expert (sum of layer max)", { "phases", "expert", "time_us", NULL }, "us" },
  { "expert (sum of layer mean)", { "phases", "expert", "mean_us", NULL }, "us" },
  { "combine (sum of layer max)", { "phases", "combine", "time_us", NULL }, "us" },
  { "combine (sum of layer mean)", { "phases", "combine", "mean_us", NULL }, "us" },
  { "combine logical bandwidth", { "phases", "combine", "logical_gbps", NULL }, "GB/s" },
  { "NVLink wire bytes", { "bytes", "nvlink", NULL }, "B" },
  { "IB wire bytes", { "bytes", "ib", NULL }, "B" },
  { "fabric wire bytes", { "bytes", "fabric", NULL }, "B" },
  { "bottleneck busy", { "bottleneck", "busy_us", NULL }, "us" },
  { "bottleneck utilisation", { "bottleneck", "utilisation", NULL }, "" },
  { "GEMM share (MoE layers)", { "breakdown", "gemm_share", NULL }, "" },
  { "fullest GPU memory", { "memory", "worst_gpu_gb", NULL }, "GB" },
  { "expert load max/mean", { "imbalance", "expert_load_max_over_mean", NULL }, "" },
  { "expert load CV", { "imbalance", "expert_load_cv", NULL }, "" },
  { "expert load Gini", { "imbalance", "expert_load_gini", NULL }, "" },
  { "GPU tokens max/mean", { "imbalance", "gpu_tokens_max_over_mean", NULL }, "" },
  { "expert phase max/mean", { "imbalance", "expert_time_max_over_mean", NULL }, "" },
  { "nodes per token", { "imbalance", "node_fanout_mean", NULL }, "" },
  { "balanced pass", { "imbalance", "counterfactual", "balanced_time_us", NULL }, "us" },
  { "imbalance cost", { "imbalance", "counterfactual", "cost_us", NULL }, "us" },
};

static JsonParser *
load (const char *arg, char **shown, GError **error)
{
  g_autofree char *path = g_file_test (arg, G_FILE_TEST_IS_DIR)
                              ? g_build_filename (arg, "summary.json", NULL)
                              : g_strdup (arg);
  JsonParser *p = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_file (p, path, &local))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: %s", path, local->message);
      g_object_unref (p);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (p);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  const char *schema = o && json_object_has_member (o, "schema")
                           ? json_object_get_string_member (o, "schema") : NULL;
  if (schema == NULL || strcmp (schema, "moesim.summary/1") != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "%s: not a moesim summary (schema '%s', expected moesim.summary/1)", path,
                   schema ? schema : "none");
      g_object_unref (p);
      return NULL;
    }
  *shown = g_steal_pointer (&path);
  return p;
}

/* The number at `path`, or NAN when absent. */
static double
lookup (JsonParser *p, const char *const *path)
{
  JsonNode *n = json_parser_get_root (p);
  for (guint i = 0; path[i]; i++)
    {
      if (!JSON_NODE_HOLDS_OBJECT (n) || !json_object_has_member (json_node_get_object (n), path[i]))
        return NAN;
      n = json_object_get_member (json_node_get_object (n), path[i]);
    }
  return JSON_NODE_HOLDS_VALUE (n) ? json_node_get_double (n) : NAN;
}

static const char *
str_at (JsonParser *p, const char *a, const char *b)
{
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  if (!json_object_has_member (o, a))
    return "?";
  JsonObject *s = json_object_get_object_member (o, a);
  return s && json_object_has_member (s, b) ? json_object_get_string_member (s, b) : "?";
}

int
cmd_compare (int argc, char **argv)
{
  if (argc != 3)
    {
      g_printerr ("moesim: error: expected: moesim compare A B (summary.json files or output folders)\n");
      return EXIT_BAD_INPUT;
    }
  g_autoptr (GError) error = NULL;
  g_autofree char *pa = NULL, *pb = NULL;
  JsonParser *a = load (argv[1], &pa, &error);
  if (a == NULL)
    return cmd_fail (g_steal_pointer (&error));
  JsonParser *b = load (argv[2], &pb, &error);
  if (b == NULL)
    {
      g_object_unref (a);
      return cmd_fail (g_steal_pointer (&error));
    }
  g_print ("A: %s (%s)\nB: %s (%s)\n\n", pa, str_at (a, "scenario", "name"), pb,
           str_at (b, "scenario", "name"));
  g_print ("%-34s %16s %16s %16s %9s\n", "", "A", "B", "B - A", "B / A");
  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      double x = lookup (a, rows[i].path), y = lookup (b, rows[i].path);
      if (isnan (x) && isnan (y))
        continue;
      g_autofree char *label = g_strdup_printf ("%s%s%s%s", rows[i].label, rows[i].unit[0] ? " (" : "",
                                                rows[i].unit, rows[i].unit[0] ? ")" : "");
      g_print ("%-34s %16.6g %16.6g %16.6g ", label, x, y, y - x);
      if (x != 0 && !isnan (x) && !isnan (y))
        g_print ("%9.4f\n", y / x);
      else
        g_print ("%9s\n", "-");
    }
  g_print ("%-34s %16s %16s\n", "bottleneck link", str_at (a, "bottleneck", "link"),
           str_at (b, "bottleneck", "link"));
  g_object_unref (a);
  g_object_unref (b);
  return 0;
}
