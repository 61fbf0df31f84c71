// modes_test.c — the training and inference graphs of one program, checked
// in the f64 interpreter: dropout keeps a fraction 1 - p of its input
// (within a statistical bound), scales what it keeps by 1 / (1 - p), is the
// identity in inference, and draws the same mask for the same step key and
// another for another; the draws' distributions have the right moments;
// batch norm's inference graph reads the running statistics.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"
#include "sema_compile.h"

enum { ROWS = 50, COLS = 200 };

// model m(x: f32[200]) -> f32[200] { h = x |> scale; return BODY }: `scale`
// (a parameter, so there is something to train) times 1.
static const char *program(const char *body, char *buf, size_t n) {
  snprintf(buf, n,
           "layer scale(x) {\n"
           "    param s: f32[1] = constant(1)\n"
           "    return x * s\n"
           "}\n"
           "model m(x: f32[%d]) -> f32[%d] {\n"
           "    h = x |> scale\n"
           "    return %s\n"
           "}\n",
           COLS, COLS, body);
  return buf;
}

// Both graphs' outputs for x = 1 everywhere and the given step key.
static void outputs(IrModule *m, uint64_t key, Arena *a, double **train,
                    double **infer) {
  static double x[ROWS * COLS];
  for (int i = 0; i < ROWS * COLS; i++)
    x[i] = 1;
  double one = 1;
  double *param[] = {&one};
  EvalEnv env = {.batch = ROWS, .input = x, .param = param, .step_key = key};
  double **v = eval_fn(a, m->fn, &env);
  *train = v[m->output->id];
  *infer = v[ir_eval_graph(m).output->id];
}

Test(modes, dropout_keeps_and_scales) {
  static const double rates[] = {0.1, 0.5, 0.8};
  for (int k = 0; k < 3; k++) {
    double p = rates[k];
    char body[64], buf[512];
    snprintf(body, sizeof body, "h |> dropout(%g)", p);
    Compiled c;
    IrModule *m = sema_compile(&c, program(body, buf, sizeof buf));
    double *tr, *inf, *tr2, *inf2;
    outputs(m, 1234, &c.arena, &tr, &inf);
    int64_t n = ROWS * COLS, kept = 0;
    for (int64_t i = 0; i < n; i++) {
      cr_assert(tr[i] == 0 || fabs(tr[i] - 1 / (1 - p)) < 1e-12,
                "dropout(%g) gave %g", p, tr[i]);
      kept += tr[i] != 0;
      cr_assert_eq(inf[i], 1, "dropout is not the identity in inference");
    }
    // Kept ~ Binomial(n, 1 - p): within 5 standard deviations.
    double want = (1 - p) * (double)n, sd = sqrt(n * p * (1 - p));
    cr_expect(fabs((double)kept - want) < 5 * sd,
              "dropout(%g) kept %lld of %lld (want %.0f +- %.0f)", p,
              (long long)kept, (long long)n, want, 5 * sd);
    // The same key draws the same mask, another key another one.
    outputs(m, 1234, &c.arena, &tr2, &inf2);
    cr_expect(memcmp(tr, tr2, sizeof(double) * (size_t)n) == 0);
    outputs(m, 1235, &c.arena, &tr2, &inf2);
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++)
      same += tr[i] == tr2[i];
    cr_expect(same < n, "the next step drew the same mask");
    compiled_free(&c);
  }
}

// Moments of the three draws over 10000 numbers.
Test(modes, draw_moments) {
  static const struct {
    const char *body;
    double mean, var;
  } cases[] = {
      {"uniform(h)", 0.5, 1.0 / 12},
      {"normal(h)", 0, 1},
      {"bernoulli(0.3, h)", 0.3, 0.21},
  };
  for (int k = 0; k < 3; k++) {
    char buf[512];
    Compiled c;
    IrModule *m = sema_compile(&c, program(cases[k].body, buf, sizeof buf));
    double *tr, *inf;
    outputs(m, 99, &c.arena, &tr, &inf);
    int64_t n = ROWS * COLS;
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++)
      s += tr[i], s2 += tr[i] * tr[i];
    double mean = s / (double)n, var = s2 / (double)n - mean * mean;
    // Standard errors: sqrt(var / n) for the mean; loose for the variance.
    cr_expect(fabs(mean - cases[k].mean) < 5 * sqrt(cases[k].var / (double)n),
              "%s: mean %g", cases[k].body, mean);
    cr_expect(fabs(var - cases[k].var) < 0.05 * cases[k].var,
              "%s: variance %g", cases[k].body, var);
    compiled_free(&c);
  }
}

// With no mode-dependent layer, the two graphs are one.
Test(modes, one_graph_without_mode_dependence) {
  char buf[512];
  Compiled c;
  IrModule *m = sema_compile(&c, program("relu(h)", buf, sizeof buf));
  cr_expect(ir_eval_graph(m).output == m->output);
  compiled_free(&c);
}

// batch norm in inference: (x - running_mean) / sqrt(running_var + eps).
Test(modes, batchnorm_inference_reads_running_statistics) {
  Compiled c;
  IrModule *m = sema_compile(&c,
                        "model m(x: f32[3]) -> f32[3] {\n"
                        "    return x |> batchnorm(eps = 0)\n"
                        "}\n");
  cr_assert_eq(m->params.n, 4);
  cr_assert_eq(m->ntrainable, 2);  // gamma, beta; then the two buffers
  double x[6] = {1, 2, 3, 5, 7, 9};
  double gamma[3] = {1, 2, 3}, beta[3] = {0, 1, 0};
  double mean[3] = {1, 1, 1}, var[3] = {4, 4, 16};
  double *param[] = {gamma, beta, mean, var};
  EvalEnv env = {.batch = 2, .input = x, .param = param};
  double **v = eval_fn(&c.arena, m->fn, &env);
  const double *inf = v[ir_eval_graph(m).output->id];
  const double *tr = v[m->output->id];
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < 3; j++) {
      double want = (x[3 * r + j] - mean[j]) / sqrt(var[j]) * gamma[j] + beta[j];
      cr_expect(fabs(inf[3 * r + j] - want) < 1e-12, "eval [%d][%d]: %g, want %g",
                r, j, inf[3 * r + j], want);
      // Training: the batch's own statistics (two rows: +-1 after it).
      double bt = (r == 0 ? -1 : 1) * gamma[j] + beta[j];
      cr_expect(fabs(tr[3 * r + j] - bt) < 1e-9, "train [%d][%d]: %g, want %g",
                r, j, tr[3 * r + j], bt);
    }
  compiled_free(&c);
}
