// reconstruct.c — `./model reconstruct`: for an autoencoder (a model whose
// prediction has as many values as its input), a picture of the first test
// examples above their reconstructions, and their mean squared error; also
// the image shapes and the PGM writer the pictures of png.c share.
//
// Consumes the model, loaded parameters and its test data (the training data
// when there is none); produces one PNG file (a PGM when the name ends in
// .pgm), written atomically (FILE.tmp, fsync, rename), and one line on
// stdout. The picture shows the values the model sees (inputs after
// `scale`, so 1/255 maps pixels to 0..1) with 0 black and 1 white, in color
// for three channels; the error is computed on the same values.
#include <math.h>
#include <string.h>

#include "nnrt_internal.h"

enum { PER_ROW = 8, GUTTER = 2 };

void nnrt_image_shape(int64_t rank, const int64_t *dim, int64_t numel,
                      int64_t *channels, int64_t *height, int64_t *width) {
  *channels = 1, *height = 1, *width = numel;
  if (rank >= 2 && rank <= NNRT_MAX_RANK) {
    int64_t h = dim[rank - 2], w = dim[rank - 1];
    if (h > 0 && w > 0 && numel % (h * w) == 0)
      *channels = numel / (h * w), *height = h, *width = w;
    return;
  }
  int64_t s = (int64_t)sqrt((double)numel);
  while (s > 0 && s * s > numel)
    s--;
  while ((s + 1) * (s + 1) <= numel)
    s++;
  if (s * s == numel)
    *height = s, *width = s;
}

void nnrt_example_size(const NnrtModel *m, int64_t *height, int64_t *width) {
  int64_t channels;
  nnrt_image_shape(m->in_rank, m->in_dim, m->in_numel, &channels, height,
                   width);
}

int nnrt_reconstruct_grid(NnrtImage *img, const NnrtModel *m, const float *x,
                          const float *out, int64_t n, NnrtErr *err) {
  memset(img, 0, sizeof *img);
  int64_t ch, h, w;
  nnrt_image_shape(m->in_rank, m->in_dim, m->in_numel, &ch, &h, &w);
  int64_t cols = n < PER_ROW ? n : PER_ROW;
  int64_t rows = 2 * ((n + PER_ROW - 1) / PER_ROW);
  if (n <= 0)
    return nnrt_fail(err, "no examples to draw");
  if (nnrt_image_alloc(img, cols, rows, h, w, GUTTER, ch == 3 ? 3 : 1, err))
    return -1;
  for (int64_t i = 0; i < n; i++) {
    int64_t x0 = GUTTER + i % PER_ROW * (w + GUTTER);
    int64_t y0 = GUTTER + 2 * (i / PER_ROW) * (h + GUTTER);
    nnrt_image_draw(img, x + i * m->in_numel, ch, h, w, x0, y0);
    nnrt_image_draw(img, out + i * m->in_numel, ch, h, w, x0,
                    y0 + h + GUTTER);
  }
  return 0;
}

// A gray PGM; a color picture is written as the mean of its channels.
static int write_pgm(FILE *f, void *ctx) {
  const NnrtImage *img = ctx;
  int64_t ch = img->channels > 0 ? img->channels : 1;
  if (fprintf(f, "P5\n%lld %lld\n255\n", (long long)img->width,
              (long long)img->height) < 0)
    return -1;
  for (int64_t y = 0; y < img->height; y++)
    for (int64_t x = 0; x < img->width; x++) {
      const uint8_t *px = img->pixels + (y * img->width + x) * ch;
      int s = 0;
      for (int64_t k = 0; k < ch; k++)
        s += px[k];
      if (putc((int)((s + ch / 2) / ch), f) == EOF)
        return -1;
    }
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
  const char *path = o->out ? o->out : o->default_png;
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
    m->infer(params, e.ws, e.max_batch, xs, NULL, k, os, e.stats);
    for (int64_t j = 0; j < k * m->in_numel; j++)
      sq += ((double)os[j] - xs[j]) * ((double)os[j] - xs[j]);
  }
  if (!rc)
    rc = nnrt_reconstruct_grid(&img, m, x, out, n, err);
  if (!rc)
    rc = nnrt_image_write(path, &img, err);
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
