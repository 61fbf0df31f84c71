// sample.c — `./model sample`: a grid of images from the train block's
// `sample` expression (a generator's output from fresh random draws).
//
// Consumes the model (model->sample, the sample's shape and workspace
// sizes), loaded parameters and the options; produces one PNG (a PGM when
// the name ends in .pgm) of --count samples, 8 to a row, written atomically
// (FILE.tmp, fsync, rename), and one line on stdout. Samples are generated
// in chunks of at most max_batch rows (--batch, else up to 1000); the draws
// of chunk c are keyed nnrt_mix64(nnrt_infer_key(seed) + c) (nnrt_rng.h),
// so a seed gives the same grid on every run and for any --threads, and
// the first k samples do not depend on --count. The values are drawn like
// reconstruct's: round(255 * clamp(v, 0, 1)), three channels in color.
#include <math.h>
#include <string.h>

#include "nnrt_internal.h"
#include "nnrt_rng.h"

enum { COLS = 8, GUTTER = 2, SAMPLE_BATCH = 1000 };

int nnrt_sample_command(const NnrtModel *m, const NnrtOptions *o,
                        const float *params, NnrtErr *err) {
  if (!m->sample)
    return nnrt_fail(err, "this model has no 'sample' expression in its "
                     "train block");
  int64_t n = o->count > 0 ? o->count : 1;
  int64_t max_batch = o->batch_set && o->batch < n ? o->batch : n;
  if (max_batch > SAMPLE_BATCH && !o->batch_set)
    max_batch = SAMPLE_BATCH;
  int64_t ws_len, total;
  if (__builtin_mul_overflow(m->sample_ws_per_row, max_batch, &ws_len) ||
      __builtin_add_overflow(ws_len, m->sample_ws_fixed, &ws_len))
    ws_len = -1;
  if (__builtin_mul_overflow(n, m->sample_numel, &total))
    total = -1;
  const char *path = o->out ? o->out : o->default_samples;
  float *ws = nnrt_alloc_array(ws_len, nnrt_elt(m));
  float *out = nnrt_alloc_array(total, sizeof(float));
  NnrtImage img = {0};
  int rc = 0;
  if (!ws || !out)
    rc = nnrt_fail(err, "out of memory (%lld samples of %lld values, %lld "
                   "workspace floats)", (long long)n,
                   (long long)m->sample_numel, (long long)ws_len);
  uint64_t base = nnrt_infer_key(o->seed);
  for (int64_t s = 0, c = 0; !rc && s < n; s += max_batch, c++) {
    int64_t rows = n - s < max_batch ? n - s : max_batch;
    int64_t key = (int64_t)nnrt_mix64(base + (uint64_t)c);
    m->sample(params, ws, max_batch, rows, key, out + s * m->sample_numel);
  }
  int64_t bad = 0;
  for (int64_t i = 0; !rc && i < total; i++)
    bad += !isfinite(out[i]);
  int64_t ch, h, w;
  nnrt_image_shape(m->sample_rank, m->sample_dim, m->sample_numel, &ch, &h,
                   &w);
  if (!rc)
    rc = nnrt_image_grid(&img, out, n, ch, h, w, COLS, GUTTER, err);
  if (!rc)
    rc = nnrt_image_write(path, &img, err);
  if (!rc) {
    printf("%s  %lld sample%s of %lldx%lld%s  seed %lld\n", path,
           (long long)n, n == 1 ? "" : "s", (long long)h, (long long)w,
           img.channels == 3 ? " RGB" : "", (long long)o->seed);
    if (bad && !o->quiet)
      fprintf(stderr, "%s: note: %lld of the values were not finite (drawn "
              "black)\n", o->prog, (long long)bad);
  }
  nnrt_free(img.pixels);
  nnrt_free(out);
  nnrt_free(ws);
  return rc;
}
