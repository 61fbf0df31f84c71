// init.c — parameter initializers.
//
// Consumes the parameter table codegen emits (NnrtParamInfo: init kind, its
// two numbers and the fans) and fills the parameter's floats in `params`.
// Element i of parameter p draws only from the key (seed, INIT, p) with
// counter i, so adding a parameter, or reordering how parameters are filled,
// never changes the values of the others. i counts in the declared shape,
// so a parameter kept transposed gets the same values, in its own places.
#include <math.h>

#include "nnrt_internal.h"

static double fan(int64_t f) {
  return f > 0 ? (double)f : 1.0;  // a zero fan would divide by zero
}

int nnrt_init_param(const NnrtParamInfo *p, int64_t index, uint64_t seed,
                    float *params, NnrtErr *err) {
  return nnrt_init_param_elt(p, index, seed, params, 4, err);
}

// f64 models get the doubles themselves (f32 ones, those rounded).
int nnrt_init_param_elt(const NnrtParamInfo *p, int64_t index, uint64_t seed,
                        void *params, size_t es, NnrtErr *err) {
  void *w = nnrt_elt_ptr(es, params, p->offset);
  uint64_t key = nnrt_rng_key(seed, NNRT_STREAM_INIT, (uint64_t)index);
  double fi = fan(p->fan_in), fo = fan(p->fan_out);
  double lo = 0, hi = 0, mean = 0, std = 0;
  int normal = 0;
  switch ((NnrtInit)p->init) {
  case NNRT_INIT_ZEROS:
    lo = hi = 0;
    break;
  case NNRT_INIT_CONSTANT:
    lo = hi = p->init_a;
    break;
  case NNRT_INIT_UNIFORM:
    lo = p->init_a, hi = p->init_b;
    break;
  case NNRT_INIT_NORMAL:
    normal = 1, mean = p->init_a, std = p->init_b;
    break;
  case NNRT_INIT_XAVIER_UNIFORM:
    hi = sqrt(6.0 / (fi + fo)), lo = -hi;
    break;
  case NNRT_INIT_XAVIER_NORMAL:
    normal = 1, std = sqrt(2.0 / (fi + fo));
    break;
  case NNRT_INIT_HE_UNIFORM:
    hi = sqrt(6.0 / fi), lo = -hi;
    break;
  case NNRT_INIT_HE_NORMAL:
    normal = 1, std = sqrt(2.0 / fi);
    break;
  default:
    return nnrt_fail(err, "parameter '%s' has an unknown initializer (%lld)",
                     p->name, (long long)p->init);
  }
  for (int64_t i = 0; i < p->numel; i++) {
    double v;
    if (normal)
      v = mean + std * nnrt_rng_normal(key, (uint64_t)i);
    else if (lo == hi)
      v = lo;
    else
      v = lo + (hi - lo) * nnrt_rng_uniform(key, (uint64_t)i);
    nnrt_elt_set(es, w, nnrt_param_at(p, i), v);
  }
  return 0;
}

int nnrt_init_params(const NnrtModel *m, uint64_t seed, float *params,
                     NnrtErr *err) {
  for (int64_t i = 0; i < m->nparams; i++)
    if (nnrt_init_param_elt(&m->params[i], i, seed, params, nnrt_elt(m), err))
      return -1;
  return 0;
}
