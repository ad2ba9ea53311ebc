/* The run of a scenario: the placement of its MoE layers, the actual
 * simulation and, with sim.counterfactual, the balanced one in a second
 * thread fed step by step. */
#include "moe_private.h"
#include "routing.h"
#include "util.h"

#include <string.h>

RunResult *
moe_run (Scenario *sc, GError **error)
{
  return moe_run_watched (sc, NULL, error);
}

/* Placements of the MoE layers, or NULL for contiguous. */
typedef struct {
  LayerPlacement **layers;
  guint n;
} PlacementSet;

static void
placement_set_free (PlacementSet *ps)
{
  if (ps == NULL)
    return;
  for (guint l = 0; l < ps->n; l++)
    layer_placement_free (ps->layers[l]);
  g_free (ps->layers);
  g_free (ps);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PlacementSet, placement_set_free)

static PlacementSet *
placement_for_scenario (const Scenario *sc)
{
  const ScenarioSpec *s = scenario_spec (sc);
  if (s->placement == PLACEMENT_CONTIGUOUS)
    return NULL;
  guint E = (guint) s->model.experts, ep = (guint) s->parallel.ep;
  guint gpn = (guint) topology_spec (scenario_topology (sc))->node.gpus;
  PlacementSet *ps = g_new0 (PlacementSet, 1);
  ps->n = (guint) s->model.moe_layers;
  ps->layers = g_new0 (LayerPlacement *, ps->n);
  g_autofree double *load = g_new (double, E);
  for (guint l = 0; l < ps->n; l++)
    if (s->placement == PLACEMENT_ROUND_ROBIN)
      ps->layers[l] = placement_round_robin (E, ep, gpn);
    else
      {
        /* the loads EPLB balances for: the eplb.load trace's, or the
         * scenario's own routing of the layer */
        if (scenario_eplb_trace (sc))
          routing_trace_loads (scenario_eplb_trace (sc), l, E, load);
        else
          routing_layer_loads (s, scenario_trace (sc), l, load);
        ps->layers[l] = placement_eplb (load, E, (guint) s->eplb.redundant, (guint) s->model.n_group, ep, gpn,
                                        (EplbPolicy) s->eplb.policy);
      }
  return ps;
}

typedef struct {
  const Scenario *sc;
  LayerPlacement *const *placement;
  BalanceFeed *feed;
  RunResult *res;
  GError *error;
} CounterfactualJob;

static gpointer
counterfactual_thread (gpointer data)
{
  CounterfactualJob *job = data;
  util_thread_background (UTIL_NICE_BEHIND); /* it follows the actual run's feed */
  job->res = moe_simulate (job->sc, job->placement, NULL, job->feed, TRUE, &job->error);
  return NULL;
}

/* The actual run, and with sim.counterfactual the balanced one in a second
 * thread fed step by step (it costs little wall time where a core is free:
 * its flows end together, so it needs few solver runs). */
RunResult *
moe_run_watched (Scenario *sc, const MoeWatch *watch, GError **error)
{
  if (!scenario_make_routing (sc, error))
    return NULL;
  const ScenarioSpec *s = scenario_spec (sc);
  gint64 t0 = g_get_monotonic_time ();
  guint n_steps = moe_pass_steps (s);
  g_autoptr (PlacementSet) ps = placement_for_scenario (sc);
  LayerPlacement *const *placement = ps ? ps->layers : NULL;
  if (!s->sim.counterfactual)
    {
      RunResult *res = moe_simulate (sc, placement, watch, NULL, FALSE, error);
      if (res)
        res->wall_s = (double) (g_get_monotonic_time () - t0) / 1e6;
      return res;
    }
  BalanceFeed feed;
  balance_feed_init (&feed, n_steps);
  CounterfactualJob job = { sc, placement, &feed, NULL, NULL };
  GThread *thread = g_thread_new ("counterfactual", counterfactual_thread, &job);
  RunResult *res = moe_simulate (sc, placement, watch, &feed, FALSE, error);
  if (res == NULL)
    balance_feed_publish (&feed, n_steps); /* zero totals: let the other run end */
  g_thread_join (thread);
  balance_feed_clear (&feed);
  g_autoptr (RunResult) bal = job.res;
  if (res != NULL && bal == NULL)
    {
      if (watch && watch->steps_final)
        watch->steps_final (watch->user, NULL, 0); /* its results go */
      g_propagate_error (error, job.error);
      run_result_free (res);
      return NULL;
    }
  g_clear_error (&job.error);
  if (res == NULL)
    return NULL;
  res->counterfactual = TRUE;
  res->balanced_total_us = bal->total_us;
  memcpy (res->balanced_class_bytes, bal->class_bytes, sizeof bal->class_bytes);
  for (guint st = 0; st < n_steps; st++)
    res->layers[st].balanced_us = bal->layers[st].end_us - bal->layers[st].start_us;
  res->events += bal->events;
  res->solves += bal->solves;
  res->wall_s = (double) (g_get_monotonic_time () - t0) / 1e6;
  return res;
}
