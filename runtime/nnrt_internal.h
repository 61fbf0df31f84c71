// nnrt_internal.h — what the runtime's files share with each other and with
// the unit tests; nothing here is part of the ABI with generated code.
//
// Each concern has one file: alloc.c (the allocation hook), rng.c (the
// counter-based RNG and shuffling), init.c (parameter initializers), data.c,
// idx.c and csv.c (loading and batching), checkpoint.c (safetensors),
// progress.c (progress bar, metrics lines), pool.c (the thread pool), run.c
// (the training run and the callbacks generated code calls), reconstruct.c
// (the autoencoder picture), png.c (PNG files and image grids), sample.c
// (the generator's picture), main.c (the command line, eval and predict)
// and, in libnnrt_mpi.a only, mpi.c (data parallelism, reached through
// NnrtDist). Functions that can fail return 0 on success and -1 on failure
// after writing a message into an NnrtErr; they never print and never exit,
// so only nnrt_main decides what reaches the user and the exit code.
#ifndef NNRT_INTERNAL_H
#define NNRT_INTERNAL_H

#include <stdint.h>
#include <stdio.h>
#include <zlib.h>

#include "nnrt.h"

// ---- errors -----------------------------------------------------------------
typedef struct NnrtErr {
  char msg[2048];  // "FILE: what is wrong", without the program name
} NnrtErr;

// Formats the message into err (when err is not NULL); returns -1.
int nnrt_fail(NnrtErr *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// ---- alloc.c ----------------------------------------------------------------
// count * elem bytes through nnrt_alloc; NULL on overflow or failure.
void *nnrt_alloc_array(int64_t count, size_t elem);

// ---- rng.c ------------------------------------------------------------------
// Independent random streams derived from the seed, so that drawing more
// numbers for one purpose never shifts another.
enum { NNRT_STREAM_INIT = 1, NNRT_STREAM_SHUFFLE = 2, NNRT_STREAM_DRAW = 3 };

// A key for stream `stream`, sub-stream `sub` (parameter index, epoch).
uint64_t nnrt_rng_key(uint64_t seed, uint64_t stream, uint64_t sub);
// The counter-th 64-bit number of the key's sequence (a pure function).
uint64_t nnrt_rng_u64(uint64_t key, uint64_t counter);
// Uniform in [0, 1) with 53 random bits.
double nnrt_rng_uniform(uint64_t key, uint64_t counter);
// Standard normal by Box-Muller from numbers 2*counter and 2*counter + 1.
double nnrt_rng_normal(uint64_t key, uint64_t counter);
// perm = a permutation of 0..n-1 that depends only on (seed, epoch).
void nnrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);

// ---- elements ---------------------------------------------------------------
// Parameters, optimizer state and workspace hold elements of
// NnrtModel.elt_size bytes: floats, or doubles for f64 models. They keep
// the type `float *` in the runtime's signatures (what every f32 model
// has); these read and write element i either way. A table without the
// field (0) is f32.
static inline size_t nnrt_elt(const NnrtModel *m) {
  return m->elt_size == 8 ? 8 : 4;
}
static inline double nnrt_elt_get(size_t es, const void *p, int64_t i) {
  return es == 8 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
static inline void nnrt_elt_set(size_t es, void *p, int64_t i, double v) {
  if (es == 8)
    ((double *)p)[i] = v;
  else
    ((float *)p)[i] = (float)v;
}
// &p[i] for elements of es bytes.
static inline void *nnrt_elt_ptr(size_t es, const void *p, int64_t i) {
  return (char *)p + (size_t)i * es;
}

// ---- init.c -----------------------------------------------------------------
// Fills parameter `index` (at params + p->offset) from its initializer.
// Where element i (row-major in p's declared shape) of parameter p lives,
// relative to p->offset: i itself, or its place in the transpose when the
// parameter is kept transposed.
static inline int64_t nnrt_param_at(const NnrtParamInfo *p, int64_t i) {
  if (!p->transposed)
    return i;
  return (i % p->dim[1]) * p->dim[0] + i / p->dim[1];
}

// init_orthogonal.c: orthonormal rows (or columns) of a 2-D weight.
int nnrt_init_orthogonal(const NnrtParamInfo *p, uint64_t key, void *params,
                         size_t es, NnrtErr *err);
int nnrt_init_param(const NnrtParamInfo *p, int64_t index, uint64_t seed,
                    float *params, NnrtErr *err);
// The same for params of elements of es bytes (4 or 8, see nnrt_elt).
int nnrt_init_param_elt(const NnrtParamInfo *p, int64_t index, uint64_t seed,
                        void *params, size_t es, NnrtErr *err);
// Every parameter of the model.
int nnrt_init_params(const NnrtModel *m, uint64_t seed, float *params,
                     NnrtErr *err);

// ---- data.c, idx.c, csv.c, npy.c ---------------------------------------------
// A loaded data set. Inputs stay bytes when the file holds bytes (IDX, NPY u1)
// and are converted to float times `scale` only when a batch is gathered.
// Labels are floats: ycols == out_numel values used as they are, or
// ycols == 1 holding a class index that gathering expands to one-hot
// (`onehot`), or ycols == 1 holding a scalar target when out_numel == 1.
typedef struct NnrtData {
  int64_t rows;          // examples
  int64_t xcols;         // inputs per example (the model's in_numel)
  int64_t ycols;         // label floats stored per example; 0: no labels
  int64_t out_numel;     // label floats per example after gathering
  int onehot;            // y holds class indices, expanded at gather time
  int self_target;       // no labels: the target is the input (autoencoders)
  float scale;           // inputs are multiplied by this when gathered
  uint8_t *x8;           // rows x xcols bytes (IDX, NPY u1), or NULL
  float *xf;             // rows x xcols floats (CSV, inline, NPY), or NULL
  float *y;              // rows x ycols floats, or NULL
  char path[4096];       // the file that was found, or "inline data"; named
                         // by every message about this data
} NnrtData;

// What to load: a data spec of the model, or a file given to `predict`.
// `limit` > 0 keeps only the first `limit` examples (after class filtering).
int nnrt_data_open(NnrtData *d, const NnrtDataSpec *spec,
                   const NnrtModel *m, int64_t limit, NnrtErr *err);
// A file to predict on: CSV (in_numel or more columns), IDX images or NPY.
int nnrt_data_open_input(NnrtData *d, const char *path, const NnrtModel *m,
                         double scale, NnrtErr *err);
void nnrt_data_close(NnrtData *d);

// Rows idx[first .. first+rows) (or first .. first+rows when idx is NULL)
// into x (rows x xcols) and, when y is not NULL, y (rows x out_numel).
void nnrt_data_gather(const NnrtData *d, const int64_t *idx, int64_t first,
                      int64_t rows, float *x, float *y);
// The same, prefetching rows idx[ahead .. ahead + nahead) (the next batch;
// nahead <= rows) while it converts.
void nnrt_data_gather_ahead(const NnrtData *d, const int64_t *idx,
                            int64_t first, int64_t rows, float *x, float *y,
                            int64_t ahead, int64_t nahead);

// Resolves a relative data path: $NNC_DATA folders, source_dir, then
// /usr/share/datasets. Absolute paths are used as they are.
int nnrt_data_find(const char *name, const char *source_dir, char *out,
                   size_t cap, NnrtErr *err);

// Shared by the loaders (data.c); they read d->path, d->xcols, d->out_numel
// and fill the rest.
// gzopen with the runtime's message on failure.
int nnrt_gz_open(const char *path, gzFile *f, NnrtErr *err);
// Reads up to n bytes; returns how many, or -1 on a read error.
int64_t nnrt_gz_read(gzFile f, void *buf, int64_t n);
// "PATH: read error (...)" from the stream's state; returns -1.
int nnrt_gz_error(gzFile f, const char *path, NnrtErr *err);
// Reads the `total` bytes of data that follow a header into *out (64-byte
// aligned, nnrt_free), failing on fewer bytes or on any byte after them.
// The buffer grows as data arrives, so a header that lies about its size
// cannot make us allocate more than twice what the file holds.
int nnrt_gz_read_data(gzFile f, const char *path, int64_t total,
                      uint8_t **out, NnrtErr *err);
// The kind of file by its first bytes (possibly gzip-compressed):
// NNRT_DATA_IDX (two zero bytes), NNRT_DATA_NPY ("\x93NUMPY"), otherwise
// NNRT_DATA_CSV; -1 when it cannot be opened.
int nnrt_data_sniff(const char *path, NnrtErr *err);
// Reads the whole (possibly gzip-compressed) file into *buf (NUL-terminated,
// freed with nnrt_free); *len excludes the NUL.
int nnrt_read_file(const char *path, char **buf, int64_t *len, NnrtErr *err);
// Checks label value v of row `row` (1-based, for messages) against the class
// filter and the model's outputs; *keep = 0 drops the row; *out is the label
// to store.
int nnrt_data_label(const NnrtDataSpec *spec, const NnrtData *d, double v,
                    const char *where, int64_t row, int *keep, float *out,
                    NnrtErr *err);
// IDX loader (idx.c): spec->path_x images and spec->path_y labels, both found.
int nnrt_idx_load(NnrtData *d, const NnrtDataSpec *spec, const char *path_y,
                  NnrtErr *err);
// IDX images without labels (predict).
int nnrt_idx_load_images(NnrtData *d, NnrtErr *err);
// CSV loader (csv.c); spec is NULL for predict input (labels ignored).
int nnrt_csv_load(NnrtData *d, const NnrtDataSpec *spec, NnrtErr *err);
// NPY loader (npy.c): d->path the inputs, path_y the labels, both found.
int nnrt_npy_load(NnrtData *d, const NnrtDataSpec *spec, const char *path_y,
                  NnrtErr *err);
// Text windows (text.c): d->path found, d->xcols the window length.
int nnrt_text_load(NnrtData *d, const NnrtDataSpec *spec, NnrtErr *err);
// NPY inputs without labels (predict).
int nnrt_npy_load_inputs(NnrtData *d, NnrtErr *err);

// ---- pool.c -----------------------------------------------------------------
enum { NNRT_MAX_THREADS = 1024 };
// CPUs this process may run on (sched_getaffinity), between 1 and
// NNRT_MAX_THREADS.
int64_t nnrt_pool_default_threads(void);
// (Re)starts the pool with n threads counting the caller (n <= 0: the
// default); pin: each thread (the caller too, until nnrt_pool_stop) bound to
// its own CPU, one per core first. Returns the threads running, which is
// fewer than n only when the system refuses to create more. Must not run
// while another thread is in nnrt_parallel_for.
int64_t nnrt_pool_start(int64_t n, int pin);
// Joins the workers (and unpins the caller). A later nnrt_parallel_for or
// nnrt_num_threads starts the default pool again.
void nnrt_pool_stop(void);
// Posts fn(ctx, 0) to run on a spinning worker while the caller goes on:
// 1 if posted, 0 if it cannot be (one thread, called from a task, or the
// slot is taken); the caller then does the work itself. A posted task must
// be waited for with nnrt_pool_background_wait, by the same thread, before
// anything it touches changes; the wait runs it on the caller if no worker
// has started it. One task at a time.
int nnrt_pool_background(NnrtTaskFn *fn, void *ctx);
void nnrt_pool_background_wait(void);

// ---- checkpoint.c -----------------------------------------------------------
// Writes a file atomically: fn writes it to path.tmp (returning 0, or -1 with
// errno set), which is flushed, fsynced and renamed over path. On failure
// path.tmp is removed and path is untouched.
typedef int NnrtWriteFn(FILE *f, void *ctx);
int nnrt_write_atomic(const char *path, NnrtWriteFn *fn, void *ctx,
                      NnrtErr *err);

// Where a training run stands, as a checkpoint's metadata records it; -1 in
// a field means the file does not say.
typedef struct NnrtTrainPos {
  int64_t epoch;     // completed epochs ("epoch")
  int64_t step;      // optimizer steps taken ("step")
  int64_t examples;  // examples of the next, unfinished epoch already
                     // trained on ("epoch_examples"; after Ctrl-C)
} NnrtTrainPos;

// What became of the optimizer state when loading.
typedef enum NnrtStateLoad {
  NNRT_STATE_NOT_ASKED,  // the caller passed no state buffer
  NNRT_STATE_RESTORED,   // every "optimizer.<k>.<param>" and "step" were read
  NNRT_STATE_ABSENT,     // the file holds none (an older or eval checkpoint)
  NNRT_STATE_MISMATCH,   // it holds another optimizer's state, or part of one
} NnrtStateLoad;

// Writes all parameters to `path` atomically, then (when state is not NULL)
// the model's nstate optimizer states of each parameter as
// "optimizer.<k>.<param>"; the metadata gets pos->epoch, and pos->step and
// pos->examples when they are >= 0.
int nnrt_checkpoint_write(const char *path, const NnrtModel *m,
                          const float *params, const float *state,
                          const NnrtTrainPos *pos, NnrtErr *err);
// Parameters only, with the "epoch" metadata (eval-style files).
int nnrt_checkpoint_save(const char *path, const NnrtModel *m,
                         const float *params, int64_t epoch, NnrtErr *err);
// Reads every model parameter from `path` into params after checking names,
// dtypes, shapes and offsets, and *pos from the metadata. With a status
// pointer and a state buffer, also the optimizer state when the file holds
// all of it and "step" (*status RESTORED; its tensors are checked like the
// parameters); otherwise state is left untouched and *status says why.
int nnrt_checkpoint_read(const char *path, const NnrtModel *m, float *params,
                         float *state, NnrtTrainPos *pos,
                         NnrtStateLoad *status, NnrtErr *err);
// Parameters only; *epoch gets the "epoch" metadata or -1.
int nnrt_checkpoint_load(const char *path, const NnrtModel *m, float *params,
                         int64_t *epoch, NnrtErr *err);

// ---- progress.c -------------------------------------------------------------
double nnrt_now(void);  // monotonic seconds

typedef struct NnrtProgress {
  int enabled;           // stderr is a terminal and not --quiet
  int drawn;             // a bar is on the screen and must be cleared
  double last_draw;      // nnrt_now() of the last redraw
} NnrtProgress;

// Redraws at most ~10 times a second (always when `force`).
void nnrt_progress_update(NnrtProgress *p, int64_t epoch, int64_t epochs,
                          int64_t done, int64_t total, double mean_loss,
                          double elapsed, int force);
void nnrt_progress_clear(NnrtProgress *p);

// One epoch's results; has_* say which optional parts exist.
typedef struct NnrtMetrics {
  int64_t epoch, epochs;            // 1-based epoch, of epochs
  double loss, accuracy;            // mean training loss, fraction correct
  int has_accuracy;                 // the model reports accuracy
  int has_val;                      // a validation split exists
  double val_loss, val_accuracy;
  int has_test;                     // a test set exists
  double test_loss, test_accuracy;
  double seconds, samples_per_s;    // training time only
  int has_lr;                       // a schedule sets the learning rate
  double lr;                        // the epoch's last learning rate
  int has_mistakes;                 // misclassified training examples are
  int64_t mistakes;                 // counted (a single thresholded output)
  // The model's named metrics (NnrtModel.nmetrics, nnrt_batch_metrics):
  int64_t nmetrics;                 // 0: none, and the pointers are unused
  const char *const *metric_names;
  const double *metrics;            // the epoch's means (rows-weighted)
  const double *val_metrics;        // with has_val: the validation means
  const double *test_metrics;       // with has_test: the test means
} NnrtMetrics;

// The human line ("epoch 1/5  loss 0.5123 ...") or one JSON object; no '\n'.
void nnrt_metrics_format(char *buf, size_t cap, const NnrtMetrics *m,
                         int json);
// Appends a JSON number (null when not finite).
void nnrt_json_number(char *buf, size_t cap, double v);
// A rate for people: 812 -> "812", 39512 -> "39.5k", 1234567 -> "1.23M".
void nnrt_format_rate(char *buf, size_t cap, double rate);

// ---- run.c, main.c ----------------------------------------------------------
typedef enum NnrtCommand {
  NNRT_CMD_TRAIN, NNRT_CMD_EVAL, NNRT_CMD_PREDICT, NNRT_CMD_RECONSTRUCT,
  NNRT_CMD_PLOT, NNRT_CMD_SAMPLE,
} NnrtCommand;

typedef struct NnrtDist NnrtDist;  // below

typedef struct NnrtOptions {
  NnrtCommand command;
  int64_t epochs, batch, seed;   // model defaults unless given
  int64_t limit;                 // 0: all training examples
  int64_t threads;               // 0: one per CPU available
  int pin_threads;               // --pin-threads
  int json, quiet, no_save;
  int batch_set;                 // --batch was given (eval, predict)
  const char *save, *load;       // NULL: the default checkpoint
  const char *input;             // predict INPUT
  const char *out;               // reconstruct, sample --out; NULL: default
  int64_t count;                 // reconstruct --count (default 16), sample
                                 // --count (default 64)
  const char *prog;              // program name for messages
  const char *argv0;             // as typed, for "try './model --help'"
  char default_ckpt[4096];       // "<basename of argv[0]>.safetensors"
  char default_png[4096];        // "<basename of argv[0]>-reconstruct.png"
  int no_shuffle;                // --no-shuffle or shuffle = false
  int stop_when_perfect;         // --stop-when-perfect or the train setting
  const char *log;               // train --log FILE; NULL: beside the checkpoint
  int no_log;                    // train --no-log
  int64_t save_every;            // --save-every N: also save every N steps
  int check_numerics;            // --check-numerics
  int count_set;                 // --count was given
  char default_samples[4096];    // "<basename of argv[0]>-samples.png"
  int64_t length;                // sample --length (default 500)
  double temperature;            // sample --temperature (default 1)
  NnrtDist *dist;                // MPI ranks (mpi.c), or NULL
} NnrtOptions;

// Buffers for running model->infer over a data set in chunks.
typedef struct NnrtEval {
  int64_t max_batch;             // rows per infer call
  float *x, *y, *out, *ws;
  double infer_seconds;          // time spent inside model->infer so far
  double *stats;                 // 2 + nmetrics sums for one infer call
} NnrtEval;

int nnrt_eval_open(NnrtEval *e, const NnrtModel *m, int64_t rows,
                   int want_out, NnrtErr *err);
void nnrt_eval_close(NnrtEval *e);
// Mean loss and accuracy over rows [first, first+rows) of d, and when
// metrics is not NULL the means of the model's nmetrics named metrics
// (infer's stats[2 + k]); adds the time spent in model->infer to
// e->infer_seconds.
void nnrt_evaluate(const NnrtModel *m, const float *params, NnrtEval *e,
                   const NnrtData *d, int64_t first, int64_t rows,
                   double *loss, double *accuracy, double *metrics);

// sample (sample_text.c): o->length bytes generated after the first window
// of the training text, each drawn from the softmax of the last step's
// logits divided by o->temperature; printed to stdout.
int nnrt_sample_text(const NnrtModel *m, const NnrtOptions *o,
                     const float *params, NnrtErr *err);
// Data parallelism (runtime/mpi.c; NULL in a plain run): what run.c and
// main.c need of MPI, as functions, so libnnrt.a itself needs no MPI.
struct NnrtDist {
  int rank, size;                // this process, of size ranks
  const char *prog;              // program name for messages
  double weight;                 // rows of this rank's shard / rows of the
                                 // global batch (set by nnrt_batch_fetch)
  int equal;                     // every rank's shard has as many rows
                                 // (the sum is then scaled, not each part)
  int agreed;                    // the ranks stopped together: exit cleanly
  // v[0, n) := its sum over the ranks, added in rank order.
  void (*sum)(struct NnrtDist *d, double *v, int n);
  // p[0, n) := the sum over the ranks of w * p (w: that rank's weight).
  void (*average)(struct NnrtDist *d, float *p, int64_t n, double w);
  // What a rank ended by mpirun (a peer died) says about the checkpoint.
  void (*saved)(struct NnrtDist *d, const char *kept);
  // 1 when every rank passes the same h (a hash of its weights).
  int (*same)(struct NnrtDist *d, uint64_t h);
  // The optimizer state of every rank's shard to every rank (each rank
  // updates only its shard of the parameters; a no-op when it updates all).
  void (*gather_state)(struct NnrtDist *d, float *state, int64_t nstate,
                       int64_t stride);
};

// The run's NnrtDist, or NULL.
NnrtDist *nnrt_run_dist(NnrtRun *run);
// nnrt_main with data parallelism (dist NULL: nnrt_main itself).
int nnrt_main_dist(const NnrtModel *m, int argc, char **argv, NnrtDist *dist);
// Rows [*lo, *lo + *n) of `rows` are this rank's share (all of them
// without dist).
void nnrt_dist_shard(const NnrtDist *dist, int64_t rows, int64_t *lo,
                     int64_t *n);
// nnrt_evaluate over every rank's share of the rows, reduced (the named
// metrics too, when metrics is not NULL).
void nnrt_evaluate_dist(const NnrtModel *m, const float *params, NnrtEval *e,
                        const NnrtData *d, int64_t first, int64_t rows,
                        NnrtDist *dist, double *loss, double *accuracy,
                        double *metrics);

// The train command; returns the exit code.
int nnrt_train_command(const NnrtModel *m, const NnrtOptions *o);

// ---- plot.c -----------------------------------------------------------------
// Opens the per-epoch CSV (append: keep the rows already there, as a resumed
// run does) and writes its header line if it is new, with a column NAME,
// val_NAME and test_NAME for each of m's named metrics (m may be NULL);
// NULL after err.
FILE *nnrt_log_open(const char *path, int append, const NnrtModel *m,
                    NnrtErr *err);
// One row; -1 when writing failed.
int nnrt_log_epoch(FILE *f, const NnrtMetrics *m);
// plot INPUT.csv [--out FILE.svg]: loss and accuracy curves as SVG.
int nnrt_plot_command(const NnrtOptions *o, NnrtErr *err);

// ---- reconstruct.c, png.c -----------------------------------------------------
// A picture, row-major, `channels` bytes per pixel (1: gray, 3: RGB).
typedef struct NnrtImage {
  int64_t width, height;
  uint8_t *pixels;               // nnrt_alloc'd
  int64_t channels;
} NnrtImage;

// How a tensor of shape dim[0..rank) (numel values) is drawn: rank >= 2:
// the last two dimensions are height and width and the rest `channels`
// (when they divide numel); rank 1 (or 0) of a square size: that square,
// one channel; otherwise one row of numel pixels.
void nnrt_image_shape(int64_t rank, const int64_t *dim, int64_t numel,
                      int64_t *channels, int64_t *height, int64_t *width);
// The size one example is drawn at (nnrt_image_shape of the input).
void nnrt_example_size(const NnrtModel *m, int64_t *height, int64_t *width);
// The grid of n examples: rows of up to 8 inputs (x, n x in_numel), each
// above a row of their reconstructions (out), with a 2-pixel gray (128)
// gutter around every image. A value v is drawn as round(255 * v) after
// clamping it to [0, 1] (NaN as 0); three channels in color, any other
// number of channels as their mean in gray.
int nnrt_reconstruct_grid(NnrtImage *img, const NnrtModel *m, const float *x,
                          const float *out, int64_t n, NnrtErr *err);
// Writes img as a binary PGM (P5, maxval 255; color as the mean of its
// channels), atomically.
int nnrt_pgm_write(const char *path, const NnrtImage *img, NnrtErr *err);

// The PNG file of img (8 bits, channels 1 gray or 3 RGB) in memory: *out
// (nnrt_alloc'd) of *len bytes. filter 0..4 filters every row with that
// PNG filter type (None, Sub, Up, Average, Paeth); -1 picks per row the
// one with the least sum of absolute filtered values.
int nnrt_png_encode(const NnrtImage *img, int filter, uint8_t **out,
                    size_t *len, NnrtErr *err);
// Writes img as a PNG, atomically (FILE.tmp, fsync, rename).
int nnrt_png_write(const char *path, const NnrtImage *img, NnrtErr *err);
// A PGM when path ends in .pgm (any case), otherwise a PNG.
int nnrt_image_write(const char *path, const NnrtImage *img, NnrtErr *err);
// A gray (128) picture of channels (1 or 3) bytes per pixel for
// cells_x x cells_y images of h x w pixels with `gutter` pixels around each:
// cells_x * (w + gutter) + gutter wide, cells_y * (h + gutter) + gutter high.
int nnrt_image_alloc(NnrtImage *img, int64_t cells_x, int64_t cells_y,
                     int64_t h, int64_t w, int64_t gutter, int64_t channels,
                     NnrtErr *err);
// Draws one example (channels x h x w floats, channels first) with its top
// left corner at (x0, y0): RGB when both it and img have three channels,
// otherwise the mean of its channels in gray. v is drawn as
// round(255 * clamp(v, 0, 1)), NaN as 0.
void nnrt_image_draw(NnrtImage *img, const float *e, int64_t channels,
                     int64_t h, int64_t w, int64_t x0, int64_t y0);
// n images (x: n x channels x h x w floats) in rows of `cols`, each with a
// gray gutter of `gutter` pixels around it; RGB when channels == 3.
int nnrt_image_grid(NnrtImage *img, const float *x, int64_t n,
                    int64_t channels, int64_t h, int64_t w, int64_t cols,
                    int64_t gutter, NnrtErr *err);
// The reconstruct command with loaded params (errors in err, -1).
int nnrt_reconstruct_command(const NnrtModel *m, const NnrtOptions *o,
                             const float *params, NnrtErr *err);

// ---- sample.c ---------------------------------------------------------------
// The sample command with loaded params: o->count samples from
// model->sample into a grid of 8 columns at o->out (default
// o->default_samples); errors in err, -1.
int nnrt_sample_command(const NnrtModel *m, const NnrtOptions *o,
                        const float *params, NnrtErr *err);

#endif
