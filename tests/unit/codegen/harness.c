// harness.c — a fake runtime for codegen tests (see harness.h).
//
// Linked with an object that nnc generated: the generated `main` calls
// nnrt_main(&nnc_model, ...) here, which reads the request file, drives the
// generated nnc_train / nnc_infer through the NnrtModel table exactly as the
// real runtime would (workspace sized from the table, batches fed through
// nnrt_batch_fetch), and writes what happened to the result file. Buffers
// are filled with NaN before use, so a kernel reading memory nothing wrote
// shows up as NaN, and each buffer is followed by a guard zone that must
// survive.
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "nnrt.h"

enum { GUARD = 64 }; // floats after each buffer
static const uint32_t GUARD_BITS = 0x7fc0dead;

struct NnrtRun {
  const NnrtModel *m;
  const HarnessIn *in;
  const int64_t *rows;
  const float *x, *y; // all batches
  int64_t *first;     // first row of each batch
  int64_t steps;
  FILE *log; // per-step records, appended to OUT
  int epoch_ended;
  int64_t pf_i; // the batch nnrt_batch_prefetch put in pf_x, or -1
  const float *pf_x;
};

static int bad(const char *why) {
  fprintf(stderr, "harness: %s\n", why);
  return 2;
}

static float *buffer(int64_t n) {
  float *p = aligned_alloc(64, (size_t)((n + GUARD + 15) / 16 * 16) * 4);
  if (!p)
    exit(2);
  uint32_t nan = 0x7fc00001;
  for (int64_t i = 0; i < n; i++)
    memcpy(&p[i], &nan, 4);
  for (int64_t i = n; i < n + GUARD; i++)
    memcpy(&p[i], &GUARD_BITS, 4);
  return p;
}

static void check_guard(const float *p, int64_t n, const char *what) {
  for (int64_t i = n; i < n + GUARD; i++)
    if (memcmp(&p[i], &GUARD_BITS, 4) != 0) {
      fprintf(stderr, "harness: %s overwritten at +%lld\n", what,
              (long long)(i - n));
      exit(3);
    }
}

// A fresh run: no steps taken before (the real runtime restores them).
int64_t nnrt_step_start(NnrtRun *run) {
  (void)run;
  return 0;
}

int64_t nnrt_step_key(NnrtRun *run, int64_t t) {
  (void)run;
  return (int64_t)harness_step_key(t);
}

int64_t nnrt_epoch_begin(NnrtRun *run, int64_t epoch) {
  return epoch < run->in->epochs ? run->in->nbatch : 0;
}

static int64_t copy_batch(NnrtRun *run, int64_t i, float *x, float *y) {
  const NnrtModel *m = run->m;
  int64_t r = run->rows[i], f = run->first[i];
  memcpy(x, run->x + f * m->in_numel,
         sizeof(float) * (size_t)(r * m->in_numel));
  int64_t yc = run->in->ycols;
  memcpy(y, run->y + f * yc, sizeof(float) * (size_t)(r * yc));
  return r;
}

// The next batch arrives at once, as from a worker that is never late: a
// step that still read the buffer it names would see the wrong batch.
void nnrt_batch_prefetch(NnrtRun *run, int64_t i, float *x, float *y) {
  if (i < 0 || i >= run->in->nbatch)
    return;
  copy_batch(run, i, x, y);
  run->pf_i = i, run->pf_x = x;
}

int64_t nnrt_batch_fetch(NnrtRun *run, int64_t i, float *x, float *y) {
  if (run->pf_i == i && run->pf_x == x) {
    run->pf_i = -1;
    return run->rows[i];
  }
  run->pf_i = -1;
  return copy_batch(run, i, x, y);
}

int64_t nnrt_batch_end(NnrtRun *run, int64_t rows, double loss_sum,
                       double correct) {
  fwrite(&rows, 8, 1, run->log);
  fwrite(&loss_sum, 8, 1, run->log);
  fwrite(&correct, 8, 1, run->log);
  run->steps++;
  return run->in->stop_after && run->steps >= run->in->stop_after;
}

int64_t nnrt_epoch_end(NnrtRun *run, int64_t epoch) {
  (void)epoch;
  run->epoch_ended++;
  return 0;
}

// --check-numerics is off here (tests/e2e/numerics.sh runs it for real).
int64_t nnrt_check_numerics(NnrtRun *run) {
  (void)run;
  return 0;
}

void nnrt_check_values(NnrtRun *run, const float *p, int64_t n,
                       const char *what) {
  (void)run, (void)p, (void)n, (void)what;
  abort();  // never called while nnrt_check_numerics says 0
}

void nnrt_check_params(NnrtRun *run, const float *params) {
  (void)run, (void)params;
  abort();
}

// ---- nnrt_parallel_for: a small pool (the real one is runtime/pool.c) ------
// Workers wait on a condition variable for a new job generation, then claim
// task indices from an atomic counter, like the runtime's pool; the caller
// takes part and waits until every task has finished.
enum { MAX_THREADS = 16 };
static struct {
  pthread_mutex_t mu;
  pthread_cond_t job, done;
  int nworkers, busy;
  long gen;
  NnrtTaskFn *fn;
  void *ctx;
  int64_t ntasks;
  atomic_int_fast64_t next;
  int64_t calls, tasks, parallel_calls;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .job = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void run_tasks(NnrtTaskFn *fn, void *ctx, int64_t ntasks) {
  for (int64_t t; (t = atomic_fetch_add(&pool.next, 1)) < ntasks;)
    fn(ctx, t);
}

static void *worker(void *arg) {
  (void)arg;
  long seen = 0;
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    while (pool.gen == seen)
      pthread_cond_wait(&pool.job, &pool.mu);
    seen = pool.gen;
    NnrtTaskFn *fn = pool.fn;
    void *ctx = pool.ctx;
    int64_t n = pool.ntasks;
    pthread_mutex_unlock(&pool.mu);
    run_tasks(fn, ctx, n);
    pthread_mutex_lock(&pool.mu);
    if (--pool.busy == 0)
      pthread_cond_signal(&pool.done);
  }
  return NULL;
}

static void pool_start(int64_t threads) {
  if (threads > MAX_THREADS)
    threads = MAX_THREADS;
  for (int64_t i = 1; i < threads; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) == 0) {
      pthread_detach(t);
      pool.nworkers++;
    }
  }
}

void nnrt_parallel_for(NnrtTaskFn *fn, void *ctx, int64_t ntasks) {
  pool.calls++;
  pool.tasks += ntasks > 0 ? ntasks : 0;
  if (ntasks <= 1 || pool.nworkers == 0) {
    for (int64_t t = 0; t < ntasks; t++)
      fn(ctx, t);
    return;
  }
  pool.parallel_calls++;
  pthread_mutex_lock(&pool.mu);
  pool.fn = fn;
  pool.ctx = ctx;
  pool.ntasks = ntasks;
  atomic_store(&pool.next, 0);
  pool.busy = pool.nworkers;
  pool.gen++;
  pthread_cond_broadcast(&pool.job);
  pthread_mutex_unlock(&pool.mu);
  run_tasks(fn, ctx, ntasks);
  pthread_mutex_lock(&pool.mu);
  while (pool.busy > 0)
    pthread_cond_wait(&pool.done, &pool.mu);
  pthread_mutex_unlock(&pool.mu);
}

int64_t nnrt_num_threads(void) { return pool.nworkers + 1; }

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void describe(const NnrtModel *m, FILE *out) {
  fprintf(out, "name %s\nin_rank %lld\nin_numel %lld\nout_numel %lld\n",
          m->name, (long long)m->in_rank, (long long)m->in_numel,
          (long long)m->out_numel);
  fprintf(out, "in_dim0 %lld\nnparams %lld\nparam_numel %lld\nnstate %lld\n",
          (long long)m->in_dim[0], (long long)m->nparams,
          (long long)m->param_numel, (long long)m->nstate);
  for (int64_t i = 0; i < m->nstate; i++)
    fprintf(out, "state_init%lld %g\n", (long long)i, m->state_init[i]);
  for (int64_t i = 0; i < m->nparams; i++) {
    const NnrtParamInfo *p = &m->params[i];
    fprintf(out,
            "param %s rank %lld dims %lld %lld numel %lld offset %lld init "
            "%lld a %g b %g fan %lld %lld\n",
            p->name, (long long)p->rank, (long long)p->dim[0],
            (long long)p->dim[1], (long long)p->numel, (long long)p->offset,
            (long long)p->init, p->init_a, p->init_b, (long long)p->fan_in,
            (long long)p->fan_out);
  }
  const NnrtDataSpec *d = &m->train_data, *t = &m->test_data;
  fprintf(out, "train kind %lld path_x %s scale %g nclasses %lld\n",
          (long long)d->kind, d->path_x ? d->path_x : "(null)", d->scale,
          (long long)d->nclasses);
  for (int64_t i = 0; i < d->nclasses; i++)
    fprintf(out, "class%lld %lld\n", (long long)i, (long long)d->classes[i]);
  fprintf(out, "test kind %lld nrows %lld xcols %lld ycols %lld\n",
          (long long)t->kind, (long long)t->nrows, (long long)t->xcols,
          (long long)t->ycols);
  if (t->kind == NNRT_DATA_INLINE)
    fprintf(out, "test x0 %g x_last %g y_last %g\n", t->x[0],
            t->x[t->nrows * t->xcols - 1], t->y[t->nrows * t->ycols - 1]);
  fprintf(out, "batch %lld\nepochs %lld\nseed %lld\nvalidation %g\n",
          (long long)m->batch, (long long)m->epochs, (long long)m->seed,
          m->validation);
  fprintf(out, "accuracy %lld\n", (long long)m->accuracy);
  fprintf(out, "train_ws %lld %lld\ninfer_ws %lld %lld\n",
          (long long)m->train_ws_per_row, (long long)m->train_ws_fixed,
          (long long)m->infer_ws_per_row, (long long)m->infer_ws_fixed);
  fprintf(out, "fns %d %d\n", m->train != NULL, m->infer != NULL);
}

int nnrt_main(const NnrtModel *m, int argc, char **argv) {
  if (argc != 3)
    return bad("usage: exe IN OUT");
  FILE *f = fopen(argv[1], "rb");
  HarnessIn in;
  if (!f || fread(&in, sizeof in, 1, f) != 1)
    return bad("cannot read the request");
  int64_t *rows = calloc((size_t)in.nbatch + 1, 8);
  int64_t *first = calloc((size_t)in.nbatch + 1, 8);
  if (fread(rows, 8, (size_t)in.nbatch, f) != (size_t)in.nbatch)
    return bad("short request (rows)");
  int64_t total = 0;
  for (int64_t i = 0; i < in.nbatch; i++) {
    if (rows[i] > in.max_batch)
      return bad("a batch is larger than max_batch");
    first[i] = total;
    total += rows[i];
  }
  float *params = buffer(m->param_numel);
  float *x = buffer(total * m->in_numel), *y = buffer(total * in.ycols);
  if (fread(params, 4, (size_t)m->param_numel, f) != (size_t)m->param_numel ||
      fread(x, 4, (size_t)(total * m->in_numel), f) !=
          (size_t)(total * m->in_numel) ||
      fread(y, 4, (size_t)(total * in.ycols), f) != (size_t)(total * in.ycols))
    return bad("short request (data)");
  fclose(f);
  pool_start(in.threads);
  FILE *out = fopen(argv[2], "wb");
  if (!out)
    return bad("cannot write the result");

  if (in.mode == H_DESCRIBE) {
    describe(m, out);
  } else if (in.mode == H_TRAIN) {
    int64_t wsn = m->train_ws_per_row * in.max_batch + m->train_ws_fixed;
    int64_t sn = m->nstate * m->param_numel;
    float *ws = buffer(wsn), *state = buffer(sn);
    for (int64_t k = 0; k < m->nstate; k++)
      for (int64_t i = 0; i < m->param_numel; i++)
        state[k * m->param_numel + i] = (float)m->state_init[k];
    FILE *log = tmpfile();
    NnrtRun run = {m, &in, rows, x, y, first, 0, log, 0, -1, NULL};
    m->train(&run, params, state, ws, in.max_batch);
    check_guard(ws, wsn, "train workspace");
    check_guard(params, m->param_numel, "params");
    check_guard(state, sn, "state");
    fwrite(&run.steps, 8, 1, out);
    fwrite(params, 4, (size_t)m->param_numel, out);
    fwrite(state, 4, (size_t)sn, out);
    rewind(log);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, log)) > 0)
      fwrite(buf, 1, got, out);
    fclose(log);
    free(ws);
    free(state);
  } else if (in.mode == H_INFER) {
    int64_t wsn = m->infer_ws_per_row * in.max_batch + m->infer_ws_fixed;
    float *ws = buffer(wsn);
    float *pred = buffer(total * m->out_numel);
    float *pred2 = buffer(in.max_batch * m->out_numel);
    double *stats = calloc((size_t)in.nbatch * 2 + 2, sizeof(double));
    int64_t ok = 1;
    for (int64_t b = 0; b < in.nbatch; b++) {
      const float *xb = x + first[b] * m->in_numel;
      const float *yb = y + first[b] * in.ycols;
      float *ob = pred + first[b] * m->out_numel;
      double *sb = stats + 2 * b;
      m->infer(params, ws, in.max_batch, xb, yb, rows[b], ob, sb);
      double again[2] = {0, 0};
      m->infer(params, ws, in.max_batch, xb, NULL, rows[b], pred2, again);
      if (again[0] != 0 || again[1] != 0 ||
          memcmp(pred2, ob, sizeof(float) * (size_t)(rows[b] * m->out_numel)))
        ok = 0;
      m->infer(params, ws, in.max_batch, xb, yb, rows[b], NULL, again);
      if (again[0] != sb[0] || again[1] != sb[1])
        ok = 0;
    }
    check_guard(ws, wsn, "infer workspace");
    check_guard(pred, total * m->out_numel, "predictions");
    check_guard(pred2, in.max_batch * m->out_numel, "predictions");
    fwrite(pred, 4, (size_t)(total * m->out_numel), out);
    fwrite(stats, 8, (size_t)(2 * in.nbatch), out);
    fwrite(&ok, 8, 1, out);
    free(ws);
    free(pred);
    free(pred2);
    free(stats);
  } else if (in.mode == H_BENCH) {
    int64_t wsn = m->infer_ws_per_row * in.max_batch + m->infer_ws_fixed;
    float *ws = buffer(wsn);
    double stats[2] = {0, 0};
    m->infer(params, ws, in.max_batch, x, y, rows[0], NULL, stats);
    double best = INFINITY;
    for (int round = 0; round < 5; round++) {
      double t0 = now();
      for (int64_t r = 0; r < in.reps; r++)
        m->infer(params, ws, in.max_batch, x, y, rows[0], NULL, stats);
      double t = (now() - t0) / (double)in.reps;
      best = t < best ? t : best;
    }
    check_guard(ws, wsn, "bench workspace");
    fwrite(&best, 8, 1, out);
    free(ws);
  } else {
    return bad("unknown mode");
  }
  fclose(out);
  if (getenv("NNC_HARNESS_VERBOSE"))
    fprintf(stderr, "harness: %lld parallel_for calls (%lld with threads), "
            "%lld tasks\n", (long long)pool.calls,
            (long long)pool.parallel_calls, (long long)pool.tasks);
  free(params);
  free(x);
  free(y);
  free(rows);
  free(first);
  return 0;
}
