// fuzz_frontend.c — libFuzzer target over nnc's front end: the bytes are a
// .nn source; it is lexed, parsed and lowered by sema against the embedded
// stdlib, and a program that lowers cleanly is also differentiated and
// simplified (grad, opt, weight layout, fusion). Diagnostics go to
// /dev/null: the target checks only that no input crashes, hangs or trips
// ASan/UBSan. Imports are not followed (the fuzzer must not read the
// machine's files); `import` lines are still parsed. The stdlib is parsed
// once and its ASTs shared by every run (sema only reads ASTs), which makes
// a run about 40 times cheaper.
//
// Built by scripts/fuzz.sh (clang-19, -fsanitize=fuzzer,address,undefined).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "grad.h"
#include "opt.h"
#include "sema.h"

enum { SOURCE_PAD = 16 };  // as compiler/common.c: the lexer reads ahead

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// The stdlib's files and sources, parsed once (the harness's only state).
static Arena stdlib_arena;
static Program stdlib_prog;
static Diag stdlib_diag;
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  if (!(devnull = fopen("/dev/null", "w")))
    abort();
  Ctx ctx = {.arena = &stdlib_arena, .opt_level = 3};
  ctx.diag.arena = &stdlib_arena;
  ctx.diag.out = stderr;
  sema_load_stdlib(&ctx, &stdlib_prog);
  if (ctx.diag.nerrors)
    abort();
  stdlib_diag = ctx.diag;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Arena arena = {0};
  Ctx ctx = {.arena = &arena, .opt_level = 3};
  ctx.diag.arena = &arena;
  ctx.diag.out = devnull;
  // Printing messages (the caret lines) costs more than compiling; one input
  // in four, chosen by its bytes so a crash reproduces, prints them.
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; i++)
    h = (h ^ data[i]) * 16777619u;
  ctx.diag.quiet = h % 4 != 0;
  Program prog = {.main_path = "fuzz.nn"};
  for (int i = 0; i < stdlib_prog.files.n; i++)
    ptrvec_push(&arena, &prog.files, stdlib_prog.files.item[i]);
  for (int i = 0; i < stdlib_diag.sources.n; i++)
    ptrvec_push(&arena, &ctx.diag.sources, stdlib_diag.sources.item[i]);
  // The input as a Source, NULs and all (source_from_string would stop at
  // the first NUL; source_load keeps them, and so does this).
  Source *src = arena_alloc(&arena, sizeof *src);
  char *text = arena_alloc(&arena, size + SOURCE_PAD);
  if (size)
    memcpy(text, data, size);
  src->path = "fuzz.nn";
  src->text = text;
  src->len = size;
  ptrvec_push(&arena, &ctx.diag.sources, src);
  ptrvec_push(&arena, &prog.files, parse_source(&ctx, src));
  if (!ctx.diag.nerrors) {
    SemaResult r = sema_lower(&ctx, &prog);
    IrModule *m = r.module;
    if (!ctx.diag.nerrors && m && m->nsteps && m->steps[0].objective &&
        m->steps[0].opt.fn) {
      opt_simplify(m, &ctx);
      grad_emit(m, &ctx);
      opt_simplify(m, &ctx);
      if (!ctx.diag.nerrors) {
        weight_layout(m);
        kernel_fuse(m);
      }
    }
  }
  arena_free(&arena);
  return 0;
}
