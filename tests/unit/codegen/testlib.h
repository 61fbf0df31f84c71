// testlib.h — the test side of the harness protocol (harness.h), shared by
// codegen_test.c and codegen_conv_test.c: a scratch folder, deterministic
// data, module-building helpers, compiling an IrModule and linking it with
// harness.c, running it, the eval_fn reference and the comparisons.
// Everything is static inline: each test file is its own executable.
// Define CG_SCRATCH (a mkdtemp template) before including it to name the
// scratch folders.
#ifndef NNC_TEST_CODEGEN_TESTLIB_H
#define NNC_TEST_CODEGEN_TESTLIB_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen.h"
#include "eval.h"
#include "grad.h"
#include "harness.h"
#include "opt.h"

#ifndef NNC_SOURCE_DIR
#define NNC_SOURCE_DIR "."
#endif
#ifndef CG_SCRATCH
#define CG_SCRATCH "/tmp/nnc_cg_XXXXXX"
#endif

static const Loc L = {"test.nn", 1, 1};

// ---- a compilation, with a scratch folder -----------------------------------
typedef struct T {
  Arena arena;
  Ctx ctx;
  char dir[64];
  int n; // files made so far
  const char *cpu; // --cpu of the binaries build() makes (NULL: native)
} T;

static inline void t_init(T *t) {
  memset(t, 0, sizeof *t);
  t->ctx.arena = &t->arena;
  t->ctx.diag.arena = &t->arena;
  t->ctx.diag.out = stderr;
  t->ctx.opt_level = 3;
  strcpy(t->dir, CG_SCRATCH);
  cr_assert_not_null(mkdtemp(t->dir));
}

static inline void t_fini(T *t) {
  char cmd[128];
  // NNC_KEEP=1 keeps the scratch folders (objects, executables, inputs).
  snprintf(cmd, sizeof cmd, getenv("NNC_KEEP") ? "true %s" : "rm -rf %s",
           t->dir);
  cr_expect_eq(system(cmd), 0);
  arena_free(&t->arena);
}

static inline char *t_path(T *t, const char *ext) {
  return arena_printf(&t->arena, "%s/f%d%s", t->dir, t->n++, ext);
}

// ---- deterministic data -----------------------------------------------------
typedef struct Rng {
  uint64_t s;
} Rng;

static inline double rnd(Rng *r) { // uniform in [-1, 1)
  r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(r->s >> 11) / (double)(1ull << 52) - 1.0;
}

// ---- building modules -------------------------------------------------------
static inline IrModule *module_new(Arena *a, const char *name) {
  IrModule *m = arena_alloc(a, sizeof *m);
  m->name = name;
  m->source_dir = "/tmp";
  m->fn = ir_fn_new(a);
  m->train = (TrainSpec){.batch = 7, .epochs = 1, .seed = 1, .accuracy = true};
  return m;
}

static inline IrValue *bin(IrModule *m, Op op, IrValue *a, IrValue *b) {
  return ir_binary(m->fn, op, a, b, L);
}
static inline IrValue *un(IrModule *m, Op op, IrValue *a) {
  return ir_unary(m->fn, op, a, L);
}

static inline IrValue *opt_arg(IrFn *fn, int i, const char *name) {
  return ir_leaf(fn, OP_ARG, shape_scalar(), false, i, name, L);
}

// p - lr * g
static inline void sgd(IrModule *m, double lr) {
  IrOptimizer *o = &ir_main_step(m)->opt;
  o->name = "sgd";
  o->fn = ir_fn_new(m->fn->arena);
  IrValue *p = opt_arg(o->fn, 0, "p"), *g = opt_arg(o->fn, 1, "g");
  o->new_p =
      ir_binary(o->fn, OP_SUB, p,
                ir_binary(o->fn, OP_MUL, ir_const(o->fn, lr, L), g, L), L);
}

// The driver's middle: gradients, simplification, fusion.
static inline void prepare(IrModule *m, Ctx *ctx, bool fuse) {
  grad_emit(m, ctx);
  opt_simplify(m, ctx);
  if (fuse) {
    weight_layout(m);
    kernel_fuse(m);
  } else {
    ir_renumber(m->fn);
    for (int i = 0; i < m->fn->values.n; i++)
      ((IrValue *)m->fn->values.item[i])->fused = false;
  }
}

// ---- compiling, linking, running --------------------------------------------
static inline char *build(T *t, IrModule *m, int opt_level) {
  char *obj = t_path(t, ".o"), *exe = t_path(t, "");
  CodegenOptions o = {.kind = EMIT_OBJ, .out_path = obj, .opt_level = opt_level,
                      .cpu = t->cpu};
  cr_assert_eq(codegen_emit(m, &t->ctx, &o), 0, "codegen_emit failed");
  cr_assert_eq(t->ctx.diag.nerrors, 0);
  const char *san =
#if defined(__SANITIZE_ADDRESS__)
      "-fsanitize=address,undefined";
#else
      "";
#endif
  char *cmd = arena_printf(
      &t->arena,
      "cc -std=c17 -O1 -g -Wall -Wextra -Werror "
      "-D_GNU_SOURCE %s -I%s/runtime -I%s/tests/unit "
      "%s/tests/unit/codegen/harness.c %s -lm -lpthread -o %s",
      san, NNC_SOURCE_DIR, NNC_SOURCE_DIR, NNC_SOURCE_DIR, obj, exe);
  cr_assert_eq(system(cmd), 0, "link failed: %s", cmd);
  return exe;
}

// Batches for one run: rows per batch, parameters, inputs and labels.
typedef enum Fill { F_UNIFORM, F_TIES, F_NEGATIVE } Fill;

typedef struct Data {
  int64_t nbatch, max_batch, total;
  int64_t rows[16];
  int64_t in_numel, out_numel, y_numel, param_numel;
  float *params, *x, *y;
} Data;

static inline int64_t param_numel(const IrModule *m) {
  int64_t n = 0;
  for (int i = 0; i < m->params.n; i++)
    n += shape_numel(((IrParam *)m->params.item[i])->shape);
  return n;
}

// Parameters in [-1, 1) / sqrt(fan_in) (with `factors`, those whose name
// starts with s are per-channel factors near 1), inputs by `fill` (uniform in [-1, 1);
// multiples of 1/2 in [-1, 1] so that windows hold equal maxima; or all
// below -0.1), labels one-hot or uniform in [0, 1).
static inline Data data_make(Arena *a, const IrModule *m, int nbatch,
                             const int64_t *rows, int64_t max_batch,
                             bool onehot, Fill fill, bool factors,
                             uint64_t seed) {
  Data d = {.nbatch = nbatch, .max_batch = max_batch};
  for (int i = 0; i < nbatch; i++)
    d.total += d.rows[i] = rows[i];
  d.in_numel = shape_numel(m->input->shape);
  d.out_numel = shape_numel(m->output->shape);
  d.y_numel = m->label ? shape_numel(m->label->shape) : d.out_numel;
  d.param_numel = param_numel(m);
  d.params = arena_alloc(a, sizeof(float) * (size_t)(d.param_numel + 1));
  d.x = arena_alloc(a, sizeof(float) * (size_t)(d.total * d.in_numel + 1));
  d.y = arena_alloc(a, sizeof(float) * (size_t)(d.total * d.y_numel + 1));
  Rng r = {seed};
  int64_t k = 0;
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    // per-channel scales: exact, near 1
    bool factor = factors && p->name[0] == 's';
    double s = 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1));
    for (int64_t j = 0; j < shape_numel(p->shape); j++)
      d.params[k++] =
          factor ? (float)(1 + 0.25 * (j % 3)) : (float)(s * rnd(&r));
  }
  for (int64_t i = 0; i < d.total * d.in_numel; i++) {
    double u = rnd(&r);
    d.x[i] = fill == F_TIES       ? (float)(round(u * 2) / 2)
             : fill == F_NEGATIVE ? (float)(-0.1 - fabs(u))
                                  : (float)u;
  }
  for (int64_t i = 0; i < d.total; i++) {
    float *y = d.y + i * d.y_numel;
    int64_t hot = (int64_t)((rnd(&r) + 1) / 2 * (double)d.y_numel);
    for (int64_t j = 0; j < d.y_numel; j++)
      y[j] = onehot ? (float)(j == hot) : (float)((rnd(&r) + 1) / 2);
  }
  return d;
}

// Runs exe on d; returns the result file's bytes (length in *n).
static inline char *run(T *t, const char *exe, HarnessIn in, const Data *d,
                        size_t *n) {
  char *ip = t_path(t, ".in"), *op = t_path(t, ".out");
  FILE *f = fopen(ip, "wb");
  cr_assert_not_null(f);
  in.nbatch = d->nbatch;
  in.max_batch = d->max_batch;
  in.ycols = d->y_numel;
  fwrite(&in, sizeof in, 1, f);
  fwrite(d->rows, 8, (size_t)d->nbatch, f);
  fwrite(d->params, 4, (size_t)d->param_numel, f);
  fwrite(d->x, 4, (size_t)(d->total * d->in_numel), f);
  fwrite(d->y, 4, (size_t)(d->total * d->y_numel), f);
  fclose(f);
  char *cmd = arena_printf(&t->arena, "%s %s %s", exe, ip, op);
  int st = system(cmd);
  cr_assert_eq(st, 0, "harness exited with status %d", st);
  f = fopen(op, "rb");
  cr_assert_not_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  char *buf = arena_alloc(&t->arena, (size_t)len + 1);
  cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return buf;
}

// ---- the reference ----------------------------------------------------------
// eval_fn on batch b of d (with the given parameters), drawing random
// numbers with `key` (nnrt_rng.h).
static inline double **reference_key(Arena *a, const IrModule *m,
                                     const Data *d, int b,
                                     const float *params, uint64_t key) {
  int64_t first = 0;
  for (int i = 0; i < b; i++)
    first += d->rows[i];
  int64_t r = d->rows[b];
  double *x = arena_alloc(a, sizeof(double) * (size_t)(r * d->in_numel + 1));
  double *y = arena_alloc(a, sizeof(double) * (size_t)(r * d->y_numel + 1));
  for (int64_t i = 0; i < r * d->in_numel; i++)
    x[i] = d->x[first * d->in_numel + i];
  for (int64_t i = 0; i < r * d->y_numel; i++)
    y[i] = d->y[first * d->y_numel + i];
  double **pp = arena_alloc(a, sizeof(double *) * (size_t)(m->params.n + 1));
  int64_t off = 0;
  for (int i = 0; i < m->params.n; i++) {
    int64_t n = shape_numel(((IrParam *)m->params.item[i])->shape);
    pp[i] = arena_alloc(a, sizeof(double) * (size_t)n);
    for (int64_t j = 0; j < n; j++)
      pp[i][j] = params[off + j];
    off += n;
  }
  EvalEnv env = {.batch = r, .input = x, .label = y, .param = pp,
                 .step_key = key};
  return eval_fn(a, m->fn, &env);
}

// The reference as nnc_infer computes it (its draws use nnrt_infer_key).
static inline double **reference(Arena *a, const IrModule *m, const Data *d,
                                 int b, const float *params) {
  return reference_key(a, m, d, b, params, nnrt_infer_key(m->train.seed));
}

// got[i] ~ ref[i]: relative `rel` of the element, or of the tensor's mean
// magnitude for elements near zero (cancellation in long sums).
static inline void expect_close(const char *what, const float *got,
                                const double *ref, int64_t n, double rel) {
  double mean = 0;
  for (int64_t i = 0; i < n; i++)
    mean += fabs(ref[i]) / (double)n;
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double tol = rel * fmax(fabs(ref[i]), fmax(mean, 1e-30));
    if (!(fabs(got[i] - ref[i]) <= tol) && bad++ < 5)
      cr_log_error("%s[%lld]: got %.9g, want %.9g", what, (long long)i, got[i],
                   ref[i]);
  }
  cr_assert_eq(bad, 0, "%s: %d of %lld elements differ", what, bad,
               (long long)n);
}

static inline void expect_near(const char *what, double got, double want,
                               double rel) {
  cr_assert(fabs(got - want) <= rel * fmax(fabs(want), 1e-3),
            "%s: got %.9g, want %.9g", what, got, want);
}

// ---- checks shared by the tests ---------------------------------------------
// nnc_infer on every batch: predictions, loss sums and correct counts.
static inline void check_infer(T *t, const IrModule *m, const char *exe,
                               const Data *d, int64_t threads) {
  size_t n;
  char *out =
      run(t, exe, (HarnessIn){.mode = H_INFER, .threads = threads}, d, &n);
  int64_t np = d->total * d->out_numel;
  cr_assert_eq(n, 4 * (size_t)np + 16 * (size_t)d->nbatch + 8);
  const float *pred = (const float *)out;
  // The stats follow 4 * np bytes of predictions: copied out, since they
  // need not be 8-byte aligned (np odd).
  double *stats = arena_alloc(&t->arena, 16 * (size_t)d->nbatch);
  memcpy(stats, out + 4 * np, 16 * (size_t)d->nbatch);
  int64_t ok;
  memcpy(&ok, out + 4 * np + 16 * d->nbatch, 8);
  cr_expect_eq(ok, 1, "infer without labels or output disagrees");
  int64_t first = 0;
  for (int b = 0; b < d->nbatch; b++) {
    double **ref = reference(&t->arena, m, d, b, d->params);
    const IrValue *o = m->output;
    int64_t rows = d->rows[b], on = shape_numel(o->shape);
    for (int64_t r = 0; r < rows; r++)
      expect_close("prediction", pred + (first + r) * on,
                   ref[o->id] + (o->batched ? r * on : 0), on, 1e-4);
    const IrValue *obj = ir_eval_graph(m).objective; // nnc_infer's loss
    if (obj)
      expect_near("loss sum", stats[2 * b], ref[obj->id][0] * (double)rows,
                  1e-4);
    if (m->correct)
      expect_near("correct", stats[2 * b + 1], ref[m->correct->id][0], 0);
    first += rows;
  }
}

#endif
