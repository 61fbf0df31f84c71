// run.c — one training run: setup, the callbacks generated code makes, and
// what happens when it stops (finished, converged with --stop-when-perfect,
// Ctrl-C, divergence, an error).
//
// nnrt_train_command loads the data, allocates and initializes (or loads)
// the parameters, the optimizer state and the workspace, then hands control
// to model->train, which calls back nnrt_epoch_begin / nnrt_batch_fetch /
// nnrt_batch_end / nnrt_epoch_end. Invariants: the checkpoint file only ever
// holds weights from a completed step with a finite loss (after every epoch,
// and on Ctrl-C); a run that diverged never overwrites it. Epoch metrics
// time only training: evaluation and saving happen after `seconds` is taken.
// Callbacks never exit: they record why the run stops in NnrtRun.stop and
// return nonzero, and nnrt_train_command reports it and picks the exit code.
// A stop is also honoured by generated code that ignores the return values,
// since nnrt_epoch_begin then returns 0.
//
// Resuming: a checkpoint records the completed epochs, the optimizer steps
// taken, how far into the next epoch a Ctrl-C stopped, and the optimizer
// state. `train --load` continues from there: generated code numbers this
// run's epochs from 0, and the runtime adds the completed epochs (epoch0)
// for shuffling, messages and the checkpoint, skips the examples of an
// interrupted epoch already trained on, and hands the step count to the
// optimizer through nnrt_step_start. With the same seed and batch size the
// resumed run is bit-identical to one that was never stopped.
//
// Data parallelism (NnrtRun.dist, from mpi.c; docs/distributed.md): each
// rank gathers its share of every batch, nnrt_batch_end sums the ranks'
// results and stop flags (so every rank stops at the same step), the
// evaluation is sharded and summed, and only rank 0 prints, logs and
// writes checkpoints.
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnrt_internal.h"
#include "nnrt_rng.h"

enum { EVAL_BATCH = 1000 };

typedef enum NnrtStop {
  STOP_NONE, STOP_INTERRUPT, STOP_DIVERGED, STOP_BAD_WEIGHTS, STOP_ERROR,
  STOP_EARLY,  // early stopping: the best weights are back, a clean exit
  STOP_CONVERGED,  // --stop-when-perfect: an epoch made no mistake
  STOP_NUMERICS,                 // --check-numerics found a NaN or infinity
  STOP_PEER,                     // another MPI rank stopped the run
} NnrtStop;

// A batch gathered in the background (nnrt_batch_prefetch).
typedef struct Prefetch {
  NnrtRun *r;
  int64_t i;                     // the batch of the current epoch
  float *x, *y;                  // where it goes
} Prefetch;

struct NnrtRun {
  const NnrtModel *m;
  const NnrtOptions *o;
  NnrtData train, test;          // training rows then validation rows
  int has_test;
  int64_t ntrain, nval;          // rows [0, ntrain) train, then nval held out
  int64_t batch, epochs;         // this run's epochs (--epochs)
  uint64_t seed;
  int64_t *perm;                 // this epoch's order of the training rows
  float *params, *state, *ws;
  NnrtEval eval;                 // validation and test evaluation buffers
  const char *save_path;         // NULL with --no-save
  FILE *human;                   // stdout, or stderr with --json
  NnrtProgress progress;
  // Where --load left off (0 for a fresh run).
  int64_t epoch0;                // epochs completed before this run
  int64_t skip;                  // examples of epoch epoch0 already trained on
  // The current epoch.
  int64_t epoch;                 // 0-based, counting epoch0 (absolute)
  int64_t first;                 // row of the perm its first batch starts at
  int64_t nb;                    // its batches
  int64_t step;                  // batches finished in this epoch
  int64_t seen;                  // examples finished in this run of it
  double loss_sum, correct, t0;
  // The whole run.
  int64_t steps;                 // optimizer steps, counting earlier runs
  int64_t epochs_done;           // completed epochs, counting epoch0
  int64_t saved_epoch;           // epoch in the checkpoint this run wrote;
                                 // 0: none yet
  int64_t unsaved_steps;         // steps since the checkpoint was written
  NnrtStop stop;
  int64_t stop_epoch, stop_step; // where it stopped (1-based)
  NnrtErr err;                   // STOP_ERROR's message
  Prefetch pf;                   // the batch the pool's worker is gathering,
  int pf_posted;                 // when pf_posted (waited for before use)
  int has_lr;                    // a schedule reported this epoch's lr
  double lr;
  // Early stopping (m->patience > 0): the best watched loss so far, its
  // epoch (1-based) and weights, and epochs since it.
  double best_loss;
  int64_t best_epoch, since_best;
  float *best;
  // Convergence (see count_mistakes).
  int count_mistakes;            // misclassified examples are counted
  int64_t converged_epoch;       // first epoch without a mistake; 0: none
  int64_t last_mistakes;         // in the last complete epoch
  FILE *log;                     // the per-epoch CSV (plot.c), or NULL
  char log_path[4096];
  int64_t saved_step;            // steps in the checkpoint --save-every
                                 // wrote last; 0 when an epoch's save came
                                 // after it (or none was written)
  int64_t saves;                 // checkpoints written by this run
  // Named metrics (m->nmetrics; nnrt_batch_metrics): one block of
  // 5 x nmetrics doubles, NULL without metrics.
  double *metric_block;
  double *pending;               // the values of the batch about to end
  int has_pending;               // nnrt_batch_metrics came since the last end
  double *metric_sum;            // this epoch: value x rows, summed
  double metric_rows;            // rows of the batches that reported them
  double *metric_mean, *val_metrics, *test_metrics;  // for NnrtMetrics
  // Data parallelism (nnc --mpi, see mpi.c): NULL in a plain run. Each rank
  // trains on its shard of every batch; only rank 0 prints and saves
  // (`silent` on the others).
  NnrtDist *dist;
  int silent;
};

// Global mutable state, unavoidable: a signal handler can only reach the
// program through a static flag. Counts SIGINTs since training started.
static volatile sig_atomic_t interrupts;

static void on_sigint(int sig) {
  (void)sig;
  if (interrupts++ > 0) {  // a second Ctrl-C: the user insists
    static const char msg[] = "\ninterrupted again; exiting without saving\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(130);
  }
}

static void stop_at(NnrtRun *r, NnrtStop why, int64_t epoch, int64_t step) {
  if (r->stop)
    return;
  r->stop = why;
  r->stop_epoch = epoch;
  r->stop_step = step;
}

// ---- evaluation -------------------------------------------------------------
int nnrt_eval_open(NnrtEval *e, const NnrtModel *m, int64_t rows,
                   int want_out, NnrtErr *err) {
  memset(e, 0, sizeof *e);
  e->max_batch = rows < EVAL_BATCH ? (rows > 0 ? rows : 1) : EVAL_BATCH;
  int64_t ws;
  if (__builtin_mul_overflow(m->infer_ws_per_row, e->max_batch, &ws) ||
      __builtin_add_overflow(ws, m->infer_ws_fixed, &ws))
    ws = -1;
  e->x = nnrt_alloc_array(e->max_batch * m->in_numel, sizeof(float));
  e->y = nnrt_alloc_array(e->max_batch * m->out_numel, sizeof(float));
  e->out = want_out ? nnrt_alloc_array(e->max_batch * m->out_numel,
                                       sizeof(float))
                    : NULL;
  e->ws = nnrt_alloc_array(ws, nnrt_elt(m));
  e->stats = nnrt_alloc_array(m->nmetrics > 0 ? 2 + m->nmetrics : 2,
                              sizeof(double));
  if (!e->x || !e->y || (want_out && !e->out) || !e->ws || !e->stats) {
    nnrt_eval_close(e);
    return nnrt_fail(err, "out of memory (evaluation buffers)");
  }
  return 0;
}

void nnrt_eval_close(NnrtEval *e) {
  nnrt_free(e->x);
  nnrt_free(e->y);
  nnrt_free(e->out);
  nnrt_free(e->ws);
  nnrt_free(e->stats);
  memset(e, 0, sizeof *e);
}

void nnrt_evaluate(const NnrtModel *m, const float *params, NnrtEval *e,
                   const NnrtData *d, int64_t first, int64_t rows,
                   double *loss, double *accuracy, double *metrics) {
  int64_t nm = m->nmetrics > 0 ? m->nmetrics : 0;
  double sum[2] = {0, 0};
  for (int64_t k = 0; metrics && k < nm; k++)
    metrics[k] = 0;
  for (int64_t s = 0; s < rows; s += e->max_batch) {
    int64_t n = rows - s < e->max_batch ? rows - s : e->max_batch;
    nnrt_data_gather(d, NULL, first + s, n, e->x, e->y);
    double *stats = e->stats;
    memset(stats, 0, sizeof(double) * (size_t)(2 + nm));
    double t0 = nnrt_now();
    m->infer(params, e->ws, e->max_batch, e->x, e->y, n, NULL, stats);
    e->infer_seconds += nnrt_now() - t0;
    sum[0] += stats[0];
    sum[1] += stats[1];
    for (int64_t k = 0; metrics && k < nm; k++)
      metrics[k] += stats[2 + k];
  }
  *loss = rows ? sum[0] / (double)rows : 0;
  *accuracy = rows ? sum[1] / (double)rows : 0;
  for (int64_t k = 0; metrics && k < nm; k++)
    metrics[k] = rows ? metrics[k] / (double)rows : 0;
}

void nnrt_dist_shard(const NnrtDist *dist, int64_t rows, int64_t *lo,
                     int64_t *n) {
  if (!dist || dist->size <= 1) {
    *lo = 0;
    *n = rows;
    return;
  }
  *lo = rows * dist->rank / dist->size;
  *n = rows * (dist->rank + 1) / dist->size - *lo;
}

void nnrt_evaluate_dist(const NnrtModel *m, const float *params, NnrtEval *e,
                        const NnrtData *d, int64_t first, int64_t rows,
                        NnrtDist *dist, double *loss, double *accuracy,
                        double *metrics) {
  if (!dist || dist->size <= 1) {
    nnrt_evaluate(m, params, e, d, first, rows, loss, accuracy, metrics);
    return;
  }
  int64_t lo, n, nm = metrics && m->nmetrics > 0 ? m->nmetrics : 0;
  nnrt_dist_shard(dist, rows, &lo, &n);
  double l = 0, a = 0;
  for (int64_t k = 0; k < nm; k++)
    metrics[k] = 0;
  if (n > 0)
    nnrt_evaluate(m, params, e, d, first + lo, n, &l, &a, metrics);
  // The sums of this shard (means x rows), then the means of all rows.
  double v[2 + 64], *sv = nm > 64 ? nnrt_alloc_array(2 + nm, sizeof(double))
                                  : v;
  if (!sv)  // (out of memory: the metrics of this shard alone)
    nm = 0, sv = v;
  sv[0] = l * (double)n;
  sv[1] = a * (double)n;
  for (int64_t k = 0; k < nm; k++)
    sv[2 + k] = metrics[k] * (double)n;
  dist->sum(dist, sv, (int)(2 + nm));
  *loss = rows ? sv[0] / (double)rows : 0;
  *accuracy = rows ? sv[1] / (double)rows : 0;
  for (int64_t k = 0; k < nm; k++)
    metrics[k] = rows ? sv[2 + k] / (double)rows : 0;
  if (sv != v)
    nnrt_free(sv);
}

// ---- callbacks from generated code ------------------------------------------
// The rows of batch i of the current epoch.
static int64_t batch_rows(const NnrtRun *r, int64_t i) {
  int64_t first = r->first + i * r->batch;
  return r->ntrain - first < r->batch ? r->ntrain - first : r->batch;
}

// Gathers (this rank's share of) batch i into x and y, prefetching the
// rows of batch i + 1.
static void batch_gather(const NnrtRun *r, int64_t i, float *x, float *y) {
  int64_t first = r->first + i * r->batch, rows = batch_rows(r, i);
  int64_t lo, n, nlo = 0, nn = 0;
  nnrt_dist_shard(r->dist, rows, &lo, &n);
  if (i + 1 < r->nb)
    nnrt_dist_shard(r->dist, batch_rows(r, i + 1), &nlo, &nn);
  int64_t next = first + rows + nlo;
  nnrt_data_gather_ahead(&r->train, r->perm, first + lo, n, x, y, next,
                         nn < n ? nn : n);
}

static void prefetch_task(void *ctx, int64_t t) {
  (void)t;
  const Prefetch *p = ctx;
  batch_gather(p->r, p->i, p->x, p->y);
}

// Waits for the background gather, if one was posted; 1 if it gathered
// batch i into exactly x and y.
static int prefetch_settle(NnrtRun *r, int64_t i, const float *x,
                           const float *y) {
  if (!r->pf_posted)
    return 0;
  nnrt_pool_background_wait();
  r->pf_posted = 0;
  return r->pf.i == i && r->pf.x == x && r->pf.y == y;
}

int64_t nnrt_step_start(NnrtRun *r) { return r->steps; }

int64_t nnrt_epoch_number(NnrtRun *r) { return r->epoch; }

void nnrt_report_lr(NnrtRun *r, double lr) {
  r->has_lr = 1;
  r->lr = lr;
}

int64_t nnrt_step_key(NnrtRun *r, int64_t t) {
  uint64_t key = nnrt_rng_key(r->seed, NNRT_STREAM_DRAW, (uint64_t)t);
  // Each rank's shard draws its own numbers (docs/distributed.md): the same
  // key would give row k of every shard the same dropout mask.
  if (r->dist && r->dist->size > 1)
    key = nnrt_mix64(key ^ ((uint64_t)(r->dist->rank + 1) * NNRT_GOLDEN));
  return (int64_t)key;
}

NnrtDist *nnrt_run_dist(NnrtRun *r) { return r->dist; }

int64_t nnrt_epoch_begin(NnrtRun *r, int64_t epoch) {
  prefetch_settle(r, -1, NULL, NULL);  // before the order changes
  if (interrupts && !r->dist)  // (ranks agree on stops in nnrt_batch_end)
    stop_at(r, STOP_INTERRUPT, r->epoch0 + epoch + 1, 0);
  if (r->stop || epoch < 0 || epoch >= r->epochs)
    return 0;
  r->epoch = r->epoch0 + epoch;
  // The first epoch of a run resumed after Ctrl-C finishes the interrupted
  // one: same order, starting after the examples already trained on.
  r->first = epoch == 0 ? r->skip : 0;
  r->nb = (r->ntrain - r->first + r->batch - 1) / r->batch;
  r->step = r->first / r->batch;
  r->seen = 0;
  r->loss_sum = r->correct = 0;
  for (int64_t k = 0; k < r->m->nmetrics; k++)
    r->metric_sum[k] = 0;
  r->metric_rows = 0;
  r->has_pending = 0;
  if (r->o->no_shuffle)
    for (int64_t k = 0; k < r->ntrain; k++)
      r->perm[k] = k;
  else
    nnrt_shuffle(r->perm, r->ntrain, r->seed, r->epoch);
  r->t0 = nnrt_now();
  nnrt_progress_update(&r->progress, r->epoch + 1, r->epoch0 + r->epochs,
                       r->first, r->ntrain, 0, 0, 1);
  return r->nb;
}

int64_t nnrt_batch_fetch(NnrtRun *r, int64_t i, float *x, float *y) {
  int ready = prefetch_settle(r, i, x, y);
  if (i < 0 || i >= r->nb)
    return 0;
  if (!ready)
    batch_gather(r, i, x, y);
  if (!r->dist)
    return batch_rows(r, i);
  int64_t lo, n, rows = batch_rows(r, i);
  nnrt_dist_shard(r->dist, rows, &lo, &n);
  r->dist->weight = (double)n / (double)rows;
  r->dist->equal = rows % r->dist->size == 0;
  return n;
}

void nnrt_batch_prefetch(NnrtRun *r, int64_t i, float *x, float *y) {
  if (r->pf_posted || i < 0 || i >= r->nb)
    return;
  r->pf = (Prefetch){r, i, x, y};
  r->pf_posted = nnrt_pool_background(prefetch_task, &r->pf);
}

static int save(NnrtRun *r);

int64_t nnrt_check_numerics(NnrtRun *r) { return r->o->check_numerics; }

// The first non-finite value of p[0, n), or -1.
static int64_t first_nonfinite(size_t es, const void *p, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(nnrt_elt_get(es, p, i)))
      return i;
  return -1;
}

void nnrt_check_values(NnrtRun *r, const float *p, int64_t n,
                       const char *what) {
  size_t es = nnrt_elt(r->m);
  int64_t i = r->stop ? -1 : first_nonfinite(es, p, n);
  if (i < 0)
    return;
  nnrt_fail(&r->err, "the first non-finite value (%g) is element %lld of "
            "%s, at epoch %lld, step %lld", nnrt_elt_get(es, p, i),
            (long long)i, what,
            (long long)(r->epoch + 1), (long long)(r->step + 1));
  stop_at(r, STOP_NUMERICS, r->epoch + 1, r->step + 1);
}

void nnrt_check_params(NnrtRun *r, const float *params) {
  const NnrtModel *m = r->m;
  for (int64_t k = 0; !r->stop && k < m->nparams; k++) {
    const NnrtParamInfo *p = &m->params[k];
    size_t es = nnrt_elt(m);
    int64_t i =
        first_nonfinite(es, nnrt_elt_ptr(es, params, p->offset), p->numel);
    if (i < 0)
      continue;
    nnrt_fail(&r->err, "the first non-finite value (%g) is in parameter "
              "'%s' after the optimizer's update, at epoch %lld, step %lld "
              "(its gradient was finite: the step was too large)",
              nnrt_elt_get(es, params, p->offset + i), p->name,
              (long long)(r->epoch + 1), (long long)(r->step + 1));
    stop_at(r, STOP_NUMERICS, r->epoch + 1, r->step + 1);
  }
}

void nnrt_batch_metrics(NnrtRun *r, const double *values) {
  for (int64_t k = 0; k < r->m->nmetrics; k++)
    r->pending[k] = values[k];
  r->has_pending = r->m->nmetrics > 0;
}

// The ranks' step results summed, and their stops agreed on: buffers
// (running statistics) averaged by shard size, the loss and correct count
// of the whole batch, and a stop on any rank stops every rank here.
static int dist_step(NnrtRun *r, int64_t *rows, double *loss_sum,
                     double *correct, int *interrupted) {
  NnrtDist *d = r->dist;
  const NnrtModel *m = r->m;
  int64_t b0 = m->param_numel;
  for (int64_t k = 0; k < m->nparams; k++)
    if (m->params[k].buffer && m->params[k].offset < b0)
      b0 = m->params[k].offset;
  if (b0 < m->param_numel)  // buffers sit after the trainable parameters
    d->average(d, r->params + b0, m->param_numel - b0, d->weight);
  // The named metrics of the batch are this shard's means: summed as
  // value x rows, then the mean of the whole batch.
  int64_t nm = r->has_pending ? m->nmetrics : 0;
  double v[5 + 64] = {(double)*rows, *rows ? *loss_sum : 0,
                      *rows ? *correct : 0, interrupts != 0,
                      r->stop != STOP_NONE};
  double *mv = nm > 64 ? nnrt_alloc_array(5 + nm, sizeof(double)) : v;
  if (!mv) {
    nnrt_fail(&r->err, "out of memory (%lld metrics)", (long long)nm);
    stop_at(r, STOP_ERROR, r->epoch + 1, r->step);
    return 1;
  }
  if (mv != v)
    memcpy(mv, v, sizeof(double) * 5);
  for (int64_t k = 0; k < nm; k++)
    mv[5 + k] = *rows ? r->pending[k] * (double)*rows : 0;
  d->sum(d, mv, (int)(5 + nm));
  *rows = (int64_t)mv[0];
  *loss_sum = mv[1];
  *correct = mv[2];
  *interrupted = mv[3] > 0;
  for (int64_t k = 0; k < nm; k++)
    r->pending[k] = *rows ? mv[5 + k] / (double)*rows : 0;
  if (mv[4] > 0 && !r->stop)
    stop_at(r, STOP_PEER, r->epoch + 1, r->step);
  if (mv != v)
    nnrt_free(mv);
  return r->stop != STOP_NONE;
}

int64_t nnrt_batch_end(NnrtRun *r, int64_t rows, double loss_sum,
                       double correct) {
  r->step++;
  r->steps++;  // the optimizer has updated, whatever the loss
  int interrupted = interrupts != 0;
  if (r->dist && dist_step(r, &rows, &loss_sum, &correct, &interrupted))
    return 1;
  if (r->stop == STOP_NUMERICS)
    return 1;
  if (!isfinite(loss_sum)) {
    stop_at(r, STOP_DIVERGED, r->epoch + 1, r->step);
    return 1;
  }
  r->unsaved_steps++;
  r->seen += rows;
  r->loss_sum += loss_sum;
  r->correct += correct;
  if (r->has_pending) {  // batch means, weighted by the batch's rows
    for (int64_t k = 0; k < r->m->nmetrics; k++)
      r->metric_sum[k] += r->pending[k] * (double)rows;
    r->metric_rows += (double)rows;
    r->has_pending = 0;
  }
  if (r->o->save_every > 0 && r->save_path &&
      r->steps % r->o->save_every == 0 && r->first + r->seen < r->ntrain) {
    // (the epoch's last step is saved by nnrt_epoch_end with its metrics)
    if (save(r)) {
      stop_at(r, STOP_ERROR, r->epoch + 1, r->step);
      return 1;
    }
    r->unsaved_steps = 0;
    r->saved_step = r->steps;
  }
  if (interrupted) {
    stop_at(r, STOP_INTERRUPT, r->epoch + 1, r->step);
    return 1;
  }
  nnrt_progress_update(&r->progress, r->epoch + 1, r->epoch0 + r->epochs,
                       r->first + r->seen, r->ntrain,
                       r->loss_sum / (double)r->seen, nnrt_now() - r->t0, 0);
  return 0;
}

// The checkpoint: weights, optimizer state and where the run stands (in
// the middle of epoch epochs_done + 1 when Ctrl-C stopped it there).
// (Test hook: NNRT_TEST_KILL_AFTER_SAVE=K kills the process with SIGKILL
// right after its K-th save, as a crash would; tests/e2e/crash_safety.sh.)
static int save(NnrtRun *r) {
  int64_t into = r->epoch == r->epochs_done ? r->first + r->seen : 0;
  NnrtTrainPos pos = {r->epochs_done, r->steps, into};
  int rc = 0;
  if (r->dist)  // each rank holds the optimizer state of its shard
    r->dist->gather_state(r->dist, r->state, r->m->nstate, r->m->param_numel);
  if (!r->dist || r->dist->rank == 0)  // the weights are the same everywhere
    rc = nnrt_checkpoint_write(r->save_path, r->m, r->params, r->state, &pos,
                               &r->err);
  if (!rc && r->dist) {
    char kept[4096 + 128];
    snprintf(kept, sizeof kept, "the last checkpoint, %s (epoch %lld, step "
             "%lld), is whole; train --load %s resumes from it", r->save_path,
             (long long)r->epochs_done, (long long)r->steps, r->save_path);
    r->dist->saved(r->dist, kept);
  }
  const char *hook = getenv("NNRT_TEST_KILL_AFTER_SAVE");
  if (!rc && hook && atoll(hook) == ++r->saves)
    raise(SIGKILL);
  return rc;
}

// Mistakes are the training examples an epoch misclassified, each counted
// with the weights it was predicted with, before its step's update. An epoch
// without one converged: for the perceptron criterion every gradient of the
// epoch was then 0, the weights did not move, and they classify the whole
// training set correctly. Counted when accuracy is, for a single thresholded
// output (the classic units) or when asked to stop there.
static void note_mistakes(NnrtRun *r, NnrtMetrics *mt) {
  if (!r->count_mistakes)
    return;
  mt->has_mistakes = 1;
  mt->mistakes = r->seen - (int64_t)llround(r->correct);
  if (r->first != 0 || r->seen != r->ntrain)
    return;  // the end of an interrupted epoch: not a whole pass
  r->last_mistakes = mt->mistakes;
  if (mt->mistakes != 0 || r->converged_epoch)
    return;
  r->converged_epoch = mt->epoch;
}

// Data parallelism keeps the weights and optimizer state of every rank the
// same, bit for bit; checked once an epoch (FNV-1a over their bytes).
static int ranks_agree(NnrtRun *r) {
  const NnrtModel *m = r->m;
  r->dist->gather_state(r->dist, r->state, m->nstate, m->param_numel);
  uint64_t h = 0xcbf29ce484222325u;
  const float *blocks[2] = {r->params, r->state};
  int64_t lens[2] = {m->param_numel, m->nstate * m->param_numel};
  for (int k = 0; k < 2; k++) {
    for (int64_t i = 0; i < lens[k]; i++) {
      uint32_t w;
      memcpy(&w, &blocks[k][i], sizeof w);
      h = (h ^ w) * 0x100000001b3u;
    }
  }
  return r->dist->same(r->dist, h);
}

static int params_finite(const NnrtRun *r) {
  for (int64_t i = 0; i < r->m->param_numel; i++)
    if (!isfinite(nnrt_elt_get(nnrt_elt(r->m), r->params, i)))
      return 0;
  return 1;
}

// Keeps the best weights by the watched loss; after m->patience epochs
// without a better one, puts them back and stops (the checkpoint written
// next then holds them).
static void early_stopping(NnrtRun *r, double loss) {
  const NnrtModel *m = r->m;
  if (r->best_epoch == 0 || loss < r->best_loss) {
    r->best_loss = loss;
    r->best_epoch = r->epoch + 1;
    r->since_best = 0;
    memcpy(r->best, r->params, nnrt_elt(m) * (size_t)m->param_numel);
    return;
  }
  if (++r->since_best < m->patience)
    return;
  memcpy(r->params, r->best, nnrt_elt(m) * (size_t)m->param_numel);
  if (!r->o->quiet && !r->silent)
    fprintf(r->human,
            "early stopping: no better %s loss for %lld epochs; restored the "
            "weights of epoch %lld (loss %.4f)\n",
            r->nval > 0 ? "validation" : "test", (long long)r->since_best,
            (long long)r->best_epoch, r->best_loss);
  stop_at(r, STOP_EARLY, r->epoch + 1, r->step);
}

int64_t nnrt_epoch_end(NnrtRun *r, int64_t epoch) {
  (void)epoch;  // r->epoch is the one nnrt_epoch_begin started
  if (r->stop)
    return 1;
  double seconds = nnrt_now() - r->t0;
  nnrt_progress_clear(&r->progress);
  if (!params_finite(r)) {
    stop_at(r, STOP_BAD_WEIGHTS, r->epoch + 1, r->step);
    return 1;
  }
  const NnrtModel *m = r->m;
  if (r->dist && r->dist->size > 1 && !ranks_agree(r)) {
    nnrt_fail(&r->err, "the ranks' weights differ after epoch %lld (a bug "
              "in the data-parallel runtime)", (long long)(r->epoch + 1));
    stop_at(r, STOP_ERROR, r->epoch + 1, r->step);
    return 1;
  }
  NnrtMetrics mt = {0};
  mt.epoch = r->epoch + 1;
  mt.epochs = r->epoch0 + r->epochs;
  double seen = r->seen > 0 ? (double)r->seen : 1;
  mt.loss = r->loss_sum / seen;
  mt.accuracy = r->correct / seen;
  mt.has_accuracy = m->accuracy == 1;
  mt.seconds = seconds;
  mt.samples_per_s = seconds > 0 ? (double)r->seen / seconds : 0;
  mt.has_lr = r->has_lr;
  mt.lr = r->lr;
  if (m->nmetrics > 0) {
    mt.nmetrics = m->nmetrics;
    mt.metric_names = m->metric_names;
    for (int64_t k = 0; k < m->nmetrics; k++)
      r->metric_mean[k] = r->metric_rows > 0
                              ? r->metric_sum[k] / r->metric_rows
                              : NAN;  // the code never reported them
    mt.metrics = r->metric_mean;
    mt.val_metrics = r->val_metrics;
    mt.test_metrics = r->test_metrics;
  }
  if (r->nval > 0) {
    mt.has_val = 1;
    nnrt_evaluate_dist(m, r->params, &r->eval, &r->train, r->ntrain, r->nval,
                       r->dist, &mt.val_loss, &mt.val_accuracy,
                       r->val_metrics);
  }
  if (r->has_test) {
    mt.has_test = 1;
    nnrt_evaluate_dist(m, r->params, &r->eval, &r->test, 0, r->test.rows,
                       r->dist, &mt.test_loss, &mt.test_accuracy,
                       r->test_metrics);
  }
  FILE *notes = (!r->o->json || !r->o->quiet) && !r->silent ? r->human : NULL;
  int64_t converged = r->converged_epoch;
  note_mistakes(r, &mt);
  char line[8192];
  if (r->o->json && !r->silent) {
    nnrt_metrics_format(line, sizeof line, &mt, 1);
    printf("%s\n", line);
    fflush(stdout);
  }
  if ((!r->o->json || !r->o->quiet) && !r->silent) {
    nnrt_metrics_format(line, sizeof line, &mt, 0);
    fprintf(r->human, "%s\n", line);
  }
  if (notes && r->converged_epoch != converged)
    fprintf(notes, "converged: epoch %lld misclassified no training "
            "example\n", (long long)r->converged_epoch);
  fflush(r->human);
  r->epochs_done = r->epoch + 1;
  if (m->patience > 0 && (mt.has_val || mt.has_test))
    early_stopping(r, mt.has_val ? mt.val_loss : mt.test_loss);
  if (r->save_path) {
    if (save(r)) {
      stop_at(r, STOP_ERROR, r->epoch + 1, r->step);
      return 1;
    }
    r->saved_epoch = r->epochs_done;
    r->unsaved_steps = 0;
    r->saved_step = 0;
  }
  // The log after the checkpoint: on a full disk the checkpoint's error
  // (the old file kept) is the one to tell.
  if (r->log && nnrt_log_epoch(r->log, &mt)) {
    nnrt_fail(&r->err, "%s: cannot write the training log", r->log_path);
    stop_at(r, STOP_ERROR, r->epoch + 1, r->step);
    return 1;
  }
  double interrupted = interrupts != 0;
  if (r->dist)  // every rank stops here if one was interrupted
    r->dist->sum(r->dist, &interrupted, 1);
  if (interrupted > 0) {
    stop_at(r, STOP_INTERRUPT, r->epoch + 1, r->step);
    return 1;
  }
  if (r->o->stop_when_perfect && r->converged_epoch == r->epoch + 1) {
    stop_at(r, STOP_CONVERGED, r->epoch + 1, r->step);
    return 1;
  }
  return r->stop == STOP_EARLY;
}

// ---- the train command ------------------------------------------------------
// train --load: the weights, and the optimizer state and position when the
// checkpoint holds them (one line tells the user which, unless --quiet).
static int resume(NnrtRun *r, const char *path) {
  const NnrtModel *m = r->m;
  NnrtTrainPos pos;
  NnrtStateLoad st;
  if (nnrt_checkpoint_read(path, m, r->params, r->state, &pos, &st, &r->err))
    return -1;
  r->epoch0 = pos.epoch > 0 ? pos.epoch : 0;
  r->skip = pos.examples > 0 ? pos.examples : 0;
  if (r->skip >= r->ntrain) {  // stopped after its last step: it is done
    r->epoch0++;
    r->skip = 0;
  }
  r->epochs_done = r->epoch = r->epoch0;
  if (r->epochs > INT64_MAX - r->epoch0)  // "train forever" stays so
    r->epochs = INT64_MAX - r->epoch0;
  r->steps = st == NNRT_STATE_RESTORED ? pos.step : 0;
  if (r->o->quiet || r->silent)
    return 0;
  char at[128] = "";
  if (pos.epoch >= 0 || st == NNRT_STATE_RESTORED) {
    int n = snprintf(at, sizeof at, " (after epoch %lld",
                     (long long)(pos.epoch > 0 ? pos.epoch : 0));
    if (pos.examples > 0)
      n += snprintf(at + n, sizeof at - (size_t)n, " and %lld examples",
                    (long long)pos.examples);
    if (st == NNRT_STATE_RESTORED)
      n += snprintf(at + n, sizeof at - (size_t)n, ", step %lld",
                    (long long)pos.step);
    snprintf(at + n, sizeof at - (size_t)n, ")");
  }
  if (st == NNRT_STATE_RESTORED || (st == NNRT_STATE_ABSENT && !m->nstate))
    fprintf(stderr, "loaded weights%s from %s%s\n",
            m->nstate ? " and optimizer state" : "", path, at);
  else
    fprintf(stderr, "loaded weights from %s%s; note: %s, so the optimizer "
            "starts fresh\n", path, at,
            st == NNRT_STATE_ABSENT ? "it holds no optimizer state"
                                    : "its optimizer state does not match "
                                      "this model's optimizer");
  return 0;
}

static int setup(NnrtRun *r, const NnrtModel *m, const NnrtOptions *o) {
  NnrtErr *err = &r->err;
  if (m->train_data.kind == NNRT_DATA_NONE)
    return nnrt_fail(err, "the model has no training data");
  if (!(m->validation >= 0 && m->validation < 1))
    return nnrt_fail(err, "the validation fraction %g is not in [0, 1)",
                     m->validation);
  if (nnrt_data_open(&r->train, &m->train_data, m, o->limit, err))
    return -1;
  r->nval = (int64_t)floor((double)r->train.rows * m->validation);
  if (m->validation > 0 && r->nval == 0 && r->train.rows > 1)
    r->nval = 1;
  r->ntrain = r->train.rows - r->nval;
  if (r->ntrain <= 0)
    return nnrt_fail(err, "%s: no training examples%s", r->train.path,
                     m->train_data.nclasses > 0 ? " with the listed classes"
                                                : "");
  if (m->test_data.kind != NNRT_DATA_NONE) {
    if (nnrt_data_open(&r->test, &m->test_data, m, 0, err))
      return -1;
    r->has_test = r->test.rows > 0;
  }
  r->batch = o->batch;
  r->epochs = o->epochs;
  r->seed = (uint64_t)o->seed;
  int64_t max_batch = r->batch < r->ntrain ? r->batch : r->ntrain;
  r->perm = nnrt_alloc_array(r->ntrain, sizeof(int64_t));
  r->params = nnrt_alloc_array(m->param_numel, nnrt_elt(m));
  if (m->patience > 0)
    r->best = nnrt_alloc_array(m->param_numel, nnrt_elt(m));
  int64_t nstate, ws;
  if (__builtin_mul_overflow(m->nstate, m->param_numel, &nstate))
    nstate = -1;
  if (__builtin_mul_overflow(m->train_ws_per_row, max_batch, &ws) ||
      __builtin_add_overflow(ws, m->train_ws_fixed, &ws))
    ws = -1;
  r->state = nnrt_alloc_array(nstate, nnrt_elt(m));
  r->ws = nnrt_alloc_array(ws, nnrt_elt(m));
  if (m->nmetrics > 0) {
    int64_t nm = m->nmetrics;
    r->metric_block = nnrt_alloc_array(5 * nm, sizeof(double));
    if (r->metric_block) {
      r->pending = r->metric_block, r->metric_sum = r->pending + nm;
      r->metric_mean = r->metric_sum + nm, r->val_metrics = r->metric_mean + nm;
      r->test_metrics = r->val_metrics + nm;
    }
  }
  if (!r->perm || !r->params || !r->state || !r->ws ||
      (m->patience > 0 && !r->best) || (m->nmetrics > 0 && !r->metric_block))
    return nnrt_fail(err, "out of memory (%lld parameters, %lld workspace "
                     "floats)", (long long)m->param_numel, (long long)ws);
  for (int64_t k = 0; k < m->nstate; k++)
    for (int64_t i = 0; i < m->param_numel; i++)
      nnrt_elt_set(nnrt_elt(m), r->state, k * m->param_numel + i,
                   m->state_init[k]);
  // Programs of several steps: each parameter starts its own optimizer's
  // state (buffers have none: their rows are not read).
  for (int64_t p = 0; m->param_state_init && p < m->nparams; p++) {
    const NnrtParamInfo *pi = &m->params[p];
    if (pi->buffer)
      continue;
    for (int64_t k = 0; k < m->nstate; k++)
      for (int64_t i = 0; i < pi->numel; i++)
        nnrt_elt_set(nnrt_elt(m), r->state,
                     k * m->param_numel + pi->offset + i,
                     m->param_state_init[p * m->nstate + k]);
  }
  int64_t eval_rows = r->nval > r->test.rows ? r->nval : r->test.rows;
  if (eval_rows > 0 && nnrt_eval_open(&r->eval, m, eval_rows, 0, err))
    return -1;
  if (o->load) {
    if (resume(r, o->load))
      return -1;
  } else if (nnrt_init_params(m, r->seed, r->params, err)) {
    return -1;
  }
  r->save_path = o->no_save ? NULL : o->save ? o->save : o->default_ckpt;
  r->human = o->json ? stderr : stdout;
  r->count_mistakes = m->accuracy == 1 &&
                      (m->out_numel == 1 || o->stop_when_perfect);
  r->last_mistakes = -1;
  r->progress.enabled = !o->quiet && !r->silent && isatty(STDERR_FILENO);
  return 0;
}

static void teardown(NnrtRun *r) {
  nnrt_eval_close(&r->eval);
  nnrt_free(r->ws);
  nnrt_free(r->state);
  nnrt_free(r->params);
  nnrt_free(r->best);
  nnrt_free(r->perm);
  nnrt_free(r->metric_block);
  nnrt_data_close(&r->test);
  nnrt_data_close(&r->train);
  if (r->log)
    fclose(r->log);
  r->log = NULL;
}

// What the user is told when the run stops early; returns the exit code.
static int report_stop(NnrtRun *r) {
  const NnrtOptions *o = r->o;
  const char *prog = o->prog;
  char kept[4096 + 64];
  if (r->saved_step > 0)
    snprintf(kept, sizeof kept, "keeping the last saved weights (step %lld)",
             (long long)r->saved_step);
  else if (r->saved_epoch > 0)
    snprintf(kept, sizeof kept, "keeping the last saved weights (epoch %lld)",
             (long long)r->saved_epoch);
  else
    snprintf(kept, sizeof kept, "no weights were saved");
  if (r->silent) {  // rank 0 tells the user; this rank only its own error
    switch (r->stop) {
    case STOP_NUMERICS:
    case STOP_ERROR:
      fprintf(stderr, "%s: rank %d of %d: %s\n", prog, r->dist->rank,
              r->dist->size, r->err.msg);
      return 1;
    case STOP_INTERRUPT:  // rank 0 saves: this rank's shard goes with it
      if (r->save_path && r->unsaved_steps > 0)
        save(r);
      return 130;
    case STOP_DIVERGED:
    case STOP_BAD_WEIGHTS:
    case STOP_PEER:
      return 1;
    default:
      return 0;
    }
  }
  switch (r->stop) {
  case STOP_PEER:
    fprintf(stderr, "%s: another rank stopped the run at epoch %lld, step "
            "%lld (its message says why); %s\n", prog,
            (long long)r->stop_epoch, (long long)r->stop_step, kept);
    return 1;
  case STOP_NONE:
  case STOP_EARLY:
    break;
  case STOP_DIVERGED:
    fprintf(stderr, "%s: loss is not finite at epoch %lld, step %lld; %s%s\n",
            prog, (long long)r->stop_epoch, (long long)r->stop_step, kept,
            o->check_numerics ? "" : " (--check-numerics finds the first "
                                     "non-finite value)");
    return 1;
  case STOP_NUMERICS:
    fprintf(stderr, "%s: %s; %s\n", prog, r->err.msg, kept);
    return 1;
  case STOP_BAD_WEIGHTS:
    fprintf(stderr, "%s: weights are not finite after epoch %lld; %s\n", prog,
            (long long)r->stop_epoch, kept);
    return 1;
  case STOP_ERROR:
    fprintf(stderr, "%s: %s\n", prog, r->err.msg);
    return 1;
  case STOP_CONVERGED:
    break;  // a success, told by nnrt_train_command
  case STOP_INTERRUPT:
    if (!r->save_path) {
      fprintf(stderr, "%s: interrupted at epoch %lld, step %lld; not saved "
              "(--no-save)\n", prog, (long long)r->stop_epoch,
              (long long)r->stop_step);
    } else if (r->unsaved_steps == 0) {
      fprintf(stderr, "%s: interrupted at epoch %lld, step %lld; %s\n", prog,
              (long long)r->stop_epoch, (long long)r->stop_step,
              r->saved_epoch || r->saved_step ? kept
                                            : "nothing trained, nothing saved");
    } else if (save(r)) {
      fprintf(stderr, "%s: interrupted, and saving failed: %s\n", prog,
              r->err.msg);
      return 1;
    } else {
      fprintf(stderr, "%s: interrupted at epoch %lld, step %lld; weights "
              "saved to %s\n", prog, (long long)r->stop_epoch,
              (long long)r->stop_step, r->save_path);
    }
    return 130;
  }
  return 0;
}

// The training log: --log FILE, else beside the checkpoint (NAME.csv), none
// with --no-log or --no-save and no --log. A resumed run appends to it.
static int open_log(NnrtRun *r) {
  const NnrtOptions *o = r->o;
  if (o->no_log || r->silent)  // rank 0 writes the log
    return 0;
  if (!o->log && r->save_path) {
    size_t n = strlen(r->save_path);
    const char *ext = ".safetensors";
    size_t k = strlen(ext);
    if (n > k && !strcmp(r->save_path + n - k, ext))
      n -= k;
    snprintf(r->log_path, sizeof r->log_path, "%.*s.csv", (int)n,
             r->save_path);
  } else if (o->log) {
    snprintf(r->log_path, sizeof r->log_path, "%s", o->log);
  } else {
    return 0;
  }
  r->log = nnrt_log_open(r->log_path, r->epoch0 > 0, r->m, &r->err);
  return r->log ? 0 : -1;
}

int nnrt_train_command(const NnrtModel *m, const NnrtOptions *o) {
  NnrtRun r;
  memset(&r, 0, sizeof r);
  r.m = m;
  r.o = o;
  r.dist = o->dist;
  r.silent = r.dist && r.dist->rank > 0;
  if (setup(&r, m, o)) {
    fprintf(stderr, "%s: %s\n", o->prog, r.err.msg);
    teardown(&r);
    return 1;
  }
  if (open_log(&r)) {
    fprintf(stderr, "%s: %s\n", o->prog, r.err.msg);
    teardown(&r);
    return 1;
  }
  // Ctrl-C lets the current step finish; restored afterwards so a host
  // program (the tests) keeps its own handler.
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  interrupts = 0;
  sigaction(SIGINT, &sa, &old);
  if (old.sa_handler == SIG_IGN)  // started with Ctrl-C ignored (nohup, &)
    sigaction(SIGINT, &old, NULL);
  int64_t max_batch = r.batch < r.ntrain ? r.batch : r.ntrain;
  m->train(&r, r.params, r.state, r.ws, max_batch);
  prefetch_settle(&r, -1, NULL, NULL);  // a stop may leave one running
  if (interrupts && !r.stop)
    stop_at(&r, STOP_INTERRUPT, r.epoch + 1, r.step);
  sigaction(SIGINT, &old, NULL);
  nnrt_progress_clear(&r.progress);
  int rc = report_stop(&r);
  if (r.dist)  // an error on one rank only leaves the others waiting
    r.dist->agreed = r.stop != STOP_ERROR;
  if (rc == 0 && !o->quiet && !r.silent) {
    if (r.save_path && r.saved_epoch > 0)
      fprintf(stderr, "weights saved to %s\n", r.save_path);
    if (r.stop == STOP_CONVERGED)
      fprintf(stderr, "%s: stopped after epoch %lld of %lld: no training "
              "example misclassified (stop when perfect)\n", o->prog,
              (long long)r.converged_epoch, (long long)(r.epoch0 + r.epochs));
    else if (r.epochs_done - r.epoch0 < r.epochs)
      fprintf(stderr, "%s: training stopped after %lld of %lld epochs\n",
              o->prog, (long long)(r.epochs_done - r.epoch0),
              (long long)r.epochs);
  }
  // Asked to stop when perfect but never was: the data may not be linearly
  // separable (XOR), or it needed more epochs.
  if (rc == 0 && r.stop == STOP_NONE && o->stop_when_perfect &&
      !r.converged_epoch && r.last_mistakes > 0 &&
      (!o->json || !o->quiet) && !r.silent)
    fprintf(r.human, "not converged: every epoch misclassified training "
            "examples (%lld of %lld in epoch %lld)\n",
            (long long)r.last_mistakes,
            (long long)r.ntrain, (long long)r.epochs_done);
  teardown(&r);
  return rc;
}
