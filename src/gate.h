/* The MoE gate (router), CPU reference.
 *
 * Per token: logits = x . W^T (x is [H], W is [E, H], accumulated in f32);
 * scores = softmax(logits) or sigmoid(logits); selection uses scores + bias
 * (DeepSeek's noaux_tc e_score_correction_bias; never in the weights);
 * group-limited choice keeps the topk_group best of n_group groups (group
 * score = sum of the top-2 biased scores, or the group max); node-limited
 * choice keeps the node_limit best nodes given experts_per_node (node score =
 * sum of the top ceil(k / node_limit) biased scores, DeepSeek-V3's rule);
 * then the top_k experts by biased score. Weights are the unbiased scores of
 * the chosen experts, optionally divided by their sum, times
 * routed_scaling_factor. Ties go to the lower expert index, so the result is
 * a pure function of the inputs.
 *
 * The logits GEMM is cache-blocked over tokens and experts with a fixed
 * summation order, so results are identical run to run and thread count to
 * thread count.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum { GATE_SOFTMAX, GATE_SIGMOID } GateScoring;
typedef enum { GATE_GROUP_TOP2_SUM, GATE_GROUP_MAX } GateGroupScore;

typedef struct {
  const char *name;
  guint hidden, experts, top_k;
  GateScoring scoring;
  gboolean use_bias;
  guint n_group, topk_group; /* 1, 1: no group limit */
  GateGroupScore group_score;
  guint node_limit, experts_per_node; /* 0: no node limit */
  gboolean normalize;
  double scaling;
} GateConfig;

/* Presets: "deepseek-v3", "mixtral", "qwen-moe". NULL when unknown. */
const GateConfig *gate_preset (const char *name);
/* Comma-separated preset names, for messages. */
const char *gate_preset_names (void);

/* Routes `tokens` tokens: hidden [tokens, H] f32, weight [E, H] f32, bias [E]
 * or NULL; writes ids [tokens, top_k] and weights [tokens, top_k]. Uses up to
 * `threads` threads (0 = all cores); the result does not depend on it. */
void gate_route (const GateConfig *g, const float *hidden, guint64 tokens, const float *weight,
                 const float *bias, gint32 *ids, float *out_weights, guint threads);

/* For tests: one token's biased selection scores and the experts its group
 * and node limits leave allowed; returns the margin of those limits' choices
 * (weakest kept minus best dropped block score, INFINITY if none dropped). */
float gate_select_mask (const GateConfig *g, const float *logits, const float *bias, float *sel,
                        guint8 *allowed);

/* The selection alone, for one token's E logits (exposed for tests). */
void gate_select (const GateConfig *g, const float *logits, const float *bias, gint32 *ids,
                  float *weights);

typedef enum { GATE_IMPL_AUTO, GATE_IMPL_AVX2, GATE_IMPL_PORTABLE } GateImpl;

/* Logits GEMM alone: out [tokens, E] = hidden [tokens, H] . weight^T. AUTO
 * uses the fastest kernel the processor has (AVX-512, else AVX2+FMA), AVX2
 * the AVX2+FMA one where present, PORTABLE the plain C one. All give the
 * same bits (tests check). */
void gate_logits (const float *hidden, guint64 tokens, const float *weight, guint experts,
                  guint hidden_size, float *out, guint threads, GateImpl impl);

/* ---- synthetic inputs ---- */

typedef struct {
  guint64 seed;
  guint topics;        /* clusters of hidden states */
  double zipf;         /* topic popularity exponent (0 = uniform) */
  double strength;     /* cluster centre weight against per-token noise */
  guint doc_tokens;    /* consecutive tokens sharing a topic (a document) */
} GateSynth;

extern const GateSynth gate_synth_default;

/* Hidden states [tokens, H]: token t belongs to document t / doc_tokens,
 * whose topic is drawn from a Zipf(zipf) law over `topics`; x = strength *
 * centre(topic) + noise, centres and noise N(0, 1) per channel. Made on up
 * to `threads` threads (0 = all cores); the values do not depend on it. */
void gate_synth_hidden (const GateSynth *s, guint hidden_size, guint64 tokens, float *out, guint threads);
/* Gate weights [E, H] of layer `layer`, N(0, 1 / H) per entry, and per-expert
 * bias (zero). */
void gate_synth_weight (const GateSynth *s, guint layer, guint experts, guint hidden_size,
                        float *out);

G_END_DECLS
