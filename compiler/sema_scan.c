// sema_scan.c — recurrences in the language: `scan` and `slice`.
//
//   scan(step, xs, init, args..., reverse = 0, last = 0, bptt = 0)
//
// runs the function `step` once per row of the sequence xs: f32[t, ...]
// (a batched per-example sequence), as state = step(x_t, state, args...),
// starting from `init` (a tensor, or a shape list [dims] for zeros), and
// returns every step's state stacked, f32[t, state...] (row t: the state
// after reading x_t), or with `last = 1` the final state alone. With
// `reverse = 1` the steps run from the last row to the first (row t still
// holds the state after reading x_t). `bptt = k` truncates backpropagation
// through time to windows of k steps. Tensor arguments after `init` (the
// layer's parameters, typically) are the loop's outer operands, the same at
// every step; other arguments (numbers, functions) pass through.
//
// The step is lowered once, into the body of one LOOP value (ir.h), so the
// IR does not depend on t. The body may use only row-wise primitives, and
// everything it computes from the outer operands alone must be computed
// outside (the gradient of an outer operand is then a sum over steps of
// batch reductions, which grad_loop.c hoists out of the backward loop).
//
//   slice(x, start, size, axis = -1)
//
// is elements start..start+size-1 of one per-example axis (the last by
// default): an LSTM's gates out of one pre-activation.
#include <math.h>
#include <string.h>

#include "sema_internal.h"

// A body value is allowed when it is a row-wise computation of one batch
// row (see IrLoop); returns why not, or NULL.
static const char *body_op_problem(const IrValue *v) {
  switch (prims[v->op].kind) {
  case PK_EW:
  case PK_LEAF:
    break;
  case PK_RANDOM:
    return "random draws";
  case PK_REDUCE:
    if (v->op == OP_SUM_TO && v->arg[0]->batched && !v->batched)
      return "sums over the batch";
    if (prims[v->op].flags & PF_BATCH_SUM)
      return "statistics over the batch";
    if (v->op == OP_CORRECT)
      return "metrics";
    break;
  case PK_MATMUL:
    if (v->op == OP_MATMUL_TN)
      return "sums over the batch";
    break;
  case PK_OTHER:
    if (v->op == OP_RESHAPE || v->op == OP_CONCAT || v->op == OP_SLICE ||
        v->op == OP_EMBED)
      break;
    return v->op == OP_LOOP ? "a scan inside a scan" : "this primitive";
  }
  switch (v->op) {
  case OP_INPUT:
  case OP_LABEL:
  case OP_PARAM:
  case OP_ARG:
  case OP_BATCH_SIZE:
    return "this value";
  default:
    return NULL;
  }
}

// Checks the body; reports the first problem at its source position.
static bool check_body(Sema *s, const IrLoop *l, Loc call) {
  IrFn *B = l->body;
  bool *outer = arena_alloc(s->arena, (size_t)B->values.n + 1);
  int *uses = arena_alloc(s->arena, sizeof(int) * (size_t)(B->values.n + 1));
  for (int i = 0; i < B->values.n; i++) {
    IrValue *v = B->values.item[i];
    const char *why = body_op_problem(v);
    Loc at = v->loc.file ? v->loc : call;
    if (why) {
      diag_error(s->diag, at, "a scan step cannot use %s ('%s')", why,
                 prims[v->op].name);
      return false;
    }
    outer[i] = v->op == OP_LOOP_OUTER && !v->batched;
    for (int j = 0; j < v->narg; j++) {
      outer[i] |= outer[v->arg[j]->id] && !v->batched;
      if (++uses[v->arg[j]->id] > MAX_OUTER_USES &&
          v->arg[j]->op == OP_LOOP_OUTER && !v->arg[j]->batched) {
        diag_error(s->diag, at, "a scan step uses one of its tensor arguments "
                   "more than %d times", MAX_OUTER_USES);
        return false;
      }
    }
    if (outer[i] && v->op != OP_LOOP_OUTER) {
      diag_error(s->diag, at,
                 "'%s' of parameters alone is the same at every step of the "
                 "scan: compute it outside the scan and pass it in",
                 prims[v->op].name);
      return false;
    }
  }
  return true;
}

static bool flag_arg(Sema *s, SVal v, const char *what, double *out) {
  if (v.kind != SV_NUM || v.num != floor(v.num) || v.num < 0 || v.num > 1e9) {
    diag_error(s->diag, v.loc, "scan: %s must be a whole number, got %s",
               what, sval_describe(s, v));
    return false;
  }
  *out = v.num;
  return true;
}

static SVal scan(Sema *s, Frame *f, SVal *pos, int npos, const char **names,
                 SVal *named, int nnamed, Ast *call) {
  Loc loc = call->loc;
  double reverse = 0, last = 0, bptt = 0;
  if (s->dtype == DT_F64) {  // codegen_loop.c's kernels are f32 so far
    diag_error(s->diag, loc, "scan (recurrence) is not compiled for f64 "
               "models yet; use f32");
    if (s->dtype_at.file)
      diag_note(s->diag, s->dtype_at, "the model's element type is set here");
    return sval_poison();
  }
  if (s->fn != s->m->fn && !s->in_scan) {  // an optimizer or a schedule
    diag_error(s->diag, loc, "scan can only be used in layers, models and "
               "losses");
    return sval_poison();
  }
  for (int i = 0; i < nnamed; i++) {
    double *slot = strcmp(names[i], "reverse") == 0 ? &reverse
                   : strcmp(names[i], "last") == 0  ? &last
                   : strcmp(names[i], "bptt") == 0  ? &bptt
                                                    : NULL;
    if (!slot) {
      diag_error(s->diag, named[i].loc,
                 "scan has no argument named '%s' (reverse, last, bptt)",
                 names[i]);
      return sval_poison();
    }
    if (!flag_arg(s, named[i], names[i], slot))
      return sval_poison();
  }
  if (npos < 3) {
    diag_error(s->diag, loc,
               "scan takes a step function, a sequence and an initial state");
    return sval_poison();
  }
  if (pos[0].kind != SV_FUNC) {
    diag_error(s->diag, pos[0].loc, "scan: expected a step function, got %s",
               sval_describe(s, pos[0]));
    return sval_poison();
  }
  SVal xs = pos[1];
  if (xs.kind != SV_TENSOR || xs.t->shape.rank < 1) {
    diag_error(s->diag, xs.loc,
               "scan: expected a sequence f32[t, ...], got %s",
               sval_describe(s, xs));
    return sval_poison();
  }
  int64_t T = xs.t->shape.dim[0];
  // The state: a tensor, or a shape list for zeros. Carries are batched.
  IrValue *init;
  SVal h0 = pos[2];
  if (h0.kind == SV_LIST) {
    Shape sh = {.rank = h0.nitems};
    for (int i = 0; i < h0.nitems && i < MAX_RANK; i++) {
      if (h0.items[i].kind != SV_NUM || h0.items[i].num < 1 ||
          h0.items[i].num != floor(h0.items[i].num) || h0.items[i].num > 1e9) {
        diag_error(s->diag, h0.items[i].loc,
                   "scan: a state dimension must be a positive integer");
        return sval_poison();
      }
      sh.dim[i] = (int64_t)h0.items[i].num;
    }
    if (h0.nitems > MAX_RANK || h0.nitems == 0) {
      diag_error(s->diag, h0.loc, "scan: a state has 1 to %d dimensions",
                 MAX_RANK);
      return sval_poison();
    }
    init = ir_shaped(s->fn, OP_BROADCAST, ir_const(s->fn, 0, loc), sh, true,
                     loc);
  } else if (h0.kind == SV_TENSOR) {
    init = h0.t->batched ? h0.t
                         : ir_shaped(s->fn, OP_BROADCAST, h0.t, h0.t->shape,
                                     true, loc);
  } else {
    diag_error(s->diag, h0.loc,
               "scan: the initial state must be a tensor or a shape list such "
               "as [units], got %s",
               sval_describe(s, h0));
    return sval_poison();
  }
  int ntensor = 2;
  for (int i = 3; i < npos; i++)
    ntensor += pos[i].kind == SV_TENSOR;
  if (ntensor > MAX_ARGS - 4) {
    diag_error(s->diag, loc, "scan: at most %d tensor arguments after the "
               "initial state", MAX_ARGS - 6);
    return sval_poison();
  }
  IrValue *seq = xs.t->batched
                     ? xs.t
                     : ir_shaped(s->fn, OP_BROADCAST, xs.t, xs.t->shape, true,
                                 loc);

  IrLoop *l = ir_loop_new(s->arena, T, reverse != 0);
  l->bptt = (int64_t)bptt;
  SVal args[16 + 1];  // sema.c: calls have at most 16 arguments
  args[0] = sval_tensor(ir_loop_seq(l, seq, loc), xs.loc);
  args[1] = sval_tensor(ir_loop_carry(l, init, loc), h0.loc);
  for (int i = 3; i < npos; i++)
    args[i - 1] = pos[i].kind == SV_TENSOR
                      ? sval_tensor(ir_loop_outer(l, pos[i].t, loc), pos[i].loc)
                      : pos[i];
  IrFn *outer_fn = s->fn;
  bool in_scan = s->in_scan;
  s->fn = l->body;
  s->in_scan = true;
  int errors = s->diag->nerrors;
  SVal r = sema_apply(s, f, pos[0], args, npos - 1, NULL, NULL, 0, call);
  s->fn = outer_fn;
  s->in_scan = in_scan;
  if (r.kind == SV_POISON || s->diag->nerrors > errors)
    return sval_poison();
  if (r.kind != SV_TENSOR ||
      !shape_eq(r.t->shape, init->shape)) {
    diag_error(s->diag, loc,
               "scan: the step returns %s but the state is %s",
               r.kind == SV_TENSOR ? shape_str(s->arena, r.t->shape, false)
                                   : sval_describe(s, r),
               shape_str(s->arena, init->shape, false));
    return sval_poison();
  }
  IrValue *next = r.t;
  if (!next->batched)
    next = ir_shaped(l->body, OP_BROADCAST, next, next->shape, true, loc);
  if (!check_body(s, l, loc))
    return sval_poison();
  ir_loop_record(l, next);
  IrValue *loop = ir_loop_finish(s->fn, l, &next, loc);
  loop->layer = f->prefix[0] ? f->prefix : NULL;
  IrValue *out = last ? ir_loop_at(s->fn, loop, 0, ir_loop_last(l), loc)
                      : ir_loop_stack(s->fn, loop, 0, loc);
  return sval_tensor(out, loc);
}

static SVal slice(Sema *s, SVal *pos, int npos, const char **names,
                  SVal *named, int nnamed, Ast *call) {
  double axis = -1;
  for (int i = 0; i < nnamed; i++) {
    if (strcmp(names[i], "axis") != 0 || named[i].kind != SV_NUM) {
      diag_error(s->diag, named[i].loc, "slice: unknown argument '%s'",
                 names[i]);
      return sval_poison();
    }
    axis = named[i].num;
  }
  if (npos != 3 || pos[0].kind != SV_TENSOR || pos[1].kind != SV_NUM ||
      pos[2].kind != SV_NUM) {
    diag_error(s->diag, call->loc,
               "slice takes a tensor, a start and a size (and axis = k)");
    return sval_poison();
  }
  IrValue *x = pos[0].t;
  int rank = x->shape.rank;
  int ax = axis < 0 ? rank + (int)axis : (int)axis;
  if (axis != floor(axis) || ax < 0 || ax >= rank) {
    diag_error(s->diag, call->loc, "slice: no axis %g in %s", axis,
               shape_str(s->arena, x->shape, false));
    return sval_poison();
  }
  double start = pos[1].num, size = pos[2].num;
  if (start != floor(start) || size != floor(size) || start < 0 || size < 1 ||
      start + size > (double)x->shape.dim[ax]) {
    diag_error(s->diag, call->loc,
               "slice: %g elements from %g do not fit axis %d of %s", size,
               start, ax, shape_str(s->arena, x->shape, false));
    return sval_poison();
  }
  Shape sh = x->shape;
  sh.dim[ax] = (int64_t)size;
  return sval_tensor(ir_prim(s->fn, OP_SLICE, (IrValue *[MAX_ARGS]){x},
                             (Attr){.axis = ax, .start = (int64_t)start,
                                    .shape = sh},
                             call->loc),
                     call->loc);
}

SVal sema_seq(Sema *s, Frame *f, const char *name, SVal *pos, int npos,
              const char **names, SVal *named, int nnamed, Ast *call) {
  if (strcmp(name, "scan") == 0)
    return scan(s, f, pos, npos, names, named, nnamed, call);
  return slice(s, pos, npos, names, named, nnamed, call);
}

// ---- token streams: text(path, holdout = 0.1, stride = t) -------------------
// The model reads windows of t tokens, f32[t] (byte values 0..255), and
// predicts the next byte, f32[vocab], or every step's next byte,
// f32[t, vocab] (one-hot labels). `data` reads the head of the stream,
// `test` its last `holdout`.
void sema_text_data(Sema *s, Frame *f, Ast *call, DataSpec *d, bool test) {
  IrModule *m = s->m;
  double holdout = 0.1, stride = 0;
  const char *path = NULL;
  for (int i = 0; i < call->list.n; i++) {
    Ast *arg = call->list.item[i];
    SVal v = sema_eval(s, f, arg->kind == AST_NAMED_ARG ? arg->a : arg);
    if (v.kind == SV_POISON)
      return;
    if (arg->kind != AST_NAMED_ARG) {
      if (path || v.kind != SV_STR) {
        diag_error(s->diag, arg->loc,
                   "text takes one path (a file, or a folder of files)");
        return;
      }
      path = v.str;
    } else if (strcmp(arg->name, "holdout") == 0 && v.kind == SV_NUM &&
               v.num > 0 && v.num < 1) {
      holdout = v.num;
    } else if (strcmp(arg->name, "stride") == 0 && v.kind == SV_NUM &&
               v.num >= 1 && v.num == floor(v.num) && v.num <= 1e9) {
      stride = v.num;
    } else {
      diag_error(s->diag, arg->loc,
                 "text: expected holdout = a fraction in (0, 1) or stride = "
                 "a whole number of bytes, got '%s'",
                 arg->name);
      return;
    }
  }
  if (!path) {
    diag_error(s->diag, call->loc, "text needs a path");
    return;
  }
  Shape in = m->input->shape, out = m->output->shape;
  int64_t t = in.rank == 1 ? in.dim[0] : 0;
  bool steps = out.rank == 2 && out.dim[0] == t;
  if (!t || (out.rank != 1 && !steps)) {
    diag_error(s->diag, call->loc,
               "text data needs a model over windows of tokens, f32[t], "
               "predicting the next token f32[vocab] or each step's "
               "f32[t, vocab]; this one takes %s and predicts %s",
               shape_str(s->arena, in, false), shape_str(s->arena, out, false));
    return;
  }
  d->kind = DATA_TEXT;
  d->path_x = path;
  d->scale = 1;
  d->holdout = holdout;
  d->stride = stride > 0 ? (int64_t)stride : t;
  d->text_vocab = out.dim[out.rank - 1];
  d->text_steps = steps ? t : 1;
  d->text_test = test;
}
