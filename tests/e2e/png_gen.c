// png_gen.c — a fake two-step generative program for tests/e2e/png_tools.sh,
// linked against libnnrt.a as generated code is: a "generator" with one
// parameter whose samples are CHANNELS x 28 x 28 images (a bright disc on a
// dark background, its radius and place from the draws of the key it is
// given), a training loop over inline data that reports two named metrics
// per batch, and per-parameter optimizer state.
#include <math.h>
#include <string.h>

#include "nnrt.h"
#include "nnrt_rng.h"

#ifndef CHANNELS
#define CHANNELS 1
#endif
enum { SIDE = 28, NUMEL = CHANNELS * SIDE * SIDE, ROWS = 12 };

static void sample(const float *params, float *ws, int64_t max_batch,
                   int64_t rows, int64_t key, float *out) {
  (void)ws, (void)max_batch;
  uint64_t k = nnrt_draw_key((uint64_t)key, 0);
  for (int64_t r = 0; r < rows; r++) {
    double cx = 8 + 12 * nnrt_draw_uniform(k, (uint64_t)(3 * r));
    double cy = 8 + 12 * nnrt_draw_uniform(k, (uint64_t)(3 * r + 1));
    double rad = 3 + 5 * nnrt_draw_uniform(k, (uint64_t)(3 * r + 2));
    for (int c = 0; c < CHANNELS; c++)
      for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
          double d = hypot(x - cx, y - cy);
          float v = d < rad ? params[0] * (float)(c + 1) / CHANNELS : 0.1f;
          out[r * NUMEL + c * SIDE * SIDE + y * SIDE + x] = v;
        }
  }
}

static void train(NnrtRun *run, float *params, float *state, float *ws,
                  int64_t max_batch) {
  float *x = ws, *y = ws + max_batch;
  for (int64_t e = 0;; e++) {
    int64_t nb = nnrt_epoch_begin(run, e);
    if (nb == 0)
      return;
    for (int64_t i = 0; i < nb; i++) {
      int64_t rows = nnrt_batch_fetch(run, i, x, y);
      state[0] += 1;  // the generator's optimizer
      double m[2] = {1.0 / (double)(e + 1), 0.5 + 0.1 * (double)e};
      nnrt_batch_metrics(run, m);
      if (nnrt_batch_end(run, rows, (m[0] + m[1]) * (double)rows, 0))
        return;
    }
    params[0] = 1;
    if (nnrt_epoch_end(run, e))
      return;
  }
}

static void infer(const float *params, float *ws, int64_t max_batch,
                  const float *x, const float *y, int64_t rows, float *out,
                  double *stats) {
  (void)params, (void)ws, (void)max_batch, (void)x;
  for (int64_t r = 0; r < rows; r++) {
    if (out)
      out[r] = 0;
    if (y) {
      stats[0] += 1;
      stats[2] += 0.25;
      stats[3] += 0.75;
    }
  }
}

static float data_x[ROWS], data_y[ROWS];
static const NnrtParamInfo params[1] = {
    {"gen.gain", 1, {1}, 1, 0, NNRT_INIT_CONSTANT, 0.5, 0, 0, 0, 0, 0}};
static const double state_init[1] = {0};
static const double param_state_init[1] = {0};
static const char *const names[2] = {"d_loss", "g_loss"};

int main(int argc, char **argv) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "gen";
  m.in_rank = 1, m.in_dim[0] = 1, m.in_numel = 1, m.out_numel = 1;
  m.nparams = 1, m.params = params, m.param_numel = 1;
  m.nstate = 1, m.state_init = state_init;
  m.param_state_init = param_state_init;
  NnrtDataSpec d = {NNRT_DATA_INLINE, NULL, NULL, 1, 0, NULL, ROWS, 1, 1,
                    data_x, data_y, 0, 0, 0, 0, 0};
  m.train_data = d, m.test_data = d;
  m.batch = 4, m.epochs = 2, m.seed = 1;
  m.train_ws_per_row = 2, m.infer_ws_fixed = 1;
  m.train = train, m.infer = infer;
  m.nmetrics = 2, m.metric_names = names;
  m.sample = sample;
  m.sample_rank = 3;
  m.sample_dim[0] = CHANNELS, m.sample_dim[1] = SIDE, m.sample_dim[2] = SIDE;
  m.sample_numel = NUMEL;
  return nnrt_main(&m, argc, argv);
}
