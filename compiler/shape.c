// shape.c — the shape rule of every primitive (the `shape_ID` column of
// prims.def) and the small Shape value helpers.
//
// A rule is pure: it reads argument shapes and attributes and either fills
// the output shape and batched flag or returns a lowercase reason. Sema calls
// the rules to report user errors; the IR builder calls them again and
// asserts, so every later phase can trust the shapes.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "ir.h"

Shape shape_scalar(void) { return (Shape){0}; }

Shape shape_of(int rank, const int64_t *dim) {
  assert(rank >= 0 && rank <= MAX_RANK);
  Shape s = {.rank = rank};
  for (int i = 0; i < rank; i++)
    s.dim[i] = dim[i];
  return s;
}

Shape shape_vec(int64_t n) { return (Shape){.rank = 1, .dim = {n}}; }

bool shape_eq(Shape a, Shape b) {
  if (a.rank != b.rank)
    return false;
  for (int i = 0; i < a.rank; i++)
    if (a.dim[i] != b.dim[i])
      return false;
  return true;
}

int64_t shape_numel(Shape s) {
  int64_t n = 1;
  for (int i = 0; i < s.rank; i++)  // saturates: sema rejects such shapes
    if (__builtin_mul_overflow(n, s.dim[i], &n))
      return INT64_MAX;
  return n;
}

int64_t shape_outer(Shape s, int axis) {
  int64_t n = 1;
  for (int i = 0; i < axis; i++)
    if (__builtin_mul_overflow(n, s.dim[i], &n))
      return INT64_MAX;
  return n;
}

int64_t shape_inner(Shape s, int axis) {
  int64_t n = 1;
  for (int i = axis + 1; i < s.rank; i++)
    if (__builtin_mul_overflow(n, s.dim[i], &n))
      return INT64_MAX;
  return n;
}

char *shape_str(Arena *a, Shape s, bool batched) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "f32[%s", batched ? "B" : "");
  for (int i = 0; i < s.rank; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%lld",
                  (i || batched) ? ", " : "", (long long)s.dim[i]);
  snprintf(buf + n, sizeof buf - (size_t)n, "]");
  return arena_strdup(a, buf);
}

// ---- rules ------------------------------------------------------------------
#define RULE(id)                                                            \
  static const char *shape_##id(const Shape *in, const bool *inb,         \
                                const Attr *attr, Shape *out, bool *outb)

// Leaves take their shape from the builder (ir_leaf sets attr.shape).
static const char *leaf(const Attr *attr, Shape *out, bool *outb) {
  *out = attr->shape;
  *outb = attr->batched;
  return NULL;
}
RULE(INPUT) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(LABEL) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(PARAM) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(CONST) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(ARG) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(BATCH_SIZE) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(RAND_UNIFORM) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(RAND_NORMAL) { (void)in, (void)inb; return leaf(attr, out, outb); }
RULE(RAND_BERNOULLI) {
  (void)in, (void)inb;
  if (!(attr->num >= 0 && attr->num <= 1))
    return "a probability must be in [0, 1]";
  return leaf(attr, out, outb);
}

// Element-wise unary: the shape passes through.
static const char *same(const Shape *in, const bool *inb, Shape *out,
                        bool *outb) {
  *out = in[0];
  *outb = inb[0];
  return NULL;
}
#define UNARY(id) \
  RULE(id) { (void)attr; return same(in, inb, out, outb); }
UNARY(NEG) UNARY(EXP) UNARY(LOG) UNARY(SQRT) UNARY(TANH) UNARY(SIGMOID)
UNARY(RELU) UNARY(STEP) UNARY(ABS) UNARY(SIGN)
UNARY(SIN) UNARY(COS) UNARY(FLOOR) UNARY(DETACH)

// Numpy broadcasting, right-aligned; the batch axis broadcasts too.
static const char *broadcast(const Shape *in, const bool *inb, Shape *out,
                             bool *outb) {
  const Shape *a = &in[0], *b = &in[1];
  int rank = a->rank > b->rank ? a->rank : b->rank;
  Shape s = {.rank = rank};
  for (int i = 0; i < rank; i++) {
    int ia = a->rank - rank + i, ib = b->rank - rank + i;
    int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return "shapes do not broadcast";
    s.dim[i] = da == 1 ? db : da;
  }
  *out = s;
  *outb = inb[0] || inb[1];
  return NULL;
}
#define BINARY(id) \
  RULE(id) { (void)attr; return broadcast(in, inb, out, outb); }
BINARY(ADD) BINARY(SUB) BINARY(MUL) BINARY(DIV) BINARY(POW) BINARY(MAX)
BINARY(MIN) BINARY(GT)

// Broadcasting the argument to the target must be legal.
RULE(BROADCAST) {
  Shape pair[2] = {in[0], attr->shape};
  bool pb[2] = {inb[0], attr->batched};
  Shape s;
  bool sb;
  if (broadcast(pair, pb, &s, &sb) || !shape_eq(s, attr->shape) ||
      sb != attr->batched)
    return "cannot broadcast to the target shape";
  *out = s;
  *outb = sb;
  return NULL;
}

// Sums a broadcast result back down: the inverse of BROADCAST.
RULE(SUM_TO) {
  Shape pair[2] = {attr->shape, in[0]};
  bool pb[2] = {attr->batched, inb[0]};
  Shape s;
  bool sb;
  if (broadcast(pair, pb, &s, &sb) || !shape_eq(s, in[0]) || sb != inb[0])
    return "cannot sum down to the target shape";
  *out = attr->shape;
  *outb = attr->batched;
  return NULL;
}

static const char *to_scalar(const bool *inb, Shape *out, bool *outb) {
  *out = shape_scalar();
  *outb = inb[0];
  return NULL;
}
RULE(SUM) { (void)in, (void)attr; return to_scalar(inb, out, outb); }
RULE(MEAN) { (void)in, (void)attr; return to_scalar(inb, out, outb); }

RULE(BATCH_MEAN) {
  (void)attr;
  if (!inb[0])
    return "expected a value with a batch axis";
  *out = in[0];
  *outb = false;
  return NULL;
}

static const char *last_axis(const Shape *in, const bool *inb, Shape *out,
                             bool *outb) {
  if (in[0].rank < 1)
    return "expected at least one axis";
  return same(in, inb, out, outb);
}
RULE(SOFTMAX) { (void)attr; return last_axis(in, inb, out, outb); }
RULE(LOG_SOFTMAX) { (void)attr; return last_axis(in, inb, out, outb); }

RULE(CORRECT) {
  (void)attr;
  if (!shape_eq(in[0], in[1]))
    return "prediction and label shapes differ";
  if (in[0].rank != 1)
    return "expected vectors";
  *out = shape_scalar();
  *outb = inb[0] || inb[1];
  return NULL;
}

// a[..., k] @ b[k, m] -> [..., m]; b never carries the batch axis.
RULE(MATMUL) {
  (void)attr;
  const Shape *a = &in[0], *b = &in[1];
  if (a->rank < 1 || b->rank != 2)
    return "expected a vector or matrix times a matrix";
  if (inb[1])
    return "the right operand must not depend on the example";
  if (a->dim[a->rank - 1] != b->dim[0])
    return "inner dimensions differ";
  *out = *a;
  out->dim[a->rank - 1] = b->dim[1];
  *outb = inb[0];
  return NULL;
}

// a[..., m] @ b[k, m]^T -> [..., k]
RULE(MATMUL_NT) {
  (void)attr;
  const Shape *a = &in[0], *b = &in[1];
  if (a->rank < 1 || b->rank != 2 || inb[1])
    return "expected a vector or matrix times a matrix";
  if (a->dim[a->rank - 1] != b->dim[1])
    return "inner dimensions differ";
  *out = *a;
  out->dim[a->rank - 1] = b->dim[0];
  *outb = inb[0];
  return NULL;
}

// sum over all rows (batch and leading axes) of a[..., k]^T b[..., m]
RULE(MATMUL_TN) {
  (void)attr;
  const Shape *a = &in[0], *b = &in[1];
  if (a->rank < 1 || a->rank != b->rank || inb[0] != inb[1])
    return "operands must have the same rows";
  for (int i = 0; i + 1 < a->rank; i++)
    if (a->dim[i] != b->dim[i])
      return "operands must have the same rows";
  *out = (Shape){.rank = 2, .dim = {a->dim[a->rank - 1], b->dim[b->rank - 1]}};
  *outb = false;
  return NULL;
}

RULE(RESHAPE) {
  if (shape_numel(in[0]) != shape_numel(attr->shape))
    return "element counts differ";
  *out = attr->shape;
  *outb = inb[0];
  return NULL;
}

// ---- the convolutional family -----------------------------------------------
// Per-example values are channels-first, [C, n...] with 1 to 3 spatial axes;
// weights are [O, C/groups, k...]. Window geometry along spatial axis i:
// window j reads input positions j stride - pad_lo + t dilation, t < k; a
// position outside [0, n) is padding.
enum { MAX_SPATIAL = 3 };

// The spatial rank of a channels-first per-example shape; 0 if it is not one.
static int spatial_rank(Shape s) {
  return s.rank >= 2 && s.rank <= 1 + MAX_SPATIAL ? s.rank - 1 : 0;
}

static const char *window_check(const Window *w, int nsp) {
  for (int i = 0; i < nsp; i++) {
    if (w->stride[i] < 1)
      return "stride must be at least 1";
    if (w->dilation[i] < 1)
      return "dilation must be at least 1";
    if (w->pad_lo[i] < 0 || w->pad_hi[i] < 0)
      return "padding must not be negative";
  }
  return NULL;
}

// The number of windows along spatial axis i of an input of extent n with a
// kernel of extent k: floor((n + lo + hi - d (k - 1) - 1) / s) + 1; 0 when
// the dilated kernel is larger than the padded input, -1 on overflow.
// Expects window_check to have passed and k >= 1.
static int64_t window_count(int64_t n, int64_t k, const Window *w, int i) {
  int64_t span, padded;
  if (__builtin_mul_overflow(w->dilation[i], k - 1, &span) ||
      __builtin_add_overflow(span, 1, &span) ||
      __builtin_add_overflow(n, w->pad_lo[i], &padded) ||
      __builtin_add_overflow(padded, w->pad_hi[i], &padded))
    return -1;
  return padded < span ? 0 : (padded - span) / w->stride[i] + 1;
}

// See ir.h.
WinGeom win_geom(Shape in, Shape out, const int64_t *k, const Window *w) {
  WinGeom g;
  int skip = 3 - (in.rank - 1);
  assert(skip >= 0 && skip < 3 && out.rank == in.rank);
  for (int i = 0; i < 3; i++) {
    int j = i - skip;
    g.n[i] = j >= 0 ? in.dim[1 + j] : 1;
    g.out[i] = j >= 0 ? out.dim[1 + j] : 1;
    g.k[i] = j >= 0 ? k[j] : 1;
    g.s[i] = j >= 0 ? w->stride[j] : 1;
    g.lo[i] = j >= 0 ? w->pad_lo[j] : 0;
    g.d[i] = j >= 0 ? w->dilation[j] : 1;
  }
  g.nin = g.n[0] * g.n[1] * g.n[2];
  g.nout = g.out[0] * g.out[1] * g.out[2];
  g.nk = g.k[0] * g.k[1] * g.k[2];
  g.lines = g.out[0] * g.out[1];
  return g;
}

// The spatial extents of the windows of x (dims 1..) with kernel k[], into
// out (which keeps x's rank; the caller sets the channels).
static const char *window_shape(Shape x, const int64_t *k, const Window *w,
                                Shape *out) {
  int nsp = spatial_rank(x);
  const char *why = window_check(w, nsp);
  if (why)
    return why;
  *out = x;
  for (int i = 0; i < nsp; i++) {
    int64_t m = window_count(x.dim[1 + i], k[i], w, i);
    if (m < 0)
      return "the window is too large";
    if (m == 0)
      return "the kernel is larger than the padded input";
    out->dim[1 + i] = m;
  }
  return NULL;
}

// The output per-example shape of CONV(x, w): [O, out...].
static const char *conv_shape(Shape x, Shape w, const Window *win,
                              Shape *out) {
  if (!spatial_rank(x))
    return "expected channels and 1 to 3 spatial axes";
  if (w.rank != x.rank + 1)
    return "the weight must have one more axis than the input";
  if (win->groups < 1)
    return "groups must be at least 1";
  if (x.dim[0] % win->groups)
    return "input channels do not divide by groups";
  if (w.dim[0] % win->groups)
    return "output channels do not divide by groups";
  if (w.dim[1] != x.dim[0] / win->groups)
    return "input channels / groups differ from the weight's input channels";
  for (int i = 0; i + 2 < w.rank; i++)
    if (w.dim[2 + i] < 1)
      return "kernel size must be at least 1";
  const char *why = window_shape(x, w.dim + 2, win, out);
  if (why)
    return why;
  out->dim[0] = w.dim[0];
  return NULL;
}

// y = x (*) w; the weight never carries the batch axis.
RULE(CONV) {
  if (inb[1])
    return "the weight must not depend on the example";
  const char *why = conv_shape(in[0], in[1], &attr->win, out);
  if (why)
    return why;
  *outb = inb[0];
  return NULL;
}

// CONV's adjoint for x: from dy[O, out...] and w[O, C/g, k...] to the
// per-example shape attr.shape, which must convolve back to dy's shape (the
// stride may leave up to stride - 1 trailing positions: output padding).
RULE(CONV_T) {
  const Shape *dy = &in[0], *w = &in[1], *t = &attr->shape;
  if (inb[1])
    return "the weight must not depend on the example";
  if (!spatial_rank(*dy))
    return "expected channels and 1 to 3 spatial axes";
  if (w->rank != dy->rank + 1)
    return "the weight must have one more axis than the input";
  if (t->rank != dy->rank)
    return "the target shape must have the input's rank";
  const char *why = window_check(&attr->win, spatial_rank(*dy));
  if (why)
    return why;
  if (attr->win.groups < 1)
    return "groups must be at least 1";
  if (w->dim[0] != dy->dim[0])
    return "the weight's output channels differ from the input's channels";
  if (w->dim[0] % attr->win.groups)
    return "input channels do not divide by groups";
  if (t->dim[0] != w->dim[1] * attr->win.groups)
    return "the target channels differ from the weight's";
  Shape fwd;
  if (conv_shape(*t, *w, &attr->win, &fwd) || !shape_eq(fwd, *dy))
    return "the target shape does not convolve to the input shape";
  *out = *t;
  *outb = inb[0];
  return NULL;
}

// CONV's adjoint for w: x and dy of the same rows, summed over the batch.
RULE(CONV_W) {
  const Shape *x = &in[0], *dy = &in[1];
  if (inb[0] != inb[1])
    return "the input and the gradient must both carry the batch axis or "
           "neither";
  Shape fwd;
  const char *why = conv_shape(*x, attr->shape, &attr->win, &fwd);
  if (why)
    return why;
  if (!shape_eq(fwd, *dy))
    return "the gradient does not have the convolution's output shape";
  *out = attr->shape;
  *outb = false;
  return NULL;
}

// Whether some window along spatial axis i reads padding only (a max over
// nothing). Tap t of window j is at j s - lo + t d; the window reads input
// iff its first tap at or after position 0 exists (t < k) and is before n.
// Expects window_count(n, k) == count > 0, so j s - lo cannot overflow.
static bool window_in_padding(int64_t n, int64_t k, int64_t count,
                              const Window *w, int i) {
  int64_t s = w->stride[i], lo = w->pad_lo[i], d = w->dilation[i];
  for (int64_t j = 0; j < count; j++) {
    int64_t first = j * s - lo, t = 0, pos = first;
    if (first < 0) {  // t = ceil(-first / d), pos in [0, d): no overflow
      int64_t r = -first % d;
      t = -first / d + (r != 0);
      pos = r ? d - r : 0;
    }
    if (t >= k || pos >= n)
      return true;
  }
  return false;
}

// The pooled per-example shape of x: the channels, then the window counts.
static const char *pool_shape(Shape x, const Window *w, Shape *out) {
  int nsp = spatial_rank(x);
  if (!nsp)
    return "expected channels and 1 to 3 spatial axes";
  for (int i = 0; i < nsp; i++)
    if (w->kernel[i] < 1)
      return "kernel size must be at least 1";
  const char *why = window_shape(x, w->kernel, w, out);
  if (why)
    return why;
  for (int i = 0; i < nsp; i++)
    if (window_in_padding(x.dim[1 + i], w->kernel[i], out->dim[1 + i], w, i))
      return "a window lies entirely in the padding";
  return NULL;
}

static const char *pool(const Shape *in, const bool *inb, const Attr *attr,
                        Shape *out, bool *outb) {
  const char *why = pool_shape(in[0], &attr->win, out);
  if (why)
    return why;
  *outb = inb[0];
  return NULL;
}
RULE(MAXPOOL) { return pool(in, inb, attr, out, outb); }
RULE(AVGPOOL) { return pool(in, inb, attr, out, outb); }

// (x_ref, v) -> x_ref's shape; v has x_ref's pooled shape.
RULE(UNPOOL) {
  if (inb[0] != inb[1])
    return "the reference and the values must both carry the batch axis or "
           "neither";
  Shape p;
  const char *why = pool_shape(in[0], &attr->win, &p);
  if (why)
    return why;
  if (!shape_eq(p, in[1]))
    return "the values do not have the pooled shape";
  *out = in[0];
  *outb = inb[0];
  return NULL;
}

// (x_ref, g) -> the pooled shape; g has x_ref's shape.
RULE(POOL_SELECT) {
  if (inb[0] != inb[1])
    return "the reference and the values must both carry the batch axis or "
           "neither";
  if (!shape_eq(in[0], in[1]))
    return "the values do not have the reference's shape";
  return pool(in, inb, attr, out, outb);
}

// dy -> attr.shape, which must pool to dy's shape.
RULE(AVGPOOL_T) {
  if (!spatial_rank(in[0]))
    return "expected channels and 1 to 3 spatial axes";
  if (attr->shape.rank != in[0].rank)
    return "the target shape must have the input's rank";
  Shape p;
  const char *why = pool_shape(attr->shape, &attr->win, &p);
  if (why)
    return why;
  if (!shape_eq(p, in[0]))
    return "the target shape does not pool to the input shape";
  *out = attr->shape;
  *outb = inb[0];
  return NULL;
}

// Whether a and b agree on every axis but `axis`.
static bool same_off_axis(Shape a, Shape b, int axis) {
  if (a.rank != b.rank)
    return false;
  for (int i = 0; i < a.rank; i++)
    if (i != axis && a.dim[i] != b.dim[i])
      return false;
  return true;
}

// An unbatched operand repeats over the batch, as in broadcasting.
RULE(CONCAT) {
  const Shape *a = &in[0], *b = &in[1];
  if (a->rank != b->rank)
    return "operands must have the same rank";
  if (a->rank == 0)
    return "cannot concatenate scalars";
  if (attr->axis < 0 || attr->axis >= a->rank)
    return "axis out of range";
  if (!same_off_axis(*a, *b, attr->axis))
    return "shapes differ off the concatenation axis";
  *out = *a;
  out->dim[attr->axis] += b->dim[attr->axis];
  *outb = inb[0] || inb[1];
  return NULL;
}

// x[..., start : start + attr.shape[axis], ...] along attr.axis.
RULE(SLICE) {
  const Shape *x = &in[0], *t = &attr->shape;
  int ax = attr->axis;
  if (t->rank != x->rank)
    return "the slice must have the input's rank";
  if (ax < 0 || ax >= x->rank)
    return "axis out of range";
  if (!same_off_axis(*x, *t, ax))
    return "the slice must keep the other axes whole";
  if (t->dim[ax] < 1)
    return "the slice is empty";
  if (attr->start < 0 || attr->start > x->dim[ax] - t->dim[ax])
    return "the slice is out of range";
  *out = *t;
  *outb = inb[0];
  return NULL;
}

// zeros of attr.shape with x at indices start.. of attr.axis.
RULE(EMBED) {
  const Shape *x = &in[0], *t = &attr->shape;
  int ax = attr->axis;
  if (t->rank != x->rank)
    return "the target must have the input's rank";
  if (ax < 0 || ax >= x->rank)
    return "axis out of range";
  if (!same_off_axis(*x, *t, ax))
    return "the target must match the input off the axis";
  if (attr->start < 0 || attr->start > t->dim[ax] - x->dim[ax])
    return "the input does not fit in the target at that start";
  *out = *t;
  *outb = inb[0];
  return NULL;
}

const Prim prims[OP_COUNT] = {
#define PRIM(id, name, arity, kind, flags, identity, flops) \
  [OP_##id] = {name, arity, kind, flags, identity, flops, shape_##id},
#include "prims.def"
#undef PRIM
};
