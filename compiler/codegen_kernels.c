// codegen_kernels.c — loop nests and one emitter per primitive (the `emit_ID`
// column of prims.def), building the kernel functions codegen.c calls.
//
// Consumes IR values whose storage codegen.c has planned (cg->inl says which
// values are computed inline instead of stored) and produces, per
// materialized value v, an internal function
//     void kN.op(ptr noalias out, ptr noalias in0, ..., i64 rows)
// where `out` is v's buffer, `in*` are the buffers of the stored values v
// reads (its arguments, or the leaves of its fused element-wise tree), and
// `rows` is the batch size B of this call. Buffers are row-major with the
// batch axis outermost; a batched value holds rows x numel floats.
//
// Invariants: a kernel only writes `out`, which never shares memory with an
// input (the planner gives each value its own region), so noalias holds.
// Element-wise trees are addressed through an Idx in the *iteration space*
// of the kernel (the shape being looped over); broadcasting composes, so a
// leaf at any depth of a fused tree is addressed directly from that space.
#include <assert.h>
#include <math.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "codegen_internal.h"
#include "nnrt_rng.h"

// Elements per optimizer task (a multiple of 16).
enum { OPT_CHUNK = 16384 };

// ---- builder helpers --------------------------------------------------------
LLVMValueRef cg_i64(Cg *cg, int64_t v) {
  return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1);
}

LLVMValueRef cg_f32(Cg *cg, double v) {
  return LLVMConstReal(cg->t_elt, v);
}

LLVMValueRef cg_gep(Cg *cg, LLVMValueRef p, LLVMValueRef i) {
  return LLVMBuildInBoundsGEP2(cg->b, cg->t_elt, p, &i, 1, "");
}

LLVMValueRef cg_load(Cg *cg, LLVMValueRef p, LLVMValueRef i) {
  LLVMValueRef l = LLVMBuildLoad2(cg->b, cg->t_elt, cg_gep(cg, p, i), "");
  LLVMSetAlignment(l, (unsigned)cg->elt_size);
  return l;
}

void cg_store(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i) {
  LLVMValueRef s = LLVMBuildStore(cg->b, v, cg_gep(cg, p, i));
  LLVMSetAlignment(s, (unsigned)cg->elt_size);
}

static bool is_const_int(LLVMValueRef v, int64_t c) {
  return LLVMIsAConstantInt(v) && LLVMConstIntGetSExtValue(v) == c;
}

// Index arithmetic folds the trivial cases so O0 output stays readable.
LLVMValueRef cg_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  if (is_const_int(a, 1) || is_const_int(b, 0))
    return b;
  if (is_const_int(b, 1) || is_const_int(a, 0))
    return a;
  return LLVMBuildNSWMul(cg->b, a, b, "");
}

LLVMValueRef cg_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  if (is_const_int(a, 0))
    return b;
  if (is_const_int(b, 0))
    return a;
  return LLVMBuildNSWAdd(cg->b, a, b, "");
}

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  assert(id && "unknown intrinsic");
  LLVMTypeRef t = LLVMTypeOf(args[0]);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &t, 1);
  LLVMTypeRef ty = LLVMIntrinsicGetType(cg->lc, id, &t, 1);
  return LLVMBuildCall2(cg->b, ty, fn, args, (unsigned)n, "");
}

LLVMValueRef cg_alloca(Cg *cg, LLVMTypeRef ty, const char *name) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(fn);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first)
    LLVMPositionBuilderBefore(cg->ab, first);
  else
    LLVMPositionBuilderAtEnd(cg->ab, entry);
  return LLVMBuildAlloca(cg->ab, ty, name);
}

static LLVMAttributeRef enum_attr(Cg *cg, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  assert(kind);
  return LLVMCreateEnumAttribute(cg->lc, kind, 0);
}

LLVMValueRef cg_function(Cg *cg, const char *name, LLVMTypeRef ty,
                         bool internal) {
  LLVMValueRef fn = LLVMAddFunction(cg->mod, name, ty);
  if (internal) {
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    // Only internal kernels get noalias: their callers pass distinct
    // buffers. The exported entry points share `params` with the runtime
    // (checkpoints read it inside callbacks), so they must not.
    unsigned n = LLVMCountParams(fn);
    for (unsigned i = 0; i < n; i++)
      if (LLVMGetTypeKind(LLVMTypeOf(LLVMGetParam(fn, i))) ==
          LLVMPointerTypeKind)
        LLVMAddAttributeAtIndex(fn, i + 1, enum_attr(cg, "noalias"));
    // Kernels are called from both nnc_train and nnc_infer: inlined, each
    // would be optimized and compiled twice. A call per kernel is nothing
    // next to its loops, and profiles then show time per kernel.
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            enum_attr(cg, "noinline"));
  }
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          enum_attr(cg, "nounwind"));
  // The X86 tuning would otherwise vectorize with 256-bit vectors only.
  LLVMAddAttributeAtIndex(
      fn, LLVMAttributeFunctionIndex,
      LLVMCreateStringAttribute(cg->lc, "prefer-vector-width", 19, "512", 3));
  return fn;
}

// Fast-math flags on an FP instruction (constant-folded results have none).
static LLVMValueRef fmf(LLVMValueRef v, LLVMFastMathFlags f) {
  if (LLVMIsAInstruction(v) && LLVMCanValueUseFastMathFlags(v))
    LLVMSetFastMathFlags(v, f);
  return v;
}
enum {
  FM_CONTRACT = LLVMFastMathAllowContract,
  // Sums may be reordered so the vectorizer can split them into lanes.
  FM_REDUCE = LLVMFastMathAllowContract | LLVMFastMathAllowReassoc,
};

// ---- loops ------------------------------------------------------------------
LLVMValueRef loop_begin(Cg *cg, Loop *l, LLVMValueRef n, const char *name) {
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
  LLVMValueRef zero = cg_i64(cg, 0);
  l->n = n;
  l->pre = LLVMGetInsertBlock(cg->b);
  l->body = LLVMAppendBasicBlockInContext(cg->lc, fn, name);
  l->exit = LLVMAppendBasicBlockInContext(cg->lc, fn, "");
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, n, zero, ""), l->body,
                  l->exit);
  LLVMPositionBuilderAtEnd(cg->b, l->body);
  l->i = LLVMBuildPhi(cg->b, cg->t_i64, name);
  LLVMAddIncoming(l->i, &zero, &l->pre, 1);
  return l->i;
}

void loop_end(Cg *cg, Loop *l) {
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
  LLVMValueRef next = LLVMBuildNSWAdd(cg->b, l->i, cg_i64(cg, 1), "");
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, l->n, ""),
                  l->body, l->exit);
  LLVMAddIncoming(l->i, &next, &latch, 1);
  LLVMMoveBasicBlockAfter(l->exit, latch); // keeps the printed IR in order
  LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

// A stack of loops closed together.
typedef struct Nest {
  Loop l[MAX_RANK + 1];
  int n;
} Nest;

static void nest_end(Cg *cg, Nest *ns) {
  while (ns->n > 0)
    loop_end(cg, &ns->l[--ns->n]);
}

// ---- vectors of 16 floats ------------------------------------------------------
LLVMTypeRef cg_vty(Cg *cg) {
  return LLVMVectorType(cg->t_elt, 16);
}

LLVMValueRef cg_splat(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), 16);
  LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetPoison(vt), x,
                                          LLVMConstInt(cg->t_i32, 0, 0), "");
  return LLVMBuildShuffleVector(cg->b, v, LLVMGetPoison(vt),
                                LLVMConstNull(LLVMVectorType(cg->t_i32, 16)),
                                "");
}

LLVMValueRef cg_vmask(Cg *cg, int64_t n) {
  if (n >= 16)
    return NULL;
  LLVMValueRef e[16];
  for (int i = 0; i < 16; i++)
    e[i] = LLVMConstInt(cg->t_i1, i < n, 0);
  return LLVMConstVector(e, 16);
}

static LLVMValueRef masked_op(Cg *cg, const char *name, LLVMTypeRef vt,
                              LLVMValueRef *args) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  assert(id && "unknown intrinsic");
  LLVMTypeRef ov[2] = {vt, cg->t_ptr};
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, ov, 2);
  LLVMTypeRef ty = LLVMIntrinsicGetType(cg->lc, id, ov, 2);
  return LLVMBuildCall2(cg->b, ty, fn, args, 4, "");
}

LLVMValueRef cg_vload_n(Cg *cg, LLVMValueRef p, LLVMValueRef mask,
                        unsigned lanes) {
  LLVMTypeRef vt = LLVMVectorType(cg->t_elt, lanes);
  if (!mask) {
    LLVMValueRef l = LLVMBuildLoad2(cg->b, vt, p, "");
    LLVMSetAlignment(l, (unsigned)cg->elt_size);
    return l;
  }
  LLVMValueRef args[4] = {p, LLVMConstInt(cg->t_i32, (unsigned)cg->elt_size, 0), mask,
                          LLVMConstNull(vt)};
  return masked_op(cg, "llvm.masked.load", vt, args);
}

void cg_vstore_n(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
  if (!mask) {
    LLVMValueRef s = LLVMBuildStore(cg->b, v, p);
    LLVMSetAlignment(s, (unsigned)cg->elt_size);
    return;
  }
  LLVMValueRef args[4] = {v, p, LLVMConstInt(cg->t_i32, (unsigned)cg->elt_size, 0), mask};
  masked_op(cg, "llvm.masked.store", LLVMTypeOf(v), args);
}

LLVMValueRef cg_vload(Cg *cg, LLVMValueRef p, LLVMValueRef mask) {
  return cg_vload_n(cg, p, mask, 16);
}

void cg_vstore(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
  cg_vstore_n(cg, v, p, mask);
}

// Four rounds of two-source shuffles, each swapping the off-diagonal blocks
// of 8, 4, 2 and 1 rows.
void cg_transpose16(Cg *cg, LLVMValueRef *r) {
  for (int h = 8; h >= 1; h /= 2) {
    LLVMValueRef m1[16], m2[16];
    for (int j = 0; j < 16; j++) {
      m1[j] = LLVMConstInt(cg->t_i32, (unsigned)((j & h) ? 16 + j - h : j), 0);
      m2[j] = LLVMConstInt(cg->t_i32, (unsigned)((j & h) ? 16 + j : j + h), 0);
    }
    LLVMValueRef s1 = LLVMConstVector(m1, 16), s2 = LLVMConstVector(m2, 16);
    for (int i = 0; i < 16; i++) {
      if (i & h)
        continue;
      LLVMValueRef a = r[i], b = r[i + h];
      r[i] = LLVMBuildShuffleVector(cg->b, a, b, s1, "");
      r[i + h] = LLVMBuildShuffleVector(cg->b, a, b, s2, "");
    }
  }
}

// ---- register tiles ---------------------------------------------------------
// Marks a loop's back-edge branch llvm.loop.unroll.disable: a tile's body
// is already 10-50 instructions of loads and FMAs, and unrolled copies of
// every tile variant would quadruple compile time and code size for a
// loop overhead of three instructions (LLVM-NOTES trap 6 for the form).
static void no_unroll(Cg *cg, LLVMValueRef br) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(cg->lc, NULL, 0);
  LLVMMetadataRef s =
      LLVMMDStringInContext2(cg->lc, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef dis = LLVMMDNodeInContext2(cg->lc, &s, 1);
  LLVMMetadataRef ops[2] = {tmp, dis};
  LLVMMetadataRef id = LLVMMDNodeInContext2(cg->lc, ops, 2);
  LLVMMetadataReplaceAllUsesWith(tmp, id);
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(cg->lc, "llvm.loop", 9),
                  LLVMMetadataAsValue(cg->lc, id));
}

LLVMValueRef tile_loop_begin(Cg *cg, TileLoop *l, LLVMValueRef T, int n,
                             LLVMValueRef *acc, bool zero) {
  LLVMBuilderRef b = cg->b;
  assert(n <= TILE_ACCS);
  LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(b));
  l->T = T;
  l->pre = LLVMGetInsertBlock(b);
  l->body = LLVMAppendBasicBlockInContext(cg->lc, fn, "tile");
  l->exit = LLVMAppendBasicBlockInContext(cg->lc, fn, "tile.end");
  l->guard = !LLVMIsAConstantInt(T);
  if (l->guard)
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSGT, T, cg_i64(cg, 0), ""),
                    l->body, l->exit);
  else
    LLVMBuildBr(b, l->body);
  LLVMPositionBuilderAtEnd(b, l->body);
  l->t = LLVMBuildPhi(b, cg->t_i64, "t");
  for (int i = 0; i < n; i++) {
    l->init[i] = zero ? LLVMConstNull(LLVMVectorType(cg->t_elt, 16)) : acc[i];
    acc[i] = l->phi[i] = LLVMBuildPhi(b, LLVMTypeOf(l->init[i]), "");
  }
  return l->t;
}

void tile_loop_end(Cg *cg, TileLoop *l, int n, LLVMValueRef *acc, bool unroll) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef t1 = LLVMBuildNSWAdd(b, l->t, cg_i64(cg, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMValueRef br = LLVMBuildCondBr(
      b, LLVMBuildICmp(b, LLVMIntSLT, t1, l->T, ""), l->body, l->exit);
  if (!unroll)
    no_unroll(cg, br);
  LLVMValueRef z0 = cg_i64(cg, 0);
  LLVMAddIncoming(l->t, &z0, &l->pre, 1);
  LLVMAddIncoming(l->t, &t1, &latch, 1);
  for (int i = 0; i < n; i++) {
    LLVMAddIncoming(l->phi[i], &l->init[i], &l->pre, 1);
    LLVMAddIncoming(l->phi[i], &acc[i], &latch, 1);
  }
  LLVMPositionBuilderAtEnd(b, l->exit);
  if (l->guard) // T may be 0: the sums are the initial values then
    for (int i = 0; i < n; i++) {
      LLVMValueRef r = LLVMBuildPhi(b, LLVMTypeOf(acc[i]), "");
      LLVMValueRef in[2] = {l->init[i], acc[i]};
      LLVMBasicBlockRef from[2] = {l->pre, latch};
      LLVMAddIncoming(r, in, from, 2);
      acc[i] = r;
    }
}

// ---- the kernel being built, and addressing in an iteration space -----------
LLVMValueRef kern_ptr(Kern *k, const IrValue *v) {
  for (int i = 0; i < k->k->nout && k->k->nout > 1; i++) // a row group's
    if (k->k->outs[i] == v) // earlier member, read from its buffer
      return k->outp[i];
  for (int i = 0; i < k->k->nin; i++)
    if (k->k->in[i] == v)
      return k->inp[i];
  assert(!"a kernel reads a value it did not collect (fused into a user "
          "that cannot inline it?)");
  unreachable();
}

typedef struct Space {
  Shape shape;
  bool batched;
} Space;

// How loops over a space are laid out; an operand may need a richer form.
typedef enum IxMode {
  IX_FLAT, // one loop over rows x numel (operands: same layout, or scalars)
  IX_ROWS, // a row loop, then one loop over the example's elements
  IX_AXES, // a row loop, then one loop per axis (general broadcasting)
} IxMode;

typedef struct Idx {
  Space sp;
  IxMode mode;
  LLVMValueRef row;          // batch row; NULL when unbatched or IX_FLAT
  LLVMValueRef flat;         // IX_FLAT: over all rows; else within a row
  LLVMValueRef ax[MAX_RANK]; // IX_AXES: index along each axis of sp
} Idx;

static bool same_layout(Shape s, Space sp) {
  int64_t n = shape_numel(s);
  return shape_eq(s, sp.shape) || (n == 1 && shape_numel(sp.shape) == 1);
}

// The simplest mode in which an operand (s, batched) broadcast to sp can be
// addressed.
static IxMode ix_need(Shape s, bool batched, Space sp) {
  assert(!batched || sp.batched);
  bool same = same_layout(s, sp);
  int64_t n = shape_numel(s);
  if ((same && batched == sp.batched) || (n == 1 && !batched))
    return IX_FLAT;
  if (same || n == 1)
    return IX_ROWS;
  return IX_AXES;
}

// The float offset of an operand's element at ix. Broadcasting is
// right-aligned: axis p of s lines up with axis p + (rank(sp) - rank(s)),
// and an axis of size 1 contributes nothing.
static LLVMValueRef ix_offset(Cg *cg, const Idx *ix, Shape s, bool batched) {
  int64_t n = shape_numel(s);
  bool same = same_layout(s, ix->sp);
  if (ix->mode == IX_FLAT) {
    if (same && batched == ix->sp.batched)
      return ix->flat;
    assert(n == 1 && !batched);
    return cg_i64(cg, 0);
  }
  assert(!batched || ix->row);
  LLVMValueRef off =
      batched ? cg_mul(cg, ix->row, cg_i64(cg, n)) : cg_i64(cg, 0);
  if (same)
    return cg_add(cg, off, ix->flat);
  if (n == 1)
    return off;
  assert(ix->mode == IX_AXES);
  int64_t stride = 1;
  for (int p = s.rank - 1; p >= 0; p--) {
    int q = p + ix->sp.shape.rank - s.rank;
    if (s.dim[p] != 1) {
      assert(q >= 0 && s.dim[p] == ix->sp.shape.dim[q]);
      off = cg_add(cg, off, cg_mul(cg, ix->ax[q], cg_i64(cg, stride)));
    }
    stride *= s.dim[p];
  }
  return off;
}

static IxMode max_mode(IxMode a, IxMode b) {
  return a > b ? a : b;
}

// The mode needed to evaluate v's inline tree in space sp.
static IxMode tree_mode(Cg *cg, const IrValue *v, Space sp) {
  if (!cg->inl[v->id])
    return ix_need(v->shape, v->batched, sp);
  IxMode m = IX_FLAT;
  for (int i = 0; i < v->narg; i++)
    m = max_mode(m, tree_mode(cg, v->arg[i], sp));
  return m;
}

// A row loop over the batch when sp is batched.
// In row mode (a row group) the row is given and there is no loop.
static void rows_begin(Kern *k, Nest *ns, Space sp, Idx *ix) {
  if (sp.batched && k->row)
    ix->row = k->row;
  else
    ix->row =
        sp.batched ? loop_begin(k->cg, &ns->l[ns->n++], k->rows, "row") : NULL;
}

// Loops over one example of shape s: a flat loop, or one loop per axis.
static void elems_begin(Kern *k, Nest *ns, Shape s, bool axes, Idx *ix) {
  Cg *cg = k->cg;
  if (!axes) {
    ix->flat = loop_begin(cg, &ns->l[ns->n++], cg_i64(cg, shape_numel(s)), "j");
    return;
  }
  LLVMValueRef flat = cg_i64(cg, 0);
  for (int q = 0; q < s.rank; q++) {
    ix->ax[q] = loop_begin(cg, &ns->l[ns->n++], cg_i64(cg, s.dim[q]), "ax");
    flat = cg_add(cg, cg_mul(cg, flat, cg_i64(cg, s.dim[q])), ix->ax[q]);
  }
  ix->flat = flat;
}

// Opens every loop over space sp in the given mode.
static void space_begin(Kern *k, Nest *ns, Space sp, IxMode mode, Idx *ix) {
  Cg *cg = k->cg;
  if (mode == IX_FLAT && sp.batched && k->row)
    mode = IX_ROWS; // one row at a time
  *ix = (Idx){.sp = sp, .mode = mode};
  if (mode == IX_FLAT) {
    LLVMValueRef n = cg_i64(cg, shape_numel(sp.shape));
    if (sp.batched)
      n = cg_mul(cg, k->rows, n);
    ix->flat = loop_begin(cg, &ns->l[ns->n++], n, "i");
    return;
  }
  rows_begin(k, ns, sp, ix);
  elems_begin(k, ns, sp.shape, mode == IX_AXES, ix);
}

// ---- element-wise scalars (and vectors) -------------------------------------
// The code below works on f32 or on <N x float>: constants take the shape of
// a reference operand, so the same emitters serve scalar loops and matmul
// epilogues.
static LLVMValueRef splat_const(LLVMTypeRef like, LLVMValueRef c) {
  if (LLVMGetTypeKind(like) != LLVMVectorTypeKind)
    return c;
  unsigned n = LLVMGetVectorSize(like);
  LLVMValueRef e[64];
  assert(n <= 64);
  for (unsigned i = 0; i < n; i++)
    e[i] = c;
  return LLVMConstVector(e, n);
}

// The float constant c shaped like `like` (a scalar or vector value).
static LLVMValueRef fk(Cg *cg, LLVMValueRef like, double c) {
  return splat_const(LLVMTypeOf(like), cg_f32(cg, c));
}

// i32, or <N x i32> when `like` is a vector.
static LLVMTypeRef i32_like(Cg *cg, LLVMValueRef like) {
  LLVMTypeRef t = LLVMTypeOf(like);
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind
             ? LLVMVectorType(cg->t_i32, LLVMGetVectorSize(t))
             : cg->t_i32;
}

static LLVMValueRef ik(Cg *cg, LLVMValueRef like, int c) {
  return splat_const(LLVMTypeOf(like), LLVMConstInt(cg->t_i32, (unsigned)c, 1));
}

static LLVMValueRef select_f(Cg *cg, LLVMValueRef like, LLVMValueRef c,
                             double a, double b) {
  return LLVMBuildSelect(cg->b, c, fk(cg, like, a), fk(cg, like, b), "");
}

static LLVMValueRef fcmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a,
                         LLVMValueRef b) {
  return LLVMBuildFCmp(cg->b, p, a, b, "");
}

static LLVMValueRef call1(Cg *cg, const char *name, LLVMValueRef x) {
  return cg_intrinsic(cg, name, &x, 1);
}

static LLVMValueRef fma3(Cg *cg, LLVMValueRef a, LLVMValueRef b,
                         LLVMValueRef c) {
  LLVMValueRef x[3] = {a, b, c};
  return cg_intrinsic(cg, cg->fma, x, 3);
}

// e^x in plain arithmetic, so loops that use it vectorize (LLVM has no
// vector exp: llvm.exp becomes one expf call per lane). Cody-Waite range
// reduction x = n ln2 + r, |r| <= ln2/2, Cephes' expf polynomial for e^r
// (about 1 ulp), then 2^n applied in two halves so that n in [-150, 129]
// stays representable: results underflow to 0 and overflow to inf the way
// expf does. x is clamped to [-104, 89] first (beyond, the result is 0 or
// inf anyway) and NaN passes through.
static LLVMValueRef emit_exp(Cg *cg, LLVMValueRef x) {
  LLVMBuilderRef b = cg->b;
  if (cg->elt_size == 8) // f64: the exact libm exp the interpreter uses
    return call1(cg, "llvm.exp", x);
  LLVMValueRef xc = LLVMBuildSelect(b, fcmp(cg, LLVMRealOGT, x, fk(cg, x, 89)),
                                    fk(cg, x, 89), x, "");
  xc = LLVMBuildSelect(b, fcmp(cg, LLVMRealOLT, xc, fk(cg, x, -104)),
                       fk(cg, x, -104), xc, "");
  LLVMValueRef n =
      call1(cg, "llvm.rint", LLVMBuildFMul(b, xc, fk(cg, x, M_LOG2E), ""));
  LLVMValueRef r = fma3(cg, n, fk(cg, x, -0.693359375), xc);
  r = fma3(cg, n, fk(cg, x, 2.12194440e-4), r);
  static const double c[6] = {1.9875691500e-4, 1.3981999507e-3,
                              8.3334519073e-3, 4.1665795894e-2,
                              1.6666665459e-1, 5.0000001201e-1};
  LLVMValueRef p = fk(cg, x, c[0]);
  for (int i = 1; i < 6; i++)
    p = fma3(cg, p, r, fk(cg, x, c[i]));
  p = fma3(cg, p, LLVMBuildFMul(b, r, r, ""),
           LLVMBuildFAdd(b, r, fk(cg, x, 1), ""));
  // 2^n = 2^h * 2^(n-h), h = n >> 1, each built from its exponent bits.
  LLVMValueRef ni = LLVMBuildFPToSI(b, n, i32_like(cg, x), "");
  LLVMValueRef h = LLVMBuildAShr(b, ni, ik(cg, x, 1), "");
  LLVMValueRef parts[2] = {h, LLVMBuildSub(b, ni, h, "")};
  for (int i = 0; i < 2; i++) {
    LLVMValueRef bits = LLVMBuildShl(
        b, LLVMBuildAdd(b, parts[i], ik(cg, x, 127), ""), ik(cg, x, 23), "");
    p = LLVMBuildFMul(b, p, LLVMBuildBitCast(b, bits, LLVMTypeOf(x), ""), "");
  }
  return LLVMBuildSelect(b, fcmp(cg, LLVMRealUNO, x, x), x, p, "");
}

// One element (or vector of elements) of an element-wise op from its
// arguments'. Every op is listed (no default), so -Wswitch catches a
// primitive added to prims.def.
LLVMValueRef ew_op(Cg *cg, const IrValue *v, LLVMValueRef *x) {
  LLVMBuilderRef b = cg->b;
  switch (v->op) {
  case OP_NEG:
    return LLVMBuildFNeg(b, x[0], "");
  case OP_EXP:
    return emit_exp(cg, x[0]);
  case OP_LOG:
    return call1(cg, "llvm.log", x[0]);
  case OP_SQRT:
    return call1(cg, "llvm.sqrt", x[0]);
  case OP_TANH:
    return call1(cg, "llvm.tanh", x[0]);
  case OP_SIGMOID: {
    LLVMValueRef e = emit_exp(cg, LLVMBuildFNeg(b, x[0], ""));
    return LLVMBuildFDiv(b, fk(cg, x[0], 1),
                         LLVMBuildFAdd(b, fk(cg, x[0], 1), e, ""), "");
  }
  case OP_RELU:
    return LLVMBuildSelect(b, fcmp(cg, LLVMRealOGT, x[0], fk(cg, x[0], 0)),
                           x[0], fk(cg, x[0], 0), "");
  case OP_STEP:
    return select_f(cg, x[0], fcmp(cg, LLVMRealOGT, x[0], fk(cg, x[0], 0)), 1,
                    0);
  case OP_ABS:
    return call1(cg, "llvm.fabs", x[0]);
  case OP_SIGN: {
    LLVMValueRef neg =
        select_f(cg, x[0], fcmp(cg, LLVMRealOLT, x[0], fk(cg, x[0], 0)), -1, 0);
    return LLVMBuildSelect(b, fcmp(cg, LLVMRealOGT, x[0], fk(cg, x[0], 0)),
                           fk(cg, x[0], 1), neg, "");
  }
  case OP_SIN:
    return call1(cg, "llvm.sin", x[0]);
  case OP_COS:
    return call1(cg, "llvm.cos", x[0]);
  case OP_FLOOR:
    return call1(cg, "llvm.floor", x[0]);
  case OP_BROADCAST:
    return x[0]; // the index mapping did the work
  case OP_DETACH:
    return x[0];
  case OP_ADD:
    return fmf(LLVMBuildFAdd(b, x[0], x[1], ""), FM_CONTRACT);
  case OP_SUB:
    return fmf(LLVMBuildFSub(b, x[0], x[1], ""), FM_CONTRACT);
  case OP_MUL:
    return fmf(LLVMBuildFMul(b, x[0], x[1], ""), FM_CONTRACT);
  case OP_DIV:
    return LLVMBuildFDiv(b, x[0], x[1], "");
  case OP_POW: {
    const IrValue *e = v->arg[1];
    if (e->op == OP_CONST && e->attr.num == 2)
      return fmf(LLVMBuildFMul(b, x[0], x[0], ""), FM_CONTRACT);
    if (e->op == OP_CONST && e->attr.num == 0.5)
      return call1(cg, "llvm.sqrt", x[0]);
    if (e->op == OP_CONST && e->attr.num == 1)
      return x[0];
    return cg_intrinsic(cg, "llvm.pow", x, 2);
  }
  // Ties go to the second argument, as in eval.c (grad.c's rules agree).
  case OP_MAX:
    return LLVMBuildSelect(b, fcmp(cg, LLVMRealOGT, x[0], x[1]), x[0], x[1],
                           "");
  case OP_MIN:
    return LLVMBuildSelect(b, fcmp(cg, LLVMRealOGT, x[1], x[0]), x[0], x[1],
                           "");
  case OP_GT:
    return select_f(cg, x[0], fcmp(cg, LLVMRealOGT, x[0], x[1]), 1, 0);
  case OP_INPUT:
  case OP_LABEL:
  case OP_PARAM:
  case OP_CONST:
  case OP_ARG:
  case OP_BATCH_SIZE:
  case OP_RAND_UNIFORM:
  case OP_RAND_NORMAL:
  case OP_RAND_BERNOULLI:
  case OP_SUM:
  case OP_MEAN:
  case OP_SUM_TO:
  case OP_BATCH_MEAN:
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX:
  case OP_CORRECT:
  case OP_MATMUL:
  case OP_MATMUL_NT:
  case OP_MATMUL_TN:
  case OP_RESHAPE:
  case OP_CONV:
  case OP_CONV_T:
  case OP_CONV_W:
  case OP_MAXPOOL:
  case OP_UNPOOL:
  case OP_POOL_SELECT:
  case OP_AVGPOOL:
  case OP_AVGPOOL_T:
  case OP_CONCAT:
  case OP_SLICE:
  case OP_EMBED:
  case OP_COUNT:
    break;
  }
  assert(!"not an element-wise primitive");
  unreachable();
}

static LLVMValueRef elem(Kern *k, const IrValue *v, const Idx *ix);

// The value of v at ix, computed (v inline, or v the kernel's own value).
static LLVMValueRef compute(Kern *k, const IrValue *v, const Idx *ix) {
  Cg *cg = k->cg;
  if (v->op == OP_CONST)
    return cg_f32(cg, v->attr.num);
  if (v->op == OP_BATCH_SIZE)
    return LLVMBuildSIToFP(cg->b, k->rows, cg->t_elt, "");
  assert(prims[v->op].kind == PK_EW);
  LLVMValueRef x[MAX_ARGS];
  for (int i = 0; i < v->narg; i++)
    x[i] = elem(k, v->arg[i], ix);
  return ew_op(cg, v, x);
}

// The value of v at ix: inline, or loaded from v's buffer.
static LLVMValueRef elem(Kern *k, const IrValue *v, const Idx *ix) {
  if (k->cg->inl[v->id])
    return compute(k, v, ix);
  return cg_load(k->cg, kern_ptr(k, v),
                 ix_offset(k->cg, ix, v->shape, v->batched));
}

// ---- kernels per primitive --------------------------------------------------
// Element-wise: one loop nest over the value's space, fused args inline.
static void kernel_ew(Kern *k, const IrValue *v) {
  const IrValue *mm = kernel_matmul(k->cg, v);
  if (mm) { // a matmul with v's tree as its epilogue
    mm_kernel(k, v, mm);
    return;
  }
  const IrValue *cv = kernel_conv(k->cg, v);
  if (cv) { // a convolution with v's tree as its epilogue
    conv_kernel(k, v, cv);
    return;
  }
  Space sp = {v->shape, v->batched};
  IxMode mode = IX_FLAT;
  for (int i = 0; i < v->narg; i++)
    mode = max_mode(mode, tree_mode(k->cg, v->arg[i], sp));
  Nest ns = {0};
  Idx ix;
  space_begin(k, &ns, sp, mode, &ix);
  cg_store(k->cg, compute(k, v, &ix), k->out,
           ix_offset(k->cg, &ix, v->shape, v->batched));
  nest_end(k->cg, &ns);
}

// Values that never get a kernel: leaves have storage of their own and
// RESHAPE aliases its argument (see plan_storage in codegen.c).
static void kernel_none(Kern *k, const IrValue *v) {
  (void)k, (void)v;
  assert(!"this primitive has no kernel");
}

// ---- random draws -----------------------------------------------------------
// The functions of runtime/nnrt_rng.h, instruction for instruction, so the
// interpreter (eval.c) reproduces every draw: element c of the value (batch
// rows outermost) is number c of the draw's key, which hashes the step's
// key (the kernel's `key` argument) with the draw's number. One loop over
// every element; LLVM vectorizes the integer hashing.
static LLVMValueRef i64c(Cg *cg, uint64_t v) {
  return LLVMConstInt(cg->t_i64, v, 0);
}

static LLVMValueRef mix64(Cg *cg, LLVMValueRef z) {
  LLVMBuilderRef b = cg->b;
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, i64c(cg, 30), ""), ""),
                   i64c(cg, 0xbf58476d1ce4e5b9u), "");
  z = LLVMBuildMul(b, LLVMBuildXor(b, z, LLVMBuildLShr(b, z, i64c(cg, 27), ""), ""),
                   i64c(cg, 0x94d049bb133111ebu), "");
  return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, i64c(cg, 31), ""), "");
}

// nnrt_rng_bits(key, c)
static LLVMValueRef rng_bits(Cg *cg, LLVMValueRef key, LLVMValueRef c) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef n = LLVMBuildMul(b, LLVMBuildAdd(b, c, i64c(cg, 1), ""),
                                i64c(cg, NNRT_GOLDEN), "");
  return mix64(cg, LLVMBuildAdd(b, key, n, ""));
}

// (bits >> shift) as a double, times scale.
static LLVMValueRef bits_fp(Cg *cg, LLVMValueRef bits, unsigned shift,
                            uint64_t add, double scale) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef v = LLVMBuildLShr(b, bits, i64c(cg, shift), "");
  if (add)
    v = LLVMBuildAdd(b, v, i64c(cg, add), "");
  return LLVMBuildFMul(b, LLVMBuildUIToFP(b, v, cg->t_f64, ""),
                       LLVMConstReal(cg->t_f64, scale), "");
}

static void kernel_draw(Kern *k, const IrValue *v) {
  Cg *cg = k->cg;
  LLVMBuilderRef b = cg->b;
  LLVMValueRef key = mix64(
      cg, LLVMBuildXor(b, k->key,
                       i64c(cg, ((uint64_t)v->attr.index + 1) *
                                    0xd1b54a32d192ed03u),
                       ""));
  LLVMValueRef n = cg_i64(cg, shape_numel(v->shape));
  if (v->batched)
    n = cg_mul(cg, n, k->rows);
  Loop l;
  LLVMValueRef c = loop_begin(cg, &l, n, "c");
  LLVMValueRef x;
  if (v->op == OP_RAND_UNIFORM) {
    x = bits_fp(cg, rng_bits(cg, key, c), 40, 0, 0x1.0p-24);
  } else if (v->op == OP_RAND_BERNOULLI) {
    uint64_t thr = (uint64_t)llround(v->attr.num * 0x1.0p24);
    LLVMValueRef hi = LLVMBuildLShr(b, rng_bits(cg, key, c), i64c(cg, 40), "");
    x = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntULT, hi, i64c(cg, thr), ""),
                        LLVMConstReal(cg->t_f64, 1), LLVMConstReal(cg->t_f64, 0),
                        "");
  } else { // Box-Muller from numbers 2c and 2c + 1, in double
    LLVMValueRef c2 = LLVMBuildShl(b, c, i64c(cg, 1), "");
    LLVMValueRef u1 = bits_fp(cg, rng_bits(cg, key, c2), 11, 1, 0x1.0p-53);
    LLVMValueRef u2 = bits_fp(
        cg, rng_bits(cg, key, LLVMBuildOr(b, c2, i64c(cg, 1), "")), 11, 0,
        0x1.0p-53);
    LLVMValueRef r = cg_intrinsic(cg, "llvm.log", &u1, 1);
    r = LLVMBuildFMul(b, r, LLVMConstReal(cg->t_f64, -2.0), "");
    r = cg_intrinsic(cg, "llvm.sqrt", &r, 1);
    LLVMValueRef a =
        LLVMBuildFMul(b, u2, LLVMConstReal(cg->t_f64, 6.283185307179586), "");
    x = LLVMBuildFMul(b, r, cg_intrinsic(cg, "llvm.cos", &a, 1), "");
  }
  // Rounded to float in f64 models too: the interpreter's draws are the
  // f32 model's, whatever the element type.
  x = LLVMBuildFPTrunc(b, x, cg->t_f32, "");
  if (cg->elt_size == 8)
    x = LLVMBuildFPExt(b, x, cg->t_elt, "");
  cg_store(cg, x, k->out, c);
  loop_end(cg, &l);
}
#define emit_RAND_UNIFORM kernel_draw
#define emit_RAND_NORMAL kernel_draw
#define emit_RAND_BERNOULLI kernel_draw

// SUM / MEAN: every element of one example to a scalar, per row.
static void kernel_sum(Kern *k, const IrValue *v, bool mean) {
  Cg *cg = k->cg;
  const IrValue *x = v->arg[0];
  Space sp = {x->shape, x->batched};
  Nest rows = {0}, els = {0};
  Idx ix = {.sp = sp, .mode = max_mode(IX_ROWS, tree_mode(cg, x, sp))};
  rows_begin(k, &rows, sp, &ix);
  LLVMValueRef acc = cg_alloca(cg, cg->t_elt, "acc");
  LLVMBuildStore(cg->b, cg_f32(cg, 0), acc);
  elems_begin(k, &els, sp.shape, ix.mode == IX_AXES, &ix);
  LLVMValueRef a = LLVMBuildLoad2(cg->b, cg->t_elt, acc, "");
  LLVMBuildStore(
      cg->b, fmf(LLVMBuildFAdd(cg->b, a, elem(k, x, &ix), ""), FM_REDUCE), acc);
  nest_end(cg, &els);
  LLVMValueRef s = LLVMBuildLoad2(cg->b, cg->t_elt, acc, "");
  if (mean)
    s = LLVMBuildFMul(cg->b, s, cg_f32(cg, 1.0 / (double)shape_numel(x->shape)),
                      "");
  cg_store(cg, s, k->out, ix.row ? ix.row : cg_i64(cg, 0));
  nest_end(cg, &rows);
}

// SUM_TO / BATCH_MEAN: accumulate x into the target it is a broadcast of.
// Loops run over x's space; with the target's index invariant in the inner
// loop LICM keeps the sum in a register, else the store is unit-stride.
static void kernel_sum_to(Kern *k, const IrValue *v, bool batch_mean) {
  Cg *cg = k->cg;
  const IrValue *x = v->arg[0];
  Space sp = {x->shape, x->batched};
  int64_t tn = shape_numel(v->shape);
  LLVMValueRef len = cg_i64(cg, tn * cg->elt_size);
  if (k->row && v->batched) // this row of the target
    LLVMBuildMemSet(cg->b,
                    cg_gep(cg, k->out, cg_mul(cg, k->row, cg_i64(cg, tn))),
                    LLVMConstInt(cg->t_i8, 0, 0), len, (unsigned)cg->elt_size);
  else if (!k->row) // (a row group zeroes its sums before the loop)
    LLVMBuildMemSet(cg->b, k->out, LLVMConstInt(cg->t_i8, 0, 0),
                    v->batched ? cg_mul(cg, k->rows, len) : len,
                    (unsigned)cg->elt_size);
  IxMode mode =
      max_mode(tree_mode(cg, x, sp), ix_need(v->shape, v->batched, sp));
  Nest ns = {0};
  Idx ix;
  space_begin(k, &ns, sp, mode, &ix);
  LLVMValueRef off = ix_offset(cg, &ix, v->shape, v->batched);
  LLVMValueRef sum =
      LLVMBuildFAdd(cg->b, cg_load(cg, k->out, off), elem(k, x, &ix), "");
  cg_store(cg, fmf(sum, FM_REDUCE), k->out, off);
  nest_end(cg, &ns);
  if (batch_mean && !k->row) { // (a row group scales after the loop)
    LLVMValueRef inv =
        LLVMBuildFDiv(cg->b, cg_f32(cg, 1),
                      LLVMBuildSIToFP(cg->b, k->rows, cg->t_elt, ""), "");
    Loop l;
    LLVMValueRef j = loop_begin(cg, &l, cg_i64(cg, tn), "j");
    cg_store(cg, LLVMBuildFMul(cg->b, cg_load(cg, k->out, j), inv, ""), k->out,
             j);
    loop_end(cg, &l);
  }
}

// Rows of a viewed as a matrix: (B if batched) x its leading axes.
static LLVMValueRef matrix_rows(Kern *k, const IrValue *a) {
  int64_t lead = shape_numel(a->shape) / a->shape.dim[a->shape.rank - 1];
  return a->batched ? cg_mul(k->cg, k->rows, cg_i64(k->cg, lead))
                    : cg_i64(k->cg, lead);
}

// SOFTMAX / LOG_SOFTMAX along the last axis, stable: the row max is
// subtracted before exponentiating.
static void kernel_softmax(Kern *k, const IrValue *v, bool log) {
  Cg *cg = k->cg;
  const IrValue *x = v->arg[0];
  LLVMValueRef xp = kern_ptr(k, x);
  int64_t n = x->shape.dim[x->shape.rank - 1];
  int64_t lead = shape_numel(x->shape) / n;
  Loop lr, lj;
  // In row mode, the lead rows of this example only.
  LLVMValueRef r =
      loop_begin(cg, &lr, k->row ? cg_i64(cg, lead) : matrix_rows(k, x), "r");
  if (k->row)
    r = cg_add(cg, cg_mul(cg, k->row, cg_i64(cg, lead)), r);
  LLVMValueRef base = cg_mul(cg, r, cg_i64(cg, n));
  LLVMValueRef mx = cg_alloca(cg, cg->t_elt, "max");
  LLVMBuildStore(cg->b, cg_f32(cg, -INFINITY), mx);
  LLVMValueRef j = loop_begin(cg, &lj, cg_i64(cg, n), "j");
  LLVMValueRef xm[2] = {LLVMBuildLoad2(cg->b, cg->t_elt, mx, ""),
                        cg_load(cg, xp, cg_add(cg, base, j))};
  LLVMBuildStore(cg->b, cg_intrinsic(cg, "llvm.maxnum", xm, 2), mx);
  loop_end(cg, &lj);
  LLVMValueRef m = LLVMBuildLoad2(cg->b, cg->t_elt, mx, "");
  LLVMValueRef sum = cg_alloca(cg, cg->t_elt, "sum");
  LLVMBuildStore(cg->b, cg_f32(cg, 0), sum);
  j = loop_begin(cg, &lj, cg_i64(cg, n), "j");
  LLVMValueRef e = emit_exp(
      cg, LLVMBuildFSub(cg->b, cg_load(cg, xp, cg_add(cg, base, j)), m, ""));
  LLVMValueRef s = LLVMBuildLoad2(cg->b, cg->t_elt, sum, "");
  LLVMBuildStore(cg->b, fmf(LLVMBuildFAdd(cg->b, s, e, ""), FM_REDUCE), sum);
  if (!log)
    cg_store(cg, e, k->out, cg_add(cg, base, j));
  loop_end(cg, &lj);
  s = LLVMBuildLoad2(cg->b, cg->t_elt, sum, "");
  if (log) {
    // x - max - log(sum)
    LLVMValueRef c = LLVMBuildFAdd(cg->b, m, call1(cg, "llvm.log", s), "");
    j = loop_begin(cg, &lj, cg_i64(cg, n), "j");
    LLVMValueRef o = cg_add(cg, base, j);
    cg_store(cg, LLVMBuildFSub(cg->b, cg_load(cg, xp, o), c, ""), k->out, o);
  } else {
    LLVMValueRef inv = LLVMBuildFDiv(cg->b, cg_f32(cg, 1), s, "");
    j = loop_begin(cg, &lj, cg_i64(cg, n), "j");
    LLVMValueRef o = cg_add(cg, base, j);
    cg_store(cg, LLVMBuildFMul(cg->b, cg_load(cg, k->out, o), inv, ""), k->out,
             o);
  }
  loop_end(cg, &lj);
  loop_end(cg, &lr);
}

// The index of the first maximum of p[base .. base+n).
static LLVMValueRef argmax(Cg *cg, LLVMValueRef p, LLVMValueRef base,
                           int64_t n) {
  LLVMValueRef bv = cg_alloca(cg, cg->t_elt, "best");
  LLVMValueRef bi = cg_alloca(cg, cg->t_i64, "besti");
  LLVMBuildStore(cg->b, cg_load(cg, p, base), bv);
  LLVMBuildStore(cg->b, cg_i64(cg, 0), bi);
  Loop l;
  LLVMValueRef j = loop_begin(cg, &l, cg_i64(cg, n), "j");
  LLVMValueRef x = cg_load(cg, p, cg_add(cg, base, j));
  LLVMValueRef cur = LLVMBuildLoad2(cg->b, cg->t_elt, bv, "");
  LLVMValueRef gt = fcmp(cg, LLVMRealOGT, x, cur); // strict: first max wins
  LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, gt, x, cur, ""), bv);
  LLVMBuildStore(cg->b,
                 LLVMBuildSelect(cg->b, gt, j,
                                 LLVMBuildLoad2(cg->b, cg->t_i64, bi, ""), ""),
                 bi);
  loop_end(cg, &l);
  return LLVMBuildLoad2(cg->b, cg->t_i64, bi, "");
}

// ---- the emit_ID column -----------------------------------------------------
// Element-wise primitives share one kernel (CONST and BATCH_SIZE get one
// only when stored, as roots; usually they are inline).
#define emit_CONST kernel_ew
#define emit_BATCH_SIZE kernel_ew
#define emit_NEG kernel_ew
#define emit_EXP kernel_ew
#define emit_LOG kernel_ew
#define emit_SQRT kernel_ew
#define emit_TANH kernel_ew
#define emit_SIGMOID kernel_ew
#define emit_RELU kernel_ew
#define emit_STEP kernel_ew
#define emit_ABS kernel_ew
#define emit_SIGN kernel_ew
#define emit_SIN kernel_ew
#define emit_COS kernel_ew
#define emit_FLOOR kernel_ew
#define emit_DETACH kernel_ew
#define emit_BROADCAST kernel_ew
#define emit_ADD kernel_ew
#define emit_SUB kernel_ew
#define emit_MUL kernel_ew
#define emit_DIV kernel_ew
#define emit_POW kernel_ew
#define emit_MAX kernel_ew
#define emit_MIN kernel_ew
#define emit_GT kernel_ew
// No kernel: leaves have storage of their own, RESHAPE aliases its argument.
#define emit_INPUT kernel_none
#define emit_LABEL kernel_none
#define emit_PARAM kernel_none
#define emit_ARG kernel_none
#define emit_RESHAPE kernel_none

static void emit_SUM(Kern *k, const IrValue *v) {
  kernel_sum(k, v, false);
}
static void emit_MEAN(Kern *k, const IrValue *v) {
  kernel_sum(k, v, true);
}
static void emit_SUM_TO(Kern *k, const IrValue *v) {
  if (!conv_channel_sum(k, v)) // a convolution's bias gradient, or not
    kernel_sum_to(k, v, false);
}
static void emit_BATCH_MEAN(Kern *k, const IrValue *v) {
  kernel_sum_to(k, v, true);
}
static void emit_SOFTMAX(Kern *k, const IrValue *v) {
  kernel_softmax(k, v, false);
}
static void emit_LOG_SOFTMAX(Kern *k, const IrValue *v) {
  kernel_softmax(k, v, true);
}

// Per example: argmax match, or for one output (pred > threshold) ==
// (label > 0.5).
static void emit_CORRECT(Kern *k, const IrValue *v) {
  Cg *cg = k->cg;
  const IrValue *p = v->arg[0], *y = v->arg[1];
  LLVMValueRef pp = kern_ptr(k, p), yp = kern_ptr(k, y);
  int64_t n = p->shape.dim[0];
  Loop l;
  LLVMValueRef r = loop_begin(
      cg, &l, v->batched && !k->row ? k->rows : cg_i64(cg, 1), "row");
  if (k->row) // row mode: this row only
    r = k->row;
  LLVMValueRef pb = p->batched ? cg_mul(cg, r, cg_i64(cg, n)) : cg_i64(cg, 0);
  LLVMValueRef yb = y->batched ? cg_mul(cg, r, cg_i64(cg, n)) : cg_i64(cg, 0);
  LLVMValueRef same;
  if (n == 1) {
    LLVMValueRef a =
        fcmp(cg, LLVMRealOGT, cg_load(cg, pp, pb), cg_f32(cg, v->attr.num));
    LLVMValueRef b =
        fcmp(cg, LLVMRealOGT, cg_load(cg, yp, yb), cg_f32(cg, 0.5));
    same = LLVMBuildICmp(cg->b, LLVMIntEQ, a, b, "");
  } else {
    same = LLVMBuildICmp(cg->b, LLVMIntEQ, argmax(cg, pp, pb, n),
                         argmax(cg, yp, yb, n), "");
  }
  cg_store(cg, select_f(cg, cg_f32(cg, 0), same, 1, 0), k->out, r);
  loop_end(cg, &l);
}

static void emit_MATMUL(Kern *k, const IrValue *v) {
  mm_kernel(k, v, v);
}
static void emit_MATMUL_NT(Kern *k, const IrValue *v) {
  mm_kernel(k, v, v);
}
static void emit_MATMUL_TN(Kern *k, const IrValue *v) {
  mm_kernel(k, v, v);
}

typedef void EmitFn(Kern *k, const IrValue *v);
// Defined after every emitter: a primitive without one does not compile.
static EmitFn *const emitters[OP_COUNT] = {
#define PRIM(id, name, arity, kind, flags, identity, flops) [OP_##id] = emit_##id,
#include "prims.def"
#undef PRIM
};

// ---- building kernels -------------------------------------------------------
// The stored values v's kernel reads: its arguments, looking through inline
// (fused, constant) arguments to their own stored leaves.
static void collect_inputs(Cg *cg, const IrValue *v, PtrVec *in) {
  for (int i = 0; i < v->narg; i++) {
    const IrValue *a = v->arg[i];
    if (cg->inl[a->id]) {
      collect_inputs(cg, a, in);
      continue;
    }
    bool seen = false;
    for (int j = 0; j < in->n && !seen; j++)
      seen = in->item[j] == a;
    if (!seen)
      ptrvec_push(cg->arena, in, (void *)a);
  }
}

int64_t kernel_scratch(Cg *cg, const IrValue *v) {
  const IrValue *mm = kernel_matmul(cg, v);
  return mm ? mm_scratch(mm) : conv_scratch(cg, v);
}

bool row_groupable(Cg *cg, const IrValue *v, bool *sink) {
  *sink = false;
  if (kernel_matmul(cg, v) || kernel_conv(cg, v) || kernel_scratch(cg, v))
    return false;
  const IrValue *x = v->narg ? v->arg[0] : NULL;
  if (v->op == OP_SUM_TO) { // per row, or a sum over the batch (a sink)
    *sink = !v->batched && x->batched;
    return v->batched || *sink;
  }
  if (prims[v->op].flags & PF_BATCH_SUM) {
    *sink = true;
    return x->batched;
  }
  return (prims[v->op].flags & PF_ROW) && v->batched;
}

// The members of the row group led by v (v first), in order.
static PtrVec group_members(Cg *cg, const IrValue *v) {
  PtrVec g = {0};
  for (int i = v->id; i < cg->m->fn->values.n; i++)
    if (cg->group[i] == v->id)
      ptrvec_push(cg->arena, &g, cg->m->fn->values.item[i]);
  return g;
}

PtrVec kernel_inputs(Cg *cg, const IrValue *v) {
  PtrVec in = {0};
  if (cg->group && cg->group[v->id] == v->id) {
    // A row group reads what its members read, except each other.
    PtrVec g = group_members(cg, v);
    for (int i = 0; i < g.n; i++)
      collect_inputs(cg, g.item[i], &in);
    int n = 0;
    for (int i = 0; i < in.n; i++)
      if (cg->group[((IrValue *)in.item[i])->id] != v->id)
        in.item[n++] = in.item[i];
    in.n = n;
    return in;
  }
  collect_inputs(cg, v, &in);
  return in;
}

// A row group: one loop over the batch rows computing every member's row in
// order (a member reads earlier members' rows from their buffers); sums over
// the batch (sinks) are zeroed before the loop and BATCH_MEAN is scaled
// after it. The rows are visited in order, so every sum adds in the same
// order as a kernel of its own would.
static void emit_group(Kern *kern, const PtrVec *g) {
  Cg *cg = kern->cg;
  for (int i = 0; i < g->n; i++) {
    const IrValue *v = g->item[i];
    bool sink;
    row_groupable(cg, v, &sink);
    if (sink)
      LLVMBuildMemSet(cg->b, kern->outp[i], LLVMConstInt(cg->t_i8, 0, 0),
                      cg_i64(cg, cg->elt_size * shape_numel(v->shape)),
                      (unsigned)cg->elt_size);
  }
  Loop l;
  kern->row = loop_begin(cg, &l, kern->rows, "row");
  for (int i = 0; i < g->n; i++) {
    const IrValue *v = g->item[i];
    kern->out = kern->outp[i];
    emitters[v->op](kern, v);
  }
  loop_end(cg, &l);
  kern->row = NULL;
  for (int i = 0; i < g->n; i++) {
    const IrValue *v = g->item[i];
    if (v->op != OP_BATCH_MEAN)
      continue;
    LLVMValueRef inv =
        LLVMBuildFDiv(cg->b, cg_f32(cg, 1),
                      LLVMBuildSIToFP(cg->b, kern->rows, cg->t_elt, ""), "");
    Loop lj;
    LLVMValueRef j =
        loop_begin(cg, &lj, cg_i64(cg, shape_numel(v->shape)), "j");
    cg_store(cg, LLVMBuildFMul(cg->b, cg_load(cg, kern->outp[i], j), inv, ""),
             kern->outp[i], j);
    loop_end(cg, &lj);
  }
}

const Kernel *kernel_get(Cg *cg, const IrValue *v) {
  if (cg->kern[v->id])
    return cg->kern[v->id];
  Kernel *k = arena_alloc(cg->arena, sizeof *k);
  PtrVec in = kernel_inputs(cg, v);
  k->nin = in.n;
  k->in = (const IrValue **)in.item;
  PtrVec outs = {0};
  if (cg->group && cg->group[v->id] == v->id)
    outs = group_members(cg, v);
  else
    ptrvec_push(cg->arena, &outs, (void *)v);
  k->nout = outs.n;
  k->outs = (const IrValue **)outs.item;
  k->scratch = kernel_scratch(cg, v) > 0;
  k->key = prims[v->op].kind == PK_RANDOM;
  k->opt_param = cg->opt_fused ? cg->opt_fused[v->id] : -1;
  assert(k->opt_param < 0 || v->op == OP_MATMUL_TN);
  int nopt = k->opt_param >= 0 ? 4 : 0;
  int np = k->nout + k->nin + 1 + k->scratch + k->key + nopt;
  LLVMTypeRef *pt = arena_alloc(cg->arena, sizeof *pt * (size_t)np);
  for (int i = 0; i < np - 1; i++)
    pt[i] = cg->t_ptr;
  if (k->key)
    pt[k->nout + k->nin + k->scratch] = cg->t_i64;
  if (nopt)
    pt[np - 3] = pt[np - 2] = cg->t_elt;
  pt[np - 1] = cg->t_i64;
  k->ty = LLVMFunctionType(cg->t_void, pt, (unsigned)np, 0);
  k->fn =
      cg_function(cg,
                  arena_printf(cg->arena, "k%d.%s%s", v->id, prims[v->op].name,
                               k->nout > 1 ? ".group" : ""),
                  k->ty, true);

  LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
  LLVMPositionBuilderAtEnd(cg->b,
                           LLVMAppendBasicBlockInContext(cg->lc, k->fn, ""));
  Kern kern = {.cg = cg, .k = k};
  kern.outp = arena_alloc(cg->arena, sizeof *kern.outp * (size_t)k->nout);
  for (int i = 0; i < k->nout; i++) {
    kern.outp[i] = LLVMGetParam(k->fn, (unsigned)i);
    const char *name =
        i ? arena_printf(cg->arena, "out%d", k->outs[i]->id) : "out";
    LLVMSetValueName2(kern.outp[i], name, strlen(name));
  }
  kern.out = kern.outp[0];
  kern.inp = arena_alloc(cg->arena, sizeof *kern.inp * (size_t)(k->nin + 1));
  for (int i = 0; i < k->nin; i++) {
    kern.inp[i] = LLVMGetParam(k->fn, (unsigned)(k->nout + i));
    const char *name = arena_printf(cg->arena, "v%d", k->in[i]->id);
    LLVMSetValueName2(kern.inp[i], name, strlen(name));
  }
  if (k->scratch) {
    kern.scratch = LLVMGetParam(k->fn, (unsigned)(k->nout + k->nin));
    LLVMSetValueName2(kern.scratch, "scratch", 7);
  }
  if (k->key) {
    kern.key = LLVMGetParam(k->fn, (unsigned)(k->nout + k->nin + k->scratch));
    LLVMSetValueName2(kern.key, "key", 3);
  }
  if (nopt) {
    kern.opt_p = LLVMGetParam(k->fn, (unsigned)np - 5);
    kern.opt_st = LLVMGetParam(k->fn, (unsigned)np - 4);
    kern.opt_t = LLVMGetParam(k->fn, (unsigned)np - 3);
    kern.opt_lr = LLVMGetParam(k->fn, (unsigned)np - 2);
    LLVMSetValueName2(kern.opt_lr, "lr", 2);
    LLVMSetValueName2(kern.opt_p, "param", 5);
    LLVMSetValueName2(kern.opt_st, "state", 5);
    LLVMSetValueName2(kern.opt_t, "t", 1);
  }
  kern.rows = LLVMGetParam(k->fn, (unsigned)np - 1);
  LLVMSetValueName2(kern.rows, "rows", 4);
  if (k->nout > 1)
    emit_group(&kern, &outs);
  else
    emitters[v->op](&kern, v);
  LLVMBuildRetVoid(cg->b);
  if (saved)
    LLVMPositionBuilderAtEnd(cg->b, saved);
  cg->kern[v->id] = k;
  return k;
}

// ---- tasks ------------------------------------------------------------------
// Splits the function the builder is in (`fn`, its entry block current) into
//   fn(args)            ntasks <= 1 ? body(args, 0)
//                                   : nnrt_parallel_for(task, &args, ntasks)
//   name.task(ctx, t)   body(*ctx, t)
//   name.body(args, t)  left for the caller to fill: the builder is moved
//                       into its entry block, and it is returned.
// Arguments travel through a struct of the same types on fn's stack.
static LLVMValueRef split_tasks(Cg *cg, LLVMValueRef fn, LLVMValueRef ntasks,
                                const char *name) {
  unsigned n = LLVMCountParams(fn);
  LLVMTypeRef *pt = arena_alloc(cg->arena, sizeof *pt * (n + 1));
  LLVMValueRef *args = arena_alloc(cg->arena, sizeof *args * (n + 1));
  for (unsigned i = 0; i < n; i++)
    pt[i] = LLVMTypeOf(LLVMGetParam(fn, i));
  pt[n] = cg->t_i64;
  LLVMTypeRef bty = LLVMFunctionType(cg->t_void, pt, n + 1, 0);
  LLVMValueRef body =
      cg_function(cg, arena_printf(cg->arena, "%s.body", name), bty, true);
  // Every pointer argument of fn that is not noalias stays so in the body.
  unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
  for (unsigned i = 0; i < n; i++)
    if (LLVMGetTypeKind(pt[i]) == LLVMPointerTypeKind &&
        !LLVMGetEnumAttributeAtIndex(fn, i + 1, noalias))
      LLVMRemoveEnumAttributeAtIndex(body, i + 1, noalias);
  LLVMTypeRef st = LLVMStructTypeInContext(cg->lc, pt, n, 0);

  // name.task(ctx, t)
  if (!cg->par_fn) {
    LLVMTypeRef ppt[3] = {cg->t_ptr, cg->t_ptr, cg->t_i64};
    cg->par_ty = LLVMFunctionType(cg->t_void, ppt, 3, 0);
    cg->par_fn = LLVMAddFunction(cg->mod, "nnrt_parallel_for", cg->par_ty);
  }
  LLVMTypeRef tpt[2] = {cg->t_ptr, cg->t_i64};
  LLVMValueRef task =
      cg_function(cg, arena_printf(cg->arena, "%s.task", name),
                  LLVMFunctionType(cg->t_void, tpt, 2, 0), true);
  LLVMRemoveEnumAttributeAtIndex(
      task, LLVMAttributeFunctionIndex,
      LLVMGetEnumAttributeKindForName("noinline", 8));
  LLVMBuilderRef tb = LLVMCreateBuilderInContext(cg->lc);
  LLVMPositionBuilderAtEnd(tb, LLVMAppendBasicBlockInContext(cg->lc, task, ""));
  LLVMValueRef ctx = LLVMGetParam(task, 0);
  for (unsigned i = 0; i < n; i++)
    args[i] =
        LLVMBuildLoad2(tb, pt[i], LLVMBuildStructGEP2(tb, st, ctx, i, ""), "");
  args[n] = LLVMGetParam(task, 1);
  LLVMBuildCall2(tb, bty, body, args, n + 1, "");
  LLVMBuildRetVoid(tb);
  LLVMDisposeBuilder(tb);

  // fn: run the body here when there is one task, else dispatch.
  LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(cg->lc, fn, "serial");
  LLVMBasicBlockRef many =
      LLVMAppendBasicBlockInContext(cg->lc, fn, "parallel");
  LLVMBuildCondBr(cg->b,
                  LLVMBuildICmp(cg->b, LLVMIntSLE, ntasks, cg_i64(cg, 1), ""),
                  one, many);
  LLVMPositionBuilderAtEnd(cg->b, one);
  for (unsigned i = 0; i < n; i++)
    args[i] = LLVMGetParam(fn, i);
  args[n] = cg_i64(cg, 0);
  LLVMBuildCall2(cg->b, bty, body, args, n + 1, "");
  LLVMBuildRetVoid(cg->b);
  LLVMPositionBuilderAtEnd(cg->b, many);
  LLVMValueRef slot = cg_alloca(cg, st, "args");
  for (unsigned i = 0; i < n; i++)
    LLVMBuildStore(cg->b, LLVMGetParam(fn, i),
                   LLVMBuildStructGEP2(cg->b, st, slot, i, ""));
  LLVMValueRef pa[3] = {task, slot, ntasks};
  LLVMBuildCall2(cg->b, cg->par_ty, cg->par_fn, pa, 3, "");
  LLVMBuildRetVoid(cg->b);

  LLVMPositionBuilderAtEnd(cg->b,
                           LLVMAppendBasicBlockInContext(cg->lc, body, ""));
  return body;
}

LLVMValueRef kern_parallel(Kern *k, LLVMValueRef ntasks, const char *name) {
  Cg *cg = k->cg;
  LLVMValueRef body = split_tasks(cg, k->k->fn, ntasks, name);
  unsigned i = 0;
  assert(k->k->nout == 1 && "row groups are not split into tasks");
  k->out = k->outp[0] = LLVMGetParam(body, i++);
  for (int a = 0; a < k->k->nin; a++)
    k->inp[a] = LLVMGetParam(body, i++);
  if (k->k->scratch)
    k->scratch = LLVMGetParam(body, i++);
  if (k->k->key)
    k->key = LLVMGetParam(body, i++);
  if (k->k->opt_param >= 0) {
    k->opt_p = LLVMGetParam(body, i++);
    k->opt_st = LLVMGetParam(body, i++);
    k->opt_t = LLVMGetParam(body, i++);
    k->opt_lr = LLVMGetParam(body, i++);
  }
  k->rows = LLVMGetParam(body, i++);
  LLVMValueRef t = LLVMGetParam(body, i);
  LLVMSetValueName2(t, "task", 4);
  return t;
}

// x as a value of like's type: a scalar is splat when like is a vector.
static LLVMValueRef shaped_like(Cg *cg, LLVMValueRef x, LLVMValueRef like) {
  LLVMTypeRef t = LLVMTypeOf(like);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind ||
      LLVMGetTypeKind(LLVMTypeOf(x)) == LLVMVectorTypeKind)
    return x;
  LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetPoison(t), x,
                                          LLVMConstInt(cg->t_i32, 0, 0), "");
  return LLVMBuildShuffleVector(
      cg->b, v, LLVMGetPoison(t),
      LLVMConstNull(LLVMVectorType(cg->t_i32, LLVMGetVectorSize(t))), "");
}

void opt_eval(Cg *cg, LLVMValueRef *arg, LLVMValueRef *res) {
  const IrOptimizer *o = &cg->step->opt;
  int nv = o->fn->values.n;
  LLVMValueRef *val = arena_alloc(cg->arena, sizeof *val * (size_t)nv);
  bool *uni = arena_alloc(cg->arena, (size_t)nv); // same for every element
  for (int vi = 0; vi < nv; vi++) {
    const IrValue *u = o->fn->values.item[vi];
    assert(u->id == vi && "optimizer values must be numbered in order");
    assert(shape_numel(u->shape) == 1 && !u->batched);
    LLVMValueRef x[MAX_ARGS];
    for (int a = 0; a < u->narg; a++)
      x[a] = val[u->arg[a]->id];
    switch (prims[u->op].kind) {
    case PK_RANDOM:
      assert(!"an optimizer draws no random numbers");
      unreachable();
    case PK_LEAF:
      // The step and the learning rate are the same for every element.
      uni[vi] = u->op == OP_CONST ||
                (u->op == OP_ARG &&
                 (u->attr.index == 2 || u->attr.index == 3 + o->nstate));
      if (u->op == OP_CONST) {
        val[vi] = cg_f32(cg, u->attr.num);
      } else {
        assert(u->op == OP_ARG && u->attr.index <= 3 + o->nstate);
        assert(u->attr.index < 3 + o->nstate || o->lr_arg > 0);
        val[vi] = arg[u->attr.index];
      }
      break;
    case PK_EW:
      uni[vi] = true;
      for (int a = 0; a < u->narg; a++)
        uni[vi] &= uni[u->arg[a]->id];
      // Values the same for every element stay scalars (computed once);
      // the others take the elements' shape.
      for (int a = 0; a < u->narg && !uni[vi]; a++)
        x[a] = shaped_like(cg, x[a], arg[0]);
      // A divisor that is the same for every element (a bias correction
      // such as 1 - b^t) becomes one reciprocal, hoisted out of the loop:
      // dividers are the bottleneck of Adam-like updates.
      if (u->op == OP_DIV && uni[u->arg[1]->id] && !uni[vi])
        val[vi] =
            fmf(LLVMBuildFMul(cg->b, x[0],
                              shaped_like(cg,
                                          LLVMBuildFDiv(cg->b, cg_f32(cg, 1),
                                                        val[u->arg[1]->id], ""),
                                          arg[0]),
                              ""),
                FM_CONTRACT);
      else
        val[vi] = ew_op(cg, u, x);
      break;
    case PK_REDUCE:
    case PK_OTHER:
      // On a single element SUM, MEAN, SUM_TO and RESHAPE are the identity.
      assert(u->op == OP_SUM || u->op == OP_MEAN || u->op == OP_SUM_TO ||
             u->op == OP_RESHAPE);
      val[vi] = x[0];
      uni[vi] = uni[u->arg[0]->id];
      break;
    case PK_MATMUL:
      assert(!"matmul in an optimizer program");
      unreachable();
    }
  }
  res[0] = shaped_like(cg, val[o->new_p->id], arg[0]);
  for (int s = 0; s < o->nstate; s++)
    res[1 + s] = shaped_like(cg, val[o->new_state[s]->id], arg[0]);
}

// The optimizer program, evaluated per element: every result is computed
// before anything is stored.
LLVMValueRef kernel_optimizer(Cg *cg) {
  if (cg->opt_fn)
    return cg->opt_fn;
  const IrOptimizer *o = &cg->step->opt;
  LLVMTypeRef pt[7] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64,
                       cg->t_i64, cg->t_elt, cg->t_elt};
  LLVMTypeRef ty = LLVMFunctionType(cg->t_void, pt, 7, 0);
  LLVMValueRef fn = cg_function(cg, "nnc.opt", ty, true);
  // After simplification a gradient may be a parameter's own buffer
  // (d/dW of W*W/2 is W): g may alias p, which is written.
  LLVMRemoveEnumAttributeAtIndex(fn, 2,
                                 LLVMGetEnumAttributeKindForName("noalias", 7));
  LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
  LLVMPositionBuilderAtEnd(cg->b,
                           LLVMAppendBasicBlockInContext(cg->lc, fn, ""));
  // Tasks of OPT_CHUNK elements when there are at least two of them; the
  // split depends only on n.
  LLVMValueRef n = LLVMGetParam(fn, 3);
  LLVMValueRef serial =
      LLVMBuildICmp(cg->b, LLVMIntSLT, n, cg_i64(cg, 2 * OPT_CHUNK), "");
  LLVMValueRef ntasks = LLVMBuildSelect(
      cg->b, serial, cg_i64(cg, 1),
      LLVMBuildSDiv(cg->b, cg_add(cg, n, cg_i64(cg, OPT_CHUNK - 1)),
                    cg_i64(cg, OPT_CHUNK), ""),
      "");
  LLVMValueRef body = split_tasks(cg, fn, ntasks, "nnc.opt");
  LLVMValueRef task = LLVMGetParam(body, 7);
  n = LLVMGetParam(body, 3);
  serial = LLVMBuildICmp(cg->b, LLVMIntSLT, n, cg_i64(cg, 2 * OPT_CHUNK), "");
  LLVMValueRef lo =
      LLVMBuildSelect(cg->b, serial, cg_i64(cg, 0),
                      cg_mul(cg, task, cg_i64(cg, OPT_CHUNK)), "");
  LLVMValueRef hi = cg_add(cg, lo, cg_i64(cg, OPT_CHUNK));
  hi = LLVMBuildSelect(cg->b,
                       LLVMBuildOr(cg->b, serial,
                                   LLVMBuildICmp(cg->b, LLVMIntSGT, hi, n, ""),
                                   ""),
                       n, hi, "");
  LLVMValueRef p = cg_gep(cg, LLVMGetParam(body, 0), lo),
               g = cg_gep(cg, LLVMGetParam(body, 1), lo),
               st = cg_gep(cg, LLVMGetParam(body, 2), lo),
               stride = LLVMGetParam(body, 4), t = LLVMGetParam(body, 5),
               lr = LLVMGetParam(body, 6);

  Loop l;
  LLVMValueRef i = loop_begin(cg, &l, LLVMBuildNSWSub(cg->b, hi, lo, ""), "i");
  int ns = o->nstate;
  LLVMValueRef *arg = arena_alloc(cg->arena, sizeof *arg * (size_t)(4 + ns));
  LLVMValueRef *res = arena_alloc(cg->arena, sizeof *res * (size_t)(1 + ns));
  arg[0] = cg_load(cg, p, i);
  arg[1] = cg_load(cg, g, i);
  arg[2] = t;
  arg[3 + ns] = lr;
  for (int k = 0; k < ns; k++)
    arg[3 + k] =
        cg_load(cg, st, cg_add(cg, cg_mul(cg, cg_i64(cg, k), stride), i));
  opt_eval(cg, arg, res);
  cg_store(cg, res[0], p, i);
  for (int k = 0; k < ns; k++)
    cg_store(cg, res[1 + k], st,
             cg_add(cg, cg_mul(cg, cg_i64(cg, k), stride), i));
  loop_end(cg, &l);
  LLVMBuildRetVoid(cg->b);
  if (saved)
    LLVMPositionBuilderAtEnd(cg->b, saved);
  cg->opt_fn = fn;
  return fn;
}
