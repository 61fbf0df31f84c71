// nnrt_npy_test.c — NPY data (npy.c): every supported dtype as inputs and
// labels, format versions 1.0/2.0/3.0, gzip, the label rule (class indices,
// value rows, class filter), predict input, and every malformed header we
// could think of, plus truncations and byte mutations that must end in an
// error naming the file, never a crash. The files are written by the test.
#include <math.h>

#include "nnrt_test.h"

// The usual dict for a dtype and a shape such as "(5, 2, 2)".
static const char *dict_of(const char *descr, const char *shape) {
  static char buf[4][256];
  static int next;
  char *b = buf[next++ % 4];
  snprintf(b, 256, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
           descr, shape);
  return b;
}

static void write_npy(const char *path, int major, const char *dict,
                      const void *data, size_t ndata) {
  uint8_t *buf = malloc(ndata + 1024);
  size_t n = npy_build(buf, major, dict, data, ndata);
  write_file(path, buf, n);
  free(buf);
}

static NnrtDataSpec npy_spec(const char *x, const char *y, double scale) {
  return data_spec(NNRT_DATA_NPY, x, y, scale);
}

#define assert_err(e, text) \
  cr_assert(strstr((e).msg, text), "message '%s' lacks '%s'", (e).msg, text)

// Inputs x.npy (5 examples of 2x2, value 10*i + j) and labels y.npy (0..4).
static void write_pair(const char *dir, const char *xdescr, int major) {
  uint8_t u1[20];
  float f4[20];
  double f8[20];
  int32_t i4[20];
  int64_t i8[20];
  for (int k = 0; k < 20; k++)
    u1[k] = (uint8_t)(10 * (k / 4) + k % 4), f4[k] = u1[k], f8[k] = u1[k],
    i4[k] = u1[k], i8[k] = u1[k];
  const void *data = !strcmp(xdescr, "|u1")   ? (const void *)u1
                     : !strcmp(xdescr, "<f4") ? (const void *)f4
                     : !strcmp(xdescr, "<f8") ? (const void *)f8
                     : !strcmp(xdescr, "<i4") ? (const void *)i4
                                              : (const void *)i8;
  size_t size = xdescr[2] == '1' ? 1 : xdescr[2] == '4' ? 4 : 8;
  write_npy(in_dir(dir, "x.npy"), major, dict_of(xdescr, "(5, 2, 2)"), data,
            20 * size);
  uint8_t lab[5] = {0, 1, 2, 3, 4};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("|u1", "(5,)"), lab, 5);
}

static int open_npy(const char *dir, NnrtData *d, NnrtErr *err, int64_t in,
                    int64_t out) {
  NnrtModel m = data_model(in, out, dir);
  NnrtDataSpec s = npy_spec("x.npy", "y.npy", 0.5);
  return nnrt_data_open(d, &s, &m, 0, err);
}

static void expect_error(const char *dir, const char *text, int64_t in,
                         int64_t out) {
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_npy(dir, &d, &e, in, out), -1, "expected '%s'", text);
  assert_err(e, text);
}

Test(npy, every_dtype_and_version) {
  const char *descrs[] = {"|u1", "<f4", "<f8", "<i4", "<i8"};
  for (int k = 0; k < 5; k++) {
    for (int major = 1; major <= 3; major++) {
      const char *dir = tmpdir();
      write_pair(dir, descrs[k], major);
      NnrtData d;
      NnrtErr e;
      cr_assert_eq(open_npy(dir, &d, &e, 4, 5), 0, "%s v%d: %s", descrs[k],
                   major, e.msg);
      cr_assert_eq(d.rows, 5);
      cr_assert_eq(d.x8 != NULL, k == 0, "bytes stay bytes, nothing else");
      expect_rows_3_1(&d);
      nnrt_data_close(&d);
    }
  }
}

Test(npy, gzip_and_header_variants) {
  const char *dir = tmpdir();
  write_pair(dir, "<f4", 1);
  size_t n;
  char *raw = read_all(in_dir(dir, "x.npy"), &n);
  write_gz(in_dir(dir, "x.npy"), raw, n);  // same name, compressed
  free(raw);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(open_npy(dir, &d, &e, 4, 5), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 5);
  nnrt_data_close(&d);
  // Double quotes, another key order, Python 2 longs, no trailing commas,
  // "(5)" for a one-tuple, a header without the final newline padding.
  float f4[20] = {0};
  const char *dicts[] = {
      "{\"shape\": (5L, 2L, 2L), \"descr\": \"<f4\", \"fortran_order\": "
      "False}",
      "{'descr':'<f4','fortran_order':False,'shape':(5,4)}",
      "  {  'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 5 , 4 , "
      ") , }  ",
  };
  for (int k = 0; k < 3; k++) {
    write_npy(in_dir(dir, "x.npy"), 1, dicts[k], f4, sizeof f4);
    cr_assert_eq(open_npy(dir, &d, &e, 4, 5), 0, "%s: %s", dicts[k], e.msg);
    cr_assert_eq(d.rows, 5);
    nnrt_data_close(&d);
  }
  float one[5] = {1, 2, 3, 4, 5};
  write_npy(in_dir(dir, "x.npy"), 1, dict_of("<f4", "(5)"), one, sizeof one);
  cr_assert_eq(open_npy(dir, &d, &e, 1, 5), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 5);  // 1-D inputs: one value per example
  nnrt_data_close(&d);
}

Test(npy, labels_rule) {
  const char *dir = tmpdir();
  write_pair(dir, "|u1", 1);
  NnrtData d;
  NnrtErr e;
  // Class indices as i8, i4 and whole floats.
  int64_t i8[5] = {4, 3, 2, 1, 0};
  int32_t i4[5] = {4, 3, 2, 1, 0};
  double f8[5] = {4, 3, 2, 1, 0};
  const struct { const char *descr; const void *data; size_t n; } ls[] = {
      {"<i8", i8, sizeof i8}, {"<i4", i4, sizeof i4}, {"<f8", f8, sizeof f8}};
  for (int k = 0; k < 3; k++) {
    write_npy(in_dir(dir, "y.npy"), 1, dict_of(ls[k].descr, "(5,)"),
              ls[k].data, ls[k].n);
    cr_assert_eq(open_npy(dir, &d, &e, 4, 5), 0, "%s", e.msg);
    cr_assert(d.onehot);
    cr_assert_eq(d.y[0], 4.0f);
    nnrt_data_close(&d);
  }
  // [n, 1] with several outputs is a class index too.
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<i8", "(5, 1)"), i8, sizeof i8);
  cr_assert_eq(open_npy(dir, &d, &e, 4, 5), 0, "%s", e.msg);
  cr_assert(d.onehot);
  nnrt_data_close(&d);
  // [n, out_numel] values are used as they are.
  float v[5 * 3];
  for (int k = 0; k < 15; k++)
    v[k] = 0.25f * (float)k - 1;
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f4", "(5, 3)"), v, sizeof v);
  cr_assert_eq(open_npy(dir, &d, &e, 4, 3), 0, "%s", e.msg);
  cr_assert_eq(d.ycols, 3);
  cr_assert(!d.onehot);
  float x[4], y[3];
  nnrt_data_gather(&d, NULL, 4, 1, x, y);
  cr_assert_eq(y[0], v[12]);
  cr_assert_eq(y[2], v[14]);
  nnrt_data_close(&d);
  // One output: the value is the target, not an index.
  double t[5] = {0.5, -2, 7.25, 0, 1};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f8", "(5,)"), t, sizeof t);
  cr_assert_eq(open_npy(dir, &d, &e, 4, 1), 0, "%s", e.msg);
  cr_assert_eq(d.y[2], 7.25f);
  nnrt_data_close(&d);
  // Errors.
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f4", "(5, 3)"), v, sizeof v);
  expect_error(dir, "y.npy: each example has 3 label values (shape (5, 3)); "
               "the model has 10 outputs, so give 10 values or one class "
               "index per example", 4, 10);
  expect_error(dir, "the model has 1 output, so give 1 value per example", 4,
               1);
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<i8", "(4,)"), i8, 32);
  expect_error(dir, "x.npy has 5 examples but ", 4, 5);
  expect_error(dir, "y.npy has 4 labels", 4, 5);
  int64_t big[5] = {0, 1, 12, 3, 4};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<i8", "(5,)"), big, sizeof big);
  expect_error(dir, "y.npy: label 12 at row 3 is out of range (the model has "
               "10 outputs", 4, 10);
  double half[5] = {0, 2.5, 0, 0, 0};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f8", "(5,)"), half,
            sizeof half);
  expect_error(dir, "y.npy: label 2.5 at row 2 is not a whole number", 4, 10);
  double nan_[5] = {0, 1, NAN, 0, 0};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f8", "(5,)"), nan_,
            sizeof nan_);
  expect_error(dir, "y.npy: row 3 is not a finite number", 4, 1);
  v[7] = INFINITY;
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f4", "(5, 3)"), v, sizeof v);
  expect_error(dir, "y.npy: row 3, value 2 is not a finite number", 4, 3);
  double huge[5] = {0, 1e300, 0, 0, 0};  // finite double, not a float
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f8", "(5,)"), huge,
            sizeof huge);
  expect_error(dir, "y.npy: row 2 is not a finite number", 4, 1);
}

Test(npy, class_filter_and_limit) {
  const char *dir = tmpdir();
  write_pair(dir, "<f4", 1);
  uint8_t lab[5] = {6, 1, 0, 6, 3};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("|u1", "(5,)"), lab, 5);
  NnrtModel m = data_model(4, 2, dir);
  NnrtDataSpec s = npy_spec("x.npy", "y.npy", 1);
  int64_t classes[2] = {0, 6};
  s.nclasses = 2, s.classes = classes;
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 3);  // rows 0, 2, 3
  float x[3 * 4], y[3 * 2];
  nnrt_data_gather(&d, NULL, 0, 3, x, y);
  float first[3] = {0, 20, 30}, cls[3] = {1, 0, 1};
  for (int r = 0; r < 3; r++) {
    cr_assert_eq(x[4 * r], first[r]);
    cr_assert_eq(x[4 * r + 3], first[r] + 3);
    cr_assert_eq(y[2 * r + (int)cls[r]], 1.0f);
  }
  nnrt_data_close(&d);
  // Bytes are compacted the same way.
  write_pair(dir, "|u1", 1);
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("|u1", "(5,)"), lab, 5);
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 2, &e), 0, "%s", e.msg);
  cr_assert_eq(d.rows, 2);  // --limit 2 after the filter
  cr_assert_eq(d.x8[4], 20);
  nnrt_data_close(&d);
  float v[10] = {0};
  write_npy(in_dir(dir, "y.npy"), 1, dict_of("<f4", "(5, 2)"), v, sizeof v);
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), -1);
  assert_err(e, "y.npy: a class filter needs one label per example (found "
             "2)");
}

Test(npy, input_errors) {
  const char *dir = tmpdir();
  write_pair(dir, "<f4", 1);
  expect_error(dir, "x.npy: each example has 4 values (shape (5, 2, 2)); the "
               "model takes 9 inputs", 9, 5);
  float f4[20] = {0};
  f4[6] = NAN;
  write_npy(in_dir(dir, "x.npy"), 1, dict_of("<f4", "(5, 2, 2)"), f4,
            sizeof f4);
  expect_error(dir, "x.npy: row 2, value 3 is not a finite number", 4, 5);
  double f8[20] = {0};
  f8[19] = 1e39;  // overflows a float
  write_npy(in_dir(dir, "x.npy"), 1, dict_of("<f8", "(5, 4)"), f8,
            sizeof f8);
  expect_error(dir, "x.npy: row 5, value 4 is not a finite number", 4, 5);
  write_npy(in_dir(dir, "x.npy"), 1, dict_of("<f4", "(5,)"), f4, 20);
  expect_error(dir, "x.npy: each example has 1 value (shape (5,)); the model "
               "takes 4 inputs", 4, 5);
}

// Writes x.npy from a dict (and enough data for "(5, 2, 2)" floats).
static void expect_header_error(const char *dir, int major, const char *dict,
                                const char *text) {
  float f4[20] = {0};
  write_npy(in_dir(dir, "x.npy"), major, dict, f4, sizeof f4);
  expect_error(dir, text, 4, 5);
}

Test(npy, malformed_headers) {
  const char *dir = tmpdir();
  write_pair(dir, "<f4", 1);
  const char *x = in_dir(dir, "x.npy");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': True, "
                      "'shape': (5, 2, 2), }",
                      "x.npy: the array is stored in Fortran order "
                      "(fortran_order: True); save it in C order");
  expect_header_error(dir, 1, dict_of(">f4", "(5, 2, 2)"),
                      "x.npy: dtype '>f4' is not supported (use <f4, <f8, "
                      "|u1, <i4 or <i8; this one is big-endian)");
  expect_header_error(dir, 1, dict_of("<f2", "(5, 2, 2)"),
                      "x.npy: dtype '<f2' is not supported");
  expect_header_error(dir, 1, dict_of("<U3", "(5, 2, 2)"),
                      "dtype '<U3' is not supported");
  expect_header_error(dir, 1, "{'descr': [('a', '<f4')], 'fortran_order': "
                      "False, 'shape': (5, 2, 2), }",
                      "x.npy: the array has a structured dtype");
  expect_header_error(dir, 1, "{'descr': '<f4', 'shape': (5, 2, 2), }",
                      "x.npy: the NPY header has no 'fortran_order'");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (5, 2, 2), 'extra': 1}",
                      "x.npy: malformed NPY header at byte 71: unexpected "
                      "key 'extra'");
  expect_header_error(dir, 1, "{'descr': '<f4', 'descr': '<f4', "
                      "'fortran_order': False, 'shape': (5, 2, 2)}",
                      "key 'descr' appears twice");
  expect_header_error(dir, 1, "{'descr' '<f4'}",
                      "x.npy: malformed NPY header at byte 19: expected ':'");
  expect_header_error(dir, 1, "{'descr': '<f4, 'fortran_order': False}",
                      "expected ',' or '}'");
  expect_header_error(dir, 1, "{'descr': '<f4", "unterminated string");
  expect_header_error(dir, 1, "{'descr': '<\\x66'}",
                      "escapes in strings are not supported");
  expect_header_error(dir, 1, "['descr', '<f4']", "at byte 10: expected '{'");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': false}",
                      "expected True or False");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': [5, 4]}", "expected a tuple");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (5, -4)}", "expected a dimension");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (5 4)}", "expected ',' or ')'");
  expect_header_error(dir, 1, "{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (5, 4)} x", "unexpected text after the dict");
  expect_header_error(dir, 1, dict_of("<f4", "()"),
                      "x.npy: the array is a scalar (shape ()); its first "
                      "axis must count the examples");
  expect_header_error(dir, 1, dict_of("<f4", "(99999999999999999999, 4)"),
                      "dimension too large");
  expect_header_error(dir, 1, dict_of("<f4", "(4294967296, 4294967296)"),
                      "x.npy: NPY header declares more data than any file "
                      "could hold");
  expect_header_error(dir, 1, dict_of("<f4", "(0, 4294967296, 4294967296)"),
                      "declares more data than any file could hold");
  expect_header_error(dir, 1, dict_of("<f4", "(100000000, 4)"),
                      "x.npy: truncated: the header declares 1600000000 bytes "
                      "of data, the file holds 80");
  expect_header_error(dir, 1, dict_of("<f4", "(4, 4)"),
                      "x.npy: 16 bytes after the 64 bytes of data the header "
                      "declares");
  char dims[512] = "(5";
  for (int i = 0; i < 70; i++)
    strcat(dims, ", 1");
  strcat(dims, ")");
  expect_header_error(dir, 1, dict_of("<f4", dims), "more than 64 dimensions");

  uint8_t buf[1024];
  float f4[20] = {0};
  size_t n = npy_build(buf, 1, dict_of("<f4", "(5, 2, 2)"), f4, sizeof f4);
  buf[0] = 0x92;
  write_file(x, buf, n);
  expect_error(dir, "x.npy: not an NPY file (it does not start with "
               "\\x93NUMPY)", 4, 5);
  buf[0] = 0x93, buf[6] = 4;
  write_file(x, buf, n);
  expect_error(dir, "x.npy: NPY format version 4.0 is not supported (1.0, "
               "2.0 and 3.0 are)", 4, 5);
  buf[6] = 1, buf[7] = 1;
  write_file(x, buf, n);
  expect_error(dir, "NPY format version 1.1 is not supported", 4, 5);
  buf[7] = 0;
  buf[8] = 0xff, buf[9] = 0xff;  // header longer than the file
  write_file(x, buf, n);
  expect_error(dir, "x.npy: truncated NPY header (65535 bytes declared, ", 4,
               5);
  n = npy_build(buf, 2, dict_of("<f4", "(5, 2, 2)"), f4, sizeof f4);
  buf[10] = 0x10;  // 1 MB header in a 2.0 file
  write_file(x, buf, n);
  expect_error(dir, "x.npy: NPY header of 1048692 bytes is too long (the most "
               "is 65536)", 4, 5);
  write_file(x, buf, 9);
  expect_error(dir, "x.npy: truncated NPY header (no header length)", 4, 5);
  write_file(x, buf, 0);
  expect_error(dir, "x.npy: not an NPY file", 4, 5);
}

// Every truncation and many byte changes of a valid file: an error or a
// valid load, never a crash (ASan checks the reads).
Test(npy, mutations_never_crash) {
  const char *dir = tmpdir();
  write_pair(dir, "<f8", 3);
  size_t n;
  char *orig = read_all(in_dir(dir, "x.npy"), &n);
  NnrtData d;
  NnrtErr e;
  for (size_t len = 0; len <= n; len++) {
    write_file(in_dir(dir, "x.npy"), orig, len);
    int rc = open_npy(dir, &d, &e, 4, 5);
    cr_assert_eq(rc, len == n ? 0 : -1, "length %zu of %zu", len, n);
    if (rc)
      cr_assert(strstr(e.msg, "x.npy"), "%s", e.msg);
    else
      nnrt_data_close(&d);
  }
  const uint8_t values[] = {0,   1,   '\'', '"', '(', ')', ',', ':', '{',
                            '}', '9', 'L',  ' ', '\\', 0x7f, 0x80, 0xff};
  for (size_t pos = 0; pos < 128 && pos < n; pos++) {
    for (size_t v = 0; v < sizeof values; v++) {
      char *mut = malloc(n);
      memcpy(mut, orig, n);
      mut[pos] = (char)values[v];
      write_file(in_dir(dir, "x.npy"), mut, n);
      if (!open_npy(dir, &d, &e, 4, 5))
        nnrt_data_close(&d);
      else
        cr_assert(strstr(e.msg, "x.npy"), "%s", e.msg);
      free(mut);
    }
  }
  write_file(in_dir(dir, "x.npy"), orig, n);
  free(orig);
  // The labels file likewise.
  orig = read_all(in_dir(dir, "y.npy"), &n);
  for (size_t len = 0; len < n; len++) {
    write_file(in_dir(dir, "y.npy"), orig, len);
    cr_assert_eq(open_npy(dir, &d, &e, 4, 5), -1);
    cr_assert(strstr(e.msg, "y.npy"), "%s", e.msg);
  }
  free(orig);
}

Test(npy, predict_input_and_search) {
  const char *dir = tmpdir();
  write_pair(dir, "<i4", 1);
  NnrtModel m = data_model(4, 5, dir);
  NnrtData d;
  NnrtErr e;
  cr_assert_eq(nnrt_data_open_input(&d, in_dir(dir, "x.npy"), &m, 2, &e), 0,
               "%s", e.msg);
  cr_assert_eq(d.rows, 5);
  float x[4];
  nnrt_data_gather(&d, NULL, 2, 1, x, NULL);
  cr_assert_eq(x[1], 42.0f);  // (20 + 1) * scale 2
  nnrt_data_close(&d);
  m.in_numel = 3;
  cr_assert_eq(nnrt_data_open_input(&d, in_dir(dir, "x.npy"), &m, 1, &e), -1);
  assert_err(e, "x.npy: each example has 4 values");
  // A relative spec path is searched like IDX and CSV paths.
  unsetenv("NNC_DATA");
  m.in_numel = 4;
  NnrtDataSpec s = npy_spec("x.npy", "nope.npy", 1);
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), -1);
  assert_err(e, "nope.npy: data file not found");
  s.path_y = "y.npy";
  cr_assert_eq(nnrt_data_open(&d, &s, &m, 0, &e), 0, "%s", e.msg);
  cr_assert(strstr(d.path, "/x.npy"));
  nnrt_data_close(&d);
}
