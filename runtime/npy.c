// npy.c — NumPy .npy files (numpy.save), plain or gzip-compressed.
//
// Consumes an inputs array (first axis = examples; the other axes, flattened,
// must hold in_numel values) and a labels array (one class index or value per
// example, or out_numel values per example: the CSV label rule), and
// produces an NnrtData. Unsigned bytes stay bytes in memory, like IDX; float32
// inputs are used in place; other types are converted to float once.
//
// Format: the magic "\x93NUMPY", a major and a minor version byte (1.0, 2.0
// or 3.0), the header length (2 bytes little-endian in 1.0, 4 in 2.0 and
// 3.0), then the header, a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
// padded with spaces and a '\n', then the data in C order. The header is
// parsed by a small recursive-descent reader that accepts exactly those
// three keys with string, True/False and tuple-of-integers values, so that
// any other content is an error naming the file and the byte, never a
// crash. Supported dtypes: <f4, <f8, |u1, <i4, <i8 (little-endian, as numpy
// writes them on every common machine). Like IDX, a file must hold exactly
// the bytes its header declares, and non-finite floats are rejected as they
// are in CSV.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt_internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "npy.c reads little-endian data in place");

enum { NPY_MAX_DIMS = 64, NPY_MAX_HEADER = 1 << 16 };

typedef enum NpyType { NPY_F4, NPY_F8, NPY_U1, NPY_I4, NPY_I8 } NpyType;

static const struct NpyDtype {
  const char *descr;
  NpyType type;
  int size;
} dtypes[] = {
    {"<f4", NPY_F4, 4}, {"<f8", NPY_F8, 8}, {"|u1", NPY_U1, 1},
    {"<u1", NPY_U1, 1}, {">u1", NPY_U1, 1}, {"<i4", NPY_I4, 4},
    {"<i8", NPY_I8, 8},
};

typedef struct NpyFile {
  NpyType type;
  int size;                      // bytes per element
  int nd;                        // dimensions
  int64_t dim[NPY_MAX_DIMS];     // outermost first
  int64_t count;                 // dim[0]: examples
  int64_t per;                   // elements per example (product of dim[1..])
  uint8_t *data;                 // count * per * size bytes (nnrt_alloc)
} NpyFile;

// ---- the header: a Python dict literal --------------------------------------
typedef struct Parser {
  const char *p, *end, *base;    // the header text
  int64_t at;                    // file offset of base, for messages
  const char *path;
  NnrtErr *err;
} Parser;

static int bad(Parser *ps, const char *what) {
  return nnrt_fail(ps->err, "%s: malformed NPY header at byte %lld: %s",
                   ps->path, (long long)(ps->at + (ps->p - ps->base)), what);
}

static void skip_ws(Parser *ps) {
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static int eat(Parser *ps, char c) {
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return 1;
  }
  return 0;
}

// A quoted string ('...' or "...", no escapes) into out[cap].
static int parse_string(Parser *ps, char *out, size_t cap) {
  skip_ws(ps);
  if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
    return bad(ps, "expected a quoted string");
  char q = *ps->p++;
  const char *s = ps->p;
  while (ps->p < ps->end && *ps->p != q && *ps->p != '\n')
    ps->p++;
  if (ps->p >= ps->end || *ps->p != q)
    return bad(ps, "unterminated string");
  size_t n = (size_t)(ps->p - s);
  const char *esc = memchr(s, '\\', n);
  if (esc) {
    ps->p = esc;
    return bad(ps, "escapes in strings are not supported");
  }
  if (n >= cap) {
    ps->p = s;
    return bad(ps, "string too long");
  }
  memcpy(out, s, n);
  ps->p++;
  out[n] = '\0';
  return 0;
}

static int parse_word(Parser *ps, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(ps->end - ps->p) >= n && !memcmp(ps->p, w, n)) {
    ps->p += n;
    return 1;
  }
  return 0;
}

// (d0, d1, ...) with an optional trailing comma; "(3)" is accepted too.
static int parse_shape(Parser *ps, NpyFile *a) {
  if (!eat(ps, '('))
    return bad(ps, "expected a tuple such as (60000, 784)");
  a->nd = 0;
  for (;;) {
    skip_ws(ps);
    if (eat(ps, ')'))
      return 0;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
      return bad(ps, "expected a dimension (a whole number >= 0)");
    int64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
      if (v > ((int64_t)1 << 48))
        return bad(ps, "dimension too large");
      v = 10 * v + (*ps->p++ - '0');
    }
    if (ps->p < ps->end && *ps->p == 'L')  // Python 2 long
      ps->p++;
    if (a->nd == NPY_MAX_DIMS)
      return bad(ps, "more than 64 dimensions");
    a->dim[a->nd++] = v;
    if (!eat(ps, ',')) {
      if (eat(ps, ')'))
        return 0;
      return bad(ps, "expected ',' or ')'");
    }
  }
}

// The header dict into a; descr gets the dtype string.
static int parse_header(Parser *ps, NpyFile *a, char *descr, size_t cap,
                        int *fortran) {
  int seen[3] = {0, 0, 0};  // descr, fortran_order, shape
  static const char *const keys[3] = {"descr", "fortran_order", "shape"};
  if (!eat(ps, '{'))
    return bad(ps, "expected '{'");
  for (;;) {
    if (eat(ps, '}'))
      break;
    char key[64];
    skip_ws(ps);
    const char *at = ps->p;  // messages about the key point at its start
    if (parse_string(ps, key, sizeof key))
      return -1;
    int k = 0;
    while (k < 3 && strcmp(key, keys[k]))
      k++;
    if (k == 3 || seen[k]++) {
      char what[128];
      snprintf(what, sizeof what, k == 3 ? "unexpected key '%s'"
                                         : "key '%s' appears twice", key);
      ps->p = at;
      return bad(ps, what);
    }
    if (!eat(ps, ':'))
      return bad(ps, "expected ':'");
    skip_ws(ps);
    if (k == 0) {
      if (ps->p < ps->end && *ps->p == '[')
        return nnrt_fail(ps->err, "%s: the array has a structured dtype (a "
                         "list of fields); only plain numbers are supported",
                         ps->path);
      if (parse_string(ps, descr, cap))
        return -1;
    } else if (k == 1) {
      if (parse_word(ps, "True"))
        *fortran = 1;
      else if (parse_word(ps, "False"))
        *fortran = 0;
      else
        return bad(ps, "expected True or False");
    } else if (parse_shape(ps, a)) {
      return -1;
    }
    if (!eat(ps, ',')) {
      if (eat(ps, '}'))
        break;
      return bad(ps, "expected ',' or '}'");
    }
  }
  skip_ws(ps);
  if (ps->p < ps->end)
    return bad(ps, "unexpected text after the dict");
  for (int k = 0; k < 3; k++)
    if (!seen[k])
      return nnrt_fail(ps->err, "%s: the NPY header has no '%s'", ps->path,
                       keys[k]);
  return 0;
}

// ---- the file ---------------------------------------------------------------
static int npy_body(gzFile f, const char *path, NpyFile *a, NnrtErr *err) {
  uint8_t head[12];
  int64_t got = nnrt_gz_read(f, head, 8);
  if (got < 0)
    return nnrt_gz_error(f, path, err);
  if (got < 8 || memcmp(head, "\x93NUMPY", 6))
    return nnrt_fail(err, "%s: not an NPY file (it does not start with "
                     "\\x93NUMPY)", path);
  int major = head[6], minor = head[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return nnrt_fail(err, "%s: NPY format version %d.%d is not supported "
                     "(1.0, 2.0 and 3.0 are)", path, major, minor);
  int lenbytes = major == 1 ? 2 : 4;
  got = nnrt_gz_read(f, head + 8, lenbytes);
  if (got < 0)
    return nnrt_gz_error(f, path, err);
  if (got < lenbytes)
    return nnrt_fail(err, "%s: truncated NPY header (no header length)",
                     path);
  int64_t hlen = head[8] | head[9] << 8;
  if (lenbytes == 4)
    hlen |= (int64_t)head[10] << 16 | (int64_t)head[11] << 24;
  if (hlen > NPY_MAX_HEADER)
    return nnrt_fail(err, "%s: NPY header of %lld bytes is too long (the "
                     "most is %d)", path, (long long)hlen, NPY_MAX_HEADER);
  char *text = nnrt_alloc((size_t)hlen + 1);
  if (!text)
    return nnrt_fail(err, "%s: out of memory", path);
  got = nnrt_gz_read(f, text, hlen);
  if (got < 0) {
    nnrt_free(text);
    return nnrt_gz_error(f, path, err);
  }
  if (got < hlen) {
    nnrt_free(text);
    return nnrt_fail(err, "%s: truncated NPY header (%lld bytes declared, "
                     "%lld found)", path, (long long)hlen, (long long)got);
  }
  Parser ps = {text, text + hlen, text, 8 + lenbytes, path, err};
  char descr[32];
  int fortran = 0;
  int rc = parse_header(&ps, a, descr, sizeof descr, &fortran);
  nnrt_free(text);
  if (rc)
    return -1;
  const struct NpyDtype *dt = NULL;
  for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++)
    if (!strcmp(descr, dtypes[k].descr))
      dt = &dtypes[k];
  if (!dt)
    return nnrt_fail(err, "%s: dtype '%s' is not supported (use <f4, <f8, "
                     "|u1, <i4 or <i8%s)", path, descr,
                     descr[0] == '>' ? "; this one is big-endian" : "");
  a->type = dt->type;
  a->size = dt->size;
  if (fortran)
    return nnrt_fail(err, "%s: the array is stored in Fortran order "
                     "(fortran_order: True); save it in C order "
                     "(numpy.ascontiguousarray)", path);
  if (a->nd == 0)
    return nnrt_fail(err, "%s: the array is a scalar (shape ()); its first "
                     "axis must count the examples", path);
  // Total bytes, refusing products past 2^48 (which also rules out overflow).
  const int64_t max_total = (int64_t)1 << 48;
  int64_t total = a->size;
  a->per = 1;
  for (int i = 0; i < a->nd; i++) {
    if (a->dim[i] > 0 && total > max_total / a->dim[i])
      return nnrt_fail(err, "%s: NPY header declares more data than any file "
                       "could hold", path);
    total *= a->dim[i];
    // With zero examples `total` stays 0, so bound the example on its own.
    if (i > 0 && a->dim[i] > 0 && a->per > max_total / a->dim[i])
      return nnrt_fail(err, "%s: NPY header declares more data than any file "
                       "could hold", path);
    if (i > 0)
      a->per *= a->dim[i];
  }
  a->count = a->dim[0];
  return nnrt_gz_read_data(f, path, total, &a->data, err);
}

static int npy_read(const char *path, NpyFile *a, NnrtErr *err) {
  memset(a, 0, sizeof *a);
  gzFile f;
  if (nnrt_gz_open(path, &f, err))
    return -1;
  int rc = npy_body(f, path, a, err);
  gzclose(f);
  if (rc) {
    nnrt_free(a->data);
    a->data = NULL;
  }
  return rc;
}

// Element i as a double.
static double element(const NpyFile *a, int64_t i) {
  const uint8_t *p = a->data + i * a->size;
  switch (a->type) {
  case NPY_F4: { float v; memcpy(&v, p, 4); return v; }
  case NPY_F8: { double v; memcpy(&v, p, 8); return v; }
  case NPY_U1: return *p;
  case NPY_I4: { int32_t v; memcpy(&v, p, 4); return v; }
  case NPY_I8: { int64_t v; memcpy(&v, p, 8); return (double)v; }
  }
  return 0;
}

// The shape as numpy prints it: "(5, 3, 3)", "(5,)".
static void shape_str(const NpyFile *a, char *buf, size_t cap) {
  snprintf(buf, cap, "(");
  for (int i = 0; i < a->nd && strlen(buf) + 40 < cap; i++)
    snprintf(buf + strlen(buf), cap - strlen(buf), "%s%lld", i ? ", " : "",
             (long long)a->dim[i]);
  snprintf(buf + strlen(buf), cap - strlen(buf), "%s)", a->nd == 1 ? "," : "");
}

// Element i (of a->per per row) is NaN or infinite.
static int not_finite(const char *path, const NpyFile *a, int64_t i,
                      NnrtErr *err) {
  if (a->per == 1)
    return nnrt_fail(err, "%s: row %lld is not a finite number", path,
                     (long long)i + 1);
  return nnrt_fail(err, "%s: row %lld, value %lld is not a finite number",
                   path, (long long)(i / a->per + 1),
                   (long long)(i % a->per + 1));
}

// Takes a's data as the inputs of d: bytes stay bytes, float32 is used in
// place, the rest is converted to float. a->data is then owned by d (or
// freed).
static int take_inputs(NnrtData *d, NpyFile *a, NnrtErr *err) {
  if (a->per != d->xcols) {
    char shape[256];
    shape_str(a, shape, sizeof shape);
    nnrt_free(a->data);
    return nnrt_fail(err, "%s: each example has %lld value%s (shape %s); the "
                     "model takes %lld inputs", d->path, (long long)a->per,
                     a->per == 1 ? "" : "s", shape, (long long)d->xcols);
  }
  int64_t n = a->count * a->per;
  d->rows = a->count;
  if (a->type == NPY_U1) {
    d->x8 = a->data;
    return 0;
  }
  if (a->type == NPY_F4) {
    d->xf = (float *)(void *)a->data;  // 64-byte aligned by nnrt_alloc
  } else {
    d->xf = nnrt_alloc_array(n, sizeof(float));
    if (!d->xf) {
      nnrt_free(a->data);
      return nnrt_fail(err, "%s: out of memory (%lld values)", d->path,
                       (long long)n);
    }
    for (int64_t i = 0; i < n; i++)
      d->xf[i] = (float)element(a, i);
    nnrt_free(a->data);
  }
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(d->xf[i]))
      return not_finite(d->path, a, i, err);
  return 0;
}

int nnrt_npy_load_inputs(NnrtData *d, NnrtErr *err) {
  NpyFile a;
  if (npy_read(d->path, &a, err))
    return -1;
  return take_inputs(d, &a, err);
}

// Labels: one per example (a class index, or the target of a one-output
// model) or out_numel values per example.
static int take_labels(NnrtData *d, const NnrtDataSpec *spec, const NpyFile *a,
                       const char *path_y, NnrtErr *err) {
  long long out = (long long)d->out_numel;
  if (a->count != d->rows)
    return nnrt_fail(err, "%s has %lld examples but %s has %lld labels",
                     d->path, (long long)d->rows, path_y,
                     (long long)a->count);
  if (spec->nclasses > 0 && a->per != 1)
    return nnrt_fail(err, "%s: a class filter needs one label per example "
                     "(found %lld)", path_y, (long long)a->per);
  if (a->per == d->out_numel && a->per > 1) {
    d->ycols = a->per;
  } else if (a->per == 1) {
    d->ycols = 1;
    d->onehot = d->out_numel > 1;
  } else {
    char shape[256];
    shape_str(a, shape, sizeof shape);
    return nnrt_fail(err, "%s: each example has %lld label values (shape %s); "
                     "the model has %lld output%s, so give %lld value%s%s per "
                     "example", path_y, (long long)a->per, shape, out,
                     out == 1 ? "" : "s", out, out == 1 ? "" : "s",
                     out > 1 ? " or one class index" : "");
  }
  d->y = nnrt_alloc_array(d->rows * d->ycols, sizeof(float));
  if (!d->y)
    return nnrt_fail(err, "%s: out of memory", path_y);
  if (d->ycols > 1) {
    for (int64_t i = 0; i < d->rows * d->ycols; i++) {
      d->y[i] = (float)element(a, i);
      if (!isfinite(d->y[i]))
        return not_finite(path_y, a, i, err);
    }
    return 0;
  }
  // One label per row: check it and keep the rows that pass the class
  // filter, compacting the inputs in place.
  size_t row_bytes = (size_t)d->xcols * (d->x8 ? 1 : sizeof(float));
  uint8_t *x = d->x8 ? d->x8 : (uint8_t *)d->xf;
  int64_t n = 0;
  for (int64_t r = 0; r < d->rows; r++) {
    double v = element(a, r);
    if (!isfinite(v) || !isfinite((float)v))
      return not_finite(path_y, a, r, err);
    int keep;
    if (nnrt_data_label(spec, d, v, path_y, r + 1, &keep, &d->y[n], err))
      return -1;
    if (!keep)
      continue;
    if (n != r)
      memcpy(x + (size_t)n * row_bytes, x + (size_t)r * row_bytes, row_bytes);
    n++;
  }
  d->rows = n;
  return 0;
}

int nnrt_npy_load(NnrtData *d, const NnrtDataSpec *spec, const char *path_y,
                  NnrtErr *err) {
  NpyFile a, b;
  if (npy_read(d->path, &a, err) || take_inputs(d, &a, err))
    return -1;
  if (npy_read(path_y, &b, err))
    return -1;
  int rc = take_labels(d, spec, &b, path_y, err);
  nnrt_free(b.data);
  return rc;
}
