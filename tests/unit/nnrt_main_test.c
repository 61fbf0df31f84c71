// nnrt_main_test.c — the runtime end to end, with a fake model written in C:
// softmax regression 784 -> 10 on Fashion-MNIST whose train and infer
// functions call the runtime exactly as generated code does. Checks the
// JSON and human epoch lines, that the loss falls and accuracy passes 60%,
// checkpoints (default name, --save, --no-save, --load), eval reproducing
// the test accuracy, predict on CSV and IDX input, Ctrl-C (exit 130 with the
// weights saved), divergence (exit 1, last good checkpoint kept) and usage
// errors (exit 2).
#include <math.h>
#include <signal.h>
#include <sys/stat.h>

#include "nnrt_test.h"

enum { IN = 784, OUT = 10, NW = IN * OUT, NP = NW + OUT };

// Test knobs (each Criterion test runs in its own process).
static int64_t nan_at_step = -1;     // report a NaN loss at this global step
static int64_t sigint_at_step = -1;  // raise SIGINT during this global step
static int sigint_twice = 0;         // ... and again (the user insists)
static int state_ok = -1;            // state and workspace as promised
static double lr = 0.05;

// Softmax probabilities of one row; returns the argmax.
static int64_t forward(const float *params, const float *x, float *p) {
  const float *W = params, *b = params + NW;
  float mx = -INFINITY;
  for (int k = 0; k < OUT; k++) {
    float z = b[k];
    for (int j = 0; j < IN; j++)
      z += x[j] * W[j * OUT + k];
    p[k] = z;
    mx = fmaxf(mx, z);
  }
  int64_t best = 0;
  for (int k = 1; k < OUT; k++)
    best = p[k] > p[best] ? k : best;
  float sum = 0;
  for (int k = 0; k < OUT; k++) {
    p[k] = expf(p[k] - mx);
    sum += p[k];
  }
  for (int k = 0; k < OUT; k++)
    p[k] /= sum;
  return best;
}

static int64_t label_of(const float *y) {
  int64_t c = 0;
  for (int k = 1; k < OUT; k++)
    c = y[k] > y[c] ? k : c;
  return c;
}

static void fake_train(NnrtRun *run, float *params, float *state, float *ws,
                       int64_t max_batch) {
  // Optimizer state k of element i sits at state[k * NP + i].
  state_ok = 1;
  for (int64_t i = 0; i < NP; i++)
    if (state[i] != 0.0f || state[NP + i] != 0.25f)
      state_ok = 0;
  int64_t ws_len = max_batch * (IN + 2 * OUT) + NP;
  for (int64_t i = 0; i < ws_len; i++)
    if (ws[i] != 0.0f)
      state_ok = 0;
  if ((uintptr_t)params % 64 || (uintptr_t)ws % 64)
    state_ok = 0;
  float *x = ws, *y = x + max_batch * IN, *p = y + max_batch * OUT;
  float *g = p + max_batch * OUT, *mom = state;
  int64_t global = 0;
  for (int64_t e = 0;; e++) {
    int64_t nb = nnrt_epoch_begin(run, e);
    if (nb == 0)
      return;
    for (int64_t i = 0; i < nb; i++) {
      int64_t rows = nnrt_batch_fetch(run, i, x, y);
      double loss = 0, correct = 0;
      memset(g, 0, NP * sizeof(float));
      for (int64_t r = 0; r < rows; r++) {
        float *pr = p + r * OUT;
        const float *xr = x + r * IN, *yr = y + r * OUT;
        int64_t c = label_of(yr);
        correct += forward(params, xr, pr) == c;
        loss -= log(pr[c] + 1e-12);
        for (int k = 0; k < OUT; k++) {
          float d = pr[k] - yr[k];
          g[NW + k] += d;
          for (int j = 0; j < IN; j++)
            g[j * OUT + k] += xr[j] * d;
        }
      }
      for (int64_t q = 0; q < NP; q++) {  // SGD with momentum
        mom[q] = 0.9f * mom[q] + g[q] / (float)rows;
        params[q] -= (float)lr * mom[q];
      }
      if (global == sigint_at_step) {
        raise(SIGINT);
        if (sigint_twice)
          raise(SIGINT);
      }
      if (global++ == nan_at_step)
        loss = NAN;
      if (nnrt_batch_end(run, rows, loss, correct))
        return;
    }
    if (nnrt_epoch_end(run, e))
      return;
  }
}

static void fake_infer(const float *params, float *ws, int64_t max_batch,
                       const float *x, const float *y, int64_t rows,
                       float *out, double *stats) {
  (void)max_batch;
  for (int64_t r = 0; r < rows; r++) {
    float *pr = ws;
    int64_t best = forward(params, x + r * IN, pr);
    if (out)
      memcpy(out + r * OUT, pr, OUT * sizeof(float));
    if (y) {
      int64_t c = label_of(y + r * OUT);
      stats[0] -= log(pr[c] + 1e-12);
      stats[1] += best == c;
    }
  }
}

static const NnrtParamInfo params_table[2] = {
    {"dense.W", 2, {IN, OUT}, NW, 0, NNRT_INIT_XAVIER_UNIFORM, 0, 0, IN, OUT, 0, 0},
    {"dense.b", 1, {OUT}, OUT, NW, NNRT_INIT_ZEROS, 0, 0, 0, 0, 0, 0},
};
static const double state_init[2] = {0, 0.25};

static NnrtModel fashion_model(void) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "softmax";
  m.source_dir = "/nonexistent";
  m.in_rank = 2, m.in_dim[0] = 28, m.in_dim[1] = 28;
  m.in_numel = IN, m.out_numel = OUT;
  m.nparams = 2, m.params = params_table, m.param_numel = NP;
  m.nstate = 2, m.state_init = state_init;
  NnrtDataSpec tr = {NNRT_DATA_IDX, FASHION "train-images-idx3-ubyte.gz",
                     FASHION "train-labels-idx1-ubyte.gz", 1 / 255.0, 0, NULL,
                     0, 0, 0, NULL, NULL, 0, 0, 0, 0, 0};
  NnrtDataSpec te = tr;
  te.path_x = FASHION "t10k-images-idx3-ubyte.gz";
  te.path_y = FASHION "t10k-labels-idx1-ubyte.gz";
  m.train_data = tr, m.test_data = te;
  m.batch = 32, m.epochs = 3, m.seed = 7;
  m.accuracy = 1;
  m.train_ws_per_row = IN + 2 * OUT, m.train_ws_fixed = NP;
  m.infer_ws_per_row = 0, m.infer_ws_fixed = OUT;
  m.train = fake_train, m.infer = fake_infer;
  return m;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

// The n-th line (0-based) of s into buf.
static const char *line_of(const char *s, int n, char *buf, size_t cap) {
  for (; n > 0 && s; n--)
    s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL;
  cr_assert_not_null(s);
  size_t len = strcspn(s, "\n");
  cr_assert_lt(len, cap);
  memcpy(buf, s, len);
  buf[len] = '\0';
  return buf;
}

Test(e2e, train_json_eval_predict, .timeout = 300) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  char ckpt[256];
  snprintf(ckpt, sizeof ckpt, "%s/w.safetensors", dir);
  NnrtModel m = fashion_model();
  char *argv[] = {"./softmax", "train", "--limit", "2000", "--epochs", "2",
                  "--json", "--save", ckpt, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "stderr: %s", c.err);
  cr_assert_eq(state_ok, 1);
  cr_assert_eq(count_lines(c.out), 2, "stdout: %s", c.out);
  char l1[1024], l2[1024];
  line_of(c.out, 0, l1, sizeof l1);
  line_of(c.out, 1, l2, sizeof l2);
  cr_assert_eq(l1[0], '{');
  cr_assert_eq(l2[strlen(l2) - 1], '}');
  cr_assert_eq(json_get(l1, "epoch"), 1);
  cr_assert_eq(json_get(l2, "epoch"), 2);
  const char *keys[] = {"loss", "accuracy", "test_loss", "test_accuracy",
                        "seconds", "samples_per_s"};
  for (int k = 0; k < 6; k++)
    cr_assert(isfinite(json_get(l2, keys[k])), "%s missing: %s", keys[k], l2);
  cr_assert_null(strstr(l2, "val_"));  // no validation split
  cr_assert_lt(json_get(l2, "loss"), json_get(l1, "loss"));
  double acc = json_get(l2, "test_accuracy");
  cr_assert_gt(acc, 0.6, "%s", l2);
  cr_assert_gt(json_get(l2, "accuracy"), 0.6);
  // Human lines go to stderr with --json.
  cr_assert(strstr(c.err, "epoch 2/2  loss "), "%s", c.err);
  struct stat st;
  cr_assert_eq(stat(ckpt, &st), 0);
  cr_assert_eq((size_t)st.st_size > NP * sizeof(float), 1);
  captured_free(&c);

  // eval --load reproduces the last epoch's test accuracy exactly.
  char *ev[] = {"./softmax", "eval", "--load", ckpt, "--json", NULL};
  c = run_main(&m, dir, ev);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(json_get(c.out, "test_accuracy"), acc, "%s vs %s", c.out, l2);
  cr_assert_eq(json_get(c.out, "test_loss"), json_get(l2, "test_loss"));
  cr_assert_eq(json_get(c.out, "examples"), 10000);
  // Inference time and throughput.
  double secs = json_get(c.out, "seconds"), rate = json_get(c.out,
                                                             "samples_per_s");
  cr_assert(secs > 0 && rate > 0, "%s", c.out);
  cr_assert(fabs(rate * secs - 10000) < 1e-3 * 10000, "%s", c.out);
  captured_free(&c);
  char *ev_human[] = {"./softmax", "eval", "--load", ckpt, NULL};
  c = run_main(&m, dir, ev_human);
  cr_assert_eq(c.rc, 0);
  cr_assert_eq(strncmp(c.out, "test_loss ", 10), 0, "%s", c.out);
  cr_assert(strstr(c.out, "  test_accuracy ") && strstr(c.out, "%  (10000 "
            "examples)  ") && strstr(c.out, " s  ") &&
            strstr(c.out, " samples/s\n"), "%s", c.out);
  captured_free(&c);

  // predict on CSV: a header and three rows of pixels 0..255.
  char csv[64 * 1024] = "";
  size_t n = 0;
  for (int j = 0; j < IN; j++)
    n += (size_t)snprintf(csv + n, sizeof csv - n, "%sp%d", j ? "," : "", j);
  for (int r = 0; r < 3; r++) {
    csv[n++] = '\n';
    for (int j = 0; j < IN; j++)
      n += (size_t)snprintf(csv + n, sizeof csv - n, "%s%d", j ? "," : "",
                            (j * (r + 3)) % 256);
  }
  write_text(in_dir(dir, "in.csv"), csv);
  char *pr[] = {"./softmax", "predict", "--load", ckpt,
                (char *)in_dir(dir, "in.csv"), NULL};
  c = run_main(&m, dir, pr);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(count_lines(c.out), 3, "%s", c.out);
  char line[1024];
  line_of(c.out, 0, line, sizeof line);
  int fields = 1;
  for (char *q = line; *q; q++)
    fields += *q == ',';
  cr_assert_eq(fields, 1 + OUT, "%s", line);
  long cls = strtol(line, NULL, 10);
  cr_assert(cls >= 0 && cls < OUT);
  captured_free(&c);

  // predict on the IDX test images: one line per image.
  char *pi[] = {"./softmax", "predict", "--load", ckpt,
                "/usr/share/datasets/" FASHION "t10k-images-idx3-ubyte.gz",
                NULL};
  c = run_main(&m, dir, pi);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(count_lines(c.out), 10000);
  captured_free(&c);
}

Test(e2e, human_lines_default_checkpoint_and_load, .timeout = 300) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  NnrtModel m = fashion_model();
  m.validation = 0.1;
  char *argv[] = {"/some/where/fashion", "--limit", "1000", "--epochs", "1",
                  "--quiet", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(strncmp(c.out, "epoch 1/1  loss ", 16), 0, "%s", c.out);
  cr_assert(strstr(c.out, "%  val_loss ") && strstr(c.out, "  val_accuracy ")
            && strstr(c.out, "  test_loss ") && strstr(c.out, " samples/s\n"),
            "%s", c.out);
  cr_assert_str_eq(c.err, "");  // --quiet
  cr_assert_eq(access("fashion.safetensors", F_OK), 0);
  captured_free(&c);
  // eval finds the default checkpoint by the program's name.
  char *ev[] = {"./fashion", "eval", "--json", NULL};
  c = run_main(&m, dir, ev);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  // --load continues from the saved weights: the first epoch starts lower.
  char *fresh[] = {"./fashion", "--limit", "1000", "--epochs", "1", "--json",
                   "--no-save", NULL};
  char *again[] = {"./fashion", "--limit", "1000", "--epochs", "1", "--json",
                   "--no-save", "--load", "fashion.safetensors", NULL};
  c = run_main(&m, dir, fresh);
  double l0 = json_get(c.out, "loss");
  cr_assert(strstr(c.out, "\"val_accuracy\":"), "%s", c.out);
  captured_free(&c);
  c = run_main(&m, dir, again);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_lt(json_get(c.out, "loss"), l0);
  cr_assert(strstr(c.err, "loaded weights and optimizer state from "
                   "fashion.safetensors (after epoch 1, step 29)\n"), "%s",
            c.err);
  // This run's epoch continues the saved run's numbering.
  cr_assert(strstr(c.out, "{\"epoch\":2,"), "%s", c.out);
  captured_free(&c);
  // Same seed, same run: identical losses; another seed differs.
  c = run_main(&m, dir, fresh);
  cr_assert_eq(json_get(c.out, "loss"), l0);
  captured_free(&c);
  char *seeded[] = {"./fashion", "--limit", "1000", "--epochs", "1", "--json",
                    "--no-save", "--seed", "8", NULL};
  c = run_main(&m, dir, seeded);
  cr_assert_neq(json_get(c.out, "loss"), l0);
  captured_free(&c);
}

Test(e2e, ctrl_c_saves_and_exits_130, .timeout = 300) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  char ckpt[256];
  snprintf(ckpt, sizeof ckpt, "%s/w.safetensors", dir);
  NnrtModel m = fashion_model();
  sigint_at_step = 16 + 4;  // 500 rows / 32 = 16 steps per epoch
  char *argv[] = {"./softmax", "--limit", "500", "--save", ckpt, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 130, "%s", c.err);
  cr_assert(strstr(c.err, "interrupted at epoch 2, step 5; weights saved to "),
            "%s", c.err);
  cr_assert_eq(count_lines(c.out), 1);  // only epoch 1 finished
  float w[NP];
  int64_t epoch;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_load(ckpt, &m, w, &epoch, &e), 0, "%s", e.msg);
  cr_assert_eq(epoch, 1);  // completed epochs
  captured_free(&c);
  // The handler is restored afterwards.
  struct sigaction sa;
  sigaction(SIGINT, NULL, &sa);
  cr_assert_eq(sa.sa_handler, SIG_DFL);
}

// A second Ctrl-C exits at once with 130, without saving.
Test(e2e, second_ctrl_c_exits_at_once, .exit_code = 130, .timeout = 300) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  NnrtModel m = fashion_model();
  sigint_at_step = 3;
  sigint_twice = 1;
  char *argv[] = {"./softmax", "--limit", "500", "--save",
                  (char *)in_dir(dir, "w.safetensors"), "--quiet", NULL};
  run_main(&m, dir, argv);
  cr_assert_fail("nnrt_main returned after a second SIGINT");
}

Test(e2e, divergence_keeps_last_good_checkpoint, .timeout = 300) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  char ckpt[256];
  snprintf(ckpt, sizeof ckpt, "%s/w.safetensors", dir);
  NnrtModel m = fashion_model();
  nan_at_step = 16 + 2;
  char *argv[] = {"./softmax", "--limit", "500", "--save", ckpt, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "softmax: loss is not finite at epoch 2, step 3; "
                   "keeping the last saved weights (epoch 1) (--check-numerics "
                   "finds the first non-finite value)\n"), "%s", c.err);
  float w[NP];
  int64_t epoch;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_load(ckpt, &m, w, &epoch, &e), 0, "%s", e.msg);
  cr_assert_eq(epoch, 1);
  captured_free(&c);
  // Diverging in the first epoch saves nothing.
  nan_at_step = 0;
  char *argv2[] = {"./softmax", "--limit", "500", "--save",
                   (char *)in_dir(dir, "x.safetensors"), NULL};
  c = run_main(&m, dir, argv2);
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "at epoch 1, step 1; no weights were saved"));
  cr_assert_eq(access(in_dir(dir, "x.safetensors"), F_OK), -1);
  captured_free(&c);
}

static void expect_usage(char **argv, int rc, const char *text) {
  NnrtModel m = fashion_model();
  const char *dir = tmpdir();
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, rc, "%s: %s", argv[1], c.err);
  const char *where = rc == 0 ? c.out : c.err;
  cr_assert(strstr(where, text), "'%s' lacks '%s'", where, text);
  captured_free(&c);
}

Test(cli, usage_errors) {
  expect_usage((char *[]){"./m", "--epochs", "abc", NULL}, 2,
               "m: --epochs: 'abc' is not a whole number\nusage: ./m [train | eval "
               "| predict INPUT | reconstruct] [options]\ntry './m --help'");
  expect_usage((char *[]){"./m", "--epochs", "0", NULL}, 2,
               "--epochs: 0 is too small (the least is 1)");
  expect_usage((char *[]){"./m", "--batch=", NULL}, 2, "not a whole number");
  expect_usage((char *[]){"./m", "--frobnicate", NULL}, 2,
               "unknown option '--frobnicate'");
  expect_usage((char *[]){"./m", "-x", NULL}, 2, "unknown option '-x'");
  expect_usage((char *[]){"./m", "fit", NULL}, 2, "unknown command 'fit'");
  expect_usage((char *[]){"./m", "eval", "--epochs", "3", NULL}, 2,
               "option '--epochs' does not apply to 'eval'");
  expect_usage((char *[]){"./m", "predict", NULL}, 2,
               "predict needs an INPUT file");
  expect_usage((char *[]){"./m", "--seed", NULL}, 2,
               "option '--seed' needs a value");
  expect_usage((char *[]){"./m", "--json=1", NULL}, 2,
               "option '--json' takes no value");
  expect_usage((char *[]){"./m", "--save", "a", "--no-save", NULL}, 2,
               "contradict");
  expect_usage((char *[]){"./m", "train", "extra", NULL}, 2,
               "unexpected argument 'extra'");
  expect_usage((char *[]){"./m", "--help", NULL}, 0, "usage: m [train]");
  expect_usage((char *[]){"./m", "eval", "-h", NULL}, 0, "--epochs N");
}

Test(cli, missing_checkpoint_and_data) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  expect_usage((char *[]){"./m", "eval", NULL}, 1,
               "m: m.safetensors: no such checkpoint; train first or pass "
               "--load FILE");
  expect_usage((char *[]){"./m", "eval", "--load", "nope", NULL}, 1,
               "m: nope: cannot open (No such file or directory)");
  NnrtModel m = fashion_model();
  m.train_data.path_x = "missing-images.gz";
  Captured c = run_main(&m, dir, (char *[]){"./m", NULL});
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "m: missing-images.gz: data file not found (looked "
                   "in /nonexistent, /usr/share/datasets"), "%s", c.err);
  captured_free(&c);
}

Test(metrics, formats) {
  NnrtMetrics mt = {0};
  mt.epoch = 1, mt.epochs = 5, mt.loss = 0.51234, mt.accuracy = 0.81925;
  mt.has_accuracy = 1, mt.has_test = 1, mt.test_loss = 0.44119;
  mt.test_accuracy = 0.841, mt.seconds = 1.523, mt.samples_per_s = 39512;
  char buf[512];
  nnrt_metrics_format(buf, sizeof buf, &mt, 0);
  cr_assert_str_eq(buf, "epoch 1/5  loss 0.5123  accuracy 81.92%  test_loss "
                   "0.4412  test_accuracy 84.10%  1.52 s  39.5k samples/s");
  nnrt_metrics_format(buf, sizeof buf, &mt, 1);
  cr_assert_str_eq(buf, "{\"epoch\":1,\"loss\":0.51234,\"accuracy\":0.81925,"
                   "\"test_loss\":0.44119,\"test_accuracy\":0.841,"
                   "\"seconds\":1.523,\"samples_per_s\":39512}");
  mt.has_accuracy = 0, mt.has_test = 0, mt.has_val = 1, mt.val_loss = 2e-5;
  mt.loss = NAN;
  nnrt_metrics_format(buf, sizeof buf, &mt, 0);
  cr_assert_str_eq(buf, "epoch 1/5  loss nan  val_loss 2.000e-05  1.52 s  "
                   "39.5k samples/s");
  nnrt_metrics_format(buf, sizeof buf, &mt, 1);
  cr_assert_str_eq(buf, "{\"epoch\":1,\"loss\":null,\"val_loss\":2e-05,"
                   "\"seconds\":1.523,\"samples_per_s\":39512}");
}

// The misclassified training examples follow the accuracy (classic units).
Test(metrics, mistakes) {
  NnrtMetrics mt = {0};
  mt.epoch = 2, mt.epochs = 20, mt.loss = 0.25, mt.accuracy = 0.75;
  mt.has_accuracy = 1, mt.has_mistakes = 1, mt.mistakes = 1;
  mt.seconds = 0.001, mt.samples_per_s = 4000;
  char buf[512];
  nnrt_metrics_format(buf, sizeof buf, &mt, 0);
  cr_assert_str_eq(buf, "epoch 2/20  loss 0.2500  accuracy 75.00%  mistakes 1"
                   "  0.00 s  4.0k samples/s");
  nnrt_metrics_format(buf, sizeof buf, &mt, 1);
  cr_assert_str_eq(buf, "{\"epoch\":2,\"loss\":0.25,\"accuracy\":0.75,"
                   "\"mistakes\":1,\"seconds\":0.001,\"samples_per_s\":4000}");
}
