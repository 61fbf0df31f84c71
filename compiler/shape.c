// shape.c — the shape rule of every primitive (the `shape_ID` column of
// prims.def) and the small Shape value helpers.
//
// A rule is pure: it reads argument shapes and attributes and either fills
// the output shape and batched flag or returns a lowercase reason. Sema calls
// the rules to report user errors; the IR builder calls them again and
// asserts, so every later phase can trust the shapes.
#include <assert.h>
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
  for (int i = 0; i < s.rank; i++)
    n *= s.dim[i];
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

const Prim prims[OP_COUNT] = {
#define PRIM(id, name, arity, kind) [OP_##id] = {name, arity, kind, shape_##id},
#include "prims.def"
#undef PRIM
};
