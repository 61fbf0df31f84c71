// conv_test.c — the convolutional family: shape rules, the f64 interpreter,
// the adjoint rules, printing and CSE.
//
// - Shape rules: the result shape of each primitive over 1-D, 2-D and 3-D
//   geometries, and every error reason verbatim (sema shows them to users).
// - eval.c: tiny hand-computed examples (cross-correlation, not convolution;
//   padding never wins a max; the first maximum wins ties; avgpool divides
//   by the full window; concat, slice, embed), one convolution with stride,
//   dilation, asymmetric padding and groups whose expected values come from a
//   separate Python implementation, and a naive reference written here
//   independently of eval.c (explicitly padded buffers) for conv, maxpool and
//   avgpool over every geometry of the tables below.
// - Adjoints: central finite differences in f64 of every new primitive for
//   every geometry (stride 1 and 2, padding 0, 1 and asymmetric, dilation 2,
//   groups, 1-D, 2-D and 3-D, batched and unbatched), of concat, slice and
//   embed along several axes, and of a small CNN; the adjoint identity
//   <conv(x, w), y> = <x, conv_t(y, w)> = <w, conv_w(x, y)>; and the ops each
//   rule emits.
// - ir_print's attribute format and CSE over the new attributes.
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fd_compare.h"
#include "grad.h"
#include "opt.h"

static const Loc L = {0};
enum { BATCH = 3, MAX_LEAVES = 8 };

// ---- shapes and windows -------------------------------------------------------
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
// A shape as a constant initializer (tables) and as a value (code).
#define DIMS(...) {.rank = NDIM(__VA_ARGS__), .dim = {__VA_ARGS__}}
#define S(...) ((Shape)DIMS(__VA_ARGS__))

// The same kernel (pools), stride, padding and dilation on every axis.
static Window win_all(int64_t k, int64_t s, int64_t p, int64_t d, int groups) {
  Window w = {.groups = groups};
  for (int i = 0; i < 3; i++) {
    w.kernel[i] = k;
    w.stride[i] = s;
    w.pad_lo[i] = w.pad_hi[i] = p;
    w.dilation[i] = d;
  }
  return w;
}

static Attr wattr(Window w) { return (Attr){.win = w}; }

// ---- shape rules --------------------------------------------------------------
typedef struct Rule {
  const char *why;  // NULL on success
  Shape out;
  bool outb;
} Rule;

static Rule rule2(Op op, Shape a, bool ab, Shape b, bool bb, Attr attr) {
  Shape in[2] = {a, b};
  bool inb[2] = {ab, bb};
  Rule r = {0};
  r.why = prims[op].shape(in, inb, &attr, &r.out, &r.outb);
  return r;
}
static Rule rule1(Op op, Shape a, bool ab, Attr attr) {
  return rule2(op, a, ab, shape_scalar(), false, attr);
}

static void expect_shape(Rule r, Shape want, bool wantb, const char *what) {
  Arena a = {0};
  cr_expect(!r.why, "%s: unexpected error '%s'", what, r.why);
  if (!r.why)
    cr_expect(shape_eq(r.out, want) && r.outb == wantb, "%s: got %s, want %s",
              what, shape_str(&a, r.out, r.outb), shape_str(&a, want, wantb));
  arena_free(&a);
}

static void expect_error(Rule r, const char *want, const char *what) {
  cr_expect(r.why && strcmp(r.why, want) == 0, "%s: got '%s', want '%s'",
            what, r.why ? r.why : "(no error)", want);
}

Test(shape, conv) {
  Window w1 = win_all(0, 1, 0, 1, 1), w2p = win_all(0, 1, 2, 1, 1);
  expect_shape(rule2(OP_CONV, S(3, 28, 28), true, S(6, 3, 5, 5), false,
                     wattr(w2p)),
               S(6, 28, 28), true, "lenet conv, pad 2");
  expect_shape(rule2(OP_CONV, S(3, 28, 28), false, S(6, 3, 5, 5), false,
                     wattr(w1)),
               S(6, 24, 24), false, "unbatched, valid");
  expect_shape(rule2(OP_CONV, S(1, 7, 7), true, S(1, 1, 3, 3), false,
                     wattr(win_all(0, 2, 0, 1, 1))),
               S(1, 3, 3), true, "stride 2");
  expect_shape(rule2(OP_CONV, S(1, 8, 8), true, S(1, 1, 3, 3), false,
                     wattr(win_all(0, 2, 0, 1, 1))),
               S(1, 3, 3), true, "stride 2 rounds down");
  expect_shape(rule2(OP_CONV, S(1, 7, 7), true, S(1, 1, 3, 3), false,
                     wattr(win_all(0, 1, 0, 2, 1))),
               S(1, 3, 3), true, "dilation 2");
  // 'same' for an even kernel needs asymmetric padding.
  Window same = win_all(0, 1, 1, 1, 1);
  same.pad_hi[0] = 2;
  expect_shape(rule2(OP_CONV, S(1, 7), true, S(2, 1, 4), false, wattr(same)),
               S(2, 7), true, "1-D same, pad 1,2");
  expect_shape(rule2(OP_CONV, S(2, 4, 5, 6), true, S(3, 2, 2, 2, 2), false,
                     wattr(w1)),
               S(3, 3, 4, 5), true, "3-D");
  expect_shape(rule2(OP_CONV, S(4, 5, 5), true, S(6, 2, 3, 3), false,
                     wattr(win_all(0, 1, 0, 1, 2))),
               S(6, 3, 3), true, "groups 2");
  expect_shape(rule2(OP_CONV, S(4, 5, 5), true, S(4, 1, 3, 3), false,
                     wattr(win_all(0, 1, 1, 1, 4))),
               S(4, 5, 5), true, "depthwise");
  expect_shape(rule2(OP_CONV, S(1, 3, 3), true, S(1, 1, 5, 5), false,
                     wattr(win_all(0, 1, 1, 1, 1))),
               S(1, 1, 1), true, "kernel exactly the padded input");
  // Entries past the spatial rank are ignored.
  Window junk = win_all(0, 1, 0, 1, 1);
  junk.stride[1] = junk.stride[2] = 0;
  junk.pad_lo[2] = -5;
  expect_shape(rule2(OP_CONV, S(1, 7), true, S(1, 1, 3), false, wattr(junk)),
               S(1, 5), true, "1-D ignores axes 2 and 3");
}

Test(shape, conv_errors) {
  Attr a = wattr(win_all(0, 1, 0, 1, 1));
  expect_error(rule2(OP_CONV, S(5), true, S(1, 1, 1), false, a),
               "expected channels and 1 to 3 spatial axes", "rank 1");
  expect_error(rule2(OP_CONV, S(1, 2, 2, 2, 2), true, S(1, 1, 1, 1, 1, 1),
                     false, a),
               "expected channels and 1 to 3 spatial axes", "rank 5");
  expect_error(rule2(OP_CONV, S(3, 8, 8), true, S(6, 3, 5), false, a),
               "the weight must have one more axis than the input",
               "weight rank");
  expect_error(rule2(OP_CONV, S(3, 8, 8), true, S(6, 3, 5, 5), true, a),
               "the weight must not depend on the example", "batched weight");
  expect_error(rule2(OP_CONV, S(3, 8, 8), true, S(6, 3, 5, 5), false,
                     wattr(win_all(0, 1, 0, 1, 0))),
               "groups must be at least 1", "groups 0");
  expect_error(rule2(OP_CONV, S(6, 8, 8), true, S(4, 1, 3, 3), false,
                     wattr(win_all(0, 1, 0, 1, 4))),
               "input channels do not divide by groups", "6 channels, 4 groups");
  expect_error(rule2(OP_CONV, S(4, 8, 8), true, S(3, 2, 3, 3), false,
                     wattr(win_all(0, 1, 0, 1, 2))),
               "output channels do not divide by groups", "3 outputs, 2 groups");
  expect_error(rule2(OP_CONV, S(6, 8, 8), true, S(4, 3, 3, 3), false, a),
               "input channels / groups differ from the weight's input "
               "channels",
               "3 per group, 6 channels");
  expect_error(rule2(OP_CONV, S(3, 8, 8), true, S(4, 3, 3, 3), false,
                     wattr(win_all(0, 0, 0, 1, 1))),
               "stride must be at least 1", "stride 0");
  expect_error(rule2(OP_CONV, S(3, 8, 8), true, S(4, 3, 3, 3), false,
                     wattr(win_all(0, 1, 0, 0, 1))),
               "dilation must be at least 1", "dilation 0");
  Window neg = win_all(0, 1, 0, 1, 1);
  neg.pad_hi[1] = -1;
  expect_error(rule2(OP_CONV, S(3, 8, 8), true, S(4, 3, 3, 3), false,
                     wattr(neg)),
               "padding must not be negative", "pad_hi -1");
  expect_error(rule2(OP_CONV, S(1, 3, 3), true, S(1, 1, 5, 5), false, a),
               "the kernel is larger than the padded input", "5x5 on 3x3");
  expect_error(rule2(OP_CONV, S(1, 5, 5), true, S(1, 1, 3, 3), false,
                     wattr(win_all(0, 1, 0, 3, 1))),
               "the kernel is larger than the padded input",
               "dilated 3x3 spans 7");
  expect_error(rule2(OP_CONV, S(1, 5, 5), true, S(1, 1, 3, 3), false,
                     wattr(win_all(0, 1, 0, INT64_MAX, 1))),
               "the window is too large", "overflowing dilation");
  expect_error(rule2(OP_CONV, S(1, 5), true, S(1, 1, 3), false,
                     wattr(win_all(0, 1, INT64_MAX, 1, 1))),
               "the window is too large", "overflowing padding");
}

// k 3, stride 2, pad 1: 5 and 6 both give 3 windows (6 = output padding 1).
Test(shape, conv_t_and_conv_w) {
  Window w = win_all(0, 2, 1, 1, 1);
  Attr t5 = {.win = w, .shape = S(2, 5, 5)}, t6 = {.win = w, .shape = S(2, 6, 6)};
  expect_shape(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, t5),
               S(2, 5, 5), true, "conv_t to 5x5");
  expect_shape(rule2(OP_CONV_T, S(3, 3, 3), false, S(3, 2, 3, 3), false, t6),
               S(2, 6, 6), false, "conv_t to 6x6, output padding");
  Attr t7 = {.win = w, .shape = S(2, 7, 7)};
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, t7),
               "the target shape does not convolve to the input shape",
               "conv_t to 7x7");
  Attr t4 = {.win = w, .shape = S(2, 4, 4)};
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, t4),
               "the target shape does not convolve to the input shape",
               "conv_t to 4x4");
  Attr tc = {.win = w, .shape = S(3, 5, 5)};
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, tc),
               "the target channels differ from the weight's", "channels");
  expect_error(rule2(OP_CONV_T, S(4, 3, 3), true, S(3, 2, 3, 3), false, t5),
               "the weight's output channels differ from the input's channels",
               "dy channels");
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), true, t5),
               "the weight must not depend on the example", "batched weight");
  Attr tr = {.win = w, .shape = S(2, 5)};
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, tr),
               "the target shape must have the input's rank", "target rank");
  Attr tg = {.win = win_all(0, 2, 1, 1, 2), .shape = S(4, 5, 5)};
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, tg),
               "input channels do not divide by groups", "conv_t groups");
  tg.win.stride[0] = 0;
  expect_error(rule2(OP_CONV_T, S(3, 3, 3), true, S(3, 2, 3, 3), false, tg),
               "stride must be at least 1", "conv_t stride");

  Attr wa = {.win = w, .shape = S(3, 2, 3, 3)};
  expect_shape(rule2(OP_CONV_W, S(2, 5, 5), true, S(3, 3, 3), true, wa),
               S(3, 2, 3, 3), false, "conv_w sums over the batch");
  expect_shape(rule2(OP_CONV_W, S(2, 6, 6), false, S(3, 3, 3), false, wa),
               S(3, 2, 3, 3), false, "conv_w unbatched");
  expect_error(rule2(OP_CONV_W, S(2, 5, 5), true, S(3, 3, 3), false, wa),
               "the input and the gradient must both carry the batch axis or "
               "neither",
               "conv_w batch");
  expect_error(rule2(OP_CONV_W, S(2, 5, 5), true, S(3, 3, 2), true, wa),
               "the gradient does not have the convolution's output shape",
               "conv_w dy shape");
  expect_error(rule2(OP_CONV_W, S(2, 5, 5), true, S(3, 3, 3), true,
                     (Attr){.win = w, .shape = S(3, 4, 3, 3)}),
               "input channels / groups differ from the weight's input "
               "channels",
               "conv_w weight channels");
}

Test(shape, pools) {
  Attr p2 = wattr(win_all(2, 2, 0, 1, 0));
  expect_shape(rule1(OP_MAXPOOL, S(3, 28, 28), true, p2), S(3, 14, 14), true,
               "maxpool 2x2");
  expect_shape(rule1(OP_AVGPOOL, S(3, 27, 27), false, p2), S(3, 13, 13),
               false, "avgpool 2x2 rounds down");
  Attr p3 = wattr(win_all(3, 2, 1, 1, 0));
  expect_shape(rule1(OP_MAXPOOL, S(2, 5), true, p3), S(2, 3), true, "1-D");
  expect_shape(rule1(OP_MAXPOOL, S(2, 5, 5, 5), true, p3), S(2, 3, 3, 3),
               true, "3-D");
  expect_shape(rule2(OP_UNPOOL, S(2, 5, 5), true, S(2, 3, 3), true, p3),
               S(2, 5, 5), true, "unpool");
  expect_shape(rule2(OP_POOL_SELECT, S(2, 5, 5), true, S(2, 5, 5), true, p3),
               S(2, 3, 3), true, "pool_select");
  expect_shape(rule1(OP_AVGPOOL_T, S(2, 3, 3), true,
                     (Attr){.win = p3.win, .shape = S(2, 6, 6)}),
               S(2, 6, 6), true, "avgpool_t with a remainder");

  expect_error(rule1(OP_MAXPOOL, S(5), true, p2),
               "expected channels and 1 to 3 spatial axes", "rank 1");
  expect_error(rule1(OP_MAXPOOL, S(1, 4, 4), true,
                     wattr(win_all(0, 1, 0, 1, 0))),
               "kernel size must be at least 1", "kernel 0");
  expect_error(rule1(OP_AVGPOOL, S(1, 4, 4), true,
                     wattr(win_all(2, 0, 0, 1, 0))),
               "stride must be at least 1", "stride 0");
  expect_error(rule1(OP_MAXPOOL, S(1, 3, 3), true,
                     wattr(win_all(5, 1, 0, 1, 0))),
               "the kernel is larger than the padded input", "5x5 on 3x3");
  expect_error(rule1(OP_MAXPOOL, S(1, 2, 2), true,
                     wattr(win_all(2, 1, 2, 1, 0))),
               "a window lies entirely in the padding", "pad 2 with kernel 2");
  // taps at -1 and 1 of an axis of extent 1: both padding
  expect_error(rule1(OP_AVGPOOL, S(1, 1), true, wattr(win_all(2, 1, 1, 2, 0))),
               "a window lies entirely in the padding", "dilated over");
  // kernel 1 with a huge dilation: no overflow, and the padded windows fail
  expect_error(rule1(OP_MAXPOOL, S(1, 4), true,
                     wattr(win_all(1, 1, 3, INT64_MAX, 0))),
               "a window lies entirely in the padding", "huge dilation");
  // pad 6e18, dilation 5e18: kernel 3 spans more than int64; kernel 2 has
  // taps at -6e18 and -1e18, both padding (found without overflowing)
  Window big = {.kernel = {3}, .stride = {INT64_MAX},
                .pad_lo = {6000000000000000000},
                .dilation = {5000000000000000000}};
  expect_error(rule1(OP_MAXPOOL, S(1, 1), true, wattr(big)),
               "the window is too large", "overflowing span");
  big.kernel[0] = 2;
  expect_error(rule1(OP_MAXPOOL, S(1, 1), true, wattr(big)),
               "a window lies entirely in the padding", "huge taps");
  expect_error(rule2(OP_UNPOOL, S(2, 5, 5), true, S(2, 2, 2), true, p3),
               "the values do not have the pooled shape", "unpool values");
  expect_error(rule2(OP_UNPOOL, S(2, 5, 5), true, S(2, 3, 3), false, p3),
               "the reference and the values must both carry the batch axis "
               "or neither",
               "unpool batch");
  expect_error(rule2(OP_POOL_SELECT, S(2, 5, 5), true, S(2, 3, 3), true, p3),
               "the values do not have the reference's shape",
               "pool_select values");
  expect_error(rule2(OP_POOL_SELECT, S(2, 5, 5), false, S(2, 5, 5), true, p3),
               "the reference and the values must both carry the batch axis "
               "or neither",
               "pool_select batch");
  expect_error(rule1(OP_AVGPOOL_T, S(2, 3, 3), true,
                     (Attr){.win = p3.win, .shape = S(2, 7, 7)}),
               "the target shape does not pool to the input shape",
               "avgpool_t target");
  expect_error(rule1(OP_AVGPOOL_T, S(2, 3, 3), true,
                     (Attr){.win = p3.win, .shape = S(2, 7)}),
               "the target shape must have the input's rank",
               "avgpool_t rank");
}

Test(shape, concat_slice_embed) {
  expect_shape(rule2(OP_CONCAT, S(2, 3), true, S(4, 3), true, (Attr){0}),
               S(6, 3), true, "concat axis 0");
  expect_shape(rule2(OP_CONCAT, S(2, 3), true, S(2, 1), false,
                     (Attr){.axis = 1}),
               S(2, 4), true, "concat axis 1, unbatched b");
  expect_shape(rule2(OP_CONCAT, S(2), false, S(3), false, (Attr){0}), S(5),
               false, "concat vectors");
  expect_error(rule2(OP_CONCAT, S(2, 3), true, S(3), true, (Attr){0}),
               "operands must have the same rank", "ranks");
  expect_error(rule2(OP_CONCAT, S(), true, S(), true, (Attr){0}),
               "cannot concatenate scalars", "scalars");
  expect_error(rule2(OP_CONCAT, S(2, 3), true, S(2, 3), true,
                     (Attr){.axis = 2}),
               "axis out of range", "axis 2");
  expect_error(rule2(OP_CONCAT, S(2, 3), true, S(2, 3), true,
                     (Attr){.axis = -1}),
               "axis out of range", "axis -1");
  expect_error(rule2(OP_CONCAT, S(2, 3), true, S(2, 4), true, (Attr){0}),
               "shapes differ off the concatenation axis", "off axis");

  expect_shape(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 0, .start = 2, .shape = S(2, 3)}),
               S(2, 3), true, "slice to the end");
  expect_error(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 0, .start = 3, .shape = S(2, 3)}),
               "the slice is out of range", "past the end");
  expect_error(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 0, .start = -1, .shape = S(2, 3)}),
               "the slice is out of range", "negative start");
  expect_error(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 0, .start = 0, .shape = S(0, 3)}),
               "the slice is empty", "empty");
  expect_error(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 0, .shape = S(2, 2)}),
               "the slice must keep the other axes whole", "off axis");
  expect_error(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 0, .shape = S(2)}),
               "the slice must have the input's rank", "rank");
  expect_error(rule1(OP_SLICE, S(4, 3), true,
                     (Attr){.axis = 5, .shape = S(4, 3)}),
               "axis out of range", "axis");

  expect_shape(rule1(OP_EMBED, S(2, 3), false,
                     (Attr){.axis = 1, .start = 2, .shape = S(2, 5)}),
               S(2, 5), false, "embed at the end");
  expect_error(rule1(OP_EMBED, S(2, 3), true,
                     (Attr){.axis = 1, .start = 3, .shape = S(2, 5)}),
               "the input does not fit in the target at that start",
               "past the end");
  expect_error(rule1(OP_EMBED, S(2, 3), true,
                     (Attr){.axis = 1, .start = -1, .shape = S(2, 5)}),
               "the input does not fit in the target at that start",
               "negative start");
  expect_error(rule1(OP_EMBED, S(2, 3), true,
                     (Attr){.axis = 1, .shape = S(3, 5)}),
               "the target must match the input off the axis", "off axis");
  expect_error(rule1(OP_EMBED, S(2, 3), true,
                     (Attr){.axis = 1, .shape = S(2, 3, 1)}),
               "the target must have the input's rank", "rank");
  expect_error(rule1(OP_EMBED, S(2, 3), true,
                     (Attr){.axis = -1, .shape = S(2, 3)}),
               "axis out of range", "axis");
}

// ---- eval: hand-computed examples -----------------------------------------------
static void expect_values(const double *got, const double *want, int64_t n,
                          const char *what) {
  for (int64_t i = 0; i < n; i++)
    cr_expect(fabs(got[i] - want[i]) <= 1e-12 * fmax(1, fabs(want[i])),
              "%s[%lld]: got %.17g, want %.17g", what, (long long)i, got[i],
              want[i]);
}

static IrValue *op2(IrFn *fn, Op op, IrValue *a, IrValue *b, Attr attr) {
  return ir_prim(fn, op, (IrValue *[]){a, b}, attr, L);
}

// A non-symmetric kernel tells cross-correlation (PyTorch's conv) from
// convolution, which would give 23 first.
Test(eval, conv_is_cross_correlation) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, S(1, 3, 3), true, 0, "x", L);
  IrValue *w = ir_leaf(fn, OP_PARAM, S(1, 1, 2, 2), false, 0, "w", L);
  IrValue *y = op2(fn, OP_CONV, x, w, wattr(win_all(0, 1, 0, 1, 1)));
  double xs[18] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  double ws[4] = {1, 2, 3, 4};
  double **r = eval_fn(&a, fn,
                       &(EvalEnv){.batch = 2, .input = xs,
                                  .param = (double *[]){ws}});
  // Example 2 has a single 1 at the centre: each output picks one weight.
  double want[8] = {37, 47, 67, 77, 4, 3, 2, 1};
  expect_values(r[y->id], want, 8, "conv");
  arena_free(&a);
}

// A Laplacian with padding 1: the border sees zeros.
Test(eval, conv_padding_reads_zeros) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_PARAM, S(1, 3, 3), false, 0, "x", L);
  IrValue *w = ir_leaf(fn, OP_PARAM, S(1, 1, 3, 3), false, 1, "w", L);
  IrValue *y = op2(fn, OP_CONV, x, w, wattr(win_all(0, 1, 1, 1, 1)));
  double xs[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  double ws[9] = {0, 1, 0, 1, -4, 1, 0, 1, 0};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 1,
                                           .param = (double *[]){xs, ws}});
  double want[9] = {2, 1, -4, -3, 0, -7, -16, -11, -22};
  expect_values(r[y->id], want, 9, "laplacian");
  arena_free(&a);
}

// x[4, 5, 5], w[2, 2, 2, 2], groups 2, stride 2x1, dilation 2x1, padding
// 1,0 x 0,2. The expected values come from a separate Python implementation
// (zero-padded copy, then taps i*stride + a*dilation), checked by hand at
// [0] (= 2*0 + 3*1 + (-1)(-1) + 0*0) and [23] (only right padding: 0).
Test(eval, conv_groups_stride_dilation_asymmetric_padding) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_PARAM, S(4, 5, 5), false, 0, "x", L);
  IrValue *w = ir_leaf(fn, OP_PARAM, S(2, 2, 2, 2), false, 1, "w", L);
  Window win = {.stride = {2, 1}, .pad_lo = {1, 0}, .pad_hi = {0, 2},
                .dilation = {2, 1}, .groups = 2};
  IrValue *y = op2(fn, OP_CONV, x, w, wattr(win));
  cr_assert(shape_eq(y->shape, S(2, 2, 6)));
  double xs[100], ws[16];
  for (int i = 0; i < 100; i++)
    xs[i] = i % 7 - 3;
  for (int i = 0; i < 16; i++)
    ws[i] = i % 5 - 2;
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 1,
                                           .param = (double *[]){xs, ws}});
  double want[24] = {4,  -3, -3, -3, -3, 0,  -12, -8, 10, 7,  9,  0,
                     -5, 6,  3,  14, -6, 0,  12,  -8, -7, -13, -6, 0};
  expect_values(r[y->id], want, 24, "conv");
  arena_free(&a);
}

// conv_t spreads each dy element over its window: with stride 2 and a 2x2
// kernel of ones, blocks; a 5x5 target (output padding) adds a zero border.
Test(eval, conv_t_and_conv_w) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *dy = ir_leaf(fn, OP_PARAM, S(1, 2, 2), false, 0, "dy", L);
  IrValue *w = ir_leaf(fn, OP_PARAM, S(1, 1, 2, 2), false, 1, "w", L);
  Window s2 = win_all(0, 2, 0, 1, 1);
  IrValue *t4 = op2(fn, OP_CONV_T, dy, w, (Attr){.win = s2, .shape = S(1, 4, 4)});
  IrValue *t5 = op2(fn, OP_CONV_T, dy, w, (Attr){.win = s2, .shape = S(1, 5, 5)});
  // 1-D, overlapping: out[i] = sum_j u[j] k[i - j] (PyTorch's
  // conv_transpose1d)
  IrValue *u = ir_leaf(fn, OP_PARAM, S(1, 3), false, 2, "u", L);
  IrValue *k = ir_leaf(fn, OP_PARAM, S(1, 1, 2), false, 3, "k", L);
  IrValue *t1 = op2(fn, OP_CONV_T, u, k,
                    (Attr){.win = win_all(0, 1, 0, 1, 1), .shape = S(1, 4)});
  // conv_w sums over the batch: w'[t] = sum_b sum_j x[b][j + t] dz[b][j]
  IrValue *x = ir_leaf(fn, OP_INPUT, S(1, 3), true, 0, "x", L);
  IrValue *dz = ir_leaf(fn, OP_LABEL, S(1, 2), true, 0, "dz", L);
  IrValue *cw = op2(fn, OP_CONV_W, x, dz,
                    (Attr){.win = win_all(0, 1, 0, 1, 1), .shape = S(1, 1, 2)});
  double dys[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1}, us[3] = {1, 2, 3},
         ks[2] = {1, 10}, xs[6] = {1, 2, 3, 1, 1, 1}, dzs[4] = {1, 1, 2, 0};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 2, .input = xs,
                                           .label = dzs,
                                           .param = (double *[]){dys, ones, us,
                                                                 ks}});
  double want4[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  expect_values(r[t4->id], want4, 16, "conv_t 4x4");
  double want5[25] = {1, 1, 2, 2, 0, 1, 1, 2, 2, 0, 3, 3, 4,
                      4, 0, 3, 3, 4, 4, 0, 0, 0, 0, 0, 0};
  expect_values(r[t5->id], want5, 25, "conv_t 5x5");
  double want1[4] = {1, 12, 23, 30};
  expect_values(r[t1->id], want1, 4, "conv_t 1-D");
  double wantw[2] = {5, 7};
  expect_values(r[cw->id], wantw, 2, "conv_w");
  arena_free(&a);
}

Test(eval, maxpool_unpool_pool_select) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_PARAM, S(1, 4, 4), false, 0, "x", L);
  Attr p2 = wattr(win_all(2, 2, 0, 1, 0));
  IrValue *m = ir_prim(fn, OP_MAXPOOL, &x, p2, L);
  // all negative with padding 1: padding (which is not 0 here) never wins
  IrValue *n = ir_leaf(fn, OP_PARAM, S(1, 2, 2), false, 1, "n", L);
  IrValue *mn = ir_prim(fn, OP_MAXPOOL, &n, wattr(win_all(2, 1, 1, 1, 0)), L);
  // ties: the first maximum in window order wins
  IrValue *t = ir_leaf(fn, OP_PARAM, S(1, 2, 2), false, 2, "t", L);
  IrValue *one = ir_leaf(fn, OP_PARAM, S(1, 1, 1), false, 3, "one", L);
  IrValue *ut = op2(fn, OP_UNPOOL, t, one, p2);
  // 1-D overlapping windows, [1, 3, 2] with kernel 2, stride 1: both
  // windows pick index 1, so unpool adds up there
  IrValue *o = ir_leaf(fn, OP_PARAM, S(1, 3), false, 4, "o", L);
  IrValue *v = ir_leaf(fn, OP_PARAM, S(1, 2), false, 5, "v", L);
  IrValue *g = ir_leaf(fn, OP_PARAM, S(1, 3), false, 6, "g", L);
  Attr k2 = wattr(win_all(2, 1, 0, 1, 0));
  IrValue *uo = op2(fn, OP_UNPOOL, o, v, k2);
  IrValue *so = op2(fn, OP_POOL_SELECT, o, g, k2);
  // [2, 2, 1] with padding 1 before: windows {pad, 2}, {2, 2}, {2, 1}
  IrValue *q = ir_leaf(fn, OP_PARAM, S(1, 3), false, 7, "q", L);
  IrValue *ones = ir_leaf(fn, OP_PARAM, S(1, 3), false, 8, "ones", L);
  Window lo1 = win_all(2, 1, 0, 1, 0);
  lo1.pad_lo[0] = 1;
  IrValue *uq = op2(fn, OP_UNPOOL, q, ones, wattr(lo1));
  double xs[16] = {1, 3, 2, 0, 4, 2, 1, 5, 0, 6, 7, 1, 2, 3, 1, 8};
  double ns[4] = {-1, -2, -3, -4}, ts[4] = {5, 5, 5, 5}, ones1[1] = {1};
  double os[3] = {1, 3, 2}, vs[2] = {10, 20}, gs[3] = {7, 8, 9};
  double qs[3] = {2, 2, 1}, ones3[3] = {1, 1, 1};
  double **r = eval_fn(&a, fn,
                       &(EvalEnv){.batch = 1,
                                  .param = (double *[]){xs, ns, ts, ones1, os,
                                                        vs, gs, qs, ones3}});
  expect_values(r[m->id], (double[]){4, 5, 6, 8}, 4, "maxpool");
  expect_values(r[mn->id], (double[]){-1, -1, -2, -1, -1, -2, -3, -3, -4}, 9,
                "maxpool of negatives with padding");
  expect_values(r[ut->id], (double[]){1, 0, 0, 0}, 4, "unpool of a tie");
  expect_values(r[uo->id], (double[]){0, 30, 0}, 3, "unpool, overlapping");
  expect_values(r[so->id], (double[]){8, 8}, 2, "pool_select");
  expect_values(r[uq->id], (double[]){2, 1, 0}, 3, "unpool, padding and tie");
  arena_free(&a);
}

Test(eval, avgpool_counts_padding) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_PARAM, S(1, 3, 3), false, 0, "x", L);
  IrValue *m = ir_prim(fn, OP_AVGPOOL, &x, wattr(win_all(3, 1, 1, 1, 0)), L);
  IrValue *dy = ir_leaf(fn, OP_PARAM, S(1, 2), false, 1, "dy", L);
  Window k2 = win_all(2, 2, 0, 1, 0);
  IrValue *t4 = ir_prim(fn, OP_AVGPOOL_T, &dy, (Attr){.win = k2, .shape = S(1, 4)},
                        L);
  IrValue *t5 = ir_prim(fn, OP_AVGPOOL_T, &dy, (Attr){.win = k2, .shape = S(1, 5)},
                        L);
  double xs[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, dys[2] = {9, 3};
  double **r = eval_fn(&a, fn, &(EvalEnv){.batch = 1,
                                           .param = (double *[]){xs, dys}});
  double c = 4.0 / 9, e = 6.0 / 9;
  expect_values(r[m->id], (double[]){c, e, c, e, 1, e, c, e, c}, 9,
                "avgpool");
  expect_values(r[t4->id], (double[]){4.5, 4.5, 1.5, 1.5}, 4, "avgpool_t");
  expect_values(r[t5->id], (double[]){4.5, 4.5, 1.5, 1.5, 0}, 5,
                "avgpool_t with a remainder");
  arena_free(&a);
}

Test(eval, concat_slice_embed) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, S(1, 2), true, 0, "x", L);
  IrValue *b = ir_leaf(fn, OP_PARAM, S(1, 1), false, 0, "b", L);
  IrValue *y = ir_leaf(fn, OP_LABEL, S(2, 2), true, 0, "y", L);
  IrValue *c1 = op2(fn, OP_CONCAT, x, b, (Attr){.axis = 1});   // B, 1, 3
  IrValue *c0 = op2(fn, OP_CONCAT, x, y, (Attr){.axis = 0});   // B, 3, 2
  IrValue *c0b = op2(fn, OP_CONCAT, b, b, (Attr){.axis = 0});  // 2, 1
  IrValue *s = ir_leaf(fn, OP_PARAM, S(2, 4), false, 1, "s", L);
  IrValue *sl = ir_prim(fn, OP_SLICE, &s,
                        (Attr){.axis = 1, .start = 1, .shape = S(2, 2)}, L);
  IrValue *sl0 = ir_prim(fn, OP_SLICE, &c0,
                         (Attr){.axis = 0, .start = 1, .shape = S(2, 2)}, L);
  IrValue *em = ir_prim(fn, OP_EMBED, &sl,
                        (Attr){.axis = 1, .start = 1, .shape = S(2, 4)}, L);
  double xs[4] = {1, 2, 3, 4}, bs[1] = {9}, ys[8] = {5, 6, 7, 8, 15, 16, 17, 18};
  double ss[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  double **r = eval_fn(&a, fn,
                       &(EvalEnv){.batch = 2, .input = xs, .label = ys,
                                  .param = (double *[]){bs, ss}});
  expect_values(r[c1->id], (double[]){1, 2, 9, 3, 4, 9}, 6, "concat axis 1");
  expect_values(r[c0->id],
                (double[]){1, 2, 5, 6, 7, 8, 3, 4, 15, 16, 17, 18}, 12,
                "concat axis 0");
  expect_values(r[c0b->id], (double[]){9, 9}, 2, "concat unbatched");
  expect_values(r[sl->id], (double[]){1, 2, 5, 6}, 4, "slice axis 1");
  expect_values(r[sl0->id], (double[]){5, 6, 7, 8, 15, 16, 17, 18}, 8,
                "slice axis 0, batched");
  expect_values(r[em->id], (double[]){0, 1, 2, 0, 0, 5, 6, 0}, 8, "embed");
  arena_free(&a);
}

// ---- the geometries checked below ----------------------------------------------
typedef struct Leaf {
  Shape shape;
  bool batched;
} Leaf;
#define BL(...) {.shape = DIMS(__VA_ARGS__), .batched = true}
#define PL(...) {.shape = DIMS(__VA_ARGS__), .batched = false}

// Criterion copies parameters into its worker processes: no pointers.
typedef struct ConvGeom {
  char name[80];
  Leaf x;
  Shape w;
  Window win;
} ConvGeom;

static ConvGeom conv_geoms[] = {
    {"2-D, stride 1, padding 0", BL(2, 5, 5), DIMS(3, 2, 3, 3),
     {.stride = {1, 1}, .dilation = {1, 1}, .groups = 1}},
    {"2-D, stride 2, padding 1 (6x6: output padding for conv_t)", BL(2, 6, 6),
     DIMS(3, 2, 3, 3),
     {.stride = {2, 2}, .pad_lo = {1, 1}, .pad_hi = {1, 1},
      .dilation = {1, 1}, .groups = 1}},
    {"2-D, asymmetric padding 0,1 x 2,0, stride 1x2", BL(2, 5, 4),
     DIMS(2, 2, 2, 3),
     {.stride = {1, 2}, .pad_lo = {0, 2}, .pad_hi = {1, 0},
      .dilation = {1, 1}, .groups = 1}},
    {"2-D, dilation 2, padding 1", BL(2, 7, 6), DIMS(2, 2, 3, 2),
     {.stride = {1, 1}, .pad_lo = {1, 1}, .pad_hi = {1, 1},
      .dilation = {2, 2}, .groups = 1}},
    {"2-D, groups 2, stride 2, padding 1", BL(4, 5, 5), DIMS(6, 2, 3, 3),
     {.stride = {2, 2}, .pad_lo = {1, 1}, .pad_hi = {1, 1},
      .dilation = {1, 1}, .groups = 2}},
    {"1-D, stride 2, padding 1,2, dilation 2", BL(3, 9), DIMS(4, 3, 3),
     {.stride = {2}, .pad_lo = {1}, .pad_hi = {2}, .dilation = {2},
      .groups = 1}},
    {"1-D depthwise, groups 3", BL(3, 6), DIMS(3, 1, 2),
     {.stride = {1}, .pad_lo = {1}, .pad_hi = {0}, .dilation = {1},
      .groups = 3}},
    {"3-D, mixed stride, padding and dilation", BL(2, 4, 4, 3),
     DIMS(2, 2, 2, 3, 2),
     {.stride = {1, 2, 1}, .pad_lo = {1, 0, 1}, .pad_hi = {0, 1, 0},
      .dilation = {1, 1, 2}, .groups = 1}},
    {"2-D, unbatched input", PL(2, 4, 4), DIMS(2, 2, 2, 2),
     {.stride = {1, 1}, .pad_lo = {1, 0}, .pad_hi = {0, 1},
      .dilation = {1, 1}, .groups = 1}},
};

typedef struct PoolGeom {
  char name[80];
  Leaf x;
  Window win;
} PoolGeom;

static PoolGeom pool_geoms[] = {
    {"2-D, kernel 2, stride 2", BL(2, 4, 4),
     {.kernel = {2, 2}, .stride = {2, 2}, .dilation = {1, 1}}},
    {"2-D, kernel 3, stride 1, padding 1 (overlapping)", BL(2, 5, 5),
     {.kernel = {3, 3}, .stride = {1, 1}, .pad_lo = {1, 1},
      .pad_hi = {1, 1}, .dilation = {1, 1}}},
    {"2-D, kernel 3, stride 2, padding 1", BL(2, 6, 5),
     {.kernel = {3, 3}, .stride = {2, 2}, .pad_lo = {1, 1},
      .pad_hi = {1, 1}, .dilation = {1, 1}}},
    {"2-D, asymmetric kernel 2x3, stride 2x1, padding 1,0 x 0,2", BL(2, 4, 5),
     {.kernel = {2, 3}, .stride = {2, 1}, .pad_lo = {1, 0},
      .pad_hi = {0, 2}, .dilation = {1, 1}}},
    {"2-D, kernel 2, dilation 2, padding 1", BL(2, 6, 6),
     {.kernel = {2, 2}, .stride = {1, 1}, .pad_lo = {1, 1},
      .pad_hi = {1, 1}, .dilation = {2, 2}}},
    {"1-D, kernel 3, stride 2, padding 1", BL(3, 7),
     {.kernel = {3}, .stride = {2}, .pad_lo = {1}, .pad_hi = {1},
      .dilation = {1}}},
    {"3-D, kernel 2, stride 1, padding 1,0 x 0,1 x 1,0", BL(2, 3, 3, 3),
     {.kernel = {2, 2, 2}, .stride = {1, 1, 1}, .pad_lo = {1, 0, 1},
      .pad_hi = {0, 1, 0}, .dilation = {1, 1, 1}}},
    {"2-D, unbatched, kernel 2, stride 1", PL(2, 4, 4),
     {.kernel = {2, 2}, .stride = {1, 1}, .dilation = {1, 1}}},
};

// ---- an independent naive reference (PyTorch semantics) ---------------------------
// Written without eval.c's helpers: one example at a time, each channel is
// copied into an explicitly padded buffer (filled with `fill`: 0 for conv
// and avgpool, -inf for maxpool), then output (i, j, l) reads the buffer at
// i * stride + a * dilation on each axis. Shapes are padded in front to 3
// spatial axes of extent 1.
typedef struct Ref3 {
  int64_t n[3], k[3], s[3], lo[3], hi[3], d[3], out[3], p[3];
} Ref3;

static Ref3 ref3(Shape x, const int64_t *k, const Window *w) {
  Ref3 g;
  int nsp = x.rank - 1;
  for (int i = 0; i < 3; i++) {
    int j = i - (3 - nsp);
    bool real = j >= 0;
    g.n[i] = real ? x.dim[1 + j] : 1;
    g.k[i] = real ? k[j] : 1;
    g.s[i] = real ? w->stride[j] : 1;
    g.lo[i] = real ? w->pad_lo[j] : 0;
    g.hi[i] = real ? w->pad_hi[j] : 0;
    g.d[i] = real ? w->dilation[j] : 1;
    g.p[i] = g.n[i] + g.lo[i] + g.hi[i];
    g.out[i] = (g.p[i] - g.d[i] * (g.k[i] - 1) - 1) / g.s[i] + 1;
  }
  return g;
}

// Channel c of one example x (channels of extent n0 n1 n2), padded.
static double *ref_pad(const Ref3 *g, const double *x, int64_t c,
                       double fill) {
  double *buf = malloc(sizeof(double) * (size_t)(g->p[0] * g->p[1] * g->p[2]));
  for (int64_t i = 0; i < g->p[0] * g->p[1] * g->p[2]; i++)
    buf[i] = fill;
  for (int64_t i = 0; i < g->n[0]; i++)
    for (int64_t j = 0; j < g->n[1]; j++)
      for (int64_t l = 0; l < g->n[2]; l++)
        buf[((i + g->lo[0]) * g->p[1] + j + g->lo[1]) * g->p[2] + l +
            g->lo[2]] =
            x[((c * g->n[0] + i) * g->n[1] + j) * g->n[2] + l];
  return buf;
}

static double ref_at(const Ref3 *g, const double *buf, int64_t i, int64_t j,
                     int64_t l, int64_t a, int64_t b, int64_t e) {
  return buf[((i * g->s[0] + a * g->d[0]) * g->p[1] + j * g->s[1] +
              b * g->d[1]) *
                 g->p[2] +
             l * g->s[2] + e * g->d[2]];
}

static void ref_conv(const double *x, Shape xs, const double *w, Shape ws,
                     const Window *win, double *y) {
  Ref3 g = ref3(xs, ws.dim + 2, win);
  int64_t O = ws.dim[0], cpg = ws.dim[1], opg = O / win->groups;
  int64_t nk = g.k[0] * g.k[1] * g.k[2];
  double **pad = malloc(sizeof(double *) * (size_t)xs.dim[0]);
  for (int64_t c = 0; c < xs.dim[0]; c++)
    pad[c] = ref_pad(&g, x, c, 0);
  for (int64_t o = 0; o < O; o++)
    for (int64_t i = 0; i < g.out[0]; i++)
      for (int64_t j = 0; j < g.out[1]; j++)
        for (int64_t l = 0; l < g.out[2]; l++) {
          double s = 0;
          for (int64_t c = 0; c < cpg; c++) {
            const double *buf = pad[(o / opg) * cpg + c];
            const double *wk = w + (o * cpg + c) * nk;
            for (int64_t a = 0; a < g.k[0]; a++)
              for (int64_t b = 0; b < g.k[1]; b++)
                for (int64_t e = 0; e < g.k[2]; e++)
                  s += ref_at(&g, buf, i, j, l, a, b, e) *
                       wk[(a * g.k[1] + b) * g.k[2] + e];
          }
          *y++ = s;
        }
  for (int64_t c = 0; c < xs.dim[0]; c++)
    free(pad[c]);
  free(pad);
}

static void ref_pool(const double *x, Shape xs, const Window *win, bool max,
                     double *y) {
  Ref3 g = ref3(xs, win->kernel, win);
  for (int64_t c = 0; c < xs.dim[0]; c++) {
    double *buf = ref_pad(&g, x, c, max ? -INFINITY : 0);
    for (int64_t i = 0; i < g.out[0]; i++)
      for (int64_t j = 0; j < g.out[1]; j++)
        for (int64_t l = 0; l < g.out[2]; l++) {
          double s = max ? -INFINITY : 0;
          for (int64_t a = 0; a < g.k[0]; a++)
            for (int64_t b = 0; b < g.k[1]; b++)
              for (int64_t e = 0; e < g.k[2]; e++) {
                double v = ref_at(&g, buf, i, j, l, a, b, e);
                s = max ? fmax(s, v) : s + v;
              }
          *y++ = max ? s : s / (double)(g.k[0] * g.k[1] * g.k[2]);
        }
    free(buf);
  }
}

// ---- a deterministic generator (xorshift64*) ----------------------------------
static double rng_uniform(uint64_t *s, double lo, double hi) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  uint64_t x = *s * 2685821657736338717u;
  return lo + (hi - lo) * ((double)(x >> 11) / 9007199254740992.0);
}

// ---- the finite-difference harness ----------------------------------------------
// Leaves: batched ones are the INPUT then the LABEL (batch 3), unbatched ones
// PARAMs. A DISTINCT leaf holds a shuffle of evenly spaced values, so a max
// never changes under the small perturbations (no near-ties).
typedef enum Draw { ANY, DISTINCT } Draw;

typedef struct Fd {
  Arena arena;
  IrFn *fn;
  uint64_t rng;
  int nleaf;
  IrValue *leaf[MAX_LEAVES];  // the differentiated leaves
  double *data[MAX_LEAVES];
  double *param[MAX_LEAVES + 2];
  int nparam;
  EvalEnv env;
  IrValue *root;
  IrValue *grad[MAX_LEAVES];
} Fd;

static void fd_init(Fd *c, uint64_t seed) {
  *c = (Fd){.rng = seed ^ 0x9e3779b97f4a7c15u};
  c->fn = ir_fn_new(&c->arena);
  c->env.batch = BATCH;
  c->env.param = c->param;
}

static int64_t leaf_size(const IrValue *v) {
  return (v->batched ? BATCH : 1) * shape_numel(v->shape);
}

static IrValue *fd_leaf(Fd *c, Leaf l, Draw d, bool differentiate) {
  IrValue *v;
  double *data = arena_alloc(&c->arena, sizeof(double) * BATCH *
                                            (size_t)shape_numel(l.shape));
  if (l.batched) {
    cr_assert(!c->env.label, "at most two batched leaves");
    bool first = !c->env.input;
    v = ir_leaf(c->fn, first ? OP_INPUT : OP_LABEL, l.shape, true, 0,
                first ? "x" : "y", L);
    *(first ? &c->env.input : &c->env.label) = data;
  } else {
    cr_assert(c->nparam < MAX_LEAVES + 1);
    v = ir_leaf(c->fn, OP_PARAM, l.shape, false, c->nparam, "p", L);
    c->param[c->nparam++] = data;
  }
  int64_t n = leaf_size(v);
  for (int64_t i = 0; i < n; i++)
    data[i] = d == DISTINCT ? -1.5 + 3.0 * ((double)i + 0.5) / (double)n
                            : rng_uniform(&c->rng, -1.5, 1.5);
  if (d == DISTINCT)  // Fisher-Yates
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)rng_uniform(&c->rng, 0, (double)(i + 1));
      double t = data[i];
      data[i] = data[j];
      data[j] = t;
    }
  if (differentiate) {
    cr_assert(c->nleaf < MAX_LEAVES);
    c->leaf[c->nleaf] = v;
    c->data[c->nleaf++] = data;
  }
  return v;
}

// Evaluates the forward values only: the backward ops grad_of appended
// all come after the root.
static double fd_root(void *ctx) {
  Fd *c = ctx;
  Arena a = {0};
  int n = c->fn->values.n;
  c->fn->values.n = c->root->id + 1;
  double r = eval_fn(&a, c->fn, &c->env)[c->root->id][0];
  c->fn->values.n = n;
  arena_free(&a);
  return r;
}

// root = BATCH_MEAN(SUM(f * W)) (SUM(f * W) when f is unbatched) with fixed
// random weights W, so every element of f counts differently; then every
// gradient element against a central difference. All the primitives here
// are piecewise linear, so the difference is exact up to rounding.
static void fd_check_root(Fd *c, const char *what) {
  grad_of(c->fn, c->root, c->leaf, c->nleaf, c->grad);
  for (int i = 0; i < c->nleaf; i++)
    cr_assert(shape_eq(c->grad[i]->shape, c->leaf[i]->shape) &&
                  c->grad[i]->batched == c->leaf[i]->batched,
              "%s: gradient %d has the wrong type", what, i);
  Arena a = {0};
  double **res = eval_fn(&a, c->fn, &c->env);
  fd_compare(c, fd_root, res, c->nleaf, c->leaf, c->grad, c->data, BATCH,
             1e-5, what);
  arena_free(&a);
}

static void fd_check(Fd *c, IrValue *f, const char *what) {
  IrValue *w = fd_leaf(c, (Leaf){f->shape, false}, ANY, false);
  IrValue *s = ir_unary(c->fn, OP_SUM, ir_binary(c->fn, OP_MUL, f, w, L), L);
  c->root = s->batched ? ir_unary(c->fn, OP_BATCH_MEAN, s, L) : s;
  fd_check_root(c, what);
}

// ---- finite differences: convolutions --------------------------------------------
// The shape of CONV(x, w) for a geometry.
static Shape conv_out(const ConvGeom *g) {
  Rule r = rule2(OP_CONV, g->x.shape, g->x.batched, g->w, false,
                 wattr(g->win));
  cr_assert(!r.why, "%s: %s", g->name, r.why);
  return r.out;
}

ParameterizedTestParameters(fd, conv_family) {
  return cr_make_param_array(ConvGeom, conv_geoms,
                             sizeof conv_geoms / sizeof conv_geoms[0]);
}

ParameterizedTest(ConvGeom *g, fd, conv_family) {
  Shape ys = conv_out(g);
  Leaf x = g->x, w = {g->w, false}, dy = {ys, g->x.batched};
  char what[160];
  for (int k = 0; k < 3; k++) {
    Fd c;
    fd_init(&c, (uint64_t)k * 131 + 17);
    IrValue *f;
    if (k == 0) {
      IrValue *xv = fd_leaf(&c, x, ANY, true), *wv = fd_leaf(&c, w, ANY, true);
      f = op2(c.fn, OP_CONV, xv, wv, wattr(g->win));
    } else if (k == 1) {
      IrValue *dv = fd_leaf(&c, dy, ANY, true), *wv = fd_leaf(&c, w, ANY, true);
      f = op2(c.fn, OP_CONV_T, dv, wv,
              (Attr){.win = g->win, .shape = g->x.shape});
    } else {
      IrValue *xv = fd_leaf(&c, x, ANY, true), *dv = fd_leaf(&c, dy, ANY, true);
      f = op2(c.fn, OP_CONV_W, xv, dv, (Attr){.win = g->win, .shape = g->w});
    }
    snprintf(what, sizeof what, "%s: %s", prims[f->op].name, g->name);
    fd_check(&c, f, what);
    arena_free(&c.arena);
  }
}

// <conv(x, w), y> = <x, conv_t(y, w)> = <w, conv_w(x, y)>, and CONV against
// the naive reference, for every geometry.
ParameterizedTestParameters(eval, conv_reference_and_adjoint_identity) {
  return cr_make_param_array(ConvGeom, conv_geoms,
                             sizeof conv_geoms / sizeof conv_geoms[0]);
}

static double dot(const double *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

ParameterizedTest(ConvGeom *g, eval, conv_reference_and_adjoint_identity) {
  Fd c;
  fd_init(&c, 5);
  Shape ys = conv_out(g);
  IrValue *x = fd_leaf(&c, g->x, ANY, true);
  IrValue *w = fd_leaf(&c, (Leaf){g->w, false}, ANY, true);
  IrValue *y = fd_leaf(&c, (Leaf){ys, g->x.batched}, ANY, true);
  IrValue *cv = op2(c.fn, OP_CONV, x, w, wattr(g->win));
  IrValue *ct = op2(c.fn, OP_CONV_T, y, w,
                    (Attr){.win = g->win, .shape = g->x.shape});
  IrValue *cw = op2(c.fn, OP_CONV_W, x, y, (Attr){.win = g->win, .shape = g->w});
  double **r = eval_fn(&c.arena, c.fn, &c.env);
  int64_t rows = g->x.batched ? BATCH : 1, xn = shape_numel(g->x.shape),
          yn = shape_numel(ys);
  double *want = malloc(sizeof(double) * (size_t)yn);
  for (int64_t b = 0; b < rows; b++) {
    ref_conv(c.data[0] + b * xn, g->x.shape, c.data[1], g->w, &g->win, want);
    expect_values(r[cv->id] + b * yn, want, yn, g->name);
  }
  free(want);
  double a1 = dot(r[cv->id], c.data[2], rows * yn);
  double a2 = dot(c.data[0], r[ct->id], rows * xn);
  double a3 = dot(c.data[1], r[cw->id], shape_numel(g->w));
  cr_expect(fabs(a1 - a2) <= 1e-12 * fmax(1, fabs(a1)) &&
                fabs(a1 - a3) <= 1e-12 * fmax(1, fabs(a1)),
            "%s: <conv(x, w), y> %.17g, <x, conv_t(y, w)> %.17g, "
            "<w, conv_w(x, y)> %.17g",
            g->name, a1, a2, a3);
  arena_free(&c.arena);
}

// ---- finite differences: pools ---------------------------------------------------
static Shape pool_out(const PoolGeom *g) {
  Rule r = rule1(OP_MAXPOOL, g->x.shape, g->x.batched, wattr(g->win));
  cr_assert(!r.why, "%s: %s", g->name, r.why);
  return r.out;
}

ParameterizedTestParameters(fd, pool_family) {
  return cr_make_param_array(PoolGeom, pool_geoms,
                             sizeof pool_geoms / sizeof pool_geoms[0]);
}

ParameterizedTest(PoolGeom *g, fd, pool_family) {
  Leaf x = g->x, p = {pool_out(g), g->x.batched};
  Attr a = wattr(g->win);
  const Op ops[] = {OP_MAXPOOL, OP_UNPOOL, OP_POOL_SELECT, OP_AVGPOOL,
                    OP_AVGPOOL_T};
  char what[160];
  for (int k = 0; k < 5; k++) {
    Fd c;
    fd_init(&c, (uint64_t)k * 7 + 3);
    IrValue *f, *ref;
    switch (ops[k]) {
    case OP_MAXPOOL:
      ref = fd_leaf(&c, x, DISTINCT, true);
      f = ir_prim(c.fn, OP_MAXPOOL, &ref, a, L);
      break;
    case OP_UNPOOL:  // x_ref is differentiated too: its gradient is 0
      ref = fd_leaf(&c, x, DISTINCT, true);
      f = op2(c.fn, OP_UNPOOL, ref, fd_leaf(&c, p, ANY, true), a);
      break;
    case OP_POOL_SELECT:
      ref = fd_leaf(&c, x, DISTINCT, true);
      f = op2(c.fn, OP_POOL_SELECT, ref, fd_leaf(&c, x, ANY, true), a);
      break;
    case OP_AVGPOOL:
      ref = fd_leaf(&c, x, ANY, true);
      f = ir_prim(c.fn, OP_AVGPOOL, &ref, a, L);
      break;
    default:
      ref = fd_leaf(&c, p, ANY, true);
      f = ir_prim(c.fn, OP_AVGPOOL_T, &ref,
                  (Attr){.win = g->win, .shape = g->x.shape}, L);
      break;
    }
    snprintf(what, sizeof what, "%s: %s", prims[ops[k]].name, g->name);
    fd_check(&c, f, what);
    arena_free(&c.arena);
  }
}

// MAXPOOL and AVGPOOL against the naive reference, and <unpool(r, v), g> =
// <v, pool_select(r, g)>, <avgpool(x), y> = <x, avgpool_t(y)>.
ParameterizedTestParameters(eval, pool_reference_and_adjoint_identity) {
  return cr_make_param_array(PoolGeom, pool_geoms,
                             sizeof pool_geoms / sizeof pool_geoms[0]);
}

ParameterizedTest(PoolGeom *g, eval, pool_reference_and_adjoint_identity) {
  Fd c;
  fd_init(&c, 11);
  Shape ps = pool_out(g);
  IrValue *x = fd_leaf(&c, g->x, DISTINCT, true);
  IrValue *v = fd_leaf(&c, (Leaf){ps, g->x.batched}, ANY, true);
  // g = p + x: random, and batched like x (only two leaves can be batched)
  IrValue *pg = fd_leaf(&c, (Leaf){g->x.shape, false}, ANY, true);
  IrValue *gg = ir_binary(c.fn, OP_ADD, pg, x, L);
  Attr a = wattr(g->win);
  IrValue *mx = ir_prim(c.fn, OP_MAXPOOL, &x, a, L);
  IrValue *av = ir_prim(c.fn, OP_AVGPOOL, &x, a, L);
  IrValue *up = op2(c.fn, OP_UNPOOL, x, v, a);
  IrValue *sel = op2(c.fn, OP_POOL_SELECT, x, gg, a);
  IrValue *at = ir_prim(c.fn, OP_AVGPOOL_T, &v,
                        (Attr){.win = g->win, .shape = g->x.shape}, L);
  double **r = eval_fn(&c.arena, c.fn, &c.env);
  int64_t rows = g->x.batched ? BATCH : 1, xn = shape_numel(g->x.shape),
          pn = shape_numel(ps);
  double *want = malloc(sizeof(double) * (size_t)pn);
  for (int64_t b = 0; b < rows; b++) {
    ref_pool(c.data[0] + b * xn, g->x.shape, &g->win, true, want);
    expect_values(r[mx->id] + b * pn, want, pn, "maxpool");
    ref_pool(c.data[0] + b * xn, g->x.shape, &g->win, false, want);
    expect_values(r[av->id] + b * pn, want, pn, "avgpool");
  }
  free(want);
  double u1 = dot(r[up->id], r[gg->id], rows * xn);
  double u2 = dot(c.data[1], r[sel->id], rows * pn);
  cr_expect(fabs(u1 - u2) <= 1e-12 * fmax(1, fabs(u1)),
            "%s: <unpool(r, v), g> %.17g, <v, pool_select(r, g)> %.17g",
            g->name, u1, u2);
  double a1 = dot(r[av->id], c.data[1], rows * pn);
  double a2 = dot(c.data[0], r[at->id], rows * xn);
  cr_expect(fabs(a1 - a2) <= 1e-12 * fmax(1, fabs(a1)),
            "%s: <avgpool(x), y> %.17g, <x, avgpool_t(y)> %.17g", g->name,
            a1, a2);
  arena_free(&c.arena);
}

// ---- finite differences: concat, slice, embed ------------------------------------
typedef struct LayoutCase {
  char name[48];
  Op op;
  Leaf arg[2];
  Attr attr;
} LayoutCase;

static LayoutCase layout_cases[] = {
    {"concat axis 0", OP_CONCAT, {BL(2, 3), BL(1, 3)}, {.axis = 0}},
    {"concat axis 1", OP_CONCAT, {BL(2, 3), BL(2, 2)}, {.axis = 1}},
    {"concat axis 0 of images", OP_CONCAT, {BL(2, 3, 3), BL(3, 3, 3)},
     {.axis = 0}},
    {"concat axis 2 of images", OP_CONCAT, {BL(2, 3, 2), BL(2, 3, 1)},
     {.axis = 2}},
    {"concat axis 1, unbatched b", OP_CONCAT, {BL(2, 3), PL(2, 1)},
     {.axis = 1}},
    {"concat axis 0, unbatched a", OP_CONCAT, {PL(1, 3), BL(2, 3)},
     {.axis = 0}},
    {"concat vectors, unbatched", OP_CONCAT, {PL(2), PL(3)}, {.axis = 0}},
    {"slice axis 0, middle", OP_SLICE, {BL(4, 3)},
     {.axis = 0, .start = 1, .shape = DIMS(2, 3)}},
    {"slice axis 1, to the end", OP_SLICE, {BL(2, 5)},
     {.axis = 1, .start = 3, .shape = DIMS(2, 2)}},
    {"slice axis 2 of an image, unbatched", OP_SLICE, {PL(2, 3, 4)},
     {.axis = 2, .start = 0, .shape = DIMS(2, 3, 1)}},
    {"embed axis 0", OP_EMBED, {BL(2, 3)},
     {.axis = 0, .start = 2, .shape = DIMS(4, 3)}},
    {"embed axis 1, at the start", OP_EMBED, {BL(2, 3)},
     {.axis = 1, .start = 0, .shape = DIMS(2, 5)}},
    {"embed axis 1 of an image, unbatched", OP_EMBED, {PL(2, 2, 3)},
     {.axis = 1, .start = 1, .shape = DIMS(2, 4, 3)}},
};

ParameterizedTestParameters(fd, layout) {
  return cr_make_param_array(LayoutCase, layout_cases,
                             sizeof layout_cases / sizeof layout_cases[0]);
}

ParameterizedTest(LayoutCase *k, fd, layout) {
  Fd c;
  fd_init(&c, 23);
  IrValue *arg[2];
  for (int i = 0; i < prims[k->op].arity; i++)
    arg[i] = fd_leaf(&c, k->arg[i], ANY, true);
  fd_check(&c, ir_prim(c.fn, k->op, arg, k->attr, L), k->name);
  arena_free(&c.arena);
}

// ---- composition: a small CNN with a cross-entropy loss -------------------------
// conv 3x3 pad 1 + bias -> relu -> maxpool 2 -> conv groups 2 -> tanh ->
// avgpool 2 -> concat with a learned channel -> slice -> reshape -> matmul
// -> log_softmax -> cross-entropy; every parameter and the input.
Test(fd, small_cnn) {
  Fd c;
  fd_init(&c, 99);
  IrFn *fn = c.fn;
  IrValue *x = fd_leaf(&c, (Leaf)BL(1, 8, 8), ANY, true);
  IrValue *y = fd_leaf(&c, (Leaf)BL(3), ANY, false);
  IrValue *w1 = fd_leaf(&c, (Leaf)PL(4, 1, 3, 3), ANY, true);
  IrValue *b1 = fd_leaf(&c, (Leaf)PL(4, 1, 1), ANY, true);
  IrValue *w2 = fd_leaf(&c, (Leaf)PL(4, 2, 3, 3), ANY, true);
  IrValue *e = fd_leaf(&c, (Leaf)PL(1, 2, 2), ANY, true);
  IrValue *w3 = fd_leaf(&c, (Leaf)PL(16, 3), ANY, true);
  IrValue *h = op2(fn, OP_CONV, x, w1, wattr(win_all(0, 1, 1, 1, 1)));
  h = ir_unary(fn, OP_RELU, ir_binary(fn, OP_ADD, h, b1, L), L);
  h = ir_prim(fn, OP_MAXPOOL, &h, wattr(win_all(2, 2, 0, 1, 0)), L);  // 4x4
  h = op2(fn, OP_CONV, h, w2, wattr(win_all(0, 1, 1, 1, 2)));
  h = ir_unary(fn, OP_TANH, h, L);
  h = ir_prim(fn, OP_AVGPOOL, &h, wattr(win_all(2, 2, 0, 1, 0)), L);  // 2x2
  h = op2(fn, OP_CONCAT, h, e, (Attr){.axis = 0});                    // 5
  h = ir_prim(fn, OP_SLICE, &h,
              (Attr){.axis = 0, .start = 1, .shape = S(4, 2, 2)}, L);
  h = ir_shaped(fn, OP_RESHAPE, h, S(16), true, L);
  IrValue *z = ir_unary(fn, OP_LOG_SOFTMAX, ir_binary(fn, OP_MATMUL, h, w3, L),
                        L);
  IrValue *ce = ir_unary(fn, OP_NEG,
                         ir_unary(fn, OP_SUM, ir_binary(fn, OP_MUL, y, z, L),
                                  L),
                         L);
  c.root = ir_unary(fn, OP_BATCH_MEAN, ce, L);
  fd_check_root(&c, "small cnn");
  arena_free(&c.arena);
}

// ---- the ops each adjoint rule emits ---------------------------------------------

// Differentiates SUM(op(a, b)) with respect to its leaves and checks the
// primitive each gradient is (under the SUM_TO over the batch, if any) and
// that it carries op's window and axis. want_a / want_b: OP_BROADCAST for
// no contribution (a zero).
static void adjoint_ops(Op op, Leaf la, Leaf lb, Attr attr, Op want_a,
                        Op want_b) {
  Fd c;
  fd_init(&c, 1);
  IrValue *arg[2];
  arg[0] = fd_leaf(&c, la, ANY, true);
  if (prims[op].arity == 2)
    arg[1] = fd_leaf(&c, lb, ANY, true);
  IrValue *f = ir_prim(c.fn, op, arg, attr, L);
  IrValue *s = ir_unary(c.fn, OP_SUM, f, L);
  c.root = s->batched ? ir_unary(c.fn, OP_BATCH_MEAN, s, L) : s;
  grad_of(c.fn, c.root, c.leaf, c.nleaf, c.grad);
  Op want[2] = {want_a, want_b};
  for (int i = 0; i < c.nleaf; i++) {
    IrValue *d = c.grad[i];
    if (d->op == OP_SUM_TO)  // the contribution, summed over the batch
      d = d->arg[0];
    cr_expect_eq(d->op, want[i], "%s, argument %d: got %s, want %s",
                 prims[op].name, i, prims[d->op].name, prims[want[i]].name);
    if (d->op != OP_BROADCAST)
      cr_expect(ir_window_same(&d->attr.win, &attr.win) &&
                    d->attr.axis == attr.axis,
                "%s, argument %d: the window or axis was not passed on",
                prims[op].name, i);
  }
  arena_free(&c.arena);
}

Test(grad, rules_emit_the_documented_ops) {
  Attr w = wattr(win_all(0, 2, 1, 1, 1));
  Leaf x = BL(2, 5, 5), wt = PL(3, 2, 3, 3), dy = BL(3, 3, 3);
  adjoint_ops(OP_CONV, x, wt, w, OP_CONV_T, OP_CONV_W);
  adjoint_ops(OP_CONV_T, dy, wt, (Attr){.win = w.win, .shape = S(2, 5, 5)},
              OP_CONV, OP_CONV_W);
  adjoint_ops(OP_CONV_W, x, dy, (Attr){.win = w.win, .shape = S(3, 2, 3, 3)},
              OP_CONV_T, OP_CONV);
  Attr p = wattr(win_all(3, 2, 1, 1, 0));
  Leaf px = BL(2, 5, 5), pv = BL(2, 3, 3);
  adjoint_ops(OP_MAXPOOL, px, px, p, OP_UNPOOL, 0);
  adjoint_ops(OP_UNPOOL, px, pv, p, OP_BROADCAST, OP_POOL_SELECT);
  adjoint_ops(OP_POOL_SELECT, px, px, p, OP_BROADCAST, OP_UNPOOL);
  adjoint_ops(OP_AVGPOOL, px, px, p, OP_AVGPOOL_T, 0);
  adjoint_ops(OP_AVGPOOL_T, pv, pv, (Attr){.win = p.win, .shape = S(2, 5, 5)},
              OP_AVGPOOL, 0);
  adjoint_ops(OP_CONCAT, (Leaf)BL(2, 3), (Leaf)PL(2, 1), (Attr){.axis = 1},
              OP_SLICE, OP_SLICE);
  adjoint_ops(OP_SLICE, (Leaf)BL(2, 3), px,
              (Attr){.axis = 1, .start = 1, .shape = S(2, 2)}, OP_EMBED, 0);
  adjoint_ops(OP_EMBED, (Leaf)BL(2, 3), px,
              (Attr){.axis = 1, .start = 1, .shape = S(2, 5)}, OP_SLICE, 0);
}

// Only x_ref depends on the wrt value: no dead POOL_SELECT for v.
Test(grad, unpool_emits_nothing_for_the_reference) {
  Fd c;
  fd_init(&c, 2);
  IrValue *ref = fd_leaf(&c, (Leaf)BL(1, 4, 4), ANY, true);
  IrValue *v = fd_leaf(&c, (Leaf)BL(1, 2, 2), ANY, false);
  IrValue *f = op2(c.fn, OP_UNPOOL, ref, v, wattr(win_all(2, 2, 0, 1, 0)));
  c.root = ir_unary(c.fn, OP_BATCH_MEAN, ir_unary(c.fn, OP_SUM, f, L), L);
  int before = c.fn->values.n;
  grad_of(c.fn, c.root, c.leaf, c.nleaf, c.grad);
  for (int i = before; i < c.fn->values.n; i++) {
    IrValue *u = c.fn->values.item[i];
    cr_expect(u->op != OP_POOL_SELECT && u->op != OP_UNPOOL,
              "dead %s emitted", prims[u->op].name);
  }
  cr_expect_eq(c.grad[0]->op, OP_BROADCAST);
  arena_free(&c.arena);
}

// ---- printing --------------------------------------------------------------------
Test(ir, print_attributes) {
  Arena a = {0};
  IrFn *fn = ir_fn_new(&a);
  IrValue *x = ir_leaf(fn, OP_INPUT, S(3, 8, 8), true, 0, "x", L);
  IrValue *w = ir_leaf(fn, OP_PARAM, S(6, 3, 5, 5), false, 0, "w", L);
  IrValue *y = op2(fn, OP_CONV, x, w, wattr(win_all(0, 1, 2, 1, 1)));
  Window p = win_all(2, 2, 0, 1, 0);
  p.pad_hi[1] = 1;
  IrValue *m = ir_prim(fn, OP_MAXPOOL, &y, wattr(p), L);
  IrValue *u = op2(fn, OP_UNPOOL, y, m, wattr(p));
  IrValue *ct = op2(fn, OP_CONV_T, y, w,
                    (Attr){.win = win_all(0, 1, 2, 1, 1), .shape = S(3, 8, 8)});
  IrValue *v = ir_leaf(fn, OP_LABEL, S(2, 9), true, 0, "v", L);
  IrValue *k = ir_leaf(fn, OP_PARAM, S(4, 1, 3), false, 1, "k", L);
  Window w1 = {.stride = {2}, .pad_lo = {0}, .pad_hi = {1}, .dilation = {2},
               .groups = 2};
  op2(fn, OP_CONV, v, k, wattr(w1));
  ir_prim(fn, OP_AVGPOOL, &v, wattr(win_all(3, 1, 1, 1, 0)), L);
  IrValue *cc = op2(fn, OP_CONCAT, v, v, (Attr){.axis = 1});
  ir_prim(fn, OP_SLICE, &cc, (Attr){.axis = 1, .start = 4, .shape = S(2, 3)},
          L);
  ir_prim(fn, OP_EMBED, &v, (Attr){.axis = 0, .start = 1, .shape = S(3, 9)},
          L);
  (void)u, (void)ct;
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  ir_print_fn(out, fn);
  fclose(out);
  const char *want =
      "  %0 = input x : f32[B, 3, 8, 8]\n"
      "  %1 = param w : f32[6, 3, 5, 5]\n"
      "  %2 = conv %0, %1 stride 1x1 pad 2,2x2,2 dilation 1x1 groups 1"
      " : f32[B, 6, 8, 8]\n"
      "  %3 = maxpool %2 kernel 2x2 stride 2x2 pad 0,0x0,1 dilation 1x1"
      " : f32[B, 6, 4, 4]\n"
      "  %4 = unpool %2, %3 kernel 2x2 stride 2x2 pad 0,0x0,1 dilation 1x1"
      " : f32[B, 6, 8, 8]\n"
      "  %5 = conv_t %2, %1 stride 1x1 pad 2,2x2,2 dilation 1x1 groups 1"
      " : f32[B, 3, 8, 8]\n"
      "  %6 = label v : f32[B, 2, 9]\n"
      "  %7 = param k : f32[4, 1, 3]\n"
      "  %8 = conv %6, %7 stride 2 pad 0,1 dilation 2 groups 2"
      " : f32[B, 4, 3]\n"
      "  %9 = avgpool %6 kernel 3 stride 1 pad 1,1 dilation 1"
      " : f32[B, 2, 9]\n"
      "  %10 = concat %6, %6 axis 1 : f32[B, 2, 18]\n"
      "  %11 = slice %10 axis 1 start 4 : f32[B, 2, 3]\n"
      "  %12 = embed %6 axis 0 start 1 : f32[B, 3, 9]\n";
  cr_expect_str_eq(buf, want);
  free(buf);
  arena_free(&a);
}

// ---- CSE and identities over the new attributes -----------------------------------
// Two equal convolutions merge; ones that differ only in stride, padding,
// dilation, groups, kernel, axis or start do not. A slice of a whole axis
// and an embed into a same-size target disappear.
Test(opt, cse_compares_windows_and_axes) {
  Arena a = {0};
  IrModule m = {.name = "m"};
  m.fn = ir_fn_new(&a);
  IrFn *fn = m.fn;
  IrParam *p = arena_alloc(&a, sizeof *p);
  p->name = "w";
  p->shape = S(4, 2, 3, 3);
  p->value = ir_leaf(fn, OP_PARAM, p->shape, false, 0, "w", L);
  ptrvec_push(&a, &m.params, p);
  m.ntrainable = m.params.n;
  m.input = ir_leaf(fn, OP_INPUT, S(4, 6, 6), true, 0, "x", L);
  IrValue *x = m.input, *w = p->value;
  Window base = win_all(0, 1, 1, 1, 2);
  Window v[6];
  for (int i = 0; i < 6; i++)
    v[i] = base;
  v[1].stride[1] = 2;
  v[2].pad_hi[0] = 0;
  v[3].dilation[0] = 2;
  v[4].groups = 1;
  v[5].kernel[0] = 3;  // ignored by conv, but part of the attribute
  IrValue *sum = op2(fn, OP_CONV, x, ir_leaf(fn, OP_PARAM, S(4, 4, 3, 3), false,
                                             0, "w1", L),
                     wattr(v[4]));
  sum = ir_unary(fn, OP_SUM, sum, L);
  for (int i = 0; i < 6; i++) {
    Window wi = v[i];
    if (i == 4)
      continue;
    IrValue *c = op2(fn, OP_CONV, x, w, wattr(wi));
    sum = ir_binary(fn, OP_ADD, sum, ir_unary(fn, OP_SUM, c, L), L);
  }
  IrValue *dup = op2(fn, OP_CONV, x, w, wattr(base));  // merges with v[0]
  sum = ir_binary(fn, OP_ADD, sum, ir_unary(fn, OP_SUM, dup, L), L);
  IrValue *s0 = ir_prim(fn, OP_SLICE, &x,
                        (Attr){.axis = 0, .start = 0, .shape = S(2, 6, 6)}, L);
  IrValue *s1 = ir_prim(fn, OP_SLICE, &x,
                        (Attr){.axis = 0, .start = 2, .shape = S(2, 6, 6)}, L);
  IrValue *s2 = ir_prim(fn, OP_SLICE, &x,
                        (Attr){.axis = 1, .start = 0, .shape = S(4, 2, 6)}, L);
  IrValue *s0b = ir_prim(fn, OP_SLICE, &x,
                         (Attr){.axis = 0, .start = 0, .shape = S(2, 6, 6)}, L);
  IrValue *whole = ir_prim(fn, OP_SLICE, &x,
                           (Attr){.axis = 2, .start = 0, .shape = S(4, 6, 6)},
                           L);
  IrValue *same = ir_prim(fn, OP_EMBED, &whole,
                          (Attr){.axis = 1, .start = 0, .shape = S(4, 6, 6)},
                          L);
  IrValue *parts[] = {s0, s1, s2, s0b, same};
  for (int i = 0; i < 5; i++)
    sum = ir_binary(fn, OP_ADD, sum, ir_unary(fn, OP_SUM, parts[i], L), L);
  m.output = sum;
  opt_simplify(&m, &(Ctx){.arena = &a});

  int convs = 0, slices = 0, embeds = 0;
  for (int i = 0; i < fn->values.n; i++) {
    IrValue *u = fn->values.item[i];
    convs += u->op == OP_CONV;
    slices += u->op == OP_SLICE;
    embeds += u->op == OP_EMBED;
  }
  cr_expect_eq(convs, 6, "6 distinct convolutions, got %d", convs);
  cr_expect_eq(slices, 3, "3 distinct partial slices, got %d", slices);
  cr_expect_eq(embeds, 0, "the same-size embed is a no-op, got %d", embeds);
  arena_free(&a);
}
