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
#define PRIM(id, name, arity, kind) OP_##id,
#include "prims.def"
#undef PRIM
  OP_COUNT
} Op;

typedef enum PrimKind { PK_LEAF, PK_EW, PK_REDUCE, PK_MATMUL, PK_OTHER } PrimKind;

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

typedef struct Prim {
  const char *name;
  int arity;
  PrimKind kind;
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
};

typedef struct IrFn {
  Arena *arena;
  PtrVec values;          // IrValue*, topological order
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
} IrParam;

// The optimizer: a scalar program applied to every element of every
// parameter. ARG 0 = p, 1 = g, 2 = t (1-based step), 3.. = state values.
typedef struct IrOptimizer {
  const char *name;
  IrFn *fn;
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

typedef struct TrainSpec {
  DataSpec data, test;
  int64_t batch, epochs, seed;
  double validation;      // fraction of the training data held out
  bool accuracy;          // metrics = [accuracy]
  double threshold;       // accuracy threshold for one output
  Loc loc;
} TrainSpec;

typedef struct IrModule {
  const char *name;       // the model's name
  const char *source_dir; // folder of the .nn file (data search)
  IrFn *fn;               // forward, loss, metrics, then backward
  IrValue *input, *label;
  IrValue *output;        // the model's prediction
  IrValue *loss;          // per-example loss, batched scalar
  IrValue *objective;     // BATCH_MEAN(loss): what training minimizes
  IrValue *correct;       // correct predictions in the batch (unbatched
                          // scalar: SUM_TO of per-example CORRECT), or NULL
  PtrVec params;          // IrParam*
  IrOptimizer opt;
  TrainSpec train;
} IrModule;

// Prints a module (`--emit=ir`, and `--emit=grad` once gradients exist).
void ir_print(FILE *out, const IrModule *m);
void ir_print_fn(FILE *out, const IrFn *fn);

#endif
