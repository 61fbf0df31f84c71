// data.c — finding data files, inline data, labels, and gathering batches.
//
// Consumes an NnrtDataSpec of the model (or a file named on the command line)
// and produces an NnrtData that owns its arrays (nnrt_data_open/close pair).
// IDX files are loaded by idx.c, CSV files by csv.c and NPY files by npy.c;
// this file holds what they share: the path search, reading through zlib
// (plain or gzip; whole files, or the data a header declares), the label
// rule (class filter, one-hot range check) and the --limit cut. Invariant:
// after a successful open every stored label is valid for the model (a
// one-hot index is an integer in [0, out_numel)), so gathering a batch
// cannot fail and needs no checks.
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "nnrt_internal.h"

static const char *const SYSTEM_DATA_DIR = "/usr/share/datasets";

static int join_path(char *out, size_t cap, const char *dir, size_t dirlen,
                     const char *name) {
  int n = snprintf(out, cap, "%.*s%s%s", (int)dirlen, dir,
                   dirlen && dir[dirlen - 1] != '/' ? "/" : "", name);
  return n >= 0 && (size_t)n < cap;
}

// Appends "dir" to the list of folders tried, for the not-found message.
static void note_tried(char *list, size_t cap, const char *dir, size_t len) {
  size_t used = strlen(list);
  if (used + len + 3 < cap)
    snprintf(list + used, cap - used, "%s%.*s", used ? ", " : "", (int)len,
             dir);
}

int nnrt_data_find(const char *name, const char *source_dir, char *out,
                   size_t cap, NnrtErr *err) {
  if (!name || !*name)
    return nnrt_fail(err, "the model names an empty data file");
  if (name[0] == '/') {
    if (strlen(name) >= cap)
      return nnrt_fail(err, "%s: path too long", name);
    strcpy(out, name);
    return 0;
  }
  char tried[1024] = "";
  const char *env = getenv("NNC_DATA");
  for (const char *p = env; p && *p;) {
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);
    if (len > 0) {
      if (join_path(out, cap, p, len, name) && access(out, R_OK) == 0)
        return 0;
      note_tried(tried, sizeof tried, p, len);
    }
    p += len + (colon != NULL);
  }
  const char *dirs[] = {source_dir, SYSTEM_DATA_DIR};
  for (int i = 0; i < 2; i++) {
    if (!dirs[i] || !*dirs[i])
      continue;
    size_t len = strlen(dirs[i]);
    if (join_path(out, cap, dirs[i], len, name) && access(out, R_OK) == 0)
      return 0;
    note_tried(tried, sizeof tried, dirs[i], len);
  }
  return nnrt_fail(err, "%s: data file not found (looked in %s%s)", name,
                   tried, env ? "" : "; set NNC_DATA to add folders");
}

int nnrt_gz_open(const char *path, gzFile *f, NnrtErr *err) {
  errno = 0;
  *f = gzopen(path, "rb");
  if (!*f)
    return nnrt_fail(err, "%s: cannot open (%s)", path,
                     errno ? strerror(errno) : "out of memory");
  return 0;
}

int64_t nnrt_gz_read(gzFile f, void *buf, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    int64_t want = n - done > (1 << 30) ? (1 << 30) : n - done;
    int got = gzread(f, (char *)buf + done, (unsigned)want);
    if (got < 0)
      return -1;
    if (got == 0) {  // the end, or a gzip stream cut short (Z_BUF_ERROR)
      int code;
      gzerror(f, &code);
      if (code != Z_OK)
        return -1;
      break;
    }
    done += got;
  }
  return done;
}

int nnrt_gz_error(gzFile f, const char *path, NnrtErr *err) {
  int code;
  const char *msg = gzerror(f, &code);
  if (code == Z_BUF_ERROR || code == Z_DATA_ERROR)
    return nnrt_fail(err, "%s: corrupt or truncated gzip data (%s)", path,
                     msg);
  return nnrt_fail(err, "%s: read error (%s)", path,
                   code == Z_ERRNO ? strerror(errno) : msg);
}

int nnrt_gz_read_data(gzFile f, const char *path, int64_t total,
                      uint8_t **out, NnrtErr *err) {
  // Grow toward the declared size as data arrives (from 64 KiB: a header
  // that lies costs no more than that; the fuzzers found 1 MiB slow).
  int64_t cap = total < (1 << 16) ? total : (1 << 16), have = 0, got;
  uint8_t *data = nnrt_alloc((size_t)cap);
  *out = NULL;
  for (;;) {
    if (!data)
      return nnrt_fail(err, "%s: out of memory (%lld bytes of data)", path,
                       (long long)total);
    got = nnrt_gz_read(f, data + have, cap - have);
    if (got < 0) {
      nnrt_free(data);
      return nnrt_gz_error(f, path, err);
    }
    have += got;
    if (have < cap || cap == total)
      break;
    int64_t ncap = cap > total / 2 ? total : 2 * cap;
    uint8_t *nd = nnrt_alloc((size_t)ncap);
    if (nd)
      memcpy(nd, data, (size_t)have);
    nnrt_free(data);
    data = nd;
    cap = ncap;
  }
  if (have < total) {
    int code;
    const char *msg = gzerror(f, &code);
    nnrt_free(data);
    return nnrt_fail(err, "%s: truncated: the header declares %lld bytes of "
                     "data, the file holds %lld%s%s%s", path, (long long)total,
                     (long long)have, code != Z_OK ? " (gzip: " : "",
                     code != Z_OK ? msg : "", code != Z_OK ? ")" : "");
  }
  int64_t extra = 0;
  uint8_t tail[4096];
  while ((got = nnrt_gz_read(f, tail, sizeof tail)) > 0)
    extra += got;
  if (got < 0 || extra > 0)
    nnrt_free(data);
  if (got < 0)
    return nnrt_gz_error(f, path, err);
  if (extra > 0)
    return nnrt_fail(err, "%s: %lld bytes after the %lld bytes of data the "
                     "header declares", path, (long long)extra,
                     (long long)total);
  *out = data;
  return 0;
}

int nnrt_data_sniff(const char *path, NnrtErr *err) {
  gzFile f;
  if (nnrt_gz_open(path, &f, err))
    return -1;
  uint8_t head[6];
  int64_t got = nnrt_gz_read(f, head, 6);
  gzclose(f);
  if (got >= 2 && head[0] == 0 && head[1] == 0)
    return NNRT_DATA_IDX;
  if (got == 6 && !memcmp(head, "\x93NUMPY", 6))
    return NNRT_DATA_NPY;
  return NNRT_DATA_CSV;
}

int nnrt_read_file(const char *path, char **buf, int64_t *len, NnrtErr *err) {
  *buf = NULL;
  *len = 0;
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    return nnrt_fail(err, "%s: cannot open (%s)", path,
                     errno ? strerror(errno) : "out of memory");
  size_t cap = 1 << 16, used = 0;
  char *b = nnrt_alloc(cap + 1);
  for (;;) {
    if (!b) {
      gzclose(f);
      return nnrt_fail(err, "%s: out of memory reading the file", path);
    }
    if (used == cap) {  // grow by doubling; the hook cannot resize
      char *nb = cap <= SIZE_MAX / 4 ? nnrt_alloc(2 * cap + 1) : NULL;
      if (nb)
        memcpy(nb, b, used);
      nnrt_free(b);
      b = nb;
      cap *= 2;
      continue;
    }
    size_t want = cap - used > (1u << 30) ? (1u << 30) : cap - used;
    int got = gzread(f, b + used, (unsigned)want);
    if (got < 0) {
      int code;
      const char *msg = gzerror(f, &code);
      nnrt_fail(err, "%s: read error (%s)", path,
                code == Z_ERRNO ? strerror(errno) : msg);
      nnrt_free(b);
      gzclose(f);
      return -1;
    }
    if (got == 0)
      break;
    used += (size_t)got;
  }
  int code;
  const char *msg = gzerror(f, &code);
  if (code != Z_OK) {  // a truncated or corrupt gzip stream
    nnrt_fail(err, "%s: corrupt gzip data (%s)", path, msg);
    nnrt_free(b);
    gzclose(f);
    return -1;
  }
  gzclose(f);
  b[used] = '\0';
  *buf = b;
  *len = (int64_t)used;
  return 0;
}

int nnrt_data_label(const NnrtDataSpec *spec, const NnrtData *d, double v,
                    const char *where, int64_t row, int *keep, float *out,
                    NnrtErr *err) {
  char at[64] = "";
  if (row > 0)
    snprintf(at, sizeof at, " at row %lld", (long long)row);
  *keep = 1;
  if (spec && spec->nclasses > 0) {
    int64_t k = 0;
    while (k < spec->nclasses && (double)spec->classes[k] != v)
      k++;
    if (k == spec->nclasses) {
      *keep = 0;
      return 0;
    }
    v = (double)k;  // relabel to the position in the list
  }
  if (d->onehot) {
    if (v != floor(v))
      return nnrt_fail(err, "%s: label %g%s is not a whole number (a class "
                       "index)", where, v, at);
    if (v < 0 || v >= (double)d->out_numel)
      return nnrt_fail(err, "%s: label %g%s is out of range (the model has "
                       "%lld outputs, so labels go from 0 to %lld)", where, v,
                       at, (long long)d->out_numel,
                       (long long)d->out_numel - 1);
  }
  *out = (float)v;
  return 0;
}

// Inline rows: the same label rule as CSV (ycols == out_numel used as they
// are, or one class index expanded to one-hot).
static int inline_load(NnrtData *d, const NnrtDataSpec *spec, NnrtErr *err) {
  const char *name = "inline data";
  if (spec->nrows < 0 || (spec->nrows > 0 && (!spec->x || !spec->y)))
    return nnrt_fail(err, "%s: no rows", name);
  if (spec->xcols != d->xcols)
    return nnrt_fail(err, "%s: rows have %lld inputs; the model takes %lld",
                     name, (long long)spec->xcols, (long long)d->xcols);
  if (spec->nclasses > 0 && spec->ycols != 1)
    return nnrt_fail(err, "%s: a class filter needs one label column (rows "
                     "have %lld)", name, (long long)spec->ycols);
  if (spec->ycols == d->out_numel)
    d->ycols = spec->ycols;
  else if (spec->ycols == 1 && d->out_numel > 1)
    d->ycols = 1, d->onehot = 1;
  else
    return nnrt_fail(err, "%s: rows have %lld label values; the model has %lld "
                     "outputs (give %lld values or one class index)", name,
                     (long long)spec->ycols, (long long)d->out_numel,
                     (long long)d->out_numel);
  d->xf = nnrt_alloc_array(spec->nrows * d->xcols, sizeof(float));
  d->y = nnrt_alloc_array(spec->nrows * d->ycols, sizeof(float));
  if (!d->xf || !d->y)
    return nnrt_fail(err, "%s: out of memory", name);
  int64_t n = 0;
  for (int64_t r = 0; r < spec->nrows; r++) {
    const float *ys = spec->y + r * spec->ycols;
    int keep = 1;
    if (d->ycols == 1) {
      if (nnrt_data_label(spec, d, ys[0], name, r + 1, &keep, &d->y[n], err))
        return -1;
    } else {
      memcpy(d->y + n * d->ycols, ys, (size_t)d->ycols * sizeof(float));
    }
    if (keep) {
      memcpy(d->xf + n * d->xcols, spec->x + r * spec->xcols,
             (size_t)d->xcols * sizeof(float));
      n++;
    }
  }
  d->rows = n;
  return 0;
}

static void data_init(NnrtData *d, const NnrtModel *m, double scale) {
  memset(d, 0, sizeof *d);
  d->xcols = m->in_numel;
  d->out_numel = m->out_numel;
  // 0 means the model gave no scale (a zero scale would erase the inputs).
  d->scale = scale != 0 ? (float)scale : 1.0f;
}

int nnrt_data_open(NnrtData *d, const NnrtDataSpec *spec, const NnrtModel *m,
                   int64_t limit, NnrtErr *err) {
  data_init(d, m, spec->scale);
  if (spec->nclasses > 0 && m->out_numel > 1 && spec->nclasses > m->out_numel)
    return nnrt_fail(err, "the class filter lists %lld classes but the model "
                     "has %lld outputs", (long long)spec->nclasses,
                     (long long)m->out_numel);
  int rc;
  char path_y[sizeof d->path];
  switch ((NnrtDataKind)spec->kind) {
  case NNRT_DATA_IDX:
    rc = nnrt_data_find(spec->path_x, m->source_dir, d->path, sizeof d->path,
                        err);
    if (!rc && !spec->path_y && m->nmetrics > 0 &&
        m->out_numel != m->in_numel && spec->nclasses == 0) {
      // A program of steps (a GAN) that needs no labels: they read as 0.
      rc = nnrt_idx_load_images(d, err);
      break;
    }
    if (!rc && !spec->path_y) {  // idx(images): learn to reproduce the input
      if (m->out_numel != m->in_numel || spec->nclasses > 0)
        rc = nnrt_fail(err, "%s: without a labels file the target is the "
                       "input, but the model takes %lld values and predicts "
                       "%lld", d->path, (long long)m->in_numel,
                       (long long)m->out_numel);
      else
        rc = nnrt_idx_load_images(d, err);
      d->self_target = 1;
      break;
    }
    if (!rc)
      rc = nnrt_data_find(spec->path_y, m->source_dir, path_y, sizeof path_y,
                          err);
    if (!rc)
      rc = nnrt_idx_load(d, spec, path_y, err);
    break;
  case NNRT_DATA_CSV:
    rc = nnrt_data_find(spec->path_x, m->source_dir, d->path, sizeof d->path,
                        err);
    if (!rc)
      rc = nnrt_csv_load(d, spec, err);
    break;
  case NNRT_DATA_NPY:
    rc = nnrt_data_find(spec->path_x, m->source_dir, d->path, sizeof d->path,
                        err);
    if (!rc)
      rc = nnrt_data_find(spec->path_y, m->source_dir, path_y, sizeof path_y,
                          err);
    if (!rc)
      rc = nnrt_npy_load(d, spec, path_y, err);
    break;
  case NNRT_DATA_INLINE:
    snprintf(d->path, sizeof d->path, "inline data");
    rc = inline_load(d, spec, err);
    break;
  default:
    rc = nnrt_fail(err, "the model has no data of this kind (%lld)",
                   (long long)spec->kind);
  }
  if (rc) {
    nnrt_data_close(d);
    return -1;
  }
  if (limit > 0 && limit < d->rows)
    d->rows = limit;
  return 0;
}

int nnrt_data_open_input(NnrtData *d, const char *path, const NnrtModel *m,
                         double scale, NnrtErr *err) {
  data_init(d, m, scale);
  if (strlen(path) >= sizeof d->path)
    return nnrt_fail(err, "%s: path too long", path);
  strcpy(d->path, path);
  int kind = nnrt_data_sniff(path, err);
  int rc = kind < 0                ? -1
           : kind == NNRT_DATA_IDX ? nnrt_idx_load_images(d, err)
           : kind == NNRT_DATA_NPY ? nnrt_npy_load_inputs(d, err)
                                   : nnrt_csv_load(d, NULL, err);
  if (rc)
    nnrt_data_close(d);
  return rc;
}

void nnrt_data_close(NnrtData *d) {
  nnrt_free(d->x8);
  nnrt_free(d->xf);
  nnrt_free(d->y);
  d->x8 = NULL, d->xf = NULL, d->y = NULL;
  d->rows = 0;
}

// Rows gathered ahead of the one being converted: shuffled rows are cache
// misses, and converting a row takes about as long as fetching one. Batches
// of at least two chunks are gathered by the thread pool, a chunk per task.
enum { GATHER_AHEAD = 4, GATHER_CHUNK = 16 };

// The conversion loops are compiled for the CPU the program runs on as
// well (the generated kernels use its full vector width anyway): the
// baseline x86-64 build converts 4 values per instruction, AVX-512 16, and
// this loop is most of the cost of gathering a small model's batch.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FOR_EACH_CPU \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FOR_EACH_CPU
#endif

// A byte converts to float exactly, so this equals a lookup table of
// i * scale, and it vectorizes.
FOR_EACH_CPU static void convert_bytes(float *restrict dst,
                                       const uint8_t *restrict src, int64_t n,
                                       float scale) {
  for (int64_t j = 0; j < n; j++)
    dst[j] = (float)src[j] * scale;
}

FOR_EACH_CPU static void convert_floats(float *restrict dst,
                                        const float *restrict src, int64_t n,
                                        float scale) {
  for (int64_t j = 0; j < n; j++)
    dst[j] = src[j] * scale;
}

static void prefetch_row(const NnrtData *d, int64_t s) {
  size_t row_bytes = (size_t)d->xcols * (d->x8 ? 1 : sizeof(float));
  const char *row = (d->x8 ? (const char *)d->x8 : (const char *)d->xf) +
                    (size_t)s * row_bytes;
  for (size_t o = 0; o < row_bytes; o += 64)
    __builtin_prefetch(row + o);
}

// Rows idx[first .. first + rows) into x and y; meanwhile the rows
// idx[ahead .. ahead + nahead) (the next batch) are prefetched, one per
// row converted, so that they arrive during the step that follows.
static void gather_rows(const NnrtData *d, const int64_t *idx, int64_t first,
                        int64_t rows, float *x, float *y, int64_t ahead,
                        int64_t nahead) {
  int64_t xc = d->xcols, yn = d->out_numel;
  for (int64_t r = 0; r < rows; r++) {
    if (r < nahead)
      prefetch_row(d, idx ? idx[ahead + r] : ahead + r);
    if (r + GATHER_AHEAD < rows) {
      int64_t a = idx ? idx[first + r + GATHER_AHEAD] : first + r + GATHER_AHEAD;
      prefetch_row(d, a);
      if (y && d->y)
        __builtin_prefetch(d->y + a * d->ycols);
    }
    int64_t s = idx ? idx[first + r] : first + r;
    float *xr = x + r * xc;
    if (d->x8)
      convert_bytes(xr, d->x8 + s * xc, xc, d->scale);
    else
      convert_floats(xr, d->xf + s * xc, xc, d->scale);
    if (!y)
      continue;
    float *yr = y + r * yn;
    if (d->self_target) {
      memcpy(yr, xr, (size_t)yn * sizeof(float));  // yn == xc, checked at open
    } else if (d->onehot) {
      memset(yr, 0, (size_t)yn * sizeof(float));
      yr[(int64_t)d->y[s]] = 1.0f;
    } else if (d->ycols == yn) {
      memcpy(yr, d->y + s * yn, (size_t)yn * sizeof(float));
    } else {
      memset(yr, 0, (size_t)yn * sizeof(float));  // no labels (predict)
    }
  }
}

typedef struct GatherJob {
  const NnrtData *d;
  const int64_t *idx;
  int64_t first, rows, ahead, nahead;
  float *x, *y;
} GatherJob;

static void gather_task(void *ctx, int64_t t) {
  const GatherJob *j = ctx;
  int64_t r0 = t * GATHER_CHUNK;
  int64_t n = j->rows - r0 < GATHER_CHUNK ? j->rows - r0 : GATHER_CHUNK;
  int64_t na = j->nahead - r0;
  na = na < 0 ? 0 : na < n ? na : n;
  gather_rows(j->d, j->idx, j->first + r0, n, j->x + r0 * j->d->xcols,
              j->y ? j->y + r0 * j->d->out_numel : NULL, j->ahead + r0, na);
}

void nnrt_data_gather_ahead(const NnrtData *d, const int64_t *idx,
                            int64_t first, int64_t rows, float *x, float *y,
                            int64_t ahead, int64_t nahead) {
  if (nahead > rows)
    nahead = rows;
  if (rows < 2 * GATHER_CHUNK) {
    gather_rows(d, idx, first, rows, x, y, ahead, nahead);
    return;
  }
  GatherJob j = {d, idx, first, rows, ahead, nahead, x, y};
  nnrt_parallel_for(gather_task, &j, (rows + GATHER_CHUNK - 1) / GATHER_CHUNK);
}

void nnrt_data_gather(const NnrtData *d, const int64_t *idx, int64_t first,
                      int64_t rows, float *x, float *y) {
  nnrt_data_gather_ahead(d, idx, first, rows, x, y, 0, 0);
}
