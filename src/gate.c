/* CPU gate: blocked logits GEMM and the selection epilogue. */
#include "gate.h"

#include "rng.h"

#include <math.h>
#include <string.h>

static const GateConfig presets[] = {
  /* DeepSeek-V3 config_671B.json: sigmoid, noaux_tc bias, 8 groups / top-4 by
   * the sum of the top-2 scores, top-8, normalised, x2.5 */
  { "deepseek-v3", 7168, 256, 8, GATE_SIGMOID, TRUE, 8, 4, GATE_GROUP_TOP2_SUM, 0, 0, TRUE, 2.5 },
  /* Mixtral-8x7B: softmax over 8 experts, top-2, renormalised over the two */
  { "mixtral", 4096, 8, 2, GATE_SOFTMAX, FALSE, 1, 1, GATE_GROUP_MAX, 0, 0, TRUE, 1.0 },
  /* Qwen1.5-MoE-A2.7B: softmax over 60 experts, top-4, not renormalised */
  { "qwen-moe", 2048, 60, 4, GATE_SOFTMAX, FALSE, 1, 1, GATE_GROUP_MAX, 0, 0, FALSE, 1.0 },
};

const GateConfig *
gate_preset (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    if (g_strcmp0 (presets[i].name, name) == 0)
      return &presets[i];
  return NULL;
}

const char *
gate_preset_names (void)
{
  return "deepseek-v3, mixtral, qwen-moe";
}

const GateSynth gate_synth_default = { 1, 16, 1.0, 0.3, 64 };

/* ---- selection ---- */

/* Index of the best of n values among those with allowed[i], ties to the
 * lower index; -1 when none. */
static inline gint
argmax_allowed (const float *v, const guint8 *allowed, guint n)
{
  gint best = -1;
  for (guint i = 0; i < n; i++)
    if (allowed[i] && (best < 0 || v[i] > v[best]))
      best = (gint) i;
  return best;
}

/* Sum of the `m` largest of v[0..n) that are allowed. */
static float
top_sum (const float *v, const guint8 *allowed, guint n, guint m)
{
  float best[64];
  guint have = 0;
  m = MIN (m, 64u);
  for (guint i = 0; i < n; i++)
    {
      if (!allowed[i])
        continue;
      float x = v[i];
      if (have < m)
        best[have++] = x;
      else
        {
          guint lo = 0;
          for (guint j = 1; j < m; j++)
            if (best[j] < best[lo])
              lo = j;
          if (x > best[lo])
            best[lo] = x;
          else
            continue;
        }
    }
  float s = 0;
  /* fixed order: sort descending, then add */
  for (guint i = 0; i < have; i++)
    for (guint j = i + 1; j < have; j++)
      if (best[j] > best[i])
        {
          float t = best[i];
          best[i] = best[j];
          best[j] = t;
        }
  for (guint i = 0; i < have; i++)
    s += best[i];
  return s;
}

/* Keeps the `keep` best of `n` blocks of `size` entries by block score;
 * returns the margin between the weakest kept and the best dropped block
 * (INFINITY when none was dropped). */
static float
limit_blocks (const float *sel, guint8 *allowed, guint n, guint size, guint keep, gboolean by_max,
              guint top)
{
  float score[1024];
  guint8 block_ok[1024];
  g_assert (n <= 1024);
  for (guint b = 0; b < n; b++)
    {
      const float *v = sel + (gsize) b * size;
      const guint8 *a = allowed + (gsize) b * size;
      gboolean any = FALSE;
      for (guint i = 0; i < size; i++)
        any |= a[i];
      block_ok[b] = any;
      if (!any)
        score[b] = -INFINITY;
      else if (by_max)
        {
          gint m = argmax_allowed (v, a, size);
          score[b] = v[m];
        }
      else
        score[b] = top_sum (v, a, size, top);
    }
  guint8 chosen[1024] = { 0 };
  float weakest = INFINITY;
  for (guint k = 0; k < keep; k++)
    {
      gint best = argmax_allowed (score, block_ok, n);
      if (best < 0)
        break;
      chosen[best] = 1;
      block_ok[best] = 0;
      weakest = score[best];
    }
  gint next = argmax_allowed (score, block_ok, n);
  for (guint b = 0; b < n; b++)
    if (!chosen[b])
      memset (allowed + (gsize) b * size, 0, size);
  return next < 0 ? INFINITY : weakest - score[next];
}

/* Scores, biased selection scores and the mask left by the group and node
 * limits; returns the smallest margin of those limits' block choices. */
static float
select_prepare (const GateConfig *g, const float *logits, const float *bias, float *scores,
                float *sel, guint8 *allowed)
{
  guint E = g->experts;
  g_assert (E <= 4096);
  if (g->scoring == GATE_SIGMOID)
    for (guint e = 0; e < E; e++)
      scores[e] = 1.0f / (1.0f + expf (-logits[e]));
  else
    {
      float mx = logits[0];
      for (guint e = 1; e < E; e++)
        mx = MAX (mx, logits[e]);
      float sum = 0;
      for (guint e = 0; e < E; e++)
        {
          scores[e] = expf (logits[e] - mx);
          sum += scores[e];
        }
      for (guint e = 0; e < E; e++)
        scores[e] /= sum;
    }
  for (guint e = 0; e < E; e++)
    {
      sel[e] = (g->use_bias && bias) ? scores[e] + bias[e] : scores[e];
      allowed[e] = 1;
    }
  /* (not MIN (margin, limit_blocks (...)): the macro would run the limit
   * twice, the second time on the mask the first left, and return its
   * INFINITY) */
  float margin = INFINITY;
  if (g->n_group > 1 && g->topk_group < g->n_group)
    {
      float m = limit_blocks (sel, allowed, g->n_group, E / g->n_group, g->topk_group,
                              g->group_score == GATE_GROUP_MAX, 2);
      margin = MIN (margin, m);
    }
  if (g->node_limit > 0 && g->experts_per_node > 0 && E / g->experts_per_node > g->node_limit)
    {
      float m = limit_blocks (sel, allowed, E / g->experts_per_node, g->experts_per_node,
                              g->node_limit, FALSE, (g->top_k + g->node_limit - 1) / g->node_limit);
      margin = MIN (margin, m);
    }
  return margin;
}

float
gate_select_mask (const GateConfig *g, const float *logits, const float *bias, float *sel,
                  guint8 *allowed)
{
  float scores[4096];
  return select_prepare (g, logits, bias, scores, sel, allowed);
}

void
gate_select (const GateConfig *g, const float *logits, const float *bias, gint32 *ids,
             float *weights)
{
  guint E = g->experts;
  float scores[4096], sel[4096];
  guint8 allowed[4096];
  select_prepare (g, logits, bias, scores, sel, allowed);
  float sum = 0;
  for (guint k = 0; k < g->top_k; k++)
    {
      gint best = argmax_allowed (sel, allowed, E);
      ids[k] = best;
      if (best < 0)
        {
          weights[k] = 0;
          continue;
        }
      allowed[best] = 0;
      weights[k] = scores[best];
      sum += scores[best];
    }
  for (guint k = 0; k < g->top_k; k++)
    {
      if (g->normalize && sum > 0)
        weights[k] /= sum;
      weights[k] *= (float) g->scaling;
    }
}

/* ---- logits GEMM ----
 *
 * Every dot product is 16 interleaved partial sums, lane l being the chain
 * of fused multiply-adds over h = l, l + 16, l + 32, ... in increasing h;
 * then the 16 partial sums are added in lane order, then the tail. The
 * AVX-512 kernel does exactly that with one 16-wide vfmadd per step, the
 * AVX2+FMA kernel with two 8-wide halves (lanes 0-7, then 8-15), the
 * portable kernel with fmaf(), which C defines as the same correctly rounded
 * operation. Blocking
 * over h keeps each lane's chain in the same order. So the bits depend only
 * on the inputs, never on the processor, the blocking or the threads.
 *
 * Blocking: a thread takes chunks of TC tokens; for each slice of HC
 * channels (the chunk's rows stay in L2, four weight rows in L1) it walks
 * blocks of TB tokens x EB experts, keeping TB x EB vector accumulators in
 * registers and parking them in `acc` between slices. */

#define LANES 16
#define TB 4   /* tokens per block */
#define EB 6   /* experts per block: AVX-512 keeps all 4 x 6 accumulators in 24 of its 32
                  registers; AVX2 walks the block in 4 x 2 pieces (8 + 4 + 1 of 16) */
#define EP 2   /* experts per AVX2 piece */
#define TC 48  /* tokens per chunk */
#define HC 512 /* channels per slice */

/* Kernels take row pointers at the start of a slice and its length n (a
 * multiple of LANES; slices start at multiples of LANES, so lane l of a
 * slice is lane l of the row). */
typedef void (*BlockKernel) (const float *const *x, const float *const *w, guint n,
                             float *acc /* [TB][EB][LANES] */);

static void
block_portable (const float *const *x, const float *const *w, guint n, float *acc)
{
  for (guint h = 0; h < n; h += LANES)
    for (guint t = 0; t < TB; t++)
      for (guint e = 0; e < EB; e++)
        for (guint l = 0; l < LANES; l++)
          {
            float *a = &acc[(t * EB + e) * LANES + l];
            *a = fmaf (x[t][h + l], w[e][h + l], *a);
          }
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__ ((target ("avx2,fma"))) static void
block_fma (const float *const *x, const float *const *w, guint n, float *acc)
{
  for (guint e0 = 0; e0 < EB; e0 += EP)
    for (guint half = 0; half < LANES; half += 8)
      {
        __m256 a[TB][EP];
        #pragma GCC unroll 8
        for (guint t = 0; t < TB; t++)
          #pragma GCC unroll 8
          for (guint e = 0; e < EP; e++)
            a[t][e] = _mm256_loadu_ps (&acc[(t * EB + e0 + e) * LANES + half]);
        for (guint h = half; h < n; h += LANES)
          {
            __m256 xv[TB];
            #pragma GCC unroll 8
            for (guint t = 0; t < TB; t++)
              xv[t] = _mm256_loadu_ps (x[t] + h);
            #pragma GCC unroll 8
            for (guint e = 0; e < EP; e++)
              {
                __m256 wv = _mm256_loadu_ps (w[e0 + e] + h);
                #pragma GCC unroll 8
                for (guint t = 0; t < TB; t++)
                  a[t][e] = _mm256_fmadd_ps (xv[t], wv, a[t][e]);
              }
          }
        #pragma GCC unroll 8
        for (guint t = 0; t < TB; t++)
          #pragma GCC unroll 8
          for (guint e = 0; e < EP; e++)
            _mm256_storeu_ps (&acc[(t * EB + e0 + e) * LANES + half], a[t][e]);
      }
}

__attribute__ ((target ("avx512f"))) static void
block_avx512 (const float *const *x, const float *const *w, guint n, float *acc)
{
  __m512 a[TB][EB];
  #pragma GCC unroll 8
  for (guint t = 0; t < TB; t++)
    #pragma GCC unroll 8
    for (guint e = 0; e < EB; e++)
      a[t][e] = _mm512_loadu_ps (&acc[(t * EB + e) * LANES]);
  for (guint h = 0; h < n; h += LANES)
    {
      __m512 xv[TB];
      #pragma GCC unroll 8
      for (guint t = 0; t < TB; t++)
        xv[t] = _mm512_loadu_ps (x[t] + h);
      #pragma GCC unroll 8
      for (guint e = 0; e < EB; e++)
        {
          __m512 wv = _mm512_loadu_ps (w[e] + h);
          #pragma GCC unroll 8
          for (guint t = 0; t < TB; t++)
            a[t][e] = _mm512_fmadd_ps (xv[t], wv, a[t][e]);
        }
    }
  #pragma GCC unroll 8
  for (guint t = 0; t < TB; t++)
    #pragma GCC unroll 8
    for (guint e = 0; e < EB; e++)
      _mm512_storeu_ps (&acc[(t * EB + e) * LANES], a[t][e]);
}
#endif

static BlockKernel
pick_kernel (GateImpl impl)
{
#if defined(__x86_64__)
  __builtin_cpu_init ();
  if (impl == GATE_IMPL_AUTO && __builtin_cpu_supports ("avx512f"))
    return block_avx512;
  if (impl != GATE_IMPL_PORTABLE && __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma"))
    return block_fma;
#endif
  (void) impl;
  return block_portable;
}

typedef struct {
  const float *hidden, *weight;
  guint64 t0, t1;
  guint E, H;
  float *out;
  BlockKernel kernel;
} GemmJob;

/* Rows of a slice are copied to buffers with a padded stride: hidden rows
 * are H floats apart (28 KiB at H = 7168, a multiple of 4 KiB), so reading
 * seven of them at once would map every stream to the same L1 sets. */
#define PAD 16

static void
gemm_rows (const GemmJob *j)
{
  guint E = j->E, H = j->H, Hv = H / LANES * LANES;
  guint eblocks = (E + EB - 1) / EB;
  guint stride = HC + PAD;
  g_autofree float *acc = g_new (float, (gsize) ((TC + TB - 1) / TB) * eblocks * TB * EB * LANES);
  g_autofree float *xp = g_new (float, (gsize) TC * stride);
  g_autofree float *wp = g_new (float, (gsize) eblocks * EB * stride);
  for (guint64 c0 = j->t0; c0 < j->t1; c0 += TC)
    {
      guint64 c1 = MIN (j->t1, c0 + TC);
      guint rows = (guint) (c1 - c0);
      guint tblocks = (rows + TB - 1) / TB;
      memset (acc, 0, (gsize) tblocks * eblocks * TB * EB * LANES * sizeof (float));
      for (guint h0 = 0; h0 < Hv; h0 += HC)
        {
          guint n = MIN (Hv, h0 + HC) - h0;
          for (guint r = 0; r < rows; r++)
            memcpy (xp + (gsize) r * stride, j->hidden + (c0 + r) * H + h0, n * sizeof (float));
          for (guint e = 0; e < E; e++)
            memcpy (wp + (gsize) e * stride, j->weight + (gsize) e * H + h0, n * sizeof (float));
          for (guint eb = 0; eb < eblocks; eb++)
            {
              const float *w[EB];
              for (guint i = 0; i < EB; i++)
                w[i] = wp + (gsize) MIN (eb * EB + i, E - 1) * stride;
              for (guint tb = 0; tb < tblocks; tb++)
                {
                  const float *x[TB];
                  for (guint i = 0; i < TB; i++)
                    x[i] = xp + (gsize) MIN (tb * TB + i, rows - 1) * stride;
                  j->kernel (x, w, n, acc + ((gsize) tb * eblocks + eb) * TB * EB * LANES);
                }
            }
        }
      /* lanes in order, then the tail */
      for (guint tb = 0; tb < tblocks; tb++)
        for (guint eb = 0; eb < eblocks; eb++)
          for (guint t = 0; t < TB; t++)
            for (guint e = 0; e < EB; e++)
              {
                guint64 tok = c0 + tb * TB + t;
                guint ex = eb * EB + e;
                if (tok >= c1 || ex >= E)
                  continue;
                const float *a = acc + (((gsize) tb * eblocks + eb) * TB * EB + t * EB + e) * LANES;
                float s = 0;
                for (guint l = 0; l < LANES; l++)
                  s += a[l];
                const float *xr = j->hidden + tok * H, *wr = j->weight + (gsize) ex * H;
                for (guint r = Hv; r < H; r++)
                  s = fmaf (xr[r], wr[r], s);
                j->out[tok * E + ex] = s;
              }
    }
}

static gpointer
gemm_thread (gpointer data)
{
  gemm_rows (data);
  return NULL;
}

void
gate_logits (const float *hidden, guint64 tokens, const float *weight, guint experts,
             guint hidden_size, float *out, guint threads, GateImpl impl)
{
  if (threads == 0)
    threads = g_get_num_processors ();
  threads = (guint) MAX (1, MIN ((guint64) MIN (threads, 64u), (tokens + TC - 1) / TC));
  BlockKernel k = pick_kernel (impl);
  GemmJob jobs[64];
  GThread *th[64] = { NULL };
  for (guint i = 0; i < threads; i++)
    {
      /* chunk-aligned split, so a chunk never straddles two threads */
      guint64 chunks = (tokens + TC - 1) / TC;
      guint64 a = MIN (tokens, chunks * i / threads * TC), b = MIN (tokens, chunks * (i + 1) / threads * TC);
      jobs[i] = (GemmJob){ hidden, weight, a, b, experts, hidden_size, out, k };
      if (i > 0)
        th[i] = g_thread_new ("gate", gemm_thread, &jobs[i]);
    }
  gemm_rows (&jobs[0]);
  for (guint i = 1; i < threads; i++)
    g_thread_join (th[i]);
}

void
gate_route (const GateConfig *g, const float *hidden, guint64 tokens, const float *weight,
            const float *bias, gint32 *ids, float *out_weights, guint threads)
{
  const guint64 chunk = 1024; /* bounds the logits buffer */
  g_autofree float *logits = g_new (float, chunk * g->experts);
  for (guint64 t0 = 0; t0 < tokens; t0 += chunk)
    {
      guint64 n = MIN (chunk, tokens - t0);
      gate_logits (hidden + t0 * g->hidden, n, weight, g->experts, g->hidden, logits, threads,
                   GATE_IMPL_AUTO);
      for (guint64 i = 0; i < n; i++)
        gate_select (g, logits + i * g->experts, bias, ids + (t0 + i) * g->top_k,
                     out_weights + (t0 + i) * g->top_k);
    }
}

/* ---- synthetic inputs ---- */

static inline double
normal (Rng *r)
{
  /* Box-Muller from two 32-bit uniforms in (0, 1) */
  double u1 = (rng_bits (r, 32) + 1.0) / 4294967297.0;
  double u2 = rng_bits (r, 32) / 4294967296.0;
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

typedef struct {
  const GateSynth *s;
  const float *centre;
  const double *cdf;
  double tot;
  guint H;
  guint64 a, b; /* tokens [a, b) */
  float *out;
} SynthJob;

/* Tokens [a, b): each token, and each document's topic, has a random stream
 * of its own, so the values do not depend on how tokens are split. */
static gpointer
synth_rows (gpointer data)
{
  const SynthJob *j = data;
  const GateSynth *s = j->s;
  guint doc_len = MAX (1u, s->doc_tokens);
  guint topic = 0;
  for (guint64 t = j->a; t < j->b; t++)
    {
      if (t % doc_len == 0 || t == j->a)
        {
          Rng r;
          rng_seed (&r, s->seed, 0xd0c, t / doc_len);
          double u = rng_bits (&r, 32) / 4294967296.0 * j->tot;
          topic = 0;
          while (topic + 1 < s->topics && j->cdf[topic] <= u)
            topic++;
        }
      Rng r;
      rng_seed (&r, s->seed, 0x70c, t);
      float *x = j->out + t * j->H;
      const float *c = j->centre + (gsize) topic * j->H;
      for (guint h = 0; h < j->H; h++)
        x[h] = (float) (s->strength * c[h] + normal (&r));
    }
  return NULL;
}

void
gate_synth_hidden (const GateSynth *s, guint H, guint64 tokens, float *out, guint threads)
{
  /* topic centres */
  g_autofree float *centre = g_new (float, (gsize) s->topics * H);
  for (guint c = 0; c < s->topics; c++)
    {
      Rng r;
      rng_seed (&r, s->seed, 0x7091c, c);
      for (guint h = 0; h < H; h++)
        centre[(gsize) c * H + h] = (float) normal (&r);
    }
  /* Zipf cumulative weights over topics */
  g_autofree double *cdf = g_new (double, s->topics);
  double tot = 0;
  for (guint c = 0; c < s->topics; c++)
    cdf[c] = (tot += 1.0 / pow (c + 1.0, s->zipf));
  if (threads == 0)
    threads = g_get_num_processors ();
  threads = (guint) MAX (1, MIN ((guint64) MIN (threads, 64u), tokens / 256));
  SynthJob jobs[64];
  GThread *th[64] = { NULL };
  for (guint i = 0; i < threads; i++)
    {
      jobs[i] = (SynthJob){ s, centre, cdf, tot, H, tokens * i / threads, tokens * (i + 1) / threads, out };
      if (i > 0)
        th[i] = g_thread_new ("synth", synth_rows, &jobs[i]);
    }
  synth_rows (&jobs[0]);
  for (guint i = 1; i < threads; i++)
    g_thread_join (th[i]);
}

void
gate_synth_weight (const GateSynth *s, guint layer, guint experts, guint H, float *out)
{
  double scale = 1.0 / sqrt ((double) H);
  for (guint e = 0; e < experts; e++)
    {
      Rng r;
      rng_seed (&r, s->seed, 0x3e19 + ((guint64) layer << 20), e);
      for (guint h = 0; h < H; h++)
        out[(gsize) e * H + h] = (float) (normal (&r) * scale);
    }
}
