// init_orthogonal.c — the orthogonal initializer (Saxe et al. 2014), for
// recurrent weights.
//
// A parameter of declared shape [rows, cols...] is seen as a rows x cols
// matrix (cols: the product of the other axes) of N(0, 1) draws from the
// parameter's key, as every initializer draws; modified Gram-Schmidt in
// f64 then makes its rows orthonormal when rows <= cols, else its columns
// (as torch.nn.init.orthogonal_ up to the random draw). A [u, 4u] LSTM
// weight thus gets 4 orthonormal blocks' worth of orthonormal rows.
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "nnrt_internal.h"

int nnrt_init_orthogonal(const NnrtParamInfo *p, uint64_t key, void *params,
                         size_t es, NnrtErr *err) {
  int64_t rows = p->rank > 0 ? p->dim[0] : 1;
  int64_t cols = rows > 0 ? p->numel / rows : 0;
  if (rows <= 0 || cols <= 0)
    return 0;
  // n vectors of length len: rows of the matrix, or its columns.
  bool by_rows = rows <= cols;
  int64_t n = by_rows ? rows : cols, len = by_rows ? cols : rows;
  double *a = nnrt_alloc_array(p->numel, sizeof(double));
  if (!a)
    return nnrt_fail(err, "parameter '%s': out of memory for its "
                          "orthogonal initialization", p->name);
  for (int64_t i = 0; i < p->numel; i++)
    a[i] = nnrt_rng_normal(key, (uint64_t)i);
  // Element k of vector v: a[v * cols + k] (rows) or a[k * cols + v].
#define AT(v, k) a[by_rows ? (v) * cols + (k) : (k) * cols + (v)]
  for (int64_t v = 0; v < n; v++) {
    for (int64_t u = 0; u < v; u++) {
      double d = 0;
      for (int64_t k = 0; k < len; k++)
        d += AT(v, k) * AT(u, k);
      for (int64_t k = 0; k < len; k++)
        AT(v, k) -= d * AT(u, k);
    }
    double s = 0;
    for (int64_t k = 0; k < len; k++)
      s += AT(v, k) * AT(v, k);
    s = s > 0 ? 1 / sqrt(s) : 0;
    for (int64_t k = 0; k < len; k++)
      AT(v, k) *= s;
  }
#undef AT
  void *w = nnrt_elt_ptr(es, params, p->offset);
  for (int64_t i = 0; i < p->numel; i++)
    nnrt_elt_set(es, w, nnrt_param_at(p, i), a[i]);
  nnrt_free(a);
  return 0;
}
