// codegen.c — the LLVM module for one IrModule: target setup, the workspace
// plan, the generated entry points, the runtime's descriptor table, the pass
// pipeline and emission (object, assembly or textual IR).
//
// Consumes an optimized, fused IrModule (values numbered in order, every
// parameter with its gradient) and produces one module defining
//   nnc_train  the training loop: epochs, batches, forward, loss, backward
//              kernels and the optimizer update, calling the runtime back;
//   nnc_infer  the forward pass (and, given labels, loss and metrics);
//   nnc_model  the NnrtModel table of runtime/nnrt.h;
//   main       which hands over to nnrt_main.
// Per-value kernels come from codegen_kernels.c (and codegen_matmul.c,
// codegen_conv.c); this file also decides which kernels form row groups and
// which weight gradients apply the optimizer themselves. Invariants: every
// buffer is planned here at compile time (nothing is allocated in the loop);
// each materialized value owns a 16-float-aligned workspace region while it
// is live (regions are reused only between values whose lives do not
// overlap), so a kernel's output never shares memory with anything it reads,
// which is what makes the kernels' noalias arguments true. All LLVM objects
// are created and disposed inside codegen_emit.
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen_internal.h"
#include "nnrt.h"
#include "nnrt_rng.h"

// The generated table must match runtime/nnrt.h; the enums are shared by
// value.
_Static_assert(MAX_RANK == NNRT_MAX_RANK, "rank limits differ");
_Static_assert((int)INIT_ORTHOGONAL == (int)NNRT_INIT_ORTHOGONAL &&
                   (int)INIT_ARANGE == (int)NNRT_INIT_ARANGE,
               "InitKind and NnrtInit differ");
_Static_assert((int)INIT_HE_NORMAL == (int)NNRT_INIT_HE_NORMAL &&
                   (int)INIT_XAVIER_UNIFORM == (int)NNRT_INIT_XAVIER_UNIFORM,
               "InitKind and NnrtInit differ");
_Static_assert((int)DATA_INLINE == (int)NNRT_DATA_INLINE &&
                   (int)DATA_CSV == (int)NNRT_DATA_CSV,
               "DataKind and NnrtDataKind differ");
_Static_assert((int)DATA_TEXT == (int)NNRT_DATA_TEXT,
               "DataKind and NnrtDataKind differ");
_Static_assert(sizeof(NnrtModel) == 8 * (28 + NNRT_MAX_RANK + 2 * 16 + 8 +
                                          NNRT_MAX_RANK),
               "NnrtModel changed: update build_model");

// ---- which values are live, inline or stored --------------------------------
static void mark_root(bool *set, const IrValue *v) {
  if (v)
    set[v->id] = true;
}


// Where a value lives. Only ST_ROW and ST_FIXED values get a kernel.
typedef enum Store {
  ST_NONE,  // computed inline wherever it is used
  ST_PARAM, // params + the parameter's offset
  ST_INPUT, // the batch inputs (train: workspace; infer: argument x)
  ST_LABEL, // the batch labels (train: workspace; infer: argument y)
  ST_ALIAS, // RESHAPE: its argument's buffer
  ST_ROW,   // workspace, per-row part: off x max_batch
  ST_FIXED, // workspace, fixed part after all per-row regions
} Store;

// The workspace plan of one entry point, in floats. The workspace is
// [per-row regions x max_batch][fixed regions]; every region starts on a
// 16-float (64-byte) boundary when ws does. Regions are reused: a value's
// region is live from its kernel to the last kernel that reads it (roots to
// the end of the step), and a later value may take memory whose values are
// all dead. Kernel scratch is live during its kernel only. In nnc_train the
// gradients can share one block laid out like `params`, so the optimizer
// makes a single pass over all parameters.
typedef struct Plan {
  Store *st;                  // per value id
  int64_t *off;               // ST_ROW / ST_FIXED: region offset in its part
  int64_t *scr;               // kernel scratch: offset in the fixed part, or -1
  int64_t per_row, fixed;     // sizes of the two parts
  int64_t x_off[2], y_off[2]; // train: two batch buffers, inputs and labels
                              // (per-row part): a step reads one while the
                              // next batch is gathered into the other
  int64_t grad_off;           // train: the gradient block (fixed part), or -1
} Plan;

static int64_t round16(int64_t n) {
  return (n + 15) / 16 * 16;
}

// First-fit allocation in one part of the workspace, with coalescing.
typedef struct Heap {
  int64_t *off, *len; // free blocks, sorted by offset
  int n, cap;
  int64_t top; // the part's size so far
} Heap;

static int64_t heap_alloc(Arena *a, Heap *h, int64_t size) {
  for (int i = 0; i < h->n; i++)
    if (h->len[i] >= size) {
      int64_t o = h->off[i];
      h->off[i] += size;
      h->len[i] -= size;
      if (!h->len[i]) {
        memmove(h->off + i, h->off + i + 1,
                sizeof *h->off * (size_t)(h->n - i - 1));
        memmove(h->len + i, h->len + i + 1,
                sizeof *h->len * (size_t)(h->n - i - 1));
        h->n--;
      }
      return o;
    }
  // A free block at the top grows instead of leaving a hole.
  if (h->n && h->off[h->n - 1] + h->len[h->n - 1] == h->top) {
    int64_t o = h->off[--h->n];
    h->top = o + size;
    return o;
  }
  (void)a;
  int64_t o = h->top;
  h->top += size;
  return o;
}

static void heap_free(Arena *a, Heap *h, int64_t off, int64_t size) {
  if (h->n == h->cap) {
    int cap = h->cap ? 2 * h->cap : 16;
    int64_t *no = arena_alloc(a, sizeof *no * (size_t)cap);
    int64_t *nl = arena_alloc(a, sizeof *nl * (size_t)cap);
    if (h->n) {
      memcpy(no, h->off, sizeof *no * (size_t)h->n);
      memcpy(nl, h->len, sizeof *nl * (size_t)h->n);
    }
    h->off = no, h->len = nl, h->cap = cap;
  }
  int i = 0;
  while (i < h->n && h->off[i] < off)
    i++;
  memmove(h->off + i + 1, h->off + i, sizeof *h->off * (size_t)(h->n - i));
  memmove(h->len + i + 1, h->len + i, sizeof *h->len * (size_t)(h->n - i));
  h->off[i] = off, h->len[i] = size, h->n++;
  if (i + 1 < h->n && h->off[i] + h->len[i] == h->off[i + 1]) { // merge next
    h->len[i] += h->len[i + 1];
    memmove(h->off + i + 1, h->off + i + 2,
            sizeof *h->off * (size_t)(h->n - i - 2));
    memmove(h->len + i + 1, h->len + i + 2,
            sizeof *h->len * (size_t)(h->n - i - 2));
    h->n--;
  }
  if (i > 0 && h->off[i - 1] + h->len[i - 1] == h->off[i]) { // merge previous
    h->len[i - 1] += h->len[i];
    memmove(h->off + i, h->off + i + 1,
            sizeof *h->off * (size_t)(h->n - i - 1));
    memmove(h->len + i, h->len + i + 1,
            sizeof *h->len * (size_t)(h->n - i - 1));
    h->n--;
  }
}

// One region to place: live from its kernel `first` to `last`, inclusive.
typedef struct Region {
  int first, last;
  bool fixed;    // fixed part (else per-row)
  int64_t size;  // floats (per row in the per-row part)
  int64_t *slot; // where the chosen offset goes
} Region;

static int region_cmp(const void *a, const void *b) {
  const Region *x = a, *y = b;
  return x->first != y->first ? (x->first > y->first) - (x->first < y->first)
                              : (x->slot > y->slot) - (x->slot < y->slot);
}

// The value whose buffer v uses (RESHAPE aliases its argument).
static const IrValue *owner(const Plan *p, const IrValue *v) {
  while (p->st[v->id] == ST_ALIAS)
    v = v->arg[0];
  return v;
}

static bool has_kernel(const Plan *p, int i) {
  return p->st[i] == ST_ROW || p->st[i] == ST_FIXED;
}

// live: the values this entry point computes; pos[i]: when value i's kernel
// runs (kernels run in increasing pos); end: after every kernel (the driver
// reads the roots then); grads: lay the gradients out as one block.
static void plan_storage(Cg *cg, Plan *p, const bool *live, const bool *root,
                         const int *pos, int end, bool batch_io, bool grads) {
  const IrModule *m = cg->m;
  Arena *a = cg->arena;
  int n = m->fn->values.n;
  p->st = arena_alloc(a, sizeof *p->st * (size_t)n);
  p->off = arena_alloc(a, sizeof *p->off * (size_t)n);
  p->scr = arena_alloc(a, sizeof *p->scr * (size_t)n);
  p->per_row = p->fixed = 0;
  p->x_off[0] = p->x_off[1] = p->y_off[0] = p->y_off[1] = p->grad_off = -1;
  for (int i = 0; i < n; i++) {
    const IrValue *v = m->fn->values.item[i];
    p->scr[i] = -1;
    if (!live[i] || cg->inl[i])
      p->st[i] = ST_NONE;
    else if (v->op == OP_PARAM)
      p->st[i] = ST_PARAM;
    else if (v->op == OP_INPUT)
      p->st[i] = ST_INPUT;
    else if (v->op == OP_LABEL)
      p->st[i] = ST_LABEL;
    else if (v->op == OP_RESHAPE)
      p->st[i] = ST_ALIAS;
    else
      p->st[i] = v->batched ? ST_ROW : ST_FIXED;
  }

  // Last use of each stored value.
  int *last = arena_alloc(a, sizeof *last * (size_t)n);
  for (int i = 0; i < n; i++) {
    last[i] = has_kernel(p, i) ? pos[i] : -1;
    if (root[i] && live[i] && p->st[i] != ST_NONE)
      last[owner(p, m->fn->values.item[i])->id] = end;
  }
  for (int i = 0; i < n; i++) {
    if (!has_kernel(p, i))
      continue;
    PtrVec in = kernel_inputs(cg, m->fn->values.item[i]);
    for (int k = 0; k < in.n; k++) {
      int o = owner(p, in.item[k])->id;
      if (last[o] < pos[i])
        last[o] = pos[i];
    }
  }

  // The gradient block: every gradient its own kernel-computed value (and
  // none applies the optimizer itself).
  int64_t total = 0;
  bool block = grads && m->ntrainable > 0;
  for (int i = 0; i < n && block; i++)
    block = cg->opt_fused[i] < 0;
  for (int i = 0; i < m->ntrainable && block; i++) {
    const IrParam *pr = m->params.item[i];
    int g = pr->grad->id;
    block = p->st[g] == ST_FIXED;
    for (int j = 0; j < i && block; j++)
      block = ((IrParam *)m->params.item[j])->grad != pr->grad;
    total += shape_numel(pr->shape);
  }

  Region *r = arena_alloc(a, sizeof *r * (size_t)(2 * n + 3));
  int nr = 0;
  int64_t block_off = 0;
  if (block) {
    int first = end;
    for (int i = 0; i < m->ntrainable; i++) {
      int g = ((IrParam *)m->params.item[i])->grad->id;
      first = pos[g] < first ? pos[g] : first;
    }
    r[nr++] = (Region){first, end, true, round16(total), &block_off};
  }
  for (int i = 0; i < n; i++) {
    if (!has_kernel(p, i))
      continue;
    bool in_block = false;
    for (int k = 0; k < m->ntrainable && block && !in_block; k++)
      in_block = ((IrParam *)m->params.item[k])->grad->id == i;
    const IrValue *v = m->fn->values.item[i];
    if (grads && cg->opt_fused[i] >= 0)
      p->off[i] = 0; // never written: the kernel updates the parameter
    else if (!in_block)
      r[nr++] = (Region){pos[i], last[i], p->st[i] == ST_FIXED,
                         round16(shape_numel(v->shape)), &p->off[i]};
    int64_t sn = kernel_scratch(cg, v);
    if (sn > 0)
      r[nr++] = (Region){pos[i], pos[i], true, round16(sn), &p->scr[i]};
  }
  qsort(r, (size_t)nr, sizeof *r, region_cmp);

  Heap heap[2] = {{0}, {0}};                // per-row, fixed
  for (int k = 0; batch_io && k < 2; k++) { // x then y, twice, first
    p->x_off[k] = heap_alloc(
        a, &heap[0], round16(m->input ? shape_numel(m->input->shape) : 0));
    p->y_off[k] = heap_alloc(
        a, &heap[0], round16(m->label ? shape_numel(m->label->shape) : 0));
  }
  bool *freed = arena_alloc(a, (size_t)nr + 1);
  for (int i = 0; i < nr; i++) {
    for (int j = 0; j < i; j++) // free what died before this kernel
      if (!freed[j] && r[j].last < r[i].first) {
        heap_free(a, &heap[r[j].fixed], *r[j].slot, r[j].size);
        freed[j] = true;
      }
    *r[i].slot = heap_alloc(a, &heap[r[i].fixed], r[i].size);
  }
  if (block) {
    p->grad_off = block_off;
    int64_t o = block_off;
    for (int i = 0; i < m->ntrainable; i++) {
      const IrParam *pr = m->params.item[i];
      p->off[pr->grad->id] = o;
      o += shape_numel(pr->shape);
    }
  }
  p->per_row = heap[0].top;
  p->fixed = heap[1].top;
}

// ---- entry-point frames: buffer pointers of one generated function ----------
typedef struct Frame {
  const Plan *plan;
  bool profile; // count cycles per kernel (nnc_train of NNC_PROFILE builds)
  const int64_t *poff; // float offset of each parameter in `params`
  LLVMValueRef params, ws, max_batch, x, y, rows;
  LLVMValueRef state, tf; // nnc_train: optimizer state, this step's t
  LLVMValueRef key;       // the step's key of random draws (i64)
  LLVMValueRef lr;        // nnc_train: the step's learning rate (float)
  LLVMValueRef *ptr;      // per value id, once computed
  // nnc_train: the call that starts gathering the next batch, made once per
  // step before the first row-group kernel (see build_train).
  LLVMTypeRef prefetch_ty;
  LLVMValueRef prefetch_fn, prefetch_args[4];
  bool prefetch_pending;
  // nnc_train: the run, and whether --check-numerics asked for every
  // kernel's output to be checked (an i1; NULL: no checks are emitted).
  LLVMValueRef run, check;
  // nnc_train of --mpi builds: per trainable parameter, the kernel after
  // which its gradient is final and read by no other kernel (then handed
  // to nnrt_grad_ready), or -1 (no allreduce: not computed by a kernel, or
  // shared with an earlier parameter). NULL otherwise.
  const int *grad_at;
} Frame;

static void emit_prefetch(Cg *cg, Frame *f) {
  if (!f->prefetch_pending)
    return;
  LLVMBuildCall2(cg->b, f->prefetch_ty, f->prefetch_fn, f->prefetch_args, 4,
                 "");
  f->prefetch_pending = false;
}

// The fixed part of the workspace at float offset off.
static LLVMValueRef fixed_ptr(Cg *cg, Frame *f, int64_t off) {
  return cg_gep(cg, f->ws,
                cg_add(cg,
                       cg_mul(cg, f->max_batch, cg_i64(cg, f->plan->per_row)),
                       cg_i64(cg, off)));
}

static LLVMValueRef value_ptr(Cg *cg, Frame *f, const IrValue *v) {
  if (f->ptr[v->id])
    return f->ptr[v->id];
  const Plan *p = f->plan;
  LLVMValueRef r = NULL;
  switch (p->st[v->id]) {
  case ST_NONE:
    assert(!"value has no buffer");
    break;
  case ST_PARAM:
    r = cg_gep(cg, f->params, cg_i64(cg, f->poff[v->attr.index]));
    break;
  case ST_INPUT:
    r = f->x;
    break;
  case ST_LABEL:
    r = f->y;
    break;
  case ST_ALIAS:
    r = value_ptr(cg, f, v->arg[0]);
    break;
  case ST_ROW:
    r = cg_gep(cg, f->ws, cg_mul(cg, f->max_batch, cg_i64(cg, p->off[v->id])));
    break;
  case ST_FIXED:
    r = fixed_ptr(cg, f, p->off[v->id]);
    break;
  }
  return f->ptr[v->id] = r;
}

// Computes every buffer pointer up front, so they sit in the entry block.
static void frame_pointers(Cg *cg, Frame *f, const bool *live) {
  f->ptr = arena_alloc(cg->arena, sizeof *f->ptr * (size_t)cg->m->fn->values.n);
  for (int i = 0; i < cg->m->fn->values.n; i++)
    if (live[i] && f->plan->st[i] != ST_NONE)
      value_ptr(cg, f, cg->m->fn->values.item[i]);
}

// Calls the kernels of every stored value in `set`, in order.
// ---- NNC_PROFILE: cycles per kernel -------------------------------------------
// With NNC_PROFILE set in nnc's environment, nnc_train counts the time stamp
// counter around every kernel call, the batch fetch, the optimizer and the
// runtime callbacks, and prints a table to stderr when training ends (main
// thread wall time: a parallel kernel counts once). Slots: value ids, then
// the ones below.
enum { PROF_FETCH, PROF_OPT, PROF_BATCH_END, PROF_EPOCH_END, PROF_N };

static LLVMValueRef prof_now(Cg *cg) {
  unsigned id = LLVMLookupIntrinsicID("llvm.readcyclecounter", 21);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, NULL, 0);
  return LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->lc, id, NULL, 0), fn,
                        NULL, 0, "");
}

static void prof_add(Cg *cg, int slot, LLVMValueRef t0) {
  if (!cg->prof)
    return;
  LLVMValueRef idx[2] = {cg_i64(cg, 0), cg_i64(cg, slot)};
  LLVMValueRef p = LLVMBuildInBoundsGEP2(
      cg->b, LLVMGlobalGetValueType(cg->prof), cg->prof, idx, 2, "");
  LLVMValueRef d = LLVMBuildSub(cg->b, prof_now(cg), t0, "");
  LLVMBuildStore(
      cg->b,
      LLVMBuildAdd(cg->b, LLVMBuildLoad2(cg->b, cg->t_i64, p, ""), d, ""), p);
}

static LLVMValueRef prof_start(Cg *cg) {
  return cg->prof ? prof_now(cg) : NULL;
}

// dprintf(2, ...) of every nonzero slot: name, Mcycles, share of the total.
static void prof_print(Cg *cg) {
  if (!cg->prof)
    return;
  int n = cg->m->fn->values.n;
  LLVMTypeRef pty =
      LLVMFunctionType(cg->t_i32, (LLVMTypeRef[]){cg->t_i32, cg->t_ptr}, 2, 1);
  LLVMValueRef pf = LLVMGetNamedFunction(cg->mod, "dprintf");
  if (!pf)
    pf = LLVMAddFunction(cg->mod, "dprintf", pty);
  LLVMTypeRef aty = LLVMGlobalGetValueType(cg->prof);
  LLVMValueRef total = cg_i64(cg, 0);
  for (int i = 0; i < n + PROF_N; i++) {
    if (i >= n + PROF_EPOCH_END)
      continue; // evaluation and saving: not part of the epoch's seconds
    LLVMValueRef idx[2] = {cg_i64(cg, 0), cg_i64(cg, i)};
    total = LLVMBuildAdd(
        cg->b, total,
        LLVMBuildLoad2(cg->b, cg->t_i64,
                       LLVMBuildInBoundsGEP2(cg->b, aty, cg->prof, idx, 2, ""),
                       ""),
        "");
  }
  LLVMValueRef totf = LLVMBuildUIToFP(cg->b, total, cg->t_f64, "");
  static const char *extra[PROF_N] = {"fetch (gather)", "optimizer (rest)",
                                      "nnrt_batch_end",
                                      "epoch_end (not timed)"};
  for (int i = 0; i < n + PROF_N; i++) {
    const char *name;
    if (i < n) {
      const IrValue *v = cg->m->fn->values.item[i];
      if (!cg->kern[i])
        continue;
      name = arena_printf(cg->arena, "k%d.%s", v->id, prims[v->op].name);
    } else {
      name = extra[i - n];
    }
    LLVMValueRef idx[2] = {cg_i64(cg, 0), cg_i64(cg, i)};
    LLVMValueRef c = LLVMBuildLoad2(
        cg->b, cg->t_i64,
        LLVMBuildInBoundsGEP2(cg->b, aty, cg->prof, idx, 2, ""), "");
    LLVMValueRef cf = LLVMBuildUIToFP(cg->b, c, cg->t_f64, "");
    LLVMValueRef args[5] = {
        LLVMConstInt(cg->t_i32, 2, 0),
        LLVMBuildGlobalStringPtr(
            cg->b, "nnc profile: %-22s %10.2f Mcycles %6.2f %%\n", ""),
        LLVMBuildGlobalStringPtr(cg->b, name, ""),
        LLVMBuildFMul(cg->b, cf, LLVMConstReal(cg->t_f64, 1e-6), ""),
        LLVMBuildFDiv(
            cg->b, LLVMBuildFMul(cg->b, cf, LLVMConstReal(cg->t_f64, 100), ""),
            totf, ""),
    };
    LLVMBuildCall2(cg->b, pty, pf, args, 5, "");
  }
}

// Calls the kernels of every stored value in `set`, in order; with
// `fused_opt`, only the gradient kernels that apply the optimizer (they run
// after every other kernel, when nothing reads the parameters any more),
// else all but those.
static void emit_check(Cg *cg, Frame *f, const Kernel *k);
static void emit_grad_ready(Cg *cg, Frame *f, int at);

static void call_kernels(Cg *cg, Frame *f, const bool *set, bool fused_opt) {
  for (int i = 0; i < cg->m->fn->values.n; i++) {
    const IrValue *v = cg->m->fn->values.item[i];
    if (!set[i] || (f->plan->st[i] != ST_ROW && f->plan->st[i] != ST_FIXED))
      continue;
    if ((cg->opt_fused && cg->opt_fused[i] >= 0) != fused_opt)
      continue;
    if (cg->group[i] >= 0 && cg->group[i] != i)
      continue; // computed by its row group's kernel
    if (cg->group[i] == i)
      emit_prefetch(cg, f);
    const Kernel *k = kernel_get(cg, v);
    int nopt = k->opt_param >= 0 ? 4 : 0;
    int n = k->nout + k->nin + 1 + k->scratch + k->key + nopt;
    LLVMValueRef *args = arena_alloc(cg->arena, sizeof *args * (size_t)n);
    for (int a = 0; a < k->nout; a++)
      args[a] = value_ptr(cg, f, k->outs[a]);
    for (int a = 0; a < k->nin; a++)
      args[k->nout + a] = value_ptr(cg, f, k->in[a]);
    if (k->scratch) {
      assert(f->plan->scr[i] >= 0);
      args[k->nout + k->nin] = fixed_ptr(cg, f, f->plan->scr[i]);
    }
    if (k->key)
      args[k->nout + k->nin + k->scratch] = f->key;
    if (nopt) {
      args[n - 5] = cg_gep(cg, f->params, cg_i64(cg, f->poff[k->opt_param]));
      args[n - 4] = cg_gep(cg, f->state, cg_i64(cg, f->poff[k->opt_param]));
      args[n - 3] = f->tf;
      args[n - 2] = f->lr;
    }
    args[n - 1] = f->rows;
    LLVMValueRef t0 = f->profile ? prof_start(cg) : NULL;
    LLVMBuildCall2(cg->b, k->ty, k->fn, args, (unsigned)n, "");
    if (t0)
      prof_add(cg, i, t0);
    if (f->check)
      emit_check(cg, f, k);
    if (f->grad_at)
      emit_grad_ready(cg, f, i);
  }
}

static LLVMValueRef runtime_fn(Cg *cg, const char *name, LLVMTypeRef ret,
                               LLVMTypeRef *params, unsigned n,
                               LLVMTypeRef *ty);

// What --check-numerics says about value v: the primitive, the layer
// instance and the source line, e.g. "'matmul' (value %12) in dense_1 at
// m.nn:2:17". Values made after sema (gradients, rewrites) take the layer
// of a value from the same source position.
static const char *check_desc(Cg *cg, const IrValue *v) {
  const IrValue *named = v;
  for (int i = 0; !named->layer && i < cg->m->fn->values.n; i++) {
    const IrValue *u = cg->m->fn->values.item[i];
    if (u->layer && u->loc.line == v->loc.line && u->loc.col == v->loc.col &&
        u->loc.file == v->loc.file)
      named = u;
  }
  const IrValue *obj = cg->step->objective;
  const char *pass = obj && v->id > obj->id ? " of the backward pass" : "";
  Loc at = v->loc;
  if (named->layer && at.file && !strncmp(at.file, "<stdlib>", 8))
    at = named->layer_call;  // the user's line, not the stdlib's
  if (!named->layer)
    return arena_printf(cg->arena, "'%s' (value %%%d%s) at %s:%d:%d",
                        prims[v->op].name, v->id, pass,
                        at.file ? at.file : "?", at.line, at.col);
  return arena_printf(cg->arena, "'%s' (value %%%d%s) in %s at %s:%d:%d",
                      prims[v->op].name, v->id, pass, named->layer,
                      at.file ? at.file : "?", at.line, at.col);
}

// --check-numerics: after kernel k, when the run asks for it, the runtime
// scans each value k wrote for a NaN or an infinity (nnrt_check_values).
static void emit_check(Cg *cg, Frame *f, const Kernel *k) {
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, ty;
  LLVMValueRef fn = runtime_fn(cg, "nnrt_check_values", cg->t_void,
                               (LLVMTypeRef[]){P, P, I, P}, 4, &ty);
  LLVMValueRef host = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(cg->lc, host, "check");
  LLVMBasicBlockRef cont = LLVMAppendBasicBlockInContext(cg->lc, host, "");
  LLVMBuildCondBr(cg->b, f->check, then, cont);
  LLVMPositionBuilderAtEnd(cg->b, then);
  for (int a = 0; a < k->nout; a++) {
    const IrValue *v = k->outs[a];
    LLVMValueRef n = cg_i64(cg, shape_numel(v->shape));
    if (v->batched)
      n = cg_mul(cg, n, f->rows);
    LLVMValueRef args[4] = {
        f->run, value_ptr(cg, f, v), n,
        LLVMBuildGlobalStringPtr(cg->b, check_desc(cg, v), "")};
    LLVMBuildCall2(cg->b, ty, fn, args, 4, "");
  }
  LLVMBuildBr(cg->b, cont);
  LLVMPositionBuilderAtEnd(cg->b, cont);
}

// An element as a double (the runtime's callbacks take doubles).
static LLVMValueRef to_f64(Cg *cg, LLVMValueRef x) {
  return cg->elt_size == 8 ? x : LLVMBuildFPExt(cg->b, x, cg->t_f64, "");
}

// A scalar root as a double (0 when absent).
static LLVMValueRef load_scalar(Cg *cg, Frame *f, const IrValue *v) {
  if (!v)
    return LLVMConstReal(cg->t_f64, 0);
  assert(shape_numel(v->shape) == 1 && !v->batched);
  return to_f64(cg, cg_load(cg, value_ptr(cg, f, v), cg_i64(cg, 0)));
}

// f64 models: the runtime's batch data are floats. widen turns n floats at
// src into elements at dst, the last first, so dst may be src itself (a
// buffer sized for n elements: float i is read before any wider store
// reaches it); narrow writes n elements as floats (predictions).
static void widen(Cg *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n) {
  Loop l;
  LLVMValueRef i = loop_begin(cg, &l, n, "w");
  LLVMValueRef j = LLVMBuildNSWSub(cg->b, LLVMBuildNSWSub(cg->b, n, i, ""),
                                   cg_i64(cg, 1), "");
  LLVMValueRef x = LLVMBuildLoad2(
      cg->b, cg->t_f32, LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, src, &j, 1, ""),
      "");
  LLVMSetAlignment(x, 4);
  cg_store(cg, LLVMBuildFPExt(cg->b, x, cg->t_elt, ""), dst, j);
  loop_end(cg, &l);
}

static void narrow(Cg *cg, LLVMValueRef dst, LLVMValueRef src,
                   LLVMValueRef n) {
  Loop l;
  LLVMValueRef i = loop_begin(cg, &l, n, "n");
  LLVMValueRef x = LLVMBuildFPTrunc(cg->b, cg_load(cg, src, i), cg->t_f32, "");
  LLVMSetAlignment(
      LLVMBuildStore(cg->b, x,
                     LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, dst, &i, 1, "")),
      4);
  loop_end(cg, &l);
}

static int64_t numel_of(const IrValue *v) {
  return v ? shape_numel(v->shape) : 0;
}

// --mpi: nnrt_grad_ready(run, g, n) for every gradient final after the
// kernel at `at` (see Frame.grad_at), so the runtime can start summing it
// over the ranks while the rest of the backward pass runs.
static void emit_grad_ready(Cg *cg, Frame *f, int at) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, ty;
  LLVMValueRef fn = runtime_fn(cg, "nnrt_grad_ready", cg->t_void,
                               (LLVMTypeRef[]){P, P, I}, 3, &ty);
  for (int j = 0; j < m->ntrainable; j++) {
    if (f->grad_at[j] != at)
      continue;
    const IrParam *p = m->params.item[j];
    LLVMValueRef args[3] = {f->run, value_ptr(cg, f, p->grad),
                            cg_i64(cg, shape_numel(p->shape))};
    LLVMBuildCall2(cg->b, ty, fn, args, 3, "");
  }
}

// Frame.grad_at for --mpi: for each parameter the current step updates,
// the position (a kernel's value id, a row group at its leader) after which
// its gradient is complete and no later kernel of the step reads it (the
// runtime scales it in place and receives into it); -1 for the others.
static const int *grad_ready_points(Cg *cg, const Plan *plan,
                                    const bool *live) {
  const IrModule *m = cg->m;
  const IrStep *st = cg->step;
  int n = m->fn->values.n;
  int *at = arena_alloc(cg->arena, sizeof(int) * (size_t)(m->ntrainable + 1));
  for (int j = 0; j < m->ntrainable; j++)
    at[j] = -1;
  for (int q = 0; q < st->nparams; q++) {
    int j = st->params[q];
    const IrValue *g = owner(plan, ((IrParam *)m->params.item[j])->grad);
    if (!has_kernel(plan, g->id))
      continue; // a parameter or a constant: the same on every rank
    bool shared = false;
    for (int k = 0; k < q && !shared; k++)
      shared = owner(plan, ((IrParam *)m->params.item[st->params[k]])->grad) ==
               g;
    if (shared)
      continue; // summed once, for the first parameter
    at[j] = cg->group[g->id] >= 0 ? cg->group[g->id] : g->id;
    for (int i = 0; i < n; i++) {
      if (!live[i] || !has_kernel(plan, i))
        continue;
      int pos = cg->group[i] >= 0 ? cg->group[i] : i;
      PtrVec in = kernel_inputs(cg, m->fn->values.item[i]);
      for (int k = 0; k < in.n; k++)
        if (owner(plan, in.item[k]) == g && pos > at[j])
          at[j] = pos;
    }
  }
  return at;
}

// A declaration of a runtime function.
static LLVMValueRef runtime_fn(Cg *cg, const char *name, LLVMTypeRef ret,
                               LLVMTypeRef *params, unsigned n,
                               LLVMTypeRef *ty) {
  *ty = LLVMFunctionType(ret, params, n, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
  return fn ? fn : LLVMAddFunction(cg->mod, name, *ty);
}

static LLVMValueRef call(Cg *cg, LLVMTypeRef ty, LLVMValueRef fn,
                         LLVMValueRef *args, unsigned n) {
  return LLVMBuildCall2(cg->b, ty, fn, args, n, "");
}

static LLVMBasicBlockRef block(Cg *cg, LLVMValueRef fn, const char *name) {
  return LLVMAppendBasicBlockInContext(cg->lc, fn, name);
}

// The schedule's learning rate for a step, as a float: its scalar program
// on (iteration, epoch), then the warm-up factor min(1, (iteration + 1) /
// warmup).
static LLVMValueRef schedule_lr(Cg *cg, LLVMValueRef iteration,
                                LLVMValueRef epoch) {
  const IrSchedule *sc = &cg->step->sched;
  int nv = sc->fn->values.n;
  LLVMValueRef *val = arena_alloc(cg->arena, sizeof *val * (size_t)nv);
  LLVMValueRef args[2] = {iteration, epoch};
  for (int i = 0; i < nv; i++) {
    const IrValue *u = sc->fn->values.item[i];
    assert(u->id == i && shape_numel(u->shape) == 1 && !u->batched);
    LLVMValueRef x[MAX_ARGS];
    for (int a = 0; a < u->narg; a++)
      x[a] = val[u->arg[a]->id];
    if (u->op == OP_CONST)
      val[i] = cg_f32(cg, u->attr.num);
    else if (u->op == OP_ARG)
      val[i] = args[u->attr.index];
    else if (prims[u->op].kind == PK_EW)
      val[i] = ew_op(cg, u, x);
    else // SUM, MEAN, SUM_TO, RESHAPE of one number: the number
      val[i] = x[0];
  }
  LLVMValueRef lr = val[sc->lr->id];
  if (sc->warmup > 0) {
    LLVMValueRef w = LLVMBuildFDiv(
        cg->b, LLVMBuildFAdd(cg->b, iteration, cg_f32(cg, 1), ""),
        cg_f32(cg, (double)sc->warmup), "");
    w = LLVMBuildSelect(
        cg->b, LLVMBuildFCmp(cg->b, LLVMRealOLT, w, cg_f32(cg, 1), ""), w,
        cg_f32(cg, 1), "");
    lr = LLVMBuildFMul(cg->b, lr, w, "");
  }
  return lr;
}

// ---- nnc_train --------------------------------------------------------------
// t = nnrt_step_start(run); for (epoch = 0;; epoch++) {
//   nb = nnrt_epoch_begin(run, epoch); if (!nb) break;
//   for (i = 0; i < nb; i++) {
//     B = nnrt_batch_fetch(run, i, x[i % 2], y[i % 2]);
//     <forward kernels>
//     nnrt_batch_prefetch(run, i + 1, x[1 - i % 2], y[1 - i % 2]);
//     <loss, backward kernels>; t++; <optimizer over every param>
//     if (nnrt_batch_end(run, B, objective * B, correct)) goto done;
//   }
//   if (nnrt_epoch_end(run, epoch)) break;
// }
static LLVMValueRef build_train(Cg *cg, const Plan *plan, const bool *live,
                                const int64_t *poff) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, D = cg->t_f64;
  LLVMTypeRef pt[5] = {P, P, P, P, I};
  LLVMValueRef fn = cg_function(cg, "nnc_train",
                                LLVMFunctionType(cg->t_void, pt, 5, 0), false);
  LLVMTypeRef ty_begin, ty_fetch, ty_bend, ty_eend;
  LLVMValueRef f_begin = runtime_fn(cg, "nnrt_epoch_begin", I,
                                    (LLVMTypeRef[]){P, I}, 2, &ty_begin);
  LLVMValueRef f_fetch = runtime_fn(cg, "nnrt_batch_fetch", I,
                                    (LLVMTypeRef[]){P, I, P, P}, 4, &ty_fetch);
  LLVMValueRef f_bend = runtime_fn(cg, "nnrt_batch_end", I,
                                   (LLVMTypeRef[]){P, I, D, D}, 4, &ty_bend);
  LLVMValueRef f_eend =
      runtime_fn(cg, "nnrt_epoch_end", I, (LLVMTypeRef[]){P, I}, 2, &ty_eend);
  Frame f = {.plan = plan, .poff = poff};
  f.prefetch_fn = runtime_fn(cg, "nnrt_batch_prefetch", cg->t_void,
                             (LLVMTypeRef[]){P, I, P, P}, 4, &f.prefetch_ty);
  LLVMTypeRef ty_start; // steps already taken (a run resumed with --load)
  LLVMValueRef f_start =
      runtime_fn(cg, "nnrt_step_start", I, (LLVMTypeRef[]){P}, 1, &ty_start);

  LLVMValueRef run = LLVMGetParam(fn, 0), state = LLVMGetParam(fn, 2);
  f.params = LLVMGetParam(fn, 1);
  f.ws = LLVMGetParam(fn, 3);
  f.max_batch = LLVMGetParam(fn, 4);
  LLVMSetValueName2(run, "run", 3);
  LLVMSetValueName2(f.params, "params", 6);
  LLVMSetValueName2(state, "state", 5);
  LLVMSetValueName2(f.ws, "ws", 2);
  LLVMSetValueName2(f.max_batch, "max_batch", 9);

  LLVMBasicBlockRef entry = block(cg, fn, "entry");
  LLVMBasicBlockRef epoch_head = block(cg, fn, "epoch");
  LLVMBasicBlockRef batch_pre = block(cg, fn, "batches");
  LLVMBasicBlockRef batch_head = block(cg, fn, "batch");
  LLVMBasicBlockRef body = block(cg, fn, "step");
  LLVMBasicBlockRef next = block(cg, fn, "next");
  LLVMBasicBlockRef epoch_tail = block(cg, fn, "epoch_end");
  LLVMBasicBlockRef done = block(cg, fn, "done");
  LLVMValueRef zero = cg_i64(cg, 0), one = cg_i64(cg, 1);

  LLVMPositionBuilderAtEnd(cg->b, entry);
  LLVMValueRef xs[2], ys[2];
  for (int k = 0; k < 2; k++) {
    xs[k] =
        cg_gep(cg, f.ws, cg_mul(cg, f.max_batch, cg_i64(cg, plan->x_off[k])));
    ys[k] =
        cg_gep(cg, f.ws, cg_mul(cg, f.max_batch, cg_i64(cg, plan->y_off[k])));
  }
  f.x = xs[0], f.y = ys[0];
  frame_pointers(cg, &f, live);
  LLVMValueRef t = cg_alloca(cg, I, "t"), epoch = cg_alloca(cg, I, "epoch"),
               bi = cg_alloca(cg, I, "i");
  LLVMBuildStore(cg->b, LLVMBuildCall2(cg->b, ty_start, f_start, &run, 1, "t0"),
                 t);
  LLVMBuildStore(cg->b, zero, epoch);
  LLVMTypeRef ty_chk;
  LLVMValueRef f_chk =
      runtime_fn(cg, "nnrt_check_numerics", I, (LLVMTypeRef[]){P}, 1, &ty_chk);
  f.run = run;
  int64_t trained = poff[m->ntrainable];
  if (cg->opt->mpi && cg->step->opt.fn) {
    if (plan->grad_off >= 0) { // each rank updates its shard of the block
      LLVMTypeRef ty_l;
      LLVMValueRef f_l = runtime_fn(cg, "nnrt_grad_layout", cg->t_void,
                                    (LLVMTypeRef[]){P, P, I}, 3, &ty_l);
      call(cg, ty_l, f_l,
           (LLVMValueRef[]){run, fixed_ptr(cg, &f, plan->grad_off),
                            cg_i64(cg, trained)},
           3);
    }
  }
  f.check = LLVMBuildICmp(cg->b, LLVMIntNE,
                          LLVMBuildCall2(cg->b, ty_chk, f_chk, &run, 1, ""),
                          zero, "check");
  LLVMBuildBr(cg->b, epoch_head);

  LLVMPositionBuilderAtEnd(cg->b, epoch_head);
  LLVMValueRef e = LLVMBuildLoad2(cg->b, I, epoch, "e");
  LLVMValueRef nb = call(cg, ty_begin, f_begin, (LLVMValueRef[]){run, e}, 2);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLE, nb, zero, ""), done,
                  batch_pre);

  LLVMPositionBuilderAtEnd(cg->b, batch_pre);
  LLVMBuildStore(cg->b, zero, bi);
  LLVMBuildBr(cg->b, batch_head);

  LLVMPositionBuilderAtEnd(cg->b, batch_head);
  LLVMValueRef iv = LLVMBuildLoad2(cg->b, I, bi, "");
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, iv, nb, ""), body,
                  epoch_tail);

  LLVMPositionBuilderAtEnd(cg->b, body);
  f.profile = cg->prof != NULL;
  int nv = m->fn->values.n;
  // Step i reads batch buffer i % 2, and an idle worker of the pool fills
  // the other with batch i + 1 meanwhile (nnrt_batch_prefetch), so the
  // gather leaves the critical path. It is asked for before the first row
  // group (the loss and its gradient run on this thread alone, so the
  // worker is free then; at the start of the step it would miss the
  // forward matmuls' tasks), or after all kernels when there is none.
  // Pointers derived from x and y are recomputed for this step's buffer.
  LLVMValueRef odd = LLVMBuildTrunc(cg->b, iv, cg->t_i1, "odd");
  f.x = LLVMBuildSelect(cg->b, odd, xs[1], xs[0], "x");
  f.y = LLVMBuildSelect(cg->b, odd, ys[1], ys[0], "y");
  for (int i = 0; i < nv; i++) {
    Store s = plan->st[i];
    if (s == ST_INPUT || s == ST_LABEL || s == ST_ALIAS)
      f.ptr[i] = NULL;
  }
  LLVMValueRef t0 = prof_start(cg);
  f.rows = call(cg, ty_fetch, f_fetch, (LLVMValueRef[]){run, iv, f.x, f.y}, 4);
  LLVMSetValueName2(f.rows, "B", 1);
  if (cg->elt_size == 8) {
    widen(cg, f.x, f.x, cg_mul(cg, f.rows, cg_i64(cg, numel_of(m->input))));
    widen(cg, f.y, f.y, cg_mul(cg, f.rows, cg_i64(cg, numel_of(m->label))));
  }
  prof_add(cg, nv + PROF_FETCH, t0);
  f.prefetch_args[0] = run;
  f.prefetch_args[1] = LLVMBuildNSWAdd(cg->b, iv, one, "");
  f.prefetch_args[2] = LLVMBuildSelect(cg->b, odd, xs[0], xs[1], "");
  f.prefetch_args[3] = LLVMBuildSelect(cg->b, odd, ys[0], ys[1], "");
  f.prefetch_pending = true;
  LLVMValueRef tv =
      LLVMBuildNSWAdd(cg->b, LLVMBuildLoad2(cg->b, I, t, ""), one, "");
  LLVMBuildStore(cg->b, tv, t);
  LLVMValueRef tf = LLVMBuildSIToFP(cg->b, tv, cg->t_elt, "");
  f.state = state;
  f.tf = tf;
  if (m->ndraws) {
    LLVMTypeRef ty_key;
    LLVMValueRef f_key =
        runtime_fn(cg, "nnrt_step_key", I, (LLVMTypeRef[]){P, I}, 2, &ty_key);
    f.key = call(cg, ty_key, f_key, (LLVMValueRef[]){run, tv}, 2);
  }
  // The steps in order, each on the parameters the steps before it left:
  // its kernels, its optimizer over its parameters, its buffer updates,
  // then the numbers it reports (read at once: a later step may compute
  // the same values anew from updated parameters).
  int nsteps = m->nsteps ? m->nsteps : 1;
  const IrStep *steps = m->nsteps ? m->steps : cg->step;
  int nmetrics = 0;
  for (int k = 0; k < m->nsteps && m->step_blocks; k++)
    nmetrics += 1 + m->steps[k].nreports;
  LLVMValueRef metrics =
      nmetrics ? cg_alloca(cg, LLVMArrayType2(D, (uint64_t)nmetrics),
                           "metrics")
               : NULL;
  LLVMValueRef loss_mean = NULL;
  for (int k = 0, mi = 0; k < nsteps; k++) {
    cg->step = &steps[k];
    cg->opt_fn = NULL; // each step's optimizer has its own function
    const bool *sl = cg->step_live[k];
    f.grad_at = cg->opt->mpi && cg->step->opt.fn
                    ? grad_ready_points(cg, plan, sl)
                    : NULL;
    f.lr = cg_f32(cg, 0); // unused without a schedule
    if (cg->step->sched.lr) {
      LLVMTypeRef ty_ep, ty_rep;
      LLVMValueRef f_ep = runtime_fn(cg, "nnrt_epoch_number", I,
                                     (LLVMTypeRef[]){P}, 1, &ty_ep);
      LLVMValueRef f_rep = runtime_fn(cg, "nnrt_report_lr", cg->t_void,
                                      (LLVMTypeRef[]){P, D}, 2, &ty_rep);
      LLVMValueRef ep = call(cg, ty_ep, f_ep, &run, 1);
      f.lr = schedule_lr(
          cg,
          LLVMBuildSIToFP(cg->b, LLVMBuildNSWSub(cg->b, tv, one, ""),
                          cg->t_elt, ""),
          LLVMBuildSIToFP(cg->b, ep, cg->t_elt, ""));
      if (k == 0) // the first step's rate is the one reported
        call(cg, ty_rep, f_rep, (LLVMValueRef[]){run, to_f64(cg, f.lr)}, 2);
    }
    call_kernels(cg, &f, sl, false);
    emit_prefetch(cg, &f);            // no row group
    call_kernels(cg, &f, sl, true); // gradients that update their parameter
    t0 = prof_start(cg);
    if (f.grad_at && plan->grad_off < 0) { // --mpi: the gradients summed first
      LLVMTypeRef ty_gw;
      LLVMValueRef f_gw = runtime_fn(cg, "nnrt_grad_wait", cg->t_void,
                                     (LLVMTypeRef[]){P}, 1, &ty_gw);
      call(cg, ty_gw, f_gw, &run, 1);
    }
    if (cg->step->opt.fn) {
      LLVMValueRef opt = kernel_optimizer(cg);
      LLVMTypeRef oty = LLVMGlobalGetValueType(opt);
      // State k of element i is state[k * stride + i], stride covering the
      // buffers too (the runtime's layout); only trainables are updated.
      int64_t total = poff[m->params.n];
      if (plan->grad_off >= 0) { // one pass over every parameter
        LLVMValueRef lo = cg_i64(cg, 0), cnt = cg_i64(cg, trained);
        if (f.grad_at) { // --mpi: over this rank's shard [lo, lo + cnt)
          LLVMTypeRef ty_s;
          LLVMValueRef f_s = runtime_fn(cg, "nnrt_grad_shard", I,
                                        (LLVMTypeRef[]){P, P}, 2, &ty_s);
          LLVMValueRef slot = cg_alloca(cg, I, "shard_lo");
          cnt = call(cg, ty_s, f_s, (LLVMValueRef[]){run, slot}, 2);
          lo = LLVMBuildLoad2(cg->b, I, slot, "lo");
        }
        LLVMValueRef args[7] = {
            cg_gep(cg, f.params, lo),
            cg_gep(cg, fixed_ptr(cg, &f, plan->grad_off), lo),
            cg_gep(cg, state, lo), cnt, cg_i64(cg, total), tf, f.lr};
        call(cg, oty, opt, args, 7);
        if (f.grad_at) { // and every rank's shard to every rank
          LLVMTypeRef ty_g;
          LLVMValueRef f_g = runtime_fn(cg, "nnrt_params_gather", cg->t_void,
                                        (LLVMTypeRef[]){P, P}, 2, &ty_g);
          call(cg, ty_g, f_g, (LLVMValueRef[]){run, f.params}, 2);
        }
      }
      for (int j = 0; j < cg->step->nparams && plan->grad_off < 0; j++) {
        int i = cg->step->params[j];
        const IrParam *p = m->params.item[i];
        if (cg->opt_fused[p->grad->id] == i)
          continue; // updated by its gradient's kernel
        LLVMValueRef args[7] = {
            cg_gep(cg, f.params, cg_i64(cg, poff[i])),
            value_ptr(cg, &f, p->grad),
            cg_gep(cg, state, cg_i64(cg, poff[i])),
            cg_i64(cg, poff[i + 1] - poff[i]),
            cg_i64(cg, total),
            tf,
            f.lr,
        };
        call(cg, oty, opt, args, 7);
      }
    }
    // Buffers take their new values (computed from the step's parameters,
    // and stored apart from every parameter, so nothing read is
    // overwritten).
    for (int i = 0; i < m->updates.n; i++) {
      const IrUpdate *u = m->updates.item[i];
      if (u->step != k)
        continue;
      const IrParam *p = m->params.item[u->param];
      unsigned al = (unsigned)cg->elt_size;
      LLVMBuildMemMove(cg->b, cg_gep(cg, f.params, cg_i64(cg, poff[u->param])),
                       al, value_ptr(cg, &f, u->value), al,
                       cg_i64(cg, cg->elt_size * shape_numel(p->shape)));
    }
    prof_add(cg, nv + PROF_OPT, t0);
    if (k == 0)
      loss_mean = load_scalar(cg, &f, cg->step->objective);
    for (int r = -1; metrics && r < cg->step->nreports; r++) {
      const IrValue *v = r < 0 ? cg->step->objective : cg->step->report[r];
      LLVMValueRef idx[2] = {cg_i64(cg, 0), cg_i64(cg, mi++)};
      LLVMBuildStore(cg->b, load_scalar(cg, &f, v),
                     LLVMBuildInBoundsGEP2(
                         cg->b, LLVMArrayType2(D, (uint64_t)nmetrics),
                         metrics, idx, 2, ""));
    }
  }
  cg->step = &steps[0];
  if (steps[0].opt.fn) { // --check-numerics: and the parameters after the update
    LLVMTypeRef ty_cp;
    LLVMValueRef f_cp = runtime_fn(cg, "nnrt_check_params", cg->t_void,
                                   (LLVMTypeRef[]){P, P}, 2, &ty_cp);
    LLVMBasicBlockRef chk = block(cg, fn, "check_params"),
                      after = block(cg, fn, "");
    LLVMBuildCondBr(cg->b, f.check, chk, after);
    LLVMPositionBuilderAtEnd(cg->b, chk);
    call(cg, ty_cp, f_cp, (LLVMValueRef[]){run, f.params}, 2);
    LLVMBuildBr(cg->b, after);
    LLVMPositionBuilderAtEnd(cg->b, after);
  }
  if (metrics) {
    LLVMTypeRef ty_bm;
    LLVMValueRef f_bm = runtime_fn(cg, "nnrt_batch_metrics", cg->t_void,
                                   (LLVMTypeRef[]){P, P}, 2, &ty_bm);
    call(cg, ty_bm, f_bm, (LLVMValueRef[]){run, metrics}, 2);
  }
  LLVMValueRef loss_sum = LLVMBuildFMul(
      cg->b, loss_mean, LLVMBuildSIToFP(cg->b, f.rows, D, ""), "");
  LLVMValueRef correct = load_scalar(cg, &f, m->correct);
  t0 = prof_start(cg);
  LLVMValueRef stop = call(cg, ty_bend, f_bend,
                           (LLVMValueRef[]){run, f.rows, loss_sum, correct}, 4);
  prof_add(cg, nv + PROF_BATCH_END, t0);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, stop, zero, ""), done,
                  next);

  LLVMPositionBuilderAtEnd(cg->b, next);
  LLVMBuildStore(cg->b, LLVMBuildNSWAdd(cg->b, iv, one, ""), bi);
  LLVMBuildBr(cg->b, batch_head);

  LLVMPositionBuilderAtEnd(cg->b, epoch_tail);
  t0 = prof_start(cg);
  LLVMValueRef s = call(cg, ty_eend, f_eend, (LLVMValueRef[]){run, e}, 2);
  prof_add(cg, nv + PROF_EPOCH_END, t0);
  LLVMBuildStore(cg->b, LLVMBuildNSWAdd(cg->b, e, one, ""), epoch);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, s, zero, ""), done,
                  epoch_head);

  LLVMPositionBuilderAtEnd(cg->b, done);
  prof_print(cg);
  LLVMBuildRetVoid(cg->b);
  return fn;
}

// ---- nnc_infer --------------------------------------------------------------
// The output's kernels; the prediction copied to `out` when given; with labels,
// the loss side too, accumulated into stats.
static LLVMValueRef build_infer(Cg *cg, const Plan *plan, const bool *out_set,
                                const bool *loss_set, const bool *live,
                                const int64_t *poff) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, D = cg->t_f64;
  LLVMTypeRef pt[8] = {P, P, I, P, P, I, P, P};
  LLVMValueRef fn = cg_function(cg, "nnc_infer",
                                LLVMFunctionType(cg->t_void, pt, 8, 0), false);
  Frame f = {.plan = plan, .poff = poff};
  f.params = LLVMGetParam(fn, 0);
  f.ws = LLVMGetParam(fn, 1);
  f.max_batch = LLVMGetParam(fn, 2);
  f.x = LLVMGetParam(fn, 3);
  f.y = LLVMGetParam(fn, 4);
  f.rows = LLVMGetParam(fn, 5);
  LLVMValueRef out = LLVMGetParam(fn, 6), stats = LLVMGetParam(fn, 7);
  const char *names[8] = {"params", "ws",   "max_batch", "x",
                          "y",      "rows", "out",       "stats"};
  for (unsigned i = 0; i < 8; i++)
    LLVMSetValueName2(LLVMGetParam(fn, i), names[i], strlen(names[i]));

  LLVMBasicBlockRef entry = block(cg, fn, "entry");
  LLVMBasicBlockRef copy = block(cg, fn, "copy_out");
  LLVMBasicBlockRef after_copy = block(cg, fn, "labels");
  LLVMBasicBlockRef with_y = block(cg, fn, "loss");
  LLVMBasicBlockRef done = block(cg, fn, "done");
  LLVMPositionBuilderAtEnd(cg->b, entry);
  // Draws in the inference graph (sampling a generative model) use step 0's
  // key of the model's default seed.
  f.key = LLVMConstInt(cg->t_i64, nnrt_infer_key(m->train.seed), 0);
  if (cg->elt_size == 8) { // the float x and y as elements, in the workspace
    LLVMValueRef y = f.y;
    f.x = cg_gep(cg, f.ws, cg_mul(cg, f.max_batch, cg_i64(cg, plan->x_off[0])));
    f.y = cg_gep(cg, f.ws, cg_mul(cg, f.max_batch, cg_i64(cg, plan->y_off[0])));
    widen(cg, f.x, LLVMGetParam(fn, 3),
          cg_mul(cg, f.rows, cg_i64(cg, numel_of(m->input))));
    LLVMValueRef ny = LLVMBuildSelect(
        cg->b, LLVMBuildIsNull(cg->b, y, ""), cg_i64(cg, 0),
        cg_mul(cg, f.rows, cg_i64(cg, numel_of(m->label))), "");
    widen(cg, f.y, y, ny);
  }
  frame_pointers(cg, &f, live);
  call_kernels(cg, &f, out_set, false);
  LLVMBuildCondBr(cg->b, LLVMBuildIsNotNull(cg->b, out, ""), copy, after_copy);

  LLVMPositionBuilderAtEnd(cg->b, copy);
  IrGraph ev = ir_eval_graph(m);
  const IrValue *o = ev.output;
  int64_t bytes = shape_numel(o->shape) * 4;
  LLVMValueRef src = value_ptr(cg, &f, o);
  if (cg->elt_size == 8) { // predictions are floats
    Loop l;
    LLVMValueRef r = loop_begin(cg, &l, f.rows, "r");
    LLVMValueRef n = cg_i64(cg, bytes / 4);
    narrow(cg,
           LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, out,
                                 (LLVMValueRef[]){cg_mul(cg, r, n)}, 1, ""),
           o->batched ? cg_gep(cg, src, cg_mul(cg, r, n)) : src, n);
    loop_end(cg, &l);
  } else if (o->batched) {
    LLVMBuildMemCpy(cg->b, out, 4, src, 4,
                    cg_mul(cg, f.rows, cg_i64(cg, bytes)));
  } else { // one prediction for every row
    Loop l;
    LLVMValueRef r = loop_begin(cg, &l, f.rows, "r");
    LLVMValueRef dst = cg_gep(cg, out, cg_mul(cg, r, cg_i64(cg, bytes / 4)));
    LLVMBuildMemCpy(cg->b, dst, 4, src, 4, cg_i64(cg, bytes));
    loop_end(cg, &l);
  }
  LLVMBuildBr(cg->b, after_copy);

  LLVMPositionBuilderAtEnd(cg->b, after_copy);
  bool has_loss = ev.objective || ev.correct || m->step_blocks;
  LLVMBuildCondBr(cg->b,
                  has_loss ? LLVMBuildIsNotNull(cg->b, LLVMGetParam(fn, 4), "")
                           : LLVMConstInt(cg->t_i1, 0, 0),
                  with_y, done);

  LLVMPositionBuilderAtEnd(cg->b, with_y);
  call_kernels(cg, &f, loss_set, false);
  // stats[0]: the loss (the first step's objective for `step` blocks)
  // summed over the rows, [1] the correct count, [2 + k] metric k summed.
  LLVMValueRef rows_d = LLVMBuildSIToFP(cg->b, f.rows, D, "");
  int nstats = 2;
  for (int k = 0; k < m->nsteps && m->step_blocks; k++)
    nstats += 1 + m->steps[k].nreports;
  LLVMValueRef *vals =
      arena_alloc(cg->arena, sizeof(LLVMValueRef) * (size_t)nstats);
  const IrValue *obj = m->step_blocks ? m->steps[0].eval_objective
                                      : ev.objective;
  vals[0] = LLVMBuildFMul(cg->b, load_scalar(cg, &f, obj), rows_d, "");
  vals[1] = load_scalar(cg, &f, ev.correct);
  for (int k = 0, i = 2; k < m->nsteps && m->step_blocks; k++) {
    const IrStep *st = &m->steps[k];
    for (int r = -1; r < st->nreports; r++)
      vals[i++] = LLVMBuildFMul(
          cg->b,
          load_scalar(cg, &f, r < 0 ? st->eval_objective : st->eval_report[r]),
          rows_d, "");
  }
  for (int i = 0; i < nstats; i++) {
    LLVMValueRef idx = cg_i64(cg, i);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, D, stats, &idx, 1, "");
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, D, p, "");
    LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, cur, vals[i], ""), p);
  }
  LLVMBuildBr(cg->b, done);

  LLVMPositionBuilderAtEnd(cg->b, done);
  LLVMBuildRetVoid(cg->b);
  return fn;
}

// ---- nnc_sample ---------------------------------------------------------------
// void nnc_sample(params, ws, max_batch, rows, key, out): the kernels of
// `sample = expr` (inference mode, draws keyed by `key`) and the result
// copied to out (rows x its elements).
static LLVMValueRef build_sample(Cg *cg, const Plan *plan, const bool *set,
                                 const int64_t *poff) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64;
  LLVMTypeRef pt[6] = {P, P, I, I, I, P};
  LLVMValueRef fn = cg_function(cg, "nnc_sample",
                                LLVMFunctionType(cg->t_void, pt, 6, 0), false);
  Frame f = {.plan = plan, .poff = poff};
  f.params = LLVMGetParam(fn, 0);
  f.ws = LLVMGetParam(fn, 1);
  f.max_batch = LLVMGetParam(fn, 2);
  f.rows = LLVMGetParam(fn, 3);
  f.key = LLVMGetParam(fn, 4);
  LLVMValueRef out = LLVMGetParam(fn, 5);
  const char *names[6] = {"params", "ws", "max_batch", "rows", "key", "out"};
  for (unsigned i = 0; i < 6; i++)
    LLVMSetValueName2(LLVMGetParam(fn, i), names[i], strlen(names[i]));
  LLVMPositionBuilderAtEnd(cg->b, block(cg, fn, "entry"));
  frame_pointers(cg, &f, set);
  // Row groups are formed for nnc_train: here every kernel runs alone.
  int n = m->fn->values.n, *group = cg->group;
  cg->group = arena_alloc(cg->arena, sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++)
    cg->group[i] = -1;
  call_kernels(cg, &f, set, false);
  cg->group = group;
  int64_t bytes = shape_numel(m->sample->shape) * 4;
  if (cg->elt_size == 8) // samples are floats
    narrow(cg, out, value_ptr(cg, &f, m->sample),
           cg_mul(cg, f.rows, cg_i64(cg, bytes / 4)));
  else
    LLVMBuildMemCpy(cg->b, out, 4, value_ptr(cg, &f, m->sample), 4,
                    cg_mul(cg, f.rows, cg_i64(cg, bytes)));
  LLVMBuildRetVoid(cg->b);
  return fn;
}

// ---- the nnc_model descriptor -----------------------------------------------
static LLVMValueRef private_global(Cg *cg, LLVMValueRef init, const char *name,
                                   unsigned align) {
  LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  LLVMSetAlignment(g, align);
  return g;
}

static LLVMValueRef null_ptr(Cg *cg) {
  return LLVMConstNull(cg->t_ptr);
}

static LLVMValueRef const_str(Cg *cg, const char *s) {
  if (!s)
    return null_ptr(cg);
  return private_global(cg, LLVMConstStringInContext2(cg->lc, s, strlen(s), 0),
                        ".str", 1);
}

// Raw bytes as a private constant (bulk data: inline floats, class lists);
// host and target are the same machine, so byte order agrees.
static LLVMValueRef const_bytes(Cg *cg, const void *data, size_t n,
                                const char *name) {
  if (!data || !n)
    return null_ptr(cg);
  return private_global(cg, LLVMConstStringInContext2(cg->lc, data, n, 1), name,
                        16);
}

static LLVMValueRef ci(Cg *cg, int64_t v) {
  return cg_i64(cg, v);
}
static LLVMValueRef cd(Cg *cg, double v) {
  return LLVMConstReal(cg->t_f64, v);
}

static LLVMValueRef dims(Cg *cg, Shape s) {
  LLVMValueRef d[NNRT_MAX_RANK];
  for (int i = 0; i < NNRT_MAX_RANK; i++)
    d[i] = ci(cg, i < s.rank ? s.dim[i] : 0);
  return LLVMConstArray2(cg->t_i64, d, NNRT_MAX_RANK);
}

static LLVMTypeRef struct_type(Cg *cg, LLVMTypeRef *f, unsigned n) {
  return LLVMStructTypeInContext(cg->lc, f, n, 0);
}

static LLVMValueRef data_spec(Cg *cg, const DataSpec *d) {
  LLVMValueRef x = NULL, y = NULL, classes = NULL;
  if (d->kind == DATA_INLINE) {
    size_t nx = (size_t)(d->nrows * d->xcols),
           ny = (size_t)(d->nrows * d->ycols);
    float *buf = arena_alloc(cg->arena, sizeof(float) * (nx + ny + 1));
    for (size_t i = 0; i < nx; i++)
      buf[i] = (float)d->x[i];
    for (size_t i = 0; i < ny; i++)
      buf[nx + i] = (float)d->y[i];
    x = const_bytes(cg, buf, nx * sizeof(float), ".data.x");
    y = const_bytes(cg, buf + nx, ny * sizeof(float), ".data.y");
  }
  if (d->nclasses > 0)
    classes = const_bytes(cg, d->classes, sizeof(int64_t) * (size_t)d->nclasses,
                          ".data.classes");
  LLVMValueRef f[16] = {
      ci(cg, d->kind),          const_str(cg, d->path_x),
      const_str(cg, d->path_y), cd(cg, d->scale),
      ci(cg, d->nclasses),      classes ? classes : null_ptr(cg),
      ci(cg, d->nrows),         ci(cg, d->xcols),
      ci(cg, d->ycols),         x ? x : null_ptr(cg),
      y ? y : null_ptr(cg),     cd(cg, d->holdout),
      ci(cg, d->stride),        ci(cg, d->text_vocab),
      ci(cg, d->text_steps),    ci(cg, d->text_test),
  };
  return LLVMConstStructInContext(cg->lc, f, 16, 0);
}

static void build_model(Cg *cg, const Plan *train, const Plan *infer,
                        const Plan *sample, const int64_t *poff,
                        LLVMValueRef train_fn, LLVMValueRef infer_fn,
                        LLVMValueRef sample_fn, LLVMTargetDataRef td) {
  const IrModule *m = cg->m;
  LLVMTypeRef P = cg->t_ptr, I = cg->t_i64, D = cg->t_f64;
  LLVMTypeRef A = LLVMArrayType2(I, NNRT_MAX_RANK);

  // NnrtParamInfo, one per parameter.
  LLVMTypeRef pf[12] = {P, I, A, I, I, I, D, D, I, I, I, I};
  LLVMTypeRef t_param = struct_type(cg, pf, 12);
  int np = m->params.n;
  LLVMValueRef *rows = arena_alloc(cg->arena, sizeof *rows * (size_t)(np + 1));
  for (int i = 0; i < np; i++) {
    const IrParam *p = m->params.item[i];
    LLVMValueRef f[12] = {
        const_str(cg, p->name), ci(cg, p->shape.rank),
        dims(cg, p->shape),     ci(cg, poff[i + 1] - poff[i]),
        ci(cg, poff[i]),        ci(cg, p->init.kind),
        cd(cg, p->init.a),      cd(cg, p->init.b),
        ci(cg, p->fan_in),      ci(cg, p->fan_out),
        ci(cg, p->transposed),  ci(cg, p->buffer),
    };
    rows[i] = LLVMConstNamedStruct(t_param, f, 12);
  }
  LLVMValueRef ptable =
      np ? private_global(cg, LLVMConstArray2(t_param, rows, (uint64_t)np),
                          ".params", 8)
         : null_ptr(cg);

  // Optimizer state: as many per element as the largest optimizer has;
  // with several steps, each parameter starts its own optimizer's states.
  const IrOptimizer *o = &cg->step->opt;
  int nstate = 0;
  for (int k = 0; k < m->nsteps; k++)
    if (m->steps[k].opt.fn && m->steps[k].opt.nstate > nstate)
      nstate = m->steps[k].opt.nstate;
  LLVMValueRef state_init = null_ptr(cg), param_state_init = null_ptr(cg);
  if (nstate > 0) {
    LLVMValueRef *si = arena_alloc(cg->arena, sizeof *si * (size_t)nstate);
    for (int i = 0; i < nstate; i++)
      si[i] = cd(cg, o->fn && i < o->nstate ? o->state_init[i] : 0);
    state_init = private_global(cg, LLVMConstArray2(D, si, (uint64_t)nstate),
                                ".state_init", 8);
  }
  if (nstate > 0 && m->nsteps > 1) {
    int64_t cells = (int64_t)np * nstate;
    LLVMValueRef *ps = arena_alloc(cg->arena, sizeof *ps * (size_t)cells);
    for (int64_t c = 0; c < cells; c++)
      ps[c] = cd(cg, 0);
    for (int k = 0; k < m->nsteps; k++) {
      const IrOptimizer *ok = &m->steps[k].opt;
      for (int j = 0; ok->fn && j < m->steps[k].nparams; j++)
        for (int i = 0; i < ok->nstate; i++)
          ps[(int64_t)m->steps[k].params[j] * nstate + i] =
              cd(cg, ok->state_init[i]);
    }
    param_state_init = private_global(
        cg, LLVMConstArray2(D, ps, (uint64_t)cells), ".param_state_init", 8);
  }
  // Named metrics: each step's objective, then its reports.
  int nmetrics = 0;
  for (int k = 0; k < m->nsteps && m->step_blocks; k++)
    nmetrics += 1 + m->steps[k].nreports;
  LLVMValueRef metric_names = null_ptr(cg);
  if (nmetrics) {
    LLVMValueRef *mn = arena_alloc(cg->arena, sizeof *mn * (size_t)nmetrics);
    for (int k = 0, i = 0; k < m->nsteps; k++) {
      mn[i++] = const_str(cg, m->steps[k].name);
      for (int r = 0; r < m->steps[k].nreports; r++)
        mn[i++] = const_str(cg, m->steps[k].report_name[r]);
    }
    metric_names = private_global(
        cg, LLVMConstArray2(P, mn, (uint64_t)nmetrics), ".metric_names", 8);
  }
  Shape ss = m->sample ? m->sample->shape : shape_scalar();

  // NnrtDataSpec and NnrtModel.
  LLVMTypeRef df[16] = {I, P, P, D, I, P, I, I, I, P, P, D, I, I, I, I};
  LLVMTypeRef t_data = struct_type(cg, df, 16);
  enum { NMF = 40 };
  LLVMTypeRef mf[NMF] = {P, P, I, A, I, I, I, P, I, I, P, t_data,
                         t_data, I, I, I, D, I, I, I, I, I, P, P, I, I, I, D,
                         I, P, P, I, P, P, I, A, I, I, I, I};
  LLVMTypeRef t_model = struct_type(cg, mf, NMF);
  assert(LLVMABISizeOfType(td, t_model) == sizeof(NnrtModel));
  assert(LLVMABISizeOfType(td, t_param) == sizeof(NnrtParamInfo));
  assert(LLVMABISizeOfType(td, t_data) == sizeof(NnrtDataSpec));
  (void)td;

  Shape in = m->input ? m->input->shape : shape_scalar();
  const TrainSpec *ts = &m->train;
  LLVMValueRef f[NMF] = {
      const_str(cg, m->name),
      const_str(cg, m->source_dir),
      ci(cg, in.rank),
      dims(cg, in),
      ci(cg, m->input ? shape_numel(in) : 0),
      ci(cg, m->output ? shape_numel(m->output->shape) : 0),
      ci(cg, np),
      ptable,
      ci(cg, poff[np]),
      ci(cg, nstate),
      state_init,
      data_spec(cg, &ts->data),
      data_spec(cg, &ts->test),
      ci(cg, ts->batch),
      ci(cg, ts->epochs),
      ci(cg, ts->seed),
      cd(cg, ts->validation),
      ci(cg, ts->accuracy),
      ci(cg, train->per_row),
      ci(cg, train->fixed),
      ci(cg, infer->per_row),
      ci(cg, infer->fixed),
      train_fn,
      infer_fn,
      ci(cg, ts->patience),
      ci(cg, ts->no_shuffle),
      ci(cg, ts->stop_when_perfect),
      cd(cg, ts->threshold),
      ci(cg, cg->cpu_mask),
      const_str(cg, cg->cpu_name),
      param_state_init,
      ci(cg, nmetrics),
      metric_names,
      sample_fn ? sample_fn : null_ptr(cg),
      ci(cg, ss.rank),
      dims(cg, ss),
      ci(cg, m->sample ? shape_numel(ss) : 0),
      ci(cg, sample ? sample->per_row : 0),
      ci(cg, sample ? sample->fixed : 0),
      ci(cg, cg->elt_size),
  };
  const char *sym = cg->opt->model_symbol ? cg->opt->model_symbol : "nnc_model";
  LLVMValueRef g = LLVMAddGlobal(cg->mod, t_model, sym);
  LLVMSetInitializer(g, LLVMConstNamedStruct(t_model, f, NMF));
  LLVMSetGlobalConstant(g, 1);
  LLVMSetAlignment(g, 8);
  if (cg->opt->no_main) { // a library: only the table is exported
    LLVMSetLinkage(train_fn, LLVMInternalLinkage);
    LLVMSetLinkage(infer_fn, LLVMInternalLinkage);
    if (sample_fn)
      LLVMSetLinkage(sample_fn, LLVMInternalLinkage);
  }
  if (cg->opt->embed) { // `--embed W.safetensors`: SYM_weights, SYM_weights_len
    LLVMValueRef data = LLVMConstStringInContext2(
        cg->lc, cg->opt->embed, cg->opt->embed_len, 1);
    LLVMValueRef w = LLVMAddGlobal(cg->mod, LLVMTypeOf(data),
                                   arena_printf(cg->arena, "%s_weights", sym));
    LLVMSetInitializer(w, data);
    LLVMSetGlobalConstant(w, 1);
    LLVMSetAlignment(w, 64);
    LLVMValueRef n =
        LLVMAddGlobal(cg->mod, I, arena_printf(cg->arena, "%s_weights_len", sym));
    LLVMSetInitializer(n, ci(cg, (int64_t)cg->opt->embed_len));
    LLVMSetGlobalConstant(n, 1);
  }
}

// int main(int argc, char **argv) { return nnrt_main(&nnc_model, argc, argv); }
// (nnrt_mpi_main in --mpi builds)
static void build_main(Cg *cg) {
  LLVMTypeRef I32 = cg->t_i32, P = cg->t_ptr;
  LLVMTypeRef ty;
  LLVMValueRef nnrt_main =
      runtime_fn(cg, cg->opt->mpi ? "nnrt_mpi_main" : "nnrt_main", I32,
                 (LLVMTypeRef[]){P, I32, P}, 3, &ty);
  LLVMTypeRef main_ty = LLVMFunctionType(I32, (LLVMTypeRef[]){I32, P}, 2, 0);
  LLVMValueRef fn = cg_function(cg, "main", main_ty, false);
  LLVMPositionBuilderAtEnd(cg->b, block(cg, fn, "entry"));
  LLVMValueRef args[3] = {LLVMGetNamedGlobal(cg->mod, "nnc_model"),
                          LLVMGetParam(fn, 0), LLVMGetParam(fn, 1)};
  LLVMBuildRet(cg->b, call(cg, ty, nnrt_main, args, 3));
}

// Whether parameter i's gradient kernel can apply the optimizer in its
// epilogue (and then does: sets cg->opt_fused). It can when the gradient is
// a MATMUL_TN of its own, read by nothing but the optimizer: that kernel is
// then moved after every other kernel of the step, when nothing reads the
// parameter any more, and the gradient is never stored.
static int fuse_optimizer(Cg *cg, int i) {
  const IrModule *m = cg->m;
  const IrParam *p = m->params.item[i];
  const IrValue *g = p->grad;
  if (g->op != OP_MATMUL_TN || g == m->output || g == m->loss ||
      g == cg->step->objective || g == m->correct)
    return 0;
  for (int j = 0; j < m->updates.n; j++)
    if (((IrUpdate *)m->updates.item[j])->value == g)
      return 0;
  for (int j = 0; j < m->ntrainable; j++)
    if (j != i && ((IrParam *)m->params.item[j])->grad == g)
      return 0;
  for (int j = g->id + 1; j < m->fn->values.n; j++) {
    const IrValue *u = m->fn->values.item[j];
    for (int a = 0; a < u->narg; a++)
      if (u->arg[a] == g)
        return 0;
  }
  cg->opt_fused[g->id] = i;
  return 1;
}

// Row groups: runs of consecutive kernels (in the order nnc_train calls
// them) that each compute one batch row from that row of their batched
// inputs (element-wise, per-example sums, softmax, correct) or sum over the
// batch (BATCH_MEAN, SUM_TO to an unbatched target) become one kernel with
// one loop over the rows: the loss and its gradient are then two loops
// instead of a dozen kernels. A group only holds values that nnc_infer
// treats alike (all in its output set, all in its loss set, or neither), so
// both entry points can call it; no member reads a batch sum of its own
// group (complete only after the loop).
static void form_row_groups(Cg *cg, const bool *live, const bool *out_set,
                            const bool *loss_set) {
  const IrModule *m = cg->m;
  int n = m->fn->values.n;
  cg->group = arena_alloc(cg->arena, sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++)
    cg->group[i] = -1;
  if (cg->opt->no_row_groups)
    return;
  // Each step runs its own kernels: a group's members belong to the same
  // steps, so a step that needs one runs the whole group.
  int nsteps = m->nsteps > 1 ? m->nsteps : 1;
  uint64_t *steps = arena_alloc(cg->arena, sizeof(uint64_t) * (size_t)n);
  for (int k = 0; k < nsteps && k < 64; k++)
    for (int i = 0; i < n; i++)
      if (cg->step_live[k][i])
        steps[i] |= UINT64_C(1) << k;
  if (nsteps > 64)
    return;
  int lead = -1, size = 0;
  bool *sink = arena_alloc(cg->arena, (size_t)n);
  for (int i = 0; i < n; i++) {
    const IrValue *v = m->fn->values.item[i];
    bool stored = live[i] && !cg->inl[i] && prims[v->op].kind != PK_LEAF &&
                  v->op != OP_RESHAPE;
    if (!stored)
      continue; // no kernel here: the run goes on
    bool ok = row_groupable(cg, v, &sink[i]) && cg->opt_fused[i] < 0;
    if (ok && lead >= 0 && out_set[i] == out_set[lead] &&
        loss_set[i] == loss_set[lead] && steps[i] == steps[lead]) {
      PtrVec in = kernel_inputs(cg, v);
      for (int k = 0; k < in.n && ok; k++) {
        int j = ((IrValue *)in.item[k])->id;
        ok = !(cg->group[j] == lead && sink[j]);
      }
      if (ok) {
        cg->group[i] = lead;
        size++;
        continue;
      }
    }
    if (lead >= 0 && size == 1)
      cg->group[lead] = -1; // a group of one is a plain kernel
    lead = -1, size = 0;
    if (row_groupable(cg, v, &sink[i]) && cg->opt_fused[i] < 0) {
      lead = i, size = 1;
      cg->group[i] = i;
    }
  }
  if (lead >= 0 && size == 1)
    cg->group[lead] = -1;
}

// ---- the whole module -------------------------------------------------------
static void build_module(Cg *cg, LLVMTargetDataRef td) {
  IrModule *m = cg->m;
  int n = m->fn->values.n;
  for (int i = 0; i < n; i++)
    assert(((IrValue *)m->fn->values.item[i])->id == i &&
           "values must be numbered in order (ir_renumber)");
  assert(m->input && m->output && "a module has an input and an output");
  for (int i = 0; i < m->ntrainable && cg->step->opt.fn; i++)
    assert(((IrParam *)m->params.item[i])->grad && "grad_emit has not run");
  IrGraph ev = ir_eval_graph(m);

  // Roots must be stored even when marked fused: the driver reads them.
  bool *root = arena_alloc(cg->arena, (size_t)n);
  bool *train_live = arena_alloc(cg->arena, (size_t)n);
  bool *out_set = arena_alloc(cg->arena, (size_t)n);
  bool *loss_set = arena_alloc(cg->arena, (size_t)n);
  bool *infer_live = arena_alloc(cg->arena, (size_t)n);
  // Each step's kernels: the closure of its objective, its parameters'
  // gradients, its reports and buffer updates (the first step also
  // computes the output, loss and correct count that nnrt_batch_end
  // reports, unless `step` blocks report instead).
  int nsteps = m->nsteps ? m->nsteps : 1;
  const IrStep *steps = m->nsteps ? m->steps : cg->step;
  for (int k = 0; k < m->nsteps; k++) {
    IrStep *st = &m->steps[k];
    if (st->params)
      continue;  // NULL: every trainable parameter (ir.h)
    st->nparams = m->ntrainable;
    st->params = arena_alloc(cg->arena, sizeof(int) * (size_t)(m->ntrainable + 1));
    for (int i = 0; i < m->ntrainable; i++)
      st->params[i] = i;
  }
  bool **step_live = arena_alloc(cg->arena, sizeof(bool *) * (size_t)nsteps);
  for (int k = 0; k < nsteps; k++) {
    const IrStep *st = &steps[k];
    bool *sl = step_live[k] = arena_alloc(cg->arena, (size_t)n);
    if (k == 0 && !m->step_blocks) {
      mark_root(sl, m->output);
      mark_root(sl, m->loss);
      mark_root(sl, m->correct);
    }
    mark_root(sl, st->objective);
    for (int r = 0; r < st->nreports; r++)
      mark_root(sl, st->report[r]);
    for (int j = 0; j < st->nparams; j++)
      mark_root(sl, ((IrParam *)m->params.item[st->params[j]])->grad);
    for (int i = 0; i < m->updates.n; i++) {
      const IrUpdate *u = m->updates.item[i];
      if (u->step == k)
        mark_root(sl, u->value);
    }
    for (int i = 0; i < n; i++)
      root[i] |= sl[i];
    ir_close_deps(m->fn, sl);
    for (int i = 0; i < n; i++)
      train_live[i] |= sl[i];
  }
  cg->step_live = step_live;
  mark_root(root, m->sample);
  mark_root(root, ev.output);
  mark_root(root, ev.loss);
  mark_root(root, ev.objective);
  mark_root(root, ev.correct);
  mark_root(out_set, ev.output);
  ir_close_deps(m->fn, out_set);
  mark_root(loss_set, ev.loss);
  mark_root(loss_set, ev.objective);
  mark_root(loss_set, ev.correct);
  for (int k = 0; k < m->nsteps; k++) {
    const IrStep *st = &m->steps[k];
    mark_root(loss_set, st->eval_objective);
    mark_root(root, st->eval_objective);
    for (int r = 0; r < st->nreports; r++) {
      mark_root(loss_set, st->eval_report[r]);
      mark_root(root, st->eval_report[r]);
    }
  }
  ir_close_deps(m->fn, loss_set);
  for (int i = 0; i < n; i++) {
    if (out_set[i])
      loss_set[i] = false;
    infer_live[i] = out_set[i] || loss_set[i];
  }

  cg->inl = arena_alloc(cg->arena, (size_t)n);
  cg->kern = arena_alloc(cg->arena, sizeof *cg->kern * (size_t)n);
  for (int i = 0; i < n; i++) {
    const IrValue *v = m->fn->values.item[i];
    cg->inl[i] =
        !root[i] && (v->fused || v->op == OP_CONST || v->op == OP_BATCH_SIZE);
  }

  int64_t *poff =
      arena_alloc(cg->arena, sizeof *poff * (size_t)(m->params.n + 1));
  for (int i = 0; i < m->params.n; i++)
    poff[i + 1] = poff[i] + shape_numel(((IrParam *)m->params.item[i])->shape);

  cg->param_numel = poff[m->params.n];
  cg->opt_fused = arena_alloc(cg->arena, sizeof(int) * (size_t)n);
  int nfused = 0;
  for (int i = 0; i < n; i++)
    cg->opt_fused[i] = -1;
  // (--mpi: gradients are summed over the ranks before any update)
  for (int k = 0; k < nsteps && !cg->opt->no_opt_fusion && !cg->opt->mpi;
       k++) {
    cg->step = &steps[k];
    for (int j = 0; cg->step->opt.fn && j < cg->step->nparams; j++)
      nfused += fuse_optimizer(cg, cg->step->params[j]);
  }
  cg->step = &steps[0];

  // Kernel order: nnc_train runs every kernel by id, then the gradient
  // kernels that update their parameter, then the optimizer; nnc_infer runs
  // the output's kernels, copies the output, then the loss's.
  form_row_groups(cg, train_live, out_set, loss_set);
  int *train_pos = arena_alloc(cg->arena, sizeof(int) * (size_t)n);
  int *infer_pos = arena_alloc(cg->arena, sizeof(int) * (size_t)n);
  for (int i = 0, d = 0; i < n; i++) {
    int at = cg->group[i] >= 0 ? cg->group[i] : i; // a group runs at its leader
    train_pos[i] = cg->opt_fused[i] >= 0 ? n + d++ : at;
    infer_pos[i] = out_set[i] ? at : n + 1 + at;
  }
  if (cg->opt->profile) {
    LLVMTypeRef at = LLVMArrayType2(cg->t_i64, (uint64_t)(n + PROF_N));
    cg->prof = LLVMAddGlobal(cg->mod, at, "nnc.profile");
    LLVMSetInitializer(cg->prof, LLVMConstNull(at));
    LLVMSetLinkage(cg->prof, LLVMInternalLinkage);
  }
  Plan train, infer;
  plan_storage(cg, &train, train_live, root, train_pos, n + nfused + 1, true,
               cg->step->opt.fn != NULL && nsteps == 1);
  cg->plan = (CodegenPlan){train.per_row, train.fixed};
  int *fused = cg->opt_fused;
  cg->opt_fused = NULL; // nnc_infer computes no gradients
  plan_storage(cg, &infer, infer_live, root, infer_pos, 2 * n + 2,
               cg->elt_size == 8,
               false);
  cg->opt_fused = fused;
  // nnc_sample: the sample expression's kernels, planned on their own.
  Plan sample;
  bool *sample_set = NULL;
  if (m->sample) {
    sample_set = arena_alloc(cg->arena, (size_t)n);
    mark_root(sample_set, m->sample);
    ir_close_deps(m->fn, sample_set);
    int *sample_pos = arena_alloc(cg->arena, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
      sample_pos[i] = i;
    cg->opt_fused = NULL;
    plan_storage(cg, &sample, sample_set, root, sample_pos, n + 1, false,
                 false);
    cg->opt_fused = fused;
  }
  LLVMValueRef train_fn = build_train(cg, &train, train_live, poff);
  LLVMValueRef infer_fn =
      build_infer(cg, &infer, out_set, loss_set, infer_live, poff);
  LLVMValueRef sample_fn =
      m->sample ? build_sample(cg, &sample, sample_set, poff) : NULL;
  build_model(cg, &train, &infer, m->sample ? &sample : NULL, poff, train_fn,
              infer_fn, sample_fn, td);
  if (!cg->opt->no_main)
    build_main(cg);
}

// ---- target, passes, emission -----------------------------------------------
static int write_out(Ctx *ctx, const char *path, const char *data, size_t n) {
  bool std = strcmp(path, "-") == 0;
  FILE *f = std ? stdout : fopen(path, "wb");
  if (!f) {
    diag_error(&ctx->diag, (Loc){0}, "cannot write '%s': %s", path,
               strerror(errno));
    return 1;
  }
  size_t w = fwrite(data, 1, n, f);
  int bad = w != n || (std ? fflush(f) : fclose(f)) != 0;
  if (bad)
    diag_error(&ctx->diag, (Loc){0}, "cannot write '%s'", path);
  return bad;
}

static int emit(Cg *cg, const CodegenOptions *o) {
  if (o->kind == EMIT_LLVM) {
    char *s = LLVMPrintModuleToString(cg->mod);
    int r = write_out(cg->ctx, o->out_path, s, strlen(s));
    LLVMDisposeMessage(s);
    return r;
  }
  char *err = NULL;
  LLVMMemoryBufferRef buf = NULL;
  LLVMCodeGenFileType ft =
      o->kind == EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile;
  if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, cg->mod, ft, &err, &buf)) {
    diag_error(&cg->ctx->diag, (Loc){0}, "code generation failed: %s", err);
    LLVMDisposeMessage(err);
    return 1;
  }
  int r = write_out(cg->ctx, o->out_path, LLVMGetBufferStart(buf),
                    LLVMGetBufferSize(buf));
  LLVMDisposeMemoryBuffer(buf);
  return r;
}

// Verifies, optimizes with default<O?> and emits. Returns nonzero on error.
int verify_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt_level,
                    char *err, size_t cap) {
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    snprintf(err, cap, "invalid LLVM module: %s", msg);
    LLVMDisposeMessage(msg);
    return 1;
  }
  LLVMDisposeMessage(msg);
  int level = opt_level < 0 ? 0 : opt_level > 3 ? 3 : opt_level;
  char pipeline[32];
  snprintf(pipeline, sizeof pipeline, "default<O%d>", level);
  LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, pipeline, tm, po);
  LLVMDisposePassBuilderOptions(po);
  if (e) {
    char *em = LLVMGetErrorMessage(e);
    snprintf(err, cap, "%s", em);
    LLVMDisposeErrorMessage(em);
    return 1;
  }
  return 0;
}

static int finish(Cg *cg, const CodegenOptions *o) {
  if (o->kind == EMIT_PLAN)
    return 0;
  char err[512];
  if (verify_optimize(cg->mod, cg->tm, o->opt_level, err, sizeof err)) {
    diag_error(&cg->ctx->diag, (Loc){0}, "internal error: %s", err);
    return 1;
  }
  return emit(cg, o);
}

static LLVMTargetMachineRef target_machine(Ctx *ctx, int opt_level,
                                           const CgTarget *t,
                                           char **triple_out) {
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  char *triple = LLVMGetDefaultTargetTriple();
  LLVMTargetRef target;
  char *err = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    diag_error(&ctx->diag, (Loc){0}, "no LLVM target for '%s': %s", triple,
               err);
    LLVMDisposeMessage(err);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  LLVMCodeGenOptLevel lvl = opt_level <= 0   ? LLVMCodeGenLevelNone
                            : opt_level == 1 ? LLVMCodeGenLevelLess
                            : opt_level == 2 ? LLVMCodeGenLevelDefault
                                             : LLVMCodeGenLevelAggressive;
  // PIC: Debian's cc links position-independent executables by default.
  LLVMTargetMachineRef tm =
      LLVMCreateTargetMachine(target, triple, t->cpu, t->features, lvl,
                              LLVMRelocPIC, LLVMCodeModelDefault);
  if (!tm) {
    diag_error(&ctx->diag, (Loc){0}, "cannot create a target machine for '%s'",
               triple);
    LLVMDisposeMessage(triple);
    return NULL;
  }
  *triple_out = triple;
  return tm;
}

static int run(IrModule *m, Ctx *ctx, const CodegenOptions *o,
               CodegenPlan *plan) {
  char *triple = NULL;
  CgTarget tgt;
  if (cg_target(o->cpu, &tgt)) {
    diag_error(&ctx->diag, (Loc){0}, "unknown CPU '%s' for --cpu", o->cpu);
    return 1;
  }
  LLVMTargetMachineRef tm = target_machine(ctx, o->opt_level, &tgt, &triple);
  if (!tm) {
    cg_target_free(&tgt);
    return 1;
  }
  static const IrStep no_step; // a model without a train block
  Cg cg = {.m = m, .step = m->nsteps ? &m->steps[0] : &no_step,
           .ctx = ctx, .arena = ctx->arena, .tm = tm, .opt = o,
           .cpu_mask = tgt.mask, .cpu_name = tgt.name,
           .elt_size = m->dtype == DT_F64 ? 8 : 4};
  cg_target_tiles(&cg, tgt.mask);
  cg.lc = LLVMContextCreate();
  cg.mod = LLVMModuleCreateWithNameInContext(m->name ? m->name : "nnc", cg.lc);
  // Triple and data layout before any IR: the optimizer reads them.
  LLVMSetTarget(cg.mod, triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(cg.mod, td);
  cg.b = LLVMCreateBuilderInContext(cg.lc);
  cg.ab = LLVMCreateBuilderInContext(cg.lc);
  cg.t_void = LLVMVoidTypeInContext(cg.lc);
  cg.t_i1 = LLVMInt1TypeInContext(cg.lc);
  cg.t_i8 = LLVMInt8TypeInContext(cg.lc);
  cg.t_i32 = LLVMInt32TypeInContext(cg.lc);
  cg.t_i64 = LLVMInt64TypeInContext(cg.lc);
  cg.t_f32 = LLVMFloatTypeInContext(cg.lc);
  cg.t_f64 = LLVMDoubleTypeInContext(cg.lc);
  cg.t_elt = cg.elt_size == 8 ? cg.t_f64 : cg.t_f32;
  cg.t_ptr = LLVMPointerTypeInContext(cg.lc, 0);

  build_module(&cg, td);
  int r;
  if (o->kind == EMIT_OBJ && o->out_path2) {
    char *triple2 = NULL;
    LLVMTargetMachineRef tm2 =
        target_machine(ctx, o->opt_level, &tgt, &triple2);
    r = !tm2 || split_emit(&cg, o, tm2);
    if (tm2) {
      LLVMDisposeTargetMachine(tm2);
      LLVMDisposeMessage(triple2);
    }
  } else {
    r = finish(&cg, o);
  }
  if (plan)
    *plan = cg.plan;

  LLVMDisposeBuilder(cg.ab);
  LLVMDisposeBuilder(cg.b);
  LLVMDisposeModule(cg.mod);
  LLVMDisposeTargetData(td);
  LLVMContextDispose(cg.lc);
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeMessage(triple);
  cg_target_free(&tgt);
  return r;
}

int codegen_emit(IrModule *m, Ctx *ctx, const CodegenOptions *o) {
  return run(m, ctx, o, NULL);
}

int codegen_plan(IrModule *m, Ctx *ctx, CodegenPlan *plan) {
  return run(m, ctx, &(CodegenOptions){.kind = EMIT_PLAN}, plan);
}
