// codegen_internal.h — what codegen.c, codegen_kernels.c, codegen_matmul.c
// and codegen_conv.c share; no other file includes it, so LLVM types stay
// inside codegen*.c (convention 12).
//
// codegen.c owns the LLVM module, the target machine, the workspace plan and
// the driver functions (nnc_train, nnc_infer, main, the nnc_model table).
// codegen_kernels.c owns the loop-nest helpers, tasks and one emitter per
// primitive (the `emit_ID` column of prims.def); codegen_matmul.c the GEMM
// kernels, codegen_conv.c the convolutional family. The split is the kernel
// function: every materialized value (or row group of values) is computed by
// one internal LLVM function `void kN.op(ptr out, ptr in0, ..., i64 rows)`
// whose pointer arguments are all noalias (no two of them share a writable
// buffer), and which both nnc_train and nnc_infer call with their own
// buffer pointers.
#ifndef NNC_CODEGEN_INTERNAL_H
#define NNC_CODEGEN_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen.h"

// A kernel function computing one materialized value:
//   void kN.op(ptr out, ptr in0, ..., [ptr scratch,] i64 rows)
typedef struct Kernel {
  LLVMValueRef fn;
  LLVMTypeRef ty;
  int nout;             // values written: 1, or a row group's members, whose
  const IrValue **outs; // buffers are the first nout arguments
  int nin;            // pointer arguments after the outputs
  const IrValue **in; // the storage-backed values they point to
  bool scratch;       // a scratch pointer follows the inputs (kernel_scratch)
  bool key;           // an i64 follows: the step's key for random draws
  int opt_param;      // >= 0: the kernel also applies the optimizer to this
                      // parameter; ptr p, ptr state, float t follow
} Kernel;

// The state of one code generation (one LLVM context and module).
typedef struct Cg {
  CodegenPlan plan;       // the training workspace, once planned
  IrModule *m;
  const IrStep *step;     // the step nnc_train runs (codegen compiles
                          // programs of at most one step so far); an
                          // empty one without a train block
  Ctx *ctx;
  Arena *arena;
  LLVMContextRef lc;
  LLVMModuleRef mod;
  LLVMTargetMachineRef tm; // host CPU and features, PIC
  LLVMBuilderRef b;        // the builder every emitter uses
  LLVMBuilderRef ab;       // places allocas at the top of an entry block
  LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_f64, t_ptr;
  // Per value of m->fn, indexed by IrValue.id:
  bool *inl;           // computed inside its user's loop, never stored
  Kernel **kern;       // its kernel once built (NULL before)
  LLVMValueRef opt_fn; // the optimizer's update, or NULL
  LLVMValueRef par_fn; // nnrt_parallel_for, declared on first use
  LLVMTypeRef par_ty;
  LLVMValueRef prof;   // NNC_PROFILE builds: i64 cycle counters, or NULL
  // Per value id: the parameter whose optimizer update this gradient's
  // kernel applies in its epilogue (the gradient is then never stored), or
  // -1. Set by codegen.c for nnc_train before any kernel is built.
  int *opt_fused;
  int64_t param_numel; // floats of all parameters (the state stride)
  // Per value id: the leader (first member) of the row group it belongs to,
  // or -1. A row group's kernel computes all its members in one loop over
  // the batch rows (see kernel_get); set by codegen.c before any kernel is
  // built.
  int *group;
  // Per step of the training program (one without steps): the values its
  // kernels compute, indexed by value id. Set by codegen.c.
  bool **step_live;
  // The target's register tiles (cg_target_tiles): accumulator vectors of
  // 16 floats a tile may keep, vectors per GEMM tile row, convolution dot
  // tiles of dot_mi x dot_nj; the widest vector register, in bits.
  int accs, max_nv, dot_mi, dot_nj, vec_bits;
  // "llvm.fma", or without FMA instructions "llvm.fmuladd" (a multiply and
  // an add: llvm.fma would become a call to the exact, slow fmaf)
  const char *fma;
  const CodegenOptions *opt; // the options of this code generation
  int64_t cpu_mask;          // NNRT_CPU_FEATURES the target has
  const char *cpu_name;      // its --cpu name
  // The model's element type (float, or double in f64 models) and its size
  // in bytes, the alignment of every element access. Vectors keep 16 lanes
  // in both (an f64 vector is two zmm registers): the tiled kernels'
  // lane logic is shared, and codegen_target.c halves the tiles for f64.
  LLVMTypeRef t_elt;
  int elt_size;
} Cg;

// The CPU chosen with --cpu (codegen_target.c).
typedef struct CgTarget {
  const char *name;     // "native", "x86-64-v3", ...
  char *cpu, *features; // for LLVMCreateTargetMachine (malloc'd)
  int64_t mask;         // NNRT_CPU_FEATURES bits the code may use
} CgTarget;
// Fills t for --cpu=name (NULL: native); nonzero if the name is unknown.
int cg_target(const char *name, CgTarget *t);
void cg_target_free(CgTarget *t);
// Sets cg's register-tile sizes for a target with the features in mask.
void cg_target_tiles(Cg *cg, int64_t mask);

// ---- small builder helpers (codegen_kernels.c) ------------------------------
LLVMValueRef cg_i64(Cg *cg, int64_t v);
LLVMValueRef cg_f32(Cg *cg, double v);
// &p[i] for a float pointer p and an i64 index i.
LLVMValueRef cg_gep(Cg *cg, LLVMValueRef p, LLVMValueRef i);
// p[i] and p[i] = v, with alignment 4: nothing better is proven.
LLVMValueRef cg_load(Cg *cg, LLVMValueRef p, LLVMValueRef i);
void cg_store(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i);
LLVMValueRef cg_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b); // i64, nsw
LLVMValueRef cg_add(Cg *cg, LLVMValueRef a, LLVMValueRef b); // i64, nsw
// A call to an overloaded float intrinsic ("llvm.exp"), overloaded on the
// type of args[0] (f32 or <16 x float>).
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMValueRef *args, int n);
// A float slot in the entry block of the current function (SROA promotes it).
LLVMValueRef cg_alloca(Cg *cg, LLVMTypeRef ty, const char *name);
// An internal (or external) function with noalias pointer parameters,
// nounwind, and the 512-bit vector-width preference.
LLVMValueRef cg_function(Cg *cg, const char *name, LLVMTypeRef ty,
                         bool internal);

// ---- loops ------------------------------------------------------------------
// `for (i = 0; i < n; i++)` as a guarded, bottom-tested loop whose induction
// variable is a phi. loop_begin leaves the builder in the body, loop_end after
// the loop; loops nest by calling them in LIFO order.
// Vectors of 16 floats (one zmm register), shared by the tiled kernels:
// loads and stores say align 4 (nothing better is proven, LLVM-NOTES trap
// 4); with a mask only its lanes are touched (masked-off lanes load 0).
LLVMTypeRef cg_vty(Cg *cg);
LLVMValueRef cg_splat(Cg *cg, LLVMValueRef x); // a float or an i32, 16 times
LLVMValueRef cg_vmask(Cg *cg, int64_t n);      // first n lanes; NULL if n >= 16
LLVMValueRef cg_vload(Cg *cg, LLVMValueRef p, LLVMValueRef mask);
void cg_vstore(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask);
LLVMValueRef cg_vload_n(Cg *cg, LLVMValueRef p, LLVMValueRef mask,
                        unsigned lanes); // `lanes` floats
void cg_vstore_n(Cg *cg, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask);
void cg_transpose16(Cg *cg, LLVMValueRef *r); // r[i][j] <- r[j][i]

// The reduction loop of a register tile (codegen_matmul.c, codegen_conv.c):
// n accumulator vectors carried as phis through `for t in [0, T)`.
// tile_loop_begin starts them at zero (zero) or at acc[] as given, leaves
// the builder in the body with acc[] the current sums and returns t; the
// body replaces acc[] with its new sums; tile_loop_end closes the loop
// (with llvm.loop.unroll.disable unless unroll) and leaves the final sums
// in acc[] (the starting values when T is 0, which only a run-time T can
// be).
enum { TILE_ACCS = 96 };
typedef struct TileLoop {
  LLVMBasicBlockRef pre, body, exit;
  LLVMValueRef t, T, phi[TILE_ACCS], init[TILE_ACCS];
  bool guard;
} TileLoop;
LLVMValueRef tile_loop_begin(Cg *cg, TileLoop *l, LLVMValueRef T, int n,
                             LLVMValueRef *acc, bool zero);
void tile_loop_end(Cg *cg, TileLoop *l, int n, LLVMValueRef *acc, bool unroll);

typedef struct Loop {
  LLVMBasicBlockRef pre, body, exit;
  LLVMValueRef i, n;
} Loop;
LLVMValueRef loop_begin(Cg *cg, Loop *l, LLVMValueRef n, const char *name);
void loop_end(Cg *cg, Loop *l);

// ---- kernels (codegen_kernels.c) --------------------------------------------
// The kernel materializing v (built on first use, then cached in cg->kern).
const Kernel *kernel_get(Cg *cg, const IrValue *v);
// The stored values v's kernel reads (its arguments, looking through inline
// values to their stored leaves), in the order of its pointer arguments.
PtrVec kernel_inputs(Cg *cg, const IrValue *v);
// Floats of scratch memory v's kernel needs while it runs (0: none). Pure
// function of the IR and cg->inl, so the planner can call it before any
// kernel is built.
int64_t kernel_scratch(Cg *cg, const IrValue *v);
// void nnc.opt(ptr p, ptr g, ptr state, i64 n, i64 state_stride, float t):
// applies m->opt to n elements; state k of element i is state[k*stride + i].
// Splits big updates into tasks of a fixed size (see nnrt_parallel_for).
LLVMValueRef kernel_optimizer(Cg *cg);
// The optimizer program on one element or one vector of elements: arg[0] p,
// [1] g, [2] t (always a scalar float), [3 + k] state k; res[0] the new p,
// [1 + k] the new state k, shaped like arg[0].
void opt_eval(Cg *cg, LLVMValueRef *arg, LLVMValueRef *res);

// The kernel being built. Emitters read their inputs through kern_ptr and
// write `out`; a parallel emitter moves all of these to its body function
// (kern_parallel).
typedef struct Kern {
  Cg *cg;
  const Kernel *k;
  LLVMValueRef out, rows, scratch;
  LLVMValueRef *inp;  // the pointer argument of each k->in
  LLVMValueRef *outp; // the pointer argument of each k->outs
  LLVMValueRef row;   // row mode (row groups): emit this batch row only
  LLVMValueRef key;   // k->key: the step's key of random draws (nnrt_rng.h)
  LLVMValueRef opt_lr;               // and the step's learning rate
  LLVMValueRef opt_p, opt_st, opt_t; // k->opt_param >= 0: params + offset,
                                     // state + offset, the step t (float)
} Kern;
LLVMValueRef kern_ptr(Kern *k, const IrValue *v);
// Turns the kernel into `ntasks` tasks: the current function (kN.op) gets
// `ntasks <= 1 ? body(args, 0) : nnrt_parallel_for(task, &args, ntasks)`
// and a return; the builder moves into a new function kN.body(args, task)
// whose arguments replace k->out, k->inp, k->rows and k->scratch. Returns
// the task index. `ntasks` must depend only on shapes and `rows`, never on
// the thread count, so results are the same for any --threads.
LLVMValueRef kern_parallel(Kern *k, LLVMValueRef ntasks, const char *name);
// One element-wise op on scalars or on <16 x float> vectors (every operand
// the same type); semantics of eval.c.
LLVMValueRef ew_op(Cg *cg, const IrValue *v, LLVMValueRef *x);

// Row groups: whether v's kernel can run one batch row at a time inside a
// row group's loop, reading only that row of batched values (*sink: v sums
// over the batch instead, complete only after the loop).
bool row_groupable(Cg *cg, const IrValue *v, bool *sink);

// ---- matmuls (codegen_matmul.c) ---------------------------------------------
// The MATMUL* value computed inside v's kernel (v itself, or the one fused
// matmul in v's inline element-wise tree), or NULL.
const IrValue *kernel_matmul(Cg *cg, const IrValue *v);
// The register-tiled matmul kernel of `mm`, storing `root` (mm itself, or an
// element-wise tree over mm evaluated in the tile's epilogue).
void mm_kernel(Kern *k, const IrValue *root, const IrValue *mm);

// Verifies mod and runs the default<O?> pipeline on it; on failure, the
// reason in err and nonzero. Thread-safe (codegen_split.c's halves).
int verify_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level,
                    char *err, size_t cap);

// codegen_split.c: verifies, optimizes and writes cg->mod as two
// objects (o->out_path, o->out_path2) on two threads; tm2 is the second
// half's target machine. Returns nonzero after reporting an error.
int split_emit(Cg *cg, const CodegenOptions *o, LLVMTargetMachineRef tm2);
// Scratch floats mm_kernel needs (the packed B^T of MATMUL_NT).
int64_t mm_scratch(const IrValue *mm);

// ---- the convolutional family (codegen_conv.c) ------------------------------
// The emit_ID column for CONV ... EMBED (dispatched from prims.def).
void emit_CONV(Kern *k, const IrValue *v);
void emit_CONV_T(Kern *k, const IrValue *v);
void emit_CONV_W(Kern *k, const IrValue *v);
void emit_MAXPOOL(Kern *k, const IrValue *v);
void emit_UNPOOL(Kern *k, const IrValue *v);
void emit_POOL_SELECT(Kern *k, const IrValue *v);
void emit_AVGPOOL(Kern *k, const IrValue *v);
void emit_AVGPOOL_T(Kern *k, const IrValue *v);
void emit_CONCAT(Kern *k, const IrValue *v);
void emit_SLICE(Kern *k, const IrValue *v);
void emit_EMBED(Kern *k, const IrValue *v);
// Scratch floats v's kernel needs (Col panels, partial sums; 0 for values
// outside the family). A pure function of the IR and cg->inl.
int64_t conv_scratch(Cg *cg, const IrValue *v);
// The CONV computed inside v's kernel (v itself, or the CONV that kernel_fuse
// fused into v's element-wise chain), or NULL.
const IrValue *kernel_conv(Cg *cg, const IrValue *v);
// The kernel of `conv` storing `root` (conv, or the element-wise chain over
// it, applied to each output vector before it is stored).
void conv_kernel(Kern *k, const IrValue *root, const IrValue *conv);
// SUM_TO from a stored batched [C, n...] to an unbatched [C, 1, ...] (a
// convolution's bias gradient): emits its kernel and returns true, or
// returns false (emitting nothing) for any other SUM_TO.
bool conv_channel_sum(Kern *k, const IrValue *v);

#endif
