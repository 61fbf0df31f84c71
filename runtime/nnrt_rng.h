// nnrt_rng.h — the counter-based random function, shared by the runtime
// (rng.c: initialization, shuffling), the compiler's f64 interpreter
// (compiler/eval.c) and, rewritten instruction for instruction in LLVM IR,
// the draws of generated code (compiler/codegen_kernels.c: emit_RAND_*).
//
// A number is a pure function of a key and a counter: mix64(key + (c + 1) *
// golden), splitmix64's output function. A random primitive of the graph
// (prims.def RAND_*) draws element c of batch row r as number
// r * numel + c of the key nnrt_draw_key(step_key, draw), where the step
// key hashes (seed, step): so a draw depends only on the seed, the step,
// which draw it is and which element, never on the thread count or on the
// order the elements are computed in, and a resumed run continues the
// stream. Everything here is static inline so that every user computes the
// same bits.
#ifndef NNRT_RNG_H
#define NNRT_RNG_H

#include <math.h>
#include <stdint.h>

#define NNRT_GOLDEN 0x9e3779b97f4a7c15u

// The splitmix64 finalizer: a bijection on 64 bits with good avalanche.
static inline uint64_t nnrt_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

// The counter-th 64-bit number of a key's sequence.
static inline uint64_t nnrt_rng_bits(uint64_t key, uint64_t counter) {
  return nnrt_mix64(key + (counter + 1) * NNRT_GOLDEN);
}

// The key of draw number `draw` (its attr.index) within one step.
static inline uint64_t nnrt_draw_key(uint64_t step_key, uint64_t draw) {
  return nnrt_mix64(step_key ^ ((draw + 1) * 0xd1b54a32d192ed03u));
}

// The step key of the inference entry point (nnc_infer has no step: a
// generative model samples with step 0's key of its default seed).
static inline uint64_t nnrt_infer_key(int64_t seed) {
  return nnrt_mix64((uint64_t)seed ^ NNRT_GOLDEN);
}

// A draw's element as the three distributions define it. Uniform in [0, 1)
// with 24 bits (exact in f32 and f64); Bernoulli compares the same 24 bits
// with an integer threshold (round(p * 2^24), fixed at compile time), so
// f32 and f64 code agree on every decision; normal is Box-Muller in double
// from numbers 2c and 2c + 1 (the log argument is in (0, 1]).
static inline double nnrt_draw_uniform(uint64_t key, uint64_t c) {
  return (double)(nnrt_rng_bits(key, c) >> 40) * 0x1.0p-24;
}
static inline double nnrt_draw_bernoulli(uint64_t key, uint64_t c,
                                         uint64_t threshold) {
  return (nnrt_rng_bits(key, c) >> 40) < threshold ? 1.0 : 0.0;
}
static inline double nnrt_draw_normal(uint64_t key, uint64_t c) {
  double u1 = (double)((nnrt_rng_bits(key, 2 * c) >> 11) + 1) * 0x1.0p-53;
  double u2 = (double)(nnrt_rng_bits(key, 2 * c + 1) >> 11) * 0x1.0p-53;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
#endif
