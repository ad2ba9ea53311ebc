/* Shared by moe.c (one simulation of a pass) and moe_run.c (a scenario's
 * run: placement, the actual simulation and the counterfactual). Private to
 * them. */
#pragma once

#include "balance.h"
#include "moe.h"

RunResult *moe_simulate (const Scenario *sc, LayerPlacement *const *placement, const MoeWatch *watch,
                         BalanceFeed *feed, gboolean balanced, GError **error);
