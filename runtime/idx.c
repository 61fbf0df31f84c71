// idx.c — IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.
//
// Consumes an image file and a label file (zlib's gzread reads both forms)
// and produces an NnrtData whose inputs stay bytes: 60000 x 784 images take
// 47 MB as bytes rather than 188 MB as floats. The header is a magic number
// (0x00 0x00 type ndims), then ndims big-endian 32-bit sizes, then the data.
// Only unsigned bytes (type 0x08) are accepted. A file must hold exactly the
// bytes its header declares; the buffer grows as data arrives, so a header
// that lies about its size cannot make us allocate more than the file holds
// (times two; nnrt_gz_read_data in data.c). Every failure names the file.
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

static int idx_body(gzFile f, const char *path, IdxFile *x, NnrtErr *err) {
  uint8_t head[4];
  int64_t got = nnrt_gz_read(f, head, 4);
  if (got < 0)
    return nnrt_gz_error(f, path, err);
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
  got = nnrt_gz_read(f, dims, 4 * x->nd);
  if (got < 0)
    return nnrt_gz_error(f, path, err);
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
  return nnrt_gz_read_data(f, path, total, &x->data, err);
}

static int idx_read(const char *path, IdxFile *x, NnrtErr *err) {
  memset(x, 0, sizeof *x);
  gzFile f;
  if (nnrt_gz_open(path, &f, err))
    return -1;
  int rc = idx_body(f, path, x, err);
  gzclose(f);
  if (rc) {
    nnrt_free(x->data);
    x->data = NULL;
  }
  return rc;
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
