// loop_grad_test.c — the recurrence primitive (LOOP) in the interpreter and
// its adjoint (BPTT, grad_loop.c), checked in f64.
//
// Each test builds a small recurrent function with the ir.h builders (an
// Elman RNN, the same reversed, an LSTM-shaped body with two carries and
// gate slices, a GRU-shaped body, a loop whose init and per-step input
// both depend on parameters), reduces its record to a scalar
// BATCH_MEAN(SUM(record * W)) with fixed weights W, and compares the
// gradient of every parameter and input element with central finite
// differences (fd_compare.h). The forward values are also compared with
// the same recurrence unrolled into ordinary primitives, and the IR size
// is checked not to depend on T.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "eval.h"
#include "fd_compare.h"
#include "grad.h"

enum { BATCH = 2, MAXL = 16 };

typedef struct Net {
  Arena arena;
  IrFn *fn;
  int nleaf;
  IrValue *leaf[MAXL];
  double *data[MAXL];
  double *param[MAXL + 1];
  IrValue *root, *grad[MAXL];
  EvalEnv env;
  uint64_t rng;
} Net;

static double uni(Net *n) {
  n->rng = n->rng * 6364136223846793005u + 1442695040888963407u;
  return ((double)(n->rng >> 11) / 9007199254740992.0) * 2 - 1;
}

static IrValue *param(Net *n, Shape s, double scale, bool wrt) {
  int k = 0;
  while (n->param[k])
    k++;
  double *d = arena_alloc(&n->arena, sizeof(double) * (size_t)shape_numel(s));
  for (int64_t i = 0; i < shape_numel(s); i++)
    d[i] = scale * uni(n);
  n->param[k] = d;
  IrValue *v = ir_leaf(n->fn, OP_PARAM, s, false, k, "p", (Loc){0});
  if (wrt) {
    n->leaf[n->nleaf] = v;
    n->data[n->nleaf++] = d;
  }
  return v;
}

static IrValue *input(Net *n, Shape s) {
  double *d = arena_alloc(&n->arena,
                          sizeof(double) * BATCH * (size_t)shape_numel(s));
  for (int64_t i = 0; i < BATCH * shape_numel(s); i++)
    d[i] = uni(n);
  n->env.input = d;
  IrValue *v = ir_leaf(n->fn, OP_INPUT, s, true, 0, "x", (Loc){0});
  n->leaf[n->nleaf] = v;
  n->data[n->nleaf++] = d;
  return v;
}

static Shape M(int64_t a, int64_t b) { return shape_of(2, (int64_t[]){a, b}); }

// root = BATCH_MEAN(SUM(f * W)) with fixed W; gradients of every leaf.
static void finish(Net *n, IrValue *f) {
  IrFn *fn = n->fn;
  Loc l = {0};
  IrValue *w = param(n, f->shape, 1, false);
  n->root = ir_unary(fn, OP_BATCH_MEAN,
                     ir_unary(fn, OP_SUM, ir_binary(fn, OP_MUL, f, w, l), l),
                     l);
  n->env.batch = BATCH;
  n->env.param = n->param;
  grad_of(fn, n->root, n->leaf, n->nleaf, n->grad);
}

static double root_at(void *ctx) {
  Net *n = ctx;
  Arena a = {0};
  double r = eval_fn(&a, n->fn, &n->env)[n->root->id][0];
  arena_free(&a);
  return r;
}

static void check(Net *n, const char *what) {
  Arena a = {0};
  double **res = eval_fn(&a, n->fn, &n->env);
  fd_compare(n, root_at, res, n->nleaf, n->leaf, n->grad, n->data, BATCH,
             1e-6, what);
  arena_free(&a);
}

// An Elman RNN over x [T, n]: h_t = act(x_t W + b + h_{t-1} U), h_0 =
// broadcast(h0). Returns the LOOP (record: every h_t).
static IrValue *rnn(Net *n, IrValue *x, int64_t u, bool reverse, Op act,
                    int64_t bptt, IrValue **U_out) {
  IrFn *fn = n->fn;
  Loc l = {0};
  int64_t T = x->shape.dim[0], k = x->shape.dim[1];
  IrValue *W = param(n, M(k, u), 0.6, true);
  IrValue *b = param(n, shape_vec(u), 0.3, true);
  IrValue *U = param(n, M(u, u), 0.5, true);
  IrValue *h0 = param(n, shape_vec(u), 0.5, true);
  if (U_out)
    *U_out = U;
  IrValue *xs = ir_binary(fn, OP_ADD, ir_binary(fn, OP_MATMUL, x, W, l), b, l);
  IrLoop *L = ir_loop_new(fn->arena, T, reverse);
  L->bptt = bptt;
  IrValue *xt = ir_loop_seq(L, xs, l);
  IrValue *h = ir_loop_carry(
      L, ir_shaped(fn, OP_BROADCAST, h0, h0->shape, true, l), l);
  IrValue *Ub = ir_loop_outer(L, U, l);
  IrFn *B = L->body;
  IrValue *nx = ir_unary(
      B, act, ir_binary(B, OP_ADD, xt, ir_binary(B, OP_MATMUL, h, Ub, l), l),
      l);
  ir_loop_record(L, nx);
  return ir_loop_finish(fn, L, &nx, l);
}

Test(loop, rnn_matches_its_unrolled_form) {
  Net n = {.rng = 11};
  n.fn = ir_fn_new(&n.arena);
  IrValue *x = input(&n, M(5, 3));
  IrValue *U;
  IrValue *loop = rnn(&n, x, 4, false, OP_TANH, 0, &U);
  // The same recurrence unrolled: one slice of xs per step.
  IrFn *fn = n.fn;
  Loc l = {0};
  IrValue *xs = loop->arg[0], *h = loop->arg[1];
  IrValue *hs[5];
  for (int t = 0; t < 5; t++) {
    IrValue *xt = ir_prim(fn, OP_SLICE, (IrValue *[MAX_ARGS]){xs},
                          (Attr){.axis = 0, .start = t, .shape = M(1, 4)}, l);
    xt = ir_shaped(fn, OP_RESHAPE, xt, shape_vec(4), true, l);
    h = ir_unary(fn, OP_TANH,
                 ir_binary(fn, OP_ADD, xt, ir_binary(fn, OP_MATMUL, h, U, l),
                           l),
                 l);
    hs[t] = h;
  }
  n.env.batch = BATCH;
  n.env.param = n.param;
  Arena a = {0};
  double **res = eval_fn(&a, fn, &n.env);
  for (int t = 0; t < 5; t++)
    for (int r = 0; r < BATCH; r++)
      for (int j = 0; j < 4; j++) {
        double want = res[hs[t]->id][r * 4 + j];
        double got = res[loop->id][(r * 5 + t) * 4 + j];
        cr_expect(fabs(want - got) < 1e-12, "step %d row %d unit %d: %g vs %g",
                  t, r, j, got, want);
      }
  arena_free(&a);
  arena_free(&n.arena);
}

Test(loop, rnn_bptt_finite_differences) {
  Net n = {.rng = 1};
  n.fn = ir_fn_new(&n.arena);
  IrValue *loop = rnn(&n, input(&n, M(4, 3)), 3, false, OP_TANH, 0, NULL);
  finish(&n, loop);
  check(&n, "rnn forward");
  arena_free(&n.arena);
}

Test(loop, reversed_rnn_finite_differences) {
  Net n = {.rng = 2};
  n.fn = ir_fn_new(&n.arena);
  IrValue *loop = rnn(&n, input(&n, M(4, 3)), 3, true, OP_SIGMOID, 0, NULL);
  finish(&n, loop);
  check(&n, "rnn reverse");
  arena_free(&n.arena);
}

// Only the last state feeds the loss (a classifier's use).
Test(loop, last_state_finite_differences) {
  Net n = {.rng = 3};
  n.fn = ir_fn_new(&n.arena);
  IrValue *loop = rnn(&n, input(&n, M(5, 2)), 3, false, OP_TANH, 0, NULL);
  IrValue *last = ir_loop_at(n.fn, loop, 0, 4, (Loc){0});
  finish(&n, last);
  check(&n, "rnn last state");
  arena_free(&n.arena);
}

// An LSTM-shaped body: carries h and c, gates sliced out of one [4u]
// pre-activation, records h and c.
Test(loop, lstm_cell_finite_differences) {
  Net n = {.rng = 4};
  n.fn = ir_fn_new(&n.arena);
  IrFn *fn = n.fn;
  Loc l = {0};
  int64_t T = 3, k = 2, u = 2;
  IrValue *x = input(&n, M(T, k));
  IrValue *W = param(&n, M(k, 4 * u), 0.6, true);
  IrValue *b = param(&n, shape_vec(4 * u), 0.3, true);
  IrValue *U = param(&n, M(u, 4 * u), 0.6, true);
  IrValue *xs = ir_binary(fn, OP_ADD, ir_binary(fn, OP_MATMUL, x, W, l), b, l);
  IrLoop *L = ir_loop_new(fn->arena, T, false);
  IrValue *zero = ir_shaped(fn, OP_BROADCAST, ir_const(fn, 0, l),
                            shape_vec(u), true, l);
  IrValue *xt = ir_loop_seq(L, xs, l);
  IrValue *h = ir_loop_carry(L, zero, l), *c = ir_loop_carry(L, zero, l);
  IrValue *Ub = ir_loop_outer(L, U, l);
  IrFn *B = L->body;
  IrValue *z = ir_binary(B, OP_ADD, xt, ir_binary(B, OP_MATMUL, h, Ub, l), l);
  IrValue *g[4];
  for (int i = 0; i < 4; i++)
    g[i] = ir_prim(B, OP_SLICE, (IrValue *[MAX_ARGS]){z},
                   (Attr){.axis = 0, .start = i * u, .shape = shape_vec(u)}, l);
  IrValue *ig = ir_unary(B, OP_SIGMOID, g[0], l);
  IrValue *fg = ir_unary(B, OP_SIGMOID, g[1], l);
  IrValue *gg = ir_unary(B, OP_TANH, g[2], l);
  IrValue *og = ir_unary(B, OP_SIGMOID, g[3], l);
  IrValue *c2 = ir_binary(B, OP_ADD, ir_binary(B, OP_MUL, fg, c, l),
                          ir_binary(B, OP_MUL, ig, gg, l), l);
  IrValue *h2 = ir_binary(B, OP_MUL, og, ir_unary(B, OP_TANH, c2, l), l);
  ir_loop_record(L, h2);
  ir_loop_record(L, c2);
  IrValue *loop = ir_loop_finish(fn, L, (IrValue *[]){h2, c2}, l);
  finish(&n, loop);
  check(&n, "lstm");
  arena_free(&n.arena);
}

// A GRU-shaped body (PyTorch's form): r and z from one [3u] projection,
// the candidate reads r * (h U_n + b_n), an unbatched bias inside the loop.
Test(loop, gru_cell_finite_differences) {
  Net n = {.rng = 5};
  n.fn = ir_fn_new(&n.arena);
  IrFn *fn = n.fn;
  Loc l = {0};
  int64_t T = 3, k = 2, u = 2;
  IrValue *x = input(&n, M(T, k));
  IrValue *W = param(&n, M(k, 3 * u), 0.6, true);
  IrValue *U = param(&n, M(u, 3 * u), 0.6, true);
  IrValue *bn = param(&n, shape_vec(u), 0.4, true);
  IrValue *h0 = param(&n, shape_vec(u), 0.4, true);
  IrValue *xs = ir_binary(fn, OP_MATMUL, x, W, l);
  IrLoop *L = ir_loop_new(fn->arena, T, false);
  IrValue *xt = ir_loop_seq(L, xs, l);
  IrValue *h = ir_loop_carry(
      L, ir_shaped(fn, OP_BROADCAST, h0, h0->shape, true, l), l);
  IrValue *Ub = ir_loop_outer(L, U, l), *bnb = ir_loop_outer(L, bn, l);
  IrFn *B = L->body;
  IrValue *hu = ir_binary(B, OP_MATMUL, h, Ub, l);
  IrValue *xg[3], *hg[3];
  for (int i = 0; i < 3; i++) {
    Attr at = {.axis = 0, .start = i * u, .shape = shape_vec(u)};
    xg[i] = ir_prim(B, OP_SLICE, (IrValue *[MAX_ARGS]){xt}, at, l);
    hg[i] = ir_prim(B, OP_SLICE, (IrValue *[MAX_ARGS]){hu}, at, l);
  }
  IrValue *r = ir_unary(B, OP_SIGMOID, ir_binary(B, OP_ADD, xg[0], hg[0], l), l);
  IrValue *z = ir_unary(B, OP_SIGMOID, ir_binary(B, OP_ADD, xg[1], hg[1], l), l);
  IrValue *cand = ir_unary(
      B, OP_TANH,
      ir_binary(B, OP_ADD, xg[2],
                ir_binary(B, OP_MUL, r, ir_binary(B, OP_ADD, hg[2], bnb, l), l),
                l),
      l);
  // h' = (1 - z) cand + z h
  IrValue *one = ir_const(B, 1, l);
  IrValue *h2 = ir_binary(
      B, OP_ADD, ir_binary(B, OP_MUL, ir_binary(B, OP_SUB, one, z, l), cand, l),
      ir_binary(B, OP_MUL, z, h, l), l);
  ir_loop_record(L, h2);
  IrValue *loop = ir_loop_finish(fn, L, &h2, l);
  finish(&n, loop);
  check(&n, "gru");
  arena_free(&n.arena);
}

// Two loops in sequence (a stacked RNN): the second reads the first's
// record, so its gradient flows through both backward loops.
Test(loop, stacked_finite_differences) {
  Net n = {.rng = 6};
  n.fn = ir_fn_new(&n.arena);
  IrValue *first = rnn(&n, input(&n, M(3, 2)), 3, false, OP_TANH, 0, NULL);
  IrValue *hs = ir_loop_stack(n.fn, first, 0, (Loc){0});
  IrValue *second = rnn(&n, hs, 2, true, OP_TANH, 0, NULL);
  finish(&n, second);
  check(&n, "stacked");
  arena_free(&n.arena);
}

// Truncated BPTT with a window of T is full BPTT except that h0 receives
// no gradient (the window starts at the first step); with a window of 1
// the recurrent weight's gradient keeps only each step's direct terms.
Test(loop, truncated_bptt) {
  double g[3][9];
  for (int which = 0; which < 3; which++) {
    Net n = {.rng = 7};
    n.fn = ir_fn_new(&n.arena);
    IrValue *U;
    int64_t bptt = which == 0 ? 0 : which == 1 ? 4 : 1;
    IrValue *loop = rnn(&n, input(&n, M(4, 2)), 3, false, OP_TANH, bptt, &U);
    finish(&n, loop);
    Arena a = {0};
    double **res = eval_fn(&a, n.fn, &n.env);
    int iu = -1, ih0 = -1;
    for (int i = 0; i < n.nleaf; i++) {
      if (n.leaf[i] == U)
        iu = i;
      if (n.leaf[i]->op == OP_PARAM && n.leaf[i]->attr.index == 3)
        ih0 = i;
    }
    cr_assert(iu >= 0 && ih0 >= 0);
    memcpy(g[which], res[n.grad[iu]->id], sizeof(double) * 9);
    double h0sum = 0;
    for (int j = 0; j < 3; j++)
      h0sum += fabs(res[n.grad[ih0]->id][j]);
    if (which == 0)
      cr_expect_gt(h0sum, 1e-6, "full BPTT reaches h0");
    else
      cr_expect_eq(h0sum, 0, "truncated BPTT cuts h0's gradient");
    if (which == 0)
      check(&n, "full bptt");
    arena_free(&a);
    arena_free(&n.arena);
  }
  double d1 = 0, d4 = 0;
  for (int j = 0; j < 9; j++) {
    d4 = fmax(d4, fabs(g[0][j] - g[1][j]));
    d1 = fmax(d1, fabs(g[0][j] - g[2][j]));
  }
  cr_expect(d4 < 1e-12, "a window of T: U's gradient is full BPTT's");
  cr_expect(d1 > 1e-3, "a window of 1 drops the recurrent terms");
}

// The IR does not grow with the sequence length: the same function, body
// and backward body at T = 28 and T = 280.
Test(loop, ir_size_independent_of_length) {
  int size[2][3];
  for (int i = 0; i < 2; i++) {
    Net n = {.rng = 8};
    n.fn = ir_fn_new(&n.arena);
    IrValue *loop = rnn(&n, input(&n, M(i ? 280 : 28, 4)), 4, false, OP_TANH,
                        0, NULL);
    finish(&n, loop);
    IrValue *back = NULL;
    for (int j = 0; j < n.fn->values.n; j++) {
      IrValue *v = n.fn->values.item[j];
      if (v->op == OP_LOOP && v != loop)
        back = v;
    }
    cr_assert(back, "the gradient is a backward loop");
    cr_expect(back->attr.loop->reverse, "the backward loop runs backwards");
    size[i][0] = n.fn->values.n;
    size[i][1] = loop->attr.loop->body->values.n;
    size[i][2] = back->attr.loop->body->values.n;
    arena_free(&n.arena);
  }
  for (int k = 0; k < 3; k++)
    cr_expect_eq(size[0][k], size[1][k], "part %d: %d values at T=28, %d at "
                 "T=280", k, size[0][k], size[1][k]);
}

// Two loops over the same input, one per direction (bidirectional).
Test(loop, two_directions_finite_differences) {
  Net n = {.rng = 9};
  n.fn = ir_fn_new(&n.arena);
  IrValue *x = input(&n, M(3, 2));
  IrValue *a = rnn(&n, x, 2, false, OP_TANH, 0, NULL);
  IrValue *b = rnn(&n, x, 2, true, OP_TANH, 0, NULL);
  IrValue *la = ir_loop_at(n.fn, a, 0, 2, (Loc){0});
  IrValue *lb = ir_loop_at(n.fn, b, 0, 0, (Loc){0});
  finish(&n, ir_binary(n.fn, OP_CONCAT, la, lb, (Loc){0}));
  check(&n, "two directions");
  arena_free(&n.arena);
}
