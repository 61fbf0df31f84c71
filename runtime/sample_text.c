// sample_text.c — the `sample` command of a model trained on text: text
// generated one byte at a time.
//
// Consumes the model (its text data spec names the stream and the labels'
// layout), loaded parameters and --length, --temperature, --seed. The
// first window of the training text is the prompt and is printed first;
// then, length times: the window goes through nnc_infer, the logits of its
// last step (the whole output when the model predicts one next byte) are
// divided by the temperature, a byte is drawn from their softmax with the
// run's random stream (so a seed repeats a sample), printed, and the
// window moves on by that byte.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt_internal.h"

int nnrt_sample_text(const NnrtModel *m, const NnrtOptions *o,
                     const float *params, NnrtErr *err) {
  const NnrtDataSpec *spec = &m->train_data;
  NnrtData d;
  if (nnrt_data_open(&d, spec, m, 1, err))
    return -1;
  int64_t t = m->in_numel, vocab = spec->text_vocab;
  int64_t last = spec->text_steps == 1 ? 0 : (t - 1) * vocab;
  NnrtEval e;
  uint8_t *w = malloc((size_t)t);
  double *p = malloc(sizeof(double) * (size_t)vocab);
  int rc = !w || !p ? nnrt_fail(err, "out of memory") : 0;
  if (!rc)
    rc = nnrt_eval_open(&e, m, 1, 1, err);
  if (rc) {
    free(w);
    free(p);
    nnrt_data_close(&d);
    return -1;
  }
  memcpy(w, d.x8, (size_t)t);
  fwrite(w, 1, (size_t)t, stdout);
  uint64_t key = nnrt_rng_key((uint64_t)o->seed, NNRT_STREAM_DRAW, ~0ull);
  for (int64_t i = 0; i < o->length; i++) {
    for (int64_t j = 0; j < t; j++)
      e.x[j] = (float)w[j];
    double stats[2] = {0, 0};
    m->infer(params, e.ws, e.max_batch, e.x, NULL, 1, e.out, stats);
    const float *z = e.out + last;
    double mx = z[0], sum = 0;
    for (int64_t k = 1; k < vocab; k++)
      mx = z[k] > mx ? z[k] : mx;
    for (int64_t k = 0; k < vocab; k++)
      sum += p[k] = exp((z[k] - mx) / o->temperature);
    double u = nnrt_rng_uniform(key, (uint64_t)i) * sum;
    int64_t c = 0;
    for (; c < vocab - 1 && u >= p[c]; c++)
      u -= p[c];
    putchar((int)c);
    memmove(w, w + 1, (size_t)(t - 1));
    w[t - 1] = (uint8_t)c;
  }
  putchar('\n');
  nnrt_eval_close(&e);
  free(w);
  free(p);
  nnrt_data_close(&d);
  return 0;
}
