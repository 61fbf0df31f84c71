// nnrt_data_test.c — data loading: IDX (gzip and raw, the real
// Fashion-MNIST files, every malformed case), CSV, inline data, the class
// filter, the --limit cut, the path search and batch gathering.
#include <math.h>

#include "nnrt_test.h"

static NnrtDataSpec idx_spec(const char *x, const char *y, double scale) {
  return data_spec(NNRT_DATA_IDX, x, y, scale);
}

static NnrtDataSpec csv_spec(const char *x, double scale) {
  return data_spec(NNRT_DATA_CSV, x, NULL, scale);
}

// 5 images of 2x2 pixels (pixel value = 10*i + j) and labels 0..4.
static void write_small_idx(const char *dir, int gz, int nimg, int nlab,
                            const uint8_t *labels) {
  uint8_t pix[4 * 16], buf[256];
  for (int i = 0; i < nimg; i++)
    for (int j = 0; j < 4; j++)
      pix[4 * i + j] = (uint8_t)(10 * i + j);
  uint32_t di[3] = {(uint32_t)nimg, 2, 2}, dl[1] = {(uint32_t)nlab};
  size_t n = idx_build(buf, 8, 3, di, pix, 4 * (size_t)nimg);
  (gz ? write_gz : write_file)(in_dir(dir, "img"), buf, n);
  n = idx_build(buf, 8, 1, dl, labels, (size_t)nlab);
  (gz ? write_gz : write_file)(in_dir(dir, "lab"), buf, n);
}

static int open_idx(const char *dir, NnrtData *d, NnrtErr *err, int64_t out) {
  NnrtModel m = data_model(4, out, dir);
  NnrtDataSpec s = idx_spec("img", "lab", 0.5);
  return nnrt_data_open(d, &s, &m, 0, err);
}

#define assert_err(e, text) \
  cr_assert(strstr((e).msg, text), "message '%s' lacks '%s'", (e).msg, text)

Test(idx, small_gzip_and_raw) {
  for (int gz = 0; gz < 2; gz++) {
    const char *dir = tmpdir();
    uint8_t lab[5] = {0, 1, 2, 3, 4};
    write_small_idx(dir, gz, 5, 5, lab);
    NnrtData d;
    NnrtErr e;
    cr_assert_eq(open_idx(dir, &d, &e, 5), 0, "%s", e.msg);
    cr_assert_eq(d.rows, 5);
    cr_assert_not_null(d.x8);  // bytes stay bytes
    expect_rows_3_1(&d);
    nnrt_data_close(&d);
  }
}

Test(idx, scalar_labels_when_one_output) {
  const char *dir = tmpdir();
  uint8_t lab[3] = {7, 0, 200};
  write_small_idx(dir, 1, 3, 3, lab);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_idx(dir, &d, &e, 1), 0, "%s", e.msg);
  float x[3 * 4], y[3];
  nnrt_data_gather(&d, NULL, 0, 3, x, y);
  cr_assert_eq(y[0], 7.0f);
  cr_assert_eq(y[2], 200.0f);
  nnrt_data_close(&d);
}

Test(idx, class_filter_relabels) {
  const char *dir = tmpdir();
  uint8_t lab[6] = {6, 1, 0, 6, 3, 0};
  write_small_idx(dir, 0, 6, 6, lab);
  NnrtModel m = data_model(4, 2, dir);
  NnrtDataSpec s = idx_spec("img", "lab", 1);
  int64_t classes[2] = {0, 6};
  s.nclasses = 2;
  s.classes = classes;
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 4);  // rows 0, 2, 3, 5
  float x[4 * 4], y[4 * 2];
  nnrt_data_gather(&d, NULL, 0, 4, x, y);
  float want_first_pixel[4] = {0, 20, 30, 50};
  float want_class[4] = {1, 0, 1, 0};  // 6 -> 1, 0 -> 0
  for (int r = 0; r < 4; r++) {
    cr_assert_eq(x[4 * r], want_first_pixel[r]);
    cr_assert_eq(y[2 * r + (int)want_class[r]], 1.0f);
  }
  nnrt_data_close(&d);
  // With one output the relabelled index is the target: binary 0/1.
  m.out_numel = 1;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  nnrt_data_gather(&d, NULL, 0, 4, x, y);
  for (int r = 0; r < 4; r++)
    cr_assert_eq(y[r], want_class[r]);
  nnrt_data_close(&d);
  // More classes than outputs is an error.
  int64_t many[3] = {0, 1, 2};
  s.nclasses = 3, s.classes = many, m.out_numel = 2;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), -1);
  assert_err(e, "lists 3 classes but the model has 2 outputs");
}

Test(idx, limit_keeps_the_first_rows) {
  const char *dir = tmpdir();
  uint8_t lab[5] = {0, 1, 2, 3, 4};
  write_small_idx(dir, 0, 5, 5, lab);
  NnrtModel m = data_model(4, 5, dir);
  NnrtDataSpec s = idx_spec("img", "lab", 1);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 2, &e), 0);
  cr_assert_eq(d.rows, 2);
  nnrt_data_close(&d);
}

static void expect_idx_error(const char *dir, const char *text, int64_t out) {
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_idx(dir, &d, &e, out), -1, "expected '%s'", text);
  assert_err(e, text);
}

Test(idx, malformed_files) {
  const char *dir = tmpdir();
  uint8_t lab[5] = {0, 1, 2, 3, 4}, buf[256], pix[64] = {0};
  write_small_idx(dir, 0, 5, 5, lab);
  const char *img = in_dir(dir, "img");
  uint32_t d3[3] = {5, 2, 2};

  size_t n = idx_build(buf, 8, 3, d3, pix, 20);
  buf[0] = 1;  // bad magic
  write_file(img, buf, n);
  expect_idx_error(dir, "img: not an IDX file (bad magic 01 00 08 03", 5);

  n = idx_build(buf, 0x0D, 3, d3, pix, 20);  // floats
  write_file(img, buf, n);
  expect_idx_error(dir, "IDX element type 0x0D (32-bit floats) is not "
                   "supported", 5);

  n = idx_build(buf, 8, 3, d3, pix, 14);  // truncated data
  write_file(img, buf, n);
  expect_idx_error(dir, "img: truncated: the header declares 20 bytes of "
                   "data, the file holds 14", 5);

  n = idx_build(buf, 8, 3, d3, pix, 23);  // trailing bytes
  write_file(img, buf, n);
  expect_idx_error(dir, "img: 3 bytes after the 20 bytes of data", 5);

  write_file(img, buf, 7);  // truncated header
  expect_idx_error(dir, "truncated IDX header", 5);

  write_file(img, buf, 0);
  expect_idx_error(dir, "img: not an IDX file (only 0 bytes)", 5);

  uint32_t d33[3] = {5, 3, 3};  // 9 values per image, the model takes 4
  n = idx_build(buf, 8, 3, d33, pix, 45);
  write_file(img, buf, n);
  expect_idx_error(dir, "img: each image has 9 values (3 x 3); the model "
                   "takes 4 inputs", 5);

  uint32_t huge[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
  n = idx_build(buf, 8, 4, huge, pix, 10);
  write_file(img, buf, n);
  expect_idx_error(dir, "declares more data than any file could hold", 5);

  uint32_t none[4] = {0, 0xffffffffu, 0xffffffffu, 0xffffffffu};
  n = idx_build(buf, 8, 4, none, pix, 0);  // zero images of absurd size
  write_file(img, buf, n);
  expect_idx_error(dir, "declares more data than any file could hold", 5);

  uint32_t many[3] = {100000000, 2, 2};  // 400 MB declared, 10 bytes there
  n = idx_build(buf, 8, 3, many, pix, 10);
  write_file(img, buf, n);
  expect_idx_error(dir, "the header declares 400000000 bytes of data, the "
                   "file holds 10", 5);
}

Test(idx, label_errors) {
  const char *dir = tmpdir();
  uint8_t lab[5] = {0, 1, 12, 3, 4};
  write_small_idx(dir, 1, 5, 5, lab);
  expect_idx_error(dir, "lab: label 12 at row 3 is out of range (the model "
                   "has 10 outputs", 10);
  write_small_idx(dir, 1, 5, 4, lab);
  expect_idx_error(dir, "img has 5 images but", 10);
  expect_idx_error(dir, "lab has 4 labels", 10);
  uint8_t buf[64];
  uint32_t d2[2] = {5, 1};
  size_t n = idx_build(buf, 8, 2, d2, lab, 5);
  write_file(in_dir(dir, "lab"), buf, n);
  expect_idx_error(dir, "lab: labels must have one dimension (the file has "
                   "2)", 10);
}

Test(idx, truncated_gzip_stream) {
  const char *dir = tmpdir();
  uint8_t lab[5] = {0, 1, 2, 3, 4};
  write_small_idx(dir, 1, 5, 5, lab);
  size_t n;
  char *gz = read_all(in_dir(dir, "img"), &n);
  write_file(in_dir(dir, "img"), gz, n - 12);  // cut the gzip trailer
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_idx(dir, &d, &e, 5), -1);
  cr_assert(strstr(e.msg, "img: "), "%s", e.msg);
  free(gz);
}

// Every truncation and many byte changes of a valid file: an error or a
// valid load, never a crash (ASan checks the reads).
Test(idx, mutations_never_crash) {
  const char *dir = tmpdir();
  uint8_t lab[5] = {0, 1, 2, 3, 4};
  write_small_idx(dir, 0, 5, 5, lab);
  size_t n;
  char *orig = read_all(in_dir(dir, "img"), &n);
  NnrtData d;
  NnrtErr e;
  for (size_t len = 0; len <= n; len++) {
    write_file(in_dir(dir, "img"), orig, len);
    int rc = open_idx(dir, &d, &e, 5);
    cr_assert_eq(rc, len == n ? 0 : -1);
    if (!rc)
      nnrt_data_close(&d);
  }
  const uint8_t values[] = {0, 1, 3, 8, 0x7f, 0x80, 0xff};
  for (size_t pos = 0; pos < 16; pos++) {
    for (size_t v = 0; v < sizeof values; v++) {
      char *mut = malloc(n);
      memcpy(mut, orig, n);
      mut[pos] = (char)values[v];
      write_file(in_dir(dir, "img"), mut, n);
      if (!open_idx(dir, &d, &e, 5))
        nnrt_data_close(&d);
      free(mut);
    }
  }
  free(orig);
}

Test(idx, fashion_mnist) {
  unsetenv("NNC_DATA");
  NnrtModel m = data_model(784, 10, NULL);
  NnrtDataSpec tr = idx_spec(FASHION "train-images-idx3-ubyte.gz",
                             FASHION "train-labels-idx1-ubyte.gz", 1 / 255.0);
  NnrtDataSpec te = idx_spec(FASHION "t10k-images-idx3-ubyte.gz",
                             FASHION "t10k-labels-idx1-ubyte.gz", 1 / 255.0);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &tr, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 60000);
  cr_assert_str_eq(d.path, "/usr/share/datasets/" FASHION
                   "train-images-idx3-ubyte.gz");
  cr_assert_eq(d.y[0], 9.0f);  // the first training label is 9 (ankle boot)
  float x[784], y[10];
  nnrt_data_gather(&d, NULL, 0, 1, x, y);
  cr_assert_eq(y[9], 1.0f);
  for (int j = 0; j < 784; j++)
    cr_assert(x[j] >= 0 && x[j] <= 1);
  nnrt_data_close(&d);
  cr_assert_eq(nnrt_data_open(&d, &te, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 10000);
  nnrt_data_close(&d);
  // T-shirts (0) against shirts (6): 6000 of each, relabelled 0 and 1.
  int64_t classes[2] = {0, 6};
  tr.nclasses = 2, tr.classes = classes;
  m.out_numel = 1;
  cr_assert_eq(nnrt_data_open(&d, &tr, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 12000);
  for (int64_t r = 0; r < d.rows; r++)
    cr_assert(d.y[r] == 0 || d.y[r] == 1);
  nnrt_data_close(&d);
}

Test(search, order_and_not_found) {
  const char *a = tmpdir();
  char da[64];
  strcpy(da, a);
  const char *b = tmpdir();
  write_text(in_dir(b, "f.csv"), "1\n");
  char env[200];
  snprintf(env, sizeof env, "%s::%s", da, b);
  setenv("NNC_DATA", env, 1);
  char out[512];
  NnrtErr e;
  cr_assert_eq(nnrt_data_find("f.csv", "/nonexistent", out, sizeof out, &e), 0);
  cr_assert_str_eq(out, in_dir(b, "f.csv"));
  write_text(in_dir(da, "f.csv"), "1\n");  // earlier in NNC_DATA wins
  cr_assert_eq(nnrt_data_find("f.csv", NULL, out, sizeof out, &e), 0);
  cr_assert_str_eq(out, in_dir(da, "f.csv"));
  cr_assert_eq(nnrt_data_find("g.csv", "/src", out, sizeof out, &e), -1);
  char want[400];
  snprintf(want, sizeof want, "g.csv: data file not found (looked in %s, %s, "
           "/src, /usr/share/datasets)", da, b);
  cr_assert_str_eq(e.msg, want);
  unsetenv("NNC_DATA");
  cr_assert_eq(nnrt_data_find("g.csv", NULL, out, sizeof out, &e), -1);
  assert_err(e, "(looked in /usr/share/datasets; set NNC_DATA");
  cr_assert_eq(nnrt_data_find("/abs/x", NULL, out, sizeof out, &e), 0);
  cr_assert_str_eq(out, "/abs/x");
}

static int open_csv(const char *dir, const char *text, int64_t in,
                    int64_t out, NnrtData *d, NnrtErr *e) {
  write_text(in_dir(dir, "d.csv"), text);
  NnrtModel m = data_model(in, out, dir);
  NnrtDataSpec s = csv_spec("d.csv", 2);
  return nnrt_data_open(d, &s, &m, 0, e);
}

Test(csv, header_class_index_and_scale) {
  const char *dir = tmpdir();
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_csv(dir, "a, b ,label\r\n1,2,0\r\n\r\n  3 ,\t4, 2\n"
                        "-1.5e0,0.25,1", 2, 3, &d, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 3);
  float x[6], y[9];
  nnrt_data_gather(&d, NULL, 0, 3, x, y);
  float wx[6] = {2, 4, 6, 8, -3, 0.5f};
  float wy[9] = {1, 0, 0, 0, 0, 1, 0, 1, 0};
  for (int i = 0; i < 6; i++)
    cr_assert_float_eq(x[i], wx[i], 1e-6);
  for (int i = 0; i < 9; i++)
    cr_assert_eq(y[i], wy[i]);
  nnrt_data_close(&d);
}

Test(csv, direct_targets_and_gzip) {
  const char *dir = tmpdir();
  const char *text = "1,2,0.5,0.25\n3,4,1,-1\n";
  write_gz(in_dir(dir, "d.csv"), text, strlen(text));
  NnrtModel m = data_model(2, 2, dir);
  NnrtDataSpec s = csv_spec("d.csv", 1);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  float x[4], y[4];
  nnrt_data_gather(&d, NULL, 0, 2, x, y);
  cr_assert_eq(y[0], 0.5f);
  cr_assert_eq(y[3], -1.0f);
  nnrt_data_close(&d);
}

static void expect_csv_error(const char *text, int64_t in, int64_t out,
                             const char *msg) {
  const char *dir = tmpdir();
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_csv(dir, text, in, out, &d, &e), -1, "expected %s", msg);
  assert_err(e, msg);
}

Test(csv, errors_name_line_and_column) {
  expect_csv_error("x,y,l\n1,2,0\n1,abc,1\n", 2, 3,
                   "d.csv:3: column 2: 'abc' is not a number");
  expect_csv_error("1,2,0\n1,2,1\n1,2\n", 2, 3,
                   "d.csv:3: expected 3 columns (as on line 1), found 2");
  expect_csv_error("h\n\n1,2,0\n1,,1\n", 2, 3, "d.csv:4: column 2 is empty");
  expect_csv_error("1,2,0\n1,2,3\n", 2, 3,
                   "d.csv:2: label 3 is out of range (the model has 3 "
                   "outputs");
  expect_csv_error("1,2,0.5\n", 2, 3, "d.csv:1: label 0.5 is not a whole");
  expect_csv_error("1,2,0,1\n", 2, 3,
                   "d.csv:1: 2 columns after the 2 inputs; the model has 3 "
                   "outputs, so expected 3 label columns or one class index");
  expect_csv_error("1\n", 2, 3, "d.csv:1: 1 columns; the model takes 2 inputs");
  expect_csv_error("1,2,3\n1,2,1e39\n", 2, 1,
                   "d.csv:2: column 3: '1e39' is not a number");
  expect_csv_error("1,2,3\n1,2,nan\n", 2, 1,
                   "d.csv:2: column 3: 'nan' is not a number");
  // A bad first line is taken for a header; the data still has to agree.
  expect_csv_error("1,x,0\n1,2\n", 2, 3, "d.csv:2: no label columns after "
                   "the 2 inputs (the model has 3 outputs)");
}

Test(csv, class_filter) {
  const char *dir = tmpdir();
  write_text(in_dir(dir, "d.csv"), "1,5\n2,0\n3,2\n4,7\n5,2\n");
  NnrtModel m = data_model(1, 2, dir);
  NnrtDataSpec s = csv_spec("d.csv", 1);
  int64_t classes[2] = {2, 0};
  s.nclasses = 2, s.classes = classes;
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 3);
  float x[3], y[6];
  nnrt_data_gather(&d, NULL, 0, 3, x, y);
  cr_assert_eq(x[0], 2);
  cr_assert_eq(y[1], 1);  // 0 is the second listed class
  cr_assert_eq(x[1], 3);
  cr_assert_eq(y[2], 1);  // 2 is the first
  nnrt_data_close(&d);
}

Test(csv, predict_input_ignores_labels) {
  const char *dir = tmpdir();
  write_text(in_dir(dir, "in.csv"), "a,b\n1,2\n3,4\n");
  NnrtModel m = data_model(2, 3, dir);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open_input(&d, in_dir(dir, "in.csv"), &m, 0.5, &e),
               0, "%s", e.msg);
  cr_assert_eq(d.rows, 2);
  float x[4];
  nnrt_data_gather(&d, NULL, 0, 2, x, NULL);
  cr_assert_eq(x[3], 2.0f);
  nnrt_data_close(&d);
  cr_assert_eq(nnrt_data_open_input(&d, in_dir(dir, "nope.csv"), &m, 1, &e),
               -1);
  assert_err(e, "nope.csv: cannot open");
}

Test(inline_data, rows_and_rules) {
  float x[6] = {1, 2, 3, 4, 5, 6}, y[3] = {2, 0, 1};
  NnrtModel m = data_model(2, 3, NULL);
  NnrtDataSpec s;
  memset(&s, 0, sizeof s);
  s.kind = NNRT_DATA_INLINE;
  s.nrows = 3, s.xcols = 2, s.ycols = 1, s.x = x, s.y = y, s.scale = 1;
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  float gx[6], gy[9];
  nnrt_data_gather(&d, NULL, 0, 3, gx, gy);
  cr_assert_eq(gx[5], 6);
  cr_assert_eq(gy[2], 1);
  cr_assert_eq(gy[3], 1);
  nnrt_data_close(&d);
  y[1] = 3;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), -1);
  assert_err(e, "inline data: label 3 at row 2 is out of range");
  s.xcols = 3;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), -1);
  assert_err(e, "inline data: rows have 3 inputs; the model takes 2");
}

Test(csv, large_file_grows_the_buffer) {
  const char *dir = tmpdir();
  size_t cap = 1 << 20, n = 0;
  char *text = malloc(cap);
  n += (size_t)snprintf(text, cap, "x1,x2,x3,y\n");
  for (int r = 0; r < 20000; r++)
    n += (size_t)snprintf(text + n, cap - n, "%d.5, %d, -%d ,%d\n", r, r % 7,
                          r % 3, r % 4);
  write_text(in_dir(dir, "big.csv"), text);
  free(text);
  NnrtModel m = data_model(3, 4, dir);
  NnrtDataSpec s = csv_spec("big.csv", 1);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 20000);
  float x[3], y[4];
  nnrt_data_gather(&d, NULL, 19999, 1, x, y);
  cr_assert_eq(x[0], 19999.5f);
  cr_assert_eq(x[2], -(float)(19999 % 3));
  cr_assert_eq(y[19999 % 4], 1.0f);
  nnrt_data_close(&d);
}
