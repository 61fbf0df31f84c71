// codegen_loop.c — the kernel of a recurrence (the LOOP primitive, ir.h).
//
// A LOOP is one kernel `kN.loop(ptr record, ptr operands..., ptr scratch,
// i64 rows)`. Batch rows are independent in a recurrence, so the kernel
// splits them into blocks of RB rows, the blocks into tasks (the count
// depends only on the row count, so results never depend on --threads),
// and each block runs all T steps: at each step the body's values are
// computed in order, for the block's rows at once, into the task's part
// of the scratch buffer, planned at compile time (loop_plan): no memory is
// allocated per step, and the code does not depend on T. The body's leaves
// read the operands in place (row t of a per-step input is a pointer into
// it), RESHAPE and contiguous SLICEs (an LSTM's gates) are views of their
// argument, and each body value is an element-wise loop, a matrix product
// over the block's rows (the recurrent weight is read once per block and
// step, and stays in cache across steps) or a copy. After the body, the
// recorded values are copied into row t of the record and the carries
// take their next values (through a staging area, since a next value may
// be a view of another carry).
#include <assert.h>
#include <string.h>

#include "codegen_internal.h"

enum {
  RB = 8,         // rows per block: the recurrent matmul reuses U over them
  MAX_TASKS = 16, // blocks are split into at most this many tasks
};

// ---- the plan: where each body value lives -----------------------------------
typedef enum SlotKind {
  SL_OWN,    // its own slot in the block scratch
  SL_VIEW,   // a view of its argument (RESHAPE, contiguous SLICE)
  SL_SEQ,    // LOOP_SEQ: row t of an operand
  SL_OUTER,  // LOOP_OUTER: an operand
  SL_CARRY,  // LOOP_CARRY: the carry's slot
} SlotKind;

typedef struct Plan {
  SlotKind *kind;
  int64_t *off;     // SL_OWN, SL_CARRY: float offset in the block scratch;
                    // SL_VIEW: float offset into the argument
  int64_t *stride;  // floats between two rows of the value (0: unbatched)
  int64_t carry_off[MAX_ARGS], stage_off[MAX_ARGS];
  int64_t block;    // floats of scratch per block (one task's)
} Plan;

static int64_t rows_of(const IrValue *v) { return v->batched ? RB : 1; }

// A SLICE whose slab is contiguous in each row (nothing outside the axis).
static bool slice_view(const IrValue *v) {
  return v->op == OP_SLICE && shape_outer(v->arg[0]->shape, v->attr.axis) == 1;
}

static void loop_plan(Arena *a, const IrLoop *l, Plan *p) {
  const IrFn *B = l->body;
  int n = B->values.n;
  p->kind = arena_alloc(a, sizeof *p->kind * (size_t)(n + 1));
  p->off = arena_alloc(a, sizeof *p->off * (size_t)(n + 1));
  p->stride = arena_alloc(a, sizeof *p->stride * (size_t)(n + 1));
  int64_t top = 0;
  for (int k = 0; k < l->ncarry; k++) {
    int64_t sz = RB * shape_numel(l->leaf_carry[k]->shape);
    p->carry_off[k] = top, top += sz;
    p->stage_off[k] = top, top += sz;
  }
  for (int i = 0; i < n; i++) {
    const IrValue *v = B->values.item[i];
    int64_t numel = shape_numel(v->shape);
    p->stride[i] = v->batched ? numel : 0;
    switch (v->op) {
    case OP_LOOP_SEQ: {
      p->kind[i] = SL_SEQ;
      p->stride[i] = v->batched ? l->T * numel : 0;
      break;
    }
    case OP_LOOP_OUTER:
      p->kind[i] = SL_OUTER;
      break;
    case OP_LOOP_CARRY:
      p->kind[i] = SL_CARRY;
      p->off[i] = p->carry_off[v->attr.index];
      break;
    default:
      if (v->op == OP_RESHAPE || slice_view(v)) {
        const IrValue *x = v->arg[0];
        p->kind[i] = SL_VIEW;
        p->stride[i] = p->stride[x->id];
        p->off[i] = v->op == OP_SLICE
                        ? v->attr.start * shape_inner(x->shape, v->attr.axis)
                        : 0;
      } else {
        p->kind[i] = SL_OWN;
        top += top % 16 ? 16 - top % 16 : 0;  // slots start 64-byte aligned
        p->off[i] = top;
        top += rows_of(v) * numel;
      }
    }
  }
  p->block = top + 16;
}

int64_t loop_scratch(const IrValue *v) {
  Arena a = {0};
  Plan p;
  loop_plan(&a, v->attr.loop, &p);
  int64_t n = p.block * MAX_TASKS;
  arena_free(&a);
  return n;
}

// ---- one block's code ---------------------------------------------------------
typedef struct Lcg {
  Cg *cg;
  Kern *k;
  const IrValue *v;
  const IrLoop *l;
  Plan p;
  LLVMValueRef scr;   // the block scratch
  LLVMValueRef row0;  // the block's first row (i64)
  LLVMValueRef nb;    // its rows (i64, 1..RB)
  LLVMValueRef t;     // the step's time position (i64)
  LLVMValueRef *base; // per body value: element (r, f) is base[r * stride + f]
  int *uses;          // per body value: its users, records and next values
  bool *done;         // computed early, in a matmul's epilogue
} Lcg;

static LLVMValueRef ci(Lcg *c, int64_t x) { return cg_i64(c->cg, x); }
static LLVMValueRef mul(Lcg *c, LLVMValueRef a, LLVMValueRef b) {
  return cg_mul(c->cg, a, b);
}
static LLVMValueRef add(Lcg *c, LLVMValueRef a, LLVMValueRef b) {
  return cg_add(c->cg, a, b);
}

// The pointer argument of operand i of the LOOP.
static LLVMValueRef operand(Lcg *c, int i) {
  return kern_ptr(c->k, c->v->arg[i]);
}

// &value[r, f] (r ignored for an unbatched value).
static LLVMValueRef at(Lcg *c, const IrValue *x, LLVMValueRef r,
                       LLVMValueRef f) {
  int64_t s = c->p.stride[x->id];
  LLVMValueRef i = s ? add(c, mul(c, r, ci(c, s)), f) : f;
  return cg_gep(c->cg, c->base[x->id], i);
}

static LLVMValueRef load(Lcg *c, const IrValue *x, LLVMValueRef r,
                         LLVMValueRef f) {
  if (x->op == OP_CONST)
    return cg_f32(c->cg, x->attr.num);
  LLVMValueRef l = LLVMBuildLoad2(c->cg->b, c->cg->t_f32, at(c, x, r, f), "");
  LLVMSetAlignment(l, 4);
  return l;
}

static void store(Lcg *c, const IrValue *x, LLVMValueRef r, LLVMValueRef f,
                  LLVMValueRef val) {
  LLVMValueRef s = LLVMBuildStore(c->cg->b, val, at(c, x, r, f));
  LLVMSetAlignment(s, 4);
}

// A loop over the rows a value has: the block's rows, or the single row of
// an unbatched value (no loop).
typedef struct Rows {
  Loop l;
  bool looped;
} Rows;
static LLVMValueRef rows_begin(Lcg *c, Rows *rw, bool batched) {
  rw->looped = batched;
  return batched ? loop_begin(c->cg, &rw->l, c->nb, "r") : ci(c, 0);
}
static void rows_end(Lcg *c, Rows *rw) {
  if (rw->looped)
    loop_end(c->cg, &rw->l);
}

// The flat index, inside x, of the element that broadcasting maps to flat
// index f of the larger per-example shape `big` (right-aligned axes).
static LLVMValueRef bcast(Lcg *c, const IrValue *x, Shape big,
                          LLVMValueRef f) {
  Shape s = x->shape;
  if (shape_numel(s) == 1)
    return ci(c, 0);
  if (shape_eq(s, big) || shape_numel(s) == shape_numel(big))
    return f;
  LLVMValueRef off = ci(c, 0), rest = f;
  int64_t stride = 1;
  for (int i = big.rank - 1, j = s.rank - 1; i >= 0 && j >= 0; i--, j--) {
    LLVMValueRef idx = LLVMBuildSRem(c->cg->b, rest, ci(c, big.dim[i]), "");
    rest = LLVMBuildSDiv(c->cg->b, rest, ci(c, big.dim[i]), "");
    if (s.dim[j] != 1)
      off = add(c, off, mul(c, idx, ci(c, stride)));
    stride *= s.dim[j];
  }
  return off;
}

static void zero(Lcg *c, const IrValue *v) {
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, v->batched);
  Loop lf;
  LLVMValueRef f = loop_begin(c->cg, &lf, ci(c, shape_numel(v->shape)), "f");
  store(c, v, r, f, cg_f32(c->cg, 0));
  loop_end(c->cg, &lf);
  rows_end(c, &rw);
}

static void emit_ew(Lcg *c, const IrValue *v) {
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, v->batched);
  Loop lf;
  LLVMValueRef f = loop_begin(c->cg, &lf, ci(c, shape_numel(v->shape)), "f");
  LLVMValueRef x[MAX_ARGS];
  for (int i = 0; i < v->narg; i++) {
    const IrValue *a = v->arg[i];
    x[i] = load(c, a, a->batched ? r : ci(c, 0), bcast(c, a, v->shape, f));
  }
  store(c, v, r, f, ew_op(c->cg, v, x));
  loop_end(c->cg, &lf);
  rows_end(c, &rw);
}

// SUM and MEAN of each row; SUM_TO down to a smaller per-example shape.
static void emit_reduce(Lcg *c, const IrValue *v) {
  const IrValue *x = v->arg[0];
  assert((v->batched || !x->batched) && "no batch sums inside a loop");
  zero(c, v);
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, x->batched);
  Loop lf;
  int64_t n = shape_numel(x->shape);
  LLVMValueRef f = loop_begin(c->cg, &lf, ci(c, n), "f");
  LLVMValueRef g = v->op == OP_SUM_TO ? bcast(c, v, x->shape, f) : ci(c, 0);
  LLVMValueRef xv = load(c, x, r, f);
  if (v->op == OP_MEAN)
    xv = LLVMBuildFMul(c->cg->b, xv, cg_f32(c->cg, 1.0 / (double)n), "");
  store(c, v, r, g, LLVMBuildFAdd(c->cg->b, load(c, v, r, g), xv, ""));
  loop_end(c->cg, &lf);
  rows_end(c, &rw);
}

// SOFTMAX and LOG_SOFTMAX along the last axis of each row.
static void emit_softmax(Lcg *c, const IrValue *v) {
  Cg *cg = c->cg;
  const IrValue *x = v->arg[0];
  int64_t m = v->shape.dim[v->shape.rank - 1];
  int64_t segs = shape_numel(v->shape) / m;
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, v->batched);
  Loop ls;
  LLVMValueRef s = loop_begin(cg, &ls, ci(c, segs), "seg");
  LLVMValueRef o = mul(c, s, ci(c, m));
  LLVMValueRef mx = cg_alloca(cg, cg->t_f32, "mx");
  LLVMValueRef sum = cg_alloca(cg, cg->t_f32, "sum");
  LLVMBuildStore(cg->b, load(c, x, r, o), mx);
  LLVMBuildStore(cg->b, cg_f32(cg, 0), sum);
  Loop l1;
  LLVMValueRef j = loop_begin(cg, &l1, ci(c, m), "j");
  LLVMValueRef xv = load(c, x, r, add(c, o, j));
  LLVMValueRef cur = LLVMBuildLoad2(cg->b, cg->t_f32, mx, "");
  LLVMBuildStore(cg->b,
                 LLVMBuildSelect(cg->b,
                                 LLVMBuildFCmp(cg->b, LLVMRealOGT, xv, cur, ""),
                                 xv, cur, ""),
                 mx);
  loop_end(cg, &l1);
  LLVMValueRef mxv = LLVMBuildLoad2(cg->b, cg->t_f32, mx, "");
  Loop l2;
  j = loop_begin(cg, &l2, ci(c, m), "j");
  LLVMValueRef d = LLVMBuildFSub(cg->b, load(c, x, r, add(c, o, j)), mxv, "");
  LLVMValueRef e = cg_intrinsic(cg, "llvm.exp", &d, 1);
  LLVMBuildStore(cg->b,
                 LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_f32, sum, ""),
                               e, ""),
                 sum);
  loop_end(cg, &l2);
  LLVMValueRef sv = LLVMBuildLoad2(cg->b, cg->t_f32, sum, "");
  LLVMValueRef lsv = cg_intrinsic(cg, "llvm.log", &sv, 1);
  Loop l3;
  j = loop_begin(cg, &l3, ci(c, m), "j");
  d = LLVMBuildFSub(cg->b, load(c, x, r, add(c, o, j)), mxv, "");
  LLVMValueRef y = v->op == OP_LOG_SOFTMAX
                       ? LLVMBuildFSub(cg->b, d, lsv, "")
                       : LLVMBuildFDiv(cg->b, cg_intrinsic(cg, "llvm.exp", &d, 1),
                                       sv, "");
  store(c, v, r, add(c, o, j), y);
  loop_end(cg, &l3);
  loop_end(cg, &ls);
  rows_end(c, &rw);
}

// y = a b, a [..., k] per row, b [k, m]: for each row i of a and each t,
// y[r, i, :] += a[r, i, t] b[t, :] over the block's rows r, so b's row t
// is read once per block (the j loop vectorizes).
static void emit_matmul(Lcg *c, const IrValue *v) {
  Cg *cg = c->cg;
  const IrValue *a = v->arg[0], *b = v->arg[1];
  int64_t k = a->shape.dim[a->shape.rank - 1], m = v->shape.dim[v->shape.rank - 1];
  int64_t na = shape_numel(a->shape) / k;
  zero(c, v);
  Loop li, lt, lj;
  LLVMValueRef i = loop_begin(cg, &li, ci(c, na), "i");
  LLVMValueRef t = loop_begin(cg, &lt, ci(c, k), "t");
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, v->batched);
  LLVMValueRef av = load(c, a, a->batched ? r : ci(c, 0),
                         add(c, mul(c, i, ci(c, k)), t));
  LLVMValueRef rb = b->batched ? r : ci(c, 0);
  LLVMValueRef j = loop_begin(cg, &lj, ci(c, m), "j");
  LLVMValueRef yo = add(c, mul(c, i, ci(c, m)), j);
  LLVMValueRef bv = load(c, b, rb, add(c, mul(c, t, ci(c, m)), j));
  LLVMValueRef args[3] = {av, bv, load(c, v, r, yo)};
  store(c, v, r, yo, cg_intrinsic(cg, cg->fma, args, 3));
  loop_end(cg, &lj);
  rows_end(c, &rw);
  loop_end(cg, &lt);
  loop_end(cg, &li);
}

// Whether value x has storage for all RB rows of the block (scratch, not
// an operand's rows, which end at the batch): then a register tile may
// compute every row of the block, the rows past the batch included
// (independent garbage that is never copied out).
static bool block_rows(const Lcg *c, const IrValue *x) {
  while (c->p.kind[x->id] == SL_VIEW)
    x = x->arg[0];
  return x->batched &&
         (c->p.kind[x->id] == SL_OWN || c->p.kind[x->id] == SL_CARRY);
}

// The register-tiled y = a b for a block-backed a and an unbatched b (the
// recurrent matmul h U): for each 16 columns of y, RB accumulator vectors
// (one per row) run through the reduction, each step reading 16 floats of
// b's row t once for all the block's rows; the sums are stored once.
// The epilogue of a tiled matmul y (epi_plan): z = y + s when y's only user
// adds a value s computed before it (the step's input projection x_t: z
// is then the gates' pre-activation), stored; and chains of element-wise
// values over 16-aligned slices of z (a gate's sigmoid or tanh, with
// constants), each computed from the accumulators and stored as the
// chain's last value. Chain values before the last have one use.
typedef struct Chain {
  int64_t start, len;        // the slice of z
  const IrValue *val[8];     // the chain, first to last
  int n;
} Chain;

typedef struct Epi {
  const IrValue *z;          // what the accumulators (+ s) are stored as
  const IrValue *s;          // the added value, or NULL
  Chain chain[8];
  int nchain;
} Epi;

static const IrValue *only_user(Lcg *c, const IrValue *x) {
  if (c->uses[x->id] != 1)
    return NULL;
  const IrFn *B = c->l->body;
  for (int i = x->id + 1; i < B->values.n; i++) {
    const IrValue *u = B->values.item[i];
    for (int j = 0; j < u->narg; j++)
      if (u->arg[j] == x)
        return u;
  }
  return NULL;  // a record or a next value
}

// An element-wise value whose other arguments are constants, over x.
static bool chain_link(const IrValue *u, const IrValue *x) {
  if (prims[u->op].kind != PK_EW || !shape_eq(u->shape, x->shape) ||
      u->batched != x->batched || u->op == OP_BROADCAST)
    return false;
  for (int j = 0; j < u->narg; j++)
    if (u->arg[j] != x && u->arg[j]->op != OP_CONST)
      return false;
  return true;
}

static Epi epi_plan(Lcg *c, const IrValue *y) {
  Epi e = {.z = y};
  const IrValue *add = only_user(c, y);
  if (add && add->op == OP_ADD && shape_eq(add->shape, y->shape) &&
      add->batched) {
    const IrValue *s = add->arg[0] == y ? add->arg[1] : add->arg[0];
    if (s != y && s->id < y->id && shape_eq(s->shape, y->shape) &&
        s->batched && c->p.kind[add->id] == SL_OWN) {
      e.z = add, e.s = s;
      c->done[add->id] = true;
    }
  }
  const IrFn *B = c->l->body;
  for (int i = e.z->id + 1; i < B->values.n && e.nchain < 8; i++) {
    const IrValue *sv = B->values.item[i];
    if (sv->op != OP_SLICE || sv->arg[0] != e.z || c->p.kind[i] != SL_VIEW ||
        sv->attr.start % 16 || shape_numel(sv->shape) % 16)
      continue;
    Chain ch = {.start = sv->attr.start, .len = shape_numel(sv->shape)};
    const IrValue *x = sv, *u;
    while (ch.n < 8 && (u = only_user(c, x)) && chain_link(u, x) &&
           c->p.kind[u->id] == SL_OWN) {
      ch.val[ch.n++] = u;
      x = u;
    }
    if (!ch.n)
      continue;
    for (int k = 0; k < ch.n; k++)
      c->done[ch.val[k]->id] = true;
    e.chain[e.nchain++] = ch;
  }
  return e;
}

static void set_base(Lcg *c, const IrValue *x) {
  c->base[x->id] = cg_gep(c->cg, c->scr, ci(c, c->p.off[x->id]));
}

// The register-tiled y = a b for a block-backed a and an unbatched b (the
// recurrent matmul h U): for each 16 columns of y, RB accumulator vectors
// (one per row) run through the reduction, each step reading 16 floats of
// b's row t once for all the block's rows; then the epilogue (Epi) stores
// them. Columns are visited in segments, one per gate chain and one per
// gap between chains, then the masked tail.
static void emit_matmul_tiled(Lcg *c, const IrValue *v) {
  Cg *cg = c->cg;
  const IrValue *a = v->arg[0], *b = v->arg[1];
  int64_t k = a->shape.dim[a->shape.rank - 1], m = v->shape.dim[v->shape.rank - 1];
  int64_t na = shape_numel(a->shape) / k, full = m / 16, tail = m % 16;
  Epi e = na == 1 ? epi_plan(c, v) : (Epi){.z = v};
  set_base(c, e.z);
  for (int q = 0; q < e.nchain; q++)
    for (int j = 0; j < e.chain[q].n; j++)
      set_base(c, e.chain[q].val[j]);
  // Segments of chunks [lo, hi) with their chain (or none); then the tail.
  int64_t seg_lo[40], seg_hi[40];
  int seg_chain[40], nseg = 0;
  for (int64_t ck = 0; ck < full;) {
    int q = -1;
    for (int i = 0; i < e.nchain; i++)
      if (e.chain[i].start / 16 == ck)
        q = i;
    int64_t hi = full;
    if (q >= 0) {
      hi = ck + e.chain[q].len / 16;
    } else {
      for (int i = 0; i < e.nchain; i++)
        if (e.chain[i].start / 16 > ck && e.chain[i].start / 16 < hi)
          hi = e.chain[i].start / 16;
    }
    seg_lo[nseg] = ck, seg_hi[nseg] = hi, seg_chain[nseg++] = q;
    ck = hi;
  }
  if (tail)
    seg_lo[nseg] = full, seg_hi[nseg] = full + 1, seg_chain[nseg++] = -1;
  Loop li;
  LLVMValueRef i = loop_begin(cg, &li, ci(c, na), "i");
  for (int sg = 0; sg < nseg; sg++) {
    bool is_tail = tail && seg_lo[sg] == full;
    LLVMValueRef mask = is_tail ? cg_vmask(cg, tail) : NULL;
    Loop lj;
    LLVMValueRef jc =
        is_tail ? ci(c, full)
                : add(c, loop_begin(cg, &lj, ci(c, seg_hi[sg] - seg_lo[sg]), "jc"),
                      ci(c, seg_lo[sg]));
    LLVMValueRef col = mul(c, jc, ci(c, 16));
    TileLoop tl;
    LLVMValueRef acc[RB];
    LLVMValueRef t = tile_loop_begin(cg, &tl, ci(c, k), RB, acc, true);
    LLVMValueRef bv = cg_vload(
        cg, at(c, b, ci(c, 0), add(c, mul(c, t, ci(c, m)), col)), mask);
    LLVMValueRef ai = add(c, mul(c, i, ci(c, k)), t);
    for (int r = 0; r < RB; r++) {
      LLVMValueRef args[3] = {cg_splat(cg, load(c, a, ci(c, r), ai)), bv,
                              acc[r]};
      acc[r] = cg_intrinsic(cg, cg->fma, args, 3);
    }
    tile_loop_end(cg, &tl, RB, acc, false);
    LLVMValueRef yo = add(c, mul(c, i, ci(c, m)), col);
    const Chain *ch = seg_chain[sg] >= 0 ? &e.chain[seg_chain[sg]] : NULL;
    for (int r = 0; r < RB; r++) {
      LLVMValueRef z = acc[r];
      if (e.s) {  // rows past the batch (garbage) read the last real row
        LLVMValueRef rr = LLVMBuildSelect(
            cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, ci(c, r), c->nb, ""),
            ci(c, r), LLVMBuildSub(cg->b, c->nb, ci(c, 1), ""), "");
        z = LLVMBuildFAdd(cg->b, z, cg_vload(cg, at(c, e.s, rr, yo), mask), "");
      }
      cg_vstore(cg, z, at(c, e.z, ci(c, r), yo), mask);
      if (!ch)
        continue;
      for (int q = 0; q < ch->n; q++) {
        const IrValue *u = ch->val[q];
        LLVMValueRef x[MAX_ARGS];
        for (int j = 0; j < u->narg; j++)
          x[j] = u->arg[j]->op == OP_CONST
                     ? cg_splat(cg, cg_f32(cg, u->arg[j]->attr.num))
                     : z;
        z = ew_op(cg, u, x);
      }
      cg_vstore(cg, z,
                at(c, ch->val[ch->n - 1], ci(c, r),
                   LLVMBuildSub(cg->b, yo, ci(c, ch->start), "")),
                mask);
    }
    if (!is_tail)
      loop_end(cg, &lj);
  }
  loop_end(cg, &li);
}

// The register-tiled y = a b^T for a block-backed a and an unbatched b (the
// backward loop's dz U^T): for each row j of b, RB vector accumulators of
// the block rows' dot products with it, b's row read once per block.
static void emit_matmul_nt_tiled(Lcg *c, const IrValue *v) {
  Cg *cg = c->cg;
  const IrValue *a = v->arg[0], *b = v->arg[1];
  int64_t m = a->shape.dim[a->shape.rank - 1], k = v->shape.dim[v->shape.rank - 1];
  int64_t na = shape_numel(a->shape) / m, full = m / 16, tail = m % 16;
  LLVMTypeRef vt = cg_vty(cg);
  Loop li, lj;
  LLVMValueRef i = loop_begin(cg, &li, ci(c, na), "i");
  LLVMValueRef j = loop_begin(cg, &lj, ci(c, k), "j");
  LLVMValueRef acc[RB];
  for (int r = 0; r < RB; r++)
    acc[r] = LLVMConstNull(vt);
  LLVMValueRef arow = mul(c, i, ci(c, m)), brow = mul(c, j, ci(c, m));
  if (full) {
    TileLoop tl;
    LLVMValueRef t = tile_loop_begin(cg, &tl, ci(c, full), RB, acc, false);
    LLVMValueRef o = mul(c, t, ci(c, 16));
    LLVMValueRef bv = cg_vload(cg, at(c, b, ci(c, 0), add(c, brow, o)), NULL);
    for (int r = 0; r < RB; r++) {
      LLVMValueRef args[3] = {
          cg_vload(cg, at(c, a, ci(c, r), add(c, arow, o)), NULL), bv, acc[r]};
      acc[r] = cg_intrinsic(cg, cg->fma, args, 3);
    }
    tile_loop_end(cg, &tl, RB, acc, false);
  }
  if (tail) {
    LLVMValueRef mask = cg_vmask(cg, tail), o = ci(c, full * 16);
    LLVMValueRef bv = cg_vload(cg, at(c, b, ci(c, 0), add(c, brow, o)), mask);
    for (int r = 0; r < RB; r++) {
      LLVMValueRef args[3] = {
          cg_vload(cg, at(c, a, ci(c, r), add(c, arow, o)), mask), bv, acc[r]};
      acc[r] = cg_intrinsic(cg, cg->fma, args, 3);
    }
  }
  for (int r = 0; r < RB; r++) {
    LLVMValueRef s = cg_f32(cg, 0);
    for (int q = 0; q < 16; q++)
      s = LLVMBuildFAdd(
          cg->b, s,
          LLVMBuildExtractElement(cg->b, acc[r],
                                  LLVMConstInt(cg->t_i32, (unsigned)q, 0), ""),
          "");
    store(c, v, ci(c, r), add(c, mul(c, i, ci(c, k)), j), s);
  }
  loop_end(cg, &lj);
  loop_end(cg, &li);
}

// y = a b^T, a [..., m] per row, b [k, m]: dot products of rows of a and
// b, 16 lanes at a time (a masked tail), summed lane by lane at the end.
static void emit_matmul_nt(Lcg *c, const IrValue *v) {
  Cg *cg = c->cg;
  const IrValue *a = v->arg[0], *b = v->arg[1];
  int64_t m = a->shape.dim[a->shape.rank - 1], k = v->shape.dim[v->shape.rank - 1];
  int64_t na = shape_numel(a->shape) / m, full = m / 16, tail = m % 16;
  LLVMTypeRef vt = cg_vty(cg);
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, v->batched);
  LLVMValueRef ra = a->batched ? r : ci(c, 0), rb = b->batched ? r : ci(c, 0);
  Loop li, lj;
  LLVMValueRef i = loop_begin(cg, &li, ci(c, na), "i");
  LLVMValueRef j = loop_begin(cg, &lj, ci(c, k), "j");
  LLVMValueRef pa = at(c, a, ra, mul(c, i, ci(c, m)));
  LLVMValueRef pb = at(c, b, rb, mul(c, j, ci(c, m)));
  LLVMValueRef acc = cg_alloca(cg, vt, "acc");
  LLVMBuildStore(cg->b, LLVMConstNull(vt), acc);
  if (full > 0) {
    Loop lt;
    LLVMValueRef t = loop_begin(cg, &lt, ci(c, full), "t");
    LLVMValueRef o = mul(c, t, ci(c, 16));
    LLVMValueRef args[3] = {cg_vload(cg, cg_gep(cg, pa, o), NULL),
                            cg_vload(cg, cg_gep(cg, pb, o), NULL),
                            LLVMBuildLoad2(cg->b, vt, acc, "")};
    LLVMBuildStore(cg->b, cg_intrinsic(cg, cg->fma, args, 3), acc);
    loop_end(cg, &lt);
  }
  if (tail > 0) {
    LLVMValueRef mask = cg_vmask(cg, tail), o = ci(c, full * 16);
    LLVMValueRef args[3] = {cg_vload(cg, cg_gep(cg, pa, o), mask),
                            cg_vload(cg, cg_gep(cg, pb, o), mask),
                            LLVMBuildLoad2(cg->b, vt, acc, "")};
    LLVMBuildStore(cg->b, cg_intrinsic(cg, cg->fma, args, 3), acc);
  }
  LLVMValueRef av = LLVMBuildLoad2(cg->b, vt, acc, "");
  LLVMValueRef s = cg_f32(cg, 0);
  for (int q = 0; q < 16; q++)
    s = LLVMBuildFAdd(cg->b, s,
                      LLVMBuildExtractElement(cg->b, av,
                                              LLVMConstInt(cg->t_i32, (unsigned)q, 0),
                                              ""),
                      "");
  store(c, v, r, add(c, mul(c, i, ci(c, k)), j), s);
  loop_end(cg, &lj);
  loop_end(cg, &li);
  rows_end(c, &rw);
}

// Copies between the slab start..start+len of axis `axis` of `big` and all
// of `small` (ir's slab_copy in eval.c), for the rows big has.
static void slab(Lcg *c, const IrValue *big, const IrValue *small, int axis,
                 int64_t start, bool to_big) {
  Cg *cg = c->cg;
  int64_t outer = shape_outer(big->shape, axis);
  int64_t inner = shape_inner(big->shape, axis);
  int64_t blen = big->shape.dim[axis], slen = small->shape.dim[axis];
  Rows rw;
  LLVMValueRef r = rows_begin(c, &rw, big->batched);
  LLVMValueRef rs = small->batched ? r : ci(c, 0);
  Loop lo, li;
  LLVMValueRef o = loop_begin(cg, &lo, ci(c, outer), "o");
  LLVMValueRef i = loop_begin(cg, &li, ci(c, slen * inner), "i");
  LLVMValueRef bi = add(c, mul(c, add(c, mul(c, o, ci(c, blen)), ci(c, start)),
                               ci(c, inner)),
                        i);
  LLVMValueRef si = add(c, mul(c, o, ci(c, slen * inner)), i);
  if (to_big)
    store(c, big, r, bi, load(c, small, rs, si));
  else
    store(c, small, rs, si, load(c, big, r, bi));
  loop_end(cg, &li);
  loop_end(cg, &lo);
  rows_end(c, &rw);
}

// Copies n floats per row from src (row stride ss) to dst (row stride ds)
// for the block's rows.
static void copy_rows(Lcg *c, LLVMValueRef dst, int64_t ds, LLVMValueRef src,
                      int64_t ss, int64_t n) {
  Cg *cg = c->cg;
  Loop lr, lf;
  LLVMValueRef r = loop_begin(cg, &lr, c->nb, "r");
  LLVMValueRef f = loop_begin(cg, &lf, ci(c, n), "f");
  cg_store(cg, cg_load(cg, src, add(c, mul(c, r, ci(c, ss)), f)), dst,
           add(c, mul(c, r, ci(c, ds)), f));
  loop_end(cg, &lf);
  loop_end(cg, &lr);
}

static void emit_body_value(Lcg *c, const IrValue *x) {
  const IrLoop *l = c->l;
  Cg *cg = c->cg;
  int i = x->id;
  switch (c->p.kind[i]) {
  case SL_SEQ: {
    int64_t n = shape_numel(x->shape);
    LLVMValueRef row = x->batched ? mul(c, c->row0, ci(c, l->T)) : ci(c, 0);
    c->base[i] = cg_gep(cg, operand(c, x->attr.index),
                        mul(c, add(c, row, c->t), ci(c, n)));
    return;
  }
  case SL_OUTER: {
    LLVMValueRef p = operand(c, l->nseq + l->ncarry + x->attr.index);
    c->base[i] = x->batched ? cg_gep(cg, p, mul(c, c->row0,
                                                ci(c, shape_numel(x->shape))))
                            : p;
    return;
  }
  case SL_CARRY:
    c->base[i] = cg_gep(cg, c->scr, ci(c, c->p.off[i]));
    return;
  case SL_VIEW:
    c->base[i] = cg_gep(cg, c->base[x->arg[0]->id], ci(c, c->p.off[i]));
    return;
  case SL_OWN:
    c->base[i] = cg_gep(cg, c->scr, ci(c, c->p.off[i]));
    if (c->done[i])
      return;  // computed in a matmul's epilogue
    break;
  }
  switch (prims[x->op].kind) {
  case PK_LEAF:
    if (x->op == OP_LOOP_INDEX)
      cg_store(cg, LLVMBuildSIToFP(cg->b, c->t, cg->t_f32, ""), c->base[i],
               ci(c, 0));
    else  // CONST (read as a constant by its users; stored for any other)
      cg_store(cg, cg_f32(cg, x->attr.num), c->base[i], ci(c, 0));
    return;
  case PK_EW:
    emit_ew(c, x);
    return;
  case PK_REDUCE:
    if (x->op == OP_SOFTMAX || x->op == OP_LOG_SOFTMAX)
      emit_softmax(c, x);
    else
      emit_reduce(c, x);
    return;
  case PK_MATMUL:
    assert(x->op != OP_MATMUL_TN && "no batch sums inside a loop");
    if (!x->arg[1]->batched && block_rows(c, x->arg[0]))
      (x->op == OP_MATMUL ? emit_matmul_tiled : emit_matmul_nt_tiled)(c, x);
    else if (x->op == OP_MATMUL)
      emit_matmul(c, x);
    else
      emit_matmul_nt(c, x);
    return;
  default:
    break;
  }
  switch (x->op) {
  case OP_SLICE:
    slab(c, x->arg[0], x, x->attr.axis, x->attr.start, false);
    return;
  case OP_EMBED:
    zero(c, x);
    slab(c, x, x->arg[0], x->attr.axis, x->attr.start, true);
    return;
  case OP_CONCAT:
    slab(c, x, x->arg[0], x->attr.axis, 0, true);
    slab(c, x, x->arg[1], x->attr.axis, x->arg[0]->shape.dim[x->attr.axis],
         true);
    return;
  default:
    assert(!"sema admits no such primitive in a loop body");
    unreachable();
  }
}

// One step at time position c->t for the block.
static void emit_step(Lcg *c) {
  const IrLoop *l = c->l;
  Cg *cg = c->cg;
  for (int i = 0; i < l->body->values.n; i++)
    emit_body_value(c, l->body->values.item[i]);
  // Row t of the record: record[(row0 + r) T + t][off ..]
  LLVMValueRef rec = cg_gep(
      cg, c->k->out,
      mul(c, add(c, mul(c, c->row0, ci(c, l->T)), c->t), ci(c, l->R)));
  for (int q = 0; q < l->nrec; q++) {
    const IrValue *x = l->rec[q];
    copy_rows(c, cg_gep(cg, rec, ci(c, l->rec_off[q])), l->T * l->R,
              c->base[x->id], c->p.stride[x->id], shape_numel(x->shape));
  }
  for (int k = 0; k < l->ncarry; k++) {
    const IrValue *x = l->next[k];
    int64_t n = shape_numel(x->shape);
    copy_rows(c, cg_gep(cg, c->scr, ci(c, c->p.stage_off[k])), n,
              c->base[x->id], c->p.stride[x->id], n);
  }
  for (int k = 0; k < l->ncarry; k++) {
    int64_t n = shape_numel(l->next[k]->shape);
    copy_rows(c, cg_gep(cg, c->scr, ci(c, c->p.carry_off[k])), n,
              cg_gep(cg, c->scr, ci(c, c->p.stage_off[k])), n, n);
  }
}

void emit_LOOP(Kern *k, const IrValue *v) {
  Cg *cg = k->cg;
  const IrLoop *l = v->attr.loop;
  Lcg c = {.cg = cg, .k = k, .v = v, .l = l};
  loop_plan(cg->arena, l, &c.p);
  int nb = l->body->values.n;
  c.base = arena_alloc(cg->arena, sizeof *c.base * (size_t)(nb + 1));
  c.done = arena_alloc(cg->arena, (size_t)nb + 1);
  c.uses = arena_alloc(cg->arena, sizeof *c.uses * (size_t)(nb + 1));
  for (int i = 0; i < nb; i++) {
    const IrValue *x = l->body->values.item[i];
    for (int j = 0; j < x->narg; j++)
      c.uses[x->arg[j]->id]++;
  }
  for (int q = 0; q < l->nrec; q++)
    c.uses[l->rec[q]->id]++;
  for (int q = 0; q < l->ncarry; q++)
    c.uses[l->next[q]->id]++;
  LLVMBuilderRef b = cg->b;
  // blocks = ceil(rows / RB), split into min(blocks, MAX_TASKS) tasks.
  LLVMValueRef blocks = LLVMBuildSDiv(
      b, LLVMBuildAdd(b, k->rows, cg_i64(cg, RB - 1), ""), cg_i64(cg, RB), "");
  LLVMValueRef few = LLVMBuildICmp(b, LLVMIntSLT, blocks,
                                   cg_i64(cg, MAX_TASKS), "");
  LLVMValueRef ntasks =
      LLVMBuildSelect(b, few, blocks, cg_i64(cg, MAX_TASKS), "");
  LLVMValueRef task = kern_parallel(
      k, ntasks, arena_printf(cg->arena, "k%d.loop", v->id));
  // kern_parallel moved the builder: recompute the counts from its rows.
  blocks = LLVMBuildSDiv(b, LLVMBuildAdd(b, k->rows, cg_i64(cg, RB - 1), ""),
                         cg_i64(cg, RB), "");
  few = LLVMBuildICmp(b, LLVMIntSLT, blocks, cg_i64(cg, MAX_TASKS), "");
  ntasks = LLVMBuildSelect(b, few, blocks, cg_i64(cg, MAX_TASKS), "");
  LLVMValueRef first = LLVMBuildSDiv(b, cg_mul(cg, task, blocks), ntasks, "");
  LLVMValueRef last = LLVMBuildSDiv(
      b, cg_mul(cg, cg_add(cg, task, cg_i64(cg, 1)), blocks), ntasks, "");
  c.scr = cg_gep(cg, k->scratch, cg_mul(cg, task, cg_i64(cg, c.p.block)));
  Loop lb;
  LLVMValueRef bi =
      loop_begin(cg, &lb, LLVMBuildSub(b, last, first, ""), "block");
  c.row0 = cg_mul(cg, cg_add(cg, first, bi), cg_i64(cg, RB));
  LLVMValueRef left = LLVMBuildSub(b, k->rows, c.row0, "");
  c.nb = LLVMBuildSelect(
      b, LLVMBuildICmp(b, LLVMIntSLT, left, cg_i64(cg, RB), ""), left,
      cg_i64(cg, RB), "");
  // Carries from their initial values (batched operands).
  for (int q = 0; q < l->ncarry; q++) {
    int64_t n = shape_numel(l->leaf_carry[q]->shape);
    LLVMValueRef init = kern_ptr(k, v->arg[l->nseq + q]);
    copy_rows(&c, cg_gep(cg, c.scr, ci(&c, c.p.carry_off[q])), n,
              cg_gep(cg, init, cg_mul(cg, c.row0, cg_i64(cg, n))), n, n);
  }
  Loop ls;
  LLVMValueRef s = loop_begin(cg, &ls, cg_i64(cg, l->T), "step");
  c.t = l->reverse ? LLVMBuildSub(b, cg_i64(cg, l->T - 1), s, "") : s;
  emit_step(&c);
  loop_end(cg, &ls);
  loop_end(cg, &lb);
}
