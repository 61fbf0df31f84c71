// fuzz_idx.c — libFuzzer target over the runtime's IDX reader (raw and
// gzip): the input is split into an images file and a labels file
// (fuzz_util.h), each written raw or gzip-compressed by the mode byte, and
// loaded as a training set (images + labels, with or without a class
// filter), as images alone (an autoencoder's data) and as predict input.
// Errors are expected; crashes, leaks and ASan/UBSan reports are not.
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzIn in = fuzz_split(data, size);
  const char *pi = fuzz_path("images"), *pl = fuzz_path("labels");
  fuzz_write(pi, in.a, in.na, in.mode & 1);
  fuzz_write(pl, in.b, in.nb, in.mode & 2);
  NnrtModel m = fuzz_model(in.mode >> 2);
  static const int64_t classes[] = {1, 7};
  NnrtDataSpec spec = {.kind = NNRT_DATA_IDX, .path_x = pi, .path_y = pl,
                       .scale = 1.0 / 255};
  if (in.mode & 16)
    spec.nclasses = 2, spec.classes = classes;
  switch (in.mode >> 5 & 3) {
  case 0:
  case 1:
    break;
  case 2:
    spec.path_y = NULL;  // idx(images): reproduce the input
    m.out_numel = m.in_numel;
    spec.nclasses = 0;
    break;
  case 3: {  // predict input
    NnrtData d;
    NnrtErr err;
    if (!nnrt_data_open_input(&d, pi, &m, 1.0, &err)) {
      fuzz_use(&d, &m);
      nnrt_data_close(&d);
    }
    return 0;
  }
  }
  NnrtData d;
  NnrtErr err;
  int rc = nnrt_data_open(&d, &spec, &m, in.mode & 128 ? 3 : 0, &err);
  if (!rc)
    fuzz_use(&d, &m);
  nnrt_data_close(&d);
  return 0;
}
