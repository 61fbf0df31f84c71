// nnrt_png_test.c — the PNG encoder and the image grid (runtime/png.c).
// Every PNG written is read back by tests/unit/png_decode.h (signature,
// chunk order, CRC-32 of every chunk, zlib inflate to the exact size, the
// five row filters undone) and compared pixel by pixel with the image it
// came from: gray and RGB, sizes from 1x1 up, each filter type forced and
// the adaptive choice. Also: the decoder notices a flipped bit (so these
// checks can fail), the encoder's errors, the atomic write, every
// allocation failure (zlib's included) ending in "out of memory" with
// nothing leaked, the grid's layout, clamping and color, and .pgm output.
#include <math.h>
#include <sys/stat.h>

#include "nnrt_test.h"
#include "png_decode.h"

// A test picture: noise, gradients and flat runs, so that every filter has
// something to do.
static NnrtImage picture(int64_t w, int64_t h, int64_t ch, uint32_t seed) {
  NnrtImage img = {w, h, nnrt_alloc_array(w * h * ch, 1), ch};
  cr_assert_not_null(img.pixels);
  uint32_t s = seed * 2654435761u + 1;
  for (int64_t y = 0; y < h; y++)
    for (int64_t x = 0; x < w; x++)
      for (int64_t k = 0; k < ch; k++) {
        s = s * 1103515245u + 12345u;
        uint8_t v;
        switch ((y / 3) % 3) {
        case 0: v = (uint8_t)(s >> 24); break;              // noise
        case 1: v = (uint8_t)(3 * x + 5 * y + 40 * k); break;  // gradient
        default: v = x < w / 2 ? 7 : 250; break;           // flat
        }
        img.pixels[(y * w + x) * ch + k] = v;
      }
  return img;
}

static void expect_same(const Png *p, const NnrtImage *img) {
  cr_assert_eq(p->width, (uint32_t)img->width);
  cr_assert_eq(p->height, (uint32_t)img->height);
  cr_assert_eq(p->channels, (int)img->channels);
  size_t n = (size_t)(img->width * img->height * img->channels);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(p->px[i], img->pixels[i], "byte %zu: %d, expected %d", i,
                 p->px[i], img->pixels[i]);
}

static Png encode_decode(const NnrtImage *img, int filter, size_t *len) {
  uint8_t *buf;
  size_t n;
  NnrtErr e;
  cr_assert_eq(nnrt_png_encode(img, filter, &buf, &n, &e), 0, "%s", e.msg);
  Png p;
  cr_assert_eq(png_decode(buf, n, &p), 0, "filter %d: %s", filter, p.error);
  cr_assert_eq(p.nchunks, 3);  // IHDR, IDAT, IEND
  nnrt_free(buf);
  if (len)
    *len = n;
  return p;
}

Test(png, round_trip_every_filter) {
  static const int64_t sizes[][3] = {{1, 1, 1}, {1, 1, 3}, {7, 5, 1},
                                     {7, 5, 3}, {33, 17, 1}, {33, 17, 3},
                                     {300, 2, 1}, {2, 40, 3}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    NnrtImage img = picture(sizes[s][0], sizes[s][1], sizes[s][2],
                            (uint32_t)s);
    for (int f = -1; f <= 4; f++) {
      Png p = encode_decode(&img, f, NULL);
      expect_same(&p, &img);
      if (f >= 0)
        cr_assert_eq(p.filters, 1u << f, "filter %d: used %#x", f, p.filters);
      free(p.px);
    }
    nnrt_free(img.pixels);
  }
}

// The adaptive choice mixes filters on a varied picture and compresses a
// smooth one better than no filtering.
Test(png, adaptive_filters) {
  NnrtImage img = picture(64, 30, 3, 9);
  Png p = encode_decode(&img, -1, NULL);
  cr_assert_gt(__builtin_popcount(p.filters), 1, "filters %#x", p.filters);
  free(p.px);
  nnrt_free(img.pixels);
  NnrtImage ramp = {200, 50, nnrt_alloc_array(200 * 50, 1), 1};
  for (int y = 0; y < 50; y++)
    for (int x = 0; x < 200; x++)
      ramp.pixels[y * 200 + x] = (uint8_t)(x * 7 + y * 3);
  size_t none, adaptive;
  p = encode_decode(&ramp, 0, &none);
  free(p.px);
  p = encode_decode(&ramp, -1, &adaptive);
  expect_same(&p, &ramp);
  free(p.px);
  cr_assert_lt(adaptive, none, "%zu vs %zu bytes", adaptive, none);
  nnrt_free(ramp.pixels);
}

// The bytes are the PNG specification's: signature, IHDR fields, IEND.
Test(png, layout_of_the_file) {
  NnrtImage img = picture(5, 3, 3, 1);
  uint8_t *buf;
  size_t n;
  NnrtErr e;
  cr_assert_eq(nnrt_png_encode(&img, -1, &buf, &n, &e), 0, "%s", e.msg);
  cr_assert_eq(memcmp(buf, "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16), 0);
  cr_assert_eq(memcmp(buf + 16, "\0\0\0\x05\0\0\0\x03\x08\x02\0\0\0", 13), 0);
  cr_assert_eq(memcmp(buf + 37, "IDAT", 4), 0);
  cr_assert_eq(memcmp(buf + n - 12, "\0\0\0\0IEND\xae\x42\x60\x82", 12), 0);
  // A flipped bit anywhere in a chunk is noticed.
  for (size_t at = 8; at < n; at += 7) {
    buf[at] ^= 0x10;
    Png p;
    cr_assert_eq(png_decode(buf, n, &p), -1, "byte %zu", at);
    cr_assert_null(p.px);
    buf[at] ^= 0x10;
  }
  // A damaged stream with a repaired CRC is noticed by inflate.
  uint32_t len = png_be32(buf + 33);
  buf[41 + len / 2] ^= 0xff;
  uint32_t crc = (uint32_t)crc32(0L, buf + 37, len + 4);
  for (int i = 0; i < 4; i++)
    buf[41 + len + i] = (uint8_t)(crc >> (24 - 8 * i));
  Png p;
  int rc = png_decode(buf, n, &p);
  if (rc == 0) {  // inflate may still succeed: then the pixels differ
    int differ = 0;
    for (size_t i = 0; i < 5 * 3 * 3; i++)
      differ |= p.px[i] != img.pixels[i];
    cr_assert(differ);
    free(p.px);
  }
  nnrt_free(buf);
  nnrt_free(img.pixels);
}

Test(png, encoder_errors) {
  uint8_t px[12] = {0};
  uint8_t *buf = (uint8_t *)1;
  size_t n = 5;
  NnrtErr e;
  NnrtImage two = {2, 2, px, 2};
  cr_assert_eq(nnrt_png_encode(&two, -1, &buf, &n, &e), -1);
  cr_assert_null(buf);
  cr_assert_eq(n, 0);
  cr_assert(strstr(e.msg, "2 channels"), "%s", e.msg);
  NnrtImage empty = {0, 2, px, 1};
  cr_assert_eq(nnrt_png_encode(&empty, -1, &buf, &n, &e), -1);
  cr_assert(strstr(e.msg, "an empty picture (0 x 2)"), "%s", e.msg);
  NnrtImage huge = {1 << 20, 1 << 20, px, 1};
  cr_assert_eq(nnrt_png_encode(&huge, -1, &buf, &n, &e), -1);
  cr_assert(strstr(e.msg, "too large"), "%s", e.msg);
  NnrtImage ok = {2, 2, px, 1};
  cr_assert_eq(nnrt_png_encode(&ok, 5, &buf, &n, &e), -1);
}

Test(png, atomic_write_and_pgm) {
  const char *dir = tmpdir();
  NnrtImage img = picture(9, 4, 3, 3);
  char path[512];
  snprintf(path, sizeof path, "%s/a.png", dir);
  write_text(path, "an old, longer file that must be replaced entirely.....");
  NnrtErr e;
  cr_assert_eq(nnrt_image_write(path, &img, &e), 0, "%s", e.msg);
  cr_assert_eq(access(in_dir(dir, "a.png.tmp"), F_OK), -1);
  size_t n;
  char *data = read_all(path, &n);
  Png p;
  cr_assert_eq(png_decode((uint8_t *)data, n, &p), 0, "%s", p.error);
  expect_same(&p, &img);
  free(p.px);
  free(data);
  // .pgm (any case): gray, the mean of the channels.
  snprintf(path, sizeof path, "%s/a.PGM", dir);
  cr_assert_eq(nnrt_image_write(path, &img, &e), 0, "%s", e.msg);
  data = read_all(path, &n);
  cr_assert_eq(strncmp(data, "P5\n9 4\n255\n", 11), 0);
  cr_assert_eq(n, 11 + 9 * 4);
  for (int i = 0; i < 9 * 4; i++) {
    const uint8_t *q = img.pixels + 3 * i;
    cr_assert_eq((uint8_t)data[11 + i], (q[0] + q[1] + q[2] + 1) / 3);
  }
  free(data);
  // A folder in the way: the error names the file, nothing is left.
  snprintf(path, sizeof path, "%s/d.png", dir);
  cr_assert_eq(mkdir(path, 0755), 0);
  cr_assert_eq(nnrt_png_write(path, &img, &e), -1);
  cr_assert(strstr(e.msg, "d.png: cannot write ("), "%s", e.msg);
  cr_assert_eq(access(in_dir(dir, "d.png.tmp"), F_OK), -1);
  nnrt_free(img.pixels);
}

Test(png, every_allocation_failure_is_clean) {
  const char *dir = tmpdir();
  const char *path = in_dir(dir, "f.png");
  uint8_t px[4 * 3 * 3];
  for (int i = 0; i < 36; i++)
    px[i] = (uint8_t)(i * 7);
  NnrtImage img = {4, 3, px, 3};
  int64_t k;
  for (k = 0; k < 100; k++) {
    Counter c = {0, 0, k};
    nnrt_set_alloc(counting_hook, &c);
    NnrtErr e;
    int rc = nnrt_png_write(path, &img, &e);
    nnrt_set_alloc(NULL, NULL);
    cr_assert_eq(c.alive, 0, "allocation %lld: leak", (long long)k);
    if (c.allocs <= k) {
      cr_assert_eq(rc, 0, "%s", e.msg);
      break;
    }
    cr_assert_eq(rc, -1);
    cr_assert(strstr(e.msg, "out of memory"), "allocation %lld: %s",
              (long long)k, e.msg);
  }
  cr_assert_gt(k, 3);  // the rows, zlib's state (several blocks), the file
  size_t n;
  char *data = read_all(path, &n);
  Png p;
  cr_assert_eq(png_decode((uint8_t *)data, n, &p), 0, "%s", p.error);
  expect_same(&p, &img);
  free(p.px);
  free(data);
}

// ---- grids ------------------------------------------------------------------
static uint8_t shade(double v) {
  if (!(v >= 0))
    v = 0;
  if (v > 1)
    v = 1;
  return (uint8_t)(v * 255 + 0.5);
}

Test(grid, gray_layout_clamping_and_gutters) {
  enum { N = 10, H = 3, W = 2, COLS = 4, G = 2 };
  float x[N * H * W];
  for (int i = 0; i < N * H * W; i++)
    x[i] = (float)(i % 17) / 12.0f - 0.2f;  // below 0 and above 1 too
  x[5] = NAN;
  NnrtImage img;
  NnrtErr e;
  cr_assert_eq(nnrt_image_grid(&img, x, N, 1, H, W, COLS, G, &e), 0, "%s",
               e.msg);
  cr_assert_eq(img.channels, 1);
  cr_assert_eq(img.width, COLS * (W + G) + G);
  cr_assert_eq(img.height, 3 * (H + G) + G);
  int inside = 0;
  for (int64_t y = 0; y < img.height; y++)
    for (int64_t xx = 0; xx < img.width; xx++) {
      int64_t cx = (xx - G) / (W + G), cy = (y - G) / (H + G);
      int64_t ox = (xx - G) % (W + G), oy = (y - G) % (H + G);
      int64_t i = cy * COLS + cx;
      uint8_t want = 128;
      if (xx >= G && y >= G && ox < W && oy < H && i < N) {
        want = shade(x[i * H * W + oy * W + ox]);
        inside++;
      }
      cr_assert_eq(img.pixels[y * img.width + xx], want, "(%lld, %lld)",
                   (long long)xx, (long long)y);
    }
  cr_assert_eq(inside, N * H * W);
  cr_assert_eq(img.pixels[G * img.width + G + 1], 0);  // x[1] < 0
  nnrt_free(img.pixels);
  // Fewer images than columns: the picture is only as wide as they are.
  cr_assert_eq(nnrt_image_grid(&img, x, 3, 1, H, W, 8, G, &e), 0);
  cr_assert_eq(img.width, 3 * (W + G) + G);
  cr_assert_eq(img.height, H + 2 * G);
  nnrt_free(img.pixels);
  cr_assert_eq(nnrt_image_grid(&img, x, 0, 1, H, W, 8, G, &e), -1);
  cr_assert_null(img.pixels);
}

// Three channels (planes first, as tensors hold them) make RGB pixels; two
// are averaged into gray.
Test(grid, color_and_averaged_channels) {
  enum { H = 2, W = 3, P = H * W };
  float x[2 * 3 * P];
  for (int i = 0; i < 2 * 3 * P; i++)
    x[i] = (float)i / (2 * 3 * P);
  NnrtImage img;
  NnrtErr e;
  cr_assert_eq(nnrt_image_grid(&img, x, 2, 3, H, W, 8, 1, &e), 0, "%s",
               e.msg);
  cr_assert_eq(img.channels, 3);
  cr_assert_eq(img.width, 2 * (W + 1) + 1);
  for (int n = 0; n < 2; n++)
    for (int r = 0; r < H; r++)
      for (int c = 0; c < W; c++)
        for (int k = 0; k < 3; k++)
          cr_assert_eq(img.pixels[((1 + r) * img.width + 1 + n * (W + 1) + c) *
                                      3 + k],
                       shade(x[n * 3 * P + k * P + r * W + c]));
  cr_assert_eq(img.pixels[0], 128);
  // And it survives the PNG round trip.
  Png p = encode_decode(&img, -1, NULL);
  expect_same(&p, &img);
  cr_assert_eq(png_at(&p, 1, 1, 2), shade(x[2 * P]));
  free(p.px);
  nnrt_free(img.pixels);
  cr_assert_eq(nnrt_image_grid(&img, x, 3, 2, H, W, 8, 1, &e), 0);
  cr_assert_eq(img.channels, 1);
  cr_assert_eq(img.pixels[1 * img.width + 1],
               shade(((double)x[0] + x[P]) / 2));
  nnrt_free(img.pixels);
}
