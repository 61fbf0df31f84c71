// pool.c — the process-wide thread pool that generated kernels run on.
//
// Global mutable state, on purpose: generated code (nnc_infer in particular)
// has no run handle to carry a pool, so there is exactly one, in `P` below,
// and this file is the only one that touches it.
//
// Consumes: nnrt_pool_start(n, pin) from nnrt_main (--threads, --pin-threads)
// and nnrt_parallel_for(fn, ctx, ntasks) from generated code. Produces: every
// task index in [0, ntasks) run exactly once, on the caller or on one of the
// n - 1 persistent worker threads, before nnrt_parallel_for returns. Which
// thread runs which task is not deterministic (tasks are handed out through
// an atomic counter), so tasks must write disjoint memory; the generated
// code's task split depends only on shapes, so results do not depend on the
// thread count.
//
// The protocol (one job slot, C11 atomics, a futex for sleeping):
//   gen      generation counter; odd = a job is open, even = closed.
//   next     the next task index to hand out.
//   inside   workers currently looking at the open job.
//   sleepers workers blocked in futex_wait on `gen`.
// The caller writes the job (fn, ctx, ntasks), sets next = 0 and publishes
// it by storing gen = g (odd). It runs tasks itself until `next` runs out,
// closes the job (gen = g + 1), then waits until `inside` is 0: by then
// every claimed task has finished, and no worker can still read the job
// fields, so the next dispatch may overwrite them. A worker that sees gen
// change to an odd g increments `inside`, then re-reads gen: only if it is
// still g does it read the job and claim tasks; otherwise the job is already
// closed and it backs out. (The increment and the re-read are seq_cst, like
// the caller's close and its read of `inside`, so either the caller waits
// for the worker or the worker sees the close.) A worker that finds nothing
// to do costs the caller nothing, which is why late or sleeping workers do
// not slow a dispatch down.
// Workers spin on `gen` for `spin_ns` (100 µs by default, NNRT_SPIN_US
// overrides) after their last job, then sleep on a futex; a dispatch wakes
// them only when `sleepers` says someone sleeps, so back-to-back kernels of
// a training step cost no system call.
//
// The background slot: one task at a time (the next batch's gather) that a
// spinning worker picks up while the posting thread goes on with its own
// work; the poster later waits for it, and runs it itself if no worker has
// claimed it yet. bg goes BG_EMPTY -> BG_POSTED (poster) -> BG_RUNNING
// (whoever claims it, by compare-and-swap) -> BG_DONE -> BG_EMPTY (the
// poster's wait). While a worker runs it, parallel_for calls simply find
// one helper fewer. Only one thread may post and wait.
//
// Rules: a nested nnrt_parallel_for (from inside a task) runs serially on
// the calling thread (the thread-local `in_task` says so). Two threads
// dispatching at the same time are allowed: the one that finds the pool
// busy runs its tasks serially. nnrt_pool_start and nnrt_pool_stop must not
// run while another thread dispatches (nnrt_main calls them before and after
// everything else). Used before nnrt_main (or after it returns) the pool
// starts lazily with the default thread count and lives until the process
// exits or nnrt_pool_stop is called. A forked child starts with no pool (its
// parent's workers do not exist there) and starts one lazily if needed.
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "nnrt_internal.h"

enum { DEFAULT_SPIN_US = 100, MAX_SPIN_US = 1000000 };
enum { BG_EMPTY, BG_POSTED, BG_RUNNING, BG_DONE };

static struct Pool {
  // Written by start/stop under `lock`.
  _Atomic int64_t nthreads;    // threads counting the caller; 0: not started
  int64_t nworkers;            // nthreads - 1 (static: no allocation to fail)
  pthread_t workers[NNRT_MAX_THREADS - 1];
  int64_t spin_ns;             // how long an idle worker spins before sleeping
  int pinned;                  // the caller's affinity was changed ...
  pthread_t pinner;            // ... on this thread, from ...
  cpu_set_t caller_mask;       // ... this mask, restored by stop
  _Atomic int stop;            // workers exit when they see it
  // The job: written by the dispatching thread while it is closed, read by
  // workers that got in while it was open. Shares a line with `gen`, which
  // a worker reads first anyway.
  alignas(64) _Atomic uint32_t gen;
  NnrtTaskFn *fn;
  void *ctx;
  int64_t ntasks;
  alignas(64) _Atomic int64_t next;
  alignas(64) _Atomic int32_t inside;
  alignas(64) _Atomic int32_t sleepers;
  alignas(64) _Atomic int busy;  // a dispatch is in progress
  alignas(64) _Atomic int bg;    // the background slot (BG_*)
  NnrtTaskFn *bg_fn;
  void *bg_ctx;
} P;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

// 1 on the workers, and on a dispatching thread while it runs tasks.
static _Thread_local int in_task;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t expect) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL,
          0);
}

static void futex_wake_all(_Atomic uint32_t *addr) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
          0);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// ---- the background slot ------------------------------------------------------
// Claims and runs the posted background task, if there is one.
static void run_background(void) {
  int want = BG_POSTED;
  if (atomic_load_explicit(&P.bg, memory_order_relaxed) != BG_POSTED ||
      !atomic_compare_exchange_strong_explicit(&P.bg, &want, BG_RUNNING,
                                               memory_order_acquire,
                                               memory_order_relaxed))
    return;
  int was = in_task;
  in_task = 1;  // its parallel_for calls run serially here
  P.bg_fn(P.bg_ctx, 0);
  in_task = was;
  atomic_store_explicit(&P.bg, BG_DONE, memory_order_release);
}

// ---- workers ----------------------------------------------------------------
// Returns the first value of gen different from `seen`: spins for spin_ns,
// then sleeps on the futex; meanwhile runs a posted background task.
static uint32_t wait_change(uint32_t seen, int64_t spin_ns) {
  int64_t until = -1;
  for (unsigned spins = 1;; spins++) {
    uint32_t g = atomic_load_explicit(&P.gen, memory_order_acquire);
    if (g != seen)
      return g;
    if (atomic_load_explicit(&P.bg, memory_order_relaxed) == BG_POSTED) {
      run_background();
      until = -1;  // spin on afresh: the poster is busy
      continue;
    }
    cpu_relax();
    if (spins % 64 == 0) {  // look at the clock now and then only
      int64_t t = now_ns();
      if (until < 0)
        until = t + spin_ns;
      else if (t >= until)
        break;
    }
  }
  for (;;) {
    atomic_fetch_add(&P.sleepers, 1);  // seq_cst: pairs with the dispatch
    if (atomic_load(&P.gen) == seen &&  // still nothing: sleep (futex_wait
        atomic_load(&P.bg) != BG_POSTED) // returns at once if gen moved)
      futex_wait(&P.gen, seen);
    atomic_fetch_sub(&P.sleepers, 1);
    run_background();
    uint32_t g = atomic_load_explicit(&P.gen, memory_order_acquire);
    if (g != seen)
      return g;
  }
}

// Runs tasks of job g if it is still open.
static void join_job(uint32_t g) {
  atomic_fetch_add(&P.inside, 1);  // seq_cst
  if (atomic_load(&P.gen) == g) {  // seq_cst: not closed yet
    NnrtTaskFn *fn = P.fn;
    void *ctx = P.ctx;
    int64_t n = P.ntasks;
    for (;;) {
      int64_t i = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
      if (i >= n)
        break;
      fn(ctx, i);
    }
  }
  // Release: the caller's acquire read of 0 sees every task's writes.
  atomic_fetch_sub_explicit(&P.inside, 1, memory_order_release);
}

static void *worker_main(void *arg) {
  (void)arg;
  in_task = 1;  // a parallel_for from a task runs serially
  int64_t spin_ns = P.spin_ns;
  uint32_t seen = atomic_load(&P.gen);
  // stop is set before gen moves, so a worker that has seen the move (or
  // started after it) sees stop.
  while (!atomic_load(&P.stop)) {
    uint32_t g = wait_change(seen, spin_ns);
    seen = g;
    if (g & 1)
      join_job(g);
  }
  return NULL;
}

// ---- start and stop ---------------------------------------------------------
int64_t nnrt_pool_default_threads(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set) < NNRT_MAX_THREADS ? CPU_COUNT(&set)
                                              : NNRT_MAX_THREADS;
  long n = sysconf(_SC_NPROCESSORS_ONLN);  // more CPUs than cpu_set_t holds
  return n < 1 ? 1 : n < NNRT_MAX_THREADS ? n : NNRT_MAX_THREADS;
}

// 1 when cpu is the first hardware thread of its core (or unknown).
static int first_of_core(int cpu) {
  char path[128];
  snprintf(path, sizeof path,
           "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
  FILE *f = fopen(path, "r");
  if (!f)
    return 1;
  int first = cpu;
  if (fscanf(f, "%d", &first) != 1)
    first = cpu;
  fclose(f);
  return first == cpu;
}

// The CPUs this thread may use, one per core first and then the other
// hardware threads, so that n threads land on n distinct cores when they can.
static int cpu_order(int *cpus, int cap) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return 0;
  int n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
      if (CPU_ISSET(c, &set) && first_of_core(c) == (pass == 0))
        cpus[n++] = c;
  return n;
}

static void stop_locked(void) {
  if (atomic_load(&P.nthreads) == 0)
    return;
  atomic_store(&P.stop, 1);
  atomic_fetch_add(&P.gen, 2);  // wake the spinners; stays closed (even)
  futex_wake_all(&P.gen);       // and the sleepers
  for (int64_t k = 0; k < P.nworkers; k++)
    pthread_join(P.workers[k], NULL);
  P.nworkers = 0;
  atomic_store(&P.stop, 0);
  if (P.pinned && pthread_equal(P.pinner, pthread_self()))
    pthread_setaffinity_np(P.pinner, sizeof P.caller_mask, &P.caller_mask);
  P.pinned = 0;
  atomic_store(&P.nthreads, 0);
}

// In a forked child only the forking thread exists: forget the workers.
static void after_fork_child(void) {
  pthread_mutex_init(&lock, NULL);
  P.nworkers = 0;
  P.pinned = 0;
  atomic_store(&P.stop, 0);
  atomic_store(&P.inside, 0);
  atomic_store(&P.sleepers, 0);
  atomic_store(&P.busy, 0);
  atomic_store(&P.bg, BG_EMPTY);
  atomic_store(&P.nthreads, 0);
  // Forked in the middle of another thread's dispatch: close its job.
  uint32_t g = atomic_load(&P.gen);
  atomic_store(&P.gen, g + (g & 1));
  in_task = 0;
}

static void register_atfork(void) {
  pthread_atfork(NULL, NULL, after_fork_child);
}

static int64_t spin_setting(void) {
  const char *s = getenv("NNRT_SPIN_US");
  char *end;
  long long us = s && *s ? strtoll(s, &end, 10) : -1;
  if (us < 0 || *end || us > MAX_SPIN_US)
    us = DEFAULT_SPIN_US;
  return us * 1000;
}

static int64_t start_locked(int64_t n, int pin) {
  pthread_once(&atfork_once, register_atfork);
  stop_locked();
  if (n <= 0)
    n = nnrt_pool_default_threads();
  if (n > NNRT_MAX_THREADS)
    n = NNRT_MAX_THREADS;
  P.spin_ns = spin_setting();
  int cpus[CPU_SETSIZE], ncpu = pin && n > 1 ? cpu_order(cpus, CPU_SETSIZE) : 0;
  if (ncpu > 0 &&
      pthread_getaffinity_np(pthread_self(), sizeof P.caller_mask,
                             &P.caller_mask) == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[0], &one);
    P.pinned = pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
    P.pinner = pthread_self();
  }
  // Workers block every signal, so handlers (Ctrl-C) run on the main thread.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int64_t k = 0; k < n - 1; k++) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (ncpu > 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpus[(k + 1) % ncpu], &one);
      pthread_attr_setaffinity_np(&attr, sizeof one, &one);
    }
    int rc = pthread_create(&P.workers[k], &attr, worker_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
      break;  // run with the threads we have
    P.nworkers++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  atomic_store(&P.nthreads, P.nworkers + 1);
  return P.nworkers + 1;
}

int64_t nnrt_pool_start(int64_t n, int pin) {
  pthread_mutex_lock(&lock);
  int64_t got = start_locked(n, pin);
  pthread_mutex_unlock(&lock);
  return got;
}

void nnrt_pool_stop(void) {
  pthread_mutex_lock(&lock);
  stop_locked();
  pthread_mutex_unlock(&lock);
}

// The pool's size, starting the default pool when there is none.
static int64_t threads_now(void) {
  int64_t n = atomic_load_explicit(&P.nthreads, memory_order_acquire);
  if (n > 0)
    return n;
  pthread_mutex_lock(&lock);
  n = atomic_load(&P.nthreads);
  if (n == 0)
    n = start_locked(0, 0);
  pthread_mutex_unlock(&lock);
  return n;
}

// ---- dispatch ---------------------------------------------------------------
int64_t nnrt_num_threads(void) { return threads_now(); }

int nnrt_pool_background(NnrtTaskFn *fn, void *ctx) {
  if (threads_now() <= 1 || in_task ||
      atomic_load_explicit(&P.bg, memory_order_relaxed) != BG_EMPTY)
    return 0;
  P.bg_fn = fn;
  P.bg_ctx = ctx;
  atomic_store(&P.bg, BG_POSTED);  // seq_cst: pairs with `sleepers`
  if (atomic_load(&P.sleepers) > 0)
    futex_wake_all(&P.gen);  // a sleeping worker looks at the slot too
  return 1;
}

void nnrt_pool_background_wait(void) {
  if (atomic_load_explicit(&P.bg, memory_order_acquire) == BG_EMPTY)
    return;
  run_background();  // nobody took it yet: do it here
  for (unsigned spins = 1;
       atomic_load_explicit(&P.bg, memory_order_acquire) != BG_DONE; spins++) {
    cpu_relax();
    if (spins % 1024 == 0)  // the worker running it was preempted
      sched_yield();
  }
  atomic_store_explicit(&P.bg, BG_EMPTY, memory_order_relaxed);
}

void nnrt_parallel_for(NnrtTaskFn *fn, void *ctx, int64_t ntasks) {
  if (ntasks <= 0)
    return;
  if (ntasks == 1 || in_task || threads_now() <= 1 ||
      atomic_exchange_explicit(&P.busy, 1, memory_order_acquire)) {
    for (int64_t i = 0; i < ntasks; i++)
      fn(ctx, i);
    return;
  }
  // Closed and no worker inside: the job fields are ours.
  P.fn = fn;
  P.ctx = ctx;
  P.ntasks = ntasks;
  atomic_store_explicit(&P.next, 0, memory_order_relaxed);
  uint32_t g = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
  atomic_store(&P.gen, g);  // seq_cst: open; pairs with `sleepers` below
  if (atomic_load(&P.sleepers) > 0)
    futex_wake_all(&P.gen);
  in_task = 1;
  for (;;) {
    int64_t i = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
    if (i >= ntasks)
      break;
    fn(ctx, i);
  }
  in_task = 0;
  atomic_store(&P.gen, g + 1);  // seq_cst: closed; late workers back out
  for (unsigned spins = 1;
       atomic_load_explicit(&P.inside, memory_order_acquire) != 0; spins++) {
    cpu_relax();
    if (spins % 1024 == 0)  // a worker inside was preempted
      sched_yield();
  }
  atomic_store_explicit(&P.busy, 0, memory_order_release);
}
