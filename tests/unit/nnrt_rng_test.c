// nnrt_rng_test.c — the counter-based RNG, epoch shuffling and parameter
// initializers (statistics within tolerance, independence between params).
#include <math.h>

#include "nnrt_test.h"

Test(rng, pure_function_of_key_and_counter) {
  uint64_t k = nnrt_rng_key(42, NNRT_STREAM_INIT, 3);
  cr_assert_eq(nnrt_rng_u64(k, 7), nnrt_rng_u64(k, 7));
  cr_assert_neq(nnrt_rng_u64(k, 7), nnrt_rng_u64(k, 8));
  cr_assert_neq(k, nnrt_rng_key(42, NNRT_STREAM_INIT, 4));
  cr_assert_neq(k, nnrt_rng_key(42, NNRT_STREAM_SHUFFLE, 3));
  cr_assert_neq(k, nnrt_rng_key(43, NNRT_STREAM_INIT, 3));
  cr_assert_neq(nnrt_rng_key(0, 0, 0), 0);
  double sum = 0;
  for (int i = 0; i < 100000; i++) {
    double u = nnrt_rng_uniform(k, (uint64_t)i);
    cr_assert(u >= 0 && u < 1);
    sum += u;
  }
  cr_assert_float_eq(sum / 100000, 0.5, 0.01);
}

static int is_permutation(const int64_t *p, int64_t n) {
  char *seen = calloc((size_t)n, 1);
  int ok = 1;
  for (int64_t i = 0; i < n && ok; i++) {
    ok = p[i] >= 0 && p[i] < n && !seen[p[i]];
    if (ok)
      seen[p[i]] = 1;
  }
  free(seen);
  return ok;
}

Test(shuffle, deterministic_permutations) {
  enum { N = 1000 };
  int64_t a[N], b[N], c[N], d[N];
  nnrt_shuffle(a, N, 7, 0);
  nnrt_shuffle(b, N, 7, 0);
  nnrt_shuffle(c, N, 7, 1);
  nnrt_shuffle(d, N, 8, 0);
  cr_assert(is_permutation(a, N));
  cr_assert(is_permutation(c, N));
  cr_assert_arr_eq(a, b, sizeof a);  // same seed and epoch: same order
  cr_assert(memcmp(a, c, sizeof a));  // another epoch: another order
  cr_assert(memcmp(a, d, sizeof a));  // another seed: another order
  // The order depends only on (seed, epoch), not on what the array held.
  for (int i = 0; i < N; i++)
    b[i] = -1;
  nnrt_shuffle(b, N, 7, 0);
  cr_assert_arr_eq(a, b, sizeof a);
  // Roughly uniform: every position sees every small value sometimes.
  int counts[4][4] = {{0}};
  for (int e = 0; e < 4000; e++) {
    int64_t p[4];
    nnrt_shuffle(p, 4, 1, e);
    for (int i = 0; i < 4; i++)
      counts[i][p[i]]++;
  }
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      cr_assert(counts[i][j] > 850 && counts[i][j] < 1150, "%d", counts[i][j]);
  int64_t one[1] = {5};
  nnrt_shuffle(one, 1, 3, 0);
  cr_assert_eq(one[0], 0);
  nnrt_shuffle(NULL, 0, 3, 0);  // empty is fine
}

static void stats(const float *w, int64_t n, double *mean, double *std,
                  double *lo, double *hi) {
  double s = 0, s2 = 0;
  *lo = INFINITY, *hi = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    s += w[i];
    s2 += (double)w[i] * w[i];
    *lo = fmin(*lo, w[i]);
    *hi = fmax(*hi, w[i]);
  }
  *mean = s / (double)n;
  *std = sqrt(s2 / (double)n - *mean * *mean);
}

static NnrtParamInfo param(NnrtInit init, double a, double b) {
  NnrtParamInfo p;
  memset(&p, 0, sizeof p);
  p.name = "w";
  p.rank = 2;
  p.dim[0] = 400, p.dim[1] = 250;
  p.numel = 100000;
  p.init = init;
  p.init_a = a, p.init_b = b;
  p.fan_in = 400, p.fan_out = 250;
  return p;
}

static void check_init(NnrtInit init, double a, double b, double want_mean,
                       double want_std, double bound) {
  NnrtParamInfo p = param(init, a, b);
  float *w = calloc(100000, sizeof(float));
  NnrtErr e;
  cr_assert_eq(nnrt_init_param(&p, 0, 1234, w, &e), 0);
  double mean, std, lo, hi;
  stats(w, 100000, &mean, &std, &lo, &hi);
  double tol = want_std > 0 ? want_std : 1e-9;
  cr_assert(fabs(mean - want_mean) < 0.02 * tol + 1e-9,
            "init %d: mean %g, want %g", init, mean, want_mean);
  cr_assert(fabs(std - want_std) < 0.02 * tol + 1e-9,
            "init %d: std %g, want %g", init, std, want_std);
  if (bound > 0)
    cr_assert(lo >= -bound - 1e-6 && hi <= bound + 1e-6 && hi > 0.99 * bound,
              "init %d: range [%g, %g], bound %g", init, lo, hi, bound);
  free(w);
}

Test(init, statistics) {
  check_init(NNRT_INIT_ZEROS, 0, 0, 0, 0, 0);
  check_init(NNRT_INIT_CONSTANT, 0.25, 0, 0.25, 0, 0);
  check_init(NNRT_INIT_UNIFORM, -2, 4, 1, 6 / sqrt(12), 0);
  check_init(NNRT_INIT_NORMAL, 3, 0.5, 3, 0.5, 0);
  double x = sqrt(6.0 / 650);
  check_init(NNRT_INIT_XAVIER_UNIFORM, 0, 0, 0, x / sqrt(3), x);
  check_init(NNRT_INIT_XAVIER_NORMAL, 0, 0, 0, sqrt(2.0 / 650), 0);
  double h = sqrt(6.0 / 400);
  check_init(NNRT_INIT_HE_UNIFORM, 0, 0, 0, h / sqrt(3), h);
  check_init(NNRT_INIT_HE_NORMAL, 0, 0, 0, sqrt(2.0 / 400), 0);
}

Test(init, normal_tails_are_normal) {
  NnrtParamInfo p = param(NNRT_INIT_NORMAL, 0, 1);
  float *w = calloc(100000, sizeof(float));
  NnrtErr e;
  cr_assert_eq(nnrt_init_param(&p, 0, 9, w, &e), 0);
  int beyond2 = 0;
  for (int i = 0; i < 100000; i++) {
    cr_assert(isfinite(w[i]));
    beyond2 += fabsf(w[i]) > 2;
  }
  cr_assert(beyond2 > 4100 && beyond2 < 5000, "%d", beyond2);  // 4.55%
  free(w);
}

// Each parameter's values depend on (seed, its index) only.
Test(init, keyed_by_parameter_index) {
  NnrtParamInfo ps[2] = {param(NNRT_INIT_HE_NORMAL, 0, 0),
                         param(NNRT_INIT_UNIFORM, -1, 1)};
  ps[0].numel = 10, ps[1].numel = 10, ps[1].offset = 10;
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.nparams = 2, m.params = ps, m.param_numel = 20;
  float all[20], alone[20] = {0};
  NnrtErr e;
  cr_assert_eq(nnrt_init_params(&m, 5, all, &e), 0);
  cr_assert_eq(nnrt_init_param(&ps[1], 1, 5, alone, &e), 0);
  cr_assert_arr_eq(all + 10, alone + 10, 10 * sizeof(float));
  float again[20];
  cr_assert_eq(nnrt_init_params(&m, 5, again, &e), 0);
  cr_assert_arr_eq(all, again, sizeof all);
  cr_assert_eq(nnrt_init_params(&m, 6, again, &e), 0);
  cr_assert(memcmp(all, again, sizeof all));
  ps[0].init = 99;
  cr_assert_eq(nnrt_init_params(&m, 5, all, &e), -1);
  cr_assert(strstr(e.msg, "unknown initializer"));
}

// A parameter kept transposed gets the same values, each in its transposed
// place (element (i, j) of [3, 5] at j * 3 + i).
Test(init, transposed_parameters_keep_their_values) {
  NnrtParamInfo p = param(NNRT_INIT_HE_NORMAL, 0, 0);
  p.rank = 2, p.dim[0] = 3, p.dim[1] = 5, p.numel = 15;
  float plain[15], stored[15];
  NnrtErr e;
  cr_assert_eq(nnrt_init_param(&p, 2, 11, plain, &e), 0);
  p.transposed = 1;
  cr_assert_eq(nnrt_init_param(&p, 2, 11, stored, &e), 0);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 5; j++)
      cr_expect_eq(stored[j * 3 + i], plain[i * 5 + j]);
}
