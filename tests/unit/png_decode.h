// png_decode.h — a strict PNG reader for the runtime's tests, written from
// the PNG specification independently of runtime/png.c: it checks the
// signature, that IHDR comes first (13 bytes, 8-bit gray or RGB, deflate,
// filter method 0, no interlace), every chunk's CRC-32, that IDAT chunks are
// consecutive, that IEND is last, empty and followed by nothing; inflates
// the IDAT data with zlib (the stream must end exactly at its end and hold
// exactly height x (1 + width x channels) bytes) and undoes the five row
// filters. Everything is static: each test file is its own executable.
#ifndef PNG_DECODE_H
#define PNG_DECODE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct Png {
  uint32_t width, height;
  int channels;                  // 1 gray, 3 RGB
  uint8_t *px;                   // height x width x channels (malloc'd)
  unsigned filters;              // bit t: some row used filter type t
  int nchunks;
  char error[256];               // why decoding failed ("" on success)
} Png;

static uint32_t png_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static int png_paeth(int a, int b, int c) {
  int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
  if (pa <= pb && pa <= pc)
    return a;
  return pb <= pc ? b : c;
}

// 0 on success; otherwise -1 with p->error set (p->px NULL).
static int png_decode(const uint8_t *b, size_t n, Png *p) {
  memset(p, 0, sizeof *p);
#define PNG_FAIL(...)                                                       \
  do {                                                                      \
    snprintf(p->error, sizeof p->error, __VA_ARGS__);                       \
    free(idat);                                                             \
    free(raw);                                                              \
    free(p->px);                                                            \
    p->px = NULL;                                                           \
    return -1;                                                              \
  } while (0)
  uint8_t *idat = NULL, *raw = NULL;
  size_t idat_len = 0;
  if (n < 8 || memcmp(b, "\x89PNG\r\n\x1a\n", 8))
    PNG_FAIL("bad signature");
  size_t at = 8;
  int seen_ihdr = 0, seen_iend = 0, idat_state = 0;  // 0 none, 1 in, 2 after
  while (at < n) {
    if (n - at < 12)
      PNG_FAIL("truncated chunk at byte %zu", at);
    uint32_t len = png_be32(b + at);
    if (len > n - at - 12)
      PNG_FAIL("chunk length %u overruns the file at byte %zu", len, at);
    const uint8_t *type = b + at + 4, *data = b + at + 8;
    uint32_t crc = png_be32(data + len);
    if ((uint32_t)crc32(0L, type, len + 4) != crc)
      PNG_FAIL("bad CRC of chunk %.4s", (const char *)type);
    p->nchunks++;
    if (seen_iend)
      PNG_FAIL("chunk after IEND");
    if (!seen_ihdr && memcmp(type, "IHDR", 4))
      PNG_FAIL("first chunk is %.4s, not IHDR", (const char *)type);
    if (!memcmp(type, "IHDR", 4)) {
      if (seen_ihdr || len != 13)
        PNG_FAIL("bad IHDR");
      seen_ihdr = 1;
      p->width = png_be32(data), p->height = png_be32(data + 4);
      if (!p->width || !p->height || p->width > (1u << 20) ||
          p->height > (1u << 20))
        PNG_FAIL("bad size %ux%u", p->width, p->height);
      if (data[8] != 8 || (data[9] != 0 && data[9] != 2) || data[10] ||
          data[11] || data[12])
        PNG_FAIL("unexpected IHDR fields %d %d %d %d %d", data[8], data[9],
                 data[10], data[11], data[12]);
      p->channels = data[9] == 2 ? 3 : 1;
    } else if (!memcmp(type, "IDAT", 4)) {
      if (idat_state == 2)
        PNG_FAIL("IDAT chunks are not consecutive");
      idat_state = 1;
      uint8_t *grown = realloc(idat, idat_len + len + 1);
      if (!grown)
        PNG_FAIL("out of memory");
      idat = grown;
      memcpy(idat + idat_len, data, len);
      idat_len += len;
    } else if (!memcmp(type, "IEND", 4)) {
      if (len)
        PNG_FAIL("IEND with data");
      seen_iend = 1;
    } else if (!(type[0] & 0x20)) {
      PNG_FAIL("unknown critical chunk %.4s", (const char *)type);
    }
    if (idat_state == 1 && memcmp(type, "IDAT", 4))
      idat_state = 2;
    at += 12 + len;
  }
  if (!seen_iend)
    PNG_FAIL("no IEND");
  if (!idat_len)
    PNG_FAIL("no IDAT");
  size_t stride = (size_t)p->width * (size_t)p->channels;
  size_t raw_len = (size_t)p->height * (stride + 1);
  raw = malloc(raw_len + 1);
  z_stream z;
  memset(&z, 0, sizeof z);
  if (!raw || inflateInit(&z) != Z_OK)
    PNG_FAIL("cannot start inflating");
  z.next_in = idat, z.avail_in = (uInt)idat_len;
  z.next_out = raw, z.avail_out = (uInt)(raw_len + 1);
  int zr = inflate(&z, Z_FINISH);
  size_t got = z.total_out, left = z.avail_in;
  inflateEnd(&z);
  if (zr != Z_STREAM_END)
    PNG_FAIL("inflate: %d (%zu bytes out of %zu expected)", zr, got,
             raw_len);
  if (got != raw_len || left)
    PNG_FAIL("inflated %zu bytes, expected %zu (%zu compressed bytes left)",
             got, raw_len, left);
  p->px = malloc(raw_len);
  if (!p->px)
    PNG_FAIL("out of memory");
  int bpp = p->channels;
  for (uint32_t y = 0; y < p->height; y++) {
    const uint8_t *f = raw + y * (stride + 1);
    uint8_t *cur = p->px + y * stride;
    const uint8_t *prev = y ? cur - stride : NULL;
    if (f[0] > 4)
      PNG_FAIL("row %u: filter type %d", y, f[0]);
    p->filters |= 1u << f[0];
    for (size_t i = 0; i < stride; i++) {
      int a = i >= (size_t)bpp ? cur[i - bpp] : 0, up = prev ? prev[i] : 0;
      int c = prev && i >= (size_t)bpp ? prev[i - bpp] : 0;
      int pred = f[0] == 1   ? a
                 : f[0] == 2 ? up
                 : f[0] == 3 ? (a + up) / 2
                 : f[0] == 4 ? png_paeth(a, up, c)
                             : 0;
      cur[i] = (uint8_t)(f[1 + i] + pred);
    }
  }
  free(idat);
  free(raw);
  return 0;
#undef PNG_FAIL
}

// The pixel (x, y), channel k.
static inline uint8_t png_at(const Png *p, uint32_t x, uint32_t y, int k) {
  return p->px[((size_t)y * p->width + x) * (size_t)p->channels + (size_t)k];
}

#endif
