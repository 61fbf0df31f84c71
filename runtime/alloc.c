// alloc.c — every runtime allocation goes through one hook.
//
// The hook has the shape of Lua's lua_Alloc: fn(ud, NULL, n) allocates n
// bytes, fn(ud, p, 0) frees p; the runtime never asks it to resize. It need
// not align: nnrt_alloc asks for 64 + sizeof(void *) extra bytes, returns the
// first 64-byte boundary after room for one pointer and stores the hook's
// pointer just below it, so nnrt_free can hand back exactly what the hook
// gave. Blocks are zeroed. Tests install a hook to count allocations and to
// make the n-th one fail; a failure is reported by the caller as "out of
// memory", never a crash. Set the hook before allocating: a block must be
// freed by the hook that allocated it.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nnrt_internal.h"

enum { ALIGN = 64, HUGE_FROM = 4 << 20, PAGE = 4096 };

// Large blocks (datasets) ask for transparent huge pages before their first
// touch: shuffled batches read rows scattered over tens of megabytes, and
// with 4 KiB pages nearly every row is a TLB miss. Advice only: where the
// kernel says no, nothing changes.
static void advise_huge(void *p, size_t size) {
#ifdef MADV_HUGEPAGE
  uintptr_t lo = ((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
  uintptr_t hi = ((uintptr_t)p + size) & ~(uintptr_t)(PAGE - 1);
  if (size >= HUGE_FROM && hi > lo)
    madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
  (void)p, (void)size;
#endif
}

static void *default_alloc(void *ud, void *ptr, size_t size) {
  (void)ud;
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, size);
}

// Global mutable state, unavoidable: the allocation hook is process-wide
// because generated code and nnrt_main take no allocator argument.
static NnrtAllocFn *alloc_fn = default_alloc;
static void *alloc_ud = NULL;

void nnrt_set_alloc(NnrtAllocFn *fn, void *ud) {
  alloc_fn = fn ? fn : default_alloc;
  alloc_ud = fn ? ud : NULL;
}

void *nnrt_alloc(size_t size) {
  size_t extra = ALIGN + sizeof(void *);
  if (size > SIZE_MAX - extra)
    return NULL;
  char *raw = alloc_fn(alloc_ud, NULL, size + extra);
  if (!raw)
    return NULL;
  uintptr_t p = ((uintptr_t)raw + sizeof(void *) + ALIGN - 1) &
                ~(uintptr_t)(ALIGN - 1);
  void **block = (void **)p;
  block[-1] = raw;
  advise_huge(block, size);
  memset(block, 0, size);
  return block;
}

void nnrt_free(void *ptr) {
  if (!ptr)
    return;
  void *raw = ((void **)ptr)[-1];
  alloc_fn(alloc_ud, raw, 0);
}

void *nnrt_alloc_array(int64_t count, size_t elem) {
  if (count < 0 || elem == 0 || (uint64_t)count > SIZE_MAX / elem)
    return NULL;
  return nnrt_alloc((size_t)count * elem);
}
