// codegen_internal.h — what codegen.c and codegen_kernels.c share; no other
// file includes it, so LLVM types stay inside codegen*.c (convention 12).
//
// codegen.c owns the LLVM module, the target machine, the workspace plan and
// the driver functions (nnc_train, nnc_infer, main, the nnc_model table).
// codegen_kernels.c owns the loop-nest helpers and one emitter per primitive
// (the `emit_ID` column of prims.def). The split between them is the kernel
// function: every materialized value is computed by one internal LLVM
// function `void kN.op(ptr out, ptr in0, ..., i64 rows)` whose pointer
// arguments are all noalias (no two of them share a writable buffer), and
// which both nnc_train and nnc_infer call with their own buffer pointers.
#ifndef NNC_CODEGEN_INTERNAL_H
#define NNC_CODEGEN_INTERNAL_H

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "codegen.h"

// A kernel function computing one materialized value.
typedef struct Kernel {
  LLVMValueRef fn;
  LLVMTypeRef ty;
  int nin;            // pointer arguments after `out`
  const IrValue **in; // the storage-backed values they point to
} Kernel;

// The state of one code generation (one LLVM context and module).
typedef struct Cg {
  IrModule *m;
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
  LLVMValueRef opt_fn; // the optimizer's per-parameter update, or NULL
} Cg;

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
// A call to an overloaded float intrinsic ("llvm.exp") on f32.
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
typedef struct Loop {
  LLVMBasicBlockRef pre, body, exit;
  LLVMValueRef i, n;
} Loop;
LLVMValueRef loop_begin(Cg *cg, Loop *l, LLVMValueRef n, const char *name);
void loop_end(Cg *cg, Loop *l);

// ---- kernels (codegen_kernels.c) --------------------------------------------
// The kernel materializing v (built on first use, then cached in cg->kern).
const Kernel *kernel_get(Cg *cg, const IrValue *v);
// void nnc.opt(ptr p, ptr g, ptr state, i64 n, i64 state_stride, float t):
// applies m->opt to n elements; state k of element i is state[k*stride + i].
LLVMValueRef kernel_optimizer(Cg *cg);

// The matmul forms, one replaceable function each. `rows` is the runtime row
// count of the first argument (batch x leading axes); all pointers are f32.
// out[r, j] = sum_k a[r, k] b[k, j]          (a: rows x K, b: K x M)
void mm_nn(Cg *cg, LLVMValueRef out, LLVMValueRef a, LLVMValueRef b,
           LLVMValueRef rows, int64_t K, int64_t M);
// out[r, k] = sum_j a[r, j] b[k, j]          (a: rows x M, b: K x M)
void mm_nt(Cg *cg, LLVMValueRef out, LLVMValueRef a, LLVMValueRef b,
           LLVMValueRef rows, int64_t K, int64_t M);
// out[k, j] = sum_r a[r, k] b[r, j]          (a: rows x K, b: rows x M)
void mm_tn(Cg *cg, LLVMValueRef out, LLVMValueRef a, LLVMValueRef b,
           LLVMValueRef rows, int64_t K, int64_t M);

#endif
