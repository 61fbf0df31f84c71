// lib_threads.c — two contexts of an `nnc --emit=lib` model used at once
// from two threads (tests/e2e/inference_lib.sh): each thread's predictions
// must equal, bit for bit, those of one context used alone (the kernels'
// results do not depend on how their tasks were spread over threads).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

enum { N = 512, ROUNDS = 20 };

typedef struct Job {
  const char *weights;
  const float *x;
  const float *want;
  int64_t batch;
  int bad;
} Job;

static void *work(void *arg) {
  Job *j = arg;
  char err[256];
  model_ctx *c = model_create(j->weights, j->batch, err, sizeof err);
  float *out = malloc(sizeof(float) * N * MODEL_OUTPUT_SIZE);
  if (!c || !out) {
    fprintf(stderr, "lib_threads: %s\n", c ? "out of memory" : err);
    j->bad = 1;
  }
  for (int r = 0; r < ROUNDS && !j->bad; r++) {
    memset(out, 0, sizeof(float) * N * MODEL_OUTPUT_SIZE);
    if (model_run(c, j->x, N, out) ||
        memcmp(out, j->want, sizeof(float) * N * MODEL_OUTPUT_SIZE))
      j->bad = 1;
  }
  model_free(c);
  free(out);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2)
    return 2;
  float *x = malloc(sizeof(float) * N * MODEL_INPUT_SIZE);
  float *want = malloc(sizeof(float) * N * MODEL_OUTPUT_SIZE);
  srand(1);
  for (int i = 0; i < N * MODEL_INPUT_SIZE; i++)
    x[i] = (float)rand() / (float)RAND_MAX;
  char err[256];
  model_ctx *c = model_create(argv[1], 64, err, sizeof err);
  if (!c || model_run(c, x, N, want)) {
    fprintf(stderr, "lib_threads: %s\n", c ? "run failed" : err);
    return 1;
  }
  model_free(c);
  int64_t dim[6];
  if (model_input_shape(dim) < 1 || model_output_shape(dim) < 1)
    return 1;
  Job jobs[2] = {{argv[1], x, want, 64, 0}, {argv[1], x, want, 100, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&t[i], NULL, work, &jobs[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  free(x);
  free(want);
  if (jobs[0].bad || jobs[1].bad) {
    fprintf(stderr, "lib_threads: concurrent contexts disagree\n");
    return 1;
  }
  printf("ok: 2 threads x %d rounds of %d rows agree bit for bit\n", ROUNDS, N);
  return 0;
}
