// common.c — arena, pointer vectors, source loading and diagnostics.
//
// Diagnostics print `file:line:col: error: message`, then the source line and
// a caret under the column. Nothing here exits: the driver reads
// diag.nerrors between phases and decides.
#include "common.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

// ---- arena ------------------------------------------------------------------
struct ArenaBlock {
  ArenaBlock *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void *arena_alloc(Arena *a, size_t size) {
  size = (size + 15) & ~(size_t)15;
  ArenaBlock *b = a->head;
  if (!b || b->used + size > b->cap) {
    size_t cap = size > (1u << 16) ? size : (1u << 16);
    b = calloc(1, sizeof(ArenaBlock) + cap);
    if (!b) {
      fputs("nnc: out of memory\n", stderr);
      abort();
    }
    b->cap = cap;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->data + b->used;
  b->used += size;
  return p;  // calloc'd blocks are never reused, so this is zero
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) {
  return arena_strndup(a, s, strlen(s));
}

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

void arena_free(Arena *a) {
  for (ArenaBlock *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  a->head = NULL;
}

void ptrvec_push(Arena *a, PtrVec *v, void *p) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    void **item = arena_alloc(a, sizeof(void *) * (size_t)cap);
    if (v->n)
      memcpy(item, v->item, sizeof(void *) * (size_t)v->n);
    v->item = item;
    v->cap = cap;
  }
  v->item[v->n++] = p;
}

// ---- sources ----------------------------------------------------------------
// The lexer may look a few bytes past the end; pad with NULs.
enum { SOURCE_PAD = 16 };

Source *source_from_string(Diag *d, const char *path, const char *text) {
  Source *s = arena_alloc(d->arena, sizeof *s);
  size_t n = strlen(text);
  char *buf = arena_alloc(d->arena, n + SOURCE_PAD);
  memcpy(buf, text, n);
  s->path = arena_strdup(d->arena, path);
  s->text = buf;
  s->len = n;
  ptrvec_push(d->arena, &d->sources, s);
  return s;
}

Source *source_load(Diag *d, const char *path, Loc from) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    diag_error(d, from, "cannot read '%s': %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf) {
    diag_error(d, from, "cannot read '%s': out of memory", path);
    return NULL;
  }
  Source *s = arena_alloc(d->arena, sizeof *s);
  char *text = arena_alloc(d->arena, n + SOURCE_PAD);
  memcpy(text, buf, n);
  free(buf);
  s->path = arena_strdup(d->arena, path);
  s->text = text;
  s->len = n;
  ptrvec_push(d->arena, &d->sources, s);
  return s;
}

// ---- diagnostics ------------------------------------------------------------
static const Source *find_source(Diag *d, const char *path) {
  for (int i = d->sources.n - 1; i >= 0; i--) {
    const Source *s = d->sources.item[i];
    if (path && strcmp(s->path, path) == 0)
      return s;
  }
  return NULL;
}

// Prints line `loc.line` of its source and a caret under `loc.col`.
static void print_caret(Diag *d, Loc loc) {
  const Source *s = find_source(d, loc.file);
  if (!s || loc.line < 1)
    return;
  const char *p = s->text, *end = s->text + s->len;
  int line = 1;
  if (d->caret_src == s && d->caret_line <= loc.line)
    p = d->caret_at, line = d->caret_line;
  for (; line < loc.line && p < end; p++)
    if (*p == '\n')
      line++;
  d->caret_src = s, d->caret_line = line, d->caret_at = p;
  const char *eol = p;
  while (eol < end && *eol != '\n' && *eol != '\r')
    eol++;
  fputs("    ", d->out);
  for (const char *q = p; q < eol; q++)  // control bytes would garble the caret
    fputc(*q == '\t' ? ' ' : ((unsigned char)*q < 32 ? '?' : *q), d->out);
  fputs("\n    ", d->out);
  for (int c = 1; c < loc.col; c++)
    fputc(' ', d->out);
  fputs("^\n", d->out);
}

void diag_verror(Diag *d, Loc loc, const char *kind, const char *fmt,
                 va_list ap) {
  FILE *out = d->out ? d->out : stderr;
  if (d->quiet)
    return;
  if (loc.file)
    fprintf(out, "%s:%d:%d: %s: ", loc.file, loc.line, loc.col, kind);
  else
    fprintf(out, "nnc: %s: ", kind);
  vfprintf(out, fmt, ap);
  fputc('\n', out);
  if (!d->out)
    d->out = stderr;
  if (loc.file)
    print_caret(d, loc);
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, "error", fmt, ap);
  va_end(ap);
  d->nerrors++;
  d->last_error = loc;
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, "note", fmt, ap);
  va_end(ap);
}
