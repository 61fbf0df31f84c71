// opt.h — IR simplification and fusion, between grad and codegen.
//
// opt_simplify rewrites m->fn and m->opt.fn in place: constant folding,
// algebraic identities (x*1, x+0, x*0 on constants, neg(neg x)), the stable
// fused form log(softmax(x)) -> log_softmax(x), step(x) -> step(relu(x))
// when relu(x) exists, f(broadcast(x)) -> broadcast(f(x)),
// broadcast(broadcast(x)) -> broadcast(x), common subexpression
// elimination and dead code elimination (roots: output, loss, objective,
// correct, every parameter gradient, the optimizer's results). Values are
// renumbered afterwards; every IrModule pointer is kept valid.
#ifndef NNC_OPT_H
#define NNC_OPT_H

#include "ir.h"

void opt_simplify(IrModule *m, Ctx *ctx);

// Marks values that are computed inside their only user's kernel
// (IrValue.fused), so codegen emits one loop per chain and no buffer for
// them: element-wise values read element by element by their user, and
// matmuls and convolutions whose user starts an element-wise chain over
// their output (the chain then runs in their epilogue). Requires up-to-date use
// counts; calls ir_count_uses itself.
void kernel_fuse(IrModule *m);

#endif
