// main.c — nnrt_main: the command line of a training binary, and the eval
// and predict commands (train lives in run.c, reconstruct in reconstruct.c,
// sample in sample.c).
//
// Consumes argv and the model table; produces an exit code: 0 success,
// 1 a runtime error (bad data, bad checkpoint, out of memory, divergence),
// 2 a usage error, 130 interrupted by Ctrl-C. nnrt_main returns the code and
// never calls exit(), so tests can run it in-process. stdout carries only
// results (epoch lines or JSON, eval metrics, predictions); everything else
// goes to stderr, each error as "PROGRAM: FILE: what is wrong".
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnrt_internal.h"

int nnrt_fail(NnrtErr *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

// ---- the command line -------------------------------------------------------
enum { T = 1 << NNRT_CMD_TRAIN, E = 1 << NNRT_CMD_EVAL,
       P = 1 << NNRT_CMD_PREDICT, R = 1 << NNRT_CMD_RECONSTRUCT,
       L = 1 << NNRT_CMD_PLOT, S = 1 << NNRT_CMD_SAMPLE };

static const struct Option {
  const char *name;  // without "--"
  int value;         // takes a value
  int commands;      // where it is allowed (T, E, P)
} options[] = {
    {"epochs", 1, T}, {"batch", 1, T | E | P | R | S}, {"seed", 1, T | S},
    {"limit", 1, T},  {"save", 1, T},          {"no-save", 0, T},
    {"load", 1, T | E | P | R | S}, {"json", 0, T | E},
    {"quiet", 0, T | E | P | R | L | S}, {"out", 1, R | L | S},
    {"count", 1, R | S},
    {"threads", 1, T | E | P | R | S}, {"pin-threads", 0, T | E | P | R | S},
    {"no-shuffle", 0, T}, {"stop-when-perfect", 0, T},
    {"log", 1, T}, {"no-log", 0, T},
    {"help", 0, T | E | P | R | L | S}, {"save-every", 1, T},
    {"check-numerics", 0, T},
};

enum { NCOMMANDS = 6 };
static const char *const command_names[NCOMMANDS] = {
    "train", "eval", "predict", "reconstruct", "plot", "sample"};

// The model's training defaults, with fallbacks for a table that gives none.
static void set_defaults(const NnrtModel *m, NnrtOptions *o) {
  o->epochs = m->epochs > 0 ? m->epochs : 1;
  o->batch = m->batch > 0 ? m->batch : 32;
  o->seed = m->seed;
  o->no_shuffle = m->no_shuffle == 1;
  o->stop_when_perfect = m->stop_when_perfect == 1;
  o->threads = 0;  // one per CPU available
  o->count = 16;
}

static void usage(FILE *f, const NnrtModel *m, const char *prog) {
  NnrtOptions d;
  set_defaults(m, &d);
  fprintf(f,
          "usage: %s [train] [options]   train the model '%s'\n"
          "       %s eval [--load FILE] [--json]   test-set loss and "
          "accuracy\n"
          "       %s predict [--load FILE] INPUT   predictions for a CSV, IDX "
          "or NPY file\n"
          "       %s reconstruct [--load FILE] [--out FILE.png] [--count N]\n"
          "              a picture of test inputs above their reconstructions "
          "(autoencoders)\n"
          "       %s sample [--load FILE] [--out FILE.png] [--count N] "
          "[--seed N]\n"
          "              a grid of samples from the train block's 'sample' "
          "(generators)\n"
          "       %s plot LOG.csv [-o FILE.svg]   loss and accuracy curves of "
          "a training log\n"
          "\n"
          "options:\n"
          "  --epochs N      epochs to train (default %lld)\n"
          "  --batch N       examples per step (default %lld)\n"
          "  --seed N        seed for initialization and shuffling; sample: "
          "for the draws\n"
          "                  (default %lld)\n"
          "  --limit N       use only the first N training examples (default: "
          "all)\n"
          "  --save FILE     checkpoint file (default %s.safetensors)\n"
          "  --save-every N  also save every N steps (default: after each "
          "epoch only)\n"
          "  --no-save       do not write a checkpoint\n"
          "  --log FILE      per-epoch metrics as CSV (default: beside the "
          "checkpoint,\n"
          "                  %s.csv for the default one; none with --no-save)\n"
          "  --no-log        do not write the metrics CSV\n"
          "  --load FILE     saved weights to use; train resumes from them "
          "(with the\n"
          "                  optimizer state and epoch count saved with "
          "them);\n"
          "                  eval, predict, reconstruct, sample: default "
          "%s.safetensors\n"
          "  --no-shuffle    every epoch in the training data's order%s\n"
          "  --stop-when-perfect\n"
          "                  stop after an epoch without a misclassified "
          "training example%s\n"
          "  --check-numerics  check every kernel's output and stop at the "
          "first NaN or\n"
          "                  infinity, naming its layer, primitive and "
          "source line (slow)\n"
          "  --json          one JSON object per epoch on stdout (default: "
          "lines for people)\n"
          "  --quiet         no progress bar or notes (default: both, the bar "
          "on a terminal)\n"
          "  --threads N     threads for the model's arithmetic (default: one "
          "per CPU)\n"
          "  --pin-threads   bind each thread to its own CPU (default: not "
          "bound)\n"
          "  --out FILE      reconstruct (also -o): the picture, PNG or .pgm "
          "(default\n"
          "                  %s-reconstruct.png); sample: the grid (default\n"
          "                  %s-samples.png); plot: the SVG (default "
          "curves.svg)\n"
          "  --count N       reconstruct: examples to show (default 16); "
          "sample: samples\n"
          "                  to draw, 8 to a row (default 64)\n"
          "  --help          this text\n"
          "\n"
          "Relative data paths are searched in $NNC_DATA (folders separated "
          "by ':'),\nthe model's source folder and /usr/share/datasets.\n",
          prog, m->name ? m->name : "", prog, prog, prog, prog, prog,
          (long long)d.epochs, (long long)d.batch, (long long)d.seed, prog,
          prog, prog, d.no_shuffle ? " (set by the .nn file)" : "",
          d.stop_when_perfect ? "\n                  (set by the .nn file)"
                              : "",
          prog, prog);
}

static int usage_error(const NnrtOptions *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const NnrtOptions *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", o->prog);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nusage: %s [train | eval | predict INPUT | reconstruct] "
          "[options]\ntry '%s --help' for the options\n", o->argv0,
          o->argv0);
  return 2;
}

// A whole number >= min; 0 on success.
static int number(const NnrtOptions *o, const char *opt, const char *s,
                  int64_t min, int64_t *out) {
  errno = 0;
  char *stop;
  long long v = strtoll(s, &stop, 10);
  if (!*s || *stop || errno == ERANGE || (*s == ' ' || *s == '\t'))
    return usage_error(o, "--%s: '%s' is not a whole number", opt, s);
  if (v < min)
    return usage_error(o, "--%s: %lld is too small (the least is %lld)",
                       opt, v, (long long)min);
  *out = v;
  return 0;
}

// Fills o from argv; returns -1 to go on, else the exit code (2, or 0 after
// --help).
static int parse_args(const NnrtModel *m, int argc, char **argv,
                      NnrtOptions *o) {
  const char *prog = o->prog;
  int i = 1;
  o->command = NNRT_CMD_TRAIN;
  if (i < argc && argv[i][0] != '-') {
    int c = 0;
    while (c < NCOMMANDS && strcmp(argv[i], command_names[c]))
      c++;
    if (c == NCOMMANDS)
      return usage_error(o, "unknown command '%s' (expected train, eval, "
                         "predict, reconstruct, sample or plot)", argv[i]);
    o->command = (NnrtCommand)c;
    i++;
  }
  const char *cmd = command_names[o->command];
  int only_operands = 0;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (only_operands || a[0] != '-' || !strcmp(a, "-")) {
      if ((o->command != NNRT_CMD_PREDICT && o->command != NNRT_CMD_PLOT) ||
          o->input)
        return usage_error(o, "unexpected argument '%s'", a);
      o->input = a;
      continue;
    }
    if (!strcmp(a, "--")) {
      only_operands = 1;
      continue;
    }
    if (!strcmp(a, "-h"))
      a = "--help";
    if (!strcmp(a, "-o"))
      a = "--out";
    if (strncmp(a, "--", 2))
      return usage_error(o, "unknown option '%s'", a);
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct Option *opt = NULL;
    for (size_t k = 0; k < sizeof options / sizeof options[0]; k++)
      if (strlen(options[k].name) == len &&
          !strncmp(options[k].name, name, len))
        opt = &options[k];
    if (!opt)
      return usage_error(o, "unknown option '%.*s'", (int)len + 2, a);
    if (!(opt->commands & (1 << o->command)))
      return usage_error(o, "option '--%s' does not apply to '%s'",
                         opt->name, cmd);
    const char *v = NULL;
    if (opt->value) {
      if (eq)
        v = eq + 1;
      else if (i + 1 < argc)
        v = argv[++i];
      else
        return usage_error(o, "option '--%s' needs a value", opt->name);
    } else if (eq) {
      return usage_error(o, "option '--%s' takes no value", opt->name);
    }
    int rc = -1;
    const char *n = opt->name;
    if (!strcmp(n, "help")) {
      usage(stdout, m, prog);
      return 0;
    }
    if (!strcmp(n, "epochs"))
      rc = number(o, n, v, 1, &o->epochs);
    else if (!strcmp(n, "batch"))
      rc = number(o, n, v, 1, &o->batch);
    else if (!strcmp(n, "seed"))
      rc = number(o, n, v, 0, &o->seed);
    else if (!strcmp(n, "limit"))
      rc = number(o, n, v, 1, &o->limit);
    else if (!strcmp(n, "threads"))
      rc = number(o, n, v, 1, &o->threads);
    else if (!strcmp(n, "save-every"))
      rc = number(o, n, v, 1, &o->save_every);
    else if (!strcmp(n, "count"))
      rc = number(o, n, v, 1, &o->count);
    else if (!strcmp(n, "out"))
      o->out = v;
    else if (!strcmp(n, "pin-threads"))
      o->pin_threads = 1;
    else if (!strcmp(n, "save"))
      o->save = v;
    else if (!strcmp(n, "load"))
      o->load = v;
    else if (!strcmp(n, "no-save"))
      o->no_save = 1;
    else if (!strcmp(n, "json"))
      o->json = 1;
    else if (!strcmp(n, "quiet"))
      o->quiet = 1;
    else if (!strcmp(n, "no-shuffle"))
      o->no_shuffle = 1;
    else if (!strcmp(n, "stop-when-perfect"))
      o->stop_when_perfect = 1;
    else if (!strcmp(n, "log"))
      o->log = v;
    else if (!strcmp(n, "no-log"))
      o->no_log = 1;
    else if (!strcmp(n, "check-numerics"))
      o->check_numerics = 1;
    if (rc > 0)
      return rc;
    o->batch_set |= !strcmp(n, "batch");
    o->count_set |= !strcmp(n, "count");
    if (v && !*v)
      return usage_error(o, "option '--%s' needs a value", n);
  }
  if (o->threads > NNRT_MAX_THREADS)
    return usage_error(o, "--threads: %lld is too large (the most is %d)",
                       (long long)o->threads, NNRT_MAX_THREADS);
  if (o->stop_when_perfect && m->accuracy != 1)
    return usage_error(o, "--stop-when-perfect needs the model to count its "
                       "mistakes: give it metrics = [accuracy]");
  if (o->save && o->no_save)
    return usage_error(o, "--save and --no-save contradict each other");
  if (o->save_every && o->no_save)
    return usage_error(o, "--save-every and --no-save contradict each other");
  if (o->command == NNRT_CMD_PREDICT && !o->input)
    return usage_error(o, "predict needs an INPUT file (CSV, IDX or NPY)");
  if (o->command == NNRT_CMD_PLOT && !o->input)
    return usage_error(o, "plot needs a training log (the CSV train --log "
                       "writes)");
  if (o->log && o->no_log)
    return usage_error(o, "--log and --no-log contradict each other");
  if (o->command == NNRT_CMD_SAMPLE && !o->count_set)
    o->count = 64;
  return -1;
}

// ---- eval and predict -------------------------------------------------------
// Parameters from --load or the default checkpoint.
static float *load_params(const NnrtModel *m, const NnrtOptions *o,
                          NnrtErr *err) {
  const char *path = o->load ? o->load : o->default_ckpt;
  if (!o->load && access(path, F_OK) != 0) {
    nnrt_fail(err, "%s: no such checkpoint; train first or pass --load FILE",
              path);
    return NULL;
  }
  float *params = nnrt_alloc_array(m->param_numel, nnrt_elt(m));
  int64_t epoch;
  if (!params)
    nnrt_fail(err, "out of memory (%lld parameters)",
              (long long)m->param_numel);
  else if (!nnrt_checkpoint_load(path, m, params, &epoch, err))
    return params;
  nnrt_free(params);
  return NULL;
}

// Rows per infer call: --batch if given, else up to 1000.
static int64_t eval_rows(const NnrtOptions *o, int64_t rows) {
  return o->batch_set && o->batch < rows ? o->batch : rows;
}

static int eval_command(const NnrtModel *m, const NnrtOptions *o,
                        NnrtErr *err) {
  const NnrtDataSpec *spec = &m->test_data;
  const char *set = "test";
  if (spec->kind == NNRT_DATA_NONE) {
    spec = &m->train_data;
    set = "train";
    if (!o->quiet)
      fprintf(stderr, "%s: the model has no test data; evaluating on the "
              "training data\n", o->prog);
  }
  if (spec->kind == NNRT_DATA_NONE)
    return nnrt_fail(err, "the model has no data to evaluate on");
  NnrtData d;
  NnrtEval e = {0};
  float *params = load_params(m, o, err);
  if (!params)
    return -1;
  int rc = nnrt_data_open(&d, spec, m, 0, err);
  if (!rc && d.rows == 0)
    rc = nnrt_fail(err, "%s: no examples", d.path);
  if (!rc)
    rc = nnrt_eval_open(&e, m, eval_rows(o, d.rows), 0, err);
  double *metrics = NULL;
  if (!rc && m->nmetrics > 0 &&
      !(metrics = nnrt_alloc_array(m->nmetrics, sizeof(double))))
    rc = nnrt_fail(err, "out of memory (%lld metrics)",
                   (long long)m->nmetrics);
  if (!rc) {
    double loss, acc;
    nnrt_evaluate_dist(m, params, &e, &d, 0, d.rows, o->dist, &loss, &acc,
                       metrics);
    // Inference alone: gathering the batches is not timed.
    double seconds = e.infer_seconds;
    double rate = seconds > 0 ? (double)d.rows / seconds : 0;
    char line[8192];
    if (o->json) {
      snprintf(line, sizeof line, "{\"%s_loss\":", set);
      nnrt_json_number(line, sizeof line, loss);
      if (m->accuracy == 1) {
        snprintf(line + strlen(line), sizeof line - strlen(line),
                 ",\"%s_accuracy\":", set);
        nnrt_json_number(line, sizeof line, acc);
      }
      for (int64_t k = 0; k < m->nmetrics; k++) {
        snprintf(line + strlen(line), sizeof line - strlen(line),
                 ",\"%s_%s\":", set, m->metric_names[k]);
        nnrt_json_number(line, sizeof line, metrics[k]);
      }
      snprintf(line + strlen(line), sizeof line - strlen(line),
               ",\"examples\":%lld,\"seconds\":", (long long)d.rows);
      nnrt_json_number(line, sizeof line, seconds);
      snprintf(line + strlen(line), sizeof line - strlen(line),
               ",\"samples_per_s\":");
      nnrt_json_number(line, sizeof line, rate);
      snprintf(line + strlen(line), sizeof line - strlen(line), "}");
    } else {
      char rs[32];
      nnrt_format_rate(rs, sizeof rs, rate);
      int n = snprintf(line, sizeof line, "%s_loss %.4f", set, loss);
      if (m->accuracy == 1)
        n += snprintf(line + n, sizeof line - (size_t)n,
                      "  %s_accuracy %.2f%%", set, 100 * acc);
      for (int64_t k = 0; k < m->nmetrics && n < (int)sizeof line - 256; k++)
        n += snprintf(line + n, sizeof line - (size_t)n, "  %s_%s %.4f", set,
                      m->metric_names[k], metrics[k]);
      snprintf(line + n, sizeof line - (size_t)n,
               "  (%lld examples)  %.3f s  %s samples/s", (long long)d.rows,
               seconds, rs);
    }
    if (!o->dist || o->dist->rank == 0)
      printf("%s\n", line);
  }
  nnrt_free(metrics);
  nnrt_eval_close(&e);
  nnrt_data_close(&d);
  nnrt_free(params);
  return rc;
}

// One output: class 1 above the threshold accuracy uses (0 for a perceptron's
// score: step(score)), so predict and accuracy always agree.
static void print_prediction(const float *out, int64_t n, double threshold) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; j++)
    if (out[j] > out[best])
      best = j;
  if (n == 1)
    printf("%d", (float)out[0] > (float)threshold);
  else
    printf("%lld", (long long)best);
  for (int64_t j = 0; j < n; j++)
    printf(",%.6g", out[j]);
  putchar('\n');
}

static int predict_command(const NnrtModel *m, const NnrtOptions *o,
                           NnrtErr *err) {
  NnrtData d;
  NnrtEval e = {0};
  float *params = load_params(m, o, err);
  if (!params)
    return -1;
  int rc = nnrt_data_open_input(&d, o->input, m, m->train_data.scale, err);
  if (!rc)
    rc = nnrt_eval_open(&e, m, eval_rows(o, d.rows), 1, err);
  for (int64_t s = 0; !rc && s < d.rows; s += e.max_batch) {
    int64_t n = d.rows - s < e.max_batch ? d.rows - s : e.max_batch;
    nnrt_data_gather(&d, NULL, s, n, e.x, NULL);
    m->infer(params, e.ws, e.max_batch, e.x, NULL, n, e.out, e.stats);
    for (int64_t r = 0; r < n; r++)
      print_prediction(e.out + r * m->out_numel, m->out_numel, m->threshold);
  }
  if (!rc && (fflush(stdout) || ferror(stdout)))
    rc = nnrt_fail(err, "error writing the predictions (%s)", strerror(errno));
  nnrt_eval_close(&e);
  nnrt_data_close(&d);
  nnrt_free(params);
  return rc;
}

// reconstruct and sample: the weights, then the picture.
static int picture_command(const NnrtModel *m, const NnrtOptions *o,
                           NnrtErr *err) {
  float *params = load_params(m, o, err);
  if (!params)
    return -1;
  int rc = o->command == NNRT_CMD_SAMPLE
               ? nnrt_sample_command(m, o, params, err)
               : nnrt_reconstruct_command(m, o, params, err);
  nnrt_free(params);
  return rc;
}

// ---- nnrt_main --------------------------------------------------------------
// Metric k's name becomes keys NAME, val_NAME, test_NAME of JSON lines and
// columns of the CSV log: a non-empty identifier (letters, digits, '_',
// '.'), none used twice, none a key the runtime writes itself.
static int check_metric_name(const NnrtModel *m, int64_t k, NnrtErr *err) {
  static const char *const reserved[] = {
      "epoch", "loss", "accuracy", "mistakes", "seconds", "samples_per_s",
      "lr", "examples"};
  const char *name = m->metric_names[k];
  int ok = name && *name && strlen(name) < 48;
  for (const char *c = name; ok && *c; c++)
    ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
         (*c >= '0' && *c <= '9') || *c == '_' || *c == '.';
  if (!ok)
    return nnrt_fail(err, "the model table is inconsistent (metric %lld "
                     "has no usable name)", (long long)k);
  int taken = !strncmp(name, "val_", 4) || !strncmp(name, "test_", 5) ||
              !strncmp(name, "train_", 6);
  for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++)
    taken |= !strcmp(name, reserved[r]);
  if (taken)
    return nnrt_fail(err, "the model table is inconsistent (metric name "
                     "'%s' is one of the runtime's keys)", name);
  for (int64_t j = 0; j < k; j++)
    if (!strcmp(m->metric_names[j], name))
      return nnrt_fail(err, "the model table is inconsistent (metric name "
                       "'%s' twice)", name);
  return 0;
}

// The table codegen emitted must be self-consistent; this catches a
// mismatched compiler and runtime before anything indexes out of bounds.
static int check_model(const NnrtModel *m, NnrtErr *err) {
  if (!m->train || !m->infer || m->in_numel <= 0 || m->out_numel <= 0 ||
      m->param_numel < 0 || m->nparams < 0 || (m->nparams && !m->params) ||
      m->nstate < 0 || (m->nstate && !m->state_init))
    return nnrt_fail(err, "the model table is inconsistent (rebuild the "
                     "program with a matching nnc)");
  if (m->nmetrics < 0 || (m->nmetrics > 0 && !m->metric_names))
    return nnrt_fail(err, "the model table is inconsistent (metrics)");
  for (int64_t k = 0; k < m->nmetrics; k++)
    if (check_metric_name(m, k, err))
      return -1;
  if (m->sample) {
    int64_t n = 1;
    for (int64_t k = 0; k < m->sample_rank && k < NNRT_MAX_RANK; k++)
      n = m->sample_dim[k] > 0 && n <= INT64_MAX / m->sample_dim[k]
              ? n * m->sample_dim[k] : -1;
    if (m->sample_rank < 0 || m->sample_rank > NNRT_MAX_RANK ||
        m->sample_numel <= 0 || n != m->sample_numel ||
        m->sample_ws_per_row < 0 || m->sample_ws_fixed < 0)
      return nnrt_fail(err, "the model table is inconsistent (sample)");
  }
  for (int64_t i = 0; i < m->nparams; i++) {
    const NnrtParamInfo *p = &m->params[i];
    if (!p->name || p->offset < 0 || p->numel < 0 ||
        p->offset > m->param_numel - p->numel || p->rank < 0 ||
        p->rank > NNRT_MAX_RANK ||
        (p->transposed &&
         (p->rank != 2 || p->dim[0] < 1 || p->dim[0] * p->dim[1] != p->numel)))
      return nnrt_fail(err, "the model table is inconsistent (parameter "
                       "%lld)", (long long)i);
  }
  return 0;
}

// The thread pool for the generated kernels, for the whole command.
static void start_threads(const NnrtOptions *o) {
  int64_t cpus = nnrt_pool_default_threads();  // before pinning changes it
  int64_t want = o->threads > 0 ? o->threads : cpus;
  if (o->dist && o->threads <= 0) {  // MPI ranks share this machine's CPUs
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int64_t ranks = local && atoll(local) > 0 ? atoll(local) : o->dist->size;
    want = cpus / ranks > 0 ? cpus / ranks : 1;
    cpus = want;  // (no note about oversubscription)
  }
  int64_t got = nnrt_pool_start(want, o->pin_threads);
  if (o->quiet)
    return;
  if (got < want)
    fprintf(stderr, "%s: could only start %lld of %lld threads\n", o->prog,
            (long long)got, (long long)want);
  else if (want > cpus)
    fprintf(stderr, "%s: note: %lld threads on %lld CPU%s; idle threads spin "
            "and may slow the others down\n", o->prog, (long long)want,
            (long long)cpus, cpus == 1 ? "" : "s");
}

int nnrt_main(const NnrtModel *m, int argc, char **argv) {
  return nnrt_main_dist(m, argc, argv, NULL);
}

int nnrt_main_dist(const NnrtModel *m, int argc, char **argv,
                   NnrtDist *dist) {
  NnrtOptions o;
  memset(&o, 0, sizeof o);
  o.dist = dist;
  const char *argv0 = argc > 0 && argv[0] && *argv[0] ? argv[0] : NULL;
  const char *base = argv0 ? strrchr(argv0, '/') : NULL;
  base = base ? base + 1 : argv0;
  if (!base || !*base)
    base = m->name && *m->name ? m->name : "model";
  o.prog = base;
  o.argv0 = argv0 ? argv0 : base;
  snprintf(o.default_ckpt, sizeof o.default_ckpt, "%s.safetensors", base);
  snprintf(o.default_png, sizeof o.default_png, "%s-reconstruct.png", base);
  snprintf(o.default_samples, sizeof o.default_samples, "%s-samples.png",
           base);
  set_defaults(m, &o);
  int rc = parse_args(m, argc, argv, &o);
  if (rc >= 0)
    return rc;
  NnrtErr err;
  if (o.command == NNRT_CMD_PLOT) { // runs no generated code
    if (nnrt_plot_command(&o, &err)) {
      fprintf(stderr, "%s: %s\n", o.prog, err.msg);
      return 1;
    }
    return 0;
  }
  if (nnrt_cpu_check(m, err.msg, sizeof err.msg)) {
    fprintf(stderr, "%s: %s\n", o.prog, err.msg);
    return 1;
  }
  if (check_model(m, &err)) {
    fprintf(stderr, "%s: %s\n", o.prog, err.msg);
    return 1;
  }
  if (o.command == NNRT_CMD_RECONSTRUCT && m->out_numel != m->in_numel) {
    fprintf(stderr, "%s: reconstruct needs an autoencoder (a model that "
            "predicts as many values as it takes in); '%s' takes %lld and "
            "predicts %lld\n", o.prog, m->name ? m->name : "",
            (long long)m->in_numel, (long long)m->out_numel);
    return 2;
  }
  if (o.command == NNRT_CMD_SAMPLE && !m->sample) {
    fprintf(stderr, "%s: this model has no 'sample' expression in its train "
            "block (model '%s')\n", o.prog, m->name ? m->name : "");
    return 2;
  }
  start_threads(&o);
  if (o.command == NNRT_CMD_TRAIN) {
    rc = nnrt_train_command(m, &o);
  } else if (dist && dist->rank > 0 && o.command != NNRT_CMD_EVAL) {
    rc = 0;  // predict and reconstruct run on rank 0 alone
  } else {
    if (o.command == NNRT_CMD_EVAL)
      rc = eval_command(m, &o, &err);
    else if (o.command == NNRT_CMD_PREDICT)
      rc = predict_command(m, &o, &err);
    else
      rc = picture_command(m, &o, &err);
    if (rc) {
      fprintf(stderr, "%s: %s\n", o.prog, err.msg);
      rc = 1;
    }
  }
  nnrt_pool_stop();
  fflush(stdout);
  return rc;
}
