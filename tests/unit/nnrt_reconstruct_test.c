// nnrt_reconstruct_test.c — `./model reconstruct` and eval's timing keys.
// A fake autoencoder in C (4x4 one-channel images on inline data; the
// "reconstruction" is 1.5 x - bias, so some values fall outside [0, 1] and
// must be clamped) checks the PNG (decoded by png_decode.h: chunks, CRCs,
// inflate, filters) and the PGM written for a .pgm name: size, layout and
// pixel values, the
// printed mean squared error, the atomic write (no temp file left, a failed
// rename leaving the old file alone), the default file name, training data
// when there is no test set, the image size rules, and the error (exit 2)
// for a model that is not an autoencoder, and that a failure of any
// allocation ends in "out of memory" with nothing leaked. Also checks that
// eval reports seconds and samples/s.
#include <math.h>
#include <sys/stat.h>

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

enum { SIDE = 4, PIX = SIDE * SIDE, ROWS = 10 };
static const float BIAS = 0.25f;

static uint8_t raw_pixel(int row, int j) {
  return (uint8_t)((row * 37 + j * 23) % 256);
}

static void ae_train(NnrtRun *run, float *params, float *state, float *ws,
                     int64_t max_batch) {
  (void)run, (void)params, (void)state, (void)ws, (void)max_batch;
}

static void ae_infer(const float *params, float *ws, int64_t max_batch,
                     const float *x, const float *y, int64_t rows, float *out,
                     double *stats) {
  (void)ws, (void)max_batch;
  for (int64_t i = 0; i < rows * PIX; i++) {
    float v = 1.5f * x[i] - params[0];
    if (out)
      out[i] = v;
    if (y)
      stats[0] += (double)(v - x[i]) * (v - x[i]) / PIX;
  }
}

static const NnrtParamInfo ae_params[1] = {
    {"bias", 1, {1}, 1, 0, NNRT_INIT_CONSTANT, 0.25, 0, 0, 0, 0, 0},
};

// Pixels 0..255 as floats, scaled by 1/255 like IDX images; no labels
// beyond one class index per row.
static float img_x[ROWS * PIX], img_y[ROWS];

static NnrtModel ae_model(void) {
  for (int r = 0; r < ROWS; r++) {
    for (int j = 0; j < PIX; j++)
      img_x[r * PIX + j] = raw_pixel(r, j);
    img_y[r] = 0;
  }
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "ae";
  m.in_rank = 3, m.in_dim[0] = 1, m.in_dim[1] = SIDE, m.in_dim[2] = SIDE;
  m.in_numel = PIX, m.out_numel = PIX;
  m.nparams = 1, m.params = ae_params, m.param_numel = 1;
  NnrtDataSpec d = {NNRT_DATA_INLINE, NULL, NULL, 1 / 255.0, 0, NULL,
                    ROWS, PIX, 1, img_x, img_y};
  m.train_data = d, m.test_data = d;
  m.batch = 4, m.epochs = 1;
  m.train_ws_per_row = 0, m.train_ws_fixed = 1;
  m.infer_ws_per_row = 0, m.infer_ws_fixed = 1;
  m.train = ae_train, m.infer = ae_infer;
  return m;
}

// The checkpoint reconstruct loads: bias = 0.25.
static const char *write_ckpt(const NnrtModel *m, const char *dir) {
  float b = BIAS;
  NnrtErr e;
  const char *path = kept(in_dir(dir, "ae.safetensors"));
  cr_assert_eq(nnrt_checkpoint_save(path, m, &b, 1, &e), 0, "%s", e.msg);
  return path;
}

typedef struct Pgm {
  long w, h;
  const uint8_t *px;  // into data
  char *data;
  size_t size;
} Pgm;

// A gray PNG, decoded and checked (the pixels then live in data).
static Pgm read_png(const char *path) {
  Pgm p;
  memset(&p, 0, sizeof p);
  char *file = read_all(path, &p.size);
  cr_assert_not_null(file, "%s missing", path);
  Png png;
  cr_assert_eq(png_decode((const uint8_t *)file, p.size, &png), 0, "%s: %s",
               path, png.error);
  free(file);
  cr_assert_eq(png.channels, 1);
  p.w = png.width, p.h = png.height;
  p.data = (char *)png.px;
  p.px = png.px;
  return p;
}

static Pgm read_pgm(const char *path) {
  Pgm p;
  memset(&p, 0, sizeof p);
  p.data = read_all(path, &p.size);
  cr_assert_not_null(p.data, "%s missing", path);
  int used = 0;
  cr_assert_eq(sscanf(p.data, "P5\n%ld %ld\n255\n%n", &p.w, &p.h, &used), 2,
               "%.20s", p.data);
  cr_assert_gt(used, 0);
  cr_assert_eq(p.size, (size_t)used + (size_t)(p.w * p.h), "size %zu",
               p.size);
  p.px = (const uint8_t *)p.data + used;
  return p;
}

static uint8_t at(const Pgm *p, long x, long y) {
  cr_assert(x >= 0 && x < p->w && y >= 0 && y < p->h);
  return p->px[y * p->w + x];
}

// What the picture should show for input value v (model space).
static uint8_t expect_shade(float v) {
  if (!(v >= 0))
    v = 0;
  if (v > 1)
    v = 1;
  return (uint8_t)(v * 255 + 0.5);
}

Test(reconstruct, grid_pixels_and_mse) {
  const char *dir = tmpdir();
  NnrtModel m = ae_model();
  const char *ck = write_ckpt(&m, dir);
  const char *out = kept(in_dir(dir, "grid.png"));
  char *argv[] = {"./ae", "reconstruct", "--load", (char *)ck, "--out",
                  (char *)out, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(access(in_dir(dir, "grid.png.tmp"), F_OK), -1);
  // The same picture as a PGM when the name says so.
  const char *pgm = kept(in_dir(dir, "grid.pgm"));
  char *argv_pgm[] = {"./ae", "reconstruct", "--load", (char *)ck, "-o",
                      (char *)pgm, NULL};
  Captured c2 = run_main(&m, dir, argv_pgm);
  cr_assert_eq(c2.rc, 0, "%s", c2.err);
  Pgm q = read_pgm(pgm);
  // 10 examples (fewer than the default 16): 8 per row, so two row pairs.
  Pgm p = read_png(out);
  cr_assert(q.w == p.w && q.h == p.h);
  cr_assert_eq(memcmp(q.px, p.px, (size_t)(p.w * p.h)), 0);
  free(q.data);
  captured_free(&c2);
  cr_assert_eq(p.w, 8 * SIDE + 9 * 2);
  cr_assert_eq(p.h, 4 * SIDE + 5 * 2);
  float scale = (float)(1 / 255.0);
  double sq = 0;
  for (int i = 0; i < ROWS; i++) {
    long x0 = 2 + (i % 8) * (SIDE + 2);
    long y0 = 2 + 2 * (i / 8) * (SIDE + 2);
    for (int r = 0; r < SIDE; r++)
      for (int col = 0; col < SIDE; col++) {
        int j = r * SIDE + col;
        float x = (float)raw_pixel(i, j) * scale;
        float y = 1.5f * x - BIAS;
        sq += (double)(y - x) * (y - x);
        cr_assert_eq(at(&p, x0 + col, y0 + r), raw_pixel(i, j),
                     "input %d pixel %d", i, j);
        cr_assert_eq(at(&p, x0 + col, y0 + SIDE + 2 + r), expect_shade(y),
                     "reconstruction %d pixel %d", i, j);
      }
  }
  // Clamping happened both ways in this data.
  cr_assert_eq(expect_shade(1.5f * 255 * scale - BIAS), 255);
  cr_assert_eq(expect_shade(-BIAS), 0);
  // Gutters and the empty cells of the last row pair are gray.
  for (long x = 0; x < p.w; x++) {
    cr_assert_eq(at(&p, x, 0), 128);
    cr_assert_eq(at(&p, x, 1), 128);
    cr_assert_eq(at(&p, x, p.h - 1), 128);
    cr_assert_eq(at(&p, x, 2 + SIDE), 128);  // between inputs and outputs
  }
  for (long y = 0; y < p.h; y++) {
    cr_assert_eq(at(&p, 0, y), 128);
    cr_assert_eq(at(&p, 2 + SIDE + 1, y), 128);  // between columns
    cr_assert_eq(at(&p, p.w - 1, y), 128);
  }
  for (long y = 2 * (SIDE + 2); y < p.h; y++)  // cells 10..15
    for (long x = 2 * (SIDE + 2); x < p.w; x++)
      cr_assert_eq(at(&p, x, y), 128);
  // One line: the file, the error, how many examples.
  double mse = sq / (ROWS * PIX);
  char want[600];
  snprintf(want, sizeof want, "%s  mse ", out);
  cr_assert_eq(strncmp(c.out, want, strlen(want)), 0, "%s", c.out);
  double got = strtod(c.out + strlen(want), NULL);
  cr_assert(fabs(got - mse) <= 1e-5 * mse, "%g vs %g", got, mse);
  cr_assert(strstr(c.out, "  (10 test examples)\n"), "%s", c.out);
  free(p.data);
  captured_free(&c);
}

Test(reconstruct, count_default_name_and_batches) {
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  NnrtModel m = ae_model();
  write_ckpt(&m, dir);
  // The default checkpoint is found by the program's name, and so is the
  // picture's; --batch 2 runs infer in chunks.
  cr_assert_eq(rename("ae.safetensors", "prog.safetensors"), 0);
  char *argv[] = {"/x/prog", "reconstruct", "--count", "3", "--batch", "2",
                  NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "prog-reconstruct.png  mse "), "%s", c.out);
  cr_assert(strstr(c.out, "(3 test examples)"), "%s", c.out);
  Pgm p = read_png("prog-reconstruct.png");
  cr_assert_eq(p.w, 3 * SIDE + 4 * 2);
  cr_assert_eq(p.h, 2 * SIDE + 3 * 2);
  cr_assert_eq(at(&p, 2 + 2 * (SIDE + 2) + 1, 2), raw_pixel(2, 1));
  cr_assert_eq(at(&p, 2 + 2 * (SIDE + 2) + 1, 2 + SIDE + 2),
               expect_shade(1.5f * raw_pixel(2, 1) * (float)(1 / 255.0) -
                            BIAS));
  free(p.data);
  captured_free(&c);
  // One example, and more than a row of 8 (17: three row pairs).
  char *one[] = {"./prog", "reconstruct", "--count", "1", "--quiet", NULL};
  c = run_main(&m, dir, one);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.out, "(1 test example)\n"), "%s", c.out);
  p = read_png("prog-reconstruct.png");
  cr_assert_eq(p.w, SIDE + 4);
  cr_assert_eq(p.h, 2 * SIDE + 6);
  free(p.data);
  captured_free(&c);
}

Test(reconstruct, training_data_when_no_test_set) {
  const char *dir = tmpdir();
  cr_assert_eq(chdir(dir), 0);
  NnrtModel m = ae_model();
  m.test_data.kind = NNRT_DATA_NONE;
  const char *ck = write_ckpt(&m, dir);
  char *argv[] = {"./ae", "reconstruct", "--load", (char *)ck, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert(strstr(c.err, "ae: the model has no test data; reconstructing "
                   "training examples\n"), "%s", c.err);
  cr_assert(strstr(c.out, "ae-reconstruct.png  mse "), "%s", c.out);
  cr_assert(strstr(c.out, "(10 training examples)"), "%s", c.out);
  captured_free(&c);
  char *quiet[] = {"./ae", "reconstruct", "--quiet", "--load", (char *)ck,
                   NULL};
  c = run_main(&m, dir, quiet);
  cr_assert_eq(c.rc, 0);
  cr_assert_str_eq(c.err, "");
  captured_free(&c);
}

Test(reconstruct, atomic_write) {
  const char *dir = tmpdir();
  NnrtModel m = ae_model();
  const char *ck = write_ckpt(&m, dir);
  // An existing, longer file is replaced whole.
  const char *out = kept(in_dir(dir, "p.pgm"));
  char junk[4096];
  memset(junk, 'j', sizeof junk);
  write_file(out, junk, sizeof junk);
  char *argv[] = {"./ae", "reconstruct", "--load", (char *)ck, "--out",
                  (char *)out, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  Pgm p = read_pgm(out);  // checks the exact size (p.pgm: a PGM)
  free(p.data);
  captured_free(&c);
  // The rename fails (the target is a folder): the folder stays, the
  // temporary file is removed, and the error names the target.
  char folder[512], keep[600];
  snprintf(folder, sizeof folder, "%s/d.pgm", dir);
  snprintf(keep, sizeof keep, "%s/keep", folder);
  cr_assert_eq(mkdir(folder, 0755), 0);
  write_file(keep, "k", 1);
  char *bad[] = {"./ae", "reconstruct", "--load", (char *)ck, "--out",
                 folder, NULL};
  c = run_main(&m, dir, bad);
  cr_assert_eq(c.rc, 1);
  char want[600];
  snprintf(want, sizeof want, "ae: %s: cannot write (", folder);
  cr_assert(strstr(c.err, want), "%s", c.err);
  cr_assert_str_eq(c.out, "");
  cr_assert_eq(access(in_dir(dir, "d.pgm.tmp"), F_OK), -1);
  cr_assert_eq(access(keep, F_OK), 0);
  captured_free(&c);
  // A folder that does not exist: nothing is written.
  char *none[] = {"./ae", "reconstruct", "--load", (char *)ck, "--out",
                  "/nonexistent/dir/p.pgm", NULL};
  c = run_main(&m, dir, none);
  cr_assert_eq(c.rc, 1);
  cr_assert(strstr(c.err, "ae: /nonexistent/dir/p.pgm.tmp: cannot write (No "
                   "such file or directory)"), "%s", c.err);
  captured_free(&c);
}

Test(reconstruct, not_an_autoencoder_and_usage) {
  const char *dir = tmpdir();
  NnrtModel m = ae_model();
  m.out_numel = 10;
  m.name = "clf";
  char *argv[] = {"./clf", "reconstruct", NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 2);
  cr_assert_str_eq(c.err, "clf: reconstruct needs an autoencoder (a model "
                   "that predicts as many values as it takes in); 'clf' "
                   "takes 16 and predicts 10\n");
  captured_free(&c);
  m = ae_model();
  char *bad_count[] = {"./ae", "reconstruct", "--count", "0", NULL};
  c = run_main(&m, dir, bad_count);
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "--count: 0 is too small"), "%s", c.err);
  captured_free(&c);
  char *wrong_cmd[] = {"./ae", "eval", "--out", "x.pgm", NULL};
  c = run_main(&m, dir, wrong_cmd);
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "option '--out' does not apply to 'eval'"), "%s",
            c.err);
  captured_free(&c);
  char *json[] = {"./ae", "reconstruct", "--json", NULL};
  c = run_main(&m, dir, json);
  cr_assert_eq(c.rc, 2);
  captured_free(&c);
  char *help[] = {"./ae", "--help", NULL};
  c = run_main(&m, dir, help);
  cr_assert_eq(c.rc, 0);
  cr_assert(strstr(c.out, "ae reconstruct [--load FILE] [--out FILE.png] "
                   "[--count N]"), "%s", c.out);
  cr_assert(strstr(c.out, "ae-reconstruct.png); sample: the grid"), "%s",
            c.out);
  captured_free(&c);
  char *unknown[] = {"./ae", "draw", NULL};
  c = run_main(&m, dir, unknown);
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "expected train, eval, predict, reconstruct, sample "
                   "or plot"), "%s", c.err);
  captured_free(&c);
}

Test(reconstruct, example_sizes) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  int64_t h, w;
  m.in_rank = 3, m.in_dim[0] = 1, m.in_dim[1] = 28, m.in_dim[2] = 28;
  m.in_numel = 784;
  nnrt_example_size(&m, &h, &w);
  cr_assert(h == 28 && w == 28);
  m.in_rank = 2, m.in_dim[0] = 5, m.in_dim[1] = 7, m.in_numel = 35;
  nnrt_example_size(&m, &h, &w);
  cr_assert(h == 5 && w == 7);
  m.in_rank = 1, m.in_dim[0] = 784, m.in_numel = 784;
  nnrt_example_size(&m, &h, &w);
  cr_assert(h == 28 && w == 28);
  m.in_dim[0] = 6, m.in_numel = 6;  // not a square: one row of pixels
  nnrt_example_size(&m, &h, &w);
  cr_assert(h == 1 && w == 6);
  m.in_dim[0] = 1, m.in_numel = 1;
  nnrt_example_size(&m, &h, &w);
  cr_assert(h == 1 && w == 1);
  m.in_rank = 3, m.in_dim[0] = 3, m.in_dim[1] = 2, m.in_dim[2] = 2;
  m.in_numel = 12;
  nnrt_example_size(&m, &h, &w);
  cr_assert(h == 2 && w == 2);
}

// Several channels are averaged into one gray image; NaN is drawn black.
Test(reconstruct, channels_are_averaged) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.in_rank = 3, m.in_dim[0] = 2, m.in_dim[1] = 1, m.in_dim[2] = 2;
  m.in_numel = 4;
  float x[4] = {0.2f, 1.0f, 0.4f, 3.0f};  // channel 0: .2 1; channel 1: .4 3
  float y[4] = {NAN, 0, NAN, 0};
  NnrtImage img;
  NnrtErr e;
  cr_assert_eq(nnrt_reconstruct_grid(&img, &m, x, y, 1, &e), 0, "%s", e.msg);
  cr_assert_eq(img.width, 2 + 4);
  cr_assert_eq(img.height, 2 * 1 + 6);
  cr_assert_eq(img.pixels[2 * img.width + 2], (uint8_t)(0.3 * 255 + 0.5));
  cr_assert_eq(img.pixels[2 * img.width + 3], 255);  // mean 2, clamped
  cr_assert_eq(img.pixels[5 * img.width + 2], 0);
  nnrt_free(img.pixels);
}

Test(reconstruct, every_allocation_failure_is_clean) {
  const char *dir = tmpdir();
  NnrtModel m = ae_model();
  const char *ck = write_ckpt(&m, dir);
  const char *out = kept(in_dir(dir, "p.pgm"));
  char *argv[] = {"./ae", "reconstruct", "--load", (char *)ck, "--out",
                  (char *)out, "--batch", "4", NULL};
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
}

// ---- eval's timing ----------------------------------------------------------
Test(eval, reports_seconds_and_samples_per_s) {
  const char *dir = tmpdir();
  NnrtModel m = ae_model();
  const char *ck = write_ckpt(&m, dir);
  char *argv[] = {"./ae", "eval", "--json", "--load", (char *)ck, NULL};
  Captured c = run_main(&m, dir, argv);
  cr_assert_eq(c.rc, 0, "%s", c.err);
  double s = json_get(c.out, "seconds"), r = json_get(c.out, "samples_per_s");
  cr_assert(isfinite(s) && s >= 0, "%s", c.out);
  cr_assert(isfinite(r) && r >= 0, "%s", c.out);
  if (s > 0)
    cr_assert(fabs(r - ROWS / s) <= 1e-6 * r + 1e-3, "%s", c.out);
  cr_assert_eq(json_get(c.out, "examples"), ROWS);
  cr_assert(strstr(c.out, "\"examples\":10,\"seconds\":"), "%s", c.out);
  cr_assert_eq(c.out[strlen(c.out) - 2], '}');
  captured_free(&c);
  char *human[] = {"./ae", "eval", "--load", (char *)ck, NULL};
  c = run_main(&m, dir, human);
  cr_assert_eq(c.rc, 0);
  cr_assert(strstr(c.out, "test_loss ") && strstr(c.out, "(10 examples)  ") &&
            strstr(c.out, " s  ") && strstr(c.out, " samples/s\n"), "%s",
            c.out);
  captured_free(&c);
}
