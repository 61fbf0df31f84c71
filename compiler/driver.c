// driver.c — the nnc command: runs the phases in order and links the result.
//
//   source -> parse (AST) -> sema (IR) -> grad -> opt -> fuse -> codegen
//          -> object -> cc with libnnrt.a -> training binary
//
// Each phase reports into ctx.diag and carries on; the driver checks the
// error count between phases and alone decides the exit code. `--emit=X`
// stops after stage X and prints it; that is what golden tests pin.
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen.h"
#include "dot.h"
#include "driver_lib.h"
#include "grad.h"
#include "opt.h"
#include "sema.h"

#ifndef NNC_LINK_FLAGS
#define NNC_LINK_FLAGS ""
#endif
#ifndef NNC_VERSION
#define NNC_VERSION "0"
#endif


typedef enum Stage {
  STAGE_BINARY, STAGE_AST, STAGE_IR, STAGE_GRAD, STAGE_OPT, STAGE_LLVM,
  STAGE_ASM, STAGE_OBJ, STAGE_SUMMARY, STAGE_LIB, STAGE_DOT, STAGE_DOT_GRAD,
} Stage;

static const struct {
  const char *name;
  Stage stage;
} emit_names[] = {
    {"ast", STAGE_AST},   {"ir", STAGE_IR},     {"grad", STAGE_GRAD},
    {"opt", STAGE_OPT},   {"llvm", STAGE_LLVM}, {"asm", STAGE_ASM},
    {"obj", STAGE_OBJ},   {"lib", STAGE_LIB},   {"dot", STAGE_DOT},
    {"dot-grad", STAGE_DOT_GRAD},
};

typedef struct Options {
  const char *input;
  const char *output;
  const char *stdlib_dir;
  const char *train_name;  // --train MODEL
  Stage stage;
  int opt_level;
  bool timing;
  const char *cpu;   // --cpu (NULL: native)
  const char *embed; // --embed W.safetensors (--emit=lib)
  bool one_object, no_row_groups, no_opt_fusion, profile;
  int64_t max_memory;  // bytes training may need; 0: the machine's memory
  bool mpi;            // --mpi: data-parallel over MPI (docs/distributed.md)
} Options;

static void usage(FILE *out) {
  fputs(
      "usage: nnc [OPTIONS] FILE.nn\n"
      "  compiles a network description into a native training binary\n"
      "  (or, with --emit=lib, a C inference library)\n"
      "\n"
      "options (default in brackets):\n"
      "  -o OUTPUT         output file [FILE without .nn; FILE.o for obj;\n"
      "                    stdout for ast, ir, grad, opt, llvm, asm, dot]\n"
      "  -O0 -O1 -O2 -O3   LLVM optimization level [-O3]\n"
      "  --cpu=NAME        CPU the code is for: native, x86-64-v2, x86-64-v3,\n"
      "                    x86-64-v4 or an LLVM CPU name (--cpu=help lists\n"
      "                    them) [native: this machine's CPU]\n"
      "  --emit=STAGE      stop after STAGE and write it [none: link a binary]:\n"
      "                      ast, ir, grad, opt  the stage's dump\n"
      "                      llvm, asm           LLVM IR, assembly\n"
      "                      obj                 the object file\n"
      "                      lib                 OUTPUT=libNAME.a and NAME.h, a C\n"
      "                                          inference library (docs/nnc.md)\n"
      "                      dot, dot-grad       the forward graph; with the\n"
      "                                          backward pass (Graphviz)\n"
      "  --train MODEL     compile the file's 'train MODEL' block [its first]\n"
      "  --embed W.safetensors  --emit=lib: put these weights in the library\n"
      "                    [none: NAME_create reads a file]\n"
      "  --summary         print layers, shapes, parameters, FLOPs and memory\n"
      "                    instead of compiling [off]\n"
      "  --stdlib DIR      the folder of the .nn standard library [stdlib/\n"
      "                    beside nnc, or PREFIX/share/nnc/stdlib when\n"
      "                    installed; else the copy built into nnc]\n"
      "  --time            print how long each phase took [off]\n"
      "  --max-memory SIZE refuse a model whose training needs more memory\n"
      "                    (bytes, or with K, M, G, T) [this machine's]\n"
      "  --one-object      compile the module as one object on one thread [two\n"
      "                    objects on two threads]\n"
      "  --no-row-groups   one kernel per value, no row groups [row groups on]\n"
      "  --no-opt-fusion   do not fuse optimizer updates into gradient kernels\n"
      "                    [fused]\n"
      "  --profile         the binary prints cycles per kernel after training\n"
      "                    [off]\n"
      "  --mpi             a data-parallel binary: mpirun -np N ./model train\n"
      "                    trains on N ranks (links Open MPI; docs/\n"
      "                    distributed.md) [off: no MPI dependency]\n"
      "  --link-flags      print what a program linking an --emit=lib library\n"
      "                    needs after it, and exit\n"
      "  --version         print nnc's version and its LLVM, and exit\n"
      "  -h, --help        print this help, and exit\n",
      out);
}

// "--name=VALUE" or "--name VALUE": the value, or NULL when a is not --name.
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0)
    return NULL;
  if (a[n] == '=')
    return a + n + 1;
  if (!a[n] && *i + 1 < argc)
    return argv[++*i];
  return NULL;
}

// "512M", "24G", "1000000" (bytes; K, M, G, T are powers of 1024) -> bytes,
// or -1 when malformed or past 2^62.
static int64_t parse_size(const char *s) {
  char *end;
  errno = 0;
  if (*s < '0' || *s > '9')
    return -1;
  unsigned long long v = strtoull(s, &end, 10);
  int shift = 0;
  if (*end) {
    const char *units = "KMGT", *u = strchr(units, *end & ~0x20);
    if (!u || !*u || (end[1] && ((end[1] & ~0x20) != 'B' || end[2])))
      return -1;
    shift = 10 * (int)(u - units + 1);
  }
  if (errno == ERANGE || v > (1ULL << 62) >> shift)
    return -1;
  return (int64_t)(v << shift);
}

static int parse_args(int argc, char **argv, Options *o) {
  *o = (Options){.opt_level = 3, .stage = STAGE_BINARY};
  const char *v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-o") == 0 && i + 1 < argc) {
      o->output = argv[++i];
    } else if ((v = opt_value(argc, argv, &i, "--stdlib"))) {
      o->stdlib_dir = v;
    } else if ((v = opt_value(argc, argv, &i, "--train"))) {
      o->train_name = v;
    } else if (strncmp(a, "-O", 2) == 0 && a[2] >= '0' && a[2] <= '3' &&
               !a[3]) {
      o->opt_level = a[2] - '0';
    } else if ((v = opt_value(argc, argv, &i, "--cpu"))) {
      if (strcmp(v, "help") == 0) {
        codegen_cpu_list(stdout);
        exit(0);
      }
      if (!codegen_cpu_known(v)) {
        fprintf(stderr, "nnc: error: unknown CPU '%s' for --cpu; the choices "
                "are:\n", v);
        codegen_cpu_list(stderr);
        return 2;
      }
      o->cpu = v;
    } else if ((v = opt_value(argc, argv, &i, "--embed"))) {
      o->embed = v;
    } else if (strncmp(a, "--emit=", 7) == 0) {
      bool found = false;
      for (size_t k = 0; k < sizeof emit_names / sizeof emit_names[0]; k++)
        if (strcmp(a + 7, emit_names[k].name) == 0) {
          o->stage = emit_names[k].stage;
          found = true;
        }
      if (!found) {
        fprintf(stderr, "nnc: error: unknown stage '%s' for --emit (ast, ir, "
                "grad, opt, llvm, asm, obj, lib, dot, dot-grad)\n", a + 7);
        return 2;
      }
    } else if (strcmp(a, "--max-memory") == 0 ||
               strncmp(a, "--max-memory=", 13) == 0) {
      const char *v = a[12] == '=' ? a + 13 : i + 1 < argc ? argv[++i] : "";
      if ((o->max_memory = parse_size(v)) <= 0) {
        fprintf(stderr, "nnc: error: --max-memory: '%s' is not a size (such "
                "as 512M or 24G)\n", v);
        usage(stderr);
        return 2;
      }
    } else if (strcmp(a, "--summary") == 0) {
      o->stage = STAGE_SUMMARY;
    } else if (strcmp(a, "--time") == 0) {
      o->timing = true;
    } else if (strcmp(a, "--one-object") == 0) {
      o->one_object = true;
    } else if (strcmp(a, "--no-row-groups") == 0) {
      o->no_row_groups = true;
    } else if (strcmp(a, "--no-opt-fusion") == 0) {
      o->no_opt_fusion = true;
    } else if (strcmp(a, "--profile") == 0) {
      o->profile = true;
    } else if (strcmp(a, "--mpi") == 0) {
      o->mpi = true;
    } else if (strcmp(a, "--link-flags") == 0) {
      printf("%s%s-lz -lm -lpthread\n", NNC_LINK_FLAGS,
             *NNC_LINK_FLAGS ? " " : "");
      exit(0);
    } else if (strcmp(a, "--version") == 0) {
      unsigned ma, mi, pa;
      codegen_llvm_version(&ma, &mi, &pa);
      printf("nnc %s (LLVM %u.%u.%u)\n", NNC_VERSION, ma, mi, pa);
      exit(0);
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "nnc: error: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    } else if (o->input) {
      fprintf(stderr, "nnc: error: more than one input file ('%s', '%s')\n",
              o->input, a);
      return 2;
    } else {
      o->input = a;
    }
  }
  if (!o->input) {
    usage(stderr);
    return 2;
  }
  if (o->embed && o->stage != STAGE_LIB) {
    fprintf(stderr, "nnc: error: --embed goes with --emit=lib\n");
    return 2;
  }
  if (o->mpi && o->stage == STAGE_LIB) {
    fprintf(stderr, "nnc: error: --mpi builds a training binary, not a "
            "library (--emit=lib)\n");
    return 2;
  }
  return 0;
}

// The folder holding this executable, to find stdlib/ and libnnrt.a.
static char *exe_dir(Arena *a) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    return arena_strdup(a, ".");
  buf[n] = 0;
  return arena_strdup(a, dirname(buf));
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

// First existing path of "<exe dir>/<candidate>".
static const char *beside_exe(Arena *a, const char *dir,
                              const char *const *cands) {
  for (int i = 0; cands[i]; i++) {
    const char *p = arena_printf(a, "%s/%s", dir, cands[i]);
    if (exists(p))
      return p;
  }
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Floating-point operations one example costs in value v's kernel (a
// multiply-add counts as two), for the summary's forward-FLOPs line.
static int64_t value_flops(const IrValue *v) {
  int64_t out = shape_numel(v->shape), per = prims[v->op].flops;
  if (v->op == OP_LOOP) {  // a recurrence: its body, T times
    const IrLoop *l = v->attr.loop;
    int64_t body = 0;
    for (int i = 0; i < l->body->values.n; i++)
      body += value_flops(l->body->values.item[i]);
    return l->T * body;
  }
  switch (prims[v->op].kind) {
  case PK_LEAF:
  case PK_RANDOM:
    return 0;
  case PK_MATMUL: {
    const Shape *a = &v->arg[0]->shape;
    return per * shape_numel(*a) * v->shape.dim[v->shape.rank - 1];
  }
  case PK_REDUCE:
    return per * shape_numel(v->arg[0]->shape);
  default:
    break;
  }
  if (v->op == OP_CONV) {  // each output: C/groups x kernel multiply-adds
    Shape w = v->arg[1]->shape;
    return per * out * (shape_numel(w) / w.dim[0]);
  }
  if (v->op == OP_MAXPOOL || v->op == OP_AVGPOOL) {
    const Window *win = &v->attr.win;
    int64_t taps = 1;
    for (int i = 0; i + 1 < v->shape.rank; i++)
      taps *= win->kernel[i];
    return out * taps;
  }
  if (v->op == OP_CONV_T) {
    Shape w = v->arg[1]->shape;
    return per * shape_numel(v->arg[0]->shape) * (shape_numel(w) / w.dim[0]);
  }
  return per * out;
}

// Sums value_flops over what the model's output depends on.
static int64_t forward_flops(const IrModule *m) {
  int n = m->fn->values.n;
  bool *need = calloc((size_t)n, 1);
  int64_t total = 0;
  need[m->output->id] = true;
  for (int i = n - 1; i >= 0; i--) {
    const IrValue *v = m->fn->values.item[i];
    if (!need[i])
      continue;
    total += value_flops(v);
    for (int j = 0; j < v->narg; j++)
      need[v->arg[j]->id] = true;
  }
  free(need);
  return total;
}

static const char *human(Arena *a, double x, const char *unit) {
  const char *prefix[] = {"", "k", "M", "G", "T"};
  int k = 0;
  while (x >= 1000 && k < 4)
    x /= 1000, k++;
  return arena_printf(a, k ? "%.2f %s%s" : "%.0f %s%s", x, prefix[k], unit);
}

// Whether the module has a training program: a step with an objective and
// an optimizer.
static bool trainable_module(const IrModule *m) {
  return m->nsteps > 0 && m->steps[0].objective && m->steps[0].opt.fn;
}

static void print_summary(FILE *out, SemaResult *r, const CodegenPlan *plan) {
  IrModule *m = r->module;
  Arena *a = m->fn->arena;
  fprintf(out, "model %s\n", m->name);
  fprintf(out, "%-28s %-20s %12s\n", "layer", "output", "params");
  fprintf(out, "%-28s %-20s %12s\n", "input",
          shape_str(a, m->input->shape, false) + 3, "0");
  for (int i = 0; i < r->layers.n; i++) {
    LayerInfo *li = r->layers.item[i];
    fprintf(out, "%*s%-*s %-20s %12lld\n", 2 * li->depth, "",
            28 - 2 * li->depth, li->name, shape_str(a, li->shape, false) + 3,
            (long long)li->nparams);
  }
  double es = m->dtype == DT_F64 ? 8 : 4;  // bytes per element
  int64_t total = 0, buffers = 0;
  for (int i = 0; i < m->params.n; i++) {
    const IrParam *p = m->params.item[i];
    *(p->buffer ? &buffers : &total) += shape_numel(p->shape);
  }
  fprintf(out, "total parameters: %lld (%s)\n", (long long)total,
          human(a, es * (double)total, "B"));
  if (buffers)
    fprintf(out, "buffers (running statistics): %lld (%s)\n",
            (long long)buffers, human(a, es * (double)buffers, "B"));
  fprintf(out, "forward FLOPs per example: %s\n",
          human(a, (double)forward_flops(m), "FLOP"));
  if (plan) {  // what the training binary allocates at the default batch
    int64_t batch = m->train.batch;
    int nstate = m->steps[0].opt.nstate;
    int64_t params = total * (1 + nstate) + buffers;
    int64_t ws = plan->ws_per_row * batch + plan->ws_fixed;
    fprintf(out, "training memory at batch %lld: %s (parameters and %d "
            "optimizer state%s %s, workspace %s; the data set comes on top)\n",
            (long long)batch, human(a, es * (double)(params + ws), "B"),
            nstate, nstate == 1 ? "" : "s",
            human(a, es * (double)params, "B"), human(a, es * (double)ws, "B"));
  }
}

// Training's memory at the default batch must fit the machine (or
// --max-memory): a model that cannot run is an error now, with its size,
// rather than "out of memory" from the binary. Counted in doubles, so
// absurd shapes cannot overflow.
static int check_memory(const Options *o, Ctx *ctx, IrModule *m) {
  CodegenPlan plan = {0};
  if (codegen_plan(m, ctx, &plan))
    return 1;
  double params = 0;
  for (int i = 0; i < m->params.n; i++)
    params += (double)shape_numel(((IrParam *)m->params.item[i])->shape);
  double state = params * (1 + (m->nsteps ? m->steps[0].opt.nstate : 0));
  double ws = (double)plan.ws_per_row * (double)m->train.batch +
              (double)plan.ws_fixed;
  double es = m->dtype == DT_F64 ? 8 : 4;
  double need = es * (state + ws);
  double limit = (double)o->max_memory;
  const char *what = "--max-memory";
  if (o->max_memory <= 0) {
    limit = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    what = "this machine's memory";
  }
  if (limit <= 0 || need <= limit)
    return 0;
  Arena *a = ctx->arena;
  Loc at = m->train.loc.file ? m->train.loc : (Loc){o->input, 1, 1};
  diag_error(&ctx->diag, at,
             "training '%s' needs %s of memory at batch %lld (parameters and "
             "optimizer state %s, workspace %s), more than %s (%s)",
             m->name, human(a, need, "B"), (long long)m->train.batch,
             human(a, es * state, "B"), human(a, es * ws, "B"), what,
             human(a, limit, "B"));
  return 1;
}

// Runs `cc OBJECT RUNTIME -lz -lm -lpthread -o OUTPUT` without a shell.
static int link_binary(Arena *a, const char *obj, const char *obj2,
                       const char *runtime, const char *mpi_runtime,
                       const char *output) {
  const char *argv[48];
  int n = 0;
  argv[n++] = "cc";
  char *flags = arena_strdup(a, NNC_LINK_FLAGS);
  for (char *tok = strtok(flags, " "); tok && n < 20; tok = strtok(NULL, " "))
    argv[n++] = tok;
  argv[n++] = obj;
  if (obj2)
    argv[n++] = obj2;
  if (mpi_runtime) {  // libnnrt_mpi.a, then MPI itself (NNC_MPI_LINK)
    argv[n++] = mpi_runtime;
    argv[n++] = runtime;
    char *libs = arena_strdup(a, NNC_MPI_LINK);
    for (char *tok = strtok(libs, " "); tok && n < 40; tok = strtok(NULL, " "))
      argv[n++] = tok;
  } else {
    argv[n++] = runtime;
  }
  argv[n++] = "-lz";
  argv[n++] = "-lm";
  argv[n++] = "-lpthread";
  argv[n++] = "-o";
  argv[n++] = output;
  argv[n] = NULL;
  if (driver_spawn(argv, NULL)) {
    fprintf(stderr, "nnc: error: linking '%s' failed\n", output);
    return 1;
  }
  return 0;
}

// The whole of a (small) file, for --embed; NULL after saying why not.
static char *read_file(Arena *a, const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "nnc: error: cannot open '%s': %s\n", path,
            strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) {
      char *nb = realloc(buf, cap *= 2);
      if (!nb)
        free(buf);
      buf = nb;
    }
  }
  bool bad = ferror(f) || !buf;
  fclose(f);
  if (bad) {
    fprintf(stderr, "nnc: error: cannot read '%s'\n", path);
    free(buf);
    return NULL;
  }
  char *out = arena_alloc(a, n + 1);
  memcpy(out, buf, n);
  free(buf);
  *len = n;
  return out;
}

static const char *default_output(Arena *a, const char *input, Stage stage) {
  char *base = basename(arena_strdup(a, input));
  size_t n = strlen(base);
  if (n > 3 && strcmp(base + n - 3, ".nn") == 0)
    base[n - 3] = 0;
  if (stage == STAGE_LIB)
    return arena_printf(a, "lib%s.a", base);
  return stage == STAGE_OBJ ? arena_printf(a, "%s.o", base) : base;
}

static int write_dot(const Options *o, IrModule *m, bool grad) {
  FILE *f = o->output && strcmp(o->output, "-") ? fopen(o->output, "w") : stdout;
  if (!f) {
    fprintf(stderr, "nnc: error: cannot write '%s': %s\n", o->output,
            strerror(errno));
    return 1;
  }
  dot_write(f, m, grad);
  bool bad = f == stdout ? fflush(f) != 0 : fclose(f) != 0;
  if (bad)
    fprintf(stderr, "nnc: error: cannot write '%s'\n", o->output);
  return bad;
}

// --emit=lib: one object (its kernels internal) without main, then the
// header, glue and archive (driver_lib.c).
static int emit_lib(const Options *o, IrModule *m, Ctx *ctx,
                    CodegenOptions *cg, const char *output,
                    const char *runtime) {
  Arena *a = ctx->arena;
  if (o->embed && !(cg->embed = read_file(a, o->embed, &cg->embed_len)))
    return 1;
  char obj[] = "/tmp/nnc-XXXXXX.o";
  int fd = mkstemps(obj, 2);
  if (fd < 0) {
    fprintf(stderr, "nnc: error: cannot create a temporary file: %s\n",
            strerror(errno));
    return 1;
  }
  close(fd);
  cg->out_path = obj;
  cg->no_main = true;
  cg->model_symbol = arena_printf(a, "%s_model", lib_prefix(a, output));
  int rc = codegen_emit(m, ctx, cg);
  if (!rc)
    rc = lib_emit(a, m, o->input, output, obj, runtime, o->embed != NULL,
                  NNC_LINK_FLAGS);
  unlink(obj);
  return rc;
}

static int compile(Options *o, Ctx *ctx) {
  Arena *a = ctx->arena;
  double t0 = now();
  const char *dir = exe_dir(a);
  ctx->stdlib_dir = o->stdlib_dir
                        ? o->stdlib_dir
                        : beside_exe(a, dir, (const char *const[]){
                                                 "stdlib", "../stdlib",
                                                 "../share/nnc/stdlib", NULL});
  Program prog = {.main_path = o->input, .train_name = o->train_name};
  sema_load_stdlib(ctx, &prog);
  sema_load_file(ctx, &prog, o->input, (Loc){0});
  if (ctx->diag.nerrors)
    return 1;
  if (o->stage == STAGE_AST) {
    for (int i = 0; i < prog.files.n; i++) {
      AstFile *f = prog.files.item[i];
      if (strcmp(f->path, o->input) == 0)
        ast_print(stdout, f);
    }
    return 0;
  }
  SemaResult r = sema_lower(ctx, &prog);
  if (ctx->diag.nerrors || !r.module)
    return 1;
  IrModule *m = r.module;
  double t_front = now();
  if (o->stage == STAGE_SUMMARY) {
    CodegenPlan plan = {0};
    bool trainable = trainable_module(m);
    if (trainable) {  // the memory line needs codegen's workspace plan
      opt_simplify(m, ctx);
      grad_emit(m, ctx);
      opt_simplify(m, ctx);
      weight_layout(m);
      kernel_fuse(m);
      if (codegen_plan(m, ctx, &plan))
        return 1;
    }
    print_summary(stdout, &r, trainable ? &plan : NULL);
    return 0;
  }
  if (o->stage == STAGE_IR) {
    ir_print(stdout, m);
    return 0;
  }
  if (o->stage == STAGE_DOT) {
    opt_simplify(m, ctx);
    return write_dot(o, m, false);
  }
  if (!trainable_module(m)) {
    diag_error(&ctx->diag, (Loc){o->input, 1, 1},
               "nothing to train: this file has no train block with a loss "
               "and an optimizer");
    return 1;
  }
  // Simplify before differentiating too: log(softmax(x)) must become
  // log_softmax(x) first, or the backward pass divides by a softmax that
  // underflows to 0 on confident predictions.
  opt_simplify(m, ctx);
  grad_emit(m, ctx);
  opt_simplify(m, ctx);
  if (ctx->diag.nerrors)
    return 1;
  if (o->stage == STAGE_GRAD) {
    ir_print(stdout, m);
    return 0;
  }
  if (o->stage == STAGE_DOT_GRAD)
    return write_dot(o, m, true);
  weight_layout(m);
  kernel_fuse(m);
  if (o->stage == STAGE_OPT) {
    ir_print(stdout, m);
    return 0;
  }
  if (o->stage == STAGE_BINARY && check_memory(o, ctx, m))
    return 1;
  if (o->mpi && m->dtype == DT_F64) {  // (mpi.c sums and averages f32)
    fprintf(stderr, "nnc: error: --mpi: f64 models are not supported yet (the "
            "ranks exchange f32 gradients); build it without --mpi\n");
    return 1;
  }
  double t_mid = now();
  CodegenOptions cg = {.opt_level = o->opt_level,
                       .cpu = o->cpu,
                       .no_row_groups = o->no_row_groups,
                       .no_opt_fusion = o->no_opt_fusion,
                       .profile = o->profile,
                       .mpi = o->mpi};
  // nnc FILE.nn --train MODEL names the binary after the model.
  const char *output =
      o->output ? o->output
                : default_output(a, o->train_name ? o->train_name : o->input,
                                 o->stage);
  char tmp_obj[] = "/tmp/nnc-XXXXXX.o", tmp_obj2[] = "/tmp/nnc-XXXXXX.o";
  if (o->stage == STAGE_LLVM || o->stage == STAGE_ASM) {
    cg.kind = o->stage == STAGE_LLVM ? EMIT_LLVM : EMIT_ASM;
    cg.out_path = o->output ? o->output : "-";
    return codegen_emit(m, ctx, &cg) ? 1 : 0;
  }
  cg.kind = EMIT_OBJ;
  if (o->stage == STAGE_OBJ) {
    cg.out_path = output;
    return codegen_emit(m, ctx, &cg) ? 1 : 0;
  }
  const char *runtime = beside_exe(
      a, dir, (const char *const[]){"libnnrt.a", "../lib/nnc/libnnrt.a", NULL});
  if (!runtime) {
    fprintf(stderr, "nnc: error: cannot find libnnrt.a beside %s\n", dir);
    return 1;
  }
  if (o->stage == STAGE_LIB)
    return emit_lib(o, m, ctx, &cg, output, runtime);
  const char *mpi_runtime = NULL;
  if (o->mpi) {
    mpi_runtime = beside_exe(a, dir, (const char *const[]){
        "libnnrt_mpi.a", "../lib/nnc/libnnrt_mpi.a", NULL});
    if (!mpi_runtime || !*NNC_MPI_LINK) {
      fprintf(stderr, "nnc: error: --mpi: this nnc was built without MPI "
              "(install libopenmpi-dev and rebuild nnc)\n");
      return 1;
    }
  }
  // Two objects: codegen compiles the kernels in two halves on two threads.
  int fd = mkstemps(tmp_obj, 2), fd2 = fd < 0 ? -1 : mkstemps(tmp_obj2, 2);
  if (fd < 0 || fd2 < 0) {
    fprintf(stderr, "nnc: error: cannot create a temporary file: %s\n",
            strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(tmp_obj);
    }
    return 1;
  }
  close(fd);
  close(fd2);
  cg.out_path = tmp_obj;
  // (--one-object: one object on one thread, to compare; the second
  // object is then empty)
  cg.out_path2 = o->one_object ? NULL : tmp_obj2;
  int rc = codegen_emit(m, ctx, &cg);
  double t_cg = now();
  if (rc == 0)
    rc = link_binary(a, tmp_obj, cg.out_path2 ? tmp_obj2 : NULL, runtime,
                     mpi_runtime, output);
  unlink(tmp_obj);
  unlink(tmp_obj2);
  if (o->timing)
    fprintf(stderr,
            "nnc: front end %.1f ms, grad+opt %.1f ms, codegen %.1f ms, "
            "link %.1f ms\n",
            (t_front - t0) * 1e3, (t_mid - t_front) * 1e3,
            (t_cg - t_mid) * 1e3, (now() - t_cg) * 1e3);
  return rc;
}

int main(int argc, char **argv) {
  Options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  Arena arena = {0};
  Ctx ctx = {.arena = &arena, .opt_level = o.opt_level};
  ctx.diag.arena = &arena;
  ctx.diag.out = stderr;
  rc = compile(&o, &ctx);
  arena_free(&arena);
  return rc;
}
