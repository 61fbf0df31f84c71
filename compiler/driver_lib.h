// driver_lib.h — the driver's helpers for `--emit=lib` and for running
// cc and ar (driver_lib.c).
#ifndef NNC_DRIVER_LIB_H
#define NNC_DRIVER_LIB_H

#include "ir.h"

// Runs argv (argv[0] looked up in PATH) with stdin from stdin_path when not
// NULL; 0 when it exits with 0, else 1 after saying so on stderr.
int driver_spawn(const char *const *argv, const char *stdin_path);
// The C identifier prefix of a library output: "dir/libmodel.a" -> "model".
const char *lib_prefix(Arena *a, const char *output);
// Writes the header beside output and archives obj (compiled with
// model_symbol "<prefix>_model"), the glue and the runtime into output.
int lib_emit(Arena *a, const IrModule *m, const char *input,
             const char *output, const char *obj, const char *runtime,
             bool embedded, const char *cc_flags);

#endif
