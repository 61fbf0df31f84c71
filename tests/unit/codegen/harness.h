// harness.h — the file protocol between codegen_test.c and harness.c.
//
// codegen_test.c compiles an IrModule to an object, links it with harness.c
// (a fake runtime defining nnrt_main and the training callbacks) and runs the
// result as `exe IN OUT`. IN starts with a HarnessIn, then
//   int64 rows[nbatch]             rows of each batch (<= max_batch)
//   float params[param_numel]      initial parameters
//   float x[sum(rows) * in_numel]  inputs, batch after batch
//   float y[sum(rows) * ycols]     labels, batch after batch
// OUT depends on the mode (see below). Exit status: 0 fine, 2 bad input,
// 3 a guard zone past the workspace, params or state was overwritten.
// The harness also provides nnrt_parallel_for (HarnessIn.threads threads);
// it counts calls and tasks, printed to stderr with NNC_HARNESS_VERBOSE.
#ifndef NNC_TEST_HARNESS_H
#define NNC_TEST_HARNESS_H

#include <stdint.h>

#include "nnrt_rng.h"

// The key nnrt_step_key hands generated code for step t (the real runtime
// hashes its seed and t): the reference interpreter draws with the same.
static inline uint64_t harness_step_key(int64_t t) {
  return nnrt_mix64((uint64_t)t * 0x2545f4914f6cdd1du + 7);
}

enum {
  // nnc_train for `epochs` epochs over the batches. OUT: int64 steps,
  // float params[param_numel], float state[nstate * param_numel], then per
  // step {int64 rows; double loss_sum; double correct}.
  H_TRAIN = 1,
  // nnc_infer on each batch with out and y. OUT: float out[sum(rows) *
  // out_numel], double stats[nbatch][2], int64 ok: 1 when a second pass with
  // y = NULL gave the same predictions without touching stats, and a third
  // with out = NULL gave the same stats.
  H_INFER = 2,
  // nnc_infer on batch 0, `reps` times, without output. OUT: double seconds
  // per call (best of 5 rounds).
  H_BENCH = 3,
  // OUT: the nnc_model table as text, one `key value` line per field.
  H_DESCRIBE = 4,
};

typedef struct HarnessIn {
  int64_t mode;
  int64_t nbatch, epochs, max_batch;
  int64_t stop_after; // H_TRAIN: batch_end asks to stop after this many steps
                      // (0: never)
  int64_t reps;       // H_BENCH
  int64_t ycols;      // floats per label (the label's numel)
  int64_t threads;    // nnrt_parallel_for spreads tasks over this many
                      // threads, the caller included (0 or 1: none)
} HarnessIn;

#endif
