// sema.c — names, layer instantiation and shape inference; lowers the model
// into the graph IR (see sema.h).
//
// Sema works like a compile-time interpreter over the AST: every expression
// evaluates to an SVal (a number, an IR value, an initializer, a function...).
// A call to a layer instantiates it: a fresh frame binds the arguments to the
// formals (binding shape variables such as `n` from the argument's shape),
// its `param` statements create parameters named after the instance, and its
// body is evaluated into IR in place. Shapes are checked with the same rules
// the IR builder asserts, so a shape error is reported here, once, with both
// shapes and where they came from; the failed expression becomes poison.
#include <assert.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sema_internal.h"

#include "stdlib.inc"

enum { MAX_CALL_ARGS = 16, MAX_DEPTH = 64 };

// ---- values -------------------------------------------------------------------
SVal sval_poison(void) { return (SVal){.kind = SV_POISON, .builtin = -1}; }

SVal sval_num(double v, Loc loc) {
  return (SVal){.kind = SV_NUM, .num = v, .loc = loc, .builtin = -1};
}

SVal sval_tensor(IrValue *t, Loc loc) {
  return (SVal){.kind = SV_TENSOR, .t = t, .loc = loc, .builtin = -1};
}

// A shape as the model's type, "f64[3, 4]" (shape_str says f32).
static char *type_of(Sema *s, Shape sh, bool batched) {
  char *t = shape_str(s->arena, sh, batched);
  memcpy(t, dtype_str(s->dtype), 3);
  return t;
}

const char *sval_describe(Sema *s, SVal v) {
  switch (v.kind) {
  case SV_TENSOR: return type_of(s, v.t->shape, false);
  case SV_NUM: return "a number";
  case SV_STR: return "a string";
  case SV_INIT: return "an initializer";
  case SV_FUNC: return "a function";
  case SV_LIST: return "a list";
  case SV_RECORD: return "several named results";
  case SV_POISON: return "an invalid value";
  }
  unreachable();
}

// ---- builtins ---------------------------------------------------------------------
typedef enum BuiltinKind {
  BK_EW1,      // element-wise primitive of one tensor
  BK_EW2,      // element-wise primitive of two tensors
  BK_REDUCE,   // sum, mean, softmax, log_softmax
  BK_FLATTEN,  // reshape to one axis
  BK_INIT,     // an initializer
  BK_TRAIN,    // only meaningful in a train block (accuracy, idx, csv, inline)
  BK_WINDOW,   // convolution, pooling, concat, reshape: see sema_window.c
  BK_DRAW,     // bernoulli(p, like); uniform(like) and normal(like) are
               // BK_INIT names given a tensor or a shape list
  BK_BATCH,    // batch_mean(x [, shape]): statistics over the batch axis
  BK_RANGE,    // in_range(x, lo, hi, "what"): x, checked at compile time
} BuiltinKind;

typedef struct Builtin {
  const char *name;
  BuiltinKind kind;
  int op;          // Op, or InitKind for BK_INIT
  double a, b;     // BK_INIT default arguments
} Builtin;

static const Builtin builtins[] = {
    {"exp", BK_EW1, OP_EXP, 0, 0},       {"log", BK_EW1, OP_LOG, 0, 0},
    {"sqrt", BK_EW1, OP_SQRT, 0, 0},     {"tanh", BK_EW1, OP_TANH, 0, 0},
    {"sigmoid", BK_EW1, OP_SIGMOID, 0, 0}, {"relu", BK_EW1, OP_RELU, 0, 0},
    {"step", BK_EW1, OP_STEP, 0, 0},     {"abs", BK_EW1, OP_ABS, 0, 0},
    {"sign", BK_EW1, OP_SIGN, 0, 0},     {"max", BK_EW2, OP_MAX, 0, 0},
    {"sin", BK_EW1, OP_SIN, 0, 0},       {"cos", BK_EW1, OP_COS, 0, 0},
    {"floor", BK_EW1, OP_FLOOR, 0, 0},   {"detach", BK_EW1, OP_DETACH, 0, 0},
    {"min", BK_EW2, OP_MIN, 0, 0},       {"sum", BK_REDUCE, OP_SUM, 0, 0},
    {"mean", BK_REDUCE, OP_MEAN, 0, 0},  {"softmax", BK_REDUCE, OP_SOFTMAX, 0, 0},
    {"log_softmax", BK_REDUCE, OP_LOG_SOFTMAX, 0, 0},
    {"flatten", BK_FLATTEN, 0, 0, 0},
    {"zeros", BK_INIT, INIT_ZEROS, 0, 0},
    {"constant", BK_INIT, INIT_CONSTANT, 0, 0},
    {"uniform", BK_INIT, INIT_UNIFORM, -0.05, 0.05},
    {"normal", BK_INIT, INIT_NORMAL, 0, 0.01},
    {"xavier_uniform", BK_INIT, INIT_XAVIER_UNIFORM, 0, 0},
    {"xavier_normal", BK_INIT, INIT_XAVIER_NORMAL, 0, 0},
    {"glorot_uniform", BK_INIT, INIT_XAVIER_UNIFORM, 0, 0},
    {"glorot_normal", BK_INIT, INIT_XAVIER_NORMAL, 0, 0},
    {"he_uniform", BK_INIT, INIT_HE_UNIFORM, 0, 0},
    {"he_normal", BK_INIT, INIT_HE_NORMAL, 0, 0},
    {"accuracy", BK_TRAIN, 0, 0, 0},     {"idx", BK_TRAIN, 0, 0, 0},
    {"csv", BK_TRAIN, 0, 0, 0},          {"inline", BK_TRAIN, 0, 0, 0},
    {"npy", BK_TRAIN, 0, 0, 0},
    {"conv", BK_WINDOW, 0, 0, 0},        {"conv_transpose", BK_WINDOW, 0, 0, 0},
    {"maxpool", BK_WINDOW, 0, 0, 0},     {"avgpool", BK_WINDOW, 0, 0, 0},
    {"maxunpool", BK_WINDOW, 0, 0, 0},   {"concat", BK_WINDOW, 0, 0, 0},
    {"reshape", BK_WINDOW, 0, 0, 0},
    {"bernoulli", BK_DRAW, OP_RAND_BERNOULLI, 0, 0},
    {"batch_mean", BK_BATCH, 0, 0, 0},
    {"in_range", BK_RANGE, 0, 0, 0},
};
enum { NBUILTINS = sizeof builtins / sizeof builtins[0] };

static int builtin_find(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (strcmp(builtins[i].name, name) == 0)
      return i;
  return -1;
}

// ---- loading --------------------------------------------------------------------
static bool already_loaded(Program *prog, const char *path) {
  for (int i = 0; i < prog->files.n; i++)
    if (strcmp(((AstFile *)prog->files.item[i])->path, path) == 0)
      return true;
  return false;
}

static void load_imports(Ctx *ctx, Program *prog, AstFile *f) {
  for (int i = 0; i < f->decls.n; i++) {
    Ast *d = f->decls.item[i];
    if (d->kind != AST_IMPORT)
      continue;
    const char *path = d->name;
    if (path[0] != '/') {  // relative to the importing file
      char *copy = arena_strdup(ctx->arena, f->path);
      path = arena_printf(ctx->arena, "%s/%s", dirname(copy), d->name);
    }
    sema_load_file(ctx, prog, path, d->loc);
  }
}

void sema_load_file(Ctx *ctx, Program *prog, const char *path, Loc from) {
  if (already_loaded(prog, path))
    return;
  Source *src = source_load(&ctx->diag, path, from);
  if (!src)
    return;
  int errors = ctx->diag.nerrors;
  AstFile *f = parse_source(ctx, src);
  ptrvec_push(ctx->arena, &prog->files, f);
  if (ctx->diag.nerrors == errors)  // a broken import line would cascade
    load_imports(ctx, prog, f);
}

void sema_load_stdlib(Ctx *ctx, Program *prog) {
  int n = sizeof stdlib_files / sizeof stdlib_files[0];
  for (int i = 0; i < n; i++) {
    const char *name = stdlib_files[i].name;
    Source *src = NULL;
    if (ctx->stdlib_dir) {
      const char *path = arena_printf(ctx->arena, "%s/%s", ctx->stdlib_dir, name);
      FILE *probe = fopen(path, "r");
      if (probe) {
        fclose(probe);
        src = source_load(&ctx->diag, path, (Loc){0});
      }
    }
    // Messages name stdlib files the same way wherever they were read from,
    // so diagnostics (and their golden tests) do not depend on the install.
    const char *shown = arena_printf(ctx->arena, "<stdlib>/%s", name);
    if (src)
      src->path = shown;
    else
      src = source_from_string(&ctx->diag, shown, stdlib_files[i].text);
    ptrvec_push(ctx->arena, &prog->files, parse_source(ctx, src));
  }
}

// ---- names ----------------------------------------------------------------------
// Schedules have a namespace of their own (only `schedule = ...` names
// them), so `constant` stays the initializer too.
static Ast *find_decl(Sema *s, const char *name, bool schedule) {
  for (int i = s->prog->files.n - 1; i >= 0; i--) {
    AstFile *f = s->prog->files.item[i];
    for (int j = f->decls.n - 1; j >= 0; j--) {
      Ast *d = f->decls.item[j];
      if (d->kind != AST_IMPORT && d->kind != AST_TRAIN && d->name &&
          (d->kind == AST_SCHEDULE) == schedule && strcmp(d->name, name) == 0)
        return d;
    }
  }
  return NULL;
}

Ast *sema_find_schedule(Sema *s, const char *name) {
  return find_decl(s, name, true);
}

Ast *sema_find_decl(Sema *s, const char *name) {
  return find_decl(s, name, false);
}

void frame_bind(Sema *s, Frame *f, const char *name, SVal v) {
  Binding *b = arena_alloc(s->arena, sizeof *b);
  b->name = name;
  b->val = v;
  b->next = f->vars;
  f->vars = b;
}

static Binding *frame_lookup(Frame *f, const char *name) {
  for (Binding *b = f->vars; b; b = b->next)
    if (strcmp(b->name, name) == 0)
      return b;
  return NULL;
}

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 40 || lb > 40)
    return 99;
  int d[41][41];
  for (int i = 0; i <= la; i++)
    d[i][0] = i;
  for (int j = 0; j <= lb; j++)
    d[0][j] = j;
  for (int i = 1; i <= la; i++)
    for (int j = 1; j <= lb; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c)
        c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c)
        c = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < c)
        c = d[i - 2][j - 2] + 1;  // a transposition counts as one edit
      d[i][j] = c;
    }
  return d[la][lb];
}

// The visible name closest to `name`, for "did you mean" hints.
static const char *suggest(Sema *s, Frame *f, const char *name) {
  const char *best = NULL;
  int best_d = (int)strlen(name) / 3 + 1;
  for (Binding *b = f ? f->vars : NULL; b; b = b->next) {
    int d = edit_distance(name, b->name);
    if (d < best_d)
      best = b->name, best_d = d;
  }
  for (int i = 0; i < s->prog->files.n; i++) {
    AstFile *file = s->prog->files.item[i];
    for (int j = 0; j < file->decls.n; j++) {
      Ast *d = file->decls.item[j];
      if (d->kind == AST_IMPORT || d->kind == AST_TRAIN || !d->name)
        continue;
      int dist = edit_distance(name, d->name);
      if (dist < best_d)
        best = d->name, best_d = dist;
    }
  }
  for (int i = 0; i < NBUILTINS; i++) {
    int d = edit_distance(name, builtins[i].name);
    if (d < best_d)
      best = builtins[i].name, best_d = d;
  }
  return best;
}

static void unknown_name(Sema *s, Frame *f, const char *name, Loc loc,
                         const char *what) {
  const char *hint = suggest(s, f, name);
  if (hint)
    diag_error(s->diag, loc, "unknown %s '%s'; did you mean '%s'?", what, name,
               hint);
  else
    diag_error(s->diag, loc, "unknown %s '%s'", what, name);
}

static SVal func_value(Ast *decl, int builtin, Loc loc) {
  return (SVal){.kind = SV_FUNC, .decl = decl, .builtin = builtin, .loc = loc};
}

static SVal init_value(InitKind kind, double a, double b, Loc loc) {
  return (SVal){.kind = SV_INIT, .init = {kind, a, b}, .loc = loc,
                .builtin = -1};
}

static SVal eval_name(Sema *s, Frame *f, Ast *e) {
  Binding *b = frame_lookup(f, e->name);
  if (b) {
    SVal v = b->val;
    if (v.kind != SV_POISON)
      v.loc = e->loc;
    return v;
  }
  Ast *d = sema_find_decl(s, e->name);
  if (d)
    return func_value(d, -1, e->loc);
  if (strcmp(e->name, "pi") == 0)
    return sval_num(M_PI, e->loc);
  if (strcmp(e->name, "training") == 0)  // 1 in the training graph, else 0
    return sval_num(s->training ? 1 : 0, e->loc);
  if (strcmp(e->name, "batch_size") == 0)
    return sval_tensor(ir_leaf(s->fn, OP_BATCH_SIZE, shape_scalar(), false, 0,
                               NULL, e->loc),
                       e->loc);
  int bi = builtin_find(e->name);
  if (bi >= 0) {
    const Builtin *bt = &builtins[bi];
    if (bt->kind == BK_INIT)
      return init_value(bt->op, bt->a, bt->b, e->loc);
    return func_value(NULL, bi, e->loc);
  }
  unknown_name(s, f, e->name, e->loc, "name");
  return sval_poison();
}

// ---- tensors and arithmetic ---------------------------------------------------------
IrValue *sema_tensor_of(Sema *s, SVal v, Loc loc) {
  if (v.kind == SV_TENSOR)
    return v.t;
  assert(v.kind == SV_NUM);
  return ir_const(s->fn, v.num, loc);
}

// Where a tensor came from, for notes under shape errors.
static void note_origin(Sema *s, SVal v) {
  if (v.kind == SV_TENSOR && v.t->loc.file)
    diag_note(s->diag, v.t->loc, "%s comes from here",
              type_of(s, v.t->shape, false));
}

// Builds `op` over tensors after checking its shape rule; reports both
// shapes on failure.
SVal sema_build(Sema *s, Op op, SVal *args, Attr attr, Loc loc,
                const char *opname) {
  IrValue *in[MAX_ARGS];
  for (int i = 0; i < prims[op].arity; i++)
    in[i] = sema_tensor_of(s, args[i], loc);
  Shape out;
  bool outb;
  const char *why = ir_check(op, in, &attr, &out, &outb);
  if (why) {
    if (prims[op].arity == 2)
      diag_error(s->diag, loc, "%s: %s (%s and %s)", opname, why,
                 type_of(s, in[0]->shape, false),
                 type_of(s, in[1]->shape, false));
    else
      diag_error(s->diag, loc, "%s: %s (%s)", opname, why,
                 type_of(s, in[0]->shape, false));
    for (int i = 0; i < prims[op].arity; i++)
      note_origin(s, args[i]);
    return sval_poison();
  }
  return sval_tensor(ir_prim(s->fn, op, in, attr, loc), loc);
}

static double fold_binary(AstOp op, double a, double b) {
  switch (op) {
  case OPR_ADD: return a + b;
  case OPR_SUB: return a - b;
  case OPR_MUL: return a * b;
  case OPR_DIV: return a / b;
  case OPR_POW: return pow(a, b);
  default: unreachable();
  }
}

static double fold_unary(Op op, double x) {
  switch (op) {
  case OP_NEG: return -x;
  case OP_EXP: return exp(x);
  case OP_LOG: return log(x);
  case OP_SQRT: return sqrt(x);
  case OP_TANH: return tanh(x);
  case OP_SIGMOID: return 1 / (1 + exp(-x));
  case OP_RELU: return x > 0 ? x : 0;
  case OP_STEP: return x > 0;
  case OP_ABS: return fabs(x);
  case OP_SIGN: return (x > 0) - (x < 0);
  case OP_SIN: return sin(x);
  case OP_COS: return cos(x);
  case OP_FLOOR: return floor(x);
  case OP_DETACH: return x;
  default: unreachable();
  }
}

static bool is_value(Sema *s, SVal v, Loc loc, const char *what) {
  if (v.kind == SV_POISON)
    return false;
  if (v.kind == SV_NUM || v.kind == SV_TENSOR)
    return true;
  diag_error(s->diag, loc, "%s needs a number or a tensor, got %s", what,
             sval_describe(s, v));
  return false;
}

static SVal eval_binary(Sema *s, Frame *f, Ast *e) {
  static const Op ops[] = {[OPR_ADD] = OP_ADD, [OPR_SUB] = OP_SUB,
                           [OPR_MUL] = OP_MUL, [OPR_DIV] = OP_DIV,
                           [OPR_POW] = OP_POW, [OPR_MATMUL] = OP_MATMUL};
  SVal v[2] = {sema_eval(s, f, e->a), sema_eval(s, f, e->b)};
  const char *opname = arena_printf(s->arena, "'%s'", ast_op_str(e->op));
  if (!is_value(s, v[0], e->a->loc, opname) |
      !is_value(s, v[1], e->b->loc, opname))
    return sval_poison();
  if (e->op == OPR_MATMUL) {
    if (v[0].kind != SV_TENSOR || v[1].kind != SV_TENSOR) {
      diag_error(s->diag, e->loc, "matmul: both operands must be tensors");
      return sval_poison();
    }
    return sema_build(s, OP_MATMUL, v, (Attr){0}, e->loc, "matmul");
  }
  if (v[0].kind == SV_NUM && v[1].kind == SV_NUM)
    return sval_num(fold_binary(e->op, v[0].num, v[1].num), e->loc);
  return sema_build(s, ops[e->op], v, (Attr){0}, e->loc, opname);
}

static SVal apply_ew1(Sema *s, Op op, SVal x, Loc loc, const char *name) {
  if (!is_value(s, x, loc, name))
    return sval_poison();
  if (x.kind == SV_NUM)
    return sval_num(fold_unary(op, x.num), loc);
  return sema_build(s, op, &x, (Attr){0}, loc, name);
}

// ---- shapes from types ------------------------------------------------------------
// Renders a type as written, e.g. "f32[n, units]", for messages.
static const char *type_str(Sema *s, Ast *type) {
  if (type->dtype == DT_INT || type->dtype == DT_FLOAT)
    return dtype_str(type->dtype);
  char *out = arena_printf(s->arena, "%s[", dtype_str(type->dtype));
  for (int i = 0; i < type->list.n; i++) {
    Ast *d = type->list.item[i];
    const char *txt = d->kind == AST_NAME  ? d->name
                      : d->kind == AST_NUM ? arena_printf(s->arena, "%g", d->num)
                                           : "...";
    out = arena_printf(s->arena, "%s%s%s", out, i ? ", " : "", txt);
  }
  return arena_printf(s->arena, "%s]", out);
}

// Source text of a small dimension expression, for messages ("c / groups").
static const char *dim_text(Sema *s, Ast *e) {
  switch (e->kind) {
  case AST_NAME: return e->name;
  case AST_NUM: return arena_printf(s->arena, "%g", e->num);
  case AST_BINARY:
    return arena_printf(s->arena, "%s %s %s", dim_text(s, e->a),
                        ast_op_str(e->op), dim_text(s, e->b));
  default: return "...";
  }
}

static bool eval_dim(Sema *s, Frame *f, Ast *e, int64_t *out) {
  SVal v = sema_eval(s, f, e);
  if (v.kind == SV_POISON)
    return false;
  if (v.kind != SV_NUM || v.num != floor(v.num) || v.num < 1 || v.num > 1e12) {
    const char *got = v.kind == SV_NUM ? arena_printf(s->arena, "%g", v.num)
                                       : sval_describe(s, v);
    if (f->call) {  // inside a layer: say it at the user's call
      const IrValue *input = NULL;  // the tensor argument, for the message
      for (Binding *b = f->vars; b && !input; b = b->next)
        if (b->val.kind == SV_TENSOR)
          input = b->val.t;
      diag_error(s->diag, f->call->loc,
                 "%s: dimension '%s' must be a positive integer, got %s%s%s%s",
                 f->call->name, dim_text(s, e), got,
                 input ? " (the input is " : "",
                 input ? type_of(s, input->shape, false) : "",
                 input ? ")" : "");
      if (input)
        diag_note(s->diag, input->loc, "%s comes from here",
                  type_of(s, input->shape, false));
    } else {
      diag_error(s->diag, e->loc,
                 "a dimension must be a positive integer, got %s", got);
    }
    return false;
  }
  *out = (int64_t)v.num;
  return true;
}

// A model is f32 or f64 as a whole: its input's type decides, and every
// tensor type in the model's own declaration must say the same. A layer's
// `f32` stands for the element type of the model that calls it (so the
// stdlib's layers, written in f32, serve f64 models too); a layer that
// says f64 needs an f64 model.
static bool check_dtype(Sema *s, Frame *f, Ast *type) {
  if (type->dtype == s->dtype || (type->dtype == DT_F32 && f && f->call))
    return true;
  diag_error(s->diag, type->loc,
             "%s tensor in an %s model: a model's tensors all have one "
             "element type",
             dtype_str(type->dtype), dtype_str(s->dtype));
  diag_note(s->diag, s->dtype_at, "the model's input makes it %s",
            dtype_str(s->dtype));
  return false;
}

// Tensors hold at most SHAPE_MAX_NUMEL elements (2^40, 4 TiB of floats), so
// element counts and byte sizes never overflow later phases.
static bool check_size(Sema *s, Shape sh, Loc loc) {
  double n = 1;
  for (int i = 0; i < sh.rank; i++)
    n *= (double)sh.dim[i];
  if (n <= SHAPE_MAX_NUMEL)
    return true;
  diag_error(s->diag, loc, "a tensor of %s (%.3g elements) is too large; the "
             "most is 2^40 elements", type_of(s, sh, false), n);
  return false;
}

// Evaluates a tensor type's dims in frame f (all names must be bound).
static bool eval_shape(Sema *s, Frame *f, Ast *type, Shape *out) {
  if (type->dtype == DT_INT || type->dtype == DT_FLOAT) {
    diag_error(s->diag, type->loc, "expected a tensor type such as f32[10]");
    return false;
  }
  if (!check_dtype(s, f, type))
    return false;
  if (type->list.n > MAX_RANK) {
    diag_error(s->diag, type->loc, "tensors have at most %d axes", MAX_RANK);
    return false;
  }
  *out = (Shape){.rank = type->list.n};
  bool ok = true;
  for (int i = 0; i < type->list.n; i++)
    ok &= eval_dim(s, f, type->list.item[i], &out->dim[i]);
  return ok && check_size(s, *out, type->loc);
}

// Binds a formal to its argument, checking its declared type and binding
// shape variables (a bare name not yet bound) from the argument's shape.
static bool bind_formal(Sema *s, Frame *callee, Ast *decl, Ast *formal,
                        SVal arg) {
  Ast *type = formal->a;
  if (arg.kind == SV_POISON) {
    frame_bind(s, callee, formal->name, arg);
    return false;
  }
  if (!type) {
    frame_bind(s, callee, formal->name, arg);
    return true;
  }
  if (type->dtype == DT_INT || type->dtype == DT_FLOAT) {
    bool is_int = type->dtype == DT_INT;
    if (arg.kind != SV_NUM || (is_int && arg.num != floor(arg.num))) {
      diag_error(s->diag, arg.loc, "%s: argument '%s' must be %s, got %s",
                 decl->name, formal->name, is_int ? "an integer" : "a number",
                 arg.kind == SV_NUM ? arena_printf(s->arena, "%g", arg.num)
                                    : sval_describe(s, arg));
      frame_bind(s, callee, formal->name, sval_poison());
      return false;
    }
    frame_bind(s, callee, formal->name, arg);
    return true;
  }
  if (!check_dtype(s, callee, type)) {
    frame_bind(s, callee, formal->name, sval_poison());
    return false;
  }
  const char *want = type_str(s, type);
  if (arg.kind != SV_TENSOR) {
    diag_error(s->diag, arg.loc, "%s expects %s for '%s' but got %s",
               decl->name, want, formal->name, sval_describe(s, arg));
    frame_bind(s, callee, formal->name, sval_poison());
    return false;
  }
  Shape got = arg.t->shape;
  bool ok = got.rank == type->list.n;
  for (int i = 0; ok && i < type->list.n; i++) {
    Ast *d = type->list.item[i];
    // (a declaration of the same name does not count: declarations are
    // functions, never sizes, and a model called `n` must not break the
    // stdlib's `x: f32[n]`)
    if (d->kind == AST_NAME && !frame_lookup(callee, d->name)) {
      frame_bind(s, callee, d->name, sval_num((double)got.dim[i], d->loc));
      continue;
    }
    int64_t want_dim;
    if (!eval_dim(s, callee, d, &want_dim)) {
      frame_bind(s, callee, formal->name, sval_poison());
      return false;
    }
    ok = want_dim == got.dim[i];
  }
  if (!ok) {
    const char *hint = got.rank > 1 && type->list.n == 1
                           ? "; did you mean to flatten?"
                           : "";
    diag_error(s->diag, arg.loc, "%s expects %s but got %s%s", decl->name,
               want, type_of(s, got, false), hint);
    note_origin(s, arg);
    diag_note(s->diag, formal->loc, "'%s' is declared here", formal->name);
    frame_bind(s, callee, formal->name, sval_poison());
    return false;
  }
  frame_bind(s, callee, formal->name, arg);
  return true;
}

// ---- layer instantiation ---------------------------------------------------------
static const char *instance_name(Sema *s, Frame *f, const char *layer) {
  const char *key = arena_printf(s->arena, "%s/%s", f->prefix, layer);
  Counter *c = NULL;
  for (int i = 0; i < s->counters.n && !c; i++)
    if (strcmp(((Counter *)s->counters.item[i])->key, key) == 0)
      c = s->counters.item[i];
  if (!c) {
    c = arena_alloc(s->arena, sizeof *c);
    c->key = key;
    ptrvec_push(s->arena, &s->counters, c);
  }
  c->n++;
  if (!f->prefix[0])
    return arena_printf(s->arena, "%s_%d", layer, c->n);
  return arena_printf(s->arena, "%s.%s_%d", f->prefix, layer, c->n);
}

static void fan_of(Shape sh, int64_t *fan_in, int64_t *fan_out) {
  if (sh.rank == 0) {
    *fan_in = *fan_out = 1;
  } else if (sh.rank <= 2) {
    *fan_in = sh.dim[0];
    *fan_out = sh.dim[sh.rank - 1];
  } else {  // [out, in, kernel...], as convolution weights are laid out
    int64_t field = 1;
    for (int i = 2; i < sh.rank; i++)
      field *= sh.dim[i];
    *fan_in = sh.dim[1] * field;
    *fan_out = sh.dim[0] * field;
  }
}

ModelUse *sema_model_use(Sema *s, const char *name) {
  for (int i = 0; i < s->model_uses.n; i++) {
    ModelUse *u = s->model_uses.item[i];
    if (strcmp(u->name, name) == 0)
      return u;
  }
  ModelUse *u = arena_alloc(s->arena, sizeof *u);
  u->name = name;
  ptrvec_push(s->arena, &s->model_uses, u);
  return u;
}

static void model_use_add(Sema *s, Frame *f, IrParam *p) {
  for (int i = 0; i < f->nmodels; i++) {
    PtrVec *v = &f->models[i]->params;
    bool seen = false;
    for (int k = 0; k < v->n && !seen; k++)
      seen = v->item[k] == p;
    if (!seen)
      ptrvec_push(s->arena, v, p);
  }
}

static void declare_param(Sema *s, Frame *f, Ast *st) {
  Shape shape;
  if (s->fn != s->m->fn) {
    diag_error(s->diag, st->loc, "%s can only be declared in layers and models",
               st->kind == AST_BUFFER ? "buffers" : "parameters");
    return;
  }
  if (!eval_shape(s, f, st->a, &shape)) {
    frame_bind(s, f, st->name, sval_poison());
    return;
  }
  SVal init = st->b ? sema_eval(s, f, st->b) : init_value(INIT_ZEROS, 0, 0, st->loc);
  if (init.kind == SV_NUM)
    init = init_value(INIT_CONSTANT, init.num, 0, init.loc);
  if (init.kind != SV_INIT) {
    if (init.kind != SV_POISON)
      diag_error(s->diag, st->b->loc,
                 "param '%s': expected an initializer such as he_normal or a "
                 "number, got %s",
                 st->name, sval_describe(s, init));
    frame_bind(s, f, st->name, sval_poison());
    return;
  }
  const char *name = f->prefix[0]
                         ? arena_printf(s->arena, "%s.%s", f->prefix, st->name)
                         : st->name;
  bool buffer = st->kind == AST_BUFFER;
  if (s->step_params && f->nmodels == 0) {
    diag_error(s->diag, st->loc,
               "%s belong to models: a step can call a layer with "
               "parameters only inside a model",
               buffer ? "buffers" : "parameters");
    frame_bind(s, f, st->name, sval_poison());
    return;
  }
  for (int i = 0; i < s->m->params.n; i++) {
    IrParam *q = s->m->params.item[i];
    if (strcmp(q->name, name) != 0)
      continue;
    if ((s->eval_pass || f->shared) && q->buffer == buffer &&
        shape_eq(q->shape, shape)) {
      // The inference graph reads the training graph's parameters, and
      // every call of a model reads the same ones.
      model_use_add(s, f, q);
      frame_bind(s, f, st->name, sval_tensor(q->value, st->loc));
      return;
    }
    diag_error(s->diag, st->loc, "%s '%s' is declared twice",
               buffer ? "buffer" : "parameter", name);
    return;
  }
  IrParam *p = arena_alloc(s->arena, sizeof *p);
  p->name = name;
  p->shape = shape;
  p->init = init.init;
  p->loc = st->loc;
  p->buffer = buffer;
  fan_of(shape, &p->fan_in, &p->fan_out);
  p->value = ir_leaf(s->m->fn, OP_PARAM, shape, false, s->m->params.n, name,
                     st->loc);
  ptrvec_push(s->arena, &s->m->params, p);
  model_use_add(s, f, p);
  frame_bind(s, f, st->name, sval_tensor(p->value, st->loc));
}

// `update NAME = expr`: the buffer NAME takes expr's value after each
// training step (the inference graph never updates buffers).
static void buffer_update(Sema *s, Frame *f, Ast *st) {
  Binding *b = frame_lookup(f, st->name);
  IrParam *p = NULL;
  for (int i = 0; b && b->val.kind == SV_TENSOR && i < s->m->params.n; i++) {
    IrParam *q = s->m->params.item[i];
    if (q->buffer && q->value == b->val.t)
      p = q;
  }
  if (!p) {
    if (!b || b->val.kind != SV_POISON)
      diag_error(s->diag, st->loc, "'%s' is not a buffer of this layer",
                 st->name);
    return;
  }
  if (!s->training)
    return;
  SVal v = sema_eval(s, f, st->a);
  if (v.kind == SV_POISON)
    return;
  if (v.kind == SV_NUM)
    v = sval_tensor(ir_shaped(s->fn, OP_BROADCAST,
                              ir_const(s->fn, v.num, st->a->loc), p->shape,
                              false, st->a->loc),
                    v.loc);
  if (v.kind != SV_TENSOR || v.t->batched || !shape_eq(v.t->shape, p->shape)) {
    diag_error(s->diag, st->a->loc,
               "update '%s': the buffer is %s but the new value is %s",
               st->name, type_of(s, p->shape, false),
               sval_describe(s, v));
    return;
  }
  for (int i = 0; i < s->m->updates.n; i++)
    if (((IrUpdate *)s->m->updates.item[i])->param == p->value->attr.index) {
      diag_error(s->diag, st->loc, "buffer '%s' is updated twice", p->name);
      return;
    }
  IrUpdate *u = arena_alloc(s->arena, sizeof *u);
  u->param = p->value->attr.index;
  u->value = v.t;
  u->loc = st->loc;
  ptrvec_push(s->arena, &s->m->updates, u);
}

// `penalty expr`: a scalar added to the training objective (one number per
// example, averaged with the loss, or one number for the whole batch).
static void add_penalty(Sema *s, Frame *f, Ast *st) {
  if (!s->training)
    return;
  SVal v = sema_eval(s, f, st->a);
  if (v.kind == SV_POISON)
    return;
  if (v.kind != SV_TENSOR || v.t->shape.rank != 0) {
    diag_error(s->diag, st->a->loc,
               "a penalty must be a scalar tensor (one number per example or "
               "per batch), got %s",
               sval_describe(s, v));
    return;
  }
  ptrvec_push(s->arena, &s->penalties, v.t);
}

// Evaluates statements in order; returns whether a `return` ran (its value
// in *ret). `if` bodies run in the same frame.
static bool eval_stmts(Sema *s, Frame *f, const AstList *body, SVal *ret) {
  for (int i = 0; i < body->n; i++) {
    Ast *st = body->item[i];
    if (!st)
      continue;  // a statement the parser already reported
    switch (st->kind) {
    case AST_PARAM:
    case AST_BUFFER:
      declare_param(s, f, st);
      break;
    case AST_ASSIGN:
      frame_bind(s, f, st->name, sema_eval(s, f, st->a));
      break;
    case AST_BUFFER_UPDATE:
      buffer_update(s, f, st);
      break;
    case AST_PENALTY:
      add_penalty(s, f, st);
      break;
    case AST_IF: {
      SVal c = sema_eval(s, f, st->a);
      if (c.kind != SV_NUM) {
        if (c.kind != SV_POISON)
          diag_error(s->diag, st->a->loc,
                     "an if condition must be known at compile time (a "
                     "number, or 'training'), got %s",
                     sval_describe(s, c));
        *ret = sval_poison();
        return true;
      }
      if (eval_stmts(s, f, c.num != 0 ? &st->body : &st->list, ret))
        return true;
      break;
    }
    case AST_RETURN:
      if (i + 1 < body->n && body->item[i + 1])
        diag_error(s->diag, ((Ast *)body->item[i + 1])->loc,
                   "statement after 'return' is never reached");
      *ret = sema_eval(s, f, st->a);
      return true;
    default:
      diag_error(s->diag, st->loc, "this statement is not allowed here");
    }
  }
  return false;
}

// Evaluates a declaration's statements; returns what `return` returns.
SVal sema_eval_body(Sema *s, Frame *f, Ast *decl) {
  SVal r;
  if (eval_stmts(s, f, &decl->body, &r))
    return r;
  diag_error(s->diag, decl->loc, "'%s' has no return statement", decl->name);
  return sval_poison();
}

static SVal check_result(Sema *s, Frame *f, Ast *decl, SVal r);

// A model's several results `-> (mu: f32[20], logvar: f32[20])`: a record
// with exactly those names, each of its declared shape.
static SVal check_results(Sema *s, Frame *f, Ast *decl, SVal r) {
  Ast *res = decl->ret;
  if (r.kind != SV_RECORD) {
    diag_error(s->diag, r.loc,
               "%s declares %d named results but returns %s; return them "
               "as (%s = ..., ...)",
               decl->name, res->formals.n, sval_describe(s, r),
               ((Ast *)res->formals.item[0])->name);
    return sval_poison();
  }
  bool ok = r.nitems == res->formals.n;
  for (int i = 0; ok && i < res->formals.n; i++)
    ok = strcmp(r.fields[i], ((Ast *)res->formals.item[i])->name) == 0;
  if (!ok) {
    diag_error(s->diag, r.loc,
               "%s must return its declared results in order", decl->name);
    diag_note(s->diag, res->loc, "declared here");
    return sval_poison();
  }
  for (int i = 0; i < r.nitems; i++) {
    Ast *formal = res->formals.item[i];
    Ast one = {.kind = AST_MODEL, .name = arena_printf(s->arena, "%s.%s",
                                                       decl->name,
                                                       formal->name),
               .loc = decl->loc, .ret = formal->a};
    if (!formal->a) {
      diag_error(s->diag, formal->loc, "result '%s' needs a type",
                 formal->name);
      return sval_poison();
    }
    r.items[i] = check_result(s, f, &one, r.items[i]);
    if (r.items[i].kind == SV_POISON)
      return sval_poison();
  }
  return r;
}

// Checks a result against the declaration's `-> type`.
static SVal check_result(Sema *s, Frame *f, Ast *decl, SVal r) {
  if (!decl->ret || r.kind == SV_POISON)
    return r;
  if (decl->ret->kind == AST_RESULTS)
    return check_results(s, f, decl, r);
  Shape want;
  if (!eval_shape(s, f, decl->ret, &want))
    return sval_poison();
  if (r.kind != SV_TENSOR || !shape_eq(r.t->shape, want)) {
    diag_error(s->diag, r.loc, "%s returns %s but declares %s", decl->name,
               r.kind == SV_TENSOR ? type_of(s, r.t->shape, false)
                                   : sval_describe(s, r),
               type_of(s, want, false));
    diag_note(s->diag, decl->ret->loc, "declared here");
    return sval_poison();
  }
  return r;
}

// A model called again numbers its layers from 1 again: forgets the
// instance counters under its prefix.
static void model_counters_reset(Sema *s, const char *prefix) {
  size_t n = strlen(prefix);
  for (int i = 0; i < s->counters.n; i++) {
    Counter *c = s->counters.item[i];
    if (strncmp(c->key, prefix, n) == 0 &&
        (c->key[n] == '/' || c->key[n] == '.'))
      c->n = 0;
  }
}

static SVal instantiate(Sema *s, Frame *f, Ast *decl, SVal *pos, int npos,
                        const char **names, SVal *named, int nnamed,
                        Ast *call) {
  if (decl->kind == AST_OPTIMIZER) {
    diag_error(s->diag, call->loc,
               "'%s' is an optimizer; use it as 'optimizer = %s(...)' in a "
               "train block",
               decl->name, decl->name);
    return sval_poison();
  }
  if (f->depth >= MAX_DEPTH) {
    diag_error(s->diag, call->loc,
               "layers nested too deeply (is '%s' recursive?)", decl->name);
    return sval_poison();
  }
  int nformals = decl->formals.n;
  if (npos > nformals) {
    diag_error(s->diag, call->loc,
               "%s takes %d argument%s but %d were given", decl->name,
               nformals, nformals == 1 ? "" : "s", npos);
    return sval_poison();
  }
  for (int i = 0; i < nnamed; i++) {
    int k = -1;
    for (int j = 0; j < nformals; j++)
      if (strcmp(((Ast *)decl->formals.item[j])->name, names[i]) == 0)
        k = j;
    if (k < 0) {
      diag_error(s->diag, named[i].loc, "%s has no argument named '%s'",
                 decl->name, names[i]);
      return sval_poison();
    }
    if (k < npos) {
      diag_error(s->diag, named[i].loc, "%s: argument '%s' is given twice",
                 decl->name, names[i]);
      return sval_poison();
    }
  }
  // Every layer call is an instance (dense_1, maxpool2d_1) that names its
  // parameters and gets a row in the summary; losses are plain functions.
  // A model is one set of parameters whatever calls it: its instance is
  // its name (the train block's model has none), and the layers inside
  // are numbered afresh at each call, so each call finds the same ones.
  bool model = decl->kind == AST_MODEL;
  bool layer = decl->kind != AST_LOSS && !model;
  const char *prefix = layer ? instance_name(s, f, decl->name) : f->prefix;
  if (model) {
    prefix = decl == s->train_model ? "" : decl->name;
    model_counters_reset(s, prefix);
  }
  Frame callee = {.prefix = prefix,
                  .call = call,
                  .depth = f->depth + 1,
                  .layer_depth = f->layer_depth + (layer ? 1 : 0),
                  .nmodels = f->nmodels,
                  .shared = f->shared || model};
  memcpy(callee.models, f->models, sizeof f->models);
  if (model && callee.nmodels < MAX_MODEL_NEST)
    callee.models[callee.nmodels++] = sema_model_use(s, decl->name);
  bool ok = true;
  for (int j = 0; j < nformals; j++) {
    Ast *formal = decl->formals.item[j];
    SVal arg = sval_poison();
    bool given = false;
    if (j < npos) {
      arg = pos[j];
      given = true;
    }
    for (int i = 0; i < nnamed; i++)
      if (strcmp(formal->name, names[i]) == 0)
        arg = named[i], given = true;
    if (!given) {
      if (!formal->b) {
        diag_error(s->diag, call->loc, "%s: missing argument '%s'",
                   decl->name, formal->name);
        diag_note(s->diag, formal->loc, "'%s' is declared here", formal->name);
        return sval_poison();
      }
      arg = sema_eval(s, &callee, formal->b);
    }
    ok &= bind_formal(s, &callee, decl, formal, arg);
  }
  if (!ok)
    return sval_poison();
  int first_param = s->m->params.n, errors = s->diag->nerrors;
  Ast *top = s->top_call;
  if (s->in_model && f->depth == 0)
    s->top_call = call;
  int first_value = s->fn->values.n;
  SVal r = check_result(s, &callee, decl, sema_eval_body(s, &callee, decl));
  s->top_call = top;
  // The values this instance (or loss) made, for --check-numerics'
  // messages and --emit=dot's clusters; inner instances named theirs
  // already.
  for (int i = first_value; i < s->fn->values.n; i++) {
    IrValue *v = s->fn->values.item[i];
    if (!v->layer)
      v->layer = layer ? callee.prefix : decl->name, v->layer_call = call->loc;
  }
  // An error inside a stdlib layer points into the stdlib; say which call.
  Loc last = s->diag->last_error;
  bool at_call = last.line == call->loc.line && last.col == call->loc.col &&
                 last.file == call->loc.file;
  if (s->diag->nerrors > errors && !at_call && decl->loc.file &&
      strncmp(decl->loc.file, "<stdlib>", 8) == 0)
    diag_note(s->diag, call->loc, "in '%s' called here", decl->name);
  if (layer && s->layers && s->in_model && r.kind == SV_TENSOR) {
    LayerInfo *li = arena_alloc(s->arena, sizeof *li);
    li->name = callee.prefix;
    li->shape = r.t->shape;
    li->depth = f->layer_depth;
    for (int i = first_param; i < s->m->params.n; i++) {
      IrParam *p = s->m->params.item[i];
      if (!p->buffer &&
          strncmp(p->name, callee.prefix, strlen(callee.prefix)) == 0 &&
          strchr(p->name + strlen(callee.prefix) + 1, '.') == NULL)
        li->nparams += shape_numel(p->shape);
    }
    ptrvec_push(s->arena, s->layers, li);
  }
  if (r.kind != SV_POISON)
    r.loc = call->loc;
  return r;
}

// The shape a draw takes: a tensor's (`like`), or a list of dimensions
// (per example, with the batch axis).
static bool draw_shape(Sema *s, SVal v, const char *name, Shape *sh,
                       bool *batched) {
  if (v.kind == SV_TENSOR) {
    *sh = v.t->shape;
    *batched = v.t->batched;
    return true;
  }
  if (v.kind == SV_LIST && v.nitems <= MAX_RANK) {
    sh->rank = v.nitems;
    for (int i = 0; i < v.nitems; i++) {
      if (v.items[i].kind != SV_NUM || v.items[i].num < 1 ||
          v.items[i].num != floor(v.items[i].num) || v.items[i].num > 1e9) {
        diag_error(s->diag, v.items[i].loc,
                   "%s: a dimension must be a positive integer", name);
        return false;
      }
      sh->dim[i] = (int64_t)v.items[i].num;
    }
    *batched = true;
    return true;
  }
  diag_error(s->diag, v.loc,
             "%s: expected a tensor to take the shape of, or a list of "
             "dimensions such as [64], got %s",
             name, sval_describe(s, v));
  return false;
}

// A number argument of a builtin, or NAN after reporting.
static double number_arg(Sema *s, SVal v, const char *name, const char *what) {
  if (v.kind == SV_NUM)
    return v.num;
  diag_error(s->diag, v.loc, "%s: %s must be a number, got %s", name, what,
             sval_describe(s, v));
  return NAN;
}

// Draws (uniform, normal, bernoulli), batch statistics and in_range.
static SVal apply_stat(Sema *s, const Builtin *b, SVal *pos, int npos,
                       const char **names, SVal *named, int nnamed,
                       Ast *call) {
  (void)names, (void)named;
  int want = b->kind == BK_RANGE ? 4 : b->kind == BK_DRAW ? 2 : 1;
  int most = b->kind == BK_BATCH ? 2 : want;
  if (npos < want || npos > most || nnamed) {
    diag_error(s->diag, call->loc, "%s takes %d argument%s", b->name, want,
               want == 1 ? "" : "s");
    return sval_poison();
  }
  if (b->kind == BK_RANGE) {
    double x = number_arg(s, pos[0], b->name, "the value");
    double lo = number_arg(s, pos[1], b->name, "the lower bound");
    double hi = number_arg(s, pos[2], b->name, "the upper bound");
    if (isnan(x) || isnan(lo) || isnan(hi))
      return sval_poison();
    if (pos[3].kind != SV_STR) {
      diag_error(s->diag, pos[3].loc, "in_range: expected a name string");
      return sval_poison();
    }
    if (!(x >= lo && x < hi)) {
      diag_error(s->diag, pos[0].loc, "%s must be in [%g, %g), got %g",
                 pos[3].str, lo, hi, x);
      return sval_poison();
    }
    return pos[0];
  }
  if (b->kind == BK_BATCH) {
    SVal x = pos[0];
    if (x.kind != SV_TENSOR || !x.t->batched) {
      diag_error(s->diag, x.loc,
                 "batch_mean needs a value with a batch axis, got %s",
                 sval_describe(s, x));
      return sval_poison();
    }
    if (s->training && s->in_model && !s->batch_stats_at.file)
      s->batch_stats_at = s->top_call ? s->top_call->loc : call->loc;
    if (npos == 1)
      return sema_build(s, OP_BATCH_MEAN, pos, (Attr){0}, call->loc, b->name);
    // batch_mean(x, [c, 1, 1]): the mean over the batch and over the axes
    // where the target has extent 1 (a per-channel statistic).
    Shape to;
    bool batched;
    if (!draw_shape(s, pos[1], b->name, &to, &batched))
      return sval_poison();
    Attr attr = {.shape = to, .batched = false};
    SVal sum = sema_build(s, OP_SUM_TO, pos, attr, call->loc, b->name);
    if (sum.kind == SV_POISON)
      return sum;
    double per = (double)shape_numel(x.t->shape) / (double)shape_numel(to);
    IrValue *n = ir_binary(s->fn, OP_MUL,
                           ir_leaf(s->fn, OP_BATCH_SIZE, shape_scalar(), false,
                                   0, NULL, call->loc),
                           ir_const(s->fn, per, call->loc), call->loc);
    return sval_tensor(ir_binary(s->fn, OP_DIV, sum.t, n, call->loc),
                       call->loc);
  }
  // A draw: fresh numbers at every training step.
  double p = 0;
  SVal like = pos[npos - 1];
  if (b->kind == BK_DRAW) {
    p = number_arg(s, pos[0], b->name, "the probability");
    if (isnan(p))
      return sval_poison();
    if (p < 0 || p > 1) {
      diag_error(s->diag, pos[0].loc,
                 "bernoulli: the probability must be in [0, 1], got %g", p);
      return sval_poison();
    }
  }
  Shape sh;
  bool batched;
  if (!draw_shape(s, like, b->name, &sh, &batched))
    return sval_poison();
  Op op = b->kind == BK_DRAW          ? OP_RAND_BERNOULLI
          : b->op == INIT_UNIFORM     ? OP_RAND_UNIFORM
                                      : OP_RAND_NORMAL;
  Attr attr = {.shape = sh, .batched = batched, .num = p,
               .index = s->draws++};
  if (s->draws > s->m->ndraws)
    s->m->ndraws = s->draws;
  return sval_tensor(
      ir_prim(s->fn, op, (IrValue *[MAX_ARGS]){0}, attr, call->loc),
      call->loc);
}

static SVal apply_builtin(Sema *s, const Builtin *b, SVal *pos, int npos,
                          const char **names, SVal *named, int nnamed,
                          Ast *call) {
  int want = b->kind == BK_EW2 ? 2 : b->kind == BK_INIT ? -1 : 1;
  if (b->kind == BK_WINDOW)
    return sema_window(s, b->name, pos, npos, names, named, nnamed, call);
  if (b->kind == BK_TRAIN) {
    diag_error(s->diag, call->loc, "'%s' can only be used in a train block",
               b->name);
    return sval_poison();
  }
  if (b->kind == BK_DRAW || b->kind == BK_BATCH || b->kind == BK_RANGE ||
      (b->kind == BK_INIT && npos == 1 &&
       (pos[0].kind == SV_TENSOR || pos[0].kind == SV_LIST)))
    return apply_stat(s, b, pos, npos, names, named, nnamed, call);
  if (b->kind == BK_INIT) {
    int nargs = b->op == INIT_CONSTANT ? 1
                : (b->op == INIT_UNIFORM || b->op == INIT_NORMAL) ? 2 : 0;
    if (npos > nargs || nnamed) {
      diag_error(s->diag, call->loc, "%s takes %d argument%s", b->name, nargs,
                 nargs == 1 ? "" : "s");
      return sval_poison();
    }
    double a[2] = {b->a, b->b};
    for (int i = 0; i < npos; i++) {
      if (pos[i].kind != SV_NUM) {
        if (pos[i].kind != SV_POISON)
          diag_error(s->diag, pos[i].loc, "%s: expected a number, got %s",
                     b->name, sval_describe(s, pos[i]));
        return sval_poison();
      }
      a[i] = pos[i].num;
    }
    if (b->op == INIT_CONSTANT && npos == 0)
      a[0] = 0;
    return init_value(b->op, a[0], a[1], call->loc);
  }
  if (npos != want || nnamed) {
    diag_error(s->diag, call->loc, "%s takes %d argument%s", b->name, want,
               want == 1 ? "" : "s");
    return sval_poison();
  }
  switch (b->kind) {
  case BK_EW1:
    return apply_ew1(s, b->op, pos[0], call->loc, b->name);
  case BK_EW2:
    if (!is_value(s, pos[0], call->loc, b->name) ||
        !is_value(s, pos[1], call->loc, b->name))
      return sval_poison();
    if (pos[0].kind == SV_NUM && pos[1].kind == SV_NUM)
      return sval_num(b->op == OP_MAX ? fmax(pos[0].num, pos[1].num)
                                      : fmin(pos[0].num, pos[1].num),
                      call->loc);
    return sema_build(s, b->op, pos, (Attr){0}, call->loc, b->name);
  case BK_REDUCE:
    if (pos[0].kind == SV_POISON)
      return pos[0];
    if (pos[0].kind != SV_TENSOR) {
      diag_error(s->diag, call->loc, "%s needs a tensor, got %s", b->name,
                 sval_describe(s, pos[0]));
      return sval_poison();
    }
    return sema_build(s, b->op, pos, (Attr){0}, call->loc, b->name);
  case BK_FLATTEN:
    if (pos[0].kind == SV_POISON)
      return pos[0];
    if (pos[0].kind != SV_TENSOR) {
      diag_error(s->diag, call->loc, "flatten needs a tensor, got %s",
                 sval_describe(s, pos[0]));
      return sval_poison();
    }
    return sema_build(s, OP_RESHAPE, pos,
                      (Attr){.shape = shape_vec(shape_numel(pos[0].t->shape))},
                      call->loc, "flatten");
  default:
    unreachable();
  }
}

SVal sema_apply(Sema *s, Frame *f, SVal fn, SVal *pos, int npos,
                const char **names, SVal *named, int nnamed, Ast *call) {
  if (fn.kind == SV_POISON)
    return fn;
  for (int i = 0; i < npos; i++)
    if (pos[i].kind == SV_POISON)
      return pos[i];
  for (int i = 0; i < nnamed; i++)
    if (named[i].kind == SV_POISON)
      return named[i];
  if (fn.kind == SV_INIT) {  // `init(...)` of a bound initializer: no args
    diag_error(s->diag, call->loc, "an initializer cannot be called here");
    return sval_poison();
  }
  if (fn.kind != SV_FUNC) {
    diag_error(s->diag, call->loc, "'%s' is %s, not a function", call->name,
               sval_describe(s, fn));
    return sval_poison();
  }
  if (fn.decl)
    return instantiate(s, f, fn.decl, pos, npos, names, named, nnamed, call);
  return apply_builtin(s, &builtins[fn.builtin], pos, npos, names, named,
                       nnamed, call);
}

static SVal eval_call(Sema *s, Frame *f, Ast *e) {
  SVal fn;
  Binding *b = frame_lookup(f, e->name);
  if (b) {
    fn = b->val;
  } else if (sema_find_decl(s, e->name)) {
    fn = func_value(sema_find_decl(s, e->name), -1, e->loc);
  } else if (builtin_find(e->name) >= 0) {
    fn = func_value(NULL, builtin_find(e->name), e->loc);
  } else {
    unknown_name(s, f, e->name, e->loc, "function");
    return sval_poison();
  }
  if (e->list.n > MAX_CALL_ARGS) {
    diag_error(s->diag, e->loc, "too many arguments (at most %d)",
               MAX_CALL_ARGS);
    return sval_poison();
  }
  SVal pos[MAX_CALL_ARGS], named[MAX_CALL_ARGS];
  const char *names[MAX_CALL_ARGS];
  int npos = 0, nnamed = 0;
  for (int i = 0; i < e->list.n; i++) {
    Ast *a = e->list.item[i];
    if (a->kind == AST_NAMED_ARG) {
      names[nnamed] = a->name;
      named[nnamed++] = sema_eval(s, f, a->a);
    } else if (nnamed) {
      diag_error(s->diag, a->loc, "positional argument after a named one");
      return sval_poison();
    } else {
      pos[npos++] = sema_eval(s, f, a);
    }
  }
  return sema_apply(s, f, fn, pos, npos, names, named, nnamed, e);
}

// (mu = expr, logvar = expr): a model's several results.
static SVal eval_record(Sema *s, Frame *f, Ast *e) {
  SVal v = {.kind = SV_RECORD, .loc = e->loc, .builtin = -1};
  v.nitems = e->list.n;
  v.items = arena_alloc(s->arena, sizeof(SVal) * (size_t)(e->list.n + 1));
  v.fields = arena_alloc(s->arena, sizeof(char *) * (size_t)(e->list.n + 1));
  for (int i = 0; i < e->list.n; i++) {
    Ast *it = e->list.item[i];
    for (int j = 0; j < i; j++)
      if (strcmp(v.fields[j], it->name) == 0) {
        diag_error(s->diag, it->loc, "result '%s' is given twice", it->name);
        return sval_poison();
      }
    v.fields[i] = it->name;
    v.items[i] = sema_eval(s, f, it->a);
    if (v.items[i].kind == SV_POISON)
      return sval_poison();
  }
  return v;
}

// r.name: one of a model's results.
static SVal eval_field(Sema *s, Frame *f, Ast *e) {
  SVal r = sema_eval(s, f, e->a);
  if (r.kind == SV_POISON)
    return r;
  if (r.kind != SV_RECORD) {
    diag_error(s->diag, e->loc, "'.%s': %s has no named results", e->name,
               sval_describe(s, r));
    return sval_poison();
  }
  for (int i = 0; i < r.nitems; i++)
    if (strcmp(r.fields[i], e->name) == 0) {
      SVal v = r.items[i];
      v.loc = e->loc;
      return v;
    }
  char known[256] = "";
  for (int i = 0; i < r.nitems; i++)
    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
             i ? ", " : "", r.fields[i]);
  diag_error(s->diag, e->loc, "no result named '%s' (the results are %s)",
             e->name, known);
  return sval_poison();
}

static SVal eval_list(Sema *s, Frame *f, Ast *e) {
  SVal v = {.kind = SV_LIST, .loc = e->loc, .builtin = -1};
  v.nitems = e->list.n;
  v.items = arena_alloc(s->arena, sizeof(SVal) * (size_t)(e->list.n + 1));
  for (int i = 0; i < e->list.n; i++) {
    v.items[i] = sema_eval(s, f, e->list.item[i]);
    if (v.items[i].kind == SV_POISON)
      return sval_poison();
  }
  return v;
}

SVal sema_eval(Sema *s, Frame *f, Ast *e) {
  if (!e)
    return sval_poison();
  switch (e->kind) {
  case AST_NUM:
    return sval_num(e->num, e->loc);
  case AST_STR:
    return (SVal){.kind = SV_STR, .str = e->name, .loc = e->loc, .builtin = -1};
  case AST_NAME:
    return eval_name(s, f, e);
  case AST_BINARY:
    return eval_binary(s, f, e);
  case AST_UNARY:
    return apply_ew1(s, OP_NEG, sema_eval(s, f, e->a), e->loc, "'-'");
  case AST_CALL:
    return eval_call(s, f, e);
  case AST_LIST:
    return eval_list(s, f, e);
  case AST_RECORD:
    return eval_record(s, f, e);
  case AST_FIELD:
    return eval_field(s, f, e);
  default:
    diag_error(s->diag, e->loc, "expected an expression");
    return sval_poison();
  }
}

double sema_number(Sema *s, Frame *f, Ast *e, const char *what,
                   double fallback) {
  SVal v = sema_eval(s, f, e);
  if (v.kind == SV_NUM)
    return v.num;
  if (v.kind != SV_POISON)
    diag_error(s->diag, e->loc, "%s must be a number, got %s", what,
               sval_describe(s, v));
  return fallback;
}

// ---- the model -------------------------------------------------------------------
static Ast *find_in_file(AstFile *f, AstKind kind, const char *name) {
  Ast *found = NULL;
  for (int i = 0; i < f->decls.n; i++) {
    Ast *d = f->decls.item[i];
    if (d->kind == kind && (!name || strcmp(d->name, name) == 0))
      found = d;
    if (found && kind == AST_TRAIN)
      return found;  // the first train block
  }
  return found;
}

static IrValue *lower_model(Sema *s, Ast *model) {
  if (model->formals.n != 1) {
    diag_error(s->diag, model->loc,
               "model '%s' must take exactly one input, like (x: f32[784])",
               model->name);
    return NULL;
  }
  Ast *x = model->formals.item[0];
  if (!x->a || x->a->dtype == DT_INT || x->a->dtype == DT_FLOAT) {
    diag_error(s->diag, x->loc,
               "the model input '%s' needs a tensor type, like f32[784]",
               x->name);
    return NULL;
  }
  Frame f = {.prefix = "", .shared = true, .nmodels = 1};
  f.models[0] = sema_model_use(s, model->name);
  s->dtype = s->m->dtype = s->fn->dtype = x->a->dtype;
  s->dtype_at = x->a->loc;
  Shape in;
  if (!eval_shape(s, &f, x->a, &in))
    return NULL;
  if (!s->eval_pass)
    s->m->input = ir_leaf(s->fn, OP_INPUT, in, true, 0, x->name, x->loc);
  frame_bind(s, &f, x->name, sval_tensor(s->m->input, x->loc));
  s->in_model = true;
  SVal r = check_result(s, &f, model, sema_eval_body(s, &f, model));
  s->in_model = false;
  if (r.kind == SV_POISON)
    return NULL;
  if (r.kind != SV_TENSOR || !r.t->batched) {
    diag_error(s->diag, r.loc,
               "the model's result must be a tensor computed from its input, "
               "got %s",
               r.kind == SV_TENSOR ? "a value independent of the input"
                                   : sval_describe(s, r));
    return NULL;
  }
  return r.t;
}

// Trainable parameters first, then buffers (both in declaration order), so
// gradients and optimizer state cover params[0, ntrainable); PARAM leaves
// and updates follow their parameter's new index.
static void params_order(IrModule *m) {
  int n = m->params.n, k = 0;
  IrParam **sorted = arena_alloc(m->fn->arena, sizeof *sorted * (size_t)(n + 1));
  int *index = arena_alloc(m->fn->arena, sizeof *index * (size_t)(n + 1));
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      IrParam *p = m->params.item[i];
      if (p->buffer == (pass == 1)) {
        index[i] = k;
        sorted[k++] = p;
      }
    }
  for (int i = 0; i < n; i++) {
    m->params.item[i] = sorted[i];
    if (!sorted[i]->buffer)
      m->ntrainable = i + 1;
  }
  for (int i = 0; i < m->fn->values.n; i++) {
    IrValue *v = m->fn->values.item[i];
    if (v->op == OP_PARAM)
      v->attr.index = index[v->attr.index];
  }
  for (int i = 0; i < m->updates.n; i++) {
    IrUpdate *u = m->updates.item[i];
    u->param = index[u->param];
  }
}

SemaResult sema_lower(Ctx *ctx, Program *prog) {
  SemaResult res = {0};
  Sema s = {.ctx = ctx, .arena = ctx->arena, .diag = &ctx->diag, .prog = prog,
            .layers = &res.layers};
  AstFile *main_file = NULL;
  for (int i = 0; i < prog->files.n; i++) {
    AstFile *f = prog->files.item[i];
    if (prog->main_path && strcmp(f->path, prog->main_path) == 0)
      main_file = f;
  }
  if (!main_file)
    return res;
  Ast *train = find_in_file(main_file, AST_TRAIN, prog->train_name);
  Ast *model = NULL;
  Loc where = {main_file->path, 1, 1};
  if (!train && prog->train_name) {
    diag_error(s.diag, where, "no 'train %s' block in this file (--train)",
               prog->train_name);
    return res;
  }
  if (train) {
    Ast *d = sema_find_decl(&s, train->name);
    if (!d || d->kind != AST_MODEL) {
      if (d)
        diag_error(s.diag, train->loc, "'%s' is not a model", train->name);
      else
        unknown_name(&s, NULL, train->name, train->loc, "model");
      return res;
    }
    model = d;
  } else {
    model = find_in_file(main_file, AST_MODEL, NULL);
    if (!model) {
      diag_error(s.diag, where, "no model or train block in this file");
      return res;
    }
  }
  IrModule *m = arena_alloc(ctx->arena, sizeof *m);
  char *dir = arena_strdup(ctx->arena, main_file->path);
  m->source_dir = arena_strdup(ctx->arena, dirname(dir));
  m->name = model->name;
  m->fn = ir_fn_new(ctx->arena);
  m->train.batch = 32;
  m->train.epochs = 1;
  m->train.seed = 1;
  m->train.threshold = 0.5;
  s.m = m;
  s.fn = m->fn;
  s.train_model = model;
  // The training graph, then (if that went well) the inference graph: the
  // same source lowered with `training` = 0, reading the same parameters.
  s.training = true;
  IrValue *out = lower_model(&s, model);
  IrValue *eval_out = NULL;
  if (out && ctx->diag.nerrors == 0) {
    s.training = false;
    s.eval_pass = true;
    s.counters = (PtrVec){0};
    s.layers = NULL;
    s.draws = 0;
    m->fn->share = true;
    eval_out = lower_model(&s, model);
  }
  if (out && eval_out) {
    m->output = out;
    m->eval.output = eval_out;
    if (train)
      sema_train(&s, train, out, eval_out);
  }
  m->fn->share = false;
  params_order(m);
  if (m->nsteps == 1 && !s.step_params) {
    // the train block's one step updates every parameter
    IrStep *st = &m->steps[0];
    st->nparams = m->ntrainable;
    st->params =
        arena_alloc(ctx->arena, sizeof(int) * (size_t)(st->nparams + 1));
    for (int i = 0; i < st->nparams; i++)
      st->params[i] = i;
  }
  for (int k = 0; s.step_params && k < m->nsteps; k++) {
    // `step` blocks: the parameters their `over` named, by final index
    IrStep *st = &m->steps[k];
    PtrVec *ps = &s.step_params[k];
    st->nparams = ps->n;
    st->params = arena_alloc(ctx->arena, sizeof(int) * (size_t)(ps->n + 1));
    for (int i = 0; i < ps->n; i++)
      st->params[i] = ((IrParam *)ps->item[i])->value->attr.index;
  }
  // Any value too large (a product of two large operands, say) is reported
  // once, at the first that is.
  for (int i = 0; ctx->diag.nerrors == 0 && i < m->fn->values.n; i++) {
    IrValue *v = m->fn->values.item[i];
    if (!check_size(&s, v->shape, v->loc))
      break;
  }
  if (ctx->diag.nerrors == 0)
    res.module = m;
  return res;
}
