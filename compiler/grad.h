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

// Vector-Jacobian products: with the adjoints dseed[s] given for the
// values seed[s] (a value may be seeded several times: the seeds add),
// appends the adjoints of wrt[0..n) to fn; out[i] has wrt[i]'s shape (a
// zero BROADCAST when no seed depends on it). grad_of is the case of one
// scalar seed of adjoint 1; loop bodies use the general form.
void grad_vjp(IrFn *fn, int nseed, IrValue **seed, IrValue **dseed,
              IrValue **wrt, int n, IrValue **out);

// grad_loop.c: the adjoint of a LOOP y whose record has adjoint dy: a
// backward LOOP over the steps in the other order (BPTT), appended to fn.
// Sets d[i] to the contribution for argument i where want[i] (else NULL).
// May append saved values to y's records (and so widen y's record).
void grad_loop(IrFn *fn, IrValue *y, IrValue *dy, const bool *want,
               IrValue **d);

// Before differentiating: every LOOP's users (and module roots) read it
// through an explicit SLICE of its columns, so that grad_loop can widen
// the record with saved values without changing what they read (the
// simplifier may have dropped a SLICE of the whole record before).
void grad_loop_views(IrModule *m);

#endif
