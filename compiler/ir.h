// ir.h — the graph IR: the single contract between sema, grad, opt, eval and
// codegen.
//
// A function is a list of SSA values in topological order (arguments before
// users). Every value is one primitive from prims.def with a static
// per-example shape; `batched` says whether it also carries the implicit
// leading batch axis, whose size is known only at run time. The builder
// (ir_prim) re-applies the primitive's shape rule and asserts it holds: sema
// already reported every user error, so a failure here is a compiler bug.
#ifndef NNC_IR_H
#define NNC_IR_H

#include "ast.h"  // DType
#include "common.h"

enum { MAX_RANK = 6, MAX_ARGS = 2 };
// The most elements a tensor may have (sema checks every shape against it).
#define SHAPE_MAX_NUMEL ((double)(INT64_C(1) << 40))

// A per-example shape (the batch axis is never stored). rank 0 is a scalar.
typedef struct Shape {
  int rank;
  int64_t dim[MAX_RANK];  // dim[0] is the outermost axis
} Shape;

Shape shape_scalar(void);
Shape shape_of(int rank, const int64_t *dim);
Shape shape_vec(int64_t n);  // [n]
bool shape_eq(Shape a, Shape b);
int64_t shape_numel(Shape s);
// s seen as [outer, dim[axis], inner] around one axis: the products of the
// extents before and after it.
int64_t shape_outer(Shape s, int axis);
int64_t shape_inner(Shape s, int axis);
// "f32[784, 256]", with "B, " in front when batched ("f32[B, 256]").
char *shape_str(Arena *a, Shape s, bool batched);

typedef enum Op {
#define PRIM(id, name, arity, kind, flags, identity, flops) OP_##id,
#include "prims.def"
#undef PRIM
  OP_COUNT
} Op;

typedef enum PrimKind {
  PK_LEAF, PK_RANDOM, PK_EW, PK_REDUCE, PK_MATMUL, PK_OTHER
} PrimKind;

// The sliding window of the convolution and pooling primitives, one entry
// per spatial axis (outermost first; entries past the spatial rank are
// ignored). Every field is explicit: a zero stride or dilation is an error,
// not a default.
typedef struct Window {
  int64_t kernel[3];    // pools: the window's extent (CONV*: the weight's)
  int64_t stride[3];    // >= 1
  int64_t pad_lo[3];    // >= 0, before the first element
  int64_t pad_hi[3];    // >= 0, after the last element
  int64_t dilation[3];  // >= 1: distance between window taps
  int groups;           // CONV, CONV_T, CONV_W: >= 1 channel groups
} Window;

// The spatial part of a channels-first windowed value, normalized to three
// axes: a value with fewer spatial axes gets leading axes of extent 1 (kernel
// 1, stride 1, dilation 1, no padding), which change nothing. Shared by the
// interpreter (eval.c) and the code generator (codegen_conv.c).
typedef struct WinGeom {
  int64_t n[3];    // input extents (d, h, w)
  int64_t out[3];  // window counts (output extents)
  int64_t k[3], s[3], lo[3], d[3];
  int64_t nin, nout, nk;  // products of n, out, k
  int64_t lines;          // out[0] * out[1]
} WinGeom;

// in: the windowed value's per-example shape; out: the windows' shape (same
// rank); k: the kernel extents (the weight's dims 2.., or attr.win.kernel).
WinGeom win_geom(Shape in, Shape out, const int64_t *k, const Window *w);

// Op-specific data; which fields matter is said in prims.def.
typedef struct Attr {
  double num;     // CONST value; CORRECT threshold
  int index;      // PARAM / ARG index
  Shape shape;    // SUM_TO / BROADCAST / RESHAPE target; CONV_T, CONV_W,
                  // AVGPOOL_T, SLICE, EMBED result
  bool batched;   // SUM_TO / BROADCAST target carries the batch axis
  Window win;     // CONV, CONV_T, CONV_W, MAXPOOL, UNPOOL, POOL_SELECT,
                  // AVGPOOL, AVGPOOL_T
  int axis;       // CONCAT, SLICE, EMBED: a per-example axis
  int64_t start;  // SLICE, EMBED: first index along attr.axis
} Attr;

// The shape rule of a primitive: NULL on success with *out / *out_batched set,
// else a lowercase reason ("inner dimensions differ").
typedef const char *ShapeRule(const Shape *in, const bool *in_batched,
                              const Attr *attr, Shape *out, bool *out_batched);

// The flags column of prims.def.
enum {
  PF_ROW = 1,        // each batch row from that row of its arguments alone
  PF_READS_EW = 2,   // reads its argument element by element
  PF_BATCH_SUM = 4,  // sums over the batch axis
  PF_FLAT = 8,       // zero derivative wherever it exists
  PF_COMMUTES = 16,  // a op b == b op a
};

typedef struct Prim {
  const char *name;
  int arity;
  PrimKind kind;
  unsigned flags;     // PF_*
  double identity;    // e with x op e == x, or NAN
  int flops;          // per output element (see prims.def)
  ShapeRule *shape;
} Prim;
extern const Prim prims[OP_COUNT];

typedef struct IrValue IrValue;
struct IrValue {
  int id;                 // index in its function, printed as %id
  Op op;
  Shape shape;            // per-example shape
  bool batched;           // carries the implicit batch axis
  int narg;
  IrValue *arg[MAX_ARGS];
  Attr attr;
  Loc loc;                // source position that produced this value
  const char *name;       // leaves: param or argument name; else NULL
  int nuses;              // set by ir_count_uses
  bool fused;             // set by kernel_fuse: computed inside its only user's loop
  const char *layer;      // set by sema: the innermost layer instance that
                          // made it ("dense_1", "block_1.dense_2"), or NULL
  Loc layer_call;         // where that instance was called
  DType dtype;            // element type, DT_F32 or DT_F64: a leaf's is its
                          // function's, any other value's its arguments'
};

typedef struct IrFn {
  Arena *arena;
  PtrVec values;          // IrValue*, topological order
  bool share;             // ir_prim returns an equal earlier value instead
                          // of a new one (sema's second, inference-mode
                          // lowering: what does not depend on the mode is
                          // built once)
  DType dtype;            // element type of its leaves and constants
                          // (DT_F32 unless sema says otherwise)
} IrFn;

IrFn *ir_fn_new(Arena *a);
// Appends one primitive; asserts the shape rule holds.
IrValue *ir_prim(IrFn *fn, Op op, IrValue **arg, Attr attr, Loc loc);
// Shorthands over ir_prim.
IrValue *ir_leaf(IrFn *fn, Op op, Shape s, bool batched, int index,
                 const char *name, Loc loc);
IrValue *ir_const(IrFn *fn, double v, Loc loc);
IrValue *ir_unary(IrFn *fn, Op op, IrValue *x, Loc loc);
IrValue *ir_binary(IrFn *fn, Op op, IrValue *x, IrValue *y, Loc loc);
IrValue *ir_shaped(IrFn *fn, Op op, IrValue *x, Shape s, bool batched,
                   Loc loc);  // SUM_TO, BROADCAST, RESHAPE
// Checks a primitive's shape rule without building (sema's entry point).
const char *ir_check(Op op, IrValue **arg, const Attr *attr, Shape *out,
                     bool *out_batched);
void ir_count_uses(IrFn *fn);
// Adds to `set` (indexed by value id) every value its members depend on;
// values are in topological order.
void ir_close_deps(const IrFn *fn, bool *set);
// Whether two windows are equal in every field.
bool ir_window_same(const Window *a, const Window *b);
// Whether two values compute the same thing: the same primitive of the same
// arguments with equal attributes (constants compare bit for bit).
bool ir_same(const IrValue *a, const IrValue *b);
void ir_renumber(IrFn *fn);

// ---- the module: one model with its loss, optimizer and training setup -----
typedef enum InitKind {
  INIT_ZEROS, INIT_CONSTANT, INIT_UNIFORM, INIT_NORMAL,
  INIT_XAVIER_UNIFORM, INIT_XAVIER_NORMAL, INIT_HE_UNIFORM, INIT_HE_NORMAL,
  INIT_COUNT
} InitKind;
extern const char *const init_names[INIT_COUNT];  // "zeros", "he_normal", ...

typedef struct Init {
  InitKind kind;
  double a, b;            // constant: a; uniform: [a, b]; normal: mean a, std b
} Init;

typedef struct IrParam {
  const char *name;       // "dense_1.W": layer instance, dot, parameter
  Shape shape;
  Init init;
  int64_t fan_in, fan_out;
  Loc loc;
  IrValue *value;         // the PARAM leaf
  IrValue *grad;          // d(objective)/d(param), set by grad_emit
  // Stored as the transpose of `shape` (a 2-D weight with few columns, see
  // weight_layout in opt.h): the PARAM leaf, its gradient and its optimizer
  // state have the transposed shape; `shape` stays the declared one, which
  // checkpoints and initializers see.
  bool transposed;
  // A buffer (`buffer NAME: TYPE = INIT` in a layer): state that is not
  // trained, such as batch norm's running statistics. It has no gradient
  // and no optimizer state; the training graph may assign it a new value
  // each step (IrModule.updates), the inference graph reads it, and
  // checkpoints save it beside the parameters. Buffers come after every
  // trainable parameter in IrModule.params.
  bool buffer;
} IrParam;

// `update NAME = expr` in a layer: after each training step, buffer
// params[param] takes the value `value` (unbatched, the buffer's shape),
// computed from the parameters and buffers as they were during the step.
typedef struct IrUpdate {
  int param;              // index into IrModule.params (a buffer)
  IrValue *value;
  Loc loc;
  int step;               // the step whose lowering made it (applied after
                          // that step's update)
} IrUpdate;

// The roots of one mode's graph. The training and the inference graphs
// live in the same IrFn: sema lowers the model once per mode, values that
// do not depend on the mode are shared (the simplifier's CSE merges them),
// and each mode is the closure of its roots. So a model without dropout or
// batch norm has one graph, and one that has them differs exactly where
// the modes differ.
typedef struct IrGraph {
  IrValue *output;        // the model's prediction
  IrValue *loss;          // per-example loss, batched scalar
  IrValue *objective;     // BATCH_MEAN(loss) (+ penalties in training)
  IrValue *correct;       // correct predictions in the batch, or NULL
} IrGraph;

// The optimizer: a scalar program applied to every element of every
// parameter. ARG 0 = p, 1 = g, 2 = t (1-based step), 3.. = state values,
// then (lr_arg) the scheduled learning rate.
typedef struct IrOptimizer {
  const char *name;
  IrFn *fn;
  int lr_arg;             // with a schedule: the ARG index (3 + nstate)
                          // holding this step's learning rate; else 0
  int nstate;
  const char **state_name;
  double *state_init;     // initial value of each state
  IrValue *new_p;         // the updated parameter
  IrValue **new_state;    // the updated states
} IrOptimizer;

typedef enum DataKind {
  DATA_NONE, DATA_IDX, DATA_CSV, DATA_INLINE, DATA_NPY,  // = NnrtDataKind
} DataKind;

typedef struct DataSpec {
  DataKind kind;
  Loc loc;
  const char *path_x;     // IDX images, the CSV file, NPY inputs
  const char *path_y;     // IDX labels, NPY labels
  double scale;           // multiply inputs by this (1/255 for images)
  int nclasses;           // >0: keep only these labels, renumbered 0..n-1
  int64_t *classes;
  int64_t nrows;          // DATA_INLINE: rows of x and y
  int64_t xcols, ycols;
  double *x, *y;
} DataSpec;

// A learning-rate schedule: a scalar program of ARG 0 = the optimizer steps
// taken before this one (`iteration`, from 0) and ARG 1 = the epoch (from
// 0), giving the learning rate of each step; before `warmup` steps it is
// scaled by (iteration + 1) / warmup.
typedef struct IrSchedule {
  const char *name;       // "cosine", or NULL: no schedule
  IrFn *fn;
  IrValue *lr;
  int64_t warmup;         // steps of linear warm-up (0: none)
} IrSchedule;

// One step of a training program: what it minimizes, over which
// parameters, with which optimizer and schedule. The steps run in order on
// every batch (each reads the parameters as the steps before it left
// them). A train block without `step` blocks has one step: its loss (plus
// penalties) over every trainable parameter. A parameter belongs to at
// most one step, so IrParam.grad is that step's gradient.
typedef struct IrStep {
  const char *name;       // "loss", or the step's own name
  IrValue *objective;     // unbatched scalar: BATCH_MEAN(loss) + penalties
  int nparams;            // the parameters it updates (indices into
  int *params;            // IrModule.params); params NULL: every trainable
  IrOptimizer opt;
  IrSchedule sched;       // sched.name NULL: the optimizer's own lr
  Loc loc;
  // Numbers reported per epoch beside the objective (`report NAME` in a
  // step): unbatched scalars of the training graph, and the same in the
  // inference graph (for the test set).
  int nreports;
  const char **report_name;
  IrValue **report, **eval_report;
  IrValue *eval_objective; // the objective in the inference graph, or NULL
  double clip_norm;       // > 0: this step's gradients clipped to this norm
} IrStep;

typedef struct TrainSpec {
  DataSpec data, test;
  int64_t batch, epochs, seed;
  double validation;      // fraction of the training data held out
  bool accuracy;          // metrics = [accuracy]
  double threshold;       // accuracy threshold for one output
  double clip_norm;       // > 0: gradients scaled to this global L2 norm
  double l1, l2;          // penalties l1 * sum |p| + l2 / 2 * sum p^2 over
                          // every trainable parameter
  int64_t patience;       // > 0: early stopping after this many epochs
                          // without a better validation (or test) loss
  Loc loc;
  bool no_shuffle;        // shuffle = false: every epoch in the data's order
  bool stop_when_perfect; // stop after an epoch without a misclassified
                          // training example (needs accuracy)
} TrainSpec;

typedef struct IrModule {
  const char *name;       // the model's name
  const char *source_dir; // folder of the .nn file (data search)
  IrFn *fn;               // both modes' forward, loss, metrics, then backward
  IrValue *input, *label;
  // The training graph's roots:
  IrValue *output;        // the model's prediction
  IrValue *loss;          // per-example loss (+ per-example penalties)
  IrValue *correct;       // correct predictions in the batch (unbatched
                          // scalar: SUM_TO of per-example CORRECT), or NULL
  IrGraph eval;           // the inference graph's roots (eval mode: dropout
                          // off, running statistics); output NULL: the same
                          // as the training graph's
  PtrVec updates;         // IrUpdate*: buffer assignments of each step
  int ndraws;             // random draws numbered 0..ndraws-1 (attr.index)
  PtrVec params;          // IrParam*: trainable ones, then buffers
  int ntrainable;         // params[0, ntrainable) have gradients
  IrStep *steps;          // the training program, in order (none without
  int nsteps;             // a train block)
  TrainSpec train;
  IrValue *sample;        // `sample = expr` (inference graph, batched, no
                          // input): what `./model sample` draws, or NULL
  bool differentiated;    // grad_emit ran: detach(x) may become x
  bool step_blocks;       // the train block has `step`s: the steps'
                          // objectives and reports are what training
                          // reports (no loss, output or accuracy)
  // The element type of every value, parameter, gradient and optimizer
  // state: a model is f32 or f64 as a whole (its declared input type).
  DType dtype;
} IrModule;

// The module's first step; a new one (over every trainable parameter, no
// optimizer yet) when it has none.
IrStep *ir_main_step(IrModule *m);

// The inference graph's roots: m->eval, or the training graph's when the
// modes do not differ (m->eval.output is NULL; the objective is then the
// first step's).
IrGraph ir_eval_graph(const IrModule *m);

// Prints a module (`--emit=ir`, and `--emit=grad` once gradients exist).
void ir_print(FILE *out, const IrModule *m);
void ir_print_fn(FILE *out, const IrFn *fn);

#endif
