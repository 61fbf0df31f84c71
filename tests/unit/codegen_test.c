// codegen_test.c — generated code against the f64 reference interpreter.
//
// Each test builds an IrModule by hand (forward and loss with the builder,
// backward with grad_emit, then opt_simplify and kernel_fuse, as the driver
// does), compiles it with codegen_emit to an object, links it with the fake
// runtime tests/unit/codegen/harness.c and runs it (protocol: harness.h).
// Predictions, losses, correct counts, parameter updates (hence gradients)
// and optimizer states are compared with eval_fn (eval.c) in f64. Shapes and
// batch sizes are picked to be awkward for vector code: 784, 13, 10, B = 7.
// A coverage test makes sure every primitive is exercised by some module.
// The `measure` test prints compile time and matmul GFLOP/s (no assertion
// beyond sanity).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef NNC_BINARY_DIR
#define NNC_BINARY_DIR "."
#endif
#define CG_SCRATCH "/tmp/nnc_cg_XXXXXX"
#include "codegen/testlib.h"

// ---- building modules -------------------------------------------------------
static IrValue *param(IrModule *m, const char *name, Shape s, InitKind k) {
  Arena *a = m->fn->arena;
  IrParam *p = arena_alloc(a, sizeof *p);
  p->name = name;
  p->shape = s;
  p->init = (Init){k, 0, 1};
  p->fan_in = s.rank ? s.dim[0] : 1;
  p->fan_out = s.rank ? s.dim[s.rank - 1] : 1;
  p->loc = L;
  p->value = ir_leaf(m->fn, OP_PARAM, s, false, m->params.n, name, L);
  ptrvec_push(a, &m->params, p);
  m->ntrainable = m->params.n;
  return p->value;
}

static Shape mat(int64_t r, int64_t c) {
  return (Shape){.rank = 2, .dim = {r, c}};
}

static IrValue *cst(IrModule *m, double c) { return ir_const(m->fn, c, L); }

// Adam, written as the stdlib would: m, v states; bias-corrected step.
static void adam(IrModule *m, double lr, double b1, double b2, double eps) {
  IrOptimizer *o = &ir_main_step(m)->opt;
  IrFn *f = o->fn = ir_fn_new(m->fn->arena);
  Arena *a = f->arena;
  o->name = "adam";
  o->nstate = 2;
  o->state_name = arena_alloc(a, 2 * sizeof(char *));
  o->state_name[0] = "m";
  o->state_name[1] = "v";
  o->state_init = arena_alloc(a, 2 * sizeof(double));
  o->new_state = arena_alloc(a, 2 * sizeof(IrValue *));
  IrValue *p = opt_arg(f, 0, "p"), *g = opt_arg(f, 1, "g"),
          *t = opt_arg(f, 2, "t"), *ms = opt_arg(f, 3, "m"),
          *vs = opt_arg(f, 4, "v");
#define K(c) ir_const(f, c, L)
#define B(op, x, y) ir_binary(f, op, x, y, L)
  IrValue *m1 = B(OP_ADD, B(OP_MUL, K(b1), ms), B(OP_MUL, K(1 - b1), g));
  IrValue *v1 =
      B(OP_ADD, B(OP_MUL, K(b2), vs), B(OP_MUL, K(1 - b2), B(OP_POW, g, K(2))));
  IrValue *mh = B(OP_DIV, m1, B(OP_SUB, K(1), B(OP_POW, K(b1), t)));
  IrValue *vh = B(OP_DIV, v1, B(OP_SUB, K(1), B(OP_POW, K(b2), t)));
  IrValue *step = B(OP_DIV, B(OP_MUL, K(lr), mh),
                    B(OP_ADD, ir_unary(f, OP_SQRT, vh, L), K(eps)));
  o->new_p = B(OP_SUB, p, step);
  o->new_state[0] = m1;
  o->new_state[1] = v1;
#undef K
#undef B
}

// Softmax cross-entropy against one-hot labels, its mean, and accuracy.
static void ce_loss(IrModule *m, IrValue *z) {
  IrValue *y = m->label;
  IrValue *ls = un(m, OP_LOG_SOFTMAX, z);
  m->loss = un(m, OP_NEG, un(m, OP_SUM, bin(m, OP_MUL, y, ls)));
  ir_main_step(m)->objective = un(m, OP_BATCH_MEAN, m->loss);
  m->correct = ir_shaped(m->fn, OP_SUM_TO, bin(m, OP_CORRECT, z, y),
                         shape_scalar(), false, L);
}

// x[nin] -> dense(nh) -> relu -> dense(nout), cross-entropy loss.
static IrModule *mlp(Arena *a, int64_t nin, int64_t nh, int64_t nout) {
  IrModule *m = module_new(a, "mlp");
  m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(nin), true, 0, "x", L);
  m->label = ir_leaf(m->fn, OP_LABEL, shape_vec(nout), true, 0, "y", L);
  IrValue *w1 = param(m, "dense_1.W", mat(nin, nh), INIT_HE_NORMAL);
  IrValue *b1 = param(m, "dense_1.b", shape_vec(nh), INIT_ZEROS);
  IrValue *w2 = param(m, "dense_2.W", mat(nh, nout), INIT_HE_NORMAL);
  IrValue *b2 = param(m, "dense_2.b", shape_vec(nout), INIT_ZEROS);
  IrValue *h =
      un(m, OP_RELU, bin(m, OP_ADD, bin(m, OP_MATMUL, m->input, w1), b1));
  m->output = bin(m, OP_ADD, bin(m, OP_MATMUL, h, w2), b2);
  ce_loss(m, m->output);
  return m;
}

// x[784] -> 256 -> 128 -> 10 (the measured configuration).
static IrModule *mlp3(Arena *a) {
  IrModule *m = module_new(a, "mlp3");
  m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(784), true, 0, "x", L);
  m->label = ir_leaf(m->fn, OP_LABEL, shape_vec(10), true, 0, "y", L);
  int64_t dim[4] = {784, 256, 128, 10};
  IrValue *h = m->input;
  for (int i = 0; i < 3; i++) {
    IrValue *w = param(m, arena_printf(a, "dense_%d.W", i + 1),
                       mat(dim[i], dim[i + 1]), INIT_HE_NORMAL);
    IrValue *b = param(m, arena_printf(a, "dense_%d.b", i + 1),
                       shape_vec(dim[i + 1]), INIT_ZEROS);
    h = bin(m, OP_ADD, bin(m, OP_MATMUL, h, w), b);
    if (i < 2)
      h = un(m, OP_RELU, h);
  }
  m->output = h;
  ce_loss(m, h);
  return m;
}

// ---- checks ------------------------------------------------------------------
// Uniform inputs; every parameter drawn at random (none taken as a factor).
static Data data_new(Arena *a, const IrModule *m, int nbatch,
                     const int64_t *rows, int64_t max_batch, bool onehot,
                     uint64_t seed) {
  return data_make(a, m, nbatch, rows, max_batch, onehot, F_UNIFORM, false,
                   seed);
}

// One SGD step (lr) on batch 0: the update must be -lr times the gradient.
static void check_step(T *t, const IrModule *m, const char *exe, const Data *d,
                       double lr) {
  size_t n;
  char *out =
      run(t, exe, (HarnessIn){.mode = H_TRAIN, .epochs = 1, .stop_after = 1}, d,
          &n);
  int64_t steps;
  memcpy(&steps, out, 8);
  cr_assert_eq(steps, 1);
  const float *p1 = (const float *)(out + 8);
  double **ref =
      reference_key(&t->arena, m, d, 0, d->params, harness_step_key(1));
  int64_t off = 0;
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    int64_t k = shape_numel(p->shape);
    float *g = arena_alloc(&t->arena, sizeof(float) * (size_t)k);
    double *want = ref[p->grad->id];
    double mean = 0;
    for (int64_t j = 0; j < k; j++)
      mean += fabs(want[j]) / (double)k;
    for (int64_t j = 0; j < k; j++) {
      g[j] = (float)((d->params[off + j] - p1[off + j]) / lr);
      // p1 is rounded to a float: that error, divided by lr, is allowed too.
      double ulp = 4 * fabs(d->params[off + j]) * 0x1p-23 / lr;
      cr_assert(fabs(g[j] - want[j]) <= 1e-4 * fmax(fabs(want[j]), mean) + ulp,
                "gradient of %s[%lld]: got %.9g, want %.9g", p->name,
                (long long)j, g[j], want[j]);
    }
    off += k;
  }
  int64_t rows;
  double loss_sum, correct;
  const char *log = out + 8 + 4 * d->param_numel;
  memcpy(&rows, log, 8);
  memcpy(&loss_sum, log + 8, 8);
  memcpy(&correct, log + 16, 8);
  cr_assert_eq(rows, d->rows[0]);
  const IrValue *obj = m->steps[0].objective; // check_step: a trained module
  if (obj)
    expect_near("step loss", loss_sum, ref[obj->id][0] * (double)rows, 1e-4);
  if (m->correct)
    expect_near("step correct", correct, ref[m->correct->id][0], 0);
}

// ---- tests ------------------------------------------------------------------
// An nin-nh-nout MLP with SGD 0.1, fused or not, compiled at opt_level:
// inference on every batch and one step against the interpreter.
static void check_mlp(int64_t nin, int64_t nh, int64_t nout, bool fuse,
                      int opt_level, int nb, const int64_t *rows,
                      int64_t max_batch, uint64_t seed) {
  T t;
  t_init(&t);
  IrModule *m = mlp(&t.arena, nin, nh, nout);
  sgd(m, 0.1);
  prepare(m, &t.ctx, fuse);
  char *exe = build(&t, m, opt_level);
  Data d = data_new(&t.arena, m, nb, rows, max_batch, true, seed);
  check_infer(&t, m, exe, &d, 0);
  check_step(&t, m, exe, &d, 0.1);
  t_fini(&t);
}

Test(codegen, mlp_matches_reference) {
  check_mlp(784, 13, 10, true, 3, 3, (int64_t[]){7, 3, 7}, 7, 1);
}

// Nothing fused and no optimization: every value gets its own kernel.
Test(codegen, mlp_unfused_at_O0) {
  check_mlp(13, 16, 10, false, 0, 2, (int64_t[]){7, 1}, 8, 2);
}

// A separable synthetic problem: the label is the argmax of a fixed linear
// map of x. The mean loss of the last epoch must be well below the first.
Test(codegen, loss_falls) {
  T t;
  t_init(&t);
  IrModule *m = mlp(&t.arena, 13, 16, 4);
  sgd(m, 0.1);
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 2);
  int64_t rows[8] = {7, 7, 7, 7, 7, 7, 7, 7};
  Data d = data_new(&t.arena, m, 8, rows, 7, true, 3);
  Rng r = {99};
  double w[13][4];
  for (int i = 0; i < 13; i++)
    for (int j = 0; j < 4; j++)
      w[i][j] = rnd(&r);
  for (int64_t e = 0; e < d.total; e++) {
    int best = 0;
    double bv = -INFINITY;
    for (int j = 0; j < 4; j++) {
      double s = 0;
      for (int i = 0; i < 13; i++)
        s += w[i][j] * d.x[e * 13 + i];
      if (s > bv)
        bv = s, best = j;
    }
    for (int j = 0; j < 4; j++)
      d.y[e * 4 + j] = (float)(j == best);
  }
  enum { EPOCHS = 60 };
  size_t n;
  char *out =
      run(&t, exe, (HarnessIn){.mode = H_TRAIN, .epochs = EPOCHS}, &d, &n);
  int64_t steps;
  memcpy(&steps, out, 8);
  cr_assert_eq(steps, EPOCHS * 8);
  const char *log = out + 8 + 4 * d.param_numel;
  double loss[EPOCHS] = {0}, correct[EPOCHS] = {0};
  for (int64_t s = 0; s < steps; s++) {
    double l, c;
    memcpy(&l, log + 24 * s + 8, 8);
    memcpy(&c, log + 24 * s + 16, 8);
    loss[s / 8] += l / (double)d.total;
    correct[s / 8] += c / (double)d.total;
  }
  cr_log_info("loss %.4f -> %.4f, accuracy %.2f -> %.2f", loss[0],
              loss[EPOCHS - 1], correct[0], correct[EPOCHS - 1]);
  cr_assert(loss[EPOCHS - 1] < 0.3 * loss[0], "loss %g -> %g", loss[0],
            loss[EPOCHS - 1]);
  cr_assert(correct[EPOCHS - 1] > 0.9, "accuracy %g", correct[EPOCHS - 1]);

  // The runtime can stop training from nnrt_batch_end.
  out = run(&t, exe, (HarnessIn){.mode = H_TRAIN, .epochs = 3, .stop_after = 5},
            &d, &n);
  memcpy(&steps, out, 8);
  cr_assert_eq(steps, 5);
  t_fini(&t);
}

// Adam keeps two states per parameter element at state[k * param_numel +
// offset + i]; two steps on two batches against the same update in f64.
Test(codegen, adam_states) {
  T t;
  t_init(&t);
  IrModule *m = mlp(&t.arena, 13, 8, 3);
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-3;
  adam(m, lr, b1, b2, eps);
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 3);
  Data d = data_new(&t.arena, m, 2, (int64_t[]){7, 5}, 7, true, 4);
  size_t n;
  char *out = run(&t, exe, (HarnessIn){.mode = H_TRAIN, .epochs = 1}, &d, &n);
  int64_t steps;
  memcpy(&steps, out, 8);
  cr_assert_eq(steps, 2);
  int64_t pn = d.param_numel;
  const float *p2 = (const float *)(out + 8), *st = p2 + pn;

  double *p = arena_alloc(&t.arena, sizeof(double) * (size_t)pn);
  double *ms = arena_alloc(&t.arena, sizeof(double) * (size_t)pn);
  double *vs = arena_alloc(&t.arena, sizeof(double) * (size_t)pn);
  float *pf = arena_alloc(&t.arena, sizeof(float) * (size_t)pn);
  for (int64_t i = 0; i < pn; i++)
    p[i] = pf[i] = d.params[i];
  for (int step = 1; step <= 2; step++) {
    double **ref = reference(&t.arena, m, &d, step - 1, pf);
    int64_t off = 0;
    for (int k = 0; k < m->params.n; k++) {
      const IrParam *pr = m->params.item[k];
      for (int64_t j = 0; j < shape_numel(pr->shape); j++, off++) {
        double g = ref[pr->grad->id][j];
        ms[off] = b1 * ms[off] + (1 - b1) * g;
        vs[off] = b2 * vs[off] + (1 - b2) * g * g;
        double mh = ms[off] / (1 - pow(b1, step)),
               vh = vs[off] / (1 - pow(b2, step));
        p[off] -= lr * mh / (sqrt(vh) + eps);
        pf[off] = (float)p[off];
      }
    }
  }
  for (int64_t i = 0; i < pn; i++) {
    cr_assert(fabs(p2[i] - p[i]) <= 1e-4 * lr + 1e-6 * fabs(p[i]),
              "param %lld: got %.9g, want %.9g", (long long)i, p2[i], p[i]);
    cr_assert(fabs(st[i] - ms[i]) <= 1e-4 * fabs(ms[i]) + 1e-7,
              "m %lld: got %.9g, want %.9g", (long long)i, st[i], ms[i]);
    cr_assert(fabs(st[pn + i] - vs[i]) <= 1e-3 * fabs(vs[i]) + 1e-9,
              "v %lld: got %.9g, want %.9g", (long long)i, st[pn + i], vs[i]);
  }
  t_fini(&t);
}

// ---- small modules covering every primitive and broadcasting form -----------
typedef struct OpCase {
  const char *name;
  Shape in; // per-example input shape
  IrValue *(*build)(IrModule *m, IrValue *x);
  double lr;
} OpCase;

// Per-axis broadcasting: [3, 4] with [3, 1] and [4] (grads: keep-dims sums).
static IrValue *c_axes(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", mat(3, 1), INIT_NORMAL);
  IrValue *q = param(m, "q", shape_vec(4), INIT_NORMAL);
  return bin(m, OP_MUL, bin(m, OP_ADD, x, p), q);
}

// Every unary and binary element-wise op in one fused chain.
static IrValue *c_unary(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", shape_vec(13), INIT_NORMAL);
  IrValue *s = param(m, "s", shape_scalar(), INIT_NORMAL);
  IrValue *x2p1 = bin(m, OP_ADD, bin(m, OP_MUL, x, x), cst(m, 1));
  IrValue *terms[] = {
      un(m, OP_TANH, bin(m, OP_MUL, x, p)),
      bin(m, OP_MUL, un(m, OP_SIGMOID, x),
          un(m, OP_EXP, un(m, OP_NEG, un(m, OP_ABS, x)))),
      un(m, OP_SIGN, x),
      bin(m, OP_MUL, un(m, OP_SIN, bin(m, OP_MUL, x, p)), un(m, OP_COS, x)),
      un(m, OP_FLOOR, bin(m, OP_MUL, x, cst(m, 3))),
      bin(m, OP_MUL, un(m, OP_DETACH, bin(m, OP_MUL, x, p)), p),
      un(m, OP_STEP, bin(m, OP_SUB, x, p)),
      un(m, OP_LOG, x2p1),
      bin(m, OP_MUL, un(m, OP_SQRT, x2p1), s),
      bin(m, OP_POW, x2p1, cst(m, 1.5)),
      bin(m, OP_POW, bin(m, OP_ADD, x, p), cst(m, 2)),
      bin(m, OP_POW, x2p1, cst(m, 0.5)),
      bin(m, OP_MAX, x, p),
      bin(m, OP_MIN, x, bin(m, OP_MUL, p, s)),
      bin(m, OP_GT, x, p),
      bin(m, OP_DIV, un(m, OP_RELU, x),
          bin(m, OP_ADD, un(m, OP_ABS, p), cst(m, 2))),
  };
  IrValue *acc = terms[0];
  for (size_t i = 1; i < sizeof terms / sizeof *terms; i++)
    acc = bin(m, OP_ADD, acc, terms[i]);
  return acc;
}

// Softmax over the last axis of a rank-2 example.
static IrValue *c_softmax(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", shape_vec(5), INIT_NORMAL);
  return un(m, OP_SOFTMAX, bin(m, OP_MUL, x, p));
}

// A matmul whose left operand has a leading axis (rows = B x 3).
static IrValue *c_matmul_lead(IrModule *m, IrValue *x) {
  IrValue *w = param(m, "W", mat(4, 6), INIT_NORMAL);
  return un(m, OP_TANH, bin(m, OP_MATMUL, x, w));
}

static IrValue *c_matmul_nt(IrModule *m, IrValue *x) {
  IrValue *w = param(m, "W", mat(7, 5), INIT_NORMAL);
  return bin(m, OP_MATMUL_NT, x, w);
}

// An unbatched [4, 4] result summed over the batch.
static IrValue *c_matmul_tn(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", shape_vec(4), INIT_NORMAL);
  return bin(m, OP_MATMUL_TN, x, bin(m, OP_MUL, x, p));
}

// SUM_TO to a batched [4], MEAN, BROADCAST, SUM.
static IrValue *c_reduce(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", mat(3, 4), INIT_NORMAL);
  IrValue *s =
      ir_shaped(m->fn, OP_SUM_TO, bin(m, OP_MUL, x, p), shape_vec(4), true, L);
  IrValue *mean = un(m, OP_MEAN, bin(m, OP_MUL, x, x));
  IrValue *b =
      ir_shaped(m->fn, OP_BROADCAST, un(m, OP_SUM, x), shape_vec(4), true, L);
  return bin(m, OP_ADD, bin(m, OP_ADD, s, mean), b);
}

// Batch statistics: BATCH_MEAN broadcast back, BATCH_SIZE.
static IrValue *c_batch(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", shape_vec(6), INIT_NORMAL);
  IrValue *mu = un(m, OP_BATCH_MEAN, bin(m, OP_MUL, x, p));
  IrValue *bs =
      ir_leaf(m->fn, OP_BATCH_SIZE, shape_scalar(), false, 0, NULL, L);
  return bin(m, OP_ADD, bin(m, OP_SUB, x, mu),
             bin(m, OP_MUL, bs, cst(m, 0.01)));
}

// RESHAPE around a matmul with a leading axis.
static IrValue *c_reshape(IrModule *m, IrValue *x) {
  IrValue *w = param(m, "W", mat(4, 2), INIT_NORMAL);
  IrValue *r = ir_shaped(m->fn, OP_RESHAPE, x, mat(3, 4), true, L);
  return ir_shaped(m->fn, OP_RESHAPE, bin(m, OP_MATMUL, r, w), shape_vec(6),
                   true, L);
}

// One output: CORRECT with a threshold; a batched scalar prediction.
static IrValue *c_threshold(IrModule *m, IrValue *x) {
  IrValue *w = param(m, "W", mat(3, 1), INIT_NORMAL);
  IrValue *z = bin(m, OP_MATMUL, x, w);
  IrValue *c = ir_prim(m->fn, OP_CORRECT, (IrValue *[]){z, m->label},
                       (Attr){.num = 0.25}, L);
  m->correct = ir_shaped(m->fn, OP_SUM_TO, c, shape_scalar(), false, L);
  return z;
}

// A per-example scalar output.
static IrValue *c_scalar(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", shape_vec(5), INIT_NORMAL);
  return un(m, OP_SUM, bin(m, OP_MUL, x, p));
}

// A prediction that does not depend on the example.
static IrValue *c_unbatched(IrModule *m, IrValue *x) {
  (void)x;
  IrValue *p = param(m, "p", shape_vec(4), INIT_NORMAL);
  return bin(m, OP_MUL, p, cst(m, 2));
}

// POW with a learned exponent (llvm.pow); a rank-0 parameter.
static IrValue *c_pow(IrModule *m, IrValue *x) {
  IrValue *p = param(m, "p", shape_vec(4), INIT_NORMAL);
  IrValue *e = param(m, "e", shape_scalar(), INIT_NORMAL);
  IrValue *base = bin(m, OP_ADD, bin(m, OP_MUL, x, x), cst(m, 1));
  return bin(m, OP_ADD,
             bin(m, OP_DIV, x, bin(m, OP_ADD, bin(m, OP_MUL, p, p), cst(m, 1))),
             bin(m, OP_POW, base, e));
}

// A batched [2, 1] broadcast against [2, 3], and an unbatched [3].
static IrValue *c_keepdims(IrModule *m, IrValue *x) {
  IrValue *q = param(m, "q", shape_vec(3), INIT_NORMAL);
  IrValue *rs =
      ir_shaped(m->fn, OP_SUM_TO, bin(m, OP_MUL, x, x), mat(2, 1), true, L);
  return bin(m, OP_SUB, bin(m, OP_MUL, x, q), rs);
}

// Matmul epilogues reading every kind of leaf: a bias (row vector), a
// per-example scalar (one value per row), a learned scalar, the batch size,
// with 20 columns (a full vector and a masked one).
static IrValue *c_epilogue(IrModule *m, IrValue *x) {
  IrValue *w = param(m, "W", mat(5, 20), INIT_NORMAL);
  IrValue *b = param(m, "b", shape_vec(20), INIT_NORMAL);
  IrValue *s = param(m, "s", shape_scalar(), INIT_NORMAL);
  IrValue *bs =
      ir_leaf(m->fn, OP_BATCH_SIZE, shape_scalar(), false, 0, NULL, L);
  IrValue *z = bin(m, OP_ADD, bin(m, OP_MATMUL, x, w), b);
  z = bin(m, OP_MUL, z, un(m, OP_SUM, bin(m, OP_MUL, x, x)));
  z = bin(m, OP_ADD, bin(m, OP_MUL, z, s), bin(m, OP_MUL, bs, cst(m, 0.01)));
  return un(m, OP_SIGMOID, z);
}

// One value per output row when rows = batch x leading axes ([3, 1]).
static IrValue *c_epilogue_rows(IrModule *m, IrValue *x) {
  IrValue *w = param(m, "W", mat(4, 6), INIT_NORMAL);
  IrValue *r =
      ir_shaped(m->fn, OP_SUM_TO, bin(m, OP_MUL, x, x), mat(3, 1), true, L);
  return bin(m, OP_MUL, bin(m, OP_MATMUL, x, w), un(m, OP_EXP, r));
}

// Random draws (dropout's mask, additive noise, a learned noise scale),
// which the interpreter reproduces bit for bit from the same keys.
static IrValue *c_draws(IrModule *m, IrValue *x) {
  IrValue *q = param(m, "q", shape_vec(9), INIT_NORMAL);
  Attr keep = {.shape = x->shape, .batched = true, .num = 0.6, .index = 0};
  Attr u = {.shape = x->shape, .batched = true, .index = 1};
  Attr nrm = {.shape = shape_vec(9), .batched = false, .index = 2};
  IrValue *none[MAX_ARGS] = {0};
  IrValue *mask = ir_prim(m->fn, OP_RAND_BERNOULLI, none, keep, L);
  IrValue *y = bin(m, OP_DIV, bin(m, OP_MUL, x, mask), cst(m, 0.6));
  y = bin(m, OP_ADD, y, bin(m, OP_MUL, ir_prim(m->fn, OP_RAND_UNIFORM, none, u, L),
                            cst(m, 0.1)));
  m->ndraws = 3;
  return bin(m, OP_ADD, y,
             bin(m, OP_MUL, q, ir_prim(m->fn, OP_RAND_NORMAL, none, nrm, L)));
}

static const OpCase op_cases[] = {
    {"draws", {.rank = 1, .dim = {9}}, c_draws, 0.1},
    {"epilogue", {.rank = 1, .dim = {5}}, c_epilogue, 0.1},
    {"epilogue_rows", {.rank = 2, .dim = {3, 4}}, c_epilogue_rows, 0.1},
    {"axes", {.rank = 2, .dim = {3, 4}}, c_axes, 0.1},
    {"unary", {.rank = 1, .dim = {13}}, c_unary, 0.1},
    {"softmax", {.rank = 2, .dim = {2, 5}}, c_softmax, 0.1},
    {"matmul_lead", {.rank = 2, .dim = {3, 4}}, c_matmul_lead, 0.1},
    {"matmul_nt", {.rank = 1, .dim = {5}}, c_matmul_nt, 0.1},
    {"matmul_tn", {.rank = 1, .dim = {4}}, c_matmul_tn, 0.1},
    {"reduce", {.rank = 2, .dim = {3, 4}}, c_reduce, 0.1},
    {"batch", {.rank = 1, .dim = {6}}, c_batch, 0.1},
    {"reshape", {.rank = 1, .dim = {12}}, c_reshape, 0.1},
    {"threshold", {.rank = 1, .dim = {3}}, c_threshold, 0.1},
    {"scalar", {.rank = 1, .dim = {5}}, c_scalar, 0.1},
    {"unbatched", {.rank = 1, .dim = {4}}, c_unbatched, 0.1},
    {"pow", {.rank = 1, .dim = {4}}, c_pow, 0.1},
    {"keepdims", {.rank = 2, .dim = {2, 3}}, c_keepdims, 0.1},
};
enum { NCASES = sizeof op_cases / sizeof *op_cases };

// output = case(x); loss = SUM(output * label); SGD.
static IrModule *op_module(Arena *a, const OpCase *c) {
  IrModule *m = module_new(a, c->name);
  m->input = ir_leaf(m->fn, OP_INPUT, c->in, true, 0, "x", L);
  m->label = NULL;
  // The label has the prediction's shape, known only after building it:
  // build once to learn the shape, then for real (leaves come first).
  IrModule *probe = module_new(a, c->name);
  probe->input = ir_leaf(probe->fn, OP_INPUT, c->in, true, 0, "x", L);
  probe->label = ir_leaf(probe->fn, OP_LABEL, shape_vec(1), true, 0, "y", L);
  IrValue *po = c->build(probe, probe->input);
  Shape ys = po->shape;
  if (c->build == c_threshold)
    ys = shape_vec(1);
  m->label = ir_leaf(m->fn, OP_LABEL, ys, true, 0, "y", L);
  m->output = c->build(m, m->input);
  m->loss = un(m, OP_SUM, bin(m, OP_MUL, m->output, m->label));
  ir_main_step(m)->objective = un(m, OP_BATCH_MEAN, m->loss);
  sgd(m, c->lr);
  return m;
}

Test(codegen, every_primitive_against_reference) {
  for (int i = 0; i < NCASES; i++) {
    T t;
    t_init(&t);
    cr_log_info("case %s", op_cases[i].name);
    IrModule *m = op_module(&t.arena, &op_cases[i]);
    prepare(m, &t.ctx, true);
    char *exe = build(&t, m, 3);
    Data d = data_new(&t.arena, m, 2, (int64_t[]){7, 3}, 7, false, 10 + i);
    check_infer(&t, m, exe, &d, 0);
    check_step(&t, m, exe, &d, op_cases[i].lr);
    t_fini(&t);
  }
}

// The cases above (with their gradients) and the MLP reach every primitive.
Test(codegen, cases_cover_every_primitive) {
  T t;
  t_init(&t);
  bool seen[OP_COUNT] = {0};
  for (int i = 0; i <= NCASES; i++) {
    IrModule *m =
        i < NCASES ? op_module(&t.arena, &op_cases[i]) : mlp(&t.arena, 5, 4, 3);
    if (!ir_main_step(m)->opt.fn)
      sgd(m, 0.1);
    grad_emit(m, &t.ctx);
    for (int j = 0; j < m->fn->values.n; j++)
      seen[((IrValue *)m->fn->values.item[j])->op] = true;
    for (int j = 0; j < ir_main_step(m)->opt.fn->values.n; j++)
      seen[((IrValue *)ir_main_step(m)->opt.fn->values.item[j])->op] = true;
  }
  // The convolutional family has its own cases (codegen_conv_test.c).
  for (int op = 0; op < OP_COUNT; op++)
    cr_expect(seen[op] || (prims[op].kind == PK_OTHER && op != OP_RESHAPE),
              "no codegen test reaches '%s'", prims[op].name);
  t_fini(&t);
}

// exp is generated inline (no libm call): check it, and sigmoid which uses
// it, at the edges against libm in f64: 0 and inf on either side, NaN, and
// about 1 ulp in between. Also a module without parameters or loss.
Test(codegen, exp_edges) {
  static const float xs[] = {
      -INFINITY, -200,  -104.5f, -103.9f, -88,   -87.3f, -20,        -1,
      -1e-8f,    0,     1e-8f,   0.34f,   0.35f, 1,      10,         20,
      80,        88.5f, 88.72f,  88.73f,  89.5f, 200,    INFINITY,   NAN,
      -0.5f,     0.5f,  3.3f,    -3.3f,   -50,   50,     0.6931472f, 0.7f};
  enum { N = sizeof xs / sizeof *xs };
  for (int which = 0; which < 2; which++) {
    T t;
    t_init(&t);
    IrModule *m = module_new(&t.arena, "exp");
    m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(N), true, 0, "x", L);
    m->output = un(m, which ? OP_SIGMOID : OP_EXP, m->input);
    ir_renumber(m->fn);
    char *exe = build(&t, m, 3);
    Data d = data_new(&t.arena, m, 1, (int64_t[]){3}, 3, false, 7);
    for (int r = 0; r < 3; r++)
      for (int i = 0; i < N; i++)
        d.x[r * N + i] = r == 1 ? -xs[i] : xs[i];
    size_t n;
    char *out = run(&t, exe, (HarnessIn){.mode = H_INFER}, &d, &n);
    const float *got = (const float *)out;
    for (int i = 0; i < 3 * N; i++) {
      double x = d.x[i];
      double want = which ? 1 / (1 + exp(-x)) : exp(x);
      float w = (float)want;
      bool ok = isnan(w)   ? isnan(got[i])
                : isinf(w) ? got[i] == w
                : w < 0x1p-126f
                    ? got[i] >= 0 && got[i] < 0x1p-126f // denormal or 0
                    : fabs(got[i] - want) <= 4 * 0x1p-24 * want;
      cr_expect(ok, "%s(%.9g): got %.9g, want %.9g", which ? "sigmoid" : "exp",
                x, got[i], want);
    }
    t_fini(&t);
  }
}

// ---- matmul kernels: shapes, tails, tasks, threads -----------------------------
// Trains `steps` SGD steps with the harness's pool at `threads` threads and
// returns the output (params, state, per-step log).
static char *train_out(T *t, const char *exe, const Data *d, int64_t threads,
                       size_t *n) {
  return run(t, exe,
             (HarnessIn){.mode = H_TRAIN, .epochs = 2, .threads = threads}, d,
             n);
}

// MLPs whose matmuls (forward NN with bias + ReLU epilogue, backward NT with
// the ReLU mask, TN for the weights) hit every column tail (masked vectors,
// partial column blocks), every row tail (rows % mr), and split into
// several tasks; each is checked against the interpreter, and two epochs of
// training must give bit-identical weights with 1 and 2 threads.
// The matmul cases on one target (--cpu; NULL: native): inference and a
// step against the interpreter; with `threads`, 1 and 2 threads agree.
static void check_matmuls(const char *cpu, bool threads, size_t every) {
  static const struct {
    int64_t nin, nh, nout, nb, rows[4], max_batch;
  } cases[] = {
      {13, 10, 7, 2, {7, 3}, 7},             // k=13, m=10, 7 rows
      {13, 33, 5, 3, {7, 1, 6}, 7},          // 3 vectors, 1 lane masked
      {70, 100, 33, 2, {37, 5}, 40},         // 64 + 36 columns; 33 = 2 + 1
      {300, 256, 10, 2, {130, 67}, 130},     // many tasks in every form
      {784, 48, 16, 2, {25, 31}, 32},        // 3 full vectors, mr 8
      // The dot-product form (N <= 12): K % 16 tails, mr 2, 12 and 24
      {40, 12, 3, 2, {29, 5}, 29},           // k=40 n=12, k=12 broadcast
      {50, 20, 2, 3, {53, 11, 24}, 53},      // k=20 n=2: mr 12
      {33, 17, 1, 2, {49, 2}, 49},           // k=17 n=1: mr 24, 1-lane tail
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c += every) {
    T t;
    t_init(&t);
    t.cpu = cpu;
    cr_log_info("mlp %lld-%lld-%lld on %s", (long long)cases[c].nin,
                (long long)cases[c].nh, (long long)cases[c].nout,
                cpu ? cpu : "native");
    IrModule *m = mlp(&t.arena, cases[c].nin, cases[c].nh, cases[c].nout);
    sgd(m, 0.1);
    prepare(m, &t.ctx, true);
    char *exe = build(&t, m, 3);
    Data d = data_new(&t.arena, m, (int)cases[c].nb, cases[c].rows,
                      cases[c].max_batch, true, 20 + c);
    check_infer(&t, m, exe, &d, 0);
    check_step(&t, m, exe, &d, 0.1);
    if (threads) {
      size_t n1, n2;
      char *o1 = train_out(&t, exe, &d, 1, &n1);
      char *o2 = train_out(&t, exe, &d, 2, &n2);
      cr_assert_eq(n1, n2);
      cr_expect(memcmp(o1, o2, n1) == 0,
                "weights differ between 1 and 2 threads");
    }
    t_fini(&t);
  }
}

Test(codegen, matmul_shapes_tails_and_threads, .timeout = 300) {
  check_matmuls(NULL, true, 1);
}

// The register tiles of AVX2 (6 accumulators; no dot form past 6 columns)
// and SSE without FMA (2 accumulators, fmuladd) compute the same results.
Test(codegen, matmul_targets, .timeout = 300) {
  check_matmuls("x86-64-v3", false, 1);
  check_matmuls("x86-64-v2", false, 2);
}

// Each matmul form alone, at a size that is split into tasks, with a
// per-row epilogue: 1 and 2 threads give the same bits, and the result
// matches the interpreter.
Test(codegen, matmul_forms_threads) {
  // The three forms, then the dot-product form of MATMUL (which packs W^T)
  // and of MATMUL_NT (which reads its rows), both with 10 columns.
  Op ops[5] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN, OP_MATMUL, OP_MATMUL_NT};
  for (int i = 0; i < 5; i++) {
    T t;
    t_init(&t);
    IrModule *m = module_new(&t.arena, prims[ops[i]].name);
    m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(200), true, 0, "x", L);
    IrValue *w = param(m, "W", i == 4 ? mat(10, 200) : mat(200, i < 3 ? 90 : 10),
                       INIT_NORMAL);
    IrValue *h = NULL;
    if (i < 3)
      h = un(m, OP_TANH, bin(m, OP_MATMUL, m->input, w)); // [B, 90]
    if (i == 3 || i == 4) // [B, 200] x [200, 10], or x [10, 200]^T
      m->output = un(m, OP_TANH, bin(m, ops[i], m->input, w));
    else if (ops[i] == OP_MATMUL)
      m->output = h;
    else if (ops[i] == OP_MATMUL_NT) // [B, 90] x [200, 90]^T
      m->output = un(m, OP_TANH, bin(m, OP_MATMUL_NT, h, w));
    else // sum over rows of [B, 200]^T [B, 90]
      m->output = bin(m, OP_MATMUL_TN, m->input, h);
    m->label = ir_leaf(m->fn, OP_LABEL, m->output->shape, true, 0, "y", L);
    ir_renumber(m->fn);
    kernel_fuse(m);
    char *exe = build(&t, m, 3);
    // (300 rows: the dot forms split into tasks from 1 MFLOP on)
    int64_t big = i >= 3 ? 300 : 83;
    Data d = data_new(&t.arena, m, 2, (int64_t[]){big, 41}, big, false, 30 + i);
    check_infer(&t, m, exe, &d, 0);
    size_t n1, n2;
    char *o1 = run(&t, exe, (HarnessIn){.mode = H_INFER, .threads = 1}, &d,
                   &n1);
    char *o2 = run(&t, exe, (HarnessIn){.mode = H_INFER, .threads = 2}, &d,
                   &n2);
    cr_assert_eq(n1, n2);
    cr_expect(memcmp(o1, o2, n1) == 0, "%s: 1 and 2 threads differ",
              prims[ops[i]].name);
    t_fini(&t);
  }
}

static char *slurp(Arena *a, const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *s = arena_alloc(a, (size_t)n + 1);
  cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return s;
}

// The real runtime (libnnrt.a and its thread pool): two epochs of Adam on
// inline data give the same checkpoint, bit for bit, with --threads 1 and 2.
// Sizes are picked so that the matmuls and the optimizer split into tasks.
Test(codegen, real_runtime_threads_bit_identical, .timeout = 300) {
  T t;
  t_init(&t);
  IrModule *m = mlp(&t.arena, 200, 200, 10);
  adam(m, 1e-3, 0.9, 0.999, 1e-8);
  enum { ROWS = 300 };
  double *x = arena_alloc(&t.arena, sizeof(double) * ROWS * 200);
  double *y = arena_alloc(&t.arena, sizeof(double) * ROWS * 10);
  Rng r = {42};
  for (int i = 0; i < ROWS * 200; i++)
    x[i] = rnd(&r);
  for (int i = 0; i < ROWS; i++)
    y[i * 10 + (int)((rnd(&r) + 1) * 5) % 10] = 1;
  m->train.data = (DataSpec){.kind = DATA_INLINE, .nrows = ROWS, .xcols = 200,
                             .ycols = 10, .x = x, .y = y};
  m->train.batch = 64;
  m->train.epochs = 2;
  prepare(m, &t.ctx, true);
  char *obj = t_path(&t, ".o"), *exe = t_path(&t, "");
  CodegenOptions o = {.kind = EMIT_OBJ, .out_path = obj, .opt_level = 3};
  cr_assert_eq(codegen_emit(m, &t.ctx, &o), 0);
  const char *san =
#if defined(__SANITIZE_ADDRESS__)
      "-fsanitize=address,undefined"; // libnnrt.a is built with them too
#else
      "";
#endif
  char *cmd =
      arena_printf(&t.arena, "cc %s %s %s/libnnrt.a -lz -lm -lpthread -o %s",
                   san, obj, NNC_BINARY_DIR, exe);
  cr_assert_eq(system(cmd), 0, "link failed: %s", cmd);
  char *ck[2];
  for (int i = 0; i < 2; i++) {
    ck[i] = t_path(&t, ".safetensors");
    cmd = arena_printf(&t.arena,
                       "%s train --threads %d --quiet --save %s >/dev/null",
                       exe, i + 1, ck[i]);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
  }
  char *a = slurp(&t.arena, ck[0]), *b = slurp(&t.arena, ck[1]);
  struct stat sa, sb;
  cr_assert_eq(stat(ck[0], &sa), 0);
  cr_assert_eq(stat(ck[1], &sb), 0);
  cr_assert_eq(sa.st_size, sb.st_size);
  cr_expect(memcmp(a, b, (size_t)sa.st_size) == 0,
            "checkpoints differ between --threads 1 and 2");
  t_fini(&t);
}

// The descriptor table the runtime reads.
Test(codegen, model_table) {
  T t;
  t_init(&t);
  IrModule *m = mlp(&t.arena, 13, 8, 3);
  adam(m, 0.01, 0.9, 0.999, 1e-8);
  ir_main_step(m)->opt.state_init[1] = 0.5;
  m->train.batch = 32;
  m->train.epochs = 4;
  m->train.seed = 77;
  m->train.validation = 0.25;
  m->train.data = (DataSpec){.kind = DATA_IDX,
                             .path_x = "train-images.gz",
                             .scale = 1.0 / 255,
                             .nclasses = 2,
                             .classes = (int64_t[]){3, 8}};
  double tx[2 * 13], ty[2 * 3] = {1, 0, 0, 0, 0, 1};
  for (int i = 0; i < 26; i++)
    tx[i] = i * 0.5;
  m->train.test = (DataSpec){.kind = DATA_INLINE,
                             .nrows = 2,
                             .xcols = 13,
                             .ycols = 3,
                             .x = tx,
                             .y = ty};
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 1);
  Data d = data_new(&t.arena, m, 1, (int64_t[]){1}, 1, true, 5);
  size_t n;
  char *out = run(&t, exe, (HarnessIn){.mode = H_DESCRIBE}, &d, &n);
  const char *want[] = {
      "name mlp\n",
      "in_rank 1\n",
      "in_numel 13\n",
      "out_numel 3\n",
      "in_dim0 13\n",
      "nparams 4\n",
      "param_numel 139\n",
      "nstate 2\n",
      "state_init0 0\n",
      "state_init1 0.5\n",
      "param dense_1.W rank 2 dims 13 8 numel 104 offset 0 init 7 a 0 b 1 "
      "fan 13 8\n",
      "param dense_1.b rank 1 dims 8 0 numel 8 offset 104 init 0",
      "param dense_2.W rank 2 dims 8 3 numel 24 offset 112",
      "param dense_2.b rank 1 dims 3 0 numel 3 offset 136",
      "train kind 1 path_x train-images.gz scale 0.00392157 nclasses 2\n",
      "class0 3\nclass1 8\n",
      "test kind 3 nrows 2 xcols 13 ycols 3\n",
      "test x0 0 x_last 12.5 y_last 1\n",
      "batch 32\nepochs 4\nseed 77\nvalidation 0.25\naccuracy 1\n",
      "fns 1 1\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_expect_not_null(strstr(out, want[i]), "missing '%s' in:\n%s", want[i],
                       out);
  // Workspace sizes are whole 16-float regions.
  long long trow, tfix, irow, ifix;
  const char *ws = strstr(out, "train_ws ");
  cr_assert_not_null(ws);
  cr_assert_eq(sscanf(ws, "train_ws %lld %lld\ninfer_ws %lld %lld", &trow,
                      &tfix, &irow, &ifix),
               4);
  cr_expect(trow > 0 && trow % 16 == 0 && tfix % 16 == 0 && irow % 16 == 0 &&
            ifix % 16 == 0 && irow < trow);
  t_fini(&t);
}


Test(codegen, emits_llvm_and_asm_text) {
  T t;
  t_init(&t);
  IrModule *m = mlp(&t.arena, 784, 13, 10);
  sgd(m, 0.1);
  prepare(m, &t.ctx, true);
  char *ll = t_path(&t, ".ll"), *s = t_path(&t, ".s");
  cr_assert_eq(codegen_emit(m, &t.ctx, &(CodegenOptions){.kind = EMIT_LLVM, .out_path = ll, .opt_level = 3}), 0);
  cr_assert_eq(codegen_emit(m, &t.ctx, &(CodegenOptions){.kind = EMIT_ASM, .out_path = s, .opt_level = 3}), 0);
  char *ir = slurp(&t.arena, ll), *as = slurp(&t.arena, s);
  cr_expect_not_null(strstr(ir, "define void @nnc_train("));
  cr_expect_not_null(strstr(ir, "define void @nnc_infer("));
  cr_expect_not_null(strstr(ir, "@nnc_model = constant"));
  cr_expect_not_null(strstr(ir, "define i32 @main("));
  cr_expect_not_null(strstr(ir, "\"prefer-vector-width\"=\"512\""));
  // The loss and its gradient are row groups; the weight gradients apply
  // the optimizer in their epilogue (they take the parameter, its state
  // and t); the big matmuls are split into tasks.
  cr_expect_not_null(strstr(ir, ".group("), "no row group");
  cr_expect_not_null(strstr(ir, "float %t, i64 %rows"),
                     "no gradient kernel applies the optimizer");
  cr_expect_not_null(strstr(ir, "@nnrt_parallel_for("));
  cr_expect_not_null(strstr(ir, "llvm.masked.store"), "no masked tail");
  cr_expect_not_null(strstr(as, "nnc_train:"));
  cr_expect_not_null(strstr(as, "nnc_infer:"));
  cr_expect_not_null(strstr(as, "zmm"), "expected 512-bit vector code");
  cr_expect_not_null(strstr(as, "vfmadd"), "expected fused multiply-adds");
  // An unwritable path is reported, not fatal.
  int errs = t.ctx.diag.nerrors;
  FILE *devnull = fopen("/dev/null", "w");
  t.ctx.diag.out = devnull;
  cr_expect_neq(
      codegen_emit(m, &t.ctx,
                   &(CodegenOptions){.kind = EMIT_OBJ, .out_path = "/nonexistent/x.o"}),
      0);
  cr_expect_eq(t.ctx.diag.nerrors, errs + 1);
  fclose(devnull);
  t_fini(&t);
}

// ---- measurements (printed; only sanity is asserted) ------------------------
static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A module whose output is one matmul form on x[B, a] (and the label y).
static IrModule *mm_module(Arena *a, Op op, int64_t k, int64_t n) {
  IrModule *m = module_new(a, prims[op].name);
  m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(k), true, 0, "x", L);
  m->label = ir_leaf(m->fn, OP_LABEL, shape_vec(n), true, 0, "y", L);
  if (op == OP_MATMUL)
    m->output = bin(m, op, m->input, param(m, "W", mat(k, n), INIT_NORMAL));
  else if (op == OP_MATMUL_NT) // dX = dY W^T
    m->output = bin(m, op, m->label, param(m, "W", mat(k, n), INIT_NORMAL));
  else // dW = X^T dY
    m->output = bin(m, op, m->input, m->label);
  return m;
}

Test(codegen, measure, .timeout = 300) {
  T t;
  t_init(&t);
  // Compile time: IR building to object, for 784-256-128-10 at O3.
  double best = INFINITY;
  for (int r = 0; r < 3; r++) {
    double t0 = seconds();
    IrModule *m = mlp3(&t.arena);
    sgd(m, 0.1);
    prepare(m, &t.ctx, true);
    CodegenOptions o = {.kind = EMIT_OBJ, .out_path = t_path(&t, ".o"),
                        .opt_level = 3};
    cr_assert_eq(codegen_emit(m, &t.ctx, &o), 0);
    double dt = seconds() - t0;
    best = dt < best ? dt : best;
  }
  cr_log_info("compile 784-256-128-10 MLP (IR -> object, O3): %.0f ms",
              best * 1e3);
  fprintf(stderr, "compile 784-256-128-10 MLP (IR -> object, O3): %.0f ms\n",
          best * 1e3);

  // Matmul speed in each form: fashion_mlp's first layer (rows 128, k 784,
  // n 256) and softmax_regression's (rows 32, n 10).
  Op ops[3] = {OP_MATMUL, OP_MATMUL_NT, OP_MATMUL_TN};
  static const int64_t shapes[2][3] = {{128, 784, 256}, {32, 784, 10}};
  for (int c = 0; c < 6; c++) {
    int i = c % 3;
    int64_t rows = shapes[c / 3][0], kk = shapes[c / 3][1],
            nn = shapes[c / 3][2];
    IrModule *m = mm_module(&t.arena, ops[i], kk, nn);
    char *exe = build(&t, m, 3);
    Data d = data_new(&t.arena, m, 1, (int64_t[]){rows}, rows, false, 6);
    // One thread: the harness's pool sleeps on a condition variable, so
    // its dispatches are too slow to time (the runtime's pool spins).
    for (int threads = 1; threads <= 1; threads++) {
      size_t n;
      char *out = run(
          &t, exe,
          (HarnessIn){.mode = H_BENCH, .reps = rows < 128 ? 2000 : 50,
                      .threads = threads},
          &d,
          &n);
      double sec;
      memcpy(&sec, out, 8);
      double gflops = 2.0 * (double)(rows * kk * nn) / sec * 1e-9;
      fprintf(stderr,
              "%-10s %lldx%lldx%lld, 1 thread: %.4f ms, %.1f GFLOP/s\n",
              prims[ops[i]].name, (long long)rows, (long long)kk,
              (long long)nn, sec * 1e3, gflops);
      cr_expect(gflops > 0.5);
    }
  }
  t_fini(&t);
}
