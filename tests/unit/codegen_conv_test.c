// codegen_conv_test.c — generated code for the convolutional family against
// the f64 reference interpreter (eval.c).
//
// Each case builds a small module around one primitive of the family (its
// input scaled by a learned per-channel factor, so that the backward pass
// needs the input's gradient too), differentiates it with grad_emit,
// simplifies and fuses it as the driver does, compiles it, links it with
// the fake runtime tests/unit/codegen/harness.c and runs it. Predictions,
// losses and one SGD step (hence every gradient, computed by the adjoint
// primitives CONV_T, CONV_W, UNPOOL, POOL_SELECT, AVGPOOL_T, SLICE, EMBED)
// are compared with eval_fn in f64, on batches of 7 and 1. Geometries: 1-D,
// 2-D and 3-D; stride 2 (and 3, 5); asymmetric padding; dilation 2; groups
// 2 and depthwise; odd channel counts and sizes (13x11); rows wider than a
// vector; panels cut into blocks of lines; "same" convolutions whose rows
// are read in place; 16 and 32 output channels per group (vectors over
// channels, input copied when padded); conv_t with output padding;
// pools whose windows overlap or leave input uncovered, ties and all-
// negative windows next to padding. A small CNN checks one training step
// end to end, larger batches check that 1 and 2 threads give the same bits,
// and a coverage test makes sure every primitive of the family is reached.
// The `measure` test prints LeNet's step time and the conv kernels' GFLOP/s.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CG_SCRATCH "/tmp/nnc_cv_XXXXXX"
#include "codegen/testlib.h"

// ---- building modules -------------------------------------------------------
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define S(...) ((Shape){.rank = NDIM(__VA_ARGS__), .dim = {__VA_ARGS__}})

static IrValue *param(IrModule *m, const char *name, Shape s) {
  Arena *a = m->fn->arena;
  IrParam *p = arena_alloc(a, sizeof *p);
  p->name = name;
  p->shape = s;
  p->init = (Init){INIT_NORMAL, 0, 1};
  p->fan_in = shape_numel(s) / (s.rank ? s.dim[0] : 1);
  p->fan_out = s.rank ? s.dim[0] : 1;
  p->loc = L;
  p->value = ir_leaf(m->fn, OP_PARAM, s, false, m->params.n, name, L);
  ptrvec_push(a, &m->params, p);
  m->ntrainable = m->params.n;
  return p->value;
}

static IrValue *prim2(IrModule *m, Op op, IrValue *a, IrValue *b, Attr at) {
  return ir_prim(m->fn, op, (IrValue *[]){a, b}, at, L);
}
static IrValue *prim1(IrModule *m, Op op, IrValue *a, Attr at) {
  return ir_prim(m->fn, op, (IrValue *[]){a}, at, L);
}

// ---- checks ------------------------------------------------------------------
// Inputs by `fill`; parameters named s... are per-channel factors near 1.
static Data data_new(Arena *a, const IrModule *m, int nbatch,
                     const int64_t *rows, int64_t max_batch, bool onehot,
                     Fill fill, uint64_t seed) {
  return data_make(a, m, nbatch, rows, max_batch, onehot, fill, true, seed);
}

// One SGD step (lr) on batch 0: the update must be -lr times the gradient.
static void check_step(T *t, const IrModule *m, const char *exe, const Data *d,
                       double lr, int64_t threads) {
  size_t n;
  char *out = run(
      t, exe,
      (HarnessIn){
          .mode = H_TRAIN, .epochs = 1, .stop_after = 1, .threads = threads},
      d, &n);
  int64_t steps;
  memcpy(&steps, out, 8);
  cr_assert_eq(steps, 1);
  const float *p1 = (const float *)(out + 8);
  double **ref = reference(&t->arena, m, d, 0, d->params);
  int64_t off = 0;
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    int64_t k = shape_numel(p->shape);
    double *want = ref[p->grad->id];
    double mean = 0;
    for (int64_t j = 0; j < k; j++)
      mean += fabs(want[j]) / (double)k;
    int bad = 0;
    for (int64_t j = 0; j < k; j++) {
      double g = (d->params[off + j] - p1[off + j]) / lr;
      // p1 is rounded to a float: that error, divided by lr, is allowed too.
      double ulp = 4 * fabs(d->params[off + j]) * 0x1p-23 / lr;
      if (!(fabs(g - want[j]) <= 1e-4 * fmax(fabs(want[j]), mean) + ulp) &&
          bad++ < 5)
        cr_log_error("gradient of %s[%lld]: got %.9g, want %.9g", p->name,
                     (long long)j, g, want[j]);
    }
    cr_assert_eq(bad, 0, "gradient of %s differs", p->name);
    off += k;
  }
  int64_t rows;
  double loss_sum;
  const char *log = out + 8 + 4 * d->param_numel;
  memcpy(&rows, log, 8);
  memcpy(&loss_sum, log + 8, 8);
  cr_assert_eq(rows, d->rows[0]);
  const IrValue *obj = m->steps[0].objective; // check_step: a trained module
  if (obj)
    expect_near("step loss", loss_sum, ref[obj->id][0] * (double)rows, 1e-4);
}

// ---- windows -----------------------------------------------------------------
// One window for nsp spatial axes; every per-axis array is given in full.
typedef struct Win {
  int64_t k[3], s[3], lo[3], hi[3], d[3];
  int groups;
} Win;

static Window window(Win w) {
  Window r = {.groups = w.groups ? w.groups : 1};
  for (int i = 0; i < 3; i++) {
    r.kernel[i] = w.k[i];
    r.stride[i] = w.s[i] ? w.s[i] : 1;
    r.pad_lo[i] = w.lo[i];
    r.pad_hi[i] = w.hi[i];
    r.dilation[i] = w.d[i] ? w.d[i] : 1;
  }
  return r;
}

// h = x * s, s a learned per-channel factor [C, 1...]: the input side of
// every case, so that gradients reach the primitive's input.
static IrValue *scaled(IrModule *m, IrValue *x) {
  Shape s = {.rank = x->shape.rank};
  s.dim[0] = x->shape.dim[0];
  for (int i = 1; i < s.rank; i++)
    s.dim[i] = 1;
  return bin(m, OP_MUL, x, param(m, "scale", s));
}

// ---- the cases -----------------------------------------------------------------
typedef enum Kind {
  K_CONV,        // conv(x s, W) + b: CONV (bias in its epilogue), CONV_T,
                 // CONV_W
  K_CONV_RAW,    // conv(x s, W), the output itself: CONV without epilogue
  K_CONV_T,      // conv_t(x s, W; target): CONV_T, CONV, CONV_W
  K_CONV_W,      // conv_w(x s, conv(x, V)): CONV_W, CONV, CONV_T
  K_CONV_UNB,    // conv(P, W) * sum(x): unbatched CONV, CONV_T, CONV_W
  K_MAXPOOL,     // maxpool(x s): MAXPOOL, UNPOOL
  K_UNPOOL,      // unpool(x s, maxpool(x s) q): UNPOOL, POOL_SELECT
  K_TIES,        // unpool(x, q) + x: UNPOOL, POOL_SELECT on raw x
  K_MAXPOOL_RAW, // maxpool(x) * q: MAXPOOL on raw x (ties, padding)
  K_SELECT,      // pool_select(x s, x s r): POOL_SELECT, UNPOOL
  K_AVGPOOL,     // avgpool(x s): AVGPOOL, AVGPOOL_T
  K_AVGPOOL_T,   // avgpool_t(x s; target): AVGPOOL_T, AVGPOOL
  K_CONCAT,      // concat(x s, e): CONCAT, SLICE
  K_SLICE,       // slice(x s): SLICE, EMBED
  K_EMBED,       // embed(x s): EMBED, SLICE
} Kind;

typedef struct Case {
  const char *name;
  Kind kind;
  Shape x;      // per-example input
  Shape w;      // convolutions: the weight; CONCAT: the other operand
  Win win;      // window
  Shape target; // CONV_T, AVGPOOL_T, SLICE, EMBED: the result shape
  int axis;     // CONCAT, SLICE, EMBED
  int64_t start;
  bool e_batched; // CONCAT: the other operand depends on the example
  bool a_second;  // CONCAT: x s is the second operand
  Fill fill;
} Case;

static IrValue *build_case(IrModule *m, const Case *c) {
  IrValue *x = m->input;
  Window w = window(c->win);
  Attr at = {.win = w, .axis = c->axis, .start = c->start, .shape = c->target};
  switch (c->kind) {
  case K_CONV: {
    IrValue *y = prim2(m, OP_CONV, scaled(m, x), param(m, "W", c->w), at);
    Shape bs = {.rank = y->shape.rank};
    bs.dim[0] = y->shape.dim[0];
    for (int i = 1; i < bs.rank; i++)
      bs.dim[i] = 1;
    return bin(m, OP_ADD, y, param(m, "b", bs));
  }
  case K_CONV_RAW:
    return prim2(m, OP_CONV, scaled(m, x), param(m, "W", c->w), at);
  case K_CONV_T:
    return prim2(m, OP_CONV_T, scaled(m, x), param(m, "W", c->w), at);
  case K_CONV_W: {
    IrValue *v = param(m, "V", c->w);
    IrValue *dy = prim2(m, OP_CONV, x, v, at);
    at.shape = c->w;
    return prim2(m, OP_CONV_W, scaled(m, x), un(m, OP_TANH, dy), at);
  }
  case K_CONV_UNB: {
    IrValue *y =
        prim2(m, OP_CONV, param(m, "P", c->x), param(m, "W", c->w), at);
    return bin(
        m, OP_MUL, y,
        ir_shaped(m->fn, OP_BROADCAST, un(m, OP_SUM, x), y->shape, true, L));
  }
  case K_MAXPOOL:
    return prim1(m, OP_MAXPOOL, scaled(m, x), at);
  case K_UNPOOL: {
    IrValue *h = scaled(m, x);
    IrValue *p = prim1(m, OP_MAXPOOL, h, at);
    Shape qs = {.rank = p->shape.rank};
    for (int i = 0; i < qs.rank; i++)
      qs.dim[i] = i ? p->shape.dim[i] : 1;
    return prim2(m, OP_UNPOOL, h, bin(m, OP_MUL, p, param(m, "q", qs)), at);
  }
  case K_TIES: {
    Shape ps;
    bool pb;
    Attr pa = at;
    cr_assert_null(ir_check(OP_MAXPOOL, (IrValue *[]){x}, &pa, &ps, &pb));
    IrValue *q = ir_shaped(m->fn, OP_BROADCAST, param(m, "q", ps), ps, true, L);
    return bin(m, OP_ADD, prim2(m, OP_UNPOOL, x, q, at), x);
  }
  case K_MAXPOOL_RAW: {
    IrValue *p = prim1(m, OP_MAXPOOL, x, at);
    return bin(m, OP_MUL, p, param(m, "q", p->shape));
  }
  case K_SELECT: {
    IrValue *h = scaled(m, x);
    IrValue *g = bin(m, OP_MUL, h, param(m, "r", x->shape));
    return prim2(m, OP_POOL_SELECT, h, g, at);
  }
  case K_AVGPOOL:
    return prim1(m, OP_AVGPOOL, scaled(m, x), at);
  case K_AVGPOOL_T:
    return prim1(m, OP_AVGPOOL_T, scaled(m, x), at);
  case K_CONCAT: {
    IrValue *h = scaled(m, x);
    IrValue *e = param(m, "e", c->w);
    if (c->e_batched)
      e = bin(m, OP_MUL, ir_shaped(m->fn, OP_BROADCAST, e, c->w, true, L),
              ir_shaped(m->fn, OP_BROADCAST, un(m, OP_SUM, x), c->w, true, L));
    return c->a_second ? prim2(m, OP_CONCAT, e, h, at)
                       : prim2(m, OP_CONCAT, h, e, at);
  }
  case K_SLICE:
    return prim1(m, OP_SLICE, scaled(m, x), at);
  case K_EMBED:
    return prim1(m, OP_EMBED, scaled(m, x), at);
  }
  return NULL;
}

// output = case(x); loss = SUM(output * label); SGD.
static IrModule *case_module(Arena *a, const Case *c) {
  IrModule *m = module_new(a, c->name);
  // The label has the prediction's shape: build once to learn it.
  IrModule *probe = module_new(a, c->name);
  probe->input = ir_leaf(probe->fn, OP_INPUT, c->x, true, 0, "x", L);
  Shape ys = build_case(probe, c)->shape;
  m->input = ir_leaf(m->fn, OP_INPUT, c->x, true, 0, "x", L);
  m->label = ir_leaf(m->fn, OP_LABEL, ys, true, 0, "y", L);
  m->output = build_case(m, c);
  m->loss = un(m, OP_SUM, bin(m, OP_MUL, m->output, m->label));
  ir_main_step(m)->objective = un(m, OP_BATCH_MEAN, m->loss);
  sgd(m, 0.1);
  return m;
}

// Builds, then checks inference on batches of 7 and 1 and one training step
// on each.
static void check_case_on(const Case *c, uint64_t seed, const char *cpu) {
  T t;
  t_init(&t);
  t.cpu = cpu;
  cr_log_info("case %s", c->name);
  IrModule *m = case_module(&t.arena, c);
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 3);
  Data d = data_new(&t.arena, m, 2, (int64_t[]){7, 1}, 7, false, c->fill, seed);
  check_infer(&t, m, exe, &d, 1);
  check_step(&t, m, exe, &d, 0.1, 1);
  Data d1 =
      data_new(&t.arena, m, 1, (int64_t[]){1}, 3, false, c->fill, seed + 1);
  check_step(&t, m, exe, &d1, 0.1, 2);
  t_fini(&t);
}

static void check_case(const Case *c, uint64_t seed) {
  check_case_on(c, seed, NULL);
}

// Shorthands for windows over 1, 2 or 3 axes.
#define K(...) .k = {__VA_ARGS__}
#define ST(...) .s = {__VA_ARGS__}
#define LO(...) .lo = {__VA_ARGS__}
#define HI(...) .hi = {__VA_ARGS__}
#define DL(...) .d = {__VA_ARGS__}

// Table rows: C(name, kind, input shape, weight or other operand, window,
// more designated fields...).
#define C(nm, kd, xs, ws, wn, ...)                                             \
  { .name = nm, .kind = kd, .x = xs, .w = ws, .win = wn, __VA_ARGS__ }
#define NONE                                                                   \
  { 0 }
#define D(...)                                                                 \
  {                                                                            \
    .rank = NDIM(__VA_ARGS__), .dim = { __VA_ARGS__ }                          \
  }
#define W(...)                                                                 \
  { __VA_ARGS__ }

static const Case conv_cases[] = {
    C("2-D 3x13x11 -> 5, 3x3 pad 1", K_CONV, D(3, 13, 11), D(5, 3, 3, 3),
      W(LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("2-D stride 2, asymmetric pad 0,1 x 2,1", K_CONV, D(3, 13, 11),
      D(4, 3, 3, 2), W(ST(2, 2), LO(0, 2), HI(1, 1)), .fill = F_UNIFORM),
    C("2-D dilation 2, pad 2", K_CONV, D(5, 13, 11), D(3, 5, 3, 3),
      W(LO(2, 2), HI(2, 2), DL(2, 2)), .fill = F_UNIFORM),
    C("2-D groups 2, stride 1x2", K_CONV, D(4, 9, 10), D(6, 2, 3, 3),
      W(ST(1, 2), LO(1, 1), HI(1, 1), .groups = 2), .fill = F_UNIFORM),
    C("2-D depthwise", K_CONV, D(5, 12, 7), D(5, 1, 3, 3),
      W(LO(1, 1), HI(1, 1), .groups = 5), .fill = F_UNIFORM),
    C("2-D depthwise, multiplier 2", K_CONV, D(3, 7, 9), D(6, 1, 2, 3),
      W(ST(2, 1), LO(1, 0), HI(0, 2), .groups = 3), .fill = F_UNIFORM),
    C("1-D stride 2, pad 1,2, dilation 2", K_CONV, D(3, 29), D(5, 3, 4),
      W(ST(2), LO(1), HI(2), DL(2)), .fill = F_UNIFORM),
    C("3-D mixed stride, padding, dilation", K_CONV, D(3, 5, 6, 7),
      D(4, 3, 2, 3, 2), W(ST(1, 2, 1), LO(1, 0, 1), HI(0, 1, 1), DL(1, 1, 2)),
      .fill = F_UNIFORM),
    C("2-D wide rows, stride 3", K_CONV, D(2, 5, 100), D(3, 2, 3, 5),
      W(ST(1, 3), LO(1, 2), HI(1, 2)), .fill = F_UNIFORM),
    C("2-D stride 5 (gathers), 3 output chunks", K_CONV, D(2, 4, 170),
      D(2, 2, 2, 3), W(ST(2, 5), LO(0, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("LeNet conv 1", K_CONV, D(1, 28, 28), D(6, 1, 5, 5),
      W(LO(2, 2), HI(2, 2)), .fill = F_UNIFORM),
    C("panel in blocks of lines (valid 3x3)", K_CONV, D(9, 37, 41),
      D(7, 9, 3, 3), W(.groups = 1), .fill = F_UNIFORM),
    C("same 3x3, rows read in place, groups 3", K_CONV, D(6, 19, 21),
      D(9, 2, 3, 3), W(LO(1, 1), HI(1, 1), .groups = 3), .fill = F_UNIFORM),
    C("1x1 conv", K_CONV, D(5, 6, 7), D(3, 5, 1, 1), W(.groups = 1),
      .fill = F_UNIFORM),
    C("conv without epilogue, groups 2, stride 2", K_CONV_RAW, D(4, 11, 13),
      D(6, 2, 3, 3), W(ST(2, 2), LO(1, 0), HI(0, 1), .groups = 2),
      .fill = F_UNIFORM),
    // 16 output channels per group: vectors over output channels.
    C("16 channels, valid 3x3, 7x9 output", K_CONV, D(3, 9, 11), D(16, 3, 3, 3),
      W(.groups = 1), .fill = F_UNIFORM),
    C("16 channels without epilogue, 2 lines per tile", K_CONV_RAW,
      D(5, 10, 12), D(16, 5, 3, 3), W(.groups = 1), .fill = F_UNIFORM),
    C("32 channels in 2 groups, stride 2, asymmetric pad (copied input)",
      K_CONV, D(4, 13, 11), D(32, 2, 3, 2),
      W(ST(2, 2), LO(0, 2), HI(1, 1), .groups = 2), .fill = F_UNIFORM),
    C("32 channels, rows of 58 in 3 segments", K_CONV, D(2, 5, 60),
      D(32, 2, 3, 3), W(.groups = 1), .fill = F_UNIFORM),
    C("16 channels, 1-D stride 2, dilation 2, pad 2,1", K_CONV, D(3, 40),
      D(16, 3, 5), W(ST(2), LO(2), HI(1), DL(2)), .fill = F_UNIFORM),
    C("16 channels, 3-D stride 1x1x2, pad 1,0,0 x 0,0,1", K_CONV, D(2, 4, 5, 7),
      D(16, 2, 2, 2, 3), W(ST(1, 1, 2), LO(1, 0, 0), HI(0, 0, 1)),
      .fill = F_UNIFORM),
    C("conv_t stride 2, pad 1, output padding 1", K_CONV_T, D(4, 6, 5),
      D(4, 3, 3, 3), W(ST(2, 2), LO(1, 1), HI(1, 1)), .target = D(3, 12, 10)),
    C("conv_t groups 2, dilation 2", K_CONV_T, D(4, 5, 5), D(4, 1, 2, 2),
      W(DL(2, 2), .groups = 2), .target = D(2, 7, 7)),
    C("conv_t 1-D stride 3", K_CONV_T, D(5, 7), D(5, 2, 3),
      W(ST(3), LO(1), HI(0)), .target = D(2, 20)),
    C("conv_w 2-D stride 2, pad 1", K_CONV_W, D(3, 13, 11), D(5, 3, 3, 3),
      W(ST(2, 2), LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("conv_w 3-D groups 3", K_CONV_W, D(3, 4, 5, 6), D(6, 1, 2, 2, 3),
      W(LO(0, 1, 1), HI(1, 0, 1), .groups = 3), .fill = F_UNIFORM),
    C("unbatched conv", K_CONV_UNB, D(4, 6, 5), D(3, 4, 3, 3),
      W(LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
};

static const Case pool_cases[] = {
    C("maxpool 2x2 / 2 on 3x13x11 (uncovered edge)", K_MAXPOOL, D(3, 13, 11),
      NONE, W(K(2, 2), ST(2, 2)), .fill = F_UNIFORM),
    C("maxpool 3x3 / 1 pad 1 (overlapping)", K_MAXPOOL, D(5, 13, 11), NONE,
      W(K(3, 3), LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("maxpool 3x3 / 2 pad 1", K_MAXPOOL, D(3, 13, 11), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("maxpool 2x3 / 2x1 pad 1,0 x 0,2", K_MAXPOOL, D(3, 8, 11), NONE,
      W(K(2, 3), ST(2, 1), LO(1, 0), HI(0, 2)), .fill = F_UNIFORM),
    C("maxpool 2x2 dilation 2 pad 1", K_MAXPOOL, D(2, 9, 10), NONE,
      W(K(2, 2), LO(1, 1), HI(1, 1), DL(2, 2)), .fill = F_UNIFORM),
    C("maxpool 3x1 / 1 (overlap in h only)", K_MAXPOOL, D(2, 9, 10), NONE,
      W(K(3, 1), LO(1, 0), HI(1, 0)), .fill = F_UNIFORM),
    C("maxpool 1-D 3 / 2 pad 1", K_MAXPOOL, D(3, 29), NONE,
      W(K(3), ST(2), LO(1), HI(1)), .fill = F_UNIFORM),
    C("maxpool 3-D 2 / 1 pad 1,0,1 x 0,1,0", K_MAXPOOL, D(2, 4, 5, 6), NONE,
      W(K(2, 2, 2), LO(1, 0, 1), HI(0, 1, 0)), .fill = F_UNIFORM),
    C("maxpool wide rows 2 / 2", K_MAXPOOL, D(2, 6, 70), NONE,
      W(K(2, 2), ST(2, 2)), .fill = F_UNIFORM),
    C("maxpool stride 3 and 5", K_MAXPOOL, D(2, 9, 80), NONE,
      W(K(3, 2), ST(3, 5)), .fill = F_UNIFORM),
    C("maxpool LeNet 6x28x28", K_MAXPOOL, D(6, 28, 28), NONE,
      W(K(2, 2), ST(2, 2)), .fill = F_UNIFORM),
    C("unpool 3x3 / 2 pad 1", K_UNPOOL, D(3, 13, 11), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("unpool 2x2 / 2", K_UNPOOL, D(5, 13, 11), NONE, W(K(2, 2), ST(2, 2)),
      .fill = F_UNIFORM),
    C("unpool ties, 3x3 / 1 pad 1", K_TIES, D(3, 9, 10), NONE,
      W(K(3, 3), LO(1, 1), HI(1, 1)), .fill = F_TIES),
    C("unpool ties, 2x2 / 2", K_TIES, D(3, 9, 10), NONE, W(K(2, 2), ST(2, 2)),
      .fill = F_TIES),
    C("unpool ties, 1-D 4 / 3 dilation 2", K_TIES, D(2, 30), NONE,
      W(K(4), ST(3), LO(2), HI(1), DL(2)), .fill = F_TIES),
    C("maxpool ties, 3x3 / 2 pad 1", K_MAXPOOL_RAW, D(3, 13, 11), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 1), HI(1, 1)), .fill = F_TIES),
    C("maxpool of negatives next to padding", K_MAXPOOL_RAW, D(2, 7, 9), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 2), HI(2, 1)), .fill = F_NEGATIVE),
    C("pool_select 3x3 / 2 pad 1", K_SELECT, D(3, 13, 11), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("pool_select 3-D", K_SELECT, D(2, 4, 5, 6), NONE,
      W(K(2, 2, 2), LO(1, 0, 1), HI(0, 1, 0)), .fill = F_UNIFORM),
    C("avgpool 3x3 / 2 pad 1", K_AVGPOOL, D(3, 13, 11), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 1), HI(1, 1)), .fill = F_UNIFORM),
    C("avgpool 2x2 / 2", K_AVGPOOL, D(5, 13, 11), NONE, W(K(2, 2), ST(2, 2)),
      .fill = F_UNIFORM),
    C("avgpool 1-D 3 / 1 pad 2,0 dilation 2", K_AVGPOOL, D(3, 29), NONE,
      W(K(3), LO(2), HI(0), DL(2)), .fill = F_UNIFORM),
    C("avgpool 3-D", K_AVGPOOL, D(2, 4, 5, 6), NONE,
      W(K(2, 3, 2), ST(1, 2, 2), LO(1, 1, 0), HI(0, 1, 1)), .fill = F_UNIFORM),
    C("avgpool stride 5", K_AVGPOOL, D(2, 4, 90), NONE, W(K(2, 6), ST(2, 5)),
      .fill = F_UNIFORM),
    C("avgpool_t 3x3 / 2 pad 1", K_AVGPOOL_T, D(3, 7, 6), NONE,
      W(K(3, 3), ST(2, 2), LO(1, 1), HI(1, 1)), .target = D(3, 13, 11)),
    C("avgpool_t 2x2 / 2", K_AVGPOOL_T, D(5, 6, 5), NONE, W(K(2, 2), ST(2, 2)),
      .target = D(5, 13, 11)),
};

static const Case layout_cases[] = {
    C("concat axis 0, unbatched second", K_CONCAT, D(3, 5, 4), D(2, 5, 4),
      W(.groups = 1), .axis = 0),
    C("concat axis 1, batched", K_CONCAT, D(3, 5, 4), D(3, 2, 4),
      W(.groups = 1), .axis = 1, .e_batched = true),
    C("concat axis 2, unbatched first", K_CONCAT, D(3, 5, 4), D(3, 5, 7),
      W(.groups = 1), .axis = 2, .a_second = true),
    C("concat 1-D", K_CONCAT, D(13), D(5), W(.groups = 1), .axis = 0,
      .e_batched = true),
    C("slice axis 0", K_SLICE, D(5, 4, 3), NONE, W(.groups = 1),
      .target = D(2, 4, 3), .axis = 0, .start = 1),
    C("slice axis 2", K_SLICE, D(3, 4, 9), NONE, W(.groups = 1),
      .target = D(3, 4, 4), .axis = 2, .start = 5),
    C("embed axis 1", K_EMBED, D(3, 4, 3), NONE, W(.groups = 1),
      .target = D(3, 9, 3), .axis = 1, .start = 2),
    C("embed axis 0 at the start", K_EMBED, D(2, 3), NONE, W(.groups = 1),
      .target = D(5, 3), .axis = 0, .start = 0),
};

#define NCASES(a) (sizeof(a) / sizeof(a[0]))

Test(codegen_conv, convolutions, .timeout = 600) {
  for (size_t i = 0; i < NCASES(conv_cases); i++)
    check_case(&conv_cases[i], 100 + i);
}

Test(codegen_conv, pools, .timeout = 600) {
  for (size_t i = 0; i < NCASES(pool_cases); i++)
    check_case(&pool_cases[i], 200 + i);
}

Test(codegen_conv, concat_slice_embed, .timeout = 300) {
  for (size_t i = 0; i < NCASES(layout_cases); i++)
    check_case(&layout_cases[i], 300 + i);
}

// The smaller register tiles of AVX2 and SSE (GEMM 6 x 1 and 2 x 1, dot
// tiles 3 x 2 and 2 x 1, 6 and 2 output positions per Ov tile): every
// sixth convolution case and every eighth pool on each, shifted by one
// between the two targets.
Test(codegen_conv, targets, .timeout = 600) {
  const char *cpus[2] = {"x86-64-v3", "x86-64-v2"};
  for (int k = 0; k < 2; k++) {
    for (size_t i = (size_t)k; i < NCASES(conv_cases); i += 6)
      check_case_on(&conv_cases[i], 400 + i, cpus[k]);
    for (size_t i = (size_t)k; i < NCASES(pool_cases); i += 8)
      check_case_on(&pool_cases[i], 500 + i, cpus[k]);
  }
}

// Every primitive of the family appears in some case, forward or backward.
Test(codegen_conv, cases_cover_the_family) {
  T t;
  t_init(&t);
  bool seen[OP_COUNT] = {0};
  const Case *all[3] = {conv_cases, pool_cases, layout_cases};
  size_t n[3] = {NCASES(conv_cases), NCASES(pool_cases), NCASES(layout_cases)};
  for (int s = 0; s < 3; s++)
    for (size_t i = 0; i < n[s]; i++) {
      IrModule *m = case_module(&t.arena, &all[s][i]);
      prepare(m, &t.ctx, true);
      for (int j = 0; j < m->fn->values.n; j++)
        seen[((IrValue *)m->fn->values.item[j])->op] = true;
    }
  for (int op = OP_CONV; op <= OP_EMBED; op++)
    cr_expect(seen[op], "no case reaches '%s'", prims[op].name);
  t_fini(&t);
}

// ---- a small CNN ---------------------------------------------------------------
// Softmax cross-entropy against one-hot labels, its mean, and accuracy.
static void ce_loss(IrModule *m, IrValue *z) {
  IrValue *y = m->label;
  IrValue *ls = un(m, OP_LOG_SOFTMAX, z);
  m->loss = un(m, OP_NEG, un(m, OP_SUM, bin(m, OP_MUL, y, ls)));
  ir_main_step(m)->objective = un(m, OP_BATCH_MEAN, m->loss);
  m->correct = ir_shaped(m->fn, OP_SUM_TO, bin(m, OP_CORRECT, z, y),
                         shape_scalar(), false, L);
}

static Attr wattr(Win w) {
  return (Attr){.win = window(w)};
}

// x[1, 12, 12] -> conv 4 3x3 pad 1 + bias -> relu -> maxpool 2 -> conv 6
// groups 2 3x3 pad 1 -> tanh -> avgpool 2 -> concat a learned channel ->
// slice channels 1.. -> reshape -> dense 5, cross-entropy.
static IrModule *small_cnn(Arena *a) {
  IrModule *m = module_new(a, "cnn");
  m->input = ir_leaf(m->fn, OP_INPUT, S(1, 12, 12), true, 0, "x", L);
  m->label = ir_leaf(m->fn, OP_LABEL, S(5), true, 0, "y", L);
  IrValue *h = prim2(m, OP_CONV, m->input, param(m, "W1", S(4, 1, 3, 3)),
                     wattr((Win){LO(1, 1), HI(1, 1)}));
  h = un(m, OP_RELU, bin(m, OP_ADD, h, param(m, "b1", S(4, 1, 1))));
  h = prim1(m, OP_MAXPOOL, h, wattr((Win){K(2, 2), ST(2, 2)})); // 4x6x6
  h = prim2(m, OP_CONV, h, param(m, "W2", S(6, 2, 3, 3)),
            wattr((Win){LO(1, 1), HI(1, 1), .groups = 2}));
  h = un(m, OP_TANH, h);
  h = prim1(m, OP_AVGPOOL, h, wattr((Win){K(2, 2), ST(2, 2)})); // 6x3x3
  h = prim2(m, OP_CONCAT, h, param(m, "E", S(1, 3, 3)), (Attr){.axis = 0});
  h = prim1(m, OP_SLICE, h, (Attr){.axis = 0, .start = 1, .shape = S(6, 3, 3)});
  h = ir_shaped(m->fn, OP_RESHAPE, h, S(54), true, L);
  m->output = bin(m, OP_MATMUL, h, param(m, "W3", S(54, 5)));
  ce_loss(m, m->output);
  sgd(m, 0.05);
  return m;
}

Test(codegen_conv, small_cnn_step) {
  T t;
  t_init(&t);
  IrModule *m = small_cnn(&t.arena);
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 3);
  Data d = data_new(&t.arena, m, 2, (int64_t[]){7, 1}, 7, true, F_UNIFORM, 7);
  check_infer(&t, m, exe, &d, 2);
  check_step(&t, m, exe, &d, 0.05, 2);
  t_fini(&t);
}

// ---- LeNet, and threads -------------------------------------------------------------
// LeNet-5 on 1x28x28 (conv 6 5x5 pad 2, relu, maxpool 2, conv 16 5x5, relu,
// maxpool 2, dense 120, 84, 10), as examples/lenet.nn builds it.
static IrValue *dense(IrModule *m, IrValue *x, int64_t n, int i, bool relu) {
  Arena *a = m->fn->arena;
  int64_t k = x->shape.dim[0];
  IrValue *w = param(m, arena_printf(a, "dense_%d.W", i), S(k, n));
  IrValue *b = param(m, arena_printf(a, "dense_%d.b", i), S(n));
  IrValue *y = bin(m, OP_ADD, bin(m, OP_MATMUL, x, w), b);
  return relu ? un(m, OP_RELU, y) : y;
}

static IrModule *lenet(Arena *a, double lr) {
  IrModule *m = module_new(a, "lenet");
  m->input = ir_leaf(m->fn, OP_INPUT, S(1, 28, 28), true, 0, "x", L);
  m->label = ir_leaf(m->fn, OP_LABEL, S(10), true, 0, "y", L);
  IrValue *h = prim2(m, OP_CONV, m->input, param(m, "conv_1.W", S(6, 1, 5, 5)),
                     wattr((Win){LO(2, 2), HI(2, 2)}));
  h = un(m, OP_RELU, bin(m, OP_ADD, h, param(m, "conv_1.b", S(6, 1, 1))));
  h = prim1(m, OP_MAXPOOL, h, wattr((Win){K(2, 2), ST(2, 2)}));
  h = prim2(m, OP_CONV, h, param(m, "conv_2.W", S(16, 6, 5, 5)),
            wattr((Win){.groups = 1}));
  h = un(m, OP_RELU, bin(m, OP_ADD, h, param(m, "conv_2.b", S(16, 1, 1))));
  h = prim1(m, OP_MAXPOOL, h, wattr((Win){K(2, 2), ST(2, 2)}));
  h = ir_shaped(m->fn, OP_RESHAPE, h, S(400), true, L);
  h = dense(m, h, 120, 1, true);
  h = dense(m, h, 84, 2, true);
  m->output = dense(m, h, 10, 3, false);
  ce_loss(m, m->output);
  sgd(m, lr);
  return m;
}

// LeNet at batch 37 (split into tasks): one step against the interpreter,
// and two epochs give the same bits with 1 and 2 threads.
Test(codegen_conv, lenet_step_and_threads, .timeout = 300) {
  T t;
  t_init(&t);
  IrModule *m = lenet(&t.arena, 0.05);
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 3);
  Data d =
      data_new(&t.arena, m, 2, (int64_t[]){37, 20}, 37, true, F_UNIFORM, 11);
  for (int64_t i = 0; i < d.total * d.in_numel; i++)
    d.x[i] = (d.x[i] + 1) / 2; // pixels in [0, 1)
  check_infer(&t, m, exe, &d, 2);
  check_step(&t, m, exe, &d, 0.05, 2);
  size_t n1, n2;
  HarnessIn in = {.mode = H_TRAIN, .epochs = 2, .threads = 1};
  char *o1 = run(&t, exe, in, &d, &n1);
  in.threads = 2;
  char *o2 = run(&t, exe, in, &d, &n2);
  cr_assert_eq(n1, n2);
  cr_expect(memcmp(o1, o2, n1) == 0, "weights differ between 1 and 2 threads");
  t_fini(&t);
}

// ---- measurements (printed; only sanity is asserted) ----------------------------
static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A module whose output is one primitive on the input (and the label, as a
// second batched operand): its kernel is all nnc_infer runs.
typedef struct Bench {
  const char *name;
  Op op;
  Shape a, b; // arguments (b: the weight, or the label's shape)
  Win win;
  Shape target;
  double flops; // per example
} Bench;

static IrModule *bench_module(Arena *ar, const Bench *c) {
  IrModule *m = module_new(ar, c->name);
  m->input = ir_leaf(m->fn, OP_INPUT, c->a, true, 0, "x", L);
  Attr at = {.win = window(c->win), .shape = c->target};
  switch (c->op) {
  case OP_CONV:
    m->output = prim2(m, OP_CONV, m->input, param(m, "W", c->b), at);
    break;
  case OP_CONV_T:
    m->output = prim2(m, OP_CONV_T, m->input, param(m, "W", c->b), at);
    break;
  case OP_CONV_W:
  case OP_UNPOOL:
    m->label = ir_leaf(m->fn, OP_LABEL, c->b, true, 0, "y", L);
    m->output = prim2(m, c->op, m->input, m->label, at);
    break;
  default:
    m->output = prim1(m, c->op, m->input, at);
  }
  if (!m->label)
    m->label = ir_leaf(m->fn, OP_LABEL, m->output->shape, true, 0, "y", L);
  ir_renumber(m->fn);
  return m;
}

// Per-step seconds of LeNet training at batch 64 with `threads` threads:
// two runs of different lengths, so start-up cancels out.
static double lenet_step(T *t, const char *exe, IrModule *m, int64_t threads) {
  double best = INFINITY;
  int64_t rows[16];
  for (int i = 0; i < 16; i++)
    rows[i] = 64;
  Data d = data_new(&t->arena, m, 16, rows, 64, true, F_UNIFORM, 5);
  for (int64_t i = 0; i < d.total * d.in_numel; i++)
    d.x[i] = (d.x[i] + 1) / 2;
  for (int r = 0; r < 3; r++) {
    double s[2];
    for (int k = 0; k < 2; k++) {
      size_t n;
      double t0 = seconds();
      run(t, exe,
          (HarnessIn){.mode = H_TRAIN, .epochs = k ? 9 : 1, .threads = threads},
          &d, &n);
      s[k] = seconds() - t0;
    }
    double step = (s[1] - s[0]) / (8 * 16);
    best = step < best ? step : best;
  }
  return best;
}

Test(codegen_conv, measure, .timeout = 600) {
  T t;
  t_init(&t);
  // LeNet's convolution kernels at batch 64, forward and backward.
  static const Bench bench[] = {
      {"conv1 fwd 1x28x28 * 6x1x5x5 pad 2",
       OP_CONV,
       S(1, 28, 28),
       S(6, 1, 5, 5),
       {LO(2, 2), HI(2, 2)},
       {0},
       2.0 * 6 * 25 * 784},
      {"conv2 fwd 6x14x14 * 16x6x5x5",
       OP_CONV,
       S(6, 14, 14),
       S(16, 6, 5, 5),
       {.groups = 1},
       {0},
       2.0 * 16 * 150 * 100},
      {"conv2 conv_t (dx)",
       OP_CONV_T,
       S(16, 10, 10),
       S(16, 6, 5, 5),
       {.groups = 1},
       S(6, 14, 14),
       2.0 * 16 * 150 * 100},
      {"conv2 conv_w (dw)",
       OP_CONV_W,
       S(6, 14, 14),
       S(16, 10, 10),
       {.groups = 1},
       S(16, 6, 5, 5),
       2.0 * 16 * 150 * 100},
      {"conv1 conv_w (dw)",
       OP_CONV_W,
       S(1, 28, 28),
       S(6, 28, 28),
       {LO(2, 2), HI(2, 2)},
       S(6, 1, 5, 5),
       2.0 * 6 * 25 * 784},
      {"maxpool 6x28x28 2x2",
       OP_MAXPOOL,
       S(6, 28, 28),
       {0},
       {K(2, 2), ST(2, 2)},
       {0},
       0},
      {"unpool 6x28x28 2x2",
       OP_UNPOOL,
       S(6, 28, 28),
       S(6, 14, 14),
       {K(2, 2), ST(2, 2)},
       {0},
       0},
      {"conv 64x32x32 * 64x64x3x3 pad 1",
       OP_CONV,
       S(64, 32, 32),
       S(64, 64, 3, 3),
       {LO(1, 1), HI(1, 1)},
       {0},
       2.0 * 64 * 576 * 1024},
  };
  const char *only = getenv("NNC_BENCH");
  for (size_t i = 0; i < sizeof bench / sizeof *bench; i++) {
    if (only && !strstr(bench[i].name, only))
      continue;
    IrModule *m = bench_module(&t.arena, &bench[i]);
    char *exe = build(&t, m, 3);
    int64_t B = 64;
    Data d = data_new(&t.arena, m, 1, &B, B, false, F_UNIFORM, 6);
    for (int64_t th = 1; th <= 2; th++) {
      size_t n;
      char *out =
          run(&t, exe, (HarnessIn){.mode = H_BENCH, .reps = 20, .threads = th},
              &d, &n);
      double sec;
      memcpy(&sec, out, 8);
      double gf = bench[i].flops * (double)B / sec * 1e-9;
      fprintf(stderr, "%-36s B=64 %lld thread%s: %8.1f us", bench[i].name,
              (long long)th, th > 1 ? "s" : " ", sec * 1e6);
      if (bench[i].flops > 0)
        fprintf(stderr, "  %6.1f GFLOP/s", gf);
      fputc('\n', stderr);
    }
  }
  if (!only || strstr("lenet", only)) {
    double t0 = seconds();
    IrModule *m = lenet(&t.arena, 0.01);
    prepare(m, &t.ctx, true);
    CodegenOptions o = {.kind = EMIT_OBJ, .out_path = t_path(&t, ".o"),
                        .opt_level = 3};
    cr_assert_eq(codegen_emit(m, &t.ctx, &o), 0);
    fprintf(stderr, "compile LeNet (IR -> object, O3): %.0f ms\n",
            (seconds() - t0) * 1e3);
    char *exe = build(&t, m, 3);
    for (int64_t th = 1; th <= 2; th++) {
      double s = lenet_step(&t, exe, m, th);
      fprintf(stderr,
              "LeNet train step, batch 64, %lld thread%s: %.3f ms (%.2f s per "
              "60000-example epoch)\n",
              (long long)th, th > 1 ? "s" : "", s * 1e3, s * 60000 / 64);
      cr_expect(s > 0);
    }
  }
  t_fini(&t);
}
