/* Sweeps: a base scenario and axes of `--set` values, combined as a
 * cartesian product (the last axis varies fastest) or zipped. Each point is
 * an ordinary run with its own output folder; the points run in parallel on
 * a thread pool and their key figures are gathered, in point order, into
 * sweep.csv and sweep.html, so the result does not depend on the number of
 * threads. A point that fails is reported with its error and the others
 * still run; a point whose folder already holds its figures for the same
 * values is not run again (an interrupted sweep resumes).
 *
 * Sweep file:
 *   name: ib-bandwidth             # output folder out/sweeps/<name>
 *   scenario: deepseek-v3-ep64.yaml   # relative to the sweep file
 *   combine: product               # or zip (default product)
 *   set: ["model.moe_layers=8"]    # fixed overrides (optional)
 *   axes:
 *     nic.gbps: [200, 400, 800]    # any --set path: a non-empty list
 */
#pragma once

#include <glib.h>

typedef enum { SWEEP_PRODUCT, SWEEP_ZIP } SweepCombine;

typedef struct {
  char *key;
  char **values; /* NULL-terminated */
  guint n_values;
} SweepAxis;

typedef struct {
  char *path;     /* the sweep file */
  char *name;
  char *scenario; /* resolved against the sweep file's folder */
  char **sets;    /* fixed overrides, NULL-terminated */
  SweepCombine combine;
  SweepAxis *axes;
  guint n_axes;
  guint n_points;
  /* SHA-256 of what the points' results depend on: the axis names, the
   * fixed overrides, the scenario and its topology files (their bytes);
   * a point's saved row is reused only under the same fingerprint */
  char *fingerprint;
} Sweep;

/* Parses and checks a sweep file: every key known, every axis a non-empty
 * list of scalars, zipped axes of equal length, and every axis path (with
 * its first value) accepted by the base scenario. Errors name the file and
 * line:column (MOESIM_CONFIG_ERROR). */
Sweep *sweep_load (const char *path, GError **error);
void sweep_free (Sweep *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Sweep, sweep_free)

/* Value of axis `axis` at point `point`. */
const char *sweep_value (const Sweep *s, guint point, guint axis);

typedef struct {
  guint jobs;          /* threads; 0 = one per core */
  guint shard, shards; /* run only points with index % shards == shard */
  gboolean merge;      /* run nothing: gather the points' figures */
  gboolean force;      /* run every point again, reusing none */
  gboolean quiet;      /* no progress line */
} SweepOptions;

typedef struct {
  guint run, reused, failed, skipped; /* skipped: other shards' points */
} SweepStats;

/* Runs the sweep into `dir` (points in dir/points/NNNN/) and, unless
 * sharded, writes dir/sweep.csv and dir/sweep.html. Returns FALSE with
 * `error` set when outputs cannot be written, when --merge finds a point
 * not done, or when a point failed (sweep.csv is written first and names
 * its error). */
gboolean sweep_run (const Sweep *s, const char *dir, const SweepOptions *opt, SweepStats *stats,
                    GError **error);

/* The two halves of sweep_run, for callers that move rows between
 * processes (MPI): runs this shard's points (and reuses those done) and
 * returns a CSV row per point (NULL for other shards' points), or NULL with
 * `error` set (--merge with a point not done); then writes sweep.csv and
 * sweep.html from a row for every point, failing (after writing) when a
 * point failed. */
char **sweep_run_points (const Sweep *s, const char *dir, const SweepOptions *opt, SweepStats *stats,
                         GError **error);
gboolean sweep_write (const Sweep *s, const char *dir, char **rows, SweepStats *stats, GError **error);
void sweep_rows_free (const Sweep *s, char **rows);
