/* Builds the per-step task graph into the engine (a step's flows in
 * moe_flows.c) and folds engine hooks into per-layer and per-GPU results. */
#include "moe_state.h"

#include "gpumodel.h"
#include "loadstats.h"
#include "util.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Logical bytes the way DeepEP's benchmarks count them
 * (shared/reference/deepseek-v3.md): normal internode kernels one copy per
 * distinct (token, destination node), own node included; intranode kernels
 * (and direct dispatch) the tokens each rank receives, deduplicated per
 * rank, own included; low-latency kernels one copy per (token, expert)
 * selection. Dispatch at the dispatch payload (FP8: 7392 B at H 7168, LL:
 * 7408 B), combine at the combine payload (backward: both at the gradient
 * dtype's). */
static void
logical_bytes (Moe *m, LayerResult *lr, const RoutingLayer *r)
{
  guint ep = m->ep;
  double copies = 0;
  double db = m->db;
  if (m->s->dispatch == DISPATCH_LOW_LATENCY)
    for (gsize i = 0; i < (gsize) ep * ep; i++)
      copies += r->pair_selections[i];
  else if (m->s->dispatch == DISPATCH_HIERARCHICAL && ep > r->gpus_per_node)
    for (gsize i = 0; i < (gsize) ep * (ep / r->gpus_per_node); i++)
      copies += r->node_tokens[i];
  else
    for (gsize i = 0; i < (gsize) ep * ep; i++)
      copies += r->pair_tokens[i];
  lr->logical_dispatch_bytes = copies * db;
  lr->logical_combine_bytes = copies * m->cb;
}

const char *
moe_step_pass (const RunResult *r, guint step)
{
  if (r->layers[step].backward)
    return "backward";
  return r->pass == PASS_PREFILL || r->pass == PASS_DECODE ? pass_names[r->pass] : "forward";
}

/* Compute time of `seconds` on a GPU whose communication kernels may be
 * running alongside (`overlapped`): they hold comm_sms of its SMs. */
static SimTime
compute_time (const Moe *m, double seconds, gboolean overlapped)
{
  return sim_time_from_seconds (seconds * (overlapped ? m->overlap_slowdown : 1.0));
}

/* The routing of a step: the balanced counterfactual's, a train_step
 * backward step's forward twin, or the next of the stream. */
static const RoutingLayer *
step_routing (Moe *m, guint step)
{
  const StepInfo *si = &m->steps[step];
  const RoutingLayer *r;
  if (m->balanced)
    {
      balance_layer (m->classes, balance_feed_wait (m->feed, step), m->balanced);
      return m->balanced;
    }
  r = si->mirror != G_MAXUINT ? m->stash[si->mirror] : routing_stream_get (m->routing, step);
  if (m->stash && si->mirror == G_MAXUINT)
    r = m->stash[step] = routing_stream_take (m->routing, step); /* kept for its backward step */
  if (m->feed)
    {
      balance_record (m->classes, r, &m->feed->totals[step]);
      balance_feed_publish (m->feed, step + 1);
    }
  return r;
}

static void
build_step (Moe *m, guint step)
{
  const ScenarioSpec *s = m->s;
  const StepInfo *si = &m->steps[step];
  guint ep = m->ep;
  const RoutingLayer *r = step_routing (m, step);

  LayerResult *lr = &m->res->layers[step];
  lr->layer = si->layer;
  lr->microbatch = si->mb;
  lr->backward = si->backward;
  guint per_gpu = r->experts / ep;
  gboolean ll = s->dispatch == DISPATCH_LOW_LATENCY;
  /* backward: gradients to the experts and back, both in the gradient dtype */
  m->db = si->backward ? m->grad_token_bytes : ll ? m->ll_dispatch_token_bytes : m->dispatch_token_bytes;
  m->cb = si->backward ? m->grad_token_bytes : m->combine_token_bytes;
  double work = si->backward ? 2.0 : 1.0; /* data- and weight-gradient GEMMs */
  gboolean two_mb = s->overlap == OVERLAP_TWO_MICROBATCH;
  gboolean split_shared = s->overlap != OVERLAP_NONE;
  EngineTask *chain = m->prev_done + (gsize) (two_mb ? si->mb : 0) * ep;

  /* per GPU: start; the block (attention / dense part); the router GEMM and
   * the permute of the tokens into send buffers, after which dispatch
   * starts; the shared expert (during dispatch unless overlap is none); the
   * routed experts with their activation; after the combine, the unpermute
   * (weighted sum of the returned copies). A GPU runs the oldest step's
   * ready compute first, and within a step the shared expert (filler work
   * while tokens travel) last. */
  g_autofree EngineTask *start = g_new (EngineTask, ep);
  g_autofree EngineTask *send = g_new (EngineTask, ep);
  g_autofree EngineTask *expert = g_new (EngineTask, ep);
  g_autofree EngineTask *post = g_new (EngineTask, ep);
  g_autofree EngineTask *done = g_new (EngineTask, ep);
  double H = (double) s->model.hidden, I = (double) s->model.moe_intermediate;
  double tokens = (double) m->tokens_per_mb;
  double block_s = work * gpumodel_block (m->t, s, m->tokens_per_mb).seconds; /* 0 without a block */
  ComputeCost shared = gpumodel_shared_ffn (m->t, s, m->tokens_per_mb);
  double shared_act = gpumodel_activation (m->t, s, tokens * (double) s->model.shared_experts, I);
  double router_s = work * gpumodel_router (m->t, s, m->tokens_per_mb);
  const guint32 *copies = ll ? r->pair_selections : r->pair_tokens;
  for (guint g = 0; g < ep; g++)
    {
      GpuStepResult *gs = &m->res->gpu_steps[(gsize) step * ep + g];
      start[g] = engine_nop (m->engine, TAG (TAG_START, step, g));
      engine_depend (m->engine, chain[g], start[g]);
      EngineTask ready = start[g];
      if (block_s > 0)
        {
          ready = engine_compute_prio (m->engine, g, compute_time (m, block_s, two_mb), 4 * step,
                                       TAG (TAG_FLOW, step, g));
          engine_depend (m->engine, start[g], ready);
        }
      /* token copies g sends and gets back (its own included) */
      double out = 0;
      for (guint d = 0; d < ep; d++)
        out += copies[(gsize) g * ep + d];
      double permute_s = gpumodel_memory_kernel (m->t, tokens * H * 2.0 + out * m->db);
      double unpermute_s = gpumodel_memory_kernel (m->t, out * m->cb + tokens * H * 2.0);
      send[g] = engine_compute_prio (m->engine, g, compute_time (m, router_s + permute_s, two_mb), 4 * step + 1,
                                     TAG (TAG_PREP, step, g));
      engine_depend (m->engine, ready, send[g]);
      ComputeCost routed = gpumodel_grouped_ffn (m->t, s, r->expert_rows + (gsize) g * per_gpu, per_gpu);
      double rows = 0;
      for (guint e = 0; e < per_gpu; e++)
        rows += r->expert_rows[(gsize) g * per_gpu + e];
      double act = work * gpumodel_activation (m->t, s, rows, I);
      double expert_s = work * routed.seconds + act + (split_shared ? 0.0 : work * shared.seconds + work * shared_act);
      expert[g] = engine_compute_prio (m->engine, g, compute_time (m, expert_s, two_mb), 4 * step + 2,
                                       TAG (TAG_EXPERT, step, g));
      engine_depend (m->engine, send[g], expert[g]);
      post[g] = engine_compute_prio (m->engine, g, compute_time (m, unpermute_s, two_mb), 4 * step + 2,
                                     TAG (TAG_FLOW, step, g));
      done[g] = engine_nop (m->engine, TAG (TAG_DONE, step, g));
      engine_depend (m->engine, expert[g], post[g]);
      engine_depend (m->engine, post[g], done[g]);
      if (split_shared && shared.seconds > 0)
        {
          EngineTask sh = engine_compute_prio (m->engine, g, compute_time (m, work * (shared.seconds + shared_act), TRUE),
                                               4 * step + 3, TAG (TAG_SHARED, step, g));
          engine_depend (m->engine, ready, sh);
          engine_depend (m->engine, sh, done[g]);
        }
      chain[g] = done[g];
      /* GEMMs (routed, shared, router) against the rest, at full SMs */
      gs->gemm_us = (work * (routed.seconds + shared.seconds) + router_s) * 1e6;
      gs->other_us = (act + work * shared_act + permute_s + unpermute_s) * 1e6;
    }
  memcpy (m->res->expert_rows + (gsize) step * r->experts, r->expert_rows, r->experts * sizeof (guint32));
  guint nodes = ep / r->gpus_per_node;
  for (guint n = 0; n <= nodes; n++)
    m->res->fanout[(gsize) step * (nodes + 1) + n] = r->fanout[n];
  for (guint src = 0; src < ep; src++)
    for (guint dst = 0; dst < ep; dst++)
      {
        m->res->gpus[dst].tokens_in += r->pair_tokens[(gsize) src * ep + dst];
        m->res->gpu_steps[(gsize) step * ep + dst].tokens_in += r->pair_tokens[(gsize) src * ep + dst];
      }
  logical_bytes (m, lr, r);
  if (m->gates)
    for (guint p = 0; p < 2; p++)
      {
        gsize row = ((gsize) si->mb * 2 + p) * ep;
        m->gate[p] = m->gates + row;
        m->join[p] = m->joins + row;
        for (guint g = 0; g < ep; g++)
          {
            m->gate[p][g] = engine_nop (m->engine, TAG (TAG_FLOW, step, g));
            m->join[p][g] = engine_nop (m->engine, TAG (TAG_FLOW, step, g));
            engine_depend (m->engine, m->gate[p][g], m->join[p][g]);
            /* a phase's kernel starts with the step (dispatch) or its experts (combine) */
            engine_depend (m->engine, p == 0 ? send[g] : expert[g], m->gate[p][g]);
          }
      }
  if (s->dispatch == DISPATCH_HIERARCHICAL)
    moe_build_hierarchical (m, lr, step, r, send, expert, post);
  else
    moe_build_direct (m, lr, step, copies, send, expert, post);
  m->built = step + 1;
  if (m->stash && si->mirror != G_MAXUINT)
    g_clear_pointer (&m->stash[si->mirror], routing_layer_free);
}

/* The dense FFN layers (model.dense_layers) on every GPU, compute only:
 * before the first MoE layer in a forward pass, after the last one
 * backward (twice the work); each its GEMMs, activation and a norm. */
static void
add_dense (Moe *m, gboolean backward)
{
  const ScenarioSpec *s = m->s;
  double L = (double) s->model.dense_layers, work = backward ? 2.0 : 1.0;
  guint64 tokens = (guint64) s->parallel.tokens_per_gpu;
  double H = (double) s->model.hidden;
  double gemm = work * L * gpumodel_dense_ffn (m->t, s, tokens).seconds;
  double other = L * (work * gpumodel_activation (m->t, s, (double) tokens, (double) s->model.dense_intermediate)
                      + gpumodel_memory_kernel (m->t, (double) tokens * H * 2.0 * 2.0));
  m->res->dense_gemm_us += gemm * 1e6;
  m->res->dense_other_us += other * 1e6;
  for (guint g = 0; g < m->ep; g++)
    {
      EngineTask d = engine_compute_prio (m->engine, g, sim_time_from_seconds (gemm + other),
                                          backward ? G_MAXUINT : 0, TAG (TAG_FLOW, 0, g));
      for (guint c = 0; c < m->chains; c++)
        {
          engine_depend (m->engine, m->prev_done[(gsize) c * m->ep + g], d);
          m->prev_done[(gsize) c * m->ep + g] = d;
        }
    }
}

/* Builds the next group of steps (a layer's micro-batches in flight
 * together, or one step) and commits it: with micro-batches in flight each
 * GPU's communication phases run one after the other, the dispatches of
 * the group's micro-batches, then their combines. */
static void
build_group (Moe *m)
{
  guint n = m->gates ? m->chains : 1;
  for (guint i = 0; i < n && m->built < m->n_steps; i++)
    build_step (m, m->built);
  if (m->gates)
    for (guint g = 0; g < m->ep; g++)
      {
        EngineTask prev = m->comm_prev[g];
        for (guint p = 0; p < 2; p++)
          for (guint mb = 0; mb < n; mb++)
            {
              gsize row = ((gsize) mb * 2 + p) * m->ep;
              engine_depend (m->engine, prev, m->gates[row + g]);
              prev = m->joins[row + g];
            }
        m->comm_prev[g] = prev;
      }
  m->gate[0] = m->gate[1] = m->join[0] = m->join[1] = NULL;
  if (m->built == m->n_steps && m->s->model.dense_layers > 0 && m->steps[m->n_steps - 1].backward)
    add_dense (m, TRUE);
  engine_commit (m->engine);
}

static void
on_started (void *user, guint64 tag, SimTime now)
{
  Moe *m = user;
  guint kind = TAG_KIND (tag), step = TAG_STEP (tag), g = TAG_GPU (tag);
  if (kind == TAG_START)
    {
      GpuTimes *gt = &m->times[(gsize) step * m->ep + g];
      gt->start = gt->send = now;
      /* the first GPU to start a step: report it, and keep a group of
       * steps (the chains in flight) built beyond it */
      if (step + 1 > m->reported)
        {
          m->reported = step + 1;
          if (m->watch.progress)
            m->watch.progress (m->watch.user, m->reported, m->n_steps);
        }
      while (m->built < m->n_steps && m->built <= step + m->chains)
        build_group (m);
    }
  else if (kind == TAG_EXPERT)
    m->times[(gsize) step * m->ep + g].expert_start = now;
}

static void
fold_phase (PhaseStat *p, double v, guint ep)
{
  p->max_us = MAX (p->max_us, v);
  p->mean_us += v / ep;
}

static const double *
expert_rows_f (const RunResult *res, guint step, double *out)
{
  for (guint e = 0; e < res->experts; e++)
    out[e] = (double) res->expert_rows[(gsize) step * res->experts + e];
  return out;
}

/* A step every GPU is done with: its results from the times recorded. */
static void
finish_step (Moe *m, guint st)
{
  RunResult *res = m->res;
  guint ep = m->ep;
  LayerResult *lr = &res->layers[st];
  SimTime first = SIM_TIME_MAX, last = 0;
  for (guint g = 0; g < ep; g++)
    {
      const GpuTimes *gt = &m->times[(gsize) st * ep + g];
      GpuStepResult *gs = &res->gpu_steps[(gsize) st * ep + g];
      first = MIN (first, gt->start);
      last = MAX (last, gt->done);
      gs->start_us = sim_time_to_us (gt->start);
      gs->fed_by = m->fed_by ? m->fed_by[(gsize) st * ep + g] : G_MAXUINT32;
      gs->prep_us = sim_time_to_us (gt->send - gt->start);
      gs->dispatch_us = sim_time_to_us (gt->expert_start - gt->send);
      gs->expert_us = sim_time_to_us (gt->expert_end - gt->expert_start);
      gs->combine_us = sim_time_to_us (gt->done - gt->expert_end);
      fold_phase (&lr->prep, gs->prep_us, ep);
      fold_phase (&lr->dispatch, gs->dispatch_us, ep);
      fold_phase (&lr->expert, gs->expert_us, ep);
      fold_phase (&lr->combine, gs->combine_us, ep);
    }
  lr->start_us = sim_time_to_us (first);
  lr->end_us = sim_time_to_us (last);
  load_stats (expert_rows_f (res, st, m->rows_scratch), res->experts, &lr->expert_load);
  for (guint g = 0; g < ep; g++)
    m->tokens_scratch[g] = (double) res->gpu_steps[(gsize) st * ep + g].tokens_in;
  load_stats (m->tokens_scratch, ep, &lr->gpu_tokens);
  /* bytes / us = MB/s; / 1e3 = GB/s */
  if (lr->dispatch.max_us > 0)
    lr->dispatch_logical_gbps = lr->logical_dispatch_bytes / (ep * lr->dispatch.max_us) / 1e3;
  if (lr->combine.max_us > 0)
    lr->combine_logical_gbps = lr->logical_combine_bytes / (ep * lr->combine.max_us) / 1e3;
  for (guint c = 0; c < LCLASS_N; c++)
    res->class_bytes[c] += lr->bytes[c];
  res->comm_window_us += lr->dispatch.max_us + lr->combine.max_us;
}

/* Steps end in order but for the micro-batches in flight: the results of
 * the leading steps all GPUs are done with, in step order (the pass's
 * sums add them up in that order), and the watcher told. */
static void
steps_final (Moe *m)
{
  guint was = m->n_final;
  while (m->n_final < m->n_steps && m->done_count[m->n_final] == m->ep)
    finish_step (m, m->n_final++);
  if (m->n_final > was && m->watch.steps_final)
    m->watch.steps_final (m->watch.user, m->res, m->n_final);
}

/* A flow's last byte was sent; it arrives at `end`. Of a dispatch flow
 * into a GPU, the latest arrival and its source. */
static void
on_flow_arrived (void *user, guint64 tag, SimTime start, SimTime end)
{
  Moe *m = user;
  (void) start;
  if (TAG_KIND (tag) == TAG_DFLOW)
    {
      gsize i = (gsize) DTAG_STEP (tag) * m->ep + DTAG_DST (tag);
      if (end >= m->fed_at[i])
        {
          m->fed_at[i] = end;
          m->fed_by[i] = DTAG_SRC (tag);
        }
    }
}

static void
on_done (void *user, guint64 tag, SimTime start, SimTime end)
{
  Moe *m = user;
  (void) start;
  guint kind = TAG_KIND (tag), step = TAG_STEP (tag), g = TAG_GPU (tag);
  if (kind == TAG_PREP)
    m->times[(gsize) step * m->ep + g].send = end;
  else if (kind == TAG_EXPERT)
    m->times[(gsize) step * m->ep + g].expert_end = end;
  else if (kind == TAG_DONE)
    {
      m->times[(gsize) step * m->ep + g].done = end;
      if (++m->done_count[step] == m->ep)
        steps_final (m);
    }
}

void
run_result_free (RunResult *r)
{
  if (r == NULL)
    return;
  g_free (r->layers);
  g_free (r->gpus);
  g_free (r->gpu_steps);
  g_free (r->expert_rows);
  g_free (r->fanout);
  g_free (r->bottleneck_link);
  g_free (r->util_group_class);
  g_free (r->util_group_capacity);
  g_free (r->util_time_us);
  g_free (r->util);
  g_free (r);
}

/* The load of links [l, end), negative rounding left over taken as none:
 * four sums side by side (one serial sum waits for each add), link l + k
 * in sum k % 4, added (0 + 1) + (2 + 3); with SSE2 two at a time, in the
 * same order (the same bits). */
static inline double
run_load (const double *load, guint l, guint end)
{
#ifdef __SSE2__
  __m128d zero = _mm_setzero_pd (), s01 = zero, s23 = zero;
  for (; l + 4 <= end; l += 4)
    {
      /* (maxpd gives its first operand where it is greater: MAX (x, 0)) */
      s01 = _mm_add_pd (s01, _mm_max_pd (_mm_loadu_pd (load + l), zero));
      s23 = _mm_add_pd (s23, _mm_max_pd (_mm_loadu_pd (load + l + 2), zero));
    }
  double a[4];
  _mm_storeu_pd (a, s01);
  _mm_storeu_pd (a + 2, s23);
#else
  double a[4] = { 0.0, 0.0, 0.0, 0.0 };
  for (; l + 4 <= end; l += 4)
    for (guint k = 0; k < 4; k++)
      a[k] += MAX (load[l + k], 0.0);
#endif
  for (; l < end; l++)
    a[0] += MAX (load[l], 0.0);
  return (a[0] + a[1]) + (a[2] + a[3]);
}

/* Samples the load of each link group after rates changed; a sample at the
 * same instant as the previous one replaces it, and an unchanged one is not
 * kept. */
static void
on_rates_changed (void *user, SimTime now)
{
  Moe *m = user;
  RunResult *res = m->res;
  const FlowNet *net = engine_flownet (m->engine);
  guint ng = res->n_util_groups;
  memset (m->group_load, 0, ng * sizeof (double));
  const double *load = flownet_link_loads (net);
  for (guint r = 0; r < m->n_runs; r++)
    m->group_load[m->run_group[r]] += run_load (load, m->run_start[r], m->run_start[r + 1]);
  float *v = g_newa (float, ng);
  for (guint g = 0; g < ng; g++)
    v[g] = res->util_group_capacity[g] > 0 ? (float) (m->group_load[g] / res->util_group_capacity[g]) : 0.0f;
  double t = sim_time_to_us (now);
  guint n = m->util_time->len;
  if (n > 0)
    {
      float *last = &g_array_index (m->util, float, (gsize) (n - 1) * ng);
      if (memcmp (last, v, ng * sizeof (float)) == 0)
        return;
      if (g_array_index (m->util_time, double, n - 1) == t)
        {
          memcpy (last, v, ng * sizeof (float));
          return;
        }
    }
  g_array_append_val (m->util_time, t);
  g_array_append_vals (m->util, v, ng);
}

/* One simulation of the pass: the actual routing (recording each step's
 * totals into `feed` when not NULL), or with `balanced` the counterfactual
 * fed by `feed`. */
RunResult *
moe_simulate (const Scenario *sc, LayerPlacement *const *placement, const MoeWatch *watch,
              BalanceFeed *feed, gboolean balanced, GError **error)
{
  g_assert (scenario_routing_made (sc)); /* (moe_run_watched made it) */
  const ScenarioSpec *s = scenario_spec (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  Moe m = { 0 };
  m.s = s;
  m.t = t;
  m.ep = (guint) s->parallel.ep;
  if (watch)
    m.watch = *watch;
  m.feed = feed;
  m.cluster = cluster_new (t, m.ep, (CrossRail) s->cross_rail, "parallel.ep", error);
  if (m.cluster == NULL)
    return NULL;
  /* the counterfactual keeps only its layer times: no link samples, no
   * last-arrival tracking */
  EngineHooks hooks = { on_started, on_done, balanced ? NULL : on_rates_changed, on_flow_arrived };
  m.engine = engine_new (&hooks, &m, s->sim.tolerance);
  for (guint l = 0; l < cluster_n_links (m.cluster); l++)
    engine_add_link (m.engine, cluster_link_capacity (m.cluster, l));
  for (guint g = 0; g < m.ep; g++)
    engine_add_gpu (m.engine);
  /* communication kernels: with comm_sms, a link per GPU and direction that
   * every transfer of the GPU crosses, at what those SMs drive (not for
   * low-latency transfers in receive-hook mode, which hold no SMs) */
  gboolean ll = s->dispatch == DISPATCH_LOW_LATENCY;
  gboolean hook = ll && s->low_latency.receive_hook;
  m.rdma = ll && !s->low_latency.nvlink;
  m.bundle = s->sim.bundle_flows && s->dispatch != DISPATCH_HIERARCHICAL;
  m.comm_links = s->comm_sms > 0 && !hook;
  m.comm_link0 = cluster_n_links (m.cluster);
  for (guint g = 0; g < 2 * m.ep && m.comm_links; g++)
    engine_add_link (m.engine, (double) s->comm_sms * t->gpu.comm_gbps_per_sm * 1e9);
  m.overlap_slowdown = hook ? 1.0 : (double) t->gpu.sms / (double) (t->gpu.sms - s->comm_sms);

  /* the steps: forward layers 0..L-1, backward layers L-1..0, micro-batches
   * inside each */
  guint L = (guint) s->model.moe_layers, M = (guint) s->parallel.microbatches;
  gboolean fwd = s->pass != PASS_BACKWARD, bwd = s->pass == PASS_BACKWARD || s->pass == PASS_TRAIN_STEP;
  guint positions = (fwd ? L : 0) + (bwd ? L : 0);
  m.n_steps = moe_pass_steps (s);
  g_assert (m.n_steps == positions * M);
  m.steps = g_new (StepInfo, m.n_steps);
  g_autofree guint *stream_layer = g_new (guint, L);
  for (guint k = 0; k < positions; k++)
    {
      gboolean back = !(fwd && k < L);
      guint layer = back ? L - 1 - (k - (fwd ? L : 0)) : k;
      if (k < L)
        stream_layer[k] = layer;
      for (guint mb = 0; mb < M; mb++)
        {
          StepInfo *si = &m.steps[k * M + mb];
          si->layer = layer;
          si->mb = mb;
          si->backward = back;
          si->mirror = fwd && back ? layer * M + mb : G_MAXUINT;
        }
    }
  if (fwd && bwd)
    m.stash = g_new0 (RoutingLayer *, L * M);
  m.chains = s->overlap == OVERLAP_TWO_MICROBATCH ? M : 1;
  if (m.chains > 1)
    {
      m.comm_prev = g_new (EngineTask, m.ep);
      for (guint g = 0; g < m.ep; g++)
        m.comm_prev[g] = ENGINE_TASK_NONE;
      m.gates = g_new (EngineTask, (gsize) m.chains * 2 * m.ep);
      m.joins = g_new (EngineTask, (gsize) m.chains * 2 * m.ep);
    }
  m.tokens_per_mb = (guint) (s->parallel.tokens_per_gpu / s->parallel.microbatches);
  guint slots = (guint) (s->model.experts + s->eplb.redundant);
  m.classes = route_classes_new (m.cluster, (guint) t->node.gpus, m.rdma);
  if (balanced)
    {
      m.balanced = routing_layer_new (m.ep, slots);
      routing_layer_count_nodes (m.balanced, (guint) t->node.gpus);
    }
  else
    {
      guint threads = MAX (1u, g_get_num_processors () - 1); /* the engine keeps a core */
      /* steps generated ahead: enough that the run seldom waits for its
       * (lower priority) routing threads, within 64 MB of pair counts */
      gsize slot_bytes = (gsize) m.ep * m.ep * 2 * sizeof (guint32) + 1;
      guint window = (guint) CLAMP ((gsize) 64 * 1024 * 1024 / slot_bytes, 2 * threads + 1, 16);
      m.routing = routing_stream_new (s, scenario_trace (sc), placement, L * M, stream_layer, m.tokens_per_mb, threads,
                                      window, (guint) t->node.gpus);
    }
  if (m.ep <= 4096) /* at most 256 MB; beyond, each flow gets a route of its own */
    {
      m.pair_route = g_new (PairRoute, (gsize) m.ep * m.ep);
      for (gsize i = 0; i < (gsize) m.ep * m.ep; i++)
        m.pair_route[i].route = G_MAXUINT;
    }
  m.prev_done = g_new (EngineTask, (gsize) m.chains * m.ep);
  for (guint g = 0; g < m.chains * m.ep; g++)
    m.prev_done[g] = ENGINE_TASK_NONE;
  m.times = g_new0 (GpuTimes, (gsize) m.n_steps * m.ep);
  if (!balanced && m.n_steps <= (1u << DTAG_BITS) && m.ep <= (1u << DTAG_BITS))
    {
      m.fed_by = g_new (guint32, (gsize) m.n_steps * m.ep);
      m.fed_at = g_new0 (SimTime, (gsize) m.n_steps * m.ep);
      for (gsize i = 0; i < (gsize) m.n_steps * m.ep; i++)
        m.fed_by[i] = G_MAXUINT32;
    }
  m.dispatch_token_bytes = scenario_token_bytes (s, (Dtype) s->model.dispatch_dtype);
  m.combine_token_bytes = scenario_token_bytes (s, (Dtype) s->model.combine_dtype);
  m.ll_dispatch_token_bytes = m.dispatch_token_bytes + (s->model.dispatch_dtype == DTYPE_FP8 ? 16.0 : 0.0);
  m.grad_token_bytes = scenario_token_bytes (s, (Dtype) s->model.grad_dtype);

  RunResult *res = g_new0 (RunResult, 1);
  m.res = res;
  res->pass = s->pass;
  guint nodes = cluster_n_nodes (m.cluster);
  res->nodes = nodes;
  res->n_util_groups = 2 * nodes + 1;
  res->util_group_class = g_new (LinkClass, res->n_util_groups);
  res->util_group_capacity = g_new0 (double, res->n_util_groups);
  for (guint n = 0; n < nodes; n++)
    {
      res->util_group_class[n] = LCLASS_NVLINK;
      res->util_group_class[nodes + n] = LCLASS_NIC;
    }
  res->util_group_class[2 * nodes] = LCLASS_FABRIC;
  guint n_cluster_links = cluster_n_links (m.cluster);
  m.run_start = g_new (guint, n_cluster_links + 1);
  m.run_group = g_new (guint, MAX (n_cluster_links, 1));
  for (guint l = 0; l < n_cluster_links; l++)
    {
      LinkClass c = cluster_link_class (m.cluster, l);
      guint node = cluster_link_node (m.cluster, l);
      guint g = c == LCLASS_NVLINK ? node : c == LCLASS_NIC ? nodes + node : 2 * nodes;
      if (m.n_runs == 0 || m.run_group[m.n_runs - 1] != g)
        {
          m.run_start[m.n_runs] = l;
          m.run_group[m.n_runs++] = g;
        }
      res->util_group_capacity[g] += cluster_link_capacity (m.cluster, l);
    }
  m.run_start[m.n_runs] = n_cluster_links;
  m.group_load = g_new0 (double, res->n_util_groups);
  m.util_time = g_array_new (FALSE, FALSE, sizeof (double));
  m.util = g_array_new (FALSE, FALSE, sizeof (float));
  res->n_layers = m.n_steps;
  res->layers = g_new0 (LayerResult, m.n_steps);
  res->n_gpus = m.ep;
  res->gpus = g_new0 (GpuResult, m.ep);
  res->gpu_steps = g_new0 (GpuStepResult, (gsize) m.n_steps * m.ep);
  res->experts = (guint) (s->model.experts + s->eplb.redundant);
  res->expert_rows = g_new0 (guint32, (gsize) m.n_steps * res->experts);
  res->fanout = g_new0 (guint32, (gsize) m.n_steps * (nodes + 1));
  m.done_count = g_new0 (guint, m.n_steps);
  m.rows_scratch = g_new (double, res->experts);
  m.tokens_scratch = g_new (double, m.ep);
  for (guint g = 0; g < m.ep; g++)
    {
      res->gpus[g].gpu = g;
      res->gpus[g].node = cluster_node_of (m.cluster, g);
    }

  if (s->model.dense_layers > 0 && fwd)
    add_dense (&m, FALSE);
  while (m.built < m.n_steps && m.built <= m.chains)
    build_group (&m);
  SimTime end = engine_run (m.engine);
  g_assert (engine_tasks_pending (m.engine) == 0);
  res->total_us = sim_time_to_us (end);

  g_assert (m.n_final == m.n_steps); /* every GPU finished every step */

  const FlowNet *net = engine_flownet (m.engine);
  double best = -1.0;
  guint best_link = 0;
  for (guint l = 0; l < cluster_n_links (m.cluster); l++)
    {
      double busy = flownet_link_bytes (net, l) / flownet_link_capacity (net, l) * 1e6;
      LinkClass c = cluster_link_class (m.cluster, l);
      res->class_link_bytes[c] += flownet_link_bytes (net, l);
      double util = res->comm_window_us > 0 ? busy / res->comm_window_us : 0.0;
      res->class_util[c] = MAX (res->class_util[c], util);
      if (busy > best)
        {
          best = busy;
          best_link = l;
        }
    }
  res->bottleneck_link = cluster_link_name (m.cluster, best_link);
  res->bottleneck_class = cluster_link_class (m.cluster, best_link);
  res->bottleneck_busy_us = best;
  res->bottleneck_util = res->comm_window_us > 0 ? best / res->comm_window_us : 0.0;
  res->events = engine_events (m.engine);
  res->flows = m.flows;
  res->solves = flownet_solve_count (net);

  res->n_util_samples = m.util_time->len;
  res->util_time_us = (double *) (void *) g_array_free (m.util_time, FALSE);
  res->util = (float *) (void *) g_array_free (m.util, FALSE);
  g_free (m.pair_route);
  g_free (m.run_start);
  g_free (m.run_group);
  g_free (m.group_load);
  g_free (m.times);
  g_free (m.done_count);
  g_free (m.rows_scratch);
  g_free (m.tokens_scratch);
  g_free (m.fed_by);
  g_free (m.fed_at);
  g_free (m.prev_done);
  g_free (m.steps);
  g_free (m.comm_prev);
  g_free (m.gates);
  g_free (m.joins);
  for (guint i = 0; m.stash && i < L * M; i++)
    routing_layer_free (m.stash[i]);
  g_free (m.stash);
  routing_stream_free (m.routing);
  routing_layer_free (m.balanced);
  route_classes_free (m.classes);
  engine_free (m.engine);
  cluster_free (m.cluster);
  return res;
}
