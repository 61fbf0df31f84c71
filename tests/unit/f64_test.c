// f64_test.c — f64 models end to end against the f64 interpreter.
//
// Each case is a .nn source whose model is f64 (a dense XOR net, a wider
// MLP whose matmuls take the tiled vector paths, a small convolutional net
// with pooling). The test compiles it with the real nnc into a training
// binary, writes random initial parameters as an F64 safetensors file,
// trains with `train --load` over the inline data in order, and reads the
// F64 checkpoint it saves. The same source goes through the front end,
// grad_emit and the simplifier into the interpreter (eval.c), which runs
// the same steps (forward and backward with eval_fn, then the optimizer's
// scalar program on every element). Every parameter and optimizer state
// must agree to 1e-12 relative to its tensor's largest magnitude: the
// compiled f64 program computes what the interpreter computes, up to the
// order of its sums (f32 code differs from it by about 1e-7).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "grad.h"
#include "opt.h"
#include "sema_compile.h"

#ifndef NNC_BINARY_DIR
#define NNC_BINARY_DIR "."
#endif
#ifndef NNC_SOURCE_DIR
#define NNC_SOURCE_DIR ".."
#endif

enum { MAX_PARAMS = 16, MAX_STATE = 4 };

typedef struct Case {
  const char *name;
  const char *model;    // the model and train block, without the data line
  int64_t rows, in, out; // inline examples, inputs and labels per example
  bool onehot;          // labels: one-hot of a class (else values in [0, 1])
  int64_t epochs;
  // Or an example of examples/ with every f32[ written f64[ (its own data,
  // given again here for the interpreter): `model` is then its file name.
  bool example;
  const double *ex_x, *ex_y;
} Case;

// examples/NAME in f64: the file's text with every "f32[" made "f64[".
static char *example_f64(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/examples/%s", NNC_SOURCE_DIR, name);
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *t = calloc((size_t)n + 1, 1);
  cr_assert_eq(fread(t, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  for (char *q = strstr(t, "f32["); q; q = strstr(q + 4, "f32["))
    q[1] = '6', q[2] = '4';
  return t;
}

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return *s >> 33;
}

// A multiple of 1/16 in [-1, 1]: exact in float, as the runtime's data are.
static double small(uint64_t *s) {
  return (double)((int64_t)(lcg(s) % 33) - 16) / 16.0;
}

// The data of a case, and its text: inline([[x...], ...], [[y...], ...]).
static char *inline_data(const Case *c, double *x, double *y, uint64_t seed) {
  size_t cap = (size_t)(c->rows * (c->in + c->out) * 12 + 64);
  char *t = malloc(cap);
  size_t n = (size_t)snprintf(t, cap, "    data = inline([");
  for (int64_t r = 0; r < c->rows; r++) {
    n += (size_t)snprintf(t + n, cap - n, "%s[", r ? ", " : "");
    for (int64_t i = 0; i < c->in; i++) {
      x[r * c->in + i] = small(&seed);
      n += (size_t)snprintf(t + n, cap - n, "%s%g", i ? ", " : "",
                            x[r * c->in + i]);
    }
    n += (size_t)snprintf(t + n, cap - n, "]");
  }
  n += (size_t)snprintf(t + n, cap - n, "], [");
  for (int64_t r = 0; r < c->rows; r++) {
    int64_t cls = (int64_t)(lcg(&seed) % (uint64_t)c->out);
    n += (size_t)snprintf(t + n, cap - n, "%s[", r ? ", " : "");
    for (int64_t i = 0; i < c->out; i++) {
      y[r * c->out + i] = c->onehot ? (double)(i == cls)
                                    : (double)(lcg(&seed) % 17) / 16.0;
      n += (size_t)snprintf(t + n, cap - n, "%s%g", i ? ", " : "",
                            y[r * c->out + i]);
    }
    n += (size_t)snprintf(t + n, cap - n, "]");
  }
  snprintf(t + n, cap - n, "])\n");
  return t;
}

// ---- safetensors, F64 only --------------------------------------------------
typedef struct Tensor {
  char name[96];
  Shape shape;
  int64_t numel;
  double *v;
} Tensor;

static void st_write(const char *path, const Tensor *t, int n) {
  char head[8192];
  size_t h = (size_t)snprintf(head, sizeof head,
                              "{\"__metadata__\":{\"format\":\"pt\"}");
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    h += (size_t)snprintf(head + h, sizeof head - h,
                          ",\"%s\":{\"dtype\":\"F64\",\"shape\":[",
                          t[i].name);
    for (int d = 0; d < t[i].shape.rank; d++)
      h += (size_t)snprintf(head + h, sizeof head - h, "%s%lld", d ? "," : "",
                            (long long)t[i].shape.dim[d]);
    h += (size_t)snprintf(head + h, sizeof head - h,
                          "],\"data_offsets\":[%lld,%lld]}", (long long)off,
                          (long long)(off + 8 * t[i].numel));
    off += 8 * t[i].numel;
  }
  h += (size_t)snprintf(head + h, sizeof head - h, "}");
  while (h % 8)
    head[h++] = ' ';
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  uint64_t len = h;
  fwrite(&len, 8, 1, f);
  fwrite(head, 1, h, f);
  for (int i = 0; i < n; i++)
    fwrite(t[i].v, 8, (size_t)t[i].numel, f);
  fclose(f);
}

// The F64 data of tensor `name` of the file (numel values), or fails.
static void st_read(const char *path, const char *name, int64_t numel,
                    double *out) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "no checkpoint %s", path);
  uint64_t len;
  cr_assert_eq(fread(&len, 8, 1, f), 1);
  char *head = calloc(len + 1, 1);
  cr_assert_eq(fread(head, 1, len, f), len);
  char key[128];
  snprintf(key, sizeof key, "\"%s\":{\"dtype\":\"F64\"", name);
  char *e = strstr(head, key);
  cr_assert(e, "%s: no F64 tensor %s in %s", path, name, head);
  long long a, b;
  char *d = strstr(e, "\"data_offsets\":[");
  cr_assert(d && sscanf(d, "\"data_offsets\":[%lld,%lld]", &a, &b) == 2);
  cr_assert_eq(b - a, 8 * numel, "%s: %s has %lld bytes", path, name, b - a);
  fseek(f, (long)(8 + len + (uint64_t)a), SEEK_SET);
  cr_assert_eq(fread(out, 8, (size_t)numel, f), (size_t)numel);
  free(head);
  fclose(f);
}

// ---- the reference: the same steps in the interpreter ---------------------
static void reference_train(IrModule *m, const Case *c, const double *x,
                            const double *y, int64_t batch, double **param,
                            double **state) {
  const IrStep *st = &m->steps[0];
  const IrOptimizer *o = &st->opt;
  cr_assert(o->fn && !st->sched.name && m->updates.n == 0);
  int64_t t = 0;
  for (int64_t e = 0; e < c->epochs; e++)
    for (int64_t b0 = 0; b0 < c->rows; b0 += batch) {
      int64_t rows = c->rows - b0 < batch ? c->rows - b0 : batch;
      t++;
      Arena scratch = {0};
      EvalEnv env = {.batch = rows, .input = x + b0 * c->in,
                     .label = y + b0 * c->out, .param = param};
      double **val = eval_fn(&scratch, m->fn, &env);
      for (int p = 0; p < m->ntrainable; p++) {
        const IrParam *ip = m->params.item[p];
        const double *g = val[ip->grad->id];
        for (int64_t j = 0; j < shape_numel(ip->shape); j++) {
          double arg[3 + MAX_STATE + 1] = {param[p][j], g[j], (double)t};
          for (int k = 0; k < o->nstate; k++)
            arg[3 + k] = state[k * MAX_PARAMS + p][j];
          Arena a = {0};
          double **r = eval_fn(&a, o->fn, &(EvalEnv){.batch = 1, .arg = arg});
          param[p][j] = r[o->new_p->id][0];
          for (int k = 0; k < o->nstate; k++)
            state[k * MAX_PARAMS + p][j] = r[o->new_state[k]->id][0];
          arena_free(&a);
        }
      }
      arena_free(&scratch);
    }
}

// Within 1e-12 of the tensor's largest magnitude (scale): an element near
// 0 (a gradient's moment after cancelling sums) carries the rounding of
// the terms it came from, not of itself.
static bool close_to(double got, double want, double scale) {
  return fabs(got - want) <= 1e-12 * fmax(fabs(want), scale);
}

// cpu: nnc --cpu (NULL: native), so the AVX2 and SSE tiles are checked too.
static void check_case(const Case *c, int64_t batch, const char *cpu) {
  char dir[] = "/tmp/nnc_f64_XXXXXX";
  cr_assert(mkdtemp(dir));
  double *x = calloc((size_t)(c->rows * c->in), sizeof(double));
  double *y = calloc((size_t)(c->rows * c->out), sizeof(double));
  char *data, *src;
  if (c->example) {
    memcpy(x, c->ex_x, sizeof(double) * (size_t)(c->rows * c->in));
    memcpy(y, c->ex_y, sizeof(double) * (size_t)(c->rows * c->out));
    data = calloc(1, 1);
    src = example_f64(c->model);
  } else {
    data = inline_data(c, x, y, 0x5eed + (uint64_t)c->rows);
    size_t len = strlen(c->model) + strlen(data) + 64;
    src = malloc(len);
    // The model text ends inside its train block: the data line closes it.
    snprintf(src, len, "%s%s}\n", c->model, data);
  }
  char path[256], cmd[1024];
  snprintf(path, sizeof path, "%s/%s.nn", dir, c->name);
  FILE *f = fopen(path, "w");
  fputs(src, f);
  fclose(f);

  Compiled comp;
  IrModule *m = sema_compile(&comp, src);
  cr_assert_eq(m->dtype, DT_F64);
  opt_simplify(m, &comp.ctx);
  grad_emit(m, &comp.ctx);
  opt_simplify(m, &comp.ctx);
  cr_assert_eq(comp.ctx.diag.nerrors, 0, "%s", comp.messages);
  cr_assert(m->params.n <= MAX_PARAMS && m->steps[0].opt.nstate <= MAX_STATE);

  // Random initial parameters, the same in both.
  uint64_t seed = 42;
  Tensor init[MAX_PARAMS];
  double *param[MAX_PARAMS], *state[MAX_STATE * MAX_PARAMS] = {0};
  for (int p = 0; p < m->params.n; p++) {
    const IrParam *ip = m->params.item[p];
    int64_t n = shape_numel(ip->shape);
    param[p] = calloc((size_t)n, sizeof(double));
    for (int64_t j = 0; j < n; j++)
      param[p][j] = 0.5 * (double)(lcg(&seed) % 1000001) / 1000000.0 - 0.25;
    snprintf(init[p].name, sizeof init[p].name, "%s", ip->name);
    init[p].shape = ip->shape;
    init[p].numel = n;
    init[p].v = param[p];
    for (int k = 0; k < m->steps[0].opt.nstate; k++) {
      state[k * MAX_PARAMS + p] = calloc((size_t)n, sizeof(double));
      for (int64_t j = 0; j < n; j++)
        state[k * MAX_PARAMS + p][j] = m->steps[0].opt.state_init[k];
    }
  }
  char init_path[300], out_path[300];
  snprintf(init_path, sizeof init_path, "%s/init.safetensors", dir);
  snprintf(out_path, sizeof out_path, "%s/out.safetensors", dir);
  st_write(init_path, init, m->params.n);

  snprintf(cmd, sizeof cmd,
           "cd %s && %s/nnc --cpu=%s %s.nn -o %s >log 2>&1 && ./%s train --load "
           "init.safetensors --save out.safetensors --no-log --no-shuffle "
           "--epochs %lld --batch %lld --quiet >>log 2>&1",
           dir, NNC_BINARY_DIR, cpu ? cpu : "native", c->name, c->name, c->name,
           (long long)c->epochs, (long long)batch);
  int rc = system(cmd);
  if (rc) {
    snprintf(cmd, sizeof cmd, "cat %s/log >&2", dir);
    (void)system(cmd);
  }
  cr_assert_eq(rc, 0, "compiling or training %s failed", c->name);

  double first = param[0][0];
  reference_train(m, c, x, y, batch, param, state);
  int checked = 0;
  for (int p = 0; p < m->ntrainable; p++) {
    const IrParam *ip = m->params.item[p];
    int64_t n = shape_numel(ip->shape);
    double *got = calloc((size_t)n, sizeof(double));
    st_read(out_path, ip->name, n, got);
    double top = 0;
    for (int64_t j = 0; j < n; j++)
      top = fmax(top, fabs(param[p][j]));
    for (int64_t j = 0; j < n; j++, checked++)
      cr_assert(close_to(got[j], param[p][j], top),
                "%s: %s[%lld] is %.17g, the interpreter's %.17g", c->name,
                ip->name, (long long)j, got[j], param[p][j]);
    for (int k = 0; k < m->steps[0].opt.nstate; k++) {
      char name[160];
      snprintf(name, sizeof name, "optimizer.%d.%s", k, ip->name);
      st_read(out_path, name, n, got);
      const double *want = state[k * MAX_PARAMS + p];
      double top_s = 0;
      for (int64_t j = 0; j < n; j++)
        top_s = fmax(top_s, fabs(want[j]));
      for (int64_t j = 0; j < n; j++, checked++)
        cr_assert(close_to(got[j], want[j], top_s),
                  "%s: state %d of %s[%lld] is %.17g, the interpreter's "
                  "%.17g", c->name, k, ip->name, (long long)j, got[j],
                  want[j]);
    }
    free(got);
  }
  cr_log_info("%s (%s): %d values within 1e-12 of the interpreter", c->name,
              cpu ? cpu : "native", checked);
  // Training moved the parameters (the comparison is not of the start).
  cr_assert(fabs(param[0][0] - first) > 1e-6, "%s: no training happened",
            c->name);
  for (int p = 0; p < m->params.n; p++)
    free(param[p]);
  for (int i = 0; i < MAX_STATE * MAX_PARAMS; i++)
    free(state[i]);
  compiled_free(&comp);
  free(src);
  free(data);
  free(x);
  free(y);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  (void)system(cmd);
}

// examples/xor.nn itself in f64: its four points, batch 4, Adam 0.05.
static const double xor_x[] = {0, 0, 0, 1, 1, 0, 1, 1}, xor_y[] = {0, 1, 1, 0};
static const Case xor_example = {"xor", "xor.nn", 4, 2, 1, false, 40,
                                 true, xor_x, xor_y};

// The same network on other data (3 steps an epoch, the last one partial).
static const Case xor_case = {
    "xor64",
    "model xor64(x: f64[2]) -> f64[1] {\n"
    "    return x |> dense(8, init = xavier_uniform) |> tanh\n"
    "             |> dense(1, init = xavier_uniform) |> sigmoid\n"
    "}\n"
    "train xor64 {\n"
    "    loss = bce\n"
    "    optimizer = adam(lr = 0.05)\n",
    8, 2, 1, false, 6, false, NULL, NULL};

// Rows of 40 wide enough for the 16-lane tiles, with tails (37, 5).
static const Case mlp_case = {
    "mlp64",
    "model mlp64(x: f64[40]) -> f64[5] {\n"
    "    return x |> dense(37) |> relu |> dense(21) |> sigmoid |> dense(5)\n"
    "}\n"
    "train mlp64 {\n"
    "    loss = softmax_cross_entropy\n"
    "    optimizer = momentum(lr = 0.05, momentum = 0.9)\n",
    11, 40, 5, true, 3, false, NULL, NULL};

// A small convolutional net: a conv of 16 filters (the channel-vector
// form), max pool, a strided conv, average pool.
static const Case conv_case = {
    "conv64",
    "model conv64(x: f64[2, 10, 10]) -> f64[3] {\n"
    "    return x |> conv2d(16, 3, padding = 1) |> relu |> maxpool2d(2)\n"
    "             |> conv2d(6, 2, stride = 2) |> tanh |> avgpool2d(2)\n"
    "             |> flatten |> dense(3)\n"
    "}\n"
    "train conv64 {\n"
    "    loss = softmax_cross_entropy\n"
    "    optimizer = adam(lr = 0.01)\n",
    7, 200, 3, true, 3, false, NULL, NULL};

Test(f64, xor_matches_interpreter, .timeout = 300) {
  check_case(&xor_example, 4, NULL);
  check_case(&xor_case, 3, NULL);
}

Test(f64, mlp_matches_interpreter, .timeout = 300) {
  check_case(&mlp_case, 4, NULL);
  check_case(&mlp_case, 4, "x86-64-v3");
  check_case(&mlp_case, 4, "x86-64-v2");
}

Test(f64, conv_matches_interpreter, .timeout = 300) {
  check_case(&conv_case, 3, NULL);
  check_case(&conv_case, 3, "x86-64-v3");
  check_case(&conv_case, 3, "x86-64-v2");
}
