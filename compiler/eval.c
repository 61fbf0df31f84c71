// eval.c — the f64 reference interpreter of the IR (see eval.h).
//
// Consumes an IrFn whose values are numbered by position (value i has id i,
// as the builder and ir_renumber leave them) and an EvalEnv holding the batch
// size and the leaves' data. Produces one arena array per value: B x numel
// elements when the value is batched, numel otherwise, row-major with the
// batch axis outermost. Each primitive has one `eval_ID` rule, dispatched
// from a table generated from prims.def, so a primitive without a rule does
// not compile. The rules are plain loops: this file is the semantic oracle
// that the finite-difference tests and the codegen tests trust, so clarity
// beats speed everywhere.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "eval.h"
#include "nnrt_rng.h"

typedef struct Eval {
  const EvalEnv *env;
  double **res;  // res[id]: the elements of every value evaluated so far
} Eval;

typedef void EvalRule(const Eval *e, const IrValue *v, double *out);

// Rows of the batch axis a value carries: B when batched, else 1.
static int64_t rows_of(const Eval *e, bool batched) {
  return batched ? e->env->batch : 1;
}

static int64_t size_of(const Eval *e, const IrValue *v) {
  return rows_of(e, v->batched) * shape_numel(v->shape);
}

static const double *arg_data(const Eval *e, const IrValue *v, int i) {
  return e->res[v->arg[i]->id];
}

// The offset, inside a value of shape `small` (batched or not), of the element
// that broadcasting maps to batch row r, per-example flat index f of the
// larger shape `big`. Axes align on the right; an axis of size 1 (or a
// missing one) repeats, and an unbatched value repeats over the batch axis.
static int64_t bcast_offset(Shape small, bool small_batched, Shape big,
                            int64_t r, int64_t f) {
  assert(small.rank <= big.rank);
  int64_t off = 0, stride = 1;
  for (int i = big.rank - 1, j = small.rank - 1; i >= 0; i--, j--) {
    int64_t idx = f % big.dim[i];
    f /= big.dim[i];
    if (j < 0)
      continue;
    if (small.dim[j] != 1)
      off += idx * stride;
    stride *= small.dim[j];
  }
  return (small_batched ? r * shape_numel(small) : 0) + off;
}

// ---- leaves -----------------------------------------------------------------
static void copy_rows(const Eval *e, const IrValue *v, const double *src,
                      double *out) {
  assert(src && "the environment lacks this leaf's data");
  memcpy(out, src, sizeof(double) * (size_t)size_of(e, v));
}

static void eval_INPUT(const Eval *e, const IrValue *v, double *out) {
  copy_rows(e, v, e->env->input, out);
}
static void eval_LABEL(const Eval *e, const IrValue *v, double *out) {
  copy_rows(e, v, e->env->label, out);
}
static void eval_PARAM(const Eval *e, const IrValue *v, double *out) {
  assert(!v->batched);
  copy_rows(e, v, e->env->param[v->attr.index], out);
}
static void eval_CONST(const Eval *e, const IrValue *v, double *out) {
  (void)e;
  out[0] = v->attr.num;
}
static void eval_ARG(const Eval *e, const IrValue *v, double *out) {
  out[0] = e->env->arg[v->attr.index];
}
static void eval_BATCH_SIZE(const Eval *e, const IrValue *v, double *out) {
  (void)v;
  out[0] = (double)e->env->batch;
}

// ---- random draws: the functions of nnrt_rng.h, element c of row r being
// number r * numel + c of the draw's key -------------------------------------
typedef double DrawFn(uint64_t key, uint64_t c, uint64_t threshold);

static void draw(const Eval *e, const IrValue *v, double *out, DrawFn *fn) {
  uint64_t key = nnrt_draw_key(e->env->step_key, (uint64_t)v->attr.index);
  uint64_t threshold = (uint64_t)llround(v->attr.num * 0x1.0p24);
  int64_t n = size_of(e, v);
  for (int64_t c = 0; c < n; c++)
    out[c] = fn(key, (uint64_t)c, threshold);
}
static double draw_uniform(uint64_t key, uint64_t c, uint64_t threshold) {
  (void)threshold;
  return nnrt_draw_uniform(key, c);
}
static double draw_normal(uint64_t key, uint64_t c, uint64_t threshold) {
  (void)threshold;
  return (float)nnrt_draw_normal(key, c);  // generated code rounds to f32
}
static void eval_RAND_UNIFORM(const Eval *e, const IrValue *v, double *out) {
  draw(e, v, out, draw_uniform);
}
static void eval_RAND_NORMAL(const Eval *e, const IrValue *v, double *out) {
  draw(e, v, out, draw_normal);
}
static void eval_RAND_BERNOULLI(const Eval *e, const IrValue *v, double *out) {
  draw(e, v, out, nnrt_draw_bernoulli);
}

// ---- element-wise: one scalar function per primitive, broadcast loops -------
typedef double ScalarFn(const double *x);

static void ew(const Eval *e, const IrValue *v, double *out, ScalarFn *fn) {
  int64_t n = shape_numel(v->shape), rows = rows_of(e, v->batched);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t f = 0; f < n; f++) {
      double x[MAX_ARGS];
      for (int i = 0; i < v->narg; i++) {
        const IrValue *a = v->arg[i];
        x[i] = arg_data(e, v, i)[bcast_offset(a->shape, a->batched, v->shape,
                                              r, f)];
      }
      out[r * n + f] = fn(x);
    }
}

#define EW(id, expr)                                                     \
  static double scalar_##id(const double *x) { return (expr); }          \
  static void eval_##id(const Eval *e, const IrValue *v, double *out) {  \
    ew(e, v, out, scalar_##id);                                          \
  }

EW(NEG, -x[0])
EW(EXP, exp(x[0]))
EW(LOG, log(x[0]))
EW(SQRT, sqrt(x[0]))
EW(TANH, tanh(x[0]))
EW(SIGMOID, 1.0 / (1.0 + exp(-x[0])))
EW(RELU, x[0] > 0 ? x[0] : 0.0)
EW(STEP, x[0] > 0 ? 1.0 : 0.0)
EW(ABS, fabs(x[0]))
EW(SIGN, (double)((x[0] > 0) - (x[0] < 0)))
EW(SIN, sin(x[0]))
EW(COS, cos(x[0]))
EW(FLOOR, floor(x[0]))
EW(DETACH, x[0])
EW(BROADCAST, x[0])  // the output index space is the target; ew maps back
EW(ADD, x[0] + x[1])
EW(SUB, x[0] - x[1])
EW(MUL, x[0] * x[1])
EW(DIV, x[0] / x[1])
EW(POW, pow(x[0], x[1]))
// Ties go to the second argument; grad.c's GT-based rules agree.
EW(MAX, x[0] > x[1] ? x[0] : x[1])
EW(MIN, x[1] > x[0] ? x[0] : x[1])
EW(GT, x[0] > x[1] ? 1.0 : 0.0)

// ---- reductions -------------------------------------------------------------
static void reduce_rows(const Eval *e, const IrValue *v, double *out,
                        bool mean) {
  const IrValue *x = v->arg[0];
  const double *in = arg_data(e, v, 0);
  int64_t n = shape_numel(x->shape), rows = rows_of(e, x->batched);
  for (int64_t r = 0; r < rows; r++) {
    double s = 0;
    for (int64_t f = 0; f < n; f++)
      s += in[r * n + f];
    out[r] = mean ? s / (double)n : s;
  }
}
static void eval_SUM(const Eval *e, const IrValue *v, double *out) {
  reduce_rows(e, v, out, false);
}
static void eval_MEAN(const Eval *e, const IrValue *v, double *out) {
  reduce_rows(e, v, out, true);
}

// Walks the argument's index space and adds each element to the target
// element that broadcasting would have copied it from.
static void eval_SUM_TO(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0];
  const double *in = arg_data(e, v, 0);
  int64_t n = shape_numel(x->shape), rows = rows_of(e, x->batched);
  memset(out, 0, sizeof(double) * (size_t)size_of(e, v));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t f = 0; f < n; f++)
      out[bcast_offset(v->shape, v->batched, x->shape, r, f)] +=
          in[r * n + f];
}

static void eval_BATCH_MEAN(const Eval *e, const IrValue *v, double *out) {
  const double *in = arg_data(e, v, 0);
  int64_t n = shape_numel(v->shape), rows = e->env->batch;
  for (int64_t f = 0; f < n; f++) {
    double s = 0;
    for (int64_t r = 0; r < rows; r++)
      s += in[r * n + f];
    out[f] = s / (double)rows;
  }
}

// Softmax rows along the last axis, shifted by the row maximum so that
// exp never overflows; log_softmax never takes the log of a rounded 0.
static void softmax_rows(const Eval *e, const IrValue *v, double *out,
                         bool log_form) {
  const double *in = arg_data(e, v, 0);
  int64_t n = v->shape.dim[v->shape.rank - 1];
  int64_t rows = size_of(e, v) / n;
  for (int64_t r = 0; r < rows; r++) {
    const double *x = in + r * n;
    double *y = out + r * n, mx = x[0], s = 0;
    for (int64_t i = 1; i < n; i++)
      mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++)
      s += exp(x[i] - mx);
    for (int64_t i = 0; i < n; i++)
      y[i] = log_form ? x[i] - mx - log(s) : exp(x[i] - mx) / s;
  }
}
static void eval_SOFTMAX(const Eval *e, const IrValue *v, double *out) {
  softmax_rows(e, v, out, false);
}
static void eval_LOG_SOFTMAX(const Eval *e, const IrValue *v, double *out) {
  softmax_rows(e, v, out, true);
}

static int64_t argmax(const double *x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (x[i] > x[best])  // strict: the first maximum wins
      best = i;
  return best;
}

static void eval_CORRECT(const Eval *e, const IrValue *v, double *out) {
  const IrValue *p = v->arg[0], *l = v->arg[1];
  int64_t n = p->shape.dim[0];
  for (int64_t r = 0; r < rows_of(e, v->batched); r++) {
    const double *pr = arg_data(e, v, 0) + (p->batched ? r * n : 0);
    const double *lr = arg_data(e, v, 1) + (l->batched ? r * n : 0);
    bool ok = n > 1 ? argmax(pr, n) == argmax(lr, n)
                    : (pr[0] > v->attr.num) == (lr[0] > 0.5);
    out[r] = ok ? 1.0 : 0.0;
  }
}

// ---- matrix products: the first argument is a (rows x last dim) matrix ------
static int64_t last_dim(const IrValue *v) {
  return v->shape.dim[v->shape.rank - 1];
}
static int64_t matrix_rows(const Eval *e, const IrValue *v) {
  return size_of(e, v) / last_dim(v);
}

static void eval_MATMUL(const Eval *e, const IrValue *v, double *out) {
  const double *a = arg_data(e, v, 0), *b = arg_data(e, v, 1);
  int64_t rows = matrix_rows(e, v->arg[0]), k = last_dim(v->arg[0]),
          m = last_dim(v);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < m; j++) {
      double s = 0;
      for (int64_t t = 0; t < k; t++)
        s += a[i * k + t] * b[t * m + j];
      out[i * m + j] = s;
    }
}

static void eval_MATMUL_NT(const Eval *e, const IrValue *v, double *out) {
  const double *a = arg_data(e, v, 0), *b = arg_data(e, v, 1);
  int64_t rows = matrix_rows(e, v->arg[0]), m = last_dim(v->arg[0]),
          k = last_dim(v);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < k; j++) {
      double s = 0;
      for (int64_t t = 0; t < m; t++)
        s += a[i * m + t] * b[j * m + t];
      out[i * k + j] = s;
    }
}

static void eval_MATMUL_TN(const Eval *e, const IrValue *v, double *out) {
  const double *a = arg_data(e, v, 0), *b = arg_data(e, v, 1);
  int64_t rows = matrix_rows(e, v->arg[0]), k = last_dim(v->arg[0]),
          m = last_dim(v->arg[1]);
  assert(rows == matrix_rows(e, v->arg[1]));
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < m; j++) {
      double s = 0;
      for (int64_t r = 0; r < rows; r++)
        s += a[r * k + i] * b[r * m + j];
      out[i * m + j] = s;
    }
}

// ---- layout -----------------------------------------------------------------
static void eval_RESHAPE(const Eval *e, const IrValue *v, double *out) {
  memcpy(out, arg_data(e, v, 0), sizeof(double) * (size_t)size_of(e, v));
}

// ---- the convolutional family -----------------------------------------------
// Window geometry: WinGeom (ir.h). Positions inside one channel are flattened
// row-major.

// The flat input position that tap t (flat over the kernel) of window o
// (flat over the windows) reads, or -1 when it falls in the padding.
static int64_t tap(const WinGeom *g, int64_t o, int64_t t) {
  int64_t pos = 0, stride = 1;
  for (int i = 2; i >= 0; i--) {
    int64_t oi = o % g->out[i], ti = t % g->k[i];
    o /= g->out[i];
    t /= g->k[i];
    int64_t p = oi * g->s[i] - g->lo[i] + ti * g->d[i];
    if (p < 0 || p >= g->n[i])
      return -1;
    pos += p * stride;
    stride *= g->n[i];
  }
  return pos;
}

// CONV, CONV_T and CONV_W are the three contractions of one sum of terms
//   y[o, j] ~ x[group(o) * C/g + c, tap(j, t)] * w[o, c, t]
// over all rows, output channels o, channels c of o's group, windows j and
// taps t that are not padding. `mode` says which of the three is computed
// (into `res`, zeroed first) from the other two; the other two pointers are
// the operands (per-row for x and y, shared for w).
typedef enum ConvMode { CONV_OUT_Y, CONV_OUT_X, CONV_OUT_W } ConvMode;

static void conv_terms(int64_t rows, Shape xs, Shape ws, Shape ys,
                       const Window *win, const double *x, const double *w,
                       const double *y, double *res, ConvMode mode) {
  WinGeom g = win_geom(xs, ys, ws.dim + 2, win);
  int64_t outc = ws.dim[0], cg = ws.dim[1], og = outc / win->groups;
  int64_t xn = shape_numel(xs), yn = shape_numel(ys);
  int64_t resn = mode == CONV_OUT_Y ? rows * yn
                 : mode == CONV_OUT_X ? rows * xn
                                      : shape_numel(ws);
  memset(res, 0, sizeof(double) * (size_t)resn);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < outc; o++)
      for (int64_t c = 0; c < cg; c++) {
        int64_t ci = o / og * cg + c;  // the input channel
        for (int64_t j = 0; j < g.nout; j++)
          for (int64_t t = 0; t < g.nk; t++) {
            int64_t p = tap(&g, j, t);
            if (p < 0)
              continue;
            int64_t xi = r * xn + ci * g.nin + p;
            int64_t wi = (o * cg + c) * g.nk + t;
            int64_t yi = r * yn + o * g.nout + j;
            switch (mode) {
            case CONV_OUT_Y: res[yi] += x[xi] * w[wi]; break;
            case CONV_OUT_X: res[xi] += y[yi] * w[wi]; break;
            case CONV_OUT_W: res[wi] += x[xi] * y[yi]; break;
            }
          }
      }
}

static void eval_CONV(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0], *w = v->arg[1];
  conv_terms(rows_of(e, v->batched), x->shape, w->shape, v->shape,
             &v->attr.win, arg_data(e, v, 0), arg_data(e, v, 1), NULL, out,
             CONV_OUT_Y);
}

static void eval_CONV_T(const Eval *e, const IrValue *v, double *out) {
  const IrValue *dy = v->arg[0], *w = v->arg[1];
  conv_terms(rows_of(e, v->batched), v->shape, w->shape, dy->shape,
             &v->attr.win, NULL, arg_data(e, v, 1), arg_data(e, v, 0), out,
             CONV_OUT_X);
}

static void eval_CONV_W(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0], *dy = v->arg[1];
  conv_terms(rows_of(e, x->batched), x->shape, v->shape, dy->shape,
             &v->attr.win, arg_data(e, v, 0), NULL, arg_data(e, v, 1), out,
             CONV_OUT_W);
}

// The windows of a pool over `in` (the unpooled per-example shape).
static WinGeom pool_geom(Shape in, Shape pooled, const Window *w) {
  return win_geom(in, pooled, w->kernel, w);
}

// The position, within one channel xc, of its window j's maximum: the first
// in tap order (row-major over the kernel) among equal maxima. Padding never
// wins; the shape rule guarantees every window reads some input.
static int64_t window_argmax(const WinGeom *g, const double *xc, int64_t j) {
  int64_t best = -1;
  for (int64_t t = 0; t < g->nk; t++) {
    int64_t p = tap(g, j, t);
    if (p >= 0 && (best < 0 || xc[p] > xc[best]))
      best = p;
  }
  assert(best >= 0 && "a window lies entirely in the padding");
  return best;
}

// The pool operations below walk rows r, channels c and windows j of a
// pooled value; the unpooled value has C * g.nin elements per row.
static void eval_MAXPOOL(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0];
  const double *in = arg_data(e, v, 0);
  WinGeom g = pool_geom(x->shape, v->shape, &v->attr.win);
  int64_t chans = x->shape.dim[0] * rows_of(e, v->batched);
  for (int64_t rc = 0; rc < chans; rc++) {  // row r, channel c: rc = r C + c
    const double *xc = in + rc * g.nin;
    for (int64_t j = 0; j < g.nout; j++)
      out[rc * g.nout + j] = xc[window_argmax(&g, xc, j)];
  }
}

static void eval_UNPOOL(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0], *val = v->arg[1];
  const double *in = arg_data(e, v, 0), *vs = arg_data(e, v, 1);
  WinGeom g = pool_geom(x->shape, val->shape, &v->attr.win);
  int64_t chans = x->shape.dim[0] * rows_of(e, v->batched);
  memset(out, 0, sizeof(double) * (size_t)size_of(e, v));
  for (int64_t rc = 0; rc < chans; rc++) {
    const double *xc = in + rc * g.nin;
    for (int64_t j = 0; j < g.nout; j++)
      out[rc * g.nin + window_argmax(&g, xc, j)] += vs[rc * g.nout + j];
  }
}

static void eval_POOL_SELECT(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0];
  const double *in = arg_data(e, v, 0), *gs = arg_data(e, v, 1);
  WinGeom g = pool_geom(x->shape, v->shape, &v->attr.win);
  int64_t chans = x->shape.dim[0] * rows_of(e, v->batched);
  for (int64_t rc = 0; rc < chans; rc++) {
    const double *xc = in + rc * g.nin;
    for (int64_t j = 0; j < g.nout; j++)
      out[rc * g.nout + j] = gs[rc * g.nin + window_argmax(&g, xc, j)];
  }
}

// The divisor is the full window size, padding included (PyTorch's
// count_include_pad=True): padding counts as zeros.
static void eval_AVGPOOL(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0];
  const double *in = arg_data(e, v, 0);
  WinGeom g = pool_geom(x->shape, v->shape, &v->attr.win);
  int64_t chans = x->shape.dim[0] * rows_of(e, v->batched);
  for (int64_t rc = 0; rc < chans; rc++)
    for (int64_t j = 0; j < g.nout; j++) {
      double s = 0;
      for (int64_t t = 0; t < g.nk; t++) {
        int64_t p = tap(&g, j, t);
        if (p >= 0)
          s += in[rc * g.nin + p];
      }
      out[rc * g.nout + j] = s / (double)g.nk;
    }
}

static void eval_AVGPOOL_T(const Eval *e, const IrValue *v, double *out) {
  const IrValue *dy = v->arg[0];
  const double *in = arg_data(e, v, 0);
  WinGeom g = pool_geom(v->shape, dy->shape, &v->attr.win);
  int64_t chans = v->shape.dim[0] * rows_of(e, v->batched);
  memset(out, 0, sizeof(double) * (size_t)size_of(e, v));
  for (int64_t rc = 0; rc < chans; rc++)
    for (int64_t j = 0; j < g.nout; j++)
      for (int64_t t = 0; t < g.nk; t++) {
        int64_t p = tap(&g, j, t);
        if (p >= 0)
          out[rc * g.nin + p] += in[rc * g.nout + j] / (double)g.nk;
      }
}

// Copies between the slab start..start+len of axis `axis` of a value `big`
// and a value `small` of extent len there (the two agree off the axis): the
// slab's element (row r; outer index o, axis index start + i, inner index k)
// is small's element (r; o, i, k). An unbatched small has one row, used for
// every row of big. to_big says the direction.
static void slab_copy(const Eval *e, const IrValue *big, double *bigd,
                      const IrValue *small, double *smalld, int axis,
                      int64_t start, bool to_big) {
  int64_t outer = shape_outer(big->shape, axis);
  int64_t inner = shape_inner(big->shape, axis);
  int64_t blen = big->shape.dim[axis], slen = small->shape.dim[axis];
  int64_t bn = shape_numel(big->shape), sn = shape_numel(small->shape);
  for (int64_t r = 0; r < rows_of(e, big->batched); r++)
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < slen * inner; i++) {
        double *b = &bigd[r * bn + (o * blen + start) * inner + i];
        double *s =
            &smalld[(small->batched ? r * sn : 0) + o * slen * inner + i];
        if (to_big)
          *b = *s;
        else
          *s = *b;
      }
}

static void eval_CONCAT(const Eval *e, const IrValue *v, double *out) {
  const IrValue *a = v->arg[0], *b = v->arg[1];
  int ax = v->attr.axis;
  slab_copy(e, v, out, a, e->res[a->id], ax, 0, true);
  slab_copy(e, v, out, b, e->res[b->id], ax, a->shape.dim[ax], true);
}

static void eval_SLICE(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0];
  slab_copy(e, x, e->res[x->id], v, out, v->attr.axis, v->attr.start, false);
}

static void eval_EMBED(const Eval *e, const IrValue *v, double *out) {
  const IrValue *x = v->arg[0];
  memset(out, 0, sizeof(double) * (size_t)size_of(e, v));
  slab_copy(e, v, out, x, e->res[x->id], v->attr.axis, v->attr.start, true);
}

static EvalRule *const eval_rules[OP_COUNT] = {
#define PRIM(id, name, arity, kind, flags, identity, flops) [OP_##id] = eval_##id,
#include "prims.def"
#undef PRIM
};

double **eval_fn(Arena *a, const IrFn *fn, const EvalEnv *env) {
  Eval e = {env, arena_alloc(a, sizeof(double *) * (size_t)(fn->values.n + 1))};
  for (int i = 0; i < fn->values.n; i++) {
    const IrValue *v = fn->values.item[i];
    assert(v->id == i && "values must be numbered by position");
    for (int j = 0; j < v->narg; j++)
      assert(v->arg[j]->id < i && "arguments come before their users");
    e.res[i] = arena_alloc(a, sizeof(double) * (size_t)size_of(&e, v));
    eval_rules[v->op](&e, v, e.res[i]);
  }
  return e.res;
}
