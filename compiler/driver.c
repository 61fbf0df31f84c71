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
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codegen.h"
#include "grad.h"
#include "opt.h"
#include "sema.h"

#ifndef NNC_LINK_FLAGS
#define NNC_LINK_FLAGS ""
#endif

extern char **environ;

typedef enum Stage {
  STAGE_BINARY, STAGE_AST, STAGE_IR, STAGE_GRAD, STAGE_OPT, STAGE_LLVM,
  STAGE_ASM, STAGE_OBJ, STAGE_SUMMARY,
} Stage;

static const struct {
  const char *name;
  Stage stage;
} emit_names[] = {
    {"ast", STAGE_AST},   {"ir", STAGE_IR},     {"grad", STAGE_GRAD},
    {"opt", STAGE_OPT},   {"llvm", STAGE_LLVM}, {"asm", STAGE_ASM},
    {"obj", STAGE_OBJ},
};

typedef struct Options {
  const char *input;
  const char *output;
  const char *stdlib_dir;
  Stage stage;
  int opt_level;
  bool timing;
  int64_t max_memory;  // bytes training may need; 0: the machine's memory
} Options;

static void usage(FILE *out) {
  fputs("usage: nnc FILE.nn [-o OUTPUT] [-O0|-O1|-O2|-O3] [--emit=STAGE]\n"
        "           [--summary] [--stdlib DIR] [--time] [--max-memory SIZE]\n"
        "  compiles a network description into a native training binary\n"
        "  --emit=STAGE  print a stage and stop: ast, ir, grad, opt, llvm, asm,\n"
        "                or obj (writes OUTPUT, default FILE.o)\n"
        "  --summary     print the model's layers, output shapes and parameters\n"
        "  --max-memory SIZE  refuse a model whose training needs more memory\n"
        "                (bytes, or with K, M, G, T; default: this machine's)\n",
        out);
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
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-o") == 0 && i + 1 < argc) {
      o->output = argv[++i];
    } else if (strcmp(a, "--stdlib") == 0 && i + 1 < argc) {
      o->stdlib_dir = argv[++i];
    } else if (strncmp(a, "-O", 2) == 0 && a[2] >= '0' && a[2] <= '3' &&
               !a[3]) {
      o->opt_level = a[2] - '0';
    } else if (strncmp(a, "--emit=", 7) == 0) {
      bool found = false;
      for (size_t k = 0; k < sizeof emit_names / sizeof emit_names[0]; k++)
        if (strcmp(a + 7, emit_names[k].name) == 0) {
          o->stage = emit_names[k].stage;
          found = true;
        }
      if (!found) {
        fprintf(stderr, "nnc: error: unknown stage '%s' for --emit\n", a + 7);
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
  int64_t out = shape_numel(v->shape);
  switch (prims[v->op].kind) {
  case PK_LEAF:
    return 0;
  case PK_MATMUL: {
    const Shape *a = &v->arg[0]->shape;
    return 2 * shape_numel(*a) * v->shape.dim[v->shape.rank - 1];
  }
  case PK_REDUCE:
    return shape_numel(v->arg[0]->shape);
  default:
    break;
  }
  if (v->op == OP_CONV) {  // each output: C/groups x kernel multiply-adds
    Shape w = v->arg[1]->shape;
    return 2 * out * (shape_numel(w) / w.dim[0]);
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
    return 2 * shape_numel(v->arg[0]->shape) * (shape_numel(w) / w.dim[0]);
  }
  return v->op == OP_RESHAPE ? 0 : out;
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
  int64_t total = 0;
  for (int i = 0; i < m->params.n; i++)
    total += shape_numel(((IrParam *)m->params.item[i])->shape);
  fprintf(out, "total parameters: %lld (%s)\n", (long long)total,
          human(a, 4.0 * (double)total, "B"));
  fprintf(out, "forward FLOPs per example: %s\n",
          human(a, (double)forward_flops(m), "FLOP"));
  if (plan) {  // what the training binary allocates at the default batch
    int64_t batch = m->train.batch;
    int64_t params = total * (1 + m->opt.nstate);
    int64_t ws = plan->ws_per_row * batch + plan->ws_fixed;
    fprintf(out, "training memory at batch %lld: %s (parameters and %d "
            "optimizer state%s %s, workspace %s; the data set comes on top)\n",
            (long long)batch, human(a, 4.0 * (double)(params + ws), "B"),
            m->opt.nstate, m->opt.nstate == 1 ? "" : "s",
            human(a, 4.0 * (double)params, "B"), human(a, 4.0 * (double)ws, "B"));
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
  double state = params * (1 + m->opt.nstate);
  double ws = (double)plan.ws_per_row * (double)m->train.batch +
              (double)plan.ws_fixed;
  double need = 4.0 * (state + ws);
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
             human(a, 4.0 * state, "B"), human(a, 4.0 * ws, "B"), what,
             human(a, limit, "B"));
  return 1;
}

// Runs `cc OBJECT RUNTIME -lz -lm -lpthread -o OUTPUT` without a shell.
static int link_binary(Arena *a, const char *obj, const char *obj2,
                       const char *runtime, const char *output) {
  const char *argv[32];
  int n = 0;
  argv[n++] = "cc";
  char *flags = arena_strdup(a, NNC_LINK_FLAGS);
  for (char *tok = strtok(flags, " "); tok && n < 20; tok = strtok(NULL, " "))
    argv[n++] = tok;
  argv[n++] = obj;
  if (obj2)
    argv[n++] = obj2;
  argv[n++] = runtime;
  argv[n++] = "-lz";
  argv[n++] = "-lm";
  argv[n++] = "-lpthread";
  argv[n++] = "-o";
  argv[n++] = output;
  argv[n] = NULL;
  pid_t pid;
  int err = posix_spawnp(&pid, "cc", NULL, NULL, (char *const *)argv, environ);
  if (err) {
    fprintf(stderr, "nnc: error: cannot run cc: %s\n", strerror(err));
    return 1;
  }
  int status;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "nnc: error: linking '%s' failed\n", output);
    return 1;
  }
  return 0;
}

static const char *default_output(Arena *a, const char *input, Stage stage) {
  char *base = basename(arena_strdup(a, input));
  size_t n = strlen(base);
  if (n > 3 && strcmp(base + n - 3, ".nn") == 0)
    base[n - 3] = 0;
  return stage == STAGE_OBJ ? arena_printf(a, "%s.o", base) : base;
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
  Program prog = {.main_path = o->input};
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
    bool trainable = m->objective && m->opt.fn;
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
  if (!m->objective || !m->opt.fn) {
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
  weight_layout(m);
  kernel_fuse(m);
  if (o->stage == STAGE_OPT) {
    ir_print(stdout, m);
    return 0;
  }
  if (o->stage == STAGE_BINARY && check_memory(o, ctx, m))
    return 1;
  double t_mid = now();
  CodegenOptions cg = {.opt_level = o->opt_level};
  const char *output = o->output ? o->output : default_output(a, o->input, o->stage);
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
  // (NNC_ONE_OBJECT: one object on one thread, to compare; the second
  // object is then empty)
  cg.out_path2 = getenv("NNC_ONE_OBJECT") ? NULL : tmp_obj2;
  int rc = codegen_emit(m, ctx, &cg);
  double t_cg = now();
  if (rc == 0)
    rc = link_binary(a, tmp_obj, cg.out_path2 ? tmp_obj2 : NULL, runtime,
                     output);
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
