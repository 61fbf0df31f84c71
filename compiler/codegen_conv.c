// codegen_conv.c — kernels of the convolutional family: CONV, CONV_T,
// CONV_W, the pools (MAXPOOL, UNPOOL, POOL_SELECT, AVGPOOL, AVGPOOL_T) and
// the slab moves (CONCAT, SLICE, EMBED).
//
// Consumes one IR value of the family inside its kernel (Kern: the value's
// buffer, its arguments' buffers, a scratch region when conv_scratch asks
// for one, and the batch size) and emits the loops that compute it, with
// the semantics of eval.c (the oracle): channels-first examples [C, n...]
// with the batch axis outermost, weights [O, C/groups, k...], padding reads
// 0 in the convolutions and average pools and never wins a max, the first
// maximum in row-major kernel order is the argmax, average pools divide by
// the full window. Every size except the batch is a compile-time constant,
// so loops, masks and tiles are specialized on them.
//
// Geometry: 1-D and 2-D values are treated as 3-D with leading spatial axes
// of extent 1 (kernel 1, stride 1, no padding), which cost nothing once the
// constant loops fold. The output positions of one channel are `lines`
// (od, oh) of OW positions each.
//
// The convolutions are im2col + GEMM, one example (and one group) at a time:
//   Col[r, q]  r = (c, kd, kh, kw) over the group's channels and the kernel
//              (the weight's own layout), q = (line, ow) over a block of
//              output lines; positions in the padding read 0.
//   CONV       y_b[o, q]   = sum_r w[o, r] Col[r, q]          (A: w)
//   CONV_T     dCol[r, q]  = sum_o w[o, r] dy_b[o, q], then dCol is added
//              back to the positions it was read from (col2im) in dx_b
//   CONV_W     dw[o, r]    = sum_b sum_q dy_b[o, q] Col_b[r, q]
// The GEMMs of CONV and CONV_T are register tiles of mr rows x nv vectors
// of 16 floats (<16 x float>, llvm.fma, the A value broadcast), the columns
// (output positions) innermost; CONV_W is a tile of dot products over the
// columns whose 16 lane sums are kept in scratch across examples and added
// up at the end. Col rows are built with masked vector loads (one vector per
// 16 output positions of a line; strides 2-4 are wide loads and shuffles,
// larger ones gathers), so padding needs no branches. When the output grid
// is the input grid (stride 1, "same" padding along h and w) no panel is
// built at all: Col row r is the input shifted by a constant, and CONV's
// and CONV_W's tiles read it in place with masks from a constant table
// (Implicit). When every group has a multiple of 16 output channels, CONV
// and CONV_W vectorize over output channels instead and read the input in
// place too (Ov). CONV's kernel also evaluates the element-wise chain that
// kernel_fuse fused into it (bias, activation) before storing.
//
// Pools run one vector per 16 output positions of a line: each kernel tap
// is a masked (strided) load whose lane mask says which positions are real
// input, so a window's first valid tap and the padding come out of the same
// selects as eval's loop.
//
// Tasks (nnrt_parallel_for through kern_parallel): convolutions and pools
// split the examples (or channel planes) into chunks; their number depends
// only on shapes and `rows`, and every output element is computed by one
// task in a fixed order, so results do not depend on the thread count. Each
// task has its own slice of the scratch region (Col panel, CONV_W's partial
// sums); CONV_W adds the tasks' partial sums in task order after they all
// finished.
#include <assert.h>
#include <string.h>

#include "codegen_internal.h"

enum {
  VL = 16,       // floats per vector
  MAX_NV = 4,    // vectors per GEMM tile row
  ACCS = 24,     // accumulators per tile
  MAX_TASKS = 8, // task chunks of examples (scratch is sized for these)
  W_TASKS = 4,   // CONV_W: example chunks (each keeps its own partial sums)
};
// Panels are cut into blocks of output lines of about this many floats.
#define PANEL_FLOATS (48 * 1024)
// Below this many flops (or moved floats for pools) a kernel runs serially.
#define SERIAL_WORK (1 << 19)

// ---- vectors ------------------------------------------------------------------
static LLVMTypeRef ivty(Cg *cg) {
  return LLVMVectorType(cg->t_i32, VL);
}

static LLVMValueRef i64c(Cg *cg, int64_t v) {
  return cg_i64(cg, v);
}
static LLVMValueRef i32c(Cg *cg, int64_t v) {
  return LLVMConstInt(cg->t_i32, (unsigned long long)v, 1);
}

static LLVMValueRef const_ivec(Cg *cg, const int64_t *e, int n) {
  LLVMValueRef c[4 * VL];
  assert(n <= 4 * VL);
  for (int i = 0; i < n; i++)
    c[i] = i32c(cg, e[i]);
  return LLVMConstVector(c, (unsigned)n);
}

// <a, a + s, ..., a + 15 s> as i32 lanes.
static LLVMValueRef lane_seq(Cg *cg, int64_t a, int64_t s) {
  int64_t e[VL];
  for (int i = 0; i < VL; i++)
    e[i] = a + i * s;
  return const_ivec(cg, e, VL);
}

// <16 x i1>: lanes below n (an i64 value).
static LLVMValueRef lanes_below(Cg *cg, LLVMValueRef n) {
  LLVMValueRef n32 = LLVMBuildTrunc(cg->b, n, cg->t_i32, "");
  return LLVMBuildICmp(cg->b, LLVMIntSLT, lane_seq(cg, 0, 1), cg_splat(cg, n32),
                       "");
}

// &p[i] without `inbounds`: masked accesses may start before or past the
// buffer (their masked-off lanes are never touched).
static LLVMValueRef gep(Cg *cg, LLVMValueRef p, LLVMValueRef i) {
  return LLVMBuildGEP2(cg->b, cg->t_elt, p, &i, 1, "");
}

static LLVMValueRef intrinsic(Cg *cg, const char *name, LLVMTypeRef *ov,
                              int nov, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  assert(id && "unknown intrinsic");
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, ov, (size_t)nov);
  LLVMTypeRef ty = LLVMIntrinsicGetType(cg->lc, id, ov, (size_t)nov);
  return LLVMBuildCall2(cg->b, ty, fn, args, (unsigned)n, "");
}

// Pointers p + idx[i] for an i32 index vector.
static LLVMValueRef vptrs(Cg *cg, LLVMValueRef p, LLVMValueRef idx) {
  return LLVMBuildGEP2(cg->b, cg->t_elt, p, &idx, 1, "");
}

static LLVMValueRef gather(Cg *cg, LLVMValueRef p, LLVMValueRef idx,
                           LLVMValueRef mask) {
  LLVMTypeRef ov[2] = {cg_vty(cg), LLVMVectorType(cg->t_ptr, VL)};
  LLVMValueRef args[4] = {vptrs(cg, p, idx), i32c(cg, cg->elt_size), mask,
                          LLVMConstNull(cg_vty(cg))};
  return intrinsic(cg, "llvm.masked.gather", ov, 2, args, 4);
}

static void scatter(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef idx,
                    LLVMValueRef mask) {
  LLVMTypeRef ov[2] = {cg_vty(cg), LLVMVectorType(cg->t_ptr, VL)};
  LLVMValueRef args[4] = {v, vptrs(cg, p, idx), i32c(cg, cg->elt_size), mask};
  intrinsic(cg, "llvm.masked.scatter", ov, 2, args, 4);
}

// Lane i of the result is p[i * s] (masked lanes read 0). Strides up to 4
// are one wide masked load and a shuffle; larger ones a gather.
static LLVMValueRef load_strided(Cg *cg, LLVMValueRef p, int64_t s,
                                 LLVMValueRef mask) {
  if (s == 1)
    return cg_vload(cg, p, mask);
  if (s > 4)
    return gather(cg, p, lane_seq(cg, 0, s), mask);
  int64_t wide = VL * s, spread[4 * VL], pick[VL];
  for (int64_t j = 0; j < wide; j++)
    spread[j] = j % s ? VL : j / s; // lane VL of <mask, false...> is false
  for (int i = 0; i < VL; i++)
    pick[i] = i * s;
  LLVMValueRef none = LLVMConstNull(LLVMVectorType(cg->t_i1, VL));
  LLVMValueRef wm = LLVMBuildShuffleVector(
      cg->b, mask, none, const_ivec(cg, spread, (int)wide), "");
  LLVMValueRef w = cg_vload_n(cg, p, wm, (unsigned)wide);
  return LLVMBuildShuffleVector(cg->b, w, LLVMGetPoison(LLVMTypeOf(w)),
                                const_ivec(cg, pick, VL), "");
}

// p[i * s] = v[i] for the lanes in mask.
static void store_strided(Cg *cg, LLVMValueRef v, LLVMValueRef p, int64_t s,
                          LLVMValueRef mask) {
  if (s == 1) {
    cg_vstore(cg, v, p, mask);
    return;
  }
  if (s > 4) {
    scatter(cg, v, p, lane_seq(cg, 0, s), mask);
    return;
  }
  int64_t wide = VL * s, spread[4 * VL];
  for (int64_t j = 0; j < wide; j++)
    spread[j] = j % s ? VL : j / s;
  LLVMValueRef none = LLVMConstNull(LLVMVectorType(cg->t_i1, VL));
  LLVMValueRef wm = LLVMBuildShuffleVector(
      cg->b, mask, none, const_ivec(cg, spread, (int)wide), "");
  for (int64_t j = 0; j < wide; j++)
    spread[j] = j % s ? 0 : j / s; // the value lanes (others are masked)
  LLVMValueRef w =
      LLVMBuildShuffleVector(cg->b, v, LLVMGetPoison(cg_vty(cg)),
                             const_ivec(cg, spread, (int)wide), "");
  cg_vstore_n(cg, w, p, wm);
}

static LLVMValueRef vfma(Cg *cg, LLVMValueRef a, LLVMValueRef b,
                         LLVMValueRef c) {
  LLVMValueRef x[3] = {a, b, c};
  return cg_intrinsic(cg, cg->fma, x, 3);
}

// ---- integers -----------------------------------------------------------------
static LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWSub(cg->b, a, b, "");
}
static LLVMValueRef sdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSDiv(cg->b, a, b, "");
}
static LLVMValueRef slt(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "");
}
static LLVMValueRef smin(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, slt(cg, a, b), a, b, "");
}
static LLVMValueRef smax(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, slt(cg, a, b), b, a, "");
}
static LLVMValueRef and1(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildAnd(cg->b, a, b, "");
}
static LLVMValueRef to_i32(Cg *cg, LLVMValueRef x) {
  return LLVMBuildTrunc(cg->b, x, cg->t_i32, "");
}

static void memzero(Cg *cg, LLVMValueRef p, LLVMValueRef nfloats) {
  LLVMBuildMemSet(cg->b, p, LLVMConstInt(cg->t_i8, 0, 0),
                  cg_mul(cg, nfloats, i64c(cg, cg->elt_size)),
                  (unsigned)cg->elt_size);
}

// A loop over [lo, hi) (runtime bounds); returns the index.
static LLVMValueRef range_begin(Cg *cg, Loop *l, LLVMValueRef lo,
                                LLVMValueRef hi, const char *name) {
  LLVMValueRef i =
      loop_begin(cg, l, smax(cg, sub(cg, hi, lo), i64c(cg, 0)), name);
  return cg_add(cg, lo, i);
}

// ---- geometry -----------------------------------------------------------------
// A windowed value's spatial part, normalized to three axes: WinGeom (ir.h).

// The taps [t0, t1) of window o (an i64 value) along axis i that read input:
// o s - lo + t d in [0, n).
static void tap_range(Cg *cg, const WinGeom *g, int i, LLVMValueRef o,
                      LLVMValueRef *t0, LLVMValueRef *t1) {
  LLVMValueRef base =
      sub(cg, cg_mul(cg, o, i64c(cg, g->s[i])), i64c(cg, g->lo[i]));
  LLVMValueRef d = i64c(cg, g->d[i]), k = i64c(cg, g->k[i]);
  LLVMValueRef zero = i64c(cg, 0);
  // first: ceil(-base / d) when base < 0
  LLVMValueRef neg = sub(cg, zero, base);
  LLVMValueRef first = LLVMBuildSelect(
      cg->b, slt(cg, base, zero),
      sdiv(cg, cg_add(cg, neg, i64c(cg, g->d[i] - 1)), d), zero, "");
  // last + 1: floor((n - 1 - base) / d) + 1 when n - 1 - base >= 0
  LLVMValueRef e = sub(cg, i64c(cg, g->n[i] - 1), base);
  LLVMValueRef end =
      LLVMBuildSelect(cg->b, slt(cg, e, zero), zero,
                      cg_add(cg, sdiv(cg, e, d), i64c(cg, 1)), "");
  *t0 = smin(cg, first, k);
  *t1 = smax(cg, smin(cg, end, k), *t0);
}

// <16 x i1>: the lanes of positions ow0 + i (i < cnt) whose tap kw reads
// input along w, and their positions along w (i32 lanes).
static LLVMValueRef w_lanes(Cg *cg, const WinGeom *g, LLVMValueRef ow0,
                            LLVMValueRef cnt, LLVMValueRef kw,
                            LLVMValueRef *pos) {
  // pos = (ow0 + i) s - lo + kw d
  LLVMValueRef base = cg_add(
      cg, sub(cg, cg_mul(cg, ow0, i64c(cg, g->s[2])), i64c(cg, g->lo[2])),
      cg_mul(cg, kw, i64c(cg, g->d[2])));
  LLVMValueRef p = LLVMBuildAdd(cg->b, cg_splat(cg, to_i32(cg, base)),
                                lane_seq(cg, 0, g->s[2]), "");
  LLVMValueRef zero = LLVMConstNull(ivty(cg));
  LLVMValueRef m =
      and1(cg, lanes_below(cg, cnt),
           and1(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, p, zero, ""),
                LLVMBuildICmp(cg->b, LLVMIntSLT, p,
                              cg_splat(cg, i32c(cg, g->n[2])), "")));
  *pos = p;
  return m;
}

// ---- im2col and col2im ----------------------------------------------------------
// Col panel rows r = (c, kd, kh, kw) for the channels [c0, c0 + nc) of one
// example xb (nin floats per channel), columns q = (line - l0) OW + ow for
// the nl lines from l0 (an i64); row pitch `pitch`. col2im adds the panel
// back instead (xb is then the gradient of the input).
typedef struct Panel {
  const WinGeom *g;
  LLVMValueRef x;   // the example's first channel of the group
  int64_t nc;       // channels
  LLVMValueRef col; // the panel
  int64_t pitch;
  LLVMValueRef l0; // first line
  int64_t nl;      // lines
  bool only;       // the only block: col2im need not add to what is there
} Panel;

static void panel_rows(Cg *cg, const Panel *pn, bool back) {
  const WinGeom *g = pn->g;
  int64_t OW = g->out[2], OH = g->out[1];
  // The taps along w innermost: their loops have constant trips, so once
  // LLVM unrolls them every lane mask is a constant (and-ed with the line's
  // row test).
  Loop lc, lkd, lkh, ll, lkw, lw;
  LLVMValueRef c = loop_begin(cg, &lc, i64c(cg, pn->nc), "c");
  LLVMValueRef xc = cg_gep(cg, pn->x, cg_mul(cg, c, i64c(cg, g->nin)));
  LLVMValueRef kd = loop_begin(cg, &lkd, i64c(cg, g->k[0]), "kd");
  LLVMValueRef kh = loop_begin(cg, &lkh, i64c(cg, g->k[1]), "kh");
  // row r = ((c KD + kd) KH + kh) KW + kw
  LLVMValueRef r0 =
      cg_mul(cg,
             cg_add(cg,
                    cg_mul(cg, cg_add(cg, cg_mul(cg, c, i64c(cg, g->k[0])), kd),
                           i64c(cg, g->k[1])),
                    kh),
             i64c(cg, g->k[2]));
  LLVMValueRef crow = cg_gep(cg, pn->col, cg_mul(cg, r0, i64c(cg, pn->pitch)));
  LLVMValueRef li = loop_begin(cg, &ll, i64c(cg, pn->nl), "line");
  LLVMValueRef line = cg_add(cg, pn->l0, li);
  LLVMValueRef od = LLVMBuildUDiv(cg->b, line, i64c(cg, OH), "");
  LLVMValueRef oh = LLVMBuildURem(cg->b, line, i64c(cg, OH), "");
  LLVMValueRef id =
      cg_add(cg, sub(cg, cg_mul(cg, od, i64c(cg, g->s[0])), i64c(cg, g->lo[0])),
             cg_mul(cg, kd, i64c(cg, g->d[0])));
  LLVMValueRef ih =
      cg_add(cg, sub(cg, cg_mul(cg, oh, i64c(cg, g->s[1])), i64c(cg, g->lo[1])),
             cg_mul(cg, kh, i64c(cg, g->d[1])));
  LLVMValueRef zero = i64c(cg, 0);
  LLVMValueRef rowok =
      and1(cg,
           and1(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, id, zero, ""),
                slt(cg, id, i64c(cg, g->n[0]))),
           and1(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, ih, zero, ""),
                slt(cg, ih, i64c(cg, g->n[1]))));
  LLVMValueRef rowm = cg_splat(cg, rowok);
  LLVMValueRef xrow =
      gep(cg, xc,
          cg_mul(cg, cg_add(cg, cg_mul(cg, id, i64c(cg, g->n[1])), ih),
                 i64c(cg, g->n[2])));
  LLVMValueRef qline = cg_gep(cg, crow, cg_mul(cg, li, i64c(cg, OW)));
  LLVMValueRef kw = loop_begin(cg, &lkw, i64c(cg, g->k[2]), "kw");
  LLVMValueRef qrow = cg_gep(cg, qline, cg_mul(cg, kw, i64c(cg, pn->pitch)));
  LLVMValueRef w = loop_begin(cg, &lw, i64c(cg, (OW + VL - 1) / VL), "w");
  LLVMValueRef ow0 = cg_mul(cg, w, i64c(cg, VL));
  LLVMValueRef cnt = smin(cg, sub(cg, i64c(cg, OW), ow0), i64c(cg, VL));
  LLVMValueRef pos;
  LLVMValueRef m = and1(cg, w_lanes(cg, g, ow0, cnt, kw, &pos), rowm);
  // the input at lane 0's position (it may lie outside: masked)
  LLVMValueRef xp = gep(
      cg, xrow,
      cg_add(cg,
             sub(cg, cg_mul(cg, ow0, i64c(cg, g->s[2])), i64c(cg, g->lo[2])),
             cg_mul(cg, kw, i64c(cg, g->d[2]))));
  LLVMValueRef qp = cg_gep(cg, qrow, ow0);
  LLVMValueRef cm = OW % VL ? lanes_below(cg, cnt) : NULL;
  if (!back) {
    cg_vstore(cg, load_strided(cg, xp, g->s[2], m), qp, cm);
  } else {
    LLVMValueRef sum = LLVMBuildFAdd(cg->b, load_strided(cg, xp, g->s[2], m),
                                     cg_vload(cg, qp, cm), "");
    store_strided(cg, sum, xp, g->s[2], m);
  }
  loop_end(cg, &lw);
  loop_end(cg, &lkw);
  loop_end(cg, &ll);
  loop_end(cg, &lkh);
  loop_end(cg, &lkd);
  loop_end(cg, &lc);
}

// Along axis `ax`: the window o whose tap t lands on input index i, that is
// o s = i + lo - t d; *ok says whether it exists (divides, inside [0, n)).
static LLVMValueRef window_of(Cg *cg, LLVMValueRef i, LLVMValueRef t,
                              const WinGeom *g, int ax, int64_t n,
                              LLVMValueRef *ok) {
  LLVMValueRef zero = i64c(cg, 0), s = i64c(cg, g->s[ax]);
  LLVMValueRef at = sub(cg, cg_add(cg, i, i64c(cg, g->lo[ax])),
                        cg_mul(cg, t, i64c(cg, g->d[ax])));
  LLVMValueRef o = sdiv(cg, at, s);
  *ok = and1(cg,
             and1(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, at, zero, ""),
                  LLVMBuildICmp(cg->b, LLVMIntEQ,
                                LLVMBuildSRem(cg->b, at, s, ""), zero, "")),
             slt(cg, o, i64c(cg, n)));
  return o;
}

// col2im for stride 1 along w, pulling: each vector of 16 input positions
// along w adds up, in registers, every panel value that was read from it
// (taps kw, kh, kd in order), then goes to memory once. Pushing instead (a
// load-add-store per tap) makes each store feed the next tap's load at an
// address one float away, which the store buffer cannot forward.
static void panel_pull(Cg *cg, const Panel *pn) {
  const WinGeom *g = pn->g;
  int64_t OW = g->out[2], OH = g->out[1], W = g->n[2];
  assert(g->s[2] == 1);
  Loop lc, ld, lh, lw, lkd, lkh, lkw;
  LLVMValueRef c = loop_begin(cg, &lc, i64c(cg, pn->nc), "c");
  LLVMValueRef xc = cg_gep(cg, pn->x, cg_mul(cg, c, i64c(cg, g->nin)));
  LLVMValueRef id = loop_begin(cg, &ld, i64c(cg, g->n[0]), "id");
  LLVMValueRef ih = loop_begin(cg, &lh, i64c(cg, g->n[1]), "ih");
  LLVMValueRef xrow =
      cg_gep(cg, xc,
             cg_mul(cg, cg_add(cg, cg_mul(cg, id, i64c(cg, g->n[1])), ih),
                    i64c(cg, W)));
  LLVMValueRef w = loop_begin(cg, &lw, i64c(cg, (W + VL - 1) / VL), "iw");
  LLVMValueRef iw0 = cg_mul(cg, w, i64c(cg, VL));
  LLVMValueRef cnt = smin(cg, sub(cg, i64c(cg, W), iw0), i64c(cg, VL));
  LLVMValueRef lanes = W % VL ? lanes_below(cg, cnt) : NULL;
  LLVMValueRef xp = cg_gep(cg, xrow, iw0);
  LLVMValueRef acc = cg_alloca(cg, cg_vty(cg), "acc");
  LLVMBuildStore(cg->b,
                 pn->only ? LLVMConstNull(cg_vty(cg)) : cg_vload(cg, xp, lanes),
                 acc);
  LLVMValueRef zero = i64c(cg, 0), okd, okh;
  LLVMValueRef kd = loop_begin(cg, &lkd, i64c(cg, g->k[0]), "kd");
  LLVMValueRef od = window_of(cg, id, kd, g, 0, g->out[0], &okd);
  LLVMValueRef kh = loop_begin(cg, &lkh, i64c(cg, g->k[1]), "kh");
  LLVMValueRef oh = window_of(cg, ih, kh, g, 1, OH, &okh);
  LLVMValueRef li =
      sub(cg, cg_add(cg, cg_mul(cg, od, i64c(cg, OH)), oh), pn->l0);
  LLVMValueRef ok =
      and1(cg, and1(cg, okd, okh),
           and1(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, li, zero, ""),
                slt(cg, li, i64c(cg, pn->nl))));
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->lc, fn, "tap");
  LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(cg->lc, fn, "");
  LLVMBuildCondBr(cg->b, ok, then, after);
  LLVMPositionBuilderAtEnd(cg->b, then);
  LLVMValueRef r0 =
      cg_mul(cg,
             cg_add(cg,
                    cg_mul(cg, cg_add(cg, cg_mul(cg, c, i64c(cg, g->k[0])), kd),
                           i64c(cg, g->k[1])),
                    kh),
             i64c(cg, g->k[2]));
  LLVMValueRef kw = loop_begin(cg, &lkw, i64c(cg, g->k[2]), "kw");
  // ow = iw + lo - kw d for the 16 lanes
  LLVMValueRef ow0 = sub(cg, cg_add(cg, iw0, i64c(cg, g->lo[2])),
                         cg_mul(cg, kw, i64c(cg, g->d[2])));
  LLVMValueRef ow = LLVMBuildAdd(cg->b, cg_splat(cg, to_i32(cg, ow0)),
                                 lane_seq(cg, 0, 1), "");
  LLVMValueRef m = and1(
      cg, lanes_below(cg, cnt),
      and1(cg,
           LLVMBuildICmp(cg->b, LLVMIntSGE, ow, LLVMConstNull(ivty(cg)), ""),
           LLVMBuildICmp(cg->b, LLVMIntSLT, ow, cg_splat(cg, i32c(cg, OW)),
                         "")));
  LLVMValueRef q =
      cg_add(cg, cg_mul(cg, cg_add(cg, r0, kw), i64c(cg, pn->pitch)),
             cg_add(cg, cg_mul(cg, li, i64c(cg, OW)), ow0));
  LLVMValueRef v = cg_vload(cg, gep(cg, pn->col, q), m);
  LLVMBuildStore(
      cg->b,
      LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg_vty(cg), acc, ""), v, ""),
      acc);
  loop_end(cg, &lkw);
  LLVMBuildBr(cg->b, after);
  LLVMPositionBuilderAtEnd(cg->b, after);
  loop_end(cg, &lkh);
  loop_end(cg, &lkd);
  cg_vstore(cg, LLVMBuildLoad2(cg->b, cg_vty(cg), acc, ""), xp, lanes);
  loop_end(cg, &lw);
  loop_end(cg, &lh);
  loop_end(cg, &ld);
  loop_end(cg, &lc);
}

// ---- implicit Col rows ---------------------------------------------------------------
// When the output grid is the input grid (stride 1, output extent = input
// extent along h and w: "same" padding), Col row r is the input shifted by a
// constant: Col[r, q] = x[q + off[r]] where bit q % 16 of msk[mrow[r] +
// q / 16] is set, else 0 (padding). The GEMM and the dot tiles then read
// their B rows straight from the example with masked loads, and no panel is
// built. off, mrow (i32 per row) and msk (i16 per tap and vector of 16
// positions) are constant tables made at compile time.
typedef struct Implicit {
  LLVMValueRef x;    // the group's first channel of this example
  LLVMValueRef off;  // i32 [ck]
  LLVMValueRef mrow; // i32 [ck]
  LLVMValueRef msk;  // i16 [nk x nvec]
} Implicit;

static LLVMValueRef tab_load(Cg *cg, LLVMTypeRef t, LLVMValueRef tab,
                             LLVMValueRef i) {
  LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, t, tab, &i, 1, "");
  LLVMValueRef l = LLVMBuildLoad2(cg->b, t, p, "");
  LLVMSetAlignment(l, t == cg->t_i32 ? 4 : 2);
  return l;
}

// Row r's start (x + off[r]) and its mask-row index.
static void implicit_row(Cg *cg, const Implicit *im, LLVMValueRef r,
                         LLVMValueRef *xp, LLVMValueRef *mrow) {
  *xp = gep(
      cg, im->x,
      LLVMBuildSExt(cg->b, tab_load(cg, cg->t_i32, im->off, r), cg->t_i64, ""));
  *mrow =
      LLVMBuildSExt(cg->b, tab_load(cg, cg->t_i32, im->mrow, r), cg->t_i64, "");
}

// The 16 values of row (xp, mrow) at positions v16 .. v16 + 15 (v16 = 16 v),
// and-ed with tmask when given.
static LLVMValueRef implicit_load(Cg *cg, const Implicit *im, LLVMValueRef xp,
                                  LLVMValueRef mrow, LLVMValueRef v16,
                                  LLVMValueRef tmask) {
  LLVMTypeRef i16 = LLVMInt16TypeInContext(cg->lc);
  LLVMValueRef bits =
      tab_load(cg, i16, im->msk,
               cg_add(cg, mrow, LLVMBuildLShr(cg->b, v16, i64c(cg, 4), "")));
  LLVMValueRef m =
      LLVMBuildBitCast(cg->b, bits, LLVMVectorType(cg->t_i1, VL), "");
  if (tmask)
    m = and1(cg, m, tmask);
  return cg_vload(cg, gep(cg, xp, v16), m);
}

// ---- GEMM: C[m, n] = sum_k A(m, k) B(k, n), the n axis in vectors ----------------
typedef struct Mm {
  int64_t M, N, K;
  LLVMValueRef a;
  int64_t a_ms, a_ks; // A(m, k) = a[m a_ms + k a_ks]
  LLVMValueRef b;
  int64_t b_ks; // B(k, n) = b[k b_ks + n]
  LLVMValueRef c;
  int64_t c_ms;        // C(m, n) = c[m c_ms + n]
  const struct Epi *e; // CONV: an element-wise chain applied as C is stored
  const Implicit *im;  // B rows read from the input (b, b_ks unused)
} Mm;

// The element-wise chain a CONV's kernel applies to each output vector
// before storing it (kernel_fuse marks the CONV fused into its user chain):
// `root` is the chain's top, the value the kernel stores.
typedef struct Epi {
  Kern *k;
  const IrValue *root, *conv;
  LLVMValueRef b;  // the example
  LLVMValueRef o0; // the first output channel of this GEMM (its group)
  LLVMValueRef q0; // the first output position of this GEMM (its block)
  int64_t P, O;    // positions and channels per example
} Epi;

static LLVMValueRef epi_value(const Epi *e, const IrValue *v, LLVMValueRef o,
                              LLVMValueRef q, LLVMValueRef mask,
                              LLVMValueRef acc);

// Rows m0 .. m0+mr-1, columns n0 .. n0 + 16 nv - 1 (the last vector masked
// by tmask when given): accumulators are phis of the k loop.
static void mm_tile(Cg *cg, const Mm *g, LLVMValueRef m0, int mr,
                    LLVMValueRef n0, int nv, LLVMValueRef tmask) {
  assert(mr >= 1 && mr <= ACCS && nv >= 1 && nv <= MAX_NV && g->K >= 1);
  LLVMValueRef ap[ACCS], bv[MAX_NV], acc[ACCS * MAX_NV];
  for (int i = 0; i < mr; i++)
    ap[i] = cg_gep(cg, g->a,
                   cg_mul(cg, cg_add(cg, m0, i64c(cg, i)), i64c(cg, g->a_ms)));
  LLVMValueRef bp = g->im ? NULL : cg_gep(cg, g->b, n0);
  TileLoop l;
  LLVMValueRef k = tile_loop_begin(cg, &l, i64c(cg, g->K), mr * nv, acc, true);
  if (g->im) {
    LLVMValueRef xp, mrow;
    implicit_row(cg, g->im, k, &xp, &mrow);
    for (int v = 0; v < nv; v++)
      bv[v] =
          implicit_load(cg, g->im, xp, mrow, cg_add(cg, n0, i64c(cg, VL * v)),
                        v == nv - 1 ? tmask : NULL);
  } else {
    LLVMValueRef boff = cg_mul(cg, k, i64c(cg, g->b_ks));
    for (int v = 0; v < nv; v++)
      bv[v] = cg_vload(cg, cg_gep(cg, bp, cg_add(cg, boff, i64c(cg, VL * v))),
                       v == nv - 1 ? tmask : NULL);
  }
  LLVMValueRef aoff = cg_mul(cg, k, i64c(cg, g->a_ks));
  for (int i = 0; i < mr; i++) {
    LLVMValueRef s = cg_splat(cg, cg_load(cg, ap[i], aoff));
    for (int v = 0; v < nv; v++)
      acc[i * nv + v] = vfma(cg, s, bv[v], acc[i * nv + v]);
  }
  tile_loop_end(cg, &l, mr * nv, acc, true);
  for (int i = 0; i < mr; i++) {
    LLVMValueRef crow = cg_gep(
        cg, g->c, cg_mul(cg, cg_add(cg, m0, i64c(cg, i)), i64c(cg, g->c_ms)));
    for (int v = 0; v < nv; v++) {
      LLVMValueRef n = cg_add(cg, n0, i64c(cg, VL * v));
      LLVMValueRef m = v == nv - 1 ? tmask : NULL;
      LLVMValueRef val = acc[i * nv + v];
      if (g->e)
        val = epi_value(g->e, g->e->root,
                        cg_add(cg, g->e->o0, cg_add(cg, m0, i64c(cg, i))),
                        cg_add(cg, g->e->q0, n), m, val);
      cg_vstore(cg, val, cg_gep(cg, crow, n), m);
    }
  }
}

// Every row of one column block: full tiles of mr rows, then one of the rest.
static void mm_rows(Cg *cg, const Mm *g, int mr, LLVMValueRef n0, int nv,
                    LLVMValueRef tmask) {
  int64_t full = g->M / mr, rest = g->M % mr;
  Loop l;
  LLVMValueRef t = loop_begin(cg, &l, i64c(cg, full), "mt");
  mm_tile(cg, g, cg_mul(cg, t, i64c(cg, mr)), mr, n0, nv, tmask);
  loop_end(cg, &l);
  if (rest)
    mm_tile(cg, g, i64c(cg, full * mr), (int)rest, n0, nv, tmask);
}

static int tile_rows(Cg *cg, int64_t M, int nv) {
  int64_t mr = cg->accs / nv;
  return (int)(M < mr ? M : mr);
}

static void mm_emit(Cg *cg, const Mm *g) {
  int nv = (int)((g->N + VL - 1) / VL);
  if (nv > cg->max_nv)
    nv = cg->max_nv;
  int64_t nr = VL * nv, full = g->N / nr, w = g->N - full * nr;
  Loop l;
  LLVMValueRef t = loop_begin(cg, &l, i64c(cg, full), "nt");
  mm_rows(cg, g, tile_rows(cg, g->M, nv), cg_mul(cg, t, i64c(cg, nr)), nv, NULL);
  loop_end(cg, &l);
  if (w) {
    int tv = (int)((w + VL - 1) / VL);
    mm_rows(cg, g, tile_rows(cg, g->M, tv), i64c(cg, full * nr), tv,
            cg_vmask(cg, w % VL ? w % VL : VL));
  }
}

// ---- dot tiles: S[i, j, 0..16) += A[i, q..] * B[j, q..] over q in vectors -------
typedef struct Dot {
  int64_t M, J, N;
  LLVMValueRef a;
  int64_t a_ms; // A(i, q) = a[i a_ms + q]
  LLVMValueRef b;
  int64_t b_ms;       // B(j, q) = b[j b_ms + q]
  LLVMValueRef s;     // S(i, j) = s + (i J + j) 16
  const Implicit *im; // B rows read from the input (b, b_ms unused)
} Dot;

enum { DOT_MI = 6, DOT_NJ = 4 }; // at most; Cg.dot_mi x dot_nj: the target's

// One step of a dot tile: 16 positions from off (the first m of them when
// a mask is given) of every A row and B row, into acc[i nj + j].
static void dot_step(Cg *cg, const Dot *g, LLVMValueRef *ap, LLVMValueRef *bp,
                     LLVMValueRef *bm, int mi, int nj, LLVMValueRef off,
                     LLVMValueRef m, LLVMValueRef *acc) {
  LLVMValueRef bv[DOT_NJ];
  for (int j = 0; j < nj; j++)
    bv[j] = g->im ? implicit_load(cg, g->im, bp[j], bm[j], off, m)
                  : cg_vload(cg, cg_gep(cg, bp[j], off), m);
  for (int i = 0; i < mi; i++) {
    LLVMValueRef av = cg_vload(cg, cg_gep(cg, ap[i], off), m);
    for (int j = 0; j < nj; j++)
      acc[i * nj + j] = vfma(cg, av, bv[j], acc[i * nj + j]);
  }
}

static void dot_tile(Cg *cg, const Dot *g, LLVMValueRef i0, int mi,
                     LLVMValueRef j0, int nj) {
  LLVMValueRef ap[DOT_MI], bp[DOT_NJ], sp[DOT_MI][DOT_NJ];
  LLVMValueRef acc[DOT_MI * DOT_NJ];
  for (int i = 0; i < mi; i++)
    ap[i] = cg_gep(cg, g->a,
                   cg_mul(cg, cg_add(cg, i0, i64c(cg, i)), i64c(cg, g->a_ms)));
  LLVMValueRef bm[DOT_NJ];
  for (int j = 0; j < nj; j++) {
    if (g->im)
      implicit_row(cg, g->im, cg_add(cg, j0, i64c(cg, j)), &bp[j], &bm[j]);
    else
      bp[j] = cg_gep(
          cg, g->b, cg_mul(cg, cg_add(cg, j0, i64c(cg, j)), i64c(cg, g->b_ms)));
  }
  for (int i = 0; i < mi; i++)
    for (int j = 0; j < nj; j++) {
      LLVMValueRef e =
          cg_add(cg, cg_mul(cg, cg_add(cg, i0, i64c(cg, i)), i64c(cg, g->J)),
                 cg_add(cg, j0, i64c(cg, j)));
      sp[i][j] = cg_gep(cg, g->s, cg_mul(cg, e, i64c(cg, VL)));
      acc[i * nj + j] = cg_vload(cg, sp[i][j], NULL);
    }
  int64_t nfull = g->N / VL, tail = g->N % VL;
  if (nfull > 0) { // the running sums go on from their stored values
    TileLoop l;
    LLVMValueRef q =
        tile_loop_begin(cg, &l, i64c(cg, nfull), mi * nj, acc, false);
    dot_step(cg, g, ap, bp, bm, mi, nj, cg_mul(cg, q, i64c(cg, VL)), NULL, acc);
    tile_loop_end(cg, &l, mi * nj, acc, true);
  }
  if (tail)
    dot_step(cg, g, ap, bp, bm, mi, nj, i64c(cg, nfull * VL),
             cg_vmask(cg, tail), acc);
  for (int i = 0; i < mi; i++)
    for (int j = 0; j < nj; j++)
      cg_vstore(cg, acc[i * nj + j], sp[i][j], NULL);
}

static void dot_cols(Cg *cg, const Dot *g, LLVMValueRef i0, int mi) {
  int nj = cg->dot_nj;
  int64_t full = g->J / nj, rest = g->J % nj;
  Loop l;
  LLVMValueRef t = loop_begin(cg, &l, i64c(cg, full), "jt");
  dot_tile(cg, g, i0, mi, cg_mul(cg, t, i64c(cg, nj)), nj);
  loop_end(cg, &l);
  if (rest)
    dot_tile(cg, g, i0, mi, i64c(cg, full * nj), (int)rest);
}

static void dot_emit(Cg *cg, const Dot *g) {
  int mi = cg->dot_mi;
  int64_t full = g->M / mi, rest = g->M % mi;
  Loop l;
  LLVMValueRef t = loop_begin(cg, &l, i64c(cg, full), "it");
  dot_cols(cg, g, cg_mul(cg, t, i64c(cg, mi)), mi);
  loop_end(cg, &l);
  if (rest)
    dot_cols(cg, g, i64c(cg, full * mi), (int)rest);
}

// ---- the three convolutions ---------------------------------------------------------
// Sizes of one convolution, from the input x[C, n...], the output y[O,
// out...] and the weight w[O, C/groups, k...].
typedef struct Conv {
  WinGeom g;
  int64_t C, O, groups, cg, og, ck; // ck = C/groups x kernel: Col rows
  int64_t R;                        // lines per panel block
  int64_t nblk, rlast;              // blocks of R lines; lines in the last
  int64_t pitch;                    // panel row pitch (floats)
  int64_t panel;                    // panel floats (0: implicit)
  int64_t xn, yn;                   // floats per example of x and y
  bool implicit;                    // Col rows read from x (see Implicit)
  bool ov;                          // output channels in vectors (see Ov)
} Conv;

// At most this many 16-position mask words for implicit Col rows (a
// constant table of 2 bytes each); bigger convolutions build panels.
#define IMPLICIT_WORDS (1 << 16)

static int64_t round16(int64_t n) {
  return (n + VL - 1) / VL * VL;
}

static Conv conv_of(Shape x, Shape y, Shape w, const Window *win,
                    bool may_implicit) {
  Conv c;
  c.g = win_geom(x, y, w.dim + 2, win);
  c.C = x.dim[0];
  c.O = y.dim[0];
  c.groups = win->groups;
  c.cg = c.C / c.groups;
  c.og = c.O / c.groups;
  c.ck = c.cg * c.g.nk;
  int64_t OW = c.g.out[2], L = c.g.lines;
  int64_t R = PANEL_FLOATS / (c.ck * OW);
  if (R < 1)
    R = 1;
  if (R > L)
    R = L;
  c.nblk = (L + R - 1) / R;
  c.R = (L + c.nblk - 1) / c.nblk; // balanced blocks
  c.rlast = L - (c.nblk - 1) * c.R;
  c.pitch = round16(c.R * OW);
  c.panel = c.ck * c.pitch;
  c.xn = shape_numel(x);
  c.yn = shape_numel(y);
  const WinGeom *g = &c.g;
  c.implicit = may_implicit && g->s[0] == 1 && g->s[1] == 1 && g->s[2] == 1 &&
               g->out[1] == g->n[1] && g->out[2] == g->n[2] &&
               g->nk * ((g->nout + VL - 1) / VL) <= IMPLICIT_WORDS;
  if (c.implicit) { // one block, no panel
    c.nblk = 1;
    c.R = c.rlast = L;
    c.pitch = round16(L * OW);
    c.panel = 0;
  }
  c.ov = may_implicit && !c.implicit && c.og % VL == 0;
  if (c.ov)
    c.panel = 0;
  return c;
}

// The constant tables of implicit Col rows (see Implicit); x is set later.
static Implicit implicit_tables(Cg *cg, const Conv *c) {
  const WinGeom *g = &c->g;
  int64_t nvec = (g->nout + VL - 1) / VL;
  LLVMValueRef *off = arena_alloc(cg->arena, sizeof *off * (size_t)c->ck);
  LLVMValueRef *mrow = arena_alloc(cg->arena, sizeof *mrow * (size_t)c->ck);
  for (int64_t r = 0; r < c->ck; r++) {
    int64_t ch = r / g->nk, t = r % g->nk;
    int64_t kd = t / (g->k[1] * g->k[2]), kh = t / g->k[2] % g->k[1],
            kw = t % g->k[2];
    int64_t shift =
        ((kd * g->d[0] - g->lo[0]) * g->n[1] + (kh * g->d[1] - g->lo[1])) *
            g->n[2] +
        (kw * g->d[2] - g->lo[2]);
    off[r] =
        LLVMConstInt(cg->t_i32, (unsigned long long)(ch * g->nin + shift), 1);
    mrow[r] = LLVMConstInt(cg->t_i32, (unsigned long long)(t * nvec), 1);
  }
  LLVMTypeRef i16 = LLVMInt16TypeInContext(cg->lc);
  LLVMValueRef *msk =
      arena_alloc(cg->arena, sizeof *msk * (size_t)(g->nk * nvec));
  for (int64_t t = 0; t < g->nk; t++) {
    int64_t kd = t / (g->k[1] * g->k[2]), kh = t / g->k[2] % g->k[1],
            kw = t % g->k[2];
    for (int64_t v = 0; v < nvec; v++) {
      unsigned bits = 0;
      for (int i = 0; i < VL; i++) {
        int64_t q = v * VL + i;
        if (q >= g->nout)
          break;
        int64_t od = q / (g->out[1] * g->out[2]),
                oh = q / g->out[2] % g->out[1], ow = q % g->out[2];
        int64_t id = od * g->s[0] - g->lo[0] + kd * g->d[0];
        int64_t ih = oh * g->s[1] - g->lo[1] + kh * g->d[1];
        int64_t iw = ow * g->s[2] - g->lo[2] + kw * g->d[2];
        if (id >= 0 && id < g->n[0] && ih >= 0 && ih < g->n[1] && iw >= 0 &&
            iw < g->n[2])
          bits |= 1u << i;
      }
      msk[t * nvec + v] = LLVMConstInt(i16, bits, 0);
    }
  }
  Implicit im = {0};
  LLVMValueRef init[3] = {LLVMConstArray2(cg->t_i32, off, (uint64_t)c->ck),
                          LLVMConstArray2(cg->t_i32, mrow, (uint64_t)c->ck),
                          LLVMConstArray2(i16, msk, (uint64_t)(g->nk * nvec))};
  LLVMValueRef gl[3];
  for (int i = 0; i < 3; i++) {
    gl[i] = LLVMAddGlobal(cg->mod, LLVMTypeOf(init[i]), ".conv.tab");
    LLVMSetInitializer(gl[i], init[i]);
    LLVMSetGlobalConstant(gl[i], 1);
    LLVMSetLinkage(gl[i], LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(gl[i], LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(gl[i], 64);
  }
  im.off = gl[0];
  im.mrow = gl[1];
  im.msk = gl[2];
  return im;
}

static Conv conv_value(const IrValue *v) {
  switch (v->op) {
  case OP_CONV:
    return conv_of(v->arg[0]->shape, v->shape, v->arg[1]->shape, &v->attr.win,
                   true);
  case OP_CONV_T:
    return conv_of(v->shape, v->arg[0]->shape, v->arg[1]->shape, &v->attr.win,
                   false);
  case OP_CONV_W:
    return conv_of(v->arg[0]->shape, v->arg[1]->shape, v->shape, &v->attr.win,
                   true);
  default:
    assert(!"not a convolution");
    unreachable();
  }
}

static int64_t conv_flops(const Conv *c) {
  return 2 * c->O * c->ck * c->g.nout;
}

// Examples: rows when the value carries the batch axis, else 1.
static LLVMValueRef examples(Kern *k, bool batched) {
  return batched ? k->rows : i64c(k->cg, 1);
}

// ntasks for a job of `n` items (examples, planes) of `work` each: serial
// when small, else min(n, cap).
static LLVMValueRef task_count(Cg *cg, LLVMValueRef n, int64_t work,
                               int64_t cap) {
  LLVMValueRef serial =
      slt(cg, cg_mul(cg, n, i64c(cg, work)), i64c(cg, SERIAL_WORK));
  return LLVMBuildSelect(cg->b, serial, i64c(cg, 1),
                         smax(cg, smin(cg, n, i64c(cg, cap)), i64c(cg, 1)), "");
}

// Items [lo, hi) of task t out of nt for n items.
static void task_chunk(Cg *cg, LLVMValueRef t, LLVMValueRef nt, LLVMValueRef n,
                       LLVMValueRef *lo, LLVMValueRef *hi) {
  *lo = sdiv(cg, cg_mul(cg, t, n), nt);
  *hi = sdiv(cg, cg_mul(cg, cg_add(cg, t, i64c(cg, 1)), n), nt);
}

// One block of nl lines starting at l0, for every group of example b.
typedef enum ConvPart { PART_Y, PART_X, PART_W } ConvPart;

static void conv_block(Cg *cg, const Conv *c, ConvPart part, LLVMValueRef xb,
                       LLVMValueRef yb, LLVMValueRef w, LLVMValueRef panel,
                       LLVMValueRef sums, const Epi *e, const Implicit *imt,
                       LLVMValueRef l0, int64_t nl) {
  int64_t OW = c->g.out[2], P = c->g.nout, N = nl * OW;
  Loop lg;
  LLVMValueRef gi = loop_begin(cg, &lg, i64c(cg, c->groups), "group");
  LLVMValueRef xg = cg_gep(cg, xb, cg_mul(cg, gi, i64c(cg, c->cg * c->g.nin)));
  LLVMValueRef col0 = cg_mul(cg, l0, i64c(cg, OW));
  LLVMValueRef yg =
      cg_gep(cg, yb, cg_add(cg, cg_mul(cg, gi, i64c(cg, c->og * P)), col0));
  LLVMValueRef wg =
      w ? cg_gep(cg, w, cg_mul(cg, gi, i64c(cg, c->og * c->ck))) : NULL;
  Panel pn = {&c->g, xg, c->cg, panel, c->pitch, l0, nl, c->nblk == 1};
  Implicit im;
  if (c->implicit) {
    im = *imt;
    im.x = xg;
  }
  switch (part) {
  case PART_Y: { // y = W Col
    if (!c->implicit)
      panel_rows(cg, &pn, false);
    Epi ge;
    if (e) {
      ge = *e;
      ge.o0 = cg_mul(cg, gi, i64c(cg, c->og));
      ge.q0 = col0;
    }
    Mm g = {c->og, N, c->ck,          wg,
            c->ck, 1, panel,          c->pitch,
            yg,    P, e ? &ge : NULL, c->implicit ? &im : NULL};
    mm_emit(cg, &g);
    break;
  }
  case PART_X: { // dCol = W^T dY, then col2im
    Mm g = {c->ck, N, c->og, wg, 1, c->ck, yg, P, panel, c->pitch, NULL, NULL};
    mm_emit(cg, &g);
    if (c->g.s[2] == 1)
      panel_pull(cg, &pn);
    else
      panel_rows(cg, &pn, true);
    break;
  }
  case PART_W: { // sums[o, r] += dY[o, q] Col[r, q]
    if (!c->implicit)
      panel_rows(cg, &pn, false);
    Dot d = {c->og,
             c->ck,
             N,
             yg,
             P,
             panel,
             c->pitch,
             cg_gep(cg, sums, cg_mul(cg, gi, i64c(cg, c->og * c->ck * VL))),
             c->implicit ? &im : NULL};
    dot_emit(cg, &d);
    break;
  }
  }
  loop_end(cg, &lg);
}

// Every block of example b.
static void conv_example(Cg *cg, const Conv *c, ConvPart part, LLVMValueRef xb,
                         LLVMValueRef yb, LLVMValueRef w, LLVMValueRef panel,
                         LLVMValueRef sums, const Epi *e, const Implicit *imt) {
  Loop l;
  int64_t full = c->rlast == c->R ? c->nblk : c->nblk - 1;
  LLVMValueRef bl = loop_begin(cg, &l, i64c(cg, full), "block");
  conv_block(cg, c, part, xb, yb, w, panel, sums, e, imt,
             cg_mul(cg, bl, i64c(cg, c->R)), c->R);
  loop_end(cg, &l);
  if (full < c->nblk)
    conv_block(cg, c, part, xb, yb, w, panel, sums, e, imt,
               i64c(cg, full * c->R), c->rlast);
}

// Floats of one CONV_W task's scratch: the partial sums, then the panel.
static int64_t w_task_floats(const Conv *c) {
  return round16(c->O * c->ck * VL) + c->panel;
}

// The CONV computed inside v's kernel: v itself, or the CONV fused into v's
// element-wise chain (kernel_fuse), or NULL.
const IrValue *kernel_conv(Cg *cg, const IrValue *v) {
  if (v->op == OP_CONV)
    return v;
  if (prims[v->op].kind != PK_EW)
    return NULL;
  for (int i = 0; i < v->narg; i++) {
    const IrValue *a = v->arg[i];
    if (!cg->inl[a->id])
      continue;
    const IrValue *r = kernel_conv(cg, a);
    if (r)
      return r;
  }
  return NULL;
}

// ---- output channels in vectors -----------------------------------------------------
// When every group has a multiple of 16 output channels and the output grid
// is not the input grid (where Col rows are read in place), CONV and CONV_W
// vectorize over output channels instead of positions and read the input in
// place, so that no Col panel is built:
//   CONV    y[o.., q]  = sum_r wT[r, o..] x[roff[r] + pos(q)]
//   CONV_W  S[r, o..] += sum_q x[roff[r] + pos(q)] dyT[q, o..]
// (o.. = 16 output channels, one vector; roff[r] = c plane + kd d0 Hp Wp +
// kh d1 Wp + kw d2, pos(q) = od s0 Hp Wp + oh s1 Wp + ow s2.) Each input
// value is broadcast into one fma with the reused o vector. The input goes
// through a zero-padded copy (Dp x Hp x Wp per channel) when the window
// reads padding. wT (the weight transposed) is built once per call, dyT (dy
// transposed in 16 x 16 blocks) once per example; CONV's tile of positions
// is transposed back to rows of positions for the epilogue and the store.
// For LeNet's second convolution (10-wide rows) building panels had been a
// third of the time.
enum { OV_T = 24 }; // accumulators per tile at most (Cg.accs: the target's)

typedef struct Ov {
  int64_t P[3];     // the (padded) input extents read: Dp, Hp, Wp
  int64_t plane;    // Dp Hp Wp
  bool copy;        // x goes through a zero-padded buffer
  int64_t xbuf;     // floats of that buffer (C plane), 0 without copy
  int64_t npl;      // CONV: whole lines per position tile (0: line segments)
  int64_t T;        // CONV: positions per tile
  int64_t nseg, Tl; // segments per line; positions in a line's last one
} Ov;

static Ov ov_of(const Conv *c, int64_t accs) {
  const WinGeom *g = &c->g;
  Ov o = {0};
  for (int i = 0; i < 3; i++) {
    int64_t ext = (g->out[i] - 1) * g->s[i] + (g->k[i] - 1) * g->d[i] + 1;
    o.copy |= g->lo[i] > 0 || ext > g->n[i];
    o.P[i] = ext > g->lo[i] + g->n[i] ? ext : g->lo[i] + g->n[i];
  }
  if (!o.copy)
    for (int i = 0; i < 3; i++)
      o.P[i] = g->n[i];
  o.plane = o.P[0] * o.P[1] * o.P[2];
  o.xbuf = o.copy ? round16(c->C * o.plane) : 0;
  int64_t OW = g->out[2], OH = g->out[1];
  if (OW <= accs) {
    for (int64_t n = 1; n <= OH; n++)
      if (OH % n == 0 && n * OW <= accs)
        o.npl = n;
    o.T = o.npl * OW;
    o.nseg = 1;
    o.Tl = o.T;
  } else {
    o.nseg = (OW + accs - 1) / accs;
    o.T = (OW + o.nseg - 1) / o.nseg;
    o.Tl = OW - (o.nseg - 1) * o.T;
  }
  return o;
}

// Offset of kernel tap t in the (padded) input.
static int64_t ov_tap(const WinGeom *g, const Ov *o, int64_t t) {
  int64_t kd = t / (g->k[1] * g->k[2]), kh = t / g->k[2] % g->k[1],
          kw = t % g->k[2];
  return (kd * g->d[0] * o->P[1] + kh * g->d[1]) * o->P[2] + kw * g->d[2];
}

// A private constant i32 table.
static LLVMValueRef i32_table(Cg *cg, const int64_t *v, int64_t n) {
  LLVMValueRef *e = arena_alloc(cg->arena, sizeof *e * (size_t)n);
  for (int64_t i = 0; i < n; i++)
    e[i] = LLVMConstInt(cg->t_i32, (unsigned long long)v[i], 1);
  LLVMValueRef init = LLVMConstArray2(cg->t_i32, e, (uint64_t)n);
  LLVMValueRef gl = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), ".conv.tab");
  LLVMSetInitializer(gl, init);
  LLVMSetGlobalConstant(gl, 1);
  LLVMSetLinkage(gl, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(gl, LLVMGlobalUnnamedAddr);
  LLVMSetAlignment(gl, 64);
  return gl;
}

// Copies example xb (C channels of D x H x W) into the interior of the
// zero-padded buffer xp (borders stay zero: the task zeroed it once).
static void ov_copy(Cg *cg, const Conv *c, const Ov *o, LLVMValueRef xb,
                    LLVMValueRef xp) {
  const WinGeom *g = &c->g;
  Loop lc, ld, lh, lw;
  LLVMValueRef ch = loop_begin(cg, &lc, i64c(cg, c->C), "c");
  LLVMValueRef id = loop_begin(cg, &ld, i64c(cg, g->n[0]), "d");
  LLVMValueRef ih = loop_begin(cg, &lh, i64c(cg, g->n[1]), "h");
  LLVMValueRef src = cg_gep(
      cg, xb,
      cg_mul(
          cg,
          cg_add(cg,
                 cg_mul(cg, cg_add(cg, cg_mul(cg, ch, i64c(cg, g->n[0])), id),
                        i64c(cg, g->n[1])),
                 ih),
          i64c(cg, g->n[2])));
  LLVMValueRef dst = cg_gep(
      cg, xp,
      cg_add(cg, cg_mul(cg, ch, i64c(cg, o->plane)),
             cg_add(cg,
                    cg_mul(cg,
                           cg_add(cg,
                                  cg_mul(cg, cg_add(cg, id, i64c(cg, g->lo[0])),
                                         i64c(cg, o->P[1])),
                                  cg_add(cg, ih, i64c(cg, g->lo[1]))),
                           i64c(cg, o->P[2])),
                    i64c(cg, g->lo[2]))));
  LLVMValueRef w = loop_begin(cg, &lw, i64c(cg, (g->n[2] + VL - 1) / VL), "w");
  LLVMValueRef w0 = cg_mul(cg, w, i64c(cg, VL));
  LLVMValueRef m =
      g->n[2] % VL ? lanes_below(cg, sub(cg, i64c(cg, g->n[2]), w0)) : NULL;
  cg_vstore(cg, cg_vload(cg, cg_gep(cg, src, w0), m), cg_gep(cg, dst, w0), m);
  loop_end(cg, &lw);
  loop_end(cg, &lh);
  loop_end(cg, &ld);
  loop_end(cg, &lc);
}

// wT[g][r][ol] = w[g og + ol][r]: the weight with output channels innermost.
static void ov_transpose_w(Cg *cg, const Conv *c, LLVMValueRef w,
                           LLVMValueRef wt) {
  Loop lo, lr;
  LLVMValueRef o = loop_begin(cg, &lo, i64c(cg, c->O), "o");
  LLVMValueRef gi = LLVMBuildUDiv(cg->b, o, i64c(cg, c->og), "");
  LLVMValueRef ol = LLVMBuildURem(cg->b, o, i64c(cg, c->og), "");
  LLVMValueRef r = loop_begin(cg, &lr, i64c(cg, c->ck), "r");
  cg_store(cg, cg_load(cg, w, cg_add(cg, cg_mul(cg, o, i64c(cg, c->ck)), r)),
           wt,
           cg_add(cg,
                  cg_mul(cg, cg_add(cg, cg_mul(cg, gi, i64c(cg, c->ck)), r),
                         i64c(cg, c->og)),
                  ol));
  loop_end(cg, &lr);
  loop_end(cg, &lo);
}

// CONV, one tile: T positions at input offset xoff (from the group's first
// channel xg) and output position q0, output channels o0 .. o0 + 15.
static void ov_tile(Cg *cg, const Conv *c, const Ov *o, LLVMValueRef roff,
                    LLVMValueRef xg, LLVMValueRef xoff, LLVMValueRef wrow,
                    LLVMValueRef yb, LLVMValueRef o0, LLVMValueRef q0,
                    int64_t T, int64_t OW, const Epi *e) {
  LLVMBuilderRef b = cg->b;
  const WinGeom *g = &c->g;
  LLVMValueRef acc[OV_T], zero = LLVMConstNull(cg_vty(cg));
  int64_t pos[OV_T];
  for (int64_t j = 0; j < T; j++)
    pos[j] = (j / OW) * g->s[1] * o->P[2] + (j % OW) * g->s[2];
  LLVMValueRef xt = gep(cg, xg, xoff);
  TileLoop l;
  LLVMValueRef r = tile_loop_begin(cg, &l, i64c(cg, c->ck), (int)T, acc, true);
  LLVMValueRef wv =
      cg_vload(cg, cg_gep(cg, wrow, cg_mul(cg, r, i64c(cg, c->og))), NULL);
  LLVMValueRef xr =
      gep(cg, xt,
          LLVMBuildSExt(b, tab_load(cg, cg->t_i32, roff, r), cg->t_i64, ""));
  for (int64_t j = 0; j < T; j++)
    acc[j] =
        vfma(cg, cg_splat(cg, cg_load(cg, xr, i64c(cg, pos[j]))), wv, acc[j]);
  tile_loop_end(cg, &l, (int)T, acc, true);
  // Rows of positions: blocks of 16 positions transposed.
  for (int64_t j0 = 0; j0 < T; j0 += VL) {
    LLVMValueRef rows[VL];
    for (int j = 0; j < VL; j++)
      rows[j] = j0 + j < T ? acc[j0 + j] : zero;
    cg_transpose16(cg, rows);
    LLVMValueRef m = cg_vmask(cg, T - j0);
    LLVMValueRef q = cg_add(cg, q0, i64c(cg, j0));
    for (int i = 0; i < VL; i++) {
      LLVMValueRef oi = cg_add(cg, o0, i64c(cg, i));
      LLVMValueRef val = rows[i];
      if (e)
        val = epi_value(e, e->root, oi, q, m, val);
      cg_vstore(
          cg, val,
          cg_gep(cg, yb, cg_add(cg, cg_mul(cg, oi, i64c(cg, g->nout)), q)), m);
    }
  }
}

// CONV of one example: every group, o vector and tile.
static void ov_forward(Cg *cg, const Conv *c, const Ov *o, LLVMValueRef roff,
                       LLVMValueRef xsrc, LLVMValueRef wt, LLVMValueRef yb,
                       const Epi *e) {
  const WinGeom *g = &c->g;
  int64_t OW = g->out[2], OH = g->out[1];
  Loop lg, lv, ld, lh, ls;
  LLVMValueRef gi = loop_begin(cg, &lg, i64c(cg, c->groups), "group");
  LLVMValueRef xg =
      cg_gep(cg, xsrc, cg_mul(cg, gi, i64c(cg, c->cg * o->plane)));
  LLVMValueRef ov = loop_begin(cg, &lv, i64c(cg, c->og / VL), "ov");
  LLVMValueRef wrow = cg_gep(cg, wt,
                             cg_add(cg, cg_mul(cg, gi, i64c(cg, c->ck * c->og)),
                                    cg_mul(cg, ov, i64c(cg, VL))));
  LLVMValueRef o0 =
      cg_add(cg, cg_mul(cg, gi, i64c(cg, c->og)), cg_mul(cg, ov, i64c(cg, VL)));
  LLVMValueRef od = loop_begin(cg, &ld, i64c(cg, g->out[0]), "od");
  LLVMValueRef dof = cg_mul(cg, od, i64c(cg, g->s[0] * o->P[1] * o->P[2]));
  if (o->npl) {
    LLVMValueRef hb = loop_begin(cg, &lh, i64c(cg, OH / o->npl), "oh");
    LLVMValueRef oh = cg_mul(cg, hb, i64c(cg, o->npl));
    LLVMValueRef xoff =
        cg_add(cg, dof, cg_mul(cg, oh, i64c(cg, g->s[1] * o->P[2])));
    LLVMValueRef q0 =
        cg_mul(cg, cg_add(cg, cg_mul(cg, od, i64c(cg, OH)), oh), i64c(cg, OW));
    ov_tile(cg, c, o, roff, xg, xoff, wrow, yb, o0, q0, o->T, OW, e);
    loop_end(cg, &lh);
  } else {
    LLVMValueRef oh = loop_begin(cg, &lh, i64c(cg, OH), "oh");
    LLVMValueRef lof =
        cg_add(cg, dof, cg_mul(cg, oh, i64c(cg, g->s[1] * o->P[2])));
    LLVMValueRef l0 =
        cg_mul(cg, cg_add(cg, cg_mul(cg, od, i64c(cg, OH)), oh), i64c(cg, OW));
    LLVMValueRef sg = loop_begin(cg, &ls, i64c(cg, o->nseg - 1), "seg");
    LLVMValueRef ow0 = cg_mul(cg, sg, i64c(cg, o->T));
    ov_tile(cg, c, o, roff, xg,
            cg_add(cg, lof, cg_mul(cg, ow0, i64c(cg, g->s[2]))), wrow, yb, o0,
            cg_add(cg, l0, ow0), o->T, OW + o->T, e);
    loop_end(cg, &ls);
    int64_t last = (o->nseg - 1) * o->T;
    ov_tile(cg, c, o, roff, xg, cg_add(cg, lof, i64c(cg, last * g->s[2])), wrow,
            yb, o0, cg_add(cg, l0, i64c(cg, last)), o->Tl, OW + o->T, e);
    loop_end(cg, &lh);
  }
  loop_end(cg, &ld);
  loop_end(cg, &lv);
  loop_end(cg, &lg);
}

// roff for the rows of one group: c plane + the tap's offset.
static LLVMValueRef ov_roff(Cg *cg, const Conv *c, const Ov *o) {
  int64_t *v = arena_alloc(cg->arena, sizeof *v * (size_t)c->ck);
  for (int64_t r = 0; r < c->ck; r++)
    v[r] = r / c->g.nk * o->plane + ov_tap(&c->g, o, r % c->g.nk);
  return i32_table(cg, v, c->ck);
}

// Floats of scratch: CONV: wT, then a padded input per task; CONV_W per
// task: the sums S [groups ck][og], dyT [round16(P)][O], a padded input.
static int64_t ov_w_task(const Conv *c, const Ov *o) {
  return round16(c->O * c->ck) + round16(c->g.nout) * c->O + o->xbuf;
}

// CONV_W of one example into the task's sums.
static void ov_weights(Cg *cg, const Conv *c, const Ov *o, LLVMValueRef xsrc,
                       LLVMValueRef dyb, LLVMValueRef dyt, LLVMValueRef sums) {
  const WinGeom *g = &c->g;
  int64_t P = g->nout, O = c->O;
  // dyT[q][o] = dy[o][q], 16 x 16 blocks.
  Loop lo, lq;
  LLVMValueRef ov = loop_begin(cg, &lo, i64c(cg, O / VL), "ov");
  LLVMValueRef qb = loop_begin(cg, &lq, i64c(cg, (P + VL - 1) / VL), "qb");
  LLVMValueRef q0 = cg_mul(cg, qb, i64c(cg, VL));
  LLVMValueRef m = P % VL ? lanes_below(cg, sub(cg, i64c(cg, P), q0)) : NULL;
  LLVMValueRef rows[VL];
  for (int i = 0; i < VL; i++) {
    LLVMValueRef oi = cg_add(cg, cg_mul(cg, ov, i64c(cg, VL)), i64c(cg, i));
    rows[i] = cg_vload(
        cg, cg_gep(cg, dyb, cg_add(cg, cg_mul(cg, oi, i64c(cg, P)), q0)), m);
  }
  cg_transpose16(cg, rows);
  for (int j = 0; j < VL; j++) // rows past P land in dyT's padding
    cg_vstore(
        cg, rows[j],
        cg_gep(cg, dyt,
               cg_add(cg, cg_mul(cg, cg_add(cg, q0, i64c(cg, j)), i64c(cg, O)),
                      cg_mul(cg, ov, i64c(cg, VL)))),
        NULL);
  loop_end(cg, &lq);
  loop_end(cg, &lo);

  Loop lg, lv, lc, ld, lh, lw;
  LLVMValueRef gi = loop_begin(cg, &lg, i64c(cg, c->groups), "group");
  LLVMValueRef vo = loop_begin(cg, &lv, i64c(cg, c->og / VL), "ov");
  LLVMValueRef col = cg_add(cg, cg_mul(cg, gi, i64c(cg, c->og)),
                            cg_mul(cg, vo, i64c(cg, VL))); // first o
  for (int64_t t0 = 0; t0 < g->nk; t0 += cg->accs) {
    int64_t nt = g->nk - t0 < cg->accs ? g->nk - t0 : cg->accs;
    LLVMValueRef ch = loop_begin(cg, &lc, i64c(cg, c->cg), "c");
    LLVMValueRef xc =
        cg_gep(cg, xsrc,
               cg_mul(cg, cg_add(cg, cg_mul(cg, gi, i64c(cg, c->cg)), ch),
                      i64c(cg, o->plane)));
    // S rows r = c nk + t0 + j of group gi: sums + ((gi ck + r) og + col - gi og)
    LLVMValueRef srow =
        cg_gep(cg, sums,
               cg_add(cg,
                      cg_mul(cg,
                             cg_add(cg, cg_mul(cg, gi, i64c(cg, c->ck)),
                                    cg_add(cg, cg_mul(cg, ch, i64c(cg, g->nk)),
                                           i64c(cg, t0))),
                             i64c(cg, c->og)),
                      cg_mul(cg, vo, i64c(cg, VL))));
    LLVMValueRef slot[OV_T];
    for (int64_t j = 0; j < nt; j++) {
      slot[j] = cg_alloca(cg, cg_vty(cg), "acc");
      LLVMBuildStore(cg->b,
                     cg_vload(cg, cg_gep(cg, srow, i64c(cg, j * c->og)), NULL),
                     slot[j]);
    }
    LLVMValueRef od = loop_begin(cg, &ld, i64c(cg, g->out[0]), "od");
    LLVMValueRef oh = loop_begin(cg, &lh, i64c(cg, g->out[1]), "oh");
    LLVMValueRef line = cg_add(cg, cg_mul(cg, od, i64c(cg, g->out[1])), oh);
    LLVMValueRef xl =
        cg_gep(cg, xc,
               cg_add(cg, cg_mul(cg, od, i64c(cg, g->s[0] * o->P[1] * o->P[2])),
                      cg_mul(cg, oh, i64c(cg, g->s[1] * o->P[2]))));
    LLVMValueRef ow = loop_begin(cg, &lw, i64c(cg, g->out[2]), "ow");
    LLVMValueRef q = cg_add(cg, cg_mul(cg, line, i64c(cg, g->out[2])), ow);
    LLVMValueRef dv = cg_vload(
        cg, cg_gep(cg, dyt, cg_add(cg, cg_mul(cg, q, i64c(cg, O)), col)), NULL);
    LLVMValueRef xo = cg_gep(cg, xl, cg_mul(cg, ow, i64c(cg, g->s[2])));
    for (int64_t j = 0; j < nt; j++) {
      LLVMValueRef xv = cg_load(cg, xo, i64c(cg, ov_tap(g, o, t0 + j)));
      LLVMBuildStore(cg->b,
                     vfma(cg, cg_splat(cg, xv), dv,
                          LLVMBuildLoad2(cg->b, cg_vty(cg), slot[j], "")),
                     slot[j]);
    }
    loop_end(cg, &lw);
    loop_end(cg, &lh);
    loop_end(cg, &ld);
    for (int64_t j = 0; j < nt; j++)
      cg_vstore(cg, LLVMBuildLoad2(cg->b, cg_vty(cg), slot[j], ""),
                cg_gep(cg, srow, i64c(cg, j * c->og)), NULL);
    loop_end(cg, &lc);
  }
  loop_end(cg, &lv);
  loop_end(cg, &lg);
}

int64_t conv_scratch(Cg *cg, const IrValue *v) {
  const IrValue *cv = kernel_conv(cg, v);
  if (cv)
    v = cv;
  switch (v->op) {
  case OP_CONV:
  case OP_CONV_T: {
    Conv c = conv_value(v);
    if (c.ov) {
      Ov o = ov_of(&c, cg->accs);
      return round16(c.O * c.ck) + MAX_TASKS * o.xbuf;
    }
    return MAX_TASKS * c.panel;
  }
  case OP_CONV_W: {
    Conv c = conv_value(v);
    if (c.ov) {
      Ov o = ov_of(&c, cg->accs);
      return W_TASKS * ov_w_task(&c, &o);
    }
    return W_TASKS * w_task_floats(&c);
  }
  default:
    return 0;
  }
}

// CONV (y from x, w; the kernel stores `root`, v or an element-wise chain
// over v) and CONV_T (dx from dy, w): tasks over chunks of examples, each
// with its own panel.
static void conv_xy(Kern *k, const IrValue *root, const IrValue *v,
                    ConvPart part) {
  Cg *cg = k->cg;
  Conv c = conv_value(v);
  size_t len;
  const char *name = LLVMGetValueName2(k->k->fn, &len);
  if (c.ov) // the weight transposed, once per call (in kN.op)
    ov_transpose_w(cg, &c, kern_ptr(k, v->arg[1]), k->scratch);
  LLVMValueRef nb = examples(k, v->batched);
  LLVMValueRef task =
      kern_parallel(k, task_count(cg, nb, conv_flops(&c), MAX_TASKS), name);
  nb = examples(k, v->batched);
  LLVMValueRef nt = task_count(cg, nb, conv_flops(&c), MAX_TASKS);
  LLVMValueRef b0, b1;
  task_chunk(cg, task, nt, nb, &b0, &b1);
  LLVMValueRef panel =
      c.panel ? cg_gep(cg, k->scratch, cg_mul(cg, task, i64c(cg, c.panel)))
              : NULL;
  Implicit imt;
  if (c.implicit)
    imt = implicit_tables(cg, &c);
  LLVMValueRef w = kern_ptr(k, v->arg[1]);
  LLVMValueRef src = kern_ptr(k, v->arg[0]);
  Loop l;
  if (c.ov) {
    Ov o = ov_of(&c, cg->accs);
    LLVMValueRef xpad = cg_gep(cg, k->scratch,
                               cg_add(cg, i64c(cg, round16(c.O * c.ck)),
                                      cg_mul(cg, task, i64c(cg, o.xbuf))));
    if (o.copy)
      memzero(cg, xpad, i64c(cg, o.xbuf));
    LLVMValueRef roff = ov_roff(cg, &c, &o);
    LLVMValueRef b = range_begin(cg, &l, b0, b1, "b");
    LLVMValueRef xb = cg_gep(cg, src, cg_mul(cg, b, i64c(cg, c.xn)));
    LLVMValueRef yb = cg_gep(cg, k->out, cg_mul(cg, b, i64c(cg, c.yn)));
    if (o.copy)
      ov_copy(cg, &c, &o, xb, xpad);
    Epi e = {k, root, v, b, NULL, NULL, c.g.nout, c.O};
    ov_forward(cg, &c, &o, roff, o.copy ? xpad : xb, k->scratch, yb,
               root != v ? &e : NULL);
    loop_end(cg, &l);
    return;
  }
  LLVMValueRef b = range_begin(cg, &l, b0, b1, "b");
  if (part == PART_Y) {
    LLVMValueRef xb = cg_gep(cg, src, cg_mul(cg, b, i64c(cg, c.xn)));
    LLVMValueRef yb = cg_gep(cg, k->out, cg_mul(cg, b, i64c(cg, c.yn)));
    Epi e = {k, root, v, b, NULL, NULL, c.g.nout, c.O};
    conv_example(cg, &c, part, xb, yb, w, panel, NULL, root != v ? &e : NULL,
                 &imt);
  } else {
    LLVMValueRef xb = cg_gep(cg, k->out, cg_mul(cg, b, i64c(cg, c.xn)));
    LLVMValueRef yb = cg_gep(cg, src, cg_mul(cg, b, i64c(cg, c.yn)));
    // Pulling col2im writes every position once when there is one block.
    if (c.nblk > 1 || c.g.s[2] != 1)
      memzero(cg, xb, i64c(cg, c.xn));
    conv_example(cg, &c, part, xb, yb, w, panel, NULL, NULL, NULL);
  }
  loop_end(cg, &l);
}

void conv_kernel(Kern *k, const IrValue *root, const IrValue *conv) {
  conv_xy(k, root, conv, PART_Y);
}

void emit_CONV(Kern *k, const IrValue *v) {
  conv_xy(k, v, v, PART_Y);
}
void emit_CONV_T(Kern *k, const IrValue *v) {
  conv_xy(k, v, v, PART_X);
}

// Where the epilogue reads a stored leaf u at output channel o, positions
// q .. q+15 of example b (kernel_fuse's conv_epilogue_leaf admits only
// these): the output's own layout, one value per channel (a bias [O, 1...]),
// or one value (per example, or in all).
static LLVMValueRef epi_value(const Epi *e, const IrValue *v, LLVMValueRef o,
                              LLVMValueRef q, LLVMValueRef mask,
                              LLVMValueRef acc) {
  Cg *cg = e->k->cg;
  if (v == e->conv)
    return acc;
  if (v == e->root || cg->inl[v->id]) {
    if (v->op == OP_CONST)
      return cg_splat(cg, cg_f32(cg, v->attr.num));
    if (v->op == OP_BATCH_SIZE)
      return cg_splat(cg, LLVMBuildSIToFP(cg->b, e->k->rows, cg->t_elt, ""));
    assert(prims[v->op].kind == PK_EW);
    LLVMValueRef x[MAX_ARGS];
    for (int i = 0; i < v->narg; i++)
      x[i] = epi_value(e, v->arg[i], o, q, mask, acc);
    return ew_op(cg, v, x);
  }
  LLVMValueRef p = kern_ptr(e->k, v);
  int64_t n = shape_numel(v->shape);
  LLVMValueRef row = v->batched ? e->b : i64c(cg, 0);
  if (n == e->O * e->P) // the output's layout
    return cg_vload(
        cg,
        cg_gep(cg, p,
               cg_add(cg, cg_mul(cg, row, i64c(cg, n)),
                      cg_add(cg, cg_mul(cg, o, i64c(cg, e->P)), q))),
        mask);
  if (n == e->O) // per channel
    return cg_splat(
        cg, cg_load(cg, p, cg_add(cg, cg_mul(cg, row, i64c(cg, n)), o)));
  assert(n == 1);
  return cg_splat(cg, cg_load(cg, p, row));
}

// One <16 x float> lane sum with a fixed tree (reassoc allows it).
static LLVMValueRef hsum(Cg *cg, LLVMValueRef v) {
  LLVMValueRef args[2] = {cg_f32(cg, 0), v};
  LLVMTypeRef ov = cg_vty(cg);
  LLVMValueRef r = intrinsic(cg, "llvm.vector.reduce.fadd", &ov, 1, args, 2);
  LLVMSetFastMathFlags(r, LLVMFastMathAllowReassoc);
  return r;
}

// CONV_W: dw[o, r] = sum over examples and positions of dy[o, q] Col[r, q].
// Tasks take chunks of examples and keep 16 lane sums per weight; kN.op
// adds them up in task order and reduces the lanes, so the order of every
// sum depends on rows only.
void emit_CONV_W(Kern *k, const IrValue *v) {
  Cg *cg = k->cg;
  Conv c = conv_value(v);
  const IrValue *x = v->arg[0];
  Ov o = c.ov ? ov_of(&c, cg->accs) : (Ov){0};
  int64_t per = c.ov ? ov_w_task(&c, &o) : w_task_floats(&c), nw = c.O * c.ck;
  size_t len;
  const char *name =
      arena_printf(cg->arena, "%s.part", LLVMGetValueName2(k->k->fn, &len));

  // kN.op: part(args...) and the final sums.
  LLVMValueRef part = cg_function(cg, name, k->k->ty, true);
  unsigned np = LLVMCountParams(k->k->fn);
  LLVMValueRef *args = arena_alloc(cg->arena, sizeof *args * np);
  for (unsigned i = 0; i < np; i++)
    args[i] = LLVMGetParam(k->k->fn, i);
  LLVMBuildCall2(cg->b, k->k->ty, part, args, np, "");
  LLVMValueRef nt =
      task_count(cg, examples(k, x->batched), conv_flops(&c), W_TASKS);
  Loop le, lt;
  if (c.ov) { // dw[g og + ol][r] = sum over tasks of S_t[g ck + r][ol]
    LLVMValueRef e = loop_begin(cg, &le, i64c(cg, nw), "e");
    LLVMValueRef slot = cg_alloca(cg, cg->t_elt, "sum");
    LLVMBuildStore(cg->b, cg_load(cg, k->scratch, e), slot);
    LLVMValueRef t = loop_begin(cg, &lt, sub(cg, nt, i64c(cg, 1)), "t");
    LLVMValueRef toff =
        cg_add(cg, cg_mul(cg, cg_add(cg, t, i64c(cg, 1)), i64c(cg, per)), e);
    LLVMBuildStore(cg->b,
                   LLVMBuildFAdd(cg->b,
                                 LLVMBuildLoad2(cg->b, cg->t_elt, slot, ""),
                                 cg_load(cg, k->scratch, toff), ""),
                   slot);
    loop_end(cg, &lt);
    // e = (g ck + r) og + ol
    LLVMValueRef gr = LLVMBuildUDiv(cg->b, e, i64c(cg, c.og), "");
    LLVMValueRef ol = LLVMBuildURem(cg->b, e, i64c(cg, c.og), "");
    LLVMValueRef gi = LLVMBuildUDiv(cg->b, gr, i64c(cg, c.ck), "");
    LLVMValueRef r = LLVMBuildURem(cg->b, gr, i64c(cg, c.ck), "");
    cg_store(cg, LLVMBuildLoad2(cg->b, cg->t_elt, slot, ""), k->out,
             cg_add(cg,
                    cg_mul(cg, cg_add(cg, cg_mul(cg, gi, i64c(cg, c.og)), ol),
                           i64c(cg, c.ck)),
                    r));
    loop_end(cg, &le);
  } else {
    LLVMValueRef e = loop_begin(cg, &le, i64c(cg, nw), "e");
    LLVMValueRef eoff = cg_mul(cg, e, i64c(cg, VL));
    LLVMValueRef acc = cg_vload(cg, cg_gep(cg, k->scratch, eoff), NULL);
    LLVMValueRef slot = cg_alloca(cg, cg_vty(cg), "sum");
    LLVMBuildStore(cg->b, acc, slot);
    LLVMValueRef t = loop_begin(cg, &lt, sub(cg, nt, i64c(cg, 1)), "t");
    LLVMValueRef toff =
        cg_add(cg, cg_mul(cg, cg_add(cg, t, i64c(cg, 1)), i64c(cg, per)), eoff);
    LLVMBuildStore(
        cg->b,
        LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg_vty(cg), slot, ""),
                      cg_vload(cg, cg_gep(cg, k->scratch, toff), NULL), ""),
        slot);
    loop_end(cg, &lt);
    cg_store(cg, hsum(cg, LLVMBuildLoad2(cg->b, cg_vty(cg), slot, "")), k->out,
             e);
    loop_end(cg, &le);
  }
  LLVMBasicBlockRef back = LLVMGetInsertBlock(cg->b);

  // part: the tasks.
  Kernel pk = *k->k;
  pk.fn = part;
  assert(pk.nout == 1 && pk.opt_param < 0);
  Kern kk = {.cg = cg, .k = &pk};
  kk.inp = arena_alloc(cg->arena, sizeof *kk.inp * (size_t)(pk.nin + 1));
  kk.outp = arena_alloc(cg->arena, sizeof *kk.outp);
  unsigned i = 0;
  kk.out = kk.outp[0] = LLVMGetParam(part, i++);
  for (int a = 0; a < pk.nin; a++)
    kk.inp[a] = LLVMGetParam(part, i++);
  assert(pk.scratch);
  kk.scratch = LLVMGetParam(part, i++);
  kk.rows = LLVMGetParam(part, i);
  LLVMPositionBuilderAtEnd(cg->b,
                           LLVMAppendBasicBlockInContext(cg->lc, part, ""));
  LLVMValueRef nb = examples(&kk, x->batched);
  LLVMValueRef task =
      kern_parallel(&kk, task_count(cg, nb, conv_flops(&c), W_TASKS), name);
  nb = examples(&kk, x->batched);
  nt = task_count(cg, nb, conv_flops(&c), W_TASKS);
  LLVMValueRef b0, b1;
  task_chunk(cg, task, nt, nb, &b0, &b1);
  LLVMValueRef sums = cg_gep(cg, kk.scratch, cg_mul(cg, task, i64c(cg, per)));
  LLVMValueRef xp = kern_ptr(&kk, x), dyp = kern_ptr(&kk, v->arg[1]);
  Loop l;
  if (c.ov) {
    LLVMValueRef dyt = cg_gep(cg, sums, i64c(cg, round16(nw)));
    LLVMValueRef xpad = cg_gep(cg, dyt, i64c(cg, round16(c.g.nout) * c.O));
    memzero(cg, sums, i64c(cg, nw));
    if (o.copy)
      memzero(cg, xpad, i64c(cg, o.xbuf));
    LLVMValueRef b = range_begin(cg, &l, b0, b1, "b");
    LLVMValueRef xb = cg_gep(cg, xp, cg_mul(cg, b, i64c(cg, c.xn)));
    if (o.copy)
      ov_copy(cg, &c, &o, xb, xpad);
    ov_weights(cg, &c, &o, o.copy ? xpad : xb,
               cg_gep(cg, dyp, cg_mul(cg, b, i64c(cg, c.yn))), dyt, sums);
    loop_end(cg, &l);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, back);
    return;
  }
  LLVMValueRef panel = cg_gep(cg, sums, i64c(cg, round16(nw * VL)));
  memzero(cg, sums, i64c(cg, nw * VL));
  LLVMValueRef b = range_begin(cg, &l, b0, b1, "b");
  Implicit imt;
  if (c.implicit)
    imt = implicit_tables(cg, &c);
  conv_example(cg, &c, PART_W, cg_gep(cg, xp, cg_mul(cg, b, i64c(cg, c.xn))),
               cg_gep(cg, dyp, cg_mul(cg, b, i64c(cg, c.yn))), NULL, panel,
               sums, NULL, &imt);
  loop_end(cg, &l);
  LLVMBuildRetVoid(cg->b);
  LLVMPositionBuilderAtEnd(cg->b, back);
}

// ---- pools --------------------------------------------------------------------------
// Every pool walks channel planes rc (row r, channel c: rc = r C + c) of
// the unpooled value, lines (od, oh) and vectors of 16 windows along ow;
// for each window vector the valid taps along d and h are a range, and
// along w a lane mask.
typedef enum PoolOp { P_MAX, P_UNPOOL, P_SELECT, P_AVG, P_AVG_T } PoolOp;

typedef struct Pool {
  PoolOp op;
  WinGeom g;
  LLVMValueRef xin;    // the unpooled plane read (x, x_ref; AVGPOOL_T: out)
  LLVMValueRef pooled; // the pooled plane (out; dy for UNPOOL, AVGPOOL_T)
  LLVMValueRef gin;    // POOL_SELECT: the plane of g; UNPOOL: out
  bool overlap_w;      // windows along w share positions
  bool disjoint;       // no two windows share a position
} Pool;

// The window vector at line (od, oh), windows ow0 .. ow0 + cnt - 1.
static void pool_vector(Cg *cg, const Pool *p, LLVMValueRef od, LLVMValueRef oh,
                        LLVMValueRef kd0, LLVMValueRef kd1, LLVMValueRef kh0,
                        LLVMValueRef kh1, LLVMValueRef ow0, LLVMValueRef cnt) {
  const WinGeom *g = &p->g;
  LLVMTypeRef vt = cg_vty(cg), it = ivty(cg);
  LLVMTypeRef mt = LLVMVectorType(cg->t_i1, VL);
  LLVMValueRef lanes = lanes_below(cg, cnt);
  LLVMValueRef oidx =
      cg_add(cg,
             cg_mul(cg, cg_add(cg, cg_mul(cg, od, i64c(cg, g->out[1])), oh),
                    i64c(cg, g->out[2])),
             ow0);
  LLVMValueRef best = cg_alloca(cg, vt, "best");
  LLVMValueRef bidx = cg_alloca(cg, it, "bidx");
  LLVMValueRef have = cg_alloca(cg, mt, "have");
  LLVMValueRef dyv = NULL;
  LLVMBuildStore(cg->b, LLVMConstNull(vt), best);
  LLVMBuildStore(cg->b, LLVMConstNull(it), bidx);
  LLVMBuildStore(cg->b, LLVMConstNull(mt), have);
  if (p->op == P_AVG_T)
    dyv = LLVMBuildFDiv(cg->b, cg_vload(cg, gep(cg, p->pooled, oidx), lanes),
                        cg_splat(cg, cg_f32(cg, (double)g->nk)), "");
  Loop ld, lh, lw;
  LLVMValueRef kd = range_begin(cg, &ld, kd0, kd1, "kd");
  LLVMValueRef kh = range_begin(cg, &lh, kh0, kh1, "kh");
  LLVMValueRef id =
      cg_add(cg, sub(cg, cg_mul(cg, od, i64c(cg, g->s[0])), i64c(cg, g->lo[0])),
             cg_mul(cg, kd, i64c(cg, g->d[0])));
  LLVMValueRef ih =
      cg_add(cg, sub(cg, cg_mul(cg, oh, i64c(cg, g->s[1])), i64c(cg, g->lo[1])),
             cg_mul(cg, kh, i64c(cg, g->d[1])));
  LLVMValueRef rowbase = cg_mul(
      cg, cg_add(cg, cg_mul(cg, id, i64c(cg, g->n[1])), ih), i64c(cg, g->n[2]));
  LLVMValueRef kw = loop_begin(cg, &lw, i64c(cg, g->k[2]), "kw");
  LLVMValueRef pos;
  LLVMValueRef m = w_lanes(cg, g, ow0, cnt, kw, &pos);
  LLVMValueRef first = cg_add(
      cg, rowbase,
      cg_add(cg,
             sub(cg, cg_mul(cg, ow0, i64c(cg, g->s[2])), i64c(cg, g->lo[2])),
             cg_mul(cg, kw, i64c(cg, g->d[2]))));
  LLVMValueRef xp = gep(cg, p->xin, first);
  if (p->op == P_AVG_T) {
    LLVMValueRef cur = load_strided(cg, xp, g->s[2], m);
    store_strided(cg, LLVMBuildFAdd(cg->b, cur, dyv, ""), xp, g->s[2], m);
  } else {
    LLVMValueRef xv = load_strided(cg, xp, g->s[2], m);
    LLVMValueRef bv = LLVMBuildLoad2(cg->b, vt, best, "");
    if (p->op == P_AVG) {
      LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, bv, xv, ""), best);
    } else {
      LLVMValueRef hv = LLVMBuildLoad2(cg->b, mt, have, "");
      // take the tap where it reads input and is the first such or greater
      LLVMValueRef gt = LLVMBuildFCmp(cg->b, LLVMRealOGT, xv, bv, "");
      LLVMValueRef take =
          and1(cg, m, LLVMBuildOr(cg->b, LLVMBuildNot(cg->b, hv, ""), gt, ""));
      LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, take, xv, bv, ""), best);
      LLVMBuildStore(cg->b, LLVMBuildOr(cg->b, hv, m, ""), have);
      if (p->op != P_MAX) {
        LLVMValueRef at =
            LLVMBuildAdd(cg->b, pos, cg_splat(cg, to_i32(cg, rowbase)), "");
        LLVMBuildStore(cg->b,
                       LLVMBuildSelect(cg->b, take, at,
                                       LLVMBuildLoad2(cg->b, it, bidx, ""), ""),
                       bidx);
      }
    }
  }
  loop_end(cg, &lw);
  loop_end(cg, &lh);
  loop_end(cg, &ld);

  LLVMValueRef bv = LLVMBuildLoad2(cg->b, vt, best, "");
  LLVMValueRef bi = LLVMBuildLoad2(cg->b, it, bidx, "");
  LLVMValueRef op = gep(cg, p->pooled, oidx);
  switch (p->op) {
  case P_MAX:
    cg_vstore(cg, bv, op, lanes);
    break;
  case P_AVG:
    cg_vstore(
        cg,
        LLVMBuildFDiv(cg->b, bv, cg_splat(cg, cg_f32(cg, (double)g->nk)), ""),
        op, lanes);
    break;
  case P_SELECT:
    cg_vstore(cg, gather(cg, p->gin, bi, lanes), op, lanes);
    break;
  case P_UNPOOL: {
    LLVMValueRef dy = cg_vload(cg, op, lanes);
    if (p->disjoint) {
      // Every position of the windows once: dy at the argmax, else 0
      // (strided stores; a scatter is slow). Positions outside every
      // window were zeroed (or there are none).
      Loop ld2, lh2, lw2;
      LLVMValueRef kd2 = range_begin(cg, &ld2, kd0, kd1, "kd");
      LLVMValueRef kh2 = range_begin(cg, &lh2, kh0, kh1, "kh");
      LLVMValueRef rb =
          cg_mul(cg,
                 cg_add(cg,
                        cg_mul(cg,
                               cg_add(cg,
                                      sub(cg, cg_mul(cg, od, i64c(cg, g->s[0])),
                                          i64c(cg, g->lo[0])),
                                      cg_mul(cg, kd2, i64c(cg, g->d[0]))),
                               i64c(cg, g->n[1])),
                        cg_add(cg,
                               sub(cg, cg_mul(cg, oh, i64c(cg, g->s[1])),
                                   i64c(cg, g->lo[1])),
                               cg_mul(cg, kh2, i64c(cg, g->d[1])))),
                 i64c(cg, g->n[2]));
      LLVMValueRef kw2 = loop_begin(cg, &lw2, i64c(cg, g->k[2]), "kw");
      LLVMValueRef pos2;
      LLVMValueRef m2 = w_lanes(cg, g, ow0, cnt, kw2, &pos2);
      LLVMValueRef at =
          LLVMBuildAdd(cg->b, pos2, cg_splat(cg, to_i32(cg, rb)), "");
      LLVMValueRef hit = LLVMBuildICmp(cg->b, LLVMIntEQ, at, bi, "");
      LLVMValueRef val =
          LLVMBuildSelect(cg->b, hit, dy, LLVMConstNull(cg_vty(cg)), "");
      LLVMValueRef first =
          cg_add(cg, rb,
                 cg_add(cg,
                        sub(cg, cg_mul(cg, ow0, i64c(cg, g->s[2])),
                            i64c(cg, g->lo[2])),
                        cg_mul(cg, kw2, i64c(cg, g->d[2]))));
      store_strided(cg, val, gep(cg, p->gin, first), g->s[2], m2);
      loop_end(cg, &lw2);
      loop_end(cg, &lh2);
      loop_end(cg, &ld2);
    } else if (!p->overlap_w) {
      scatter(cg, LLVMBuildFAdd(cg->b, gather(cg, p->gin, bi, lanes), dy, ""),
              p->gin, bi, lanes);
    } else { // windows of one vector may share their argmax: one at a time
      Loop li;
      LLVMValueRef i = loop_begin(cg, &li, cnt, "lane");
      LLVMValueRef at = LLVMBuildSExt(
          cg->b, LLVMBuildExtractElement(cg->b, bi, i, ""), cg->t_i64, "");
      LLVMValueRef cur = cg_load(cg, p->gin, at);
      cg_store(cg,
               LLVMBuildFAdd(cg->b, cur,
                             LLVMBuildExtractElement(cg->b, dy, i, ""), ""),
               p->gin, at);
      loop_end(cg, &li);
    }
    break;
  }
  case P_AVG_T:
    break;
  }
}

static void pool_plane(Cg *cg, const Pool *p) {
  const WinGeom *g = &p->g;
  Loop ld, lh, lw;
  LLVMValueRef od = loop_begin(cg, &ld, i64c(cg, g->out[0]), "od");
  LLVMValueRef kd0, kd1;
  tap_range(cg, g, 0, od, &kd0, &kd1);
  LLVMValueRef oh = loop_begin(cg, &lh, i64c(cg, g->out[1]), "oh");
  LLVMValueRef kh0, kh1;
  tap_range(cg, g, 1, oh, &kh0, &kh1);
  LLVMValueRef w =
      loop_begin(cg, &lw, i64c(cg, (g->out[2] + VL - 1) / VL), "w");
  LLVMValueRef ow0 = cg_mul(cg, w, i64c(cg, VL));
  LLVMValueRef cnt = smin(cg, sub(cg, i64c(cg, g->out[2]), ow0), i64c(cg, VL));
  pool_vector(cg, p, od, oh, kd0, kd1, kh0, kh1, ow0, cnt);
  loop_end(cg, &lw);
  loop_end(cg, &lh);
  loop_end(cg, &ld);
}

// Whether the windows tile the input exactly (every position in one).
static bool covered(const WinGeom *g) {
  for (int i = 0; i < 3; i++)
    if (g->d[i] != 1 || g->s[i] != g->k[i] || g->lo[i] != 0 ||
        g->out[i] * g->k[i] != g->n[i])
      return false;
  return true;
}

// Whether windows along axis i share input positions.
static bool overlaps(const WinGeom *g, int i) {
  return g->out[i] > 1 && (g->k[i] - 1) * g->d[i] + 1 > g->s[i];
}

static void pool_kernel(Kern *k, const IrValue *v, PoolOp op) {
  Cg *cg = k->cg;
  // The unpooled shape and the pooled one.
  Shape un = op == P_AVG_T ? v->shape : v->arg[0]->shape;
  Shape po = op == P_UNPOOL  ? v->arg[1]->shape
             : op == P_AVG_T ? v->arg[0]->shape
                             : v->shape;
  Pool p = {.op = op, .g = win_geom(un, po, v->attr.win.kernel, &v->attr.win)};
  const WinGeom *g = &p.g;
  p.overlap_w = overlaps(g, 2);
  p.disjoint = !overlaps(g, 0) && !overlaps(g, 1) && !p.overlap_w;
  int64_t C = un.dim[0];
  size_t len;
  const char *name = LLVMGetValueName2(k->k->fn, &len);
  LLVMValueRef planes = cg_mul(cg, examples(k, v->batched), i64c(cg, C));
  int64_t work = g->nin + g->nout * g->nk;
  LLVMValueRef task =
      kern_parallel(k, task_count(cg, planes, work, MAX_TASKS), name);
  planes = cg_mul(cg, examples(k, v->batched), i64c(cg, C));
  LLVMValueRef nt = task_count(cg, planes, work, MAX_TASKS);
  LLVMValueRef rc0, rc1;
  task_chunk(cg, task, nt, planes, &rc0, &rc1);
  LLVMValueRef a0 = kern_ptr(k, v->arg[0]);
  LLVMValueRef a1 = v->narg > 1 ? kern_ptr(k, v->arg[1]) : NULL;
  Loop l;
  LLVMValueRef rc = range_begin(cg, &l, rc0, rc1, "plane");
  LLVMValueRef uoff = cg_mul(cg, rc, i64c(cg, g->nin));
  LLVMValueRef poff = cg_mul(cg, rc, i64c(cg, g->nout));
  switch (op) {
  case P_MAX:
  case P_AVG:
    p.xin = cg_gep(cg, a0, uoff);
    p.pooled = cg_gep(cg, k->out, poff);
    break;
  case P_SELECT:
    p.xin = cg_gep(cg, a0, uoff);
    p.gin = cg_gep(cg, a1, uoff);
    p.pooled = cg_gep(cg, k->out, poff);
    break;
  case P_UNPOOL:
    p.xin = cg_gep(cg, a0, uoff);
    p.gin = cg_gep(cg, k->out, uoff);
    p.pooled = cg_gep(cg, a1, poff);
    if (!p.disjoint || !covered(g))
      memzero(cg, p.gin, i64c(cg, g->nin));
    break;
  case P_AVG_T:
    p.xin = cg_gep(cg, k->out, uoff);
    p.pooled = cg_gep(cg, a0, poff);
    memzero(cg, p.xin, i64c(cg, g->nin));
    break;
  }
  pool_plane(cg, &p);
  loop_end(cg, &l);
}

void emit_MAXPOOL(Kern *k, const IrValue *v) {
  pool_kernel(k, v, P_MAX);
}
void emit_UNPOOL(Kern *k, const IrValue *v) {
  pool_kernel(k, v, P_UNPOOL);
}
void emit_POOL_SELECT(Kern *k, const IrValue *v) {
  pool_kernel(k, v, P_SELECT);
}
void emit_AVGPOOL(Kern *k, const IrValue *v) {
  pool_kernel(k, v, P_AVG);
}
void emit_AVGPOOL_T(Kern *k, const IrValue *v) {
  pool_kernel(k, v, P_AVG_T);
}

// ---- concat, slice, embed -----------------------------------------------------------
// Copies between the slab start .. start + len of `axis` in `big` (rows
// rows) and `small` (extent len there): to_big says the direction. An
// unbatched small is the same for every row of big.
static void slab_copy(Kern *k, const IrValue *big, LLVMValueRef bigp,
                      const IrValue *small, LLVMValueRef smallp, int axis,
                      int64_t start, bool to_big) {
  Cg *cg = k->cg;
  int64_t outer = shape_outer(big->shape, axis),
          inner = shape_inner(big->shape, axis);
  int64_t blen = big->shape.dim[axis], slen = small->shape.dim[axis];
  int64_t bn = shape_numel(big->shape), sn = shape_numel(small->shape);
  int64_t chunk = slen * inner;
  Loop lr, lo;
  LLVMValueRef r = loop_begin(cg, &lr, examples(k, big->batched), "row");
  LLVMValueRef o = loop_begin(cg, &lo, i64c(cg, outer), "outer");
  LLVMValueRef bo = cg_add(
      cg, cg_mul(cg, r, i64c(cg, bn)),
      cg_mul(cg, cg_add(cg, cg_mul(cg, o, i64c(cg, blen)), i64c(cg, start)),
             i64c(cg, inner)));
  LLVMValueRef so =
      cg_add(cg, small->batched ? cg_mul(cg, r, i64c(cg, sn)) : i64c(cg, 0),
             cg_mul(cg, o, i64c(cg, chunk)));
  LLVMValueRef bp = cg_gep(cg, bigp, bo), sp = cg_gep(cg, smallp, so);
  LLVMValueRef bytes = i64c(cg, chunk * cg->elt_size);
  unsigned al = (unsigned)cg->elt_size;
  if (to_big)
    LLVMBuildMemCpy(cg->b, bp, al, sp, al, bytes);
  else
    LLVMBuildMemCpy(cg->b, sp, al, bp, al, bytes);
  loop_end(cg, &lo);
  loop_end(cg, &lr);
}

void emit_CONCAT(Kern *k, const IrValue *v) {
  const IrValue *a = v->arg[0], *b = v->arg[1];
  int ax = v->attr.axis;
  LLVMValueRef ap = kern_ptr(k, a), bp = kern_ptr(k, b);
  slab_copy(k, v, k->out, a, ap, ax, 0, true);
  slab_copy(k, v, k->out, b, bp, ax, a->shape.dim[ax], true);
}

void emit_SLICE(Kern *k, const IrValue *v) {
  const IrValue *x = v->arg[0];
  slab_copy(k, x, kern_ptr(k, x), v, k->out, v->attr.axis, v->attr.start,
            false);
}

void emit_EMBED(Kern *k, const IrValue *v) {
  const IrValue *x = v->arg[0];
  memzero(k->cg, k->out,
          cg_mul(k->cg, examples(k, v->batched),
                 i64c(k->cg, shape_numel(v->shape))));
  slab_copy(k, v, k->out, x, kern_ptr(k, x), v->attr.axis, v->attr.start, true);
}

// ---- per-channel sums (a convolution's bias gradient) ---------------------------------
// The P floats at base added up in 16 lanes: four accumulators, in order.
static LLVMValueRef channel_lanes(Cg *cg, LLVMValueRef base, int64_t P) {
  LLVMValueRef slot[4];
  for (int a = 0; a < 4; a++) {
    slot[a] = cg_alloca(cg, cg_vty(cg), "acc");
    LLVMBuildStore(cg->b, LLVMConstNull(cg_vty(cg)), slot[a]);
  }
  int64_t n4 = P / (4 * VL);
  if (n4 > 0) {
    Loop lq;
    LLVMValueRef q = loop_begin(cg, &lq, i64c(cg, n4), "q");
    LLVMValueRef qb = cg_mul(cg, q, i64c(cg, 4 * VL));
    for (int a = 0; a < 4; a++) {
      LLVMValueRef xv = cg_vload(
          cg, cg_gep(cg, base, cg_add(cg, qb, i64c(cg, a * VL))), NULL);
      LLVMBuildStore(
          cg->b,
          LLVMBuildFAdd(cg->b, LLVMBuildLoad2(cg->b, cg_vty(cg), slot[a], ""),
                        xv, ""),
          slot[a]);
    }
    loop_end(cg, &lq);
  }
  for (int64_t off = n4 * 4 * VL, a = 0; off < P; off += VL, a++) {
    LLVMValueRef xv =
        cg_vload(cg, cg_gep(cg, base, i64c(cg, off)), cg_vmask(cg, P - off));
    LLVMBuildStore(cg->b,
                   LLVMBuildFAdd(cg->b,
                                 LLVMBuildLoad2(cg->b, cg_vty(cg), slot[a], ""),
                                 xv, ""),
                   slot[a]);
  }
  LLVMValueRef acc[4];
  for (int a = 0; a < 4; a++)
    acc[a] = LLVMBuildLoad2(cg->b, cg_vty(cg), slot[a], "");
  return LLVMBuildFAdd(cg->b, LLVMBuildFAdd(cg->b, acc[0], acc[1], ""),
                       LLVMBuildFAdd(cg->b, acc[2], acc[3], ""), "");
}

// SUM_TO from a stored, batched [C, n...] to an unbatched [C, 1, ...]: each
// channel's positions of every example, added up in vectors of 16 lanes
// (see channel_lanes), then the lanes, in a fixed order. Tasks take
// channels. In a row group's loop (row mode), this row's sums are added to
// the channels' totals (the group zeroes them first).
bool conv_channel_sum(Kern *k, const IrValue *v) {
  Cg *cg = k->cg;
  const IrValue *x = v->arg[0];
  Shape s = v->shape, xs = x->shape;
  if (cg->inl[x->id] || !x->batched || v->batched || s.rank != xs.rank ||
      s.rank < 2 || s.dim[0] != xs.dim[0])
    return false;
  for (int i = 1; i < s.rank; i++)
    if (s.dim[i] != 1)
      return false;
  int64_t C = xs.dim[0], P = shape_numel(xs) / C;
  Loop lc, lb;
  if (k->row) {
    LLVMValueRef xp = kern_ptr(k, x);
    LLVMValueRef c = loop_begin(cg, &lc, i64c(cg, C), "c");
    LLVMValueRef base =
        cg_gep(cg, xp,
               cg_mul(cg, cg_add(cg, cg_mul(cg, k->row, i64c(cg, C)), c),
                      i64c(cg, P)));
    LLVMValueRef sum = hsum(cg, channel_lanes(cg, base, P));
    cg_store(cg, LLVMBuildFAdd(cg->b, cg_load(cg, k->out, c), sum, ""), k->out,
             c);
    loop_end(cg, &lc);
    return true;
  }
  size_t len;
  const char *name = LLVMGetValueName2(k->k->fn, &len);
  int64_t cap = MAX_TASKS > C ? C : MAX_TASKS;
  LLVMValueRef task =
      kern_parallel(k, task_count(cg, k->rows, C * P, cap), name);
  LLVMValueRef nt = task_count(cg, k->rows, C * P, cap);
  LLVMValueRef c0, c1;
  task_chunk(cg, task, nt, i64c(cg, C), &c0, &c1);
  LLVMValueRef xp = kern_ptr(k, x);
  LLVMValueRef c = range_begin(cg, &lc, c0, c1, "c");
  LLVMValueRef tot = cg_alloca(cg, cg_vty(cg), "tot");
  LLVMBuildStore(cg->b, LLVMConstNull(cg_vty(cg)), tot);
  LLVMValueRef b = loop_begin(cg, &lb, k->rows, "b");
  LLVMValueRef base = cg_gep(
      cg, xp,
      cg_mul(cg, cg_add(cg, cg_mul(cg, b, i64c(cg, C)), c), i64c(cg, P)));
  LLVMBuildStore(cg->b,
                 LLVMBuildFAdd(cg->b,
                               LLVMBuildLoad2(cg->b, cg_vty(cg), tot, ""),
                               channel_lanes(cg, base, P), ""),
                 tot);
  loop_end(cg, &lb);
  cg_store(cg, hsum(cg, LLVMBuildLoad2(cg->b, cg_vty(cg), tot, "")), k->out, c);
  loop_end(cg, &lc);
  return true;
}
