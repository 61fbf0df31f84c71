// codegen_matmul.c — register-tiled matmul kernels with fused epilogues,
// split into tasks for the runtime's thread pool.
//
// Consumes a MATMUL, MATMUL_NT or MATMUL_TN value `mm` and the value `root`
// its kernel stores: mm itself, or an element-wise tree over mm that
// kernel_fuse (opt.c) let the matmul compute in its epilogue (bias, ReLU,
// the backward ReLU mask). Produces the kernel's code through Kern.
//
// All three forms are one GEMM, out[i, j] = epi(sum_t A(i, t) B(t, j)):
//
//   form       out (R x N)       A(i, t)             B(t, j)             T
//   MATMUL     rows x M          a[i*K + t]          b[t*M + j]          K
//   MATMUL_NT  rows x K          a[i*M + t]          packed b^T[t*K + j] M
//   MATMUL_TN  K x M             a[t*K + i]          b[t*M + j]          rows
//
// (a: rows x K or rows x M, b the second argument; rows = batch x leading
// axes, a run-time value; every other size is known at compile time.)
// MATMUL_NT first packs the columns it computes of b^T into scratch memory,
// so every form reads B as unit-stride rows of 16-float vectors.
//
// The micro-kernel is a register tile of mr rows x nv vectors of 16 floats
// (<16 x float>, one zmm register each): nv = min(4, ceil(N / 16)), mr =
// 24 / nv, so 24 accumulators plus nv B vectors and one broadcast A value
// stay in the 32 registers. Per reduction step t it loads nv B vectors and
// mr A scalars (broadcast) and issues mr x nv llvm.fma. The accumulators are
// loop phis; the epilogue evaluates `root` on each accumulator vector (other
// leaves loaded as vectors, or broadcast) and stores it. Column tails are
// known at compile time (masked loads and stores, llvm.masked.*); row tails
// are run-time (rows % mr) and use tiles of 4, 2, 1 ... rows. Loads and
// stores say align 4: nothing better is proven (LLVM-NOTES trap 4).
// A weight gradient (MATMUL_TN) that codegen.c marked in cg->opt_fused
// runs the optimizer in its epilogue instead of storing the gradient.
// Outputs of at most 12 columns use the dot-product form instead (dot_form:
// vectors along the reduction, one accumulator per output element).
//
// Determinism: every output element is one fma chain over t = 0, 1, ...,
// T-1, the same in every tile variant and task. Tasks split the output by
// column blocks and row chunks, never the reduction; their number depends
// only on the shapes and `rows`. So results do not depend on the thread
// count, bit for bit.
#include <assert.h>
#include <string.h>

#include "codegen_internal.h"

enum {
  VL = 16,       // floats per vector
  MAX_NV = 4,    // vectors per tile row (Cg.max_nv: the target's)
  ACCS = 24,     // accumulators per tile at most (Cg.accs: the target's)
  MAX_MR = ACCS, // rows per tile
};
// Below SERIAL_FLOPS a matmul runs on the calling thread; above, it is cut
// into tasks of about TASK_FLOPS (4 MFLOP is ~20 us of work at ~200
// GFLOP/s, next to well under 1 us to hand it to a spinning thread; smaller
// tasks cost more in panel reloads and row tails than they gain in balance:
// 1 MFLOP lost ~20 % of fashion_mlp's inference throughput at batch 1000).
// Splitting a kernel of a few microseconds does not pay: its data then
// crosses between the cores, before and after. At 1 MFLOP (was 128k)
// softmax_regression's two 0.5 MFLOP kernels run on the calling thread,
// and its epoch went from 15.2 to 13.9 ms (8 of 8 interleaved rounds);
// the pool's worker gathers the next batch meanwhile. -D overrides them,
// for measurements.
#ifndef SERIAL_FLOPS
#define SERIAL_FLOPS (1 << 20)
#endif
#ifndef TASK_FLOPS
#define TASK_FLOPS (1 << 22)
#endif
// At least this many tasks above SERIAL_FLOPS: with two, a worker busy
// with the background gather (nnrt_batch_prefetch) for the first microseconds
// of a kernel would leave all of it to the calling thread; with four it
// still finds half of the work.
#ifndef MIN_TASKS
#define MIN_TASKS 4
#endif
#ifndef MIN_ROWS
#define MIN_ROWS 4 // rows per task at least (a 4-row tile is ~full speed)
#endif

// ---- integer helpers ----------------------------------------------------------
static LLVMValueRef i64c(Cg *cg, int64_t v) {
  return cg_i64(cg, v);
}

static LLVMValueRef sdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSDiv(cg->b, a, b, "");
}

static LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWSub(cg->b, a, b, "");
}

static LLVMValueRef smin(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, ""), a,
                         b, "");
}

static LLVMValueRef smax(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, a, b, ""), a,
                         b, "");
}

// ceil(a / b) for a >= 0, b > 0.
static LLVMValueRef cdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return sdiv(cg, cg_add(cg, a, sub(cg, b, i64c(cg, 1))), b);
}

// ---- which values a matmul kernel computes ------------------------------------
static int64_t last_dim(const IrValue *v) {
  return v->shape.dim[v->shape.rank - 1];
}

// The inline matmul in v's inline tree (kernel_fuse allows at most one).
static const IrValue *inline_matmul(Cg *cg, const IrValue *v) {
  for (int i = 0; i < v->narg; i++) {
    const IrValue *a = v->arg[i];
    if (!cg->inl[a->id])
      continue;
    if (prims[a->op].kind == PK_MATMUL)
      return a;
    const IrValue *r = inline_matmul(cg, a);
    if (r)
      return r;
  }
  return NULL;
}

const IrValue *kernel_matmul(Cg *cg, const IrValue *v) {
  if (prims[v->op].kind == PK_MATMUL)
    return v;
  if (prims[v->op].kind != PK_EW)
    return NULL;
  return inline_matmul(cg, v);
}

// A MATMUL or MATMUL_NT with at most 12 output columns (a classifier's 10
// logits) would fill 10 of 16 lanes in the broadcast form, with a load per
// FMA. Instead each output is a dot product along the reduction: vectors of
// 16 consecutive t of an A row and of a row of B^T, a tile of mr rows x N
// columns of accumulators whose lanes are summed at the end (lane_sums).
// Every lane does useful work. MATMUL_NT's b is B^T already (weight_layout
// stores such weights transposed for this); MATMUL's is packed once per
// call, before the tasks start.
static bool dot_form(const IrValue *mm) {
  return (mm->op == OP_MATMUL || mm->op == OP_MATMUL_NT) &&
         last_dim(mm) <= 12 && last_dim(mm->arg[0]) >= VL;
}

int64_t mm_scratch(const IrValue *mm) {
  // (MATMUL_NT packs B^T unless it takes the dot form; MATMUL does in the
  // dot form, which a target with few registers may not take: either way
  // the same size)
  bool packs = mm->op == OP_MATMUL_NT || (dot_form(mm) && mm->op == OP_MATMUL);
  return packs ? shape_numel(mm->arg[1]->shape) : 0;
}

// ---- the GEMM -------------------------------------------------------------------
typedef struct Gemm {
  Kern *k;
  Cg *cg;
  const IrValue *root, *mm;
  LLVMValueRef a, b, out;      // A and B operands (B maybe packed), output
  int64_t a_rs, a_ts, b_ts, N; // A(i,t) = a[i*a_rs + t*a_ts]; B(t,j) =
                               // b[t*b_ts + j]; out(i,j) = out[i*N + j]
  LLVMValueRef R, T;           // output rows, reduction length
  int mr, nv;                  // the main register tile
  int64_t nb, nfull;           // column blocks of 16 nv; how many are full
  bool dot;                    // the dot-product form (see dot_form)
} Gemm;

// Where an epilogue leaf's element (i, j) of the output lives.
typedef enum LeafAt {
  AT_ELEM,   // the output's own layout: u[i*N + j]
  AT_COL,    // a row vector broadcast down: u[j]
  AT_ROW,    // one value per output row: u[i]
  AT_SCALAR, // u[0]
} LeafAt;

// Mirrors kernel_fuse's rule (opt.c, epilogue_leaf): what it admits is
// exactly what these four forms can address.
static LeafAt leaf_at(const IrValue *u, const IrValue *mm) {
  Shape s = u->shape, o = mm->shape;
  int64_t n = shape_numel(s), N = last_dim(mm);
  if (shape_eq(s, o) && u->batched == mm->batched)
    return AT_ELEM;
  if (n == 1 && !u->batched)
    return AT_SCALAR;
  if (!u->batched && n == N && s.rank >= 1 && s.dim[s.rank - 1] == N)
    return AT_COL;
  if (u->batched == mm->batched && n == 1 && shape_numel(o) == N)
    return AT_ROW; // a per-example scalar, one output row per example
  if (u->batched == mm->batched && s.rank == o.rank && s.dim[s.rank - 1] == 1) {
    bool same = true;
    for (int i = 0; i + 1 < s.rank; i++)
      same &= s.dim[i] == o.dim[i];
    if (same)
      return AT_ROW;
  }
  assert(!"an epilogue leaf the matmul cannot address");
  unreachable();
}

// The epilogue: v at output row `row`, columns col .. col+15 (masked lanes
// are don't-care), with mm's value there given as `acc`.
static LLVMValueRef epi(Gemm *g, const IrValue *v, LLVMValueRef row,
                        LLVMValueRef col, LLVMValueRef mask, LLVMValueRef acc) {
  Cg *cg = g->cg;
  if (v == g->mm)
    return acc;
  if (v == g->root || cg->inl[v->id]) {
    if (v->op == OP_CONST)
      return cg_splat(cg, cg_f32(cg, v->attr.num));
    if (v->op == OP_BATCH_SIZE)
      return cg_splat(cg, LLVMBuildSIToFP(cg->b, g->k->rows, cg->t_elt, ""));
    assert(prims[v->op].kind == PK_EW);
    LLVMValueRef x[MAX_ARGS];
    for (int i = 0; i < v->narg; i++)
      x[i] = epi(g, v->arg[i], row, col, mask, acc);
    return ew_op(cg, v, x);
  }
  LLVMValueRef p = kern_ptr(g->k, v);
  switch (leaf_at(v, g->mm)) {
  case AT_ELEM:
    return cg_vload(
        cg, cg_gep(cg, p, cg_add(cg, cg_mul(cg, row, i64c(cg, g->N)), col)),
        mask);
  case AT_COL:
    return cg_vload(cg, cg_gep(cg, p, col), mask);
  case AT_ROW:
    return cg_splat(cg, cg_load(cg, p, row));
  case AT_SCALAR:
    return cg_splat(cg, cg_load(cg, p, i64c(cg, 0)));
  }
  unreachable();
}

// The optimizer applied to 16 elements of the parameter (element offset
// idx) whose gradient the tile just computed: the gradient is never
// stored, and the parameter and its states are read and written once.
// It runs in two halves, opt_load and opt_store, so that a tile can load
// row i + 1 before it stores row i: rows narrower than a vector (N = 10)
// sit 40 bytes apart, a masked 64-byte store overlaps the next row's load,
// and a load that follows such a store waits for it to reach the cache
// (store-to-load forwarding fails), which made these kernels 2x slower.
typedef struct OptRow {
  LLVMValueRef mask, pp, sp[8];
  LLVMValueRef arg[4 + 8]; // parameter, gradient, step, states, lr
} OptRow;

static void opt_load(Gemm *g, LLVMValueRef idx, LLVMValueRef mask,
                     LLVMValueRef grad, OptRow *r) {
  Cg *cg = g->cg;
  Kern *k = g->k;
  int ns = cg->step->opt.nstate;
  assert(ns <= 8);
  r->mask = mask;
  r->pp = cg_gep(cg, k->opt_p, idx);
  r->arg[0] = cg_vload(cg, r->pp, mask);
  r->arg[1] = grad;
  r->arg[2] = k->opt_t;
  r->arg[3 + ns] = k->opt_lr;
  for (int s = 0; s < ns; s++) {
    r->sp[s] =
        cg_gep(cg, k->opt_st, cg_add(cg, idx, i64c(cg, s * cg->param_numel)));
    r->arg[3 + s] = cg_vload(cg, r->sp[s], mask);
  }
}

static void opt_store(Gemm *g, OptRow *r) {
  Cg *cg = g->cg;
  LLVMValueRef res[1 + 8];
  opt_eval(cg, r->arg, res);
  cg_vstore(cg, res[0], r->pp, r->mask);
  for (int s = 0; s < cg->step->opt.nstate; s++)
    cg_vstore(cg, res[1 + s], r->sp[s], r->mask);
}

// A vector whose lane j is the sum of the lanes of v[j], j < n <= 16: four
// rounds, each packing pairs of vectors into one while adding the two
// halves of every block of lanes (blocks of 16 -> 8 -> 4 -> 2 -> 1 lanes),
// then one shuffle that puts the sums in order. src[vector][block] follows
// which input a block of lanes sums (-1: padding).
static LLVMValueRef lane_sums(Cg *cg, LLVMValueRef *v, int n) {
  LLVMValueRef cur[VL], zero = LLVMConstNull(cg_vty(cg));
  int src[VL][VL];
  int m = n;
  assert(n >= 1 && n <= VL);
  for (int i = 0; i < n; i++) {
    cur[i] = v[i];
    src[i][0] = i;
  }
  for (int blk = VL; blk > 1; blk /= 2) {
    int h = blk / 2, pairs = (m + 1) / 2;
    for (int p = 0; p < pairs; p++) {
      bool odd = 2 * p + 1 == m; // no partner: pair with zeros
      LLVMValueRef x = cur[2 * p], y = odd ? zero : cur[2 * p + 1];
      LLVMValueRef lo[VL], hi[VL];
      int ns[VL];
      for (int l = 0; l < VL; l++) {
        int k = l / h, off = l % h; // output block k of h lanes takes
        int from = k % 2 ? VL : 0;  // block k / 2 of x (k even) or y (odd)
        int at = from + (k / 2) * blk + off;
        lo[l] = LLVMConstInt(cg->t_i32, (unsigned)at, 0);
        hi[l] = LLVMConstInt(cg->t_i32, (unsigned)(at + h), 0);
        if (off == 0)
          ns[k] =
              k % 2 ? (odd ? -1 : src[2 * p + 1][k / 2]) : src[2 * p][k / 2];
      }
      LLVMValueRef a =
          LLVMBuildShuffleVector(cg->b, x, y, LLVMConstVector(lo, VL), "");
      LLVMValueRef c =
          LLVMBuildShuffleVector(cg->b, x, y, LLVMConstVector(hi, VL), "");
      cur[p] = LLVMBuildFAdd(cg->b, a, c, "");
      memcpy(src[p], ns, sizeof ns);
    }
    m = pairs;
  }
  LLVMValueRef order[VL];
  for (int j = 0; j < VL; j++) {
    int at = 0;
    for (int l = 0; l < VL; l++)
      if (src[0][l] == j)
        at = l;
    order[j] = LLVMConstInt(cg->t_i32, (unsigned)at, 0);
  }
  return LLVMBuildShuffleVector(cg->b, cur[0], LLVMGetPoison(cg_vty(cg)),
                                LLVMConstVector(order, VL), "");
}

// Stores output row `row`, columns col .. col+15 (masked by m), given mm's
// sums there: the epilogue's value, or the optimizer's update, which is
// stored one vector late (*pending) so that the next vector's loads come
// before this one's stores (see opt_load).
static void tile_store(Gemm *g, LLVMValueRef row, LLVMValueRef col,
                       LLVMValueRef m, LLVMValueRef sum, OptRow *pending,
                       bool *have) {
  Cg *cg = g->cg;
  LLVMValueRef val = epi(g, g->root, row, col, m, sum);
  LLVMValueRef at = cg_add(cg, cg_mul(cg, row, i64c(cg, g->N)), col);
  if (g->k->k->opt_param < 0) {
    cg_vstore(cg, val, cg_gep(cg, g->out, at), m);
    return;
  }
  OptRow cur;
  opt_load(g, at, m, val, &cur);
  if (*have)
    opt_store(g, pending);
  *pending = cur, *have = true;
}

// A tile of the dot-product form: output rows row0 .. row0+mr-1, all N
// columns (tmask). The loop takes 16 t at a time; the last K % 16 are one
// masked step after it.
static void dot_tile(Gemm *g, LLVMValueRef row0, int mr, LLVMValueRef tmask) {
  Cg *cg = g->cg;
  int N = (int)g->N;
  int64_t K = last_dim(g->mm->arg[0]), rest = K % VL;
  assert(mr * N <= ACCS && K >= VL && g->k->k->opt_param < 0);
  LLVMValueRef ap[MAX_MR], acc[ACCS];
  for (int i = 0; i < mr; i++)
    ap[i] = cg_gep(cg, g->a,
                   cg_mul(cg, cg_add(cg, row0, i64c(cg, i)), i64c(cg, K)));
  TileLoop l;
  LLVMValueRef t0 =
      cg_mul(cg, tile_loop_begin(cg, &l, i64c(cg, K / VL), mr * N, acc, true),
             i64c(cg, VL));
  for (int part = 0; part < 2; part++) {
    LLVMValueRef m = part ? cg_vmask(cg, (int)rest) : NULL;
    LLVMValueRef av[MAX_MR];
    for (int i = 0; i < mr; i++)
      av[i] = cg_vload(cg, cg_gep(cg, ap[i], t0), m);
    for (int j = 0; j < N; j++) {
      LLVMValueRef bv =
          cg_vload(cg, cg_gep(cg, g->b, cg_add(cg, t0, i64c(cg, j * K))), m);
      for (int i = 0; i < mr; i++) {
        LLVMValueRef x[3] = {av[i], bv, acc[i * N + j]};
        acc[i * N + j] = cg_intrinsic(cg, cg->fma, x, 3);
      }
    }
    if (part == 0)
      tile_loop_end(cg, &l, mr * N, acc, false);
    if (rest == 0)
      break;
    t0 = i64c(cg, K - rest);
  }
  for (int i = 0; i < mr; i++)
    tile_store(g, cg_add(cg, row0, i64c(cg, i)), i64c(cg, 0), tmask,
               lane_sums(cg, &acc[i * N], N), NULL, NULL);
}

// One register tile: output rows row0 .. row0+mr-1, columns col0 ..
// col0 + 16 nv - 1 (the last vector masked by tmask when given).
static void gemm_tile(Gemm *g, LLVMValueRef row0, int mr, LLVMValueRef col0,
                      int nv, LLVMValueRef tmask) {
  Cg *cg = g->cg;
  if (g->dot) {
    dot_tile(g, row0, mr, tmask);
    return;
  }
  assert(mr >= 1 && mr <= MAX_MR && nv >= 1 && nv <= MAX_NV);
  LLVMValueRef ap[MAX_MR], bv[MAX_NV], acc[ACCS];
  for (int i = 0; i < mr; i++)
    ap[i] = cg_gep(
        cg, g->a, cg_mul(cg, cg_add(cg, row0, i64c(cg, i)), i64c(cg, g->a_rs)));
  LLVMValueRef bp = cg_gep(cg, g->b, col0);
  TileLoop l;
  LLVMValueRef t = tile_loop_begin(cg, &l, g->T, mr * nv, acc, true);
  LLVMValueRef boff = cg_mul(cg, t, i64c(cg, g->b_ts));
  for (int v = 0; v < nv; v++)
    bv[v] = cg_vload(cg, cg_gep(cg, bp, cg_add(cg, boff, i64c(cg, VL * v))),
                     v == nv - 1 ? tmask : NULL);
  LLVMValueRef aoff = cg_mul(cg, t, i64c(cg, g->a_ts));
  for (int i = 0; i < mr; i++) {
    LLVMValueRef s = cg_splat(cg, cg_load(cg, ap[i], aoff));
    for (int v = 0; v < nv; v++) {
      LLVMValueRef x[3] = {s, bv[v], acc[i * nv + v]};
      acc[i * nv + v] = cg_intrinsic(cg, cg->fma, x, 3);
    }
  }
  tile_loop_end(cg, &l, mr * nv, acc, false);
  OptRow pending;
  bool have = false;
  for (int i = 0; i < mr; i++)
    for (int v = 0; v < nv; v++)
      tile_store(g, cg_add(cg, row0, i64c(cg, i)),
                 cg_add(cg, col0, i64c(cg, VL * v)), v == nv - 1 ? tmask : NULL,
                 acc[i * nv + v], &pending, &have);
  if (have)
    opt_store(g, &pending);
}

// if (cond) { ...then } — returns the block to continue in after `then`.
static LLVMBasicBlockRef if_begin(Cg *cg, LLVMValueRef cond) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->lc, fn, "then");
  LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(cg->lc, fn, "");
  LLVMBuildCondBr(cg->b, cond, then, after);
  LLVMPositionBuilderAtEnd(cg->b, then);
  return after;
}

static void if_end(Cg *cg, LLVMBasicBlockRef after) {
  LLVMBuildBr(cg->b, after);
  LLVMPositionBuilderAtEnd(cg->b, after);
}

// Output rows [r0, r1) of one column block: full tiles of mr rows, then the
// rest (< mr) in tiles of the powers of two below mr.
static void gemm_rows(Gemm *g, LLVMValueRef r0, LLVMValueRef r1,
                      LLVMValueRef col0, int mr, int nv, LLVMValueRef tmask) {
  Cg *cg = g->cg;
  LLVMValueRef n = sub(cg, r1, r0);
  LLVMValueRef nfull = sdiv(cg, n, i64c(cg, mr));
  Loop l;
  LLVMValueRef f = loop_begin(cg, &l, nfull, "tile");
  gemm_tile(g, cg_add(cg, r0, cg_mul(cg, f, i64c(cg, mr))), mr, col0, nv,
            tmask);
  loop_end(cg, &l);
  if (mr == 1)
    return;
  LLVMValueRef base = cg_add(cg, r0, cg_mul(cg, nfull, i64c(cg, mr)));
  LLVMValueRef rem = sub(cg, n, cg_mul(cg, nfull, i64c(cg, mr)));
  int top = 1;
  while (top * 2 < mr)
    top *= 2;
  for (int bit = top; bit >= 1; bit /= 2) {
    LLVMValueRef has = LLVMBuildICmp(
        cg->b, LLVMIntNE, LLVMBuildAnd(cg->b, rem, i64c(cg, bit), ""),
        i64c(cg, 0), "");
    LLVMBasicBlockRef after = if_begin(cg, has);
    LLVMValueRef at = cg_add(
        cg, base, LLVMBuildAnd(cg->b, rem, i64c(cg, -2 * (int64_t)bit), ""));
    gemm_tile(g, at, bit, col0, nv, tmask);
    if_end(cg, after);
  }
}

// How the output is cut into tasks, computed the same way in kN.op and in
// its body (it depends on shapes and rows only).
typedef struct Split {
  LLVMValueRef serial;  // i1: one task does everything
  LLVMValueRef rc, nrc; // rows per chunk, row chunks
  LLVMValueRef ntasks;
} Split;

static Split split_of(Gemm *g) {
  Cg *cg = g->cg;
  Split s;
  LLVMValueRef flops = cg_mul(cg, cg_mul(cg, g->T, g->R), i64c(cg, 2 * g->N));
  s.serial =
      LLVMBuildICmp(cg->b, LLVMIntSLT, flops, i64c(cg, SERIAL_FLOPS), "");
  if (g->mm->op == OP_MATMUL_NT && !g->dot) {
    // Each task packs its own columns of b^T, so tasks split columns only.
    s.rc = smax(cg, g->R, i64c(cg, 1));
    s.nrc = i64c(cg, 1);
  } else {
    // About TASK_FLOPS per task (at least MIN_TASKS), an even number of them
    // (two threads share them evenly), spread over the column blocks, then
    // over equal row chunks of at least MIN_ROWS rows.
    LLVMValueRef want =
        smax(cg, cdiv(cg, flops, i64c(cg, TASK_FLOPS)), i64c(cg, MIN_TASKS));
    want = cg_mul(cg, cdiv(cg, want, i64c(cg, 2)), i64c(cg, 2));
    LLVMValueRef nrc = cdiv(cg, want, i64c(cg, g->nb));
    nrc = smin(cg, nrc,
               smax(cg, sdiv(cg, g->R, i64c(cg, MIN_ROWS)), i64c(cg, 1)));
    s.rc = smax(cg, cdiv(cg, g->R, nrc), i64c(cg, 1));
    // Chunks longer than a tile take whole tiles (the row tails then fall in
    // the last chunk only), unless there are so few tasks that the longest
    // one sets the kernel's time: then chunks are even, in multiples of
    // MIN_ROWS (32 rows in 12-row tiles: 16 + 16, not 24 + 8).
    LLVMValueRef mr = i64c(cg, g->mr), four = i64c(cg, MIN_ROWS);
    LLVMValueRef few = LLVMBuildICmp(
        cg->b, LLVMIntSLE, cg_mul(cg, nrc, i64c(cg, g->nb)), i64c(cg, 4), "");
    LLVMValueRef whole =
        LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, s.rc, mr, ""),
                        cg_mul(cg, cdiv(cg, s.rc, mr), mr), s.rc, "");
    s.rc = LLVMBuildSelect(cg->b, few, cg_mul(cg, cdiv(cg, s.rc, four), four),
                           whole, "");
    s.nrc = smax(cg, cdiv(cg, g->R, s.rc), i64c(cg, 1));
  }
  s.ntasks = LLVMBuildSelect(cg->b, s.serial, i64c(cg, 1),
                             cg_mul(cg, s.nrc, i64c(cg, g->nb)), "");
  return s;
}

static LLVMValueRef matrix_rows(Kern *k, const IrValue *a) {
  int64_t lead = shape_numel(a->shape) / last_dim(a);
  return a->batched ? cg_mul(k->cg, k->rows, i64c(k->cg, lead))
                    : i64c(k->cg, lead);
}

// Operands, sizes and strides from the kernel's current arguments.
static void gemm_setup(Gemm *g) {
  Kern *k = g->k;
  Cg *cg = g->cg;
  const IrValue *mm = g->mm, *A = mm->arg[0], *B = mm->arg[1];
  int64_t ka = last_dim(A);
  g->N = last_dim(mm);
  g->a = kern_ptr(k, A);
  g->out = k->out;
  switch (mm->op) {
  case OP_MATMUL:
    g->R = matrix_rows(k, A), g->T = i64c(cg, ka);
    g->a_rs = ka, g->a_ts = 1;
    g->b = kern_ptr(k, B), g->b_ts = g->N;
    break;
  case OP_MATMUL_NT:
    g->R = matrix_rows(k, A), g->T = i64c(cg, ka);
    g->a_rs = ka, g->a_ts = 1;
    g->b = k->scratch, g->b_ts = g->N;
    break;
  case OP_MATMUL_TN:
    g->R = i64c(cg, ka), g->T = matrix_rows(k, A);
    g->a_rs = 1, g->a_ts = ka;
    g->b = kern_ptr(k, B), g->b_ts = g->N;
    break;
  default:
    assert(!"not a matmul");
  }
  g->nv = (int)((g->N + VL - 1) / VL);
  if (g->nv > cg->max_nv)
    g->nv = cg->max_nv;
  g->mr = cg->accs / g->nv;
  // The dot form keeps N accumulators per row: only where they fit.
  g->dot = dot_form(mm) && g->N <= cg->accs;
  if (g->dot) { // B^T (packed in scratch for MATMUL); mr rows x N dots
    g->b = mm->op == OP_MATMUL ? k->scratch : kern_ptr(k, B), g->b_ts = ka;
    g->mr = (int)(cg->accs / g->N);
  }
  int64_t nr = VL * g->nv;
  g->nb = (g->N + nr - 1) / nr;
  g->nfull = g->N / nr;
}

// Scalar b^T[t, col] = b[col, t] over t in [t0, t1), col in [c0, c1).
static void pack_scalar(Gemm *g, LLVMValueRef src, int64_t M, LLVMValueRef t0,
                        LLVMValueRef t1, LLVMValueRef c0, LLVMValueRef c1) {
  Cg *cg = g->cg;
  Loop lt, lj;
  LLVMValueRef t = cg_add(cg, t0, loop_begin(cg, &lt, sub(cg, t1, t0), "pt"));
  LLVMValueRef drow = cg_gep(cg, g->b, cg_mul(cg, t, i64c(cg, g->N)));
  LLVMValueRef col = cg_add(cg, c0, loop_begin(cg, &lj, sub(cg, c1, c0), "pj"));
  cg_store(cg, cg_load(cg, src, cg_add(cg, cg_mul(cg, col, i64c(cg, M)), t)),
           drow, col);
  loop_end(cg, &lj);
  loop_end(cg, &lt);
}

// MATMUL_NT: b^T[t, j] = b[j, t] for the columns [c0, c1) this task computes,
// in 16 x 16 blocks transposed in registers, the edges element by element.
static void pack_bt(Gemm *g, LLVMValueRef c0, LLVMValueRef c1) {
  Cg *cg = g->cg;
  const IrValue *B = g->mm->arg[1];
  LLVMValueRef src = kern_ptr(g->k, B);
  int64_t M = last_dim(B); // = T
  int64_t tb = M / VL;     // full blocks along t
  LLVMValueRef cb = sdiv(cg, sub(cg, c1, c0), i64c(cg, VL));
  LLVMValueRef cfull = cg_add(cg, c0, cg_mul(cg, cb, i64c(cg, VL)));
  if (tb > 0) {
    Loop lt, lc;
    LLVMValueRef t0 =
        cg_mul(cg, loop_begin(cg, &lt, i64c(cg, tb), "bt"), i64c(cg, VL));
    LLVMValueRef col0 =
        cg_add(cg, c0, cg_mul(cg, loop_begin(cg, &lc, cb, "bc"), i64c(cg, VL)));
    LLVMValueRef r[VL];
    for (int i = 0; i < VL; i++)
      r[i] = cg_vload(
          cg,
          cg_gep(cg, src,
                 cg_add(cg,
                        cg_mul(cg, cg_add(cg, col0, i64c(cg, i)), i64c(cg, M)),
                        t0)),
          NULL);
    cg_transpose16(cg, r);
    for (int i = 0; i < VL; i++)
      cg_vstore(
          cg, r[i],
          cg_gep(cg, g->b,
                 cg_add(cg,
                        cg_mul(cg, cg_add(cg, t0, i64c(cg, i)), i64c(cg, g->N)),
                        col0)),
          NULL);
    loop_end(cg, &lc);
    loop_end(cg, &lt);
    // Columns past the last full block, for the blocked rows of t.
    pack_scalar(g, src, M, i64c(cg, 0), i64c(cg, tb * VL), cfull, c1);
  }
  if (tb * VL < M) // the rows of t past the last full block, all columns
    pack_scalar(g, src, M, i64c(cg, tb * VL), i64c(cg, M), c0, c1);
}

// The dot-product form's B^T[j, t] = b[t, j] (b: K x N, N < 16), for all
// of it: 16 rows of b (masked to N lanes) transposed in registers per block
// of 16 t, the last K % 16 element by element.
static void pack_dot_bt(Gemm *g) {
  Cg *cg = g->cg;
  LLVMValueRef src = kern_ptr(g->k, g->mm->arg[1]);
  int64_t K = last_dim(g->mm->arg[0]), N = g->N, tb = K / VL;
  LLVMValueRef mask = cg_vmask(cg, (int)N);
  Loop lt;
  LLVMValueRef t0 =
      cg_mul(cg, loop_begin(cg, &lt, i64c(cg, tb), "bt"), i64c(cg, VL));
  LLVMValueRef r[VL];
  for (int i = 0; i < VL; i++)
    r[i] = cg_vload(
        cg,
        cg_gep(cg, src, cg_mul(cg, cg_add(cg, t0, i64c(cg, i)), i64c(cg, N))),
        mask);
  cg_transpose16(cg, r);
  for (int j = 0; j < N; j++)
    cg_vstore(cg, r[j], cg_gep(cg, g->b, cg_add(cg, t0, i64c(cg, j * K))),
              NULL);
  loop_end(cg, &lt);
  for (int64_t t = tb * VL; t < K; t++)
    for (int64_t j = 0; j < N; j++)
      cg_store(cg, cg_load(cg, src, i64c(cg, t * N + j)), g->b,
               i64c(cg, j * K + t));
}

void mm_kernel(Kern *k, const IrValue *root, const IrValue *mm) {
  Cg *cg = k->cg;
  Gemm g = {.k = k, .cg = cg, .root = root, .mm = mm};
  gemm_setup(&g);
  if (g.dot && mm->op == OP_MATMUL) // once, before the tasks: all read it
    pack_dot_bt(&g);
  Split s = split_of(&g);
  size_t len;
  const char *name = LLVMGetValueName2(k->k->fn, &len);
  LLVMValueRef task = kern_parallel(k, s.ntasks, name);
  gemm_setup(&g); // the body's arguments
  s = split_of(&g);

  // This task: column blocks [cb0, cb1), output rows [r0, r1).
  LLVMValueRef cb = sdiv(cg, task, s.nrc);
  LLVMValueRef rc = LLVMBuildSRem(cg->b, task, s.nrc, "");
  LLVMValueRef cb0 = LLVMBuildSelect(cg->b, s.serial, i64c(cg, 0), cb, "");
  LLVMValueRef cb1 = LLVMBuildSelect(cg->b, s.serial, i64c(cg, g.nb),
                                     cg_add(cg, cb, i64c(cg, 1)), "");
  LLVMValueRef r0 =
      LLVMBuildSelect(cg->b, s.serial, i64c(cg, 0), cg_mul(cg, rc, s.rc), "");
  LLVMValueRef r1 = LLVMBuildSelect(cg->b, s.serial, g.R,
                                    smin(cg, cg_add(cg, r0, s.rc), g.R), "");
  int64_t nr = VL * g.nv;

  if (mm->op == OP_MATMUL_NT && !g.dot)
    pack_bt(&g, cg_mul(cg, cb0, i64c(cg, nr)),
            smin(cg, cg_mul(cg, cb1, i64c(cg, nr)), i64c(cg, g.N)));

  // Full column blocks, then the tail block (at most one, compile-time).
  if (g.nfull > 0) {
    Loop l;
    LLVMValueRef nfull =
        smax(cg, sub(cg, smin(cg, cb1, i64c(cg, g.nfull)), cb0), i64c(cg, 0));
    LLVMValueRef c = loop_begin(cg, &l, nfull, "cb");
    gemm_rows(&g, r0, r1, cg_mul(cg, cg_add(cg, cb0, c), i64c(cg, nr)), g.mr,
              g.nv, NULL);
    loop_end(cg, &l);
  }
  if (g.nfull < g.nb) {
    int64_t w = g.N - g.nfull * nr; // columns in the tail block
    int nv = (int)((w + VL - 1) / VL);
    int mr = g.dot                     ? g.mr
             : cg->accs / nv > MAX_MR ? MAX_MR
                                       : cg->accs / nv;
    LLVMBasicBlockRef after = if_begin(
        cg, LLVMBuildICmp(cg->b, LLVMIntSGT, cb1, i64c(cg, g.nfull), ""));
    gemm_rows(&g, r0, r1, i64c(cg, g.nfull * nr), mr, nv,
              w % VL ? cg_vmask(cg, (int)(w % VL)) : NULL);
    if_end(cg, after);
  }
}
