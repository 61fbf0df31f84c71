// nnrt_checkpoint_test.c — safetensors: the exact layout written, the round
// trip, the atomic write, every load error, and hostile files (every
// truncation and many byte changes) which must fail cleanly, never crash.
#include <math.h>
#include <sys/stat.h>

#include "nnrt_test.h"

static NnrtParamInfo info(const char *name, int64_t rank, int64_t d0,
                          int64_t d1, int64_t offset) {
  NnrtParamInfo p;
  memset(&p, 0, sizeof p);
  p.name = name;
  p.rank = rank;
  p.dim[0] = d0, p.dim[1] = d1;
  p.numel = rank == 2 ? d0 * d1 : d0;
  p.offset = offset;
  return p;
}

// dense_1.W [3, 4] and dense_1.b [4]: 16 floats.
static NnrtParamInfo two[2];
static NnrtModel small_model(void) {
  two[0] = info("dense_1.W", 2, 3, 4, 0);
  two[1] = info("dense_1.b", 1, 4, 0, 12);
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "mlp";
  m.nparams = 2, m.params = two, m.param_numel = 16;
  return m;
}

static void go_to_tmp(void) { cr_assert_eq(chdir(tmpdir()), 0); }

Test(checkpoint, layout_and_round_trip) {
  go_to_tmp();
  NnrtModel m = small_model();
  float w[16], back[16] = {0};
  for (int i = 0; i < 16; i++)
    w[i] = (float)i * 0.5f - 3;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_save("w.safetensors", &m, w, 3, &e), 0, "%s",
               e.msg);
  cr_assert_eq(access("w.safetensors.tmp", F_OK), -1);  // renamed away
  size_t n;
  char *f = read_all("w.safetensors", &n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = hl << 8 | (uint8_t)f[i];
  cr_assert_eq(hl % 8, 0);
  cr_assert_eq(n, 8 + hl + 64);
  const char *want =
      "{\"__metadata__\":{\"format\":\"pt\",\"model\":\"mlp\",\"epoch\":\"3\"},"
      "\"dense_1.W\":{\"dtype\":\"F32\",\"shape\":[3,4],"
      "\"data_offsets\":[0,48]},"
      "\"dense_1.b\":{\"dtype\":\"F32\",\"shape\":[4],"
      "\"data_offsets\":[48,64]}}";
  cr_assert_eq(strncmp(f + 8, want, strlen(want)), 0, "%.*s", (int)hl, f + 8);
  for (size_t i = 8 + strlen(want); i < 8 + hl; i++)
    cr_assert_eq(f[i], ' ');
  cr_assert_eq(memcmp(f + 8 + hl, w, 64), 0);
  free(f);
  int64_t epoch;
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, back, &epoch, &e), 0,
               "%s", e.msg);
  cr_assert_arr_eq(w, back, sizeof w);
  cr_assert_eq(epoch, 3);
  // Saving again replaces the file.
  w[0] = 99;
  cr_assert_eq(nnrt_checkpoint_save("w.safetensors", &m, w, 4, &e), 0);
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, back, &epoch, &e), 0);
  cr_assert_eq(back[0], 99);
  cr_assert_eq(epoch, 4);
}

Test(checkpoint, names_are_escaped) {
  go_to_tmp();
  NnrtParamInfo p = info("a\"b\\c\td", 1, 2, 0, 0);
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "q\"";
  m.nparams = 1, m.params = &p, m.param_numel = 2;
  float w[2] = {1, 2}, back[2];
  NnrtErr e;
  int64_t epoch;
  cr_assert_eq(nnrt_checkpoint_save("e.safetensors", &m, w, 1, &e), 0);
  cr_assert_eq(nnrt_checkpoint_load("e.safetensors", &m, back, &epoch, &e), 0,
               "%s", e.msg);
  cr_assert_arr_eq(w, back, sizeof w);
}

Test(checkpoint, write_errors) {
  NnrtModel m = small_model();
  float w[16] = {0};
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_save("/nonexistent/dir/w.safetensors", &m, w,
                                    1, &e), -1);
  cr_assert_str_eq(e.msg, "/nonexistent/dir/w.safetensors.tmp: cannot write "
                   "(No such file or directory)");
}

static void expect_load_error(const char *json, size_t data,
                              const char *msg) {
  NnrtModel m = small_model();
  write_st("w.safetensors", json, data);
  float w[16];
  int64_t epoch;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, w, &epoch, &e), -1,
               "expected: %s", msg);
  cr_assert(strstr(e.msg, msg), "message '%s' lacks '%s'", e.msg, msg);
}

#define W_OK_ "\"dense_1.W\":{\"dtype\":\"F32\",\"shape\":[3,4]," \
              "\"data_offsets\":[0,48]}"
#define B_OK_ "\"dense_1.b\":{\"dtype\":\"F32\",\"shape\":[4]," \
              "\"data_offsets\":[48,64]}"

Test(checkpoint, load_errors) {
  go_to_tmp();
  expect_load_error("{" W_OK_ "}", 64, "w.safetensors: missing tensor "
                    "'dense_1.b'");
  expect_load_error("{\"dense_1.W\":{\"dtype\":\"F32\",\"shape\":[3,5],"
                    "\"data_offsets\":[0,60]}," B_OK_ "}", 64,
                    "w.safetensors: tensor 'dense_1.W' has shape [3, 5]; the "
                    "model expects [3, 4]");
  expect_load_error("{\"dense_1.W\":{\"dtype\":\"F32\",\"shape\":[12],"
                    "\"data_offsets\":[0,48]}," B_OK_ "}", 64,
                    "tensor 'dense_1.W' has shape [12]; the model expects "
                    "[3, 4]");
  expect_load_error("{\"dense_1.W\":{\"dtype\":\"F16\",\"shape\":[3,4],"
                    "\"data_offsets\":[0,24]}," B_OK_ "}", 64,
                    "w.safetensors: tensor 'dense_1.W' has dtype F16; the "
                    "model expects F32");
  expect_load_error("{" W_OK_ ",\"dense_1.b\":{\"dtype\":\"F32\",\"shape\":"
                    "[4],\"data_offsets\":[48,80]}}", 64,
                    "tensor 'dense_1.b' has data offsets [48, 80] outside "
                    "the 64 bytes of data");
  expect_load_error("{" W_OK_ ",\"dense_1.b\":{\"dtype\":\"F32\",\"shape\":"
                    "[4],\"data_offsets\":[40,64]}}", 64,
                    "tensor 'dense_1.b' has 24 bytes of data; its shape "
                    "needs 16");
  expect_load_error("{" W_OK_ "," B_OK_ "," B_OK_ "}", 64,
                    "tensor 'dense_1.b' appears twice");
  expect_load_error("{" W_OK_ ",\"dense_1.b\":{\"dtype\":\"F32\",\"shape\":"
                    "[4]}}", 64, "tensor without \"data_offsets\"");
  expect_load_error("{" W_OK_ "," B_OK_, 64, "malformed safetensors header "
                    "at byte");
  expect_load_error("{\"a\\q\":1}", 0, "bad escape in a string");
  expect_load_error("{\"a\":{\"shape\":[-1]}}", 0, "expected a non-negative "
                    "integer");
  expect_load_error("{\"a\":{\"shape\":[99999999999999999999]}}", 0,
                    "integer too large");
  expect_load_error("[]", 0, "does not start with '{'");
  expect_load_error("{" W_OK_ "," B_OK_ "} x", 64, "text after the header");
  // Unknown keys are skipped; a tensor the model does not have is an error
  // (after the whole header was found well-formed).
  NnrtModel m = small_model();
  write_st("w.safetensors", "{\"__metadata__\":{}, " W_OK_ "," B_OK_ "}   ",
           64);
  float w[16];
  int64_t epoch;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, w, &epoch, &e), 0,
               "%s", e.msg);
  cr_assert_eq(epoch, -1);
  write_st("w.safetensors", "{\"__metadata__\":{}, \"extra\":{\"dtype\":\"I8\","
           "\"shape\":[],\"data_offsets\":[0,0],\"x\":[1,{\"y\":null},-2.5e3,"
           "true]}, " W_OK_ "," B_OK_ "}   ", 64);
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, w, &epoch, &e), -1);
  cr_assert_str_eq(e.msg, "w.safetensors: extra tensor 'extra': model 'mlp' "
                   "has no such parameter (a checkpoint of another model?)");
}

Test(checkpoint, not_safetensors) {
  go_to_tmp();
  NnrtModel m = small_model();
  float w[16];
  int64_t epoch;
  NnrtErr e;
  // A header length of 1234567890 in a 42-byte file.
  char buf[42] = {0};
  uint64_t hl = 1234567890;
  memcpy(buf, &hl, 8);
  write_file("w.safetensors", buf, 42);
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, w, &epoch, &e), -1);
  cr_assert_str_eq(e.msg, "w.safetensors: not a safetensors file (header "
                   "length 1234567890 exceeds file size 42)");
  write_file("w.safetensors", buf, 5);
  cr_assert_eq(nnrt_checkpoint_load("w.safetensors", &m, w, &epoch, &e), -1);
  cr_assert_str_eq(e.msg, "w.safetensors: not a safetensors file (only 5 "
                   "bytes)");
  cr_assert_eq(nnrt_checkpoint_load("none.safetensors", &m, w, &epoch, &e),
               -1);
  cr_assert_str_eq(e.msg, "none.safetensors: cannot open (No such file or "
                   "directory)");
}

// Every prefix and many single-byte changes of a valid file either load or
// fail with a message; ASan and UBSan check that nothing is read out of
// bounds.
Test(checkpoint, hostile_files_never_crash) {
  go_to_tmp();
  NnrtModel m = small_model();
  float w[16];
  for (int i = 0; i < 16; i++)
    w[i] = (float)i;
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_save("good.safetensors", &m, w, 2, &e), 0);
  size_t n;
  char *orig = read_all("good.safetensors", &n);
  int64_t epoch;
  float back[16];
  for (size_t len = 0; len < n; len++) {
    write_file("bad.safetensors", orig, len);
    cr_assert_eq(nnrt_checkpoint_load("bad.safetensors", &m, back, &epoch, &e),
                 -1, "prefix %zu loaded", len);
    cr_assert(strstr(e.msg, "bad.safetensors: "), "%s", e.msg);
  }
  const char subst[] = {0, '"', '{', '}', '[', ']', ',', ':', '\\', ' ', '9',
                        'u', (char)0xff, (char)0x80};
  char *mut = malloc(n);
  for (size_t pos = 0; pos < n - 64; pos++) {
    for (size_t s = 0; s < sizeof subst; s++) {
      memcpy(mut, orig, n);
      mut[pos] = subst[s];
      write_file("bad.safetensors", mut, n);
      int rc = nnrt_checkpoint_load("bad.safetensors", &m, back, &epoch, &e);
      cr_assert(rc == 0 || strstr(e.msg, "bad.safetensors: "), "%s", e.msg);
    }
  }
  free(mut);
  free(orig);
}

// Enough parameters that the header outgrows its first buffer.
Test(checkpoint, many_parameters) {
  go_to_tmp();
  enum { N = 300 };
  static NnrtParamInfo ps[N];
  static char names[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "layer_%03d.weight", i);
    ps[i] = info(names[i], 2, 2, 3, 6 * i);
  }
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "big";
  m.nparams = N, m.params = ps, m.param_numel = 6 * N;
  static float w[6 * N], back[6 * N];
  for (int i = 0; i < 6 * N; i++)
    w[i] = (float)i;
  NnrtErr e;
  int64_t epoch;
  cr_assert_eq(nnrt_checkpoint_save("big.safetensors", &m, w, 7, &e), 0);
  cr_assert_eq(nnrt_checkpoint_load("big.safetensors", &m, back, &epoch, &e),
               0, "%s", e.msg);
  cr_assert_arr_eq(w, back, sizeof w);
  cr_assert_eq(epoch, 7);
}

// A parameter kept transposed in memory ([3, 4] stored as [4, 3]) is written
// in its declared order, with its optimizer state, and read back into its
// transposed places.
Test(checkpoint, transposed_parameters_round_trip) {
  go_to_tmp();
  NnrtModel m = small_model();
  two[0].transposed = 1;
  m.nstate = 1;
  float w[16], st[16], back[16] = {0}, stback[16] = {0};
  for (int i = 0; i < 16; i++)
    w[i] = (float)i, st[i] = (float)(100 + i);
  NnrtTrainPos pos = {.epoch = 1, .step = 7, .examples = 0};
  NnrtErr e;
  cr_assert_eq(nnrt_checkpoint_write("t.safetensors", &m, w, st, &pos, &e), 0,
               "%s", e.msg);
  size_t n;
  char *f = read_all("t.safetensors", &n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--)
    hl = hl << 8 | (uint8_t)f[i];
  const float *data = (const float *)(void *)(f + 8 + hl);
  for (int r = 0; r < 3; r++)  // logical W[r][c] = stored w[c * 3 + r]
    for (int c = 0; c < 4; c++) {
      float got;
      memcpy(&got, data + r * 4 + c, sizeof got);
      cr_expect_eq(got, w[c * 3 + r], "W[%d][%d]", r, c);
      memcpy(&got, data + 16 + r * 4 + c, sizeof got);  // optimizer.0
      cr_expect_eq(got, st[c * 3 + r], "state W[%d][%d]", r, c);
    }
  free(f);
  NnrtTrainPos got;
  NnrtStateLoad status;
  cr_assert_eq(nnrt_checkpoint_read("t.safetensors", &m, back, stback, &got,
                                    &status, &e),
               0, "%s", e.msg);
  cr_expect_eq(status, NNRT_STATE_RESTORED);
  cr_assert_arr_eq(w, back, sizeof w);
  cr_assert_arr_eq(st, stback, sizeof st);
  two[0].transposed = 0;
}
