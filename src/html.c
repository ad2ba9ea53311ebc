/* report.html: one self-contained page (inline SVG and CSS, no script, no
 * network) with the scenario, the per-layer phase chart, a Gantt timeline of
 * the GPUs for the first and the slowest layer and the whole pass, heat maps of GPU and expert
 * load over the layers, wire bytes per layer, link utilisation over time,
 * the imbalance table with the balanced counterfactual and the per-layer
 * table. */
#include "report.h"

#include "fmt.h"
#include "json.h"
#include "memory.h"
#include "moesim-config.h"

#include <math.h>

/* segments: the compute before dispatch (the block when given, the router,
 * the permute), the three MoE phases, and in the layer chart the time
 * waited for other GPUs */
enum { SEG_PREP, SEG_DISPATCH, SEG_EXPERT, SEG_COMBINE, SEG_WAITING, SEG_N };
static const char *const phase_color[] = { "#9c755f", "#4e79a7", "#f28e2b", "#59a14f", "#bab0ac" };
static const char *const phase_label[] = { "prep", "dispatch", "expert", "combine", "waiting" };
static const char *const cls_color[] = { "#76b7b2", "#e15759", "#b07aa1" };

/* Text from the scenario (UTF-8: libyaml checks it) escaped for HTML,
 * quotes included, by GLib's markup escaper. */
static void
esc (GString *out, const char *s)
{
  g_autofree char *e = g_markup_escape_text (s, -1);
  g_string_append (out, e);
}

/* A "nice" axis maximum and tick step for values up to v. */
double
html_nice_max (double v, double *step)
{
  if (v <= 0)
    v = 1;
  double p = pow (10, floor (log10 (v)));
  double m = v / p;
  double top = m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10;
  *step = top * p / 5;
  return top * p;
}

void
html_axes (GString *o, int x0, int y0, int w, int h, double ymax, double step, const char *ylabel,
           const char *xlabel)
{
  g_string_append_printf (o, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#333'/>", x0, y0, x0 + w, y0);
  g_string_append_printf (o, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#333'/>", x0, y0, x0, y0 - h);
  for (double v = 0; v <= ymax + 1e-9; v += step)
    {
      int y = y0 - (int) (v / ymax * h);
      g_string_append_printf (o, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#ddd'/>"
                                 "<text x='%d' y='%d' font-size='11' text-anchor='end'>%g</text>",
                              x0, y, x0 + w, y, x0 - 4, y + 4, v);
    }
  g_string_append_printf (o, "<text x='%d' y='%d' font-size='12' transform='rotate(-90 %d %d)' "
                             "text-anchor='middle'>%s</text>", x0 - 48, y0 - h / 2, x0 - 48, y0 - h / 2, ylabel);
  g_string_append_printf (o, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>%s</text>",
                          x0 + w / 2, y0 + 34, xlabel);
}

/* Legend of segments first..last. */
static void
legend (GString *o, int x, int y, guint first, guint last)
{
  for (guint p = first; p <= last; p++, x += 110)
    g_string_append_printf (o, "<rect x='%d' y='%d' width='12' height='12' fill='%s'/>"
                               "<text x='%d' y='%d' font-size='12'>%s</text>",
                            x, y, phase_color[p], x + 16, y + 11, phase_label[p]);
}

/* Per step a bar as long as the layer (first GPU start to last GPU done):
 * the mean GPU's dispatch, expert and combine times, and on top the rest,
 * the time the mean GPU waited for the others; with the counterfactual a
 * black tick at the balanced layer's time. */
static void
layer_chart (GString *o, const RunResult *r)
{
  int W = 900, H = 300, x0 = 70, y0 = 330;
  double mx = 0;
  for (guint i = 0; i < r->n_layers; i++)
    mx = MAX (mx, MAX (r->layers[i].end_us - r->layers[i].start_us, r->layers[i].balanced_us));
  double step, ymax = html_nice_max (mx, &step);
  g_string_append_printf (o, "<svg id='layer-chart' width='%d' height='%d' role='img'>", W + 100, H + 90);
  html_axes (o, x0, y0, W, H, ymax, step, "time per layer (us, mean GPU)", "MoE layer (and micro-batch)");
  double bw = (double) W / MAX (r->n_layers, 1u);
  for (guint i = 0; i < r->n_layers; i++)
    {
      const LayerResult *l = &r->layers[i];
      double span = l->end_us - l->start_us;
      double v[SEG_N] = { l->prep.mean_us, l->dispatch.mean_us, l->expert.mean_us, l->combine.mean_us, 0 };
      double base = 0;
      v[SEG_WAITING] = MAX (0.0, span - v[0] - v[1] - v[2] - v[3]);
      for (guint p = 0; p < SEG_N; p++)
        {
          double y = y0 - (base + v[p]) / ymax * H, hh = v[p] / ymax * H;
          g_string_append_printf (o, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'>"
                                     "<title>layer %u.%u %s: %.1f us</title></rect>",
                                  x0 + i * bw + bw * 0.1, y, bw * 0.8, hh, phase_color[p], l->layer,
                                  l->microbatch, phase_label[p], v[p]);
          base += v[p];
        }
      if (r->counterfactual)
        g_string_append_printf (o, "<line class='balanced' x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' "
                                   "stroke='#000' stroke-width='2'><title>layer %u.%u balanced: %.1f us"
                                   "</title></line>",
                                x0 + i * bw, x0 + (i + 1) * bw, y0 - l->balanced_us / ymax * H,
                                y0 - l->balanced_us / ymax * H, l->layer, l->microbatch, l->balanced_us);
      if (r->n_layers <= 64 || i % (r->n_layers / 32 + 1) == 0)
        g_string_append_printf (o, "<text x='%.1f' y='%d' font-size='10' text-anchor='middle'>%u</text>",
                                x0 + (i + 0.5) * bw, y0 + 14, l->layer);
    }
  guint first = SEG_PREP;
  legend (o, x0 + 10, 12, first, SEG_WAITING);
  int lx = x0 + 10 + (int) (SEG_N - first) * 110;
  if (r->counterfactual)
    g_string_append_printf (o, "<line x1='%d' x2='%d' y1='%d' y2='%d' stroke='#000' stroke-width='2'/>"
                               "<text x='%d' y='%d' font-size='12'>balanced (same selections spread evenly)</text>",
                            lx, lx + 16, 18, 18, lx + 20, 23);
  g_string_append (o, "</svg>");
}

/* Opens a table with its header row: `cols` is NULL-terminated. */
static void
table_open (GString *o, const char *id, const char *const *cols)
{
  g_string_append_printf (o, "<table id='%s'><tr>", id);
  for (guint i = 0; cols[i]; i++)
    g_string_append_printf (o, "<th>%s</th>", cols[i]);
  g_string_append (o, "</tr>\n");
}

/* The imbalance table: per step the load figures, the node fan-out, the
 * bytes by class and what the balanced counterfactual says it costs. */
static void
imbalance_table (GString *o, const RunResult *r, double tolerance)
{
  ImbalanceSummary im;
  report_imbalance (r, &im);
  g_string_append (o, "<table class='kv' id='imbalance-summary'>");
  g_string_append_printf (o, "<tr><td>expert load max / mean (mean over layers, worst)</td><td>%.3f, %.3f</td></tr>"
                             "<tr><td>expert load CV, Gini (mean over layers)</td><td>%.3f, %.3f</td></tr>"
                             "<tr><td>tokens received per GPU max / mean (mean, worst)</td><td>%.3f, %.3f</td></tr>"
                             "<tr><td>expert phase max / mean over GPUs (mean, worst)</td><td>%.3f, %.3f</td></tr>"
                             "<tr><td>nodes per token (mean)</td><td>%.2f</td></tr>",
                          im.expert_mom, im.expert_mom_worst, im.expert_cv, im.expert_gini, im.gpu_tokens_mom,
                          im.gpu_tokens_mom_worst, im.expert_time_mom, im.expert_time_mom_worst, im.fanout_mean);
  if (im.counterfactual)
    {
      g_string_append_printf (o, "<tr><td>what imbalance costs (pass)</td><td>%.1f us of %.1f us (%.1f %%); "
                                 "balanced %.1f us</td></tr>",
                              im.cost_us, r->total_us, 100 * im.cost_share, im.balanced_us);
      g_autofree char *caveat = report_cost_caveat (tolerance);
      if (caveat)
        {
          g_string_append (o, "<tr><td></td><td>");
          esc (o, caveat);
          g_string_append (o, "</td></tr>");
        }
    }
  else
    g_string_append (o, "<tr><td>what imbalance costs</td><td>not run (sim.counterfactual: false)</td></tr>");
  g_string_append (o, "</table>\n");
  g_free (im.fanout);
  static const char *const cols[] = { "layer", "mb", "expert load max/mean", "CV", "Gini", "GPU tokens max/mean",
                                      "expert phase max/mean", "nodes per token", "IB GB", "NVLink GB",
                                      "layer us", "balanced us", "imbalance costs us", NULL };
  table_open (o, "imbalance", cols);
  for (guint i = 0; i < r->n_layers; i++)
    {
      const LayerResult *l = &r->layers[i];
      double span = l->end_us - l->start_us;
      g_string_append_printf (o, "<tr><td>%u</td><td>%u</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td>"
                                 "<td>%.3f</td><td>%.2f</td><td>%.3f</td><td>%.3f</td><td>%.1f</td>",
                              l->layer, l->microbatch, l->expert_load.max_over_mean, l->expert_load.cv,
                              l->expert_load.gini, l->gpu_tokens.max_over_mean, report_expert_time_mom (l),
                              report_fanout_mean (r, i), l->bytes[LCLASS_NIC] / 1e9, l->bytes[LCLASS_NVLINK] / 1e9,
                              span);
      if (r->counterfactual)
        g_string_append_printf (o, "<td>%.1f</td><td>%.1f (%.1f %%)</td></tr>\n", l->balanced_us,
                                span - l->balanced_us, span > 0 ? 100 * (span - l->balanced_us) / span : 0.0);
      else
        g_string_append (o, "<td>-</td><td>-</td></tr>\n");
    }
  g_string_append (o, "</table>\n");
}

/* Gantt chart of steps first..last: a row per GPU (every few GPUs beyond
 * 64), each step's dispatch, expert and combine as bars from when the GPU
 * started it. */
static void
gantt (GString *o, const RunResult *r, guint first, guint last, const char *id)
{
  guint n = r->n_gpus, stride = n > 64 ? (n + 63) / 64 : 1;
  guint rows = (n + stride - 1) / stride;
  int W = 900, rh = 10, x0 = 70, top = 30;
  double t0 = G_MAXDOUBLE, t1 = 0;
  for (guint st = first; st <= last; st++)
    for (guint g = 0; g < n; g++)
      {
        const GpuStepResult *s = &r->gpu_steps[(gsize) st * n + g];
        t0 = MIN (t0, s->start_us);
        t1 = MAX (t1, s->start_us + s->dispatch_us + s->expert_us + s->combine_us);
      }
  double span = MAX (t1 - t0, 1e-9), tick, tmax = html_nice_max (span, &tick);
  int H = (int) rows * rh;
  g_string_append_printf (o, "<svg id='%s' width='%d' height='%d' role='img'>", id, W + 100, H + top + 60);
  for (double v = 0; v <= tmax + 1e-9; v += tick)
    {
      double x = x0 + v / tmax * W;
      g_string_append_printf (o, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#ddd'/>"
                                 "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%g</text>",
                              x, top, x, top + H, x, top + H + 14, v);
    }
  if (first == last)
    g_string_append_printf (o, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>us since the "
                               "layer's first GPU started (layer %u.%u, %s)%s</text>",
                            x0 + W / 2, top + H + 34, r->layers[first].layer, r->layers[first].microbatch,
                            moe_step_pass (r, first), stride > 1 ? ", every few GPUs shown" : "");
  else
    g_string_append_printf (o, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>us since the "
                               "pass started (%u layers and micro-batches)%s</text>",
                            x0 + W / 2, top + H + 34, last - first + 1, stride > 1 ? ", every few GPUs shown" : "");
  for (guint g = 0, row = 0; g < n; g += stride, row++)
    {
      if (rows <= 32 || row % 4 == 0)
        g_string_append_printf (o, "<text x='%d' y='%d' font-size='9' text-anchor='end'>gpu %u</text>",
                                x0 - 4, top + (int) row * rh + 8, g);
      for (guint st = first; st <= last; st++)
        {
          const GpuStepResult *s = &r->gpu_steps[(gsize) st * n + g];
          double a = s->start_us - t0, d[SEG_WAITING] = { s->prep_us, s->dispatch_us, s->expert_us, s->combine_us };
          for (guint p = 0; p < SEG_WAITING; p++)
            {
              /* a rect per GPU, step and phase: appended piece by piece */
              g_string_append (o, "<rect x='");
              fmt_append_fixed (o, x0 + a / tmax * W, 2);
              g_string_append (o, "' y='");
              fmt_append_uint (o, (guint) (top + (int) row * rh));
              g_string_append (o, "' width='");
              fmt_append_fixed (o, d[p] / tmax * W, 2);
              g_string_append (o, "' height='");
              fmt_append_uint (o, (guint) (rh - 2));
              g_string_append (o, "' fill='");
              g_string_append (o, phase_color[p]);
              g_string_append (o, "'><title>gpu ");
              fmt_append_uint (o, g);
              g_string_append (o, " L");
              fmt_append_uint (o, r->layers[st].layer);
              g_string_append_c (o, '.');
              fmt_append_uint (o, r->layers[st].microbatch);
              g_string_append_c (o, ' ');
              g_string_append (o, phase_label[p]);
              g_string_append_c (o, ' ');
              fmt_append_fixed (o, d[p], 1);
              g_string_append (o, " us</title></rect>");
              a += d[p];
            }
        }
    }
  legend (o, x0 + 10, 8, SEG_PREP, SEG_COMBINE);
  g_string_append (o, "</svg>");
}

/* Heat map of v[row * cols + col] / mean(row), white (0) to dark red (2+). */
static void
heat (GString *o, const char *id, const double *v, guint rows, guint cols, const char *xlabel,
      const char *ylabel)
{
  guint cstride = cols > 256 ? (cols + 255) / 256 : 1, cshow = (cols + cstride - 1) / cstride;
  int W = 900, x0 = 70, top = 10;
  double cw = (double) W / cshow, rh = MAX (4.0, MIN (12.0, 400.0 / MAX (rows, 1u)));
  g_string_append_printf (o, "<svg id='%s' width='%d' height='%d' role='img'>", id, W + 160,
                          (int) (rows * rh) + top + 50);
  for (guint i = 0; i < rows; i++)
    {
      double mean = 0;
      for (guint c = 0; c < cols; c++)
        mean += v[(gsize) i * cols + c] / cols;
      for (guint c = 0, k = 0; c < cols; c += cstride, k++)
        {
          double x = mean > 0 ? v[(gsize) i * cols + c] / mean : 0;
          double u = MIN (x / 2.0, 1.0);
          int R = 255, G = (int) (255 * (1 - u)), B = (int) (255 * (1 - u) * (1 - u));
          if (u > 0.5)
            R = (int) (255 - 120 * (u - 0.5) * 2);
          char fx[FMT_FIXED_BUF], fy[FMT_FIXED_BUF], fw[FMT_FIXED_BUF], fh[FMT_FIXED_BUF], fv[FMT_FIXED_BUF];
          g_string_append_printf (o, "<rect x='%s' y='%s' width='%s' height='%s' "
                                     "fill='rgb(%d,%d,%d)'><title>%s %u, %s %u: %s x mean</title></rect>",
                                  fmt_fixed (fx, x0 + k * cw, 2), fmt_fixed (fy, top + i * rh, 1),
                                  fmt_fixed (fw, cw + 0.3, 2), fmt_fixed (fh, rh + 0.3, 1), R, G, B, ylabel, i,
                                  xlabel, c, fmt_fixed (fv, x, 2));
        }
    }
  g_string_append_printf (o, "<text x='%d' y='%.0f' font-size='12' text-anchor='middle'>%s%s</text>",
                          x0 + W / 2, top + rows * rh + 20, xlabel, cstride > 1 ? " (sampled)" : "");
  g_string_append_printf (o, "<text x='%d' y='%.0f' font-size='12' transform='rotate(-90 %d %.0f)' "
                             "text-anchor='middle'>%s</text>", 40, top + rows * rh / 2, 40,
                          top + rows * rh / 2, ylabel);
  /* scale */
  for (int k = 0; k <= 4; k++)
    {
      double u = k / 4.0;
      int R = 255, G = (int) (255 * (1 - u)), B = (int) (255 * (1 - u) * (1 - u));
      if (u > 0.5)
        R = (int) (255 - 120 * (u - 0.5) * 2);
      g_string_append_printf (o, "<rect x='%d' y='%d' width='16' height='14' fill='rgb(%d,%d,%d)' "
                                 "stroke='#999'/><text x='%d' y='%d' font-size='11'>%.1fx</text>",
                              x0 + W + 20, top + k * 18, R, G, B, x0 + W + 40, top + k * 18 + 11, 2 * u);
    }
  g_string_append (o, "</svg>");
}

static void
class_legend (GString *o, int x0, const gboolean *shown)
{
  for (guint c = 0, k = 0; c < LCLASS_N; c++)
    if (shown == NULL || shown[c])
      {
        g_string_append_printf (o, "<rect x='%d' y='8' width='12' height='12' fill='%s'/>"
                                   "<text x='%d' y='19' font-size='12'>%s</text>",
                                x0 + 10 + k * 110, cls_color[c], x0 + 26 + k * 110, link_class_names[c]);
        k++;
      }
}

static void
bytes_chart (GString *o, const RunResult *r)
{
  int W = 900, H = 200, x0 = 70, y0 = 230;
  double mx = 0;
  for (guint i = 0; i < r->n_layers; i++)
    mx = MAX (mx, (r->layers[i].bytes[0] + r->layers[i].bytes[1] + r->layers[i].bytes[2]) / 1e9);
  double step, ymax = html_nice_max (mx, &step);
  g_string_append_printf (o, "<svg id='bytes-chart' width='%d' height='%d' role='img'>", W + 100, H + 80);
  html_axes (o, x0, y0, W, H, ymax, step, "wire bytes per layer (GB)", "MoE layer");
  double bw = (double) W / MAX (r->n_layers, 1u);
  for (guint i = 0; i < r->n_layers; i++)
    {
      double base = 0;
      for (guint c = 0; c < LCLASS_N; c++)
        {
          double v = r->layers[i].bytes[c] / 1e9;
          g_string_append_printf (o, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'>"
                                     "<title>layer %u %s %.2f GB</title></rect>",
                                  x0 + i * bw + bw * 0.1, y0 - (base + v) / ymax * H, bw * 0.8,
                                  v / ymax * H, cls_color[c], r->layers[i].layer, link_class_names[c], v);
          base += v;
        }
    }
  class_legend (o, x0, NULL);
  g_string_append (o, "</svg>");
}

/* Utilisation of each link class over the whole pass: the class's load over
 * its capacity (all its links, both directions), averaged exactly over
 * equal time bins from the piecewise-constant samples. */
static void
util_chart (GString *o, const RunResult *r)
{
  enum { BINS = 450 };
  int W = 900, H = 200, x0 = 70, y0 = 230;
  guint ng = r->n_util_groups;
  double cap[LCLASS_N] = { 0 };
  for (guint g = 0; g < ng; g++)
    cap[r->util_group_class[g]] += r->util_group_capacity[g];
  double span = r->total_us > 0 ? r->total_us : 1;
  g_autofree double *bin = g_new0 (double, (gsize) LCLASS_N * BINS);
  for (guint i = 0; i + 1 < r->n_util_samples; i++)
    {
      double load[LCLASS_N] = { 0 };
      for (guint g = 0; g < ng; g++)
        load[r->util_group_class[g]] += r->util[(gsize) i * ng + g] * r->util_group_capacity[g];
      double t0 = r->util_time_us[i], t1 = MIN (r->util_time_us[i + 1], span);
      for (guint b = (guint) MIN (t0 / span * BINS, BINS - 1.0); b < BINS && t0 < t1; b++)
        {
          double be = span * (b + 1) / BINS, d = MIN (t1, be) - t0;
          for (guint c = 0; c < LCLASS_N; c++)
            if (cap[c] > 0)
              bin[c * BINS + b] += load[c] / cap[c] * d;
          t0 = MIN (t1, be);
        }
    }
  g_string_append_printf (o, "<svg id='util-chart' width='%d' height='%d' role='img'>", W + 100, H + 80);
  html_axes (o, x0, y0, W, H, 100, 20, "link utilisation (%)", "time (us)");
  for (int k = 0; k <= 4; k++)
    g_string_append_printf (o, "<text x='%d' y='%d' font-size='11' text-anchor='middle'>%.0f</text>",
                            x0 + W * k / 4, y0 + 16, span * k / 4);
  gboolean shown[LCLASS_N];
  for (guint c = 0; c < LCLASS_N; c++)
    {
      shown[c] = cap[c] > 0;
      if (!shown[c])
        continue;
      g_string_append_printf (o, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", cls_color[c]);
      for (guint b = 0; b < BINS; b++)
        {
          double u = bin[c * BINS + b] / (span / BINS);
          g_string_append_printf (o, "%.1f,%.1f ", x0 + (b + 0.5) * W / BINS, y0 - MIN (u, 1.0) * H);
        }
      g_string_append_printf (o, "'><title>%s</title></polyline>", link_class_names[c]);
    }
  class_legend (o, x0, shown);
  g_string_append (o, "</svg>");
}

char *
report_html (const Scenario *sc, const RunResult *r)
{
  const ScenarioSpec *s = scenario_spec (sc);
  const TopoSpec *t = topology_spec (scenario_topology (sc));
  GString *o = g_string_new ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>moesim: ");
  esc (o, s->name);
  g_string_append (o, "</title><style>body{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}"
                      "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
                      "padding:2px 6px;text-align:right}th{background:#f2f2f2}h2{margin-top:32px}"
                      ".kv td:first-child{text-align:left;font-weight:bold}</style></head><body>\n");
  g_string_append (o, "<h1>moesim report: ");
  esc (o, s->name);
  g_string_append (o, "</h1>\n<table class='kv' id='summary'>");
  double dmax = 0, emax = 0, cmax = 0;
  for (guint i = 0; i < r->n_layers; i++)
    {
      dmax += r->layers[i].dispatch.max_us;
      emax += r->layers[i].expert.max_us;
      cmax += r->layers[i].combine.max_us;
    }
  g_autofree char *tname = g_markup_escape_text (t->name, -1);
  g_autofree char *gname = g_markup_escape_text (t->gpu.name, -1);
  g_string_append_printf (o, "<tr><td>topology</td><td>%s (%s GPUs, %" G_GINT64_FORMAT " per node, fabric %s)</td></tr>",
                          tname, gname, t->node.gpus,
                          (const char *const[]){ "single switch", "fat tree", "rail-optimized", "multi-plane" }[t->fabric.kind]);
  g_string_append_printf (o, "<tr><td>model</td><td>hidden %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                             " experts, top-%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT " MoE layers</td></tr>",
                          s->model.hidden, s->model.experts, s->model.top_k, s->model.moe_layers);
  g_string_append_printf (o, "<tr><td>parallelism</td><td>EP%" G_GINT64_FORMAT " on %" G_GINT64_FORMAT
                             " nodes, %" G_GINT64_FORMAT " tokens per GPU, %" G_GINT64_FORMAT
                             " micro-batches, dispatch %s</td></tr>",
                          s->parallel.ep, s->parallel.ep / t->node.gpus, s->parallel.tokens_per_gpu,
                          s->parallel.microbatches, dispatch_names[s->dispatch]);
  g_string_append_printf (o, "<tr><td>%s pass</td><td>%.1f us</td></tr>"
                             "<tr><td>dispatch / expert / combine (sums of layer max)</td><td>%.1f / %.1f / %.1f us</td></tr>",
                          pass_names[s->pass], r->total_us, dmax, emax, cmax);
  g_string_append_printf (o, "<tr><td>bottleneck</td><td>%s link %s, busy %.1f us = %.0f %% of dispatch + combine</td></tr>",
                          link_class_names[r->bottleneck_class], r->bottleneck_link, r->bottleneck_busy_us,
                          100 * r->bottleneck_util);
  {
    g_autoptr (MemoryReport) mem = memory_account (sc, r);
    g_string_append_printf (o, "<tr><td>memory (fullest GPU)</td><td>GPU %u: %.1f of %.1f GB HBM%s</td></tr>",
                            mem->worst, mem->gpu_total[mem->worst] / 1e9, mem->capacity / 1e9,
                            mem->gpu_total[mem->worst] > mem->capacity ? " (over)" : "");
    Breakdown b;
    report_breakdown (r, &b);
    g_string_append_printf (o, "<tr><td>GPU time in MoE layers (mean GPU)</td><td>GEMM %.0f %%: %.1f ms GEMM, "
                               "%.1f ms other compute, %.1f ms communication</td></tr>",
                            100 * b.moe_gemm_share, b.moe_gemm_us / 1e3, b.moe_other_us / 1e3, b.moe_comm_us / 1e3);
  }
  g_string_append_printf (o, "<tr><td>wire bytes</td><td>nvlink %.2f GB, ib %.2f GB, fabric %.2f GB</td></tr>"
                             "<tr><td>made by</td><td>moesim %s</td></tr></table>\n",
                          r->class_bytes[0] / 1e9, r->class_bytes[1] / 1e9, r->class_bytes[2] / 1e9,
                          MOESIM_VERSION);
  g_string_append (o, "<h2>Time per layer</h2>\n");
  layer_chart (o, r);
  guint slow = 0;
  for (guint i = 1; i < r->n_layers; i++)
    if (r->layers[i].end_us - r->layers[i].start_us > r->layers[slow].end_us - r->layers[slow].start_us)
      slow = i;
  g_string_append (o, "<h2>GPU timeline: first layer</h2>\n");
  gantt (o, r, 0, 0, "gantt-first");
  gint64 chosen = s->output.report_layer;
  if (chosen >= 0)
    slow = (guint) chosen * (guint) s->parallel.microbatches;
  g_string_append_printf (o, "<h2>GPU timeline: %s layer (%u.%u, %s)</h2>\n", chosen >= 0 ? "chosen" : "slowest",
                          r->layers[slow].layer, r->layers[slow].microbatch, moe_step_pass (r, slow));
  gantt (o, r, slow, slow, "gantt-slowest");
  g_string_append (o, "<h2>GPU timeline: the whole pass</h2>\n");
  gantt (o, r, 0, r->n_layers - 1, "gantt-pass");
  g_autofree double *gl = g_new (double, (gsize) r->n_layers * r->n_gpus);
  for (gsize i = 0; i < (gsize) r->n_layers * r->n_gpus; i++)
    gl[i] = (double) r->gpu_steps[i].tokens_in;
  g_string_append (o, "<h2>GPU load (tokens received, x layer mean)</h2>\n");
  heat (o, "gpu-heat", gl, r->n_layers, r->n_gpus, "GPU", "layer");
  g_autofree double *el = g_new (double, (gsize) r->n_layers * r->experts);
  for (gsize i = 0; i < (gsize) r->n_layers * r->experts; i++)
    el[i] = (double) r->expert_rows[i];
  g_string_append (o, "<h2>Expert load (selections, x layer mean)</h2>\n");
  heat (o, "expert-heat", el, r->n_layers, r->experts, "expert", "layer");
  g_string_append (o, "<h2>Wire bytes per layer</h2>\n");
  bytes_chart (o, r);
  g_string_append (o, "<h2>Link utilisation over time (load / capacity of the class)</h2>\n");
  util_chart (o, r);
  g_string_append (o, "<h2>Imbalance</h2>\n");
  imbalance_table (o, r, s->sim.tolerance);
  g_string_append (o, "<h2>Layers</h2>\n");
  static const char *const cols[] = { "layer", "mb", "dispatch max / mean us", "expert max / mean us",
                                      "combine max / mean us", "layer us", "expert load max/mean",
                                      "dispatch GB/s (DeepEP count)", NULL };
  table_open (o, "layers", cols);
  for (guint i = 0; i < r->n_layers; i++)
    {
      const LayerResult *l = &r->layers[i];
      g_string_append_printf (o, "<tr><td>%u</td><td>%u</td><td>%.1f / %.1f</td><td>%.1f / %.1f</td>"
                                 "<td>%.1f / %.1f</td><td>%.1f</td><td>%.3f</td><td>%.1f</td></tr>\n",
                              l->layer, l->microbatch, l->dispatch.max_us, l->dispatch.mean_us,
                              l->expert.max_us, l->expert.mean_us, l->combine.max_us, l->combine.mean_us,
                              l->end_us - l->start_us, l->expert_load.max_over_mean, l->dispatch_logical_gbps);
    }
  g_string_append (o, "</table>\n</body></html>\n");
  return g_string_free (o, FALSE);
}
