// fuzz_npy.c — libFuzzer target over the runtime's NPY reader: the input is
// split into an inputs file and a labels file (fuzz_util.h), each raw or
// gzip-compressed by the mode byte, and loaded as training data (with or
// without a class filter) or the first as predict input.
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzIn in = fuzz_split(data, size);
  const char *px = fuzz_path("x.npy"), *py = fuzz_path("y.npy");
  fuzz_write(px, in.a, in.na, in.mode & 1);
  fuzz_write(py, in.b, in.nb, in.mode & 2);
  NnrtModel m = fuzz_model(in.mode >> 2);
  static const int64_t classes[] = {1, 2};
  NnrtDataSpec spec = {.kind = NNRT_DATA_NPY, .path_x = px, .path_y = py,
                       .scale = 1};
  if (in.mode & 16)
    spec.nclasses = 2, spec.classes = classes;
  NnrtData d;
  NnrtErr err;
  int rc = in.mode & 32
               ? nnrt_data_open_input(&d, px, &m, 1.0, &err)
               : nnrt_data_open(&d, &spec, &m, in.mode & 64 ? 2 : 0, &err);
  if (!rc)
    fuzz_use(&d, &m);
  nnrt_data_close(&d);
  return 0;
}
