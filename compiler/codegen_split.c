// codegen_split.c — the finished module compiled as two object files on
// two threads.
//
// LLVM's optimization and instruction selection are nearly all of nnc's
// time (0.8 s for fashion_mlp, 1.8 s for LeNet), and nearly all of that is
// spent in the kernels, which are independent functions. When the driver
// links an executable (CodegenOptions.out_path2), the kernels are dealt out
// to two halves by size (instructions before optimization, largest first,
// each to the lighter half); the entry points, the optimizer and the model
// table stay in the first. The module is written as bitcode and read back
// into a second LLVM context (a context belongs to one thread), and each
// copy keeps its half: a kernel of the other half becomes a declaration
// (its entry was made external and hidden first, so the objects link), and
// what only the other half used is deleted. Each half is then optimized and
// emitted on its own thread with its own target machine.
//
// A kernel's functions are named kN.op (the entry the step calls), and
// kN.op.body and kN.op.task when it is split into tasks: the "kN." prefix
// keeps them together. Kernels were never inlined into their callers
// (noinline), so their code does not change; only interprocedural
// optimization across the halves is lost.
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>

#include "codegen_internal.h"

// One half: its module, where its object goes, and how it went.
typedef struct Half {
  LLVMContextRef lc; // the second half's own context, or NULL
  LLVMModuleRef mod;
  LLVMMemoryBufferRef bitcode; // the second half starts from this
  LLVMTargetMachineRef tm;
  const char *const *keep; // kernel prefixes ("k12.") this half keeps
  int nkeep;
  bool first; // also keeps everything that is no kernel
  int opt_level;
  const char *path;
  char err[512]; // empty when it went well
} Half;

// The length of a kernel function's "kN." prefix, or 0 for other names.
static size_t kernel_prefix(const char *name, size_t len) {
  if (len < 3 || name[0] != 'k' || !isdigit((unsigned char)name[1]))
    return 0;
  size_t i = 1;
  while (i < len && isdigit((unsigned char)name[i]))
    i++;
  return i < len && name[i] == '.' ? i + 1 : 0;
}

static bool is_helper(const char *name, size_t len) {
  return (len > 5 && !strcmp(name + len - 5, ".body")) ||
         (len > 5 && !strcmp(name + len - 5, ".task"));
}

// Whether half h keeps function fn.
static bool keeps(const Half *h, LLVMValueRef fn) {
  size_t len;
  const char *name = LLVMGetValueName2(fn, &len);
  size_t k = kernel_prefix(name, len);
  if (!k)
    return h->first;
  for (int i = 0; i < h->nkeep; i++)
    if (strlen(h->keep[i]) == k && !strncmp(h->keep[i], name, k))
      return true;
  return false;
}

static int64_t instructions(LLVMValueRef fn) {
  int64_t n = 0;
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(fn); b;
       b = LLVMGetNextBasicBlock(b))
    for (LLVMValueRef i = LLVMGetFirstInstruction(b); i;
         i = LLVMGetNextInstruction(i))
      n++;
  return n;
}

// Turns the definition of fn into a declaration of the same name, type and
// calling convention (the C API cannot delete just a body).
static void declare_only(LLVMModuleRef mod, LLVMValueRef fn) {
  size_t len;
  const char *old = LLVMGetValueName2(fn, &len);
  char *name = malloc(len + 1);
  if (!name)
    abort();
  memcpy(name, old, len);
  name[len] = 0;
  LLVMSetValueName2(fn, "", 0);
  LLVMValueRef decl = LLVMAddFunction(mod, name, LLVMGlobalGetValueType(fn));
  LLVMSetFunctionCallConv(decl, LLVMGetFunctionCallConv(fn));
  LLVMSetVisibility(decl, LLVMGetVisibility(fn));
  LLVMReplaceAllUsesWith(fn, decl);
  LLVMDeleteFunction(fn);
  free(name);
}

// Deletes a function or global, first pointing what still refers to it
// (only dead constants, or functions deleted next) at poison: LLVM keeps
// dead constants, and their uses, alive.
static void delete_value(LLVMValueRef v, bool is_fn) {
  LLVMReplaceAllUsesWith(v, LLVMGetPoison(LLVMTypeOf(v)));
  if (is_fn)
    LLVMDeleteFunction(v);
  else
    LLVMDeleteGlobal(v);
}

// Keeps h's half of its module. The first half declares the other half's
// kernel entries (its step calls them); both delete the other half's
// functions, and the second half everything that is no kernel (the entry
// points, the optimizer) and the exported model table.
static void prune(Half *h) {
  LLVMValueRef next;
  for (LLVMValueRef fn = LLVMGetFirstFunction(h->mod); fn && h->first;
       fn = next) {
    next = LLVMGetNextFunction(fn);
    size_t len;
    const char *name = LLVMGetValueName2(fn, &len);
    if (!LLVMIsDeclaration(fn) && !keeps(h, fn) && !is_helper(name, len))
      declare_only(h->mod, fn);
  }
  for (LLVMValueRef fn = LLVMGetFirstFunction(h->mod); fn; fn = next) {
    next = LLVMGetNextFunction(fn);
    if (!LLVMIsDeclaration(fn) && !keeps(h, fn))
      delete_value(fn, true);
  }
  for (LLVMValueRef g = LLVMGetFirstGlobal(h->mod); g && !h->first; g = next) {
    next = LLVMGetNextGlobal(g);
    if (LLVMGetLinkage(g) == LLVMExternalLinkage && !LLVMIsDeclaration(g))
      delete_value(g, false);
  }
}

// Prunes, verifies, optimizes and writes one half. Runs on its own thread:
// it touches only its context, and reports into h->err.
static void *compile_half(void *arg) {
  Half *h = arg;
  char *msg = NULL;
  if (h->bitcode) {
    h->lc = LLVMContextCreate();
    if (LLVMParseBitcodeInContext2(h->lc, h->bitcode, &h->mod)) {
      snprintf(h->err, sizeof h->err, "cannot read the module back");
      return NULL;
    }
  }
  prune(h);
  if (verify_optimize(h->mod, h->tm, h->opt_level, h->err, sizeof h->err))
    return NULL;
  LLVMMemoryBufferRef buf = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(h->tm, h->mod, LLVMObjectFile, &msg,
                                          &buf)) {
    snprintf(h->err, sizeof h->err, "code generation failed: %s", msg);
    LLVMDisposeMessage(msg);
    return NULL;
  }
  FILE *f = fopen(h->path, "wb");
  size_t n = LLVMGetBufferSize(buf);
  bool ok = f && fwrite(LLVMGetBufferStart(buf), 1, n, f) == n;
  if ((f && fclose(f)) || !ok)
    snprintf(h->err, sizeof h->err, "cannot write '%s'", h->path);
  LLVMDisposeMemoryBuffer(buf);
  return NULL;
}

typedef struct Group {
  char *prefix;
  int64_t size;
} Group;

static int by_size(const void *a, const void *b) {
  const Group *x = a, *y = b;
  return (x->size < y->size) - (x->size > y->size);
}

int split_emit(Cg *cg, const CodegenOptions *o, LLVMTargetMachineRef tm2) {
  // The kernels and their sizes; everything else weighs on the first half.
  int ng = 0, cap = 0;
  Group *g = NULL;
  int64_t load[2] = {0, 0};
  for (LLVMValueRef fn = LLVMGetFirstFunction(cg->mod); fn;
       fn = LLVMGetNextFunction(fn)) {
    if (LLVMIsDeclaration(fn))
      continue;
    size_t len;
    const char *name = LLVMGetValueName2(fn, &len);
    size_t k = kernel_prefix(name, len);
    int64_t n = instructions(fn);
    if (!k) {
      load[0] += n;
      continue;
    }
    int i = 0;
    while (i < ng &&
           !(strlen(g[i].prefix) == k && !strncmp(g[i].prefix, name, k)))
      i++;
    if (i == ng) {
      if (ng == cap) {
        Group *ng_ = arena_alloc(cg->arena, sizeof *g * (size_t)(2 * cap + 8));
        if (ng)
          memcpy(ng_, g, sizeof *g * (size_t)ng);
        g = ng_, cap = 2 * cap + 8;
      }
      g[ng++] = (Group){arena_strndup(cg->arena, name, k), 0};
    }
    g[i].size += n;
  }
  if (ng)
    qsort(g, (size_t)ng, sizeof *g, by_size);
  const char **keep[2];
  int nkeep[2] = {0, 0};
  for (int h = 0; h < 2; h++)
    keep[h] = arena_alloc(cg->arena, sizeof(char *) * (size_t)(ng + 1));
  for (int i = 0; i < ng; i++) {
    int h = load[1] < load[0];
    load[h] += g[i].size;
    keep[h][nkeep[h]++] = g[i].prefix;
  }
  // The second half's kernel entries are called from the first half.
  Half half1 = {.keep = keep[1], .nkeep = nkeep[1]};
  for (LLVMValueRef fn = LLVMGetFirstFunction(cg->mod); fn;
       fn = LLVMGetNextFunction(fn)) {
    size_t len;
    const char *name = LLVMGetValueName2(fn, &len);
    if (!LLVMIsDeclaration(fn) && keeps(&half1, fn) && !is_helper(name, len)) {
      LLVMSetLinkage(fn, LLVMExternalLinkage);
      LLVMSetVisibility(fn, LLVMHiddenVisibility);
    }
  }
  Half h[2] = {
      {.mod = cg->mod,
       .tm = cg->tm,
       .keep = keep[0],
       .nkeep = nkeep[0],
       .first = true,
       .opt_level = o->opt_level,
       .path = o->out_path},
      {.bitcode = LLVMWriteBitcodeToMemoryBuffer(cg->mod),
       .tm = tm2,
       .keep = keep[1],
       .nkeep = nkeep[1],
       .opt_level = o->opt_level,
       .path = o->out_path2},
  };
  pthread_t t;
  bool threaded = pthread_create(&t, NULL, compile_half, &h[1]) == 0;
  compile_half(&h[0]);
  if (threaded)
    pthread_join(t, NULL);
  else
    compile_half(&h[1]);
  LLVMDisposeMemoryBuffer(h[1].bitcode);
  if (h[1].mod)
    LLVMDisposeModule(h[1].mod);
  if (h[1].lc)
    LLVMContextDispose(h[1].lc);
  int rc = 0;
  for (int i = 0; i < 2; i++)
    if (h[i].err[0]) {
      diag_error(&cg->ctx->diag, (Loc){0}, "internal error: %s", h[i].err);
      rc = 1;
    }
  return rc;
}
