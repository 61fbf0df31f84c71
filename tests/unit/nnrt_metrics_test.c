// nnrt_metrics_test.c — programs of several steps, the runtime's side:
// named metrics (nnrt_batch_metrics, NnrtModel.nmetrics / metric_names)
// and per-parameter optimizer state (param_state_init). A fake two-step
// program in C on inline data (10 rows, batches of 4, 4 and 2) reports two
// metrics per batch whose values depend on the epoch and batch, and its
// infer adds two metric sums to stats[2] and stats[3]. Checks the epoch
// means (weighted by the batch rows) in the JSON lines, the human lines and
// the CSV log, the val_ and test_ metrics from infer, eval's test_NAME
// keys, `plot` drawing them, a batch that reports no metrics, the table
// checks on metric names, and that each parameter's optimizer state starts
// from its own row of param_state_init (buffers keep state_init).
#include <math.h>

#include "nnrt_test.h"

enum { ROWS = 10, IN = 2 };

static float data_x[ROWS * IN], data_y[ROWS];
static const char *const names[2] = {"d_loss", "g_loss"};
static int skip_metrics_batch = -1;   // this batch of each epoch reports none
static float seen_state[2][4];        // the state at the start: [k][element]

// Batch i of epoch e reports d = e + i + 1 and g = 10 (e + 1) - i.
static double d_of(int64_t e, int64_t i) { return (double)(e + i + 1); }
static double g_of(int64_t e, int64_t i) { return 10.0 * (double)(e + 1) - (double)i; }

static void two_step_train(NnrtRun *run, float *params, float *state,
                           float *ws, int64_t max_batch) {
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++)
      seen_state[k][i] = state[k * 4 + i];
  float *x = ws, *y = x + max_batch * IN;
  for (int64_t e = 0;; e++) {
    int64_t nb = nnrt_epoch_begin(run, e);
    if (nb == 0)
      return;
    for (int64_t i = 0; i < nb; i++) {
      int64_t rows = nnrt_batch_fetch(run, i, x, y);
      params[0] += 0.01f;
      double v[2] = {d_of(e, i), g_of(e, i)};
      if (i != skip_metrics_batch)
        nnrt_batch_metrics(run, v);
      if (nnrt_batch_end(run, rows, (v[0] + v[1]) * (double)rows, 0))
        return;
    }
    if (nnrt_epoch_end(run, e))
      return;
  }
}

// Metric 0 of a row is its first input, metric 1 twice its label.
static void two_step_infer(const float *params, float *ws, int64_t max_batch,
                           const float *x, const float *y, int64_t rows,
                           float *out, double *stats) {
  (void)params, (void)ws, (void)max_batch;
  for (int64_t r = 0; r < rows; r++) {
    if (out)
      out[r] = x[r * IN];
    if (y) {
      stats[0] += 1;
      stats[2] += x[r * IN];
      stats[3] += 2 * y[r];
    }
  }
}

static const NnrtParamInfo table[3] = {
    {"gen.w", 1, {2}, 2, 0, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 0},
    {"disc.w", 1, {1}, 1, 2, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 0},
    {"disc.running", 1, {1}, 1, 3, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 1},
};
static const double state_init[2] = {0, 0.25};
// gen: Adam's first moment 0 and second 0.5; disc: 2 and 3; the buffer's
// row is never read.
static const double per_param[3 * 2] = {0, 0.5, 2, 3, 99, 99};

static NnrtModel two_step_model(void) {
  for (int r = 0; r < ROWS; r++) {
    data_x[r * IN] = (float)r / 10, data_x[r * IN + 1] = 1;
    data_y[r] = (float)(r % 3);
  }
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "gan";
  m.in_rank = 1, m.in_dim[0] = IN, m.in_numel = IN, m.out_numel = 1;
  m.nparams = 3, m.params = table, m.param_numel = 4;
  m.nstate = 2, m.state_init = state_init, m.param_state_init = per_param;
  NnrtDataSpec d = {NNRT_DATA_INLINE, NULL, NULL, 1, 0, NULL, ROWS, IN, 1,
                    data_x, data_y};
  m.train_data = d, m.test_data = d;
  m.batch = 4, m.epochs = 2, m.no_shuffle = 1;
  m.train_ws_per_row = IN + 1, m.train_ws_fixed = 0;
  m.infer_ws_fixed = 1;
  m.train = two_step_train, m.infer = two_step_infer;
  m.nmetrics = 2, m.metric_names = names;
  return m;
}

// Epoch e's mean of metric f over batches of 4, 4 and 2 rows.
static double mean_of(double (*f)(int64_t, int64_t), int64_t e) {
  return (4 * f(e, 0) + 4 * f(e, 1) + 2 * f(e, 2)) / 10;
}

// The means over the test set: x0 = r / 10 and 2 y = 2 (r % 3).
static double test_d(void) {
  double s = 0;
  for (int r = 0; r < ROWS; r++)
    s += (float)r / 10;
  return s / ROWS;
}
static double test_g(void) {
  double s = 0;
  for (int r = 0; r < ROWS; r++)
    s += 2 * (r % 3);
  return s / ROWS;
}

static void expect_near(double got, double want, const char *what) {
  cr_assert(fabs(got - want) <= 1e-6 * fabs(want) + 1e-9, "%s: %g, want %g",
            what, got, want);
}

// Line k (0-based) of text, into a static buffer.
static const char *line_of(const char *text, int k) {
  static char buf[4096];
  for (int i = 0; i < k && text; i++) {
    text = strchr(text, '\n');
    text = text ? text + 1 : NULL;
  }
  cr_assert_not_null(text);
  size_t n = strcspn(text, "\n");
  snprintf(buf, sizeof buf, "%.*s", (int)n, text);
  return buf;
}

Test(metrics, epoch_means_json_human_and_log) {
  const char *dir = tmpdir();
  NnrtModel m = two_step_model();
  const char *log = in_dir(dir, "log.csv");
  char logp[512];
  snprintf(logp, sizeof logp, "%s", log);
  char *argv[] = {"./gan", "train", "--json", "--no-save", "--log", logp,
                  "--quiet", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  for (int e = 0; e < 2; e++) {
    const char *l = line_of(c.out, e);
    expect_near(json_get(l, "d_loss"), mean_of(d_of, e), "d_loss");
    expect_near(json_get(l, "g_loss"), mean_of(g_of, e), "g_loss");
    expect_near(json_get(l, "test_d_loss"), test_d(), "test_d_loss");
    expect_near(json_get(l, "test_g_loss"), test_g(), "test_g_loss");
    cr_assert(isnan(json_get(l, "val_d_loss")), "%s", l);  // no validation
  }
  // The keys' order: the named ones after the loss, test_ after test_loss.
  const char *l = line_of(c.out, 0);
  cr_assert(strstr(l, "{\"epoch\":1,\"loss\":") && strstr(l, ",\"d_loss\":1.8,"
            "\"g_loss\":9.2,\"test_loss\":1,\"test_d_loss\":0.45,"
            "\"test_g_loss\":1.8,\"seconds\":"), "%s", l);
  captured_free(&c);
  // The CSV: the columns after the usual ones, a row per epoch.
  char *csv = read_all(logp, NULL);
  cr_assert_not_null(csv);
  cr_assert_str_eq(line_of(csv, 0),
                   "epoch,loss,accuracy,val_loss,val_accuracy,test_loss,"
                   "test_accuracy,seconds,d_loss,g_loss,val_d_loss,"
                   "val_g_loss,test_d_loss,test_g_loss");
  const char *row = line_of(csv, 2);
  cr_assert_eq(strncmp(row, "2,", 2), 0, "%s", row);
  const char *tail = strstr(row, ",2.8,19.2,,,");  // no validation split
  cr_assert(tail, "%s", row);
  char *end;
  expect_near(strtod(tail + 12, &end), test_d(), "test_d_loss column");
  cr_assert_eq(*end, ',', "%s", row);
  expect_near(strtod(end + 1, &end), test_g(), "test_g_loss column");
  cr_assert_eq(*end, 0, "%s", row);
  free(csv);
  // The human line.
  char *human[] = {"./gan", "train", "--no-save", "--no-log", "--epochs", "1",
                   NULL};
  c = run_main(&m, dir, human);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "epoch 1/1  loss 11.0000  d_loss 1.8000  g_loss "
                   "9.2000  test_loss 1.0000  test_d_loss 0.4500  "
                   "test_g_loss 1.8000  "), "%s", c.out);
  captured_free(&c);
}

// A validation split gets val_ metrics; a batch without metrics is not
// counted in their means.
Test(metrics, validation_and_missing_batches) {
  const char *dir = tmpdir();
  NnrtModel m = two_step_model();
  m.validation = 0.2;  // the last 2 rows: 8 train rows, batches of 4 and 4
  skip_metrics_batch = 1;
  char *argv[] = {"./gan", "--json", "--no-save", "--epochs", "1", "--quiet",
                  NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  const char *l = line_of(c.out, 0);
  expect_near(json_get(l, "d_loss"), d_of(0, 0), "d_loss");  // batch 0 only
  expect_near(json_get(l, "g_loss"), g_of(0, 0), "g_loss");
  expect_near(json_get(l, "val_d_loss"), (0.8 + 0.9) / 2, "val_d_loss");
  expect_near(json_get(l, "val_g_loss"), (2 * 2 + 2 * 0) / 2.0, "val_g_loss");
  captured_free(&c);
  // No batch reported them: null, not a made-up number.
  skip_metrics_batch = 0;
  m.validation = 0, m.batch = 10;
  c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "\"d_loss\":null,\"g_loss\":null"), "%s", c.out);
  captured_free(&c);
}

Test(metrics, eval_reports_test_names) {
  const char *dir = tmpdir();
  NnrtModel m = two_step_model();
  float w[4] = {0};
  NnrtErr e;
  const char *ck = in_dir(dir, "w.safetensors");
  char ckp[512];
  snprintf(ckp, sizeof ckp, "%s", ck);
  cr_assert_eq(nnrt_checkpoint_save(ckp, &m, w, 1, &e), 0, "%s", e.msg);
  char *argv[] = {"./gan", "eval", "--json", "--load", ckp, "--batch", "3",
                  NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  expect_near(json_get(c.out, "test_d_loss"), test_d(), "test_d_loss");
  expect_near(json_get(c.out, "test_g_loss"), test_g(), "test_g_loss");
  cr_assert(strstr(c.out, "{\"test_loss\":1,\"test_d_loss\":0.45,"
                   "\"test_g_loss\":1.8,\"examples\":10,"), "%s", c.out);
  captured_free(&c);
  char *human[] = {"./gan", "eval", "--load", ckp, NULL};
  c = run_main(&m, dir, human);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "test_loss 1.0000  test_d_loss 0.4500  test_g_loss "
                   "1.8000  (10 examples)"), "%s", c.out);
  captured_free(&c);
  // Without test data the keys say train_.
  m.test_data.kind = NNRT_DATA_NONE;
  char *quiet[] = {"./gan", "eval", "--json", "--quiet", "--load", ckp, NULL};
  c = run_main(&m, dir, quiet);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  expect_near(json_get(c.out, "train_g_loss"), test_g(), "train_g_loss");
  captured_free(&c);
}

Test(metrics, plot_draws_them) {
  const char *dir = tmpdir();
  NnrtModel m = two_step_model();
  char logp[512], svg[512];
  snprintf(logp, sizeof logp, "%s/l.csv", dir);
  snprintf(svg, sizeof svg, "%s/c.svg", dir);
  char *argv[] = {"./gan", "--no-save", "--log", logp, "--quiet",
                  "--epochs", "3", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  char *plot[] = {"./gan", "plot", logp, "-o", svg, "--quiet", NULL};
  c = run_main(&m, dir, plot);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  char *text = read_all(svg, NULL);
  cr_assert_not_null(text);
  cr_assert(strstr(text, "<g id=\"metrics-panel\">"), "no metrics panel");
  // Three points per series: the train values, and the test ones dashed.
  const char *ids[] = {"metrics-d_loss", "metrics-g_loss",
                       "metrics-test_d_loss", "metrics-test_g_loss"};
  for (int k = 0; k < 4; k++) {
    char pat[96];
    snprintf(pat, sizeof pat, "<polyline id=\"%s\"", ids[k]);
    const char *p = strstr(text, pat);
    cr_assert(p, "no %s", ids[k]);
    const char *pts = strstr(p, "points=\"");
    cr_assert(pts);
    int n = 0;
    for (const char *q = pts + 8; *q && *q != '"'; q++)
      n += *q == ',';
    cr_assert_eq(n, 3, "%s: %d points", ids[k], n);
  }
  cr_assert_null(strstr(text, "metrics-val_d_loss"));  // no validation
  cr_assert(strstr(text, ">g_loss</text>"), "no legend");
  free(text);
}

Test(metrics, names_are_checked) {
  const char *dir = tmpdir();
  NnrtModel m = two_step_model();
  static const char *const dup[2] = {"kl", "kl"};
  static const char *const reserved[2] = {"kl", "loss"};
  static const char *const prefixed[2] = {"kl", "test_kl"};
  static const char *const odd[2] = {"kl", "a\"b"};
  static const char *const *const bad[4] = {dup, reserved, prefixed, odd};
  static const char *const why[4] = {"'kl' twice", "'loss' is one of",
                                     "'test_kl' is one of",
                                     "metric 1 has no usable name"};
  char *argv[] = {"./gan", "--no-save", NULL};
  for (int k = 0; k < 4; k++) {
    m.metric_names = (const char *const *)bad[k];
    Captured c = run_main(&m, dir, argv);
    cr_assert_eq(c.rc, 1);
    cr_assert(strstr(c.err, "the model table is inconsistent") &&
              strstr(c.err, why[k]), "%s", c.err);
    captured_free(&c);
  }
  m.metric_names = NULL;
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "inconsistent (metrics)"), "%s", c.err);
  captured_free(&c);
}

Test(state, per_parameter_initial_values) {
  const char *dir = tmpdir();
  NnrtModel m = two_step_model();
  char *argv[] = {"./gan", "--no-save", "--epochs", "1", "--quiet", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  // gen.w (elements 0, 1), disc.w (2), the buffer (3: state_init).
  float want[2][4] = {{0, 0, 2, 0}, {0.5f, 0.5f, 3, 0.25f}};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 4; i++)
      cr_assert_eq(seen_state[k][i], want[k][i], "state %d of element %d: %g",
                   k, i, (double)seen_state[k][i]);
  // Without the table every element starts from state_init.
  m.param_state_init = NULL;
  c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  for (int i = 0; i < 4; i++)
    cr_assert(seen_state[0][i] == 0 && seen_state[1][i] == 0.25f);
}
