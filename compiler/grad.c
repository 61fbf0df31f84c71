// grad.c — reverse-mode differentiation on the IR (see grad.h).
//
// Consumes an IrFn, an unbatched scalar root and the values to differentiate
// with respect to; appends the backward ops to the same IrFn through the
// ir.h builder and returns one gradient per wrt value. Each primitive has one
// adjoint rule `adj_ID(g, y, dy)`, dispatched from a table generated from
// prims.def (a primitive without a rule does not compile). A rule receives
// the finished adjoint dy of y and hands one contribution per argument to
// grad_accum, which sums contributions with ADD and first sums a broadcast
// contribution back down with SUM_TO. Invariants: the adjoint of a value
// always has exactly that value's shape and batched flag (asserted), values
// are visited in reverse topological order so an adjoint is complete before
// its rule runs, and only arguments that depend on some wrt value receive
// contributions, so no dead backward ops are emitted.
#include <assert.h>

#include "grad.h"

typedef struct Grad {
  IrFn *fn;
  int n;             // values of the primal function (ids 0..n-1)
  IrValue **adj;     // adj[id]: the adjoint built so far, or NULL
  bool *needed;      // needed[id]: the value depends on some wrt value
} Grad;

typedef void AdjRule(Grad *g, IrValue *y, IrValue *dy);

// ---- helpers: builder shorthands that put backward ops at y's location ------
static IrValue *cst(Grad *g, IrValue *y, double c) {
  return ir_const(g->fn, c, y->loc);
}
static IrValue *un(Grad *g, IrValue *y, Op op, IrValue *x) {
  return ir_unary(g->fn, op, x, y->loc);
}
static IrValue *bin(Grad *g, IrValue *y, Op op, IrValue *a, IrValue *b) {
  return ir_binary(g->fn, op, a, b, y->loc);
}
static IrValue *shaped(Grad *g, IrValue *y, Op op, IrValue *x, Shape s,
                       bool batched) {
  return ir_shaped(g->fn, op, x, s, batched, y->loc);
}

// x's shape with the last axis set to 1: the keep-dims target of a row sum.
static Shape last_axis_one(Shape s) {
  s.dim[s.rank - 1] = 1;
  return s;
}

static bool want(Grad *g, IrValue *x) { return g->needed[x->id]; }

// Adds contribution d to x's adjoint. An element-wise argument that was
// broadcast (including over the batch axis) receives a contribution of the
// result's shape; SUM_TO sums it back down to x's own shape.
static void grad_accum(Grad *g, IrValue *x, IrValue *d) {
  if (!want(g, x))
    return;
  if (!shape_eq(d->shape, x->shape) || d->batched != x->batched)
    d = ir_shaped(g->fn, OP_SUM_TO, d, x->shape, x->batched, x->loc);
  assert(shape_eq(d->shape, x->shape) && d->batched == x->batched);
  IrValue **slot = &g->adj[x->id];
  *slot = *slot ? ir_binary(g->fn, OP_ADD, *slot, d, x->loc) : d;
}

// ---- leaves and zero-derivative primitives: no contribution -----------------
#define NO_ADJ(id)                                                     \
  static void adj_##id(Grad *g, IrValue *y, IrValue *dy) {             \
    (void)g, (void)y, (void)dy;                                        \
  }
NO_ADJ(INPUT) NO_ADJ(LABEL) NO_ADJ(PARAM) NO_ADJ(CONST) NO_ADJ(ARG)
NO_ADJ(BATCH_SIZE)
NO_ADJ(RAND_UNIFORM) NO_ADJ(RAND_NORMAL) NO_ADJ(RAND_BERNOULLI)
NO_ADJ(STEP) NO_ADJ(SIGN) NO_ADJ(FLOOR) NO_ADJ(GT) NO_ADJ(CORRECT)  // piecewise constant
NO_ADJ(DETACH)  // detach(x): the value of x, the derivative of a constant

// ---- element-wise, one argument ---------------------------------------------
static void adj_NEG(Grad *g, IrValue *y, IrValue *dy) {
  grad_accum(g, y->arg[0], un(g, y, OP_NEG, dy));
}

// d exp(x) = exp(x) = y
static void adj_EXP(Grad *g, IrValue *y, IrValue *dy) {
  grad_accum(g, y->arg[0], bin(g, y, OP_MUL, dy, y));
}

static void adj_LOG(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, bin(g, y, OP_DIV, dy, x));
}

// d sqrt(x) = 0.5 / sqrt(x) = 0.5 / y
static void adj_SQRT(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *half = bin(g, y, OP_MUL, dy, cst(g, y, 0.5));
  grad_accum(g, y->arg[0], bin(g, y, OP_DIV, half, y));
}

// d tanh(x) = 1 - y^2
static void adj_TANH(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *d = bin(g, y, OP_SUB, cst(g, y, 1), bin(g, y, OP_MUL, y, y));
  grad_accum(g, y->arg[0], bin(g, y, OP_MUL, dy, d));
}

// d sigmoid(x) = y (1 - y)
static void adj_SIGMOID(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *d = bin(g, y, OP_SUB, cst(g, y, 1), y);
  grad_accum(g, y->arg[0], bin(g, y, OP_MUL, bin(g, y, OP_MUL, dy, y), d));
}

static void adj_RELU(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, bin(g, y, OP_MUL, dy, un(g, y, OP_STEP, x)));
}

static void adj_ABS(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, bin(g, y, OP_MUL, dy, un(g, y, OP_SIGN, x)));
}

// d sin(x) = cos(x), d cos(x) = -sin(x)
static void adj_SIN(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, bin(g, y, OP_MUL, dy, un(g, y, OP_COS, x)));
}

static void adj_COS(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, un(g, y, OP_NEG, bin(g, y, OP_MUL, dy, un(g, y, OP_SIN, x))));
}

// The inverse of a broadcast is a sum back down (grad_accum does it).
static void adj_BROADCAST(Grad *g, IrValue *y, IrValue *dy) {
  grad_accum(g, y->arg[0], dy);
}

// ---- element-wise, two arguments --------------------------------------------
// Contributions have the result's (broadcast) shape; grad_accum unbroadcasts.
static void adj_ADD(Grad *g, IrValue *y, IrValue *dy) {
  grad_accum(g, y->arg[0], dy);
  grad_accum(g, y->arg[1], dy);
}

static void adj_SUB(Grad *g, IrValue *y, IrValue *dy) {
  grad_accum(g, y->arg[0], dy);
  if (want(g, y->arg[1]))
    grad_accum(g, y->arg[1], un(g, y, OP_NEG, dy));
}

static void adj_MUL(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a))
    grad_accum(g, a, bin(g, y, OP_MUL, dy, b));
  if (want(g, b))
    grad_accum(g, b, bin(g, y, OP_MUL, dy, a));
}

// y = a / b: da = dy / b, db = -dy a / b^2 = -dy y / b
static void adj_DIV(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a))
    grad_accum(g, a, bin(g, y, OP_DIV, dy, b));
  if (want(g, b)) {
    IrValue *q = bin(g, y, OP_DIV, bin(g, y, OP_MUL, dy, y), b);
    grad_accum(g, b, un(g, y, OP_NEG, q));
  }
}

// y = a^b: da = dy b a^(b-1), db = dy y log(a). A constant exponent is never
// needed, so x^2 does not emit a log of a possibly negative base.
static void adj_POW(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a)) {
    IrValue *p = bin(g, y, OP_POW, a, bin(g, y, OP_SUB, b, cst(g, y, 1)));
    grad_accum(g, a, bin(g, y, OP_MUL, dy, bin(g, y, OP_MUL, b, p)));
  }
  if (want(g, b)) {
    IrValue *d = bin(g, y, OP_MUL, dy, y);
    grad_accum(g, b, bin(g, y, OP_MUL, d, un(g, y, OP_LOG, a)));
  }
}

// The selected argument gets dy. Ties select the second argument, as in eval.
static void adj_select(Grad *g, IrValue *y, IrValue *dy, IrValue *first) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a))
    grad_accum(g, a, bin(g, y, OP_MUL, dy, first));
  if (want(g, b)) {
    IrValue *other = bin(g, y, OP_SUB, cst(g, y, 1), first);
    grad_accum(g, b, bin(g, y, OP_MUL, dy, other));
  }
}
static void adj_MAX(Grad *g, IrValue *y, IrValue *dy) {
  adj_select(g, y, dy, bin(g, y, OP_GT, y->arg[0], y->arg[1]));
}
static void adj_MIN(Grad *g, IrValue *y, IrValue *dy) {
  adj_select(g, y, dy, bin(g, y, OP_GT, y->arg[1], y->arg[0]));
}

// ---- reductions -------------------------------------------------------------
static void adj_SUM(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, shaped(g, y, OP_BROADCAST, dy, x->shape, x->batched));
}

static void adj_MEAN(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  IrValue *n = cst(g, y, (double)shape_numel(x->shape));
  IrValue *d = bin(g, y, OP_DIV, dy, n);
  grad_accum(g, x, shaped(g, y, OP_BROADCAST, d, x->shape, x->batched));
}

static void adj_SUM_TO(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, shaped(g, y, OP_BROADCAST, dy, x->shape, x->batched));
}

// Every row gets dy / B.
static void adj_BATCH_MEAN(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  IrValue *b = ir_leaf(g->fn, OP_BATCH_SIZE, shape_scalar(), false, 0, NULL,
                       y->loc);
  IrValue *d = bin(g, y, OP_DIV, dy, b);
  grad_accum(g, x, shaped(g, y, OP_BROADCAST, d, x->shape, true));
}

// dx = y (dy - sum_row(dy y))
static void adj_SOFTMAX(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *s = shaped(g, y, OP_SUM_TO, bin(g, y, OP_MUL, dy, y),
                      last_axis_one(y->shape), y->batched);
  grad_accum(g, y->arg[0], bin(g, y, OP_MUL, y, bin(g, y, OP_SUB, dy, s)));
}

// dx = dy - exp(y) sum_row(dy), where exp(y) is the softmax
static void adj_LOG_SOFTMAX(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *s = shaped(g, y, OP_SUM_TO, dy, last_axis_one(y->shape),
                      y->batched);
  IrValue *p = un(g, y, OP_EXP, y);
  grad_accum(g, y->arg[0], bin(g, y, OP_SUB, dy, bin(g, y, OP_MUL, p, s)));
}

// ---- matrix products --------------------------------------------------------
// y = a b: da = dy b^T, db = a^T dy (summed over all rows, batch included)
static void adj_MATMUL(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a))
    grad_accum(g, a, bin(g, y, OP_MATMUL_NT, dy, b));
  if (want(g, b))
    grad_accum(g, b, bin(g, y, OP_MATMUL_TN, a, dy));
}

// y = a b^T: da = dy b, db = dy^T a
static void adj_MATMUL_NT(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a))
    grad_accum(g, a, bin(g, y, OP_MATMUL, dy, b));
  if (want(g, b))
    grad_accum(g, b, bin(g, y, OP_MATMUL_TN, dy, a));
}

// y = a^T b: da = b dy^T, db = a dy
static void adj_MATMUL_TN(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  if (want(g, a))
    grad_accum(g, a, bin(g, y, OP_MATMUL_NT, b, dy));
  if (want(g, b))
    grad_accum(g, b, bin(g, y, OP_MATMUL, a, dy));
}

// ---- layout -----------------------------------------------------------------
static void adj_RESHAPE(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, shaped(g, y, OP_RESHAPE, dy, x->shape, x->batched));
}

// ---- the convolutional family -----------------------------------------------
// Every rule here is linear in dy and builds primitives of the same family
// with y's window (or axis and start). `target` is the result shape of the
// primitives that take one (CONV_T, CONV_W, AVGPOOL_T, SLICE, EMBED), NULL
// for the others, so equal values get equal attributes (CSE).
static IrValue *like(Grad *g, IrValue *y, Op op, IrValue *a, IrValue *b,
                     const Shape *target) {
  Attr attr = {.win = y->attr.win, .axis = y->attr.axis,
               .start = y->attr.start};
  if (target)
    attr.shape = *target;
  return ir_prim(g->fn, op, (IrValue *[]){a, b}, attr, y->loc);
}

// <conv(x, w), dy> = <x, conv_t(dy, w)> = <w, conv_w(x, dy)>: one trilinear
// form, so each of CONV, CONV_T, CONV_W differentiates into the other two.
// y = conv(x, w): dx = conv_t(dy, w), dw = conv_w(x, dy)
static void adj_CONV(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0], *w = y->arg[1];
  if (want(g, x))
    grad_accum(g, x, like(g, y, OP_CONV_T, dy, w, &x->shape));
  if (want(g, w))
    grad_accum(g, w, like(g, y, OP_CONV_W, x, dy, &w->shape));
}

// z = conv_t(u, w): du = conv(dz, w), dw = conv_w(dz, u)
static void adj_CONV_T(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *u = y->arg[0], *w = y->arg[1];
  if (want(g, u))
    grad_accum(g, u, like(g, y, OP_CONV, dy, w, NULL));
  if (want(g, w))
    grad_accum(g, w, like(g, y, OP_CONV_W, dy, u, &w->shape));
}

// w' = conv_w(x, u): dx = conv_t(u, dw'), du = conv(x, dw')
static void adj_CONV_W(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0], *u = y->arg[1];
  if (want(g, x))
    grad_accum(g, x, like(g, y, OP_CONV_T, u, dy, &x->shape));
  if (want(g, u))
    grad_accum(g, u, like(g, y, OP_CONV, x, dy, NULL));
}

// The argmax positions are piecewise constant in x, so x_ref never receives
// a contribution; UNPOOL and POOL_SELECT are linear in their second argument
// and each other's adjoint there.
static void adj_MAXPOOL(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, like(g, y, OP_UNPOOL, x, dy, NULL));
}

static void adj_UNPOOL(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *ref = y->arg[0], *v = y->arg[1];
  if (want(g, v))
    grad_accum(g, v, like(g, y, OP_POOL_SELECT, ref, dy, NULL));
}

static void adj_POOL_SELECT(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *ref = y->arg[0], *v = y->arg[1];
  if (want(g, v))
    grad_accum(g, v, like(g, y, OP_UNPOOL, ref, dy, NULL));
}

static void adj_AVGPOOL(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, like(g, y, OP_AVGPOOL_T, dy, NULL, &x->shape));
}

static void adj_AVGPOOL_T(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, like(g, y, OP_AVGPOOL, dy, NULL, NULL));
}

// Each operand gets its slab of dy (an unbatched operand's is summed over
// the batch by grad_accum).
static void adj_CONCAT(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *a = y->arg[0], *b = y->arg[1];
  Attr attr = {.axis = y->attr.axis, .shape = a->shape};
  if (want(g, a))
    grad_accum(g, a, ir_prim(g->fn, OP_SLICE, &dy, attr, y->loc));
  attr.start = a->shape.dim[attr.axis];
  attr.shape = b->shape;
  if (want(g, b))
    grad_accum(g, b, ir_prim(g->fn, OP_SLICE, &dy, attr, y->loc));
}

static void adj_SLICE(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, like(g, y, OP_EMBED, dy, NULL, &x->shape));
}

static void adj_EMBED(Grad *g, IrValue *y, IrValue *dy) {
  IrValue *x = y->arg[0];
  grad_accum(g, x, like(g, y, OP_SLICE, dy, NULL, &x->shape));
}

static AdjRule *const adj_rules[OP_COUNT] = {
#define PRIM(id, name, arity, kind, flags, identity, flops) [OP_##id] = adj_##id,
#include "prims.def"
#undef PRIM
};

void grad_of(IrFn *fn, IrValue *root, IrValue **wrt, int n, IrValue **out) {
  assert(shape_eq(root->shape, shape_scalar()) && !root->batched &&
         "the root must be an unbatched scalar");
  ir_renumber(fn);
  Grad g = {.fn = fn, .n = fn->values.n};
  g.adj = arena_alloc(fn->arena, sizeof(IrValue *) * (size_t)(g.n + 1));
  g.needed = arena_alloc(fn->arena, sizeof(bool) * (size_t)(g.n + 1));

  // needed: forward reachability from the wrt values.
  for (int i = 0; i < n; i++)
    g.needed[wrt[i]->id] = true;
  for (int i = 0; i < g.n; i++) {
    IrValue *v = fn->values.item[i];
    for (int j = 0; j < v->narg; j++)
      g.needed[i] |= g.needed[v->arg[j]->id];
  }

  if (g.needed[root->id]) {
    g.adj[root->id] = ir_const(fn, 1.0, root->loc);
    for (int i = root->id; i >= 0; i--) {
      IrValue *v = fn->values.item[i];
      if (g.adj[i])
        adj_rules[v->op](&g, v, g.adj[i]);
    }
  }

  for (int i = 0; i < n; i++) {
    IrValue *x = wrt[i], *d = g.adj[x->id];
    if (!d)  // the root does not depend on x
      d = ir_shaped(fn, OP_BROADCAST, ir_const(fn, 0.0, x->loc), x->shape,
                    x->batched, x->loc);
    out[i] = d;
  }
}

// The gradients of one step's objective for its parameters.
static void step_grads(IrModule *m, const IrStep *st) {
  // A step without a parameter list updates every trainable one (buffers
  // have no gradient).
  int n = st->params ? st->nparams : m->ntrainable;
  if (!st->objective || n == 0)
    return;
  IrParam **ps = arena_alloc(m->fn->arena, sizeof(IrParam *) * (size_t)n);
  IrValue **wrt = arena_alloc(m->fn->arena, sizeof(IrValue *) * (size_t)n);
  IrValue **out = arena_alloc(m->fn->arena, sizeof(IrValue *) * (size_t)n);
  for (int i = 0; i < n; i++) {
    ps[i] = m->params.item[st->params ? st->params[i] : i];
    wrt[i] = ps[i]->value;
  }
  grad_of(m->fn, st->objective, wrt, n, out);
  // Clipping by global norm (torch.nn.utils.clip_grad_norm_): every
  // gradient times min(1, c / (||g|| + 1e-6)), ||g|| over all of them.
  double c = st->clip_norm > 0 ? st->clip_norm : m->train.clip_norm;
  if (c > 0) {
    Loc loc = m->train.loc;
    IrFn *fn = m->fn;
    IrValue *sq = NULL;
    for (int i = 0; i < n; i++) {
      IrValue *s = ir_unary(fn, OP_SUM, ir_binary(fn, OP_MUL, out[i], out[i],
                                                  loc), loc);
      sq = sq ? ir_binary(fn, OP_ADD, sq, s, loc) : s;
    }
    IrValue *norm = ir_binary(fn, OP_ADD, ir_unary(fn, OP_SQRT, sq, loc),
                              ir_const(fn, 1e-6, loc), loc);
    IrValue *scale = ir_binary(fn, OP_MIN, ir_const(fn, 1, loc),
                               ir_binary(fn, OP_DIV, ir_const(fn, c, loc),
                                         norm, loc), loc);
    for (int i = 0; i < n; i++)
      out[i] = ir_binary(fn, OP_MUL, out[i],
                         ir_shaped(fn, OP_BROADCAST, scale, out[i]->shape,
                                   false, loc), loc);
  }
  for (int i = 0; i < n; i++)
    ps[i]->grad = out[i];
}

void grad_emit(IrModule *m, Ctx *ctx) {
  (void)ctx;  // every rule is total: sema already rejected what has no gradient
  for (int k = 0; k < m->nsteps; k++)
    step_grads(m, &m->steps[k]);
  m->differentiated = true;
}
