// eval_test.c — direct semantic checks of the f64 reference interpreter.
//
// Small hand-computed examples for each family of primitives: matrix
// products over the rows of a batched rank-2 input, broadcasting (including
// over the batch axis), sum_to, reductions, softmax rows, the stability of
// log_softmax on large inputs, and both rules of CORRECT. grad_test.c and
// opt_test.c trust eval.c, so its semantics are pinned here by hand.
#include <criterion/criterion.h>
#include <math.h>

#include "eval.h"

static const Loc L = {0};

static Shape sh(int rank, int64_t d0, int64_t d1) {
  return shape_of(rank, (int64_t[]){d0, d1});
}

static void expect_values(const double *got, const double *want, int n,
                          const char *what) {
  for (int i = 0; i < n; i++)
    cr_expect(fabs(got[i] - want[i]) <= 1e-12 * fmax(1, fabs(want[i])),
              "%s[%d]: got %.17g, want %.17g", what, i, got[i], want[i]);
}

// x: batched [2, 3] with B = 2 is a 4 x 3 matrix of rows.
Test(eval, matmul_rows_of_a_batched_rank2_input) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, sh(2, 2, 3), true, 0, "x", L);
  IrValue *w = ir_leaf(fn, OP_PARAM, sh(2, 3, 2), false, 0, "w", L);
  IrValue *y = ir_binary(fn, OP_MATMUL, x, w, L);
  IrValue *v = ir_leaf(fn, OP_PARAM, sh(2, 2, 3), false, 1, "v", L);
  IrValue *nt = ir_binary(fn, OP_MATMUL_NT, x, v, L);   // [B, 2, 2]
  IrValue *tn = ir_binary(fn, OP_MATMUL_TN, x, y, L);   // [3, 2]
  cr_assert(y->batched && shape_eq(y->shape, sh(2, 2, 2)));
  cr_assert(!tn->batched && shape_eq(tn->shape, sh(2, 3, 2)));

  double xs[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  double ws[6] = {1, 0, 0, 1, 1, 1};  // columns: x0 + x2, x1 + x2
  double vs[6] = {1, 1, 1, 0, 0, 1};  // rows: x0 + x1 + x2, x2
  double *param[2] = {ws, vs};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 2, .input = xs,
                                            .param = param});
  double want_y[8] = {4, 5, 10, 11, 16, 17, 22, 23};
  expect_values(r[y->id], want_y, 8, "matmul");
  double want_nt[8] = {6, 3, 15, 6, 24, 9, 33, 12};
  expect_values(r[nt->id], want_nt, 8, "matmul_nt");
  // tn[i][j] = sum over the 4 rows of x[r][i] * y[r][j]
  double want_tn[6];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++) {
      want_tn[i * 2 + j] = 0;
      for (int row = 0; row < 4; row++)
        want_tn[i * 2 + j] += xs[row * 3 + i] * want_y[row * 2 + j];
    }
  expect_values(r[tn->id], want_tn, 6, "matmul_tn");
  arena_free(&a);
}

// batched [3] + unbatched [2, 1] -> batched [2, 3]
Test(eval, broadcasting_over_axes_and_the_batch) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, shape_vec(3), true, 0, "x", L);
  IrValue *p = ir_leaf(fn, OP_PARAM, sh(2, 2, 1), false, 0, "p", L);
  IrValue *s = ir_binary(fn, OP_ADD, x, p, L);
  IrValue *d = ir_binary(fn, OP_SUB, ir_const(fn, 1, L), x, L);
  IrValue *b = ir_shaped(fn, OP_BROADCAST, p, sh(2, 2, 3), true, L);
  cr_assert(s->batched && shape_eq(s->shape, sh(2, 2, 3)));

  double xs[6] = {1, 2, 3, 4, 5, 6}, ps[2] = {10, 20};
  double *param[1] = {ps};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 2, .input = xs,
                                            .param = param});
  double want[12] = {11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26};
  expect_values(r[s->id], want, 12, "add");
  double want_d[6] = {0, -1, -2, -3, -4, -5};
  expect_values(r[d->id], want_d, 6, "sub");
  double want_b[12] = {10, 10, 10, 20, 20, 20, 10, 10, 10, 20, 20, 20};
  expect_values(r[b->id], want_b, 12, "broadcast");
  arena_free(&a);
}

Test(eval, sum_to_undoes_each_kind_of_broadcast) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, sh(2, 2, 3), true, 0, "x", L);
  IrValue *to_vec = ir_shaped(fn, OP_SUM_TO, x, shape_vec(3), false, L);
  IrValue *keep = ir_shaped(fn, OP_SUM_TO, x, sh(2, 2, 1), true, L);
  IrValue *rows = ir_shaped(fn, OP_SUM_TO, x, sh(2, 2, 3), false, L);
  IrValue *all = ir_shaped(fn, OP_SUM_TO, x, shape_scalar(), false, L);
  IrValue *sum = ir_unary(fn, OP_SUM, x, L);
  IrValue *mean = ir_unary(fn, OP_MEAN, x, L);
  IrValue *bm = ir_unary(fn, OP_BATCH_MEAN, x, L);

  double xs[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 2, .input = xs});
  expect_values(r[to_vec->id], (double[]){22, 26, 30}, 3, "sum_to [3]");
  expect_values(r[keep->id], (double[]){6, 15, 24, 33}, 4, "sum_to [B,2,1]");
  expect_values(r[rows->id], (double[]){8, 10, 12, 14, 16, 18}, 6,
                "sum_to [2,3]");
  expect_values(r[all->id], (double[]){78}, 1, "sum_to []");
  expect_values(r[sum->id], (double[]){21, 57}, 2, "sum");
  expect_values(r[mean->id], (double[]){3.5, 9.5}, 2, "mean");
  expect_values(r[bm->id], (double[]){4, 5, 6, 7, 8, 9}, 6, "batch_mean");
  arena_free(&a);
}

Test(eval, softmax_rows_sum_to_one) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, sh(2, 2, 4), true, 0, "x", L);
  IrValue *s = ir_unary(fn, OP_SOFTMAX, x, L);
  double xs[24];
  for (int i = 0; i < 24; i++)
    xs[i] = sin(i * 1.7) * 3;
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 3, .input = xs});
  for (int row = 0; row < 6; row++) {
    double total = 0;
    for (int j = 0; j < 4; j++) {
      double p = r[s->id][row * 4 + j];
      cr_expect(p > 0 && p < 1);
      total += p;
    }
    cr_expect(fabs(total - 1) < 1e-14, "row %d sums to %.17g", row, total);
    // the largest logit has the largest probability
    int arg = 0;
    for (int j = 1; j < 4; j++)
      arg = xs[row * 4 + j] > xs[row * 4 + arg] ? j : arg;
    for (int j = 0; j < 4; j++)
      cr_expect(r[s->id][row * 4 + arg] >= r[s->id][row * 4 + j]);
  }
  arena_free(&a);
}

// exp(1000) overflows; the shifted form does not.
Test(eval, log_softmax_is_stable_for_large_inputs) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, shape_vec(3), true, 0, "x", L);
  IrValue *ls = ir_unary(fn, OP_LOG_SOFTMAX, x, L);
  IrValue *s = ir_unary(fn, OP_SOFTMAX, x, L);
  double xs[6] = {1000, 1001, 1002, -1000, -1001, -1002};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 2, .input = xs});
  double lse = log(1 + exp(-1) + exp(-2));
  double want[6] = {-2 - lse, -1 - lse, -lse, -lse, -1 - lse, -2 - lse};
  expect_values(r[ls->id], want, 6, "log_softmax");
  for (int i = 0; i < 6; i++)
    cr_expect(isfinite(r[s->id][i]) &&
              fabs(r[s->id][i] - exp(want[i])) < 1e-15);
  arena_free(&a);
}

Test(eval, correct_by_argmax_and_by_threshold) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *p = ir_leaf(fn, OP_INPUT, shape_vec(3), true, 0, "x", L);
  IrValue *y = ir_leaf(fn, OP_LABEL, shape_vec(3), true, 0, "y", L);
  IrValue *c = ir_prim(fn, OP_CORRECT, (IrValue *[]){p, y}, (Attr){0}, L);
  // rows: match; mismatch; a tie in the prediction (first max wins)
  double ps[9] = {0.1, 0.7, 0.2, 0.5, 0.3, 0.2, 0.4, 0.1, 0.4};
  double ys[9] = {0, 1, 0, 0, 0, 1, 1, 0, 0};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 3, .input = ps,
                                            .label = ys});
  expect_values(r[c->id], (double[]){1, 0, 1}, 3, "argmax");

  IrFn *fn1 = ir_fn_new(&a);
  IrValue *p1 = ir_leaf(fn1, OP_INPUT, shape_vec(1), true, 0, "x", L);
  IrValue *y1 = ir_leaf(fn1, OP_LABEL, shape_vec(1), true, 0, "y", L);
  IrValue *c1 = ir_prim(fn1, OP_CORRECT, (IrValue *[]){p1, y1},
                        (Attr){.num = 0.0}, L);
  IrValue *n1 = ir_unary(fn1, OP_SUM,
                         ir_shaped(fn1, OP_SUM_TO, c1, shape_scalar(), false,
                                   L),
                         L);
  double p1s[4] = {0.3, -0.2, 2.0, -1.0}, y1s[4] = {1, 1, 0, 0};
  r = eval_fn(&a, fn1, &(EvalEnv){.batch = 4, .input = p1s, .label = y1s});
  expect_values(r[c1->id], (double[]){1, 0, 0, 1}, 4, "threshold");
  expect_values(r[n1->id], (double[]){2}, 1, "count");
  arena_free(&a);
}

Test(eval, elementwise_and_leaves) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_PARAM, shape_vec(4), false, 0, "x", L);
  IrValue *t = ir_leaf(fn, OP_ARG, shape_scalar(), false, 1, "t", L);
  IrValue *bs = ir_leaf(fn, OP_BATCH_SIZE, shape_scalar(), false, 0, NULL, L);
  struct { Op op; double want[4]; } un[] = {
      {OP_NEG, {2, 0.5, 0, -3}},   {OP_RELU, {0, 0, 0, 3}},
      {OP_STEP, {0, 0, 0, 1}},     {OP_ABS, {2, 0.5, 0, 3}},
      {OP_SIGN, {-1, -1, 0, 1}},   {OP_EXP, {exp(-2), exp(-0.5), 1, exp(3)}},
      {OP_TANH, {tanh(-2), tanh(-0.5), 0, tanh(3)}},
      {OP_SIGMOID, {1 / (1 + exp(2)), 1 / (1 + exp(0.5)), 0.5,
                    1 / (1 + exp(-3))}},
  };
  IrValue *uv[8];
  for (int i = 0; i < 8; i++)
    uv[i] = ir_unary(fn, un[i].op, x, L);
  IrValue *mx = ir_binary(fn, OP_MAX, x, t, L);
  IrValue *mn = ir_binary(fn, OP_MIN, x, t, L);
  IrValue *gt = ir_binary(fn, OP_GT, x, t, L);
  IrValue *pw = ir_binary(fn, OP_POW, t, x, L);
  IrValue *dv = ir_binary(fn, OP_DIV, x, bs, L);
  IrValue *rs = ir_shaped(fn, OP_RESHAPE, x, sh(2, 2, 2), false, L);

  double xs[4] = {-2, -0.5, 0, 3}, args[2] = {0, -0.5};
  double *param[1] = {xs};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 5, .param = param,
                                            .arg = args});
  for (int i = 0; i < 8; i++)
    expect_values(r[uv[i]->id], un[i].want, 4, prims[un[i].op].name);
  expect_values(r[t->id], (double[]){-0.5}, 1, "arg");
  expect_values(r[bs->id], (double[]){5}, 1, "batch_size");
  expect_values(r[mx->id], (double[]){-0.5, -0.5, 0, 3}, 4, "max");
  expect_values(r[mn->id], (double[]){-2, -0.5, -0.5, -0.5}, 4, "min");
  expect_values(r[gt->id], (double[]){0, 0, 1, 1}, 4, "gt");
  cr_expect_eq(r[pw->id][0], 4);
  cr_expect(isnan(r[pw->id][1]));  // (-0.5)^-0.5 is not real
  cr_expect_eq(r[pw->id][2], 1);
  cr_expect_eq(r[pw->id][3], -0.125);
  expect_values(r[dv->id], (double[]){-0.4, -0.1, 0, 0.6}, 4, "div");
  expect_values(r[rs->id], xs, 4, "reshape");
  arena_free(&a);
}
