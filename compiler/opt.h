// opt.h — IR simplification and fusion, between grad and codegen.
//
// opt_simplify rewrites m->fn and each step's optimizer program in place:
// constant folding, algebraic identities (x*1, x+0, x*0 on constants, neg(neg x)), the stable
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

// Chooses how weights are laid out in memory, before kernel_fuse: a 2-D
// weight W[K, N] with few columns (N <= 12, K >= 16: a classifier's last
// layer) that is only ever the right operand of matmuls is stored
// transposed, as W^T[N, K] (IrParam.transposed). Its users become
// x W = matmul_nt(x, W^T) and dY W^T = matmul(dY, W^T), and its gradient
// matmul_tn(x, dY) becomes matmul_tn(dY, x): the forward is then a dot
// product along K with no packing, and the weight gradient fills every lane
// of its vectors (N = 10 would fill 10 of 16).
void weight_layout(IrModule *m);

#endif
