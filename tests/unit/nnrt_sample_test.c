// nnrt_sample_test.c — `./model sample` (runtime/sample.c) with a fake
// generator in C that draws like generated code does (nnrt_draw_uniform of
// the key it is given, element r * numel + j), scaled so that values fall
// outside [0, 1] and one is NaN. Checks the decoded PNG pixel by pixel
// against the samples recomputed here from the documented keys (chunk c:
// nnrt_mix64(nnrt_infer_key(seed) + c)), the calls (chunks of at most
// max_batch rows, the workspace's size and alignment), that a seed gives
// the same file and another seed another, that the first samples do not
// depend on --count, color and square shapes, the default file name and
// the printed line, a model without `sample` (exit 2), a table whose sample
// shape is inconsistent, usage errors, and that every allocation failure
// ends in "out of memory" with nothing leaked.
#include <math.h>
#include <sys/stat.h>

#include "nnrt_rng.h"
#include "nnrt_test.h"
#include "png_decode.h"

// A copy of a path that outlives in_dir's rotating buffers.
static const char *kept(const char *s) {
  static char b[16][512];
  static int n;
  char *d = b[n++ % 16];
  snprintf(d, sizeof b[0], "%s", s);
  return d;
}

enum { WS_ROW = 3, WS_FIXED = 7, MAX_CALLS = 64 };
static const float GAIN = 1.25f;  // the parameter: values up to 1.25

// What the generator was called with.
static struct Call {
  int64_t max_batch, rows, key;
  int aligned;
} calls[MAX_CALLS];
static int ncalls;

static int64_t numel_of(void);

// Element j of row r for key: GAIN * u - 0.1, with u the draw; element 3
// of row 1 of every chunk is NaN.
static float value(int64_t key, int64_t r, int64_t j, int64_t numel) {
  if (r == 1 && j == 3)
    return NAN;
  double u = nnrt_draw_uniform(nnrt_draw_key((uint64_t)key, 0),
                               (uint64_t)(r * numel + j));
  return (float)(GAIN * u - 0.1);
}

static void fake_sample(const float *params, float *ws, int64_t max_batch,
                        int64_t rows, int64_t key, float *out) {
  if (ncalls < MAX_CALLS)
    calls[ncalls++] = (struct Call){max_batch, rows, key,
                                    (uintptr_t)ws % 64 == 0};
  cr_assert(rows >= 1 && rows <= max_batch);
  cr_assert_eq(params[0], GAIN);
  for (int64_t i = 0; i < WS_ROW * max_batch + WS_FIXED; i++)
    ws[i] = 1;  // the whole workspace is there (ASan checks the end)
  int64_t numel = numel_of();
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < numel; j++)
      out[r * numel + j] = value(key, r, j, numel);
}

static void no_train(NnrtRun *run, float *params, float *state, float *ws,
                     int64_t max_batch) {
  (void)run, (void)params, (void)state, (void)ws, (void)max_batch;
}

static void no_infer(const float *params, float *ws, int64_t max_batch,
                     const float *x, const float *y, int64_t rows, float *out,
                     double *stats) {
  (void)params, (void)ws, (void)max_batch, (void)x, (void)y, (void)rows;
  (void)out, (void)stats;
}

static const NnrtParamInfo gen_params[1] = {
    {"gen.gain", 1, {1}, 1, 0, NNRT_INIT_CONSTANT, 1.25, 0, 0, 0, 0, 0},
};

static NnrtModel current;
static int64_t numel_of(void) { return current.sample_numel; }

// A generator of c x h x w samples (rank 3), or of n values (rank 1, h 0).
static NnrtModel gen_model(int64_t c, int64_t h, int64_t w) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "gan";
  m.in_numel = 1, m.out_numel = 1;
  m.nparams = 1, m.params = gen_params, m.param_numel = 1;
  m.batch = 32, m.epochs = 1, m.seed = 42;
  m.train = no_train, m.infer = no_infer;
  m.sample = fake_sample;
  if (h) {
    m.sample_rank = 3;
    m.sample_dim[0] = c, m.sample_dim[1] = h, m.sample_dim[2] = w;
    m.sample_numel = c * h * w;
  } else {
    m.sample_rank = 1, m.sample_dim[0] = c, m.sample_numel = c;
  }
  m.sample_ws_per_row = WS_ROW, m.sample_ws_fixed = WS_FIXED;
  current = m;
  return m;
}

static const char *write_ckpt(const NnrtModel *m, const char *dir) {
  float g = GAIN;
  NnrtErr e;
  const char *path = kept(in_dir(dir, "gan.safetensors"));
  cr_assert_eq(nnrt_checkpoint_save(path, m, &g, 1, &e), 0, "%s", e.msg);
  return path;
}

static Png read_png(const char *path) {
  size_t n;
  char *data = read_all(path, &n);
  cr_assert_not_null(data, "%s missing", path);
  Png p;
  cr_assert_eq(png_decode((const uint8_t *)data, n, &p), 0, "%s: %s", path,
               p.error);
  free(data);
  return p;
}

static uint8_t shade(float v) {
  if (!(v >= 0))
    v = 0;
  if (v > 1)
    v = 1;
  return (uint8_t)(v * 255 + 0.5);
}

// Sample i of a run with chunks of max_batch rows, element j.
static float expected(int64_t seed, int64_t max_batch, int64_t i, int64_t j,
                      int64_t numel) {
  int64_t c = i / max_batch, r = i % max_batch;
  int64_t key = (int64_t)nnrt_mix64(nnrt_infer_key(seed) + (uint64_t)c);
  return value(key, r, j, numel);
}

// Every pixel of a gray grid of n samples of h x w (8 columns, gutter 2).
static void expect_grid(const Png *p, int64_t n, int64_t h, int64_t w,
                        int64_t seed, int64_t max_batch) {
  int64_t cols = n < 8 ? n : 8, rows = (n + 7) / 8;
  cr_assert_eq(p->channels, 1);
  cr_assert_eq(p->width, (uint32_t)(cols * (w + 2) + 2));
  cr_assert_eq(p->height, (uint32_t)(rows * (h + 2) + 2));
  for (int64_t i = 0; i < n; i++)
    for (int64_t y = 0; y < h; y++)
      for (int64_t x = 0; x < w; x++) {
        float v = expected(seed, max_batch, i, y * w + x, h * w);
        uint32_t px = (uint32_t)(2 + i % 8 * (w + 2) + x);
        uint32_t py = (uint32_t)(2 + i / 8 * (h + 2) + y);
        cr_assert_eq(png_at(p, px, py, 0), shade(v),
                     "sample %lld (%lld, %lld)", (long long)i, (long long)x,
                     (long long)y);
      }
  for (uint32_t x = 0; x < p->width; x++)
    cr_assert(png_at(p, x, 0, 0) == 128 && png_at(p, x, 1, 0) == 128 &&
              png_at(p, x, p->height - 1, 0) == 128);
}

Test(sample, grid_pixels_keys_and_calls) {
  const char *dir = tmpdir();
  NnrtModel m = gen_model(1, 4, 5);
  const char *ck = write_ckpt(&m, dir);
  const char *out = kept(in_dir(dir, "grid.png"));
  char *argv[] = {"./gan", "sample", "--load", (char *)ck, "-o", (char *)out,
                  "--count", "13", "--seed", "7", "--batch", "5", NULL};
  ncalls = 0;
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(access(in_dir(dir, "grid.png.tmp"), F_OK), -1);
  char want[700];
  snprintf(want, sizeof want, "%s  13 samples of 4x5  seed 7\n", out);
  cr_assert_str_eq(c.out, want);
  // One chunk per 5 rows, each with its own key.
  cr_assert_eq(ncalls, 3);
  int64_t rows[3] = {5, 5, 3};
  for (int k = 0; k < 3; k++) {
    cr_assert_eq(calls[k].max_batch, 5);
    cr_assert_eq(calls[k].rows, rows[k]);
    cr_assert(calls[k].aligned);
    cr_assert_eq(calls[k].key,
                 (int64_t)nnrt_mix64(nnrt_infer_key(7) + (uint64_t)k));
  }
  Png p = read_png(out);
  expect_grid(&p, 13, 4, 5, 7, 5);
  // NaN is black, a value above 1 white: both occur.
  cr_assert_eq(png_at(&p, 2 + (5 + 2) + 3, 2, 0), 0);  // sample 1, element 3
  free(p.px);
  // The NaNs are noted on stderr (one per chunk).
  cr_assert(strstr(c.err, "gan: note: 3 of the values were not finite"), "%s",
            c.err);
  captured_free(&c);
}

Test(sample, same_seed_same_file_and_default_name) {
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  NnrtModel m = gen_model(1, 3, 3);
  write_ckpt(&m, dir);
  cr_assert_eq(rename("gan.safetensors", "prog.safetensors"), 0);
  // The defaults: 64 samples, 8 to a row, the model's seed (42), in one
  // chunk, to prog-samples.png.
  char *argv[] = {"/x/prog", "sample", "--quiet", NULL};
  ncalls = 0;
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_str_eq(c.out, "prog-samples.png  64 samples of 3x3  seed 42\n");
  cr_assert_str_eq(c.err, "");
  cr_assert_eq(ncalls, 1);
  cr_assert_eq(calls[0].rows, 64);
  captured_free(&c);
  Png p = read_png("prog-samples.png");
  expect_grid(&p, 64, 3, 3, 42, 64);
  cr_assert_eq(p.width, 8 * 5 + 2);
  cr_assert_eq(p.height, 8 * 5 + 2);
  free(p.px);
  size_t n1, n2;
  char *first = read_all("prog-samples.png", &n1);
  c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0);
  captured_free(&c);
  char *again = read_all("prog-samples.png", &n2);
  cr_assert(n1 == n2 && !memcmp(first, again, n1), "same seed, other file");
  free(again);
  // Another seed draws another grid.
  char *other[] = {"/x/prog", "sample", "--quiet", "--seed", "43", NULL};
  c = run_main(&m, dir, other);
  cr_assert_eq(c.rc, 0);
  captured_free(&c);
  again = read_all("prog-samples.png", &n2);
  cr_assert(n1 != n2 || memcmp(first, again, n1), "seed 43 drew seed 42's");
  free(again);
  free(first);
  // Fewer samples: the first ones are the same.
  char *few[] = {"/x/prog", "sample", "--count", "5", "-o", "few.png", NULL};
  c = run_main(&m, dir, few);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  p = read_png("few.png");
  expect_grid(&p, 5, 3, 3, 42, 64);
  free(p.px);
  // A .pgm name writes a PGM.
  char *pgm[] = {"/x/prog", "sample", "--count", "2", "-o", "s.pgm", NULL};
  c = run_main(&m, dir, pgm);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  char *data = read_all("s.pgm", &n1);
  cr_assert_eq(strncmp(data, "P5\n12 7\n255\n", 12), 0, "%.12s", data);
  cr_assert_eq(n1, 12 + 12 * 7);
  free(data);
}

// [3, h, w] samples are RGB; a rank-1 sample of a square size is that square.
Test(sample, color_and_square_shapes) {
  const char *dir = tmpdir();
  NnrtModel m = gen_model(3, 2, 3);
  const char *ck = write_ckpt(&m, dir);
  const char *out = kept(in_dir(dir, "rgb.png"));
  char *argv[] = {"./gan", "sample", "--load", (char *)ck, "-o", (char *)out,
                  "--count", "2", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "2 samples of 2x3 RGB  seed 42"), "%s", c.out);
  captured_free(&c);
  Png p = read_png(out);
  cr_assert_eq(p.channels, 3);
  cr_assert_eq(p.width, 2 * 5 + 2);
  cr_assert_eq(p.height, 2 + 4);
  for (int64_t i = 0; i < 2; i++)
    for (int64_t y = 0; y < 2; y++)
      for (int64_t x = 0; x < 3; x++)
        for (int k = 0; k < 3; k++)
          cr_assert_eq(png_at(&p, (uint32_t)(2 + i * 5 + x),
                              (uint32_t)(2 + y), k),
                       shade(expected(42, 2, i, k * 6 + y * 3 + x, 18)));
  free(p.px);
  m = gen_model(16, 0, 0);
  const char *sq = kept(in_dir(dir, "sq.png"));
  char *argv2[] = {"./gan", "sample", "--load", (char *)ck, "-o", (char *)sq,
                   "--count", "3", NULL};
  c = run_main(&m, dir, argv2);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  captured_free(&c);
  p = read_png(sq);
  expect_grid(&p, 3, 4, 4, 42, 3);
  free(p.px);
}

Test(sample, no_sample_expression_and_usage) {
  const char *dir = tmpdir();
  NnrtModel m = gen_model(1, 2, 2);
  m.sample = NULL;
  char *argv[] = {"./gan", "sample", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 2);
  cr_assert_str_eq(c.err, "gan: this model has no 'sample' expression in "
                   "its train block (model 'gan')\n");
  cr_assert_str_eq(c.out, "");
  captured_free(&c);
  m = gen_model(1, 2, 2);
  char *epochs[] = {"./gan", "sample", "--epochs", "2", NULL};
  c = run_main(&m, dir, epochs);
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "option '--epochs' does not apply to 'sample'"),
            "%s", c.err);
  captured_free(&c);
  char *count[] = {"./gan", "sample", "--count", "0", NULL};
  c = run_main(&m, dir, count);
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "--count: 0 is too small"), "%s", c.err);
  captured_free(&c);
  char *none[] = {"./gan", "sample", NULL};
  c = run_main(&m, dir, none);
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "gan.safetensors: no such checkpoint"), "%s",
            c.err);
  captured_free(&c);
  char *help[] = {"./gan", "sample", "--help", NULL};
  c = run_main(&m, dir, help);
  cr_assert_eq(c.rc, 0);
  cr_assert(strstr(c.out, "gan sample [--load FILE] [--out FILE.png] "
                   "[--count N] [--seed N]"), "%s", c.out);
  cr_assert(strstr(c.out, "(default\n                  gan-samples.png)"),
            "%s", c.out);
  captured_free(&c);
  // A table whose sample shape does not add up is refused.
  m.sample_numel = 5;
  c = run_main(&m, dir, none);
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "the model table is inconsistent (sample)"), "%s",
            c.err);
  captured_free(&c);
}

Test(sample, every_allocation_failure_is_clean) {
  const char *dir = tmpdir();
  NnrtModel m = gen_model(1, 4, 4);
  const char *ck = write_ckpt(&m, dir);
  const char *out = kept(in_dir(dir, "f.png"));
  char *argv[] = {"./gan", "sample", "--load", (char *)ck, "-o", (char *)out,
                  "--count", "10", "--batch", "4", "--threads", "1", NULL};
  int64_t k;
  for (k = 0; k < 1000; k++) {
    Counter c = {0, 0, k};
    nnrt_set_alloc(counting_hook, &c);
    Captured r = run_main(&m, dir, argv);
    nnrt_set_alloc(NULL, NULL);
    cr_assert_eq(c.alive, 0, "allocation %lld: leak", (long long)k);
    if (c.allocs <= k) {
      cr_assert_eq(r.rc, 0, "%s", r.err);
      captured_free(&r);
      break;
    }
    cr_assert_eq(r.rc, 1, "allocation %lld: %s", (long long)k, r.err);
    cr_assert(strstr(r.err, "out of memory"), "%s", r.err);
    captured_free(&r);
  }
  cr_assert_gt(k, 5);
  Png p = read_png(out);
  expect_grid(&p, 10, 4, 4, 42, 4);
  free(p.px);
}
