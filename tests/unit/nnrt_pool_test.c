// nnrt_pool_test.c — the thread pool (pool.c): every task runs exactly once
// for many task and thread counts, nested calls run serially, concurrent
// dispatchers, a reduction that is bit-identical whatever the thread count,
// lazy start before nnrt_main, --threads and --pin-threads through nnrt_main,
// the background slot,
// and the dispatch overhead (printed, and checked only loosely).
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "nnrt_test.h"

typedef struct Count {
  _Atomic int *runs;  // runs[i]: how often task i ran
} Count;

static void count_task(void *ctx, int64_t i) {
  Count *c = ctx;
  atomic_fetch_add(&c->runs[i], 1);
}

static void check_once(int64_t ntasks, int reps) {
  _Atomic int *runs = calloc((size_t)ntasks + 1, sizeof *runs);
  Count c = {runs};
  for (int r = 0; r < reps; r++) {
    nnrt_parallel_for(count_task, &c, ntasks);
    for (int64_t i = 0; i < ntasks; i++)
      cr_assert_eq(atomic_load(&runs[i]), r + 1, "task %lld of %lld ran %d "
                   "times after %d dispatches", (long long)i,
                   (long long)ntasks, atomic_load(&runs[i]), r + 1);
  }
  free(runs);
}

Test(pool, every_task_exactly_once) {
  const int64_t threads[] = {1, 2, 3, 4, 8};
  const int64_t tasks[] = {0, 1, 2, 3, 7, 64, 1000};
  for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    cr_assert_eq(nnrt_pool_start(threads[t], 0), threads[t]);
    cr_assert_eq(nnrt_num_threads(), threads[t]);
    for (size_t k = 0; k < sizeof tasks / sizeof tasks[0]; k++)
      check_once(tasks[k], tasks[k] >= 1000 ? 20 : 200);
  }
  nnrt_pool_stop();
}

// Tasks that take a while, so that idle workers fall asleep between rounds
// and the futex path is exercised too.
static void busy_wait_us(double us) {
  double until = nnrt_now() + us * 1e-6;
  while (nnrt_now() < until) {
  }
}

static void slow_task(void *ctx, int64_t i) {
  Count *c = ctx;
  busy_wait_us(20);
  atomic_fetch_add(&c->runs[i], 1);
}

Test(pool, sleeping_workers_wake_up) {
  setenv("NNRT_SPIN_US", "0", 1);  // sleep at once
  cr_assert_eq(nnrt_pool_start(3, 0), 3);
  _Atomic int runs[50] = {0};
  Count c = {runs};
  for (int r = 1; r <= 30; r++) {
    nnrt_parallel_for(slow_task, &c, 50);
    if (r % 10 == 0)
      usleep(2000);  // everyone asleep
    for (int i = 0; i < 50; i++)
      cr_assert_eq(atomic_load(&runs[i]), r);
  }
  nnrt_pool_stop();
  unsetenv("NNRT_SPIN_US");
}

// Records which threads ran tasks.
typedef struct Who {
  pthread_t ids[256];
  _Atomic int n;
} Who;

static void who_task(void *ctx, int64_t i) {
  Who *w = ctx;
  busy_wait_us(20);
  w->ids[i] = pthread_self();
  atomic_fetch_add(&w->n, 1);
}

Test(pool, work_is_spread_over_threads) {
  cr_assert_eq(nnrt_pool_start(2, 0), 2);
  int spread = 0;
  for (int attempt = 0; attempt < 50 && !spread; attempt++) {
    Who w = {.n = 0};
    nnrt_parallel_for(who_task, &w, 256);
    cr_assert_eq(atomic_load(&w.n), 256);
    for (int i = 1; i < 256; i++)
      spread |= !pthread_equal(w.ids[i], w.ids[0]);
  }
  cr_assert(spread, "a worker never ran a task");
  nnrt_pool_stop();
}

// The background slot: a posted task runs exactly once, on a worker while
// the poster dispatches other work, or on the poster when it waits first;
// with one thread nothing is posted.
typedef struct Bg {
  _Atomic int runs;
  _Atomic int on_worker;
  pthread_t poster;
} Bg;

static void bg_task(void *ctx, int64_t i) {
  Bg *b = ctx;
  (void)i;
  busy_wait_us(2);
  if (!pthread_equal(pthread_self(), b->poster))
    atomic_fetch_add(&b->on_worker, 1);
  atomic_fetch_add(&b->runs, 1);
}

Test(pool, background_task_runs_exactly_once) {
  cr_assert_eq(nnrt_pool_start(1, 0), 1);
  Bg b = {.poster = pthread_self()};
  cr_expect_eq(nnrt_pool_background(bg_task, &b), 0);
  nnrt_pool_background_wait();  // nothing posted: returns at once
  cr_expect_eq(atomic_load(&b.runs), 0);
  cr_assert_eq(nnrt_pool_start(2, 0), 2);
  _Atomic int *runs = calloc(64, sizeof *runs);
  Count c = {runs};
  int posted = 0;
  for (int r = 0; r < 2000; r++) {
    int ok = nnrt_pool_background(bg_task, &b);
    posted += ok;
    cr_expect_eq(nnrt_pool_background(bg_task, &b), 0, "the slot is taken");
    if (r % 2)  // other work meanwhile, which must all run too
      nnrt_parallel_for(count_task, &c, 64);
    if (r % 100 == 99)
      busy_wait_us(300);  // the worker falls asleep: posting wakes it
    nnrt_pool_background_wait();
    cr_assert_eq(atomic_load(&b.runs), posted, "round %d", r);
  }
  for (int i = 0; i < 64; i++)
    cr_expect_eq(atomic_load(&runs[i]), 1000);
  cr_expect_gt(posted, 1000);
  cr_expect_gt(atomic_load(&b.on_worker), 0, "no worker ever ran it");
  free(runs);
  nnrt_pool_stop();
}

// A task that dispatches again: the inner loop runs on the same thread.
typedef struct Nest {
  _Atomic int inner_runs[16][10];
  _Atomic int other_thread;
} Nest;

typedef struct Inner {
  Nest *nest;
  int64_t outer;
  pthread_t self;
} Inner;

static void inner_task(void *ctx, int64_t i) {
  Inner *in = ctx;
  if (!pthread_equal(pthread_self(), in->self))
    atomic_store(&in->nest->other_thread, 1);
  atomic_fetch_add(&in->nest->inner_runs[in->outer][i], 1);
}

static void outer_task(void *ctx, int64_t i) {
  Inner in = {ctx, i, pthread_self()};
  nnrt_parallel_for(inner_task, &in, 10);
}

Test(pool, nested_call_runs_serially) {
  cr_assert_eq(nnrt_pool_start(3, 0), 3);
  for (int r = 1; r <= 100; r++) {
    static Nest nest;
    nnrt_parallel_for(outer_task, &nest, 16);
    for (int o = 0; o < 16; o++)
      for (int i = 0; i < 10; i++)
        cr_assert_eq(atomic_load(&nest.inner_runs[o][i]), r);
    cr_assert_eq(atomic_load(&nest.other_thread), 0);
  }
  nnrt_pool_stop();
}

// A sum over 1e6 awkward floats split into 61 fixed chunks: each task writes
// its own partial; the partials are added in order afterwards.
enum { N = 1000000, CHUNKS = 61 };

typedef struct Reduce {
  const float *x;
  float partial[CHUNKS];
} Reduce;

static void reduce_task(void *ctx, int64_t t) {
  Reduce *r = ctx;
  int64_t lo = t * N / CHUNKS, hi = (t + 1) * N / CHUNKS;
  float s = 0;
  for (int64_t i = lo; i < hi; i++)
    s += r->x[i] * r->x[i] - 0.5f * r->x[i];
  r->partial[t] = s;
}

static float reduce(const float *x) {
  Reduce r = {x, {0}};
  nnrt_parallel_for(reduce_task, &r, CHUNKS);
  float s = 0;
  for (int t = 0; t < CHUNKS; t++)
    s += r.partial[t];
  return s;
}

Test(pool, reduction_is_bit_identical) {
  float *x = malloc(N * sizeof(float));
  uint64_t key = nnrt_rng_key(42, 9, 0);
  for (int64_t i = 0; i < N; i++)  // magnitudes from 1e-4 to 1e4
    x[i] = (float)(nnrt_rng_normal(key, (uint64_t)i) *
                   pow(10, 8 * nnrt_rng_uniform(key, (uint64_t)(N + i)) - 4));
  float want = 0;
  uint32_t want_bits = 0;
  const int64_t threads[] = {1, 2, 3, 1, 2};
  for (int k = 0; k < 5; k++) {
    cr_assert_eq(nnrt_pool_start(threads[k], 0), threads[k]);
    for (int rep = 0; rep < 10; rep++) {
      float got = reduce(x);
      uint32_t bits;
      memcpy(&bits, &got, 4);
      if (k == 0 && rep == 0)
        want = got, want_bits = bits;
      cr_assert_eq(bits, want_bits, "%d threads: %.9g, 1 thread: %.9g",
                   (int)threads[k], got, want);
    }
  }
  cr_assert(isfinite(want));
  nnrt_pool_stop();
  free(x);
}

// Two application threads dispatching at the same time: the one that finds
// the pool busy runs its tasks serially; nothing runs twice or not at all.
static void *dispatcher(void *arg) {
  for (int r = 0; r < 300; r++)
    check_once(r % 2 ? 33 : 2, 1);
  (void)arg;
  return NULL;
}

Test(pool, concurrent_dispatchers) {
  cr_assert_eq(nnrt_pool_start(3, 0), 3);
  pthread_t a, b;
  pthread_create(&a, NULL, dispatcher, NULL);
  pthread_create(&b, NULL, dispatcher, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  nnrt_pool_stop();
}

Test(pool, lazy_start_restart_and_stop) {
  // No nnrt_main, no nnrt_pool_start: the default pool starts on first use.
  cr_assert_eq(nnrt_num_threads(), nnrt_pool_default_threads());
  check_once(100, 10);
  nnrt_pool_stop();
  check_once(100, 10);  // starts again
  cr_assert_eq(nnrt_pool_start(2, 0), 2);
  cr_assert_eq(nnrt_pool_start(1, 0), 1);  // restart with another size
  check_once(100, 10);
  nnrt_pool_stop();
  nnrt_pool_stop();  // twice is harmless
  cr_assert_eq(nnrt_pool_start(NNRT_MAX_THREADS + 5, 0) <= NNRT_MAX_THREADS,
               1);
  nnrt_pool_stop();
  cpu_set_t set;
  sched_getaffinity(0, sizeof set, &set);
  cr_assert_eq(nnrt_pool_default_threads(), CPU_COUNT(&set));
}

// Each task records how many CPUs its thread may run on.
static void affinity_task(void *ctx, int64_t i) {
  int *ncpu = ctx;
  cpu_set_t set;
  CPU_ZERO(&set);
  pthread_getaffinity_np(pthread_self(), sizeof set, &set);
  ncpu[i] = CPU_COUNT(&set);
}

Test(pool, pinning_binds_and_unbinds) {
  cpu_set_t before;
  sched_getaffinity(0, sizeof before, &before);
  cr_assert_eq(nnrt_pool_start(2, 1), 2);
  int ncpu[64];
  nnrt_parallel_for(affinity_task, ncpu, 64);
  for (int i = 0; i < 64; i++)
    cr_assert_eq(ncpu[i], 1, "task %d ran on a thread allowed %d CPUs", i,
                 ncpu[i]);
  nnrt_pool_stop();
  cpu_set_t after;
  sched_getaffinity(0, sizeof after, &after);
  cr_assert(CPU_EQUAL(&before, &after), "the caller stayed pinned");
}

// ---- dispatch overhead ------------------------------------------------------
static void empty_task(void *ctx, int64_t i) {
  (void)ctx, (void)i;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Both tasks wait until both have started, so two threads must take part:
// the round trip to a worker and back, which an empty task can hide (the
// caller often runs both empty tasks before the worker has looked).
static void meet_task(void *ctx, int64_t i) {
  _Atomic int *arrived = ctx;
  (void)i;
  atomic_fetch_add(arrived, 1);
  double give_up = nnrt_now() + 1;  // 1 thread would wait forever
  while (atomic_load(arrived) < 2 && nnrt_now() < give_up) {
  }
}

// Median µs of a 2-task dispatch over `reps` dispatches, `gap_us` apart.
static double median_dispatch_us(int reps, NnrtTaskFn *fn, int gap_us) {
  double *t = malloc((size_t)reps * sizeof *t);
  _Atomic int arrived;
  for (int r = 0; r < 1000; r++) {  // warm up: workers spinning
    atomic_store(&arrived, 0);
    nnrt_parallel_for(fn, (void *)&arrived, 2);
  }
  for (int r = 0; r < reps; r++) {
    if (gap_us)
      usleep((useconds_t)gap_us);
    atomic_store(&arrived, 0);
    double t0 = nnrt_now();
    nnrt_parallel_for(fn, (void *)&arrived, 2);
    t[r] = (nnrt_now() - t0) * 1e6;
  }
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  double med = t[reps / 2];
  free(t);
  return med;
}

Test(pool, dispatch_overhead) {
  int64_t n = nnrt_pool_default_threads() < 2 ? 1 : 2;
  cr_assert_eq(nnrt_pool_start(n, 0), n);
  double med = median_dispatch_us(20000, empty_task, 0);
  fprintf(stderr, "pool: empty 2-task dispatch, %lld threads: median %.2f "
          "us\n", (long long)n, med);
  double meet = n > 1 ? median_dispatch_us(20000, meet_task, 0) : 0;
  double woken = n > 1 ? median_dispatch_us(200, meet_task, 1000) : 0;
  if (n > 1)
    fprintf(stderr, "pool: 2-task dispatch that both threads must join: "
            "median %.2f us (workers spinning), %.2f us (workers asleep)\n",
            meet, woken);
  nnrt_pool_stop();
  cr_assert_eq(nnrt_pool_start(1, 0), 1);
  double serial = median_dispatch_us(20000, empty_task, 0);
  fprintf(stderr, "pool: empty 2-task dispatch on 1 thread (a plain loop): "
          "median %.2f us\n", serial);
  nnrt_pool_stop();
  // Loose, so that a loaded machine or the sanitizers do not fail it (the
  // aim is ~1 µs); the round trips depend on the scheduler, so only printed.
  cr_assert_lt(med, 100.0);
}

// ---- through nnrt_main ------------------------------------------------------
static int64_t seen_threads = -1;
static int seen_ok = 0;

// A "model" whose train step runs one parallel kernel and records the pool.
static void tiny_train(NnrtRun *run, float *params, float *state, float *ws,
                       int64_t max_batch) {
  (void)params, (void)state;
  seen_threads = nnrt_num_threads();
  _Atomic int runs[40] = {0};
  Count c = {runs};
  nnrt_parallel_for(count_task, &c, 40);
  seen_ok = 1;
  for (int i = 0; i < 40; i++)
    seen_ok &= atomic_load(&runs[i]) == 1;
  float *x = ws, *y = ws + max_batch;
  for (int64_t e = 0;; e++) {
    int64_t nb = nnrt_epoch_begin(run, e);
    if (nb == 0)
      return;
    for (int64_t i = 0; i < nb; i++) {
      int64_t rows = nnrt_batch_fetch(run, i, x, y);
      if (nnrt_batch_end(run, rows, 0.0, 0.0))
        return;
    }
    if (nnrt_epoch_end(run, e))
      return;
  }
}

static void tiny_infer(const float *params, float *ws, int64_t max_batch,
                       const float *x, const float *y, int64_t rows,
                       float *out, double *stats) {
  (void)params, (void)ws, (void)max_batch, (void)x, (void)y, (void)rows;
  (void)out, (void)stats;
}

static const float tiny_x[4] = {0, 1, 2, 3}, tiny_y[4] = {0, 1, 0, 1};

static NnrtModel tiny_model(void) {
  NnrtModel m;
  memset(&m, 0, sizeof m);
  m.name = "tiny";
  m.in_rank = 1, m.in_dim[0] = 1, m.in_numel = 1, m.out_numel = 1;
  m.train_data.kind = NNRT_DATA_INLINE;
  m.train_data.nrows = 4, m.train_data.xcols = 1, m.train_data.ycols = 1;
  m.train_data.x = tiny_x, m.train_data.y = tiny_y;
  m.batch = 2, m.epochs = 1;
  m.train_ws_per_row = 2;
  m.train = tiny_train, m.infer = tiny_infer;
  return m;
}

Test(pool, nnrt_main_threads_option) {
  NnrtModel m = tiny_model();
  const char *dir = tmpdir();
  Captured c = run_main(&m, dir, (char *[]){"./tiny", "--no-save", "--quiet",
                                            "--threads", "3", NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(seen_threads, 3);
  cr_assert(seen_ok);
  captured_free(&c);
  // The default: one thread per CPU available.
  c = run_main(&m, dir, (char *[]){"./tiny", "--no-save", "--quiet", NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(seen_threads, nnrt_pool_default_threads());
  captured_free(&c);
  c = run_main(&m, dir, (char *[]){"./tiny", "--no-save", "--pin-threads",
                                   "--threads=2", NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(seen_threads, 2);
  cr_assert(seen_ok);
  captured_free(&c);
  // More threads than CPUs works, with a note.
  c = run_main(&m, dir, (char *[]){"./tiny", "--no-save", "--threads", "64",
                                   NULL});
  cr_assert_eq(c.rc, 0, "%s", c.err);
  cr_assert_eq(seen_threads, 64);
  cr_assert(seen_ok);
  if (nnrt_pool_default_threads() < 64)
    cr_assert(strstr(c.err, "tiny: note: 64 threads on"), "%s", c.err);
  captured_free(&c);
  c = run_main(&m, dir, (char *[]){"./tiny", "--threads", "0", NULL});
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "--threads: 0 is too small (the least is 1)"));
  captured_free(&c);
  c = run_main(&m, dir, (char *[]){"./tiny", "--threads", "5000", NULL});
  cr_assert_eq(c.rc, 2);
  cr_assert(strstr(c.err, "--threads: 5000 is too large (the most is 1024)"),
            "%s", c.err);
  captured_free(&c);
}
