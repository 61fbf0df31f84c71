// text.c — token streams from text files, one byte per token (NNRT_DATA_TEXT).
//
// Consumes a data spec naming a file, or a folder whose regular files (not
// symbolic links, which would repeat a text) are read in name order and
// joined, and the model's window length (in_numel). Produces the windows
// of one part of the stream: the head, or the last `holdout` of it (the
// test part), cut every `stride` bytes into windows of in_numel bytes. A
// window's inputs are its byte values; its label is the byte after the
// window (text_steps = 1), or the byte after each of its positions
// (text_steps = in_numel), stored as class indices and expanded to one-hot
// vectors of text_vocab classes when a batch is gathered (data.c).
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nnrt_internal.h"

// Appends the file's bytes to *buf (size *n, capacity *cap).
static int append_file(const char *path, uint8_t **buf, int64_t *n,
                       int64_t *cap, NnrtErr *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return nnrt_fail(err, "%s: cannot open (%s)", path, strerror(errno));
  for (;;) {
    if (*cap - *n < 65536) {
      int64_t nc = *cap ? 2 * *cap : 1 << 20;
      uint8_t *nb = realloc(*buf, (size_t)nc);
      if (!nb) {
        fclose(f);
        return nnrt_fail(err, "%s: out of memory", path);
      }
      *buf = nb, *cap = nc;
    }
    size_t got = fread(*buf + *n, 1, (size_t)(*cap - *n), f);
    *n += (int64_t)got;
    if (got == 0)
      break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad)
    return nnrt_fail(err, "%s: read error", path);
  return 0;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

// The whole stream: the file, or the folder's files in name order.
static int read_stream(const char *path, uint8_t **buf, int64_t *n,
                       NnrtErr *err) {
  struct stat st;
  int64_t cap = 0;
  *buf = NULL, *n = 0;
  if (stat(path, &st) != 0)
    return nnrt_fail(err, "%s: %s", path, strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return append_file(path, buf, n, &cap, err);
  DIR *dir = opendir(path);
  if (!dir)
    return nnrt_fail(err, "%s: cannot open the folder (%s)", path,
                     strerror(errno));
  char **names = NULL;
  int64_t count = 0, ncap = 0;
  int rc = 0;
  for (struct dirent *e; (e = readdir(dir)) != NULL && !rc;) {
    char full[4096];
    if (e->d_name[0] == '.' ||
        snprintf(full, sizeof full, "%s/%s", path, e->d_name) >=
            (int)sizeof full)
      continue;
    if (lstat(full, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (count == ncap) {
      ncap = ncap ? 2 * ncap : 16;
      char **nn = realloc(names, sizeof *names * (size_t)ncap);
      if (!nn) {
        rc = nnrt_fail(err, "%s: out of memory", path);
        break;
      }
      names = nn;
    }
    names[count] = strdup(full);
    if (!names[count])
      rc = nnrt_fail(err, "%s: out of memory", path);
    else
      count++;
  }
  closedir(dir);
  if (!rc)
    qsort(names, (size_t)count, sizeof *names, name_cmp);
  for (int64_t i = 0; i < count && !rc; i++)
    rc = append_file(names[i], buf, n, &cap, err);
  for (int64_t i = 0; i < count; i++)
    free(names[i]);
  free(names);
  if (!rc && count == 0)
    rc = nnrt_fail(err, "%s: the folder holds no text files", path);
  return rc;
}

int nnrt_text_load(NnrtData *d, const NnrtDataSpec *spec, NnrtErr *err) {
  uint8_t *all;
  int64_t n;
  if (read_stream(d->path, &all, &n, err))
    return -1;
  int64_t t = d->xcols, steps = spec->text_steps, vocab = spec->text_vocab;
  int64_t stride = spec->stride > 0 ? spec->stride : t;
  if (steps != 1 && steps != t) {
    free(all);
    return nnrt_fail(err, "%s: inconsistent text labels (rebuild the program)",
                     d->path);
  }
  // The part: [0, cut) for training, [cut, n) for the test.
  int64_t cut = (int64_t)((double)n * (1 - spec->holdout));
  int64_t lo = spec->text_test ? cut : 0, hi = spec->text_test ? n : cut;
  int64_t len = hi - lo;
  int64_t rows = len > t ? (len - t - 1) / stride + 1 : 0;
  if (rows < 1) {
    free(all);
    return nnrt_fail(err, "%s: the %s part holds %lld bytes, too few for one "
                     "window of %lld and its next byte", d->path,
                     spec->text_test ? "test" : "training", (long long)len,
                     (long long)t);
  }
  for (int64_t i = lo; i < hi; i++)
    if (all[i] >= vocab) {
      int64_t b = all[i];
      free(all);
      return nnrt_fail(err, "%s: byte %lld has the value %lld, outside the "
                       "model's %lld classes", d->path, (long long)i,
                       (long long)b, (long long)vocab);
    }
  d->rows = rows;
  d->ycols = steps;
  d->onehot = 1;
  d->x8 = nnrt_alloc_array(rows * t, 1);
  d->y = nnrt_alloc_array(rows * steps, sizeof(float));
  if (!d->x8 || !d->y) {
    free(all);
    return nnrt_fail(err, "%s: out of memory (%lld windows)", d->path,
                     (long long)rows);
  }
  for (int64_t r = 0; r < rows; r++) {
    const uint8_t *w = all + lo + r * stride;
    memcpy(d->x8 + r * t, w, (size_t)t);
    for (int64_t j = 0; j < steps; j++)
      d->y[r * steps + j] = (float)w[steps == 1 ? t : j + 1];
  }
  free(all);
  return 0;
}
