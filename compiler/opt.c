// opt.c — IR simplification and element-wise fusion (see opt.h).
//
// Consumes an IrModule after grad (or before it: nothing here needs the
// gradients); rewrites m->fn and the steps' optimizer programs in place
// and leaves every pointer that the module, its parameters and its optimizer hold pointing at a live
// value of the right function. One simplify pass walks a function in
// topological order and, for each value, first resolves its arguments to
// their replacements, then tries the rewrites (constant folding, algebraic
// identities, log(softmax) -> log_softmax, step(x) -> step(relu(x)),
// f(broadcast(x)) -> broadcast(f(x)), broadcast(broadcast(x)) ->
// broadcast(x)), then common subexpression elimination; dead code
// elimination and renumbering follow. Passes repeat until nothing changes.
// Invariants: a rewrite never changes a value's shape or batched flag; it
// never changes results for finite inputs (folding uses eval.c, the
// semantics the tests check against; x*0 -> 0 assumes x finite; log_softmax
// differs from log(softmax) only by rounding, and by staying finite where
// softmax underflows; the others are exact for every input); and
// topological order is kept: new values are appended after their arguments.
//
// kernel_fuse then marks what codegen computes inside another value's
// kernel: single-use element-wise chains, and matmuls whose user starts an
// element-wise chain over the matmul's output (the matmul's epilogue).
#include <assert.h>
#include <math.h>
#include <string.h>

#include "eval.h"
#include "opt.h"

// ---- the pointers a module holds into each function -------------------------
// The slots are updated after each rewrite and are the roots of DCE. The
// leaves the module names (input, label, each PARAM) are roots too, so those
// pointers stay valid even when nothing reads the leaf.
typedef struct Slots {
  IrValue ***item;  // addresses of the module's pointers into one fn
  int n;
} Slots;

static void slots_add(Slots *s, IrValue **p) {
  if (*p)
    s->item[s->n++] = p;
}

// Roots of m->fn: input, label, both graphs' output, loss, objective and
// correct, every PARAM leaf, every gradient and every buffer update.
static Slots slots_main(IrModule *m) {
  int nreports = 0;
  for (int i = 0; i < m->nsteps; i++)
    nreports += 2 * m->steps[i].nreports;
  Slots s = {arena_alloc(m->fn->arena,
                         sizeof(IrValue **) *
                             (size_t)(11 + 2 * m->params.n + m->updates.n +
                                      2 * m->nsteps + nreports)),
             0};
  slots_add(&s, &m->input);
  slots_add(&s, &m->label);
  slots_add(&s, &m->output);
  slots_add(&s, &m->loss);
  for (int i = 0; i < m->nsteps; i++)
    slots_add(&s, &m->steps[i].objective);
  slots_add(&s, &m->correct);
  slots_add(&s, &m->eval.output);
  slots_add(&s, &m->eval.loss);
  slots_add(&s, &m->eval.objective);
  slots_add(&s, &m->eval.correct);
  slots_add(&s, &m->sample);
  for (int i = 0; i < m->nsteps; i++) {
    IrStep *st = &m->steps[i];
    slots_add(&s, &st->eval_objective);
    for (int k = 0; k < st->nreports; k++) {
      slots_add(&s, &st->report[k]);
      slots_add(&s, &st->eval_report[k]);
    }
  }
  for (int i = 0; i < m->updates.n; i++)
    slots_add(&s, &((IrUpdate *)m->updates.item[i])->value);
  for (int i = 0; i < m->params.n; i++) {
    IrParam *p = m->params.item[i];
    slots_add(&s, &p->value);
    slots_add(&s, &p->grad);
  }
  return s;
}

// Roots of the optimizer program: the new parameter and the new states.
static Slots slots_opt(IrOptimizer *o) {
  Slots s = {arena_alloc(o->fn->arena,
                         sizeof(IrValue **) * (size_t)(1 + o->nstate)),
             0};
  slots_add(&s, &o->new_p);
  for (int i = 0; i < o->nstate; i++)
    slots_add(&s, &o->new_state[i]);
  return s;
}

// ---- one simplify pass ------------------------------------------------------
typedef struct Opt {
  IrFn *fn;
  bool after_grad;   // the gradients exist: detach(x) is just x
  IrValue **repl;    // repl[old id]: what replaces that value (itself if kept)
  IrValue **table;   // CSE hash table of kept values, open addressing
  uint64_t mask;     // table capacity - 1
  bool changed;
} Opt;

static bool same_type(const IrValue *a, const IrValue *b) {
  return shape_eq(a->shape, b->shape) && a->batched == b->batched;
}

// A constant c, possibly broadcast: every element of v equals c.
static bool is_splat(const IrValue *v, double c) {
  while (v->op == OP_BROADCAST)
    v = v->arg[0];
  return v->op == OP_CONST && v->attr.num == c;
}

static uint64_t mix(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15u + (h << 6) + (h >> 2);
  return h;
}

// Equal keys mean equal values: the same primitive of the same arguments with
// the same attribute (constants compare bit for bit, so 0 and -0 differ).
static uint64_t value_hash(const IrValue *v) {
  uint64_t h = (uint64_t)v->op, bits;
  for (int i = 0; i < v->narg; i++)
    h = mix(h, (uint64_t)(uintptr_t)v->arg[i]);
  memcpy(&bits, &v->attr.num, sizeof bits);
  h = mix(h, bits);
  h = mix(h, (uint64_t)v->attr.index);
  h = mix(h, (uint64_t)v->attr.batched);
  for (int i = 0; i < v->attr.shape.rank; i++)
    h = mix(h, (uint64_t)v->attr.shape.dim[i]);
  h = mix(h, (uint64_t)v->attr.shape.rank);
  const Window *w = &v->attr.win;
  for (int i = 0; i < 3; i++) {
    h = mix(h, (uint64_t)w->kernel[i]);
    h = mix(h, (uint64_t)w->stride[i]);
    h = mix(h, (uint64_t)w->pad_lo[i]);
    h = mix(h, (uint64_t)w->pad_hi[i]);
    h = mix(h, (uint64_t)w->dilation[i]);
  }
  h = mix(h, (uint64_t)w->groups);
  h = mix(h, (uint64_t)v->attr.axis);
  return mix(h, (uint64_t)v->attr.start);
}

// The earlier value equal to v, or NULL (nothing is recorded).
static IrValue *cse_find(Opt *o, const IrValue *v) {
  for (uint64_t i = value_hash(v) & o->mask; o->table[i]; i = (i + 1) & o->mask)
    if (ir_same(o->table[i], v))
      return o->table[i];
  return NULL;
}

// Returns the earlier equal value, or records v and returns it.
static IrValue *cse(Opt *o, IrValue *v) {
  for (uint64_t i = value_hash(v) & o->mask;; i = (i + 1) & o->mask) {
    if (!o->table[i]) {
      o->table[i] = v;
      return v;
    }
    if (ir_same(o->table[i], v))
      return o->table[i];
  }
}

// Folds an element-wise primitive of constants by evaluating it with eval.c,
// so folding cannot disagree with the interpreter the tests trust.
static IrValue *fold(Opt *o, IrValue *v) {
  if (prims[v->op].kind != PK_EW || v->batched || v->shape.rank != 0)
    return NULL;
  for (int i = 0; i < v->narg; i++)
    if (v->arg[i]->op != OP_CONST)
      return NULL;
  IrFn *tmp = ir_fn_new(o->fn->arena);
  IrValue *arg[MAX_ARGS];
  for (int i = 0; i < v->narg; i++)
    arg[i] = ir_const(tmp, v->arg[i]->attr.num, v->loc);
  IrValue *r = ir_prim(tmp, v->op, arg, v->attr, v->loc);
  double **res = eval_fn(o->fn->arena, tmp, &(EvalEnv){.batch = 1});
  return ir_const(o->fn, res[r->id][0], v->loc);
}

// x op c -> x when c is the identity element and x already has the result's
// shape (otherwise dropping the op would drop a broadcast).
static IrValue *identity(IrValue *v) {
  IrValue *a = v->narg > 0 ? v->arg[0] : NULL;
  IrValue *b = v->narg > 1 ? v->arg[1] : NULL;
  const Prim *pr = &prims[v->op];
  if (v->narg == 2 && !isnan(pr->identity)) {  // x op e, and e op x
    if (is_splat(b, pr->identity) && same_type(v, a))
      return a;
    if ((pr->flags & PF_COMMUTES) && is_splat(a, pr->identity) &&
        same_type(v, b))
      return b;
  }
  switch (v->op) {
  case OP_MUL:
    // x * 0 -> the zero operand, when it already has the result's shape.
    // (Like every compiler that does this, it assumes x is finite.)
    if (is_splat(b, 0) && same_type(v, b))
      return b;
    if (is_splat(a, 0) && same_type(v, a))
      return a;
    return NULL;
  case OP_NEG:
    return a->op == OP_NEG ? a->arg[0] : NULL;
  case OP_BROADCAST:
  case OP_SUM_TO:
  case OP_RESHAPE:
  case OP_SLICE:  // the whole axis (start 0)
  case OP_EMBED:  // into a target of its own size (start 0)
    return same_type(v, a) ? a : NULL;  // to its own shape: a no-op
  default:
    return NULL;
  }
}

// step(x) -> step(relu(x)) when relu(x) exists: equal for every x (NaN
// included: both are 0), and the pre-activation x is then read only by the
// relu, so it can be computed in that kernel and never stored (the backward
// mask reads the activation instead).
static IrValue *step_of_relu(Opt *o, IrValue *v) {
  IrValue *x = v->arg[0];
  if (v->op != OP_STEP || x->op == OP_RELU)
    return NULL;
  IrValue probe = {.op = OP_RELU, .narg = 1, .arg = {x}};
  IrValue *relu = cse_find(o, &probe);
  return relu ? ir_unary(o->fn, OP_STEP, relu, v->loc) : NULL;
}

// f(broadcast(x)) -> broadcast(f(x)) for a unary element-wise f: the same
// values, computed on the smaller tensor (e.g. the -1/B of a loss gradient).
static IrValue *unary_through_broadcast(Opt *o, IrValue *v) {
  if (prims[v->op].kind != PK_EW || v->narg != 1 || v->op == OP_BROADCAST ||
      v->arg[0]->op != OP_BROADCAST)
    return NULL;
  IrValue *x = v->arg[0]->arg[0];
  return ir_shaped(o->fn, OP_BROADCAST, ir_unary(o->fn, v->op, x, v->loc),
                   v->shape, v->batched, v->loc);
}

// The rewrites, in order; NULL when none applies.
static IrValue *rewrite(Opt *o, IrValue *v) {
  IrValue *r = fold(o, v);
  if (!r)
    r = identity(v);
  // log(softmax(x)) underflows to log(0) for confident predictions.
  if (!r && v->op == OP_LOG && v->arg[0]->op == OP_SOFTMAX)
    r = ir_unary(o->fn, OP_LOG_SOFTMAX, v->arg[0]->arg[0], v->loc);
  if (!r && v->op == OP_DETACH && o->after_grad)
    r = v->arg[0];
  if (!r)
    r = step_of_relu(o, v);
  if (!r)
    r = unary_through_broadcast(o, v);
  // broadcast(broadcast(x)) -> broadcast(x): broadcasting composes.
  if (!r && v->op == OP_BROADCAST && v->arg[0]->op == OP_BROADCAST)
    r = ir_shaped(o->fn, OP_BROADCAST, v->arg[0]->arg[0], v->shape, v->batched,
                  v->loc);
  return r;
}

// Rewrites fn, updates the slots and drops dead values. Returns whether
// anything changed.
static bool simplify_pass(IrFn *fn, Slots *s, bool after_grad) {
  Arena *a = fn->arena;
  ir_renumber(fn);
  PtrVec old = fn->values;
  uint64_t cap = 16;
  while (cap < 4 * (uint64_t)old.n)
    cap *= 2;
  Opt o = {.fn = fn,
           .after_grad = after_grad,
           .repl = arena_alloc(a, sizeof(IrValue *) * (size_t)(old.n + 1)),
           .table = arena_alloc(a, sizeof(IrValue *) * cap),
           .mask = cap - 1};

  // Rebuild the value list: kept values are pushed in order, and values the
  // rewrites create are appended by the builder right after their arguments.
  fn->values = (PtrVec){0};
  for (int i = 0; i < old.n; i++) {
    IrValue *v = old.item[i];
    for (int j = 0; j < v->narg; j++)
      v->arg[j] = o.repl[v->arg[j]->id];
    IrValue *r = rewrite(&o, v);
    if (r) {
      // A value a rewrite created may equal an earlier one (then it dies);
      // a value already in the list is already in the table and finds itself.
      r = cse(&o, r);
    } else {
      r = cse(&o, v);
      if (r == v)
        ptrvec_push(a, &fn->values, v);
    }
    o.changed |= r != v;
    o.repl[i] = r;
  }
  for (int i = 0; i < s->n; i++) {
    IrValue *v = *s->item[i];
    assert(v->id < old.n && old.item[v->id] == v && "root outside its fn");
    *s->item[i] = o.repl[v->id];
  }

  // DCE: keep what the slots reach.
  ir_renumber(fn);
  bool *live = arena_alloc(a, (size_t)fn->values.n + 1);
  for (int i = 0; i < s->n; i++)
    live[(*s->item[i])->id] = true;
  for (int i = fn->values.n - 1; i >= 0; i--) {
    IrValue *v = fn->values.item[i];
    if (live[i])
      for (int j = 0; j < v->narg; j++)
        live[v->arg[j]->id] = true;
  }
  int n = 0;
  for (int i = 0; i < fn->values.n; i++)
    if (live[i])
      fn->values.item[n++] = fn->values.item[i];
  o.changed |= n != old.n;
  fn->values.n = n;
  ir_renumber(fn);
  return o.changed;
}

static void simplify_fn(IrFn *fn, Slots *s, bool after_grad) {
  for (int round = 0; round < 16 && simplify_pass(fn, s, after_grad); round++)
    ;
}

void opt_simplify(IrModule *m, Ctx *ctx) {
  (void)ctx;
  if (m->fn) {
    Slots s = slots_main(m);
    simplify_fn(m->fn, &s, m->differentiated);
  }
  for (int i = 0; i < m->nsteps; i++)
    if (m->steps[i].opt.fn) {
      Slots s = slots_opt(&m->steps[i].opt);
      simplify_fn(m->steps[i].opt.fn, &s, true);
    }
}

// ---- fusion -----------------------------------------------------------------
// Users that read their argument element by element over the argument's own
// index space, so a fused producer can be computed inside their loop. A
// single unbatched value (a scalar such as -1/B) is read the same at every
// element of any element-wise user: computed inline, it is loop-invariant.
// A broadcast costs nothing inline (it is only an index mapping).
static bool reads_elementwise(const IrValue *u, const IrValue *v) {
  if (prims[u->op].flags & PF_READS_EW)
    return true;
  return prims[u->op].kind == PK_EW &&
         (same_type(u, v) || (!v->batched && shape_numel(v->shape) == 1) ||
          v->op == OP_BROADCAST);
}

// Whether a matmul's epilogue can read leaf u at each output element (i, j)
// (i: batch x leading axes, j: last axis): u has the output's layout, is a
// row vector [.., N] broadcast down (a bias), one value per row ([.., 1] with
// the output's leading axes, or a per-example scalar), or a single value.
// codegen_matmul.c (leaf_at) addresses exactly these.
static bool epilogue_leaf(const IrValue *u, const IrValue *mm) {
  Shape s = u->shape, o = mm->shape;
  int64_t n = shape_numel(s), N = o.dim[o.rank - 1];
  if ((shape_eq(s, o) && u->batched == mm->batched) || (n == 1 && !u->batched))
    return true;
  if (!u->batched && n == N && s.rank >= 1 && s.dim[s.rank - 1] == N)
    return true;
  if (u->batched != mm->batched)
    return false;
  if (n == 1 && shape_numel(o) == N) // a per-example scalar, one row each
    return true;
  if (s.rank != o.rank || s.dim[s.rank - 1] != 1)
    return false;
  for (int i = 0; i + 1 < s.rank; i++)
    if (s.dim[i] != o.dim[i])
      return false;
  return true;
}

// Whether a convolution's epilogue can read leaf u at each output element
// (channel o, position q): u has the output's shape, or one value per
// channel ([O, 1...], a bias), or is a single value (per example or in all).
// codegen_conv.c (epi_value) addresses exactly these.
static bool conv_epilogue_leaf(const IrValue *u, const IrValue *cv) {
  Shape s = u->shape, o = cv->shape;
  if (u->batched && !cv->batched)
    return false;
  if (shape_eq(s, o) || shape_numel(s) == 1)
    return true;
  if (s.rank != o.rank || s.dim[0] != o.dim[0])
    return false;
  for (int i = 1; i < s.rank; i++)
    if (s.dim[i] != 1)
      return false;
  return true;
}

// Whether v's inline tree (fused element-wise values, constants) can be the
// epilogue of kernel k (a matmul or a convolution): k is the only other
// kernel inline in it, and `leaf` says k's epilogue can address every
// stored value the tree reads.
typedef bool EpilogueLeaf(const IrValue *u, const IrValue *k);

static bool epilogue_ok(const IrValue *v, const IrValue *k, const bool *root,
                        EpilogueLeaf *leaf) {
  for (int i = 0; i < v->narg; i++) {
    const IrValue *a = v->arg[i];
    if (a == k || a->op == OP_CONST || a->op == OP_BATCH_SIZE)
      continue;
    if (root[a->id] || !a->fused) {
      if (!leaf(a, k))
        return false;
    } else if (prims[a->op].kind != PK_EW || !epilogue_ok(a, k, root, leaf)) {
      return false;
    }
  }
  return true;
}

// Whether every use of w in fn is as the right operand of a MATMUL or
// MATMUL_NT (never the left one).
static bool only_right_matmul_operand(const IrFn *fn, const IrValue *w) {
  for (int i = 0; i < fn->values.n; i++) {
    const IrValue *u = fn->values.item[i];
    for (int j = 0; j < u->narg; j++)
      if (u->arg[j] == w &&
          (j != 1 || (u->op != OP_MATMUL && u->op != OP_MATMUL_NT)))
        return false;
  }
  return true;
}

// A rewritten value still satisfies its primitive's shape rule.
static void assert_shape_rule(const IrValue *u) {
  Shape out;
  bool batched;
  const char *why = ir_check(u->op, (IrValue **)u->arg, &u->attr, &out,
                             &batched);
  (void)why;
  assert(!why && shape_eq(out, u->shape) && batched == u->batched);
}

static Shape transposed(Shape s) {
  return shape_of(2, (int64_t[]){s.dim[1], s.dim[0]});
}

void weight_layout(IrModule *m) {
  IrFn *fn = m->fn;
  ir_count_uses(fn);
  for (int i = 0; i < m->params.n; i++) {
    IrParam *p = m->params.item[i];
    IrValue *w = p->value, *g = p->grad;
    if (p->transposed || !w || w->batched || w->shape.rank != 2 ||
        w->shape.dim[1] > 12 || w->shape.dim[0] < 16 ||
        !only_right_matmul_operand(fn, w))
      continue;
    // The gradient must be the matmul_tn it takes: nothing else reads it.
    if (g && (g->op != OP_MATMUL_TN || g->nuses != 0))
      continue;
    w->shape = transposed(w->shape);
    for (int v = 0; v < fn->values.n; v++) {
      IrValue *u = fn->values.item[v];
      if (u->narg == 2 && u->arg[1] == w) {
        u->op = u->op == OP_MATMUL ? OP_MATMUL_NT : OP_MATMUL;
        assert_shape_rule(u);
      }
    }
    if (g) {
      IrValue *x = g->arg[0];
      g->arg[0] = g->arg[1], g->arg[1] = x;
      g->shape = transposed(g->shape);
      assert_shape_rule(g);
    }
    p->transposed = true;
  }
}

void kernel_fuse(IrModule *m) {
  IrFn *fn = m->fn;
  Arena *a = fn->arena;
  ir_renumber(fn);
  ir_count_uses(fn);
  int n = fn->values.n;
  IrValue **user = arena_alloc(a, sizeof(IrValue *) * (size_t)(n + 1));
  bool *root = arena_alloc(a, (size_t)n + 1);
  for (int i = 0; i < n; i++) {
    IrValue *u = fn->values.item[i];
    u->fused = false;
    for (int j = 0; j < u->narg; j++)
      user[u->arg[j]->id] = u;
  }
  // Roots are read after the step (or by the optimizer), so they need a buffer.
  Slots s = slots_main(m);
  for (int i = 0; i < s.n; i++)
    root[(*s.item[i])->id] = true;
  for (int i = 0; i < n; i++) {
    IrValue *v = fn->values.item[i];
    v->fused = prims[v->op].kind == PK_EW && v->nuses == 1 && !root[i] &&
               reads_elementwise(user[i], v);
  }
  // A matmul whose only user starts an element-wise chain over its own
  // index space (bias, activation, the backward ReLU mask) computes that
  // chain in its epilogue: the chain's stored top is then written straight
  // from the accumulators, and the matmul's own result is never stored. A
  // convolution likewise computes such a chain (bias, activation) as it
  // stores its output.
  for (int i = 0; i < n; i++) {
    IrValue *v = fn->values.item[i];
    EpilogueLeaf *leaf = prims[v->op].kind == PK_MATMUL ? epilogue_leaf
                         : v->op == OP_CONV            ? conv_epilogue_leaf
                                                       : NULL;
    if (!leaf || v->nuses != 1 || root[i])
      continue;
    IrValue *top = user[i];
    while (top->fused)
      top = user[top->id];
    if (prims[user[i]->op].kind == PK_EW && same_type(user[i], v) &&
        prims[top->op].kind == PK_EW && same_type(top, v) &&
        epilogue_ok(top, v, root, leaf))
      v->fused = true;
  }
}
