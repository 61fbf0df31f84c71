// codegen.h — LLVM code generation: IR module -> native object file.
//
// Consumes an optimized, fused IrModule and emits, through the LLVM C API, one
// LLVM module holding the whole training loop (nnc_train: epochs, batches,
// forward, backward, optimizer update), the forward pass for evaluation
// (nnc_infer), the `nnc_model` descriptor table the runtime reads (see
// runtime/nnrt.h) and `main`. No LLVM type appears outside codegen*.c.
#ifndef NNC_CODEGEN_H
#define NNC_CODEGEN_H

#include <stdio.h>

#include "ir.h"

// EMIT_PLAN builds the module and plans its memory but neither optimizes
// nor writes anything (codegen_plan).
typedef enum EmitKind { EMIT_OBJ, EMIT_LLVM, EMIT_ASM, EMIT_PLAN } EmitKind;

// What the binary will allocate for training, in floats (see nnrt.h).
typedef struct CodegenPlan {
  int64_t ws_per_row;     // workspace per example of the batch
  int64_t ws_fixed;       // workspace independent of the batch
} CodegenPlan;

typedef struct CodegenOptions {
  EmitKind kind;
  const char *out_path;   // file to write; "-" writes text kinds to stdout
  int opt_level;          // 0..3: the new pass manager's default<O?> pipeline
  const char *out_path2;  // EMIT_OBJ: when set, the kernels are shared
                          // between out_path and this second object,
                          // compiled on two threads (link both)
  const char *cpu;        // target CPU (codegen_cpu_known); NULL: native
  bool no_row_groups;     // one kernel per value (no row groups), to compare
  bool no_opt_fusion;     // optimizer updates never fused into gradients
  bool profile;           // per-kernel cycle counters (printed after training)
  bool no_main;           // a library: no `main` (nnc --emit=lib)
  const char *model_symbol; // the NnrtModel table's name (NULL: nnc_model)
  const void *embed;      // bytes of a safetensors file to embed as
  size_t embed_len;       // `<model_symbol>_weights` (and `..._weights_len`)
  bool mpi;               // data parallel (nnc --mpi): gradients handed to
                          // nnrt_grad_ready / nnrt_grad_wait before the
                          // optimizer (never fused), main is nnrt_mpi_main
} CodegenOptions;

// Whether NAME is a --cpu choice ("native", "x86-64-v3", "skylake", ...),
// and the list of them for messages.
bool codegen_cpu_known(const char *name);
void codegen_cpu_list(FILE *out);
// The LLVM nnc is linked with.
void codegen_llvm_version(unsigned *major, unsigned *minor, unsigned *patch);

// Returns 0 on success; problems are reported through ctx->diag.
int codegen_emit(IrModule *m, Ctx *ctx, const CodegenOptions *o);

// Builds the module only to read its training memory plan (`--summary`).
int codegen_plan(IrModule *m, Ctx *ctx, CodegenPlan *plan);

#endif
