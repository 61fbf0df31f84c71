// codegen_target.c — which CPU the generated code is for (`nnc --cpu=NAME`).
//
// `native` (the default) is the build host: LLVM's host CPU name and its
// feature list. `x86-64-v2`, `x86-64-v3`, `x86-64-v4` (the psABI levels) and
// the other LLVM x86 CPU names take the features LLVM gives that CPU. For
// each choice we also know the feature mask (bits of NNRT_CPU_FEATURES in
// runtime/nnrt.h) that the binary records in its nnc_model table, so that the
// runtime can refuse to start on a CPU lacking them instead of dying on
// SIGILL, and the widest vector register the target has, from which the
// kernels size their register tiles (cg_target_tiles).
#include <stdlib.h>
#include <string.h>

#include "codegen_internal.h"
#include "nnrt.h"

// LLVM 19's x86-64 CPU names and the NNRT_CPU_FEATURES each enables
// (generated from `clang -march=NAME -dM -E`; names LLVM accepts only for
// 32-bit targets are left out).
static const struct {
  const char *name;
  int64_t mask;
} cpus[] = {
    {"alderlake", 0x1fff},
    {"amdfam10", 0x811},
    {"arrowlake", 0x1fff},
    {"arrowlake-s", 0x1fff},
    {"athlon-fx", 0x0},
    {"athlon64", 0x0},
    {"athlon64-sse3", 0x1},
    {"atom", 0x1003},
    {"barcelona", 0x811},
    {"bdver1", 0x83f},
    {"bdver2", 0xbbf},
    {"bdver3", 0xbbf},
    {"bdver4", 0x1fff},
    {"bonnell", 0x1003},
    {"broadwell", 0x1fff},
    {"btver1", 0x813},
    {"btver2", 0x1b3f},
    {"cannonlake", 0x3ffff},
    {"cascadelake", 0x7ffff},
    {"clearwaterforest", 0x1fff},
    {"cooperlake", 0xfffff},
    {"core-avx-i", 0x13f},
    {"core-avx2", 0x1fff},
    {"core2", 0x3},
    {"corei7", 0x1f},
    {"corei7-avx", 0x3f},
    {"emeraldrapids", 0x1fffff},
    {"goldmont", 0x101f},
    {"goldmont-plus", 0x101f},
    {"gracemont", 0x1fff},
    {"grandridge", 0x1fff},
    {"graniterapids", 0x1fffff},
    {"graniterapids-d", 0x1fffff},
    {"haswell", 0x1fff},
    {"icelake-client", 0x7ffff},
    {"icelake-server", 0x7ffff},
    {"ivybridge", 0x13f},
    {"k8", 0x0},
    {"k8-sse3", 0x1},
    {"knl", 0x23fff},
    {"knm", 0x23fff},
    {"lunarlake", 0x1fff},
    {"meteorlake", 0x1fff},
    {"nehalem", 0x1f},
    {"nocona", 0x1},
    {"opteron", 0x0},
    {"opteron-sse3", 0x1},
    {"pantherlake", 0x1fff},
    {"penryn", 0x7},
    {"raptorlake", 0x1fff},
    {"rocketlake", 0x7ffff},
    {"sandybridge", 0x3f},
    {"sapphirerapids", 0x1fffff},
    {"sierraforest", 0x1fff},
    {"silvermont", 0x101f},
    {"skx", 0x3ffff},
    {"skylake", 0x1fff},
    {"skylake-avx512", 0x3ffff},
    {"slm", 0x101f},
    {"tigerlake", 0x7ffff},
    {"tremont", 0x101f},
    {"westmere", 0x1f},
    {"x86-64", 0x0},
    {"x86-64-v2", 0x1f},
    {"x86-64-v3", 0x1fff},
    {"x86-64-v4", 0x3ffff},
    {"znver1", 0x1fff},
    {"znver2", 0x1fff},
    {"znver3", 0x1fff},
    {"znver4", 0xfffff},
    {"znver5", 0xfffff},
};

#define FEATURE_NAME(bit, name) name,
static const char *const feature_names[] = {NNRT_CPU_FEATURES(FEATURE_NAME)};
enum { NFEATURES = sizeof feature_names / sizeof feature_names[0] };

bool codegen_cpu_known(const char *name) {
  if (strcmp(name, "native") == 0)
    return true;
  for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; i++)
    if (strcmp(cpus[i].name, name) == 0)
      return true;
  return false;
}

void codegen_cpu_list(FILE *out) {
  fputs("native (the build host, default), x86-64-v2, x86-64-v3, x86-64-v4,\n"
        "or an LLVM x86-64 CPU name:",
        out);
  int col = 80;
  for (size_t i = 0; i < sizeof cpus / sizeof cpus[0]; i++) {
    int n = (int)strlen(cpus[i].name) + 1;
    if (col + n > 78) {
      fputs("\n ", out);
      col = 1;
    }
    fprintf(out, " %s", cpus[i].name);
    col += n;
  }
  fputc('\n', out);
}

// The mask of the features LLVM's "+a,-b,+c" string enables.
static int64_t mask_of(const char *features) {
  int64_t mask = 0;
  for (const char *p = features; *p;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 1 && p[0] == '+')
      for (int i = 0; i < NFEATURES; i++)
        if (strlen(feature_names[i]) == n - 1 &&
            strncmp(p + 1, feature_names[i], n - 1) == 0)
          mask |= (int64_t)1 << i;
    p += n;
    if (*p == ',')
      p++;
  }
  return mask;
}

int cg_target(const char *name, CgTarget *t) {
  *t = (CgTarget){0};
  if (!name || strcmp(name, "native") == 0) {
    // The host name can be wrong on VMs (CPUID model), but the feature list
    // is right, and it is what enables AVX-512.
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    t->cpu = strdup(cpu);
    t->features = strdup(features);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    t->name = "native";
    t->mask = mask_of(t->features);
  } else {
    size_t i = 0, n = sizeof cpus / sizeof cpus[0];
    while (i < n && strcmp(cpus[i].name, name) != 0)
      i++;
    if (i == n)
      return 1;
    t->cpu = strdup(name);
    t->features = strdup(""); // the CPU's own
    t->name = cpus[i].name;
    t->mask = cpus[i].mask;
  }
  return 0;
}

void cg_target_free(CgTarget *t) {
  free(t->cpu);
  free(t->features);
}

// Register tiles of <16 x float> accumulators that stay in registers: 32
// zmm hold 24 of them and the operands; with 16 ymm registers a vector takes
// two (6 rows x 1 vector, the classic 6x16 AVX2 tile); with 16 xmm, four.
void cg_target_tiles(Cg *cg, int64_t mask) {
  int bit_avx = -1, bit_avx512 = -1, bit_fma = -1;
  for (int i = 0; i < NFEATURES; i++) {
    if (strcmp(feature_names[i], "fma") == 0)
      bit_fma = i;
    if (strcmp(feature_names[i], "avx") == 0)
      bit_avx = i;
    if (strcmp(feature_names[i], "avx512f") == 0)
      bit_avx512 = i;
  }
  if (mask >> bit_avx512 & 1) {
    cg->vec_bits = 512, cg->accs = 24, cg->max_nv = 4;
    cg->dot_mi = 6, cg->dot_nj = 4;
  } else if (mask >> bit_avx & 1) {
    cg->vec_bits = 256, cg->accs = 6, cg->max_nv = 1;
    cg->dot_mi = 3, cg->dot_nj = 2;
  } else {
    cg->vec_bits = 128, cg->accs = 2, cg->max_nv = 1;
    cg->dot_mi = 2, cg->dot_nj = 1;
  }
  cg->fma = mask >> bit_fma & 1 ? "llvm.fma" : "llvm.fmuladd";
  if (cg->elt_size == 8) { // f64: a vector of 16 doubles takes two registers
    cg->accs = cg->accs > 1 ? cg->accs / 2 : 1;
    cg->dot_mi = cg->dot_mi > 1 ? cg->dot_mi / 2 : 1;
  }
}

void codegen_llvm_version(unsigned *major, unsigned *minor, unsigned *patch) {
  LLVMGetVersion(major, minor, patch);
}
