/* CUDA gate parity with the CPU reference (built only with CUDA; skipped,
 * exit 77, where no device is present).
 *
 * Inputs are bf16-representable, so both paths multiply the same numbers
 * exactly and differ only in the order of f32 accumulation (about 1e-6
 * relative on a logit). Tolerance: a token's expert ids must equal the CPU's
 * unless the CPU's selection score of its weakest chosen expert and of the
 * best expert it left out are within 1e-5, or a group or node choice is
 * (a near-tie at the selection boundary, where either answer is right); the
 * same experts may come in another order only where the selection scores
 * at the swapped positions are within 1e-5 (a near-tie in the order); gate
 * weights agree within 1e-4 relative, matched by expert. */
#include "gate_backend.h"
#include "test_common.h"

static float
bf16_round (float x)
{
  guint32 b;
  memcpy (&b, &x, 4);
  b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u; /* round to nearest even */
  memcpy (&x, &b, 4);
  return x;
}

static void
parity (const GateConfig *g, guint T, guint64 seed)
{
  const GateBackend *cuda = gate_backend_cuda ();
  float *x = g_new (float, (gsize) T * g->hidden), *w = g_new (float, (gsize) g->experts * g->hidden);
  float *bias = g_new (float, g->experts);
  GRand *r = g_rand_new_with_seed ((guint32) seed);
  for (gsize i = 0; i < (gsize) T * g->hidden; i++)
    x[i] = bf16_round ((float) g_rand_double_range (r, -1, 1));
  for (gsize i = 0; i < (gsize) g->experts * g->hidden; i++)
    w[i] = bf16_round ((float) g_rand_double_range (r, -0.05, 0.05));
  for (guint e = 0; e < g->experts; e++)
    bias[e] = (float) g_rand_double_range (r, -0.01, 0.01);
  g_rand_free (r);
  gint32 *ci = g_new (gint32, (gsize) T * g->top_k), *gi = g_new (gint32, (gsize) T * g->top_k);
  float *cw = g_new (float, (gsize) T * g->top_k), *gw = g_new (float, (gsize) T * g->top_k);
  gate_route (g, x, T, w, bias, ci, cw, 0);
  g_autofree char *why = NULL;
  CU_ASSERT_FATAL (cuda->route (g, x, T, w, bias, gi, gw, &why));
  float *logits = g_new (float, g->experts);
  guint ties = 0, order_ties = 0, bad = 0;
  for (guint t = 0; t < T; t++)
    {
      const gint32 *c = ci + (gsize) t * g->top_k, *d = gi + (gsize) t * g->top_k;
      const float *cwt = cw + (gsize) t * g->top_k, *dwt = gw + (gsize) t * g->top_k;
      gboolean same = TRUE, same_set = TRUE;
      for (guint k = 0; k < g->top_k; k++)
        {
          gboolean found = FALSE;
          same &= c[k] == d[k];
          for (guint j = 0; j < g->top_k; j++)
            found |= c[k] == d[j];
          same_set &= found;
        }
      float sel[4096];
      guint8 allowed[4096];
      float margin = G_MAXFLOAT;
      if (!same)
        {
          gate_logits (x + (gsize) t * g->hidden, 1, w, g->experts, g->hidden, logits, 1, GATE_IMPL_AUTO);
          margin = gate_select_mask (g, logits, bias, sel, allowed);
        }
      gboolean ok = TRUE;
      if (same_set)
        {
          /* weights matched by expert; a different order must be a near-tie
           * of the selection scores at each position where they differ */
          for (guint k = 0; k < g->top_k; k++)
            for (guint j = 0; j < g->top_k; j++)
              if (c[k] == d[j] && fabs (cwt[k] - dwt[j]) > 1e-4 * fabs (cwt[k]) + 1e-7)
                ok = FALSE;
          for (guint k = 0; k < g->top_k && ok && !same; k++)
            if (c[k] != d[k] && fabsf (sel[c[k]] - sel[d[k]]) >= 1e-5f)
              ok = FALSE;
          order_ties += ok && !same;
        }
      else
        {
          /* near-tie? a group or node choice within 1e-5, or the CPU's
           * weakest chosen and best allowed-but-left expert within 1e-5 */
          float weakest = G_MAXFLOAT, best_left = -G_MAXFLOAT;
          for (guint e = 0; e < g->experts; e++)
            {
              gboolean chosen = FALSE;
              for (guint k = 0; k < g->top_k; k++)
                chosen |= c[k] == (gint32) e;
              if (chosen)
                weakest = MIN (weakest, sel[e]);
              else if (allowed[e])
                best_left = MAX (best_left, sel[e]);
            }
          ok = margin < 1e-5 || weakest - best_left < 1e-5;
          ties += ok;
        }
      if (!ok && bad++ < 3)
        {
          g_printerr ("\n  token %u: CPU / CUDA (id weight)", t);
          for (guint k = 0; k < g->top_k; k++)
            g_printerr ("%s %d %.7g / %d %.7g", k ? "," : "", c[k], cwt[k], d[k], dwt[k]);
        }
    }
  g_printerr ("\n  %s: %u tokens, %u near-ties at the selection boundary, %u in the order, %u mismatches\n",
              g->name, T, ties, order_ties, bad);
  CU_ASSERT_EQUAL (bad, 0);
  CU_ASSERT (ties + order_ties <= T / 100 + 1); /* near-ties are rare; many would hide a wrong mask */
  g_free (x);
  g_free (w);
  g_free (bias);
  g_free (ci);
  g_free (gi);
  g_free (cw);
  g_free (gw);
  g_free (logits);
}

static void
test_parity_deepseek_v3 (void)
{
  parity (gate_preset ("deepseek-v3"), 3000, 1);
}

static void
test_parity_mixtral_and_qwen (void)
{
  parity (gate_preset ("mixtral"), 1000, 2);
  parity (gate_preset ("qwen-moe"), 1000, 3);
}

static void
test_parity_node_limited (void)
{
  GateConfig g = *gate_preset ("deepseek-v3");
  g.node_limit = 2;
  g.experts_per_node = 32;
  parity (&g, 1000, 4);
}

static void
test_parity_wide (void)
{
  /* every register width of the selection: 288 experts without groups
   * (DeepEP's low-latency benchmark), 1024 in 32 groups kept by their best
   * expert (DeepEP's group rule), 600 with a node limit */
  GateConfig g = *gate_preset ("deepseek-v3");
  g.hidden = 1024;
  g.experts = 288;
  g.n_group = g.topk_group = 1;
  parity (&g, 2000, 6);
  g.experts = 1024;
  g.n_group = 32;
  g.topk_group = 8;
  g.group_score = GATE_GROUP_MAX;
  parity (&g, 2000, 7);
  g.experts = 600;
  g.n_group = g.topk_group = 1;
  g.node_limit = 3;
  g.experts_per_node = 40;
  parity (&g, 2000, 8);
}

static void
test_parity_padding_and_chunks (void)
{
  /* hidden not a multiple of 32, experts not of 64, more tokens than one
   * 65,536-token pass */
  GateConfig g = *gate_preset ("mixtral");
  g.hidden = 100;
  g.experts = 24;
  g.top_k = 3;
  parity (&g, 70000, 5);
}

int
main (void)
{
  g_autofree char *why = NULL;
  const GateBackend *cuda = gate_backend_cuda ();
  if (cuda == NULL || !cuda->available (&why))
    {
      g_printerr ("test_gate_cuda: skipped: %s\n", why ? why : "built without CUDA");
      return 77;
    }
  static const TestCase tests[] = {
    TEST (test_parity_deepseek_v3),
    TEST (test_parity_mixtral_and_qwen),
    TEST (test_parity_node_limited),
    TEST (test_parity_wide),
    TEST (test_parity_padding_and_chunks),
  };
  return test_main ("gate-cuda", tests, G_N_ELEMENTS (tests));
}
