// nnrt.h — the runtime linked into every training binary, and the ABI
// between it and the code nnc generates.
//
// The generated object defines `nnc_model` (an NnrtModel: the parameter table,
// training defaults, data sources and the two generated entry points) and a
// `main` that calls nnrt_main(&nnc_model, argc, argv). The runtime owns the
// command line, data loading, shuffling and batching, parameter
// initialization, progress output, metrics, checkpoints and signals. All
// tensor arithmetic is generated code; the runtime never computes on tensors
// except to convert data and initialize parameters.
//
// Every struct here is read by generated code through a constant LLVM
// struct, so all fields are 8 bytes wide (int64_t, double or pointers) and
// the layout must not change without changing compiler/codegen.c too.
#ifndef NNRT_H
#define NNRT_H

#include <stddef.h>
#include <stdint.h>

#define NNRT_MAX_RANK 6

typedef enum NnrtInit {
  NNRT_INIT_ZEROS, NNRT_INIT_CONSTANT, NNRT_INIT_UNIFORM, NNRT_INIT_NORMAL,
  NNRT_INIT_XAVIER_UNIFORM, NNRT_INIT_XAVIER_NORMAL, NNRT_INIT_HE_UNIFORM,
  NNRT_INIT_HE_NORMAL,
  NNRT_INIT_ORTHOGONAL,
  NNRT_INIT_ARANGE,
} NnrtInit;  // same order as InitKind in compiler/ir.h

typedef struct NnrtParamInfo {
  const char *name;              // "dense_1.W"
  int64_t rank;
  int64_t dim[NNRT_MAX_RANK];
  int64_t numel;
  int64_t offset;                // first float of this parameter in `params`
  int64_t init;                  // NnrtInit
  double init_a, init_b;         // constant a; uniform [a, b]; normal (mean a, std b)
  int64_t fan_in, fan_out;       // for xavier / he
  int64_t transposed;            // 1: a 2-D [dim0, dim1] parameter kept in
                                 // memory as its transpose [dim1, dim0]
                                 // (checkpoints and initializers still see
                                 // [dim0, dim1]; see nnrt_param_at)
  int64_t buffer;                // 1: a buffer (running statistics): saved
                                 // and loaded like a parameter, but never
                                 // trained and without optimizer state
} NnrtParamInfo;

typedef enum NnrtDataKind {
  NNRT_DATA_NONE, NNRT_DATA_IDX, NNRT_DATA_CSV, NNRT_DATA_INLINE,
  NNRT_DATA_NPY,
  NNRT_DATA_TEXT,
} NnrtDataKind;

typedef struct NnrtDataSpec {
  int64_t kind;                  // NnrtDataKind
  const char *path_x;            // IDX images, the CSV file, or NPY inputs
  const char *path_y;            // IDX labels or NPY labels
  double scale;                  // inputs are multiplied by this
  int64_t nclasses;              // >0: keep only rows whose label is listed,
  const int64_t *classes;        //     relabelled 0..nclasses-1
  int64_t nrows, xcols, ycols;   // NNRT_DATA_INLINE
  const float *x, *y;            // NNRT_DATA_INLINE, row-major
  // NNRT_DATA_TEXT: path_x is a text file (or a folder of them, read in
  // name order), one byte per token, cut into windows of in_numel bytes
  // every `stride` bytes; the last `holdout` of the bytes is the test part
  // (text_test = 1 reads it). The label of a window is its next byte
  // (text_steps = 1) or each step's next byte (text_steps = in_numel),
  // one-hot over text_vocab classes.
  double holdout;
  int64_t stride, text_vocab, text_steps, text_test;
} NnrtDataSpec;

// The CPU features generated code may need, bit by bit: bit i of
// NnrtModel.cpu_features is the i-th name here (GCC's __builtin_cpu_supports
// and LLVM spell them alike). Append only.
#define NNRT_CPU_FEATURES(X)                                                  \
  X(0, "sse3") X(1, "ssse3") X(2, "sse4.1") X(3, "sse4.2") X(4, "popcnt")     \
  X(5, "avx") X(6, "avx2") X(7, "fma") X(8, "f16c") X(9, "bmi") X(10, "bmi2") \
  X(11, "lzcnt") X(12, "movbe") X(13, "avx512f") X(14, "avx512vl")            \
  X(15, "avx512bw") X(16, "avx512dq") X(17, "avx512cd") X(18, "avx512vnni")   \
  X(19, "avx512bf16") X(20, "avx512fp16")

typedef struct NnrtRun NnrtRun;  // the runtime's state for one run (opaque)

// Trains until nnrt_epoch_begin returns 0. Generated.
typedef void NnrtTrainFn(NnrtRun *run, float *params, float *state,
                         float *ws, int64_t max_batch);
// Forward pass over `rows` examples (rows <= max_batch). Writes predictions
// to `out` (rows x out_numel) when out is not NULL; when y is not NULL adds
// the loss summed over rows to stats[0] and the correct count to stats[1].
typedef void NnrtInferFn(const float *params, float *ws, int64_t max_batch,
                         const float *x, const float *y, int64_t rows,
                         float *out, double *stats);

// `sample = expr` in the train block (a generator's output from fresh
// draws): `rows` examples (rows <= max_batch) into out (rows x
// sample_numel floats), the draws keyed by `key` (nnrt_rng.h). Generated.
typedef void NnrtSampleFn(const float *params, float *ws, int64_t max_batch,
                          int64_t rows, int64_t key, float *out);

typedef struct NnrtModel {
  const char *name;              // model name
  const char *source_dir;        // folder of the .nn file (data search)
  int64_t in_rank;
  int64_t in_dim[NNRT_MAX_RANK];
  int64_t in_numel;              // floats per example input
  int64_t out_numel;             // floats per prediction and per label
  int64_t nparams;
  const NnrtParamInfo *params;
  int64_t param_numel;           // floats of all parameters together
  int64_t nstate;                // optimizer states per parameter element
  const double *state_init;      // initial value of each state
  NnrtDataSpec train_data, test_data;  // kind NNRT_DATA_NONE: absent
  int64_t batch, epochs, seed;   // defaults from the .nn file
  double validation;             // held-out fraction of the training data
  int64_t accuracy;              // 1: report accuracy
  int64_t train_ws_per_row, train_ws_fixed;  // workspace floats for train
  int64_t infer_ws_per_row, infer_ws_fixed;  // workspace floats for infer
  NnrtTrainFn *train;
  NnrtInferFn *infer;
  int64_t patience;              // > 0: early stopping after this many epochs
                                 // without a better validation loss (the
                                 // test loss without a validation split);
                                 // the best weights are restored
  int64_t no_shuffle;            // 1: epochs visit the rows in order
  int64_t stop_when_perfect;     // 1: stop after an epoch with no mistake
  double threshold;              // a single output predicts class 1 when
                                 // above it (accuracy's threshold, 0.5)
  int64_t cpu_features;          // NNRT_CPU_FEATURES bits the code needs
  const char *cpu_name;          // the nnc --cpu it was built for
  // Training programs of several steps (train blocks with `step`s):
  const double *param_state_init; // nparams x nstate initial states (each
                                 // parameter's optimizer), or NULL:
                                 // state_init for every parameter
  int64_t nmetrics;              // numbers reported per batch and epoch by
  const char *const *metric_names; // name: each step's objective, then the
                                 // `report`s (nnrt_batch_metrics)
  NnrtSampleFn *sample;          // NULL: no `sample` expression
  int64_t sample_rank;           // one sample's shape
  int64_t sample_dim[NNRT_MAX_RANK];
  int64_t sample_numel;
  int64_t sample_ws_per_row, sample_ws_fixed; // workspace floats for sample
  int64_t elt_size;              // bytes per element of params, state and
                                 // workspace: 4 (f32 models) or 8 (f64);
                                 // batch data, inputs and predictions
                                 // stay float either way
} NnrtModel;

// ---- called by the generated main ------------------------------------------
int nnrt_main(const NnrtModel *model, int argc, char **argv);
// 0 when this CPU has every feature model->cpu_features names; otherwise
// writes "this CPU lacks avx512f, ... (the model was built with
// --cpu=NAME)" into msg and returns 1. nnrt_main checks it first.
int nnrt_cpu_check(const NnrtModel *model, char *msg, size_t cap);

// ---- called by the generated training loop ----------------------------------
// Optimizer steps already taken: 0 for a fresh run, the checkpoint's step
// count after `train --load` restored the optimizer state. Call it once
// before the epoch loop and count the optimizer's t on from it (the first
// update of the run uses t = nnrt_step_start(run) + 1).
int64_t nnrt_step_start(NnrtRun *run);
// The key of step t's random draws (see nnrt_rng.h): a hash of the run's
// seed and t, so draws continue the same stream when a run resumes.
int64_t nnrt_step_key(NnrtRun *run, int64_t t);
// Starts an epoch (0-based in this run; a resumed run continues the saved
// run's numbering and shuffles internally); returns the number of batches,
// or 0 to stop.
int64_t nnrt_epoch_begin(NnrtRun *run, int64_t epoch);
// The epoch being trained, from 0, counting the epochs of the run a
// checkpoint resumed (a schedule's `epoch`).
int64_t nnrt_epoch_number(NnrtRun *run);
// The learning rate of the step about to run (reported per epoch).
void nnrt_report_lr(NnrtRun *run, double lr);
// Gathers batch i of the current epoch (shuffled) into x and y; returns its
// rows. If nnrt_batch_prefetch was asked for batch i into the same x and y,
// waits for that instead.
int64_t nnrt_batch_fetch(NnrtRun *run, int64_t i, float *x, float *y);
// May start gathering batch i into x and y on an idle worker of the thread
// pool while the caller computes (or do nothing: nnrt_batch_fetch then
// gathers it). x and y must not be used until nnrt_batch_fetch(run, i, x, y)
// returns. Generated code calls it once per step for the next batch, with
// the other of two batch buffers.
void nnrt_batch_prefetch(NnrtRun *run, int64_t i, float *x, float *y);
// Reports a finished step (called after the optimizer update; counts the
// step): loss summed over its rows, correct predictions. Returns nonzero
// when training must stop (interrupt, loss not finite).
int64_t nnrt_batch_end(NnrtRun *run, int64_t rows, double loss_sum,
                       double correct);
// A model with named metrics (model->nmetrics > 0): called once per batch,
// before that batch's nnrt_batch_end, with model->nmetrics values, value k
// the batch's mean of metric k (metric_names[k]). The runtime averages each
// over the epoch weighted by the batch rows nnrt_batch_end reports, and
// prints them by name in the epoch line, the JSON lines and the training
// log. (Evaluation gets them from infer: with nmetrics > 0, stats has
// 2 + nmetrics entries and infer adds metric k summed over rows to
// stats[2 + k].)
void nnrt_batch_metrics(NnrtRun *run, const double *values);
// Ends an epoch: metrics line, evaluation, checkpoint. Nonzero means stop.
int64_t nnrt_epoch_end(NnrtRun *run, int64_t epoch);
// --check-numerics: nonzero when generated code must pass every kernel's
// output to nnrt_check_values (asked once, before the first epoch), and the
// parameters after each optimizer update to nnrt_check_params. The first
// NaN or infinity found stops the run (nnrt_batch_end then returns nonzero)
// with a message naming `what` ("'matmul' (value %12) in dense_1 at
// m.nn:2:17") or the parameter.
int64_t nnrt_check_numerics(NnrtRun *run);
void nnrt_check_values(NnrtRun *run, const float *p, int64_t n,
                       const char *what);
void nnrt_check_params(NnrtRun *run, const float *params);

// ---- data parallelism (binaries built with `nnc --mpi`, runtime/mpi.c) -----
// The generated main of an --mpi binary calls this instead of nnrt_main.
int nnrt_mpi_main(const NnrtModel *model, int argc, char **argv);
// After the backward kernel that finished gradient g[0, n): scales it by
// this rank's share of the global batch and starts summing it over the
// ranks. nnrt_grad_wait, before the optimizer, waits for every sum.
void nnrt_grad_ready(NnrtRun *run, float *g, int64_t n);
void nnrt_grad_wait(NnrtRun *run);
// With the gradient block (laid out like the n trainable floats of params,
// announced once by nnrt_grad_layout before the first step), each rank
// updates only its shard: nnrt_grad_shard waits for the sums of its shard
// and returns its size, its first element in *lo; after the optimizer's
// pass over it, nnrt_params_gather brings every rank every shard.
void nnrt_grad_layout(NnrtRun *run, float *block, int64_t n);
int64_t nnrt_grad_shard(NnrtRun *run, int64_t *lo);
void nnrt_params_gather(NnrtRun *run, float *params);

// ---- the inference library (`nnc --emit=lib`, see lib.c) ---------------------
// A context: the model's parameters and an inference workspace for up to
// max_batch rows. Weights come from the safetensors file at path, or when
// path is NULL from the embedded bytes. NULL on failure, with the reason in
// err (cap bytes).
typedef struct NnrtLib NnrtLib;
NnrtLib *nnrt_lib_create(const NnrtModel *model, const char *path,
                         const void *embedded, size_t embedded_len,
                         int64_t max_batch, char *err, size_t cap);
// Predictions for rows inputs (x: rows x in_numel floats; out: rows x
// out_numel), max_batch at a time; 0 on success.
int nnrt_lib_run(NnrtLib *lib, const float *x, int64_t rows, float *out);
const NnrtModel *nnrt_lib_model(const NnrtLib *lib);
void nnrt_lib_free(NnrtLib *lib);

// ---- memory: every runtime allocation goes through one hook -----------------
typedef void *NnrtAllocFn(void *ud, void *ptr, size_t size);  // size 0 frees
void nnrt_set_alloc(NnrtAllocFn *fn, void *ud);
void *nnrt_alloc(size_t size);   // 64-byte aligned, zeroed; NULL on failure
void nnrt_free(void *ptr);

// ---- threads: called by generated kernels ------------------------------------
// Runs fn(ctx, i) for every i in [0, ntasks), spread over the pool's threads
// (the calling thread takes part); returns when all are done. Tasks must be
// independent (write disjoint memory): which thread runs which task varies.
// With 1 thread (or ntasks == 1) it just loops on the caller. A call from
// inside a task runs serially on that thread, and so does a call made while
// another thread is dispatching. nnrt_main starts the pool (--threads N,
// default one thread per CPU available) and stops it before returning; used
// without nnrt_main, the pool starts itself with the default on first use.
typedef void NnrtTaskFn(void *ctx, int64_t task);
void nnrt_parallel_for(NnrtTaskFn *fn, void *ctx, int64_t ntasks);
// Threads nnrt_parallel_for spreads tasks over, counting the caller (>= 1).
int64_t nnrt_num_threads(void);

#endif
