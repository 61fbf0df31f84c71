// fuzz_util.h — what the runtime's reader fuzz targets share: the bytes
// split into one or two files, written (raw or gzip-compressed) to this
// process's scratch files, a small model table the data must fit, and a
// gather of every loaded row so the reader's result is used, not just made.
// Each target is its own executable, so everything here is static.
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "nnrt.h"
#include "nnrt_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

// The fuzzer's input after its control bytes.
typedef struct FuzzIn {
  uint8_t mode;              // the first byte (0 when empty)
  const uint8_t *a, *b;      // first and second file
  size_t na, nb;
} FuzzIn;

// byte 0: mode; bytes 1-2: little-endian length of the first file (clamped);
// the rest of the input is the first file then the second.
static inline FuzzIn fuzz_split(const uint8_t *data, size_t size) {
  FuzzIn in = {0};
  if (size == 0)
    return in;
  in.mode = data[0];
  data++, size--;
  size_t cut = size;
  if (size >= 2) {
    cut = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2, size -= 2;
    if (cut > size)
      cut = size;
  }
  in.a = data, in.na = cut;
  in.b = data + cut, in.nb = size - cut;
  return in;
}

// A scratch file of this process: /dev/shm (or /tmp) "nnc-fuzz-PID-NAME".
static inline const char *fuzz_path(const char *name) {
  static char buf[4][256];
  static int next;
  char *b = buf[next++ % 4];
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(b, 256, "%s/nnc-fuzz-%d-%s", dir, (int)getpid(), name);
  return b;
}

// Writes bytes to path as they are, or gzip-compressed.
static inline void fuzz_write(const char *path, const uint8_t *p, size_t n, int gz) {
  if (gz) {
    gzFile f = gzopen(path, "wb1");
    if (!f)
      abort();
    if (n && gzwrite(f, p, (unsigned)n) != (int)n)
      abort();
    gzclose(f);
    return;
  }
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  if (n && fwrite(p, 1, n, f) != n)
    abort();
  fclose(f);
}

// Small model shapes to check the data against (selected by mode bits).
static const struct {
  int64_t in_numel, out_numel;
} fuzz_shapes[4] = {{4, 3}, {1, 1}, {784, 10}, {4, 4}};

static inline NnrtModel fuzz_model(int which) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "fuzz";
  m.source_dir = "/nonexistent";
  m.in_rank = 1;
  m.in_dim[0] = m.in_numel = fuzz_shapes[which & 3].in_numel;
  m.out_numel = fuzz_shapes[which & 3].out_numel;
  return m;
}

// Uses every row loaded, in batches of at most 16 (the serial path), and
// checks what the reader promised about its result.
static inline void fuzz_use(const NnrtData *d, const NnrtModel *m) {
  if (d->rows < 0 || (d->rows > 0 && !d->x8 && !d->xf))
    abort();
  float x[16 * 784], y[16 * 10];
  for (int64_t r = 0; r < d->rows; r += 16) {
    int64_t n = d->rows - r < 16 ? d->rows - r : 16;
    nnrt_data_gather(d, NULL, r, n, x, d->ycols || d->self_target ? y : NULL);
  }
  (void)m;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  nnrt_pool_start(1, 0);  // gathers stay on this thread
  return 0;
}

#endif
