// sema_window.c — the built-in functions of the convolutional family:
// conv, conv_transpose, maxpool, avgpool, maxunpool, concat and reshape.
//
// Each one binds its arguments (positional or named, with defaults), turns
// the window settings into the primitive's Window attribute (a number applies
// to every spatial axis, a list gives one per axis, padding may also be
// "same" or "valid"), and builds the primitive through build_prim, so the
// shape rules of prims.def report bad kernels, strides and groups with both
// shapes in the message.
#include <math.h>
#include <string.h>

#include "sema_internal.h"

enum { MAX_FORMALS = 8 };

typedef struct WindowFn {
  const char *name;
  int nrequired;
  const char *formals[MAX_FORMALS];  // NULL-terminated
} WindowFn;

static const WindowFn window_fns[] = {
    {"conv", 2, {"x", "w", "stride", "padding", "dilation", "groups", NULL}},
    {"conv_transpose", 2,
     {"x", "w", "stride", "padding", "output_padding", "dilation", "groups",
      NULL}},
    {"maxpool", 2, {"x", "kernel", "stride", "padding", NULL}},
    {"avgpool", 2, {"x", "kernel", "stride", "padding", NULL}},
    {"maxunpool", 3, {"y", "like", "kernel", "stride", "padding", NULL}},
    {"concat", 2, {"a", "b", "axis", NULL}},
    {"reshape", 2, {"x", "shape", NULL}},
};


// Binds positional and named arguments to the formals; unset slots stay
// SV_POISON with builtin == -2 (meaning "not given").
static bool bind_args(Sema *s, const WindowFn *fn, SVal *pos, int npos,
                      const char **names, SVal *named, int nnamed, Ast *call,
                      SVal *slot) {
  int nformals = 0;
  while (fn->formals[nformals])
    nformals++;
  for (int i = 0; i < nformals; i++)
    slot[i] = (SVal){.kind = SV_POISON, .builtin = -2};
  if (npos > nformals) {
    diag_error(s->diag, call->loc, "%s takes at most %d arguments", fn->name,
               nformals);
    return false;
  }
  for (int i = 0; i < npos; i++)
    slot[i] = pos[i];
  for (int i = 0; i < nnamed; i++) {
    int k = -1;
    for (int j = 0; j < nformals; j++)
      if (strcmp(fn->formals[j], names[i]) == 0)
        k = j;
    if (k < 0 || slot[k].builtin != -2) {
      diag_error(s->diag, named[i].loc,
                 k < 0 ? "%s has no argument named '%s'"
                       : "%s: argument '%s' is given twice",
                 fn->name, names[i]);
      return false;
    }
    slot[k] = named[i];
  }
  for (int i = 0; i < fn->nrequired; i++)
    if (slot[i].builtin == -2) {
      diag_error(s->diag, call->loc, "%s: missing argument '%s'", fn->name,
                 fn->formals[i]);
      return false;
    }
  return true;
}

static bool given(SVal v) { return v.builtin != -2; }

static bool want_tensor(Sema *s, SVal v, const char *fn, const char *what) {
  if (v.kind == SV_TENSOR)
    return true;
  diag_error(s->diag, v.loc, "%s: '%s' must be a tensor, got %s", fn, what,
             sval_describe(s, v));
  return false;
}

// One integer per spatial axis from a number or a list; `min` is the least
// allowed value.
static bool per_axis(Sema *s, SVal v, int nspatial, int64_t dflt, int64_t min,
                     const char *fn, const char *what, int64_t *out) {
  for (int i = 0; i < 3; i++)
    out[i] = dflt;
  if (!given(v))
    return true;
  int n = v.kind == SV_LIST ? v.nitems : 1;
  if (v.kind == SV_LIST && n != nspatial) {
    diag_error(s->diag, v.loc, "%s: '%s' needs %d value%s, one per spatial "
               "axis, got %d", fn, what, nspatial, nspatial == 1 ? "" : "s", n);
    return false;
  }
  for (int i = 0; i < nspatial; i++) {
    SVal e = v.kind == SV_LIST ? v.items[i] : v;
    if (e.kind != SV_NUM || e.num != floor(e.num) || e.num < (double)min ||
        e.num > 1e9) {
      diag_error(s->diag, e.loc, "%s: '%s' must be %s integer%s, got %s", fn,
                 what, min > 0 ? "a positive" : "a non-negative",
                 v.kind == SV_LIST ? "s" : "",
                 e.kind == SV_NUM ? arena_printf(s->arena, "%g", e.num)
                                  : sval_describe(s, e));
      return false;
    }
    out[i] = (int64_t)e.num;
  }
  return true;
}

// Padding: numbers, or "valid" (none) or "same" (output = ceil(n / stride),
// the extra cell after, as TensorFlow and PyTorch do).
static bool padding(Sema *s, SVal v, Shape x, Window *w, int nspatial,
                    const char *fn) {
  if (given(v) && v.kind == SV_STR) {
    bool same = strcmp(v.str, "same") == 0;
    if (!same && strcmp(v.str, "valid") != 0) {
      diag_error(s->diag, v.loc, "%s: padding is a number, a list, \"same\" "
                 "or \"valid\", not \"%s\"", fn, v.str);
      return false;
    }
    for (int i = 0; i < nspatial; i++) {
      int64_t n = x.dim[1 + i], st = w->stride[i];
      int64_t span = w->dilation[i] * (w->kernel[i] - 1) + 1;
      int64_t out = (n + st - 1) / st;
      int64_t total = same ? (out - 1) * st + span - n : 0;
      if (total < 0)
        total = 0;
      w->pad_lo[i] = total / 2;
      w->pad_hi[i] = total - total / 2;
    }
    return true;
  }
  if (!per_axis(s, v, nspatial, 0, 0, fn, "padding", w->pad_lo))
    return false;
  memcpy(w->pad_hi, w->pad_lo, sizeof w->pad_hi);
  return true;
}

static int spatial_rank(Sema *s, SVal x, const char *fn) {
  int n = x.t->shape.rank - 1;
  if (n < 1 || n > 3) {
    diag_error(s->diag, x.loc,
               "%s expects channels and 1 to 3 spatial axes, like f32[c, h, w]; "
               "got %s", fn, sval_describe(s, x));
    return -1;
  }
  return n;
}

static SVal conv_like(Sema *s, bool transpose, SVal *a, Ast *call) {
  const char *fn = transpose ? "conv_transpose" : "conv";
  if (!want_tensor(s, a[0], fn, "x") || !want_tensor(s, a[1], fn, "w"))
    return sval_poison();
  int ns = spatial_rank(s, a[0], fn);
  if (ns < 0)
    return sval_poison();
  Window w = {.groups = 1};
  Shape ws = a[1].t->shape;
  for (int i = 0; i < ns && i + 2 < ws.rank; i++)
    w.kernel[i] = ws.dim[i + 2];
  SVal groups = transpose ? a[6] : a[5];
  SVal dilation = transpose ? a[5] : a[4];
  int64_t g[3];
  if (!per_axis(s, a[2], ns, 1, 1, fn, "stride", w.stride) ||
      !per_axis(s, dilation, ns, 1, 1, fn, "dilation", w.dilation) ||
      !per_axis(s, groups, 1, 1, 1, fn, "groups", g) ||
      !padding(s, a[3], a[0].t->shape, &w, ns, fn))
    return sval_poison();
  w.groups = (int)g[0];
  Attr attr = {.win = w};
  if (transpose) {
    int64_t extra[3];
    if (!per_axis(s, a[4], ns, 0, 0, fn, "output_padding", extra))
      return sval_poison();
    Shape x = a[0].t->shape;
    if (ws.rank != ns + 2) {
      diag_error(s->diag, a[1].loc, "%s: the weight must have %d axes, got %s",
                 fn, ns + 2, sval_describe(s, a[1]));
      return sval_poison();
    }
    attr.shape = (Shape){.rank = ns + 1, .dim = {ws.dim[1] * w.groups}};
    for (int i = 0; i < ns; i++)
      attr.shape.dim[1 + i] = (x.dim[1 + i] - 1) * w.stride[i] - w.pad_lo[i] -
                              w.pad_hi[i] + w.dilation[i] * (w.kernel[i] - 1) +
                              1 + extra[i];
    return sema_build(s, OP_CONV_T, a, attr, call->loc, fn);
  }
  return sema_build(s, OP_CONV, a, attr, call->loc, fn);
}

static SVal pool(Sema *s, const char *fn, SVal x, SVal kernel, SVal stride,
                 SVal pad, Op op, SVal *extra, Ast *call) {
  if (!want_tensor(s, x, fn, op == OP_UNPOOL ? "like" : "x"))
    return sval_poison();
  int ns = spatial_rank(s, x, fn);
  if (ns < 0)
    return sval_poison();
  Window w = {.groups = 1};
  if (!per_axis(s, kernel, ns, 1, 1, fn, "kernel", w.kernel))
    return sval_poison();
  memcpy(w.stride, w.kernel, sizeof w.stride);
  for (int i = 0; i < 3; i++)
    w.dilation[i] = 1;
  if ((given(stride) && !per_axis(s, stride, ns, 1, 1, fn, "stride", w.stride)) ||
      !padding(s, pad, x.t->shape, &w, ns, fn))
    return sval_poison();
  Attr attr = {.win = w};
  if (op == OP_UNPOOL) {
    if (!want_tensor(s, *extra, fn, "y"))
      return sval_poison();
    SVal args[2] = {x, *extra};
    return sema_build(s, OP_UNPOOL, args, attr, call->loc, fn);
  }
  return sema_build(s, op, &x, attr, call->loc, fn);
}

static SVal concat(Sema *s, SVal *a, Ast *call) {
  if (!want_tensor(s, a[0], "concat", "a") || !want_tensor(s, a[1], "concat", "b"))
    return sval_poison();
  int64_t axis[3];
  if (!per_axis(s, a[2], 1, 0, 0, "concat", "axis", axis))
    return sval_poison();
  return sema_build(s, OP_CONCAT, a, (Attr){.axis = (int)axis[0]}, call->loc,
                    "concat");
}

static SVal reshape(Sema *s, SVal *a, Ast *call) {
  if (!want_tensor(s, a[0], "reshape", "x"))
    return sval_poison();
  if (a[1].kind != SV_LIST || a[1].nitems < 1 || a[1].nitems > MAX_RANK) {
    diag_error(s->diag, a[1].loc, "reshape: the shape is a list of 1 to %d "
               "sizes, like [16, 5, 5]", MAX_RANK);
    return sval_poison();
  }
  int64_t dims[MAX_RANK];
  for (int i = 0; i < a[1].nitems; i++) {
    SVal d = a[1].items[i];
    if (d.kind != SV_NUM || d.num != floor(d.num) || d.num < 1 || d.num > 1e12) {
      diag_error(s->diag, d.loc, "reshape: sizes must be positive integers");
      return sval_poison();
    }
    dims[i] = (int64_t)d.num;
  }
  return sema_build(s, OP_RESHAPE, a, (Attr){.shape = shape_of(a[1].nitems, dims)},
                    call->loc, "reshape");
}

SVal sema_window(Sema *s, const char *name, SVal *pos, int npos,
                 const char **names, SVal *named, int nnamed, Ast *call) {
  const WindowFn *fn = NULL;
  for (size_t i = 0; i < sizeof window_fns / sizeof window_fns[0]; i++)
    if (strcmp(window_fns[i].name, name) == 0)
      fn = &window_fns[i];
  SVal a[MAX_FORMALS];
  if (!fn || !bind_args(s, fn, pos, npos, names, named, nnamed, call, a))
    return sval_poison();
  if (strcmp(name, "concat") == 0)
    return concat(s, a, call);
  if (strcmp(name, "reshape") == 0)
    return reshape(s, a, call);
  if (strcmp(name, "conv") == 0 || strcmp(name, "conv_transpose") == 0)
    return conv_like(s, name[4] == '_', a, call);
  if (strcmp(name, "maxunpool") == 0)
    return pool(s, name, a[1], a[2], a[3], a[4], OP_UNPOOL, &a[0], call);
  return pool(s, name, a[0], a[1], a[2], a[3],
              strcmp(name, "maxpool") == 0 ? OP_MAXPOOL : OP_AVGPOOL, NULL,
              call);
}
