// classify.c — classifies images with a model compiled by `nnc --emit=lib`.
//
//   nnc --emit=lib examples/fashion_mlp.nn -o libmodel.a     # + model.h
//   ./fashion_mlp train --save w.safetensors
//   cc -O2 examples/classify.c -I. libmodel.a -lz -lm -lpthread -o classify
//   ./classify w.safetensors t10k-images-idx3-ubyte.gz        # a class per line
//   ./classify --bench w.safetensors t10k-images-idx3-ubyte.gz
//
// Reads an IDX image file (gzip or not), scales the bytes like the training
// data (MODEL_INPUT_SCALE) and prints the most likely class of each image,
// one per line, as `./fashion_mlp predict` prints it in its first column.
// With a weights path of "-" it uses weights embedded with --embed. With
// --bench it prints instead the images per second of model_run at batch 1
// and at batch 256 (the median of 5 runs over the images).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "model.h"

// The IDX file's images as floats; NULL after saying why not.
static float *read_idx(const char *path, int64_t *count) {
  gzFile f = gzopen(path, "rb");
  if (!f) {
    fprintf(stderr, "classify: %s: cannot open\n", path);
    return NULL;
  }
  unsigned char h[4];
  float *x = NULL;
  if (gzread(f, h, 4) != 4 || h[0] || h[1] || h[2] != 8 || h[3] < 1) {
    fprintf(stderr, "classify: %s: not an IDX file of bytes\n", path);
    gzclose(f);
    return NULL;
  }
  int64_t dims[8], per = 1;
  for (int i = 0; i < h[3] && i < 8; i++) {
    unsigned char d[4];
    if (gzread(f, d, 4) != 4) {
      gzclose(f);
      return NULL;
    }
    dims[i] = (int64_t)d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3];
    if (i)
      per *= dims[i];
  }
  if (per != MODEL_INPUT_SIZE) {
    fprintf(stderr, "classify: %s: images of %lld values; the model takes %d\n",
            path, (long long)per, MODEL_INPUT_SIZE);
    gzclose(f);
    return NULL;
  }
  size_t n = (size_t)(dims[0] * per);
  unsigned char *bytes = malloc(n);
  x = malloc(n * sizeof *x);
  if (!bytes || !x || gzread(f, bytes, (unsigned)n) != (int)n) {
    fprintf(stderr, "classify: %s: truncated\n", path);
    free(x);
    x = NULL;
  } else {
    for (size_t i = 0; i < n; i++)
      x[i] = (float)(bytes[i] * MODEL_INPUT_SCALE);
    *count = dims[0];
  }
  free(bytes);
  gzclose(f);
  return x;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Images per second at this batch size: the median of 5 passes.
static double throughput(const char *weights, const float *x, int64_t n,
                         int64_t batch, float *out) {
  char err[512];
  model_ctx *c = model_create(weights, batch, err, sizeof err);
  if (!c) {
    fprintf(stderr, "classify: %s\n", err);
    exit(1);
  }
  int64_t rows = batch == 1 ? (n < 2000 ? n : 2000) : n;
  double r[5];
  model_run(c, x, batch, out); // warm up
  for (int k = 0; k < 5; k++) {
    double t0 = now();
    for (int64_t s = 0; s + batch <= rows; s += batch)
      model_run(c, x + s * MODEL_INPUT_SIZE, batch, out);
    r[k] = (double)(rows / batch * batch) / (now() - t0);
  }
  model_free(c);
  qsort(r, 5, sizeof r[0], cmp);
  return r[2];
}

int main(int argc, char **argv) {
  int bench = argc > 1 && !strcmp(argv[1], "--bench");
  if (argc != 3 + bench) {
    fprintf(stderr, "usage: classify [--bench] WEIGHTS.safetensors|- "
            "IMAGES-idx3-ubyte[.gz]\n");
    return 2;
  }
  const char *weights = strcmp(argv[1 + bench], "-") ? argv[1 + bench] : NULL;
  int64_t n = 0;
  float *x = read_idx(argv[2 + bench], &n);
  float *out = x ? malloc(sizeof(float) * (size_t)n * MODEL_OUTPUT_SIZE) : NULL;
  if (!out) {
    free(x);
    return 1;
  }
  if (bench) {
    printf("batch 1: %.0f images/s\n", throughput(weights, x, n, 1, out));
    printf("batch 256: %.0f images/s\n", throughput(weights, x, n, 256, out));
    free(out);
    free(x);
    return 0;
  }
  char err[512];
  model_ctx *c = model_create(weights, 256, err, sizeof err);
  if (!c) {
    fprintf(stderr, "classify: %s\n", err);
    free(out);
    free(x);
    return 1;
  }
  if (model_run(c, x, n, out)) {
    fprintf(stderr, "classify: model_run failed\n");
    return 1;
  }
  for (int64_t i = 0; i < n; i++) {
    const float *o = out + i * MODEL_OUTPUT_SIZE;
    int best = 0;
    for (int j = 1; j < MODEL_OUTPUT_SIZE; j++)
      if (o[j] > o[best])
        best = j;
    printf("%d\n", best);
  }
  model_free(c);
  free(out);
  free(x);
  return 0;
}
