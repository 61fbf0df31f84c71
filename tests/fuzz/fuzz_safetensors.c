// fuzz_safetensors.c — libFuzzer target over the runtime's checkpoint
// reader: the input (after the mode and length bytes of fuzz_util.h) is a
// safetensors file, read against a small model with two parameters (one kept
// transposed) and two optimizer states, with and without asking for the
// state. A file that loads is written back and read again, which must
// succeed and give the same numbers.
#include "fuzz_util.h"

static const NnrtParamInfo params[] = {
    {.name = "dense_1.W", .rank = 2, .dim = {3, 2}, .numel = 6, .offset = 0,
     .transposed = 1},
    {.name = "dense_1.b", .rank = 1, .dim = {2}, .numel = 2, .offset = 6},
};
static const double state_init[] = {0, 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzIn in = fuzz_split(data, size);
  const char *path = fuzz_path("w.safetensors");
  fuzz_write(path, in.a, in.na + in.nb, 0);
  NnrtModel m = fuzz_model(0);
  m.nparams = 2;
  m.params = params;
  m.param_numel = 8;
  m.nstate = 2;
  m.state_init = state_init;
  float p[8], st[16], p2[8], st2[16];
  NnrtTrainPos pos, pos2;
  NnrtStateLoad status, status2;
  NnrtErr err;
  int want_state = in.mode & 1;
  if (nnrt_checkpoint_read(path, &m, p, want_state ? st : NULL, &pos,
                           want_state ? &status : NULL, &err))
    return 0;
  int restored = want_state && status == NNRT_STATE_RESTORED;
  NnrtTrainPos wpos = {pos.epoch < 0 ? 0 : pos.epoch, restored ? pos.step : -1,
                       pos.examples};
  const char *back = fuzz_path("back.safetensors");
  if (nnrt_checkpoint_write(back, &m, p, restored ? st : NULL, &wpos, &err))
    abort();
  if (nnrt_checkpoint_read(back, &m, p2, st2, &pos2, &status2, &err))
    abort();
  if (memcmp(p, p2, sizeof p) || (restored && memcmp(st, st2, sizeof st)))
    abort();
  return 0;
}
