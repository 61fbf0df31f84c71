// sema_train.c — lowers a `train` block: the loss applied to the model's
// output and the label, the metrics, the optimizer's update rule (a scalar
// IR program), the data sources and the numeric settings (see ir.h:
// TrainSpec, IrOptimizer, DataSpec).
//
// Everything a train block names is resolved here, so the runtime receives
// plain numbers and paths and never interprets the language.
#include <math.h>
#include <string.h>

#include "sema_internal.h"

static const char *const settings[] = {
    "data", "test", "loss", "optimizer", "batch", "epochs", "seed",
    "validation", "metrics", "schedule", "warmup", "clip_norm", "l1", "l2",
    "early_stopping", "shuffle", "stop_when_perfect", "sample",
};
enum { S_OPTIMIZER = 3, S_BATCH = 4, S_SCHEDULE = 9, S_SAMPLE = 17 };
enum { NSETTINGS = sizeof settings / sizeof settings[0] };

// ---- numbers ----------------------------------------------------------------------
static int64_t setting_int(Sema *s, Frame *f, Ast *e, const char *what,
                           int64_t min, int64_t fallback) {
  double v = sema_number(s, f, e, what, NAN);
  if (isnan(v))
    return fallback;
  if (v != floor(v) || v < (double)min || v > 1e12) {
    diag_error(s->diag, e->loc, "%s must be an integer of at least %lld, got %g",
               what, (long long)min, v);
    return fallback;
  }
  return (int64_t)v;
}

// true or false (also 1 or 0).
static bool setting_bool(Sema *s, Frame *f, Ast *e, const char *what,
                         bool fallback) {
  if (e->kind == AST_NAME && (strcmp(e->name, "true") == 0 ||
                              strcmp(e->name, "false") == 0))
    return strcmp(e->name, "true") == 0;
  double v = e->kind == AST_NAME ? NAN : sema_number(s, f, e, what, NAN);
  if (v == 0 || v == 1)
    return v == 1;
  if (e->kind == AST_NAME || !isnan(v))
    diag_error(s->diag, e->loc, "%s must be true or false", what);
  return fallback;
}

// ---- lists of numbers (inline data, class filters) -----------------------------------
// Flattens nested lists of numbers; returns the count or -1 after an error.
static int64_t flatten_numbers(Sema *s, SVal v, double *out, int64_t cap) {
  if (v.kind == SV_NUM) {
    if (cap > 0)
      out[0] = v.num;
    return 1;
  }
  if (v.kind != SV_LIST) {
    diag_error(s->diag, v.loc, "expected a number or a list of numbers, got %s",
               sval_describe(s, v));
    return -1;
  }
  int64_t n = 0;
  for (int i = 0; i < v.nitems; i++) {
    int64_t k = flatten_numbers(s, v.items[i], out ? out + n : NULL,
                                out ? cap - n : 0);
    if (k < 0)
      return -1;
    n += k;
  }
  return n;
}

// Rows of an inline table: each item of the outer list is one example.
static double *inline_rows(Sema *s, SVal v, int64_t *rows, int64_t *cols,
                           const char *what) {
  if (v.kind != SV_LIST || v.nitems == 0) {
    if (v.kind != SV_POISON)
      diag_error(s->diag, v.loc, "inline %s must be a non-empty list of rows",
                 what);
    return NULL;
  }
  int64_t per = flatten_numbers(s, v.items[0], NULL, 0);
  if (per < 0)
    return NULL;
  double *data = arena_alloc(s->arena, sizeof(double) * (size_t)(per * v.nitems));
  for (int i = 0; i < v.nitems; i++) {
    int64_t k = flatten_numbers(s, v.items[i], NULL, 0);
    if (k < 0)
      return NULL;
    if (k != per) {
      diag_error(s->diag, v.items[i].loc,
                 "inline %s: row %d has %lld values but row 1 has %lld", what,
                 i + 1, (long long)k, (long long)per);
      return NULL;
    }
    flatten_numbers(s, v.items[i], data + per * i, per);
  }
  *rows = v.nitems;
  *cols = per;
  return data;
}

// ---- data sources ----------------------------------------------------------------------
typedef struct DataArgs {
  SVal pos[4];
  int npos;
  SVal scale, classes;
} DataArgs;

static bool data_args(Sema *s, Frame *f, Ast *call, DataArgs *a, int npos_min,
                      int npos_max) {
  *a = (DataArgs){.scale = sval_num(1, call->loc)};
  a->classes.kind = SV_POISON;
  for (int i = 0; i < call->list.n; i++) {
    Ast *arg = call->list.item[i];
    if (arg->kind == AST_NAMED_ARG) {
      SVal v = sema_eval(s, f, arg->a);
      if (strcmp(arg->name, "scale") == 0)
        a->scale = v;
      else if (strcmp(arg->name, "classes") == 0)
        a->classes = v;
      else {
        diag_error(s->diag, arg->loc,
                   "%s has no argument named '%s' (it takes scale and classes)",
                   call->name, arg->name);
        return false;
      }
      if (v.kind == SV_POISON)
        return false;
    } else {
      if (a->npos == npos_max) {
        diag_error(s->diag, arg->loc, "%s takes %d positional argument%s",
                   call->name, npos_max, npos_max == 1 ? "" : "s");
        return false;
      }
      a->pos[a->npos] = sema_eval(s, f, arg);
      if (a->pos[a->npos++].kind == SV_POISON)
        return false;
    }
  }
  if (a->npos < npos_min) {
    diag_error(s->diag, call->loc, "%s takes %d positional argument%s",
               call->name, npos_max, npos_max == 1 ? "" : "s");
    return false;
  }
  if (a->scale.kind != SV_NUM) {
    diag_error(s->diag, a->scale.loc, "scale must be a number");
    return false;
  }
  return true;
}

static const char *path_arg(Sema *s, SVal v, const char *fn) {
  if (v.kind != SV_STR) {
    diag_error(s->diag, v.loc, "%s expects a file path in quotes, got %s", fn,
               sval_describe(s, v));
    return NULL;
  }
  return v.str;
}

static void lower_classes(Sema *s, SVal v, DataSpec *d) {
  if (v.kind == SV_POISON)
    return;  // not given
  double buf[256];
  int64_t n = flatten_numbers(s, v, NULL, 0);
  if (n < 0)
    return;
  if (n < 1 || n > 256) {
    diag_error(s->diag, v.loc, "classes must list between 1 and 256 labels");
    return;
  }
  flatten_numbers(s, v, buf, n);
  d->nclasses = (int)n;
  d->classes = arena_alloc(s->arena, sizeof(int64_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    if (buf[i] != floor(buf[i]) || buf[i] < 0 || buf[i] > 1e9) {
      diag_error(s->diag, v.loc, "classes must be non-negative integers");
      return;
    }
    d->classes[i] = (int64_t)buf[i];
  }
}

static void lower_data(Sema *s, Frame *f, Ast *e, DataSpec *d) {
  IrModule *m = s->m;
  d->loc = e->loc;
  if (e->kind != AST_CALL || (strcmp(e->name, "idx") && strcmp(e->name, "csv") &&
                              strcmp(e->name, "npy") &&
                              strcmp(e->name, "inline"))) {
    diag_error(s->diag, e->loc,
               "expected a data source: idx(images, labels), npy(inputs, "
               "labels), csv(path) or inline(xs, ys)");
    return;
  }
  DataArgs a;
  bool is_csv = strcmp(e->name, "csv") == 0, is_idx = strcmp(e->name, "idx") == 0;
  // idx(images) alone trains the model to reproduce its input (autoencoders)
  if (!data_args(s, f, e, &a, is_csv || is_idx ? 1 : 2, is_csv ? 1 : 2))
    return;
  d->scale = a.scale.num;
  lower_classes(s, a.classes, d);
  if (strcmp(e->name, "idx") == 0 || strcmp(e->name, "npy") == 0) {
    d->kind = is_idx ? DATA_IDX : DATA_NPY;
    d->path_x = path_arg(s, a.pos[0], e->name);
    if (a.npos == 2) {
      d->path_y = path_arg(s, a.pos[1], e->name);
      return;
    }
    if (!shape_eq(m->input->shape, m->output->shape) && !s->has_steps)
      diag_error(s->diag, e->loc,
                 "idx(images) without labels trains the model to reproduce its "
                 "input, but it takes %s and predicts %s",
                 shape_str(s->arena, m->input->shape, false),
                 shape_str(s->arena, m->output->shape, false));
    else if (d->nclasses)
      diag_error(s->diag, e->loc, "classes needs a labels file");
    return;
  }
  if (is_csv) {
    d->kind = DATA_CSV;
    d->path_x = path_arg(s, a.pos[0], "csv");
    return;
  }
  d->kind = DATA_INLINE;
  int64_t xr, yr;
  d->x = inline_rows(s, a.pos[0], &xr, &d->xcols, "inputs");
  d->y = inline_rows(s, a.pos[1], &yr, &d->ycols, "labels");
  if (!d->x || !d->y)
    return;
  d->nrows = xr;
  int64_t in = shape_numel(m->input->shape), out = shape_numel(m->output->shape);
  if (xr != yr)
    diag_error(s->diag, e->loc, "inline data has %lld inputs but %lld labels",
               (long long)xr, (long long)yr);
  else if (d->xcols != in)
    diag_error(s->diag, a.pos[0].loc,
               "inline inputs have %lld values per row; the model takes %s",
               (long long)d->xcols,
               shape_str(s->arena, m->input->shape, false));
  else if (d->ycols != out && d->ycols != 1)
    diag_error(s->diag, a.pos[1].loc,
               "inline labels have %lld values per row; the model predicts %s "
               "(give %lld values or one class index per row)",
               (long long)d->ycols, shape_str(s->arena, m->output->shape, false),
               (long long)out);
}

// ---- loss and metrics ---------------------------------------------------------------------
// The loss of `output` against the label, into g. The training graph also
// adds the penalties: per-example ones to the loss, the others (parameter
// penalties, one number per batch) to the objective.
static void lower_loss(Sema *s, Frame *f, Ast *e, IrValue *output, IrGraph *g,
                       bool penalties) {
  IrModule *m = s->m;
  SVal fn = sema_eval(s, f, e);
  if (fn.kind == SV_POISON)
    return;
  if (fn.kind != SV_FUNC || (fn.decl && fn.decl->kind != AST_LOSS &&
                             fn.decl->kind != AST_LAYER)) {
    diag_error(s->diag, e->loc,
               "loss must name a loss function such as mse, got %s",
               fn.decl ? "a model or optimizer" : sval_describe(s, fn));
    return;
  }
  SVal args[2] = {sval_tensor(output, e->loc), sval_tensor(m->label, e->loc)};
  SVal l = sema_apply(s, f, fn, args, 2, NULL, NULL, 0, e);
  if (l.kind == SV_POISON)
    return;
  if (l.kind != SV_TENSOR || l.t->shape.rank != 0 || !l.t->batched) {
    diag_error(s->diag, e->loc,
               "the loss must be one number per example, got %s",
               sval_describe(s, l));
    return;
  }
  IrValue *loss = l.t, *extra = NULL;
  for (int i = 0; penalties && i < s->penalties.n; i++) {
    IrValue *p = s->penalties.item[i];
    if (p->batched)
      loss = ir_binary(s->fn, OP_ADD, loss, p, p->loc);
    else
      extra = extra ? ir_binary(s->fn, OP_ADD, extra, p, p->loc) : p;
  }
  g->loss = loss;
  g->objective = ir_unary(s->fn, OP_BATCH_MEAN, loss, e->loc);
  if (extra)
    g->objective = ir_binary(s->fn, OP_ADD, g->objective, extra, e->loc);
}

static void lower_metrics(Sema *s, Frame *f, Ast *e) {
  IrModule *m = s->m;
  if (e->kind != AST_LIST) {
    diag_error(s->diag, e->loc, "metrics must be a list, like [accuracy]");
    return;
  }
  for (int i = 0; i < e->list.n; i++) {
    Ast *it = e->list.item[i];
    if (strcmp(it->name ? it->name : "", "accuracy") != 0 ||
        (it->kind != AST_NAME && it->kind != AST_CALL)) {
      diag_error(s->diag, it->loc, "unknown metric; the known one is accuracy");
      continue;
    }
    for (int j = 0; it->kind == AST_CALL && j < it->list.n; j++) {
      Ast *a = it->list.item[j];
      if (a->kind != AST_NAMED_ARG || strcmp(a->name, "threshold") != 0)
        diag_error(s->diag, a->loc, "accuracy takes only 'threshold = number'");
      else
        m->train.threshold = sema_number(s, f, a->a, "threshold", 0.5);
    }
    if (m->output->shape.rank != 1) {
      diag_error(s->diag, it->loc,
                 "accuracy needs a vector prediction, the model predicts %s",
                 shape_str(s->arena, m->output->shape, false));
      continue;
    }
    m->train.accuracy = true;
  }
}

// Correct predictions of `output` in the batch (SUM_TO of per-example
// CORRECT), when accuracy is a metric.
static IrValue *lower_correct(Sema *s, IrValue *output, Loc loc) {
  IrModule *m = s->m;
  if (!m->train.accuracy)
    return NULL;
  IrValue *c = ir_prim(s->fn, OP_CORRECT, (IrValue *[]){output, m->label},
                       (Attr){.num = m->train.threshold}, loc);
  return ir_shaped(s->fn, OP_SUM_TO, c, shape_scalar(), false, loc);
}

// ---- the optimizer ---------------------------------------------------------------------------
void sema_optimizer(Sema *s, Ast *e, bool scheduled, double *lr,
                    IrStep *step) {
  if (e->kind != AST_NAME && e->kind != AST_CALL) {
    diag_error(s->diag, e->loc, "expected an optimizer, like adam(lr = 1e-3)");
    return;
  }
  Ast *decl = sema_find_decl(s, e->name);
  if (!decl || decl->kind != AST_OPTIMIZER) {
    diag_error(s->diag, e->loc, "'%s' is not an optimizer", e->name);
    return;
  }
  // Hyperparameters: numbers bound to the optimizer's formals.
  Frame f = {.prefix = ""};
  Frame outer = {.prefix = ""};
  int npos = 0;
  for (int j = 0; j < decl->formals.n; j++) {
    Ast *formal = decl->formals.item[j];
    Ast *given = NULL;
    for (int i = 0; e->kind == AST_CALL && i < e->list.n; i++) {
      Ast *a = e->list.item[i];
      if (a->kind != AST_NAMED_ARG && i == j)
        given = a;
      if (a->kind == AST_NAMED_ARG && strcmp(a->name, formal->name) == 0)
        given = a->a;
    }
    Ast *src = given ? given : formal->b;
    if (!src) {
      diag_error(s->diag, e->loc, "%s: missing argument '%s'", decl->name,
                 formal->name);
      return;
    }
    double v = sema_number(s, given ? &outer : &f, src, formal->name, NAN);
    frame_bind(s, &f, formal->name, sval_num(v, src->loc));
    if (strcmp(formal->name, "lr") == 0)
      *lr = v;
  }
  for (int i = 0; e->kind == AST_CALL && i < e->list.n; i++) {
    Ast *a = e->list.item[i];
    if (a->kind != AST_NAMED_ARG) {
      if (++npos > decl->formals.n)
        diag_error(s->diag, a->loc, "%s takes %d arguments", decl->name,
                   decl->formals.n);
      continue;
    }
    bool known = false;
    for (int j = 0; j < decl->formals.n; j++)
      known |= strcmp(((Ast *)decl->formals.item[j])->name, a->name) == 0;
    if (!known)
      diag_error(s->diag, a->loc, "%s has no argument named '%s'", decl->name,
                 a->name);
  }
  // The update rule, as a scalar program over ARG leaves.
  IrOptimizer *o = &step->opt;
  Ast *update = NULL;
  PtrVec states = {0};
  for (int i = 0; i < decl->body.n; i++) {
    Ast *st = decl->body.item[i];
    if (!st)
      continue;
    if (st->kind == AST_STATE)
      ptrvec_push(s->arena, &states, st);
    else if (st->kind == AST_UPDATE && !update)
      update = st;
    else
      diag_error(s->diag, st->loc,
                 "an optimizer holds 'state' lines and one 'update' block");
  }
  if (!update) {
    diag_error(s->diag, decl->loc, "optimizer '%s' has no update block",
               decl->name);
    return;
  }
  if (update->formals.n < 2 || update->formals.n > 3) {
    diag_error(s->diag, update->loc,
               "update takes (p, g) or (p, g, t): parameter, gradient, step");
    return;
  }
  IrFn *saved = s->fn;
  s->fn = o->fn = ir_fn_new(s->arena);
  o->fn->dtype = s->dtype;  // the update runs in the parameters' type
  o->name = decl->name;
  o->nstate = states.n;
  o->state_name = arena_alloc(s->arena, sizeof(char *) * (size_t)(states.n + 1));
  o->state_init = arena_alloc(s->arena, sizeof(double) * (size_t)(states.n + 1));
  o->new_state = arena_alloc(s->arena, sizeof(IrValue *) * (size_t)(states.n + 1));
  Shape one = shape_scalar();
  IrValue *arg[3];
  static const char *const roles[] = {"p", "g", "t"};
  for (int i = 0; i < 3; i++) {
    const char *name = i < update->formals.n
                           ? ((Ast *)update->formals.item[i])->name
                           : roles[i];
    arg[i] = ir_leaf(o->fn, OP_ARG, one, false, i, name, update->loc);
    frame_bind(s, &f, name, sval_tensor(arg[i], update->loc));
  }
  for (int k = 0; k < states.n; k++) {
    Ast *st = states.item[k];
    o->state_name[k] = st->name;
    o->state_init[k] = sema_number(s, &f, st->a, "a state's initial value", 0);
    IrValue *leaf = ir_leaf(o->fn, OP_ARG, one, false, 3 + k, st->name, st->loc);
    frame_bind(s, &f, st->name, sval_tensor(leaf, st->loc));
  }
  // With a schedule, `lr` is the step's learning rate, an argument.
  o->lr_arg = 0;
  if (scheduled) {
    if (isnan(*lr)) {
      diag_error(s->diag, e->loc,
                 "a schedule needs an optimizer with an 'lr' argument; '%s' "
                 "has none",
                 decl->name);
    } else {
      o->lr_arg = 3 + states.n;
      IrValue *leaf =
          ir_leaf(o->fn, OP_ARG, one, false, o->lr_arg, "lr", e->loc);
      frame_bind(s, &f, "lr", sval_tensor(leaf, e->loc));
    }
  }
  for (int i = 0; i < update->body.n; i++) {
    Ast *st = update->body.item[i];
    if (!st)
      continue;
    if (st->kind != AST_ASSIGN) {
      diag_error(s->diag, st->loc, "an update block holds only assignments");
      continue;
    }
    SVal v = sema_eval(s, &f, st->a);
    if (v.kind != SV_POISON && v.kind != SV_NUM && v.kind != SV_TENSOR) {
      diag_error(s->diag, st->a->loc, "expected a number or tensor, got %s",
                 sval_describe(s, v));
      v = sval_poison();
    }
    frame_bind(s, &f, st->name, v);
  }
  // Results: the last binding of p and of each state.
  for (int k = -1; k < states.n; k++) {
    const char *name = k < 0 ? arg[0]->name : o->state_name[k];
    SVal v = sval_poison();
    for (Binding *b = f.vars; b; b = b->next)
      if (strcmp(b->name, name) == 0) {
        v = b->val;
        break;
      }
    if (v.kind == SV_POISON)
      continue;  // already reported
    IrValue *r = sema_tensor_of(s, v, update->loc);
    if (k < 0) {
      if (r == arg[0])
        diag_error(s->diag, update->loc, "optimizer '%s' never assigns '%s'",
                   decl->name, name);
      o->new_p = r;
    } else {
      o->new_state[k] = r;
    }
  }
  s->fn = saved;
}

// ---- the schedule ----------------------------------------------------------------------------
// `schedule = NAME(args)`: the declaration's body, with `lr` the
// optimizer's learning rate, `epoch` and `iteration` arguments of the
// program, becomes the step's schedule.
void sema_schedule(Sema *s, Ast *e, double lr, IrStep *step) {
  const char *name = e->kind == AST_NAME || e->kind == AST_CALL ? e->name : NULL;
  Ast *decl = name ? sema_find_schedule(s, name) : NULL;
  if (!decl) {
    diag_error(s->diag, e->loc,
               "unknown schedule%s%s%s (known: constant, step_decay, "
               "multi_step, exponential, inverse_time, polynomial, linear, "
               "cosine; or a 'schedule' declaration)",
               name ? " '" : "", name ? name : "", name ? "'" : "");
    return;
  }
  IrSchedule *sc = &step->sched;
  IrFn *saved = s->fn;
  s->fn = sc->fn = ir_fn_new(s->arena);
  sc->name = decl->name;
  Frame f = {.prefix = ""}, outer = {.prefix = ""};
  Shape one = shape_scalar();
  frame_bind(s, &f, "iteration",
             sval_tensor(ir_leaf(sc->fn, OP_ARG, one, false, 0, "iteration",
                                 e->loc), e->loc));
  frame_bind(s, &f, "epoch",
             sval_tensor(ir_leaf(sc->fn, OP_ARG, one, false, 1, "epoch", e->loc),
                         e->loc));
  frame_bind(s, &f, "lr", sval_num(lr, e->loc));
  int npos = 0;
  for (int i = 0; e->kind == AST_CALL && i < e->list.n; i++) {
    Ast *a = e->list.item[i];
    int k = -1;
    if (a->kind == AST_NAMED_ARG) {
      for (int j = 0; j < decl->formals.n; j++)
        if (strcmp(((Ast *)decl->formals.item[j])->name, a->name) == 0)
          k = j;
      if (k < 0)
        diag_error(s->diag, a->loc, "%s has no argument named '%s'",
                   decl->name, a->name);
    } else if ((k = npos++) >= decl->formals.n) {
      diag_error(s->diag, a->loc, "%s takes %d arguments", decl->name,
                 decl->formals.n);
      k = -1;
    }
    if (k >= 0) {
      Ast *formal = decl->formals.item[k];
      double v = sema_number(s, &outer, a->kind == AST_NAMED_ARG ? a->a : a,
                             formal->name, NAN);
      frame_bind(s, &f, formal->name, sval_num(v, a->loc));
    }
  }
  for (int j = 0; j < decl->formals.n; j++) {
    Ast *formal = decl->formals.item[j];
    bool bound = false;
    for (Binding *b = f.vars; b && !bound; b = b->next)
      bound = strcmp(b->name, formal->name) == 0;
    if (bound)
      continue;
    if (!formal->b) {
      diag_error(s->diag, e->loc, "%s: missing argument '%s'", decl->name,
                 formal->name);
      s->fn = saved;
      return;
    }
    double v = sema_number(s, &f, formal->b, formal->name, NAN);
    frame_bind(s, &f, formal->name, sval_num(v, formal->b->loc));
  }
  SVal r = sema_eval_body(s, &f, decl);
  if (r.kind == SV_NUM || (r.kind == SV_TENSOR && r.t->shape.rank == 0 &&
                           !r.t->batched)) {
    sc->lr = sema_tensor_of(s, r, decl->loc);
  } else if (r.kind != SV_POISON) {
    diag_error(s->diag, decl->loc,
               "a schedule gives one number (the learning rate), got %s",
               sval_describe(s, r));
  }
  s->fn = saved;
}

// l1 * sum |p| + l2 / 2 * sum p^2 over every trainable parameter: the
// train block's `l1` and `l2` settings.
static IrValue *weight_penalty(Sema *s, double l1, double l2, Loc loc) {
  IrModule *m = s->m;
  IrValue *total = NULL;
  for (int i = 0; i < m->params.n; i++) {
    IrParam *p = m->params.item[i];
    if (p->buffer)
      continue;
    for (int k = 0; k < 2; k++) {
      double w = k ? l2 / 2 : l1;
      if (w == 0)
        continue;
      IrValue *x = k ? ir_binary(s->fn, OP_MUL, p->value, p->value, loc)
                     : ir_unary(s->fn, OP_ABS, p->value, loc);
      IrValue *t = ir_binary(s->fn, OP_MUL, ir_const(s->fn, w, loc),
                             ir_unary(s->fn, OP_SUM, x, loc), loc);
      total = total ? ir_binary(s->fn, OP_ADD, total, t, loc) : t;
    }
  }
  return total;
}

static double setting_nonneg(Sema *s, Frame *f, Ast *e, const char *what) {
  double v = sema_number(s, f, e, what, 0);
  if (!(v >= 0) || isinf(v)) {
    diag_error(s->diag, e->loc, "%s must be a number of at least 0, got %g",
               what, v);
    return 0;
  }
  return v;
}

// ---- the block -------------------------------------------------------------------------------
void sema_train(Sema *s, Ast *train, IrValue *output, IrValue *eval_output) {
  IrModule *m = s->m;
  TrainSpec *t = &m->train;
  t->loc = train->loc;
  Frame f = {.prefix = ""};
  Ast *given[NSETTINGS] = {0};
  double lr = NAN;  // the optimizer's `lr`, for the schedule
  // `step` blocks make a program of several steps (sema_step.c); without
  // them, one step: the loss over every trainable parameter.
  bool steps = false;
  for (int i = 0; i < train->body.n; i++) {
    Ast *st = train->body.item[i];
    steps |= st && st->kind == AST_STEP;
  }
  s->has_steps = steps;
  IrStep one = {0};
  IrStep *step = steps ? &one : ir_main_step(m);
  step->loc = train->loc;
  for (int i = 0; i < train->body.n; i++) {
    Ast *st = train->body.item[i];
    if (!st || st->kind == AST_STEP)
      continue;
    if (st->kind == AST_OPT_INSTANCE) {
      if (!steps)
        diag_error(s->diag, st->loc,
                   "a named optimizer is for the steps of a train block; "
                   "without 'step' blocks, write 'optimizer = %s(...)'",
                   st->a && st->a->name ? st->a->name : "adam");
      continue;
    }
    int k = -1;
    for (int j = 0; j < NSETTINGS; j++)
      if (st->kind == AST_ASSIGN && strcmp(st->name, settings[j]) == 0)
        k = j;
    if (k < 0) {
      diag_error(s->diag, st->loc,
                 "unknown setting '%s' (known: data, test, loss, optimizer, "
                 "batch, epochs, seed, validation, metrics, schedule, warmup, "
                 "clip_norm, l1, l2, early_stopping, shuffle, "
                 "stop_when_perfect, sample)",
                 st->name ? st->name : "?");
      continue;
    }
    if (given[k]) {
      diag_error(s->diag, st->loc, "'%s' is set twice", st->name);
      diag_note(s->diag, given[k]->loc, "first set here");
      continue;
    }
    given[k] = st;
  }
  m->label = ir_leaf(m->fn, OP_LABEL, output->shape, true, 0, "y", train->loc);
  for (int k = 0; k < NSETTINGS; k++) {
    Ast *st = given[k];
    if (!st) {
      // data, loss and optimizer are required (steps say what they minimize)
      if (k == 0 || (!steps && (k == 2 || k == 3)))
        diag_error(s->diag, train->loc, "train block needs a '%s' setting",
                   settings[k]);
      continue;
    }
    Ast *e = st->a;
    if (steps && (k == 2 || k == 8 || k == 12 || k == 13)) {
      diag_error(s->diag, st->loc,
                 "with 'step' blocks, each step says what it minimizes: "
                 "'%s' belongs in a step (as 'minimize', 'report' or "
                 "'penalty')",
                 settings[k]);
      continue;
    }
    if (steps && (k == 3 || k == S_SCHEDULE || k == 10))
      continue;  // defaults of the steps (sema_steps)
    if (!steps && k == S_SAMPLE) {
      diag_error(s->diag, st->loc,
                 "sample is for programs with 'step' blocks (generative "
                 "models)");
      continue;
    }
    switch (k) {
    case 0: lower_data(s, &f, e, &t->data); break;
    case 1: lower_data(s, &f, e, &t->test); break;
    case 2: {
      // The training graph's loss (with penalties), then the inference
      // graph's, built in inference mode (shared where the modes agree).
      IrGraph g = {0};
      s->fn->share = false;
      s->training = true;
      lower_loss(s, &f, e, output, &g, true);
      m->loss = g.loss, step->objective = g.objective;
      s->fn->share = true;
      s->training = false;
      if (g.loss)
        lower_loss(s, &f, e, eval_output, &m->eval, false);
      s->fn->share = false;
      s->training = true;
      break;
    }
    case 3: sema_optimizer(s, e, given[S_SCHEDULE] != NULL, &lr, step); break;
    case 4: t->batch = setting_int(s, &f, e, "batch", 1, 32); break;
    case 5: t->epochs = setting_int(s, &f, e, "epochs", 0, 1); break;
    case 6: t->seed = setting_int(s, &f, e, "seed", 0, 1); break;
    case 7:
      t->validation = sema_number(s, &f, e, "validation", 0);
      if (t->validation < 0 || t->validation >= 1) {
        diag_error(s->diag, e->loc, "validation is a fraction in [0, 1)");
        t->validation = 0;
      }
      break;
    case 8: lower_metrics(s, &f, e); break;
    case 9:
      if (step->opt.lr_arg > 0)
        sema_schedule(s, e, lr, step);
      break;
    case 10: step->sched.warmup = setting_int(s, &f, e, "warmup", 0, 0); break;
    case 11: t->clip_norm = setting_nonneg(s, &f, e, "clip_norm"); break;
    case 12: t->l1 = setting_nonneg(s, &f, e, "l1"); break;
    case 13: t->l2 = setting_nonneg(s, &f, e, "l2"); break;
    case 14:
      t->patience = setting_int(s, &f, e, "early_stopping (patience)", 1, 0);
      break;
    case 15: t->no_shuffle = !setting_bool(s, &f, e, "shuffle", true); break;
    case 16:
      t->stop_when_perfect = setting_bool(s, &f, e, "stop_when_perfect", false);
      break;
    }
  }
  if (given[10] && !given[S_SCHEDULE] && !steps)
    diag_error(s->diag, given[10]->loc,
               "warmup needs a schedule ('schedule = constant' keeps lr)");
  if (t->patience > 0 && t->validation == 0 && t->test.kind == DATA_NONE)
    diag_error(s->diag, given[14]->loc,
               "early_stopping watches the validation loss: it needs "
               "'validation = fraction' or a 'test' set");
  if (steps) {
    Ast *defaults[4] = {given[3] ? given[3]->a : NULL,
                        given[S_SCHEDULE] ? given[S_SCHEDULE]->a : NULL,
                        given[10] ? given[10]->a : NULL, given[S_SAMPLE]};
    sema_steps(s, train, defaults);
  }
  if (step->objective && (t->l1 > 0 || t->l2 > 0)) {
    IrValue *w = weight_penalty(s, t->l1, t->l2, t->loc);
    if (w)
      step->objective = ir_binary(s->fn, OP_ADD, step->objective, w, t->loc);
  }
  m->correct = lower_correct(s, output, t->loc);
  s->fn->share = true;
  m->eval.correct = lower_correct(s, eval_output, t->loc);
  s->fn->share = false;
  if (t->batch == 1 && s->batch_stats_at.file) {
    diag_error(s->diag, given[4] ? given[4]->a->loc : train->loc,
               "batch statistics need at least 2 examples per batch, but "
               "batch = 1");
    diag_note(s->diag, s->batch_stats_at,
              "statistics over the batch are taken here");
  }
  // Perfect means no misclassified training example: accuracy counts them.
  if (t->stop_when_perfect && !t->accuracy && given[16])
    diag_error(s->diag, given[16]->loc,
               "stop_when_perfect needs metrics = [accuracy] to count the "
               "misclassified examples");
}
