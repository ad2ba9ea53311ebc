/* report.html in a real browser: headless Chromium (Debian's `chromium`)
 * loads the page with no console message, the rendered DOM has every chart
 * and table, and a screenshot is taken. Skipped (exit 77) where chromium is not installed;
 * .ci/run installs it. */
#include "moe.h"
#include "report.h"
#include "sweep.h"
#include "test_sim.h"

#include <glib/gstdio.h>

static const char *chromium;
static char *tmpdir;

static int
spawn (const char *cmd, char **out, char **err)
{
  int status = 0;
  if (!g_spawn_command_line_sync (cmd, out, err, &status, NULL))
    return -1;
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* Console messages Chromium logged (with --enable-logging=stderr) while
 * loading `page`, NULL when none; the DOM it rendered in *dom. */
static char *
load_page (const char *page, char **dom)
{
  g_autofree char *cmd = g_strdup_printf ("%s --headless --no-sandbox --disable-gpu --disable-quic "
                                          "--no-first-run --disable-background-networking "
                                          "--disable-component-update --disable-sync "
                                          "--enable-logging=stderr --v=0 --user-data-dir=%s/profile "
                                          "--dump-dom file://%s", chromium, tmpdir, page);
  g_autofree char *log = NULL;
  CU_ASSERT_EQUAL (spawn (cmd, dom, &log), 0);
  GString *msgs = g_string_new (NULL);
  g_auto (GStrv) lines = g_strsplit (log ? log : "", "\n", -1);
  for (char **l = lines; *l; l++)
    if (strstr (*l, ":CONSOLE"))
      g_string_append_printf (msgs, "%s\n", *l);
  return msgs->len ? g_string_free (msgs, FALSE) : (g_string_free (msgs, TRUE), NULL);
}

/* The console check itself catches a page that logs an error. */
static void
test_console_errors_are_caught (void)
{
  g_autofree char *page = g_build_filename (tmpdir, "bad.html", NULL);
  g_file_set_contents (page, "<html><body><script>undefinedFunction ();</script></body></html>", -1, NULL);
  g_autofree char *dom = NULL;
  g_autofree char *msgs = load_page (page, &dom);
  CU_ASSERT (msgs != NULL && strstr (msgs, "undefinedFunction") != NULL);
}

static void
test_report_renders_in_chromium (void)
{
  g_autoptr (GError) err = NULL;
  g_autoptr (Scenario) sc = test_load_sim ("tiny.yaml", NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sc);
  g_autoptr (RunResult) r = moe_run (sc, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r);
  g_autofree char *html = report_html (sc, r);
  /* self-contained: no script, nothing fetched */
  CU_ASSERT (strstr (html, "<script") == NULL && strstr (html, "http") == NULL
             && strstr (html, "src=") == NULL);
  g_autofree char *page = g_build_filename (tmpdir, "report.html", NULL);
  g_file_set_contents (page, html, -1, NULL);
  g_autofree char *flags = g_strdup_printf (
      "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync "
      "--user-data-dir=%s/profile", tmpdir);
  g_autofree char *dom = NULL;
  g_autofree char *console = load_page (page, &dom);
  if (console)
    g_printerr ("\n  console messages:\n%s", console);
  CU_ASSERT (console == NULL);
  const char *ids[] = { "id=\"summary\"", "id=\"layer-chart\"", "id=\"gantt-first\"", "id=\"gantt-slowest\"",
                        "id=\"gantt-pass\"",
                        "id=\"gpu-heat\"", "id=\"expert-heat\"", "id=\"bytes-chart\"", "id=\"util-chart\"",
                        "id=\"imbalance-summary\"", "id=\"imbalance\"", "id=\"layers\"" };
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      gboolean found = dom && strstr (dom, ids[i]);
      if (!found)
        g_printerr ("\n  rendered DOM lacks %s\n", ids[i]);
      CU_ASSERT (found);
    }
  /* the per-layer table has a row per layer (4) plus its header */
  guint rows = 0;
  for (const char *q = dom ? strstr (dom, "id=\"layers\"") : NULL; q && (q = strstr (q + 1, "<tr>"));)
    rows++;
  CU_ASSERT_EQUAL (rows, 5);
  /* the imbalance table's rows come before the layers table: 4 + header */
  rows = 0;
  const char *end = dom ? strstr (dom, "id=\"layers\"") : NULL;
  for (const char *q = dom ? strstr (dom, "id=\"imbalance\"") : NULL; q && (q = strstr (q + 1, "<tr>")) && q < end;)
    rows++;
  CU_ASSERT_EQUAL (rows, 5);
  /* one balanced-counterfactual mark per layer in the chart */
  guint marks = 0;
  for (const char *q = dom; q && (q = strstr (q, "class=\"balanced\"")); q++)
    marks++;
  CU_ASSERT_EQUAL (marks, 4);
  g_autofree char *shot = g_build_filename (tmpdir, "report.png", NULL);
  g_autofree char *shot_cmd = g_strdup_printf ("%s %s --window-size=1150,2400 --screenshot=%s file://%s",
                                               chromium, flags, shot, page);
  CU_ASSERT_EQUAL (spawn (shot_cmd, NULL, NULL), 0);
  GStatBuf st;
  CU_ASSERT (g_stat (shot, &st) == 0 && st.st_size > 10000);
}

/* sweep.html: loads with no console message, one chart per axis, the table
 * with a row per point. */
static void
test_sweep_html_renders (void)
{
  g_autofree char *file = g_build_filename (tmpdir, "sweep.yaml", NULL);
  g_autofree char *text = g_strdup_printf ("name: b\nscenario: %s/sim/tiny.yaml\naxes:\n"
                                           "  nic.gbps: [12.5, 25]\n  dispatch: [direct, hierarchical]\n",
                                           MOESIM_SOURCE_ROOT);
  g_file_set_contents (file, text, -1, NULL);
  g_autoptr (GError) err = NULL;
  g_autoptr (Sweep) sw = sweep_load (file, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sw);
  g_autofree char *dir = g_build_filename (tmpdir, "sweep-out", NULL);
  SweepOptions opt = { .jobs = 2, .shards = 1, .quiet = TRUE };
  SweepStats st;
  CU_ASSERT_FATAL (sweep_run (sw, dir, &opt, &st, &err));
  CU_ASSERT_EQUAL (st.run, 4);
  g_autofree char *page = g_build_filename (dir, "sweep.html", NULL);
  g_autofree char *dom = NULL;
  g_autofree char *console = load_page (page, &dom);
  CU_ASSERT (console == NULL);
  CU_ASSERT (dom && strstr (dom, "id=\"axis-0\"") && strstr (dom, "id=\"axis-1\""));
  guint rows = 0;
  for (const char *q = dom ? strstr (dom, "id=\"points\"") : NULL; q && (q = strstr (q + 1, "<tr>"));)
    rows++;
  CU_ASSERT_EQUAL (rows, 5);
}

int
main (void)
{
  chromium = g_file_test ("/usr/bin/chromium", G_FILE_TEST_IS_EXECUTABLE) ? "/usr/bin/chromium" : NULL;
  if (chromium == NULL)
    {
      g_printerr ("test_browser: skipped: /usr/bin/chromium is not installed (apt-get install chromium)\n");
      return 77;
    }
  tmpdir = g_dir_make_tmp ("moesim-browser-XXXXXX", NULL);
  static const TestCase tests[] = {
    TEST (test_report_renders_in_chromium),
    TEST (test_console_errors_are_caught),
    TEST (test_sweep_html_renders),
  };
  int rc = test_main ("browser", tests, G_N_ELEMENTS (tests));
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    rc = 1;
  g_free (tmpdir);
  return rc;
}
