// idx.c — IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.
//
// Consumes an image file and a label file (zlib's gzread reads both forms)
// and produces an NnrtData whose inputs stay bytes: 60000 x 784 images take
// 47 MB as bytes rather than 188 MB as floats. The header is a magic number
// (0x00 0x00 type ndims), then ndims big-endian 32-bit sizes, then the data.
// Only unsigned bytes (type 0x08) are accepted. A file must hold exactly the
// bytes its header declares; the buffer grows as data arrives, so a header
// that lies about its size cannot make us allocate more than the file holds
// (times two). Every failure names the file.
#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "nnrt_internal.h"

enum { IDX_MAX_DIMS = 255 };

typedef struct IdxFile {
  int nd;                        // dimensions
  int64_t dim[IDX_MAX_DIMS];     // sizes, outermost first
  int64_t count;                 // dim[0]: images or labels
  int64_t per;                   // values per item (product of dim[1..])
  uint8_t *data;                 // count * per bytes (nnrt_alloc)
} IdxFile;

static const char *type_name(int t) {
  switch (t) {
  case 0x09: return "signed bytes";
  case 0x0B: return "16-bit integers";
  case 0x0C: return "32-bit integers";
  case 0x0D: return "32-bit floats";
  case 0x0E: return "64-bit floats";
  default: return "unknown";
  }
}

// Reads up to n bytes; returns how many, or -1 on a read error.
static int64_t read_some(gzFile f, uint8_t *buf, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    int64_t want = n - done > (1 << 30) ? (1 << 30) : n - done;
    int got = gzread(f, buf + done, (unsigned)want);
    if (got < 0)
      return -1;
    if (got == 0)
      break;
    done += got;
  }
  return done;
}

static int gz_failed(gzFile f, const char *path, NnrtErr *err) {
  int code;
  const char *msg = gzerror(f, &code);
  return nnrt_fail(err, "%s: read error (%s)", path,
                   code == Z_ERRNO ? strerror(errno) : msg);
}

static int idx_body(gzFile f, const char *path, IdxFile *x, NnrtErr *err) {
  uint8_t head[4];
  int64_t got = read_some(f, head, 4);
  if (got < 0)
    return gz_failed(f, path, err);
  if (got < 4)
    return nnrt_fail(err, "%s: not an IDX file (only %lld bytes)", path,
                     (long long)got);
  if (head[0] != 0 || head[1] != 0)
    return nnrt_fail(err, "%s: not an IDX file (bad magic %02x %02x %02x "
                     "%02x; expected 00 00 08 nd)", path, head[0], head[1],
                     head[2], head[3]);
  if (head[2] != 0x08)
    return nnrt_fail(err, "%s: IDX element type 0x%02X (%s) is not supported; "
                     "only unsigned bytes (0x08) are", path, head[2],
                     type_name(head[2]));
  x->nd = head[3];
  if (x->nd == 0)
    return nnrt_fail(err, "%s: IDX file declares no dimensions", path);
  uint8_t dims[4 * IDX_MAX_DIMS];
  got = read_some(f, dims, 4 * x->nd);
  if (got < 0)
    return gz_failed(f, path, err);
  if (got < 4 * x->nd)
    return nnrt_fail(err, "%s: truncated IDX header (%d dimensions need %d "
                     "bytes, found %lld)", path, x->nd, 4 * x->nd,
                     (long long)got);
  // Total bytes, refusing products past 2^48 (which also rules out overflow).
  const int64_t max_total = (int64_t)1 << 48;
  int64_t total = 1;
  x->per = 1;
  for (int i = 0; i < x->nd; i++) {
    const uint8_t *b = dims + 4 * i;
    x->dim[i] = (int64_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
    if (x->dim[i] > 0 && total > max_total / x->dim[i])
      return nnrt_fail(err, "%s: IDX header declares more data than any file "
                       "could hold", path);
    total *= x->dim[i];
    if (i == 0)
      continue;
    // With zero items `total` stays 0, so bound the item size on its own.
    if (x->dim[i] > 0 && x->per > max_total / x->dim[i])
      return nnrt_fail(err, "%s: IDX header declares more data than any file "
                       "could hold", path);
    x->per *= x->dim[i];
  }
  x->count = x->dim[0];
  // Grow toward the declared size as data arrives.
  int64_t cap = total < (1 << 20) ? total : (1 << 20), have = 0;
  x->data = nnrt_alloc((size_t)cap);
  for (;;) {
    if (!x->data)
      return nnrt_fail(err, "%s: out of memory (%lld bytes of data)", path,
                       (long long)total);
    got = read_some(f, x->data + have, cap - have);
    if (got < 0)
      return gz_failed(f, path, err);
    have += got;
    if (have < cap || cap == total)
      break;
    int64_t ncap = cap > total / 2 ? total : 2 * cap;
    uint8_t *nd = nnrt_alloc((size_t)ncap);
    if (nd)
      memcpy(nd, x->data, (size_t)have);
    nnrt_free(x->data);
    x->data = nd;
    cap = ncap;
  }
  if (have < total) {
    int code;
    const char *msg = gzerror(f, &code);
    return nnrt_fail(err, "%s: truncated: the header declares %lld bytes of "
                     "data, the file holds %lld%s%s%s", path, (long long)total,
                     (long long)have, code != Z_OK ? " (gzip: " : "",
                     code != Z_OK ? msg : "", code != Z_OK ? ")" : "");
  }
  int64_t extra = 0;
  uint8_t tail[4096];
  while ((got = read_some(f, tail, sizeof tail)) > 0)
    extra += got;
  if (got < 0)
    return gz_failed(f, path, err);
  if (extra > 0)
    return nnrt_fail(err, "%s: %lld bytes after the %lld bytes of data the "
                     "header declares", path, (long long)extra,
                     (long long)total);
  return 0;
}

static int idx_read(const char *path, IdxFile *x, NnrtErr *err) {
  memset(x, 0, sizeof *x);
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    return nnrt_fail(err, "%s: cannot open (%s)", path,
                     errno ? strerror(errno) : "out of memory");
  int rc = idx_body(f, path, x, err);
  gzclose(f);
  if (rc) {
    nnrt_free(x->data);
    x->data = NULL;
  }
  return rc;
}

int nnrt_idx_sniff(const char *path, NnrtErr *err) {
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    return nnrt_fail(err, "%s: cannot open (%s)", path,
                     errno ? strerror(errno) : "out of memory");
  uint8_t head[2];
  int64_t got = read_some(f, head, 2);
  gzclose(f);
  return got == 2 && head[0] == 0 && head[1] == 0;
}

static int check_images(const IdxFile *x, const NnrtData *d, NnrtErr *err) {
  if (x->per == d->xcols)
    return 0;
  char dims[256] = "";
  for (int i = 1; i < x->nd && strlen(dims) < 200; i++)
    snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%lld",
             i > 1 ? " x " : "", (long long)x->dim[i]);
  return nnrt_fail(err, "%s: each image has %lld values (%s); the model takes "
                   "%lld inputs", d->path, (long long)x->per,
                   x->nd > 1 ? dims : "scalars", (long long)d->xcols);
}

int nnrt_idx_load_images(NnrtData *d, NnrtErr *err) {
  IdxFile img;
  if (idx_read(d->path, &img, err))
    return -1;
  if (check_images(&img, d, err)) {
    nnrt_free(img.data);
    return -1;
  }
  d->x8 = img.data;
  d->rows = img.count;
  return 0;
}

int nnrt_idx_load(NnrtData *d, const NnrtDataSpec *spec, const char *path_y,
                  NnrtErr *err) {
  IdxFile img, lab;
  if (idx_read(d->path, &img, err))
    return -1;
  d->x8 = img.data;  // owned by d from here on
  if (check_images(&img, d, err))
    return -1;
  if (idx_read(path_y, &lab, err))
    return -1;
  int rc = 0;
  if (lab.nd != 1)
    rc = nnrt_fail(err, "%s: labels must have one dimension (the file has "
                   "%d)", path_y, lab.nd);
  else if (lab.count != img.count)
    rc = nnrt_fail(err, "%s has %lld images but %s has %lld labels", d->path,
                   (long long)img.count, path_y, (long long)lab.count);
  else if (!(d->y = nnrt_alloc_array(img.count, sizeof(float))))
    rc = nnrt_fail(err, "%s: out of memory", path_y);
  d->ycols = 1;
  d->onehot = d->out_numel > 1;
  // Keep the rows whose label passes the class filter, compacting in place.
  int64_t n = 0;
  for (int64_t r = 0; !rc && r < img.count; r++) {
    int keep;
    rc = nnrt_data_label(spec, d, lab.data[r], path_y, r + 1, &keep, &d->y[n],
                         err);
    if (rc || !keep)
      continue;
    if (n != r)
      memcpy(d->x8 + n * d->xcols, d->x8 + r * d->xcols, (size_t)d->xcols);
    n++;
  }
  nnrt_free(lab.data);
  d->rows = n;
  return rc;
}
