// sema.h — semantic analysis and lowering: ASTs -> IrModule.
//
// Resolves names across the user's files and the stdlib, instantiates layers
// and functions by inlining each call (so shape variables such as `n` bind
// per call, and each layer instance gets its own parameters, named
// "dense_1.W"), infers and checks every shape with the rules of prims.def,
// and lowers the model, its loss, optimizer and training setup into the
// graph IR. This is the only phase that reports user errors about meaning;
// an expression that failed becomes poison and stays silent afterwards.
#ifndef NNC_SEMA_H
#define NNC_SEMA_H

#include "ast.h"
#include "ir.h"

// Declarations visible to a compilation: stdlib first, then the user's files
// (a later declaration of the same name shadows an earlier one).
typedef struct Program {
  PtrVec files;            // AstFile*, in load order
  const char *main_path;   // the file named on the command line
  const char *train_name;  // nnc --train MODEL: that model's train block
                           // (NULL: the file's first train block)
} Program;

// Parses the embedded or on-disk stdlib (ctx->stdlib_dir) into prog.
void sema_load_stdlib(Ctx *ctx, Program *prog);
// Parses `path` and, recursively, its imports (relative to the importing file).
void sema_load_file(Ctx *ctx, Program *prog, const char *path, Loc from);

// One row of `nnc --summary`: a layer instance of the model.
typedef struct LayerInfo {
  const char *name;        // "dense_1"
  Shape shape;             // output shape per example
  int64_t nparams;         // parameters created by this instance itself
  int depth;               // nesting depth (0 = called by the model)
} LayerInfo;

typedef struct SemaResult {
  IrModule *module;        // NULL when errors were reported
  PtrVec layers;           // LayerInfo*, in call order
} SemaResult;

// Lowers the program's training setup (its first `train` block; without one,
// its last `model`) into an IrModule. Errors go to ctx->diag.
SemaResult sema_lower(Ctx *ctx, Program *prog);

#endif
