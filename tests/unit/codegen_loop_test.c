// codegen_loop_test.c — generated recurrences (codegen_loop.c) against the
// f64 interpreter.
//
// Each module holds a LOOP built by hand: an Elman RNN read at its last
// state, a reversed LSTM-shaped body (two carries, gate slices, every
// step's output), a GRU-shaped body with an unbatched bias inside the
// step, and a body with softmax, sums, concatenation, reshapes and the
// step index (truncated BPTT). Their gradients (backward loops) come from
// grad_emit, as in the driver. Predictions and losses on two batches, and
// one SGD step's parameter updates (hence every gradient), are compared
// with eval_fn. Batches of 19 and 3 rows cover several row blocks, a
// partial block and several tasks; state sizes of 18 and 20 cover vector
// tails.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NNC_BINARY_DIR
#define NNC_BINARY_DIR "."
#endif
#define CG_SCRATCH "/tmp/nnc_cgl_XXXXXX"
#include "codegen/testlib.h"

static IrValue *param(IrModule *m, const char *name, Shape s) {
  Arena *a = m->fn->arena;
  IrParam *p = arena_alloc(a, sizeof *p);
  p->name = name;
  p->shape = s;
  p->init = (Init){INIT_UNIFORM, -0.5, 0.5};
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

// One SGD step on batch 0: the update is -lr times the gradient.
static void check_step(T *t, const IrModule *m, const char *exe, const Data *d,
                       double lr) {
  size_t n;
  char *out =
      run(t, exe, (HarnessIn){.mode = H_TRAIN, .epochs = 1, .stop_after = 1}, d,
          &n);
  const float *p1 = (const float *)(out + 8);
  double **ref =
      reference_key(&t->arena, m, d, 0, d->params, harness_step_key(1));
  int64_t off = 0;
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    int64_t k = shape_numel(p->shape);
    double *want = ref[p->grad->id], mean = 0;
    for (int64_t j = 0; j < k; j++)
      mean += fabs(want[j]) / (double)k;
    for (int64_t j = 0; j < k; j++) {
      double g = (d->params[off + j] - p1[off + j]) / lr;
      double ulp = 4 * fabs(d->params[off + j]) * 0x1p-23 / lr;
      cr_assert(fabs(g - want[j]) <= 1e-4 * fmax(fabs(want[j]), mean) + ulp,
                "%s: gradient of %s[%lld]: got %.9g, want %.9g", m->name,
                p->name, (long long)j, g, want[j]);
    }
    off += k;
  }
}

// The loss SUM(output * label), SGD 0.1.
static void finish(IrModule *m, IrValue *out) {
  m->output = out;
  m->label = ir_leaf(m->fn, OP_LABEL, out->shape, true, 0, "y", L);
  m->loss = un(m, OP_SUM, bin(m, OP_MUL, m->output, m->label));
  ir_main_step(m)->objective = un(m, OP_BATCH_MEAN, m->loss);
  sgd(m, 0.1);
}

// x [T, n] -> xs = x W + b [T, width]; a loop over xs with the carries
// given; the body is built by `body`.
typedef IrValue *Body(IrModule *m, IrLoop *l, IrValue *xt, IrValue **carry,
                      IrValue **next);

static IrModule *rnn_module(Arena *a, const char *name, int64_t T, int64_t n,
                            int64_t width, int64_t u, int ncarry, bool reverse,
                            int64_t bptt, Body *body, bool last) {
  IrModule *m = module_new(a, name);
  m->input = ir_leaf(m->fn, OP_INPUT, mat(T, n), true, 0, "x", L);
  IrValue *W = param(m, "W", mat(n, width)), *b = param(m, "b", shape_vec(width));
  IrValue *xs = bin(m, OP_ADD, bin(m, OP_MATMUL, m->input, W), b);
  IrLoop *l = ir_loop_new(a, T, reverse);
  l->bptt = bptt;
  IrValue *xt = ir_loop_seq(l, xs, L);
  IrValue *carry[MAX_ARGS], *next[MAX_ARGS];
  IrValue *h0 = param(m, "h0", shape_vec(u));
  for (int k = 0; k < ncarry; k++)
    carry[k] = ir_loop_carry(
        l, ir_shaped(m->fn, OP_BROADCAST, h0, h0->shape, true, L), L);
  IrValue *rec = body(m, l, xt, carry, next);
  ir_loop_record(l, rec);
  IrValue *loop = ir_loop_finish(m->fn, l, next, L);
  IrValue *out = last ? ir_loop_at(m->fn, loop, 0, ir_loop_last(l), L)
                      : ir_loop_stack(m->fn, loop, 0, L);
  finish(m, out);
  return m;
}

static IrValue *outer_param(IrModule *m, IrLoop *l, const char *name,
                            Shape s) {
  return ir_loop_outer(l, param(m, name, s), L);
}

static IrValue *slice(IrFn *B, IrValue *x, int64_t start, int64_t n) {
  return ir_prim(B, OP_SLICE, (IrValue *[MAX_ARGS]){x},
                 (Attr){.axis = 0, .start = start, .shape = shape_vec(n)}, L);
}

// h' = tanh(x + h U)
static IrValue *elman(IrModule *m, IrLoop *l, IrValue *xt, IrValue **carry,
                      IrValue **next) {
  IrFn *B = l->body;
  int64_t u = carry[0]->shape.dim[0];
  IrValue *U = outer_param(m, l, "U", mat(u, u));
  next[0] = ir_unary(
      B, OP_TANH,
      ir_binary(B, OP_ADD, xt, ir_binary(B, OP_MATMUL, carry[0], U, L), L), L);
  return next[0];
}

static IrValue *lstm(IrModule *m, IrLoop *l, IrValue *xt, IrValue **carry,
                     IrValue **next) {
  IrFn *B = l->body;
  int64_t u = carry[0]->shape.dim[0];
  IrValue *U = outer_param(m, l, "U", mat(u, 4 * u));
  IrValue *z =
      ir_binary(B, OP_ADD, xt, ir_binary(B, OP_MATMUL, carry[0], U, L), L);
  IrValue *i = ir_unary(B, OP_SIGMOID, slice(B, z, 0, u), L);
  IrValue *f = ir_unary(
      B, OP_SIGMOID, ir_binary(B, OP_ADD, slice(B, z, u, u), ir_const(B, 1, L), L),
      L);
  IrValue *g = ir_unary(B, OP_TANH, slice(B, z, 2 * u, u), L);
  IrValue *o = ir_unary(B, OP_SIGMOID, slice(B, z, 3 * u, u), L);
  IrValue *c2 = ir_binary(B, OP_ADD, ir_binary(B, OP_MUL, f, carry[1], L),
                          ir_binary(B, OP_MUL, i, g, L), L);
  next[0] = ir_binary(B, OP_MUL, o, ir_unary(B, OP_TANH, c2, L), L);
  next[1] = c2;
  return next[0];
}

static IrValue *gru(IrModule *m, IrLoop *l, IrValue *xt, IrValue **carry,
                    IrValue **next) {
  IrFn *B = l->body;
  IrValue *h = carry[0];
  int64_t u = h->shape.dim[0];
  IrValue *U = outer_param(m, l, "U", mat(u, 3 * u));
  IrValue *bn = outer_param(m, l, "bn", shape_vec(u));
  IrValue *hu = ir_binary(B, OP_MATMUL, h, U, L);
  IrValue *r = ir_unary(
      B, OP_SIGMOID,
      ir_binary(B, OP_ADD, slice(B, xt, 0, u), slice(B, hu, 0, u), L), L);
  IrValue *z = ir_unary(
      B, OP_SIGMOID,
      ir_binary(B, OP_ADD, slice(B, xt, u, u), slice(B, hu, u, u), L), L);
  IrValue *cand = ir_unary(
      B, OP_TANH,
      ir_binary(B, OP_ADD, slice(B, xt, 2 * u, u),
                ir_binary(B, OP_MUL, r,
                          ir_binary(B, OP_ADD, slice(B, hu, 2 * u, u), bn, L),
                          L),
                L),
      L);
  IrValue *one = ir_const(B, 1, L);
  next[0] = ir_binary(
      B, OP_ADD,
      ir_binary(B, OP_MUL, ir_binary(B, OP_SUB, one, z, L), cand, L),
      ir_binary(B, OP_MUL, z, h, L), L);
  return next[0];
}

// A mixed body: softmax attention-like weights, a per-row sum, a concat,
// a 2-D reshape, the step index, MATMUL_NT against an outer weight.
static IrValue *mixed(IrModule *m, IrLoop *l, IrValue *xt, IrValue **carry,
                      IrValue **next) {
  IrFn *B = l->body;
  IrValue *h = carry[0];
  int64_t u = h->shape.dim[0];  // 6
  IrValue *V = outer_param(m, l, "V", mat(u, u));
  IrValue *p = ir_unary(B, OP_SOFTMAX, ir_binary(B, OP_ADD, xt, h, L), L);
  IrValue *s = ir_unary(B, OP_SUM, ir_binary(B, OP_MUL, p, h, L), L);
  IrValue *q = ir_binary(B, OP_MATMUL_NT, h, V, L);
  IrValue *cat = ir_binary(B, OP_CONCAT, slice(B, q, 0, u / 2),
                           slice(B, p, u / 2, u - u / 2), L);
  IrValue *sq = ir_shaped(B, OP_RESHAPE, cat, mat(2, u / 2), true, L);
  IrValue *sq2 = ir_binary(B, OP_MUL, sq, sq, L);
  IrValue *flat = ir_shaped(B, OP_RESHAPE, sq2, shape_vec(u), true, L);
  IrValue *t = ir_binary(B, OP_MUL, ir_loop_index(l, L), ir_const(B, 0.1, L), L);
  next[0] = ir_unary(
      B, OP_TANH,
      ir_binary(B, OP_ADD, ir_binary(B, OP_ADD, flat, ir_binary(B, OP_MUL, s, t, L), L),
                ir_binary(B, OP_MUL, h, ir_const(B, 0.5, L), L), L),
      L);
  return next[0];
}

static void check_module(IrModule *m) {
  T t;
  t_init(&t);
  prepare(m, &t.ctx, true);
  char *exe = build(&t, m, 2);
  Data d = data_make(&t.arena, m, 2, (int64_t[]){19, 3}, 19, false, F_UNIFORM,
                     false, 5);
  check_infer(&t, m, exe, &d, 0);
  check_step(&t, m, exe, &d, 0.1);
  t_fini(&t);
}

Test(codegen_loop, elman_last_state) {
  Arena a = {0};
  check_module(rnn_module(&a, "elman", 5, 3, 20, 20, 1, false, 0, elman, true));
  arena_free(&a);
}

Test(codegen_loop, lstm_reversed_sequences) {
  Arena a = {0};
  check_module(rnn_module(&a, "lstm", 4, 3, 72, 18, 2, true, 0, lstm, false));
  arena_free(&a);
}

Test(codegen_loop, gru_with_inner_bias) {
  Arena a = {0};
  check_module(rnn_module(&a, "gru", 4, 5, 51, 17, 1, false, 0, gru, true));
  arena_free(&a);
}

Test(codegen_loop, mixed_body_truncated_bptt) {
  Arena a = {0};
  check_module(rnn_module(&a, "mixed", 6, 2, 6, 6, 1, false, 2, mixed, false));
  arena_free(&a);
}

// Two loops in sequence: the second reads the first's record (widened by
// the saved values of its own backward loop) through a matmul.
Test(codegen_loop, stacked) {
  Arena a = {0};
  IrModule *m = module_new(&a, "stacked");
  int64_t T = 4, n = 3, u = 5, v = 4;
  m->input = ir_leaf(m->fn, OP_INPUT, mat(T, n), true, 0, "x", L);
  IrValue *h = m->input;
  for (int layer = 0; layer < 2; layer++) {
    int64_t in = layer ? u : n, un = layer ? v : u;
    IrValue *W = param(m, layer ? "W2" : "W1", mat(in, 3 * un));
    IrValue *xs = bin(m, OP_MATMUL, h, W);
    IrLoop *l = ir_loop_new(&a, T, false);
    IrValue *xt = ir_loop_seq(l, xs, L);
    IrValue *carry = ir_loop_carry(
        l, ir_shaped(m->fn, OP_BROADCAST, ir_const(m->fn, 0, L),
                     shape_vec(un), true, L),
        L);
    IrValue *next;
    gru(m, l, xt, &carry, &next);
    ir_loop_record(l, next);
    IrValue *loop = ir_loop_finish(m->fn, l, &next, L);
    h = layer ? ir_loop_at(m->fn, loop, 0, T - 1, L)
              : ir_loop_stack(m->fn, loop, 0, L);
  }
  finish(m, h);
  check_module(m);
  arena_free(&a);
}

// Gates of 16 units: each gate's nonlinearity (the forget gate's + 1 and
// sigmoid) runs in the recurrent matmul's epilogue, on 16-aligned slices.
Test(codegen_loop, lstm_gates_in_the_epilogue) {
  Arena a = {0};
  check_module(rnn_module(&a, "lstm16", 3, 3, 64, 16, 2, false, 0, lstm, true));
  arena_free(&a);
}

// tanh is generated inline (no tanhf call per lane; the recurrent layers'
// gates use it): against libm in f64 from 0 to beyond saturation, both
// signs, NaN and infinities, within a few ulp.
Test(codegen_loop, tanh_edges) {
  enum { N = 48 };
  float xs[N];
  static const float fixed[] = {0,      1e-8f, 3e-4f, 4e-4f, 5e-4f,  0.01f,
                                0.1f,   0.5f,  0.9f,  1,     1.5f,   2,
                                3,      4.5f,  6,     7.9f,  7.95f,  9,
                                20,     1e30f, INFINITY, NAN};
  int nf = sizeof fixed / sizeof *fixed;
  for (int i = 0; i < N; i++)
    xs[i] = i < nf ? fixed[i] : 0.17f * (float)(i - nf) * (i % 2 ? 1 : -1);
  T t;
  t_init(&t);
  IrModule *m = module_new(&t.arena, "tanh");
  m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(N), true, 0, "x", L);
  m->output = un(m, OP_TANH, m->input);
  ir_renumber(m->fn);
  char *exe = build(&t, m, 3);
  Data d = data_make(&t.arena, m, 1, (int64_t[]){2}, 2, false, F_UNIFORM,
                     false, 7);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < N; i++)
      d.x[r * N + i] = r ? -xs[i] : xs[i];
  size_t n;
  char *out = run(&t, exe, (HarnessIn){.mode = H_INFER}, &d, &n);
  const float *got = (const float *)out;
  for (int i = 0; i < 2 * N; i++) {
    double x = d.x[i], want = tanh(x);
    bool ok = isnan(want) ? isnan(got[i])
                          : fabs(got[i] - want) <= 4 * 0x1p-24 * fabs(want) +
                                                       0x1p-149;
    cr_expect(ok, "tanh(%.9g): got %.9g, want %.9g", x, got[i], want);
  }
  t_fini(&t);
}
