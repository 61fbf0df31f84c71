// grad.h — symbolic reverse-mode differentiation on the IR, at compile time.
//
// Each primitive's adjoint rule (`adj_ID` in grad.c, one per prims.def row)
// appends backward ops to the same function, so `--emit=grad` shows the
// backward pass as ordinary IR. Contributions to a value are summed; a
// contribution with a broadcast shape is summed back down with SUM_TO
// (including over the batch axis for parameters).
#ifndef NNC_GRAD_H
#define NNC_GRAD_H

#include "ir.h"

// Appends, for every step, d(step objective)/d(param) for each parameter
// the step updates to m->fn and sets IrParam.grad (a zero BROADCAST when
// the objective does not depend on it). With clip_norm, each step's
// gradients are scaled to that global norm.
void grad_emit(IrModule *m, Ctx *ctx);

// The general form, for tests: gradients of the unbatched scalar `root`
// with respect to wrt[0..n), appended to fn; out[i] has wrt[i]'s shape.
void grad_of(IrFn *fn, IrValue *root, IrValue **wrt, int n, IrValue **out);

#endif
