// eval.h — a reference interpreter for the IR in f64.
//
// Independent of codegen: tests use it to check every adjoint rule against
// central finite differences and to check generated code against it. One
// simple loop per primitive (`eval_ID`, one per prims.def row); speed does
// not matter here, clarity does.
#ifndef NNC_EVAL_H
#define NNC_EVAL_H

#include "ir.h"

typedef struct EvalEnv {
  int64_t batch;          // rows of the batch axis
  const double *input;    // batch x numel(INPUT), row-major
  const double *label;    // batch x numel(LABEL)
  double *const *param;   // param[i]: numel(params[i]) values
  const double *arg;      // ARG leaves (optimizer programs), by index
  uint64_t step_key;      // the step's key for RAND_* (nnrt_rng.h)
} EvalEnv;

// Evaluates every value of fn in order. Result i holds value i's elements:
// batch x numel rows when batched, numel otherwise. Memory from the arena.
double **eval_fn(Arena *a, const IrFn *fn, const EvalEnv *env);

#endif
