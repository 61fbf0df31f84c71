// reconstruct.c — `./model reconstruct`: for an autoencoder (a model whose
// prediction has as many values as its input), a PGM picture of the first
// test examples above their reconstructions, and their mean squared error.
//
// Consumes the model, loaded parameters and its test data (the training data
// when there is none); produces one binary PGM file, written atomically
// (FILE.tmp, fsync, rename), and one line on stdout. The picture shows the
// values the model sees (inputs after `scale`, so 1/255 maps pixels to
// 0..1) with 0 black and 1 white; the error is computed on the same values.
#include <math.h>
#include <string.h>

#include "nnrt_internal.h"

enum { PER_ROW = 8, GUTTER = 2, GRAY = 128 };

void nnrt_example_size(const NnrtModel *m, int64_t *height, int64_t *width) {
  int64_t n = m->in_numel;
  *height = 1, *width = n;
  if (m->in_rank >= 2 && m->in_rank <= NNRT_MAX_RANK) {
    int64_t h = m->in_dim[m->in_rank - 2], w = m->in_dim[m->in_rank - 1];
    if (h > 0 && w > 0 && n % (h * w) == 0)
      *height = h, *width = w;
    return;
  }
  int64_t s = (int64_t)sqrt((double)n);
  while (s * s > n)
    s--;
  while ((s + 1) * (s + 1) <= n)
    s++;
  if (s * s == n)
    *height = s, *width = s;
}

static uint8_t shade(double v) {
  if (!(v >= 0))  // negative or NaN
    v = 0;
  if (v > 1)
    v = 1;
  return (uint8_t)(v * 255 + 0.5);
}

// Example e (in_numel values, channels first) at (x0, y0) of img.
static void draw(NnrtImage *img, const float *e, int64_t h, int64_t w,
                 int64_t channels, int64_t x0, int64_t y0) {
  for (int64_t r = 0; r < h; r++)
    for (int64_t c = 0; c < w; c++) {
      double v = 0;
      for (int64_t k = 0; k < channels; k++)
        v += e[k * h * w + r * w + c];
      img->pixels[(y0 + r) * img->width + x0 + c] = shade(v / (double)channels);
    }
}

int nnrt_reconstruct_grid(NnrtImage *img, const NnrtModel *m, const float *x,
                          const float *out, int64_t n, NnrtErr *err) {
  memset(img, 0, sizeof *img);
  int64_t h, w;
  nnrt_example_size(m, &h, &w);
  int64_t channels = m->in_numel / (h * w);
  int64_t cols = n < PER_ROW ? n : PER_ROW;
  int64_t rows = 2 * ((n + PER_ROW - 1) / PER_ROW);
  int64_t width, height, size;
  if (n <= 0 || __builtin_mul_overflow(cols, w + GUTTER, &width) ||
      __builtin_mul_overflow(rows, h + GUTTER, &height) ||
      __builtin_add_overflow(width, GUTTER, &width) ||
      __builtin_add_overflow(height, GUTTER, &height) ||
      __builtin_mul_overflow(width, height, &size))
    return nnrt_fail(err, "the picture of %lld examples would be too large",
                     (long long)n);
  img->pixels = nnrt_alloc_array(size, 1);
  if (!img->pixels)
    return nnrt_fail(err, "out of memory (a %lld x %lld picture)",
                     (long long)width, (long long)height);
  img->width = width, img->height = height;
  memset(img->pixels, GRAY, (size_t)size);
  for (int64_t i = 0; i < n; i++) {
    int64_t x0 = GUTTER + i % PER_ROW * (w + GUTTER);
    int64_t y0 = GUTTER + 2 * (i / PER_ROW) * (h + GUTTER);
    draw(img, x + i * m->in_numel, h, w, channels, x0, y0);
    draw(img, out + i * m->in_numel, h, w, channels, x0, y0 + h + GUTTER);
  }
  return 0;
}

static int write_pgm(FILE *f, void *ctx) {
  const NnrtImage *img = ctx;
  size_t size = (size_t)(img->width * img->height);
  if (fprintf(f, "P5\n%lld %lld\n255\n", (long long)img->width,
              (long long)img->height) < 0 ||
      fwrite(img->pixels, 1, size, f) != size)
    return -1;
  return 0;
}

int nnrt_pgm_write(const char *path, const NnrtImage *img, NnrtErr *err) {
  return nnrt_write_atomic(path, write_pgm, (void *)img, err);
}

int nnrt_reconstruct_command(const NnrtModel *m, const NnrtOptions *o,
                             const float *params, NnrtErr *err) {
  const NnrtDataSpec *spec = &m->test_data;
  const char *set = "test";
  if (spec->kind == NNRT_DATA_NONE) {
    spec = &m->train_data;
    set = "training";
    if (!o->quiet && spec->kind != NNRT_DATA_NONE)
      fprintf(stderr, "%s: the model has no test data; reconstructing "
              "training examples\n", o->prog);
  }
  if (spec->kind == NNRT_DATA_NONE)
    return nnrt_fail(err, "the model has no data to reconstruct");
  const char *path = o->out ? o->out : o->default_pgm;
  NnrtData d;
  NnrtEval e = {0};
  NnrtImage img = {0};
  float *x = NULL, *out = NULL;
  int rc = nnrt_data_open(&d, spec, m, o->count, err);
  if (rc)
    return -1;
  int64_t n = d.rows;
  if (n == 0)
    rc = nnrt_fail(err, "%s: no examples", d.path);
  int64_t total;
  if (__builtin_mul_overflow(n, m->in_numel, &total))
    total = -1;
  if (!rc) {
    x = nnrt_alloc_array(total, sizeof(float));
    out = nnrt_alloc_array(total, sizeof(float));
    if (!x || !out)
      rc = nnrt_fail(err, "out of memory (%lld examples)", (long long)n);
  }
  if (!rc)
    rc = nnrt_eval_open(&e, m, o->batch_set && o->batch < n ? o->batch : n, 0,
                        err);
  double sq = 0;
  for (int64_t s = 0; !rc && s < n; s += e.max_batch) {
    int64_t k = n - s < e.max_batch ? n - s : e.max_batch;
    float *xs = x + s * m->in_numel, *os = out + s * m->in_numel;
    nnrt_data_gather(&d, NULL, s, k, xs, NULL);
    double stats[2] = {0, 0};
    m->infer(params, e.ws, e.max_batch, xs, NULL, k, os, stats);
    for (int64_t j = 0; j < k * m->in_numel; j++)
      sq += ((double)os[j] - xs[j]) * ((double)os[j] - xs[j]);
  }
  if (!rc)
    rc = nnrt_reconstruct_grid(&img, m, x, out, n, err);
  if (!rc)
    rc = nnrt_pgm_write(path, &img, err);
  if (!rc) {
    double mse = sq / ((double)n * (double)m->in_numel);
    printf("%s  mse %.6g  (%lld %s example%s)\n", path, mse, (long long)n,
           set, n == 1 ? "" : "s");
  }
  nnrt_free(img.pixels);
  nnrt_free(out);
  nnrt_free(x);
  nnrt_eval_close(&e);
  nnrt_data_close(&d);
  return rc;
}
