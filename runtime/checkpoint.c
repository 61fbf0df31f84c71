// checkpoint.c — parameters to and from safetensors files.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON header
// (padded with spaces so the data starts at a multiple of 8), then the raw
// little-endian data. The header maps each tensor name to its dtype, shape and
// [begin, end) byte offsets into the data; "__metadata__" holds string pairs
// (we write "model" and "epoch", and for training checkpoints "step" and
// "epoch_examples"). A training checkpoint also holds the optimizer state:
// state k of parameter P is the tensor "optimizer.<k>.<P>", shaped like P,
// after all the parameters. Saving writes FILE.tmp in the same folder,
// flushes and fsyncs it, then renames it over FILE (nnrt_write_atomic), so
// FILE is always either the old or the new checkpoint, never half of one.
// Loading reads the header with a small strict JSON parser whose every read
// is bounds-checked against the header length (itself checked against the
// file size), so a malformed or hostile file gives a message naming the file
// and never a crash. Every model parameter must be present, and every
// tensor must be one (or optimizer state, "optimizer.*"); tensors must not
// share bytes, and every value read must be finite. The optimizer state is read only when asked
// for, and only when it is complete; otherwise the caller is told why not
// and the state buffer is left as it was.
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnrt_internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "checkpoints store floats in host order; add byte swapping");

enum { MAX_HEADER = 100 << 20, MAX_DIMS = 16, MAX_DEPTH = 64 };

// ---- saving -----------------------------------------------------------------
typedef struct Buf {
  char *p;          // nnrt_alloc'd text, NUL-terminated
  size_t len, cap;
  int oom;          // an allocation failed; the text is incomplete
} Buf;

static void buf_add(Buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void buf_add(Buf *b, const char *fmt, ...) {
  for (int tries = 0; !b->oom && tries < 2; tries++) {
    va_list ap;
    va_start(ap, fmt);
    int n = b->p ? vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap) : -2;
    va_end(ap);
    if (n >= 0 && (size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t need = b->len + (n > 0 ? (size_t)n : 0) + 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
      cap *= 2;
    char *np = nnrt_alloc(cap);
    if (!np) {
      b->oom = 1;
      return;
    }
    if (b->p)
      memcpy(np, b->p, b->len + 1);
    nnrt_free(b->p);
    b->p = np, b->cap = cap;
  }
}

static void buf_json_chars(Buf *b, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      buf_add(b, "\\%c", c);
    else if (c < 0x20)
      buf_add(b, "\\u%04x", c);
    else
      buf_add(b, "%c", c);
  }
}

static void buf_json_string(Buf *b, const char *s) {
  buf_add(b, "\"");
  buf_json_chars(b, s);
  buf_add(b, "\"");
}

// One tensor entry shaped like parameter p, named prefix + p->name.
static void buf_tensor(Buf *b, const char *prefix, const NnrtParamInfo *p,
                       size_t es, int64_t *off) {
  buf_add(b, ",\"%s", prefix);
  buf_json_chars(b, p->name);
  buf_add(b, "\":{\"dtype\":\"%s\",\"shape\":[", es == 8 ? "F64" : "F32");
  for (int64_t d = 0; d < p->rank; d++)
    buf_add(b, "%s%lld", d ? "," : "", (long long)p->dim[d]);
  int64_t bytes = p->numel * (int64_t)es;
  buf_add(b, "],\"data_offsets\":[%lld,%lld]}", (long long)*off,
          (long long)(*off + bytes));
  *off += bytes;
}

static void build_header(Buf *b, const NnrtModel *m, int with_state,
                         const NnrtTrainPos *pos) {
  buf_add(b, "{\"__metadata__\":{\"format\":\"pt\",\"model\":");
  buf_json_string(b, m->name ? m->name : "");
  buf_add(b, ",\"epoch\":\"%lld\"", (long long)pos->epoch);
  if (pos->step >= 0)
    buf_add(b, ",\"step\":\"%lld\"", (long long)pos->step);
  if (pos->examples >= 0)
    buf_add(b, ",\"epoch_examples\":\"%lld\"", (long long)pos->examples);
  buf_add(b, "}");
  int64_t off = 0;
  for (int64_t i = 0; i < m->nparams; i++)
    buf_tensor(b, "", &m->params[i], nnrt_elt(m), &off);
  for (int64_t k = 0; with_state && k < m->nstate; k++) {
    char prefix[48];
    snprintf(prefix, sizeof prefix, "optimizer.%lld.", (long long)k);
    for (int64_t i = 0; i < m->nparams; i++)
      if (!m->params[i].buffer)  // buffers have no optimizer state
        buf_tensor(b, prefix, &m->params[i], nnrt_elt(m), &off);
  }
  buf_add(b, "}");
  while (!b->oom && b->len % 8)
    buf_add(b, " ");
}

// A test hook for tests/e2e/crash_safety.sh: with NNRT_TEST_KILL_AT=N in
// the environment, the N-th point of a save kills the process with SIGKILL.
// The points are every 16 bytes written (the data goes through a FILE whose
// writes are cut into 16-byte pieces), then the flush, the fsync, the close, the rename and
// the folder's fsync. Without it, saving takes the plain path.
typedef struct KillPoints {
  int fd;
  int64_t left;             // points until the kill; <= 0: never
} KillPoints;

static void kill_point(KillPoints *k) {
  if (k->left > 0 && --k->left == 0)
    raise(SIGKILL);
}

static ssize_t kill_write(void *ctx, const char *buf, size_t n) {
  KillPoints *k = ctx;
  size_t done = 0;
  while (done < n) {
    if (done % 16 == 0)
      kill_point(k);
    size_t chunk = n - done < 16 - done % 16 ? n - done : 16 - done % 16;
    ssize_t w = write(k->fd, buf + done, chunk);
    if (w < 0)
      return done ? (ssize_t)done : -1;
    done += (size_t)w;
  }
  return (ssize_t)n;
}

// fn's output through the kill points into f's file; 0 or -1 with errno.
static int write_with_kill_points(FILE *f, NnrtWriteFn *fn, void *ctx,
                                  KillPoints *k) {
  k->fd = fileno(f);
  FILE *g = fopencookie(k, "w", (cookie_io_functions_t){.write = kill_write});
  if (!g)
    return -1;
  int rc = fn(g, ctx);
  if (fclose(g) && !rc)
    rc = -1;
  return rc;
}

int nnrt_write_atomic(const char *path, NnrtWriteFn *fn, void *ctx,
                      NnrtErr *err) {
  char tmp[4096 + 8];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return nnrt_fail(err, "%s: path too long", path);
  const char *hook = getenv("NNRT_TEST_KILL_AT");
  KillPoints k = {-1, hook ? atoll(hook) : 0};
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return nnrt_fail(err, "%s: cannot write (%s)", tmp, strerror(errno));
  errno = 0;
  int rc = k.left > 0 ? write_with_kill_points(f, fn, ctx, &k) : fn(f, ctx);
  if (!rc && fflush(f))
    rc = -1;
  kill_point(&k);
  if (!rc && fsync(fileno(f)))
    rc = -1;
  kill_point(&k);
  int saved = errno ? errno : EIO;
  if (fclose(f) && !rc)
    rc = -1, saved = errno;
  kill_point(&k);
  if (!rc && rename(tmp, path))
    rc = -1, saved = errno;
  if (rc) {
    remove(tmp);
    int kept = access(path, F_OK) == 0;
    return nnrt_fail(err, "%s: cannot write (%s)%s", path, strerror(saved),
                     kept ? "; the file there is unchanged" : "");
  }
  kill_point(&k);
  // Make the rename itself durable (best effort: some file systems refuse).
  char dir[sizeof tmp];
  strcpy(dir, path);
  int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  kill_point(&k);
  return 0;
}

typedef struct SaveCtx {
  const NnrtModel *m;
  const float *params, *state;  // state NULL: parameters only
  const Buf *h;
} SaveCtx;

// Parameter p's floats at base (params or one optimizer state), in the
// order of its declared shape.
static int write_param(FILE *f, const NnrtParamInfo *p, const float *base,
                       size_t es) {
  const void *src = nnrt_elt_ptr(es, base, p->offset);
  if (!p->transposed)
    return fwrite(src, es, (size_t)p->numel, f) == (size_t)p->numel ? 0 : -1;
  for (int64_t i = 0; i < p->numel; i++)
    if (fwrite(nnrt_elt_ptr(es, src, nnrt_param_at(p, i)), es, 1, f) != 1)
      return -1;
  return 0;
}

static int write_all(FILE *f, void *ctx) {
  const SaveCtx *c = ctx;
  const NnrtModel *m = c->m;
  uint8_t len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (uint8_t)((uint64_t)c->h->len >> (8 * i));
  if (fwrite(len, 1, 8, f) != 8 ||
      fwrite(c->h->p, 1, c->h->len, f) != c->h->len)
    return -1;
  for (int64_t i = 0; i < m->nparams; i++)
    if (write_param(f, &m->params[i], c->params, nnrt_elt(m)))
      return -1;
  for (int64_t k = 0; c->state && k < m->nstate; k++)
    for (int64_t i = 0; i < m->nparams; i++)
      if (!m->params[i].buffer &&
          write_param(f, &m->params[i],
                      nnrt_elt_ptr(nnrt_elt(m), c->state, k * m->param_numel),
                      nnrt_elt(m)))
        return -1;
  return 0;
}

int nnrt_checkpoint_write(const char *path, const NnrtModel *m,
                          const float *params, const float *state,
                          const NnrtTrainPos *pos, NnrtErr *err) {
  Buf h = {0};
  build_header(&h, m, state != NULL, pos);
  if (h.oom) {
    nnrt_free(h.p);
    return nnrt_fail(err, "%s: out of memory writing the checkpoint", path);
  }
  SaveCtx c = {m, params, state, &h};
  int rc = nnrt_write_atomic(path, write_all, &c, err);
  nnrt_free(h.p);
  return rc;
}

int nnrt_checkpoint_save(const char *path, const NnrtModel *m,
                         const float *params, int64_t epoch, NnrtErr *err) {
  NnrtTrainPos pos = {epoch, -1, -1};
  return nnrt_checkpoint_write(path, m, params, NULL, &pos, err);
}

// ---- loading: a strict JSON reader over [s, end) ----------------------------
typedef struct Json {
  const char *s, *p, *end;  // header text, cursor, one past the last byte
  const char *path;         // for messages
  NnrtErr *err;
  char *scratch;            // decoded strings (as long as the header)
} Json;

typedef struct Entry {      // what the file says about one model parameter
  int found;
  char dtype[16];
  int rank;
  int64_t dim[MAX_DIMS];
  uint64_t begin, end;
} Entry;

static int bad(Json *j, const char *what) {
  return nnrt_fail(j->err, "%s: malformed safetensors header at byte %lld: %s",
                   j->path, (long long)(8 + (j->p - j->s)), what);
}

static void skip_ws(Json *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int expect(Json *j, char c) {
  skip_ws(j);
  if (j->p >= j->end || *j->p != c) {
    char what[32];
    snprintf(what, sizeof what, "expected '%c'", c);
    return bad(j, what);
  }
  j->p++;
  return 0;
}

static int peek(Json *j, char c) {
  skip_ws(j);
  return j->p < j->end && *j->p == c;
}

static int hex4(Json *j, unsigned *v) {
  *v = 0;
  for (int i = 0; i < 4; i++, j->p++) {
    if (j->p >= j->end)
      return bad(j, "unfinished \\u escape");
    char c = *j->p;
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0)
      return bad(j, "bad \\u escape");
    *v = *v * 16 + (unsigned)d;
  }
  return 0;
}

// A string into j->scratch (decoded, NUL-terminated; never longer than raw).
static int string(Json *j, const char **out) {
  if (expect(j, '"'))
    return -1;
  char *o = j->scratch;
  for (;;) {
    if (j->p >= j->end)
      return bad(j, "unterminated string");
    unsigned char c = (unsigned char)*j->p++;
    if (c == '"')
      break;
    if (c < 0x20)
      return bad(j, "control character in a string");
    if (c != '\\') {
      *o++ = (char)c;
      continue;
    }
    if (j->p >= j->end)
      return bad(j, "unterminated string");
    char e = *j->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      *o++ = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      continue;
    }
    if (e != 'u')
      return bad(j, "bad escape in a string");
    unsigned u, lo;
    if (hex4(j, &u))
      return -1;
    if (u >= 0xD800 && u < 0xDC00) {  // a surrogate pair
      if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
        return bad(j, "unpaired surrogate");
      j->p += 2;
      if (hex4(j, &lo))
        return -1;
      if (lo < 0xDC00 || lo > 0xDFFF)
        return bad(j, "unpaired surrogate");
      u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
    } else if (u >= 0xDC00 && u <= 0xDFFF) {
      return bad(j, "unpaired surrogate");
    }
    if (u == 0)
      return bad(j, "NUL character in a string");
    // UTF-8 of u takes at most as many bytes as its 6- or 12-byte escape.
    if (u < 0x80) {
      *o++ = (char)u;
    } else if (u < 0x800) {
      *o++ = (char)(0xC0 | u >> 6), *o++ = (char)(0x80 | (u & 0x3F));
    } else if (u < 0x10000) {
      *o++ = (char)(0xE0 | u >> 12), *o++ = (char)(0x80 | (u >> 6 & 0x3F));
      *o++ = (char)(0x80 | (u & 0x3F));
    } else {
      *o++ = (char)(0xF0 | u >> 18), *o++ = (char)(0x80 | (u >> 12 & 0x3F));
      *o++ = (char)(0x80 | (u >> 6 & 0x3F)), *o++ = (char)(0x80 | (u & 0x3F));
    }
  }
  *o = '\0';
  *out = j->scratch;
  return 0;
}

static int is_digit(Json *j) {
  return j->p < j->end && *j->p >= '0' && *j->p <= '9';
}

// A non-negative integer below 2^63 (sizes and offsets).
static int uinteger(Json *j, uint64_t *v) {
  skip_ws(j);
  if (!is_digit(j))
    return bad(j, "expected a non-negative integer");
  *v = 0;
  int leading_zero = *j->p == '0';
  while (is_digit(j)) {
    if (*v > (UINT64_C(1) << 62) / 5)  // *10 would pass 2^63
      return bad(j, "integer too large");
    *v = *v * 10 + (uint64_t)(*j->p++ - '0');
  }
  if (leading_zero && *v != 0)
    return bad(j, "leading zero in a number");
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    return bad(j, "expected an integer");
  return 0;
}

static int skip_value(Json *j, int depth);

static int skip_number(Json *j) {
  if (j->p < j->end && *j->p == '-')
    j->p++;
  if (!is_digit(j))
    return bad(j, "expected a value");
  while (is_digit(j))
    j->p++;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (!is_digit(j))
      return bad(j, "bad number");
    while (is_digit(j))
      j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
      j->p++;
    if (!is_digit(j))
      return bad(j, "bad number");
    while (is_digit(j))
      j->p++;
  }
  return 0;
}

// Any value: checked for syntax, then ignored.
static int skip_value(Json *j, int depth) {
  if (depth > MAX_DEPTH)
    return bad(j, "nested too deeply");
  skip_ws(j);
  if (j->p >= j->end)
    return bad(j, "expected a value");
  const char *s;
  char c = *j->p;
  if (c == '"')
    return string(j, &s);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    if (peek(j, close))
      return j->p++, 0;
    do {
      if (c == '{' && (string(j, &s) || expect(j, ':')))
        return -1;
      if (skip_value(j, depth + 1))
        return -1;
    } while (peek(j, ',') && j->p++);
    return expect(j, close);
  }
  static const char *const words[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(words[i]);
    if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, words[i], n))
      return j->p += n, 0;
  }
  return skip_number(j);
}

// A metadata value that should be a whole number in [0, 2^60]; -1
// otherwise (the bound leaves the run room to count on without overflow).
static int64_t meta_number(const char *s) {
  char *stop;
  errno = 0;
  long long v = strtoll(s, &stop, 10);
  return *s >= '0' && *s <= '9' && !*stop && errno != ERANGE &&
                 v <= (INT64_C(1) << 60)
             ? v
             : -1;
}

static int metadata(Json *j, NnrtTrainPos *pos) {
  if (expect(j, '{'))
    return -1;
  if (peek(j, '}'))
    return j->p++, 0;
  do {
    const char *s;
    if (string(j, &s))
      return -1;
    int64_t *field = !strcmp(s, "epoch")            ? &pos->epoch
                     : !strcmp(s, "step")           ? &pos->step
                     : !strcmp(s, "epoch_examples") ? &pos->examples
                                                    : NULL;
    if (expect(j, ':') || string(j, &s))
      return -1;
    if (field)
      *field = meta_number(s);
  } while (peek(j, ',') && j->p++);
  return expect(j, '}');
}

static int tensor(Json *j, Entry *e) {
  int has_dtype = 0, has_shape = 0, has_offsets = 0;
  if (expect(j, '{'))
    return -1;
  if (!peek(j, '}')) {
    do {
      const char *key;
      if (string(j, &key))
        return -1;
      char k = !strcmp(key, "dtype")          ? 'd'
               : !strcmp(key, "shape")        ? 's'
               : !strcmp(key, "data_offsets") ? 'o'
                                              : 0;
      if (expect(j, ':'))
        return -1;
      if (k == 'd') {
        const char *s;
        if (string(j, &s))
          return -1;
        snprintf(e->dtype, sizeof e->dtype, "%s", s);
        has_dtype = 1;
      } else if (k == 's') {
        if (expect(j, '['))
          return -1;
        e->rank = 0;
        if (!peek(j, ']')) {
          do {
            uint64_t v;
            if (e->rank == MAX_DIMS)
              return bad(j, "too many dimensions");
            if (uinteger(j, &v))
              return -1;
            e->dim[e->rank++] = (int64_t)v;
          } while (peek(j, ',') && j->p++);
        }
        if (expect(j, ']'))
          return -1;
        has_shape = 1;
      } else if (k == 'o') {
        if (expect(j, '[') || uinteger(j, &e->begin) || expect(j, ',') ||
            uinteger(j, &e->end) || expect(j, ']'))
          return -1;
        has_offsets = 1;
      } else if (skip_value(j, 1)) {
        return -1;
      }
    } while (peek(j, ',') && j->p++);
  }
  if (expect(j, '}'))
    return -1;
  if (!has_dtype || !has_shape || !has_offsets)
    return bad(j, !has_dtype ? "tensor without \"dtype\""
                  : !has_shape ? "tensor without \"shape\""
                               : "tensor without \"data_offsets\"");
  return 0;
}

// What the loader looks for: the parameters (found[0, nparams)) and, when
// the caller wants the optimizer state, state k of parameter i at
// found[nparams + k * nparams + i].
typedef struct Want {
  const NnrtModel *m;
  int64_t nstate;           // states looked for; 0 when not asked
  int stray;                // "optimizer.<k>.<P>" with k >= nstate was seen
  char extra[256];          // the first tensor that is neither a parameter
                            // nor optimizer state, or ""
} Want;

// The index of the model parameter called `name`, or -1.
static int64_t param_index(const NnrtModel *m, const char *name) {
  for (int64_t i = 0; i < m->nparams; i++)
    if (!strcmp(m->params[i].name, name))
      return i;
  return -1;
}

// The entry for tensor `key`, or NULL for a tensor the loader ignores.
static Entry *entry_for(Want *w, Entry *found, const char *key) {
  const NnrtModel *m = w->m;
  int64_t i = param_index(m, key);
  if (i >= 0)
    return &found[i];
  static const char prefix[] = "optimizer.";
  if (strncmp(key, prefix, sizeof prefix - 1))
    return NULL;
  const char *s = key + sizeof prefix - 1;
  int64_t k = 0;
  if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
    return NULL;
  for (; *s >= '0' && *s <= '9'; s++)
    if ((k = k * 10 + (*s - '0')) > 1000000000)
      return NULL;
  if (*s != '.' || (i = param_index(m, s + 1)) < 0)
    return NULL;
  if (k >= w->nstate || m->params[i].buffer) {
    w->stray = 1;
    return NULL;
  }
  return &found[m->nparams + k * m->nparams + i];
}

static int header(Json *j, Want *w, Entry *found, NnrtTrainPos *pos) {
  if (expect(j, '{'))
    return -1;
  if (!peek(j, '}')) {
    do {
      const char *key;
      if (string(j, &key))
        return -1;
      if (expect(j, ':'))
        return -1;
      if (!strcmp(key, "__metadata__")) {
        if (metadata(j, pos))
          return -1;
        continue;
      }
      Entry tmp = {0}, *e = entry_for(w, found, key);
      if (!e && strncmp(key, "optimizer.", 10) && !w->extra[0])
        snprintf(w->extra, sizeof w->extra, "%s", key);
      if (!e)
        e = &tmp;
      if (e->found)
        return nnrt_fail(j->err, "%s: tensor '%s' appears twice", j->path,
                         key);
      if (tensor(j, e))
        return -1;
      e->found = 1;
    } while (peek(j, ',') && j->p++);
  }
  if (expect(j, '}'))
    return -1;
  skip_ws(j);  // the padding
  if (j->p != j->end)
    return bad(j, "text after the header object");
  return 0;
}

static void shape_str(char *buf, size_t cap, int rank, const int64_t *dim) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "",
                          (long long)dim[i]);
  if (n < cap)
    snprintf(buf + n, cap - n, "]");
}

// Checks the entry of a tensor shaped like p, called prefix + p->name.
static int check(const char *path, const char *prefix, const NnrtParamInfo *p,
                 const Entry *e, uint64_t data_size, size_t es, NnrtErr *err) {
  const char *name = p->name;
  if (!e->found)
    return nnrt_fail(err, "%s: missing tensor '%s%s'", path, prefix, name);
  const char *want_dt = es == 8 ? "F64" : "F32";
  if (strcmp(e->dtype, want_dt))
    return nnrt_fail(err, "%s: tensor '%s%s' has dtype %s; the model expects "
                     "%s%s", path, prefix, name, e->dtype, want_dt,
                     !strcmp(e->dtype, "F32") || !strcmp(e->dtype, "F64")
                         ? es == 8 ? " (a checkpoint of an f32 model?)"
                                   : " (a checkpoint of an f64 model?)"
                         : "");
  int same = e->rank == p->rank;
  for (int d = 0; same && d < e->rank; d++)
    same = e->dim[d] == p->dim[d];
  if (!same) {
    char have[256], want[256];
    shape_str(have, sizeof have, e->rank, e->dim);
    shape_str(want, sizeof want, (int)p->rank, p->dim);
    return nnrt_fail(err, "%s: tensor '%s%s' has shape %s; the model expects "
                     "%s", path, prefix, name, have, want);
  }
  if (e->begin > e->end || e->end > data_size)
    return nnrt_fail(err, "%s: tensor '%s%s' has data offsets [%llu, %llu] "
                     "outside the %llu bytes of data", path, prefix, name,
                     (unsigned long long)e->begin, (unsigned long long)e->end,
                     (unsigned long long)data_size);
  if (e->end - e->begin != (uint64_t)p->numel * es)
    return nnrt_fail(err, "%s: tensor '%s%s' has %llu bytes of data; its "
                     "shape needs %llu", path, prefix, name,
                     (unsigned long long)(e->end - e->begin),
                     (unsigned long long)p->numel * es);
  return 0;
}

// Reads the tensor of entry e into parameter p's place at base.
static int read_tensor(FILE *f, const char *path, uint64_t data_start,
                       const char *prefix, const NnrtParamInfo *p,
                       const Entry *e, float *base, size_t es, NnrtErr *err) {
  void *dst = nnrt_elt_ptr(es, base, p->offset);
  int ok = !fseeko(f, (off_t)(data_start + e->begin), SEEK_SET);
  if (ok && !p->transposed)
    ok = fread(dst, es, (size_t)p->numel, f) == (size_t)p->numel;
  for (int64_t i = 0; ok && p->transposed && i < p->numel; i++)
    ok = fread(nnrt_elt_ptr(es, dst, nnrt_param_at(p, i)), es, 1, f) == 1;
  if (!ok)
    return nnrt_fail(err, "%s: read error in tensor '%s%s'", path, prefix,
                     p->name);
  // Training never saves a non-finite value (run.c), so one is damage.
  for (int64_t i = 0; i < p->numel; i++) {
    double v = nnrt_elt_get(es, dst, nnrt_param_at(p, i));
    if (!isfinite(v))
      return nnrt_fail(err, "%s: tensor '%s%s' holds a non-finite value (%g) "
                       "at element %lld", path, prefix, p->name, (double)v,
                       (long long)i);
  }
  return 0;
}

// The data of two tensors that are read must not overlap: a file whose
// tensors share bytes was not written by a safetensors writer. n entries
// (checked already), each [begin, end).
static int check_overlap(const char *path, const NnrtModel *m,
                         const Entry *e, int64_t n, NnrtErr *err) {
  for (int64_t a = 0; a < n; a++)
    for (int64_t b = a + 1; b < n; b++)
      if (e[a].begin < e[a].end && e[b].begin < e[b].end &&
          e[a].begin < e[b].end && e[b].begin < e[a].end) {
        const NnrtParamInfo *pa = &m->params[a % m->nparams],
                            *pb = &m->params[b % m->nparams];
        return nnrt_fail(err, "%s: tensors %s'%s' and %s'%s' overlap (bytes "
                         "[%llu, %llu) and [%llu, %llu) of the data)", path,
                         a < m->nparams ? "" : "state of ", pa->name,
                         b < m->nparams ? "" : "state of ", pb->name,
                         (unsigned long long)e[a].begin,
                         (unsigned long long)e[a].end,
                         (unsigned long long)e[b].begin,
                         (unsigned long long)e[b].end);
      }
  return 0;
}

// Whether the state the file holds can be restored: all of it, and the step.
static NnrtStateLoad state_status(const Want *w, const Entry *st,
                                  const NnrtTrainPos *pos) {
  int64_t n = 0, present = 0;
  for (int64_t k = 0; k < w->nstate; k++)
    for (int64_t i = 0; i < w->m->nparams; i++)
      if (!w->m->params[i].buffer) {
        n++;
        present += st[k * w->m->nparams + i].found;
      }
  if (w->stray || (present > 0 && present < n))
    return NNRT_STATE_MISMATCH;
  if (present == 0 && (n > 0 || pos->step < 0))
    return NNRT_STATE_ABSENT;
  return pos->step < 0 ? NNRT_STATE_MISMATCH : NNRT_STATE_RESTORED;
}

static int load(FILE *f, const char *path, Want *w, float *params,
                float *state, NnrtTrainPos *pos, NnrtStateLoad *status,
                char **text, Entry *found, NnrtErr *err) {
  const NnrtModel *m = w->m;
  struct stat st;
  if (fstat(fileno(f), &st))
    return nnrt_fail(err, "%s: %s", path, strerror(errno));
  uint64_t size = (uint64_t)st.st_size;
  uint8_t len[8];
  if (size < 8 || fread(len, 1, 8, f) != 8)
    return nnrt_fail(err, "%s: not a safetensors file (only %llu bytes)", path,
                     (unsigned long long)size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | len[i];
  if (n > size - 8)
    return nnrt_fail(err, "%s: not a safetensors file (header length %llu "
                     "exceeds file size %llu)", path, (unsigned long long)n,
                     (unsigned long long)size);
  if (n > MAX_HEADER || n < 2)
    return nnrt_fail(err, "%s: not a safetensors file (header length %llu)",
                     path, (unsigned long long)n);
  // The header text, then room for decoded strings (never longer than it).
  if (!(*text = nnrt_alloc(2 * n + 2)))
    return nnrt_fail(err, "%s: out of memory", path);
  char *t = *text;
  if (fread(t, 1, n, f) != n)
    return nnrt_fail(err, "%s: read error", path);
  if (t[0] != '{')
    return nnrt_fail(err, "%s: not a safetensors file (the header does not "
                     "start with '{')", path);
  Json j = {t, t, t + n, path, err, t + n + 1};
  if (header(&j, w, found, pos))
    return -1;
  uint64_t data_size = size - 8 - n;
  for (int64_t i = 0; i < m->nparams; i++)
    if (check(path, "", &m->params[i], &found[i], data_size, nnrt_elt(m), err))
      return -1;
  // (after the parameters: a missing tensor or a shape says more about a
  // checkpoint of another model)
  if (w->extra[0])
    return nnrt_fail(err, "%s: extra tensor '%s': model '%s' has no such "
                     "parameter (a checkpoint of another model?)", path,
                     w->extra, m->name ? m->name : "");
  const Entry *sf = found + m->nparams;  // the optimizer state's entries
  if (state) {
    *status = state_status(w, sf, pos);
    for (int64_t k = 0; *status == NNRT_STATE_RESTORED && k < m->nstate; k++)
      for (int64_t i = 0; i < m->nparams; i++) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "optimizer.%lld.", (long long)k);
        if (!m->params[i].buffer &&
            check(path, prefix, &m->params[i], &sf[k * m->nparams + i],
                  data_size, nnrt_elt(m), err))
          return -1;
      }
  }
  int64_t nread = state && *status == NNRT_STATE_RESTORED
                      ? (1 + m->nstate) * m->nparams
                      : m->nparams;
  if (check_overlap(path, m, found, nread, err))
    return -1;
  for (int64_t i = 0; i < m->nparams; i++)
    if (read_tensor(f, path, 8 + n, "", &m->params[i], &found[i], params,
                    nnrt_elt(m), err))
      return -1;
  for (int64_t k = 0; state && *status == NNRT_STATE_RESTORED &&
                      k < m->nstate; k++)
    for (int64_t i = 0; i < m->nparams; i++) {
      char prefix[48];
      snprintf(prefix, sizeof prefix, "optimizer.%lld.", (long long)k);
      const NnrtParamInfo *p = &m->params[i];
      if (!p->buffer &&
          read_tensor(f, path, 8 + n, prefix, p, &sf[k * m->nparams + i],
                      nnrt_elt_ptr(nnrt_elt(m), state, k * m->param_numel),
                      nnrt_elt(m), err))
        return -1;
    }
  return 0;
}

int nnrt_checkpoint_read(const char *path, const NnrtModel *m, float *params,
                         float *state, NnrtTrainPos *pos,
                         NnrtStateLoad *status, NnrtErr *err) {
  pos->epoch = pos->step = pos->examples = -1;
  if (status)
    *status = NNRT_STATE_NOT_ASKED;
  NnrtStateLoad ignored;
  if (!status)
    state = NULL, status = &ignored;
  Want w = {m, state ? m->nstate : 0, 0, ""};
  FILE *f = fopen(path, "rb");
  if (!f)
    return nnrt_fail(err, "%s: cannot open (%s)", path, strerror(errno));
  char *text = NULL;
  int64_t nentries;
  if (__builtin_mul_overflow(w.nstate + 1, m->nparams, &nentries))
    nentries = -1;
  Entry *found = nnrt_alloc_array(nentries, sizeof(Entry));
  int rc = !found ? nnrt_fail(err, "%s: out of memory", path)
                  : load(f, path, &w, params, state, pos, status, &text,
                         found, err);
  nnrt_free(text);
  nnrt_free(found);
  fclose(f);
  return rc;
}

int nnrt_checkpoint_load(const char *path, const NnrtModel *m, float *params,
                         int64_t *epoch, NnrtErr *err) {
  NnrtTrainPos pos;
  int rc = nnrt_checkpoint_read(path, m, params, NULL, &pos, NULL, err);
  *epoch = pos.epoch;
  return rc;
}
