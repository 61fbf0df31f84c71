// stdlib_grad_test.c — finite-difference checks, in f64, of the gradients the
// compiler derives for every stdlib activation, every loss and whole dense
// networks, going through the real front end: source -> parse -> sema ->
// grad_emit -> opt_simplify, evaluated by the reference interpreter (eval.c).
//
// For each parameter element p, the symbolic gradient must match the central
// difference (J(p + h) - J(p - h)) / 2h of the objective J.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"
#include "grad.h"
#include "opt.h"
#include "sema_compile.h"

enum { BATCH = 3 };

// Deterministic inputs in (-1.5, 1.5) that avoid the kinks at 0.
static double pseudo(unsigned *state) {
  *state = *state * 1103515245u + 12345u;
  double u = ((*state >> 8) & 0xffff) / 65536.0;
  double v = 3 * u - 1.5;
  return fabs(v) < 0.05 ? v + 0.1 : v;
}

static IrModule *compile_source(Compiled *c, const char *text) {
  IrModule *m = sema_compile(c, text);
  opt_simplify(m, &c->ctx);
  grad_emit(m, &c->ctx);
  opt_simplify(m, &c->ctx);
  cr_assert_eq(c->ctx.diag.nerrors, 0, "%s", c->messages);
  return m;
}

static double objective(IrModule *m, EvalEnv *env, Arena *scratch) {
  double **val = eval_fn(scratch, m->fn, env);
  return val[ir_main_step(m)->objective->id][0];
}

// Checks every parameter element's gradient against central differences.
static void check_gradients(const char *text, const double *labels) {
  Compiled c;
  IrModule *m = compile_source(&c, text);
  unsigned seed = 7;
  int64_t in = shape_numel(m->input->shape), out = shape_numel(m->label->shape);
  double input[BATCH * 64], label[BATCH * 64];
  cr_assert(in <= 64 && out <= 64);
  // Buffers (running variances) start positive, as their initializers do.
  for (int64_t i = 0; i < BATCH * in; i++)
    input[i] = pseudo(&seed);
  for (int64_t i = 0; i < BATCH * out; i++)
    label[i] = labels ? labels[i % (out * BATCH)] : pseudo(&seed);
  double *param[64];
  cr_assert(m->params.n <= 64);
  for (int p = 0; p < m->params.n; p++) {
    IrParam *ip = m->params.item[p];
    int64_t n = shape_numel(ip->shape);
    param[p] = arena_alloc(&c.arena, sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
      param[p][i] = ip->buffer ? 1 + 0.25 * pseudo(&seed) : 0.5 * pseudo(&seed);
  }
  // Random draws (dropout, noise) are fixed by the key: the objective is
  // then a deterministic function of the parameters.
  EvalEnv env = {.batch = BATCH, .input = input, .label = label, .param = param,
                 .step_key = 12345};
  Arena scratch = {0};
  double **val = eval_fn(&scratch, m->fn, &env);
  int checked = 0;
  for (int p = 0; p < m->ntrainable; p++) {  // buffers have no gradient
    IrParam *ip = m->params.item[p];
    int64_t n = shape_numel(ip->shape);
    cr_assert(ip->grad, "no gradient for %s", ip->name);
    for (int64_t i = 0; i < n; i++) {
      const double h = 1e-6;
      double saved = param[p][i];
      param[p][i] = saved + h;
      double up = objective(m, &env, &scratch);
      param[p][i] = saved - h;
      double down = objective(m, &env, &scratch);
      param[p][i] = saved;
      double fd = (up - down) / (2 * h);
      double sym = val[ip->grad->id][i];
      double tol = 1e-6 + 1e-5 * fabs(fd);
      cr_expect(fabs(fd - sym) <= tol, "%s[%lld]: symbolic %.10g, finite "
                "differences %.10g\n%s", ip->name, (long long)i, sym, fd, text);
      checked++;
    }
  }
  cr_assert_gt(checked, 0);
  arena_free(&scratch);
  compiled_free(&c);
}

// A model with `in` inputs and `out` outputs trained with `loss`. The inline
// data only has to fit the model: the checks feed their own inputs.
static const char *program(const char *model_body, int in, int out,
                           const char *loss, char *buf, size_t n) {
  char row[256] = "";
  for (int i = 0; i < in; i++)
    strcat(row, i ? ", 0" : "0");
  snprintf(buf, n,
           "model m(x: f32[%d]) -> f32[%d] {\n"
           "    return %s\n"
           "}\n"
           "train m {\n"
           "    data = inline([[%s]], [[0]])\n"
           "    loss = %s\n"
           "    optimizer = sgd\n"
           "}\n",
           in, out, model_body, row, loss);
  return buf;
}

Test(stdlib_grad, activations) {
  static const char *const acts[] = {
      "identity", "step",       "sigmoid", "tanh", "relu",
      "leaky_relu(0.2)", "prelu", "elu(0.7)", "softplus", "softmax",
      "log_softmax",
  };
  for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
    char body[256], buf[4096];
    // dense before the activation so the gradient flows through it to W
    snprintf(body, sizeof body, "x |> dense(4, init = normal(0, 1)) |> %s",
             acts[k]);
    program(body, 3, 4, "mse", buf, sizeof buf);
    check_gradients(buf, NULL);
  }
}

Test(stdlib_grad, losses) {
  static const double onehot[] = {0, 1, 0, 1, 0, 0, 0, 0, 1};
  static const double binary[] = {1, 0, 1};
  struct {
    const char *loss, *act;
    int out;
    const double *labels;
  } cases[] = {
      {"mse", "identity", 3, NULL},
      {"mae", "identity", 3, NULL},
      {"bce", "sigmoid", 1, binary},
      {"bce_with_logits", "identity", 1, binary},
      {"softmax_cross_entropy", "identity", 3, onehot},
      {"nll", "log_softmax", 3, onehot},
      {"hinge", "identity", 1, binary},
      {"perceptron", "identity", 1, binary},
      {"delta", "identity", 3, NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char body[256], buf[4096];
    snprintf(body, sizeof body, "x |> dense(%d, init = normal(0, 1)) |> %s",
             cases[k].out, cases[k].act);
    program(body, 4, cases[k].out, cases[k].loss, buf, sizeof buf);
    check_gradients(buf, cases[k].labels);
  }
}

Test(stdlib_grad, dense_networks) {
  static const double onehot[] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
  char buf[4096];
  program("x |> dense(6) |> relu |> dense(5) |> tanh |> dense(4)", 5, 4,
          "softmax_cross_entropy", buf, sizeof buf);
  check_gradients(buf, onehot);
  program("x |> dense(7, init = xavier_uniform) |> sigmoid |> "
          "dense(3, init = he_uniform, bias = normal(0, 1)) |> softmax",
          4, 3, "mse", buf, sizeof buf);
  check_gradients(buf, NULL);
}

// Regularization and normalization layers (training graph: batch
// statistics, dropout and noise with fixed draws, penalties).
Test(stdlib_grad, regularization_and_normalization) {
  static const double onehot[] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  static const char *const bodies[] = {
      "x |> dense(6) |> batchnorm |> relu |> dense(3)",
      "x |> dense(6) |> batchnorm(momentum = 0.3, eps = 0.01) |> tanh |> "
      "dense(3)",
      "x |> dense(6) |> layernorm |> sigmoid |> dense(3)",
      "x |> dense(6) |> relu |> dropout(0.4) |> dense(3)",
      "x |> gaussian_noise(0.3) |> dense(5) |> tanh |> dense(3)",
      "x |> masking_noise(0.3) |> dense(5) |> tanh |> dense(3)",
      "x |> dense(6) |> sigmoid |> sparsity(0.1) |> dense(3)",
      "x |> reshape([2, 2, 2]) |> batchnorm2d |> flatten |> dense(3)",
      "x |> reshape([2, 2, 2]) |> conv2d(3, 1) |> batchnorm2d |> relu |> "
      "flatten |> dense(3)",
  };
  for (size_t k = 0; k < sizeof bodies / sizeof bodies[0]; k++) {
    char buf[4096];
    program(bodies[k], 8, 3, "softmax_cross_entropy", buf, sizeof buf);
    check_gradients(buf, onehot);
  }
}

// A penalty on a parameter inside a layer, and one per example.
Test(stdlib_grad, penalties) {
  static const char text[] =
      "layer reg_dense(x: f32[n], units: int) -> f32[units] {\n"
      "    param W: f32[n, units] = normal(0, 1)\n"
      "    param b: f32[units] = zeros\n"
      "    penalty 0.01 * l2(W) + 0.02 * l1(b)\n"
      "    return x @ W + b\n"
      "}\n"
      "model m(x: f32[4]) -> f32[2] {\n"
      "    h = x |> reg_dense(5) |> tanh\n"
      "    penalty 0.1 * l2(h)\n"
      "    return h |> dense(2)\n"
      "}\n"
      "train m {\n"
      "    data = inline([[0, 0, 0, 0]], [[0, 0]])\n"
      "    loss = mse\n"
      "    optimizer = sgd\n"
      "}\n";
  check_gradients(text, NULL);
}

// ---- generative models: programs of `step` blocks ---------------------------
// One step over every model, so step 0's objective is what every gradient
// is of (check_gradients differentiates ir_main_step's objective).
static const char *step_program(const char *objective, char *buf, size_t n) {
  snprintf(buf, n,
           "model enc(x: f32[4]) -> (mu: f32[2], logvar: f32[2]) {\n"
           "    h = x |> dense(3, init = normal(0, 1)) |> tanh\n"
           "    return (mu = h |> dense(2, init = normal(0, 1)),\n"
           "            logvar = h |> dense(2, init = normal(0, 1)))\n"
           "}\n"
           "model dec(z: f32[2]) -> f32[4] {\n"
           "    return z |> dense(4, init = normal(0, 1))\n"
           "}\n"
           "model m(x: f32[4]) -> f32[4] {\n"
           "    return dec(enc(x).mu)\n"
           "}\n"
           "train m {\n"
           "    data = inline([[0, 0, 0, 0]], [[0, 0, 0, 0]])\n"
           "    step s {\n"
           "        e = enc(input)\n"
           "        z = e.mu + exp(0.5 * e.logvar) * normal(e.mu)\n"
           "        y = dec(z)\n"
           "        minimize %s\n"
           "        over = [enc, dec]\n"
           "        optimizer = sgd\n"
           "    }\n"
           "}\n",
           objective);
  return buf;
}

// The VAE terms (with the reparameterized draw fixed by the key), the
// Gaussian likelihood and the GAN losses on logits.
Test(stdlib_grad, generative_terms) {
  static const char *const objectives[] = {
      "gaussian_kl(e.mu, e.logvar) + 0.1 * sum(y)",
      "bernoulli_nll(y, sigmoid(input))",
      "gaussian_nll(y, input)",
      "gaussian_nll(y, input, sigma = 0.7)",
      "bernoulli_nll(y, sigmoid(input)) + gaussian_kl(e.mu, e.logvar)",
      "gan_d_loss(sum(y), sum(e.mu))",
      "gan_g_loss(sum(y) - 1)",
  };
  for (size_t k = 0; k < sizeof objectives / sizeof objectives[0]; k++) {
    char buf[4096];
    check_gradients(step_program(objectives[k], buf, sizeof buf), NULL);
  }
}

// The symbolic gradient of every parameter of `text`'s first step, at the
// parameters check_gradients would use.
static void step_grads_at(const char *text, double *out, int64_t cap) {
  Compiled c;
  IrModule *m = compile_source(&c, text);
  unsigned seed = 11;
  double input[BATCH * 4], label[BATCH * 4];
  for (int i = 0; i < BATCH * 4; i++)
    input[i] = pseudo(&seed), label[i] = 0;
  double *param[16];
  cr_assert(m->params.n <= 16);
  for (int p = 0; p < m->params.n; p++) {
    int64_t n = shape_numel(((IrParam *)m->params.item[p])->shape);
    param[p] = arena_alloc(&c.arena, sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
      param[p][i] = 0.5 * pseudo(&seed);
  }
  EvalEnv env = {.batch = BATCH, .input = input, .label = label,
                 .param = param, .step_key = 99};
  Arena scratch = {0};
  double **val = eval_fn(&scratch, m->fn, &env);
  int64_t at = 0;
  for (int p = 0; p < m->ntrainable; p++) {
    IrParam *ip = m->params.item[p];
    int64_t n = shape_numel(ip->shape);
    for (int64_t i = 0; i < n; i++, at++) {
      cr_assert_lt(at, cap);
      out[at] = ip->grad ? val[ip->grad->id][i] : NAN;
    }
  }
  arena_free(&scratch);
  compiled_free(&c);
}

// detach(x) is x with no gradient: minimizing gaussian_kl(...) plus
// detach(the likelihood) gives the encoder exactly the gradient of the KL
// term alone, and the decoder (reached only through detach) a zero one.
Test(stdlib_grad, detach_stops_gradients) {
  char a[4096], b[4096];
  double ga[256], gb[256];
  for (int i = 0; i < 256; i++)
    ga[i] = gb[i] = 0;
  step_grads_at(step_program("gaussian_kl(e.mu, e.logvar) + "
                             "detach(gaussian_nll(y, input)) + 0 * sum(y)",
                             a, sizeof a),
                ga, 256);
  step_grads_at(step_program("gaussian_kl(e.mu, e.logvar) + 0 * sum(y)", b,
                             sizeof b),
                gb, 256);
  int nonzero = 0;
  for (int i = 0; i < 256; i++) {
    cr_expect(fabs(ga[i] - gb[i]) <= 1e-12 * (1 + fabs(gb[i])),
              "gradient %d: %g with detach, %g without the term", i, ga[i],
              gb[i]);
    nonzero += ga[i] != 0;
  }
  cr_assert_gt(nonzero, 0);
}
