// rng.c — a counter-based random number generator and epoch shuffling.
//
// Every random number is a pure function of (seed, stream, sub-stream,
// counter): the key hashes (seed, stream, sub) and number c of a key is the
// splitmix64 output for state key + (c + 1) * golden. Nothing is carried from
// one draw to the next, so results are reproducible for a seed whatever the
// order of the draws, the thread count, or how many numbers another stream
// used. Streams are listed in nnrt_internal.h (NNRT_STREAM_*).
#include <math.h>

#include "nnrt_internal.h"
#include "nnrt_rng.h"

static const uint64_t GOLDEN = NNRT_GOLDEN;
#define mix64 nnrt_mix64

uint64_t nnrt_rng_key(uint64_t seed, uint64_t stream, uint64_t sub) {
  // The constants keep mix64(0) == 0 from making seed 0 special.
  uint64_t k = mix64(seed ^ 0x243f6a8885a308d3u);
  k = mix64(k ^ (stream * GOLDEN + 0x13198a2e03707344u));
  return mix64(k ^ (sub * 0xd1b54a32d192ed03u + 0xa4093822299f31d0u));
}

uint64_t nnrt_rng_u64(uint64_t key, uint64_t counter) {
  return nnrt_rng_bits(key, counter);
}

double nnrt_rng_uniform(uint64_t key, uint64_t counter) {
  return (double)(nnrt_rng_u64(key, counter) >> 11) * 0x1.0p-53;
}

double nnrt_rng_normal(uint64_t key, uint64_t counter) {
  // u1 in (0, 1] so the logarithm is finite.
  double u1 = (double)((nnrt_rng_u64(key, 2 * counter) >> 11) + 1) * 0x1.0p-53;
  double u2 = nnrt_rng_uniform(key, 2 * counter + 1);
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void nnrt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
  // Starting from the identity each epoch makes the order depend only on
  // (seed, epoch), not on earlier epochs (so a resumed run matches).
  for (int64_t i = 0; i < n; i++)
    perm[i] = i;
  uint64_t key = nnrt_rng_key(seed, NNRT_STREAM_SHUFFLE, (uint64_t)epoch);
  for (int64_t i = n - 1; i > 0; i--) {
    // The modulo bias is below n / 2^64: negligible for any data set.
    int64_t j = (int64_t)(nnrt_rng_u64(key, (uint64_t)i) % (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}
