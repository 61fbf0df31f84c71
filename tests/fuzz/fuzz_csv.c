// fuzz_csv.c — libFuzzer target over the runtime's CSV reader: the input
// (after the mode byte and the two length bytes of fuzz_util.h) is a CSV
// file, written raw or gzip-compressed, loaded as training data (with or
// without a class filter, with or without a row limit) or as predict input,
// for one of four model shapes.
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzIn in = fuzz_split(data, size);
  const char *path = fuzz_path("data.csv");
  fuzz_write(path, in.a, in.na + in.nb, in.mode & 1);
  NnrtModel m = fuzz_model(in.mode >> 1);
  static const int64_t classes[] = {2, 0};
  NnrtDataSpec spec = {.kind = NNRT_DATA_CSV, .path_x = path, .scale = 1};
  if (in.mode & 8)
    spec.nclasses = 2, spec.classes = classes;
  NnrtData d;
  NnrtErr err;
  int rc = in.mode & 16
               ? nnrt_data_open_input(&d, path, &m, 1.0, &err)
               : nnrt_data_open(&d, &spec, &m, in.mode & 32 ? 2 : 0, &err);
  if (!rc)
    fuzz_use(&d, &m);
  nnrt_data_close(&d);
  return 0;
}
