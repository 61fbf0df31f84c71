// fd_compare.h — the finite-difference comparison shared by grad_test.c and
// conv_test.c. Every element of every leaf is moved by ±h in place, the
// scalar root evaluated again (root_at: the caller's evaluation with eval.c),
// and the central difference compared with the adjoint's value, which the
// gradient values hold in `res` (eval_fn of the whole function).
#ifndef NNC_FD_COMPARE_H
#define NNC_FD_COMPARE_H

#include <criterion/criterion.h>
#include <math.h>

#include "eval.h"

typedef double FdRootFn(void *ctx);

static inline void fd_compare(void *ctx, FdRootFn *root_at, double **res,
                              int nleaf, IrValue *const *leaf,
                              IrValue *const *grad, double *const *data,
                              int64_t batch, double h, const char *what) {
  int checked = 0;
  for (int i = 0; i < nleaf; i++) {
    const double *an = res[grad[i]->id];
    int64_t n = (leaf[i]->batched ? batch : 1) * shape_numel(leaf[i]->shape);
    for (int64_t k = 0; k < n; k++) {
      double x = data[i][k];
      data[i][k] = x + h;
      double up = root_at(ctx);
      data[i][k] = x - h;
      double down = root_at(ctx);
      data[i][k] = x;
      double fd = (up - down) / (2 * h);
      double tol = 1e-6 * fmax(fabs(fd), fabs(an[k])) + 1e-8;
      cr_expect(fabs(fd - an[k]) <= tol,
                "%s: d/d(leaf %d)[%lld]: adjoint %.12g, finite difference "
                "%.12g",
                what, i, (long long)k, an[k], fd);
      checked++;
    }
  }
  cr_assert_gt(checked, 0, "%s: nothing was checked", what);
}

#endif
