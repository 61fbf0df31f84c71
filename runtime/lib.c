// lib.c — the inference library behind `nnc --emit=lib` (model.h).
//
// A context owns everything one caller mutates: the parameters (read from a
// safetensors file or from the weights `--embed` put in the archive) and
// the workspace of nnc_infer for up to max_batch rows. The model table is
// constant, so two threads may run separate contexts at once; kernels that
// split their work go through the process-wide thread pool (pool.c), which
// runs a second concurrent caller's tasks on that caller's own thread. The
// functions the generated header declares are thin wrappers, emitted by
// nnc in the archive, that pass their model's table to these.
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nnrt_internal.h"

struct NnrtLib {
  const NnrtModel *m;
  float *params;
  float *ws;
  int64_t max_batch;
  double *stats;                 // infer's 2 + nmetrics sums (unused here)
};

static void set_err(char *err, size_t cap, const NnrtErr *e) {
  if (err && cap)
    snprintf(err, cap, "%s", e->msg);
}

// Embedded weights go through an anonymous in-memory file, so the checkpoint
// reader (which wants a file it can stat) checks them like any other.
static int load_embedded(const NnrtModel *m, const void *data, size_t len,
                         float *params, NnrtErr *err) {
  int fd = memfd_create("nnc-weights", MFD_CLOEXEC);
  if (fd < 0)
    return nnrt_fail(err, "embedded weights: memfd_create failed");
  const char *p = data;
  for (size_t done = 0; done < len;) {
    ssize_t w = write(fd, p + done, len - done);
    if (w <= 0) {
      close(fd);
      return nnrt_fail(err, "embedded weights: cannot copy them");
    }
    done += (size_t)w;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int64_t epoch;
  int rc = nnrt_checkpoint_load(path, m, params, &epoch, err);
  close(fd);
  if (rc) { // name them, not the descriptor
    const char *why =
        strstr(err->msg, ": ") ? strstr(err->msg, ": ") + 2 : err->msg;
    char tmp[sizeof err->msg];
    memcpy(tmp, why, strlen(why) + 1);
    snprintf(err->msg, sizeof err->msg, "embedded weights: %.2000s", tmp);
  }
  return rc;
}

NnrtLib *nnrt_lib_create(const NnrtModel *m, const char *path,
                         const void *embedded, size_t embedded_len,
                         int64_t max_batch, char *err, size_t cap) {
  NnrtErr e;
  if (nnrt_cpu_check(m, e.msg, sizeof e.msg)) {
    set_err(err, cap, &e);
    return NULL;
  }
  if (max_batch < 1)
    max_batch = 1;
  if (!path && !embedded) {
    nnrt_fail(&e, "no weights: give a safetensors file (this library was "
                  "built without --embed)");
    set_err(err, cap, &e);
    return NULL;
  }
  NnrtLib *l = nnrt_alloc(sizeof *l);
  int64_t ws;
  if (__builtin_mul_overflow(m->infer_ws_per_row, max_batch, &ws) ||
      __builtin_add_overflow(ws, m->infer_ws_fixed, &ws))
    ws = -1;
  if (l) {
    l->m = m;
    l->max_batch = max_batch;
    l->params = nnrt_alloc_array(m->param_numel, nnrt_elt(m));
    l->ws = nnrt_alloc_array(ws, nnrt_elt(m));
    l->stats = nnrt_alloc_array(m->nmetrics > 0 ? 2 + m->nmetrics : 2,
                                sizeof(double));
  }
  if (!l || !l->params || !l->ws || !l->stats) {
    nnrt_lib_free(l);
    nnrt_fail(&e, "out of memory (parameters and workspace)");
    set_err(err, cap, &e);
    return NULL;
  }
  int64_t epoch;
  int rc = path ? nnrt_checkpoint_load(path, m, l->params, &epoch, &e)
                : load_embedded(m, embedded, embedded_len, l->params, &e);
  if (rc) {
    nnrt_lib_free(l);
    set_err(err, cap, &e);
    return NULL;
  }
  return l;
}

int nnrt_lib_run(NnrtLib *l, const float *x, int64_t rows, float *out) {
  if (!l || rows < 0 || (rows && (!x || !out)))
    return -1;
  const NnrtModel *m = l->m;
  for (int64_t s = 0; s < rows; s += l->max_batch) {
    int64_t n = rows - s < l->max_batch ? rows - s : l->max_batch;
    m->infer(l->params, l->ws, l->max_batch, x + s * m->in_numel, NULL, n,
             out + s * m->out_numel, l->stats);
  }
  return 0;
}

const NnrtModel *nnrt_lib_model(const NnrtLib *l) {
  return l->m;
}

void nnrt_lib_free(NnrtLib *l) {
  if (!l)
    return;
  nnrt_free(l->params);
  nnrt_free(l->ws);
  nnrt_free(l->stats);
  nnrt_free(l);
}
