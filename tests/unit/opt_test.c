// opt_test.c — opt_simplify, kernel_fuse and weight_layout.
//
// Each rewrite (folding, identities and the cases where an identity must not
// fire, CSE, DCE, log(softmax) -> log_softmax) is checked on a small module
// built by hand. Then the results of every root are compared, with eval.c,
// before and after opt_simplify on a two-layer MLP with its gradients from
// grad_emit and an optimizer program, and on randomly generated element-wise
// graphs: they must be identical (bit for bit, or both NaN). Finally
// kernel_fuse must mark exactly the values the fusion rule allows.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "eval.h"
#include "grad.h"
#include "opt.h"

static const Loc L = {0};
enum { BATCH = 3, MAX_ROOTS = 64 };

// ---- building modules by hand -----------------------------------------------
typedef struct Fixture {
  Arena arena;
  IrModule m;
  Ctx ctx;
} Fixture;

static Fixture *fixture_new(void) {
  Fixture *f = calloc(1, sizeof *f);
  f->m.name = "m";
  f->m.fn = ir_fn_new(&f->arena);
  f->ctx.arena = &f->arena;
  return f;
}

static void fixture_free(Fixture *f) {
  arena_free(&f->arena);
  free(f);
}

static IrValue *param(Fixture *f, const char *name, Shape s) {
  IrParam *p = arena_alloc(&f->arena, sizeof *p);
  p->name = name;
  p->shape = s;
  p->value = ir_leaf(f->m.fn, OP_PARAM, s, false, f->m.params.n, name, L);
  ptrvec_push(&f->arena, &f->m.params, p);
  f->m.ntrainable = f->m.params.n;
  return p->value;
}

static Shape sh2(int64_t a, int64_t b) {
  return shape_of(2, (int64_t[]){a, b});
}

static IrValue *cst(Fixture *f, double c) { return ir_const(f->m.fn, c, L); }
static IrValue *un(Fixture *f, Op op, IrValue *x) {
  return ir_unary(f->m.fn, op, x, L);
}
static IrValue *bin(Fixture *f, Op op, IrValue *a, IrValue *b) {
  return ir_binary(f->m.fn, op, a, b, L);
}

static int count_op(const IrFn *fn, Op op) {
  int n = 0;
  for (int i = 0; i < fn->values.n; i++)
    n += ((IrValue *)fn->values.item[i])->op == op;
  return n;
}

static bool in_fn(const IrFn *fn, const IrValue *v) {
  return v->id >= 0 && v->id < fn->values.n && fn->values.item[v->id] == v;
}

// Every value is numbered by position, arguments come first, and every
// pointer the module holds is a value of the right function.
static void check_module(const IrModule *m) {
  static const IrStep none;
  const IrStep *st = m->nsteps ? &m->steps[0] : &none;
  const IrFn *fns[2] = {m->fn, st->opt.fn};
  for (int k = 0; k < 2; k++) {
    if (!fns[k])
      continue;
    for (int i = 0; i < fns[k]->values.n; i++) {
      IrValue *v = fns[k]->values.item[i];
      cr_assert_eq(v->id, i);
      for (int j = 0; j < v->narg; j++)
        cr_assert(in_fn(fns[k], v->arg[j]) && v->arg[j]->id < i);
    }
  }
  const IrValue *held[] = {m->input, m->label, m->output, m->loss,
                           st->objective, m->correct};
  for (size_t i = 0; i < sizeof held / sizeof held[0]; i++)
    cr_assert(!held[i] || in_fn(m->fn, held[i]));
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    cr_assert(in_fn(m->fn, p->value));
    cr_assert(!p->grad || in_fn(m->fn, p->grad));
  }
  if (st->opt.fn) {
    cr_assert(in_fn(st->opt.fn, st->opt.new_p));
    for (int i = 0; i < st->opt.nstate; i++)
      cr_assert(in_fn(st->opt.fn, st->opt.new_state[i]));
  }
}

// ---- the rewrites -----------------------------------------------------------
Test(opt, constant_folding) {
  Fixture *f = fixture_new();
  IrValue *x = f->m.input = ir_leaf(f->m.fn, OP_INPUT, shape_vec(3), true, 0,
                                    "x", L);
  IrValue *five = bin(f, OP_ADD, cst(f, 2), cst(f, 3));
  IrValue *e = un(f, OP_EXP, un(f, OP_LOG, cst(f, 2)));
  f->m.output = bin(f, OP_MUL, x, five);
  f->m.loss = bin(f, OP_MUL, x, e);
  // a broadcast constant is not a scalar: it stays
  f->m.correct = ir_shaped(f->m.fn, OP_BROADCAST, cst(f, 4), shape_vec(3),
                           false, L);
  opt_simplify(&f->m, &f->ctx);
  check_module(&f->m);

  IrValue *c = f->m.output->arg[1];
  cr_expect_eq(c->op, OP_CONST);
  cr_expect_eq(c->attr.num, 5);
  cr_expect_eq(f->m.loss->arg[1]->op, OP_CONST);
  cr_expect_eq(f->m.loss->arg[1]->attr.num, exp(log(2.0)));
  cr_expect_eq(count_op(f->m.fn, OP_ADD), 0);
  cr_expect_eq(count_op(f->m.fn, OP_LOG), 0);
  cr_expect_eq(f->m.correct->op, OP_BROADCAST);
  fixture_free(f);
}

// Each root is an identity of x (or p); opt must return that operand.
Test(opt, algebraic_identities) {
  Fixture *f = fixture_new();
  IrValue *x = f->m.input = ir_leaf(f->m.fn, OP_INPUT, shape_vec(3), true, 0,
                                    "x", L);
  IrValue *p = param(f, "p", sh2(2, 3));
  IrValue *s = param(f, "s", shape_scalar());
  IrValue *id[] = {
      bin(f, OP_MUL, x, cst(f, 1)),  bin(f, OP_MUL, cst(f, 1), x),
      bin(f, OP_ADD, x, cst(f, 0)),  bin(f, OP_ADD, cst(f, 0), x),
      bin(f, OP_SUB, x, cst(f, 0)),  bin(f, OP_DIV, x, cst(f, 1)),
      bin(f, OP_POW, x, cst(f, 1)),  un(f, OP_NEG, un(f, OP_NEG, x)),
      bin(f, OP_MUL, p, ir_shaped(f->m.fn, OP_BROADCAST, cst(f, 1),
                                  sh2(2, 3), false, L)),
      ir_shaped(f->m.fn, OP_SUM_TO, x, shape_vec(3), true, L),
  };
  IrValue *want[] = {x, x, x, x, x, x, x, x, p, x};
  int n = sizeof id / sizeof id[0];
  // The ones that must stay: dropping them would drop a broadcast.
  IrValue *stay[] = {
      bin(f, OP_MUL, x, cst(f, 0)),              // [B, 3], the 0 is a scalar
      bin(f, OP_MUL, s, ir_shaped(f->m.fn, OP_BROADCAST, cst(f, 1),
                                  sh2(2, 3), false, L)),  // s is a scalar
      bin(f, OP_ADD, s, x),                       // not an identity at all
      bin(f, OP_SUB, cst(f, 0), x),               // 0 - x is not x
  };
  IrValue *zero = bin(f, OP_MUL, s, cst(f, 0));  // scalar * 0 -> 0
  int nstay = sizeof stay / sizeof stay[0];

  IrParam *slot[16];
  for (int i = 0; i < n + nstay + 1; i++) {
    slot[i] = arena_alloc(&f->arena, sizeof *slot[i]);
    slot[i]->name = "root";
    slot[i]->value = p;
    slot[i]->grad = i < n ? id[i] : i < n + nstay ? stay[i - n] : zero;
    ptrvec_push(&f->arena, &f->m.params, slot[i]);
  }
  opt_simplify(&f->m, &f->ctx);
  check_module(&f->m);
  for (int i = 0; i < n; i++)
    cr_expect_eq(slot[i]->grad, want[i], "identity %d was not removed", i);
  for (int i = 0; i < nstay; i++)
    cr_expect_eq(slot[n + i]->grad, stay[i], "value %d must stay", i);
  cr_expect_eq(slot[n + nstay]->grad->op, OP_CONST);
  cr_expect_eq(slot[n + nstay]->grad->attr.num, 0);
  fixture_free(f);
}

Test(opt, common_subexpressions) {
  Fixture *f = fixture_new();
  IrValue *x = f->m.input = ir_leaf(f->m.fn, OP_INPUT, shape_vec(3), true, 0,
                                    "x", L);
  IrValue *w = param(f, "w", sh2(3, 4));
  IrValue *a = bin(f, OP_MATMUL, x, w), *b = bin(f, OP_MATMUL, x, w);
  IrValue *ta = un(f, OP_TANH, a), *tb = un(f, OP_TANH, b);
  f->m.output = bin(f, OP_ADD, ta, tb);
  // equal constants merge; 0 and -0 are different values
  IrValue *z = bin(f, OP_ADD, bin(f, OP_MUL, x, cst(f, 2)),
                   bin(f, OP_MUL, x, cst(f, 2)));
  IrValue *zn = bin(f, OP_SUB, bin(f, OP_MUL, x, cst(f, 0.0)),
                    bin(f, OP_MUL, x, cst(f, -0.0)));
  f->m.loss = bin(f, OP_ADD, z, zn);
  // the same argument summed to different targets stays apart
  f->m.correct = bin(
      f, OP_ADD, ir_shaped(f->m.fn, OP_SUM_TO, a, shape_vec(4), false, L),
      ir_shaped(f->m.fn, OP_SUM_TO, a, shape_scalar(), false, L));
  // two parameters of the same shape are different leaves
  IrValue *w2 = param(f, "w2", sh2(3, 4));
  ir_main_step(&f->m)->objective =
      bin(f, OP_ADD, un(f, OP_SUM, w), un(f, OP_SUM, w2));
  opt_simplify(&f->m, &f->ctx);
  check_module(&f->m);
  cr_expect_eq(count_op(f->m.fn, OP_MATMUL), 1);
  cr_expect_eq(count_op(f->m.fn, OP_TANH), 1);
  cr_expect_eq(f->m.output->arg[0], f->m.output->arg[1]);
  IrValue *z2 = f->m.loss->arg[0];
  cr_expect_eq(z2->arg[0], z2->arg[1]);
  cr_expect_eq(count_op(f->m.fn, OP_CONST), 3);  // 2, 0, -0
  cr_expect_eq(count_op(f->m.fn, OP_SUM_TO), 2);
  cr_expect_eq(count_op(f->m.fn, OP_PARAM), 2);
  cr_expect_eq(count_op(f->m.fn, OP_SUM), 2);
  fixture_free(f);
}

Test(opt, dead_code_keeps_leaves_the_module_names) {
  Fixture *f = fixture_new();
  IrValue *x = f->m.input = ir_leaf(f->m.fn, OP_INPUT, shape_vec(3), true, 0,
                                    "x", L);
  f->m.label = ir_leaf(f->m.fn, OP_LABEL, shape_vec(3), true, 0, "y", L);
  IrValue *unused = param(f, "unused", shape_vec(5));
  un(f, OP_EXP, un(f, OP_TANH, x));  // dead
  un(f, OP_EXP, unused);             // dead
  f->m.output = un(f, OP_NEG, x);
  opt_simplify(&f->m, &f->ctx);
  check_module(&f->m);
  cr_expect_eq(f->m.fn->values.n, 4);  // x, y, unused, neg
  cr_expect_eq(count_op(f->m.fn, OP_EXP), 0);
  cr_expect(in_fn(f->m.fn, unused));
  fixture_free(f);
}

Test(opt, log_of_softmax_becomes_log_softmax) {
  Fixture *f = fixture_new();
  IrValue *x = f->m.input = ir_leaf(f->m.fn, OP_INPUT, shape_vec(3), true, 0,
                                    "x", L);
  f->m.output = un(f, OP_SOFTMAX, x);
  f->m.loss = un(f, OP_SUM, un(f, OP_LOG, f->m.output));
  double xs[BATCH * 3] = {0.1, 0.5, -0.2, 1, 2, 3, 1000, -1000, 0};
  EvalEnv env = {.batch = BATCH, .input = xs};
  Arena a = {0};
  double *before = eval_fn(&a, f->m.fn, &env)[f->m.loss->id];
  opt_simplify(&f->m, &f->ctx);
  check_module(&f->m);
  cr_expect_eq(count_op(f->m.fn, OP_LOG), 0);
  cr_expect_eq(f->m.loss->arg[0]->op, OP_LOG_SOFTMAX);
  cr_expect_eq(f->m.loss->arg[0]->arg[0], x);
  cr_expect_eq(f->m.output->op, OP_SOFTMAX);  // still the output
  double *after = eval_fn(&a, f->m.fn, &env)[f->m.loss->id];
  for (int i = 0; i < 2; i++)
    cr_expect(fabs(after[i] - before[i]) < 1e-13 * fabs(before[i]));
  cr_expect(isinf(before[2]));  // log(0) from softmax's underflow...
  cr_expect(isfinite(after[2]));  // ...which log_softmax avoids
  arena_free(&a);
  fixture_free(f);
}

// ---- results before and after -----------------------------------------------
typedef struct Data {
  double *input, *label, *param[16], arg[8];
} Data;

static double uniform(uint64_t *s, double lo, double hi) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return lo + (hi - lo) * (double)(*s >> 11) / 9007199254740992.0;
}

static double *random_array(Arena *a, uint64_t *s, int64_t n) {
  double *p = arena_alloc(a, sizeof(double) * (size_t)n);
  for (int64_t i = 0; i < n; i++)
    p[i] = uniform(s, -1.5, 1.5);
  return p;
}

static EvalEnv random_env(Fixture *f, Data *d, uint64_t seed) {
  IrModule *m = &f->m;
  uint64_t s = seed;
  if (m->input)
    d->input = random_array(&f->arena, &s,
                            BATCH * shape_numel(m->input->shape));
  if (m->label)
    d->label = random_array(&f->arena, &s,
                            BATCH * shape_numel(m->label->shape));
  for (int i = 0; i < m->params.n; i++) {
    IrParam *p = m->params.item[i];
    d->param[i] = random_array(&f->arena, &s, shape_numel(p->shape));
  }
  for (int i = 0; i < 8; i++)
    d->arg[i] = uniform(&s, 0.5, 2);
  return (EvalEnv){BATCH, d->input, d->label, d->param, d->arg, 0};
}

// The roots in a fixed order: main fn roots, then the optimizer's.
static int module_roots(const IrModule *m, IrValue **out, bool *opt_fn) {
  int n = 0;
  const IrValue *held[] = {m->output, m->loss, m->steps[0].objective, m->correct};
  for (int i = 0; i < 4; i++)
    if (held[i])
      opt_fn[n] = false, out[n++] = (IrValue *)held[i];
  for (int i = 0; i < m->params.n; i++) {
    IrParam *p = m->params.item[i];
    if (p->grad)
      opt_fn[n] = false, out[n++] = p->grad;
  }
  if (m->steps[0].opt.fn) {
    opt_fn[n] = true, out[n++] = m->steps[0].opt.new_p;
    for (int i = 0; i < m->steps[0].opt.nstate; i++)
      opt_fn[n] = true, out[n++] = m->steps[0].opt.new_state[i];
  }
  return n;
}

typedef struct Snapshot {
  int n;
  int64_t size[MAX_ROOTS];
  double *val[MAX_ROOTS];
} Snapshot;

static Snapshot snapshot(Arena *a, const IrModule *m, const EvalEnv *env) {
  IrValue *root[MAX_ROOTS];
  bool opt_fn[MAX_ROOTS];
  Snapshot s = {.n = module_roots(m, root, opt_fn)};
  double **main = eval_fn(a, m->fn, env);
  double **opt = m->steps[0].opt.fn ? eval_fn(a, m->steps[0].opt.fn, env) : NULL;
  for (int i = 0; i < s.n; i++) {
    s.val[i] = (opt_fn[i] ? opt : main)[root[i]->id];
    s.size[i] = (root[i]->batched ? env->batch : 1) *
                shape_numel(root[i]->shape);
  }
  return s;
}

static bool all_finite(const Snapshot *s) {
  for (int i = 0; i < s->n; i++)
    for (int64_t k = 0; k < s->size[i]; k++)
      if (!isfinite(s->val[i][k]))
        return false;
  return true;
}

// Identical, or within rel (for rewrites that change rounding).
static void expect_same(const Snapshot *b, const Snapshot *a, double rel,
                        const char *what) {
  cr_assert_eq(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    cr_assert_eq(a->size[i], b->size[i]);
    for (int64_t k = 0; k < a->size[i]; k++) {
      double x = b->val[i][k], y = a->val[i][k];
      bool same = x == y || (isnan(x) && isnan(y)) ||
                  fabs(x - y) <= rel * fmax(fabs(x), fabs(y));
      cr_expect(same, "%s: root %d [%lld]: %.17g before, %.17g after", what, i,
                (long long)k, x, y);
    }
  }
}

// A two-layer MLP: dense(5) tanh dense(2), with a duplicated hidden layer
// (CSE), a loss scaled by 3/3 (folding, then x*1), an unused parameter, the
// gradients from grad_emit and a momentum optimizer with foldable constants.
static Fixture *mlp(bool cross_entropy, bool simplify_first) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  IrFn *fn = m->fn;
  IrValue *x = m->input = ir_leaf(fn, OP_INPUT, shape_vec(4), true, 0, "x", L);
  IrValue *y = m->label = ir_leaf(fn, OP_LABEL, shape_vec(2), true, 0, "y", L);
  IrValue *w1 = param(f, "w1", sh2(4, 5)), *b1 = param(f, "b1", shape_vec(5));
  IrValue *w2 = param(f, "w2", sh2(5, 2)), *b2 = param(f, "b2", shape_vec(2));
  param(f, "unused", shape_vec(3));
  IrValue *h = un(f, OP_TANH, bin(f, OP_ADD, bin(f, OP_MATMUL, x, w1), b1));
  IrValue *h2 = un(f, OP_TANH, bin(f, OP_ADD, bin(f, OP_MATMUL, x, w1), b1));
  IrValue *hh = bin(f, OP_ADD, bin(f, OP_MUL, h, cst(f, 0.5)),
                    bin(f, OP_MUL, cst(f, 0.5), h2));
  m->output = bin(f, OP_ADD, bin(f, OP_MATMUL, hh, w2), b2);
  IrValue *loss;
  if (cross_entropy) {
    IrValue *logp = un(f, OP_LOG, un(f, OP_SOFTMAX, m->output));
    loss = un(f, OP_NEG, un(f, OP_SUM, bin(f, OP_MUL, y, logp)));
  } else {
    IrValue *d = bin(f, OP_SUB, m->output, y);
    loss = un(f, OP_MEAN, bin(f, OP_POW, d, cst(f, 2)));
  }
  m->loss = bin(f, OP_MUL, loss, bin(f, OP_DIV, cst(f, 3), cst(f, 3)));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  m->correct = ir_shaped(fn, OP_SUM_TO,
                         ir_prim(fn, OP_CORRECT, (IrValue *[]){m->output, y},
                                 (Attr){0}, L),
                         shape_scalar(), false, L);
  if (simplify_first)
    opt_simplify(m, &f->ctx);
  grad_emit(m, &f->ctx);

  // momentum: v = 0.9 v + (1 - 0.9) g; p = p - 0.01 * v / (1 - 0.9^t)
  IrOptimizer *o = &ir_main_step(m)->opt;
  IrFn *ofn = o->fn = ir_fn_new(&f->arena);
  o->name = "momentum";
  o->nstate = 1;
  o->state_name = (const char *[]){"v"};
  o->new_state = arena_alloc(&f->arena, sizeof(IrValue *));
  IrValue *arg[4];
  for (int i = 0; i < 4; i++)
    arg[i] = ir_leaf(ofn, OP_ARG, shape_scalar(), false, i, NULL, L);
  IrValue *beta = ir_const(ofn, 0.9, L);
  IrValue *v = ir_binary(
      ofn, OP_ADD, ir_binary(ofn, OP_MUL, beta, arg[3], L),
      ir_binary(ofn, OP_MUL,
                ir_binary(ofn, OP_SUB, ir_const(ofn, 1, L),
                          ir_const(ofn, 0.9, L), L),
                arg[1], L),
      L);
  IrValue *corr = ir_binary(
      ofn, OP_SUB, ir_const(ofn, 1, L),
      ir_binary(ofn, OP_POW, ir_const(ofn, 0.9, L), arg[2], L), L);
  IrValue *step = ir_binary(
      ofn, OP_MUL, ir_const(ofn, 0.01, L),
      ir_binary(ofn, OP_DIV, v, corr, L), L);
  o->new_p = ir_unary(ofn, OP_NEG,
                      ir_unary(ofn, OP_NEG,
                               ir_binary(ofn, OP_SUB, arg[0], step, L), L),
                      L);
  o->new_state[0] = ir_binary(ofn, OP_MUL, v, ir_const(ofn, 1, L), L);
  return f;
}

Test(opt, mlp_results_unchanged) {
  for (int ce = 0; ce < 2; ce++)
    for (uint64_t seed = 1; seed <= 4; seed++) {
      Fixture *f = mlp(ce, false);
      Data d = {0};
      EvalEnv env = random_env(f, &d, seed);
      int before_n = f->m.fn->values.n,
          before_opt = ir_main_step(&f->m)->opt.fn->values.n;
      Snapshot before = snapshot(&f->arena, &f->m, &env);
      opt_simplify(&f->m, &f->ctx);
      check_module(&f->m);
      Snapshot after = snapshot(&f->arena, &f->m, &env);
      cr_expect(all_finite(&before));
      // log(softmax) -> log_softmax changes rounding; everything else is exact
      expect_same(&before, &after, ce ? 1e-12 : 0, ce ? "mlp ce" : "mlp mse");
      cr_expect_lt(f->m.fn->values.n, before_n);
      cr_expect_lt(ir_main_step(&f->m)->opt.fn->values.n, before_opt);
      cr_expect_eq(count_op(f->m.fn, OP_MATMUL) + count_op(f->m.fn, OP_TANH),
                   3);  // one hidden layer left, plus the output layer
      cr_expect_eq(count_op(ir_main_step(&f->m)->opt.fn, OP_NEG), 0);
      cr_expect_eq(count_op(f->m.fn, OP_LOG), 0);
      // the unused parameter's zero gradient survives as a root
      IrParam *unused = f->m.params.item[4];
      cr_expect_eq(unused->grad->op, OP_BROADCAST);
      fixture_free(f);
    }
}

// Random element-wise graphs over a batched input, parameters of several
// shapes and the constants the identities look for; exact duplicates are
// made on purpose so that CSE has work.
static Fixture *random_graph(uint64_t seed) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  uint64_t s = seed * 0x9e3779b97f4a7c15u + 1;
  IrValue *pool[128];
  int n = 0;
  pool[n++] = m->input =
      ir_leaf(m->fn, OP_INPUT, shape_vec(3), true, 0, "x", L);
  pool[n++] = param(f, "p", shape_vec(3));
  pool[n++] = param(f, "s", shape_scalar());
  pool[n++] = param(f, "q", sh2(2, 3));
  pool[n++] = param(f, "r", sh2(2, 1));
  double consts[] = {0, 1, 2, 0.5, -1};
  for (int i = 0; i < 5; i++)
    pool[n++] = cst(f, consts[i]);
  pool[n++] = ir_shaped(m->fn, OP_BROADCAST, cst(f, 1), sh2(2, 3), false, L);
  pool[n++] = ir_shaped(m->fn, OP_BROADCAST, cst(f, 0), shape_vec(3), true, L);
  static const Op unary[] = {OP_NEG, OP_TANH, OP_SIGMOID, OP_ABS, OP_RELU};
  static const Op binary[] = {OP_ADD, OP_SUB, OP_MUL, OP_MAX, OP_MIN,
                              OP_MUL, OP_ADD};
  while (n < 60) {
    double u = uniform(&s, 0, 1);
    IrValue *a = pool[(int)uniform(&s, 0, n)];
    IrValue *b = pool[(int)uniform(&s, 0, n)];
    if (u < 0.15 && n > 12) {  // repeat an earlier value exactly
      IrValue *v = pool[(int)uniform(&s, 12, n)];
      pool[n++] = ir_prim(m->fn, v->op, v->arg, v->attr, L);
    } else if (u < 0.4) {
      pool[n++] = un(f, unary[(int)uniform(&s, 0, 5)], a);
    } else if (u < 0.45) {
      pool[n++] = bin(f, OP_POW, a, cst(f, u < 0.425 ? 1 : 2));
    } else if (u < 0.5) {
      pool[n++] = bin(f, OP_DIV, a, cst(f, u < 0.475 ? 1 : 2));
    } else {
      Op op = binary[(int)uniform(&s, 0, 7)];
      Shape out;
      bool outb;
      if (!ir_check(op, (IrValue *[]){a, b}, &(Attr){0}, &out, &outb))
        pool[n++] = bin(f, op, a, b);
    }
  }
  // Roots: the last values, summed so that every shape reaches the objective.
  m->output = pool[n - 1];
  m->correct = pool[n - 2];
  IrValue *t = un(f, OP_SUM, bin(f, OP_ADD, m->input, pool[n - 3]));
  m->loss = bin(f, OP_ADD, t, un(f, OP_SUM, pool[n - 4]));
  m->loss = bin(f, OP_ADD, m->loss, un(f, OP_SUM, pool[n - 1]));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  grad_emit(m, &f->ctx);
  return f;
}

Test(opt, random_graphs_results_unchanged) {
  int tested = 0;
  for (uint64_t seed = 1; seed <= 60; seed++) {
    Fixture *f = random_graph(seed);
    Data d = {0};
    EvalEnv env = random_env(f, &d, seed);
    Snapshot before = snapshot(&f->arena, &f->m, &env);
    if (all_finite(&before)) {  // x*0 -> 0 assumes finite x
      opt_simplify(&f->m, &f->ctx);
      check_module(&f->m);
      Snapshot after = snapshot(&f->arena, &f->m, &env);
      char what[32];
      snprintf(what, sizeof what, "seed %llu", (unsigned long long)seed);
      expect_same(&before, &after, 0, what);
      tested++;
    }
    fixture_free(f);
  }
  cr_expect_gt(tested, 50);
}

// Simplifying before grad_emit differentiates log_softmax instead of
// log(softmax): the same gradients, and no division by the softmax.
Test(opt, simplify_before_grad) {
  for (uint64_t seed = 1; seed <= 3; seed++) {
    Fixture *f = mlp(true, false), *g = mlp(true, true);
    Data d = {0}, e = {0};
    EvalEnv env = random_env(f, &d, seed), env2 = random_env(g, &e, seed);
    opt_simplify(&f->m, &f->ctx);
    opt_simplify(&g->m, &g->ctx);
    check_module(&g->m);
    Snapshot a = snapshot(&f->arena, &f->m, &env);
    Snapshot b = snapshot(&g->arena, &g->m, &env2);
    expect_same(&a, &b, 1e-10, "simplified before grad");
    cr_expect_eq(count_op(g->m.fn, OP_SOFTMAX), 0);
    cr_expect_eq(count_op(g->m.fn, OP_DIV), 1);  // dy / batch_size only
    fixture_free(f);
    fixture_free(g);
  }
}

// opt_simplify is idempotent: a second run changes nothing.
Test(opt, simplify_reaches_a_fixed_point) {
  Fixture *f = mlp(true, false);
  opt_simplify(&f->m, &f->ctx);
  int n = f->m.fn->values.n, no = ir_main_step(&f->m)->opt.fn->values.n;
  opt_simplify(&f->m, &f->ctx);
  check_module(&f->m);
  cr_expect_eq(f->m.fn->values.n, n);
  cr_expect_eq(ir_main_step(&f->m)->opt.fn->values.n, no);
  fixture_free(f);
}

// step(a) -> step(relu(a)) once relu(a) exists: the pre-activation is then
// read by the relu alone.
Test(opt, step_reads_the_relu) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  IrValue *x = m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(4), true, 0,
                                  "x", L);
  IrValue *w = param(f, "w", sh2(4, 3)), *b = param(f, "b", shape_vec(3));
  IrValue *a = bin(f, OP_ADD, bin(f, OP_MATMUL, x, w), b);
  IrValue *h = un(f, OP_RELU, a);
  m->output = h;
  m->loss = un(f, OP_SUM, bin(f, OP_MUL, h, h));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  IrValue *s2 = un(f, OP_STEP, h);  // already step(relu): left alone
  m->correct = ir_shaped(m->fn, OP_SUM_TO, un(f, OP_SUM, s2), shape_scalar(),
                         false, L);
  grad_emit(m, &f->ctx);
  cr_assert_eq(count_op(m->fn, OP_STEP), 2);
  Data d = {0};
  EvalEnv env = random_env(f, &d, 5);
  Snapshot before = snapshot(&f->arena, m, &env);
  opt_simplify(m, &f->ctx);
  check_module(m);
  Snapshot after = snapshot(&f->arena, m, &env);
  expect_same(&before, &after, 0, "step(relu)");
  cr_expect_eq(count_op(m->fn, OP_STEP), 1);  // CSE'd with s2
  for (int i = 0; i < m->fn->values.n; i++) {
    IrValue *v = m->fn->values.item[i];
    if (v->op == OP_STEP)
      cr_expect_eq(v->arg[0]->op, OP_RELU);
  }
  ir_count_uses(m->fn);
  cr_expect_eq(h->arg[0]->nuses, 1, "the pre-activation feeds the relu only");
  fixture_free(f);
}

// neg(broadcast(c)) -> broadcast(neg(c)): computed once, not per element.
Test(opt, unary_moves_inside_broadcast) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  IrValue *x = m->input = ir_leaf(m->fn, OP_INPUT, shape_vec(3), true, 0,
                                  "x", L);
  IrValue *p = param(f, "p", shape_vec(3));
  IrValue *bp = ir_shaped(m->fn, OP_BROADCAST, p, shape_vec(3), true, L);
  IrValue *e = un(f, OP_EXP, un(f, OP_NEG, bp));
  m->output = bin(f, OP_MUL, x, e);
  m->loss = un(f, OP_SUM, m->output);
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  Data d = {0};
  EvalEnv env = random_env(f, &d, 6);
  Snapshot before = snapshot(&f->arena, m, &env);
  opt_simplify(m, &f->ctx);
  check_module(m);
  Snapshot after = snapshot(&f->arena, m, &env);
  expect_same(&before, &after, 0, "broadcast");
  IrValue *b = m->output->arg[1];
  cr_expect_eq(b->op, OP_BROADCAST);
  cr_expect_eq(b->arg[0]->op, OP_EXP);
  cr_expect(!b->arg[0]->batched);
  cr_expect_eq(b->arg[0]->arg[0]->op, OP_NEG);
  cr_expect_eq(b->arg[0]->arg[0]->arg[0], p);
  fixture_free(f);
}

// ---- fusion -----------------------------------------------------------------
Test(opt, kernel_fuse_marks_single_use_elementwise_chains) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  IrValue *x = m->input =
      ir_leaf(m->fn, OP_INPUT, shape_vec(3), true, 0, "x", L);
  IrValue *p = param(f, "p", shape_vec(3));
  IrValue *w = param(f, "w", sh2(3, 2));
  IrValue *q = param(f, "q", shape_vec(2));
  IrValue *a = bin(f, OP_MUL, x, p);        // -> tanh, same shape: fused
  IrValue *t = un(f, OP_TANH, a);           // -> sum: fused
  IrValue *s = un(f, OP_SUM, t);            // a reduction: never fused
  IrValue *e = un(f, OP_EXP, x);            // -> matmul: not fused
  IrValue *mm = bin(f, OP_MATMUL, e, w);
  IrValue *sq = bin(f, OP_MUL, x, x);       // two users: not fused
  IrValue *u1 = un(f, OP_NEG, sq), *u2 = un(f, OP_ABS, sq);
  IrValue *ep = un(f, OP_EXP, p);           // [3] into [B, 3]: not fused
  IrValue *xe = bin(f, OP_ADD, x, ep);
  IrValue *bq = ir_shaped(m->fn, OP_BROADCAST, q, shape_vec(2), true, L);
  IrValue *bm = bin(f, OP_MUL, bq, mm);     // mul -> relu, same shape: fused
  IrValue *r = un(f, OP_RELU, bm);          // -> softmax: not fused
  IrValue *sm = un(f, OP_SOFTMAX, r);
  IrValue *d = bin(f, OP_SUB, xe, u1);      // -> sum_to: fused
  IrValue *st = ir_shaped(m->fn, OP_SUM_TO, d, shape_vec(3), false, L);
  IrValue *out = bin(f, OP_ADD, u2, st);    // a root: not fused
  m->output = out;
  m->loss = bin(f, OP_ADD, s, un(f, OP_SUM, sm));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  kernel_fuse(m);

  struct { IrValue *v; bool fused; const char *what; } want[] = {
      {a, true, "mul -> tanh"},         {t, true, "tanh -> sum"},
      {s, false, "sum"},                {e, false, "exp -> matmul"},
      {mm, true, "matmul -> mul -> relu"}, {sq, false, "two users"},
      {u1, true, "neg -> sub"},         {u2, true, "abs -> add [B, 3]"},
      {ep, false, "[3] -> [B, 3]"},     {xe, true, "add -> sub"},
      {bq, true, "broadcast -> mul"},   {bm, true, "mul -> relu"},
      {r, false, "relu -> softmax"},    {sm, false, "softmax"},
      {d, true, "sub -> sum_to"},       {st, false, "sum_to"},
      {out, false, "output"},           {m->loss, false, "loss"},
      {x, false, "input"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_expect_eq(want[i].v->fused, want[i].fused, "%s", want[i].what);

  // A gradient is a root too, and the optimizer program is never marked.
  grad_emit(m, &f->ctx);
  kernel_fuse(m);
  for (int i = 0; i < m->params.n; i++) {
    IrParam *pp = m->params.item[i];
    cr_expect(!pp->grad->fused, "grad %s", pp->name);
  }
  fixture_free(f);
}

// A matmul runs its user's element-wise chain in its epilogue when the chain
// ends in a stored element-wise value of the matmul's own type and every
// leaf is addressable per output element (its layout, a row vector, one
// value per row, a scalar).
Test(opt, kernel_fuse_matmul_epilogues) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  IrValue *x = m->input =
      ir_leaf(m->fn, OP_INPUT, shape_vec(4), true, 0, "x", L);
  IrValue *x3 = ir_leaf(m->fn, OP_INPUT, sh2(2, 4), true, 1, "x3", L);
  IrValue *w = param(f, "w", sh2(4, 3)), *b = param(f, "b", shape_vec(3));
  IrValue *lead = param(f, "lead", sh2(2, 1));
  // bias + relu: fused, the relu is stored
  IrValue *m1 = bin(f, OP_MATMUL, x, w);
  IrValue *h = un(f, OP_RELU, bin(f, OP_ADD, m1, b));
  // a chain ending in a reduction: not fused
  IrValue *m2 = bin(f, OP_MATMUL, h, param(f, "w2", sh2(3, 3)));
  IrValue *s2 = un(f, OP_SUM, un(f, OP_EXP, m2));
  // two matmuls in one tree: only the first
  IrValue *m3 = bin(f, OP_MATMUL, h, param(f, "w3", sh2(3, 3)));
  IrValue *m4 = bin(f, OP_MATMUL_NT, h, param(f, "w4", sh2(3, 3)));
  IrValue *two = bin(f, OP_SUB, m3, m4);
  // an unbatched [2, 1] leaf broadcast over rows of B x 2: not addressable
  IrValue *m5 = bin(f, OP_MATMUL, x3, w);
  IrValue *l5 = bin(f, OP_MUL, m5, lead);
  // a per-example scalar leaf (one value per row) and a constant: fused
  IrValue *m6 = bin(f, OP_MATMUL, x, w);
  IrValue *l6 = bin(f, OP_MUL, bin(f, OP_MUL, m6, s2), cst(f, 2));
  // a matmul that is a root: never fused
  IrValue *m7 = bin(f, OP_MATMUL_TN, x, x);
  m->output = h;
  IrValue *t = bin(f, OP_ADD, un(f, OP_SUM, bin(f, OP_ADD, two, l6)),
                   un(f, OP_SUM, bin(f, OP_MUL, two, l6)));  // two users each
  m->loss = bin(f, OP_ADD, t, un(f, OP_SUM, l5));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  m->correct = m7;
  kernel_fuse(m);
  struct { IrValue *v; bool fused; const char *what; } want[] = {
      {m1, true, "bias + relu"},     {h, false, "relu (stored top)"},
      {m2, false, "-> exp -> sum"},  {m3, true, "first of two"},
      {m4, false, "second of two"},  {m5, false, "[2, 1] leaf"},
      {m6, true, "per-row scalar"},  {m7, false, "root"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_expect_eq(want[i].v->fused, want[i].fused, "%s", want[i].what);
  fixture_free(f);
}

// ---- weight_layout ------------------------------------------------------------
// x[20] -> W1[20, 16] -> tanh -> W2[16, 4] -> mse: W2 (K 16, N 4) is only a
// right matmul operand (forward, and dY W2^T for the hidden gradient), so it
// is stored transposed; W1 (N 16) is not. Evaluated with W2's values laid
// out transposed, every root is the same as before, and W2's gradient is
// the transpose of the old one.
static Fixture *two_layers(IrValue **w2out) {
  Fixture *f = fixture_new();
  IrModule *m = &f->m;
  IrFn *fn = m->fn;
  IrValue *x = m->input = ir_leaf(fn, OP_INPUT, shape_vec(20), true, 0, "x", L);
  IrValue *y = m->label = ir_leaf(fn, OP_LABEL, shape_vec(4), true, 0, "y", L);
  IrValue *w1 = param(f, "w1", sh2(20, 16)), *w2 = param(f, "w2", sh2(16, 4));
  IrValue *h = un(f, OP_TANH, bin(f, OP_MATMUL, x, w1));
  m->output = bin(f, OP_MATMUL, h, w2);
  IrValue *d = bin(f, OP_SUB, m->output, y);
  m->loss = un(f, OP_MEAN, bin(f, OP_MUL, d, d));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  grad_emit(m, &f->ctx);
  opt_simplify(m, &f->ctx);
  *w2out = w2;
  return f;
}

static double *transpose_array(Arena *a, const double *v, int64_t r,
                               int64_t c) {
  double *t = arena_alloc(a, sizeof(double) * (size_t)(r * c));
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++)
      t[j * r + i] = v[i * c + j];
  return t;
}

Test(opt, weight_layout_stores_narrow_weights_transposed) {
  IrValue *w2;
  Fixture *f = two_layers(&w2);
  IrModule *m = &f->m;
  Data d = {0};
  EvalEnv env = random_env(f, &d, 7);
  Snapshot before = snapshot(&f->arena, m, &env);
  weight_layout(m);
  check_module(m);
  IrParam *p1 = m->params.item[0], *p2 = m->params.item[1];
  cr_expect(!p1->transposed);
  cr_expect(p2->transposed);
  cr_expect(shape_eq(p2->shape, sh2(16, 4)), "the declared shape stays");
  cr_expect(shape_eq(w2->shape, sh2(4, 16)));
  cr_expect_eq(m->output->op, OP_MATMUL_NT);
  cr_expect_eq(p2->grad->op, OP_MATMUL_TN);
  cr_expect(shape_eq(p2->grad->shape, sh2(4, 16)));
  cr_expect_eq(count_op(m->fn, OP_MATMUL_NT), 1);  // h W2 only
  // The hidden gradient dY W2^T is now a plain matmul with W2^T.
  int uses_as_matmul = 0;
  for (int i = 0; i < m->fn->values.n; i++) {
    IrValue *u = m->fn->values.item[i];
    uses_as_matmul += u->op == OP_MATMUL && u->arg[1] == w2;
  }
  cr_expect_eq(uses_as_matmul, 1);

  d.param[1] = transpose_array(&f->arena, d.param[1], 16, 4);
  Snapshot after = snapshot(&f->arena, m, &env);
  // Roots: output, loss, objective, grad w1, grad w2.
  cr_assert_eq(after.n, before.n);
  cr_assert_eq(before.n, 5);
  for (int i = 0; i < 4; i++)
    for (int64_t k = 0; k < before.size[i]; k++)
      cr_expect(fabs(before.val[i][k] - after.val[i][k]) <=
                    1e-12 * fmax(1, fabs(before.val[i][k])),
                "root %d [%lld]", i, (long long)k);
  double *g = transpose_array(&f->arena, before.val[4], 16, 4);
  for (int64_t k = 0; k < 64; k++)
    cr_expect(fabs(g[k] - after.val[4][k]) <= 1e-12 * fmax(1, fabs(g[k])),
              "grad w2 [%lld]", (long long)k);
  fixture_free(f);
}

// A weight read any other way (here also by an element-wise penalty, as an
// L2 term would) keeps its layout, and so does one with many columns.
Test(opt, weight_layout_leaves_other_weights) {
  IrValue *w2;
  Fixture *f = two_layers(&w2);
  IrModule *m = &f->m;
  m->loss = bin(f, OP_ADD, m->loss, un(f, OP_SUM, bin(f, OP_MUL, w2, w2)));
  ir_main_step(m)->objective = un(f, OP_BATCH_MEAN, m->loss);
  grad_emit(m, &f->ctx);
  opt_simplify(m, &f->ctx);
  weight_layout(m);
  check_module(m);
  for (int i = 0; i < m->params.n; i++)
    cr_expect(!((IrParam *)m->params.item[i])->transposed);
  cr_expect_eq(count_op(m->fn, OP_MATMUL_NT), 1);  // dY W2^T, as before
  fixture_free(f);
}
