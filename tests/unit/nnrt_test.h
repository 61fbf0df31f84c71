// nnrt_test.h — helpers shared by the runtime's unit tests (nnrt_*_test.c):
// a scratch folder, writing raw and gzip files, building IDX and NPY files
// in memory, and running nnrt_main with stdout and stderr captured. Everything
// is static: each test file is its own executable.
#ifndef NNRT_TEST_H
#define NNRT_TEST_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "nnrt.h"
#include "nnrt_internal.h"

#define FASHION "fashion-mnist/"

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

// The folders tmpdir() made in this process, removed when it exits.
static char made[16][64];
static int nmade;

static void remove_made(void) {
  while (nmade > 0)
    nftw(made[--nmade], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

// A fresh folder under /tmp (Criterion runs each test in its own process).
static inline const char *tmpdir(void) {
  cr_assert_lt(nmade, 16);
  char *dir = made[nmade];
  strcpy(dir, "/tmp/nnrt_test_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  if (nmade++ == 0)
    atexit(remove_made);
  return dir;
}

// dir/name into a static rotating buffer.
static inline const char *in_dir(const char *dir, const char *name) {
  static char buf[8][512];
  static int next;
  char *b = buf[next++ % 8];
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

static inline void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot write %s", path);
  cr_assert_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static inline void write_text(const char *path, const char *text) {
  write_file(path, text, strlen(text));
}

static inline void write_gz(const char *path, const void *data, size_t n) {
  gzFile f = gzopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(gzwrite(f, data, (unsigned)n), (int)n);
  gzclose(f);
}

// The whole file, NUL-terminated (malloc'd); *n gets its length.
static inline char *read_all(const char *path, size_t *n) {
  if (n)
    *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)len + 1);
  size_t got = fread(b, 1, (size_t)len, f);
  b[got] = '\0';
  fclose(f);
  if (n)
    *n = got;
  return b;
}

// An IDX file in memory: magic 00 00 type nd, big-endian dims, then data.
static inline size_t idx_build(uint8_t *out, int type, int nd,
                               const uint32_t *dims, const uint8_t *data,
                               size_t ndata) {
  size_t n = 0;
  out[n++] = 0, out[n++] = 0, out[n++] = (uint8_t)type, out[n++] = (uint8_t)nd;
  for (int i = 0; i < nd; i++) {
    out[n++] = (uint8_t)(dims[i] >> 24), out[n++] = (uint8_t)(dims[i] >> 16);
    out[n++] = (uint8_t)(dims[i] >> 8), out[n++] = (uint8_t)dims[i];
  }
  memcpy(out + n, data, ndata);
  return n + ndata;
}

// A .npy file in memory: magic, version, header length, the dict padded with
// spaces to a multiple of 64 and ended by '\n', then the data. `dict` is the
// header text as is (so malformed ones can be written too).
static inline size_t npy_build(uint8_t *out, int major, const char *dict,
                        const void *data, size_t ndata) {
  size_t lenbytes = major == 1 ? 2 : 4, pre = 8 + lenbytes;
  size_t hlen = strlen(dict) + 1;
  while ((pre + hlen) % 64)
    hlen++;
  memcpy(out, "\x93NUMPY", 6);
  out[6] = (uint8_t)major, out[7] = 0;
  for (size_t i = 0; i < lenbytes; i++)
    out[8 + i] = (uint8_t)(hlen >> (8 * i));
  memset(out + pre, ' ', hlen);
  memcpy(out + pre, dict, strlen(dict));
  out[pre + hlen - 1] = '\n';
  memcpy(out + pre + hlen, data, ndata);
  return pre + hlen + ndata;
}

typedef struct Captured {
  int rc;
  char *out, *err;  // malloc'd
} Captured;

// Runs nnrt_main(m, argv) with stdout and stderr going to files in dir.
static inline Captured run_main(const NnrtModel *m, const char *dir,
                                char **argv) {
  int argc = 0;
  while (argv[argc])
    argc++;
  const char *po = in_dir(dir, "stdout.txt"), *pe = in_dir(dir, "stderr.txt");
  char so[512], se[512];
  strcpy(so, po);
  strcpy(se, pe);
  fflush(stdout);
  fflush(stderr);
  int keep1 = dup(1), keep2 = dup(2);
  int f1 = open(so, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int f2 = open(se, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(f1, 1);
  dup2(f2, 2);
  close(f1);
  close(f2);
  Captured c;
  c.rc = nnrt_main(m, argc, argv);
  fflush(stdout);
  fflush(stderr);
  dup2(keep1, 1);
  dup2(keep2, 2);
  close(keep1);
  close(keep2);
  c.out = read_all(so, NULL);
  c.err = read_all(se, NULL);
  return c;
}

static inline void captured_free(Captured *c) {
  free(c->out);
  free(c->err);
}

// The number after "\"key\":" in a JSON line, or NAN.
static inline double json_get(const char *line, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(line, pat);
  return p ? strtod(p + strlen(pat), NULL) : 0.0 / 0.0;
}

// A model named "t" with in and out floats per example, reading from dir.
static inline NnrtModel data_model(int64_t in, int64_t out, const char *dir) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "t";
  m.source_dir = dir;
  m.in_numel = in;
  m.out_numel = out;
  return m;
}

// Data of `kind` (NnrtDataKind) from x and y (NULL: none), scaled.
static inline NnrtDataSpec data_spec(int64_t kind, const char *x,
                                     const char *y, double scale) {
  NnrtDataSpec s;
  memset(&s, 0, sizeof s);
  s.kind = kind;
  s.path_x = x;
  s.path_y = y;
  s.scale = scale;
  return s;
}

// A safetensors file by hand: the header length, the header json, then
// `data` zero bytes.
static inline void write_st(const char *path, const char *json, size_t data) {
  size_t hl = strlen(json);
  char *buf = calloc(1, 8 + hl + data);
  for (int i = 0; i < 8; i++)
    buf[i] = (char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, hl);
  write_file(path, buf, 8 + hl + data);
  free(buf);
}

// An allocation hook (nnrt_set_alloc) that counts and can fail.
typedef struct Counter {
  int64_t allocs, alive;  // blocks handed out, blocks not yet freed
  int64_t fail_at;        // the allocation (0-based) that fails; -1: none
} Counter;

static inline void *counting_hook(void *ud, void *ptr, size_t size) {
  Counter *c = ud;
  if (size == 0) {
    if (ptr)
      c->alive--;
    free(ptr);
    return NULL;
  }
  if (c->allocs++ == c->fail_at)
    return NULL;
  c->alive++;
  return malloc(size);
}

// Gathers rows 3 and 1 of the small test set (5 examples of 2x2 pixels, pixel
// j of example i = 10 i + j, label i of 5 classes, scale 0.5) and checks them.
static inline void expect_rows_3_1(NnrtData *d) {
  float x[2 * 4], y[2 * 5];
  int64_t idx[2] = {3, 1};
  nnrt_data_gather(d, idx, 0, 2, x, y);
  cr_assert_float_eq(x[0], 30 * 0.5f, 1e-6);
  cr_assert_float_eq(x[3], 33 * 0.5f, 1e-6);
  cr_assert_float_eq(x[4], 10 * 0.5f, 1e-6);
  for (int j = 0; j < 5; j++) {
    cr_assert_eq(y[j], j == 3 ? 1.0f : 0.0f);
    cr_assert_eq(y[5 + j], j == 1 ? 1.0f : 0.0f);
  }
}

#endif
