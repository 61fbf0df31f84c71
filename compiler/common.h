// common.h — what every phase of nnc shares: source locations, the
// per-compilation arena, diagnostics and the compilation context.
//
// Every phase allocates from one Arena (freed once by the driver), reports
// problems through Diag (never exits), and reads its options from Ctx.
#ifndef NNC_COMMON_H
#define NNC_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// A position in a source file, 1-based; col counts display cells.
typedef struct Loc {
  const char *file;  // path as given on the command line (or "<stdlib>/x.nn")
  int line, col;
} Loc;

// ---- arena: bump allocation, freed all at once --------------------------
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;  // newest block first
} Arena;

void *arena_alloc(Arena *a, size_t size);  // zeroed, 16-byte aligned
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);

// A growable array of pointers living in an arena (old storage is abandoned).
typedef struct PtrVec {
  void **item;
  int n, cap;
} PtrVec;
void ptrvec_push(Arena *a, PtrVec *v, void *p);

// ---- sources and diagnostics ----------------------------------------------
// A loaded source file; text is NUL-terminated and padded (see lex.re).
typedef struct Source {
  const char *path;  // as shown in diagnostics
  const char *text;
  size_t len;
} Source;

typedef struct Diag {
  Arena *arena;
  FILE *out;         // where messages go (stderr; tests use a memstream)
  PtrVec sources;    // Source*, to print the offending line under a message
  int nerrors;
  Loc last_error;    // where the latest error pointed
  // Where the previous caret's line starts, so the next message of the same
  // source (usually further down) scans on from there, not from the top.
  const Source *caret_src;
  int caret_line;
  const char *caret_at;
  bool quiet;        // count errors without printing them (the fuzz target
                     // prints only some inputs' messages, for speed)
} Diag;

// Reports "file:line:col: error: message", the source line and a caret.
void diag_error(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// A "note:" line in the same format, attached to the previous error.
void diag_note(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, Loc loc, const char *kind, const char *fmt,
                 va_list ap);

// Reads a whole file into the arena, NUL-padded, and registers it with diag.
// Returns NULL (after reporting at `from`) when the file cannot be read.
Source *source_load(Diag *d, const char *path, Loc from);
// Registers in-memory text (the embedded stdlib, tests).
Source *source_from_string(Diag *d, const char *path, const char *text);

// ---- the compilation context ------------------------------------------------
typedef struct Ctx {
  Arena *arena;
  Diag diag;
  const char *stdlib_dir;  // folder holding stdlib/*.nn, or NULL: use embedded
  int opt_level;           // 0..3 (-O), default 3
} Ctx;

#ifndef unreachable
#define unreachable() __builtin_unreachable()
#endif

#endif
