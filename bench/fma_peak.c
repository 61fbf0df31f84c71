// fma_peak.c — the machine's fp32 FMA ceiling, measured the way the bench
// reports kernel speed: GFLOP/s (an FMA is 2 flops) of a loop of independent
// 512-bit FMAs, on 1 thread and on every CPU at once.
//
// Build: cc -O2 -mavx512f -mfma -pthread bench/fma_peak.c -o fma_peak
// Usage: ./fma_peak [THREADS] [ROUNDS]  prints one JSON object:
//   {"threads": T, "gflops_1": median over rounds of one thread,
//    "gflops_all": median of T threads together (sum over threads),
//    "best_1": ..., "best_all": ...}
// 24 accumulators hide the FMA latency (4 cycles x 2 pipes needs >= 8; more
// is harmless). Each round runs ~0.1 s per thread.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { ITERS = 2000000, NACC = 24, MAXT = 64 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float sink;
static pthread_barrier_t start;

// ITERS x NACC FMAs on 16 lanes; returns GFLOP/s of this thread.
static void *spin(void *arg) {
  double *out = arg;
  __m512 acc[NACC];
  for (int i = 0; i < NACC; i++)
    acc[i] = _mm512_set1_ps((float)i * 1e-3f);
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  pthread_barrier_wait(&start);
  double t0 = now();
  for (long it = 0; it < ITERS; it++) {
#pragma GCC unroll 24
    for (int i = 0; i < NACC; i++)
      acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  double dt = now() - t0;
  __m512 s = acc[0];
  for (int i = 1; i < NACC; i++)
    s = _mm512_add_ps(s, acc[i]);
  sink = _mm512_reduce_add_ps(s);
  *out = 2.0 * 16 * NACC * (double)ITERS / dt * 1e-9;
  return NULL;
}

static double run(int nt) {
  pthread_t th[MAXT];
  double g[MAXT];
  pthread_barrier_init(&start, NULL, (unsigned)nt);
  for (int i = 1; i < nt; i++)
    pthread_create(&th[i], NULL, spin, &g[i]);
  spin(&g[0]);
  double sum = g[0];
  for (int i = 1; i < nt; i++) {
    pthread_join(th[i], NULL);
    sum += g[i];
  }
  pthread_barrier_destroy(&start);
  return sum;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int nt = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  if (nt < 1 || nt > MAXT || rounds < 1 || rounds > 99)
    return 2;
  double one[99], all[99];
  for (int r = 0; r < rounds; r++) { // interleaved, like the bench
    one[r] = run(1);
    all[r] = run(nt);
  }
  qsort(one, (size_t)rounds, sizeof *one, cmp);
  qsort(all, (size_t)rounds, sizeof *all, cmp);
  printf("{\"threads\": %d, \"gflops_1\": %.1f, \"gflops_all\": %.1f, "
         "\"best_1\": %.1f, \"best_all\": %.1f}\n",
         nt, one[rounds / 2], all[rounds / 2], one[rounds - 1],
         all[rounds - 1]);
  return 0;
}
