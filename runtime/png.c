// png.c — pictures: a PNG encoder (8-bit gray or RGB, zlib's deflate), the
// grid of images `sample` draws, and writing a picture by its file name.
//
// A PNG is the signature, an IHDR chunk (size, bit depth 8, color type 0
// gray or 2 RGB, no interlace), one IDAT chunk holding the zlib stream of
// the filtered rows, and IEND; every chunk carries the CRC-32 of its type
// and data (zlib's crc32). Each row starts with its filter byte: by default
// the filter with the least sum of absolute filtered values (the heuristic
// the PNG specification suggests, and libpng's), so photographs and flat
// gutters both compress well; tests can force one filter to check each.
// The file is built in memory (grids are small), then written atomically
// like every other output (FILE.tmp, fsync, rename: nnrt_write_atomic).
// zlib's own memory comes through nnrt_alloc too, so a failed allocation
// anywhere ends in "out of memory".
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nnrt_internal.h"

enum { GRAY = 128, MAX_RAW = 1 << 30 };

// ---- filters ----------------------------------------------------------------
static int paeth(int a, int b, int c) {
  int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Row `cur` (n bytes, bpp bytes per pixel) filtered with `type` against the
// row above (`prev`, NULL for the first row) into out; returns the sum of
// the absolute values of the filtered bytes read as signed.
static uint64_t filter_row(int type, const uint8_t *cur, const uint8_t *prev,
                           int64_t n, int bpp, uint8_t *out) {
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; i++) {
    int a = i >= bpp ? cur[i - bpp] : 0, b = prev ? prev[i] : 0;
    int c = prev && i >= bpp ? prev[i - bpp] : 0, pred = 0;
    switch (type) {
    case 1: pred = a; break;
    case 2: pred = b; break;
    case 3: pred = (a + b) / 2; break;
    case 4: pred = paeth(a, b, c); break;
    default: break;
    }
    uint8_t v = (uint8_t)(cur[i] - pred);
    if (out)
      out[i] = v;
    sum += (uint64_t)(v < 128 ? v : 256 - v);
  }
  return sum;
}

// ---- zlib through nnrt_alloc -----------------------------------------------
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  void *p = nnrt_alloc_array((int64_t)items, size);
  return p ? p : Z_NULL;
}

static void z_free(voidpf opaque, voidpf p) {
  (void)opaque;
  nnrt_free(p);
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
  return p + 4;
}

// Closes the chunk whose length field is at `start` and whose data is
// `len` bytes: writes the length and appends the CRC of type and data.
static uint8_t *end_chunk(uint8_t *start, uint32_t len) {
  put32(start, len);
  uLong crc = crc32(0L, start + 4, len + 4);
  return put32(start + 8 + len, (uint32_t)crc);
}

// ---- the encoder ------------------------------------------------------------
int nnrt_png_encode(const NnrtImage *img, int filter, uint8_t **out,
                    size_t *len, NnrtErr *err) {
  *out = NULL, *len = 0;
  int64_t ch = img->channels, w = img->width, h = img->height;
  if ((ch != 1 && ch != 3) || filter < -1 || filter > 4 || !img->pixels)
    return nnrt_fail(err, "a PNG of %lld channels (filter %d) cannot be "
                     "written", (long long)ch, filter);
  if (w < 1 || h < 1)
    return nnrt_fail(err, "an empty picture (%lld x %lld) cannot be a PNG",
                     (long long)w, (long long)h);
  if (w > INT32_MAX / 3 || h > INT32_MAX ||
      (double)h * (double)(w * ch + 1) > MAX_RAW)
    return nnrt_fail(err, "a %lld x %lld picture is too large for a PNG "
                     "(at most %d bytes of pixels)", (long long)w,
                     (long long)h, MAX_RAW);
  int64_t stride = w * ch, raw_len = h * (stride + 1);
  uint8_t *raw = nnrt_alloc_array(raw_len, 1);
  if (!raw)
    return nnrt_fail(err, "out of memory (a %lld x %lld picture)",
                     (long long)w, (long long)h);
  for (int64_t y = 0; y < h; y++) {
    const uint8_t *cur = img->pixels + y * stride;
    const uint8_t *prev = y ? cur - stride : NULL;
    int best = filter;
    if (filter < 0) {
      uint64_t least = UINT64_MAX;
      for (int t = 0; t < 5; t++) {
        uint64_t s = filter_row(t, cur, prev, stride, (int)ch, NULL);
        if (s < least)
          least = s, best = t;
      }
    }
    uint8_t *row = raw + y * (stride + 1);
    row[0] = (uint8_t)best;
    filter_row(best, cur, prev, stride, (int)ch, row + 1);
  }
  z_stream z;
  memset(&z, 0, sizeof z);
  z.zalloc = z_alloc, z.zfree = z_free;
  if (deflateInit(&z, Z_DEFAULT_COMPRESSION) != Z_OK) {
    nnrt_free(raw);
    return nnrt_fail(err, "out of memory (zlib's compressor)");
  }
  // Signature, IHDR (12 + 13), IDAT (12 + the stream), IEND (12).
  uLong bound = deflateBound(&z, (uLong)raw_len);
  size_t cap = 8 + 25 + 12 + (size_t)bound + 12;
  uint8_t *png = nnrt_alloc_array((int64_t)cap, 1);
  if (!png) {
    deflateEnd(&z);
    nnrt_free(raw);
    return nnrt_fail(err, "out of memory (a %lld-byte PNG)", (long long)cap);
  }
  memcpy(png, "\x89PNG\r\n\x1a\n", 8);
  uint8_t *p = png + 8;
  memcpy(p + 4, "IHDR", 4);
  uint8_t *d = put32(p + 8, (uint32_t)w);
  d = put32(d, (uint32_t)h);
  d[0] = 8;                      // bits per sample
  d[1] = ch == 3 ? 2 : 0;        // color type: RGB or gray
  d[2] = d[3] = d[4] = 0;        // deflate, adaptive filtering, no interlace
  p = end_chunk(p, 13);
  uint8_t *idat = p;
  memcpy(idat + 4, "IDAT", 4);
  z.next_in = raw, z.avail_in = (uInt)raw_len;
  z.next_out = idat + 8, z.avail_out = (uInt)bound;
  int zr = deflate(&z, Z_FINISH);
  uLong zlen = z.total_out;
  deflateEnd(&z);
  nnrt_free(raw);
  if (zr != Z_STREAM_END) {      // cannot happen within deflateBound
    nnrt_free(png);
    return nnrt_fail(err, "zlib failed to compress the picture (%d)", zr);
  }
  p = end_chunk(idat, (uint32_t)zlen);
  memcpy(p + 4, "IEND", 4);
  p = end_chunk(p, 0);
  *out = png;
  *len = (size_t)(p - png);
  return 0;
}

typedef struct Bytes {
  const uint8_t *p;
  size_t n;
} Bytes;

static int write_bytes(FILE *f, void *ctx) {
  const Bytes *b = ctx;
  return fwrite(b->p, 1, b->n, f) == b->n ? 0 : -1;
}

int nnrt_png_write(const char *path, const NnrtImage *img, NnrtErr *err) {
  uint8_t *png;
  size_t len;
  if (nnrt_png_encode(img, -1, &png, &len, err))
    return -1;
  Bytes b = {png, len};
  int rc = nnrt_write_atomic(path, write_bytes, &b, err);
  nnrt_free(png);
  return rc;
}

// 1 when path ends in `ext` (".pgm"), in any case.
static int has_ext(const char *path, const char *ext) {
  size_t n = strlen(path), k = strlen(ext);
  return n > k && !strcasecmp(path + n - k, ext);
}

int nnrt_image_write(const char *path, const NnrtImage *img, NnrtErr *err) {
  if (has_ext(path, ".pgm"))
    return nnrt_pgm_write(path, img, err);
  return nnrt_png_write(path, img, err);
}

// ---- grids ------------------------------------------------------------------
static uint8_t shade(double v) {
  if (!(v >= 0))  // negative or NaN
    v = 0;
  if (v > 1)
    v = 1;
  return (uint8_t)(v * 255 + 0.5);
}

void nnrt_image_draw(NnrtImage *img, const float *e, int64_t channels,
                     int64_t h, int64_t w, int64_t x0, int64_t y0) {
  int64_t plane = h * w;
  for (int64_t r = 0; r < h; r++)
    for (int64_t c = 0; c < w; c++) {
      uint8_t *px = img->pixels + ((y0 + r) * img->width + x0 + c) *
                                      img->channels;
      const float *v = e + r * w + c;
      if (img->channels == 3 && channels == 3) {
        for (int k = 0; k < 3; k++)
          px[k] = shade(v[k * plane]);
        continue;
      }
      double s = 0;
      for (int64_t k = 0; k < channels; k++)
        s += v[k * plane];
      uint8_t g = shade(s / (double)channels);
      for (int64_t k = 0; k < img->channels; k++)
        px[k] = g;
    }
}

int nnrt_image_alloc(NnrtImage *img, int64_t cells_x, int64_t cells_y,
                     int64_t h, int64_t w, int64_t gutter, int64_t channels,
                     NnrtErr *err) {
  memset(img, 0, sizeof *img);
  int64_t width, height, size;
  if (cells_x < 1 || cells_y < 1 || h < 1 || w < 1 || gutter < 0 ||
      __builtin_mul_overflow(cells_x, w + gutter, &width) ||
      __builtin_mul_overflow(cells_y, h + gutter, &height) ||
      __builtin_add_overflow(width, gutter, &width) ||
      __builtin_add_overflow(height, gutter, &height) ||
      __builtin_mul_overflow(width, height, &size) ||
      __builtin_mul_overflow(size, channels, &size))
    return nnrt_fail(err, "a picture of %lld x %lld images would be too "
                     "large", (long long)cells_x, (long long)cells_y);
  img->pixels = nnrt_alloc_array(size, 1);
  if (!img->pixels)
    return nnrt_fail(err, "out of memory (a %lld x %lld picture)",
                     (long long)width, (long long)height);
  img->width = width, img->height = height, img->channels = channels;
  memset(img->pixels, GRAY, (size_t)size);
  return 0;
}

int nnrt_image_grid(NnrtImage *img, const float *x, int64_t n,
                    int64_t channels, int64_t h, int64_t w, int64_t cols,
                    int64_t gutter, NnrtErr *err) {
  memset(img, 0, sizeof *img);
  if (n < 1 || channels < 1 || cols < 1)
    return nnrt_fail(err, "a grid of %lld images of %lld channels in %lld "
                     "columns cannot be drawn", (long long)n,
                     (long long)channels, (long long)cols);
  int64_t across = n < cols ? n : cols, down = (n + cols - 1) / cols;
  if (nnrt_image_alloc(img, across, down, h, w, gutter, channels == 3 ? 3 : 1,
                       err))
    return -1;
  for (int64_t i = 0; i < n; i++)
    nnrt_image_draw(img, x + i * channels * h * w, channels, h, w,
                    gutter + i % cols * (w + gutter),
                    gutter + i / cols * (h + gutter));
  return 0;
}
