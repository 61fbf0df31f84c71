// grad_test.c — finite-difference checks of every adjoint rule in grad.c.
//
// The table `cases` holds, per differentiable primitive, small argument
// shapes (with broadcasting variants for binary ops and batched leaves) and
// the input domain that keeps them away from kinks. For each case the test
// builds f = op(leaves), reduces it to a scalar root
// BATCH_MEAN(SUM(f * W)) with fixed pseudo-random weights W (SUM when f is
// unbatched), asks grad_of for the gradient of every leaf, evaluates it with
// eval.c in f64 and compares it with central differences on every element.
// Unbatched leaves are PARAMs; batched ones are INPUT and LABEL (batch 3),
// so gradients with respect to examples are checked too. A coverage test
// fails when a differentiable primitive has no case, so a new primitive
// cannot ship without its check.
#include <assert.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include "eval.h"
#include "fd_compare.h"
#include "grad.h"

enum { BATCH = 3 };

// Primitives whose derivative is zero wherever it exists: no rule to check.
static bool zero_derivative(Op op) {
  return prims[op].flags & PF_FLAT;
}

typedef enum Domain {
  ANY,        // uniform in [-1.5, 1.5]
  POSITIVE,   // uniform in [0.5, 2]: log, sqrt, pow
  NONZERO,    // |x| in [0.2, 1.2], either sign: relu, abs, div
} Domain;

typedef struct Leaf {
  Shape shape;
  bool batched;
} Leaf;

typedef struct Case {
  Op op;
  Leaf arg[MAX_ARGS];  // the arguments, each a leaf of its own
  Domain dom;
  Attr attr;           // SUM_TO / BROADCAST / RESHAPE target; window, axis
  bool const_b;        // the second argument is CONST `cval`, not a leaf
  double cval;
} Case;

#define SC {.rank = 0}
#define V(n) {.rank = 1, .dim = {n}}
#define M(a, b) {.rank = 2, .dim = {a, b}}
#define T(a, b, c) {.rank = 3, .dim = {a, b, c}}
#define Q(a, b, c, d) {.rank = 4, .dim = {a, b, c, d}}
// A 2-D window: kernel 3 (pools), stride 2, padding 1, one group.
#define WIN3                                                          \
  {.kernel = {3, 3}, .stride = {2, 2}, .pad_lo = {1, 1},            \
   .pad_hi = {1, 1}, .dilation = {1, 1}, .groups = 1}
#define P(s) {.shape = s, .batched = false}  // an unbatched leaf (PARAM)
#define B(s) {.shape = s, .batched = true}   // batched (INPUT, then LABEL)
// A case: the primitive, the domain of its leaves, then its arguments.
#define C(o, d, ...) {.op = o, .dom = d, .arg = {__VA_ARGS__}}

// The broadcasting variants every binary primitive is checked with.
#define BINARY(o, d)                                                    \
  C(o, d, P(M(2, 3)), P(M(2, 3))), C(o, d, P(M(2, 3)), P(SC)),     \
  C(o, d, P(SC), P(M(2, 3))), C(o, d, P(V(3)), P(M(2, 3))),        \
  C(o, d, B(M(2, 3)), P(V(3))), C(o, d, P(V(3)), B(M(2, 3))),      \
  C(o, d, B(M(2, 3)), B(M(2, 1))), C(o, d, B(SC), P(V(3))),        \
  C(o, d, B(V(3)), B(V(3)))
#define UNARY(o, d)                                                     \
  C(o, d, P(M(2, 3))), C(o, d, B(V(4))), C(o, d, B(M(2, 3)))
// A SUM_TO, BROADCAST or RESHAPE of leaf x to shape s, batched b.
#define TO(o, x, s, b) \
  {.op = o, .dom = ANY, .arg = {x}, .attr = {.shape = s, .batched = b}}

static Case cases[] = {
    UNARY(OP_NEG, ANY),
    UNARY(OP_EXP, ANY),
    UNARY(OP_LOG, POSITIVE),
    UNARY(OP_SQRT, POSITIVE),
    UNARY(OP_TANH, ANY),
    UNARY(OP_SIN, ANY),
    UNARY(OP_COS, ANY),
    UNARY(OP_SIGMOID, ANY),
    UNARY(OP_RELU, NONZERO),
    UNARY(OP_ABS, NONZERO),
    TO(OP_BROADCAST, P(V(3)), M(2, 3), true),
    TO(OP_BROADCAST, P(SC), M(2, 3), false),
    TO(OP_BROADCAST, B(M(2, 1)), M(2, 3), true),
    TO(OP_BROADCAST, P(M(2, 1)), T(4, 2, 3), false),
    TO(OP_BROADCAST, B(SC), V(3), true),

    BINARY(OP_ADD, ANY),
    BINARY(OP_SUB, ANY),
    BINARY(OP_MUL, ANY),
    BINARY(OP_DIV, NONZERO),
    BINARY(OP_POW, POSITIVE),
    {.op = OP_POW, .dom = ANY, .arg = {P(M(2, 3))}, .const_b = true, .cval = 3},
    {.op = OP_POW, .dom = POSITIVE, .arg = {B(V(4))}, .const_b = true,
     .cval = 0.5},
    {.op = OP_POW, .dom = NONZERO, .arg = {B(V(4))}, .const_b = true,
     .cval = 2},
    BINARY(OP_MAX, ANY),
    BINARY(OP_MIN, ANY),

    UNARY(OP_SUM, ANY),
    C(OP_SUM, ANY, B(SC)),
    UNARY(OP_MEAN, ANY),
    TO(OP_SUM_TO, B(M(2, 3)), V(3), false),
    TO(OP_SUM_TO, B(M(2, 3)), M(2, 1), true),
    TO(OP_SUM_TO, P(M(2, 3)), M(1, 3), false),
    TO(OP_SUM_TO, B(M(2, 3)), SC, false),
    TO(OP_SUM_TO, P(M(2, 3)), V(3), false),
    TO(OP_SUM_TO, B(V(3)), V(3), false),
    TO(OP_SUM_TO, P(T(4, 2, 3)), M(2, 1), false),
    C(OP_BATCH_MEAN, ANY, B(M(2, 3))),
    C(OP_BATCH_MEAN, ANY, B(SC)),
    C(OP_SOFTMAX, ANY, P(M(2, 4))),
    C(OP_SOFTMAX, ANY, B(V(5))),
    C(OP_SOFTMAX, ANY, B(M(2, 3))),
    C(OP_LOG_SOFTMAX, ANY, P(M(2, 4))),
    C(OP_LOG_SOFTMAX, ANY, B(V(5))),
    C(OP_LOG_SOFTMAX, ANY, B(M(2, 3))),

    C(OP_MATMUL, ANY, B(V(3)), P(M(3, 4))),
    C(OP_MATMUL, ANY, B(M(2, 3)), P(M(3, 4))),
    C(OP_MATMUL, ANY, P(M(2, 3)), P(M(3, 4))),
    C(OP_MATMUL, ANY, P(V(3)), P(M(3, 4))),
    C(OP_MATMUL_NT, ANY, B(V(4)), P(M(3, 4))),
    C(OP_MATMUL_NT, ANY, B(M(2, 4)), P(M(3, 4))),
    C(OP_MATMUL_NT, ANY, P(M(2, 4)), P(M(3, 4))),
    C(OP_MATMUL_TN, ANY, B(V(3)), B(V(4))),
    C(OP_MATMUL_TN, ANY, B(M(2, 3)), B(M(2, 4))),
    C(OP_MATMUL_TN, ANY, P(M(2, 3)), P(M(2, 4))),

    TO(OP_RESHAPE, B(M(2, 3)), V(6), false),
    TO(OP_RESHAPE, P(V(6)), M(3, 2), false),
    TO(OP_RESHAPE, B(M(2, 3)), T(1, 3, 2), false),

    // The convolutional family, one 2-D geometry each (kernel 3, stride 2,
    // padding 1: overlapping windows that read padding); conv_test.c checks
    // many more (1-D to 3-D, dilation, groups, asymmetric padding).
    {.op = OP_CONV, .dom = ANY, .arg = {B(T(2, 5, 5)), P(Q(3, 2, 3, 3))},
     .attr = {.win = WIN3}},
    {.op = OP_CONV_T, .dom = ANY, .arg = {B(T(3, 3, 3)), P(Q(3, 2, 3, 3))},
     .attr = {.win = WIN3, .shape = T(2, 5, 5)}},
    {.op = OP_CONV_W, .dom = ANY, .arg = {B(T(2, 5, 5)), B(T(3, 3, 3))},
     .attr = {.win = WIN3, .shape = Q(3, 2, 3, 3)}},
    {.op = OP_MAXPOOL, .dom = ANY, .arg = {B(T(2, 5, 5))},
     .attr = {.win = WIN3}},
    {.op = OP_UNPOOL, .dom = ANY, .arg = {B(T(2, 5, 5)), B(T(2, 3, 3))},
     .attr = {.win = WIN3}},
    {.op = OP_POOL_SELECT, .dom = ANY, .arg = {B(T(2, 5, 5)), B(T(2, 5, 5))},
     .attr = {.win = WIN3}},
    {.op = OP_AVGPOOL, .dom = ANY, .arg = {B(T(2, 5, 5))},
     .attr = {.win = WIN3}},
    {.op = OP_AVGPOOL_T, .dom = ANY, .arg = {B(T(2, 3, 3))},
     .attr = {.win = WIN3, .shape = T(2, 5, 5)}},
    {.op = OP_CONCAT, .dom = ANY, .arg = {B(M(2, 3)), B(M(1, 3))},
     .attr = {.axis = 0}},
    {.op = OP_CONCAT, .dom = ANY, .arg = {B(M(2, 3)), P(M(2, 2))},
     .attr = {.axis = 1}},
    {.op = OP_SLICE, .dom = ANY, .arg = {B(M(4, 3))},
     .attr = {.axis = 0, .start = 1, .shape = M(2, 3)}},
    {.op = OP_EMBED, .dom = ANY, .arg = {P(M(2, 3))},
     .attr = {.axis = 1, .start = 1, .shape = M(2, 5)}},
};

// ---- a deterministic generator (xorshift64*) --------------------------------
static double rng_uniform(uint64_t *s, double lo, double hi) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  uint64_t x = *s * 2685821657736338717u;
  return lo + (hi - lo) * ((double)(x >> 11) / 9007199254740992.0);
}

static double rng_draw(uint64_t *s, Domain d) {
  switch (d) {
  case POSITIVE:
    return rng_uniform(s, 0.5, 2);
  case NONZERO: {
    double m = rng_uniform(s, 0.2, 1.2);
    return rng_uniform(s, 0, 1) < 0.5 ? -m : m;
  }
  default:
    return rng_uniform(s, -1.5, 1.5);
  }
}

// ---- the harness ------------------------------------------------------------
enum { MAX_LEAVES = 4 };

// A function under test: its leaves with their data, the root and gradients.
typedef struct Check {
  Arena arena;
  IrFn *fn;
  int nleaf;
  IrValue *leaf[MAX_LEAVES];
  double *data[MAX_LEAVES];  // each leaf's elements (B x numel when batched)
  IrValue *root;
  IrValue *grad[MAX_LEAVES];
  double *param[MAX_LEAVES + 1];
  EvalEnv env;
  uint64_t rng;
} Check;

static int64_t leaf_size(const IrValue *v) {
  return (v->batched ? BATCH : 1) * shape_numel(v->shape);
}

// Adds a leaf: PARAMs are numbered in order, batched leaves are the INPUT
// then the LABEL. The leaf's data is drawn from the domain.
static IrValue *check_leaf(Check *c, Leaf l, Domain d, bool differentiate) {
  IrFn *fn = c->fn;
  IrValue *v;
  double *data = arena_alloc(&c->arena, sizeof(double) * BATCH *
                                            (size_t)shape_numel(l.shape));
  if (l.batched) {
    assert(!c->env.label && "at most two batched leaves");
    bool first = !c->env.input;
    v = ir_leaf(fn, first ? OP_INPUT : OP_LABEL, l.shape, true, 0,
                first ? "x" : "y", (Loc){0});
    *(first ? &c->env.input : &c->env.label) = data;
  } else {
    int k = 0;
    while (c->param[k])
      k++;
    v = ir_leaf(fn, OP_PARAM, l.shape, false, k, "p", (Loc){0});
    c->param[k] = data;
  }
  for (int64_t i = 0; i < leaf_size(v); i++)
    data[i] = rng_draw(&c->rng, d);
  if (differentiate) {
    c->leaf[c->nleaf] = v;
    c->data[c->nleaf++] = data;
  }
  return v;
}

// root = BATCH_MEAN(SUM(f * W)), or SUM(f * W) for an unbatched f.
static void check_root(Check *c, IrValue *f) {
  IrValue *w = check_leaf(c, (Leaf){f->shape, false}, ANY, false);
  IrValue *s = ir_unary(c->fn, OP_SUM, ir_binary(c->fn, OP_MUL, f, w, f->loc),
                        f->loc);
  c->root = s->batched ? ir_unary(c->fn, OP_BATCH_MEAN, s, f->loc) : s;
  c->env.batch = BATCH;
  c->env.param = c->param;
  grad_of(c->fn, c->root, c->leaf, c->nleaf, c->grad);
  for (int i = 0; i < c->nleaf; i++) {
    cr_assert(shape_eq(c->grad[i]->shape, c->leaf[i]->shape));
    cr_assert_eq(c->grad[i]->batched, c->leaf[i]->batched);
  }
}

static double check_eval_root(void *ctx) {
  Check *c = ctx;
  Arena a = {0};
  double r = eval_fn(&a, c->fn, &c->env)[c->root->id][0];
  arena_free(&a);
  return r;
}

// Compares every gradient element with a central difference.
static void check_gradients(Check *c, const char *what) {
  Arena a = {0};
  double **res = eval_fn(&a, c->fn, &c->env);
  fd_compare(c, check_eval_root, res, c->nleaf, c->leaf, c->grad, c->data,
             BATCH, 1e-6, what);
  arena_free(&a);
}

static char *case_name(Arena *a, const Case *k, const IrValue *const *arg) {
  char *s = arena_printf(a, "%s(", prims[k->op].name);
  for (int i = 0; i < prims[k->op].arity; i++)
    s = arena_printf(a, "%s%s%s", s, i ? ", " : "",
                     shape_str(a, arg[i]->shape, arg[i]->batched));
  if (k->op == OP_SUM_TO || k->op == OP_BROADCAST || k->op == OP_RESHAPE)
    s = arena_printf(a, "%s -> %s", s,
                     shape_str(a, k->attr.shape, k->attr.batched));
  return arena_printf(a, "%s)", s);
}

ParameterizedTestParameters(grad, finite_differences) {
  return cr_make_param_array(Case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(Case *k, grad, finite_differences) {
  Check c = {.rng = 0x9e3779b97f4a7c15u ^ (uint64_t)k->op * 7919};
  c.fn = ir_fn_new(&c.arena);
  IrValue *arg[MAX_ARGS];
  for (int i = 0; i < prims[k->op].arity; i++)
    arg[i] = k->const_b && i == 1 ? ir_const(c.fn, k->cval, (Loc){0})
                                  : check_leaf(&c, k->arg[i], k->dom, true);
  IrValue *f = ir_prim(c.fn, k->op, arg, k->attr, (Loc){0});
  check_root(&c, f);
  check_gradients(&c, case_name(&c.arena, k, (const IrValue *const *)arg));
  arena_free(&c.arena);
}

Test(grad, every_differentiable_primitive_has_a_check) {
  for (int op = 0; op < OP_COUNT; op++) {
    if (prims[op].kind == PK_LEAF || prims[op].kind == PK_RANDOM ||
        zero_derivative(op))
      continue;
    if (op == OP_LOOP)  // recurrences have their own: loop_grad_test.c
      continue;
    bool found = false;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      found |= cases[i].op == (Op)op;
    cr_expect(found, "'%s' has no finite-difference check in grad_test.c",
              prims[op].name);
  }
}

// A value used twice receives the sum of both contributions.
Test(grad, contributions_accumulate) {
  Check c = {.rng = 42};
  c.fn = ir_fn_new(&c.arena);
  IrValue *x = check_leaf(&c, (Leaf){{.rank = 1, .dim = {4}}, true}, ANY, true);
  IrValue *p =
      check_leaf(&c, (Leaf){{.rank = 1, .dim = {4}}, false}, ANY, true);
  IrFn *fn = c.fn;
  IrValue *xp = ir_binary(fn, OP_MUL, x, p, (Loc){0});
  IrValue *f = ir_binary(fn, OP_ADD, ir_binary(fn, OP_MUL, xp, xp, (Loc){0}),
                         ir_unary(fn, OP_TANH, xp, (Loc){0}), (Loc){0});
  f = ir_binary(fn, OP_SUB, f, ir_binary(fn, OP_DIV, p, ir_unary(fn, OP_EXP, x,
                                                                (Loc){0}),
                                         (Loc){0}),
                (Loc){0});
  check_root(&c, f);
  check_gradients(&c, "shared values");
  arena_free(&c.arena);
}

// A two-layer classifier with softmax cross-entropy: the rules compose.
Test(grad, mlp_cross_entropy) {
  Check c = {.rng = 7};
  c.fn = ir_fn_new(&c.arena);
  IrFn *fn = c.fn;
  Loc l = {0};
  IrValue *x = check_leaf(&c, (Leaf){{.rank = 1, .dim = {4}}, true}, ANY, true);
  IrValue *y = check_leaf(&c, (Leaf){{.rank = 1, .dim = {3}}, true}, POSITIVE,
                          false);
  IrValue *w1 = check_leaf(&c, (Leaf){{.rank = 2, .dim = {4, 5}}, false}, ANY,
                           true);
  IrValue *b1 = check_leaf(&c, (Leaf){{.rank = 1, .dim = {5}}, false}, ANY,
                           true);
  IrValue *w2 = check_leaf(&c, (Leaf){{.rank = 2, .dim = {5, 3}}, false}, ANY,
                           true);
  IrValue *h = ir_unary(
      fn, OP_TANH,
      ir_binary(fn, OP_ADD, ir_binary(fn, OP_MATMUL, x, w1, l), b1, l), l);
  IrValue *z = ir_binary(fn, OP_MATMUL, h, w2, l);
  IrValue *ce = ir_unary(
      fn, OP_NEG,
      ir_unary(fn, OP_SUM,
               ir_binary(fn, OP_MUL, y,
                         ir_unary(fn, OP_LOG, ir_unary(fn, OP_SOFTMAX, z, l),
                                  l),
                         l),
               l),
      l);
  c.root = ir_unary(fn, OP_BATCH_MEAN, ce, l);
  c.env.batch = BATCH;
  c.env.param = c.param;
  grad_of(fn, c.root, c.leaf, c.nleaf, c.grad);
  check_gradients(&c, "mlp");
  arena_free(&c.arena);
}

// Piecewise-constant primitives contribute nothing: the gradient is a zero
// broadcast of the leaf's shape, and evaluates to zeros.
Test(grad, zero_derivative_primitives) {
  for (Op op = 0; op < OP_COUNT; op++) {
    if (!zero_derivative(op))
      continue;
    Check c = {.rng = 3};
    c.fn = ir_fn_new(&c.arena);
    Leaf l = {{.rank = 1, .dim = {4}}, true};
    IrValue *arg[MAX_ARGS];
    for (int i = 0; i < prims[op].arity; i++)
      arg[i] = check_leaf(&c, l, NONZERO, true);
    IrValue *f = ir_prim(c.fn, op, arg, (Attr){.num = 0.5}, (Loc){0});
    check_root(&c, f);
    Arena a = {0};
    double **res = eval_fn(&a, c.fn, &c.env);
    for (int i = 0; i < c.nleaf; i++) {
      cr_expect_eq(c.grad[i]->op, OP_BROADCAST, "%s", prims[op].name);
      for (int64_t k = 0; k < leaf_size(c.leaf[i]); k++)
        cr_expect_eq(res[c.grad[i]->id][k], 0.0, "%s", prims[op].name);
    }
    arena_free(&a);
    arena_free(&c.arena);
  }
}

// grad_emit differentiates the objective with respect to every parameter;
// a parameter the objective ignores gets a zero gradient of its shape.
Test(grad, grad_emit_sets_every_parameter) {
  Arena a = {0};
  IrModule m = {.name = "m"};
  m.fn = ir_fn_new(&a);
  Loc l = {0};
  Shape s3 = shape_vec(3), s23 = shape_of(2, (int64_t[]){2, 3});
  IrParam *p[2];
  for (int i = 0; i < 2; i++) {
    p[i] = arena_alloc(&a, sizeof *p[i]);
    p[i]->name = i ? "unused" : "w";
    p[i]->shape = i ? s23 : s3;
    p[i]->value = ir_leaf(m.fn, OP_PARAM, p[i]->shape, false, i, p[i]->name, l);
    ptrvec_push(&a, &m.params, p[i]);
    m.ntrainable = m.params.n;
  }
  m.input = ir_leaf(m.fn, OP_INPUT, s3, true, 0, "x", l);
  m.output = ir_binary(m.fn, OP_MUL, m.input, p[0]->value, l);
  m.loss = ir_unary(m.fn, OP_SUM, m.output, l);
  ir_main_step(&m)->objective = ir_unary(m.fn, OP_BATCH_MEAN, m.loss, l);
  grad_emit(&m, &(Ctx){.arena = &a});

  cr_assert(p[0]->grad && p[1]->grad);
  cr_expect(shape_eq(p[0]->grad->shape, s3) && !p[0]->grad->batched);
  cr_expect(shape_eq(p[1]->grad->shape, s23) && !p[1]->grad->batched);
  cr_expect_eq(p[1]->grad->op, OP_BROADCAST);

  // d/dw mean_b sum(x * w) = mean of x over the batch
  double x[BATCH * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 12}, w[3] = {1, 1, 1};
  double zero[6] = {0};
  double *param[2] = {w, zero};
  double **res = eval_fn(&a, m.fn,
                         &(EvalEnv){.batch = BATCH, .input = x,
                                    .param = param});
  double expect[3] = {4, 5, 7};
  for (int i = 0; i < 3; i++)
    cr_expect_float_eq(res[p[0]->grad->id][i], expect[i], 1e-12);
  for (int i = 0; i < 6; i++)
    cr_expect_eq(res[p[1]->grad->id][i], 0.0);
  arena_free(&a);
}
