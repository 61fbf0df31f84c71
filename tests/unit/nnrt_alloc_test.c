// nnrt_alloc_test.c — the allocation hook: alignment and zeroing, every
// allocation of whole runs (train, eval, predict) balanced by a free, and
// failure injection at each allocation in turn (train, resuming with
// --load, eval, predict), which must end in a clear
// "out of memory" error (exit 1) and no leak, never a crash. The runs use a
// tiny fake model (logistic regression, one output) on small IDX, CSV, NPY
// and inline data, which also covers the one-output predict format and the
// validation split.
#include <math.h>

#include "nnrt_test.h"

Test(alloc, aligned_zeroed_and_bounded) {
  for (size_t n = 0; n < 300; n += 7) {
    unsigned char *p = nnrt_alloc(n);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % 64, 0);
    for (size_t i = 0; i < n; i++)
      cr_assert_eq(p[i], 0);
    memset(p, 0xab, n);
    nnrt_free(p);
  }
  nnrt_free(NULL);
  cr_assert_null(nnrt_alloc(SIZE_MAX - 10));
  cr_assert_null(nnrt_alloc_array(INT64_MAX / 2, 8));
  cr_assert_null(nnrt_alloc_array(-1, 4));
  Counter c = {0, 0, 0};  // the first allocation fails
  nnrt_set_alloc(counting_hook, &c);
  cr_assert_null(nnrt_alloc(10));
  void *p = nnrt_alloc(10);
  cr_assert_not_null(p);
  cr_assert_eq(c.alive, 1);
  nnrt_free(p);
  cr_assert_eq(c.alive, 0);
  nnrt_set_alloc(NULL, NULL);
}

// ---- a tiny model: p = sigmoid(w . x + b), binary cross-entropy -------------
static float predict1(const float *params, const float *x) {
  return 1.0f / (1.0f + expf(-(params[0] * x[0] + params[1] * x[1] +
                               params[2])));
}

static void tiny_train(NnrtRun *run, float *params, float *state, float *ws,
                       int64_t max_batch) {
  (void)state;
  float *x = ws, *y = ws + 2 * max_batch;
  for (int64_t e = 0;; e++) {
    int64_t nb = nnrt_epoch_begin(run, e);
    if (!nb)
      return;
    for (int64_t i = 0; i < nb; i++) {
      int64_t rows = nnrt_batch_fetch(run, i, x, y);
      double loss = 0, correct = 0;
      float g[3] = {0, 0, 0};
      for (int64_t r = 0; r < rows; r++) {
        float p = predict1(params, x + 2 * r), t = y[r];
        loss -= t * logf(p + 1e-7f) + (1 - t) * logf(1 - p + 1e-7f);
        correct += (p >= 0.5f) == (t >= 0.5f);
        g[0] += (p - t) * x[2 * r], g[1] += (p - t) * x[2 * r + 1];
        g[2] += p - t;
      }
      for (int q = 0; q < 3; q++)
        params[q] -= 0.5f * g[q] / (float)rows;
      if (nnrt_batch_end(run, rows, loss, correct))
        return;
    }
    if (nnrt_epoch_end(run, e))
      return;
  }
}

static void tiny_infer(const float *params, float *ws, int64_t max_batch,
                       const float *x, const float *y, int64_t rows,
                       float *out, double *stats) {
  (void)ws, (void)max_batch;
  for (int64_t r = 0; r < rows; r++) {
    float p = predict1(params, x + 2 * r);
    if (out)
      out[r] = p;
    if (y) {
      stats[0] -= y[r] * logf(p + 1e-7f) + (1 - y[r]) * logf(1 - p + 1e-7f);
      stats[1] += (p >= 0.5f) == (y[r] >= 0.5f);
    }
  }
}

static const NnrtParamInfo tiny_params[2] = {
    {"w", 1, {2}, 2, 0, NNRT_INIT_NORMAL, 0, 0.1, 2, 1, 0, 0},
    {"b", 1, {1}, 1, 2, NNRT_INIT_CONSTANT, 0.1, 0, 0, 0, 0, 0},
};
static const double tiny_state[1] = {0};

// Points on a grid; the label says whether x0 + x1 > 10 (of 0..12 pixels).
static NnrtModel tiny_model(const char *dir) {
  static uint8_t pix[200], lab[100], buf[512];
  static char csv[4096];
  for (int i = 0; i < 100; i++) {
    pix[2 * i] = (uint8_t)(i % 10);
    pix[2 * i + 1] = (uint8_t)(i / 10 + 1);
    lab[i] = pix[2 * i] + pix[2 * i + 1] > 10;
  }
  uint32_t di[3] = {100, 1, 2}, dl[1] = {100};
  size_t n = idx_build(buf, 8, 3, di, pix, 200);
  write_gz(in_dir(dir, "x.idx.gz"), buf, n);
  n = idx_build(buf, 8, 1, dl, lab, 100);
  write_file(in_dir(dir, "y.idx"), buf, n);
  n = (size_t)snprintf(csv, sizeof csv, "a,b,label\n");
  for (int i = 0; i < 30; i++)
    n += (size_t)snprintf(csv + n, sizeof csv - n, "%d,%d,%d\n", i % 7,
                          i % 11, i % 7 + i % 11 > 10);
  write_text(in_dir(dir, "test.csv"), csv);
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "tiny";
  static char source[256];
  snprintf(source, sizeof source, "%s", dir);
  m.source_dir = source;
  m.in_rank = 1, m.in_dim[0] = 2, m.in_numel = 2, m.out_numel = 1;
  m.nparams = 2, m.params = tiny_params, m.param_numel = 3;
  m.nstate = 1, m.state_init = tiny_state;
  m.train_data.kind = NNRT_DATA_IDX;
  m.train_data.path_x = "x.idx.gz", m.train_data.path_y = "y.idx";
  m.train_data.scale = 0.1;
  m.test_data.kind = NNRT_DATA_CSV;
  m.test_data.path_x = "test.csv", m.test_data.scale = 0.1;
  m.batch = 8, m.epochs = 3, m.seed = 1, m.validation = 0.2, m.accuracy = 1;
  m.threshold = 0.5;  // what sema gives a single output by default
  m.train_ws_per_row = 3, m.train_ws_fixed = 0;
  m.infer_ws_per_row = 1, m.infer_ws_fixed = 0;
  m.train = tiny_train, m.infer = tiny_infer;
  return m;
}

Test(tiny, trains_and_predicts_one_output) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  NnrtModel m = tiny_model(dir);
  Captured c =
      run_main(&m, dir, (char *[]){"tiny", "--json", "--epochs", "60", NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  const char *last = strstr(c.out, "\"epoch\":60,");
  cr_assert_not_null(last, "%s", c.out);
  cr_assert_gt(json_get(last, "test_accuracy"), 0.8, "%s", c.out);
  cr_assert(strstr(c.out, "\"val_accuracy\":"), "%s", c.out);
  cr_assert(strstr(c.out, "\"test_accuracy\":"), "%s", c.out);
  captured_free(&c);
  write_text(in_dir(dir, "in.csv"), "0,0\n9,9\n");
  c = run_main(&m, dir, (char *[]){"tiny", "predict", "in.csv", NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  // The class (output > the threshold, 0.5), then the raw output.
  cr_assert_eq(strncmp(c.out, "0,0.", 4), 0, "%s", c.out);
  cr_assert(strstr(c.out, "\n1,0."), "%s", c.out);
  captured_free(&c);
}

Test(tiny, inline_data) {
  const char *dir = tmpdir();
  NnrtModel m = tiny_model(dir);
  static float x[40], y[20];
  for (int i = 0; i < 20; i++)
    x[2 * i] = (float)(i % 5), x[2 * i + 1] = (float)(i / 5), y[i] = i % 2;
  m.train_data = (NnrtDataSpec){NNRT_DATA_INLINE, NULL, NULL, 1, 0, NULL,
                                20, 2, 1, x, y, 0, 0, 0, 0, 0};
  m.test_data.kind = NNRT_DATA_NONE;
  Captured c = run_main(&m, dir, (char *[]){"tiny", "--no-save", NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "epoch 3/3  loss "), "%s", c.out);
  cr_assert_null(strstr(c.out, "test_"));
  captured_free(&c);
}

// Runs argv with the k-th allocation failing, for k = 0, 1, ... until the
// run needs fewer allocations than k; each failing run must exit 1 with an
// "out of memory" message and free everything it allocated.
static void inject(const NnrtModel *m, const char *dir, char **argv) {
  int64_t k;
  for (k = 0; k < 100000; k++) {
    Counter c = {0, 0, k};
    nnrt_set_alloc(counting_hook, &c);
    Captured out = run_main(m, dir, argv);
    nnrt_set_alloc(NULL, NULL);
    cr_assert_eq(c.alive, 0, "%s: %lld blocks leaked failing allocation %lld",
                 argv[1], (long long)c.alive, (long long)k);
    if (getenv("NNRT_TEST_SHOW"))
      fprintf(stderr, "%s k=%lld rc=%d: %s", argv[1], (long long)k, out.rc,
              out.err);
    if (c.allocs <= k) {  // nothing failed: the run must have succeeded
      cr_assert_eq(out.rc, 0, "%s", out.err);
      captured_free(&out);
      break;
    }
    cr_assert_eq(out.rc, 1, "%s: allocation %lld failed, exit %d: %s", argv[1],
                 (long long)k, out.rc, out.err);
    cr_assert(strstr(out.err, "out of memory"), "%s: allocation %lld: %s",
              argv[1], (long long)k, out.err);
    captured_free(&out);
  }
  cr_assert_gt(k, 3);
}

Test(alloc, failure_injection) {
  unsetenv("NNC_DATA");
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  NnrtModel m = tiny_model(dir);
  inject(&m, dir, (char *[]){"tiny", "train", "--quiet", NULL});
  inject(&m, dir, (char *[]){"tiny", "eval", NULL});
  // Resuming reads the optimizer state too.
  inject(&m, dir, (char *[]){"tiny", "train", "--quiet", "--epochs", "1",
                             "--load", "tiny.safetensors", "--save",
                             "resumed.safetensors", NULL});
  write_text(in_dir(dir, "in.csv"), "0,0\n9,9\n");
  inject(&m, dir, (char *[]){"tiny", "predict", "in.csv", NULL});
  inject(&m, dir, (char *[]){"tiny", "predict", "x.idx.gz", NULL});
  // NPY: doubles converted to floats, 64-bit labels, a header to parse.
  double x[200];
  int64_t y[100];
  for (int i = 0; i < 100; i++) {
    x[2 * i] = i % 10, x[2 * i + 1] = i / 10 + 1;
    y[i] = x[2 * i] + x[2 * i + 1] > 10;
  }
  uint8_t buf[4096];
  size_t n = npy_build(buf, 1, "{'descr': '<f8', 'fortran_order': False, "
                       "'shape': (100, 2), }", x, sizeof x);
  write_file(in_dir(dir, "x.npy"), buf, n);
  n = npy_build(buf, 2, "{'descr': '<i8', 'fortran_order': False, "
                "'shape': (100,), }", y, sizeof y);
  write_file(in_dir(dir, "y.npy"), buf, n);
  m.train_data.kind = NNRT_DATA_NPY;
  m.train_data.path_x = "x.npy", m.train_data.path_y = "y.npy";
  inject(&m, dir, (char *[]){"tiny", "train", "--quiet", NULL});
  inject(&m, dir, (char *[]){"tiny", "predict", "x.npy", NULL});
}
