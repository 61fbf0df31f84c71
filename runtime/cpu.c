// cpu.c — the start-up check that this CPU runs the generated code.
//
// nnc records in nnc_model.cpu_features the instruction-set extensions the
// target it compiled for (`--cpu`) may use. Running AVX-512 code on a CPU
// without it dies on SIGILL somewhere in the first kernel; instead the
// runtime asks the CPU (GCC's __builtin_cpu_supports, which reads CPUID and
// the OS's register-saving support) before any generated code runs. This
// file is compiled for baseline x86-64 like the rest of the runtime.
#include <stdio.h>
#include <string.h>

#include "nnrt.h"

int nnrt_cpu_check(const NnrtModel *m, char *msg, size_t cap) {
  int64_t need = m->cpu_features;
  if (!need)
    return 0;
  char lack[512] = "";
  size_t n = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
#define CHECK(bit, name)                                                       \
  if ((need >> (bit)&1) && !__builtin_cpu_supports(name))                      \
    n += (size_t)snprintf(lack + n, sizeof lack - n, "%s%s", n ? ", " : "",    \
                          name);
  NNRT_CPU_FEATURES(CHECK)
#undef CHECK
#else
  snprintf(lack, sizeof lack, "x86-64 features");
  n = 1;
#endif
  if (!n)
    return 0;
  snprintf(msg, cap,
           "this CPU lacks %s, which this binary was built to use (nnc "
           "--cpu=%s); rebuild it with a --cpu this machine has, e.g. "
           "--cpu=native",
           lack, m->cpu_name ? m->cpu_name : "?");
  return 1;
}
