// codegen_loop.c — placeholder
#include "codegen_internal.h"
void emit_LOOP(Kern *k, const IrValue *v) { (void)k, (void)v; }
int64_t loop_scratch(const IrValue *v) { (void)v; return 0; }
