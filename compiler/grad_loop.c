// grad_loop.c — the adjoint of a recurrence: backpropagation through time
// as a backward LOOP (see grad.h, IrLoop in ir.h, docs/differentiation.md).
//
// For a forward loop y = LOOP(body F) with record adjoint dy [T, R], the
// backward loop runs over the same T steps in the other order. Its body G
// is the vector-Jacobian product of F: at the step of time t it receives
// row t of dy (the adjoints of that step's records) and, as its carry, the
// adjoint of F's carries after the step; it returns, as its next carry,
// the adjoint of the carries before the step, and records per step the
// adjoints of the per-step inputs. G is built in two passes:
//
//  1. A scratch function G0: a copy of F, seeded with those adjoints,
//     differentiated by grad_vjp with the ordinary adjoint rules.
//  2. The planning: every forward value that G0's adjoint part reads is
//     either a leaf (the step's input, a carry before the step: a stacked
//     shift of the forward record, an outer operand, the step index),
//     recomputed in G (an unbatched value: constants and loop-invariant
//     shapes), or saved: recorded by the forward loop at every step and
//     read back as a row of y's record. The forward loop's record is
//     widened with the saved values, once, at compile time, so no
//     activation is recomputed and nothing is allocated per step.
//
// Gradients of unbatched outer operands (parameters) are not accumulated
// inside the backward loop: each contribution is a sum over the batch of a
// product of per-step values (MATMUL_TN(p, q), or SUM_TO(p)), so the loop
// records p and q at every step, and one MATMUL_TN (or SUM_TO) over the
// stacked [T, ...] values after the loop computes the sum over all steps
// and rows at once: the weight gradients of all steps are one matrix
// product, as cuDNN computes them. With bptt = k, the carry adjoint is cut
// at every k-th step (counted from the loop's first step): truncated BPTT.
#include <assert.h>
#include <string.h>

#include "grad.h"

// Markers of G0's seed leaves (never evaluated: G0 is only planned).
enum { DY_INDEX = 1000, DCARRY_INDEX = 2000 };

typedef struct Bptt {
  IrFn *fn;          // the function holding y
  IrValue *y;        // the forward loop
  IrLoop *L;         // its IrLoop
  IrFn *G0;          // pass 1
  int nF;            // G0's values [0, nF) copy F's
  IrLoop *BL;        // the backward loop
  IrValue **map;     // G0 value id -> its G value (or NULL)
  IrValue *dy;       // the record adjoint
  IrValue *dy_leaf;  // G's leaf of row t of dy
  IrValue *rec_leaf; // G's leaf of row t of y's record (saved values)
  IrValue *prev_leaf[MAX_ARGS]; // G's leaves of the carries before the step
  IrValue *seq_leaf[MAX_ARGS];  // G's leaves of y's per-step inputs
  IrValue *outer_leaf[MAX_ARGS];
  IrValue *dcarry_leaf[MAX_ARGS];
  int *saved;        // F value id -> its record index in L, or -1
  Loc loc;
} Bptt;

static IrValue *copy_value(IrFn *fn, const IrValue *v, IrValue **args) {
  IrValue *c = ir_prim(fn, v->op, args, v->attr, v->loc);
  c->name = v->name;
  return c;
}

// Pass 1: F copied into G0 (leaves keep their op and index), then the
// adjoint seeds and grad_vjp. Returns the adjoints of the per-step
// inputs, carries and outer operands (in LOOP argument order).
static void pass_adjoint(Bptt *b, IrValue **adj) {
  IrLoop *L = b->L;
  IrFn *F = L->body, *G0 = b->G0;
  IrValue **cp = arena_alloc(G0->arena, sizeof *cp * (size_t)(F->values.n + 1));
  for (int i = 0; i < F->values.n; i++) {
    IrValue *v = F->values.item[i], *args[MAX_ARGS];
    assert(v->op != OP_LOOP && "sema admits no loop inside a loop body");
    for (int j = 0; j < v->narg; j++)
      args[j] = cp[v->arg[j]->id];
    cp[i] = copy_value(G0, v, args);
  }
  b->nF = G0->values.n;
  // Seeds: the records sema asked for get their columns of dy's row, each
  // carry's next value the carry adjoint.
  int nseed = 0;
  IrValue *seed[2 * MAX_ARGS + 64], *dseed[2 * MAX_ARGS + 64];
  IrValue **seeds = seed, **dseeds = dseed;
  int cap = L->nrec_user + L->ncarry;
  if (cap > 2 * MAX_ARGS + 64) {
    seeds = arena_alloc(G0->arena, sizeof *seeds * (size_t)cap);
    dseeds = arena_alloc(G0->arena, sizeof *dseeds * (size_t)cap);
  }
  Shape row = shape_vec(b->dy->shape.dim[1]);
  IrValue *dyrow = ir_leaf(G0, OP_LOOP_SEQ, row, true, DY_INDEX, NULL, b->loc);
  for (int i = 0; i < L->nrec_user; i++) {
    IrValue *r = L->rec[i];
    int64_t n = shape_numel(r->shape);
    IrValue *s = ir_prim(G0, OP_SLICE, (IrValue *[MAX_ARGS]){dyrow},
                         (Attr){.axis = 0, .start = L->rec_off[i],
                                .shape = shape_vec(n)},
                         b->loc);
    if (r->shape.rank != 1)
      s = ir_shaped(G0, OP_RESHAPE, s, r->shape, true, b->loc);
    seeds[nseed] = cp[r->id];
    dseeds[nseed++] = s;
  }
  for (int k = 0; k < L->ncarry; k++) {
    IrValue *nx = L->next[k];
    seeds[nseed] = cp[nx->id];
    dseeds[nseed++] = ir_leaf(G0, OP_LOOP_CARRY, nx->shape, true,
                              DCARRY_INDEX + k, NULL, b->loc);
  }
  IrValue *wrt[MAX_ARGS];
  int n = 0;
  for (int i = 0; i < L->nseq; i++)
    wrt[n++] = cp[L->leaf_seq[i]->id];
  for (int k = 0; k < L->ncarry; k++)
    wrt[n++] = cp[L->leaf_carry[k]->id];
  for (int j = 0; j < L->nouter; j++)
    wrt[n++] = cp[L->leaf_outer[j]->id];
  grad_vjp(G0, nseed, seeds, dseeds, wrt, n, adj);
}

// Whether G0 value v (a copy of a forward value) is computed again in G:
// leaves, and unbatched values (constants, shapes of constants); batched
// forward values are saved instead.
static bool recomputed(const IrValue *v) {
  return prims[v->op].kind == PK_LEAF || !v->batched;
}

// Marks, in `use`, the forward copies (ids < nF) that the adjoint part of
// G0 reads, directly or through recomputed values.
static void plan_uses(Bptt *b, IrValue **adj, int nadj, bool *use) {
  IrFn *G0 = b->G0;
  bool *live = arena_alloc(G0->arena, (size_t)G0->values.n + 1);
  for (int i = 0; i < nadj; i++)
    if (adj[i])
      live[adj[i]->id] = true;
  for (int i = G0->values.n - 1; i >= 0; i--) {
    IrValue *v = G0->values.item[i];
    if (!live[i])
      continue;
    if (i < b->nF) {  // a forward value the adjoint reads
      use[i] = true;
      if (!recomputed(v))
        continue;  // saved: its arguments are not needed in G
    }
    for (int j = 0; j < v->narg; j++)
      live[v->arg[j]->id] = true;
  }
}

// The G value standing for G0 value v (built on first use).
static IrValue *g_value(Bptt *b, IrValue *v);

static IrValue *g_leaf(Bptt *b, IrValue *v) {
  IrLoop *BL = b->BL, *L = b->L;
  int k = v->attr.index;
  switch (v->op) {
  case OP_LOOP_SEQ:
    if (k == DY_INDEX)
      return b->dy_leaf;
    if (!b->seq_leaf[k])
      b->seq_leaf[k] = ir_loop_seq(BL, b->y->arg[k], v->loc);
    return b->seq_leaf[k];
  case OP_LOOP_CARRY:
    if (k >= DCARRY_INDEX)
      return b->dcarry_leaf[k - DCARRY_INDEX];
    assert(b->prev_leaf[k] && "planned before G is built");
    return b->prev_leaf[k];
  case OP_LOOP_OUTER:
    if (!b->outer_leaf[k])
      b->outer_leaf[k] = ir_loop_outer(BL, b->y->arg[L->nseq + L->ncarry + k], v->loc);
    return b->outer_leaf[k];
  case OP_LOOP_INDEX:
    return ir_loop_index(BL, v->loc);
  default:
    return copy_value(BL->body, v, NULL);
  }
}

static IrValue *g_value(Bptt *b, IrValue *v) {
  if (b->map[v->id])
    return b->map[v->id];
  IrValue *r;
  if (prims[v->op].kind == PK_LEAF) {
    r = g_leaf(b, v);
  } else if (v->id < b->nF && b->saved[v->id] >= 0) {
    // A saved forward value: its columns of row t of y's record.
    int i = b->saved[v->id];
    IrValue *s = ir_prim(b->BL->body, OP_SLICE,
                         (IrValue *[MAX_ARGS]){b->rec_leaf},
                         (Attr){.axis = 0, .start = b->L->rec_off[i],
                                .shape = shape_vec(shape_numel(v->shape))},
                         v->loc);
    r = v->shape.rank == 1 ? s
                           : ir_shaped(b->BL->body, OP_RESHAPE, s, v->shape,
                                       true, v->loc);
  } else {
    IrValue *args[MAX_ARGS];
    for (int j = 0; j < v->narg; j++)
      args[j] = g_value(b, v->arg[j]);
    r = copy_value(b->BL->body, v, args);
  }
  b->map[v->id] = r;
  return r;
}

// The forward record index of F value v, recording it if needed.
static int ensure_recorded(IrLoop *L, IrValue *v) {
  for (int i = 0; i < L->nrec; i++)
    if (L->rec[i] == v)
      return i;
  return ir_loop_record(L, v);
}

// The carries before each step, stacked [T, ...]: the initial value at the
// loop's first step, then the recorded next value of the step before.
static IrValue *prev_stack(Bptt *b, int k) {
  IrLoop *L = b->L;
  IrFn *fn = b->fn;
  Loc loc = b->loc;
  IrValue *init = b->y->arg[L->nseq + k];
  Shape one = {.rank = init->shape.rank + 1, .dim = {1}};
  for (int i = 0; i < init->shape.rank; i++)
    one.dim[i + 1] = init->shape.dim[i];
  IrValue *first = ir_shaped(fn, OP_RESHAPE, init, one, true, loc);
  if (L->T == 1)
    return first;
  int ri = ensure_recorded(L, L->next[k]);
  ir_loop_reshape(b->y);
  IrValue *all = ir_loop_stack(fn, b->y, ri, loc);
  Shape rest = all->shape;
  rest.dim[0] = L->T - 1;
  IrValue *part = ir_prim(fn, OP_SLICE, (IrValue *[MAX_ARGS]){all},
                          (Attr){.axis = 0, .start = L->reverse ? 1 : 0,
                                 .shape = rest},
                          loc);
  return L->reverse ? ir_binary(fn, OP_CONCAT, part, first, loc)
                    : ir_binary(fn, OP_CONCAT, first, part, loc);
}

// A hoisted parameter-gradient term: MATMUL_TN(p, q) or SUM_TO(p) of
// batched per-step values, recorded by the backward loop.
typedef struct Term {
  IrValue *t;        // the G0 term
  int rp, rq;        // record indices in BL (rq: -1 for SUM_TO)
} Term;

// Splits G0's adjoint d of an unbatched outer operand into its terms.
static bool split_terms(IrValue *d, Term *out, int *n, int cap) {
  if (d->op == OP_ADD && !d->batched && shape_eq(d->arg[0]->shape, d->shape) &&
      shape_eq(d->arg[1]->shape, d->shape) && !d->arg[0]->batched &&
      !d->arg[1]->batched)
    return split_terms(d->arg[0], out, n, cap) &&
           split_terms(d->arg[1], out, n, cap);
  bool mm = d->op == OP_MATMUL_TN && d->arg[0]->batched && d->arg[1]->batched;
  bool st = d->op == OP_SUM_TO && d->arg[0]->batched;
  bool zero = d->op == OP_BROADCAST && d->arg[0]->op == OP_CONST &&
              d->arg[0]->attr.num == 0;
  if (zero)
    return true;
  if ((!mm && !st) || *n >= cap)
    return false;
  out[(*n)++] = (Term){d, -1, -1};
  return true;
}

// The time position at which the backward loop cuts the carry adjoint
// (truncated BPTT): a mask of 0 at every bptt-th step of the forward
// order (its first included), else 1.
static IrValue *bptt_mask(Bptt *b) {
  IrFn *G = b->BL->body;
  Loc l = b->loc;
  double k = (double)b->L->bptt;
  IrValue *t = ir_loop_index(b->BL, l);
  if (b->L->reverse)  // steps counted from T - 1 down
    t = ir_binary(G, OP_SUB, ir_const(G, (double)(b->L->T - 1), l), t, l);
  IrValue *q = ir_unary(G, OP_FLOOR,
                        ir_binary(G, OP_DIV, t, ir_const(G, k, l), l), l);
  IrValue *r = ir_binary(G, OP_SUB, t,
                         ir_binary(G, OP_MUL, q, ir_const(G, k, l), l), l);
  return ir_binary(G, OP_GT, r, ir_const(G, 0.5, l), l);
}

// Operand j of the outer kind. (The operands are the LOOP's arguments: the
// IrLoop's staging arrays are stale once the simplifier rewired them.)
#define OUTER(j) (y->arg[L->nseq + L->ncarry + (j)])

void grad_loop(IrFn *fn, IrValue *y, IrValue *dy, const bool *want,
               IrValue **d) {
  IrLoop *L = y->attr.loop;
  Arena *a = fn->arena;
  Bptt b = {.fn = fn, .y = y, .L = L, .dy = dy, .loc = y->loc};
  b.G0 = ir_fn_new(a);
  int nargs = ir_loop_nargs(L);
  IrValue *adj[MAX_ARGS] = {0};
  pass_adjoint(&b, adj);
  // Only what the caller wants (carries always: they flow between steps).
  IrValue *need[MAX_ARGS] = {0};
  for (int i = 0; i < nargs; i++)
    if (want[i] || (i >= L->nseq && i < L->nseq + L->ncarry))
      need[i] = adj[i];

  // Unbatched outer operands: the hoisted terms of their gradients.
  Term terms[MAX_ARGS][MAX_OUTER_USES];
  int nterms[MAX_ARGS] = {0};
  IrValue *roots[MAX_ARGS * 2 * MAX_OUTER_USES + 1];
  int nroots = 0;
  for (int i = 0; i < nargs; i++) {
    if (!need[i])
      continue;
    int j = i - L->nseq - L->ncarry;
    if (j >= 0 && !OUTER(j)->batched) {
      bool ok = split_terms(need[i], terms[i], &nterms[i], MAX_OUTER_USES);
      assert(ok && "sema keeps loop-invariant values out of loop bodies");
      (void)ok;
      for (int t = 0; t < nterms[i]; t++)
        for (int q = 0; q < (terms[i][t].t->op == OP_MATMUL_TN ? 2 : 1); q++)
          roots[nroots++] = terms[i][t].t->arg[q];
    } else {
      roots[nroots++] = need[i];
    }
  }

  // Plan: which forward values G reads, and which of them are saved.
  bool *use = arena_alloc(a, (size_t)b.G0->values.n + 1);
  plan_uses(&b, roots, nroots, use);
  b.saved = arena_alloc(a, sizeof(int) * (size_t)(b.nF + 1));
  IrFn *F = L->body;
  for (int i = 0; i < b.nF; i++) {
    IrValue *v = b.G0->values.item[i];
    b.saved[i] = use[i] && !recomputed(v)
                     ? ensure_recorded(L, F->values.item[i])
                     : -1;
  }

  // The backward loop: carries are the carry adjoints (from zero); the
  // carries before each step are stacked outside (from y's record).
  b.BL = ir_loop_new(a, L->T, !L->reverse);
  b.BL->primal = L;
  b.map = arena_alloc(a, sizeof(IrValue *) * (size_t)(b.G0->values.n + 1));
  for (int k = 0; k < L->ncarry; k++)
    if (use[L->leaf_carry[k]->id])  // G0 copies F in order: same ids
      b.prev_leaf[k] = ir_loop_seq(b.BL, prev_stack(&b, k), b.loc);
  ir_loop_reshape(y);  // every saved value is recorded now
  bool any_saved = false;
  for (int i = 0; i < b.nF; i++)
    any_saved |= b.saved[i] >= 0;
  if (any_saved)
    b.rec_leaf = ir_loop_seq(b.BL, y, b.loc);
  b.dy_leaf = ir_loop_seq(b.BL, dy, b.loc);
  for (int k = 0; k < L->ncarry; k++) {
    IrValue *init = y->arg[L->nseq + k];
    IrValue *zero = ir_shaped(fn, OP_BROADCAST, ir_const(fn, 0, b.loc),
                              init->shape, true, b.loc);
    b.dcarry_leaf[k] = ir_loop_carry(b.BL, zero, b.loc);
  }
  IrFn *G = b.BL->body;
  IrValue *mask = L->bptt > 0 ? bptt_mask(&b) : NULL;
  IrValue *next[MAX_ARGS];
  int rec_of[MAX_ARGS];
  for (int i = 0; i < nargs; i++) {
    rec_of[i] = -1;
    if (!need[i])
      continue;
    int k = i - L->nseq, j = k - L->ncarry;
    if (j >= 0 && !OUTER(j)->batched) {
      for (int t = 0; t < nterms[i]; t++) {
        Term *tm = &terms[i][t];
        tm->rp = ensure_recorded(b.BL, g_value(&b, tm->t->arg[0]));
        if (tm->t->op == OP_MATMUL_TN)
          tm->rq = ensure_recorded(b.BL, g_value(&b, tm->t->arg[1]));
      }
      continue;
    }
    IrValue *gv = g_value(&b, need[i]);
    if (k >= 0 && j < 0) {  // a carry: the adjoint before the step
      if (mask)
        gv = ir_binary(G, OP_MUL, gv, mask, b.loc);
      next[k] = gv;
    }
    if (want[i])
      rec_of[i] = ensure_recorded(b.BL, gv);
  }
  if (b.BL->nrec == 0)  // nothing per step is wanted: keep the loop well formed
    ir_loop_record(b.BL, next[0]);
  IrValue *bl = ir_loop_finish(fn, b.BL, next, b.loc);

  // The contributions, in LOOP argument order.
  for (int i = 0; i < nargs; i++) {
    d[i] = NULL;
    if (!want[i] || !need[i])
      continue;
    int k = i - L->nseq, j = k - L->ncarry;
    if (i < L->nseq) {
      d[i] = ir_loop_stack(fn, bl, rec_of[i], b.loc);
    } else if (j < 0) {
      d[i] = ir_loop_at(fn, bl, rec_of[i], ir_loop_last(b.BL), b.loc);
    } else if (OUTER(j)->batched) {
      d[i] = ir_shaped(fn, OP_SUM_TO, ir_loop_stack(fn, bl, rec_of[i], b.loc),
                       OUTER(j)->shape, true, b.loc);
    } else {
      IrValue *sum = NULL;
      for (int t = 0; t < nterms[i]; t++) {
        Term *tm = &terms[i][t];
        IrValue *p = ir_loop_stack(fn, bl, tm->rp, b.loc), *c;
        if (tm->t->op == OP_MATMUL_TN)
          c = ir_binary(fn, OP_MATMUL_TN, p,
                        ir_loop_stack(fn, bl, tm->rq, b.loc), b.loc);
        else
          c = ir_shaped(fn, OP_SUM_TO, p, tm->t->shape, false, b.loc);
        if (!shape_eq(c->shape, OUTER(j)->shape))
          c = ir_shaped(fn, OP_SUM_TO, c, OUTER(j)->shape, false, b.loc);
        sum = sum ? ir_binary(fn, OP_ADD, sum, c, b.loc) : c;
      }
      d[i] = sum;  // NULL: no contribution at all
    }
  }
}

void grad_loop_views(IrModule *m) {
  IrFn *fn = m->fn;
  int n = fn->values.n;
  ir_renumber(fn);  // ids are positions in `old` until the end
  PtrVec old = fn->values;
  IrValue **view = arena_alloc(fn->arena, sizeof *view * (size_t)(n + 1));
  bool any = false;
  for (int i = 0; i < n; i++)
    any |= ((IrValue *)old.item[i])->op == OP_LOOP;
  if (!any)
    return;
  // Rebuilt in order, each LOOP followed by its view.
  fn->values = (PtrVec){0};
  for (int i = 0; i < n; i++) {
    IrValue *v = old.item[i];
    ptrvec_push(fn->arena, &fn->values, v);
    if (v->op == OP_LOOP)
      view[i] = ir_prim(fn, OP_SLICE, (IrValue *[MAX_ARGS]){v},
                        (Attr){.axis = 1, .start = 0, .shape = v->shape},
                        v->loc);
  }
  // Every other user reads the view (a LOOP's id is still its old one).
  for (int i = 0; i < fn->values.n; i++) {
    IrValue *v = fn->values.item[i];
    for (int j = 0; j < v->narg; j++) {
      IrValue *a = v->arg[j];
      if (a->op == OP_LOOP && view[a->id] != v)
        v->arg[j] = view[a->id];
    }
  }
  IrValue **roots[] = {&m->output, &m->loss, &m->correct, &m->eval.output,
                       &m->eval.loss, &m->eval.objective, &m->eval.correct};
  for (size_t r = 0; r < sizeof roots / sizeof *roots; r++)
    if (*roots[r] && (*roots[r])->op == OP_LOOP)
      *roots[r] = view[(*roots[r])->id];
  for (int i = 0; i < m->updates.n; i++) {
    IrUpdate *u = m->updates.item[i];
    if (u->value->op == OP_LOOP)
      u->value = view[u->value->id];
  }
  ir_renumber(fn);
}
