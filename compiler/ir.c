// ir.c — building and printing the graph IR (see ir.h).
//
// Values are appended in topological order; the builder applies the
// primitive's shape rule from the prims table, so no value with an
// inconsistent shape can exist. Printing is deterministic: values are
// numbered by position, leaves print their names, shapes print as the
// language writes them with `B` for the batch axis.
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

const char *const init_names[INIT_COUNT] = {
    "zeros",          "constant",       "uniform",    "normal",
    "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
};

IrFn *ir_fn_new(Arena *a) {
  IrFn *fn = arena_alloc(a, sizeof *fn);
  fn->arena = a;
  fn->dtype = DT_F32;
  return fn;
}

const char *ir_check(Op op, IrValue **arg, const Attr *attr, Shape *out,
                     bool *out_batched) {
  Shape in[MAX_ARGS] = {0};
  bool inb[MAX_ARGS] = {0};
  for (int i = 0; i < prims[op].arity; i++) {
    in[i] = arg[i]->shape;
    inb[i] = arg[i]->batched;
  }
  return prims[op].shape(in, inb, attr, out, out_batched);
}

IrValue *ir_prim(IrFn *fn, Op op, IrValue **arg, Attr attr, Loc loc) {
  IrValue *v = arena_alloc(fn->arena, sizeof *v);
  v->op = op;
  v->narg = prims[op].arity;
  for (int i = 0; i < v->narg; i++)
    v->arg[i] = arg[i];
  v->attr = attr;
  v->loc = loc;
  v->dtype = v->narg ? arg[0]->dtype : fn->dtype;
  for (int i = 1; i < v->narg; i++)
    assert(arg[i]->dtype == v->dtype && "sema mixed element types");
  const char *why = ir_check(op, arg, &attr, &v->shape, &v->batched);
  assert(!why && "sema admitted an ill-shaped primitive");
  (void)why;
  if (fn->share)  // an equal value built earlier stands for this one
    for (int i = fn->values.n - 1; i >= 0; i--)
      if (ir_same(fn->values.item[i], v))
        return fn->values.item[i];
  v->id = fn->values.n;
  ptrvec_push(fn->arena, &fn->values, v);
  return v;
}

// Field by field: a Window has padding bytes, so memcmp would not do.
bool ir_window_same(const Window *a, const Window *b) {
  for (int i = 0; i < 3; i++)
    if (a->kernel[i] != b->kernel[i] || a->stride[i] != b->stride[i] ||
        a->pad_lo[i] != b->pad_lo[i] || a->pad_hi[i] != b->pad_hi[i] ||
        a->dilation[i] != b->dilation[i])
      return false;
  return a->groups == b->groups;
}

bool ir_same(const IrValue *a, const IrValue *b) {
  if (a->op != b->op || a->narg != b->narg)
    return false;
  for (int i = 0; i < a->narg; i++)
    if (a->arg[i] != b->arg[i])
      return false;
  return memcmp(&a->attr.num, &b->attr.num, sizeof(double)) == 0 &&
         a->attr.index == b->attr.index &&
         a->attr.batched == b->attr.batched &&
         shape_eq(a->attr.shape, b->attr.shape) &&
         ir_window_same(&a->attr.win, &b->attr.win) &&
         a->attr.axis == b->attr.axis && a->attr.start == b->attr.start;
}

IrValue *ir_leaf(IrFn *fn, Op op, Shape s, bool batched, int index,
                 const char *name, Loc loc) {
  assert(prims[op].kind == PK_LEAF);
  IrValue *v = ir_prim(fn, op, (IrValue *[MAX_ARGS]){0},
                       (Attr){.shape = s, .batched = batched, .index = index},
                       loc);
  v->name = name;
  return v;
}

IrValue *ir_const(IrFn *fn, double c, Loc loc) {
  return ir_prim(fn, OP_CONST, (IrValue *[MAX_ARGS]){0}, (Attr){.num = c}, loc);
}

IrValue *ir_unary(IrFn *fn, Op op, IrValue *x, Loc loc) {
  assert(prims[op].arity == 1);
  return ir_prim(fn, op, (IrValue *[MAX_ARGS]){x}, (Attr){0}, loc);
}

IrValue *ir_binary(IrFn *fn, Op op, IrValue *x, IrValue *y, Loc loc) {
  assert(prims[op].arity == 2);
  return ir_prim(fn, op, (IrValue *[]){x, y}, (Attr){0}, loc);
}

IrValue *ir_shaped(IrFn *fn, Op op, IrValue *x, Shape s, bool batched,
                   Loc loc) {
  return ir_prim(fn, op, (IrValue *[MAX_ARGS]){x},
                 (Attr){.shape = s, .batched = batched}, loc);
}

void ir_count_uses(IrFn *fn) {
  for (int i = 0; i < fn->values.n; i++)
    ((IrValue *)fn->values.item[i])->nuses = 0;
  for (int i = 0; i < fn->values.n; i++) {
    IrValue *v = fn->values.item[i];
    for (int j = 0; j < v->narg; j++)
      v->arg[j]->nuses++;
  }
}

void ir_renumber(IrFn *fn) {
  for (int i = 0; i < fn->values.n; i++)
    ((IrValue *)fn->values.item[i])->id = i;
}

// ---- printing -----------------------------------------------------------------
// Shortest decimal that reads back as the same double, for stable goldens.
static void print_num(FILE *out, double x) {
  char buf[64];
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, x);
    if (strtod(buf, NULL) == x)
      break;
  }
  fputs(buf, out);
}

static void print_type(FILE *out, const IrValue *v) {
  fprintf(out, "%s[%s", dtype_str(v->dtype), v->batched ? "B" : "");
  for (int i = 0; i < v->shape.rank; i++)
    fprintf(out, "%s%lld", (i || v->batched) ? ", " : "",
            (long long)v->shape.dim[i]);
  fputc(']', out);
}

// " label 3x3": one entry per spatial axis, outermost first.
static void print_axes(FILE *out, const char *label, const int64_t *x,
                       int n) {
  fprintf(out, " %s ", label);
  for (int i = 0; i < n; i++)
    fprintf(out, "%s%lld", i ? "x" : "", (long long)x[i]);
}

// The window of a convolution or pool over arg[0]'s spatial axes:
// " kernel 2x2" (pools only), " stride 1x1 pad 2,2x2,2" (pad_lo,pad_hi per
// axis), " dilation 1x1", then " groups 1" (convolutions only).
static void print_window(FILE *out, const IrValue *v, bool conv) {
  const Window *w = &v->attr.win;
  int n = v->arg[0]->shape.rank - 1;
  if (!conv)
    print_axes(out, "kernel", w->kernel, n);
  print_axes(out, "stride", w->stride, n);
  fputs(" pad ", out);
  for (int i = 0; i < n; i++)
    fprintf(out, "%s%lld,%lld", i ? "x" : "", (long long)w->pad_lo[i],
            (long long)w->pad_hi[i]);
  print_axes(out, "dilation", w->dilation, n);
  if (conv)
    fprintf(out, " groups %d", w->groups);
}

// The attributes of the convolutional family after the arguments; the
// target shape of CONV_T, CONV_W, AVGPOOL_T, SLICE and EMBED is the type.
static void print_conv_attrs(FILE *out, const IrValue *v) {
  switch (v->op) {
  case OP_CONV:
  case OP_CONV_T:
  case OP_CONV_W:
    print_window(out, v, true);
    break;
  case OP_MAXPOOL:
  case OP_UNPOOL:
  case OP_POOL_SELECT:
  case OP_AVGPOOL:
  case OP_AVGPOOL_T:
    print_window(out, v, false);
    break;
  case OP_CONCAT:
    fprintf(out, " axis %d", v->attr.axis);
    break;
  case OP_SLICE:
  case OP_EMBED:
    fprintf(out, " axis %d start %lld", v->attr.axis,
            (long long)v->attr.start);
    break;
  default:
    break;
  }
}

static void print_value(FILE *out, const IrValue *v, const char *mode) {
  fprintf(out, "  %%%d = %s", v->id, prims[v->op].name);
  if (v->name)
    fprintf(out, " %s", v->name);
  if (v->op == OP_CONST) {
    fputc(' ', out);
    print_num(out, v->attr.num);
  }
  for (int i = 0; i < v->narg; i++)
    fprintf(out, "%s%%%d", i ? ", " : " ", v->arg[i]->id);
  if (v->op == OP_CORRECT) {
    fputs(" threshold ", out);
    print_num(out, v->attr.num);
  }
  if (prims[v->op].kind == PK_RANDOM) {
    fprintf(out, " #%d", v->attr.index);
    if (v->op == OP_RAND_BERNOULLI) {
      fputs(" p ", out);
      print_num(out, v->attr.num);
    }
  }
  print_conv_attrs(out, v);
  fputs(" : ", out);
  print_type(out, v);
  if (v->fused)
    fputs("  (fused)", out);
  if (mode)
    fprintf(out, "  [%s]", mode);
  fputc('\n', out);
}

void ir_print_fn(FILE *out, const IrFn *fn) {
  for (int i = 0; i < fn->values.n; i++)
    print_value(out, fn->values.item[i], NULL);
}

void ir_close_deps(const IrFn *fn, bool *set) {
  for (int i = fn->values.n - 1; i >= 0; i--) {
    const IrValue *v = fn->values.item[i];
    if (set[i])
      for (int a = 0; a < v->narg; a++)
        set[v->arg[a]->id] = true;
  }
}

static void mark_graph(bool *in, const IrValue *root) {
  if (root)
    in[root->id] = true;
}

// The module's function with each value that only one mode computes marked
// [train] or [eval]; unmarked values belong to both graphs (or neither:
// parameters and leaves no root reads).
static void print_modes(FILE *out, const IrModule *m) {
  IrGraph ev = ir_eval_graph(m);
  int n = m->fn->values.n;
  bool *tr = calloc((size_t)n + 1, 2), *inf = tr + n + 1;
  IrValue *troots[] = {m->output, m->loss, m->correct};
  IrValue *eroots[] = {ev.output, ev.loss, ev.objective, ev.correct};
  for (int i = 0; i < 3; i++)
    mark_graph(tr, troots[i]);
  for (int i = 0; i < 4; i++)
    mark_graph(inf, eroots[i]);
  for (int i = 0; i < m->nsteps; i++) {
    const IrStep *st = &m->steps[i];
    mark_graph(tr, st->objective);
    mark_graph(inf, st->eval_objective);
    for (int k = 0; k < st->nreports; k++) {
      mark_graph(tr, st->report[k]);
      mark_graph(inf, st->eval_report[k]);
    }
  }
  mark_graph(inf, m->sample);
  for (int i = 0; i < m->params.n; i++)
    mark_graph(tr, ((IrParam *)m->params.item[i])->grad);
  for (int i = 0; i < m->updates.n; i++)
    mark_graph(tr, ((IrUpdate *)m->updates.item[i])->value);
  ir_close_deps(m->fn, tr);
  ir_close_deps(m->fn, inf);
  bool differ = ev.output != m->output || m->nsteps > 1 ||
                (m->nsteps == 1 && m->steps[0].eval_objective);
  for (int i = 0; i < n; i++) {
    const IrValue *v = m->fn->values.item[i];
    const char *mode = NULL;
    if (differ && tr[i] != inf[i] && prims[v->op].kind != PK_LEAF)
      mode = tr[i] ? "train" : "eval";
    print_value(out, v, mode);
  }
  free(tr);
}

static void print_init(FILE *out, Init init) {
  fputs(init_names[init.kind], out);
  if (init.kind == INIT_CONSTANT) {
    fputc('(', out);
    print_num(out, init.a);
    fputc(')', out);
  } else if (init.kind == INIT_UNIFORM || init.kind == INIT_NORMAL) {
    fputc('(', out);
    print_num(out, init.a);
    fputs(", ", out);
    print_num(out, init.b);
    fputc(')', out);
  }
}

static void print_step(FILE *out, const IrStep *st);

IrStep *ir_main_step(IrModule *m) {
  if (m->nsteps == 0) {
    m->steps = arena_alloc(m->fn->arena, sizeof *m->steps);
    m->steps[0].name = "loss";
    m->nsteps = 1;
  }
  return &m->steps[0];
}

IrGraph ir_eval_graph(const IrModule *m) {
  if (m->eval.output)
    return m->eval;
  return (IrGraph){m->output, m->loss,
                   m->nsteps ? m->steps[0].objective : NULL, m->correct};
}

void ir_print(FILE *out, const IrModule *m) {
  fprintf(out, "model %s\n", m->name);
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    fprintf(out, "%s %s ", p->buffer ? "buffer" : "param", p->name);
    print_type(out, p->value);
    if (p->transposed)
      fprintf(out, " (stored transposed: %s)",
              shape_str(m->fn->arena, p->shape, false));
    fputs(" = ", out);
    print_init(out, p->init);
    fprintf(out, "  (fan_in %lld, fan_out %lld)\n", (long long)p->fan_in,
            (long long)p->fan_out);
  }
  fputs("fn step {\n", out);
  print_modes(out, m);
  fputs("}\n", out);
  if (m->output)
    fprintf(out, "output %%%d\n", m->output->id);
  if (m->loss)
    fprintf(out, "loss %%%d\n", m->loss->id);
  for (int i = 0; i < m->nsteps; i++) {
    const IrStep *st = &m->steps[i];
    bool named = m->nsteps > 1 || st->eval_objective;  // `step` blocks
    if (!st->objective)
      continue;
    if (named) {
      fprintf(out, "step %s objective %%%d over", st->name,
              st->objective->id);
      for (int k = 0; k < st->nparams; k++)
        fprintf(out, " %s", ((IrParam *)m->params.item[st->params[k]])->name);
      fputc('\n', out);
    } else {
      fprintf(out, "objective %%%d\n", st->objective->id);
    }
    for (int k = 0; k < st->nreports; k++)
      fprintf(out, "step %s report %s %%%d\n", st->name, st->report_name[k],
              st->report[k]->id);
    if (st->eval_objective)
      fprintf(out, "eval step %s objective %%%d\n", st->name,
              st->eval_objective->id);
    for (int k = 0; k < st->nreports && st->eval_objective; k++)
      fprintf(out, "eval step %s report %s %%%d\n", st->name,
              st->report_name[k], st->eval_report[k]->id);
  }
  if (m->sample)
    fprintf(out, "sample %%%d\n", m->sample->id);
  if (m->correct)
    fprintf(out, "correct %%%d\n", m->correct->id);
  // The inference graph, when it differs from the training graph.
  IrGraph ev = ir_eval_graph(m);
  if (ev.output != m->output) {
    fprintf(out, "eval output %%%d\n", ev.output->id);
    if (ev.loss)
      fprintf(out, "eval loss %%%d\n", ev.loss->id);
    if (ev.objective)
      fprintf(out, "eval objective %%%d\n", ev.objective->id);
    if (ev.correct)
      fprintf(out, "eval correct %%%d\n", ev.correct->id);
  }
  for (int i = 0; i < m->updates.n; i++) {
    const IrUpdate *u = m->updates.item[i];
    fprintf(out, "update %s = %%%d\n",
            ((IrParam *)m->params.item[u->param])->name, u->value->id);
  }
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    if (p->grad)
      fprintf(out, "grad %s = %%%d\n", p->name, p->grad->id);
  }
  for (int k = 0; k < m->nsteps; k++)
    print_step(out, &m->steps[k]);
}

// A step's optimizer program and schedule.
static void print_step(FILE *out, const IrStep *st) {
  const IrOptimizer *o = &st->opt;
  if (o->fn) {
    fprintf(out, "optimizer %s (p, g, t", o->name);
    for (int i = 0; i < o->nstate; i++)
      fprintf(out, ", %s", o->state_name[i]);
    fputs(") {\n", out);
    ir_print_fn(out, o->fn);
    fprintf(out, "  p <- %%%d\n", o->new_p->id);
    for (int i = 0; i < o->nstate; i++) {
      fprintf(out, "  %s <- %%%d  (initially ", o->state_name[i],
              o->new_state[i]->id);
      print_num(out, o->state_init[i]);
      fputs(")\n", out);
    }
    fputs("}\n", out);
  }
  const IrSchedule *sc = &st->sched;
  if (sc->fn && sc->lr) {
    fprintf(out, "schedule %s (iteration, epoch) {\n", sc->name);
    ir_print_fn(out, sc->fn);
    fprintf(out, "  lr <- %%%d\n", sc->lr->id);
    if (sc->warmup)
      fprintf(out, "  warmup %lld steps\n", (long long)sc->warmup);
    fputs("}\n", out);
  }
}
