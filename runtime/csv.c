// csv.c — CSV data files (plain or gzip-compressed).
//
// Consumes a text file of numbers separated by commas (spaces and tabs
// around them allowed, "\r\n" line ends accepted, blank lines skipped). If the
// first non-blank line holds anything that is not a number, it is a header and
// is skipped. The first in_numel columns are the inputs; the rest are labels:
// exactly out_numel values used as they are, or (when out_numel > 1) one class
// index expanded to one-hot. For `predict` (no spec) only the inputs are read.
// Produces an NnrtData with float inputs and labels. Two passes over the text:
// the first finds the row count and the column count, so the arrays are
// allocated once; the second parses and validates every field, reporting
// FILE:LINE: column C for the first bad one.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt_internal.h"

typedef struct Line {
  const char *p, *end;  // the line without its '\n' or '\r'
  int64_t no;           // 1-based line number
} Line;

// Moves *pos past the next line and returns it.
static Line next_line(const char **pos, const char *end, int64_t *no) {
  const char *p = *pos;
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  const char *e = nl ? nl : end;
  *pos = nl ? nl + 1 : end;
  Line l = {p, e, ++*no};
  while (l.end > l.p && l.end[-1] == '\r')
    l.end--;
  return l;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

static int blank(Line l) {
  for (const char *p = l.p; p < l.end; p++)
    if (!is_space(*p))
      return 0;
  return 1;
}

// The field starting at *p (trimmed) into [*fs, *fe); moves *p past its comma.
static void next_field(const char **p, const char *end, const char **fs,
                       const char **fe) {
  const char *q = *p;
  const char *comma = memchr(q, ',', (size_t)(end - q));
  const char *e = comma ? comma : end;
  *p = comma ? comma + 1 : end + 1;  // past end: no more fields
  while (q < e && is_space(*q))
    q++;
  while (e > q && is_space(e[-1]))
    e--;
  *fs = q, *fe = e;
}

static int64_t count_fields(Line l) {
  int64_t n = 1;
  for (const char *p = l.p; p < l.end; p++)
    n += *p == ',';
  return n;
}

// Parses one field; 0 when it is a finite float.
static int parse_number(const char *s, const char *e, float *out) {
  char tmp[64];
  size_t n = (size_t)(e - s);
  if (n == 0 || n >= sizeof tmp)
    return -1;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  // Plain decimal only: strtod would also take "nan", "inf" and hex.
  if (strspn(tmp, "0123456789+-.eE") < n)
    return -1;
  char *stop;
  double v = strtod(tmp, &stop);
  if (*stop != '\0' || !isfinite(v) || !isfinite((float)v))
    return -1;
  *out = (float)v;
  return 0;
}

static int is_header(Line l) {
  const char *p = l.p, *fs, *fe;
  float v;
  while (p <= l.end) {
    next_field(&p, l.end, &fs, &fe);
    if (parse_number(fs, fe, &v))
      return 1;
  }
  return 0;
}

// Decides how the label columns are read; 0 when the layout is usable.
static int layout(NnrtData *d, const NnrtDataSpec *spec, int64_t ncols,
                  int64_t line, NnrtErr *err) {
  const char *f = d->path;
  long long in = (long long)d->xcols, out = (long long)d->out_numel;
  if (ncols < d->xcols)
    return nnrt_fail(err, "%s:%lld: %lld columns; the model takes %lld inputs",
                     f, (long long)line, (long long)ncols, in);
  if (!spec)
    return 0;  // predict: extra columns (labels) are ignored
  int64_t rest = ncols - d->xcols;
  if (spec->nclasses > 0 && rest != 1)
    return nnrt_fail(err, "%s:%lld: a class filter needs one label column "
                     "after the %lld inputs (found %lld)", f, (long long)line,
                     in, (long long)rest);
  if (rest == 0)
    return nnrt_fail(err, "%s:%lld: no label columns after the %lld inputs "
                     "(the model has %lld outputs)", f, (long long)line, in,
                     out);
  if (rest == d->out_numel) {
    d->ycols = rest;
  } else if (rest == 1 && d->out_numel > 1) {
    d->ycols = 1;
    d->onehot = 1;
  } else {
    return nnrt_fail(err, "%s:%lld: %lld columns after the %lld inputs; the "
                     "model has %lld outputs, so expected %lld label "
                     "column%s%s", f, (long long)line, (long long)rest, in,
                     out, out, out == 1 ? "" : "s",
                     out > 1 ? " or one class index" : "");
  }
  return 0;
}

static int parse_rows(NnrtData *d, const NnrtDataSpec *spec, const char *buf,
                      int64_t len, int64_t ncols, int64_t first_data,
                      int64_t first_line, NnrtErr *err) {
  const char *pos = buf, *end = buf + len, *f = d->path;
  int64_t no = 0, n = 0;
  float ybuf[1];
  while (pos < end) {
    Line l = next_line(&pos, end, &no);
    if (no < first_data || blank(l))
      continue;
    int64_t found = count_fields(l);
    if (found != ncols)
      return nnrt_fail(err, "%s:%lld: expected %lld columns (as on line "
                       "%lld), found %lld", f, (long long)no, (long long)ncols,
                       (long long)first_line, (long long)found);
    float *xr = d->xf + n * d->xcols;
    float *yr = d->ycols > 1 ? d->y + n * d->ycols : ybuf;
    const char *p = l.p, *fs, *fe;
    for (int64_t c = 0; c < ncols; c++) {
      next_field(&p, l.end, &fs, &fe);
      float v;
      if (c >= d->xcols + d->ycols)
        continue;  // predict: label columns are not needed
      if (parse_number(fs, fe, &v)) {
        if (fs == fe)
          return nnrt_fail(err, "%s:%lld: column %lld is empty", f,
                           (long long)no, (long long)c + 1);
        int w = (int)(fe - fs) > 24 ? 24 : (int)(fe - fs);
        return nnrt_fail(err, "%s:%lld: column %lld: '%.*s%s' is not a "
                         "number", f, (long long)no, (long long)c + 1, w, fs,
                         fe - fs > 24 ? "..." : "");
      }
      if (c < d->xcols)
        xr[c] = v;
      else
        yr[c - d->xcols] = v;
    }
    int keep = 1;
    if (d->ycols == 1) {
      char where[sizeof d->path + 32];
      snprintf(where, sizeof where, "%s:%lld", f, (long long)no);
      if (nnrt_data_label(spec, d, ybuf[0], where, 0, &keep, &d->y[n], err))
        return -1;
    }
    n += keep;
  }
  d->rows = n;
  return 0;
}

int nnrt_csv_load(NnrtData *d, const NnrtDataSpec *spec, NnrtErr *err) {
  char *buf;
  int64_t len;
  if (nnrt_read_file(d->path, &buf, &len, err))
    return -1;
  // Pass 1: the header, the column count (from the first data line) and an
  // upper bound on the rows.
  const char *pos = buf, *end = buf + len;
  int64_t no = 0, rows = 0, ncols = -1, first_data = 1, first_line = 0;
  int seen = 0;
  while (pos < end) {
    Line l = next_line(&pos, end, &no);
    if (blank(l))
      continue;
    if (!seen++ && is_header(l)) {
      first_data = no + 1;
      continue;
    }
    if (ncols < 0)
      ncols = count_fields(l), first_line = no;
    rows++;
  }
  int rc = 0;
  if (rows > 0) {
    rc = layout(d, spec, ncols, first_line, err);
    if (!rc) {
      d->xf = nnrt_alloc_array(rows * d->xcols, sizeof(float));
      d->y = d->ycols ? nnrt_alloc_array(rows * d->ycols, sizeof(float)) : NULL;
      if (!d->xf || (d->ycols && !d->y))
        rc = nnrt_fail(err, "%s: out of memory (%lld rows)", d->path,
                       (long long)rows);
    }
    if (!rc)
      rc = parse_rows(d, spec, buf, len, ncols, first_data, first_line, err);
  }
  nnrt_free(buf);
  return rc;
}
