// mpi.c — data-parallel training over MPI (`nnc --mpi`): the only file that
// includes <mpi.h>, compiled into its own library (libnnrt_mpi.a) that only
// binaries built with `nnc --mpi` link, so a plain binary has no MPI
// dependency at all.
//
// The generated main of an --mpi binary calls nnrt_mpi_main, which starts
// MPI, fills an NnrtDist (rank, size, the reductions run.c needs) and runs
// the ordinary command line with it (nnrt_main_dist). run.c then gives each
// rank its shard of every global batch, reduces the metrics and evaluation,
// and lets rank 0 alone print and save. The generated training loop calls
// nnrt_grad_ready after each backward kernel that finished a gradient:
// gradients are weighted by this rank's share of the batch and summed over
// the ranks by a ring of our own, in buckets, started as soon as their
// gradients exist (and advanced whenever generated code calls in), so
// communication overlaps the rest of the backward pass. With the gradient
// block (every model so far) only the reduce-scatter half runs: rank r ends
// with the sum of shard r of the block, the optimizer updates that shard
// (nnrt_grad_shard), and the all-gather half carries the updated
// parameters instead (nnrt_params_gather). The optimizer state of the other
// shards is gathered only to save it or compare it.
//
// Determinism: MPI_Allreduce may pick any reduction order (it depends on the
// sizes and the number of ranks), so the sums here never use it. In the
// ring, chunk c is added up in the order c+1, c+2, ..., c (mod N), always as
// `received + own`, and the finished chunk is only copied after that: for a
// given N every run gives the same bits, and every rank the same weights.
// Small vectors (metrics, stop flags) are all-gathered and summed in rank
// order.
//
// Faults: every wait polls with MPI_Test and gives up after $NNRT_MPI_TIMEOUT
// seconds (default 120) with a message naming the rank it waits for
// (MPI_Abort then ends the job). A rank that dies is noticed by mpirun,
// which ends the others with SIGTERM within a second or so; their handler
// says so, and which checkpoint survives, before exiting. Checkpoints are
// written by rank 0 only, atomically, so the last one is always whole.
#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnrt_internal.h"

enum {
  BUCKET_MIN = 16384,  // floats: smaller runs of adjacent gradients are
                       // merged before they are sent (latency per message);
                       // NNRT_MPI_BUCKET overrides
  MAX_BUCKETS = 256,
};

// One bucket in flight: steps [first, last) of a ring allreduce of p[0, n)
// over the ranks (steps 0 .. N-2 reduce-scatter, N-1 .. 2N-3 all-gather),
// as a state machine advanced by bucket_progress.
typedef struct Bucket {
  float *p;
  int64_t n;
  int64_t off;             // >= 0: p[0] is element `off` of the layout, and
                           // chunk c is p's part of shard c; -1: chunk c is
                           // [c n / N, (c+1) n / N)
  int first, last;         // the steps to run
  float post;              // the sum of a chunk times this (1: as it is)
  float *tmp;              // a chunk received in the reduce-scatter phase
  int phase;               // next step to complete
  int posted;              // the requests of step `phase` are out
  MPI_Request req[2];      // send, receive
} Bucket;

typedef struct Mpi {
  NnrtDist d;              // first: run.c sees only this
  float *scratch;          // receive chunks, scratch_cap floats
  int64_t scratch_used, scratch_cap;
  Bucket b[MAX_BUCKETS];
  int nb;                  // buckets of this step
  float *pend;             // gradients posted but not yet sent: [pend, +npend)
  int64_t npend;
  // The gradient block (nnrt_grad_layout), laid out like the trainable
  // parameters: rank r sums and updates shard r, [shard[r], shard[r + 1]).
  float *layout;
  int64_t ntrain;
  int64_t *shard;          // size + 1 offsets
  double timeout;          // seconds a wait may take
  int64_t bucket_min;      // BUCKET_MIN
  char kept[1024];         // which checkpoint survives (rank 0), for messages
  int64_t kill_step;       // test hook: this rank dies at this ready call
  int kill_sig;            // (SIGKILL), or stops (SIGSTOP: a hung rank)
  int64_t ready_calls;
} Mpi;

// The message a rank prints when mpirun ends it with SIGTERM (a peer died):
// a signal handler can only reach it through a static. Updated after every
// checkpoint; written with write(2) only.
static char term_msg[1024];
static volatile sig_atomic_t term_len;

static void on_sigterm(int sig) {
  (void)sig;
  if (term_len > 0) {
    ssize_t w = write(STDERR_FILENO, term_msg, (size_t)term_len);
    (void)w;
  }
  _exit(143);
}

static void set_term_msg(Mpi *mp, const char *prog, const char *kept) {
  snprintf(mp->kept, sizeof mp->kept, "%s", kept);
  term_len = 0;
  int n = snprintf(term_msg, sizeof term_msg,
                   "%s: rank %d of %d: stopped by mpirun (another rank died "
                   "or the job was ended); %s\n",
                   prog, mp->d.rank, mp->d.size, kept);
  if (n > 0)
    term_len = n < (int)sizeof term_msg ? n : (int)sizeof term_msg - 1;
}

static int left(const Mpi *mp) { return (mp->d.rank + mp->d.size - 1) % mp->d.size; }
static int right(const Mpi *mp) { return (mp->d.rank + 1) % mp->d.size; }

// Waits for n requests, polling, with the timeout; `peer` names whom for
// the message.
static void wait_reqs(Mpi *mp, MPI_Request *req, int n, int peer,
                      const char *what) {
  double t0 = nnrt_now();
  for (int spins = 0;; spins++) {
    int done = 0;
    MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
    if (done)
      return;
    // Spin a little (a peer a few microseconds behind), then let another
    // process have the CPU: ranks may share cores (--oversubscribe).
    if (spins > 2000)
      sched_yield();
    if (nnrt_now() - t0 > mp->timeout) {
      char who[32] = "the other ranks";
      if (peer >= 0)
        snprintf(who, sizeof who, "rank %d", peer);
      fprintf(stderr, "%s: rank %d of %d: no answer from %s for %.0f s "
              "(%s); giving up (NNRT_MPI_TIMEOUT sets the limit); %s\n",
              mp->d.prog, mp->d.rank, mp->d.size, who, mp->timeout, what,
              mp->kept);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
}

// ---- the ring allreduce -------------------------------------------------------
// Chunk c (mod N) of a bucket: *lo, *len relative to b->p.
static void chunk(const Mpi *mp, const Bucket *b, int c, int64_t *lo,
                  int64_t *len) {
  int N = mp->d.size;
  c = ((c % N) + N) % N;
  if (b->off < 0) {
    *lo = b->n * c / N;
    *len = b->n * (c + 1) / N - *lo;
    return;
  }
  int64_t a = mp->shard[c] > b->off ? mp->shard[c] : b->off;
  int64_t e = mp->shard[c + 1] < b->off + b->n ? mp->shard[c + 1]
                                               : b->off + b->n;
  *lo = e > a ? a - b->off : 0;
  *len = e > a ? e - a : 0;
}

// Posts the sends and receives of the bucket's current step. Rank r ends
// the reduce-scatter holding the sum of chunk r: at step s it sends chunk
// r - s - 1 on to the right and adds chunk r - s - 2 from the left; in the
// all-gather it passes chunk r - t on and takes chunk r - t - 1.
static void bucket_post(Mpi *mp, Bucket *b, int tag) {
  int N = mp->d.size, r = mp->d.rank, s = b->phase;
  int64_t slo, sn, rlo, rn;
  float *into;
  if (s < N - 1) {
    chunk(mp, b, r - s - 1, &slo, &sn);
    chunk(mp, b, r - s - 2, &rlo, &rn);
    into = b->tmp;
  } else {
    int t = s - (N - 1);
    chunk(mp, b, r - t, &slo, &sn);
    chunk(mp, b, r - t - 1, &rlo, &rn);
    into = b->p + rlo;
  }
  MPI_Isend(b->p + slo, (int)sn, MPI_FLOAT, right(mp), tag, MPI_COMM_WORLD,
            &b->req[0]);
  MPI_Irecv(into, (int)rn, MPI_FLOAT, left(mp), tag, MPI_COMM_WORLD,
            &b->req[1]);
  b->posted = 1;
}

// Advances a bucket as far as its messages allow (to the end with
// `block`); 1 when it is done.
static int bucket_progress(Mpi *mp, Bucket *b, int tag, int block) {
  int N = mp->d.size;
  while (b->phase < b->last) {
    if (!b->posted)
      bucket_post(mp, b, tag);
    if (block) {
      wait_reqs(mp, b->req, 2, left(mp), "gradient allreduce");
    } else {
      int done = 0;
      MPI_Testall(2, b->req, &done, MPI_STATUSES_IGNORE);
      if (!done)
        return 0;
    }
    b->posted = 0;
    if (b->phase < N - 1) {  // own = received + own, in this fixed order
      int64_t lo, len;
      chunk(mp, b, mp->d.rank - b->phase - 2, &lo, &len);
      float *own = b->p + lo, w = b->post;
      if (b->phase == N - 2 && w != 1)  // the last addition: the sum
        for (int64_t i = 0; i < len; i++)
          own[i] = (b->tmp[i] + own[i]) * w;
      else
        for (int64_t i = 0; i < len; i++)
          own[i] = b->tmp[i] + own[i];
    }
    b->phase++;
  }
  return 1;
}

static void progress_all(Mpi *mp, int block) {
  for (int k = 0; k < mp->nb; k++)
    bucket_progress(mp, &mp->b[k], k, block);
}

// Every bucket done; the next step's start afresh.
static void finish_all(Mpi *mp) {
  progress_all(mp, 1);
  mp->nb = 0;
  mp->scratch_used = 0;
}

// Starts steps [first, last) on p[0, n) (off: see Bucket).
static void launch(Mpi *mp, float *p, int64_t n, int64_t off, int first,
                   int last, float post) {
  Bucket nb = {.p = p, .n = n, .off = off, .first = first, .last = last,
               .post = post, .phase = first};
  int64_t need = 1;
  for (int c = 0; c < mp->d.size; c++) {
    int64_t lo, len;
    chunk(mp, &nb, c, &lo, &len);
    need = len + 1 > need ? len + 1 : need;
  }
  if (first >= mp->d.size - 1)
    need = 0;  // no reduce-scatter, nothing to receive apart
  if (mp->nb == MAX_BUCKETS || mp->scratch_used + need > mp->scratch_cap)
    finish_all(mp);  // (not with real models) the others first
  nb.tmp = mp->scratch + mp->scratch_used;
  mp->scratch_used += need;
  Bucket *b = &mp->b[mp->nb++];
  *b = nb;
  bucket_progress(mp, b, mp->nb - 1, 0);
}

// Starts summing the pending gradients: only the reduce-scatter when they
// lie in the layout (each rank then updates its shard and the parameters
// are gathered), else the whole allreduce.
static void launch_pending(Mpi *mp) {
  if (mp->npend == 0)
    return;
  int N = mp->d.size;
  float post = mp->d.equal ? (float)mp->d.weight : 1;
  if (mp->layout && mp->pend >= mp->layout &&
      mp->pend + mp->npend <= mp->layout + mp->ntrain)
    launch(mp, mp->pend, mp->npend, mp->pend - mp->layout, 0, N - 1, post);
  else
    launch(mp, mp->pend, mp->npend, -1, 0, 2 * (N - 1), post);
  mp->pend = NULL;
  mp->npend = 0;
}

// Called by generated code after the kernel that finished gradient g[0, n)
// (in the order the backward pass computes them).
void nnrt_grad_ready(NnrtRun *run, float *g, int64_t n) {
  Mpi *mp = (Mpi *)nnrt_run_dist(run);
  if (!mp || mp->d.size == 1 || n <= 0)
    return;
  if (mp->kill_step > 0 && ++mp->ready_calls == mp->kill_step)
    raise(mp->kill_sig);  // the killed-rank test (NNRT_TEST_MPI_KILL)
  // This rank's share of the batch mean is rows here / rows of the batch:
  // applied to the sum when every shard has the same rows, else here.
  float w = (float)mp->d.weight;
  if (w == 0)
    memset(g, 0, sizeof(float) * (size_t)n);  // an empty shard: 0, not NaN
  else if (!mp->d.equal && w != 1)
    for (int64_t i = 0; i < n; i++)
      g[i] *= w;
  if (mp->npend && g + n == mp->pend) {  // adjacent below: one bucket
    mp->pend = g;
    mp->npend += n;
  } else if (mp->npend && mp->pend + mp->npend == g) {
    mp->npend += n;
  } else {
    launch_pending(mp);
    mp->pend = g;
    mp->npend = n;
  }
  if (mp->npend >= mp->bucket_min)
    launch_pending(mp);
  progress_all(mp, 0);
}

// Before the optimizer (gradients not in one block): every gradient summed.
void nnrt_grad_wait(NnrtRun *run) {
  Mpi *mp = (Mpi *)nnrt_run_dist(run);
  if (!mp || mp->d.size == 1)
    return;
  launch_pending(mp);
  finish_all(mp);
}

void nnrt_grad_layout(NnrtRun *run, float *block, int64_t n) {
  Mpi *mp = (Mpi *)nnrt_run_dist(run);
  if (!mp)
    return;
  mp->layout = block;
  mp->ntrain = n;
  for (int c = 0; c <= mp->d.size; c++)  // shards start on 64-byte lines
    mp->shard[c] = c == mp->d.size ? n : n * c / mp->d.size / 16 * 16;
}

int64_t nnrt_grad_shard(NnrtRun *run, int64_t *lo) {
  Mpi *mp = (Mpi *)nnrt_run_dist(run);
  *lo = 0;
  if (!mp || !mp->layout)
    return mp ? mp->ntrain : 0;
  if (mp->d.size > 1) {
    launch_pending(mp);
    finish_all(mp);
  }
  *lo = mp->shard[mp->d.rank];
  return mp->shard[mp->d.rank + 1] - *lo;
}

// All-gathers the shards of p[0, ntrain) (laid out like the parameters).
static void gather_shards(Mpi *mp, float *p) {
  int N = mp->d.size;
  launch(mp, p, mp->ntrain, 0, N - 1, 2 * (N - 1), 1);
  finish_all(mp);
}

void nnrt_params_gather(NnrtRun *run, float *params) {
  Mpi *mp = (Mpi *)nnrt_run_dist(run);
  if (mp && mp->layout && mp->d.size > 1)
    gather_shards(mp, params);
}

// ---- what run.c calls through NnrtDist --------------------------------------
// v[0, n) summed over the ranks in rank order.
static void dist_sum(NnrtDist *d, double *v, int n) {
  Mpi *mp = (Mpi *)d;
  double all[16 * 64], *buf = all;
  if ((size_t)n * (size_t)d->size > sizeof all / sizeof all[0])
    buf = nnrt_alloc_array((int64_t)n * d->size, sizeof(double));
  if (!buf) {
    fprintf(stderr, "%s: out of memory (reduction)\n", d->prog);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Request req;
  MPI_Iallgather(v, n, MPI_DOUBLE, buf, n, MPI_DOUBLE, MPI_COMM_WORLD, &req);
  wait_reqs(mp, &req, 1, -1, "reduction of the metrics");
  for (int k = 0; k < n; k++) {
    double s = 0;
    for (int r = 0; r < d->size; r++)
      s += buf[r * n + k];
    v[k] = s;
  }
  if (buf != all)
    nnrt_free(buf);
}

// p[0, n) := sum over ranks of w_rank * p (buffers: running statistics).
static void dist_average(NnrtDist *d, float *p, int64_t n, double w) {
  Mpi *mp = (Mpi *)d;
  if (d->size == 1 || n <= 0)
    return;
  float fw = (float)w;
  for (int64_t i = 0; i < n; i++)
    p[i] = fw == 0 ? 0 : p[i] * fw;
  launch_pending(mp);
  launch(mp, p, n, -1, 0, 2 * (d->size - 1), 1);
  finish_all(mp);
}

// Each rank updated the optimizer state of its shard only: the whole of it
// to every rank (before it is saved or compared).
static void dist_gather_state(NnrtDist *d, float *state, int64_t nstate,
                              int64_t stride) {
  Mpi *mp = (Mpi *)d;
  if (!mp->layout || d->size == 1)
    return;
  for (int64_t k = 0; k < nstate; k++)
    gather_shards(mp, state + k * stride);
}

// 1 when every rank passes the same h.
static int dist_same(NnrtDist *d, uint64_t h) {
  Mpi *mp = (Mpi *)d;
  uint64_t mine[2] = {h, ~h}, all[2];
  MPI_Request req;  // the largest h and the largest ~h: equal iff all agree
  MPI_Iallreduce(mine, all, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD, &req);
  wait_reqs(mp, &req, 1, -1, "comparison of the weights");
  return all[0] == h && all[1] == ~h;
}

// Only rank 0 knows when its checkpoint is on disk; the others may be a
// step ahead of it.
static void dist_saved(NnrtDist *d, const char *kept) {
  if (d->rank == 0)
    set_term_msg((Mpi *)d, d->prog, kept);
}

int nnrt_mpi_main(const NnrtModel *m, int argc, char **argv) {
  int provided;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) !=
      MPI_SUCCESS) {
    fprintf(stderr, "%s: cannot start MPI\n", argc > 0 ? argv[0] : "model");
    return 1;
  }
  Mpi *mp = nnrt_alloc(sizeof *mp);
  if (!mp) {
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &mp->d.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &mp->d.size);
  const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
  mp->d.prog = base ? base + 1 : argc > 0 && argv[0] ? argv[0] : "model";
  mp->d.sum = dist_sum;
  mp->d.average = dist_average;
  mp->d.saved = dist_saved;
  mp->d.same = dist_same;
  mp->d.gather_state = dist_gather_state;
  mp->d.weight = 1;
  const char *t = getenv("NNRT_MPI_TIMEOUT");
  mp->timeout = t && atof(t) > 0 ? atof(t) : 120;
  const char *bm = getenv("NNRT_MPI_BUCKET");
  mp->bucket_min = bm && atoll(bm) > 0 ? atoll(bm) : BUCKET_MIN;
  // The killed-rank test: "RANK:CALL" kills RANK at its CALL-th gradient,
  // "RANK:CALL:stop" stops it there (SIGSTOP: alive but silent).
  const char *k = getenv("NNRT_TEST_MPI_KILL");
  if (k && atoi(k) == mp->d.rank && strchr(k, ':')) {
    mp->kill_step = atoll(strchr(k, ':') + 1);
    mp->kill_sig = strstr(k, ":stop") ? SIGSTOP : SIGKILL;
  }
  mp->scratch_cap = m->param_numel + 2 * MAX_BUCKETS + 16;
  mp->scratch = nnrt_alloc_array(mp->scratch_cap, sizeof(float));
  mp->shard = nnrt_alloc_array(mp->d.size + 1, sizeof(int64_t));
  if (!mp->scratch || !mp->shard) {
    fprintf(stderr, "%s: out of memory (allreduce buffers)\n", mp->d.prog);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  set_term_msg(mp, mp->d.prog, mp->d.rank == 0
                                   ? "no checkpoint was written by this run"
                                   : "rank 0 tells which checkpoint is kept");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigterm;
  sigemptyset(&sa.sa_mask);
  if (mp->d.size > 1)
    sigaction(SIGTERM, &sa, NULL);
  int rc = nnrt_main_dist(m, argc, argv, &mp->d);
  // A stop the ranks did not agree on (an error on one rank) leaves the
  // others waiting in a reduction: end them all.
  if (rc != 0 && !mp->d.agreed && mp->d.size > 1) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, rc);
  }
  nnrt_free(mp->scratch);
  nnrt_free(mp->shard);
  nnrt_free(mp);
  MPI_Finalize();
  return rc;
}
