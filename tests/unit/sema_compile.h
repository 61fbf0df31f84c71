// sema_compile.h — compiles .nn source text through the real front end
// (stdlib, parse, sema) for the unit tests that evaluate programs in the
// interpreter (stdlib_grad_test.c, modes_test.c). Header-only: each test
// binary includes it once.
#ifndef NNC_TEST_SEMA_COMPILE_H
#define NNC_TEST_SEMA_COMPILE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "sema.h"

typedef struct Compiled {
  Arena arena;
  Ctx ctx;
  IrModule *m;
  char *messages;  // the diagnostics, for failure messages
  size_t nmessages;
} Compiled;

// Lowers `text` (as "test.nn") with the stdlib; fails the test on errors.
static inline IrModule *sema_compile(Compiled *c, const char *text) {
  memset(c, 0, sizeof *c);
  c->ctx.arena = &c->arena;
  c->ctx.diag.arena = &c->arena;
  c->ctx.diag.out = open_memstream(&c->messages, &c->nmessages);
  Program prog = {.main_path = "test.nn"};
  sema_load_stdlib(&c->ctx, &prog);
  Source *src = source_from_string(&c->ctx.diag, "test.nn", text);
  ptrvec_push(&c->arena, &prog.files, parse_source(&c->ctx, src));
  SemaResult r = sema_lower(&c->ctx, &prog);
  fflush(c->ctx.diag.out);
  cr_assert(r.module, "compile failed:\n%s", c->messages);
  return c->m = r.module;
}

static inline void compiled_free(Compiled *c) {
  fclose(c->ctx.diag.out);
  free(c->messages);
  arena_free(&c->arena);
}

#endif
