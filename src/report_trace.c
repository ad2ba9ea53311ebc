/* trace.json: Chrome trace event format (Perfetto and chrome://tracing open
 * it). One process per node, per GPU (and micro-batch, when a layer has
 * several) three threads (dispatch, expert, combine), one complete event ("X") per GPU, step and phase, with its
 * layer, micro-batch and the GPU's tokens and bytes as arguments (and on
 * the expert track a "prep" span: the compute before dispatch); flow
 * events ("s", "f") from the GPU whose transfer arrived last to the expert
 * span it held up; metadata events name processes and threads and fix
 * their order; counter events ("C") give link utilisation per node and
 * class. Timestamps are microseconds; the events of a thread or a counter
 * are in time order.
 *
 * The file is the metadata, then step by step that step's spans and
 * arrows, then the counters. So it can be made while the pass runs
 * (TraceStream): a thread writes each step's events as the run makes the
 * step final, to a file that gets its name (trace.json) once the counters
 * (which need the whole run) are in. The bytes are those
 * report_trace_json gives for the same results. */
#include "report.h"

#include "fmt.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

static const char *const streams[] = { "dispatch", "expert", "combine" };

/* The thread (track) of GPU g's phase k in micro-batch mb: per GPU and
 * micro-batch the three phases (the phase spans of micro-batches in flight
 * overlap, so each has tracks of its own). */
static guint
track (const Scenario *sc, guint g, guint mb, guint k)
{
  guint gpn = (guint) topology_spec (scenario_topology (sc))->node.gpus;
  guint mbs = (guint) scenario_spec (sc)->parallel.microbatches;
  return ((g % gpn) * mbs + mb) * 3 + k;
}

/* The opening and the metadata events (at least one: every node is a
 * process), after which every event is preceded by a separator. */
static void
trace_head (GString *out, const Scenario *sc, const RunResult *r)
{
  const IndexSet *keep_gpus = &scenario_spec (sc)->output.trace_gpus;
  guint gpn = (guint) topology_spec (scenario_topology (sc))->node.gpus;
  g_string_append (out, "{\"displayTimeUnit\": \"ns\", \"traceEvents\": [\n");
  guint nodes = r->n_gpus / gpn;
  g_assert (nodes > 0);
  for (guint n = 0; n < nodes; n++)
    g_string_append_printf (out, "%s{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %u, "
                                 "\"args\": {\"name\": \"node %u\"}}", n > 0 ? ",\n" : "", n, n);
  guint mbs = (guint) scenario_spec (sc)->parallel.microbatches;
  for (guint g = 0; g < r->n_gpus; g++)
    for (guint mb = 0; mb < mbs && index_set_has (keep_gpus, g); mb++)
      for (guint k = 0; k < 3; k++)
        {
          guint tid = track (sc, g, mb, k);
          char name[64];
          if (mbs > 1)
            g_snprintf (name, sizeof name, "gpu %u mb %u %s", g, mb, streams[k]);
          else
            g_snprintf (name, sizeof name, "gpu %u %s", g, streams[k]);
          g_string_append_printf (out, ",\n{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %u, "
                                       "\"tid\": %u, \"args\": {\"name\": \"%s\"}}",
                                  g / gpn, tid, name);
          g_string_append_printf (out, ",\n{\"ph\": \"M\", \"name\": \"thread_sort_index\", "
                                       "\"pid\": %u, \"tid\": %u, \"args\": {\"sort_index\": %u}}",
                                  g / gpn, tid, tid);
        }
}

#define S(str) g_string_append (out, (str))
#define U(v) fmt_append_uint (out, (v))
#define F(v, d) fmt_append_fixed (out, (v), (d))

/* Step i: per kept GPU its three phase spans (and the prep span), then the
 * arrows: from the dispatch span of the GPU whose transfer into g arrived
 * last (at its start, when it began sending) to g's expert span, the work
 * that transfer held up; both GPUs kept. */
static void
trace_step (GString *out, const Scenario *sc, const RunResult *r, guint i)
{
  const IndexSet *keep_layers = &scenario_spec (sc)->output.trace_layers;
  const IndexSet *keep_gpus = &scenario_spec (sc)->output.trace_gpus;
  guint gpn = (guint) topology_spec (scenario_topology (sc))->node.gpus;
  const LayerResult *l = &r->layers[i];
  if (!index_set_has (keep_layers, l->layer))
    return;
  for (guint g = 0; g < r->n_gpus; g++)
    for (guint k = 0; k < 3 && index_set_has (keep_gpus, g); k++)
      {
        const GpuStepResult *s = &r->gpu_steps[(gsize) i * r->n_gpus + g];
        double ts = s->start_us + s->prep_us + (k > 0 ? s->dispatch_us : 0) + (k > 1 ? s->expert_us : 0);
        /* the bulk of the file: appended piece by piece, not printf'd */
        if (k == 1)
          {
            S (",\n{\"ph\": \"X\", \"name\": \"L"), U (l->layer), S ("."), U (l->microbatch);
            S (l->backward ? " bwd prep" : " prep"), S ("\", \"cat\": \"prep\", \"pid\": "), U (g / gpn);
            S (", \"tid\": "), U (track (sc, g, l->microbatch, 1)), S (", \"ts\": "), F (s->start_us, 3);
            S (", \"dur\": "), F (s->prep_us, 3), S (", \"args\": {\"layer\": "), U (l->layer);
            S (", \"microbatch\": "), U (l->microbatch), S (", \"pass\": \""), S (moe_step_pass (r, i));
            S ("\"}}");
          }
        double dur = k == 0 ? s->dispatch_us : k == 1 ? s->expert_us : s->combine_us;
        /* the GPU's experts in this step: selections, and how many have any */
        guint per_gpu = r->experts / r->n_gpus, used = 0;
        guint64 rows = 0;
        for (guint e = g * per_gpu; e < (g + 1) * per_gpu; e++)
          {
            guint32 n = r->expert_rows[(gsize) i * r->experts + e];
            rows += n;
            used += n > 0;
          }
        S (",\n{\"ph\": \"X\", \"name\": \"L"), U (l->layer), S ("."), U (l->microbatch);
        S (l->backward ? " bwd " : " "), S (streams[k]), S ("\", \"cat\": \""), S (streams[k]);
        S ("\", \"pid\": "), U (g / gpn), S (", \"tid\": "), U (track (sc, g, l->microbatch, k)), S (", \"ts\": "), F (ts, 3);
        S (", \"dur\": "), F (dur, 3), S (", \"args\": {\"layer\": "), U (l->layer), S (", \"microbatch\": ");
        U (l->microbatch), S (", \"pass\": \""), S (moe_step_pass (r, i)), S ("\", \"tokens_in\": ");
        U (s->tokens_in), S (", \"bytes_out\": "), F (s->bytes_out, 0), S (", \"bytes_in\": "), F (s->bytes_in, 0);
        S (", \"expert_rows\": "), U (rows), S (", \"experts_used\": "), U (used), S ("}}");
      }
  char a[FMT_FIXED_BUF], b[FMT_FIXED_BUF];
  for (guint g = 0; g < r->n_gpus; g++)
    {
      const GpuStepResult *s = &r->gpu_steps[(gsize) i * r->n_gpus + g];
      guint src = s->fed_by;
      if (!index_set_has (keep_gpus, g) || src == G_MAXUINT32 || src == g || !index_set_has (keep_gpus, src))
        continue;
      const GpuStepResult *from = &r->gpu_steps[(gsize) i * r->n_gpus + src];
      guint64 id = (guint64) i * r->n_gpus + g;
      g_string_append_printf (out, ",\n{\"ph\": \"s\", \"id\": %" G_GUINT64_FORMAT ", \"name\": \"last arrival\", "
                                   "\"cat\": \"feed\", \"pid\": %u, \"tid\": %u, \"ts\": %s}",
                              id, src / gpn, track (sc, src, l->microbatch, 0), fmt_fixed (a, from->start_us + from->prep_us, 3));
      g_string_append_printf (out, ",\n{\"ph\": \"f\", \"bp\": \"e\", \"id\": %" G_GUINT64_FORMAT ", \"name\": "
                                   "\"last arrival\", \"cat\": \"feed\", \"pid\": %u, \"tid\": %u, \"ts\": %s}",
                              id, g / gpn, track (sc, g, l->microbatch, 1),
                              fmt_fixed (b, s->start_us + s->prep_us + s->dispatch_us, 3));
    }
}

/* The link utilisation counters and the closing: per node an NVLink and an
 * IB track, one fabric track. The run is cut into equal time buckets (at
 * most 500,000 values over all tracks, 256 to 4096 buckets per track) and
 * a track writes the time-weighted mean load of a bucket when it moved by
 * at least half a percentage point since the last value written (or fell
 * to zero): the size stays bounded however often rates change, each value
 * keeps the bytes of its bucket, and plateaus and edges show to within a
 * bucket. */
static void
trace_tail (GString *out, const Scenario *sc, const RunResult *r)
{
  const IndexSet *keep_layers = &scenario_spec (sc)->output.trace_layers;
  const IndexSet *keep_gpus = &scenario_spec (sc)->output.trace_gpus;
  guint gpn = (guint) topology_spec (scenario_topology (sc))->node.gpus;
  char a[FMT_FIXED_BUF];
  guint ng = r->n_util_groups;
  if (ng > 0 && r->util_group_capacity[ng - 1] > 0)
    g_string_append_printf (out, ",\n{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %u, "
                                 "\"args\": {\"name\": \"fabric (leaf-spine)\"}}", r->nodes);
  /* with only some layers kept, only buckets inside their time windows;
   * with only some GPUs, only the nodes that hold one */
  GArray *win = g_array_new (FALSE, FALSE, 2 * sizeof (double));
  for (guint i = 0; i < r->n_layers && keep_layers->n > 0; i++)
    if (index_set_has (keep_layers, r->layers[i].layer))
      {
        double w[2] = { r->layers[i].start_us, r->layers[i].end_us };
        g_array_append_val (win, w);
      }
  g_autofree gboolean *node_kept = g_new0 (gboolean, r->nodes + 1);
  for (guint gpu = 0; gpu < r->n_gpus; gpu++)
    if (index_set_has (keep_gpus, gpu))
      node_kept[gpu / gpn] = node_kept[r->nodes] = TRUE;
  guint buckets = CLAMP (500000 / MAX (ng, 1u), 256u, 4096u);
  double span = r->n_util_samples > 0 ? r->util_time_us[r->n_util_samples - 1] : 0.0;
  double bw = span > 0 ? span / buckets : 1.0;
  for (guint g = 0; g < ng && span > 0; g++)
    {
      guint pid = g < 2 * r->nodes ? g % r->nodes : r->nodes;
      if (r->util_group_capacity[g] <= 0 || !node_kept[pid])
        continue;
      double last = -1.0;
      gboolean was_inside = FALSE;
      guint i = 0; /* the sample holding at the bucket's start */
      for (guint k = 0; k < buckets; k++)
        {
          double t0 = k * bw, t1 = k + 1 == buckets ? span : (k + 1) * bw;
          gboolean inside = keep_layers->n == 0;
          for (guint w = 0; w < win->len && !inside; w++)
            {
              const double *ww = &g_array_index (win, double, 2 * w);
              inside = t1 > ww[0] && t0 <= ww[1];
            }
          /* time-weighted mean over [t0, t1) of the piecewise-constant samples */
          double area = 0;
          while (i + 1 < r->n_util_samples && r->util_time_us[i + 1] <= t0)
            i++;
          for (guint j = i; j + 1 < r->n_util_samples && r->util_time_us[j] < t1; j++)
            {
              double a0 = MAX (t0, r->util_time_us[j]), a1 = MIN (t1, r->util_time_us[j + 1]);
              if (a1 > a0)
                area += (a1 - a0) * r->util[(gsize) j * ng + g];
            }
          gboolean entering = inside && !was_inside;
          was_inside = inside;
          if (!inside)
            continue;
          double v = 100.0 * area / (t1 - t0);
          /* a kept window restates the level: the counter held its last
           * value through the layers left out */
          if (!entering && last >= 0 && fabs (v - last) < 0.5 && !(v < 0.05 && last >= 0.05))
            continue;
          last = v;
          S (",\n{\"ph\": \"C\", \"name\": \""), S (link_class_names[r->util_group_class[g]]);
          S (" util %\", \"pid\": "), U (pid), S (", \"ts\": "), F (t0, 3), S (", \"args\": {\"%\": ");
          F (v, 1), S ("}}");
        }
      /* and the zero after the end */
      g_string_append_printf (out, ",\n{\"ph\": \"C\", \"name\": \"%s util %%\", \"pid\": %u, "
                                   "\"ts\": %s, \"args\": {\"%%\": 0.0}}",
                              link_class_names[r->util_group_class[g]], pid, fmt_fixed (a, span, 3));
    }
  g_array_free (win, TRUE);
  g_string_append (out, "\n]}\n");
}

#undef S
#undef U
#undef F

char *
report_trace_json (const Scenario *sc, const RunResult *r)
{
  GString *out = g_string_new (NULL);
  trace_head (out, sc, r);
  for (guint i = 0; i < r->n_layers; i++)
    trace_step (out, sc, r, i);
  trace_tail (out, sc, r);
  return g_string_free (out, FALSE);
}

/* ---- made while the pass runs ---- */

struct TraceStream {
  const Scenario *sc;
  char *dir, *path; /* the output folder, trace.json */
  char *tmp;        /* the file's temporary name; NULL while it has none */
  gboolean made_dir;      /* the folder did not exist */
  int fd;
  GThread *thread;
  /* under lock: what the run gave (the results, steps final, whether it
   * ended and how) */
  GMutex lock;
  GCond more;
  const RunResult *r;
  guint n_final;
  gboolean ended, failed;
  /* the writing thread's own */
  guint written; /* steps done */
  GString *buf;
  GError *error; /* the first write error; nothing is written after it */
};

/* Writes the buffer to the file once it holds `at_least` bytes. */
static void
stream_flush (TraceStream *ts, gsize at_least)
{
  if (ts->buf->len < at_least)
    return;
  const char *p = ts->buf->str;
  gsize left = ts->buf->len;
  while (left > 0 && ts->error == NULL)
    {
      ssize_t n = write (ts->fd, p, left);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int e = errno;
          g_set_error (&ts->error, G_FILE_ERROR, g_file_error_from_errno (e), "cannot write %s: %s", ts->path,
                       g_strerror (e));
          break;
        }
      p += n;
      left -= (gsize) n;
    }
  g_string_truncate (ts->buf, 0);
}

static gpointer
stream_thread (gpointer data)
{
  TraceStream *ts = data;
  /* it keeps pace with the run at a lower priority than the run's */
  util_thread_background (UTIL_NICE_BEHIND);
  g_mutex_lock (&ts->lock);
  for (;;)
    {
      while (!ts->ended && ts->n_final == ts->written)
        g_cond_wait (&ts->more, &ts->lock);
      const RunResult *r = ts->r;
      guint upto = ts->n_final;
      gboolean ended = ts->ended, failed = ts->failed;
      g_mutex_unlock (&ts->lock);
      if (failed)
        return NULL;
      /* the results stay put until the run ends or fails, which it says
       * and waits for this thread to see */
      if (ts->written == 0 && (upto > 0 || ended))
        trace_head (ts->buf, ts->sc, r);
      for (; ts->written < upto; ts->written++)
        if (ts->error == NULL)
          {
            trace_step (ts->buf, ts->sc, r, ts->written);
            stream_flush (ts, 4u << 20);
          }
      if (ended)
        {
          if (ts->error == NULL)
            {
              trace_tail (ts->buf, ts->sc, r);
              stream_flush (ts, 0);
            }
          return NULL;
        }
      g_mutex_lock (&ts->lock);
    }
}

TraceStream *
report_trace_stream_new (const Scenario *sc, const char *dir, GError **error)
{
  gboolean existed = g_file_test (dir, G_FILE_TEST_IS_DIR);
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e), "cannot create output folder %s: %s", dir,
                   g_strerror (e));
      return NULL;
    }
  g_autofree char *path = g_build_filename (dir, "trace.json", NULL);
  g_autofree char *tmp = NULL;
  /* a file without a name until it is finished, so that a run killed
   * meanwhile leaves nothing; where the file system has no such files, a
   * temporary name (permissions as the umask allows, like the other
   * outputs) */
  int fd = open (dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
    {
      tmp = g_strconcat (path, ".XXXXXX", NULL);
      fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0666);
    }
  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e), "cannot create a file in output folder %s: %s",
                   dir, g_strerror (e));
      if (!existed)
        g_rmdir (dir);
      return NULL;
    }
  TraceStream *ts = g_new0 (TraceStream, 1);
  ts->sc = sc;
  ts->dir = g_strdup (dir);
  ts->made_dir = !existed;
  ts->path = g_steal_pointer (&path);
  ts->tmp = g_steal_pointer (&tmp);
  ts->fd = fd;
  ts->buf = g_string_sized_new (5u << 20);
  g_mutex_init (&ts->lock);
  g_cond_init (&ts->more);
  ts->thread = g_thread_new ("trace.json", stream_thread, ts);
  return ts;
}

/* Tells the thread the run ended, with its final results, or failed (r
 * NULL: it stops, and it is waited for, since the results go away). */
static void
stream_end (TraceStream *ts, const RunResult *r)
{
  g_mutex_lock (&ts->lock);
  ts->ended = TRUE;
  ts->failed = r == NULL;
  if (r)
    {
      ts->r = r;
      ts->n_final = r->n_layers;
    }
  g_cond_signal (&ts->more);
  g_mutex_unlock (&ts->lock);
  if (r == NULL && ts->thread)
    {
      g_thread_join (ts->thread);
      ts->thread = NULL;
    }
}

void
report_trace_stream_steps (void *user, const RunResult *r, guint n_final)
{
  TraceStream *ts = user;
  if (r == NULL)
    {
      stream_end (ts, NULL);
      return;
    }
  g_mutex_lock (&ts->lock);
  ts->r = r;
  ts->n_final = n_final;
  g_cond_signal (&ts->more);
  g_mutex_unlock (&ts->lock);
}

void
report_trace_stream_end (TraceStream *ts, const RunResult *r)
{
  g_return_if_fail (r != NULL);
  stream_end (ts, r);
}

gboolean
report_trace_stream_finish (TraceStream *ts, gboolean keep, GError **error)
{
  g_return_val_if_fail (ts->ended && !ts->failed, FALSE);
  if (ts->thread)
    {
      g_thread_join (ts->thread);
      ts->thread = NULL;
    }
  if (!keep)
    return FALSE; /* the temporary file goes with the stream */
  if (ts->error)
    {
      g_propagate_error (error, g_steal_pointer (&ts->error));
      return FALSE;
    }
  int fd = ts->fd;
  ts->fd = -1;
  int e = 0;
  if (ts->tmp == NULL)
    {
      /* the unnamed file gets a temporary name (a link cannot replace a
       * file), then is renamed over trace.json */
      char proc[64];
      g_snprintf (proc, sizeof proc, "/proc/self/fd/%d", fd);
      for (guint k = 0; k < 100 && ts->tmp == NULL; k++)
        {
          char *name = g_strdup_printf ("%s.%08x", ts->path, g_random_int ());
          if (linkat (AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0)
            ts->tmp = name;
          else
            {
              e = errno;
              g_free (name);
              if (e != EEXIST)
                break;
            }
        }
    }
  if (ts->tmp == NULL || close (fd) != 0 || g_rename (ts->tmp, ts->path) != 0)
    {
      e = ts->tmp ? errno : e;
      if (ts->tmp == NULL)
        close (fd);
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (e), "cannot write %s: %s", ts->path, g_strerror (e));
      if (ts->tmp)
        g_unlink (ts->tmp);
      return FALSE;
    }
  ts->made_dir = FALSE; /* it holds the trace now */
  return TRUE;
}

void
report_trace_stream_free (TraceStream *ts)
{
  if (ts == NULL)
    return;
  if (ts->thread) /* never ended: the run failed */
    stream_end (ts, NULL);
  if (ts->fd >= 0)
    {
      close (ts->fd);
      if (ts->tmp) /* else it had no name */
        g_unlink (ts->tmp);
      if (ts->made_dir)
        g_rmdir (ts->dir); /* only when empty */
    }
  g_clear_error (&ts->error);
  g_string_free (ts->buf, TRUE);
  g_mutex_clear (&ts->lock);
  g_cond_clear (&ts->more);
  g_free (ts->dir);
  g_free (ts->path);
  g_free (ts->tmp);
  g_free (ts);
}
